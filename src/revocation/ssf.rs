//! Shared Signals receiver: Security Event Tokens (RFC 8417) pushed by the transmitter (RFC
//! 8935) and mapped to revocations.
//!
//! A SET is accepted only when its JOSE `typ` is `secevent+jwt` (RFC 8417 §2.3), its algorithm
//! is on the receiver's own allow-list, its signature verifies with the transmitter's JWKS, `iss`
//! and `aud` match, its `iat` is recent, and its `jti` is new. Errors use RFC 8935 §2.3's codes.
//!
//! Events (CAEP 1.0, RISC 1.0) become subject revocations at the event time (`event_timestamp`,
//! else the SET's `iat`): tokens issued at or before it are refused, a later sign-in works. A
//! `jwt_id` subject (RFC 9493 §3.2.6... `iss` + `jti`) revokes that one token. Unknown event types
//! are acknowledged and counted, not applied.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::config::SsfSettings;
use super::{Kind, Revocation};
use crate::http_client::HttpsClient;
use crate::metrics::Metrics;
use crate::token::{JwksStore, TokenFailure, jws};

/// A SET is a small JWT; the admin body limit bounds it further.
const MAX_SET_BYTES: usize = 64 * 1024;
/// JSON nesting a SET may have (RFC 9493 subjects and CAEP payloads need a handful).
const MAX_DEPTH: usize = 16;
/// Events per SET beyond which it is refused (RFC 8417 allows several; real ones carry one).
const MAX_EVENTS: usize = 8;

const CAEP: &str = "https://schemas.openid.net/secevent/caep/event-type/";
const RISC: &str = "https://schemas.openid.net/secevent/risc/event-type/";
/// Event types applied as "everything issued to this subject until now is revoked".
const SUBJECT_EVENTS: &[(&str, &str)] = &[
    (CAEP, "session-revoked"),
    (CAEP, "credential-change"),
    (CAEP, "token-claims-change"),
    (RISC, "credential-compromise"),
    (RISC, "account-disabled"),
    (RISC, "account-purged"),
];

/// RFC 8935 §2.3 error codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetError {
    InvalidRequest,
    InvalidKey,
    InvalidIssuer,
    InvalidAudience,
}

impl SetError {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::InvalidRequest => "invalid_request",
            Self::InvalidKey => "invalid_key",
            Self::InvalidIssuer => "invalid_issuer",
            Self::InvalidAudience => "invalid_audience",
        }
    }
}

/// Why a SET was not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejected {
    /// 400 `{"err","description"}`.
    Set(SetError, &'static str),
    /// The transmitter's keys could not be obtained: 503, the transmitter retries.
    KeysUnavailable,
}

fn bad(code: SetError, why: &'static str) -> Rejected {
    Rejected::Set(code, why)
}

/// What a verified SET asks for.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Verified {
    pub jti: String,
    pub revocations: Vec<Revocation>,
    /// Event types we do not apply (acknowledged, counted).
    pub unknown_events: usize,
}

#[derive(Deserialize)]
struct Header {
    alg: String,
    #[serde(default)]
    typ: Option<String>,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    crit: Option<Value>,
}

#[derive(Deserialize)]
struct Claims {
    #[serde(default)]
    iss: Option<String>,
    #[serde(default)]
    aud: Option<Value>,
    #[serde(default)]
    jti: Option<String>,
    #[serde(default)]
    iat: Option<i64>,
    #[serde(default)]
    sub_id: Option<Value>,
    #[serde(default)]
    events: Option<Map<String, Value>>,
}

pub struct SsfReceiver {
    settings: SsfSettings,
    keys: Arc<JwksStore>,
    /// `jti`s seen within the acceptance window (a SET older than it is refused anyway).
    seen: moka::sync::Cache<String, ()>,
}

impl SsfReceiver {
    pub fn new(settings: SsfSettings, http: HttpsClient, metrics: Arc<Metrics>) -> Self {
        let keys = Arc::new(JwksStore::new(
            Arc::new(settings.transmitter.clone()),
            http,
            metrics,
        ));
        // Security state expires by time: a jti is kept for the whole window its SET could be
        // accepted in; the capacity is far above any event rate a transmitter sustains.
        let window = jti_window(&settings);
        let seen = moka::sync::Cache::builder()
            .max_capacity(1_000_000)
            .time_to_live(window)
            .build();
        Self {
            settings,
            keys,
            seen,
        }
    }

    pub fn keys(&self) -> &Arc<JwksStore> {
        &self.keys
    }

    /// How long a processed `jti` is remembered (here, and fleet-wide through Redis): longer
    /// than any window in which its SET could still be accepted.
    pub fn jti_window(&self) -> Duration {
        jti_window(&self.settings)
    }

    /// Verifies `set` (compact JWS) and maps its events; `now_ms` is the receipt time and
    /// `default_until` the expiry for revocations it produces.
    pub async fn verify(
        &self,
        set: &str,
        now_ms: i64,
        default_until: i64,
    ) -> Result<Verified, Rejected> {
        use SetError::*;
        let set = set.trim();
        let (h64, p64, s64) =
            jws::split(set, MAX_SET_BYTES).ok_or(bad(InvalidRequest, "not a compact JWS"))?;
        let header: Header = URL_SAFE_NO_PAD
            .decode(h64)
            .ok()
            .filter(|h| nesting_depth(h) <= MAX_DEPTH)
            .and_then(|h| serde_json::from_slice(&h).ok())
            .ok_or(bad(InvalidRequest, "JOSE header is not JSON"))?;
        if header.crit.is_some() {
            return Err(bad(InvalidRequest, "unsupported critical header"));
        }
        // RFC 8417 §2.3: explicit typing keeps a SET from being taken for another JWT.
        if !jws::typ_is(header.typ.as_deref(), "secevent+jwt") {
            return Err(bad(InvalidRequest, "typ must be secevent+jwt"));
        }
        let alg = crate::config::raw_alg(&header.alg)
            .filter(|a| self.settings.transmitter.algorithms.contains(a))
            .ok_or(bad(InvalidKey, "algorithm not accepted"))?;
        let signing_input = &set.as_bytes()[..h64.len() + 1 + p64.len()];
        self.keys
            .verify_signature(header.kid.as_deref(), alg, signing_input, s64)
            .await
            .map_err(|e| match e {
                TokenFailure::KeysUnavailable => Rejected::KeysUnavailable,
                TokenFailure::Deny(_) => bad(InvalidKey, "signature does not verify"),
            })?;
        let payload = URL_SAFE_NO_PAD
            .decode(p64)
            .map_err(|_| bad(InvalidRequest, "payload is not base64url"))?;
        // Members we do not read are skipped by serde without a depth limit; refuse deep
        // documents before parsing at all.
        if nesting_depth(&payload) > MAX_DEPTH {
            return Err(bad(InvalidRequest, "claims nested too deeply"));
        }
        let claims: Claims = serde_json::from_slice(&payload)
            .map_err(|_| bad(InvalidRequest, "claims are not a JSON object"))?;
        if claims.iss.as_deref() != Some(self.settings.transmitter.issuer.as_str()) {
            return Err(bad(InvalidIssuer, "iss is not the configured transmitter"));
        }
        if !audience_contains(claims.aud.as_ref(), &self.settings.audience) {
            return Err(bad(InvalidAudience, "aud does not name this receiver"));
        }
        let jti = claims
            .jti
            .filter(|j| !j.is_empty() && j.len() <= 256)
            .ok_or(bad(InvalidRequest, "jti missing"))?;
        let now = now_ms.div_euclid(1000);
        let iat = claims.iat.ok_or(bad(InvalidRequest, "iat missing"))?;
        let skew = self.settings.transmitter.clock_skew.as_secs() as i64;
        let max_age = self.settings.max_age.as_secs() as i64;
        if iat > now + skew || iat < now - max_age - skew {
            return Err(bad(InvalidRequest, "iat outside the accepted window"));
        }
        let events = claims
            .events
            .filter(|e| !e.is_empty() && e.len() <= MAX_EVENTS)
            .ok_or(bad(InvalidRequest, "events missing or too many"))?;
        let mut out = Verified {
            jti,
            ..Verified::default()
        };
        for (ty, payload) in &events {
            let known = SUBJECT_EVENTS
                .iter()
                .any(|(base, name)| ty.strip_prefix(base) == Some(name));
            if !known {
                out.unknown_events += 1;
                continue;
            }
            let payload = payload
                .as_object()
                .ok_or(bad(InvalidRequest, "event payload is not an object"))?;
            // SSF 1.0 puts the subject in `sub_id`; CAEP drafts in the event's `subject`.
            let subject = payload
                .get("subject")
                .or(claims.sub_id.as_ref())
                .ok_or(bad(InvalidRequest, "event has no subject"))?;
            let at = match payload.get("event_timestamp") {
                None => iat,
                Some(v) => v.as_i64().filter(|t| *t <= now + skew).ok_or(bad(
                    InvalidRequest,
                    "event_timestamp is not a past NumericDate",
                ))?,
            };
            let (kind, value) = subject_identifier(subject, 0)?;
            let r = Revocation {
                kind,
                value: value.to_owned(),
                until: default_until,
                at_ms: at.saturating_mul(1000),
            };
            let r = r
                .validated(now)
                .map_err(|_| bad(InvalidRequest, "subject identifier value not acceptable"))?;
            out.revocations.push(r);
        }
        Ok(out)
    }

    /// Records `jti` as processed; `false` when it already was (a replay).
    pub fn first_use(&self, jti: &str) -> bool {
        let key = jti.to_owned();
        let entry = self.seen.entry(key).or_insert(());
        entry.is_fresh()
    }

    pub fn seen(&self, jti: &str) -> bool {
        self.seen.contains_key(jti)
    }
}

fn jti_window(s: &SsfSettings) -> Duration {
    s.max_age * 2 + Duration::from_secs(20)
}

/// The deepest `[`/`{` nesting of a JSON text (brackets inside strings do not count).
fn nesting_depth(json: &[u8]) -> usize {
    let (mut depth, mut max, mut in_str, mut escaped) = (0usize, 0usize, false, false);
    for &b in json {
        if in_str {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_str = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_str = true,
            b'{' | b'[' => {
                depth += 1;
                max = max.max(depth);
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    max
}

fn audience_contains(aud: Option<&Value>, want: &str) -> bool {
    match aud {
        Some(Value::String(s)) => s == want,
        Some(Value::Array(a)) => a.iter().any(|v| v.as_str() == Some(want)),
        _ => false,
    }
}

/// RFC 9493 subject identifiers → what to revoke. `iss_sub`, `email` and `opaque` name a
/// subject (matched against tokens' `sub`); `jwt_id` names one token; `complex` is read through
/// its `user` member.
fn subject_identifier(s: &Value, depth: u8) -> Result<(Kind, &str), Rejected> {
    use SetError::InvalidRequest;
    let o = s
        .as_object()
        .ok_or(bad(InvalidRequest, "subject is not an object"))?;
    let field = |k: &str| {
        o.get(k)
            .and_then(Value::as_str)
            .filter(|v| !v.is_empty())
            .ok_or(bad(InvalidRequest, "subject identifier misses a member"))
    };
    match o.get("format").and_then(Value::as_str) {
        Some("iss_sub") => Ok((Kind::Subject, field("sub")?)),
        Some("email") => Ok((Kind::Subject, field("email")?)),
        Some("opaque") => Ok((Kind::Subject, field("id")?)),
        Some("jwt_id") => Ok((Kind::Jti, field("jti")?)),
        Some("complex") if depth == 0 => {
            let user = o
                .get("user")
                .ok_or(bad(InvalidRequest, "complex subject without user"))?;
            subject_identifier(user, 1)
        }
        _ => Err(bad(InvalidRequest, "unsupported subject identifier format")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn subject_formats() {
        let cases = [
            (
                json!({"format":"iss_sub","iss":"https://as","sub":"u1"}),
                Ok((Kind::Subject, "u1")),
            ),
            (
                json!({"format":"email","email":"a@b.example"}),
                Ok((Kind::Subject, "a@b.example")),
            ),
            (
                json!({"format":"opaque","id":"x9"}),
                Ok((Kind::Subject, "x9")),
            ),
            (
                json!({"format":"jwt_id","iss":"https://as","jti":"j-1"}),
                Ok((Kind::Jti, "j-1")),
            ),
            (
                json!({"format":"complex","user":{"format":"opaque","id":"u7"}}),
                Ok((Kind::Subject, "u7")),
            ),
        ];
        for (s, want) in cases {
            assert_eq!(
                subject_identifier(&s, 0).map_err(|_| ()),
                want.map_err(|_: ()| ()),
                "{s}"
            );
        }
        for s in [
            json!({"format":"phone_number","phone_number":"+1"}),
            json!({"format":"iss_sub","iss":"https://as"}),
            json!({"format":"complex","user":{"format":"complex","user":{"format":"opaque","id":"u"}}}),
            json!("u1"),
        ] {
            assert!(subject_identifier(&s, 0).is_err(), "{s}");
        }
    }

    #[test]
    fn nesting() {
        assert_eq!(nesting_depth(br#"{"a":[1,{"b":"[[[{{"}]}"#), 3);
        assert_eq!(nesting_depth(br#"{"a":"\"[[["}"#), 1);
        assert_eq!(nesting_depth(b"1"), 0);
    }

    #[test]
    fn audience_forms() {
        assert!(audience_contains(Some(&json!("r")), "r"));
        assert!(audience_contains(Some(&json!(["x", "r"])), "r"));
        assert!(!audience_contains(Some(&json!(["x"])), "r"));
        assert!(!audience_contains(None, "r"));
    }
}
