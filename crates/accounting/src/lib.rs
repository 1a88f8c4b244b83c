//! Switchyard's accounting: who is calling, what it costs, and whether they may go on.
//!
//! - [`model`]: the vocabulary: virtual keys, teams, users, their limits and budget periods,
//!   the identity a request carries, and the spend record a finished request leaves.
//! - [`meter`]: rate limits and budgets enforced at admission, in memory or shared through Redis.
//! - [`period`]: calendar budget periods and minutes in UTC, and times written for messages.
//!
//! What this crate does not do: it serves no HTTP (the gateway serves the admin API and maps
//! refusals to responses) and reads no configuration file; it is handed URLs and plain
//! settings structs.

pub mod meter;
pub mod model;
pub mod period;
