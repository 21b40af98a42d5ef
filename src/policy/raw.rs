//! Raw serde structs for policy files (spec §5), exactly as API owners write them.

use serde::Deserialize;

use super::{Binding, Mode};
use crate::assurance::RawAssurance;
use crate::consent::RawConsentRule;
use crate::delegation::RawDelegation;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPolicy {
    pub api: String,
    #[serde(default)]
    pub audience: Option<OneOrMany>,
    #[serde(default)]
    pub defaults: RawDefaults,
    #[serde(default)]
    pub mode: Mode,
    pub routes: Vec<RawRoute>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawDefaults {
    #[serde(default)]
    pub binding: Option<Binding>,
    #[serde(default)]
    pub scopes: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    pub name: String,
    pub method: String,
    pub path: String,
    #[serde(default)]
    pub scopes: Option<Vec<String>>,
    #[serde(default)]
    pub binding: Option<Binding>,
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
    /// Spec §5 route `consent` section.
    #[serde(default)]
    pub consent: Option<RawConsentRule>,
}

#[derive(Debug, Deserialize)]
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
