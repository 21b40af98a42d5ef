//! DPoP (RFC 9449) building blocks for a resource server: configuration, proof verification
//! (§4.3, §7.1), `htu` normalization, stateless nonces (§8–§9) and replay detection (§11.1).
//!
//! Everything here is pure and synchronous. The proxy reads the single `DPoP` header
//! (`proxy::credentials::dpop_proof`) and calls [`verify_proof`]; `decide` compares the proof key
//! with the token's `cnf.jkt`; only a proof that binds an otherwise acceptable token is then
//! recorded in the [`ReplayStore`] (§11.1), so a proof on an expired or foreign token costs no
//! replay-store memory.

pub mod htu;
pub mod nonce;
mod proof;
pub mod replay;
#[cfg(test)]
pub(crate) mod testkit;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::duration::HumanDuration;
use crate::jwk::JwsAlg;

pub use nonce::NonceIssuer;
pub use proof::{ath, verify_proof};
pub use replay::{MemoryReplayStore, ReplayStore, ReplayUnavailable};

/// Proofs longer than this are refused before any decoding (RFC 9449 §11.1 asks for cheap
/// rejection; a P-256 proof is ~600 bytes, an RSA-4096 one ~2 KiB).
pub const MAX_PROOF_LEN: usize = 8 * 1024;
/// Default allowance for clocks that disagree, each side of the `iat` window.
pub const DEFAULT_CLOCK_SKEW: Duration = Duration::from_secs(10);
/// Default `proof_max_age` (spec §4).
pub const DEFAULT_PROOF_MAX_AGE: Duration = Duration::from_secs(60);
/// FAPI 2.0 Security Profile §5.4: PS256, ES256 and EdDSA.
pub const DEFAULT_ALGORITHMS: [JwsAlg; 3] = [JwsAlg::PS256, JwsAlg::ES256, JwsAlg::EdDSA];
/// Upper bound for `proof_max_age`: RFC 9449 §11.1 wants a short window, and the replay cache
/// must hold every proof for the whole window.
pub const MAX_PROOF_MAX_AGE: Duration = Duration::from_secs(600);

/// Compiled DPoP settings, as used on the request path.
#[derive(Debug, Clone)]
pub struct DpopSettings {
    /// How old a proof's `iat` may be (RFC 9449 §4.3 step 10, §11.1).
    pub proof_max_age: Duration,
    /// Allowed clock difference, applied on both sides of the window.
    pub clock_skew: Duration,
    /// Accepted proof algorithms; never `none` or `HS*` (the type cannot hold them).
    pub algorithms: Vec<JwsAlg>,
    /// Server-provided nonces (RFC 9449 §9) are required when set.
    pub nonce: Option<NonceIssuer>,
    /// Hard limit of the replay store: at it, new proofs are refused (503), old ones kept.
    pub replay_cache_max_entries: usize,
}

/// `dpop:` section of the configuration file (spec §4), before compilation.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DpopConfig {
    #[serde(default = "default_max_age")]
    pub proof_max_age: HumanDuration,
    #[serde(default = "default_algorithm_names")]
    pub algorithms: Vec<String>,
    #[serde(default)]
    pub nonce: NonceMode,
    #[serde(default)]
    pub nonce_secret_file: Option<PathBuf>,
    /// Hard limit of live proofs remembered for replay detection (see `dpop::replay`).
    #[serde(default = "default_replay_max")]
    pub replay_cache_max_entries: usize,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NonceMode {
    #[default]
    Off,
    Required,
}

/// What the caller knows about the request a proof must match.
pub struct ProofRequest<'a> {
    /// The `DPoP` header value.
    pub proof: &'a str,
    /// The request method, e.g. `GET` (compared exactly: RFC 9110 §9.1 methods are case-sensitive).
    pub method: &'a str,
    /// The URI the proxy serves this request at: `public_url` + request path, not yet normalized.
    pub htu: &'a str,
    /// The access token presented with the `DPoP` scheme, if any; requires `ath` (RFC 9449 §4.2).
    pub access_token: Option<&'a str>,
    /// Unix seconds.
    pub now: i64,
}

/// What a valid proof establishes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedProof {
    /// RFC 7638 thumbprint of the proof's `jwk`; must equal the token's `cnf.jkt`.
    pub jkt: String,
    pub jti: String,
    pub iat: i64,
    /// SHA-256 over `normalized htu || 0x00 || jti`: replay detection per target URI (§11.1).
    pub replay_key: [u8; 32],
    /// When the proof stops passing the `iat` window: `iat + proof_max_age + clock_skew`.
    pub replay_expires_at: i64,
}

impl Default for DpopSettings {
    fn default() -> Self {
        Self {
            proof_max_age: DEFAULT_PROOF_MAX_AGE,
            clock_skew: DEFAULT_CLOCK_SKEW,
            algorithms: DEFAULT_ALGORITHMS.to_vec(),
            nonce: None,
            replay_cache_max_entries: replay::DEFAULT_MAX_ENTRIES,
        }
    }
}

impl Default for DpopConfig {
    fn default() -> Self {
        Self {
            proof_max_age: default_max_age(),
            algorithms: default_algorithm_names(),
            nonce: NonceMode::Off,
            nonce_secret_file: None,
            replay_cache_max_entries: replay::DEFAULT_MAX_ENTRIES,
        }
    }
}

impl DpopConfig {
    /// Validates and compiles the section. `base_dir` is the configuration file's directory;
    /// errors name the field (`dpop.algorithms[1]: …`) and never contain the secret.
    pub fn compile(&self, base_dir: &Path) -> Result<DpopSettings, String> {
        let max_age = self.proof_max_age.0;
        if max_age < Duration::from_secs(1) || max_age > MAX_PROOF_MAX_AGE {
            return Err(format!(
                "dpop.proof_max_age: {max_age:?} is outside 1s..={}s",
                MAX_PROOF_MAX_AGE.as_secs()
            ));
        }
        if self.algorithms.is_empty() {
            return Err("dpop.algorithms: at least one algorithm is required".into());
        }
        let mut algorithms = Vec::with_capacity(self.algorithms.len());
        for (i, name) in self.algorithms.iter().enumerate() {
            let alg = JwsAlg::parse(name).ok_or_else(|| algorithm_error(i, name))?;
            if !algorithms.contains(&alg) {
                algorithms.push(alg);
            }
        }
        let nonce = match (self.nonce, &self.nonce_secret_file) {
            (NonceMode::Off, _) => None,
            (NonceMode::Required, None) => {
                return Err(
                    "dpop.nonce_secret_file: required when dpop.nonce is required \
                            (the secret is shared by all replicas)"
                        .into(),
                );
            }
            (NonceMode::Required, Some(file)) => Some(load_nonce_issuer(&base_dir.join(file))?),
        };
        if !(1..=replay::MAX_MAX_ENTRIES).contains(&self.replay_cache_max_entries) {
            return Err(format!(
                "dpop.replay_cache_max_entries: {} is outside 1..={}",
                self.replay_cache_max_entries,
                replay::MAX_MAX_ENTRIES
            ));
        }
        Ok(DpopSettings {
            proof_max_age: max_age,
            clock_skew: DEFAULT_CLOCK_SKEW,
            algorithms,
            nonce,
            replay_cache_max_entries: self.replay_cache_max_entries,
        })
    }
}

fn default_max_age() -> HumanDuration {
    HumanDuration(DEFAULT_PROOF_MAX_AGE)
}

fn default_replay_max() -> usize {
    replay::DEFAULT_MAX_ENTRIES
}

fn default_algorithm_names() -> Vec<String> {
    DEFAULT_ALGORITHMS
        .iter()
        .map(|a| a.as_str().to_owned())
        .collect()
}

fn algorithm_error(i: usize, name: &str) -> String {
    let field = format!("dpop.algorithms[{i}]");
    if name.eq_ignore_ascii_case("none") {
        format!("{field}: \"none\" is never accepted: a DPoP proof must be signed (RFC 9449 §4.2)")
    } else if name.to_ascii_uppercase().starts_with("HS") {
        format!(
            "{field}: {name:?} is a symmetric (HMAC) algorithm and is never accepted: \
             a DPoP proof is signed with the private key of its public jwk (RFC 9449 §4.2)"
        )
    } else {
        let known: Vec<&str> = JwsAlg::ALL.iter().map(|a| a.as_str()).collect();
        format!(
            "{field}: unknown algorithm {name:?} (supported: {})",
            known.join(", ")
        )
    }
}

fn load_nonce_issuer(path: &Path) -> Result<NonceIssuer, String> {
    let field = "dpop.nonce_secret_file";
    let bytes =
        std::fs::read(path).map_err(|e| format!("{field}: cannot read {}: {e}", path.display()))?;
    // A trailing newline from `echo` or a Secret mount is not part of the secret.
    NonceIssuer::new(bytes.trim_ascii()).map_err(|e| format!("{field}: {}: {e}", path.display()))
}

impl std::fmt::Debug for ProofRequest<'_> {
    /// The proof and the token are credentials: never print them.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProofRequest")
            .field("proof_len", &self.proof.len())
            .field("method", &self.method)
            .field("htu", &self.htu)
            .field("access_token", &self.access_token.map(|_| "<redacted>"))
            .field("now", &self.now)
            .finish()
    }
}

#[cfg(test)]
mod tests;
