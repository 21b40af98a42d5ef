//! Compilation of raw policies into the route table. Every mistake an API owner can make is a
//! load error naming file, line, column and field, never a request-time surprise.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use aws_lc_rs::digest;
use http::Method;

use super::raw::{RawPolicy, RawRoute};
use super::{Binding, NameIndex, PolicySet, Route};
use crate::config::{InvalidConfig, parse_yaml};
use crate::{path, purpose};

pub(super) fn compile(sources: &[(PathBuf, String)]) -> Result<PolicySet, Vec<InvalidConfig>> {
    let mut errors = Vec::new();
    let mut routes: Vec<Arc<Route>> = Vec::new();
    let mut apis: Vec<Arc<str>> = Vec::new();
    let mut api_files: HashMap<Arc<str>, PathBuf> = HashMap::new();
    // path template → (methods, index of the first route that defined the template)
    let mut templates: Vec<(String, Vec<(Method, usize)>)> = Vec::new();
    let mut template_index: HashMap<String, usize> = HashMap::new();
    let mut names: NameIndex = HashMap::new();
    let mut ctx = digest::Context::new(&digest::SHA256);

    for (file, src) in sources {
        ctx.update(file.to_string_lossy().as_bytes());
        ctx.update(&[0]);
        ctx.update(src.as_bytes());
        ctx.update(&[0]);
        let raw: RawPolicy = match parse_yaml(file, src) {
            Ok(r) => r,
            Err(e) => {
                errors.push(e);
                continue;
            }
        };
        if raw.api.trim().is_empty() || !is_label_safe(&raw.api) {
            errors.push(located(
                file,
                src,
                "api",
                "api:",
                "must be a non-empty name of [A-Za-z0-9_.-]",
            ));
            continue;
        }
        let api: Arc<str> = Arc::from(raw.api.as_str());
        if let Some(other) = api_files.get(&api) {
            errors.push(located(
                file,
                src,
                "api",
                "api:",
                &format!(
                    "api {:?} is already defined in {}",
                    raw.api,
                    other.display()
                ),
            ));
            continue;
        }
        api_files.insert(api.clone(), file.clone());
        apis.push(api.clone());
        let audiences: Option<Arc<[String]>> = raw.audience.map(|a| Arc::from(a.into_vec()));
        let default_scopes = raw.defaults.scopes.unwrap_or_default();
        let default_binding = raw.defaults.binding.unwrap_or_default();
        if let Some(bad) = default_scopes.iter().find(|s| !is_scope_token(s)) {
            errors.push(located(
                file,
                src,
                "defaults.scopes",
                "scopes:",
                &scope_error(bad),
            ));
        }

        for (i, r) in raw.routes.into_iter().enumerate() {
            let field = format!("routes[{i}] ({})", r.name);
            let name_needle = format!("name: {}", r.name);
            let err = |sub: &str, msg: &str| {
                located(file, src, &format!("{field}.{sub}"), &name_needle, msg)
            };
            match compile_route(
                &api,
                r,
                &default_scopes,
                default_binding,
                &audiences,
                raw.mode,
            ) {
                Err((sub, msg)) => errors.push(err(&sub, &msg)),
                Ok(route) => {
                    let key = format!("{}\u{0}{}", route.api, route.name);
                    if names.contains_key(&key) {
                        errors.push(err("name", "duplicate route name in this api"));
                        continue;
                    }
                    let idx = routes.len();
                    let t = *template_index
                        .entry(route.template.clone())
                        .or_insert_with(|| {
                            templates.push((route.template.clone(), Vec::new()));
                            templates.len() - 1
                        });
                    if let Some((_, other)) =
                        templates[t].1.iter().find(|(m, _)| *m == route.method)
                    {
                        let o = &routes[*other];
                        errors.push(err(
                            "path",
                            &format!(
                                "{} {} is already defined by route {:?} of api {:?}",
                                route.method, route.template, o.name, o.api
                            ),
                        ));
                        continue;
                    }
                    templates[t].1.push((route.method.clone(), idx));
                    names.insert(key, (route.api.clone(), route.name.clone()));
                    routes.push(Arc::new(route));
                }
            }
        }
    }

    let mut router = matchit::Router::new();
    let mut methods = Vec::with_capacity(templates.len());
    for (template, ms) in templates {
        let first = &routes[ms[0].1];
        if let Err(e) = router.insert(template.clone(), methods.len()) {
            // matchit refuses templates that could match the same path two ways, e.g.
            // `/a/{id}` beside `/a/{account_id}`: an ambiguous policy is a load error.
            let file = api_files.get(&first.api).cloned().unwrap_or_default();
            let src = sources
                .iter()
                .find(|(f, _)| *f == file)
                .map(|(_, s)| s.as_str())
                .unwrap_or("");
            errors.push(located(
                &file,
                src,
                &format!("route {:?}: path", first.name),
                &format!("name: {}", first.name),
                &format!("ambiguous path {template:?}: {e}"),
            ));
            continue;
        }
        methods.push(ms);
    }

    if !errors.is_empty() {
        return Err(errors);
    }
    let hex: String = ctx
        .finish()
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok(PolicySet {
        routes,
        router,
        methods,
        revision: format!("sha256:{hex}"),
        apis,
    })
}

fn compile_route(
    api: &Arc<str>,
    r: RawRoute,
    default_scopes: &[String],
    default_binding: Binding,
    audiences: &Option<Arc<[String]>>,
    mode: super::Mode,
) -> Result<Route, (String, String)> {
    if r.name.is_empty() || !is_label_safe(&r.name) {
        return Err((
            "name".into(),
            "must be a non-empty name of [A-Za-z0-9_.-]".into(),
        ));
    }
    let method = parse_method(&r.method).ok_or((
        "method".into(),
        format!(
            "{:?} is not one of GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS",
            r.method
        ),
    ))?;
    check_template(&r.path).map_err(|m| ("path".into(), m))?;
    if r.public
        && (r.scopes.is_some()
            || r.binding.is_some()
            || r.consent.is_some()
            || r.delegation.is_some()
            || r.purpose.is_some()
            || r.assurance.is_some())
    {
        return Err((
            "public".into(),
            "a public route takes no token, so scopes, binding, consent, delegation, purpose \
             and assurance make no sense on it"
                .into(),
        ));
    }
    let scopes = r.scopes.unwrap_or_else(|| default_scopes.to_vec());
    if let Some(bad) = scopes.iter().find(|s| !is_scope_token(s)) {
        return Err(("scopes".into(), scope_error(bad)));
    }
    let delegation = r
        .delegation
        .map(|d| d.compile().map_err(|m| ("delegation".into(), m)))
        .transpose()?;
    let purpose = r
        .purpose
        .map(|p| purpose::compile(p).map_err(|m| ("purpose".into(), m)))
        .transpose()?;
    let assurance = r
        .assurance
        .map(|a| a.compile().map_err(|m| ("assurance".into(), m)))
        .transpose()?;
    let consent = match r.consent {
        None => None,
        Some(c) => Some(c.compile(&template_params(&r.path))?),
    };
    Ok(Route {
        api: api.clone(),
        name: Arc::from(r.name.as_str()),
        method,
        template: r.path,
        scopes: scopes.into_iter().map(String::into_boxed_str).collect(),
        binding: r.binding.unwrap_or(default_binding),
        public: r.public,
        audiences: audiences.clone(),
        mode,
        consent,
        delegation,
        purpose,
        assurance,
    })
}

/// The `{name}` / `{*name}` parameter names of a (checked) template.
fn template_params(t: &str) -> Vec<&str> {
    t.split('/')
        .filter_map(|seg| seg.strip_prefix('{')?.strip_suffix('}'))
        .map(|n| n.strip_prefix('*').unwrap_or(n))
        .collect()
}

fn parse_method(m: &str) -> Option<Method> {
    Some(match m {
        "GET" => Method::GET,
        "HEAD" => Method::HEAD,
        "POST" => Method::POST,
        "PUT" => Method::PUT,
        "PATCH" => Method::PATCH,
        "DELETE" => Method::DELETE,
        "OPTIONS" => Method::OPTIONS,
        _ => return None,
    })
}

/// A template is a normalized path whose `{param}` segments are whole segments.
fn check_template(t: &str) -> Result<(), String> {
    let mut probe = String::with_capacity(t.len());
    let segments: Vec<&str> = t.split('/').collect();
    for (i, seg) in segments.iter().enumerate() {
        if i > 0 {
            probe.push('/');
        }
        if let Some(inner) = seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
            let (catch_all, name) = match inner.strip_prefix('*') {
                Some(n) => (true, n),
                None => (false, inner),
            };
            if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                return Err(format!(
                    "parameter {seg:?} must be {{name}} with [A-Za-z0-9_]"
                ));
            }
            if catch_all && i + 1 != segments.len() {
                return Err(format!("catch-all {seg:?} must be the last segment"));
            }
            probe.push('x');
        } else if seg.contains(['{', '}']) {
            return Err(format!(
                "segment {seg:?}: a parameter must be a whole segment"
            ));
        } else {
            probe.push_str(seg);
        }
    }
    match path::normalize(&probe) {
        Ok(n) if n == probe => Ok(()),
        Ok(n) => Err(format!("path must be written normalized (as {n:?})")),
        Err(e) => Err(format!("path is ambiguous ({e:?}); it could never match")),
    }
}

/// RFC 6749 §3.3 scope-token: printable ASCII except space, `"` and `\`.
fn is_scope_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b))
}

fn scope_error(bad: &str) -> String {
    format!("{bad:?} is not a scope token (RFC 6749 §3.3)")
}

/// Names end up as metric labels: keep them to a safe alphabet.
fn is_label_safe(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

/// An error at the first line containing `needle` (serde_yaml gives no spans for values that
/// parsed but failed a semantic check, so we point at the route's `name:` line instead).
fn located(file: &Path, src: &str, field: &str, needle: &str, msg: &str) -> InvalidConfig {
    let err = InvalidConfig::new(file, field, msg);
    for (i, line) in src.lines().enumerate() {
        if let Some(col) = line.find(needle) {
            return err.at(i + 1, col + 1);
        }
    }
    err
}
