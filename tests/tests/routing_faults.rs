//! End to end, the routing acceptance test: a deployment that fails 30% of its requests (500s,
//! 429s, hangs, resets before the headers and before the first chunk) beside a healthy one costs
//! clients no errors, only some latency, and is cooled down so that it gets far less than its
//! share of the traffic.

#![allow(clippy::unwrap_used, reason = "a failed unwrap is a failed test, with its message")]

use std::time::{Duration, Instant};

use futures_util::{StreamExt, stream};
use serde_json::{Value, json};
use switchyard_e2e::{Gateway, chat_body, client, sse_data};
use switchyard_testkit::{Fault, MockConfig, MockServer, RandomFaults};

/// Requests sent, every fourth one streamed.
const REQUESTS: usize = 1000;
/// Requests in flight at once.
const IN_FLIGHT: usize = 8;
/// Seeds the primary's faults: the n-th request to reach it gets the same fault on every run.
/// With this seed the primary's first 18 requests meet every kind of fault of the mix, and no
/// two of its first 80 fail in a row: an early run of failures would double its cooldown
/// probe after probe, and the run would say little about the rest of the lifecycle.
const SEED: u64 = 7895;

/// What one client request saw.
struct Outcome {
    attempts: usize,
    deployment: String,
    latency: Duration,
    /// Why the client would have noticed a failure, if it would have.
    problem: Option<String>,
}

async fn send(http: &reqwest::Client, url: &str, streamed: bool) -> Outcome {
    let started = Instant::now();
    let response = http.post(url).json(&chat_body("m", streamed)).send().await.unwrap();
    let status = response.status().as_u16();
    let header = |name: &str| {
        response.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned()
    };
    let attempts = header("x-switchyard-attempts").parse().unwrap_or(0);
    let deployment = header("x-switchyard-deployment");
    let problem = if status != 200 {
        Some(format!("status {status}: {}", response.text().await.unwrap_or_default()))
    } else if streamed {
        let data = sse_data(response).await;
        let broken = data.iter().find(|d| d.contains("\"error\""));
        match (data.last().map(String::as_str), broken) {
            (_, Some(error)) => Some(format!("the stream carried an error event: {error}")),
            (Some("[DONE]"), None) => None,
            (last, None) => Some(format!("the stream did not end with [DONE] but with {last:?}")),
        }
    } else {
        let body: Value = response.json().await.unwrap();
        let content = &body["choices"][0]["message"]["content"];
        (!content.is_string()).then(|| format!("an answer without content: {body}"))
    };
    Outcome { attempts, deployment, latency: started.elapsed(), problem }
}

/// The `p`-th percentile (nearest rank) of `sorted`.
fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployment_failing_30_percent_costs_clients_latency_not_errors() {
    // Answers take 20 ms (streams: 20 ms to the first token, 2 ms between chunks), so that the
    // run lasts seconds and the primary goes through several cooldowns and probes.
    let answers = MockConfig {
        delay: Duration::from_millis(20),
        ttft: Duration::from_millis(20),
        chunk_delay: Duration::from_millis(2),
        chunks: 5,
        ..MockConfig::default()
    };
    let primary = MockServer::start(answers.clone()).await.unwrap();
    let secondary = MockServer::start(answers).await.unwrap();
    primary.set_random_faults(Some(
        RandomFaults::new(SEED, 30)
            .with(
                Fault::Status {
                    status: 500,
                    body: json!({"error": {"message": "The engine crashed", "type": "server_error"}}),
                },
                2,
            )
            .with(Fault::RateLimited { retry_after_secs: 1 }, 1)
            .with(Fault::Hang, 1)
            .with(Fault::ResetBeforeHeaders, 1)
            // Headers, then a reset before any event: a stream that fails before its first
            // chunk is a failed attempt (a request that is not streamed gets half a body).
            .with(Fault::ResetMidStream { after_chunks: 0 }, 1),
    ));
    // - retry_budget: the default floor (10 retries a second plus 20% of the traffic) keeps
    //   retries from multiplying an outage in production. Here 1,000 requests arrive within
    //   seconds and failures come in bursts (whenever the primary is probed back in), so a
    //   refused retry would be the budget doing its job, not routing failing; this test is
    //   about failover and cooldowns, so the budget is out of the way.
    // - cooldown: two failures in a row take the primary out for half a second, a 429 for its
    //   Retry-After of one second. A failed probe doubles the cooldown; the cap of one second
    //   (instead of five minutes) brings the primary back several times within the run, so
    //   that it keeps failing, cooling down and being probed back in throughout.
    // - ttft_timeout_ms cuts a hung stream at 150 ms. timeout_ms cuts a hung answer that is
    //   not streamed; it also bounds a whole stream, and a stream cut after its first chunk is
    //   an error the client sees, so it leaves room for a busy machine.
    let gateway = Gateway::start(&format!(
        "router:
  retries: 2
  retry_budget: {{min_per_second: 100000}}
  cooldown: {{failures: 2, duration_ms: 500, max_duration_ms: 1000}}
models:
  - name: m
    deployments:
      - {{provider: vllm, model: primary, api_base: '{}', timeout_ms: 500, ttft_timeout_ms: 150}}
      - {{provider: vllm, model: secondary, api_base: '{}'}}
",
        primary.url(),
        secondary.url()
    ))
    .await;

    let http = client();
    let url = gateway.url("/v1/chat/completions");
    let started = Instant::now();
    let outcomes: Vec<Outcome> = stream::iter(0..REQUESTS)
        .map(|i| send(&http, &url, i % 4 == 3))
        .buffer_unordered(IN_FLIGHT)
        .collect()
        .await;
    let wall = started.elapsed();

    let problems: Vec<&String> = outcomes.iter().filter_map(|o| o.problem.as_ref()).collect();
    assert!(
        problems.is_empty(),
        "{} of {REQUESTS} requests failed as the client sees it; the first: {:#?}",
        problems.len(),
        &problems[..problems.len().min(5)]
    );

    let (primary_stats, secondary_stats) = (primary.stats(), secondary.stats());
    let served_by = |label: &str| outcomes.iter().filter(|o| o.deployment == label).count() as u64;
    let (by_primary, by_secondary) = (served_by("vllm/primary"), served_by("vllm/secondary"));
    let mut single: Vec<Duration> = outcomes.iter().filter(|o| o.attempts == 1).map(|o| o.latency).collect();
    let mut retried: Vec<Duration> = outcomes.iter().filter(|o| o.attempts > 1).map(|o| o.latency).collect();
    single.sort();
    retried.sort();
    eprintln!(
        "routing_faults: {REQUESTS} requests, {IN_FLIGHT} in flight, {wall:?} in all\n  \
         1 attempt:  {:>4} requests, p50 {:?}, p99 {:?}\n  \
         >1 attempt: {:>4} requests, p50 {:?}, p99 {:?}\n  \
         primary:   {} requests ({} faulted: {:?}), served {by_primary}\n  \
         secondary: {} requests, served {by_secondary}",
        single.len(),
        percentile(&single, 50.0),
        percentile(&single, 99.0),
        retried.len(),
        percentile(&retried, 50.0),
        percentile(&retried, 99.0),
        primary_stats.requests,
        primary_stats.faults,
        primary_stats.faults_by_kind,
        secondary_stats.requests,
    );

    assert_eq!(by_primary + by_secondary, REQUESTS as u64, "every answer names who served it");
    assert!(outcomes.iter().all(|o| (1..=3).contains(&o.attempts)), "retries: 2 allows three attempts");
    assert!(!retried.is_empty(), "failed attempts on the primary were retried, and the header says so");
    let kinds = primary_stats.faults_by_kind;
    assert!(
        kinds.status > 0
            && kinds.rate_limited > 0
            && kinds.hang > 0
            && kinds.reset_before_headers > 0
            && kinds.reset_mid_stream > 0,
        "the primary met every kind of fault: {kinds:?}"
    );
    // Weighted random over two equal deployments would send the primary half of the first
    // attempts; cooldowns keep it well below that.
    assert!(
        primary_stats.requests < REQUESTS as u64 * 40 / 100,
        "the primary was not cooled down: it received {} of {REQUESTS} requests",
        primary_stats.requests
    );
    assert!(by_primary > 0, "the primary was probed back in and served again");
    assert!(by_primary <= primary_stats.requests - primary_stats.faults);
    assert_eq!(secondary_stats.faults, 0);
    assert_eq!(
        secondary_stats.chat_completions, by_secondary,
        "the secondary served every request it received, and the rest"
    );
}
