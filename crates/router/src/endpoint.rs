//! [`Endpoint`]: one deployment as routing sees it: its service, its settings, and the live
//! state the policies read (requests in flight, latency, usage this minute, health).

use std::{
    fmt,
    sync::{
        Arc, Mutex, MutexGuard, PoisonError,
        atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering},
    },
    time::Duration,
};

use switchyard_types::llm::{LlmError, LlmRequest, LlmResponse};
use tokio::time::Instant;
use tower::util::BoxCloneSyncService;

use crate::{ewma::PeakEwma, health::Health, usage::UsageWindow};

/// A provider deployment as the stack calls it.
pub type DeploymentService = BoxCloneSyncService<LlmRequest, LlmResponse, LlmError>;

/// Prices in dollars per million tokens, for the lowest-cost policy.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Price {
    /// Per million prompt tokens.
    pub input: f64,
    /// Per million completion tokens.
    pub output: f64,
}

/// What the operator configured for a deployment. Every policy honours all of it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EndpointSettings {
    /// Relative share of traffic (0 is treated as 1).
    pub weight: u32,
    /// Requests per minute the deployment may receive.
    pub rpm: Option<u64>,
    /// Tokens per minute the deployment may use.
    pub tpm: Option<u64>,
    /// Requests it may have in flight at once.
    pub max_parallel: Option<u32>,
    /// Its price, for the lowest-cost policy.
    pub price: Option<Price>,
}

/// One deployment of a model group.
#[derive(Clone)]
pub struct Endpoint {
    /// `provider/model`, for headers, logs and metrics.
    pub label: Arc<str>,
    /// The provider, for metrics and traces (by default the label's part before `/`).
    pub provider: Arc<str>,
    /// A name stable across restarts and replicas (`model/index`), for shared state.
    pub key: Arc<str>,
    /// Whether the upstream model is the part of the client's model a wildcard matched.
    pub forwards_model: bool,
    /// The operator's settings.
    pub settings: EndpointSettings,
    pub(crate) service: DeploymentService,
    pub(crate) state: Arc<EndpointState>,
    /// Unique within the process, so that a request's log can tell deployments apart even
    /// when two share a label.
    pub(crate) id: usize,
}

static NEXT_ID: AtomicUsize = AtomicUsize::new(0);

/// What routing knows about a deployment right now.
#[derive(Debug)]
pub(crate) struct EndpointState {
    pub(crate) in_flight: AtomicU32,
    /// Cooldowns started so far.
    pub(crate) cooldowns: AtomicU64,
    pub(crate) latency: Mutex<PeakEwma>,
    pub(crate) usage: UsageWindow,
    pub(crate) health: Mutex<Health>,
}

/// How quickly latency estimates forget (tower's default for peak EWMA).
const LATENCY_DECAY: Duration = Duration::from_secs(10);

// === impl Endpoint ===

impl Endpoint {
    /// A deployment named `label` (and `key` for shared state) served by `service`.
    pub fn new(
        label: impl Into<Arc<str>>,
        key: impl Into<Arc<str>>,
        service: DeploymentService,
        settings: EndpointSettings,
    ) -> Self {
        let label = label.into();
        let provider = Arc::from(label.split('/').next().unwrap_or_default());
        Self {
            label,
            provider,
            key: key.into(),
            forwards_model: false,
            settings,
            service,
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            state: Arc::new(EndpointState {
                in_flight: AtomicU32::new(0),
                cooldowns: AtomicU64::new(0),
                latency: Mutex::new(PeakEwma::new(LATENCY_DECAY, Instant::now())),
                usage: UsageWindow::default(),
                health: Mutex::new(Health::default()),
            }),
        }
    }

    /// Names the deployment's provider (as the OpenTelemetry GenAI conventions spell it).
    pub fn with_provider(mut self, provider: impl Into<Arc<str>>) -> Self {
        self.provider = provider.into();
        self
    }

    /// Cooldowns started so far.
    pub fn cooldowns(&self) -> u64 {
        self.state.cooldowns.load(Ordering::Relaxed)
    }

    /// Marks the deployment as taking its upstream model from a wildcard match.
    pub fn forwarding_model(mut self) -> Self {
        self.forwards_model = true;
        self
    }

    /// Requests in flight now.
    pub fn in_flight(&self) -> u32 {
        self.state.in_flight.load(Ordering::Relaxed)
    }

    /// The deployment's health.
    pub fn health(&self) -> crate::health::State {
        self.state.health().state()
    }

    pub(crate) fn weight(&self) -> f64 {
        f64::from(self.settings.weight.max(1))
    }

    /// Latency estimate in nanoseconds times the requests it would have in flight: the
    /// expected wait of one more request (tower's `PeakEwma` load).
    pub(crate) fn load(&self, now: Instant) -> f64 {
        // A floor of 1 ms keeps requests in flight counting for a deployment not yet measured
        // (or whose estimate has faded), so that one that never answers is not favoured.
        let estimate = self.state.latency().estimate(now) + 1e6;
        estimate * f64::from(self.in_flight() + 1) / self.weight()
    }
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Endpoint")
            .field("label", &self.label)
            .field("key", &self.key)
            .field("settings", &self.settings)
            .field("in_flight", &self.in_flight())
            .finish_non_exhaustive()
    }
}

// === impl EndpointState ===

impl EndpointState {
    pub(crate) fn health(&self) -> MutexGuard<'_, Health> {
        // Plain data behind the locks: a panic elsewhere cannot leave them inconsistent.
        self.health.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn latency(&self) -> MutexGuard<'_, PeakEwma> {
        self.latency.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
