//! Cooldowns seen through a model group: failing deployments leave rotation, one probe brings
//! them back, a 429's `Retry-After` sets the length, a cooling model stays reachable, and only
//! failures of the deployment's making count (not the client's errors or its own time limits).

use std::time::Duration;

use futures_util::{FutureExt, StreamExt};
use switchyard_router::{
    Endpoint, EndpointSettings, Policy,
    health::State,
    timeout::{DeadlineLayer, RequestTimeouts, Timeouts},
};
use switchyard_types::llm::{ErrorClass, ResponseBody};
use tokio::time::{Instant, advance};
use tower::{Layer, Service, util::BoxCloneSyncService};

use crate::support::{
    Fake, Gate, chat, chunk, completion, deployment, failure, group, price, send, served_by, stream_chat,
    streamed, streamed_forever, table, text,
};

/// `a` is the cheaper deployment, so the lowest-cost policy sends everything to it while it is
/// in rotation, and to `b` only when it is not.
fn cheap_first(a: &Fake, b: &Fake) -> std::sync::Arc<switchyard_router::RouteTable> {
    table(vec![group("m", Policy::LowestCost, vec![a.endpoint(price(0.1)), b.endpoint(price(5.0))])])
}

fn cooling_for(state: State, now: Instant) -> Duration {
    match state {
        State::Cooling { until, .. } => until - now,
        other => panic!("expected a cooldown, the deployment is {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn three_failures_take_a_deployment_out_and_one_successful_probe_brings_it_back() {
    let gate = Gate::new();
    let held = gate.clone();
    let a = Fake::new("a", move |n| {
        let held = held.clone();
        async move {
            match n {
                0..=2 => Err(failure(ErrorClass::UpstreamServer)),
                3 => {
                    held.wait().await;
                    Ok(completion("a", 2))
                }
                _ => Ok(completion("a", 2)),
            }
        }
        .boxed()
    });
    let b = Fake::ok("b");
    let table = cheap_first(&a, &b);

    for n in 1..=3 {
        let error = send(&table, chat("m")).await.expect_err("a fails");
        assert_eq!(error.class, ErrorClass::UpstreamServer);
        if n < 3 {
            assert_eq!(deployment(&table, "a").health(), State::Healthy { consecutive: n });
        }
    }
    assert_eq!(cooling_for(deployment(&table, "a").health(), Instant::now()), Duration::from_secs(10));
    for _ in 0..3 {
        assert_eq!(served_by(&send(&table, chat("m")).await.expect("served")), "b");
    }
    advance(Duration::from_millis(9_999)).await;
    assert_eq!(served_by(&send(&table, chat("m")).await.expect("served")), "b", "still cooling");
    assert_eq!(a.calls(), 3);

    advance(Duration::from_millis(1)).await;
    let probe = tokio::spawn(table.dispatch().call(chat("m")));
    assert_eq!(deployment(&table, "a").health(), State::Probing { strikes: 1, claimed: true });
    assert_eq!(
        served_by(&send(&table, chat("m")).await.expect("served")),
        "b",
        "one probe at a time: others keep away while it is in flight"
    );
    gate.open();
    let probed = probe.await.expect("no panic").expect("the probe succeeds");
    assert_eq!(served_by(&probed), "a");
    assert_eq!(deployment(&table, "a").health(), State::Healthy { consecutive: 0 });
    assert_eq!(served_by(&send(&table, chat("m")).await.expect("served")), "a", "back in rotation");
    assert_eq!(a.calls(), 5);
}

#[tokio::test(start_paused = true)]
async fn a_failed_probe_cools_the_deployment_down_twice_as_long() {
    let (a, b) = (Fake::failing("a", ErrorClass::Overloaded), Fake::ok("b"));
    let table = cheap_first(&a, &b);
    for _ in 0..3 {
        send(&table, chat("m")).await.expect_err("a fails");
    }
    advance(Duration::from_secs(10)).await;
    send(&table, chat("m")).await.expect_err("the probe goes to a, and fails");
    assert_eq!(a.calls(), 4);
    assert_eq!(cooling_for(deployment(&table, "a").health(), Instant::now()), Duration::from_secs(20));
    advance(Duration::from_secs(19)).await;
    assert_eq!(served_by(&send(&table, chat("m")).await.expect("served")), "b");
    assert_eq!(a.calls(), 4);
}

#[tokio::test(start_paused = true)]
async fn client_errors_do_not_take_a_deployment_out() {
    let (a, b) = (Fake::failing("a", ErrorClass::BadRequest), Fake::ok("b"));
    let table = cheap_first(&a, &b);
    for _ in 0..10 {
        let error = send(&table, chat("m")).await.expect_err("a rejects the request");
        assert_eq!(error.class, ErrorClass::BadRequest);
    }
    assert_eq!((a.calls(), b.calls()), (10, 0));
    assert_eq!(deployment(&table, "a").health(), State::Healthy { consecutive: 0 });
}

#[tokio::test(start_paused = true)]
async fn a_429_cools_a_deployment_down_at_once_for_its_retry_after() {
    let a = Fake::new("a", |n| {
        let answer = match n {
            0 => Err(failure(ErrorClass::RateLimited).with_retry_after(Some(Duration::from_secs(25)))),
            _ => Ok(completion("a", 2)),
        };
        std::future::ready(answer).boxed()
    });
    let b = Fake::ok("b");
    let table = cheap_first(&a, &b);
    let error = send(&table, chat("m")).await.expect_err("a throttles");
    assert_eq!(error.class, ErrorClass::RateLimited);
    assert_eq!(cooling_for(deployment(&table, "a").health(), Instant::now()), Duration::from_secs(25));
    assert_eq!(served_by(&send(&table, chat("m")).await.expect("served")), "b");
    advance(Duration::from_secs(24)).await;
    assert_eq!(
        served_by(&send(&table, chat("m")).await.expect("served")),
        "b",
        "longer than the default 10 s"
    );
    advance(Duration::from_secs(1)).await;
    assert_eq!(served_by(&send(&table, chat("m")).await.expect("served")), "a");
}

#[tokio::test(start_paused = true)]
async fn when_every_deployment_is_cooling_requests_go_to_the_one_back_soonest() {
    // a (the cheap one) is throttled for a minute; b fails three times and cools for 10 s.
    let a = Fake::new("a", |n| match n {
        0 => a_throttled(),
        _ => Box::pin(std::future::ready(Ok(completion("a", 2)))),
    });
    let b = Fake::new("b", |n| {
        let answer = if n < 3 { Err(failure(ErrorClass::UpstreamServer)) } else { Ok(completion("b", 2)) };
        std::future::ready(answer).boxed()
    });
    let table = cheap_first(&a, &b);
    for _ in 0..4 {
        send(&table, chat("m")).await.expect_err("a throttles, then b fails three times");
    }
    assert!(matches!(deployment(&table, "a").health(), State::Cooling { .. }));
    assert!(matches!(deployment(&table, "b").health(), State::Cooling { .. }));
    let response = send(&table, chat("m")).await.expect("a cooling model still serves");
    assert_eq!(served_by(&response), "b", "b is back in 10 s, a in 60 s");
    assert_eq!((a.calls(), b.calls()), (1, 4));
}

fn a_throttled() -> crate::support::Answer {
    let error = failure(ErrorClass::RateLimited).with_retry_after(Some(Duration::from_secs(60)));
    Box::pin(std::future::ready(Err(error)))
}

#[tokio::test(start_paused = true)]
async fn a_probe_the_client_abandoned_is_released_for_the_next_request() {
    let a = Fake::new("a", |n| match n {
        0..=2 => std::future::ready(Err(failure(ErrorClass::Unreachable))).boxed(),
        3 => std::future::pending().boxed(),
        _ => std::future::ready(Ok(completion("a", 2))).boxed(),
    });
    let b = Fake::ok("b");
    let table = cheap_first(&a, &b);
    for _ in 0..3 {
        send(&table, chat("m")).await.expect_err("a is unreachable");
    }
    advance(Duration::from_secs(10)).await;

    let mut probe = table.dispatch().call(chat("m"));
    assert!((&mut probe).now_or_never().is_none(), "a holds the probe");
    assert_eq!(a.calls(), 4);
    assert_eq!(deployment(&table, "a").health(), State::Probing { strikes: 1, claimed: true });
    drop(probe);
    assert_eq!(deployment(&table, "a").health(), State::Probing { strikes: 1, claimed: false });
    assert_eq!(deployment(&table, "a").in_flight(), 0);

    let response = send(&table, chat("m")).await.expect("served");
    assert_eq!(served_by(&response), "a", "the next request probes a");
    assert_eq!(deployment(&table, "a").health(), State::Healthy { consecutive: 0 });
}

#[tokio::test(start_paused = true)]
async fn a_probe_that_fails_for_the_clients_reason_is_given_back() {
    let a = Fake::new("a", |n| {
        let answer = match n {
            0..=2 => Err(failure(ErrorClass::UpstreamServer)),
            3 => Err(failure(ErrorClass::ContextLengthExceeded)),
            _ => Ok(completion("a", 2)),
        };
        std::future::ready(answer).boxed()
    });
    let b = Fake::ok("b");
    let table = cheap_first(&a, &b);
    for _ in 0..3 {
        send(&table, chat("m")).await.expect_err("a fails");
    }
    advance(Duration::from_secs(10)).await;
    let error = send(&table, chat("m")).await.expect_err("the probe's prompt is too long");
    assert_eq!(error.class, ErrorClass::ContextLengthExceeded);
    assert_eq!(deployment(&table, "a").health(), State::Probing { strikes: 1, claimed: false });
    assert_eq!(served_by(&send(&table, chat("m")).await.expect("served")), "a", "the next request probes");
    assert_eq!(deployment(&table, "a").health(), State::Healthy { consecutive: 0 });
}

#[tokio::test(start_paused = true)]
async fn a_client_error_on_another_request_does_not_release_the_probe() {
    // Call 0 was sent before the cooldown and fails, as the client's fault, while the probe
    // (call 4) is in flight.
    let a = Fake::new("a", |n| match n {
        0 => async {
            tokio::time::sleep(Duration::from_secs(15)).await;
            Err(failure(ErrorClass::BadRequest))
        }
        .boxed(),
        1..=3 => std::future::ready(Err(failure(ErrorClass::UpstreamServer))).boxed(),
        4 => std::future::pending().boxed(),
        _ => std::future::ready(Ok(completion("a", 2))).boxed(),
    });
    let b = Fake::ok("b");
    let table = cheap_first(&a, &b);
    let mut early = table.dispatch().call(chat("m"));
    assert!((&mut early).now_or_never().is_none(), "sent, answers at 15 s");
    for _ in 0..3 {
        send(&table, chat("m")).await.expect_err("a fails");
    }
    advance(Duration::from_secs(10)).await;
    let mut probe = table.dispatch().call(chat("m"));
    assert!((&mut probe).now_or_never().is_none(), "the probe is in flight");
    assert_eq!(deployment(&table, "a").health(), State::Probing { strikes: 1, claimed: true });

    let error = early.await.expect_err("the early request fails at 15 s");
    assert_eq!(error.class, ErrorClass::BadRequest);
    assert_eq!(
        deployment(&table, "a").health(),
        State::Probing { strikes: 1, claimed: true },
        "the probe in flight is not the early request's to give back"
    );
    assert_eq!(served_by(&send(&table, chat("m")).await.expect("served")), "b", "one probe at a time");
}

#[tokio::test(start_paused = true)]
async fn with_failure_counting_off_only_429s_cool_a_deployment_down() {
    let a = Fake::new("a", |n| {
        let answer = match n {
            0 => Err(failure(ErrorClass::RateLimited).with_retry_after(Some(Duration::from_secs(1)))),
            _ => Err(failure(ErrorClass::UpstreamServer)),
        };
        std::future::ready(answer).boxed()
    });
    let b = Fake::ok("b");
    let cooldown = switchyard_router::health::CooldownConfig {
        failures: 0,
        ..switchyard_router::health::CooldownConfig::default()
    };
    let settings = switchyard_router::GroupSettings { policy: Policy::LowestCost, cooldown };
    let group = switchyard_router::ModelGroup::new(
        "m",
        vec![a.endpoint(price(0.1)), b.endpoint(price(5.0))],
        settings,
    );
    let table = table(vec![group]);

    send(&table, chat("m")).await.expect_err("a throttles");
    assert_eq!(cooling_for(deployment(&table, "a").health(), Instant::now()), Duration::from_secs(1));
    assert_eq!(served_by(&send(&table, chat("m")).await.expect("served")), "b");
    advance(Duration::from_secs(1)).await;
    for _ in 0..5 {
        let error = send(&table, chat("m")).await.expect_err("a fails: the probe, then the rest");
        assert_eq!(error.class, ErrorClass::UpstreamServer);
    }
    assert_eq!(a.calls(), 6, "5xx alone never take a out");
}

/// `fake` behind a deadline layer with `timeouts`, alone in group `m`.
fn limited(fake: &Fake, timeouts: Timeouts) -> std::sync::Arc<switchyard_router::RouteTable> {
    let service = BoxCloneSyncService::new(DeadlineLayer::new(timeouts, "a").layer(fake.service()));
    let endpoint = Endpoint::new("a", "key/a", service, EndpointSettings::default());
    table(vec![group("m", Policy::WeightedRandom, vec![endpoint])])
}

fn hurried(
    mut request: switchyard_types::llm::LlmRequest,
    limits: RequestTimeouts,
) -> switchyard_types::llm::LlmRequest {
    request.extensions.insert(limits);
    request
}

#[tokio::test(start_paused = true)]
async fn a_clients_own_time_limits_do_not_count_against_the_deployment() {
    let in_100_ms =
        || RequestTimeouts { deadline: Some(Instant::now() + Duration::from_millis(100)), ttft: None };

    let answers_in_500_ms = Fake::slow("a", Duration::from_millis(500));
    let table = limited(&answers_in_500_ms, Timeouts::default());
    for _ in 0..5 {
        let error =
            send(&table, hurried(chat("m"), in_100_ms())).await.expect_err("the client gave it 100 ms");
        assert_eq!(
            (error.class, error.param.as_deref()),
            (ErrorClass::Timeout, Some("x-switchyard-timeout-ms"))
        );
    }
    assert_eq!(deployment(&table, "a").health(), State::Healthy { consecutive: 0 }, "deadline");

    let streams_in_500_ms = Fake::new("a", |_| {
        async {
            tokio::time::sleep(Duration::from_millis(500)).await;
            Ok(streamed("a", vec![chunk("late")]))
        }
        .boxed()
    });
    let table = limited(&streams_in_500_ms, Timeouts::default());
    for _ in 0..5 {
        let ttft = RequestTimeouts { deadline: None, ttft: Some(Duration::from_millis(100)) };
        let error =
            send(&table, hurried(stream_chat("m"), ttft)).await.expect_err("no first chunk in 100 ms");
        assert_eq!(error.class, ErrorClass::Timeout);
    }
    assert_eq!(deployment(&table, "a").health(), State::Healthy { consecutive: 0 }, "ttft");

    let streams_forever =
        Fake::new("a", |_| std::future::ready(Ok(streamed_forever("a", vec![chunk("1")]))).boxed());
    let table = limited(&streams_forever, Timeouts::default());
    for _ in 0..5 {
        let response = send(&table, hurried(stream_chat("m"), in_100_ms())).await.expect("a first chunk");
        let ResponseBody::ChatStream(chunks) = response.body else { panic!("expected a stream") };
        let items: Vec<_> = chunks.take(10).collect().await;
        assert_eq!(items.iter().map(text).collect::<Vec<_>>(), ["1", "error: timeout"]);
    }
    assert_eq!(deployment(&table, "a").health(), State::Healthy { consecutive: 0 }, "deadline mid-stream");
    assert_eq!(deployment(&table, "a").in_flight(), 0);
}

#[tokio::test(start_paused = true)]
async fn the_deployments_own_time_limits_count_against_it() {
    let answers_in_500_ms = Fake::slow("a", Duration::from_millis(500));
    let table = limited(
        &answers_in_500_ms,
        Timeouts { total: Some(Duration::from_millis(100)), ..Timeouts::default() },
    );
    for _ in 0..3 {
        let error = send(&table, chat("m")).await.expect_err("slower than its timeout_ms");
        assert_eq!((error.class, error.param.as_deref()), (ErrorClass::Timeout, None));
    }
    assert_eq!(cooling_for(deployment(&table, "a").health(), Instant::now()), Duration::from_secs(10));
}
