//! Prometheus metrics: exactly the names, types and labels of spec §9, on a registry owned by
//! this handle (no global registry, so every test builds its own and runs in parallel).
//!
//! **Label values** must come only from compiled route names, configured issuers and the fixed
//! codes of this crate (deny reasons, cache names, result words) — never from request data
//! (spec §9). A client-controlled label value would let any caller grow the series set without
//! bound and exhaust the sidecar's memory.

use std::sync::Mutex;

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

/// `decision` label: the request was forwarded.
pub const DECISION_ALLOW: &str = "allow";
/// `decision` label: the request was refused.
pub const DECISION_DENY: &str = "deny";
/// `decision` label: a policy in `mode: audit` would have refused the request; it was forwarded
/// (spec §5 `mode`). Kept apart from `deny` so audit-mode rollouts do not page anyone.
pub const DECISION_AUDIT_DENY: &str = "audit_deny";
/// `reason` label of an allowed request (an empty value would read as "label absent").
pub const REASON_NONE: &str = "none";

/// Decision latency is the pure `decide` call plus fact gathering from warm caches: microseconds.
const DECISION_BUCKETS: &[f64] = &[
    0.000_005, 0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005,
    0.01, 0.025, 0.05,
];
/// Whole request including the upstream: milliseconds to the 30 s request timeout (spec §4).
const REQUEST_BUCKETS: &[f64] = &[
    0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
/// Revocations must take effect within a second across replicas (spec §1).
const LAG_BUCKETS: &[f64] = &[0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

/// Every metric of spec §9. Cheap to share behind an `Arc`; all handles are internally atomic.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    pub requests: IntCounterVec,
    pub decision_duration: HistogramVec,
    pub request_duration: HistogramVec,
    pub upstream_errors: IntCounterVec,
    pub cache_requests: IntCounterVec,
    pub dpop_replays: IntCounter,
    pub revocations: IntCounterVec,
    pub revocation_lag: Histogram,
    pub policy_reloads: IntCounterVec,
    pub policy_info: IntGaugeVec,
    pub audit_records: IntCounter,
    pub audit_failures: IntCounter,
    pub jwks_refreshes: IntCounterVec,
    /// Bounded security state and buffers (registered by `register_hardening`).
    pub replay_cache_entries: IntGauge,
    pub replay_cache_full: IntCounter,
    pub body_buffer_exhausted: IntCounter,
    pub body_limit_exceeded: IntCounter,
    /// RFC 7662 introspection calls by result (`introspection_call`).
    pub introspection_calls: IntCounterVec,
    /// Cold-path token verifications and refusals answered from remembered verdicts.
    pub token_verdicts: IntCounterVec,
    /// Entries and bound of each in-memory cache, refreshed at each scrape (`set_cache_size`).
    pub cache_entries: IntGaugeVec,
    pub cache_capacity: IntGaugeVec,
    /// The revision currently exported by `fapi_guard_policy_info`, so a new one replaces it.
    current_revision: Mutex<Option<String>>,
    /// Name and help of every registered family, observed or not (a vector without series is
    /// absent from `encode`): what `docs/reference.md` is checked against.
    families: Mutex<Vec<(String, String)>>,
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let m = Self {
            requests: counter_vec(
                "fapi_guard_requests_total",
                "Decisions by API, route, decision and deny reason.",
                &["api", "route", "decision", "reason"],
            ),
            decision_duration: histogram_vec(
                "fapi_guard_decision_duration_seconds",
                "Time to reach a decision, excluding the upstream.",
                &["api", "route"],
                DECISION_BUCKETS,
            ),
            request_duration: histogram_vec(
                "fapi_guard_request_duration_seconds",
                "Whole request duration including the upstream.",
                &["api", "route"],
                REQUEST_BUCKETS,
            ),
            upstream_errors: counter_vec(
                "fapi_guard_upstream_errors_total",
                "Upstream failures by kind.",
                &["kind"],
            ),
            cache_requests: counter_vec(
                "fapi_guard_cache_requests_total",
                "Cache lookups by cache (token, jwks, consent, introspection) and result (hit, miss).",
                &["cache", "result"],
            ),
            dpop_replays: counter(
                "fapi_guard_dpop_replays_total",
                "DPoP proofs refused because their jti was already seen.",
            ),
            revocations: counter_vec(
                "fapi_guard_revocations_total",
                "Revocations applied, by source (ssf, admin, redis) and kind.",
                &["source", "kind"],
            ),
            revocation_lag: histogram(
                "fapi_guard_revocation_lag_seconds",
                "Time from the revocation event to its enforcement on this replica.",
                LAG_BUCKETS,
            ),
            policy_reloads: counter_vec(
                "fapi_guard_policy_reloads_total",
                "Policy reloads by result (ok, error).",
                &["result"],
            ),
            policy_info: gauge_vec(
                "fapi_guard_policy_info",
                "The policy revision in force (value is always 1).",
                &["revision"],
            ),
            audit_records: counter(
                "fapi_guard_audit_records_total",
                "Audit records written to the sink.",
            ),
            audit_failures: counter(
                "fapi_guard_audit_failures_total",
                "Audit records that could not be written (must stay 0).",
            ),
            jwks_refreshes: counter_vec(
                "fapi_guard_jwks_refreshes_total",
                "JWKS refreshes by issuer and result (ok, error).",
                &["issuer", "result"],
            ),
            replay_cache_entries: gauge(
                "fapi_guard_replay_cache_entries",
                "DPoP proofs remembered by this replica for replay detection.",
            ),
            replay_cache_full: counter(
                "fapi_guard_replay_cache_full_total",
                "DPoP proofs refused (503) because the replay store was at its hard limit.",
            ),
            body_buffer_exhausted: counter(
                "fapi_guard_body_buffer_exhausted_total",
                "Requests refused (503) because in-flight body buffers reached limits.max_buffered_bytes.",
            ),
            body_limit_exceeded: counter(
                "fapi_guard_body_limit_exceeded_total",
                "Request bodies cut off at limits.max_body_bytes, buffered or streamed.",
            ),
            introspection_calls: counter_vec(
                "fapi_guard_introspection_calls_total",
                "Token introspection calls by result (active, inactive, unusable, transport, timeout, status, too_large, invalid).",
                &["result"],
            ),
            token_verdicts: counter_vec(
                "fapi_guard_token_verdicts_total",
                "JWT access tokens by how their verdict was reached (computed: full verification; remembered: a settled refusal answered without verifying again).",
                &["result"],
            ),
            cache_entries: gauge_vec(
                "fapi_guard_cache_entries",
                "Entries held by each in-memory cache (token, token_verdict, consent, consent_last_good, introspection, dpop_replay), at the last scrape.",
                &["cache"],
            ),
            cache_capacity: gauge_vec(
                "fapi_guard_cache_capacity",
                "The entry bound of each in-memory cache.",
                &["cache"],
            ),
            current_revision: Mutex::new(None),
            families: Mutex::new(Vec::new()),
            registry,
        };
        m.register_all();
        m.register_hardening();
        m.register_caches();
        m
    }

    /// Prometheus text exposition format, for the admin `/metrics` endpoint (spec §4, §9).
    pub fn encode(&self) -> String {
        TextEncoder::new()
            .encode_to_string(&self.registry.gather())
            .unwrap_or_else(|e| format!("# encode error: {e}\n"))
    }

    /// One decision: counts it and records how long `decide` (and fact gathering) took.
    /// `decision` is one of the `DECISION_*` constants, `reason` a `DenyReason::as_str()` or
    /// [`REASON_NONE`]; `api`/`route` are compiled names (see the module docs).
    pub fn observe_decision(
        &self,
        api: &str,
        route: &str,
        decision: &'static str,
        reason: &'static str,
        decide_seconds: f64,
    ) {
        self.requests
            .with_label_values(&[api, route, decision, reason])
            .inc();
        self.decision_duration
            .with_label_values(&[api, route])
            .observe(decide_seconds);
    }

    /// The whole request, including the upstream round trip.
    pub fn observe_request(&self, api: &str, route: &str, seconds: f64) {
        self.request_duration
            .with_label_values(&[api, route])
            .observe(seconds);
    }

    /// `kind` is a fixed word such as `connect`, `timeout`, `protocol`.
    pub fn upstream_error(&self, kind: &'static str) {
        self.upstream_errors.with_label_values(&[kind]).inc();
    }

    /// `cache` is one of `token`, `jwks`, `consent`, `introspection` (spec §9).
    pub fn cache_lookup(&self, cache: &'static str, hit: bool) {
        let result = if hit { "hit" } else { "miss" };
        self.cache_requests
            .with_label_values(&[cache, result])
            .inc();
    }

    pub fn dpop_replay(&self) {
        self.dpop_replays.inc();
    }

    /// `source` is `ssf`, `admin` or `redis`; `kind` the revocation kind (`jti`, `subject`, …).
    /// `lag_seconds` is event time → enforced here, when the event carries a time.
    pub fn revocation(&self, source: &'static str, kind: &'static str, lag_seconds: Option<f64>) {
        self.revocations.with_label_values(&[source, kind]).inc();
        if let Some(lag) = lag_seconds {
            self.revocation_lag.observe(lag.max(0.0));
        }
    }

    pub fn policy_reload(&self, ok: bool) {
        let result = if ok { "ok" } else { "error" };
        self.policy_reloads.with_label_values(&[result]).inc();
    }

    /// Exports `fapi_guard_policy_info{revision} 1` and removes the previous revision's series,
    /// so exactly one revision is in force at any time.
    pub fn set_policy_revision(&self, revision: &str) {
        // A poisoned lock only means another thread panicked mid-update; the Option is still valid.
        let mut current = self
            .current_revision
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(old) = current.as_deref() {
            if old == revision {
                return;
            }
            // Absent only if someone reset the vec by hand; nothing to remove then.
            let _ = self.policy_info.remove_label_values(&[old]);
        }
        self.policy_info.with_label_values(&[revision]).set(1);
        *current = Some(revision.to_owned());
    }

    pub fn audit_written(&self, records: u64) {
        self.audit_records.inc_by(records);
    }

    pub fn audit_failed(&self, records: u64) {
        self.audit_failures.inc_by(records);
    }

    /// `issuer` is a configured issuer identifier (bounded by the config file).
    pub fn jwks_refresh(&self, issuer: &str, ok: bool) {
        let result = if ok { "ok" } else { "error" };
        self.jwks_refreshes
            .with_label_values(&[issuer, result])
            .inc();
    }

    /// `fapi_guard_replay_cache_entries`: the replay store's size after a change.
    pub fn set_replay_entries(&self, n: usize) {
        self.replay_cache_entries
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    pub fn replay_full(&self) {
        self.replay_cache_full.inc();
    }

    pub fn buffer_exhausted(&self) {
        self.body_buffer_exhausted.inc();
    }

    pub fn body_too_large(&self) {
        self.body_limit_exceeded.inc();
    }

    /// One call to an introspection endpoint. `result` is `active`, `inactive`, `unusable`
    /// (active, but a claim the checks need is missing) or the failure (`transport`, `timeout`,
    /// `status`, `too_large`, `invalid`), which refused the request with 503.
    pub fn introspection_call(&self, result: &'static str) {
        self.introspection_calls.with_label_values(&[result]).inc();
    }

    /// One JWT access token through the cold path: `computed` (full verification) or
    /// `remembered` (a settled refusal answered from the verdict cache).
    pub fn token_verdict(&self, result: &'static str) {
        self.token_verdicts.with_label_values(&[result]).inc();
    }

    /// `fapi_guard_cache_entries` / `fapi_guard_cache_capacity` of one cache; `cache` is a
    /// fixed name (`token`, `token_verdict`, `consent`, `consent_last_good`, `introspection`,
    /// `dpop_replay`).
    pub fn set_cache_size(&self, cache: &'static str, entries: u64, capacity: u64) {
        let g = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        self.cache_entries
            .with_label_values(&[cache])
            .set(g(entries));
        self.cache_capacity
            .with_label_values(&[cache])
            .set(g(capacity));
    }

    fn register_caches(&self) {
        let collectors: [Box<dyn prometheus::core::Collector>; 3] = [
            Box::new(self.token_verdicts.clone()),
            Box::new(self.cache_entries.clone()),
            Box::new(self.cache_capacity.clone()),
        ];
        for c in collectors {
            // Invariant: distinct, valid names, none shared with the other registrations.
            self.remember(c.as_ref());
            self.registry
                .register(c)
                .expect("metric names are unique and valid");
        }
    }

    fn register_hardening(&self) {
        let collectors: [Box<dyn prometheus::core::Collector>; 5] = [
            Box::new(self.replay_cache_entries.clone()),
            Box::new(self.replay_cache_full.clone()),
            Box::new(self.body_buffer_exhausted.clone()),
            Box::new(self.body_limit_exceeded.clone()),
            Box::new(self.introspection_calls.clone()),
        ];
        for c in collectors {
            // Invariant: distinct, valid names, none shared with `register_all`.
            self.remember(c.as_ref());
            self.registry
                .register(c)
                .expect("metric names are unique and valid");
        }
    }

    /// Registers a collector owned elsewhere (revocation and state-backend metrics) on this
    /// registry, so `/metrics` exports it.
    pub fn register(&self, c: Box<dyn prometheus::core::Collector>) -> prometheus::Result<()> {
        let descs: Vec<(String, String)> = c
            .desc()
            .iter()
            .map(|d| (d.fq_name.clone(), d.help.clone()))
            .collect();
        self.registry.register(c)?;
        if let Ok(mut f) = self.families.lock() {
            f.extend(descs);
        }
        Ok(())
    }

    /// `(name, help)` of every registered metric family, in registration order.
    pub fn families(&self) -> Vec<(String, String)> {
        self.families.lock().map(|f| f.clone()).unwrap_or_default()
    }

    fn remember(&self, c: &dyn prometheus::core::Collector) {
        if let Ok(mut f) = self.families.lock() {
            f.extend(c.desc().iter().map(|d| (d.fq_name.clone(), d.help.clone())));
        }
    }

    fn register_all(&self) {
        let collectors: [Box<dyn prometheus::core::Collector>; 13] = [
            Box::new(self.requests.clone()),
            Box::new(self.decision_duration.clone()),
            Box::new(self.request_duration.clone()),
            Box::new(self.upstream_errors.clone()),
            Box::new(self.cache_requests.clone()),
            Box::new(self.dpop_replays.clone()),
            Box::new(self.revocations.clone()),
            Box::new(self.revocation_lag.clone()),
            Box::new(self.policy_reloads.clone()),
            Box::new(self.policy_info.clone()),
            Box::new(self.audit_records.clone()),
            Box::new(self.audit_failures.clone()),
            Box::new(self.jwks_refreshes.clone()),
        ];
        for c in collectors {
            // Invariant: a fresh registry and 13 distinct, valid names; registration cannot fail.
            self.remember(c.as_ref());
            self.registry
                .register(c)
                .expect("metric names are unique and valid");
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

// The constructors below take names and buckets from this file only; `expect` documents the
// invariant that they are valid Prometheus names / increasing buckets (checked by every test).

fn counter(name: &str, help: &str) -> IntCounter {
    IntCounter::new(name, help).expect("valid metric name")
}

fn gauge(name: &str, help: &str) -> IntGauge {
    IntGauge::new(name, help).expect("valid metric name")
}

fn counter_vec(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric name and labels")
}

fn gauge_vec(name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric name and labels")
}

fn histogram(name: &str, help: &str, buckets: &[f64]) -> Histogram {
    Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets.to_vec()))
        .expect("valid metric name and buckets")
}

fn histogram_vec(name: &str, help: &str, labels: &[&str], buckets: &[f64]) -> HistogramVec {
    HistogramVec::new(
        HistogramOpts::new(name, help).buckets(buckets.to_vec()),
        labels,
    )
    .expect("valid metric name, labels and buckets")
}

#[cfg(test)]
mod tests;
