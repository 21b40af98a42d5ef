//! Assurance binding (spec §5 `assurance`, §6 `assurance_insufficient`): a route may require
//! authentication context class references (`acr`, e.g. NIST SP 800-63 levels or a bank's SCA
//! URN) and a maximum age of the user authentication (`auth_time`). A failing token gets the
//! RFC 9470 §3 step-up challenge: 401 `insufficient_user_authentication` with `acr_values`
//! and/or `max_age`, so the client knows what to ask the authorization server for.

use std::time::Duration;

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::duration::HumanDuration;
use crate::reason::DenyReason;

/// A route's compiled `assurance` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssuranceRule {
    /// Acceptable `acr` values, in order of preference; empty: any (or none).
    pub acr: Box<[Box<str>]>,
    /// Longest time since `auth_time`, in whole seconds (RFC 9470 `max_age` is in seconds).
    pub max_auth_age: Option<Duration>,
    /// `acr` joined with spaces, precomputed for the challenge.
    acr_values: Option<Box<str>>,
}

/// `assurance:` in a route, exactly as written: `{acr: [urn:bank:sca], max_auth_age: 5m}`.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Assurance")]
pub struct RawAssurance {
    #[serde(default)]
    pub acr: Vec<String>,
    #[serde(default)]
    pub max_auth_age: Option<HumanDuration>,
}

impl RawAssurance {
    /// Errors read `field: message` relative to the `assurance` section.
    pub fn compile(self) -> Result<AssuranceRule, String> {
        if self.acr.is_empty() && self.max_auth_age.is_none() {
            return Err("acr: list acr values or set max_auth_age (or remove assurance)".into());
        }
        for (i, a) in self.acr.iter().enumerate() {
            // RFC 9470 §3: `acr_values` is a space-separated list inside a quoted-string, so a
            // value may hold neither spaces nor `"`/`\`, nor anything a header cannot carry.
            if a.is_empty()
                || !a
                    .bytes()
                    .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\')
            {
                return Err(format!(
                    "acr[{i}]: {a:?} must be printable ASCII without spaces, quotes or backslashes"
                ));
            }
        }
        let max_auth_age = match self.max_auth_age {
            None => None,
            Some(HumanDuration(d)) if d.as_secs() == 0 || d.subsec_nanos() != 0 => {
                return Err("max_auth_age: must be a whole number of seconds, at least 1s".into());
            }
            Some(HumanDuration(d)) => Some(d),
        };
        let acr_values = (!self.acr.is_empty()).then(|| self.acr.join(" ").into_boxed_str());
        Ok(AssuranceRule {
            acr: self.acr.into_iter().map(String::into_boxed_str).collect(),
            max_auth_age,
            acr_values,
        })
    }
}

impl AssuranceRule {
    /// RFC 9470 §3 `acr_values` for the challenge.
    pub fn acr_values(&self) -> Option<&str> {
        self.acr_values.as_deref()
    }

    /// RFC 9470 §3 `max_age` for the challenge, in seconds.
    pub fn max_age(&self) -> Option<u64> {
        self.max_auth_age.map(|d| d.as_secs())
    }
}

/// The token's `acr` (OIDC Core §2, RFC 9068 §2.2.1) and `auth_time` (NumericDate) claims.
/// A claim of the wrong type counts as absent, which fails any rule that needs it.
pub fn token_claims(extra: &Map<String, Value>) -> (Option<&str>, Option<i64>) {
    let acr = extra.get("acr").and_then(Value::as_str);
    let auth_time = extra.get("auth_time").and_then(|v| match v {
        Value::Number(n) => n.as_i64().or_else(|| {
            n.as_f64()
                .filter(|f| f.is_finite() && f.abs() < 1e15)
                .map(|f| f.floor() as i64)
        }),
        _ => None,
    });
    (acr, auth_time)
}

/// Checks a token's `acr` and `auth_time` against the route's rule (no rule: nothing to check).
/// `assurance_insufficient` when `acr` is required and missing or not listed, or when
/// `max_auth_age` is set and `auth_time` is missing or older. An `auth_time` slightly in the
/// future (clock skew at the authorization server) counts as just now.
pub fn check(
    rule: Option<&AssuranceRule>,
    acr: Option<&str>,
    auth_time: Option<i64>,
    now: i64,
) -> Result<(), DenyReason> {
    let Some(rule) = rule else {
        return Ok(());
    };
    let insufficient = DenyReason::AssuranceInsufficient;
    if !rule.acr.is_empty() && !acr.is_some_and(|a| rule.acr.iter().any(|x| **x == *a)) {
        return Err(insufficient);
    }
    if let Some(max) = rule.max_auth_age {
        let at = auth_time.ok_or(insufficient)?;
        let age = now.saturating_sub(at).max(0);
        if age.unsigned_abs() > max.as_secs() {
            return Err(insufficient);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const NOW: i64 = 1_800_000_000;

    fn rule(acr: &[&str], max_auth_age: Option<u64>) -> AssuranceRule {
        RawAssurance {
            acr: acr.iter().map(|s| s.to_string()).collect(),
            max_auth_age: max_auth_age.map(|s| HumanDuration(Duration::from_secs(s))),
        }
        .compile()
        .expect("rule")
    }

    #[test]
    fn assurance_cases() {
        let sca = rule(&["urn:bank:sca", "urn:bank:sca:high"], Some(300));
        let acr_only = rule(&["urn:bank:sca"], None);
        let age_only = rule(&[], Some(300));
        let bad = Err(DenyReason::AssuranceInsufficient);
        let cases: &[(
            &str,
            Option<&AssuranceRule>,
            Option<&str>,
            Option<i64>,
            Result<(), DenyReason>,
        )] = &[
            ("no rule", None, None, None, Ok(())),
            (
                "sca, recent",
                Some(&sca),
                Some("urn:bank:sca"),
                Some(NOW - 10),
                Ok(()),
            ),
            (
                "second acr",
                Some(&sca),
                Some("urn:bank:sca:high"),
                Some(NOW - 300),
                Ok(()),
            ),
            (
                "acr not listed",
                Some(&sca),
                Some("urn:bank:pwd"),
                Some(NOW),
                bad,
            ),
            ("acr missing", Some(&sca), None, Some(NOW), bad),
            (
                "acr case differs",
                Some(&acr_only),
                Some("URN:BANK:SCA"),
                None,
                bad,
            ),
            (
                "auth_time missing",
                Some(&sca),
                Some("urn:bank:sca"),
                None,
                bad,
            ),
            (
                "auth_time too old",
                Some(&sca),
                Some("urn:bank:sca"),
                Some(NOW - 301),
                bad,
            ),
            (
                "auth_time in the future",
                Some(&sca),
                Some("urn:bank:sca"),
                Some(NOW + 5),
                Ok(()),
            ),
            (
                "acr only, no auth_time",
                Some(&acr_only),
                Some("urn:bank:sca"),
                None,
                Ok(()),
            ),
            (
                "age only, any acr",
                Some(&age_only),
                None,
                Some(NOW - 60),
                Ok(()),
            ),
            (
                "age only, too old",
                Some(&age_only),
                Some("urn:bank:sca"),
                Some(0),
                bad,
            ),
        ];
        for (name, r, acr, at, want) in cases {
            assert_eq!(check(*r, *acr, *at, NOW), *want, "{name}");
        }
    }

    #[test]
    fn challenge_parameters() {
        let r = rule(&["urn:bank:sca", "urn:bank:sca:high"], Some(300));
        assert_eq!(r.acr_values(), Some("urn:bank:sca urn:bank:sca:high"));
        assert_eq!(r.max_age(), Some(300));
        let age_only = rule(&[], Some(60));
        assert_eq!(age_only.acr_values(), None);
    }

    #[test]
    fn claims_are_read_by_type() {
        let extra = json!({"acr": "urn:bank:sca", "auth_time": 1_700_000_000.7})
            .as_object()
            .cloned()
            .unwrap_or_default();
        assert_eq!(
            token_claims(&extra),
            (Some("urn:bank:sca"), Some(1_700_000_000))
        );
        let wrong = json!({"acr": 3, "auth_time": "yesterday"})
            .as_object()
            .cloned()
            .unwrap_or_default();
        assert_eq!(token_claims(&wrong), (None, None));
    }

    #[test]
    fn compile_errors() {
        let raw = |acr: &[&str], age: Option<Duration>| RawAssurance {
            acr: acr.iter().map(|s| s.to_string()).collect(),
            max_auth_age: age.map(HumanDuration),
        };
        let cases = [
            ("empty", raw(&[], None), "acr"),
            ("space in acr", raw(&["a b"], None), "acr[0]"),
            ("quote in acr", raw(&["ok", "a\"b"], None), "acr[1]"),
            ("zero age", raw(&[], Some(Duration::ZERO)), "max_auth_age"),
            (
                "fractional age",
                raw(&[], Some(Duration::from_millis(1500))),
                "max_auth_age",
            ),
        ];
        for (name, r, field) in cases {
            let err = r.compile().expect_err(name);
            assert!(err.starts_with(field), "{name}: {err}");
        }
    }
}
