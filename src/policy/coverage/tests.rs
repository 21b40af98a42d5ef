//! `reach` against `decide` itself. Every passing (`allow`) case of the shipped policies' tests
//! and of a fixture policy that uses every policy feature is perturbed one point at a time (a
//! claim, a record field, a header, a body field, a path segment removed or changed, delegation
//! levels and hop scopes added, the binding swapped), and each perturbed case runs through the
//! policy-test runner (the proxy's route table, consent verdict and `decide`). Then:
//!
//! - no perturbation yields a reason `reach` calls `Never` for the route it matched;
//! - every reason `reach` calls `Policy` is yielded by some perturbation of the route's cases.
//!
//! The perturbations know nothing about the policies, so a `reach` that forgot a reason (or
//! claimed one the route cannot produce) fails here.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde_json::{Map, Value, json};

use super::super::testing::{self, PUBLIC_URL, RawCase, read_file, run_case};
use super::super::{PolicySet, Route};
use super::{Reach, reach, reasons_for};
use crate::clock::Clock;
use crate::decide::Decision;
use crate::reason::DenyReason;

const P: &str = "perturbed";

/// Every single-point change of a JSON value: each member or element removed, each leaf
/// replaced (a string by `"perturbed"`, a number by 0, a boolean negated).
fn variants(v: &Value) -> Vec<Value> {
    let mut out = Vec::new();
    match v {
        Value::Object(m) => {
            for (k, child) in m {
                let mut without = m.clone();
                without.remove(k);
                out.push(Value::Object(without));
                for c in variants(child) {
                    let mut changed = m.clone();
                    changed.insert(k.clone(), c);
                    out.push(Value::Object(changed));
                }
            }
        }
        Value::Array(a) => {
            for (i, child) in a.iter().enumerate() {
                let mut without = a.clone();
                without.remove(i);
                out.push(Value::Array(without));
                for c in variants(child) {
                    let mut changed = a.clone();
                    changed[i] = c;
                    out.push(Value::Array(changed));
                }
            }
        }
        Value::String(_) => out.push(json!(P)),
        Value::Number(_) => out.push(json!(0)),
        Value::Bool(b) => out.push(json!(!b)),
        Value::Null => {}
    }
    out
}

/// The token changes beyond `variants`: claims added (an audience, RAR `locations`),
/// delegation levels and hop scopes added, the binding swapped.
fn token_additions(t: &Map<String, Value>) -> Vec<Map<String, Value>> {
    let mut out = Vec::new();
    let with = |k: &str, v: Value| {
        let mut m = t.clone();
        m.insert(k.to_owned(), v);
        m
    };
    out.push(with("aud", json!(P)));
    // RFC 9396 §2.2: a detail may name the resource servers it is for.
    if let Some(Value::Array(details)) = t.get("authorization_details") {
        for i in 0..details.len() {
            let mut d = details.clone();
            if d[i].get("locations").is_none() {
                d[i]["locations"] = json!([format!("https://{P}.example")]);
                out.push(with("authorization_details", Value::Array(d)));
            }
        }
    }
    out.push(with("cnf", json!({"jkt": "any"})));
    out.push(with("cnf", json!({"x5t#S256": "any"})));
    out.push(with("cnf", json!({"jkt": "any", "x5t#S256": "any"})));
    match t.get("act") {
        None => {
            out.push(with("act", json!({"sub": P})));
            out.push(with("act", json!({"sub": P, "act": {"sub": P}})));
        }
        Some(act) => {
            // One and two more levels at the innermost end; a hop scope at each level.
            for extra in [json!({"sub": P}), json!({"sub": P, "act": {"sub": P}})] {
                let mut a = act.clone();
                let mut cur = &mut a;
                while cur.get("act").is_some() {
                    cur = &mut cur["act"];
                }
                cur["act"] = extra;
                out.push(with("act", a));
            }
            let mut depth = 0;
            let mut probe = Some(act);
            while let Some(level) = probe {
                let mut a = act.clone();
                let mut cur = &mut a;
                for _ in 0..depth {
                    cur = &mut cur["act"];
                }
                cur["scope"] = json!(P);
                out.push(with("act", a));
                depth += 1;
                probe = level.get("act");
            }
        }
    }
    out
}

/// Every perturbation of one case.
fn perturbations(case: &RawCase) -> Vec<RawCase> {
    let mut out = Vec::new();
    let mut push = |f: &dyn Fn(&mut RawCase)| {
        let mut c = case.clone();
        f(&mut c);
        out.push(c);
    };
    // The token.
    push(&|c| c.token = None);
    if let Some(t) = &case.token {
        let mut tokens: Vec<Map<String, Value>> = variants(&Value::Object(t.clone()))
            .into_iter()
            .filter_map(|v| match v {
                Value::Object(m) => Some(m),
                _ => None,
            })
            .collect();
        tokens.extend(token_additions(t));
        for t in tokens {
            push(&|c| c.token = Some(t.clone()));
        }
    }
    // The consent records the consent service would return.
    for (id, rec) in &case.consents {
        let mut recs = variants(rec);
        for status in [
            "AwaitingAuthorisation",
            "Rejected",
            "Revoked",
            "revokedByPsu",
            "expired",
            "received",
        ] {
            let mut r = rec.clone();
            r["status"] = json!(status);
            recs.push(r);
        }
        let mut r = rec.clone();
        r["expires_at"] = json!("2000-01-01T00:00:00Z");
        recs.push(r);
        for r in recs {
            push(&|c| {
                c.consents.insert(id.clone(), r.clone());
            });
        }
        push(&|c| {
            c.consents.remove(id);
        });
    }
    // Headers: removed, changed, sent twice.
    for (k, v) in &case.request.headers {
        push(&|c| {
            c.request.headers.remove(k);
        });
        push(&|c| {
            c.request.headers.insert(k.clone(), P.into());
        });
        if k.to_ascii_lowercase() != *k {
            push(&|c| {
                c.request.headers.insert(k.to_ascii_lowercase(), v.clone());
            });
        }
    }
    // The body.
    if let Some(b) = &case.request.body {
        for b in variants(b) {
            push(&|c| c.request.body = Some(b.clone()));
        }
        push(&|c| c.request.body = None);
    }
    // Path segments and query parameters.
    let (path, query) = match case.request.path.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (case.request.path.as_str(), None),
    };
    let segments: Vec<&str> = path.split('/').collect();
    for i in 1..segments.len() {
        let mut s = segments.clone();
        s[i] = P;
        let p = s.join("/") + &query.map_or(String::new(), |q| format!("?{q}"));
        push(&|c| c.request.path = p.clone());
    }
    if let Some(q) = query {
        push(&|c| c.request.path = path.to_owned());
        let pairs: Vec<&str> = q.split('&').collect();
        for i in 0..pairs.len() {
            let mut changed = pairs.clone();
            let name = pairs[i].split('=').next().unwrap_or("");
            let replaced = format!("{name}={P}");
            changed[i] = &replaced;
            let p = format!("{path}?{}", changed.join("&"));
            push(&|c| c.request.path = p.clone());
        }
    }
    out
}

/// A policy using every feature `reach` looks at, and one passing case per route. Written here
/// rather than as a test file: `auth_time` must be recent.
const FIXTURE: &str = r#"
api: reach
defaults:
  scopes: [reach]
routes:
  - name: record-everything
    method: GET
    path: /accounts/{id}
    binding: dpop
    consent:
      claim: consent_id
      header: Consent-ID
      status: [Authorised, AwaitingAuthorisation]
      permissions: [ReadBalances]
      resource: {accounts: "query:account"}
    delegation:
      max_depth: 2
      actors: ["agg-*"]
      chain: [portal]
    purpose: [account-information]
    assurance: {acr: ["urn:sca"], max_auth_age: 5m}
  - name: rar-everything
    method: POST
    path: /payments/{pid}
    binding: mtls
    consent:
      authorization_details:
        type: payment
        actions: [initiate]
        locations: true
        identifier: "{pid}"
        accounts: "query:from"
        match_body: {/amount: /amount}
    delegation:
      max_depth: 1
      actors: ["*"]
      chain: [nobody]
  - name: unbound
    method: GET
    path: /open
    scopes: []
    binding: unbound_allowed
  - name: no-delegation
    method: DELETE
    path: /accounts/{id}
    delegation: {max_depth: 0}
  - name: status-only
    method: GET
    path: /consents
    consent: {claim: consent_id}
  - name: health
    method: GET
    path: /health
    public: true
"#;

fn fixture_cases() -> Vec<RawCase> {
    let now = Clock::system().now_unix();
    let cases = [
        json!({
            "name": "record-everything",
            "request": {"method": "GET", "path": "/accounts/acc-1?account=acc-1",
                        "headers": {"Consent-ID": "c-1"}},
            "token": {"scope": "reach", "client_id": "tpp", "sub": "psu", "cnf": {"jkt": "any"},
                      "consent_id": "c-1", "purpose": "account-information",
                      "acr": "urn:sca", "auth_time": now,
                      "act": {"sub": "agg-1", "act": {"sub": "portal"}}},
            "consents": {"c-1": {"status": "Authorised", "client_id": "tpp", "subject": "psu",
                                  "permissions": ["ReadBalances"], "accounts": ["acc-1"]}},
            "expect": "allow"
        }),
        json!({
            "name": "rar-everything",
            "request": {"method": "POST", "path": "/payments/pay-1?from=acc-1",
                        "body": {"amount": "10.00"}},
            "token": {"scope": "reach", "client_id": "tpp", "cnf": {"x5t#S256": "any"},
                      "act": {"sub": "anyone"},
                      "authorization_details": [{"type": "payment", "actions": ["initiate"],
                          "locations": [PUBLIC_URL], "identifier": "pay-1",
                          "accounts": ["acc-1"], "amount": "10.00"}]},
            "expect": "allow"
        }),
        json!({
            "name": "unbound",
            "request": {"method": "GET", "path": "/open"},
            "token": {"client_id": "tpp"},
            "expect": "allow"
        }),
        json!({
            "name": "no-delegation",
            "request": {"method": "DELETE", "path": "/accounts/acc-1"},
            "token": {"scope": "reach", "client_id": "tpp", "cnf": {"jkt": "any"}},
            "expect": "allow"
        }),
        json!({
            "name": "status-only",
            "request": {"method": "GET", "path": "/consents"},
            "token": {"scope": "reach", "client_id": "tpp", "cnf": {"jkt": "any"},
                      "consent_id": "c-2"},
            "consents": {"c-2": {"status": "Authorised", "client_id": "tpp"}},
            "expect": "allow"
        }),
        json!({
            "name": "health",
            "request": {"method": "GET", "path": "/health"},
            "expect": "allow"
        }),
    ];
    cases
        .into_iter()
        .map(|c| serde_json::from_value(c).expect("fixture case"))
        .collect()
}

/// (policies, public URL, passing cases) for the shipped test files and the fixture.
fn suites() -> Vec<(String, PolicySet, String, Vec<RawCase>)> {
    let mut out = Vec::new();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
    let files = testing::test_files(&[dir]);
    assert!(!files.is_empty());
    for f in files {
        let (raw, expected) = read_file(&f).unwrap_or_else(|e| panic!("{e:?}"));
        let set = PolicySet::load(&[crate::config::resolve(&f, &raw.policy)])
            .unwrap_or_else(|e| panic!("{e:?}"));
        let allow: Vec<RawCase> = raw
            .cases
            .into_iter()
            .zip(expected)
            .filter(|(_, e)| e == "allow")
            .map(|(c, _)| c)
            .collect();
        let url = raw.public_url.unwrap_or_else(|| PUBLIC_URL.to_owned());
        out.push((f.display().to_string(), set, url, allow));
    }
    let set = PolicySet::compile(&[(PathBuf::from("reach.yaml"), FIXTURE.to_owned())])
        .unwrap_or_else(|e| panic!("{e:?}"));
    out.push((
        "fixture".into(),
        set,
        PUBLIC_URL.to_owned(),
        fixture_cases(),
    ));
    out
}

fn key(r: &Route) -> String {
    format!("{}/{}", r.api, r.name)
}

#[test]
fn reach_agrees_with_decide() {
    let mut produced: BTreeMap<String, BTreeSet<&str>> = BTreeMap::new();
    let mut runs = 0usize;
    for (name, set, url, cases) in suites() {
        for case in &cases {
            let (d, route) = run_case(&set, case, &url);
            assert!(
                matches!(d, Decision::Allow(_)),
                "{name}: {}: the base case must pass, got {d:?}",
                case.name
            );
            let route = route.expect("matched");
            produced.entry(key(&route)).or_default();
        }
        for r in set.routes() {
            assert!(
                r.public || produced.contains_key(&key(r)),
                "{name}: route {} has no passing case to perturb",
                key(r)
            );
        }
        for case in &cases {
            for p in perturbations(case) {
                runs += 1;
                let (d, route) = run_case(&set, &p, &url);
                let (Decision::Deny(reason), Some(route)) = (d, route) else {
                    continue;
                };
                assert_ne!(
                    reach(&route, reason),
                    Reach::Never,
                    "{name}: route {} produced {reason}, which reach calls impossible \
                     (perturbed case {p:?})",
                    key(&route)
                );
                produced
                    .entry(key(&route))
                    .or_default()
                    .insert(reason.as_str());
            }
        }
        for r in set.routes() {
            let got = &produced[&key(r)];
            let missing: Vec<&str> = reasons_for(r)
                .into_iter()
                .map(DenyReason::as_str)
                .filter(|x| !got.contains(x))
                .collect();
            assert!(
                missing.is_empty(),
                "{name}: route {}: reach counts {missing:?}, which no perturbation produced \
                 (produced: {got:?})",
                key(r)
            );
        }
    }
    assert!(runs > 500, "{runs} perturbed cases");
}

#[test]
fn reasons_follow_the_compiled_route() {
    let set = PolicySet::compile(&[(PathBuf::from("reach.yaml"), FIXTURE.to_owned())])
        .unwrap_or_else(|e| panic!("{e:?}"));
    let reasons = |name: &str| -> Vec<&'static str> {
        let r = set
            .routes()
            .iter()
            .find(|r| &*r.name == name)
            .expect("route");
        reasons_for(r).into_iter().map(DenyReason::as_str).collect()
    };
    assert_eq!(
        reasons("record-everything"),
        [
            "token_missing",
            "binding_missing",
            "scope_insufficient",
            "consent_missing",
            "consent_not_authorised",
            "consent_expired",
            "consent_revoked",
            "consent_client_mismatch",
            "consent_permission_missing",
            "consent_resource_mismatch",
            "delegation_depth_exceeded",
            "delegation_actor_not_allowed",
            "delegation_chain_not_allowed",
            "delegation_scope_escalation",
            "purpose_not_allowed",
            "assurance_insufficient",
        ]
    );
    // `actors: ["*"]` refuses no actor, and one level leaves no prior hop for `chain`.
    assert_eq!(
        reasons("rar-everything"),
        [
            "token_missing",
            "binding_missing",
            "scope_insufficient",
            "consent_missing",
            "consent_permission_missing",
            "consent_resource_mismatch",
            "consent_body_mismatch",
            "delegation_depth_exceeded",
            "delegation_scope_escalation",
        ]
    );
    assert_eq!(
        reasons("unbound"),
        ["token_missing", "delegation_not_allowed"]
    );
    assert_eq!(
        reasons("no-delegation"),
        [
            "token_missing",
            "binding_missing",
            "scope_insufficient",
            "delegation_not_allowed"
        ]
    );
    assert!(reasons("health").is_empty());
}
