//! Certificate rotation: watch the directories holding the TLS files and reload on change.
//!
//! Directories rather than files, because rotation usually replaces files (rename, or the
//! Kubernetes secret volume's `..data` symlink swap) and a watch on the old inode would go quiet.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Weak};
use std::time::Duration;

use notify::{Event, EventKind, RecommendedWatcher, RecursiveMode, Watcher as _};

use super::{TlsAcceptor, TlsSettings};

/// Quiet period after the last change before reloading, so that a certificate and its key
/// written one after the other are picked up together.
const DEBOUNCE: Duration = Duration::from_millis(250);

pub(super) fn spawn(acceptor: &Arc<TlsAcceptor>) -> Result<RecommendedWatcher, notify::Error> {
    let files = files(acceptor.settings());
    let names: BTreeSet<OsString> = files
        .iter()
        .filter_map(|f| f.file_name().map(ToOwned::to_owned))
        .collect();
    let dirs: BTreeSet<PathBuf> = files.iter().map(|f| parent_dir(f)).collect();

    let (tx, rx) = mpsc::channel::<()>();
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<Event>| match res {
        Ok(event) if is_relevant(&event, &names) => {
            // A send error only means the reload thread is gone; nothing left to notify.
            let _ = tx.send(());
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "TLS file watcher error"),
    })?;
    for dir in &dirs {
        watcher.watch(dir, RecursiveMode::NonRecursive)?;
    }

    // The thread ends when the watcher (and with it the sender) is dropped, or the acceptor is.
    let target = Arc::downgrade(acceptor);
    std::thread::Builder::new()
        .name("tls-reload".to_owned())
        .spawn(move || reload_loop(&rx, &target))
        .map_err(notify::Error::io)?;
    tracing::info!(dirs = ?dirs, "watching TLS files for rotation");
    Ok(watcher)
}

fn files(s: &TlsSettings) -> Vec<PathBuf> {
    let mut files = vec![s.cert_file.clone(), s.key_file.clone()];
    files.extend(s.client_ca_file.clone());
    files
}

fn parent_dir(file: &Path) -> PathBuf {
    match file.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_owned(),
        _ => PathBuf::from("."),
    }
}

/// One of our files, or a `..name` entry (Kubernetes' atomic secret update), or a rescan.
fn is_relevant(event: &Event, names: &BTreeSet<OsString>) -> bool {
    if matches!(event.kind, EventKind::Access(_)) {
        return false;
    }
    event.need_rescan()
        || event.paths.is_empty()
        || event.paths.iter().any(|p| {
            p.file_name()
                .is_some_and(|n| names.contains(n) || n.to_string_lossy().starts_with(".."))
        })
}

fn reload_loop(rx: &Receiver<()>, target: &Weak<TlsAcceptor>) {
    while rx.recv().is_ok() {
        loop {
            match rx.recv_timeout(DEBOUNCE) {
                Ok(()) => {}
                Err(RecvTimeoutError::Timeout) => break,
                Err(RecvTimeoutError::Disconnected) => return,
            }
        }
        let Some(acceptor) = target.upgrade() else {
            return;
        };
        let cert = acceptor.settings().cert_file.display().to_string();
        match acceptor.reload() {
            Ok(()) => tracing::info!(cert_file = %cert, "TLS certificate reloaded"),
            Err(e) => tracing::error!(
                cert_file = %cert,
                error = %e,
                "TLS reload failed; keeping the previous certificate"
            ),
        }
    }
}
