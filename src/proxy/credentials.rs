//! Reading the credentials off a request: the `Authorization` header (RFC 6750 §2.1, RFC 9449
//! §7.1) and the `DPoP` header, refusing every ambiguous form.

use http::HeaderMap;
use http::header::AUTHORIZATION;

use crate::decide::AuthScheme;
use crate::reason::DenyReason;

/// The access token as presented.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Presented<'a> {
    pub scheme: AuthScheme,
    pub token: &'a str,
}

/// `Ok(None)` when the request carries no credentials we understand (no header, or another
/// scheme such as Basic): that is `token_missing`, answered with our challenges.
pub fn authorization(headers: &HeaderMap) -> Result<Option<Presented<'_>>, DenyReason> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    // Two Authorization fields: which one would the API read? Refuse (spec §6).
    if values.next().is_some() {
        return Err(DenyReason::RequestMalformed);
    }
    let value = value.to_str().map_err(|_| DenyReason::RequestMalformed)?;
    let (scheme, rest) = match value.split_once(' ') {
        Some((s, r)) => (s, r),
        None => (value, ""),
    };
    // RFC 9110 §11.1: the scheme name is case-insensitive.
    let scheme = if scheme.eq_ignore_ascii_case("bearer") {
        AuthScheme::Bearer
    } else if scheme.eq_ignore_ascii_case("dpop") {
        AuthScheme::Dpop
    } else {
        return Ok(None);
    };
    let token = rest.trim_start_matches(' ');
    if token.is_empty() || !is_token68(token) {
        return Err(DenyReason::RequestMalformed);
    }
    Ok(Some(Presented { scheme, token }))
}

/// The single `DPoP` header, if any (RFC 9449 §4.3 step 1: exactly one).
pub fn dpop_proof(headers: &HeaderMap) -> Result<Option<&str>, DenyReason> {
    let mut values = headers.get_all("dpop").iter();
    let Some(v) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(DenyReason::RequestMalformed);
    }
    v.to_str()
        .map(Some)
        .map_err(|_| DenyReason::RequestMalformed)
}

/// RFC 6750 §2.1 b64token: `1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`.
fn is_token68(s: &str) -> bool {
    let body = s.trim_end_matches('=');
    !body.is_empty()
        && body.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/')
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(AUTHORIZATION, HeaderValue::from_str(v).expect("header"));
        }
        h
    }

    #[test]
    fn authorization_table() {
        use AuthScheme::*;
        let cases: &[(
            &str,
            &[&str],
            Result<Option<(AuthScheme, &str)>, DenyReason>,
        )] = &[
            ("none", &[], Ok(None)),
            (
                "bearer",
                &["Bearer abc.def.ghi"],
                Ok(Some((Bearer, "abc.def.ghi"))),
            ),
            (
                "case-insensitive scheme",
                &["bEaReR abc"],
                Ok(Some((Bearer, "abc"))),
            ),
            ("dpop", &["DPoP abc"], Ok(Some((Dpop, "abc")))),
            ("dpop lower", &["dpop abc"], Ok(Some((Dpop, "abc")))),
            ("padding ok", &["Bearer abc=="], Ok(Some((Bearer, "abc==")))),
            (
                "basic is no credential of ours",
                &["Basic dXNlcjpwYXNz"],
                Ok(None),
            ),
            (
                "two headers",
                &["Bearer a", "Bearer b"],
                Err(DenyReason::RequestMalformed),
            ),
            (
                "empty token",
                &["Bearer "],
                Err(DenyReason::RequestMalformed),
            ),
            (
                "scheme only",
                &["Bearer"],
                Err(DenyReason::RequestMalformed),
            ),
            (
                "bad characters",
                &["Bearer a,b"],
                Err(DenyReason::RequestMalformed),
            ),
            (
                "two tokens",
                &["Bearer a b"],
                Err(DenyReason::RequestMalformed),
            ),
        ];
        for (name, values, want) in cases {
            let h = headers(values);
            let got = authorization(&h).map(|o| o.map(|p| (p.scheme, p.token)));
            assert_eq!(got, *want, "{name}");
        }
    }

    #[test]
    fn dpop_header_must_be_single() {
        let mut h = HeaderMap::new();
        assert_eq!(dpop_proof(&h), Ok(None));
        h.append("dpop", HeaderValue::from_static("a.b.c"));
        assert_eq!(dpop_proof(&h), Ok(Some("a.b.c")));
        h.append("dpop", HeaderValue::from_static("d.e.f"));
        assert_eq!(dpop_proof(&h), Err(DenyReason::RequestMalformed));
    }
}
