//! Switchyard's observability: what operators see of their LLM traffic.
//!
//! - [`metrics`]: the Prometheus metrics the gateway serves on `GET /metrics` (requests,
//!   latency, time to first token, the gateway's own overhead, tokens, cost, attempts, retries,
//!   fallbacks, cooldowns, deployment health), recorded once per request from a
//!   [`RequestRecord`] and, for deployment state, read from the route table at scrape time.
//! - [`trace`]: OpenTelemetry traces over OTLP (HTTP or gRPC), W3C `traceparent` in and out,
//!   spans named and attributed per the GenAI semantic conventions.
//! - [`logs`]: the `tracing` subscriber: human-readable or JSON logs, and the trace export.
//!
//! Label values are bounded: models and deployments are the configured names (never what a
//! client sent), error classes and statuses are small fixed sets; no key, user or prompt is
//! ever a label.
//!
//! What this crate does not do: it serves no HTTP (the gateway serves `/metrics`) and decides
//! nothing about requests.
//!
//! ```
//! use switchyard_telemetry::metrics::Metrics;
//! let metrics = Metrics::new();
//! let _serving = metrics.start();
//! let text = metrics.encode(None);
//! assert!(text.contains("switchyard_in_flight_requests 1"));
//! ```

pub mod logs;
pub mod metrics;
mod record;
pub mod trace;

pub use record::{RequestRecord, Usage};
