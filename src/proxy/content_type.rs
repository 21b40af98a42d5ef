//! `Content-Type` as the proxy reads it, and as the API must read it too.
//!
//! The header is single-valued (RFC 9110 §8.3). When it arrives as two field lines, or as one
//! line that folds two media types together (`a, b`, which is what an intermediary makes of two
//! lines), the proxy could check the body as JSON while a last-wins stack reads it as a form:
//! such a request is refused, whatever the route. Where the proxy reads the body itself (a JSON
//! body a consent rule compares, a form body it searches for an access token) the body is read
//! as UTF-8, so a `charset` other than `utf-8` is refused too: the API would decode other bytes
//! than the ones that were checked.

use http::HeaderMap;
use http::header::CONTENT_TYPE;

/// The one `Content-Type` a request carries, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct ContentType<'a> {
    /// `type/subtype`, as sent (compare without regard to case).
    pub essence: &'a str,
    /// Every parameter is `name=value` (value a token or a quoted string), and at most one of
    /// them is `charset`, which (if present) says UTF-8.
    pub utf8: bool,
}

/// Why a `Content-Type` cannot be read one way only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Ambiguous {
    /// More than one field line.
    TwoLines,
    /// Not visible ASCII, an unquoted comma, or not `type/subtype *( ; name=value )`.
    Malformed,
}

/// The request's `Content-Type`: `Ok(None)` without one, an error when it could be read as more
/// than one media type.
pub(super) fn single(h: &HeaderMap) -> Result<Option<ContentType<'_>>, Ambiguous> {
    let mut lines = h.get_all(CONTENT_TYPE).iter();
    let Some(line) = lines.next() else {
        return Ok(None);
    };
    if lines.next().is_some() {
        return Err(Ambiguous::TwoLines);
    }
    let value = line.to_str().map_err(|_| Ambiguous::Malformed)?;
    parse(value).map(Some).ok_or(Ambiguous::Malformed)
}

impl ContentType<'_> {
    /// `application/json` or any `+json` type.
    pub fn is_json(&self) -> bool {
        let e = self.essence;
        e.eq_ignore_ascii_case("application/json")
            || e.len() > 5 && e[e.len() - 5..].eq_ignore_ascii_case("+json")
    }

    pub fn is_form(&self) -> bool {
        self.essence
            .eq_ignore_ascii_case("application/x-www-form-urlencoded")
    }
}

/// RFC 9110 §8.3.1: `type "/" subtype *( OWS ";" OWS parameter )`, parameter = token "="
/// ( token / quoted-string ). Split on `;` outside quoted strings; an unquoted `,` (two media
/// types folded into one line) or an unterminated quote is refused.
fn parse(value: &str) -> Option<ContentType<'_>> {
    let bytes = value.as_bytes();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    let mut essence: Option<&str> = None;
    let mut charset: Option<bool> = None;
    for i in 0..=bytes.len() {
        let b = bytes.get(i).copied();
        if quoted {
            match b {
                None => return None,
                Some(_) if escaped => escaped = false,
                Some(b'\\') => escaped = true,
                Some(b'"') => quoted = false,
                Some(_) => {}
            }
            continue;
        }
        match b {
            Some(b'"') => quoted = true,
            Some(b',') => return None,
            // `;` is ASCII, so `i` is always a char boundary.
            Some(b';') | None => {
                let item = value.get(start..i)?.trim_matches(is_ows);
                start = i + 1;
                match essence {
                    None => essence = Some(media_type(item)?),
                    Some(_) => parameter(item, &mut charset)?,
                }
            }
            Some(_) => {}
        }
    }
    Some(ContentType {
        essence: essence?,
        utf8: charset.unwrap_or(true),
    })
}

fn media_type(item: &str) -> Option<&str> {
    let (ty, sub) = item.split_once('/')?;
    (is_token(ty) && is_token(sub)).then_some(item)
}

/// One parameter; an empty one (`type/sub;`) is allowed (RFC 9110 §5.6.6). A second `charset`
/// is refused: which one would the API take?
fn parameter(item: &str, charset: &mut Option<bool>) -> Option<()> {
    if item.is_empty() {
        return Some(());
    }
    let (name, value) = item.split_once('=')?;
    let value = unquote(value)?;
    if !is_token(name) {
        return None;
    }
    if name.eq_ignore_ascii_case("charset") {
        if charset.is_some() {
            return None;
        }
        *charset = Some(value.eq_ignore_ascii_case("utf-8"));
    }
    Some(())
}

fn is_ows(c: char) -> bool {
    c == ' ' || c == '\t'
}

/// RFC 9110 §5.6.2 token.
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// A token, or a quoted string without its quotes (escapes left as sent: only `charset` is
/// compared, and `utf-8` needs none).
fn unquote(v: &str) -> Option<&str> {
    match v.strip_prefix('"') {
        Some(q) => q.strip_suffix('"'),
        None => is_token(v).then_some(v),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(lines: &[&[u8]]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for l in lines {
            h.append(
                CONTENT_TYPE,
                HeaderValue::from_bytes(l).expect("test header value"),
            );
        }
        h
    }

    #[test]
    fn one_media_type_or_refused() {
        // (name, field lines, expected: Ok((json, form, utf8)) or the refusal)
        type Want = Result<Option<(bool, bool, bool)>, Ambiguous>;
        let cases: &[(&str, &[&[u8]], Want)] = &[
            ("absent", &[], Ok(None)),
            (
                "json",
                &[b"application/json"],
                Ok(Some((true, false, true))),
            ),
            (
                "json upper case",
                &[b"Application/JSON"],
                Ok(Some((true, false, true))),
            ),
            (
                "+json",
                &[b"application/problem+json"],
                Ok(Some((true, false, true))),
            ),
            (
                "utf-8",
                &[b"application/json; charset=utf-8"],
                Ok(Some((true, false, true))),
            ),
            (
                "quoted UTF-8",
                &[b"application/json;charset=\"UTF-8\""],
                Ok(Some((true, false, true))),
            ),
            (
                "utf-16",
                &[b"application/json; charset=utf-16"],
                Ok(Some((true, false, false))),
            ),
            (
                "latin-1 form",
                &[b"application/x-www-form-urlencoded; charset=iso-8859-1"],
                Ok(Some((false, true, false))),
            ),
            (
                "form",
                &[b"application/x-www-form-urlencoded"],
                Ok(Some((false, true, true))),
            ),
            (
                "trailing semicolon",
                &[b"application/json;"],
                Ok(Some((true, false, true))),
            ),
            (
                "other parameter",
                &[b"multipart/form-data; boundary=\"a;b,c\""],
                Ok(Some((false, false, true))),
            ),
            (
                "two lines",
                &[b"application/json", b"application/x-www-form-urlencoded"],
                Err(Ambiguous::TwoLines),
            ),
            (
                "two equal lines",
                &[b"application/json", b"application/json"],
                Err(Ambiguous::TwoLines),
            ),
            (
                "folded list",
                &[b"application/json, application/x-www-form-urlencoded"],
                Err(Ambiguous::Malformed),
            ),
            (
                "comma in a parameter",
                &[b"application/json; charset=utf-8,utf-16"],
                Err(Ambiguous::Malformed),
            ),
            (
                "two charsets",
                &[b"application/json; charset=utf-8; charset=utf-16"],
                Err(Ambiguous::Malformed),
            ),
            ("no subtype", &[b"application"], Err(Ambiguous::Malformed)),
            ("empty", &[b""], Err(Ambiguous::Malformed)),
            (
                "space in type",
                &[b"application /json"],
                Err(Ambiguous::Malformed),
            ),
            (
                "parameter without value",
                &[b"application/json; charset"],
                Err(Ambiguous::Malformed),
            ),
            (
                "unterminated quote",
                &[b"application/json; charset=\"utf-8"],
                Err(Ambiguous::Malformed),
            ),
            (
                "obs-text",
                &[b"application/json; x=\xff"],
                Err(Ambiguous::Malformed),
            ),
        ];
        for (name, lines, want) in cases {
            let h = headers(lines);
            let got = single(&h).map(|ct| ct.map(|c| (c.is_json(), c.is_form(), c.utf8)));
            assert_eq!(&got, want, "{name}");
        }
    }
}
