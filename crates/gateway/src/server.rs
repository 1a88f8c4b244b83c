//! The server: bind, serve, shut down gracefully.
//!
//! Refuses to listen beyond loopback without a master key (an open LLM proxy on a network
//! spends someone's money). Accepted sockets get `TCP_NODELAY`: small SSE frames must leave
//! at once, not wait for Nagle's algorithm. On shutdown, in-flight requests finish first
//! (streams included), then the ledger writes every spend record still queued.

use std::{collections::HashMap, future::Future, net::SocketAddr, sync::Arc, time::Duration};

use axum::{Router, serve::ListenerExt};
use switchyard_router::{RouteTable, shared::SharedState};
use tokio::net::TcpListener;

use switchyard_accounting::{
    admission::AdmissionSettings,
    ledger::{Ledger, LedgerStats},
    model::Limits,
};

use crate::{
    accounting::{self, AccountingError, Accounts},
    app::{AppOptions, router},
    auth::MasterKey,
    config::Config,
    models::build_table,
    settle::Telemetry,
};
use switchyard_telemetry::metrics::Metrics;

/// The longest a stop waits for the ledger to write what it still holds.
const LEDGER_CLOSE_TIMEOUT: Duration = Duration::from_secs(30);

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Listening beyond loopback without a master key.
    #[error(
        "refusing to listen on {0} without a master key: anyone who can reach it could spend your provider credits. \
         Set server.master_key (e.g. master_key: ${{SWITCHYARD_MASTER_KEY}}) or listen on 127.0.0.1"
    )]
    OpenToNetwork(SocketAddr),
    /// Redis is configured but could not be used.
    #[error("{0}; start Redis or remove `redis:` from the configuration to keep routing state per replica")]
    Redis(#[from] switchyard_router::shared::SharedError),
    /// A deployment could not be built.
    #[error(transparent)]
    Deployment(#[from] crate::models::BuildError),
    /// The database or the shared limits could not be used.
    #[error(transparent)]
    Accounting(#[from] AccountingError),
    /// The address could not be bound.
    #[error(
        "cannot listen on {addr}: {source} (is another process using the port? choose another with --listen)"
    )]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
}

/// A gateway bound to its address, ready to serve.
pub struct Server {
    listener: TcpListener,
    app: Router,
    models: Arc<RouteTable>,
    authenticated: bool,
    accounts: Accounts,
    ledger: Ledger,
    /// Shares routing state through Redis while the server lives.
    _shared: Option<SharedState>,
}

impl Server {
    /// Builds every deployment of `config` and binds its listen address.
    pub async fn bind(config: &Config, env: &HashMap<String, String>) -> Result<Self, StartError> {
        let listen = config.server.listen;
        let master_key = config.server.master_key.as_ref().map(|k| MasterKey::new(k.expose()));
        if master_key.is_none() && !listen.ip().is_loopback() {
            return Err(StartError::OpenToNetwork(listen));
        }
        let models = Arc::new(build_table(config, env)?);
        let shared = match &config.redis {
            Some(redis) => Some(
                SharedState::start(
                    redis.url.expose(),
                    Arc::clone(&models),
                    Duration::from_millis(redis.sync_interval_ms.max(10)),
                )
                .await?,
            ),
            None => None,
        };
        let (accounts, ledger) = accounting::start(config, &models).await?;
        let authenticated = master_key.is_some();
        let app = router(
            Arc::clone(&models),
            AppOptions {
                master_key,
                max_body_bytes: config.server.max_body_bytes,
                retry: config.router.retry(),
                fallbacks: config.fallbacks(),
                allow_client_fallbacks: config.router.allow_client_fallbacks,
                telemetry: Telemetry {
                    metrics: config.telemetry.metrics.enabled.then(|| Arc::new(Metrics::new())),
                    request_logs: config.telemetry.request_logs,
                },
                metrics_open: !config.telemetry.metrics.require_key,
                accounts: accounts.clone(),
                admission: admission_settings(config, &accounts),
            },
        );
        let listener =
            TcpListener::bind(listen).await.map_err(|source| StartError::Bind { addr: listen, source })?;
        Ok(Self { listener, app, models, authenticated, accounts, ledger, _shared: shared })
    }

    /// Keys, the ledger's store, the meter and prices (for tests and embedders).
    pub fn accounts(&self) -> &Accounts {
        &self.accounts
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The models being served.
    pub fn models(&self) -> &Arc<RouteTable> {
        &self.models
    }

    /// Whether clients must present the master key.
    pub fn is_authenticated(&self) -> bool {
        self.authenticated
    }

    /// Serves until `shutdown` completes, lets in-flight requests finish, then writes every
    /// spend record still queued.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) -> std::io::Result<()> {
        let listener = self.listener.tap_io(|tcp| {
            if let Err(err) = tcp.set_nodelay(true) {
                tracing::warn!(%err, "could not set TCP_NODELAY on an accepted connection");
            }
        });
        let served = axum::serve(listener, self.app).with_graceful_shutdown(shutdown).await;
        // The ledger retries while its database is down; a stop must still end.
        match tokio::time::timeout(LEDGER_CLOSE_TIMEOUT, self.ledger.close()).await {
            Ok(LedgerStats { written, dropped: 0 }) => {
                tracing::info!(written, "spend ledger closed: every record written");
            }
            Ok(LedgerStats { written, dropped }) => {
                tracing::error!(written, dropped, "spend ledger closed: some records could not be written");
            }
            Err(_) => tracing::error!(
                "spend ledger: the database did not take the last records within {LEDGER_CLOSE_TIMEOUT:?}; they are lost"
            ),
        }
        served
    }
}

/// The admission layer's settings: each model's client limits, and prices for reservations.
fn admission_settings(config: &Config, accounts: &Accounts) -> AdmissionSettings {
    let model_limits = config
        .models
        .iter()
        .map(|m| {
            let limits = Limits {
                rpm: m.limits.rpm,
                tpm: m.limits.tpm,
                max_parallel: m.limits.max_parallel,
                ..Limits::default()
            };
            (m.name.value.clone(), limits)
        })
        .filter(|(_, limits)| !limits.is_unlimited())
        .collect();
    let prices = Arc::clone(&accounts.prices);
    AdmissionSettings {
        model_limits,
        price_of: Arc::new(move |model, requested| prices.dearest(model, requested)),
        reserve_output_tokens: config.accounting.reserve_output_tokens,
    }
}
