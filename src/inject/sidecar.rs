//! The injected container and volumes. Everything here is fixed by the options, so the same
//! input always gives the same output (idempotence, golden tests).

use serde_yaml::{Mapping, Value};

use super::InjectOptions;

pub const SIDECAR_NAME: &str = "fapi-guard";
/// The proxy listener (`listen.address: 0.0.0.0:8443` in the config).
pub const PROXY_PORT: u16 = 8443;
pub const PROXY_PORT_NAME: &str = "fg-proxy";
/// The full admin listener, on 127.0.0.1 only (write endpoints); declared nowhere.
pub const ADMIN_PORT: u16 = 9901;
/// The metrics-only admin listener (`admin.metrics_address: 0.0.0.0:9902`): probes and scrapes.
pub const METRICS_PORT: u16 = 9902;
pub const METRICS_PORT_NAME: &str = "fg-metrics";

pub const CONFIG_DIR: &str = "/etc/fapi-guard/config";
pub const POLICIES_DIR: &str = "/etc/fapi-guard/policies";
pub const TLS_DIR: &str = "/etc/fapi-guard/tls";
pub const VOLUME_NAMES: [&str; 3] = ["fapi-guard-config", "fapi-guard-policies", "fapi-guard-tls"];

/// The sidecar container. Mounts are whole directories, never `subPath`: the kubelet updates a
/// ConfigMap or Secret volume by swapping a `..data` symlink, which a `subPath` mount never sees.
pub fn container(opts: &InjectOptions, proxy_port_name: &str) -> Value {
    let mut c = Mapping::new();
    c.insert("name".into(), SIDECAR_NAME.into());
    c.insert("image".into(), opts.image.as_str().into());
    c.insert(
        "args".into(),
        seq([
            "run".into(),
            "--config".into(),
            format!("{CONFIG_DIR}/config.yaml").into(),
        ]),
    );
    if !opts.classic {
        // KEP-753 native sidecar: an init container that keeps running beside the API.
        c.insert("restartPolicy".into(), "Always".into());
    }
    c.insert(
        "ports".into(),
        seq([
            port(proxy_port_name, PROXY_PORT),
            port(METRICS_PORT_NAME, METRICS_PORT),
        ]),
    );
    // Startup and liveness only ask "is the process serving"; readiness also waits for compiled
    // policies and loaded issuer keys, and goes false on SIGTERM while the pod drains.
    c.insert("startupProbe".into(), probe("/healthz", 1, 1, 30));
    c.insert("livenessProbe".into(), probe("/healthz", 10, 2, 3));
    c.insert("readinessProbe".into(), probe("/readyz", 2, 1, 2));
    c.insert(
        "resources".into(),
        map([
            (
                "requests",
                map([("cpu", "100m".into()), ("memory", "64Mi".into())]),
            ),
            ("limits", map([("memory", "256Mi".into())])),
        ]),
    );
    c.insert("securityContext".into(), restricted_security_context());
    c.insert(
        "volumeMounts".into(),
        seq([
            mount(VOLUME_NAMES[0], CONFIG_DIR),
            mount(VOLUME_NAMES[1], POLICIES_DIR),
            mount(VOLUME_NAMES[2], TLS_DIR),
        ]),
    );
    Value::Mapping(c)
}

/// Pod Security Standards "restricted": non-root, no escalation, no capabilities, read-only
/// root filesystem, RuntimeDefault seccomp. UID 65532 is the distroless `nonroot` user.
fn restricted_security_context() -> Value {
    map([
        ("allowPrivilegeEscalation", false.into()),
        ("capabilities", map([("drop", seq(["ALL".into()]))])),
        ("readOnlyRootFilesystem", true.into()),
        ("runAsNonRoot", true.into()),
        ("runAsUser", 65532.into()),
        ("runAsGroup", 65532.into()),
        ("seccompProfile", map([("type", "RuntimeDefault".into())])),
    ])
}

pub fn volumes(opts: &InjectOptions) -> [Value; 3] {
    [
        map([
            ("name", VOLUME_NAMES[0].into()),
            (
                "configMap",
                map([("name", opts.config_map.as_str().into())]),
            ),
        ]),
        map([
            ("name", VOLUME_NAMES[1].into()),
            (
                "configMap",
                map([("name", opts.policies_config_map.as_str().into())]),
            ),
        ]),
        map([
            ("name", VOLUME_NAMES[2].into()),
            (
                "secret",
                map([("secretName", opts.tls_secret.as_str().into())]),
            ),
        ]),
    ]
}

fn port(name: &str, number: u16) -> Value {
    map([
        ("name", name.into()),
        ("containerPort", number.into()),
        ("protocol", "TCP".into()),
    ])
}

fn probe(path: &str, period: u32, timeout: u32, failures: u32) -> Value {
    map([
        (
            "httpGet",
            map([("path", path.into()), ("port", METRICS_PORT_NAME.into())]),
        ),
        ("periodSeconds", period.into()),
        ("timeoutSeconds", timeout.into()),
        ("failureThreshold", failures.into()),
    ])
}

fn mount(name: &str, path: &str) -> Value {
    map([
        ("name", name.into()),
        ("mountPath", path.into()),
        ("readOnly", true.into()),
    ])
}

fn map<const N: usize>(pairs: [(&str, Value); N]) -> Value {
    Value::Mapping(pairs.into_iter().map(|(k, v)| (k.into(), v)).collect())
}

fn seq<const N: usize>(items: [Value; N]) -> Value {
    Value::Sequence(items.into())
}
