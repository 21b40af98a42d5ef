//! The deployment configuration (spec §4): raw serde structs, compiled once into `Config`.
//!
//! Unknown keys are refused with file:line:column and the field path, so a typo in a security
//! setting fails at load and never at request time.

mod cidr;
mod raw;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use http::Uri;

use jsonwebtoken::Algorithm;

use crate::audit::AuditSettings;
use crate::consent::ConsentSettings;
use crate::dpop::DpopSettings;
use crate::identity::IdentityHeaders;
use crate::mtls::ForwardedFormat;
use crate::tls::TlsSettings;
use crate::txn_token::TxnTokenSettings;

pub use cidr::Cidr;
pub use raw::RawConfig;
pub(crate) use raw::remote_key_uri;

/// An asymmetric JWS algorithm we accept, by name; `none` and HS* are never accepted.
pub(crate) fn raw_alg(s: &str) -> Option<Algorithm> {
    raw::parse_signing_alg(s).ok()
}

/// A configuration or policy file that could not be loaded. Displays as one line:
/// `FILE:LINE:COL: FIELD: message` (location parts omitted when unknown).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.render())]
pub struct InvalidConfig {
    pub file: PathBuf,
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub field: String,
    pub message: String,
}

impl InvalidConfig {
    pub fn new(file: &Path, field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            file: file.to_path_buf(),
            line: None,
            column: None,
            field: field.into(),
            message: message.into(),
        }
    }

    pub fn at(mut self, line: usize, column: usize) -> Self {
        self.line = Some(line);
        self.column = Some(column);
        self
    }

    fn render(&self) -> String {
        let mut s = self.file.display().to_string();
        if let (Some(l), Some(c)) = (self.line, self.column) {
            s.push_str(&format!(":{l}:{c}"));
        }
        if !self.field.is_empty() {
            s.push_str(": ");
            s.push_str(&self.field);
        }
        s.push_str(": ");
        s.push_str(&self.message);
        s
    }
}

/// Parses YAML into a raw struct, turning serde errors into `InvalidConfig` with the field path
/// (serde_path_to_error) and the line/column serde_yaml reports.
pub fn parse_yaml<T: serde::de::DeserializeOwned>(
    file: &Path,
    src: &str,
) -> Result<T, InvalidConfig> {
    let de = serde_yaml::Deserializer::from_str(src);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let field = e.path().to_string();
        let inner = e.into_inner();
        let location = inner.location();
        // serde_yaml appends " at line L column C" to the message; keep only the cause.
        let msg = inner.to_string();
        let msg = msg.split(" at line ").next().unwrap_or(&msg);
        // ... and may prefix its own path ("issuers[0]: "), which `field` already carries.
        let msg = match msg.split_once(": ") {
            Some((p, rest)) if field.starts_with(p) => rest.to_owned(),
            _ => msg.to_owned(),
        };
        let err = InvalidConfig::new(file, if field == "." { String::new() } else { field }, msg);
        match location {
            Some(loc) => err.at(loc.line(), loc.column()),
            None => err,
        }
    })
}

/// The compiled configuration: everything the proxy needs, validated, paths resolved.
#[derive(Debug, Clone)]
pub struct Config {
    pub file: PathBuf,
    pub listen: ListenSettings,
    pub upstream: UpstreamSettings,
    pub admin: Option<AdminSettings>,
    pub issuers: Vec<IssuerSettings>,
    pub policy_paths: Vec<PathBuf>,
    pub token_cache_capacity: u64,
    pub dpop: DpopSettings,
    pub audit: AuditSettings,
    /// `transaction_token:` (spec §4, §7): minting and/or internal-hop acceptance.
    pub transaction_token: TxnTokenSettings,
    /// The bank's consent service; required when a policy reads consent records.
    pub consent: Option<ConsentSettings>,
}

#[derive(Debug, Clone)]
pub struct ListenSettings {
    pub address: SocketAddr,
    /// The origin clients use: scheme, lower-case host, port only when not the default.
    pub public_url: String,
    pub public_scheme: &'static str,
    pub limits: Limits,
    pub forwarded_client_cert: Option<ForwardedCertSettings>,
    /// TLS on this listener; absent: plain HTTP behind a trusted TLS terminator.
    pub tls: Option<TlsSettings>,
}

/// Client certificates forwarded by a trusted TLS terminator (spec §4).
#[derive(Debug, Clone)]
pub struct ForwardedCertSettings {
    pub header: http::HeaderName,
    pub format: ForwardedFormat,
    /// Only these peers may set the header; from anyone else it is stripped and ignored.
    pub trusted_peers: Vec<Cidr>,
}

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_header_bytes: usize,
    pub max_body_bytes: usize,
    pub header_read_timeout: Duration,
    pub request_timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct UpstreamSettings {
    /// `scheme://authority`, no trailing slash.
    pub origin: String,
    /// Path prefix prepended to the forwarded path ("" or "/base").
    pub path_prefix: String,
    pub connect_timeout: Duration,
    pub timeout: Duration,
    /// Identity headers set for the upstream from verified values (spec §7); always stripped
    /// from inbound requests.
    pub identity_headers: IdentityHeaders,
}

#[derive(Debug, Clone)]
pub struct AdminSettings {
    pub address: SocketAddr,
    /// Bearer secret of the write endpoints (`admin.token_file`); required off loopback.
    pub token: Option<crate::secret::Secret>,
    /// `admin.metrics_address`: a second, read-only listener (`/metrics`, `/healthz`,
    /// `/readyz`, `/jwks`) for Prometheus and kubelet probes on the pod IP.
    pub metrics_address: Option<SocketAddr>,
}

#[derive(Debug, Clone)]
pub struct IssuerSettings {
    pub issuer: String,
    pub keys: KeySource,
    pub algorithms: Vec<Algorithm>,
    pub audiences: Vec<String>,
    pub max_token_lifetime: Duration,
    pub clock_skew: Duration,
    /// Background JWKS refresh period, and the minimum gap between refetches triggered by an
    /// unknown `kid` (so a flood of forged `kid`s cannot make us hammer the issuer).
    pub jwks_refresh: Duration,
    pub jwks_min_refetch: Duration,
    /// The claim holding the token's purpose (spec §1.5), `purpose` unless the issuer uses
    /// another name.
    pub purpose_claim: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    Uri(Uri),
    File(PathBuf),
}

impl Config {
    /// Reads, parses and compiles a configuration file.
    pub fn load(file: &Path) -> Result<Self, InvalidConfig> {
        let src = std::fs::read_to_string(file)
            .map_err(|e| InvalidConfig::new(file, "", format!("cannot read: {e}")))?;
        Self::from_yaml(file, &src)
    }

    /// Parses and compiles configuration text; `file` names it in errors and anchors relative
    /// paths.
    pub fn from_yaml(file: &Path, src: &str) -> Result<Self, InvalidConfig> {
        let raw: RawConfig = parse_yaml(file, src)?;
        raw.compile(file)
    }

    /// The directory relative paths in the file are resolved against.
    pub fn base_dir(&self) -> &Path {
        self.file.parent().unwrap_or(Path::new("."))
    }
}

/// Resolves `p` against the directory of the config file.
pub(crate) fn resolve(file: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        file.parent().unwrap_or(Path::new(".")).join(p)
    }
}

#[cfg(test)]
mod tests;
