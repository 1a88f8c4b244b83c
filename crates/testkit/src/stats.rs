//! [`Stats`]: what a mock server has seen, counted with atomics on the request path.

use std::sync::atomic::{AtomicU64, Ordering};

/// A snapshot of a mock server's counters, from [`MockServer::stats`](crate::MockServer::stats)
/// or, as JSON, from `GET /__stats`. Counters only grow; [`MockServer::clear`](crate::MockServer::clear)
/// does not reset them.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Stats {
    /// Requests received, whatever their route or outcome (`GET /__stats` excepted).
    pub requests: u64,
    /// Chat completion requests that reached the chat handler, streamed or not, invalid bodies
    /// included. Requests answered by a fault (but `ResetMidStream`, which cuts the handler's
    /// answer) or rejected for their key are not counted.
    pub chat_completions: u64,
    /// Streamed chat responses started.
    pub streams: u64,
    /// Streams whose last event (`data: [DONE]`) was handed to the connection.
    pub streams_completed: u64,
    /// Streams whose body was dropped before the last event was sent: the client went away (or
    /// the server shut down). A stream cut by [`Fault::ResetMidStream`](crate::Fault::ResetMidStream)
    /// counts as neither completed nor cancelled.
    pub streams_cancelled: u64,
    /// Embeddings requests answered by the embeddings handler.
    pub embeddings: u64,
    /// TCP connections accepted.
    pub connections: u64,
    /// Requests that took a queued [`Fault`](crate::Fault).
    pub faults: u64,
    /// Sum of `completion_tokens` of the usage the server reported (non-streamed answers, and
    /// streams whose usage chunk was sent because the client asked for `include_usage`).
    pub completion_tokens: u64,
    /// Sum of `prompt_tokens` of the usage the server reported, embeddings included.
    pub prompt_tokens: u64,
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
    pub(crate) faults: AtomicU64,
    pub(crate) completion_tokens: AtomicU64,
    pub(crate) prompt_tokens: AtomicU64,
}

/// Adds one to a counter. Relaxed: counters order nothing, and a snapshot is allowed to see
/// them move independently.
pub(crate) fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

// === impl Counters ===

impl Counters {
    /// Adds the usage of one answer.
    pub(crate) fn add_usage(&self, prompt_tokens: u64, completion_tokens: u64) {
        self.prompt_tokens.fetch_add(prompt_tokens, Ordering::Relaxed);
        self.completion_tokens.fetch_add(completion_tokens, Ordering::Relaxed);
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
            completion_tokens: read(&self.completion_tokens),
            prompt_tokens: read(&self.prompt_tokens),
        }
    }
}
