//! [`ModelGroup`]: the deployments behind one model name, and the choice of one per attempt.
//!
//! For each attempt the group
//! 1. keeps only deployments with room under their `max_parallel`, `rpm` and `tpm` (hard
//!    limits: when none has room the attempt fails as rate limited, so that retries wait and
//!    fallbacks take over);
//! 2. prefers, in order: healthy deployments this request has not tried; healthy ones it has
//!    tried; cooling ones it has not tried; any (cooldown never makes a model unreachable);
//! 3. lets the [`Policy`] choose within the first non-empty tier, and admits the request there
//!    (raising its in-flight and per-minute counts, claiming its probe when it is probing);
//! 4. sends, and for a stream waits for the first chunk, so that a stream that fails before
//!    its first chunk is a failed attempt that can go elsewhere;
//! 5. records the outcome: latency (time to first chunk for streams) and health.

use std::{
    sync::{
        Arc, OnceLock,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use futures_core::future::BoxFuture;
use futures_util::StreamExt;
use switchyard_types::{
    json::Json,
    llm::{DocStream, ErrorClass, LlmError, LlmRequest, LlmResponse, ResponseBody},
};
use tokio::{sync::mpsc, time::Instant};
use tower::ServiceExt;
use tracing::Instrument;

use crate::{
    attempts::Attempts,
    endpoint::Endpoint,
    health::{CooldownConfig, State},
    policy::Policy,
    track::{InFlight, Tracked},
    usage::{current_minute, until_next_minute},
};

/// The target of the spans the router opens, so that a subscriber can take them for traces
/// without taking them for logs.
pub const SPAN_TARGET: &str = "switchyard::trace";

/// One attempt's client span, named and attributed per the OpenTelemetry GenAI conventions.
/// It lasts until the deployment answers (for a stream, until its first chunk).
fn attempt_span(request: &LlmRequest, endpoint: &Endpoint) -> tracing::Span {
    let operation = request.op.name();
    // The upstream model: what a wildcard matched, else the deployment's configured model.
    let model = if endpoint.forwards_model {
        request.model()
    } else {
        let configured = endpoint.label.split_once('/').map_or(request.model(), |(_, model)| model);
        // A label made unique with `#index` (two deployments of one upstream model).
        match configured.rsplit_once('#') {
            Some((model, index)) if !index.is_empty() && index.bytes().all(|b| b.is_ascii_digit()) => model,
            _ => configured,
        }
    };
    tracing::info_span!(
        target: SPAN_TARGET,
        "attempt",
        otel.name = %format_args!("{operation} {model}"),
        otel.kind = "client",
        otel.status_code = tracing::field::Empty,
        gen_ai.operation.name = operation,
        gen_ai.provider.name = %endpoint.provider,
        gen_ai.request.model = model,
        switchyard.deployment = %endpoint.label,
        error.type = tracing::field::Empty,
    )
}

/// What a failure counts as in the latency estimate (see `record_failure`).
const FAILURE_LATENCY: Duration = Duration::from_secs(1);

/// How a group routes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GroupSettings {
    /// How a deployment is chosen.
    pub policy: Policy,
    /// When a deployment is taken out of rotation.
    pub cooldown: CooldownConfig,
}

/// A cooldown that started here, for replicas to hear of.
#[derive(Debug, Clone)]
pub(crate) struct CooldownEvent {
    pub(crate) key: Arc<str>,
    pub(crate) length: Duration,
}

/// Where cooldown events go once [`crate::shared`] is running.
pub(crate) type CooldownSink = Arc<OnceLock<mpsc::UnboundedSender<CooldownEvent>>>;

/// The deployments serving one model name.
#[derive(Debug)]
pub struct ModelGroup {
    pub(crate) name: Arc<str>,
    pub(crate) prefix: Option<String>,
    pub(crate) endpoints: Vec<Endpoint>,
    settings: GroupSettings,
    turn: AtomicUsize,
    pub(crate) cooldowns: CooldownSink,
}

// === impl ModelGroup ===

impl ModelGroup {
    /// A group named `name` (exact, or a prefix ending in `*`) over `endpoints`.
    pub fn new(name: impl Into<Arc<str>>, endpoints: Vec<Endpoint>, settings: GroupSettings) -> Self {
        let name = name.into();
        let prefix = name.strip_suffix('*').map(str::to_owned);
        Self {
            name,
            prefix,
            endpoints,
            settings,
            turn: AtomicUsize::new(0),
            cooldowns: CooldownSink::default(),
        }
    }

    /// The name clients send.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The name, shared (for labels and records that outlive a request).
    pub fn shared_name(&self) -> &Arc<str> {
        &self.name
    }

    /// The deployments, in configuration order.
    pub fn endpoints(&self) -> &[Endpoint] {
        &self.endpoints
    }

    /// How the group routes.
    pub fn settings(&self) -> &GroupSettings {
        &self.settings
    }

    /// Routes one attempt of `request`; `matched` is what a wildcard name matched.
    pub(crate) fn call(
        self: &Arc<Self>,
        mut request: LlmRequest,
        matched: Option<&str>,
    ) -> BoxFuture<'static, Result<LlmResponse, LlmError>> {
        let attempts = Attempts::get(&request).cloned();
        let started = Instant::now();
        let (index, elsewhere, probe) = match self.admit(attempts.as_ref(), started) {
            Ok(chosen) => chosen,
            Err(error) => {
                // Nothing was routed: a retry cannot go elsewhere at once either.
                if let Some(log) = &attempts {
                    log.set_elsewhere(false);
                }
                return Box::pin(std::future::ready(Err(error)));
            }
        };
        let endpoint = &self.endpoints[index];
        if endpoint.forwards_model
            && let Some(rest) = matched
        {
            request.set_model(rest);
        }
        let attempt = attempts.map(|log| {
            let at = log.start(&self.name, endpoint, elsewhere);
            (log, at)
        });
        let span = attempt_span(&request, endpoint);
        let in_flight = InFlight::adopt(Arc::clone(&endpoint.state), probe);
        let call = endpoint.service.clone().oneshot(request);
        let group = Arc::clone(self);
        Box::pin(
            async move {
                let result = group.complete(index, call.await, in_flight, started).await;
                if let Err(error) = &result {
                    let span = tracing::Span::current();
                    span.record("error.type", error.class.as_str());
                    span.record("otel.status_code", "ERROR");
                }
                if let Some((log, at)) = attempt {
                    log.finish(at, result.as_ref().err().map(|e| e.class), started.elapsed());
                }
                result
            }
            .instrument(span),
        )
    }

    /// Turns a deployment's answer into the attempt's outcome, recording it.
    async fn complete(
        self: Arc<Self>,
        index: usize,
        answer: Result<LlmResponse, LlmError>,
        mut in_flight: InFlight,
        started: Instant,
    ) -> Result<LlmResponse, LlmError> {
        let endpoint = &self.endpoints[index];
        // The latency of a stream is the time to its first chunk; the deployment's health is
        // settled when the stream ends (see `Tracked`), so that one whose streams keep
        // breaking midway is cooled down like any failing one.
        let answer = match answer {
            Ok(LlmResponse { body: ResponseBody::ChatStream(chunks), served_by }) => {
                match self.first(index, chunks).await {
                    Ok((first, rest)) => {
                        self.record_latency(index, started);
                        let tracked = Tracked::new(first, rest, Arc::clone(&self), index, in_flight);
                        return Ok(LlmResponse {
                            body: ResponseBody::ChatStream(Box::pin(tracked)),
                            served_by,
                        });
                    }
                    Err(error) => Err(error),
                }
            }
            Ok(LlmResponse { body: ResponseBody::MessageStream(events), served_by }) => {
                match self.first(index, events).await {
                    Ok((first, rest)) => {
                        self.record_latency(index, started);
                        let tracked = Tracked::new(first, rest, Arc::clone(&self), index, in_flight);
                        return Ok(LlmResponse {
                            body: ResponseBody::MessageStream(Box::pin(tracked)),
                            served_by,
                        });
                    }
                    Err(error) => Err(error),
                }
            }
            answer => answer,
        };
        let settled = match &answer {
            Ok(response) => {
                self.record_success(index, started);
                let tokens = match &response.body {
                    ResponseBody::Chat(completion) => completion.usage().map(|u| u.total()),
                    ResponseBody::Message(message) => message.usage().map(|u| u.total()),
                    ResponseBody::Embeddings(embeddings) => embeddings.usage().map(|u| u.total()),
                    ResponseBody::ChatStream(_) | ResponseBody::MessageStream(_) => None,
                };
                if let Some(tokens) = tokens {
                    endpoint.state.usage.record_tokens(current_minute(), tokens);
                }
                true
            }
            Err(error) => self.record_failure(index, error),
        };
        // A failure that says nothing about the deployment settles nothing: if this request
        // held the probe, dropping `in_flight` gives it back for the next request.
        if settled {
            in_flight.settle();
        }
        drop(in_flight);
        answer
    }

    /// Waits for a stream's first document: until it comes, the attempt may still fail over.
    async fn first<T>(
        &self,
        index: usize,
        mut stream: DocStream<T>,
    ) -> Result<(Json<T>, DocStream<T>), LlmError> {
        match stream.next().await {
            Some(Ok(first)) => Ok((first, stream)),
            Some(Err(error)) => Err(error),
            None => Err(LlmError::new(
                ErrorClass::UpstreamServer,
                format!("{} ended the stream before sending anything.", self.endpoints[index].label),
            )),
        }
    }

    fn record_success(&self, index: usize, started: Instant) {
        self.record_latency(index, started);
        self.endpoints[index].state.health().on_success();
    }

    fn record_latency(&self, index: usize, started: Instant) {
        let now = Instant::now();
        self.endpoints[index].state.latency().observe(now - started, now);
    }

    /// A stream ended cleanly: the deployment served the whole answer.
    pub(crate) fn record_stream_success(&self, index: usize) {
        self.endpoints[index].state.health().on_success();
    }

    /// Counts a failure against the deployment. Returns false, recording nothing, when the
    /// failure is the client's ([`crate::fails_over`]), or the expiry of a time limit the
    /// client set: it says nothing about the deployment, and the probe, if one is in flight,
    /// may be another request's.
    pub(crate) fn record_failure(&self, index: usize, error: &LlmError) -> bool {
        if !crate::fails_over(error.class) || crate::timeout::is_clients_limit(error) {
            return false;
        }
        let endpoint = &self.endpoints[index];
        // A failure costs the client at least as much as a slow answer: without this, a
        // deployment that fails fast (or was never measured) would look like the fastest.
        let now = Instant::now();
        endpoint.state.latency().observe(FAILURE_LATENCY, now);
        let cooled = endpoint.state.health().on_failure(
            error.class,
            error.retry_after,
            Instant::now(),
            &self.settings.cooldown,
        );
        if let Some(length) = cooled {
            endpoint.state.cooldowns.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tracing::warn!(
                model = %self.name,
                deployment = %endpoint.label,
                class = %error.class,
                cooldown_ms = length.as_millis() as u64,
                "deployment taken out of rotation"
            );
            if let Some(sink) = self.cooldowns.get() {
                let _ = sink.send(CooldownEvent { key: Arc::clone(&endpoint.key), length });
            }
        }
        true
    }

    /// Chooses a deployment and admits the request there. Returns its index, whether another
    /// untried healthy deployment remained, and whether the request is the deployment's probe.
    fn admit(&self, attempts: Option<&Attempts>, now: Instant) -> Result<(usize, bool, bool), LlmError> {
        let minute = current_minute();
        if self.endpoints.len() == 1 {
            // The common case, without the tiers: whatever its health, the only deployment
            // serves (cooldown never makes a model unreachable) if it has room.
            return match self.has_room(0, minute).then(|| self.reserve(0, minute, now)).flatten() {
                Some(probe) => Ok((0, false, probe)),
                None => Err(self.at_capacity(minute)),
            };
        }
        let mut rng = fastrand::Rng::new();
        let mut open: Vec<usize> = (0..self.endpoints.len()).filter(|&i| self.has_room(i, minute)).collect();
        let tried = |i: usize| attempts.is_some_and(|log| log.tried(self.endpoints[i].id));
        let available = |i: usize| self.endpoints[i].state.health().is_available(now);
        while !open.is_empty() {
            let fresh: Vec<usize> = open.iter().copied().filter(|&i| available(i) && !tried(i)).collect();
            let elsewhere = fresh.len() > 1;
            let tier = if !fresh.is_empty() {
                fresh
            } else {
                let retried: Vec<usize> = open.iter().copied().filter(|&i| available(i)).collect();
                if !retried.is_empty() {
                    retried
                } else {
                    // Everything is cooling down: the one back soonest, untried first.
                    let soonest = open
                        .iter()
                        .copied()
                        .min_by_key(|&i| (tried(i), self.endpoints[i].state.health().available_at(now)))
                        .unwrap_or(open[0]);
                    vec![soonest]
                }
            };
            let chosen = self.settings.policy.choose(&self.endpoints, &tier, &self.turn, &mut rng, now);
            if let Some(probe) = self.reserve(chosen, minute, now) {
                return Ok((chosen, elsewhere, probe));
            }
            open.retain(|&i| i != chosen);
        }
        Err(self.at_capacity(minute))
    }

    fn has_room(&self, index: usize, minute: u64) -> bool {
        let endpoint = &self.endpoints[index];
        let settings = &endpoint.settings;
        settings.max_parallel.is_none_or(|max| endpoint.in_flight() < max)
            && endpoint.state.usage.has_room(minute, settings.rpm, settings.tpm)
    }

    /// Takes a place under the deployment's limits, and its probe if it is probing (then
    /// returns `Some(true)`); `None` if there was no place after all.
    fn reserve(&self, index: usize, minute: u64, now: Instant) -> Option<bool> {
        let endpoint = &self.endpoints[index];
        let state = &endpoint.state;
        let settings = &endpoint.settings;
        let available = state.health().is_available(now);
        // A deployment chosen although cooling down (every one is) is not probing: no claim.
        let probe = available && {
            let mut health = state.health();
            if !health.claim(now) {
                return None;
            }
            matches!(health.state(), State::Probing { .. })
        };
        let entered = state
            .in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                settings.max_parallel.is_none_or(|max| n < max).then_some(n + 1)
            })
            .is_ok();
        if entered && state.usage.try_admit(minute, settings.rpm, settings.tpm) {
            return Some(probe);
        }
        if entered {
            state.in_flight.fetch_sub(1, Ordering::AcqRel);
        }
        if probe {
            state.health().release();
        }
        None
    }

    fn at_capacity(&self, minute: u64) -> LlmError {
        let per_minute = self.endpoints.iter().any(|e| {
            (e.settings.rpm.is_some() || e.settings.tpm.is_some())
                && !e.state.usage.has_room(minute, e.settings.rpm, e.settings.tpm)
        });
        let wait = if per_minute { until_next_minute() } else { Duration::from_secs(1) };
        LlmError::new(
            ErrorClass::RateLimited,
            format!(
                "Every deployment of model `{}` is at its configured capacity (rpm, tpm or max_parallel); \
                 retry in {} s or raise the limits in the configuration.",
                self.name,
                wait.as_secs().max(1)
            ),
        )
        .with_retry_after(Some(wait))
        .with_code("deployment_capacity")
    }
}
