//! The upstream HTTP client: one connection pool for every deployment.
//!
//! Connections are kept alive and reused (HTTP/1.1, or HTTP/2 when the provider offers it in
//! TLS ALPN), with `TCP_NODELAY` set. Some servers (llama.cpp's among them) close a kept-alive
//! connection right after a streamed response without saying so; the next request sent on it
//! fails before any byte of an answer arrives. [`is_stale_connection`] recognises that failure
//! so the adapter can resend the request once on a fresh connection, invisibly to the client.

use std::{error::Error as StdError, io, sync::Once, time::Duration};

/// Settings of the shared upstream client.
#[derive(Debug, Clone)]
pub struct ClientSettings {
    /// How long to wait for a TCP (and TLS) connection.
    pub connect_timeout: Duration,
    /// How long an idle pooled connection is kept.
    pub pool_idle_timeout: Duration,
}

impl Default for ClientSettings {
    fn default() -> Self {
        Self { connect_timeout: Duration::from_secs(10), pool_idle_timeout: Duration::from_secs(90) }
    }
}

/// Builds the shared client. Call once and clone the result: clones share the pool.
pub fn build_client(settings: &ClientSettings) -> Result<reqwest::Client, reqwest::Error> {
    install_crypto_provider();
    reqwest::Client::builder()
        .tcp_nodelay(true)
        .connect_timeout(settings.connect_timeout)
        .pool_idle_timeout(settings.pool_idle_timeout)
        .user_agent(concat!("switchyard/", env!("CARGO_PKG_VERSION")))
        // A gateway answers with what the provider said; following a redirect could send the
        // provider key to another host.
        .redirect(reqwest::redirect::Policy::none())
        // Providers are reached directly; proxy matching cost ~1,400 instructions a request.
        .no_proxy()
        .build()
}

/// Installs the process-wide rustls crypto provider (ring: quick to build, no C toolchain
/// beyond cc). [`build_client`] calls it; call it yourself before building another reqwest
/// client in the same process. Installing twice is harmless: the first one stays.
pub fn install_crypto_provider() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _already_installed = rustls::crypto::ring::default_provider().install_default();
    });
}

/// Sends the request `build` makes; when it died on a pooled connection the provider had
/// already closed ([`is_stale_connection`]), builds it again and sends it once more, on a
/// fresh connection. Every adapter sends through here.
pub async fn send_once_more_if_stale(
    label: &str,
    build: impl Fn() -> reqwest::RequestBuilder,
) -> Result<reqwest::Response, reqwest::Error> {
    match build().send().await {
        Err(err) if is_stale_connection(&err) => {
            tracing::debug!(deployment = %label, "pooled connection was closed by the provider; resending on a fresh one");
            build().send().await
        }
        sent => sent,
    }
}

/// Whether `err` means the request died on a pooled connection the server had already closed,
/// before any part of a response arrived, so that resending it on a new connection is safe.
pub fn is_stale_connection(err: &reqwest::Error) -> bool {
    if err.is_connect() || err.is_timeout() || err.is_body() || err.is_decode() {
        return false;
    }
    let mut source = err.source();
    while let Some(cause) = source {
        if let Some(hyper_err) = cause.downcast_ref::<hyper::Error>()
            && (hyper_err.is_incomplete_message() || hyper_err.is_canceled())
        {
            return true;
        }
        if let Some(io_err) = cause.downcast_ref::<io::Error>()
            && matches!(
                io_err.kind(),
                io::ErrorKind::ConnectionReset
                    | io::ErrorKind::ConnectionAborted
                    | io::ErrorKind::BrokenPipe
                    | io::ErrorKind::UnexpectedEof
            )
        {
            return true;
        }
        source = cause.source();
    }
    false
}
