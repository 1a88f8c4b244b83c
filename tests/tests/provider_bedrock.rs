//! End to end: OpenAI-dialect clients served by an AWS Bedrock deployment (the testkit's
//! Bedrock mock, which checks every request's SigV4 signature): text, streams, tools, and
//! Bedrock's errors as the client sees them.

#![allow(clippy::unwrap_used, reason = "a failed unwrap is a failed test, with its message")]

use serde_json::{Value, json};
use switchyard_e2e::{Gateway, client, post_json, sse_data};
use switchyard_testkit::{AwsKeys, Fault, MockConfig, MockServer};

const MODEL: &str = "anthropic.claude-3-5-sonnet-20240620-v1:0";
const KEY_ID: &str = "AKIAIOSFODNN7EXAMPLE";
const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";

async fn mock() -> MockServer {
    let keys =
        AwsKeys { access_key_id: KEY_ID.into(), secret_access_key: SECRET.into(), session_token: None };
    MockServer::start(MockConfig { chunks: 6, aws: Some(keys), ..MockConfig::default() }).await.unwrap()
}

/// A gateway with one model, `claude`, served by Bedrock at the mock, signing with `secret`.
async fn gateway(mock: &MockServer, secret: &str, router: &str) -> Gateway {
    let base = mock.url().trim_end_matches("/v1").to_owned();
    Gateway::start(&format!(
        "{router}models:
  - name: claude
    deployments:
      - provider: bedrock
        model: {MODEL}
        region: us-west-2
        api_base: {base}
        aws_access_key_id: {KEY_ID}
        aws_secret_access_key: {secret}
"
    ))
    .await
}

fn chat(stream: bool) -> Value {
    json!({"model": "claude", "stream": stream, "messages": [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Say hello."}
    ]})
}

#[tokio::test]
async fn a_chat_completion_is_answered_in_openai_shape_from_a_signed_converse_call() {
    let mock = mock().await;
    let gateway = gateway(&mock, SECRET, "").await;
    let response =
        client().post(gateway.url("/v1/chat/completions")).json(&chat(false)).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-switchyard-deployment"], format!("bedrock/{MODEL}"));
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["object"], "chat.completion");
    assert_eq!(answer["choices"][0]["message"]["content"], "tok0 tok1 tok2 tok3 tok4 tok5 ");
    assert_eq!(answer["choices"][0]["finish_reason"], "stop");
    assert_eq!(answer["usage"]["completion_tokens"], 6);

    let sent = mock.requests().pop().unwrap();
    assert_eq!(sent.path, "/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse");
    let authorization = sent.headers["authorization"].to_str().unwrap();
    assert!(
        authorization.contains("/us-west-2/bedrock/aws4_request"),
        "signed for the region: {authorization}"
    );
    assert_eq!(sent.body["system"], json!([{"text": "You are terse."}]));
    assert_eq!(sent.body["messages"], json!([{"role": "user", "content": [{"text": "Say hello."}]}]));
    assert_eq!(sent.body["inferenceConfig"]["maxTokens"], 4096, "Converse requires one; the default is sent");
}

#[tokio::test]
async fn a_stream_arrives_as_openai_chunks_with_done_and_the_usage_when_asked() {
    let mock = mock().await;
    let gateway = gateway(&mock, SECRET, "").await;
    let mut body = chat(true);
    body["stream_options"] = json!({"include_usage": true});
    let response = client().post(gateway.url("/v1/chat/completions")).json(&body).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("text/event-stream"));
    let events = sse_data(response).await;
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    let chunks: Vec<Value> =
        events[..events.len() - 1].iter().map(|e| serde_json::from_str(e).unwrap()).collect();
    let text: String = chunks.iter().filter_map(|c| c["choices"][0]["delta"]["content"].as_str()).collect();
    assert_eq!(text, "tok0 tok1 tok2 tok3 tok4 tok5 ");
    assert!(chunks.iter().any(|c| c["choices"][0]["finish_reason"] == "stop"));
    let usage = &chunks.last().unwrap()["usage"];
    assert_eq!(usage["completion_tokens"], 6, "{usage}");
    assert_eq!(mock.stats().streams_completed, 1);

    // Without include_usage the client gets no usage chunk (the gateway still bills from it).
    let response = client().post(gateway.url("/v1/chat/completions")).json(&chat(true)).send().await.unwrap();
    let events = sse_data(response).await;
    assert!(events.iter().all(|e| !e.contains("\"usage\":{")), "{events:?}");
}

#[tokio::test]
async fn a_tool_call_comes_back_in_openai_shape_and_its_result_goes_back_as_a_tool_result() {
    let mock = mock().await;
    let gateway = gateway(&mock, SECRET, "").await;
    let tools = json!([{"type": "function", "function": {"name": "get_weather", "description": "Weather of a city",
        "parameters": {"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]}}}]);
    let ask = json!({"model": "claude", "tools": tools, "tool_choice": "auto",
                     "messages": [{"role": "user", "content": "Weather in Paris?"}]});
    let answer = post_json(&gateway, "/v1/chat/completions", &ask).await;
    let message = &answer["choices"][0]["message"];
    assert_eq!(answer["choices"][0]["finish_reason"], "tool_calls", "{answer}");
    let call = &message["tool_calls"][0];
    assert_eq!(call["type"], "function");
    assert_eq!(call["function"]["name"], "get_weather");
    assert_eq!(
        serde_json::from_str::<Value>(call["function"]["arguments"].as_str().unwrap()).unwrap(),
        json!({"location": "Paris"})
    );
    let sent = mock.requests().pop().unwrap();
    assert_eq!(sent.body["toolConfig"]["toolChoice"], json!({"auto": {}}));

    let follow_up = json!({"model": "claude", "tools": tools, "messages": [
        {"role": "user", "content": "Weather in Paris?"},
        message.clone(),
        {"role": "tool", "tool_call_id": call["id"].clone(), "content": "18 degrees"}
    ]});
    let answer = post_json(&gateway, "/v1/chat/completions", &follow_up).await;
    assert_eq!(answer["choices"][0]["finish_reason"], "stop", "{answer}");
    let sent = mock.requests().pop().unwrap();
    assert_eq!(
        sent.body["messages"][1]["content"][0]["toolUse"],
        json!({"toolUseId": call["id"].clone(), "name": "get_weather", "input": {"location": "Paris"}})
    );
    assert_eq!(
        sent.body["messages"][2],
        json!({"role": "user", "content": [{"toolResult": {"toolUseId": call["id"].clone(), "content": [{"text": "18 degrees"}]}}]})
    );
}

#[tokio::test]
async fn throttling_reaches_the_client_as_a_429_with_retry_after_once_retries_are_spent() {
    let mock = mock().await;
    let gateway = gateway(&mock, SECRET, "router:\n  retries: 1\n").await;
    mock.push_fault(Fault::RateLimited { retry_after_secs: 1 });
    mock.push_fault(Fault::RateLimited { retry_after_secs: 1 });
    let response =
        client().post(gateway.url("/v1/chat/completions")).json(&chat(false)).send().await.unwrap();
    assert_eq!(response.status(), 429);
    assert_eq!(response.headers()["retry-after"], "1");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["type"], "rate_limit_error");
    assert!(body["error"]["message"].as_str().unwrap().contains("ThrottlingException"), "{body}");
    assert_eq!(mock.stats().faults_by_kind.rate_limited, 2, "the gateway retried once");
}

#[tokio::test]
async fn a_signature_bedrock_refuses_is_a_502_that_names_the_deployments_credentials() {
    let mock = mock().await;
    let gateway = gateway(&mock, "not-the-right-secret", "router:\n  retries: 0\n").await;
    let response =
        client().post(gateway.url("/v1/chat/completions")).json(&chat(false)).send().await.unwrap();
    assert_eq!(response.status(), 502, "the gateway's configuration is at fault, not the client");
    let text = response.text().await.unwrap();
    assert!(!text.contains("not-the-right-secret") && !text.contains(SECRET), "no secret leaked: {text}");
    let body: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(body["error"]["code"], "upstream_authentication_failed");
    assert!(body["error"]["message"].as_str().unwrap().contains("InvalidSignatureException"), "{body}");
}

#[tokio::test]
async fn an_input_too_long_for_the_model_is_a_400_context_length_exceeded() {
    let mock = mock().await;
    let gateway = gateway(&mock, SECRET, "router:\n  retries: 0\n").await;
    mock.push_fault(Fault::Status {
        status: 400,
        body: json!({"message": "Input is too long for requested model."}),
    });
    let response =
        client().post(gateway.url("/v1/chat/completions")).json(&chat(false)).send().await.unwrap();
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "context_length_exceeded", "{body}");
    assert_eq!(body["error"]["type"], "invalid_request_error");

    // A remote image is the client's mistake, said before anything is sent.
    let before = mock.stats().requests;
    let image = json!({"model": "claude", "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}]}]});
    let response = client().post(gateway.url("/v1/chat/completions")).json(&image).send().await.unwrap();
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert!(body["error"]["message"].as_str().unwrap().contains("data: URL"), "{body}");
    assert_eq!(mock.stats().requests, before);
}
