//! Cooldowns: a deployment that keeps failing, or that says it is rate limited, is taken out
//! of rotation for a while and then probed back in (outlier detection, as Envoy does it).
//!
//! - `failures` consecutive failures of a deployment's own making ([`crate::fails_over`]:
//!   5xx, timeouts, resets, overload, 429, rejected credentials) cool it down for `duration`.
//!   A client's error (400, context length, content policy) says nothing about the deployment
//!   and is not counted.
//! - A 429 cools it down at once, for the `Retry-After` it sent (or `duration` without one).
//! - When the time is up, one request probes it: success brings it back, failure cools it
//!   down again for twice as long, up to `max_duration`.
//! - A group whose deployments are all cooling down still routes (to the one whose cooldown
//!   ends first): cooldown steers traffic to healthy deployments, it never turns a degraded
//!   model into a dead one.

use std::time::Duration;

use tokio::time::Instant;

use switchyard_types::llm::ErrorClass;

/// When a deployment is taken out of rotation, and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CooldownConfig {
    /// Consecutive failures that start a cooldown (0 turns failure counting off).
    pub failures: u32,
    /// The first cooldown's length.
    pub duration: Duration,
    /// The longest cooldown, however often the deployment fails its probes.
    pub max_duration: Duration,
    /// Whether a 429 starts a cooldown at once.
    pub on_rate_limit: bool,
}

impl Default for CooldownConfig {
    fn default() -> Self {
        Self {
            failures: 3,
            duration: Duration::from_secs(10),
            max_duration: Duration::from_secs(300),
            on_rate_limit: true,
        }
    }
}

/// A deployment's health as routing sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// In rotation; `consecutive` failures so far.
    Healthy {
        /// Failures since the last success.
        consecutive: u32,
    },
    /// Out of rotation until `until`.
    Cooling {
        /// When the cooldown ends.
        until: Instant,
        /// Cooldowns in a row, which doubles the next one.
        strikes: u32,
    },
    /// The cooldown ended; one request is allowed through to see if it recovered.
    Probing {
        /// Cooldowns in a row so far.
        strikes: u32,
        /// Whether the probe is in flight.
        claimed: bool,
    },
}

/// The health of one deployment.
#[derive(Debug)]
pub struct Health {
    state: State,
    /// A cooldown another replica reported (through Redis), until then.
    shared_until: Option<Instant>,
}

impl Default for Health {
    fn default() -> Self {
        Self { state: State::Healthy { consecutive: 0 }, shared_until: None }
    }
}

impl Health {
    /// The current state.
    pub fn state(&self) -> State {
        self.state
    }

    /// Whether routing may choose the deployment now, without claiming a probe.
    pub fn is_available(&self, now: Instant) -> bool {
        if self.shared_until.is_some_and(|until| until > now) {
            return false;
        }
        match self.state {
            State::Healthy { .. } => true,
            State::Cooling { until, .. } => until <= now,
            State::Probing { claimed, .. } => !claimed,
        }
    }

    /// When the deployment is next available (`now` if it is).
    pub fn available_at(&self, now: Instant) -> Instant {
        let own = match self.state {
            State::Cooling { until, .. } => until.max(now),
            _ => now,
        };
        self.shared_until.map_or(own, |shared| shared.max(own))
    }

    /// Routing chose the deployment: claims the probe if it is probing. Returns false if it
    /// is not available after all (another request claimed the probe first).
    pub fn claim(&mut self, now: Instant) -> bool {
        if let State::Cooling { until, strikes } = self.state
            && until <= now
        {
            self.state = State::Probing { strikes, claimed: false };
        }
        match &mut self.state {
            State::Probing { claimed: claimed @ false, .. } => {
                *claimed = true;
                true
            }
            State::Probing { claimed: true, .. } => false,
            _ => true,
        }
    }

    /// Gives back a probe claimed for a request that was not sent after all.
    pub fn release(&mut self) {
        if let State::Probing { claimed, .. } = &mut self.state {
            *claimed = false;
        }
    }

    /// An attempt succeeded.
    pub fn on_success(&mut self) {
        self.state = State::Healthy { consecutive: 0 };
    }

    /// An attempt failed. Returns the cooldown it started, if it started one.
    pub fn on_failure(
        &mut self,
        class: ErrorClass,
        retry_after: Option<Duration>,
        now: Instant,
        config: &CooldownConfig,
    ) -> Option<Duration> {
        if !crate::fails_over(class) {
            // The client's error: it neither counts against the deployment nor proves it
            // healthy; a claimed probe is released for the next request.
            self.release();
            return None;
        }
        let (consecutive, strikes) = match self.state {
            State::Healthy { consecutive } => (consecutive.saturating_add(1), 0),
            // A failed probe reaches the threshold at once; with counting off (0) only a 429
            // cools the deployment down again.
            State::Probing { strikes, .. } => (config.failures, strikes),
            // A request routed before the cooldown began has failed too: already counted.
            State::Cooling { .. } => return None,
        };
        let rate_limited = class == ErrorClass::RateLimited && config.on_rate_limit;
        let failed_out = config.failures > 0 && consecutive >= config.failures;
        if !rate_limited && !failed_out {
            self.state = State::Healthy { consecutive };
            return None;
        }
        let length = match retry_after {
            Some(retry_after) if rate_limited => retry_after.min(config.max_duration),
            _ => config.duration.saturating_mul(1 << strikes.min(16)).min(config.max_duration),
        };
        self.state = State::Cooling { until: now + length, strikes: strikes + 1 };
        Some(length)
    }

    /// Another replica cooled the deployment down until `until`.
    pub fn set_shared_cooldown(&mut self, until: Option<Instant>) {
        self.shared_until = until;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: CooldownConfig = CooldownConfig {
        failures: 3,
        duration: Duration::from_secs(10),
        max_duration: Duration::from_secs(60),
        on_rate_limit: true,
    };

    fn fail(health: &mut Health, now: Instant) -> Option<Duration> {
        health.on_failure(ErrorClass::UpstreamServer, None, now, &CONFIG)
    }

    #[test]
    fn consecutive_failures_cool_down_and_a_success_in_between_resets_the_count() {
        let now = Instant::now();
        let mut health = Health::default();
        assert_eq!(fail(&mut health, now), None);
        assert_eq!(fail(&mut health, now), None);
        health.on_success();
        assert_eq!(fail(&mut health, now), None);
        assert_eq!(fail(&mut health, now), None);
        assert_eq!(fail(&mut health, now), Some(Duration::from_secs(10)));
        assert!(!health.is_available(now + Duration::from_secs(9)));
        assert!(health.is_available(now + Duration::from_secs(10)));
    }

    #[test]
    fn client_errors_do_not_count() {
        let now = Instant::now();
        let mut health = Health::default();
        for _ in 0..10 {
            assert_eq!(health.on_failure(ErrorClass::BadRequest, None, now, &CONFIG), None);
            assert_eq!(health.on_failure(ErrorClass::ContextLengthExceeded, None, now, &CONFIG), None);
        }
        assert!(health.is_available(now));
    }

    #[test]
    fn a_429_cools_down_at_once_for_its_retry_after() {
        let now = Instant::now();
        let mut health = Health::default();
        let cooled = health.on_failure(ErrorClass::RateLimited, Some(Duration::from_secs(2)), now, &CONFIG);
        assert_eq!(cooled, Some(Duration::from_secs(2)));
        assert_eq!(health.available_at(now), now + Duration::from_secs(2));
    }

    #[test]
    fn one_probe_at_a_time_and_a_failed_probe_doubles_the_cooldown() {
        let now = Instant::now();
        let mut health = Health::default();
        for _ in 0..3 {
            fail(&mut health, now);
        }
        let later = now + Duration::from_secs(10);
        assert!(health.claim(later), "the first request after the cooldown probes");
        assert!(!health.is_available(later), "while the probe is in flight nobody else goes");
        assert!(!health.claim(later));
        assert_eq!(fail(&mut health, later), Some(Duration::from_secs(20)));
        let again = later + Duration::from_secs(20);
        assert!(health.claim(again));
        health.on_success();
        assert_eq!(health.state(), State::Healthy { consecutive: 0 });
    }

    #[test]
    fn cooldowns_stop_growing_at_the_maximum() {
        let mut now = Instant::now();
        let mut health = Health::default();
        let mut last = None;
        for _ in 0..3 {
            last = fail(&mut health, now);
        }
        for _ in 0..10 {
            now = health.available_at(now);
            assert!(health.claim(now));
            last = fail(&mut health, now);
        }
        assert_eq!(last, Some(CONFIG.max_duration));
    }

    #[test]
    fn a_cooldown_shared_by_another_replica_takes_the_deployment_out() {
        let now = Instant::now();
        let mut health = Health::default();
        health.set_shared_cooldown(Some(now + Duration::from_secs(5)));
        assert!(!health.is_available(now));
        assert_eq!(health.available_at(now), now + Duration::from_secs(5));
    }
}
