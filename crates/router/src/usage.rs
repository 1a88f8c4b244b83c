//! Requests and tokens per minute for one deployment, against its `rpm` and `tpm`.
//!
//! Windows are calendar minutes (Unix time / 60), so that replicas sharing counts through
//! Redis count the same minute. The count a replica acts on is the shared total as of the last
//! sync plus what it admitted since; without Redis the shared part stays zero.

use std::{
    sync::{Mutex, PoisonError},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

/// The current calendar minute.
pub(crate) fn current_minute() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() / 60)
}

/// Time left until the next calendar minute.
pub(crate) fn until_next_minute() -> Duration {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    Duration::from_secs(60 - now.as_secs() % 60)
        .saturating_sub(Duration::from_nanos(u64::from(now.subsec_nanos())))
}

/// Requests and tokens of one minute.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Counts {
    /// Requests admitted.
    pub(crate) requests: u64,
    /// Tokens used (prompt and completion).
    pub(crate) tokens: u64,
}

#[derive(Debug, Default)]
pub(crate) struct UsageWindow(Mutex<Window>);

#[derive(Debug, Default)]
struct Window {
    minute: u64,
    /// Every replica's counts this minute, as of the last sync.
    shared: Counts,
    /// This replica's counts since the last sync.
    unsynced: Counts,
}

impl Window {
    /// Moves to `minute` if it is a later one. Never back: a caller that read the clock just
    /// before the minute turned (a sync, a request admitted on another thread) would otherwise
    /// reset the window to the old minute and lose the new minute's counts.
    fn roll(&mut self, minute: u64) {
        if minute > self.minute {
            *self = Window { minute, ..Window::default() };
        }
    }

    fn total(&self) -> Counts {
        Counts {
            requests: self.shared.requests + self.unsynced.requests,
            tokens: self.shared.tokens + self.unsynced.tokens,
        }
    }
}

impl UsageWindow {
    /// Admits one request if neither limit is reached, counting it.
    pub(crate) fn try_admit(&self, minute: u64, rpm: Option<u64>, tpm: Option<u64>) -> bool {
        let mut window = self.lock();
        window.roll(minute);
        let total = window.total();
        if rpm.is_some_and(|limit| total.requests >= limit) || tpm.is_some_and(|limit| total.tokens >= limit)
        {
            return false;
        }
        window.unsynced.requests += 1;
        true
    }

    /// Whether a request would be admitted now.
    pub(crate) fn has_room(&self, minute: u64, rpm: Option<u64>, tpm: Option<u64>) -> bool {
        let mut window = self.lock();
        window.roll(minute);
        let total = window.total();
        !(rpm.is_some_and(|limit| total.requests >= limit) || tpm.is_some_and(|limit| total.tokens >= limit))
    }

    pub(crate) fn record_tokens(&self, minute: u64, tokens: u64) {
        let mut window = self.lock();
        window.roll(minute);
        window.unsynced.tokens += tokens;
    }

    /// The larger of the request and token utilisation, 0 without limits.
    pub(crate) fn utilisation(&self, minute: u64, rpm: Option<u64>, tpm: Option<u64>) -> f64 {
        let mut window = self.lock();
        window.roll(minute);
        let total = window.total();
        let ratio = |used: u64, limit: Option<u64>| limit.map_or(0.0, |l| used as f64 / l.max(1) as f64);
        ratio(total.requests, rpm).max(ratio(total.tokens, tpm))
    }

    /// This minute's counts as this replica sees them.
    #[cfg(test)]
    pub(crate) fn counts(&self, minute: u64) -> Counts {
        let mut window = self.lock();
        window.roll(minute);
        window.total()
    }

    /// Hands over the counts not yet shared, for a sync of `minute`. Counts of a later minute
    /// stay for the next sync, which shares them under their own minute.
    pub(crate) fn take_unsynced(&self, minute: u64) -> Counts {
        let mut window = self.lock();
        window.roll(minute);
        if window.minute != minute {
            return Counts::default();
        }
        std::mem::take(&mut window.unsynced)
    }

    /// Gives back counts a failed sync could not share.
    pub(crate) fn restore_unsynced(&self, minute: u64, counts: Counts) {
        let mut window = self.lock();
        if window.minute == minute {
            window.unsynced.requests += counts.requests;
            window.unsynced.tokens += counts.tokens;
        }
    }

    /// Sets every replica's counts for `minute`, as the shared store holds them.
    pub(crate) fn set_shared(&self, minute: u64, counts: Counts) {
        let mut window = self.lock();
        window.roll(minute);
        if window.minute == minute {
            window.shared = counts;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Window> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admits_up_to_the_rpm_and_resets_with_the_minute() {
        let window = UsageWindow::default();
        let admitted = (0..5).filter(|_| window.try_admit(7, Some(3), None)).count();
        assert_eq!(admitted, 3);
        assert!(!window.has_room(7, Some(3), None));
        assert!(window.try_admit(8, Some(3), None), "a new minute starts empty");
    }

    #[test]
    fn tokens_count_against_the_tpm() {
        let window = UsageWindow::default();
        assert!(window.try_admit(1, None, Some(100)));
        window.record_tokens(1, 100);
        assert!(!window.try_admit(1, None, Some(100)));
        assert_eq!(window.utilisation(1, Some(10), Some(100)), 1.0);
    }

    #[test]
    fn the_shared_total_and_local_admissions_add_up() {
        let window = UsageWindow::default();
        assert!(window.try_admit(1, Some(10), None));
        let pushed = window.take_unsynced(1);
        assert_eq!(pushed, Counts { requests: 1, tokens: 0 });
        window.set_shared(1, Counts { requests: 9, tokens: 0 });
        assert!(window.try_admit(1, Some(10), None), "9 shared + 0 local < 10");
        assert!(!window.try_admit(1, Some(10), None), "9 shared + 1 local reaches 10");
        window.restore_unsynced(1, pushed);
        assert_eq!(window.counts(1).requests, 11);
    }

    #[test]
    fn a_caller_that_read_the_clock_before_the_minute_turned_does_not_take_the_window_back() {
        let window = UsageWindow::default();
        assert!(window.try_admit(8, Some(10), None));
        // A sync that read the clock just before minute 8 began.
        assert_eq!(
            window.take_unsynced(7),
            Counts::default(),
            "minute 8's count is not pushed as minute 7's"
        );
        window.set_shared(7, Counts { requests: 10, tokens: 0 });
        assert_eq!(
            window.counts(8).requests,
            1,
            "minute 8 keeps its admission, and ignores minute 7's total"
        );
        // A request that read the clock before minute 8 counts in the window there is.
        assert!(window.try_admit(7, Some(10), None));
        assert_eq!(window.take_unsynced(8).requests, 2);
    }
}
