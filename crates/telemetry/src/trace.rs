//! OpenTelemetry traces: W3C `traceparent` in and out.

use std::sync::atomic::{AtomicBool, Ordering};

use opentelemetry::{propagation::TextMapPropagator, trace::TraceContextExt};
use opentelemetry_http::HeaderExtractor;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// Whether prompts and completions may be recorded on spans; see [`capture_content`].
static CAPTURE_CONTENT: AtomicBool = AtomicBool::new(false);

/// Makes the W3C trace context of `headers` (`traceparent`, and `tracestate` with it) the
/// remote parent of `span`, so that the gateway's spans join the trace the client started.
///
/// Call it right after creating the span, before it is first entered: an OpenTelemetry span's
/// parent is fixed when it starts. Does nothing when the headers hold no valid `traceparent`,
/// when `span` is disabled (traces are off), or when no trace layer is installed.
pub fn set_parent(span: &tracing::Span, headers: &http::HeaderMap) {
    if span.is_disabled() || !headers.contains_key("traceparent") {
        return;
    }
    let context = TraceContextPropagator::new().extract(&HeaderExtractor(headers));
    if context.span().span_context().is_valid() {
        // The only failures are "no trace layer" and "already started": in both the span keeps
        // the parent it has, which is the right fallback.
        let _ = span.set_parent(context);
    }
}

/// Whether prompt and completion content may be recorded on spans
/// (`telemetry.traces.capture_content`). False unless traces are on and the operator asked for
/// it: content may hold personal data.
pub fn capture_content() -> bool {
    CAPTURE_CONTENT.load(Ordering::Relaxed)
}
