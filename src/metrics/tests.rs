use std::collections::BTreeSet;

use super::*;

/// One observation of every metric, so each family (even the labelled ones) is exported.
fn observe_everything(m: &Metrics) {
    m.observe_decision(
        "accounts",
        "get-account",
        DECISION_ALLOW,
        REASON_NONE,
        0.000_012,
    );
    m.observe_request("accounts", "get-account", 0.004);
    m.upstream_error("timeout");
    m.cache_lookup("jwks", true);
    m.dpop_replay();
    m.revocation("admin", "jti", Some(0.2));
    m.policy_reload(true);
    m.set_policy_revision("sha256:abc");
    m.audit_written(1);
    m.audit_failed(0);
    m.jwks_refresh("https://as.bank.example", true);
    m.token_verdict("remembered");
    m.set_cache_size("token", 1, 10);
}

/// Names of the sample lines (`name{labels} value` or `name value`) of an exposition.
fn sample_names(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_owned)
        .collect()
}

#[test]
fn scripted_observations_encode_as_expected() {
    let m = Metrics::new();
    m.observe_decision(
        "accounts",
        "get-account",
        DECISION_ALLOW,
        REASON_NONE,
        0.000_012,
    );
    m.observe_decision(
        "accounts",
        "get-account",
        DECISION_ALLOW,
        REASON_NONE,
        0.000_012,
    );
    m.observe_decision(
        "accounts",
        "get-account",
        DECISION_DENY,
        "token_expired",
        0.000_3,
    );
    m.observe_request("accounts", "get-account", 0.004);
    m.upstream_error("connect");
    m.cache_lookup("consent", true);
    m.cache_lookup("consent", true);
    m.cache_lookup("consent", false);
    m.dpop_replay();
    m.revocation("ssf", "subject", Some(0.3));
    m.revocation("admin", "jti", None);
    m.policy_reload(true);
    m.policy_reload(false);
    m.audit_written(5);
    m.audit_failed(2);
    m.jwks_refresh("https://as.bank.example", false);
    m.token_verdict("computed");
    m.token_verdict("remembered");
    m.token_verdict("remembered");
    m.set_cache_size("token_verdict", 7, 10_000);
    m.set_cache_size("token_verdict", 3, 10_000);
    let text = m.encode();

    let expected = [
        (
            "allow counted",
            r#"fapi_guard_requests_total{api="accounts",decision="allow",reason="none",route="get-account"} 2"#,
        ),
        (
            "deny counted with reason",
            r#"fapi_guard_requests_total{api="accounts",decision="deny",reason="token_expired",route="get-account"} 1"#,
        ),
        (
            "decision histogram type",
            "# TYPE fapi_guard_decision_duration_seconds histogram",
        ),
        (
            "12µs lands in the 25µs bucket",
            r#"fapi_guard_decision_duration_seconds_bucket{api="accounts",route="get-account",le="0.000025"} 2"#,
        ),
        (
            "5µs bucket stays empty",
            r#"fapi_guard_decision_duration_seconds_bucket{api="accounts",route="get-account",le="0.000005"} 0"#,
        ),
        (
            "decision count",
            r#"fapi_guard_decision_duration_seconds_count{api="accounts",route="get-account"} 3"#,
        ),
        (
            "request 4ms in the 5ms bucket",
            r#"fapi_guard_request_duration_seconds_bucket{api="accounts",route="get-account",le="0.005"} 1"#,
        ),
        (
            "request 30s top bucket",
            r#"fapi_guard_request_duration_seconds_bucket{api="accounts",route="get-account",le="30"} 1"#,
        ),
        (
            "upstream errors",
            r#"fapi_guard_upstream_errors_total{kind="connect"} 1"#,
        ),
        (
            "cache hits",
            r#"fapi_guard_cache_requests_total{cache="consent",result="hit"} 2"#,
        ),
        (
            "cache misses",
            r#"fapi_guard_cache_requests_total{cache="consent",result="miss"} 1"#,
        ),
        ("replays", "fapi_guard_dpop_replays_total 1"),
        (
            "revocations ssf",
            r#"fapi_guard_revocations_total{kind="subject",source="ssf"} 1"#,
        ),
        (
            "revocations admin",
            r#"fapi_guard_revocations_total{kind="jti",source="admin"} 1"#,
        ),
        (
            "lag only when known",
            "fapi_guard_revocation_lag_seconds_count 1",
        ),
        (
            "lag bucket",
            r#"fapi_guard_revocation_lag_seconds_bucket{le="0.5"} 1"#,
        ),
        (
            "reload ok",
            r#"fapi_guard_policy_reloads_total{result="ok"} 1"#,
        ),
        (
            "reload error",
            r#"fapi_guard_policy_reloads_total{result="error"} 1"#,
        ),
        ("audit records", "fapi_guard_audit_records_total 5"),
        ("audit failures", "fapi_guard_audit_failures_total 2"),
        (
            "jwks",
            r#"fapi_guard_jwks_refreshes_total{issuer="https://as.bank.example",result="error"} 1"#,
        ),
        ("counter type", "# TYPE fapi_guard_requests_total counter"),
        (
            "verdicts remembered",
            r#"fapi_guard_token_verdicts_total{result="remembered"} 2"#,
        ),
        (
            "verdicts computed",
            r#"fapi_guard_token_verdicts_total{result="computed"} 1"#,
        ),
        (
            "cache entries: the last value",
            r#"fapi_guard_cache_entries{cache="token_verdict"} 3"#,
        ),
        (
            "cache bound",
            r#"fapi_guard_cache_capacity{cache="token_verdict"} 10000"#,
        ),
    ];
    for (name, line) in expected {
        assert!(
            text.lines().any(|l| l == line),
            "{name}: missing {line:?} in\n{text}"
        );
    }
}

#[test]
fn unlabelled_counters_start_at_zero() {
    let text = Metrics::new().encode();
    for (name, line) in [
        (
            "audit failures visible before any failure",
            "fapi_guard_audit_failures_total 0",
        ),
        ("audit records", "fapi_guard_audit_records_total 0"),
        ("replays", "fapi_guard_dpop_replays_total 0"),
    ] {
        assert!(text.lines().any(|l| l == line), "{name}: {line:?}");
    }
}

#[test]
fn policy_info_keeps_only_the_current_revision() {
    let m = Metrics::new();
    let cases = [
        ("first revision", "sha256:aaa", None),
        ("same revision again", "sha256:aaa", None),
        (
            "new revision replaces old",
            "sha256:bbb",
            Some("sha256:aaa"),
        ),
    ];
    for (name, rev, gone) in cases {
        m.set_policy_revision(rev);
        let text = m.encode();
        let line = format!(r#"fapi_guard_policy_info{{revision="{rev}"}} 1"#);
        assert!(text.lines().any(|l| l == line), "{name}: {line}");
        if let Some(old) = gone {
            assert!(!text.contains(old), "{name}: {old} still exported");
        }
        assert!(
            text.contains("# TYPE fapi_guard_policy_info gauge"),
            "{name}"
        );
        let series = text
            .lines()
            .filter(|l| l.starts_with("fapi_guard_policy_info{"))
            .count();
        assert_eq!(series, 1, "{name}");
    }
}

#[test]
fn every_spec_metric_is_exported() {
    let m = Metrics::new();
    observe_everything(&m);
    let names = sample_names(&m.encode());
    // Spec §9, in table order.
    let spec = [
        "fapi_guard_requests_total",
        "fapi_guard_decision_duration_seconds_bucket",
        "fapi_guard_request_duration_seconds_bucket",
        "fapi_guard_upstream_errors_total",
        "fapi_guard_cache_requests_total",
        "fapi_guard_dpop_replays_total",
        "fapi_guard_revocations_total",
        "fapi_guard_revocation_lag_seconds_bucket",
        "fapi_guard_policy_reloads_total",
        "fapi_guard_policy_info",
        "fapi_guard_audit_records_total",
        "fapi_guard_audit_failures_total",
        "fapi_guard_jwks_refreshes_total",
    ];
    // Bounded state, buffers and caches, documented in docs/configuration.md and
    // docs/reference.md.
    let hardening = [
        "fapi_guard_replay_cache_entries",
        "fapi_guard_replay_cache_full_total",
        "fapi_guard_body_buffer_exhausted_total",
        "fapi_guard_body_limit_exceeded_total",
        "fapi_guard_token_verdicts_total",
        "fapi_guard_cache_entries",
        "fapi_guard_cache_capacity",
    ];
    for name in spec.iter().chain(&hardening) {
        assert!(names.contains(*name), "{name} not exported");
    }
    let families = names
        .iter()
        .map(|n| {
            n.trim_end_matches("_bucket")
                .trim_end_matches("_sum")
                .trim_end_matches("_count")
        })
        .collect::<BTreeSet<_>>();
    assert_eq!(
        families.len(),
        spec.len() + hardening.len(),
        "unexpected extra families: {families:?}"
    );
}

/// Every `fapi_guard_*` word in a string tree (JSON or YAML values).
fn metric_words(text: &str, out: &mut BTreeSet<String>) {
    let mut rest = text;
    while let Some(i) = rest.find("fapi_guard_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        out.insert(tail[..end].to_owned());
        rest = &tail[end..];
    }
}

fn json_strings(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::String(s) => out.push(s.clone()),
        serde_json::Value::Array(a) => a.iter().for_each(|x| json_strings(x, out)),
        serde_json::Value::Object(o) => o.values().for_each(|x| json_strings(x, out)),
        _ => {}
    }
}

#[test]
fn dashboard_and_alerts_only_use_exported_metrics() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy");
    let dashboard_text =
        std::fs::read_to_string(root.join("grafana/fapi-guard.json")).expect("dashboard file");
    let alerts_text =
        std::fs::read_to_string(root.join("prometheus/alerts.yaml")).expect("alerts file");

    let dashboard: serde_json::Value = serde_json::from_str(&dashboard_text).expect("valid JSON");
    let alerts: serde_json::Value = serde_yaml::from_str(&alerts_text).expect("valid YAML");

    // Shape: panels with Prometheus targets on the DS_PROMETHEUS variable; rule groups.
    let panels = dashboard["panels"].as_array().expect("array");
    assert!(panels.len() >= 8, "dashboard has {} panels", panels.len());
    for p in panels.iter().filter(|p| p["type"] != "row") {
        assert_eq!(
            p["datasource"]["uid"], "${DS_PROMETHEUS}",
            "panel {}",
            p["title"]
        );
        assert!(
            !p["targets"].as_array().expect("array").is_empty(),
            "panel {}",
            p["title"]
        );
    }
    let rules: Vec<&serde_json::Value> = alerts["groups"]
        .as_array()
        .expect("groups list")
        .iter()
        .flat_map(|g| g["rules"].as_array().expect("array"))
        .collect();
    for wanted in [
        "FapiGuardAuditFailures",
        "FapiGuardDenyRateSpike",
        "FapiGuardDependencyUnavailable",
        "FapiGuardJwksRefreshFailing",
        "FapiGuardDecisionLatencyHigh",
    ] {
        assert!(
            rules.iter().any(|r| r["alert"] == wanted),
            "alert {wanted} missing"
        );
    }

    let m = Metrics::new();
    observe_everything(&m);
    let exported = sample_names(&m.encode());
    for (file, tree) in [("fapi-guard.json", &dashboard), ("alerts.yaml", &alerts)] {
        let mut strings = Vec::new();
        json_strings(tree, &mut strings);
        let mut used = BTreeSet::new();
        strings.iter().for_each(|s| metric_words(s, &mut used));
        assert!(!used.is_empty(), "{file} mentions no metric");
        for name in used {
            assert!(
                exported.contains(&name),
                "{file}: {name} is not exported by Metrics"
            );
        }
    }
}

#[test]
fn hardening_metrics_are_exported_from_the_start_and_count() {
    let m = Metrics::new();
    let text = m.encode();
    for line in [
        "fapi_guard_replay_cache_entries 0",
        "fapi_guard_replay_cache_full_total 0",
        "fapi_guard_body_buffer_exhausted_total 0",
        "fapi_guard_body_limit_exceeded_total 0",
    ] {
        assert!(text.lines().any(|l| l == line), "missing {line:?}");
    }
    m.set_replay_entries(42);
    m.replay_full();
    m.buffer_exhausted();
    m.buffer_exhausted();
    m.body_too_large();
    let text = m.encode();
    for line in [
        "fapi_guard_replay_cache_entries 42",
        "fapi_guard_replay_cache_full_total 1",
        "fapi_guard_body_buffer_exhausted_total 2",
        "fapi_guard_body_limit_exceeded_total 1",
        "# TYPE fapi_guard_replay_cache_entries gauge",
    ] {
        assert!(text.lines().any(|l| l == line), "missing {line:?}");
    }
}
