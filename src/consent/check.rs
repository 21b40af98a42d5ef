//! The consent checks themselves: pure, synchronous functions of the compiled rule, the consent
//! (record or token claim) and the request, so they can run inside `decide` and be tested
//! without sockets.
//!
//! Deny-reason mapping (spec §6), in check order:
//!
//! | check | reason |
//! |---|---|
//! | no consent id in the claim/header, header ≠ claim, no selected RAR detail, malformed `authorization_details` | `consent_missing` |
//! | record `client_id` ≠ token `client_id`, or record `subject` (when present) ≠ token `sub` | `consent_client_mismatch` |
//! | status not allowed and names a revocation (`Revoked`, `revokedByPsu`, `terminatedByTpp`) | `consent_revoked` |
//! | status not allowed and is the Berlin Group `expired`, or `expires_at` ≤ now | `consent_expired` |
//! | status not allowed otherwise (`AwaitingAuthorisation`, `Rejected`, `Consumed`, `received`, …) | `consent_not_authorised` |
//! | a route permission (record) or action (RAR) not granted | `consent_permission_missing` |
//! | account / identifier / location not covered | `consent_resource_mismatch` |
//! | a `match_body` field differs or is missing on either side | `consent_body_mismatch` |
//!
//! The client check comes first so that a caller naming someone else's consent (the Berlin Group
//! header is caller-controlled) learns nothing about its status, expiry or permissions.

use std::borrow::Cow;

use http::HeaderMap;
use percent_encoding::percent_decode_str;
use serde_json::{Map, Value};

use super::body::exact_eq;
use super::record::ConsentRecord;
use super::rule::{ParamSource, RarRule, RecordRule};
use crate::audit::ConsentInfo;
use crate::reason::DenyReason;

/// What the consent checks need to know about the request.
#[derive(Debug, Clone, Copy)]
pub struct ConsentContext<'a> {
    /// The verified token's `client_id`.
    pub client_id: &'a str,
    /// The verified token's `sub` (the PSU).
    pub subject: &'a str,
    /// The route's path parameters, percent-decoded (`path::decode_param`).
    pub params: &'a [(&'a str, String)],
    /// The raw (still encoded) query string, if any.
    pub query: Option<&'a str>,
    /// `listen.public_url`, canonical (`https://api.bank.example`).
    pub public_origin: &'a str,
    /// Unix seconds, from the injectable clock.
    pub now: i64,
    /// The parsed request body, for routes whose rule `needs_body()`.
    pub body: Option<&'a Value>,
}

/// The RFC 9396 detail that allowed the request.
#[derive(Debug, Clone, Copy)]
pub struct RarMatch<'v> {
    /// Position in the token's `authorization_details` array.
    pub index: usize,
    pub detail: &'v Map<String, Value>,
}

impl RarMatch<'_> {
    /// The audit `consent` object (spec §8): RAR details have no consent id of their own, so the
    /// detail's `identifier` is used when present, else its position in the claim.
    pub fn audit_info(&self) -> ConsentInfo {
        let id = match self.detail.get("identifier").and_then(Value::as_str) {
            Some(i) => i.to_owned(),
            None => format!("authorization_details[{}]", self.index),
        };
        ConsentInfo {
            id,
            source: "authorization_details",
            status: None,
            permissions: None,
        }
    }
}

impl RecordRule {
    /// The consent id this request names: the token claim, the header, or both (then equal).
    /// A missing or non-string claim, a missing or empty header, or a header that names another
    /// consent than the token's are `consent_missing` (no consent covering this request was
    /// presented); a repeated header is ambiguous, `request_malformed`.
    pub fn consent_id<'a>(
        &self,
        claims: &'a Map<String, Value>,
        headers: &'a HeaderMap,
    ) -> Result<&'a str, DenyReason> {
        let from_claim = match &self.claim {
            None => None,
            Some(c) => match claims.get(&**c) {
                Some(Value::String(s)) if !s.is_empty() => Some(s.as_str()),
                _ => return Err(DenyReason::ConsentMissing),
            },
        };
        let from_header = match &self.header {
            None => None,
            Some(h) => {
                let mut values = headers.get_all(h).iter();
                let (Some(v), None) = (values.next(), values.next()) else {
                    return Err(match headers.contains_key(h) {
                        true => DenyReason::RequestMalformed,
                        false => DenyReason::ConsentMissing,
                    });
                };
                match v.to_str().map(str::trim) {
                    Ok(s) if !s.is_empty() => Some(s),
                    _ => return Err(DenyReason::ConsentMissing),
                }
            }
        };
        match (from_claim, from_header) {
            (Some(c), Some(h)) if c == h => Ok(c),
            (Some(c), None) => Ok(c),
            (None, Some(h)) => Ok(h),
            _ => Err(DenyReason::ConsentMissing),
        }
    }
}

/// Checks a consent record fetched for this request against the route's record rule.
pub fn check_record(
    rule: &RecordRule,
    rec: &ConsentRecord,
    ctx: &ConsentContext<'_>,
) -> Result<(), DenyReason> {
    if rec.client_id != ctx.client_id || rec.subject.as_deref().is_some_and(|s| s != ctx.subject) {
        return Err(DenyReason::ConsentClientMismatch);
    }
    if !rule.status.iter().any(|s| **s == rec.status) {
        return Err(status_reason(&rec.status));
    }
    if rec.expires_at.is_some_and(|e| e <= ctx.now) {
        return Err(DenyReason::ConsentExpired);
    }
    if !rule
        .permissions
        .iter()
        .all(|p| rec.permissions.iter().any(|g| **p == **g))
    {
        return Err(DenyReason::ConsentPermissionMissing);
    }
    if let Some(src) = &rule.accounts {
        let covered = request_value(src, ctx)
            .is_some_and(|v| !v.is_empty() && rec.accounts.iter().any(|a| *a == *v));
        if !covered {
            return Err(DenyReason::ConsentResourceMismatch);
        }
    }
    Ok(())
}

/// Checks the token's RFC 9396 `authorization_details` against the route's rule.
///
/// Details of the configured `type` are selected; the request is allowed by the first one that
/// passes every check. When none does, the reason reported is that of the candidate that got
/// furthest through the checks (actions → locations → identifier → accounts → body), the first
/// such candidate on a tie: "this payment detail matches except the amount" is more useful than
/// "another detail lacks an action". A claim that is not an array of objects each with a string
/// `type` (RFC 9396 §2) is malformed and counts as no consent at all.
pub fn check_rar<'v>(
    rule: &RarRule,
    details: Option<&'v Value>,
    ctx: &ConsentContext<'_>,
) -> Result<RarMatch<'v>, DenyReason> {
    let Some(Value::Array(items)) = details else {
        return Err(DenyReason::ConsentMissing);
    };
    let well_formed = items
        .iter()
        .all(|d| d.get("type").is_some_and(Value::is_string));
    if !well_formed {
        return Err(DenyReason::ConsentMissing);
    }
    let mut best: Option<(Stage, DenyReason)> = None;
    for (index, item) in items.iter().enumerate() {
        let Value::Object(detail) = item else {
            continue;
        };
        if detail.get("type").and_then(Value::as_str) != Some(&*rule.detail_type) {
            continue;
        }
        match check_detail(rule, item, detail, ctx) {
            Ok(()) => return Ok(RarMatch { index, detail }),
            Err(failed) => {
                if best.is_none_or(|(s, _)| failed.0 > s) {
                    best = Some(failed);
                }
            }
        }
    }
    Err(best.map_or(DenyReason::ConsentMissing, |(_, r)| r))
}

/// How far a detail got through the checks, for picking the most specific reason.
type Stage = u8;

fn check_detail(
    rule: &RarRule,
    item: &Value,
    detail: &Map<String, Value>,
    ctx: &ConsentContext<'_>,
) -> Result<(), (Stage, DenyReason)> {
    // RFC 9396 §2.2 `actions`: the route's actions must all have been approved.
    let granted = detail.get("actions").and_then(Value::as_array);
    let has_action = |a: &str| granted.is_some_and(|g| g.iter().any(|x| x.as_str() == Some(a)));
    if !rule.actions.iter().all(|a| has_action(a)) {
        return Err((0, DenyReason::ConsentPermissionMissing));
    }
    // RFC 9396 §2.2 `locations`: a detail naming locations is only good at those.
    if rule.locations
        && let Some(locs) = detail.get("locations")
    {
        let here = locs.as_array().is_some_and(|l| {
            l.iter().any(|x| {
                x.as_str()
                    .is_some_and(|s| same_origin(s, ctx.public_origin))
            })
        });
        if !here {
            return Err((1, DenyReason::ConsentResourceMismatch));
        }
    }
    if let Some(src) = &rule.identifier {
        let id = detail.get("identifier").and_then(Value::as_str);
        if !matches!((id, request_value(src, ctx)), (Some(i), Some(v)) if !v.is_empty() && i == v) {
            return Err((2, DenyReason::ConsentResourceMismatch));
        }
    }
    // `accounts` entries are matched as strings; object entries (`{"iban": …}`) name accounts by
    // scheme-specific fields that are not path identifiers, so they never match a parameter.
    if let Some(src) = &rule.accounts {
        let accounts = detail.get("accounts").and_then(Value::as_array);
        let covered = match (accounts, request_value(src, ctx)) {
            (Some(list), Some(v)) if !v.is_empty() => list.iter().any(|a| a.as_str() == Some(&*v)),
            _ => false,
        };
        if !covered {
            return Err((3, DenyReason::ConsentResourceMismatch));
        }
    }
    for (body_ptr, detail_ptr) in &rule.match_body {
        let requested = ctx.body.and_then(|b| body_ptr.resolve(b));
        let approved = detail_ptr.resolve(item);
        if !matches!((requested, approved), (Some(r), Some(a)) if exact_eq(r, a)) {
            return Err((4, DenyReason::ConsentBodyMismatch));
        }
    }
    Ok(())
}

/// A disallowed status, named for what it means to the customer.
fn status_reason(status: &str) -> DenyReason {
    if contains_ignore_case(status, "revoked") || contains_ignore_case(status, "terminated") {
        DenyReason::ConsentRevoked
    } else if status.eq_ignore_ascii_case("expired") {
        DenyReason::ConsentExpired
    } else {
        DenyReason::ConsentNotAuthorised
    }
}

fn contains_ignore_case(hay: &str, needle: &str) -> bool {
    hay.as_bytes()
        .windows(needle.len())
        .any(|w| w.eq_ignore_ascii_case(needle.as_bytes()))
}

/// The request value a rule binds to. A query parameter that is absent, repeated (which one
/// would the API use?) or not UTF-8 yields `None`, which never matches.
fn request_value<'c>(src: &ParamSource, ctx: &ConsentContext<'c>) -> Option<Cow<'c, str>> {
    match src {
        ParamSource::Path(name) => ctx
            .params
            .iter()
            .find(|(n, _)| *n == &**name)
            .map(|(_, v)| Cow::Borrowed(v.as_str())),
        ParamSource::Query(name) => {
            let mut found = None;
            for pair in ctx.query?.split('&') {
                let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                if form_decode(k)?.as_ref() != &**name {
                    continue;
                }
                if found.is_some() {
                    return None;
                }
                found = Some(form_decode(v)?);
            }
            found
        }
    }
}

/// `application/x-www-form-urlencoded` decoding of one query component (`+` is a space).
fn form_decode(s: &str) -> Option<Cow<'_, str>> {
    if s.contains('+') {
        let spaced = s.replace('+', " ");
        let decoded = percent_decode_str(&spaced).decode_utf8().ok()?.into_owned();
        return Some(Cow::Owned(decoded));
    }
    percent_decode_str(s).decode_utf8().ok()
}

/// Whether an RFC 9396 location is our origin: scheme and host compared case-insensitively,
/// default port implied, an empty or `/` path tolerated. Locations with a deeper path, a query
/// or user info do not match (v1 binds details to the origin, not to path prefixes).
fn same_origin(location: &str, origin: &str) -> bool {
    // Fast path: the AS wrote our canonical origin (the common case, no parsing).
    if location.strip_suffix('/').unwrap_or(location) == origin {
        return true;
    }
    let Ok(uri) = location.parse::<http::Uri>() else {
        return false;
    };
    let (Some(scheme), Some(auth)) = (uri.scheme_str(), uri.authority()) else {
        return false;
    };
    if !matches!(uri.path(), "" | "/") || uri.query().is_some() || auth.as_str().contains('@') {
        return false;
    }
    let scheme = scheme.to_ascii_lowercase();
    let port = match (scheme.as_str(), auth.port_u16()) {
        ("https", Some(443)) | ("http", Some(80)) | (_, None) => String::new(),
        (_, Some(p)) => format!(":{p}"),
    };
    let canonical = format!("{scheme}://{}{port}", auth.host().to_ascii_lowercase());
    canonical == origin
}

#[cfg(test)]
mod rar_tests;
#[cfg(test)]
mod tests;
