//! OpenTelemetry traces: spans exported over OTLP (HTTP/protobuf or gRPC), W3C `traceparent`
//! in and out. Off unless configured (`telemetry.traces`).
//!
//! # The span model
//!
//! The gateway's spans are ordinary `tracing` spans with the target [`SPAN_TARGET`]
//! (`switchyard::trace`). [`crate::logs`] hands spans of that target, and only those, to the
//! OpenTelemetry layer, and never to the log output; with traces off no layer wants them, so
//! they are disabled at their call site and cost a branch. Their fields follow
//! `tracing-opentelemetry`'s conventions: `otel.name` is the span's name, `otel.kind` its kind,
//! `otel.status_code` (`ERROR`) its status; every other field is an attribute of the same name.
//! Record integers as `i64`: `tracing-opentelemetry` exports `u64` and `usize` values as
//! strings, which the GenAI conventions' integer attributes (`gen_ai.usage.*`,
//! `http.response.status_code`) must not be.
//!
//! A routed request is one trace branch of this shape:
//!
//! ```text
//! chat gpt-4o              SERVER  (the gateway's "request" span: switchyard-gateway)
//! ├── chat gpt-4o-2024-08-06  CLIENT  (one "attempt" span per deployment tried: switchyard-router)
//! └── chat gpt-4o-2024-08-06  CLIENT  (the next attempt, after a retry or a fallback)
//! ```
//!
//! - The **server span**, named `{gen_ai.operation.name} {gen_ai.request.model}`, lasts the
//!   whole request (for a stream, until its last chunk left). Attributes:
//!   `gen_ai.operation.name` (`chat`, `embeddings`), `gen_ai.request.model` (what the client
//!   asked for), `gen_ai.response.model`, `gen_ai.usage.input_tokens`,
//!   `gen_ai.usage.output_tokens`, `http.response.status_code`, `switchyard.deployment` (the
//!   deployment that answered), `switchyard.attempts`, and on failure `error.type` (the error
//!   class) with status `ERROR`. When the client sent a valid `traceparent`, the span's parent
//!   is the client's span ([`set_parent`]): it has the client's trace id, and the client's
//!   sampling decision holds.
//! - Each **attempt span**, a child of the server span, named
//!   `{gen_ai.operation.name} {upstream model}`, lasts until the deployment answered (for a
//!   stream, until its first chunk). Attributes: `gen_ai.operation.name`,
//!   `gen_ai.provider.name` (`openai`, `groq`, ...), `gen_ai.request.model` (the model sent
//!   upstream), `switchyard.deployment` (`provider/model`), and on failure `error.type` with
//!   status `ERROR`.
//! - **Upstream**: [`PropagateLayer`] around each deployment puts the attempt's context in a
//!   W3C `traceparent` (and `tracestate`) on the provider request, so that a provider (or a
//!   self-hosted model server) that traces joins the trace as a child of the attempt.
//!
//! Prompts and completions are never recorded by this crate; code that would record them asks
//! [`capture_content`] first, which is false unless `capture_content: true` was configured.
//!
//! # Export
//!
//! Spans are batched (OpenTelemetry's batch span processor: up to 512 spans, every 5 s, both
//! overridable with the standard `OTEL_BSP_*` variables) and sent off the request path. The
//! root sampler keeps `sample_ratio` of new traces; a trace the client started keeps the
//! client's decision (parent-based sampling). The resource names the service
//! (`service.name`, `service.version`). The export itself runs on the Tokio runtime that
//! [`TraceGuard::start`] was called on, which must outlive the guard; dropping the guard exports
//! what is left and shuts the exporter down, so that a graceful stop loses no span.
//!
//! ```no_run
//! # async fn run() -> Result<(), switchyard_telemetry::trace::TraceError> {
//! use switchyard_telemetry::trace::{TraceConfig, TraceGuard};
//! use tracing_subscriber::layer::SubscriberExt as _;
//!
//! let traces = TraceGuard::start(&TraceConfig::new("http://127.0.0.1:4318"))?;
//! let subscriber = tracing_subscriber::registry().with(traces.layer());
//! # drop(subscriber);
//! // ... serve; dropping `traces` at the end flushes the last spans.
//! # Ok(()) }
//! ```

pub mod propagate;

use std::{
    collections::HashMap,
    fmt,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use opentelemetry::{
    InstrumentationScope, KeyValue,
    propagation::TextMapPropagator,
    trace::{TraceContextExt, TracerProvider as _},
};
use opentelemetry_http::HeaderExtractor;
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig, WithTonicConfig};
use opentelemetry_sdk::{
    Resource,
    error::{OTelSdkError, OTelSdkResult},
    propagation::TraceContextPropagator,
    trace::{Sampler, SdkTracer, SdkTracerProvider, SpanData, SpanExporter},
};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::{Layer, registry::LookupSpan};

pub use propagate::{Propagate, PropagateLayer};
pub use switchyard_router::SPAN_TARGET;

/// The instrumentation scope of the gateway's spans.
const SCOPE: &str = "switchyard";
const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Whether prompts and completions may be recorded on spans; see [`capture_content`].
static CAPTURE_CONTENT: AtomicBool = AtomicBool::new(false);

/// How spans are sent to the collector.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum TraceProtocol {
    /// OTLP, protobuf over HTTP, to `{endpoint}/v1/traces` (a collector's port 4318).
    #[default]
    Http,
    /// OTLP over gRPC (a collector's port 4317).
    Grpc,
}

/// Where and how traces go.
#[derive(Clone)]
pub struct TraceConfig {
    /// The collector. For HTTP, the base URL (`http://collector:4318`, `/v1/traces` is added
    /// unless the URL already ends with it); for gRPC, the server (`http://collector:4317`).
    /// `https://` uses TLS with the system's roots.
    pub endpoint: String,
    /// HTTP or gRPC.
    pub protocol: TraceProtocol,
    /// Share of new traces kept, 0.0 to 1.0. A trace the client started keeps its decision.
    pub sample_ratio: f64,
    /// `service.name` of the resource.
    pub service_name: String,
    /// Headers (gRPC metadata) sent with each export: an API key, a tenant. Never logged.
    pub headers: Vec<(String, String)>,
    /// Whether prompts and completions may be recorded on spans ([`capture_content`]).
    pub capture_content: bool,
}

impl TraceConfig {
    /// OTLP over HTTP to `endpoint`, every trace kept, service `switchyard`, no content.
    pub fn new(endpoint: impl Into<String>) -> Self {
        Self {
            endpoint: endpoint.into(),
            protocol: TraceProtocol::Http,
            sample_ratio: 1.0,
            service_name: SCOPE.to_owned(),
            headers: Vec::new(),
            capture_content: false,
        }
    }
}

impl fmt::Debug for TraceConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Header values are credentials more often than not: names only.
        let headers: Vec<&str> = self.headers.iter().map(|(name, _)| name.as_str()).collect();
        f.debug_struct("TraceConfig")
            .field("endpoint", &self.endpoint)
            .field("protocol", &self.protocol)
            .field("sample_ratio", &self.sample_ratio)
            .field("service_name", &self.service_name)
            .field("headers", &headers)
            .field("capture_content", &self.capture_content)
            .finish()
    }
}

/// Why traces could not be started. Each names the setting to fix.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    /// The exporter runs on a Tokio runtime, and there was none.
    #[error("telemetry.traces: the trace exporter needs a Tokio runtime; start it from inside one")]
    NoRuntime,
    /// The endpoint is not a usable URL.
    #[error("telemetry.traces.endpoint: `{endpoint}` {reason}")]
    Endpoint {
        /// The endpoint as configured.
        endpoint: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A header cannot be sent.
    #[error("telemetry.traces.headers: `{name}` is not a valid header {what}")]
    Header {
        /// The header's name as configured.
        name: String,
        /// `name` or `value`.
        what: &'static str,
    },
    /// The ratio is outside 0.0 to 1.0.
    #[error("telemetry.traces.sample_ratio: {0} is not between 0.0 and 1.0")]
    SampleRatio(f64),
    /// The collector could not be reached while flushing.
    #[error("exporting spans failed: {0}")]
    Export(String),
}

/// The running trace pipeline: the OTLP exporter behind a batch span processor. Dropping it
/// exports the spans still queued and shuts the exporter down.
#[derive(Debug)]
pub struct TraceGuard {
    provider: SdkTracerProvider,
}

// === impl TraceGuard ===

impl TraceGuard {
    /// Starts exporting per `config`. Call it on the Tokio runtime that will run the exports
    /// (inside `Runtime::enter` or an async context); that runtime must outlive the guard.
    ///
    /// # Errors
    /// When there is no runtime, or the endpoint, a header or the ratio is invalid.
    pub fn start(config: &TraceConfig) -> Result<Self, TraceError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| TraceError::NoRuntime)?;
        if !(0.0..=1.0).contains(&config.sample_ratio) {
            return Err(TraceError::SampleRatio(config.sample_ratio));
        }
        let exporter = OnRuntime { exporter: Arc::new(exporter(config)?), runtime };
        let resource = Resource::builder()
            .with_service_name(config.service_name.clone())
            .with_attribute(KeyValue::new("service.version", VERSION))
            .build();
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(config.sample_ratio))))
            .with_resource(resource)
            .build();
        CAPTURE_CONTENT.store(config.capture_content, Ordering::Relaxed);
        Ok(Self { provider })
    }

    /// The `tracing` layer that turns spans of target [`SPAN_TARGET`] (and only those) into
    /// OpenTelemetry spans for this pipeline.
    pub fn layer<S>(&self) -> impl Layer<S> + 'static
    where
        S: tracing::Subscriber + for<'span> LookupSpan<'span>,
    {
        otel_layer(Some(self.tracer()))
    }

    /// Exports every span that has ended so far, waiting for the collector's answer.
    ///
    /// # Errors
    /// When the export failed or timed out.
    pub fn force_flush(&self) -> Result<(), TraceError> {
        self.provider.force_flush().map_err(|e| TraceError::Export(e.to_string()))
    }

    pub(crate) fn tracer(&self) -> SdkTracer {
        let scope = InstrumentationScope::builder(SCOPE).with_version(VERSION).build();
        self.provider.tracer_with_scope(scope)
    }
}

impl Drop for TraceGuard {
    fn drop(&mut self) {
        CAPTURE_CONTENT.store(false, Ordering::Relaxed);
        if let Err(err) = self.provider.shutdown() {
            tracing::warn!("the last spans may not have been exported: {err}");
        }
    }
}

/// The OpenTelemetry layer over `tracer` (when there is one), taking spans of [`SPAN_TARGET`]
/// only. Without a tracer the filter refuses everything, so that trace spans are disabled at
/// their call site (an empty layer alone would enable every span). Thread, source-location,
/// target and busy/idle attributes are left out: they say nothing about the traffic and cost
/// a few allocations per span.
pub(crate) fn otel_layer<S>(tracer: Option<SdkTracer>) -> impl Layer<S> + 'static
where
    S: tracing::Subscriber + for<'span> LookupSpan<'span>,
{
    let on = tracer.is_some();
    let layer = tracer.map(|tracer| {
        tracing_opentelemetry::layer()
            .with_tracer(tracer)
            .with_location(false)
            .with_threads(false)
            .with_target(false)
            .with_tracked_inactivity(false)
    });
    // A static filter (decided once per callsite, where a filter function would be asked
    // again each time any span or event of the process fires): only the trace spans, and
    // nothing at all with traces off.
    let targets = if on {
        tracing_subscriber::filter::Targets::new().with_target(SPAN_TARGET, tracing::Level::TRACE)
    } else {
        tracing_subscriber::filter::Targets::new()
    };
    layer.with_filter(targets)
}

/// The OTLP exporter for `config`.
fn exporter(config: &TraceConfig) -> Result<opentelemetry_otlp::SpanExporter, TraceError> {
    let endpoint = config.endpoint.trim();
    let invalid = |reason: String| TraceError::Endpoint { endpoint: config.endpoint.clone(), reason };
    let uri: http::Uri = endpoint.parse().map_err(|e| invalid(format!("is not a URL: {e}")))?;
    let https = match uri.scheme_str() {
        Some("http") => false,
        Some("https") => true,
        _ => return Err(invalid("is not an http:// or https:// URL".to_owned())),
    };
    if uri.host().is_none_or(str::is_empty) {
        return Err(invalid("names no host".to_owned()));
    }
    let mut headers = http::HeaderMap::new();
    for (name, value) in &config.headers {
        let header = |what| TraceError::Header { name: name.clone(), what };
        let name = http::HeaderName::from_bytes(name.as_bytes()).map_err(|_| header("name"))?;
        let mut value = http::HeaderValue::from_str(value).map_err(|_| header("value"))?;
        value.set_sensitive(true);
        headers.append(name, value);
    }
    // Both transports use rustls with *ring*, as the upstream client does; a process-wide
    // default is needed by reqwest built without one, and installing it twice is harmless.
    let _already_installed = rustls::crypto::ring::default_provider().install_default();
    let built = match config.protocol {
        TraceProtocol::Http => {
            let headers: HashMap<String, String> = headers
                .iter()
                .filter_map(|(name, value)| Some((name.as_str().to_owned(), value.to_str().ok()?.to_owned())))
                .collect();
            opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
                .with_endpoint(http_endpoint(endpoint))
                .with_headers(headers)
                .build()
        }
        TraceProtocol::Grpc => {
            let builder = opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_endpoint(endpoint)
                .with_metadata(opentelemetry_otlp::tonic_types::metadata::MetadataMap::from_headers(headers));
            let builder = if https {
                let tls =
                    opentelemetry_otlp::tonic_types::transport::ClientTlsConfig::new().with_enabled_roots();
                builder.with_tls_config(tls)
            } else {
                builder
            };
            builder.build()
        }
    };
    built.map_err(|e| invalid(format!("cannot be exported to: {e}")))
}

/// The OTLP/HTTP traces URL for a configured base URL (as `OTEL_EXPORTER_OTLP_ENDPOINT` is).
fn http_endpoint(base: &str) -> String {
    let base = base.trim_end_matches('/');
    if base.ends_with("/v1/traces") { base.to_owned() } else { format!("{base}/v1/traces") }
}

/// Runs each export on the gateway's Tokio runtime. The batch span processor exports from its
/// own thread with a plain executor; the OTLP clients (reqwest, tonic) need a Tokio reactor.
#[derive(Debug)]
struct OnRuntime {
    exporter: Arc<opentelemetry_otlp::SpanExporter>,
    runtime: tokio::runtime::Handle,
}

impl SpanExporter for OnRuntime {
    fn export(&self, batch: Vec<SpanData>) -> impl Future<Output = OTelSdkResult> + Send {
        let exporter = Arc::clone(&self.exporter);
        let task = self.runtime.spawn(async move { exporter.export(batch).await });
        async move {
            // A runtime already shut down cancels the task: the batch is lost, not hung.
            task.await
                .unwrap_or_else(|e| Err(OTelSdkError::InternalFailure(format!("the export task ended: {e}"))))
        }
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.exporter.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.exporter.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        // Called once while the provider is built, before any export holds a clone.
        if let Some(exporter) = Arc::get_mut(&mut self.exporter) {
            exporter.set_resource(resource);
        }
    }
}

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

#[cfg(test)]
pub(crate) mod tests {
    use opentelemetry::trace::{SpanId, TraceId};
    use opentelemetry_sdk::trace::InMemorySpanExporter;
    use tracing_subscriber::layer::SubscriberExt as _;

    use super::*;

    /// A pipeline exporting to memory, each span as it ends.
    pub(crate) fn in_memory_pipeline() -> (SdkTracerProvider, InMemorySpanExporter) {
        let exporter = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder().with_simple_exporter(exporter.clone()).build();
        (provider, exporter)
    }

    /// A subscriber exporting to memory through the same layer as the real pipeline.
    pub(crate) fn in_memory()
    -> (impl tracing::Subscriber + Send + Sync, SdkTracerProvider, InMemorySpanExporter) {
        let (provider, exporter) = in_memory_pipeline();
        let subscriber = tracing_subscriber::registry().with(otel_layer(Some(provider.tracer(SCOPE))));
        (subscriber, provider, exporter)
    }

    const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
    const PARENT: &str = "00f067aa0ba902b7";

    fn traceparent(flags: &str) -> http::HeaderMap {
        let mut headers = http::HeaderMap::new();
        let value = format!("00-{TRACE}-{PARENT}-{flags}");
        headers.insert("traceparent", value.parse().unwrap());
        headers.insert("tracestate", "vendor=value".parse().unwrap());
        headers
    }

    #[test]
    fn a_span_joins_the_trace_the_client_started() {
        let (subscriber, provider, exporter) = in_memory();
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!(target: SPAN_TARGET, "request", otel.name = "chat m");
            set_parent(&span, &traceparent("01"));
            span.in_scope(|| {});
        });
        provider.force_flush().unwrap();
        let spans = exporter.get_finished_spans().unwrap();
        assert_eq!(spans.len(), 1);
        let span = &spans[0];
        assert_eq!(span.name, "chat m");
        assert_eq!(span.span_context.trace_id(), TraceId::from_hex(TRACE).unwrap());
        assert_eq!(span.parent_span_id, SpanId::from_hex(PARENT).unwrap());
        assert!(span.parent_span_is_remote);
        assert_eq!(span.span_context.trace_state().header(), "vendor=value");
    }

    #[test]
    fn a_client_that_did_not_sample_is_obeyed() {
        let (subscriber, provider, exporter) = in_memory();
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!(target: SPAN_TARGET, "request");
            set_parent(&span, &traceparent("00"));
            span.in_scope(|| {});
        });
        provider.force_flush().unwrap();
        assert!(exporter.get_finished_spans().unwrap().is_empty());
    }

    #[test]
    fn without_a_valid_traceparent_a_span_starts_its_own_trace() {
        let (subscriber, provider, exporter) = in_memory();
        tracing::subscriber::with_default(subscriber, || {
            let mut headers = http::HeaderMap::new();
            headers.insert("traceparent", "00-not-a-trace-01".parse().unwrap());
            let span = tracing::info_span!(target: SPAN_TARGET, "request");
            set_parent(&span, &headers);
            span.in_scope(|| {});
        });
        provider.force_flush().unwrap();
        let spans = exporter.get_finished_spans().unwrap();
        assert_eq!(spans.len(), 1);
        assert_eq!(spans[0].parent_span_id, SpanId::INVALID);
    }

    #[test]
    fn spans_of_other_targets_are_not_traced() {
        let (subscriber, provider, exporter) = in_memory();
        tracing::subscriber::with_default(subscriber, || {
            tracing::info_span!("a log span").in_scope(|| {});
        });
        provider.force_flush().unwrap();
        assert!(exporter.get_finished_spans().unwrap().is_empty());
    }

    #[test]
    fn set_parent_without_a_trace_layer_does_nothing() {
        // No subscriber: the span is disabled.
        set_parent(&tracing::info_span!(target: SPAN_TARGET, "request"), &traceparent("01"));
    }

    #[test]
    fn the_http_endpoint_is_a_base_url() {
        assert_eq!(http_endpoint("http://c:4318"), "http://c:4318/v1/traces");
        assert_eq!(http_endpoint("http://c:4318/"), "http://c:4318/v1/traces");
        assert_eq!(http_endpoint("https://c/otlp"), "https://c/otlp/v1/traces");
        assert_eq!(http_endpoint("http://c:4318/v1/traces"), "http://c:4318/v1/traces");
    }

    #[tokio::test]
    async fn bad_settings_are_named() {
        let start = |config: TraceConfig| TraceGuard::start(&config).err().map(|e| e.to_string());
        let message = start(TraceConfig::new("collector:4318")).unwrap();
        assert!(message.starts_with("telemetry.traces.endpoint: `collector:4318`"), "{message}");
        let message = start(TraceConfig::new("http://")).unwrap();
        assert!(message.starts_with("telemetry.traces.endpoint: `http://`"), "{message}");
        let mut config = TraceConfig::new("http://127.0.0.1:4318");
        config.headers.push(("x key".into(), "v".into()));
        assert_eq!(start(config).unwrap(), "telemetry.traces.headers: `x key` is not a valid header name");
        let mut config = TraceConfig::new("http://127.0.0.1:4318");
        config.sample_ratio = 1.5;
        assert_eq!(start(config).unwrap(), "telemetry.traces.sample_ratio: 1.5 is not between 0.0 and 1.0");
        let mut config = TraceConfig::new("http://127.0.0.1:4318");
        config.headers.push(("authorization".into(), "Bearer secret".into()));
        assert!(!format!("{config:?}").contains("secret"));
    }

    #[test]
    fn traces_need_a_runtime() {
        let error = TraceGuard::start(&TraceConfig::new("http://127.0.0.1:4318")).unwrap_err();
        assert!(matches!(error, TraceError::NoRuntime));
    }
}
