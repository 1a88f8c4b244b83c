//! The routing parts of the configuration: `router:` (retries, backoff, the retry budget,
//! cooldowns, the default policy), `redis:` (shared state between replicas), and each
//! model's `routing:` and fallback lists. Converted here into `switchyard-router`'s own types,
//! so the router never sees the file.

use std::{collections::HashMap, time::Duration};

use serde::Deserialize;
use serde_saphyr::Spanned;
use switchyard_router::{Policy, fallback::Fallbacks, health::CooldownConfig, retry::RetryConfig};

use super::{Config, Secret, at};

/// `router:`: how failures are retried and deployments cooled down, for every model.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RouterConfig {
    /// The policy of models that do not set one.
    pub policy: PolicyName,
    /// Retries after a failed attempt (elsewhere at once when another deployment can serve).
    pub retries: u32,
    /// First backoff before retrying a deployment already tried, in milliseconds.
    pub backoff_base_ms: u64,
    /// Longest backoff, in milliseconds.
    pub backoff_max_ms: u64,
    /// Longest `Retry-After` worth waiting for, in milliseconds; a longer one falls back.
    pub max_retry_after_ms: u64,
    /// How many retries the gateway may add on top of the traffic.
    pub retry_budget: RetryBudgetConfig,
    /// When a deployment is taken out of rotation.
    pub cooldown: CooldownSettings,
    /// Whether clients may name their own fallbacks (`"models": [..]` in the body).
    pub allow_client_fallbacks: bool,
}

impl Default for RouterConfig {
    fn default() -> Self {
        let retry = RetryConfig::default();
        Self {
            policy: PolicyName::default(),
            retries: retry.retries,
            backoff_base_ms: retry.backoff_base.as_millis() as u64,
            backoff_max_ms: retry.backoff_max.as_millis() as u64,
            max_retry_after_ms: retry.max_retry_after.as_millis() as u64,
            retry_budget: RetryBudgetConfig::default(),
            cooldown: CooldownSettings::default(),
            allow_client_fallbacks: false,
        }
    }
}

/// `router.retry_budget:`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryBudgetConfig {
    /// Retries allowed as a share of requests, in percent.
    pub percent: f32,
    /// Retries allowed per second whatever the traffic.
    pub min_per_second: u32,
}

impl Default for RetryBudgetConfig {
    fn default() -> Self {
        let retry = RetryConfig::default();
        Self { percent: retry.budget_percent, min_per_second: retry.budget_min_per_sec }
    }
}

/// `router.cooldown:` or a model's `routing.cooldown:`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CooldownSettings {
    /// Consecutive failures that take a deployment out (0: never for failures).
    pub failures: u32,
    /// First cooldown, in milliseconds; it doubles for each failed probe.
    pub duration_ms: u64,
    /// Longest cooldown, in milliseconds.
    pub max_duration_ms: u64,
    /// Whether a 429 takes the deployment out at once (for its `Retry-After`).
    pub on_rate_limit: bool,
}

impl Default for CooldownSettings {
    fn default() -> Self {
        let cooldown = CooldownConfig::default();
        Self {
            failures: cooldown.failures,
            duration_ms: cooldown.duration.as_millis() as u64,
            max_duration_ms: cooldown.max_duration.as_millis() as u64,
            on_rate_limit: cooldown.on_rate_limit,
        }
    }
}

/// A balancing policy, as spelled in the file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PolicyName {
    /// Random in proportion to `weight`.
    #[default]
    WeightedRandom,
    /// In turn, by `weight`.
    RoundRobin,
    /// Fewest requests in flight.
    LeastOutstanding,
    /// Lowest latency (time to first token for streams).
    LowestLatency,
    /// Cheapest `price`.
    LowestCost,
    /// Least used share of `rpm`/`tpm`.
    UsageAware,
}

/// A model's `routing:`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelRouting {
    /// Its policy, instead of `router.policy`.
    pub policy: Option<PolicyName>,
    /// Its cooldown, instead of `router.cooldown`.
    pub cooldown: Option<CooldownSettings>,
}

/// `redis:`: share cooldowns and usage counters between replicas.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisConfig {
    /// `redis://[:password@]host:port[/db]` (or `rediss://`).
    pub url: Secret,
    /// How often a replica shares its counts and reads the others', in milliseconds.
    #[serde(default = "default_sync_interval_ms")]
    pub sync_interval_ms: u64,
}

fn default_sync_interval_ms() -> u64 {
    500
}

/// A deployment's `price:`, in dollars per million tokens.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriceConfig {
    /// Per million prompt tokens.
    pub input: f64,
    /// Per million completion tokens.
    pub output: f64,
    /// Per million prompt tokens read from the provider's cache (default: `input`).
    #[serde(default)]
    pub cached_input: Option<f64>,
    /// Per million prompt tokens written to the provider's cache (default: `input`).
    #[serde(default)]
    pub cache_creation: Option<f64>,
    /// Per million reasoning tokens (default: `output`).
    #[serde(default)]
    pub reasoning: Option<f64>,
}

// === conversions ===

impl PolicyName {
    /// The router's policy.
    pub fn policy(self) -> Policy {
        match self {
            Self::WeightedRandom => Policy::WeightedRandom,
            Self::RoundRobin => Policy::RoundRobin,
            Self::LeastOutstanding => Policy::LeastOutstanding,
            Self::LowestLatency => Policy::LowestLatency,
            Self::LowestCost => Policy::LowestCost,
            Self::UsageAware => Policy::UsageAware,
        }
    }
}

impl CooldownSettings {
    /// The router's cooldown configuration.
    pub fn cooldown(&self) -> CooldownConfig {
        CooldownConfig {
            failures: self.failures,
            duration: Duration::from_millis(self.duration_ms),
            max_duration: Duration::from_millis(self.max_duration_ms.max(self.duration_ms)),
            on_rate_limit: self.on_rate_limit,
        }
    }
}

impl RouterConfig {
    /// The router's retry configuration.
    pub fn retry(&self) -> RetryConfig {
        RetryConfig {
            retries: self.retries,
            backoff_base: Duration::from_millis(self.backoff_base_ms),
            backoff_max: Duration::from_millis(self.backoff_max_ms.max(self.backoff_base_ms)),
            max_retry_after: Duration::from_millis(self.max_retry_after_ms),
            budget_percent: self.retry_budget.percent,
            budget_min_per_sec: self.retry_budget.min_per_second,
        }
    }
}

impl Config {
    /// Each model's fallback lists, for the fallback layer.
    pub fn fallbacks(&self) -> HashMap<String, Fallbacks> {
        let names = |list: &[Spanned<String>]| list.iter().map(|m| m.value.clone()).collect::<Vec<_>>();
        self.models
            .iter()
            .map(|m| Fallbacks {
                general: names(&m.fallbacks),
                context_window: names(&m.context_window_fallbacks),
                content_policy: names(&m.content_policy_fallbacks),
            })
            .zip(&self.models)
            .filter(|(f, _)| f != &Fallbacks::default())
            .map(|(f, m)| (m.name.value.clone(), f))
            .collect()
    }

    /// Routing problems: fallbacks naming models that do not exist, policies without the
    /// settings they need, limits of zero.
    pub(super) fn routing_problems(&self, problems: &mut Vec<String>) {
        let serves = |name: &str| {
            self.models.iter().any(|m| {
                let pattern = &m.name.value;
                match pattern.strip_suffix('*') {
                    Some(prefix) => name.len() > prefix.len() && name.starts_with(prefix),
                    None => pattern == name,
                }
            })
        };
        if self.router.retry_budget.percent < 0.0 || !self.router.retry_budget.percent.is_finite() {
            problems.push("router.retry_budget.percent: must be zero or more".to_owned());
        }
        for (m, model) in self.models.iter().enumerate() {
            let lists = [
                ("fallbacks", &model.fallbacks),
                ("context_window_fallbacks", &model.context_window_fallbacks),
                ("content_policy_fallbacks", &model.content_policy_fallbacks),
            ];
            for (key, list) in lists {
                for (f, fallback) in list.iter().enumerate() {
                    if !serves(&fallback.value) {
                        problems.push(format!(
                            "models[{m}].{key}[{f}]{}: no model `{}` is configured; a fallback must name one of `models`",
                            at(fallback),
                            fallback.value
                        ));
                    } else if fallback.value == model.name.value {
                        problems.push(format!(
                            "models[{m}].{key}[{f}]{}: a model cannot fall back to itself",
                            at(fallback)
                        ));
                    }
                }
            }
            let policy = model.routing.policy.unwrap_or(self.router.policy);
            for (d, deployment) in model.deployments.iter().enumerate() {
                let path = format!("models[{m}].deployments[{d}]");
                if policy == PolicyName::LowestCost && deployment.price.is_none() {
                    problems.push(format!(
                        "{path}{}: model `{}` routes by lowest_cost, so each deployment needs a price (price: {{input: 0.15, output: 0.60}}, dollars per million tokens)",
                        at(&deployment.provider),
                        model.name.value
                    ));
                }
                let limits = [
                    ("weight", deployment.weight.map(u64::from)),
                    ("rpm", deployment.rpm),
                    ("tpm", deployment.tpm),
                    ("max_parallel", deployment.max_parallel.map(u64::from)),
                ];
                for (key, value) in limits {
                    if value == Some(0) {
                        problems.push(format!(
                            "{path}.{key}{}: must be at least 1 (leave it out for no limit)",
                            at(&deployment.provider)
                        ));
                    }
                }
            }
        }
    }
}
