//! Two real gateway processes share one PostgreSQL and one Redis: a key created through one
//! works on the other, and one rpm limit and one budget hold between them (the combined count
//! of admitted requests proves it). Skipped, saying so, without `SWITCHYARD_TEST_POSTGRES_URL`
//! and `SWITCHYARD_TEST_REDIS_URL` (`.ci/run` sets both).

#![allow(clippy::unwrap_used, reason = "a failed unwrap is a failed test, with its message")]

mod support;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use support::{Replica, client, service_url};
use switchyard_accounting::store::{ReportQuery, Store};
use switchyard_testkit::{MockConfig, MockServer};

const MASTER: &str = "sk-master-replicas";

async fn two_replicas(test: &str, mock: &MockServer) -> Option<(Replica, Replica, String)> {
    let postgres = service_url("SWITCHYARD_TEST_POSTGRES_URL", test, "PostgreSQL")?;
    let redis = service_url("SWITCHYARD_TEST_REDIS_URL", test, "Redis")?;
    let yaml = format!(
        "server:\n  master_key: {MASTER}\ndatabase:\n  url: '{postgres}'\nredis:\n  url: '{redis}'\n  sync_interval_ms: 50\n\
         accounting:\n  ledger_flush_interval_ms: 20\n\
         models:\n  - name: m\n    deployments:\n      - {{provider: openai, model: up, api_base: '{}', api_key: sk-upstream-0123456789, price: {{input: 1000, output: 1000}}}}\n",
        mock.url()
    );
    let a = Replica::start(&format!("{test}-a"), &yaml).await;
    let b = Replica::start(&format!("{test}-b"), &yaml).await;
    Some((a, b, postgres))
}

async fn create_key(replica: &Replica, limits: Value) -> (String, String) {
    let response = client()
        .post(replica.url("/admin/keys"))
        .bearer_auth(MASTER)
        .json(&json!({"limits": limits}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let created: Value = response.json().await.unwrap();
    (created["id"].as_str().unwrap().to_owned(), created["key"].as_str().unwrap().to_owned())
}

async fn chat(replica: &Replica, key: &str) -> reqwest::Response {
    let body = json!({"model": "m", "max_tokens": 4, "messages": [{"role": "user", "content": "hi"}]});
    client().post(replica.url("/v1/chat/completions")).bearer_auth(key).json(&body).send().await.unwrap()
}

/// Waits until at least `need` is left in the current calendar minute (rpm windows are calendar
/// minutes, shared by replicas).
async fn within_one_minute(need: Duration) {
    let into = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() % 60_000;
    let left = Duration::from_millis(60_000 - into as u64);
    if left < need {
        tokio::time::sleep(left + Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_enforce_one_rpm_limit_and_one_budget() {
    let mock = MockServer::start(MockConfig::default()).await.unwrap();
    let Some((a, b, postgres)) = two_replicas("replicas::rpm_and_budget", &mock).await else { return };

    // One rpm limit: a key made on A, used on both.
    within_one_minute(Duration::from_secs(15)).await;
    let (rpm_key_id, rpm_key) = create_key(&a, json!({"rpm": 10})).await;
    let mut admitted = 0;
    for round in 0..12 {
        for replica in [&a, &b] {
            let response = chat(replica, &rpm_key).await;
            match response.status().as_u16() {
                200 => admitted += 1,
                429 => {}
                other => panic!("round {round}: unexpected {other}: {}", response.text().await.unwrap()),
            }
        }
    }
    assert_eq!(admitted, 10, "24 requests over two replicas against one rpm of 10");

    // One budget: what one request costs, then a budget for five, spent from both replicas.
    let (_, probe) = create_key(&a, json!({})).await;
    let one: f64 =
        chat(&a, &probe).await.headers()["x-switchyard-cost-usd"].to_str().unwrap().parse().unwrap();
    let (budget_key_id, budget_key) = create_key(&b, json!({"budget_usd": one * 5.0})).await;
    let mut spent = 0;
    for n in 0..12 {
        let replica = if n % 2 == 0 { &a } else { &b };
        let response = chat(replica, &budget_key).await;
        if response.status() == 200 {
            spent += 1;
        } else {
            assert_eq!(response.status(), 429);
            let error: Value = response.json().await.unwrap();
            assert_eq!(error["error"]["code"], "budget_exceeded", "{error}");
        }
        // Settling reaches Redis from a background task; give it a moment before the next one.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(spent, 5, "two replicas share one budget for five requests");

    // Both replicas wrote their records to the one ledger.
    let store = Store::connect(&postgres).await.unwrap();
    let (mut recorded, mut served) = (0, 0);
    for _ in 0..100 {
        let rpm_rows = store
            .spend_report(ReportQuery { key_id: Some(rpm_key_id.clone()), ..ReportQuery::default() })
            .await
            .unwrap();
        let budget_rows = store
            .spend_report(ReportQuery { key_id: Some(budget_key_id.clone()), ..ReportQuery::default() })
            .await
            .unwrap();
        let rows = || rpm_rows.iter().chain(&budget_rows);
        recorded = rows().map(|r| r.requests).sum::<u64>();
        served = recorded - rows().map(|r| r.errors).sum::<u64>();
        if recorded == 36 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(recorded, 36, "one spend record per request, refused ones included, from both replicas");
    assert_eq!(served, 15, "of which the admitted ones succeeded");
    store.close().await;
    let (status, log) = a.terminate().await;
    assert!(status.success(), "{log}");
    let (status, log) = b.terminate().await;
    assert!(status.success(), "{log}");
}
