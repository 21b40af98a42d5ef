//! `docs/reference.md` lists exactly the deny reasons, metrics, configuration keys and audit
//! record kinds and fields the code has, `docs/policy.md` exactly the policy keys, and the
//! README's reason table every reason: adding one to the code without documenting it (or
//! documenting one that does not exist) fails here.

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

/// Lists the variants of an enum and fails to compile when the list misses one (the `match` has
/// no wildcard), so a list built with it is complete by construction.
macro_rules! every_variant {
    ($enum:ident: $($variant:ident),+ $(,)?) => {{
        #[allow(dead_code)]
        fn exhaustive(x: $enum) {
            match x {
                $($enum::$variant)|+ => {}
            }
        }
        vec![$($enum::$variant),+]
    }};
}

/// `DenyReason::ALL` is a hand-written list: a variant left out of it would escape every test
/// that walks it (the reference, the README, the policy schema's reason list).
#[test]
fn deny_reason_all_lists_every_variant() {
    let every = every_variant!(DenyReason:
        RouteNotFound, RequestMalformed, RequestTooLarge, HeadersTooLarge, TokenMissing,
        TokenMalformed, TokenSignatureInvalid, TokenExpired, TokenNotYetValid,
        TokenLifetimeExceeded, TokenAlgorithmRejected, TokenIssuerUnknown, TokenAudienceMismatch,
        TokenTypeInvalid, TokenRevoked, TokenInactive, BindingMissing, BindingSchemeMismatch,
        DpopProofMissing, DpopProofInvalid, DpopProofReplayed, DpopProofStale, DpopHtmMismatch,
        DpopHtuMismatch, DpopAthMismatch, DpopKeyMismatch, DpopNonceRequired,
        MtlsCertificateMissing, MtlsCertificateMismatch, ScopeInsufficient, ConsentMissing,
        ConsentNotAuthorised, ConsentExpired, ConsentRevoked, ConsentClientMismatch,
        ConsentPermissionMissing, ConsentResourceMismatch, ConsentBodyMismatch,
        DelegationNotAllowed, DelegationDepthExceeded, DelegationActorNotAllowed,
        DelegationChainNotAllowed, DelegationMalformed, DelegationScopeEscalation,
        PurposeNotAllowed, AssuranceInsufficient, SignatureMissing, SignatureInvalid,
        SignatureStale, ContentDigestMismatch, DependencyUnavailable,
    );
    let every: BTreeSet<&str> = every.iter().map(|r| r.as_str()).collect();
    let all: BTreeSet<&str> = DenyReason::ALL.iter().map(|r| r.as_str()).collect();
    assert_eq!(
        all.len(),
        DenyReason::ALL.len(),
        "DenyReason::ALL repeats a reason"
    );
    assert_eq!(
        all, every,
        "DenyReason::ALL (src/reason.rs) misses a variant"
    );
}

/// The README's reason table names every reason (`consent_*` with the right count).
#[test]
fn readme_reason_table_names_every_reason() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md");
    let readme = std::fs::read_to_string(&path).expect("README.md");
    let table: Vec<&str> = readme
        .lines()
        .skip_while(|l| *l != "## Deny reasons")
        .take_while(|l| !l.starts_with("## Consent"))
        .filter(|l| l.starts_with("| `"))
        .collect();
    assert!(table.len() > 10, "README has a `## Deny reasons` table");
    // The code spans of each row's first cell.
    let named: BTreeSet<&str> = table
        .iter()
        .filter_map(|row| row.trim_start_matches('|').split(" | ").next())
        .flat_map(|cell| cell.split('`').skip(1).step_by(2))
        .collect();
    let consent: Vec<&str> = DenyReason::ALL
        .iter()
        .map(|r| r.as_str())
        .filter(|r| r.starts_with("consent_"))
        .collect();
    let wildcard = format!("`consent_*` ({} reasons", consent.len());
    let mut missing = Vec::new();
    for r in DenyReason::ALL {
        let code = r.as_str();
        let covered =
            named.contains(code) || (code.starts_with("consent_") && readme.contains(&wildcard));
        if !covered {
            missing.push(code);
        }
    }
    assert!(
        missing.is_empty(),
        "README.md's reason table lacks {missing:?} (or `consent_*` has the wrong count, want {wildcard:?})"
    );
    let families = [
        "route_",
        "request_",
        "headers_",
        "token_",
        "binding_",
        "dpop_",
        "mtls_",
        "scope_",
        "consent_",
        "delegation_",
        "purpose_",
        "assurance_",
        "dependency_",
    ];
    let all: BTreeSet<&str> = DenyReason::ALL.iter().map(|r| r.as_str()).collect();
    let phantom: Vec<&&str> = named
        .iter()
        .filter(|c| families.iter().any(|f| c.starts_with(f)) && **c != "consent_*")
        .filter(|c| !all.contains(**c))
        .collect();
    assert!(
        phantom.is_empty(),
        "README.md names reasons the code does not have: {phantom:?}"
    );
}

/// The lines of the `### {title}…` subsection of `lines`.
fn subsection<'a>(lines: &[&'a str], title: &str) -> Vec<&'a str> {
    let heading = format!("### {title}");
    let mut it = lines.iter().skip_while(|l| !l.starts_with(&heading));
    assert!(it.next().is_some(), "docs/reference.md has no {heading:?}");
    it.take_while(|l| !l.starts_with("### ")).copied().collect()
}

/// Every key of a JSON value: `a`, `a.b` for objects, `a[].b` for arrays of objects.
fn json_paths(v: &serde_json::Value, prefix: &str, out: &mut BTreeSet<String>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, x) in m {
                let path = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                out.insert(path.clone());
                json_paths(x, &path, out);
            }
        }
        serde_json::Value::Array(a) => {
            for x in a {
                json_paths(x, &format!("{prefix}[]"), out);
            }
        }
        _ => {}
    }
}

#[tokio::test]
async fn every_audit_record_kind_and_field_is_documented() {
    use fapi_guard::audit::{
        Actor, AuditLog, AuditRecord, AuditSettings, ConsentInfo, RecordKind, RevocationInfo,
        SignatureInfo, SinkSettings, TokenInfo,
    };
    // Every field set, so every nested field shows up in the written line.
    let signature = || SignatureInfo {
        label: "sig1".to_owned(),
        keyid: "k1".to_owned(),
        alg: "ecdsa-p256-sha256".to_owned(),
        tag: Some("fapi-2-request".to_owned()),
        components: vec!["@method".to_owned()],
        created: 1,
        expires: Some(2),
        value: "c2ln".to_owned(),
        base_sha256: "digest".to_owned(),
        base_sha512: Some("digest512".to_owned()),
        content_digest: Some("sha-256=:x:".to_owned()),
    };
    let doc = reference();
    let audit = section(&doc, "Audit record");

    // Kinds, both ways.
    let kinds =
        every_variant!(RecordKind: Decision, Outcome, Revocation, PolicyReload, TxnTokenIssued);
    let code: BTreeSet<String> = kinds.iter().map(|k| k.as_str().to_owned()).collect();
    let documented: BTreeSet<String> = rows(&subsection(&audit, "Kinds"))
        .into_iter()
        .map(|r| r[0].clone())
        .collect();
    diff("audit record kinds", &code, &documented);

    // Fields, both ways: a record with every field set (a struct literal, so a new field fails
    // to compile here until it is set), written by the real writer, which adds the chain header.
    let some = |s: &str| Some(s.to_owned());
    let record = AuditRecord {
        kind: RecordKind::Decision,
        interaction_id: some("iid"),
        trace_id: some("trace"),
        txn: some("txn"),
        api: some("api"),
        route: some("route"),
        method: some("GET"),
        path: some("/p"),
        raw_path: some("/%70"),
        decision: Some(fapi_guard::audit::record::Verdict::Deny),
        reason: Some(Some("scope_insufficient")),
        mode: Some("audit"),
        enforced: Some(false),
        client_id: some("client"),
        subject: some("sub"),
        issuer: some("iss"),
        token: Some(TokenInfo {
            jti: some("jti"),
            sha256: "digest".to_owned(),
            exp: Some(2),
            iat: Some(1),
            binding: "dpop",
            jkt: some("jkt"),
        }),
        consent: Some(ConsentInfo {
            id: "c-1".to_owned(),
            source: "record",
            status: some("Authorised"),
            permissions: Some(vec!["ReadAccountsBasic".to_owned()]),
        }),
        delegation: Some(vec![Actor {
            sub: "actor".to_owned(),
            client_id: some("actor-client"),
            iss: some("actor-iss"),
        }]),
        purpose: some("purpose"),
        scopes: Some(vec!["accounts".to_owned()]),
        signature: Some(signature()),
        policy_revision: some("sha256:x"),
        decide_us: Some(3),
        status: Some(403),
        duration_us: Some(4),
        upstream_error: some("connect"),
        cancelled: Some(false),
        response_signature: Some(signature()),
        revocation: Some(RevocationInfo {
            kind: "jti",
            value_sha256: "digest".to_owned(),
            source: "admin",
            until: Some(5),
        }),
        result: Some("ok"),
        error: some("error"),
    };
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("audit.jsonl");
    let settings = AuditSettings {
        sink: SinkSettings::File {
            path: path.clone(),
            rotate_bytes: None,
        },
        ..AuditSettings::stdout()
    };
    let metrics = Arc::new(fapi_guard::metrics::Metrics::new());
    let log =
        AuditLog::start(settings, metrics, fapi_guard::clock::Clock::system()).expect("writer");
    log.record(record).await.expect("recorded");
    log.shutdown().await;
    let line = std::fs::read_to_string(&path).expect("trail");
    let value: serde_json::Value = serde_json::from_str(line.trim()).expect("one JSON line");
    let mut code = BTreeSet::new();
    json_paths(&value, "", &mut code);
    assert!(code.len() > 45, "every field set: {code:?}");
    let documented: BTreeSet<String> = rows(&subsection(&audit, "Fields"))
        .into_iter()
        .map(|r| r[0].clone())
        .collect();
    diff("audit record fields", &code, &documented);
}

/// Policy keys (`docs/policy.md`) against `policies/schema.json`, which is generated from the
/// policy parser's own types (and kept current by `tests/policy_schema.rs`). Every key of the
/// schema appears in one of the doc's YAML examples; every key written in block style there is
/// one of the schema's (flow maps like `token: {sub: ...}` hold free-form claims, not keys).
#[test]
fn every_policy_key_is_documented_and_exists() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let schema: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("policies/schema.json")).expect("schema"),
    )
    .expect("schema JSON");
    fn properties(v: &serde_json::Value, out: &mut BTreeSet<String>) {
        match v {
            serde_json::Value::Object(m) => {
                for (k, x) in m {
                    if k == "properties"
                        && let Some(props) = x.as_object()
                    {
                        out.extend(props.keys().cloned());
                    }
                    properties(x, out);
                }
            }
            serde_json::Value::Array(a) => a.iter().for_each(|x| properties(x, out)),
            _ => {}
        }
    }
    let mut code = BTreeSet::new();
    properties(&schema, &mut code);
    assert!(code.len() > 30, "schema properties: {code:?}");

    let doc = std::fs::read_to_string(root.join("docs/policy.md")).expect("policy.md");
    let (mut block_keys, mut any_keys) = (BTreeSet::new(), BTreeSet::new());
    let mut in_yaml = false;
    let is_key = |k: &str| {
        !k.is_empty()
            && k.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
            && k.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    };
    for line in doc.lines() {
        if line.starts_with("```") {
            in_yaml = line == "```yaml";
            continue;
        }
        if !in_yaml {
            continue;
        }
        let code_part = line.split(" #").next().unwrap_or("");
        let trimmed = code_part.trim_start().trim_start_matches("- ");
        if let Some((k, _)) = trimmed.split_once(':')
            && is_key(k)
        {
            block_keys.insert(k.to_owned());
        }
        // Flow-style keys: `{key: ...}` and `, key: ...`.
        for piece in code_part.split(['{', ',']).skip(1) {
            if let Some((k, _)) = piece.trim_start().split_once(':')
                && is_key(k)
            {
                any_keys.insert(k.to_owned());
            }
        }
    }
    any_keys.extend(block_keys.iter().cloned());
    let undocumented: Vec<_> = code.difference(&any_keys).collect();
    let phantom: Vec<_> = block_keys.difference(&code).collect();
    assert!(
        undocumented.is_empty() && phantom.is_empty(),
        "docs/policy.md is out of date:\n  in the schema, not in the doc's YAML: {undocumented:?}\n  \
         in the doc's YAML, not in the schema: {phantom:?}"
    );
}
