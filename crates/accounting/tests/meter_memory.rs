//! The in-memory meter against its contract (`meter`'s module doc), with explicit times.

#![allow(clippy::unwrap_used, reason = "a failed unwrap is a failed test, with its message")]

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use futures_util::future::BoxFuture;
use switchyard_accounting::{
    meter::{Charge, Meter, MeterKind, NothingSpent, Refusal, SpentSource},
    model::{Nanos, Period, Scope},
};

/// 2026-12-01T00:00:00Z, a Tuesday and the first of a month.
const DEC_1: i64 = 1_796_083_200_000;
/// 10 s into a minute of that day.
const NOW: i64 = DEC_1 + 3_600_000 + 10_000;

fn key() -> Scope {
    Scope::Key("key_a".into())
}

fn team() -> Scope {
    Scope::Team("team_a".into())
}

fn charge(scope: Scope, kind: MeterKind, limit: i64, amount: i64) -> Charge {
    Charge { scope, kind, limit, amount }
}

fn meter() -> Meter {
    Meter::in_memory(Arc::new(NothingSpent))
}

async fn refused(meter: &Meter, charges: Vec<Charge>, now_ms: i64) -> Refusal {
    meter.admit(charges, now_ms).await.map(|a| a.standings).unwrap_err()
}

#[tokio::test]
async fn requests_admit_up_to_the_limit_then_refuse_until_the_next_minute() {
    let meter = meter();
    let rpm = || vec![charge(key(), MeterKind::Requests, 3, 1)];
    for expected in 1..=3 {
        let admitted = meter.admit(rpm(), NOW).await.unwrap();
        assert_eq!(admitted.standings[0].used, expected);
        assert_eq!(admitted.standings[0].resets_at_ms, Some(NOW - 10_000 + 60_000));
        admitted.grant.settle(0, 0);
    }
    let refusal = refused(&meter, rpm(), NOW + 5_000).await;
    assert_eq!(
        (refusal.scope.clone(), refusal.kind, refusal.limit, refusal.used),
        (key(), MeterKind::Requests, 3, 3)
    );
    assert_eq!(refusal.retry_after, Some(Duration::from_secs(45)), "until the next calendar minute");
    assert_eq!(refusal.resets_at_ms, Some(NOW - 10_000 + 60_000));
    assert_eq!(refusal.to_string(), "key `key_a` reached its limit of 3 requests per minute; retry in 45 s");
    let next_minute = NOW - 10_000 + 60_000;
    assert_eq!(
        meter.admit(rpm(), next_minute).await.unwrap().standings[0].used,
        1,
        "a new minute starts over"
    );
}

#[tokio::test]
async fn requests_need_room_for_their_whole_amount() {
    let meter = meter();
    let _first = meter.admit(vec![charge(key(), MeterKind::Requests, 3, 2)], NOW).await.unwrap();
    let refusal = refused(&meter, vec![charge(key(), MeterKind::Requests, 3, 2)], NOW).await;
    assert_eq!(refusal.used, 2);
}

#[tokio::test]
async fn tokens_admit_while_room_is_left_and_reserve_the_estimate() {
    let meter = meter();
    let tpm = |amount| vec![charge(key(), MeterKind::Tokens, 1_000, amount)];
    let first = meter.admit(tpm(900), NOW).await.unwrap();
    assert_eq!(first.standings[0].used, 900);
    // 100 tokens are left: a request estimated at 500 is still admitted, and goes over.
    let second = meter.admit(tpm(500), NOW).await.unwrap();
    assert_eq!(second.standings[0].used, 1_400);
    let refusal = refused(&meter, tpm(1), NOW + 20_000).await;
    assert_eq!((refusal.kind, refusal.limit, refusal.used), (MeterKind::Tokens, 1_000, 1_400));
    assert_eq!(refusal.retry_after, Some(Duration::from_secs(30)));
    // Settling below the estimates gives room back in the same minute.
    first.grant.settle(400, 0);
    second.grant.settle(100, 0);
    let third = meter.admit(tpm(10), NOW + 20_000).await.unwrap();
    assert_eq!(third.standings[0].used, 510, "400 + 100 settled, + 10 reserved");
    // Settling above the estimate counts the real use.
    third.grant.settle(600, 0);
    assert_eq!(refused(&meter, tpm(1), NOW + 20_000).await.used, 1_100);
}

#[tokio::test]
async fn a_settlement_goes_to_the_minute_it_was_charged_in() {
    let meter = meter();
    let tpm = |amount| vec![charge(key(), MeterKind::Tokens, 1_000, amount)];
    let early = meter.admit(tpm(500), NOW).await.unwrap();
    let next_minute = NOW + 60_000;
    let _late = meter.admit(tpm(300), next_minute).await.unwrap();
    early.grant.settle(900, 0);
    let standing = meter.admit(tpm(0), next_minute).await.unwrap().standings;
    assert_eq!(standing[0].used, 300, "the earlier minute's settlement does not count in this one");
}

#[tokio::test]
async fn parallel_counts_requests_in_flight_and_dropping_a_grant_releases_it() {
    let meter = meter();
    let parallel = || vec![charge(key(), MeterKind::Parallel, 2, 1)];
    let a = meter.admit(parallel(), NOW).await.unwrap();
    let b = meter.admit(parallel(), NOW).await.unwrap();
    assert_eq!(b.standings[0].used, 2);
    assert_eq!(b.standings[0].resets_at_ms, None);
    let refusal = refused(&meter, parallel(), NOW + 120_000).await;
    assert_eq!(
        (refusal.kind, refusal.used, refusal.retry_after, refusal.resets_at_ms),
        (MeterKind::Parallel, 2, None, None)
    );
    assert_eq!(
        refusal.to_string(),
        "key `key_a` has 2 requests in flight, its limit is 2; retry when one of them ends"
    );
    a.grant.settle(123, 456);
    let c = meter.admit(parallel(), NOW).await.unwrap();
    assert_eq!(c.standings[0].used, 2, "a settled request is no longer in flight");
    drop(b);
    drop(c);
    assert_eq!(meter.admit(parallel(), NOW).await.unwrap().standings[0].used, 1, "dropped grants release");
}

#[tokio::test]
async fn budgets_reserve_settle_and_start_over_with_the_period() {
    let meter = meter();
    let daily = MeterKind::Budget(Period::Daily);
    let budget = |amount| vec![charge(team(), daily, 1_000, amount)];
    let first = meter.admit(budget(600), NOW).await.unwrap();
    assert_eq!(first.standings[0].resets_at_ms, Some(DEC_1 + 86_400_000));
    let second = meter.admit(budget(600), NOW).await.unwrap();
    assert_eq!(second.standings[0].used, 1_200, "admitted with room left, then over by its reservation");
    let refusal = refused(&meter, budget(1), NOW).await;
    assert_eq!((refusal.kind, refusal.used, refusal.resets_at_ms), (daily, 1_200, Some(DEC_1 + 86_400_000)));
    assert_eq!(refusal.retry_after, Some(Duration::from_millis((DEC_1 + 86_400_000 - NOW) as u64)));
    assert!(refusal.to_string().ends_with("; it resets at 2026-12-02T00:00:00Z"), "{refusal}");
    first.grant.settle(0, 100); // cost less than reserved
    second.grant.settle(0, 700); // cost more than reserved
    assert_eq!(meter.admit(budget(50), NOW).await.unwrap().standings[0].used, 850);
    let tomorrow = DEC_1 + 86_400_000;
    assert_eq!(
        meter.admit(budget(50), tomorrow).await.unwrap().standings[0].used,
        50,
        "a new day starts over"
    );
}

#[tokio::test]
async fn a_budget_without_period_never_resets() {
    let meter = meter();
    let ten_dollars = 10_000_000_000;
    let lifetime = || vec![charge(team(), MeterKind::Budget(Period::None), ten_dollars, 10_250_000_000)];
    let _spent = meter.admit(lifetime(), NOW).await.unwrap();
    let refusal = refused(&meter, lifetime(), NOW + 400 * 86_400_000).await;
    assert_eq!((refusal.used, refusal.retry_after, refusal.resets_at_ms), (10_250_000_000, None, None));
    assert_eq!(
        refusal.to_string(),
        "team `team_a` reached its budget of $10.00 ($10.25 spent); it does not reset: ask for a higher budget"
    );
}

#[tokio::test]
async fn an_admission_is_all_or_nothing() {
    let meter = meter();
    let charges = |team_limit| {
        vec![
            charge(key(), MeterKind::Requests, 10, 1),
            charge(key(), MeterKind::Parallel, 10, 1),
            charge(key(), MeterKind::Tokens, 1_000, 100),
            charge(team(), MeterKind::Requests, team_limit, 1),
        ]
    };
    let admitted = meter.admit(charges(1), NOW).await.unwrap();
    let used: Vec<i64> = admitted.standings.iter().map(|s| s.used).collect();
    assert_eq!(used, [1, 1, 100, 1]);
    let refusal = refused(&meter, charges(1), NOW).await;
    assert_eq!(
        (refusal.scope.clone(), refusal.kind),
        (team(), MeterKind::Requests),
        "the team's limit refused"
    );
    // The key's counters did not move: a new admission finds them as the first left them.
    let used: Vec<i64> =
        meter.admit(charges(5), NOW).await.unwrap().standings.iter().map(|s| s.used).collect();
    assert_eq!(used, [2, 2, 200, 2]);
}

#[tokio::test]
async fn a_counter_charged_twice_in_one_admission_counts_both() {
    let meter = meter();
    let twice = vec![charge(key(), MeterKind::Requests, 1, 1), charge(key(), MeterKind::Requests, 1, 1)];
    let refusal = refused(&meter, twice, NOW).await;
    assert_eq!((refusal.used, refusal.limit), (1, 1));
    assert_eq!(
        meter.admit(vec![charge(key(), MeterKind::Requests, 1, 1)], NOW).await.unwrap().standings[0].used,
        1
    );
}

#[tokio::test]
async fn dropping_a_grant_gives_back_its_reservations_but_not_its_request() {
    let meter = meter();
    let charges = || {
        vec![
            charge(key(), MeterKind::Requests, 10, 1),
            charge(key(), MeterKind::Tokens, 1_000, 300),
            charge(key(), MeterKind::Budget(Period::Monthly), 1_000, 400),
        ]
    };
    drop(meter.admit(charges(), NOW).await.unwrap());
    let used: Vec<i64> =
        meter.admit(charges(), NOW).await.unwrap().standings.iter().map(|s| s.used).collect();
    assert_eq!(used, [2, 300, 400]);
}

/// What the ledger says was spent, and how often it was asked.
struct Ledger {
    spent: Result<Nanos, String>,
    asked: AtomicUsize,
}

impl SpentSource for Ledger {
    fn spent_since(&self, scope: &Scope, since_ms: i64) -> BoxFuture<'_, Result<Nanos, String>> {
        assert_eq!(scope, &team());
        assert_eq!(since_ms, Period::Monthly.start_ms(NOW), "asked since the period's start");
        self.asked.fetch_add(1, Ordering::SeqCst);
        Box::pin(std::future::ready(self.spent.clone()))
    }
}

#[tokio::test]
async fn a_budget_starts_from_what_the_ledger_says_was_spent_and_asks_once_per_period() {
    let ledger = Arc::new(Ledger { spent: Ok(900), asked: AtomicUsize::new(0) });
    let meter = Meter::in_memory(ledger.clone());
    let monthly = || vec![charge(team(), MeterKind::Budget(Period::Monthly), 1_000, 50)];
    let first = meter.admit(monthly(), NOW).await.unwrap();
    assert_eq!(first.standings[0].used, 950);
    let second = meter.admit(monthly(), NOW + 1).await.unwrap();
    assert_eq!(second.standings[0].used, 1_000);
    assert_eq!(refused(&meter, monthly(), NOW + 2).await.used, 1_000);
    assert_eq!(ledger.asked.load(Ordering::SeqCst), 1, "the answer is kept for the period");
}

#[tokio::test]
async fn a_failing_ledger_counts_as_nothing_spent() {
    let ledger = Arc::new(Ledger { spent: Err("database is down".into()), asked: AtomicUsize::new(0) });
    let meter = Meter::in_memory(ledger);
    let admitted =
        meter.admit(vec![charge(team(), MeterKind::Budget(Period::Monthly), 1_000, 50)], NOW).await;
    assert_eq!(admitted.unwrap().standings[0].used, 50);
}

#[tokio::test]
async fn no_charges_admit_at_once() {
    let admitted = meter().admit(Vec::new(), NOW).await.unwrap();
    assert!(admitted.standings.is_empty());
    admitted.grant.settle(10, 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_admissions_against_a_budget_admit_exactly_what_fits() {
    let meter = meter();
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let meter = meter.clone();
            tokio::spawn(async move {
                let charges = vec![charge(team(), MeterKind::Budget(Period::Daily), 10 * 7, 7)];
                meter.admit(charges, NOW).await.ok()
            })
        })
        .collect();
    let mut grants = Vec::new();
    for task in tasks {
        grants.extend(task.await.unwrap());
    }
    assert_eq!(grants.len(), 10, "10 reservations of 7 fit in 70");
    let mut used: Vec<i64> = grants.iter().map(|g| g.standings[0].used).collect();
    used.sort_unstable();
    assert_eq!(used, (1..=10).map(|n| n * 7).collect::<Vec<_>>(), "each saw the one before it");
}
