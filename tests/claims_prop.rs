//! Property tests over *signed* claims. Random bytes never carry a valid signature, so the
//! structure properties in `parsers_prop.rs` stop before the claims are read. Here every access
//! token and DPoP proof is signed with a key the verifier trusts, so odd claims (missing, `null`,
//! wrong types, huge or fractional numbers, empty arrays, nested objects, deep `act` chains)
//! reach the claims parsers. For each input the outcome is compared with an oracle written from
//! RFC 9068 §2.2 and RFC 9449 §4.3: accepted exactly when the claims are well-typed and present,
//! refused with the reason the RFC step gives, and an accepted token or proof says exactly what
//! its signed claims say.

mod common;

use std::cell::Cell;
use std::sync::Arc;

use common::*;
use fapi_guard::dpop::{DpopSettings, ProofRequest, verify_proof};
use fapi_guard::reason::DenyReason;
use fapi_guard::token::{TokenFailure, TokenVerifier, digest};
use proptest::prelude::*;
use serde_json::{Map, Value, json};

const NOW: i64 = 1_800_000_000;

/// A JSON value of any type, biased towards what parsers stumble on.
fn odd_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
        prop_oneof![
            Just(0.5),
            Just(-1.5),
            Just(1e15),
            Just(1e300),
            Just(1_800_000_000.25),
            Just(-0.0),
        ]
        .prop_map(|f| json!(f)),
        prop_oneof![
            Just(String::new()),
            "[a-z ]{0,12}",
            "\\PC{0,6}",
            Just("x".repeat(3000)),
            Just("1800000000".to_owned()),
        ]
        .prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec(("[a-z]{1,4}", inner), 0..4)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

/// A well-formed claim (`mutated` removes or breaks some).
fn claim(good: impl Strategy<Value = Value>) -> impl Strategy<Value = Option<Value>> {
    good.prop_map(Some)
}

/// `claims` with up to three of `names` removed or replaced by an odd value: a third of the
/// cases keep every claim as generated, the rest break one to three of them.
fn mutated(
    claims: impl Strategy<Value = Map<String, Value>>,
    names: &'static [&'static str],
) -> impl Strategy<Value = Map<String, Value>> {
    (
        claims,
        prop_oneof![
            1 => Just(Vec::new()),
            2 => prop::collection::vec((0..names.len(), proptest::option::of(odd_value())), 1..4),
        ],
    )
        .prop_map(move |(mut m, edits)| {
            for (i, v) in edits {
                match v {
                    None => m.remove(names[i]),
                    Some(v) => m.insert(names[i].to_owned(), v),
                };
            }
            m
        })
}

/// An `act` chain (RFC 8693 §4.1), well-formed or with an odd level anywhere.
fn act() -> impl Strategy<Value = Option<Value>> {
    let level = prop_oneof![
        4 => ("[a-z]{1,6}", proptest::option::of("[a-z]{1,6}"))
            .prop_map(|(sub, client_id)| {
                let mut m = Map::new();
                m.insert("sub".into(), json!(sub));
                if let Some(c) = client_id {
                    m.insert("client_id".into(), json!(c));
                }
                m
            }),
        1 => odd_value().prop_map(|v| {
            let mut m = Map::new();
            m.insert("sub".into(), v);
            m
        }),
    ];
    prop_oneof![
        2 => Just(None),
        3 => prop::collection::vec(level, 1..20).prop_map(|levels| {
            let mut chain: Option<Value> = None;
            for mut l in levels.into_iter().rev() {
                if let Some(inner) = chain {
                    l.insert("act".into(), inner);
                }
                chain = Some(Value::Object(l));
            }
            chain
        }),
        1 => odd_value().prop_map(Some),
    ]
}

const TOKEN_CLAIMS: &[&str] = &[
    "iss",
    "sub",
    "aud",
    "exp",
    "iat",
    "nbf",
    "jti",
    "client_id",
    "scope",
    "cnf",
    "act",
];

fn access_token_claims() -> impl Strategy<Value = Map<String, Value>> {
    let claims = (
        prop_oneof![
            8 => Just(Some(json!(ISSUER))),
            1 => Just(Some(json!("https://other-issuer.example"))),
        ],
        claim("[a-z0-9-]{0,10}".prop_map(|s| json!(s))),
        claim(prop_oneof![
            Just(json!(AUDIENCE)),
            Just(json!([AUDIENCE, "https://other.example"])),
            Just(json!([])),
        ]),
        claim(prop_oneof![
            (-10_000i64..10_000).prop_map(|d| json!(NOW + d)),
            Just(json!(1_800_000_300.75)),
        ]),
        claim((-10_000i64..10_000).prop_map(|d| json!(NOW + d))),
        claim((-10_000i64..10_000).prop_map(|d| json!(NOW + d))),
        claim("[a-z0-9-]{1,10}".prop_map(|s| json!(s))),
        claim("[a-z0-9-]{0,10}".prop_map(|s| json!(s))),
        claim("[a-z ]{0,20}".prop_map(|s| json!(s))),
        claim(prop_oneof![
            Just(json!({"jkt": "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"})),
            Just(json!({"x5t#S256": "bwcK0esc3ACC3DB2Y5_lESsXE8o9ltc05O89jdN-dg2"})),
            Just(json!({})),
        ]),
        act(),
    )
        .prop_map(
            |(iss, sub, aud, exp, iat, nbf, jti, client_id, scope, cnf, act)| {
                let values = [
                    iss, sub, aud, exp, iat, nbf, jti, client_id, scope, cnf, act,
                ];
                TOKEN_CLAIMS
                    .iter()
                    .zip(values)
                    .filter_map(|(n, v)| Some(((*n).to_owned(), v?)))
                    .collect()
            },
        );
    mutated(claims, TOKEN_CLAIMS)
}

// ------------------------------------------------------------------ the oracle, token side

/// RFC 7519 §2 NumericDate as the proxy reads it: an integer, or a finite number below 10^15
/// (floored). `None`: not one.
fn numeric_date(v: &Value) -> Option<i64> {
    let n = v.as_number()?;
    if let Some(i) = n.as_i64() {
        return Some(i);
    }
    let f = n.as_f64()?;
    (f.is_finite() && f.abs() < 1e15).then(|| f.floor() as i64)
}

fn string_or_null(v: Option<&Value>) -> bool {
    matches!(v, None | Some(Value::Null | Value::String(_)))
}

/// What verification must answer for these claims (header and signature are valid) in a token
/// of `len` bytes.
fn expected_token(c: &Map<String, Value>, len: usize) -> Result<(), DenyReason> {
    let malformed = Err(DenyReason::TokenMalformed);
    // The verifier's size cap (12 KiB, `token_malformed` in docs/reference.md) comes first.
    if len > 12 * 1024 {
        return malformed;
    }
    let date_ok = |name: &str| match c.get(name) {
        None | Some(Value::Null) => true,
        Some(v) => numeric_date(v).is_some(),
    };
    let aud_typed = match c.get("aud") {
        None | Some(Value::Null | Value::String(_)) => true,
        Some(Value::Array(a)) => a.iter().all(Value::is_string),
        Some(_) => false,
    };
    // RFC 7800 §3.1: `cnf` is an object; its members we read are strings.
    let cnf_typed = match c.get("cnf") {
        None | Some(Value::Null) => true,
        Some(Value::Object(m)) => string_or_null(m.get("jkt")) && string_or_null(m.get("x5t#S256")),
        Some(_) => false,
    };
    // Step one: the claims set must parse into its types at all.
    let typed = ["iss", "sub", "jti", "client_id", "scope"]
        .iter()
        .all(|n| string_or_null(c.get(*n)))
        && aud_typed
        && cnf_typed
        && ["exp", "iat", "nbf"].iter().all(|n| date_ok(n));
    if !typed {
        return malformed;
    }
    match c.get("iss").and_then(Value::as_str) {
        None => return malformed,
        Some(ISSUER) => {}
        Some(_) => return Err(DenyReason::TokenIssuerUnknown),
    }
    // RFC 9068 §2.2: required claims.
    let present = |n: &str| c.get(n).is_some_and(|v| !v.is_null());
    let aud_nonempty = !matches!(c.get("aud"), Some(Value::Array(a)) if a.is_empty());
    let required = ["sub", "client_id", "jti", "aud", "exp", "iat"]
        .iter()
        .all(|n| present(n));
    if required && aud_nonempty {
        Ok(())
    } else {
        malformed
    }
}

/// The `sub`s of a well-formed `act` chain, outermost first; `None` when it is malformed.
fn expected_actors(act: Option<&Value>) -> Option<Vec<String>> {
    let mut subs = Vec::new();
    let mut next = act;
    while let Some(level) = next {
        let obj = level.as_object()?;
        let sub = obj.get("sub")?.as_str().filter(|s| !s.is_empty())?;
        for member in ["client_id", "iss", "scope"] {
            if !matches!(obj.get(member), None | Some(Value::String(_))) {
                return None;
            }
        }
        subs.push(sub.to_owned());
        next = obj.get("act");
    }
    Some(subs)
}

fn token_verifier(
    rt: &tokio::runtime::Runtime,
    key: &TestKey,
) -> (TokenVerifier, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("jwks.json"),
        json!({"keys": [key.jwks_entry()]}).to_string(),
    )
    .expect("jwks");
    let config = format!(
        "listen:\n  address: 127.0.0.1:0\n  public_url: https://api.test.example\n\
         upstream:\n  url: http://127.0.0.1:1\n\
         issuers:\n  - issuer: {ISSUER}\n    jwks_file: jwks.json\n    audiences: [{AUDIENCE}]\n\
         policies: [policy.yaml]\n"
    );
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, config).expect("config");
    let config = fapi_guard::config::Config::load(&path).expect("config loads");
    let verifier = TokenVerifier::new(
        &config.issuers,
        16,
        fapi_guard::http_client::HttpsClient::new().expect("http client"),
        fapi_guard::clock::Clock::system(),
        Arc::new(fapi_guard::metrics::Metrics::new()),
    );
    rt.block_on(verifier.issuers()[0].keys.refresh_now())
        .expect("keys from the file");
    (verifier, dir)
}

#[test]
fn signed_access_token_claims_are_read_exactly() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let key = TestKey::new("k1");
    let (verifier, _dir) = token_verifier(&rt, &key);
    let header = json!({"alg": "ES256", "typ": "at+jwt", "kid": "k1"});
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 768,
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    let (accepted, refused) = (Cell::new(0usize), Cell::new(0usize));
    runner
        .run(&access_token_claims(), |claims| {
            let token = key.sign_jws(&header, &Value::Object(claims.clone()));
            let got = rt.block_on(verifier.verify(&token, digest(&token)));
            let want = expected_token(&claims, token.len());
            match (&got, want) {
                (Ok(t), Ok(())) => {
                    accepted.set(accepted.get() + 1);
                    let s = |n: &str| claims[n].as_str().map(str::to_owned);
                    prop_assert_eq!(Some(t.sub.clone()), s("sub"));
                    prop_assert_eq!(Some(t.client_id.clone()), s("client_id"));
                    prop_assert_eq!(Some(t.jti.clone()), s("jti"));
                    prop_assert_eq!(Some(t.exp), numeric_date(&claims["exp"]));
                    prop_assert_eq!(Some(t.iat), numeric_date(&claims["iat"]));
                    prop_assert_eq!(t.nbf, claims.get("nbf").and_then(numeric_date));
                    let aud: Vec<String> = match &claims["aud"] {
                        Value::String(a) => vec![a.clone()],
                        other => serde_json::from_value(other.clone()).expect("typed"),
                    };
                    prop_assert_eq!(&t.aud, &aud);
                    let scope = claims.get("scope").and_then(Value::as_str).unwrap_or("");
                    let scopes: Vec<&str> = scope.split(' ').filter(|s| !s.is_empty()).collect();
                    prop_assert_eq!(t.scopes.iter().map(|s| &**s).collect::<Vec<_>>(), scopes);
                    let cnf = claims.get("cnf").and_then(Value::as_object);
                    let member = |n: &str| {
                        cnf.and_then(|m| m.get(n))
                            .and_then(Value::as_str)
                            .map(str::to_owned)
                    };
                    prop_assert_eq!(t.cnf.jkt.clone(), member("jkt"));
                    prop_assert_eq!(t.cnf.x5t_s256.clone(), member("x5t#S256"));
                    // The delegation chain: malformed `act` is kept as a deny reason, never
                    // dropped (a dropped chain would read as "no delegation").
                    let want_actors = expected_actors(claims.get("act"));
                    match (&t.delegation, want_actors) {
                        (Ok(chain), Some(subs)) => {
                            let got: Vec<&str> =
                                chain.actors.iter().map(|a| a.sub.as_str()).collect();
                            prop_assert_eq!(
                                got,
                                subs.iter().map(String::as_str).collect::<Vec<_>>()
                            );
                        }
                        (Err(r), Some(subs)) => {
                            prop_assert_eq!(*r, DenyReason::DelegationDepthExceeded);
                            prop_assert!(subs.len() > fapi_guard::delegation::MAX_CHAIN_DEPTH);
                        }
                        (Err(r), None) => prop_assert!(matches!(
                            r,
                            DenyReason::DelegationMalformed | DenyReason::DelegationDepthExceeded
                        )),
                        (Ok(chain), None) => {
                            prop_assert!(false, "malformed act read as {:?}", chain.actors)
                        }
                    }
                }
                (Err(TokenFailure::Deny(r)), Err(w)) => {
                    refused.set(refused.get() + 1);
                    prop_assert_eq!(*r, w);
                }
                (got, want) => prop_assert!(
                    false,
                    "got {:?}, want {:?}",
                    got.as_ref().map(|t| &t.sub),
                    want
                ),
            }
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{e}"));
    // Both outcomes must be common, or the property proves little.
    let (accepted, refused) = (accepted.get(), refused.get());
    assert!(
        accepted >= 50 && refused >= 100,
        "{accepted} accepted, {refused} refused"
    );
}

// ------------------------------------------------------------------ DPoP proofs

const HTU: &str = "https://api.bank.example/accounts/1";
/// The longest `jti` a proof may carry, and the longest proof (`dpop_proof_invalid` in
/// docs/reference.md).
const MAX_JTI_LEN: usize = 256;
const MAX_PROOF_LEN: usize = 8 * 1024;

const PROOF_CLAIMS: &[&str] = &["jti", "htm", "htu", "iat", "ath", "x"];

fn proof_claims() -> impl Strategy<Value = Map<String, Value>> {
    let claims = (
        claim(prop_oneof![
            "[A-Za-z0-9-]{1,40}".prop_map(|s| json!(s)),
            Just(json!("j".repeat(257))),
        ]),
        claim(prop_oneof![
            8 => Just(json!("GET")),
            1 => Just(json!("get")),
            1 => Just(json!("POST"))
        ]),
        claim(prop_oneof![
            6 => Just(json!(HTU)),
            2 => Just(json!("HTTPS://API.bank.example:443/accounts/1")),
            1 => Just(json!("https://api.bank.example/accounts/2")),
            1 => Just(json!("https://api.bank.example/accounts/1?x=1")),
            1 => Just(json!("not a uri")),
        ]),
        claim(prop_oneof![
            (-85i64..20).prop_map(|d| json!(NOW + d)),
            Just(json!(NOW as f64 + 0.5)),
        ]),
        claim(prop_oneof![
            6 => Just(json!("ath-of-the-token")),
            1 => Just(json!("wrong"))
        ]),
        proptest::option::of(odd_value()),
    )
        .prop_map(|(jti, htm, htu, iat, ath, extra)| {
            let mut m = Map::new();
            for (n, v) in [
                ("jti", jti),
                ("htm", htm),
                ("htu", htu),
                ("iat", iat),
                ("ath", ath),
                ("x", extra),
            ] {
                if let Some(v) = v {
                    m.insert(n.to_owned(), v);
                }
            }
            m
        });
    mutated(claims, PROOF_CLAIMS)
}

/// RFC 9449 §4.3, in the order of its steps, for a proof of `len` bytes whose header and
/// signature are valid.
fn expected_proof(
    c: &Map<String, Value>,
    len: usize,
    token: &str,
    s: &DpopSettings,
) -> Result<(), DenyReason> {
    use DenyReason::*;
    if len > MAX_PROOF_LEN {
        return Err(DpopProofInvalid);
    }
    // Step 3: the claims are present and typed (`jti` bounded).
    let jti = c
        .get("jti")
        .and_then(Value::as_str)
        .ok_or(DpopProofInvalid)?;
    if jti.is_empty() || jti.len() > MAX_JTI_LEN {
        return Err(DpopProofInvalid);
    }
    let htm = c
        .get("htm")
        .and_then(Value::as_str)
        .ok_or(DpopProofInvalid)?;
    let htu = c
        .get("htu")
        .and_then(Value::as_str)
        .ok_or(DpopProofInvalid)?;
    let iat = match c.get("iat") {
        Some(Value::Number(n)) => n
            .as_i64()
            .or_else(|| n.as_f64().filter(|f| f.is_finite()).map(|f| f as i64))
            .ok_or(DpopProofInvalid)?,
        _ => return Err(DpopProofInvalid),
    };
    // Step 7, 8: method exactly; URI after RFC 3986 §6.2.2/§6.2.3 normalization, ignoring
    // query and fragment.
    if htm != "GET" {
        return Err(DpopHtmMismatch);
    }
    let same_uri = [
        HTU,
        "HTTPS://API.bank.example:443/accounts/1",
        "https://api.bank.example/accounts/1?x=1",
    ]
    .contains(&htu);
    if !same_uri {
        return Err(DpopHtuMismatch);
    }
    // Step 10: the `iat` window.
    let max_age = s.proof_max_age.as_secs() as i64;
    let skew = s.clock_skew.as_secs() as i64;
    if iat < NOW - max_age - skew || iat > NOW + skew {
        return Err(DpopProofStale);
    }
    // Step 11: bound to the token.
    match c.get("ath") {
        Some(Value::String(a)) if a == &fapi_guard::dpop::ath(token) => Ok(()),
        Some(Value::String(_)) | None => Err(DpopAthMismatch),
        Some(_) => Err(DpopProofInvalid),
    }
}

#[test]
fn signed_dpop_proof_claims_are_read_exactly() {
    let key = DpopKey::new();
    let settings = DpopSettings::default();
    let token = "the-access-token";
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 768,
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    let (accepted, refused) = (Cell::new(0usize), Cell::new(0usize));
    runner
        .run(&proof_claims(), |mut claims| {
            // The good `ath` is computed here, from the token, independently of the claim text.
            if claims.get("ath") == Some(&json!("ath-of-the-token")) {
                claims.insert("ath".into(), json!(DpopKey::ath(token)));
            }
            let proof = key.proof("GET", HTU, token, |_, c| {
                *c = Value::Object(claims.clone());
            });
            let req = ProofRequest {
                proof: &proof,
                method: "GET",
                htu: HTU,
                access_token: Some(token),
                now: NOW,
            };
            let got = verify_proof(&req, &settings);
            let want = expected_proof(&claims, proof.len(), token, &settings);
            match (&got, want) {
                (Ok(p), Ok(())) => {
                    accepted.set(accepted.get() + 1);
                    prop_assert_eq!(&p.jkt, &key.jkt);
                    prop_assert_eq!(Some(p.jti.as_str()), claims["jti"].as_str());
                    let max_age = settings.proof_max_age.as_secs() as i64;
                    let skew = settings.clock_skew.as_secs() as i64;
                    prop_assert_eq!(p.replay_expires_at, p.iat + max_age + skew);
                }
                (Err(r), Err(w)) => {
                    refused.set(refused.get() + 1);
                    prop_assert_eq!(*r, w);
                }
                (got, want) => prop_assert!(
                    false,
                    "got {:?}, want {:?}",
                    got.as_ref().map(|p| p.iat),
                    want
                ),
            }
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{e}"));
    let (accepted, refused) = (accepted.get(), refused.get());
    assert!(
        accepted >= 30 && refused >= 100,
        "{accepted} accepted, {refused} refused"
    );
}
