//! End to end: two gateway replicas share `rpm` limits and cooldowns through Redis, and a
//! gateway whose Redis cannot be reached refuses to start, saying what to do.
//!
//! The tests that need Redis read its URL from `SWITCHYARD_TEST_REDIS_URL` (`.ci/run` sets it;
//! locally `export SWITCHYARD_TEST_REDIS_URL=redis://127.0.0.1:6379`); without it they say on
//! stderr that they were skipped, and pass.

#![allow(clippy::unwrap_used, reason = "a failed unwrap is a failed test, with its message")]

use std::{
    collections::HashMap,
    io::Write,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use serde_json::{Value, json};
use switchyard_e2e::{Gateway, client};
use switchyard_gateway::{config::Config, server::Server};
use switchyard_testkit::{Fault, MockConfig, MockServer};

/// How often the replicas share their state, in milliseconds.
const SYNC_MS: u64 = 50;
/// A pause long enough for every replica to have pushed its counts and read the others' (each
/// sync is a few loopback round trips, done well within one interval).
const PROPAGATE: Duration = Duration::from_millis(3 * SYNC_MS);

fn redis_url(test: &str) -> Option<String> {
    let url = std::env::var("SWITCHYARD_TEST_REDIS_URL").ok().filter(|u| !u.is_empty());
    if url.is_none() {
        // Written to the real stderr, not through the test harness's capture, so that the skip
        // shows in a normal `cargo test` run.
        let _ = writeln!(
            std::io::stderr(),
            "routing_shared::{test}: skipped: SWITCHYARD_TEST_REDIS_URL is not set (start Redis, then set it to redis://127.0.0.1:6379; .ci/run does both)"
        );
    }
    url
}

/// A model name no earlier run used: shared counters and cooldowns are keyed by model name and
/// live in Redis for up to two minutes, so a fixed name would inherit a previous run's counts.
fn unique(prefix: &str) -> String {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos();
    format!("{prefix}-{}-{nanos}", std::process::id())
}

/// An OpenAI-dialect deployment at `base`, as a flow mapping, with `extra` settings.
fn deployment(upstream_model: &str, base: &str, extra: &str) -> String {
    format!(
        "{{provider: openai, model: {upstream_model}, api_base: '{base}', api_key: sk-upstream-secret-0123456789{extra}}}"
    )
}

fn with_redis(url: &str, models: &str) -> String {
    format!("redis:\n  url: '{url}'\n  sync_interval_ms: {SYNC_MS}\n{models}")
}

/// The status, the serving deployment (`x-switchyard-deployment`) and the body of one chat request.
async fn chat(gateway: &Gateway, model: &str) -> (u16, Option<String>, Value) {
    let body = json!({"model": model, "messages": [{"role": "user", "content": "hi"}]});
    let response = tokio::time::timeout(
        Duration::from_secs(10),
        client().post(gateway.url("/v1/chat/completions")).json(&body).send(),
    )
    .await
    .expect("the gateway answered within 10 s")
    .unwrap();
    let status = response.status().as_u16();
    let served_by = response.headers().get("x-switchyard-deployment").map(|v| v.to_str().unwrap().to_owned());
    (status, served_by, response.json().await.unwrap())
}

/// Sends `rounds` rounds of one request to each replica in turn, pausing between rounds so
/// that counts propagate; returns how many were admitted (200), after checking that every other
/// answer was the capacity 429.
async fn alternate(replicas: [&Gateway; 2], model: &str, rounds: usize) -> usize {
    let mut admitted = 0;
    for round in 0..rounds {
        for (r, gateway) in replicas.iter().enumerate() {
            let (status, _, body) = chat(gateway, model).await;
            match status {
                200 => admitted += 1,
                429 => assert_eq!(
                    body["error"]["code"],
                    "deployment_capacity",
                    "round {round}, replica {}: a 429 of the gateway's own limit: {body}",
                    r + 1
                ),
                other => panic!("round {round}, replica {}: unexpected {other}: {body}", r + 1),
            }
        }
        tokio::time::sleep(PROPAGATE).await;
    }
    admitted
}

/// Waits for the next calendar minute when this one is nearly over.
///
/// The `rpm` window is the calendar minute: a test that crossed into the next one would see
/// the count start again. And a capacity 429 carries `Retry-After` = the time left in the
/// minute; once that is within the retry layer's `max_retry_after` (5 s by default) the gateway
/// waits it out and retries in the next minute, turning the 429 into a 200. So the requests
/// must all be sent before the last 5 s of the minute: `needed` is how long they take.
async fn same_minute_for(needed: Duration) {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    let into_minute = Duration::from_millis((now.as_millis() % 60_000) as u64);
    let left = Duration::from_secs(60) - into_minute;
    if left < needed + Duration::from_secs(6) {
        tokio::time::sleep(left + Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn an_rpm_limit_holds_across_replicas() {
    let Some(redis) = redis_url("an_rpm_limit_holds_across_replicas") else { return };
    const RPM: usize = 10;
    const ROUNDS: usize = 12; // 24 requests, more than two replicas' worth of the limit
    let model = unique("shared-rpm");
    let shared_mock = MockServer::start(MockConfig::default()).await.unwrap();
    let local_mock = MockServer::start(MockConfig::default()).await.unwrap();
    let models = |base: &str| {
        format!(
            "models:\n  - name: {model}\n    deployments:\n      - {}\n",
            deployment("up", base, &format!(", rpm: {RPM}"))
        )
    };
    let shared = [
        Gateway::start(&with_redis(&redis, &models(&shared_mock.url()))).await,
        Gateway::start(&with_redis(&redis, &models(&shared_mock.url()))).await,
    ];
    let local =
        [Gateway::start(&models(&local_mock.url())).await, Gateway::start(&models(&local_mock.url())).await];

    let one_pass = PROPAGATE * ROUNDS as u32 + Duration::from_millis(20 * 2 * ROUNDS as u64);
    same_minute_for(2 * one_pass).await;

    let admitted = alternate([&shared[0], &shared[1]], &model, ROUNDS).await;
    // Each round reaches both replicas only after the previous round's counts have propagated,
    // so the one replica that may act on a stale count is the second of a round, and only for
    // the first replica's single request of that round: the design's slack (what a replica
    // admits within one sync interval) is at most 1 here.
    assert!(
        (RPM..=RPM + 1).contains(&admitted),
        "two replicas sharing rpm {RPM} admitted {admitted} of {} requests",
        2 * ROUNDS
    );
    assert_eq!(
        shared_mock.stats().chat_completions,
        admitted as u64,
        "every 200 and only those reached the provider"
    );

    // The counterfactual, with the same traffic: without Redis each replica counts alone, so
    // two of them admit up to twice the limit. (This also proves the limit was not enforced
    // above by something other than the shared counts.)
    let alone = alternate([&local[0], &local[1]], &model, ROUNDS).await;
    assert_eq!(alone, 2 * RPM, "without Redis each replica admits its own {RPM}");
    assert_eq!(local_mock.stats().chat_completions, alone as u64);
    let _ = writeln!(
        std::io::stderr(),
        "routing_shared: rpm {RPM}: admitted {admitted} of {} with Redis, {alone} without",
        2 * ROUNDS
    );
}

#[tokio::test]
async fn a_cooldown_on_one_replica_steers_the_other() {
    let Some(redis) = redis_url("a_cooldown_on_one_replica_steers_the_other") else { return };
    let model = unique("shared-cooldown");
    let a = MockServer::start(MockConfig::default()).await.unwrap();
    let b = MockServer::start(MockConfig::default()).await.unwrap();
    // Round robin: without a cooldown, every other request of a replica goes to A.
    let models = format!(
        "models:\n  - name: {model}\n    routing: {{policy: round_robin}}\n    deployments:\n      - {}\n      - {}\n",
        deployment("up-a", &a.url(), ""),
        deployment("up-b", &b.url(), "")
    );
    let first = Gateway::start(&with_redis(&redis, &models)).await;
    let second = Gateway::start(&with_redis(&redis, &models)).await;

    // A says it is rate limited for 30 s (far longer than the test takes, even on a loaded
    // machine): the first replica's request that reaches it cools it down, and fails over to B
    // at once.
    a.push_fault(Fault::RateLimited { retry_after_secs: 30 });
    for _ in 0..4 {
        let (status, served_by, body) = chat(&first, &model).await;
        assert_eq!(status, 200, "the 429 failed over to B: {body}");
        assert_eq!(served_by.as_deref(), Some("openai/up-b"), "{body}");
        if a.stats().faults_by_kind.rate_limited == 1 {
            break;
        }
    }
    assert_eq!(a.stats().faults_by_kind.rate_limited, 1, "the first replica reached A and got its 429");
    let a_before = a.stats().requests;

    tokio::time::sleep(PROPAGATE).await;
    let b_before = b.stats().chat_completions;
    for i in 0..10 {
        let (status, served_by, body) = chat(&second, &model).await;
        assert_eq!(status, 200, "request {i}: {body}");
        assert_eq!(served_by.as_deref(), Some("openai/up-b"), "request {i} went to B: {body}");
    }
    assert_eq!(a.stats().requests, a_before, "the second replica sent nothing to A while it cools down");
    assert_eq!(b.stats().chat_completions, b_before + 10);

    // The counterfactual: a replica that does not share state still sends A its turn.
    let alone = Gateway::start(&models).await;
    for _ in 0..4 {
        assert_eq!(chat(&alone, &model).await.0, 200);
    }
    assert_eq!(a.stats().requests, a_before + 2, "without Redis, round robin gives A half");
}

#[tokio::test]
async fn an_unreachable_redis_stops_the_gateway_from_starting() {
    // Needs no Redis: port 1 is one nothing listens on. The password must not be shown.
    let mock = MockServer::start(MockConfig::default()).await.unwrap();
    let yaml = with_redis(
        "redis://:hunter2@127.0.0.1:1",
        &format!("models:\n  - name: m\n    deployments:\n      - {}\n", deployment("up", &mock.url(), "")),
    );
    let mut config = Config::parse(&yaml, "test.yaml", HashMap::new()).unwrap();
    config.server.listen = ([127, 0, 0, 1], 0).into();
    let started = tokio::time::Instant::now();
    let bound = tokio::time::timeout(Duration::from_secs(10), Server::bind(&config, &HashMap::new()))
        .await
        .expect("the gateway gave up on Redis within 10 s");
    let Err(error) = bound else { panic!("the gateway started without its Redis") };
    let message = error.to_string();
    let _ = writeln!(std::io::stderr(), "routing_shared: after {:?}: {message}", started.elapsed());
    assert!(
        message.contains("could not reach Redis at redis://***@127.0.0.1:1"),
        "says what failed: {message}"
    );
    assert!(
        message.contains("start Redis or remove `redis:` from the configuration"),
        "says what to do: {message}"
    );
    assert!(!message.contains("hunter2"), "the password is not shown: {message}");
    // Nothing listens there: that is the reason to give, at once, not a wait for an answer.
    assert!(message.to_lowercase().contains("refused"), "says why: {message}");
    assert!(started.elapsed() < Duration::from_secs(4), "gave up at once, not after a timeout: {message}");
}
