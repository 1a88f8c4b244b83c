//! Cohere's error answers → the [`ErrorClass`] the router acts on.
//!
//! Cohere answers errors as `{"message": "..."}` (sometimes with an `id`), with no code, so
//! its status and wording decide the class:
//!
//! | status | wording | class |
//! |---|---|---|
//! | 400, 422 | `too many tokens` (but `max tokens must be ...`, a bad `max_tokens`), `exceeds the context` | context length exceeded |
//! | 400, 422 | anything else | bad request |
//! | 401, 403 | | provider authentication (our key) |
//! | 429 | | rate limited, with `Retry-After` |
//! | 498 | a deny-listed token in the request or the answer | content policy |
//! | 499 | the request was cancelled upstream | upstream server (retryable) |
//! | 503 | | overloaded |
//! | other 5xx | | upstream server |
//!
//! Cohere's API reference defines 498 (`InvalidToken`) as "a request or response contains a
//! deny-listed token": a token of text the service refuses, not an API key, so it is the
//! content's fault and retrying elsewhere would not help.

use http::StatusCode;
use switchyard_types::llm::ErrorClass;

use crate::upstream;

/// The class of a Cohere error answer with `status` and `message`.
pub(crate) fn classify(status: StatusCode, message: &str) -> ErrorClass {
    let lower = message.to_ascii_lowercase();
    match status.as_u16() {
        400 | 422 if exceeds_context(&lower) => ErrorClass::ContextLengthExceeded,
        498 => ErrorClass::ContentPolicy,
        499 => ErrorClass::UpstreamServer,
        _ => upstream::classify(status, None, message),
    }
}

fn exceeds_context(message: &str) -> bool {
    // "too many tokens: total number of tokens in the prompt cannot exceed 4081 - received 4292"
    // and "too many tokens: size limit exceeded by 11326 tokens" are the prompt's; "too many
    // tokens: max tokens must be less than or equal to 4096" is a `max_tokens` set too high.
    (message.contains("too many tokens") && !message.contains("max tokens must"))
        || message.contains("exceeds the context")
        || message.contains("context length")
        || message.contains("context window")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class(status: u16, message: &str) -> ErrorClass {
        classify(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR), message)
    }

    #[test]
    fn cohere_statuses_and_wordings_map_to_classes() {
        assert_eq!(
            class(
                400,
                "too many tokens: total number of tokens in the prompt cannot exceed 4081 - received 4292. Try using a shorter prompt, or enabling prompt truncating."
            ),
            ErrorClass::ContextLengthExceeded
        );
        assert_eq!(
            class(422, "too many tokens: size limit exceeded by 11326 tokens."),
            ErrorClass::ContextLengthExceeded
        );
        assert_eq!(
            class(400, "the prompt exceeds the context window of this model"),
            ErrorClass::ContextLengthExceeded
        );
        assert_eq!(
            class(
                400,
                "too many tokens: max tokens must be less than or equal to 4096, the maximum output for this model - received 8192."
            ),
            ErrorClass::BadRequest
        );
        assert_eq!(
            class(400, "invalid request: message must not be empty in a turn"),
            ErrorClass::BadRequest
        );
        assert_eq!(class(401, "invalid api token"), ErrorClass::ProviderAuthentication);
        assert_eq!(class(403, "forbidden"), ErrorClass::ProviderAuthentication);
        assert_eq!(class(404, "model 'x' not found"), ErrorClass::NotFound);
        assert_eq!(class(429, "You are using a Trial key"), ErrorClass::RateLimited);
        assert_eq!(class(498, "blocked"), ErrorClass::ContentPolicy);
        assert_eq!(class(499, "request cancelled"), ErrorClass::UpstreamServer);
        assert_eq!(class(500, "internal server error"), ErrorClass::UpstreamServer);
        assert_eq!(class(503, "service unavailable"), ErrorClass::Overloaded);
        assert_eq!(class(504, "gateway timeout"), ErrorClass::Timeout);
    }
}
