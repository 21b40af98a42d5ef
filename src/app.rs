//! `fapi-guard run`: load, start, serve until SIGTERM/SIGINT, drain.

use std::path::Path;
use std::sync::Arc;

use crate::audit::AuditLog;
use crate::clock::Clock;
use crate::config::Config;
use crate::http_client::HttpsClient;
use crate::metrics::Metrics;
use crate::policy::PolicySet;
use crate::proxy::Guard;
use crate::{reload, server};

/// A startup failure; printed as one line, exit code 2.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("{0}")]
    Config(String),
    #[error("{0}")]
    Start(#[from] server::StartError),
}

/// Loads the configuration and policies and builds the guard (no sockets yet).
pub fn build(config: Config, clock: Clock) -> Result<Arc<Guard>, AppError> {
    let policies = PolicySet::load(&config.policy_paths).map_err(|errs| {
        AppError::Config(
            errs.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n"),
        )
    })?;
    let http = HttpsClient::new().map_err(AppError::Config)?;
    let metrics = Arc::new(Metrics::new());
    let audit = AuditLog::start(config.audit.clone(), metrics.clone(), clock.clone())
        .map_err(|e| AppError::Config(e.to_string()))?;
    let config = Arc::new(config);
    let guard =
        Guard::new(config, policies, http, clock, metrics, audit).map_err(AppError::Config)?;
    Ok(Arc::new(guard))
}

pub async fn run(config_file: &Path) -> Result<(), AppError> {
    let config = Config::load(config_file).map_err(|e| AppError::Config(e.to_string()))?;
    let guard = build(config, Clock::system())?;
    guard.spawn_refresh();
    let grace = guard.config().listen.limits.request_timeout;
    let running = server::start(guard.clone(), grace).await?;
    let _watcher = reload::watch(guard.clone(), guard.config().policy_paths.clone())
        .map_err(|e| tracing::warn!(error = %e, "policy watch unavailable; reload needs a restart"))
        .ok();
    spawn_on_hup(guard.clone());
    shutdown_signal().await;
    // Kubernetes removes a terminating pod from its endpoints, but kube-proxy, ingresses and
    // load balancers learn it late: keep serving (readiness false) for drain_delay first.
    let drain_delay = guard.config().listen.drain_delay;
    tracing::info!(
        drain_delay_ms = u64::try_from(drain_delay.as_millis()).unwrap_or(u64::MAX),
        "shutdown requested; readiness off, still accepting during drain_delay"
    );
    guard.set_draining();
    tokio::time::sleep(drain_delay).await;
    tracing::info!("drain_delay over; no new connections, finishing in-flight requests");
    running.shutdown(grace).await;
    // Everything forwarded has its records queued; flush them before exiting.
    let _ = tokio::time::timeout(grace, guard.audit().clone().shutdown()).await;
    tracing::info!("stopped");
    Ok(())
}

/// SIGHUP: reopen the audit file (after an external logrotate moved it) and reload the
/// policies.
fn spawn_on_hup(guard: Arc<Guard>) {
    #[cfg(unix)]
    tokio::spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut hup) = signal(SignalKind::hangup()) else {
            return;
        };
        while hup.recv().await.is_some() {
            tracing::info!("SIGHUP: reopening the audit file, reloading the policies");
            guard.audit().reopen().await;
            reload::reload_off_hot_path(&guard).await;
        }
    });
    #[cfg(not(unix))]
    let _ = guard;
}

pub(crate) async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
