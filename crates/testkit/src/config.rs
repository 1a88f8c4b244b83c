//! [`MockConfig`]: how a mock server paces and guards its answers.

use std::time::Duration;

/// How a [`MockServer`](crate::MockServer) answers. Fixed for the server's lifetime; per-request
/// behaviour is scripted with [`Fault`](crate::Fault)s instead.
///
/// Build it with struct update syntax: `MockConfig { ttft: Duration::from_millis(50), ..Default::default() }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MockConfig {
    /// Non-streaming answers (chat completions, embeddings): wait this long before answering.
    pub delay: Duration,
    /// Streaming answers: wait this long before the first chunk. The status line and headers go
    /// out at once, as real providers send them, so a client sees headers first and tokens later.
    pub ttft: Duration,
    /// Streaming answers: wait this long between content chunks.
    pub chunk_delay: Duration,
    /// Number of content chunks in a stream, which is also the number of completion tokens of
    /// every text answer, streamed or not (`max_tokens` lowers it, with `finish_reason: "length"`).
    pub chunks: usize,
    /// Close the TCP connection a moment (10 ms) after a streamed response completes, without
    /// announcing it with `Connection: close`, leaving any request that arrived on it meanwhile
    /// unanswered: llama.cpp's server does this, and a client's pooled connection then goes
    /// stale under it.
    pub close_after_stream: bool,
    /// When set, every request must carry `Authorization: Bearer <key>` or `api-key: <key>`
    /// (Azure's header); others get a 401 in the OpenAI error envelope. Gemini's paths take the
    /// key as `x-goog-api-key` or `?key=`, or a Bearer token the mock issued, and refuse in
    /// Google's envelope. `GET /__stats` and requests that take a [`Fault`](crate::Fault)
    /// (queued or random) are exempt.
    pub api_key: Option<String>,
    /// Keep every request for [`MockServer::requests`](crate::MockServer::requests). On by
    /// default; the benchmark binary turns it off, since cloning headers and parsing the body a
    /// second time would cost the load generator CPU it shares a core with.
    pub record_requests: bool,
}

// === impl MockConfig ===

impl Default for MockConfig {
    fn default() -> Self {
        Self {
            delay: Duration::ZERO,
            ttft: Duration::ZERO,
            chunk_delay: Duration::ZERO,
            chunks: 20,
            close_after_stream: false,
            api_key: None,
            record_requests: true,
        }
    }
}
