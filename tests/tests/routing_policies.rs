//! End to end: how a model's deployments share its traffic. lowest_latency keeps traffic off a
//! slow deployment, weighted_random follows the weights, and a deployment's `rpm` is a hard
//! limit: traffic moves to another deployment, or the client gets a 429 saying when to retry.

#![allow(clippy::unwrap_used, reason = "a failed unwrap is a failed test, with its message")]

use std::time::Duration;

use futures_util::{StreamExt, stream};
use serde_json::Value;
use switchyard_e2e::{Gateway, chat_body, client, within_one_minute};
use switchyard_testkit::{MockConfig, MockServer};

/// Sends one chat request for `model`; returns the status, the deployment that served it (empty
/// if none did) and the body.
async fn chat(http: &reqwest::Client, gateway: &Gateway, model: &str) -> (u16, String, reqwest::Response) {
    let response =
        http.post(gateway.url("/v1/chat/completions")).json(&chat_body(model, false)).send().await.unwrap();
    let deployment = response
        .headers()
        .get("x-switchyard-deployment")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    (response.status().as_u16(), deployment, response)
}

async fn mock(delay_ms: u64) -> MockServer {
    MockServer::start(MockConfig { delay: Duration::from_millis(delay_ms), ..MockConfig::default() })
        .await
        .unwrap()
}

#[tokio::test]
async fn lowest_latency_keeps_traffic_off_a_deployment_five_times_slower() {
    // 20 ms against 100 ms: a hiccup of the machine must last 100 ms to make the fast one look
    // slower, so that the test measures the policy rather than the machine's load.
    let (fast, slow) = (mock(20).await, mock(100).await);
    let gateway = Gateway::start(&format!(
        "models:
  - name: m
    routing: {{policy: lowest_latency}}
    deployments:
      - {{provider: vllm, model: fast, api_base: '{}'}}
      - {{provider: vllm, model: slow, api_base: '{}'}}
",
        fast.url(),
        slow.url()
    ))
    .await;
    let http = client();
    for _ in 0..200 {
        let (status, _, response) = chat(&http, &gateway, "m").await;
        assert_eq!(status, 200, "{}", response.text().await.unwrap());
    }
    let (to_fast, to_slow) = (fast.stats().chat_completions, slow.stats().chat_completions);
    eprintln!("lowest_latency: fast received {to_fast}, slow {to_slow}");
    assert_eq!(to_fast + to_slow, 200);
    assert!(to_slow < 20, "the slow deployment received {to_slow} of 200 requests");
    assert!(to_slow >= 1, "a deployment without a latency estimate is tried first");
}

#[tokio::test]
async fn weighted_random_follows_the_weights() {
    let (heavy, light) = (mock(0).await, mock(0).await);
    let gateway = Gateway::start(&format!(
        "models:
  - name: m
    routing: {{policy: weighted_random}}
    deployments:
      - {{provider: vllm, model: heavy, api_base: '{}', weight: 3}}
      - {{provider: vllm, model: light, api_base: '{}', weight: 1}}
",
        heavy.url(),
        light.url()
    ))
    .await;
    let http = client();
    let statuses: Vec<u16> = stream::iter(0..400)
        .map(|_| async { chat(&http, &gateway, "m").await.0 })
        .buffer_unordered(8)
        .collect()
        .await;
    assert!(statuses.iter().all(|&s| s == 200), "{statuses:?}");
    let to_heavy = heavy.stats().chat_completions;
    eprintln!("weighted_random 3:1 over 400: heavy received {to_heavy}, light {}", 400 - to_heavy);
    assert_eq!(to_heavy + light.stats().chat_completions, 400);
    // 300 expected, with a standard deviation of 8.7: five of them either side.
    assert!((257..=343).contains(&to_heavy), "weight 3 of 4 received {to_heavy} of 400 requests");
}

#[tokio::test]
async fn a_deployment_at_its_rpm_sends_traffic_elsewhere() {
    let (limited, open) = (mock(0).await, mock(0).await);
    // Weighted towards the limited deployment, so that it reaches its limit within the run.
    let gateway = Gateway::start(&format!(
        "models:
  - name: m
    deployments:
      - {{provider: vllm, model: limited, api_base: '{}', rpm: 5, weight: 9}}
      - {{provider: vllm, model: open, api_base: '{}'}}
",
        limited.url(),
        open.url()
    ))
    .await;
    within_one_minute(Duration::from_secs(10)).await;
    let http = client();
    let mut served = Vec::new();
    for _ in 0..30 {
        let (status, deployment, response) = chat(&http, &gateway, "m").await;
        assert_eq!(status, 200, "{}", response.text().await.unwrap());
        served.push(deployment);
    }
    assert_eq!(limited.stats().requests, 5, "rpm: 5 is a hard limit: {served:?}");
    let fifth = served.iter().enumerate().filter(|(_, d)| *d == "vllm/limited").nth(4).unwrap().0;
    assert!(
        served[fifth + 1..].iter().all(|d| d == "vllm/open"),
        "after the limited deployment's fifth request, everything went to the other: {served:?}"
    );
}

#[tokio::test]
async fn a_model_at_its_rpm_answers_429_with_retry_after() {
    let only = mock(0).await;
    let gateway = Gateway::start(&format!(
        "models:\n  - name: m\n    deployments:\n      - {{provider: vllm, model: up, api_base: '{}', rpm: 3}}\n",
        only.url()
    ))
    .await;
    // At least 10 s left in the minute: the window does not turn during the test, and the
    // Retry-After (the rest of the minute) is beyond what the gateway waits for itself.
    within_one_minute(Duration::from_secs(10)).await;
    let http = client();
    for _ in 0..3 {
        assert_eq!(chat(&http, &gateway, "m").await.0, 200);
    }
    let (status, _, response) = chat(&http, &gateway, "m").await;
    assert_eq!(status, 429);
    let retry_after: u64 = response.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry_after), "until the next minute: {retry_after}");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["type"], "rate_limit_error", "{body}");
    assert_eq!(body["error"]["code"], "deployment_capacity", "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("rpm"), "{body}");
    assert_eq!(only.stats().requests, 3, "the fourth never reached the provider");
}
