//! Switchyard's wire protocol: the shapes clients and providers exchange, with no I/O.
//!
//! - [`openai`]: Chat Completions, Embeddings and Models request and response shapes, lossless
//!   for fields the gateway does not model.
//! - [`anthropic`]: Messages request, answer, stream event and error shapes, lossless likewise.
//! - [`sse`]: an incremental server-sent-events decoder and an encoder.
//! - [`error`]: the OpenAI error envelope (Anthropic's is in [`anthropic`]).
//! - [`json`]: a document kept as received, with the facts the gateway acts on.
//! - [`llm`]: the request, response and error every layer of the stack passes along.
//!
//! This crate knows nothing of HTTP clients, servers or configuration: it is the vocabulary the
//! other crates share, and a team building its own stack can use it alone.
//!
//! ```
//! use switchyard_types::openai::ChatCompletionRequest;
//!
//! let request: ChatCompletionRequest = serde_json::from_str(
//!     r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}],"seed":7}"#,
//! ).unwrap();
//! assert_eq!(request.model, "gpt-4o-mini");
//! assert_eq!(request.extra["seed"], 7);
//! ```

pub mod anthropic;
pub mod error;
pub mod json;
pub mod llm;
pub mod openai;
pub mod sse;
