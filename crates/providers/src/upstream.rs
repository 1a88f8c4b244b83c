//! What every adapter does with an HTTP answer it did not like: classify a provider's error
//! status and body onto an [`ErrorClass`], read `Retry-After`, keep the provider's message
//! without our key, and describe a transport failure readably.
//!
//! The dialects differ in their error bodies, not in what a status means: a 429 is a rate
//! limit whether OpenAI, Anthropic, Gemini, Bedrock or Cohere sends it. Each adapter reads its
//! own body shape, then calls [`classify`] with the status and what the body said.

use std::time::Duration;

use http::{HeaderMap, StatusCode};
use switchyard_types::llm::{ErrorClass, LlmError};

/// An [`LlmError`] for a request that got no HTTP answer from `label` (at `api_base`).
pub(crate) fn transport_error(label: &str, api_base: &str, err: &reqwest::Error) -> LlmError {
    let cause = error_chain(err);
    if err.is_timeout() {
        LlmError::new(ErrorClass::Timeout, format!("{label} did not answer in time: {cause}"))
    } else if err.is_connect() {
        LlmError::new(ErrorClass::Unreachable, format!("could not connect to {label} at {api_base}: {cause}"))
    } else {
        LlmError::new(ErrorClass::UpstreamServer, format!("the request to {label} failed: {cause}"))
    }
}

/// Maps a provider's error answer onto an [`ErrorClass`].
pub fn classify(status: StatusCode, code: Option<&str>, message: &str) -> ErrorClass {
    let code = code.unwrap_or("");
    let mentions = |needle: &str| code.contains(needle) || message.contains(needle);
    match status.as_u16() {
        400 | 422 if mentions("context_length") || mentions("maximum context length") => {
            ErrorClass::ContextLengthExceeded
        }
        400 | 422 if mentions("content_filter") || mentions("content_policy") => ErrorClass::ContentPolicy,
        400 | 422 => ErrorClass::BadRequest,
        401 | 403 => ErrorClass::ProviderAuthentication,
        404 => ErrorClass::NotFound,
        408 | 504 => ErrorClass::Timeout,
        413 => ErrorClass::PayloadTooLarge,
        429 => ErrorClass::RateLimited,
        503 | 529 => ErrorClass::Overloaded,
        _ => ErrorClass::UpstreamServer,
    }
}

/// What a provider's error body says.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct UpstreamError {
    pub(crate) message: String,
    pub(crate) code: Option<String>,
    pub(crate) param: Option<String>,
}

/// Reads a provider's error body, whatever shape it has: OpenAI's
/// `{"error":{"message","type","param","code"}}`, `{"error":"..."}`, `{"message":"..."}`,
/// `{"detail":"..."}`, or plain text.
pub(crate) fn upstream_error(body: &[u8]) -> UpstreamError {
    let text = || {
        let text = String::from_utf8_lossy(body);
        let text = text.trim();
        if text.is_empty() { "(empty body)".to_owned() } else { truncate(text, 500).to_owned() }
    };
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) else {
        return UpstreamError { message: text(), ..UpstreamError::default() };
    };
    let as_string = |v: Option<&serde_json::Value>| v.and_then(|v| v.as_str()).map(str::to_owned);
    let error = value.get("error");
    let message = as_string(error.and_then(|e| e.get("message")))
        .or_else(|| as_string(error))
        .or_else(|| as_string(value.get("message")))
        .or_else(|| as_string(value.get("detail")));
    UpstreamError {
        message: message.unwrap_or_else(text),
        code: as_string(error.and_then(|e| e.get("code"))),
        param: as_string(error.and_then(|e| e.get("param"))),
    }
}

pub(crate) fn truncate(text: &str, max: usize) -> &str {
    match text.char_indices().nth(max) {
        Some((at, _)) => &text[..at],
        None => text,
    }
}

/// Removes our key from a provider's message (some echo a prefix of the key they rejected).
pub(crate) fn redact(message: &str, key: Option<&str>) -> String {
    match key {
        Some(key) if key.len() >= 8 => message.replace(key, "<redacted>").replace(&key[..8], "<redacted>"),
        _ => message.to_owned(),
    }
}

/// `retry-after-ms` (OpenAI) or `Retry-After` in seconds.
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let number = |name: &str| headers.get(name)?.to_str().ok()?.trim().parse::<f64>().ok();
    let duration = number("retry-after-ms")
        .map(|ms| ms / 1000.0)
        .or_else(|| number("retry-after"))
        .filter(|s| s.is_finite() && *s >= 0.0)?;
    Some(Duration::from_secs_f64(duration.min(3600.0)))
}

/// A readable cause for a transport failure, without the URL (it is in the label already).
pub(crate) fn error_chain(err: &reqwest::Error) -> String {
    use std::error::Error as _;
    let mut out = String::from(if err.is_timeout() {
        "timed out"
    } else if err.is_connect() {
        "connection failed"
    } else if err.is_body() {
        "reading the response body failed"
    } else {
        "request failed"
    });
    let mut source = err.source();
    while let Some(cause) = source {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        source = cause.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    #[test]
    fn classifies_provider_errors() {
        let c = |status: u16, code: Option<&str>, msg: &str| {
            classify(StatusCode::from_u16(status).unwrap_or(StatusCode::IM_A_TEAPOT), code, msg)
        };
        assert_eq!(c(400, Some("context_length_exceeded"), ""), ErrorClass::ContextLengthExceeded);
        assert_eq!(
            c(400, None, "This model's maximum context length is 8192 tokens"),
            ErrorClass::ContextLengthExceeded
        );
        assert_eq!(c(400, Some("content_filter"), ""), ErrorClass::ContentPolicy);
        assert_eq!(c(400, None, "bad"), ErrorClass::BadRequest);
        assert_eq!(c(401, None, ""), ErrorClass::ProviderAuthentication);
        assert_eq!(c(429, None, ""), ErrorClass::RateLimited);
        assert_eq!(c(503, None, ""), ErrorClass::Overloaded);
        assert_eq!(c(504, None, ""), ErrorClass::Timeout);
        assert_eq!(c(500, None, ""), ErrorClass::UpstreamServer);
    }

    #[test]
    fn reads_every_error_body_shape() {
        let openai =
            br#"{"error":{"message":"Rate limit reached","type":"requests","code":"rate_limit_exceeded"}}"#;
        let read = upstream_error(openai);
        assert_eq!(
            (read.message.as_str(), read.code.as_deref()),
            ("Rate limit reached", Some("rate_limit_exceeded"))
        );
        let with_param = upstream_error(
            br#"{"error":{"message":"bad n","type":"invalid_request_error","param":"n","code":null}}"#,
        );
        assert_eq!(with_param.param.as_deref(), Some("n"));
        assert_eq!(with_param.code, None);
        assert_eq!(upstream_error(br#"{"error":"model not loaded"}"#).message, "model not loaded");
        assert_eq!(upstream_error(br#"{"detail":"Not Found"}"#).message, "Not Found");
        assert_eq!(upstream_error(b"Bad Gateway").message, "Bad Gateway");
        assert_eq!(upstream_error(b"").message, "(empty body)");
    }

    #[test]
    fn redacts_the_key_and_its_prefix() {
        let key = "sk-proj-abcdefghijklmnop";
        let message = "Incorrect API key provided: sk-proj-***mnop. Also sk-proj-abcdefghijklmnop";
        let redacted = redact(message, Some(key));
        assert!(!redacted.contains(key) && !redacted.contains("sk-proj-"), "{redacted}");
    }

    #[test]
    fn retry_after_prefers_milliseconds() {
        let mut headers = HeaderMap::new();
        headers.insert("retry-after", HeaderValue::from_static("7"));
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(7)));
        headers.insert("retry-after-ms", HeaderValue::from_static("1500"));
        assert_eq!(retry_after(&headers), Some(Duration::from_millis(1500)));
        headers.insert("retry-after-ms", HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(7)));
    }
}
