//! The Redis meter against its contract (`meter`'s module doc), and two meters ("replicas")
//! sharing limits through one Redis.
//!
//! The tests that need Redis read its URL from `SWITCHYARD_TEST_REDIS_URL` (locally
//! `export SWITCHYARD_TEST_REDIS_URL=redis://127.0.0.1:6379`); without it they say on stderr
//! that they were skipped, and pass. Redis is shared with parallel tests and later runs, so
//! every test counts under a prefix of its own and deletes its keys at the end.

#![allow(clippy::unwrap_used, reason = "a failed unwrap is a failed test, with its message")]

use std::{
    io::Write,
    sync::Arc,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use futures_util::future::BoxFuture;
use switchyard_accounting::{
    meter::{Charge, Meter, MeterError, MeterKind, NothingSpent, SpentSource},
    model::{Nanos, Period, Scope},
};

/// 2026-12-01T00:00:00Z. Counter expiries are set relative to the `now_ms` a test passes, so
/// that a fixed time is safe: keys of a minute window live 110 s from a write at [`NOW`].
const DEC_1: i64 = 1_796_083_200_000;
/// 10 s into a minute of that day.
const NOW: i64 = DEC_1 + 3_600_000 + 10_000;
/// The minute [`NOW`] is in.
const MINUTE: i64 = NOW - 10_000;

fn redis_url(test: &str) -> Option<String> {
    let url = std::env::var("SWITCHYARD_TEST_REDIS_URL").ok().filter(|u| !u.is_empty());
    if url.is_none() {
        // Written to the real stderr, not through the test harness's capture, so that the skip
        // shows in a normal `cargo test` run.
        let _ = writeln!(
            std::io::stderr(),
            "meter_redis::{test}: skipped: SWITCHYARD_TEST_REDIS_URL is not set (start Redis, then set it to redis://127.0.0.1:6379)"
        );
    }
    url
}

/// A key prefix no other test or run uses.
fn unique(test: &str) -> String {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos();
    format!("switchyard-test:{test}:{}:{nanos}", std::process::id())
}

/// A test's Redis, its prefix, and a plain connection to look at the counters directly.
struct Fixture {
    url: String,
    prefix: String,
    connection: redis::aio::MultiplexedConnection,
}

impl Fixture {
    async fn new(test: &str) -> Option<Fixture> {
        let url = redis_url(test)?;
        let client = redis::Client::open(url.as_str()).unwrap();
        let connection = client.get_multiplexed_async_connection().await.unwrap();
        Some(Fixture { url, prefix: unique(test), connection })
    }

    async fn meter(&self, spent: Arc<dyn SpentSource>) -> Meter {
        Meter::redis(&self.url, &self.prefix, spent).await.unwrap()
    }

    fn key(&self, kind: &str, scope: &Scope, window: i64) -> String {
        format!("{}:meter:{kind}:{}:{}:{window}", self.prefix, scope.kind(), scope.id())
    }

    async fn get(&self, key: &str) -> Option<i64> {
        redis::cmd("GET").arg(key).query_async(&mut self.connection.clone()).await.unwrap()
    }

    async fn pttl(&self, key: &str) -> i64 {
        redis::cmd("PTTL").arg(key).query_async(&mut self.connection.clone()).await.unwrap()
    }

    /// Waits (up to 5 s) until `key` holds `expected`: settlements are applied in the
    /// background.
    async fn until(&self, key: &str, expected: Option<i64>) {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let value = self.get(key).await;
            if value == expected {
                return;
            }
            assert!(Instant::now() < deadline, "{key} holds {value:?}, not {expected:?}, after 5 s");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Deletes every key under the prefix (some budget counters would live for days).
    async fn clean(self) {
        let mut connection = self.connection.clone();
        let keys: Vec<String> =
            redis::cmd("KEYS").arg(format!("{}:*", self.prefix)).query_async(&mut connection).await.unwrap();
        if !keys.is_empty() {
            let _: () = redis::cmd("DEL").arg(keys).query_async(&mut connection).await.unwrap();
        }
    }
}

fn key() -> Scope {
    Scope::Key("key_a".into())
}

fn team() -> Scope {
    Scope::Team("team_a".into())
}

fn charge(scope: Scope, kind: MeterKind, limit: i64, amount: i64) -> Charge {
    Charge { scope, kind, limit, amount }
}

/// A ledger that says `0` was spent.
struct Spent(Nanos);

impl SpentSource for Spent {
    fn spent_since(&self, _: &Scope, _: i64) -> BoxFuture<'_, Result<Nanos, String>> {
        Box::pin(std::future::ready(Ok(self.0)))
    }
}

#[tokio::test]
async fn a_redis_that_cannot_be_reached_fails_the_start_without_showing_the_password() {
    let error =
        Meter::redis("redis://:s3cret-pw@127.0.0.1:1", "p", Arc::new(NothingSpent)).await.unwrap_err();
    assert!(matches!(error, MeterError::Unreachable { .. }), "{error:?}");
    let message = error.to_string();
    assert!(message.starts_with("could not reach Redis at redis://:***@127.0.0.1:1: "), "{message}");
    assert!(!message.contains("s3cret-pw"), "{message}");
    let error = Meter::redis("http://:s3cret-pw@127.0.0.1", "p", Arc::new(NothingSpent)).await.unwrap_err();
    assert!(matches!(error, MeterError::BadUrl { .. }), "{error:?}");
    assert!(!error.to_string().contains("s3cret-pw"), "{error}");
}

#[tokio::test]
async fn requests_admit_up_to_the_limit_then_refuse_until_the_next_minute() {
    let Some(redis) = Fixture::new("requests_admit_up_to_the_limit_then_refuse_until_the_next_minute").await
    else {
        return;
    };
    let meter = redis.meter(Arc::new(NothingSpent)).await;
    let rpm = || vec![charge(key(), MeterKind::Requests, 3, 1)];
    for expected in 1..=3 {
        let admitted = meter.admit(rpm(), NOW).await.unwrap();
        assert_eq!(admitted.standings[0].used, expected);
        assert_eq!(admitted.standings[0].resets_at_ms, Some(MINUTE + 60_000));
    }
    let refusal = meter.admit(rpm(), NOW + 5_000).await.unwrap_err();
    assert_eq!((refusal.kind, refusal.limit, refusal.used), (MeterKind::Requests, 3, 3));
    assert_eq!(refusal.retry_after, Some(Duration::from_secs(45)));
    let counter = redis.key("requests", &key(), MINUTE);
    assert_eq!(redis.get(&counter).await, Some(3), "a refusal writes nothing, and requests stay counted");
    let ttl = redis.pttl(&counter).await;
    assert!((100_000..=110_000).contains(&ttl), "a minute window lives 120 s from its start: {ttl} ms left");
    let next = meter.admit(rpm(), MINUTE + 60_000).await.unwrap();
    assert_eq!(next.standings[0].used, 1, "a new minute starts over");
    redis.clean().await;
}

#[tokio::test]
async fn tokens_reserve_and_settlements_reach_redis() {
    let Some(redis) = Fixture::new("tokens_reserve_and_settlements_reach_redis").await else { return };
    let meter = redis.meter(Arc::new(NothingSpent)).await;
    let tpm = |amount| vec![charge(key(), MeterKind::Tokens, 1_000, amount)];
    let counter = redis.key("tokens", &key(), MINUTE);
    let first = meter.admit(tpm(900), NOW).await.unwrap();
    let second = meter.admit(tpm(500), NOW).await.unwrap();
    assert_eq!(second.standings[0].used, 1_400, "admitted while room was left");
    let refusal = meter.admit(tpm(1), NOW).await.unwrap_err();
    assert_eq!((refusal.used, refusal.retry_after), (1_400, Some(Duration::from_secs(50))));
    first.grant.settle(400, 0);
    redis.until(&counter, Some(900)).await;
    second.grant.settle(700, 0);
    redis.until(&counter, Some(1_100)).await;
    drop(meter.admit(tpm(50), MINUTE + 60_000).await.unwrap());
    let next = redis.key("tokens", &key(), MINUTE + 60_000);
    redis.until(&next, Some(0)).await;
    redis.clean().await;
}

#[tokio::test]
async fn parallel_counters_are_released_and_expire() {
    let Some(redis) = Fixture::new("parallel_counters_are_released_and_expire").await else { return };
    let meter = redis.meter(Arc::new(NothingSpent)).await;
    let parallel = || vec![charge(key(), MeterKind::Parallel, 2, 1)];
    let counter = redis.key("parallel", &key(), 0);
    let a = meter.admit(parallel(), NOW).await.unwrap();
    let b = meter.admit(parallel(), NOW).await.unwrap();
    let refusal = meter.admit(parallel(), NOW).await.unwrap_err();
    assert_eq!((refusal.used, refusal.retry_after, refusal.resets_at_ms), (2, None, None));
    let ttl = redis.pttl(&counter).await;
    assert!((590_000..=600_000).contains(&ttl), "10 minutes, refreshed by each admission: {ttl} ms");
    a.grant.settle(10, 10);
    redis.until(&counter, Some(1)).await;
    drop(b);
    redis.until(&counter, Some(0)).await;
    assert!(redis.pttl(&counter).await > 0, "a release keeps the expiry");
    redis.clean().await;
}

#[tokio::test]
async fn a_settlement_of_an_expired_counter_does_not_recreate_it() {
    let Some(redis) = Fixture::new("a_settlement_of_an_expired_counter_does_not_recreate_it").await else {
        return;
    };
    let meter = redis.meter(Arc::new(NothingSpent)).await;
    let counter = redis.key("parallel", &key(), 0);
    let held = meter.admit(vec![charge(key(), MeterKind::Parallel, 2, 1)], NOW).await.unwrap();
    let _: () = redis::cmd("DEL").arg(&counter).query_async(&mut redis.connection.clone()).await.unwrap();
    drop(held);
    // The release is applied (or skipped) in the background; a later admission's settlement
    // passing through the same task shows that it has been handled.
    let tokens = redis.key("tokens", &key(), MINUTE);
    drop(meter.admit(vec![charge(key(), MeterKind::Tokens, 100, 5)], NOW).await.unwrap());
    redis.until(&tokens, Some(0)).await;
    assert_eq!(redis.get(&counter).await, None, "not recreated at -1 with no expiry");
    redis.clean().await;
}

#[tokio::test]
async fn budgets_start_from_the_ledger_once_per_counter_and_start_over_with_the_period() {
    let Some(redis) =
        Fixture::new("budgets_start_from_the_ledger_once_per_counter_and_start_over_with_the_period").await
    else {
        return;
    };
    // Two replicas whose ledgers disagree (one has not seen the latest spend yet): the first to
    // create the counter sets its base, and the other counts on from it.
    let a = redis.meter(Arc::new(Spent(900))).await;
    let b = redis.meter(Arc::new(Spent(0))).await;
    let daily = MeterKind::Budget(Period::Daily);
    let budget = |amount| vec![charge(team(), daily, 1_000, amount)];
    let counter = redis.key("budget-daily", &team(), DEC_1);
    let first = a.admit(budget(50), NOW).await.unwrap();
    assert_eq!(first.standings[0].used, 950);
    let second = b.admit(budget(60), NOW).await.unwrap();
    assert_eq!(second.standings[0].used, 1_010);
    let refusal = b.admit(budget(1), NOW).await.unwrap_err();
    assert_eq!((refusal.used, refusal.resets_at_ms), (1_010, Some(DEC_1 + 86_400_000)));
    let ttl = redis.pttl(&counter).await;
    let expected = DEC_1 + 2 * 86_400_000 - NOW;
    assert!((expected - 10_000..=expected).contains(&ttl), "a day after the period ends: {ttl} ms");
    first.grant.settle(0, 20);
    second.grant.settle(0, 100);
    redis.until(&counter, Some(1_020)).await;
    let tomorrow = b.admit(budget(5), DEC_1 + 86_400_000).await.unwrap();
    assert_eq!(tomorrow.standings[0].used, 5, "a new day starts over, from b's ledger");
    redis.clean().await;
}

#[tokio::test]
async fn a_budget_without_period_has_no_expiry() {
    let Some(redis) = Fixture::new("a_budget_without_period_has_no_expiry").await else { return };
    let meter = redis.meter(Arc::new(NothingSpent)).await;
    let _held = meter.admit(vec![charge(team(), MeterKind::Budget(Period::None), 10, 4)], NOW).await.unwrap();
    let counter = redis.key("budget-none", &team(), 0);
    assert_eq!(redis.get(&counter).await, Some(4));
    assert_eq!(redis.pttl(&counter).await, -1);
    redis.clean().await;
}

#[tokio::test]
async fn an_admission_is_all_or_nothing() {
    let Some(redis) = Fixture::new("an_admission_is_all_or_nothing").await else { return };
    let meter = redis.meter(Arc::new(NothingSpent)).await;
    let charges = || {
        vec![
            charge(key(), MeterKind::Requests, 10, 1),
            charge(key(), MeterKind::Tokens, 1_000, 100),
            charge(team(), MeterKind::Requests, 1, 1),
        ]
    };
    let _first = meter.admit(charges(), NOW).await.unwrap();
    let refusal = meter.admit(charges(), NOW).await.unwrap_err();
    assert_eq!((refusal.scope, refusal.kind), (team(), MeterKind::Requests));
    assert_eq!(redis.get(&redis.key("requests", &key(), MINUTE)).await, Some(1));
    assert_eq!(redis.get(&redis.key("tokens", &key(), MINUTE)).await, Some(100));
    redis.clean().await;
}

#[tokio::test]
async fn an_admission_redis_cannot_count_is_counted_in_memory() {
    let Some(redis) = Fixture::new("an_admission_redis_cannot_count_is_counted_in_memory").await else {
        return;
    };
    let meter = redis.meter(Arc::new(NothingSpent)).await;
    // A counter that holds a hash makes the script fail, as an outage would, for this test only.
    let counter = redis.key("requests", &key(), MINUTE);
    let _: () = redis::cmd("HSET")
        .arg(&counter)
        .arg("f")
        .arg(1)
        .query_async(&mut redis.connection.clone())
        .await
        .unwrap();
    let rpm = || vec![charge(key(), MeterKind::Requests, 2, 1)];
    assert_eq!(meter.admit(rpm(), NOW).await.unwrap().standings[0].used, 1);
    assert_eq!(meter.admit(rpm(), NOW).await.unwrap().standings[0].used, 2);
    assert_eq!(meter.admit(rpm(), NOW).await.unwrap_err().used, 2, "the limit holds on this replica");
    redis.clean().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_share_one_rpm_limit() {
    let Some(redis) = Fixture::new("two_replicas_share_one_rpm_limit").await else { return };
    let replicas = [redis.meter(Arc::new(NothingSpent)).await, redis.meter(Arc::new(NothingSpent)).await];
    let tasks: Vec<_> = (0..24)
        .map(|i| {
            let meter = replicas[i % 2].clone();
            tokio::spawn(async move {
                meter.admit(vec![charge(key(), MeterKind::Requests, 10, 1)], NOW).await.is_ok()
            })
        })
        .collect();
    let mut admitted = 0;
    for task in tasks {
        admitted += usize::from(task.await.unwrap());
    }
    assert_eq!(admitted, 10);
    assert_eq!(redis.get(&redis.key("requests", &key(), MINUTE)).await, Some(10));
    redis.clean().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_share_one_budget() {
    let Some(redis) = Fixture::new("two_replicas_share_one_budget").await else { return };
    let replicas = [redis.meter(Arc::new(NothingSpent)).await, redis.meter(Arc::new(NothingSpent)).await];
    let tasks: Vec<_> = (0..50)
        .map(|i| {
            let meter = replicas[i % 2].clone();
            tokio::spawn(async move {
                let charges = vec![charge(team(), MeterKind::Budget(Period::Monthly), 70, 7)];
                meter.admit(charges, NOW).await.ok()
            })
        })
        .collect();
    let mut grants = Vec::new();
    for task in tasks {
        grants.extend(task.await.unwrap());
    }
    assert_eq!(grants.len(), 10, "10 reservations of 7 fit in 70, across both replicas");
    let counter = redis.key("budget-monthly", &team(), DEC_1);
    assert_eq!(redis.get(&counter).await, Some(70));
    // Each settles at 3: the shared counter ends at 30, whichever replica settled.
    for admitted in grants {
        admitted.grant.settle(0, 3);
    }
    redis.until(&counter, Some(30)).await;
    redis.clean().await;
}
