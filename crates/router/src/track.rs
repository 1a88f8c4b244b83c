//! What a group does around one attempt: the in-flight count, the outcome and latency it
//! records, and the stream wrapper that keeps recording until a streamed answer ends.

use std::{
    pin::Pin,
    sync::{Arc, atomic::Ordering},
    task::{Context, Poll},
};

use futures_core::Stream;
use switchyard_types::{
    json::Json,
    llm::{DocStream, LlmError, Usage},
};

use crate::{endpoint::EndpointState, group::ModelGroup, usage::current_minute};

/// Holds one request in a deployment's in-flight count until dropped (the count was raised
/// when the request was admitted), and the deployment's probe if the request claimed it: a
/// request dropped before its outcome is known (the client went away) gives the probe back,
/// so that the deployment is not left waiting for a probe that never reports.
pub(crate) struct InFlight {
    state: Arc<EndpointState>,
    probe: bool,
}

impl InFlight {
    pub(crate) fn adopt(state: Arc<EndpointState>, probe: bool) -> Self {
        Self { state, probe }
    }

    /// The outcome was recorded: the probe, if any, has reported.
    pub(crate) fn settle(&mut self) {
        self.probe = false;
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.state.in_flight.fetch_sub(1, Ordering::Relaxed);
        if self.probe {
            self.state.health().release();
        }
    }
}

/// The chunks (or events, in any dialect) of a streamed answer after the group saw its first:
/// yields the first, then the rest as they come, counting tokens and recording a mid-stream
/// failure against the deployment. The in-flight count drops when the stream ends or the
/// client goes away.
pub(crate) struct Tracked<T> {
    first: Option<Json<T>>,
    rest: DocStream<T>,
    group: Arc<ModelGroup>,
    index: usize,
    in_flight: Option<InFlight>,
    /// The usage reported so far.
    usage: Usage,
}

impl<T> Tracked<T> {
    pub(crate) fn new(
        first: Json<T>,
        rest: DocStream<T>,
        group: Arc<ModelGroup>,
        index: usize,
        in_flight: InFlight,
    ) -> Self {
        let mut tracked =
            Self { first: None, rest, group, index, in_flight: Some(in_flight), usage: Usage::default() };
        tracked.count(&first);
        tracked.first = Some(first);
        tracked
    }

    fn count(&mut self, chunk: &Json<T>) {
        if let Some(usage) = chunk.usage() {
            // A stream may report its usage in parts (Anthropic: input at the start, output
            // at the end): each report counts only what it adds to the ones before.
            let before = self.usage.total();
            self.usage.merge(&usage);
            let added = self.usage.total() - before;
            self.group.endpoints[self.index].state.usage.record_tokens(current_minute(), added);
        }
    }

    fn fail(&mut self, error: &LlmError) {
        let counted = self.group.record_failure(self.index, error);
        self.release(counted);
    }

    fn finish(&mut self) {
        self.group.record_stream_success(self.index);
        self.release(true);
    }

    /// Leaves the in-flight count; `settled` says the deployment's health was updated (so a
    /// probe this request held has reported).
    fn release(&mut self, settled: bool) {
        if let Some(mut in_flight) = self.in_flight.take()
            && settled
        {
            in_flight.settle();
        }
    }
}

impl<T> Stream for Tracked<T> {
    type Item = Result<Json<T>, LlmError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if let Some(first) = self.first.take() {
            return Poll::Ready(Some(Ok(first)));
        }
        let item = std::task::ready!(self.rest.as_mut().poll_next(cx));
        match &item {
            Some(Ok(chunk)) => self.count(chunk),
            Some(Err(error)) => self.fail(error),
            None if self.in_flight.is_some() => self.finish(),
            None => {}
        }
        Poll::Ready(item)
    }
}
