//! End to end: OpenAI-dialect clients served by a Cohere deployment. The gateway translates to
//! Cohere's v2 API (the testkit's Cohere mock, which refuses fields Cohere does not know) and
//! back: text, streams, tools, embeddings and Cohere's errors.

#![allow(clippy::unwrap_used, reason = "a failed unwrap is a failed test, with its message")]

use futures_util::StreamExt;
use serde_json::{Value, json};
use switchyard_e2e::{Gateway, client, post_json};
use switchyard_testkit::{Fault, MockConfig, MockServer};

const KEY: &str = "co-upstream-secret-0123456789";

/// A Cohere mock that checks the key, and a gateway with a chat and an embed model on it.
async fn setup(config: MockConfig, gateway_key: &str, router: &str) -> (MockServer, Gateway) {
    let mock = MockServer::start(MockConfig { api_key: Some(KEY.into()), ..config }).await.unwrap();
    let base = format!("http://{}", mock.addr());
    let yaml = format!(
        "{router}models:
  - name: command
    deployments:
      - {{provider: cohere, model: command-a-03-2025, api_base: '{base}', api_key: {gateway_key}}}
  - name: embed
    deployments:
      - {{provider: cohere, model: embed-v4.0, api_base: '{base}', api_key: {gateway_key}}}
"
    );
    (mock, Gateway::start(&yaml).await)
}

async fn post(gateway: &Gateway, body: &Value) -> (u16, reqwest::header::HeaderMap, Value) {
    let response = client().post(gateway.url("/v1/chat/completions")).json(body).send().await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().await.unwrap();
    assert!(!text.contains(KEY) && !text.contains("co-upstr"), "the provider key leaked: {text}");
    (status, headers, serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}")))
}

/// The `data:` payloads of an SSE response, `[DONE]` included, read as they arrive.
async fn stream(gateway: &Gateway, body: &Value) -> Vec<String> {
    let response = client().post(gateway.url("/v1/chat/completions")).json(body).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut data = Vec::new();
    let mut buffer = String::new();
    let mut bytes = response.bytes_stream();
    while let Some(piece) = bytes.next().await {
        buffer.push_str(&String::from_utf8_lossy(&piece.unwrap()));
        while let Some(end) = buffer.find("\n\n") {
            let event: String = buffer.drain(..end + 2).collect();
            if let Some(payload) = event.trim().strip_prefix("data: ") {
                data.push(payload.to_owned());
            }
        }
    }
    data
}

fn weather_tools() -> Value {
    json!([{"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
        "parameters": {"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]}}}])
}

#[tokio::test]
async fn a_chat_is_translated_to_cohere_and_answers_in_openai_shape() {
    let (mock, gateway) = setup(MockConfig { chunks: 4, ..MockConfig::default() }, KEY, "").await;
    let body = json!({"model": "command", "temperature": 0.2, "top_p": 0.9, "max_completion_tokens": 64,
        "stop": "\n\n", "user": "u-1", "stream_options": {"include_usage": true},
        "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]});
    let (status, headers, answer) = post(&gateway, &body).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(headers["x-switchyard-deployment"], "cohere/command-a-03-2025");
    assert_eq!(answer["object"], "chat.completion");
    assert_eq!(answer["model"], "command-a-03-2025");
    assert_eq!(
        answer["choices"][0]["message"],
        json!({"role": "assistant", "content": "tok0 tok1 tok2 tok3 ", "refusal": null})
    );
    assert_eq!(answer["choices"][0]["finish_reason"], "stop");
    let stats = mock.stats();
    assert_eq!(
        answer["usage"],
        json!({"prompt_tokens": stats.prompt_tokens, "completion_tokens": 4, "total_tokens": stats.prompt_tokens + 4}),
        "usage is Cohere's `tokens` count"
    );

    let sent = mock.requests().pop().unwrap();
    assert_eq!(sent.path, "/v2/chat");
    assert_eq!(sent.headers["authorization"], format!("Bearer {KEY}"));
    assert_eq!(
        sent.body,
        json!({"model": "command-a-03-2025", "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}],
               "max_tokens": 64, "stop_sequences": ["\n\n"], "temperature": 0.2, "p": 0.9, "stream": false})
    );
}

#[tokio::test]
async fn a_stream_arrives_chunk_by_chunk_with_usage_only_when_asked() {
    let (_mock, gateway) = setup(MockConfig { chunks: 5, ..MockConfig::default() }, KEY, "").await;
    let body = json!({"model": "command", "stream": true, "stream_options": {"include_usage": true},
                      "messages": [{"role": "user", "content": "count"}]});
    let data = stream(&gateway, &body).await;
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
    let chunks: Vec<Value> =
        data[..data.len() - 1].iter().map(|d| serde_json::from_str(d).unwrap()).collect();
    assert_eq!(chunks[0]["choices"][0]["delta"], json!({"role": "assistant", "content": ""}));
    let text: String = chunks.iter().filter_map(|c| c["choices"][0]["delta"]["content"].as_str()).collect();
    assert_eq!(text, "tok0 tok1 tok2 tok3 tok4 ");
    assert!(chunks.iter().all(|c| c["object"] == "chat.completion.chunk"));
    let finish = &chunks[chunks.len() - 2];
    assert_eq!(finish["choices"][0]["finish_reason"], "stop");
    let usage = chunks.last().unwrap();
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(usage["usage"]["completion_tokens"], 5);

    let mut quiet = body.clone();
    quiet.as_object_mut().unwrap().remove("stream_options");
    let data = stream(&gateway, &quiet).await;
    assert!(
        data.iter().all(|d| !d.contains("\"usage\"")),
        "no usage chunk for a client that did not ask: {data:?}"
    );
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
}

#[tokio::test]
async fn a_tool_call_comes_back_in_openai_shape_and_its_result_goes_back_to_cohere() {
    let (mock, gateway) = setup(MockConfig::default(), KEY, "").await;
    let ask = json!({"model": "command", "tools": weather_tools(), "tool_choice": "required",
                     "messages": [{"role": "user", "content": "Weather in Paris?"}]});
    let (status, _, answer) = post(&gateway, &ask).await;
    assert_eq!(status, 200, "{answer}");
    let message = &answer["choices"][0]["message"];
    assert_eq!(answer["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(message["content"], Value::Null, "Cohere's tool plan is not an answer");
    assert_eq!(
        message["tool_calls"],
        json!([{"id": "get_weather_mock1", "type": "function",
                "function": {"name": "get_weather", "arguments": "{\"location\":\"Paris\"}"}}])
    );
    assert_eq!(mock.requests().pop().unwrap().body["tool_choice"], "REQUIRED");

    let follow_up = json!({"model": "command", "tools": weather_tools(), "messages": [
        {"role": "user", "content": "Weather in Paris?"},
        message.clone(),
        {"role": "tool", "tool_call_id": "get_weather_mock1", "content": "{\"temp_c\": 18}"}
    ]});
    let (status, _, answer) = post(&gateway, &follow_up).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["choices"][0]["finish_reason"], "stop");
    let sent = mock.requests().pop().unwrap().body;
    assert_eq!(sent["messages"][1], json!({"role": "assistant", "tool_calls": message["tool_calls"]}));
    assert_eq!(
        sent["messages"][2],
        json!({"role": "tool", "tool_call_id": "get_weather_mock1", "content": "{\"temp_c\": 18}"})
    );

    let streamed = json!({"model": "command", "stream": true, "tools": weather_tools(),
                          "messages": [{"role": "user", "content": "Weather in Paris?"}]});
    let data = stream(&gateway, &streamed).await;
    let chunks: Vec<Value> =
        data.iter().filter(|d| *d != "[DONE]").map(|d| serde_json::from_str(d).unwrap()).collect();
    let deltas: Vec<&Value> =
        chunks.iter().filter_map(|c| c["choices"][0]["delta"]["tool_calls"].get(0)).collect();
    assert_eq!(deltas[0]["function"]["name"], "get_weather");
    assert_eq!(deltas[0]["id"], "get_weather_mock1");
    let arguments: String = deltas.iter().filter_map(|d| d["function"]["arguments"].as_str()).collect();
    assert_eq!(arguments, "{\"location\":\"Paris\"}");
    assert!(deltas.iter().all(|d| d["index"] == 0));
    assert!(chunks.iter().any(|c| c["choices"][0]["finish_reason"] == "tool_calls"));
    assert!(
        chunks.iter().all(|c| c["choices"][0]["delta"]["content"].as_str().is_none_or(str::is_empty)),
        "no tool plan in content"
    );
}

#[tokio::test]
async fn embeddings_go_to_v2_embed_as_documents_by_default() {
    let (mock, gateway) = setup(MockConfig::default(), KEY, "").await;
    let answer = post_json(
        &gateway,
        "/v1/embeddings",
        &json!({"model": "embed", "input": ["one", "two"], "dimensions": 4}),
    )
    .await;
    assert_eq!(answer["object"], "list");
    assert_eq!(answer["model"], "embed-v4.0");
    let data = answer["data"].as_array().unwrap();
    assert_eq!(data.len(), 2);
    assert_eq!((data[1]["object"].as_str(), data[1]["index"].as_u64()), (Some("embedding"), Some(1)));
    assert_eq!(data[0]["embedding"].as_array().map(Vec::len), Some(4));
    assert_eq!(answer["usage"]["prompt_tokens"], mock.stats().prompt_tokens);
    let sent = mock.requests().pop().unwrap();
    assert_eq!(sent.path, "/v2/embed");
    assert_eq!(
        sent.body,
        json!({"model": "embed-v4.0", "texts": ["one", "two"], "input_type": "search_document",
               "embedding_types": ["float"], "output_dimension": 4})
    );

    let query = post_json(
        &gateway,
        "/v1/embeddings",
        &json!({"model": "embed", "input": "find me", "input_type": "search_query"}),
    )
    .await;
    assert_eq!(query["data"].as_array().map(Vec::len), Some(1));
    assert_eq!(mock.requests().pop().unwrap().body["input_type"], "search_query");
}

#[tokio::test]
async fn coheres_errors_reach_the_client_with_the_right_status() {
    let (mock, gateway) = setup(MockConfig::default(), KEY, "router:\n  retries: 0\n").await;
    let chat = json!({"model": "command", "messages": [{"role": "user", "content": "hi"}]});

    mock.push_fault(Fault::RateLimited { retry_after_secs: 7 });
    let (status, headers, body) = post(&gateway, &chat).await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(headers["retry-after"], "7");
    assert_eq!(body["error"]["type"], "rate_limit_error");
    assert!(body["error"]["message"].as_str().unwrap().contains("Trial key"), "Cohere's own words: {body}");

    mock.push_fault(Fault::Status {
        status: 400,
        body: json!({"id": "e1", "message": "too many tokens: total number of tokens in the prompt cannot exceed 4081 - received 4292. Try using a shorter prompt, or enabling prompt truncating."}),
    });
    let (status, _, body) = post(&gateway, &chat).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["code"], "context_length_exceeded");

    mock.push_fault(Fault::Status {
        status: 498,
        body: json!({"message": "blocked output: this generation may violate our Usage Guidelines"}),
    });
    let (status, _, body) = post(&gateway, &chat).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["code"], "content_policy_violation");

    let requests_before = mock.stats().requests;
    let (status, _, body) =
        post(&gateway, &json!({"model": "command", "n": 3, "messages": [{"role": "user", "content": "hi"}]}))
            .await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["param"], "n", "{body}");
    assert_eq!(mock.stats().requests, requests_before, "refused before anything was sent");
}

#[tokio::test]
async fn a_key_cohere_refuses_is_the_gateways_fault_502() {
    let (mock, gateway) =
        setup(MockConfig::default(), "co-wrong-key-0123456789", "router:\n  retries: 0\n").await;
    let (status, _, body) =
        post(&gateway, &json!({"model": "command", "messages": [{"role": "user", "content": "hi"}]})).await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(body["error"]["code"], "upstream_authentication_failed");
    assert!(body["error"]["message"].as_str().unwrap().contains("invalid api token"), "{body}");
    assert!(!body.to_string().contains("co-wrong-key"), "not even the wrong key leaks: {body}");
    assert_eq!(mock.stats().chat_completions, 0, "the mock refused it at the door");
}
