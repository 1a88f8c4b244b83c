//! End to end: streams are forwarded chunk by chunk, and a client that leaves cancels upstream.

#![allow(clippy::unwrap_used, reason = "a failed unwrap is a failed test, with its message")]

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::{Value, json};
use switchyard_e2e::{Gateway, client, eventually, openai_model};
use switchyard_testkit::{MockConfig, MockServer};

/// Reads a whole SSE response into its `data:` payloads, noting when each arrived.
async fn events(response: reqwest::Response, started: Instant) -> Vec<(Duration, String)> {
    let mut out = Vec::new();
    let mut buffer = String::new();
    let mut body = response.bytes_stream();
    while let Some(bytes) = body.next().await {
        buffer.push_str(&String::from_utf8_lossy(&bytes.unwrap()));
        while let Some(end) = buffer.find("\n\n") {
            let event: String = buffer.drain(..end + 2).collect();
            if let Some(data) = event.trim().strip_prefix("data: ") {
                out.push((started.elapsed(), data.to_owned()));
            }
        }
    }
    out
}

#[tokio::test]
async fn each_chunk_reaches_the_client_as_it_arrives() {
    let mock = MockServer::start(MockConfig {
        chunk_delay: Duration::from_millis(100),
        chunks: 5,
        ..MockConfig::default()
    })
    .await
    .unwrap();
    let gateway = Gateway::start(&format!("models:\n{}", openai_model("m", "up", &mock.url()))).await;
    let body = json!({"model": "m", "stream": true, "stream_options": {"include_usage": true},
                      "messages": [{"role": "user", "content": "count"}]});
    let started = Instant::now();
    let response = client().post(gateway.url("/v1/chat/completions")).json(&body).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let events = events(response, started).await;

    let (first_content_at, _) = events.iter().find(|(_, d)| d.contains("\"content\":\"tok")).unwrap();
    let (done_at, last) = events.last().unwrap();
    assert_eq!(last, "[DONE]");
    // Five chunks 100 ms apart: the first must be in the client's hands long before the last
    // is even sent. A gateway that buffered would deliver them all at once.
    assert!(
        *first_content_at + Duration::from_millis(300) <= *done_at,
        "first content at {first_content_at:?}, done at {done_at:?}: the stream was buffered"
    );
    let usage: Value = serde_json::from_str(&events[events.len() - 2].1).unwrap();
    assert_eq!(usage["choices"], json!([]));
    assert!(usage["usage"]["total_tokens"].as_u64().unwrap() > 0);
}

#[tokio::test]
async fn tool_call_deltas_stream_through_unchanged() {
    let mock = MockServer::start(MockConfig { chunks: 3, ..MockConfig::default() }).await.unwrap();
    let gateway = Gateway::start(&format!("models:\n{}", openai_model("m", "up", &mock.url()))).await;
    let body = json!({"model": "m", "stream": true, "messages": [{"role": "user", "content": "weather?"}],
        "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]});
    let response = client().post(gateway.url("/v1/chat/completions")).json(&body).send().await.unwrap();
    let events = events(response, Instant::now()).await;
    let chunks: Vec<Value> =
        events.iter().filter(|(_, d)| d != "[DONE]").map(|(_, d)| serde_json::from_str(d).unwrap()).collect();
    let deltas: Vec<&Value> =
        chunks.iter().filter_map(|c| c["choices"][0]["delta"]["tool_calls"].get(0)).collect();
    assert!(!deltas.is_empty(), "no tool-call deltas in {chunks:?}");
    assert_eq!(deltas[0]["function"]["name"], "get_weather");
    let arguments: String = deltas.iter().filter_map(|d| d["function"]["arguments"].as_str()).collect();
    assert!(serde_json::from_str::<Value>(&arguments).is_ok(), "arguments reassemble into JSON: {arguments}");
    assert!(chunks.iter().any(|c| c["choices"][0]["finish_reason"] == "tool_calls"));
}

#[tokio::test]
async fn a_client_that_disconnects_cancels_the_upstream_stream() {
    let mock = MockServer::start(MockConfig {
        chunk_delay: Duration::from_millis(50),
        chunks: 200,
        ..MockConfig::default()
    })
    .await
    .unwrap();
    let gateway = Gateway::start(&format!("models:\n{}", openai_model("m", "up", &mock.url()))).await;
    let body = json!({"model": "m", "stream": true, "messages": [{"role": "user", "content": "long story"}]});
    let response = client().post(gateway.url("/v1/chat/completions")).json(&body).send().await.unwrap();
    let mut stream = response.bytes_stream();
    let first = stream.next().await.unwrap().unwrap();
    assert!(first.starts_with(b"data: "));
    drop(stream);
    // 200 chunks 50 ms apart would take 10 s; the upstream must see the cancellation at once.
    assert!(
        eventually(Duration::from_secs(3), || mock.stats().streams_cancelled == 1).await,
        "the mock never saw the stream cancelled: {:?}",
        mock.stats()
    );
    assert_eq!(mock.stats().streams_completed, 0);
}
