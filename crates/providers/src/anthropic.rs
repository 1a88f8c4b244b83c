//! The Anthropic Messages adapter: `POST {api_base}/v1/messages`, streamed and not.
//!
//! - An Anthropic client (`Operation::Messages`) is sent on losslessly: the body is the
//!   client's with the deployment's model spliced in (thinking blocks and signatures,
//!   `cache_control`, fields we do not model survive byte for byte), its `anthropic-version`
//!   and `anthropic-beta` headers go with it ([`ClientHeaders`]), and the answer's bytes come
//!   back untouched, events included (`ping` too).
//! - An OpenAI client (`Operation::Chat`) is translated ([`translate::chat_to_messages`]); a
//!   request without `max_tokens` is sent with the deployment's `default_max_tokens` (4096
//!   unless configured), since Anthropic requires one.
//!
//! The key goes as `x-api-key`; `anthropic-version` is the client's, else
//! [`DEFAULT_VERSION`]. Failure behaviour: Anthropic's error envelope is read for its type and
//! message (the key redacted) and classified: `rate_limit_error` (429, with `retry-after`),
//! `overloaded_error` (529), "prompt is too long" (400, context length), `authentication_error`
//! and `permission_error` (our key refused), `request_too_large` (413). An `error` event
//! mid-stream, or a stream that ends before `message_stop`, ends the stream with an error.
//!
//! [`translate::chat_to_messages`]: crate::translate::chat_to_messages

use std::{
    collections::VecDeque,
    fmt,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use bytes::Bytes;
use futures_core::{Stream, future::BoxFuture};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use switchyard_types::{
    anthropic::{ClientHeaders, DEFAULT_VERSION, StreamEvent},
    json::{Document, Json},
    llm::{ErrorClass, LlmError, LlmRequest, LlmResponse, Operation, ResponseBody, UpstreamHeaders},
    sse::{SseDecoder, SseEvent},
};

use crate::{
    client::send_once_more_if_stale,
    openai::SettingsError,
    translate::chat_to_messages,
    upstream::{classify, redact, retry_after, transport_error, truncate},
};

const VERSION: HeaderName = HeaderName::from_static("anthropic-version");
const BETA: HeaderName = HeaderName::from_static("anthropic-beta");

/// Everything an Anthropic deployment needs to send requests.
#[derive(Clone)]
pub struct AnthropicSettings {
    /// A label for logs and response headers, e.g. `anthropic/claude-sonnet-4-5`. Never a key.
    pub label: Arc<str>,
    /// Base URL, before `/v1/messages` (`https://api.anthropic.com`).
    pub api_base: String,
    /// The API key.
    pub api_key: Option<String>,
    /// The upstream model id; `None` sends the request's model unchanged.
    pub model: Option<String>,
    /// `max_tokens` for a translated request that names none.
    pub default_max_tokens: u64,
    /// Extra headers sent with every request (an `anthropic-beta` every request needs, ...).
    pub headers: HeaderMap,
}

impl fmt::Debug for AnthropicSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AnthropicSettings")
            .field("label", &self.label)
            .field("api_base", &self.api_base)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("model", &self.model)
            .field("default_max_tokens", &self.default_max_tokens)
            .finish_non_exhaustive()
    }
}

/// A deployment served by Anthropic's Messages API. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Anthropic {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    client: reqwest::Client,
    settings: AnthropicSettings,
    url: reqwest::Url,
    headers: HeaderMap,
}

// === impl Anthropic ===

impl Anthropic {
    /// An adapter sending through `client` (share one client between all deployments).
    pub fn new(client: reqwest::Client, settings: AnthropicSettings) -> Result<Self, SettingsError> {
        let url = format!("{}/v1/messages", settings.api_base.trim_end_matches('/'));
        let url =
            reqwest::Url::parse(&url).map_err(|e| SettingsError::InvalidUrl(url.clone(), e.to_string()))?;
        let mut headers = settings.headers.clone();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if !headers.contains_key(VERSION) {
            headers.insert(VERSION, HeaderValue::from_static(DEFAULT_VERSION));
        }
        if let Some(key) = &settings.api_key {
            let mut value = HeaderValue::try_from(key.as_str()).map_err(|_| SettingsError::InvalidKey)?;
            value.set_sensitive(true);
            headers.insert(HeaderName::from_static("x-api-key"), value);
        }
        Ok(Self { inner: Arc::new(Inner { client, settings, url, headers }) })
    }

    /// The deployment's label.
    pub fn label(&self) -> &Arc<str> {
        &self.inner.settings.label
    }
}

impl tower::Service<LlmRequest> for Anthropic {
    type Response = LlmResponse;
    type Error = LlmError;
    type Future = BoxFuture<'static, Result<LlmResponse, LlmError>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: LlmRequest) -> Self::Future {
        let inner = Arc::clone(&self.inner);
        Box::pin(async move { inner.send(request).await })
    }
}

// === impl Inner ===

impl Inner {
    async fn send(&self, mut request: LlmRequest) -> Result<LlmResponse, LlmError> {
        if let Some(model) = &self.settings.model {
            request.set_model(model);
        }
        let stream = request.is_stream();
        let body = match &request.op {
            Operation::Messages(messages) if messages.max_tokens.is_some() => request.to_json(),
            Operation::Messages(messages) => {
                let mut filled = (**messages).clone();
                filled.max_tokens = Some(self.settings.default_max_tokens);
                filled.model = request.model().to_owned();
                serde_json::to_vec(&filled)
            }
            Operation::Chat(chat) => {
                let body =
                    chat_to_messages::request(chat, request.model(), self.settings.default_max_tokens)?;
                serde_json::to_vec(&body)
            }
            Operation::Embeddings(_) => {
                return Err(LlmError::new(
                    ErrorClass::BadRequest,
                    format!(
                        "{} is an Anthropic model, and Anthropic has no embeddings API: send embeddings to another model.",
                        self.settings.label
                    ),
                ));
            }
        };
        let body = Bytes::from(body.map_err(|e| {
            LlmError::new(ErrorClass::Internal, format!("could not serialise the request: {e}"))
        })?);

        let response = self.execute(body, stream, &request).await?;
        if !response.status().is_success() {
            return Err(self.error_from(response).await);
        }
        let served_by = Some(Arc::clone(&self.settings.label));
        let label = Arc::clone(&self.settings.label);
        let body = match (&request.op, stream) {
            (Operation::Messages(_), true) => {
                ResponseBody::MessageStream(Box::pin(SseEvents::new(response.bytes_stream(), label)))
            }
            (Operation::Messages(_), false) => ResponseBody::Message(self.read_json(response).await?),
            (_, true) => {
                let events = Box::pin(SseEvents::new(response.bytes_stream(), label));
                ResponseBody::ChatStream(Box::pin(chat_to_messages::Chunks::new(events)))
            }
            (_, false) => ResponseBody::Chat(chat_to_messages::completion(&self.read_json(response).await?)?),
        };
        Ok(LlmResponse { body, served_by })
    }

    async fn execute(
        &self,
        body: Bytes,
        stream: bool,
        request: &LlmRequest,
    ) -> Result<reqwest::Response, LlmError> {
        let client_headers = request.extensions.get::<ClientHeaders>();
        let extra = request.extensions.get::<UpstreamHeaders>().map(|h| &h.0);
        let build = || {
            let mut builder =
                self.client.post(self.url.clone()).headers(self.headers.clone()).body(body.clone());
            if stream {
                builder = builder.header(header::ACCEPT, "text/event-stream");
            }
            // The client's version and betas are about this request; they replace configured ones.
            if let Some(version) = client_headers.and_then(|h| h.version.clone()) {
                builder = builder.header(VERSION, version);
            }
            if let Some(beta) = client_headers.and_then(|h| h.beta.clone()) {
                builder = builder.header(BETA, beta);
            }
            if let Some(extra) = extra {
                builder = builder.headers(extra.clone());
            }
            builder
        };
        send_once_more_if_stale(&self.settings.label, build)
            .await
            .map_err(|err| transport_error(&self.settings.label, &self.settings.api_base, &err))
    }

    async fn read_json<T: Document>(&self, response: reqwest::Response) -> Result<Json<T>, LlmError> {
        let label = &self.settings.label;
        let bytes =
            response.bytes().await.map_err(|e| transport_error(label, &self.settings.api_base, &e))?;
        Json::from_bytes(bytes).map_err(|e| {
            LlmError::new(
                ErrorClass::UpstreamServer,
                format!("{label} answered with a body that is not a valid Anthropic message: {e}"),
            )
        })
    }

    async fn error_from(&self, response: reqwest::Response) -> LlmError {
        let status = response.status();
        let retry_after = retry_after(response.headers());
        let body = response.bytes().await.unwrap_or_default();
        let (kind, message) = read_error(&body);
        let message = redact(&message, self.settings.api_key.as_deref());
        let class = classify_error(status, kind.as_deref(), &message);
        let mut error =
            LlmError::new(class, format!("{} answered {}: {message}", self.settings.label, status.as_u16()))
                .with_upstream_status(status.as_u16())
                .with_retry_after(retry_after);
        if let Some(kind) = kind.filter(|_| status.is_client_error()) {
            error = error.with_code(kind);
        }
        error
    }
}

/// The type and message of Anthropic's error envelope, or the body as text.
fn read_error(body: &[u8]) -> (Option<String>, String) {
    #[derive(serde::Deserialize)]
    struct Envelope {
        error: Inner,
    }
    #[derive(serde::Deserialize)]
    struct Inner {
        #[serde(rename = "type", default)]
        kind: Option<String>,
        #[serde(default)]
        message: Option<String>,
    }
    match serde_json::from_slice::<Envelope>(body) {
        Ok(Envelope { error }) => (error.kind, error.message.unwrap_or_default()),
        Err(_) => {
            let text = String::from_utf8_lossy(body);
            let text = text.trim();
            (None, if text.is_empty() { "(empty body)".to_owned() } else { truncate(text, 500).to_owned() })
        }
    }
}

/// Anthropic's error types onto the classes the router acts on.
fn classify_error(status: StatusCode, kind: Option<&str>, message: &str) -> ErrorClass {
    match kind {
        Some("overloaded_error") => ErrorClass::Overloaded,
        Some("rate_limit_error") => ErrorClass::RateLimited,
        Some("authentication_error" | "permission_error") => ErrorClass::ProviderAuthentication,
        Some("request_too_large") => ErrorClass::PayloadTooLarge,
        Some("invalid_request_error")
            if message.contains("prompt is too long") || message.contains("context window") =>
        {
            ErrorClass::ContextLengthExceeded
        }
        Some("api_error") => ErrorClass::UpstreamServer,
        _ => classify(status, kind, message),
    }
}

/// Anthropic stream events decoded from server-sent events, each yielded as soon as it is
/// complete. Ends after `message_stop`; an `error` event, a stream that breaks off or one that
/// ends before `message_stop` yields an error.
pub struct SseEvents<S> {
    bytes: S,
    decoder: SseDecoder,
    events: VecDeque<SseEvent>,
    scratch: Vec<SseEvent>,
    done: bool,
    label: Arc<str>,
}

impl<S> SseEvents<S> {
    /// Decodes `bytes`, naming `label` in errors.
    pub fn new(bytes: S, label: Arc<str>) -> Self {
        Self {
            bytes,
            decoder: SseDecoder::new(),
            events: VecDeque::new(),
            scratch: Vec::new(),
            done: false,
            label,
        }
    }

    fn event(&mut self, event: SseEvent) -> Result<Json<StreamEvent>, LlmError> {
        let document: Json<StreamEvent> = Json::from_bytes(Bytes::from(event.data)).map_err(|e| {
            LlmError::new(
                ErrorClass::UpstreamServer,
                format!("{} sent an event that is not JSON: {e}", self.label),
            )
        })?;
        if document.is_error() {
            let (kind, message) = read_error(document.raw());
            let class = classify_error(StatusCode::INTERNAL_SERVER_ERROR, kind.as_deref(), &message);
            return Err(LlmError::new(class, format!("{} sent an error mid-stream: {message}", self.label)));
        }
        self.done |= document.has_finish_reason();
        Ok(document)
    }
}

impl<S, E> Stream for SseEvents<S>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::error::Error,
{
    type Item = Result<Json<StreamEvent>, LlmError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            if let Some(event) = this.events.pop_front() {
                let item = this.event(event);
                if item.is_err() {
                    this.done = true;
                    this.events.clear();
                }
                return Poll::Ready(Some(item));
            }
            if this.done {
                return Poll::Ready(None);
            }
            match std::task::ready!(Pin::new(&mut this.bytes).poll_next(cx)) {
                Some(Ok(bytes)) => {
                    this.decoder.feed(&bytes, &mut this.scratch);
                    this.events.extend(this.scratch.drain(..));
                }
                Some(Err(err)) => {
                    this.done = true;
                    return Poll::Ready(Some(Err(LlmError::new(
                        ErrorClass::UpstreamServer,
                        format!("the stream from {} broke off: {err}", this.label),
                    ))));
                }
                None => {
                    this.done = true;
                    this.decoder.finish();
                    return Poll::Ready(Some(Err(LlmError::new(
                        ErrorClass::UpstreamServer,
                        format!("{} closed the stream before the answer was complete", this.label),
                    ))));
                }
            }
        }
    }
}
