//! Identity headers for the upstream (spec §7): the verified subject, client and consent id,
//! under configurable names. Every inbound copy (and `_` look-alike) is removed and the verified
//! values are set last, both in `proxy::headers::UpstreamHeaders::prepare`, so the API behind
//! the sidecar can trust them.
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

/// The verified identity as header fields, validated before the decision is recorded so that
/// an unsendable value is refused (fail closed) rather than dropped. Setting them is left to
/// `proxy::headers`, which does it after every removal (so nothing a client sends, a
/// `Connection` option included, can delete or forge them).
#[derive(Debug, Clone, Default)]
pub struct IdentityFields(Vec<(HeaderName, HeaderValue)>);

impl IdentityHeaders {
    /// The three names, for stripping every inbound copy.
    pub fn names(&self) -> [&HeaderName; 3] {
        [&self.subject, &self.client_id, &self.consent_id]
    }

    /// Header fields carrying `v`, or which value cannot travel as a header.
    pub fn fields(&self, v: &IdentityValues<'_>) -> Result<IdentityFields, InvalidIdentityValue> {
        let value = |what: &'static str, s: &str| {
            HeaderValue::from_str(s).map_err(|_| InvalidIdentityValue(what))
        };
        let mut f = Vec::with_capacity(3);
        f.push((self.subject.clone(), value("subject", v.subject)?));
        f.push((self.client_id.clone(), value("client_id", v.client_id)?));
        if let Some(c) = v.consent_id {
            f.push((self.consent_id.clone(), value("consent_id", c)?));
        }
        Ok(IdentityFields(f))
    }
}

impl IdentityFields {
    /// Sets each field, replacing whatever is there.
    pub fn set(&self, headers: &mut HeaderMap) {
        for (n, v) in &self.0 {
            headers.insert(n.clone(), v.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_fields_replace_inbound_copies() {
        let names = IdentityHeaders::default();
        let cases: &[(&str, IdentityValues<'_>, &[(&str, &str)])] = &[
            (
                "verified with consent",
                IdentityValues {
                    subject: "psu-9",
                    client_id: "tpp-1",
                    consent_id: Some("c-123"),
                },
                &[
                    ("x-fapi-subject", "psu-9"),
                    ("x-fapi-client-id", "tpp-1"),
                    ("x-fapi-consent-id", "c-123"),
                ],
            ),
            (
                "verified without consent",
                IdentityValues {
                    subject: "psu-9",
                    client_id: "tpp-1",
                    consent_id: None,
                },
                &[("x-fapi-subject", "psu-9"), ("x-fapi-client-id", "tpp-1")],
            ),
        ];
        for (name, values, want) in cases {
            let mut h = HeaderMap::new();
            h.insert("x-fapi-subject", HeaderValue::from_static("forged"));
            names.fields(values).expect(name).set(&mut h);
            let mut got: Vec<(String, String)> = h
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("?").to_owned()))
                .collect();
            got.sort();
            let mut want: Vec<(String, String)> = want
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            want.sort();
            assert_eq!(got, want, "{name}");
        }
    }

    #[test]
    fn unsendable_value_is_refused() {
        let names = IdentityHeaders::default();
        let v = IdentityValues {
            subject: "psu\n9",
            client_id: "tpp-1",
            consent_id: None,
        };
        assert_eq!(
            names.fields(&v).map(|_| ()),
            Err(InvalidIdentityValue("subject"))
        );
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
