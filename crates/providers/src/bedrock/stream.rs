//! A ConverseStream answer (`application/vnd.amazon.eventstream`) as OpenAI chat chunks.
//!
//! The body is AWS's binary event stream: frames of a prelude (total length, headers length,
//! the prelude's CRC32), headers (`:message-type` `event` or `exception`, `:event-type` or
//! `:exception-type`, `:content-type`), a JSON payload and the frame's CRC32. Frames are cut
//! from the bytes as they arrive by `aws-smithy-eventstream`'s decoder (which checks both
//! checksums), and each event is translated as soon as its frame is complete:
//!
//! | event | chunk |
//! |---|---|
//! | `messageStart {role}` | `delta: {role: "assistant", content: ""}` |
//! | `contentBlockStart {start: {toolUse: {toolUseId, name}}}` | `tool_calls[{index, id, type, function: {name, arguments: ""}}]` |
//! | `contentBlockDelta {delta: {text}}` | `delta: {content}` |
//! | `contentBlockDelta {delta: {toolUse: {input}}}` | `tool_calls[{index, function: {arguments}}]` |
//! | `contentBlockDelta {delta: {reasoningContent: {text}}}` | `delta: {reasoning_content}` |
//! | `contentBlockStop` | none |
//! | `messageStop {stopReason}` | `delta: {}, finish_reason` |
//! | `metadata {usage, metrics}` | `choices: [], usage` (the last chunk) |
//!
//! A tool call's `index` counts tool calls (0, 1, ...) as OpenAI's does, not Converse's
//! `contentBlockIndex`, which counts text blocks too. Reasoning signatures and events this
//! adapter does not know are skipped. An `exception` frame (`throttlingException`,
//! `modelStreamErrorException`, `validationException`, ...) ends the stream with an
//! [`LlmError`] of its class, as does a stream that breaks off, holds a corrupt frame, or
//! ends before `messageStop`.

use std::{
    collections::VecDeque,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use aws_smithy_eventstream::frame::{DecodedFrame, MessageFrameDecoder};
use aws_smithy_types::event_stream::Message;
use bytes::{Bytes, BytesMut};
use futures_core::Stream;
use pin_project_lite::pin_project;
use serde::Deserialize;
use serde_json::{Value, json};
use switchyard_types::{
    json::Json,
    llm::{ErrorClass, LlmError},
    openai::ChatCompletionChunk,
};

use super::{
    error::class_of,
    response::{TokenUsage, finish_reason, usage},
};

pin_project! {
    /// Chat completion chunks decoded from a ConverseStream event stream; see the module
    /// documentation.
    pub struct EventStreamChunks<S> {
        #[pin]
        bytes: S,
        buffer: BytesMut,
        decoder: MessageFrameDecoder,
        state: Translator,
        ready: VecDeque<Json<ChatCompletionChunk>>,
        // The decoder holds the prelude of a frame whose rest has not arrived.
        partial: bool,
        done: bool,
    }
}

/// What the translation remembers between events.
#[derive(Debug)]
struct Translator {
    label: Arc<str>,
    id: String,
    model: String,
    created: u64,
    opened: bool,
    /// The `contentBlockIndex` of each tool call so far; a call's position is its OpenAI index.
    tool_blocks: Vec<u64>,
    stopped: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BlockStart {
    #[serde(default)]
    content_block_index: u64,
    #[serde(default)]
    start: Option<StartOf>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct StartOf {
    #[serde(default)]
    tool_use: Option<ToolStart>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ToolStart {
    tool_use_id: String,
    name: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BlockDelta {
    #[serde(default)]
    content_block_index: u64,
    #[serde(default)]
    delta: Option<DeltaOf>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DeltaOf {
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    tool_use: Option<ToolDelta>,
    #[serde(default)]
    reasoning_content: Option<ReasoningDelta>,
}

#[derive(Deserialize)]
struct ToolDelta {
    #[serde(default)]
    input: String,
}

#[derive(Deserialize)]
struct ReasoningDelta {
    #[serde(default)]
    text: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct MessageStop {
    #[serde(default)]
    stop_reason: Option<String>,
}

#[derive(Deserialize)]
struct Metadata {
    #[serde(default)]
    usage: Option<TokenUsage>,
}

// === impl EventStreamChunks ===

impl<S> EventStreamChunks<S> {
    /// Decodes `bytes`; chunks carry `id`, `model` and `created`, errors name `label`.
    pub fn new(bytes: S, label: Arc<str>, id: String, model: String, created: u64) -> Self {
        Self {
            bytes,
            buffer: BytesMut::new(),
            decoder: MessageFrameDecoder::new(),
            state: Translator {
                label,
                id,
                model,
                created,
                opened: false,
                tool_blocks: Vec::new(),
                stopped: false,
            },
            ready: VecDeque::new(),
            partial: false,
            done: false,
        }
    }
}

impl<S, E> Stream for EventStreamChunks<S>
where
    S: Stream<Item = Result<Bytes, E>>,
    E: std::fmt::Display,
{
    type Item = Result<Json<ChatCompletionChunk>, LlmError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let mut this = self.project();
        loop {
            if let Some(chunk) = this.ready.pop_front() {
                return Poll::Ready(Some(Ok(chunk)));
            }
            if *this.done {
                return Poll::Ready(None);
            }
            // Every complete frame in the buffer first; then more bytes.
            let buffered = this.buffer.len();
            match this.decoder.decode_frame(&mut *this.buffer) {
                Ok(DecodedFrame::Complete(message)) => {
                    *this.partial = false;
                    if let Err(err) = this.state.translate(&message, this.ready) {
                        *this.done = true;
                        this.ready.clear();
                        return Poll::Ready(Some(Err(err)));
                    }
                    continue;
                }
                Ok(DecodedFrame::Incomplete) => *this.partial |= this.buffer.len() < buffered,
                Err(err) => {
                    *this.done = true;
                    return Poll::Ready(Some(Err(this
                        .state
                        .broken(&format!("sent a corrupt event-stream frame: {err}")))));
                }
            }
            match this.bytes.as_mut().poll_next(cx) {
                Poll::Ready(Some(Ok(bytes))) => this.buffer.extend_from_slice(&bytes),
                Poll::Ready(Some(Err(err))) => {
                    *this.done = true;
                    return Poll::Ready(Some(Err(this
                        .state
                        .broken(&format!("broke off the stream: {err}")))));
                }
                Poll::Ready(None) => {
                    *this.done = true;
                    if !this.state.stopped || *this.partial || !this.buffer.is_empty() {
                        return Poll::Ready(Some(Err(this
                            .state
                            .broken("closed the stream before the answer was complete"))));
                    }
                    return Poll::Ready(None);
                }
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

// === impl Translator ===

impl Translator {
    /// Appends the chunks of one frame to `out`, or says why the stream failed.
    fn translate(
        &mut self,
        message: &Message,
        out: &mut VecDeque<Json<ChatCompletionChunk>>,
    ) -> Result<(), LlmError> {
        let header = |name: &str| {
            message
                .headers()
                .iter()
                .find(|h| h.name().as_str() == name)
                .and_then(|h| h.value().as_string().ok())
                .map(|v| v.as_str())
        };
        let payload = message.payload();
        match header(":message-type").unwrap_or("event") {
            "event" => {}
            "exception" => {
                let kind = header(":exception-type").unwrap_or("exception");
                let text = serde_json::from_slice::<Value>(payload)
                    .ok()
                    .and_then(|v| {
                        v.get("message")
                            .or_else(|| v.get("Message"))
                            .and_then(Value::as_str)
                            .map(str::to_owned)
                    })
                    .unwrap_or_else(|| String::from_utf8_lossy(payload).into_owned());
                return Err(LlmError::new(
                    class_of(None, Some(kind), &text),
                    format!("{} sent {kind} mid-stream: {text}", self.label),
                ));
            }
            // Smithy's generic error frame: the code and message are headers.
            "error" => {
                let code = header(":error-code").unwrap_or("error");
                let text = header(":error-message").unwrap_or("");
                return Err(LlmError::new(
                    class_of(None, Some(code), text),
                    format!("{} sent {code} mid-stream: {text}", self.label),
                ));
            }
            _ => return Ok(()),
        }
        match header(":event-type").unwrap_or("") {
            "messageStart" => self.open(out),
            "contentBlockStart" => {
                self.open(out);
                let start: BlockStart = self.parse::<BlockStart>(payload, "contentBlockStart")?;
                if let Some(tool) = start.start.and_then(|s| s.tool_use) {
                    let index = self.tool_blocks.len();
                    self.tool_blocks.push(start.content_block_index);
                    let call = json!({"index": index, "id": tool.tool_use_id, "type": "function",
                                      "function": {"name": tool.name, "arguments": ""}});
                    out.push_back(self.chunk(json!({"tool_calls": [call]}), None)?);
                }
            }
            "contentBlockDelta" => {
                self.open(out);
                let delta: BlockDelta = self.parse::<BlockDelta>(payload, "contentBlockDelta")?;
                let Some(delta) = delta_of(delta, &self.tool_blocks) else { return Ok(()) };
                out.push_back(self.chunk(delta, None)?);
            }
            "messageStop" => {
                self.open(out);
                let stop: MessageStop = self.parse::<MessageStop>(payload, "messageStop")?;
                let reason = finish_reason(stop.stop_reason.as_deref().unwrap_or("end_turn"));
                self.stopped = true;
                out.push_back(self.chunk(json!({}), Some(reason))?);
            }
            "metadata" => {
                let metadata: Metadata = self.parse::<Metadata>(payload, "metadata")?;
                if let Some(reported) = metadata.usage {
                    let usage = serde_json::to_value(usage(&reported)).unwrap_or(Value::Null);
                    out.push_back(self.document(json!([]), usage)?);
                }
            }
            // contentBlockStop, and events Bedrock may add.
            _ => {}
        }
        Ok(())
    }

    /// The opening chunk, once, whatever event comes first.
    fn open(&mut self, out: &mut VecDeque<Json<ChatCompletionChunk>>) {
        if !self.opened {
            self.opened = true;
            if let Ok(chunk) = self.chunk(json!({"role": "assistant", "content": ""}), None) {
                out.push_back(chunk);
            }
        }
    }

    fn chunk(
        &self,
        delta: Value,
        finish_reason: Option<&str>,
    ) -> Result<Json<ChatCompletionChunk>, LlmError> {
        self.document(
            json!([{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish_reason}]),
            Value::Null,
        )
    }

    fn document(&self, choices: Value, usage: Value) -> Result<Json<ChatCompletionChunk>, LlmError> {
        let mut chunk = json!({"id": self.id, "object": "chat.completion.chunk", "created": self.created,
                               "model": self.model, "choices": choices});
        if !usage.is_null() {
            chunk["usage"] = usage;
        }
        let bytes = serde_json::to_vec(&chunk)
            .map_err(|e| LlmError::new(ErrorClass::Internal, format!("could not encode a chunk: {e}")))?;
        Json::from_bytes(Bytes::from(bytes))
            .map_err(|e| LlmError::new(ErrorClass::Internal, format!("could not encode a chunk: {e}")))
    }

    fn parse<T: serde::de::DeserializeOwned>(&self, payload: &[u8], event: &str) -> Result<T, LlmError> {
        serde_json::from_slice(payload)
            .map_err(|e| self.broken(&format!("sent a {event} event that is not valid JSON: {e}")))
    }

    fn broken(&self, what: &str) -> LlmError {
        LlmError::new(ErrorClass::UpstreamServer, format!("{} {what}", self.label))
    }
}

/// The OpenAI delta of a `contentBlockDelta`, if it has one.
fn delta_of(delta: BlockDelta, tool_blocks: &[u64]) -> Option<Value> {
    let block = delta.content_block_index;
    let delta = delta.delta?;
    if let Some(text) = delta.text {
        return Some(json!({"content": text}));
    }
    if let Some(tool) = delta.tool_use {
        // A tool input for a block that never started is Bedrock's mistake; the arguments
        // still belong to the latest call rather than to none.
        let index = tool_blocks.iter().position(|&b| b == block).or(tool_blocks.len().checked_sub(1))?;
        return Some(json!({"tool_calls": [{"index": index, "function": {"arguments": tool.input}}]}));
    }
    let text = delta.reasoning_content?.text?;
    Some(json!({"reasoning_content": text}))
}
