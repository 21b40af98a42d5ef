//! The report as data: what `--format json` prints (schema: `docs/audit-report.schema.json`)
//! and what the text and HTML renderers read. Timestamps are the audit trail's RFC 3339 form.

use serde::Serialize;

/// Bumped when a field changes meaning or disappears; additions keep the version.
pub const REPORT_VERSION: u32 = 1;

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub report_version: u32,
    pub window: Window,
    pub policies: PolicyInfo,
    pub integrity: Integrity,
    pub totals: Totals,
    pub deny_reasons: Vec<ReasonCount>,
    pub timeline: Timeline,
    /// Clients first, then actors; each by id.
    pub principals: Vec<Principal>,
    /// Ranked: severity, then the principal's score (worst first), then id.
    pub findings: Vec<Finding>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Window {
    pub since: String,
    pub as_of: String,
    pub seconds: i64,
    pub max_token_lifetime_seconds: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct PolicyInfo {
    /// Revisions given with `--policies`, in order; empty: route needs unknown.
    pub revisions: Vec<String>,
    /// Revisions named by the counted records.
    pub revisions_seen: Vec<String>,
    /// Decision records whose revision was not given (judged by the last one given).
    pub records_with_other_revision: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Integrity {
    pub files: Vec<FileStatus>,
    pub chains: Vec<ChainInfo>,
    pub untrusted_files: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct FileStatus {
    pub path: String,
    /// `trusted`, `untrusted` (failed verification, forks a chain, or borders a gap inside its
    /// log) or `duplicate` (same chain segment as another file: counted once).
    pub status: &'static str,
    pub records: u64,
    pub first_seq: Option<u64>,
    pub last_seq: Option<u64>,
    pub first_ts: Option<String>,
    pub last_ts: Option<String>,
    /// Index into `chains` for trusted files.
    pub chain: Option<usize>,
    /// Why it is untrusted (the first broken line) or whose duplicate it is.
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ChainInfo {
    /// In chain order.
    pub files: Vec<String>,
    /// `genesis` (a brand-new log) or `anchor` (continues a record not among the files given,
    /// taken on trust, like `audit verify`); `empty` for a file without records.
    pub starts: &'static str,
    pub anchor: Option<String>,
    pub records: u64,
    pub first_seq: Option<u64>,
    pub last_seq: Option<u64>,
    /// Hash of the chain's last line: keep it to detect a later truncation.
    pub head: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Totals {
    /// Records in counted (trusted, non-duplicate) files.
    pub records: u64,
    pub decisions: u64,
    pub decisions_in_window: u64,
    pub allows: u64,
    pub denies: u64,
    /// Decisions in the window without a verified client (no or invalid token, public routes).
    pub unattributed: u64,
    pub before_window: u64,
    pub after_as_of: u64,
    pub revocations: u64,
    /// Lines that verified but could not be read as records (bad `ts`, wrong field types).
    pub unreadable_records: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ReasonCount {
    pub reason: String,
    pub count: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Timeline {
    pub bucket_seconds: i64,
    pub buckets: Vec<Bucket>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Bucket {
    pub start: String,
    pub allow: u64,
    pub deny: u64,
}

/// When something was seen, how often, and one interaction to look up.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Evidence {
    pub count: u64,
    pub first_seen: Option<String>,
    pub last_seen: Option<String>,
    pub example_interaction_id: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Principal {
    /// `client` (token `client_id`) or `actor` (an `act.sub` of a delegation chain, at any hop).
    pub kind: &'static str,
    pub id: String,
    /// Least-privilege score, 0–100 (100: uses everything it holds, clean token hygiene).
    pub score: u32,
    pub dormant: bool,
    /// Every call in the counted files, in or before the window.
    pub seen: Evidence,
    pub calls: u64,
    pub allows: u64,
    pub denies: u64,
    pub calls_before_window: u64,
    pub scopes: Usage,
    pub consent_permissions: Usage,
    pub routes: Vec<RouteUse>,
    pub deny_reasons: Vec<ReasonEvidence>,
    pub tokens: TokenHygiene,
    /// For a client: actors that acted for it; for an actor: clients it acted for.
    pub delegation_peers: Vec<String>,
    /// For an actor: calls it made as the current actor (the outermost `act`, RFC 8693 §4.1),
    /// and calls whose chain names it as an earlier hop. 0 for a client.
    pub calls_as_current_actor: u64,
    pub calls_as_prior_actor: u64,
}

/// Granted vs needed for one kind of privilege.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Usage {
    pub granted: Vec<String>,
    /// What the routes called require; `None` when no policies were given.
    pub needed: Option<Vec<String>>,
    pub used: Vec<String>,
    pub unused: Vec<Unused>,
    /// Granted but not API privileges (OpenID Connect scopes), left out of the comparison.
    pub ignored: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Unused {
    pub name: String,
    /// Routes (`METHOD api/route`) that would need it; empty: no route needs it at all.
    pub needed_by: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RouteUse {
    pub api: String,
    pub route: String,
    pub allows: u64,
    pub denies: u64,
    pub evidence: Evidence,
    pub scopes_needed: Option<Vec<String>>,
    pub unbound_allowed: Option<bool>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ReasonEvidence {
    pub reason: String,
    pub evidence: Evidence,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct TokenHygiene {
    /// Calls whose record carried the token object.
    pub calls_with_token: u64,
    /// Longest `exp - iat` seen; `None` when no record carried `iat`.
    pub max_lifetime_seconds: Option<i64>,
    pub long_lived: Evidence,
    /// Calls with `binding: none`.
    pub unbound: Evidence,
    /// `unbound` / `calls_with_token`, 0 when no token was seen.
    pub unbound_share: f64,
    /// Calls on routes with `binding: unbound_allowed`.
    pub unbound_allowed_route_calls: u64,
    pub max_delegation_depth: u32,
    pub delegated: Evidence,
    /// Calls allowed after a matching revocation record.
    pub allowed_after_revocation: Evidence,
    /// Calls refused after a matching revocation record (the revocation worked).
    pub denied_after_revocation: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    pub rank: u32,
    /// `high`, `medium` or `low`.
    pub severity: &'static str,
    /// Stable code, e.g. `unused_scopes`, `dormant_client`.
    pub code: &'static str,
    pub principal_kind: &'static str,
    pub principal: String,
    pub summary: String,
    /// The scopes, permissions, reasons or routes concerned.
    pub items: Vec<String>,
    pub evidence: Evidence,
}
