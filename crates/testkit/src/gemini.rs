//! The Gemini dialect, as Google AI Studio and Vertex AI speak it: `...models/{model}:generateContent`,
//! `:streamGenerateContent` (server-sent events with `alt=sse`, else one JSON array),
//! `:batchEmbedContents`, Google's error envelope, and an OAuth token endpoint (`POST /token`)
//! for Vertex AI's service-account flow.
//!
//! Any path prefix is accepted before `/models/{model}:{method}`, so one server answers AI
//! Studio (`/v1beta/models/...`) and Vertex AI (`/v1/projects/{p}/locations/{r}/publishers/google/models/...`)
//! clients alike.
//!
//! The answers are synthetic and deterministic, like the OpenAI mock's:
//! - text: `tok0 tok1 ...`, [`MockConfig::chunks`](crate::MockConfig::chunks) tokens, fewer when
//!   `generationConfig.maxOutputTokens` is lower (then `finishReason` is `MAX_TOKENS`);
//!   `candidateCount` candidates, all alike;
//! - with `tools`, unless the last turn holds a `functionResponse`: a `functionCall` of the first
//!   declared function with args `{"location":"Paris"}` and a `thoughtSignature`, as Gemini 3
//!   sends it, `finishReason` `STOP` (Gemini does not say it called a function);
//! - a safety block when the last user text contains `BLOCK_ME`: no candidates, and
//!   `promptFeedback.blockReason: SAFETY` (one event when streamed);
//! - `usageMetadata` on every event with the running counts, the last one final;
//! - embeddings: unit vectors derived from a hash of each text, `outputDimensionality` long (8
//!   by default).
//!
//! Authentication, when [`MockConfig::api_key`](crate::MockConfig::api_key) is set: the key in
//! `x-goog-api-key` or `?key=`, or `Authorization: Bearer` with the key itself or with a token
//! this server issued at `POST /token`. Failures answer as Google does: no credentials 403
//! `PERMISSION_DENIED`, a wrong key 400 `INVALID_ARGUMENT` (reason `API_KEY_INVALID`), a wrong
//! bearer token 401 `UNAUTHENTICATED`.
//!
//! The token endpoint checks the JWT-bearer grant like Google's: the form's `grant_type`, an
//! RS256 JWT `assertion` whose claims name an issuer, the `cloud-platform` scope, an audience
//! ending in `/token`, and a lifetime of at most an hour that has not ended. When the issuer was
//! registered ([`MockServer::register_service_account`](crate::MockServer::register_service_account))
//! the signature must verify with its key, as Google verifies it with the account's public key.
//! It answers `{"access_token": "ya29.mock-N", "expires_in": 3599, "token_type": "Bearer"}`.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::BytesMut;
use http::header::{AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderValue, Response, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};
use switchyard_types::sse;

use crate::body::{EventSource, MockBody, Pace, Written};
use crate::service::{Cx, json_response};
use crate::stats::{Counters, bump};
use crate::synth;

/// The path of the OAuth token endpoint.
pub(crate) const TOKEN_PATH: &str = "/token";
const JWT_BEARER_GRANT: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
const CLOUD_PLATFORM_SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";
/// The trigger of a safety block, in the last user text.
const BLOCK_TRIGGER: &str = "BLOCK_ME";
/// The signature the mock puts on its function call (base64, as Gemini's are).
const THOUGHT_SIGNATURE: &str = "bW9jay10aG91Z2h0LXNpZ25hdHVyZQ==";
const DEFAULT_DIMENSIONS: usize = 8;
const MAX_DIMENSIONS: u64 = 8192;

/// Service accounts and tokens the token endpoint knows.
#[derive(Debug, Default)]
pub(crate) struct GoogleAuth {
    /// Public keys (PKCS#1 DER) by service account email.
    keys: Mutex<HashMap<String, Vec<u8>>>,
    /// Access tokens issued.
    issued: Mutex<HashSet<String>>,
}

// === impl GoogleAuth ===

impl GoogleAuth {
    /// Registers the service account of a key file's JSON, with the public half of its key.
    pub(crate) fn register(&self, key_file: &str) -> Result<(), String> {
        #[derive(Deserialize)]
        struct KeyFile {
            client_email: String,
            private_key: String,
        }
        use rustls_pki_types::pem::PemObject as _;
        let file: KeyFile = serde_json::from_str(key_file).map_err(|e| format!("not a key file: {e}"))?;
        let der = rustls_pki_types::PrivatePkcs8KeyDer::from_pem_slice(file.private_key.as_bytes())
            .map_err(|e| format!("private_key is not PKCS#8 PEM: {e}"))?;
        let pair = ring::signature::RsaKeyPair::from_pkcs8(der.secret_pkcs8_der())
            .map_err(|e| format!("private_key is not an RSA key: {e}"))?;
        let public = ring::signature::KeyPair::public_key(&pair).as_ref().to_vec();
        lock(&self.keys).insert(file.client_email, public);
        Ok(())
    }

    fn issue(&self) -> String {
        let mut issued = lock(&self.issued);
        let token = format!("ya29.mock-{}", issued.len() + 1);
        issued.insert(token.clone());
        token
    }

    fn was_issued(&self, token: &[u8]) -> bool {
        std::str::from_utf8(token).is_ok_and(|t| lock(&self.issued).contains(t))
    }
}

/// The locks are never held across an await or a panic-prone call.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Whether `path` is a Gemini model method this module answers.
pub(crate) fn is_gemini_path(path: &str) -> bool {
    path.contains("/models/")
        && (path.ends_with(":generateContent")
            || path.ends_with(":streamGenerateContent")
            || path.ends_with(":batchEmbedContents"))
}

/// Checks Google's credentials on a Gemini path: `None` when they hold, else Google's refusal.
/// The token endpoint takes no credentials.
pub(crate) fn refusal(
    auth: &GoogleAuth,
    key: &str,
    parts: &http::request::Parts,
) -> Option<Response<MockBody>> {
    if parts.uri.path() == TOKEN_PATH {
        return None;
    }
    let header_key = parts.headers.get("x-goog-api-key").map(HeaderValue::as_bytes);
    let query_key = parts
        .uri
        .query()
        .and_then(|q| form_urlencoded::parse(q.as_bytes()).find(|(name, _)| name == "key").map(|(_, v)| v));
    let bearer = parts
        .headers
        .get(AUTHORIZATION)
        .and_then(|value| value.as_bytes().strip_prefix(b"Bearer "))
        .map(<[u8]>::trim_ascii);
    if header_key == Some(key.as_bytes()) || query_key.as_deref() == Some(key) {
        return None;
    }
    if let Some(token) = bearer {
        return if token == key.as_bytes() || auth.was_issued(token) {
            None
        } else {
            Some(error(
                StatusCode::UNAUTHORIZED,
                "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential. See https://developers.google.com/identity/sign-in/web/devconsole-project.",
                "UNAUTHENTICATED",
                vec![
                    json!({"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "ACCESS_TOKEN_TYPE_UNSUPPORTED", "domain": "googleapis.com"}),
                ],
            ))
        };
    }
    if header_key.is_some() || query_key.is_some() {
        return Some(error(
            StatusCode::BAD_REQUEST,
            "API key not valid. Please pass a valid API key.",
            "INVALID_ARGUMENT",
            vec![
                json!({"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID", "domain": "googleapis.com", "metadata": {"service": "generativelanguage.googleapis.com"}}),
            ],
        ));
    }
    Some(error(
        StatusCode::FORBIDDEN,
        "Method doesn't allow unregistered callers (callers without established identity). Please use API Key or other form of API consumer identity to call this API.",
        "PERMISSION_DENIED",
        Vec::new(),
    ))
}

/// Google's error envelope.
pub(crate) fn error(
    status: StatusCode,
    message: &str,
    google_status: &str,
    details: Vec<Value>,
) -> Response<MockBody> {
    let mut error = json!({"code": status.as_u16(), "message": message, "status": google_status});
    if !details.is_empty() {
        error["details"] = Value::Array(details);
    }
    json_response(status, json!({"error": error}).to_string())
}

/// A 429 as AI Studio sends it: `RESOURCE_EXHAUSTED` with a `RetryInfo`, and `Retry-After`.
pub(crate) fn rate_limited(retry_after_secs: u64) -> Response<MockBody> {
    let mut response = error(
        StatusCode::TOO_MANY_REQUESTS,
        &format!(
            "You exceeded your current quota, please check your plan and billing details. Please retry in {retry_after_secs}s."
        ),
        "RESOURCE_EXHAUSTED",
        vec![
            json!({"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [{"quotaMetric": "generativelanguage.googleapis.com/generate_content_free_tier_requests", "quotaId": "GenerateRequestsPerMinutePerProjectPerModel-FreeTier", "quotaValue": "10"}]}),
            json!({"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": format!("{retry_after_secs}s")}),
        ],
    );
    response.headers_mut().insert(RETRY_AFTER, HeaderValue::from(retry_after_secs));
    response
}

// === requests ===

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct GenerateView<'a> {
    #[serde(default, borrow)]
    contents: Vec<ContentView<'a>>,
    #[serde(default, borrow)]
    system_instruction: Option<ContentView<'a>>,
    #[serde(default, borrow)]
    tools: Vec<ToolView<'a>>,
    #[serde(default)]
    generation_config: Option<GenerationConfigView>,
}

#[derive(Debug, Deserialize)]
struct ContentView<'a> {
    #[serde(default, borrow)]
    role: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    parts: Vec<PartView<'a>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PartView<'a> {
    #[serde(default, borrow)]
    text: Option<Cow<'a, str>>,
    #[serde(default)]
    function_response: Option<serde::de::IgnoredAny>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ToolView<'a> {
    #[serde(default, borrow)]
    function_declarations: Vec<DeclarationView<'a>>,
}

#[derive(Debug, Deserialize)]
struct DeclarationView<'a> {
    #[serde(borrow)]
    name: Cow<'a, str>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct GenerationConfigView {
    #[serde(default)]
    max_output_tokens: Option<u64>,
    #[serde(default)]
    candidate_count: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct EmbedView<'a> {
    #[serde(borrow)]
    requests: Vec<EmbedRequestView<'a>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct EmbedRequestView<'a> {
    #[serde(borrow)]
    content: ContentView<'a>,
    #[serde(default)]
    output_dimensionality: Option<u64>,
}

/// What a request is answered with.
#[derive(Debug, Clone)]
enum Answer {
    Text { tokens: usize, finish_reason: &'static str },
    FunctionCall { name: String },
    Blocked,
}

// === handlers ===

/// `POST ...models/{model}:generateContent`, `:streamGenerateContent` and `:batchEmbedContents`.
pub(crate) fn handle(cx: &Cx<'_>, path: &str, query: Option<&str>, body: &[u8]) -> Response<MockBody> {
    let model = path
        .rsplit_once("/models/")
        .and_then(|(_, rest)| rest.split_once(':'))
        .map_or("gemini-mock", |(model, _)| model);
    if path.ends_with(":batchEmbedContents") {
        return embed(cx, body);
    }
    let counters = &cx.shared.counters;
    bump(&counters.chat_completions);
    let request: GenerateView<'_> = match serde_json::from_slice(body) {
        Ok(request) => request,
        Err(err) => return invalid_json(&err),
    };
    if request.contents.is_empty() {
        return error(
            StatusCode::BAD_REQUEST,
            "* GenerateContentRequest.contents: contents is not specified\n",
            "INVALID_ARGUMENT",
            Vec::new(),
        );
    }
    let config = request.generation_config.as_ref();
    let candidates = config.and_then(|c| c.candidate_count).unwrap_or(1).clamp(1, 8);
    let text_chars = |content: &ContentView<'_>| {
        content.parts.iter().filter_map(|p| p.text.as_ref()).map(|t| t.chars().count()).sum::<usize>()
    };
    let prompt_chars = request.contents.iter().map(text_chars).sum::<usize>()
        + request.system_instruction.as_ref().map_or(0, text_chars);
    let prompt_tokens = synth::prompt_tokens(prompt_chars);
    let last = request.contents.last();
    let after_function_response = last.is_some_and(|c| c.parts.iter().any(|p| p.function_response.is_some()));
    let last_user_text = request
        .contents
        .iter()
        .rev()
        .find(|c| c.role.as_deref().is_none_or(|r| r == "user") && c.parts.iter().any(|p| p.text.is_some()))
        .map(|c| c.parts.iter().filter_map(|p| p.text.as_deref()).collect::<String>())
        .unwrap_or_default();
    let function = request.tools.iter().flat_map(|t| &t.function_declarations).next();
    let answer = if last_user_text.contains(BLOCK_TRIGGER) {
        Answer::Blocked
    } else if let Some(function) = function.filter(|_| !after_function_response) {
        Answer::FunctionCall { name: function.name.clone().into_owned() }
    } else {
        let chunks = cx.shared.config.chunks;
        let cap = config.and_then(|c| c.max_output_tokens).and_then(|cap| usize::try_from(cap).ok());
        match cap.filter(|&cap| cap < chunks) {
            Some(cap) => Answer::Text { tokens: cap, finish_reason: "MAX_TOKENS" },
            None => Answer::Text { tokens: chunks, finish_reason: "STOP" },
        }
    };
    let events = Events {
        model: model.to_owned(),
        response_id: format!("mock-response-{}", cx.shared.next_id()),
        candidates,
        answer,
        prompt_tokens,
        step: 0,
    };
    let streamed = path.ends_with(":streamGenerateContent");
    let sse =
        query.is_some_and(|q| form_urlencoded::parse(q.as_bytes()).any(|(k, v)| k == "alt" && v == "sse"));
    if streamed && sse {
        let mut response = Response::new(cx.stream(Box::new(events)));
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        return response;
    }
    let (prompt, completion) = events.usage_at(events.steps());
    counters.add_usage(prompt, completion);
    if streamed {
        // Without `alt=sse`, Google streams one JSON array of the same responses.
        let all: Vec<Value> = (0..=events.steps()).filter_map(|step| events.event(step)).collect();
        return json_response(StatusCode::OK, Value::Array(all).to_string());
    }
    json_response(StatusCode::OK, events.whole().to_string())
}

/// Google's answer to a body that is not the JSON it expects.
fn invalid_json(err: &serde_json::Error) -> Response<MockBody> {
    error(
        StatusCode::BAD_REQUEST,
        &format!("Invalid JSON payload received. {err}"),
        "INVALID_ARGUMENT",
        Vec::new(),
    )
}

fn embed(cx: &Cx<'_>, body: &[u8]) -> Response<MockBody> {
    bump(&cx.shared.counters.embeddings);
    let request: EmbedView<'_> = match serde_json::from_slice(body) {
        Ok(request) => request,
        Err(err) => return invalid_json(&err),
    };
    let mut prompt_tokens = 0;
    let mut embeddings = Vec::with_capacity(request.requests.len());
    for item in &request.requests {
        let dimensions = match item.output_dimensionality {
            None => DEFAULT_DIMENSIONS,
            Some(d @ 1..=MAX_DIMENSIONS) => d as usize,
            Some(d) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    &format!(
                        "* BatchEmbedContentsRequest.requests[0].output_dimensionality: {d} is out of range"
                    ),
                    "INVALID_ARGUMENT",
                    Vec::new(),
                );
            }
        };
        let text: String = item.content.parts.iter().filter_map(|p| p.text.as_deref()).collect();
        prompt_tokens += synth::prompt_tokens(text.chars().count());
        embeddings.push(json!({"values": synth::embedding(text.as_bytes(), dimensions)}));
    }
    cx.shared.counters.add_usage(prompt_tokens, 0);
    json_response(StatusCode::OK, json!({"embeddings": embeddings}).to_string())
}

/// `POST /token`: the OAuth token endpoint of Vertex AI's service-account flow.
pub(crate) fn token(cx: &Cx<'_>, body: &[u8]) -> Response<MockBody> {
    let refuse = |status: StatusCode, error: &str, description: &str| {
        json_response(status, json!({"error": error, "error_description": description}).to_string())
    };
    let form: HashMap<String, String> = form_urlencoded::parse(body).into_owned().collect();
    match form.get("grant_type").map(String::as_str) {
        Some(JWT_BEARER_GRANT) => {}
        Some(other) => {
            return refuse(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                &format!("Invalid grant_type: {other}"),
            );
        }
        None => {
            return refuse(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "Missing required parameter: grant_type",
            );
        }
    }
    let Some(assertion) = form.get("assertion") else {
        return refuse(StatusCode::BAD_REQUEST, "invalid_request", "Missing required parameter: assertion");
    };
    if let Err(description) = check_assertion(&cx.shared.google, assertion) {
        return refuse(StatusCode::BAD_REQUEST, "invalid_grant", &description);
    }
    let token = cx.shared.google.issue();
    json_response(
        StatusCode::OK,
        json!({"access_token": token, "expires_in": 3599, "token_type": "Bearer"}).to_string(),
    )
}

/// What Google checks of a JWT-bearer assertion; the description of the first failure.
fn check_assertion(auth: &GoogleAuth, assertion: &str) -> Result<(), String> {
    let mut pieces = assertion.split('.');
    let (Some(header), Some(claims), Some(signature), None) =
        (pieces.next(), pieces.next(), pieces.next(), pieces.next())
    else {
        return Err(
            "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe."
                .to_owned(),
        );
    };
    let decode =
        |piece: &str| URL_SAFE_NO_PAD.decode(piece).map_err(|_| "Invalid JWT: not base64url.".to_owned());
    let header: Value =
        serde_json::from_slice(&decode(header)?).map_err(|_| "Invalid JWT header.".to_owned())?;
    if header.get("alg").and_then(Value::as_str) != Some("RS256") {
        return Err("Invalid JWT: the algorithm must be RS256.".to_owned());
    }
    let claims: Value =
        serde_json::from_slice(&decode(claims)?).map_err(|_| "Invalid JWT claims.".to_owned())?;
    let text = |name: &str| claims.get(name).and_then(Value::as_str).unwrap_or("");
    let number = |name: &str| claims.get(name).and_then(Value::as_u64);
    let issuer = text("iss");
    if issuer.is_empty() {
        return Err("Invalid JWT: No valid issuer (iss).".to_owned());
    }
    if !text("scope").split(' ').any(|s| s == CLOUD_PLATFORM_SCOPE) {
        return Err("Invalid OAuth scope or ID token audience provided.".to_owned());
    }
    if !text("aud").ends_with(TOKEN_PATH) {
        return Err("Invalid JWT: the audience (aud) must be the token endpoint.".to_owned());
    }
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    match (number("iat"), number("exp")) {
        (Some(iat), Some(exp)) if iat <= now + 60 && exp > now && exp > iat && exp - iat <= 3600 => {}
        _ => return Err("Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. Check your iat and exp values in the JWT claim.".to_owned()),
    }
    if let Some(public_key) = lock(&auth.keys).get(issuer) {
        let signed = &assertion[..assertion.len() - signature.len() - 1];
        let signature = decode(signature)?;
        ring::signature::UnparsedPublicKey::new(&ring::signature::RSA_PKCS1_2048_8192_SHA256, public_key)
            .verify(signed.as_bytes(), &signature)
            .map_err(|_| "Invalid JWT Signature.".to_owned())?;
    }
    Ok(())
}

// === the answer's events ===

/// The answer as Gemini's responses: one event per token (or one for a function call or a
/// block), the last with `finishReason` and the final usage.
#[derive(Debug)]
struct Events {
    model: String,
    response_id: String,
    candidates: u32,
    answer: Answer,
    prompt_tokens: u64,
    step: usize,
}

impl Events {
    /// The number of events.
    fn steps(&self) -> usize {
        match self.answer {
            Answer::Text { tokens, .. } => tokens.max(1),
            Answer::FunctionCall { .. } | Answer::Blocked => 1,
        }
    }

    /// Tokens of one candidate's answer.
    fn pieces(&self) -> usize {
        match self.answer {
            Answer::Text { tokens, .. } => tokens,
            Answer::FunctionCall { .. } => 5,
            Answer::Blocked => 0,
        }
    }

    /// `(prompt, candidates)` tokens counted after `step` events.
    fn usage_at(&self, step: usize) -> (u64, u64) {
        let per_candidate = match self.answer {
            Answer::Text { .. } => step.min(self.pieces()),
            _ => self.pieces(),
        };
        (self.prompt_tokens, per_candidate as u64 * u64::from(self.candidates))
    }

    fn usage_metadata(&self, step: usize) -> Value {
        let (prompt, candidates) = self.usage_at(step);
        let mut usage = json!({"promptTokenCount": prompt, "totalTokenCount": prompt + candidates,
                               "promptTokensDetails": [{"modality": "TEXT", "tokenCount": prompt}]});
        if candidates > 0 {
            usage["candidatesTokenCount"] = candidates.into();
        }
        usage
    }

    /// Event `step` (0-based) of a stream; `None` past the last.
    fn event(&self, step: usize) -> Option<Value> {
        if step >= self.steps() {
            return None;
        }
        let last = step + 1 == self.steps();
        let mut response = json!({"usageMetadata": self.usage_metadata(step + 1), "modelVersion": self.model, "responseId": self.response_id});
        match &self.answer {
            Answer::Blocked => {
                response["promptFeedback"] = json!({"blockReason": "SAFETY", "safetyRatings": [
                    {"category": "HARM_CATEGORY_SEXUALLY_EXPLICIT", "probability": "NEGLIGIBLE"},
                    {"category": "HARM_CATEGORY_HATE_SPEECH", "probability": "NEGLIGIBLE"},
                    {"category": "HARM_CATEGORY_HARASSMENT", "probability": "NEGLIGIBLE"},
                    {"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "HIGH"}]});
            }
            Answer::Text { tokens, finish_reason } => {
                let mut text = String::new();
                if *tokens > 0 {
                    synth::push_token(&mut text, step);
                }
                response["candidates"] =
                    self.candidates(json!([{"text": text}]), last.then_some(*finish_reason));
            }
            Answer::FunctionCall { name } => {
                let part = json!({"functionCall": {"name": name, "args": {"location": "Paris"}}, "thoughtSignature": THOUGHT_SIGNATURE});
                response["candidates"] = self.candidates(json!([part]), Some("STOP"));
            }
        }
        Some(response)
    }

    fn candidates(&self, parts: Value, finish_reason: Option<&str>) -> Value {
        (0..self.candidates)
            .map(|index| {
                let mut candidate = json!({"content": {"parts": parts, "role": "model"}, "index": index});
                if let Some(reason) = finish_reason {
                    candidate["finishReason"] = reason.into();
                }
                candidate
            })
            .collect()
    }

    /// The whole answer, as `generateContent` sends it.
    fn whole(&self) -> Value {
        let steps = self.steps();
        let mut response = json!({"usageMetadata": self.usage_metadata(steps), "modelVersion": self.model, "responseId": self.response_id});
        match &self.answer {
            Answer::Blocked => {
                if let Some(event) = self.event(0) {
                    response = event;
                }
            }
            Answer::Text { tokens, finish_reason } => {
                response["candidates"] =
                    self.candidates(json!([{"text": synth::text(*tokens)}]), Some(finish_reason));
            }
            Answer::FunctionCall { .. } => {
                if let Some(event) = self.event(0) {
                    response = event;
                }
            }
        }
        response
    }
}

impl EventSource for Events {
    fn write_next(&mut self, buf: &mut BytesMut, counters: &Counters) -> Option<Written> {
        let step = self.step;
        let event = self.event(step)?;
        self.step += 1;
        let last = self.step == self.steps();
        sse::encode(buf, None, &event.to_string());
        if last {
            let (prompt, completion) = self.usage_at(self.steps());
            counters.add_usage(prompt, completion);
        }
        let pace = if step == 0 { Pace::Ttft } else { Pace::Chunk };
        Some(Written { pace, last })
    }
}
