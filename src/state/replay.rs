//! The fleet-wide DPoP replay check (RFC 9449 §11.1): `SET key 1 NX PX <ms>` on Redis, so a
//! proof accepted by one replica is refused by every other for its whole window.
//!
//! The key is the proof's 32-byte replay key (already a hash of `htu` and `jti`), prefixed; the
//! expiry is the proof's own window, so Redis forgets it exactly when it could no longer pass.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::RedisState;

/// The replay check could not be made (Redis down, slow, or answering garbage). With
/// `on_unavailable: deny` the request gets 503 `dependency_unavailable`; with `local` the
/// caller falls back to this replica's memory check (`dpop::ReplayStore::Shared`).
pub use crate::dpop::replay::ReplayUnavailable;

const TIMEOUT: Duration = Duration::from_millis(500);

#[derive(Clone)]
pub struct RedisReplay {
    state: Arc<RedisState>,
}

impl RedisReplay {
    pub fn new(state: Arc<RedisState>) -> Self {
        Self { state }
    }

    pub fn state(&self) -> &Arc<RedisState> {
        &self.state
    }

    /// `Ok(true)`: first use, now recorded until `expires_at`. `Ok(false)`: seen before (a
    /// replay). `Err`: could not be decided.
    pub async fn check_and_insert(
        &self,
        key: [u8; 32],
        expires_at: i64,
        now: i64,
    ) -> Result<bool, ReplayUnavailable> {
        let mut c = self
            .state
            .connection()
            .map_err(|_| ReplayUnavailable::Backend)?;
        // At least one second, so a proof at the very edge of its window is still recorded.
        let ttl_ms = expires_at.saturating_sub(now).max(1).saturating_mul(1000);
        let k = self
            .state
            .key(&format!("dpop:{}", URL_SAFE_NO_PAD.encode(key)));
        let answer: redis::Value = tokio::time::timeout(
            TIMEOUT,
            redis::cmd("SET")
                .arg(&k)
                .arg(1)
                .arg("NX")
                .arg("PX")
                .arg(ttl_ms)
                .query_async(&mut c),
        )
        .await
        .map_err(|_| ReplayUnavailable::Backend)?
        .map_err(|_| ReplayUnavailable::Backend)?;
        match answer {
            redis::Value::Okay => Ok(true),
            redis::Value::SimpleString(s) if s == "OK" => Ok(true),
            redis::Value::Nil => Ok(false),
            // Anything else is not what SET NX answers: refuse to decide.
            _ => {
                tracing::warn!("replay store answered something other than SET NX's reply");
                Err(ReplayUnavailable::Backend)
            }
        }
    }
}
