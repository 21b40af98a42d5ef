//! Where sealed lines go: stdout, or an append-only file that resumes its chain after a restart
//! and rotates by size. Plain blocking `std::fs`: it only ever runs on the writer thread.
//!
//! **Rotation naming:** once the active file holds `rotate_bytes` or more, the next batch first
//! renames it to `<path>.<seq of its first record, zero-padded to 20 digits>` (for example
//! `audit.jsonl.00000000000000000001`) and starts a new file at `<path>`. The padding makes the
//! names sort in chain order, so `fapi-guard audit verify audit.jsonl.* audit.jsonl` checks the
//! whole history. The chain continues across files: seq does not restart and the first record of
//! the new file carries the hash of the rotated file's last line. A file may exceed
//! `rotate_bytes` by at most one batch.
//!
//! **Stdout** cannot be read back, so every process start begins a new chain at genesis there;
//! use the file sink where one verifiable history across restarts matters.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::AuditError;
use super::chain::ChainState;
use super::config::SinkSettings;

/// Records longer than this are not audit records; refusing them bounds resume memory.
const MAX_LINE_BYTES: u64 = 16 * 1024 * 1024;
const SEQ_DIGITS: usize = 20;

pub(crate) enum Sink {
    Stdout,
    File(FileSink),
}

pub(crate) struct FileSink {
    path: PathBuf,
    rotate_bytes: Option<u64>,
    fsync: bool,
    open: Option<OpenFile>,
}

struct OpenFile {
    file: File,
    len: u64,
    /// Seq of the file's first record (names the file when it is rotated).
    first_seq: Option<u64>,
    /// Regular file: resume, rotate and truncate apply (not to `/dev/full`, a FIFO, …).
    regular: bool,
}

impl Sink {
    pub(crate) fn new(settings: &SinkSettings, fsync: bool) -> Self {
        match settings {
            SinkSettings::Stdout => Self::Stdout,
            SinkSettings::File { path, rotate_bytes } => Self::File(FileSink {
                path: path.clone(),
                rotate_bytes: *rotate_bytes,
                fsync,
                open: None,
            }),
        }
    }

    /// Opens the sink if needed and says where the chain continues. `Some(state)`: the sink
    /// knows better than the writer (the file's last line — a new line must chain to what is
    /// really there — or, at process start, the newest rotated file, or genesis). `None`: keep
    /// the writer's state (already open, or a fresh empty file after logrotate).
    pub(crate) fn open(&mut self, have_state: bool) -> Result<Option<ChainState>, AuditError> {
        match self {
            // Stdout cannot be read back: each process start begins a new chain at genesis.
            Self::Stdout => Ok((!have_state).then(ChainState::genesis)),
            Self::File(f) => f.open(have_state).map_err(|e| f.error(e)),
        }
    }

    /// Writes one batch of complete lines; `first_seq` is the seq of its first line. On error the
    /// file is truncated back (best effort) and the handle dropped, to be reopened next batch.
    pub(crate) fn write_batch(&mut self, buf: &[u8], first_seq: u64) -> Result<(), AuditError> {
        match self {
            Self::Stdout => {
                let mut out = io::stdout().lock();
                out.write_all(buf)
                    .and_then(|()| out.flush())
                    .map_err(|e| AuditError::Sink(format!("stdout: {e}")))
            }
            Self::File(f) => f.write_batch(buf, first_seq).map_err(|e| f.error(e)),
        }
    }

    /// Drops the handle so the next batch opens the path again (SIGHUP after external logrotate).
    pub(crate) fn reopen(&mut self) {
        if let Self::File(f) = self {
            f.open = None;
        }
    }
}

impl FileSink {
    fn error(&self, e: io::Error) -> AuditError {
        AuditError::Sink(format!("{}: {e}", self.path.display()))
    }

    fn open(&mut self, have_state: bool) -> io::Result<Option<ChainState>> {
        if self.open.is_some() {
            return Ok(None);
        }
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::create_dir_all(dir)?;
        }
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&self.path)?;
        let regular = file.metadata()?.is_file();
        let (len, tail) = if regular {
            resume(&mut file, &self.path)?
        } else {
            (0, None)
        };
        let state = match tail {
            Some(state) => Some(state),
            None if have_state => None,
            None => Some(match newest_rotated(&self.path)? {
                Some(rotated) => last_state(&rotated)?.unwrap_or_else(ChainState::genesis),
                None => ChainState::genesis(),
            }),
        };
        let first_seq = if len > 0 { first_seq(&mut file)? } else { None };
        self.open = Some(OpenFile {
            file,
            len,
            first_seq,
            regular,
        });
        Ok(state)
    }

    fn write_batch(&mut self, buf: &[u8], first_seq: u64) -> io::Result<()> {
        // The writer opened the sink (and took its chain state) before sealing this batch.
        self.rotate_if_full(first_seq)?;
        let Some(open) = self.open.as_mut() else {
            return Err(io::Error::other("audit file is not open"));
        };
        let before = open.len;
        let written = open.file.write_all(buf).and_then(|()| {
            if self.fsync {
                open.file.sync_data()
            } else {
                Ok(())
            }
        });
        match written {
            Ok(()) => {
                open.len = before.saturating_add(buf.len() as u64);
                open.first_seq.get_or_insert(first_seq);
                Ok(())
            }
            Err(e) => {
                // Keep the file verifiable: cut a partial batch off (best effort — the disk may
                // be gone), then reopen next time, which also trims any torn remainder.
                if open.regular {
                    let _ = open.file.set_len(before);
                }
                self.open = None;
                Err(e)
            }
        }
    }

    /// `next_seq`: seq of the first record of the batch about to be written.
    fn rotate_if_full(&mut self, next_seq: u64) -> io::Result<()> {
        let (Some(limit), Some(open)) = (self.rotate_bytes, self.open.as_ref()) else {
            return Ok(());
        };
        if !open.regular || open.len == 0 || open.len < limit {
            return Ok(());
        }
        // Unknown first seq (unreadable first line): the file's last seq still sorts between
        // the previous rotated file and the next one.
        let seq = open.first_seq.unwrap_or(next_seq.saturating_sub(1));
        let target = free_rotated_name(&self.path, seq);
        if let Err(e) = fs::rename(&self.path, &target) {
            // Not fatal: records stay safe in the current file; retried on the next batch.
            tracing::warn!(path = %self.path.display(), error = %e, "audit log rotation failed");
            return Ok(());
        }
        tracing::info!(path = %self.path.display(), rotated = %target.display(), "audit log rotated");
        self.open = None;
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&self.path)?;
        if self.fsync {
            sync_dir(&self.path);
        }
        self.open = Some(OpenFile {
            file,
            len: 0,
            first_seq: None,
            regular: true,
        });
        Ok(())
    }
}

/// Reads an existing file's end: trims a torn last line (a crash mid-write; that record was never
/// acknowledged, so nothing acknowledged is lost) and returns the length and the chain state
/// after the last complete line.
fn resume(file: &mut File, path: &Path) -> io::Result<(u64, Option<ChainState>)> {
    let mut len = file.metadata()?.len();
    if len == 0 {
        return Ok((0, None));
    }
    if read_range(file, len - 1, 1)? != b"\n" {
        let good = line_start_before(file, len)?;
        tracing::warn!(
            path = %path.display(),
            torn_bytes = len - good,
            "audit log ends with an incomplete line (crash during write); truncating it"
        );
        file.set_len(good)?;
        len = good;
        if len == 0 {
            return Ok((0, None));
        }
    }
    let start = line_start_before(file, len - 1)?;
    if len - 1 - start > MAX_LINE_BYTES {
        return Err(invalid(format!(
            "last line is longer than {MAX_LINE_BYTES} bytes"
        )));
    }
    let line = read_range(file, start, len - 1 - start)?;
    let state = ChainState::after_line(&line).map_err(invalid)?;
    Ok((len, Some(state)))
}

/// Chain state after the last line of a closed (rotated) file; `None` if it is empty.
fn last_state(path: &Path) -> io::Result<Option<ChainState>> {
    let mut file = File::open(path)?;
    let len = file.metadata()?.len();
    if len == 0 {
        return Ok(None);
    }
    // A rotated file was complete when renamed; ignore a torn tail rather than editing it.
    let end = line_start_before(&mut file, len)?;
    if end == 0 {
        return Ok(None);
    }
    let start = line_start_before(&mut file, end - 1)?;
    let line = read_range(&mut file, start, (end - 1 - start).min(MAX_LINE_BYTES))?;
    ChainState::after_line(&line)
        .map(Some)
        .map_err(|e| invalid(format!("{}: {e}", path.display())))
}

fn first_seq(file: &mut File) -> io::Result<Option<u64>> {
    #[derive(serde::Deserialize)]
    struct Seq {
        seq: u64,
    }
    let head = read_range(file, 0, 64 * 1024)?;
    let line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    Ok(serde_json::from_slice::<Seq>(line).ok().map(|s| s.seq))
}

/// The newest `<path>.<20 digits>` beside `path`, by seq.
fn newest_rotated(path: &Path) -> io::Result<Option<PathBuf>> {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return Ok(None);
    };
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let prefix = format!("{}.", name.to_string_lossy());
    let mut best: Option<(u64, PathBuf)> = None;
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let entry_name = entry.file_name();
        let Some(digits) = entry_name.to_str().and_then(|n| n.strip_prefix(&prefix)) else {
            continue;
        };
        if digits.len() != SEQ_DIGITS || !digits.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(seq) = digits.parse::<u64>() else {
            continue;
        };
        if best.as_ref().is_none_or(|(b, _)| seq > *b) {
            best = Some((seq, entry.path()));
        }
    }
    Ok(best.map(|(_, p)| p))
}

/// `<path>.<seq:020>`, or with `-1`, `-2`… if that exists already (never clobber audit history).
fn free_rotated_name(path: &Path, seq: u64) -> PathBuf {
    let base = format!("{}.{seq:0SEQ_DIGITS$}", path.display());
    let mut candidate = PathBuf::from(&base);
    let mut n = 0u32;
    while candidate.exists() {
        n += 1;
        candidate = PathBuf::from(format!("{base}-{n}"));
    }
    candidate
}

/// Position just after the last `\n` strictly before `end`, or 0.
fn line_start_before(file: &mut File, end: u64) -> io::Result<u64> {
    let mut chunk = [0u8; 8192];
    let mut pos = end;
    while pos > 0 {
        let n = pos.min(chunk.len() as u64);
        let from = pos - n;
        file.seek(SeekFrom::Start(from))?;
        // n <= chunk.len(), so the cast and slice are in range.
        let part = &mut chunk[..n as usize];
        file.read_exact(part)?;
        if let Some(i) = part.iter().rposition(|&b| b == b'\n') {
            return Ok(from + i as u64 + 1);
        }
        pos = from;
    }
    Ok(0)
}

fn read_range(file: &mut File, from: u64, len: u64) -> io::Result<Vec<u8>> {
    file.seek(SeekFrom::Start(from))?;
    let mut out = Vec::new();
    file.take(len).read_to_end(&mut out)?;
    Ok(out)
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

/// Makes a rename durable (fsync of the directory entry); best effort.
fn sync_dir(path: &Path) {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
        && let Err(e) = File::open(dir).and_then(|d| d.sync_all())
    {
        tracing::warn!(dir = %dir.display(), error = %e, "fsync of the audit directory failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::chain::{GENESIS_PREV, line_hash};

    fn file_sink(path: &Path, rotate: Option<u64>) -> Sink {
        Sink::new(
            &SinkSettings::File {
                path: path.to_owned(),
                rotate_bytes: rotate,
            },
            false,
        )
    }

    #[test]
    fn open_resumes_from_file_contents() {
        let line = br#"{"v":1,"seq":7,"prev":"p"}"#;
        let complete = [&line[..], b"\n"].concat();
        // (name, file content, expected (next seq, prev) or error, content after open)
        type Case = (&'static str, Vec<u8>, Result<(u64, String), ()>, Vec<u8>);
        let cases: Vec<Case> = vec![
            (
                "absent file starts at genesis",
                vec![],
                Ok((1, GENESIS_PREV.into())),
                vec![],
            ),
            (
                "complete last line",
                complete.clone(),
                Ok((8, line_hash(line))),
                complete.clone(),
            ),
            (
                "torn last line is truncated",
                [&complete[..], br#"{"v":1,"seq":8,"pr"#].concat(),
                Ok((8, line_hash(line))),
                complete.clone(),
            ),
            (
                "only a torn line",
                br#"{"v":1,"se"#.to_vec(),
                Ok((1, GENESIS_PREV.into())),
                vec![],
            ),
            (
                "garbage last line refuses to guess",
                b"not json\n".to_vec(),
                Err(()),
                b"not json\n".to_vec(),
            ),
        ];
        for (name, content, want, after) in cases {
            let dir = tempfile::tempdir().expect("tempdir");
            let path = dir.path().join("sub/audit.jsonl");
            if !content.is_empty() {
                fs::create_dir_all(path.parent().expect("parent dir")).expect("parent dir");
                fs::write(&path, &content).expect("write file");
            }
            let got = file_sink(&path, None).open(false);
            match want {
                Ok((seq, prev)) => {
                    let state = got.expect("opens").expect("a fresh open yields a state");
                    assert_eq!((state.next_seq, state.prev), (seq, prev), "{name}");
                }
                Err(()) => assert!(got.is_err(), "{name}"),
            }
            assert_eq!(fs::read(&path).expect("read file"), after, "{name}");
        }
    }

    #[test]
    fn empty_file_continues_from_newest_rotated_sibling() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("audit.jsonl");
        let old = br#"{"v":1,"seq":3}"#;
        let newest = br#"{"v":1,"seq":9}"#;
        fs::write(
            format!("{}.{:020}", path.display(), 1),
            [&old[..], b"\n"].concat(),
        )
        .expect("write file");
        fs::write(
            format!("{}.{:020}", path.display(), 4),
            [&newest[..], b"\n"].concat(),
        )
        .expect("write file");
        fs::write(format!("{}.bak", path.display()), b"ignored\n").expect("write file");
        let mut sink = file_sink(&path, None);
        let state = sink.open(false).expect("opens").expect("opens");
        assert_eq!((state.next_seq, state.prev), (10, line_hash(newest)));
        // A writer that already has a state keeps it (fresh file after external logrotate).
        sink.reopen();
        assert_eq!(sink.open(true).expect("opens"), None);
    }

    #[test]
    fn rotated_names_sort_in_chain_order_and_never_clobber() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("a.jsonl");
        let first = free_rotated_name(&path, 9);
        let second = free_rotated_name(&path, 10);
        assert!(
            first
                .to_string_lossy()
                .ends_with("a.jsonl.00000000000000000009")
        );
        assert!(first < second);
        fs::write(&first, b"").expect("write file");
        assert!(
            free_rotated_name(&path, 9)
                .to_string_lossy()
                .ends_with("09-1")
        );
    }
}
