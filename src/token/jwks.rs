//! Issuer keys: fetched from `jwks_uri` (or read from `jwks_file`), kept as the last good set,
//! refreshed in the background, refetched on an unknown `kid` at most once per
//! `jwks_min_refetch`.
//!
//! The last good key set lives in an `ArcSwap` rather than a TTL cache: when the issuer is down
//! we keep verifying with the keys we have (stale-while-error) instead of expiring them and
//! failing every request.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::Value;
use tokio::sync::Mutex;

use crate::config::{IssuerSettings, KeySource};
use crate::http_client::{FetchError, HttpsClient};
use crate::metrics::Metrics;
use crate::reason::DenyReason;
use crate::token::TokenFailure;

/// Most keys a JWKS may hold; more is treated as hostile.
const MAX_KEYS: usize = 64;
/// How long a JWKS fetch may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// Retry period while no key set has ever been loaded.
const RETRY_WHEN_EMPTY: Duration = Duration::from_secs(2);

/// One usable public key.
pub struct Key {
    pub kid: Option<String>,
    pub decoding: DecodingKey,
    /// The same key, validated for aws-lc-rs (RFC 9421 request signatures use it).
    pub public: crate::jwk::PublicJwk,
    family: Family,
    alg: Option<Algorithm>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    Rsa,
    P256,
    P384,
    Ed25519,
}

impl Key {
    /// Whether this key may verify `alg`: the key type must fit (RFC 7518 §3), and a key that
    /// names its `alg` is used for that algorithm only (RFC 7517 §4.4).
    fn fits(&self, alg: Algorithm) -> bool {
        use Algorithm::*;
        let family_ok = match self.family {
            Family::Rsa => matches!(alg, RS256 | RS384 | RS512 | PS256 | PS384 | PS512),
            Family::P256 => alg == ES256,
            Family::P384 => alg == ES384,
            Family::Ed25519 => alg == EdDSA,
        };
        family_ok && self.alg.is_none_or(|a| a == alg)
    }
}

#[derive(Default)]
pub struct KeySet {
    by_kid: HashMap<String, Arc<Key>>,
    all: Vec<Arc<Key>>,
    /// SHA-256 over the usable keys as received: a refresh that brings the same keys does not
    /// change the generation.
    fingerprint: [u8; 32],
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyLookupError {
    /// No key set could ever be loaded: fail closed with 503.
    Unavailable,
    /// Keys are loaded but none fits this `kid`/`alg`.
    NoMatchingKey,
}

/// Why a signature check did not pass (see [`JwksStore::check_signature`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureError {
    /// No key set could ever be loaded.
    Unavailable,
    /// Keys are loaded, none fits this `kid`/`alg` (an unknown `kid` may arrive on refetch).
    NoMatchingKey,
    /// Keys fitting the token were tried and none verifies the signature.
    Invalid,
}

/// Keys of one issuer.
pub struct JwksStore {
    settings: Arc<IssuerSettings>,
    http: HttpsClient,
    current: ArcSwapOption<KeySet>,
    /// Bumped after each change of the key set (a first load included), once the new set is in
    /// place: a verdict reached under an older generation no longer holds.
    generation: AtomicU64,
    /// Single flight and rate limit for fetches: the time of the last attempt.
    last_attempt: Mutex<Option<Instant>>,
    metrics: Arc<Metrics>,
}

impl JwksStore {
    pub fn new(settings: Arc<IssuerSettings>, http: HttpsClient, metrics: Arc<Metrics>) -> Self {
        Self {
            settings,
            http,
            current: ArcSwapOption::empty(),
            generation: AtomicU64::new(0),
            last_attempt: Mutex::new(None),
            metrics,
        }
    }

    pub fn issuer(&self) -> &str {
        &self.settings.issuer
    }

    pub fn has_keys(&self) -> bool {
        self.current.load().is_some()
    }

    /// How many times the key set changed. Read it before a signature check: a result is then
    /// tied to the keys of that generation or a newer one, never an older one.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// Verifies a compact JWS signature (`s64` over `signing_input`) with a key of this issuer
    /// that fits `kid` and `alg`. Keys never loaded → `KeysUnavailable` (fail closed, 503); no
    /// fitting key or a bad signature → `token_signature_invalid`.
    pub async fn verify_signature(
        &self,
        kid: Option<&str>,
        alg: Algorithm,
        signing_input: &[u8],
        s64: &str,
    ) -> Result<(), TokenFailure> {
        self.check_signature(kid, alg, signing_input, s64)
            .await
            .map_err(|e| match e {
                SignatureError::Unavailable => TokenFailure::KeysUnavailable,
                SignatureError::NoMatchingKey | SignatureError::Invalid => {
                    TokenFailure::Deny(DenyReason::TokenSignatureInvalid)
                }
            })
    }

    /// As [`Self::verify_signature`], telling a signature that does not verify under the keys
    /// in place (settled until they change) from no fitting key (may change on refetch).
    pub async fn check_signature(
        &self,
        kid: Option<&str>,
        alg: Algorithm,
        signing_input: &[u8],
        s64: &str,
    ) -> Result<(), SignatureError> {
        let keys = self.keys_for(kid, alg).await.map_err(|e| match e {
            KeyLookupError::Unavailable => SignatureError::Unavailable,
            KeyLookupError::NoMatchingKey => SignatureError::NoMatchingKey,
        })?;
        let ok = keys.iter().any(|k| {
            jsonwebtoken::crypto::verify(s64, signing_input, &k.decoding, alg).unwrap_or(false)
        });
        if ok {
            Ok(())
        } else {
            Err(SignatureError::Invalid)
        }
    }

    /// The keys that may verify a token with this `kid` and `alg`. An unknown `kid` triggers
    /// one refetch (rate-limited), to pick up a rotation.
    pub async fn keys_for(
        &self,
        kid: Option<&str>,
        alg: Algorithm,
    ) -> Result<Vec<Arc<Key>>, KeyLookupError> {
        if let Some(found) = self.lookup(kid, alg) {
            self.metrics.cache_lookup("jwks", true);
            return Ok(found);
        }
        self.metrics.cache_lookup("jwks", false);
        self.refetch_rate_limited().await;
        match self.lookup(kid, alg) {
            Some(found) => Ok(found),
            None if self.has_keys() => Err(KeyLookupError::NoMatchingKey),
            None => Err(KeyLookupError::Unavailable),
        }
    }

    /// The key named `kid`, whatever its algorithm (the caller checks that it fits). An
    /// unknown `kid` triggers one refetch, rate-limited like [`Self::keys_for`].
    pub async fn key_for_kid(&self, kid: &str) -> Result<Arc<Key>, KeyLookupError> {
        let find = || {
            self.current
                .load()
                .as_ref()
                .and_then(|s| s.by_kid.get(kid).cloned())
        };
        if let Some(k) = find() {
            self.metrics.cache_lookup("jwks", true);
            return Ok(k);
        }
        self.metrics.cache_lookup("jwks", false);
        self.refetch_rate_limited().await;
        match find() {
            Some(k) => Ok(k),
            None if self.has_keys() => Err(KeyLookupError::NoMatchingKey),
            None => Err(KeyLookupError::Unavailable),
        }
    }

    fn lookup(&self, kid: Option<&str>, alg: Algorithm) -> Option<Vec<Arc<Key>>> {
        let set = self.current.load_full()?;
        let found: Vec<Arc<Key>> = match kid {
            Some(k) => set
                .by_kid
                .get(k)
                .filter(|key| key.fits(alg))
                .cloned()
                .into_iter()
                .collect(),
            // No `kid`: every key that fits the algorithm is a candidate (bounded by MAX_KEYS).
            None => set
                .all
                .iter()
                .filter(|key| key.fits(alg))
                .cloned()
                .collect(),
        };
        (!found.is_empty()).then_some(found)
    }

    async fn refetch_rate_limited(&self) {
        let mut last = self.last_attempt.lock().await;
        if last.is_some_and(|t| t.elapsed() < self.settings.jwks_min_refetch) {
            return;
        }
        let _ = self.refresh_now().await;
        // Measured from the end of the attempt: requests that queued behind this fetch (a slow
        // issuer takes up to FETCH_TIMEOUT) take its result instead of fetching again one by
        // one, which made the k-th of them wait k fetch timeouts.
        *last = Some(Instant::now());
    }

    /// Fetches and installs the key set. On failure the previous set stays in place.
    pub async fn refresh_now(&self) -> Result<usize, FetchError> {
        let result = self.fetch().await.and_then(|v| parse_jwks(&v));
        match result {
            Ok(set) => {
                let n = set.all.len();
                let changed = self
                    .current
                    .load()
                    .as_ref()
                    .is_none_or(|old| old.fingerprint != set.fingerprint);
                self.current.store(Some(Arc::new(set)));
                // After the store: a reader that sees the new generation sees the new keys.
                if changed {
                    self.generation.fetch_add(1, Ordering::SeqCst);
                }
                self.metrics.jwks_refresh(&self.settings.issuer, true);
                Ok(n)
            }
            Err(e) => {
                self.metrics.jwks_refresh(&self.settings.issuer, false);
                tracing::warn!(issuer = %self.settings.issuer, error = %e, "JWKS refresh failed");
                Err(e)
            }
        }
    }

    async fn fetch(&self) -> Result<Value, FetchError> {
        let bytes = match &self.settings.keys {
            KeySource::File(p) => tokio::fs::read(p)
                .await
                .map_err(|e| FetchError::Io(format!("{}: {e}", p.display())))?,
            KeySource::Uri(u) => self.http.get(u, FETCH_TIMEOUT, 1024 * 1024).await?,
        };
        serde_json::from_slice(&bytes).map_err(|e| FetchError::Invalid(e.to_string()))
    }
}

/// Background refresh: every `jwks_refresh`, or every couple of seconds until a first set
/// has been loaded.
pub fn spawn_refresh(store: Arc<JwksStore>) {
    tokio::spawn(async move {
        loop {
            {
                let mut last = store.last_attempt.lock().await;
                let _ = store.refresh_now().await;
                *last = Some(Instant::now());
            }
            let wait = if store.has_keys() {
                store.settings.jwks_refresh
            } else {
                RETRY_WHEN_EMPTY
            };
            tokio::time::sleep(wait).await;
        }
    });
}

/// Keeps only public signature keys we can use; `kty: oct` (a shared secret) and encryption
/// keys are skipped, a key with private members is refused outright (a misconfigured issuer).
fn parse_jwks(v: &Value) -> Result<KeySet, FetchError> {
    let keys = v
        .get("keys")
        .and_then(Value::as_array)
        .ok_or_else(|| FetchError::Invalid("no \"keys\" array".into()))?;
    let mut set = KeySet::default();
    let mut fingerprint = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    for k in keys.iter().take(MAX_KEYS) {
        if k.get("d").is_some() {
            return Err(FetchError::Invalid("JWKS contains a private key".into()));
        }
        if k.get("use")
            .and_then(Value::as_str)
            .is_some_and(|u| u != "sig")
        {
            continue;
        }
        // jsonwebtoken's `from_jwk` only base64-decodes the members: check the material itself
        // (EC points on their curve, Ed25519 lengths, RSA 2048..=8192 bits), so an issuer that
        // answers garbage keys fails the refresh and the last good set stays, instead of being
        // replaced by keys that verify nothing.
        let Some(public) = k
            .as_object()
            .and_then(|o| crate::jwk::PublicJwk::from_json(o).ok())
        else {
            continue;
        };
        let Ok(jwk) = serde_json::from_value::<Jwk>(k.clone()) else {
            continue;
        };
        let family = match &jwk.algorithm {
            AlgorithmParameters::RSA(_) => Family::Rsa,
            AlgorithmParameters::EllipticCurve(p) => match p.curve {
                EllipticCurve::P256 => Family::P256,
                EllipticCurve::P384 => Family::P384,
                _ => continue,
            },
            AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => {
                Family::Ed25519
            }
            _ => continue,
        };
        let Ok(decoding) = DecodingKey::from_jwk(&jwk) else {
            continue;
        };
        let alg = k
            .get("alg")
            .and_then(Value::as_str)
            .and_then(crate::config::raw_alg);
        let key = Arc::new(Key {
            kid: jwk.common.key_id.clone(),
            decoding,
            public,
            family,
            alg,
        });
        if let Some(kid) = &key.kid {
            set.by_kid.insert(kid.clone(), key.clone());
        }
        set.all.push(key);
        // serde_json objects serialize with sorted members: the same key, the same bytes.
        fingerprint.update(k.to_string().as_bytes());
        fingerprint.update(b"\n");
    }
    set.fingerprint
        .copy_from_slice(fingerprint.finish().as_ref());
    if set.all.is_empty() {
        return Err(FetchError::Invalid("no usable signature key".into()));
    }
    Ok(set)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const EC: &str = "l8tFrhx-34tV3hRICRDY9zCkDlpBhF42UQUfWVAWBFs";
    const EC_Y: &str = "9VE4jf_Ok_o64zbTTlcuNJajHmt6v9TDVrU0CdvGRDA";

    #[test]
    fn jwks_parsing_skips_unusable_keys() {
        let v = json!({"keys": [
            {"kty": "oct", "k": "c2VjcmV0", "kid": "hmac"},
            {"kty": "EC", "crv": "P-256", "x": EC, "y": EC_Y, "kid": "enc", "use": "enc"},
            {"kty": "EC", "crv": "P-256", "x": EC, "y": EC_Y, "kid": "ec1"},
            {"kty": "weird"}
        ]});
        let set = parse_jwks(&v).expect("one usable key");
        assert_eq!(set.all.len(), 1);
        let k = &set.by_kid["ec1"];
        assert!(k.fits(Algorithm::ES256));
        assert!(!k.fits(Algorithm::ES384));
        assert!(!k.fits(Algorithm::PS256));
    }

    #[test]
    fn jwks_with_private_or_no_keys_is_refused() {
        let private = json!({"keys": [{"kty": "EC", "crv": "P-256", "x": EC, "y": EC_Y, "d": EC}]});
        assert!(parse_jwks(&private).is_err());
        assert!(parse_jwks(&json!({"keys": []})).is_err());
        assert!(parse_jwks(&json!({"nope": 1})).is_err());
        let only_oct = json!({"keys": [{"kty": "oct", "k": "c2VjcmV0"}]});
        assert!(parse_jwks(&only_oct).is_err());
    }

    #[test]
    fn keys_with_bad_material_are_not_usable() {
        let off_curve = "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE";
        let v = json!({"keys": [
            {"kty": "EC", "crv": "P-256", "x": off_curve, "y": off_curve, "kid": "off-curve"},
            {"kty": "EC", "crv": "P-256", "x": "AQAB", "y": EC_Y, "kid": "short"},
            {"kty": "RSA", "n": "AQAB", "e": "AQAB", "kid": "tiny-rsa"},
            {"kty": "OKP", "crv": "Ed25519", "x": "AQAB", "kid": "short-ed"}
        ]});
        assert!(parse_jwks(&v).is_err(), "no usable key among garbage");
        let mut mixed = v.clone();
        mixed["keys"]
            .as_array_mut()
            .expect("array")
            .push(json!({"kty": "EC", "crv": "P-256", "x": EC, "y": EC_Y, "kid": "good"}));
        let set = parse_jwks(&mixed).expect("the good key");
        assert_eq!(set.all.len(), 1);
        assert!(set.by_kid.contains_key("good"));
    }

    #[test]
    fn the_fingerprint_changes_with_the_keys_only() {
        let one = json!({"keys": [{"kty": "EC", "crv": "P-256", "x": EC, "y": EC_Y, "kid": "a"}]});
        let reordered =
            json!({"keys": [{"kid": "a", "y": EC_Y, "x": EC, "crv": "P-256", "kty": "EC"}]});
        let renamed =
            json!({"keys": [{"kty": "EC", "crv": "P-256", "x": EC, "y": EC_Y, "kid": "b"}]});
        let with_unusable = json!({"keys": [
            {"kty": "EC", "crv": "P-256", "x": EC, "y": EC_Y, "kid": "a"},
            {"kty": "oct", "k": "c2VjcmV0"}
        ]});
        let fp = |v: &Value| parse_jwks(v).expect("keys").fingerprint;
        let cases: [(&str, &Value, bool); 3] = [
            ("members in another order", &reordered, true),
            ("an unusable key added", &with_unusable, true),
            ("another kid", &renamed, false),
        ];
        for (name, v, same) in cases {
            assert_eq!(fp(&one) == fp(v), same, "{name}");
        }
    }

    #[test]
    fn key_alg_pins_the_algorithm() {
        let v = json!({"keys": [{"kty": "EC", "crv": "P-256", "x": EC, "y": EC_Y, "kid": "a", "alg": "ES256"}]});
        let set = parse_jwks(&v).expect("key");
        assert!(set.by_kid["a"].fits(Algorithm::ES256));
    }
}
