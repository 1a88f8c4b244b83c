//! [`MessageEvents`]: a streamed Messages answer, written event by event as the stream engine
//! asks for them, in Anthropic's order:
//!
//! `message_start` (empty content, the input usage, `output_tokens: 1`), then per content block
//! `content_block_start`, its deltas and `content_block_stop` (with one `ping` after the first
//! block opens), then `message_delta` (stop reason and cumulative usage) and `message_stop`.
//! A thinking block streams `thinking_delta`s then one `signature_delta`; a text block
//! `text_delta`s, one per token; a tool call `input_json_delta`s whose `partial_json` fragments
//! concatenate to the input of the whole answer.
//!
//! `message_start` waits the time to first token, the first delta follows at once, and every
//! later delta waits the inter-chunk delay. A scripted
//! [`Fault::ErrorMidStream`](crate::Fault::ErrorMidStream) replaces the event it names with an
//! `error` event (`overloaded_error`) that ends the stream.

use bytes::BytesMut;
use switchyard_types::sse;

use super::request::{Answer, InputUsage, Plan};
use super::response::{
    ContentBlock, Delta, DeltaUsage, ErrorBody, Event, Message, StopDelta, ToolInput, Usage,
};
use super::{OVERLOADED, THINKING_PIECES, THINKING_SIGNATURE, TOOL_INPUT_FRAGMENTS};
use crate::body::{EventSource, Pace, Written};
use crate::stats::Counters;

/// The events of one streamed answer.
#[derive(Debug)]
pub(super) struct MessageEvents {
    id: String,
    tool_id: String,
    model: String,
    plan: Plan,
    input: InputUsage,
    output_tokens: u64,
    /// The text pieces of a text answer.
    text_pieces: usize,
    /// How far into the text the text deltas have got, in bytes.
    text_at: usize,
    phase: Phase,
    /// Events written so far.
    written: usize,
    deltas_written: usize,
    /// Write an `error` event in place of the event with this index.
    error_at: Option<usize>,
}

/// The next event to write.
#[derive(Debug, Clone, Copy)]
enum Phase {
    MessageStart,
    BlockStart(usize),
    Ping,
    Delta { block: usize, step: usize },
    BlockStop(usize),
    MessageDelta,
    MessageStop,
    End,
}

/// What a content block of the answer is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Thinking,
    Answer,
}

// === impl MessageEvents ===

impl MessageEvents {
    pub(super) fn new(
        id: String,
        tool_id: String,
        model: String,
        plan: Plan,
        input: InputUsage,
        error_at: Option<usize>,
    ) -> Self {
        let output_tokens = plan.output_tokens();
        let text_pieces = match &plan.answer {
            Answer::Text { text, .. } => text.split_inclusive(' ').count(),
            Answer::ToolUse { .. } => 0,
        };
        Self {
            id,
            tool_id,
            model,
            plan,
            input,
            output_tokens,
            text_pieces,
            text_at: 0,
            phase: Phase::MessageStart,
            written: 0,
            deltas_written: 0,
            error_at,
        }
    }

    fn blocks(&self) -> usize {
        usize::from(self.plan.thinking) + 1
    }

    fn kind(&self, index: usize) -> Kind {
        if self.plan.thinking && index == 0 { Kind::Thinking } else { Kind::Answer }
    }

    /// How many deltas block `index` streams.
    fn deltas(&self, index: usize) -> usize {
        match (self.kind(index), &self.plan.answer) {
            // The thinking, then its signature.
            (Kind::Thinking, _) => THINKING_PIECES.len() + 1,
            (Kind::Answer, Answer::Text { .. }) => self.text_pieces,
            (Kind::Answer, Answer::ToolUse { .. }) => TOOL_INPUT_FRAGMENTS.len(),
        }
    }

    /// The phase after block `index` opened: its first delta, or its end when it has none.
    fn first_delta(&self, index: usize) -> Phase {
        if self.deltas(index) == 0 { Phase::BlockStop(index) } else { Phase::Delta { block: index, step: 0 } }
    }

    fn opening(&self, index: usize) -> ContentBlock<'_> {
        match (self.kind(index), &self.plan.answer) {
            (Kind::Thinking, _) => ContentBlock::Thinking { thinking: "", signature: "" },
            (Kind::Answer, Answer::Text { .. }) => ContentBlock::Text { text: "" },
            (Kind::Answer, Answer::ToolUse { name }) => {
                ContentBlock::ToolUse { id: &self.tool_id, name, input: ToolInput::Empty {} }
            }
        }
    }

    /// The delta `step` of block `index`; a text delta takes the next piece of the text.
    fn delta(&mut self, index: usize, step: usize) -> Delta<'_> {
        match (self.kind(index), &self.plan.answer) {
            (Kind::Thinking, _) => match THINKING_PIECES.get(step).copied() {
                Some(thinking) => Delta::Thinking { thinking },
                None => Delta::Signature { signature: THINKING_SIGNATURE },
            },
            (Kind::Answer, Answer::Text { text, .. }) => {
                // Pieces are `tok{i} `; the last may be cut short by a stop sequence.
                let start = self.text_at.min(text.len());
                let rest = &text[start..];
                let len = rest.find(' ').map_or(rest.len(), |at| at + 1);
                self.text_at = start + len;
                Delta::Text { text: &rest[..len] }
            }
            (Kind::Answer, Answer::ToolUse { .. }) => {
                Delta::InputJson { partial_json: TOOL_INPUT_FRAGMENTS.get(step).copied().unwrap_or("") }
            }
        }
    }

    fn stop(&self) -> StopDelta<'_> {
        match &self.plan.answer {
            Answer::Text { stop_reason, stop_sequence, .. } => {
                StopDelta { stop_reason, stop_sequence: stop_sequence.as_deref() }
            }
            Answer::ToolUse { .. } => StopDelta { stop_reason: "tool_use", stop_sequence: None },
        }
    }
}

impl EventSource for MessageEvents {
    fn write_next(&mut self, buf: &mut BytesMut, counters: &Counters) -> Option<Written> {
        if matches!(self.phase, Phase::End) {
            return None;
        }
        if self.error_at == Some(self.written) {
            self.phase = Phase::End;
            write(buf, &Event::Error { error: ErrorBody { kind: OVERLOADED.0, message: OVERLOADED.1 } });
            return Some(Written { pace: Pace::Now, last: true });
        }
        self.written += 1;
        let mut pace = Pace::Now;
        let mut last = false;
        match self.phase {
            Phase::MessageStart => {
                pace = Pace::Ttft;
                // The API counts one output token at the start.
                let message = Message::new(&self.id, &self.model, Usage::new(self.input, 1));
                write(buf, &Event::MessageStart { message });
                self.phase = Phase::BlockStart(0);
            }
            Phase::BlockStart(index) => {
                write(buf, &Event::ContentBlockStart { index, content_block: self.opening(index) });
                self.phase = if index == 0 { Phase::Ping } else { self.first_delta(index) };
            }
            Phase::Ping => {
                write(buf, &Event::Ping);
                self.phase = self.first_delta(0);
            }
            Phase::Delta { block, step } => {
                if self.deltas_written > 0 {
                    pace = Pace::Chunk;
                }
                self.deltas_written += 1;
                let next = if step + 1 < self.deltas(block) {
                    Phase::Delta { block, step: step + 1 }
                } else {
                    Phase::BlockStop(block)
                };
                let delta = self.delta(block, step);
                write(buf, &Event::ContentBlockDelta { index: block, delta });
                self.phase = next;
            }
            Phase::BlockStop(index) => {
                write(buf, &Event::ContentBlockStop { index });
                self.phase = if index + 1 < self.blocks() {
                    Phase::BlockStart(index + 1)
                } else {
                    Phase::MessageDelta
                };
            }
            Phase::MessageDelta => {
                let usage = DeltaUsage::new(self.input, self.output_tokens);
                write(buf, &Event::MessageDelta { delta: self.stop(), usage });
                counters.add_usage(self.input.total(), self.output_tokens);
                self.phase = Phase::MessageStop;
            }
            Phase::MessageStop => {
                write(buf, &Event::MessageStop);
                self.phase = Phase::End;
                last = true;
            }
            Phase::End => return None,
        }
        Some(Written { pace, last })
    }
}

/// Appends `event` as `event: <type>` and `data: <json>`.
fn write(buf: &mut BytesMut, event: &Event<'_>) {
    // These events hold strings and numbers only; serialising them cannot fail.
    if let Ok(json) = serde_json::to_string(event) {
        sse::encode(buf, Some(event.name()), &json);
    }
}
