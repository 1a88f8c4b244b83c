//! Gemini `GenerateContentResponse` → OpenAI chat completion: candidates, parts, finish
//! reasons, usage and safety blocks. The stream decoder ([`super::stream`]) reads the same
//! shapes, one event at a time.

use serde::Deserialize;
use serde_json::{Map, Value, json};
use switchyard_types::llm::{ErrorClass, LlmError};

/// One `generateContent` answer, or one event of `streamGenerateContent`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct GenerateContentResponse {
    #[serde(default)]
    pub(super) candidates: Vec<Candidate>,
    #[serde(default)]
    pub(super) prompt_feedback: Option<PromptFeedback>,
    #[serde(default)]
    pub(super) usage_metadata: Option<UsageMetadata>,
    #[serde(default)]
    pub(super) model_version: Option<String>,
    #[serde(default)]
    pub(super) response_id: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Candidate {
    #[serde(default)]
    pub(super) content: Option<Content>,
    #[serde(default)]
    pub(super) finish_reason: Option<String>,
    #[serde(default)]
    pub(super) finish_message: Option<String>,
    #[serde(default)]
    pub(super) index: Option<u32>,
    #[serde(default)]
    pub(super) safety_ratings: Vec<SafetyRating>,
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct Content {
    #[serde(default)]
    pub(super) parts: Vec<Part>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Part {
    #[serde(default)]
    pub(super) text: Option<String>,
    #[serde(default)]
    pub(super) thought: bool,
    #[serde(default)]
    pub(super) thought_signature: Option<String>,
    #[serde(default)]
    pub(super) function_call: Option<FunctionCall>,
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct FunctionCall {
    pub(super) name: String,
    #[serde(default)]
    pub(super) args: Option<Value>,
    #[serde(default)]
    pub(super) id: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct PromptFeedback {
    #[serde(default)]
    pub(super) block_reason: Option<String>,
    #[serde(default)]
    pub(super) block_reason_message: Option<String>,
    #[serde(default)]
    pub(super) safety_ratings: Vec<SafetyRating>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct SafetyRating {
    #[serde(default)]
    pub(super) category: String,
    #[serde(default)]
    pub(super) probability: Option<String>,
    #[serde(default)]
    pub(super) blocked: bool,
}

/// `usageMetadata`. In a stream every event carries the running totals; the last is final.
#[derive(Debug, Default, Clone, Copy, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct UsageMetadata {
    #[serde(default)]
    prompt_token_count: u64,
    #[serde(default)]
    cached_content_token_count: u64,
    #[serde(default)]
    candidates_token_count: u64,
    #[serde(default)]
    tool_use_prompt_token_count: u64,
    #[serde(default)]
    thoughts_token_count: u64,
}

// === impl UsageMetadata ===

impl UsageMetadata {
    /// OpenAI's usage object. Gemini's prompt count already includes cached content; tool-use
    /// prompt tokens (search results a built-in tool read) are input too, and thoughts are
    /// output, as they are billed.
    pub(super) fn to_openai(self) -> Value {
        let prompt = self.prompt_token_count + self.tool_use_prompt_token_count;
        let completion = self.candidates_token_count + self.thoughts_token_count;
        json!({
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": self.cached_content_token_count},
            "completion_tokens_details": {"reasoning_tokens": self.thoughts_token_count},
        })
    }
}

// === impl Candidate ===

impl Candidate {
    /// Whether Gemini stopped this candidate for its content and gave none of it.
    pub(super) fn blocked_without_content(&self) -> bool {
        self.finish_reason.as_deref().is_some_and(is_filter_reason)
            && self.content.as_ref().is_none_or(|c| {
                c.parts
                    .iter()
                    .all(|p| p.function_call.is_none() && p.text.as_deref().is_none_or(str::is_empty))
            })
    }
}

/// Gemini's finish reasons that mean its filters stopped the answer.
fn is_filter_reason(reason: &str) -> bool {
    matches!(
        reason,
        "SAFETY"
            | "RECITATION"
            | "BLOCKLIST"
            | "PROHIBITED_CONTENT"
            | "SPII"
            | "IMAGE_SAFETY"
            | "IMAGE_PROHIBITED_CONTENT"
            | "IMAGE_RECITATION"
    )
}

/// OpenAI's finish reason for Gemini's. Gemini says `STOP` after a function call; a candidate
/// that called a function finished with `tool_calls`.
pub(super) fn finish_reason(reason: &str, called_a_function: bool) -> &'static str {
    match reason {
        "MAX_TOKENS" => "length",
        reason if is_filter_reason(reason) => "content_filter",
        _ if called_a_function => "tool_calls",
        _ => "stop",
    }
}

/// The [`ErrorClass::ContentPolicy`] error for an answer Gemini's filters withheld: a prompt it
/// blocked, or candidates it stopped before any content.
pub(super) fn content_policy_error(label: &str, response: &GenerateContentResponse) -> Option<LlmError> {
    if let Some(feedback) = &response.prompt_feedback
        && let Some(reason) = &feedback.block_reason
        && response.candidates.is_empty()
    {
        let mut message = format!("{label} blocked the prompt ({reason})");
        append_ratings(&mut message, &feedback.safety_ratings);
        if let Some(detail) = &feedback.block_reason_message {
            message.push_str(": ");
            message.push_str(detail);
        }
        message
            .push_str("; rephrase the request, or route it to another model with content_policy_fallbacks");
        return Some(LlmError::new(ErrorClass::ContentPolicy, message));
    }
    let blocked =
        !response.candidates.is_empty() && response.candidates.iter().all(Candidate::blocked_without_content);
    blocked.then(|| {
        let candidate = &response.candidates[0];
        let reason = candidate.finish_reason.as_deref().unwrap_or("SAFETY");
        let mut message = format!("{label} withheld the answer ({reason})");
        append_ratings(&mut message, &candidate.safety_ratings);
        if let Some(detail) = &candidate.finish_message {
            message.push_str(": ");
            message.push_str(detail);
        }
        message
            .push_str("; rephrase the request, or route it to another model with content_policy_fallbacks");
        LlmError::new(ErrorClass::ContentPolicy, message)
    })
}

/// ` for HARM_CATEGORY_X (HIGH), ...`: the categories that were blocked, else the rated ones
/// above NEGLIGIBLE.
fn append_ratings(message: &mut String, ratings: &[SafetyRating]) {
    let blocked: Vec<&SafetyRating> = ratings.iter().filter(|r| r.blocked).collect();
    let shown: Vec<&SafetyRating> = if blocked.is_empty() {
        ratings.iter().filter(|r| r.probability.as_deref().is_some_and(|p| p != "NEGLIGIBLE")).collect()
    } else {
        blocked
    };
    for (at, rating) in shown.iter().enumerate() {
        message.push_str(if at == 0 { " for " } else { ", " });
        message.push_str(&rating.category);
        if let Some(probability) = &rating.probability {
            message.push_str(" (");
            message.push_str(probability);
            message.push(')');
        }
    }
}

/// A tool call id: Gemini's own when it gave one, else a fresh one in OpenAI's style.
pub(super) fn call_id(call: &FunctionCall) -> String {
    match &call.id {
        Some(id) if !id.is_empty() => id.clone(),
        _ => random_id("call_"),
    }
}

/// `prefix` followed by 24 random letters and digits.
pub(super) fn random_id(prefix: &str) -> String {
    let mut id = String::with_capacity(prefix.len() + 24);
    id.push_str(prefix);
    id.extend(std::iter::repeat_with(fastrand::alphanumeric).take(24));
    id
}

/// An OpenAI tool call for a Gemini function call. The thought signature Gemini attached rides
/// along as `extra_content.google.thought_signature` (the field Google's own OpenAI
/// compatibility layer uses), so that a client sending the call back returns it to Gemini.
pub(super) fn tool_call(call: &FunctionCall, signature: Option<&str>, index: Option<usize>) -> Value {
    let arguments = match &call.args {
        Some(args) => args.to_string(),
        None => "{}".to_owned(),
    };
    let mut object = Map::new();
    if let Some(index) = index {
        object.insert("index".to_owned(), index.into());
    }
    object.insert("id".to_owned(), call_id(call).into());
    object.insert("type".to_owned(), "function".into());
    object.insert("function".to_owned(), json!({"name": call.name, "arguments": arguments}));
    if let Some(signature) = signature {
        object.insert("extra_content".to_owned(), json!({"google": {"thought_signature": signature}}));
    }
    Value::Object(object)
}

/// The OpenAI completion for a complete answer, or the error it amounts to.
pub(super) fn completion(
    response: &GenerateContentResponse,
    label: &str,
    model: &str,
    created: u64,
) -> Result<Value, LlmError> {
    if let Some(error) = content_policy_error(label, response) {
        return Err(error);
    }
    let choices: Vec<Value> = response
        .candidates
        .iter()
        .enumerate()
        .map(|(position, candidate)| {
            let parts = candidate.content.as_ref().map_or(&[][..], |c| &c.parts[..]);
            let mut text = String::new();
            let mut reasoning = String::new();
            let mut calls = Vec::new();
            for part in parts {
                if let Some(call) = &part.function_call {
                    calls.push(tool_call(call, part.thought_signature.as_deref(), None));
                } else if let Some(piece) = &part.text {
                    if part.thought { reasoning.push_str(piece) } else { text.push_str(piece) }
                }
            }
            let mut message = Map::new();
            message.insert("role".to_owned(), "assistant".into());
            let content =
                if text.is_empty() && !calls.is_empty() { Value::Null } else { Value::String(text) };
            message.insert("content".to_owned(), content);
            if !reasoning.is_empty() {
                message.insert("reasoning_content".to_owned(), reasoning.into());
            }
            let called = !calls.is_empty();
            if called {
                message.insert("tool_calls".to_owned(), Value::Array(calls));
            }
            let finish = finish_reason(candidate.finish_reason.as_deref().unwrap_or("STOP"), called);
            json!({
                "index": candidate.index.unwrap_or(position as u32),
                "message": message,
                "logprobs": null,
                "finish_reason": finish,
            })
        })
        .collect();
    if choices.is_empty() {
        return Err(LlmError::new(
            ErrorClass::UpstreamServer,
            format!("{label} answered with no candidates and no reason"),
        ));
    }
    let mut completion = Map::new();
    completion.insert("id".to_owned(), completion_id(response.response_id.as_deref()).into());
    completion.insert("object".to_owned(), "chat.completion".into());
    completion.insert("created".to_owned(), created.into());
    completion.insert("model".to_owned(), response.model_version.as_deref().unwrap_or(model).into());
    completion.insert("choices".to_owned(), Value::Array(choices));
    if let Some(usage) = response.usage_metadata {
        completion.insert("usage".to_owned(), usage.to_openai());
    }
    Ok(Value::Object(completion))
}

/// `chatcmpl-<Gemini's responseId>`, or a fresh id.
pub(super) fn completion_id(response_id: Option<&str>) -> String {
    match response_id {
        Some(id) if !id.is_empty() => format!("chatcmpl-{id}"),
        _ => random_id("chatcmpl-"),
    }
}
