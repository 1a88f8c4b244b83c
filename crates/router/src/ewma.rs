//! A peak-sensitive moving average of latency (Finagle's peak EWMA, as tower's `load` has it).
//!
//! A sample above the average replaces it at once, so a deployment that slows down is
//! avoided quickly; samples below it pull it down with a weight that grows with the time
//! since the last sample, so one fast answer does not undo a slow period. An estimate that
//! has not been refreshed decays towards zero over the same time scale, so that a deployment
//! the policy stopped choosing is tried again now and then and a recovered one comes back.

use std::time::Duration;

use tokio::time::Instant;

#[derive(Debug)]
pub(crate) struct PeakEwma {
    /// Nanoseconds; zero until the first sample.
    estimate: f64,
    stamp: Instant,
    decay_ns: f64,
}

impl PeakEwma {
    pub(crate) fn new(decay: Duration, now: Instant) -> Self {
        Self { estimate: 0.0, stamp: now, decay_ns: decay.as_nanos().max(1) as f64 }
    }

    pub(crate) fn observe(&mut self, sample: Duration, now: Instant) {
        let sample = sample.as_nanos() as f64;
        if sample > self.estimate {
            self.estimate = sample;
        } else {
            let weight = self.weight(now);
            self.estimate = self.estimate * weight + sample * (1.0 - weight);
        }
        self.stamp = now;
    }

    /// The estimate in nanoseconds, decayed by the time since the last sample.
    pub(crate) fn estimate(&self, now: Instant) -> f64 {
        self.estimate * self.weight(now)
    }

    fn weight(&self, now: Instant) -> f64 {
        let elapsed = now.saturating_duration_since(self.stamp).as_nanos() as f64;
        (-elapsed / self.decay_ns).exp()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DECAY: Duration = Duration::from_secs(10);

    #[test]
    fn a_slow_sample_is_taken_at_once_and_fast_ones_pull_it_down_slowly() {
        let t0 = Instant::now();
        let mut ewma = PeakEwma::new(DECAY, t0);
        ewma.observe(Duration::from_millis(10), t0);
        ewma.observe(Duration::from_millis(100), t0);
        assert_eq!(ewma.estimate(t0), 100e6);
        let t1 = t0 + Duration::from_millis(100);
        ewma.observe(Duration::from_millis(10), t1);
        let after = ewma.estimate(t1);
        assert!(after > 95e6 && after < 100e6, "one fast sample barely moves it: {after}");
    }

    #[test]
    fn an_idle_estimate_decays_so_the_deployment_is_tried_again() {
        let t0 = Instant::now();
        let mut ewma = PeakEwma::new(DECAY, t0);
        ewma.observe(Duration::from_millis(50), t0);
        let later = ewma.estimate(t0 + DECAY * 2);
        assert!(later < 50e6 / 7.0, "after two decay periods it is below e^-2 of itself: {later}");
    }
}
