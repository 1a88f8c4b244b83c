//! The OpenAI-compatible adapter: OpenAI itself, Azure OpenAI, every preset, and any server
//! that speaks the dialect (vLLM, Ollama, LM Studio, llama.cpp).
//!
//! Same-dialect traffic needs no translation: the request is re-serialised with the
//! deployment's model and sent; the answer is parsed once (to learn its usage) and handed up.
//! Streams are decoded event by event as bytes arrive and yielded one chunk at a time.
//!
//! A stream reports its usage only when asked (`stream_options.include_usage`), and a stream
//! without usage cannot be billed. An adapter built [`OpenAiCompatible::asking_stream_usage`]
//! (for providers that accept the option: [`Preset::accepts_stream_options`]) therefore asks
//! for it on every streamed chat, and passes the usage chunk up like any other chunk: the
//! gateway, not the adapter, drops it before a client that did not ask for it.
//!
//! [`Preset::accepts_stream_options`]: crate::presets::Preset::accepts_stream_options
//!
//! Failure behaviour: transport failures and non-2xx answers become an [`LlmError`] with the
//! class the router acts on; the provider's own message is kept (with any API key redacted).
//! A request that dies on a stale pooled connection is resent once on a fresh one.

use std::{
    collections::VecDeque,
    fmt,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use bytes::Bytes;
use futures_core::{Stream, future::BoxFuture};
use http::{HeaderMap, HeaderName, HeaderValue, header};
use pin_project_lite::pin_project;
use switchyard_types::{
    json::{Document, Json},
    llm::{ErrorClass, LlmError, LlmRequest, LlmResponse, Operation, ResponseBody, UpstreamHeaders},
    openai::ChatCompletionChunk,
    sse::{DONE, SseDecoder, SseEvent},
};

use crate::{
    client::send_once_more_if_stale,
    messages_over_chat::chat_only,
    presets::{AuthStyle, UrlStyle},
    upstream::{classify, redact, retry_after, transport_error, upstream_error},
};

/// Everything an OpenAI-compatible deployment needs to send requests.
#[derive(Clone)]
pub struct OpenAiSettings {
    /// A label for logs and response headers, e.g. `groq/llama-3.1-8b-instant`. Never a key.
    pub label: Arc<str>,
    /// Base URL (`https://api.openai.com/v1`); for Azure the resource endpoint.
    pub api_base: String,
    /// The API key, if the provider needs one.
    pub api_key: Option<String>,
    /// How the key is sent.
    pub auth: AuthStyle,
    /// How URLs are built.
    pub url_style: UrlStyle,
    /// Azure's `api-version` query parameter.
    pub api_version: Option<String>,
    /// The upstream model id; `None` sends the request's model unchanged.
    pub model: Option<String>,
    /// Extra headers sent with every request (e.g. OpenRouter's `HTTP-Referer`). Time
    /// limits are not the adapter's: `switchyard-router`'s deadline layer wraps it.
    pub headers: HeaderMap,
}

impl fmt::Debug for OpenAiSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenAiSettings")
            .field("label", &self.label)
            .field("api_base", &self.api_base)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("auth", &self.auth)
            .field("url_style", &self.url_style)
            .field("model", &self.model)
            .finish_non_exhaustive()
    }
}

/// A deployment served by an OpenAI-compatible API. Cheap to clone.
#[derive(Clone, Debug)]
pub struct OpenAiCompatible {
    inner: Arc<Inner>,
}

#[derive(Debug, Clone)]
struct Inner {
    client: reqwest::Client,
    settings: OpenAiSettings,
    chat_url: reqwest::Url,
    embeddings_url: reqwest::Url,
    headers: HeaderMap,
    /// Whether streamed chats ask for the final usage chunk.
    ask_stream_usage: bool,
}

/// Why an adapter could not be built from its settings.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// The key holds bytes a header cannot carry.
    #[error("the API key contains characters that cannot be sent in an HTTP header")]
    InvalidKey,
    /// Azure needs an `api_version`.
    #[error("Azure deployments need `api_version` (for example 2024-10-21)")]
    MissingApiVersion,
    /// Azure needs a deployment name as `model`.
    #[error("Azure deployments need `model`: the Azure deployment name")]
    MissingDeployment,
    /// The base URL does not parse.
    #[error("`{0}` is not a valid URL: {1}")]
    InvalidUrl(String, String),
}

// === impl OpenAiCompatible ===

impl OpenAiCompatible {
    /// An adapter sending through `client` (share one client between all deployments).
    pub fn new(client: reqwest::Client, settings: OpenAiSettings) -> Result<Self, SettingsError> {
        let base = settings.api_base.trim_end_matches('/');
        let (chat_url, embeddings_url) = match settings.url_style {
            UrlStyle::OpenAi => (format!("{base}/chat/completions"), format!("{base}/embeddings")),
            UrlStyle::Azure => {
                let version = settings.api_version.as_deref().ok_or(SettingsError::MissingApiVersion)?;
                let deployment = settings.model.as_deref().ok_or(SettingsError::MissingDeployment)?;
                let prefix = format!("{base}/openai/deployments/{deployment}");
                (
                    format!("{prefix}/chat/completions?api-version={version}"),
                    format!("{prefix}/embeddings?api-version={version}"),
                )
            }
        };
        // Parsed once here: parsing a URL per request costs more than the rest of building it.
        let parse = |url: String| {
            reqwest::Url::parse(&url).map_err(|e| SettingsError::InvalidUrl(url, e.to_string()))
        };
        let (chat_url, embeddings_url) = (parse(chat_url)?, parse(embeddings_url)?);
        let mut headers = settings.headers.clone();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Some(key) = &settings.api_key {
            let (name, value) = match settings.auth {
                AuthStyle::Bearer => (header::AUTHORIZATION, format!("Bearer {key}")),
                AuthStyle::ApiKeyHeader => (HeaderName::from_static("api-key"), key.clone()),
            };
            let mut value = HeaderValue::try_from(value).map_err(|_| SettingsError::InvalidKey)?;
            value.set_sensitive(true);
            headers.insert(name, value);
        }
        let inner = Inner { client, settings, chat_url, embeddings_url, headers, ask_stream_usage: false };
        Ok(Self { inner: Arc::new(inner) })
    }

    /// Whether a streamed chat asks the provider for its usage: when `ask` is true, the body
    /// goes with `stream_options.include_usage: true` (the client's other `stream_options`
    /// kept, an explicit `false` overridden, since billing needs the usage), as
    /// [`LlmRequest::to_json_with_stream_usage`] writes it. Off by default, because a strict
    /// server refuses a field it does not know: turn it on for the presets that accept it
    /// ([`Preset::accepts_stream_options`]).
    ///
    /// [`Preset::accepts_stream_options`]: crate::presets::Preset::accepts_stream_options
    pub fn asking_stream_usage(mut self, ask: bool) -> Self {
        // Copies the settings only when the adapter was cloned already; set at build time it
        // changes the only copy.
        Arc::make_mut(&mut self.inner).ask_stream_usage = ask;
        self
    }

    /// The deployment's label.
    pub fn label(&self) -> &Arc<str> {
        &self.inner.settings.label
    }
}

impl tower::Service<LlmRequest> for OpenAiCompatible {
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
        if let Some(model) = &self.settings.model
            && self.settings.url_style == UrlStyle::OpenAi
        {
            request.set_model(model);
        }
        let stream = request.is_stream();
        let url = match &request.op {
            Operation::Chat(_) => &self.chat_url,
            Operation::Embeddings(_) => &self.embeddings_url,
            Operation::Messages(_) => return Err(chat_only(&self.settings.label)),
        };
        let body =
            if self.ask_stream_usage { request.to_json_with_stream_usage() } else { request.to_json() };
        let body = Bytes::from(body.map_err(|e| {
            LlmError::new(ErrorClass::Internal, format!("could not serialise the request: {e}"))
        })?);

        let served_by = Some(Arc::clone(&self.settings.label));
        let extra = request.extensions.get::<UpstreamHeaders>().map(|h| &h.0);
        let response = self.execute(url, body, stream, extra).await?;
        if !response.status().is_success() {
            return Err(self.error_from(response).await);
        }
        let body = match request.op {
            Operation::Chat(_) if stream => {
                ResponseBody::ChatStream(Box::pin(SseChunks::new(response.bytes_stream(), self.label())))
            }
            Operation::Chat(_) => ResponseBody::Chat(self.read_json(response).await?),
            Operation::Embeddings(_) => ResponseBody::Embeddings(self.read_json(response).await?),
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
            // What layers asked for (a `traceparent`, ...) replaces configured headers of the
            // same name: it is about this request, they are about every request.
            if let Some(extra) = extra {
                builder = builder.headers(extra.clone());
            }
            builder
        };
        send_once_more_if_stale(&self.settings.label, build).await.map_err(|err| self.transport_error(&err))
    }

    async fn read_json<T: Document>(&self, response: reqwest::Response) -> Result<Json<T>, LlmError> {
        let bytes = response.bytes().await.map_err(|e| self.transport_error(&e))?;
        Json::from_bytes(bytes).map_err(|e| {
            LlmError::new(
                ErrorClass::UpstreamServer,
                format!("{} answered with a body that is not a valid OpenAI response: {e}", self.label()),
            )
        })
    }

    fn label(&self) -> Arc<str> {
        Arc::clone(&self.settings.label)
    }

    fn transport_error(&self, err: &reqwest::Error) -> LlmError {
        transport_error(&self.settings.label, &self.settings.api_base, err)
    }

    async fn error_from(&self, response: reqwest::Response) -> LlmError {
        let status = response.status();
        let retry_after = retry_after(response.headers());
        let body = response.bytes().await.unwrap_or_default();
        let upstream = upstream_error(&body);
        let message = redact(&upstream.message, self.settings.api_key.as_deref());
        let class = classify(status, upstream.code.as_deref(), &message);
        let mut error = LlmError::new(
            class,
            format!("{} answered {}: {}", self.settings.label, status.as_u16(), message),
        )
        .with_upstream_status(status.as_u16())
        .with_retry_after(retry_after);
        // The client's mistake as the provider named it: keep its parameter and code, so that
        // SDKs (BadRequestError.param) and clients see what the provider said.
        if status.is_client_error() {
            if let Some(param) = upstream.param {
                error = error.with_param(param);
            }
            if let Some(code) = upstream.code {
                error = error.with_code(code);
            }
        }
        error
    }
}

pin_project! {
    /// Chat completion chunks decoded from an OpenAI server-sent-event byte stream.
    ///
    /// Yields each chunk as soon as its event is complete; ends at `data: [DONE]`. A stream that
    /// breaks off, or ends before any choice finished, yields an error rather than ending quietly.
    pub struct SseChunks<S> {
        #[pin]
        bytes: S,
        decoder: SseDecoder,
        events: VecDeque<SseEvent>,
        scratch: Vec<SseEvent>,
        finished_choice: bool,
        done: bool,
        label: Arc<str>,
    }
}

impl<S> SseChunks<S> {
    /// Decodes `bytes`, naming `label` in errors.
    pub fn new(bytes: S, label: Arc<str>) -> Self {
        Self {
            bytes,
            decoder: SseDecoder::new(),
            events: VecDeque::new(),
            scratch: Vec::new(),
            finished_choice: false,
            done: false,
            label,
        }
    }
}

impl<S, E> Stream for SseChunks<S>
where
    S: Stream<Item = Result<Bytes, E>>,
    E: std::error::Error,
{
    type Item = Result<Json<ChatCompletionChunk>, LlmError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let mut this = self.project();
        loop {
            if let Some(event) = this.events.pop_front() {
                if event.data == DONE {
                    *this.done = true;
                    this.events.clear();
                    return Poll::Ready(None);
                }
                return Poll::Ready(Some(parse_chunk(event.data, this.label, this.finished_choice)));
            }
            if *this.done {
                return Poll::Ready(None);
            }
            match this.bytes.as_mut().poll_next(cx) {
                Poll::Ready(Some(Ok(bytes))) => {
                    this.decoder.feed(&bytes, this.scratch);
                    this.events.extend(this.scratch.drain(..));
                }
                Poll::Ready(Some(Err(err))) => {
                    *this.done = true;
                    return Poll::Ready(Some(Err(LlmError::new(
                        ErrorClass::UpstreamServer,
                        format!("the stream from {} broke off: {err}", this.label),
                    ))));
                }
                Poll::Ready(None) => {
                    *this.done = true;
                    this.decoder.finish();
                    if !*this.finished_choice {
                        return Poll::Ready(Some(Err(LlmError::new(
                            ErrorClass::UpstreamServer,
                            format!("{} closed the stream before the answer was complete", this.label),
                        ))));
                    }
                    return Poll::Ready(None);
                }
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

fn parse_chunk(
    data: String,
    label: &str,
    finished_choice: &mut bool,
) -> Result<Json<ChatCompletionChunk>, LlmError> {
    let chunk = Json::from_bytes(Bytes::from(data)).map_err(|e| {
        LlmError::new(
            ErrorClass::UpstreamServer,
            format!("{label} sent an event that is not a JSON chunk: {e}"),
        )
    })?;
    if chunk.is_error() {
        let message = upstream_error(chunk.raw()).message;
        return Err(LlmError::new(
            ErrorClass::UpstreamServer,
            format!("{label} sent an error mid-stream: {message}"),
        ));
    }
    *finished_choice |= chunk.has_finish_reason();
    Ok(chunk)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Headers a layer asked for reach the provider, and replace a configured one of the
    /// same name; the other configured headers and the key still go.
    #[tokio::test]
    async fn sends_the_headers_layers_ask_for() {
        use switchyard_testkit::{MockConfig, MockServer};
        use tower::ServiceExt;

        let mock = MockServer::start(MockConfig::default()).await.unwrap();
        let mut configured = HeaderMap::new();
        configured.insert("traceparent", HeaderValue::from_static("configured"));
        configured.insert("x-team", HeaderValue::from_static("search"));
        let client = crate::client::build_client(&crate::client::ClientSettings::default()).unwrap();
        let adapter = OpenAiCompatible::new(
            client,
            OpenAiSettings {
                label: "openai/gpt-test".into(),
                api_base: mock.url(),
                api_key: Some("sk-test".into()),
                auth: AuthStyle::Bearer,
                url_style: UrlStyle::OpenAi,
                api_version: None,
                model: Some("gpt-test".into()),
                headers: configured,
            },
        )
        .unwrap();
        let body = serde_json::json!({"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}]});
        let mut request = LlmRequest::new(Operation::chat(serde_json::from_value(body).unwrap()));
        let traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        let mut asked = HeaderMap::new();
        asked.insert("traceparent", HeaderValue::from_static(traceparent));
        request.extensions.insert(UpstreamHeaders(asked));
        adapter.oneshot(request).await.unwrap();

        let sent = &mock.requests()[0].headers;
        assert_eq!(sent.get_all("traceparent").iter().collect::<Vec<_>>(), [traceparent]);
        assert_eq!(sent["x-team"], "search");
        assert_eq!(sent[header::AUTHORIZATION], "Bearer sk-test");
    }

    mod stream_usage {
        use futures_util::StreamExt;
        use serde_json::{Value, json};
        use switchyard_testkit::{MockConfig, MockServer};
        use tower::ServiceExt;

        use super::*;

        fn adapter(mock: &MockServer, ask: bool) -> OpenAiCompatible {
            let client = crate::client::build_client(&crate::client::ClientSettings::default()).unwrap();
            let settings = OpenAiSettings {
                label: "openai/gpt-test".into(),
                api_base: mock.url(),
                api_key: Some("sk-test".into()),
                auth: AuthStyle::Bearer,
                url_style: UrlStyle::OpenAi,
                api_version: None,
                model: Some("gpt-upstream".into()),
                headers: HeaderMap::new(),
            };
            OpenAiCompatible::new(client, settings).unwrap().asking_stream_usage(ask)
        }

        /// Sends `body` and returns what the provider received and the chunks (or the
        /// complete answer's usage) that came back.
        async fn send(adapter: OpenAiCompatible, mock: &MockServer, body: Value) -> (Value, Vec<Value>) {
            let request = LlmRequest::new(Operation::chat(serde_json::from_value(body).unwrap()));
            let response = adapter.oneshot(request).await.unwrap();
            let answers = match response.body {
                ResponseBody::ChatStream(stream) => {
                    stream.map(|c| serde_json::from_slice(c.unwrap().raw()).unwrap()).collect().await
                }
                ResponseBody::Chat(completion) => vec![serde_json::from_slice(completion.raw()).unwrap()],
                _ => unreachable!("a chat was sent"),
            };
            let sent = mock.requests().pop().expect("the provider received the request").body;
            (sent, answers)
        }

        fn chat(extra: Value) -> Value {
            let mut body = json!({"model": "alias", "messages": [{"role": "user", "content": "hi", "name": "n"}],
                                  "seed": 7, "user": "u", "max_tokens": 5, "vendor_field": {"a": [1, 2]}});
            body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
            body
        }

        /// What the provider should receive: the client's body with the deployment's model.
        fn upstream(mut body: Value) -> Value {
            body["model"] = json!("gpt-upstream");
            body
        }

        #[tokio::test]
        async fn a_stream_without_include_usage_asks_for_it_and_the_usage_chunk_comes_back() {
            let mock = MockServer::start(MockConfig::default()).await.unwrap();
            let body = chat(json!({"stream": true}));
            let (sent, chunks) = send(adapter(&mock, true), &mock, body.clone()).await;

            let mut expected = upstream(body);
            expected["stream_options"] = json!({"include_usage": true});
            assert_eq!(sent, expected, "only stream_options was added");
            let last = chunks.last().expect("chunks");
            assert!(last["usage"]["total_tokens"].as_u64().is_some_and(|t| t > 0), "{last}");
            assert_eq!(last["choices"], json!([]), "the usage-only chunk is passed up, not dropped");
        }

        #[tokio::test]
        async fn the_clients_own_stream_options_are_kept_and_its_false_is_overridden() {
            let mock = MockServer::start(MockConfig::default()).await.unwrap();
            let body = chat(
                json!({"stream": true, "stream_options": {"include_usage": false, "include_obfuscation": false}}),
            );
            let (sent, _) = send(adapter(&mock, true), &mock, body.clone()).await;
            let mut expected = upstream(body);
            expected["stream_options"] = json!({"include_usage": true, "include_obfuscation": false});
            assert_eq!(sent, expected, "billing needs the usage even when the client said no");
        }

        #[tokio::test]
        async fn a_stream_that_asks_already_is_sent_as_is() {
            let mock = MockServer::start(MockConfig::default()).await.unwrap();
            let body = chat(json!({"stream": true, "stream_options": {"include_usage": true}}));
            let (sent, _) = send(adapter(&mock, true), &mock, body.clone()).await;
            assert_eq!(sent, upstream(body));
        }

        #[tokio::test]
        async fn a_complete_answer_is_sent_as_is() {
            let mock = MockServer::start(MockConfig::default()).await.unwrap();
            for body in [chat(json!({})), chat(json!({"stream": false}))] {
                let (sent, answers) = send(adapter(&mock, true), &mock, body.clone()).await;
                assert_eq!(sent, upstream(body));
                assert!(answers[0]["usage"].is_object());
            }
        }

        #[tokio::test]
        async fn a_provider_that_does_not_accept_stream_options_is_not_sent_them() {
            let mock = MockServer::start(MockConfig::default()).await.unwrap();
            let body = chat(json!({"stream": true}));
            let (sent, chunks) = send(adapter(&mock, false), &mock, body.clone()).await;
            assert_eq!(sent, upstream(body));
            assert!(chunks.iter().all(|c| c.get("usage").is_none_or(Value::is_null)), "none was asked for");
        }

        #[tokio::test]
        async fn asking_can_be_set_on_a_clone_without_changing_the_original() {
            let mock = MockServer::start(MockConfig::default()).await.unwrap();
            let original = adapter(&mock, false);
            let asking = original.clone().asking_stream_usage(true);
            let body = chat(json!({"stream": true}));
            let (sent, _) = send(asking, &mock, body.clone()).await;
            assert_eq!(sent["stream_options"], json!({"include_usage": true}));
            let (sent, _) = send(original, &mock, body).await;
            assert!(sent.get("stream_options").is_none());
        }
    }
}
