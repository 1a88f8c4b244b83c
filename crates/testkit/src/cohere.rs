//! The Cohere v2 dialect: `POST /v2/chat` (whole, and streamed as Cohere's typed server-sent
//! events), `POST /v2/embed`, and Cohere's error shape (`{"id", "message"}`), shaped as Cohere's
//! v2 API reference shows them.
//!
//! The answers are synthetic and deterministic, like the OpenAI mock's:
//! - text: `tok0 tok1 ...`, [`MockConfig::chunks`](crate::MockConfig::chunks) tokens, fewer when
//!   `max_tokens` is lower (then `finish_reason` is `MAX_TOKENS`), else `COMPLETE`;
//! - with `tools`, unless the last message is a tool result or `tool_choice` is `NONE`: a
//!   `tool_plan` and a call of the first tool, id `{name}_mock1`, arguments
//!   `{"location":"Paris"}`, `finish_reason` `TOOL_CALL`;
//! - usage: `tokens.input_tokens` is the prompt estimate (characters / 4 + 1) plus
//!   [`TEMPLATE_TOKENS`] for the chat template, `billed_units.input_tokens` the estimate alone
//!   (Cohere does not bill its template); output counts agree. [`Stats`](crate::Stats) counts
//!   the `tokens` figures;
//! - a stream is `message-start`, then `content-start`, one `content-delta` a token and
//!   `content-end` (or `tool-plan-delta`s, `tool-call-start`, one `tool-call-delta` an
//!   argument fragment and `tool-call-end`), then `message-end` with the finish reason and the
//!   usage. Each event is `event: <type>` and `data: <json with the same type>`;
//! - embeddings: unit vectors derived from a hash of each text, `output_dimension` long (8 by
//!   default), as `embeddings.float`.
//!
//! The mock is as strict as Cohere where a translation could go wrong: a body field Cohere's
//! v2 reference does not list is a 400 (so an OpenAI-only field leaking through fails loudly),
//! `tool_choice` must be `REQUIRED` or `NONE`, and embed requests need `input_type` and
//! `embedding_types`.

use std::borrow::Cow;

use bytes::BytesMut;
use http::header::{CACHE_CONTROL, CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderValue, Response, StatusCode};
use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::{Value, json};
use switchyard_types::sse;

use crate::body::{EventSource, MockBody, Pace, Written};
use crate::openai::{MessageView, ToolView};
use crate::service::{Cx, json_response};
use crate::stats::{Counters, bump};
use crate::synth;

/// Prompt tokens Cohere's chat template adds to every request: counted in `tokens`, not billed.
pub(crate) const TEMPLATE_TOKENS: u64 = 7;
/// The tool call's arguments, in the fragments a stream sends them in.
const TOOL_ARGUMENT_FRAGMENTS: [&str; 5] = ["{\"", "location", "\":\"", "Paris", "\"}"];
const TOOL_ARGUMENTS: &str = "{\"location\":\"Paris\"}";
/// The tool plan, in the pieces a stream sends it in.
const TOOL_PLAN_PIECES: [&str; 2] = ["I will look", " that up."];
const DEFAULT_DIMENSIONS: usize = 8;
const MAX_DIMENSIONS: u64 = 8192;
/// Cohere's limit on texts per embed request.
const MAX_TEXTS: usize = 96;

/// Whether `path` is one of Cohere's, so that errors on it take Cohere's shape.
pub(crate) fn owns(path: &str) -> bool {
    path.ends_with("/v2/chat") || path.ends_with("/v2/embed")
}

// === requests ===

/// The fields of a v2 chat body that Cohere's reference lists.
const CHAT_FIELDS: &[&str] = &[
    "model",
    "messages",
    "stream",
    "tools",
    "strict_tools",
    "documents",
    "citation_options",
    "response_format",
    "safety_mode",
    "max_tokens",
    "stop_sequences",
    "temperature",
    "seed",
    "frequency_penalty",
    "presence_penalty",
    "k",
    "p",
    "logprobs",
    "tool_choice",
    "thinking",
    "priority",
];
/// The fields of a v2 embed body that Cohere's reference lists.
const EMBED_FIELDS: &[&str] = &[
    "model",
    "texts",
    "images",
    "inputs",
    "input_type",
    "embedding_types",
    "output_dimension",
    "max_tokens",
    "truncate",
];

/// The parts of a v2 chat body the mock reads.
#[derive(Debug, Deserialize)]
struct ChatView<'a> {
    #[serde(borrow)]
    model: Cow<'a, str>,
    #[serde(borrow)]
    messages: Vec<MessageView<'a>>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default, borrow)]
    tools: Option<Vec<ToolView<'a>>>,
    #[serde(default, borrow)]
    tool_choice: Option<Cow<'a, str>>,
    #[serde(default)]
    max_tokens: Option<u64>,
}

/// The parts of a v2 embed body the mock reads.
#[derive(Debug, Deserialize)]
struct EmbedView<'a> {
    #[serde(borrow)]
    model: Cow<'a, str>,
    #[serde(default, borrow)]
    texts: Option<Vec<Cow<'a, str>>>,
    #[serde(default, borrow)]
    input_type: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    embedding_types: Option<Vec<Cow<'a, str>>>,
    #[serde(default)]
    output_dimension: Option<u64>,
}

/// What a chat request is answered with.
#[derive(Debug, Clone)]
enum Answer {
    Text { tokens: usize, finish_reason: &'static str },
    ToolCall { name: String },
}

/// The events of one streamed chat answer.
#[derive(Debug)]
struct ChatEvents {
    id: String,
    answer: Answer,
    input_tokens: u64,
    step: usize,
}

// === handlers ===

/// `POST .../v2/chat`.
pub(crate) fn chat(cx: &Cx<'_>, body: &[u8]) -> Response<MockBody> {
    let counters = &cx.shared.counters;
    bump(&counters.chat_completions);
    let request: ChatView<'_> = match parse(body, CHAT_FIELDS) {
        Ok(request) => request,
        Err(message) => return error(StatusCode::BAD_REQUEST, &message),
    };
    if request.model.is_empty() {
        return error(StatusCode::BAD_REQUEST, "invalid request: model must be specified");
    }
    let forbid_tools = match request.tool_choice.as_deref() {
        None | Some("REQUIRED") => false,
        Some("NONE") => true,
        Some(other) => {
            return error(
                StatusCode::BAD_REQUEST,
                &format!("invalid request: tool_choice must be one of REQUIRED, NONE - received '{other}'"),
            );
        }
    };
    let prompt_chars = request.messages.iter().map(|m| m.content.0).sum();
    let input_tokens = synth::prompt_tokens(prompt_chars);
    let after_tool_result = request.messages.last().is_some_and(|m| m.role == "tool");
    let tool = request.tools.iter().flatten().find_map(|t| t.function.as_ref());
    let answer = match tool {
        Some(function) if !after_tool_result && !forbid_tools => {
            Answer::ToolCall { name: function.name.clone().into_owned() }
        }
        _ => {
            let chunks = cx.shared.config.chunks;
            match request.max_tokens.and_then(|cap| usize::try_from(cap).ok()).filter(|&cap| cap < chunks) {
                Some(cap) => Answer::Text { tokens: cap, finish_reason: "MAX_TOKENS" },
                None => Answer::Text { tokens: chunks, finish_reason: "COMPLETE" },
            }
        }
    };
    let id = format!("mock-{:012}", cx.shared.next_id());

    if request.stream.unwrap_or(false) {
        let events = ChatEvents { id, answer, input_tokens, step: 0 };
        let mut response = Response::new(cx.stream(Box::new(events)));
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        return response;
    }

    let message = match &answer {
        Answer::Text { tokens, .. } => json!({
            "role": "assistant",
            "content": [{"type": "text", "text": synth::text(*tokens)}],
        }),
        Answer::ToolCall { name } => json!({
            "role": "assistant",
            "tool_plan": TOOL_PLAN_PIECES.concat(),
            "tool_calls": [{
                "id": tool_call_id(name),
                "type": "function",
                "function": {"name": name, "arguments": TOOL_ARGUMENTS},
            }],
        }),
    };
    let output_tokens = answer.output_tokens();
    counters.add_usage(input_tokens + TEMPLATE_TOKENS, output_tokens);
    let completion = json!({
        "id": id,
        "message": message,
        "finish_reason": answer.finish_reason(),
        "usage": usage(input_tokens, output_tokens),
    });
    to_json_response(&completion)
}

/// `POST .../v2/embed`.
pub(crate) fn embed(cx: &Cx<'_>, body: &[u8]) -> Response<MockBody> {
    let counters = &cx.shared.counters;
    bump(&counters.embeddings);
    let request: EmbedView<'_> = match parse(body, EMBED_FIELDS) {
        Ok(request) => request,
        Err(message) => return error(StatusCode::BAD_REQUEST, &message),
    };
    if request.model.is_empty() {
        return error(StatusCode::BAD_REQUEST, "invalid request: model must be specified");
    }
    let Some(texts) = request.texts.filter(|t| !t.is_empty()) else {
        return error(StatusCode::BAD_REQUEST, "invalid request: texts must not be empty");
    };
    if texts.len() > MAX_TEXTS {
        return error(
            StatusCode::BAD_REQUEST,
            &format!(
                "invalid request: total number of texts must be at most {MAX_TEXTS} - received {}",
                texts.len()
            ),
        );
    }
    if request.input_type.is_none() {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid request: valid input_type must be provided with the provided model",
        );
    }
    match request.embedding_types.as_deref() {
        Some(types) if types.iter().any(|t| t == "float") => {}
        _ => {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid request: embedding_types must include 'float' (the only type this mock produces)",
            );
        }
    }
    let dimensions = match request.output_dimension {
        None => DEFAULT_DIMENSIONS,
        Some(d @ 1..=MAX_DIMENSIONS) => d as usize,
        Some(d) => {
            return error(
                StatusCode::BAD_REQUEST,
                &format!("invalid request: output_dimension {d} is not supported"),
            );
        }
    };
    let input_tokens: u64 = texts.iter().map(|t| synth::prompt_tokens(t.chars().count())).sum();
    let vectors: Vec<Vec<f32>> = texts.iter().map(|t| synth::embedding(t.as_bytes(), dimensions)).collect();
    counters.add_usage(input_tokens, 0);
    let answer = json!({
        "id": format!("mock-{:012}", cx.shared.next_id()),
        "texts": texts,
        "embeddings": {"float": vectors},
        "meta": {"api_version": {"version": "2"}, "billed_units": {"input_tokens": input_tokens}},
        "response_type": "embeddings_by_type",
    });
    to_json_response(&answer)
}

/// An error in Cohere's shape.
pub(crate) fn error(status: StatusCode, message: &str) -> Response<MockBody> {
    let body = json!({"id": "mock-error", "message": message});
    json_response(status, serde_json::to_vec(&body).unwrap_or_else(|_| b"{}".to_vec()))
}

/// The answer to a request without the configured key.
pub(crate) fn unauthorized() -> Response<MockBody> {
    error(StatusCode::UNAUTHORIZED, "invalid api token")
}

/// A 429 as Cohere words it for a trial key, with `Retry-After`.
pub(crate) fn rate_limited(retry_after_secs: u64) -> Response<MockBody> {
    let mut response = error(
        StatusCode::TOO_MANY_REQUESTS,
        "You are using a Trial key, which is limited to 20 API calls / minute. You can continue to use \
         the Trial key for free or upgrade to a Production key with higher rate limits.",
    );
    response.headers_mut().insert(RETRY_AFTER, HeaderValue::from(retry_after_secs));
    response
}

/// Parses a body whose top-level fields must all be among `known`; the error is the 400's
/// message.
fn parse<'a, T: Deserialize<'a>>(body: &'a [u8], known: &[&str]) -> Result<T, String> {
    let invalid = |err: serde_json::Error| format!("invalid request: {err}");
    let fields: std::collections::BTreeMap<Cow<'a, str>, IgnoredAny> =
        serde_json::from_slice(body).map_err(invalid)?;
    if let Some(unknown) = fields.keys().find(|k| !known.contains(&k.as_ref())) {
        return Err(format!("invalid request: unknown field '{unknown}'"));
    }
    serde_json::from_slice(body).map_err(invalid)
}

fn to_json_response(value: &Value) -> Response<MockBody> {
    match serde_json::to_vec(value) {
        Ok(json) => json_response(StatusCode::OK, json),
        Err(_) => error(StatusCode::INTERNAL_SERVER_ERROR, "internal server error"),
    }
}

fn usage(input_tokens: u64, output_tokens: u64) -> Value {
    json!({
        "billed_units": {"input_tokens": input_tokens, "output_tokens": output_tokens},
        "tokens": {"input_tokens": input_tokens + TEMPLATE_TOKENS, "output_tokens": output_tokens},
    })
}

fn tool_call_id(name: &str) -> String {
    format!("{name}_mock1")
}

// === impl Answer ===

impl Answer {
    fn output_tokens(&self) -> u64 {
        match self {
            Self::Text { tokens, .. } => *tokens as u64,
            Self::ToolCall { .. } => (TOOL_PLAN_PIECES.len() + TOOL_ARGUMENT_FRAGMENTS.len()) as u64,
        }
    }

    fn finish_reason(&self) -> &'static str {
        match self {
            Self::Text { finish_reason, .. } => finish_reason,
            Self::ToolCall { .. } => "TOOL_CALL",
        }
    }
}

// === impl ChatEvents ===

impl ChatEvents {
    /// The event of `step`, how it is paced, and whether it is the last.
    fn event(&self, step: usize, counters: &Counters) -> Option<(Value, Pace, bool)> {
        if step == 0 {
            let start = json!({
                "id": self.id,
                "type": "message-start",
                "delta": {"message": {"role": "assistant", "content": [], "tool_plan": "", "tool_calls": [], "citations": []}},
            });
            return Some((start, Pace::Ttft, false));
        }
        let body: Vec<Value> = match &self.answer {
            Answer::Text { tokens, .. } => {
                let index = step - 1;
                match index {
                    0 => vec![
                        json!({"type": "content-start", "index": 0, "delta": {"message": {"content": {"type": "text", "text": ""}}}}),
                    ],
                    i if i <= *tokens => {
                        let mut piece = String::new();
                        synth::push_token(&mut piece, i - 1);
                        vec![
                            json!({"type": "content-delta", "index": 0, "delta": {"message": {"content": {"text": piece}}}}),
                        ]
                    }
                    i if i == tokens + 1 => vec![json!({"type": "content-end", "index": 0})],
                    _ => Vec::new(),
                }
            }
            Answer::ToolCall { name } => {
                let index = step - 1;
                let plan = TOOL_PLAN_PIECES.len();
                let fragments = TOOL_ARGUMENT_FRAGMENTS.len();
                match index {
                    i if i < plan => vec![
                        json!({"type": "tool-plan-delta", "delta": {"message": {"tool_plan": TOOL_PLAN_PIECES[i]}}}),
                    ],
                    i if i == plan => vec![
                        json!({"type": "tool-call-start", "index": 0, "delta": {"message": {"tool_calls": {
                        "id": tool_call_id(name), "type": "function", "function": {"name": name, "arguments": ""}}}}}),
                    ],
                    i if i <= plan + fragments => vec![
                        json!({"type": "tool-call-delta", "index": 0, "delta": {"message": {"tool_calls": {
                        "function": {"arguments": TOOL_ARGUMENT_FRAGMENTS[i - plan - 1]}}}}}),
                    ],
                    i if i == plan + fragments + 1 => vec![json!({"type": "tool-call-end", "index": 0})],
                    _ => Vec::new(),
                }
            }
        };
        if let Some(event) = body.into_iter().next() {
            let pace = match event["type"].as_str() {
                Some("content-delta" | "tool-call-delta") if self.streamed_piece(step) > 0 => Pace::Chunk,
                _ => Pace::Now,
            };
            return Some((event, pace, false));
        }
        if step == self.last_step() {
            let output_tokens = self.answer.output_tokens();
            counters.add_usage(self.input_tokens + TEMPLATE_TOKENS, output_tokens);
            let end = json!({
                "type": "message-end",
                "delta": {"finish_reason": self.answer.finish_reason(), "usage": usage(self.input_tokens, output_tokens)},
            });
            return Some((end, Pace::Now, true));
        }
        None
    }

    /// Which piece (0-based) a delta at `step` carries, for pacing: the first goes at once.
    fn streamed_piece(&self, step: usize) -> usize {
        match &self.answer {
            Answer::Text { .. } => step.saturating_sub(2),
            Answer::ToolCall { .. } => step.saturating_sub(TOOL_PLAN_PIECES.len() + 2),
        }
    }

    /// The step of `message-end`.
    fn last_step(&self) -> usize {
        match &self.answer {
            // message-start, content-start, the tokens, content-end.
            Answer::Text { tokens, .. } => tokens + 3,
            // message-start, the plan, tool-call-start, the fragments, tool-call-end.
            Answer::ToolCall { .. } => TOOL_PLAN_PIECES.len() + TOOL_ARGUMENT_FRAGMENTS.len() + 3,
        }
    }
}

impl EventSource for ChatEvents {
    fn write_next(&mut self, buf: &mut BytesMut, counters: &Counters) -> Option<Written> {
        let (event, pace, last) = self.event(self.step, counters)?;
        self.step += 1;
        let kind = event["type"].as_str().unwrap_or("message").to_owned();
        // Values built above hold strings and numbers only; serialising them cannot fail.
        if let Ok(data) = serde_json::to_string(&event) {
            sse::encode(buf, Some(&kind), &data);
        }
        Some(Written { pace, last })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail loudly on purpose")]

    use super::*;

    fn types(answer: Answer) -> Vec<String> {
        let mut events = ChatEvents { id: "x".into(), answer, input_tokens: 1, step: 0 };
        let counters = Counters::default();
        let mut out = Vec::new();
        let mut buf = BytesMut::new();
        while let Some(written) = events.write_next(&mut buf, &counters) {
            let text = String::from_utf8(buf.split().to_vec()).unwrap();
            let kind = text.lines().next().unwrap().strip_prefix("event: ").unwrap().to_owned();
            out.push(kind);
            if written.last {
                break;
            }
        }
        out
    }

    #[test]
    fn a_text_stream_is_the_full_v2_sequence() {
        assert_eq!(
            types(Answer::Text { tokens: 2, finish_reason: "COMPLETE" }),
            [
                "message-start",
                "content-start",
                "content-delta",
                "content-delta",
                "content-end",
                "message-end"
            ]
        );
    }

    #[test]
    fn a_tool_stream_plans_then_calls() {
        let kinds = types(Answer::ToolCall { name: "get_weather".into() });
        assert_eq!(kinds[..4], ["message-start", "tool-plan-delta", "tool-plan-delta", "tool-call-start"]);
        assert_eq!(kinds.iter().filter(|k| *k == "tool-call-delta").count(), TOOL_ARGUMENT_FRAGMENTS.len());
        assert_eq!(kinds[kinds.len() - 2..], ["tool-call-end", "message-end"]);
    }
}
