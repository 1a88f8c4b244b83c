//! Scripted faults: statuses, rate limits, hangs and connection resets, taken in FIFO order or
//! drawn at random from a seeded generator.

use std::io::ErrorKind;
use std::time::Duration;

use serde_json::json;
use switchyard_testkit::{Fault, FaultCounts, MockConfig, MockServer, RandomFaults};
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
    assert_eq!(count(&bytes, "\r\n0\r\n\r\n"), 0, "the chunked body is not ended");
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

#[tokio::test]
async fn overloaded_and_error_mid_stream_answer_in_openais_shape() {
    let server = start(MockConfig { chunks: 3, ..MockConfig::default() }).await;
    server.push_fault(Fault::Overloaded);
    server.push_fault(Fault::ErrorMidStream { after_events: 2 });
    server.push_fault(Fault::ErrorMidStream { after_events: 2 });
    let response = call(&server, post("/v1/chat/completions", &chat_request(json!({})))).await;
    assert_eq!(response.status(), 503);
    assert_eq!(json_body(response).await["error"]["type"], "server_error");
    let response = call(&server, post("/v1/chat/completions", &chat_request(json!({})))).await;
    assert_eq!(response.status(), 503, "a whole answer has no stream to break: it is overloaded");

    let response = call(&server, post("/v1/chat/completions", &chat_request(json!({"stream": true})))).await;
    assert_eq!(response.status(), 200);
    let data = crate::sse_data(response).await;
    assert_eq!(data.len(), 3, "the role chunk, one content chunk, the error: {data:#?}");
    let error: serde_json::Value = serde_json::from_str(&data[2]).unwrap();
    assert_eq!(error["error"]["type"], "server_error");
    assert!(!data.iter().any(|d| d == "[DONE]"));
    let stats = server.stats();
    assert_eq!((stats.faults_by_kind.overloaded, stats.faults_by_kind.error_mid_stream), (1, 2));
    assert_eq!(stats.completion_tokens, 0);
}

/// What a client saw of one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// A normal answer, 200.
    Answered,
    /// Any other status but 429.
    Status(u16),
    /// A 429 with `Retry-After`.
    RateLimited,
    /// The connection ended before a response came.
    Reset,
    /// No answer within the client's timeout.
    Hung,
}

/// Sends one chat request on a connection of its own and says what came of it, giving up after
/// `timeout`.
async fn outcome(server: &MockServer, timeout: Duration) -> Outcome {
    let mut conn = Conn::open(server.addr()).await;
    let sent =
        tokio::time::timeout(timeout, conn.send(post("/v1/chat/completions", &chat_request(json!({})))));
    match sent.await {
        Err(_) => Outcome::Hung,
        Ok(Err(err)) => {
            let io = std::error::Error::source(&err).and_then(|e| e.downcast_ref::<std::io::Error>());
            assert_eq!(io.map(std::io::Error::kind), Some(ErrorKind::ConnectionReset), "{err:?}");
            Outcome::Reset
        }
        Ok(Ok(response)) => match response.status().as_u16() {
            200 => Outcome::Answered,
            429 => {
                assert_eq!(response.headers()["retry-after"], "3");
                Outcome::RateLimited
            }
            status => Outcome::Status(status),
        },
    }
}

/// `n` requests one after another, so that they draw in order.
async fn outcomes(server: &MockServer, n: usize, timeout: Duration) -> Vec<Outcome> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(outcome(server, timeout).await);
    }
    out
}

/// Long enough for any answer on loopback; only a hang reaches it.
const PATIENT: Duration = Duration::from_secs(5);

/// 500s, 429s and resets before the first byte, 2:1:1; no hangs, so requests end quickly.
fn flaky(seed: u64, rate_percent: u32) -> RandomFaults {
    RandomFaults::new(seed, rate_percent)
        .with(Fault::Status { status: 500, body: json!({"error": {"message": "boom"}}) }, 2)
        .with(Fault::RateLimited { retry_after_secs: 3 }, 1)
        .with(Fault::ResetBeforeHeaders, 1)
}

fn tally(outcomes: &[Outcome], wanted: Outcome) -> u64 {
    outcomes.iter().filter(|o| **o == wanted).count() as u64
}

#[tokio::test]
async fn random_faults_fail_about_the_rate_and_stats_count_each_kind() {
    let server = start(MockConfig::default()).await;
    server.set_random_faults(Some(flaky(2024, 30)));
    let seen = outcomes(&server, 400, PATIENT).await;

    let faulted = seen.iter().filter(|o| **o != Outcome::Answered).count() as u64;
    // 120 expected; the standard deviation is about 9.
    assert!((95..=145).contains(&faulted), "{faulted} of 400 requests faulted");
    let by_kind = FaultCounts {
        status: tally(&seen, Outcome::Status(500)),
        rate_limited: tally(&seen, Outcome::RateLimited),
        reset_before_headers: tally(&seen, Outcome::Reset),
        ..FaultCounts::default()
    };
    assert_eq!(
        by_kind.status + by_kind.rate_limited + by_kind.reset_before_headers,
        faulted,
        "only the mix's faults happen: {seen:?}"
    );
    // Weighted 2:1:1: each kind shows up, 500s the most.
    assert!(by_kind.rate_limited > 0 && by_kind.reset_before_headers > 0, "{by_kind:?}");
    assert!(by_kind.status > by_kind.rate_limited.max(by_kind.reset_before_headers), "{by_kind:?}");

    let stats = server.stats();
    assert_eq!(
        (stats.requests, stats.faults, stats.random_faults, stats.faults_by_kind),
        (400, faulted, faulted, by_kind)
    );
    assert_eq!(stats.chat_completions, 400 - faulted, "faulted requests never reach the handler");
}

#[tokio::test]
async fn the_same_seed_fails_the_same_requests() {
    let mut runs = Vec::new();
    for seed in [7, 7, 8] {
        let server = start(MockConfig::default()).await;
        server.set_random_faults(Some(flaky(seed, 30)));
        runs.push(outcomes(&server, 100, PATIENT).await);
    }
    assert!(runs[0].iter().any(|o| *o != Outcome::Answered), "some requests fail: {:?}", runs[0]);
    assert_eq!(runs[0], runs[1], "same seed, same outcomes");
    assert_ne!(runs[0], runs[2], "another seed, other outcomes");
}

#[tokio::test]
async fn setting_random_faults_again_replays_the_seed_and_none_stops_them() {
    let server = start(MockConfig::default()).await;
    server.set_random_faults(Some(flaky(11, 50)));
    let first = outcomes(&server, 40, PATIENT).await;
    server.set_random_faults(Some(flaky(11, 50)));
    assert_eq!(outcomes(&server, 40, PATIENT).await, first, "the generator restarts from the seed");

    server.set_random_faults(None);
    let faults = server.stats().faults;
    assert!(outcomes(&server, 40, PATIENT).await.iter().all(|o| *o == Outcome::Answered));
    assert_eq!(server.stats().faults, faults);
}

#[tokio::test]
async fn a_rate_of_0_never_faults_and_100_always_does() {
    let server = start(MockConfig::default()).await;
    server.set_random_faults(Some(flaky(3, 0)));
    let seen = outcomes(&server, 200, PATIENT).await;
    assert!(seen.iter().all(|o| *o == Outcome::Answered), "{seen:?}");
    assert_eq!(server.stats().faults, 0);

    server.set_random_faults(Some(flaky(3, 100)));
    let seen = outcomes(&server, 50, PATIENT).await;
    assert!(seen.iter().all(|o| *o != Outcome::Answered), "{seen:?}");
    assert_eq!((server.stats().faults, server.stats().random_faults), (50, 50));
}

#[tokio::test]
async fn a_queued_fault_wins_over_random_ones_and_draws_nothing() {
    let queued = start(MockConfig::default()).await;
    queued.set_random_faults(Some(flaky(99, 50)));
    queued.push_fault(Fault::Status { status: 418, body: json!({}) });
    let with_queued = outcomes(&queued, 41, PATIENT).await;

    let plain = start(MockConfig::default()).await;
    plain.set_random_faults(Some(flaky(99, 50)));
    let without = outcomes(&plain, 40, PATIENT).await;

    assert_eq!(with_queued[0], Outcome::Status(418), "the queued fault comes first");
    assert_eq!(with_queued[1..], without[..], "and leaves the random sequence where it was");
    let stats = queued.stats();
    assert_eq!(stats.faults, stats.random_faults + 1);
    assert_eq!(stats.faults_by_kind.status, tally(&with_queued, Outcome::Status(500)) + 1);
}

#[tokio::test]
async fn random_hangs_never_answer_and_are_counted() {
    let server = start(MockConfig::default()).await;
    let mix =
        RandomFaults::new(5, 50).with(Fault::Hang, 1).with(Fault::Status { status: 503, body: json!({}) }, 1);
    server.set_random_faults(Some(mix));
    // A hang is told from an answer by the timeout; a mock answer on loopback takes a
    // millisecond or so, well below it.
    let seen = outcomes(&server, 20, Duration::from_millis(300)).await;

    let hangs = tally(&seen, Outcome::Hung);
    assert!(hangs > 0, "{seen:?}");
    assert!(seen.contains(&Outcome::Answered), "the server keeps serving around hung requests");
    let stats = server.stats();
    assert_eq!(
        (stats.faults_by_kind.hang, stats.faults_by_kind.status),
        (hangs, tally(&seen, Outcome::Status(503)))
    );
    assert_eq!(stats.faults, stats.random_faults, "every fault was drawn");
}
