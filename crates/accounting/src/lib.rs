//! Switchyard's accounting: who is calling, what it costs, and whether they may go on.
//!
//! - [`model`]: the vocabulary: virtual keys, teams, users, their limits and budget periods,
//!   the identity a request carries, and the spend record a finished request leaves.
//! - [`admission`]: the tower layer that admits a request against its limits and budgets, and reserves.
//! - [`keys`]: virtual key secrets: generated from the OS CSPRNG, stored as SHA-256, compared in constant time.
//! - [`store`]: the SQL store (SQLite or PostgreSQL): keys, teams, users, spend records and reports.
//! - [`ledger`]: the batching writer that takes spend records off the request path into the store.
//! - [`meter`]: rate limits and budgets enforced at admission, in memory or shared through Redis.
//! - [`period`]: calendar budget periods and minutes in UTC, and times written for messages.
//! - [`prices`]: the built-in price catalog and what a request's usage cost.
//! - [`tokens`]: token counts with OpenAI's `o200k_base` encoding, and cheap estimates.
//!
//! What this crate does not do: it serves no HTTP (the gateway serves the admin API and maps
//! refusals to responses) and reads no configuration file; it is handed URLs and plain
//! settings structs.

pub mod admission;
pub mod keys;
pub mod ledger;
pub mod meter;
pub mod model;
pub mod period;
pub mod prices;
pub mod store;
pub mod tokens;
