//! `fapi-guard policy test --coverage`: which routes no case exercises, which deny reasons a
//! route can produce (by what its policy says) that no case expects, and which policy files no
//! test file names at all.
//!
//! What a route can produce is read off the compiled route by [`reach`], one answer per deny
//! reason: an exhaustive `match` over [`DenyReason`] and a destructuring of [`Route`] (and of
//! each rule) without `..`, so a new reason or a new policy field does not compile until someone
//! decides what it means for coverage. A unit test (`coverage/tests.rs`) checks the answers
//! against `decide` itself: it perturbs every passing case of the shipped and the fixture
//! policies' tests and requires that no perturbation produces a reason `reach` calls
//! [`Reach::Never`], and that each reason it calls [`Reach::Policy`] is produced by some
//! perturbation.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use super::testing::{self, CaseResult, FileRun};
use super::{Binding, PolicySet, Route};
use crate::config::InvalidConfig;
use crate::consent::{ConsentRule, RarRule, RecordRule};
use crate::decide::Decision;
use crate::delegation::{DelegationRule, Pattern};
use crate::reason::DenyReason;

/// Whether, and why, a route can produce a deny reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    /// The route's policy makes the reason possible and a `*_test.yaml` case can produce it:
    /// coverage counts it.
    Policy,
    /// Possible on this route, but not because of what its policy says (token validity, request
    /// hygiene, proof and certificate checks, a dependency down). The proxy's own tests cover
    /// it; a test-file fixture stands for a valid proof or certificate and cannot show most of
    /// these anyway.
    Elsewhere,
    /// The route can never produce it.
    Never,
}

/// Whether `route` can produce `reason`, read off the compiled route.
pub fn reach(route: &Route, reason: DenyReason) -> Reach {
    use DenyReason as R;
    use Reach::{Elsewhere, Never, Policy};
    let Route {
        api: _,
        name: _,
        method: _,
        template: _,
        mode: _,
        scopes,
        binding,
        public,
        audiences,
        delegation,
        purpose,
        assurance,
        consent,
        signatures,
    } = route;
    if *public {
        // `decide` allows a public route before it looks at anything.
        return Never;
    }
    let when = |policy: bool| if policy { Policy } else { Never };
    let record = match consent {
        Some(ConsentRule::Record(r)) => Some(r),
        _ => None,
    };
    let rar = match consent {
        Some(ConsentRule::Rar(r)) => Some(r),
        _ => None,
    };
    let depth = delegation.as_ref().map_or(0, |d| d.max_depth);
    match reason {
        // Decided before a route is matched, or by limits of the proxy.
        R::RouteNotFound => Never,
        R::RequestMalformed | R::RequestTooLarge | R::HeadersTooLarge => Elsewhere,
        R::TokenMissing => Policy,
        // Token validity: the issuer's configuration decides, not the policy.
        R::TokenMalformed
        | R::TokenSignatureInvalid
        | R::TokenExpired
        | R::TokenNotYetValid
        | R::TokenLifetimeExceeded
        | R::TokenAlgorithmRejected
        | R::TokenIssuerUnknown
        | R::TokenTypeInvalid
        | R::TokenRevoked
        | R::TokenInactive => Elsewhere,
        // The policy's `audience`; without one, the issuer's audiences apply.
        R::TokenAudienceMismatch => {
            if audiences.is_some() {
                Policy
            } else {
                Elsewhere
            }
        }
        R::BindingMissing => when(*binding != Binding::UnboundAllowed),
        // How the token is presented and whether the proof or certificate holds.
        R::BindingSchemeMismatch
        | R::DpopProofMissing
        | R::DpopProofInvalid
        | R::DpopProofReplayed
        | R::DpopProofStale
        | R::DpopHtmMismatch
        | R::DpopHtuMismatch
        | R::DpopAthMismatch
        | R::DpopKeyMismatch
        | R::DpopNonceRequired
        | R::MtlsCertificateMissing
        | R::MtlsCertificateMismatch => Elsewhere,
        R::ScopeInsufficient => when(!scopes.is_empty()),
        R::ConsentMissing => when(consent.is_some()),
        // A record's status is any string (one outside `status` that names a revocation, an
        // expiry, or anything else) and its `expires_at` any time.
        R::ConsentNotAuthorised | R::ConsentExpired | R::ConsentRevoked => when(record.is_some()),
        R::ConsentClientMismatch => when(record.is_some()),
        R::ConsentPermissionMissing => when(
            record.is_some_and(|r| record_parts(r).permissions)
                || rar.is_some_and(|r| rar_parts(r).actions),
        ),
        R::ConsentResourceMismatch => when(
            record.is_some_and(|r| record_parts(r).accounts)
                || rar.is_some_and(|r| rar_parts(r).resource),
        ),
        R::ConsentBodyMismatch => when(rar.is_some_and(|r| rar_parts(r).body)),
        // `None` and `max_depth: 0` both refuse every token carrying `act`.
        R::DelegationNotAllowed => when(depth == 0),
        // Past the depth the route allows; at any route, past the most levels ever parsed.
        R::DelegationDepthExceeded => {
            if depth > 0 {
                Policy
            } else {
                Elsewhere
            }
        }
        R::DelegationActorNotAllowed => when(delegation.as_ref().is_some_and(|d| {
            let (actors, _) = delegation_parts(d);
            d.max_depth > 0 && !catches_all(actors)
        })),
        // Prior hops exist only from two levels on.
        R::DelegationChainNotAllowed => when(delegation.as_ref().is_some_and(|d| {
            let (_, chain) = delegation_parts(d);
            d.max_depth > 1 && chain.is_some_and(|c| !catches_all(c))
        })),
        R::DelegationMalformed => Elsewhere,
        // Checked only once the chain is allowed.
        R::DelegationScopeEscalation => when(depth > 0),
        R::PurposeNotAllowed => when(purpose.is_some()),
        R::AssuranceInsufficient => when(assurance.is_some()),
        // The consent service, the issuer's JWKS or the state backend down.
        R::DependencyUnavailable => Elsewhere,
        // RFC 9421: the proxy's signature tests cover these; a test case carries no signature
        // (`policy test` does not evaluate them).
        R::SignatureMissing => {
            if signatures.request == crate::signature::RequestSignatures::Required {
                Elsewhere
            } else {
                Never
            }
        }
        R::SignatureInvalid | R::SignatureStale | R::ContentDigestMismatch => {
            if signatures.verifies_requests() {
                Elsewhere
            } else {
                Never
            }
        }
    }
}

/// The deny reasons `route`'s policy can produce ([`Reach::Policy`]), in check order.
pub fn reasons_for(route: &Route) -> Vec<DenyReason> {
    DenyReason::ALL
        .iter()
        .copied()
        .filter(|r| reach(route, *r) == Reach::Policy)
        .collect()
}

/// What in a record rule can fail.
struct RecordParts {
    permissions: bool,
    accounts: bool,
}

fn record_parts(r: &RecordRule) -> RecordParts {
    // `claim`/`header` only say where the consent id comes from (`consent_missing`), `status`
    // which statuses pass: no other reason depends on them.
    let RecordRule {
        claim: _,
        header: _,
        status: _,
        permissions,
        accounts,
    } = r;
    RecordParts {
        permissions: !permissions.is_empty(),
        accounts: accounts.is_some(),
    }
}

/// What in an RFC 9396 rule can fail.
struct RarParts {
    actions: bool,
    resource: bool,
    body: bool,
}

fn rar_parts(r: &RarRule) -> RarParts {
    let RarRule {
        detail_type: _,
        actions,
        locations,
        identifier,
        accounts,
        match_body,
    } = r;
    RarParts {
        actions: !actions.is_empty(),
        resource: *locations || identifier.is_some() || accounts.is_some(),
        body: !match_body.is_empty(),
    }
}

fn delegation_parts(d: &DelegationRule) -> (&[Pattern], Option<&[Pattern]>) {
    let DelegationRule {
        max_depth: _,
        actors,
        chain,
    } = d;
    (actors, chain.as_deref())
}

/// A pattern list that accepts every actor (`*`): nothing to refuse.
fn catches_all(patterns: &[Pattern]) -> bool {
    patterns.iter().any(Pattern::matches_every_actor)
}

/// One route's coverage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteCoverage {
    pub exercised: bool,
    /// Each reason the route can produce, and whether a case produced it.
    pub reasons: Vec<(DenyReason, bool)>,
}

/// The routes of one policy source: the path a test file's `policy:` names, or a policy file
/// no test file names.
#[derive(Debug, Default)]
pub struct SourceCoverage {
    /// Whether some `*_test.yaml` names it.
    pub tested: bool,
    /// By `api/route`.
    pub routes: BTreeMap<String, RouteCoverage>,
}

impl SourceCoverage {
    fn counts(&self) -> (usize, usize) {
        let (mut hit, mut all) = (0usize, 0usize);
        for c in self.routes.values() {
            all += 1 + c.reasons.len();
            hit += usize::from(c.exercised) + c.reasons.iter().filter(|(_, h)| *h).count();
        }
        (hit, all)
    }

    /// Covered items (routes exercised, route reasons expected by a passing case) over all.
    pub fn percent(&self) -> f64 {
        percent(self.counts())
    }
}

fn percent((hit, all): (usize, usize)) -> f64 {
    if all == 0 {
        100.0
    } else {
        hit as f64 * 100.0 / all as f64
    }
}

/// Coverage over every policy source under test, keyed by the source's path as given.
#[derive(Debug, Default)]
pub struct Coverage {
    pub sources: BTreeMap<PathBuf, SourceCoverage>,
}

impl Coverage {
    /// Adds the routes of `set`, loaded from `policy` by a test file (exercised or not), and
    /// what `results` covered.
    pub fn add(&mut self, policy: &Path, set: &PolicySet, results: &[CaseResult]) {
        let source = self.sources.entry(policy.to_path_buf()).or_default();
        source.tested = true;
        add_routes(source, set);
        for res in results {
            let Some(route) = &res.route else { continue };
            let Some(c) = source.routes.get_mut(&key(route)) else {
                continue;
            };
            c.exercised = true;
            if let Decision::Deny(reason) = res.decision
                && res.passed()
            {
                for (x, hit) in &mut c.reasons {
                    *hit |= *x == reason;
                }
            }
        }
    }

    /// Adds the routes of a policy file no test file names: nothing of it is covered.
    pub fn add_untested(&mut self, policy: &Path, set: &PolicySet) {
        let source = self.sources.entry(policy.to_path_buf()).or_default();
        add_routes(source, set);
    }

    /// Every route, with the source it belongs to.
    pub fn routes(&self) -> impl Iterator<Item = (&Path, &str, &RouteCoverage)> {
        self.sources.iter().flat_map(|(p, s)| {
            s.routes
                .iter()
                .map(move |(k, c)| (p.as_path(), k.as_str(), c))
        })
    }

    /// Policy files that no test file names.
    pub fn untested(&self) -> impl Iterator<Item = &Path> {
        self.sources
            .iter()
            .filter(|(_, s)| !s.tested)
            .map(|(p, _)| p.as_path())
    }

    /// Covered items over all, across every source.
    pub fn percent(&self) -> f64 {
        let (hit, all) = self
            .sources
            .values()
            .map(SourceCoverage::counts)
            .fold((0, 0), |(h, a), (h2, a2)| (h + h2, a + a2));
        percent((hit, all))
    }

    /// What is missing, one line each; then each source's percentage (a policy file without
    /// tests at 0%); then the total.
    pub fn report(&self) -> String {
        let mut out = String::new();
        for (_, key, c) in self.routes() {
            if !c.exercised {
                let _ = writeln!(out, "not exercised: {key}");
            }
            let missing: Vec<&str> = c
                .reasons
                .iter()
                .filter(|(_, h)| !h)
                .map(|(r, _)| r.as_str())
                .collect();
            if !missing.is_empty() {
                let _ = writeln!(out, "uncovered:     {key}: {}", missing.join(", "));
            }
        }
        for (path, s) in &self.sources {
            let untested = if s.tested {
                ""
            } else {
                " (no *_test.yaml names it)"
            };
            let _ = writeln!(
                out,
                "{}: {:.1}% of {} route(s){untested}",
                path.display(),
                s.percent(),
                s.routes.len()
            );
        }
        let _ = writeln!(
            out,
            "coverage: {:.1}% of {} route(s) and the deny reasons their policies can produce",
            self.percent(),
            self.sources.values().map(|s| s.routes.len()).sum::<usize>()
        );
        out
    }
}

fn key(r: &Route) -> String {
    format!("{}/{}", r.api, r.name)
}

fn add_routes(source: &mut SourceCoverage, set: &PolicySet) {
    for r in set.routes() {
        source
            .routes
            .entry(key(r))
            .or_insert_with(|| RouteCoverage {
                exercised: false,
                reasons: reasons_for(r).into_iter().map(|x| (x, false)).collect(),
            });
    }
}

/// Runs every `*_test.yaml` under `paths` and measures coverage. With `untested`, the policy
/// files under `paths` that no test file names count too, at 0% (directories are scanned;
/// policy files given by name count as well). `Err` holds the load errors of a test file, or
/// of an untested policy file.
pub fn collect(
    paths: &[PathBuf],
    untested: bool,
) -> Result<(Coverage, Vec<(PathBuf, FileRun)>), Vec<InvalidConfig>> {
    let mut cov = Coverage::default();
    let mut runs = Vec::new();
    for file in testing::test_files(paths) {
        let run = testing::run_file_with_policy(&file)?;
        cov.add(&run.policy, &run.set, &run.results);
        runs.push((file, run));
    }
    let tested: Vec<PathBuf> = runs
        .iter()
        .filter_map(|(_, r)| std::fs::canonicalize(&r.policy).ok())
        .collect();
    let mut errors = Vec::new();
    let candidates = if untested {
        untested_candidates(paths)
    } else {
        Vec::new()
    };
    for p in candidates {
        let canon = std::fs::canonicalize(&p).unwrap_or_else(|_| p.clone());
        // A test may name the file itself or the directory holding it.
        if tested.iter().any(|t| canon.starts_with(t)) {
            continue;
        }
        match PolicySet::load(std::slice::from_ref(&p)) {
            Ok(set) => cov.add_untested(&p, &set),
            Err(e) => errors.extend(e),
        }
    }
    if errors.is_empty() {
        Ok((cov, runs))
    } else {
        Err(errors)
    }
}

/// The policy files under `paths`: directories scanned, policy files given by name.
fn untested_candidates(paths: &[PathBuf]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            out.extend(super::policy_files(
                std::slice::from_ref(p),
                &mut Vec::new(),
            ));
        } else if super::is_policy_file(p) {
            out.push(p.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests;
