//! Certificate-bound access tokens (RFC 8705 §3): the token's `cnf.x5t#S256` must equal the
//! SHA-256 of the DER client certificate of this connection — either the certificate rustls
//! saw, or one forwarded by a trusted TLS terminator in a header (Envoy XFCC, RFC 9440
//! `Client-Cert`, or URL-encoded PEM as nginx's `$ssl_client_escaped_cert`).
//!
//! RFC 8705 §6.2: the binding is to the exact certificate; chain validation is the TLS
//! terminator's business, not a condition of the binding.

mod xfcc;

use aws_lc_rs::constant_time::verify_slices_are_equal;
use aws_lc_rs::digest;
use base64::Engine as _;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, URL_SAFE_NO_PAD};
use serde::Deserialize;

use crate::reason::DenyReason;

/// Longest forwarded-certificate header value looked at. A URL-encoded PEM certificate is
/// 2–4 KiB; an XFCC value with a chain and a few hops fits comfortably.
pub const MAX_FORWARDED_LEN: usize = 32 * 1024;

/// How a trusted hop forwards the client certificate (spec §4 `forwarded_client_cert.format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum ForwardedFormat {
    /// Envoy `x-forwarded-client-cert`: `By=…;Hash=<hex>;Cert="<url-encoded PEM>";…`.
    #[serde(rename = "xfcc")]
    Xfcc,
    /// RFC 9440 `Client-Cert`: a structured-field byte sequence `:<base64 DER>:`.
    #[serde(rename = "rfc9440")]
    Rfc9440,
    /// URL-encoded PEM (nginx `$ssl_client_escaped_cert`).
    #[serde(rename = "pem_urlencoded")]
    PemUrlencoded,
}

/// Why a forwarded certificate header could not be used. Never carries header contents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ForwardedCertError {
    #[error("forwarded certificate header exceeds {MAX_FORWARDED_LEN} bytes")]
    TooLarge,
    #[error("forwarded certificate header is empty")]
    Empty,
    #[error("forwarded certificate header is malformed: {0}")]
    Malformed(&'static str),
    #[error("forwarded certificate header carries no certificate")]
    NoCertificate,
    #[error("XFCC Hash does not match the SHA-256 of Cert")]
    HashMismatch,
}

/// SHA-256 of the DER certificate (RFC 8705 §3.1).
pub fn cert_thumbprint(der: &[u8]) -> [u8; 32] {
    sha256(der)
}

/// The `x5t#S256` confirmation value: base64url(SHA-256(DER)) without padding (RFC 8705 §3.1).
pub fn x5t_s256(der: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(cert_thumbprint(der))
}

/// Whether a certificate thumbprint equals a token's `cnf.x5t#S256`, in constant time.
pub fn thumbprint_matches(cert: &[u8; 32], cnf_x5t_s256: &str) -> bool {
    let ours = URL_SAFE_NO_PAD.encode(cert);
    verify_slices_are_equal(ours.as_bytes(), cnf_x5t_s256.as_bytes()).is_ok()
}

/// RFC 8705 §3: no client certificate → `mtls_certificate_missing`; another certificate →
/// `mtls_certificate_mismatch`.
pub fn check_binding(cert: Option<&[u8; 32]>, cnf_x5t_s256: &str) -> Result<(), DenyReason> {
    let cert = cert.ok_or(DenyReason::MtlsCertificateMissing)?;
    if thumbprint_matches(cert, cnf_x5t_s256) {
        Ok(())
    } else {
        Err(DenyReason::MtlsCertificateMismatch)
    }
}

/// Extracts the client certificate's SHA-256 from a forwarded header value. The caller must
/// only call this for requests from `trusted_peers` (and strip the header from anyone else).
pub fn parse_forwarded(
    value: &str,
    format: ForwardedFormat,
) -> Result<[u8; 32], ForwardedCertError> {
    if value.len() > MAX_FORWARDED_LEN {
        return Err(ForwardedCertError::TooLarge);
    }
    let value = value.trim_matches([' ', '\t']);
    if value.is_empty() {
        return Err(ForwardedCertError::Empty);
    }
    match format {
        ForwardedFormat::Xfcc => xfcc::thumbprint(value),
        ForwardedFormat::Rfc9440 => rfc9440(value),
        ForwardedFormat::PemUrlencoded => pem_urlencoded(value),
    }
}

impl ForwardedCertError {
    /// A forwarded header we cannot use means there is no certificate to bind to (fail closed).
    pub const fn deny_reason(self) -> DenyReason {
        DenyReason::MtlsCertificateMissing
    }
}

/// RFC 9440 §2.2: `Client-Cert` is an RFC 8941 Item whose value is a Byte Sequence (§3.3.5):
/// `:` standard base64 of the DER `:`. Parameters after it are ignored (RFC 8941 §3.1.2).
fn rfc9440(value: &str) -> Result<[u8; 32], ForwardedCertError> {
    let inner = value
        .strip_prefix(':')
        .ok_or(ForwardedCertError::Malformed("not a byte sequence"))?;
    let (b64, rest) = inner
        .split_once(':')
        .ok_or(ForwardedCertError::Malformed("unterminated byte sequence"))?;
    if !(rest.is_empty() || rest.starts_with(';')) {
        return Err(ForwardedCertError::Malformed(
            "trailing data after byte sequence",
        ));
    }
    // RFC 8941 §4.2.7: padding is expected but parsers may accept its absence.
    const LENIENT: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    let der = LENIENT
        .decode(b64)
        .map_err(|_| ForwardedCertError::Malformed("invalid base64"))?;
    der_certificate(&der)
}

/// URL-encoded PEM. Only `%XX` is decoded: `+` is a base64 character here, not a space.
fn pem_urlencoded(value: &str) -> Result<[u8; 32], ForwardedCertError> {
    let pem: Vec<u8> = percent_encoding::percent_decode_str(value).collect();
    pem_certificate(&pem)
}

/// The first `CERTIFICATE` block of a PEM document (the leaf, when a chain follows).
fn pem_certificate(pem: &[u8]) -> Result<[u8; 32], ForwardedCertError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::{Error as PemError, PemObject};
    // Sections of other kinds are skipped; the first CERTIFICATE is the leaf.
    match CertificateDer::from_pem_slice(pem) {
        Ok(der) => der_certificate(der.as_ref()),
        Err(PemError::NoItemsFound) => Err(ForwardedCertError::NoCertificate),
        Err(_) => Err(ForwardedCertError::Malformed("invalid PEM")),
    }
}

/// Cheap sanity check before hashing: a certificate is a non-empty DER SEQUENCE. Full parsing is
/// unnecessary: the bytes only have to hash to the value the authorization server bound.
fn der_certificate(der: &[u8]) -> Result<[u8; 32], ForwardedCertError> {
    if der.len() < 16 || der[0] != 0x30 {
        return Err(ForwardedCertError::Malformed("not a DER certificate"));
    }
    Ok(cert_thumbprint(der))
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest::digest(&digest::SHA256, bytes).as_ref());
    out
}

#[cfg(test)]
mod tests;
