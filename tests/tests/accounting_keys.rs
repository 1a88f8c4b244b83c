//! End to end: virtual keys through the admin API, used by clients, restricted to models,
//! revoked, rotated and expired; every request leaves one spend record with the provider's
//! usage and its cost, and the spend report adds them up.

#![allow(clippy::unwrap_used, reason = "a failed unwrap is a failed test, with its message")]

use std::time::Duration;

use serde_json::{Value, json};
use switchyard_e2e::{Gateway, chat_body, client, within_one_minute};
use switchyard_testkit::{MockConfig, MockServer};

const MASTER: &str = "sk-master-test-key";

/// Two models on one mock, priced, behind a master key.
fn config(mock: &MockServer) -> String {
    let base = mock.url();
    format!(
        "server:\n  master_key: {MASTER}\naccounting:\n  ledger_flush_interval_ms: 20\nmodels:\n\
         \x20 - name: gpt-4o-mini\n    deployments:\n      - {{provider: openai, model: up-mini, api_base: '{base}', api_key: sk-upstream-0123456789, price: {{input: 1.0, output: 2.0}}}}\n\
         \x20 - name: gpt-4o\n    deployments:\n      - {{provider: openai, model: up-4o, api_base: '{base}', api_key: sk-upstream-0123456789, price: {{input: 5.0, output: 10.0}}}}\n"
    )
}

/// An admin call with the master key: status and JSON body.
async fn admin(gateway: &Gateway, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let mut request = client()
        .request(method.parse().unwrap(), gateway.url(path))
        .header("authorization", format!("Bearer {MASTER}"));
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// A chat request with `key`: status, headers and JSON body.
async fn chat(gateway: &Gateway, key: &str, model: &str) -> (u16, reqwest::header::HeaderMap, Value) {
    let response = client()
        .post(gateway.url("/v1/chat/completions"))
        .bearer_auth(key)
        .json(&chat_body(model, false))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    (status, headers, response.json().await.unwrap())
}

#[tokio::test]
async fn a_key_is_created_used_restricted_rotated_and_revoked() {
    let mock = MockServer::start(MockConfig::default()).await.unwrap();
    let gateway = Gateway::start(&config(&mock)).await;

    let (status, team) =
        admin(&gateway, "POST", "/admin/teams", Some(json!({"id": "search", "name": "Search"}))).await;
    assert_eq!(status, 201, "{team}");
    let (status, created) = admin(
        &gateway,
        "POST",
        "/admin/keys",
        Some(json!({"name": "ci", "team_id": "search", "models": ["gpt-4o-mini"], "tags": ["ci"]})),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let secret = created["key"].as_str().unwrap().to_owned();
    let id = created["id"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("sk-sy-"), "{secret}");
    assert!(created.get("key_hash").is_none(), "the hash is never shown");

    // Listing never shows the secret again.
    let (status, listed) = admin(&gateway, "GET", "/admin/keys?team_id=search", None).await;
    assert_eq!(status, 200);
    assert_eq!(listed["data"].as_array().unwrap().len(), 1);
    assert!(!listed.to_string().contains(&secret), "a list must not show secrets");

    let (status, headers, answer) = chat(&gateway, &secret, "gpt-4o-mini").await;
    assert_eq!(status, 200, "{answer}");
    let cost: f64 = headers["x-switchyard-cost-usd"].to_str().unwrap().parse().unwrap();
    let usage = &answer["usage"];
    let expected = (usage["prompt_tokens"].as_f64().unwrap() * 1.0
        + usage["completion_tokens"].as_f64().unwrap() * 2.0)
        / 1e6;
    assert!((cost - expected).abs() < 1e-12, "cost {cost} for {usage}, expected {expected}");

    let (status, _, refused) = chat(&gateway, &secret, "gpt-4o").await;
    assert_eq!(status, 403, "{refused}");
    let message = refused["error"]["message"].as_str().unwrap();
    assert!(message.contains("gpt-4o-mini"), "the refusal lists the allowed models: {message}");

    let listed: Value = client()
        .get(gateway.url("/v1/models"))
        .bearer_auth(&secret)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> =
        listed["data"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["gpt-4o-mini"], "a key sees the models it may call");

    // A virtual key is not an operator.
    let response = client().get(gateway.url("/admin/keys")).bearer_auth(&secret).send().await.unwrap();
    assert_eq!(response.status(), 403);

    let (status, rotated) = admin(&gateway, "POST", &format!("/admin/keys/{id}/rotate"), None).await;
    assert_eq!(status, 200, "{rotated}");
    let new_secret = rotated["key"].as_str().unwrap().to_owned();
    assert_ne!(new_secret, secret);
    assert_eq!(chat(&gateway, &secret, "gpt-4o-mini").await.0, 401, "the old secret stops at once");
    assert_eq!(chat(&gateway, &new_secret, "gpt-4o-mini").await.0, 200);

    let (status, revoked) = admin(&gateway, "POST", &format!("/admin/keys/{id}/revoke"), None).await;
    assert_eq!(status, 200, "{revoked}");
    let (status, _, body) = chat(&gateway, &new_secret, "gpt-4o-mini").await;
    assert_eq!(status, 401);
    assert!(body["error"]["message"].as_str().unwrap().contains("revoked"), "{body}");
    assert!(!body.to_string().contains(&new_secret), "an error never echoes the key");

    // Unknown keys and no key at all.
    assert_eq!(chat(&gateway, "sk-sy-thisisnotakeythisisnotakeythisisnotakey00", "gpt-4o-mini").await.0, 401);
    let response = client()
        .post(gateway.url("/v1/chat/completions"))
        .json(&chat_body("gpt-4o-mini", false))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);

    // A team with keys cannot be deleted; unknown ids are 404s that say what to do.
    assert_eq!(admin(&gateway, "DELETE", "/admin/teams/search", None).await.0, 409);
    let (status, missing) = admin(&gateway, "GET", "/admin/keys/key_doesnotexist", None).await;
    assert_eq!(status, 404, "{missing}");
    let (status, bad) = admin(&gateway, "POST", "/admin/keys", Some(json!({"nmae": "typo"}))).await;
    assert_eq!(status, 400);
    assert!(bad["error"]["message"].as_str().unwrap().contains("nmae"), "the typo is named: {bad}");
}

#[tokio::test]
async fn an_expired_key_is_refused() {
    let mock = MockServer::start(MockConfig::default()).await.unwrap();
    let gateway = Gateway::start(&config(&mock)).await;
    let (status, created) =
        admin(&gateway, "POST", "/admin/keys", Some(json!({"expires_at": 1_000_000_000_000i64}))).await;
    assert_eq!(status, 201, "{created}");
    let (status, _, body) = chat(&gateway, created["key"].as_str().unwrap(), "gpt-4o").await;
    assert_eq!(status, 401);
    assert!(body["error"]["message"].as_str().unwrap().contains("expired"), "{body}");
}

#[tokio::test]
async fn every_request_leaves_one_spend_record_and_the_report_adds_them_up() {
    let mock = MockServer::start(MockConfig::default()).await.unwrap();
    let gateway = Gateway::start(&config(&mock)).await;
    let (_, created) = admin(&gateway, "POST", "/admin/keys", Some(json!({"name": "report"}))).await;
    let secret = created["key"].as_str().unwrap().to_owned();
    let id = created["id"].as_str().unwrap().to_owned();

    let mut cost = 0.0;
    let mut tokens = 0;
    for model in ["gpt-4o-mini", "gpt-4o", "gpt-4o-mini"] {
        let (status, headers, answer) = chat(&gateway, &secret, model).await;
        assert_eq!(status, 200);
        cost += headers["x-switchyard-cost-usd"].to_str().unwrap().parse::<f64>().unwrap();
        tokens += answer["usage"]["total_tokens"].as_u64().unwrap();
    }
    // A stream, which reports its usage only when it ends.
    let response = client()
        .post(gateway.url("/v1/chat/completions"))
        .bearer_auth(&secret)
        .json(&chat_body("gpt-4o-mini", true))
        .send()
        .await
        .unwrap();
    let text = response.text().await.unwrap();
    assert!(text.contains("[DONE]"));
    assert!(!text.contains("\"usage\":{"), "the client did not ask for usage, so it sees none: {text}");

    let stats = mock.stats();
    let reported = stats.prompt_tokens + stats.completion_tokens;
    let path = format!("/admin/spend?group_by=key,model&key_id={id}");
    // The ledger writes within its flush interval.
    let mut report = Value::Null;
    for _ in 0..100 {
        report = admin(&gateway, "GET", &path, None).await.1;
        let requests: u64 =
            report["data"].as_array().unwrap().iter().map(|r| r["requests"].as_u64().unwrap()).sum();
        if requests == 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let data = report["data"].as_array().unwrap();
    let requests: u64 = data.iter().map(|r| r["requests"].as_u64().unwrap()).sum();
    assert_eq!(requests, 4, "one record per request: {report}");
    let recorded: u64 =
        data.iter().map(|r| r["input_tokens"].as_u64().unwrap() + r["output_tokens"].as_u64().unwrap()).sum();
    assert_eq!(recorded, reported, "the ledger holds exactly the usage the provider reported: {report}");
    assert!(recorded > tokens, "the stream's usage is counted too");
    let models: Vec<&str> = data.iter().map(|r| r["group"]["model"].as_str().unwrap()).collect();
    assert!(models.contains(&"gpt-4o") && models.contains(&"gpt-4o-mini"), "{models:?}");
    let total: f64 = data.iter().map(|r| r["cost_usd"].as_f64().unwrap()).sum();
    assert!(total > cost, "the stream cost something too: {total} vs {cost} without it");
}

#[tokio::test]
async fn without_a_master_key_virtual_keys_still_carry_their_limits() {
    let mock = MockServer::start(MockConfig::default()).await.unwrap();
    let yaml = format!(
        "models:\n  - name: m\n    deployments:\n      - {{provider: openai, model: up, api_base: '{}', api_key: sk-upstream-0123456789}}\n",
        mock.url()
    );
    let gateway = Gateway::start(&yaml).await;
    within_one_minute(Duration::from_secs(5)).await;
    // On loopback without a master key, the admin API is open and a client may send no key.
    let response =
        client().post(gateway.url("/admin/keys")).json(&json!({"limits": {"rpm": 1}})).send().await.unwrap();
    assert_eq!(response.status(), 201);
    let created: Value = response.json().await.unwrap();
    let secret = created["key"].as_str().unwrap();
    assert_eq!(chat(&gateway, "anything-else", "m").await.0, 200, "another key is an anonymous caller");
    assert_eq!(chat(&gateway, secret, "m").await.0, 200);
    assert_eq!(chat(&gateway, secret, "m").await.0, 429, "the key's rpm applies");
    let (status, _, body) = chat(&gateway, "sk-sy-not-a-real-key", "m").await;
    assert_eq!(status, 401, "a malformed virtual key is refused, not taken as anonymous: {body}");
}

#[tokio::test]
async fn a_stream_whose_provider_reports_no_usage_is_counted_with_the_tokenizer() {
    // Mistral's preset is not sent `stream_options`, so the mock streams no usage chunk.
    let mock = MockServer::start(MockConfig::default()).await.unwrap();
    let yaml = format!(
        "accounting:\n  ledger_flush_interval_ms: 20\nmodels:\n  - name: m\n    deployments:\n      - {{provider: mistral, model: up, api_base: '{}', api_key: sk-upstream-0123456789}}\n",
        mock.url()
    );
    let gateway = Gateway::start(&yaml).await;
    let response = client()
        .post(gateway.url("/v1/chat/completions"))
        .header("x-request-id", "estimate-me")
        .json(&chat_body("m", true))
        .send()
        .await
        .unwrap();
    assert!(response.text().await.unwrap().contains("[DONE]"));
    assert_eq!(mock.stats().completion_tokens, 0, "the provider reported no usage");
    let mut records = Vec::new();
    for _ in 0..100 {
        records = gateway.store().spend_by_request("estimate-me").await.unwrap();
        if !records.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let [record] = records.as_slice() else { panic!("one record for the request: {records:?}") };
    assert!(record.usage_estimated, "{record:?}");
    assert!(record.usage.input > 0 && record.usage.output > 0, "prompt and answer counted: {record:?}");
}
