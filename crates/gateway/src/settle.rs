//! Settle (step 8 of the request path): what a finished request leaves behind.
//!
//! Once its answer is complete (for a stream: when the last chunk left, the stream failed,
//! or the client went away), a request becomes one [`RequestRecord`] and one [`SpendRecord`]:
//! it is counted in the metrics, logged in one line at info (`switchyard::request`), its span
//! gets the GenAI usage attributes, its spend record goes to the ledger's queue, and what
//! admission reserved for it is replaced by what it really used.
//!
//! Usage is what the provider reported. When it reported none (a server that ignores
//! `stream_options.include_usage`, a stream cut midway), the prompt and the answer's text
//! are counted with a real tokenizer and the record is marked as estimated; for that a
//! stream keeps a copy of its chunks (up to 1 MiB) until it ends or reports usage.
//! Cost is the serving deployment's price (configured, else the built-in catalog's) applied
//! to the usage by kind. The gateway's own time, which the `x-switchyard-overhead-ms` header
//! reports, is the time until the answer (or its first chunk) was ready, less what the
//! providers took and the waits between attempts.
//!
//! Settling is cheap and never waits on I/O: metrics are in-memory counters (a shared read
//! lock finds each series, then an atomic add), the log line goes to a
//! non-blocking writer, spans are exported in batches off the request path, the spend record
//! is queued for the ledger's writer, and shared counters are settled by the meter's
//! background task. A complete answer
//! is settled just before it is encoded, a stream as it ends.

use std::{
    borrow::Cow,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use futures_core::Stream;
use http::HeaderValue;
use switchyard_accounting::{
    admission::AdmissionSlot,
    model::{Identity, SpendRecord, now_ms, to_nanos},
    tokens,
};
use switchyard_router::Attempts;
use switchyard_telemetry::{RequestRecord, Usage, metrics::Metrics};
use switchyard_types::{
    anthropic::{self, MessagesRequest},
    json::Json,
    llm::{DocStream, ErrorClass, LlmError},
    openai::{self, ChatCompletionRequest},
};

use crate::accounting::Accounts;
use tokio::time::Instant;
use tracing::Span;

use crate::respond::status_and_type;

/// What settling needs from the application.
#[derive(Clone)]
pub struct Telemetry {
    /// The metrics, when kept.
    pub metrics: Option<Arc<Metrics>>,
    /// Whether each request is logged in one line.
    pub request_logs: bool,
}

/// One request on its way to being settled.
pub(crate) struct Settle {
    telemetry: Telemetry,
    started: Instant,
    operation: &'static str,
    /// The configured name the client's model resolved to.
    model: Option<Arc<str>>,
    stream: bool,
    attempts: Attempts,
    request_id: Option<HeaderValue>,
    span: Span,
    spend: Spend,
    _in_flight: Option<switchyard_telemetry::metrics::InFlight>,
}

/// Who a request's spend is charged to, and what settling it needs.
pub(crate) struct Spend {
    pub(crate) accounts: Arc<Accounts>,
    pub(crate) identity: Option<Arc<Identity>>,
    /// The end user the client named (`user`).
    pub(crate) end_user: Option<String>,
    /// The model the client named.
    pub(crate) requested: String,
    /// Admission's grant, settled with the real tokens and cost.
    pub(crate) slot: AdmissionSlot,
    /// The prompt, to count when the provider reports no usage.
    pub(crate) prompt: Option<Prompt>,
}

/// A request's prompt, in the client's dialect.
pub(crate) enum Prompt {
    Chat(Arc<ChatCompletionRequest>),
    Messages(Arc<MessagesRequest>),
}

/// A document whose answer text can be counted when its provider reports no usage.
pub(crate) trait Answer {
    /// The text billed as output: content, reasoning and tool-call arguments.
    fn text(raw: &[u8]) -> String;
}

impl Answer for openai::ChatCompletion {
    fn text(raw: &[u8]) -> String {
        answer_text(raw, "message")
    }
}

impl Answer for openai::ChatCompletionChunk {
    fn text(raw: &[u8]) -> String {
        answer_text(raw, "delta")
    }
}

impl Answer for openai::EmbeddingsResponse {
    fn text(_: &[u8]) -> String {
        String::new()
    }
}

impl Answer for anthropic::Message {
    fn text(raw: &[u8]) -> String {
        let Ok(document) = serde_json::from_slice::<serde_json::Value>(raw) else { return String::new() };
        let blocks = document.get("content").and_then(serde_json::Value::as_array);
        blocks.into_iter().flatten().map(block_text).collect()
    }
}

impl Answer for anthropic::StreamEvent {
    fn text(raw: &[u8]) -> String {
        let Ok(document) = serde_json::from_slice::<serde_json::Value>(raw) else { return String::new() };
        let part = document.get("delta").or_else(|| document.get("content_block"));
        part.map(block_text).unwrap_or_default()
    }
}

/// The billed text of an Anthropic content block or delta.
fn block_text(block: &serde_json::Value) -> String {
    let field = |name: &str| block.get(name).and_then(serde_json::Value::as_str).unwrap_or_default();
    match block.get("type").and_then(serde_json::Value::as_str) {
        Some("text" | "text_delta") => field("text").to_owned(),
        Some("thinking" | "thinking_delta") => field("thinking").to_owned(),
        Some("input_json_delta") => field("partial_json").to_owned(),
        Some("tool_use") => {
            block.get("input").map(|i| i.to_string()).filter(|i| i != "{}").unwrap_or_default()
        }
        _ => String::new(),
    }
}

/// How a request ended.
pub(crate) struct Outcome {
    pub(crate) status: u16,
    pub(crate) error: Option<ErrorClass>,
    pub(crate) usage: Option<Usage>,
    /// The answer's text, to count when the provider reported no usage.
    pub(crate) text: Option<String>,
    /// When the answer (or a stream's first chunk) was ready.
    pub(crate) answered: Instant,
}

// === impl Settle ===

impl Settle {
    #[allow(clippy::too_many_arguments, reason = "one constructor for the facts of one request")]
    pub(crate) fn new(
        telemetry: &Telemetry,
        started: Instant,
        operation: &'static str,
        model: Option<Arc<str>>,
        stream: bool,
        attempts: Attempts,
        request_id: Option<HeaderValue>,
        span: Span,
        spend: Spend,
    ) -> Self {
        let in_flight = telemetry.metrics.as_ref().map(|m| m.start());
        Self {
            telemetry: telemetry.clone(),
            started,
            operation,
            model,
            stream,
            attempts,
            request_id,
            span,
            spend,
            _in_flight: in_flight,
        }
    }

    /// The gateway's own time until `answered`: the rest went to providers and waits.
    pub(crate) fn overhead(&self, answered: Instant) -> Duration {
        (answered - self.started)
            .saturating_sub(self.attempts.upstream_elapsed())
            .saturating_sub(self.attempts.waited())
    }

    /// Settles a complete answer or an error now; returns its cost in dollars, when priced.
    pub(crate) fn finish(self, outcome: Outcome) -> Option<f64> {
        let ended = Instant::now();
        self.record(outcome, ended)
    }

    /// Settles a stream when it ends: counts its usage, notes a failure, and records it then.
    pub(crate) fn watch<T: Answer + 'static>(self, chunks: DocStream<T>, answered: Instant) -> DocStream<T> {
        Box::pin(Watched {
            chunks,
            settle: Some(self),
            answered,
            usage: None,
            finished: false,
            error: None,
            model_seen: false,
            kept: Some(Kept::default()),
        })
    }

    fn record(self, outcome: Outcome, ended: Instant) -> Option<f64> {
        let attempts = self.attempts.to_vec();
        let overhead = self.overhead(outcome.answered);
        let ttft = self.stream.then(|| outcome.answered - self.started);
        let served = attempts.last().filter(|a| a.failure.is_none());
        let (usage, estimated) = match (outcome.usage, served, outcome.text.as_deref()) {
            (Some(usage), _, None) => (Some(usage), false),
            // A stream cut after reporting its input: the output so far is counted.
            (Some(mut usage), _, Some(text)) => {
                let counted = tokens::count_completion_text(text);
                let estimated = counted > usage.output;
                usage.output = usage.output.max(counted);
                (Some(usage), estimated)
            }
            (None, Some(_), text) => (self.estimate(text), true),
            (None, None, _) => (None, false),
        };
        let cost = match (served, usage) {
            (Some(served), Some(usage)) => self.cost(&served.model, &served.deployment, &usage),
            _ => None,
        };
        if !self.span.is_disabled() {
            let span = &self.span;
            // Integers as i64: tracing-opentelemetry exports unsigned ones as strings.
            span.record("http.response.status_code", i64::from(outcome.status));
            span.record("switchyard.attempts", i64::try_from(attempts.len()).unwrap_or(i64::MAX));
            if let Some(served) = served {
                span.record("switchyard.deployment", &*served.deployment);
            }
            if let Some(usage) = usage {
                span.record("gen_ai.usage.input_tokens", i64::try_from(usage.input).unwrap_or(i64::MAX));
                span.record("gen_ai.usage.output_tokens", i64::try_from(usage.output).unwrap_or(i64::MAX));
            }
            if let Some(class) = outcome.error {
                span.record("error.type", class.as_str());
                span.record("otel.status_code", "ERROR");
            }
        }
        let record = RequestRecord {
            operation: self.operation,
            model: self.model.clone(),
            stream: self.stream,
            status: outcome.status,
            error: outcome.error,
            attempts,
            usage,
            cost_usd: cost,
            duration: ended - self.started,
            time_to_first_token: ttft,
            overhead: Some(overhead),
        };
        if self.telemetry.request_logs {
            let key = self.spend.identity.as_ref().map(|i| i.key.id.as_str());
            log(&record, self.request_id.as_ref(), key);
        }
        if let Some(metrics) = &self.telemetry.metrics {
            metrics.observe(&record);
        }
        self.charge(&record, estimated);
        cost
    }

    /// Queues the spend record and settles admission's reservation with the real figures.
    fn charge(&self, record: &RequestRecord, estimated: bool) {
        let usage = record.usage.unwrap_or_default();
        let cost = record.cost_usd.unwrap_or(0.0);
        if let Some(grant) = self.spend.slot.take_grant() {
            let tokens = i64::try_from(usage.input.saturating_add(usage.output)).unwrap_or(i64::MAX);
            grant.settle(tokens, to_nanos(cost));
        }
        let identity = self.spend.identity.as_deref();
        let served = record.served();
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        self.spend.accounts.ledger.record(SpendRecord {
            request_id: self.request_id.as_ref().and_then(|v| v.to_str().ok()).unwrap_or("").to_owned(),
            at: now_ms(),
            key_id: identity.map(|i| i.key.id.clone()),
            team_id: identity.and_then(|i| i.key.team_id.clone()),
            user_id: identity.and_then(|i| i.key.user_id.clone()),
            end_user: self.spend.end_user.clone(),
            model: self.model.as_deref().unwrap_or(&self.spend.requested).to_owned(),
            deployment: served.map(|a| a.deployment.to_string()),
            provider: served.map(|a| a.provider.to_string()),
            usage,
            usage_estimated: estimated && record.usage.is_some(),
            cost_usd: cost,
            cache_hit: false,
            cost_saved_usd: 0.0,
            latency_ms: ms(record.duration),
            ttft_ms: record.time_to_first_token.map(ms),
            status: record.status,
            error: record.error.map(|e| e.as_str().to_owned()),
            tags: identity.map(|i| i.key.tags.clone()).unwrap_or_default(),
        });
    }

    /// Dollars, when the serving deployment has a price (its own, or the catalog's).
    fn cost(&self, model: &str, deployment: &str, usage: &Usage) -> Option<f64> {
        let price = self.spend.accounts.prices.price(model, deployment, &self.spend.requested)?;
        Some(price.cost(usage))
    }

    /// Counts the tokens a provider did not report: the chat prompt, and the answer's text.
    fn estimate(&self, text: Option<&str>) -> Option<Usage> {
        let input = match self.spend.prompt.as_ref()? {
            Prompt::Chat(chat) => tokens::count_chat_prompt(chat),
            Prompt::Messages(messages) => tokens::count_messages_prompt(messages),
        };
        let output = text.map_or(0, tokens::count_completion_text);
        Some(Usage { input, output, ..Usage::default() })
    }

    /// Records the answering model on the span, when traces are kept, and for a complete
    /// answer its choices when content capture is on.
    fn note_response(&self, raw: &[u8], complete: bool) {
        if self.span.is_disabled() {
            return;
        }
        #[derive(serde::Deserialize)]
        struct Answered<'a> {
            #[serde(borrow, default)]
            model: Option<Cow<'a, str>>,
            #[serde(borrow, default)]
            choices: Option<&'a serde_json::value::RawValue>,
            /// An Anthropic stream names the model in its `message_start`'s message.
            #[serde(borrow, default)]
            message: Option<Model<'a>>,
        }
        #[derive(serde::Deserialize)]
        struct Model<'a> {
            #[serde(borrow, default)]
            model: Option<Cow<'a, str>>,
        }
        let Ok(answer) = serde_json::from_slice::<Answered<'_>>(raw) else { return };
        if let Some(model) = answer.model.or_else(|| answer.message.and_then(|m| m.model)) {
            self.span.record("gen_ai.response.model", &*model);
        }
        if complete
            && switchyard_telemetry::trace::capture_content()
            && let Some(choices) = answer.choices
        {
            self.span.record("gen_ai.output.messages", choices.get());
        }
    }
}

/// Settles a complete JSON answer: its usage and the model that answered; returns its cost
/// in dollars, when priced.
pub(crate) fn finish_json<T: Answer>(settle: Settle, body: &Json<T>, answered: Instant) -> Option<f64> {
    settle.note_response(body.raw(), true);
    let usage = body.usage();
    let text = if usage.is_none() { Some(T::text(body.raw())) } else { None };
    settle.finish(Outcome { status: 200, error: None, usage, text, answered })
}

/// Settles a request that failed before any answer.
pub(crate) fn finish_error(settle: Settle, error: &LlmError, answered: Instant) {
    let status = status_and_type(error.class).0.as_u16();
    settle.finish(Outcome { status, error: Some(error.class), usage: None, text: None, answered });
}

/// The text of every choice's `message` (a complete answer) or `delta` (a chunk): content,
/// reasoning and tool-call arguments, which are all billed as output.
fn answer_text(raw: &[u8], part: &str) -> String {
    let mut text = String::new();
    let Ok(document) = serde_json::from_slice::<serde_json::Value>(raw) else { return text };
    let choices = document.get("choices").and_then(serde_json::Value::as_array);
    for choice in choices.into_iter().flatten() {
        let Some(message) = choice.get(part) else { continue };
        for field in ["content", "reasoning_content", "refusal"] {
            if let Some(s) = message.get(field).and_then(serde_json::Value::as_str) {
                text.push_str(s);
            }
        }
        let calls = message.get("tool_calls").and_then(serde_json::Value::as_array);
        for call in calls.into_iter().flatten() {
            let function = call.get("function");
            for field in ["name", "arguments"] {
                if let Some(s) = function.and_then(|f| f.get(field)).and_then(serde_json::Value::as_str) {
                    text.push_str(s);
                }
            }
        }
    }
    text
}

/// One line per request, at info.
fn log(record: &RequestRecord, request_id: Option<&HeaderValue>, key: Option<&str>) {
    let served = record.served();
    let usage = record.usage.unwrap_or_default();
    let ms = |d: Duration| (d.as_secs_f64() * 1e6).round() / 1e3;
    tracing::info!(
        target: "switchyard::request",
        request_id = request_id.and_then(|v| v.to_str().ok()).unwrap_or(""),
        key,
        operation = record.operation,
        model = record.model.as_deref(),
        deployment = served.map(|a| &*a.deployment),
        status = record.status,
        error = record.error.map(ErrorClass::as_str),
        attempts = record.attempts.len(),
        input_tokens = usage.input,
        output_tokens = usage.output,
        cost_usd = record.cost_usd,
        duration_ms = ms(record.duration),
        ttft_ms = record.time_to_first_token.map(ms),
        overhead_us = record.overhead.map(|d| d.as_micros() as u64),
        stream = record.stream,
        "request"
    );
}

/// A stream on its way to the client, settled when it ends.
struct Watched<T: Answer> {
    chunks: DocStream<T>,
    settle: Option<Settle>,
    answered: Instant,
    /// The usage reported so far (an Anthropic stream reports its input at the start and its
    /// output at the end).
    usage: Option<Usage>,
    /// Whether the answer finished (a finish reason, or `message_stop`).
    finished: bool,
    error: Option<ErrorClass>,
    model_seen: bool,
    /// The chunks so far, until the stream has both finished and reported its usage.
    kept: Option<Kept>,
}

/// Chunks kept to count a stream's output if it never reports its usage: copied, one after the
/// other, since a chunk's bytes share the whole read buffer they arrived in, and holding that
/// buffer for every chunk of two thousand open streams cost more memory than the streams did.
#[derive(Default)]
struct Kept {
    /// The chunks' JSON, one after the other.
    bytes: Vec<u8>,
    /// Where each chunk ends in `bytes`.
    ends: Vec<usize>,
}

/// The most a stream keeps to count its output: beyond it, the rest is not counted.
const MAX_KEPT_BYTES: usize = 1 << 20;

impl<T: Answer> Watched<T> {
    fn end(&mut self) {
        if let Some(settle) = self.settle.take() {
            // The text is counted when the stream did not report all its usage: none at all,
            // or only the start's (it was cut, or the client left, before the end).
            let complete = self.finished && self.usage.is_some();
            let text = match (complete, self.kept.take()) {
                (false, Some(kept)) => {
                    let starts = std::iter::once(0).chain(kept.ends.iter().copied());
                    let chunks =
                        starts.zip(kept.ends.iter().copied()).map(|(from, to)| &kept.bytes[from..to]);
                    Some(chunks.map(T::text).collect::<String>())
                }
                _ => None,
            };
            // A stream that broke midway still answered 200: the status line had left.
            let outcome =
                Outcome { status: 200, error: self.error, usage: self.usage, text, answered: self.answered };
            settle.finish(outcome);
        }
    }
}

impl<T: Answer> Stream for Watched<T> {
    type Item = Result<Json<T>, LlmError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let item = std::task::ready!(self.chunks.as_mut().poll_next(cx));
        match &item {
            Some(Ok(chunk)) => {
                if let Some(reported) = chunk.usage() {
                    self.usage.get_or_insert_default().merge(&reported);
                }
                self.finished |= chunk.has_finish_reason();
                if self.finished && self.usage.is_some() {
                    self.kept = None;
                } else if let Some(kept) = &mut self.kept
                    && kept.bytes.len() < MAX_KEPT_BYTES
                {
                    kept.bytes.extend_from_slice(chunk.raw());
                    kept.ends.push(kept.bytes.len());
                }
                if !self.model_seen {
                    self.model_seen = true;
                    if let Some(settle) = &self.settle {
                        settle.note_response(chunk.raw(), false);
                    }
                }
            }
            Some(Err(error)) => {
                self.error = Some(error.class);
                self.end();
            }
            None => self.end(),
        }
        Poll::Ready(item)
    }
}

impl<T: Answer> Drop for Watched<T> {
    /// The client went away before the end: settle what was served.
    fn drop(&mut self) {
        self.end();
    }
}
