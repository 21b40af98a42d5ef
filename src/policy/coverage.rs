//! `fapi-guard policy test --coverage`: which routes no case exercises, and which deny reasons
//! a route can produce (by what its policy says) that no case expects.
//!
//! The reasons counted are those the *policy* causes: token presence, binding, scopes, each
//! consent condition, delegation, purpose and assurance. Token validity (signature, expiry,
//! issuer…) and request hygiene do not depend on the policy; the proxy's own tests cover them.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use super::testing::CaseResult;
use super::{Binding, PolicySet, Route};
use crate::consent::ConsentRule;
use crate::decide::Decision;
use crate::reason::DenyReason;

/// The deny reasons `route`'s policy can produce, in check order.
pub fn reasons_for(route: &Route) -> Vec<DenyReason> {
    use DenyReason as R;
    if route.public {
        return Vec::new();
    }
    let mut out = vec![R::TokenMissing];
    if route.binding != Binding::UnboundAllowed {
        out.push(R::BindingMissing);
    }
    if !route.scopes.is_empty() {
        out.push(R::ScopeInsufficient);
    }
    match &route.consent {
        None => {}
        Some(ConsentRule::Record(r)) => {
            out.extend([
                R::ConsentMissing,
                R::ConsentClientMismatch,
                R::ConsentRevoked,
            ]);
            if !r.permissions.is_empty() {
                out.push(R::ConsentPermissionMissing);
            }
            if r.accounts.is_some() {
                out.push(R::ConsentResourceMismatch);
            }
        }
        Some(ConsentRule::Rar(r)) => {
            out.push(R::ConsentMissing);
            if !r.actions.is_empty() {
                out.push(R::ConsentPermissionMissing);
            }
            if r.identifier.is_some() || r.accounts.is_some() {
                out.push(R::ConsentResourceMismatch);
            }
            if !r.match_body.is_empty() {
                out.push(R::ConsentBodyMismatch);
            }
        }
    }
    if let Some(d) = &route.delegation {
        out.extend([R::DelegationDepthExceeded, R::DelegationActorNotAllowed]);
        if d.chain.is_some() {
            out.push(R::DelegationChainNotAllowed);
        }
    }
    if route.purpose.is_some() {
        out.push(R::PurposeNotAllowed);
    }
    if route.assurance.is_some() {
        out.push(R::AssuranceInsufficient);
    }
    out
}

/// One route's coverage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteCoverage {
    pub exercised: bool,
    /// Each reason the route can produce, and whether a case produced it.
    pub reasons: Vec<(DenyReason, bool)>,
}

/// Coverage over every route of the policies under test, keyed by `(api, route)`.
#[derive(Debug, Default)]
pub struct Coverage {
    pub routes: BTreeMap<(String, String), RouteCoverage>,
}

impl Coverage {
    /// Adds the routes of `set` (exercised or not) and what `results` covered.
    pub fn add(&mut self, set: &PolicySet, results: &[CaseResult]) {
        for r in set.routes() {
            self.routes
                .entry((r.api.to_string(), r.name.to_string()))
                .or_insert_with(|| RouteCoverage {
                    exercised: false,
                    reasons: reasons_for(r).into_iter().map(|x| (x, false)).collect(),
                });
        }
        for res in results {
            let Some(route) = &res.route else { continue };
            let Some(c) = self
                .routes
                .get_mut(&(route.api.to_string(), route.name.to_string()))
            else {
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

    /// Covered items (routes exercised, route reasons expected by a passing case) over all.
    pub fn percent(&self) -> f64 {
        let (mut hit, mut all) = (0usize, 0usize);
        for c in self.routes.values() {
            all += 1 + c.reasons.len();
            hit += usize::from(c.exercised) + c.reasons.iter().filter(|(_, h)| *h).count();
        }
        if all == 0 {
            100.0
        } else {
            hit as f64 * 100.0 / all as f64
        }
    }

    /// What is missing, one line each, then the percentage.
    pub fn report(&self) -> String {
        let mut out = String::new();
        let mut seen = BTreeSet::new();
        for ((api, name), c) in &self.routes {
            if !c.exercised {
                let _ = writeln!(out, "not exercised: {api}/{name}");
            }
            let missing: Vec<&str> = c
                .reasons
                .iter()
                .filter(|(_, h)| !h)
                .map(|(r, _)| r.as_str())
                .collect();
            if !missing.is_empty() && seen.insert((api, name)) {
                let _ = writeln!(out, "uncovered:     {api}/{name}: {}", missing.join(", "));
            }
        }
        let _ = writeln!(
            out,
            "coverage: {:.1}% of {} route(s) and the deny reasons their policies can produce",
            self.percent(),
            self.routes.len()
        );
        out
    }
}
