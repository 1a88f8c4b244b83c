//! [`Metrics`]: the Prometheus metrics of the gateway, exposed in the OpenMetrics text format
//! (which Prometheus scrapes natively) by `prometheus-client`, the Prometheus project's own
//! Rust client.
//!
//! Per request ([`Metrics::observe`]): requests by operation, model, deployment, provider,
//! status and error class; latency of the whole request, of each upstream attempt, time to
//! first token, and the gateway's own overhead; tokens by kind; cost; attempts by outcome,
//! retries and fallbacks; requests refused before any deployment was tried. At scrape time
//! ([`Metrics::encode`]): each deployment's health, requests in flight and cooldowns, read
//! from the route table.
//!
//! Recording takes no allocation: label values are the configuration's own shared strings.

use std::{
    fmt::{self, Write as _},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};

use prometheus_client::{
    encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder},
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};
use switchyard_router::{RouteTable, health::State};
use switchyard_types::llm::ErrorClass;

use crate::RequestRecord;

/// The content type of [`Metrics::encode`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Seconds, for requests and first tokens: from 5 ms to 2 min.
const LATENCY_BUCKETS: [f64; 14] =
    [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0];
/// Seconds, for the gateway's own time: from 10 µs to 100 ms.
const OVERHEAD_BUCKETS: [f64; 12] =
    [0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1];

/// A label value shared with the configuration (a model or deployment name).
#[derive(Debug, Clone, Hash, PartialEq, Eq)]
struct Name(Arc<str>);

impl EncodeLabelValue for Name {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), fmt::Error> {
        encoder.write_str(&self.0)
    }
}

fn none() -> Name {
    static EMPTY: std::sync::OnceLock<Arc<str>> = std::sync::OnceLock::new();
    Name(Arc::clone(EMPTY.get_or_init(|| Arc::from(""))))
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    operation: &'static str,
    model: Name,
    deployment: Name,
    provider: Name,
    status: u64,
    error_class: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ModelLabels {
    operation: &'static str,
    model: Name,
    stream: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DeploymentLabels {
    model: Name,
    deployment: Name,
    provider: Name,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AttemptLabels {
    model: Name,
    deployment: Name,
    provider: Name,
    outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TokenLabels {
    model: Name,
    deployment: Name,
    kind: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FallbackLabels {
    model: Name,
    fallback: Name,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RefusalLabels {
    model: Name,
    reason: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndpointLabels {
    model: Name,
    deployment: Name,
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

fn latency() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

/// Every metric of the gateway.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    duration: Histograms<ModelLabels>,
    upstream: Histograms<AttemptLabels>,
    first_token: Histograms<DeploymentLabels>,
    overhead: Histogram,
    tokens: Family<TokenLabels, Counter>,
    cost: Family<DeploymentLabels, Counter<f64, AtomicU64>>,
    attempts: Family<AttemptLabels, Counter>,
    retries: Family<EndpointLabels, Counter>,
    fallbacks: Family<FallbackLabels, Counter>,
    refused: Family<RefusalLabels, Counter>,
    in_flight: Gauge,
    deployment_up: Family<EndpointLabels, Gauge>,
    deployment_in_flight: Family<EndpointLabels, Gauge>,
    deployment_cooldowns: Family<EndpointLabels, Counter>,
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Holds a request in `switchyard_in_flight_requests` until dropped.
#[derive(Debug)]
pub struct InFlight(Gauge);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

// === impl Metrics ===

impl Metrics {
    /// Every metric, registered and at zero.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("switchyard");
        let requests = Family::default();
        registry.register(
            "requests",
            "Requests answered, by operation, model, serving deployment, provider, HTTP status and error class",
            requests.clone(),
        );
        let duration = Histograms::<ModelLabels>::new_with_constructor(latency as fn() -> Histogram);
        registry.register(
            "request_duration_seconds",
            "Time from a request's arrival to the end of its answer (a stream's last chunk)",
            duration.clone(),
        );
        let upstream = Histograms::<AttemptLabels>::new_with_constructor(latency as fn() -> Histogram);
        registry.register(
            "upstream_duration_seconds",
            "Time a deployment took to answer one attempt (to its first chunk for streams)",
            upstream.clone(),
        );
        let first_token = Histograms::<DeploymentLabels>::new_with_constructor(latency as fn() -> Histogram);
        registry.register(
            "time_to_first_token_seconds",
            "Streams: time from the request's arrival to its first chunk leaving the gateway",
            first_token.clone(),
        );
        let overhead = Histogram::new(OVERHEAD_BUCKETS);
        registry.register(
            "overhead_seconds",
            "The gateway's own time per request: total until the answer (or first chunk) left, less provider time and waits between attempts",
            overhead.clone(),
        );
        let tokens = Family::default();
        registry.register(
            "tokens",
            "Tokens the providers reported, by kind (input, output, cached_input, reasoning)",
            tokens.clone(),
        );
        let cost = Family::default();
        registry.register("cost_usd", "Dollars spent, for deployments with a configured price", cost.clone());
        let attempts = Family::default();
        registry.register(
            "attempts",
            "Routing attempts, by deployment and outcome (success or the failure's class)",
            attempts.clone(),
        );
        let retries = Family::default();
        registry.register("retries", "Attempts after the first within the same model", retries.clone());
        let fallbacks = Family::default();
        registry.register("fallbacks", "Requests that moved on to a fallback model", fallbacks.clone());
        let refused = Family::default();
        registry.register(
            "refused",
            "Requests refused before any deployment was tried, by reason (deployment_capacity, ...)",
            refused.clone(),
        );
        let in_flight = Gauge::default();
        registry.register("in_flight_requests", "Requests being served now", in_flight.clone());
        let deployment_up = Family::default();
        registry.register(
            "deployment_up",
            "1 when a deployment is in rotation (or being probed), 0 while it cools down",
            deployment_up.clone(),
        );
        let deployment_in_flight = Family::default();
        registry.register(
            "deployment_in_flight_requests",
            "Requests in flight per deployment",
            deployment_in_flight.clone(),
        );
        let deployment_cooldowns = Family::default();
        registry.register(
            "deployment_cooldowns",
            "Times a deployment was taken out of rotation",
            deployment_cooldowns.clone(),
        );
        Self {
            registry,
            requests,
            duration,
            upstream,
            first_token,
            overhead,
            tokens,
            cost,
            attempts,
            retries,
            fallbacks,
            refused,
            in_flight,
            deployment_up,
            deployment_in_flight,
            deployment_cooldowns,
        }
    }

    /// Counts a request in flight until the returned guard is dropped.
    pub fn start(&self) -> InFlight {
        self.in_flight.inc();
        InFlight(self.in_flight.clone())
    }

    /// Records a finished request.
    pub fn observe(&self, record: &RequestRecord) {
        let model = record.model.clone().map_or_else(none, Name);
        let served = record.served();
        let (deployment, provider) = served.map_or_else(
            || (none(), none()),
            |a| (Name(Arc::clone(&a.deployment)), Name(Arc::clone(&a.provider))),
        );
        self.requests
            .get_or_create(&RequestLabels {
                operation: record.operation,
                model: model.clone(),
                deployment: deployment.clone(),
                provider: provider.clone(),
                status: u64::from(record.status),
                error_class: record.error.map_or("", ErrorClass::as_str),
            })
            .inc();
        self.duration
            .get_or_create(&ModelLabels {
                operation: record.operation,
                model: model.clone(),
                stream: if record.stream { "true" } else { "false" },
            })
            .observe(record.duration.as_secs_f64());
        if let Some(overhead) = record.overhead {
            self.overhead.observe(overhead.as_secs_f64());
        }
        if let (Some(ttft), Some(served)) = (record.time_to_first_token, served) {
            self.first_token
                .get_or_create(&DeploymentLabels {
                    model: Name(Arc::clone(&served.model)),
                    deployment: deployment.clone(),
                    provider: provider.clone(),
                })
                .observe(ttft.as_secs_f64());
        }
        self.observe_attempts(record, &model);
        if record.attempts.is_empty() && record.error == Some(ErrorClass::RateLimited) {
            self.refused.get_or_create(&RefusalLabels { model, reason: "deployment_capacity" }).inc();
        }
        let Some(served) = served else { return };
        let served_model = Name(Arc::clone(&served.model));
        if let Some(usage) = record.usage {
            for (kind, count) in [
                ("input", usage.input),
                ("output", usage.output),
                ("cached_input", usage.cached_input),
                ("reasoning", usage.reasoning),
            ] {
                if count > 0 {
                    self.tokens
                        .get_or_create(&TokenLabels {
                            model: served_model.clone(),
                            deployment: deployment.clone(),
                            kind,
                        })
                        .inc_by(count);
                }
            }
        }
        if let Some(cost) = record.cost_usd {
            self.cost
                .get_or_create(&DeploymentLabels { model: served_model, deployment, provider })
                .inc_by(cost);
        }
    }

    fn observe_attempts(&self, record: &RequestRecord, requested: &Name) {
        // The model the previous attempt was routed in. A first attempt in another model than
        // the requested one is a fallback too: the requested model could take nothing (every
        // deployment at capacity) and the request went straight to a fallback.
        let mut previous: Option<&str> = None;
        for attempt in &record.attempts {
            let labels = AttemptLabels {
                model: Name(Arc::clone(&attempt.model)),
                deployment: Name(Arc::clone(&attempt.deployment)),
                provider: Name(Arc::clone(&attempt.provider)),
                outcome: attempt.failure.map_or("success", ErrorClass::as_str),
            };
            self.upstream.get_or_create(&labels).observe(attempt.elapsed.as_secs_f64());
            self.attempts.get_or_create(&labels).inc();
            match previous {
                Some(model) if model == &*attempt.model => {
                    self.retries
                        .get_or_create(&EndpointLabels { model: labels.model, deployment: labels.deployment })
                        .inc();
                }
                None if *requested.0 == *attempt.model => {}
                _ => {
                    self.fallbacks
                        .get_or_create(&FallbackLabels { model: requested.clone(), fallback: labels.model })
                        .inc();
                }
            }
            previous = Some(&attempt.model);
        }
    }

    /// The metrics in the OpenMetrics text format, with each deployment's state read from
    /// `table` now.
    pub fn encode(&self, table: Option<&RouteTable>) -> String {
        if let Some(table) = table {
            self.read_deployments(table);
        }
        let mut text = String::with_capacity(16 * 1024);
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }

    fn read_deployments(&self, table: &RouteTable) {
        let now = tokio::time::Instant::now();
        for group in table.groups() {
            let model = Name(Arc::from(group.name()));
            for endpoint in group.endpoints() {
                let labels =
                    EndpointLabels { model: model.clone(), deployment: Name(Arc::clone(&endpoint.label)) };
                let up = !matches!(endpoint.health(), State::Cooling { until, .. } if until > now);
                self.deployment_up.get_or_create(&labels).set(i64::from(up));
                self.deployment_in_flight.get_or_create(&labels).set(i64::from(endpoint.in_flight()));
                // A counter kept by the router: the metric mirrors it.
                self.deployment_cooldowns
                    .get_or_create(&labels)
                    .inner()
                    .store(endpoint.cooldowns(), Ordering::Relaxed);
            }
        }
    }
}

#[cfg(test)]
mod tests;
