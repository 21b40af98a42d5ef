//! The manifests in `deploy/`: the example Deployment is exactly `inject`'s output, the
//! PrometheusRule holds the rules of `deploy/prometheus/alerts.yaml`, every pod passes the Pod
//! Security Standards "restricted" checks, `kubectl kustomize` builds both bases, and every
//! manifest, kustomize output and `inject` golden output validates against the Kubernetes 1.30
//! schemas with `kubernetes-validate --strict` (`FAPI_GUARD_TEST_K8S_VALIDATE`, `FAPI_GUARD_TEST_KUBECTL`);
//! the CRD objects, which it has no schema for, are checked structurally. The Dockerfile's build
//! stage is replayed without Docker (no daemon here) to check that cargo can read the manifest
//! at each step.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_yaml::Value;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn docs(yaml: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(yaml)
        .map(|d| <Value as serde::Deserialize>::deserialize(d).expect("yaml"))
        .filter(|v| !v.is_null())
        .collect()
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Every Kubernetes manifest under deploy/kubernetes (not the kustomizations, the sidecar's
/// config file or the policies, which are ConfigMap contents).
fn manifests() -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut dirs = vec![root().join("deploy/kubernetes")];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d)
            .expect("deploy dir")
            .filter_map(Result::ok)
        {
            let p = e.path();
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if p.is_dir() {
                if name != "policies" {
                    dirs.push(p);
                }
            } else if name.ends_with(".yaml")
                && name != "kustomization.yaml"
                && name != "config.yaml"
            {
                out.push(p);
            }
        }
    }
    out.sort();
    assert!(out.len() >= 14, "{out:?}");
    out
}

#[test]
fn example_deployment_is_the_inject_output() {
    let out = Command::new(env!("CARGO_BIN_EXE_fapi-guard"))
        .args(["inject", "-f"])
        .arg(root().join("deploy/kubernetes/source/accounts-api.yaml"))
        .output()
        .expect("inject");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        read(&root().join("deploy/kubernetes/accounts-api.yaml")),
        "regenerate: fapi-guard inject -f deploy/kubernetes/source/accounts-api.yaml > deploy/kubernetes/accounts-api.yaml"
    );
}

#[test]
fn prometheus_rule_holds_the_alert_rules() {
    let alerts: Value =
        serde_yaml::from_str(&read(&root().join("deploy/prometheus/alerts.yaml"))).expect("alerts");
    let rule: Value =
        serde_yaml::from_str(&read(&root().join("deploy/kubernetes/prometheusrule.yaml")))
            .expect("rule");
    assert_eq!(rule["kind"], "PrometheusRule");
    assert_eq!(
        rule["spec"], alerts,
        "regenerate prometheusrule.yaml from alerts.yaml"
    );
}

#[test]
fn shipped_policies_and_config() {
    assert_eq!(
        read(&root().join("deploy/kubernetes/policies/accounts.yaml")),
        read(&root().join("policies/accounts.yaml")),
        "deploy/kubernetes/policies/accounts.yaml is a copy of policies/accounts.yaml"
    );
    fapi_guard::policy::PolicySet::load(&[root().join("deploy/kubernetes/policies")])
        .expect("policies compile");
    // The sidecar's config, exactly as the ConfigMap ships it.
    let c = fapi_guard::config::Config::from_yaml(
        &root().join("deploy/kubernetes/config.yaml"),
        &read(&root().join("deploy/kubernetes/config.yaml")),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.listen.drain_delay, std::time::Duration::from_secs(5));
    assert_eq!(
        c.admin.as_ref().map(|a| a.address.to_string()).as_deref(),
        Some("127.0.0.1:9901")
    );
    // The probes and the PodMonitor use the metrics-only listener on the declared port.
    assert_eq!(
        c.admin
            .as_ref()
            .and_then(|a| a.metrics_address)
            .map(|a| a.to_string())
            .as_deref(),
        Some("0.0.0.0:9902")
    );
}

#[test]
fn no_subpath_mounts() {
    for p in manifests() {
        assert!(
            !read(&p).contains("subPath"),
            "{}: subPath mounts never see ConfigMap updates",
            p.display()
        );
    }
}

/// Pod Security Standards "restricted" (v1.30), for the containers `which` selects.
fn restricted_violations(pod: &Value, which: &dyn Fn(&Value) -> bool) -> Vec<String> {
    let mut v = Vec::new();
    let spec = &pod["spec"];
    for host in ["hostNetwork", "hostPID", "hostIPC"] {
        if spec[host] == Value::Bool(true) {
            v.push(host.to_owned());
        }
    }
    for vol in spec["volumes"].as_sequence().into_iter().flatten() {
        let ok = [
            "configMap",
            "secret",
            "emptyDir",
            "projected",
            "downwardAPI",
            "csi",
            "ephemeral",
            "persistentVolumeClaim",
        ]
        .iter()
        .any(|k| vol.get(*k).is_some());
        if !ok {
            v.push(format!("volume {:?} of a forbidden type", vol["name"]));
        }
    }
    let pod_sc = &spec["securityContext"];
    for c in ["initContainers", "containers"]
        .iter()
        .flat_map(|k| spec[*k].as_sequence().into_iter().flatten())
    {
        if !which(c) {
            continue;
        }
        let name = c["name"].as_str().unwrap_or("?");
        let sc = &c["securityContext"];
        let inherit = |k: &str| {
            if sc.get(k).is_some() {
                &sc[k]
            } else {
                &pod_sc[k]
            }
        };
        if sc["privileged"] == Value::Bool(true) {
            v.push(format!("{name}: privileged"));
        }
        if sc["allowPrivilegeEscalation"] != Value::Bool(false) {
            v.push(format!("{name}: allowPrivilegeEscalation must be false"));
        }
        let drops = sc["capabilities"]["drop"]
            .as_sequence()
            .cloned()
            .unwrap_or_default();
        if !drops.contains(&Value::from("ALL")) {
            v.push(format!("{name}: capabilities.drop must contain ALL"));
        }
        for add in sc["capabilities"]["add"]
            .as_sequence()
            .into_iter()
            .flatten()
        {
            if add != &Value::from("NET_BIND_SERVICE") {
                v.push(format!("{name}: adds capability {add:?}"));
            }
        }
        if inherit("runAsNonRoot") != &Value::Bool(true) {
            v.push(format!("{name}: runAsNonRoot must be true"));
        }
        if inherit("runAsUser") == &Value::from(0) {
            v.push(format!("{name}: runAsUser 0"));
        }
        let seccomp = inherit("seccompProfile")["type"].as_str();
        if !matches!(seccomp, Some("RuntimeDefault" | "Localhost")) {
            v.push(format!(
                "{name}: seccompProfile must be RuntimeDefault or Localhost"
            ));
        }
        for p in c["ports"].as_sequence().into_iter().flatten() {
            if p.get("hostPort").is_some() {
                v.push(format!("{name}: hostPort"));
            }
        }
    }
    v
}

/// The pod templates of a document (and of List items).
fn pods(doc: &Value) -> Vec<Value> {
    match doc["kind"].as_str() {
        Some("List") => doc["items"]
            .as_sequence()
            .into_iter()
            .flatten()
            .flat_map(pods)
            .collect(),
        Some("Pod") => vec![doc.clone()],
        Some("CronJob") => vec![doc["spec"]["jobTemplate"]["spec"]["template"].clone()],
        Some("Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet" | "Job") => {
            vec![doc["spec"]["template"].clone()]
        }
        _ => Vec::new(),
    }
}

#[test]
fn pods_meet_the_restricted_pod_security_standard() {
    // The deploy/ pods, all their containers.
    let mut checked = 0;
    for p in manifests() {
        for d in docs(&read(&p)) {
            for pod in pods(&d) {
                let v = restricted_violations(&pod, &|_| true);
                assert!(v.is_empty(), "{}: {v:?}", p.display());
                checked += 1;
            }
        }
    }
    assert!(checked >= 3, "{checked}");
    // Every injected sidecar in the golden outputs (the example APIs there are not hardened).
    let mut sidecars = 0;
    for e in std::fs::read_dir(root().join("tests/inject"))
        .expect("golden")
        .filter_map(Result::ok)
    {
        let p = e.path();
        if !p.to_string_lossy().ends_with(".out.yaml") {
            continue;
        }
        for d in docs(&read(&p)) {
            for pod in pods(&d) {
                let is_sidecar = |c: &Value| c["name"] == "fapi-guard";
                let v = restricted_violations(&pod, &is_sidecar);
                assert!(v.is_empty(), "{}: {v:?}", p.display());
                sidecars += 1;
            }
        }
    }
    assert!(sidecars >= 10, "{sidecars}");
    // The check itself refuses a root, privileged container.
    let bad: Value = serde_yaml::from_str("spec:\n  containers:\n  - name: x\n    securityContext: {privileged: true, runAsUser: 0}\n").expect("yaml");
    assert_eq!(restricted_violations(&bad, &|_| true).len(), 6);
}

fn kubectl() -> String {
    let k = std::env::var("FAPI_GUARD_TEST_KUBECTL")
        .ok()
        .filter(|v| !v.is_empty())
        .expect("FAPI_GUARD_TEST_KUBECTL names kubectl (see build.rs)");
    let ok = Command::new(&k)
        .args(["version", "--client"])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "FAPI_GUARD_TEST_KUBECTL={k} is not a working kubectl (kubectl is absent?)"
    );
    k
}

fn kustomize(dir: &str) -> String {
    let out = Command::new(kubectl())
        .arg("kustomize")
        .arg(root().join(dir))
        .output()
        .expect("kubectl kustomize");
    assert!(
        out.status.success(),
        "kubectl kustomize {dir}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

#[test]
#[cfg_attr(
    not(fapi_guard_test_kubectl),
    ignore = "needs kubectl: set FAPI_GUARD_TEST_KUBECTL=kubectl"
)]
fn kustomize_builds_both_bases() {
    let base = docs(&kustomize("deploy/kubernetes"));
    let kinds: Vec<&str> = base.iter().filter_map(|d| d["kind"].as_str()).collect();
    for k in [
        "ConfigMap",
        "Service",
        "Deployment",
        "PodDisruptionBudget",
        "PodMonitor",
        "PrometheusRule",
        "NetworkPolicy",
    ] {
        assert!(kinds.contains(&k), "{k} missing from {kinds:?}");
    }
    // The config ConfigMap name gets a content hash, and kustomize points the volume at it.
    let config = base
        .iter()
        .find(|d| {
            d["kind"] == "ConfigMap"
                && d["metadata"]["name"]
                    .as_str()
                    .is_some_and(|n| n.starts_with("accounts-api-fapi-guard-"))
        })
        .expect("hashed config ConfigMap");
    let deployment = base
        .iter()
        .find(|d| d["kind"] == "Deployment")
        .expect("deployment");
    let volumes = deployment["spec"]["template"]["spec"]["volumes"]
        .as_sequence()
        .expect("volumes");
    assert!(
        volumes
            .iter()
            .any(|v| v["configMap"]["name"] == config["metadata"]["name"])
    );
    assert!(
        volumes
            .iter()
            .any(|v| v["configMap"]["name"] == "accounts-api-policies")
    );
    let webhook = docs(&kustomize("deploy/kubernetes/webhook"));
    assert!(
        webhook
            .iter()
            .any(|d| d["kind"] == "MutatingWebhookConfiguration")
    );
}

fn kubernetes_validate() -> String {
    let k = std::env::var("FAPI_GUARD_TEST_K8S_VALIDATE")
        .ok()
        .filter(|v| !v.is_empty())
        .expect("FAPI_GUARD_TEST_K8S_VALIDATE names kubernetes-validate (see build.rs)");
    let ok = Command::new(&k)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "FAPI_GUARD_TEST_K8S_VALIDATE={k} does not run (pip install kubernetes-validate)"
    );
    k
}

/// Kinds without a schema in kubernetes-validate (CRDs): their absence is the only warning
/// allowed, and they get `crd_violations`, a structural check, instead.
const CRD_KINDS: &[&str] = &["PodMonitor", "PrometheusRule", "Certificate", "Issuer"];

/// Validates files against the 1.30 schemas; every built-in object must report "passed".
fn validate(files: &[PathBuf]) {
    // kubernetes-validate has no schema for `List`: its items are validated one by one.
    let tmp = tempfile::tempdir().expect("tempdir");
    let files: Vec<PathBuf> = files
        .iter()
        .map(|f| {
            let ds = docs(&read(f));
            if !ds.iter().any(|d| d["kind"] == "List") {
                return f.clone();
            }
            let expanded: Vec<String> = ds
                .iter()
                .flat_map(|d| match d["kind"].as_str() {
                    Some("List") => d["items"].as_sequence().cloned().unwrap_or_default(),
                    _ => vec![d.clone()],
                })
                .map(|d| serde_yaml::to_string(&d).expect("yaml"))
                .collect();
            let p = tmp.path().join(f.file_name().expect("name"));
            std::fs::write(&p, expanded.join("---\n")).expect("write");
            p
        })
        .collect();
    let files = &files[..];
    let out = Command::new(kubernetes_validate())
        .args(["--strict", "-k", "1.30.0"])
        .args(files)
        .output()
        .expect("kubernetes-validate");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    let mut passed = 0;
    for line in text.lines() {
        if line.starts_with("INFO") && line.contains(" passed for resource ") {
            passed += 1;
        } else if line.starts_with("WARN") {
            assert!(
                CRD_KINDS
                    .iter()
                    .any(|k| line.contains(&format!("kind {k} "))),
                "{line}"
            );
        } else if !line.trim().is_empty() {
            panic!("unexpected: {line}");
        }
    }
    let expected: usize = files
        .iter()
        .flat_map(|f| docs(&read(f)))
        .map(|d| match d["kind"].as_str() {
            Some(k) if CRD_KINDS.contains(&k) => 0,
            Some("List") => d["items"].as_sequence().map_or(0, Vec::len),
            _ => 1,
        })
        .sum();
    assert_eq!(passed, expected, "every object validated: {text}");
    // The CRD objects kubernetes-validate skipped get the structural check instead.
    let mut crds = Vec::new();
    for d in files.iter().flat_map(|f| docs(&read(f))) {
        if let Some(k) = d["kind"].as_str().filter(|k| CRD_KINDS.contains(k)) {
            let v = crd_violations(&d);
            assert!(v.is_empty(), "{v:?}");
            crds.push(format!(
                "{k} {}",
                d["metadata"]["name"].as_str().unwrap_or("?")
            ));
        }
    }
    if !crds.is_empty() {
        eprintln!(
            "kubernetes-validate has no schema for CRD kinds; checked structurally only \
             (apiVersion, fields, required fields): {}",
            crds.join(", ")
        );
    }
}

#[test]
#[cfg_attr(
    not(fapi_guard_test_k8s_validate),
    ignore = "needs kubernetes-validate: set FAPI_GUARD_TEST_K8S_VALIDATE=kubernetes-validate"
)]
fn manifests_and_inject_outputs_validate_against_kubernetes_1_30() {
    validate(&manifests());
    let mut golden: Vec<PathBuf> = std::fs::read_dir(root().join("tests/inject"))
        .expect("golden")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().ends_with(".out.yaml"))
        .collect();
    golden.sort();
    assert!(golden.len() >= 10);
    validate(&golden);
    // The validator is not a rubber stamp: an unknown field in the sidecar fails.
    let dir = tempfile::tempdir().expect("tempdir");
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        read(&root().join("deploy/kubernetes/accounts-api.yaml")).replace(
            "restartPolicy: Always",
            "restartPolicy: Always\n        restartPolicyy: Always",
        ),
    )
    .expect("write");
    let out = Command::new(kubernetes_validate())
        .args(["--strict", "-k", "1.30.0"])
        .arg(&bad)
        .output()
        .expect("run");
    assert!(
        !out.status.success(),
        "an unknown field must fail validation"
    );
}

#[test]
#[cfg_attr(
    not(all(fapi_guard_test_kubectl, fapi_guard_test_k8s_validate)),
    ignore = "needs kubectl and kubernetes-validate: set FAPI_GUARD_TEST_KUBECTL and FAPI_GUARD_TEST_K8S_VALIDATE"
)]
fn kustomize_output_validates_against_kubernetes_1_30() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut files = Vec::new();
    for (name, base) in [
        ("base.yaml", "deploy/kubernetes"),
        ("webhook.yaml", "deploy/kubernetes/webhook"),
    ] {
        let p = dir.path().join(name);
        std::fs::write(&p, kustomize(base)).expect("write");
        files.push(p);
    }
    validate(&files);
}

/// The targets Cargo.toml declares (`[lib]`, `[[bin]]`, `[[bench]]`, `[[test]]`,
/// `[[example]]`) and the source file each needs, read here independently of
/// `deploy/stub-targets.sh`.
fn declared_targets(manifest: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut package = String::new();
    let mut table = String::new();
    let mut current: Option<(String, String, String)> = None;
    let value = |l: &str| {
        l.split_once('=')
            .map(|(_, v)| v.trim().trim_matches(['"', '\'']).to_owned())
            .unwrap_or_default()
    };
    let mut flush = |c: Option<(String, String, String)>, package: &str| {
        if let Some((kind, name, path)) = c {
            let path = if !path.is_empty() {
                path
            } else {
                match kind.as_str() {
                    "lib" => "src/lib.rs".to_owned(),
                    "bin" if name == package => "src/main.rs".to_owned(),
                    "bin" => format!("src/bin/{name}.rs"),
                    "bench" => format!("benches/{name}.rs"),
                    "test" => format!("tests/{name}.rs"),
                    _ => format!("examples/{name}.rs"),
                }
            };
            out.push((kind, path));
        }
    };
    for line in manifest.lines() {
        let l = line.split('#').next().unwrap_or("").trim();
        if l.starts_with('[') {
            flush(current.take(), &package);
            table = l.replace(' ', "");
            let kind = match table.as_str() {
                "[lib]" => Some("lib"),
                "[[bin]]" => Some("bin"),
                "[[bench]]" => Some("bench"),
                "[[test]]" => Some("test"),
                "[[example]]" => Some("example"),
                _ => None,
            };
            current = kind.map(|k| (k.to_owned(), String::new(), String::new()));
            continue;
        }
        let key = l.split('=').next().unwrap_or("").trim();
        match (&mut current, key) {
            (None, "name") if table == "[package]" => package = value(l),
            (Some((_, name, _)), "name") => *name = value(l),
            (Some((_, _, path)), "path") => *path = value(l),
            _ => {}
        }
    }
    flush(current.take(), &package);
    out
}

/// Whether cargo reads the manifest in `dir` as `cargo build` would: `cargo fetch` refuses a
/// manifest naming a missing target file just as the build does, without compiling anything.
fn cargo_reads_manifest(dir: &Path) -> Result<(), String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let host = Command::new(&cargo)
        .arg("-vV")
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .find_map(|l| l.strip_prefix("host: ").map(str::to_owned))
        })
        .expect("cargo -vV names the host");
    let out = Command::new(&cargo)
        .args(["fetch", "--offline", "--locked", "--target", &host])
        .current_dir(dir)
        .output()
        .expect("cargo fetch");
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// Copies a file or a directory tree.
fn copy_tree(from: &Path, to: &Path) {
    if from.is_dir() {
        std::fs::create_dir_all(to).expect("mkdir");
        for e in std::fs::read_dir(from)
            .expect("read_dir")
            .filter_map(Result::ok)
        {
            copy_tree(&e.path(), &to.join(e.file_name()));
        }
    } else {
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent).expect("mkdir");
        }
        std::fs::copy(from, to).unwrap_or_else(|e| panic!("{}: {e}", from.display()));
    }
}

/// The Dockerfile's build stage, replayed in a scratch directory without Docker (no daemon
/// runs where the tests run, so the image itself is not built here; this checks what broke it
/// before: a target Cargo.toml declares that the stage did not provide). Each COPY copies from
/// the repository (and must be admitted by Dockerfile.dockerignore); each RUN command runs with
/// `sh`, except that `cargo build` becomes `cargo fetch --offline --locked` (which reads the
/// manifest as the build does, without compiling) and `strip` (it needs the binary) is skipped.
/// At each cargo step every declared target must have its file and cargo must accept the
/// manifest; at the first, only stand-ins may be there, so a source change keeps the
/// dependency layer cached.
#[test]
fn dockerfile_build_stage_provides_every_declared_target() {
    let manifest = read(&root().join("Cargo.toml"));
    let targets = declared_targets(&manifest);
    for kind in ["lib", "bin", "bench"] {
        assert!(
            targets.iter().any(|(k, _)| k == kind),
            "{kind}: {targets:?}"
        );
    }
    let ignore = read(&root().join("deploy/Dockerfile.dockerignore"));
    let admitted: Vec<&str> = ignore
        .lines()
        .filter_map(|l| l.trim().strip_prefix('!'))
        .collect();
    assert!(ignore.lines().any(|l| l.trim() == "*"), "{ignore}");

    // Instructions of the build stage, continuation lines joined.
    let dockerfile = read(&root().join("deploy/Dockerfile"));
    let mut instructions = Vec::new();
    let mut pending = String::new();
    for line in dockerfile.lines() {
        let t = line.trim();
        if pending.is_empty() && (t.is_empty() || t.starts_with('#')) {
            continue;
        }
        match t.strip_suffix('\\') {
            Some(head) => {
                pending.push_str(head);
                pending.push(' ');
            }
            None => {
                pending.push_str(t);
                instructions.push(std::mem::take(&mut pending));
            }
        }
    }
    let stage: Vec<&String> = instructions
        .iter()
        .skip_while(|i| !(i.starts_with("FROM ") && i.ends_with(" AS build")))
        .skip(1)
        .take_while(|i| !i.starts_with("FROM "))
        .collect();
    assert!(!stage.is_empty(), "no build stage in deploy/Dockerfile");

    let dir = tempfile::tempdir().expect("tempdir");
    let mut cargo_steps = 0;
    for ins in stage {
        let (op, args) = ins.split_once(' ').unwrap_or((ins, ""));
        match op {
            "WORKDIR" | "ENV" | "ARG" => {}
            "COPY" => {
                let words: Vec<&str> = args.split_whitespace().collect();
                let (dest, sources) = words.split_last().expect("COPY dest");
                assert!(
                    !sources.is_empty() && !sources[0].starts_with("--"),
                    "{ins}"
                );
                for s in sources {
                    let s = s.trim_end_matches('/');
                    assert!(
                        admitted
                            .iter()
                            .any(|a| s == a.trim_end_matches('/') || s.starts_with(a)),
                        "{s} is copied but Dockerfile.dockerignore keeps it out of the context"
                    );
                    let from = root().join(s);
                    let to = if dest.ends_with('/') || sources.len() > 1 {
                        dir.path()
                            .join(dest)
                            .join(from.file_name().expect("file name"))
                    } else {
                        dir.path().join(dest)
                    };
                    copy_tree(&from, &to);
                }
            }
            "RUN" => {
                for cmd in args.split("&&").map(str::trim) {
                    if cmd.starts_with("cargo build") {
                        cargo_steps += 1;
                        for (kind, path) in &targets {
                            assert!(
                                dir.path().join(path).exists(),
                                "before `{cmd}` (step {cargo_steps}): no {path} for the {kind} target"
                            );
                        }
                        if cargo_steps == 1 {
                            for (_, path) in &targets {
                                let text = read(&dir.path().join(path));
                                assert!(
                                    matches!(text.trim(), "" | "fn main() {}"),
                                    "{path} is real source in the dependency layer"
                                );
                            }
                        }
                        cargo_reads_manifest(dir.path()).unwrap_or_else(|e| {
                            panic!("before `{cmd}` (step {cargo_steps}): cargo refuses: {e}")
                        });
                    } else if cmd.starts_with("strip ") {
                        // Needs the binary, which is not built here.
                    } else {
                        let out = Command::new("sh")
                            .args(["-c", cmd])
                            .current_dir(dir.path())
                            .output()
                            .expect("sh");
                        assert!(
                            out.status.success(),
                            "`{cmd}`: {}",
                            String::from_utf8_lossy(&out.stderr)
                        );
                    }
                }
            }
            other => panic!("build stage: unexpected instruction {other}"),
        }
    }
    assert_eq!(cargo_steps, 2, "dependency build and binary build");

    // The check has teeth: a manifest with one declared bench missing is refused.
    let (_, left_out) = targets
        .iter()
        .rfind(|(k, _)| k == "bench")
        .expect("a bench");
    let bad = tempfile::tempdir().expect("tempdir");
    for f in ["Cargo.toml", "Cargo.lock", "build.rs"] {
        std::fs::copy(root().join(f), bad.path().join(f)).expect("copy");
    }
    for (_, path) in &targets {
        if path == left_out {
            continue;
        }
        let p = bad.path().join(path);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(&p, "fn main() {}").expect("stub");
    }
    let err = cargo_reads_manifest(bad.path()).expect_err("a missing bench file is refused");
    assert!(err.contains(left_out.as_str()), "{err}");
}

/// What a CRD object must look like, from the CRDs it comes from (Prometheus Operator
/// `monitoring.coreos.com/v1`, cert-manager `cert-manager.io/v1`): its apiVersion, the spec
/// keys the CRD defines, the fields it requires and their types. kubernetes-validate has no
/// schema for these kinds and their CRD schemas are not available offline here, so this is a
/// structural check, not a schema validation.
fn crd_violations(doc: &Value) -> Vec<String> {
    let mut v = Vec::new();
    let kind = doc["kind"].as_str().unwrap_or("");
    let name = doc["metadata"]["name"].as_str().unwrap_or("");
    let at = format!("{kind} {name}");
    let api = match kind {
        "PodMonitor" | "PrometheusRule" => "monitoring.coreos.com/v1",
        "Certificate" | "Issuer" => "cert-manager.io/v1",
        _ => return vec![format!("{at}: not a CRD kind this check knows")],
    };
    if doc["apiVersion"].as_str() != Some(api) {
        v.push(format!("{at}: apiVersion must be {api}"));
    }
    let dns = |s: &str| {
        !s.is_empty()
            && s.len() <= 253
            && s.split('.').all(|l| {
                !l.is_empty()
                    && !l.starts_with('-')
                    && !l.ends_with('-')
                    && l.bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            })
    };
    if !dns(name) {
        v.push(format!("{at}: metadata.name must be a DNS subdomain"));
    }
    let Some(spec) = doc["spec"].as_mapping() else {
        v.push(format!("{at}: spec (a mapping) is required"));
        return v;
    };
    let only = |v: &mut Vec<String>, what: &str, m: &serde_yaml::Mapping, allowed: &[&str]| {
        for k in m.keys() {
            let k = k.as_str().unwrap_or("?");
            if !allowed.contains(&k) {
                v.push(format!("{at}: {what}: unknown field {k}"));
            }
        }
    };
    // Prometheus durations: `30s`, `1h30m`, `0`.
    let duration = |s: &str| {
        s == "0"
            || (!s.is_empty() && {
                let mut rest = s;
                let mut ok = true;
                while !rest.is_empty() {
                    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
                    let unit = ["ms", "y", "w", "d", "h", "m", "s"]
                        .into_iter()
                        .find(|u| rest[digits..].starts_with(u));
                    match (digits, unit) {
                        (1.., Some(u)) => rest = &rest[digits + u.len()..],
                        _ => {
                            ok = false;
                            break;
                        }
                    }
                }
                ok
            })
    };
    let string_map = |x: &Value| {
        x.as_mapping()
            .is_some_and(|m| m.iter().all(|(k, v)| k.is_string() && v.is_string()))
    };
    match kind {
        "PodMonitor" => {
            only(
                &mut v,
                "spec",
                spec,
                &[
                    "attachMetadata",
                    "bodySizeLimit",
                    "convertClassicHistogramsToNHCB",
                    "fallbackScrapeProtocol",
                    "jobLabel",
                    "keepDroppedTargets",
                    "labelLimit",
                    "labelNameLengthLimit",
                    "labelValueLengthLimit",
                    "namespaceSelector",
                    "nativeHistogramBucketLimit",
                    "nativeHistogramMinBucketFactor",
                    "podMetricsEndpoints",
                    "podTargetLabels",
                    "sampleLimit",
                    "scrapeClass",
                    "scrapeClassicHistograms",
                    "scrapeNativeHistograms",
                    "scrapeProtocols",
                    "selector",
                    "selectorMechanism",
                    "targetLimit",
                ],
            );
            match doc["spec"]["selector"].as_mapping() {
                None => v.push(format!("{at}: spec.selector is required")),
                Some(sel) => {
                    only(
                        &mut v,
                        "spec.selector",
                        sel,
                        &["matchLabels", "matchExpressions"],
                    );
                    if sel.contains_key("matchLabels")
                        && !string_map(&doc["spec"]["selector"]["matchLabels"])
                    {
                        v.push(format!("{at}: spec.selector.matchLabels: strings only"));
                    }
                }
            }
            for ep in doc["spec"]["podMetricsEndpoints"]
                .as_sequence()
                .into_iter()
                .flatten()
            {
                if !ep["port"].is_string() && !ep["portNumber"].is_u64() {
                    v.push(format!(
                        "{at}: podMetricsEndpoints: port (a name) or portNumber"
                    ));
                }
                if ep
                    .get("path")
                    .is_some_and(|p| !p.as_str().is_some_and(|p| p.starts_with('/')))
                {
                    v.push(format!("{at}: podMetricsEndpoints: path must start with /"));
                }
                for d in ["interval", "scrapeTimeout"] {
                    if ep.get(d).is_some_and(|x| !x.as_str().is_some_and(duration)) {
                        v.push(format!("{at}: podMetricsEndpoints: {d} is not a duration"));
                    }
                }
            }
        }
        "PrometheusRule" => {
            only(&mut v, "spec", spec, &["groups"]);
            let groups = doc["spec"]["groups"].as_sequence();
            if groups.is_none_or(Vec::is_empty) {
                v.push(format!("{at}: spec.groups: a non-empty list"));
            }
            for g in groups.into_iter().flatten() {
                let Some(gm) = g.as_mapping() else {
                    v.push(format!("{at}: a group must be a mapping"));
                    continue;
                };
                only(
                    &mut v,
                    "group",
                    gm,
                    &[
                        "name",
                        "interval",
                        "rules",
                        "limit",
                        "labels",
                        "partial_response_strategy",
                        "query_offset",
                    ],
                );
                if g["name"].as_str().is_none_or(str::is_empty) {
                    v.push(format!("{at}: every group needs a name"));
                }
                for r in g["rules"].as_sequence().into_iter().flatten() {
                    let Some(rm) = r.as_mapping() else {
                        v.push(format!("{at}: a rule must be a mapping"));
                        continue;
                    };
                    only(
                        &mut v,
                        "rule",
                        rm,
                        &[
                            "alert",
                            "record",
                            "expr",
                            "for",
                            "keep_firing_for",
                            "labels",
                            "annotations",
                        ],
                    );
                    if r["expr"].as_str().is_none_or(|e| e.trim().is_empty()) {
                        v.push(format!("{at}: every rule needs an expr"));
                    }
                    if r["alert"].is_string() == r["record"].is_string() {
                        v.push(format!(
                            "{at}: a rule is an alert or a record, not both or neither"
                        ));
                    }
                    for d in ["for", "keep_firing_for"] {
                        if r.get(d).is_some_and(|x| !x.as_str().is_some_and(duration)) {
                            v.push(format!("{at}: rule {d} is not a duration"));
                        }
                    }
                    for m in ["labels", "annotations"] {
                        if r.get(m).is_some_and(|x| !string_map(x)) {
                            v.push(format!("{at}: rule {m}: strings only"));
                        }
                    }
                }
            }
        }
        "Certificate" => {
            only(
                &mut v,
                "spec",
                spec,
                &[
                    "additionalOutputFormats",
                    "commonName",
                    "dnsNames",
                    "duration",
                    "emailAddresses",
                    "encodeUsagesInRequest",
                    "ipAddresses",
                    "isCA",
                    "issuerRef",
                    "keystores",
                    "literalSubject",
                    "nameConstraints",
                    "otherNames",
                    "privateKey",
                    "renewBefore",
                    "renewBeforePercentage",
                    "revisionHistoryLimit",
                    "secretName",
                    "secretTemplate",
                    "signatureAlgorithm",
                    "subject",
                    "uris",
                    "usages",
                ],
            );
            if !doc["spec"]["secretName"].as_str().is_some_and(dns) {
                v.push(format!("{at}: spec.secretName is required"));
            }
            if doc["spec"]["issuerRef"]["name"]
                .as_str()
                .is_none_or(str::is_empty)
            {
                v.push(format!("{at}: spec.issuerRef.name is required"));
            }
            if let Some(d) = doc["spec"].get("dnsNames")
                && !d
                    .as_sequence()
                    .is_some_and(|l| l.iter().all(Value::is_string))
            {
                v.push(format!("{at}: spec.dnsNames: a list of strings"));
            }
            let key = &doc["spec"]["privateKey"];
            if key
                .get("algorithm")
                .is_some_and(|a| !matches!(a.as_str(), Some("RSA" | "ECDSA" | "Ed25519")))
            {
                v.push(format!("{at}: privateKey.algorithm: RSA, ECDSA or Ed25519"));
            }
            if key.get("size").is_some_and(|s| !s.is_u64()) {
                v.push(format!("{at}: privateKey.size: an integer"));
            }
        }
        "Issuer" => {
            let kinds = ["acme", "ca", "selfSigned", "vault", "venafi"];
            only(&mut v, "spec", spec, &kinds);
            if kinds.iter().filter(|k| spec.contains_key(**k)).count() != 1 {
                v.push(format!("{at}: spec names exactly one issuer type"));
            }
        }
        _ => {}
    }
    v
}

/// The CRD objects of deploy/kubernetes, structurally (see `crd_violations`), and what they
/// point at: the PodMonitor selects the example pods and scrapes a port they declare; the
/// webhook's Certificate names an Issuer of its base and the Secret its Deployment mounts, for
/// the DNS name the API server calls.
#[test]
fn crd_objects_are_checked_structurally() {
    let mut seen = std::collections::BTreeMap::new();
    let mut all = Vec::new();
    for p in manifests() {
        for d in docs(&read(&p)) {
            all.push((p.clone(), d));
        }
    }
    for (p, d) in &all {
        let kind = d["kind"].as_str().unwrap_or("");
        if CRD_KINDS.contains(&kind) {
            let v = crd_violations(d);
            assert!(v.is_empty(), "{}: {v:?}", p.display());
            *seen.entry(kind.to_owned()).or_insert(0) += 1;
        }
    }
    eprintln!(
        "CRD kinds checked structurally (apiVersion, fields, required fields), not against a \
         schema: {seen:?}"
    );
    for k in CRD_KINDS {
        assert!(seen.contains_key(*k), "no {k} in deploy/kubernetes");
    }
    let find = |kind: &'static str| {
        all.iter()
            .filter(move |(_, d)| d["kind"] == kind)
            .map(|(_, d)| d)
    };
    // PodMonitor → pods and port (the deployed pods: source/ holds inject's input).
    let pods: Vec<Value> = all
        .iter()
        .filter(|(p, _)| !p.components().any(|c| c.as_os_str() == "source"))
        .flat_map(|(_, d)| pods(d))
        .collect();
    for pm in find("PodMonitor") {
        let labels = pm["spec"]["selector"]["matchLabels"]
            .as_mapping()
            .expect("matchLabels");
        let selected: Vec<&Value> = pods
            .iter()
            .filter(|p| {
                labels
                    .iter()
                    .all(|(k, v)| p["metadata"]["labels"].get(k) == Some(v))
            })
            .collect();
        assert!(!selected.is_empty(), "the PodMonitor selects no pod");
        for ep in pm["spec"]["podMetricsEndpoints"]
            .as_sequence()
            .expect("endpoints")
        {
            for pod in &selected {
                let declared = ["initContainers", "containers"]
                    .iter()
                    .flat_map(|k| pod["spec"][*k].as_sequence().into_iter().flatten())
                    .flat_map(|c| c["ports"].as_sequence().into_iter().flatten())
                    .any(|port| port["name"] == ep["port"]);
                assert!(declared, "PodMonitor port {:?} is not declared", ep["port"]);
            }
        }
    }
    // Certificate → Issuer, Secret mounted, Service DNS name.
    let namespace: Value = serde_yaml::from_str(&read(
        &root().join("deploy/kubernetes/webhook/kustomization.yaml"),
    ))
    .expect("kustomization");
    for cert in find("Certificate") {
        assert!(
            find("Issuer").any(|i| i["metadata"]["name"] == cert["spec"]["issuerRef"]["name"]),
            "the Certificate's issuer is not in the base"
        );
        let secret = &cert["spec"]["secretName"];
        assert!(
            pods.iter().any(|p| p["spec"]["volumes"]
                .as_sequence()
                .into_iter()
                .flatten()
                .any(|v| v["secret"]["secretName"] == *secret)),
            "no pod mounts the Certificate's Secret {secret:?}"
        );
        let svc = find("Service")
            .find(|s| s["metadata"]["name"] == "fapi-guard-webhook")
            .expect("webhook Service");
        let host = format!(
            "{}.{}.svc",
            svc["metadata"]["name"].as_str().expect("name"),
            namespace["namespace"].as_str().expect("namespace")
        );
        assert!(
            cert["spec"]["dnsNames"]
                .as_sequence()
                .is_some_and(|l| l.iter().any(|n| n.as_str() == Some(&host))),
            "the Certificate does not cover {host}"
        );
    }
    // The check has teeth.
    let bad: Value = serde_yaml::from_str(
        "apiVersion: monitoring.coreos.com/v1beta1\nkind: PodMonitor\nmetadata: {name: Bad_Name}\nspec:\n  podMetricEndpoints: []\n",
    )
    .expect("yaml");
    assert_eq!(crd_violations(&bad).len(), 4, "{:?}", crd_violations(&bad));
    let bad: Value = serde_yaml::from_str(
        "apiVersion: monitoring.coreos.com/v1\nkind: PrometheusRule\nmetadata: {name: r}\nspec:\n  groups:\n  - rules:\n    - {alert: A, record: b, for: 5 minutes}\n",
    )
    .expect("yaml");
    assert_eq!(crd_violations(&bad).len(), 4, "{:?}", crd_violations(&bad));
    let bad: Value = serde_yaml::from_str(
        "apiVersion: cert-manager.io/v1\nkind: Certificate\nmetadata: {name: c}\nspec:\n  dnsName: [x]\n  privateKey: {algorithm: DSA}\n",
    )
    .expect("yaml");
    assert_eq!(crd_violations(&bad).len(), 4, "{:?}", crd_violations(&bad));
}
