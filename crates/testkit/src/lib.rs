//! Mock LLM providers for Switchyard's tests and benchmarks: a real HTTP server on loopback that
//! answers like a provider, with scripted delays and faults, and counts what it saw.
//!
//! The mock speaks the OpenAI dialect ([`MockServer`] serves Chat Completions, streamed and
//! not, Embeddings and Models, under OpenAI, prefix-less and Azure paths), Anthropic's
//! (Messages, streamed and not, and token counting, under `.../v1/messages`), Gemini's
//! (`generateContent`, `streamGenerateContent`, `batchEmbedContents` under AI Studio and Vertex AI
//! paths, and an OAuth token endpoint for service accounts), Cohere's v2 (`/v2/chat`, streamed
//! and not, and `/v2/embed`, with Cohere's error shape on those paths) and AWS Bedrock's Converse
//! and ConverseStream (binary event streams, SigV4 checked when [`MockConfig::aws`] is set). Each
//! dialect lives in its own module, so that the mocks of other dialects can sit next to these and
//! share the server, the timing engine, the faults and the counters.
//!
//! What it is:
//! - an upstream for the gateway's tests: [`Fault`]s are queued per request ([`MockServer::push_fault`])
//!   and every request is recorded ([`MockServer::requests`]), so a test can assert what the
//!   gateway sent and how it reacted to a 429, a hung or reset connection, or a stream cut midway;
//! - a flaky upstream on demand: [`RandomFaults`] ([`MockServer::set_random_faults`]) fail a
//!   percentage of the requests the queue leaves alone, with faults picked by weight from a mix,
//!   from a seeded generator, so that "30% of requests fail with 500s, 429s, hangs and resets"
//!   fails the same requests on every run;
//! - the upstream of `cargo xtask bench`, as the `switchyard-mock` binary: cheap per request, with
//!   configurable time to first token and inter-chunk delay ([`MockConfig`]);
//! - a trace sink: `POST .../v1/traces` accepts OTLP/HTTP exports and discards them, counted in
//!   [`Stats::otlp_exports`], so that a gateway with traces on has a collector to send to;
//! - a witness: [`Stats`] counts requests, connections, streams completed and streams cancelled
//!   (the client went away), and faults applied, random ones and each kind apart, so a test can
//!   check that a client disconnect cancelled the upstream or how many failures the gateway hid.
//!
//! What it is not: a model. Answers are synthetic and deterministic (`tok0 tok1 ...`, a fixed tool
//! call, hash-derived embeddings), token counts are estimates, and only the fields clients and the
//! gateway read are produced. It does not validate requests beyond what it needs to answer them.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> std::io::Result<()> {
//! use std::time::Duration;
//! use switchyard_testkit::{Fault, MockConfig, MockServer};
//!
//! let server = MockServer::start(MockConfig {
//!     ttft: Duration::from_millis(20),
//!     ..MockConfig::default()
//! })
//! .await?;
//! // Point the client (or the gateway's deployment) at `server.url()`, e.g. "http://127.0.0.1:PORT/v1".
//! assert!(server.url().starts_with("http://127.0.0.1:"));
//! // The next request is answered with a 429; the one after it normally.
//! server.push_fault(Fault::RateLimited { retry_after_secs: 1 });
//! assert_eq!(server.stats().requests, 0);
//! server.shutdown().await;
//! # Ok(())
//! # }
//! ```

mod anthropic;
mod bedrock;
mod body;
mod cohere;
mod config;
mod fault;
mod gemini;
mod openai;
mod prompt_cache;
mod record;
mod server;
mod service;
mod stats;
mod synth;

pub use config::{AwsKeys, MockConfig};
pub use fault::{Fault, RandomFaults};
pub use record::RecordedRequest;
pub use server::MockServer;
pub use stats::{FaultCounts, Stats};
