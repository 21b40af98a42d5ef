//! A JSONPatch (RFC 6902) from one JSON document to another: objects are compared member by
//! member, anything else that differs is replaced whole (arrays included: the sidecar is
//! inserted at the front of `initContainers`, which index-wise `add`s would express no better).

use serde_json::{Value, json};

/// Operations that turn `from` into `to`.
pub fn diff(from: &Value, to: &Value) -> Vec<Value> {
    let mut ops = Vec::new();
    walk(from, to, &mut String::new(), &mut ops);
    ops
}

fn walk(from: &Value, to: &Value, path: &mut String, ops: &mut Vec<Value>) {
    match (from, to) {
        (Value::Object(a), Value::Object(b)) => {
            for k in a.keys().filter(|k| !b.contains_key(*k)) {
                ops.push(json!({"op": "remove", "path": child(path, k)}));
            }
            for (k, vb) in b {
                match a.get(k) {
                    None => ops.push(json!({"op": "add", "path": child(path, k), "value": vb})),
                    Some(va) if va != vb => {
                        let len = path.len();
                        path.push_str(&child("", k));
                        walk(va, vb, path, ops);
                        path.truncate(len);
                    }
                    Some(_) => {}
                }
            }
        }
        _ if from != to => ops.push(json!({"op": "replace", "path": path.as_str(), "value": to})),
        _ => {}
    }
}

/// RFC 6901 §3: `~` → `~0`, `/` → `~1`.
fn child(path: &str, key: &str) -> String {
    format!("{path}/{}", key.replace('~', "~0").replace('/', "~1"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cases() {
        let cases: &[(&str, Value, Value, Value)] = &[
            ("equal", json!({"a": 1}), json!({"a": 1}), json!([])),
            (
                "add member",
                json!({"a": 1}),
                json!({"a": 1, "b": [2]}),
                json!([{"op": "add", "path": "/b", "value": [2]}]),
            ),
            (
                "remove member",
                json!({"a": 1, "b": 2}),
                json!({"a": 1}),
                json!([{"op": "remove", "path": "/b"}]),
            ),
            (
                "nested replace",
                json!({"s": {"c": [1]}}),
                json!({"s": {"c": [0, 1]}}),
                json!([{"op": "replace", "path": "/s/c", "value": [0, 1]}]),
            ),
            (
                "escaped keys",
                json!({"m": {"a/b~c": 1}}),
                json!({"m": {"a/b~c": 2}}),
                json!([{"op": "replace", "path": "/m/a~1b~0c", "value": 2}]),
            ),
            (
                "root replace",
                json!([1]),
                json!([2]),
                json!([{"op": "replace", "path": "", "value": [2]}]),
            ),
        ];
        for (name, from, to, want) in cases {
            assert_eq!(Value::Array(diff(from, to)), *want, "{name}");
        }
    }
}
