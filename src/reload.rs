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
                guard
                    .audit()
                    .record_detached(AuditRecord::policy_reload_failed(&e));
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
                .record_detached(AuditRecord::policy_reload_failed(errors.join("; ")));
            Reload::Rejected { errors }
        }
    }
}

/// Watches the policy paths; returns the watcher, which must be kept alive.
pub fn watch(
    guard: Arc<Guard>,
    paths: Vec<PathBuf>,
) -> Result<notify::RecommendedWatcher, notify::Error> {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut watcher = notify::recommended_watcher(move |ev: notify::Result<notify::Event>| {
        if ev.is_ok() {
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
            reload_now(&guard, &paths);
        }
    });
    Ok(watcher)
}
