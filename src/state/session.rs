//! The subscription loop of [`RedisState`]: subscribe, load, publish what was queued, apply
//! every revocation from the other replicas, and reconnect with backoff when the connection
//! fails. See `redis.rs` for the guarantees.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_util::StreamExt;

use super::config::OnUnavailable;
use super::conn::{self, Conn};
use super::redis::{COMMAND_TIMEOUT, MAX_MESSAGE_BYTES, Message, RedisState, StateError};
use crate::revocation::{Revocations, Source};

/// Liveness probe on the subscription connection (a silent network partition gives no FIN).
const PING_EVERY: Duration = Duration::from_secs(2);
/// The eviction policy is read again every this many pings (30 s), so a `CONFIG SET` made
/// while connected is noticed.
const POLICY_EVERY_PINGS: u32 = 15;
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// A session that ended: the operation that failed, and why.
#[derive(Debug, Clone, Copy)]
struct Failure {
    op: &'static str,
    err: StateError,
}

impl RedisState {
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
            // Only an attempt that never came up counts as the startup failure.
            let first = !self.tried.swap(true, Ordering::AcqRel);
            if let Err(f) = result {
                self.log_failure(f, first, had_session);
            }
            if had_session {
                backoff = BACKOFF_MIN;
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }

    fn log_failure(&self, f: Failure, first: bool, had_session: bool) {
        let mode = match self.settings.on_unavailable {
            OnUnavailable::Deny => "refusing requests until it is usable (on_unavailable: deny)",
            OnUnavailable::Local => {
                "serving with this replica's state only (on_unavailable: local)"
            }
        };
        if let StateError::EvictionPolicy(p) = f.err {
            if first || self.log_session.allow().is_some() {
                tracing::error!(
                    policy = p,
                    "Redis maxmemory-policy is {p}: keys with an expiry may be evicted before they \
                     expire (a DPoP proof could be replayed, a revocation lost); set \
                     maxmemory-policy noeviction. Shared state not used: {mode}"
                );
            }
            return;
        }
        if first {
            // Starts the rate limit: the next failures are summarised, not repeated.
            let _ = self.log_session.allow();
            let msg = format!(
                "shared state backend unavailable at startup ({}: {}): {mode}",
                f.op, f.err
            );
            match self.settings.on_unavailable {
                OnUnavailable::Deny => tracing::error!("{msg}"),
                OnUnavailable::Local => tracing::warn!("{msg}"),
            }
        } else if had_session {
            // The transition itself was logged by `set_up`; say why.
            tracing::warn!(operation = f.op, error = %f.err, "shared state session ended");
        } else if let Some(held) = self.log_session.allow() {
            tracing::warn!(
                operation = f.op,
                error = %f.err,
                held_back = held,
                "shared state backend still unavailable: {mode}"
            );
        }
    }

    /// Opens the pub/sub connection and subscribes, trying each endpoint in turn.
    async fn subscribe(
        &self,
        c: &mut Conn,
        channel: &str,
    ) -> Result<(redis::aio::PubSubSink, redis::aio::PubSubStream), StateError> {
        let endpoints = conn::pubsub_endpoints(
            &self.clients,
            self.settings.cluster,
            c,
            channel,
            COMMAND_TIMEOUT,
        )
        .await;
        let mut last = StateError::NotConnected;
        for client in endpoints {
            let attempt = async {
                let pubsub = tokio::time::timeout(COMMAND_TIMEOUT, client.get_async_pubsub())
                    .await
                    .map_err(|_| StateError::Timeout)?
                    .map_err(StateError::from_redis)?;
                let (mut sink, stream) = pubsub.split();
                tokio::time::timeout(COMMAND_TIMEOUT, sink.subscribe(channel))
                    .await
                    .map_err(|_| StateError::Timeout)?
                    .map_err(StateError::from_redis)?;
                Ok::<_, StateError>((sink, stream))
            };
            match attempt.await {
                Ok(s) => return Ok(s),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// One connected period: subscribe, load, publish what was queued, then apply messages
    /// until the connection fails.
    async fn session(&self, revs: &Revocations) -> Result<(), Failure> {
        let fail = |op: &'static str| move |err: StateError| Failure { op, err };
        let count = |op: &'static str| {
            move |err: StateError| Failure {
                op,
                err: self.count(op, err),
            }
        };
        let mut c = self.connected().await.map_err(count("connect"))?;
        self.check_policy(&mut c)
            .await
            .map_err(fail("config_check"))?;
        let channel = self.key("revocations");
        // Subscribe first (Redis confirms), then load: anything published after the load's
        // snapshot is already queued on this connection.
        let (mut sink, mut stream) = self
            .subscribe(&mut c, &channel)
            .await
            .map_err(count("subscribe"))?;
        let now = self.clock.now_unix();
        let entries = self.load(now).await.map_err(count("load"))?;
        // After a reconnect, entries new to this replica are revocations it missed: their lag
        // (from the event time) is observed. The first load at start is not an event.
        let caught_up = self.loaded_once.swap(true, Ordering::AcqRel);
        for r in entries {
            let _ = revs.apply(&r, Source::Redis, caught_up);
        }
        self.flush_pending(now).await.map_err(fail("publish"))?;
        self.tried.store(true, Ordering::Release);
        self.set_up(true);
        let mut ping = tokio::time::interval(PING_EVERY);
        ping.tick().await;
        let mut pings = 0u32;
        loop {
            tokio::select! {
                msg = stream.next() => {
                    let Some(msg) = msg else {
                        return Err(count("subscribe")(StateError::Unreachable("connection lost")));
                    };
                    self.on_message(revs, msg.get_payload_bytes());
                }
                _ = ping.tick() => {
                    // In subscribed mode (RESP2) PING answers an array, not PONG: any reply will do.
                    tokio::time::timeout(COMMAND_TIMEOUT, sink.ping::<redis::Value>())
                        .await
                        .map_err(|_| StateError::Timeout)
                        .and_then(|r| r.map_err(StateError::from_redis))
                        .map_err(count("subscribe"))?;
                    revs.prune();
                    pings = pings.wrapping_add(1);
                    if pings.is_multiple_of(POLICY_EVERY_PINGS) {
                        self.check_policy(&mut c).await.map_err(fail("config_check"))?;
                    }
                    if self.pending() > 0 {
                        let now = self.clock.now_unix();
                        self.flush_pending(now).await.map_err(fail("publish"))?;
                    }
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
