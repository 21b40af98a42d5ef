//! Purpose binding (spec §1 point 5, §5 `purpose`): the purpose the data is used for must be
//! one the route allows. The consent record's purpose, when it has one, is authoritative (the
//! customer agreed to it); otherwise the token's purpose claim is used.

use serde_json::{Map, Value};

use crate::reason::DenyReason;

/// The token claim read for the purpose unless configured otherwise.
pub const DEFAULT_CLAIM: &str = "purpose";

/// Compiles a route's `purpose: [...]` list. Errors read `message` (the field is `purpose`).
pub fn compile(raw: Vec<String>) -> Result<Box<[String]>, String> {
    if raw.is_empty() {
        return Err("an empty list allows no purpose at all; omit purpose instead".into());
    }
    if let Some((i, bad)) = raw
        .iter()
        .enumerate()
        .find(|(_, p)| p.is_empty() || p.chars().any(|c| c.is_whitespace() || c.is_control()))
    {
        return Err(format!(
            "[{i}] {bad:?} must be a non-empty name without spaces"
        ));
    }
    Ok(raw.into_boxed_slice())
}

/// The token's purpose claim (`claim`, normally [`DEFAULT_CLAIM`]); a non-string counts as
/// absent.
pub fn token_purpose<'a>(extra: &'a Map<String, Value>, claim: &str) -> Option<&'a str> {
    extra.get(claim).and_then(Value::as_str)
}

/// Checks the effective purpose against the route's list: the consent record's when it has
/// one, else the token's. Missing or not listed → `purpose_not_allowed`. Exact,
/// case-sensitive comparison.
pub fn check(
    allowed: &[String],
    token_purpose: Option<&str>,
    consent_purpose: Option<&str>,
) -> Result<(), DenyReason> {
    match consent_purpose.or(token_purpose) {
        Some(p) if allowed.iter().any(|a| a == p) => Ok(()),
        _ => Err(DenyReason::PurposeNotAllowed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn purpose_cases() {
        let allowed = compile(vec![
            "payment-initiation".into(),
            "account-information".into(),
        ])
        .expect("list");
        let bad = Err(DenyReason::PurposeNotAllowed);
        let cases: &[(&str, Option<&str>, Option<&str>, Result<(), DenyReason>)] = &[
            (
                "token purpose allowed",
                Some("payment-initiation"),
                None,
                Ok(()),
            ),
            ("token purpose not allowed", Some("marketing"), None, bad),
            ("missing everywhere", None, None, bad),
            (
                "consent purpose allowed",
                None,
                Some("account-information"),
                Ok(()),
            ),
            (
                "consent wins over token",
                Some("marketing"),
                Some("account-information"),
                Ok(()),
            ),
            (
                "consent not allowed, token allowed",
                Some("payment-initiation"),
                Some("marketing"),
                bad,
            ),
            ("case differs", Some("Payment-Initiation"), None, bad),
        ];
        for (name, token, consent, want) in cases {
            assert_eq!(check(&allowed, *token, *consent), *want, "{name}");
        }
    }

    #[test]
    fn claim_and_compile() {
        let extra = serde_json::json!({"purpose": "account-information", "purp": 3});
        let m = extra.as_object().cloned().unwrap_or_default();
        assert_eq!(
            token_purpose(&m, DEFAULT_CLAIM),
            Some("account-information")
        );
        assert_eq!(token_purpose(&m, "purp"), None);
        assert!(compile(vec![]).is_err());
        assert!(compile(vec!["ok".into(), "two words".into()]).is_err());
        assert!(compile(vec!["".into()]).is_err());
    }
}
