//! The shapes the Anthropic dialect sends: the `Message`, its content blocks and usage, the
//! stream's events, and the error envelope, serialised from borrowed structs.
//!
//! Field names and order follow Anthropic's answers as captured from the API: `usage` carries
//! `cache_creation` (split by cache lifetime) and `service_tier` next to the token counts, and a
//! thinking block opens a stream with an empty `signature`.

use serde::Serialize;

use super::request::InputUsage;

/// A `Message`: the whole answer, or (with no content and no stop reason) what `message_start`
/// carries.
#[derive(Debug, Serialize)]
pub(super) struct Message<'a> {
    pub(super) id: &'a str,
    #[serde(rename = "type")]
    pub(super) kind: &'static str,
    pub(super) role: &'static str,
    pub(super) model: &'a str,
    pub(super) content: Vec<ContentBlock<'a>>,
    pub(super) stop_reason: Option<&'a str>,
    pub(super) stop_sequence: Option<&'a str>,
    pub(super) usage: Usage,
}

/// A block of a message's `content`, or the opening of one in `content_block_start`.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(super) enum ContentBlock<'a> {
    Thinking { thinking: &'a str, signature: &'a str },
    Text { text: &'a str },
    ToolUse { id: &'a str, name: &'a str, input: ToolInput },
}

/// A tool call's `input`: empty when a stream opens the block (the input follows in
/// `input_json_delta`s), the mock's fixed arguments in a whole answer.
#[derive(Debug, Clone, Copy, Serialize)]
#[serde(untagged)]
pub(super) enum ToolInput {
    Empty {},
    Fixed { location: &'static str },
}

/// A message's `usage`.
#[derive(Debug, Clone, Copy, Serialize)]
pub(super) struct Usage {
    input_tokens: u64,
    cache_creation_input_tokens: u64,
    cache_read_input_tokens: u64,
    cache_creation: CacheCreation,
    output_tokens: u64,
    service_tier: &'static str,
}

/// The cache writes by lifetime. The mock writes every prefix for the default five minutes.
#[derive(Debug, Clone, Copy, Serialize)]
struct CacheCreation {
    ephemeral_5m_input_tokens: u64,
    ephemeral_1h_input_tokens: u64,
}

/// The `usage` of `message_delta`: cumulative counts, the input ones repeated from
/// `message_start` as the API repeats them today.
#[derive(Debug, Clone, Copy, Serialize)]
pub(super) struct DeltaUsage {
    input_tokens: u64,
    cache_creation_input_tokens: u64,
    cache_read_input_tokens: u64,
    output_tokens: u64,
}

/// One server-sent event of a streamed answer; its `type` is also the SSE `event:` name.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(super) enum Event<'a> {
    MessageStart { message: Message<'a> },
    ContentBlockStart { index: usize, content_block: ContentBlock<'a> },
    Ping,
    ContentBlockDelta { index: usize, delta: Delta<'a> },
    ContentBlockStop { index: usize },
    MessageDelta { delta: StopDelta<'a>, usage: DeltaUsage },
    MessageStop,
    Error { error: ErrorBody<'a> },
}

/// The `delta` of `content_block_delta`.
#[derive(Debug, Serialize)]
#[serde(tag = "type")]
pub(super) enum Delta<'a> {
    #[serde(rename = "text_delta")]
    Text { text: &'a str },
    #[serde(rename = "input_json_delta")]
    InputJson { partial_json: &'a str },
    #[serde(rename = "thinking_delta")]
    Thinking { thinking: &'a str },
    #[serde(rename = "signature_delta")]
    Signature { signature: &'a str },
}

/// The `delta` of `message_delta`.
#[derive(Debug, Serialize)]
pub(super) struct StopDelta<'a> {
    pub(super) stop_reason: &'a str,
    pub(super) stop_sequence: Option<&'a str>,
}

/// The error envelope: `{"type":"error","error":{...},"request_id":"req_..."}`.
#[derive(Debug, Serialize)]
pub(super) struct ErrorEnvelope<'a> {
    #[serde(rename = "type")]
    pub(super) kind: &'static str,
    pub(super) error: ErrorBody<'a>,
    pub(super) request_id: &'a str,
}

/// The `error` of an envelope or of a stream's `error` event.
#[derive(Debug, Serialize)]
pub(super) struct ErrorBody<'a> {
    #[serde(rename = "type")]
    pub(super) kind: &'a str,
    pub(super) message: &'a str,
}

// === impl Message ===

impl<'a> Message<'a> {
    /// A message of the assistant, as `model` answered it.
    pub(super) fn new(id: &'a str, model: &'a str, usage: Usage) -> Self {
        Message {
            id,
            kind: "message",
            role: "assistant",
            model,
            content: Vec::new(),
            stop_reason: None,
            stop_sequence: None,
            usage,
        }
    }
}

// === impl Usage ===

impl Usage {
    pub(super) fn new(input: InputUsage, output_tokens: u64) -> Self {
        Usage {
            input_tokens: input.input_tokens,
            cache_creation_input_tokens: input.cache_creation_input_tokens,
            cache_read_input_tokens: input.cache_read_input_tokens,
            cache_creation: CacheCreation {
                ephemeral_5m_input_tokens: input.cache_creation_input_tokens,
                ephemeral_1h_input_tokens: 0,
            },
            output_tokens,
            service_tier: "standard",
        }
    }
}

// === impl DeltaUsage ===

impl DeltaUsage {
    pub(super) fn new(input: InputUsage, output_tokens: u64) -> Self {
        DeltaUsage {
            input_tokens: input.input_tokens,
            cache_creation_input_tokens: input.cache_creation_input_tokens,
            cache_read_input_tokens: input.cache_read_input_tokens,
            output_tokens,
        }
    }
}

// === impl Event ===

impl Event<'_> {
    /// The SSE `event:` name, which is the JSON `type`.
    pub(super) fn name(&self) -> &'static str {
        match self {
            Self::MessageStart { .. } => "message_start",
            Self::ContentBlockStart { .. } => "content_block_start",
            Self::Ping => "ping",
            Self::ContentBlockDelta { .. } => "content_block_delta",
            Self::ContentBlockStop { .. } => "content_block_stop",
            Self::MessageDelta { .. } => "message_delta",
            Self::MessageStop => "message_stop",
            Self::Error { .. } => "error",
        }
    }
}
