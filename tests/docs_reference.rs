//! `docs/reference.md` lists exactly the deny reasons, metrics and configuration keys the code
//! has: adding one to the code without documenting it (or documenting one that does not exist)
//! fails here.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;

use fapi_guard::reason::DenyReason;

fn reference() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/reference.md");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The lines of the `## {title}` section.
fn section<'a>(doc: &'a str, title: &str) -> Vec<&'a str> {
    let heading = format!("## {title}");
    let mut lines = doc.lines().skip_while(|l| *l != heading);
    assert!(
        lines.next().is_some(),
        "docs/reference.md has no {heading:?}"
    );
    lines.take_while(|l| !l.starts_with("## ")).collect()
}

/// Table rows of a section whose first cell is a `code` span: the cells, trimmed, backticks off.
fn rows(lines: &[&str]) -> Vec<Vec<String>> {
    lines
        .iter()
        .filter(|l| l.starts_with("| `"))
        .map(|l| {
            l.trim_matches('|')
                .split(" | ")
                .map(|c| c.trim().trim_matches('`').to_owned())
                .collect()
        })
        .collect()
}

fn diff(what: &str, code: &BTreeSet<String>, doc: &BTreeSet<String>) {
    let undocumented: Vec<_> = code.difference(doc).collect();
    let phantom: Vec<_> = doc.difference(code).collect();
    assert!(
        undocumented.is_empty() && phantom.is_empty(),
        "docs/reference.md is out of date for {what}:\n  in the code, not documented: \
         {undocumented:?}\n  documented, not in the code: {phantom:?}"
    );
}

#[test]
fn every_deny_reason_is_documented_with_its_status_and_error() {
    let doc = reference();
    let table = rows(&section(&doc, "Deny reasons"));
    let documented: BTreeMap<String, (String, String)> = table
        .iter()
        .map(|r| {
            assert!(r.len() >= 4, "deny reason row needs 4 cells: {r:?}");
            (r[0].clone(), (r[1].clone(), r[2].clone()))
        })
        .collect();
    assert_eq!(documented.len(), table.len(), "a reason is listed twice");
    let code: BTreeSet<String> = DenyReason::ALL
        .iter()
        .map(|r| r.as_str().to_owned())
        .collect();
    diff("deny reasons", &code, &documented.keys().cloned().collect());
    for r in DenyReason::ALL {
        let (status, error) = r.status_and_error();
        let (doc_status, doc_error) = &documented[r.as_str()];
        assert_eq!(
            (doc_status.as_str(), doc_error.as_str()),
            (status.as_str(), error.as_str()),
            "{}: status / error in docs/reference.md differ from the code",
            r.as_str()
        );
    }
}

/// Every `"fapi_guard_..."` string literal in the crate's sources: metric names are only ever
/// written as literals, so a collector registered anywhere (even one this test does not build)
/// is found.
fn metric_literals() -> BTreeSet<String> {
    fn walk(dir: &Path, out: &mut BTreeSet<String>) {
        let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        for entry in entries {
            let path = entry.expect("dir entry").path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if path.is_dir() {
                if name != "tests" {
                    walk(&path, out);
                }
                continue;
            }
            if !name.ends_with(".rs") || name == "tests.rs" || name.ends_with("_tests.rs") {
                continue;
            }
            let src = std::fs::read_to_string(&path).expect("read source");
            // Unit tests at the bottom of a file may build throwaway collectors.
            let src = src.split("#[cfg(test)]").next().unwrap_or("");
            for piece in src.split('"').skip(1).step_by(2) {
                if piece.starts_with("fapi_guard_")
                    && piece
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
                {
                    out.insert(piece.to_owned());
                }
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"), &mut out);
    out
}

#[test]
fn every_metric_is_documented() {
    let doc = reference();
    let table = rows(&section(&doc, "Metrics"));
    let documented: BTreeSet<String> = table.iter().map(|r| r[0].clone()).collect();
    assert_eq!(documented.len(), table.len(), "a metric is listed twice");
    for r in &table {
        assert!(
            r.len() >= 5 && ["counter", "gauge", "histogram"].contains(&r[1].as_str()),
            "metric row needs name, type, labels, meaning, example query: {r:?}"
        );
        assert!(
            r[4].contains(&r[0]),
            "{}: example query must use the metric",
            r[0]
        );
    }

    // Every family registered on a process's registry, observed or not.
    let metrics = Arc::new(fapi_guard::metrics::Metrics::new());
    fapi_guard::revocation::metrics::RevocationMetrics::new(&metrics).expect("register");
    let registered: BTreeSet<String> = metrics.families().into_iter().map(|(n, _)| n).collect();
    assert!(
        registered.len() >= 19,
        "registry descriptors: {registered:?}"
    );
    diff("registered metrics", &registered, &documented);
    diff("metric names in src/", &metric_literals(), &documented);
}

/// The complete example configuration in the reference.
fn config_block(doc: &str) -> &str {
    let start = doc
        .find("<!-- reference:config -->")
        .expect("config example marker");
    let rest = &doc[start..];
    let body = &rest[rest.find("```yaml\n").expect("yaml fence") + "```yaml\n".len()..];
    &body[..body.find("```").expect("closing fence")]
}

/// Dotted key paths of a YAML document; list items share their list's path.
fn yaml_paths(v: &serde_yaml::Value, prefix: &str, out: &mut BTreeSet<String>) {
    match v {
        serde_yaml::Value::Mapping(m) => {
            for (k, v) in m {
                let k = k.as_str().expect("string keys");
                let path = if prefix.is_empty() {
                    k.to_owned()
                } else {
                    format!("{prefix}.{k}")
                };
                out.insert(path.clone());
                yaml_paths(v, &path, out);
            }
        }
        serde_yaml::Value::Sequence(items) => {
            for item in items {
                yaml_paths(item, prefix, out);
            }
        }
        _ => {}
    }
}

/// Where the configuration's serde structs live. A section type that is not found in these
/// files fails the test (add its file here).
const CONFIG_SOURCES: &[&str] = &[
    "src/config/raw.rs",
    "src/identity.rs",
    "src/dpop.rs",
    "src/audit/config.rs",
    "src/txn_token/config.rs",
    "src/consent/client.rs",
    "src/state/config.rs",
    "src/revocation/config.rs",
    "src/tls.rs",
    "src/token/introspection/config.rs",
    "src/signature/config.rs",
];

/// `struct Name { fields }` of every `deny_unknown_fields` struct in `src`: (key, type) pairs
/// after `#[serde(rename = ...)]` and without `#[serde(skip...)]` fields.
fn serde_structs(src: &str, out: &mut BTreeMap<String, Vec<(String, String)>>) {
    let lines: Vec<&str> = src.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        let Some(name) = line
            .trim_start()
            .strip_prefix("pub struct ")
            .or_else(|| line.trim_start().strip_prefix("struct "))
            .and_then(|r| r.strip_suffix(" {"))
        else {
            continue;
        };
        let attrs = lines[i.saturating_sub(4)..i].join("\n");
        if !attrs.contains("deny_unknown_fields") {
            continue;
        }
        let mut fields = Vec::new();
        let mut rename = None;
        let mut skip = false;
        for f in &lines[i + 1..] {
            let f = f.trim();
            if f == "}" {
                break;
            }
            if f.starts_with("#[serde(") {
                if let Some(r) = f.split("rename = \"").nth(1) {
                    rename = r.split('"').next().map(str::to_owned);
                }
                skip |= f.contains("skip");
                continue;
            }
            let decl = f.strip_prefix("pub ").unwrap_or(f);
            if let Some((key, ty)) = decl.split_once(": ")
                && key.chars().all(|c| c.is_ascii_lowercase() || c == '_')
            {
                if !skip {
                    fields.push((
                        rename.take().unwrap_or_else(|| key.to_owned()),
                        ty.to_owned(),
                    ));
                }
                rename = None;
                skip = false;
            }
        }
        out.insert(name.to_owned(), fields);
    }
}

fn code_paths(
    structs: &BTreeMap<String, Vec<(String, String)>>,
    name: &str,
    prefix: &str,
    out: &mut BTreeSet<String>,
) {
    for (key, ty) in &structs[name] {
        let path = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        out.insert(path.clone());
        for ident in ty.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
            if structs.contains_key(ident) {
                code_paths(structs, ident, &path, out);
            } else {
                assert!(
                    !(ident.starts_with("Raw") || ident.ends_with("Config")),
                    "{path}: type {ident} not found in CONFIG_SOURCES of tests/docs_reference.rs"
                );
            }
        }
    }
}

#[test]
fn every_config_key_is_documented_and_exists() {
    let doc = reference();
    let block = config_block(&doc);

    // Documented → exists: the example goes through the real serde structs, which refuse any
    // unknown key (`deny_unknown_fields` everywhere).
    let parsed: Result<fapi_guard::config::RawConfig, _> =
        fapi_guard::config::parse_yaml(Path::new("docs/reference.md"), block);
    if let Err(e) = parsed {
        panic!("the reference's example configuration does not load: {e}");
    }

    let value: serde_yaml::Value = serde_yaml::from_str(block).expect("yaml");
    let mut documented = BTreeSet::new();
    yaml_paths(&value, "", &mut documented);

    // Exists → documented: every field of every config struct reachable from `RawConfig`.
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut structs = BTreeMap::new();
    for file in CONFIG_SOURCES {
        let src = std::fs::read_to_string(root.join(file)).expect("config source");
        serde_structs(&src, &mut structs);
    }
    let mut code = BTreeSet::new();
    code_paths(&structs, "RawConfig", "", &mut code);
    assert!(code.len() > 60, "parsed too few config keys: {code:?}");
    diff("configuration keys", &code, &documented);
}
