//! The JSON Schema of policy and test files (`fapi-guard policy schema`): the committed copy is
//! current, every shipped file names it for editors, and an independent validator
//! (`check-jsonschema`, PyPI) accepts every shipped file and rejects the broken ones.

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn shipped_yaml() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(root().join("policies"))
        .expect("policies/")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 6, "policies and their tests: {files:?}");
    files
}

#[test]
fn committed_schema_is_current() {
    let committed =
        std::fs::read_to_string(root().join("policies/schema.json")).expect("schema.json");
    assert!(
        committed == fapi_guard::policy::schema::schema_text(),
        "policies/schema.json is stale: run `cargo run -- policy schema > policies/schema.json`"
    );
    let v: serde_json::Value = serde_json::from_str(&committed).expect("json");
    assert_eq!(v["$schema"], "https://json-schema.org/draft/2020-12/schema");
    assert!(v["$defs"]["Policy"].is_object() && v["$defs"]["PolicyTestFile"].is_object());
}

#[test]
fn every_shipped_file_names_the_schema() {
    for f in shipped_yaml() {
        let src = std::fs::read_to_string(&f).expect("read");
        assert_eq!(
            src.lines().next(),
            Some("# yaml-language-server: $schema=schema.json"),
            "{}",
            f.display()
        );
    }
}

fn check_jsonschema(python: &str, file: &Path) -> (bool, String) {
    let out = Command::new(python)
        .args(["-m", "check_jsonschema", "--schemafile"])
        .arg(root().join("policies/schema.json"))
        .arg(file)
        .output()
        .unwrap_or_else(|e| panic!("FAPI_GUARD_TEST_PYTHON={python} does not run: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !text.contains("No module named"),
        "check-jsonschema is not installed for {python}: {text}"
    );
    (out.status.success(), text)
}

#[test]
#[cfg_attr(
    not(fapi_guard_test_python),
    ignore = "needs Python with check-jsonschema: set FAPI_GUARD_TEST_PYTHON=.ci/venv/bin/python (see .ci/run)"
)]
fn independent_validator_accepts_shipped_files_and_rejects_broken_ones() {
    let python = std::env::var("FAPI_GUARD_TEST_PYTHON").expect("FAPI_GUARD_TEST_PYTHON");
    for f in shipped_yaml() {
        let (ok, text) = check_jsonschema(&python, &f);
        assert!(ok, "{}: {text}", f.display());
    }
    // The mistakes a schema can see (the others, such as a duplicate route name, need the
    // compiler: `policy check`).
    for name in [
        "unknown_key.yaml",
        "wrong_type.yaml",
        "bad_duration.yaml",
        "three_errors.yaml",
        "unknown_reason_test.yaml",
    ] {
        let (ok, text) = check_jsonschema(&python, &root().join("tests/policy_check").join(name));
        assert!(!ok, "{name} must be rejected: {text}");
        assert!(text.contains("Schema validation errors"), "{name}: {text}");
    }
}
