use serde_json::json;

use super::*;

fn review_of(object: Value) -> Vec<u8> {
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": "bank",
            "operation": "CREATE",
            "object": object,
        }
    })
    .to_string()
    .into_bytes()
}

#[test]
fn refuses_what_is_not_a_review() {
    let opts = InjectOptions::default();
    for (name, body) in [
        ("not json", &b"apiVersion: v1"[..]),
        ("v1beta1", br#"{"apiVersion":"admission.k8s.io/v1beta1","kind":"AdmissionReview","request":{"uid":"x"}}"#),
        ("no request", br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#),
        ("no uid", br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{}}"#),
    ] {
        assert!(review(body, &opts).is_err(), "{name}");
    }
}

#[test]
fn conflicting_pod_is_denied_with_the_reason() {
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
        "spec": {"containers": [{"name": "fapi-guard", "image": "other:1"}]}});
    let answer = review(&review_of(pod), &InjectOptions::default()).expect("review");
    assert_eq!(answer["response"]["allowed"], false);
    let msg = answer["response"]["status"]["message"]
        .as_str()
        .unwrap_or("");
    assert!(msg.contains("already exists with image"), "{msg}");
    assert!(answer["response"].get("patch").is_none());
}

#[test]
fn other_kinds_pass_unchanged() {
    let mut body: Value =
        serde_json::from_slice(&review_of(json!({"kind": "Service"}))).expect("json");
    body["request"]["kind"] = json!({"group": "apps", "version": "v1", "kind": "Deployment"});
    let answer = review(body.to_string().as_bytes(), &InjectOptions::default()).expect("review");
    assert_eq!(
        answer["response"],
        json!({"uid": "705ab4f5-6393-11e8-b7cc-42010a800002", "allowed": true})
    );
}
