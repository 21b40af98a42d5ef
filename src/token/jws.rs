//! Compact JWS structure shared by the JWT verifiers (access tokens, Txn-Tokens): the three
//! parts, base64url JSON decoding, and the `typ` comparison.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// The three non-empty parts of a compact JWS (RFC 7515 §7.1), refusing anything longer than
/// `max_len` before any decoding work.
pub fn split(token: &str, max_len: usize) -> Option<(&str, &str, &str)> {
    if token.len() > max_len {
        return None;
    }
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    (!h.is_empty() && !p.is_empty() && !s.is_empty()).then_some((h, p, s))
}

/// A base64url (no padding) JSON part.
pub fn decode_json<T: serde::de::DeserializeOwned>(b64: &str) -> Option<T> {
    let bytes = URL_SAFE_NO_PAD.decode(b64).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// `typ` equals `expected`: media types are case-insensitive and the `application/` prefix may
/// be present (RFC 7515 §4.1.9).
pub fn typ_is(typ: Option<&str>, expected: &str) -> bool {
    typ.is_some_and(|t| {
        t.eq_ignore_ascii_case(expected)
            || t.len() == expected.len() + 12
                && t[..12].eq_ignore_ascii_case("application/")
                && t[12..].eq_ignore_ascii_case(expected)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn structure_and_typ() {
        assert_eq!(split("a.b.c", 100), Some(("a", "b", "c")));
        for bad in ["a.b", "a.b.c.d", ".b.c", "a..c", "a.b.", ""] {
            assert_eq!(split(bad, 100), None, "{bad}");
        }
        assert_eq!(split("a.b.c", 4), None, "over the size limit");
        let cases = [
            (Some("at+jwt"), true),
            (Some("AT+JWT"), true),
            (Some("application/at+jwt"), true),
            (Some("Application/AT+jwt"), true),
            (Some("jwt"), false),
            (Some("application/jwt"), false),
            (Some("xapplication/at+jwt"), false),
            (None, false),
        ];
        for (typ, want) in cases {
            assert_eq!(typ_is(typ, "at+jwt"), want, "{typ:?}");
        }
    }
}
