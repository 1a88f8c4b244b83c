//! [`Stats`]: what a mock server has seen, counted with atomics on the request path.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::Fault;

/// A snapshot of a mock server's counters, from [`MockServer::stats`](crate::MockServer::stats)
/// or, as JSON, from `GET /__stats`. Counters only grow; [`MockServer::clear`](crate::MockServer::clear)
/// does not reset them.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Stats {
    /// Requests received, whatever their route or outcome (`GET /__stats` and OTLP exports
    /// excepted: see [`otlp_exports`](Stats::otlp_exports)).
    pub requests: u64,
    /// Chat completion requests that reached the chat handler (Bedrock's Converse handler
    /// too), streamed or not, invalid bodies included. Requests answered by a fault (but `ResetMidStream`, which cuts the handler's
    /// answer) or rejected for their key are not counted.
    pub chat_completions: u64,
    /// Streamed chat responses started.
    pub streams: u64,
    /// Streams whose last event (`data: [DONE]`; Anthropic's `message_stop`, or the `error` event
    /// of [`Fault::ErrorMidStream`](crate::Fault::ErrorMidStream)) was handed to the connection.
    pub streams_completed: u64,
    /// Streams whose body was dropped before the last event was sent: the client went away (or
    /// the server shut down). A stream cut by [`Fault::ResetMidStream`](crate::Fault::ResetMidStream)
    /// counts as neither completed nor cancelled.
    pub streams_cancelled: u64,
    /// Embeddings requests answered by the embeddings handler.
    pub embeddings: u64,
    /// TCP connections accepted.
    pub connections: u64,
    /// Requests answered by a [`Fault`](crate::Fault), queued or drawn at random.
    pub faults: u64,
    /// Of [`faults`](Stats::faults), those drawn at random ([`RandomFaults`](crate::RandomFaults)).
    pub random_faults: u64,
    /// [`faults`](Stats::faults) by kind.
    pub faults_by_kind: FaultCounts,
    /// Sum of `completion_tokens` of the usage the server reported (non-streamed answers, and
    /// streams whose usage chunk was sent because the client asked for `include_usage`).
    pub completion_tokens: u64,
    /// Sum of `prompt_tokens` of the usage the server reported, embeddings included.
    pub prompt_tokens: u64,
    /// OTLP trace exports received (`POST .../v1/traces`), answered 200 and discarded. The mock
    /// doubles as a trace sink for a gateway configured to export spans; exports arrive on the
    /// exporter's own schedule, so they are kept out of [`requests`](Stats::requests), are not
    /// recorded, faulted or authenticated, and cannot take a fault queued for a chat request.
    pub otlp_exports: u64,
    /// Body bytes of those exports (as sent, compressed or not).
    pub otlp_bytes: u64,
}

/// How many requests took each kind of [`Fault`](crate::Fault), queued or random; part of [`Stats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct FaultCounts {
    /// [`Fault::Status`](crate::Fault::Status).
    pub status: u64,
    /// [`Fault::RateLimited`](crate::Fault::RateLimited).
    pub rate_limited: u64,
    /// [`Fault::Hang`](crate::Fault::Hang).
    pub hang: u64,
    /// [`Fault::ResetBeforeHeaders`](crate::Fault::ResetBeforeHeaders).
    pub reset_before_headers: u64,
    /// [`Fault::ResetMidStream`](crate::Fault::ResetMidStream).
    pub reset_mid_stream: u64,
    /// [`Fault::Overloaded`](crate::Fault::Overloaded).
    pub overloaded: u64,
    /// [`Fault::ErrorMidStream`](crate::Fault::ErrorMidStream).
    pub error_mid_stream: u64,
}

/// The live counters behind [`Stats`].
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) requests: AtomicU64,
    pub(crate) chat_completions: AtomicU64,
    pub(crate) streams: AtomicU64,
    pub(crate) streams_completed: AtomicU64,
    pub(crate) streams_cancelled: AtomicU64,
    pub(crate) embeddings: AtomicU64,
    pub(crate) connections: AtomicU64,
    faults: AtomicU64,
    random_faults: AtomicU64,
    faults_by_kind: FaultCounters,
    pub(crate) completion_tokens: AtomicU64,
    pub(crate) prompt_tokens: AtomicU64,
    pub(crate) otlp_exports: AtomicU64,
    pub(crate) otlp_bytes: AtomicU64,
}

/// Adds one to a counter. Relaxed: counters order nothing, and a snapshot is allowed to see
/// them move independently.
pub(crate) fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// The live counters behind [`FaultCounts`].
#[derive(Debug, Default)]
struct FaultCounters {
    status: AtomicU64,
    rate_limited: AtomicU64,
    hang: AtomicU64,
    reset_before_headers: AtomicU64,
    reset_mid_stream: AtomicU64,
    overloaded: AtomicU64,
    error_mid_stream: AtomicU64,
}

// === impl Counters ===

impl Counters {
    /// Counts a request answered by `fault`.
    pub(crate) fn add_fault(&self, fault: &Fault, random: bool) {
        bump(&self.faults);
        let by_kind = &self.faults_by_kind;
        bump(match fault {
            Fault::Status { .. } => &by_kind.status,
            Fault::RateLimited { .. } => &by_kind.rate_limited,
            Fault::Hang => &by_kind.hang,
            Fault::ResetBeforeHeaders => &by_kind.reset_before_headers,
            Fault::ResetMidStream { .. } => &by_kind.reset_mid_stream,
            Fault::Overloaded => &by_kind.overloaded,
            Fault::ErrorMidStream { .. } => &by_kind.error_mid_stream,
        });
        if random {
            bump(&self.random_faults);
        }
    }

    /// Adds the usage of one answer.
    pub(crate) fn add_usage(&self, prompt_tokens: u64, completion_tokens: u64) {
        self.prompt_tokens.fetch_add(prompt_tokens, Ordering::Relaxed);
        self.completion_tokens.fetch_add(completion_tokens, Ordering::Relaxed);
    }

    /// Counts one OTLP export of `bytes` body bytes.
    pub(crate) fn add_otlp_export(&self, bytes: usize) {
        bump(&self.otlp_exports);
        self.otlp_bytes.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> Stats {
        let read = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        Stats {
            requests: read(&self.requests),
            chat_completions: read(&self.chat_completions),
            streams: read(&self.streams),
            streams_completed: read(&self.streams_completed),
            streams_cancelled: read(&self.streams_cancelled),
            embeddings: read(&self.embeddings),
            connections: read(&self.connections),
            faults: read(&self.faults),
            random_faults: read(&self.random_faults),
            faults_by_kind: FaultCounts {
                status: read(&self.faults_by_kind.status),
                rate_limited: read(&self.faults_by_kind.rate_limited),
                hang: read(&self.faults_by_kind.hang),
                reset_before_headers: read(&self.faults_by_kind.reset_before_headers),
                reset_mid_stream: read(&self.faults_by_kind.reset_mid_stream),
                overloaded: read(&self.faults_by_kind.overloaded),
                error_mid_stream: read(&self.faults_by_kind.error_mid_stream),
            },
            completion_tokens: read(&self.completion_tokens),
            prompt_tokens: read(&self.prompt_tokens),
            otlp_exports: read(&self.otlp_exports),
            otlp_bytes: read(&self.otlp_bytes),
        }
    }
}
