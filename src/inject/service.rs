//! Services in the same input that select an injected workload and target the API port are
//! pointed at the sidecar; a Service elsewhere cannot be seen, hence the warnings in `pod`.

use serde_yaml::{Mapping, Value};

use super::{Target, str_at};

/// Rewrites `targetPort` of a Service (or of the Services in a `List`) when it names the API's
/// port by number and its selector matches an injected pod template.
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
        let Some(tp) = port.get_mut("targetPort") else {
            continue;
        };
        let to_api = match &*tp {
            Value::Number(n) => target
                .upstream_port
                .is_some_and(|p| n.as_u64() == Some(u64::from(p))),
            _ => false,
        };
        if to_api {
            warnings.push(format!(
                "Service {name}: targetPort {} now points at the sidecar port {}",
                target.upstream_port.unwrap_or(0),
                target.proxy_port_name
            ));
            *tp = Value::from(target.proxy_port_name.as_str());
        }
    }
}

/// A selector selects a pod when every one of its labels is on the pod.
fn selects(selector: &Mapping, labels: &Mapping) -> bool {
    !selector.is_empty() && selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}
