//! Responses the proxy writes itself: denials (spec §6) and upstream failures. The deny body
//! is JSON and never echoes anything from the request but the interaction id (a UUID we
//! validated or generated).

use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderValue, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{Response, StatusCode};
use http_body_util::{BodyExt, Full, combinators::BoxBody};

use crate::decide::AuthScheme;
use crate::reason::{DenyReason, ErrorCode};

pub type Body = BoxBody<Bytes, hyper::Error>;

pub const INTERACTION_ID: &str = "x-fapi-interaction-id";

/// What the challenge needs beyond the reason.
#[derive(Debug, Clone, Copy)]
pub struct ChallengeContext<'a> {
    /// The scheme the client used, if any; errors are reported in a challenge of that scheme.
    pub scheme: Option<AuthScheme>,
    /// `algs` for the DPoP challenge (RFC 9449 §7.1), space-separated.
    pub dpop_algs: &'a str,
    /// Required scopes, for `insufficient_scope` (RFC 6750 §3).
    pub scope: Option<&'a str>,
    /// A fresh nonce to hand out (RFC 9449 §9).
    pub dpop_nonce: Option<&'a str>,
    /// RFC 9470 §3 `acr_values` for `insufficient_user_authentication`: the route's acceptable
    /// `acr` values, space-separated, in order of preference.
    pub acr_values: Option<&'a str>,
    /// RFC 9470 §3 `max_age` for `insufficient_user_authentication`: the allowed seconds since
    /// the user last authenticated.
    pub max_age: Option<u64>,
}

pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

/// The denial response for `reason`: status, `WWW-Authenticate`, JSON body.
pub fn deny(
    reason: DenyReason,
    interaction_id: &str,
    ctx: &ChallengeContext<'_>,
) -> Response<Body> {
    let (status, error) = reason.status_and_error();
    let body = format!(
        r#"{{"error":"{}","reason":"{}","interaction_id":"{}"}}"#,
        error.as_str(),
        reason.as_str(),
        interaction_id
    );
    let mut resp = Response::new(full(body));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    for challenge in challenges(reason, error, ctx) {
        if let Ok(v) = HeaderValue::from_str(&challenge) {
            h.append(WWW_AUTHENTICATE, v);
        }
    }
    if reason == DenyReason::DpopNonceRequired
        && let Some(v) = ctx.dpop_nonce.and_then(|n| HeaderValue::from_str(n).ok())
    {
        h.insert("dpop-nonce", v);
    }
    if status == StatusCode::SERVICE_UNAVAILABLE {
        h.insert(RETRY_AFTER, HeaderValue::from_static("1"));
    }
    set_interaction_id(&mut resp, interaction_id);
    resp
}

/// A response for a failure after the request was allowed (upstream down, timed out).
pub fn upstream_error(status: StatusCode, error: &str, interaction_id: &str) -> Response<Body> {
    let body = format!(r#"{{"error":"{error}","interaction_id":"{interaction_id}"}}"#);
    let mut resp = Response::new(full(body));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    set_interaction_id(&mut resp, interaction_id);
    resp
}

pub fn set_interaction_id<B>(resp: &mut Response<B>, id: &str) {
    if let Ok(v) = HeaderValue::from_str(id) {
        resp.headers_mut().insert(INTERACTION_ID, v);
    }
}

fn challenges(reason: DenyReason, error: ErrorCode, ctx: &ChallengeContext<'_>) -> Vec<String> {
    let dpop = |params: &str| {
        let sep = if params.is_empty() { "" } else { ", " };
        format!("DPoP {params}{sep}algs=\"{}\"", ctx.dpop_algs)
    };
    if !error.is_challenge() {
        return Vec::new();
    }
    // RFC 6750 §3.1 / RFC 9449 §7.1: with no credentials at all, offer every scheme we accept
    // and no error code.
    if reason == DenyReason::TokenMissing {
        return vec!["Bearer".to_owned(), dpop("")];
    }
    let mut params = format!(
        "error=\"{}\", error_description=\"{}\"",
        error.as_str(),
        reason.as_str()
    );
    if error == ErrorCode::InsufficientScope
        && let Some(s) = ctx.scope.filter(|s| !s.is_empty())
    {
        params.push_str(&format!(", scope=\"{s}\""));
    }
    // RFC 9470 §3: tell the client which authentication level and recency to ask for. Both are
    // quoted-strings, as in the RFC's examples (RFC 9110 §11.2 allows either form).
    if error == ErrorCode::InsufficientUserAuthentication {
        if let Some(a) = ctx.acr_values.filter(|a| !a.is_empty()) {
            params.push_str(&format!(", acr_values=\"{a}\""));
        }
        if let Some(m) = ctx.max_age {
            params.push_str(&format!(", max_age=\"{m}\""));
        }
    }
    // DPoP proof and nonce errors are always DPoP challenges (RFC 9449 §7.1, §9); the others go
    // in the scheme the client used.
    let scheme = match reason.scheme() {
        Some(crate::reason::Scheme::Dpop) => AuthScheme::Dpop,
        _ => ctx.scheme.unwrap_or(AuthScheme::Bearer),
    };
    match scheme {
        AuthScheme::Dpop => vec![dpop(&params)],
        AuthScheme::Bearer => vec![format!("Bearer {params}")],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(scheme: Option<AuthScheme>) -> ChallengeContext<'static> {
        ChallengeContext {
            scheme,
            dpop_algs: "ES256 PS256",
            scope: Some("accounts"),
            dpop_nonce: Some("n-1"),
            acr_values: Some("urn:bank:sca"),
            max_age: Some(300),
        }
    }

    fn www(r: &Response<Body>) -> Vec<String> {
        r.headers()
            .get_all(WWW_AUTHENTICATE)
            .iter()
            .map(|v| v.to_str().unwrap_or_default().to_owned())
            .collect()
    }

    #[test]
    fn challenges_per_reason() {
        let cases: &[(&str, DenyReason, Option<AuthScheme>, u16, &[&str])] = &[
            (
                "missing",
                DenyReason::TokenMissing,
                None,
                401,
                &["Bearer", "DPoP algs=\"ES256 PS256\""],
            ),
            (
                "bearer invalid",
                DenyReason::TokenExpired,
                Some(AuthScheme::Bearer),
                401,
                &["Bearer error=\"invalid_token\", error_description=\"token_expired\""],
            ),
            (
                "dpop invalid token",
                DenyReason::TokenExpired,
                Some(AuthScheme::Dpop),
                401,
                &[
                    "DPoP error=\"invalid_token\", error_description=\"token_expired\", algs=\"ES256 PS256\"",
                ],
            ),
            (
                "proof",
                DenyReason::DpopProofReplayed,
                Some(AuthScheme::Dpop),
                401,
                &[
                    "DPoP error=\"invalid_dpop_proof\", error_description=\"dpop_proof_replayed\", algs=\"ES256 PS256\"",
                ],
            ),
            (
                "nonce",
                DenyReason::DpopNonceRequired,
                Some(AuthScheme::Dpop),
                401,
                &[
                    "DPoP error=\"use_dpop_nonce\", error_description=\"dpop_nonce_required\", algs=\"ES256 PS256\"",
                ],
            ),
            (
                "scope",
                DenyReason::ScopeInsufficient,
                Some(AuthScheme::Bearer),
                403,
                &[
                    "Bearer error=\"insufficient_scope\", error_description=\"scope_insufficient\", scope=\"accounts\"",
                ],
            ),
            (
                "malformed",
                DenyReason::RequestMalformed,
                None,
                400,
                &["Bearer error=\"invalid_request\", error_description=\"request_malformed\""],
            ),
            (
                "step-up (RFC 9470)",
                DenyReason::AssuranceInsufficient,
                Some(AuthScheme::Bearer),
                401,
                &[
                    "Bearer error=\"insufficient_user_authentication\", error_description=\"assurance_insufficient\", acr_values=\"urn:bank:sca\", max_age=\"300\"",
                ],
            ),
            (
                "step-up over DPoP",
                DenyReason::AssuranceInsufficient,
                Some(AuthScheme::Dpop),
                401,
                &[
                    "DPoP error=\"insufficient_user_authentication\", error_description=\"assurance_insufficient\", acr_values=\"urn:bank:sca\", max_age=\"300\", algs=\"ES256 PS256\"",
                ],
            ),
            (
                "RFC 9421 signature, in the client's scheme",
                DenyReason::ContentDigestMismatch,
                Some(AuthScheme::Dpop),
                401,
                &[
                    "DPoP error=\"invalid_request\", error_description=\"content_digest_mismatch\", algs=\"ES256 PS256\"",
                ],
            ),
            ("not found", DenyReason::RouteNotFound, None, 404, &[]),
            (
                "unavailable",
                DenyReason::DependencyUnavailable,
                None,
                503,
                &[],
            ),
        ];
        for (name, reason, scheme, status, want) in cases {
            let r = deny(*reason, "iid", &ctx(*scheme));
            assert_eq!(r.status().as_u16(), *status, "{name}");
            assert_eq!(
                www(&r),
                want.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
                "{name}"
            );
            assert_eq!(r.headers()[INTERACTION_ID], "iid", "{name}");
        }
        let n = deny(DenyReason::DpopNonceRequired, "i", &ctx(None));
        assert_eq!(n.headers()["dpop-nonce"], "n-1");
        let u = deny(DenyReason::DependencyUnavailable, "i", &ctx(None));
        assert_eq!(u.headers()[RETRY_AFTER], "1");
    }
}
