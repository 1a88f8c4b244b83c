//! Decode: the request body becomes a typed request, once, with errors a person can act on.
//!
//! The body is read up to the configured limit (413 past it, before reading more than the
//! limit), then parsed with serde_json. A syntax error says where (line and column); a
//! missing or mistyped field names the field as the error's `param`.

use axum::body::Body;
use http::HeaderMap;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde::de::DeserializeOwned;
use switchyard_types::llm::{ErrorClass, LlmError};

/// Reads the whole body, refusing more than `limit` bytes.
pub async fn read_body(headers: &HeaderMap, body: Body, limit: usize) -> Result<bytes::Bytes, LlmError> {
    let too_large = || {
        LlmError::new(
            ErrorClass::PayloadTooLarge,
            format!(
                "The request body is larger than this gateway accepts ({limit} bytes). \
                 Send less (smaller images, fewer messages) or raise server.max_body_bytes."
            ),
        )
    };
    let declared = headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|len| len > limit) {
        return Err(too_large());
    }
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(err) if err.downcast_ref::<LengthLimitError>().is_some() => Err(too_large()),
        Err(err) => {
            Err(LlmError::new(ErrorClass::BadRequest, format!("The request body could not be read: {err}")))
        }
    }
}

/// Parses a JSON body as `T`, naming `what` it should be in errors.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T, LlmError> {
    serde_json::from_slice(bytes).map_err(|err| {
        use serde_json::error::Category;
        match err.classify() {
            Category::Syntax | Category::Eof | Category::Io => LlmError::new(
                ErrorClass::BadRequest,
                format!(
                    "The request body is not valid JSON: {err}. Send a JSON object with a Content-Type of application/json."
                ),
            ),
            Category::Data => {
                let mut error =
                    LlmError::new(ErrorClass::BadRequest, format!("The request body is not a valid {what}: {err}."));
                if let Some(field) = field_named_in(&err.to_string()) {
                    error = error.with_param(field);
                }
                error
            }
        }
    })
}

/// `missing field `messages` at ...` → `messages`.
fn field_named_in(message: &str) -> Option<String> {
    let rest = message.strip_prefix("missing field `")?;
    Some(rest[..rest.find('`')?].to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_types::openai::ChatCompletionRequest;

    #[test]
    fn syntax_errors_say_where() {
        let err = parse_json::<ChatCompletionRequest>(
            b"{\"model\": \"m\",\n \"messages\": [}",
            "chat completion request",
        )
        .expect_err("broken JSON");
        assert_eq!(err.class, ErrorClass::BadRequest);
        assert!(err.message.contains("line 2 column"), "{}", err.message);
    }

    #[test]
    fn missing_fields_are_named_as_param() {
        let err = parse_json::<ChatCompletionRequest>(br#"{"model": "m"}"#, "chat completion request")
            .expect_err("no messages");
        assert_eq!(err.param.as_deref(), Some("messages"));
        assert!(err.message.contains("chat completion request"), "{}", err.message);
    }

    #[tokio::test]
    async fn bodies_over_the_limit_are_refused() {
        let err = read_body(&HeaderMap::new(), Body::from(vec![b'x'; 100]), 10).await.expect_err("too large");
        assert_eq!(err.class, ErrorClass::PayloadTooLarge);
        let ok = read_body(&HeaderMap::new(), Body::from("{}"), 10).await.expect("small body");
        assert_eq!(&ok[..], b"{}");
    }
}
