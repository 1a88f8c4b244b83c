//! Response bodies: whole, truncated by a fault, or a paced server-sent-event stream.
//!
//! The stream engine here is dialect-agnostic: a dialect supplies an [`EventSource`] that writes
//! its events in order and says how each is paced, and [`SseStream`] applies the configured time
//! to first token and inter-chunk delay, hands every event to the connection as its own body
//! frame the moment it is due (so clients can observe chunk timing), counts completed and
//! cancelled streams, and carries out the connection-level behaviours: reset mid-stream
//! ([`Fault::ResetMidStream`](crate::Fault::ResetMidStream)) and close after the stream
//! ([`MockConfig::close_after_stream`](crate::MockConfig::close_after_stream)).

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

use crate::server::ConnSignal;
use crate::stats::{Counters, bump};

/// The body of every response the mock sends.
#[derive(Debug)]
pub(crate) enum MockBody {
    /// A whole body, sent as one frame (`None` once sent).
    Full(Option<Bytes>),
    /// A paced event stream.
    Stream(Box<SseStream>),
    /// The first part of a body announced whole, then a connection reset.
    Truncated(Truncated),
}

#[derive(Debug)]
pub(crate) struct Truncated {
    /// The length announced in `Content-Length`.
    full_len: u64,
    /// The part still to send.
    head: Option<Bytes>,
    conn: Arc<ConnSignal>,
}

/// How long to wait before an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pace {
    /// Wait the time to first token.
    Ttft,
    /// Wait the inter-chunk delay.
    Chunk,
    /// Send right after the previous event.
    Now,
}

/// One event written by an [`EventSource`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Written {
    pub(crate) pace: Pace,
    /// This is the stream's last event: once it is handed over, the stream has completed.
    pub(crate) last: bool,
}

/// The events of one streamed answer, in a dialect's shape.
pub(crate) trait EventSource: Send + std::fmt::Debug + 'static {
    /// Appends the next event, framed, to `buf` and says how it is paced; `None` when every event
    /// has been written. `counters` is for usage the event reports.
    fn write_next(&mut self, buf: &mut BytesMut, counters: &Counters) -> Option<Written>;
}

/// What a stream needs from the server beyond its events.
#[derive(Debug)]
pub(crate) struct StreamHooks {
    pub(crate) counters: Arc<Counters>,
    pub(crate) conn: Arc<ConnSignal>,
    pub(crate) ttft: Duration,
    pub(crate) chunk_delay: Duration,
    pub(crate) close_after_stream: bool,
    /// Reset the connection after this many events.
    pub(crate) reset_after: Option<usize>,
}

/// A paced event stream; see the module documentation.
#[derive(Debug)]
pub(crate) struct SseStream {
    source: Box<dyn EventSource>,
    hooks: StreamHooks,
    buf: BytesMut,
    /// An event written but not yet due, and whether it is the last.
    due: Option<(Bytes, bool)>,
    /// The timer for `due`; allocated at the first delay and reused after that.
    sleep: Option<Pin<Box<Sleep>>>,
    sleeping: bool,
    sent: usize,
    state: StreamState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StreamState {
    Streaming,
    Completed,
    Reset,
}

// === impl MockBody ===

impl MockBody {
    pub(crate) fn full(bytes: impl Into<Bytes>) -> Self {
        Self::Full(Some(bytes.into()))
    }

    pub(crate) fn is_stream(&self) -> bool {
        matches!(self, Self::Stream(_))
    }

    /// Turns a whole body into its first half followed by a connection reset; streams are left as
    /// they are (they are cut by their own hooks).
    pub(crate) fn truncate(self, conn: &Arc<ConnSignal>) -> Self {
        match self {
            Self::Full(Some(bytes)) => Self::Truncated(Truncated {
                full_len: bytes.len() as u64,
                head: Some(bytes.slice(..bytes.len() / 2)),
                conn: Arc::clone(conn),
            }),
            other => other,
        }
    }
}

impl Body for MockBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.get_mut() {
            Self::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Self::Stream(stream) => stream.poll_next(cx).map(|frame| frame.map(|b| Ok(Frame::data(b)))),
            Self::Truncated(truncated) => match truncated.head.take() {
                Some(head) if !head.is_empty() => Poll::Ready(Some(Ok(Frame::data(head)))),
                // The connection task drops the connection when signalled; this body is never
                // polled again, so no waker is needed.
                _ => {
                    truncated.conn.reset();
                    Poll::Pending
                }
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self, Self::Full(None))
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Self::Full(bytes) => SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64)),
            Self::Truncated(truncated) => SizeHint::with_exact(truncated.full_len),
            Self::Stream(_) => SizeHint::default(),
        }
    }
}

// === impl SseStream ===

impl SseStream {
    /// Starts a stream and counts it.
    pub(crate) fn new(source: Box<dyn EventSource>, hooks: StreamHooks) -> Self {
        bump(&hooks.counters.streams);
        Self {
            source,
            hooks,
            buf: BytesMut::with_capacity(1024),
            due: None,
            sleep: None,
            sleeping: false,
            sent: 0,
            state: StreamState::Streaming,
        }
    }

    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Bytes>> {
        loop {
            match self.state {
                StreamState::Streaming => {}
                StreamState::Completed => return Poll::Ready(None),
                // Never end a body that is being reset: hyper may poll it once more before the
                // connection task drops the connection, and an end would send the terminating
                // chunk, telling the client the answer was whole.
                StreamState::Reset => return Poll::Pending,
            }
            if self.sleeping {
                if let Some(sleep) = self.sleep.as_mut() {
                    ready!(sleep.as_mut().poll(cx));
                }
                self.sleeping = false;
            }
            if let Some((event, last)) = self.due.take() {
                self.sent += 1;
                if last {
                    self.state = StreamState::Completed;
                    bump(&self.hooks.counters.streams_completed);
                    if self.hooks.close_after_stream {
                        self.hooks.conn.close();
                    }
                }
                return Poll::Ready(Some(event));
            }
            if self.hooks.reset_after == Some(self.sent) {
                self.state = StreamState::Reset;
                self.hooks.conn.reset();
                // The connection task drops the connection, and this body with it.
                return Poll::Pending;
            }
            let Some(written) = self.source.write_next(&mut self.buf, &self.hooks.counters) else {
                // A source that ends without marking its last event still completes the stream.
                self.state = StreamState::Completed;
                bump(&self.hooks.counters.streams_completed);
                return Poll::Ready(None);
            };
            self.due = Some((self.buf.split().freeze(), written.last));
            let delay = match written.pace {
                Pace::Ttft => self.hooks.ttft,
                Pace::Chunk => self.hooks.chunk_delay,
                Pace::Now => Duration::ZERO,
            };
            if !delay.is_zero() {
                let deadline = Instant::now() + delay;
                match self.sleep.as_mut() {
                    Some(sleep) => sleep.as_mut().reset(deadline),
                    None => self.sleep = Some(Box::pin(tokio::time::sleep_until(deadline))),
                }
                self.sleeping = true;
            }
        }
    }
}

impl Drop for SseStream {
    fn drop(&mut self) {
        if self.state == StreamState::Streaming {
            bump(&self.hooks.counters.streams_cancelled);
        }
    }
}
