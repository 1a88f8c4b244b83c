//! The in-memory meter: every counter of this replica in one map behind one mutex.
//!
//! The mutex is held for the check-and-add of one admission (a few map lookups) or the
//! adjustments of one settlement, never across an await; the counters' keys are built before
//! it is taken, so that nothing allocates while it is held but a new map entry.

use std::{
    collections::HashMap,
    sync::{Mutex, PoisonError},
};

use super::{Charge, Counter, MeterKind, Outcome};
use crate::{
    model::Nanos,
    period::{MINUTE_MS, minute_start_ms},
};

/// This replica's counters.
#[derive(Debug, Default)]
pub(super) struct Counters(Mutex<State>);

#[derive(Debug, Default)]
struct State {
    counts: HashMap<Counter, i64>,
    /// The minute of the last pruning, so that the map is swept once a minute.
    pruned_minute: i64,
}

impl State {
    /// Drops minute windows older than the previous minute (the previous one stays for the
    /// settlements of requests that began in it), budgets whose period is over, and Parallel
    /// counters back at 0.
    fn prune(&mut self, now_ms: i64) {
        let minute = minute_start_ms(now_ms);
        if minute <= self.pruned_minute {
            return;
        }
        self.pruned_minute = minute;
        self.counts.retain(|counter, count| match counter.kind {
            MeterKind::Requests | MeterKind::Tokens => counter.window >= minute - MINUTE_MS,
            MeterKind::Parallel => *count > 0,
            MeterKind::Budget(period) => period.next_start_ms(counter.window).is_none_or(|end| end > now_ms),
        });
    }
}

// === impl Counters ===

impl Counters {
    /// Checks every charge and, if all pass, adds to every counter. `bases[i]` is where charge
    /// `i`'s counter starts if it does not exist yet.
    pub(super) fn admit(&self, charges: &[Charge], bases: &[Nanos], now_ms: i64) -> Outcome {
        let keys: Vec<Counter> = charges
            .iter()
            .map(|c| Counter { scope: c.scope.clone(), kind: c.kind, window: c.kind.window_start_ms(now_ms) })
            .collect();
        let mut state = self.lock();
        state.prune(now_ms);
        let mut used: Vec<i64> = Vec::with_capacity(charges.len());
        for (index, (charge, key)) in charges.iter().zip(&keys).enumerate() {
            // A counter charged twice in one admission counts on from its first charge.
            let earlier = keys[..index].iter().rposition(|k| k == key).and_then(|j| used.get(j).copied());
            let current = earlier
                .or_else(|| state.counts.get(key).copied())
                .unwrap_or_else(|| bases.get(index).copied().unwrap_or(0));
            if !charge.kind.admits(current, charge.amount, charge.limit) {
                return Outcome::Refused { index, used: current };
            }
            used.push(current.saturating_add(charge.amount));
        }
        for (key, &count) in keys.into_iter().zip(&used) {
            state.counts.insert(key, count);
        }
        Outcome::Admitted(used)
    }

    /// Adds each delta to its counter, if the counter still exists (a window that has been
    /// pruned is over: nobody counts against it any more). Counts never go below 0.
    pub(super) fn adjust(&self, adjustments: Vec<(Counter, i64)>) {
        let mut state = self.lock();
        for (counter, delta) in adjustments {
            if let Some(count) = state.counts.get_mut(&counter) {
                *count = count.saturating_add(delta).max(0);
                if *count == 0 && counter.kind == MeterKind::Parallel {
                    state.counts.remove(&counter);
                }
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while the lock was held cannot leave a count half-written (each is one
        // integer store), so a poisoned map is still right.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
