//! Google's error envelope → [`LlmError`].
//!
//! Google APIs answer `{"error": {"code": 429, "message": "...", "status": "RESOURCE_EXHAUSTED",
//! "details": [...]}}` (Vertex AI's streaming endpoint sometimes wraps it in a one-element
//! array). The canonical `status` decides the class where the HTTP status alone would mislead:
//! AI Studio refuses a bad key with a 400 `INVALID_ARGUMENT` whose `ErrorInfo` says
//! `API_KEY_INVALID`, and a prompt longer than the model's window is a 400 `INVALID_ARGUMENT`
//! too, told apart by its wording. A rate limit's wait comes from `Retry-After` or from the
//! `google.rpc.RetryInfo` detail's `retryDelay` (`"43s"`).

use std::time::Duration;

use http::{HeaderMap, StatusCode};
use serde::Deserialize;
use serde_json::Value;
use switchyard_types::llm::{ErrorClass, LlmError};

use crate::upstream::{classify, redact, retry_after, truncate};

#[derive(Debug, Deserialize)]
struct Envelope {
    error: GoogleError,
}

/// The `error` object of Google's envelope.
#[derive(Debug, Default, Deserialize)]
pub(super) struct GoogleError {
    #[serde(default)]
    code: Option<u16>,
    #[serde(default)]
    message: String,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    details: Vec<Value>,
}

/// Reads Google's envelope from `body`, as an object or a one-element array.
fn parse(body: &[u8]) -> Option<GoogleError> {
    if let Ok(envelope) = serde_json::from_slice::<Envelope>(body) {
        return Some(envelope.error);
    }
    serde_json::from_slice::<Vec<Envelope>>(body).ok()?.into_iter().next().map(|e| e.error)
}

/// The error for a non-2xx answer from `label`.
pub(super) fn from_response(
    label: &str,
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
    key: Option<&str>,
) -> LlmError {
    let error = parse(body).unwrap_or_else(|| {
        let text = String::from_utf8_lossy(body);
        let text = text.trim();
        GoogleError {
            message: if text.is_empty() { "(empty body)".to_owned() } else { truncate(text, 500).to_owned() },
            ..GoogleError::default()
        }
    });
    let wait = retry_after(headers).or_else(|| error.retry_delay());
    to_error(label, status, &error, key).with_retry_after(wait)
}

/// The error for an `{"error": ...}` event in the middle of a stream.
pub(super) fn from_event(label: &str, event: &[u8]) -> Option<LlmError> {
    let error = parse(event)?;
    let status =
        error.code.and_then(|c| StatusCode::from_u16(c).ok()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let wait = error.retry_delay();
    Some(to_error(label, status, &error, None).with_retry_after(wait))
}

fn to_error(label: &str, status: StatusCode, error: &GoogleError, key: Option<&str>) -> LlmError {
    let message = redact(&error.message, key);
    let google_status = error.status.as_deref().unwrap_or("");
    let class = error.class(status, &message);
    let shown_status = if google_status.is_empty() { String::new() } else { format!(" {google_status}") };
    let mut llm =
        LlmError::new(class, format!("{label} answered {}{shown_status}: {message}", status.as_u16()))
            .with_upstream_status(status.as_u16());
    // Google's canonical status names the client's mistake as precisely as Gemini can.
    if matches!(class, ErrorClass::BadRequest | ErrorClass::NotFound) && !google_status.is_empty() {
        llm = llm.with_code(google_status.to_ascii_lowercase());
    }
    llm
}

// === impl GoogleError ===

impl GoogleError {
    fn class(&self, status: StatusCode, message: &str) -> ErrorClass {
        let reason_is = |wanted: &str| {
            self.details.iter().any(|d| d.get("reason").and_then(Value::as_str) == Some(wanted))
        };
        match self.status.as_deref().unwrap_or("") {
            _ if reason_is("API_KEY_INVALID") || message.contains("API key not valid") => {
                ErrorClass::ProviderAuthentication
            }
            "RESOURCE_EXHAUSTED" => ErrorClass::RateLimited,
            "UNAVAILABLE" => ErrorClass::Overloaded,
            "PERMISSION_DENIED" | "UNAUTHENTICATED" => ErrorClass::ProviderAuthentication,
            "DEADLINE_EXCEEDED" => ErrorClass::Timeout,
            "INVALID_ARGUMENT" | "" if mentions_token_limit(message) => ErrorClass::ContextLengthExceeded,
            "NOT_FOUND" => ErrorClass::NotFound,
            "INTERNAL" | "UNKNOWN" => ErrorClass::UpstreamServer,
            _ => classify(status, None, message),
        }
    }

    /// The `google.rpc.RetryInfo` detail's `retryDelay`, a protobuf `Duration` in JSON (`"43s"`,
    /// `"1.5s"`).
    fn retry_delay(&self) -> Option<Duration> {
        let delay = self
            .details
            .iter()
            .filter(|d| {
                d.get("@type").and_then(Value::as_str).is_some_and(|t| t.ends_with("google.rpc.RetryInfo"))
            })
            .find_map(|d| d.get("retryDelay").and_then(Value::as_str))?;
        let seconds: f64 = delay.strip_suffix('s')?.parse().ok()?;
        (seconds.is_finite() && seconds >= 0.0).then(|| Duration::from_secs_f64(seconds.min(3600.0)))
    }
}

/// Gemini's wording for a prompt that does not fit: "The input token count (1234567) exceeds the
/// maximum number of tokens allowed (1048576)."
fn mentions_token_limit(message: &str) -> bool {
    message.contains("exceeds the maximum number of tokens")
        || message.contains("input token count")
        || message.contains("maximum context length")
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn error(status: u16, body: &str) -> LlmError {
        let status = StatusCode::from_u16(status).expect("a status");
        from_response(
            "gemini/gemini-2.5-flash",
            status,
            &HeaderMap::new(),
            body.as_bytes(),
            Some("AIzaSyA-secret-key-123"),
        )
    }

    #[test]
    fn a_header_wait_wins_over_retry_info() {
        let body = r#"{"error":{"code":429,"message":"quota","status":"RESOURCE_EXHAUSTED","details":[{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"15s"}]}}"#;
        let mut headers = HeaderMap::new();
        headers.insert("retry-after", HeaderValue::from_static("2"));
        let error = from_response("g", StatusCode::TOO_MANY_REQUESTS, &headers, body.as_bytes(), None);
        assert_eq!(error.retry_after, Some(Duration::from_secs(2)));
        assert_eq!(error.class, ErrorClass::RateLimited);
    }

    #[test]
    fn fractional_retry_delays_and_bodies_that_are_not_googles() {
        let body = r#"{"error":{"code":429,"message":"q","status":"RESOURCE_EXHAUSTED","details":[{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"1.500s"}]}}"#;
        assert_eq!(error(429, body).retry_after, Some(Duration::from_millis(1500)));
        let plain = error(502, "<html>Bad Gateway</html>");
        assert_eq!(plain.class, ErrorClass::UpstreamServer);
        assert!(plain.message.contains("Bad Gateway"), "{}", plain.message);
        let array = error(
            503,
            r#"[{"error":{"code":503,"message":"The model is overloaded.","status":"UNAVAILABLE"}}]"#,
        );
        assert_eq!(array.class, ErrorClass::Overloaded);
    }

    #[test]
    fn the_key_never_shows() {
        let body = r#"{"error":{"code":400,"message":"API key not valid (AIzaSyA-secret-key-123). Please pass a valid API key.","status":"INVALID_ARGUMENT","details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"API_KEY_INVALID","domain":"googleapis.com"}]}}"#;
        let error = error(400, body);
        assert_eq!(error.class, ErrorClass::ProviderAuthentication);
        assert!(!error.message.contains("secret"), "{}", error.message);
    }
}
