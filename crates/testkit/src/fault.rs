//! [`Fault`]: scripted misbehaviour for one request, and the FIFO queue that hands faults out.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};

/// What the mock does to one request instead of answering it normally.
///
/// Faults are queued with [`MockServer::push_fault`](crate::MockServer::push_fault); each request
/// (except `GET /__stats`) takes the first one queued, before authentication and routing: a fault
/// replaces whatever the provider would have answered.
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// Answer with this status and this JSON body. A status outside 100..=999 becomes 500.
    Status {
        /// The HTTP status code.
        status: u16,
        /// The JSON body, sent as is.
        body: serde_json::Value,
    },
    /// Answer 429 with `Retry-After` (and OpenAI's `x-ratelimit-*` headers) and an OpenAI
    /// `rate_limit_error` envelope.
    RateLimited {
        /// The value of `Retry-After`, in seconds.
        retry_after_secs: u64,
    },
    /// Read the request and never answer. The request ends when the client goes away or the
    /// server shuts down.
    Hang,
    /// Read the request, then drop the connection abruptly: with `SO_LINGER` 0, so the client
    /// sees a TCP reset rather than an orderly close.
    ResetBeforeHeaders,
    /// Send the status line, the headers and `after_chunks` server-sent events (the role chunk
    /// counts as one), then reset the connection as [`Fault::ResetBeforeHeaders`] does. On a
    /// request that is not streamed, `after_chunks` is ignored: the headers (with the full
    /// `Content-Length`) and the first half of the body are sent, then the connection is reset.
    /// Best used over HTTP/1.1: over HTTP/2 the reset takes down every stream of the connection.
    ResetMidStream {
        /// How many events to send before the reset.
        after_chunks: usize,
    },
}

/// The queue of faults waiting for requests.
#[derive(Debug, Default)]
pub(crate) struct FaultQueue {
    queue: Mutex<VecDeque<Fault>>,
    /// Mirrors `queue.len()`, so that the common case (nothing scripted) takes no lock.
    len: AtomicUsize,
}

// === impl FaultQueue ===

impl FaultQueue {
    pub(crate) fn push(&self, fault: Fault) {
        let mut queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
        queue.push_back(fault);
        self.len.store(queue.len(), Ordering::Release);
    }

    /// Takes the first queued fault, if any.
    pub(crate) fn pop(&self) -> Option<Fault> {
        if self.len.load(Ordering::Acquire) == 0 {
            return None;
        }
        let mut queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
        let fault = queue.pop_front();
        self.len.store(queue.len(), Ordering::Release);
        fault
    }
}
