//! A Cohere v2 chat response → an OpenAI chat completion, a v2 embed response → an OpenAI
//! embeddings list, and the pieces both share with the stream: usage and finish reasons.
//!
//! Cohere reports two counts: `usage.tokens` (what the model read and wrote, the chat
//! template included) and `usage.billed_units` (what Cohere bills). The OpenAI usage carries
//! `tokens`, the real work; `billed_units` is used only when `tokens` is absent. Cohere's
//! `cached_tokens`, when present, are a part of the input and become
//! `prompt_tokens_details.cached_tokens`. Older answers put the counts under `meta` instead
//! of `usage`; both are read.
//!
//! Lost in translation: `citations` (OpenAI has no place for them), `tool_plan` (the model's
//! reasoning before a tool call: not an answer, so not `content`) and `logprobs`. Cohere's
//! `thinking` content (reasoning models) becomes `reasoning_content`, the field OpenAI-style
//! servers (vLLM, DeepSeek) use for it; the gateway does not count it separately, since
//! Cohere's output count already includes it.

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::{Value, value::RawValue};
use switchyard_types::{
    json::{Document, Json},
    llm::{ErrorClass, LlmError},
    openai::{ChatCompletion, EmbeddingsResponse},
};

// === Cohere's shapes ===

#[derive(Debug, Deserialize)]
struct ChatResponse<'a> {
    #[serde(default, borrow)]
    id: Option<std::borrow::Cow<'a, str>>,
    #[serde(default)]
    finish_reason: Option<String>,
    #[serde(default)]
    message: Option<AssistantMessage>,
    #[serde(default)]
    usage: Option<CohereUsage>,
    #[serde(default)]
    meta: Option<CohereUsage>,
}

#[derive(Debug, Default, Deserialize)]
struct AssistantMessage {
    #[serde(default)]
    content: Vec<ContentItem>,
    #[serde(default)]
    tool_calls: Vec<CohereToolCall>,
}

#[derive(Debug, Deserialize)]
struct ContentItem {
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    thinking: Option<String>,
}

#[derive(Debug, Deserialize)]
struct CohereToolCall {
    #[serde(default)]
    id: String,
    #[serde(default)]
    function: CohereFunction,
}

#[derive(Debug, Default, Deserialize)]
struct CohereFunction {
    #[serde(default)]
    name: String,
    #[serde(default)]
    arguments: Value,
}

/// `usage` (or `meta`) of a chat answer or of a stream's `message-end`.
#[derive(Debug, Default, Clone, Copy, Deserialize)]
pub(crate) struct CohereUsage {
    #[serde(default)]
    billed_units: Option<Units>,
    #[serde(default)]
    tokens: Option<Units>,
    #[serde(default)]
    cached_tokens: Option<f64>,
}

/// Counts; Cohere's SDKs type them as numbers that may be written `37.0`.
#[derive(Debug, Default, Clone, Copy, Deserialize)]
struct Units {
    #[serde(default)]
    input_tokens: Option<f64>,
    #[serde(default)]
    output_tokens: Option<f64>,
}

#[derive(Debug, Deserialize)]
struct EmbedResponse<'a> {
    #[serde(borrow)]
    embeddings: Embeddings<'a>,
    #[serde(default)]
    meta: Option<EmbedMeta>,
}

#[derive(Debug, Deserialize)]
struct Embeddings<'a> {
    /// Each vector as sent: forwarded byte for byte unless base64 was asked for.
    #[serde(borrow, default)]
    float: Vec<&'a RawValue>,
}

#[derive(Debug, Deserialize)]
struct EmbedMeta {
    #[serde(default)]
    billed_units: Option<Units>,
}

// === OpenAI's shapes ===

#[derive(Serialize)]
struct Completion<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: [Choice<'a>; 1],
    usage: OpenAiUsage,
}

#[derive(Serialize)]
struct Choice<'a> {
    index: u32,
    message: OutMessage<'a>,
    logprobs: (),
    finish_reason: &'static str,
}

#[derive(Serialize)]
struct OutMessage<'a> {
    role: &'static str,
    content: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reasoning_content: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tool_calls: Vec<OutToolCall<'a>>,
    refusal: (),
}

#[derive(Serialize)]
struct OutToolCall<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    function: OutFunction<'a>,
}

#[derive(Serialize)]
struct OutFunction<'a> {
    name: &'a str,
    arguments: std::borrow::Cow<'a, str>,
}

/// Usage in OpenAI's fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub(crate) struct OpenAiUsage {
    prompt_tokens: u64,
    completion_tokens: u64,
    total_tokens: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    prompt_tokens_details: Option<PromptTokensDetails>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
struct PromptTokensDetails {
    cached_tokens: u64,
}

#[derive(Serialize)]
struct EmbeddingList<'a> {
    object: &'static str,
    data: Vec<EmbeddingItem<'a>>,
    model: &'a str,
    usage: EmbeddingUsage,
}

#[derive(Serialize)]
struct EmbeddingItem<'a> {
    object: &'static str,
    index: usize,
    embedding: EmbeddingValue<'a>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum EmbeddingValue<'a> {
    Floats(&'a RawValue),
    Base64(String),
}

#[derive(Serialize)]
struct EmbeddingUsage {
    prompt_tokens: u64,
    total_tokens: u64,
}

// === impl CohereUsage ===

impl CohereUsage {
    /// The usage in OpenAI's fields: `tokens`, else `billed_units`.
    pub(crate) fn to_openai(self) -> OpenAiUsage {
        let counts = self.tokens.or(self.billed_units).unwrap_or_default();
        let prompt_tokens = count(counts.input_tokens);
        let completion_tokens = count(counts.output_tokens);
        OpenAiUsage {
            prompt_tokens,
            completion_tokens,
            total_tokens: prompt_tokens + completion_tokens,
            prompt_tokens_details: self
                .cached_tokens
                .map(|cached| PromptTokensDetails { cached_tokens: count(Some(cached)) }),
        }
    }
}

fn count(value: Option<f64>) -> u64 {
    // Counts are whole numbers; a negative or absent one is none.
    value.filter(|v| v.is_finite() && *v > 0.0).map_or(0, |v| v.round() as u64)
}

/// What a Cohere `finish_reason` means for an OpenAI client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Finish {
    /// An OpenAI `finish_reason`.
    Reason(&'static str),
    /// `ERROR` or `TIMEOUT`: the generation failed, and the answer is an error.
    Failed(ErrorClass, &'static str),
}

/// Maps Cohere's finish reasons onto OpenAI's. An unknown reason is a normal stop: the answer
/// arrived, and a new reason Cohere adds is more likely a variant of completion than a failure.
pub(crate) fn finish(reason: Option<&str>) -> Finish {
    match reason {
        Some("MAX_TOKENS") => Finish::Reason("length"),
        Some("TOOL_CALL") => Finish::Reason("tool_calls"),
        Some("ERROR") => Finish::Failed(ErrorClass::UpstreamServer, "failed while generating"),
        Some("TIMEOUT") => Finish::Failed(ErrorClass::Timeout, "timed out while generating"),
        _ => Finish::Reason("stop"),
    }
}

/// Unix seconds now, for `created`.
pub(crate) fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Translates a Cohere chat answer into an OpenAI completion naming `model`.
pub(crate) fn chat_completion(
    body: &[u8],
    model: &str,
    label: &str,
) -> Result<Json<ChatCompletion>, LlmError> {
    let response: ChatResponse<'_> = serde_json::from_slice(body).map_err(|e| unreadable(label, &e))?;
    let finish_reason = match finish(response.finish_reason.as_deref()) {
        Finish::Reason(reason) => reason,
        Finish::Failed(class, what) => {
            return Err(LlmError::new(class, format!("{label} {what}; the answer is incomplete")));
        }
    };
    let message = response.message.unwrap_or_default();
    let text = |kind: &str, pick: fn(&ContentItem) -> Option<&String>| {
        let mut parts = message.content.iter().filter(|c| c.kind == kind).filter_map(pick).peekable();
        parts.peek().is_some().then(|| parts.map(String::as_str).collect::<String>())
    };
    let content = text("text", |c| c.text.as_ref());
    let reasoning_content = text("thinking", |c| c.thinking.as_ref());
    let tool_calls = message
        .tool_calls
        .iter()
        .map(|call| OutToolCall {
            id: &call.id,
            kind: "function",
            function: OutFunction {
                name: &call.function.name,
                arguments: arguments(&call.function.arguments),
            },
        })
        .collect();
    let completion = Completion {
        id: response.id.as_deref().unwrap_or_default(),
        object: "chat.completion",
        created: unix_now(),
        model,
        choices: [Choice {
            index: 0,
            message: OutMessage { role: "assistant", content, reasoning_content, tool_calls, refusal: () },
            logprobs: (),
            finish_reason,
        }],
        usage: response.usage.or(response.meta).unwrap_or_default().to_openai(),
    };
    to_json(&completion, label)
}

/// A tool call's arguments as OpenAI's JSON text: Cohere sends a string; an object is written out.
pub(crate) fn arguments(arguments: &Value) -> std::borrow::Cow<'_, str> {
    match arguments {
        Value::String(text) => std::borrow::Cow::Borrowed(text),
        Value::Null => std::borrow::Cow::Borrowed("{}"),
        other => std::borrow::Cow::Owned(other.to_string()),
    }
}

/// Translates a Cohere embed answer into an OpenAI embeddings list naming `model`.
pub(crate) fn embeddings(
    body: &[u8],
    model: &str,
    base64: bool,
    label: &str,
) -> Result<Json<EmbeddingsResponse>, LlmError> {
    let response: EmbedResponse<'_> = serde_json::from_slice(body).map_err(|e| unreadable(label, &e))?;
    let data = response
        .embeddings
        .float
        .iter()
        .enumerate()
        .map(|(index, vector)| {
            let embedding = if base64 {
                let floats: Vec<f32> =
                    serde_json::from_str(vector.get()).map_err(|e| unreadable(label, &e))?;
                EmbeddingValue::Base64(base64_f32_le(&floats))
            } else {
                EmbeddingValue::Floats(vector)
            };
            Ok(EmbeddingItem { object: "embedding", index, embedding })
        })
        .collect::<Result<_, LlmError>>()?;
    let prompt_tokens = count(response.meta.and_then(|m| m.billed_units).and_then(|b| b.input_tokens));
    let list = EmbeddingList {
        object: "list",
        data,
        model,
        usage: EmbeddingUsage { prompt_tokens, total_tokens: prompt_tokens },
    };
    to_json(&list, label)
}

/// Serialises an OpenAI document.
pub(crate) fn to_json<T: Document, U: Serialize>(value: &U, label: &str) -> Result<Json<T>, LlmError> {
    let bytes = serde_json::to_vec(value).map_err(|e| {
        LlmError::new(ErrorClass::Internal, format!("could not write the answer of {label}: {e}"))
    })?;
    Json::from_bytes(Bytes::from(bytes)).map_err(|e| {
        LlmError::new(ErrorClass::Internal, format!("could not read back the answer of {label}: {e}"))
    })
}

fn unreadable(label: &str, err: &serde_json::Error) -> LlmError {
    LlmError::new(
        ErrorClass::UpstreamServer,
        format!("{label} answered with a body that is not a valid Cohere v2 response: {err}"),
    )
}

/// The base64 (standard alphabet, padded) of the little-endian bytes of `values`: what OpenAI
/// sends for `encoding_format: "base64"`. Fifteen lines do not justify a dependency.
fn base64_f32_le(values: &[f32]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for group in bytes.chunks(3) {
        let b = [group[0], group.get(1).copied().unwrap_or(0), group.get(2).copied().unwrap_or(0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (k, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            if k <= group.len() {
                out.push(char::from(ALPHABET[((n >> shift) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_rfc_4648_vectors() {
        assert_eq!(base64_f32_le(&[1.0]), "AACAPw==");
        assert_eq!(base64_f32_le(&[1.0, 1.0]), "AACAPwAAgD8=");
        assert_eq!(base64_f32_le(&[1.0, 1.0, 1.0]), "AACAPwAAgD8AAIA/");
        assert_eq!(base64_f32_le(&[]), "");
    }

    #[test]
    fn usage_prefers_tokens_over_billed_units() {
        let usage: CohereUsage = serde_json::from_str(
            r#"{"billed_units":{"input_tokens":37.0,"output_tokens":28.0},"tokens":{"input_tokens":913.0,"output_tokens":83.0}}"#,
        )
        .unwrap_or_default();
        let openai = usage.to_openai();
        assert_eq!((openai.prompt_tokens, openai.completion_tokens, openai.total_tokens), (913, 83, 996));
        let billed: CohereUsage =
            serde_json::from_str(r#"{"billed_units":{"input_tokens":5,"output_tokens":2}}"#)
                .unwrap_or_default();
        assert_eq!(billed.to_openai().total_tokens, 7);
    }

    #[test]
    fn finish_reasons_map_onto_openais() {
        assert_eq!(finish(Some("COMPLETE")), Finish::Reason("stop"));
        assert_eq!(finish(Some("STOP_SEQUENCE")), Finish::Reason("stop"));
        assert_eq!(finish(Some("MAX_TOKENS")), Finish::Reason("length"));
        assert_eq!(finish(Some("TOOL_CALL")), Finish::Reason("tool_calls"));
        assert!(matches!(finish(Some("ERROR")), Finish::Failed(ErrorClass::UpstreamServer, _)));
        assert!(matches!(finish(Some("TIMEOUT")), Finish::Failed(ErrorClass::Timeout, _)));
        assert_eq!(finish(None), Finish::Reason("stop"));
    }
}
