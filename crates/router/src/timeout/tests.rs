//! Tests of the deadline layer: the total limit, time to first token, the idle limit between
//! chunks, the request's own deadline and ttft, and no limit at all.

use std::collections::VecDeque;

use bytes::Bytes;
use futures_util::{FutureExt, StreamExt, future::BoxFuture, stream};
use serde_json::json;
use switchyard_types::{
    llm::{ChunkStream, Operation},
    openai::ChatCompletionChunk,
};
use tower::{Layer, ServiceExt, service_fn};

use super::*;

const LABEL: &str = "provider/model-a";
type Item = Result<Json<ChatCompletionChunk>, LlmError>;

fn request(stream: bool) -> LlmRequest {
    let body = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": stream});
    LlmRequest::new(Operation::chat(serde_json::from_value(body).expect("a valid request")))
}

fn completion() -> LlmResponse {
    let body = json!({
        "id": "c", "object": "chat.completion", "created": 1, "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}]
    });
    let json = Json::from_bytes(Bytes::from(body.to_string())).expect("a valid completion");
    LlmResponse { body: ResponseBody::Chat(json), served_by: None }
}

fn chunk(n: usize) -> Json<ChatCompletionChunk> {
    let body = json!({
        "id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
        "choices": [{"index": 0, "delta": {"content": n.to_string()}, "finish_reason": null}]
    });
    Json::from_bytes(Bytes::from(body.to_string())).expect("a valid chunk")
}

/// A stream that waits each of `gaps` before its next chunk, then ends.
fn paced(gaps: &[u64]) -> ChunkStream {
    let gaps: VecDeque<Duration> = gaps.iter().copied().map(Duration::from_millis).collect();
    Box::pin(stream::unfold((0, gaps), |(n, mut gaps)| async move {
        let gap = gaps.pop_front()?;
        tokio::time::sleep(gap).await;
        Some((Ok(chunk(n)), (n + 1, gaps)))
    }))
}

/// A stream that sends a chunk every `period`, forever.
fn steady(period: u64) -> ChunkStream {
    Box::pin(stream::unfold(0, move |n| async move {
        tokio::time::sleep(Duration::from_millis(period)).await;
        Some((Ok(chunk(n)), n + 1))
    }))
}

/// A deployment under `timeouts` that waits `headers` ms and then answers with `body()`.
fn deployment(
    timeouts: Timeouts,
    headers: u64,
    body: fn() -> ResponseBody,
) -> Deadline<
    impl tower::Service<
        LlmRequest,
        Response = LlmResponse,
        Error = LlmError,
        Future = BoxFuture<'static, Result<LlmResponse, LlmError>>,
    > + Clone,
> {
    let service = service_fn(move |_: LlmRequest| {
        async move {
            tokio::time::sleep(Duration::from_millis(headers)).await;
            Ok(LlmResponse { body: body(), served_by: None })
        }
        .boxed()
    });
    DeadlineLayer::new(timeouts, LABEL).layer(service)
}

fn complete() -> ResponseBody {
    completion().body
}

fn ms(ms: u64) -> Option<Duration> {
    Some(Duration::from_millis(ms))
}

/// The items of a streamed answer (at most 20: a stream a limit should have ended fails the
/// test instead of hanging it), with the time (ms since `start`) each arrived; an error item
/// is its message.
async fn items(response: LlmResponse, start: Instant) -> Vec<(u64, Result<(), String>)> {
    let ResponseBody::ChatStream(chunks) = response.body else { panic!("expected a stream") };
    chunks
        .take(20)
        .map(|item: Item| (start.elapsed().as_millis() as u64, item.map(drop).map_err(|e| e.message)))
        .collect()
        .await
}

fn timeout_message(error: &LlmError) -> &str {
    assert_eq!(error.class, ErrorClass::Timeout, "{error}");
    let clients =
        matches!(error.param.as_deref(), Some("x-switchyard-timeout-ms" | "x-switchyard-ttft-timeout-ms"));
    assert_eq!(is_clients_limit(error), clients, "only the client's own limits name their header");
    assert!(error.message.contains(LABEL), "names the deployment: {}", error.message);
    &error.message
}

#[tokio::test(start_paused = true)]
async fn a_complete_answer_past_the_total_limit_is_a_timeout_naming_the_deployment() {
    let timeouts = Timeouts { total: ms(1000), ..Timeouts::default() };
    let start = Instant::now();
    let error = deployment(timeouts, 2000, complete).oneshot(request(false)).await.expect_err("too slow");
    assert!(timeout_message(&error).contains("within 1000 ms (timeout_ms)"), "{}", error.message);
    assert_eq!(start.elapsed(), Duration::from_millis(1000));

    deployment(timeouts, 999, complete).oneshot(request(false)).await.expect("in time");
}

#[tokio::test(start_paused = true)]
async fn ttft_limits_a_stream_until_its_first_chunk_headers_included() {
    let timeouts = Timeouts { ttft: ms(1000), ..Timeouts::default() };
    let start = Instant::now();
    let error = deployment(timeouts, 2000, || ResponseBody::ChatStream(paced(&[0])))
        .oneshot(request(true))
        .await
        .expect_err("no headers within the ttft");
    assert!(timeout_message(&error).contains("no first token within 1000 ms (ttft_timeout_ms)"));
    assert_eq!(error.param, None, "the deployment's own limit");
    assert_eq!(start.elapsed(), Duration::from_millis(1000));

    let start = Instant::now();
    let response = deployment(timeouts, 400, || ResponseBody::ChatStream(paced(&[1000])))
        .oneshot(request(true))
        .await
        .expect("headers in time");
    let items = items(response, start).await;
    assert_eq!(items.len(), 1, "the timeout ends the stream: {items:?}");
    let (at, error) = &items[0];
    assert_eq!(*at, 1000, "counted from sending, not from the headers");
    assert!(error.as_ref().expect_err("a timeout").contains("ttft_timeout_ms"));
}

#[tokio::test(start_paused = true)]
async fn ttft_no_longer_applies_after_the_first_chunk_nor_to_complete_answers() {
    let timeouts = Timeouts { ttft: ms(1000), ..Timeouts::default() };
    let start = Instant::now();
    let response = deployment(timeouts, 0, || ResponseBody::ChatStream(paced(&[900, 5000, 5000])))
        .oneshot(request(true))
        .await
        .expect("in time");
    let items = items(response, start).await;
    assert_eq!(items, [(900, Ok(())), (5900, Ok(())), (10900, Ok(()))]);

    deployment(timeouts, 5000, complete).oneshot(request(false)).await.expect("no ttft without a stream");
}

#[tokio::test(start_paused = true)]
async fn a_stream_silent_longer_than_the_idle_limit_ends_with_an_error() {
    let timeouts = Timeouts { idle: ms(1000), ..Timeouts::default() };
    let start = Instant::now();
    let response = deployment(timeouts, 0, || ResponseBody::ChatStream(paced(&[3000, 100, 900, 2000])))
        .oneshot(request(true))
        .await
        .expect("answered");
    let items = items(response, start).await;
    assert_eq!(items.len(), 4, "three chunks and the error, then the end: {items:?}");
    assert_eq!(
        items[..3],
        [(3000, Ok(())), (3100, Ok(())), (4000, Ok(()))],
        "no idle limit before the first"
    );
    let (at, error) = &items[3];
    assert_eq!(*at, 5000);
    let message = error.as_ref().expect_err("a timeout");
    assert!(message.contains(LABEL) && message.contains("sent nothing for 1000 ms"), "{message}");
    assert!(message.contains("idle_timeout_ms"), "{message}");
}

#[tokio::test(start_paused = true)]
async fn the_total_limit_ends_a_stream_that_is_still_going() {
    let timeouts = Timeouts { total: ms(1000), idle: ms(500), ..Timeouts::default() };
    let start = Instant::now();
    let response = deployment(timeouts, 0, || ResponseBody::ChatStream(steady(300)))
        .oneshot(request(true))
        .await
        .expect("answered");
    let items = items(response, start).await;
    assert_eq!(items[..3], [(300, Ok(())), (600, Ok(())), (900, Ok(()))]);
    assert_eq!(items.len(), 4, "{items:?}");
    let (at, error) = &items[3];
    assert_eq!(*at, 1000);
    assert!(error.as_ref().expect_err("a timeout").contains("within 1000 ms (timeout_ms)"));
}

#[tokio::test(start_paused = true)]
async fn the_requests_deadline_bounds_the_attempt_when_it_comes_first() {
    let timeouts = Timeouts { total: ms(10_000), ..Timeouts::default() };
    let deadline = |after: u64| RequestTimeouts {
        deadline: Some(Instant::now() + Duration::from_millis(after)),
        ttft: None,
    };

    let mut complete_request = request(false);
    complete_request.extensions.insert(deadline(1000));
    let start = Instant::now();
    let error =
        deployment(timeouts, 5000, complete).oneshot(complete_request).await.expect_err("past the deadline");
    assert!(timeout_message(&error).contains("before the request's deadline (x-switchyard-timeout-ms)"));
    assert_eq!(error.param.as_deref(), Some("x-switchyard-timeout-ms"), "the client's own limit");
    assert_eq!(start.elapsed(), Duration::from_millis(1000));

    let mut stream_request = request(true);
    stream_request.extensions.insert(deadline(1000));
    let start = Instant::now();
    let response = deployment(timeouts, 0, || ResponseBody::ChatStream(steady(400)))
        .oneshot(stream_request)
        .await
        .expect("answered");
    let items = items(response, start).await;
    assert_eq!(items.len(), 3, "{items:?}");
    assert_eq!(items[2].0, 1000);
    assert!(items[2].1.as_ref().expect_err("a timeout").contains("x-switchyard-timeout-ms"));

    // A deadline later than the deployment's own limit leaves that limit in force.
    let mut late = request(false);
    late.extensions.insert(deadline(60_000));
    let error = deployment(timeouts, 20_000, complete).oneshot(late).await.expect_err("past the total");
    assert!(timeout_message(&error).contains("(timeout_ms)"), "{}", error.message);
    assert_eq!(error.param, None, "the deployment's own limit");
}

#[tokio::test(start_paused = true)]
async fn the_requests_ttft_replaces_the_deployments() {
    let timeouts = Timeouts { ttft: ms(10_000), ..Timeouts::default() };
    let mut shorter = request(true);
    shorter.extensions.insert(RequestTimeouts { deadline: None, ttft: ms(1000) });
    let start = Instant::now();
    let error = deployment(timeouts, 5000, || ResponseBody::ChatStream(paced(&[0])))
        .oneshot(shorter)
        .await
        .expect_err("past the client's ttft");
    assert!(timeout_message(&error).contains("within 1000 ms (ttft_timeout_ms)"), "{}", error.message);
    assert_eq!(error.param.as_deref(), Some("x-switchyard-ttft-timeout-ms"), "the client's own limit");
    assert_eq!(start.elapsed(), Duration::from_millis(1000));

    // It applies even when the deployment has no ttft limit of its own.
    let mut request = request(true);
    request.extensions.insert(RequestTimeouts { deadline: None, ttft: ms(1000) });
    let response = deployment(Timeouts::default(), 0, || ResponseBody::ChatStream(paced(&[2000])))
        .oneshot(request)
        .await
        .expect("headers at once");
    let items = items(response, Instant::now()).await;
    assert!(items[0].1.as_ref().is_err_and(|m| m.contains("ttft_timeout_ms")), "{items:?}");
}

#[tokio::test(start_paused = true)]
async fn without_limits_answers_pass_through_however_slow() {
    const HOUR: u64 = 3_600_000;
    let start = Instant::now();
    deployment(Timeouts::default(), HOUR, complete).oneshot(request(false)).await.expect("no limit");
    assert_eq!(start.elapsed(), Duration::from_millis(HOUR));

    let start = Instant::now();
    let response = deployment(Timeouts::default(), 0, || ResponseBody::ChatStream(paced(&[HOUR, HOUR])))
        .oneshot(request(true))
        .await
        .expect("no limit");
    assert_eq!(items(response, start).await, [(HOUR, Ok(())), (2 * HOUR, Ok(()))]);
}
