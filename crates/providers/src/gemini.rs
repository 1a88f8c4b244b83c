//! The native Google Gemini adapter: Gemini on Google AI Studio (the Gemini API, an API key) and
//! on Vertex AI (the same JSON shapes under a project and region, an OAuth token).
//!
//! - AI Studio: `POST {api_base}/v1beta/models/{model}:generateContent`, streams at
//!   `:streamGenerateContent?alt=sse`, the key in `x-goog-api-key`; embeddings at
//!   `:batchEmbedContents`.
//! - Vertex AI: `POST https://{region}-aiplatform.googleapis.com/v1/projects/{project}/locations/{region}/publishers/google/models/{model}:generateContent`
//!   (region `global`: host `aiplatform.googleapis.com`; `api_base` replaces the scheme and
//!   host), with `Authorization: Bearer` and an access token given as is, or one the adapter gets
//!   for a service account key and keeps fresh (`gemini/auth.rs`).
//!
//! The client's OpenAI request is translated to a `GenerateContentRequest` (`gemini/request.rs`,
//! schemas cleaned by `gemini/schema.rs`), and Gemini's answer back into an OpenAI completion
//! (`gemini/response.rs`) or, streamed, into chunks decoded event by event as bytes arrive
//! (`gemini/stream.rs`). What Gemini's filters withheld is an [`ErrorClass::ContentPolicy`]
//! error; Google's error envelope is mapped onto the classes the router acts on
//! (`gemini/error.rs`). `docs/providers.md` has the mapping tables.
//!
//! Failure behaviour: transport failures and non-2xx answers become an [`LlmError`] with the
//! class the router acts on; Google's own message is kept (with the API key redacted). A request
//! that dies on a stale pooled connection is resent once on a fresh one.

mod auth;
mod embeddings;
mod error;
mod request;
mod response;
mod schema;
mod stream;

use std::{
    fmt,
    sync::Arc,
    task::{Context, Poll},
    time::{SystemTime, UNIX_EPOCH},
};

use bytes::Bytes;
use futures_core::future::BoxFuture;
use http::{HeaderMap, HeaderName, HeaderValue, header};
use switchyard_types::{
    json::Json,
    llm::{ErrorClass, LlmError, LlmRequest, LlmResponse, Operation, ResponseBody, UpstreamHeaders},
    openai::{ChatCompletion, ChatCompletionRequest},
};

pub use auth::{KeyError, ServiceAccountKey};
pub use stream::GeminiChunks;

use crate::{
    client::send_once_more_if_stale,
    messages_over_chat::chat_only,
    upstream::{error_chain, transport_error},
};

/// AI Studio's endpoint, the `gemini` preset's base URL.
pub const AI_STUDIO_BASE: &str = "https://generativelanguage.googleapis.com";

/// Everything a Gemini deployment needs to send requests.
pub struct GeminiSettings {
    /// A label for logs and response headers, e.g. `gemini/gemini-2.5-flash`. Never a key.
    pub label: Arc<str>,
    /// Where and how requests go.
    pub platform: Platform,
    /// The upstream model id (`gemini-2.5-flash`); `None` sends the request's model.
    pub model: Option<String>,
    /// Extra headers sent with every request.
    pub headers: HeaderMap,
}

/// The two homes of Gemini.
pub enum Platform {
    /// Google AI Studio (the Gemini API).
    AiStudio {
        /// `https://generativelanguage.googleapis.com`, or a base ending in its version
        /// (`.../v1beta`, `.../v1`), which is then used as it is.
        api_base: String,
        /// The API key, sent as `x-goog-api-key`.
        api_key: String,
    },
    /// Vertex AI.
    Vertex {
        /// Replaces `https://{region}-aiplatform.googleapis.com` (a proxy, a private endpoint).
        api_base: Option<String>,
        /// The Google Cloud project id.
        project: String,
        /// The region (`us-central1`, ..., or `global`).
        region: String,
        /// How requests are authorised.
        credentials: VertexCredentials,
    },
}

/// What a Vertex AI request is authorised with.
pub enum VertexCredentials {
    /// An OAuth access token, sent as it is (it is the operator's to keep fresh).
    AccessToken(String),
    /// A service account key, for which the adapter gets and refreshes tokens.
    ServiceAccount(Box<ServiceAccountKey>),
}

impl fmt::Debug for GeminiSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let platform = match &self.platform {
            Platform::AiStudio { api_base, .. } => {
                format!("AiStudio {{ api_base: {api_base:?}, api_key: <redacted> }}")
            }
            Platform::Vertex { api_base, project, region, credentials } => {
                let credentials = match credentials {
                    VertexCredentials::AccessToken(_) => "access token <redacted>".to_owned(),
                    VertexCredentials::ServiceAccount(key) => {
                        format!("service account {}", key.client_email())
                    }
                };
                format!(
                    "Vertex {{ api_base: {api_base:?}, project: {project:?}, region: {region:?}, credentials: {credentials} }}"
                )
            }
        };
        f.debug_struct("GeminiSettings")
            .field("label", &self.label)
            .field("platform", &platform)
            .field("model", &self.model)
            .finish_non_exhaustive()
    }
}

/// Why an adapter could not be built from its settings.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// The key or token holds bytes a header cannot carry.
    #[error("the API key or access token contains characters that cannot be sent in an HTTP header")]
    InvalidKey,
    /// The base URL does not parse.
    #[error("`{0}` is not a valid URL: {1}")]
    InvalidUrl(String, String),
    /// A Vertex AI deployment without its project or region.
    #[error("Vertex AI deployments need {0}")]
    MissingVertexField(&'static str),
}

/// A deployment served by Gemini on AI Studio or Vertex AI. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Gemini {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    client: reqwest::Client,
    label: Arc<str>,
    /// Redacted from Google's messages.
    api_key: Option<String>,
    model: Option<String>,
    /// `.../models`, to which `{model}:{method}` is appended.
    models_url: reqwest::Url,
    /// The configured model's URLs, built once.
    urls: Option<Urls>,
    /// Content type, configured headers, and the key or static token.
    headers: HeaderMap,
    tokens: Option<Arc<auth::TokenSource>>,
    vertex: bool,
}

#[derive(Debug)]
struct Urls {
    generate: reqwest::Url,
    stream: reqwest::Url,
    embed: reqwest::Url,
}

/// A Gemini method on a model.
#[derive(Debug, Clone, Copy)]
enum Method {
    Generate,
    Stream,
    Embed,
}

// === impl Gemini ===

impl Gemini {
    /// An adapter sending through `client` (share one client between all deployments; Vertex AI
    /// token exchanges go through it too).
    pub fn new(client: reqwest::Client, settings: GeminiSettings) -> Result<Self, SettingsError> {
        let GeminiSettings { label, platform, model, headers: configured } = settings;
        let mut headers = configured;
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        let sensitive = |value: String| {
            let mut value = HeaderValue::try_from(value).map_err(|_| SettingsError::InvalidKey)?;
            value.set_sensitive(true);
            Ok::<_, SettingsError>(value)
        };
        let (models_url, api_key, tokens, vertex) = match platform {
            Platform::AiStudio { api_base, api_key } => {
                let base = api_base.trim_end_matches('/');
                let versioned = base.ends_with("/v1beta") || base.ends_with("/v1");
                let url = if versioned { format!("{base}/models") } else { format!("{base}/v1beta/models") };
                headers.insert(HeaderName::from_static("x-goog-api-key"), sensitive(api_key.clone())?);
                (url, Some(api_key), None, false)
            }
            Platform::Vertex { api_base, project, region, credentials } => {
                if project.is_empty() {
                    return Err(SettingsError::MissingVertexField("project"));
                }
                if region.is_empty() {
                    return Err(SettingsError::MissingVertexField("region"));
                }
                let host = match (&api_base, region.as_str()) {
                    (Some(base), _) => base.trim_end_matches('/').to_owned(),
                    (None, "global") => "https://aiplatform.googleapis.com".to_owned(),
                    (None, region) => format!("https://{region}-aiplatform.googleapis.com"),
                };
                let url = format!("{host}/v1/projects/{project}/locations/{region}/publishers/google/models");
                let (api_key, tokens) = match credentials {
                    VertexCredentials::AccessToken(token) => {
                        headers.insert(header::AUTHORIZATION, sensitive(format!("Bearer {token}"))?);
                        (Some(token), None)
                    }
                    VertexCredentials::ServiceAccount(key) => {
                        let source = auth::TokenSource::new(*key, client.clone(), Arc::clone(&label));
                        (None, Some(Arc::new(source)))
                    }
                };
                (url, api_key, tokens, true)
            }
        };
        // Parsed once here: parsing a URL per request costs more than the rest of building it.
        let models_url = reqwest::Url::parse(&models_url)
            .map_err(|e| SettingsError::InvalidUrl(models_url.clone(), e.to_string()))?;
        if models_url.cannot_be_a_base() {
            return Err(SettingsError::InvalidUrl(models_url.to_string(), "not a base URL".to_owned()));
        }
        let model = model.map(|m| m.strip_prefix("models/").map(str::to_owned).unwrap_or(m));
        let urls = model.as_deref().map(|model| Urls {
            generate: method_url(&models_url, model, Method::Generate),
            stream: method_url(&models_url, model, Method::Stream),
            embed: method_url(&models_url, model, Method::Embed),
        });
        let inner = Inner { client, label, api_key, model, models_url, urls, headers, tokens, vertex };
        Ok(Self { inner: Arc::new(inner) })
    }

    /// The deployment's label.
    pub fn label(&self) -> &Arc<str> {
        &self.inner.label
    }
}

impl tower::Service<LlmRequest> for Gemini {
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

/// `{models_url}/{model}:{method}`, the model pushed as one path segment (so that a client's
/// model name cannot reach another path), `alt=sse` for streams.
fn method_url(models_url: &reqwest::Url, model: &str, method: Method) -> reqwest::Url {
    let mut url = models_url.clone();
    let verb = match method {
        Method::Generate => "generateContent",
        Method::Stream => "streamGenerateContent",
        Method::Embed => "batchEmbedContents",
    };
    if let Ok(mut segments) = url.path_segments_mut() {
        segments.pop_if_empty().push(&format!("{model}:{verb}"));
    }
    if matches!(method, Method::Stream) {
        url.set_query(Some("alt=sse"));
    }
    url
}

// === impl Inner ===

impl Inner {
    async fn send(&self, request: LlmRequest) -> Result<LlmResponse, LlmError> {
        let model = match &self.model {
            Some(model) => model.as_str(),
            None => request.model().strip_prefix("models/").unwrap_or(request.model()),
        };
        let served_by = Some(Arc::clone(&self.label));
        let extra = request.extensions.get::<UpstreamHeaders>().map(|h| &h.0);
        let body = match &request.op {
            Operation::Messages(_) => return Err(chat_only(&self.label)),
            Operation::Chat(chat) => {
                let stream = chat.is_stream();
                let body = Bytes::from(request::body(chat)?);
                let method = if stream { Method::Stream } else { Method::Generate };
                let response = self.post(model, method, body, extra).await?;
                if stream {
                    ResponseBody::ChatStream(Box::pin(GeminiChunks::new(
                        response.bytes_stream(),
                        Arc::clone(&self.label),
                        model,
                    )))
                } else {
                    let bytes = response.bytes().await.map_err(|e| self.transport_error(&e))?;
                    ResponseBody::Chat(completion(&bytes, &self.label, model)?)
                }
            }
            Operation::Embeddings(embeddings) => {
                if self.vertex {
                    return Err(LlmError::new(
                        ErrorClass::BadRequest,
                        format!(
                            "{} is a Vertex AI Gemini deployment, which serves chat only here; send embeddings to an AI Studio (provider: gemini) or OpenAI-compatible deployment",
                            self.label
                        ),
                    ));
                }
                let body = Bytes::from(embeddings::body(embeddings, model)?);
                let response = self.post(model, Method::Embed, body, extra).await?;
                let bytes = response.bytes().await.map_err(|e| self.transport_error(&e))?;
                ResponseBody::Embeddings(embeddings::response(&bytes, embeddings, &self.label, model)?)
            }
        };
        Ok(LlmResponse { body, served_by })
    }

    /// Sends `body` to `model`'s `method` and returns a 2xx answer; anything else is an error.
    async fn post(
        &self,
        model: &str,
        method: Method,
        body: Bytes,
        extra: Option<&HeaderMap>,
    ) -> Result<reqwest::Response, LlmError> {
        let url = match (&self.urls, method) {
            (Some(urls), Method::Generate) => urls.generate.clone(),
            (Some(urls), Method::Stream) => urls.stream.clone(),
            (Some(urls), Method::Embed) => urls.embed.clone(),
            (None, method) => method_url(&self.models_url, model, method),
        };
        let authorization = match &self.tokens {
            Some(tokens) => Some(tokens.authorization().await?),
            None => None,
        };
        let build = || {
            let mut builder = self.client.post(url.clone()).headers(self.headers.clone()).body(body.clone());
            if let Some(authorization) = &authorization {
                builder = builder.header(header::AUTHORIZATION, authorization.clone());
            }
            if matches!(method, Method::Stream) {
                builder = builder.header(header::ACCEPT, "text/event-stream");
            }
            // What layers asked for (a `traceparent`, ...) replaces configured headers of the
            // same name: it is about this request, they are about every request.
            if let Some(extra) = extra {
                builder = builder.headers(extra.clone());
            }
            builder
        };
        let response =
            send_once_more_if_stale(&self.label, build).await.map_err(|err| self.transport_error(&err))?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let headers = response.headers().clone();
        let bytes = response.bytes().await.unwrap_or_default();
        let error = error::from_response(&self.label, status, &headers, &bytes, self.api_key.as_deref());
        if status == http::StatusCode::UNAUTHORIZED
            && let Some(tokens) = &self.tokens
        {
            // A token revoked before its time: the next request gets a new one.
            tokens.forget();
        }
        Err(error)
    }

    fn transport_error(&self, err: &reqwest::Error) -> LlmError {
        let endpoint = self.models_url.origin().ascii_serialization();
        let error = transport_error(&self.label, &endpoint, err);
        tracing::debug!(deployment = %self.label, cause = %error_chain(err), "request to Gemini failed");
        error
    }
}

/// Translates an OpenAI chat request into the body Gemini's `generateContent` and
/// `streamGenerateContent` take (the `model` goes in the URL, not the body).
pub fn request_body(chat: &ChatCompletionRequest) -> Result<Vec<u8>, LlmError> {
    request::body(chat)
}

/// Translates a complete `generateContent` answer into an OpenAI chat completion naming `model`
/// (unless Gemini named its `modelVersion`); `label` names the deployment in errors.
pub fn completion(body: &[u8], label: &str, model: &str) -> Result<Json<ChatCompletion>, LlmError> {
    let unreadable = |e: serde_json::Error| {
        LlmError::new(
            ErrorClass::UpstreamServer,
            format!("{label} answered with a body that is not a Gemini response: {e}"),
        )
    };
    let parsed: response::GenerateContentResponse = serde_json::from_slice(body).map_err(unreadable)?;
    let completion = response::completion(&parsed, label, model, unix_now())?;
    let bytes = serde_json::to_vec(&completion).map_err(unreadable)?;
    Json::from_bytes(Bytes::from(bytes)).map_err(unreadable)
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn models_url(platform: Platform) -> String {
        let client = crate::client::build_client(&crate::client::ClientSettings::default()).unwrap();
        let settings = GeminiSettings {
            label: "g".into(),
            platform,
            model: Some("models/gemini-2.5-flash".into()),
            headers: HeaderMap::new(),
        };
        let adapter = Gemini::new(client, settings).unwrap();
        adapter.inner.urls.as_ref().map(|u| u.stream.to_string()).unwrap()
    }

    fn vertex(api_base: Option<&str>, region: &str) -> Platform {
        Platform::Vertex {
            api_base: api_base.map(str::to_owned),
            project: "my-proj".into(),
            region: region.into(),
            credentials: VertexCredentials::AccessToken("ya29.token".into()),
        }
    }

    #[test]
    fn urls_follow_the_platform_region_and_base() {
        let studio = |base: &str| Platform::AiStudio { api_base: base.into(), api_key: "k".into() };
        assert_eq!(
            models_url(studio(AI_STUDIO_BASE)),
            "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
        );
        assert_eq!(
            models_url(studio("https://proxy.example/gemini/v1/")),
            "https://proxy.example/gemini/v1/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
        );
        assert_eq!(
            models_url(vertex(None, "europe-west4")),
            "https://europe-west4-aiplatform.googleapis.com/v1/projects/my-proj/locations/europe-west4/publishers/google/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
        );
        assert_eq!(
            models_url(vertex(None, "global")),
            "https://aiplatform.googleapis.com/v1/projects/my-proj/locations/global/publishers/google/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
        );
        assert_eq!(
            models_url(vertex(Some("http://127.0.0.1:9/"), "us-central1")),
            "http://127.0.0.1:9/v1/projects/my-proj/locations/us-central1/publishers/google/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
        );
    }

    #[test]
    fn a_clients_model_name_stays_one_path_segment() {
        let base = reqwest::Url::parse("https://h/v1beta/models").unwrap();
        let url = method_url(&base, "../../files/x?y", Method::Generate);
        assert_eq!(url.as_str(), "https://h/v1beta/models/..%2F..%2Ffiles%2Fx%3Fy:generateContent");
    }

    #[test]
    fn debug_shows_no_secret() {
        let settings = GeminiSettings {
            label: "g".into(),
            platform: Platform::AiStudio { api_base: AI_STUDIO_BASE.into(), api_key: "AIza-secret".into() },
            model: None,
            headers: HeaderMap::new(),
        };
        assert!(!format!("{settings:?}").contains("secret"));
    }
}
