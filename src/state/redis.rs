//! Redis as the replicas' shared state.
//!
//! Revocations live in one sorted set (member: the revocation as JSON, score: its `until`), so
//! a replica loads every live one with a single `ZRANGEBYSCORE`, and expired ones are pruned on
//! every write; each new one is also published on a channel that every replica subscribes to.
//!
//! **No event is missed between the load and the subscription**: a (re)connecting replica first
//! subscribes (Redis confirms), then loads the set, then reads the messages that arrived
//! meanwhile, which were buffered on the subscription connection. Applying a revocation twice
//! is a no-op, so the overlap is harmless.
//!
//! While the subscription is down the replica reconnects with exponential backoff (100 ms to
//! 5 s) and reloads the whole set when it is back; `fapi_guard_state_backend_up` says which.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use futures_util::StreamExt;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use serde::{Deserialize, Serialize};

use super::config::{OnUnavailable, RedisSettings};
use crate::revocation::{Revocation, Revocations, Source, metrics as rmetrics};

/// How long one Redis command or connection attempt may take before it counts as a failure.
const COMMAND_TIMEOUT: Duration = Duration::from_millis(500);
/// Liveness probe on the subscription connection (a silent network partition gives no FIN).
const PING_EVERY: Duration = Duration::from_secs(2);
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// Revocations accepted from the store or the channel at most per message (bounded parsing).
const MAX_MESSAGE_BYTES: usize = 8 * 1024;

/// Why the shared store could not be used.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("not connected")]
    NotConnected,
    /// The error category only: Redis error texts may echo keys or the URL.
    #[error("redis: {0}")]
    Redis(&'static str),
    #[error("timed out")]
    Timeout,
}

fn redis_err(e: redis::RedisError) -> StateError {
    StateError::Redis(if e.is_connection_refusal() {
        "connection refused"
    } else if e.is_timeout() {
        "timeout"
    } else if e.is_io_error() || e.is_connection_dropped() {
        "connection lost"
    } else if e.kind() == redis::ErrorKind::TypeError {
        "unexpected reply"
    } else {
        "command failed"
    })
}

/// A revocation on the channel, with the replica that sent it (which skips its own).
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Message {
    origin: String,
    rev: Revocation,
}

pub struct RedisState {
    settings: RedisSettings,
    client: redis::Client,
    /// Commands (writes, loads, replay checks). `None` until the first connection succeeds;
    /// afterwards the manager reconnects by itself.
    conn: ArcSwapOption<ConnectionManager>,
    /// Subscribed and loaded: the in-memory set is complete.
    up: AtomicBool,
    /// The first connection attempt has finished (successfully or not).
    tried: AtomicBool,
    /// This process, so it can ignore its own messages.
    origin: String,
    metrics: rmetrics::RevocationMetrics,
}

impl RedisState {
    pub fn new(
        settings: RedisSettings,
        metrics: rmetrics::RevocationMetrics,
    ) -> Result<Self, String> {
        let client = redis::Client::open(settings.url.as_str())
            .map_err(|_| "state.redis_url: not a usable Redis URL".to_owned())?;
        metrics.backend_up.set(0);
        Ok(Self {
            settings,
            client,
            conn: ArcSwapOption::empty(),
            up: AtomicBool::new(false),
            tried: AtomicBool::new(false),
            origin: uuid::Uuid::new_v4().simple().to_string(),
            metrics,
        })
    }

    pub fn on_unavailable(&self) -> OnUnavailable {
        self.settings.on_unavailable
    }

    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }

    /// Readiness (spec §4 `/readyz`): with `deny`, only while connected and loaded; with
    /// `local`, once the first attempt is over (the replica then serves on its own state).
    pub fn ready(&self) -> bool {
        match self.settings.on_unavailable {
            OnUnavailable::Deny => self.is_up(),
            OnUnavailable::Local => self.is_up() || self.tried.load(Ordering::Acquire),
        }
    }

    /// Whether revocation checks may be answered from memory: always with `local` (flagged by
    /// the gauge), only while up with `deny`.
    pub fn enforceable(&self) -> bool {
        self.settings.on_unavailable == OnUnavailable::Local || self.is_up()
    }

    pub(crate) fn key(&self, suffix: &str) -> String {
        format!("{}:{suffix}", self.settings.key_prefix)
    }

    pub(crate) fn connection(&self) -> Result<ConnectionManager, StateError> {
        self.conn
            .load_full()
            .map(|c| (*c).clone())
            .ok_or(StateError::NotConnected)
    }

    /// Stores `r` with its expiry and publishes it, in one transaction.
    pub async fn publish(&self, r: &Revocation, now: i64) -> Result<(), StateError> {
        let mut c = self.connection()?;
        let set = self.key("revocations");
        let member = serde_json::to_string(r).map_err(|_| StateError::Redis("encode"))?;
        let msg = serde_json::to_string(&Message {
            origin: self.origin.clone(),
            rev: r.clone(),
        })
        .map_err(|_| StateError::Redis("encode"))?;
        let mut p = redis::pipe();
        p.atomic()
            .zadd(&set, member, r.until)
            .ignore()
            .cmd("ZREMRANGEBYSCORE")
            .arg(&set)
            .arg("-inf")
            .arg(format!("({now}"))
            .ignore()
            // The key itself never outlives its longest entry (Redis ≥ 7: GT only extends).
            .cmd("EXPIREAT")
            .arg(&set)
            .arg(r.until.saturating_add(1))
            .arg("GT")
            .ignore()
            .cmd("EXPIREAT")
            .arg(&set)
            .arg(r.until.saturating_add(1))
            .arg("NX")
            .ignore()
            .publish(self.key("revocations"), msg)
            .ignore();
        tokio::time::timeout(COMMAND_TIMEOUT, p.query_async::<()>(&mut c))
            .await
            .map_err(|_| StateError::Timeout)?
            .map_err(redis_err)
    }

    /// Every live revocation in the store. Entries that do not parse are counted and skipped:
    /// a store holding garbage changes nothing here.
    async fn load(&self, now: i64) -> Result<Vec<Revocation>, StateError> {
        let mut c = self.connection()?;
        let raw: Vec<Vec<u8>> = tokio::time::timeout(
            COMMAND_TIMEOUT * 4,
            redis::cmd("ZRANGEBYSCORE")
                .arg(self.key("revocations"))
                .arg(now)
                .arg("+inf")
                .query_async(&mut c),
        )
        .await
        .map_err(|_| StateError::Timeout)?
        .map_err(redis_err)?;
        let mut out = Vec::with_capacity(raw.len());
        for m in raw {
            match parse_revocation(&m, now) {
                Some(r) => out.push(r),
                None => self.garbage(),
            }
        }
        Ok(out)
    }

    fn garbage(&self) {
        tracing::warn!("shared state holds an entry that is not a valid revocation; ignored");
        self.metrics.count(Source::Redis, rmetrics::GARBAGE);
    }

    fn set_up(&self, up: bool) {
        let was = self.up.swap(up, Ordering::AcqRel);
        self.metrics.backend_up.set(i64::from(up));
        match (was, up, self.settings.on_unavailable) {
            (false, true, _) => {
                tracing::info!("shared state backend connected; revocations loaded")
            }
            (true, false, OnUnavailable::Deny) => tracing::error!(
                "shared state backend unreachable: refusing requests until it is back (on_unavailable: deny)"
            ),
            (true, false, OnUnavailable::Local) => tracing::warn!(
                "shared state backend unreachable: serving with this replica's state only (on_unavailable: local)"
            ),
            _ => {}
        }
    }

    /// Starts the subscription loop; it applies every revocation from other replicas to `revs`
    /// and runs for the life of the process.
    pub fn spawn(self: &Arc<Self>, revs: Arc<Revocations>) {
        let me = self.clone();
        tokio::spawn(async move { me.run(revs).await });
    }

    async fn run(self: Arc<Self>, revs: Arc<Revocations>) {
        let mut backoff = BACKOFF_MIN;
        loop {
            let result = self.session(&revs).await;
            let had_session = self.is_up();
            self.set_up(false);
            self.tried.store(true, Ordering::Release);
            if let Err(e) = result {
                tracing::debug!(error = %e, "shared state session ended");
            }
            if had_session {
                backoff = BACKOFF_MIN;
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }

    /// Establishes the command connection (once; afterwards the manager reconnects by itself).
    pub async fn connect(&self) -> Result<(), StateError> {
        if self.conn.load().is_some() {
            return Ok(());
        }
        let cfg = ConnectionManagerConfig::new()
            .set_connection_timeout(COMMAND_TIMEOUT)
            .set_response_timeout(COMMAND_TIMEOUT)
            .set_number_of_retries(1)
            .set_max_delay(1000);
        let cm = tokio::time::timeout(
            COMMAND_TIMEOUT * 2,
            ConnectionManager::new_with_config(self.client.clone(), cfg),
        )
        .await
        .map_err(|_| StateError::Timeout)?
        .map_err(redis_err)?;
        self.conn.store(Some(Arc::new(cm)));
        Ok(())
    }

    /// One connected period: subscribe, load, then apply messages until the connection fails.
    async fn session(&self, revs: &Revocations) -> Result<(), StateError> {
        self.connect().await?;
        let channel = self.key("revocations");
        let pubsub = tokio::time::timeout(COMMAND_TIMEOUT, self.client.get_async_pubsub())
            .await
            .map_err(|_| StateError::Timeout)?
            .map_err(redis_err)?;
        let (mut sink, mut stream) = pubsub.split();
        // Subscribe first (Redis confirms), then load: anything published after the load's
        // snapshot is already queued on this connection.
        tokio::time::timeout(COMMAND_TIMEOUT, sink.subscribe(&channel))
            .await
            .map_err(|_| StateError::Timeout)?
            .map_err(redis_err)?;
        let now = revs.clock().now_unix();
        for r in self.load(now).await? {
            let _ = revs.apply(&r, Source::Redis, false);
        }
        self.set_up(true);
        let mut ping = tokio::time::interval(PING_EVERY);
        ping.tick().await;
        loop {
            tokio::select! {
                msg = stream.next() => {
                    let Some(msg) = msg else { return Err(StateError::NotConnected) };
                    self.on_message(revs, msg.get_payload_bytes());
                }
                _ = ping.tick() => {
                    // In subscribed mode (RESP2) PING answers an array, not PONG: any reply will do.
                    tokio::time::timeout(COMMAND_TIMEOUT, sink.ping::<redis::Value>())
                        .await
                        .map_err(|_| StateError::Timeout)?
                        .map_err(redis_err)?;
                    revs.prune();
                }
            }
        }
    }

    fn on_message(&self, revs: &Revocations, payload: &[u8]) {
        let now = revs.clock().now_unix();
        let msg = (payload.len() <= MAX_MESSAGE_BYTES)
            .then(|| serde_json::from_slice::<Message>(payload).ok())
            .flatten();
        let Some(msg) = msg else {
            return self.garbage();
        };
        if msg.origin == self.origin {
            return;
        }
        match msg.rev.validated(now) {
            Ok(r) => {
                let _ = revs.apply(&r, Source::Redis, true);
            }
            Err(_) => self.garbage(),
        }
    }
}

fn parse_revocation(raw: &[u8], now: i64) -> Option<Revocation> {
    if raw.len() > MAX_MESSAGE_BYTES {
        return None;
    }
    serde_json::from_slice::<Revocation>(raw)
        .ok()?
        .validated(now)
        .ok()
}
