//! `fapi-guard audit report`: the least-privilege report. For every client (and every
//! delegation actor) it sets what the audit trail shows it was *granted* (token scopes, consent
//! permissions, token lifetimes and bindings) against what it actually *used* (the routes it
//! called and what those routes require in the policy revision in force), and ranks findings.
//!
//! Two streaming passes over the files, so memory is bounded by clients × routes, never by the
//! number of records:
//!
//! 1. [`collect`]: each file's chain is verified with `audit verify`'s verifier (revocation
//!    records are picked up on the way); files are grouped into chains by hash linkage
//!    (genesis, or `prev` of a file's first record = hash of another file's last record), so
//!    rotated sets and several replicas' files may be given in any order. A file that fails
//!    verification, forks a chain, or borders a gap inside its log, is untrusted and not
//!    counted at all.
//! 2. [`aggregate`]: the trusted files' records are folded into per-principal counters.
//!
//! Then [`findings`] derives the ranked findings and scores, and [`text`], [`html`] or JSON
//! render the [`model::Report`].

pub mod aggregate;
pub mod collect;
pub mod findings;
pub mod html;
pub mod model;
pub mod stamp;
pub mod text;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::policy::PolicySet;

pub use model::Report;

/// How the report is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Format {
    #[default]
    Text,
    Json,
    Html,
}

/// What `audit report` was asked.
#[derive(Debug, Clone)]
pub struct ReportOptions {
    /// Audit files, or directories whose `*.jsonl*` files are read.
    pub paths: Vec<PathBuf>,
    /// Policy revisions (each a directory or file list compiled as one `PolicySet`); the last
    /// one also serves records whose `policy_revision` matches none of them.
    pub policies: Vec<PathBuf>,
    /// Length of the window, in seconds, ending at `as_of`.
    pub since_secs: i64,
    /// End of the window, Unix microseconds.
    pub as_of_micros: i64,
    /// Tokens whose `exp - iat` is above this are long-lived (FAPI 2.0 wants short-lived
    /// credentials; 600 s is the proxy's own `max_token_lifetime` default).
    pub max_token_lifetime_secs: i64,
}

/// Why no report could be made (exit code 2).
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("no audit file given")]
    NoFiles,
    #[error("{0}: cannot read: {1}")]
    Unreadable(PathBuf, String),
    #[error("policies: {0}")]
    Policies(String),
    #[error("{0}")]
    Usage(String),
}

/// The route facts the report needs, per policy revision.
#[derive(Debug, Clone, Default)]
pub struct RouteNeeds {
    pub method: String,
    pub scopes: Vec<String>,
    /// Consent record permissions the route requires (`consent.permissions`).
    pub permissions: Vec<String>,
    /// The route accepts unbound (bearer) tokens (`binding: unbound_allowed`).
    pub unbound_allowed: bool,
    pub public: bool,
}

/// api → route → needs, for one policy revision.
pub type RouteTable = BTreeMap<String, BTreeMap<String, RouteNeeds>>;

/// Every policy revision given with `--policies`, in the order given.
#[derive(Debug, Clone, Default)]
pub struct Policies {
    pub revisions: Vec<(String, RouteTable)>,
}

impl Policies {
    /// Compiles each `--policies` path as one revision with the proxy's own loader.
    pub fn load(paths: &[PathBuf]) -> Result<Self, ReportError> {
        let mut revisions = Vec::new();
        for p in paths {
            let set = PolicySet::load(std::slice::from_ref(p)).map_err(|errs| {
                let msgs: Vec<String> = errs.iter().map(ToString::to_string).collect();
                ReportError::Policies(msgs.join("; "))
            })?;
            revisions.push((set.revision().to_owned(), table(&set)));
        }
        Ok(Self { revisions })
    }

    pub fn is_empty(&self) -> bool {
        self.revisions.is_empty()
    }

    /// The table for `revision`, and whether it was an exact match (else the last one given).
    pub fn for_revision(&self, revision: Option<&str>) -> Option<(&RouteTable, bool)> {
        if let Some(r) = revision
            && let Some((_, t)) = self.revisions.iter().find(|(rev, _)| rev == r)
        {
            return Some((t, true));
        }
        self.revisions.last().map(|(_, t)| (t, false))
    }

    /// Routes (`api/route`) of any revision that need `scope`, sorted.
    pub fn routes_needing_scope(&self, scope: &str) -> Vec<String> {
        let mut out: Vec<String> = self
            .revisions
            .iter()
            .flat_map(|(_, t)| routes(t))
            .filter(|(_, _, n)| n.scopes.iter().any(|s| s == scope))
            .map(|(api, route, n)| format!("{} {api}/{route}", n.method))
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// Whether any route needing `scope` changes state (a method other than GET, HEAD, OPTIONS).
    pub fn scope_guards_writes(&self, scope: &str) -> bool {
        self.revisions
            .iter()
            .flat_map(|(_, t)| routes(t))
            .any(|(_, _, n)| {
                n.scopes.iter().any(|s| s == scope)
                    && !matches!(n.method.as_str(), "GET" | "HEAD" | "OPTIONS")
            })
    }

    /// Routes of any revision that need consent permission `perm`, sorted.
    pub fn routes_needing_permission(&self, perm: &str) -> Vec<String> {
        let mut out: Vec<String> = self
            .revisions
            .iter()
            .flat_map(|(_, t)| routes(t))
            .filter(|(_, _, n)| n.permissions.iter().any(|p| p == perm))
            .map(|(api, route, n)| format!("{} {api}/{route}", n.method))
            .collect();
        out.sort();
        out.dedup();
        out
    }
}

/// Every route of a table as (api, route, needs).
pub fn routes(t: &RouteTable) -> impl Iterator<Item = (&str, &str, &RouteNeeds)> {
    t.iter()
        .flat_map(|(api, m)| m.iter().map(move |(r, n)| (api.as_str(), r.as_str(), n)))
}

fn table(set: &PolicySet) -> RouteTable {
    let mut t = RouteTable::new();
    for r in set.routes() {
        let permissions = match &r.consent {
            Some(crate::consent::ConsentRule::Record(rule)) => {
                rule.permissions.iter().map(|p| p.to_string()).collect()
            }
            _ => Vec::new(),
        };
        let needs = RouteNeeds {
            method: r.method.as_str().to_owned(),
            scopes: r.scopes.iter().map(|s| s.to_string()).collect(),
            permissions,
            unbound_allowed: r.binding == crate::policy::Binding::UnboundAllowed,
            public: r.public,
        };
        t.entry(r.api.to_string())
            .or_default()
            .insert(r.name.to_string(), needs);
    }
    t
}

/// Builds the report: verify and group the files, aggregate the trusted ones, derive findings.
pub fn build(opts: &ReportOptions) -> Result<Report, ReportError> {
    let files = expand_paths(&opts.paths)?;
    if files.is_empty() {
        return Err(ReportError::NoFiles);
    }
    let policies = Policies::load(&opts.policies)?;
    let checked = collect::check_files(&files)?;
    let mut agg = aggregate::Aggregator::new(opts, &policies, &checked.revocations);
    for path in checked.counted_files() {
        agg.file(path)
            .map_err(|e| ReportError::Unreadable(path.to_owned(), e.to_string()))?;
    }
    Ok(findings::finish(opts, &policies, checked, agg))
}

/// Files named on the command line; a directory stands for its `*.jsonl*` files (active and
/// rotated), sorted. Duplicate names are read once.
pub fn expand_paths(paths: &[PathBuf]) -> Result<Vec<PathBuf>, ReportError> {
    let mut out: Vec<PathBuf> = Vec::new();
    for p in paths {
        if p.is_dir() {
            let rd = std::fs::read_dir(p)
                .map_err(|e| ReportError::Unreadable(p.clone(), e.to_string()))?;
            let mut found: Vec<PathBuf> = rd
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| f.is_file() && is_audit_file(f))
                .collect();
            found.sort();
            out.extend(found);
        } else if p.is_file() {
            out.push(p.clone());
        } else {
            return Err(ReportError::Unreadable(
                p.clone(),
                "no such file or directory".into(),
            ));
        }
    }
    let mut seen = std::collections::HashSet::new();
    out.retain(|p| seen.insert(p.clone()));
    Ok(out)
}

fn is_audit_file(f: &Path) -> bool {
    f.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.contains(".jsonl") && !n.starts_with('.'))
}

/// `30d`, `12h`, `90m`, `45s`, `2w` → seconds.
pub fn parse_window(s: &str) -> Result<i64, String> {
    let split = s
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("--since {s:?} needs a unit (s, m, h, d, w)"))?;
    let (digits, unit) = s.split_at(split);
    let n: i64 = digits
        .parse()
        .map_err(|_| format!("--since {s:?}: expected a number then a unit, like 30d"))?;
    let mult = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => {
            return Err(format!(
                "--since {s:?}: unknown unit {unit:?} (s, m, h, d, w)"
            ));
        }
    };
    match n.checked_mul(mult) {
        Some(v) if v > 0 => Ok(v),
        _ => Err(format!("--since {s:?}: must be positive and reasonable")),
    }
}

/// Exit codes of `audit report`.
pub const EXIT_OK: i32 = 0;
/// The report was written, but at least one file could not be trusted (its records are not
/// counted): the evidence is incomplete, which an automated governance job must notice.
pub const EXIT_UNTRUSTED: i32 = 1;
/// Usage or configuration error (unreadable file, bad `--since`, policies that do not compile).
pub const EXIT_USAGE: i32 = 2;

/// The command: the report on stdout in `format`; errors on stderr.
pub fn run_cli(opts: &ReportOptions, format: Format) -> i32 {
    let report = match build(opts) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("audit report: {e}");
            return EXIT_USAGE;
        }
    };
    let out = render(&report, format);
    use std::io::Write as _;
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = stdout
        .write_all(out.as_bytes())
        .and_then(|()| stdout.flush())
    {
        eprintln!("audit report: cannot write the report: {e}");
        return EXIT_USAGE;
    }
    for f in report
        .integrity
        .files
        .iter()
        .filter(|f| f.status == "untrusted")
    {
        eprintln!(
            "audit report: untrusted, not counted: {}",
            f.reason.as_deref().unwrap_or(&f.path)
        );
    }
    if report.integrity.untrusted_files > 0 {
        EXIT_UNTRUSTED
    } else {
        EXIT_OK
    }
}

/// The report as text, JSON or HTML.
pub fn render(report: &Report, format: Format) -> String {
    match format {
        Format::Text => text::render(report),
        Format::Html => html::render(report),
        Format::Json => {
            // The model is plain data (strings, integers, floats from finite ratios).
            let mut s = serde_json::to_string_pretty(report)
                .unwrap_or_else(|e| format!("{{\"error\":\"cannot serialize report: {e}\"}}"));
            s.push('\n');
            s
        }
    }
}

#[cfg(test)]
mod tests;
