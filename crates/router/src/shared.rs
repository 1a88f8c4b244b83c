//! Routing state shared between replicas through Redis: cooldowns and per-minute usage.
//!
//! Without it each replica keeps its own counts and cooldowns, which is right for one replica
//! and approximate for several. With it:
//! - a cooldown that starts on one replica is written at once (`SET switchyard:cooldown:<key>
//!   <until-ms> PX <length>`), and every replica reads all cooldowns each sync;
//! - each sync adds the requests and tokens a replica admitted since the last one to the
//!   minute's shared counters (`HINCRBY switchyard:usage:<key>:<minute>`, expiring after two
//!   minutes) and takes back the totals, so that `rpm`/`tpm` hold across replicas to within
//!   what they admit in one sync interval.
//!
//! Writes happen on a background task, never on a request's path. When Redis is unreachable
//! the task logs it (once per outage), keeps counting locally, and catches up when it is back:
//! counts not shared yet are added then, and cooldowns that are not over yet are written then.

use std::{
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use redis::aio::ConnectionManager;
use tokio::{sync::mpsc, task::JoinHandle, time::Instant};

use crate::{
    group::CooldownEvent,
    table::RouteTable,
    usage::{Counts, current_minute},
};

/// Why the shared state could not start.
#[derive(Debug, thiserror::Error)]
pub enum SharedError {
    /// The URL is not a Redis URL.
    #[error("`{url}` is not a valid Redis URL: {source}")]
    BadUrl {
        /// The URL, without its password.
        url: String,
        /// Why.
        source: redis::RedisError,
    },
    /// Redis did not answer.
    #[error("could not reach Redis at {url}: {reason}")]
    Unreachable {
        /// The URL, without its password.
        url: String,
        /// Why.
        reason: String,
    },
}

/// The running sync task; dropping it stops the task.
#[derive(Debug)]
pub struct SharedState {
    task: JoinHandle<()>,
}

impl Drop for SharedState {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl SharedState {
    /// Connects to Redis at `url` and shares `table`'s state every `interval`.
    pub async fn start(url: &str, table: Arc<RouteTable>, interval: Duration) -> Result<Self, SharedError> {
        let shown = redact(url);
        let client =
            redis::Client::open(url).map_err(|source| SharedError::BadUrl { url: shown.clone(), source })?;
        // One plain connection first, for its own error: the connection manager retries a
        // refused connection with backoff for longer than the wait below, so that without
        // this a Redis that is down would only be reported, after 5 s, as not answering.
        let connect = async {
            drop(client.get_multiplexed_async_connection().await?);
            ConnectionManager::new(client).await
        };
        let connection = match tokio::time::timeout(Duration::from_secs(5), connect).await {
            Ok(Ok(connection)) => connection,
            Ok(Err(e)) => return Err(SharedError::Unreachable { url: shown, reason: e.to_string() }),
            Err(_) => {
                return Err(SharedError::Unreachable { url: shown, reason: "no answer within 5 s".into() });
            }
        };
        let (events, receiver) = mpsc::unbounded_channel();
        // A table is shared by one sync task; a second start keeps the first one's channel.
        let _ = table.cooldowns.set(events);
        let sync = Sync { connection, table, healthy: true, unpublished: Vec::new() };
        Ok(Self { task: tokio::spawn(sync.run(receiver, interval)) })
    }
}

struct Sync {
    connection: ConnectionManager,
    table: Arc<RouteTable>,
    /// Whether the last exchange worked, so that an outage is logged once.
    healthy: bool,
    /// Cooldowns Redis did not take (key, until in Unix ms), sent again each sync until they
    /// are taken or over.
    unpublished: Vec<(Arc<str>, u64)>,
}

impl Sync {
    async fn run(mut self, mut events: mpsc::UnboundedReceiver<CooldownEvent>, interval: Duration) {
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                event = events.recv() => match event {
                    Some(event) => {
                        let until = unix_ms() + event.length.as_millis() as u64;
                        let result = self.publish(&event.key, until).await;
                        if result.is_err() {
                            self.unpublished.push((event.key, until));
                        }
                        self.note(result);
                    }
                    None => return,
                },
                _ = ticks.tick() => {
                    let result = self.sync().await;
                    self.note(result);
                }
            }
        }
    }

    fn note(&mut self, result: redis::RedisResult<()>) {
        match result {
            Ok(()) if !self.healthy => {
                tracing::info!("Redis is reachable again; routing state is shared between replicas");
                self.healthy = true;
            }
            Err(e) if self.healthy => {
                tracing::warn!(error = %e, "Redis is unreachable; cooldowns and usage are counted on this replica only until it is back");
                self.healthy = false;
            }
            _ => {}
        }
    }

    /// Writes a cooldown of the deployment `key` until `until` (Unix ms).
    async fn publish(&mut self, key: &str, until: u64) -> redis::RedisResult<()> {
        let px = until.saturating_sub(unix_ms()).max(1);
        redis::cmd("SET")
            .arg(cooldown_key(key))
            .arg(until)
            .arg("PX")
            .arg(px)
            .query_async::<()>(&mut self.connection)
            .await
    }

    async fn sync(&mut self) -> redis::RedisResult<()> {
        let now_ms = unix_ms();
        let mut unpublished = std::mem::take(&mut self.unpublished);
        unpublished.retain(|&(_, until)| until > now_ms);
        while let Some((key, until)) = unpublished.pop() {
            if let Err(e) = self.publish(&key, until).await {
                unpublished.push((key, until));
                self.unpublished = unpublished;
                return Err(e);
            }
        }
        let minute = current_minute();
        let endpoints: Vec<_> = self.table.endpoints().cloned().collect();
        if endpoints.is_empty() {
            return Ok(());
        }
        let taken: Vec<Counts> = endpoints.iter().map(|e| e.state.usage.take_unsynced(minute)).collect();
        let mut pipe = redis::pipe();
        for (endpoint, counts) in endpoints.iter().zip(&taken) {
            let key = usage_key(&endpoint.key, minute);
            pipe.cmd("HINCRBY").arg(&key).arg("requests").arg(counts.requests);
            pipe.cmd("HINCRBY").arg(&key).arg("tokens").arg(counts.tokens);
            pipe.cmd("EXPIRE").arg(&key).arg(120).ignore();
        }
        let totals: Vec<u64> = match pipe.query_async(&mut self.connection).await {
            Ok(totals) => totals,
            Err(e) => {
                for (endpoint, counts) in endpoints.iter().zip(taken) {
                    endpoint.state.usage.restore_unsynced(minute, counts);
                }
                return Err(e);
            }
        };
        for (endpoint, pair) in endpoints.iter().zip(totals.chunks(2)) {
            if let [requests, tokens] = pair {
                endpoint.state.usage.set_shared(minute, Counts { requests: *requests, tokens: *tokens });
            }
        }

        let keys: Vec<String> = endpoints.iter().map(|e| cooldown_key(&e.key)).collect();
        let until: Vec<Option<u64>> = redis::cmd("MGET").arg(&keys).query_async(&mut self.connection).await?;
        let now_ms = unix_ms();
        let now = Instant::now();
        for (endpoint, until) in endpoints.iter().zip(until) {
            let shared = until.filter(|&u| u > now_ms).map(|u| now + Duration::from_millis(u - now_ms));
            endpoint.state.health().set_shared_cooldown(shared);
        }
        Ok(())
    }
}

fn cooldown_key(key: &str) -> String {
    format!("switchyard:cooldown:{key}")
}

fn usage_key(key: &str, minute: u64) -> String {
    format!("switchyard:usage:{key}:{minute}")
}

fn unix_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// The URL without its password, for messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => format!("{}://***@{}", &url[..scheme], &url[at + 1..]),
        _ => url.to_owned(),
    }
}
