//! `fapi-guard inject`: adds the sidecar to Kubernetes manifests (spec §2 platform team, §3).
//!
//! The input is read as multi-document YAML into `serde_yaml::Value` (mappings keep their key
//! order) and written back. Workloads (Deployment, StatefulSet, DaemonSet, ReplicaSet, Job,
//! CronJob, Pod, and `List`s of them) get the sidecar; every other document is written back as
//! it was read (comments and formatting are not kept: YAML values round-trip, text does not).
//! Injecting twice changes nothing. The very same pod transformation serves the admission
//! webhook ([`crate::webhook`]).

mod emit;
mod pod;
mod service;
mod sidecar;

use serde_yaml::{Mapping, Value};

pub use pod::{PodOutcome, inject_pod};
pub use sidecar::{ADMIN_PORT, METRICS_PORT, PROXY_PORT, SIDECAR_NAME};

/// Annotation prefix; the keys below are read from the pod template first, then the workload.
pub const ANNOTATION_PREFIX: &str = "fapi-guard.io/";
/// `fapi-guard.io/inject`: `disabled` (pod label or annotation, workload annotation) opts out;
/// `enabled` opts a pod in (a label, for the webhook's selectors). Any other value is refused.
pub const ANNOTATION_INJECT: &str = "fapi-guard.io/inject";
pub const ANNOTATION_CONFIG: &str = "fapi-guard.io/config";
pub const ANNOTATION_POLICIES: &str = "fapi-guard.io/policies";
pub const ANNOTATION_TLS_SECRET: &str = "fapi-guard.io/tls-secret";
pub const ANNOTATION_UPSTREAM_PORT: &str = "fapi-guard.io/upstream-port";
pub const ANNOTATION_IMAGE: &str = "fapi-guard.io/image";

/// The image used when neither `--image` nor the annotation names one.
pub const DEFAULT_IMAGE: &str =
    concat!("ghcr.io/fapi-guard/fapi-guard:", env!("CARGO_PKG_VERSION"));

/// Defaults for every workload; a workload's annotations override them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InjectOptions {
    pub image: String,
    /// ConfigMap holding `config.yaml`, mounted as a directory at `/etc/fapi-guard/config`.
    pub config_map: String,
    /// ConfigMap holding the policy files, mounted at `/etc/fapi-guard/policies`.
    pub policies_config_map: String,
    /// `kubernetes.io/tls` Secret mounted at `/etc/fapi-guard/tls`.
    pub tls_secret: String,
    /// The port the API listens on (on localhost); `None`: the single declared port, if any.
    pub upstream_port: Option<u16>,
    /// A regular container instead of a native sidecar (clusters before 1.29).
    pub classic: bool,
}

impl Default for InjectOptions {
    fn default() -> Self {
        Self {
            image: DEFAULT_IMAGE.to_owned(),
            config_map: "fapi-guard-config".to_owned(),
            policies_config_map: "fapi-guard-policies".to_owned(),
            tls_secret: "fapi-guard-tls".to_owned(),
            upstream_port: None,
            classic: false,
        }
    }
}

impl InjectOptions {
    /// The flags are held to the same rules as the annotations that override them: object
    /// names are DNS subdomains, the image a reference without spaces, the port not 0.
    pub fn validate(&self) -> Result<(), String> {
        for (flag, v) in [
            ("--config-map", &self.config_map),
            ("--policies", &self.policies_config_map),
            ("--tls-secret", &self.tls_secret),
        ] {
            if !pod::is_dns_subdomain(v) {
                return Err(format!("{flag} {v:?} is not a valid object name"));
            }
        }
        if !is_image_reference(&self.image) {
            return Err(format!(
                "--image {:?} is not an image reference",
                self.image
            ));
        }
        if self.upstream_port == Some(0) {
            return Err("--upstream-port 0 is not a port".to_owned());
        }
        Ok(())
    }
}

/// Non-empty, no whitespace or control characters.
fn is_image_reference(s: &str) -> bool {
    !s.is_empty() && !s.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// Input `inject` will not transform. One line; names the document.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InjectError {
    #[error("not YAML: {0}")]
    NotYaml(String),
    #[error("{at}: {message}")]
    Refused { at: String, message: String },
}

impl InjectError {
    pub(crate) fn refused(at: &str, message: impl Into<String>) -> Self {
        Self::Refused {
            at: at.to_owned(),
            message: message.into(),
        }
    }
}

/// What `inject` produced: the YAML text and the warnings for stderr.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Injected {
    pub yaml: String,
    pub warnings: Vec<String>,
}

/// Where the pod template of a workload kind lives, and the apiVersion it must have.
fn workload(kind: &str) -> Option<(&'static str, &'static [&'static str])> {
    Some(match kind {
        "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet" => {
            ("apps/v1", &["spec", "template"])
        }
        "Job" => ("batch/v1", &["spec", "template"]),
        "CronJob" => ("batch/v1", &["spec", "jobTemplate", "spec", "template"]),
        "Pod" => ("v1", &[]),
        _ => return None,
    })
}

/// Kinds that carry pods but that `inject` does not handle: refused, since passing them through
/// would leave a workload silently unprotected.
const UNSUPPORTED_POD_KINDS: &[&str] = &["ReplicationController", "PodTemplate", "Rollout"];

/// Injects every workload in a multi-document YAML text.
pub fn inject_yaml(input: &str, opts: &InjectOptions) -> Result<Injected, InjectError> {
    let mut docs = Vec::new();
    for de in serde_yaml::Deserializer::from_str(input) {
        let v = <Value as serde::Deserialize>::deserialize(de)
            .map_err(|e| InjectError::NotYaml(e.to_string()))?;
        // An empty document (a stray `---`) carries nothing to keep.
        if !v.is_null() {
            docs.push(v);
        }
    }
    if docs.is_empty() {
        return Err(InjectError::NotYaml("no document in the input".to_owned()));
    }
    let mut warnings = Vec::new();
    let mut targets = Vec::new();
    for (i, doc) in docs.iter_mut().enumerate() {
        inject_document(
            doc,
            &format!("document {}", i + 1),
            opts,
            &mut warnings,
            &mut targets,
        )?;
    }
    for doc in &mut docs {
        service::rewrite(doc, &targets, &mut warnings);
    }
    let mut yaml = String::new();
    for (i, doc) in docs.iter().enumerate() {
        if i > 0 {
            yaml.push_str("---\n");
        }
        let text = emit::document(doc)
            .map_err(|e| InjectError::refused(&format!("document {}", i + 1), e))?;
        yaml.push_str(&text);
    }
    Ok(Injected { yaml, warnings })
}

/// The pods an injected workload creates: what a Service in the same input may point at.
#[derive(Debug, Clone)]
pub struct Target {
    pub labels: Mapping,
    pub upstream_port: Option<u16>,
    /// The sidecar's proxy port name: the API port's former name, or `fg-proxy`.
    pub proxy_port_name: String,
    /// Injected by this run (not found already injected): Services selecting it get warnings
    /// too; on a second run they were given already.
    pub fresh: bool,
}

fn inject_document(
    doc: &mut Value,
    at: &str,
    opts: &InjectOptions,
    warnings: &mut Vec<String>,
    targets: &mut Vec<Target>,
) -> Result<(), InjectError> {
    let Some(map) = doc.as_mapping_mut() else {
        return Err(InjectError::refused(
            at,
            "not a Kubernetes object (expected a mapping)",
        ));
    };
    let kind = str_at(map, "kind").map(str::to_owned);
    let api_version = str_at(map, "apiVersion").map(str::to_owned);
    let (Some(kind), Some(api_version)) = (kind, api_version) else {
        return Err(InjectError::refused(
            at,
            "not a Kubernetes object (no apiVersion or kind)",
        ));
    };
    let at = match map
        .get("metadata")
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str)
    {
        Some(name) => format!("{at} ({kind} {name})"),
        None => format!("{at} ({kind})"),
    };
    // `List` and typed lists (`DeploymentList`, as some tools write them): a list we let through
    // unread could hide a workload.
    if kind == "List" || (kind.ends_with("List") && map.contains_key("items")) {
        let Some(items) = map.get_mut("items").and_then(Value::as_sequence_mut) else {
            return Err(InjectError::refused(&at, "items: expected a list"));
        };
        for (i, item) in items.iter_mut().enumerate() {
            inject_document(item, &format!("{at} items[{i}]"), opts, warnings, targets)?;
        }
        return Ok(());
    }
    let Some((expected_version, template_path)) = workload(&kind) else {
        if UNSUPPORTED_POD_KINDS.contains(&kind.as_str()) || has_pod_template(map) {
            return Err(InjectError::refused(
                &at,
                format!(
                    "unknown kind {kind}: it carries pods but inject only handles Deployment, StatefulSet, DaemonSet, ReplicaSet, Job, CronJob, Pod and List"
                ),
            ));
        }
        return Ok(());
    };
    if api_version != expected_version {
        return Err(InjectError::refused(
            &at,
            format!("unknown kind {kind} in {api_version} (expected {expected_version})"),
        ));
    }
    // A Pod is its own template; a workload's own annotations are the fallback for its pods'.
    let workload_annotations = if template_path.is_empty() {
        None
    } else {
        annotations(map)
    };
    let template = if template_path.is_empty() {
        doc
    } else {
        match get_path_mut(map, template_path) {
            Some(t) => t,
            None => {
                return Err(InjectError::refused(
                    &at,
                    format!("{} missing", template_path.join(".")),
                ));
            }
        }
    };
    let job = matches!(kind.as_str(), "Job" | "CronJob");
    match inject_pod(template, workload_annotations.as_ref(), opts, &at)? {
        PodOutcome::Injected {
            warnings: w,
            target,
        } => {
            if job && opts.classic {
                warnings.push(format!("{at}: a classic sidecar never exits, so this Job will not complete; use a native sidecar (Kubernetes 1.29+)"));
            }
            warnings.extend(w);
            targets.push(target);
        }
        PodOutcome::AlreadyInjected { target } => targets.push(target),
        PodOutcome::OptedOut => {
            warnings.push(format!("{at}: skipped ({ANNOTATION_INJECT}: disabled)"));
        }
    }
    Ok(())
}

/// A kind we do not know whose spec looks like a pod-carrying workload.
fn has_pod_template(map: &Mapping) -> bool {
    map.get("spec")
        .and_then(|s| s.get("template"))
        .and_then(|t| t.get("spec"))
        .and_then(|s| s.get("containers"))
        .is_some()
}

fn annotations(map: &Mapping) -> Option<Mapping> {
    map.get("metadata")
        .and_then(|m| m.get("annotations"))
        .and_then(Value::as_mapping)
        .cloned()
}

pub(crate) fn str_at<'a>(map: &'a Mapping, key: &str) -> Option<&'a str> {
    map.get(key).and_then(Value::as_str)
}

fn get_path_mut<'a>(map: &'a mut Mapping, path: &[&str]) -> Option<&'a mut Value> {
    let (first, rest) = path.split_first()?;
    let mut cur = map.get_mut(*first)?;
    for key in rest {
        cur = cur.get_mut(*key)?;
    }
    Some(cur)
}

/// `fapi-guard inject`: exit 0 with the manifests on stdout and warnings on stderr, or exit 2
/// with one line.
pub fn run_cli(file: Option<&std::path::Path>, opts: &InjectOptions) -> std::process::ExitCode {
    use std::io::Write;
    use std::process::ExitCode;
    let (name, input) = match file {
        None => read_stdin(),
        Some(p) if p.as_os_str() == "-" => read_stdin(),
        Some(p) => (
            p.display().to_string(),
            std::fs::read(p).map_err(|e| format!("cannot read: {e}")),
        ),
    };
    if let Err(e) = opts.validate() {
        eprintln!("fapi-guard inject: {e}");
        return ExitCode::from(2);
    }
    let text =
        input.and_then(|b| String::from_utf8(b).map_err(|_| "not YAML: not UTF-8 text".to_owned()));
    let result = text.and_then(|t| inject_yaml(&t, opts).map_err(|e| e.to_string()));
    match result {
        Ok(out) => {
            for w in &out.warnings {
                eprintln!("fapi-guard inject: warning: {name}: {w}");
            }
            if std::io::stdout().write_all(out.yaml.as_bytes()).is_err() {
                return ExitCode::from(2);
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            // One line: serde_yaml messages may span several.
            let e = e.replace('\n', " ");
            eprintln!("fapi-guard inject: {name}: {e}");
            ExitCode::from(2)
        }
    }
}

fn read_stdin() -> (String, Result<Vec<u8>, String>) {
    use std::io::Read;
    let mut buf = Vec::new();
    let r = std::io::stdin()
        .read_to_end(&mut buf)
        .map(|_| buf)
        .map_err(|e| format!("cannot read: {e}"));
    ("stdin".to_owned(), r)
}

#[cfg(test)]
mod tests;
