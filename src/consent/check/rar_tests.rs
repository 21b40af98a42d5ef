//! RFC 9396 detail selection, locations/identifier/accounts binding and exact body matching.

use serde_json::json;

use super::tests::{ctx, rar_rule};
use super::*;
use crate::consent::parse_body;

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
