//! The one place where a failure becomes an HTTP response: status, error envelope in the
//! client's dialect (OpenAI's or Anthropic's) and headers, chosen by the error's class (after
//! linkerd's `respond.rs`).
//!
//! Every message says what went wrong and what to do. Provider keys never reach here: the
//! adapters redact them from provider messages before building an [`LlmError`].

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use switchyard_types::{
    anthropic,
    error::ErrorEnvelope,
    llm::{ErrorClass, LlmError},
};

/// The dialect a client speaks, which decides the shape of its errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// OpenAI: `{"error":{"message","type","param","code"}}`.
    OpenAi,
    /// Anthropic: `{"type":"error","error":{"type","message"}}`.
    Anthropic,
}

impl Dialect {
    /// The dialect of the endpoint at `path`: Anthropic's under `/v1/messages`, else OpenAI's.
    pub fn of_path(path: &str) -> Self {
        if path.starts_with("/v1/messages") { Self::Anthropic } else { Self::OpenAi }
    }
}

/// Anthropic's error type for a class of failure.
fn anthropic_type(class: ErrorClass) -> &'static str {
    use ErrorClass::*;
    match class {
        BadRequest | Conflict | ContextLengthExceeded | ContentPolicy => "invalid_request_error",
        Unauthenticated => "authentication_error",
        Forbidden => "permission_error",
        NotFound => "not_found_error",
        PayloadTooLarge => "request_too_large",
        RateLimited | LimitExceeded | BudgetExceeded => "rate_limit_error",
        Overloaded => "overloaded_error",
        _ => "api_error",
    }
}

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

/// Anthropic's envelope for `error`.
pub fn anthropic_envelope(error: &LlmError) -> anthropic::ErrorEnvelope {
    anthropic::ErrorEnvelope::new(anthropic_type(error.class), error.message.clone())
}

/// The complete HTTP response for `error`, for an OpenAI-dialect client.
pub fn error_response(error: &LlmError) -> Response {
    error_response_in(Dialect::OpenAi, error)
}

/// The complete HTTP response for `error`, in the client's `dialect`.
pub fn error_response_in(dialect: Dialect, error: &LlmError) -> Response {
    let (mut status, _, _) = status_and_type(error.class);
    let body = match dialect {
        Dialect::OpenAi => serde_json::to_vec(&envelope(error)),
        Dialect::Anthropic => {
            // Anthropic's own status for an overloaded API, which its SDKs retry.
            if error.class == ErrorClass::Overloaded {
                status = StatusCode::from_u16(529).unwrap_or(status);
            }
            serde_json::to_vec(&anthropic_envelope(error))
        }
    }
    .unwrap_or_default();
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
    fn anthropic_clients_get_anthropics_envelope_and_statuses() {
        let limited = LlmError::new(ErrorClass::BudgetExceeded, "spent");
        let body = serde_json::to_value(anthropic_envelope(&limited)).unwrap_or_default();
        assert_eq!(
            body,
            serde_json::json!({"type": "error", "error": {"type": "rate_limit_error", "message": "spent"}})
        );
        let overloaded =
            error_response_in(Dialect::Anthropic, &LlmError::new(ErrorClass::Overloaded, "busy"));
        assert_eq!(overloaded.status().as_u16(), 529);
        assert_eq!(Dialect::of_path("/v1/messages/count_tokens"), Dialect::Anthropic);
        assert_eq!(Dialect::of_path("/v1/chat/completions"), Dialect::OpenAi);
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
