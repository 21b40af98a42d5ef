//! The authority a request addresses, refused when it is missing or ambiguous: an API (or a
//! router in front of it) that reads the `Host` must read the same one the proxy saw.

use http::header::{HOST, HeaderValue};
use http::uri::Authority;
use http::{Version, request::Parts};

use crate::reason::DenyReason;

/// The validated authority (`Host`, or the target's / `:authority`), `None` only for HTTP/1.0
/// requests without one.
///
/// - RFC 9112 §3.2: an HTTP/1.1 request without `Host`, with more than one `Host` line or with
///   an invalid one is answered 400.
/// - RFC 9112 §3.2.2: with an absolute-form target the `Host` is replaced by the target's
///   authority; one that disagrees is refused here instead of silently overridden.
/// - RFC 9113 §8.3.1: a `Host` that differs from `:authority` makes the request malformed.
pub fn authority(parts: &Parts) -> Result<Option<HeaderValue>, DenyReason> {
    let mut lines = parts.headers.get_all(HOST).iter();
    let host = lines.next();
    if lines.next().is_some() {
        return Err(DenyReason::RequestMalformed);
    }
    let host = host.map(parse).transpose()?;
    let target = parts.uri.authority();
    let scheme = parts.uri.scheme_str();
    match (host, target) {
        (Some(h), Some(t)) => {
            if target_has_userinfo(t) || !same(&h, t, scheme) {
                return Err(DenyReason::RequestMalformed);
            }
            Ok(Some(h.1))
        }
        (Some(h), None) => Ok(Some(h.1)),
        (None, Some(t)) => {
            if target_has_userinfo(t) {
                return Err(DenyReason::RequestMalformed);
            }
            HeaderValue::from_str(t.as_str())
                .map(Some)
                .map_err(|_| DenyReason::RequestMalformed)
        }
        (None, None) if parts.version <= Version::HTTP_10 => Ok(None),
        (None, None) => Err(DenyReason::RequestMalformed),
    }
}

/// A `Host` value: `uri-host [ ":" port ]`, no user information (RFC 9110 §7.2).
fn parse(v: &HeaderValue) -> Result<(Authority, HeaderValue), DenyReason> {
    let s = v.to_str().map_err(|_| DenyReason::RequestMalformed)?;
    if s.is_empty() || s.contains('@') {
        return Err(DenyReason::RequestMalformed);
    }
    let a: Authority = s.parse().map_err(|_| DenyReason::RequestMalformed)?;
    Ok((a, v.clone()))
}

fn target_has_userinfo(t: &Authority) -> bool {
    t.as_str().contains('@')
}

/// Same host (case-insensitive, RFC 3986 §6.2.2.1) and port (a scheme's default port equals
/// none, §6.2.3).
fn same(h: &(Authority, HeaderValue), t: &Authority, scheme: Option<&str>) -> bool {
    let default = match scheme {
        Some("https") => Some(443),
        Some("http") => Some(80),
        _ => None,
    };
    let port = |a: &Authority| a.port_u16().filter(|p| Some(*p) != default);
    h.0.host().eq_ignore_ascii_case(t.host()) && port(&h.0) == port(t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Request;

    fn parts(version: Version, target: &str, hosts: &[&str]) -> Parts {
        let mut b = Request::builder().uri(target).version(version);
        for h in hosts {
            b = b.header(HOST, *h);
        }
        b.body(()).expect("request").into_parts().0
    }

    #[test]
    fn authority_table() {
        const HTTP_10: Version = Version::HTTP_10;
        const HTTP_11: Version = Version::HTTP_11;
        const HTTP_2: Version = Version::HTTP_2;
        let ok = |s: &str| Ok(Some(HeaderValue::from_str(s).expect("value")));
        let bad = Err(DenyReason::RequestMalformed);
        let cases: &[(
            &str,
            Version,
            &str,
            &[&str],
            Result<Option<HeaderValue>, DenyReason>,
        )] = &[
            (
                "origin form",
                HTTP_11,
                "/a",
                &["api.example"],
                ok("api.example"),
            ),
            ("HTTP/1.1 without Host", HTTP_11, "/a", &[], bad.clone()),
            ("HTTP/1.0 without Host", HTTP_10, "/a", &[], Ok(None)),
            (
                "two Host lines",
                HTTP_11,
                "/a",
                &["a.example", "a.example"],
                bad.clone(),
            ),
            ("empty Host", HTTP_11, "/a", &[""], bad.clone()),
            (
                "userinfo in Host",
                HTTP_11,
                "/a",
                &["u@a.example"],
                bad.clone(),
            ),
            ("garbage Host", HTTP_11, "/a", &["a b"], bad.clone()),
            (
                "absolute form agrees",
                HTTP_11,
                "http://API.example/a",
                &["api.example:80"],
                ok("api.example:80"),
            ),
            (
                "absolute form disagrees",
                HTTP_11,
                "http://evil.example/a",
                &["api.example"],
                bad.clone(),
            ),
            (
                "absolute form, other port",
                HTTP_11,
                "http://api.example:81/a",
                &["api.example"],
                bad.clone(),
            ),
            (
                "absolute form without Host",
                HTTP_11,
                "http://api.example/a",
                &[],
                ok("api.example"),
            ),
            (
                "h2 :authority only",
                HTTP_2,
                "https://api.example/a",
                &[],
                ok("api.example"),
            ),
            (
                "h2 :authority and Host agree",
                HTTP_2,
                "https://api.example:443/a",
                &["api.example"],
                ok("api.example"),
            ),
            (
                "h2 :authority and Host differ",
                HTTP_2,
                "https://api.example/a",
                &["evil.example"],
                bad.clone(),
            ),
            ("h2 neither", HTTP_2, "/a", &[], bad.clone()),
        ];
        for (name, version, target, hosts, want) in cases {
            assert_eq!(&authority(&parts(*version, target, hosts)), want, "{name}");
        }
    }
}
