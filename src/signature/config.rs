//! The `clients:` and `signatures:` sections of the deployment configuration, parsed then
//! compiled once.
//!
//! ```yaml
//! clients:                                  # registered clients (RFC 9421 request signatures)
//!   - client_id: tpp-1
//!     jwks_uri: https://tpp.example/jwks    # or jwks_file: clients/tpp-1.jwks.json
//! signatures:
//!   max_age: 60s                            # oldest accepted `created`
//!   clock_skew: 10s                         # `created` this far in the future is accepted
//!   response_signing_key_file: keys/resp.pem  # PEM EC P-256; absent: ephemeral key
//!   response_key_id: resp-1                 # absent: the key's RFC 7638 thumbprint
//!   max_response_bytes: 1048576             # absent: listen.limits.max_body_bytes
//! ```

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::config::{IssuerSettings, KeySource, remote_key_uri, resolve};
use crate::duration::HumanDuration;
use crate::txn_token::config::{SigningKeyDer, load_signing_key};

/// One raw `clients:` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientConfig {
    pub client_id: String,
    #[serde(default)]
    pub jwks_uri: Option<String>,
    #[serde(default)]
    pub jwks_file: Option<PathBuf>,
    /// Allow `jwks_uri` over plain `http` to a non-loopback host (labs only).
    #[serde(default)]
    pub allow_insecure_http: bool,
    #[serde(default = "five_minutes")]
    pub jwks_refresh: HumanDuration,
    #[serde(default = "ten_seconds")]
    pub jwks_min_refetch: HumanDuration,
}

/// Raw `signatures:` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignaturesConfig {
    #[serde(default = "sixty_seconds")]
    pub max_age: HumanDuration,
    #[serde(default = "ten_seconds")]
    pub clock_skew: HumanDuration,
    #[serde(default)]
    pub response_signing_key_file: Option<PathBuf>,
    #[serde(default)]
    pub response_key_id: Option<String>,
    #[serde(default)]
    pub max_response_bytes: Option<usize>,
}

fn five_minutes() -> HumanDuration {
    HumanDuration(Duration::from_secs(300))
}
fn ten_seconds() -> HumanDuration {
    HumanDuration(Duration::from_secs(10))
}
fn sixty_seconds() -> HumanDuration {
    HumanDuration(Duration::from_secs(60))
}

/// A registered client and where its keys come from, in the shape `token::JwksStore` takes.
#[derive(Debug, Clone)]
pub struct ClientSettings {
    pub client_id: String,
    pub keys: IssuerSettings,
}

/// Compiled `signatures:`.
#[derive(Debug, Clone)]
pub struct SignatureSettings {
    pub max_age: Duration,
    pub clock_skew: Duration,
    /// `None`: an ephemeral key generated at start.
    pub response_key: Option<SigningKeyDer>,
    pub response_key_id: Option<String>,
    /// Largest upstream response body that is buffered to be digested and signed.
    pub max_response_bytes: usize,
}

impl SignatureSettings {
    /// The settings request verification uses when the section is absent.
    pub fn defaults(max_body_bytes: usize) -> Self {
        Self {
            max_age: Duration::from_secs(60),
            clock_skew: Duration::from_secs(10),
            response_key: None,
            response_key_id: None,
            max_response_bytes: max_body_bytes,
        }
    }
}

/// Compiles `clients:`. `file` is the configuration file (relative paths); errors read
/// `clients[i].field: message`.
pub fn compile_clients(file: &Path, raw: &[ClientConfig]) -> Result<Vec<ClientSettings>, String> {
    let mut out: Vec<ClientSettings> = Vec::with_capacity(raw.len());
    for (i, c) in raw.iter().enumerate() {
        let field = format!("clients[{i}]");
        if c.client_id.is_empty() {
            return Err(format!("{field}.client_id: must not be empty"));
        }
        if out.iter().any(|o| o.client_id == c.client_id) {
            return Err(format!(
                "{field}.client_id: duplicate client {:?}",
                c.client_id
            ));
        }
        let keys = match (&c.jwks_uri, &c.jwks_file) {
            (Some(u), None) => KeySource::Uri(
                remote_key_uri(u, c.allow_insecure_http, &field)
                    .map_err(|m| format!("{field}.jwks_uri: {m}"))?,
            ),
            (None, Some(p)) => KeySource::File(resolve(file, p)),
            _ => {
                return Err(format!(
                    "{field}.jwks_uri: exactly one of jwks_uri or jwks_file is required"
                ));
            }
        };
        out.push(ClientSettings {
            client_id: c.client_id.clone(),
            keys: IssuerSettings {
                // The label of `fapi_guard_jwks_refreshes_total{issuer}` for this key set.
                issuer: format!("client:{}", c.client_id),
                keys,
                algorithms: Vec::new(),
                audiences: Vec::new(),
                max_token_lifetime: Duration::ZERO,
                clock_skew: Duration::ZERO,
                jwks_refresh: c.jwks_refresh.0.max(Duration::from_secs(1)),
                jwks_min_refetch: c.jwks_min_refetch.0,
                purpose_claim: String::new(),
                introspection: None,
            },
        });
    }
    Ok(out)
}

impl SignaturesConfig {
    /// Checks the section and reads the response signing key. Errors read
    /// `signatures.field: message`.
    pub fn compile(&self, file: &Path, max_body_bytes: usize) -> Result<SignatureSettings, String> {
        if self.max_age.0.is_zero() {
            return Err("signatures.max_age: must be more than 0s".into());
        }
        let response_key = match &self.response_signing_key_file {
            None => None,
            Some(p) => Some(
                load_signing_key(&resolve(file, p))
                    .map_err(|m| format!("signatures.response_signing_key_file: {m}"))?,
            ),
        };
        if let Some(id) = &self.response_key_id {
            // It travels as an sf-string (`keyid="…"`, RFC 8941 §3.3.3): printable ASCII.
            if id.is_empty() || !id.bytes().all(|b| (0x20..0x7f).contains(&b)) {
                return Err("signatures.response_key_id: must be non-empty printable ASCII".into());
            }
        }
        let max_response_bytes = self.max_response_bytes.unwrap_or(max_body_bytes);
        if max_response_bytes == 0 {
            return Err("signatures.max_response_bytes: must be at least 1".into());
        }
        Ok(SignatureSettings {
            max_age: self.max_age.0,
            clock_skew: self.clock_skew.0,
            response_key,
            response_key_id: self.response_key_id.clone(),
            max_response_bytes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clients(yaml: &str) -> Result<Vec<ClientSettings>, String> {
        let raw: Vec<ClientConfig> = serde_yaml::from_str(yaml).map_err(|e| e.to_string())?;
        compile_clients(Path::new("/etc/fg/config.yaml"), &raw)
    }

    #[test]
    fn client_entries_compile_or_name_the_field() {
        let ok = clients("[{client_id: tpp-1, jwks_file: c/tpp-1.json}, {client_id: tpp-2, jwks_uri: https://tpp2.example/jwks}]")
            .expect("valid");
        assert_eq!(
            ok[0].keys.keys,
            KeySource::File("/etc/fg/c/tpp-1.json".into())
        );
        assert_eq!(ok[1].keys.issuer, "client:tpp-2");
        let cases = [
            ("no key source", "[{client_id: a}]", "clients[0].jwks_uri"),
            (
                "both sources",
                "[{client_id: a, jwks_file: x, jwks_uri: https://a/j}]",
                "clients[0].jwks_uri",
            ),
            (
                "duplicate",
                "[{client_id: a, jwks_file: x}, {client_id: a, jwks_file: y}]",
                "clients[1].client_id: duplicate",
            ),
            (
                "empty id",
                "[{client_id: '', jwks_file: x}]",
                "clients[0].client_id",
            ),
            (
                "plain http elsewhere",
                "[{client_id: a, jwks_uri: 'http://tpp.example/jwks'}]",
                "clients[0].jwks_uri: plain http",
            ),
            (
                "unknown key",
                "[{client_id: a, jwks_file: x, kid: 1}]",
                "unknown field",
            ),
        ];
        for (name, yaml, want) in cases {
            let e = clients(yaml).expect_err(name);
            assert!(e.contains(want), "{name}: {e}");
        }
    }

    #[test]
    fn signatures_section_checks_its_values() {
        let parse = |y: &str| -> Result<SignatureSettings, String> {
            let raw: SignaturesConfig = serde_yaml::from_str(y).map_err(|e| e.to_string())?;
            raw.compile(Path::new("/nonexistent/config.yaml"), 4096)
        };
        let d = parse("{}").expect("defaults");
        assert_eq!(d.max_age, Duration::from_secs(60));
        assert_eq!(d.max_response_bytes, 4096);
        assert!(d.response_key.is_none());
        let cases = [
            ("zero max_age", "{max_age: 0s}", "signatures.max_age"),
            (
                "missing key file",
                "{response_signing_key_file: nope.pem}",
                "signatures.response_signing_key_file",
            ),
            (
                "bad key id",
                "{response_key_id: \"\"}",
                "signatures.response_key_id",
            ),
            (
                "zero bound",
                "{max_response_bytes: 0}",
                "signatures.max_response_bytes",
            ),
        ];
        for (name, y, want) in cases {
            let e = parse(y).expect_err(name);
            assert!(e.contains(want), "{name}: {e}");
        }
    }
}
