//! The OpenAI dialect: Chat Completions (whole and streamed, text and tool calls), Embeddings,
//! Models, and the error envelope, shaped as OpenAI sends them today.
//!
//! Requests are parsed once, into borrowed views holding only what the mock needs (serde skips
//! everything else without allocating); answers are serialised from borrowed structs. Both keep
//! the mock cheap enough to be the upstream of a benchmark.
//!
//! The answers are synthetic and deterministic:
//! - text: `tok0 tok1 ...`, [`MockConfig::chunks`](crate::MockConfig::chunks) tokens, fewer when
//!   `max_completion_tokens` or `max_tokens` is lower (then `finish_reason` is `length`);
//! - with `tools`, unless the last message is a tool result: a call of the first tool, id
//!   `call_mock_1`, arguments `{"location":"Paris"}`, `finish_reason` `tool_calls` (answering a
//!   tool result with text lets a client's agent loop end);
//! - `prompt_tokens`: characters of text content / 4 + 1; `n` choices, all alike;
//! - embeddings: unit vectors derived from a hash of each input, `dimensions` long (8 by
//!   default), as floats or, for `encoding_format: "base64"`, as base64 of little-endian `f32`s
//!   (the official Python SDK asks for base64 by default).

use std::borrow::Cow;
use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use http::header::{CACHE_CONTROL, CONTENT_TYPE};
use http::{HeaderValue, Method, Response, StatusCode};
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};
use switchyard_types::error::ErrorEnvelope;
use switchyard_types::sse;

use crate::body::{EventSource, MockBody, Pace, Written};
use crate::service::{Cx, json_response};
use crate::stats::{Counters, bump};
use crate::synth;

/// The model named when a request names none and its path names no Azure deployment.
const DEFAULT_MODEL: &str = "mock-gpt";
const SYSTEM_FINGERPRINT: &str = "fp_mock";
const TOOL_CALL_ID: &str = "call_mock_1";
/// The tool call's arguments, in the fragments a stream sends them in (as OpenAI's tokens split
/// them); their concatenation is the arguments of a whole answer.
const TOOL_ARGUMENT_FRAGMENTS: [&str; 5] = ["{\"", "location", "\":\"", "Paris", "\"}"];
const TOOL_ARGUMENTS: &str = "{\"location\":\"Paris\"}";
/// OpenAI caps `n` at 128.
const MAX_CHOICES: u32 = 128;
const DEFAULT_DIMENSIONS: usize = 8;
const MAX_DIMENSIONS: u64 = 8192;
const MODELS: &str = r#"{"object":"list","data":[{"id":"mock-gpt","object":"model","created":1700000000,"owned_by":"switchyard-testkit"}]}"#;

// === requests ===

/// The parts of a chat request the mock reads.
#[derive(Debug, Deserialize)]
struct ChatView<'a> {
    #[serde(default, borrow)]
    model: Option<Cow<'a, str>>,
    #[serde(borrow)]
    messages: Vec<MessageView<'a>>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    stream_options: Option<StreamOptionsView>,
    #[serde(default)]
    n: Option<u32>,
    #[serde(default, borrow)]
    tools: Option<Vec<ToolView<'a>>>,
    #[serde(default)]
    max_tokens: Option<u64>,
    #[serde(default)]
    max_completion_tokens: Option<u64>,
}

/// A message as the mock reads it; Cohere's v2 messages have the same two fields.
#[derive(Debug, Deserialize)]
pub(crate) struct MessageView<'a> {
    #[serde(borrow)]
    pub(crate) role: Cow<'a, str>,
    #[serde(default)]
    pub(crate) content: Chars,
}

#[derive(Debug, Deserialize)]
struct StreamOptionsView {
    #[serde(default)]
    include_usage: Option<bool>,
}

/// A tool as the mock reads it; Cohere's v2 tools have the same shape.
#[derive(Debug, Deserialize)]
pub(crate) struct ToolView<'a> {
    #[serde(default, borrow)]
    pub(crate) function: Option<FunctionView<'a>>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct FunctionView<'a> {
    #[serde(borrow)]
    pub(crate) name: Cow<'a, str>,
}

/// The number of characters of text in a message's content, counted while parsing: a string, an
/// array of parts (their `text` fields), or null.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Chars(pub(crate) usize);

#[derive(Debug, Deserialize)]
struct EmbeddingsView<'a> {
    #[serde(default, borrow)]
    model: Option<Cow<'a, str>>,
    #[serde(borrow)]
    input: EmbeddingInput<'a>,
    #[serde(default)]
    dimensions: Option<u64>,
    #[serde(default, borrow)]
    encoding_format: Option<Cow<'a, str>>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged, expecting = "'input' to be a string, an array of strings, or token arrays")]
enum EmbeddingInput<'a> {
    Text(#[serde(borrow)] Cow<'a, str>),
    Texts(#[serde(borrow)] Vec<Cow<'a, str>>),
    Tokens(Vec<u32>),
    TokenLists(Vec<Vec<u32>>),
}

// === responses ===

#[derive(Serialize)]
struct Completion<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: Vec<Choice<'a>>,
    usage: UsageOut,
    service_tier: &'static str,
    system_fingerprint: &'static str,
}

#[derive(Serialize)]
struct Choice<'a> {
    index: u32,
    message: Message<'a>,
    logprobs: (),
    finish_reason: &'a str,
}

#[derive(Serialize)]
struct Message<'a> {
    role: &'static str,
    content: Option<&'a str>,
    refusal: (),
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_calls: Option<[ToolCall<'a>; 1]>,
    annotations: [(); 0],
}

#[derive(Serialize)]
struct ToolCall<'a> {
    id: &'static str,
    #[serde(rename = "type")]
    kind: &'static str,
    function: FunctionCall<'a>,
}

#[derive(Serialize)]
struct FunctionCall<'a> {
    name: &'a str,
    arguments: &'static str,
}

#[derive(Debug, Clone, Copy, Serialize)]
struct UsageOut {
    prompt_tokens: u64,
    completion_tokens: u64,
    total_tokens: u64,
    prompt_tokens_details: PromptTokensDetails,
    completion_tokens_details: CompletionTokensDetails,
}

#[derive(Debug, Clone, Copy, Default, Serialize)]
struct PromptTokensDetails {
    cached_tokens: u64,
    audio_tokens: u64,
}

#[derive(Debug, Clone, Copy, Default, Serialize)]
struct CompletionTokensDetails {
    reasoning_tokens: u64,
    audio_tokens: u64,
    accepted_prediction_tokens: u64,
    rejected_prediction_tokens: u64,
}

#[derive(Serialize)]
struct Chunk<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    service_tier: &'static str,
    system_fingerprint: &'static str,
    choices: &'a [ChunkChoice<'a>],
    #[serde(skip_serializing_if = "UsageField::is_absent")]
    usage: UsageField,
}

#[derive(Serialize)]
struct ChunkChoice<'a> {
    index: u32,
    delta: Delta<'a>,
    logprobs: (),
    finish_reason: Option<&'a str>,
}

/// A chunk's delta; absent fields are left out, as OpenAI leaves them out.
#[derive(Default, Serialize)]
struct Delta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'static str>,
    /// `Some(None)` is an explicit `null`.
    #[serde(skip_serializing_if = "Option::is_none")]
    content: Option<Option<&'a str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_calls: Option<[ToolCallDelta<'a>; 1]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    refusal: Option<()>,
}

#[derive(Serialize)]
struct ToolCallDelta<'a> {
    index: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'static str>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    kind: Option<&'static str>,
    function: FunctionDelta<'a>,
}

#[derive(Serialize)]
struct FunctionDelta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    arguments: &'a str,
}

/// A chunk's `usage`: left out unless the client asked for `include_usage`; then `null` on every
/// chunk but the last, which carries the usage and no choices.
#[derive(Debug, Clone, Copy)]
enum UsageField {
    Absent,
    Null,
    Usage(UsageOut),
}

#[derive(Serialize)]
struct EmbeddingList<'a> {
    object: &'static str,
    data: Vec<EmbeddingItem>,
    model: &'a str,
    usage: EmbeddingUsage,
}

#[derive(Serialize)]
struct EmbeddingItem {
    object: &'static str,
    index: usize,
    embedding: EmbeddingValue,
}

#[derive(Serialize)]
#[serde(untagged)]
enum EmbeddingValue {
    Floats(Vec<f32>),
    Base64(String),
}

#[derive(Serialize)]
struct EmbeddingUsage {
    prompt_tokens: u64,
    total_tokens: u64,
}

/// What a chat request is answered with, per choice.
#[derive(Debug, Clone)]
enum Answer {
    Text { tokens: usize, finish_reason: &'static str },
    ToolCall { name: String },
}

/// The events of one streamed chat answer: per step (opening, each piece, finish) one chunk per
/// choice, then the usage chunk when asked for, then `[DONE]`.
#[derive(Debug)]
struct ChatEvents {
    id: String,
    created: u64,
    model: String,
    n: u32,
    answer: Answer,
    include_usage: bool,
    usage: UsageOut,
    phase: Phase,
    piece: String,
    /// Events written so far, and the one an error chunk replaces
    /// ([`Fault::ErrorMidStream`](crate::Fault::ErrorMidStream)).
    written: usize,
    error_at: Option<usize>,
}

#[derive(Debug, Clone, Copy)]
enum Phase {
    /// Step 0 opens (role), steps 1..=pieces carry the pieces, step pieces + 1 finishes.
    Choices {
        step: usize,
        choice: u32,
    },
    Usage,
    Done,
    End,
}

// === handlers ===

/// `POST .../chat/completions`.
pub(crate) fn chat(cx: &Cx<'_>, path: &str, body: &[u8]) -> Response<MockBody> {
    let counters = &cx.shared.counters;
    bump(&counters.chat_completions);
    let request: ChatView<'_> = match serde_json::from_slice(body) {
        Ok(request) => request,
        Err(err) => return invalid_body(&err),
    };
    let n = request.n.unwrap_or(1);
    if n == 0 || n > MAX_CHOICES {
        return error_with_param(
            StatusCode::BAD_REQUEST,
            &format!("{n} is not a valid value for 'n': it must be between 1 and {MAX_CHOICES}."),
            "n",
        );
    }
    let model = model_name(request.model.as_deref(), path);
    let prompt_chars = request.messages.iter().map(|m| m.content.0).sum();
    let prompt_tokens = synth::prompt_tokens(prompt_chars);
    let after_tool_result = request.messages.last().is_some_and(|m| m.role == "tool");
    let tool = request.tools.iter().flatten().find_map(|t| t.function.as_ref());
    let answer = match tool {
        Some(function) if !after_tool_result => Answer::ToolCall { name: function.name.clone().into_owned() },
        _ => {
            let chunks = cx.shared.config.chunks;
            let cap = request.max_completion_tokens.or(request.max_tokens);
            match cap.and_then(|cap| usize::try_from(cap).ok()).filter(|&cap| cap < chunks) {
                Some(cap) => Answer::Text { tokens: cap, finish_reason: "length" },
                None => Answer::Text { tokens: chunks, finish_reason: "stop" },
            }
        }
    };
    let completion_tokens = answer.pieces() as u64 * u64::from(n);
    let usage = UsageOut::new(prompt_tokens, completion_tokens);
    let id = format!("chatcmpl-mock-{}", cx.shared.next_id());
    let created = unix_now();

    if cx.error_after.is_some() && !request.stream.unwrap_or(false) {
        return overloaded();
    }
    if request.stream.unwrap_or(false) {
        let include_usage = request.stream_options.and_then(|o| o.include_usage).unwrap_or(false);
        let events = ChatEvents {
            id,
            created,
            model: model.into_owned(),
            n,
            answer,
            include_usage,
            usage,
            phase: Phase::Choices { step: 0, choice: 0 },
            piece: String::new(),
            written: 0,
            error_at: cx.error_after,
        };
        let mut response = Response::new(cx.stream(Box::new(events)));
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        return response;
    }

    let text = match &answer {
        Answer::Text { tokens, .. } => Some(synth::text(*tokens)),
        Answer::ToolCall { .. } => None,
    };
    let choice = |index| Choice {
        index,
        message: Message {
            role: "assistant",
            content: text.as_deref(),
            refusal: (),
            tool_calls: match &answer {
                Answer::ToolCall { name } => Some([ToolCall {
                    id: TOOL_CALL_ID,
                    kind: "function",
                    function: FunctionCall { name, arguments: TOOL_ARGUMENTS },
                }]),
                Answer::Text { .. } => None,
            },
            annotations: [],
        },
        logprobs: (),
        finish_reason: answer.finish_reason(),
    };
    let completion = Completion {
        id: &id,
        object: "chat.completion",
        created,
        model: &model,
        choices: (0..n).map(choice).collect(),
        usage,
        service_tier: "default",
        system_fingerprint: SYSTEM_FINGERPRINT,
    };
    counters.add_usage(usage.prompt_tokens, usage.completion_tokens);
    to_json_response(&completion)
}

/// `POST .../embeddings`.
pub(crate) fn embeddings(cx: &Cx<'_>, path: &str, body: &[u8]) -> Response<MockBody> {
    let counters = &cx.shared.counters;
    bump(&counters.embeddings);
    let request: EmbeddingsView<'_> = match serde_json::from_slice(body) {
        Ok(request) => request,
        Err(err) => return invalid_body(&err),
    };
    let dimensions = match request.dimensions {
        None => DEFAULT_DIMENSIONS,
        Some(d @ 1..=MAX_DIMENSIONS) => d as usize,
        Some(d) => {
            return error_with_param(
                StatusCode::BAD_REQUEST,
                &format!(
                    "{d} is not a valid value for 'dimensions': it must be between 1 and {MAX_DIMENSIONS}."
                ),
                "dimensions",
            );
        }
    };
    let base64 = match request.encoding_format.as_deref() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => {
            return error_with_param(
                StatusCode::BAD_REQUEST,
                &format!("'{other}' is not a valid 'encoding_format': use 'float' or 'base64'."),
                "encoding_format",
            );
        }
    };
    // Each input as the bytes its vector derives from, with its token count.
    let inputs: Vec<(Cow<'_, [u8]>, u64)> = match &request.input {
        EmbeddingInput::Text(text) => vec![text_input(text)],
        EmbeddingInput::Texts(texts) => texts.iter().map(|t| text_input(t)).collect(),
        EmbeddingInput::Tokens(tokens) => vec![token_input(tokens)],
        EmbeddingInput::TokenLists(lists) => lists.iter().map(|t| token_input(t)).collect(),
    };
    if inputs.is_empty() {
        return error_with_param(StatusCode::BAD_REQUEST, "'input' cannot be an empty array.", "input");
    }
    let prompt_tokens = inputs.iter().map(|(_, tokens)| tokens).sum();
    let data = inputs
        .iter()
        .enumerate()
        .map(|(index, (bytes, _))| {
            let vector = synth::embedding(bytes, dimensions);
            EmbeddingItem {
                object: "embedding",
                index,
                embedding: if base64 {
                    EmbeddingValue::Base64(synth::base64_f32_le(&vector))
                } else {
                    EmbeddingValue::Floats(vector)
                },
            }
        })
        .collect();
    let list = EmbeddingList {
        object: "list",
        data,
        model: &model_name(request.model.as_deref(), path),
        usage: EmbeddingUsage { prompt_tokens, total_tokens: prompt_tokens },
    };
    counters.add_usage(prompt_tokens, 0);
    to_json_response(&list)
}

/// `GET .../models`.
pub(crate) fn models() -> Response<MockBody> {
    json_response(StatusCode::OK, Bytes::from_static(MODELS.as_bytes()))
}

/// Any other method and path.
pub(crate) fn not_found(method: &Method, path: &str) -> Response<MockBody> {
    error(StatusCode::NOT_FOUND, &format!("Invalid URL ({method} {path})"), None)
}

/// [`Fault::Overloaded`](crate::Fault::Overloaded) on OpenAI's paths: a 503 `server_error`, as
/// OpenAI answers when it cannot take the request.
pub(crate) fn overloaded() -> Response<MockBody> {
    error_of_type(
        StatusCode::SERVICE_UNAVAILABLE,
        "The server is overloaded or not ready yet.",
        "server_error",
        None,
    )
}

/// An `invalid_request_error` in the OpenAI envelope.
pub(crate) fn error(status: StatusCode, message: &str, code: Option<&str>) -> Response<MockBody> {
    error_of_type(status, message, "invalid_request_error", code)
}

/// An error of the given type in the OpenAI envelope.
pub(crate) fn error_of_type(
    status: StatusCode,
    message: &str,
    kind: &str,
    code: Option<&str>,
) -> Response<MockBody> {
    envelope_response(status, &ErrorEnvelope::new(message, kind, code))
}

fn error_with_param(status: StatusCode, message: &str, param: &str) -> Response<MockBody> {
    envelope_response(status, &ErrorEnvelope::new(message, "invalid_request_error", None).with_param(param))
}

fn envelope_response(status: StatusCode, envelope: &ErrorEnvelope) -> Response<MockBody> {
    let json = serde_json::to_vec(envelope).unwrap_or_else(|_| b"{}".to_vec());
    json_response(status, json)
}

fn invalid_body(err: &serde_json::Error) -> Response<MockBody> {
    let message = if err.is_data() {
        format!("Invalid request body: {err}.")
    } else {
        format!(
            "We could not parse the JSON body of your request ({err}). The OpenAI API expects a JSON \
             payload."
        )
    };
    error(StatusCode::BAD_REQUEST, &message, None)
}

fn to_json_response(value: &impl Serialize) -> Response<MockBody> {
    match serde_json::to_vec(value) {
        Ok(json) => json_response(StatusCode::OK, json),
        Err(_) => error_of_type(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Could not encode the answer.",
            "server_error",
            None,
        ),
    }
}

/// The model to name in the answer: the request's, else the Azure deployment in the path
/// (Azure requests carry no model), else [`DEFAULT_MODEL`].
fn model_name<'a>(requested: Option<&'a str>, path: &'a str) -> Cow<'a, str> {
    if let Some(model) = requested {
        return Cow::Borrowed(model);
    }
    let deployment = path
        .split_once("/deployments/")
        .and_then(|(_, rest)| rest.split('/').next())
        .filter(|name| !name.is_empty());
    Cow::Borrowed(deployment.unwrap_or(DEFAULT_MODEL))
}

fn text_input(text: &str) -> (Cow<'_, [u8]>, u64) {
    (Cow::Borrowed(text.as_bytes()), synth::prompt_tokens(text.chars().count()))
}

fn token_input(tokens: &[u32]) -> (Cow<'static, [u8]>, u64) {
    let bytes: Vec<u8> = tokens.iter().flat_map(|t| t.to_le_bytes()).collect();
    (Cow::Owned(bytes), tokens.len() as u64)
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Appends one `data:` event holding `value` as JSON.
fn write_event(buf: &mut BytesMut, value: &impl Serialize) {
    // These structs hold strings and numbers only; serialising them cannot fail.
    if let Ok(json) = serde_json::to_string(value) {
        sse::encode(buf, None, &json);
    }
}

// === impl Chars ===

impl<'de> Deserialize<'de> for Chars {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(CharsVisitor)
    }
}

struct CharsVisitor;

/// The keys of a content part: only `text` is counted.
#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "lowercase")]
enum PartKey {
    Text,
    #[serde(other)]
    Other,
}

impl<'de> Visitor<'de> for CharsVisitor {
    type Value = Chars;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string, an array of content parts, or null")
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<Chars, E> {
        Ok(Chars(text.chars().count()))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Chars, E> {
        Ok(Chars(0))
    }

    fn visit_none<E: de::Error>(self) -> Result<Chars, E> {
        Ok(Chars(0))
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Chars, D::Error> {
        Chars::deserialize(deserializer)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut parts: A) -> Result<Chars, A::Error> {
        let mut total = 0;
        while let Some(Chars(chars)) = parts.next_element()? {
            total += chars;
        }
        Ok(Chars(total))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut part: A) -> Result<Chars, A::Error> {
        let mut total = 0;
        while let Some(key) = part.next_key()? {
            match key {
                PartKey::Text => total += part.next_value::<Chars>()?.0,
                PartKey::Other => {
                    part.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(Chars(total))
    }
}

// === impl Answer ===

impl Answer {
    /// The pieces a stream sends, which are also the completion tokens of one choice.
    fn pieces(&self) -> usize {
        match self {
            Self::Text { tokens, .. } => *tokens,
            Self::ToolCall { .. } => TOOL_ARGUMENT_FRAGMENTS.len(),
        }
    }

    fn finish_reason(&self) -> &'static str {
        match self {
            Self::Text { finish_reason, .. } => finish_reason,
            Self::ToolCall { .. } => "tool_calls",
        }
    }
}

// === impl UsageOut ===

impl UsageOut {
    fn new(prompt_tokens: u64, completion_tokens: u64) -> Self {
        Self {
            prompt_tokens,
            completion_tokens,
            total_tokens: prompt_tokens + completion_tokens,
            prompt_tokens_details: PromptTokensDetails::default(),
            completion_tokens_details: CompletionTokensDetails::default(),
        }
    }
}

// === impl UsageField ===

impl UsageField {
    fn is_absent(&self) -> bool {
        matches!(self, Self::Absent)
    }
}

impl Serialize for UsageField {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Absent | Self::Null => serializer.serialize_none(),
            Self::Usage(usage) => usage.serialize(serializer),
        }
    }
}

// === impl ChatEvents ===

impl ChatEvents {
    fn chunk<'a>(&'a self, choices: &'a [ChunkChoice<'a>], usage: UsageField) -> Chunk<'a> {
        Chunk {
            id: &self.id,
            object: "chat.completion.chunk",
            created: self.created,
            model: &self.model,
            service_tier: "default",
            system_fingerprint: SYSTEM_FINGERPRINT,
            choices,
            usage,
        }
    }

    /// The delta of `step` (0 opens, 1..=pieces carry piece `step - 1`).
    fn delta(&self, step: usize) -> Delta<'_> {
        match (&self.answer, step) {
            (Answer::Text { .. }, 0) => Delta {
                role: Some("assistant"),
                content: Some(Some("")),
                refusal: Some(()),
                ..Delta::default()
            },
            (Answer::Text { .. }, _) => Delta { content: Some(Some(&self.piece)), ..Delta::default() },
            (Answer::ToolCall { name }, 0) => Delta {
                role: Some("assistant"),
                content: Some(None),
                tool_calls: Some([ToolCallDelta {
                    index: 0,
                    id: Some(TOOL_CALL_ID),
                    kind: Some("function"),
                    function: FunctionDelta { name: Some(name), arguments: "" },
                }]),
                refusal: Some(()),
            },
            (Answer::ToolCall { .. }, _) => Delta {
                tool_calls: Some([ToolCallDelta {
                    index: 0,
                    id: None,
                    kind: None,
                    function: FunctionDelta {
                        name: None,
                        arguments: TOOL_ARGUMENT_FRAGMENTS.get(step - 1).copied().unwrap_or(""),
                    },
                }]),
                ..Delta::default()
            },
        }
    }

    fn null_usage(&self) -> UsageField {
        if self.include_usage { UsageField::Null } else { UsageField::Absent }
    }
}

impl EventSource for ChatEvents {
    fn write_next(&mut self, buf: &mut BytesMut, counters: &Counters) -> Option<Written> {
        if self.error_at == Some(self.written) && !matches!(self.phase, Phase::End) {
            // As OpenAI breaks off a stream: an error envelope as a chunk, and no `[DONE]`.
            self.phase = Phase::End;
            let error = ErrorEnvelope::new(
                "The server had an error while processing your request. Sorry about that!",
                "server_error",
                None,
            );
            write_event(buf, &error);
            return Some(Written { pace: Pace::Now, last: true });
        }
        self.written += 1;
        let pieces = self.answer.pieces();
        match self.phase {
            Phase::Choices { step, choice } => {
                self.phase = match (choice + 1 < self.n, step <= pieces) {
                    (true, _) => Phase::Choices { step, choice: choice + 1 },
                    (false, true) => Phase::Choices { step: step + 1, choice: 0 },
                    (false, false) if self.include_usage => Phase::Usage,
                    (false, false) => Phase::Done,
                };
                let pace = match (choice, step) {
                    (0, 0) => Pace::Ttft,
                    (0, step) if step >= 2 && step <= pieces => Pace::Chunk,
                    _ => Pace::Now,
                };
                if step >= 1 && step <= pieces && choice == 0 {
                    self.piece.clear();
                    if matches!(self.answer, Answer::Text { .. }) {
                        synth::push_token(&mut self.piece, step - 1);
                    }
                }
                let (delta, finish_reason) = if step <= pieces {
                    (self.delta(step), None)
                } else {
                    (Delta::default(), Some(self.answer.finish_reason()))
                };
                let choices = [ChunkChoice { index: choice, delta, logprobs: (), finish_reason }];
                write_event(buf, &self.chunk(&choices, self.null_usage()));
                Some(Written { pace, last: false })
            }
            Phase::Usage => {
                self.phase = Phase::Done;
                write_event(buf, &self.chunk(&[], UsageField::Usage(self.usage)));
                counters.add_usage(self.usage.prompt_tokens, self.usage.completion_tokens);
                Some(Written { pace: Pace::Now, last: false })
            }
            Phase::Done => {
                self.phase = Phase::End;
                sse::encode(buf, None, sse::DONE);
                Some(Written { pace: Pace::Now, last: true })
            }
            Phase::End => None,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail loudly on purpose")]

    use super::*;

    fn chars(json: &str) -> usize {
        serde_json::from_str::<Chars>(json).unwrap().0
    }

    #[test]
    fn counts_text_in_every_content_shape() {
        assert_eq!(chars(r#""héllo""#), 5);
        assert_eq!(chars("null"), 0);
        assert_eq!(
            chars(
                r#"[{"type":"text","text":"abc"},{"type":"image_url","image_url":{"url":"x"}},{"text":"de"}]"#
            ),
            5
        );
        assert!(serde_json::from_str::<Chars>("42").is_err());
    }

    #[test]
    fn names_the_azure_deployment_when_the_body_names_no_model() {
        assert_eq!(model_name(None, "/openai/deployments/gpt4o-prod/chat/completions"), "gpt4o-prod");
        assert_eq!(model_name(Some("m"), "/openai/deployments/d/chat/completions"), "m");
        assert_eq!(model_name(None, "/v1/chat/completions"), DEFAULT_MODEL);
    }
}
