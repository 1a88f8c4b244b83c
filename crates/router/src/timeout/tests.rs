//! Tests of the deadline layer.
