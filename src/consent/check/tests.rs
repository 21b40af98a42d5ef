use http::HeaderValue;
use serde_json::json;

use super::*;
use crate::consent::RawConsentRule;
use crate::consent::rule::ConsentRule;

pub(super) const NOW: i64 = 1_800_000_000;
pub(super) const ORIGIN: &str = "https://api.bank.example";

pub(super) fn compile(yaml: &str, params: &[&str]) -> ConsentRule {
    serde_yaml::from_str::<RawConsentRule>(yaml)
        .expect("YAML")
        .compile(params)
        .expect("compiles")
}

pub(super) fn record_rule(yaml: &str) -> RecordRule {
    match compile(yaml, &["AccountId"]) {
        ConsentRule::Record(r) => r,
        ConsentRule::Rar(_) => panic!("record rule expected"),
    }
}

pub(super) fn rar_rule(yaml: &str, params: &[&str]) -> RarRule {
    match compile(yaml, params) {
        ConsentRule::Rar(r) => r,
        ConsentRule::Record(_) => panic!("rar rule expected"),
    }
}

pub(super) fn ctx<'a>(
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

pub(super) fn good_record() -> ConsentRecord {
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
