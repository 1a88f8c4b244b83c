//! End to end: a key's rate limits and budget, and a model's limits, refuse requests with 429,
//! `Retry-After` and OpenAI's `x-ratelimit-*` headers; fifty concurrent requests against a
//! budget that allows ten admit ten.

#![allow(clippy::unwrap_used, reason = "a failed unwrap is a failed test, with its message")]

use std::time::Duration;

use serde_json::{Value, json};
use switchyard_e2e::{Gateway, client, within_one_minute};
use switchyard_testkit::{MockConfig, MockServer};

const MASTER: &str = "sk-master-test-key";

fn config(mock: &MockServer, model_limits: &str) -> String {
    let base = mock.url();
    format!(
        "server:\n  master_key: {MASTER}\nmodels:\n\
         \x20 - name: priced\n{model_limits}    deployments:\n      - {{provider: openai, model: up, api_base: '{base}', api_key: sk-upstream-0123456789, price: {{input: 1000.0, output: 1000.0}}}}\n"
    )
}

async fn create_key(gateway: &Gateway, body: Value) -> String {
    let response =
        client().post(gateway.url("/admin/keys")).bearer_auth(MASTER).json(&body).send().await.unwrap();
    assert_eq!(response.status(), 201);
    let created: Value = response.json().await.unwrap();
    created["key"].as_str().unwrap().to_owned()
}

/// A small chat request: `max_tokens` bounds what admission reserves.
fn body() -> Value {
    json!({"model": "priced", "max_tokens": 4, "messages": [{"role": "user", "content": "hi"}]})
}

async fn send(gateway: &Gateway, key: &str) -> reqwest::Response {
    client().post(gateway.url("/v1/chat/completions")).bearer_auth(key).json(&body()).send().await.unwrap()
}

#[tokio::test]
async fn a_keys_rpm_refuses_the_request_past_it_with_retry_after_and_ratelimit_headers() {
    within_one_minute(Duration::from_secs(10)).await;
    let mock = MockServer::start(MockConfig::default()).await.unwrap();
    let gateway = Gateway::start(&config(&mock, "")).await;
    let key = create_key(&gateway, json!({"limits": {"rpm": 3}})).await;
    for n in 0..3 {
        let response = send(&gateway, &key).await;
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["x-ratelimit-limit-requests"], "3");
        assert_eq!(response.headers()["x-ratelimit-remaining-requests"], (2 - n).to_string().as_str());
    }
    let refused = send(&gateway, &key).await;
    assert_eq!(refused.status(), 429);
    let retry_after: u64 = refused.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry_after), "until the minute ends: {retry_after}");
    assert_eq!(refused.headers()["x-ratelimit-remaining-requests"], "0");
    let error: Value = refused.json().await.unwrap();
    assert_eq!(error["error"]["type"], "rate_limit_error");
    assert!(error["error"]["message"].as_str().unwrap().contains("3 requests per minute"), "{error}");
    assert_eq!(mock.stats().chat_completions, 3, "the refused request never reached the provider");
}

#[tokio::test]
async fn a_models_max_parallel_holds_for_all_clients_together() {
    let mock = MockServer::start(MockConfig { delay: Duration::from_millis(300), ..MockConfig::default() })
        .await
        .unwrap();
    let gateway = Gateway::start(&config(&mock, "    limits: {max_parallel: 2}\n")).await;
    let key = create_key(&gateway, json!({})).await;
    let sends = (0..5).map(|_| send(&gateway, &key));
    let statuses: Vec<u16> =
        futures_util::future::join_all(sends).await.iter().map(|r| r.status().as_u16()).collect();
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 2, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 429).count(), 3, "{statuses:?}");
    // Finished requests give their place back.
    assert_eq!(send(&gateway, &key).await.status(), 200);
}

#[tokio::test]
async fn fifty_concurrent_requests_against_a_budget_for_ten_admit_ten() {
    let mock = MockServer::start(MockConfig { delay: Duration::from_millis(100), ..MockConfig::default() })
        .await
        .unwrap();
    let gateway = Gateway::start(&config(&mock, "")).await;
    // What one request costs here: its prompt and output at $1000 per million tokens.
    let probe = create_key(&gateway, json!({})).await;
    let response = send(&gateway, &probe).await;
    let one: f64 = response.headers()["x-switchyard-cost-usd"].to_str().unwrap().parse().unwrap();
    assert!(one > 0.0);

    let budget = one * 10.0;
    let key = create_key(&gateway, json!({"limits": {"budget_usd": budget, "budget_period": "daily"}})).await;
    let before = mock.stats().chat_completions;
    let sends = (0..50).map(|_| send(&gateway, &key));
    let responses = futures_util::future::join_all(sends).await;
    let concurrent = responses.iter().filter(|r| r.status() == 200).count();
    let refused: Vec<&reqwest::Response> = responses.iter().filter(|r| r.status() == 429).collect();
    assert_eq!(concurrent + refused.len(), 50);
    // Each admission reserves what a request may cost (its prompt estimate and max_tokens),
    // at least what one really costs: however many arrive at once, no more than ten fit.
    assert!((1..=10).contains(&concurrent), "admitted {concurrent} of 50 at once against a budget for 10");
    assert_eq!(refused[0].headers()["x-should-retry"], "false", "a spent budget is not worth retrying");

    // As they settle, the reservations are replaced by the real cost, and the rest of the
    // budget admits more, one at a time, until exactly ten have been served.
    let mut admitted = concurrent;
    loop {
        let response = send(&gateway, &key).await;
        if response.status() != 200 {
            assert_eq!(response.status(), 429);
            let error: Value = response.json().await.unwrap();
            assert_eq!(error["error"]["code"], "budget_exceeded");
            assert!(error["error"]["message"].as_str().unwrap().contains("daily budget"), "{error}");
            break;
        }
        admitted += 1;
        assert!(admitted <= 10, "the budget admitted more than ten requests");
    }
    assert_eq!(admitted, 10, "a budget for ten requests serves ten");
    assert_eq!(mock.stats().chat_completions - before, 10, "the provider saw only the admitted ones");
}
