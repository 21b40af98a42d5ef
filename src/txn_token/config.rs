//! The `transaction_token:` section of the deployment config (spec §4), parsed then compiled
//! once into [`TxnTokenSettings`].
//!
//! ```yaml
//! transaction_token:
//!   enabled: true                 # mint a Txn-Token for every allowed request
//!   signing_key_file: keys/txn.pem  # PEM EC P-256 (PKCS#8 or SEC1); absent: ephemeral key
//!   audience: bank.internal       # the trust domain (required when enabled)
//!   lifetime: 60s                 # at most 60s
//!   issuer: fapi-guard
//!   accept:                       # internal-hop mode: Txn-Tokens are the credential
//!     issuer: fapi-guard
//!     jwks_uri: https://edge.bank.svc:9902/jwks  # or jwks_file; plain http only to loopback
//!     allow_insecure_http: false  # true: permit plain http to another host (labs only)
//!     audience: bank.internal
//!     clock_skew: 10s
//! ```

use std::path::{Path, PathBuf};
use std::time::Duration;

use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
use jsonwebtoken::Algorithm;
use rustls::pki_types::PrivateKeyDer;
use rustls::pki_types::pem::PemObject;
use serde::Deserialize;

use super::MAX_LIFETIME;
use crate::config::{IssuerSettings, KeySource};
use crate::duration::HumanDuration;

/// Raw `transaction_token:` section, exactly as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TxnTokenConfig {
    #[serde(default)]
    pub enabled: bool,
    #[serde(default)]
    pub signing_key_file: Option<PathBuf>,
    #[serde(default)]
    pub audience: Option<String>,
    #[serde(default = "default_lifetime")]
    pub lifetime: HumanDuration,
    #[serde(default = "default_issuer")]
    pub issuer: String,
    #[serde(default)]
    pub accept: Option<AcceptConfig>,
}

/// Raw `transaction_token.accept:`: the trusted Txn-Token issuer of internal-hop mode.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AcceptConfig {
    pub issuer: String,
    #[serde(default)]
    pub jwks_uri: Option<String>,
    #[serde(default)]
    pub jwks_file: Option<PathBuf>,
    pub audience: String,
    /// Allow `jwks_uri` over plain `http` to a non-loopback host (a lab cluster without TLS
    /// between pods): off by default, since whoever can swap the keys can mint Txn-Tokens.
    #[serde(default)]
    pub allow_insecure_http: bool,
    #[serde(default = "default_skew")]
    pub clock_skew: HumanDuration,
}

/// Compiled settings. Both halves are independent: an edge mints, an internal hop accepts (and
/// may mint too).
#[derive(Debug, Clone, Default)]
pub struct TxnTokenSettings {
    /// `Some` when `enabled: true`.
    pub mint: Option<MintSettings>,
    /// `Some` when `accept:` is configured.
    pub accept: Option<AcceptSettings>,
}

#[derive(Debug, Clone)]
pub struct MintSettings {
    pub issuer: String,
    /// The trust domain (draft-ietf-oauth-transaction-tokens: `aud` identifies the trust domain).
    pub audience: String,
    pub lifetime: Duration,
    /// `None`: generate an ephemeral key at start (published at admin `/jwks`).
    pub signing_key: Option<SigningKeyDer>,
}

#[derive(Debug, Clone)]
pub struct AcceptSettings {
    /// The trusted issuer, in the shape `token::JwksStore` takes: its key source, the accepted
    /// algorithms (ES256, PS256, EdDSA), the one audience, the 60 s lifetime cap and the skew.
    pub issuer: IssuerSettings,
}

/// A validated EC P-256 private key (PKCS#8 or SEC1 DER). Never printed.
#[derive(Clone)]
pub struct SigningKeyDer(pub(crate) Vec<u8>);

impl std::fmt::Debug for SigningKeyDer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningKeyDer(<redacted>)")
    }
}

/// Algorithms a Txn-Token may be signed with: the FAPI 2.0 set, asymmetric only.
pub const ACCEPTED_ALGORITHMS: [Algorithm; 3] =
    [Algorithm::ES256, Algorithm::PS256, Algorithm::EdDSA];

fn default_lifetime() -> HumanDuration {
    HumanDuration(MAX_LIFETIME)
}
fn default_issuer() -> String {
    "fapi-guard".into()
}
fn default_skew() -> HumanDuration {
    HumanDuration(Duration::from_secs(10))
}

impl TxnTokenConfig {
    /// Checks the section, reads the signing key and resolves paths against `base_dir` (the
    /// config file's directory). Errors read `transaction_token.field: message`.
    pub fn compile(&self, base_dir: &Path) -> Result<TxnTokenSettings, String> {
        let mint = if self.enabled {
            Some(self.compile_mint(base_dir)?)
        } else {
            None
        };
        let accept = match &self.accept {
            None => None,
            Some(a) => Some(a.compile(base_dir)?),
        };
        Ok(TxnTokenSettings { mint, accept })
    }

    fn compile_mint(&self, base_dir: &Path) -> Result<MintSettings, String> {
        let f = "transaction_token";
        let audience = self
            .audience
            .clone()
            .filter(|a| !a.is_empty())
            .ok_or(format!(
                "{f}.audience: required when enabled (the trust domain)"
            ))?;
        let lifetime = self.lifetime.0;
        // Txn-Tokens are short-lived by design; spec §4 caps them at 60 s.
        if lifetime < Duration::from_secs(1)
            || lifetime > MAX_LIFETIME
            || lifetime.subsec_nanos() != 0
        {
            return Err(format!(
                "{f}.lifetime: must be whole seconds between 1s and 60s"
            ));
        }
        if self.issuer.is_empty() {
            return Err(format!("{f}.issuer: must not be empty"));
        }
        let signing_key = match &self.signing_key_file {
            None => None,
            Some(p) => Some(
                load_signing_key(&base_dir.join(p))
                    .map_err(|m| format!("{f}.signing_key_file: {m}"))?,
            ),
        };
        Ok(MintSettings {
            issuer: self.issuer.clone(),
            audience,
            lifetime,
            signing_key,
        })
    }
}

impl AcceptConfig {
    fn compile(&self, base_dir: &Path) -> Result<AcceptSettings, String> {
        let f = "transaction_token.accept";
        if self.issuer.is_empty() {
            return Err(format!("{f}.issuer: must not be empty"));
        }
        if self.audience.is_empty() {
            return Err(format!("{f}.audience: must not be empty"));
        }
        let keys = match (&self.jwks_uri, &self.jwks_file) {
            (Some(u), None) => KeySource::Uri(
                crate::config::remote_key_uri(u, self.allow_insecure_http, f)
                    .map_err(|m| format!("{f}.jwks_uri: {m}"))?,
            ),
            (None, Some(p)) => KeySource::File(base_dir.join(p)),
            _ => {
                return Err(format!(
                    "{f}.jwks_uri: exactly one of jwks_uri or jwks_file is required"
                ));
            }
        };
        let skew = self.clock_skew.0;
        if skew > MAX_LIFETIME {
            return Err(format!("{f}.clock_skew: at most 60s"));
        }
        Ok(AcceptSettings {
            issuer: IssuerSettings {
                issuer: self.issuer.clone(),
                keys,
                algorithms: ACCEPTED_ALGORITHMS.to_vec(),
                audiences: vec![self.audience.clone()],
                max_token_lifetime: MAX_LIFETIME,
                clock_skew: skew,
                jwks_refresh: Duration::from_secs(300),
                jwks_min_refetch: Duration::from_secs(10),
                // The edge writes the purpose under the Txn-Token's own `purpose` claim.
                purpose_claim: crate::purpose::DEFAULT_CLAIM.to_owned(),
                introspection: None,
            },
        })
    }
}

/// Reads a PEM EC P-256 private key (PKCS#8 `PRIVATE KEY` or SEC1 `EC PRIVATE KEY`) and checks
/// that aws-lc-rs accepts it for ES256, so a wrong key fails at load.
pub(crate) fn load_signing_key(path: &Path) -> Result<SigningKeyDer, String> {
    let pem = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    // The first private key section (PKCS#8, SEC1 or PKCS#1); other sections are skipped.
    let der = match PrivateKeyDer::from_pem_slice(&pem) {
        Ok(PrivateKeyDer::Pkcs8(k)) => k.secret_pkcs8_der().to_vec(),
        Ok(PrivateKeyDer::Sec1(k)) => k.secret_sec1_der().to_vec(),
        Ok(_) => return Err("not an EC private key (want PEM PKCS#8 EC P-256)".into()),
        Err(_) => return Err("no PEM private key found".into()),
    };
    EcdsaKeyPair::from_private_key_der(&ECDSA_P256_SHA256_FIXED_SIGNING, &der)
        .map_err(|_| "not an EC P-256 private key usable for ES256".to_owned())?;
    Ok(SigningKeyDer(der))
}

#[cfg(test)]
mod tests;
