//! Integration tests of the mock provider, driven over real sockets by hyper's client (for HTTP)
//! and raw `TcpStream`s (where the bytes on the wire and the way a connection ends are the point).
//!
//! One test binary with a module per concern, so the crate links once.

#![allow(clippy::unwrap_used, reason = "tests fail loudly on purpose")]

mod chat;
mod cohere;
mod connection;
mod faults;
mod routes;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use switchyard_testkit::{MockConfig, MockServer, Stats};
use switchyard_types::sse::SseDecoder;
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// One HTTP/1.1 client connection.
pub(crate) struct Conn {
    sender: SendRequest<Full<Bytes>>,
    /// Ends when the connection does.
    pub(crate) task: JoinHandle<Result<(), hyper::Error>>,
}

impl Conn {
    pub(crate) async fn open(addr: SocketAddr) -> Conn {
        let stream = TcpStream::connect(addr).await.unwrap();
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
        Conn { sender, task: tokio::spawn(connection) }
    }

    pub(crate) async fn send(&mut self, request: Request<Full<Bytes>>) -> hyper::Result<Response<Incoming>> {
        self.sender.ready().await?;
        self.sender.send_request(request).await
    }
}

/// Sends `request` on a connection of its own.
pub(crate) async fn call(server: &MockServer, request: Request<Full<Bytes>>) -> Response<Incoming> {
    Conn::open(server.addr()).await.send(request).await.unwrap()
}

pub(crate) fn post(path: &str, body: &Value) -> Request<Full<Bytes>> {
    Request::post(path)
        .header("host", "localhost")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(serde_json::to_vec(body).unwrap())))
        .unwrap()
}

pub(crate) fn get(path: &str) -> Request<Full<Bytes>> {
    Request::get(path).header("host", "localhost").body(Full::default()).unwrap()
}

pub(crate) async fn json_body(response: Response<Incoming>) -> Value {
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice(&bytes).unwrap()
}

/// The data of every event of a stream, `[DONE]` included.
pub(crate) async fn sse_data(response: Response<Incoming>) -> Vec<String> {
    timed_events(response, Instant::now()).await.into_iter().map(|e| e.data).collect()
}

/// The data of the chunks of a stream, parsed (everything but `[DONE]`).
pub(crate) fn chunks(data: &[String]) -> Vec<Value> {
    data.iter().filter(|d| *d != "[DONE]").map(|d| serde_json::from_str(d).unwrap()).collect()
}

/// An event and when its body frame arrived, counted from `start`.
pub(crate) struct Timed {
    pub(crate) at: Duration,
    pub(crate) data: String,
}

pub(crate) async fn timed_events(response: Response<Incoming>, start: Instant) -> Vec<Timed> {
    let mut body = response.into_body();
    let mut decoder = SseDecoder::new();
    let mut out = Vec::new();
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame.unwrap().into_data() else { continue };
        let at = start.elapsed();
        let mut events = Vec::new();
        decoder.feed(&data, &mut events);
        out.extend(events.into_iter().map(|e| Timed { at, data: e.data }));
    }
    assert!(!decoder.finish(), "the stream ended inside an event");
    out
}

/// Waits until the server's counters satisfy `done` (they move on the server's tasks, a little
/// after the client saw the effect), failing after five seconds.
pub(crate) async fn wait_for(server: &MockServer, done: impl Fn(&Stats) -> bool) -> Stats {
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

pub(crate) async fn start(config: MockConfig) -> MockServer {
    MockServer::start(config).await.unwrap()
}

/// A small chat request.
pub(crate) fn chat_request(extra: Value) -> Value {
    let mut body = serde_json::json!({
        "model": "gpt-4o-mini",
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": [{"type": "text", "text": "Say hello, please"}]}
        ]
    });
    if let (Some(body), Value::Object(extra)) = (body.as_object_mut(), extra) {
        body.extend(extra);
    }
    body
}

/// The prompt tokens of [`chat_request`]: (14 + 17) characters / 4 + 1.
pub(crate) const CHAT_PROMPT_TOKENS: u64 = 8;

/// Writes a raw HTTP/1.1 POST of `body` on `stream`.
pub(crate) async fn write_raw_post(stream: &mut TcpStream, path: &str, body: &Value) {
    use tokio::io::AsyncWriteExt;
    let body = serde_json::to_vec(body).unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&body).await.unwrap();
}

/// Reads until the peer closes (`Ok`) or resets (`Err`) the connection, failing after five
/// seconds; returns the bytes read and how the connection ended.
pub(crate) async fn read_until_closed(stream: &mut TcpStream) -> (Vec<u8>, std::io::Result<()>) {
    use tokio::io::AsyncReadExt;
    let mut out = Vec::new();
    let mut buf = [0; 8192];
    loop {
        let read = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await;
        match read.expect("the connection stayed open") {
            Ok(0) => return (out, Ok(())),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(err) => return (out, Err(err)),
        }
    }
}

/// How many times `needle` occurs in `haystack`.
pub(crate) fn count(haystack: &[u8], needle: &str) -> usize {
    haystack.windows(needle.len()).filter(|w| *w == needle.as_bytes()).count()
}
