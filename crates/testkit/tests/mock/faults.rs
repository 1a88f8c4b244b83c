//! Scripted faults: statuses, rate limits, hangs and connection resets, taken in FIFO order.

use std::io::ErrorKind;
use std::time::Duration;

use serde_json::json;
use switchyard_testkit::{Fault, MockConfig};
use tokio::net::TcpStream;

use crate::{Conn, call, chat_request, count, json_body, post, read_until_closed, start, write_raw_post};

#[tokio::test]
async fn status_fault_answers_the_scripted_status_and_body_once() {
    let server = start(MockConfig::default()).await;
    let body =
        json!({"error": {"message": "overloaded", "type": "server_error", "param": null, "code": null}});
    server.push_fault(Fault::Status { status: 503, body: body.clone() });

    let response = call(&server, post("/v1/chat/completions", &chat_request(json!({})))).await;
    assert_eq!(response.status(), 503);
    assert_eq!(json_body(response).await, body);
    let response = call(&server, post("/v1/chat/completions", &chat_request(json!({})))).await;
    assert_eq!(response.status(), 200, "a fault applies to one request");

    let stats = server.stats();
    assert_eq!((stats.requests, stats.faults, stats.chat_completions), (2, 1, 1));
}

#[tokio::test]
async fn rate_limited_answers_429_with_retry_after() {
    let server = start(MockConfig::default()).await;
    server.push_fault(Fault::RateLimited { retry_after_secs: 7 });
    let response = call(&server, post("/v1/chat/completions", &chat_request(json!({})))).await;
    assert_eq!(response.status(), 429);
    assert_eq!(response.headers()["retry-after"], "7");
    assert_eq!(response.headers()["x-ratelimit-reset-requests"], "7s");
    let body = json_body(response).await;
    assert_eq!(body["error"]["type"], "rate_limit_error");
    assert_eq!(body["error"]["code"], "rate_limit_exceeded");
    assert_eq!(body["error"]["param"], serde_json::Value::Null);
    assert!(body["error"]["message"].as_str().unwrap().contains("7s"));
}

#[tokio::test]
async fn faults_are_taken_first_in_first_out() {
    let server = start(MockConfig::default()).await;
    server.push_fault(Fault::Status { status: 500, body: json!({}) });
    server.push_fault(Fault::RateLimited { retry_after_secs: 1 });
    let mut statuses = Vec::new();
    for _ in 0..3 {
        statuses.push(call(&server, post("/v1/chat/completions", &chat_request(json!({})))).await.status());
    }
    assert_eq!(statuses, [500, 429, 200]);
}

#[tokio::test]
async fn hang_never_answers_while_the_server_keeps_serving() {
    let server = start(MockConfig::default()).await;
    server.push_fault(Fault::Hang);
    let mut hung = Conn::open(server.addr()).await;
    let pending = tokio::time::timeout(
        Duration::from_millis(50),
        hung.send(post("/v1/chat/completions", &chat_request(json!({})))),
    )
    .await;
    assert!(pending.is_err(), "a hung request gets no answer");

    let response = call(&server, post("/v1/chat/completions", &chat_request(json!({})))).await;
    assert_eq!(response.status(), 200, "other requests are served meanwhile");
    assert_eq!(server.stats().faults, 1);
}

#[tokio::test]
async fn reset_before_headers_resets_after_reading_the_request() {
    let server = start(MockConfig::default()).await;
    server.push_fault(Fault::ResetBeforeHeaders);
    let mut stream = TcpStream::connect(server.addr()).await.unwrap();
    write_raw_post(&mut stream, "/v1/chat/completions", &chat_request(json!({}))).await;
    let (bytes, end) = read_until_closed(&mut stream).await;

    assert!(bytes.is_empty(), "nothing is answered: {}", String::from_utf8_lossy(&bytes));
    assert_eq!(end.unwrap_err().kind(), ErrorKind::ConnectionReset, "an abrupt reset, not an orderly close");
    let requests = server.requests();
    assert_eq!(requests.len(), 1, "the request was read");
    assert_eq!(requests[0].body["model"], "gpt-4o-mini");
}

#[tokio::test]
async fn reset_mid_stream_sends_that_many_events_then_resets() {
    let server = start(MockConfig { chunks: 10, ..MockConfig::default() }).await;
    server.push_fault(Fault::ResetMidStream { after_chunks: 3 });
    let mut stream = TcpStream::connect(server.addr()).await.unwrap();
    write_raw_post(&mut stream, "/v1/chat/completions", &chat_request(json!({"stream": true}))).await;
    let (bytes, end) = read_until_closed(&mut stream).await;

    assert!(bytes.starts_with(b"HTTP/1.1 200 OK\r\n"), "{}", String::from_utf8_lossy(&bytes));
    assert_eq!(count(&bytes, "data: "), 3, "{}", String::from_utf8_lossy(&bytes));
    assert_eq!(count(&bytes, "[DONE]"), 0);
    assert_eq!(end.unwrap_err().kind(), ErrorKind::ConnectionReset);
    let stats = server.stats();
    assert_eq!((stats.streams, stats.streams_completed, stats.streams_cancelled), (1, 0, 0));
}

#[tokio::test]
async fn reset_mid_stream_cuts_a_whole_answer_in_half() {
    let server = start(MockConfig::default()).await;
    server.push_fault(Fault::ResetMidStream { after_chunks: 1 });
    let mut stream = TcpStream::connect(server.addr()).await.unwrap();
    write_raw_post(&mut stream, "/v1/chat/completions", &chat_request(json!({}))).await;
    let (bytes, end) = read_until_closed(&mut stream).await;

    let text = String::from_utf8_lossy(&bytes);
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let length: usize =
        head.lines().find_map(|line| line.strip_prefix("content-length: ")).unwrap().parse().unwrap();
    assert!(!body.is_empty() && body.len() < length, "{} of {length} bytes", body.len());
    assert_eq!(end.unwrap_err().kind(), ErrorKind::ConnectionReset);
}
