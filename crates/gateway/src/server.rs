//! The server: bind, serve, shut down gracefully.
//!
//! Refuses to listen beyond loopback without a master key (an open LLM proxy on a network
//! spends someone's money). Accepted sockets get `TCP_NODELAY`: small SSE frames must leave
//! at once, not wait for Nagle's algorithm.

use std::{collections::HashMap, future::Future, net::SocketAddr, sync::Arc, time::Duration};

use axum::{Router, serve::ListenerExt};
use switchyard_router::{RouteTable, shared::SharedState};
use tokio::net::TcpListener;

use crate::{
    app::{AppOptions, router},
    auth::MasterKey,
    config::Config,
    models::build_table,
    settle::Telemetry,
};
use switchyard_telemetry::metrics::Metrics;

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
            },
        );
        let listener =
            TcpListener::bind(listen).await.map_err(|source| StartError::Bind { addr: listen, source })?;
        Ok(Self { listener, app, models, authenticated, _shared: shared })
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

    /// Serves until `shutdown` completes, then lets in-flight requests finish.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) -> std::io::Result<()> {
        let listener = self.listener.tap_io(|tcp| {
            if let Err(err) = tcp.set_nodelay(true) {
                tracing::warn!(%err, "could not set TCP_NODELAY on an accepted connection");
            }
        });
        axum::serve(listener, self.app).with_graceful_shutdown(shutdown).await
    }
}
