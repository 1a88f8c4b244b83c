//! Translation between the two client dialects, OpenAI Chat Completions and Anthropic
//! Messages, in both directions, streams included.
//!
//! - [`chat_to_messages`]: an OpenAI client served by an Anthropic deployment. The request
//!   becomes a Messages body; the answer, complete or streamed, becomes a chat completion.
//! - [`messages_to_chat`]: an Anthropic client served by any other deployment. The request
//!   becomes a chat completion request (which the deployment's own adapter then translates to
//!   its dialect, if it is not OpenAI's); the answer becomes a Messages answer or event stream.
//!
//! Same-dialect traffic never comes here. Each direction maps what the other dialect can
//! express and refuses, with a `BadRequest` that names the field, what it cannot
//! (`n > 1` for Anthropic, Anthropic's server tools elsewhere); what is dropped because the
//! other side has no such thing (OpenAI's `logprobs`, `seed`; Anthropic's `top_k`, thinking
//! signatures going to OpenAI) is listed in `docs/providers.md`'s mapping table.
//!
//! Streams are translated event by event, as they arrive: each translator is a small state
//! machine over the source stream that holds only what the target dialect needs later (the
//! open content block, tool-call indices, the usage to report at the end), never the text.

pub mod chat_to_messages;
pub mod messages_to_chat;

use serde_json::{Map, Value};
use switchyard_types::{
    json::{Document, Json},
    llm::{ErrorClass, LlmError},
};

/// A `BadRequest` for a field the target dialect cannot express.
fn unsupported(param: &str, message: impl Into<String>) -> LlmError {
    LlmError::new(ErrorClass::BadRequest, message).with_param(param)
}

/// The text of OpenAI content (a string, or parts of which the text ones count), joined.
fn text_of(content: &Value) -> String {
    match content {
        Value::String(text) => text.clone(),
        Value::Array(parts) => {
            parts.iter().filter_map(|p| p.get("text").and_then(Value::as_str)).collect::<Vec<_>>().join("\n")
        }
        _ => String::new(),
    }
}

/// A JSON object from pairs.
fn object<const N: usize>(pairs: [(&str, Value); N]) -> Value {
    Value::Object(pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect::<Map<_, _>>())
}

/// A translated answer, encoded once as the document the client's dialect expects.
fn document<T: Document>(value: &Value) -> Result<Json<T>, LlmError> {
    let encoded = serde_json::to_vec(value)
        .map_err(|e| e.to_string())
        .and_then(|bytes| Json::from_bytes(bytes.into()).map_err(|e| e.to_string()));
    encoded.map_err(|e| {
        LlmError::new(ErrorClass::Internal, format!("could not encode a translated answer: {e}"))
    })
}

/// Unix seconds now.
fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// A data URL's media type and base64 payload: `data:image/png;base64,AAAA`.
fn parse_data_url(url: &str) -> Option<(&str, &str)> {
    let rest = url.strip_prefix("data:")?;
    let (meta, data) = rest.split_once(',')?;
    let media_type = meta.strip_suffix(";base64")?;
    Some((media_type, data))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_urls_split_into_media_type_and_payload() {
        assert_eq!(parse_data_url("data:image/png;base64,AAAA"), Some(("image/png", "AAAA")));
        assert_eq!(parse_data_url("data:image/png,AAAA"), None, "only base64 payloads");
        assert_eq!(parse_data_url("https://x/y.png"), None);
    }
}
