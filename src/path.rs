//! Request-path normalization (spec §5): one canonical form for matching and forwarding, and a
//! refusal for every path that two servers could read differently.
//!
//! Policy (documented in docs/policy.md):
//! - percent-encoded unreserved characters are decoded (RFC 3986 §6.2.2.2) and the hex digits of
//!   the remaining escapes upper-cased (§6.2.2.1), so `%7e` and `~` match the same route;
//! - ambiguous paths are refused before matching: an encoded `/` or `\`, a raw `\`, dot segments
//!   (`.`/`..`, also encoded), empty segments (`//`), NUL and other control characters (raw or
//!   encoded), invalid percent-encoding, a raw `;` (path parameters some servers strip), and
//!   anything that is not an origin-form path;
//! - the trailing slash is significant: `/accounts/` is not `/accounts` (no redirect, no guess).

use std::borrow::Cow;

use percent_encoding::percent_decode_str;

/// Why a path was refused (all map to `request_malformed`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AmbiguousPath {
    NotOriginForm,
    BadPercentEncoding,
    EncodedSeparator,
    Backslash,
    DotSegment,
    EmptySegment,
    ControlCharacter,
    Semicolon,
}

/// Normalizes an origin-form path. Borrows when the input is already canonical (the common case),
/// so the hot path allocates nothing.
pub fn normalize(raw: &str) -> Result<Cow<'_, str>, AmbiguousPath> {
    let bytes = raw.as_bytes();
    if bytes.first() != Some(&b'/') {
        return Err(AmbiguousPath::NotOriginForm);
    }
    let mut out: Option<String> = None;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        match b {
            b'%' => {
                let (hi, lo) = match (bytes.get(i + 1), bytes.get(i + 2)) {
                    (Some(h), Some(l)) => (hex(*h), hex(*l)),
                    _ => (None, None),
                };
                let (Some(hi), Some(lo)) = (hi, lo) else {
                    return Err(AmbiguousPath::BadPercentEncoding);
                };
                let decoded = hi << 4 | lo;
                match decoded {
                    b'/' => return Err(AmbiguousPath::EncodedSeparator),
                    b'\\' => return Err(AmbiguousPath::Backslash),
                    0..=0x1f | 0x7f => return Err(AmbiguousPath::ControlCharacter),
                    _ => {}
                }
                if is_unreserved(decoded) {
                    let s = out.get_or_insert_with(|| raw[..i].to_owned());
                    s.push(char::from(decoded));
                } else {
                    let canonical = [b'%', upper_hex(hi), upper_hex(lo)];
                    if let Some(s) = out.as_mut() {
                        // canonical bytes are ASCII: '%' and two hex digits.
                        s.push_str(std::str::from_utf8(&canonical).unwrap_or("%25"));
                    } else if bytes[i + 1..i + 3] != canonical[1..] {
                        let mut s = raw[..i].to_owned();
                        s.push_str(std::str::from_utf8(&canonical).unwrap_or("%25"));
                        out = Some(s);
                    }
                }
                i += 3;
                continue;
            }
            b'\\' => return Err(AmbiguousPath::Backslash),
            b';' => return Err(AmbiguousPath::Semicolon),
            0..=0x1f | 0x7f => return Err(AmbiguousPath::ControlCharacter),
            b'?' | b'#' => return Err(AmbiguousPath::NotOriginForm),
            _ => {}
        }
        if let Some(s) = out.as_mut() {
            // Non-ASCII bytes cannot reach here through hyper's parser, but copy them faithfully
            // by working on char boundaries of the original &str.
            if b.is_ascii() {
                s.push(char::from(b));
            } else {
                let ch_len = utf8_len(b);
                s.push_str(raw.get(i..i + ch_len).unwrap_or(""));
                i += ch_len;
                continue;
            }
        }
        i += 1;
    }
    let path = match out {
        Some(s) => Cow::Owned(s),
        None => Cow::Borrowed(raw),
    };
    check_segments(&path)?;
    Ok(path)
}

/// Decodes a single matched path parameter (a whole segment, so it holds no `/`).
pub fn decode_param(segment: &str) -> Cow<'_, str> {
    percent_decode_str(segment).decode_utf8_lossy()
}

/// Every matched path parameter, decoded: what consent rules compare with account ids.
pub fn decode_params<'a>(params: &matchit::Params<'a, '_>) -> Vec<(&'a str, String)> {
    params
        .iter()
        .map(|(k, v)| (k, decode_param(v).into_owned()))
        .collect()
}

fn check_segments(path: &str) -> Result<(), AmbiguousPath> {
    // The leading '/' yields an empty first segment; the last one may be empty (trailing slash).
    let mut segments = path[1..].split('/').peekable();
    while let Some(seg) = segments.next() {
        let last = segments.peek().is_none();
        if seg.is_empty() && !last {
            return Err(AmbiguousPath::EmptySegment);
        }
        if seg == "." || seg == ".." {
            return Err(AmbiguousPath::DotSegment);
        }
    }
    Ok(())
}

const fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

const fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

const fn upper_hex(n: u8) -> u8 {
    match n {
        0..=9 => b'0' + n,
        _ => b'A' + n - 10,
    }
}

const fn utf8_len(first: u8) -> usize {
    match first {
        0xf0..=0xff => 4,
        0xe0..=0xef => 3,
        _ => 2,
    }
}

/// True when the query carries an `access_token` parameter (RFC 6750 §2.3), which FAPI forbids:
/// the token would end up in logs and caches.
pub fn query_has_access_token(query: &str) -> bool {
    form_has_access_token(query.as_bytes())
}

/// The same check for an `application/x-www-form-urlencoded` body (RFC 6750 §2.2).
pub fn form_has_access_token(form: &[u8]) -> bool {
    form.split(|b| *b == b'&').any(|pair| {
        let key = pair.split(|b| *b == b'=').next().unwrap_or_default();
        let key: Vec<u8> = key
            .iter()
            .map(|b| if *b == b'+' { b' ' } else { *b })
            .collect();
        percent_encoding::percent_decode(&key).eq(b"access_token".iter().copied())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_paths_are_borrowed_unchanged() {
        for p in [
            "/",
            "/accounts",
            "/accounts/",
            "/accounts/acc-1",
            "/a/b.c/~x_y",
            "/a/%C3%A9",
        ] {
            let n = normalize(p).expect(p);
            assert!(matches!(n, Cow::Borrowed(_)), "{p} should borrow");
            assert_eq!(n, p);
        }
    }

    #[test]
    fn normalization_table() {
        let cases: &[(&str, &str, Result<&str, AmbiguousPath>)] = &[
            ("unreserved decoded", "/acc%6Funts", Ok("/accounts")),
            ("lower-case unreserved", "/%7e%41", Ok("/~A")),
            ("hex upper-cased", "/a%c3%a9", Ok("/a%C3%A9")),
            ("mixed case escape kept encoded", "/a%3a", Ok("/a%3A")),
            ("space kept encoded", "/a%20b", Ok("/a%20b")),
            ("trailing slash kept", "/accounts/", Ok("/accounts/")),
            (
                "encoded dot-dot",
                "/accounts/%2e%2e/admin",
                Err(AmbiguousPath::DotSegment),
            ),
            (
                "mixed encoded dot-dot",
                "/accounts/.%2E/x",
                Err(AmbiguousPath::DotSegment),
            ),
            (
                "raw dot-dot",
                "/accounts/../admin",
                Err(AmbiguousPath::DotSegment),
            ),
            ("dot segment", "/./accounts", Err(AmbiguousPath::DotSegment)),
            (
                "trailing dot-dot",
                "/accounts/..",
                Err(AmbiguousPath::DotSegment),
            ),
            ("dots inside a name are fine", "/a/..b/c.", Ok("/a/..b/c.")),
            (
                "encoded slash upper",
                "/accounts%2Facc-1",
                Err(AmbiguousPath::EncodedSeparator),
            ),
            (
                "encoded slash lower",
                "/accounts%2facc-1",
                Err(AmbiguousPath::EncodedSeparator),
            ),
            (
                "double slash",
                "/accounts//acc-1",
                Err(AmbiguousPath::EmptySegment),
            ),
            (
                "leading double slash",
                "//accounts",
                Err(AmbiguousPath::EmptySegment),
            ),
            (
                "backslash",
                "/accounts\\acc-1",
                Err(AmbiguousPath::Backslash),
            ),
            (
                "encoded backslash",
                "/accounts%5cacc",
                Err(AmbiguousPath::Backslash),
            ),
            (
                "encoded nul",
                "/accounts%00",
                Err(AmbiguousPath::ControlCharacter),
            ),
            (
                "encoded newline",
                "/a%0Ab",
                Err(AmbiguousPath::ControlCharacter),
            ),
            (
                "truncated escape",
                "/accounts%2",
                Err(AmbiguousPath::BadPercentEncoding),
            ),
            (
                "non-hex escape",
                "/accounts%zz",
                Err(AmbiguousPath::BadPercentEncoding),
            ),
            (
                "semicolon",
                "/accounts;jsessionid=1",
                Err(AmbiguousPath::Semicolon),
            ),
            ("asterisk form", "*", Err(AmbiguousPath::NotOriginForm)),
            ("empty", "", Err(AmbiguousPath::NotOriginForm)),
        ];
        for (name, input, want) in cases {
            let got = normalize(input).map(|c| c.into_owned());
            assert_eq!(got.as_deref().map_err(|e| *e), *want, "{name}");
        }
    }

    #[test]
    fn params_decode() {
        assert_eq!(decode_param("acc%201"), "acc 1");
        assert_eq!(decode_param("plain"), "plain");
    }

    #[test]
    fn access_token_in_query_or_form() {
        let cases = [
            ("a=1&access_token=x", true),
            ("access_token=x", true),
            ("access%5Ftoken=x", true),
            ("access_token", true),
            ("a=access_token", false),
            ("my_access_token=x", false),
            ("", false),
        ];
        for (q, want) in cases {
            assert_eq!(query_has_access_token(q), want, "{q}");
        }
        assert!(form_has_access_token(b"grant=1&access_token=abc"));
    }
}

#[cfg(test)]
mod proptests {
    use super::*;
    use proptest::prelude::*;

    /// Paths built from the pieces that make paths ambiguous, so the interesting cases are
    /// common rather than one in a million.
    fn tricky_path() -> impl Strategy<Value = String> {
        let piece = prop_oneof![
            Just("/"),
            Just("//"),
            Just("."),
            Just(".."),
            Just("%2e"),
            Just("%2E"),
            Just("%2f"),
            Just("%2F"),
            Just("%5c"),
            Just("%5C"),
            Just("%7e"),
            Just("%41"),
            Just("%25"),
            Just("%zz"),
            Just("%"),
            Just("%c3%a9"),
            Just("\u{e9}"),
            Just("\\"),
            Just(";"),
            Just("%00"),
            Just("?"),
            Just("a"),
            Just("acc-1"),
            Just("~"),
        ];
        proptest::collection::vec(piece, 0..12).prop_map(|v| v.concat())
    }

    fn check_output(out: &str) -> Result<(), TestCaseError> {
        prop_assert!(out.starts_with('/'), "{out}");
        prop_assert!(!out.contains("//"), "{out}");
        let upper = out.to_ascii_uppercase();
        for encoded in ["%2F", "%5C", "%2E", "%00", "%7E", "%41"] {
            prop_assert!(!upper.contains(encoded), "{out} still holds {encoded}");
        }
        prop_assert!(!out.contains('\\') && !out.contains(';'), "{out}");
        for seg in out[1..].split('/') {
            prop_assert!(seg != "." && seg != "..", "{out} has a dot segment");
        }
        Ok(())
    }

    proptest! {
        #[test]
        fn never_panics_on_any_string(raw in any::<String>()) {
            if let Ok(out) = normalize(&raw) {
                check_output(&out)?;
            }
        }

        #[test]
        fn idempotent_and_unambiguous(raw in tricky_path()) {
            // A refused path has no output to check; an accepted one must be a fixed point.
            if let Ok(once) = normalize(&raw) {
                check_output(&once)?;
                let twice = normalize(&once);
                prop_assert_eq!(twice.as_deref(), Ok(once.as_ref()), "{}", raw);
            }
        }

        #[test]
        fn prefixed_tricks_never_escape_a_protected_prefix(raw in tricky_path()) {
            // Whatever follows `/public/`, a normalized result stays under it (no `..` climbs).
            let full = format!("/public/{raw}");
            if let Ok(out) = normalize(&full) {
                prop_assert!(out.starts_with("/public/"), "{} -> {}", full, out);
            }
        }
    }
}
