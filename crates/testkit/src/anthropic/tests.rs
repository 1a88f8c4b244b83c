//! The Anthropic dialect driven over real sockets with reqwest, as the gateway's adapter drives
//! Anthropic: whole answers, streams (order, shapes, pacing, cancellation), tools, thinking,
//! prompt-cache usage, token counting, the key and version checks, validation, triggers and
//! faults, and the recording of what was sent.

#![allow(clippy::unwrap_used, reason = "tests fail loudly on purpose")]

use std::sync::Once;
use std::time::Duration;

use serde_json::{Value, json};
use switchyard_types::sse::SseDecoder;
use tokio::time::Instant;

use super::{THINKING, THINKING_PIECES, THINKING_SIGNATURE, TOOL_INPUT_FRAGMENTS, rfc3339};
use crate::{Fault, MockConfig, MockServer, Stats};

/// The input tokens of [`request`]: (14 + 17) characters / 4 + 1.
const PROMPT_TOKENS: u64 = 8;

fn client() -> reqwest::Client {
    static PROVIDER: Once = Once::new();
    PROVIDER.call_once(|| {
        let _already_installed = rustls::crypto::ring::default_provider().install_default();
    });
    reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap()
}

async fn start(config: MockConfig) -> MockServer {
    MockServer::start(config).await.unwrap()
}

fn url(server: &MockServer, path: &str) -> String {
    format!("http://{}{path}", server.addr())
}

/// A small Messages request, with `extra` fields merged in (a `null` removes a field).
fn request(extra: Value) -> Value {
    let mut body = json!({
        "model": "claude-sonnet-4-5",
        "max_tokens": 1024,
        "system": "You are terse.",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Say hello, please"}]}]
    });
    if let (Some(body), Value::Object(extra)) = (body.as_object_mut(), extra) {
        for (key, value) in extra {
            if value.is_null() {
                body.remove(&key);
            } else {
                body.insert(key, value);
            }
        }
    }
    body
}

fn tools() -> Value {
    json!([
        {"name": "get_weather", "description": "The weather", "input_schema": {"type": "object"}},
        {"name": "other", "input_schema": {"type": "object"}}
    ])
}

/// POSTs `body` to `path` with the version header, as Anthropic's SDKs send it.
async fn post(server: &MockServer, path: &str, body: &Value) -> reqwest::Response {
    client()
        .post(url(server, path))
        .header("anthropic-version", "2023-06-01")
        .json(body)
        .send()
        .await
        .unwrap()
}

async fn message(server: &MockServer, body: &Value) -> Value {
    let response = post(server, "/v1/messages", body).await;
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

/// One event of a stream: its `event:` name, its data as JSON, and when its frame arrived.
#[derive(Debug)]
struct Event {
    name: String,
    data: Value,
    at: Duration,
}

/// Reads a stream to its end; answers its events and whether it ended cleanly.
async fn events(mut response: reqwest::Response) -> (Vec<Event>, Result<(), reqwest::Error>) {
    let start = Instant::now();
    let mut decoder = SseDecoder::new();
    let mut out = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(bytes)) => {
                let at = start.elapsed();
                let mut decoded = Vec::new();
                decoder.feed(&bytes, &mut decoded);
                for event in decoded {
                    let name = event.event.unwrap_or_default();
                    let data: Value = serde_json::from_str(&event.data).unwrap();
                    assert_eq!(data["type"], name.as_str(), "the event name is the data's type");
                    out.push(Event { name, data, at });
                }
            }
            Ok(None) => {
                assert!(!decoder.finish(), "the stream ended inside an event");
                return (out, Ok(()));
            }
            Err(err) => return (out, Err(err)),
        }
    }
}

async fn stream(server: &MockServer, body: &Value) -> Vec<Event> {
    let response = post(server, "/v1/messages", body).await;
    assert_eq!(response.status(), 200);
    let (events, end) = events(response).await;
    end.unwrap();
    events
}

fn names(events: &[Event]) -> Vec<&str> {
    events.iter().map(|e| e.name.as_str()).collect()
}

/// Rebuilds the whole message from a stream, as the SDKs' accumulators do.
fn accumulate(events: &[Event]) -> Value {
    let mut message = events[0].data["message"].clone();
    let mut json_inputs: Vec<String> = Vec::new();
    for event in &events[1..] {
        let data = &event.data;
        match event.name.as_str() {
            "content_block_start" => {
                message["content"].as_array_mut().unwrap().push(data["content_block"].clone());
                json_inputs.push(String::new());
            }
            "content_block_delta" => {
                let index = data["index"].as_u64().unwrap() as usize;
                let block = &mut message["content"][index];
                let delta = &data["delta"];
                let append = |block: &mut Value, field: &str, piece: &Value| {
                    let text = format!("{}{}", block[field].as_str().unwrap(), piece.as_str().unwrap());
                    block[field] = Value::String(text);
                };
                match delta["type"].as_str().unwrap() {
                    "text_delta" => append(block, "text", &delta["text"]),
                    "thinking_delta" => append(block, "thinking", &delta["thinking"]),
                    "signature_delta" => block["signature"] = delta["signature"].clone(),
                    "input_json_delta" => {
                        json_inputs[index].push_str(delta["partial_json"].as_str().unwrap())
                    }
                    other => panic!("unknown delta {other}"),
                }
            }
            "content_block_stop" => {
                let index = data["index"].as_u64().unwrap() as usize;
                if message["content"][index]["type"] == "tool_use" {
                    message["content"][index]["input"] = serde_json::from_str(&json_inputs[index]).unwrap();
                }
            }
            "message_delta" => {
                message["stop_reason"] = data["delta"]["stop_reason"].clone();
                message["stop_sequence"] = data["delta"]["stop_sequence"].clone();
                for (key, value) in data["usage"].as_object().unwrap() {
                    message["usage"][key] = value.clone();
                }
            }
            "ping" | "message_stop" => {}
            other => panic!("unexpected event {other}"),
        }
    }
    message
}

async fn wait_for(server: &MockServer, done: impl Fn(&Stats) -> bool) -> Stats {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let stats = server.stats();
        if done(&stats) {
            return stats;
        }
        assert!(Instant::now() < deadline, "timed out waiting; last stats: {stats:?}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// The error envelope of `response`, checked to name the request as its header does.
async fn error_of(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let request_id = response.headers()["request-id"].to_str().unwrap().to_owned();
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["type"], "error", "{body}");
    assert_eq!(body["request_id"], request_id.as_str());
    assert!(request_id.starts_with("req_mock_"));
    (status, body["error"].clone())
}

#[tokio::test]
async fn a_whole_answer_has_anthropics_shape() {
    let server = start(MockConfig { chunks: 5, ..MockConfig::default() }).await;
    let response = post(&server, "/v1/messages", &request(json!({}))).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    assert_eq!(response.headers()["request-id"], "req_mock_1");
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body,
        json!({
            "id": "msg_mock_1",
            "type": "message",
            "role": "assistant",
            "model": "claude-sonnet-4-5",
            "content": [{"type": "text", "text": "tok0 tok1 tok2 tok3 tok4 "}],
            "stop_reason": "end_turn",
            "stop_sequence": null,
            "usage": {
                "input_tokens": PROMPT_TOKENS,
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 0,
                "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0},
                "output_tokens": 5,
                "service_tier": "standard"
            }
        })
    );
    let stats = server.stats();
    assert_eq!((stats.requests, stats.streams, stats.chat_completions), (1, 0, 0));
    assert_eq!((stats.prompt_tokens, stats.completion_tokens), (PROMPT_TOKENS, 5));
}

#[tokio::test]
async fn max_tokens_and_stop_sequences_end_the_text() {
    let server = start(MockConfig { chunks: 5, ..MockConfig::default() }).await;
    let body = message(&server, &request(json!({"max_tokens": 2}))).await;
    assert_eq!(body["content"], json!([{"type": "text", "text": "tok0 tok1 "}]));
    assert_eq!((&body["stop_reason"], &body["stop_sequence"]), (&json!("max_tokens"), &Value::Null));
    assert_eq!(body["usage"]["output_tokens"], 2);

    let body = message(&server, &request(json!({"stop_sequences": ["tok9", "tok2"]}))).await;
    assert_eq!(body["content"], json!([{"type": "text", "text": "tok0 tok1 "}]));
    assert_eq!((&body["stop_reason"], &body["stop_sequence"]), (&json!("stop_sequence"), &json!("tok2")));
}

#[tokio::test]
async fn tools_are_called_until_a_tool_result_comes_back() {
    let server = start(MockConfig::default()).await;
    let body = message(&server, &request(json!({"tools": tools()}))).await;
    assert_eq!(
        body["content"],
        json!([{"type": "tool_use", "id": "toolu_mock_1", "name": "get_weather", "input": {"location": "Paris"}}])
    );
    assert_eq!((&body["stop_reason"], &body["stop_sequence"]), (&json!("tool_use"), &Value::Null));

    let named = json!({"tools": tools(), "tool_choice": {"type": "tool", "name": "other"}});
    assert_eq!(message(&server, &request(named)).await["content"][0]["name"], "other");
    let none = json!({"tools": tools(), "tool_choice": {"type": "none"}});
    assert_eq!(message(&server, &request(none)).await["stop_reason"], "end_turn");

    let after_result = request(json!({"tools": tools(), "messages": [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": [
            {"type": "tool_use", "id": "toolu_mock_1", "name": "get_weather", "input": {"location": "Paris"}}]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_mock_1", "content": "Sunny"}]}
    ]}));
    let body = message(&server, &after_result).await;
    assert_eq!(body["content"][0]["type"], "text");
    assert_eq!(body["stop_reason"], "end_turn");
}

#[tokio::test]
async fn thinking_comes_first_with_its_signature() {
    let server = start(MockConfig { chunks: 2, ..MockConfig::default() }).await;
    let thinking = json!({"max_tokens": 2048, "thinking": {"type": "enabled", "budget_tokens": 1024}});
    let body = message(&server, &request(thinking)).await;
    assert_eq!(
        body["content"],
        json!([
            {"type": "thinking", "thinking": THINKING, "signature": THINKING_SIGNATURE},
            {"type": "text", "text": "tok0 tok1 "}
        ])
    );
    assert_eq!(body["usage"]["output_tokens"], 3 + 2, "thinking tokens are output tokens");
    assert_eq!(THINKING_PIECES.concat(), THINKING);

    let response = post(
        &server,
        "/v1/messages",
        &request(json!({"thinking": {"type": "enabled", "budget_tokens": 1024}})),
    )
    .await;
    let (status, error) = error_of(response).await;
    assert_eq!(status, 400);
    assert_eq!(error["message"], "`max_tokens` must be greater than `thinking.budget_tokens`.");
}

#[tokio::test]
async fn a_stream_sends_anthropics_events_in_order() {
    let server = start(MockConfig { chunks: 3, ..MockConfig::default() }).await;
    let response = post(&server, "/v1/messages", &request(json!({"stream": true}))).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream; charset=utf-8");
    assert_eq!(response.headers()["request-id"], "req_mock_1");
    assert!(response.headers().get("content-length").is_none());
    let (events, end) = events(response).await;
    end.unwrap();

    assert_eq!(
        names(&events),
        [
            "message_start",
            "content_block_start",
            "ping",
            "content_block_delta",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
    assert_eq!(
        events[0].data,
        json!({"type": "message_start", "message": {
            "id": "msg_mock_1", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
            "content": [], "stop_reason": null, "stop_sequence": null,
            "usage": {"input_tokens": PROMPT_TOKENS, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0,
                "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0},
                "output_tokens": 1, "service_tier": "standard"}
        }})
    );
    assert_eq!(
        events[1].data,
        json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}})
    );
    assert_eq!(events[2].data, json!({"type": "ping"}));
    assert_eq!(
        events[3].data,
        json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "tok0 "}})
    );
    assert_eq!(events[6].data, json!({"type": "content_block_stop", "index": 0}));
    assert_eq!(
        events[7].data,
        json!({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null},
            "usage": {"input_tokens": PROMPT_TOKENS, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0,
                "output_tokens": 3}})
    );
    assert_eq!(events[8].data, json!({"type": "message_stop"}));

    let stats = wait_for(&server, |s| s.streams_completed == 1).await;
    assert_eq!((stats.streams, stats.streams_cancelled), (1, 0));
    assert_eq!((stats.prompt_tokens, stats.completion_tokens), (PROMPT_TOKENS, 3));
}

#[tokio::test]
async fn a_streamed_tool_call_sends_its_input_in_fragments() {
    let server = start(MockConfig::default()).await;
    let events = stream(&server, &request(json!({"stream": true, "tools": tools()}))).await;
    assert_eq!(
        events[1].data["content_block"],
        json!({"type": "tool_use", "id": "toolu_mock_1", "name": "get_weather", "input": {}})
    );
    let fragments: Vec<&str> = events
        .iter()
        .filter(|e| e.name == "content_block_delta")
        .map(|e| {
            assert_eq!(e.data["delta"]["type"], "input_json_delta");
            e.data["delta"]["partial_json"].as_str().unwrap()
        })
        .collect();
    assert_eq!(fragments, TOOL_INPUT_FRAGMENTS, "opens with an empty fragment, as the API does");
    let input: Value = serde_json::from_str(&fragments.concat()).unwrap();
    assert_eq!(input, json!({"location": "Paris"}));
    let delta = &events[events.len() - 2].data;
    assert_eq!(delta["delta"], json!({"stop_reason": "tool_use", "stop_sequence": null}));
}

#[tokio::test]
async fn a_streamed_thinking_block_is_signed_after_its_deltas() {
    let server = start(MockConfig { chunks: 2, ..MockConfig::default() }).await;
    let thinking =
        json!({"stream": true, "max_tokens": 4096, "thinking": {"type": "enabled", "budget_tokens": 2048}});
    let events = stream(&server, &request(thinking)).await;
    assert_eq!(
        names(&events),
        [
            "message_start",
            "content_block_start",
            "ping",
            "content_block_delta",
            "content_block_delta",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "content_block_start",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
    assert_eq!(events[1].data["content_block"], json!({"type": "thinking", "thinking": "", "signature": ""}));
    let kinds: Vec<&str> = events[3..7].iter().map(|e| e.data["delta"]["type"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["thinking_delta", "thinking_delta", "thinking_delta", "signature_delta"]);
    assert_eq!(events[6].data["delta"]["signature"], THINKING_SIGNATURE);
    assert_eq!(
        events[8].data,
        json!({"type": "content_block_start", "index": 1, "content_block": {"type": "text", "text": ""}})
    );
    assert_eq!(events[9].data["index"], 1);
}

#[tokio::test]
async fn a_stream_reassembles_into_the_whole_answer() {
    let server = start(MockConfig { chunks: 6, ..MockConfig::default() }).await;
    let thinking = json!({"type": "enabled", "budget_tokens": 1024});
    for extra in [
        json!({}),
        json!({"max_tokens": 3}),
        json!({"stop_sequences": ["k3 t"]}),
        json!({"tools": tools()}),
        json!({"max_tokens": 2000, "thinking": thinking}),
        json!({"max_tokens": 2000, "thinking": thinking, "tools": tools()}),
    ] {
        let mut whole = message(&server, &request(extra.clone())).await;
        let mut streamed_request = request(extra.clone());
        streamed_request["stream"] = json!(true);
        let mut streamed = accumulate(&stream(&server, &streamed_request).await);
        // Ids differ (one per answer); everything else must not.
        for answer in [&mut whole, &mut streamed] {
            answer["id"] = Value::Null;
            if let Some(block) =
                answer["content"].as_array_mut().unwrap().iter_mut().find(|b| b["type"] == "tool_use")
            {
                block["id"] = Value::Null;
            }
        }
        assert_eq!(streamed, whole, "for {extra}");
    }
}

#[tokio::test]
async fn streams_are_paced_by_ttft_and_chunk_delay() {
    let config = MockConfig {
        ttft: Duration::from_millis(150),
        chunk_delay: Duration::from_millis(40),
        chunks: 3,
        ..MockConfig::default()
    };
    let server = start(config).await;
    let events = stream(&server, &request(json!({"stream": true}))).await;
    assert!(events[0].at >= Duration::from_millis(140), "message_start at {:?}", events[0].at);
    let deltas: Vec<Duration> =
        events.iter().filter(|e| e.name == "content_block_delta").map(|e| e.at).collect();
    assert!(deltas[0] - events[0].at < Duration::from_millis(35), "the first token follows at once");
    for pair in deltas.windows(2) {
        assert!(pair[1] - pair[0] >= Duration::from_millis(35), "deltas {deltas:?}");
    }
}

#[tokio::test]
async fn a_client_leaving_mid_stream_cancels_it() {
    let config = MockConfig { chunk_delay: Duration::from_millis(50), chunks: 50, ..MockConfig::default() };
    let server = start(config).await;
    let mut response = post(&server, "/v1/messages", &request(json!({"stream": true}))).await;
    assert!(response.chunk().await.unwrap().is_some());
    drop(response);
    let stats = wait_for(&server, |s| s.streams_cancelled == 1).await;
    assert_eq!((stats.streams, stats.streams_completed), (1, 0));
    assert_eq!(stats.completion_tokens, 0, "no usage was reported");
}

#[tokio::test]
async fn cache_control_writes_the_prefix_then_reads_it() {
    let server = start(MockConfig::default()).await;
    let cached = request(json!({"system": [
        {"type": "text", "text": "c".repeat(400), "cache_control": {"type": "ephemeral"}}
    ]}));
    // 417 characters: 105 tokens, of which the 400 characters of the prefix are 100.
    let first = message(&server, &cached).await["usage"].clone();
    assert_eq!(first["input_tokens"], 5);
    assert_eq!(first["cache_creation_input_tokens"], 100);
    assert_eq!(first["cache_creation"]["ephemeral_5m_input_tokens"], 100);
    assert_eq!(first["cache_read_input_tokens"], 0);

    let mut streamed = cached.clone();
    streamed["stream"] = json!(true);
    let events = stream(&server, &streamed).await;
    let usage = &events[0].data["message"]["usage"];
    assert_eq!(
        (&usage["input_tokens"], &usage["cache_creation_input_tokens"], &usage["cache_read_input_tokens"]),
        (&json!(5), &json!(0), &json!(100)),
        "the same prefix again is read from the cache"
    );
    assert_eq!(events[events.len() - 2].data["usage"]["cache_read_input_tokens"], 100);

    let count = post(&server, "/v1/messages/count_tokens", &cached).await.json::<Value>().await.unwrap();
    assert_eq!(count, json!({"input_tokens": 105}), "count_tokens counts cached tokens too");
    let stats = wait_for(&server, |s| s.streams_completed == 1).await;
    assert_eq!(stats.prompt_tokens, 2 * 105, "the counters count every input token");
}

#[tokio::test]
async fn count_tokens_counts_as_messages_do() {
    let server = start(MockConfig::default()).await;
    let mut body = request(json!({"max_tokens": null, "tools": tools()}));
    let response = post(&server, "/v1/messages/count_tokens", &body).await;
    assert_eq!(response.status(), 200);
    assert!(response.headers().contains_key("request-id"));
    let count: Value = response.json().await.unwrap();
    body["max_tokens"] = json!(10);
    body["tool_choice"] = json!({"type": "none"});
    let usage = message(&server, &body).await["usage"].clone();
    assert_eq!(count["input_tokens"], usage["input_tokens"]);
    // The tools' names and descriptions count: (14 + 17 + 11 + 11 + 5) / 4 + 1.
    assert_eq!(count, json!({"input_tokens": 15}));
    assert_eq!(server.stats().prompt_tokens, 15, "counting tokens is not usage");

    let response = client().post(url(&server, "/v1/messages/count_tokens")).json(&body).send().await.unwrap();
    let (status, error) = error_of(response).await;
    assert_eq!((status, error["message"].as_str().unwrap()), (400, "anthropic-version: header is required"));
}

#[tokio::test]
async fn the_key_is_checked_in_x_api_key_or_bearer() {
    let server = start(MockConfig { api_key: Some("sk-ant-mock".into()), ..MockConfig::default() }).await;
    let send = |headers: &[(&str, &str)]| {
        let mut builder = client()
            .post(url(&server, "/v1/messages"))
            .header("anthropic-version", "2023-06-01")
            .json(&request(json!({})));
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder.send()
    };
    assert_eq!(send(&[("x-api-key", "sk-ant-mock")]).await.unwrap().status(), 200);
    assert_eq!(send(&[("authorization", "Bearer sk-ant-mock")]).await.unwrap().status(), 200);

    let (status, error) = error_of(send(&[]).await.unwrap()).await;
    assert_eq!(status, 401);
    assert_eq!(error, json!({"type": "authentication_error", "message": "x-api-key header is required"}));
    let (status, error) = error_of(send(&[("x-api-key", "sk-ant-wrong")]).await.unwrap()).await;
    assert_eq!(status, 401);
    assert_eq!(error, json!({"type": "authentication_error", "message": "invalid x-api-key"}));

    // OpenAI's paths keep OpenAI's header and envelope.
    let response = client()
        .post(url(&server, "/v1/chat/completions"))
        .header("x-api-key", "sk-ant-mock")
        .json(&json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(response.json::<Value>().await.unwrap()["error"]["code"], "invalid_api_key");
}

#[tokio::test]
async fn bad_requests_are_refused_in_the_apis_words() {
    let server = start(MockConfig::default()).await;
    let response =
        client().post(url(&server, "/v1/messages")).json(&request(json!({}))).send().await.unwrap();
    let (status, error) = error_of(response).await;
    assert_eq!(status, 400);
    assert_eq!(
        error,
        json!({"type": "invalid_request_error", "message": "anthropic-version: header is required"})
    );

    for (extra, message) in [
        (json!({"max_tokens": null}), "max_tokens: Field required"),
        (json!({"messages": []}), "messages: at least one message is required"),
        (
            json!({"messages": [{"role": "assistant", "content": "Hi"}]}),
            "messages: first message must use the \"user\" role",
        ),
    ] {
        let (status, error) = error_of(post(&server, "/v1/messages", &request(extra)).await).await;
        assert_eq!(
            (status, &error["type"], error["message"].as_str().unwrap()),
            (400, &json!("invalid_request_error"), message)
        );
    }

    let response = client()
        .post(url(&server, "/v1/messages"))
        .header("anthropic-version", "2023-06-01")
        .body("{not json")
        .send()
        .await
        .unwrap();
    let (status, error) = error_of(response).await;
    assert_eq!((status, &error["type"]), (400, &json!("invalid_request_error")));

    let response = client().get(url(&server, "/v1/messages")).send().await.unwrap();
    let (status, error) = error_of(response).await;
    assert_eq!((status, &error["type"]), (404, &json!("not_found_error")));
    assert_eq!(server.stats().prompt_tokens, 0, "refused requests report no usage");
}

#[tokio::test]
async fn context_too_long_is_refused_as_the_api_refuses_it() {
    let server = start(MockConfig::default()).await;
    let body = request(json!({"messages": [{"role": "user", "content": "CONTEXT_TOO_LONG"}]}));
    let (status, error) = error_of(post(&server, "/v1/messages", &body).await).await;
    assert_eq!(status, 400);
    // 14 + 16 characters: 8 tokens over the window.
    assert_eq!(
        error,
        json!({"type": "invalid_request_error", "message": "prompt is too long: 200008 tokens > 200000 maximum"})
    );
    let count = post(&server, "/v1/messages/count_tokens", &body).await.json::<Value>().await.unwrap();
    assert_eq!(count["input_tokens"], 200_008);
}

#[tokio::test]
async fn rate_limited_answers_429_in_anthropics_shape() {
    let server = start(MockConfig::default()).await;
    server.push_fault(Fault::RateLimited { retry_after_secs: 7 });
    let response = post(&server, "/v1/messages", &request(json!({}))).await;
    let headers = response.headers().clone();
    let (status, error) = error_of(response).await;
    assert_eq!(status, 429);
    assert_eq!(error["type"], "rate_limit_error");
    assert!(error["message"].as_str().unwrap().contains("rate limit"), "{error}");
    assert_eq!(headers["retry-after"], "7");
    assert_eq!(headers["anthropic-ratelimit-requests-remaining"], "0");
    let reset = headers["anthropic-ratelimit-requests-reset"].to_str().unwrap();
    assert!(reset.len() == 20 && reset.ends_with('Z') && reset.as_bytes()[10] == b'T', "{reset}");

    assert_eq!(post(&server, "/v1/messages", &request(json!({}))).await.status(), 200, "once");
    let stats = server.stats();
    assert_eq!((stats.faults, stats.faults_by_kind.rate_limited), (1, 1));
}

#[tokio::test]
async fn overloaded_answers_529_and_error_mid_stream_does_on_whole_answers() {
    let server = start(MockConfig::default()).await;
    server.push_fault(Fault::Overloaded);
    server.push_fault(Fault::ErrorMidStream { after_events: 2 });
    server.push_fault(Fault::ErrorMidStream { after_events: 0 });
    for body in [request(json!({})), request(json!({}))] {
        let (status, error) = error_of(post(&server, "/v1/messages", &body).await).await;
        assert_eq!(status, 529);
        assert_eq!(error, json!({"type": "overloaded_error", "message": "Overloaded"}));
    }
    // count_tokens does not stream: the fault answers as Overloaded.
    let (status, _) = error_of(post(&server, "/v1/messages/count_tokens", &request(json!({}))).await).await;
    assert_eq!(status, 529);
    let stats = server.stats();
    assert_eq!((stats.faults_by_kind.overloaded, stats.faults_by_kind.error_mid_stream), (1, 2));
    assert_eq!(stats.prompt_tokens, 0);
}

#[tokio::test]
async fn error_mid_stream_replaces_an_event_with_an_error_event() {
    let server = start(MockConfig { chunks: 3, ..MockConfig::default() }).await;
    server.push_fault(Fault::ErrorMidStream { after_events: 4 });
    let events = stream(&server, &request(json!({"stream": true}))).await;
    assert_eq!(
        names(&events),
        ["message_start", "content_block_start", "ping", "content_block_delta", "error"]
    );
    assert_eq!(
        events[4].data,
        json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
    );
    // A stream shorter than the fault ends normally.
    server.push_fault(Fault::ErrorMidStream { after_events: 100 });
    assert_eq!(stream(&server, &request(json!({"stream": true}))).await.last().unwrap().name, "message_stop");
}

#[tokio::test]
async fn reset_mid_stream_cuts_an_anthropic_stream() {
    let server = start(MockConfig { chunks: 5, ..MockConfig::default() }).await;
    server.push_fault(Fault::ResetMidStream { after_chunks: 3 });
    let response = post(&server, "/v1/messages", &request(json!({"stream": true}))).await;
    assert_eq!(response.status(), 200);
    let (events, end) = events(response).await;
    assert_eq!(names(&events), ["message_start", "content_block_start", "ping"]);
    assert!(end.is_err(), "the body broke off instead of ending: {end:?}");
    let stats = server.stats();
    assert_eq!((stats.streams, stats.streams_completed, stats.streams_cancelled), (1, 0, 0));
}

#[tokio::test]
async fn requests_are_recorded_as_sent() {
    let server = start(MockConfig::default()).await;
    let body = request(json!({
        "messages": [
            {"role": "user", "content": "Think."},
            {"role": "assistant", "content": [
                {"type": "thinking", "thinking": THINKING, "signature": THINKING_SIGNATURE},
                {"type": "text", "text": "Done.", "cache_control": {"type": "ephemeral", "ttl": "1h"}}]},
            {"role": "user", "content": "Again."}
        ],
        "thinking": {"type": "enabled", "budget_tokens": 1024},
        "max_tokens": 2048,
        "context_management": {"edits": [{"type": "clear_tool_uses_20250919"}]}
    }));
    let response = client()
        .post(url(&server, "/v1/messages"))
        .header("anthropic-version", "2023-06-01")
        .header("anthropic-beta", "interleaved-thinking-2025-05-14,context-management-2025-06-27")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let recorded = server.requests();
    assert_eq!(recorded.len(), 1);
    assert_eq!((recorded[0].method.as_str(), recorded[0].path.as_str()), ("POST", "/v1/messages"));
    assert_eq!(
        recorded[0].headers["anthropic-beta"],
        "interleaved-thinking-2025-05-14,context-management-2025-06-27"
    );
    assert_eq!(recorded[0].headers["anthropic-version"], "2023-06-01");
    assert_eq!(recorded[0].body, body, "unknown fields, signatures and cache_control are kept");
}

#[test]
fn rfc3339_formats_utc_times() {
    assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
    assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    assert_eq!(rfc3339(1_735_689_599), "2024-12-31T23:59:59Z");
}
