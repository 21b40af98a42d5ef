//! `fapi-guard inject` golden tests: every `tests/inject/NAME.in.yaml` goes through the real
//! binary (with `NAME.args` when present) and must give `NAME.out.yaml` on stdout and exactly
//! `NAME.stderr` (absent: nothing) on stderr; `refuse-*` cases must exit 2 with the one line of
//! `NAME.err`. Outputs are fed back in to prove idempotence, and every document that is not an
//! injected workload (or a Service pointed at one) must come out equal to what went in.
//! `FAPI_GUARD_UPDATE_GOLDEN=1 cargo test --test inject_golden` rewrites the expected files.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_yaml::Value;

/// Pinned so that the expected files do not change with the crate version.
const IMAGE: &str = "registry.bank.example/fapi-guard:0.1.0";

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/inject")
}

fn cases() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir())
        .expect("tests/inject")
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            e.file_name()
                .to_str()
                .and_then(|n| n.strip_suffix(".in.yaml"))
                .map(str::to_owned)
        })
        .collect();
    names.sort();
    names
}

fn args(name: &str) -> Vec<String> {
    let mut a = vec!["inject".to_owned(), "--image".to_owned(), IMAGE.to_owned()];
    if let Ok(extra) = std::fs::read_to_string(dir().join(format!("{name}.args"))) {
        a.extend(extra.split_whitespace().map(str::to_owned));
    }
    a
}

/// Runs `fapi-guard inject ARGS -f FILE`, or with the text on stdin when `stdin` is given.
pub fn inject(args: &[String], file: &Path, stdin: Option<&str>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_fapi-guard"));
    // Relative names keep the expected stderr independent of the checkout's location.
    cmd.args(args).current_dir(dir());
    match stdin {
        None => {
            cmd.arg("-f").arg(file.file_name().expect("file name"));
        }
        Some(_) => {
            cmd.args(["-f", "-"]);
        }
    }
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn fapi-guard");
    {
        use std::io::Write;
        let mut input = child.stdin.take().expect("stdin");
        if let Some(text) = stdin {
            input.write_all(text.as_bytes()).expect("write stdin");
        }
    }
    child.wait_with_output().expect("fapi-guard inject")
}

fn text(b: &[u8]) -> String {
    String::from_utf8(b.to_vec()).expect("utf-8")
}

fn update() -> bool {
    std::env::var_os("FAPI_GUARD_UPDATE_GOLDEN").is_some()
}

fn expect_file(path: &Path, got: &str) {
    if update() {
        if got.is_empty() && path.extension().is_none_or(|e| e != "yaml") {
            let _ = std::fs::remove_file(path);
        } else {
            std::fs::write(path, got).expect("write golden");
        }
        return;
    }
    let want = std::fs::read_to_string(path).unwrap_or_default();
    assert_eq!(got, want, "{} differs", path.display());
}

fn docs(yaml: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(yaml)
        .map(|d| <Value as serde::Deserialize>::deserialize(d).expect("yaml"))
        .filter(|v| !v.is_null())
        .collect()
}

const WORKLOADS: &[&str] = &[
    "Deployment",
    "StatefulSet",
    "DaemonSet",
    "ReplicaSet",
    "Job",
    "CronJob",
    "Pod",
    "List",
];

#[test]
fn golden_cases() {
    let names = cases();
    assert!(names.len() >= 14, "cases: {names:?}");
    for name in names {
        let input = dir().join(format!("{name}.in.yaml"));
        let args = args(&name);
        let out = inject(&args, &input, None);
        let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
        if name.starts_with("refuse-") {
            assert_eq!(
                out.status.code(),
                Some(2),
                "{name}: exit code; stderr {stderr}"
            );
            assert!(stdout.is_empty(), "{name}: nothing on stdout");
            assert_eq!(stderr.lines().count(), 1, "{name}: one line: {stderr}");
            expect_file(&dir().join(format!("{name}.err")), &stderr);
            continue;
        }
        assert_eq!(out.status.code(), Some(0), "{name}: {stderr}");
        expect_file(&dir().join(format!("{name}.out.yaml")), &stdout);
        expect_file(&dir().join(format!("{name}.stderr")), &stderr);

        // Idempotence: the output goes through unchanged, silently except for opt-outs; from
        // stdin too.
        let again = inject(&args, Path::new("-"), Some(&stdout));
        assert_eq!(again.status.code(), Some(0), "{name}: second pass");
        assert_eq!(
            text(&again.stdout),
            stdout,
            "{name}: injecting twice changed the output"
        );
        for line in text(&again.stderr).lines() {
            assert!(
                line.contains("skipped (fapi-guard.io/inject: disabled)"),
                "{name}: second pass warned: {line}"
            );
        }

        // Documents inject has no business with come out as they went in.
        let (before, after) = (
            docs(&std::fs::read_to_string(&input).expect("input")),
            docs(&stdout),
        );
        assert_eq!(before.len(), after.len(), "{name}: document count");
        for (i, (b, a)) in before.iter().zip(&after).enumerate() {
            let kind = b.get("kind").and_then(Value::as_str).unwrap_or("");
            // Opted out on the workload (annotation) or its pod template (label, annotation).
            let template = b.get("spec").and_then(|s| s.get("template"));
            let opted_out = [
                b.get("metadata").and_then(|m| m.get("annotations")),
                template
                    .and_then(|t| t.get("metadata"))
                    .and_then(|m| m.get("labels")),
                template
                    .and_then(|t| t.get("metadata"))
                    .and_then(|m| m.get("annotations")),
            ]
            .into_iter()
            .flatten()
            .any(|m| m.get("fapi-guard.io/inject").and_then(Value::as_str) == Some("disabled"));
            if opted_out || !(WORKLOADS.contains(&kind) || kind == "Service") {
                assert_eq!(a, b, "{name}: document {} ({kind}) changed", i + 1);
            } else if kind != "Service" {
                // A Service changes only when it targets the API port by number (golden files).
                assert_ne!(a, b, "{name}: document {} ({kind}) was not injected", i + 1);
            }
        }
    }
}

#[test]
fn every_workload_kind_is_covered() {
    let mut seen = std::collections::BTreeSet::new();
    for name in cases().iter().filter(|n| !n.starts_with("refuse-")) {
        let out = std::fs::read_to_string(dir().join(format!("{name}.out.yaml"))).expect("golden");
        for d in docs(&out) {
            if let Some(k) = d.get("kind").and_then(Value::as_str) {
                seen.insert(k.to_owned());
            }
        }
    }
    for k in WORKLOADS {
        assert!(seen.contains(*k), "no golden case injects a {k}");
    }
}

#[test]
fn classic_and_native_place_the_sidecar_differently() {
    let native = docs(&std::fs::read_to_string(dir().join("deployment.out.yaml")).expect("golden"));
    let classic = docs(&std::fs::read_to_string(dir().join("classic.out.yaml")).expect("golden"));
    let spec = |d: &Value| d["spec"]["template"]["spec"].clone();
    let n = spec(&native[0]);
    let c = spec(&classic[0]);
    assert_eq!(n["initContainers"][0]["name"], "fapi-guard");
    assert_eq!(n["initContainers"][0]["restartPolicy"], "Always");
    assert_eq!(n["containers"].as_sequence().map(Vec::len), Some(1));
    assert!(c.get("initContainers").is_none());
    assert_eq!(c["containers"][1]["name"], "fapi-guard");
    assert!(c["containers"][1].get("restartPolicy").is_none());
    for s in [&n, &c] {
        // Directory mounts only: a subPath mount never sees a ConfigMap update.
        let text = serde_yaml::to_string(s).expect("yaml");
        assert!(!text.contains("subPath"), "{text}");
    }
}

/// Every flag `fapi-guard inject --help` lists is exercised by a golden case (`NAME.args`), or
/// by the harness itself (`--image`, `-f`).
#[test]
fn every_inject_flag_has_a_golden_case() {
    let help = Command::new(env!("CARGO_BIN_EXE_fapi-guard"))
        .args(["inject", "--help"])
        .output()
        .expect("inject --help");
    let help = text(&help.stdout);
    let flags: Vec<&str> = help
        .lines()
        .filter_map(|l| {
            l.split_whitespace()
                .take(2)
                .map(|t| t.trim_end_matches(','))
                .find(|t| t.starts_with("--"))
        })
        .filter(|f| *f != "--help")
        .collect();
    assert!(flags.len() >= 7, "{flags:?}");
    let mut used = String::from(" --image --filename ");
    for e in std::fs::read_dir(dir())
        .expect("golden")
        .filter_map(Result::ok)
    {
        if e.path().extension().is_some_and(|x| x == "args") {
            used.push_str(&std::fs::read_to_string(e.path()).expect("args"));
            used.push(' ');
        }
    }
    for f in flags {
        assert!(
            used.split_whitespace().any(|w| w == f),
            "no golden case uses {f}"
        );
    }
}
