//! The spend ledger's writer: records go into a queue on the request path and are written to the
//! [`Store`] in batches by a background task, off the request path.
//!
//! [`LedgerHandle::record`] never blocks on I/O and never awaits: it pushes onto a shared inbox
//! (a mutex held for one push). The writer writes a batch when it holds
//! [`LedgerConfig::batch_size`] records or when its oldest record has waited
//! [`LedgerConfig::flush_interval`], so **a crash loses at most one batch window** (the records
//! of the last `flush_interval`, or of one batch being written). A record wakes the writer only
//! when it is the first of a window or fills a batch: at thousands of requests a second, a wake
//! per record (a channel's) would cost the request path more than writing does.
//! [`Ledger::close`] writes everything queued before it returns.
//!
//! Failure behaviour: a failed write keeps its records and is retried with exponential backoff
//! (100 ms doubling to 10 s, with jitter), with a warning that names the database and how many
//! records wait. While the database is down records keep queueing; past 100,000 waiting records
//! the oldest are dropped, counted in [`LedgerStats::dropped`] and logged as errors, so that an
//! outage costs bounded memory. Each record gets its row id before its first write attempt and
//! keeps it, so a retry of a batch whose commit did land (but whose answer was lost) writes
//! nothing twice.
//!
//! ```no_run
//! # async fn demo(store: switchyard_accounting::store::Store, record: switchyard_accounting::model::SpendRecord) {
//! use switchyard_accounting::ledger::{Ledger, LedgerConfig};
//!
//! let ledger = Ledger::start(store, LedgerConfig::default());
//! let handle = ledger.handle(); // cloned into every request's context
//! handle.record(record);
//! let stats = ledger.close().await; // on shutdown
//! assert_eq!(stats.dropped, 0);
//! # }
//! ```

use std::{
    collections::VecDeque,
    future::Future,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use tokio::{
    sync::Notify,
    task::JoinHandle,
    time::{Instant, sleep_until},
};

use crate::{model::SpendRecord, store::Store};

/// The most records kept waiting while the database cannot be written; past it the oldest go.
/// At roughly 1 KiB a record that is about 100 MiB.
pub const MAX_WAITING: usize = 100_000;

const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// How often, at most, the writer logs that it is dropping records.
const DROP_LOG_EVERY: Duration = Duration::from_secs(10);

/// How the writer batches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerConfig {
    /// Records per write (and the size at which a write starts without waiting). Default 256.
    pub batch_size: usize,
    /// The longest a record waits before it is written, when batches do not fill. Default 200 ms.
    pub flush_interval: Duration,
}

impl Default for LedgerConfig {
    fn default() -> Self {
        Self { batch_size: 256, flush_interval: Duration::from_millis(200) }
    }
}

/// What the ledger has done so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LedgerStats {
    /// Records written to the store.
    pub written: u64,
    /// Records lost: dropped past [`MAX_WAITING`] during an outage, or recorded after
    /// [`Ledger::close`].
    pub dropped: u64,
}

/// The running writer. Hand out [`Ledger::handle`]s; call [`Ledger::close`] on shutdown.
#[derive(Debug)]
pub struct Ledger {
    handle: LedgerHandle,
    task: JoinHandle<()>,
}

/// Where requests record their spend. Cheap to clone (an `Arc`).
#[derive(Debug, Clone)]
pub struct LedgerHandle {
    shared: Arc<Shared>,
}

#[derive(Debug, Default)]
struct Shared {
    /// Records not yet taken by the writer.
    inbox: Mutex<Vec<SpendRecord>>,
    /// Wakes the writer: a window starts, a batch is full, or the ledger closes.
    wake: Notify,
    /// Set by the writer when it holds no record, so that the next record wakes it.
    idle: AtomicBool,
    batch_size: usize,
    written: AtomicU64,
    dropped: AtomicU64,
    closed: AtomicBool,
    /// Whether a record after close has been logged, so that a shutdown race logs once.
    told_closed: AtomicBool,
}

impl Shared {
    /// Marks the ledger closed under the inbox's lock and returns the guard.
    fn inbox_closing(&self) -> std::sync::MutexGuard<'_, Vec<SpendRecord>> {
        let inbox = self.inbox();
        self.closed.store(true, Ordering::SeqCst);
        inbox
    }

    fn inbox(&self) -> std::sync::MutexGuard<'_, Vec<SpendRecord>> {
        // Every critical section is one push or one swap: a panic cannot leave it half done.
        self.inbox.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

// === impl Ledger ===

impl Ledger {
    /// Starts the writer on the current Tokio runtime.
    ///
    /// # Panics
    ///
    /// Outside a Tokio runtime (as `tokio::spawn` does).
    pub fn start(store: Store, config: LedgerConfig) -> Ledger {
        let batch_size = config.batch_size.max(1);
        let shared = Arc::new(Shared { batch_size, idle: AtomicBool::new(true), ..Shared::default() });
        let writer = Writer {
            store,
            batch_size,
            flush_interval: config.flush_interval,
            shared: shared.clone(),
            queue: VecDeque::new(),
            oldest_at: None,
            retry_at: None,
            backoff: FIRST_BACKOFF,
            closing: false,
            last_drop_log: None,
            dropped_unlogged: 0,
        };
        let task = tokio::spawn(writer.run());
        Ledger { handle: LedgerHandle { shared }, task }
    }

    /// A handle to record spend with.
    pub fn handle(&self) -> LedgerHandle {
        self.handle.clone()
    }

    /// Stops accepting records (later ones are counted as dropped), writes everything queued
    /// and returns the final counts. It waits as long as the database stays unwritable; bound it
    /// with `tokio::time::timeout` if shutdown must not wait.
    pub fn close(self) -> impl Future<Output = LedgerStats> + Send {
        // Done now, not when the future is first polled: records after this call are refused.
        // Under the inbox's lock, so that no record slips in after the writer's last look.
        drop(self.handle.shared.inbox_closing());
        self.handle.shared.wake.notify_one();
        let Ledger { handle, task } = self;
        async move {
            if let Err(err) = task.await {
                tracing::error!(error = %err, "the spend ledger writer stopped abnormally; queued records are lost");
            }
            handle.stats()
        }
    }
}

// === impl LedgerHandle ===

impl LedgerHandle {
    /// Queues a record for writing. Never blocks, never fails: after [`Ledger::close`] the record
    /// is counted as dropped (and logged once).
    pub fn record(&self, record: SpendRecord) {
        let shared = &*self.shared;
        let mut inbox = shared.inbox();
        if shared.closed.load(Ordering::Relaxed) {
            drop(inbox);
            shared.dropped.fetch_add(1, Ordering::Relaxed);
            if !shared.told_closed.swap(true, Ordering::Relaxed) {
                tracing::error!("a spend record arrived after the ledger was closed and is lost");
            }
            return;
        }
        inbox.push(record);
        let full = inbox.len() >= shared.batch_size;
        drop(inbox);
        if full || shared.idle.swap(false, Ordering::AcqRel) {
            shared.wake.notify_one();
        }
    }

    /// The counts so far.
    pub fn stats(&self) -> LedgerStats {
        LedgerStats {
            written: self.shared.written.load(Ordering::Relaxed),
            dropped: self.shared.dropped.load(Ordering::Relaxed),
        }
    }
}

// === impl Writer ===

/// The background task's state.
struct Writer {
    store: Store,
    batch_size: usize,
    flush_interval: Duration,
    shared: Arc<Shared>,
    /// Records waiting, oldest first, with their row ids once a write was attempted.
    queue: VecDeque<(Option<String>, SpendRecord)>,
    /// When the oldest record still waiting was queued (or the last write succeeded).
    oldest_at: Option<Instant>,
    /// After a failed write: not before this.
    retry_at: Option<Instant>,
    backoff: Duration,
    closing: bool,
    last_drop_log: Option<Instant>,
    dropped_unlogged: u64,
}

impl Writer {
    async fn run(mut self) {
        loop {
            self.take_inbox();
            if self.ready() {
                self.write_batch().await;
                continue;
            }
            if self.closing && self.queue.is_empty() {
                break;
            }
            let wake = self.retry_at.or_else(|| self.oldest_at.map(|at| at + self.flush_interval));
            if self.queue.is_empty() {
                self.shared.idle.store(true, Ordering::Release);
            }
            tokio::select! {
                () = self.shared.wake.notified() => {}
                () = sleep_until(wake.unwrap_or_else(Instant::now)), if wake.is_some() => {}
            }
        }
        self.log_drops(true);
    }

    /// Moves what requests recorded into the queue, and notes whether the ledger is closing.
    fn take_inbox(&mut self) {
        let taken = {
            let mut inbox = self.shared.inbox();
            self.closing = self.shared.closed.load(Ordering::Relaxed);
            std::mem::take(&mut *inbox)
        };
        if taken.is_empty() {
            return;
        }
        self.oldest_at.get_or_insert_with(Instant::now);
        self.queue.extend(taken.into_iter().map(|record| (None, record)));
        let over = self.queue.len().saturating_sub(MAX_WAITING);
        if over > 0 {
            self.queue.drain(..over);
            self.shared.dropped.fetch_add(over as u64, Ordering::Relaxed);
            self.dropped_unlogged += over as u64;
            self.log_drops(false);
        }
    }

    /// Whether to write now: records wait, no backoff is running, and a batch is full, or the
    /// oldest record has waited a flush interval, or the ledger is closing.
    fn ready(&self) -> bool {
        let now = Instant::now();
        !self.queue.is_empty()
            && self.retry_at.is_none_or(|at| at <= now)
            && (self.queue.len() >= self.batch_size
                || self.closing
                || self.oldest_at.is_some_and(|at| at + self.flush_interval <= now))
    }

    async fn write_batch(&mut self) {
        let n = self.queue.len().min(self.batch_size);
        let missing = self.queue.iter().take(n).filter(|(id, _)| id.is_none()).count();
        let mut ids = crate::store::new_spend_ids(missing).into_iter();
        for (id, _) in self.queue.iter_mut().take(n) {
            if id.is_none() {
                *id = ids.next();
            }
        }
        let rows: Vec<(&str, &SpendRecord)> =
            self.queue.iter().take(n).filter_map(|(id, r)| id.as_deref().map(|id| (id, r))).collect();
        match self.store.insert_spend_with_ids(&rows).await {
            Ok(()) => {
                self.queue.drain(..n);
                self.shared.written.fetch_add(n as u64, Ordering::Relaxed);
                self.retry_at = None;
                self.backoff = FIRST_BACKOFF;
                if self.queue.is_empty() {
                    self.oldest_at = None;
                }
            }
            Err(err) => {
                // Jitter, so that replicas that lost the same database do not retry in lockstep.
                let delay = self.backoff.mul_f64(0.8 + 0.4 * fastrand::f64());
                self.retry_at = Some(Instant::now() + delay);
                self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
                tracing::warn!(
                    database = %self.store.url(),
                    waiting = self.queue.len(),
                    retry_in_ms = delay.as_millis() as u64,
                    error = %err,
                    "could not write spend records to {}; keeping the {} waiting records and retrying",
                    self.store.url(),
                    self.queue.len(),
                );
            }
        }
    }

    /// Logs dropped records, at most every [`DROP_LOG_EVERY`] unless `now`.
    fn log_drops(&mut self, now: bool) {
        if self.dropped_unlogged == 0 {
            return;
        }
        let due = self.last_drop_log.is_none_or(|at| at.elapsed() >= DROP_LOG_EVERY);
        if now || due {
            tracing::error!(
                database = %self.store.url(),
                dropped = self.dropped_unlogged,
                dropped_total = self.shared.dropped.load(Ordering::Relaxed),
                "dropped {} spend records: more than {MAX_WAITING} were waiting for {}; their spend is lost",
                self.dropped_unlogged,
                self.store.url(),
            );
            self.dropped_unlogged = 0;
            self.last_drop_log = Some(Instant::now());
        }
    }
}
