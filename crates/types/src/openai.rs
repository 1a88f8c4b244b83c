//! OpenAI wire shapes: Chat Completions (request, response, stream chunk), Embeddings, Models.
//!
//! Each struct models the fields the gateway reads or writes and keeps every other field in
//! `extra`, so that a request or response passes through the gateway without losing what we
//! do not model (`tools`, `response_format`, `logprobs`, `seed`, provider extensions, fields
//! OpenAI adds next year). Message contents, tool definitions and tool calls are kept as JSON
//! values: the gateway routes them, it does not interpret them.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Fields of a JSON object that a struct does not model, kept for the round trip.
pub type Extra = Map<String, Value>;

/// `POST /v1/chat/completions` request body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatCompletionRequest {
    /// The model the client asked for; the gateway replaces it with the deployment's model.
    pub model: String,
    /// The conversation.
    pub messages: Vec<ChatMessage>,
    /// Whether to answer with server-sent events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    /// Streaming options; `include_usage` asks for a final usage chunk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_options: Option<StreamOptions>,
    /// The end user the client acts for, recorded for reporting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Everything else, passed through untouched.
    #[serde(flatten)]
    pub extra: Extra,
}

impl ChatCompletionRequest {
    /// Whether the client asked for a stream.
    pub fn is_stream(&self) -> bool {
        self.stream.unwrap_or(false)
    }
}

/// `stream_options` of a chat request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StreamOptions {
    /// Send a last chunk with the usage of the whole request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include_usage: Option<bool>,
    /// Everything else, passed through untouched.
    #[serde(flatten)]
    pub extra: Extra,
}

/// One message of a conversation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// `system`, `developer`, `user`, `assistant` or `tool`.
    pub role: String,
    /// Everything else: `content` (a string, an array of parts, null or absent, each kept as
    /// sent), `name`, `tool_calls`, `tool_call_id`, `refusal`, ...
    #[serde(flatten)]
    pub extra: Extra,
}

impl ChatMessage {
    /// The message's content, when it has one that is not null.
    pub fn content(&self) -> Option<&Value> {
        self.extra.get("content").filter(|c| !c.is_null())
    }
}

/// A complete (non-streamed) chat completion.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatCompletion {
    /// Completion id.
    #[serde(default)]
    pub id: String,
    /// Always `chat.completion`.
    #[serde(default = "chat_completion_object")]
    pub object: String,
    /// Unix seconds.
    #[serde(default)]
    pub created: u64,
    /// The model that answered, as the provider names it.
    #[serde(default)]
    pub model: String,
    /// The choices (message, finish_reason, logprobs) as the provider sent them.
    #[serde(default)]
    pub choices: Vec<Value>,
    /// Token usage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    /// Everything else (`system_fingerprint`, `service_tier`, ...).
    #[serde(flatten)]
    pub extra: Extra,
}

fn chat_completion_object() -> String {
    "chat.completion".to_owned()
}

/// One `chat.completion.chunk` of a stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatCompletionChunk {
    /// Completion id, the same in every chunk of a stream.
    #[serde(default)]
    pub id: String,
    /// Always `chat.completion.chunk`.
    #[serde(default = "chat_completion_chunk_object")]
    pub object: String,
    /// Unix seconds.
    #[serde(default)]
    pub created: u64,
    /// The model that answered.
    #[serde(default)]
    pub model: String,
    /// The deltas (content, tool-call deltas, finish_reason) as the provider sent them.
    #[serde(default)]
    pub choices: Vec<Value>,
    /// Usage: null on every chunk but the last when `include_usage` was asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    /// Everything else.
    #[serde(flatten)]
    pub extra: Extra,
}

fn chat_completion_chunk_object() -> String {
    "chat.completion.chunk".to_owned()
}

/// Token usage as OpenAI reports it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Usage {
    /// Input tokens.
    #[serde(default)]
    pub prompt_tokens: u64,
    /// Output tokens.
    #[serde(default)]
    pub completion_tokens: u64,
    /// Their sum.
    #[serde(default)]
    pub total_tokens: u64,
    /// `prompt_tokens_details`, `completion_tokens_details` and whatever else the provider adds.
    #[serde(flatten)]
    pub extra: Extra,
}

/// `POST /v1/embeddings` request body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EmbeddingsRequest {
    /// The model the client asked for.
    pub model: String,
    /// A string, an array of strings, or token arrays.
    pub input: Value,
    /// Everything else (`encoding_format`, `dimensions`, `user`).
    #[serde(flatten)]
    pub extra: Extra,
}

/// `POST /v1/embeddings` response body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EmbeddingsResponse {
    /// Always `list`.
    #[serde(default = "list_object")]
    pub object: String,
    /// The embeddings, as the provider sent them.
    #[serde(default)]
    pub data: Vec<Value>,
    /// The model that answered.
    #[serde(default)]
    pub model: String,
    /// Token usage (embeddings report prompt tokens only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    /// Everything else.
    #[serde(flatten)]
    pub extra: Extra,
}

fn list_object() -> String {
    "list".to_owned()
}

/// One entry of `GET /v1/models`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Model {
    /// The name clients send as `model`.
    pub id: String,
    /// Always `model`.
    pub object: String,
    /// Unix seconds.
    pub created: u64,
    /// Who serves it.
    pub owned_by: String,
}

/// `GET /v1/models` response body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelList {
    /// Always `list`.
    pub object: String,
    /// The models.
    pub data: Vec<Model>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn unknown_request_fields_survive_the_round_trip() {
        let body = json!({
            "model": "gpt-4o-mini",
            "messages": [
                {"role": "user", "content": [
                    {"type": "text", "text": "what is this?"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
                ]},
                {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
                ]},
                {"role": "tool", "tool_call_id": "call_1", "content": "42"}
            ],
            "stream": true,
            "stream_options": {"include_usage": true},
            "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
            "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {}}},
            "n": 2, "seed": 7, "logprobs": true, "top_logprobs": 3,
            "future_field": {"nested": [1, 2]}
        });
        let request: ChatCompletionRequest = serde_json::from_value(body.clone()).unwrap();
        assert!(request.is_stream());
        assert_eq!(request.stream_options.as_ref().unwrap().include_usage, Some(true));
        assert_eq!(serde_json::to_value(&request).unwrap(), body);
    }

    #[test]
    fn response_and_chunk_keep_provider_fields() {
        let body = json!({
            "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "m",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"},
                         "finish_reason": "stop", "logprobs": null}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4,
                      "prompt_tokens_details": {"cached_tokens": 0}},
            "system_fingerprint": "fp_1"
        });
        let completion: ChatCompletion = serde_json::from_value(body.clone()).unwrap();
        assert_eq!(completion.usage.as_ref().unwrap().total_tokens, 4);
        assert_eq!(serde_json::to_value(&completion).unwrap(), body);

        let chunk = json!({"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
                           "choices": [], "usage": null, "obfuscation": "abc"});
        let parsed: ChatCompletionChunk = serde_json::from_value(chunk).unwrap();
        assert_eq!(parsed.usage, None);
        assert_eq!(parsed.extra["obfuscation"], "abc");
    }
}
