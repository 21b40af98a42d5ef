//! Warnings for policies that compile but are probably not what the author meant
//! (`fapi-guard policy check`; `--strict` makes them errors).

use std::path::PathBuf;
use std::sync::Arc;

use http::Method;

use super::compile::Compiled;
use super::{Binding, Mode, Route};
use crate::config::InvalidConfig;

/// Every warning for the routes that compiled, in file and line order.
pub(super) fn warnings(sources: &[(PathBuf, String)], c: &Compiled) -> Vec<InvalidConfig> {
    let mut out = Vec::new();
    for (file_idx, audit) in c.audit_files.iter().enumerate() {
        if *audit {
            out.push(
                InvalidConfig::new(
                    &sources[file_idx].0,
                    "mode",
                    "audit forwards requests that would be denied; switch to enforce once \
                     fapi_guard_requests_total{decision=\"audit_deny\"} stays at 0",
                )
                .locate(&c.marks[file_idx]),
            );
        }
    }
    for (route, o) in &c.routes {
        let at = |sub: &str, msg: String| {
            let field = format!("routes[{}] ({}).{sub}", o.index, route.name);
            let plain = format!("routes[{}].{sub}", o.index);
            let marks = &c.marks[o.file];
            let e = InvalidConfig::new(&sources[o.file].0, field, msg);
            // A setting inherited from `defaults` is pointed at there.
            match (marks.value(&plain), marks.value(&format!("defaults.{sub}"))) {
                (None, Some(p)) => e.at(p.line, p.column),
                _ => e.locate(marks),
            }
        };
        if !route.public && route.binding == Binding::UnboundAllowed {
            out.push(at(
                "binding",
                "unbound_allowed accepts bearer tokens anyone who steals them can replay; FAPI 2.0 \
                 requires sender-constrained tokens (DPoP or mTLS)"
                    .into(),
            ));
        }
        if route.public && route.method != Method::GET && route.method != Method::HEAD {
            out.push(at(
                "public",
                format!(
                    "a public {} route lets anyone change state without a token",
                    route.method
                ),
            ));
        }
        if route
            .delegation
            .as_ref()
            .is_some_and(|d| d.actors.is_empty())
        {
            out.push(at(
                "delegation",
                "no actors: every delegated token is refused, as without the section; list the \
                 actors or remove it"
                    .into(),
            ));
        }
        if route.consent.is_some() && route.scopes.is_empty() && !route.public {
            out.push(at(
                "consent",
                "a consent rule on a route that requires no scope: any token of the client whose \
                 consent it names is enough; add scopes"
                    .into(),
            ));
        }
        if route.mode == Mode::Audit && !c.audit_files[o.file] {
            out.push(at(
                "mode",
                "audit forwards requests that would be denied; switch to enforce once \
                 fapi_guard_requests_total{decision=\"audit_deny\"} stays at 0 for this route"
                    .into(),
            ));
        }
    }
    out.extend(shadowed(sources, c));
    out.sort_by(|a, b| (&a.file, a.line, a.column).cmp(&(&b.file, b.line, b.column)));
    out
}

/// A route whose template also matches the paths of a more specific template loses those
/// paths: the router prefers static segments, so they go to the other template's route for
/// the same method, or are `route_not_found` when that template has no route for the method.
fn shadowed(sources: &[(PathBuf, String)], c: &Compiled) -> Vec<InvalidConfig> {
    let mut out = Vec::new();
    for (general, go) in &c.routes {
        let mut seen: Vec<&str> = Vec::new();
        for (specific, _) in &c.routes {
            let t = specific.template.as_str();
            if t == general.template || seen.contains(&t) || !specializes(t, &general.template) {
                continue;
            }
            seen.push(t);
            let same_method: Option<&Arc<Route>> = c
                .routes
                .iter()
                .map(|(r, _)| r)
                .find(|r| r.template == t && r.method == general.method);
            let msg = match same_method {
                Some(r) => format!(
                    "shadowed for {} {t}: route {:?} takes those requests (static segments win)",
                    general.method, r.name
                ),
                None => format!(
                    "shadowed for {} {t}: that path belongs to route {:?}, which has no {} \
                     route, so such requests get route_not_found instead of reaching this route",
                    general.method, specific.name, general.method
                ),
            };
            out.push(
                InvalidConfig::new(
                    &sources[go.file].0,
                    format!("routes[{}] ({}).path", go.index, general.name),
                    msg,
                )
                .locate(&c.marks[go.file]),
            );
        }
    }
    out
}

/// Whether every path `specific` matches is also matched by `general` (segment by segment: a
/// `{param}` matches any one segment, `{*rest}` the rest).
fn specializes(specific: &str, general: &str) -> bool {
    let (s, g): (Vec<&str>, Vec<&str>) =
        (specific.split('/').collect(), general.split('/').collect());
    // At least one segment more specific, else the two are the same shape (which the router
    // refuses as ambiguous, reported as an error).
    let mut narrower = false;
    for (i, gs) in g.iter().enumerate() {
        if gs.starts_with("{*") {
            return s.len() > i && !s[i].starts_with("{*");
        }
        let Some(ss) = s.get(i) else { return false };
        let g_param = gs.starts_with('{');
        let s_param = ss.starts_with('{');
        if s_param && !g_param {
            return false;
        }
        if !g_param && ss != gs {
            return false;
        }
        narrower |= g_param && !s_param;
    }
    narrower && s.len() == g.len()
}

#[cfg(test)]
mod tests {
    use super::specializes;

    #[test]
    fn specialization_by_segments() {
        assert!(specializes("/a/me", "/a/{id}"));
        assert!(specializes("/a/me/x", "/a/{*rest}"));
        assert!(!specializes("/a/{id}", "/a/me"));
        assert!(!specializes("/a/me/x", "/a/{id}"));
        assert!(!specializes("/b/me", "/a/{id}"));
        assert!(!specializes("/a/{account_id}", "/a/{id}"));
    }
}
