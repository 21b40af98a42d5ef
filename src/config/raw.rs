//! Raw serde structs mirroring spec §4 one to one, and their compilation into `Config`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use http::Uri;
use jsonwebtoken::Algorithm;
use serde::Deserialize;

use super::ForwardedCertSettings;
use super::cidr::Cidr;
use super::{
    AdminSettings, Config, InvalidConfig, IssuerSettings, KeySource, Limits, ListenSettings,
    UpstreamSettings, resolve,
};
use crate::audit::AuditConfig;
use crate::consent::ConsentConfig;
use crate::dpop::DpopConfig;
use crate::duration::HumanDuration;
use crate::identity::RawIdentityHeaders;
use crate::mtls::ForwardedFormat;
use crate::secret::Secret;
use crate::tls::TlsConfig;
use crate::txn_token::TxnTokenConfig;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub listen: RawListen,
    pub upstream: RawUpstream,
    #[serde(default)]
    pub admin: Option<RawAdmin>,
    pub issuers: Vec<RawIssuer>,
    pub policies: Vec<PathBuf>,
    #[serde(default)]
    pub token_cache: RawTokenCache,
    #[serde(default)]
    pub dpop: Option<DpopConfig>,
    #[serde(default)]
    pub audit: Option<AuditConfig>,
    #[serde(default)]
    pub transaction_token: Option<TxnTokenConfig>,
    pub consent: Option<ConsentConfig>,
    #[serde(default)]
    pub state: Option<crate::state::StateConfig>,
    #[serde(default)]
    pub revocation: Option<crate::revocation::config::RevocationConfig>,
    /// Registered clients whose request signatures (RFC 9421) are verified.
    #[serde(default)]
    pub clients: Option<Vec<crate::signature::config::ClientConfig>>,
    #[serde(default)]
    pub signatures: Option<crate::signature::config::SignaturesConfig>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawListen {
    #[serde(default = "default_listen")]
    pub address: SocketAddr,
    pub public_url: String,
    #[serde(default)]
    pub limits: RawLimits,
    #[serde(default)]
    pub forwarded_client_cert: Option<RawForwardedCert>,
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    /// After SIGTERM: readiness is false but the listener keeps accepting this long, while
    /// endpoint removal propagates to kube-proxy and load balancers.
    #[serde(default = "five_seconds")]
    pub drain_delay: HumanDuration,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawForwardedCert {
    #[serde(default = "default_xfcc_header")]
    pub header: String,
    #[serde(default = "default_xfcc_format")]
    pub format: ForwardedFormat,
    pub trusted_peers: Vec<String>,
}

fn default_xfcc_header() -> String {
    "x-forwarded-client-cert".into()
}
fn default_xfcc_format() -> ForwardedFormat {
    ForwardedFormat::Xfcc
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawLimits {
    pub max_header_bytes: usize,
    pub max_body_bytes: usize,
    /// Bound on the memory all buffered request bodies take together.
    pub max_buffered_bytes: usize,
    pub header_read_timeout: HumanDuration,
    pub request_timeout: HumanDuration,
}

impl Default for RawLimits {
    fn default() -> Self {
        Self {
            max_header_bytes: 16 * 1024,
            max_body_bytes: 1024 * 1024,
            max_buffered_bytes: 64 * 1024 * 1024,
            header_read_timeout: HumanDuration(Duration::from_secs(5)),
            request_timeout: HumanDuration(Duration::from_secs(30)),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUpstream {
    pub url: String,
    #[serde(default = "one_second")]
    pub connect_timeout: HumanDuration,
    #[serde(default = "thirty_seconds")]
    pub timeout: HumanDuration,
    #[serde(default)]
    pub identity_headers: RawIdentityHeaders,
    /// Request headers never forwarded (method-override / URL-rewrite headers by default).
    #[serde(default)]
    pub strip_headers: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    #[serde(default = "default_admin")]
    pub address: SocketAddr,
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// Read-only listener (metrics, probes, public keys) that may bind the pod IP while the
    /// full admin listener stays on loopback.
    #[serde(default)]
    pub metrics_address: Option<SocketAddr>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawIssuer {
    pub issuer: String,
    #[serde(default)]
    pub jwks_uri: Option<String>,
    #[serde(default)]
    pub jwks_file: Option<PathBuf>,
    /// Allow `jwks_uri` and `introspection.url` over plain `http` to a non-loopback host (tests,
    /// labs): off by default.
    #[serde(default)]
    pub allow_insecure_http: bool,
    #[serde(default = "default_algorithms")]
    pub algorithms: Vec<String>,
    pub audiences: Vec<String>,
    #[serde(default = "ten_minutes")]
    pub max_token_lifetime: HumanDuration,
    #[serde(default = "ten_seconds")]
    pub clock_skew: HumanDuration,
    #[serde(default = "five_minutes")]
    pub jwks_refresh: HumanDuration,
    #[serde(default = "ten_seconds")]
    pub jwks_min_refetch: HumanDuration,
    #[serde(default = "default_purpose_claim")]
    pub purpose_claim: String,
    /// RFC 7662 introspection for this issuer's opaque access tokens.
    #[serde(default)]
    pub introspection: Option<crate::token::IntrospectionConfig>,
}

fn default_purpose_claim() -> String {
    crate::purpose::DEFAULT_CLAIM.to_owned()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawTokenCache {
    /// Verified tokens kept (by SHA-256) until their `exp`.
    pub capacity: u64,
}

impl Default for RawTokenCache {
    fn default() -> Self {
        Self { capacity: 100_000 }
    }
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 8443))
}
fn default_admin() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9901))
}
fn default_algorithms() -> Vec<String> {
    ["PS256", "ES256", "EdDSA"].map(String::from).to_vec()
}
fn five_seconds() -> HumanDuration {
    HumanDuration(Duration::from_secs(5))
}
fn one_second() -> HumanDuration {
    HumanDuration(Duration::from_secs(1))
}
fn ten_seconds() -> HumanDuration {
    HumanDuration(Duration::from_secs(10))
}
fn thirty_seconds() -> HumanDuration {
    HumanDuration(Duration::from_secs(30))
}
fn five_minutes() -> HumanDuration {
    HumanDuration(Duration::from_secs(300))
}
fn ten_minutes() -> HumanDuration {
    HumanDuration(Duration::from_secs(600))
}

impl RawConfig {
    pub fn compile(self, file: &Path) -> Result<Config, InvalidConfig> {
        let err = |field: &str, msg: String| InvalidConfig::new(file, field, msg);
        let listen = self.listen.compile(file)?;
        let upstream = compile_upstream(file, self.upstream)?;
        let admin = match self.admin {
            None => None,
            Some(a) => Some(compile_admin(file, a)?),
        };
        if self.issuers.is_empty() {
            return Err(err("issuers", "at least one issuer is required".into()));
        }
        let mut issuers = Vec::with_capacity(self.issuers.len());
        for (i, raw) in self.issuers.into_iter().enumerate() {
            let field = format!("issuers[{i}]");
            if issuers
                .iter()
                .any(|x: &IssuerSettings| x.issuer == raw.issuer)
            {
                return Err(err(&field, format!("duplicate issuer {:?}", raw.issuer)));
            }
            issuers.push(compile_issuer(file, &field, raw)?);
        }
        // An opaque token names no issuer: with two introspection endpoints, one issuer's
        // tokens would be disclosed to the other.
        let mut introspecting = issuers
            .iter()
            .enumerate()
            .filter(|(_, i)| i.introspection.is_some());
        if let (Some(_), Some((i, _))) = (introspecting.next(), introspecting.next()) {
            return Err(err(
                &format!("issuers[{i}].introspection"),
                "only one issuer may have introspection (an opaque token does not say which \
                 issuer it comes from)"
                    .into(),
            ));
        }
        if self.policies.is_empty() {
            return Err(err(
                "policies",
                "at least one policy file or directory".into(),
            ));
        }
        let base = file.parent().unwrap_or(Path::new("."));
        let dpop = self
            .dpop
            .unwrap_or_default()
            .compile(base)
            .map_err(|m| config_error(file, "dpop", m))?;
        let audit = self
            .audit
            .unwrap_or_default()
            .compile(base)
            .map_err(|m| config_error(file, "audit", m))?;
        let transaction_token = match &self.transaction_token {
            None => Default::default(),
            Some(t) => t
                .compile(base)
                .map_err(|m| config_error(file, "transaction_token", m))?,
        };
        let consent = match self.consent {
            None => None,
            Some(c) => Some(c.compile().map_err(|m| config_error(file, "consent", m))?),
        };
        let state = self
            .state
            .unwrap_or_default()
            .compile()
            .map_err(|m| config_error(file, "state", m))?;
        let revocation = self
            .revocation
            .unwrap_or_default()
            .compile(file)
            .map_err(|m| config_error(file, "revocation", m))?;
        let clients = crate::signature::config::compile_clients(
            file,
            self.clients.as_deref().unwrap_or_default(),
        )
        .map_err(|m| config_error(file, "clients", m))?;
        let signatures = match &self.signatures {
            None => None,
            Some(s) => Some(
                s.compile(file, listen.limits.max_body_bytes)
                    .map_err(|m| config_error(file, "signatures", m))?,
            ),
        };
        Ok(Config {
            clients,
            signatures,
            state,
            revocation,
            transaction_token,
            dpop,
            audit,
            consent,
            file: file.to_path_buf(),
            listen,
            upstream,
            admin,
            issuers,
            policy_paths: self.policies.iter().map(|p| resolve(file, p)).collect(),
            token_cache_capacity: self.token_cache.capacity.max(1),
        })
    }
}

impl RawListen {
    fn compile(self, file: &Path) -> Result<ListenSettings, InvalidConfig> {
        let (public_url, public_scheme) = canonical_origin(&self.public_url)
            .map_err(|m| InvalidConfig::new(file, "listen.public_url", m))?;
        let l = self.limits;
        if l.max_header_bytes < 1024 {
            return Err(InvalidConfig::new(
                file,
                "listen.limits.max_header_bytes",
                "must be at least 1024",
            ));
        }
        if l.max_buffered_bytes < l.max_body_bytes {
            return Err(InvalidConfig::new(
                file,
                "listen.limits.max_buffered_bytes",
                "must be at least listen.limits.max_body_bytes (one buffered body must fit)",
            ));
        }
        let forwarded_client_cert = match self.forwarded_client_cert {
            None => None,
            Some(f) => {
                let field = "listen.forwarded_client_cert";
                let header = http::HeaderName::from_bytes(f.header.as_bytes()).map_err(|_| {
                    InvalidConfig::new(file, format!("{field}.header"), "not a header name")
                })?;
                let trusted_peers = f
                    .trusted_peers
                    .iter()
                    .map(|p| Cidr::parse(p))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|m| InvalidConfig::new(file, format!("{field}.trusted_peers"), m))?;
                if trusted_peers.is_empty() {
                    return Err(InvalidConfig::new(
                        file,
                        format!("{field}.trusted_peers"),
                        "list the ingress addresses allowed to forward certificates",
                    ));
                }
                Some(ForwardedCertSettings {
                    header,
                    format: f.format,
                    trusted_peers,
                })
            }
        };
        let base = file.parent().unwrap_or(Path::new("."));
        let tls = match &self.tls {
            None => None,
            Some(t) => Some(
                t.compile(base)
                    .map_err(|m| config_error(file, "listen.tls", m))?,
            ),
        };
        Ok(ListenSettings {
            tls,
            forwarded_client_cert,
            address: self.address,
            public_url,
            public_scheme,
            drain_delay: self.drain_delay.0,
            limits: Limits {
                max_header_bytes: l.max_header_bytes,
                max_body_bytes: l.max_body_bytes,
                max_buffered_bytes: l.max_buffered_bytes,
                header_read_timeout: l.header_read_timeout.0,
                request_timeout: l.request_timeout.0,
            },
        })
    }
}

/// `https://API.Bank.example:443/` → `https://api.bank.example` (RFC 3986 §6.2.2-6.2.3), so the
/// DPoP `htu` comparison has one canonical origin to compare against.
pub(crate) fn canonical_origin(s: &str) -> Result<(String, &'static str), String> {
    let uri: Uri = s.parse().map_err(|e| format!("not a URL: {e}"))?;
    let scheme = match uri.scheme_str().map(str::to_ascii_lowercase).as_deref() {
        Some("https") => "https",
        Some("http") => "http",
        _ => return Err("must start with https:// or http://".into()),
    };
    let auth = uri.authority().ok_or("needs a host")?;
    if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
        return Err("must be an origin (scheme://host[:port]) without a path or query".into());
    }
    if auth.as_str().contains('@') {
        return Err("must not contain user information".into());
    }
    let host = auth.host().to_ascii_lowercase();
    let port = match (scheme, auth.port_u16()) {
        ("https", Some(443)) | ("http", Some(80)) | (_, None) => String::new(),
        (_, Some(p)) => format!(":{p}"),
    };
    Ok((format!("{scheme}://{host}{port}"), scheme))
}

fn compile_upstream(file: &Path, raw: RawUpstream) -> Result<UpstreamSettings, InvalidConfig> {
    let err = |m: &str| InvalidConfig::new(file, "upstream.url", m.to_owned());
    let uri: Uri = raw.url.parse().map_err(|_| err("not a URL"))?;
    if uri.scheme_str() != Some("http") {
        return Err(err(
            "only http:// upstreams are supported (the API runs beside the sidecar in the pod)",
        ));
    }
    let auth = uri.authority().ok_or_else(|| err("needs a host"))?;
    if uri.query().is_some() {
        return Err(err("must not have a query"));
    }
    let identity_headers = raw.identity_headers.compile().map_err(|m| {
        config_error(
            file,
            "upstream.identity_headers",
            format!("upstream.identity_headers.{m}"),
        )
    })?;
    let strip_headers = match &raw.strip_headers {
        None => crate::proxy::headers::DEFAULT_STRIP
            .iter()
            .map(|n| http::HeaderName::from_static(n))
            .collect(),
        Some(list) => list
            .iter()
            .enumerate()
            .map(|(i, n)| {
                http::HeaderName::from_bytes(n.as_bytes()).map_err(|_| {
                    InvalidConfig::new(
                        file,
                        format!("upstream.strip_headers[{i}]"),
                        format!("{n:?} is not a header name"),
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?,
    };
    Ok(UpstreamSettings {
        strip_headers,
        identity_headers,
        origin: format!("http://{auth}"),
        path_prefix: uri.path().trim_end_matches('/').to_owned(),
        connect_timeout: raw.connect_timeout.0,
        timeout: raw.timeout.0,
    })
}

fn compile_issuer(
    file: &Path,
    field: &str,
    raw: RawIssuer,
) -> Result<IssuerSettings, InvalidConfig> {
    let err = |sub: &str, m: String| InvalidConfig::new(file, format!("{field}.{sub}"), m);
    if raw.issuer.is_empty() {
        return Err(err("issuer", "must not be empty".into()));
    }
    let keys = match (raw.jwks_uri, raw.jwks_file) {
        (Some(u), None) => KeySource::Uri(
            remote_key_uri(&u, raw.allow_insecure_http, field)
                .map_err(|m| InvalidConfig::new(file, format!("{field}.jwks_uri"), m))?,
        ),
        (None, Some(p)) => KeySource::File(resolve(file, &p)),
        _ => {
            return Err(err(
                "jwks_uri",
                "exactly one of jwks_uri or jwks_file is required".into(),
            ));
        }
    };
    let mut algorithms = Vec::new();
    for (i, a) in raw.algorithms.iter().enumerate() {
        let alg = parse_signing_alg(a).map_err(|m| err(&format!("algorithms[{i}]"), m))?;
        algorithms.push(alg);
    }
    if algorithms.is_empty() {
        return Err(err("algorithms", "must list at least one algorithm".into()));
    }
    if raw.audiences.is_empty() {
        return Err(err("audiences", "must list at least one audience".into()));
    }
    let introspection = match raw.introspection {
        None => None,
        Some(i) => Some(
            i.compile(file, field, raw.allow_insecure_http)
                .map_err(|m| config_error(file, field, m))?,
        ),
    };
    Ok(IssuerSettings {
        introspection,
        issuer: raw.issuer,
        keys,
        algorithms,
        audiences: raw.audiences,
        max_token_lifetime: raw.max_token_lifetime.0,
        clock_skew: raw.clock_skew.0,
        jwks_refresh: raw.jwks_refresh.0.max(Duration::from_secs(1)),
        jwks_min_refetch: raw.jwks_min_refetch.0,
        purpose_claim: raw.purpose_claim,
    })
}

/// Asymmetric JWS algorithms only: `none` and the HMAC family are never accepted for access
/// tokens (RFC 9068 §4; a shared secret would let any holder mint tokens).
pub(crate) fn parse_signing_alg(a: &str) -> Result<Algorithm, String> {
    use Algorithm::*;
    match a {
        "PS256" => Ok(PS256),
        "PS384" => Ok(PS384),
        "PS512" => Ok(PS512),
        "ES256" => Ok(ES256),
        "ES384" => Ok(ES384),
        "EdDSA" => Ok(EdDSA),
        "RS256" => Ok(RS256),
        "RS384" => Ok(RS384),
        "RS512" => Ok(RS512),
        "none" | "HS256" | "HS384" | "HS512" => Err(format!(
            "{a:?} is never accepted (only asymmetric algorithms)"
        )),
        _ => Err(format!("unknown algorithm {a:?}")),
    }
}

fn read_secret(file: &Path, field: &str, p: &Path) -> Result<Secret, InvalidConfig> {
    Secret::from_file(&resolve(file, p)).map_err(|m| InvalidConfig::new(file, field, m))
}

/// The admin listener carries write endpoints (revocations, Shared Signals): off loopback it
/// must be guarded by a bearer secret, or the process refuses to start (exit 2).
fn compile_admin(file: &Path, a: RawAdmin) -> Result<AdminSettings, InvalidConfig> {
    let token = match &a.token_file {
        None => None,
        Some(p) => Some(read_secret(file, "admin.token_file", p)?),
    };
    if token.is_none() && !a.address.ip().is_loopback() {
        return Err(InvalidConfig::new(
            file,
            "admin.token_file",
            format!(
                "required when admin.address ({}) is not a loopback address: the admin \
                 listener has write endpoints; keep it on 127.0.0.1 and use \
                 admin.metrics_address to expose metrics and probes",
                a.address
            ),
        ));
    }
    if a.metrics_address.is_some_and(|m| m == a.address) {
        return Err(InvalidConfig::new(
            file,
            "admin.metrics_address",
            "must differ from admin.address",
        ));
    }
    Ok(AdminSettings {
        address: a.address,
        token,
        metrics_address: a.metrics_address,
    })
}

/// A remote key source (`jwks_uri`): `https`, or plain `http` only to a loopback host or when
/// `allow_insecure_http: true` is set for that source. Keys fetched in clear text could be
/// replaced on the way, and whoever supplies the keys can mint any token. `field` is the
/// section holding the URL (`issuers[0]`), for the message.
pub(crate) fn remote_key_uri(
    u: &str,
    allow_insecure_http: bool,
    field: &str,
) -> Result<Uri, String> {
    let uri: Uri = u.parse().map_err(|e| format!("not a URL: {e}"))?;
    let host = uri.host().ok_or("needs a host")?;
    match uri.scheme_str() {
        Some("https") => Ok(uri),
        Some("http") if allow_insecure_http || is_loopback_host(host) => Ok(uri),
        Some("http") => Err(format!(
            "plain http to a non-loopback host is refused for key sources (the keys could be \
             replaced in transit): use https or a jwks_file, or set \
             {field}.allow_insecure_http: true"
        )),
        _ => Err("must be an https URL".into()),
    }
}

pub(crate) fn is_loopback_host(host: &str) -> bool {
    let h = host.trim_start_matches('[').trim_end_matches(']');
    h.eq_ignore_ascii_case("localhost")
        || h.parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Sub-module compile errors arrive as `"section.field: message"`; split the field off so the
/// one-line error names it like every other.
fn config_error(file: &Path, section: &str, m: String) -> InvalidConfig {
    match m.split_once(": ") {
        Some((field, rest)) if field.starts_with(section) => InvalidConfig::new(file, field, rest),
        _ => InvalidConfig::new(file, section, m),
    }
}
