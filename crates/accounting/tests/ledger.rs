//! The batching ledger writer: nothing lost under concurrency, flushes on its interval, retries
//! through a failing database, refuses records after close.

mod common;

use std::time::{Duration, Instant};

use common::{TempDb, backends, record, unique};
use switchyard_accounting::{
    ledger::{Ledger, LedgerConfig, LedgerStats, MAX_WAITING},
    model::{Nanos, Scope, to_nanos},
    store::{ReportQuery, Store},
};

async fn requests_of(store: &Store, team: &str) -> u64 {
    let query = ReportQuery { team_id: Some(team.to_owned()), ..ReportQuery::default() };
    store.spend_report(query).await.expect("spend report").first().map_or(0, |row| row.requests)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_records_from_many_tasks_are_all_written() {
    let (stores, _file) = backends("ten_thousand_records_from_many_tasks").await;
    for (backend, store) in stores {
        let run = unique();
        let ledger = Ledger::start(store.clone(), LedgerConfig::default());
        let mut tasks = Vec::new();
        for t in 0..8u64 {
            let handle = ledger.handle();
            let run = run.clone();
            tasks.push(tokio::spawn(async move {
                let mut nanos: Nanos = 0;
                for i in 0..1250u64 {
                    let r = record(t * 1250 + i, &run, 1_700_000_000_000 + i as i64);
                    nanos += to_nanos(r.cost_usd);
                    handle.record(r);
                    if i % 100 == 0 {
                        tokio::task::yield_now().await;
                    }
                }
                nanos
            }));
        }
        let mut expected: Nanos = 0;
        for task in tasks {
            expected += task.await.unwrap();
        }
        let began = Instant::now();
        // Bounded: a ledger whose writes keep failing retries forever, and the test must say so.
        let stats = tokio::time::timeout(std::time::Duration::from_secs(60), ledger.close())
            .await
            .unwrap_or_else(|_| panic!("{backend}: the ledger did not write its records within 60 s"));
        eprintln!("{backend}: close() wrote the rest in {:?}", began.elapsed());
        assert_eq!(stats, LedgerStats { written: 10_000, dropped: 0 }, "{backend}");
        let team = format!("team_{run}");
        assert_eq!(requests_of(&store, &team).await, 10_000, "{backend}");
        assert_eq!(store.spent_since(&Scope::Team(team), 0).await.unwrap(), expected, "{backend}");
    }
}

#[tokio::test]
async fn a_partial_batch_is_written_after_the_flush_interval() {
    let (stores, _file) = backends("a_partial_batch_is_written_after_the_flush_interval").await;
    for (backend, store) in stores {
        let run = unique();
        let config = LedgerConfig { batch_size: 256, flush_interval: Duration::from_millis(50) };
        let ledger = Ledger::start(store.clone(), config);
        let handle = ledger.handle();
        for i in 0..5 {
            handle.record(record(i, &run, 1_000 + i as i64));
        }
        // Without close: the writer must flush the 5 records on its own, well within 5 s.
        let deadline = Instant::now() + Duration::from_secs(5);
        while handle.stats().written < 5 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(handle.stats().written, 5, "{backend}: not flushed");
        assert_eq!(requests_of(&store, &format!("team_{run}")).await, 5);

        // After close, records are refused and counted.
        // Bounded: a ledger whose writes keep failing retries forever, and the test must say so.
        let stats = tokio::time::timeout(std::time::Duration::from_secs(60), ledger.close())
            .await
            .unwrap_or_else(|_| panic!("{backend}: the ledger did not write its records within 60 s"));
        assert_eq!(stats, LedgerStats { written: 5, dropped: 0 });
        handle.record(record(9, &run, 2_000));
        assert_eq!(handle.stats(), LedgerStats { written: 5, dropped: 1 }, "{backend}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_writes_are_retried_until_the_database_takes_them() {
    // The table is renamed away under a running ledger by another connection, so every write
    // fails the way a real schema or permission problem fails, then renamed back. Only on a
    // private SQLite file: renaming a shared PostgreSQL table would break parallel tests.
    let file = TempDb::new("retry");
    let store = Store::connect(&file.url()).await.unwrap();
    let admin = sqlx::SqlitePool::connect(&file.url()).await.unwrap();
    sqlx::query("ALTER TABLE spend RENAME TO spend_away").execute(&admin).await.unwrap();

    let run = unique();
    let config = LedgerConfig { batch_size: 100, flush_interval: Duration::from_millis(20) };
    let ledger = Ledger::start(store.clone(), config);
    let handle = ledger.handle();
    for i in 0..1000u64 {
        handle.record(record(i, &run, 1_000 + i as i64));
    }
    // Long enough for several failed attempts (backoff starts at 100 ms).
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(handle.stats(), LedgerStats { written: 0, dropped: 0 }, "nothing can be written yet");

    sqlx::query("ALTER TABLE spend_away RENAME TO spend").execute(&admin).await.unwrap();
    let stats = tokio::time::timeout(Duration::from_secs(30), ledger.close()).await.expect("close finished");
    assert_eq!(stats, LedgerStats { written: 1000, dropped: 0 });
    assert_eq!(requests_of(&store, &format!("team_{run}")).await, 1000);
    admin.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_waiting_limit_the_oldest_records_are_dropped_and_counted() {
    let file = TempDb::new("overflow");
    let store = Store::connect(&file.url()).await.unwrap();
    let admin = sqlx::SqlitePool::connect(&file.url()).await.unwrap();
    sqlx::query("ALTER TABLE spend RENAME TO spend_away").execute(&admin).await.unwrap();

    let run = unique();
    let ledger = Ledger::start(store.clone(), LedgerConfig::default());
    let handle = ledger.handle();
    let over = 50;
    for i in 0..(MAX_WAITING + over) as u64 {
        handle.record(record(i, &run, 1_000 + i as i64));
    }
    // The writer drains the channel while it waits to retry, dropping the oldest past the limit.
    let deadline = Instant::now() + Duration::from_secs(10);
    while handle.stats().dropped < over as u64 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(handle.stats(), LedgerStats { written: 0, dropped: over as u64 });

    sqlx::query("ALTER TABLE spend_away RENAME TO spend").execute(&admin).await.unwrap();
    let stats = tokio::time::timeout(Duration::from_secs(60), ledger.close()).await.expect("close finished");
    assert_eq!(stats, LedgerStats { written: MAX_WAITING as u64, dropped: over as u64 });
    assert_eq!(requests_of(&store, &format!("team_{run}")).await, MAX_WAITING as u64);
    // The oldest went: the earliest record kept is number `over`.
    let report = store
        .spend_report(ReportQuery {
            team_id: Some(format!("team_{run}")),
            to_ms: Some(1_000 + over as i64),
            ..ReportQuery::default()
        })
        .await
        .unwrap();
    assert!(report.is_empty(), "the oldest {over} records should have been dropped: {report:?}");
    admin.close().await;
}
