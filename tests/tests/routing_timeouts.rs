//! End to end: a deployment's time limits (to the first token, between chunks) and a client's
//! own deadline (`x-switchyard-timeout-ms`) cut slow answers short, fail over when another
//! deployment can serve, and say which limit expired.

#![allow(clippy::unwrap_used, reason = "a failed unwrap is a failed test, with its message")]

use std::time::{Duration, Instant};

use serde_json::Value;
use switchyard_e2e::{Gateway, chat_body, client, sse_data};
use switchyard_testkit::{MockConfig, MockServer};

/// Sends a chat request for `model` with extra `headers`; returns the status, the response
/// headers, the body (JSON for an error, the SSE data payloads joined by newlines for a stream)
/// and how long the whole exchange took.
async fn chat(
    gateway: &Gateway,
    model: &str,
    stream: bool,
    headers: &[(&str, &str)],
) -> (u16, reqwest::header::HeaderMap, String, Duration) {
    let started = Instant::now();
    let mut request = client().post(gateway.url("/v1/chat/completions")).json(&chat_body(model, stream));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = if status == 200 && stream {
        sse_data(response).await.join("\n")
    } else {
        response.text().await.unwrap()
    };
    (status, headers, body, started.elapsed())
}

fn error_message(body: &str) -> String {
    let value: Value = serde_json::from_str(body).unwrap_or_else(|_| panic!("not JSON: {body}"));
    value["error"]["message"].as_str().unwrap_or_else(|| panic!("no error message: {body}")).to_owned()
}

#[tokio::test]
async fn a_stream_without_a_first_token_in_time_is_a_504_or_a_failover() {
    // Headers at once, the first token only after 5 s.
    let stalled = MockServer::start(MockConfig { ttft: Duration::from_secs(5), ..MockConfig::default() })
        .await
        .unwrap();
    let healthy = MockServer::start(MockConfig { chunks: 3, ..MockConfig::default() }).await.unwrap();
    // Round robin sends the first request to the first deployment, so the failover below is
    // certain rather than a coin toss.
    let gateway = Gateway::start(&format!(
        "router:
  backoff_base_ms: 10
models:
  - name: alone
    deployments:
      - {{provider: vllm, model: stalled, api_base: '{stalled}', ttft_timeout_ms: 200}}
  - name: paired
    routing: {{policy: round_robin}}
    deployments:
      - {{provider: vllm, model: stalled, api_base: '{stalled}', ttft_timeout_ms: 200}}
      - {{provider: vllm, model: healthy, api_base: '{healthy}'}}
",
        stalled = stalled.url(),
        healthy = healthy.url()
    ))
    .await;

    let (status, headers, body, took) = chat(&gateway, "alone", true, &[]).await;
    assert_eq!(status, 504, "{body}");
    let message = error_message(&body);
    assert!(message.contains("ttft_timeout_ms") && message.contains("vllm/stalled"), "{message}");
    assert_eq!(headers["x-switchyard-attempts"], "3", "a timeout is retried (retries: 2)");
    assert!(took < Duration::from_secs(3), "the limit, not the provider, ended it: {took:?}");

    let (status, headers, body, took) = chat(&gateway, "paired", true, &[]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(headers["x-switchyard-deployment"], "vllm/healthy");
    assert_eq!(headers["x-switchyard-attempts"], "2");
    assert!(body.ends_with("[DONE]"), "{body}");
    assert!(took < Duration::from_secs(2), "{took:?}");
}

#[tokio::test]
async fn a_stream_that_goes_quiet_ends_with_an_error_event_and_no_done() {
    // The role chunk and the first token at once, then 3 s between tokens.
    let mock = MockServer::start(MockConfig {
        chunk_delay: Duration::from_secs(3),
        chunks: 3,
        ..MockConfig::default()
    })
    .await
    .unwrap();
    let gateway = Gateway::start(&format!(
        "models:\n  - name: m\n    deployments:\n      - {{provider: vllm, model: up, api_base: '{}', idle_timeout_ms: 200}}\n",
        mock.url()
    ))
    .await;
    let (status, _, body, took) = chat(&gateway, "m", true, &[]).await;
    assert_eq!(status, 200, "the headers went out with the first chunk");
    let events: Vec<&str> = body.lines().collect();
    assert!(events.len() >= 2, "some chunks came before the silence: {body}");
    let last: Value = serde_json::from_str(events[events.len() - 1]).unwrap();
    assert_eq!(last["error"]["code"], "timeout", "{body}");
    assert!(last["error"]["message"].as_str().unwrap().contains("idle_timeout_ms"), "{body}");
    assert!(!body.contains("[DONE]"), "a cut stream must not look complete: {body}");
    assert!(took < Duration::from_secs(2), "{took:?}");
}

#[tokio::test]
async fn a_client_deadline_ends_a_slow_request_with_a_504() {
    let slow = MockServer::start(MockConfig { delay: Duration::from_secs(5), ..MockConfig::default() })
        .await
        .unwrap();
    let stalled = MockServer::start(MockConfig { ttft: Duration::from_secs(5), ..MockConfig::default() })
        .await
        .unwrap();
    // No time limits of their own: the client's are the only ones.
    let gateway = Gateway::start(&format!(
        "router:
  backoff_base_ms: 10
models:
  - name: slow
    deployments:
      - {{provider: vllm, model: slow, api_base: '{}'}}
  - name: stalled
    deployments:
      - {{provider: vllm, model: stalled, api_base: '{}'}}
",
        slow.url(),
        stalled.url()
    ))
    .await;

    let (status, _, body, took) = chat(&gateway, "slow", false, &[("x-switchyard-timeout-ms", "200")]).await;
    assert_eq!(status, 504, "{body}");
    assert!(error_message(&body).contains("x-switchyard-timeout-ms"), "{body}");
    assert!(took < Duration::from_secs(2), "the deadline, not the provider, ended it: {took:?}");
    assert_eq!(slow.stats().requests, 1, "no retry starts after the deadline");

    let (status, headers, body, took) =
        chat(&gateway, "stalled", true, &[("x-switchyard-ttft-timeout-ms", "200")]).await;
    assert_eq!(status, 504, "{body}");
    assert!(error_message(&body).contains("no first token within 200 ms"), "{body}");
    assert_eq!(headers["x-switchyard-attempts"], "3", "each attempt had its 200 ms");
    assert!(took < Duration::from_secs(2), "{took:?}");
}

#[tokio::test]
async fn a_malformed_timeout_header_is_a_400_that_names_it() {
    let mock = MockServer::start(MockConfig::default()).await.unwrap();
    let gateway = Gateway::start(&format!(
        "models:\n  - name: m\n    deployments:\n      - {{provider: vllm, model: up, api_base: '{}'}}\n",
        mock.url()
    ))
    .await;
    for (header, value) in [("x-switchyard-timeout-ms", "abc"), ("x-switchyard-ttft-timeout-ms", "0")] {
        let (status, _, body, _) = chat(&gateway, "m", false, &[(header, value)]).await;
        assert_eq!(status, 400, "{header}: {value}: {body}");
        let parsed: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(parsed["error"]["type"], "invalid_request_error");
        assert!(error_message(&body).contains(header), "{body}");
    }
    assert_eq!(mock.stats().requests, 0, "nothing reached the provider");
}
