//! [`PropagateLayer`]: sends the current trace context upstream, as W3C `traceparent` (and
//! `tracestate`).
//!
//! Wrapped around a deployment's adapter, it reads the OpenTelemetry context current when the
//! adapter is called (the router calls it inside the attempt span, so it is the attempt's) and
//! adds its `traceparent` to the request's [`UpstreamHeaders`], which the adapter sends. The
//! provider's own spans then are children of the attempt. With no current span (traces off,
//! or a span that is not traced) it adds nothing; it never fails and never delays a request.
//! The `traceparent` of an unsampled trace is sent too, with its flag off, so that the provider
//! does not sample it either.
//!
//! ```
//! use switchyard_telemetry::trace::PropagateLayer;
//! use switchyard_types::llm::{LlmRequest, UpstreamHeaders};
//! use tower::{Layer, service_fn};
//!
//! let deployment = service_fn(|request: LlmRequest| async move {
//!     // An adapter sends `request.extensions.get::<UpstreamHeaders>()` with the request.
//!     Ok::<_, std::convert::Infallible>(request.extensions.get::<UpstreamHeaders>().is_some())
//! });
//! let traced = PropagateLayer::new().layer(deployment);
//! # drop(traced);
//! ```

use std::task::{Context, Poll};

use opentelemetry::{propagation::TextMapPropagator, trace::TraceContextExt};
use opentelemetry_http::HeaderInjector;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use switchyard_types::llm::{LlmRequest, UpstreamHeaders};

/// Builds [`Propagate`] services. See the [module documentation](self).
#[derive(Debug, Clone, Copy, Default)]
pub struct PropagateLayer {
    _private: (),
}

impl PropagateLayer {
    /// The layer; it has nothing to configure.
    pub fn new() -> Self {
        Self::default()
    }
}

impl<S> tower::Layer<S> for PropagateLayer {
    type Service = Propagate<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Propagate::new(inner)
    }
}

/// Adds the current trace context to each request's [`UpstreamHeaders`], then calls `inner`.
#[derive(Debug, Clone)]
pub struct Propagate<S> {
    inner: S,
}

// === impl Propagate ===

impl<S> Propagate<S> {
    /// Wraps `inner`.
    pub fn new(inner: S) -> Self {
        Self { inner }
    }

    /// A [`PropagateLayer`].
    pub fn layer() -> PropagateLayer {
        PropagateLayer::new()
    }

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

impl<S> tower::Service<LlmRequest> for Propagate<S>
where
    S: tower::Service<LlmRequest>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: LlmRequest) -> Self::Future {
        inject(&mut request);
        self.inner.call(request)
    }
}

/// Puts the current context's `traceparent` and `tracestate` into `request`'s upstream headers.
fn inject(request: &mut LlmRequest) {
    opentelemetry::Context::map_current(|context| {
        // Borrowed, not cloned: without a traced span this is a thread-local read.
        if !context.span().span_context().is_valid() {
            return;
        }
        let extensions = &mut request.extensions;
        if extensions.get::<UpstreamHeaders>().is_none() {
            extensions.insert(UpstreamHeaders::default());
        }
        if let Some(UpstreamHeaders(headers)) = extensions.get_mut::<UpstreamHeaders>() {
            TraceContextPropagator::new().inject_context(context, &mut HeaderInjector(headers));
        }
    });
}

#[cfg(test)]
mod tests {
    use opentelemetry::trace::TraceId;
    use switchyard_types::llm::{LlmRequest, Operation};
    use tower::{Layer, ServiceExt, service_fn};
    use tracing::Instrument;

    use super::*;
    use crate::trace::{SPAN_TARGET, tests::in_memory};

    fn request() -> LlmRequest {
        let body = serde_json::json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]});
        LlmRequest::new(Operation::chat(serde_json::from_value(body).unwrap()))
    }

    /// What the adapter would send.
    async fn sent(request: LlmRequest) -> Option<http::HeaderMap> {
        let adapter = service_fn(|request: LlmRequest| async move {
            Ok::<_, std::convert::Infallible>(
                request.extensions.get::<UpstreamHeaders>().map(|h| h.0.clone()),
            )
        });
        let Ok(headers) = PropagateLayer::new().layer(adapter).oneshot(request).await;
        headers
    }

    #[tokio::test]
    async fn the_attempt_span_is_the_upstream_parent() {
        let (subscriber, provider, exporter) = in_memory();
        let _default = tracing::subscriber::set_default(subscriber);
        let mut request = request();
        let mut earlier = http::HeaderMap::new();
        earlier.insert("x-other-layer", http::HeaderValue::from_static("kept"));
        request.extensions.insert(UpstreamHeaders(earlier));
        let attempt = tracing::info_span!(target: SPAN_TARGET, "attempt", otel.kind = "client");
        // As the router does: the call happens while the attempt future is polled in its span.
        let headers = sent(request).instrument(attempt).await.unwrap();
        provider.force_flush().unwrap();

        let spans = exporter.get_finished_spans().unwrap();
        assert_eq!(spans.len(), 1);
        let context = &spans[0].span_context;
        let expected = format!("00-{}-{}-01", context.trace_id(), context.span_id());
        assert_eq!(headers["traceparent"], expected.as_str());
        assert_eq!(headers["x-other-layer"], "kept", "what other layers asked for stays");
        assert_ne!(context.trace_id(), TraceId::INVALID);
    }

    #[tokio::test]
    async fn nothing_is_added_outside_a_traced_span() {
        let (subscriber, _provider, _exporter) = in_memory();
        let _default = tracing::subscriber::set_default(subscriber);
        assert!(sent(request()).await.is_none());
        // A span of another target is not traced: still nothing.
        assert!(sent(request()).instrument(tracing::info_span!("log span")).await.is_none());
    }

    #[tokio::test]
    async fn nothing_is_added_with_traces_off() {
        let span = tracing::info_span!(target: SPAN_TARGET, "attempt");
        assert!(sent(request()).instrument(span).await.is_none());
    }
}
