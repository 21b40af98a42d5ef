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
    let mut roots = RootCertStore::empty();
    roots.add(w.pki.ca_der()).expect("ca");
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
    let req = Request::post(&w.url)
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
    for (name, pod) in [("already injected", injected), ("opted out", opted_out)] {
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
