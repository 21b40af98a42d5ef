//! The route `consent:` section (spec §5): raw serde struct as API owners write it, compiled once
//! into a [`ConsentRule`]. Every mistake is a load error naming the sub-field; nothing is parsed
//! at request time.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

/// Statuses accepted when the rule names none: the UK Open Banking "authorised" state.
const DEFAULT_STATUS: &str = "Authorised";

/// `consent:` of a route, before compilation.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Consent")]
pub struct RawConsentRule {
    /// Token claim holding the consent id (`openbanking_intent_id`, `consent_id`, `grant_id`).
    #[serde(default)]
    pub claim: Option<String>,
    /// Request header holding the consent id (Berlin Group `Consent-ID`).
    #[serde(default)]
    pub header: Option<String>,
    /// Allowed record statuses; default `[Authorised]`.
    #[serde(default)]
    pub status: Option<Vec<String>>,
    /// Permissions the record must all grant.
    #[serde(default)]
    pub permissions: Option<Vec<String>>,
    /// Consent-record field → request source. v1: `accounts: "{param}" | "query:name"`.
    #[serde(default)]
    pub resource: Option<BTreeMap<String, String>>,
    /// RFC 9396 `authorization_details` carried in the token.
    #[serde(default)]
    pub authorization_details: Option<RawRar>,
}

/// `consent.authorization_details:` of a route, before compilation.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "AuthorizationDetailsRule")]
pub struct RawRar {
    #[serde(rename = "type")]
    pub detail_type: String,
    #[serde(default)]
    pub actions: Option<Vec<String>>,
    #[serde(default = "yes")]
    pub locations: bool,
    #[serde(default)]
    pub identifier: Option<String>,
    #[serde(default)]
    pub accounts: Option<String>,
    /// JSON pointer in the request body → JSON pointer in the detail.
    #[serde(default)]
    pub match_body: Option<BTreeMap<String, String>>,
}

fn yes() -> bool {
    true
}

/// A compiled route consent rule: exactly one source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConsentRule {
    Record(RecordRule),
    Rar(RarRule),
}

/// Consent record from the consent service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordRule {
    pub claim: Option<Box<str>>,
    /// Lower-case header name (HTTP field names are case-insensitive, RFC 9110 §5.1).
    pub header: Option<http::HeaderName>,
    pub status: Box<[Box<str>]>,
    pub permissions: Box<[Box<str>]>,
    /// Where the account id this request touches comes from; it must be one of the record's
    /// `accounts`.
    pub accounts: Option<ParamSource>,
}

/// RFC 9396 authorization details in the token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RarRule {
    /// RFC 9396 §2: the detail `type` this route is about.
    pub detail_type: Box<str>,
    /// RFC 9396 §2.2 `actions`: every one must be granted.
    pub actions: Box<[Box<str>]>,
    /// RFC 9396 §2.2 `locations`: when the detail names locations, one must be our origin.
    pub locations: bool,
    /// RFC 9396 §2.2 `identifier` must equal this request value.
    pub identifier: Option<ParamSource>,
    /// This request value must be one of the detail's `accounts` (strings).
    pub accounts: Option<ParamSource>,
    pub match_body: Box<[(JsonPointer, JsonPointer)]>,
}

/// A request value a rule binds to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParamSource {
    /// `"{name}"`: a path parameter of the route template (percent-decoded).
    Path(Box<str>),
    /// `"query:name"`: a query parameter (form-decoded); absent or repeated never matches.
    Query(Box<str>),
}

/// An RFC 6901 JSON pointer, syntax-checked at load. Never the empty (whole document) pointer:
/// comparing whole documents is not what an API owner means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonPointer {
    text: Box<str>,
    /// Reference tokens, unescaped once at load so evaluation allocates nothing.
    tokens: Box<[Box<str>]>,
}

impl ConsentRule {
    /// Only routes comparing body fields need the body buffered (bounded by
    /// `limits.max_body_bytes`); every other route streams it.
    pub fn needs_body(&self) -> bool {
        matches!(self, Self::Rar(r) if !r.match_body.is_empty())
    }

    /// Whether the consent service (the config `consent:` section) is needed: a route with a
    /// record rule while none is configured must fail at startup, not at request time.
    pub fn requires_service(&self) -> bool {
        matches!(self, Self::Record(_))
    }

    /// `record` or `authorization_details`: the audit `consent.source` (spec §8).
    pub fn source(&self) -> &'static str {
        match self {
            Self::Record(_) => "record",
            Self::Rar(_) => "authorization_details",
        }
    }
}

impl RawConsentRule {
    /// Compiles against the route's path parameter names. Errors are `(sub-field, message)`,
    /// the sub-field relative to `consent` (e.g. `consent.permissions`).
    pub fn compile(self, route_params: &[&str]) -> Result<ConsentRule, (String, String)> {
        let err = |sub: &str, msg: String| (format!("consent.{sub}"), msg);
        let record_source = self.claim.is_some() || self.header.is_some();
        match (record_source, self.authorization_details) {
            (true, Some(_)) => Err(err(
                "authorization_details",
                "use either a consent record (claim/header) or authorization_details, not both"
                    .into(),
            )),
            (false, None) => Err((
                "consent".into(),
                "needs a source: claim and/or header (consent record), or authorization_details"
                    .into(),
            )),
            (false, Some(rar)) => {
                for (field, set) in [
                    ("status", self.status.is_some()),
                    ("permissions", self.permissions.is_some()),
                    ("resource", self.resource.is_some()),
                ] {
                    if set {
                        return Err(err(
                            field,
                            "applies to consent records; with authorization_details use \
                             actions/identifier/accounts"
                                .into(),
                        ));
                    }
                }
                rar.compile(route_params)
                    .map(ConsentRule::Rar)
                    .map_err(|(s, m)| err(&format!("authorization_details.{s}"), m))
            }
            (true, None) => {
                let claim = match self.claim {
                    Some(c) if c.trim().is_empty() => {
                        return Err(err("claim", "must name a token claim".into()));
                    }
                    c => c.map(String::into_boxed_str),
                };
                let header = match self.header {
                    None => None,
                    Some(h) => Some(
                        http::HeaderName::from_bytes(h.as_bytes())
                            .map_err(|_| err("header", format!("{h:?} is not a header name")))?,
                    ),
                };
                let status = match self.status {
                    None => vec![DEFAULT_STATUS.to_owned()],
                    Some(s) => s,
                };
                let status = names(status).map_err(|m| err("status", m))?;
                let permissions = match self.permissions {
                    None => Box::default(),
                    Some(p) => names(p).map_err(|m| err("permissions", m))?,
                };
                let mut accounts = None;
                if let Some(res) = self.resource {
                    if res.is_empty() {
                        return Err(err("resource", "must bind at least one field".into()));
                    }
                    for (field, src) in res {
                        match field.as_str() {
                            "accounts" => {
                                accounts = Some(
                                    ParamSource::parse(&src, route_params)
                                        .map_err(|m| err("resource.accounts", m))?,
                                );
                            }
                            other => {
                                return Err(err(
                                    "resource",
                                    format!(
                                        "unknown consent field {other:?} (supported: accounts)"
                                    ),
                                ));
                            }
                        }
                    }
                }
                Ok(ConsentRule::Record(RecordRule {
                    claim,
                    header,
                    status,
                    permissions,
                    accounts,
                }))
            }
        }
    }
}

impl RawRar {
    fn compile(self, route_params: &[&str]) -> Result<RarRule, (String, String)> {
        let err = |sub: &str, msg: String| (sub.to_owned(), msg);
        if self.detail_type.trim().is_empty() {
            return Err(err(
                "type",
                "must name the detail type (RFC 9396 §2)".into(),
            ));
        }
        let actions = match self.actions {
            None => Box::default(),
            Some(a) => names(a).map_err(|m| err("actions", m))?,
        };
        let param = |field: &str, v: Option<String>| {
            v.map(|s| ParamSource::parse(&s, route_params).map_err(|m| err(field, m)))
                .transpose()
        };
        let identifier = param("identifier", self.identifier)?;
        let accounts = param("accounts", self.accounts)?;
        let mut match_body = Vec::new();
        if let Some(m) = self.match_body {
            if m.is_empty() {
                return Err(err("match_body", "must map at least one field".into()));
            }
            for (body, detail) in m {
                let b = JsonPointer::parse(&body).map_err(|e| err("match_body", e))?;
                let d = JsonPointer::parse(&detail)
                    .map_err(|e| err(&format!("match_body.{body}"), e))?;
                match_body.push((b, d));
            }
        }
        Ok(RarRule {
            detail_type: self.detail_type.into_boxed_str(),
            actions,
            locations: self.locations,
            identifier,
            accounts,
            match_body: match_body.into_boxed_slice(),
        })
    }
}

impl ParamSource {
    /// `"{name}"` (a parameter of the route template) or `"query:name"`.
    pub fn parse(s: &str, route_params: &[&str]) -> Result<Self, String> {
        if let Some(name) = s.strip_prefix('{').and_then(|n| n.strip_suffix('}')) {
            if route_params.contains(&name) {
                return Ok(Self::Path(name.into()));
            }
            return Err(format!(
                "{s:?}: the route path has no parameter {{{name}}} (it has: {})",
                if route_params.is_empty() {
                    "none".to_owned()
                } else {
                    route_params.join(", ")
                }
            ));
        }
        if let Some(name) = s.strip_prefix("query:") {
            if !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_graphic() && !b"&=#+%".contains(&b))
            {
                return Ok(Self::Query(name.into()));
            }
            return Err(format!(
                "{s:?}: query parameter name must be plain printable ASCII"
            ));
        }
        Err(format!(
            "{s:?}: expected \"{{param}}\" (a path parameter) or \"query:name\""
        ))
    }
}

impl JsonPointer {
    /// RFC 6901 §3: `*( "/" reference-token )`, where `~` only appears as `~0` or `~1`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let Some(rest) = s.strip_prefix('/') else {
            return Err(format!(
                "{s:?} is not a JSON pointer (RFC 6901: starts with '/')"
            ));
        };
        let mut chars = s.chars();
        while let Some(c) = chars.next() {
            if c == '~' && !matches!(chars.next(), Some('0' | '1')) {
                return Err(format!(
                    "{s:?}: '~' must be escaped as ~0 ('~') or ~1 ('/') (RFC 6901 §3)"
                ));
            }
        }
        // RFC 6901 §4: `~1` → `/` first, then `~0` → `~` (so `~01` is `~1`, not `/`).
        let tokens = rest
            .split('/')
            .map(|t| t.replace("~1", "/").replace("~0", "~").into_boxed_str())
            .collect();
        Ok(Self {
            text: s.into(),
            tokens,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// RFC 6901 §4 evaluation. An array index is `0` or digits without a leading zero; `-`
    /// (past the end) never resolves.
    pub fn resolve<'v>(&self, doc: &'v Value) -> Option<&'v Value> {
        self.tokens.iter().try_fold(doc, |v, t| match v {
            Value::Object(m) => m.get(&**t),
            Value::Array(a) => {
                let canonical = &**t == "0" || (!t.starts_with('0') && !t.is_empty());
                if !canonical || !t.bytes().all(|b| b.is_ascii_digit()) {
                    return None;
                }
                a.get(t.parse::<usize>().ok()?)
            }
            _ => None,
        })
    }
}

/// A non-empty list of non-empty names, duplicates dropped.
fn names(list: Vec<String>) -> Result<Box<[Box<str>]>, String> {
    if list.is_empty() {
        return Err("must not be empty (leave the field out instead)".into());
    }
    let mut out: Vec<Box<str>> = Vec::with_capacity(list.len());
    for n in list {
        if n.trim().is_empty() {
            return Err("names must not be empty".into());
        }
        if !out.iter().any(|x| **x == *n) {
            out.push(n.into_boxed_str());
        }
    }
    Ok(out.into_boxed_slice())
}

#[cfg(test)]
mod tests;
