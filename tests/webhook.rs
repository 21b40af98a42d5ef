//! The admission webhook over real TLS (certificates per run): real AdmissionReview v1 requests
//! for a Pod, an already injected Pod and an opted-out Pod. The JSONPatch is applied by an
//! independent implementation (Python `jsonpatch`, `FAPI_GUARD_TEST_PYTHON`) and must give
//! exactly what `fapi-guard inject` gives for the same Pod.

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use base64::Engine;
use bytes::Bytes;
use common::pki::Pki;
use fapi_guard::inject::InjectOptions;
use fapi_guard::tls::{ClientAuth, TlsAcceptor, TlsSettings};
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use rustls::RootCertStore;
use serde_json::{Value, json};

/// The image the golden files were made with (tests/inject_golden.rs).
const IMAGE: &str = "registry.bank.example/fapi-guard:0.1.0";

struct Webhook {
    url: String,
    pki: Pki,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Webhook {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn start() -> Webhook {
    let pki = Pki::new();
    let acceptor = TlsAcceptor::new(TlsSettings {
        cert_file: pki.path("server.crt"),
        key_file: pki.path("server.key"),
        client_ca_file: None,
        client_auth: ClientAuth::Optional,
    })
    .expect("acceptor");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let opts = InjectOptions {
        image: IMAGE.to_owned(),
        ..InjectOptions::default()
    };
    let task = tokio::spawn(fapi_guard::webhook::serve(
        listener,
        Arc::new(acceptor),
        Arc::new(opts),
    ));
    Webhook {
        url: format!("https://localhost:{}/mutate", addr.port()),
        pki,
        task,
    }
}

async fn post(w: &Webhook, body: &Value) -> (u16, Value) {
    post_to(&w.url, &w.pki, body).await
}

/// POSTs `body` to `url` over TLS, trusting only the test CA.
async fn post_to(url: &str, pki: &Pki, body: &Value) -> (u16, Value) {
    let mut roots = RootCertStore::empty();
    roots.add(pki.ca_der()).expect("ca");
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(config)
        .https_only()
        .enable_http1()
        .enable_http2()
        .build();
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build(https);
    let req = Request::post(url)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("request");
    let resp = client.request(req).await.expect("webhook over TLS");
    let status = resp.status().as_u16();
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

fn review(uid: &str, pod: &Value) -> Value {
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "requestKind": {"group": "", "version": "v1", "kind": "Pod"},
            "requestResource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": "bank",
            "operation": "CREATE",
            "userInfo": {"username": "system:serviceaccount:kube-system:replicaset-controller"},
            "object": pod,
            "oldObject": null,
            "dryRun": false,
            "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"}
        }
    })
}

fn yaml_file_as_json(name: &str) -> Value {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/inject")
        .join(name);
    let v: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(&p).expect("read")).expect("yaml");
    serde_json::to_value(v).expect("json")
}

fn python() -> String {
    let py = std::env::var("FAPI_GUARD_TEST_PYTHON")
        .ok()
        .filter(|v| !v.is_empty())
        .expect("FAPI_GUARD_TEST_PYTHON names the Python interpreter (see build.rs)");
    let ok = Command::new(&py)
        .args(["-c", "import jsonpatch"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "FAPI_GUARD_TEST_PYTHON={py} cannot import jsonpatch (pip install jsonpatch)"
    );
    py
}

/// Applies `patch` to `doc` with Python's jsonpatch (RFC 6902), an implementation that shares
/// nothing with ours.
fn apply_with_python(doc: &Value, patch: &Value) -> Value {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("doc.json"), doc.to_string()).expect("doc");
    std::fs::write(dir.path().join("patch.json"), patch.to_string()).expect("patch");
    let out = Command::new(python())
        .current_dir(dir.path())
        .args([
            "-c",
            "import json, jsonpatch; d = json.load(open('doc.json')); p = jsonpatch.JsonPatch(json.load(open('patch.json'))); print(json.dumps(p.apply(d)))",
        ])
        .output()
        .expect("python");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("patched JSON")
}

fn patch_of(answer: &Value) -> Value {
    assert_eq!(answer["response"]["patchType"], "JSONPatch", "{answer}");
    let b64 = answer["response"]["patch"].as_str().expect("patch");
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .expect("base64");
    serde_json::from_slice(&bytes).expect("patch JSON")
}

#[tokio::test]
#[cfg_attr(
    not(fapi_guard_test_python),
    ignore = "needs Python with jsonpatch: set FAPI_GUARD_TEST_PYTHON=python3"
)]
async fn pod_is_patched_into_exactly_the_inject_output() {
    let w = start().await;
    for (input, expected) in [("pod.in.yaml", "pod.out.yaml")] {
        let pod = yaml_file_as_json(input);
        let (status, answer) = post(&w, &review("0b6a7c2e-1", &pod)).await;
        assert_eq!(status, 200);
        assert_eq!(answer["apiVersion"], "admission.k8s.io/v1");
        assert_eq!(answer["kind"], "AdmissionReview");
        assert_eq!(answer["response"]["uid"], "0b6a7c2e-1");
        assert_eq!(answer["response"]["allowed"], true);
        let patched = apply_with_python(&pod, &patch_of(&answer));
        assert_eq!(
            patched,
            yaml_file_as_json(expected),
            "{input}: webhook and inject disagree"
        );
    }
}

/// A pod as a Deployment's ReplicaSet creates it: generateName, no name, the template's
/// annotations. Same result as injecting the Deployment and taking its pod template.
#[tokio::test]
#[cfg_attr(
    not(fapi_guard_test_python),
    ignore = "needs Python with jsonpatch: set FAPI_GUARD_TEST_PYTHON=python3"
)]
async fn controller_created_pod_matches_the_injected_template() {
    let w = start().await;
    let deployment = yaml_file_as_json("statefulset.in.yaml");
    let mut pod = deployment["spec"]["template"].clone();
    pod["apiVersion"] = "v1".into();
    pod["kind"] = "Pod".into();
    pod["metadata"]["generateName"] = "ledger-".into();
    let (_, answer) = post(&w, &review("0b6a7c2e-2", &pod)).await;
    let patched = apply_with_python(&pod, &patch_of(&answer));
    let mut expected = yaml_file_as_json("statefulset.out.yaml")["spec"]["template"].clone();
    expected["apiVersion"] = "v1".into();
    expected["kind"] = "Pod".into();
    expected["metadata"]["generateName"] = "ledger-".into();
    assert_eq!(patched, expected);
}

#[tokio::test]
async fn injected_and_opted_out_pods_are_admitted_unchanged() {
    let w = start().await;
    let injected = yaml_file_as_json("pod.out.yaml");
    let mut opted_out = yaml_file_as_json("pod.in.yaml");
    opted_out["metadata"]["annotations"]["fapi-guard.io/inject"] = "disabled".into();
    let mut label_opted_out = yaml_file_as_json("pod.in.yaml");
    label_opted_out["metadata"]["labels"]["fapi-guard.io/inject"] = "disabled".into();
    for (name, pod) in [
        ("already injected", injected),
        ("opted out by annotation", opted_out),
        ("opted out by label", label_opted_out),
    ] {
        let (status, answer) = post(&w, &review("uid-3", &pod)).await;
        assert_eq!(status, 200, "{name}");
        assert_eq!(
            answer["response"],
            json!({"uid": "uid-3", "allowed": true}),
            "{name}: no patch"
        );
    }
}

#[tokio::test]
async fn conflicting_pod_is_denied_and_garbage_is_a_400() {
    let w = start().await;
    let pod = yaml_file_as_json("refuse-other-image.in.yaml")["spec"]["template"].clone();
    let (status, answer) = post(&w, &review("uid-4", &pod)).await;
    assert_eq!(status, 200);
    assert_eq!(answer["response"]["allowed"], false);
    assert_eq!(answer["response"]["status"]["code"], 403);
    assert!(answer["response"].get("patch").is_none());
    let (status, _) = post(&w, &json!({"apiVersion": "v1", "kind": "Pod"})).await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn label_opt_in_is_injected_and_an_unknown_switch_is_denied() {
    let w = start().await;
    let mut opted_in = yaml_file_as_json("pod.in.yaml");
    opted_in["metadata"]["labels"]["fapi-guard.io/inject"] = "enabled".into();
    let (status, answer) = post(&w, &review("uid-5", &opted_in)).await;
    assert_eq!(status, 200);
    assert_eq!(answer["response"]["allowed"], true);
    assert!(patch_of(&answer).as_array().is_some_and(|p| !p.is_empty()));
    let mut unclear = yaml_file_as_json("pod.in.yaml");
    unclear["metadata"]["labels"]["fapi-guard.io/inject"] = "true".into();
    let (status, answer) = post(&w, &review("uid-6", &unclear)).await;
    assert_eq!(status, 200);
    assert_eq!(answer["response"]["allowed"], false);
    assert_eq!(answer["response"]["status"]["code"], 403);
    let msg = answer["response"]["status"]["message"]
        .as_str()
        .unwrap_or("");
    assert!(
        msg.contains("fapi-guard.io/inject: \"true\" must be enabled or disabled"),
        "{msg}"
    );
}

/// A label selector (`matchLabels`, `matchExpressions`) against a set of labels, as the API
/// server evaluates it.
fn selects(selector: &serde_yaml::Value, labels: &[(&str, &str)]) -> bool {
    let get = |k: &str| labels.iter().find(|(l, _)| *l == k).map(|(_, v)| *v);
    let by_labels = selector["matchLabels"]
        .as_mapping()
        .into_iter()
        .flatten()
        .all(|(k, v)| get(k.as_str().expect("key")) == v.as_str());
    let by_expressions = selector["matchExpressions"]
        .as_sequence()
        .into_iter()
        .flatten()
        .all(|e| {
            let value = get(e["key"].as_str().expect("key"));
            let values: Vec<&str> = e["values"]
                .as_sequence()
                .into_iter()
                .flatten()
                .filter_map(serde_yaml::Value::as_str)
                .collect();
            match e["operator"].as_str().expect("operator") {
                "In" => value.is_some_and(|v| values.contains(&v)),
                "NotIn" => value.is_none_or(|v| !values.contains(&v)),
                "Exists" => value.is_some(),
                "DoesNotExist" => value.is_none(),
                op => panic!("operator {op}"),
            }
        });
    by_labels && by_expressions
}

/// The MutatingWebhookConfiguration's selectors give the documented precedence: a namespace
/// label `enabled` sends its pods unless they are labelled `disabled`, a pod label `enabled`
/// opts a pod in within an unlabelled namespace, a namespace labelled `disabled` is never
/// sent, and no pod is sent twice. Then the webhook itself decides (annotations, the sidecar
/// already there).
#[test]
fn webhook_selectors_give_the_documented_precedence() {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("deploy/kubernetes/webhook/mutatingwebhookconfiguration.yaml"),
    )
    .expect("read");
    let mwc: serde_yaml::Value = serde_yaml::from_str(&text).expect("yaml");
    let hooks = mwc["webhooks"].as_sequence().expect("webhooks");
    assert_eq!(hooks.len(), 2);
    for h in hooks {
        assert_eq!(h["failurePolicy"], "Fail");
        assert_eq!(h["clientConfig"]["service"]["path"], "/mutate");
    }
    let k = "fapi-guard.io/inject";
    // (namespace label, pod label, sent to the webhook)
    let table: &[(Option<&str>, Option<&str>, bool)] = &[
        (Some("enabled"), None, true),
        (Some("enabled"), Some("enabled"), true),
        (Some("enabled"), Some("disabled"), false),
        (None, Some("enabled"), true),
        (None, None, false),
        (None, Some("disabled"), false),
        (Some("disabled"), None, false),
        (Some("disabled"), Some("enabled"), false),
        (Some("disabled"), Some("disabled"), false),
    ];
    for ns in ["bank", "fapi-guard-system", "kube-system"] {
        for (ns_label, pod_label, sent) in table {
            let mut ns_labels = vec![("kubernetes.io/metadata.name", ns)];
            ns_labels.extend(ns_label.map(|v| (k, v)));
            let pod_labels: Vec<(&str, &str)> = pod_label.map(|v| (k, v)).into_iter().collect();
            let matching = hooks
                .iter()
                .filter(|h| {
                    selects(&h["namespaceSelector"], &ns_labels)
                        && selects(&h["objectSelector"], &pod_labels)
                })
                .count();
            assert!(matching <= 1, "{ns} {ns_label:?} {pod_label:?}: sent twice");
            // The webhook's own namespace and kube-system opt in only by being labelled.
            let want = *sent && (ns == "bank" || ns_label.is_some());
            assert_eq!(
                matching == 1,
                want,
                "namespace {ns} labelled {ns_label:?}, pod labelled {pod_label:?}"
            );
        }
    }
}

/// The real `fapi-guard webhook` process: its flags, its TLS listener, one review of each kind.
#[tokio::test]
async fn the_webhook_binary_answers_reviews_over_tls() {
    let pki = Pki::new();
    let port = common::process::free_port();
    let bin = env!("CARGO_BIN_EXE_fapi-guard");
    // A bad flag is refused before anything listens.
    let out = Command::new(bin)
        .args(["webhook", "--tls-secret", "Not_A_Name"])
        .arg("--cert-file")
        .arg(pki.path("server.crt"))
        .arg("--key-file")
        .arg(pki.path("server.key"))
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--tls-secret \"Not_A_Name\""),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut child = Command::new(bin)
        .args(["webhook", "--address", &format!("127.0.0.1:{port}")])
        .arg("--cert-file")
        .arg(pki.path("server.crt"))
        .arg("--key-file")
        .arg(pki.path("server.key"))
        .args(["--image", IMAGE, "--config-map", "payments-config"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn fapi-guard webhook");
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let url = format!("https://localhost:{port}/mutate");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the webhook did not listen"
        );
        if let Ok(Some(s)) = child.try_wait() {
            panic!("the webhook exited: {s}");
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let _guard = Kill(child);
    // The same answer as the library gives for the same options, for a pod to inject, an
    // opted-out pod and a pod it must refuse.
    let opts = InjectOptions {
        image: IMAGE.to_owned(),
        config_map: "payments-config".to_owned(),
        ..InjectOptions::default()
    };
    let mut opted_out = yaml_file_as_json("pod.in.yaml");
    opted_out["metadata"]["labels"]["fapi-guard.io/inject"] = "disabled".into();
    let conflicting = yaml_file_as_json("refuse-other-image.in.yaml")["spec"]["template"].clone();
    for (uid, pod, allowed) in [
        ("bin-1", yaml_file_as_json("pod.in.yaml"), true),
        ("bin-2", opted_out, true),
        ("bin-3", conflicting, false),
    ] {
        let body = review(uid, &pod);
        let (status, answer) = post_to(&url, &pki, &body).await;
        assert_eq!(status, 200, "{uid}");
        assert_eq!(answer["response"]["uid"], uid);
        assert_eq!(answer["response"]["allowed"], allowed, "{uid}: {answer}");
        let expected =
            fapi_guard::webhook::review(body.to_string().as_bytes(), &opts).expect("review");
        assert_eq!(answer, expected, "{uid}: binary and library disagree");
    }
    // The injected pod's patch carries the flag's ConfigMap name.
    let (_, answer) = post_to(
        &url,
        &pki,
        &review("bin-4", &yaml_file_as_json("pod.in.yaml")),
    )
    .await;
    assert!(
        patch_of(&answer)
            .to_string()
            .contains("\"payments-config\""),
        "{answer}"
    );
}
