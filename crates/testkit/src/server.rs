//! [`MockServer`]: the listener, the accept loop and the per-connection task.
//!
//! Connections are served by hyper-util's auto builder (HTTP/1.1, and HTTP/2 with prior
//! knowledge). Each connection task also listens to a [`ConnSignal`], through which a response
//! can ask for what a service cannot do from inside hyper: close the connection once the current
//! response is flushed (`close_after_stream`) or drop it on the spot with a TCP reset (faults).

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::rt::{Read, ReadBufCursor, Write};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;

use crate::fault::{FaultQueue, RandomFaultSource};
use crate::gemini::GoogleAuth;
use crate::prompt_cache::PromptCache;
use crate::record::Recorder;
use crate::stats::{Counters, bump};
use crate::{Fault, MockConfig, RandomFaults, RecordedRequest, Stats};

/// A mock provider listening on a local port; see the [crate documentation](crate).
///
/// Dropping it stops the server too (without waiting); [`MockServer::shutdown`] also waits.
#[derive(Debug)]
pub struct MockServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: CancellationToken,
    task: Option<JoinHandle<()>>,
}

/// State every connection and request of one server shares.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) config: MockConfig,
    pub(crate) counters: Arc<Counters>,
    pub(crate) faults: FaultQueue,
    pub(crate) random_faults: RandomFaultSource,
    pub(crate) recorder: Recorder,
    /// The prompt prefixes marked for caching so far, for the usage of dialects that cache.
    pub(crate) prompt_cache: PromptCache,
    /// Service accounts and access tokens of the Gemini dialect's token endpoint.
    pub(crate) google: GoogleAuth,
    next_id: AtomicU64,
}

/// How a response asks its connection task to end the connection.
#[derive(Debug, Default)]
pub(crate) struct ConnSignal {
    action: AtomicU8,
    notify: Notify,
}

/// How long a connection stays open after a streamed response when `close_after_stream` is set.
const CLOSE_LINGER: std::time::Duration = std::time::Duration::from_millis(10);

const NO_ACTION: u8 = 0;
const CLOSE: u8 = 1;
const RESET: u8 = 2;

/// The socket as hyper sees it; on drop, it turns the close into a reset when one was asked for.
#[derive(Debug)]
struct ConnIo {
    inner: TokioIo<TcpStream>,
    signal: Arc<ConnSignal>,
}

// === impl MockServer ===

impl MockServer {
    /// Starts a server on `127.0.0.1` and a free port.
    pub async fn start(config: MockConfig) -> io::Result<MockServer> {
        Self::start_on(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), config).await
    }

    /// Starts a server on `addr` (port 0 picks a free port).
    pub async fn start_on(addr: SocketAddr, config: MockConfig) -> io::Result<MockServer> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            recorder: Recorder::new(config.record_requests),
            config,
            counters: Arc::default(),
            faults: FaultQueue::default(),
            random_faults: RandomFaultSource::default(),
            prompt_cache: PromptCache::default(),
            google: GoogleAuth::default(),
            next_id: AtomicU64::new(0),
        });
        let stop = CancellationToken::new();
        let task = tokio::spawn(accept_loop(listener, Arc::clone(&shared), stop.clone()));
        Ok(MockServer { addr, shared, stop, task: Some(task) })
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The OpenAI base URL of the server, `http://127.0.0.1:PORT/v1`. A server bound to an
    /// unspecified address (`0.0.0.0`, `::`) is named by the matching loopback address.
    pub fn url(&self) -> String {
        let mut addr = self.addr;
        if addr.ip().is_unspecified() {
            addr.set_ip(match addr.ip() {
                IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
                IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
            });
        }
        format!("http://{addr}/v1")
    }

    /// Queues a fault; the next request without one takes it (first in, first out).
    pub fn push_fault(&self, fault: Fault) {
        self.shared.faults.push(fault);
    }

    /// Draws a fault at random for every later request that finds no queued fault; `None` stops.
    /// Setting it again restarts the generator from the new setting's seed. Queued faults
    /// ([`MockServer::push_fault`]) still come first, and draw nothing.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> std::io::Result<()> {
    /// use switchyard_testkit::{Fault, MockConfig, MockServer, RandomFaults};
    ///
    /// let server = MockServer::start(MockConfig::default()).await?;
    /// // A flaky deployment: 30% of requests fail, the same ones on every run.
    /// server.set_random_faults(Some(
    ///     RandomFaults::new(42, 30)
    ///         .with(Fault::Status { status: 500, body: serde_json::json!({}) }, 1)
    ///         .with(Fault::RateLimited { retry_after_secs: 1 }, 1),
    /// ));
    /// // ... drive traffic, then check `server.stats().random_faults` ...
    /// server.set_random_faults(None); // and it recovers.
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Panics
    ///
    /// When [`RandomFaults::rate_percent`] is above 100, or positive while no fault of the mix has a
    /// positive weight: such a test would not get the faults it asked for.
    pub fn set_random_faults(&self, faults: Option<RandomFaults>) {
        self.shared.random_faults.set(faults);
    }

    /// Tells the token endpoint (`POST /token`, the Gemini dialect's) the service account of a
    /// key file's JSON, as Google knows each account's public key: from then on the JWT grants
    /// that account signs must verify with this key. A grant from an account never registered
    /// is checked for its shape and claims only.
    ///
    /// # Errors
    ///
    /// `InvalidData` when the JSON has no `client_email`, or its `private_key` is not an RSA key
    /// in PKCS#8 PEM.
    pub fn register_service_account(&self, key_file_json: &str) -> io::Result<()> {
        self.shared.google.register(key_file_json).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> Stats {
        self.shared.counters.snapshot()
    }

    /// Every request received since the start or the last [`MockServer::clear`], in order. Empty
    /// when [`MockConfig::record_requests`] is off.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.recorder.snapshot()
    }

    /// Forgets the recorded requests; the counters keep counting.
    pub fn clear(&self) {
        self.shared.recorder.clear();
    }

    /// Stops accepting, drops every open connection (in-flight requests included) and waits for
    /// the server's tasks to end.
    pub async fn shutdown(mut self) {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            // The accept loop does not panic; an error here would only say it was cancelled
            // with its runtime, which leaves nothing to wait for.
            let _ = task.await;
        }
    }
}

impl Drop for MockServer {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

// === impl Shared ===

impl Shared {
    /// The next response number, for ids like `chatcmpl-mock-1`.
    pub(crate) fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed) + 1
    }
}

// === impl ConnSignal ===

impl ConnSignal {
    /// Close the connection once the response in flight has been flushed, without a
    /// `Connection: close` header (the headers are already gone).
    pub(crate) fn close(&self) {
        // A reset already asked for wins over a close.
        let _ = self.action.compare_exchange(NO_ACTION, CLOSE, Ordering::AcqRel, Ordering::Acquire);
        self.notify.notify_one();
    }

    /// Drop the connection now, with a TCP reset.
    pub(crate) fn reset(&self) {
        self.action.store(RESET, Ordering::Release);
        self.notify.notify_one();
    }

    fn resetting(&self) -> bool {
        self.action.load(Ordering::Acquire) == RESET
    }

    /// Whether the connection is closing: a request read now is never answered.
    pub(crate) fn closing(&self) -> bool {
        self.action.load(Ordering::Acquire) == CLOSE
    }
}

// === impl ConnIo ===

impl Read for ConnIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl Write for ConnIo {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
}

impl Drop for ConnIo {
    fn drop(&mut self) {
        if self.signal.resetting() {
            // With a zero linger, closing the socket sends RST instead of FIN. If it cannot be
            // set the close is merely orderly, which still ends the connection.
            let _ = self.inner.inner().set_zero_linger();
        }
    }
}

// === the accept loop and the connection task ===

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, stop: CancellationToken) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // Benchmarks may pipeline; flushing pipelined responses together saves syscalls.
    builder.http1().pipeline_flush(true);
    let builder = Arc::new(builder);
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            biased;
            () = stop.cancelled() => break,
            // Reap finished connection tasks so the set does not grow with every connection.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    bump(&shared.counters.connections);
                    connections.spawn(serve_connection(stream, Arc::clone(&builder), Arc::clone(&shared)));
                }
                // Out of file descriptors or a connection aborted while queued: back off a
                // little rather than spin, and keep serving.
                Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
            },
        }
    }
    drop(listener);
    connections.shutdown().await;
}

async fn serve_connection(
    stream: TcpStream,
    builder: Arc<auto::Builder<TokioExecutor>>,
    shared: Arc<Shared>,
) {
    // Chunks are small and must leave when written; Nagle would hold them back.
    let _ = stream.set_nodelay(true);
    let signal = Arc::new(ConnSignal::default());
    let io = ConnIo { inner: TokioIo::new(stream), signal: Arc::clone(&signal) };
    let service_signal = Arc::clone(&signal);
    let service = service_fn(move |request| {
        crate::service::handle(Arc::clone(&shared), Arc::clone(&service_signal), request)
    });
    let connection = builder.serve_connection(io, service);
    tokio::pin!(connection);
    loop {
        tokio::select! {
            // The connection first: whatever a response wrote before signalling is flushed by
            // the poll that produced the signal, before the signal is looked at.
            biased;
            // An error here is the client's doing (it went away, or spoke garbage): the
            // connection is over either way.
            _ = connection.as_mut() => return,
            () = signal.notify.notified() => match signal.action.load(Ordering::Acquire) {
                // Dropping the connection drops `ConnIo`, which resets the socket.
                RESET => return,
                CLOSE => {
                    // Like llama.cpp's server: the socket closes a moment after the stream
                    // ends, with no `Connection: close`; a request the client sent on it in
                    // the meantime is read but never answered. That window is what makes a
                    // pooled connection go stale under a client's feet.
                    let linger = tokio::time::sleep(CLOSE_LINGER);
                    tokio::pin!(linger);
                    tokio::select! {
                        biased;
                        _ = connection.as_mut() => return,
                        () = linger => return,
                    }
                }
                _ => {}
            },
        }
    }
}
