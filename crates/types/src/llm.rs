//! The LLM-level request, response and error that every layer of the stack passes along.
//!
//! Below the HTTP edge the gateway is a stack of `tower::Service<LlmRequest, Response =
//! LlmResponse, Error = LlmError>` layers. The request is parsed once at the edge; layers read
//! and rewrite it in place and never re-parse or clone message bodies.

use std::{fmt, pin::Pin, sync::Arc, time::Duration};

use futures_core::Stream;

use crate::json::Json;
use crate::openai::{
    ChatCompletion, ChatCompletionChunk, ChatCompletionRequest, EmbeddingsRequest, EmbeddingsResponse,
};

/// A request to a model: what to do, and per-request facts layers attach on the way.
#[derive(Debug)]
pub struct LlmRequest {
    /// The operation and its body.
    pub op: Operation,
    /// Per-request facts set by outer layers (request id, identity, deadline, ...).
    pub extensions: http::Extensions,
}

impl LlmRequest {
    /// A request with no extensions.
    pub fn new(op: Operation) -> Self {
        Self { op, extensions: http::Extensions::new() }
    }

    /// The model the request names.
    pub fn model(&self) -> &str {
        match &self.op {
            Operation::Chat(chat) => &chat.model,
            Operation::Embeddings(embeddings) => &embeddings.model,
        }
    }

    /// Replaces the model the request names (alias to upstream id).
    pub fn set_model(&mut self, model: &str) {
        let slot = match &mut self.op {
            Operation::Chat(chat) => &mut chat.model,
            Operation::Embeddings(embeddings) => &mut embeddings.model,
        };
        slot.clear();
        slot.push_str(model);
    }

    /// Whether the client asked for a stream.
    pub fn is_stream(&self) -> bool {
        matches!(&self.op, Operation::Chat(chat) if chat.is_stream())
    }
}

/// What the client asked for.
#[derive(Debug)]
pub enum Operation {
    /// A chat completion, streamed or not.
    Chat(ChatCompletionRequest),
    /// Embeddings of one or more inputs.
    Embeddings(EmbeddingsRequest),
}

/// The answer to an [`LlmRequest`].
pub struct LlmResponse {
    /// The body: complete, or a stream of chunks.
    pub body: ResponseBody,
    /// The deployment that served the request, for response headers and logs.
    pub served_by: Option<Arc<str>>,
}

impl fmt::Debug for LlmResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let body = match &self.body {
            ResponseBody::Chat(_) => "Chat",
            ResponseBody::ChatStream(_) => "ChatStream",
            ResponseBody::Embeddings(_) => "Embeddings",
        };
        f.debug_struct("LlmResponse").field("body", &body).field("served_by", &self.served_by).finish()
    }
}

/// A response body. Documents are kept as received ([`Json`]): same-dialect traffic forwards
/// the provider's bytes, and translation parses them when it needs to.
pub enum ResponseBody {
    /// A complete chat completion.
    Chat(Json<ChatCompletion>),
    /// Chat completion chunks, each yielded as soon as the provider sent it.
    ChatStream(ChunkStream),
    /// Embeddings.
    Embeddings(Json<EmbeddingsResponse>),
}

/// A stream of chat completion chunks. Dropping it cancels the upstream request.
pub type ChunkStream = Pin<Box<dyn Stream<Item = Result<Json<ChatCompletionChunk>, LlmError>> + Send>>;

/// Why a request failed, classified so that layers can act on it without knowing the provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LlmError {
    /// The class of failure.
    pub class: ErrorClass,
    /// What happened and what to do, safe to show a client (never a key).
    pub message: String,
    /// The HTTP status the provider answered with, when it answered.
    pub upstream_status: Option<u16>,
    /// How long the provider asked us to wait (`Retry-After`).
    pub retry_after: Option<Duration>,
    /// The request parameter at fault, when the error is the client's.
    pub param: Option<String>,
    /// A machine-readable code to pass on (a provider's own, e.g. `invalid_value`); when
    /// absent, the gateway derives one from the class.
    pub code: Option<String>,
}

impl LlmError {
    /// An error of the given class with a message.
    pub fn new(class: ErrorClass, message: impl Into<String>) -> Self {
        Self {
            class,
            message: message.into(),
            upstream_status: None,
            retry_after: None,
            param: None,
            code: None,
        }
    }

    /// Records the provider's HTTP status.
    pub fn with_upstream_status(mut self, status: u16) -> Self {
        self.upstream_status = Some(status);
        self
    }

    /// Records the provider's `Retry-After`.
    pub fn with_retry_after(mut self, retry_after: Option<Duration>) -> Self {
        self.retry_after = retry_after;
        self
    }

    /// Names the request parameter at fault.
    pub fn with_param(mut self, param: impl Into<String>) -> Self {
        self.param = Some(param.into());
        self
    }

    /// Sets the machine-readable code to pass on.
    pub fn with_code(mut self, code: impl Into<String>) -> Self {
        self.code = Some(code.into());
        self
    }
}

impl fmt::Display for LlmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.class, self.message)
    }
}

impl std::error::Error for LlmError {}

/// The small set of failure classes that routing, limits and the error response act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorClass {
    /// The client's request is malformed or invalid (400).
    BadRequest,
    /// The client did not authenticate, or with a wrong key (401).
    Unauthenticated,
    /// The client may not do this (403).
    Forbidden,
    /// The model or resource does not exist (404).
    NotFound,
    /// The request body is larger than the gateway accepts (413).
    PayloadTooLarge,
    /// The provider rejected the deployment's credentials (a configuration fault: 502).
    ProviderAuthentication,
    /// The provider throttled us (429, with `Retry-After` when known).
    RateLimited,
    /// The provider is overloaded (503).
    Overloaded,
    /// The prompt does not fit the model's context window (400).
    ContextLengthExceeded,
    /// The provider refused the content (400).
    ContentPolicy,
    /// The provider failed or answered with something we cannot read (502).
    UpstreamServer,
    /// The provider could not be reached (502).
    Unreachable,
    /// The provider did not answer in time (504).
    Timeout,
    /// A fault of the gateway itself (500).
    Internal,
}

impl ErrorClass {
    /// A stable snake_case name, for logs, metrics and error codes.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BadRequest => "bad_request",
            Self::Unauthenticated => "unauthenticated",
            Self::Forbidden => "forbidden",
            Self::NotFound => "not_found",
            Self::PayloadTooLarge => "payload_too_large",
            Self::ProviderAuthentication => "provider_authentication",
            Self::RateLimited => "rate_limited",
            Self::Overloaded => "overloaded",
            Self::ContextLengthExceeded => "context_length_exceeded",
            Self::ContentPolicy => "content_policy",
            Self::UpstreamServer => "upstream_server_error",
            Self::Unreachable => "upstream_unreachable",
            Self::Timeout => "timeout",
            Self::Internal => "internal",
        }
    }

    /// Whether another attempt (on this deployment or another) may succeed.
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            Self::RateLimited | Self::Overloaded | Self::UpstreamServer | Self::Unreachable | Self::Timeout
        )
    }
}

impl fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
