//! Tests of the retry layer over a route table: failing over at once, not retrying the
//! client's errors, backoff and `Retry-After`, the retry budget and the request's deadline.

use std::sync::{
    Arc,
    atomic::{AtomicUsize, Ordering},
};

use bytes::Bytes;
use futures_util::FutureExt;
use serde_json::json;
use switchyard_types::{
    json::Json,
    llm::{ErrorClass, Operation, ResponseBody},
};
use tower::{Layer, service_fn, util::BoxCloneSyncService};

use super::*;
use crate::{Endpoint, EndpointSettings, GroupSettings, ModelGroup, Policy, Price, RouteTable};

type Answer = BoxFuture<'static, Result<LlmResponse, LlmError>>;

fn chat() -> LlmRequest {
    let body = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]});
    LlmRequest::new(Operation::chat(serde_json::from_value(body).expect("a valid request")))
}

fn ok(label: &str) -> Answer {
    let body = json!({
        "id": "c", "object": "chat.completion", "created": 1, "model": label,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}]
    });
    let json = Json::from_bytes(Bytes::from(body.to_string())).expect("a valid completion");
    let response = LlmResponse { body: ResponseBody::Chat(json), served_by: Some(label.into()) };
    std::future::ready(Ok(response)).boxed()
}

fn fail(class: ErrorClass) -> Answer {
    std::future::ready(Err(LlmError::new(class, format!("scripted {class}")))).boxed()
}

fn fail_asking(class: ErrorClass, retry_after: Duration) -> Answer {
    let error = LlmError::new(class, format!("scripted {class}")).with_retry_after(Some(retry_after));
    std::future::ready(Err(error)).boxed()
}

/// A deployment answering its `n`-th call with `answer(n)`; the counter counts calls.
fn deployment(
    label: &str,
    answer: impl Fn(usize) -> Answer + Clone + Send + Sync + 'static,
) -> (Arc<AtomicUsize>, Endpoint) {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&calls);
    let service = service_fn(move |_: LlmRequest| answer(counter.fetch_add(1, Ordering::SeqCst)));
    (calls, Endpoint::new(label, label, BoxCloneSyncService::new(service), EndpointSettings::default()))
}

/// Deployments in order of preference: each is cheaper than the next, and the lowest-cost
/// policy tries the cheapest it can.
fn routes(mut endpoints: Vec<Endpoint>) -> Arc<RouteTable> {
    for (rank, endpoint) in endpoints.iter_mut().enumerate() {
        endpoint.settings.price = Some(Price { input: rank as f64, output: rank as f64 });
    }
    let settings = GroupSettings { policy: Policy::LowestCost, ..GroupSettings::default() };
    Arc::new(RouteTable::new(vec![ModelGroup::new("m", endpoints, settings)]))
}

fn config(retries: u32) -> RetryConfig {
    RetryConfig { retries, ..RetryConfig::default() }
}

/// Sends one request through `layer` over `table`: its outcome, its attempts, and the time it
/// took on the paused clock.
async fn send(
    layer: &RetryLayer,
    table: &Arc<RouteTable>,
    mut request: LlmRequest,
) -> (Result<LlmResponse, LlmError>, Attempts, Duration) {
    let attempts = Attempts::of(&mut request);
    let started = Instant::now();
    let outcome = layer.layer(table.dispatch()).oneshot(request).await;
    (outcome, attempts, started.elapsed())
}

#[tokio::test(start_paused = true)]
async fn a_failed_attempt_goes_to_another_deployment_at_once() {
    let (a, first) = deployment("a", |_| fail(ErrorClass::UpstreamServer));
    let (b, second) = deployment("b", |_| ok("b"));
    let table = routes(vec![first, second]);
    let (outcome, attempts, elapsed) = send(&RetryLayer::new(config(2)), &table, chat()).await;
    let response = outcome.expect("b serves");
    assert_eq!(response.served_by.as_deref(), Some("b"));
    assert_eq!(attempts.count(), 2);
    let failures: Vec<_> = attempts.to_vec().into_iter().map(|a| (a.deployment, a.failure)).collect();
    assert_eq!(failures, [("a".into(), Some(ErrorClass::UpstreamServer)), ("b".into(), None)]);
    assert_eq!(elapsed, Duration::ZERO, "no backoff before trying another deployment");
    assert_eq!((a.load(Ordering::SeqCst), b.load(Ordering::SeqCst)), (1, 1));
}

#[tokio::test(start_paused = true)]
async fn failures_that_are_the_clients_are_not_retried() {
    for class in [ErrorClass::BadRequest, ErrorClass::ContextLengthExceeded, ErrorClass::ContentPolicy] {
        let (a, first) = deployment("a", move |_| fail(class));
        let (b, second) = deployment("b", |_| ok("b"));
        let table = routes(vec![first, second]);
        let (outcome, attempts, _) = send(&RetryLayer::new(config(2)), &table, chat()).await;
        assert_eq!(outcome.expect_err("the client's error comes back").class, class);
        assert_eq!(attempts.count(), 1, "{class}");
        assert_eq!((a.load(Ordering::SeqCst), b.load(Ordering::SeqCst)), (1, 0), "{class}");
    }
}

#[tokio::test(start_paused = true)]
async fn an_unknown_model_is_not_retried() {
    let (a, only) = deployment("a", |_| ok("a"));
    let table = routes(vec![only]);
    let mut request = chat();
    request.set_model("nope");
    let (outcome, attempts, _) = send(&RetryLayer::new(config(2)), &table, request).await;
    assert_eq!(outcome.expect_err("no such model").class, ErrorClass::NotFound);
    assert_eq!((attempts.count(), a.load(Ordering::SeqCst)), (0, 0));
}

#[tokio::test(start_paused = true)]
async fn retries_stop_after_the_configured_number() {
    for retries in [0, 1, 3] {
        let (a, only) = deployment("a", |_| fail(ErrorClass::Overloaded));
        let table = routes(vec![only]);
        let layer = RetryLayer::new(RetryConfig { backoff_base: Duration::ZERO, ..config(retries) });
        let (outcome, attempts, _) = send(&layer, &table, chat()).await;
        assert_eq!(outcome.expect_err("it always fails").class, ErrorClass::Overloaded);
        assert_eq!(a.load(Ordering::SeqCst), retries as usize + 1);
        assert_eq!(attempts.count(), retries as usize + 1);
    }
}

#[tokio::test(start_paused = true)]
async fn without_another_deployment_a_retry_waits_for_a_backoff() {
    let (a, only) = deployment("a", |n| if n == 0 { fail(ErrorClass::UpstreamServer) } else { ok("a") });
    let table = routes(vec![only]);
    let base = Duration::from_secs(1);
    let layer = RetryLayer::new(RetryConfig { backoff_base: base, backoff_max: base, ..config(2) });
    let (outcome, attempts, elapsed) = send(&layer, &table, chat()).await;
    outcome.expect("the second attempt succeeds");
    assert_eq!((a.load(Ordering::SeqCst), attempts.count()), (2, 2));
    assert!(elapsed > Duration::ZERO && elapsed <= base, "a jittered backoff up to 1 s: {elapsed:?}");
}

#[tokio::test(start_paused = true)]
async fn once_every_deployment_was_tried_retries_back_off() {
    let (_, first) = deployment("a", |n| if n == 0 { fail(ErrorClass::UpstreamServer) } else { ok("a") });
    let (_, second) = deployment("b", |n| if n == 0 { fail(ErrorClass::UpstreamServer) } else { ok("b") });
    let table = routes(vec![first, second]);
    let base = Duration::from_secs(1);
    let layer = RetryLayer::new(RetryConfig { backoff_base: base, backoff_max: base, ..config(2) });
    let (outcome, attempts, elapsed) = send(&layer, &table, chat()).await;
    assert_eq!(outcome.expect("the third attempt succeeds").served_by.as_deref(), Some("a"));
    assert_eq!(attempts.count(), 3);
    assert!(elapsed > Duration::ZERO && elapsed <= base, "one backoff, after b: {elapsed:?}");
}

#[tokio::test(start_paused = true)]
async fn a_retry_after_longer_than_the_backoff_is_waited_for() {
    let (a, only) = deployment("a", |n| {
        if n == 0 { fail_asking(ErrorClass::RateLimited, Duration::from_secs(3)) } else { ok("a") }
    });
    let table = routes(vec![only]);
    let (outcome, _, elapsed) = send(&RetryLayer::new(config(2)), &table, chat()).await;
    outcome.expect("the retry after 3 s succeeds");
    assert_eq!(a.load(Ordering::SeqCst), 2);
    assert_eq!(elapsed, Duration::from_secs(3));
}

#[tokio::test(start_paused = true)]
async fn a_retry_after_beyond_the_maximum_is_not_waited_for() {
    let (a, only) = deployment("a", |_| fail_asking(ErrorClass::RateLimited, Duration::from_secs(10)));
    let table = routes(vec![only]);
    let layer = RetryLayer::new(RetryConfig { max_retry_after: Duration::from_secs(5), ..config(2) });
    let (outcome, _, elapsed) = send(&layer, &table, chat()).await;
    let error = outcome.expect_err("the 429 goes up, to the fallbacks");
    assert_eq!((error.class, error.retry_after), (ErrorClass::RateLimited, Some(Duration::from_secs(10))));
    assert_eq!(a.load(Ordering::SeqCst), 1);
    assert_eq!(elapsed, Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn a_long_retry_after_does_not_stop_failing_over_to_another_deployment() {
    let (_, first) = deployment("a", |_| fail_asking(ErrorClass::RateLimited, Duration::from_secs(60)));
    let (b, second) = deployment("b", |_| ok("b"));
    let table = routes(vec![first, second]);
    let (outcome, _, elapsed) = send(&RetryLayer::new(config(2)), &table, chat()).await;
    assert_eq!(outcome.expect("b serves").served_by.as_deref(), Some("b"));
    assert_eq!((b.load(Ordering::SeqCst), elapsed), (1, Duration::ZERO));
}

#[tokio::test(start_paused = true)]
async fn an_empty_budget_allows_no_retries() {
    let (a, first) = deployment("a", |_| fail(ErrorClass::UpstreamServer));
    let (b, second) = deployment("b", |_| ok("b"));
    let table = routes(vec![first, second]);
    let layer = RetryLayer::new(RetryConfig { budget_percent: 0.0, budget_min_per_sec: 0, ..config(2) });
    for _ in 0..3 {
        let (outcome, attempts, _) = send(&layer, &table, chat()).await;
        assert_eq!(outcome.expect_err("no retry").class, ErrorClass::UpstreamServer);
        assert_eq!(attempts.count(), 1);
    }
    assert_eq!((a.load(Ordering::SeqCst), b.load(Ordering::SeqCst)), (3, 0));
}

#[tokio::test(start_paused = true)]
async fn the_budget_allows_retries_as_a_share_of_requests() {
    let (a, only) = deployment("a", |_| fail(ErrorClass::UpstreamServer));
    let table = routes(vec![only]);
    // 20 %: every fifth request earns one retry; no floor.
    let layer = RetryLayer::new(RetryConfig {
        budget_percent: 20.0,
        budget_min_per_sec: 0,
        backoff_base: Duration::ZERO,
        ..config(1)
    });
    let mut retried = Vec::new();
    for _ in 0..10 {
        let (_, attempts, _) = send(&layer, &table, chat()).await;
        retried.push(attempts.count() == 2);
    }
    let expected = [false, false, false, false, true, false, false, false, false, true];
    assert_eq!(retried, expected);
    assert_eq!(a.load(Ordering::SeqCst), 12);
}

#[tokio::test(start_paused = true)]
async fn the_budget_floor_allows_retries_per_second_and_then_runs_out() {
    let (a, only) = deployment("a", |_| fail(ErrorClass::UpstreamServer));
    let table = routes(vec![only]);
    // One retry a second over the 10 s window: ten in reserve.
    let layer = RetryLayer::new(RetryConfig {
        budget_percent: 0.0,
        budget_min_per_sec: 1,
        backoff_base: Duration::ZERO,
        ..config(1)
    });
    for _ in 0..15 {
        send(&layer, &table, chat()).await.0.expect_err("it always fails");
    }
    assert_eq!(a.load(Ordering::SeqCst), 15 + 10);
}

#[tokio::test(start_paused = true)]
async fn no_retry_starts_after_the_requests_deadline() {
    let (a, only) = deployment("a", |_| {
        async {
            tokio::time::sleep(Duration::from_millis(30)).await;
            Err(LlmError::new(ErrorClass::UpstreamServer, "slow failure"))
        }
        .boxed()
    });
    let table = routes(vec![only]);
    let layer = RetryLayer::new(RetryConfig { backoff_base: Duration::ZERO, ..config(5) });
    let mut request = chat();
    request
        .extensions
        .insert(RequestTimeouts { deadline: Some(Instant::now() + Duration::from_millis(50)), ttft: None });
    let (outcome, _, elapsed) = send(&layer, &table, request).await;
    assert_eq!(outcome.expect_err("out of time").class, ErrorClass::UpstreamServer);
    assert_eq!(a.load(Ordering::SeqCst), 2, "the first retry starts at 30 ms, the second would at 60 ms");
    assert_eq!(elapsed, Duration::from_millis(60));

    // A wait that would end past the deadline is not started either.
    let (b, only) = deployment("b", |_| fail_asking(ErrorClass::Overloaded, Duration::from_secs(2)));
    let table = routes(vec![only]);
    let mut request = chat();
    request
        .extensions
        .insert(RequestTimeouts { deadline: Some(Instant::now() + Duration::from_secs(1)), ttft: None });
    let (outcome, _, elapsed) = send(&RetryLayer::new(config(5)), &table, request).await;
    assert_eq!(outcome.expect_err("out of time").class, ErrorClass::Overloaded);
    assert_eq!((b.load(Ordering::SeqCst), elapsed), (1, Duration::ZERO));
}

/// The layer alone over a `tower_test` mock: what the inner service sees, attempt by attempt.
#[tokio::test(start_paused = true)]
async fn over_a_bare_service_each_attempt_is_a_copy_of_the_request_and_success_ends_it() {
    let (mock, mut handle) = tower_test::mock::pair::<LlmRequest, LlmResponse>();
    let inner = tower::ServiceExt::map_err(mock, |e: tower::BoxError| match e.downcast::<LlmError>() {
        Ok(error) => *error,
        Err(other) => LlmError::new(ErrorClass::Internal, other.to_string()),
    });
    let retry = RetryLayer::new(RetryConfig { retries: 2, ..RetryConfig::default() }).layer(inner);
    let call = tokio::spawn(retry.oneshot(chat()));

    let (first, respond) = handle.next_request().await.expect("the first attempt");
    assert_eq!(first.model(), "m");
    assert!(Attempts::get(&first).is_some(), "the layer gives the request its attempt log");
    respond.send_error(LlmError::new(ErrorClass::Overloaded, "busy"));

    let (second, respond) = handle.next_request().await.expect("a retry after the overload");
    assert_eq!(second.model(), "m");
    respond.send_response(ok("m").await.expect("a completion"));

    let response = call.await.expect("the task ran").expect("the retry succeeded");
    assert_eq!(response.served_by.as_deref(), Some("m"));
    assert!(handle.next_request().await.is_none(), "no attempt after a success");
}

/// A client's mistake goes straight back: the mock sees one request.
#[tokio::test(start_paused = true)]
async fn over_a_bare_service_a_bad_request_is_answered_after_one_attempt() {
    let (mock, mut handle) = tower_test::mock::pair::<LlmRequest, LlmResponse>();
    let inner = tower::ServiceExt::map_err(mock, |e: tower::BoxError| match e.downcast::<LlmError>() {
        Ok(error) => *error,
        Err(other) => LlmError::new(ErrorClass::Internal, other.to_string()),
    });
    let retry = RetryLayer::new(RetryConfig::default()).layer(inner);
    let call = tokio::spawn(retry.oneshot(chat()));
    let (_, respond) = handle.next_request().await.expect("one attempt");
    respond.send_error(LlmError::new(ErrorClass::BadRequest, "`messages` is empty").with_param("messages"));
    let error = call.await.expect("the task ran").expect_err("not retried");
    assert_eq!(error.param.as_deref(), Some("messages"));
    assert!(handle.next_request().await.is_none(), "no second attempt");
}
