//! Authentication at the edge: the master key.
//!
//! Clients send the key as `Authorization: Bearer <key>` (OpenAI SDKs) or `x-api-key: <key>`
//! (Anthropic SDKs). The comparison takes the same time whatever the key's content, so the
//! response time does not reveal how much of a guess was right. Virtual keys, teams and
//! per-key limits come with `switchyard-accounting`; until then the master key is the only
//! credential, and without one the gateway refuses to listen beyond loopback.

use std::sync::Arc;

use axum::{extract::Request, middleware::Next, response::Response};
use http::{HeaderMap, header};
use switchyard_types::llm::{ErrorClass, LlmError};

use crate::respond::error_response;

/// The credential every request must carry.
#[derive(Clone)]
pub struct MasterKey(Arc<str>);

impl MasterKey {
    /// Requires `key`.
    pub fn new(key: &str) -> Self {
        Self(key.into())
    }
}

/// Middleware: refuses requests without the master key with 401 in the OpenAI envelope.
pub async fn require_master_key(key: MasterKey, request: Request, next: Next) -> Response {
    match presented_key(request.headers()) {
        Some(presented) if constant_time_eq(presented.as_bytes(), key.0.as_bytes()) => {
            next.run(request).await
        }
        Some(_) => error_response(&LlmError::new(
            ErrorClass::Unauthenticated,
            "The API key is not valid for this gateway. Check the key your client sends (Authorization: Bearer <key>).",
        )),
        None => error_response(&LlmError::new(
            ErrorClass::Unauthenticated,
            "No API key was sent. Send this gateway's key as `Authorization: Bearer <key>` (OpenAI SDKs: api_key=...).",
        )),
    }
}

fn presented_key(headers: &HeaderMap) -> Option<&str> {
    if let Some(value) = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) {
        let value = value.trim();
        let token = value.strip_prefix("Bearer ").or_else(|| value.strip_prefix("bearer ")).unwrap_or(value);
        return Some(token.trim());
    }
    headers.get("x-api-key").and_then(|v| v.to_str().ok()).map(str::trim)
}

/// Compares in time that depends only on the lengths, never on where the bytes differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |diff, (x, y)| diff | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn reads_bearer_and_x_api_key() {
        let mut headers = HeaderMap::new();
        assert_eq!(presented_key(&headers), None);
        headers.insert("x-api-key", HeaderValue::from_static("k2"));
        assert_eq!(presented_key(&headers), Some("k2"));
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer k1"));
        assert_eq!(presented_key(&headers), Some("k1"), "Authorization wins");
    }

    #[test]
    fn compares_whole_keys() {
        assert!(constant_time_eq(b"sk-abc", b"sk-abc"));
        assert!(!constant_time_eq(b"sk-abc", b"sk-abd"));
        assert!(!constant_time_eq(b"sk-abc", b"sk-ab"));
    }
}
