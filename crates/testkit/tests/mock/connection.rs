//! Connection-level behaviour: close after a stream, keep-alive otherwise, HTTP/2, counting
//! connections, shutting down.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::json;
use switchyard_testkit::{Fault, MockConfig, MockServer};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use crate::{Conn, call, chat_request, count, json_body, post, read_until_closed, start, write_raw_post};

#[tokio::test]
async fn close_after_stream_closes_the_socket_without_announcing_it() {
    let server = start(MockConfig { chunks: 2, close_after_stream: true, ..MockConfig::default() }).await;
    let mut stream = TcpStream::connect(server.addr()).await.unwrap();
    write_raw_post(&mut stream, "/v1/chat/completions", &chat_request(json!({"stream": true}))).await;
    let (bytes, end) = read_until_closed(&mut stream).await;

    let text = String::from_utf8_lossy(&bytes);
    assert!(end.is_ok(), "an orderly close: {end:?}");
    assert!(text.ends_with("data: [DONE]\n\n\r\n0\r\n\r\n"), "the whole stream came first: {text}");
    let head = text.split("\r\n\r\n").next().unwrap().to_ascii_lowercase();
    assert!(!head.contains("connection: close"), "the close is not announced: {head}");
}

#[tokio::test]
async fn without_close_after_stream_the_connection_is_kept_alive() {
    let server = start(MockConfig { chunks: 2, ..MockConfig::default() }).await;
    let mut stream = TcpStream::connect(server.addr()).await.unwrap();
    write_raw_post(&mut stream, "/v1/chat/completions", &chat_request(json!({"stream": true}))).await;
    // Read the first response to its end, then ask again on the same socket.
    let mut bytes = Vec::new();
    let mut buf = [0; 8192];
    while !bytes.ends_with(b"\r\n0\r\n\r\n") {
        let n = stream.read(&mut buf).await.unwrap();
        assert_ne!(n, 0, "closed after the stream");
        bytes.extend_from_slice(&buf[..n]);
    }
    write_raw_post(&mut stream, "/v1/chat/completions", &chat_request(json!({}))).await;
    let n = stream.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200 OK\r\n"));
    assert_eq!(server.stats().connections, 1);
}

#[tokio::test]
async fn close_after_stream_leaves_whole_answers_alone() {
    let server = start(MockConfig { close_after_stream: true, ..MockConfig::default() }).await;
    let mut conn = Conn::open(server.addr()).await;
    for _ in 0..2 {
        let response = conn.send(post("/v1/chat/completions", &chat_request(json!({})))).await.unwrap();
        assert_eq!(response.status(), 200);
        json_body(response).await;
    }
    assert_eq!(server.stats().connections, 1);
}

#[tokio::test]
async fn a_pooled_connection_goes_stale_after_a_stream() {
    // What a pooling client sees: the stream completes, then the next request on the same
    // connection fails because the server closed it in between.
    let server = start(MockConfig { chunks: 2, close_after_stream: true, ..MockConfig::default() }).await;
    let mut conn = Conn::open(server.addr()).await;
    let response =
        conn.send(post("/v1/chat/completions", &chat_request(json!({"stream": true})))).await.unwrap();
    assert!(response.headers().get("connection").is_none());
    let data = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(count(&data, "[DONE]"), 1);
    let ended = tokio::time::timeout(Duration::from_secs(5), conn.task).await.unwrap();
    assert!(ended.unwrap().is_ok(), "the server closed the connection after the stream");
}

#[tokio::test]
async fn connections_are_counted() {
    let server = start(MockConfig::default()).await;
    for _ in 0..3 {
        call(&server, post("/v1/chat/completions", &chat_request(json!({})))).await;
    }
    assert_eq!(crate::wait_for(&server, |s| s.connections == 3).await.requests, 3);
}

#[tokio::test]
async fn http2_with_prior_knowledge_is_served() {
    let server = start(MockConfig { chunks: 1, ..MockConfig::default() }).await;
    let stream = TcpStream::connect(server.addr()).await.unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream)).await.unwrap();
    tokio::spawn(connection);
    let request = http::Request::post(format!("http://{}/v1/chat/completions", server.addr()))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(serde_json::to_vec(&chat_request(json!({}))).unwrap())))
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.version(), http::Version::HTTP_2);
    assert_eq!(json_body(response).await["choices"][0]["message"]["content"], "tok0 ");
}

#[tokio::test]
async fn shutdown_drops_hung_requests_and_stops_listening() {
    let server = start(MockConfig::default()).await;
    let addr = server.addr();
    server.push_fault(Fault::Hang);
    let mut conn = Conn::open(addr).await;
    let hung =
        tokio::spawn(async move { conn.send(post("/v1/chat/completions", &chat_request(json!({})))).await });
    crate::wait_for(&server, |s| s.faults == 1).await;

    tokio::time::timeout(Duration::from_secs(5), server.shutdown())
        .await
        .expect("shutdown does not wait for the hang");
    let answer = tokio::time::timeout(Duration::from_secs(5), hung).await.unwrap().unwrap();
    assert!(answer.is_err(), "the hung request fails when the server goes");
    assert!(TcpStream::connect(addr).await.is_err(), "nothing listens any more");
}

#[tokio::test]
async fn dropping_the_server_stops_it() {
    let server = MockServer::start(MockConfig::default()).await.unwrap();
    let addr = server.addr();
    drop(server);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while TcpStream::connect(addr).await.is_ok() {
        assert!(tokio::time::Instant::now() < deadline, "still listening");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}
