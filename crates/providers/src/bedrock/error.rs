//! Bedrock's errors, as its REST-JSON protocol sends them, onto the classes the router acts on.
//!
//! A failed call answers a status, an `x-amzn-errortype` header naming the exception
//! (`ValidationException:http://internal.amazon.com/coral/com.amazon.bedrock/`) and a body
//! `{"message": "..."}` (some services say `Message`, and some put the name in `__type` or
//! `code` instead of the header). A stream that has begun reports a failure as an
//! `exception` frame whose `:exception-type` header names the union member
//! (`throttlingException`, `modelStreamErrorException`, ...): the same names, lower camel case.
//! Both are read here, so the two paths classify a failure alike.

use http::{HeaderMap, StatusCode};
use switchyard_types::llm::ErrorClass;

use crate::upstream::{classify, truncate};

/// What a Bedrock error answer says: the exception's name (bare, e.g. `ThrottlingException`)
/// and its message.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct BedrockError {
    pub(crate) kind: Option<String>,
    pub(crate) message: String,
}

/// Reads an error answer's `x-amzn-errortype` header and body.
pub(crate) fn read(headers: &HeaderMap, body: &[u8]) -> BedrockError {
    let value = serde_json::from_slice::<serde_json::Value>(body).ok();
    let field = |name: &str| value.as_ref()?.get(name)?.as_str().map(str::to_owned);
    let kind = headers
        .get("x-amzn-errortype")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or_else(|| field("__type"))
        .or_else(|| field("code"))
        .map(|kind| bare_name(&kind).to_owned())
        .filter(|kind| !kind.is_empty());
    let message = field("message").or_else(|| field("Message")).unwrap_or_else(|| {
        let text = String::from_utf8_lossy(body);
        let text = text.trim();
        if text.is_empty() { "(empty body)".to_owned() } else { truncate(text, 500).to_owned() }
    });
    BedrockError { kind, message }
}

/// The exception's name without the namespace AWS may put around it:
/// `aws.protocoltests#ValidationException:http://...` is `ValidationException`.
fn bare_name(kind: &str) -> &str {
    let kind = kind.split(':').next().unwrap_or(kind);
    kind.rsplit('#').next().unwrap_or(kind).trim()
}

/// The class of a failure Bedrock named `kind` (an HTTP error's `ThrottlingException` or a
/// stream's `throttlingException`: case does not matter), with `status` when it answered one.
pub(crate) fn class_of(status: Option<StatusCode>, kind: Option<&str>, message: &str) -> ErrorClass {
    let kind = kind.map(str::to_ascii_lowercase);
    match kind.as_deref() {
        Some("throttlingexception" | "servicequotaexceededexception" | "toomanyrequestsexception") => {
            ErrorClass::RateLimited
        }
        Some("serviceunavailableexception" | "modelnotreadyexception") => ErrorClass::Overloaded,
        Some("validationexception") if mentions_context_length(message) => ErrorClass::ContextLengthExceeded,
        Some("validationexception") => ErrorClass::BadRequest,
        Some(
            "accessdeniedexception"
            | "unrecognizedclientexception"
            | "expiredtokenexception"
            | "invalidsignatureexception"
            | "incompletesignatureexception"
            | "missingauthenticationtokenexception"
            | "invalidclienttokenid"
            | "signaturedoesnotmatch",
        ) => ErrorClass::ProviderAuthentication,
        Some("modeltimeoutexception") => ErrorClass::Timeout,
        Some("resourcenotfoundexception") => ErrorClass::NotFound,
        Some("internalserverexception" | "modelstreamerrorexception" | "modelerrorexception") => {
            ErrorClass::UpstreamServer
        }
        // An exception we do not know: what its status means, the same for every provider.
        _ => match status {
            Some(status) => classify(status, None, message),
            None => ErrorClass::UpstreamServer,
        },
    }
}

/// Whether a `ValidationException`'s message says the prompt does not fit the model. Bedrock
/// passes the model's own words through: "Input is too long for requested model.", "prompt is
/// too long: 210000 tokens > 200000 maximum", "too many input tokens", "exceeds the context
/// window".
fn mentions_context_length(message: &str) -> bool {
    let message = message.to_ascii_lowercase();
    [
        "too long",
        "too many input tokens",
        "too many tokens",
        "context length",
        "context window",
        "context limit",
        "maximum context",
    ]
    .iter()
    .any(|needle| message.contains(needle))
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn headers(kind: &'static str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("x-amzn-errortype", HeaderValue::from_static(kind));
        headers
    }

    #[test]
    fn reads_the_header_then_the_body() {
        let read_one = read(
            &headers("ValidationException:http://internal.amazon.com/coral/com.amazon.bedrock/"),
            br#"{"message":"Input is too long for requested model."}"#,
        );
        assert_eq!(read_one.kind.as_deref(), Some("ValidationException"));
        assert_eq!(read_one.message, "Input is too long for requested model.");
        let from_body =
            read(&HeaderMap::new(), br#"{"__type":"com.amazon.coral#ThrottlingException","Message":"slow"}"#);
        assert_eq!(
            from_body,
            BedrockError { kind: Some("ThrottlingException".into()), message: "slow".into() }
        );
        assert_eq!(read(&HeaderMap::new(), b"").message, "(empty body)");
    }

    #[test]
    fn classifies_every_documented_exception() {
        let c = |kind: &str, message: &str| class_of(Some(StatusCode::BAD_REQUEST), Some(kind), message);
        assert_eq!(c("ThrottlingException", ""), ErrorClass::RateLimited);
        assert_eq!(c("throttlingException", ""), ErrorClass::RateLimited, "a stream's name");
        assert_eq!(c("ServiceUnavailableException", ""), ErrorClass::Overloaded);
        assert_eq!(c("ModelNotReadyException", ""), ErrorClass::Overloaded);
        assert_eq!(
            c("ValidationException", "Input is too long for requested model."),
            ErrorClass::ContextLengthExceeded
        );
        assert_eq!(
            c("ValidationException", "prompt is too long: 210000 tokens > 200000 maximum"),
            ErrorClass::ContextLengthExceeded
        );
        assert_eq!(c("ValidationException", "Too many input tokens."), ErrorClass::ContextLengthExceeded);
        assert_eq!(
            c("ValidationException", "The provided model identifier is invalid."),
            ErrorClass::BadRequest
        );
        for kind in [
            "AccessDeniedException",
            "UnrecognizedClientException",
            "ExpiredTokenException",
            "InvalidSignatureException",
        ] {
            assert_eq!(c(kind, ""), ErrorClass::ProviderAuthentication, "{kind}");
        }
        assert_eq!(c("ModelTimeoutException", ""), ErrorClass::Timeout);
        assert_eq!(c("ResourceNotFoundException", ""), ErrorClass::NotFound);
        assert_eq!(c("InternalServerException", ""), ErrorClass::UpstreamServer);
        assert_eq!(c("modelStreamErrorException", ""), ErrorClass::UpstreamServer);
        assert_eq!(class_of(Some(StatusCode::TOO_MANY_REQUESTS), None, ""), ErrorClass::RateLimited);
        assert_eq!(class_of(None, Some("SomethingNew"), ""), ErrorClass::UpstreamServer);
    }
}
