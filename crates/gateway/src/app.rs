//! Stack assembly: the HTTP edge, the endpoints and the LLM-level service stack.
//!
//! A request passes through, outermost first (DESIGN.md's request path; steps that arrive
//! with later crates are marked as not built yet):
//!
//! 1. HTTP edge: panic catching (500 in the OpenAI envelope), request id (`x-request-id`,
//!    taken from the client when present, else generated, and echoed on the response), trace
//!    span, and the body size limit (enforced while reading, in decode).
//! 2. Authentication: the master key or a virtual key → the [`Caller`](crate::auth::Caller)
//!    ([`crate::auth`]); the admin API and `/metrics` need an operator.
//! 3. Decode: body → typed request, once ([`crate::decode`]); the key's access to the model.
//! 4. Admission (switchyard-accounting's `AdmissionLayer`): the key's, team's, user's and
//!    model's rate limits, concurrency and budgets; the expected tokens and cost are reserved.
//! 5. Cache: not built yet (switchyard-cache).
//! 6. Router (switchyard-router), outermost first: fallbacks to other models, retries with
//!    backoff and a budget, then the model's group, which picks a deployment by policy,
//!    skips cooling and full ones, and waits for a stream's first chunk; each deployment
//!    sits behind its time limits (time to first token, between chunks, total).
//! 7. Provider: the deployment's adapter (switchyard-providers).
//! 8. Settle ([`crate::settle`]): when the answer ends, its usage (counted with a tokenizer
//!    when the provider reported none) and cost; one spend record to the ledger, the
//!    reservation replaced by the real tokens and cost, metrics, one log line, and the span's
//!    GenAI attributes.
//! 9. Encode: JSON or SSE in the client's dialect ([`crate::encode`]).

use std::{
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{SystemTime, UNIX_EPOCH},
};

use axum::{
    Router,
    extract::Request,
    middleware,
    response::{IntoResponse, Response},
};
use http::{HeaderValue, Method, Uri};
use switchyard_router::{
    RouteTable,
    fallback::{FallbackLayer, Fallbacks},
    retry::{RetryConfig, RetryLayer},
};
use switchyard_types::llm::{ErrorClass, LlmError, LlmRequest, LlmResponse};
use tower::{ServiceBuilder, util::BoxCloneSyncService};
use tower_http::{
    catch_panic::CatchPanicLayer,
    request_id::{MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer},
    trace::TraceLayer,
};

use switchyard_accounting::admission::{AdmissionLayer, AdmissionSettings};

use crate::{
    accounting::Accounts,
    auth::{Authenticator, MasterKey, authenticate, require_operator},
    endpoints, headers,
    respond::error_response,
    settle::Telemetry,
};

/// The LLM-level service below the HTTP edge.
pub type LlmService = BoxCloneSyncService<LlmRequest, LlmResponse, LlmError>;

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    /// The models served.
    pub models: Arc<RouteTable>,
    /// Steps 4–8 of the request path.
    pub stack: LlmService,
    /// Largest request body accepted.
    pub max_body_bytes: usize,
    /// Whether a body's `models` list is taken as the request's fallbacks.
    pub allow_client_fallbacks: bool,
    /// Metrics and request logs.
    pub telemetry: Telemetry,
    /// Keys, the ledger, the meter and prices (behind one `Arc`: the state is cloned for
    /// every request).
    pub accounts: Arc<Accounts>,
    /// Unix seconds at start, reported as models' `created`.
    pub started_at: u64,
}

/// Options of the HTTP application.
#[derive(Clone)]
pub struct AppOptions {
    /// The master key, if clients must present one.
    pub master_key: Option<MasterKey>,
    /// Largest request body accepted.
    pub max_body_bytes: usize,
    /// How failed attempts are retried.
    pub retry: RetryConfig,
    /// Each model's fallbacks.
    pub fallbacks: HashMap<String, Fallbacks>,
    /// Whether a body's `models` list is taken as the request's fallbacks.
    pub allow_client_fallbacks: bool,
    /// Metrics and request logs.
    pub telemetry: Telemetry,
    /// Whether `GET /metrics` is served without the master key.
    pub metrics_open: bool,
    /// Keys, the ledger, the meter and prices.
    pub accounts: Accounts,
    /// How the admission layer limits and prices requests.
    pub admission: AdmissionSettings,
}

/// The LLM-level stack (steps 4–8) over `models`.
pub fn llm_stack(
    models: &Arc<RouteTable>,
    admission: AdmissionLayer,
    retry: RetryConfig,
    fallbacks: HashMap<String, Fallbacks>,
) -> LlmService {
    BoxCloneSyncService::new(
        ServiceBuilder::new()
            .layer(admission)
            .layer(FallbackLayer::new(fallbacks))
            .layer(RetryLayer::new(retry))
            .service(models.dispatch()),
    )
}

/// The complete HTTP application.
pub fn router(models: Arc<RouteTable>, options: AppOptions) -> Router {
    let admission = AdmissionLayer::new(options.accounts.meter.clone(), options.admission);
    let state = AppState {
        stack: llm_stack(&models, admission, options.retry, options.fallbacks),
        models,
        max_body_bytes: options.max_body_bytes,
        allow_client_fallbacks: options.allow_client_fallbacks,
        telemetry: options.telemetry.clone(),
        accounts: Arc::new(options.accounts.clone()),
        started_at: SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()),
    };
    let mut operator = endpoints::admin();
    let mut probes = endpoints::probes();
    if options.telemetry.metrics.is_some() {
        if options.metrics_open {
            probes = probes.merge(endpoints::metrics());
        } else {
            operator = operator.merge(endpoints::metrics());
        }
    }
    // Shared, not cloned per request: the key cache's handles are several reference counts.
    let auth = Arc::new(Authenticator { master: options.master_key, keys: options.accounts.keys.clone() });
    let api = endpoints::api().merge(operator.layer(middleware::from_fn(require_operator))).layer(
        middleware::from_fn(move |request: Request, next: middleware::Next| {
            authenticate(Arc::clone(&auth), request, next)
        }),
    );
    let request_id = http::HeaderName::from_static(headers::REQUEST_ID);
    Router::new()
        .merge(api)
        .merge(probes)
        .fallback(unknown_route)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
        .layer(
            ServiceBuilder::new()
                .layer(CatchPanicLayer::custom(|_panic| {
                    error_response(&LlmError::new(
                        ErrorClass::Internal,
                        "The gateway hit an internal error while handling this request; it has been logged.",
                    ))
                }))
                .layer(SetRequestIdLayer::new(request_id.clone(), RequestIds::new()))
                .layer(PropagateRequestIdLayer::new(request_id))
                .layer(TraceLayer::new_for_http()),
        )
}

async fn unknown_route(method: Method, uri: Uri) -> Response {
    error_response(&LlmError::new(
        ErrorClass::NotFound,
        format!(
            "There is no {method} {} on this gateway. It serves POST /v1/chat/completions, POST /v1/embeddings, GET /v1/models, and the admin API under /admin (GET /admin/openapi.json describes it).",
            uri.path()
        ),
    ))
    .into_response()
}

async fn method_not_allowed(method: Method, uri: Uri) -> Response {
    let mut response = error_response(&LlmError::new(
        ErrorClass::BadRequest,
        format!("{method} is not allowed on {}.", uri.path()),
    ));
    *response.status_mut() = http::StatusCode::METHOD_NOT_ALLOWED;
    response
}

/// Request ids: a per-process random prefix and a counter; cheap, unique, and sortable
/// within a process.
#[derive(Clone)]
struct RequestIds {
    prefix: u32,
    next: Arc<AtomicU64>,
}

impl RequestIds {
    fn new() -> Self {
        // Process start time mixed with the pid: distinct across replicas and restarts.
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
        Self { prefix: nanos ^ std::process::id().rotate_left(16), next: Arc::new(AtomicU64::new(1)) }
    }
}

impl MakeRequestId for RequestIds {
    fn make_request_id<B>(&mut self, _request: &http::Request<B>) -> Option<RequestId> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        HeaderValue::try_from(format!("sy-{:08x}-{n}", self.prefix)).ok().map(RequestId::new)
    }
}
