//! The manifests in `deploy/`: the example Deployment is exactly `inject`'s output, the
//! PrometheusRule holds the rules of `deploy/prometheus/alerts.yaml`, every pod passes the Pod
//! Security Standards "restricted" checks, `kubectl kustomize` builds both bases, and every
//! manifest, kustomize output and `inject` golden output validates against the Kubernetes 1.30
//! schemas with `kubernetes-validate --strict` (`FAPI_GUARD_TEST_K8S_VALIDATE`, `FAPI_GUARD_TEST_KUBECTL`).

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
    // `admin.metrics_address` comes with the metrics-only listener (another branch); everything
    // else in the shipped config must load.
    let config = read(&root().join("deploy/kubernetes/config.yaml"));
    assert!(config.contains("  metrics_address: 0.0.0.0:9902"));
    let without: String = config
        .lines()
        .filter(|l| !l.trim_start().starts_with("metrics_address:"))
        .map(|l| format!("{l}\n"))
        .collect();
    let c = fapi_guard::config::Config::from_yaml(
        &root().join("deploy/kubernetes/config.yaml"),
        &without,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.listen.drain_delay, std::time::Duration::from_secs(5));
    assert_eq!(
        c.admin.as_ref().map(|a| a.address.to_string()).as_deref(),
        Some("127.0.0.1:9901")
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
/// allowed.
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
