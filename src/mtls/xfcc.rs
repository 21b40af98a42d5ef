//! Envoy `x-forwarded-client-cert` (XFCC). The value is a `,`-separated list of elements, one per
//! proxy hop; each element is a `;`-separated list of `Key=Value` pairs. Values containing `,`,
//! `;` or `=` are double-quoted, with `"` inside escaped as `\"`. Splitting must therefore respect
//! quotes, or a client-chosen Subject such as `"a\",Hash=…"` could smuggle in a pair.
//!
//! Only the last element counts: it was appended by the nearest hop, the trusted one; earlier
//! elements are whatever arrived from further away.

use std::borrow::Cow;

use super::{ForwardedCertError, pem_urlencoded};

/// The certificate thumbprint from the last XFCC element: SHA-256 of `Cert` (URL-encoded PEM)
/// when present, else the `Hash` hex. When both are present they must agree.
pub(super) fn thumbprint(value: &str) -> Result<[u8; 32], ForwardedCertError> {
    let element = last_element(value)?.trim_matches([' ', '\t']);
    if element.is_empty() {
        return Err(ForwardedCertError::Malformed("empty XFCC element"));
    }
    let mut cert = None;
    let mut hash = None;
    for pair in split_unquoted(element, b';')? {
        let (key, raw) = pair
            .trim_matches([' ', '\t'])
            .split_once('=')
            .ok_or(ForwardedCertError::Malformed("XFCC pair without '='"))?;
        if key.is_empty() || !key.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(ForwardedCertError::Malformed("invalid XFCC key"));
        }
        let value = unquote(raw)?;
        // Duplicate Cert or Hash in one element is ambiguous: refuse rather than pick one.
        if key.eq_ignore_ascii_case("Cert") {
            if cert.replace(pem_urlencoded(&value)?).is_some() {
                return Err(ForwardedCertError::Malformed("duplicate XFCC Cert"));
            }
        } else if key.eq_ignore_ascii_case("Hash") && hash.replace(parse_hex(&value)?).is_some() {
            return Err(ForwardedCertError::Malformed("duplicate XFCC Hash"));
        }
    }
    match (cert, hash) {
        (Some(c), Some(h)) if c != h => Err(ForwardedCertError::HashMismatch),
        (Some(c), _) => Ok(c),
        (None, Some(h)) => Ok(h),
        (None, None) => Err(ForwardedCertError::NoCertificate),
    }
}

/// The text after the last top-level `,`.
fn last_element(value: &str) -> Result<&str, ForwardedCertError> {
    let mut start = 0;
    scan(value, b',', |sep| start = sep + 1)?;
    Ok(&value[start..])
}

fn split_unquoted(value: &str, sep: u8) -> Result<Vec<&str>, ForwardedCertError> {
    let mut parts = Vec::new();
    let mut start = 0;
    scan(value, sep, |at| {
        parts.push(&value[start..at]);
        start = at + 1;
    })?;
    parts.push(&value[start..]);
    Ok(parts)
}

/// Calls `on_sep` with the index of each `sep` byte outside double quotes. `sep` is ASCII, so
/// every index is a char boundary.
fn scan(value: &str, sep: u8, mut on_sep: impl FnMut(usize)) -> Result<(), ForwardedCertError> {
    let mut quoted = false;
    let mut escaped = false;
    for (i, b) in value.bytes().enumerate() {
        if escaped {
            escaped = false;
        } else if quoted && b == b'\\' {
            escaped = true;
        } else if b == b'"' {
            quoted = !quoted;
        } else if !quoted && b == sep {
            on_sep(i);
        }
    }
    if quoted || escaped {
        return Err(ForwardedCertError::Malformed(
            "unterminated XFCC quoted value",
        ));
    }
    Ok(())
}

/// Removes the surrounding quotes and the `\` escapes of a quoted value.
fn unquote(raw: &str) -> Result<Cow<'_, str>, ForwardedCertError> {
    let Some(inner) = raw.strip_prefix('"') else {
        if raw.contains('"') {
            return Err(ForwardedCertError::Malformed("stray quote in XFCC value"));
        }
        return Ok(Cow::Borrowed(raw));
    };
    let inner = inner
        .strip_suffix('"')
        .ok_or(ForwardedCertError::Malformed(
            "unterminated XFCC quoted value",
        ))?;
    if !inner.contains(['\\', '"']) {
        return Ok(Cow::Borrowed(inner));
    }
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.extend(chars.next()),
            '"' => return Err(ForwardedCertError::Malformed("stray quote in XFCC value")),
            _ => out.push(c),
        }
    }
    Ok(Cow::Owned(out))
}

/// `Hash` is the hex SHA-256 of the DER certificate (Envoy emits lower case).
fn parse_hex(s: &str) -> Result<[u8; 32], ForwardedCertError> {
    let bytes = s.as_bytes();
    if bytes.len() != 64 {
        return Err(ForwardedCertError::Malformed(
            "XFCC Hash is not 64 hex digits",
        ));
    }
    let mut out = [0u8; 32];
    for (o, pair) in out.iter_mut().zip(bytes.chunks_exact(2)) {
        let hi = hex_digit(pair[0])?;
        let lo = hex_digit(pair[1])?;
        *o = hi << 4 | lo;
    }
    Ok(out)
}

fn hex_digit(b: u8) -> Result<u8, ForwardedCertError> {
    char::from(b)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
        .ok_or(ForwardedCertError::Malformed(
            "XFCC Hash is not 64 hex digits",
        ))
}
