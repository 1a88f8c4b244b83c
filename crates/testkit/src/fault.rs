//! [`Fault`]: scripted misbehaviour for one request; the FIFO queue that hands faults out, and
//! [`RandomFaults`], the seeded draw that hands them out by chance.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};

/// What the mock does to one request instead of answering it normally.
///
/// Faults are queued with [`MockServer::push_fault`](crate::MockServer::push_fault), or drawn at
/// random ([`RandomFaults`]) for requests that find the queue empty. Each request (except
/// `GET /__stats`) takes its fault before authentication and routing: a fault replaces whatever
/// the provider would have answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Answer with this status and this JSON body. A status outside 100..=999 becomes 500.
    /// On a Bedrock path the answer also names its exception in `x-amzn-errortype`: the
    /// body's `__type`, else the one Bedrock answers that status with (400
    /// `ValidationException`, 429 `ThrottlingException`, ...).
    Status {
        /// The HTTP status code.
        status: u16,
        /// The JSON body, sent as is.
        body: serde_json::Value,
    },
    /// Answer 429 with `Retry-After` (and OpenAI's `x-ratelimit-*` headers) and an OpenAI
    /// `rate_limit_error` envelope; on Cohere's paths, `Retry-After` and Cohere's error shape;
    /// on a Bedrock path, a `ThrottlingException` in Bedrock's shape, with `Retry-After`.
    RateLimited {
        /// The value of `Retry-After`, in seconds.
        retry_after_secs: u64,
    },
    /// Read the request and never answer. The request ends when the client goes away or the
    /// server shuts down.
    Hang,
    /// Read the request, then drop the connection abruptly: with `SO_LINGER` 0, so the client
    /// sees a TCP reset rather than an orderly close.
    ResetBeforeHeaders,
    /// Send the status line, the headers and `after_chunks` server-sent events (the role chunk
    /// counts as one), then reset the connection as [`Fault::ResetBeforeHeaders`] does. On a
    /// request that is not streamed, `after_chunks` is ignored: the headers (with the full
    /// `Content-Length`) and the first half of the body are sent, then the connection is reset.
    /// Best used over HTTP/1.1: over HTTP/2 the reset takes down every stream of the connection.
    ResetMidStream {
        /// How many events to send before the reset.
        after_chunks: usize,
    },
    /// Answer as the provider answers when it is overloaded: on Anthropic's paths 529
    /// `overloaded_error`; elsewhere 503 with OpenAI's `server_error` envelope.
    Overloaded,
    /// Answer a stream normally for `after_events` server-sent events, then send the dialect's
    /// error event in place of the next one and end the stream: on Anthropic's paths an
    /// `event: error` with an `overloaded_error`, on OpenAI's a `data:` chunk holding an
    /// `{"error": {...}}` envelope (with no `[DONE]` after it). A stream shorter than that ends
    /// normally. A request that is not streamed, or a route that does not stream, is answered
    /// as [`Fault::Overloaded`] would answer it.
    ErrorMidStream {
        /// How many events to send before the error event.
        after_events: usize,
    },
}

/// Faults drawn by chance: a share of the requests that take no queued fault get one, picked by
/// weight from a mix, from a generator seeded with [`seed`](RandomFaults::seed) so that a run can
/// be replayed. Set with [`MockServer::set_random_faults`](crate::MockServer::set_random_faults).
///
/// The draw is deterministic in the order requests reach the server (after their body is read):
/// requests sent one after another see the same faults on every run with the same seed; requests
/// sent concurrently draw in whatever order they arrive. Every request that takes no queued
/// fault, whatever its route, draws once.
///
/// ```
/// use switchyard_testkit::{Fault, RandomFaults};
///
/// // 30% of requests fail: half of those with a 500, a quarter with a 429, a quarter reset.
/// let faults = RandomFaults::new(7, 30)
///     .with(Fault::Status { status: 500, body: serde_json::json!({}) }, 2)
///     .with(Fault::RateLimited { retry_after_secs: 1 }, 1)
///     .with(Fault::ResetBeforeHeaders, 1);
/// assert_eq!(faults.mix.len(), 3);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RandomFaults {
    /// Seeds the generator ([`fastrand::Rng::with_seed`]). The same seed, mix and order of
    /// requests give the same faults.
    pub seed: u64,
    /// The percentage of requests (0 to 100) that get a fault: each request that takes no queued
    /// fault gets one with this probability.
    pub rate_percent: u32,
    /// The faults to pick from, each with its weight: a faulted request gets a fault with
    /// probability weight / (sum of the weights). A weight of 0 is never picked. Must hold a
    /// positive weight unless `rate_percent` is 0.
    pub mix: Vec<(Fault, u32)>,
}

/// The random faults of a server, once set: the generator lives as long as the setting.
#[derive(Debug, Default)]
pub(crate) struct RandomFaultSource {
    draw: Mutex<Option<Draw>>,
    /// Whether `draw` holds a setting, so that the common case (no random faults) takes no lock.
    armed: AtomicBool,
}

#[derive(Debug)]
struct Draw {
    rng: fastrand::Rng,
    rate_percent: u32,
    mix: Vec<(Fault, u32)>,
    /// The sum of the weights of `mix`; positive when `rate_percent` is.
    total_weight: u64,
}

/// The queue of faults waiting for requests.
#[derive(Debug, Default)]
pub(crate) struct FaultQueue {
    queue: Mutex<VecDeque<Fault>>,
    /// Mirrors `queue.len()`, so that the common case (nothing scripted) takes no lock.
    len: AtomicUsize,
}

// === impl RandomFaults ===

impl RandomFaults {
    /// Random faults at `rate_percent` with an empty mix, to fill with [`RandomFaults::with`].
    pub fn new(seed: u64, rate_percent: u32) -> Self {
        Self { seed, rate_percent, mix: Vec::new() }
    }

    /// Adds `fault` to the mix with `weight`.
    #[must_use]
    pub fn with(mut self, fault: Fault, weight: u32) -> Self {
        self.mix.push((fault, weight));
        self
    }
}

// === impl RandomFaultSource ===

impl RandomFaultSource {
    /// Replaces the setting and restarts the generator from the new seed; `None` stops drawing.
    ///
    /// Panics on a rate above 100, or a positive rate with no positive weight: a test that asked
    /// for faults it can never get would pass without testing anything.
    pub(crate) fn set(&self, faults: Option<RandomFaults>) {
        let draw = faults.map(|RandomFaults { seed, rate_percent, mix }| {
            assert!(rate_percent <= 100, "RandomFaults::rate_percent is {rate_percent}, above 100");
            let total_weight = mix.iter().map(|(_, weight)| u64::from(*weight)).sum();
            assert!(
                rate_percent == 0 || total_weight > 0,
                "RandomFaults::rate_percent is {rate_percent} but the mix has no positive weight"
            );
            Draw { rng: fastrand::Rng::with_seed(seed), rate_percent, mix, total_weight }
        });
        let mut slot = self.draw.lock().unwrap_or_else(PoisonError::into_inner);
        self.armed.store(draw.is_some(), Ordering::Release);
        *slot = draw;
    }

    /// Draws for one request: a fault, or `None` for a normal answer.
    pub(crate) fn draw(&self) -> Option<Fault> {
        if !self.armed.load(Ordering::Acquire) {
            return None;
        }
        let mut slot = self.draw.lock().unwrap_or_else(PoisonError::into_inner);
        slot.as_mut()?.next()
    }
}

// === impl Draw ===

impl Draw {
    fn next(&mut self) -> Option<Fault> {
        if self.rng.u32(0..100) >= self.rate_percent {
            return None;
        }
        let mut pick = self.rng.u64(0..self.total_weight);
        for (fault, weight) in &self.mix {
            let weight = u64::from(*weight);
            if pick < weight {
                return Some(fault.clone());
            }
            pick -= weight;
        }
        // Unreachable: `pick` is below the sum of the weights.
        None
    }
}

// === impl FaultQueue ===

impl FaultQueue {
    pub(crate) fn push(&self, fault: Fault) {
        let mut queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
        queue.push_back(fault);
        self.len.store(queue.len(), Ordering::Release);
    }

    /// Takes the first queued fault, if any.
    pub(crate) fn pop(&self) -> Option<Fault> {
        if self.len.load(Ordering::Acquire) == 0 {
            return None;
        }
        let mut queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
        let fault = queue.pop_front();
        self.len.store(queue.len(), Ordering::Release);
        fault
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(faults: RandomFaults) -> RandomFaultSource {
        let source = RandomFaultSource::default();
        source.set(Some(faults));
        source
    }

    fn mix(seed: u64, rate_percent: u32) -> RandomFaults {
        RandomFaults::new(seed, rate_percent)
            .with(Fault::Hang, 3)
            .with(Fault::ResetBeforeHeaders, 1)
            .with(Fault::RateLimited { retry_after_secs: 1 }, 0)
    }

    #[test]
    fn draws_at_the_rate_and_by_weight() {
        let source = source(mix(1, 30));
        let draws: Vec<_> = (0..20_000).map(|_| source.draw()).collect();
        let hangs = draws.iter().filter(|d| **d == Some(Fault::Hang)).count();
        let resets = draws.iter().filter(|d| **d == Some(Fault::ResetBeforeHeaders)).count();
        let faulted = draws.iter().filter(|d| d.is_some()).count();
        // 6000 expected, standard deviation about 65.
        assert!((5700..=6300).contains(&faulted), "{faulted} of 20000 faulted");
        assert_eq!(hangs + resets, faulted, "a weight of 0 is never picked");
        // 4500 and 1500 expected.
        assert!((4200..=4800).contains(&hangs), "{hangs} hangs");
        assert!((1300..=1700).contains(&resets), "{resets} resets");
    }

    #[test]
    fn the_same_seed_draws_the_same_sequence_and_another_seed_does_not() {
        let draws = |seed| {
            let source = source(mix(seed, 50));
            (0..200).map(|_| source.draw()).collect::<Vec<_>>()
        };
        assert_eq!(draws(42), draws(42));
        assert_ne!(draws(42), draws(43));
    }

    #[test]
    fn setting_again_restarts_the_sequence_and_none_stops_it() {
        let source = source(mix(5, 50));
        let first: Vec<_> = (0..50).map(|_| source.draw()).collect();
        source.set(Some(mix(5, 50)));
        assert_eq!((0..50).map(|_| source.draw()).collect::<Vec<_>>(), first);
        source.set(None);
        assert!((0..50).all(|_| source.draw().is_none()));
    }

    #[test]
    #[should_panic(expected = "above 100")]
    fn a_rate_above_100_is_refused() {
        source(mix(0, 101));
    }

    #[test]
    #[should_panic(expected = "no positive weight")]
    fn a_rate_without_weights_is_refused() {
        source(RandomFaults::new(0, 10).with(Fault::Hang, 0));
    }

    #[test]
    fn a_rate_of_0_needs_no_mix_and_never_faults() {
        let source = source(RandomFaults::new(0, 0));
        assert!((0..1000).all(|_| source.draw().is_none()));
    }
}
