//! Optional test dependencies (Python packages, Redis, kubectl, Chromium...) are switched on by
//! environment variables. Each variable set at build time turns on a `cfg` that the tests use as
//! `#[cfg_attr(not(fapi_guard_test_redis), ignore = "needs Redis: set FAPI_GUARD_TEST_REDIS")]`,
//! so a plain `cargo test` lists every test that did not run, with the reason, instead of passing
//! it silently; `.ci/run` sets them all, so CI skips nothing.

/// `(environment variable, cfg name)`; add a line per optional dependency.
const OPTIONAL: &[(&str, &str)] = &[
    ("FAPI_GUARD_TEST_PYTHON", "fapi_guard_test_python"),
    ("FAPI_GUARD_TEST_REDIS", "fapi_guard_test_redis"),
    (
        "FAPI_GUARD_TEST_REDIS_SERVER",
        "fapi_guard_test_redis_server",
    ),
    ("FAPI_GUARD_TEST_KUBECTL", "fapi_guard_test_kubectl"),
    (
        "FAPI_GUARD_TEST_K8S_VALIDATE",
        "fapi_guard_test_k8s_validate",
    ),
    ("FAPI_GUARD_TEST_CHROMIUM", "fapi_guard_test_chromium"),
    ("FAPI_GUARD_TEST_SOAK", "fapi_guard_test_soak"),
    ("FAPI_GUARD_TEST_TMPFS", "fapi_guard_test_tmpfs"),
];

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    for (var, cfg) in OPTIONAL {
        println!("cargo::rustc-check-cfg=cfg({cfg})");
        println!("cargo::rerun-if-env-changed={var}");
        if std::env::var_os(var).is_some_and(|v| !v.is_empty()) {
            println!("cargo::rustc-cfg={cfg}");
        }
    }
}
