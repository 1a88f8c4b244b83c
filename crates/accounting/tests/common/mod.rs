//! Shared test helpers: one store per backend (SQLite file, SQLite memory, PostgreSQL when
//! `SWITCHYARD_TEST_POSTGRES_URL` is set), unique ids, and spend records.

#![allow(dead_code, unreachable_pub)] // Reason: each test binary uses a different part of this module.

use std::{io::Write as _, path::PathBuf};

use switchyard_accounting::{
    model::{SpendRecord, Usage},
    store::Store,
};

/// The environment variable naming the test PostgreSQL database.
pub const PG_ENV: &str = "SWITCHYARD_TEST_POSTGRES_URL";

/// A random suffix, so that rows of this run are told apart in a shared PostgreSQL.
pub fn unique() -> String {
    let alphabet: Vec<char> = ('a'..='z').chain('0'..='9').collect();
    (0..12).map(|_| alphabet[fastrand::usize(..alphabet.len())]).collect()
}

/// Deletes a test's SQLite files when the test ends.
pub struct TempDb(pub PathBuf);

impl TempDb {
    /// A fresh, unique database path under the temp directory.
    pub fn new(test: &str) -> Self {
        TempDb(std::env::temp_dir().join(format!("switchyard-accounting-{test}-{}.db", unique())))
    }

    /// Its `sqlite://` URL.
    pub fn url(&self) -> String {
        format!("sqlite://{}", self.0.display())
    }
}

impl Drop for TempDb {
    fn drop(&mut self) {
        for suffix in ["", "-wal", "-shm"] {
            let mut path = self.0.clone().into_os_string();
            path.push(suffix);
            let _ = std::fs::remove_file(path);
        }
    }
}

/// The PostgreSQL URL, or a note on stderr that the PostgreSQL run of `test` is skipped.
pub fn postgres_url(test: &str) -> Option<String> {
    match std::env::var(PG_ENV) {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            let _ = writeln!(
                std::io::stderr(),
                "{test}: skipped: {PG_ENV} is not set (the PostgreSQL run; set it to e.g. \
                 postgres://postgres@127.0.0.1:5432/test; the SQLite runs went ahead)"
            );
            None
        }
    }
}

/// A store on every backend available: a SQLite file, SQLite in memory, and PostgreSQL when
/// configured. Keep the returned [`TempDb`] alive as long as the stores.
pub async fn backends(test: &str) -> (Vec<(&'static str, Store)>, TempDb) {
    let file = TempDb::new(test);
    let mut stores = vec![
        ("sqlite-file", Store::connect(&file.url()).await.expect("open a SQLite file")),
        ("sqlite-memory", Store::connect("sqlite::memory:").await.expect("open SQLite in memory")),
    ];
    if let Some(url) = postgres_url(test) {
        stores.push(("postgres", Store::connect(&url).await.expect("open PostgreSQL")));
    }
    (stores, file)
}

/// A spend record with every field set from `i`; its key, team, user and model ids carry `run`
/// (team `team_{run}`), so that a shared database can be filtered to this run.
pub fn record(i: u64, run: &str, at: i64) -> SpendRecord {
    SpendRecord {
        request_id: format!("req-{run}-{}", i % 50),
        at,
        key_id: Some(format!("key_{run}_{}", i % 7)),
        team_id: Some(format!("team_{run}")),
        user_id: if i.is_multiple_of(3) { None } else { Some(format!("user_{run}_{}", i % 3)) },
        end_user: Some(format!("end-{}", i % 4)),
        model: format!("model-{run}-{}", i % 5),
        deployment: if i.is_multiple_of(6) { None } else { Some(format!("openai/gpt-{}", i % 2)) },
        provider: Some("openai".to_owned()),
        usage: Usage {
            input: 100 + i,
            output: 10 + i % 13,
            cached_input: i % 11,
            cache_creation: i % 17,
            reasoning: i % 5,
        },
        usage_estimated: i.is_multiple_of(9),
        // Costs that are not round in binary, so that summing dollars as floats would drift.
        cost_usd: (i % 97) as f64 * 0.000_123_4 + 0.000_000_7,
        cache_hit: i.is_multiple_of(10),
        cost_saved_usd: if i.is_multiple_of(10) { 0.01 } else { 0.0 },
        latency_ms: 12.5 + i as f64,
        ttft_ms: if i.is_multiple_of(2) { Some(3.25) } else { None },
        status: if i.is_multiple_of(20) { 429 } else { 200 },
        error: if i.is_multiple_of(20) { Some("rate_limited".to_owned()) } else { None },
        tags: vec![format!("t{}", i % 3)],
    }
}
