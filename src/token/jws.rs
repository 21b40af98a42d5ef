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

/// Whether `token` has the shape of a compact JWS (RFC 7515 §7.1): two dots and otherwise only
/// base64url characters. Such a token is a JWT for this proxy (verified against the issuer's
/// keys, never sent to introspection); any other token is opaque.
pub fn is_jws_shaped(token: &str) -> bool {
    let mut dots = 0;
    token.bytes().all(|b| match b {
        b'.' => {
            dots += 1;
            true
        }
        _ => b.is_ascii_alphanumeric() || b == b'-' || b == b'_',
    }) && dots == 2
}

/// A base64url (no padding) JSON part. A JSON text with a duplicate member name at any depth
/// is refused: RFC 7515 §5.2 step 4 / RFC 7519 §7.2 step 4 allow a recipient to reject it, and
/// parsers disagree on which duplicate wins (a parser differential between this proxy, the
/// API and the audit reader). serde_json's recursion limit (128) bounds nesting.
pub fn decode_json<T: serde::de::DeserializeOwned>(b64: &str) -> Option<T> {
    let bytes = URL_SAFE_NO_PAD.decode(b64).ok()?;
    if !unique_member_names(&bytes) {
        return None;
    }
    serde_json::from_slice(&bytes).ok()
}

/// Whether `json` is one JSON text in which no object repeats a member name.
pub fn unique_member_names(json: &[u8]) -> bool {
    let mut de = serde_json::Deserializer::from_slice(json);
    serde::de::DeserializeSeed::deserialize(Unique, &mut de).is_ok() && de.end().is_ok()
}

/// Walks any JSON value, failing on a repeated member name.
struct Unique;

impl<'de> serde::de::DeserializeSeed<'de> for Unique {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for Unique {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JSON")
    }
    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(Unique)?.is_some() {}
        Ok(())
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen = std::collections::HashSet::new();
        while let Some(k) = map.next_key::<String>()? {
            if !seen.insert(k) {
                return Err(serde::de::Error::custom("duplicate member name"));
            }
            map.next_value_seed(Unique)?;
        }
        Ok(())
    }
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
        let shapes = [
            ("eyJh.eyJi.c2ln", true),
            ("a-_.b.c", true),
            ("a..c", true),
            ("a.b", false),
            ("a.b.c.d.e", false),
            // RFC 9449 §7.1's example access token: dots, but `~` is not base64url.
            ("Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU", false),
            ("a+b.c.d", false),
            ("a.b.c=", false),
            ("2YotnFZFEjr1zCsicMWpAA", false),
            ("", false),
        ];
        for (token, want) in shapes {
            assert_eq!(is_jws_shaped(token), want, "{token}");
        }
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

    #[test]
    fn duplicate_member_names_are_refused_at_any_depth() {
        let deep_ok = format!("{}1{}", "[".repeat(100), "]".repeat(100));
        let too_deep = format!("{}1{}", "[".repeat(10_000), "]".repeat(10_000));
        let cases: [(&str, &str, bool); 10] = [
            ("plain", r#"{"sub":"a","aud":"b"}"#, true),
            ("numbers", r#"{"exp":1.5,"iat":12345678901234567890}"#, true),
            ("duplicate", r#"{"sub":"a","sub":"b"}"#, false),
            (
                "duplicate after unescaping",
                r#"{"sub":"a","sub":"b"}"#,
                false,
            ),
            (
                "nested duplicate",
                r#"{"act":{"sub":"x","sub":"y"}}"#,
                false,
            ),
            ("in an array", r#"{"a":[{"k":1,"k":2}]}"#, false),
            (
                "case differs: distinct names",
                r#"{"sub":"a","Sub":"b"}"#,
                true,
            ),
            ("trailing garbage", r#"{"sub":"a"} x"#, false),
            ("deep but bounded", &deep_ok, true),
            ("beyond the recursion limit", &too_deep, false),
        ];
        for (name, json, want) in cases {
            assert_eq!(unique_member_names(json.as_bytes()), want, "{name}");
        }
    }
}
