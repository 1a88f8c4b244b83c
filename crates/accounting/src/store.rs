//! The SQL store: virtual keys, teams, users and the spend ledger, on SQLite or PostgreSQL.
//!
//! One [`Store`] serves both backends through sqlx's `Any` driver, with one migration set
//! (`migrations/`) written in SQL that both accept: TEXT ids and JSON, BIGINT Unix-millisecond
//! times, BIGINT nano-dollars for money so that sums are exact. The store is the source of truth
//! for keys and spend; counters for limits live elsewhere (the meters), and the gateway caches
//! keys in front of it, so nothing here is on a request's critical path except a cache miss.
//!
//! Failure behaviour: every operation returns a [`StoreError`] that names the database (its
//! password redacted) and says what to do; nothing panics on database content. A key secret is
//! returned once, by [`Store::create_key`] and [`Store::rotate_key`], and never logged.
//!
//! ```no_run
//! # async fn demo() -> Result<(), switchyard_accounting::store::StoreError> {
//! use switchyard_accounting::{keys, store::{NewKey, Store}};
//!
//! let store = Store::connect("sqlite::memory:").await?;
//! let (record, secret) = store.create_key(NewKey { name: Some("ci".into()), ..NewKey::default() }).await?;
//! let found = store.key_by_hash(&keys::hash(&secret)).await?;
//! assert_eq!(found.map(|k| k.id), Some(record.id));
//! # Ok(()) }
//! ```

mod keys;
mod ledger_sql;
mod reports;
mod teams;

use std::{sync::Arc, time::Duration};

use serde::{Serialize, de::DeserializeOwned};
use sqlx::{
    AnyPool, Executor,
    any::{AnyPoolOptions, install_default_drivers},
    error::ErrorKind,
    migrate::Migrator,
};

pub use keys::{KeyFilter, KeyPatch, NewKey};
pub(crate) use ledger_sql::new_spend_ids;
pub use reports::{GroupBy, ReportQuery, ReportRow};
pub use teams::{NewTeam, NewUser, TeamPatch, UserPatch};

use crate::model::Limits;

/// The accounting schema, embedded at build time from `crates/accounting/migrations`.
static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// How long an operation waits for a free connection (and [`Store::connect`] for the database to
/// answer) before it fails, so that a database that is down is reported, not waited on forever.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// Which database a [`Store`] is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Backend {
    /// SQLite: a file, or memory (the zero-configuration default).
    Sqlite,
    /// PostgreSQL: shared by replicas.
    Postgres,
}

/// What went wrong in the store, and what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The URL names no database this store can open.
    #[error(
        "database URL `{url}` is not usable: {reason}; use `sqlite://PATH`, `sqlite::memory:` or \
         `postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE`"
    )]
    BadUrl {
        /// The URL, password redacted.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The database could not be opened.
    #[error(
        "cannot open the database `{url}`: {source}; check that it is running and reachable and that \
         the URL's host, user, password and database name are right (for SQLite, that the directory exists \
         and is writable)"
    )]
    Connect {
        /// The URL, password redacted.
        url: String,
        /// The driver's error.
        source: sqlx::Error,
    },
    /// The schema could not be brought up to date.
    #[error(
        "cannot apply the accounting migrations to `{url}`: {source}; if a migration was changed after \
         it was applied, restore it and add a new one instead; otherwise check that the user may create tables"
    )]
    Migrate {
        /// The URL, password redacted.
        url: String,
        /// The migrator's error.
        source: sqlx::migrate::MigrateError,
    },
    /// The key, team or user does not exist.
    #[error("there is no {kind} with id `{id}`; list the {kind}s to see which exist")]
    NotFound {
        /// `key`, `team` or `user`.
        kind: &'static str,
        /// The id asked for.
        id: String,
    },
    /// The operation contradicts what is stored (a duplicate id, a team that still has keys, a
    /// revoked key to rotate).
    #[error("{kind} `{id}` {reason}")]
    Conflict {
        /// `key`, `team` or `user`.
        kind: &'static str,
        /// Its id.
        id: String,
        /// What stands in the way and what to do.
        reason: String,
    },
    /// A value given to the store is not acceptable.
    #[error("{what} is not valid: {reason}")]
    Invalid {
        /// What was given (`limits.budget_usd`, ...).
        what: &'static str,
        /// Why it is refused.
        reason: String,
    },
    /// A stored row cannot be read back (a JSON column edited by hand, a negative token count).
    #[error("{kind} `{id}` in `{url}` has an unreadable `{column}` column ({reason}); fix or delete the row")]
    Corrupt {
        /// The database, password redacted.
        url: Arc<str>,
        /// `key`, `team`, `user` or `spend`.
        kind: &'static str,
        /// The row's id.
        id: String,
        /// The column.
        column: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The database failed while doing something.
    #[error(
        "the database `{url}` failed to {action}: {source}; check the database's health and logs, then retry"
    )]
    Database {
        /// The database, password redacted.
        url: Arc<str>,
        /// What the store was doing (`insert spend records`, ...).
        action: &'static str,
        /// The driver's error.
        source: sqlx::Error,
    },
}

/// The accounting database: keys, teams, users and spend. Cheap to clone (a pool handle).
#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    /// The URL with its password redacted: for errors and logs.
    url: Arc<str>,
}

// === impl Store ===

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("backend", &self.backend).field("url", &self.url).finish()
    }
}

impl Store {
    /// Opens the database at `url` and brings its schema up to date.
    ///
    /// - `sqlite://PATH` (or `sqlite:PATH`): a file, created if missing (`?mode=rwc` unless the
    ///   URL says otherwise), in WAL mode with `synchronous=NORMAL` (a power cut may lose the
    ///   last commits, never corrupt the file), `busy_timeout=5000` and foreign keys on.
    /// - `sqlite::memory:`: a private database in memory, gone when the store is closed. It lives
    ///   on one connection that is never closed, since every new in-memory connection would be a
    ///   new, empty database.
    /// - `postgres://...` or `postgresql://...`: PostgreSQL, shared by replicas.
    ///
    /// Running it again on an up-to-date database changes nothing; concurrent replicas starting
    /// together serialise on the migrator's lock.
    pub async fn connect(url: &str) -> Result<Store, StoreError> {
        let redacted = redact_url(url);
        let (backend, url, in_memory) = classify(url)
            .map_err(|reason| StoreError::BadUrl { url: redacted.clone(), reason: reason.to_owned() })?;
        install_default_drivers();

        let mut options = AnyPoolOptions::new().acquire_timeout(ACQUIRE_TIMEOUT);
        options = match (backend, in_memory) {
            (Backend::Sqlite, true) => {
                options.max_connections(1).min_connections(1).idle_timeout(None).max_lifetime(None)
            }
            // SQLite has one writer at a time; a few connections let reads (key lookups,
            // reports) run beside the ledger's writes in WAL mode.
            (Backend::Sqlite, false) => options.max_connections(4),
            (Backend::Postgres, _) => options.max_connections(10),
        };
        if backend == Backend::Sqlite {
            options = options.after_connect(|conn, _meta| {
                Box::pin(async move {
                    conn.execute(
                        "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
                         PRAGMA busy_timeout = 5000; PRAGMA foreign_keys = ON;",
                    )
                    .await
                    .map(drop)
                })
            });
        }
        let pool = options
            .connect(&url)
            .await
            .map_err(|source| StoreError::Connect { url: redacted.clone(), source })?;
        MIGRATOR.run(&pool).await.map_err(|source| StoreError::Migrate { url: redacted.clone(), source })?;
        Ok(Store { pool, backend, url: redacted.into() })
    }

    /// Which database this is.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The database URL with its password redacted, for logs.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Closes every connection, waiting for the ones in use to be returned. An in-memory database
    /// is gone afterwards. Operations on a closed store fail.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    fn db_err(&self, action: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError + '_ {
        move |source| StoreError::Database { url: self.url.clone(), action, source }
    }

    fn corrupt(&self, kind: &'static str, id: &str, column: &'static str, reason: String) -> StoreError {
        StoreError::Corrupt { url: self.url.clone(), kind, id: id.to_owned(), column, reason }
    }

    /// Parses a JSON column, naming the row when it cannot.
    fn parse_json<T: DeserializeOwned>(
        &self,
        kind: &'static str,
        id: &str,
        column: &'static str,
        text: &str,
    ) -> Result<T, StoreError> {
        serde_json::from_str(text).map_err(|err| self.corrupt(kind, id, column, err.to_string()))
    }
}

/// Which backend `url` names, the URL to hand sqlx, and whether it is SQLite in memory.
fn classify(url: &str) -> Result<(Backend, String, bool), &'static str> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Ok((Backend::Postgres, url.to_owned(), false));
    }
    let Some(rest) = url.strip_prefix("sqlite:") else {
        return Err("its scheme is neither `sqlite:` nor `postgres://`");
    };
    let path = rest.strip_prefix("//").unwrap_or(rest);
    let (file, query) = path.split_once('?').unwrap_or((path, ""));
    if file == ":memory:" {
        return Ok((Backend::Sqlite, "sqlite::memory:".to_owned(), true));
    }
    if file.is_empty() {
        return Err("it names no SQLite file");
    }
    if query.split('&').any(|pair| pair.starts_with("mode=")) {
        Ok((Backend::Sqlite, url.to_owned(), false))
    } else {
        let sep = if query.is_empty() { "?" } else { "&" };
        Ok((Backend::Sqlite, format!("{url}{sep}mode=rwc"), false))
    }
}

/// `url` with any password replaced by `***`: the one in `user:password@` and a `password=` query
/// parameter, so that errors and logs can name the database.
pub fn redact_url(url: &str) -> String {
    let mut out = url.to_owned();
    if let Some(scheme_end) = out.find("://") {
        let authority_start = scheme_end + 3;
        let authority_end =
            out[authority_start..].find(['/', '?', '#']).map_or(out.len(), |i| authority_start + i);
        if let Some(at) = out[authority_start..authority_end].rfind('@') {
            let userinfo = &out[authority_start..authority_start + at];
            if let Some(colon) = userinfo.find(':') {
                out.replace_range(authority_start + colon + 1..authority_start + at, "***");
            }
        }
    }
    if let Some(q) = out.find('?') {
        let (head, query) = out.split_at(q + 1);
        let query = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
                _ => pair.to_owned(),
            })
            .collect::<Vec<_>>()
            .join("&");
        out = format!("{head}{query}");
    }
    out
}

/// The kind of constraint a database error broke, if it broke one.
fn violated(err: &sqlx::Error) -> Option<ErrorKind> {
    err.as_database_error().map(|e| e.kind())
}

/// JSON text for a column; the types stored this way always serialise.
fn to_json<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "null".to_owned())
}

/// Refuses limits that no meter could enforce.
fn check_limits(limits: &Limits) -> Result<(), StoreError> {
    match limits.budget_usd {
        Some(usd) if !usd.is_finite() || usd < 0.0 => Err(StoreError::Invalid {
            what: "limits.budget_usd",
            reason: format!("{usd} is not a finite, non-negative number of dollars"),
        }),
        _ => Ok(()),
    }
}

/// A `prefix_` id with 16 random base62 characters (≈95 bits: no collision in practice, and not
/// guessable, though ids are not secrets).
fn new_id(prefix: &str) -> String {
    format!("{prefix}_{}", crate::keys::random_base62(16))
}

/// A `u64` count as a BIGINT, saturating (no real count reaches 2^63).
fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// A BIGINT count back as a `u64`; a negative count (impossible from this code) reads as 0.
fn to_u64(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(redact_url("postgres://u:secret@h:5432/db"), "postgres://u:***@h:5432/db");
        assert_eq!(redact_url("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(
            redact_url("postgres://u:p%40ss@h/db?sslmode=require"),
            "postgres://u:***@h/db?sslmode=require"
        );
        assert_eq!(redact_url("postgres://h/db?user=u&password=pw"), "postgres://h/db?user=u&password=***");
        assert_eq!(redact_url("sqlite:///tmp/a.db"), "sqlite:///tmp/a.db");
    }

    #[test]
    fn urls_are_classified() {
        assert_eq!(classify("sqlite::memory:"), Ok((Backend::Sqlite, "sqlite::memory:".into(), true)));
        assert_eq!(
            classify("sqlite:///tmp/a.db"),
            Ok((Backend::Sqlite, "sqlite:///tmp/a.db?mode=rwc".into(), false))
        );
        assert_eq!(
            classify("sqlite://a.db?mode=ro"),
            Ok((Backend::Sqlite, "sqlite://a.db?mode=ro".into(), false))
        );
        assert_eq!(classify("postgresql://h/db").map(|c| c.0), Ok(Backend::Postgres));
        assert!(classify("mysql://h/db").is_err());
        assert!(classify("sqlite://").is_err());
    }
}
