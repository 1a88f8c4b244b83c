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
    /// (Azure's header); others get a 401 in the OpenAI error envelope (in Cohere's shape on
    /// Cohere's paths). Anthropic's paths take `x-api-key: <key>` (or the bearer token) and refuse
    /// in Anthropic's envelope. Gemini's paths take the key as `x-goog-api-key` or `?key=`, or a
    /// Bearer token the mock issued, and refuse in Google's envelope. `GET /__stats` and requests
    /// that take a [`Fault`](crate::Fault)
    /// (queued or random) are exempt.
    pub api_key: Option<String>,
    /// When set, every request to a Bedrock path (`.../model/{id}/converse[-stream]`) must be
    /// SigV4-signed with these credentials; others get a 403 in Bedrock's shape. Requests that
    /// take a [`Fault`](crate::Fault) are exempt, as with `api_key`.
    pub aws: Option<AwsKeys>,
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
            aws: None,
            record_requests: true,
        }
    }
}

/// The AWS credentials a mock expects Bedrock requests to be signed with
/// ([`MockConfig::aws`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsKeys {
    /// The access key id the signature's credential scope must name.
    pub access_key_id: String,
    /// The secret the signature must be computed with.
    pub secret_access_key: String,
    /// When set, the request's `x-amz-security-token` must be this session token.
    pub session_token: Option<String>,
}
