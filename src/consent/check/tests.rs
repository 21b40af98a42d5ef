use http::HeaderValue;
use serde_json::json;

use super::*;
use crate::consent::rule::ConsentRule;
use crate::consent::{RawConsentRule, parse_body};

const NOW: i64 = 1_800_000_000;
const ORIGIN: &str = "https://api.bank.example";

fn compile(yaml: &str, params: &[&str]) -> ConsentRule {
    serde_yaml::from_str::<RawConsentRule>(yaml)
        .expect("YAML")
        .compile(params)
        .expect("compiles")
}

fn record_rule(yaml: &str) -> RecordRule {
    match compile(yaml, &["AccountId"]) {
        ConsentRule::Record(r) => r,
        ConsentRule::Rar(_) => panic!("record rule expected"),
    }
}

fn rar_rule(yaml: &str, params: &[&str]) -> RarRule {
    match compile(yaml, params) {
        ConsentRule::Rar(r) => r,
        ConsentRule::Record(_) => panic!("rar rule expected"),
    }
}

fn ctx<'a>(
    params: &'a [(&'a str, String)],
    query: Option<&'a str>,
    body: Option<&'a Value>,
) -> ConsentContext<'a> {
    ConsentContext {
        client_id: "tpp-1",
        subject: "psu-9",
        params,
        query,
        public_origin: ORIGIN,
        now: NOW,
        body,
    }
}

fn good_record() -> ConsentRecord {
    ConsentRecord {
        id: Some("c-123".into()),
        status: "Authorised".into(),
        client_id: "tpp-1".into(),
        subject: Some("psu-9".into()),
        expires_at: Some(NOW + 3600),
        permissions: vec!["ReadAccountsDetail".into(), "ReadBalances".into()],
        accounts: vec!["acc-1".into(), "acc 2".into()],
        purpose: Some("account-information".into()),
        authorization_details: None,
    }
}

const DETAIL_RULE: &str = "claim: openbanking_intent_id\npermissions: [ReadAccountsDetail]\nresource: {accounts: \"{AccountId}\"}";

#[test]
fn record_checks_map_to_each_reason() {
    type Edit = fn(&mut ConsentRecord);
    let cases: &[(&str, Edit, &str, Option<DenyReason>)] = &[
        ("allowed", |_| {}, "acc-1", None),
        ("no expiry is fine", |r| r.expires_at = None, "acc-1", None),
        ("no subject is fine", |r| r.subject = None, "acc-1", None),
        ("encoded space param", |_| {}, "acc 2", None),
        (
            "other client",
            |r| r.client_id = "tpp-2".into(),
            "acc-1",
            Some(DenyReason::ConsentClientMismatch),
        ),
        (
            "other psu",
            |r| r.subject = Some("psu-1".into()),
            "acc-1",
            Some(DenyReason::ConsentClientMismatch),
        ),
        (
            "client checked before status",
            |r| {
                r.client_id = "tpp-2".into();
                r.status = "Revoked".into();
            },
            "acc-1",
            Some(DenyReason::ConsentClientMismatch),
        ),
        (
            "revoked",
            |r| r.status = "Revoked".into(),
            "acc-1",
            Some(DenyReason::ConsentRevoked),
        ),
        (
            "berlin revokedByPsu",
            |r| r.status = "revokedByPsu".into(),
            "acc-1",
            Some(DenyReason::ConsentRevoked),
        ),
        (
            "berlin terminatedByTpp",
            |r| r.status = "terminatedByTpp".into(),
            "acc-1",
            Some(DenyReason::ConsentRevoked),
        ),
        (
            "berlin expired status",
            |r| r.status = "expired".into(),
            "acc-1",
            Some(DenyReason::ConsentExpired),
        ),
        (
            "awaiting",
            |r| r.status = "AwaitingAuthorisation".into(),
            "acc-1",
            Some(DenyReason::ConsentNotAuthorised),
        ),
        (
            "rejected",
            |r| r.status = "Rejected".into(),
            "acc-1",
            Some(DenyReason::ConsentNotAuthorised),
        ),
        (
            "status case matters",
            |r| r.status = "authorised".into(),
            "acc-1",
            Some(DenyReason::ConsentNotAuthorised),
        ),
        (
            "revoked beats expired",
            |r| {
                r.status = "Revoked".into();
                r.expires_at = Some(NOW - 1);
            },
            "acc-1",
            Some(DenyReason::ConsentRevoked),
        ),
        (
            "expired now",
            |r| r.expires_at = Some(NOW),
            "acc-1",
            Some(DenyReason::ConsentExpired),
        ),
        (
            "expired earlier",
            |r| r.expires_at = Some(NOW - 3600),
            "acc-1",
            Some(DenyReason::ConsentExpired),
        ),
        (
            "permission missing",
            |r| r.permissions = vec!["ReadAccountsBasic".into()],
            "acc-1",
            Some(DenyReason::ConsentPermissionMissing),
        ),
        (
            "other account",
            |_| {},
            "acc-7",
            Some(DenyReason::ConsentResourceMismatch),
        ),
        (
            "account prefix",
            |_| {},
            "acc",
            Some(DenyReason::ConsentResourceMismatch),
        ),
        (
            "empty account",
            |r| r.accounts.push(String::new()),
            "",
            Some(DenyReason::ConsentResourceMismatch),
        ),
    ];
    let rule = record_rule(DETAIL_RULE);
    for (name, edit, account, want) in cases {
        let mut rec = good_record();
        edit(&mut rec);
        let params = [("AccountId", (*account).to_owned())];
        let got = check_record(&rule, &rec, &ctx(&params, None, None)).err();
        assert_eq!(got, *want, "{name}");
    }
}

#[test]
fn record_status_list_and_query_binding() {
    let rule = record_rule(
        "header: Consent-ID\nstatus: [valid, Authorised]\nresource: {accounts: \"query:accountId\"}",
    );
    let mut rec = good_record();
    rec.status = "valid".into();
    let cases: &[(&str, Option<&str>, Option<DenyReason>)] = &[
        ("match", Some("accountId=acc-1"), None),
        (
            "with others",
            Some("from=2026-01-01&accountId=acc-1&x"),
            None,
        ),
        ("form encoded", Some("accountId=acc+2"), None),
        ("percent encoded", Some("accountId=acc%202"), None),
        ("encoded name", Some("account%49d=acc-1"), None),
        (
            "absent",
            Some("from=2026-01-01"),
            Some(DenyReason::ConsentResourceMismatch),
        ),
        ("no query", None, Some(DenyReason::ConsentResourceMismatch)),
        (
            "repeated",
            Some("accountId=acc-1&accountId=acc-7"),
            Some(DenyReason::ConsentResourceMismatch),
        ),
        (
            "other",
            Some("accountId=acc-7"),
            Some(DenyReason::ConsentResourceMismatch),
        ),
        (
            "empty",
            Some("accountId="),
            Some(DenyReason::ConsentResourceMismatch),
        ),
        (
            "bad utf8",
            Some("accountId=%ff"),
            Some(DenyReason::ConsentResourceMismatch),
        ),
    ];
    for (name, query, want) in cases {
        let got = check_record(&rule, &rec, &ctx(&[], *query, None)).err();
        assert_eq!(got, *want, "{name}");
    }
}

#[test]
fn consent_id_from_claim_and_header() {
    let claims: Map<String, Value> = json!({"openbanking_intent_id": "c-123", "n": 5})
        .as_object()
        .cloned()
        .expect("object");
    let mut one = HeaderMap::new();
    one.insert("consent-id", HeaderValue::from_static("c-123"));
    let mut other = HeaderMap::new();
    other.insert("consent-id", HeaderValue::from_static("c-999"));
    let mut twice = HeaderMap::new();
    twice.append("consent-id", HeaderValue::from_static("c-123"));
    twice.append("consent-id", HeaderValue::from_static("c-123"));
    let none = HeaderMap::new();

    let claim = record_rule("claim: openbanking_intent_id");
    let numeric = record_rule("claim: n");
    let absent = record_rule("claim: consent_id");
    let header = record_rule("header: Consent-ID");
    let both = record_rule("claim: openbanking_intent_id\nheader: Consent-ID");
    let cases: &[(&str, &RecordRule, &HeaderMap, Result<&str, DenyReason>)] = &[
        ("claim", &claim, &none, Ok("c-123")),
        (
            "claim not a string",
            &numeric,
            &none,
            Err(DenyReason::ConsentMissing),
        ),
        (
            "claim absent",
            &absent,
            &none,
            Err(DenyReason::ConsentMissing),
        ),
        ("header", &header, &one, Ok("c-123")),
        (
            "header absent",
            &header,
            &none,
            Err(DenyReason::ConsentMissing),
        ),
        (
            "header twice",
            &header,
            &twice,
            Err(DenyReason::RequestMalformed),
        ),
        ("both equal", &both, &one, Ok("c-123")),
        (
            "both differ",
            &both,
            &other,
            Err(DenyReason::ConsentMissing),
        ),
        (
            "both, header absent",
            &both,
            &none,
            Err(DenyReason::ConsentMissing),
        ),
    ];
    for (name, rule, headers, want) in cases {
        assert_eq!(rule.consent_id(&claims, headers), *want, "{name}");
    }
}

const PAYMENT_RULE: &str = "
authorization_details:
  type: payment_initiation
  actions: [initiate]
  match_body:
    /Data/Initiation/InstructedAmount/Amount: /instructedAmount/amount
    /Data/Initiation/InstructedAmount/Currency: /instructedAmount/currency
    /Data/Initiation/CreditorAccount/Identification: /creditorAccount/iban
";

fn payment_detail(amount: Value) -> Value {
    json!({
        "type": "payment_initiation",
        "actions": ["initiate", "status"],
        "locations": ["https://API.bank.example:443/"],
        "instructedAmount": {"currency": "EUR", "amount": amount},
        "creditorName": "Merchant A",
        "creditorAccount": {"iban": "DE02100100109307118603"}
    })
}

fn payment_body(amount: &str, currency: &str, iban: &str) -> Value {
    let raw = format!(
        r#"{{"Data":{{"Initiation":{{"InstructionIdentification":"i-1",
        "InstructedAmount":{{"Amount":{amount},"Currency":"{currency}"}},
        "CreditorAccount":{{"SchemeName":"IBAN","Identification":"{iban}"}}}}}}}}"#
    );
    parse_body(raw.as_bytes()).expect("body JSON")
}

const IBAN: &str = "DE02100100109307118603";

#[test]
fn payment_body_must_match_the_approved_detail() {
    let rule = rar_rule(PAYMENT_RULE, &[]);
    let string_amount = json!([payment_detail(json!("123.50"))]);
    let numeric_amount = serde_json::from_str::<Value>(
        r#"[{"type":"payment_initiation","actions":["initiate"],
        "instructedAmount":{"currency":"EUR","amount":10.00},
        "creditorAccount":{"iban":"DE02100100109307118603"}}]"#,
    )
    .expect("JSON");
    let cases: &[(&str, &Value, Value, Option<DenyReason>)] = &[
        ("exact", &string_amount, payment_body(r#""123.50""#, "EUR", IBAN), None),
        ("amount", &string_amount, payment_body(r#""123.51""#, "EUR", IBAN), Some(DenyReason::ConsentBodyMismatch)),
        ("overspend", &string_amount, payment_body(r#""1235.00""#, "EUR", IBAN), Some(DenyReason::ConsentBodyMismatch)),
        ("trailing zero", &string_amount, payment_body(r#""123.5""#, "EUR", IBAN), Some(DenyReason::ConsentBodyMismatch)),
        ("currency", &string_amount, payment_body(r#""123.50""#, "GBP", IBAN), Some(DenyReason::ConsentBodyMismatch)),
        ("creditor", &string_amount, payment_body(r#""123.50""#, "EUR", "GB33BUKB20201555555555"), Some(DenyReason::ConsentBodyMismatch)),
        ("number vs string", &string_amount, payment_body("123.50", "EUR", IBAN), Some(DenyReason::ConsentBodyMismatch)),
        ("numbers same literal", &numeric_amount, payment_body("10.00", "EUR", IBAN), None),
        ("numbers 10.00 vs 10.0", &numeric_amount, payment_body("10.0", "EUR", IBAN), Some(DenyReason::ConsentBodyMismatch)),
        ("numbers 10.00 vs 10", &numeric_amount, payment_body("10", "EUR", IBAN), Some(DenyReason::ConsentBodyMismatch)),
        ("string vs number", &numeric_amount, payment_body(r#""10.00""#, "EUR", IBAN), Some(DenyReason::ConsentBodyMismatch)),
        (
            "missing body field",
            &string_amount,
            parse_body(br#"{"Data":{"Initiation":{"InstructedAmount":{"Amount":"123.50","Currency":"EUR"}}}}"#).expect("JSON"),
            Some(DenyReason::ConsentBodyMismatch),
        ),
        (
            "missing detail field",
            &json!([{"type": "payment_initiation", "actions": ["initiate"], "instructedAmount": {"currency": "EUR", "amount": "123.50"}}]),
            payment_body(r#""123.50""#, "EUR", IBAN),
            Some(DenyReason::ConsentBodyMismatch),
        ),
        (
            "null on both sides is not a match of absent fields",
            &json!([{"type": "payment_initiation", "actions": ["initiate"], "instructedAmount": {"currency": "EUR", "amount": "123.50"}, "creditorAccount": {}}]),
            payment_body(r#""123.50""#, "EUR", IBAN),
            Some(DenyReason::ConsentBodyMismatch),
        ),
    ];
    for (name, details, body, want) in cases {
        let got = check_rar(&rule, Some(details), &ctx(&[], None, Some(body))).err();
        assert_eq!(got, *want, "{name}");
    }
    // No body at all (the proxy did not buffer it): never a match.
    let got = check_rar(&rule, Some(&string_amount), &ctx(&[], None, None)).err();
    assert_eq!(got, Some(DenyReason::ConsentBodyMismatch));
}

#[test]
fn rar_selection_and_reasons() {
    let rule = rar_rule(
        "authorization_details: {type: account_information, actions: [read], accounts: \"{AccountId}\"}",
        &["AccountId"],
    );
    let ai = |actions: Value, accounts: Value| json!({"type": "account_information", "actions": actions, "accounts": accounts});
    let pay = json!({"type": "payment_initiation", "actions": ["read"], "accounts": ["acc-1"]});
    let cases: &[(&str, Option<Value>, Option<DenyReason>)] = &[
        (
            "granted",
            Some(json!([ai(json!(["read"]), json!(["acc-1"]))])),
            None,
        ),
        (
            "second detail grants",
            Some(json!([
                pay.clone(),
                ai(json!(["read"]), json!(["acc-7"])),
                ai(json!(["read", "x"]), json!(["acc-1"]))
            ])),
            None,
        ),
        ("no claim", None, Some(DenyReason::ConsentMissing)),
        (
            "not an array",
            Some(json!({"type": "account_information"})),
            Some(DenyReason::ConsentMissing),
        ),
        (
            "array of strings",
            Some(json!(["account_information"])),
            Some(DenyReason::ConsentMissing),
        ),
        (
            "detail without type",
            Some(json!([ai(json!(["read"]), json!(["acc-1"])), {"actions": ["read"]}])),
            Some(DenyReason::ConsentMissing),
        ),
        (
            "other type only",
            Some(json!([pay.clone()])),
            Some(DenyReason::ConsentMissing),
        ),
        ("empty", Some(json!([])), Some(DenyReason::ConsentMissing)),
        (
            "action missing",
            Some(json!([ai(json!(["list"]), json!(["acc-1"]))])),
            Some(DenyReason::ConsentPermissionMissing),
        ),
        (
            "no actions field",
            Some(json!([{"type": "account_information", "accounts": ["acc-1"]}])),
            Some(DenyReason::ConsentPermissionMissing),
        ),
        (
            "other account",
            Some(json!([ai(json!(["read"]), json!(["acc-7"]))])),
            Some(DenyReason::ConsentResourceMismatch),
        ),
        (
            "account objects do not match",
            Some(json!([ai(json!(["read"]), json!([{"iban": "acc-1"}]))])),
            Some(DenyReason::ConsentResourceMismatch),
        ),
        (
            "furthest candidate decides",
            Some(json!([
                ai(json!(["list"]), json!(["acc-1"])),
                ai(json!(["read"]), json!(["acc-7"]))
            ])),
            Some(DenyReason::ConsentResourceMismatch),
        ),
    ];
    let params = [("AccountId", "acc-1".to_owned())];
    for (name, details, want) in cases {
        let got = check_rar(&rule, details.as_ref(), &ctx(&params, None, None));
        assert_eq!(got.as_ref().err().copied(), *want, "{name}");
    }
    let details = json!([pay, ai(json!(["read"]), json!(["acc-1"]))]);
    let m = check_rar(&rule, Some(&details), &ctx(&params, None, None)).expect("allowed");
    assert_eq!(m.index, 1);
    let info = m.audit_info();
    assert_eq!(
        (info.id.as_str(), info.source),
        ("authorization_details[1]", "authorization_details")
    );
}

#[test]
fn rar_locations_and_identifier() {
    let rule = rar_rule(
        "authorization_details: {type: payment_status, identifier: \"{PaymentId}\"}",
        &["PaymentId"],
    );
    let unchecked = rar_rule(
        "authorization_details: {type: payment_status, locations: false, identifier: \"{PaymentId}\"}",
        &["PaymentId"],
    );
    let detail = |loc: Value, id: &str| json!([{"type": "payment_status", "locations": loc, "identifier": id}]);
    let cases: &[(&str, &RarRule, Value, Option<DenyReason>)] = &[
        (
            "our origin",
            &rule,
            detail(json!(["https://api.bank.example"]), "p-1"),
            None,
        ),
        (
            "trailing slash, case, default port",
            &rule,
            detail(json!(["HTTPS://Api.Bank.Example:443/"]), "p-1"),
            None,
        ),
        (
            "one of several",
            &rule,
            detail(
                json!(["https://other.example", "https://api.bank.example"]),
                "p-1",
            ),
            None,
        ),
        (
            "other origin",
            &rule,
            detail(json!(["https://api.evil.example"]), "p-1"),
            Some(DenyReason::ConsentResourceMismatch),
        ),
        (
            "other port",
            &rule,
            detail(json!(["https://api.bank.example:8443"]), "p-1"),
            Some(DenyReason::ConsentResourceMismatch),
        ),
        (
            "http",
            &rule,
            detail(json!(["http://api.bank.example"]), "p-1"),
            Some(DenyReason::ConsentResourceMismatch),
        ),
        (
            "path-qualified",
            &rule,
            detail(json!(["https://api.bank.example/payments"]), "p-1"),
            Some(DenyReason::ConsentResourceMismatch),
        ),
        (
            "user info",
            &rule,
            detail(json!(["https://x@api.bank.example"]), "p-1"),
            Some(DenyReason::ConsentResourceMismatch),
        ),
        (
            "not an array",
            &rule,
            detail(json!("https://api.bank.example"), "p-1"),
            Some(DenyReason::ConsentResourceMismatch),
        ),
        (
            "no locations",
            &rule,
            json!([{"type": "payment_status", "identifier": "p-1"}]),
            None,
        ),
        (
            "locations off",
            &unchecked,
            detail(json!(["https://api.evil.example"]), "p-1"),
            None,
        ),
        (
            "other identifier",
            &rule,
            detail(json!(["https://api.bank.example"]), "p-2"),
            Some(DenyReason::ConsentResourceMismatch),
        ),
        (
            "no identifier",
            &rule,
            json!([{"type": "payment_status"}]),
            Some(DenyReason::ConsentResourceMismatch),
        ),
    ];
    let params = [("PaymentId", "p-1".to_owned())];
    for (name, rule, details, want) in cases {
        let got = check_rar(rule, Some(details), &ctx(&params, None, None)).err();
        assert_eq!(got, *want, "{name}");
    }
    let details = detail(json!(["https://api.bank.example"]), "p-1");
    let m = check_rar(&rule, Some(&details), &ctx(&params, None, None)).expect("allowed");
    assert_eq!(m.audit_info().id, "p-1");
}
