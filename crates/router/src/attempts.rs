//! [`Attempts`]: the record of one request's routing attempts, shared by every layer.
//!
//! The retry and fallback layers clone the request for each attempt; the record travels in
//! its extensions behind an `Arc`, so every clone writes to the same log. The group reads it
//! to avoid a deployment that already failed this request; the retry layer reads it to know
//! whether the next attempt can go elsewhere at once; the gateway reads it for the
//! `x-switchyard-attempts` header and its log line.

use std::{
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use switchyard_types::llm::{ErrorClass, LlmRequest};

use crate::Endpoint;

/// One attempt: which deployment of which model, and how it ended.
#[derive(Debug, Clone, PartialEq)]
pub struct Attempt {
    /// The model group the attempt was routed in.
    pub model: Arc<str>,
    /// The deployment's label (`provider/model`).
    pub deployment: Arc<str>,
    /// The deployment's provider.
    pub provider: Arc<str>,
    /// `None` while in flight or after success; the failure's class otherwise.
    pub failure: Option<ErrorClass>,
    /// Time from sending to the answer (to the first chunk, for a stream).
    pub elapsed: Duration,
    /// The endpoint's identity within the process.
    pub(crate) endpoint: usize,
}

impl Attempt {
    /// An attempt made outside a group (to describe one in a test or a replayed record).
    pub fn new(
        model: impl Into<Arc<str>>,
        deployment: impl Into<Arc<str>>,
        provider: impl Into<Arc<str>>,
        failure: Option<ErrorClass>,
        elapsed: Duration,
    ) -> Self {
        Self {
            model: model.into(),
            deployment: deployment.into(),
            provider: provider.into(),
            failure,
            elapsed,
            endpoint: usize::MAX,
        }
    }
}

/// The shared log of a request's attempts. Cloning shares it.
#[derive(Debug, Clone, Default)]
pub struct Attempts(Arc<Mutex<Log>>);

#[derive(Debug, Default)]
struct Log {
    attempts: Vec<Attempt>,
    /// Whether, when the last attempt was routed, another untried healthy deployment remained.
    elsewhere: bool,
    /// Backoff and `Retry-After` waits between attempts.
    waited: Duration,
}

// === impl Attempts ===

impl Attempts {
    /// The request's log, created on first use.
    pub fn of(request: &mut LlmRequest) -> Attempts {
        request.extensions.get_or_insert_default::<Attempts>().clone()
    }

    /// The request's log, if a layer created one.
    pub fn get(request: &LlmRequest) -> Option<&Attempts> {
        request.extensions.get::<Attempts>()
    }

    /// How many attempts were made.
    pub fn count(&self) -> usize {
        self.lock().attempts.len()
    }

    /// A copy of every attempt so far.
    pub fn to_vec(&self) -> Vec<Attempt> {
        self.lock().attempts.clone()
    }

    /// Whether the next attempt of the same model can go to a deployment not tried yet.
    pub fn can_go_elsewhere(&self) -> bool {
        self.lock().elsewhere
    }

    pub(crate) fn set_elsewhere(&self, elsewhere: bool) {
        self.lock().elsewhere = elsewhere;
    }

    pub(crate) fn tried(&self, endpoint: usize) -> bool {
        self.lock().attempts.iter().any(|a| a.endpoint == endpoint)
    }

    /// Records a new attempt and returns its index.
    pub(crate) fn start(&self, model: &Arc<str>, endpoint: &Endpoint, elsewhere: bool) -> usize {
        let mut log = self.lock();
        log.elsewhere = elsewhere;
        log.attempts.push(Attempt {
            model: Arc::clone(model),
            deployment: Arc::clone(&endpoint.label),
            provider: Arc::clone(&endpoint.provider),
            failure: None,
            elapsed: Duration::ZERO,
            endpoint: endpoint.id,
        });
        log.attempts.len() - 1
    }

    /// Time the deployments took, all attempts together.
    pub fn upstream_elapsed(&self) -> Duration {
        self.lock().attempts.iter().map(|a| a.elapsed).sum()
    }

    /// Time spent waiting between attempts (backoff and `Retry-After`).
    pub fn waited(&self) -> Duration {
        self.lock().waited
    }

    pub(crate) fn add_wait(&self, wait: Duration) {
        self.lock().waited += wait;
    }

    pub(crate) fn finish(&self, index: usize, failure: Option<ErrorClass>, elapsed: Duration) {
        if let Some(attempt) = self.lock().attempts.get_mut(index) {
            attempt.failure = failure;
            attempt.elapsed = elapsed;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Log> {
        // The log holds plain data; a panic elsewhere cannot leave it inconsistent.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
