//! An OpenTelemetry collector for the tests: it receives OTLP trace exports over HTTP
//! (`POST /v1/traces`, protobuf) and gRPC (`TraceService/Export`) on one loopback port,
//! decodes them with the OTLP protobuf types, and keeps every span.
//!
//! The `tracing` subscriber is global to a test binary, and the trace exporter runs on the
//! runtime it was started on; [`traces`] therefore starts the collector, a runtime of its own
//! and the subscriber once per binary, for every test of the binary to share. Tests tell their
//! spans apart by trace id.

use std::{
    collections::BTreeMap,
    convert::Infallible,
    net::SocketAddr,
    sync::{Arc, Mutex, OnceLock, PoisonError},
    time::Duration,
};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, combinators::UnsyncBoxBody};
use hyper::{Request, Response, body::Incoming, service::service_fn};
use hyper_util::{
    rt::{TokioExecutor, TokioIo},
    server::conn::auto,
};
use opentelemetry_proto::tonic::{
    collector::trace::v1::{
        ExportTraceServiceRequest, ExportTraceServiceResponse,
        trace_service_server::{TraceService, TraceServiceServer},
    },
    common::v1::{AnyValue, KeyValue, any_value::Value as Any},
    trace::v1::status::StatusCode,
};
use prost::Message;
use serde_json::Value;
use switchyard_telemetry::{
    logs::{self, LogFormat},
    trace::{TraceConfig, TraceProtocol},
};
use tokio::net::TcpListener;
use tower::Service;

/// One span as the collector received it. Ids are lowercase hex, as in `traceparent`.
#[derive(Debug, Clone)]
pub struct ReceivedSpan {
    /// How it came: `http` or `grpc`.
    pub protocol: &'static str,
    /// The trace id (32 hex digits).
    pub trace_id: String,
    /// The span id (16 hex digits).
    pub span_id: String,
    /// The parent's span id; empty for a root span.
    pub parent_span_id: String,
    /// The span's name.
    pub name: String,
    /// `SERVER`, `CLIENT`, `INTERNAL`, ...
    pub kind: String,
    /// Whether the status is `ERROR`.
    pub error: bool,
    /// The span's attributes.
    pub attributes: BTreeMap<String, Value>,
    /// The resource's attributes (`service.name`, ...).
    pub resource: BTreeMap<String, Value>,
    /// The instrumentation scope's name.
    pub scope: String,
    /// When it started, in nanoseconds since the epoch.
    pub start: u64,
}

impl ReceivedSpan {
    /// The attribute `key` as a string, if it is one.
    pub fn str(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).and_then(Value::as_str)
    }

    /// The attribute `key` as an integer, if it is one.
    pub fn int(&self, key: &str) -> Option<i64> {
        self.attributes.get(key).and_then(Value::as_i64)
    }
}

/// The collector: where it listens and what it received.
#[derive(Debug, Clone)]
pub struct Collector {
    addr: SocketAddr,
    spans: Arc<Mutex<Vec<ReceivedSpan>>>,
}

impl Collector {
    /// Listens on a free loopback port; serves on the current runtime.
    ///
    /// # Panics
    /// When no port can be bound.
    pub async fn start() -> Self {
        let listener = match TcpListener::bind(("127.0.0.1", 0)).await {
            Ok(listener) => listener,
            Err(err) => panic!("collector: cannot listen: {err}"),
        };
        let addr = match listener.local_addr() {
            Ok(addr) => addr,
            Err(err) => panic!("collector: no address: {err}"),
        };
        let collector = Self { addr, spans: Arc::default() };
        tokio::spawn(collector.clone().serve(listener));
        collector
    }

    /// `http://127.0.0.1:PORT`: the base URL for OTLP/HTTP, the server for gRPC.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every span of trace `trace_id` received so far.
    pub fn spans_of(&self, trace_id: &str) -> Vec<ReceivedSpan> {
        let spans = self.spans.lock().unwrap_or_else(PoisonError::into_inner);
        spans.iter().filter(|span| span.trace_id == trace_id).cloned().collect()
    }

    async fn serve(self, listener: TcpListener) {
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            let collector = self.clone();
            let grpc = TraceServiceServer::new(self.clone());
            tokio::spawn(async move {
                let service = service_fn(move |request: Request<Incoming>| {
                    let (collector, mut grpc) = (collector.clone(), grpc.clone());
                    async move {
                        if request
                            .headers()
                            .get("content-type")
                            .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
                        {
                            let Ok(response) = grpc.call(request).await;
                            Ok::<_, Infallible>(response.map(|body| body.map_err(Into::into).boxed_unsync()))
                        } else {
                            Ok(collector.http(request).await)
                        }
                    }
                });
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    }

    /// `POST /v1/traces`, protobuf.
    async fn http(&self, request: Request<Incoming>) -> Response<Body> {
        let respond = |status: u16, body: Vec<u8>| {
            let mut response =
                Response::new(Full::new(Bytes::from(body)).map_err(|never| match never {}).boxed_unsync());
            *response.status_mut() =
                hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
            response
                .headers_mut()
                .insert("content-type", hyper::header::HeaderValue::from_static("application/x-protobuf"));
            response
        };
        if request.method() != hyper::Method::POST || request.uri().path() != "/v1/traces" {
            return respond(404, Vec::new());
        }
        let Ok(body) = request.into_body().collect().await else { return respond(400, Vec::new()) };
        match ExportTraceServiceRequest::decode(body.to_bytes()) {
            Ok(export) => {
                self.keep("http", export);
                respond(200, ExportTraceServiceResponse::default().encode_to_vec())
            }
            Err(_) => respond(400, Vec::new()),
        }
    }

    fn keep(&self, protocol: &'static str, export: ExportTraceServiceRequest) {
        let mut kept = self.spans.lock().unwrap_or_else(PoisonError::into_inner);
        for resource_spans in export.resource_spans {
            let resource = attributes(resource_spans.resource.map(|r| r.attributes).unwrap_or_default());
            for scope_spans in resource_spans.scope_spans {
                let scope = scope_spans.scope.map(|s| s.name).unwrap_or_default();
                for span in scope_spans.spans {
                    let kind = span.kind().as_str_name().trim_start_matches("SPAN_KIND_").to_owned();
                    kept.push(ReceivedSpan {
                        protocol,
                        trace_id: hex(&span.trace_id),
                        span_id: hex(&span.span_id),
                        parent_span_id: hex(&span.parent_span_id),
                        name: span.name,
                        kind,
                        error: span.status.is_some_and(|s| s.code() == StatusCode::Error),
                        attributes: attributes(span.attributes),
                        resource: resource.clone(),
                        scope: scope.clone(),
                        start: span.start_time_unix_nano,
                    });
                }
            }
        }
    }
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.keep("grpc", request.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

type Body = UnsyncBoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn attributes(list: Vec<KeyValue>) -> BTreeMap<String, Value> {
    list.into_iter().map(|kv| (kv.key, value(kv.value))).collect()
}

fn value(value: Option<AnyValue>) -> Value {
    match value.and_then(|v| v.value) {
        Some(Any::StringValue(s)) => Value::from(s),
        Some(Any::IntValue(i)) => Value::from(i),
        Some(Any::DoubleValue(d)) => Value::from(d),
        Some(Any::BoolValue(b)) => Value::from(b),
        Some(other) => Value::from(format!("{other:?}")),
        None => Value::Null,
    }
}

/// The collector and the trace pipeline of this test binary.
pub struct Traces {
    /// Where spans go.
    pub collector: Collector,
    guard: logs::Guard,
    /// Runs the collector and the exports; never dropped (it is in a static).
    _runtime: tokio::runtime::Runtime,
}

impl Traces {
    /// Waits (up to 10 s, flushing the exporter every 50 ms) until the spans of `trace_id`
    /// satisfy `done`, and returns them, done or not.
    pub async fn wait_for(
        &'static self,
        trace_id: &str,
        done: impl Fn(&[ReceivedSpan]) -> bool,
    ) -> Vec<ReceivedSpan> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let spans = self.collector.spans_of(trace_id);
            if done(&spans) || tokio::time::Instant::now() >= deadline {
                return spans;
            }
            if let Some(traces) = self.guard.traces() {
                // A blocking wait for the export (which runs on the collector's runtime).
                let _ = tokio::task::spawn_blocking(move || traces.force_flush()).await;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

static TRACES: OnceLock<Traces> = OnceLock::new();

/// Starts, once per test binary, the collector and the global subscriber exporting to it over
/// `protocol` with `logs::init`, as `switchyard serve` does.
///
/// # Panics
/// When they cannot start.
pub fn traces(protocol: TraceProtocol) -> &'static Traces {
    traces_with(protocol, false)
}

/// [`traces`], with prompts and completions on spans when `capture_content` (the first call
/// in a test binary decides).
///
/// # Panics
/// When they cannot start.
pub fn traces_with(protocol: TraceProtocol, capture_content: bool) -> &'static Traces {
    // On a thread of its own: the caller is usually a test's runtime, which cannot block on
    // another.
    TRACES.get_or_init(|| match std::thread::spawn(move || start(protocol, capture_content)).join() {
        Ok(traces) => traces,
        Err(_) => panic!("traces did not start"),
    })
}

fn start(protocol: TraceProtocol, capture_content: bool) -> Traces {
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build() {
        Ok(runtime) => runtime,
        Err(err) => panic!("collector runtime: {err}"),
    };
    let collector = runtime.block_on(Collector::start());
    let mut config = TraceConfig::new(collector.url());
    config.protocol = protocol;
    config.service_name = "switchyard-e2e".to_owned();
    config.capture_content = capture_content;
    let guard = match runtime.block_on(async { logs::init(LogFormat::Text, Some(config)) }) {
        Ok(guard) => guard,
        Err(err) => panic!("traces did not start: {err}"),
    };
    Traces { collector, guard, _runtime: runtime }
}

/// Hex digits for a new trace id (32) or span id (16), different on each call.
pub fn random_id(digits: usize) -> String {
    // A leading non-zero digit: an all-zero id is invalid.
    (0..digits).map(|i| char::from_digit(fastrand::u32(u32::from(i == 0)..16), 16).unwrap_or('1')).collect()
}
