//! Chat Completions: whole answers, streams (sequence, usage, timing), tool calls, and the
//! streams-completed and streams-cancelled counters.

use std::time::Duration;

use http_body_util::BodyExt;
use serde_json::{Value, json};
use switchyard_testkit::MockConfig;
use tokio::time::Instant;

use crate::{
    CHAT_PROMPT_TOKENS, Conn, call, chat_request, chunks, json_body, post, sse_data, start, timed_events,
    wait_for,
};

fn tools() -> Value {
    json!({"tools": [
        {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}},
        {"type": "function", "function": {"name": "other", "parameters": {"type": "object"}}}
    ]})
}

#[tokio::test]
async fn whole_answer_has_openais_shape() {
    let server = start(MockConfig { chunks: 5, ..MockConfig::default() }).await;
    let response = call(&server, post("/v1/chat/completions", &chat_request(json!({})))).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    let body = json_body(response).await;

    assert!(body["id"].as_str().unwrap().starts_with("chatcmpl-mock-"), "{body}");
    assert_eq!(body["object"], "chat.completion");
    assert!(body["created"].as_u64().unwrap() > 1_700_000_000);
    assert_eq!(body["model"], "gpt-4o-mini", "the model is the request's");
    assert_eq!(body["system_fingerprint"], "fp_mock");
    let choices = body["choices"].as_array().unwrap();
    assert_eq!(choices.len(), 1);
    assert_eq!(choices[0]["index"], 0);
    assert_eq!(choices[0]["message"]["role"], "assistant");
    assert_eq!(choices[0]["message"]["content"], "tok0 tok1 tok2 tok3 tok4 ");
    assert_eq!(choices[0]["message"]["refusal"], Value::Null);
    assert!(choices[0]["message"].get("tool_calls").is_none());
    assert_eq!(choices[0]["finish_reason"], "stop");
    assert_eq!(choices[0]["logprobs"], Value::Null);
    assert_eq!(
        body["usage"],
        json!({
            "prompt_tokens": CHAT_PROMPT_TOKENS, "completion_tokens": 5, "total_tokens": CHAT_PROMPT_TOKENS + 5,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}
        })
    );

    let stats = server.stats();
    assert_eq!((stats.requests, stats.chat_completions, stats.streams), (1, 1, 0));
    assert_eq!((stats.prompt_tokens, stats.completion_tokens), (CHAT_PROMPT_TOKENS, 5));
}

#[tokio::test]
async fn n_choices_and_max_tokens_shape_the_answer() {
    let server = start(MockConfig { chunks: 5, ..MockConfig::default() }).await;
    let body =
        json_body(call(&server, post("/v1/chat/completions", &chat_request(json!({"n": 3})))).await).await;
    let indices: Vec<u64> =
        body["choices"].as_array().unwrap().iter().map(|c| c["index"].as_u64().unwrap()).collect();
    assert_eq!(indices, [0, 1, 2]);
    assert_eq!(body["usage"]["completion_tokens"], 15);

    let body =
        json_body(call(&server, post("/v1/chat/completions", &chat_request(json!({"max_tokens": 2})))).await)
            .await;
    assert_eq!(body["choices"][0]["message"]["content"], "tok0 tok1 ");
    assert_eq!(body["choices"][0]["finish_reason"], "length");

    let response = call(&server, post("/v1/chat/completions", &chat_request(json!({"n": 0})))).await;
    assert_eq!(response.status(), 400);
    assert_eq!(json_body(response).await["error"]["param"], "n");
}

#[tokio::test]
async fn stream_sends_role_content_finish_usage_and_done() {
    let server = start(MockConfig { chunks: 3, ..MockConfig::default() }).await;
    let request = chat_request(json!({"stream": true, "stream_options": {"include_usage": true}}));
    let response = call(&server, post("/v1/chat/completions", &request)).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    assert!(response.headers().get("content-length").is_none());
    let data = sse_data(response).await;

    assert_eq!(data.len(), 7, "role, 3 content, finish, usage, [DONE]: {data:#?}");
    assert_eq!(data.last().unwrap(), "[DONE]");
    let chunks = chunks(&data);
    let id = chunks[0]["id"].clone();
    for chunk in &chunks {
        assert_eq!(chunk["object"], "chat.completion.chunk");
        assert_eq!(chunk["id"], id, "one id per stream");
        assert_eq!(chunk["model"], "gpt-4o-mini");
    }
    assert_eq!(
        chunks[0]["choices"][0]["delta"],
        json!({"role": "assistant", "content": "", "refusal": null})
    );
    let content: String =
        chunks[1..4].iter().map(|c| c["choices"][0]["delta"]["content"].as_str().unwrap()).collect();
    assert_eq!(content, "tok0 tok1 tok2 ");
    for chunk in &chunks[..4] {
        assert_eq!(chunk["choices"][0]["finish_reason"], Value::Null);
    }
    assert_eq!(chunks[4]["choices"][0]["delta"], json!({}));
    assert_eq!(chunks[4]["choices"][0]["finish_reason"], "stop");
    for chunk in &chunks[..5] {
        assert_eq!(chunk.get("usage"), Some(&Value::Null), "usage is null until the last chunk");
    }
    assert_eq!(chunks[5]["choices"], json!([]));
    assert_eq!(chunks[5]["usage"]["prompt_tokens"], CHAT_PROMPT_TOKENS);
    assert_eq!(chunks[5]["usage"]["completion_tokens"], 3);
    assert_eq!(chunks[5]["usage"]["total_tokens"], CHAT_PROMPT_TOKENS + 3);

    let stats = wait_for(&server, |s| s.streams_completed == 1).await;
    assert_eq!((stats.streams, stats.streams_cancelled), (1, 0));
    assert_eq!((stats.prompt_tokens, stats.completion_tokens), (CHAT_PROMPT_TOKENS, 3));
}

#[tokio::test]
async fn stream_without_include_usage_has_no_usage_field() {
    let server = start(MockConfig { chunks: 2, ..MockConfig::default() }).await;
    let data =
        sse_data(call(&server, post("/chat/completions", &chat_request(json!({"stream": true})))).await)
            .await;
    assert_eq!(data.len(), 5, "role, 2 content, finish, [DONE]: {data:#?}");
    for chunk in chunks(&data) {
        assert!(chunk.get("usage").is_none(), "{chunk}");
        assert_eq!(chunk["choices"].as_array().unwrap().len(), 1);
    }
    assert_eq!(server.stats().completion_tokens, 0, "no usage was reported");
}

#[tokio::test]
async fn stream_with_n_choices_streams_each_choice() {
    let server = start(MockConfig { chunks: 2, ..MockConfig::default() }).await;
    let data = sse_data(
        call(&server, post("/v1/chat/completions", &chat_request(json!({"stream": true, "n": 2})))).await,
    )
    .await;
    let chunks = chunks(&data);
    for index in 0..2 {
        let of_choice: Vec<&Value> =
            chunks.iter().map(|c| &c["choices"][0]).filter(|c| c["index"] == index).collect();
        assert_eq!(of_choice.len(), 4, "role, 2 content, finish for choice {index}");
        assert_eq!(of_choice[3]["finish_reason"], "stop");
    }
}

#[tokio::test]
async fn stream_headers_come_at_once_and_chunks_are_paced_one_frame_each() {
    let ttft = Duration::from_millis(50);
    let chunk_delay = Duration::from_millis(20);
    let server = start(MockConfig { ttft, chunk_delay, chunks: 3, ..MockConfig::default() }).await;
    let mut conn = Conn::open(server.addr()).await;
    let start = Instant::now();
    let response =
        conn.send(post("/v1/chat/completions", &chat_request(json!({"stream": true})))).await.unwrap();
    let headers_at = start.elapsed();
    let events = timed_events(response, start).await;

    assert!(events[0].at >= ttft, "the first chunk waits for ttft: {:?}", events[0].at);
    assert!(
        headers_at + ttft / 2 < events[0].at,
        "headers at {headers_at:?}, first chunk at {:?}",
        events[0].at
    );
    // Events 1..=3 are the content chunks: each its own frame, chunk_delay apart.
    for pair in events[1..4].windows(2) {
        let gap = pair[1].at - pair[0].at;
        assert!(gap >= chunk_delay - Duration::from_millis(2), "content chunks {gap:?} apart");
    }
    assert!(events.last().unwrap().at >= ttft + 2 * chunk_delay);
}

#[tokio::test]
async fn tools_are_called_in_a_whole_answer() {
    let server = start(MockConfig::default()).await;
    let body = json_body(call(&server, post("/v1/chat/completions", &chat_request(tools()))).await).await;
    let choice = &body["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls");
    assert_eq!(choice["message"]["content"], Value::Null);
    let call = &choice["message"]["tool_calls"][0];
    assert_eq!(call["id"], "call_mock_1");
    assert_eq!(call["type"], "function");
    assert_eq!(call["function"]["name"], "get_weather", "the first tool is called");
    let arguments: Value = serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(arguments, json!({"location": "Paris"}));
}

#[tokio::test]
async fn tools_are_called_in_a_stream_as_openai_streams_them() {
    let server = start(MockConfig::default()).await;
    let mut request = chat_request(tools());
    request["stream"] = json!(true);
    let data = sse_data(call(&server, post("/v1/chat/completions", &request)).await).await;
    assert_eq!(data.last().unwrap(), "[DONE]");
    let chunks = chunks(&data);

    let first = &chunks[0]["choices"][0]["delta"];
    assert_eq!(first["role"], "assistant");
    assert_eq!(first["content"], Value::Null);
    assert_eq!(
        first["tool_calls"],
        json!([{"index": 0, "id": "call_mock_1", "type": "function",
                "function": {"name": "get_weather", "arguments": ""}}])
    );
    let fragments = &chunks[1..chunks.len() - 1];
    let mut arguments = String::new();
    for chunk in fragments {
        let call = &chunk["choices"][0]["delta"]["tool_calls"][0];
        assert_eq!(call["index"], 0);
        assert!(call.get("id").is_none() && call["function"].get("name").is_none(), "{call}");
        arguments.push_str(call["function"]["arguments"].as_str().unwrap());
    }
    assert!(fragments.len() > 1, "arguments arrive in fragments");
    assert_eq!(serde_json::from_str::<Value>(&arguments).unwrap(), json!({"location": "Paris"}));
    let last = &chunks.last().unwrap()["choices"][0];
    assert_eq!(last["finish_reason"], "tool_calls");
    assert_eq!(last["delta"], json!({}));
}

#[tokio::test]
async fn a_tool_result_is_answered_with_text() {
    let server = start(MockConfig { chunks: 1, ..MockConfig::default() }).await;
    let mut request = chat_request(tools());
    request["messages"] = json!([
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": null, "tool_calls": [{"id": "call_mock_1", "type": "function",
            "function": {"name": "get_weather", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "call_mock_1", "content": "sunny"}
    ]);
    let body = json_body(call(&server, post("/v1/chat/completions", &request)).await).await;
    assert_eq!(body["choices"][0]["message"]["content"], "tok0 ");
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
}

#[tokio::test]
async fn a_client_dropping_a_stream_midway_counts_as_cancelled() {
    let server =
        start(MockConfig { chunk_delay: Duration::from_millis(20), chunks: 50, ..MockConfig::default() })
            .await;
    let mut conn = Conn::open(server.addr()).await;
    let response =
        conn.send(post("/v1/chat/completions", &chat_request(json!({"stream": true})))).await.unwrap();
    let mut body = response.into_body();
    let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
    assert!(first.starts_with(b"data: "));
    // The client goes away: the body and the connection are dropped.
    drop(body);
    conn.task.abort();

    let stats = wait_for(&server, |s| s.streams_cancelled == 1).await;
    assert_eq!((stats.streams, stats.streams_completed), (1, 0));
}
