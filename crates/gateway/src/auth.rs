//! Authentication at the edge: the master key and virtual keys.
//!
//! Clients send a key as `Authorization: Bearer <key>` (OpenAI SDKs) or `x-api-key: <key>`
//! (Anthropic SDKs). What it is decides who the [`Caller`] is:
//! - the master key: an operator, who may also use the admin API;
//! - a virtual key (`sk-sy-...`): its [`Identity`] (key, team, user), with that key's models,
//!   limits and budgets ([`crate::accounting::KeyCache`]);
//! - nothing, or any other key, when no master key is configured: an anonymous caller, which
//!   the server only allows on loopback addresses (an open proxy on a network spends someone's
//!   money).
//!
//! The master key is compared in time that does not depend on where a guess goes wrong;
//! virtual keys are looked up by their SHA-256, which reveals nothing about the key itself.

use std::sync::Arc;

use axum::{extract::Request, middleware::Next, response::Response};
use http::{HeaderMap, header};
use switchyard_accounting::{keys, model::Identity};
use switchyard_types::llm::{ErrorClass, LlmError};

use crate::{
    accounting::KeyCache,
    respond::{Dialect, error_response, error_response_in},
};

/// The credential that makes a caller an operator.
#[derive(Clone)]
pub struct MasterKey(Arc<str>);

impl MasterKey {
    /// Requires `key`.
    pub fn new(key: &str) -> Self {
        Self(key.into())
    }
}

/// Who sent a request, in the HTTP request's extensions once [`authenticate`] ran.
#[derive(Clone)]
pub enum Caller {
    /// The master key: an operator.
    Master,
    /// A virtual key.
    Key(Arc<Identity>),
    /// No master key is configured and no virtual key was sent (loopback only).
    Anonymous,
}

impl Caller {
    /// The identity of a virtual key's caller.
    pub fn identity(&self) -> Option<&Arc<Identity>> {
        match self {
            Self::Key(identity) => Some(identity),
            _ => None,
        }
    }
}

/// What [`authenticate`] checks keys against.
#[derive(Clone)]
pub struct Authenticator {
    /// The master key, when one is configured.
    pub master: Option<MasterKey>,
    /// Virtual keys.
    pub keys: KeyCache,
}

/// Middleware: works out the [`Caller`], or refuses the request with 401.
pub async fn authenticate(auth: Arc<Authenticator>, mut request: Request, next: Next) -> Response {
    let dialect = Dialect::of_path(request.uri().path());
    let error_response = |error: &LlmError| error_response_in(dialect, error);
    let caller = match presented_key(request.headers()) {
        // Anything with the virtual keys' prefix is meant as one: a malformed one is refused as
        // unknown, never taken for an anonymous caller.
        Some(presented) if presented.starts_with(keys::KEY_PREFIX) => {
            let identified = if keys::is_virtual_key(presented) {
                auth.keys.identify(presented).await
            } else {
                Err(crate::accounting::unknown_key())
            };
            match identified {
                Ok(identity) => Caller::Key(identity),
                Err(error) => return error_response(&error),
            }
        }
        Some(presented) => match &auth.master {
            Some(key) if constant_time_eq(presented.as_bytes(), key.0.as_bytes()) => Caller::Master,
            Some(_) => {
                return error_response(&LlmError::new(
                    ErrorClass::Unauthenticated,
                    "The API key is not valid for this gateway. Check the key your client sends (Authorization: Bearer <key>, or x-api-key: <key>).",
                ));
            }
            None => Caller::Anonymous,
        },
        None if auth.master.is_some() => {
            return error_response(&LlmError::new(
                ErrorClass::Unauthenticated,
                "No API key was sent. Send this gateway's key as `Authorization: Bearer <key>` or `x-api-key: <key>` (OpenAI and Anthropic SDKs: api_key=...).",
            ));
        }
        None => Caller::Anonymous,
    };
    request.extensions_mut().insert(caller);
    next.run(request).await
}

/// Middleware for the admin API and `/metrics`: only an operator (the master key, or anyone on
/// loopback when no master key is configured) may pass.
pub async fn require_operator(request: Request, next: Next) -> Response {
    match request.extensions().get::<Caller>() {
        Some(Caller::Master | Caller::Anonymous) => next.run(request).await,
        _ => error_response(&LlmError::new(
            ErrorClass::Forbidden,
            "This needs the gateway's master key; a virtual key cannot use the admin API or read metrics.",
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
