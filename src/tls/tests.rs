#![allow(clippy::unwrap_used)]

mod config;
#[path = "../../tests/common/pki.rs"]
mod pki;

use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::crypto::aws_lc_rs::{cipher_suite, default_provider};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore, SupportedCipherSuite, SupportedProtocolVersion};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsConnector;

use self::pki::{Identity, Pki, self_signed_client};
use super::*;

/// Server settings for the test PKI's files.
fn settings(pki: &Pki, client_auth: ClientAuth) -> TlsSettings {
    TlsSettings {
        cert_file: pki.path("server.crt"),
        key_file: pki.path("server.key"),
        client_ca_file: Some(pki.path("ca.pem")),
        client_auth,
    }
}

/// The server's view: the client certificate thumbprint and the negotiated ALPN protocol.
type ServerView = (Option<[u8; 32]>, Option<Vec<u8>>);

/// One `load_errors_*` case: name, settings, expected error, file the message must name.
type LoadCase = (&'static str, TlsSettings, fn(&TlsError) -> bool, PathBuf);

/// What each side saw of one handshake.
struct Outcome {
    server: io::Result<ServerView>,
    /// Client: the server's leaf certificate.
    client: io::Result<CertificateDer<'static>>,
}

/// A test client: trusts the test CA, optionally restricted in versions and suites.
struct Client<'a> {
    identity: Option<&'a Identity>,
    versions: &'static [&'static SupportedProtocolVersion],
    suites: Option<Vec<SupportedCipherSuite>>,
    alpn: Vec<Vec<u8>>,
}

impl<'a> Client<'a> {
    fn new() -> Self {
        Self {
            identity: None,
            versions: rustls::ALL_VERSIONS,
            suites: None,
            alpn: Vec::new(),
        }
    }

    fn with_cert(mut self, identity: &'a Identity) -> Self {
        self.identity = Some(identity);
        self
    }

    fn tls12(mut self, suite: SupportedCipherSuite) -> Self {
        static TLS12_ONLY: [&SupportedProtocolVersion; 1] = [&rustls::version::TLS12];
        self.versions = &TLS12_ONLY;
        self.suites = Some(vec![suite]);
        self
    }

    fn config(&self, pki: &Pki) -> ClientConfig {
        let mut provider = default_provider();
        if let Some(suites) = &self.suites {
            provider.cipher_suites.clone_from(suites);
        }
        let mut roots = RootCertStore::empty();
        roots.add(pki.ca_der()).unwrap();
        let builder = ClientConfig::builder_with_provider(Arc::new(provider))
            .with_protocol_versions(self.versions)
            .unwrap()
            .with_root_certificates(roots);
        let mut config = match self.identity {
            Some(id) => builder
                .with_client_auth_cert(id.chain(), id.key.clone_key())
                .unwrap(),
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols.clone_from(&self.alpn);
        config
    }
}

async fn handshake(acceptor: &TlsAcceptor, pki: &Pki, client: Client<'_>) -> Outcome {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let connector = TlsConnector::from(Arc::new(client.config(pki)));
    let server = async {
        let (tcp, _) = listener.accept().await?;
        let (stream, leaf) = acceptor.accept(tcp).await?;
        let thumbprint = leaf.map(|l| l.sha256);
        let alpn = stream.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
        Ok((thumbprint, alpn))
    };
    let client = async {
        let tcp = TcpStream::connect(addr).await?;
        let name = ServerName::try_from("localhost").unwrap();
        let stream = connector.connect(name, tcp).await?;
        let leaf = stream
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|c| c.first());
        leaf.cloned()
            .ok_or_else(|| io::Error::other("no server certificate"))
    };
    let (server, client) = tokio::join!(server, client);
    Outcome { server, client }
}

fn sha256(der: &[u8]) -> [u8; 32] {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, der);
    digest.as_ref().try_into().unwrap()
}

fn acceptor(pki: &Pki, auth: ClientAuth) -> TlsAcceptor {
    TlsAcceptor::new(settings(pki, auth)).unwrap()
}

fn server_leaf(pki: &Pki) -> CertificateDer<'static> {
    load::certificates(&pki.path("server.crt"))
        .unwrap()
        .remove(0)
}

// --- handshakes -------------------------------------------------------------------------

#[tokio::test]
async fn client_cert_yields_its_leaf_sha256() {
    let pki = Pki::new();
    let id = pki.client("tpp-1");
    for auth in [ClientAuth::Optional, ClientAuth::Required] {
        let out = handshake(&acceptor(&pki, auth), &pki, Client::new().with_cert(&id)).await;
        let (thumbprint, _) = out.server.unwrap();
        assert_eq!(thumbprint, Some(sha256(&id.cert)), "{auth:?}");
        assert_eq!(out.client.unwrap(), server_leaf(&pki));
    }
}

#[tokio::test]
async fn no_client_cert_with_optional_yields_none() {
    let pki = Pki::new();
    let out = handshake(&acceptor(&pki, ClientAuth::Optional), &pki, Client::new()).await;
    assert_eq!(out.server.unwrap().0, None);
    out.client.unwrap();
}

#[tokio::test]
async fn no_ca_configured_yields_none_even_with_client_cert() {
    let pki = Pki::new();
    let settings = TlsSettings {
        client_ca_file: None,
        ..settings(&pki, ClientAuth::Optional)
    };
    let acceptor = TlsAcceptor::new(settings).unwrap();
    let id = pki.client("tpp-1");
    let out = handshake(&acceptor, &pki, Client::new().with_cert(&id)).await;
    assert_eq!(out.server.unwrap().0, None);
}

#[tokio::test]
async fn no_client_cert_with_required_fails() {
    let pki = Pki::new();
    let out = handshake(&acceptor(&pki, ClientAuth::Required), &pki, Client::new()).await;
    assert!(out.server.is_err());
}

#[tokio::test]
async fn client_cert_from_untrusted_issuer_fails() {
    let pki = Pki::new();
    let other = self_signed_client("other");
    for auth in [ClientAuth::Optional, ClientAuth::Required] {
        let out = handshake(&acceptor(&pki, auth), &pki, Client::new().with_cert(&other)).await;
        assert!(out.server.is_err(), "{auth:?}");
    }
}

#[tokio::test]
async fn tls12_allows_fapi_suites_only() {
    let pki = Pki::new();
    let acceptor = acceptor(&pki, ClientAuth::Optional);
    let id = pki.client("tpp-1");
    // The test server key is ECDSA P-256, so only the ECDSA suites can be exercised here.
    for suite in [
        cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
    ] {
        let out = handshake(&acceptor, &pki, Client::new().with_cert(&id).tls12(suite)).await;
        assert_eq!(out.server.unwrap().0, Some(sha256(&id.cert)), "{suite:?}");
    }
    // Would succeed with rustls' defaults; not a FAPI 2.0 §5.2.1 suite.
    let chacha = cipher_suite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256;
    let out = handshake(&acceptor, &pki, Client::new().tls12(chacha)).await;
    assert!(out.server.is_err());
    assert!(out.client.is_err());
}

#[test]
fn provider_keeps_all_tls13_and_exactly_the_fapi_tls12_suites() {
    let all = default_provider().cipher_suites;
    let kept = fapi_provider().cipher_suites;
    let tls13 = |s: &&SupportedCipherSuite| s.tls13().is_some();
    assert_eq!(
        kept.iter().filter(tls13).count(),
        all.iter().filter(tls13).count()
    );
    let mut tls12: Vec<_> = kept
        .iter()
        .filter(|s| s.tls13().is_none())
        .map(SupportedCipherSuite::suite)
        .collect();
    tls12.sort_by_key(|s| u16::from(*s));
    let mut want = FAPI_TLS12_SUITES.to_vec();
    want.sort_by_key(|s| u16::from(*s));
    assert_eq!(tls12, want);
}

#[tokio::test]
async fn alpn_negotiates_the_offered_protocol() {
    let pki = Pki::new();
    let acceptor = acceptor(&pki, ClientAuth::Optional);
    for (offered, want) in [
        (vec![b"h2".to_vec()], Some(b"h2".to_vec())),
        (vec![b"http/1.1".to_vec()], Some(b"http/1.1".to_vec())),
        (
            vec![b"http/1.1".to_vec(), b"h2".to_vec()],
            Some(b"h2".to_vec()),
        ),
        (vec![], None),
    ] {
        let client = Client {
            alpn: offered.clone(),
            ..Client::new()
        };
        let out = handshake(&acceptor, &pki, client).await;
        assert_eq!(out.server.unwrap().1, want, "{offered:?}");
    }
}

#[tokio::test]
async fn handshake_times_out() {
    let pki = Pki::new();
    let acceptor =
        acceptor(&pki, ClientAuth::Optional).with_handshake_timeout(Duration::from_millis(200));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let _silent = TcpStream::connect(listener.local_addr().unwrap())
        .await
        .unwrap();
    let (tcp, _) = listener.accept().await.unwrap();
    let err = acceptor.accept(tcp).await.unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::TimedOut);
}

// --- rotation ---------------------------------------------------------------------------

#[tokio::test]
async fn reload_serves_the_new_certificate() {
    let pki = Pki::new();
    let acceptor = acceptor(&pki, ClientAuth::Optional);
    let old = server_leaf(&pki);
    let new = pki.rotate_server();
    assert_ne!(old, new);
    // Not reloaded yet: still the old certificate.
    let out = handshake(&acceptor, &pki, Client::new()).await;
    assert_eq!(out.client.unwrap(), old);
    acceptor.reload().unwrap();
    let out = handshake(&acceptor, &pki, Client::new()).await;
    assert_eq!(out.client.unwrap(), new);
}

#[tokio::test]
async fn broken_reload_keeps_the_old_config() {
    let pki = Pki::new();
    let acceptor = acceptor(&pki, ClientAuth::Optional);
    let old = server_leaf(&pki);
    std::fs::write(pki.path("server.crt"), "not a certificate\n").unwrap();
    let err = acceptor.reload().unwrap_err();
    assert!(matches!(err, TlsError::NoCertificate { .. }), "{err}");
    assert!(err.to_string().contains("server.crt"), "{err}");
    let out = handshake(&acceptor, &pki, Client::new()).await;
    assert_eq!(out.client.unwrap(), old);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_picks_up_rotation() {
    let pki = Pki::new();
    let acceptor = Arc::new(acceptor(&pki, ClientAuth::Optional));
    let _watcher = acceptor.watch().unwrap();
    let new = pki.rotate_server();
    // Debounce is 250 ms; the generous deadline only absorbs a loaded test machine.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let out = handshake(&acceptor, &pki, Client::new()).await;
        if out.client.unwrap() == new {
            break;
        }
        assert!(Instant::now() < deadline, "rotation not picked up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

// --- loading errors ---------------------------------------------------------------------

#[test]
fn load_errors_name_the_file_and_the_problem() {
    let pki = Pki::new();
    let other = Pki::new();
    let write = |name: &str, text: &str| {
        let path = pki.path(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    let key_pem = std::fs::read_to_string(pki.path("server.key")).unwrap();
    let cert_pem = std::fs::read_to_string(pki.path("server.crt")).unwrap();
    let cases: Vec<LoadCase> = vec![
        (
            "missing cert",
            TlsSettings {
                cert_file: pki.path("absent.crt"),
                ..settings(&pki, ClientAuth::Optional)
            },
            |e| matches!(e, TlsError::Unreadable { .. }),
            pki.path("absent.crt"),
        ),
        (
            "key file as cert",
            TlsSettings {
                cert_file: write("key-as-cert.pem", &key_pem),
                ..settings(&pki, ClientAuth::Optional)
            },
            |e| matches!(e, TlsError::NoCertificate { .. }),
            pki.path("key-as-cert.pem"),
        ),
        (
            "cert file as key",
            TlsSettings {
                key_file: write("cert-as-key.pem", &cert_pem),
                ..settings(&pki, ClientAuth::Optional)
            },
            |e| matches!(e, TlsError::NoPrivateKey { .. }),
            pki.path("cert-as-key.pem"),
        ),
        (
            "truncated key",
            TlsSettings {
                key_file: write("truncated.key", &key_pem[..key_pem.len() / 2]),
                ..settings(&pki, ClientAuth::Optional)
            },
            |e| matches!(e, TlsError::MalformedPem { .. }),
            pki.path("truncated.key"),
        ),
        (
            "key of another certificate",
            TlsSettings {
                key_file: other.path("server.key"),
                ..settings(&pki, ClientAuth::Optional)
            },
            |e| matches!(e, TlsError::BadKey { .. }),
            other.path("server.key"),
        ),
        (
            "empty client CA",
            TlsSettings {
                client_ca_file: Some(write("empty-ca.pem", "")),
                ..settings(&pki, ClientAuth::Required)
            },
            |e| matches!(e, TlsError::NoCertificate { .. }),
            pki.path("empty-ca.pem"),
        ),
    ];
    for (name, settings, is_expected, path) in cases {
        let err = server_config(&settings).unwrap_err();
        assert!(is_expected(&err), "{name}: {err:?}");
        let shown = err.to_string();
        assert!(
            shown.contains(&path.display().to_string()),
            "{name}: {shown}"
        );
        assert!(!shown.contains("PRIVATE KEY"), "{name}: {shown}");
    }
}
