//! Raw serde structs for policy files (docs/policy.md), exactly as API owners write them.

use serde::Deserialize;

use super::{Binding, Mode};
use crate::assurance::RawAssurance;
use crate::consent::RawConsentRule;
use crate::delegation::RawDelegation;

/// A policy file: one API's routes and what each requires.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Policy")]
pub struct RawPolicy {
    /// Unique name of the API, used in logs, metrics and audit records ([A-Za-z0-9_.-]).
    pub api: String,
    /// Required token audience, one or a list; absent: the issuer's configured audiences.
    #[serde(default)]
    pub audience: Option<OneOrMany>,
    #[serde(default)]
    pub defaults: RawDefaults,
    /// `enforce` refuses; `audit` forwards what would be denied and records it.
    #[serde(default)]
    pub mode: Mode,
    pub routes: Vec<RawRoute>,
}

/// Settings every route inherits unless it sets its own.
#[derive(Debug, Deserialize, Default, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Defaults")]
pub struct RawDefaults {
    /// How tokens must be bound to the caller (RFC 9449 DPoP, RFC 8705 mTLS).
    #[serde(default)]
    pub binding: Option<Binding>,
    /// Scopes a token must all carry (RFC 6749 §3.3 scope tokens).
    #[serde(default)]
    pub scopes: Option<Vec<String>>,
}

/// One route: a method and path template, and the checks a request on it must pass.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Route")]
pub struct RawRoute {
    /// Unique in the API ([A-Za-z0-9_.-]); a metric label.
    pub name: String,
    #[schemars(schema_with = "method_schema")]
    pub method: String,
    /// Normalized path template; `{param}` is one whole segment, `{*rest}` only last.
    pub path: String,
    /// Overrides `defaults.scopes`.
    #[serde(default)]
    pub scopes: Option<Vec<String>>,
    /// Overrides `defaults.binding`.
    #[serde(default)]
    pub binding: Option<Binding>,
    /// No token checks (still audited); takes none of the token sections.
    #[serde(default)]
    pub public: bool,
    /// Per-route rollout mode; absent: the policy's `mode`.
    #[serde(default)]
    pub mode: Option<Mode>,
    /// RFC 8693 `act` chain rule; absent: tokens with `act` are refused.
    #[serde(default)]
    pub delegation: Option<RawDelegation>,
    /// Allowed purposes (consent's or token's).
    #[serde(default)]
    pub purpose: Option<Vec<String>>,
    /// RFC 9470 step-up: required `acr` values and `auth_time` age.
    #[serde(default)]
    pub assurance: Option<RawAssurance>,
    /// What the consent behind the request must allow: a consent record from the bank's
    /// consent service, or the RAR `authorization_details` in the token.
    #[serde(default)]
    pub consent: Option<RawConsentRule>,
    /// RFC 9421 / FAPI 2.0 Message Signing: request signatures to verify, responses to sign.
    #[serde(default)]
    pub signatures: Option<crate::signature::RawSignatureRule>,
}

/// HTTP methods a route may name (HEAD is not implied by GET).
fn method_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "string",
        "enum": ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
    })
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    pub fn into_vec(self) -> Vec<String> {
        match self {
            Self::One(s) => vec![s],
            Self::Many(v) => v,
        }
    }
}
