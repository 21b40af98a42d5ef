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

/// Which file events in the watched directories can change the policies.
struct Relevant {
    /// Policy files named in the configuration (their directory is watched).
    files: Vec<PathBuf>,
    /// Policy directories named in the configuration.
    dirs: Vec<PathBuf>,
}

impl Relevant {
    fn new(paths: &[PathBuf]) -> Self {
        let (dirs, files) = paths.iter().cloned().partition(|p| p.is_dir());
        Self { files, dirs }
    }

    /// An event without paths (a rescan) counts. A path counts when it is a configured file,
    /// a `*.yaml`/`*.yml` in a configured directory, or Kubernetes' ConfigMap machinery (`..data`,
    /// `..2026_…`: an update swaps these, and the policy files are symlinks through them).
    fn concerns(&self, event_paths: &[PathBuf]) -> bool {
        event_paths.is_empty()
            || event_paths.iter().any(|p| {
                let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
                name.starts_with("..")
                    || self.files.iter().any(|f| f.file_name() == p.file_name())
                    || (self.dirs.iter().any(|d| p.parent() == Some(d.as_path()))
                        && (name.ends_with(".yaml") || name.ends_with(".yml")))
            })
    }
}

/// Watches the policy paths; returns the watcher, which must be kept alive.
pub fn watch(
    guard: Arc<Guard>,
    paths: Vec<PathBuf>,
) -> Result<notify::RecommendedWatcher, notify::Error> {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let relevant = Relevant::new(&paths);
    let mut watcher = notify::recommended_watcher(move |ev: notify::Result<notify::Event>| {
        // Reading the directory during a reload is itself an (access) event: counting it would
        // reload again, forever. Other files in a watched directory (an audit file written on
        // every request, say) are not policies: they never trigger a reload.
        if ev.is_ok_and(|e| {
            !matches!(e.kind, notify::EventKind::Access(_)) && relevant.concerns(&e.paths)
        }) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_policy_files_and_configmap_swaps_trigger_a_reload() {
        let dir = tempfile::tempdir().expect("tempdir");
        let policy_dir = dir.path().join("policies");
        std::fs::create_dir(&policy_dir).expect("mkdir");
        let file = dir.path().join("payments.yaml");
        let relevant = Relevant::new(&[file.clone(), policy_dir.clone()]);
        let yes = [
            file.clone(),
            policy_dir.join("accounts.yml"),
            dir.path().join("..data"),
            dir.path().join("..2026_12_03_21_00_00.123"),
        ];
        for p in yes {
            assert!(
                relevant.concerns(std::slice::from_ref(&p)),
                "{}",
                p.display()
            );
        }
        let no = [
            dir.path().join("audit.jsonl"),
            dir.path().join("audit.jsonl.00000000000000000001"),
            policy_dir.join("notes.txt"),
            dir.path().join("other.yaml"),
        ];
        for p in no {
            assert!(
                !relevant.concerns(std::slice::from_ref(&p)),
                "{}",
                p.display()
            );
        }
        assert!(relevant.concerns(&[]), "a rescan must reload");
    }
}
