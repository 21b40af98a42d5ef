//! `revocation:` section (spec §4): limits of the revocation sets and the Shared Signals
//! receiver (RFC 8935 push delivery at admin `/ssf/events`).

use std::path::Path;
use std::time::Duration;

use http::Uri;
use jsonwebtoken::Algorithm;
use serde::Deserialize;

use crate::config::{IssuerSettings, KeySource};
use crate::duration::HumanDuration;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevocationConfig {
    /// Live revocations held at most; beyond it new ones are refused (503), never old ones
    /// forgotten.
    #[serde(default = "default_max_entries")]
    pub max_entries: usize,
    #[serde(default)]
    pub ssf: Option<SsfConfig>,
}

fn default_max_entries() -> usize {
    1_000_000
}

impl Default for RevocationConfig {
    fn default() -> Self {
        Self {
            max_entries: default_max_entries(),
            ssf: None,
        }
    }
}

/// The Shared Signals transmitter whose Security Event Tokens are accepted.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SsfConfig {
    pub issuer: String,
    #[serde(default)]
    pub jwks_uri: Option<String>,
    #[serde(default)]
    pub jwks_file: Option<std::path::PathBuf>,
    /// This receiver's identifier: the SET's `aud` must contain it (RFC 8417 §2.2).
    pub audience: String,
    /// CAEP interoperability profiles use RS256; `none` and HS* are never accepted.
    #[serde(default = "default_ssf_algorithms")]
    pub algorithms: Vec<String>,
    /// How old a SET's `iat` may be (and how long its `jti` is remembered).
    #[serde(default = "default_max_age")]
    pub max_age: HumanDuration,
}

fn default_ssf_algorithms() -> Vec<String> {
    ["RS256", "PS256", "ES256"].map(String::from).to_vec()
}

fn default_max_age() -> HumanDuration {
    HumanDuration(Duration::from_secs(300))
}

#[derive(Debug, Clone)]
pub struct RevocationSettings {
    pub max_entries: usize,
    pub ssf: Option<SsfSettings>,
}

#[derive(Debug, Clone)]
pub struct SsfSettings {
    /// Transmitter keys, verified like an issuer's (same JWKS store and algorithm rules).
    pub transmitter: IssuerSettings,
    pub audience: String,
    pub max_age: Duration,
}

impl RevocationConfig {
    pub fn compile(self, file: &Path) -> Result<RevocationSettings, String> {
        if self.max_entries == 0 {
            return Err("revocation.max_entries: must be at least 1".into());
        }
        let ssf = match self.ssf {
            None => None,
            Some(s) => Some(s.compile(file)?),
        };
        Ok(RevocationSettings {
            max_entries: self.max_entries,
            ssf,
        })
    }
}

impl SsfConfig {
    fn compile(self, file: &Path) -> Result<SsfSettings, String> {
        let f = "revocation.ssf";
        if self.issuer.is_empty() || self.audience.is_empty() {
            return Err(format!("{f}.issuer: issuer and audience must not be empty"));
        }
        let keys = match (self.jwks_uri, self.jwks_file) {
            (Some(u), None) => {
                let uri: Uri = u.parse().map_err(|e| format!("{f}.jwks_uri: {e}"))?;
                if !matches!(uri.scheme_str(), Some("https" | "http")) {
                    return Err(format!("{f}.jwks_uri: must be an http(s) URL"));
                }
                KeySource::Uri(uri)
            }
            (None, Some(p)) => KeySource::File(crate::config::resolve(file, &p)),
            _ => {
                return Err(format!(
                    "{f}.jwks_uri: exactly one of jwks_uri or jwks_file is required"
                ));
            }
        };
        let mut algorithms: Vec<Algorithm> = Vec::new();
        for a in &self.algorithms {
            // Asymmetric algorithms only: `none` and HS* are refused here as for issuers.
            algorithms.push(crate::config::raw_alg(a).ok_or_else(|| {
                format!("{f}.algorithms: {a:?} is not an accepted asymmetric algorithm")
            })?);
        }
        if algorithms.is_empty() {
            return Err(format!("{f}.algorithms: must list at least one algorithm"));
        }
        Ok(SsfSettings {
            transmitter: IssuerSettings {
                issuer: self.issuer,
                keys,
                algorithms,
                audiences: vec![self.audience.clone()],
                max_token_lifetime: self.max_age.0,
                clock_skew: Duration::from_secs(10),
                jwks_refresh: Duration::from_secs(300),
                jwks_min_refetch: Duration::from_secs(10),
                purpose_claim: crate::purpose::DEFAULT_CLAIM.to_owned(),
                introspection: None,
            },
            audience: self.audience,
            max_age: self.max_age.0,
        })
    }
}
