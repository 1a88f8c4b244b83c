//! The LLM-level request, response and error that every layer of the stack passes along.
//!
//! Below the HTTP edge the gateway is a stack of `tower::Service<LlmRequest, Response =
//! LlmResponse, Error = LlmError>` layers. The request is parsed once at the edge; layers read
//! and rewrite it in place and never re-parse or clone message bodies.

use std::{fmt, pin::Pin, sync::Arc, time::Duration};

use futures_core::Stream;

use crate::anthropic::{Message, MessagesRequest, StreamEvent};
use crate::json::Json;
use crate::openai::{
    ChatCompletion, ChatCompletionChunk, ChatCompletionRequest, ChatMessage, EmbeddingsRequest,
    EmbeddingsResponse, Extra,
};

/// A request to a model: what to do, and per-request facts layers attach on the way.
///
/// Cloning is cheap and never copies the body: the body is shared, and the model a layer
/// routes to is kept beside it ([`LlmRequest::set_model`]), so a router can hold the request
/// for a retry while an attempt is in flight.
#[derive(Debug, Clone)]
pub struct LlmRequest {
    /// The operation and its body, as the client sent it.
    pub op: Operation,
    /// The model to send upstream, when a layer replaced the client's.
    model: Option<Arc<str>>,
    /// Per-request facts set by outer layers (request id, identity, deadline, ...).
    pub extensions: http::Extensions,
}

impl LlmRequest {
    /// A request with no extensions.
    pub fn new(op: Operation) -> Self {
        Self { op, model: None, extensions: http::Extensions::new() }
    }

    /// The model the request names now: the client's, or the one a layer set.
    pub fn model(&self) -> &str {
        match &self.model {
            Some(model) => model,
            None => self.op.model(),
        }
    }

    /// The model the client named, whatever a layer set since.
    pub fn requested_model(&self) -> &str {
        self.op.model()
    }

    /// Replaces the model to send (alias to upstream id) without touching the shared body.
    pub fn set_model(&mut self, model: &str) {
        self.model = (model != self.op.model()).then(|| Arc::from(model));
    }

    /// Whether the client asked for a stream.
    pub fn is_stream(&self) -> bool {
        match &self.op {
            Operation::Chat(chat) => chat.is_stream(),
            Operation::Messages(messages) => messages.is_stream(),
            Operation::Embeddings(_) => false,
        }
    }

    /// The body as JSON in the client's dialect, naming [`LlmRequest::model`].
    pub fn to_json(&self) -> serde_json::Result<Vec<u8>> {
        let body = match &self.op {
            Operation::Chat(chat) => serde_json::to_vec(&**chat)?,
            Operation::Messages(messages) => serde_json::to_vec(&**messages)?,
            Operation::Embeddings(embeddings) => serde_json::to_vec(&**embeddings)?,
        };
        self.with_model(body)
    }

    /// As [`LlmRequest::to_json`], but a streamed chat also asks for the final usage chunk:
    /// `stream_options.include_usage` is `true`, whatever the client set, and every other
    /// `stream_options` field the client sent is kept. A stream is billed from that chunk, so
    /// even a client's explicit `false` is overridden upstream; the gateway drops the chunk
    /// before it reaches a client that did not ask for it. Anything else serialises exactly
    /// as [`LlmRequest::to_json`] does.
    ///
    /// The body is still serialised once, through a borrowed view with the same field order,
    /// so the other fields come out byte for byte as `to_json` writes them.
    pub fn to_json_with_stream_usage(&self) -> serde_json::Result<Vec<u8>> {
        match &self.op {
            Operation::Chat(chat)
                if chat.is_stream()
                    && chat.stream_options.as_ref().and_then(|o| o.include_usage) != Some(true) =>
            {
                let view = ChatAskingUsage {
                    model: &chat.model,
                    messages: &chat.messages,
                    stream: chat.stream,
                    stream_options: UsageStreamOptions {
                        include_usage: true,
                        extra: chat.stream_options.as_ref().map(|o| &o.extra),
                    },
                    user: chat.user.as_deref(),
                    extra: &chat.extra,
                };
                self.with_model(serde_json::to_vec(&view)?)
            }
            _ => self.to_json(),
        }
    }

    fn with_model(&self, body: Vec<u8>) -> serde_json::Result<Vec<u8>> {
        match &self.model {
            None => Ok(body),
            Some(model) => replace_model(body, self.op.model(), model),
        }
    }
}

/// A [`ChatCompletionRequest`] as it serialises, with `stream_options.include_usage` set.
/// The fields are those of `ChatCompletionRequest`, in its order: keep them in step.
#[derive(serde::Serialize)]
struct ChatAskingUsage<'a> {
    model: &'a str,
    messages: &'a [ChatMessage],
    #[serde(skip_serializing_if = "Option::is_none")]
    stream: Option<bool>,
    stream_options: UsageStreamOptions<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<&'a str>,
    #[serde(flatten)]
    extra: &'a Extra,
}

/// `stream_options` asking for usage, with the client's other options.
#[derive(serde::Serialize)]
struct UsageStreamOptions<'a> {
    include_usage: bool,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    extra: Option<&'a Extra>,
}

/// Swaps the model in a serialised body. Every body serialises `model` first (it is their
/// first field), so the swap is a splice of the opening bytes, not a re-serialisation; should
/// that ever stop holding, the slow path rewrites the document.
fn replace_model(body: Vec<u8>, old: &str, new: &str) -> serde_json::Result<Vec<u8>> {
    const OPEN: &[u8] = b"{\"model\":";
    let old = serde_json::to_vec(old)?;
    let prefix = OPEN.len() + old.len();
    if body.starts_with(OPEN) && body.get(OPEN.len()..prefix) == Some(old.as_slice()) {
        let mut out = Vec::with_capacity(body.len() + new.len());
        out.extend_from_slice(OPEN);
        serde_json::to_writer(&mut out, new)?;
        out.extend_from_slice(&body[prefix..]);
        return Ok(out);
    }
    let mut document: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(&body)?;
    document.insert("model".to_owned(), new.into());
    serde_json::to_vec(&document)
}

/// What the client asked for. The body is shared: clones of a request do not copy it.
#[derive(Debug, Clone)]
pub enum Operation {
    /// A chat completion, streamed or not.
    Chat(Arc<ChatCompletionRequest>),
    /// An Anthropic Messages request, streamed or not: the client spoke Anthropic's dialect.
    /// An Anthropic deployment sends it as it is; any other is served through the OpenAI
    /// dialect (`switchyard-providers`' `MessagesOverChatLayer`).
    Messages(Arc<MessagesRequest>),
    /// Embeddings of one or more inputs.
    Embeddings(Arc<EmbeddingsRequest>),
}

impl Operation {
    /// A chat completion request.
    pub fn chat(request: ChatCompletionRequest) -> Self {
        Self::Chat(Arc::new(request))
    }

    /// An Anthropic Messages request.
    pub fn messages(request: MessagesRequest) -> Self {
        Self::Messages(Arc::new(request))
    }

    /// An embeddings request.
    pub fn embeddings(request: EmbeddingsRequest) -> Self {
        Self::Embeddings(Arc::new(request))
    }

    /// The model the body names.
    pub fn model(&self) -> &str {
        match self {
            Self::Chat(chat) => &chat.model,
            Self::Messages(messages) => &messages.model,
            Self::Embeddings(embeddings) => &embeddings.model,
        }
    }

    /// The operation's name as the OpenTelemetry GenAI conventions spell it.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Chat(_) | Self::Messages(_) => "chat",
            Self::Embeddings(_) => "embeddings",
        }
    }
}

/// Tokens of one request, by kind, normalised across providers for accounting and metrics.
///
/// `input` counts every prompt token, cached and cache-writing ones included; `output` counts
/// every completion token, reasoning ones included. The other fields say how many of those
/// were of a kind that is priced differently.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Usage {
    /// Prompt tokens, cached and cache-creation ones included.
    pub input: u64,
    /// Completion tokens, reasoning ones included.
    pub output: u64,
    /// Prompt tokens read from the provider's prompt cache.
    pub cached_input: u64,
    /// Prompt tokens written to the provider's prompt cache.
    pub cache_creation: u64,
    /// Completion tokens spent on reasoning.
    pub reasoning: u64,
}

// === impl Usage ===

impl Usage {
    /// Input and output tokens together.
    pub fn total(&self) -> u64 {
        self.input + self.output
    }

    /// Takes in a later report of the same answer: each kind is the larger of the two. A
    /// stream reports its usage in parts (Anthropic: the input at `message_start`, the output,
    /// cumulative, at `message_delta`) or once at its end (OpenAI); either way the largest
    /// figure of each kind is the answer's.
    pub fn merge(&mut self, later: &Usage) {
        self.input = self.input.max(later.input);
        self.output = self.output.max(later.output);
        self.cached_input = self.cached_input.max(later.cached_input);
        self.cache_creation = self.cache_creation.max(later.cache_creation);
        self.reasoning = self.reasoning.max(later.reasoning);
    }
}

/// Headers a layer asks the provider adapter to send upstream with this request, in
/// [`LlmRequest::extensions`]; the adapter adds them to the provider request, replacing any
/// configured header of the same name.
///
/// A layer adds to the map rather than replacing it, so that several layers can each ask for
/// their own headers. The trace layer puts the W3C `traceparent` (and `tracestate`) of the
/// attempt here, so that the provider's own spans join the gateway's trace.
#[derive(Debug, Clone, Default)]
pub struct UpstreamHeaders(pub http::HeaderMap);

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
            ResponseBody::Message(_) => "Message",
            ResponseBody::MessageStream(_) => "MessageStream",
            ResponseBody::Embeddings(_) => "Embeddings",
        };
        f.debug_struct("LlmResponse").field("body", &body).field("served_by", &self.served_by).finish()
    }
}

/// A response body. Documents are kept as received ([`Json`]): same-dialect traffic forwards
/// the provider's bytes, and translation parses them when it needs to.
///
/// An answer is in the dialect of the request's [`Operation`]: `Chat` is answered with `Chat`
/// or `ChatStream`, `Messages` with `Message` or `MessageStream`.
pub enum ResponseBody {
    /// A complete chat completion.
    Chat(Json<ChatCompletion>),
    /// Chat completion chunks, each yielded as soon as the provider sent it.
    ChatStream(ChunkStream),
    /// A complete Anthropic message.
    Message(Json<Message>),
    /// Anthropic stream events, each yielded as soon as the provider sent it.
    MessageStream(EventStream),
    /// Embeddings.
    Embeddings(Json<EmbeddingsResponse>),
}

/// A stream of documents of one dialect. Dropping it cancels the upstream request.
pub type DocStream<T> = Pin<Box<dyn Stream<Item = Result<Json<T>, LlmError>> + Send>>;

/// A stream of chat completion chunks.
pub type ChunkStream = DocStream<ChatCompletionChunk>;

/// A stream of Anthropic Messages events.
pub type EventStream = DocStream<StreamEvent>;

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
    /// The request contradicts what the gateway holds (a duplicate id, a team that still has keys) (409).
    Conflict,
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
    /// The client's own rate limit (its key's, team's, user's or the model's) is reached (429).
    LimitExceeded,
    /// The client's budget (its key's, team's or user's) is spent (429, not worth retrying
    /// before the budget's period starts again).
    BudgetExceeded,
}

impl ErrorClass {
    /// A stable snake_case name, for logs, metrics and error codes.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BadRequest => "bad_request",
            Self::Unauthenticated => "unauthenticated",
            Self::Forbidden => "forbidden",
            Self::NotFound => "not_found",
            Self::Conflict => "conflict",
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
            Self::LimitExceeded => "limit_exceeded",
            Self::BudgetExceeded => "budget_exceeded",
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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn chat(body: serde_json::Value) -> LlmRequest {
        LlmRequest::new(Operation::chat(serde_json::from_value(body).expect("valid request")))
    }

    #[test]
    fn the_model_a_layer_sets_is_the_one_sent_and_the_body_is_untouched() {
        let mut request = chat(json!({"model": "alias \"q\"", "messages": [], "seed": 7, "user": "u"}));
        let retry = request.clone();
        request.set_model("upstream-id");
        assert_eq!(request.model(), "upstream-id");
        assert_eq!(request.requested_model(), "alias \"q\"");
        assert_eq!(retry.model(), "alias \"q\"", "a clone keeps its own model");

        let sent: serde_json::Value =
            serde_json::from_slice(&request.to_json().expect("json")).expect("valid");
        assert_eq!(sent, json!({"model": "upstream-id", "messages": [], "seed": 7, "user": "u"}));
        let original: serde_json::Value =
            serde_json::from_slice(&retry.to_json().expect("json")).expect("valid");
        assert_eq!(original["model"], "alias \"q\"");
    }

    #[test]
    fn setting_the_clients_own_model_back_clears_the_override() {
        let mut request = chat(json!({"model": "m", "messages": []}));
        request.set_model("other");
        request.set_model("m");
        assert_eq!(request.to_json().expect("json"), br#"{"model":"m","messages":[]}"#);
    }

    #[test]
    fn the_slow_path_rewrites_a_body_that_does_not_open_with_the_model() {
        let body = br#"{"input":"x","model":"a"}"#.to_vec();
        let out: serde_json::Value =
            serde_json::from_slice(&replace_model(body, "a", "b").expect("rewritten")).expect("valid");
        assert_eq!(out, json!({"input": "x", "model": "b"}));
    }

    #[test]
    fn a_stream_asks_for_usage_and_keeps_every_other_byte() {
        let body = json!({"model": "alias", "messages": [{"role": "user", "content": "hi", "name": "n"}],
                          "stream": true, "user": "u", "seed": 7, "tools": [{"type": "function"}]});
        let mut request = chat(body);
        request.set_model("upstream");
        let plain = String::from_utf8(request.to_json().expect("json")).expect("utf-8");
        let asking = String::from_utf8(request.to_json_with_stream_usage().expect("json")).expect("utf-8");
        let expected =
            plain.replace(r#""stream":true,"#, r#""stream":true,"stream_options":{"include_usage":true},"#);
        assert_ne!(plain, expected);
        assert_eq!(asking, expected);
        assert!(asking.starts_with(r#"{"model":"upstream","#), "the model splice still applies: {asking}");
    }

    #[test]
    fn the_clients_other_stream_options_are_kept_and_its_false_overridden() {
        let request = chat(json!({"model": "m", "messages": [], "stream": true,
                                  "stream_options": {"include_usage": false, "include_obfuscation": false}}));
        let sent: serde_json::Value =
            serde_json::from_slice(&request.to_json_with_stream_usage().expect("json")).expect("valid");
        assert_eq!(sent["stream_options"], json!({"include_usage": true, "include_obfuscation": false}));

        let only_other = chat(json!({"model": "m", "messages": [], "stream": true,
                                     "stream_options": {"include_obfuscation": false}}));
        let sent: serde_json::Value =
            serde_json::from_slice(&only_other.to_json_with_stream_usage().expect("json")).expect("valid");
        assert_eq!(sent["stream_options"], json!({"include_usage": true, "include_obfuscation": false}));
    }

    #[test]
    fn anything_else_serialises_as_to_json_does() {
        for body in [
            json!({"model": "m", "messages": [], "stream": true, "stream_options": {"include_usage": true, "x": 1}}),
            json!({"model": "m", "messages": []}),
            json!({"model": "m", "messages": [], "stream": false}),
            json!({"model": "m", "messages": [], "stream": false, "stream_options": {"include_usage": false}}),
        ] {
            let request = chat(body);
            assert_eq!(request.to_json_with_stream_usage().expect("json"), request.to_json().expect("json"));
        }
        let embeddings = LlmRequest::new(Operation::embeddings(EmbeddingsRequest {
            model: "e".into(),
            input: json!("hi"),
            extra: Default::default(),
        }));
        assert_eq!(
            embeddings.to_json_with_stream_usage().expect("json"),
            embeddings.to_json().expect("json")
        );
    }

    #[test]
    fn embeddings_splice_too() {
        let body = EmbeddingsRequest { model: "e".into(), input: json!("hi"), extra: Default::default() };
        let mut request = LlmRequest::new(Operation::embeddings(body));
        request.set_model("text-embedding-3-small");
        assert_eq!(request.to_json().expect("json"), br#"{"model":"text-embedding-3-small","input":"hi"}"#);
    }
}
