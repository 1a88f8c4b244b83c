//! Balancing policies through a model group, and the limits (`rpm`, `tpm`, `max_parallel`)
//! every policy honours.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::{FutureExt, future::BoxFuture};
use switchyard_router::{EndpointSettings, Policy, RouteTable};
use switchyard_types::llm::{ErrorClass, LlmError, LlmResponse};
use tower::Service;

use crate::support::{
    Fake, chat, completion, deployment, group, price, send, served_by, table, weight, within_one_minute,
};

const POLICIES: [Policy; 6] = [
    Policy::WeightedRandom,
    Policy::RoundRobin,
    Policy::LeastOutstanding,
    Policy::LowestLatency,
    Policy::LowestCost,
    Policy::UsageAware,
];

/// Starts a request through the routing step, sends it to its deployment, and keeps it in
/// flight until dropped.
fn hold(
    table: &std::sync::Arc<RouteTable>,
    model: &str,
) -> BoxFuture<'static, Result<LlmResponse, LlmError>> {
    let mut request = table.dispatch().call(chat(model));
    assert!((&mut request).now_or_never().is_none(), "the deployment holds the request");
    request
}

/// Per-minute limits count calendar minutes (so that replicas agree on them).
fn until_the_next_calendar_minute() -> Duration {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("after 1970");
    Duration::from_secs(60) - Duration::from_nanos((now.as_nanos() % 60_000_000_000) as u64)
}

fn in_flight(table: &RouteTable, label: &str) -> u32 {
    deployment(table, label).in_flight()
}

#[tokio::test]
async fn weighted_random_sends_traffic_in_proportion_to_the_weights() {
    let (a, b) = (Fake::ok("a"), Fake::ok("b"));
    let table =
        table(vec![group("m", Policy::WeightedRandom, vec![a.endpoint(weight(3)), b.endpoint(weight(1))])]);
    for _ in 0..4000 {
        send(&table, chat("m")).await.expect("served");
    }
    assert_eq!(a.calls() + b.calls(), 4000);
    // 3000 expected, with a standard deviation of about 27.
    assert!((2800..=3200).contains(&a.calls()), "a got {} of 4000 at weight 3:1", a.calls());
}

#[tokio::test]
async fn round_robin_takes_turns_each_deployment_weight_times() {
    let (a, b) = (Fake::ok("a"), Fake::ok("b"));
    let table =
        table(vec![group("m", Policy::RoundRobin, vec![a.endpoint(weight(2)), b.endpoint(weight(1))])]);
    let mut order = Vec::new();
    for _ in 0..9 {
        let response = send(&table, chat("m")).await.expect("served");
        order.push(served_by(&response).to_owned());
    }
    assert_eq!(order, ["a", "a", "b", "a", "a", "b", "a", "a", "b"]);
}

#[tokio::test]
async fn least_outstanding_sends_to_the_deployment_with_fewer_requests_in_flight() {
    let (a, b) = (Fake::pending("a"), Fake::pending("b"));
    let table = table(vec![group(
        "m",
        Policy::LeastOutstanding,
        vec![a.endpoint(EndpointSettings::default()), b.endpoint(EndpointSettings::default())],
    )]);
    let mut held = Vec::new();
    for n in 1..=20u32 {
        held.push(hold(&table, "m"));
        let (on_a, on_b) = (in_flight(&table, "a"), in_flight(&table, "b"));
        assert_eq!(on_a + on_b, n);
        assert!(on_a.abs_diff(on_b) <= 1, "after {n} requests: {on_a} in flight on a, {on_b} on b");
    }
    drop(held);
    assert_eq!((in_flight(&table, "a"), in_flight(&table, "b")), (0, 0), "dropped requests leave");
}

#[tokio::test]
async fn least_outstanding_counts_in_flight_requests_per_unit_of_weight() {
    let (a, b) = (Fake::pending("a"), Fake::pending("b"));
    let table =
        table(vec![group("m", Policy::LeastOutstanding, vec![a.endpoint(weight(3)), b.endpoint(weight(1))])]);
    let mut held = Vec::new();
    // Ties are broken at random, but the counts meet 3:1 after these numbers of requests.
    for (requests, expected) in [(2, (1, 1)), (6, (4, 2)), (8, (6, 2))] {
        while held.len() < requests {
            held.push(hold(&table, "m"));
        }
        assert_eq!((in_flight(&table, "a"), in_flight(&table, "b")), expected, "after {requests} requests");
    }
}

#[tokio::test(start_paused = true)]
async fn lowest_latency_avoids_a_deployment_five_times_slower() {
    let fast = Fake::slow("fast", Duration::from_millis(10));
    let slow = Fake::slow("slow", Duration::from_millis(50));
    let table = table(vec![group(
        "m",
        Policy::LowestLatency,
        vec![fast.endpoint(EndpointSettings::default()), slow.endpoint(EndpointSettings::default())],
    )]);
    for _ in 0..10 {
        send(&table, chat("m")).await.expect("served");
    }
    assert!(slow.calls() > 0, "warm-up measures both (an unmeasured deployment looks free)");
    let before = slow.calls();
    for _ in 0..1000 {
        send(&table, chat("m")).await.expect("served");
    }
    let to_slow = slow.calls() - before;
    assert!(to_slow < 100, "the slow deployment got {to_slow} of 1000 requests");
}

#[tokio::test]
async fn lowest_cost_sends_everything_to_the_cheapest() {
    let (dear, cheap, unpriced) = (Fake::ok("dear"), Fake::ok("cheap"), Fake::ok("unpriced"));
    let table = table(vec![group(
        "m",
        Policy::LowestCost,
        vec![dear.endpoint(price(3.0)), cheap.endpoint(price(0.5)), unpriced.endpoint(weight(100))],
    )]);
    for _ in 0..50 {
        let response = send(&table, chat("m")).await.expect("served");
        assert_eq!(served_by(&response), "cheap");
    }
}

#[tokio::test]
async fn usage_aware_prefers_the_least_utilised_deployment() {
    within_one_minute(|| async {
        let (small, large) = (Fake::ok("small"), Fake::ok("large"));
        let table = table(vec![group(
            "m",
            Policy::UsageAware,
            vec![
                small.endpoint(EndpointSettings { rpm: Some(10), ..EndpointSettings::default() }),
                large.endpoint(EndpointSettings { rpm: Some(100), ..EndpointSettings::default() }),
            ],
        )]);
        // Whichever the first request takes, the shares meet at 1/10 = 10/100 after 11 requests.
        for _ in 0..11 {
            send(&table, chat("m")).await.expect("served");
        }
        assert_eq!((small.calls(), large.calls()), (1, 10));
    })
    .await;
}

#[tokio::test]
async fn every_policy_honours_rpm_and_reports_full_capacity_as_rate_limited() {
    within_one_minute(|| async {
        for policy in POLICIES {
            // `a` is what every policy likes best: heavier, cheaper, and less utilised.
            let (a, b) = (Fake::ok("a"), Fake::ok("b"));
            let table = table(vec![group(
                "m",
                policy,
                vec![
                    a.endpoint(EndpointSettings { rpm: Some(2), weight: 10, ..price(0.1) }),
                    b.endpoint(EndpointSettings { rpm: Some(3), ..price(5.0) }),
                ],
            )]);
            for _ in 0..5 {
                send(&table, chat("m")).await.expect("served while under the limits");
            }
            assert_eq!((a.calls(), b.calls()), (2, 3), "{}", policy.as_str());
            let error = send(&table, chat("m")).await.expect_err("both deployments used their rpm");
            assert_eq!(error.class, ErrorClass::RateLimited, "{}", policy.as_str());
            assert_eq!(error.code.as_deref(), Some("deployment_capacity"), "{}", policy.as_str());
            let wait = error.retry_after.expect("says when to come back");
            let to_next_minute = until_the_next_calendar_minute();
            assert!(
                wait.abs_diff(to_next_minute) < Duration::from_millis(100),
                "when the rpm window resets: {wait:?}, not {to_next_minute:?}"
            );
            assert_eq!((a.calls(), b.calls()), (2, 3), "{}: nothing sent over the limits", policy.as_str());
        }
    })
    .await;
}

#[tokio::test]
async fn every_policy_honours_max_parallel() {
    for policy in POLICIES {
        let (a, b) = (Fake::pending("a"), Fake::pending("b"));
        let table = table(vec![group(
            "m",
            policy,
            vec![
                a.endpoint(EndpointSettings { max_parallel: Some(1), weight: 10, ..price(0.1) }),
                b.endpoint(EndpointSettings { max_parallel: Some(2), ..price(5.0) }),
            ],
        )]);
        let held: Vec<_> = (0..3).map(|_| hold(&table, "m")).collect();
        assert_eq!((in_flight(&table, "a"), in_flight(&table, "b")), (1, 2), "{}", policy.as_str());
        let error = send(&table, chat("m")).await.expect_err("both deployments are full");
        assert_eq!(error.class, ErrorClass::RateLimited, "{}", policy.as_str());
        assert_eq!(error.code.as_deref(), Some("deployment_capacity"), "{}", policy.as_str());
        assert_eq!(error.retry_after, Some(Duration::from_secs(1)), "{}", policy.as_str());
        assert_eq!((a.calls(), b.calls()), (1, 2), "{}", policy.as_str());
        drop(held);
        assert_eq!((in_flight(&table, "a"), in_flight(&table, "b")), (0, 0));
        let _admitted = hold(&table, "m");
        assert_eq!(in_flight(&table, "a") + in_flight(&table, "b"), 1, "room again once they finished");
    }
}

#[tokio::test]
async fn tokens_used_count_against_the_tpm() {
    within_one_minute(|| async {
        let a = Fake::new("a", |_| Box::pin(std::future::ready(Ok(completion("a", 100)))));
        let b = Fake::ok("b");
        let table = table(vec![group(
            "m",
            Policy::LowestCost,
            vec![a.endpoint(EndpointSettings { tpm: Some(100), ..price(0.1) }), b.endpoint(price(5.0))],
        )]);
        let first = send(&table, chat("m")).await.expect("served");
        assert_eq!(served_by(&first), "a");
        let second = send(&table, chat("m")).await.expect("served");
        assert_eq!(served_by(&second), "b", "a used its 100 tokens this minute");
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn lowest_latency_stops_choosing_a_deployment_once_it_failed() {
    // `hang` never answers; its deadline turns that into a timeout. Never measured, it would
    // look like the fastest for ever if failures did not count in the latency estimate.
    let hang = Fake::pending("hang");
    let fast = Fake::slow("fast", Duration::from_millis(20));
    let deadline = switchyard_router::timeout::DeadlineLayer::new(
        switchyard_router::timeout::Timeouts {
            total: Some(Duration::from_millis(100)),
            ..Default::default()
        },
        "hang",
    );
    let hang_endpoint = switchyard_router::Endpoint::new(
        "hang",
        "key/hang",
        tower::util::BoxCloneSyncService::new(tower::Layer::layer(&deadline, hang.service())),
        EndpointSettings::default(),
    );
    let table = table(vec![group(
        "m",
        Policy::LowestLatency,
        vec![hang_endpoint, fast.endpoint(EndpointSettings::default())],
    )]);
    let stack = crate::support::stack(&table, crate::support::retries(2), Default::default());
    for _ in 0..50 {
        let response = tower::ServiceExt::oneshot(stack.clone(), chat("m")).await.expect("served");
        assert_eq!(served_by(&response), "fast");
    }
    assert!(hang.calls() <= 1, "one failure is enough to stop choosing it: {} calls", hang.calls());
}
