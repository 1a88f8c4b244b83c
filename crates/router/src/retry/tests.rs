//! Tests of the retry layer.
