//! A throwaway PKI per test: a CA, server certificates for `localhost`/127.0.0.1 signed by it,
//! client certificates signed by it, and a self-signed client certificate from nobody we trust.
//! Shared by the in-crate TLS tests (`src/tls/tests.rs`) and the integration tests.
#![allow(dead_code, clippy::unwrap_used)]

use std::path::PathBuf;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tempfile::TempDir;

/// A certificate with its key, as a client presents it.
pub struct Identity {
    pub cert: CertificateDer<'static>,
    pub key: PrivateKeyDer<'static>,
}

impl Identity {
    fn new(cert: CertificateDer<'static>, key: &KeyPair) -> Self {
        let key = PrivatePkcs8KeyDer::from(key.serialize_der()).into();
        Self { cert, key }
    }

    pub fn chain(&self) -> Vec<CertificateDer<'static>> {
        vec![self.cert.clone()]
    }
}

pub struct Pki {
    pub dir: TempDir,
    pub ca: CertifiedIssuer<'static, KeyPair>,
}

impl Pki {
    /// Writes `ca.pem`, `server.crt` and `server.key` into a fresh temporary directory.
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "fapi-guard test CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        std::fs::write(dir.path().join("ca.pem"), ca.pem()).unwrap();
        let pki = Self { dir, ca };
        pki.rotate_server();
        pki
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn ca_der(&self) -> CertificateDer<'static> {
        self.ca.der().clone()
    }

    /// A new server key and certificate written over `server.key`/`server.crt`; returns the
    /// new certificate's DER.
    pub fn rotate_server(&self) -> CertificateDer<'static> {
        let key = KeyPair::generate().unwrap();
        let mut params =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let cert = params.signed_by(&key, &*self.ca).unwrap();
        std::fs::write(self.path("server.key"), key.serialize_pem()).unwrap();
        std::fs::write(self.path("server.crt"), cert.pem()).unwrap();
        cert.der().clone()
    }

    /// A client certificate issued by the CA.
    pub fn client(&self, name: &str) -> Identity {
        let key = KeyPair::generate().unwrap();
        let cert = client_params(name).signed_by(&key, &*self.ca).unwrap();
        Identity::new(cert.der().clone(), &key)
    }
}

/// A self-signed client certificate: an issuer the server does not trust.
pub fn self_signed_client(name: &str) -> Identity {
    let key = KeyPair::generate().unwrap();
    let cert = client_params(name).self_signed(&key).unwrap();
    Identity::new(cert.der().clone(), &key)
}

fn client_params(name: &str) -> CertificateParams {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(DnType::CommonName, name);
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params
}
