use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::*;

const AGG: &str = "spiffe://bank.example/ns/aggregators/sa/agg";
const FRAUD: &str = "spiffe://bank.example/ns/fraud/sa/engine";

fn rule(max_depth: usize, actors: &[&str], chain: Option<&[&str]>) -> DelegationRule {
    RawDelegation {
        max_depth,
        actors: actors.iter().map(|s| s.to_string()).collect(),
        chain: chain.map(|c| c.iter().map(|s| s.to_string()).collect()),
    }
    .compile()
    .expect("valid rule")
}

fn aggregators() -> DelegationRule {
    rule(
        2,
        &["spiffe://bank.example/ns/aggregators/*"],
        Some(&["spiffe://bank.example/*"]),
    )
}

/// The whole path the lead wires: parse, route rule, attenuation.
fn run(r: Option<&DelegationRule>, act: Option<Value>, scopes: &[&str]) -> Result<(), DenyReason> {
    let chain = parse(act.as_ref())?;
    check(r, &chain.actors)?;
    check_attenuation(scopes, &chain.scopes)
}

#[test]
fn chains() {
    let agg = aggregators();
    let one = rule(1, &[AGG], None);
    let no_chain = rule(2, &[AGG], None);
    let zero = RawDelegation {
        max_depth: 0,
        actors: vec![],
        chain: None,
    }
    .compile()
    .expect("depth 0");
    type Case<'a> = (
        &'static str,
        Option<&'a DelegationRule>,
        Option<Value>,
        &'static [&'static str],
        Option<DenyReason>,
    );
    let cases: Vec<Case> = vec![
        ("none, no rule", None, None, &["accounts"], None),
        ("none, rule", Some(&agg), None, &["accounts"], None),
        (
            "depth 1 allowed",
            Some(&agg),
            Some(json!({"sub": AGG, "client_id": "agg-1"})),
            &["accounts"],
            None,
        ),
        (
            "depth 2 within chain",
            Some(&agg),
            Some(json!({"sub": AGG, "act": {"sub": FRAUD}})),
            &["accounts"],
            None,
        ),
        (
            "act on a route without delegation",
            None,
            Some(json!({"sub": AGG})),
            &[],
            Some(DenyReason::DelegationNotAllowed),
        ),
        (
            "act on a route with max_depth 0",
            Some(&zero),
            Some(json!({"sub": AGG})),
            &[],
            Some(DenyReason::DelegationNotAllowed),
        ),
        (
            "depth exceeding max_depth",
            Some(&one),
            Some(json!({"sub": AGG, "act": {"sub": FRAUD}})),
            &[],
            Some(DenyReason::DelegationDepthExceeded),
        ),
        (
            "actor not allowed",
            Some(&agg),
            Some(json!({"sub": FRAUD})),
            &[],
            Some(DenyReason::DelegationActorNotAllowed),
        ),
        (
            "actor glob needs a suffix",
            Some(&agg),
            Some(json!({"sub": "spiffe://bank.example/ns/aggregators/"})),
            &[],
            Some(DenyReason::DelegationActorNotAllowed),
        ),
        (
            "prior hop outside chain",
            Some(&agg),
            Some(json!({"sub": AGG, "act": {"sub": "spiffe://evil.example/x"}})),
            &[],
            Some(DenyReason::DelegationChainNotAllowed),
        ),
        (
            "prior hops unchecked without chain",
            Some(&no_chain),
            Some(json!({"sub": AGG, "act": {"sub": "anyone"}})),
            &[],
            None,
        ),
        (
            "act is a string",
            Some(&agg),
            Some(json!(AGG)),
            &[],
            Some(DenyReason::DelegationMalformed),
        ),
        (
            "act is an array",
            Some(&agg),
            Some(json!([{"sub": AGG}])),
            &[],
            Some(DenyReason::DelegationMalformed),
        ),
        (
            "act is a number",
            Some(&agg),
            Some(json!(7)),
            &[],
            Some(DenyReason::DelegationMalformed),
        ),
        (
            "act is null",
            Some(&agg),
            Some(Value::Null),
            &[],
            Some(DenyReason::DelegationMalformed),
        ),
        (
            "sub missing",
            Some(&agg),
            Some(json!({"client_id": "agg-1"})),
            &[],
            Some(DenyReason::DelegationMalformed),
        ),
        (
            "sub not a string",
            Some(&agg),
            Some(json!({"sub": 12})),
            &[],
            Some(DenyReason::DelegationMalformed),
        ),
        (
            "sub empty",
            Some(&agg),
            Some(json!({"sub": ""})),
            &[],
            Some(DenyReason::DelegationMalformed),
        ),
        (
            "client_id not a string",
            Some(&agg),
            Some(json!({"sub": AGG, "client_id": true})),
            &[],
            Some(DenyReason::DelegationMalformed),
        ),
        (
            "nested act malformed",
            Some(&agg),
            Some(json!({"sub": AGG, "act": "x"})),
            &[],
            Some(DenyReason::DelegationMalformed),
        ),
        (
            "scope narrowed across hops",
            Some(&agg),
            Some(
                json!({"sub": AGG, "scope": "accounts payments", "act": {"sub": FRAUD, "scope": "accounts payments openid"}}),
            ),
            &["accounts"],
            None,
        ),
        (
            "token widens the current hop",
            Some(&agg),
            Some(json!({"sub": AGG, "scope": "accounts"})),
            &["accounts", "payments"],
            Some(DenyReason::DelegationScopeEscalation),
        ),
        (
            "hop widens the one before",
            Some(&agg),
            Some(
                json!({"sub": AGG, "scope": "accounts payments", "act": {"sub": FRAUD, "scope": "accounts"}}),
            ),
            &["accounts"],
            Some(DenyReason::DelegationScopeEscalation),
        ),
        (
            "escalation across a hop without scope",
            Some(&agg),
            Some(json!({"sub": AGG, "act": {"sub": FRAUD, "scope": "accounts"}})),
            &["accounts", "payments"],
            Some(DenyReason::DelegationScopeEscalation),
        ),
        (
            "scope not a string",
            Some(&agg),
            Some(json!({"sub": AGG, "scope": ["a"]})),
            &[],
            Some(DenyReason::DelegationMalformed),
        ),
        (
            "extra members tolerated",
            Some(&agg),
            Some(json!({"sub": AGG, "iss": "https://as", "x": [1]})),
            &[],
            None,
        ),
    ];
    for (name, r, act, scopes, want) in cases {
        let got = run(r, act, scopes);
        assert_eq!(got.err(), want, "{name}");
    }
}

#[test]
fn parse_keeps_order_and_members() {
    let act = json!({"sub": AGG, "client_id": "agg-1", "scope": "b a a",
        "act": {"sub": FRAUD, "iss": "https://as"}});
    let c = parse(Some(&act)).expect("chain");
    assert_eq!(c.depth(), 2);
    assert_eq!(c.actors[0].sub, AGG);
    assert_eq!(c.actors[0].client_id.as_deref(), Some("agg-1"));
    assert_eq!(c.actors[1].iss.as_deref(), Some("https://as"));
    assert_eq!(
        c.scopes[0].scope,
        Some(vec!["a".to_owned(), "b".to_owned()])
    );
    assert_eq!(c.scopes[1].scope, None);
    assert_eq!(parse_chain(None).expect("empty"), vec![]);
    // Round trip through the nested form the Txn-Token carries.
    let back = c.to_act_claim().expect("act");
    assert_eq!(parse(Some(&back)).expect("reparse"), c);
    assert_eq!(Chain::default().to_act_claim(), None);
}

#[test]
fn max_depth_chain_parses_and_one_more_is_refused() {
    let ok = nested(MAX_CHAIN_DEPTH);
    assert_eq!(parse(Some(&ok)).map(|c| c.depth()), Ok(MAX_CHAIN_DEPTH));
    let deeper = nested(MAX_CHAIN_DEPTH + 1);
    assert_eq!(
        parse(Some(&deeper)),
        Err(DenyReason::DelegationDepthExceeded)
    );
    unnest(ok);
    unnest(deeper);
}

#[test]
fn very_deep_chain_is_refused_quickly() {
    let hostile = nested(10_000);
    let start = Instant::now();
    let got = parse(Some(&hostile));
    let took = start.elapsed();
    assert_eq!(got, Err(DenyReason::DelegationDepthExceeded));
    assert!(took < Duration::from_millis(50), "took {took:?}");
    unnest(hostile);
}

#[test]
fn very_deep_chain_in_token_json_is_refused_at_decode() {
    // The token payload is decoded with serde_json, which stops at 128 levels of nesting: a
    // 10,000-deep `act` never becomes a `Value`, and the decode fails without deep recursion.
    let depth = 10_000;
    let mut s = String::with_capacity(depth * 16);
    for _ in 0..depth {
        s.push_str(r#"{"sub":"x","act":"#);
    }
    s.push_str(r#"{"sub":"x"}"#);
    s.push_str(&"}".repeat(depth));
    let start = Instant::now();
    assert!(serde_json::from_str::<Value>(&s).is_err());
    assert!(start.elapsed() < Duration::from_millis(50));
}

#[test]
fn patterns() {
    let cases: &[(&str, &str, bool)] = &[
        (AGG, AGG, true),
        (AGG, "spiffe://bank.example/ns/aggregators/sa/agg2", false),
        ("spiffe://bank.example/ns/aggregators/*", AGG, true),
        (
            "spiffe://bank.example/ns/aggregators/*",
            "spiffe://bank.example/ns/aggregators/",
            false,
        ),
        (
            "spiffe://bank.example/ns/aggregators/*",
            "spiffe://bank.example/ns/other/x",
            false,
        ),
        ("spiffe://bank.example/*", FRAUD, true),
        ("agg-1", "AGG-1", false),
        ("*", "anything", true),
    ];
    for (p, s, want) in cases {
        let pat = Pattern::parse(p).expect("pattern");
        assert_eq!(pat.matches(s), *want, "{p} vs {s}");
    }
    for bad in ["", "spiffe://*/x", "a*b*", "**", "agg ", "a\tb"] {
        assert!(Pattern::parse(bad).is_err(), "{bad:?} must be refused");
    }
}

#[test]
fn rule_compile_errors() {
    let raw = |max_depth, actors: &[&str], chain: Option<&[&str]>| RawDelegation {
        max_depth,
        actors: actors.iter().map(|s| s.to_string()).collect(),
        chain: chain.map(|c| c.iter().map(|s| s.to_string()).collect()),
    };
    let cases: &[(&str, RawDelegation, &str)] = &[
        ("too deep", raw(17, &[AGG], None), "max_depth"),
        ("actors missing", raw(1, &[], None), "actors"),
        ("actors with depth 0", raw(0, &[AGG], None), "max_depth"),
        (
            "bad actor pattern",
            raw(1, &[AGG, "a*b"], None),
            "actors[1]",
        ),
        ("bad chain pattern", raw(2, &[AGG], Some(&[""])), "chain[0]"),
        ("empty chain", raw(2, &[AGG], Some(&[])), "chain"),
    ];
    for (name, r, field) in cases {
        let err = r.clone().compile().expect_err(name);
        assert!(err.starts_with(field), "{name}: {err}");
    }
    assert_eq!(raw(0, &[], None).compile().map(|r| r.max_depth), Ok(0));
}

/// `act` nested `depth` levels deep, built iteratively (`json!` would serialize the inner value
/// recursively).
fn nested(depth: usize) -> Value {
    let mut v = json!({"sub": "spiffe://bank.example/hop/0"});
    for i in 1..depth {
        let mut m = serde_json::Map::new();
        m.insert(
            "sub".into(),
            Value::String(format!("spiffe://bank.example/hop/{i}")),
        );
        m.insert("act".into(), v);
        v = Value::Object(m);
    }
    v
}

/// Drops a deep value level by level: serde_json's recursive drop would overflow the stack.
fn unnest(mut v: Value) {
    while let Some(inner) = v.as_object_mut().and_then(|m| m.remove("act")) {
        v = inner;
    }
}
