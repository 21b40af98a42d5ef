//! Property tests: the parsers that read attacker-controlled bytes (JWS structure and JSON
//! members, DPoP proofs, forwarded client certificates) and the policy compiler (fed by API
//! owners) never panic, and reject garbage with an error; policy errors carry a location.
//! The same parsers have `cargo fuzz` targets in `fuzz/` (docs/fuzzing.md).

use std::path::PathBuf;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use fapi_guard::dpop::{DpopSettings, verify_proof};
use fapi_guard::mtls::{ForwardedFormat, parse_forwarded};
use fapi_guard::policy::PolicySet;
use fapi_guard::token::jws;
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use serde_json::Value;

/// JSON-ish text: real JSON values, and fragments of JSON syntax glued together.
fn jsonish() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        Just("null".to_owned()),
        any::<bool>().prop_map(|b| b.to_string()),
        any::<i64>().prop_map(|n| n.to_string()),
        "[a-z\"\\\\]{0,8}".prop_map(|s| format!("{s:?}")),
    ];
    let value = leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(|v| format!("[{}]", v.join(","))),
            prop::collection::vec((member_name(), inner), 0..5).prop_map(|kv| {
                let members: Vec<String> = kv.iter().map(|(k, v)| format!("{k}:{v}")).collect();
                format!("{{{}}}", members.join(","))
            }),
        ]
    });
    prop_oneof![value, "[{}\\[\\]:,\"a-z0-9 ]{0,40}"]
}

/// A quoted member name, short enough to repeat often, sometimes spelled with an escape
/// (`"\u0061"` is the name `a`).
fn member_name() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[a-c]{1,2}".prop_map(|k| format!("{k:?}")),
        1 => Just(r#""\u0061""#.to_owned()),
        1 => Just(r#""b\u0061""#.to_owned()),
    ]
}

/// Every member of every object in the text, duplicates included: an oracle independent of
/// `jws::unique_member_names`, to compare with what serde_json kept (it keeps the last of
/// equal names).
fn members_in_text(json: &str) -> Option<usize> {
    struct Count;
    impl<'de> serde::de::DeserializeSeed<'de> for Count {
        type Value = usize;
        fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<usize, D::Error> {
            d.deserialize_any(self)
        }
    }
    impl<'de> serde::de::Visitor<'de> for Count {
        type Value = usize;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("JSON")
        }
        fn visit_bool<E>(self, _: bool) -> Result<usize, E> {
            Ok(0)
        }
        fn visit_i64<E>(self, _: i64) -> Result<usize, E> {
            Ok(0)
        }
        fn visit_u64<E>(self, _: u64) -> Result<usize, E> {
            Ok(0)
        }
        fn visit_f64<E>(self, _: f64) -> Result<usize, E> {
            Ok(0)
        }
        fn visit_str<E>(self, _: &str) -> Result<usize, E> {
            Ok(0)
        }
        fn visit_unit<E>(self) -> Result<usize, E> {
            Ok(0)
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut a: A) -> Result<usize, A::Error> {
            let mut n = 0;
            while let Some(k) = a.next_element_seed(Count)? {
                n += k;
            }
            Ok(n)
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(self, mut a: A) -> Result<usize, A::Error> {
            let mut n = 0;
            while a.next_key::<String>()?.is_some() {
                n += 1 + a.next_value_seed(Count)?;
            }
            Ok(n)
        }
    }
    let mut de = serde_json::Deserializer::from_str(json);
    let n = serde::de::DeserializeSeed::deserialize(Count, &mut de).ok()?;
    de.end().ok().map(|()| n)
}

fn members_kept(v: &Value) -> usize {
    match v {
        Value::Array(a) => a.iter().map(members_kept).sum(),
        Value::Object(o) => o.len() + o.values().map(members_kept).sum::<usize>(),
        _ => 0,
    }
}

/// A compact-JWS-shaped string whose parts are base64url of `jsonish` text, or raw junk.
fn jws_like() -> impl Strategy<Value = String> {
    let part = prop_oneof![
        jsonish().prop_map(|j| B64.encode(j)),
        "[A-Za-z0-9_\\-=+/.]{0,30}",
    ];
    prop::collection::vec(part, 1..5).prop_map(|p| p.join("."))
}

/// The generator must produce both kinds often, or `json_members_are_unique_or_refused` proves
/// little: of 1,000 texts drawn with a fixed seed, many repeat a name and many do not.
#[test]
fn json_generator_makes_repeated_and_unique_names() {
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let (mut repeated, mut unique) = (0, 0);
    for _ in 0..1000 {
        let j = jsonish()
            .new_tree(&mut runner)
            .expect("generator")
            .current();
        let (Some(t), Ok(v)) = (members_in_text(&j), serde_json::from_str::<Value>(&j)) else {
            continue;
        };
        match (t == members_kept(&v), t) {
            (false, _) => repeated += 1,
            (true, 2..) => unique += 1,
            _ => {}
        }
    }
    assert!(
        repeated >= 50 && unique >= 50,
        "{repeated} repeated, {unique} unique"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn jws_structure_never_panics(s in any::<String>(), t in jws_like()) {
        for input in [s.as_str(), t.as_str()] {
            if let Some((h, p, sig)) = jws::split(input, 12 * 1024) {
                prop_assert!(![h, p, sig].iter().any(|x| x.is_empty() || x.contains('.')));
                let _ = jws::decode_json::<Value>(h);
                let _ = jws::decode_json::<Value>(p);
            }
            let _ = jws::unique_member_names(input.as_bytes());
        }
    }

    #[test]
    fn json_members_are_unique_or_refused(j in jsonish()) {
        let unique = jws::unique_member_names(j.as_bytes());
        match serde_json::from_str::<Value>(&j) {
            // serde_json keeps the last of equal names (after unescaping): the text has more
            // members than the value exactly when a name repeats, and then it must be refused.
            Ok(v) => {
                let in_text = members_in_text(&j);
                prop_assert!(in_text.is_some(), "the oracle reads what serde_json reads: {}", j);
                let repeats = in_text != Some(members_kept(&v));
                prop_assert_eq!(unique, !repeats, "{}", j);
            }
            Err(_) => prop_assert!(!unique, "invalid JSON accepted: {}", j),
        }
    }

    #[test]
    fn dpop_proof_parser_rejects_garbage(proof in prop_oneof![any::<String>(), jws_like()],
                                         method in "[A-Z]{0,7}",
                                         token in proptest::option::of("[A-Za-z0-9._~+/-]{0,40}")) {
        let settings = DpopSettings::default();
        let req = fapi_guard::dpop::ProofRequest {
            proof: &proof,
            method: &method,
            htu: "https://api.bank.example/accounts",
            access_token: token.as_deref(),
            now: 1_800_000_000,
        };
        // Nothing here carries a valid signature: every input must be refused, none may panic.
        prop_assert!(verify_proof(&req, &settings).is_err());
    }

    #[test]
    fn forwarded_certificate_parsers_reject_garbage(
        raw in any::<String>(),
        hash in "[0-9a-fA-F]{0,70}",
        cert in "[A-Za-z0-9%+/=:\\-\" ]{0,80}",
        sep in prop_oneof![Just(";"), Just(","), Just(""), Just("\";")],
    ) {
        let xfcc = [
            format!("Hash={hash}{sep}Cert=\"{cert}\""),
            format!("By=spiffe://x{sep}Hash={hash}{sep}Subject=\"{cert}\""),
            format!("Cert={cert}"),
        ];
        let sf = [format!(":{cert}:"), format!(":{hash}:"), cert.clone()];
        for (v, f) in xfcc.iter().map(|v| (v, ForwardedFormat::Xfcc))
            .chain(sf.iter().map(|v| (v, ForwardedFormat::Rfc9440)))
            .chain([(&cert, ForwardedFormat::PemUrlencoded)])
        {
            let _ = parse_forwarded(v, f);
        }
        for f in [ForwardedFormat::Xfcc, ForwardedFormat::Rfc9440, ForwardedFormat::PemUrlencoded] {
            // Random text is not a certificate: a 32-byte thumbprint from it would be a bug,
            // except through XFCC's Hash= (a bare hash), which needs exactly 64 hex digits.
            if parse_forwarded(&raw, f).is_ok() {
                prop_assert!(matches!(f, ForwardedFormat::Xfcc), "{:?} accepted {:?}", f, raw);
            }
        }
    }
}

/// Policy-shaped YAML: known keys with random values, unknown keys, wrong nesting.
fn policy_yaml() -> impl Strategy<Value = String> {
    let scalar = prop_oneof![
        Just("GET".to_owned()),
        Just("/accounts/{id}".to_owned()),
        Just("[accounts]".to_owned()),
        Just("dpop".to_owned()),
        Just("{}".to_owned()),
        Just("\"\"".to_owned()),
        Just("- x".to_owned()),
        "[a-z/{}:\\[\\] ]{0,12}",
        any::<i32>().prop_map(|n| n.to_string()),
    ];
    let key = prop_oneof![
        Just("name"),
        Just("method"),
        Just("path"),
        Just("scopes"),
        Just("binding"),
        Just("public"),
        Just("consent"),
        Just("delegation"),
        Just("purpose"),
        Just("assurance"),
        Just("bogus"),
    ];
    let route = prop::collection::vec((key, scalar.clone()), 0..6).prop_map(|kv| {
        let mut s = String::new();
        for (i, (k, v)) in kv.iter().enumerate() {
            let lead = if i == 0 { "  - " } else { "    " };
            s.push_str(&format!("{lead}{k}: {v}\n"));
        }
        if s.is_empty() {
            "  - {}\n".to_owned()
        } else {
            s
        }
    });
    (
        prop_oneof![
            Just("api: a\n".to_owned()),
            Just(String::new()),
            scalar.clone().prop_map(|v| format!("api: {v}\n"))
        ],
        prop_oneof![
            Just(String::new()),
            scalar.clone().prop_map(|v| format!("audience: {v}\n"))
        ],
        prop_oneof![
            Just(String::new()),
            scalar.prop_map(|v| format!("defaults: {{binding: {v}}}\n"))
        ],
        prop::collection::vec(route, 0..4),
        "[ \\t:\\-a-z{}\\[\\]\n]{0,20}",
    )
        .prop_map(|(api, aud, defaults, routes, junk)| {
            format!("{api}{aud}{defaults}routes:\n{}{junk}", routes.concat())
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn policy_compiler_never_panics_and_locates_errors(src in prop_oneof![policy_yaml(), any::<String>()]) {
        let file = PathBuf::from("prop.yaml");
        if let Err(errors) = PolicySet::compile(&[(file.clone(), src.clone())]) {
            prop_assert!(!errors.is_empty());
            for e in errors {
                prop_assert_eq!(&e.file, &file);
                prop_assert!(
                    e.line.is_some() || !e.field.is_empty(),
                    "error without a location: {} for {:?}", e, src
                );
            }
        }
    }
}

// ---------------------------------------------------------------- RFC 9421 / RFC 9530 fields

use fapi_guard::signature::digest::verify_value as verify_content_digest;
use fapi_guard::signature::fields::{Component, Params, parse_inputs, parse_signatures};
use fapi_guard::signature::sign::serialize_params;

/// Structured-field-shaped text: labels, inner lists of strings, parameters, byte sequences,
/// and the punctuation in between, glued at random.
fn sf_like() -> impl Strategy<Value = String> {
    let atom = prop_oneof![
        "[a-z][a-z0-9*_.-]{0,6}",
        "\"[@a-z-]{0,8}\"",
        ":[A-Za-z0-9+/=]{0,12}:",
        "-?[0-9]{1,16}",
        Just("?1".to_owned()),
        Just("?0".to_owned()),
        "[;=,() \"\\\\:]",
    ];
    prop::collection::vec(atom, 0..24).prop_map(|v| v.concat())
}

fn component() -> impl Strategy<Value = Component> {
    (
        prop_oneof![
            Just("@method".to_owned()),
            Just("@target-uri".to_owned()),
            Just("@authority".to_owned()),
            "[a-z][a-z0-9-]{0,10}",
        ],
        any::<bool>(),
    )
        .prop_map(|(name, req)| Component {
            bs: false,
            req,
            name,
        })
}

fn params() -> impl Strategy<Value = Params> {
    let text = || prop::option::of("[ -~]{0,12}");
    (
        prop::option::of(0i64..=999_999_999_999_999),
        prop::option::of(0i64..=999_999_999_999_999),
        text(),
        text(),
        text(),
        text(),
    )
        .prop_map(|(created, expires, nonce, alg, keyid, tag)| Params {
            created,
            expires,
            nonce,
            alg,
            keyid,
            tag,
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// `Signature-Input`, `Signature` and `Content-Digest` parsers never panic on any text.
    #[test]
    fn signature_fields_never_panic(s in any::<String>(), t in sf_like(), body in any::<Vec<u8>>()) {
        for input in [s.as_str(), t.as_str()] {
            let _ = parse_inputs(input);
            let _ = parse_signatures(input);
            let _ = verify_content_digest(input, &body);
        }
    }

    /// What the signer serializes, the verifier reads back identically (components, params and
    /// the `@signature-params` text), and a label given twice is always refused.
    #[test]
    fn signature_params_round_trip(
        comps in prop::collection::vec(component(), 0..8),
        p in params(),
    ) {
        let mut unique: Vec<Component> = Vec::new();
        for c in comps {
            if !unique.contains(&c) {
                unique.push(c);
            }
        }
        let serialized = serialize_params(&unique, &p).expect("printable ASCII serializes");
        let back = parse_inputs(&format!("sig={serialized}")).expect("reads back");
        prop_assert_eq!(back.len(), 1);
        prop_assert_eq!(&back[0].components, &unique);
        prop_assert_eq!(&back[0].params, &p);
        prop_assert_eq!(&back[0].serialized, &serialized);
        let twice = format!("sig={serialized}, other=(), sig={serialized}");
        prop_assert!(parse_inputs(&twice).is_err());
    }
}
