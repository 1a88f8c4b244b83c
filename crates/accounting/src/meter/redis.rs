//! The Redis meter: counters shared by every replica, checked and added by one Lua script.
//!
//! Admissions run `admit.lua` (EVALSHA, loaded on first use and after a Redis restart), so
//! that the check of every charge and the additions are one atomic step on the server.
//! Settlements go through a channel to a background task that runs `settle.lua` with the
//! adjustments it has gathered, merged per counter; when Redis fails it keeps them (up to
//! [`MAX_PENDING`] counters) and tries again each second.

use std::{
    collections::HashMap,
    fmt,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use redis::{Script, aio::ConnectionManager};
use tokio::sync::mpsc;

use super::{Charge, Counter, MeterError, MeterKind, Outcome};
use crate::{model::Nanos, period::DAY_MS};

/// How long an admission waits for Redis before counting in memory instead.
const ADMIT_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a minute window's counter lives after its minute began.
const MINUTE_TTL_MS: i64 = 120_000;
/// How long a Parallel counter lives after the last admission that counted on it.
const PARALLEL_TTL_MS: i64 = 600_000;
/// How many counters' settlements are kept while Redis is unreachable; beyond that the
/// oldest are dropped (their reservations then stand until their windows end).
const MAX_PENDING: usize = 100_000;

/// The connection, the scripts and the settlement task's channel.
pub(super) struct Shared {
    connection: ConnectionManager,
    prefix: Arc<str>,
    admit: Arc<Script>,
    health: Arc<Health>,
    settler: Settler,
}

/// Sends a grant's settlement to the background task.
#[derive(Clone)]
pub(super) struct Settler(mpsc::UnboundedSender<Vec<(Counter, i64)>>);

impl Settler {
    pub(super) fn send(&self, adjustments: Vec<(Counter, i64)>) {
        // The task ends only when every sender is gone, so this cannot fail while `self` lives.
        let _ = self.0.send(adjustments);
    }
}

/// Why an exchange with Redis failed.
#[derive(Debug)]
pub(super) enum Failure {
    Redis(redis::RedisError),
    Timeout,
    /// The script answered something it never returns (another script under its hash?).
    Malformed(Vec<i64>),
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Redis(e) => write!(f, "{e}"),
            Self::Timeout => write!(f, "no answer within {} ms", ADMIT_TIMEOUT.as_millis()),
            Self::Malformed(answer) => write!(f, "the admission script answered {answer:?}"),
        }
    }
}

/// Whether Redis answered last time, so that an outage is logged once and its end once.
#[derive(Debug)]
struct Health(AtomicBool);

impl Health {
    fn ok(&self) {
        if !self.0.load(Ordering::Relaxed) && !self.0.swap(true, Ordering::Relaxed) {
            tracing::info!("Redis is reachable again; limits are shared between replicas");
        }
    }

    fn failed(&self, failure: &Failure) {
        if self.0.swap(false, Ordering::Relaxed) {
            tracing::warn!(error = %failure, "Redis is unreachable; limits are counted on this replica only until it is back");
        }
    }
}

// === impl Shared ===

impl Shared {
    pub(super) async fn connect(url: &str, prefix: &str) -> Result<Shared, MeterError> {
        let shown = crate::store::redact_url(url);
        let client =
            redis::Client::open(url).map_err(|source| MeterError::BadUrl { url: shown.clone(), source })?;
        // One plain connection first, for its own error: the connection manager retries a
        // refused connection with backoff for longer than the wait below (as in the router's
        // shared state).
        let connect = async {
            drop(client.get_multiplexed_async_connection().await?);
            ConnectionManager::new(client).await
        };
        let connection = match tokio::time::timeout(Duration::from_secs(5), connect).await {
            Ok(Ok(connection)) => connection,
            Ok(Err(e)) => {
                return Err(MeterError::Unreachable { url: shown, reason: redact_error(&e, url) });
            }
            Err(_) => {
                return Err(MeterError::Unreachable { url: shown, reason: "no answer within 5 s".into() });
            }
        };
        let prefix: Arc<str> = prefix.into();
        let health = Arc::new(Health(AtomicBool::new(true)));
        let (sender, receiver) = mpsc::unbounded_channel();
        let task = SettleTask {
            connection: connection.clone(),
            prefix: prefix.clone(),
            script: Script::new(include_str!("settle.lua")),
            health: health.clone(),
            pending: HashMap::new(),
            overflowed: false,
        };
        tokio::spawn(task.run(receiver));
        Ok(Shared {
            connection,
            prefix,
            admit: Arc::new(Script::new(include_str!("admit.lua"))),
            health,
            settler: Settler(sender),
        })
    }

    pub(super) fn settler(&self) -> Settler {
        self.settler.clone()
    }

    pub(super) fn note_failure(&self, failure: &Failure) {
        self.health.failed(failure);
    }

    /// Runs the admission script for `charges`; `bases[i]` is where charge `i`'s counter starts
    /// if no replica has created it yet.
    pub(super) async fn admit(
        &self,
        charges: &[Charge],
        bases: &[Nanos],
        now_ms: i64,
    ) -> Result<Outcome, Failure> {
        let mut invocation = self.admit.prepare_invoke();
        for (charge, base) in charges.iter().zip(bases) {
            let window = charge.kind.window_start_ms(now_ms);
            invocation.key(key(&self.prefix, charge.kind, &charge.scope, window));
            // Expiries are relative to the caller's `now_ms`, so that a counter ends when its
            // window does (plus the slack above) whatever clock the caller keeps; at least 1 ms,
            // since the script reads 0 as no expiry.
            let (mode, ttl) = match charge.kind {
                MeterKind::Requests => ("fit", (window + MINUTE_TTL_MS - now_ms).max(1)),
                MeterKind::Parallel => ("fit", PARALLEL_TTL_MS),
                MeterKind::Tokens => ("room", (window + MINUTE_TTL_MS - now_ms).max(1)),
                // A day after the period ends; without period, never.
                MeterKind::Budget(period) => (
                    "room",
                    period
                        .next_start_ms(now_ms)
                        .map_or(0, |end| (end.saturating_add(DAY_MS) - now_ms).max(1)),
                ),
            };
            invocation.arg(mode).arg(charge.limit).arg(charge.amount).arg(base).arg(ttl);
        }
        let mut connection = self.connection.clone();
        let answer: Vec<i64> =
            match tokio::time::timeout(ADMIT_TIMEOUT, invocation.invoke_async(&mut connection)).await {
                Ok(Ok(answer)) => answer,
                Ok(Err(e)) => return Err(Failure::Redis(e)),
                Err(_) => return Err(Failure::Timeout),
            };
        let outcome = match answer.as_slice() {
            [1, used @ ..] if used.len() == charges.len() => Outcome::Admitted(used.to_vec()),
            &[0, index, used] if index >= 1 && (index as usize) <= charges.len() => {
                Outcome::Refused { index: index as usize - 1, used }
            }
            _ => return Err(Failure::Malformed(answer)),
        };
        self.health.ok();
        Ok(outcome)
    }
}

/// `{prefix}:meter:{kind}:{scope kind}:{scope id}:{window start ms}`. The window is the last
/// part and has no colon, so that an id with colons still names one counter only.
fn key(prefix: &str, kind: MeterKind, scope: &crate::model::Scope, window: i64) -> String {
    format!("{prefix}:meter:{}:{}:{}:{window}", kind.as_str(), scope.kind(), scope.id())
}

/// Applies settlements in the background.
struct SettleTask {
    connection: ConnectionManager,
    prefix: Arc<str>,
    script: Script,
    health: Arc<Health>,
    /// Adjustments not applied yet, merged per Redis key.
    pending: HashMap<String, i64>,
    /// Whether adjustments were dropped since Redis last took them, so that it is logged once.
    overflowed: bool,
}

impl SettleTask {
    async fn run(mut self, mut receiver: mpsc::UnboundedReceiver<Vec<(Counter, i64)>>) {
        let mut open = true;
        loop {
            if self.pending.is_empty() {
                match receiver.recv().await {
                    Some(adjustments) => self.gather(adjustments),
                    None => return,
                }
            }
            // Everything already queued goes in the same call.
            loop {
                match receiver.try_recv() {
                    Ok(adjustments) => self.gather(adjustments),
                    Err(mpsc::error::TryRecvError::Empty) => break,
                    Err(mpsc::error::TryRecvError::Disconnected) => {
                        open = false;
                        break;
                    }
                }
            }
            match self.apply().await {
                Ok(()) => self.health.ok(),
                Err(failure) => {
                    self.health.failed(&failure);
                    if !open {
                        tracing::warn!(
                            counters = self.pending.len(),
                            "the meter was dropped while Redis was unreachable; its last settlements are lost"
                        );
                        return;
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }

    fn gather(&mut self, adjustments: Vec<(Counter, i64)>) {
        for (counter, delta) in adjustments {
            let key = key(&self.prefix, counter.kind, &counter.scope, counter.window);
            if self.pending.len() >= MAX_PENDING && !self.pending.contains_key(&key) {
                // An outage this long has made the counts per replica already; what is dropped
                // is an arbitrary counter's adjustment (a map has no order), whose reservation
                // then stands until its window ends.
                if !self.overflowed {
                    tracing::warn!(kept = MAX_PENDING, "too many settlements wait for Redis; dropping some");
                    self.overflowed = true;
                }
                if let Some(dropped) = self.pending.keys().next().cloned() {
                    self.pending.remove(&dropped);
                }
            }
            *self.pending.entry(key).or_insert(0) += delta;
        }
    }

    async fn apply(&mut self) -> Result<(), Failure> {
        self.pending.retain(|_, delta| *delta != 0);
        if self.pending.is_empty() {
            return Ok(());
        }
        let mut invocation = self.script.prepare_invoke();
        for (key, delta) in &self.pending {
            invocation.key(key).arg(*delta);
        }
        let call = invocation.invoke_async::<i64>(&mut self.connection);
        match tokio::time::timeout(ADMIT_TIMEOUT, call).await {
            Ok(Ok(_)) => {
                self.pending.clear();
                self.overflowed = false;
                Ok(())
            }
            Ok(Err(e)) => Err(Failure::Redis(e)),
            Err(_) => Err(Failure::Timeout),
        }
    }
}

/// A connection error's message, with the URL's password taken out should the client have
/// quoted it.
fn redact_error(error: &redis::RedisError, url: &str) -> String {
    let message = error.to_string();
    match password(url) {
        Some(password) if !password.is_empty() => message.replace(password, "***"),
        _ => message,
    }
}

/// The password part of `scheme://user:password@host`, if any.
fn password(url: &str) -> Option<&str> {
    let rest = &url[url.find("://")? + 3..];
    let userinfo = &rest[..rest.rfind('@')?];
    userinfo.split_once(':').map(|(_, password)| password).or(Some(userinfo))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_their_password() {
        let redact = crate::store::redact_url;
        assert_eq!(redact("redis://:hunter2@db:6379/0"), "redis://:***@db:6379/0");
        assert_eq!(redact("redis://user:hunter2@db"), "redis://user:***@db");
        assert_eq!(redact("redis://db:6379"), "redis://db:6379");
        assert_eq!(password("redis://user:hunter2@db"), Some("hunter2"));
        assert_eq!(password("redis://hunter2@db"), Some("hunter2"));
        assert_eq!(password("redis://db"), None);
    }
}
