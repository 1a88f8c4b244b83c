//! End to end: upstream connections are pooled, and survive servers that close them.

#![allow(clippy::unwrap_used, reason = "a failed unwrap is a failed test, with its message")]

use serde_json::json;
use switchyard_e2e::{Gateway, client, openai_model};
use switchyard_testkit::{MockConfig, MockServer};

#[tokio::test]
async fn sequential_requests_reuse_one_upstream_connection() {
    let mock = MockServer::start(MockConfig::default()).await.unwrap();
    let gateway = Gateway::start(&format!("models:\n{}", openai_model("m", "up", &mock.url()))).await;
    let body = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]});
    for _ in 0..20 {
        let response = client().post(gateway.url("/v1/chat/completions")).json(&body).send().await.unwrap();
        assert_eq!(response.status(), 200);
    }
    assert_eq!(mock.stats().chat_completions, 20);
    assert_eq!(mock.stats().connections, 1, "every request after the first reused the pooled connection");
}

/// llama.cpp's server closes the connection after a streamed response without saying so. The
/// next request on that pooled connection fails before any answer; the gateway must resend
/// it on a fresh connection rather than fail the client.
#[tokio::test]
async fn a_server_that_closes_after_each_stream_never_fails_the_next_request() {
    let mock = MockServer::start(MockConfig { close_after_stream: true, chunks: 3, ..MockConfig::default() })
        .await
        .unwrap();
    let gateway = Gateway::start(&format!("models:\n{}", openai_model("m", "up", &mock.url()))).await;
    let http = client();
    for round in 0..15 {
        let stream = json!({"model": "m", "stream": true, "messages": [{"role": "user", "content": "hi"}]});
        let response = http.post(gateway.url("/v1/chat/completions")).json(&stream).send().await.unwrap();
        assert_eq!(response.status(), 200, "stream in round {round}");
        assert!(response.text().await.unwrap().ends_with("data: [DONE]\n\n"));
        let plain = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]});
        let response = http.post(gateway.url("/v1/chat/completions")).json(&plain).send().await.unwrap();
        assert_eq!(response.status(), 200, "request after a stream in round {round}");
    }
    let stats = mock.stats();
    assert_eq!(stats.streams_completed, 15);
    assert_eq!(stats.chat_completions, 30);
    assert!(stats.connections >= 15, "the mock really closed connections: {stats:?}");
}
