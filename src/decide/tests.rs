use std::sync::Arc;
use std::time::Duration;

use http::Method;

use super::*;
use crate::config::{IssuerSettings, KeySource};
use crate::policy::Mode;
use crate::token::Cnf;

const NOW: i64 = 1_800_000_000;
const JKT: &str = "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I";
// base64url of 32 bytes of 0x01
const X5T: &str = "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE";

fn issuer() -> Arc<IssuerSettings> {
    Arc::new(IssuerSettings {
        issuer: "https://as".into(),
        keys: KeySource::File("x".into()),
        algorithms: vec![],
        audiences: vec!["https://api".into()],
        max_token_lifetime: Duration::from_secs(600),
        clock_skew: Duration::from_secs(10),
        jwks_refresh: Duration::from_secs(300),
        jwks_min_refetch: Duration::from_secs(10),
        purpose_claim: "purpose".into(),
        introspection: None,
    })
}

fn token(edit: impl FnOnce(&mut VerifiedToken)) -> VerifiedToken {
    let mut t = VerifiedToken {
        issuer: issuer(),
        digest: [0; 32],
        sub: "psu-9".into(),
        client_id: "tpp-1".into(),
        jti: "j".into(),
        aud: vec!["https://api".into()],
        exp: NOW + 300,
        iat: NOW - 10,
        nbf: None,
        scopes: vec![Box::from("accounts"), Box::from("openid")].into(),
        cnf: Cnf {
            jkt: Some(JKT.into()),
            x5t_s256: None,
        },
        delegation: Ok(Default::default()),
        txn: None,
        extra: Default::default(),
    };
    edit(&mut t);
    t
}

fn route(binding: Binding, public: bool) -> Route {
    Route {
        api: Arc::from("accounts"),
        name: Arc::from("r"),
        method: Method::GET,
        template: "/accounts".into(),
        scopes: vec![Box::from("accounts")].into(),
        binding,
        public,
        audiences: None,
        mode: Mode::Enforce,
        delegation: None,
        purpose: None,
        assurance: None,
        consent: None,
        signatures: Default::default(),
    }
}

fn facts<'a>(t: TokenFact<'a>, scheme: AuthScheme, dpop: DpopFact<'a>) -> Facts<'a> {
    Facts {
        now: NOW,
        scheme,
        token: t,
        dpop,
        client_cert_sha256: None,
        consent: Ok(()),
        consent_purpose: None,
    }
}

fn with_cert<'a>(f: Facts<'a>, cert: &'a [u8; 32]) -> Facts<'a> {
    Facts {
        client_cert_sha256: Some(cert),
        ..f
    }
}

#[test]
fn decision_table() {
    use AuthScheme::*;
    use DenyReason as R;
    use TokenFact::Verified as V;
    let dpop_ok = DpopFact::Verified { jkt: JKT };
    let none = DpopFact::Absent;
    let good = token(|_| {});
    let unbound = token(|t| t.cnf = Cnf::default());
    let mtls = token(|t| {
        t.cnf = Cnf {
            jkt: None,
            x5t_s256: Some(X5T.into()),
        }
    });
    let both = token(|t| {
        t.cnf = Cnf {
            jkt: Some(JKT.into()),
            x5t_s256: Some(X5T.into()),
        }
    });
    let expired = token(|t| t.exp = NOW - 11);
    let expired_in_skew = token(|t| t.exp = NOW - 5);
    let nbf_future = token(|t| t.nbf = Some(NOW + 60));
    let iat_future = token(|t| {
        t.iat = NOW + 60;
        t.exp = NOW + 120
    });
    let long = token(|t| t.exp = t.iat + 601);
    let other_aud = token(|t| t.aud = vec!["https://other".into()]);
    let no_scope = token(|t| t.scopes = vec![Box::from("payments")].into());
    let other_key = DpopFact::Verified {
        jkt: "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs",
    };
    let (cert_ok, cert_other) = ([1u8; 32], [2u8; 32]);
    let b_any = Binding::DpopOrMtls;
    let deny = Decision::Deny;
    let cases: Vec<(&str, Facts<'_>, Binding, Decision)> = vec![
        (
            "dpop bound, valid proof",
            facts(V(&good), Dpop, dpop_ok),
            b_any,
            Decision::Allow(BoundBy::Dpop),
        ),
        (
            "no token",
            facts(TokenFact::Missing, Bearer, none),
            b_any,
            deny(R::TokenMissing),
        ),
        (
            "rejected token",
            facts(TokenFact::Rejected(R::TokenSignatureInvalid), Bearer, none),
            b_any,
            deny(R::TokenSignatureInvalid),
        ),
        (
            "expired",
            facts(V(&expired), Dpop, dpop_ok),
            b_any,
            deny(R::TokenExpired),
        ),
        (
            "expired within skew",
            facts(V(&expired_in_skew), Dpop, dpop_ok),
            b_any,
            Decision::Allow(BoundBy::Dpop),
        ),
        (
            "nbf in future",
            facts(V(&nbf_future), Dpop, dpop_ok),
            b_any,
            deny(R::TokenNotYetValid),
        ),
        (
            "iat in future",
            facts(V(&iat_future), Dpop, dpop_ok),
            b_any,
            deny(R::TokenNotYetValid),
        ),
        (
            "lifetime too long",
            facts(V(&long), Dpop, dpop_ok),
            b_any,
            deny(R::TokenLifetimeExceeded),
        ),
        (
            "wrong audience",
            facts(V(&other_aud), Dpop, dpop_ok),
            b_any,
            deny(R::TokenAudienceMismatch),
        ),
        (
            "dpop-bound sent as bearer",
            facts(V(&good), Bearer, none),
            b_any,
            deny(R::BindingSchemeMismatch),
        ),
        (
            "dpop-bound on mtls-only route",
            facts(V(&good), Dpop, dpop_ok),
            Binding::Mtls,
            deny(R::BindingMissing),
        ),
        (
            "no proof",
            facts(V(&good), Dpop, none),
            Binding::Dpop,
            deny(R::DpopProofMissing),
        ),
        (
            "bad proof",
            facts(V(&good), Dpop, DpopFact::Rejected(R::DpopProofReplayed)),
            Binding::Dpop,
            deny(R::DpopProofReplayed),
        ),
        (
            "other key",
            facts(V(&good), Dpop, other_key),
            Binding::Dpop,
            deny(R::DpopKeyMismatch),
        ),
        (
            "both bindings",
            facts(V(&both), Dpop, dpop_ok),
            b_any,
            deny(R::BindingSchemeMismatch),
        ),
        (
            "unbound on bound route",
            facts(V(&unbound), Bearer, none),
            b_any,
            deny(R::BindingMissing),
        ),
        (
            "unbound allowed",
            facts(V(&unbound), Bearer, none),
            Binding::UnboundAllowed,
            Decision::Allow(BoundBy::Unbound),
        ),
        (
            "unbound with DPoP scheme",
            facts(V(&unbound), Dpop, dpop_ok),
            Binding::UnboundAllowed,
            deny(R::BindingSchemeMismatch),
        ),
        (
            "mtls without cert",
            facts(V(&mtls), Bearer, none),
            b_any,
            deny(R::MtlsCertificateMissing),
        ),
        (
            "mtls with DPoP scheme",
            facts(V(&mtls), Dpop, none),
            b_any,
            deny(R::BindingSchemeMismatch),
        ),
        (
            "mtls on dpop-only route",
            with_cert(facts(V(&mtls), Bearer, none), &cert_ok),
            Binding::Dpop,
            deny(R::BindingMissing),
        ),
        (
            "mtls matching cert",
            with_cert(facts(V(&mtls), Bearer, none), &cert_ok),
            Binding::Mtls,
            Decision::Allow(BoundBy::Mtls),
        ),
        (
            "mtls other cert",
            with_cert(facts(V(&mtls), Bearer, none), &cert_other),
            Binding::Mtls,
            deny(R::MtlsCertificateMismatch),
        ),
        (
            "scope missing",
            facts(V(&no_scope), Dpop, dpop_ok),
            b_any,
            deny(R::ScopeInsufficient),
        ),
    ];
    for (name, f, binding, want) in cases {
        assert_eq!(decide(&f, &route(binding, false)), want, "{name}");
    }
}

#[test]
fn public_routes_take_no_token() {
    let f = facts(TokenFact::Missing, AuthScheme::Bearer, DpopFact::Absent);
    let want = Decision::Allow(BoundBy::Public);
    assert_eq!(decide(&f, &route(Binding::DpopOrMtls, true)), want);
}

#[test]
fn policy_audience_overrides_issuer_audience() {
    let t = token(|t| t.aud = vec!["https://policy-aud".into()]);
    let f = facts(
        TokenFact::Verified(&t),
        AuthScheme::Dpop,
        DpopFact::Verified { jkt: JKT },
    );
    let mut r = route(Binding::Dpop, false);
    assert_eq!(
        decide(&f, &r),
        Decision::Deny(DenyReason::TokenAudienceMismatch)
    );
    r.audiences = Some(Arc::from(vec!["https://policy-aud".to_owned()]));
    assert_eq!(decide(&f, &r), Decision::Allow(BoundBy::Dpop));
}

/// At an internal hop the credential is a Txn-Token whose `aud` is the trust
/// domain (its settings' one audience); the policy's API audience must not be applied to it,
/// while a Txn-Token for another trust domain is still refused by `decide` itself.
#[test]
fn txn_tokens_are_checked_against_the_trust_domain_not_the_policy_audience() {
    let domain = Arc::new(IssuerSettings {
        audiences: vec!["bank.internal".into()],
        ..(*issuer()).clone()
    });
    let mut r = route(Binding::DpopOrMtls, false);
    r.audiences = Some(Arc::from(vec!["https://api.bank.example".to_owned()]));
    let cases: [(&str, &str, bool, Decision); 4] = [
        (
            "txn for our domain",
            "bank.internal",
            true,
            Decision::Allow(BoundBy::TxnToken),
        ),
        (
            "txn for another domain",
            "other.internal",
            true,
            Decision::Deny(DenyReason::TokenAudienceMismatch),
        ),
        (
            "txn carrying the API audience",
            "https://api.bank.example",
            true,
            Decision::Deny(DenyReason::TokenAudienceMismatch),
        ),
        (
            "access token with the trust domain",
            "bank.internal",
            false,
            Decision::Deny(DenyReason::TokenAudienceMismatch),
        ),
    ];
    for (name, aud, is_txn, want) in cases {
        let t = token(|t| {
            t.aud = vec![aud.into()];
            if is_txn {
                t.issuer = domain.clone();
                t.txn = Some("txn-1".into());
                t.cnf = Cnf::default();
            }
        });
        let f = facts(
            TokenFact::Verified(&t),
            AuthScheme::Bearer,
            DpopFact::Absent,
        );
        assert_eq!(decide(&f, &r), want, "{name}");
    }
}

/// Delegation, purpose and assurance as `decide` applies them (the rule engines have their own
/// tables; this checks the wiring and the order).
#[test]
fn grant_checks_in_decide() {
    let yaml = "api: a\ndefaults: {binding: dpop}\nroutes:\n  - name: r\n    method: GET\n    path: /r\n    \
                scopes: [accounts]\n    delegation: {max_depth: 1, actors: [\"spiffe://bank/agg/*\"]}\n    \
                purpose: [account-information]\n    assurance: {acr: [\"urn:bank:sca\"], max_auth_age: 5m}\n";
    let set =
        crate::policy::PolicySet::compile(&[("a.yaml".into(), yaml.to_owned())]).expect("policy");
    let route = set.lookup(&Method::GET, "/r").expect("route").route.clone();
    let ok = |t: &mut VerifiedToken| {
        t.extra
            .insert("purpose".into(), "account-information".into());
        t.extra.insert("acr".into(), "urn:bank:sca".into());
        t.extra.insert("auth_time".into(), (NOW - 60).into());
    };
    let act = |v: serde_json::Value| crate::delegation::parse(Some(&v));
    use DenyReason as R;
    type Edit = Box<dyn Fn(&mut VerifiedToken)>;
    let cases: Vec<(&str, Edit, Decision)> = vec![
        (
            "all satisfied",
            Box::new(|_| {}),
            Decision::Allow(BoundBy::Dpop),
        ),
        (
            "allowed actor",
            Box::new(move |t| {
                t.delegation = act(serde_json::json!({"sub": "spiffe://bank/agg/1"}))
            }),
            Decision::Allow(BoundBy::Dpop),
        ),
        (
            "actor not allowed",
            Box::new(move |t| t.delegation = act(serde_json::json!({"sub": "spiffe://evil/1"}))),
            Decision::Deny(R::DelegationActorNotAllowed),
        ),
        (
            "too deep",
            Box::new(move |t| {
                t.delegation =
                    act(serde_json::json!({"sub": "spiffe://bank/agg/1", "act": {"sub": "x"}}))
            }),
            Decision::Deny(R::DelegationDepthExceeded),
        ),
        (
            "malformed act",
            Box::new(move |t| t.delegation = act(serde_json::json!(["x"]))),
            Decision::Deny(R::DelegationMalformed),
        ),
        (
            "scope widened by a hop",
            Box::new(move |t| {
                t.delegation =
                    act(serde_json::json!({"sub": "spiffe://bank/agg/1", "scope": "openid"}))
            }),
            Decision::Deny(R::DelegationScopeEscalation),
        ),
        (
            "purpose missing",
            Box::new(|t| {
                t.extra.remove("purpose");
            }),
            Decision::Deny(R::PurposeNotAllowed),
        ),
        (
            "purpose not allowed",
            Box::new(|t| {
                t.extra.insert("purpose".into(), "marketing".into());
            }),
            Decision::Deny(R::PurposeNotAllowed),
        ),
        (
            "acr too weak",
            Box::new(|t| {
                t.extra.insert("acr".into(), "urn:bank:pwd".into());
            }),
            Decision::Deny(R::AssuranceInsufficient),
        ),
        (
            "authentication too old",
            Box::new(|t| {
                t.extra.insert("auth_time".into(), (NOW - 600).into());
            }),
            Decision::Deny(R::AssuranceInsufficient),
        ),
    ];
    for (name, edit, want) in cases {
        let t = token(|t| {
            ok(t);
            edit(t);
        });
        let f = facts(
            TokenFact::Verified(&t),
            AuthScheme::Dpop,
            DpopFact::Verified { jkt: JKT },
        );
        assert_eq!(decide(&f, &route), want, "{name}");
    }
    // A route without a delegation section refuses any chain.
    let plain = self::route(Binding::Dpop, false);
    let t = token(|t| t.delegation = act(serde_json::json!({"sub": "spiffe://bank/agg/1"})));
    let f = facts(
        TokenFact::Verified(&t),
        AuthScheme::Dpop,
        DpopFact::Verified { jkt: JKT },
    );
    assert_eq!(decide(&f, &plain), Decision::Deny(R::DelegationNotAllowed));
    // The consent's purpose, when there is one, is the one checked.
    let t = token(|t| {
        ok(t);
        t.extra.insert("purpose".into(), "marketing".into());
    });
    let f = Facts {
        consent_purpose: Some("account-information"),
        ..facts(
            TokenFact::Verified(&t),
            AuthScheme::Dpop,
            DpopFact::Verified { jkt: JKT },
        )
    };
    assert_eq!(decide(&f, &route), Decision::Allow(BoundBy::Dpop));
}

#[test]
fn only_checks_after_consent_leave_the_decision_open() {
    use DenyReason as R;
    let cases = [
        (Decision::Allow(BoundBy::Dpop), false),
        (Decision::Deny(R::TokenExpired), true),
        (Decision::Deny(R::BindingSchemeMismatch), true),
        (Decision::Deny(R::ScopeInsufficient), true),
        (Decision::Deny(R::PurposeNotAllowed), false),
        (Decision::Deny(R::DelegationActorNotAllowed), false),
        (Decision::Deny(R::AssuranceInsufficient), false),
    ];
    for (d, settled) in cases {
        assert_eq!(settled_before_consent(d), settled, "{d:?}");
    }
}
