//! Policy hot reload: the policy files and directories are watched; a change recompiles the
//! whole set and swaps it in atomically. A set that fails to compile is logged and the running
//! policy stays in force (fail safe: never run with half a policy).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;

use crate::audit::AuditRecord;
use crate::policy::PolicySet;
use crate::proxy::Guard;

/// Changes arriving within this window are folded into one reload (editors write in bursts,
/// ConfigMap updates swap a symlink).
const DEBOUNCE: Duration = Duration::from_millis(250);

/// Outcome of one reload attempt.
#[derive(Debug)]
pub enum Reload {
    Applied { revision: String },
    Unchanged,
    Rejected { errors: Vec<String> },
}

/// Recompiles the policies and swaps them in when they compile.
pub fn reload_now(guard: &Guard, paths: &[PathBuf]) -> Reload {
    match PolicySet::load(paths) {
        Ok(set) => {
            if set.revision() == guard.policies().revision() {
                return Reload::Unchanged;
            }
            let revision = set.revision().to_owned();
            if let Err(e) = guard.replace_policies(set) {
                tracing::error!(error = %e, "policy reload rejected; keeping the running policy");
                guard.metrics().policy_reload(false);
                guard.audit().record_detached(failed(guard, &e));
                return Reload::Rejected { errors: vec![e] };
            }
            guard.metrics().policy_reload(true);
            guard
                .audit()
                .record_detached(AuditRecord::policy_reload_ok(&revision));
            tracing::info!(%revision, "policies reloaded");
            Reload::Applied { revision }
        }
        Err(errs) => {
            let errors: Vec<String> = errs.iter().map(ToString::to_string).collect();
            for e in &errors {
                tracing::error!(error = %e, "policy reload rejected; keeping the running policy");
            }
            guard.metrics().policy_reload(false);
            guard
                .audit()
                .record_detached(failed(guard, &errors.join("; ")));
            Reload::Rejected { errors }
        }
    }
}

/// A failed reload's record names the revision that stays in force.
fn failed(guard: &Guard, error: &str) -> AuditRecord {
    let mut r = AuditRecord::policy_reload_failed(error);
    r.policy_revision = Some(guard.policies().revision().to_owned());
    r
}

/// Reloads on a blocking thread: reading and compiling the files never runs on the runtime
/// threads that serve requests, and the swap is one atomic pointer store.
pub async fn reload_off_hot_path(guard: &Arc<Guard>) -> Option<Reload> {
    let g = guard.clone();
    let paths = guard.config().policy_paths.clone();
    tokio::task::spawn_blocking(move || reload_now(&g, &paths))
        .await
        .ok()
}

/// Watches the policy paths; returns the watcher, which must be kept alive.
pub fn watch(
    guard: Arc<Guard>,
    paths: Vec<PathBuf>,
) -> Result<notify::RecommendedWatcher, notify::Error> {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut watcher = notify::recommended_watcher(move |ev: notify::Result<notify::Event>| {
        // Reading the directory during a reload is itself an (access) event: counting it would
        // reload again, forever.
        if ev.is_ok_and(|e| !matches!(e.kind, notify::EventKind::Access(_))) {
            let _ = tx.send(());
        }
    })?;
    for p in &paths {
        // Watch the directory holding a file too: ConfigMaps replace files by renaming.
        let target = if p.is_dir() {
            p.clone()
        } else {
            p.parent().map(PathBuf::from).unwrap_or_else(|| p.clone())
        };
        watcher.watch(&target, RecursiveMode::NonRecursive)?;
    }
    tokio::spawn(async move {
        while rx.recv().await.is_some() {
            tokio::time::sleep(DEBOUNCE).await;
            while rx.try_recv().is_ok() {}
            let g = guard.clone();
            let p = paths.clone();
            let _ = tokio::task::spawn_blocking(move || reload_now(&g, &p)).await;
        }
    });
    Ok(watcher)
}
