//! End to end: OpenAI-dialect chat, embeddings and models through the gateway to mock providers.

#![allow(clippy::unwrap_used, reason = "a failed unwrap is a failed test, with its message")]

use std::time::Duration;

use serde_json::{Value, json};
use switchyard_e2e::{Gateway, client, openai_model, post_json};
use switchyard_testkit::{MockConfig, MockServer};

async fn gateway_for(mock: &MockServer) -> Gateway {
    Gateway::start(&format!("models:\n{}", openai_model("gpt-4o-mini", "upstream-model", &mock.url()))).await
}

#[tokio::test]
async fn a_chat_completion_passes_every_field_through_and_answers_in_openai_shape() {
    let mock = MockServer::start(MockConfig::default()).await.unwrap();
    let gateway = gateway_for(&mock).await;
    let body = json!({
        "model": "gpt-4o-mini",
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": [
                {"type": "text", "text": "what is in this image?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo=", "detail": "low"}}
            ]}
        ],
        "response_format": {"type": "json_schema", "json_schema": {"name": "answer", "strict": true,
            "schema": {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]}}},
        "n": 2, "seed": 42, "logprobs": true, "top_logprobs": 2, "temperature": 0.2,
        "metadata": {"team": "search"},
        "a_field_openai_adds_next_year": {"nested": [1, 2, 3]}
    });
    let response = client().post(gateway.url("/v1/chat/completions")).json(&body).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-switchyard-deployment"], "openai/upstream-model");
    assert!(response.headers().contains_key("x-request-id"));
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["object"], "chat.completion");
    assert_eq!(answer["choices"].as_array().map(Vec::len), Some(2), "n=2 gives two choices");
    let usage = &answer["usage"];
    assert_eq!(
        usage["total_tokens"],
        usage["prompt_tokens"].as_u64().unwrap() + usage["completion_tokens"].as_u64().unwrap()
    );

    let sent = mock.requests().pop().unwrap();
    assert_eq!(sent.path, "/v1/chat/completions");
    assert_eq!(sent.headers["authorization"], "Bearer sk-upstream-secret-0123456789");
    let mut expected = body.clone();
    expected["model"] = json!("upstream-model");
    assert_eq!(sent.body, expected, "the provider receives the request unchanged but for the model");
}

#[tokio::test]
async fn tools_and_tool_results_round_trip() {
    let mock = MockServer::start(MockConfig::default()).await.unwrap();
    let gateway = gateway_for(&mock).await;
    let tools = json!([{"type": "function", "function": {"name": "get_weather", "description": "Weather",
        "parameters": {"type": "object", "properties": {"location": {"type": "string"}}}}}]);
    let body = json!({"model": "gpt-4o-mini", "tools": tools, "tool_choice": "auto",
        "messages": [{"role": "user", "content": "weather in Paris?"}]});
    let answer = post_json(&gateway, "/v1/chat/completions", &body).await;
    let call = &answer["choices"][0]["message"]["tool_calls"][0];
    assert_eq!(call["function"]["name"], "get_weather");
    assert_eq!(answer["choices"][0]["finish_reason"], "tool_calls");

    let follow_up = json!({"model": "gpt-4o-mini", "tools": tools, "messages": [
        {"role": "user", "content": "weather in Paris?"},
        answer["choices"][0]["message"].clone(),
        {"role": "tool", "tool_call_id": call["id"].clone(), "content": "{\"temp_c\": 18}"}
    ]});
    let response = client().post(gateway.url("/v1/chat/completions")).json(&follow_up).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let sent = mock.requests().pop().unwrap();
    assert_eq!(sent.body["messages"][1]["tool_calls"], answer["choices"][0]["message"]["tool_calls"]);
    assert_eq!(sent.body["messages"][2]["tool_call_id"], call["id"]);
}

#[tokio::test]
async fn embeddings_and_models() {
    let mock = MockServer::start(MockConfig::default()).await.unwrap();
    let gateway = Gateway::start(&format!(
        "models:\n{}{}",
        openai_model("text-embedding-3-small", "embed-upstream", &mock.url()),
        openai_model("gpt-4o-mini", "chat-upstream", &mock.url())
    ))
    .await;
    let body = json!({"model": "text-embedding-3-small", "input": ["one", "two"], "dimensions": 4});
    let answer = post_json(&gateway, "/v1/embeddings", &body).await;
    assert_eq!(answer["object"], "list");
    assert_eq!(answer["data"].as_array().map(Vec::len), Some(2));
    assert_eq!(answer["data"][0]["embedding"].as_array().map(Vec::len), Some(4));
    assert_eq!(mock.requests().pop().unwrap().body["model"], "embed-upstream");

    let models: Value = client().get(gateway.url("/v1/models")).send().await.unwrap().json().await.unwrap();
    let ids: Vec<&str> = models["data"].as_array().unwrap().iter().filter_map(|m| m["id"].as_str()).collect();
    assert_eq!(ids, ["text-embedding-3-small", "gpt-4o-mini"]);
    let one: Value =
        client().get(gateway.url("/v1/models/gpt-4o-mini")).send().await.unwrap().json().await.unwrap();
    assert_eq!(one["id"], "gpt-4o-mini");
    assert_eq!(one["object"], "model");
    let missing = client().get(gateway.url("/v1/models/nope")).send().await.unwrap();
    assert_eq!(missing.status(), 404);
}

#[tokio::test]
async fn round_robin_spreads_requests_over_deployments() {
    let first = MockServer::start(MockConfig::default()).await.unwrap();
    let second = MockServer::start(MockConfig::default()).await.unwrap();
    let gateway = Gateway::start(&format!(
        "models:\n  - name: m\n    routing: {{policy: round_robin}}\n    deployments:\n      - {{provider: vllm, model: a, api_base: '{}'}}\n      - {{provider: vllm, model: b, api_base: '{}'}}\n",
        first.url(),
        second.url()
    ))
    .await;
    let body = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]});
    for _ in 0..10 {
        let response = client().post(gateway.url("/v1/chat/completions")).json(&body).send().await.unwrap();
        assert_eq!(response.status(), 200);
    }
    assert_eq!(first.stats().chat_completions, 5);
    assert_eq!(second.stats().chat_completions, 5);
}

#[tokio::test]
async fn azure_deployments_use_deployment_urls_api_version_and_api_key_header() {
    let mock = MockServer::start(MockConfig::default()).await.unwrap();
    let base = format!("http://{}", mock.addr());
    let gateway = Gateway::start(&format!(
        "models:\n  - name: gpt-4o\n    deployments:\n      - {{provider: azure, model: my-gpt4o, api_base: '{base}', api_version: 2024-10-21, api_key: azure-key-123456789}}\n"
    ))
    .await;
    let body = json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]});
    let response = client().post(gateway.url("/v1/chat/completions")).json(&body).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let sent = mock.requests().pop().unwrap();
    assert_eq!(sent.path, "/openai/deployments/my-gpt4o/chat/completions");
    assert_eq!(sent.query.as_deref(), Some("api-version=2024-10-21"));
    assert_eq!(sent.headers["api-key"], "azure-key-123456789");
    assert!(!sent.headers.contains_key("authorization"));
}

#[tokio::test]
async fn wildcard_models_forward_the_matched_name() {
    let mock = MockServer::start(MockConfig::default()).await.unwrap();
    let gateway = Gateway::start(&format!(
        "models:\n  - name: 'local/*'\n    deployments:\n      - {{provider: vllm, model: '*', api_base: '{}'}}\n",
        mock.url()
    ))
    .await;
    let body = json!({"model": "local/llama-3.1-8b", "messages": [{"role": "user", "content": "hi"}]});
    let response = client().post(gateway.url("/v1/chat/completions")).json(&body).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let sent = mock.requests().pop().unwrap();
    assert_eq!(sent.body["model"], "llama-3.1-8b");
    assert!(!sent.headers.contains_key("authorization"), "a local server gets no key unless configured");
}

#[tokio::test]
async fn the_zero_config_mock_answers_without_any_provider() {
    let gateway =
        Gateway::start("models:\n  - {name: mock, deployments: [{provider: mock, model: mock}]}\n").await;
    let body = json!({"model": "mock", "messages": [{"role": "user", "content": "hello there"}]});
    let answer =
        tokio::time::timeout(Duration::from_secs(10), post_json(&gateway, "/v1/chat/completions", &body))
            .await
            .unwrap();
    let content = answer["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(content.contains("built-in mock") && content.contains("hello there"), "{content}");
}
