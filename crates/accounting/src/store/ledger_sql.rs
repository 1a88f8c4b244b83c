//! The spend ledger's SQL: inserting records in batches, summing spend for budgets, reading a
//! request's records back.
//!
//! Money is stored as integer nano-dollars ([`to_nanos`], rounded up so nothing is free), so that
//! sums are exact on both backends; [`SpendRecord::cost_usd`] reads back as `to_usd(cost_nanos)`.

use sqlx::{Row, any::AnyRow};

use super::{Backend, Store, StoreError, to_i64, to_json, to_u64};
use crate::model::{Nanos, Scope, SpendRecord, Usage, to_nanos, to_usd};

/// The `spend` columns, in binding and reading order.
const SPEND_COLUMNS: &str = "id, request_id, at, key_id, team_id, user_id, end_user, model, deployment, provider, \
     input_tokens, output_tokens, cached_input_tokens, cache_creation_tokens, reasoning_tokens, usage_estimated, \
     cost_nanos, cache_hit, cost_saved_nanos, latency_ms, ttft_ms, status, error, tags";
const PARAMS_PER_ROW: usize = 24;

/// The most rows per INSERT statement: 64 × 24 = 1,536 parameters. A batch is written as
/// statements of 64, 32, 16, 8, 4, 2 and 1 rows (its size in binary), so that a SQLite
/// connection prepares at most seven statements once and reuses them: parsing a fresh statement
/// of a few thousand parameters for every batch cost this process more than inserting its rows.
const ROWS_PER_STATEMENT: usize = 64;

/// Characters of randomness in a spend row id (`sp_...`): ≈131 bits, so that ids made by
/// independent replicas never collide.
const SPEND_ID_CHARS: usize = 22;

// === impl Store ===

impl Store {
    /// Writes `records` in one transaction: all of them or, on error, none.
    pub async fn insert_spend(&self, records: &[SpendRecord]) -> Result<(), StoreError> {
        let ids = new_spend_ids(records.len());
        let rows: Vec<(&str, &SpendRecord)> = ids.iter().map(String::as_str).zip(records).collect();
        self.insert_spend_with_ids(&rows).await
    }

    /// Writes records whose row ids the caller chose, in one transaction. A row whose id is
    /// already stored is skipped, so that the ledger can retry a batch whose commit succeeded
    /// but whose acknowledgement was lost without writing it twice.
    pub(crate) async fn insert_spend_with_ids(
        &self,
        rows: &[(&str, &SpendRecord)],
    ) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        let err = self.db_err("insert spend records");
        let mut tx = match self.pool.begin().await {
            Ok(tx) => tx,
            Err(e) => return Err(err(e)),
        };
        let mut rest = rows;
        while !rest.is_empty() {
            let size =
                if rest.len() >= ROWS_PER_STATEMENT { ROWS_PER_STATEMENT } else { 1 << rest.len().ilog2() };
            let (chunk, after) = rest.split_at(size);
            rest = after;
            let sql = insert_sql(self.backend, chunk.len());
            // Prepared once per connection on SQLite, where parsing is this process's work.
            // Not on PostgreSQL: a statement prepared there fixes each parameter's type, and
            // the Any driver types a NULL (a stream's missing `ttft_ms`) differently from a
            // value, so a reused statement would refuse the next batch's binds.
            let persistent = self.backend == Backend::Sqlite;
            let mut query = sqlx::query(&sql).persistent(persistent);
            for (id, r) in chunk {
                query = query
                    .bind(*id)
                    .bind(r.request_id.as_str())
                    .bind(r.at)
                    .bind(r.key_id.as_deref())
                    .bind(r.team_id.as_deref())
                    .bind(r.user_id.as_deref())
                    .bind(r.end_user.as_deref())
                    .bind(r.model.as_str())
                    .bind(r.deployment.as_deref())
                    .bind(r.provider.as_deref())
                    .bind(to_i64(r.usage.input))
                    .bind(to_i64(r.usage.output))
                    .bind(to_i64(r.usage.cached_input))
                    .bind(to_i64(r.usage.cache_creation))
                    .bind(to_i64(r.usage.reasoning))
                    .bind(i64::from(r.usage_estimated))
                    .bind(to_nanos(r.cost_usd))
                    .bind(i64::from(r.cache_hit))
                    .bind(to_nanos(r.cost_saved_usd))
                    .bind(finite(r.latency_ms))
                    .bind(r.ttft_ms.map(finite))
                    .bind(i64::from(r.status))
                    .bind(r.error.as_deref())
                    .bind(to_json(&r.tags));
            }
            if let Err(e) = query.execute(&mut *tx).await {
                // Dropping `tx` rolls the transaction back.
                return Err(err(e));
            }
        }
        tx.commit().await.map_err(self.db_err("commit spend records"))
    }

    /// What `scope` has spent at or after `since_ms` (Unix ms), in nano-dollars: what a budget
    /// meter starts from after a restart.
    pub async fn spent_since(&self, scope: &Scope, since_ms: i64) -> Result<Nanos, StoreError> {
        let column = match scope {
            Scope::Key(_) => "key_id",
            Scope::Team(_) => "team_id",
            Scope::User(_) => "user_id",
            Scope::Model(_) => "model",
        };
        // PostgreSQL's SUM(BIGINT) is NUMERIC, which the Any driver cannot decode: cast back.
        let sql = format!(
            "SELECT CAST(COALESCE(SUM(cost_nanos), 0) AS BIGINT) FROM spend WHERE {column} = $1 AND at >= $2"
        );
        sqlx::query_scalar(&sql)
            .bind(scope.id())
            .bind(since_ms)
            .fetch_one(&self.pool)
            .await
            .map_err(self.db_err("sum spend"))
    }

    /// The records stored for a request id, oldest first (clients may reuse ids, so there may be
    /// several). Costs read back rounded up to the nano-dollar.
    pub async fn spend_by_request(&self, request_id: &str) -> Result<Vec<SpendRecord>, StoreError> {
        let sql = format!("SELECT {SPEND_COLUMNS} FROM spend WHERE request_id = $1 ORDER BY at, id");
        let rows = sqlx::query(&sql)
            .bind(request_id)
            .fetch_all(&self.pool)
            .await
            .map_err(self.db_err("read spend records"))?;
        rows.iter().map(|row| self.spend_from_row(row)).collect()
    }

    fn spend_from_row(&self, row: &AnyRow) -> Result<SpendRecord, StoreError> {
        let get = |e| self.db_err("read a spend record")(e);
        let id: String = row.try_get(0).map_err(get)?;
        let tags: String = row.try_get(23).map_err(get)?;
        let status: i64 = row.try_get(21).map_err(get)?;
        let count = |i: usize| row.try_get::<i64, _>(i).map(to_u64).map_err(get);
        Ok(SpendRecord {
            request_id: row.try_get(1).map_err(get)?,
            at: row.try_get(2).map_err(get)?,
            key_id: row.try_get(3).map_err(get)?,
            team_id: row.try_get(4).map_err(get)?,
            user_id: row.try_get(5).map_err(get)?,
            end_user: row.try_get(6).map_err(get)?,
            model: row.try_get(7).map_err(get)?,
            deployment: row.try_get(8).map_err(get)?,
            provider: row.try_get(9).map_err(get)?,
            usage: Usage {
                input: count(10)?,
                output: count(11)?,
                cached_input: count(12)?,
                cache_creation: count(13)?,
                reasoning: count(14)?,
            },
            usage_estimated: row.try_get::<i64, _>(15).map_err(get)? != 0,
            cost_usd: to_usd(row.try_get(16).map_err(get)?),
            cache_hit: row.try_get::<i64, _>(17).map_err(get)? != 0,
            cost_saved_usd: to_usd(row.try_get(18).map_err(get)?),
            latency_ms: row.try_get(19).map_err(get)?,
            ttft_ms: row.try_get(20).map_err(get)?,
            status: u16::try_from(status).map_err(|_| {
                self.corrupt("spend", &id, "status", format!("{status} is not an HTTP status"))
            })?,
            error: row.try_get(22).map_err(get)?,
            tags: self.parse_json("spend", &id, "tags", &tags)?,
        })
    }
}

/// `n` fresh spend row ids, from one draw of the CSPRNG.
///
/// Each id opens with the time in milliseconds (11 hex digits), so that ids grow with time and a
/// batch is appended at the end of the primary key's B-tree instead of scattered through it:
/// random keys made SQLite's inserts several times dearer.
pub(crate) fn new_spend_ids(n: usize) -> Vec<String> {
    let now = u64::try_from(crate::model::now_ms()).unwrap_or(0);
    let random = crate::keys::random_base62(SPEND_ID_CHARS * n);
    (0..n)
        .map(|i| format!("sp_{now:011x}{}", &random[i * SPEND_ID_CHARS..(i + 1) * SPEND_ID_CHARS]))
        .collect()
}

/// `INSERT ... VALUES (...), (...)` for `rows` rows.
///
/// SQLite gets anonymous `?` placeholders: sqlx looks up the name of every `$N` parameter, and
/// SQLite finds a name by walking a list, so `$N` costs O(n²) in the parameters: 0.4 s for a
/// 500-row batch, against milliseconds with `?`.
fn insert_sql(backend: Backend, rows: usize) -> String {
    let mut sql = format!("INSERT INTO spend ({SPEND_COLUMNS}) VALUES ");
    for row in 0..rows {
        if row > 0 {
            sql.push_str(", ");
        }
        sql.push('(');
        for col in 0..PARAMS_PER_ROW {
            if col > 0 {
                sql.push_str(", ");
            }
            match backend {
                Backend::Sqlite => sql.push('?'),
                Backend::Postgres => {
                    sql.push('$');
                    sql.push_str(&(row * PARAMS_PER_ROW + col + 1).to_string());
                }
            }
        }
        sql.push(')');
    }
    sql.push_str(" ON CONFLICT (id) DO NOTHING");
    sql
}

/// NaN and infinities are not storable in every backend (SQLite reads NaN back as NULL), and a
/// latency that is not a number means nothing: store 0 instead.
fn finite(ms: f64) -> f64 {
    if ms.is_finite() { ms } else { 0.0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn rows_whose_ids_are_stored_are_skipped() {
        // What the ledger relies on to retry a batch whose commit landed unacknowledged.
        let store = Store::connect("sqlite::memory:").await.unwrap();
        let record = SpendRecord {
            request_id: "r".into(),
            at: 1,
            key_id: Some("key_a".into()),
            team_id: None,
            user_id: None,
            end_user: None,
            model: "m".into(),
            deployment: None,
            provider: None,
            usage: Usage::default(),
            usage_estimated: false,
            cost_usd: 0.5,
            cache_hit: false,
            cost_saved_usd: 0.0,
            latency_ms: f64::NAN,
            ttft_ms: None,
            status: 200,
            error: None,
            tags: vec![],
        };
        let ids = new_spend_ids(2);
        store.insert_spend_with_ids(&[(&ids[0], &record)]).await.unwrap();
        store.insert_spend_with_ids(&[(&ids[0], &record), (&ids[1], &record)]).await.unwrap();
        let stored = store.spend_by_request("r").await.unwrap();
        assert_eq!(stored.len(), 2);
        assert_eq!(stored[0].latency_ms, 0.0, "NaN latency stored as 0");
        assert_eq!(store.spent_since(&Scope::Key("key_a".into()), 0).await.unwrap(), 1_000_000_000);
        assert!(ids[0].starts_with("sp_") && ids[0].len() == 3 + 11 + SPEND_ID_CHARS && ids[0] != ids[1]);
        assert!(ids[0][3..14] <= new_spend_ids(1)[0][3..14], "ids grow with time");
    }
}
