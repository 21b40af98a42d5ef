//! Policies (spec §5): YAML files written by API owners, compiled once into a `PolicySet` — the
//! route table the hot path matches against.

pub mod check;
mod compile;
pub mod coverage;
pub mod explain;
mod lint;
mod raw;
pub mod schema;
pub mod testing;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use http::Method;
use serde::Deserialize;

use crate::assurance::AssuranceRule;
use crate::config::InvalidConfig;
use crate::consent::ConsentRule;
use crate::delegation::DelegationRule;

pub use raw::RawPolicy;

/// How a route requires the token to be bound to the caller (RFC 9449, RFC 8705).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Binding {
    Dpop,
    Mtls,
    #[default]
    DpopOrMtls,
    /// Plain bearer tokens without `cnf` are accepted. FAPI 2.0 forbids this for resource
    /// servers; it exists for migrations and must be written explicitly.
    UnboundAllowed,
}

impl Binding {
    pub const fn allows_dpop(self) -> bool {
        matches!(self, Self::Dpop | Self::DpopOrMtls | Self::UnboundAllowed)
    }
    pub const fn allows_mtls(self) -> bool {
        matches!(self, Self::Mtls | Self::DpopOrMtls | Self::UnboundAllowed)
    }
}

/// `enforce` refuses; `audit` forwards what would be denied and records the would-be denial.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    #[default]
    Enforce,
    Audit,
}

/// One compiled route: everything a decision needs, no raw config.
#[derive(Debug)]
pub struct Route {
    pub api: Arc<str>,
    pub name: Arc<str>,
    pub method: Method,
    pub template: String,
    /// Required scopes, all of them (RFC 6749 §3.3 space-delimited `scope` must contain each).
    pub scopes: Box<[Box<str>]>,
    pub binding: Binding,
    pub public: bool,
    /// The policy's `audience`; `None` means the issuer's configured audiences.
    pub audiences: Option<Arc<[String]>>,
    pub mode: Mode,
    /// `delegation` (spec §5): `None` refuses any token carrying `act` (RFC 8693 §4.1).
    pub delegation: Option<DelegationRule>,
    /// `purpose` (spec §5): allowed purposes; `None` means no purpose check.
    pub purpose: Option<Box<[String]>>,
    /// `assurance` (spec §5, RFC 9470): `None` means no `acr`/`auth_time` requirement.
    pub assurance: Option<AssuranceRule>,
    /// What the customer must have consented to (spec §1 point 3); `None`: no consent check.
    pub consent: Option<ConsentRule>,
    /// `signatures` (RFC 9421, FAPI 2.0 Message Signing): both halves `off` unless the route
    /// says otherwise.
    pub signatures: crate::signature::SignatureRule,
}

/// The compiled route table of every loaded policy file.
#[derive(Debug)]
pub struct PolicySet {
    routes: Vec<Arc<Route>>,
    router: matchit::Router<usize>,
    /// Per path template: the methods defined on it and the route index for each.
    methods: Vec<Vec<(Method, usize)>>,
    revision: String,
    apis: Vec<Arc<str>>,
}

/// A route found for a request, with its path parameters (still percent-encoded; see
/// `path::decode_param`).
pub struct RouteMatch<'a> {
    pub route: &'a Arc<Route>,
    pub params: matchit::Params<'a, 'a>,
}

impl PolicySet {
    /// Loads every policy file named by `paths` (files, or directories scanned for `*.yaml` /
    /// `*.yml`, skipping `*_test.yaml`). All errors are reported, not just the first.
    pub fn load(paths: &[PathBuf]) -> Result<Self, Vec<InvalidConfig>> {
        let mut sources = Vec::new();
        let mut errors = Vec::new();
        for p in policy_files(paths, &mut errors) {
            match std::fs::read_to_string(&p) {
                Ok(src) => sources.push((p, src)),
                Err(e) => errors.push(InvalidConfig::new(&p, "", format!("cannot read: {e}"))),
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Self::compile(&sources)
    }

    /// Compiles policy sources given as (file name, YAML text).
    pub fn compile(sources: &[(PathBuf, String)]) -> Result<Self, Vec<InvalidConfig>> {
        compile::compile(sources)
    }

    /// Finds the route for a normalized path and method. `None` → `route_not_found`.
    pub fn lookup<'a>(&'a self, method: &Method, path: &'a str) -> Option<RouteMatch<'a>> {
        let m = self.router.at(path).ok()?;
        let (_, idx) = self.methods[*m.value].iter().find(|(mm, _)| mm == method)?;
        Some(RouteMatch {
            route: &self.routes[*idx],
            params: m.params,
        })
    }

    pub fn routes(&self) -> &[Arc<Route>] {
        &self.routes
    }

    /// The first route whose consent rule reads consent records, which needs the config
    /// `consent:` section: the caller refuses to start without it.
    pub fn needs_consent_service(&self) -> Option<&Arc<Route>> {
        self.routes.iter().find(|r| {
            r.consent
                .as_ref()
                .is_some_and(ConsentRule::requires_service)
        })
    }

    pub fn apis(&self) -> &[Arc<str>] {
        &self.apis
    }

    /// `sha256:<hex>` over every source file, in load order: the audit `policy_revision`.
    pub fn revision(&self) -> &str {
        &self.revision
    }
}

/// Expands directories into their policy files, sorted for a stable revision.
pub fn policy_files(paths: &[PathBuf], errors: &mut Vec<InvalidConfig>) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for p in paths {
        if p.is_dir() {
            match std::fs::read_dir(p) {
                Ok(rd) => {
                    let mut found: Vec<PathBuf> = rd
                        .filter_map(|e| e.ok().map(|e| e.path()))
                        .filter(|f| is_policy_file(f))
                        .collect();
                    found.sort();
                    files.extend(found);
                }
                Err(e) => errors.push(InvalidConfig::new(p, "", format!("cannot list: {e}"))),
            }
        } else if p.exists() {
            files.push(p.clone());
        } else {
            errors.push(InvalidConfig::new(p, "", "no such file or directory"));
        }
    }
    files
}

pub(crate) fn is_policy_file(f: &Path) -> bool {
    let name = f.file_name().and_then(|n| n.to_str()).unwrap_or("");
    (name.ends_with(".yaml") || name.ends_with(".yml"))
        && !name.ends_with("_test.yaml")
        && !name.ends_with("_test.yml")
        && !name.starts_with('.')
}

#[cfg(test)]
mod tests;
