//! The real binary under load gets SIGTERM: it finishes the requests in flight, writes every
//! spend record it still holds, and exits; the ledger then has one record per request the
//! clients saw answered, and its tokens are exactly what the mock provider reported.

#![allow(clippy::unwrap_used, reason = "a failed unwrap is a failed test, with its message")]

mod support;

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use serde_json::json;
use support::{Replica, client, unique_path};
use switchyard_accounting::store::{GroupBy, ReportQuery, Store};
use switchyard_testkit::{MockConfig, MockServer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_loses_no_spend_record() {
    let mock = MockServer::start(MockConfig {
        delay: Duration::from_millis(40),
        ttft: Duration::from_millis(20),
        chunk_delay: Duration::from_millis(10),
        ..MockConfig::default()
    })
    .await
    .unwrap();
    let database = unique_path("durability.db");
    let url = format!("sqlite://{}", database.display());
    // A long flush interval: when SIGTERM arrives, most records are still queued in memory.
    let yaml = format!(
        "database:\n  url: '{url}'\naccounting:\n  ledger_flush_interval_ms: 60000\n  ledger_batch_size: 100000\n\
         models:\n  - name: m\n    deployments:\n      - {{provider: openai, model: up, api_base: '{}', api_key: sk-upstream-0123456789, price: {{input: 1, output: 2}}}}\n",
        mock.url()
    );
    let gateway = Replica::start("durability", &yaml).await;

    let answered = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for c in 0..16 {
        let (answered, stop, url) =
            (Arc::clone(&answered), Arc::clone(&stop), gateway.url("/v1/chat/completions"));
        clients.push(tokio::spawn(async move {
            let client = client();
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) && n < 10_000 {
                n += 1;
                let stream = (c + n).is_multiple_of(3);
                let body = json!({"model": "m", "stream": stream, "messages": [{"role": "user", "content": format!("hello {c} {n}")}]});
                let Ok(response) = client.post(&url).json(&body).send().await else { break };
                if response.status() != 200 {
                    break;
                }
                // A stream counts once its body is read to the end.
                if response.text().await.is_ok_and(|t| !stream || t.contains("[DONE]")) {
                    answered.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (status, log) = gateway.terminate().await;
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        let _ = tokio::time::timeout(Duration::from_secs(10), client).await;
    }
    assert!(status.success(), "switchyard exited with {status}; its log:\n{log}");
    assert!(log.contains("spend ledger closed: every record written"), "{log}");

    let answered = answered.load(Ordering::Relaxed);
    assert!(answered > 50, "the load ran: {answered} answers");
    let store = Store::connect(&url).await.unwrap();
    let rows = store
        .spend_report(ReportQuery { group_by: vec![GroupBy::Model], ..ReportQuery::default() })
        .await
        .unwrap();
    let requests: u64 = rows.iter().map(|r| r.requests).sum();
    let tokens: u64 = rows.iter().map(|r| r.input_tokens + r.output_tokens).sum();
    let stats = mock.stats();
    assert_eq!(requests, stats.chat_completions, "one record for every request the provider answered");
    assert!(
        requests >= answered,
        "every answer the clients saw is recorded ({requests} records, {answered} answers)"
    );
    assert_eq!(
        tokens,
        stats.prompt_tokens + stats.completion_tokens,
        "the ledger's tokens are the provider's"
    );
    let errors: u64 = rows.iter().map(|r| r.errors).sum();
    assert_eq!(errors, 0, "no request failed");
    store.close().await;
    let _ = std::fs::remove_file(&database);
}
