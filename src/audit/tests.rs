//! Writer, sink and verifier together, on real files.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::chain::line_hash;
use super::config::SinkSettings;
use super::*;
use crate::clock::Clock;
use crate::metrics::Metrics;
use crate::reason::DenyReason;

fn start(settings: AuditSettings) -> (AuditLog, Arc<Metrics>) {
    let metrics = Arc::new(Metrics::new());
    let log = AuditLog::start(settings, metrics.clone(), Clock::fixed(1_795_500_000))
        .expect("writer starts");
    (log, metrics)
}

fn file_settings(path: &Path, rotate_bytes: Option<u64>) -> AuditSettings {
    AuditSettings {
        sink: SinkSettings::File {
            path: path.to_owned(),
            rotate_bytes,
        },
        ..AuditSettings::stdout()
    }
}

fn sample(i: u64) -> AuditRecord {
    let rec = if i.is_multiple_of(3) {
        AuditRecord::deny(DenyReason::TokenExpired)
    } else {
        AuditRecord::allow()
    };
    rec.interaction_id(format!("i-{i}"))
        .route("accounts", "get-account")
        .decide_us(i)
}

fn lines(path: &Path) -> Vec<String> {
    fs::read_to_string(path)
        .expect("read file")
        .lines()
        .map(str::to_owned)
        .collect()
}

fn seq_of(line: &str) -> u64 {
    serde_json::from_str::<serde_json::Value>(line).expect("valid JSON")["seq"]
        .as_u64()
        .expect("number")
}

/// The active file last, rotated files first, in chain order (their names sort).
fn all_files(path: &Path) -> Vec<PathBuf> {
    let name = path
        .file_name()
        .expect("file name")
        .to_string_lossy()
        .into_owned();
    let mut rotated: Vec<PathBuf> = fs::read_dir(path.parent().expect("parent dir"))
        .expect("read dir")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| {
            p.file_name()
                .expect("file name")
                .to_string_lossy()
                .starts_with(&format!("{name}."))
        })
        .collect();
    rotated.sort();
    rotated.push(path.to_owned());
    rotated
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_records_form_one_chain_with_group_commit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("audit.jsonl");
    // `fsync: true` selects the writer thread, whose batches amortize the fsync.
    let (log, metrics) = start(AuditSettings {
        fsync: true,
        ..file_settings(&path, None)
    });
    let tasks: Vec<_> = (0..1000u64)
        .map(|i| {
            let log = log.clone();
            tokio::spawn(async move { log.record(sample(i)).await })
        })
        .collect();
    for t in tasks {
        t.await.expect("task joined").expect("recorded");
    }
    let batches = log.committed_batches();
    log.shutdown().await;

    let summary = verify_files(std::slice::from_ref(&path)).expect("verifies");
    assert_eq!(summary.records, 1000);
    assert_eq!((summary.first_seq, summary.last_seq), (Some(1), Some(1000)));
    assert_eq!(summary.anchor.as_deref(), Some(chain::GENESIS_PREV));
    assert_eq!(summary.allows + summary.denies, 1000);
    assert_eq!(metrics.audit_records.get(), 1000);
    assert_eq!(metrics.audit_failures.get(), 0);
    assert!(
        batches < 1000,
        "no group commit: {batches} batches for 1000 records"
    );
    eprintln!("1000 records in {batches} batches");
}

#[tokio::test]
async fn detached_records_are_flushed_by_shutdown() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("audit.jsonl");
    let (log, metrics) = start(AuditSettings {
        fsync: true,
        ..file_settings(&path, None)
    });
    for i in 0..200 {
        log.record_detached(AuditRecord::outcome(200, i));
    }
    log.clone().shutdown().await;
    assert_eq!(
        verify_files(std::slice::from_ref(&path))
            .expect("verifies")
            .records,
        200
    );
    assert_eq!(metrics.audit_records.get(), 200);

    // After shutdown nothing is dropped silently: both paths fail and count.
    assert_eq!(
        log.record(AuditRecord::allow()).await,
        Err(AuditError::Closed)
    );
    log.record_detached(AuditRecord::allow());
    assert_eq!(metrics.audit_failures.get(), 2);
}

#[tokio::test]
async fn restart_continues_the_chain_and_trims_a_torn_line() {
    let cases = [
        ("clean restart", None),
        (
            "kill -9 mid-write left a torn line",
            Some(&br#"{"v":1,"seq":4,"ts":"2026-"#[..]),
        ),
    ];
    for (name, torn) in cases {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("a/audit.jsonl");
        let (log, _) = start(file_settings(&path, None));
        for i in 0..3 {
            log.record(sample(i)).await.expect("recorded");
        }
        log.shutdown().await;
        if let Some(bytes) = torn {
            let mut content = fs::read(&path).expect("read file");
            content.extend_from_slice(bytes);
            fs::write(&path, content).expect("write file");
        }
        let (log, metrics) = start(file_settings(&path, None));
        for i in 3..6 {
            log.record(sample(i)).await.expect("recorded");
        }
        log.shutdown().await;
        let summary =
            verify_files(std::slice::from_ref(&path)).unwrap_or_else(|f| panic!("{name}: {f}"));
        assert_eq!(
            (summary.first_seq, summary.last_seq),
            (Some(1), Some(6)),
            "{name}"
        );
        assert_eq!(metrics.audit_failures.get(), 0, "{name}");
    }
}

#[tokio::test]
async fn rotation_splits_files_and_the_chain_continues() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("audit.jsonl");
    let (log, _) = start(file_settings(&path, Some(600)));
    for i in 0..20 {
        log.record(sample(i)).await.expect("recorded");
    }
    log.shutdown().await;
    let files = all_files(&path);
    assert!(files.len() >= 3, "expected several files, got {files:?}");
    let summary = verify_files(&files).expect("verifies");
    assert_eq!((summary.records, summary.last_seq), (20, Some(20)));

    // The first record of file 2 carries the hash of the last line of file 1; names = first seq.
    let first = lines(&files[0]);
    let second = lines(&files[1]);
    let head: serde_json::Value = serde_json::from_str(&second[0]).expect("valid JSON");
    assert_eq!(
        head["prev"],
        line_hash(first.last().expect("last line").as_bytes()).as_str()
    );
    assert_eq!(
        seq_of(&second[0]),
        seq_of(first.last().expect("last line")) + 1
    );
    assert!(
        files[1]
            .to_string_lossy()
            .ends_with(&format!(".{:020}", seq_of(&second[0])))
    );

    // Verifying out of order or with a file missing fails at the first line of the break.
    let err = verify_files(&[files[1].clone(), files[0].clone()]).expect_err("should fail");
    assert_eq!((err.file.clone(), err.line), (files[0].clone(), 1), "{err}");
    let err = verify_files(&[files[0].clone(), files[2].clone()]).expect_err("should fail");
    assert_eq!((err.file.clone(), err.line), (files[2].clone(), 1), "{err}");

    // A crash right after a rotation leaves no active file: a restart continues from the
    // newest rotated file rather than starting a second chain.
    fs::remove_file(&path).expect("remove file");
    let (log, _) = start(file_settings(&path, Some(600)));
    log.record(sample(99)).await.expect("recorded");
    log.shutdown().await;
    let resumed = verify_files(&all_files(&path)).expect("verifies");
    assert!(resumed.records > 1);
}

#[tokio::test]
async fn external_logrotate_then_reopen_continues_the_chain() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("audit.jsonl");
    let moved = dir.path().join("audit.jsonl-20261124");
    let (log, _) = start(file_settings(&path, None));
    for i in 0..3 {
        log.record(sample(i)).await.expect("recorded");
    }
    fs::rename(&path, &moved).expect("rename");
    log.reopen().await;
    for i in 3..5 {
        log.record(sample(i)).await.expect("recorded");
    }
    log.shutdown().await;
    assert_eq!(lines(&moved).len(), 3);
    assert_eq!(seq_of(&lines(&path)[0]), 4);
    assert_eq!(verify_files(&[moved, path]).expect("verifies").records, 5);
}

#[tokio::test]
async fn broken_sink_fails_counts_and_recovers() {
    let dir = tempfile::tempdir().expect("tempdir");
    // The parent "directory" is a regular file: the log cannot be created.
    let blocker = dir.path().join("blocked");
    fs::write(&blocker, b"not a directory").expect("write file");
    let path = blocker.join("audit.jsonl");
    let (log, metrics) = start(file_settings(&path, None));

    let err = log.record(sample(0)).await.expect_err("should fail");
    assert!(matches!(err, AuditError::Sink(_)), "{err:?}");
    log.record_detached(sample(1));
    assert!(log.record(sample(2)).await.is_err());
    assert_eq!(metrics.audit_failures.get(), 3);
    assert_eq!(metrics.audit_records.get(), 0);

    // The sink comes back: the next record succeeds, starting a clean, verifiable chain.
    fs::remove_file(&blocker).expect("remove file");
    fs::create_dir(&blocker).expect("create dir");
    log.record(sample(3)).await.expect("recorded");
    log.shutdown().await;
    let summary = verify_files(std::slice::from_ref(&path)).expect("verifies");
    assert_eq!((summary.records, summary.first_seq), (1, Some(1)));
    assert_eq!(metrics.audit_records.get(), 1);
}

#[tokio::test]
#[cfg_attr(
    not(target_os = "linux"),
    ignore = "needs Linux /dev/full (a device whose writes fail with ENOSPC)"
)]
async fn full_device_fails_every_record_without_panicking() {
    // Linux guarantees /dev/full (every write fails with ENOSPC). Without it this test would
    // prove nothing, so it fails rather than passing silently.
    let dev_full = Path::new("/dev/full");
    assert!(
        dev_full.exists(),
        "/dev/full is missing: this test needs a device whose writes fail with ENOSPC"
    );
    let (log, metrics) = start(AuditSettings {
        fsync: true,
        ..file_settings(dev_full, Some(1))
    });
    for i in 0..3 {
        let err = log.record(sample(i)).await.expect_err("should fail");
        assert!(
            matches!(&err, AuditError::Sink(m) if m.contains("/dev/full")),
            "{err:?}"
        );
    }
    log.shutdown().await;
    assert_eq!(metrics.audit_failures.get(), 3);
    assert_eq!(metrics.audit_records.get(), 0);
}

#[tokio::test]
async fn full_queue_refuses_instead_of_blocking() {
    let dir = tempfile::tempdir().expect("tempdir");
    // One queue slot and a producer that never yields: most records find the queue full.
    let path = dir.path().join("audit.jsonl");
    let settings = AuditSettings {
        queue_capacity: 1,
        enqueue_timeout: std::time::Duration::from_millis(1),
        ..file_settings(&path, None)
    };
    let (log, metrics) = start(settings);
    for i in 0..10_000 {
        log.record_detached(sample(i));
    }
    log.clone().shutdown().await;
    let written = metrics.audit_records.get();
    let failed = metrics.audit_failures.get();
    // Every record is accounted for exactly once, written or counted as failed.
    assert_eq!(written + failed, 10_000);
    assert_eq!(
        verify_files(std::slice::from_ref(&path))
            .expect("verifies")
            .records,
        written
    );
}

/// Inline mode (file, no fsync): many threads write through the mutex, one chain results.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inline_concurrent_records_form_one_chain() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("audit.jsonl");
    let (log, metrics) = start(file_settings(&path, None));
    let tasks: Vec<_> = (0..1000u64)
        .map(|i| {
            let log = log.clone();
            tokio::spawn(async move {
                log.record(sample(i)).await?;
                // An outcome nobody waits for, as the proxy writes after each response.
                log.record_detached(AuditRecord::outcome(200, i));
                Ok::<(), AuditError>(())
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("task joined").expect("recorded");
    }
    log.shutdown().await;
    let summary = verify_files(std::slice::from_ref(&path)).expect("verifies");
    assert_eq!(summary.records, 2000);
    assert_eq!((summary.first_seq, summary.last_seq), (Some(1), Some(2000)));
    assert_eq!(metrics.audit_records.get(), 2000);
    assert_eq!(metrics.audit_failures.get(), 0);
}

/// The `before_forward` guarantee in inline mode: when `record` returns, the line is in the file
/// (handed to the kernel, so it survives kill -9), not in a buffer of this process.
#[tokio::test]
async fn inline_record_is_in_the_file_when_it_returns() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("audit.jsonl");
    let (log, _metrics) = start(file_settings(&path, None));
    for i in 0..50u64 {
        log.record(sample(i)).await.expect("recorded");
        let all = lines(&path);
        let last: serde_json::Value =
            serde_json::from_str(all.last().expect("a line")).expect("json");
        assert_eq!(last["interaction_id"], format!("i-{i}"));
        assert_eq!(seq_of(all.last().expect("a line")), i + 1);
    }
    log.shutdown().await;
}

/// Detached records are written by the flusher within a few intervals, with no other traffic,
/// and a log dropped without `shutdown` still writes what it holds.
#[tokio::test]
async fn inline_detached_records_are_flushed_without_traffic() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("audit.jsonl");
    let (log, metrics) = start(file_settings(&path, None));
    log.record_detached(sample(1));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while lines(&path).is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "detached record not flushed"
        );
        tokio::time::sleep(super::writer::FLUSH_EVERY).await;
    }
    assert_eq!(metrics.audit_records.get(), 1);

    // Fill the pending list without waiting for the flusher, then drop every handle.
    for i in 2..=5 {
        log.record_detached(sample(i));
    }
    drop(log);
    // The last handle may be the flusher's (it holds one only while flushing): allow it to
    // finish, but the records must arrive without any further call.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while lines(&path).len() < 5 && std::time::Instant::now() < deadline {
        std::thread::sleep(super::writer::FLUSH_EVERY);
    }
    let summary = verify_files(std::slice::from_ref(&path)).expect("verifies");
    assert_eq!(summary.records, 5);
    assert_eq!(metrics.audit_records.get(), 5);
}

/// Inline mode after shutdown: both paths fail and count, as with the writer thread.
#[tokio::test]
async fn inline_records_after_shutdown_fail_and_count() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("audit.jsonl");
    let (log, metrics) = start(file_settings(&path, None));
    log.record_detached(sample(0));
    log.clone().shutdown().await;
    assert_eq!(lines(&path).len(), 1);
    assert_eq!(log.record(sample(1)).await, Err(AuditError::Closed));
    log.record_detached(sample(2));
    assert_eq!(metrics.audit_failures.get(), 2);
    assert_eq!(metrics.audit_records.get(), 1);
}
