//! The deployment configuration (spec §4): raw serde structs, compiled once into `Config`.
//!
//! Unknown keys are refused with file:line:column and the field path, so a typo in a security
//! setting fails at load and never at request time.

mod cidr;
pub mod hint;
pub mod marks;
mod raw;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use http::Uri;

use jsonwebtoken::Algorithm;

use crate::audit::AuditSettings;
use crate::consent::ConsentSettings;
use crate::dpop::DpopSettings;
use crate::identity::IdentityHeaders;
use crate::mtls::ForwardedFormat;
use crate::tls::TlsSettings;
use crate::txn_token::TxnTokenSettings;

pub use cidr::Cidr;
pub use marks::{Marks, plain_path};
pub use raw::RawConfig;
pub(crate) use raw::{is_loopback_host, remote_key_uri};

/// An asymmetric JWS algorithm we accept, by name; `none` and HS* are never accepted.
pub(crate) fn raw_alg(s: &str) -> Option<Algorithm> {
    raw::parse_signing_alg(s).ok()
}

/// A configuration or policy file that could not be loaded. Displays as one line:
/// `FILE:LINE:COL: FIELD: message` (location parts omitted when unknown).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.render())]
pub struct InvalidConfig {
    pub file: PathBuf,
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub field: String,
    pub message: String,
}

impl InvalidConfig {
    pub fn new(file: &Path, field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            file: file.to_path_buf(),
            line: None,
            column: None,
            field: field.into(),
            message: message.into(),
        }
    }

    pub fn at(mut self, line: usize, column: usize) -> Self {
        self.line = Some(line);
        self.column = Some(column);
        self
    }

    fn render(&self) -> String {
        let mut s = self.file.display().to_string();
        if let (Some(l), Some(c)) = (self.line, self.column) {
            s.push_str(&format!(":{l}:{c}"));
        }
        if !self.field.is_empty() {
            s.push_str(": ");
            s.push_str(&self.field);
        }
        s.push_str(": ");
        s.push_str(&self.message);
        s
    }
}

/// Parses YAML into a raw struct, turning serde errors into `InvalidConfig` with the field path
/// (serde_path_to_error) and the line and column of the offending key or value (`Marks`).
/// A repeated key is an error at the second occurrence.
pub fn parse_yaml<T: serde::de::DeserializeOwned>(
    file: &Path,
    src: &str,
) -> Result<T, InvalidConfig> {
    parse_yaml_marked(file, src).map(|(t, _)| t)
}

/// `parse_yaml`, also returning the positions of every node for later (semantic) errors.
pub fn parse_yaml_marked<T: serde::de::DeserializeOwned>(
    file: &Path,
    src: &str,
) -> Result<(T, Marks), InvalidConfig> {
    let marks = Marks::read(src);
    if let Some(e) = duplicate_errors(file, &marks).into_iter().next() {
        return Err(e);
    }
    if let Err(e) = serde_yaml::from_str::<serde_yaml::Value>(src) {
        return Err(syntax_error(file, &e));
    }
    let de = serde_yaml::Deserializer::from_str(src);
    match serde_path_to_error::deserialize(de) {
        Ok(t) => Ok((t, marks)),
        Err(e) => {
            let field = e.path().to_string();
            let inner = e.into_inner();
            let fallback = inner.location().map(|l| marks::Pos {
                line: l.line(),
                column: l.column(),
            });
            Err(serde_error(
                file,
                &marks,
                &field,
                &inner.to_string(),
                fallback,
            ))
        }
    }
}

/// A document parsed entry by entry (see `parse_yaml_list`).
pub struct ParsedList<T> {
    /// The document with the entries that failed left out (and, when the rest of the
    /// document had mistakes, with the offending members taken out); `None` when what is left
    /// cannot be read at all.
    pub value: Option<T>,
    /// For each entry of `value`'s list, its index in the file.
    pub kept: Vec<usize>,
    /// The entries that failed, with their offending members taken out, where what is left
    /// parses: later checks may look at them for further errors, never use them.
    pub partial: Vec<PartialEntry>,
    pub marks: Marks,
    pub errors: Vec<InvalidConfig>,
}

/// An entry that failed to parse, minus its offending members.
pub struct PartialEntry {
    /// Its index in the file's list.
    pub index: usize,
    pub value: serde_yaml::Value,
    /// The members taken out, as paths relative to the entry (`assurance.max_auth_age`).
    pub removed: Vec<String>,
}

/// At most this many errors are reported per entry (and for the rest of a document).
const MAX_ERRORS_PER_ENTRY: usize = 32;

/// Parses a document whose `list` key holds independent entries (policy `routes`, test
/// `cases`) and reports every error of *each* entry and of the rest of the document, so an
/// author sees every mistake at once: a repeated key is reported and its later occurrence set
/// aside (the first one counts), and a member with a mistake is reported and taken out before
/// the entry is read again. The entries that parsed are kept, so later checks can report their
/// errors too.
pub fn parse_yaml_list<T, E>(file: &Path, src: &str, list: &str) -> ParsedList<T>
where
    T: serde::de::DeserializeOwned,
    E: serde::de::DeserializeOwned,
{
    let marks = Marks::read(src);
    let fail = |marks, errors| ParsedList {
        value: None,
        kept: Vec::new(),
        partial: Vec::new(),
        marks,
        errors,
    };
    let mut errors = duplicate_errors(file, &marks);
    let mut doc: serde_yaml::Value = match serde_yaml::from_str(src) {
        Ok(v) => v,
        Err(e) if errors.is_empty() => {
            let err = syntax_error(file, &e);
            return fail(marks, vec![err]);
        }
        // serde_yaml refuses repeated keys: read the text without their later occurrences.
        Err(_) => match without_duplicates(src, &marks).and_then(|t| serde_yaml::from_str(&t).ok())
        {
            Some(v) => v,
            None => return fail(marks, errors),
        },
    };
    let entries = doc
        .get_mut(list)
        .and_then(serde_yaml::Value::as_sequence_mut)
        .map(std::mem::take);
    let mut kept = Vec::new();
    let mut good = Vec::new();
    let mut partial = Vec::new();
    for (i, entry) in entries.into_iter().flatten().enumerate() {
        let (errs, rest) = deserialize_all::<E>(&entry);
        if errs.is_empty() {
            kept.push(i);
            good.push(entry);
            continue;
        }
        for (p, msg) in errs {
            let path = match p.as_str() {
                "." => format!("{list}[{i}]"),
                p => format!("{list}[{i}].{p}"),
            };
            errors.push(serde_error(file, &marks, &path, &msg, None));
        }
        if let Some((value, removed)) = rest {
            partial.push(PartialEntry {
                index: i,
                value,
                removed,
            });
        }
    }
    // The rest of the document, with the entries set aside.
    let (errs, rest) = deserialize_all::<T>(&doc);
    for (p, msg) in errs {
        errors.push(serde_error(file, &marks, &p, &msg, None));
    }
    let value = rest.and_then(|(mut doc, _)| {
        if let Some(slot) = doc.get_mut(list) {
            *slot = serde_yaml::Value::Sequence(good);
        }
        match serde_path_to_error::deserialize::<_, T>(doc) {
            Ok(t) => Some(t),
            Err(e) => {
                let path = e.path().to_string();
                let msg = e.into_inner().to_string();
                errors.push(serde_error(file, &marks, &path, &msg, None));
                None
            }
        }
    });
    ParsedList {
        value,
        kept,
        partial,
        marks,
        errors,
    }
}

/// Deserializes `value` as `T`; while that fails, takes the offending member out and tries
/// again, so that every mistake is reported rather than the first. Returns the errors (serde
/// path relative to `value`, message) and, when what is left deserializes, that value with the
/// paths taken out. A field reported missing only because its bad value was taken out is not
/// reported again.
fn deserialize_all<T: serde::de::DeserializeOwned>(
    value: &serde_yaml::Value,
) -> (
    Vec<(String, String)>,
    Option<(serde_yaml::Value, Vec<String>)>,
) {
    let mut v = value.clone();
    let mut errors = Vec::new();
    let mut removed: Vec<String> = Vec::new();
    for _ in 0..MAX_ERRORS_PER_ENTRY {
        let e = match serde_path_to_error::deserialize::<_, T>(v.clone()) {
            Ok(_) => return (errors, Some((v, removed))),
            Err(e) => e,
        };
        let path = e.path().clone();
        let msg = e.into_inner().to_string();
        let at = path.to_string();
        if let Some(name) = msg
            .split(" at line ")
            .next()
            .and_then(|m| m.strip_prefix("missing field `"))
            .and_then(|r| r.strip_suffix('`'))
        {
            let field = if at == "." {
                name.to_owned()
            } else {
                format!("{at}.{name}")
            };
            if removed.contains(&field) {
                break;
            }
        }
        errors.push((at, msg));
        match take_out(&mut v, &path) {
            Some(p) => removed.push(p),
            None => break,
        }
    }
    (errors, None)
}

/// Removes the member the innermost mapping key of `path` names (what follows it, a list index
/// say, goes with it). Returns that member's path, or `None` when there is none to remove.
fn take_out(v: &mut serde_yaml::Value, path: &serde_path_to_error::Path) -> Option<String> {
    use serde_path_to_error::Segment;
    let segments: Vec<&Segment> = path.iter().collect();
    let last = segments
        .iter()
        .rposition(|s| matches!(s, Segment::Map { .. }))?;
    let mut cur = v;
    let mut shown = String::new();
    for s in &segments[..last] {
        match s {
            Segment::Seq { index } => {
                cur = cur.as_sequence_mut()?.get_mut(*index)?;
                shown.push_str(&format!("[{index}]"));
            }
            Segment::Map { key } => {
                cur = cur.as_mapping_mut()?.get_mut(key.as_str())?;
                if !shown.is_empty() {
                    shown.push('.');
                }
                shown.push_str(key);
            }
            Segment::Enum { .. } | Segment::Unknown => return None,
        }
    }
    let Segment::Map { key } = segments[last] else {
        return None;
    };
    cur.as_mapping_mut()?.remove(key.as_str())?;
    if !shown.is_empty() {
        shown.push('.');
    }
    shown.push_str(key);
    Some(shown)
}

/// `src` with the later occurrences of repeated keys blanked out, key and value, lines kept in
/// place so that positions stay true. `None` when a repeated key does not start its line (a
/// flow mapping): that is not cut out here.
fn without_duplicates(src: &str, marks: &Marks) -> Option<String> {
    let mut lines: Vec<&str> = src.split('\n').collect();
    let indent = |l: &str| l.len() - l.trim_start_matches(' ').len();
    for (_, pos) in &marks.duplicates {
        let first = pos.line.checked_sub(1)?;
        let col = pos.column.checked_sub(1)?;
        if indent(lines.get(first)?) != col {
            return None;
        }
        lines[first] = "";
        // The value: deeper lines, blank lines, and a block sequence written at the key's own
        // indentation (`key:` then `- item`).
        for l in lines.iter_mut().skip(first + 1) {
            let rest = l.trim_start_matches(' ');
            let deeper = indent(l) > col;
            let item = indent(l) == col && (rest == "-" || rest.starts_with("- "));
            if rest.trim().is_empty() || deeper || item {
                *l = "";
            } else {
                break;
            }
        }
    }
    Some(lines.join("\n"))
}

/// serde_yaml could not read the text as YAML at all.
fn syntax_error(file: &Path, e: &serde_yaml::Error) -> InvalidConfig {
    let msg = e.to_string();
    let msg = msg.split(" at line ").next().unwrap_or(&msg);
    let err = InvalidConfig::new(file, "", format!("YAML syntax error: {msg}"));
    match e.location() {
        Some(l) => err.at(l.line(), l.column()),
        // Whole-document errors (several documents in one file, say) have no position of
        // their own: the document starts at 1:1.
        None => err.at(1, 1),
    }
}

fn duplicate_errors(file: &Path, marks: &Marks) -> Vec<InvalidConfig> {
    marks
        .duplicates
        .iter()
        .map(|(path, pos)| {
            let key = path.rsplit('.').next().unwrap_or(path);
            InvalidConfig::new(file, path.clone(), format!("duplicate key `{key}`"))
                .at(pos.line, pos.column)
        })
        .collect()
}

/// One serde error as an `InvalidConfig`: serde_yaml's own suffixes and path prefixes dropped,
/// a hint for a misspelt key or variant, and the position of the key (unknown or duplicate
/// field) or value (anything else) at `path`.
fn serde_error(
    file: &Path,
    marks: &Marks,
    path: &str,
    msg: &str,
    fallback: Option<marks::Pos>,
) -> InvalidConfig {
    let path = if path == "." { "" } else { path };
    // serde_yaml appends " at line L column C" to the message; keep only the cause.
    let msg = msg.split(" at line ").next().unwrap_or(msg);
    // ... and may prefix its own path ("issuers[0]: "), which `path` already carries.
    let msg = match msg.split_once(": ") {
        Some((p, rest)) if !p.contains(' ') && path.starts_with(p) => rest,
        _ => msg,
    };
    let msg = hint::explain(msg);
    // A key written at the wrong indentation lands in another mapping, and serde then reports
    // the mapping it was meant for as missing it: point at the stray key instead.
    if let Some(name) = msg
        .strip_prefix("missing field `")
        .and_then(|r| r.strip_suffix('`'))
        && let Some((stray, p)) = marks.stray_key(name, path)
    {
        let parent = if path.is_empty() {
            "the top level"
        } else {
            path
        };
        let owner = marks::parent(&stray);
        let owner = if owner.is_empty() {
            "the top level"
        } else {
            owner
        };
        return InvalidConfig::new(
            file,
            path,
            format!(
                "missing field `{name}`: the `{name}` here belongs to {owner}, not {parent}; check its indentation"
            ),
        )
        .at(p.line, p.column);
    }
    let pos = if msg.starts_with("unknown field") || msg.starts_with("duplicate field") {
        marks.key(path)
    } else if msg.starts_with("missing field") {
        marks.value(path)
    } else if path.is_empty() {
        fallback
    } else {
        marks.value(path)
    };
    let pos = pos.or(fallback).or_else(|| marks.nearest(path));
    // A document-level error with nothing to point at (an empty file missing `api`, say) is
    // located at the start of the document.
    let pos = match pos {
        None if path.is_empty() => Some(marks::Pos { line: 1, column: 1 }),
        p => p,
    };
    let err = InvalidConfig::new(file, path, msg);
    match pos {
        Some(p) => err.at(p.line, p.column),
        None => err,
    }
}

impl InvalidConfig {
    /// Sets the line and column from the field path when the error has none yet.
    pub fn locate(self, marks: &Marks) -> Self {
        if self.line.is_some() {
            return self;
        }
        let path = plain_path(&self.field);
        match marks
            .value(&path)
            .or_else(|| marks.key(&path))
            .or_else(|| marks.nearest(&path))
        {
            Some(p) => self.at(p.line, p.column),
            None => self,
        }
    }
}

/// The compiled configuration: everything the proxy needs, validated, paths resolved.
#[derive(Debug, Clone)]
pub struct Config {
    pub file: PathBuf,
    pub listen: ListenSettings,
    pub upstream: UpstreamSettings,
    pub admin: Option<AdminSettings>,
    pub issuers: Vec<IssuerSettings>,
    pub policy_paths: Vec<PathBuf>,
    pub token_cache_capacity: u64,
    pub dpop: DpopSettings,
    pub audit: AuditSettings,
    /// `transaction_token:` (spec §4, §7): minting and/or internal-hop acceptance.
    pub transaction_token: TxnTokenSettings,
    /// The bank's consent service; required when a policy reads consent records.
    pub consent: Option<ConsentSettings>,
    /// `state:` (spec §4): memory, or Redis shared by the replicas.
    pub state: crate::state::StateSettings,
    /// `revocation:` (spec §4): set limits and the Shared Signals receiver.
    pub revocation: crate::revocation::config::RevocationSettings,
    /// `clients:`: registered clients and their keys (RFC 9421 request signatures).
    pub clients: Vec<crate::signature::config::ClientSettings>,
    /// `signatures:`; `None` when the section is absent (no response signing key then).
    pub signatures: Option<crate::signature::config::SignatureSettings>,
}

#[derive(Debug, Clone)]
pub struct ListenSettings {
    pub address: SocketAddr,
    /// The origin clients use: scheme, lower-case host, port only when not the default.
    pub public_url: String,
    pub public_scheme: &'static str,
    /// SIGTERM → readiness false, keep serving this long, then stop accepting and drain.
    pub drain_delay: Duration,
    pub limits: Limits,
    pub forwarded_client_cert: Option<ForwardedCertSettings>,
    /// TLS on this listener; absent: plain HTTP behind a trusted TLS terminator.
    pub tls: Option<TlsSettings>,
}

/// Client certificates forwarded by a trusted TLS terminator (spec §4).
#[derive(Debug, Clone)]
pub struct ForwardedCertSettings {
    pub header: http::HeaderName,
    pub format: ForwardedFormat,
    /// Only these peers may set the header; from anyone else it is stripped and ignored.
    pub trusted_peers: Vec<Cidr>,
}

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_header_bytes: usize,
    pub max_body_bytes: usize,
    /// Bound on all buffered request bodies together; at it, 503 `dependency_unavailable`.
    pub max_buffered_bytes: usize,
    pub header_read_timeout: Duration,
    pub request_timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct UpstreamSettings {
    /// `scheme://authority`, no trailing slash.
    pub origin: String,
    /// Path prefix prepended to the forwarded path ("" or "/base").
    pub path_prefix: String,
    pub connect_timeout: Duration,
    pub timeout: Duration,
    /// Identity headers set for the upstream from verified values (spec §7); always stripped
    /// from inbound requests.
    pub identity_headers: IdentityHeaders,
    /// `upstream.strip_headers`: never forwarded (default: method-override and URL-rewrite
    /// headers, `proxy::headers::DEFAULT_STRIP`).
    pub strip_headers: Vec<http::HeaderName>,
}

#[derive(Debug, Clone)]
pub struct AdminSettings {
    pub address: SocketAddr,
    /// Bearer secret of the write endpoints (`admin.token_file`); required off loopback.
    pub token: Option<crate::secret::Secret>,
    /// `admin.metrics_address`: a second, read-only listener (`/metrics`, `/healthz`,
    /// `/readyz`, `/jwks`) for Prometheus and kubelet probes on the pod IP.
    pub metrics_address: Option<SocketAddr>,
}

#[derive(Debug, Clone)]
pub struct IssuerSettings {
    pub issuer: String,
    pub keys: KeySource,
    pub algorithms: Vec<Algorithm>,
    pub audiences: Vec<String>,
    pub max_token_lifetime: Duration,
    pub clock_skew: Duration,
    /// Background JWKS refresh period, and the minimum gap between refetches triggered by an
    /// unknown `kid` (so a flood of forged `kid`s cannot make us hammer the issuer).
    pub jwks_refresh: Duration,
    pub jwks_min_refetch: Duration,
    /// The claim holding the token's purpose (spec §1.5), `purpose` unless the issuer uses
    /// another name.
    pub purpose_claim: String,
    /// RFC 7662 introspection of this issuer's opaque (non-JWT) access tokens; at most one
    /// issuer has it.
    pub introspection: Option<crate::token::IntrospectionSettings>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    Uri(Uri),
    File(PathBuf),
}

impl Config {
    /// Reads, parses and compiles a configuration file.
    pub fn load(file: &Path) -> Result<Self, InvalidConfig> {
        let src = std::fs::read_to_string(file)
            .map_err(|e| InvalidConfig::new(file, "", format!("cannot read: {e}")))?;
        Self::from_yaml(file, &src)
    }

    /// Parses and compiles configuration text; `file` names it in errors and anchors relative
    /// paths.
    pub fn from_yaml(file: &Path, src: &str) -> Result<Self, InvalidConfig> {
        let (raw, marks): (RawConfig, Marks) = parse_yaml_marked(file, src)?;
        raw.compile(file).map_err(|e| e.locate(&marks))
    }

    /// The directory relative paths in the file are resolved against.
    pub fn base_dir(&self) -> &Path {
        self.file.parent().unwrap_or(Path::new("."))
    }
}

/// Resolves `p` against the directory of the config file.
pub(crate) fn resolve(file: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        file.parent().unwrap_or(Path::new(".")).join(p)
    }
}

#[cfg(test)]
mod list_tests;
#[cfg(test)]
mod tests;
