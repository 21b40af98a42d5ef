//! The pod transformation shared by `inject` and the webhook: options from annotations, the
//! already-injected and conflict checks, the API port handed to the sidecar, then the sidecar
//! container and its volumes.

use serde_yaml::{Mapping, Value};

use super::sidecar::{self, ADMIN_PORT, METRICS_PORT, PROXY_PORT, PROXY_PORT_NAME, SIDECAR_NAME};
use super::{
    ANNOTATION_CONFIG, ANNOTATION_IMAGE, ANNOTATION_INJECT, ANNOTATION_POLICIES,
    ANNOTATION_TLS_SECRET, ANNOTATION_UPSTREAM_PORT, InjectError, InjectOptions, Target,
};

/// What happened to one pod (template).
#[derive(Debug, Clone)]
pub enum PodOutcome {
    Injected {
        warnings: Vec<String>,
        target: Target,
    },
    /// The sidecar is there with the same image: nothing changed.
    AlreadyInjected { target: Target },
    /// `fapi-guard.io/inject: disabled`: nothing changed.
    OptedOut,
}

/// Adds the sidecar to a pod or pod template (`{metadata, spec}`). `workload` holds the owning
/// workload's annotations, read after the pod's own.
pub fn inject_pod(
    pod: &mut Value,
    workload: Option<&Mapping>,
    defaults: &InjectOptions,
    at: &str,
) -> Result<PodOutcome, InjectError> {
    let pod_annotations = pod
        .get("metadata")
        .and_then(|m| m.get("annotations"))
        .and_then(Value::as_mapping)
        .cloned();
    let lookup = |key: &str| -> Option<String> {
        [pod_annotations.as_ref(), workload]
            .into_iter()
            .flatten()
            .find_map(|a| a.get(key).and_then(Value::as_str).map(str::to_owned))
    };
    // `fapi-guard.io/inject` as a pod label (what the webhook's object selector sees), a pod
    // annotation or a workload annotation: `disabled` anywhere opts out, `enabled` opts in
    // (the webhook configuration acts on the label), anything else is a mistake.
    let opted_out = {
        let pod_labels = pod
            .get("metadata")
            .and_then(|m| m.get("labels"))
            .and_then(Value::as_mapping);
        let mut out = false;
        for m in [pod_labels, pod_annotations.as_ref(), workload]
            .into_iter()
            .flatten()
        {
            match m.get(ANNOTATION_INJECT).map(|v| (v, v.as_str())) {
                None | Some((_, Some("enabled"))) => {}
                Some((_, Some("disabled"))) => out = true,
                Some((v, s)) => {
                    let shown = match s {
                        Some(s) => format!("{s:?}"),
                        None => serde_yaml::to_string(v)
                            .unwrap_or_default()
                            .trim()
                            .to_owned(),
                    };
                    return Err(InjectError::refused(
                        at,
                        format!("{ANNOTATION_INJECT}: {shown} must be enabled or disabled"),
                    ));
                }
            }
        }
        out
    };
    if opted_out {
        return Ok(PodOutcome::OptedOut);
    }
    let opts = resolve(defaults, &lookup, at)?;
    let labels = pod
        .get("metadata")
        .and_then(|m| m.get("labels"))
        .and_then(Value::as_mapping)
        .cloned()
        .unwrap_or_default();
    let Some(spec) = pod.get_mut("spec").and_then(Value::as_mapping_mut) else {
        return Err(InjectError::refused(at, "spec: missing pod spec"));
    };
    if !spec.get("containers").is_some_and(Value::is_sequence) {
        return Err(InjectError::refused(at, "spec.containers: expected a list"));
    }

    if let Some(existing) = find_sidecar(spec) {
        let image = existing.get("image").and_then(Value::as_str).unwrap_or("");
        if image != opts.image {
            return Err(InjectError::refused(
                at,
                format!(
                    "a container named {SIDECAR_NAME} already exists with image {image:?}, not {:?}",
                    opts.image
                ),
            ));
        }
        let proxy_port_name = existing
            .get("ports")
            .and_then(Value::as_sequence)
            .and_then(|ports| {
                ports.iter().find(|p| {
                    p.get("containerPort").and_then(Value::as_u64) == Some(u64::from(PROXY_PORT))
                })
            })
            .and_then(|p| p.get("name"))
            .and_then(Value::as_str)
            .unwrap_or(PROXY_PORT_NAME)
            .to_owned();
        return Ok(PodOutcome::AlreadyInjected {
            target: Target {
                labels,
                upstream_port: opts.upstream_port,
                proxy_port_name,
                fresh: false,
            },
        });
    }

    check_conflicts(spec, at)?;
    let mut warnings = Vec::new();
    let upstream_port = opts.upstream_port.or_else(|| single_declared_port(spec));
    if let Some(p) = upstream_port
        && [PROXY_PORT, ADMIN_PORT, METRICS_PORT].contains(&p)
    {
        return Err(InjectError::refused(
            at,
            format!("upstream port {p} collides with a port of the sidecar"),
        ));
    }
    // The API listens on localhost only; a Service reaches the pod through the sidecar. A named
    // API port moves to the sidecar, so Services using `targetPort: <name>` follow unchanged.
    let moved_name = match upstream_port {
        Some(p) => take_named_port(spec, p),
        None => {
            warnings.push(format!("{at}: cannot tell which port the API listens on; set {ANNOTATION_UPSTREAM_PORT} (and upstream.url in the config)"));
            None
        }
    };
    if moved_name.is_none() {
        warnings.push(format!("{at}: no named API port to hand over; point the Service's targetPort at {PROXY_PORT_NAME} ({PROXY_PORT})"));
    }
    if let Some(p) = upstream_port {
        warn_probes_on_api_port(spec, p, moved_name.as_deref(), at, &mut warnings);
    }
    let proxy_port_name = moved_name
        .clone()
        .unwrap_or_else(|| PROXY_PORT_NAME.to_owned());
    let container = sidecar::container(&opts, &proxy_port_name);
    if spec.get("volumes").is_some_and(|v| !v.is_sequence()) {
        return Err(InjectError::refused(at, "spec.volumes: expected a list"));
    }
    if opts.classic {
        push(spec, "containers", container);
    } else {
        // Native sidecar (KEP-753): first, so it runs before the other init containers and
        // the API, and stops after them.
        let init = spec
            .entry(Value::from("initContainers"))
            .or_insert_with(|| Value::Sequence(Vec::new()));
        match init.as_sequence_mut() {
            Some(seq) => seq.insert(0, container),
            None => {
                return Err(InjectError::refused(
                    at,
                    "spec.initContainers: expected a list",
                ));
            }
        }
    }
    for v in sidecar::volumes(&opts) {
        push(spec, "volumes", v);
    }
    Ok(PodOutcome::Injected {
        warnings,
        target: Target {
            labels,
            upstream_port,
            proxy_port_name,
            fresh: true,
        },
    })
}

fn resolve(
    defaults: &InjectOptions,
    lookup: &dyn Fn(&str) -> Option<String>,
    at: &str,
) -> Result<InjectOptions, InjectError> {
    let mut o = defaults.clone();
    let name = |key: &str, slot: &mut String| -> Result<(), InjectError> {
        if let Some(v) = lookup(key) {
            if !is_dns_subdomain(&v) {
                return Err(InjectError::refused(
                    at,
                    format!("annotation {key}: {v:?} is not a valid object name"),
                ));
            }
            *slot = v;
        }
        Ok(())
    };
    name(ANNOTATION_CONFIG, &mut o.config_map)?;
    name(ANNOTATION_POLICIES, &mut o.policies_config_map)?;
    name(ANNOTATION_TLS_SECRET, &mut o.tls_secret)?;
    if let Some(v) = lookup(ANNOTATION_IMAGE) {
        if !super::is_image_reference(&v) {
            return Err(InjectError::refused(
                at,
                format!("annotation {ANNOTATION_IMAGE}: {v:?} is not an image reference"),
            ));
        }
        o.image = v;
    }
    if let Some(v) = lookup(ANNOTATION_UPSTREAM_PORT) {
        match v.parse::<u16>() {
            Ok(p) if p > 0 => o.upstream_port = Some(p),
            _ => {
                return Err(InjectError::refused(
                    at,
                    format!("annotation {ANNOTATION_UPSTREAM_PORT}: {v:?} is not a port number"),
                ));
            }
        }
    }
    Ok(o)
}

/// RFC 1123 subdomain, as Kubernetes requires for ConfigMap and Secret names.
pub(super) fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

fn containers(spec: &Mapping) -> impl Iterator<Item = &Value> {
    ["initContainers", "containers"]
        .into_iter()
        .filter_map(|k| spec.get(k).and_then(Value::as_sequence))
        .flatten()
}

fn find_sidecar(spec: &Mapping) -> Option<&Value> {
    containers(spec).find(|c| c.get("name").and_then(Value::as_str) == Some(SIDECAR_NAME))
}

/// Refuses a pod whose declared ports or volumes would collide with the sidecar's.
fn check_conflicts(spec: &Mapping, at: &str) -> Result<(), InjectError> {
    for c in containers(spec) {
        let name = c.get("name").and_then(Value::as_str).unwrap_or("?");
        for p in c
            .get("ports")
            .and_then(Value::as_sequence)
            .into_iter()
            .flatten()
        {
            let port = p.get("containerPort").and_then(Value::as_u64);
            if let Some(port) = port.filter(|p| {
                [PROXY_PORT, ADMIN_PORT, METRICS_PORT]
                    .map(u64::from)
                    .contains(p)
            }) {
                return Err(InjectError::refused(
                    at,
                    format!("container {name} already uses port {port}, which the sidecar needs"),
                ));
            }
            if p.get("name").and_then(Value::as_str) == Some(sidecar::METRICS_PORT_NAME) {
                return Err(InjectError::refused(
                    at,
                    format!(
                        "container {name} already has a port named {}",
                        sidecar::METRICS_PORT_NAME
                    ),
                ));
            }
        }
    }
    for v in spec
        .get("volumes")
        .and_then(Value::as_sequence)
        .into_iter()
        .flatten()
    {
        let name = v.get("name").and_then(Value::as_str).unwrap_or("");
        if sidecar::VOLUME_NAMES.contains(&name) {
            return Err(InjectError::refused(
                at,
                format!("the pod already has a volume named {name}"),
            ));
        }
    }
    Ok(())
}

/// The API's port when exactly one port is declared across the pod's regular containers.
fn single_declared_port(spec: &Mapping) -> Option<u16> {
    let mut ports = spec
        .get("containers")
        .and_then(Value::as_sequence)
        .into_iter()
        .flatten()
        .flat_map(|c| {
            c.get("ports")
                .and_then(Value::as_sequence)
                .into_iter()
                .flatten()
        })
        .filter_map(|p| p.get("containerPort").and_then(Value::as_u64));
    let first = ports.next()?;
    match ports.next() {
        None => u16::try_from(first).ok(),
        Some(_) => None,
    }
}

/// Removes the API container's declaration of `port` (nothing outside the pod may reach it) and
/// returns its name, which the sidecar's proxy port takes over.
fn take_named_port(spec: &mut Mapping, port: u16) -> Option<String> {
    let containers = spec.get_mut("containers")?.as_sequence_mut()?;
    for c in containers {
        let Some(ports) = c.get_mut("ports").and_then(Value::as_sequence_mut) else {
            continue;
        };
        let Some(i) = ports.iter().position(|p| {
            p.get("containerPort").and_then(Value::as_u64) == Some(u64::from(port))
                && p.get("name").and_then(Value::as_str).is_some()
        }) else {
            continue;
        };
        let removed = ports.remove(i);
        if ports.is_empty()
            && let Some(m) = c.as_mapping_mut()
        {
            m.remove("ports");
        }
        return removed
            .get("name")
            .and_then(Value::as_str)
            .map(str::to_owned);
    }
    None
}

/// Kubelet probes come from the node, so an HTTP or TCP probe on the API port fails once the
/// API listens on localhost only.
fn warn_probes_on_api_port(
    spec: &Mapping,
    port: u16,
    name: Option<&str>,
    at: &str,
    warnings: &mut Vec<String>,
) {
    for c in spec
        .get("containers")
        .and_then(Value::as_sequence)
        .into_iter()
        .flatten()
    {
        let cname = c.get("name").and_then(Value::as_str).unwrap_or("?");
        for probe in ["startupProbe", "livenessProbe", "readinessProbe"] {
            let target = c.get(probe).and_then(|p| {
                p.get("httpGet")
                    .or_else(|| p.get("tcpSocket"))
                    .and_then(|h| h.get("port"))
            });
            let hits = match target {
                Some(Value::Number(n)) => n.as_u64() == Some(u64::from(port)),
                Some(Value::String(s)) => Some(s.as_str()) == name,
                _ => false,
            };
            if hits {
                warnings.push(format!("{at}: container {cname} {probe} targets the API port {port}, which should listen on localhost only; use an exec probe"));
            }
        }
    }
}

/// Appends to a list known to be one (checked above) or absent.
fn push(spec: &mut Mapping, key: &str, v: Value) {
    let slot = spec
        .entry(Value::from(key))
        .or_insert_with(|| Value::Sequence(Vec::new()));
    if let Some(seq) = slot.as_sequence_mut() {
        seq.push(v);
    }
}

#[cfg(test)]
pub(super) fn is_dns_subdomain_for_tests(s: &str) -> bool {
    is_dns_subdomain(s)
}
