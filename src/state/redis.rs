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
//! **Nothing accepted is forgotten**: a revocation applied here while Redis cannot be written is
//! queued (bounded; when full the caller is told to retry) and published as soon as a session is
//! back, before the replica reports the backend up again.
//!
//! **Keys are kept until they expire**: the server's `maxmemory-policy` must be `noeviction`
//! (checked on every connection and every 30 s); with an evicting policy the backend is treated
//! as unavailable, since an evicted replay key would let a proof be replayed.
//!
//! While the subscription is down the replica reconnects with exponential backoff (100 ms to
//! 5 s) and reloads the whole set when it is back; `fapi_guard_state_backend_up` says which.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

use super::config::{OnUnavailable, RedisSettings};
use super::conn::{self, Conn, Policy};
use super::throttle::Throttle;
use crate::clock::Clock;
use crate::revocation::{Revocation, Source, metrics as rmetrics};

/// How long one Redis command or connection attempt may take before it counts as a failure.
pub(super) const COMMAND_TIMEOUT: Duration = Duration::from_millis(500);
/// Revocations accepted from the store or the channel at most per message (bounded parsing).
pub(super) const MAX_MESSAGE_BYTES: usize = 8 * 1024;
/// Revocations applied here but not yet published (Redis unavailable). Beyond this a new one
/// is refused (the caller retries) rather than an old one forgotten.
pub const MAX_PENDING: usize = 10_000;
/// At most one log line per this period for a failure that repeats.
const LOG_EVERY: Duration = Duration::from_secs(30);

/// Why the shared store could not be used. Each maps to a fixed metric word ([`Self::label`]);
/// none carries server text (Redis error texts may echo keys or the URL).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    #[error("not connected")]
    NotConnected,
    #[error("unreachable ({0})")]
    Unreachable(&'static str),
    #[error("timed out")]
    Timeout,
    /// The server answered with an error (`WRONGTYPE`, `ERR`, `NOPERM`...).
    #[error("the server refused the command")]
    ErrorReply,
    /// The answer is not what the command returns (not RESP, or the wrong type).
    #[error("unexpected reply")]
    UnexpectedReply,
    #[error("maxmemory-policy is {0}, not noeviction")]
    EvictionPolicy(&'static str),
    #[error("invalid client configuration")]
    Config,
}

impl StateError {
    /// The `error` label of `fapi_guard_state_backend_errors_total`.
    pub const fn label(self) -> &'static str {
        match self {
            Self::NotConnected => "not_connected",
            Self::Unreachable(_) => "unreachable",
            Self::Timeout => "timeout",
            Self::ErrorReply => "error_reply",
            Self::UnexpectedReply => "unexpected_reply",
            Self::EvictionPolicy(_) => "eviction_policy",
            Self::Config => "config",
        }
    }

    pub(crate) fn from_redis(e: redis::RedisError) -> Self {
        use redis::ErrorKind as K;
        if e.is_connection_refusal() {
            Self::Unreachable("connection refused")
        } else if e.is_timeout() {
            Self::Timeout
        } else if e.is_io_error() || e.is_connection_dropped() {
            Self::Unreachable("connection lost")
        } else {
            match e.kind() {
                K::ParseError | K::TypeError => Self::UnexpectedReply,
                K::ClusterDown | K::MasterDown | K::ClusterConnectionNotFound => {
                    Self::Unreachable("cluster down")
                }
                K::InvalidClientConfig => Self::Config,
                _ => Self::ErrorReply,
            }
        }
    }
}

/// A revocation on the channel, with the replica that sent it (which skips its own).
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Message {
    pub(super) origin: String,
    pub(super) rev: Revocation,
}

pub struct RedisState {
    pub(super) settings: RedisSettings,
    /// One per configured URL (the seeds, in a cluster).
    pub(super) clients: Vec<redis::Client>,
    /// Commands (writes, loads, replay checks). `None` until the first connection succeeds;
    /// afterwards the connection reconnects by itself.
    pub(super) conn: ArcSwapOption<Conn>,
    /// The eviction policy was found acceptable on this connection: commands may be trusted.
    pub(super) policy_ok: AtomicBool,
    /// Subscribed and loaded: the in-memory set is complete.
    pub(super) up: AtomicBool,
    /// The first connection attempt has finished (successfully or not).
    pub(super) tried: AtomicBool,
    /// The store was loaded once: entries new in a later load were missed while disconnected,
    /// and their lag is observed.
    pub(super) loaded_once: AtomicBool,
    /// Applied here, not yet published (see [`MAX_PENDING`]).
    pub(super) pending: Mutex<VecDeque<Revocation>>,
    /// `CONFIG` could not be read: said once.
    pub(super) policy_unknown_said: AtomicBool,
    /// This process, so it can ignore its own messages.
    pub(super) origin: String,
    pub(super) metrics: rmetrics::RevocationMetrics,
    pub(super) clock: Clock,
    pub(super) log_session: Throttle,
    pub(super) log_replay: Throttle,
    pub(super) log_fallback: Throttle,
}

impl RedisState {
    pub fn new(
        settings: RedisSettings,
        metrics: rmetrics::RevocationMetrics,
        clock: Clock,
    ) -> Result<Self, String> {
        let clients = settings
            .nodes
            .iter()
            .map(|u| redis::Client::open(u.as_str()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| "state.redis_url: not a usable Redis URL".to_owned())?;
        metrics.backend_up.set(0);
        Ok(Self {
            settings,
            clients,
            conn: ArcSwapOption::empty(),
            policy_ok: AtomicBool::new(false),
            up: AtomicBool::new(false),
            tried: AtomicBool::new(false),
            loaded_once: AtomicBool::new(false),
            pending: Mutex::new(VecDeque::new()),
            policy_unknown_said: AtomicBool::new(false),
            origin: uuid::Uuid::new_v4().simple().to_string(),
            metrics,
            clock,
            log_session: Throttle::new(LOG_EVERY),
            log_replay: Throttle::new(LOG_EVERY),
            log_fallback: Throttle::new(LOG_EVERY),
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

    /// Whether revocation checks may be answered from memory: while up; with `local` also once
    /// the first attempt is over (flagged by the gauge). Never before the first attempt: the
    /// set would be empty, not merely stale.
    pub fn enforceable(&self) -> bool {
        self.is_up()
            || (self.settings.on_unavailable == OnUnavailable::Local
                && self.tried.load(Ordering::Acquire))
    }

    /// Revocations applied here and waiting to be published.
    pub fn pending(&self) -> usize {
        lock(&self.pending).len()
    }

    pub(crate) fn key(&self, suffix: &str) -> String {
        format!("{}:{suffix}", self.settings.key_prefix)
    }

    pub(crate) fn clock(&self) -> &Clock {
        &self.clock
    }

    pub(crate) fn connection(&self) -> Result<Conn, StateError> {
        if !self.policy_ok.load(Ordering::Acquire) {
            return Err(StateError::NotConnected);
        }
        self.conn
            .load_full()
            .map(|c| (*c).clone())
            .ok_or(StateError::NotConnected)
    }

    pub(super) fn count(&self, op: &'static str, e: StateError) -> StateError {
        self.metrics.backend_error(op, e.label());
        e
    }

    /// Stores `r` with its expiry and publishes it, in one transaction.
    pub async fn publish(&self, r: &Revocation, now: i64) -> Result<(), StateError> {
        self.publish_inner(r, now)
            .await
            .map_err(|e| self.count("publish", e))
    }

    async fn publish_inner(&self, r: &Revocation, now: i64) -> Result<(), StateError> {
        let mut c = self.connection()?;
        let set = self.key("revocations");
        let member = serde_json::to_string(r).map_err(|_| StateError::Config)?;
        let msg = serde_json::to_string(&Message {
            origin: self.origin.clone(),
            rev: r.clone(),
        })
        .map_err(|_| StateError::Config)?;
        // One key and its channel (same name, so the same slot in a cluster): the transaction
        // runs on the master that serves it.
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
            .publish(&set, msg)
            .ignore();
        tokio::time::timeout(COMMAND_TIMEOUT, p.query_async::<()>(&mut c))
            .await
            .map_err(|_| StateError::Timeout)?
            .map_err(StateError::from_redis)
    }

    /// Keeps `r` for publication once the backend is back; `false` when the queue is full
    /// (then nothing was queued and the caller must retry).
    pub fn enqueue(&self, r: &Revocation) -> bool {
        let mut q = lock(&self.pending);
        if q.iter().any(|p| p == r) {
            return true;
        }
        if q.len() >= MAX_PENDING {
            return false;
        }
        q.push_back(r.clone());
        true
    }

    /// Publishes what was queued while the backend was unavailable, oldest first.
    pub(super) async fn flush_pending(&self, now: i64) -> Result<usize, StateError> {
        let mut sent = 0;
        loop {
            let Some(r) = lock(&self.pending).pop_front() else {
                break;
            };
            // Expired meanwhile: it can match nothing any more.
            if r.until < now {
                continue;
            }
            if let Err(e) = self.publish(&r, now).await {
                lock(&self.pending).push_front(r);
                return Err(e);
            }
            sent += 1;
        }
        if sent > 0 {
            tracing::info!(
                count = sent,
                "published the revocations accepted while the shared state backend was unavailable"
            );
        }
        Ok(sent)
    }

    /// Every live revocation in the store. Entries that do not parse are counted and skipped:
    /// a store holding garbage changes nothing here.
    pub(super) async fn load(&self, now: i64) -> Result<Vec<Revocation>, StateError> {
        let mut c = self.connection()?;
        let raw: redis::Value = tokio::time::timeout(
            COMMAND_TIMEOUT * 4,
            redis::cmd("ZRANGEBYSCORE")
                .arg(self.key("revocations"))
                .arg(now)
                .arg("+inf")
                .query_async(&mut c),
        )
        .await
        .map_err(|_| StateError::Timeout)?
        .map_err(StateError::from_redis)?;
        let redis::Value::Array(raw) = raw else {
            return Err(StateError::UnexpectedReply);
        };
        let mut out = Vec::with_capacity(raw.len());
        for m in raw {
            let parsed = match &m {
                redis::Value::BulkString(b) => parse_revocation(b, now),
                _ => None,
            };
            match parsed {
                Some(r) => out.push(r),
                None => self.garbage(),
            }
        }
        Ok(out)
    }

    pub(super) fn garbage(&self) {
        tracing::warn!("shared state holds an entry that is not a valid revocation; ignored");
        self.metrics.count(Source::Redis, rmetrics::GARBAGE);
    }

    /// `SET <prefix>:<suffix> 1 NX PX <ttl_ms>`: `Ok(true)` when this call created the key
    /// (first use), `Ok(false)` when it existed. Anything but those two answers is an error.
    pub(crate) async fn claim(
        &self,
        op: &'static str,
        suffix: &str,
        ttl_ms: i64,
    ) -> Result<bool, StateError> {
        let run = async {
            let mut c = self.connection()?;
            let answer: redis::Value = tokio::time::timeout(
                COMMAND_TIMEOUT,
                redis::cmd("SET")
                    .arg(self.key(suffix))
                    .arg(1)
                    .arg("NX")
                    .arg("PX")
                    .arg(ttl_ms.max(1))
                    .query_async(&mut c),
            )
            .await
            .map_err(|_| StateError::Timeout)?
            .map_err(StateError::from_redis)?;
            match answer {
                redis::Value::Okay => Ok(true),
                redis::Value::SimpleString(s) if s == "OK" => Ok(true),
                redis::Value::Nil => Ok(false),
                // Not what SET NX answers: refuse to decide.
                _ => Err(StateError::UnexpectedReply),
            }
        };
        run.await.map_err(|e| {
            if e != StateError::NotConnected
                && let Some(held) = self.log_replay.allow()
            {
                tracing::warn!(
                    operation = op,
                    error = %e,
                    held_back = held,
                    "shared state backend could not record a first use"
                );
            }
            self.count(op, e)
        })
    }

    /// Records a Shared Signals `jti` fleet-wide for `ttl`: `Ok(false)` when another replica
    /// (or this one) already processed it.
    pub async fn claim_ssf_jti(&self, jti: &str, ttl: Duration) -> Result<bool, StateError> {
        let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
        self.claim("ssf_jti", &ssf_key(jti), ttl_ms).await
    }

    /// Forgets a claimed `jti` (its SET was not processed after all, so a retry must be).
    pub async fn release_ssf_jti(&self, jti: &str) {
        let Ok(mut c) = self.connection() else { return };
        let mut del = redis::cmd("DEL");
        del.arg(self.key(&ssf_key(jti)));
        let done = tokio::time::timeout(COMMAND_TIMEOUT, del.query_async::<redis::Value>(&mut c))
            .await
            .map_err(|_| StateError::Timeout)
            .and_then(|r| r.map_err(StateError::from_redis));
        if let Err(e) = done {
            self.count("ssf_jti", e);
        }
    }

    /// The replay check fell back to this replica's store (`on_unavailable: local`): logged at
    /// most once per period, with how many were held back.
    pub(crate) fn note_local_fallback(&self) {
        self.metrics.backend_error("replay", "local_fallback");
        if let Some(held) = self.log_fallback.allow() {
            tracing::warn!(
                held_back = held,
                "shared replay store unavailable; checking this replica only (on_unavailable: local)"
            );
        }
    }

    /// Establishes the command connection (once; afterwards it reconnects by itself) and checks
    /// the eviction policy: after `Ok`, commands (replay checks, publishing) may be made. The
    /// subscription loop ([`Self::spawn`]) does this on every (re)connection.
    pub async fn connect(&self) -> Result<(), StateError> {
        let mut c = self
            .connected()
            .await
            .map_err(|e| self.count("connect", e))?;
        self.check_policy(&mut c).await
    }

    pub(super) async fn connected(&self) -> Result<Conn, StateError> {
        if let Some(c) = self.conn.load_full() {
            return Ok((*c).clone());
        }
        let c = conn::open(&self.clients, self.settings.cluster, COMMAND_TIMEOUT).await?;
        self.conn.store(Some(Arc::new(c.clone())));
        Ok(c)
    }

    /// Reads the eviction policy; only `noeviction` (or a policy that cannot be read, said
    /// once) lets commands through.
    pub(super) async fn check_policy(&self, c: &mut Conn) -> Result<(), StateError> {
        let policy = conn::eviction_policy(c, COMMAND_TIMEOUT).await;
        let ok = match policy {
            Ok(Policy::NoEviction) => Ok(()),
            Ok(Policy::Unknown) => {
                if !self.policy_unknown_said.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        "cannot read Redis maxmemory-policy (CONFIG disabled or not permitted): \
                         make sure it is noeviction, or replayed DPoP proofs and revocations \
                         may be evicted before they expire"
                    );
                }
                Ok(())
            }
            Ok(Policy::Evicting(p)) => Err(StateError::EvictionPolicy(p)),
            Err(e) => Err(e),
        };
        self.policy_ok.store(ok.is_ok(), Ordering::Release);
        ok.map_err(|e| self.count("config_check", e))
    }
}

/// The key of a Shared Signals `jti`: hashed, so any `jti` makes a short, printable key.
fn ssf_key(jti: &str) -> String {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, jti.as_bytes());
    format!("ssf:{}", URL_SAFE_NO_PAD.encode(d.as_ref()))
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

/// A poisoned lock only means another thread panicked mid-call; the queue is valid at each step.
fn lock(m: &Mutex<VecDeque<Revocation>>) -> std::sync::MutexGuard<'_, VecDeque<Revocation>> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::revocation::Kind;
    use crate::state::StateConfig;

    fn state(mode: &str) -> RedisState {
        // Port 1 on loopback: nothing listens, so no test here ever reaches a server.
        let cfg: StateConfig = serde_yaml::from_str(&format!(
            "backend: redis\nredis_url: redis://127.0.0.1:1\non_unavailable: {mode}\n"
        ))
        .expect("yaml");
        let metrics = Arc::new(crate::metrics::Metrics::new());
        let m = rmetrics::RevocationMetrics::new(&metrics).expect("metrics");
        RedisState::new(
            cfg.compile().expect("c").redis.expect("r"),
            m,
            Clock::fixed(1_000),
        )
        .expect("state")
    }

    fn rev(i: usize) -> Revocation {
        Revocation {
            kind: Kind::Jti,
            value: format!("j-{i}"),
            until: 2_000,
            at_ms: 1_000_000,
        }
    }

    #[test]
    fn nothing_is_enforceable_before_the_first_attempt_in_either_mode() {
        for mode in ["deny", "local"] {
            let s = state(mode);
            assert!(!s.enforceable(), "{mode}: before the first load");
            assert!(!s.ready(), "{mode}");
            s.tried.store(true, Ordering::Release);
            assert_eq!(
                s.enforceable(),
                mode == "local",
                "{mode}: after a failed attempt"
            );
            assert_eq!(s.ready(), mode == "local", "{mode}");
            s.up.store(true, Ordering::Release);
            assert!(s.enforceable() && s.ready(), "{mode}: up");
        }
    }

    #[test]
    fn the_pending_queue_is_bounded_and_deduplicated() {
        let s = state("local");
        assert!(s.enqueue(&rev(0)));
        assert!(s.enqueue(&rev(0)), "a repeat is already queued");
        assert_eq!(s.pending(), 1);
        for i in 1..MAX_PENDING {
            assert!(s.enqueue(&rev(i)));
        }
        assert!(
            !s.enqueue(&rev(MAX_PENDING)),
            "full: refused, nothing dropped"
        );
        assert_eq!(s.pending(), MAX_PENDING);
        assert!(s.enqueue(&rev(5)), "one already queued is still accepted");
    }

    #[tokio::test]
    async fn without_a_connection_nothing_is_claimed_or_published() {
        let s = state("deny");
        assert_eq!(
            s.claim("replay", "dpop:x", 1_000).await,
            Err(StateError::NotConnected)
        );
        assert_eq!(
            s.publish(&rev(1), 1_000).await,
            Err(StateError::NotConnected)
        );
    }
}
