//! Services in the same input that select an injected workload and target the API port are
//! pointed at the sidecar; a Service elsewhere cannot be seen, hence the warnings in `pod`.

use serde_yaml::{Mapping, Value};

use super::{METRICS_PORT, PROXY_PORT, Target, str_at};

/// Points a Service (or the Services in a `List`) whose selector matches an injected pod
/// template at the sidecar: a `targetPort` naming the API's port by number, or missing (it then
/// defaults to `port`) where `port` is the API's, becomes the sidecar's port name. A numeric or
/// missing `targetPort` that cannot be told to be the API's is left alone with a warning.
pub(crate) fn rewrite(doc: &mut Value, targets: &[Target], warnings: &mut Vec<String>) {
    let Some(map) = doc.as_mapping_mut() else {
        return;
    };
    if str_at(map, "kind") == Some("List") {
        for item in map
            .get_mut("items")
            .and_then(Value::as_sequence_mut)
            .into_iter()
            .flatten()
        {
            rewrite(item, targets, warnings);
        }
        return;
    }
    if str_at(map, "kind") != Some("Service") || str_at(map, "apiVersion") != Some("v1") {
        return;
    }
    let name = map
        .get("metadata")
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str)
        .unwrap_or("?")
        .to_owned();
    let Some(spec) = map.get_mut("spec").and_then(Value::as_mapping_mut) else {
        return;
    };
    let Some(selector) = spec.get("selector").and_then(Value::as_mapping).cloned() else {
        return;
    };
    let Some(target) = targets.iter().find(|t| selects(&selector, &t.labels)) else {
        return;
    };
    for port in spec
        .get_mut("ports")
        .and_then(Value::as_sequence_mut)
        .into_iter()
        .flatten()
    {
        let Some(port) = port.as_mapping_mut() else {
            continue;
        };
        let number = port.get("port").and_then(Value::as_u64);
        // What was changed is always said; what could not be is said when the workload was
        // injected by this run (a second run would repeat it).
        let mut changed = Vec::new();
        let mut unchanged = Vec::new();
        let proxy = target.proxy_port_name.as_str();
        match port.get("targetPort") {
            // Kubernetes: no targetPort means the same number as `port`.
            None => match (number, target.upstream_port) {
                (Some(n), Some(api)) if n == u64::from(api) => {
                    changed.push(format!(
                        "Service {name}: port {n} had no targetPort, so it reached the API port {api}; targetPort is now {proxy}, the sidecar"
                    ));
                    port.insert("targetPort".into(), Value::from(proxy));
                }
                (Some(n), _) if is_sidecar_port(n) => {}
                (Some(n), _) => unchanged.push(format!(
                    "Service {name}: port {n} has no targetPort, so it reaches port {n} of the pod, not the sidecar; set targetPort: {proxy} ({PROXY_PORT}) if it carries API traffic"
                )),
                (None, _) => {}
            },
            Some(Value::Number(n)) => {
                let n = n.as_u64().unwrap_or(0);
                match target.upstream_port {
                    Some(api) if n == u64::from(api) => {
                        changed.push(format!(
                            "Service {name}: targetPort {n} now points at the sidecar port {proxy}"
                        ));
                        port.insert("targetPort".into(), Value::from(proxy));
                    }
                    _ if is_sidecar_port(n) => {}
                    Some(api) => unchanged.push(format!(
                        "Service {name}: targetPort {n} is neither the API port {api} nor the sidecar's {PROXY_PORT}; left as it is, so requests to it do not go through fapi-guard"
                    )),
                    None => unchanged.push(format!(
                        "Service {name}: targetPort {n} left as it is: the API port is unknown; point it at {proxy} ({PROXY_PORT}) if it carries API traffic"
                    )),
                }
            }
            Some(_) => {}
        }
        warnings.extend(changed);
        if target.fresh {
            warnings.extend(unchanged);
        }
    }
}

/// The sidecar's proxy and metrics ports: a Service may point at those.
fn is_sidecar_port(n: u64) -> bool {
    n == u64::from(PROXY_PORT) || n == u64::from(METRICS_PORT)
}

/// A selector selects a pod when every one of its labels is on the pod.
fn selects(selector: &Mapping, labels: &Mapping) -> bool {
    !selector.is_empty() && selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}
