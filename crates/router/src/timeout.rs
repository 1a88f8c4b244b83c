//! Per-deployment timeouts: time to first token, between chunks, and total.
//!
//! [`DeadlineLayer`] wraps one deployment's service. For an answer that is not streamed only
//! the total applies, and covers the whole answer. For a stream:
//! - `ttft`: from sending until the first chunk (headers included);
//! - `idle`: the longest wait between two chunks;
//! - `total`: from sending until the stream ends.
//!
//! A client may shorten them for one request ([`RequestTimeouts`], which the gateway reads
//! from headers): its deadline bounds every attempt and its `ttft` replaces the deployment's.
//! Each expiry is an [`ErrorClass::Timeout`] error that names the deployment and the limit;
//! before the first chunk it is a failed attempt the router may retry elsewhere, after it the
//! stream ends with that error.
//!
//! Connection timeouts belong to the HTTP client, which the gateway builds per deployment.

use std::{
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use futures_core::{Stream, future::BoxFuture};
use switchyard_types::{
    json::Json,
    llm::{DocStream, ErrorClass, LlmError, LlmRequest, LlmResponse, ResponseBody},
};
use tokio::time::{Instant, Sleep, sleep_until};

/// A deployment's time limits; `None` is no limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Timeouts {
    /// The whole answer, stream included.
    pub total: Option<Duration>,
    /// Streams: until the first chunk.
    pub ttft: Option<Duration>,
    /// Streams: between two chunks.
    pub idle: Option<Duration>,
}

/// One request's own limits, set by the client (see the gateway's `x-switchyard-timeout-ms`
/// and `x-switchyard-ttft-timeout-ms` headers).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RequestTimeouts {
    /// No attempt runs past this instant, and no retry starts after it.
    pub deadline: Option<Instant>,
    /// Replaces the deployment's time-to-first-token limit.
    pub ttft: Option<Duration>,
}

/// Applies [`Timeouts`] to a deployment's service.
#[derive(Debug, Clone)]
pub struct DeadlineLayer {
    timeouts: Timeouts,
    label: Arc<str>,
}

impl DeadlineLayer {
    /// Limits for the deployment named `label` (used in error messages).
    pub fn new(timeouts: Timeouts, label: impl Into<Arc<str>>) -> Self {
        Self { timeouts, label: label.into() }
    }
}

impl<S> tower::Layer<S> for DeadlineLayer {
    type Service = Deadline<S>;

    fn layer(&self, inner: S) -> Deadline<S> {
        Deadline { inner, timeouts: self.timeouts, label: Arc::clone(&self.label) }
    }
}

/// A deployment's service with time limits; see [`DeadlineLayer`].
#[derive(Debug, Clone)]
pub struct Deadline<S> {
    inner: S,
    timeouts: Timeouts,
    label: Arc<str>,
}

impl<S> Deadline<S> {
    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

/// Which limit expired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Limit {
    Total(Duration),
    RequestDeadline,
    Ttft(Duration),
    /// The client's own time-to-first-token limit.
    RequestTtft(Duration),
    Idle(Duration),
}

/// The headers a client sets its own limits with; the expiry of one names it as its `param`.
const DEADLINE_HEADER: &str = "x-switchyard-timeout-ms";
const TTFT_HEADER: &str = "x-switchyard-ttft-timeout-ms";

/// Whether `error` is the expiry of a limit the client set for its request: that says nothing
/// about the deployment, so it must not count against its health.
pub(crate) fn is_clients_limit(error: &LlmError) -> bool {
    error.class == ErrorClass::Timeout
        && matches!(error.param.as_deref(), Some(DEADLINE_HEADER | TTFT_HEADER))
}

fn expired(label: &str, limit: Limit) -> LlmError {
    let message = match limit {
        Limit::Total(d) => {
            format!("{label} did not finish its answer within {} ms (timeout_ms).", d.as_millis())
        }
        Limit::RequestDeadline => {
            format!("{label} did not answer before the request's deadline (x-switchyard-timeout-ms).")
        }
        Limit::Ttft(d) | Limit::RequestTtft(d) => {
            format!("{label} sent no first token within {} ms (ttft_timeout_ms).", d.as_millis())
        }
        Limit::Idle(d) => {
            format!(
                "{label} sent nothing for {} ms in the middle of the stream (idle_timeout_ms).",
                d.as_millis()
            )
        }
    };
    let error = LlmError::new(ErrorClass::Timeout, message);
    match limit {
        Limit::RequestDeadline => error.with_param(DEADLINE_HEADER),
        Limit::RequestTtft(_) => error.with_param(TTFT_HEADER),
        Limit::Total(_) | Limit::Ttft(_) | Limit::Idle(_) => error,
    }
}

impl<S> tower::Service<LlmRequest> for Deadline<S>
where
    S: tower::Service<LlmRequest, Response = LlmResponse, Error = LlmError> + Send,
    S::Future: Send + 'static,
{
    type Response = LlmResponse;
    type Error = LlmError;
    type Future = BoxFuture<'static, Result<LlmResponse, LlmError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), LlmError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: LlmRequest) -> Self::Future {
        let start = Instant::now();
        let own = request.extensions.get::<RequestTimeouts>().copied().unwrap_or_default();
        // The earliest of the deployment's total and the request's deadline.
        let total = earliest(
            self.timeouts.total.map(|d| (start + d, Limit::Total(d))),
            own.deadline.map(|at| (at, Limit::RequestDeadline)),
        );
        let stream = request.is_stream();
        let ttft = match own.ttft {
            Some(d) => Some((start + d, Limit::RequestTtft(d))),
            None => self.timeouts.ttft.map(|d| (start + d, Limit::Ttft(d))),
        }
        .filter(|_| stream);
        let idle = self.timeouts.idle;
        let label = Arc::clone(&self.label);
        let call = self.inner.call(request);
        Box::pin(async move {
            let first = earliest(total, ttft);
            let response = match first {
                Some((at, limit)) => {
                    tokio::time::timeout_at(at, call).await.map_err(|_| expired(&label, limit))??
                }
                None => call.await?,
            };
            Ok(match response.body {
                body if total.is_none() && ttft.is_none() && idle.is_none() => {
                    LlmResponse { body, ..response }
                }
                ResponseBody::ChatStream(chunks) => {
                    let timed = TimedStream::new(chunks, label, total, ttft, idle);
                    LlmResponse { body: ResponseBody::ChatStream(Box::pin(timed)), ..response }
                }
                ResponseBody::MessageStream(events) => {
                    let timed = TimedStream::new(events, label, total, ttft, idle);
                    LlmResponse { body: ResponseBody::MessageStream(Box::pin(timed)), ..response }
                }
                body => LlmResponse { body, ..response },
            })
        })
    }
}

fn earliest(a: Option<(Instant, Limit)>, b: Option<(Instant, Limit)>) -> Option<(Instant, Limit)> {
    match (a, b) {
        (Some(a), Some(b)) => Some(if b.0 < a.0 { b } else { a }),
        (a, b) => a.or(b),
    }
}

/// A stream (of any dialect's documents) under the time-to-first-token, idle and total limits.
struct TimedStream<T> {
    inner: DocStream<T>,
    label: Arc<str>,
    total: Option<(Instant, Limit)>,
    idle: Option<Duration>,
    /// The limit now running: ttft or total before the first chunk, then idle or total.
    timer: Option<(Pin<Box<Sleep>>, Limit)>,
    done: bool,
}

impl<T> TimedStream<T> {
    fn new(
        inner: DocStream<T>,
        label: Arc<str>,
        total: Option<(Instant, Limit)>,
        ttft: Option<(Instant, Limit)>,
        idle: Option<Duration>,
    ) -> Self {
        let mut stream = Self { inner, label, total, idle, timer: None, done: false };
        stream.arm(earliest(total, ttft));
        stream
    }

    fn arm(&mut self, limit: Option<(Instant, Limit)>) {
        self.timer = limit.map(|(at, limit)| match self.timer.take() {
            Some((mut sleep, _)) => {
                sleep.as_mut().reset(at);
                (sleep, limit)
            }
            None => (Box::pin(sleep_until(at)), limit),
        });
    }
}

impl<T> Stream for TimedStream<T> {
    type Item = Result<Json<T>, LlmError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        if let Poll::Ready(item) = self.inner.as_mut().poll_next(cx) {
            if item.is_none() {
                self.done = true;
            } else {
                let next = self.idle.map(|d| (Instant::now() + d, Limit::Idle(d)));
                let total = self.total;
                self.arm(earliest(total, next));
            }
            return Poll::Ready(item);
        }
        if let Some((sleep, limit)) = &mut self.timer
            && sleep.as_mut().poll(cx).is_ready()
        {
            let limit = *limit;
            self.done = true;
            return Poll::Ready(Some(Err(expired(&self.label, limit))));
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests;
