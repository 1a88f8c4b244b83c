//! The process's `tracing` subscriber: logs to standard output, and spans to OpenTelemetry
//! when traces are on.
//!
//! - Logs: filtered by `RUST_LOG` (default `info`), as human-readable lines (coloured only
//!   at a terminal, and never with `NO_COLOR` set) or one JSON object per line. `log`
//!   records of dependencies are included.
//! - Traces: with a [`TraceConfig`], the OpenTelemetry layer of [`crate::trace`] takes the
//!   spans of target [`SPAN_TARGET`], whatever `RUST_LOG` says. The OpenTelemetry SDK's own
//!   warnings (a collector that cannot be reached, spans dropped from a full queue) are log
//!   events like any other.
//!
//! The two never mix: trace spans are not log lines, and are not printed as the context of
//! log lines either; logs are not span events. Without traces no layer wants the trace spans,
//! so they are disabled where they are created and cost nothing.
//!
//! ```no_run
//! # fn run() -> Result<(), switchyard_telemetry::logs::InitError> {
//! use switchyard_telemetry::logs::{self, LogFormat};
//!
//! let runtime = tokio::runtime::Runtime::new().expect("a runtime");
//! // The trace exporter runs on the runtime current when `init` is called.
//! let guard = runtime.block_on(async { logs::init(LogFormat::Json, None) })?;
//! // ... serve; then drop the guard (traces flushed) while the runtime still runs.
//! drop(guard);
//! # Ok(()) }
//! ```

use tracing_subscriber::{
    EnvFilter, Layer, layer::SubscriberExt as _, registry::LookupSpan, util::SubscriberInitExt as _,
};

use crate::trace::{SPAN_TARGET, TraceConfig, TraceError, TraceGuard, otel_layer};

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line, the event's fields at the top level.
    Json,
}

/// Keeps the trace pipeline running; dropping it exports the last spans. Drop it after the
/// server has drained, on a thread outside the runtime's async context, while the runtime
/// still runs (the final export runs on it).
#[derive(Debug)]
#[must_use = "dropping the guard stops the trace export"]
pub struct Guard {
    traces: Option<TraceGuard>,
    /// Flushes the log lines still queued when dropped.
    _writer: tracing_appender::non_blocking::WorkerGuard,
}

impl Guard {
    /// The trace pipeline, when traces are on.
    pub fn traces(&self) -> Option<&TraceGuard> {
        self.traces.as_ref()
    }
}

/// Why the subscriber could not be installed.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    /// The trace settings are wrong, or there is no runtime to export on.
    #[error(transparent)]
    Traces(#[from] TraceError),
    /// Something installed a global subscriber (or `log` logger) first.
    #[error("a global tracing subscriber is already installed")]
    AlreadyInstalled,
}

/// Installs the global subscriber: logs in `format`, and spans exported per `traces`.
///
/// With traces, call it on the Tokio runtime that will run the exports (see
/// [`TraceGuard::start`]).
///
/// # Errors
/// When `traces` is invalid ([`TraceError`]: nothing is installed then, so that the caller
/// can install logs alone and report it), or a subscriber is already installed.
pub fn init(format: LogFormat, traces: Option<TraceConfig>) -> Result<Guard, InitError> {
    let traces = traces.as_ref().map(TraceGuard::start).transpose()?;
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout()) && std::env::var_os("NO_COLOR").is_none();
    // Lines are written by a worker thread, so that a request's log line never waits for the
    // terminal or the pipe: under a flood the queue (128k lines) drops lines rather than slow
    // requests down.
    let (writer, flush) = tracing_appender::non_blocking(std::io::stdout());
    tracing_subscriber::registry()
        .with(log_layer(format, ansi, writer))
        .with(otel_layer(traces.as_ref().map(TraceGuard::tracer)))
        .try_init()
        .map_err(|_| InitError::AlreadyInstalled)?;
    Ok(Guard { traces, _writer: flush })
}

/// The log output: `RUST_LOG`'s events and spans, never the trace spans.
fn log_layer<S, W>(format: LogFormat, ansi: bool, writer: W) -> impl Layer<S>
where
    S: tracing::Subscriber + for<'span> LookupSpan<'span>,
    W: for<'writer> tracing_subscriber::fmt::MakeWriter<'writer> + Send + Sync + 'static,
{
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // Trace spans are never log lines. Said as a directive (the most specific one, so that no
    // RUST_LOG can turn them on here), the filter stays static: each callsite is decided once,
    // where a filter function would be asked again on every span and event.
    let filter = match format!("{SPAN_TARGET}=off").parse() {
        Ok(directive) => filter.add_directive(directive),
        Err(_) => filter,
    };
    let layer = tracing_subscriber::fmt::layer().with_target(false).with_ansi(ansi).with_writer(writer);
    let layer = match format {
        LogFormat::Text => layer.boxed(),
        LogFormat::Json => layer.json().flatten_event(true).boxed(),
    };
    layer.with_filter(filter)
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex, PoisonError};

    use opentelemetry::trace::TracerProvider as _;

    use super::*;
    use crate::trace::tests::in_memory_pipeline;

    /// A writer keeping what was written.
    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buffer {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap_or_else(PoisonError::into_inner).extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Buffer {
        fn text(&self) -> String {
            String::from_utf8_lossy(&self.0.lock().unwrap_or_else(PoisonError::into_inner)).into_owned()
        }
    }

    /// Logs inside a trace span and a log span, with and without the trace layer.
    fn run(format: LogFormat, traced: bool) -> (String, usize) {
        let buffer = Buffer::default();
        let writer = buffer.clone();
        let (provider, exporter) = in_memory_pipeline();
        // As `init` composes them.
        let subscriber = tracing_subscriber::registry()
            .with(log_layer(format, false, move || writer.clone()))
            .with(otel_layer(traced.then(|| provider.tracer("test"))));
        tracing::subscriber::with_default(subscriber, || {
            let trace =
                tracing::info_span!(target: SPAN_TARGET, "request", gen_ai.request.model = "secret-model");
            assert_eq!(
                trace.is_disabled(),
                !traced,
                "{format:?} {traced}: trace spans exist only with traces on"
            );
            trace.in_scope(|| {
                tracing::info_span!("handling", step = 1).in_scope(|| tracing::info!("hello from inside"));
            });
        });
        provider.force_flush().unwrap();
        (buffer.text(), exporter.get_finished_spans().unwrap().len())
    }

    // One test, so that no other subscriber uses these call sites at the same time: `tracing`
    // caches a call site's interest across the subscribers alive on every thread.
    #[test]
    fn trace_spans_are_never_log_lines() {
        for format in [LogFormat::Text, LogFormat::Json] {
            for traced in [false, true] {
                let (logs, exported) = run(format, traced);
                assert!(logs.contains("hello from inside"), "{format:?}: {logs}");
                assert!(logs.contains("handling"), "log spans stay the context of log lines: {logs}");
                assert!(!logs.contains("request") && !logs.contains("secret-model"), "{format:?}: {logs}");
                assert_eq!(exported, usize::from(traced), "{format:?}");
                if format == LogFormat::Json {
                    let line: serde_json::Value = serde_json::from_str(logs.lines().next().unwrap()).unwrap();
                    assert_eq!(line["message"], "hello from inside");
                    assert_eq!(line["level"], "INFO");
                }
            }
        }
    }
}
