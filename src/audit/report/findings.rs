//! From counters to the report: granted vs used per principal, the least-privilege score, and
//! the ranked findings. Every rule here is documented in `docs/audit-report.md`; keep the two
//! in step.

use std::collections::{BTreeMap, BTreeSet};

use super::aggregate::{Aggregator, BUCKETS, Ev, PrincipalAcc};
use super::collect::Checked;
use super::model::*;
use super::{Policies, ReportOptions, stamp};

/// OpenID Connect scopes (OIDC Core §5.4, §11): they ask the authorization server for identity
/// data or refresh tokens, never for an API privilege at this resource server, so they are
/// shown as `ignored` rather than as unused.
pub const OIDC_SCOPES: &[&str] = &[
    "openid",
    "profile",
    "email",
    "address",
    "phone",
    "offline_access",
];

/// Deny reasons that say more than "a bug in the client" when they repeat: asking beyond the
/// grant, replaying proofs, using revoked credentials, stepping outside the consent or the
/// delegation rules.
pub const STANDOUT_REASONS: &[&str] = &[
    "scope_insufficient",
    "dpop_proof_replayed",
    "token_revoked",
    "consent_permission_missing",
    "consent_resource_mismatch",
    "consent_client_mismatch",
    "delegation_not_allowed",
    "delegation_actor_not_allowed",
    "delegation_chain_not_allowed",
    "delegation_depth_exceeded",
    "binding_scheme_mismatch",
    "mtls_certificate_mismatch",
    "dpop_key_mismatch",
];

/// A stand-out reason is a finding from this many denials on.
pub const REPEATED_DENIALS: u64 = 3;
/// Tokens living longer than this are a `high` finding (`medium` above the window limit).
pub const VERY_LONG_LIFETIME_SECS: i64 = 3600;

pub fn finish(
    opts: &ReportOptions,
    policies: &Policies,
    checked: Checked,
    agg: Aggregator<'_>,
) -> Report {
    let mut principals = Vec::new();
    let mut findings = Vec::new();
    for (kind, map) in [("client", &agg.clients), ("actor", &agg.actors)] {
        for (id, p) in map {
            let pr = principal(kind, id, p, policies);
            findings.extend(rules(&pr, p, policies, opts));
            principals.push(pr);
        }
    }
    let score: BTreeMap<(&str, &str), u32> = principals
        .iter()
        .map(|p| ((p.kind, p.id.as_str()), p.score))
        .collect();
    findings.sort_by(|a, b| {
        let sa = score.get(&(a.principal_kind, a.principal.as_str()));
        let sb = score.get(&(b.principal_kind, b.principal.as_str()));
        severity_rank(a.severity)
            .cmp(&severity_rank(b.severity))
            .then(sa.cmp(&sb))
            .then(a.principal.cmp(&b.principal))
            .then(a.code.cmp(b.code))
    });
    for (i, f) in findings.iter_mut().enumerate() {
        f.rank = u32::try_from(i + 1).unwrap_or(u32::MAX);
    }
    let mut deny_reasons: Vec<ReasonCount> = agg
        .reasons
        .iter()
        .map(|(r, n)| ReasonCount {
            reason: r.clone(),
            count: *n,
        })
        .collect();
    deny_reasons.sort_by(|a, b| b.count.cmp(&a.count).then(a.reason.cmp(&b.reason)));
    let since = agg.since_micros();
    let bucket = agg.bucket_micros();
    let buckets = (0..BUCKETS)
        .zip(&agg.timeline)
        .map(|(i, (allow, deny))| Bucket {
            start: stamp::format_micros(since + i * bucket),
            allow: *allow,
            deny: *deny,
        })
        .collect();
    let untrusted_files = checked.untrusted();
    Report {
        report_version: REPORT_VERSION,
        window: Window {
            since: stamp::format_micros(since),
            as_of: stamp::format_micros(opts.as_of_micros),
            seconds: opts.since_secs,
            max_token_lifetime_seconds: opts.max_token_lifetime_secs,
        },
        policies: PolicyInfo {
            revisions: policies.revisions.iter().map(|(r, _)| r.clone()).collect(),
            revisions_seen: agg.revisions_seen.iter().cloned().collect(),
            records_with_other_revision: agg.other_revision,
        },
        integrity: Integrity {
            files: checked.files,
            chains: checked.chains,
            untrusted_files,
        },
        totals: agg.totals.clone(),
        deny_reasons,
        timeline: Timeline {
            bucket_seconds: bucket / 1_000_000,
            buckets,
        },
        principals,
        findings,
    }
}

fn severity_rank(s: &str) -> u8 {
    match s {
        "high" => 0,
        "medium" => 1,
        _ => 2,
    }
}

fn principal(kind: &'static str, id: &str, p: &PrincipalAcc, policies: &Policies) -> Principal {
    let dormant = p.calls == 0 && p.seen.count > 0;
    let mut scope_needs = BTreeSet::new();
    let mut perm_needs = BTreeSet::new();
    let mut routes = Vec::new();
    for (api, by_route) in &p.routes {
        for (route, r) in by_route {
            let mut needed: Option<BTreeSet<String>> = None;
            let mut unbound_allowed = None;
            for &i in &r.revisions {
                if let Some(n) = policies.revisions[i].1.get(api).and_then(|t| t.get(route)) {
                    needed
                        .get_or_insert_default()
                        .extend(n.scopes.iter().cloned());
                    perm_needs.extend(n.permissions.iter().cloned());
                    unbound_allowed = Some(unbound_allowed.unwrap_or(false) || n.unbound_allowed);
                }
            }
            if let Some(n) = &needed {
                scope_needs.extend(n.iter().cloned());
            }
            routes.push(RouteUse {
                api: api.clone(),
                route: route.clone(),
                allows: r.allows,
                denies: r.denies,
                evidence: r.ev.evidence(),
                scopes_needed: needed.map(|n| n.into_iter().collect()),
                unbound_allowed,
            });
        }
    }
    let known = !policies.is_empty();
    let granted_scopes: Vec<String> = if dormant {
        p.scopes_before.iter().cloned().collect()
    } else {
        p.scopes.keys().cloned().collect()
    };
    let granted_perms: Vec<String> = if dormant {
        p.permissions_before.iter().cloned().collect()
    } else {
        p.permissions.keys().cloned().collect()
    };
    let scopes = usage(granted_scopes, known.then_some(&scope_needs), true, |s| {
        policies.routes_needing_scope(s)
    });
    let consent_permissions = usage(granted_perms, known.then_some(&perm_needs), false, |s| {
        policies.routes_needing_permission(s)
    });
    let unbound_share = if p.calls_with_token == 0 {
        0.0
    } else {
        p.unbound.count as f64 / p.calls_with_token as f64
    };
    let tokens = TokenHygiene {
        calls_with_token: p.calls_with_token,
        max_lifetime_seconds: p.max_lifetime,
        long_lived: p.long_lived.evidence(),
        unbound: p.unbound.evidence(),
        unbound_share: (unbound_share * 1000.0).round() / 1000.0,
        unbound_allowed_route_calls: p.unbound_route_calls,
        max_delegation_depth: p.max_depth,
        delegated: p.delegated.evidence(),
        allowed_after_revocation: p.allowed_after_revocation.evidence(),
        denied_after_revocation: p.denied_after_revocation,
    };
    let mut deny_reasons: Vec<ReasonEvidence> = p
        .reasons
        .iter()
        .map(|(r, e)| ReasonEvidence {
            reason: r.clone(),
            evidence: e.evidence(),
        })
        .collect();
    deny_reasons.sort_by(|a, b| {
        b.evidence
            .count
            .cmp(&a.evidence.count)
            .then(a.reason.cmp(&b.reason))
    });
    let score = score(
        dormant,
        known,
        &scopes,
        &consent_permissions,
        p,
        unbound_share,
    );
    Principal {
        kind,
        id: id.to_owned(),
        score,
        dormant,
        seen: p.seen.evidence(),
        calls: p.calls,
        allows: p.allows,
        denies: p.denies,
        calls_before_window: p.before_window,
        scopes,
        consent_permissions,
        routes,
        deny_reasons,
        tokens,
        delegation_peers: p.peers.iter().cloned().collect(),
        calls_as_current_actor: p.as_current_actor,
        calls_as_prior_actor: p.as_prior_actor,
    }
}

fn usage(
    granted: Vec<String>,
    needed: Option<&BTreeSet<String>>,
    scopes: bool,
    needed_by: impl Fn(&str) -> Vec<String>,
) -> Usage {
    let (ignored, granted): (Vec<String>, Vec<String>) = granted
        .into_iter()
        .partition(|s| scopes && OIDC_SCOPES.contains(&s.as_str()));
    let Some(needed) = needed else {
        return Usage {
            granted,
            needed: None,
            used: Vec::new(),
            unused: Vec::new(),
            ignored,
        };
    };
    let used = granted
        .iter()
        .filter(|g| needed.contains(*g))
        .cloned()
        .collect();
    let unused = granted
        .iter()
        .filter(|g| !needed.contains(*g))
        .map(|g| Unused {
            name: g.clone(),
            needed_by: needed_by(g),
        })
        .collect();
    Usage {
        granted,
        needed: Some(needed.iter().cloned().collect()),
        used,
        unused,
        ignored,
    }
}

/// 100 × share of granted privileges (scopes + consent permissions) that the routes called
/// needed, × hygiene factors: long-lived tokens ×0.75, unbound calls ×(1 − share/2), a call
/// allowed after a revocation ×0.5. Dormant: 0 (holds privileges, uses none).
fn score(
    dormant: bool,
    known: bool,
    scopes: &Usage,
    perms: &Usage,
    p: &PrincipalAcc,
    unbound_share: f64,
) -> u32 {
    if dormant {
        return 0;
    }
    let granted = scopes.granted.len() + perms.granted.len();
    let used = scopes.used.len() + perms.used.len();
    let mut s = if !known || granted == 0 {
        1.0
    } else {
        used as f64 / granted as f64
    };
    if p.long_lived.count > 0 {
        s *= 0.75;
    }
    s *= 1.0 - unbound_share / 2.0;
    if p.allowed_after_revocation.count > 0 {
        s *= 0.5;
    }
    (s * 100.0).round().clamp(0.0, 100.0) as u32
}

fn finding(
    pr: &Principal,
    severity: &'static str,
    code: &'static str,
    summary: String,
    items: Vec<String>,
    evidence: &Ev,
) -> Finding {
    Finding {
        rank: 0,
        severity,
        code,
        principal_kind: pr.kind,
        principal: pr.id.clone(),
        summary,
        items,
        evidence: evidence.evidence(),
    }
}

fn rules(
    pr: &Principal,
    p: &PrincipalAcc,
    policies: &Policies,
    opts: &ReportOptions,
) -> Vec<Finding> {
    let mut out = Vec::new();
    let who = format!("{} {}", pr.kind, pr.id);
    if pr.dormant {
        let code = if pr.kind == "actor" {
            "dormant_actor"
        } else {
            "dormant_client"
        };
        let mut items = pr.scopes.granted.clone();
        items.extend(pr.consent_permissions.granted.iter().cloned());
        out.push(finding(
            pr,
            "high",
            code,
            format!(
                "{who} made no call in the window but was seen before: a candidate for offboarding"
            ),
            items,
            &p.seen,
        ));
        return out;
    }
    if !pr.scopes.unused.is_empty() {
        let writes = pr
            .scopes
            .unused
            .iter()
            .any(|u| policies.scope_guards_writes(&u.name));
        let mut ev = Ev::default();
        for u in &pr.scopes.unused {
            if let Some(e) = p.scopes.get(&u.name) {
                ev.merge_max(e);
            }
        }
        out.push(finding(
            pr,
            if writes { "high" } else { "medium" },
            "unused_scopes",
            format!(
                "{who} holds {} of {} scopes that no route it called needs",
                pr.scopes.unused.len(),
                pr.scopes.granted.len()
            ),
            pr.scopes
                .unused
                .iter()
                .map(|u| describe_unused(u, &p.scopes))
                .collect(),
            &ev,
        ));
    }
    if !pr.consent_permissions.unused.is_empty() {
        let mut ev = Ev::default();
        for u in &pr.consent_permissions.unused {
            if let Some(e) = p.permissions.get(&u.name) {
                ev.merge_max(e);
            }
        }
        out.push(finding(
            pr,
            "medium",
            "unused_consent_permissions",
            format!(
                "{who} was granted {} of {} consent permissions that no route it called needs",
                pr.consent_permissions.unused.len(),
                pr.consent_permissions.granted.len()
            ),
            pr.consent_permissions
                .unused
                .iter()
                .map(|u| describe_unused(u, &p.permissions))
                .collect(),
            &ev,
        ));
    }
    if p.allowed_after_revocation.count > 0 {
        out.push(finding(
            pr,
            "high",
            "used_after_revocation",
            format!("{who} had calls allowed after a matching revocation was recorded"),
            Vec::new(),
            &p.allowed_after_revocation,
        ));
    }
    if p.long_lived.count > 0 {
        let max = p.max_lifetime.unwrap_or(0);
        out.push(finding(
            pr,
            if max > VERY_LONG_LIFETIME_SECS {
                "high"
            } else {
                "medium"
            },
            "long_lived_tokens",
            format!(
                "{who} used tokens living up to {max} s (limit {} s)",
                opts.max_token_lifetime_secs
            ),
            vec![format!("max lifetime {max} s")],
            &p.long_lived,
        ));
    }
    if p.unbound.count > 0 {
        out.push(finding(
            pr,
            "medium",
            "unbound_tokens",
            format!(
                "{who} made {} of {} calls with tokens not bound to a key (binding: none)",
                p.unbound.count, p.calls_with_token
            ),
            vec![format!(
                "{} calls on unbound_allowed routes",
                p.unbound_route_calls
            )],
            &p.unbound,
        ));
    }
    let mut repeated = Vec::new();
    let mut ev = Ev::default();
    for (reason, e) in &p.reasons {
        if e.count >= REPEATED_DENIALS && STANDOUT_REASONS.contains(&reason.as_str()) {
            repeated.push(format!("{reason} ×{}", e.count));
            ev.merge(e);
        }
    }
    if !repeated.is_empty() {
        out.push(finding(
            pr,
            "medium",
            "repeated_denials",
            format!("{who} was refused repeatedly for reasons that suggest probing or misuse"),
            repeated,
            &ev,
        ));
    }
    if pr.kind == "client" && p.max_depth > 1 {
        out.push(finding(
            pr,
            "low",
            "deep_delegation",
            format!(
                "{who}'s tokens carry delegation chains {} actors deep: every extra hop is \
                 another party holding its privileges",
                p.max_depth
            ),
            pr.delegation_peers.clone(),
            &p.delegated,
        ));
    }
    out
}

fn describe_unused(u: &Unused, seen: &BTreeMap<String, Ev>) -> String {
    let calls = seen.get(&u.name).map_or(0, |e| e.count);
    if u.needed_by.is_empty() {
        format!("{} (held in {calls} calls; no route needs it)", u.name)
    } else {
        format!(
            "{} (held in {calls} calls; needed by {})",
            u.name,
            u.needed_by.join(", ")
        )
    }
}
