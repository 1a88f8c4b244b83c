//! Spend reports: requests, tokens, cost and errors, filtered and grouped.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sqlx::Row;

use super::{Store, StoreError, to_u64};
use crate::model::to_usd;

/// What a report groups by. Each becomes a key of [`ReportRow::group`], named as in the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupBy {
    /// The virtual key id (`"key"`).
    Key,
    /// The team id (`"team"`).
    Team,
    /// The user id (`"user"`).
    User,
    /// The end user the client named (`"end_user"`).
    EndUser,
    /// The configured model (`"model"`).
    Model,
    /// The deployment that served it (`"deployment"`).
    Deployment,
    /// The UTC day, `YYYY-MM-DD` (`"day"`).
    Day,
}

impl GroupBy {
    /// Every dimension, in the order the API lists them.
    pub const ALL: [GroupBy; 7] =
        [Self::Key, Self::Team, Self::User, Self::EndUser, Self::Model, Self::Deployment, Self::Day];

    /// The dimension named `name` ([`GroupBy::as_str`]).
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|g| g.as_str() == name)
    }

    /// The name used as the group key and in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Key => "key",
            Self::Team => "team",
            Self::User => "user",
            Self::EndUser => "end_user",
            Self::Model => "model",
            Self::Deployment => "deployment",
            Self::Day => "day",
        }
    }

    /// The SQL expression grouped on.
    fn expr(self) -> &'static str {
        match self {
            Self::Key => "key_id",
            Self::Team => "team_id",
            Self::User => "user_id",
            Self::EndUser => "end_user",
            Self::Model => "model",
            Self::Deployment => "deployment",
            // Integer division of BIGINTs is integer on both backends; the cast keeps SQLite
            // from handing back a REAL should `at` ever be stored as one.
            Self::Day => "CAST(at / 86400000 AS BIGINT)",
        }
    }
}

/// Which spend a report covers and how it is grouped. Every filter is optional.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportQuery {
    /// From this time on (Unix ms, inclusive).
    #[serde(default)]
    pub from_ms: Option<i64>,
    /// Before this time (Unix ms, exclusive).
    #[serde(default)]
    pub to_ms: Option<i64>,
    /// The groups, in this order; empty: one row of totals.
    #[serde(default)]
    pub group_by: Vec<GroupBy>,
    /// Only this key.
    #[serde(default)]
    pub key_id: Option<String>,
    /// Only this team.
    #[serde(default)]
    pub team_id: Option<String>,
    /// Only this user.
    #[serde(default)]
    pub user_id: Option<String>,
    /// Only this configured model.
    #[serde(default)]
    pub model: Option<String>,
}

/// One group's totals.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReportRow {
    /// The group's values by [`GroupBy::as_str`] name (`{"key": Some("key_..")}`); `None` where
    /// records have no value (no key, no deployment).
    pub group: BTreeMap<String, Option<String>>,
    /// Requests.
    pub requests: u64,
    /// Prompt tokens (cached and cache-creation ones included).
    pub input_tokens: u64,
    /// Completion tokens (reasoning ones included).
    pub output_tokens: u64,
    /// Prompt tokens read from a provider's cache.
    pub cached_input_tokens: u64,
    /// Prompt tokens written to a provider's cache.
    pub cache_creation_tokens: u64,
    /// Reasoning tokens.
    pub reasoning_tokens: u64,
    /// What it cost, in dollars (summed exactly in nano-dollars).
    pub cost_usd: f64,
    /// Requests that failed: an error class recorded, or an HTTP status of 400 or more.
    pub errors: u64,
}

// === impl Store ===

impl Store {
    /// Sums spend as `query` asks, most expensive group first (then by group, for a stable
    /// order). A report with no grouping is one row of totals, or none when nothing matches.
    pub async fn spend_report(&self, query: ReportQuery) -> Result<Vec<ReportRow>, StoreError> {
        // Grouping twice by the same thing would only repeat a column.
        let mut group_by: Vec<GroupBy> = Vec::with_capacity(query.group_by.len());
        for g in &query.group_by {
            if !group_by.contains(g) {
                group_by.push(*g);
            }
        }

        let mut filters = Vec::new();
        let mut texts: Vec<&str> = Vec::new();
        let mut ints: Vec<i64> = Vec::new();
        // Texts are bound first, then times; the placeholders follow that order.
        for (column, value) in [
            ("key_id", &query.key_id),
            ("team_id", &query.team_id),
            ("user_id", &query.user_id),
            ("model", &query.model),
        ] {
            if let Some(value) = value {
                texts.push(value);
                filters.push(format!("{column} = ${}", texts.len()));
            }
        }
        for (op, value) in [(">=", query.from_ms), ("<", query.to_ms)] {
            if let Some(value) = value {
                ints.push(value);
                filters.push(format!("at {op} ${}", texts.len() + ints.len()));
            }
        }

        let groups: Vec<&str> = group_by.iter().map(|g| g.expr()).collect();
        let mut sql = String::from("SELECT ");
        for expr in &groups {
            sql.push_str(expr);
            sql.push_str(", ");
        }
        // Sums are cast because PostgreSQL's SUM(BIGINT) is NUMERIC, which Any cannot decode.
        sql.push_str(
            "COUNT(*), \
             CAST(COALESCE(SUM(input_tokens), 0) AS BIGINT), \
             CAST(COALESCE(SUM(output_tokens), 0) AS BIGINT), \
             CAST(COALESCE(SUM(cached_input_tokens), 0) AS BIGINT), \
             CAST(COALESCE(SUM(cache_creation_tokens), 0) AS BIGINT), \
             CAST(COALESCE(SUM(reasoning_tokens), 0) AS BIGINT), \
             CAST(COALESCE(SUM(cost_nanos), 0) AS BIGINT), \
             CAST(COALESCE(SUM(CASE WHEN error IS NOT NULL OR status >= 400 THEN 1 ELSE 0 END), 0) AS BIGINT) \
             FROM spend",
        );
        if !filters.is_empty() {
            sql.push_str(" WHERE ");
            sql.push_str(&filters.join(" AND "));
        }
        if !groups.is_empty() {
            sql.push_str(" GROUP BY ");
            sql.push_str(&groups.join(", "));
        }
        let mut q = sqlx::query(&sql);
        for text in texts {
            q = q.bind(text);
        }
        for int in ints {
            q = q.bind(int);
        }
        let rows = q.fetch_all(&self.pool).await.map_err(self.db_err("compute a spend report"))?;

        let get = |e| self.db_err("read a spend report")(e);
        let mut report = Vec::with_capacity(rows.len());
        for row in &rows {
            let mut group = BTreeMap::new();
            for (i, g) in group_by.iter().enumerate() {
                let value = match g {
                    GroupBy::Day => row.try_get::<Option<i64>, _>(i).map_err(get)?.map(utc_date),
                    _ => row.try_get::<Option<String>, _>(i).map_err(get)?,
                };
                group.insert(g.as_str().to_owned(), value);
            }
            let n = group_by.len();
            let sum = |i: usize| row.try_get::<i64, _>(n + i).map_err(get);
            let requests = to_u64(sum(0)?);
            if requests == 0 {
                // The totals row of a report that matched nothing.
                continue;
            }
            report.push((
                sum(6)?,
                ReportRow {
                    group,
                    requests,
                    input_tokens: to_u64(sum(1)?),
                    output_tokens: to_u64(sum(2)?),
                    cached_input_tokens: to_u64(sum(3)?),
                    cache_creation_tokens: to_u64(sum(4)?),
                    reasoning_tokens: to_u64(sum(5)?),
                    cost_usd: 0.0,
                    errors: to_u64(sum(7)?),
                },
            ));
        }
        // Sorted here, not in SQL: the backends order NULLs differently, and a report must read
        // the same on both.
        report.sort_by(|(a_cost, a), (b_cost, b)| b_cost.cmp(a_cost).then_with(|| a.group.cmp(&b.group)));
        Ok(report
            .into_iter()
            .map(|(nanos, mut row)| {
                row.cost_usd = to_usd(nanos);
                row
            })
            .collect())
    }
}

/// `YYYY-MM-DD` for a day number since 1970-01-01 (UTC), by Howard Hinnant's `civil_from_days`.
pub(crate) fn utc_date(days: i64) -> String {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day_of(at_ms: i64) -> i64 {
        at_ms.div_euclid(86_400_000)
    }

    #[test]
    fn utc_dates() {
        assert_eq!(utc_date(0), "1970-01-01");
        assert_eq!(utc_date(-1), "1969-12-31");
        assert_eq!(utc_date(day_of(951_782_400_000)), "2000-02-29");
        // 2026-11-22T23:59:59.999Z and the next millisecond.
        assert_eq!(utc_date(day_of(1_795_391_999_999)), "2026-11-22");
        assert_eq!(utc_date(day_of(1_795_392_000_000)), "2026-11-23");
    }
}
