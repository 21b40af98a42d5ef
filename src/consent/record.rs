//! The consent record contract (spec §5): what `GET consent.url` returns.

use serde::{Deserialize, Deserializer};
use serde_json::Value;

use super::rfc3339::parse_rfc3339;
use crate::audit::ConsentInfo;

/// One consent as the bank's consent service describes it. Unknown fields are tolerated (the
/// service owns the format and may add to it); the fields we check are typed, so a record whose
/// `status` is a number or whose `expires_at` is not RFC 3339 fails to parse. The client treats
/// such a record as a dependency fault (`dependency_unavailable`, fail closed): the consent
/// service is broken, not the customer's consent.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ConsentRecord {
    /// Absent in hand-written fixtures (policy tests key consents by id); when present the client
    /// checks it equals the id asked for.
    #[serde(default)]
    pub id: Option<String>,
    pub status: String,
    pub client_id: String,
    /// The PSU the consent belongs to; when present it must equal the token's `sub`.
    #[serde(default)]
    pub subject: Option<String>,
    /// RFC 3339 in the record, Unix seconds here.
    #[serde(default, deserialize_with = "rfc3339_opt")]
    pub expires_at: Option<i64>,
    #[serde(default)]
    pub permissions: Vec<String>,
    #[serde(default)]
    pub accounts: Vec<String>,
    #[serde(default)]
    pub purpose: Option<String>,
    /// Carried for the audit trail and later checks; not evaluated by record rules in v1.
    #[serde(default)]
    pub authorization_details: Option<Value>,
}

impl ConsentRecord {
    /// Parses a consent service response body.
    pub fn from_json(body: &[u8]) -> Result<Self, String> {
        serde_json::from_slice(body).map_err(|e| format!("malformed consent record: {e}"))
    }

    /// The audit `consent` object (spec §8) for this record, fetched by `id`.
    pub fn audit_info(&self, id: &str) -> ConsentInfo {
        ConsentInfo {
            id: id.to_owned(),
            source: "record",
            status: Some(self.status.clone()),
            permissions: Some(self.permissions.clone()),
        }
    }
}

fn rfc3339_opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    match Option::<String>::deserialize(d)? {
        None => Ok(None),
        Some(s) => parse_rfc3339(&s)
            .map(Some)
            .ok_or_else(|| serde::de::Error::custom(format!("expires_at {s:?} is not RFC 3339"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_spec_example_and_tolerates_unknown_fields() {
        let body = br#"{"id":"c-123","status":"Authorised","client_id":"tpp-1","subject":"psu-9",
            "expires_at":"2026-12-31T00:00:00Z","permissions":["ReadAccountsDetail"],
            "accounts":["acc-1","acc-2"],"purpose":"account-information",
            "authorization_details":[],"x-bank-extension":{"anything":1}}"#;
        let r = ConsentRecord::from_json(body).expect("parses");
        assert_eq!(r.id.as_deref(), Some("c-123"));
        assert_eq!(r.expires_at, Some(1_798_675_200));
        assert_eq!(r.accounts, ["acc-1", "acc-2"]);
        assert_eq!(r.subject.as_deref(), Some("psu-9"));
        let info = r.audit_info("c-123");
        assert_eq!(
            (info.id.as_str(), info.source, info.status.as_deref()),
            ("c-123", "record", Some("Authorised"))
        );
        assert_eq!(
            info.permissions,
            Some(vec!["ReadAccountsDetail".to_owned()])
        );
    }

    #[test]
    fn minimal_record_defaults() {
        let r = ConsentRecord::from_json(br#"{"status":"Authorised","client_id":"tpp-1"}"#)
            .expect("parses");
        assert!(r.permissions.is_empty() && r.accounts.is_empty());
        assert_eq!((r.expires_at, r.subject), (None, None));
    }

    #[test]
    fn malformed_records_are_refused() {
        let cases: &[(&str, &[u8])] = &[
            ("not json", b"<html>"),
            ("no status", br#"{"client_id":"tpp-1"}"#),
            ("no client", br#"{"status":"Authorised"}"#),
            (
                "bad expiry",
                br#"{"status":"Authorised","client_id":"t","expires_at":"tomorrow"}"#,
            ),
            (
                "numeric expiry",
                br#"{"status":"Authorised","client_id":"t","expires_at":1798675200}"#,
            ),
            (
                "accounts not strings",
                br#"{"status":"Authorised","client_id":"t","accounts":[1]}"#,
            ),
            ("array", b"[]"),
        ];
        for (name, body) in cases {
            assert!(ConsentRecord::from_json(body).is_err(), "{name}");
        }
    }
}
