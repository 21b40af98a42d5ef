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

#[derive(Clone)]
pub struct RevocationMetrics {
    errors: IntCounterVec,
    /// `fapi_guard_state_backend_up`: 1 while the shared backend is connected and loaded.
    pub backend_up: IntGauge,
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
            "1 while the shared state backend (Redis) is reachable and its revocations loaded.",
        )
        .map_err(|e| e.to_string())?;
        m.register(Box::new(errors.clone()))
            .map_err(|e| e.to_string())?;
        m.register(Box::new(backend_up.clone()))
            .map_err(|e| e.to_string())?;
        Ok(Self {
            errors,
            backend_up,
            base: m.clone(),
        })
    }

    pub fn count(&self, source: Source, error: &'static str) {
        self.errors
            .with_label_values(&[source.as_str(), error])
            .inc();
    }
}
