//! `telemetry:`: metrics, traces and request logs.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::Secret;

/// `telemetry:`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    /// `GET /metrics`.
    pub metrics: MetricsConfig,
    /// OpenTelemetry traces over OTLP; off without it.
    pub traces: Option<TracesConfig>,
    /// Whether each request is logged, at info, in one line.
    pub request_logs: bool,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self { metrics: MetricsConfig::default(), traces: None, request_logs: true }
    }
}

/// `telemetry.metrics:`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Whether metrics are kept and served.
    pub enabled: bool,
    /// Whether `GET /metrics` needs the master key (when one is configured). Turn it off
    /// when only a trusted network reaches the gateway and the scraper cannot send a key.
    pub require_key: bool,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self { enabled: true, require_key: true }
    }
}

/// `telemetry.traces:`: where spans go.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TracesConfig {
    /// The collector: `http://host:4318` for OTLP over HTTP, `http://host:4317` for gRPC.
    pub endpoint: String,
    /// `http` (protobuf over HTTP, the default) or `grpc`.
    #[serde(default)]
    pub protocol: TraceProtocol,
    /// Share of new traces kept, 0.0 to 1.0; a trace the client started keeps its own decision.
    #[serde(default = "one")]
    pub sample_ratio: f64,
    /// `service.name` of the spans.
    #[serde(default = "service_name")]
    pub service_name: String,
    /// Whether prompts and completions are recorded on spans (off: they may hold personal data).
    #[serde(default)]
    pub capture_content: bool,
    /// Headers sent to the collector (an API key, for example).
    #[serde(default)]
    pub headers: BTreeMap<String, Secret>,
}

fn one() -> f64 {
    1.0
}

fn service_name() -> String {
    "switchyard".to_owned()
}

/// How spans are sent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TraceProtocol {
    /// OTLP, protobuf over HTTP (`/v1/traces`).
    #[default]
    Http,
    /// OTLP over gRPC.
    Grpc,
}

impl TelemetryConfig {
    pub(super) fn problems(&self, problems: &mut Vec<String>) {
        if let Some(traces) = &self.traces {
            if !(traces.endpoint.starts_with("http://") || traces.endpoint.starts_with("https://")) {
                problems.push(format!(
                    "telemetry.traces.endpoint: `{}` is not an http:// or https:// URL (e.g. http://127.0.0.1:4318)",
                    traces.endpoint
                ));
            }
            if !(0.0..=1.0).contains(&traces.sample_ratio) {
                problems.push(format!(
                    "telemetry.traces.sample_ratio: {} is not between 0.0 and 1.0",
                    traces.sample_ratio
                ));
            }
        }
    }
}
