//! Anthropic Messages wire shapes: the request (`POST /v1/messages`), the complete answer, a
//! stream event, usage, and the error envelope `{"type":"error","error":{"type","message"}}`.
//!
//! As with [`openai`](crate::openai), each struct models only the fields the gateway reads or
//! writes and keeps every other one in `extra`, so Anthropic-to-Anthropic traffic is lossless:
//! thinking blocks and their signatures, `cache_control`, tool definitions, `metadata`, fields
//! Anthropic adds next year. Content blocks are kept as JSON values; translation to and from the
//! OpenAI dialect reads them where it must (`switchyard-providers`' `translate` module).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::openai::Extra;

/// The `anthropic-version` Switchyard sends when the client named none.
pub const DEFAULT_VERSION: &str = "2023-06-01";

/// The client's `anthropic-version` and `anthropic-beta` headers, which the gateway's Messages
/// endpoint puts in the request's extensions: an Anthropic deployment sends them on, so that
/// betas the client opted into reach the provider; other deployments ignore them.
#[derive(Debug, Clone, Default)]
pub struct ClientHeaders {
    /// `anthropic-version`.
    pub version: Option<http::HeaderValue>,
    /// `anthropic-beta` (comma-separated beta names).
    pub beta: Option<http::HeaderValue>,
}

/// `POST /v1/messages` request body (also the body of `/v1/messages/count_tokens`, which has
/// no `max_tokens`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MessagesRequest {
    /// The model the client asked for; the gateway replaces it with the deployment's model.
    pub model: String,
    /// The conversation: `{"role": "user" | "assistant", "content": string | [blocks]}`.
    pub messages: Vec<MessageParam>,
    /// The system prompt: a string or an array of text blocks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<Value>,
    /// The most tokens to generate; required by Anthropic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u64>,
    /// Whether to answer with server-sent events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    /// `{"user_id": ...}`: the end user, recorded for reporting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Value>,
    /// Everything else (`tools`, `tool_choice`, `thinking`, `stop_sequences`, `temperature`,
    /// ...), passed through untouched.
    #[serde(flatten)]
    pub extra: Extra,
}

impl MessagesRequest {
    /// Whether the client asked for a stream.
    pub fn is_stream(&self) -> bool {
        self.stream.unwrap_or(false)
    }

    /// `metadata.user_id`, when it is a string.
    pub fn user_id(&self) -> Option<&str> {
        self.metadata.as_ref()?.get("user_id")?.as_str()
    }
}

/// One message of a Messages conversation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MessageParam {
    /// `user` or `assistant`.
    pub role: String,
    /// A string, or an array of content blocks (`text`, `image`, `document`, `tool_use`,
    /// `tool_result`, `thinking`, `redacted_thinking`, ...), kept as sent.
    pub content: Value,
    /// Everything else.
    #[serde(flatten)]
    pub extra: Extra,
}

/// A complete (non-streamed) answer: `{"type": "message", ...}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// `msg_...`.
    #[serde(default)]
    pub id: String,
    /// Always `message`.
    #[serde(rename = "type", default = "message_type")]
    pub kind: String,
    /// Always `assistant`.
    #[serde(default = "assistant")]
    pub role: String,
    /// The model that answered.
    #[serde(default)]
    pub model: String,
    /// The content blocks, as the provider sent them.
    #[serde(default)]
    pub content: Vec<Value>,
    /// `end_turn`, `max_tokens`, `stop_sequence`, `tool_use`, `pause_turn`, `refusal`.
    #[serde(default)]
    pub stop_reason: Option<String>,
    /// The stop sequence that matched, if one did.
    #[serde(default)]
    pub stop_sequence: Option<String>,
    /// Token usage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<MessagesUsage>,
    /// Everything else.
    #[serde(flatten)]
    pub extra: Extra,
}

fn message_type() -> String {
    "message".to_owned()
}

fn assistant() -> String {
    "assistant".to_owned()
}

/// Token usage as Anthropic reports it. `input_tokens` excludes the cached and cache-writing
/// tokens, which are counted apart.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MessagesUsage {
    /// Input tokens neither read from nor written to the prompt cache.
    #[serde(default)]
    pub input_tokens: u64,
    /// Output tokens.
    #[serde(default)]
    pub output_tokens: u64,
    /// Input tokens written to the prompt cache.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_creation_input_tokens: Option<u64>,
    /// Input tokens read from the prompt cache.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_read_input_tokens: Option<u64>,
    /// Everything else (`server_tool_use`, `service_tier`, ...).
    #[serde(flatten)]
    pub extra: Extra,
}

/// One event of a streamed answer. Its `type` is also the SSE `event:` name: `message_start`,
/// `content_block_start`, `content_block_delta`, `content_block_stop`, `message_delta`,
/// `message_stop`, `ping`, `error`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StreamEvent {
    /// The event type.
    #[serde(rename = "type")]
    pub kind: String,
    /// The rest of the event (`message`, `index`, `content_block`, `delta`, `usage`, `error`).
    #[serde(flatten)]
    pub extra: Extra,
}

/// `POST /v1/messages/count_tokens` response body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenCount {
    /// Tokens the request's prompt takes.
    pub input_tokens: u64,
}

/// Anthropic's error envelope: `{"type": "error", "error": {"type", "message"}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorEnvelope {
    /// Always `error`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The error itself.
    pub error: ErrorBody,
}

/// What went wrong.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// `invalid_request_error`, `authentication_error`, `permission_error`, `not_found_error`,
    /// `request_too_large`, `rate_limit_error`, `api_error`, `overloaded_error`.
    #[serde(rename = "type")]
    pub kind: String,
    /// What went wrong and what to do about it.
    pub message: String,
}

impl ErrorEnvelope {
    /// An envelope of the given error type.
    pub fn new(kind: &str, message: impl Into<String>) -> Self {
        Self { kind: "error".to_owned(), error: ErrorBody { kind: kind.to_owned(), message: message.into() } }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_request_keeps_thinking_cache_control_and_unknown_fields() {
        let body = json!({
            "model": "claude-sonnet-4-5",
            "max_tokens": 1024,
            "system": [{"type": "text", "text": "be brief", "cache_control": {"type": "ephemeral"}}],
            "messages": [
                {"role": "user", "content": "hi"},
                {"role": "assistant", "content": [
                    {"type": "thinking", "thinking": "hmm", "signature": "EqQBCgIYAhIM"},
                    {"type": "text", "text": "hello"}
                ]}
            ],
            "thinking": {"type": "enabled", "budget_tokens": 2000},
            "metadata": {"user_id": "u-1"},
            "a_field_anthropic_adds_next_year": [1]
        });
        let request: MessagesRequest = serde_json::from_value(body.clone()).unwrap();
        assert_eq!(request.user_id(), Some("u-1"));
        assert!(!request.is_stream());
        assert_eq!(serde_json::to_value(&request).unwrap(), body);
        assert!(serde_json::to_string(&request).unwrap().starts_with(r#"{"model":"#), "model first");
    }

    #[test]
    fn a_message_and_an_event_round_trip() {
        let body = json!({"id": "msg_1", "type": "message", "role": "assistant", "model": "m",
            "content": [{"type": "text", "text": "hi"}], "stop_reason": "end_turn", "stop_sequence": null,
            "usage": {"input_tokens": 3, "output_tokens": 1, "cache_read_input_tokens": 2,
                      "service_tier": "standard"}});
        let message: Message = serde_json::from_value(body.clone()).unwrap();
        assert_eq!(message.usage.as_ref().unwrap().cache_read_input_tokens, Some(2));
        assert_eq!(serde_json::to_value(&message).unwrap(), body);
        let event: StreamEvent = serde_json::from_value(json!({"type": "ping"})).unwrap();
        assert_eq!(event.kind, "ping");
    }
}
