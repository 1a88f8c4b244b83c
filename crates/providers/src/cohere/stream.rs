//! Cohere v2 chat stream events (server-sent events, each `data:` a JSON object with a
//! `type`) → OpenAI chat completion chunks, decoded as the bytes arrive.
//!
//! | Cohere event | OpenAI chunk |
//! |---|---|
//! | `message-start` | `delta: {"role":"assistant","content":""}` |
//! | `content-delta` (`delta.message.content.text`) | `delta: {"content": text}` |
//! | `content-delta` (`delta.message.content.thinking`) | `delta: {"reasoning_content": text}` |
//! | `tool-call-start` (`delta.message.tool_calls{id,type,function{name,arguments}}`) | `delta.tool_calls[{index, id, type, function{name, arguments}}]` |
//! | `tool-call-delta` (`delta.message.tool_calls.function.arguments`) | `delta.tool_calls[{index, function{arguments}}]` |
//! | `message-end` (`delta.finish_reason`, `delta.usage`) | a chunk with `finish_reason`, then a usage-only chunk (`choices: []`) |
//! | `content-start`, `content-end`, `tool-plan-delta`, `tool-call-end`, `citation-start`, `citation-end`, `debug`, unknown types | nothing |
//!
//! Each chunk is yielded as soon as its event is complete. Tool calls are numbered in the
//! order they start (OpenAI's `index`), whatever `index` Cohere gives the event, since Cohere
//! counts content blocks and tool calls in one sequence. The stream ends with `message-end`;
//! one that ends before it, breaks off, carries an event that is not JSON, or finishes with
//! `ERROR` or `TIMEOUT` yields an [`LlmError`] instead.

use std::{
    borrow::Cow,
    collections::VecDeque,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use bytes::Bytes;
use futures_core::Stream;
use pin_project_lite::pin_project;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use switchyard_types::{
    json::Json,
    llm::{ErrorClass, LlmError},
    openai::ChatCompletionChunk,
    sse::{DONE, SseDecoder, SseEvent},
};

use super::response::{CohereUsage, Finish, OpenAiUsage, finish, to_json, unix_now};

// === Cohere's events ===

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
enum Event<'a> {
    MessageStart {
        #[serde(default, borrow)]
        id: Option<Cow<'a, str>>,
    },
    ContentDelta {
        #[serde(default, borrow)]
        delta: Option<Delta<'a>>,
    },
    ToolCallStart {
        #[serde(default, borrow)]
        delta: Option<Delta<'a>>,
    },
    ToolCallDelta {
        #[serde(default, borrow)]
        delta: Option<Delta<'a>>,
    },
    ToolCallEnd {},
    MessageEnd {
        #[serde(default)]
        delta: Option<EndDelta>,
    },
    /// `content-start`, `content-end`, `tool-plan-delta`, `citation-*`, `debug`, and what
    /// Cohere adds later: nothing for an OpenAI client.
    #[serde(other)]
    Other,
}

#[derive(Debug, Default, Deserialize)]
struct Delta<'a> {
    #[serde(default, borrow)]
    message: Option<DeltaMessage<'a>>,
}

#[derive(Debug, Default, Deserialize)]
struct DeltaMessage<'a> {
    #[serde(default, borrow)]
    content: Option<DeltaContent<'a>>,
    /// One call (`tool-call-start`, `tool-call-delta`); an array is read as its first call.
    #[serde(default)]
    tool_calls: Option<Value>,
}

#[derive(Debug, Default, Deserialize)]
struct DeltaContent<'a> {
    #[serde(default, borrow)]
    text: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    thinking: Option<Cow<'a, str>>,
}

#[derive(Debug, Default, Deserialize)]
struct EndDelta {
    #[serde(default)]
    finish_reason: Option<String>,
    #[serde(default)]
    usage: Option<CohereUsage>,
    #[serde(default)]
    error: Option<String>,
}

/// An event that is not a stream event (no `type`): an error object, `{"message": ...}`.
#[derive(Debug, Deserialize)]
struct Untyped {
    #[serde(default)]
    message: Option<String>,
}

// === OpenAI's chunks ===

#[derive(Serialize)]
struct Chunk<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: &'a [ChunkChoice<'a>],
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<OpenAiUsage>,
}

#[derive(Serialize)]
struct ChunkChoice<'a> {
    index: u32,
    delta: OutDelta<'a>,
    logprobs: (),
    finish_reason: Option<&'a str>,
}

#[derive(Default, Serialize)]
struct OutDelta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    content: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reasoning_content: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_calls: Option<[ToolCallDelta<'a>; 1]>,
}

#[derive(Serialize)]
struct ToolCallDelta<'a> {
    index: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
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

type Item = Result<Json<ChatCompletionChunk>, LlmError>;

pin_project! {
    /// OpenAI chunks decoded from a Cohere v2 chat event stream; see the module documentation.
    pub struct CohereChunks<S> {
        #[pin]
        bytes: S,
        decoder: SseDecoder,
        events: VecDeque<SseEvent>,
        scratch: Vec<SseEvent>,
        out: VecDeque<Item>,
        state: State,
        done: bool,
    }
}

/// What the translation remembers between events.
#[derive(Debug)]
struct State {
    label: Arc<str>,
    model: Arc<str>,
    id: String,
    created: u64,
    /// The role chunk has gone out.
    started: bool,
    /// Tool calls started so far; the current one is `tool_calls - 1`.
    tool_calls: u32,
    /// `message-end` arrived.
    finished: bool,
}

impl<S> CohereChunks<S> {
    /// Decodes `bytes`, naming `model` in chunks and `label` in errors.
    pub fn new(bytes: S, model: Arc<str>, label: Arc<str>) -> Self {
        Self {
            bytes,
            decoder: SseDecoder::new(),
            events: VecDeque::new(),
            scratch: Vec::new(),
            out: VecDeque::new(),
            state: State {
                label,
                model,
                id: String::new(),
                created: unix_now(),
                started: false,
                tool_calls: 0,
                finished: false,
            },
            done: false,
        }
    }
}

impl<S, E> Stream for CohereChunks<S>
where
    S: Stream<Item = Result<Bytes, E>>,
    E: std::error::Error,
{
    type Item = Item;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Item>> {
        let mut this = self.project();
        loop {
            if let Some(item) = this.out.pop_front() {
                if item.is_err() {
                    // Nothing follows an error.
                    *this.done = true;
                    this.out.clear();
                }
                return Poll::Ready(Some(item));
            }
            if *this.done || this.state.finished {
                return Poll::Ready(None);
            }
            if let Some(event) = this.events.pop_front() {
                this.state.translate(&event, this.out);
                continue;
            }
            match this.bytes.as_mut().poll_next(cx) {
                Poll::Ready(Some(Ok(bytes))) => {
                    this.decoder.feed(&bytes, this.scratch);
                    this.events.extend(this.scratch.drain(..));
                }
                Poll::Ready(Some(Err(err))) => {
                    *this.done = true;
                    return Poll::Ready(Some(Err(LlmError::new(
                        ErrorClass::UpstreamServer,
                        format!("the stream from {} broke off: {err}", this.state.label),
                    ))));
                }
                Poll::Ready(None) => {
                    *this.done = true;
                    this.decoder.finish();
                    return Poll::Ready(Some(Err(LlmError::new(
                        ErrorClass::UpstreamServer,
                        format!("{} closed the stream before the answer was complete", this.state.label),
                    ))));
                }
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

// === impl State ===

impl State {
    /// Pushes the chunks (or the error) one Cohere event stands for.
    fn translate(&mut self, event: &SseEvent, out: &mut VecDeque<Item>) {
        let data = event.data.trim();
        if data.is_empty() || data == DONE {
            return;
        }
        let parsed: Event<'_> = match serde_json::from_str(data) {
            Ok(parsed) => parsed,
            Err(err) => {
                out.push_back(Err(self.mid_stream_error(data, &err)));
                return;
            }
        };
        match parsed {
            Event::MessageStart { id } => {
                if let Some(id) = id {
                    self.id = id.into_owned();
                }
                self.start(out);
            }
            Event::ContentDelta { delta } => {
                let content = delta.and_then(|d| d.message).and_then(|m| m.content).unwrap_or_default();
                if let Some(text) = content.text.as_deref().filter(|t| !t.is_empty()) {
                    self.push_delta(out, OutDelta { content: Some(text), ..OutDelta::default() });
                }
                if let Some(thinking) = content.thinking.as_deref().filter(|t| !t.is_empty()) {
                    self.push_delta(
                        out,
                        OutDelta { reasoning_content: Some(thinking), ..OutDelta::default() },
                    );
                }
            }
            Event::ToolCallStart { delta } => {
                let call = first_call(delta);
                let index = self.tool_calls;
                self.tool_calls += 1;
                let function = call.get("function");
                let delta = ToolCallDelta {
                    index,
                    id: Some(call.get("id").and_then(Value::as_str).unwrap_or_default()),
                    kind: Some("function"),
                    function: FunctionDelta {
                        name: Some(
                            function.and_then(|f| f.get("name")).and_then(Value::as_str).unwrap_or_default(),
                        ),
                        // Cohere opens a call with its name and empty arguments, as OpenAI does.
                        arguments: function
                            .and_then(|f| f.get("arguments"))
                            .and_then(Value::as_str)
                            .unwrap_or_default(),
                    },
                };
                self.push_delta(out, OutDelta { tool_calls: Some([delta]), ..OutDelta::default() });
            }
            Event::ToolCallDelta { delta } => {
                let call = first_call(delta);
                let fragment =
                    call.pointer("/function/arguments").and_then(Value::as_str).unwrap_or_default();
                if !fragment.is_empty() {
                    let delta = ToolCallDelta {
                        index: self.tool_calls.saturating_sub(1),
                        id: None,
                        kind: None,
                        function: FunctionDelta { name: None, arguments: fragment },
                    };
                    self.push_delta(out, OutDelta { tool_calls: Some([delta]), ..OutDelta::default() });
                }
            }
            Event::MessageEnd { delta } => self.end(delta.unwrap_or_default(), out),
            Event::ToolCallEnd {} | Event::Other => {}
        }
    }

    /// The role chunk, once, before anything else.
    fn start(&mut self, out: &mut VecDeque<Item>) {
        if !self.started {
            self.started = true;
            let delta = OutDelta { role: Some("assistant"), content: Some(""), ..OutDelta::default() };
            out.push_back(
                self.chunk(&[ChunkChoice { index: 0, delta, logprobs: (), finish_reason: None }], None),
            );
        }
    }

    fn push_delta(&mut self, out: &mut VecDeque<Item>, delta: OutDelta<'_>) {
        self.start(out);
        out.push_back(
            self.chunk(&[ChunkChoice { index: 0, delta, logprobs: (), finish_reason: None }], None),
        );
    }

    fn end(&mut self, delta: EndDelta, out: &mut VecDeque<Item>) {
        self.finished = true;
        let reason = match finish(delta.finish_reason.as_deref()) {
            Finish::Reason(reason) => reason,
            Finish::Failed(class, what) => {
                let detail = delta.error.map(|e| format!(": {e}")).unwrap_or_default();
                out.push_back(Err(LlmError::new(class, format!("{} {what}{detail}", self.label))));
                return;
            }
        };
        self.start(out);
        let finish =
            [ChunkChoice { index: 0, delta: OutDelta::default(), logprobs: (), finish_reason: Some(reason) }];
        out.push_back(self.chunk(&finish, None));
        // Always last, and always sent: the gateway bills from it and drops it for a client
        // that did not ask for usage.
        out.push_back(self.chunk(&[], Some(delta.usage.unwrap_or_default().to_openai())));
    }

    fn chunk(&self, choices: &[ChunkChoice<'_>], usage: Option<OpenAiUsage>) -> Item {
        let chunk = Chunk {
            id: &self.id,
            object: "chat.completion.chunk",
            created: self.created,
            model: &self.model,
            choices,
            usage,
        };
        to_json(&chunk, &self.label)
    }

    fn mid_stream_error(&self, data: &str, err: &serde_json::Error) -> LlmError {
        let message = match serde_json::from_str::<Untyped>(data) {
            Ok(Untyped { message: Some(message) }) => {
                format!("{} sent an error mid-stream: {message}", self.label)
            }
            _ => format!("{} sent an event that is not a Cohere v2 stream event: {err}", self.label),
        };
        LlmError::new(ErrorClass::UpstreamServer, message)
    }
}

/// The call a `tool-call-start` or `tool-call-delta` carries.
fn first_call(delta: Option<Delta<'_>>) -> Value {
    match delta.and_then(|d| d.message).and_then(|m| m.tool_calls) {
        Some(Value::Array(mut calls)) if !calls.is_empty() => calls.swap_remove(0),
        Some(call @ Value::Object(_)) => call,
        _ => Value::Null,
    }
}
