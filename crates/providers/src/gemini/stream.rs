//! `streamGenerateContent?alt=sse` → OpenAI chat completion chunks, decoded as bytes arrive.
//!
//! Each server-sent event is a whole `GenerateContentResponse` holding the new parts only; its
//! `usageMetadata` holds running totals, so the last one seen is the request's usage. One event
//! becomes, per candidate: on first sight the opening chunk (`role: assistant`, empty content),
//! then one chunk with the event's text (`content`), thought summaries (`reasoning_content`) and
//! function calls (whole tool-call deltas: Gemini sends a call complete, never in fragments),
//! then, with `finishReason`, a finish chunk. When the bytes end the usage-only chunk follows
//! (`choices: []`), which the gateway bills from.
//!
//! Failures: a blocked prompt, or a candidate stopped by the safety filters before any content,
//! is an [`ErrorClass::ContentPolicy`] error; an `{"error": ...}` event is classified like an
//! error answer; a stream that breaks off or ends before every candidate finished is an
//! [`ErrorClass::UpstreamServer`] error.

use std::{
    collections::VecDeque,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use bytes::Bytes;
use futures_core::Stream;
use pin_project_lite::pin_project;
use serde_json::{Map, Value, json};
use switchyard_types::{
    json::Json,
    llm::{ErrorClass, LlmError},
    openai::ChatCompletionChunk,
    sse::{SseDecoder, SseEvent},
};

use super::{
    error,
    response::{self, GenerateContentResponse, UsageMetadata},
};

type Item = Result<Json<ChatCompletionChunk>, LlmError>;

pin_project! {
    /// OpenAI chunks decoded from a Gemini server-sent-event byte stream; see the module doc.
    pub struct GeminiChunks<S> {
        #[pin]
        bytes: S,
        decoder: SseDecoder,
        scratch: Vec<SseEvent>,
        out: VecDeque<Item>,
        state: State,
        done: bool,
    }
}

/// What the stream remembers between events.
#[derive(Debug)]
struct State {
    label: Arc<str>,
    id: Option<String>,
    created: u64,
    model: String,
    candidates: Vec<CandidateState>,
    usage: Option<UsageMetadata>,
}

#[derive(Debug, Default, Clone, Copy)]
struct CandidateState {
    opened: bool,
    sent_content: bool,
    tool_calls: usize,
    finished: bool,
}

// === impl GeminiChunks ===

impl<S> GeminiChunks<S> {
    /// Decodes `bytes`, naming `label` in errors and `model` in chunks until Gemini names its
    /// model version.
    pub fn new(bytes: S, label: Arc<str>, model: &str) -> Self {
        Self {
            bytes,
            decoder: SseDecoder::new(),
            scratch: Vec::new(),
            out: VecDeque::new(),
            state: State {
                label,
                id: None,
                created: super::unix_now(),
                model: model.to_owned(),
                candidates: Vec::new(),
                usage: None,
            },
            done: false,
        }
    }
}

impl<S, E> Stream for GeminiChunks<S>
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
                    // Nothing after an error: the answer is over.
                    *this.done = true;
                    this.out.clear();
                }
                return Poll::Ready(Some(item));
            }
            if *this.done {
                return Poll::Ready(None);
            }
            match this.bytes.as_mut().poll_next(cx) {
                Poll::Ready(Some(Ok(bytes))) => {
                    this.decoder.feed(&bytes, this.scratch);
                    for event in this.scratch.drain(..) {
                        this.state.on_event(&event.data, this.out);
                    }
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
                    let end = this.state.on_end();
                    this.out.extend(end);
                    if this.out.is_empty() {
                        return Poll::Ready(None);
                    }
                }
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

// === impl State ===

impl State {
    fn on_event(&mut self, data: &str, out: &mut VecDeque<Item>) {
        if data.trim().is_empty() {
            return;
        }
        let value: Value = match serde_json::from_str(data) {
            Ok(value) => value,
            Err(e) => {
                out.push_back(Err(self.unreadable(&e)));
                return;
            }
        };
        if value.get("error").is_some() {
            let error = error::from_event(&self.label, data.as_bytes()).unwrap_or_else(|| {
                LlmError::new(ErrorClass::UpstreamServer, format!("{} sent an error mid-stream", self.label))
            });
            out.push_back(Err(error));
            return;
        }
        let event: GenerateContentResponse = match serde_json::from_value(value) {
            Ok(event) => event,
            Err(e) => {
                out.push_back(Err(self.unreadable(&e)));
                return;
            }
        };
        if self.id.is_none() {
            self.id = Some(response::completion_id(event.response_id.as_deref()));
        }
        if let Some(version) = &event.model_version {
            version.clone_into(&mut self.model);
        }
        if let Some(usage) = event.usage_metadata {
            self.usage = Some(usage);
        }
        let nothing_sent = self.candidates.iter().all(|c| !c.sent_content);
        if nothing_sent && let Some(error) = response::content_policy_error(&self.label, &event) {
            out.push_back(Err(error));
            return;
        }
        for (position, candidate) in event.candidates.iter().enumerate() {
            let index = candidate.index.map_or(position, |i| i as usize);
            if self.candidates.len() <= index {
                self.candidates.resize(index + 1, CandidateState::default());
            }
            if !self.candidates[index].opened {
                self.candidates[index].opened = true;
                out.push_back(self.chunk(index, json!({"role": "assistant", "content": ""}), None));
            }
            let mut delta = Map::new();
            let mut text = String::new();
            let mut reasoning = String::new();
            let mut calls = Vec::new();
            for part in candidate.content.iter().flat_map(|c| &c.parts) {
                if let Some(call) = &part.function_call {
                    let at = self.candidates[index].tool_calls + calls.len();
                    calls.push(response::tool_call(call, part.thought_signature.as_deref(), Some(at)));
                } else if let Some(piece) = &part.text {
                    if part.thought { reasoning.push_str(piece) } else { text.push_str(piece) }
                }
            }
            if !text.is_empty() {
                delta.insert("content".to_owned(), text.into());
            }
            if !reasoning.is_empty() {
                delta.insert("reasoning_content".to_owned(), reasoning.into());
            }
            if !calls.is_empty() {
                self.candidates[index].tool_calls += calls.len();
                delta.insert("tool_calls".to_owned(), Value::Array(calls));
            }
            if !delta.is_empty() {
                self.candidates[index].sent_content = true;
                out.push_back(self.chunk(index, Value::Object(delta), None));
            }
            if let Some(reason) = &candidate.finish_reason {
                let state = &mut self.candidates[index];
                state.finished = true;
                let finish = response::finish_reason(reason, state.tool_calls > 0);
                out.push_back(self.chunk(index, json!({}), Some(finish)));
            }
        }
    }

    /// What follows the last byte: the usage chunk, or the error of an unfinished answer.
    fn on_end(&mut self) -> Option<Item> {
        let finished = !self.candidates.is_empty() && self.candidates.iter().all(|c| c.finished || !c.opened);
        if !finished {
            return Some(Err(LlmError::new(
                ErrorClass::UpstreamServer,
                format!("{} closed the stream before the answer was complete", self.label),
            )));
        }
        let usage = self.usage?.to_openai();
        Some(self.document(Vec::new(), Some(usage)))
    }

    fn chunk(&self, index: usize, delta: Value, finish_reason: Option<&str>) -> Item {
        let choice =
            json!({"index": index, "delta": delta, "logprobs": null, "finish_reason": finish_reason});
        self.document(vec![choice], None)
    }

    fn document(&self, choices: Vec<Value>, usage: Option<Value>) -> Item {
        let mut chunk = Map::new();
        chunk.insert("id".to_owned(), self.id.clone().unwrap_or_default().into());
        chunk.insert("object".to_owned(), "chat.completion.chunk".into());
        chunk.insert("created".to_owned(), self.created.into());
        chunk.insert("model".to_owned(), self.model.clone().into());
        chunk.insert("choices".to_owned(), Value::Array(choices));
        if let Some(usage) = usage {
            chunk.insert("usage".to_owned(), usage);
        }
        let bytes = serde_json::to_vec(&chunk)
            .map_err(|e| LlmError::new(ErrorClass::Internal, format!("could not serialise a chunk: {e}")))?;
        Json::from_bytes(Bytes::from(bytes))
            .map_err(|e| LlmError::new(ErrorClass::Internal, format!("could not read back a chunk: {e}")))
    }

    fn unreadable(&self, e: &serde_json::Error) -> LlmError {
        LlmError::new(
            ErrorClass::UpstreamServer,
            format!("{} sent an event that is not a Gemini response: {e}", self.label),
        )
    }
}
