//! [`RetryLayer`]: retries failed attempts, without letting retries multiply an outage.
//!
//! An attempt that failed for a reason of the deployment's making ([`crate::fails_over`]) is
//! retried, up to `retries` times:
//! - at once, when the group had another healthy deployment this request has not tried (the
//!   [`Attempts`] log says so): failing over costs the client nothing but the failed attempt;
//! - otherwise after an exponential backoff with full jitter (`backoff_base` doubling up to
//!   `backoff_max`), or after the `Retry-After` the deployment sent when that is longer. A
//!   `Retry-After` beyond `max_retry_after` is not waited for: the error goes up, to the
//!   fallback layer.
//!
//! Every request deposits into a retry budget and every retry withdraws from it (tower's
//! `TpsBudget`): retries may add at most `budget_percent` of the traffic on top of a floor of
//! `budget_min_per_sec`, so that when a provider is down retries do not multiply the load.
//! No retry starts after the request's deadline ([`RequestTimeouts`]).

use std::{
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use futures_core::future::BoxFuture;
use switchyard_types::llm::{LlmError, LlmRequest, LlmResponse};
use tokio::time::Instant;
use tower::{
    ServiceExt,
    retry::budget::{Budget, TpsBudget},
};

use crate::{attempts::Attempts, fails_over, timeout::RequestTimeouts};

/// How failed attempts are retried.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryConfig {
    /// Retries after the first attempt (0 turns retries off).
    pub retries: u32,
    /// The first backoff before retrying on a deployment already tried.
    pub backoff_base: Duration,
    /// The longest backoff.
    pub backoff_max: Duration,
    /// The longest `Retry-After` worth waiting for.
    pub max_retry_after: Duration,
    /// Retries allowed as a share of requests, in percent.
    pub budget_percent: f32,
    /// Retries allowed per second whatever the traffic.
    pub budget_min_per_sec: u32,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            retries: 2,
            backoff_base: Duration::from_millis(100),
            backoff_max: Duration::from_secs(2),
            max_retry_after: Duration::from_secs(5),
            budget_percent: 20.0,
            budget_min_per_sec: 10,
        }
    }
}

/// Retries failed attempts; see the module documentation.
#[derive(Clone)]
pub struct RetryLayer {
    config: RetryConfig,
    budget: Arc<TpsBudget>,
}

impl std::fmt::Debug for RetryLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RetryLayer").field("config", &self.config).finish_non_exhaustive()
    }
}

impl RetryLayer {
    /// Retries under `config`, with a budget shared by every service this layer builds.
    pub fn new(config: RetryConfig) -> Self {
        let budget = TpsBudget::new(
            Duration::from_secs(10),
            config.budget_min_per_sec,
            (config.budget_percent / 100.0).clamp(0.0, 1000.0),
        );
        Self { config, budget: Arc::new(budget) }
    }
}

impl<S> tower::Layer<S> for RetryLayer {
    type Service = Retry<S>;

    fn layer(&self, inner: S) -> Retry<S> {
        Retry { inner, config: self.config, budget: Arc::clone(&self.budget) }
    }
}

/// A service whose failed attempts are retried; see [`RetryLayer`].
#[derive(Clone)]
pub struct Retry<S> {
    inner: S,
    config: RetryConfig,
    budget: Arc<TpsBudget>,
}

impl<S> Retry<S> {
    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Unwraps the service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S> tower::Service<LlmRequest> for Retry<S>
where
    S: tower::Service<LlmRequest, Response = LlmResponse, Error = LlmError> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = LlmResponse;
    type Error = LlmError;
    type Future = BoxFuture<'static, Result<LlmResponse, LlmError>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), LlmError>> {
        // Each attempt waits for the inner service's readiness itself (`oneshot`).
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut request: LlmRequest) -> Self::Future {
        let inner = self.inner.clone();
        let config = self.config;
        let budget = Arc::clone(&self.budget);
        budget.deposit();
        let attempts = Attempts::of(&mut request);
        let deadline = request.extensions.get::<RequestTimeouts>().and_then(|t| t.deadline);
        Box::pin(async move {
            let mut retry = 0;
            loop {
                let error = match inner.clone().oneshot(request.clone()).await {
                    Ok(response) => return Ok(response),
                    Err(error) => error,
                };
                if !fails_over(error.class) || retry >= config.retries {
                    return Err(error);
                }
                let wait = if attempts.can_go_elsewhere() {
                    Duration::ZERO
                } else {
                    match error.retry_after {
                        Some(asked) if asked > config.max_retry_after => return Err(error),
                        asked => backoff(&config, retry).max(asked.unwrap_or_default()),
                    }
                };
                if deadline.is_some_and(|d| Instant::now() + wait >= d) {
                    return Err(error);
                }
                if !budget.withdraw() {
                    tracing::debug!(class = %error.class, "retry budget exhausted; not retrying");
                    return Err(error);
                }
                tracing::debug!(class = %error.class, error = %error.message, wait_ms = wait.as_millis() as u64, "retrying");
                if !wait.is_zero() {
                    attempts.add_wait(wait);
                    tokio::time::sleep(wait).await;
                }
                retry += 1;
            }
        })
    }
}

/// Full jitter: a random wait up to `base * 2^retry`, capped.
fn backoff(config: &RetryConfig, retry: u32) -> Duration {
    let ceiling = config.backoff_base.saturating_mul(1 << retry.min(16)).min(config.backoff_max);
    ceiling.mul_f64(fastrand::f64())
}

#[cfg(test)]
mod tests;
