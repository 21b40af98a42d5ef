//! `Content-Digest` (RFC 9530 §2): the digest of the message content, a Dictionary of
//! algorithm → byte sequence. We produce `sha-256` and accept `sha-256` and `sha-512`
//! (the algorithms RFC 9530 §5 marks "Active"); others are ignored as §3 allows, but at least
//! one we know must be present, and every one we know must match.

use aws_lc_rs::constant_time::verify_slices_are_equal;
use aws_lc_rs::digest;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use http::HeaderMap;
use sfv::{BareItem, ListEntry};

use super::fields::{combined, strict_dictionary};

pub const HEADER: &str = "content-digest";

/// Why the content does not match its `Content-Digest`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    #[error("no Content-Digest field")]
    Absent,
    #[error("Content-Digest is not a valid dictionary of byte sequences")]
    Malformed,
    #[error("Content-Digest names no supported algorithm (sha-256, sha-512)")]
    NoSupportedAlgorithm,
    #[error("Content-Digest does not match the content")]
    Mismatch,
}

/// `sha-256=:<base64>:` for `body`.
pub fn sha256_field(body: &[u8]) -> String {
    let d = digest::digest(&digest::SHA256, body);
    format!("sha-256=:{}:", STANDARD.encode(d.as_ref()))
}

/// Checks every field line of `Content-Digest` in `headers` against `body`.
pub fn verify(headers: &HeaderMap, body: &[u8]) -> Result<(), DigestError> {
    let value = combined(headers, HEADER)
        .map_err(|_| DigestError::Malformed)?
        .ok_or(DigestError::Absent)?;
    verify_value(&value, body)
}

/// Checks a `Content-Digest` value against `body`.
pub fn verify_value(value: &str, body: &[u8]) -> Result<(), DigestError> {
    let dict = strict_dictionary(HEADER, value).map_err(|_| DigestError::Malformed)?;
    let mut checked = 0;
    for (alg, entry) in &dict {
        let ListEntry::Item(sfv::Item {
            bare_item: BareItem::ByteSequence(expected),
            ..
        }) = entry
        else {
            return Err(DigestError::Malformed);
        };
        let algorithm = match alg.as_str() {
            "sha-256" => &digest::SHA256,
            "sha-512" => &digest::SHA512,
            _ => continue,
        };
        let actual = digest::digest(algorithm, body);
        if verify_slices_are_equal(actual.as_ref(), expected).is_err() {
            return Err(DigestError::Mismatch);
        }
        checked += 1;
    }
    if checked == 0 {
        return Err(DigestError::NoSupportedAlgorithm);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 9530 §2 and Appendix B: the content `{"hello": "world"}` and its digests.
    const HELLO: &[u8] = br#"{"hello": "world"}"#;
    const HELLO_SHA256: &str = "sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:";
    const HELLO_SHA512: &str = "sha-512=:WZDPaVn/7XgHaAy8pmojAkGWoRx2UFChF41A2svX+TaPm+AbwAgBWnrIiYllu7BNNyealdVLvRwEmTHWXvJwew==:";

    #[test]
    fn rfc9530_examples() {
        assert_eq!(sha256_field(HELLO), HELLO_SHA256);
        let cases: &[(&str, &str, &[u8], Result<(), DigestError>)] = &[
            ("sha-256 example", HELLO_SHA256, HELLO, Ok(())),
            ("sha-512 example", HELLO_SHA512, HELLO, Ok(())),
            (
                "both, as in RFC 9530 B.1",
                &format!("{HELLO_SHA256}, {HELLO_SHA512}"),
                HELLO,
                Ok(()),
            ),
            (
                "unknown algorithm beside a known one is ignored",
                &format!("md5=:AAAA:, {HELLO_SHA256}"),
                HELLO,
                Ok(()),
            ),
            (
                "one byte changed",
                HELLO_SHA256,
                br#"{"hello": "World"}"#,
                Err(DigestError::Mismatch),
            ),
            (
                "a wrong sha-512 beside a right sha-256",
                &format!("{HELLO_SHA256}, sha-512=:AAAA:"),
                HELLO,
                Err(DigestError::Mismatch),
            ),
            (
                "only unknown algorithms",
                "md5=:AAAA:, unixsum=:AAAA:",
                HELLO,
                Err(DigestError::NoSupportedAlgorithm),
            ),
            (
                "a token, not a byte sequence",
                "sha-256=abc",
                HELLO,
                Err(DigestError::Malformed),
            ),
            (
                "the same algorithm twice",
                &format!("{HELLO_SHA256}, sha-256=:AAAA:"),
                HELLO,
                Err(DigestError::Malformed),
            ),
            (
                "not a dictionary",
                "sha-256=:",
                HELLO,
                Err(DigestError::Malformed),
            ),
            (
                "empty content has a digest too",
                "sha-256=:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=:",
                b"",
                Ok(()),
            ),
        ];
        for (name, value, body, want) in cases {
            assert_eq!(verify_value(value, body), *want, "{name}");
        }
    }

    #[test]
    fn all_field_lines_are_read() {
        let mut h = HeaderMap::new();
        assert_eq!(verify(&h, HELLO), Err(DigestError::Absent));
        h.append(HEADER, http::HeaderValue::from_static(HELLO_SHA256));
        assert_eq!(verify(&h, HELLO), Ok(()));
        // A second line with a wrong sha-512 cannot hide behind the first.
        h.append(HEADER, http::HeaderValue::from_static("sha-512=:AAAA:"));
        assert_eq!(verify(&h, HELLO), Err(DigestError::Mismatch));
    }
}
