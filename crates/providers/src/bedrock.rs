//! The AWS Bedrock adapter: OpenAI chat requests to Bedrock's Converse API
//! (`POST /model/{modelId}/converse`) and ConverseStream (`/converse-stream`), signed with
//! SigV4, and their answers back as OpenAI completions and chunks.
//!
//! - [`request`]: the OpenAI request as a Converse body;
//! - [`response`]: a Converse answer as a completion; stop reasons and usage;
//! - [`stream`]: a ConverseStream event stream, decoded frame by frame, as chunks;
//! - [`sign`]: SigV4 (service `bedrock`) by `aws-sigv4`;
//! - `error`: Bedrock's exceptions onto [`ErrorClass`]es.
//!
//! The endpoint is `https://bedrock-runtime.{region}.amazonaws.com` unless `api_base` says
//! otherwise (a VPC endpoint, a test's mock). The model id (or inference profile, or ARN) is
//! percent-encoded as one path segment, as the AWS SDKs send it:
//! `anthropic.claude-3-5-sonnet-20240620-v1:0` goes as `...-v1%3A0`.
//!
//! Embeddings are not served here (Bedrock's embedding models take `InvokeModel` bodies of
//! their own): such a request is a [`ErrorClass::BadRequest`] that says to use another
//! deployment.
//!
//! Failure behaviour: transport failures and error answers become an [`LlmError`] of the
//! class the router acts on (`x-amzn-errortype` and the body's `message`); a
//! request that dies on a stale pooled connection is resent once, with the same signature
//! (it holds for five minutes).

pub mod request;
pub mod response;
pub mod sign;
pub mod stream;

mod error;

use std::{
    fmt,
    sync::Arc,
    task::{Context, Poll},
    time::{SystemTime, UNIX_EPOCH},
};

use aws_credential_types::Credentials;
use bytes::Bytes;
use futures_core::future::BoxFuture;
use http::{HeaderMap, HeaderValue, header};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use switchyard_types::{
    json::Json,
    llm::{ErrorClass, LlmError, LlmRequest, LlmResponse, Operation, ResponseBody, UpstreamHeaders},
};

use crate::{
    client::send_once_more_if_stale,
    messages_over_chat::chat_only,
    upstream::{redact, retry_after, transport_error},
};

/// The content type of ConverseStream's answer: AWS's binary event stream.
pub const EVENT_STREAM: &str = "application/vnd.amazon.eventstream";

/// What the AWS SDKs leave unescaped in a path label: RFC 3986's unreserved characters.
const PATH_SEGMENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// AWS credentials: an access key, its secret, and a session token for temporary ones.
#[derive(Clone)]
pub struct AwsCredentials {
    /// `AKIA...` (long-term) or `ASIA...` (temporary).
    pub access_key_id: String,
    /// The secret access key.
    pub secret_access_key: String,
    /// The session token of temporary credentials (STS, SSO, an assumed role).
    pub session_token: Option<String>,
}

impl fmt::Debug for AwsCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AwsCredentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .field("session_token", &self.session_token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// Everything a Bedrock deployment needs to send requests.
#[derive(Clone, Debug)]
pub struct BedrockSettings {
    /// A label for logs and response headers, e.g. `bedrock/anthropic.claude-3-5-sonnet-20240620-v1:0`.
    pub label: Arc<str>,
    /// The region the requests are signed for, and whose endpoint they go to (`us-east-1`).
    pub region: String,
    /// Replaces `https://bedrock-runtime.{region}.amazonaws.com` (a VPC endpoint, a mock).
    pub api_base: Option<String>,
    /// The credentials requests are signed with.
    pub credentials: AwsCredentials,
    /// The model id, inference profile or ARN; `None` sends the request's model.
    pub model: Option<String>,
    /// `maxTokens` when the request sets neither `max_completion_tokens` nor `max_tokens`
    /// (Converse requires one): [`request::DEFAULT_MAX_TOKENS`] when `None`.
    pub default_max_tokens: Option<u32>,
    /// Extra headers sent (and signed) with every request.
    pub headers: HeaderMap,
}

/// Why a Bedrock adapter could not be built from its settings.
#[derive(Debug, thiserror::Error)]
pub enum BedrockSettingsError {
    /// The endpoint does not parse.
    #[error("`{0}` is not a valid URL: {1}")]
    InvalidUrl(String, String),
    /// No region to sign for.
    #[error("Bedrock deployments need a region (e.g. us-east-1)")]
    MissingRegion,
}

/// A deployment served by Bedrock's Converse API. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Bedrock {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    client: reqwest::Client,
    settings: BedrockSettings,
    base: String,
    credentials: Credentials,
    /// The configured model's URLs, parsed once.
    urls: Option<ModelUrls>,
    headers: HeaderMap,
}

#[derive(Debug)]
struct ModelUrls {
    converse: reqwest::Url,
    stream: reqwest::Url,
}

// === impl Bedrock ===

impl Bedrock {
    /// An adapter sending through `client` (share one client between all deployments).
    pub fn new(client: reqwest::Client, settings: BedrockSettings) -> Result<Self, BedrockSettingsError> {
        if settings.region.trim().is_empty() {
            return Err(BedrockSettingsError::MissingRegion);
        }
        let base = match &settings.api_base {
            Some(base) => base.trim_end_matches('/').to_owned(),
            None => format!("https://bedrock-runtime.{}.amazonaws.com", settings.region),
        };
        let urls = settings.model.as_deref().map(|model| ModelUrls::new(&base, model)).transpose()?;
        if urls.is_none() {
            // Checked here, so that a bad base fails at startup rather than on every request.
            ModelUrls::new(&base, "m")?;
        }
        let credentials = Credentials::new(
            &settings.credentials.access_key_id,
            &settings.credentials.secret_access_key,
            settings.credentials.session_token.clone(),
            None,
            "switchyard-config",
        );
        let mut headers = settings.headers.clone();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        let inner = Inner { client, settings, base, credentials, urls, headers };
        Ok(Self { inner: Arc::new(inner) })
    }

    /// The deployment's label.
    pub fn label(&self) -> &Arc<str> {
        &self.inner.settings.label
    }
}

impl tower::Service<LlmRequest> for Bedrock {
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

// === impl ModelUrls ===

impl ModelUrls {
    fn new(base: &str, model: &str) -> Result<Self, BedrockSettingsError> {
        let prefix = format!("{base}/model/{}", utf8_percent_encode(model, PATH_SEGMENT));
        let parse = |url: String| {
            reqwest::Url::parse(&url).map_err(|e| BedrockSettingsError::InvalidUrl(url, e.to_string()))
        };
        Ok(Self {
            converse: parse(format!("{prefix}/converse"))?,
            stream: parse(format!("{prefix}/converse-stream"))?,
        })
    }
}

// === impl Inner ===

impl Inner {
    async fn send(&self, request: LlmRequest) -> Result<LlmResponse, LlmError> {
        let chat = match &request.op {
            Operation::Chat(chat) => chat,
            Operation::Embeddings(_) => {
                return Err(LlmError::new(
                    ErrorClass::BadRequest,
                    format!(
                        "{} is a Bedrock Converse deployment and serves chat completions only; send embeddings to a deployment of an embeddings model",
                        self.settings.label
                    ),
                ));
            }
            Operation::Messages(_) => return Err(chat_only(&self.settings.label)),
        };
        let model = self.settings.model.as_deref().unwrap_or_else(|| request.model());
        let stream = chat.is_stream();
        let max_tokens = self.settings.default_max_tokens.unwrap_or(request::DEFAULT_MAX_TOKENS);
        let body = Bytes::from(request::converse_body(chat, max_tokens)?);

        let per_request;
        let urls = match &self.urls {
            Some(urls) => urls,
            None => {
                per_request = ModelUrls::new(&self.base, model)
                    .map_err(|e| LlmError::new(ErrorClass::BadRequest, format!("model `{model}`: {e}")))?;
                &per_request
            }
        };
        let url = if stream { &urls.stream } else { &urls.converse };

        let mut headers = self.headers.clone();
        if stream {
            headers.insert(header::ACCEPT, HeaderValue::from_static(EVENT_STREAM));
        }
        // What layers asked for (a `traceparent`, ...) replaces configured headers of the
        // same name, and is signed like them.
        if let Some(UpstreamHeaders(extra)) = request.extensions.get::<UpstreamHeaders>() {
            for name in extra.keys() {
                headers.remove(name);
            }
            for (name, value) in extra {
                headers.append(name.clone(), value.clone());
            }
        }
        sign::sign_request(
            &self.credentials,
            &self.settings.region,
            url.as_str(),
            &mut headers,
            &body,
            SystemTime::now(),
        )?;

        let response = self.execute(url, headers, body).await?;
        if !response.status().is_success() {
            return Err(self.error_from(response).await);
        }
        let request_id = response.headers().get("x-amzn-requestid").and_then(|v| v.to_str().ok());
        let id = format!("chatcmpl-{}", request_id.unwrap_or("bedrock"));
        let created = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let served_by = Some(Arc::clone(&self.settings.label));
        let body = if stream {
            let chunks = stream::EventStreamChunks::new(
                response.bytes_stream(),
                Arc::clone(&self.settings.label),
                id,
                model.to_owned(),
                created,
            );
            ResponseBody::ChatStream(Box::pin(chunks))
        } else {
            let bytes = response.bytes().await.map_err(|e| self.transport_error(&e))?;
            let completion = response::completion(&bytes, id, model, created).map_err(|e| {
                LlmError::new(
                    ErrorClass::UpstreamServer,
                    format!(
                        "{} answered with a body that is not a Converse response: {e}",
                        self.settings.label
                    ),
                )
            })?;
            ResponseBody::Chat(Json::from_typed(&completion).map_err(|e| {
                LlmError::new(ErrorClass::Internal, format!("could not encode the completion: {e}"))
            })?)
        };
        Ok(LlmResponse { body, served_by })
    }

    async fn execute(
        &self,
        url: &reqwest::Url,
        headers: HeaderMap,
        body: Bytes,
    ) -> Result<reqwest::Response, LlmError> {
        // A resend reuses the signature: it signs the same bytes, well within its five minutes.
        let build = || self.client.post(url.clone()).headers(headers.clone()).body(body.clone());
        send_once_more_if_stale(&self.settings.label, build).await.map_err(|err| self.transport_error(&err))
    }

    fn transport_error(&self, err: &reqwest::Error) -> LlmError {
        transport_error(&self.settings.label, &self.base, err)
    }

    async fn error_from(&self, response: reqwest::Response) -> LlmError {
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.bytes().await.unwrap_or_default();
        let read = error::read(&headers, &body);
        // AWS messages name the access key id they refused, never the secret; keep neither.
        let message = redact(
            &redact(&read.message, Some(&self.settings.credentials.secret_access_key)),
            Some(&self.settings.credentials.access_key_id),
        );
        let class = error::class_of(Some(status), read.kind.as_deref(), &message);
        let kind = read.kind.as_deref().map(|k| format!("{k}: ")).unwrap_or_default();
        LlmError::new(class, format!("{} answered {}: {kind}{message}", self.settings.label, status.as_u16()))
            .with_upstream_status(status.as_u16())
            .with_retry_after(retry_after(&headers))
    }
}
