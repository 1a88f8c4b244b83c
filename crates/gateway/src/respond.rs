//! The one place where a failure becomes an HTTP response: status, OpenAI error envelope and
//! headers, chosen by the error's class (after linkerd's `respond.rs`).
//!
//! Every message says what went wrong and what to do. Provider keys never reach here: the
//! adapters redact them from provider messages before building an [`LlmError`].

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use switchyard_types::{
    error::ErrorEnvelope,
    llm::{ErrorClass, LlmError},
};

/// The status, OpenAI error type and code for a class of failure.
pub fn status_and_type(class: ErrorClass) -> (StatusCode, &'static str, &'static str) {
    use ErrorClass::*;
    match class {
        BadRequest => (StatusCode::BAD_REQUEST, "invalid_request_error", "invalid_request"),
        Unauthenticated => (StatusCode::UNAUTHORIZED, "authentication_error", "invalid_api_key"),
        Forbidden => (StatusCode::FORBIDDEN, "permission_error", "forbidden"),
        NotFound => (StatusCode::NOT_FOUND, "invalid_request_error", "model_not_found"),
        Conflict => (StatusCode::CONFLICT, "invalid_request_error", "conflict"),
        PayloadTooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "invalid_request_error", "request_too_large"),
        ProviderAuthentication => (StatusCode::BAD_GATEWAY, "api_error", "upstream_authentication_failed"),
        RateLimited => (StatusCode::TOO_MANY_REQUESTS, "rate_limit_error", "rate_limit_exceeded"),
        Overloaded => (StatusCode::SERVICE_UNAVAILABLE, "api_error", "overloaded"),
        ContextLengthExceeded => {
            (StatusCode::BAD_REQUEST, "invalid_request_error", "context_length_exceeded")
        }
        ContentPolicy => (StatusCode::BAD_REQUEST, "invalid_request_error", "content_policy_violation"),
        UpstreamServer => (StatusCode::BAD_GATEWAY, "api_error", "upstream_error"),
        Unreachable => (StatusCode::BAD_GATEWAY, "api_error", "upstream_unreachable"),
        Timeout => (StatusCode::GATEWAY_TIMEOUT, "api_error", "timeout"),
        LimitExceeded => (StatusCode::TOO_MANY_REQUESTS, "rate_limit_error", "rate_limit_exceeded"),
        // OpenAI's own answer when an account's quota is spent.
        BudgetExceeded => (StatusCode::TOO_MANY_REQUESTS, "insufficient_quota", "budget_exceeded"),
        _ => (StatusCode::INTERNAL_SERVER_ERROR, "api_error", "internal_error"),
    }
}

/// The OpenAI envelope for `error`.
pub fn envelope(error: &LlmError) -> ErrorEnvelope {
    let (_, kind, mut code) = status_and_type(error.class);
    if error.class == ErrorClass::NotFound && error.param.as_deref() != Some("model") {
        code = "not_found";
    }
    let code = error.code.as_deref().unwrap_or(code);
    let envelope = ErrorEnvelope::new(error.message.clone(), kind, Some(code));
    match &error.param {
        Some(param) => envelope.with_param(param.clone()),
        None => envelope,
    }
}

/// The complete HTTP response for `error`.
pub fn error_response(error: &LlmError) -> Response {
    let (status, _, _) = status_and_type(error.class);
    let body = serde_json::to_vec(&envelope(error)).unwrap_or_default();
    let mut response = (status, [(header::CONTENT_TYPE, "application/json")], body).into_response();
    if let Some(wait) = error.retry_after {
        let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn rate_limits_carry_retry_after_rounded_up() {
        let error = LlmError::new(ErrorClass::RateLimited, "slow down")
            .with_retry_after(Some(Duration::from_millis(1500)));
        let response = error_response(&error);
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()[header::RETRY_AFTER], "2");
    }

    #[test]
    fn the_envelope_names_type_code_and_param() {
        let error = LlmError::new(ErrorClass::NotFound, "no such model").with_param("model");
        let body = serde_json::to_value(envelope(&error)).unwrap_or_default();
        assert_eq!(body["error"]["type"], "invalid_request_error");
        assert_eq!(body["error"]["code"], "model_not_found");
        assert_eq!(body["error"]["param"], "model");
        assert_eq!(body["error"]["message"], "no such model");
    }
}
