//! Stateless server-provided DPoP nonces (RFC 9449 §8–§9).
//!
//! A nonce is `base64url(step || HMAC-SHA256(secret, label || step)[..16])`, where `step` is the
//! big-endian Unix time divided by the step length. Every replica holding the same secret issues
//! and accepts the same nonces, so no shared state is needed; without the secret a nonce for a
//! future step cannot be predicted (RFC 9449 §11.2: nonces limit pre-generated proofs).
//! A nonce is accepted during its own step and the next one, i.e. for between one and two steps.

use std::time::Duration;

use aws_lc_rs::constant_time::verify_slices_are_equal;
use aws_lc_rs::hmac;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// Shortest secret accepted: the HMAC-SHA256 key should carry at least 256 bits.
pub const MIN_SECRET_LEN: usize = 32;
/// Default step length.
pub const DEFAULT_STEP: Duration = Duration::from_secs(60);

/// Domain separation, so the secret could never be confused with another use of the same bytes.
const LABEL: &[u8] = b"fapi-guard/dpop-nonce/v1\0";
/// 128-bit truncated MAC: forging needs 2^128 guesses, while a nonce stays a short header.
const MAC_LEN: usize = 16;
const RAW_LEN: usize = 8 + MAC_LEN;
/// base64url of 24 bytes, no padding.
const ENCODED_LEN: usize = 32;

/// Issues and checks nonces. Cheap to clone; the secret never appears in `Debug`.
#[derive(Clone)]
pub struct NonceIssuer {
    key: hmac::Key,
    step_secs: i64,
}

impl NonceIssuer {
    /// A nonce issuer with the default 60 s step. The secret must be shared by all replicas.
    pub fn new(secret: &[u8]) -> Result<Self, String> {
        if secret.len() < MIN_SECRET_LEN {
            return Err(format!(
                "nonce secret has {} bytes, at least {MIN_SECRET_LEN} are required",
                secret.len()
            ));
        }
        Ok(Self {
            key: hmac::Key::new(hmac::HMAC_SHA256, secret),
            step_secs: DEFAULT_STEP.as_secs().cast_signed(),
        })
    }

    /// Sets the step length (whole seconds, at least 1 s; sub-second parts are dropped).
    pub fn with_step(mut self, step: Duration) -> Self {
        self.step_secs = i64::try_from(step.as_secs()).unwrap_or(i64::MAX).max(1);
        self
    }

    pub fn step(&self) -> Duration {
        Duration::from_secs(self.step_secs.unsigned_abs())
    }

    /// The nonce to send in `DPoP-Nonce` at time `now` (Unix seconds).
    pub fn issue(&self, now: i64) -> String {
        let step = self.step_at(now);
        let mut raw = [0u8; RAW_LEN];
        raw[..8].copy_from_slice(&step.to_be_bytes());
        raw[8..].copy_from_slice(&self.mac(step).as_ref()[..MAC_LEN]);
        URL_SAFE_NO_PAD.encode(raw)
    }

    /// Whether `nonce` was issued by a holder of the secret in the current or previous step.
    pub fn check(&self, nonce: &str, now: i64) -> bool {
        self.valid_step(nonce, now).is_some()
    }

    /// Whether the caller should offer a fresh nonce (RFC 9449 §8.2, `DPoP-Nonce` on a success
    /// response): the presented one is invalid or will expire at the end of this step.
    pub fn needs_fresh(&self, nonce: &str, now: i64) -> bool {
        self.valid_step(nonce, now) != Some(self.step_at(now))
    }

    fn valid_step(&self, nonce: &str, now: i64) -> Option<u64> {
        if nonce.len() != ENCODED_LEN {
            return None;
        }
        let mut raw = [0u8; RAW_LEN];
        match URL_SAFE_NO_PAD.decode_slice(nonce, &mut raw) {
            Ok(RAW_LEN) => {}
            _ => return None,
        }
        let (step_bytes, mac) = raw.split_at(8);
        let step = u64::from_be_bytes(step_bytes.try_into().ok()?);
        let current = self.step_at(now);
        if step != current && Some(step) != current.checked_sub(1) {
            return None;
        }
        verify_slices_are_equal(&self.mac(step).as_ref()[..MAC_LEN], mac).ok()?;
        Some(step)
    }

    fn step_at(&self, now: i64) -> u64 {
        now.max(0).div_euclid(self.step_secs).unsigned_abs()
    }

    fn mac(&self, step: u64) -> hmac::Tag {
        let mut ctx = hmac::Context::with_key(&self.key);
        ctx.update(LABEL);
        ctx.update(&step.to_be_bytes());
        ctx.sign()
    }
}

impl std::fmt::Debug for NonceIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NonceIssuer")
            .field("step_secs", &self.step_secs)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    #[test]
    fn short_secret_refused() {
        assert!(NonceIssuer::new(&SECRET[..31]).is_err());
        assert!(NonceIssuer::new(SECRET).is_ok());
    }

    #[test]
    fn window() {
        let issuer = NonceIssuer::new(SECRET).expect("issuer");
        let t0 = 1_700_000_040; // a multiple of 60
        let nonce = issuer.issue(t0);
        assert_eq!(nonce.len(), ENCODED_LEN);
        // (name, offset from issue time, accepted, needs fresh)
        let cases = [
            ("same instant", 0, true, false),
            ("end of step", 59, true, false),
            ("previous step", 60, true, true),
            ("end of next step", 119, true, true),
            ("two steps later", 120, false, true),
            ("before issue step", -1, false, true),
        ];
        for (name, offset, accepted, fresh) in cases {
            assert_eq!(issuer.check(&nonce, t0 + offset), accepted, "{name}");
            assert_eq!(issuer.needs_fresh(&nonce, t0 + offset), fresh, "{name}");
        }
    }

    #[test]
    fn step_is_configurable() {
        let issuer = NonceIssuer::new(SECRET)
            .expect("issuer")
            .with_step(Duration::from_secs(10));
        assert_eq!(issuer.step(), Duration::from_secs(10));
        let nonce = issuer.issue(100);
        assert!(issuer.check(&nonce, 119));
        assert!(!issuer.check(&nonce, 120));
        assert_eq!(
            issuer.clone().with_step(Duration::ZERO).step(),
            Duration::from_secs(1)
        );
    }

    #[test]
    fn replicas_share_nonces_strangers_do_not() {
        let a = NonceIssuer::new(SECRET).expect("a");
        let b = NonceIssuer::new(SECRET).expect("b");
        let other = NonceIssuer::new(&[7u8; 32]).expect("other");
        let nonce = a.issue(5_000);
        assert_eq!(nonce, b.issue(5_000));
        assert!(b.check(&nonce, 5_010));
        assert!(!other.check(&nonce, 5_010));
        assert_ne!(nonce, other.issue(5_000));
    }

    #[test]
    fn forged_and_garbage_refused() {
        let issuer = NonceIssuer::new(SECRET).expect("issuer");
        let now = 1_700_000_000;
        let good = issuer.issue(now);
        let mut raw = URL_SAFE_NO_PAD.decode(&good).expect("b64");
        raw[RAW_LEN - 1] ^= 1;
        let bad_mac = URL_SAFE_NO_PAD.encode(&raw);
        let mut future = URL_SAFE_NO_PAD.decode(&good).expect("b64");
        future[7] = future[7].wrapping_add(1);
        let next_step = URL_SAFE_NO_PAD.encode(&future);
        let extended = format!("{good}A");
        let padded = format!("{}=", &good[..ENCODED_LEN - 1]);
        let huge = "A".repeat(10_000);
        let cases = [
            ("flipped MAC bit", bad_mac.as_str()),
            ("step moved, MAC kept", next_step.as_str()),
            ("empty", ""),
            ("truncated", &good[..ENCODED_LEN - 1]),
            ("extended", extended.as_str()),
            ("not base64url", "********************************"),
            ("padding", padded.as_str()),
            ("huge", huge.as_str()),
        ];
        for (name, nonce) in cases {
            assert!(!issuer.check(nonce, now), "{name}");
            assert!(issuer.needs_fresh(nonce, now), "{name}");
        }
    }

    #[test]
    fn debug_hides_secret() {
        let issuer = NonceIssuer::new(SECRET).expect("issuer");
        assert!(!format!("{issuer:?}").contains("0123"));
    }
}
