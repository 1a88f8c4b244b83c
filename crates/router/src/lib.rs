//! Switchyard's routing: which deployment serves a request, and what happens when it fails.
//!
//! A model name resolves to a [`ModelGroup`]: the deployments that serve it and the policy
//! that chooses among them. Around that innermost step sit layers a team can use alone:
//!
//! - [`timeout::DeadlineLayer`] (per deployment): time to first token, between chunks, total;
//!   and the per-request deadline a client sets with a header ([`timeout::RequestTimeouts`]).
//! - [`retry::RetryLayer`]: retries failed attempts, elsewhere at once when another deployment
//!   can serve, else after an exponential backoff with jitter that honours `Retry-After`; a
//!   retry budget keeps retries from multiplying an outage.
//! - [`fallback::FallbackLayer`]: when a model cannot serve, tries its fallback models in order
//!   (with specific lists for context-length and content-policy failures, and a per-request
//!   list when allowed).
//!
//! [`ModelGroup`] itself keeps each deployment's health (cooldowns with probing, see
//! [`health`]), load (requests in flight, a peak-EWMA of latency) and usage (requests and
//! tokens this minute), which the [`Policy`] reads. With Redis, [`shared`] shares cooldowns
//! and usage between replicas.
//!
//! Streams fail over only before their first chunk: a group waits for the first chunk of a
//! streamed answer before it calls the attempt a success, and an error after that ends the
//! stream with an error item, which the gateway turns into an error event.
//!
//! What this crate does not do: it knows nothing of HTTP servers, configuration files or
//! provider dialects. The gateway builds the deployments and hands them over.
//!
//! ```
//! use std::sync::Arc;
//! use switchyard_router::{Endpoint, EndpointSettings, GroupSettings, ModelGroup, RouteTable};
//! use switchyard_router::{fallback::FallbackLayer, retry::{RetryConfig, RetryLayer}};
//! use switchyard_types::llm::{LlmError, LlmRequest, LlmResponse};
//! use tower::{ServiceBuilder, service_fn, util::BoxCloneSyncService};
//!
//! let deployment = BoxCloneSyncService::new(service_fn(|_: LlmRequest| async {
//!     Err::<LlmResponse, _>(LlmError::new(switchyard_types::llm::ErrorClass::Overloaded, "busy"))
//! }));
//! let endpoint = Endpoint::new("example/model-a", "m/0", deployment, EndpointSettings::default());
//! let group = ModelGroup::new("m", vec![endpoint], GroupSettings::default());
//! let table = Arc::new(RouteTable::new(vec![group]));
//! let stack = ServiceBuilder::new()
//!     .layer(FallbackLayer::new(Default::default()))
//!     .layer(RetryLayer::new(RetryConfig::default()))
//!     .service(table.dispatch());
//! # let _ = stack;
//! ```

pub mod attempts;
mod endpoint;
mod ewma;
pub mod fallback;
mod group;
pub mod health;
mod policy;
pub mod retry;
pub mod shared;
mod table;
pub mod timeout;
mod track;
mod usage;

pub use attempts::Attempts;
pub use endpoint::{DeploymentService, Endpoint, EndpointSettings, Price};
pub use group::{GroupSettings, ModelGroup, SPAN_TARGET};
pub use policy::Policy;
pub use table::{Dispatch, RouteTable};

use switchyard_types::llm::ErrorClass;

/// Whether a failure of this class is the deployment's, so that another attempt (on another
/// deployment, or later) may succeed. Rejected credentials count: they are a fault of one
/// deployment's configuration, and another deployment may hold good ones.
pub fn fails_over(class: ErrorClass) -> bool {
    class.is_retryable() || class == ErrorClass::ProviderAuthentication
}
