use super::*;

fn rule(yaml: &str) -> RawConsentRule {
    serde_yaml::from_str(yaml).expect("valid YAML for RawConsentRule")
}

const PARAMS: &[&str] = &["AccountId"];

#[test]
fn record_rule_compiles_with_defaults() {
    let r = rule("claim: openbanking_intent_id\npermissions: [ReadAccountsDetail, ReadBalances]\nresource: {accounts: \"{AccountId}\"}\n")
        .compile(PARAMS)
        .expect("compiles");
    let ConsentRule::Record(rec) = &r else {
        panic!("record rule expected: {r:?}")
    };
    assert_eq!(rec.claim.as_deref(), Some("openbanking_intent_id"));
    assert_eq!(&*rec.status, [Box::from("Authorised")]);
    assert_eq!(rec.permissions.len(), 2);
    assert_eq!(rec.accounts, Some(ParamSource::Path("AccountId".into())));
    assert!(r.requires_service() && !r.needs_body());
    assert_eq!(r.source(), "record");
}

#[test]
fn berlin_group_header_rule() {
    let r =
        rule("header: Consent-ID\nstatus: [valid]\nresource: {accounts: \"query:accountId\"}\n")
            .compile(&[])
            .expect("compiles");
    let ConsentRule::Record(rec) = r else {
        panic!("record rule expected")
    };
    assert_eq!(rec.header.as_ref().map(|h| h.as_str()), Some("consent-id"));
    assert_eq!(rec.claim, None);
    assert_eq!(rec.accounts, Some(ParamSource::Query("accountId".into())));
}

#[test]
fn rar_rule_compiles() {
    let r = rule(
        "authorization_details:\n  type: payment_initiation\n  actions: [initiate]\n  match_body:\n    /Data/Initiation/InstructedAmount/Amount: /instructedAmount/amount\n    /a~1b: /c~0d\n",
    )
    .compile(&[])
    .expect("compiles");
    assert!(r.needs_body() && !r.requires_service());
    assert_eq!(r.source(), "authorization_details");
    let ConsentRule::Rar(rar) = r else {
        panic!("rar rule expected")
    };
    assert!(rar.locations, "locations defaults to true");
    assert_eq!(rar.match_body.len(), 2);
    let no_body =
        rule("authorization_details: {type: account_information, accounts: \"{AccountId}\"}")
            .compile(PARAMS)
            .expect("compiles");
    assert!(!no_body.needs_body());
}

#[test]
fn compile_errors_name_the_field() {
    let cases: &[(&str, &str, &str, &str)] = &[
        (
            "no source",
            "status: [Authorised]",
            "consent",
            "needs a source",
        ),
        (
            "both sources",
            "claim: c\nauthorization_details: {type: t}",
            "consent.authorization_details",
            "not both",
        ),
        ("empty claim", "claim: ' '", "consent.claim", "token claim"),
        (
            "bad header",
            "header: 'Consent ID'",
            "consent.header",
            "not a header name",
        ),
        (
            "empty status",
            "claim: c\nstatus: []",
            "consent.status",
            "must not be empty",
        ),
        (
            "blank status",
            "claim: c\nstatus: ['']",
            "consent.status",
            "must not be empty",
        ),
        (
            "empty permissions",
            "claim: c\npermissions: []",
            "consent.permissions",
            "must not be empty",
        ),
        (
            "empty resource",
            "claim: c\nresource: {}",
            "consent.resource",
            "at least one",
        ),
        (
            "unknown resource field",
            "claim: c\nresource: {iban: \"{AccountId}\"}",
            "consent.resource",
            "unknown consent field",
        ),
        (
            "unknown path param",
            "claim: c\nresource: {accounts: \"{account_id}\"}",
            "consent.resource.accounts",
            "no parameter {account_id} (it has: AccountId)",
        ),
        (
            "not a param source",
            "claim: c\nresource: {accounts: account_id}",
            "consent.resource.accounts",
            "expected",
        ),
        (
            "bad query name",
            "claim: c\nresource: {accounts: \"query:a&b\"}",
            "consent.resource.accounts",
            "query parameter",
        ),
        (
            "record field on rar",
            "authorization_details: {type: t}\npermissions: [p]",
            "consent.permissions",
            "consent records",
        ),
        (
            "empty rar type",
            "authorization_details: {type: ''}",
            "consent.authorization_details.type",
            "RFC 9396",
        ),
        (
            "empty actions",
            "authorization_details: {type: t, actions: []}",
            "consent.authorization_details.actions",
            "must not be empty",
        ),
        (
            "identifier param missing",
            "authorization_details: {type: t, identifier: \"{PaymentId}\"}",
            "consent.authorization_details.identifier",
            "no parameter",
        ),
        (
            "empty match_body",
            "authorization_details: {type: t, match_body: {}}",
            "consent.authorization_details.match_body",
            "at least one",
        ),
        (
            "body pointer without slash",
            "authorization_details: {type: t, match_body: {Data: /x}}",
            "consent.authorization_details.match_body",
            "RFC 6901",
        ),
        (
            "detail pointer bad escape",
            "authorization_details: {type: t, match_body: {/a: /b~2}}",
            "consent.authorization_details.match_body./a",
            "~0",
        ),
        (
            "dangling tilde",
            "authorization_details: {type: t, match_body: {/a~: /b}}",
            "consent.authorization_details.match_body",
            "~1",
        ),
        (
            "whole document pointer",
            "authorization_details: {type: t, match_body: {'': /b}}",
            "consent.authorization_details.match_body",
            "starts with '/'",
        ),
    ];
    for (name, yaml, field, msg) in cases {
        let err = rule(yaml).compile(PARAMS).expect_err(name);
        assert_eq!(err.0, *field, "{name}: {err:?}");
        assert!(err.1.contains(msg), "{name}: {err:?}");
    }
}

#[test]
fn unknown_keys_are_refused() {
    for yaml in [
        "claim: c\npermission: [p]",
        "authorization_details: {type: t, action: [a]}",
    ] {
        assert!(
            serde_yaml::from_str::<RawConsentRule>(yaml).is_err(),
            "{yaml}"
        );
    }
}

#[test]
fn pointers_follow_rfc_6901() {
    let doc = serde_json::json!({"a/b": {"c~d": "x"}, "~1": "tilde-one", "": {"": "empty"},
        "l": ["p", "q"], "n": {"0": "zero-key"}});
    let cases: &[(&str, Option<&str>)] = &[
        ("/a~1b/c~0d", Some("x")),
        ("/~01", Some("tilde-one")),
        ("//", Some("empty")),
        ("/l/1", Some("q")),
        ("/l/0", Some("p")),
        ("/l/01", None),
        ("/l/-", None),
        ("/l/+1", None),
        ("/l/2", None),
        ("/l/", None),
        ("/n/0", Some("zero-key")),
        ("/missing", None),
        ("/a~1b/c~0d/deeper", None),
    ];
    for (p, want) in cases {
        let ptr = JsonPointer::parse(p).expect("valid pointer");
        assert_eq!(ptr.as_str(), *p);
        assert_eq!(ptr.resolve(&doc).and_then(Value::as_str), *want, "{p}");
        // Same answers as serde_json's own RFC 6901 evaluation.
        assert_eq!(ptr.resolve(&doc), doc.pointer(p), "{p}");
    }
}
