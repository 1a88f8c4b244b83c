//! End to end: every failure reaches the client in the OpenAI envelope with the right status,
//! says what to do, and never carries a provider key.

#![allow(clippy::unwrap_used, reason = "a failed unwrap is a failed test, with its message")]

use std::{collections::HashMap, time::Duration};

use serde_json::{Value, json};
use switchyard_e2e::{Gateway, client, openai_model};
use switchyard_testkit::{Fault, MockConfig, MockServer};

const UPSTREAM_KEY: &str = "sk-upstream-secret-0123456789";

async fn post(gateway: &Gateway, body: impl Into<reqwest::Body>) -> (u16, reqwest::header::HeaderMap, Value) {
    let response = client()
        .post(gateway.url("/v1/chat/completions"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().await.unwrap();
    assert!(!text.contains(UPSTREAM_KEY) && !text.contains("sk-upstream"), "a provider key leaked: {text}");
    (status, headers, serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}")))
}

fn chat(model: &str) -> String {
    json!({"model": model, "messages": [{"role": "user", "content": "hi"}]}).to_string()
}

fn assert_envelope(body: &Value, kind: &str) {
    let error = &body["error"];
    assert_eq!(error["type"], kind, "{body}");
    assert!(error["message"].as_str().is_some_and(|m| m.len() > 20), "a message that explains: {body}");
    assert!(error.get("param").is_some() && error.get("code").is_some(), "{body}");
}

#[tokio::test]
async fn client_mistakes_are_4xx_that_say_what_is_wrong() {
    let mock = MockServer::start(MockConfig::default()).await.unwrap();
    let gateway =
        Gateway::start(&format!("models:\n{}", openai_model("gpt-4o-mini", "up", &mock.url()))).await;

    let (status, _, body) = post(&gateway, "{\"model\": \"gpt-4o-mini\",\n \"messages\": [}").await;
    assert_eq!(status, 400);
    assert_envelope(&body, "invalid_request_error");
    assert!(body["error"]["message"].as_str().unwrap().contains("line 2 column"), "says where: {body}");

    let (status, _, body) = post(&gateway, r#"{"model": "gpt-4o-mini"}"#).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["param"], "messages");

    let (status, _, body) = post(&gateway, chat("gpt-5-ultra")).await;
    assert_eq!(status, 404);
    assert_envelope(&body, "invalid_request_error");
    assert_eq!(body["error"]["code"], "model_not_found");
    assert!(body["error"]["message"].as_str().unwrap().contains("gpt-4o-mini"), "lists what exists: {body}");

    let huge = json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x".repeat(40 * 1024 * 1024)}]});
    let (status, _, body) = post(&gateway, huge.to_string()).await;
    assert_eq!(status, 413);
    assert_eq!(body["error"]["code"], "request_too_large");
    assert_eq!(mock.stats().requests, 0, "nothing reached the provider");
}

#[tokio::test]
async fn the_master_key_is_required_when_configured() {
    let mock = MockServer::start(MockConfig::default()).await.unwrap();
    let yaml = format!(
        "server:\n  master_key: ${{SWITCHYARD_MASTER_KEY}}\nmodels:\n{}",
        openai_model("gpt-4o-mini", "up", &mock.url())
    );
    let env = HashMap::from([("SWITCHYARD_MASTER_KEY".to_owned(), "sk-master-key".to_owned())]);
    let gateway = Gateway::start_with_env(&yaml, env).await;
    let url = gateway.url("/v1/chat/completions");

    let missing = client().post(&url).body(chat("gpt-4o-mini")).send().await.unwrap();
    assert_eq!(missing.status(), 401);
    assert_envelope(&missing.json().await.unwrap(), "authentication_error");

    let wrong =
        client().post(&url).bearer_auth("sk-master-kez").body(chat("gpt-4o-mini")).send().await.unwrap();
    assert_eq!(wrong.status(), 401);
    let body: Value = wrong.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_api_key");

    let right =
        client().post(&url).bearer_auth("sk-master-key").body(chat("gpt-4o-mini")).send().await.unwrap();
    assert_eq!(right.status(), 200);
    let probe = client().get(gateway.url("/health/readiness")).send().await.unwrap();
    assert_eq!(probe.status(), 200, "probes need no key");
    assert_eq!(mock.stats().chat_completions, 1);
}

#[tokio::test]
async fn provider_failures_are_5xx_with_the_providers_message_and_never_its_key() {
    let mock = MockServer::start(MockConfig::default()).await.unwrap();
    // Retries off: this test is about how each failure is reported, not about recovering.
    let gateway = Gateway::start(&format!(
        "router:\n  retries: 0\nmodels:\n{}",
        openai_model("gpt-4o-mini", "up", &mock.url())
    ))
    .await;

    // A provider that echoes the key it was sent, as some do in 401 messages.
    mock.push_fault(Fault::Status {
        status: 500,
        body: json!({"error": {"message": format!("engine exploded while serving key {UPSTREAM_KEY}"), "type": "server_error"}}),
    });
    let (status, _, body) = post(&gateway, chat("gpt-4o-mini")).await;
    assert_eq!(status, 502);
    assert_envelope(&body, "api_error");
    assert!(body["error"]["message"].as_str().unwrap().contains("engine exploded"), "{body}");

    mock.push_fault(Fault::Status {
        status: 401,
        body: json!({"error": {"message": "Incorrect API key provided"}}),
    });
    let (status, _, body) = post(&gateway, chat("gpt-4o-mini")).await;
    assert_eq!(status, 502, "a rejected provider key is the gateway's configuration fault, not the client's");
    assert_eq!(body["error"]["code"], "upstream_authentication_failed");

    mock.push_fault(Fault::RateLimited { retry_after_secs: 7 });
    let (status, headers, body) = post(&gateway, chat("gpt-4o-mini")).await;
    assert_eq!(status, 429);
    assert_envelope(&body, "rate_limit_error");
    assert_eq!(headers["retry-after"], "7");

    mock.push_fault(Fault::Status { status: 400, body: json!({"error": {"message": "This model's maximum context length is 8192 tokens", "code": "context_length_exceeded"}}) });
    let (status, _, body) = post(&gateway, chat("gpt-4o-mini")).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["code"], "context_length_exceeded");
}

#[tokio::test]
async fn an_unreachable_provider_is_502_and_a_slow_one_504() {
    // A port nothing listens on: bind, note it, close.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let mock = MockServer::start(MockConfig { delay: Duration::from_secs(5), ..MockConfig::default() })
        .await
        .unwrap();
    let gateway = Gateway::start(&format!(
        "models:\n{}  - name: slow\n    deployments:\n      - {{provider: vllm, model: up, api_base: '{}', timeout_ms: 300}}\n",
        openai_model("down", "up", &format!("http://{closed}/v1")),
        mock.url()
    ))
    .await;
    let (status, _, body) = post(&gateway, chat("down")).await;
    assert_eq!(status, 502);
    assert_eq!(body["error"]["code"], "upstream_unreachable");
    assert!(body["error"]["message"].as_str().unwrap().contains("could not connect"), "{body}");

    let started = std::time::Instant::now();
    let (status, _, body) = post(&gateway, chat("slow")).await;
    assert_eq!(status, 504);
    assert_eq!(body["error"]["code"], "timeout");
    assert!(started.elapsed() < Duration::from_secs(3), "the deadline, not the provider, ended it");
}

#[tokio::test]
async fn a_stream_that_breaks_after_it_started_ends_with_an_error_event() {
    let mock = MockServer::start(MockConfig { chunks: 10, ..MockConfig::default() }).await.unwrap();
    let gateway = Gateway::start(&format!("models:\n{}", openai_model("m", "up", &mock.url()))).await;
    mock.push_fault(Fault::ResetMidStream { after_chunks: 3 });
    let body = json!({"model": "m", "stream": true, "messages": [{"role": "user", "content": "hi"}]});
    let response = client().post(gateway.url("/v1/chat/completions")).json(&body).send().await.unwrap();
    assert_eq!(response.status(), 200, "headers went out with the first chunk");
    let text = response.text().await.unwrap();
    let last = text.trim_end().rsplit("\n\n").next().unwrap();
    let event: Value = serde_json::from_str(last.trim_start_matches("data: ")).unwrap();
    assert_eq!(event["error"]["type"], "api_error", "{text}");
    assert!(!text.contains("[DONE]"), "a broken stream must not look complete: {text}");
}
