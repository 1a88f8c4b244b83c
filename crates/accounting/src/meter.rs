//! Limit enforcement: rate limits (requests and tokens per minute, requests in flight) and
//! budgets (nano-dollars per period), counted in memory on one replica or atomically in Redis
//! across replicas.
//!
//! An admission is a list of [`Charge`]s (each one counter of one scope: the key's rpm, the
//! team's budget, ...). [`Meter::admit`] admits all of them or none: a refusal on any counter
//! leaves every counter as it was. An admitted request holds a [`Grant`]; when it ends it
//! settles the grant with its real usage ([`Grant::settle`]); dropping a grant unsettled
//! settles it with nothing used (a failed or cancelled request).
//!
//! # The contract
//!
//! - **Windows.** [`MeterKind::Requests`] and [`MeterKind::Tokens`] count calendar minutes in
//!   UTC (`floor(now_ms / 60 000)`, the same minutes as the router's `rpm`/`tpm`), so that
//!   replicas count the same window. [`MeterKind::Budget`] counts the calendar period of its
//!   [`Period`] ([`Period::start_ms`]). [`MeterKind::Parallel`] has no window. All of them use
//!   the `now_ms` the caller passes, never the clock.
//! - **Admission.** Requests and Parallel admit when `used + amount <= limit`: they are exact.
//!   Tokens and Budget admit while `used < limit` (some room is left), then add `amount`, the
//!   caller's estimate, as a reservation. A request's real cost is only known at its end, so
//!   concurrent requests can together go over a budget or a token limit, by at most what was
//!   in flight when it was reached, never more: once it is reached, nothing more is admitted
//!   until the window ends or settlements give room back (DESIGN.md, "Limits hold").
//! - **Settlement.** `settle(actual_tokens, actual_nanos)` adds `actual_tokens - reserved` to
//!   each Tokens counter in the window it was charged in (negative when the estimate was
//!   high), `actual_nanos - reserved` to each Budget counter, and releases each Parallel
//!   counter (subtracts the amount it took, normally 1). Requests stay counted: the request
//!   was made. A counter whose window has ended takes no settlement: nobody counts against
//!   it any more.
//! - **Budget base.** A budget counter starts from what the ledger says was already spent in
//!   its period. The first time a process meets a (scope, period start) it asks its
//!   [`SpentSource`] and keeps the answer for that period; a source that fails counts as 0,
//!   with a warning. In memory the counter starts at that base; in Redis the script sets it
//!   only if the counter does not exist yet, so that once one replica has created it every
//!   replica counts on from the same total.
//! - **Refusals.** A [`Refusal`] names the first counter that refused, its limit and use, and
//!   when it starts again: the next minute for Requests and Tokens, the next period for a
//!   Budget (`None` for [`Period::None`], which never resets), `None` for Parallel, which
//!   frees up when a request ends, not at a time.
//!
//! # Backends
//!
//! [`Meter::in_memory`] keeps every counter in one map behind one mutex, held only for the
//! check-and-add of one admission or the adjustments of one settlement. Minute windows older
//! than the previous minute and budgets of ended periods are pruned once a minute.
//!
//! [`Meter::redis`] keeps them in Redis under
//! `{prefix}:meter:{kind}:{scope kind}:{scope id}:{window start ms}` (kind `requests`,
//! `tokens`, `parallel` or `budget-{period}`; window 0 for Parallel and for a budget without
//! period). One Lua script checks every charge of an admission and adds to all of them only
//! if all pass, so that replicas never race between a read and a write. Minute windows expire
//! 120 s after their minute began; budget counters a day after their period ends (never
//! without a period). Parallel counters carry a 10-minute expiry refreshed by each admission:
//! a replica that crashes with requests in flight never releases them, and the expiry bounds
//! how long its leftovers can block a scope (the cost: a scope with requests running for more
//! than 10 minutes and no new admission forgets them). Settlements go to a background task
//! that applies them off the request's path (a grant's `settle` is not async); it skips
//! counters that have expired, so that a late settlement cannot recreate a counter without
//! an expiry. If Redis fails during an admission, that admission is counted by this replica's
//! in-memory meter instead (limits then hold per replica until Redis is back): the outage is
//! logged once as a warning, and its end as info. The script's keys of one admission may
//! belong to different hash slots, so Redis Cluster is not supported; a single Redis (or a
//! primary with replicas) is.
//!
//! # Example
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), switchyard_accounting::meter::Refusal> {
//! use std::sync::Arc;
//! use switchyard_accounting::meter::{Charge, Meter, MeterKind, NothingSpent};
//! use switchyard_accounting::model::Scope;
//!
//! let meter = Meter::in_memory(Arc::new(NothingSpent));
//! let key = Scope::Key("key_1".into());
//! let charges = vec![
//!     Charge { scope: key.clone(), kind: MeterKind::Requests, limit: 60, amount: 1 },
//!     Charge { scope: key, kind: MeterKind::Tokens, limit: 10_000, amount: 800 },
//! ];
//! // A refusal says whose limit, how much is used, and when to retry.
//! let admitted = meter.admit(charges, 1_796_083_200_000).await?;
//! assert_eq!(admitted.standings[1].used, 800);
//! // ... the request runs, and used 650 tokens:
//! admitted.grant.settle(650, 0);
//! # Ok(())
//! # }
//! ```

mod memory;
mod redis;

use std::{
    collections::HashMap,
    fmt,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use futures_util::future::BoxFuture;

use crate::{
    model::{Nanos, Period, Scope},
    period::{MINUTE_MS, format_utc, minute_start_ms},
};

/// What a counter counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MeterKind {
    /// Requests per calendar minute.
    Requests,
    /// Tokens (input and output) per calendar minute.
    Tokens,
    /// Requests in flight; no window.
    Parallel,
    /// Nano-dollars per budget period.
    Budget(Period),
}

impl MeterKind {
    /// The kind's name in Redis keys and messages: `requests`, `tokens`, `parallel`,
    /// `budget-daily`, `budget-weekly`, `budget-monthly` or `budget-none`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Requests => "requests",
            Self::Tokens => "tokens",
            Self::Parallel => "parallel",
            Self::Budget(Period::None) => "budget-none",
            Self::Budget(Period::Daily) => "budget-daily",
            Self::Budget(Period::Weekly) => "budget-weekly",
            Self::Budget(Period::Monthly) => "budget-monthly",
        }
    }

    /// When the window holding `now_ms` started (0 for Parallel and a budget without period).
    fn window_start_ms(self, now_ms: i64) -> i64 {
        match self {
            Self::Requests | Self::Tokens => minute_start_ms(now_ms),
            Self::Parallel => 0,
            Self::Budget(period) => period.start_ms(now_ms),
        }
    }

    /// When the window holding `now_ms` ends, if it does.
    fn resets_at_ms(self, now_ms: i64) -> Option<i64> {
        match self {
            Self::Requests | Self::Tokens => minute_start_ms(now_ms).checked_add(MINUTE_MS),
            Self::Parallel => None,
            Self::Budget(period) => period.next_start_ms(now_ms),
        }
    }

    /// Whether a counter at `used` admits `amount` more under `limit` (see the module doc).
    fn admits(self, used: i64, amount: i64, limit: i64) -> bool {
        match self {
            Self::Requests | Self::Parallel => used.saturating_add(amount) <= limit,
            Self::Tokens | Self::Budget(_) => used < limit,
        }
    }
}

/// One counter an admission is charged to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Charge {
    /// Whose counter.
    pub scope: Scope,
    /// Which counter.
    pub kind: MeterKind,
    /// The limit (requests, tokens, requests in flight, or nano-dollars).
    pub limit: i64,
    /// What this request adds: 1 for Requests and Parallel, the estimated tokens or cost for
    /// Tokens and Budget (negative amounts count as 0).
    pub amount: i64,
}

/// What an admission leaves on one of its counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Standing {
    /// Whose counter.
    pub scope: Scope,
    /// Which counter.
    pub kind: MeterKind,
    /// Its limit.
    pub limit: i64,
    /// Its count after this admission.
    pub used: i64,
    /// When its window starts again (Unix ms), if it does.
    pub resets_at_ms: Option<i64>,
}

/// An admitted request: its grant, and where each of its counters stands.
#[derive(Debug)]
pub struct Admitted {
    /// What it holds until it settles.
    pub grant: Grant,
    /// Each charge's counter after the admission, in the order of the charges.
    pub standings: Vec<Standing>,
}

/// Why a request was not admitted: the first of its counters that refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.describe())]
pub struct Refusal {
    /// Whose limit.
    pub scope: Scope,
    /// Which limit.
    pub kind: MeterKind,
    /// The limit.
    pub limit: i64,
    /// What is used of it now.
    pub used: i64,
    /// How long until the window or period starts again; `None` for Parallel (room comes
    /// back when a request ends) and for a budget without period.
    pub retry_after: Option<Duration>,
    /// When the window or period starts again (Unix ms), if it does.
    pub resets_at_ms: Option<i64>,
}

impl Refusal {
    fn describe(&self) -> String {
        let whose = format!("{} `{}`", self.scope.kind(), self.scope.id());
        let (used, limit) = (self.used, self.limit);
        let what = match self.kind {
            MeterKind::Requests => format!("reached its limit of {limit} requests per minute"),
            MeterKind::Tokens => format!("reached its limit of {limit} tokens per minute ({used} used)"),
            MeterKind::Parallel => format!("has {used} requests in flight, its limit is {limit}"),
            MeterKind::Budget(period) => {
                let period = match period {
                    Period::None => String::new(),
                    period => format!("{} ", period.as_str()),
                };
                let (limit, used) = (crate::model::to_usd(limit), crate::model::to_usd(used));
                format!("reached its {period}budget of ${limit:.2} (${used:.2} spent)")
            }
        };
        let when = match (self.kind, self.resets_at_ms) {
            (MeterKind::Parallel, _) => "; retry when one of them ends".to_owned(),
            (MeterKind::Budget(_), Some(at)) => format!("; it resets at {}", format_utc(at)),
            (MeterKind::Budget(_), None) => "; it does not reset: ask for a higher budget".to_owned(),
            (_, _) => match self.retry_after {
                Some(after) => format!("; retry in {} s", after.as_millis().div_ceil(1000)),
                None => String::new(),
            },
        };
        format!("{whose} {what}{when}")
    }
}

/// Why a meter could not start.
#[derive(Debug, thiserror::Error)]
pub enum MeterError {
    /// The URL is not a Redis URL.
    #[error("`{url}` is not a valid Redis URL: {source}")]
    BadUrl {
        /// The URL, without its password.
        url: String,
        /// Why.
        source: ::redis::RedisError,
    },
    /// Redis did not answer.
    #[error("could not reach Redis at {url}: {reason}")]
    Unreachable {
        /// The URL, without its password.
        url: String,
        /// Why.
        reason: String,
    },
}

/// What the ledger says a scope has spent since a time: a budget counter's starting point.
pub trait SpentSource: Send + Sync + 'static {
    /// Nano-dollars `scope` spent from `since_ms` (Unix ms) on; the error is a message for the
    /// log (the budget then starts from 0).
    fn spent_since(&self, scope: &Scope, since_ms: i64) -> BoxFuture<'_, Result<Nanos, String>>;
}

/// A [`SpentSource`] with no ledger: nothing was spent before this process started.
#[derive(Debug, Clone, Copy, Default)]
pub struct NothingSpent;

impl SpentSource for NothingSpent {
    fn spent_since(&self, _: &Scope, _: i64) -> BoxFuture<'_, Result<Nanos, String>> {
        Box::pin(std::future::ready(Ok(0)))
    }
}

/// Counts admissions against limits, shared by every request; cheap to clone.
#[derive(Clone)]
pub struct Meter {
    inner: Arc<Inner>,
}

struct Inner {
    /// This replica's counters: all of them without Redis, the fallback with it.
    memory: Arc<memory::Counters>,
    redis: Option<redis::Shared>,
    spent: Arc<dyn SpentSource>,
    bases: Bases,
}

impl fmt::Debug for Meter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Meter").field("redis", &self.inner.redis.is_some()).finish_non_exhaustive()
    }
}

// === impl Meter ===

impl Meter {
    /// A meter that counts on this replica only.
    pub fn in_memory(spent: Arc<dyn SpentSource>) -> Meter {
        Meter {
            inner: Arc::new(Inner { memory: Arc::default(), redis: None, spent, bases: Bases::default() }),
        }
    }

    /// A meter that counts in Redis at `url`, under keys starting with `prefix`, shared by
    /// every replica that uses the same Redis and prefix. Fails if Redis cannot be reached
    /// now (within 5 s); later outages fall back to counting in memory.
    pub async fn redis(url: &str, prefix: &str, spent: Arc<dyn SpentSource>) -> Result<Meter, MeterError> {
        let redis = redis::Shared::connect(url, prefix).await?;
        let inner = Inner { memory: Arc::default(), redis: Some(redis), spent, bases: Bases::default() };
        Ok(Meter { inner: Arc::new(inner) })
    }

    /// Admits a request against all of `charges`, or against none of them: see the module
    /// doc for the rules. `now_ms` is the time of the request (Unix ms).
    pub async fn admit(&self, mut charges: Vec<Charge>, now_ms: i64) -> Result<Admitted, Refusal> {
        if charges.is_empty() {
            return Ok(Admitted { grant: Grant::empty(), standings: Vec::new() });
        }
        for charge in &mut charges {
            charge.amount = charge.amount.max(0);
        }
        let bases = self.bases(&charges, now_ms).await;
        if let Some(redis) = &self.inner.redis {
            match redis.admit(&charges, &bases, now_ms).await {
                Ok(outcome) => return finish(charges, outcome, now_ms, Sink::Redis(redis.settler())),
                Err(e) => redis.note_failure(&e),
            }
        }
        let outcome = self.inner.memory.admit(&charges, &bases, now_ms);
        finish(charges, outcome, now_ms, Sink::Memory(self.inner.memory.clone()))
    }

    /// The budget base of each Budget charge (0 for the others), asking the [`SpentSource`]
    /// for the ones this process has not met in their current period.
    async fn bases(&self, charges: &[Charge], now_ms: i64) -> Vec<Nanos> {
        let mut bases = vec![0; charges.len()];
        for (charge, base) in charges.iter().zip(&mut bases) {
            let MeterKind::Budget(period) = charge.kind else { continue };
            let start = period.start_ms(now_ms);
            *base = match self.inner.bases.get(&charge.scope, period, start) {
                Some(known) => known,
                None => {
                    let spent = match self.inner.spent.spent_since(&charge.scope, start).await {
                        Ok(spent) => spent.max(0),
                        Err(error) => {
                            tracing::warn!(
                                scope = charge.scope.kind(),
                                id = charge.scope.id(),
                                %error,
                                "could not read what was spent this period; the budget counts from 0"
                            );
                            0
                        }
                    };
                    self.inner.bases.insert(&charge.scope, period, start, spent)
                }
            };
        }
        bases
    }
}

/// What a backend made of an admission.
#[derive(Debug)]
enum Outcome {
    /// Admitted: each charge's count after it.
    Admitted(Vec<i64>),
    /// Refused by the charge at `index`, whose count is `used`.
    Refused { index: usize, used: i64 },
}

fn finish(charges: Vec<Charge>, outcome: Outcome, now_ms: i64, sink: Sink) -> Result<Admitted, Refusal> {
    match outcome {
        Outcome::Refused { index, used } => {
            // Backends name one of the charges they were given (the Redis backend checks the
            // script's answer), and there is at least one: the clamp only keeps this total.
            let mut charges = charges;
            let charge = charges.swap_remove(index.min(charges.len().saturating_sub(1)));
            let resets_at_ms = charge.kind.resets_at_ms(now_ms);
            let retry_after = match charge.kind {
                MeterKind::Parallel => None,
                _ => resets_at_ms.map(|at| Duration::from_millis(u64::try_from(at - now_ms).unwrap_or(0))),
            };
            Err(Refusal {
                scope: charge.scope,
                kind: charge.kind,
                limit: charge.limit,
                used,
                retry_after,
                resets_at_ms,
            })
        }
        Outcome::Admitted(used) => {
            let mut held = Vec::with_capacity(charges.len());
            let mut standings = Vec::with_capacity(charges.len());
            for (charge, used) in charges.into_iter().zip(used) {
                let resets_at_ms = charge.kind.resets_at_ms(now_ms);
                if charge.kind != MeterKind::Requests {
                    let counter = Counter {
                        scope: charge.scope.clone(),
                        kind: charge.kind,
                        window: charge.kind.window_start_ms(now_ms),
                    };
                    held.push(Held { counter, reserved: charge.amount });
                }
                standings.push(Standing {
                    scope: charge.scope,
                    kind: charge.kind,
                    limit: charge.limit,
                    used,
                    resets_at_ms,
                });
            }
            Ok(Admitted { grant: Grant { held, sink: Some(sink) }, standings })
        }
    }
}

/// One counter: a scope's count of one kind in one window.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Counter {
    scope: Scope,
    kind: MeterKind,
    /// The window's start (Unix ms); 0 without window.
    window: i64,
}

/// A counter a grant adjusts when it settles, and what it added to it.
#[derive(Debug)]
struct Held {
    counter: Counter,
    reserved: i64,
}

impl Held {
    /// What settling with these actuals adds to the counter.
    fn delta(&self, actual_tokens: i64, actual_nanos: i64) -> i64 {
        match self.counter.kind {
            MeterKind::Requests => 0,
            MeterKind::Tokens => actual_tokens.max(0).saturating_sub(self.reserved),
            MeterKind::Budget(_) => actual_nanos.max(0).saturating_sub(self.reserved),
            MeterKind::Parallel => -self.reserved,
        }
    }
}

/// Where a grant's settlement goes: the backend that admitted it.
enum Sink {
    Memory(Arc<memory::Counters>),
    Redis(redis::Settler),
}

/// What an admitted request holds on its counters until it ends.
///
/// Settle it with the request's real usage; dropping it unsettled settles it with nothing
/// used, which gives back its Parallel slots and token and budget reservations.
pub struct Grant {
    held: Vec<Held>,
    /// `None` once settled, or for an admission with no charges.
    sink: Option<Sink>,
}

impl fmt::Debug for Grant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Grant").field("held", &self.held).finish_non_exhaustive()
    }
}

// === impl Grant ===

impl Grant {
    fn empty() -> Grant {
        Grant { held: Vec::new(), sink: None }
    }

    /// Settles with what the request really used: its tokens (input and output) and its cost
    /// in nano-dollars. Never waits: with Redis the adjustments are sent by a background task.
    pub fn settle(mut self, actual_tokens: i64, actual_nanos: i64) {
        self.apply(actual_tokens, actual_nanos);
    }

    fn apply(&mut self, actual_tokens: i64, actual_nanos: i64) {
        let Some(sink) = self.sink.take() else { return };
        let held = std::mem::take(&mut self.held);
        let adjustments: Vec<(Counter, i64)> = held
            .into_iter()
            .map(|h| {
                let delta = h.delta(actual_tokens, actual_nanos);
                (h.counter, delta)
            })
            .filter(|(_, delta)| *delta != 0)
            .collect();
        if adjustments.is_empty() {
            return;
        }
        match sink {
            Sink::Memory(counters) => counters.adjust(adjustments),
            Sink::Redis(settler) => settler.send(adjustments),
        }
    }
}

impl Drop for Grant {
    fn drop(&mut self) {
        self.apply(0, 0);
    }
}

/// What the [`SpentSource`] said per scope, per budget period, for the current period start.
#[derive(Debug, Default)]
struct Bases(Mutex<HashMap<Scope, Vec<Base>>>);

/// A budget period's start, and what was spent in it before this process met it.
type Base = (Period, i64, Nanos);

impl Bases {
    fn get(&self, scope: &Scope, period: Period, start: i64) -> Option<Nanos> {
        let bases = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        bases.get(scope)?.iter().find(|&&(p, s, _)| p == period && s == start).map(|&(_, _, base)| base)
    }

    /// Keeps `base` for `scope`'s `period` starting at `start`, replacing an earlier period's;
    /// returns the base kept (a concurrent first request may have kept one first: replicas and
    /// tasks then agree on the first answer).
    fn insert(&self, scope: &Scope, period: Period, start: i64, base: Nanos) -> Nanos {
        let mut bases = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let entries = bases.entry(scope.clone()).or_default();
        match entries.iter_mut().find(|(p, _, _)| *p == period) {
            Some(entry) if entry.1 == start => entry.2,
            Some(entry) if entry.1 > start => base, // a request of a later period got here first
            Some(entry) => {
                *entry = (period, start, base);
                base
            }
            None => {
                entries.push((period, start, base));
                base
            }
        }
    }
}
