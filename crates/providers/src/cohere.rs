//! The native Cohere adapter: Cohere's v2 API (`POST /v2/chat`, streamed as server-sent
//! events, and `POST /v2/embed`) behind the canonical OpenAI-shaped request and answer.
//!
//! The translation lives in `cohere/request.rs` (OpenAI → Cohere body), `cohere/response.rs`
//! (Cohere answer → OpenAI completion or embeddings), `cohere/stream.rs` (Cohere events →
//! OpenAI chunks) and `cohere/error.rs` (Cohere error answers → classes);
//! `docs/providers.md` has the mapping table
//! and what is lost. The translating functions are public ([`chat_request_body`],
//! [`chat_completion`], [`embed_request_body`], [`embeddings`], [`CohereChunks`],
//! [`classify_error`]) so that they can be tested on recorded payloads without a server.
//!
//! Requests go to `{api_base}/v2/chat` and `{api_base}/v2/embed` with `Authorization: Bearer
//! <key>`; `api_base` is `https://api.cohere.com` (a trailing `/v2` is accepted too).
//!
//! Failure behaviour: what Cohere cannot express (`n > 1`, audio parts, non-function tools)
//! is refused before sending with a bad request naming the field; transport failures and
//! non-2xx answers become an [`LlmError`] with the class the router acts on, keeping Cohere's
//! message (with the key redacted). A request that dies on a stale pooled connection is
//! resent once on a fresh one.

mod error;
mod request;
mod response;
mod stream;

use std::{
    fmt,
    sync::Arc,
    task::{Context, Poll},
};

use bytes::Bytes;
use futures_core::future::BoxFuture;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use switchyard_types::{
    json::Json,
    llm::{ErrorClass, LlmError, LlmRequest, LlmResponse, Operation, ResponseBody, UpstreamHeaders},
    openai::{ChatCompletion, ChatCompletionRequest, EmbeddingsRequest, EmbeddingsResponse},
};

pub use request::DEFAULT_INPUT_TYPE;
pub use stream::CohereChunks;

use crate::{
    client::send_once_more_if_stale,
    messages_over_chat::chat_only,
    openai::SettingsError,
    upstream::{redact, retry_after, transport_error, upstream_error},
};

/// The name Cohere's `X-Client-Name` header gives requests, for Cohere's own reporting; a
/// configured header of that name wins.
const CLIENT_NAME: &str = "switchyard";

/// Everything a Cohere deployment needs to send requests.
#[derive(Clone)]
pub struct CohereSettings {
    /// A label for logs and response headers, e.g. `cohere/command-a-03-2025`. Never a key.
    pub label: Arc<str>,
    /// Base URL: `https://api.cohere.com`, or a private deployment's.
    pub api_base: String,
    /// The API key (`CO_API_KEY`), sent as `Authorization: Bearer`.
    pub api_key: Option<String>,
    /// The upstream model id; `None` sends the request's model.
    pub model: Option<String>,
    /// Extra headers sent with every request.
    pub headers: HeaderMap,
}

impl fmt::Debug for CohereSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CohereSettings")
            .field("label", &self.label)
            .field("api_base", &self.api_base)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("model", &self.model)
            .finish_non_exhaustive()
    }
}

/// A deployment served by Cohere's v2 API. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Cohere {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    client: reqwest::Client,
    settings: CohereSettings,
    chat_url: reqwest::Url,
    embed_url: reqwest::Url,
    headers: HeaderMap,
}

// === impl Cohere ===

impl Cohere {
    /// An adapter sending through `client` (share one client between all deployments).
    pub fn new(client: reqwest::Client, settings: CohereSettings) -> Result<Self, SettingsError> {
        let base = settings.api_base.trim_end_matches('/');
        let base = base.strip_suffix("/v2").unwrap_or(base);
        // Parsed once here, not per request.
        let parse = |url: String| {
            reqwest::Url::parse(&url).map_err(|e| SettingsError::InvalidUrl(url, e.to_string()))
        };
        let chat_url = parse(format!("{base}/v2/chat"))?;
        let embed_url = parse(format!("{base}/v2/embed"))?;
        let mut headers = HeaderMap::new();
        headers.insert(HeaderName::from_static("x-client-name"), HeaderValue::from_static(CLIENT_NAME));
        headers.extend(settings.headers.clone());
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Some(key) = &settings.api_key {
            let mut value =
                HeaderValue::try_from(format!("Bearer {key}")).map_err(|_| SettingsError::InvalidKey)?;
            value.set_sensitive(true);
            headers.insert(header::AUTHORIZATION, value);
        }
        Ok(Self { inner: Arc::new(Inner { client, settings, chat_url, embed_url, headers }) })
    }

    /// The deployment's label.
    pub fn label(&self) -> &Arc<str> {
        &self.inner.settings.label
    }
}

impl tower::Service<LlmRequest> for Cohere {
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

// === the translations, public for tests on recorded payloads ===

/// The Cohere v2 chat body for `request`, naming `model`: what [`Cohere`] sends.
pub fn chat_request_body(request: &ChatCompletionRequest, model: &str) -> Result<Vec<u8>, LlmError> {
    serialise(&request::chat_body(request, model)?)
}

/// The OpenAI completion for a Cohere v2 chat answer `body`, naming `model`; `label` names the
/// deployment in errors. A `finish_reason` of `ERROR` or `TIMEOUT` is an error.
pub fn chat_completion(body: &[u8], model: &str, label: &str) -> Result<Json<ChatCompletion>, LlmError> {
    response::chat_completion(body, model, label)
}

/// The Cohere v2 embed body for `request`, naming `model`: what [`Cohere`] sends. The
/// `input_type` is the request's own (a non-OpenAI field), else [`DEFAULT_INPUT_TYPE`].
pub fn embed_request_body(request: &EmbeddingsRequest, model: &str) -> Result<Vec<u8>, LlmError> {
    serialise(&request::embed_body(request, model)?)
}

/// The OpenAI embeddings list for a Cohere v2 embed answer `body`, naming `model`; vectors are
/// base64 when `request` asked for `encoding_format: "base64"`.
pub fn embeddings(
    body: &[u8],
    request: &EmbeddingsRequest,
    model: &str,
    label: &str,
) -> Result<Json<EmbeddingsResponse>, LlmError> {
    response::embeddings(body, model, request::wants_base64(request), label)
}

/// The [`LlmError`] for a Cohere error answer: its class (see `cohere/error.rs`), Cohere's message
/// with `api_key` (and its prefix) redacted, the status and `Retry-After`.
pub fn classify_error(
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
    api_key: Option<&str>,
    label: &str,
) -> LlmError {
    let message = redact(&upstream_error(body).message, api_key);
    LlmError::new(
        error::classify(status, &message),
        format!("{label} answered {}: {message}", status.as_u16()),
    )
    .with_upstream_status(status.as_u16())
    .with_retry_after(retry_after(headers))
}

fn serialise(body: &impl serde::Serialize) -> Result<Vec<u8>, LlmError> {
    serde_json::to_vec(body)
        .map_err(|e| LlmError::new(ErrorClass::Internal, format!("could not serialise the request: {e}")))
}

// === impl Inner ===

impl Inner {
    async fn send(&self, request: LlmRequest) -> Result<LlmResponse, LlmError> {
        let model = self.settings.model.as_deref().unwrap_or_else(|| request.model());
        let extra = request.extensions.get::<UpstreamHeaders>().map(|h| &h.0);
        let served_by = Some(Arc::clone(&self.settings.label));
        let body = match &request.op {
            Operation::Chat(chat) => {
                let stream = chat.is_stream();
                let body = chat_request_body(chat, model)?;
                let response = self.execute(&self.chat_url, body.into(), stream, extra).await?;
                let response = self.check(response).await?;
                if stream {
                    let chunks = CohereChunks::new(response.bytes_stream(), model.into(), self.label());
                    ResponseBody::ChatStream(Box::pin(chunks))
                } else {
                    let bytes = self.read(response).await?;
                    ResponseBody::Chat(chat_completion(&bytes, model, &self.settings.label)?)
                }
            }
            Operation::Embeddings(embed) => {
                let body = embed_request_body(embed, model)?;
                let response = self.execute(&self.embed_url, body.into(), false, extra).await?;
                let bytes = self.read(self.check(response).await?).await?;
                ResponseBody::Embeddings(embeddings(&bytes, embed, model, &self.settings.label)?)
            }
            Operation::Messages(_) => return Err(chat_only(&self.settings.label)),
        };
        Ok(LlmResponse { body, served_by })
    }

    async fn execute(
        &self,
        url: &reqwest::Url,
        body: Bytes,
        stream: bool,
        extra: Option<&HeaderMap>,
    ) -> Result<reqwest::Response, LlmError> {
        let build = || {
            let mut builder = self.client.post(url.clone()).headers(self.headers.clone()).body(body.clone());
            if stream {
                builder = builder.header(header::ACCEPT, "text/event-stream");
            }
            // What layers asked for (a `traceparent`, ...) replaces configured headers.
            if let Some(extra) = extra {
                builder = builder.headers(extra.clone());
            }
            builder
        };
        send_once_more_if_stale(&self.settings.label, build).await.map_err(|err| self.transport_error(&err))
    }

    /// The response when it is a success, else the error it stands for.
    async fn check(&self, response: reqwest::Response) -> Result<reqwest::Response, LlmError> {
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.bytes().await.unwrap_or_default();
        Err(classify_error(status, &headers, &body, self.settings.api_key.as_deref(), &self.settings.label))
    }

    async fn read(&self, response: reqwest::Response) -> Result<Bytes, LlmError> {
        response.bytes().await.map_err(|e| self.transport_error(&e))
    }

    fn label(&self) -> Arc<str> {
        Arc::clone(&self.settings.label)
    }

    fn transport_error(&self, err: &reqwest::Error) -> LlmError {
        transport_error(&self.settings.label, &self.settings.api_base, err)
    }
}
