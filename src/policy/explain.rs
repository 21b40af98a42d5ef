//! `fapi-guard policy explain`: why a request is decided as it is. The request runs through the
//! same path normalization, route table, consent verdict (`consent::judge`) and `decide` as the
//! proxy (via the policy test runner), traced check by check; the answer is mapped to status and
//! challenge by the proxy's own `response::deny`.
//!
//! The claims are taken as a verified token (signature, issuer and key checks are the proxy's
//! job and need keys); claims the file leaves out get harmless defaults (valid now, the
//! policy's audience), as in policy tests.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use super::testing::{Expect, Presented, RawCase, RawRequest, decide_case};
use super::{PolicySet, Route};
use crate::consent::ConsentRule;
use crate::decide::{AuthScheme, Check, Decision, Trace};
use crate::path;
use crate::reason::DenyReason;
use crate::response::{self, ChallengeContext};

/// What `explain` needs; files are read by the caller.
pub struct Input {
    /// `METHOD /path?query`.
    pub request: String,
    pub claims: Option<Map<String, Value>>,
    pub presented: Option<Presented>,
    /// The record the consent service would return.
    pub consent: Option<Value>,
    pub body: Option<Value>,
    pub headers: BTreeMap<String, String>,
}

/// Reads the JSON files named on the command line.
pub fn read_json(p: &Path) -> Result<Value, String> {
    let s = std::fs::read_to_string(p).map_err(|e| format!("{}: cannot read: {e}", p.display()))?;
    serde_json::from_str(&s).map_err(|e| format!("{}: not JSON: {e}", p.display()))
}

#[derive(Default)]
struct Steps(Vec<(Check, Result<(), DenyReason>)>);

impl Trace for Steps {
    fn step(&mut self, check: Check, result: Result<(), DenyReason>) {
        // `decide` runs again once the consent verdict is in: keep the last run only.
        if check == Check::Token {
            self.0.clear();
        }
        self.0.push((check, result));
    }
}

/// The explanation, one line per check, and the decision.
pub fn explain(policies: &[PathBuf], input: &Input) -> Result<String, String> {
    let set = PolicySet::load(policies).map_err(|errs| {
        errs.iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    })?;
    let (method, target) = input
        .request
        .split_once(' ')
        .ok_or("--request must be `METHOD /path`, e.g. 'GET /accounts/acc-1'")?;
    let mut out = String::new();
    let _ = writeln!(out, "request     {method} {target}");
    let (raw_path, query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (target, None),
    };
    let Ok(m) = http::Method::from_bytes(method.as_bytes()) else {
        return Ok(finish(
            out,
            None,
            Decision::Deny(DenyReason::RequestMalformed),
            None,
        ));
    };
    let norm = match path::normalize(raw_path) {
        Ok(n) => n,
        Err(e) => {
            let _ = writeln!(
                out,
                "path        FAIL  ambiguous path ({e:?}): refused before matching"
            );
            return Ok(finish(
                out,
                None,
                Decision::Deny(DenyReason::RequestMalformed),
                None,
            ));
        }
    };
    let Some(found) = set.lookup(&m, &norm) else {
        let _ = writeln!(out, "route       FAIL  no route for {method} {norm}");
        return Ok(finish(
            out,
            None,
            Decision::Deny(DenyReason::RouteNotFound),
            None,
        ));
    };
    let route = found.route;
    let params: Vec<String> = found
        .params
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let _ = writeln!(
        out,
        "route       pass  {}/{} ({} {}){}{}",
        route.api,
        route.name,
        route.method,
        route.template,
        if params.is_empty() { "" } else { " with " },
        params.join(", ")
    );
    if route.public {
        let _ = writeln!(
            out,
            "public      pass  no token checks (the request is still audited)"
        );
        return Ok(finish(
            out,
            Some(route),
            Decision::Allow(crate::decide::BoundBy::Public),
            None,
        ));
    }
    let mut consents = BTreeMap::new();
    if let Some(rec) = &input.consent {
        for id in consent_ids(route, input, rec) {
            consents.insert(id, rec.clone());
        }
    }
    let case = RawCase {
        name: "explain".into(),
        request: RawRequest {
            method: method.into(),
            path: target.into(),
            headers: input.headers.clone(),
            body: input.body.clone(),
        },
        token: input.claims.clone(),
        consents,
        expect: Expect::Word("allow".into()),
    };
    let mut steps = Steps::default();
    let decision = decide_case(
        route,
        &found.params,
        &case,
        query,
        "https://api.bank.example",
        input.presented,
        &mut steps,
    );
    for check in Check::ALL {
        let result = steps.0.iter().find(|(c, _)| *c == check).map(|(_, r)| *r);
        let verdict = match result {
            Some(Ok(())) => "pass",
            Some(Err(_)) => "FAIL",
            None => "-   ",
        };
        let detail = match result {
            None => "not reached".to_owned(),
            Some(r) => describe(check, route, input, r.err()),
        };
        let _ = writeln!(out, "{:<11} {verdict}  {detail}", check.as_str());
    }
    let scheme = match input.presented {
        Some(Presented::Dpop) => Some(AuthScheme::Dpop),
        Some(_) => Some(AuthScheme::Bearer),
        None => input
            .claims
            .as_ref()
            .map(|c| match c.get("cnf").and_then(|c| c.get("jkt")) {
                Some(_) => AuthScheme::Dpop,
                None => AuthScheme::Bearer,
            }),
    };
    Ok(finish(out, Some(route), decision, scheme))
}

/// The consent ids the rule would look up: the claim's and the header's value, else the
/// record's own `id`.
fn consent_ids(route: &Route, input: &Input, rec: &Value) -> Vec<String> {
    let mut ids = Vec::new();
    if let Some(ConsentRule::Record(r)) = &route.consent {
        if let (Some(claim), Some(c)) = (&r.claim, &input.claims)
            && let Some(v) = c.get(&**claim).and_then(Value::as_str)
        {
            ids.push(v.to_owned());
        }
        if let Some(h) = &r.header {
            ids.extend(
                input
                    .headers
                    .iter()
                    .filter(|(k, _)| k.eq_ignore_ascii_case(h.as_str()))
                    .map(|(_, v)| v.clone()),
            );
        }
    }
    if let Some(id) = rec.get("id").and_then(Value::as_str) {
        ids.push(id.to_owned());
    }
    ids
}

/// The values a check compared.
fn describe(check: Check, route: &Route, input: &Input, failed: Option<DenyReason>) -> String {
    let claim = |k: &str| {
        input
            .claims
            .as_ref()
            .and_then(|c| c.get(k))
            .map_or("(none)".to_owned(), |v| match v {
                Value::String(s) => s.clone(),
                v => v.to_string(),
            })
    };
    let mut s = match check {
        Check::Token => match &input.claims {
            None => "no token".to_owned(),
            Some(c) => format!(
                "claims taken as verified; aud {} accepted {}",
                if c.contains_key("aud") {
                    claim("aud")
                } else {
                    "(the policy's audience)".to_owned()
                },
                route
                    .audiences
                    .as_deref()
                    .map_or("(issuer's audiences)".to_owned(), |a| format!("{a:?}"))
            ),
        },
        Check::Binding => format!(
            "route requires {}; token cnf {}; presented {}",
            match route.binding {
                super::Binding::Dpop => "dpop",
                super::Binding::Mtls => "mtls",
                super::Binding::DpopOrMtls => "dpop_or_mtls",
                super::Binding::UnboundAllowed => "unbound_allowed",
            },
            claim("cnf"),
            match input.presented {
                None => "as cnf implies",
                Some(Presented::Dpop) => "DPoP with proof",
                Some(Presented::Mtls) => "Bearer over mTLS",
                Some(Presented::None) => "plain Bearer",
            }
        ),
        Check::Scope => format!(
            "route requires {:?}; token scope {:?}",
            route.scopes,
            claim("scope")
        ),
        Check::Consent => match &route.consent {
            None => "no consent rule".to_owned(),
            Some(ConsentRule::Record(r)) => format!(
                "record rule (status {:?}, permissions {:?}); record {}",
                r.status,
                r.permissions,
                input
                    .consent
                    .as_ref()
                    .map_or("(none)".to_owned(), |c| c.to_string())
            ),
            Some(ConsentRule::Rar(r)) => format!(
                "authorization_details of type {:?}; token has {}",
                r.detail_type,
                claim("authorization_details")
            ),
        },
        Check::Delegation => match &route.delegation {
            None => format!("no delegation allowed; token act {}", claim("act")),
            Some(d) => format!(
                "max_depth {}, actors {:?}; token act {}",
                d.max_depth,
                d.actors.iter().map(pattern).collect::<Vec<_>>(),
                claim("act")
            ),
        },
        Check::Purpose => match &route.purpose {
            None => "no purpose rule".to_owned(),
            Some(p) => format!("allowed {p:?}; token purpose {}", claim("purpose")),
        },
        Check::Assurance => match &route.assurance {
            None => "no assurance rule".to_owned(),
            Some(a) => format!(
                "acr {:?}, max_age {:?}; token acr {}, auth_time {}",
                a.acr_values(),
                a.max_age(),
                claim("acr"),
                claim("auth_time")
            ),
        },
    };
    if let Some(r) = failed {
        let _ = write!(s, " → {r}");
    }
    s
}

/// A delegation pattern as the policy wrote it.
fn pattern(p: &crate::delegation::Pattern) -> String {
    match p {
        crate::delegation::Pattern::Exact(s) => s.to_string(),
        crate::delegation::Pattern::Prefix(s) => format!("{s}*"),
    }
}

/// The decision line, with the response the proxy would send (`response::deny`).
fn finish(
    mut out: String,
    route: Option<&std::sync::Arc<Route>>,
    decision: Decision,
    scheme: Option<AuthScheme>,
) -> String {
    match decision {
        Decision::Allow(b) => {
            let _ = writeln!(out, "decision    allow (bound by {})", b.as_str());
        }
        Decision::Deny(reason) => {
            let scope = route.map(|r| r.scopes.join(" "));
            let assurance = route.and_then(|r| r.assurance.as_ref());
            let resp = response::deny(
                reason,
                "explain",
                &ChallengeContext {
                    scheme,
                    dpop_algs: "PS256 ES256 EdDSA",
                    scope: scope.as_deref(),
                    dpop_nonce: None,
                    acr_values: assurance.and_then(|a| a.acr_values()),
                    max_age: assurance.and_then(|a| a.max_age()),
                },
            );
            let _ = writeln!(out, "decision    deny {reason} → {}", resp.status());
            for v in resp.headers().get_all(http::header::WWW_AUTHENTICATE) {
                let _ = writeln!(
                    out,
                    "            WWW-Authenticate: {}",
                    String::from_utf8_lossy(v.as_bytes())
                );
            }
            if let Some(r) = route
                && r.mode == super::Mode::Audit
            {
                let _ = writeln!(
                    out,
                    "            (mode: audit — the proxy would forward it and record \"enforced\": false)"
                );
            }
        }
    }
    out
}
