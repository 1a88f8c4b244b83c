//! Tests of the metrics: what a scrape shows after requests, parsed by a Prometheus parser.

use std::{sync::Arc, time::Duration};

use switchyard_router::attempts::Attempt;
use switchyard_types::llm::ErrorClass;

use super::*;
use crate::Usage;

fn record(attempts: Vec<Attempt>, status: u16, error: Option<ErrorClass>) -> RequestRecord {
    RequestRecord {
        operation: "chat",
        model: Some(Arc::from("m")),
        stream: false,
        status,
        error,
        attempts,
        usage: Some(Usage { input: 10, output: 5, cached_input: 4, reasoning: 0, ..Usage::default() }),
        cost_usd: Some(0.002),
        duration: Duration::from_millis(120),
        time_to_first_token: None,
        overhead: Some(Duration::from_micros(40)),
    }
}

/// The scrape as (metric name, labels, value) samples, through a real exposition parser.
fn scrape(metrics: &Metrics) -> Vec<prometheus_parse::Sample> {
    let text = metrics.encode(None);
    let lines = text.lines().map(|l| Ok(l.to_owned()));
    prometheus_parse::Scrape::parse(lines).expect("a valid exposition").samples
}

fn value(samples: &[prometheus_parse::Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples.iter().find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v))).map(
        |s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => f64::NAN,
        },
    )
}

#[test]
fn a_request_served_after_a_retry_and_a_fallback_shows_in_every_family() {
    let metrics = Metrics::new();
    let attempts = vec![
        Attempt::new("m", "p/a", "p", Some(ErrorClass::UpstreamServer), Duration::from_millis(5)),
        Attempt::new("m", "p/a", "p", Some(ErrorClass::Timeout), Duration::from_millis(50)),
        Attempt::new("f", "q/b", "q", None, Duration::from_millis(100)),
    ];
    metrics.observe(&record(attempts, 200, None));
    let samples = scrape(&metrics);

    let served = [("model", "m"), ("deployment", "q/b"), ("provider", "q"), ("status", "200")];
    assert_eq!(value(&samples, "switchyard_requests_total", &served), Some(1.0));
    assert_eq!(
        value(&samples, "switchyard_attempts_total", &[("deployment", "p/a"), ("outcome", "timeout")]),
        Some(1.0)
    );
    assert_eq!(
        value(&samples, "switchyard_attempts_total", &[("deployment", "q/b"), ("outcome", "success")]),
        Some(1.0)
    );
    assert_eq!(
        value(&samples, "switchyard_retries_total", &[("model", "m"), ("deployment", "p/a")]),
        Some(1.0)
    );
    assert_eq!(
        value(&samples, "switchyard_fallbacks_total", &[("model", "m"), ("fallback", "f")]),
        Some(1.0)
    );
    assert_eq!(value(&samples, "switchyard_tokens_total", &[("model", "f"), ("kind", "input")]), Some(10.0));
    assert_eq!(value(&samples, "switchyard_tokens_total", &[("kind", "cached_input")]), Some(4.0));
    assert_eq!(
        value(&samples, "switchyard_tokens_total", &[("kind", "reasoning")]),
        None,
        "zero counts are not created"
    );
    assert_eq!(value(&samples, "switchyard_cost_usd_total", &[("deployment", "q/b")]), Some(0.002));
    assert_eq!(value(&samples, "switchyard_request_duration_seconds_count", &[("model", "m")]), Some(1.0));
    assert_eq!(value(&samples, "switchyard_overhead_seconds_count", &[]), Some(1.0));
}

#[test]
fn a_failed_request_names_its_class_and_no_deployment() {
    let metrics = Metrics::new();
    let attempts =
        vec![Attempt::new("m", "p/a", "p", Some(ErrorClass::UpstreamServer), Duration::from_millis(5))];
    metrics.observe(&record(attempts, 502, Some(ErrorClass::UpstreamServer)));
    metrics.observe(&record(Vec::new(), 429, Some(ErrorClass::RateLimited)));
    let samples = scrape(&metrics);
    assert_eq!(
        value(
            &samples,
            "switchyard_requests_total",
            &[("status", "502"), ("error_class", "upstream_server_error"), ("deployment", "")]
        ),
        Some(1.0)
    );
    assert_eq!(value(&samples, "switchyard_refused_total", &[("reason", "deployment_capacity")]), Some(1.0));
    assert_eq!(
        value(&samples, "switchyard_tokens_total", &[]),
        None,
        "no deployment served: no tokens counted"
    );
}

#[test]
fn a_request_whose_model_took_nothing_and_fell_back_counts_a_fallback() {
    let metrics = Metrics::new();
    // `m` had no deployment with room (no attempt of its own); `f` served.
    let attempts = vec![Attempt::new("f", "q/b", "q", None, Duration::from_millis(5))];
    metrics.observe(&record(attempts, 200, None));
    let samples = scrape(&metrics);
    assert_eq!(
        value(&samples, "switchyard_fallbacks_total", &[("model", "m"), ("fallback", "f")]),
        Some(1.0)
    );
    assert_eq!(value(&samples, "switchyard_retries_total", &[]), None);
}

#[test]
fn requests_in_flight_are_counted_until_their_guard_drops() {
    let metrics = Metrics::new();
    let first = metrics.start();
    let second = metrics.start();
    assert_eq!(value(&scrape(&metrics), "switchyard_in_flight_requests", &[]), Some(2.0));
    drop((first, second));
    assert_eq!(value(&scrape(&metrics), "switchyard_in_flight_requests", &[]), Some(0.0));
}
