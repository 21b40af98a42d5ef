//! `fapi-guard audit verify`: checks that audit files (given in chain order, e.g. rotated files
//! then the active one) are an unbroken chain — every line a version-1 record, `seq` +1 per line,
//! and `prev` equal to the hash of the line before (spec §8).
//!
//! What the chain can and cannot show: an edit of line N breaks the link at line N+1, so the
//! failure names N+1 (and N). Deleting or reordering lines breaks `seq` at the first affected
//! line. Cutting whole lines off the end, or editing the very last line, leaves a valid shorter
//! chain: keep the printed `head` hash somewhere else to detect that later. The first line's
//! `prev` is taken on trust (the log may start after an earlier, archived file) and reported.

use std::collections::BTreeMap;
use std::fmt;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::chain::{GENESIS_PREV, RECORD_VERSION, line_hash};

const MAX_LINE_BYTES: u64 = 16 * 1024 * 1024;
const KINDS: &[&str] = &[
    "decision",
    "outcome",
    "revocation",
    "policy_reload",
    "txn_token_issued",
];

/// What a successful verification saw.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifySummary {
    pub files: Vec<PathBuf>,
    pub records: u64,
    /// `decision` records with `decision: allow` / `deny`.
    pub allows: u64,
    pub denies: u64,
    pub by_kind: BTreeMap<String, u64>,
    pub first_ts: Option<String>,
    pub last_ts: Option<String>,
    pub first_seq: Option<u64>,
    pub last_seq: Option<u64>,
    /// `prev` of the first record, taken on trust ([`GENESIS_PREV`] for a brand-new log).
    pub anchor: Option<String>,
    /// Hash of the last line: record it elsewhere to detect a later truncation.
    pub head: Option<String>,
}

/// The first broken line: `file:line: message`. `line` is 1-based; 0 when the file itself
/// could not be read (`unreadable`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyFailure {
    pub file: PathBuf,
    pub line: u64,
    pub message: String,
    pub unreadable: bool,
}

impl fmt::Display for VerifyFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.unreadable {
            write!(f, "{}: {}", self.file.display(), self.message)
        } else {
            write!(f, "{}:{}: {}", self.file.display(), self.line, self.message)
        }
    }
}

impl std::error::Error for VerifyFailure {}

/// Verifies `paths` as one chain, in the order given.
pub fn verify_files(paths: &[PathBuf]) -> Result<VerifySummary, VerifyFailure> {
    let mut v = Verifier::default();
    for path in paths {
        let file = File::open(path).map_err(|e| VerifyFailure {
            file: path.clone(),
            line: 0,
            message: format!("cannot read: {e}"),
            unreadable: true,
        })?;
        v.file(path, BufReader::new(file), &mut |_| {})?;
        v.summary.files.push(path.clone());
    }
    Ok(v.summary)
}

/// Verifies one file as a chain of its own (its first `prev` taken on trust, see the module
/// docs) and hands every line that passed the checks, without its newline, to `visit`.
/// `visit` may see lines of a file that fails further on: callers keep what it collected only
/// on `Ok`. `audit report` uses this to verify and read each file in the same pass.
pub fn verify_file_visiting(
    path: &Path,
    visit: &mut dyn FnMut(&[u8]),
) -> Result<VerifySummary, VerifyFailure> {
    let file = File::open(path).map_err(|e| VerifyFailure {
        file: path.to_owned(),
        line: 0,
        message: format!("cannot read: {e}"),
        unreadable: true,
    })?;
    let mut v = Verifier::default();
    v.file(path, BufReader::with_capacity(1 << 20, file), visit)?;
    v.summary.files.push(path.to_owned());
    Ok(v.summary)
}

/// The `audit verify` command: summary on stdout and 0; `FILE:LINE: message` on stderr and 1;
/// 2 when a file cannot be read or no file was given (spec §3 exit codes).
pub fn run_cli(paths: &[PathBuf]) -> i32 {
    if paths.is_empty() {
        eprintln!("audit verify: no file given");
        return 2;
    }
    match verify_files(paths) {
        Ok(summary) => {
            println!("{summary}");
            0
        }
        Err(failure) => {
            eprintln!("{failure}");
            if failure.unreadable { 2 } else { 1 }
        }
    }
}

/// The fields verification needs; everything else in a line is only hashed.
#[derive(Deserialize)]
struct Head {
    v: u64,
    seq: u64,
    ts: String,
    prev: String,
    kind: String,
    #[serde(default)]
    decision: Option<String>,
}

#[derive(Default)]
struct Verifier {
    summary: VerifySummary,
    /// Hash of the previous line and where it was, once one was seen.
    prev: Option<(String, PathBuf, u64)>,
}

impl Verifier {
    fn file(
        &mut self,
        path: &Path,
        mut reader: impl BufRead,
        visit: &mut dyn FnMut(&[u8]),
    ) -> Result<(), VerifyFailure> {
        let mut line = Vec::new();
        let mut number = 0u64;
        loop {
            line.clear();
            number += 1;
            let fail = |message: String, unreadable: bool| VerifyFailure {
                file: path.to_owned(),
                line: number,
                message,
                unreadable,
            };
            let n = (&mut reader)
                .take(MAX_LINE_BYTES + 1)
                .read_until(b'\n', &mut line)
                .map_err(|e| fail(format!("read error: {e}"), true))?;
            if n == 0 {
                return Ok(());
            }
            if line.last() != Some(&b'\n') {
                let message = if n as u64 > MAX_LINE_BYTES {
                    format!("line longer than {MAX_LINE_BYTES} bytes")
                } else {
                    "incomplete line without a trailing newline (truncated file or torn write)"
                        .to_owned()
                };
                return Err(fail(message, false));
            }
            line.pop();
            self.line(path, number, &line).map_err(|m| fail(m, false))?;
            visit(&line);
        }
    }

    fn line(&mut self, path: &Path, number: u64, line: &[u8]) -> Result<(), String> {
        if line.is_empty() {
            return Err("empty line".into());
        }
        let head: Head =
            serde_json::from_slice(line).map_err(|e| format!("not a valid audit record: {e}"))?;
        if head.v != u64::from(RECORD_VERSION) {
            return Err(format!(
                "unsupported record version v={} (expected 1)",
                head.v
            ));
        }
        if !KINDS.contains(&head.kind.as_str()) {
            return Err(format!("unknown kind {:?}", head.kind));
        }
        let s = &mut self.summary;
        if let Some(last) = s.last_seq {
            let expected = last.saturating_add(1);
            if head.seq != expected {
                return Err(format!(
                    "seq {} where {expected} was expected: records missing, repeated or reordered",
                    head.seq
                ));
            }
        }
        match &self.prev {
            Some((hash, prev_path, prev_line)) if *hash != head.prev => {
                let at = if prev_path == path {
                    format!("line {prev_line}")
                } else {
                    format!("{}:{prev_line}", prev_path.display())
                };
                return Err(format!(
                    "prev does not match the hash of the previous record ({at}): that record was \
                     modified, or records were removed or reordered"
                ));
            }
            Some(_) => {}
            None => s.anchor = Some(head.prev.clone()),
        }
        let hash = line_hash(line);
        s.records += 1;
        s.first_seq.get_or_insert(head.seq);
        s.last_seq = Some(head.seq);
        if s.first_ts.is_none() {
            s.first_ts = Some(head.ts.clone());
        }
        s.last_ts = Some(head.ts);
        if head.kind == "decision" {
            match head.decision.as_deref() {
                Some("allow") => s.allows += 1,
                Some("deny") => s.denies += 1,
                _ => {}
            }
        }
        *s.by_kind.entry(head.kind).or_default() += 1;
        s.head = Some(hash.clone());
        self.prev = Some((hash, path.to_owned(), number));
        Ok(())
    }
}

impl fmt::Display for VerifySummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let files = self.files.len();
        let plural = if files == 1 { "" } else { "s" };
        write!(f, "ok: {} records in {files} file{plural}", self.records)?;
        if let (Some(first), Some(last)) = (self.first_seq, self.last_seq) {
            write!(f, ", seq {first}..={last}")?;
        }
        writeln!(f)?;
        match self.anchor.as_deref() {
            Some(GENESIS_PREV) => writeln!(f, "chain:     starts at genesis")?,
            Some(anchor) => writeln!(f, "chain:     continues after {anchor} (taken on trust)")?,
            None => {}
        }
        if let Some(head) = &self.head {
            writeln!(
                f,
                "head:      {head} (keep it elsewhere to detect later truncation)"
            )?;
        }
        if let (Some(first), Some(last)) = (&self.first_ts, &self.last_ts) {
            writeln!(f, "time:      {first} .. {last}")?;
        }
        writeln!(f, "decisions: {} allow, {} deny", self.allows, self.denies)?;
        let kinds: Vec<String> = self
            .by_kind
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        if !kinds.is_empty() {
            writeln!(f, "kinds:     {}", kinds.join(", "))?;
        }
        let names: Vec<String> = self.files.iter().map(|p| p.display().to_string()).collect();
        write!(f, "files:     {}", names.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::chain::ChainState;
    use crate::audit::record::AuditRecord;
    use crate::reason::DenyReason;

    /// A valid 6-line log: seq 1..=6, alternating allow / deny / outcome.
    fn valid_lines() -> Vec<String> {
        let mut state = ChainState::genesis();
        let mut buf = Vec::new();
        for i in 0..6i64 {
            let rec = match i % 3 {
                0 => AuditRecord::allow(),
                1 => AuditRecord::deny(DenyReason::ConsentExpired),
                _ => AuditRecord::outcome(200, 5),
            };
            state
                .seal_into(&rec, 1_795_500_000_000_000 + i, &mut buf)
                .expect("sealed");
        }
        String::from_utf8(buf)
            .expect("utf-8")
            .lines()
            .map(str::to_owned)
            .collect()
    }

    fn write(dir: &Path, name: &str, content: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, content).expect("write file");
        p
    }

    fn joined(lines: &[String]) -> String {
        lines.iter().map(|l| format!("{l}\n")).collect()
    }

    #[test]
    fn valid_log_summarizes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = write(dir.path(), "a.jsonl", &joined(&valid_lines()));
        let s = verify_files(std::slice::from_ref(&p)).expect("verifies");
        assert_eq!((s.records, s.allows, s.denies), (6, 2, 2));
        assert_eq!(s.by_kind.get("outcome"), Some(&2));
        assert_eq!(s.first_ts.as_deref(), Some("2026-11-24T06:00:00.000000Z"));
        assert_eq!(s.last_ts.as_deref(), Some("2026-11-24T06:00:00.000005Z"));
        let text = s.to_string();
        assert!(
            text.starts_with("ok: 6 records in 1 file, seq 1..=6\n"),
            "{text}"
        );
        assert!(text.contains("starts at genesis"), "{text}");
        assert_eq!(run_cli(&[p]), 0);
    }

    #[test]
    fn tampering_names_the_first_broken_line() {
        let base = valid_lines();
        let edit = |i: usize, from: &str, to: &str| {
            let mut l = base.clone();
            assert!(l[i].contains(from), "{from} not in line {i}");
            l[i] = l[i].replacen(from, to, 1);
            joined(&l)
        };
        let without = |i: usize| {
            let mut l = base.clone();
            l.remove(i);
            joined(&l)
        };
        let swapped = {
            let mut l = base.clone();
            l.swap(2, 3);
            joined(&l)
        };
        let full = joined(&base);
        let cases: Vec<(&str, String, u64, &str)> = vec![
            (
                "deny edited to allow",
                edit(1, r#""decision":"deny""#, r#""decision":"allow""#),
                3,
                "line 2",
            ),
            (
                "status edited",
                edit(2, r#""status":200"#, r#""status":201"#),
                4,
                "does not match",
            ),
            (
                "seq edited",
                edit(3, r#""seq":4"#, r#""seq":40"#),
                4,
                "seq 40 where 4",
            ),
            ("line deleted", without(2), 3, "records missing"),
            (
                "first line deleted: chain anchor is trusted, still ok",
                without(0),
                0,
                "",
            ),
            ("lines swapped", swapped, 3, "seq 4 where 3"),
            (
                "truncated mid-line",
                full[..full.len() - 10].to_owned(),
                6,
                "incomplete line",
            ),
            (
                "garbage line",
                edit(4, "{", "x{"),
                5,
                "not a valid audit record",
            ),
            ("empty line", edit(4, &base[4], ""), 5, "empty line"),
            (
                "version bumped",
                edit(0, r#""v":1"#, r#""v":2"#),
                1,
                "version v=2",
            ),
            (
                "unknown kind",
                edit(5, r#""kind":"outcome""#, r#""kind":"other""#),
                6,
                "unknown kind",
            ),
        ];
        for (name, content, line, message) in cases {
            let dir = tempfile::tempdir().expect("tempdir");
            let p = write(dir.path(), "a.jsonl", &content);
            let got = verify_files(std::slice::from_ref(&p));
            if line == 0 {
                assert!(got.is_ok(), "{name}: {got:?}");
                continue;
            }
            let f = got.expect_err("should fail");
            assert_eq!(f.line, line, "{name}: {f}");
            assert!(f.message.contains(message), "{name}: {f}");
            assert!(
                f.to_string()
                    .starts_with(&format!("{}:{line}: ", p.display())),
                "{name}"
            );
            assert_eq!(run_cli(&[p]), 1, "{name}");
        }
    }

    #[test]
    fn files_chain_in_the_order_given() {
        let dir = tempfile::tempdir().expect("tempdir");
        let l = valid_lines();
        let a = write(dir.path(), "a", &joined(&l[..3]));
        let b = write(dir.path(), "b", &joined(&l[3..]));
        let ok = verify_files(&[a.clone(), b.clone()]).expect("verifies");
        assert_eq!((ok.records, ok.files.len()), (6, 2));
        // Starting with the second file alone: its anchor is reported, not trusted silently.
        let tail = verify_files(std::slice::from_ref(&b)).expect("verifies");
        assert_eq!(tail.anchor, Some(line_hash(l[2].as_bytes())));
        assert!(tail.to_string().contains("taken on trust"));
        let err = verify_files(&[b.clone(), a.clone()]).expect_err("should fail");
        assert_eq!((err.file, err.line), (a, 1));
    }

    #[test]
    fn unreadable_file_exits_2() {
        let missing = PathBuf::from("/nonexistent/audit.jsonl");
        let f = verify_files(std::slice::from_ref(&missing)).expect_err("should fail");
        assert!(f.unreadable && f.line == 0, "{f:?}");
        assert_eq!(run_cli(&[missing]), 2);
        assert_eq!(run_cli(&[]), 2);
    }
}
