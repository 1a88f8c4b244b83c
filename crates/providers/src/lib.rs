//! Provider adapters: each turns an [`LlmRequest`] into a provider's wire format, sends it,
//! and turns the answer (complete or streamed) back into an [`LlmResponse`].
//!
//! An adapter is a `tower::Service<LlmRequest, Response = LlmResponse, Error = LlmError>` for
//! one deployment (a provider, a base URL, a key, an upstream model). It does no routing,
//! retrying across deployments, caching or accounting: those are layers above it. It does
//! resend once a request that died on a stale pooled connection ([`client`]).
//!
//! - [`openai`]: OpenAI, Azure OpenAI and every OpenAI-compatible server; [`presets`] names them.
//! - [`cohere`]: Cohere's native v2 API (chat, streamed or not, and embeddings).
//! - [`bedrock`]: AWS Bedrock's Converse API (SigV4-signed; binary event streams).
//! - [`gemini`]: Google Gemini on AI Studio and on Vertex AI (native `generateContent`).
//! - [`mock`]: the built-in local `mock` model of the zero-config gateway.
//!
//! ```no_run
//! use switchyard_providers::{client, openai::{OpenAiCompatible, OpenAiSettings}, presets};
//! use tower::ServiceExt;
//! # async fn run(request: switchyard_types::llm::LlmRequest) -> Result<(), Box<dyn std::error::Error>> {
//! let groq = presets::preset("groq").expect("a known preset");
//! let http = client::build_client(&client::ClientSettings::default())?;
//! let deployment = OpenAiCompatible::new(http, OpenAiSettings {
//!     label: "groq/llama-3.1-8b-instant".into(),
//!     api_base: groq.api_base.unwrap_or_default().to_owned(),
//!     api_key: std::env::var("GROQ_API_KEY").ok(),
//!     auth: groq.auth,
//!     url_style: groq.url_style,
//!     api_version: None,
//!     model: Some("llama-3.1-8b-instant".into()),
//!     headers: Default::default(),
//! })?;
//! let response = deployment.oneshot(request).await?;
//! # let _ = response; Ok(()) }
//! ```
//!
//! [`LlmRequest`]: switchyard_types::llm::LlmRequest
//! [`LlmResponse`]: switchyard_types::llm::LlmResponse

pub mod anthropic;
pub mod bedrock;
pub mod client;
pub mod cohere;
pub mod gemini;
pub mod messages_over_chat;
pub mod mock;
pub mod openai;
pub mod presets;
pub mod translate;
pub mod upstream;
