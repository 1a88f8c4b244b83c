//! Token counts the gateway makes itself: when a provider reports no usage, and before a
//! request runs (rate limits and budget reservations).
//!
//! Counting uses OpenAI's `o200k_base` encoding (GPT-4o, GPT-4.1, GPT-5, o-series) through
//! tiktoken-rs, which bundles the encoding's ranks: nothing is downloaded at run time. For
//! other models' tokenizers (Claude, Gemini, Llama, ...) the count is an estimate, usually
//! within ten or twenty percent for prose.
//!
//! Two costs to know. Building the encoder parses 200,000 ranks and takes tens of
//! milliseconds, so it is built once, on first use, and shared (about 60 MiB); [`warm_up`] builds it
//! ahead of time, to keep that off the first request that needs it. Encoding costs time in proportion to the text, so the
//! admission path, which runs before every request, uses [`estimate_prompt_tokens`] (a
//! division of the body's length) instead.
//!
//! ```
//! use switchyard_accounting::tokens;
//!
//! assert_eq!(tokens::count_text("hello world"), 2);
//! assert_eq!(tokens::estimate_prompt_tokens(4_001), 1_001);
//! ```

use std::sync::OnceLock;

use serde_json::Value;
use switchyard_types::{
    anthropic::MessagesRequest,
    openai::{ChatCompletionRequest, ChatMessage},
};
use tiktoken_rs::CoreBPE;

/// Tokens OpenAI's chat format adds around every message.
const PER_MESSAGE: u64 = 3;
/// Tokens a `name` adds besides its own.
const PER_NAME: u64 = 1;
/// Tokens that prime the reply (`<|start|>assistant<|message|>`).
const REPLY_PRIMING: u64 = 3;

/// The `o200k_base` encoder, built on first use. `None` only if the bundled ranks fail to
/// parse (a broken build); counting then falls back to [`estimate_prompt_tokens`]'s rule.
fn encoder() -> Option<&'static CoreBPE> {
    static ENCODER: OnceLock<Option<CoreBPE>> = OnceLock::new();
    ENCODER
        .get_or_init(|| {
            tiktoken_rs::o200k_base()
                .map_err(|err| tracing::error!(error = %err, "the o200k_base encoder could not be built; token counts are estimated from lengths"))
                .ok()
        })
        .as_ref()
}

/// Builds the encoder now, so that the first count does not pay for it.
pub fn warm_up() {
    let _ = encoder();
}

/// Tokens in `text`. Special-token spellings (`<|endoftext|>`) count as ordinary text, as
/// they do when a client sends them.
pub fn count_text(text: &str) -> u64 {
    match encoder() {
        Some(encoder) => encoder.encode_ordinary(text).len() as u64,
        None => estimate_prompt_tokens(text.len()),
    }
}

/// Tokens in a completion's text (the content and tool-call arguments the provider sent).
pub fn count_completion_text(text: &str) -> u64 {
    count_text(text)
}

/// Prompt tokens of a chat request, by OpenAI's counting recipe for its chat models: per
/// message 3 tokens, plus its role, its text, and its `name` plus 1; then 3 for priming the
/// reply.
///
/// A message's text is its string `content`, or the `text` of each part of an array
/// `content`; an assistant's `tool_calls` count as their JSON text. Tool definitions count as
/// their JSON text, which is close to but not exactly how OpenAI renders them. Images, audio
/// and files are not counted. Exact for plain chat on `o200k_base` models, an estimate
/// otherwise.
pub fn count_chat_prompt(request: &ChatCompletionRequest) -> u64 {
    let messages: u64 = request.messages.iter().map(count_message).sum();
    let tools = request.extra.get("tools").map_or(0, count_json);
    messages + tools + REPLY_PRIMING
}

/// Prompt tokens of an Anthropic Messages request, counted with the same recipe as
/// [`count_chat_prompt`]: the system prompt and each message's text blocks (and tool use and
/// tool result blocks as their JSON), plus the tool definitions. Anthropic's tokenizer is not
/// public, so for Claude models this is an estimate; images and documents are not counted.
pub fn count_messages_prompt(request: &MessagesRequest) -> u64 {
    let system = request.system.as_ref().map_or(0, |system| PER_MESSAGE + count_blocks(system));
    let messages: u64 =
        request.messages.iter().map(|m| PER_MESSAGE + count_text(&m.role) + count_blocks(&m.content)).sum();
    let tools = request.extra.get("tools").map_or(0, count_json);
    system + messages + tools + REPLY_PRIMING
}

/// A string, or the text of each text block and the JSON of each tool block of an array.
fn count_blocks(content: &Value) -> u64 {
    match content {
        Value::String(text) => count_text(text),
        Value::Array(blocks) => blocks
            .iter()
            .map(|block| match block.get("type").and_then(Value::as_str) {
                Some("text") => block.get("text").and_then(Value::as_str).map_or(0, count_text),
                Some("thinking") => block.get("thinking").and_then(Value::as_str).map_or(0, count_text),
                Some("tool_use") => block.get("input").map_or(0, count_json),
                Some("tool_result") => block.get("content").map_or(0, count_blocks),
                _ => 0,
            })
            .sum(),
        _ => 0,
    }
}

fn count_message(message: &ChatMessage) -> u64 {
    let mut tokens = PER_MESSAGE + count_text(&message.role);
    match message.content() {
        Some(Value::String(text)) => tokens += count_text(text),
        Some(Value::Array(parts)) => {
            tokens += parts
                .iter()
                .filter_map(|part| part.get("text").and_then(Value::as_str))
                .map(count_text)
                .sum::<u64>();
        }
        _ => {}
    }
    if let Some(name) = message.extra.get("name").and_then(Value::as_str) {
        tokens += count_text(name) + PER_NAME;
    }
    if let Some(calls) = message.extra.get("tool_calls").filter(|c| !c.is_null()) {
        tokens += count_json(calls);
    }
    tokens
}

fn count_json(value: &Value) -> u64 {
    // Serialising a `Value` cannot fail (its keys are strings).
    serde_json::to_string(value).map_or(0, |text| count_text(&text))
}

/// A cheap upper-leaning guess of a prompt's tokens from the request body's length: one token
/// per four bytes, rounded up. For admission, where tokenising every prompt would cost more
/// than the rest of the hot path; JSON punctuation makes it overestimate a little, which a
/// limit can afford.
pub fn estimate_prompt_tokens(body_len_bytes: usize) -> u64 {
    (body_len_bytes as u64).div_ceil(4)
}

/// The most output tokens the client allows: `max_completion_tokens`, else the older
/// `max_tokens`; `None` when it sets neither (the model's own limit applies).
pub fn max_output_tokens(request: &ChatCompletionRequest) -> Option<u64> {
    let field = |name: &str| request.extra.get(name).and_then(Value::as_u64);
    field("max_completion_tokens").or_else(|| field("max_tokens"))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn request(body: Value) -> ChatCompletionRequest {
        serde_json::from_value(body).expect("a valid request")
    }

    #[test]
    fn counts_text_with_o200k_base() {
        warm_up();
        assert_eq!(count_text(""), 0);
        assert_eq!(count_text("hello world"), 2);
        assert_eq!(count_text("tiktoken is great!"), 6);
        assert_eq!(count_text("<|endoftext|>"), 7, "special tokens count as text");
        assert_eq!(count_completion_text("Hello! How can I help you today?"), 9);
    }

    /// OpenAI's cookbook example ("How to count tokens with tiktoken"): 124 prompt tokens
    /// for gpt-4o and gpt-4o-mini, as the API reports them (129 for cl100k_base's gpt-4).
    #[test]
    fn counts_a_chat_prompt_as_openai_does() {
        let body = json!({"model": "gpt-4o", "messages": [
            {"role": "system", "content": "You are a helpful, pattern-following assistant that translates corporate jargon into plain English."},
            {"role": "system", "name": "example_user", "content": "New synergies will help drive top-line growth."},
            {"role": "system", "name": "example_assistant", "content": "Things working well together will increase revenue."},
            {"role": "system", "name": "example_user", "content": "Let's circle back when we have more bandwidth to touch base on opportunities for increased leverage."},
            {"role": "system", "name": "example_assistant", "content": "Let's talk later when we're less busy about how to do better."},
            {"role": "user", "content": "This late pivot means we don't have time to boil the ocean for the client deliverable."}
        ]});
        assert_eq!(count_chat_prompt(&request(body)), 124);
    }

    #[test]
    fn counts_text_parts_tool_calls_and_tools() {
        let plain = request(json!({"model": "m", "messages": [{"role": "user", "content": "hello world"}]}));
        // 3 + "user" (1) + "hello world" (2), then 3 for the reply.
        assert_eq!(count_chat_prompt(&plain), 9);

        let parts = request(json!({"model": "m", "messages": [{"role": "user", "content": [
            {"type": "text", "text": "hello world"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
            {"type": "text", "text": "hello world"}
        ]}]}));
        assert_eq!(count_chat_prompt(&parts), 11, "text parts count, the image does not");

        let call =
            json!([{"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]);
        let with_call = request(json!({"model": "m", "messages": [
            {"role": "assistant", "content": null, "tool_calls": call}
        ]}));
        let call_tokens = count_text(&call.to_string());
        assert!(call_tokens > 10);
        assert_eq!(count_chat_prompt(&with_call), 3 + count_text("assistant") + call_tokens + 3);

        let tools = json!([{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]);
        let with_tools = request(
            json!({"model": "m", "messages": [{"role": "user", "content": "hello world"}], "tools": tools}),
        );
        assert_eq!(count_chat_prompt(&with_tools), 9 + count_text(&tools.to_string()));
    }

    #[test]
    fn estimates_from_the_body_length() {
        assert_eq!(estimate_prompt_tokens(0), 0);
        assert_eq!(estimate_prompt_tokens(1), 1);
        assert_eq!(estimate_prompt_tokens(4), 1);
        assert_eq!(estimate_prompt_tokens(5), 2);
        assert_eq!(estimate_prompt_tokens(4_000_000), 1_000_000);
    }

    #[test]
    fn reads_the_output_limit_the_client_set() {
        let limit = |body: Value| max_output_tokens(&request(body));
        assert_eq!(limit(json!({"model": "m", "messages": []})), None);
        assert_eq!(limit(json!({"model": "m", "messages": [], "max_tokens": 256})), Some(256));
        assert_eq!(
            limit(json!({"model": "m", "messages": [], "max_tokens": 256, "max_completion_tokens": 1024})),
            Some(1024),
            "max_completion_tokens replaces the deprecated max_tokens"
        );
        assert_eq!(limit(json!({"model": "m", "messages": [], "max_tokens": -1})), None);
        assert_eq!(limit(json!({"model": "m", "messages": [], "max_tokens": "many"})), None);
    }
}
