//! `issuers[].introspection:` (RFC 7662 token introspection for opaque access tokens), before
//! and after compilation.

use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use http::{HeaderValue, Uri};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_encode};
use serde::Deserialize;

use crate::duration::HumanDuration;
use crate::secret::Secret;

/// The `application/x-www-form-urlencoded` byte serializer's set (WHATWG URL §5.2): everything
/// but ASCII alphanumerics and `*-._` is percent-encoded.
pub(super) const FORM: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'*')
    .remove(b'-')
    .remove(b'.')
    .remove(b'_');

/// `issuers[].introspection:` as written in the configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IntrospectionConfig {
    /// The issuer's RFC 7662 introspection endpoint: `https`, or `http` to a loopback host (or
    /// with the issuer's `allow_insecure_http`).
    pub url: String,
    /// This proxy's client id at the issuer (client_secret_basic, RFC 6749 §2.3.1).
    pub client_id: String,
    /// File holding the client secret (at least 16 characters; surrounding whitespace ignored).
    pub client_secret_file: PathBuf,
    /// How long an answer is reused; never beyond the token's `exp`.
    #[serde(default = "default_cache_ttl")]
    pub cache_ttl: HumanDuration,
    /// Per call; a slower endpoint is unavailable (503 `dependency_unavailable`).
    #[serde(default = "default_timeout")]
    pub timeout: HumanDuration,
    /// Bound on cached answers (active and inactive together).
    #[serde(default = "default_capacity")]
    pub cache_capacity: u64,
}

fn default_cache_ttl() -> HumanDuration {
    HumanDuration(Duration::from_secs(30))
}
fn default_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(1))
}
fn default_capacity() -> u64 {
    10_000
}

/// The compiled section. `Debug` never shows the secret (the credentials header is marked
/// sensitive, which `http` prints as `Sensitive`).
#[derive(Debug, Clone)]
pub struct IntrospectionSettings {
    pub url: Uri,
    pub client_id: String,
    /// `Basic base64(urlencode(client_id) ":" urlencode(secret))`, built once.
    pub(super) authorization: HeaderValue,
    pub cache_ttl: Duration,
    pub timeout: Duration,
    pub cache_capacity: u64,
}

impl IntrospectionConfig {
    /// `file` anchors `client_secret_file`; `field` is the issuer's path (`issuers[0]`) for
    /// messages. Errors read `issuers[0].introspection.<key>: message`.
    pub fn compile(
        self,
        file: &Path,
        field: &str,
        allow_insecure_http: bool,
    ) -> Result<IntrospectionSettings, String> {
        let at = |k: &str| format!("{field}.introspection.{k}");
        let url = endpoint(&self.url, allow_insecure_http, field)
            .map_err(|m| format!("{}: {m}", at("url")))?;
        if self.client_id.is_empty() || self.client_id.chars().any(char::is_control) {
            return Err(format!(
                "{}: must be non-empty, without control characters",
                at("client_id")
            ));
        }
        let secret = Secret::from_file(&crate::config::resolve(file, &self.client_secret_file))
            .map_err(|m| format!("{}: {m}", at("client_secret_file")))?;
        if self.timeout.0.is_zero() {
            return Err(format!("{}: must be more than 0", at("timeout")));
        }
        if self.cache_capacity == 0 {
            return Err(format!("{}: must be at least 1", at("cache_capacity")));
        }
        Ok(IntrospectionSettings {
            authorization: basic_credentials(&self.client_id, &secret),
            url,
            client_id: self.client_id,
            cache_ttl: self.cache_ttl.0,
            timeout: self.timeout.0,
            cache_capacity: self.cache_capacity,
        })
    }
}

/// RFC 6749 §2.3.1 (client_secret_basic, as RFC 7662 §2.1 uses it): id and secret are each
/// form-urlencoded, joined by `:`, then base64-encoded.
pub(super) fn basic_credentials(client_id: &str, secret: &Secret) -> HeaderValue {
    let pair = format!(
        "{}:{}",
        percent_encode(client_id.as_bytes(), FORM),
        percent_encode(secret.expose(), FORM)
    );
    let value = format!("Basic {}", STANDARD.encode(pair));
    // Invariant: "Basic " and the base64 alphabet are visible ASCII, always a valid value.
    let mut h = HeaderValue::try_from(value).unwrap_or_else(|_| HeaderValue::from_static(""));
    h.set_sensitive(true);
    h
}

/// `https`, or plain `http` only to a loopback host unless the issuer allows it: the client
/// secret and every opaque token travel in this request. No user information, no fragment.
fn endpoint(u: &str, allow_insecure_http: bool, field: &str) -> Result<Uri, String> {
    let uri: Uri = u.parse().map_err(|e| format!("not a URL: {e}"))?;
    let host = uri.host().ok_or("needs a host")?;
    if uri.authority().is_some_and(|a| a.as_str().contains('@')) || u.contains('#') {
        return Err("must not contain user information or a fragment".into());
    }
    match uri.scheme_str() {
        Some("https") => Ok(uri),
        Some("http") if allow_insecure_http || crate::config::is_loopback_host(host) => Ok(uri),
        Some("http") => Err(format!(
            "plain http to a non-loopback host is refused (the client secret and the tokens \
             would travel in clear text): use https, or set {field}.allow_insecure_http: true"
        )),
        _ => Err("must be an https URL".into()),
    }
}
