//! [`AdmissionLayer`]: step 4 of the request path, the client's rate limits and budgets.
//!
//! For each request the layer gathers the limits that apply to it: its key's, its team's and
//! its user's (from the [`Identity`] an outer layer put in the request's extensions) and its
//! model's ([`AdmissionSettings::model_limits`]). It asks the [`Meter`] to admit the request
//! against all of them at once: one request per minute and one in flight, and its expected
//! tokens and cost reserved against token limits and budgets. A refused request never reaches
//! the router: it fails with [`ErrorClass::LimitExceeded`] or [`ErrorClass::BudgetExceeded`],
//! a message that says which limit and when it resets, and `retry_after`.
//!
//! What the meter decided is written to the request's [`AdmissionSlot`] (when an outer layer
//! put one in the extensions, as the gateway does): the standings for the `x-ratelimit-*`
//! headers, and the [`Grant`] that the settle step replaces with the real tokens and cost when
//! the answer ends. A request with no limits at all is passed through without a meter call.
//!
//! The expected cost is `price × (prompt estimate + max output)`, with the prompt estimated
//! from the body's size ([`RequestSize`], four bytes a token) rather than tokenised, because
//! tokenising every prompt would cost more than the whole gateway on the hot path; the output
//! is the request's `max_tokens` / `max_completion_tokens`, else
//! [`AdmissionSettings::reserve_output_tokens`].
//!
//! ```
//! use std::sync::Arc;
//! use switchyard_accounting::admission::{AdmissionLayer, AdmissionSettings};
//! use switchyard_accounting::meter::{Meter, SpentSource};
//! # fn layer(spent: Arc<dyn SpentSource>) {
//! let meter = Meter::in_memory(spent);
//! let layer = AdmissionLayer::new(meter, AdmissionSettings::default());
//! # let _ = layer; }
//! ```

use std::{
    collections::HashMap,
    fmt,
    future::Future,
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll},
};

use pin_project_lite::pin_project;
use switchyard_types::llm::{ErrorClass, LlmError, LlmRequest, LlmResponse, Operation};
use tower::{Layer, Service};

use crate::{
    meter::{Charge, Grant, Meter, MeterKind, Refusal, Standing},
    model::{Identity, Limits, Scope, now_ms, to_nanos, to_usd},
    period::format_utc,
    prices::{Price, estimate_nanos},
    tokens,
};

/// The price to expect for a request: `(configured model, client's model) -> price`.
pub type PriceOf = Arc<dyn Fn(&str, &str) -> Option<Price> + Send + Sync>;

/// How the layer prices and limits requests.
#[derive(Clone)]
pub struct AdmissionSettings {
    /// Limits per configured model name, for all of its clients together.
    pub model_limits: HashMap<String, Limits>,
    /// The price to expect for a request, given the configured model name it resolved to and
    /// the model the client named (they differ under a wildcard name): the dearest of the
    /// model's deployments, so that a reservation does not fall short.
    pub price_of: PriceOf,
    /// Completion tokens reserved when a request sets no maximum.
    pub reserve_output_tokens: u64,
}

impl Default for AdmissionSettings {
    fn default() -> Self {
        Self { model_limits: HashMap::new(), price_of: Arc::new(|_, _| None), reserve_output_tokens: 512 }
    }
}

impl fmt::Debug for AdmissionSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdmissionSettings")
            .field("model_limits", &self.model_limits)
            .field("reserve_output_tokens", &self.reserve_output_tokens)
            .finish_non_exhaustive()
    }
}

/// The size of the request body in bytes, in the request's extensions, for the prompt estimate.
#[derive(Debug, Clone, Copy)]
pub struct RequestSize(pub usize);

/// The configured model name a request resolved to, in the request's extensions (its model
/// limits are looked up by it; a wildcard group's name, not the client's full model name).
#[derive(Debug, Clone)]
pub struct ResolvedModel(pub Arc<str>);

/// What admission decided for one request, shared between the layer and the code that put it
/// in the request's extensions.
#[derive(Clone, Default)]
pub struct AdmissionSlot(Arc<Mutex<Decision>>);

/// The contents of an [`AdmissionSlot`].
#[derive(Default)]
pub struct Decision {
    /// Where each limit stands after this request was admitted.
    pub standings: Vec<Standing>,
    /// The limit that refused it.
    pub refusal: Option<Refusal>,
    /// What was reserved, to settle when the request ends.
    pub grant: Option<Grant>,
}

impl AdmissionSlot {
    /// The request's slot, created on first use.
    pub fn of(request: &mut LlmRequest) -> AdmissionSlot {
        request.extensions.get_or_insert_default::<AdmissionSlot>().clone()
    }

    /// Runs `f` on the decision.
    pub fn with<R>(&self, f: impl FnOnce(&mut Decision) -> R) -> R {
        let mut decision = match self.0.lock() {
            Ok(decision) => decision,
            // A panic elsewhere cannot leave a decision half-written: every write is one assignment.
            Err(poisoned) => poisoned.into_inner(),
        };
        f(&mut decision)
    }

    /// Takes the grant out, to settle it.
    pub fn take_grant(&self) -> Option<Grant> {
        self.with(|d| d.grant.take())
    }
}

/// Admits requests against their limits; see the module documentation.
#[derive(Clone, Debug)]
pub struct AdmissionLayer {
    meter: Meter,
    settings: Arc<AdmissionSettings>,
}

impl AdmissionLayer {
    /// A layer counting on `meter`.
    pub fn new(meter: Meter, settings: AdmissionSettings) -> Self {
        Self { meter, settings: Arc::new(settings) }
    }
}

impl<S> Layer<S> for AdmissionLayer {
    type Service = Admission<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Admission { inner, meter: self.meter.clone(), settings: Arc::clone(&self.settings) }
    }
}

/// The service [`AdmissionLayer`] builds.
#[derive(Clone, Debug)]
pub struct Admission<S> {
    inner: S,
    meter: Meter,
    settings: Arc<AdmissionSettings>,
}

// === impl Admission ===

impl<S> Admission<S> {
    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

/// The meter's answer, in flight: boxed, because [`Meter::admit`] is an `async fn` (a Redis
/// round trip when limits are shared), and only requests that have limits wait for one.
type Admitting = Pin<Box<dyn Future<Output = Result<(), LlmError>> + Send>>;

pin_project! {
    /// The future of [`Admission`]: the inner service's own future for a request without
    /// limits (no allocation), else the meter's answer and then the inner call.
    pub struct AdmissionFuture<S>
    where
        S: Service<LlmRequest>,
    {
        #[pin]
        state: State<S>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S>
    where
        S: Service<LlmRequest>,
    {
        // Waiting for the meter; then `inner` (the service polled ready) is called with `request`.
        Admitting { admit: Admitting, inner: Option<S>, request: Option<LlmRequest> },
        // Admitted, or nothing to admit: the inner service's answer.
        Inner { #[pin] future: S::Future },
    }
}

impl<S> Future for AdmissionFuture<S>
where
    S: Service<LlmRequest, Response = LlmResponse, Error = LlmError>,
{
    type Output = Result<LlmResponse, LlmError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.project().state;
        loop {
            match state.as_mut().project() {
                StateProj::Inner { future } => return future.poll(cx),
                StateProj::Admitting { admit, inner, request } => {
                    if let Err(error) = std::task::ready!(admit.as_mut().poll(cx)) {
                        return Poll::Ready(Err(error));
                    }
                    let (Some(mut inner), Some(request)) = (inner.take(), request.take()) else {
                        return Poll::Ready(Err(LlmError::new(
                            ErrorClass::Internal,
                            "admission was polled after it completed",
                        )));
                    };
                    let future = inner.call(request);
                    state.set(State::Inner { future });
                }
            }
        }
    }
}

impl<S> Service<LlmRequest> for Admission<S>
where
    S: Service<LlmRequest, Response = LlmResponse, Error = LlmError> + Clone,
{
    type Response = LlmResponse;
    type Error = LlmError;
    type Future = AdmissionFuture<S>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: LlmRequest) -> Self::Future {
        let charges = charges(&request, &self.settings);
        if charges.is_empty() {
            return AdmissionFuture { state: State::Inner { future: self.inner.call(request) } };
        }
        // The clone is the one that was polled ready; the one left behind is not.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        let meter = self.meter.clone();
        let slot = request.extensions.get::<AdmissionSlot>().cloned();
        let admit = Box::pin(async move {
            match meter.admit(charges, now_ms()).await {
                Ok(admitted) => {
                    if let Some(slot) = &slot {
                        slot.with(|d| {
                            d.standings = admitted.standings;
                            d.grant = Some(admitted.grant);
                        });
                    }
                    Ok(())
                }
                Err(refusal) => {
                    let error = refused(&refusal);
                    if let Some(slot) = &slot {
                        slot.with(|d| d.refusal = Some(refusal));
                    }
                    Err(error)
                }
            }
        });
        AdmissionFuture { state: State::Admitting { admit, inner: Some(inner), request: Some(request) } }
    }
}

/// Every limit that applies to `request`, with what it reserves.
fn charges(request: &LlmRequest, settings: &AdmissionSettings) -> Vec<Charge> {
    let identity = request.extensions.get::<Arc<Identity>>();
    let model = request.extensions.get::<ResolvedModel>().map(|m| &*m.0);
    let mut scoped: Vec<(Scope, &Limits)> = Vec::with_capacity(4);
    if let Some(identity) = identity {
        scoped.push((Scope::Key(identity.key.id.clone()), &identity.key.limits));
        if let Some(team) = &identity.team {
            scoped.push((Scope::Team(team.id.clone()), &team.limits));
        }
        if let Some(user) = &identity.user {
            scoped.push((Scope::User(user.id.clone()), &user.limits));
        }
    }
    if let Some(limits) = model.and_then(|m| settings.model_limits.get(m)) {
        scoped.push((Scope::Model(model.unwrap_or_default().to_owned()), limits));
    }
    scoped.retain(|(_, limits)| !limits.is_unlimited());
    if scoped.is_empty() {
        return Vec::new();
    }

    let size = request.extensions.get::<RequestSize>().map_or(0, |s| s.0);
    let prompt = tokens::estimate_prompt_tokens(size);
    let output = match &request.op {
        Operation::Chat(chat) => tokens::max_output_tokens(chat).unwrap_or(settings.reserve_output_tokens),
        Operation::Messages(messages) => messages.max_tokens.unwrap_or(settings.reserve_output_tokens),
        Operation::Embeddings(_) => 0,
    };
    let price = model.and_then(|m| (settings.price_of)(m, request.model()));
    let nanos = price.map_or(0, |p| estimate_nanos(&p, prompt, output));
    let tokens = i64::try_from(prompt.saturating_add(output)).unwrap_or(i64::MAX);

    let mut charges = Vec::new();
    for (scope, limits) in scoped {
        let count = |limit: Option<u64>| limit.map(|l| i64::try_from(l).unwrap_or(i64::MAX));
        let mut add = |kind: MeterKind, limit: Option<i64>, amount: i64| {
            if let Some(limit) = limit {
                charges.push(Charge { scope: scope.clone(), kind, limit, amount });
            }
        };
        add(MeterKind::Requests, count(limits.rpm), 1);
        add(MeterKind::Tokens, count(limits.tpm), tokens);
        add(MeterKind::Parallel, count(limits.max_parallel), 1);
        add(MeterKind::Budget(limits.budget_period), limits.budget_usd.map(to_nanos), nanos);
    }
    charges
}

/// The client's error for a refusal: which limit, how far it is used, and when it resets.
fn refused(refusal: &Refusal) -> LlmError {
    let whose = match &refusal.scope {
        Scope::Key(id) => format!("This key ({id})"),
        Scope::Team(id) => format!("Team `{id}`"),
        Scope::User(id) => format!("User `{id}`"),
        Scope::Model(name) => format!("Model `{name}`"),
    };
    let resets =
        refusal.resets_at_ms.map(|at| format!(" It resets at {}.", format_utc(at))).unwrap_or_default();
    let (class, message) = match refusal.kind {
        MeterKind::Requests => (
            ErrorClass::LimitExceeded,
            format!(
                "{whose} has reached its limit of {} requests per minute.{resets} Retry after the time in Retry-After, or ask an admin to raise the limit.",
                refusal.limit
            ),
        ),
        MeterKind::Tokens => (
            ErrorClass::LimitExceeded,
            format!(
                "{whose} has reached its limit of {} tokens per minute ({} used or reserved).{resets} Retry after the time in Retry-After, or ask an admin to raise the limit.",
                refusal.limit, refusal.used
            ),
        ),
        MeterKind::Parallel => (
            ErrorClass::LimitExceeded,
            format!(
                "{whose} already has {} requests in flight, its limit. Retry when one of them has finished, or ask an admin to raise max_parallel.",
                refusal.used
            ),
        ),
        MeterKind::Budget(period) => {
            let per = match period {
                crate::model::Period::None => String::new(),
                other => format!(" {}", other.as_str()),
            };
            (
                ErrorClass::BudgetExceeded,
                format!(
                    "{whose} has used its{per} budget of ${:.2} (${:.4} spent or reserved).{resets} Ask an admin to raise the budget.",
                    to_usd(refusal.limit),
                    to_usd(refusal.used)
                ),
            )
        }
    };
    LlmError::new(class, message).with_retry_after(refusal.retry_after)
}
