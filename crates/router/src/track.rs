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
    llm::{ChunkStream, LlmError},
    openai::ChatCompletionChunk,
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

/// The chunks of a streamed answer after the group saw its first: yields the first, then the
/// rest as they come, counting tokens and recording a mid-stream failure against the
/// deployment. The in-flight count drops when the stream ends or the client goes away.
pub(crate) struct Tracked {
    first: Option<Json<ChatCompletionChunk>>,
    rest: ChunkStream,
    group: Arc<ModelGroup>,
    index: usize,
    in_flight: Option<InFlight>,
}

impl Tracked {
    pub(crate) fn new(
        first: Json<ChatCompletionChunk>,
        rest: ChunkStream,
        group: Arc<ModelGroup>,
        index: usize,
        in_flight: InFlight,
    ) -> Self {
        let tracked = Self { first: Some(first), rest, group, index, in_flight: Some(in_flight) };
        if let Some(first) = &tracked.first {
            tracked.count(first);
        }
        tracked
    }

    fn count(&self, chunk: &Json<ChatCompletionChunk>) {
        if let Some(usage) = chunk.usage() {
            self.group.endpoints[self.index].state.usage.record_tokens(current_minute(), usage.total_tokens);
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

impl Stream for Tracked {
    type Item = Result<Json<ChatCompletionChunk>, LlmError>;

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
