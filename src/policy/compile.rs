//! Compilation of raw policies into the route table. Every mistake an API owner can make is a
//! load error naming file, line, column and field, never a request-time surprise.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use aws_lc_rs::digest;
use http::Method;

use super::raw::{RawPolicy, RawRoute};
use super::{Binding, Mode, PolicySet, Route};
use crate::config::{InvalidConfig, Marks, parse_yaml_list, plain_path};
use crate::{path, purpose};

/// Where a compiled route came from: its file (index into the sources) and position in
/// `routes`, for errors and warnings that point at it.
#[derive(Debug, Clone, Copy)]
pub(super) struct Origin {
    pub file: usize,
    pub index: usize,
}

/// Everything compilation learnt: the route table or every error, and what `policy check`
/// needs to point at routes (positions per file, origin per route) for its warnings.
pub(super) struct Compiled {
    pub result: Result<PolicySet, Vec<InvalidConfig>>,
    /// Routes that compiled, whether or not the whole set did.
    pub routes: Vec<(Arc<Route>, Origin)>,
    pub marks: Vec<Marks>,
    /// Per file, whether `mode: audit` was written at the policy level.
    pub audit_files: Vec<bool>,
}

pub(super) fn compile(sources: &[(PathBuf, String)]) -> Result<PolicySet, Vec<InvalidConfig>> {
    compile_all(sources).result
}

pub(super) fn compile_all(sources: &[(PathBuf, String)]) -> Compiled {
    let mut errors = Vec::new();
    let mut routes: Vec<Arc<Route>> = Vec::new();
    let mut origins: Vec<Origin> = Vec::new();
    let mut all_marks: Vec<Marks> = Vec::new();
    let mut audit_files = Vec::new();
    let mut apis: Vec<Arc<str>> = Vec::new();
    let mut api_files: HashMap<Arc<str>, PathBuf> = HashMap::new();
    // path template → (methods, index of the first route that defined the template)
    let mut templates: Vec<(String, Vec<(Method, usize)>)> = Vec::new();
    let mut template_index: HashMap<String, usize> = HashMap::new();
    let mut names: HashMap<String, Origin> = HashMap::new();
    let mut ctx = digest::Context::new(&digest::SHA256);

    for (file_idx, (file, src)) in sources.iter().enumerate() {
        ctx.update(file.to_string_lossy().as_bytes());
        ctx.update(&[0]);
        ctx.update(src.as_bytes());
        ctx.update(&[0]);
        let parsed = parse_yaml_list::<RawPolicy, RawRoute>(file, src, "routes");
        errors.extend(parsed.errors);
        let partial = parsed.partial;
        let (raw, marks, kept) = match parsed.value {
            Some(r) => (r, parsed.marks, parsed.kept),
            None => {
                all_marks.push(Marks::default());
                audit_files.push(false);
                continue;
            }
        };
        all_marks.push(Marks::default());
        audit_files.push(raw.mode == Mode::Audit);
        let at = |field: &str, msg: &str| InvalidConfig::new(file, field, msg).locate(&marks);
        if raw.api.trim().is_empty() || !is_label_safe(&raw.api) {
            errors.push(at("api", "must be a non-empty name of [A-Za-z0-9_.-]"));
            all_marks[file_idx] = marks;
            continue;
        }
        let api: Arc<str> = Arc::from(raw.api.as_str());
        if let Some(other) = api_files.get(&api) {
            errors.push(at(
                "api",
                &format!(
                    "api {:?} is already defined in {}",
                    raw.api,
                    other.display()
                ),
            ));
            all_marks[file_idx] = marks;
            continue;
        }
        api_files.insert(api.clone(), file.clone());
        apis.push(api.clone());
        let audiences: Option<Arc<[String]>> = raw.audience.map(|a| Arc::from(a.into_vec()));
        let default_scopes = raw.defaults.scopes.unwrap_or_default();
        let default_binding = raw.defaults.binding.unwrap_or_default();
        if let Some(i) = default_scopes.iter().position(|s| !is_scope_token(s)) {
            errors.push(at(
                &format!("defaults.scopes[{i}]"),
                &scope_error(&default_scopes[i]),
            ));
        }

        // An error in route `i`, at its sub-field `sub`.
        let route_err = |i: usize, name: &str, sub: &str, msg: &str| {
            // Sub-rule messages start with their own field (`max_depth: …`): point there.
            let (sub, msg) = match msg.split_once(": ") {
                Some((f, rest))
                    if !f.contains(' ')
                        && marks
                            .value(&format!("routes[{i}].{sub}.{}", plain_path(f)))
                            .is_some() =>
                {
                    (format!("{sub}.{f}"), rest)
                }
                _ => (sub.to_owned(), msg),
            };
            at(&format!("routes[{i}] ({name}).{sub}"), msg)
        };
        // Routes that failed to parse, minus the members in error: their other mistakes. A
        // section a member was taken out of is skipped (its errors may come from that).
        for p in partial {
            let Ok(r) = serde_yaml::from_value::<RawRoute>(p.value) else {
                continue;
            };
            let name = r.name.clone();
            let top = |f: &str| f.split(['.', '[']).next().unwrap_or("").to_owned();
            let cut: Vec<String> = p.removed.iter().map(|f| top(f)).collect();
            if let Err(errs) = compile_route(
                &api,
                r,
                &default_scopes,
                default_binding,
                &audiences,
                raw.mode,
            ) {
                errors.extend(
                    errs.iter()
                        .filter(|(sub, _)| !cut.contains(&top(sub)))
                        .map(|(sub, msg)| route_err(p.index, &name, sub, msg)),
                );
            }
        }
        for (r, &i) in raw.routes.into_iter().zip(&kept) {
            let name = r.name.clone();
            let err = |sub: &str, msg: &str| route_err(i, &name, sub, msg);
            match compile_route(
                &api,
                r,
                &default_scopes,
                default_binding,
                &audiences,
                raw.mode,
            ) {
                Err(errs) => errors.extend(errs.iter().map(|(sub, msg)| err(sub, msg))),
                Ok(route) => {
                    let key = format!("{}\u{0}{}", route.api, route.name);
                    if let Some(first) = names.get(&key) {
                        let line = marks
                            .value(&format!("routes[{}].name", first.index))
                            .map_or(String::new(), |p| format!(" (line {})", p.line));
                        errors.push(err(
                            "name",
                            &format!(
                                "duplicate route name {:?}: routes[{}]{line} already has it",
                                route.name, first.index
                            ),
                        ));
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
                    names.insert(
                        key,
                        Origin {
                            file: file_idx,
                            index: i,
                        },
                    );
                    routes.push(Arc::new(route));
                    origins.push(Origin {
                        file: file_idx,
                        index: i,
                    });
                }
            }
        }
        all_marks[file_idx] = marks;
    }

    let mut router = matchit::Router::new();
    let mut methods = Vec::with_capacity(templates.len());
    let mut inserted: HashMap<String, usize> = HashMap::new();
    for (template, ms) in templates {
        let first = ms[0].1;
        if let Err(e) = router.insert(template.clone(), methods.len()) {
            // matchit refuses templates that could match the same path two ways, e.g.
            // `/a/{id}` beside `/a/{account_id}`: an ambiguous policy is a load error, named
            // in the author's terms (both routes), not the router's.
            let other = match &e {
                matchit::InsertError::Conflict { with } => {
                    inserted.get(with).map(|&o| (with.clone(), o))
                }
                _ => None,
            };
            let (r, o) = (&routes[first], origins[first]);
            let (file, _) = &sources[o.file];
            let msg = match other {
                Some((with, oi)) => {
                    let (or, oo) = (&routes[oi], origins[oi]);
                    let where_ =
                        match all_marks[oo.file].value(&format!("routes[{}].path", oo.index)) {
                            Some(p) => {
                                format!("{}:{}:{}", sources[oo.file].0.display(), p.line, p.column)
                            }
                            None => sources[oo.file].0.display().to_string(),
                        };
                    format!(
                        "path {template} overlaps path {with} of route {:?} ({where_}): a request \
                         such as {} could match both; use one parameter name or a static segment",
                        or.name,
                        example_path(&template),
                    )
                }
                None => format!("path {template} cannot be added to the route table: {e}"),
            };
            errors.push(
                InvalidConfig::new(file, format!("routes[{}] ({}).path", o.index, r.name), msg)
                    .locate(&all_marks[o.file]),
            );
            continue;
        }
        inserted.insert(template, first);
        methods.push(ms);
    }

    let compiled: Vec<(Arc<Route>, Origin)> = routes
        .iter()
        .cloned()
        .zip(origins.iter().copied())
        .collect();
    let result = if errors.is_empty() {
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
    } else {
        errors.sort_by(|a, b| (&a.file, a.line, a.column).cmp(&(&b.file, b.line, b.column)));
        Err(errors)
    };
    Compiled {
        result,
        routes: compiled,
        marks: all_marks,
        audit_files,
    }
}

/// A request path a template matches, for messages (`{x}` → `x`).
fn example_path(template: &str) -> String {
    template
        .split('/')
        .map(
            |seg| match seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                Some(name) => name.trim_start_matches('*').to_owned(),
                None => seg.to_owned(),
            },
        )
        .collect::<Vec<_>>()
        .join("/")
}

/// Compiles one route, reporting every mistake in it: `(field, message)` each.
fn compile_route(
    api: &Arc<str>,
    r: RawRoute,
    default_scopes: &[String],
    default_binding: Binding,
    audiences: &Option<Arc<[String]>>,
    mode: Mode,
) -> Result<Route, Vec<(String, String)>> {
    let mut errs: Vec<(String, String)> = Vec::new();
    if r.name.is_empty() || !is_label_safe(&r.name) {
        errs.push((
            "name".into(),
            "must be a non-empty name of [A-Za-z0-9_.-]".into(),
        ));
    }
    let method = parse_method(&r.method);
    if method.is_none() {
        errs.push((
            "method".into(),
            format!(
                "{:?} is not one of GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS",
                r.method
            ),
        ));
    }
    let template_ok = match check_template(&r.path) {
        Ok(()) => true,
        Err(m) => {
            errs.push(("path".into(), m));
            false
        }
    };
    if r.public
        && (r.scopes.is_some()
            || r.binding.is_some()
            || r.consent.is_some()
            || r.delegation.is_some()
            || r.purpose.is_some()
            || r.assurance.is_some())
    {
        errs.push((
            "public".into(),
            "a public route takes no token, so scopes, binding, consent, delegation, purpose \
             and assurance make no sense on it"
                .into(),
        ));
    }
    let scopes = r.scopes.unwrap_or_else(|| default_scopes.to_vec());
    for (i, s) in scopes.iter().enumerate() {
        if !is_scope_token(s) {
            errs.push((format!("scopes[{i}]"), scope_error(s)));
        }
    }
    let delegation = r
        .delegation
        .map(|d| section(&mut errs, "delegation", d.compile()));
    let purpose = r
        .purpose
        .map(|p| section(&mut errs, "purpose", purpose::compile(p)));
    let assurance = r
        .assurance
        .map(|a| section(&mut errs, "assurance", a.compile()));
    // Consent rules name path parameters: only a checked template has them.
    let consent = match r.consent {
        Some(c) if template_ok => match c.compile(&template_params(&r.path)) {
            Ok(c) => Some(Some(c)),
            Err(e) => {
                errs.push(e);
                None
            }
        },
        Some(_) => None,
        None => Some(None),
    };
    let signatures = r
        .signatures
        .map(|s| section(&mut errs, "signatures", s.compile(r.public)));
    // Without errors every part compiled (`None` arms above push an error).
    let (Some(method), Some(consent), true) = (method, consent, errs.is_empty()) else {
        return Err(errs);
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
        mode: r.mode.unwrap_or(mode),
        consent,
        delegation: delegation.flatten(),
        purpose: purpose.flatten(),
        assurance: assurance.flatten(),
        signatures: signatures.flatten().unwrap_or_default(),
    })
}

/// A compiled section, or `None` with its error recorded.
fn section<T>(errs: &mut Vec<(String, String)>, field: &str, r: Result<T, String>) -> Option<T> {
    match r {
        Ok(v) => Some(v),
        Err(m) => {
            errs.push((field.into(), m));
            None
        }
    }
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
