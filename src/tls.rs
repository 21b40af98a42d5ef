//! TLS termination for the listener (spec §4 `listen.tls`): FAPI 2.0 cipher policy, optional or
//! required client certificates (RFC 8705 §2), and certificate rotation without a restart.
//!
//! The acceptor hands back the leaf client certificate and its SHA-256 with each connection, so
//! the `cnf.x5t#S256` binding check (RFC 8705 §3.1) never re-hashes per request, and the
//! certificate the proxy itself verified can be passed on to the API (see [`client_cert`]).

pub mod client_cert;
mod load;
mod watch;

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::CertificateDer;
use rustls::server::WebPkiClientVerifier;
use rustls::{CipherSuite, ServerConfig, SupportedCipherSuite};
use serde::Deserialize;
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

/// How long a client may take to complete the handshake before the connection is dropped.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// ALPN protocols offered, in server preference order (RFC 7301).
pub const ALPN_PROTOCOLS: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// The only TLS 1.2 suites allowed: FAPI 2.0 Security Profile §5.2.1 (the BCP 195 / RFC 9325
/// §4.2 recommended suites). TLS 1.3 suites are all acceptable.
pub const FAPI_TLS12_SUITES: [CipherSuite; 4] = [
    CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
    CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
    CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
    CipherSuite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
];

/// The leaf certificate a client presented on this connection, verified against
/// `client_ca_file` by rustls during the handshake.
#[derive(Clone)]
pub struct PeerCertificate {
    /// SHA-256 of the DER (RFC 8705 §3.1 `x5t#S256`).
    pub sha256: [u8; 32],
    pub der: CertificateDer<'static>,
}

impl std::fmt::Debug for PeerCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerCertificate")
            .field("der_len", &self.der.len())
            .finish_non_exhaustive()
    }
}

/// Whether clients must present a certificate (spec §4 `listen.tls.client_auth`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuth {
    /// A certificate is requested and, if sent, must chain to `client_ca_file`; clients without
    /// one still connect (they may use DPoP instead).
    #[default]
    Optional,
    /// Handshakes without a certificate chaining to `client_ca_file` fail.
    Required,
}

/// `listen.tls` as written in the YAML.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    #[serde(default)]
    pub client_ca_file: Option<PathBuf>,
    #[serde(default)]
    pub client_auth: ClientAuth,
}

/// `listen.tls` compiled: paths resolved against the config file's directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    pub client_ca_file: Option<PathBuf>,
    pub client_auth: ClientAuth,
}

impl TlsConfig {
    /// Resolves relative paths against `base_dir` (spec §4: paths are relative to the config
    /// file). The files themselves are read by [`server_config`].
    pub fn compile(&self, base_dir: &Path) -> Result<TlsSettings, String> {
        if self.client_auth == ClientAuth::Required && self.client_ca_file.is_none() {
            return Err(
                "listen.tls.client_auth: `required` needs listen.tls.client_ca_file".to_owned(),
            );
        }
        Ok(TlsSettings {
            cert_file: base_dir.join(&self.cert_file),
            key_file: base_dir.join(&self.key_file),
            client_ca_file: self.client_ca_file.as_ref().map(|p| base_dir.join(p)),
            client_auth: self.client_auth,
        })
    }
}

/// Why a TLS configuration could not be built. Names the file; never carries key material.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {}: {source}", path.display())]
    Unreadable { path: PathBuf, source: io::Error },
    #[error("{}: malformed PEM ({problem})", path.display())]
    MalformedPem {
        path: PathBuf,
        problem: &'static str,
    },
    #[error("{}: no PEM certificate found", path.display())]
    NoCertificate { path: PathBuf },
    #[error("{}: no PEM private key found (PKCS#8, PKCS#1 or SEC1)", path.display())]
    NoPrivateKey { path: PathBuf },
    #[error("{}: private key unusable with certificate {}: {source}", key.display(), cert.display())]
    BadKey {
        key: PathBuf,
        cert: PathBuf,
        source: rustls::Error,
    },
    #[error("{}: unusable client CA: {reason}", path.display())]
    BadClientCa { path: PathBuf, reason: String },
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

/// The aws-lc-rs provider restricted to the FAPI 2.0 cipher suites.
pub fn fapi_provider() -> CryptoProvider {
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    provider.cipher_suites.retain(is_fapi_suite);
    provider
}

fn is_fapi_suite(suite: &SupportedCipherSuite) -> bool {
    suite.tls13().is_some() || FAPI_TLS12_SUITES.contains(&suite.suite())
}

/// Reads the certificate, key and client CA files and builds the server configuration.
pub fn server_config(s: &TlsSettings) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = Arc::new(fapi_provider());
    let chain = load::certificates(&s.cert_file)?;
    let key = load::private_key(&s.key_file)?;

    // FAPI 2.0 Security Profile §5.2.1: TLS 1.2 or later.
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?;
    let builder = match &s.client_ca_file {
        None => builder.with_no_client_auth(),
        Some(ca_file) => {
            let roots = load::client_roots(ca_file)?;
            let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider);
            let verifier = match s.client_auth {
                ClientAuth::Optional => verifier.allow_unauthenticated(),
                ClientAuth::Required => verifier,
            };
            let verifier = verifier.build().map_err(|e| TlsError::BadClientCa {
                path: ca_file.clone(),
                reason: e.to_string(),
            })?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .map_err(|source| TlsError::BadKey {
            key: s.key_file.clone(),
            cert: s.cert_file.clone(),
            source,
        })?;
    config.alpn_protocols = ALPN_PROTOCOLS.iter().map(|p| p.to_vec()).collect();
    // RFC 9325 §3.5: TLS 1.2 peers must use the extended master secret (RFC 7627).
    config.require_ems = true;
    // 0-RTT data is replayable (RFC 8446 §8); `max_early_data_size` stays at its default, 0.
    Ok(Arc::new(config))
}

/// Terminates TLS with the current configuration; [`reload`](Self::reload) swaps it for new
/// connections while established ones keep theirs.
pub struct TlsAcceptor {
    settings: TlsSettings,
    config: ArcSwap<ServerConfig>,
    handshake_timeout: Duration,
}

impl TlsAcceptor {
    pub fn new(settings: TlsSettings) -> Result<Self, TlsError> {
        let config = server_config(&settings)?;
        Ok(Self {
            settings,
            config: ArcSwap::new(config),
            handshake_timeout: HANDSHAKE_TIMEOUT,
        })
    }

    /// Replaces the default [`HANDSHAKE_TIMEOUT`].
    #[must_use]
    pub fn with_handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }

    pub fn settings(&self) -> &TlsSettings {
        &self.settings
    }

    /// The configuration new connections currently get.
    pub fn current_config(&self) -> Arc<ServerConfig> {
        self.config.load_full()
    }

    /// Completes the handshake and returns the stream with the leaf client certificate and its
    /// SHA-256 (RFC 8705 §3.1), or `None` when the client sent no certificate.
    pub async fn accept(
        &self,
        tcp: TcpStream,
    ) -> io::Result<(TlsStream<TcpStream>, Option<PeerCertificate>)> {
        let acceptor = tokio_rustls::TlsAcceptor::from(self.config.load_full());
        let stream = tokio::time::timeout(self.handshake_timeout, acceptor.accept(tcp))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timed out"))??;
        // RFC 8705 §3.1 binds to the end-entity certificate, the first in the chain.
        let leaf = stream
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|chain| chain.first())
            .map(|leaf| PeerCertificate {
                sha256: crate::mtls::cert_thumbprint(leaf),
                der: leaf.clone().into_owned(),
            });
        Ok((stream, leaf))
    }

    /// Re-reads the files and swaps the configuration. On error the previous configuration
    /// stays in force. Reads files synchronously; from async code prefer `spawn_blocking`.
    pub fn reload(&self) -> Result<(), TlsError> {
        let config = server_config(&self.settings)?;
        self.config.store(config);
        Ok(())
    }

    /// Watches the directories of the certificate, key and CA files and reloads (debounced)
    /// when they change, so rotation needs no restart. Watching stops when the returned
    /// watcher is dropped.
    pub fn watch(self: &Arc<Self>) -> Result<notify::RecommendedWatcher, notify::Error> {
        watch::spawn(self)
    }
}

impl std::fmt::Debug for TlsAcceptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsAcceptor")
            .field("settings", &self.settings)
            .field("handshake_timeout", &self.handshake_timeout)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests;
