use http::HeaderValue;

use super::*;

const GOOD: &str = r#"sig1=("@method" "@target-uri" "authorization");created=1700000000;keyid="k1";tag="fapi-2-request""#;

#[test]
fn a_signature_input_parses_with_its_serialization() {
    let inputs = parse_inputs(GOOD).expect("valid");
    assert_eq!(inputs.len(), 1);
    let i = &inputs[0];
    assert_eq!(i.label, "sig1");
    assert_eq!(i.params.created, Some(1_700_000_000));
    assert_eq!(i.params.keyid.as_deref(), Some("k1"));
    assert_eq!(i.params.tag.as_deref(), Some("fapi-2-request"));
    assert_eq!(
        i.components
            .iter()
            .map(|c| c.name.as_str())
            .collect::<Vec<_>>(),
        ["@method", "@target-uri", "authorization"]
    );
    // The @signature-params value is the member re-serialized (RFC 9421 §2.3).
    assert_eq!(i.serialized, GOOD.trim_start_matches("sig1="));
    let req = parse_inputs(r#"s=("@method";req "x";bs)"#).expect("valid");
    assert!(req[0].components[0].req && req[0].components[1].bs);
}

/// Hostile and malformed inputs: each refused, none panics.
#[test]
fn hostile_signature_inputs_are_refused() {
    let huge = format!("sig1=({})", "\"a\" ".repeat(MAX_COMPONENTS + 1));
    let many = (0..=MAX_SIGNATURES)
        .map(|i| format!("s{i}=()"))
        .collect::<Vec<_>>()
        .join(", ");
    let cases: Vec<(&str, String)> = vec![
        ("duplicate label", format!("{GOOD}, sig1=()")),
        (
            "duplicate parameter",
            r#"sig1=("@method");created=1;created=2"#.into(),
        ),
        (
            "duplicate component flag",
            r#"sig1=("@method";req;req)"#.into(),
        ),
        (
            "same component twice",
            r#"sig1=("@method" "@method")"#.into(),
        ),
        ("member is an item", r#"sig1="@method""#.into()),
        ("component is a token", "sig1=(date)".into()),
        ("upper-case field", r#"sig1=("Date")"#.into()),
        ("@ inside a name", r#"sig1=("a@b")"#.into()),
        ("empty name", r#"sig1=("")"#.into()),
        ("sf parameter", r#"sig1=("x";sf)"#.into()),
        ("key parameter", r#"sig1=("x";key="a")"#.into()),
        ("name parameter", r#"sig1=("@query-param";name="a")"#.into()),
        ("tr parameter", r#"sig1=("x";tr)"#.into()),
        ("flag set to false", r#"sig1=("@method";req=?0)"#.into()),
        ("bs on a derived component", r#"sig1=("@method";bs)"#.into()),
        ("created is a string", r#"sig1=();created="1""#.into()),
        ("keyid is a token", "sig1=();keyid=k1".into()),
        ("unknown signature parameter", "sig1=();foo=1".into()),
        ("too many components", huge),
        ("too many signatures", many),
        ("not a dictionary", "sig1=(".into()),
        ("trailing comma", format!("{GOOD},")),
    ];
    for (name, value) in cases {
        assert!(parse_inputs(&value).is_err(), "{name}: {value}");
    }
}

#[test]
fn signature_values_must_be_byte_sequences() {
    assert_eq!(
        parse_signatures("sig1=:AAEC:").expect("valid"),
        vec![("sig1".to_owned(), vec![0, 1, 2])]
    );
    let long = format!("sig1=:{}:", "A".repeat(4 * (MAX_SIGNATURE_BYTES / 3 + 2)));
    for (name, v) in [
        ("a string", r#"sig1="AAEC""#.to_owned()),
        ("empty bytes", "sig1=::".into()),
        ("parameters", "sig1=:AAEC:;a=1".into()),
        ("duplicate label", "sig1=:AAEC:, sig1=:AAEC:".into()),
        ("too long", long),
        ("bad base64", "sig1=:%%%:".into()),
    ] {
        assert!(parse_signatures(&v).is_err(), "{name}");
    }
}

#[test]
fn select_picks_the_tagged_signature_only() {
    let mut h = HeaderMap::new();
    assert_eq!(select(&h, "fapi-2-request"), Ok(None));
    h.append(
        "signature-input",
        HeaderValue::from_static(r#"other=("@method");tag="x""#),
    );
    h.append("signature-input", HeaderValue::from_static(GOOD));
    h.append(
        "signature",
        HeaderValue::from_static("other=:AAEC:, sig1=:AQID:"),
    );
    let s = select(&h, "fapi-2-request").expect("ok").expect("found");
    assert_eq!(
        (s.input.label.as_str(), s.value.as_slice()),
        ("sig1", &[1u8, 2, 3][..])
    );
    assert_eq!(select(&h, "nothing"), Ok(None));

    // A label in two field lines is one duplicated dictionary key.
    let mut dup = h.clone();
    dup.append(
        "signature-input",
        HeaderValue::from_static(r#"sig1=("@path")"#),
    );
    assert!(select(&dup, "fapi-2-request").is_err());
    // Two signatures with the tag: ambiguous.
    let mut two = HeaderMap::new();
    two.append("signature-input", HeaderValue::from_static(GOOD));
    two.append(
        "signature-input",
        HeaderValue::from_static(r#"sig2=("@method");tag="fapi-2-request""#),
    );
    two.append(
        "signature",
        HeaderValue::from_static("sig1=:AQID:, sig2=:AQID:"),
    );
    assert!(select(&two, "fapi-2-request").is_err());
    // The tagged input without a value.
    let mut lonely = HeaderMap::new();
    lonely.append("signature-input", HeaderValue::from_static(GOOD));
    assert!(select(&lonely, "fapi-2-request").is_err());
    lonely.append("signature", HeaderValue::from_static("other=:AQID:"));
    assert!(select(&lonely, "fapi-2-request").is_err());
}
