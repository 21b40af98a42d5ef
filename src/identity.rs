//! Identity headers for the upstream (spec §7): the verified subject, client and consent id,
//! under configurable names. They are removed from every inbound request and set only by the
//! proxy from verified values, so the API behind the sidecar can trust them.
//!
//! ```yaml
//! upstream:
//!   identity_headers: {subject: x-fapi-subject, client_id: x-fapi-client-id, consent_id: x-fapi-consent-id}
//! ```

use http::HeaderMap;
use http::header::{HeaderName, HeaderValue};
use serde::Deserialize;

/// Compiled header names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityHeaders {
    pub subject: HeaderName,
    pub client_id: HeaderName,
    pub consent_id: HeaderName,
}

/// `upstream.identity_headers:`, exactly as written; every name has a default.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawIdentityHeaders {
    pub subject: String,
    pub client_id: String,
    pub consent_id: String,
}

/// Verified values to send upstream.
#[derive(Debug, Clone, Copy)]
pub struct IdentityValues<'a> {
    pub subject: &'a str,
    pub client_id: &'a str,
    pub consent_id: Option<&'a str>,
}

/// A verified value that cannot travel as a header value (control characters, non-ASCII).
/// The inbound copies are already gone when this is returned; the caller decides (fail closed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("verified {0} cannot be sent as an HTTP header value")]
pub struct InvalidIdentityValue(pub &'static str);

/// Names the proxy owns or that carry credentials and framing; an identity header may not reuse
/// them.
const RESERVED: &[&str] = &[
    "authorization",
    "dpop",
    "host",
    "txn-token",
    "cookie",
    "content-length",
    "content-type",
    "transfer-encoding",
    "connection",
    "te",
    "upgrade",
    "forwarded",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-proto",
    "x-fapi-interaction-id",
    "x-fapi-guard-decision",
    "traceparent",
    "tracestate",
];

impl Default for RawIdentityHeaders {
    fn default() -> Self {
        Self {
            subject: "x-fapi-subject".into(),
            client_id: "x-fapi-client-id".into(),
            consent_id: "x-fapi-consent-id".into(),
        }
    }
}

impl Default for IdentityHeaders {
    fn default() -> Self {
        Self {
            subject: HeaderName::from_static("x-fapi-subject"),
            client_id: HeaderName::from_static("x-fapi-client-id"),
            consent_id: HeaderName::from_static("x-fapi-consent-id"),
        }
    }
}

impl RawIdentityHeaders {
    /// Errors read `field: message` relative to `identity_headers`.
    pub fn compile(&self) -> Result<IdentityHeaders, String> {
        let name = |field: &str, v: &str| -> Result<HeaderName, String> {
            let n = HeaderName::from_bytes(v.as_bytes())
                .map_err(|_| format!("{field}: {v:?} is not a header name"))?;
            if RESERVED.contains(&n.as_str()) {
                return Err(format!("{field}: {v:?} is reserved"));
            }
            Ok(n)
        };
        let h = IdentityHeaders {
            subject: name("subject", &self.subject)?,
            client_id: name("client_id", &self.client_id)?,
            consent_id: name("consent_id", &self.consent_id)?,
        };
        if h.subject == h.client_id || h.subject == h.consent_id || h.client_id == h.consent_id {
            return Err("subject: the three header names must differ".into());
        }
        Ok(h)
    }
}

/// Removes every inbound copy of the identity headers, then sets them from `values` when the
/// request was verified (`None`: public route, nothing to assert). Also removes look-alikes
/// spelled with `_` (`x_fapi_subject`): some servers and frameworks fold `_` into `-`, which
/// would let a client smuggle an identity header past an exact-name strip.
pub fn strip_and_set(
    headers: &mut HeaderMap,
    names: &IdentityHeaders,
    values: Option<&IdentityValues<'_>>,
) -> Result<(), InvalidIdentityValue> {
    let targets = [&names.subject, &names.client_id, &names.consent_id];
    let doomed: Vec<HeaderName> = headers
        .keys()
        .filter(|k| {
            let folded = k.as_str().replace('_', "-");
            targets.iter().any(|t| t.as_str() == folded)
        })
        .cloned()
        .collect();
    for k in doomed {
        headers.remove(k);
    }
    let Some(v) = values else {
        return Ok(());
    };
    let value = |what: &'static str, s: &str| {
        HeaderValue::from_str(s).map_err(|_| InvalidIdentityValue(what))
    };
    let subject = value("subject", v.subject)?;
    let client_id = value("client_id", v.client_id)?;
    let consent_id = v.consent_id.map(|c| value("consent_id", c)).transpose()?;
    headers.insert(names.subject.clone(), subject);
    headers.insert(names.client_id.clone(), client_id);
    if let Some(c) = consent_id {
        headers.insert(names.consent_id.clone(), c);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inbound() -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in [
            ("x-fapi-subject", "admin"),
            ("x-fapi-client-id", "evil"),
            ("x-fapi-consent-id", "c-forged"),
            ("x_fapi_subject", "admin"),
            ("x-fapi_client-id", "evil"),
            ("accept", "application/json"),
        ] {
            h.append(HeaderName::from_static(k), HeaderValue::from_static(v));
        }
        h.append("x-fapi-subject", HeaderValue::from_static("second copy"));
        h
    }

    #[test]
    fn identity_headers_are_stripped_and_set() {
        let names = IdentityHeaders::default();
        let cases: &[(&str, Option<IdentityValues<'_>>, &[(&str, &str)])] = &[
            ("public route: stripped, nothing set", None, &[]),
            (
                "verified with consent",
                Some(IdentityValues {
                    subject: "psu-9",
                    client_id: "tpp-1",
                    consent_id: Some("c-123"),
                }),
                &[
                    ("x-fapi-subject", "psu-9"),
                    ("x-fapi-client-id", "tpp-1"),
                    ("x-fapi-consent-id", "c-123"),
                ],
            ),
            (
                "verified without consent",
                Some(IdentityValues {
                    subject: "psu-9",
                    client_id: "tpp-1",
                    consent_id: None,
                }),
                &[("x-fapi-subject", "psu-9"), ("x-fapi-client-id", "tpp-1")],
            ),
        ];
        for (name, values, want) in cases {
            let mut h = inbound();
            strip_and_set(&mut h, &names, values.as_ref()).expect(name);
            let mut got: Vec<(String, String)> = h
                .iter()
                .filter(|(k, _)| k.as_str().contains("fapi"))
                .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("?").to_owned()))
                .collect();
            got.sort();
            let mut want: Vec<(String, String)> = want
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            want.sort();
            assert_eq!(got, want, "{name}");
            assert_eq!(h["accept"], "application/json", "{name}");
        }
    }

    #[test]
    fn unsendable_value_fails_after_stripping() {
        let names = IdentityHeaders::default();
        let mut h = inbound();
        let v = IdentityValues {
            subject: "psu\n9",
            client_id: "tpp-1",
            consent_id: None,
        };
        assert_eq!(
            strip_and_set(&mut h, &names, Some(&v)),
            Err(InvalidIdentityValue("subject"))
        );
        assert!(!h.contains_key("x-fapi-subject") && !h.contains_key("x-fapi-client-id"));
    }

    #[test]
    fn names_compile() {
        assert_eq!(
            RawIdentityHeaders::default().compile(),
            Ok(IdentityHeaders::default())
        );
        let with = |s: &str, c: &str| RawIdentityHeaders {
            subject: s.into(),
            client_id: c.into(),
            ..Default::default()
        };
        let custom = with("X-User", "x-client").compile().expect("custom");
        assert_eq!(custom.subject.as_str(), "x-user");
        for (name, raw) in [
            ("reserved", with("authorization", "x-client")),
            ("not a name", with("x user", "x-client")),
            ("duplicate", with("x-a", "X-A")),
        ] {
            assert!(raw.compile().is_err(), "{name}");
        }
    }
}
