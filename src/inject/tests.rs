use super::*;

fn refusal(input: &str) -> String {
    match inject_yaml(input, &InjectOptions::default()) {
        Ok(out) => panic!("expected a refusal, got:\n{}", out.yaml),
        Err(e) => e.to_string(),
    }
}

#[test]
fn refusals_name_the_document_and_cause() {
    let cases: &[(&str, &str, &str)] = &[
        ("not yaml", "a: [1, 2", "not YAML"),
        ("empty", "", "no document"),
        ("scalar", "just text", "document 1: not a Kubernetes object"),
        (
            "no kind",
            "apiVersion: v1\nmetadata: {name: x}\n",
            "no apiVersion or kind",
        ),
        (
            "old api group",
            "apiVersion: extensions/v1beta1\nkind: Deployment\nmetadata: {name: d}\nspec: {template: {spec: {containers: []}}}\n",
            "document 1 (Deployment d): unknown kind Deployment in extensions/v1beta1",
        ),
        (
            "replication controller",
            "apiVersion: v1\nkind: ReplicationController\nmetadata: {name: rc}\nspec: {template: {spec: {containers: []}}}\n",
            "unknown kind ReplicationController",
        ),
        (
            "crd with pods",
            "apiVersion: argoproj.io/v1alpha1\nkind: Rollout\nmetadata: {name: r}\nspec: {template: {spec: {containers: []}}}\n",
            "unknown kind Rollout",
        ),
        (
            "no template",
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\nspec: {}\n",
            "spec.template missing",
        ),
        (
            "bad annotation port",
            "apiVersion: v1\nkind: Pod\nmetadata: {name: p, annotations: {fapi-guard.io/upstream-port: http}}\nspec: {containers: [{name: a, image: a}]}\n",
            "is not a port number",
        ),
        (
            "bad config name",
            "apiVersion: v1\nkind: Pod\nmetadata: {name: p, annotations: {fapi-guard.io/config: Bad_Name}}\nspec: {containers: [{name: a, image: a}]}\n",
            "not a valid object name",
        ),
        (
            "port collision",
            "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: a, image: a, ports: [{containerPort: 8443}]}]}\n",
            "container a already uses port 8443",
        ),
        (
            "upstream is the proxy port",
            "apiVersion: v1\nkind: Pod\nmetadata: {name: p, annotations: {fapi-guard.io/upstream-port: '9902'}}\nspec: {containers: [{name: a, image: a}]}\n",
            "collides",
        ),
        (
            "volume collision",
            "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: a, image: a}], volumes: [{name: fapi-guard-tls, emptyDir: {}}]}\n",
            "volume named fapi-guard-tls",
        ),
        (
            "same name other image",
            "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: fapi-guard, image: evil:1}]}\n",
            "already exists with image \"evil:1\"",
        ),
    ];
    for (name, input, want) in cases {
        let got = refusal(input);
        assert!(got.contains(want), "{name}: {got}");
        assert!(!got.contains('\n'), "{name}: one line: {got}");
    }
}

#[test]
fn typed_lists_are_injected_too() {
    let input = "apiVersion: apps/v1\nkind: DeploymentList\nitems:\n- apiVersion: apps/v1\n  kind: Deployment\n  metadata: {name: d}\n  spec: {template: {spec: {containers: [{name: a, image: a}]}}}\n";
    let out = inject_yaml(input, &InjectOptions::default()).expect("inject");
    let v: Value = serde_yaml::from_str(&out.yaml).expect("yaml");
    assert_eq!(
        v["items"][0]["spec"]["template"]["spec"]["initContainers"][0]["name"],
        "fapi-guard"
    );
}

#[test]
fn object_names_follow_rfc_1123() {
    for (name, ok) in [
        ("a", true),
        ("a-b.c", true),
        ("A", false),
        ("-a", false),
        ("a..b", false),
        ("", false),
        ("a_b", false),
    ] {
        assert_eq!(pod::is_dns_subdomain_for_tests(name), ok, "{name}");
    }
}

#[test]
fn flags_follow_the_rules_of_their_annotations() {
    let ok = InjectOptions::default();
    assert_eq!(ok.validate(), Ok(()));
    let cases: [(&str, InjectOptions); 5] = [
        (
            "--config-map",
            InjectOptions {
                config_map: "Upper".into(),
                ..ok.clone()
            },
        ),
        (
            "--policies",
            InjectOptions {
                policies_config_map: "a_b".into(),
                ..ok.clone()
            },
        ),
        (
            "--tls-secret",
            InjectOptions {
                tls_secret: String::new(),
                ..ok.clone()
            },
        ),
        (
            "--image",
            InjectOptions {
                image: "reg.example/x:1 --privileged".into(),
                ..ok.clone()
            },
        ),
        (
            "--upstream-port",
            InjectOptions {
                upstream_port: Some(0),
                ..ok.clone()
            },
        ),
    ];
    for (flag, o) in cases {
        let e = o.validate().expect_err(flag);
        assert!(e.starts_with(flag), "{flag}: {e}");
    }
}
