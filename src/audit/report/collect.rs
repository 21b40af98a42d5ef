//! Pass 1: verify every file and group the files into chains.
//!
//! Each file is verified on its own with `audit verify`'s verifier (JSON, version, `seq` +1,
//! `prev` = hash of the line before). Files are then linked by the chain itself, not by name or
//! order: a file whose first `prev` is [`GENESIS_PREV`] starts a brand-new log (every replica
//! has one); a file whose first `prev` is the hash of another file's last line continues that
//! file (rotation, restart). So rotated sets and several replicas' files can be given together,
//! in any order.
//!
//! Untrusted, and not counted: a file that fails verification (an edit, a deletion, a torn or
//! truncated last line), and files that *fork* a chain — two different files continuing the
//! same record cannot both be genuine, and the chain cannot tell which one is. A byte-identical
//! chain segment given twice (the same file copied) is counted once. A file continuing a record
//! that is not among the files given is counted with its anchor taken on trust, as `audit
//! verify` does, and the chain says so — unless the files show that records are missing *inside*
//! one log (see [`gaps`]): then the two files on either side of the gap are untrusted.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use memchr::memmem;
use serde::Deserialize;

use super::ReportError;
use super::model::{ChainInfo, FileStatus};
use super::stamp;
use crate::audit::chain::GENESIS_PREV;
use crate::audit::verify::{VerifySummary, verify_file_visiting};

/// A revocation record from a trusted file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revocation {
    pub kind: String,
    pub value_sha256: String,
    pub at_micros: i64,
    /// Unix seconds.
    pub until: Option<i64>,
}

/// The outcome of pass 1.
#[derive(Debug, Default)]
pub struct Checked {
    pub files: Vec<FileStatus>,
    pub chains: Vec<ChainInfo>,
    /// From trusted files only.
    pub revocations: Vec<Revocation>,
    counted: Vec<PathBuf>,
}

impl Checked {
    /// Trusted files, each chain segment once, in chain order.
    pub fn counted_files(&self) -> impl Iterator<Item = &Path> {
        self.counted.iter().map(PathBuf::as_path)
    }

    pub fn untrusted(&self) -> u64 {
        self.files
            .iter()
            .filter(|f| f.status == "untrusted")
            .count() as u64
    }
}

struct Verified {
    path: PathBuf,
    summary: VerifySummary,
    revocations: Vec<Revocation>,
}

/// Verifies `files` and groups them into chains. Files are verified on up to 4 threads.
pub fn check_files(files: &[PathBuf]) -> Result<Checked, ReportError> {
    let results = verify_all(files);
    let mut statuses: Vec<FileStatus> = Vec::new();
    let mut ok: Vec<Verified> = Vec::new();
    for (path, result) in files.iter().zip(results) {
        match result {
            Ok(v) => ok.push(v),
            Err(f) if f.unreadable => {
                return Err(ReportError::Unreadable(path.clone(), f.message));
            }
            Err(f) => statuses.push(untrusted(path, None, f.to_string())),
        }
    }

    // Byte-identical segments (same anchor, same head, same length): keep the first by name.
    ok.sort_by(|a, b| a.path.cmp(&b.path));
    let mut by_identity: HashMap<(Option<String>, Option<String>, u64), PathBuf> = HashMap::new();
    let mut unique: Vec<Verified> = Vec::new();
    for v in ok {
        let id = (
            v.summary.anchor.clone(),
            v.summary.head.clone(),
            v.summary.records,
        );
        match by_identity.get(&id) {
            Some(first) => {
                let reason = format!("same records as {}: counted once", first.display());
                let mut s = status(&v.path, &v.summary, "duplicate");
                s.reason = Some(reason);
                statuses.push(s);
            }
            None => {
                by_identity.insert(id, v.path.clone());
                unique.push(v);
            }
        }
    }

    // Forks: two segments continuing the same non-genesis record. Empty files continue nothing.
    let mut continuing: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, v) in unique.iter().enumerate() {
        if let Some(a) = v.summary.anchor.as_deref()
            && a != GENESIS_PREV
        {
            continuing.entry(a).or_default().push(i);
        }
    }
    let mut forked = vec![false; unique.len()];
    for idx in continuing.values().filter(|v| v.len() > 1) {
        for &i in idx {
            forked[i] = true;
        }
    }

    let mut kept: Vec<Verified> = Vec::new();
    for (v, fork) in unique.into_iter().zip(forked) {
        if fork {
            let anchor = v.summary.anchor.clone().unwrap_or_default();
            let msg = format!(
                "{}: another file also continues the record {anchor}: the chain forks, and \
                 which branch is genuine cannot be told",
                v.path.display()
            );
            statuses.push(untrusted(&v.path, Some(&v.summary), msg));
        } else {
            kept.push(v);
        }
    }

    // Gaps inside one log: the files on both sides are untrusted (unless a file already found
    // untrusted sits in the gap: that one is the cause, and is named).
    let failed: Vec<PathBuf> = statuses
        .iter()
        .filter(|f| f.status == "untrusted")
        .map(|f| PathBuf::from(&f.path))
        .collect();
    let gapped = gaps(&kept, &failed);
    let mut trusted: Vec<Verified> = Vec::new();
    for (i, v) in kept.into_iter().enumerate() {
        match gapped.get(&i) {
            Some(reason) => statuses.push(untrusted(&v.path, Some(&v.summary), reason.clone())),
            None => trusted.push(v),
        }
    }

    // Link: head hash → file; follow successors from every file without a trusted predecessor.
    let by_head: HashMap<&str, usize> = trusted
        .iter()
        .enumerate()
        .filter_map(|(i, v)| v.summary.head.as_deref().map(|h| (h, i)))
        .collect();
    let mut next: Vec<Option<usize>> = vec![None; trusted.len()];
    let mut has_prev = vec![false; trusted.len()];
    for (i, v) in trusted.iter().enumerate() {
        if let Some(p) = v.summary.anchor.as_deref().and_then(|a| by_head.get(a))
            && *p != i
        {
            next[*p] = Some(i);
            has_prev[i] = true;
        }
    }
    let mut chains = Vec::new();
    let mut counted = Vec::new();
    let mut revocations = Vec::new();
    let mut chain_of = vec![None; trusted.len()];
    let starts: Vec<usize> = (0..trusted.len()).filter(|&i| !has_prev[i]).collect();
    for start in starts {
        let mut info = ChainInfo {
            files: Vec::new(),
            starts: match trusted[start].summary.anchor.as_deref() {
                None => "empty",
                Some(GENESIS_PREV) => "genesis",
                Some(_) => "anchor",
            },
            anchor: trusted[start].summary.anchor.clone(),
            records: 0,
            first_seq: trusted[start].summary.first_seq,
            last_seq: None,
            head: None,
        };
        let mut at = Some(start);
        while let Some(i) = at {
            if chain_of[i].is_some() {
                break; // a cycle cannot happen with SHA-256 links; stop rather than loop.
            }
            chain_of[i] = Some(chains.len());
            let s = &trusted[i].summary;
            info.files.push(trusted[i].path.display().to_string());
            info.records += s.records;
            if s.last_seq.is_some() {
                info.last_seq = s.last_seq;
                info.head = s.head.clone();
            }
            counted.push(trusted[i].path.clone());
            at = next[i];
        }
        chains.push(info);
    }
    for (i, mut v) in trusted.into_iter().enumerate() {
        let mut s = status(&v.path, &v.summary, "trusted");
        s.chain = chain_of[i];
        statuses.push(s);
        revocations.append(&mut v.revocations);
    }
    statuses.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(Checked {
        files: statuses,
        chains,
        revocations,
        counted,
    })
}

/// Records missing inside one log, which the chain alone would take for a new start.
///
/// A log is a file as the proxy names it (`sink.rs`): the active `<name>` and its rotated
/// siblings `<name>.<seq of its first record, 20 digits>[-n]`, in one directory. Within a log:
/// - a file that continues a record not among the files given, while another file of the same
///   log ends (with no file continuing it) before that record: the records between are missing
///   (a rotated file deleted), or the earlier file was cut at a line boundary or its last line
///   changed (the later file's `prev` does not match it). Which one cannot be told, so both
///   files are untrusted;
/// - a rotated file whose first record is not the seq its name gives: records were cut from its
///   start.
///
/// A gap that a file already untrusted (`failed`, a rotated name in the gap) would fill is not
/// reported again. Returns, by index into `files`, why each file is untrusted. Names only ever
/// take trust away: a file named otherwise is judged by the chain alone.
fn gaps(files: &[Verified], failed: &[PathBuf]) -> HashMap<usize, String> {
    let mut out: HashMap<usize, String> = HashMap::new();
    let heads: HashSet<&str> = files
        .iter()
        .filter_map(|v| v.summary.head.as_deref())
        .collect();
    let anchors: HashSet<&str> = files
        .iter()
        .filter_map(|v| v.summary.anchor.as_deref())
        .collect();
    let logs: Vec<Option<(PathBuf, &str, Option<u64>)>> =
        files.iter().map(|v| log_name(&v.path)).collect();
    for (y, v) in files.iter().enumerate() {
        let (Some(log), Some(first)) = (&logs[y], v.summary.first_seq) else {
            continue;
        };
        if let Some(named) = log.2
            && named != first
        {
            out.insert(
                y,
                format!(
                    "{}: named for seq {named} (the proxy names a rotated file after its first \
                     record) but starts at seq {first}: records were cut from its start",
                    v.path.display()
                ),
            );
        }
        let Some(anchor) = v.summary.anchor.as_deref() else {
            continue;
        };
        if anchor == GENESIS_PREV || heads.contains(anchor) {
            continue;
        }
        // The nearest earlier end of the same log that nothing given continues.
        let before = files
            .iter()
            .enumerate()
            .filter(|&(x, _)| x != y)
            .filter(|(x, _)| {
                logs[*x]
                    .as_ref()
                    .is_some_and(|l| (&l.0, l.1) == (&log.0, log.1))
            })
            .filter_map(|(x, w)| Some((x, w.summary.last_seq?, w.summary.head.as_deref()?)))
            .filter(|&(_, last, head)| last < first && !anchors.contains(head))
            .max_by_key(|&(_, last, _)| last);
        let Some((x, last, _)) = before else {
            continue;
        };
        let explained = failed
            .iter()
            .filter_map(|p| log_name(p))
            .any(|(dir, base, seq)| {
                (&dir, base) == (&log.0, log.1) && seq.is_some_and(|s| last < s && s < first)
            });
        if explained {
            continue;
        }
        let (earlier, later) = (files[x].path.display(), v.path.display());
        let what = if last + 1 == first {
            format!("the record before seq {first} is not the one {later} continues")
        } else {
            format!("records seq {}..={} are missing", last + 1, first - 1)
        };
        let reason = format!(
            "incomplete evidence between {earlier} and {later}: {what} (a rotated file deleted, \
             or {earlier} cut or its last line changed); neither file is counted"
        );
        out.entry(x).or_insert_with(|| reason.clone());
        out.entry(y).or_insert(reason);
    }
    out
}

/// `(directory, active file name, seq in a rotated name)` for a file named as the proxy names
/// its audit files; `None` for a name without `.jsonl`.
fn log_name(path: &Path) -> Option<(PathBuf, &str, Option<u64>)> {
    let name = path.file_name()?.to_str()?;
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let rotated = name.rsplit_once('.').and_then(|(base, suffix)| {
        let digits = suffix.split_once('-').map_or(suffix, |(d, n)| {
            if n.bytes().all(|b| b.is_ascii_digit()) {
                d
            } else {
                ""
            }
        });
        (digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit()))
            .then(|| (base, digits.parse::<u64>().ok()))
    });
    match rotated {
        Some((base, seq)) => Some((dir, base, seq)),
        None => name.contains(".jsonl").then_some((dir, name, None)),
    }
}

fn verify_all(files: &[PathBuf]) -> Vec<Result<Verified, crate::audit::VerifyFailure>> {
    let threads = files.len().clamp(1, 4);
    let chunk = files.len().div_ceil(threads).max(1);
    std::thread::scope(|scope| {
        let handles: Vec<_> = files
            .chunks(chunk)
            .map(|part| scope.spawn(move || part.iter().map(|p| verify_one(p)).collect::<Vec<_>>()))
            .collect();
        let mut out = Vec::with_capacity(files.len());
        for (h, part) in handles.into_iter().zip(files.chunks(chunk)) {
            match h.join() {
                Ok(results) => out.extend(results),
                // A panic in the verifier is a bug; report the files as unreadable, never trust them.
                Err(_) => out.extend(part.iter().map(|p| {
                    Err(crate::audit::VerifyFailure {
                        file: p.clone(),
                        line: 0,
                        message: "verification failed unexpectedly".into(),
                        unreadable: false,
                    })
                })),
            }
        }
        out
    })
}

fn verify_one(path: &Path) -> Result<Verified, crate::audit::VerifyFailure> {
    let finder = memmem::Finder::new(br#""revocation":{"#);
    let mut revocations = Vec::new();
    let summary = verify_file_visiting(path, &mut |line| {
        if finder.find(line).is_some()
            && let Some(r) = parse_revocation(line)
        {
            revocations.push(r);
        }
    })?;
    Ok(Verified {
        path: path.to_owned(),
        summary,
        revocations,
    })
}

fn parse_revocation(line: &[u8]) -> Option<Revocation> {
    #[derive(Deserialize)]
    struct Line {
        ts: String,
        kind: String,
        revocation: Option<Inner>,
    }
    #[derive(Deserialize)]
    struct Inner {
        kind: String,
        value_sha256: String,
        #[serde(default)]
        until: Option<i64>,
    }
    let l: Line = serde_json::from_slice(line).ok()?;
    if l.kind != "revocation" {
        return None;
    }
    let inner = l.revocation?;
    Some(Revocation {
        kind: inner.kind,
        value_sha256: inner.value_sha256,
        at_micros: stamp::parse_micros(&l.ts)?,
        until: inner.until,
    })
}

fn status(path: &Path, s: &VerifySummary, st: &'static str) -> FileStatus {
    FileStatus {
        path: path.display().to_string(),
        status: st,
        records: s.records,
        first_seq: s.first_seq,
        last_seq: s.last_seq,
        first_ts: s.first_ts.clone(),
        last_ts: s.last_ts.clone(),
        chain: None,
        reason: None,
    }
}

fn untrusted(path: &Path, s: Option<&VerifySummary>, reason: String) -> FileStatus {
    let mut st = match s {
        Some(s) => status(path, s, "untrusted"),
        None => FileStatus {
            path: path.display().to_string(),
            status: "untrusted",
            records: 0,
            first_seq: None,
            last_seq: None,
            first_ts: None,
            last_ts: None,
            chain: None,
            reason: None,
        },
    };
    st.reason = Some(reason);
    st
}
