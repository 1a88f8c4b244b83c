//! [`Policy`]: how a model group chooses among the deployments that can take a request.
//!
//! A policy only ranks candidates: the group has already removed deployments at their
//! configured capacity (`rpm`, `tpm`, `max_parallel`), cooling down, or already tried by this
//! request. Every policy honours `weight`.

use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::time::Instant;

use crate::endpoint::Endpoint;
use crate::usage::current_minute;

/// A balancing policy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Policy {
    /// Random, in proportion to `weight` (the default).
    #[default]
    WeightedRandom,
    /// In turn, each deployment `weight` times per round.
    RoundRobin,
    /// The fewest requests in flight per unit of `weight`.
    LeastOutstanding,
    /// Power of two choices over a peak-EWMA of latency (of time to first token, for streams)
    /// times the requests in flight.
    LowestLatency,
    /// The cheapest by input plus output price per million tokens; ties by weight.
    LowestCost,
    /// The lowest share of its `rpm`/`tpm` used this minute; ties by weight.
    UsageAware,
}

impl Policy {
    /// The policy's name in configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::WeightedRandom => "weighted_random",
            Self::RoundRobin => "round_robin",
            Self::LeastOutstanding => "least_outstanding",
            Self::LowestLatency => "lowest_latency",
            Self::LowestCost => "lowest_cost",
            Self::UsageAware => "usage_aware",
        }
    }

    /// Chooses one of `candidates` (indices into `endpoints`, never empty).
    pub(crate) fn choose(
        self,
        endpoints: &[Endpoint],
        candidates: &[usize],
        turn: &AtomicUsize,
        rng: &mut fastrand::Rng,
        now: Instant,
    ) -> usize {
        if let [only] = candidates {
            return *only;
        }
        match self {
            Self::WeightedRandom => weighted_random(endpoints, candidates, rng),
            Self::RoundRobin => {
                let total: u64 =
                    candidates.iter().map(|&i| u64::from(endpoints[i].settings.weight.max(1))).sum();
                let mut slot = (turn.fetch_add(1, Ordering::Relaxed) as u64) % total;
                for &i in candidates {
                    let weight = u64::from(endpoints[i].settings.weight.max(1));
                    if slot < weight {
                        return i;
                    }
                    slot -= weight;
                }
                candidates[0]
            }
            Self::LeastOutstanding => {
                lowest(endpoints, candidates, rng, |e| f64::from(e.in_flight()) / e.weight())
            }
            Self::LowestLatency => {
                let a = candidates[rng.usize(..candidates.len())];
                let mut b = candidates[rng.usize(..candidates.len() - 1)];
                if b == a {
                    b = candidates[candidates.len() - 1];
                }
                if endpoints[b].load(now) < endpoints[a].load(now) { b } else { a }
            }
            Self::LowestCost => lowest(endpoints, candidates, rng, |e| {
                e.settings.price.map_or(f64::INFINITY, |p| p.input + p.output)
            }),
            Self::UsageAware => {
                let minute = current_minute();
                lowest(endpoints, candidates, rng, |e| {
                    e.state.usage.utilisation(minute, e.settings.rpm, e.settings.tpm)
                })
            }
        }
    }
}

fn weighted_random(endpoints: &[Endpoint], candidates: &[usize], rng: &mut fastrand::Rng) -> usize {
    let total: f64 = candidates.iter().map(|&i| endpoints[i].weight()).sum();
    let mut point = rng.f64() * total;
    for &i in candidates {
        point -= endpoints[i].weight();
        if point < 0.0 {
            return i;
        }
    }
    candidates[candidates.len() - 1]
}

/// The candidates with the lowest score; among ties, weighted random.
fn lowest(
    endpoints: &[Endpoint],
    candidates: &[usize],
    rng: &mut fastrand::Rng,
    score: impl Fn(&Endpoint) -> f64,
) -> usize {
    let scores: Vec<f64> = candidates.iter().map(|&i| score(&endpoints[i])).collect();
    let best = scores.iter().copied().fold(f64::INFINITY, f64::min);
    let ties: Vec<usize> =
        candidates.iter().zip(&scores).filter(|&(_, &s)| s <= best || s.is_nan()).map(|(&i, _)| i).collect();
    if ties.is_empty() { candidates[0] } else { weighted_random(endpoints, &ties, rng) }
}
