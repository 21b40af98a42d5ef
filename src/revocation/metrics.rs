//! Metrics of the revocation machinery beyond spec §9's `revocations_total` and lag histogram:
//! refused inputs and the shared backend's health. Registered on the process's registry.

use std::sync::Arc;

use prometheus::{IntCounterVec, IntGauge, Opts};

use super::Source;
use crate::metrics::Metrics;

/// `error` label words (fixed; never request data).
pub const SET_FULL: &str = "set_full";
pub const INVALID: &str = "invalid";
pub const UNAUTHORIZED: &str = "unauthorized";
pub const TOO_LARGE: &str = "too_large";
/// The shared store answered something that is not a revocation.
pub const GARBAGE: &str = "garbage";
/// A Shared Signals event type this receiver does not apply (acknowledged, counted).
pub const UNKNOWN_EVENT: &str = "unknown_event";
/// A revocation applied here could not be queued for the other replicas (queue full).
pub const QUEUE_FULL: &str = "queue_full";

#[derive(Clone)]
pub struct RevocationMetrics {
    errors: IntCounterVec,
    /// `fapi_guard_state_backend_up`: 1 while the shared backend is connected and loaded; 1
    /// with `state.backend: memory` (the state is in-process, so always there).
    pub backend_up: IntGauge,
    /// `fapi_guard_state_backend_errors_total{operation,error}`: failed Redis operations.
    backend_errors: IntCounterVec,
    /// The spec §9 metrics (`revocations_total`, the lag histogram).
    pub base: Arc<Metrics>,
}

impl RevocationMetrics {
    /// Registers on `m`'s registry. Fails only if registered twice on one registry.
    pub fn new(m: &Arc<Metrics>) -> Result<Self, String> {
        let errors = IntCounterVec::new(
            Opts::new(
                "fapi_guard_revocation_errors_total",
                "Revocation inputs refused or not applied, by source and error.",
            ),
            &["source", "error"],
        )
        .map_err(|e| e.to_string())?;
        let backend_up = IntGauge::new(
            "fapi_guard_state_backend_up",
            "1 while the state backend can be used: Redis reachable and its revocations loaded \
             (always 1 with backend: memory).",
        )
        .map_err(|e| e.to_string())?;
        let backend_errors = IntCounterVec::new(
            Opts::new(
                "fapi_guard_state_backend_errors_total",
                "Failed operations on the shared state backend (Redis), by operation and error.",
            ),
            &["operation", "error"],
        )
        .map_err(|e| e.to_string())?;
        m.register(Box::new(errors.clone()))
            .map_err(|e| e.to_string())?;
        m.register(Box::new(backend_up.clone()))
            .map_err(|e| e.to_string())?;
        m.register(Box::new(backend_errors.clone()))
            .map_err(|e| e.to_string())?;
        // In-process state is always available; a Redis backend sets 0 until it is connected.
        backend_up.set(1);
        Ok(Self {
            errors,
            backend_up,
            backend_errors,
            base: m.clone(),
        })
    }

    /// Counts a failed backend operation; both labels are fixed words.
    pub fn backend_error(&self, operation: &'static str, error: &'static str) {
        self.backend_errors
            .with_label_values(&[operation, error])
            .inc();
    }

    pub fn count(&self, source: Source, error: &'static str) {
        self.errors
            .with_label_values(&[source.as_str(), error])
            .inc();
    }
}
