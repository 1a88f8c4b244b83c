//! End to end: Anthropic's Messages API (`POST /v1/messages`, `/v1/messages/count_tokens`) on
//! a model served by an OpenAI-dialect deployment, with errors in Anthropic's envelope and the
//! ledger counting the translated stream.

#![allow(clippy::unwrap_used, reason = "a failed unwrap is a failed test, with its message")]

use serde_json::{Value, json};
use switchyard_e2e::{Gateway, client, openai_model};
use switchyard_testkit::{Fault, MockConfig, MockServer};

async fn gateway_for(mock: &MockServer) -> Gateway {
    let models = openai_model("claude-via-openai", "gpt-upstream", &mock.url());
    Gateway::start(&format!("accounting:\n  ledger_flush_interval_ms: 20\nmodels:\n{models}")).await
}

fn messages_body(stream: bool) -> Value {
    json!({"model": "claude-via-openai", "max_tokens": 64, "stream": stream, "system": "Be brief.",
           "metadata": {"user_id": "end-user-7"},
           "messages": [{"role": "user", "content": [{"type": "text", "text": "Say hello."}]}]})
}

/// `(event name, data)` of each server-sent event.
fn events(text: &str) -> Vec<(String, Value)> {
    text.split("\n\n")
        .filter(|e| !e.trim().is_empty())
        .map(|event| {
            let name = event.lines().find_map(|l| l.strip_prefix("event: ")).unwrap_or("").to_owned();
            let data: String = event.lines().filter_map(|l| l.strip_prefix("data: ")).collect();
            (name, serde_json::from_str(&data).unwrap_or(Value::Null))
        })
        .collect()
}

#[tokio::test]
async fn a_message_is_answered_in_anthropics_shape_through_an_openai_deployment() {
    let mock = MockServer::start(MockConfig::default()).await.unwrap();
    let gateway = gateway_for(&mock).await;
    let response =
        client().post(gateway.url("/v1/messages")).json(&messages_body(false)).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-switchyard-deployment"], "openai/gpt-upstream");
    let message: Value = response.json().await.unwrap();
    assert_eq!(message["type"], "message");
    assert_eq!(message["role"], "assistant");
    assert_eq!(message["content"][0]["type"], "text");
    assert_eq!(message["stop_reason"], "end_turn");
    assert!(message["usage"]["input_tokens"].as_u64().unwrap() > 0);

    let sent = mock.requests().pop().unwrap().body;
    assert_eq!(sent["model"], "gpt-upstream");
    assert_eq!(sent["messages"][0], json!({"role": "system", "content": "Be brief."}));
    assert_eq!(sent["max_tokens"], 64);
    assert_eq!(sent["user"], "end-user-7");
}

#[tokio::test]
async fn a_stream_is_anthropics_event_sequence_and_its_usage_is_billed() {
    let mock = MockServer::start(MockConfig::default()).await.unwrap();
    let gateway = gateway_for(&mock).await;
    let response = client()
        .post(gateway.url("/v1/messages"))
        .header("x-request-id", "anthropic-stream")
        .json(&messages_body(true))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let events = events(&response.text().await.unwrap());
    let names: Vec<&str> = events.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(names.first(), Some(&"message_start"));
    assert_eq!(&names[names.len() - 2..], ["message_delta", "message_stop"]);
    for (name, data) in &events {
        assert_eq!(data["type"], name.as_str(), "each event's name is its type");
    }
    let text: String = events
        .iter()
        .filter(|(name, _)| name == "content_block_delta")
        .map(|(_, data)| data["delta"]["text"].as_str().unwrap().to_owned())
        .collect();
    assert!(!text.is_empty());
    let (_, delta) = &events[events.len() - 2];
    assert_eq!(delta["delta"]["stop_reason"], "end_turn");
    let output = delta["usage"]["output_tokens"].as_u64().unwrap();
    assert!(output > 0);

    // The deployment was asked for its usage (it is OpenAI's dialect), and the ledger has it.
    assert_eq!(mock.requests().pop().unwrap().body["stream_options"]["include_usage"], true);
    let mut records = Vec::new();
    for _ in 0..100 {
        records = gateway.store().spend_by_request("anthropic-stream").await.unwrap();
        if !records.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let [record] = records.as_slice() else { panic!("one record for the request: {records:?}") };
    assert!(!record.usage_estimated, "{record:?}");
    assert_eq!(
        record.usage.output,
        mock.stats().completion_tokens,
        "the ledger has what the provider reported"
    );
    assert_eq!(record.usage.output, output, "and the client was told the same");
    assert_eq!(record.end_user.as_deref(), Some("end-user-7"));
}

#[tokio::test]
async fn errors_come_in_anthropics_envelope() {
    let mock = MockServer::start(MockConfig::default()).await.unwrap();
    let gateway = gateway_for(&mock).await;
    let post = |body: Value| client().post(gateway.url("/v1/messages")).json(&body).send();

    let mut no_max = messages_body(false);
    no_max.as_object_mut().unwrap().remove("max_tokens");
    let response = post(no_max).await.unwrap();
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["type"], "error");
    assert_eq!(body["error"]["type"], "invalid_request_error");
    assert!(body["error"]["message"].as_str().unwrap().contains("max_tokens"), "{body}");

    let mut unknown = messages_body(false);
    unknown["model"] = json!("claude-nowhere");
    let response = post(unknown).await.unwrap();
    assert_eq!(response.status(), 404);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["type"], "not_found_error");

    mock.push_fault(Fault::RateLimited { retry_after_secs: 1 });
    mock.push_fault(Fault::RateLimited { retry_after_secs: 1 });
    mock.push_fault(Fault::RateLimited { retry_after_secs: 1 });
    let response = post(messages_body(false)).await.unwrap();
    assert_eq!(response.status(), 429);
    assert!(response.headers().contains_key("retry-after"));
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["type"], "rate_limit_error");

    let tools = json!({"model": "claude-via-openai", "max_tokens": 10,
        "messages": [{"role": "user", "content": "x"}], "tools": [{"type": "bash_20250124", "name": "bash"}]});
    let body: Value = post(tools).await.unwrap().json().await.unwrap();
    assert_eq!(body["error"]["type"], "invalid_request_error");
    assert!(body["error"]["message"].as_str().unwrap().contains("bash_20250124"), "{body}");
}

#[tokio::test]
async fn a_wrong_key_is_an_anthropic_authentication_error() {
    let mock = MockServer::start(MockConfig::default()).await.unwrap();
    let yaml = format!(
        "server:\n  master_key: sk-master-test\nmodels:\n{}",
        openai_model("claude-via-openai", "gpt-upstream", &mock.url())
    );
    let gateway = Gateway::start(&yaml).await;
    let response = client()
        .post(gateway.url("/v1/messages"))
        .header("x-api-key", "sk-wrong")
        .json(&messages_body(false))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["type"], "error");
    assert_eq!(body["error"]["type"], "authentication_error");

    let ok = client()
        .post(gateway.url("/v1/messages"))
        .header("x-api-key", "sk-master-test")
        .json(&messages_body(false))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
}

#[tokio::test]
async fn count_tokens_grows_with_the_prompt_and_knows_its_models() {
    let mock = MockServer::start(MockConfig::default()).await.unwrap();
    let gateway = gateway_for(&mock).await;
    let count = |text: String| {
        let body = json!({"model": "claude-via-openai", "messages": [{"role": "user", "content": text}]});
        let url = gateway.url("/v1/messages/count_tokens");
        async move { client().post(url).json(&body).send().await.unwrap().json::<Value>().await.unwrap() }
    };
    let short = count("hello".into()).await["input_tokens"].as_u64().unwrap();
    let long = count("hello world ".repeat(100)).await["input_tokens"].as_u64().unwrap();
    assert!(short > 0 && long > short + 150, "{short} vs {long}");
    assert_eq!(mock.stats().requests, 0, "counting calls no provider");

    let unknown = client()
        .post(gateway.url("/v1/messages/count_tokens"))
        .json(&json!({"model": "nope", "messages": [{"role": "user", "content": "x"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
    assert_eq!(unknown.json::<Value>().await.unwrap()["error"]["type"], "not_found_error");
}

/// A gateway whose `claude` is a native Anthropic deployment on the mock.
async fn anthropic_gateway(mock: &MockServer) -> Gateway {
    Gateway::start(&format!(
        "accounting:\n  ledger_flush_interval_ms: 20\nmodels:\n  - name: claude\n    deployments:\n      - {{provider: anthropic, model: claude-upstream, api_base: 'http://{}', api_key: sk-ant-upstream-0123456789}}\n",
        mock.addr()
    ))
    .await
}

#[tokio::test]
async fn anthropic_to_anthropic_is_lossless_betas_signatures_and_unknown_fields_included() {
    let mock = MockServer::start(MockConfig::default()).await.unwrap();
    let gateway = anthropic_gateway(&mock).await;
    let body = json!({
        "model": "claude", "max_tokens": 2048,
        "thinking": {"type": "enabled", "budget_tokens": 1024},
        "system": [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
        "messages": [
            {"role": "user", "content": "Think first."},
            {"role": "assistant", "content": [
                {"type": "thinking", "thinking": "earlier thought", "signature": "c2lnbmF0dXJlLW9mLXRoZS1wYXN0"},
                {"type": "text", "text": "Done."}
            ]},
            {"role": "user", "content": [{"type": "text", "text": "Again.", "cache_control": {"type": "ephemeral"}}]}
        ],
        "a_field_anthropic_adds_next_year": {"nested": [1, 2]}
    });
    let response = client()
        .post(gateway.url("/v1/messages"))
        .header("anthropic-version", "2023-06-01")
        .header("anthropic-beta", "interleaved-thinking-2025-05-14,context-1m-2025-08-07")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await.unwrap();
    let thinking = &answer["content"][0];
    assert_eq!(thinking["type"], "thinking");
    assert!(
        thinking["signature"].as_str().is_some_and(|s| !s.is_empty()),
        "the signature comes back: {answer}"
    );

    let sent = mock.requests().pop().unwrap();
    let mut expected = body.clone();
    expected["model"] = json!("claude-upstream");
    assert_eq!(sent.body, expected, "only the model was changed");
    assert_eq!(sent.headers["anthropic-beta"], "interleaved-thinking-2025-05-14,context-1m-2025-08-07");
    assert_eq!(sent.headers["anthropic-version"], "2023-06-01");
    assert_eq!(sent.headers["x-api-key"], "sk-ant-upstream-0123456789");
}

#[tokio::test]
async fn an_anthropic_stream_is_forwarded_event_for_event_and_billed_once() {
    let mock = MockServer::start(MockConfig::default()).await.unwrap();
    let gateway = anthropic_gateway(&mock).await;
    let body = json!({"model": "claude", "max_tokens": 256, "stream": true,
                      "messages": [{"role": "user", "content": "Count."}]});
    let response = client()
        .post(gateway.url("/v1/messages"))
        .header("x-request-id", "native-stream")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let events = events(&response.text().await.unwrap());
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    assert!(names.contains(&"ping"), "Anthropic's own events pass through: {names:?}");
    assert_eq!(names.last(), Some(&"message_stop"));

    let mut records = Vec::new();
    for _ in 0..100 {
        records = gateway.store().spend_by_request("native-stream").await.unwrap();
        if !records.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let [record] = records.as_slice() else { panic!("one record for the request: {records:?}") };
    let stats = mock.stats();
    // message_start and message_delta both report the input: it is counted once.
    assert_eq!(record.usage.input, stats.prompt_tokens, "{record:?}");
    assert_eq!(record.usage.output, stats.completion_tokens, "{record:?}");
    assert!(!record.usage_estimated);
}

#[tokio::test]
async fn an_openai_client_is_served_by_an_anthropic_deployment() {
    let mock = MockServer::start(MockConfig::default()).await.unwrap();
    let gateway = anthropic_gateway(&mock).await;
    let tools = json!([{"type": "function", "function": {"name": "get_weather",
        "parameters": {"type": "object", "properties": {"location": {"type": "string"}}}}}]);
    let answer: Value = client()
        .post(gateway.url("/v1/chat/completions"))
        .json(&json!({"model": "claude", "messages": [{"role": "user", "content": "Weather?"}], "tools": tools}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer["object"], "chat.completion");
    assert_eq!(answer["choices"][0]["finish_reason"], "tool_calls");
    let call = &answer["choices"][0]["message"]["tool_calls"][0];
    assert_eq!(call["function"]["name"], "get_weather");
    assert!(
        serde_json::from_str::<Value>(call["function"]["arguments"].as_str().unwrap()).unwrap().is_object()
    );
    let sent = mock.requests().pop().unwrap().body;
    assert_eq!(sent["max_tokens"], 4096, "Anthropic needs one: the default is sent");
    assert_eq!(sent["tools"][0]["name"], "get_weather");

    let stream = client()
        .post(gateway.url("/v1/chat/completions"))
        .json(&json!({"model": "claude", "stream": true, "stream_options": {"include_usage": true},
                      "messages": [{"role": "user", "content": "Count."}]}))
        .send()
        .await
        .unwrap();
    let data = switchyard_e2e::sse_data(stream).await;
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
    let usage: Value = serde_json::from_str(&data[data.len() - 2]).unwrap();
    assert_eq!(usage["choices"], json!([]));
    assert!(usage["usage"]["completion_tokens"].as_u64().unwrap() > 0);
}

#[tokio::test]
async fn anthropics_overload_mid_stream_ends_the_stream_with_an_error_event() {
    let mock = MockServer::start(MockConfig::default()).await.unwrap();
    let gateway = anthropic_gateway(&mock).await;
    mock.push_fault(Fault::ErrorMidStream { after_events: 4 });
    let body = json!({"model": "claude", "max_tokens": 256, "stream": true,
                      "messages": [{"role": "user", "content": "Count."}]});
    let response = client().post(gateway.url("/v1/messages")).json(&body).send().await.unwrap();
    assert_eq!(response.status(), 200, "the stream had started");
    let events = events(&response.text().await.unwrap());
    let (name, data) = events.last().unwrap();
    assert_eq!(name, "error");
    assert_eq!(data["error"]["type"], "overloaded_error", "{data}");
    assert!(!events.iter().any(|(n, _)| n == "message_stop"));
}
