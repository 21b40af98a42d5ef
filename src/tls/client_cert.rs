//! The client certificate the proxy verified, as the API behind it receives it.
//!
//! When the proxy terminates mTLS itself, it passes the leaf certificate on so the API sees the
//! certificate that was actually checked, never a client's copy. The header and format are
//! those of `listen.forwarded_client_cert` when that section exists (the API already reads
//! them from the ingress), otherwise RFC 9440 `Client-Cert: :<base64 DER>:`.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use http::HeaderValue;
use http::header::HeaderName;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use crate::mtls::ForwardedFormat;

/// RFC 9440 §2.2 field name.
pub const RFC9440_HEADER: HeaderName = HeaderName::from_static("client-cert");

/// RFC 3986 §2.3 unreserved characters stay; everything else (newlines, `+`, `/`, `=`, quotes,
/// `;` and `,` that structure XFCC) is percent-encoded.
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// The header value carrying `der` in `format`. Every format produces visible ASCII only.
pub fn header_value(der: &[u8], sha256: &[u8; 32], format: ForwardedFormat) -> Option<HeaderValue> {
    let value = match format {
        // RFC 9440 §2.2 / RFC 8941 §3.3.5: a Byte Sequence of the DER.
        ForwardedFormat::Rfc9440 => format!(":{}:", STANDARD.encode(der)),
        // Envoy XFCC: `Hash` (hex SHA-256 of the DER) and `Cert` (URL-encoded PEM).
        ForwardedFormat::Xfcc => {
            let hex: String = sha256.iter().map(|b| format!("{b:02x}")).collect();
            format!("Hash={hex};Cert=\"{}\"", urlencoded_pem(der))
        }
        // nginx `$ssl_client_escaped_cert`.
        ForwardedFormat::PemUrlencoded => urlencoded_pem(der),
    };
    HeaderValue::from_str(&value).ok()
}

fn urlencoded_pem(der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let mut pem = String::with_capacity(b64.len() + b64.len() / 64 + 64);
    pem.push_str("-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        // Base64 output is ASCII, so every chunk is valid UTF-8.
        pem.push_str(std::str::from_utf8(line).unwrap_or_default());
        pem.push('\n');
    }
    pem.push_str("-----END CERTIFICATE-----\n");
    utf8_percent_encode(&pem, COMPONENT).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What we send must read back, through the proxy's own forwarded-certificate parser, as
    /// the same certificate (a second sidecar or the API reading it gets the thumbprint).
    #[test]
    fn every_format_round_trips_through_the_parser() {
        let mut der = vec![0x30, 0x82, 0x01, 0x00];
        der.extend((0..=255u8).cycle().take(300));
        let sha = crate::mtls::cert_thumbprint(&der);
        for format in [
            ForwardedFormat::Rfc9440,
            ForwardedFormat::Xfcc,
            ForwardedFormat::PemUrlencoded,
        ] {
            let v = header_value(&der, &sha, format).expect("visible ASCII");
            let s = v.to_str().expect("ascii");
            assert_eq!(
                crate::mtls::parse_forwarded(s, format),
                Ok(sha),
                "{format:?}: {s}"
            );
        }
    }
}
