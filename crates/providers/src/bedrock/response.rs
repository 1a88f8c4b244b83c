//! A Bedrock Converse answer as an OpenAI chat completion, and what both paths share: stop
//! reasons and usage.
//!
//! `output.message.content` becomes the one choice: its text blocks joined as `content`, its
//! `toolUse` blocks as `tool_calls` (the input object serialised as the `arguments` string),
//! its `reasoningContent` as `reasoning_content` (the field DeepSeek and LiteLLM use), never
//! mixed into `content`.
//!
//! Usage: Bedrock's `inputTokens` counts only the prompt tokens that were neither read from
//! nor written to the prompt cache (its prompt-caching guide: total input = `inputTokens` +
//! `cacheReadInputTokens` + `cacheWriteInputTokens`), so `prompt_tokens` is that sum,
//! `prompt_tokens_details.cached_tokens` the cache reads and `cache_creation_input_tokens`
//! the cache writes. Bedrock does not report reasoning tokens apart: they are in
//! `outputTokens`, and `completion_tokens_details` is not sent.

use serde::Deserialize;
use serde_json::{Map, Value, json};
use switchyard_types::openai::{ChatCompletion, Usage};

/// Converse's `usage` (`TokenUsage`), as the answer and the stream's `metadata` event carry it.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenUsage {
    #[serde(default)]
    input_tokens: u64,
    #[serde(default)]
    output_tokens: u64,
    #[serde(default)]
    cache_read_input_tokens: Option<u64>,
    #[serde(default)]
    cache_write_input_tokens: Option<u64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ConverseResponse {
    #[serde(default)]
    output: Option<Output>,
    #[serde(default)]
    stop_reason: Option<String>,
    #[serde(default)]
    usage: Option<TokenUsage>,
}

#[derive(Deserialize)]
struct Output {
    #[serde(default)]
    message: Option<OutputMessage>,
}

#[derive(Deserialize)]
struct OutputMessage {
    #[serde(default)]
    content: Vec<OutputBlock>,
}

/// A content block of the answer; a block of another kind (an image, a citation...) has
/// none of these members and is skipped.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct OutputBlock {
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    tool_use: Option<OutputToolUse>,
    #[serde(default)]
    reasoning_content: Option<Reasoning>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct OutputToolUse {
    tool_use_id: String,
    name: String,
    #[serde(default)]
    input: Option<Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Reasoning {
    #[serde(default)]
    reasoning_text: Option<ReasoningText>,
}

#[derive(Deserialize)]
struct ReasoningText {
    #[serde(default)]
    text: String,
}

/// The OpenAI completion for a Converse answer body, named `id` and `model`.
pub fn completion(
    body: &[u8],
    id: String,
    model: &str,
    created: u64,
) -> Result<ChatCompletion, serde_json::Error> {
    let response: ConverseResponse = serde_json::from_slice(body)?;
    let blocks = response.output.and_then(|o| o.message).map(|m| m.content).unwrap_or_default();
    let mut text: Option<String> = None;
    let mut reasoning: Option<String> = None;
    let mut tool_calls = Vec::new();
    for block in blocks {
        if let Some(part) = block.text {
            text.get_or_insert_with(String::new).push_str(&part);
        }
        if let Some(call) = block.tool_use {
            // Compact, as OpenAI writes arguments, whatever spacing the answer had.
            let arguments = call.input.map_or_else(|| "{}".to_owned(), |input| input.to_string());
            tool_calls.push(json!({"id": call.tool_use_id, "type": "function",
                                   "function": {"name": call.name, "arguments": arguments}}));
        }
        if let Some(thought) = block.reasoning_content.and_then(|r| r.reasoning_text) {
            reasoning.get_or_insert_with(String::new).push_str(&thought.text);
        }
    }
    let mut message = json!({"role": "assistant", "content": text, "refusal": null});
    if !tool_calls.is_empty() {
        message["tool_calls"] = Value::Array(tool_calls);
    }
    if let Some(reasoning) = reasoning {
        message["reasoning_content"] = Value::String(reasoning);
    }
    let finish_reason = finish_reason(response.stop_reason.as_deref().unwrap_or("end_turn"));
    Ok(ChatCompletion {
        id,
        object: "chat.completion".into(),
        created,
        model: model.to_owned(),
        choices: vec![
            json!({"index": 0, "message": message, "logprobs": null, "finish_reason": finish_reason}),
        ],
        usage: Some(usage(&response.usage.unwrap_or_default())),
        extra: Map::new(),
    })
}

/// OpenAI's `finish_reason` for a Converse `stopReason`.
pub fn finish_reason(stop_reason: &str) -> &'static str {
    match stop_reason {
        "max_tokens" | "model_context_window_exceeded" => "length",
        "tool_use" => "tool_calls",
        "guardrail_intervened" | "content_filtered" => "content_filter",
        // end_turn, stop_sequence, and whatever Bedrock adds that ends a turn normally.
        _ => "stop",
    }
}

/// Converse's usage in OpenAI's fields (see the module documentation).
pub fn usage(usage: &TokenUsage) -> Usage {
    let cached = usage.cache_read_input_tokens.unwrap_or(0);
    let written = usage.cache_write_input_tokens.unwrap_or(0);
    let prompt_tokens = usage.input_tokens + cached + written;
    let mut extra = Map::new();
    extra.insert("prompt_tokens_details".into(), json!({"cached_tokens": cached}));
    if usage.cache_write_input_tokens.is_some() {
        extra.insert("cache_creation_input_tokens".into(), json!(written));
    }
    Usage {
        prompt_tokens,
        completion_tokens: usage.output_tokens,
        total_tokens: prompt_tokens + usage.output_tokens,
        extra,
    }
}
