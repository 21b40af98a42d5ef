//! How much the aggregation holds: the measure behind "memory bounded by clients × routes,
//! never by records" (`tests.rs`: N and 10 × N records leave it exactly as large). Every field
//! of the accumulators is named in a pattern, so a new field fails to compile until it is
//! counted here.

use std::collections::{BTreeMap, BTreeSet};

use super::{Aggregator, Ev, PrincipalAcc, RouteAcc};

impl Aggregator<'_> {
    /// What the aggregation holds: (entries, bytes of the strings it owns).
    pub fn retained(&self) -> (usize, usize) {
        let Self {
            policies: _,
            since: _,
            as_of: _,
            bucket: _,
            max_lifetime: _,
            revoked,
            revision_index,
            clients,
            actors,
            totals: _,
            reasons,
            timeline,
            revisions_seen,
            other_revision: _,
        } = self;
        let mut r = Retained::default();
        for (kind, by_value) in revoked {
            r.key(kind);
            for (value, list) in by_value {
                r.key(value);
                r.entries += list.len();
            }
        }
        for k in revision_index.keys() {
            r.key(k);
        }
        for k in revisions_seen {
            r.key(k);
        }
        for k in reasons.keys() {
            r.key(k);
        }
        r.entries += timeline.len();
        for (id, p) in clients.iter().chain(actors) {
            r.key(id);
            p.retained(&mut r);
        }
        (r.entries, r.bytes)
    }
}

/// Counts for [`Aggregator::retained`].
#[derive(Default)]
struct Retained {
    entries: usize,
    bytes: usize,
}

impl Retained {
    fn key(&mut self, k: &str) {
        self.entries += 1;
        self.bytes += k.len();
    }

    fn ev(&mut self, e: &Ev) {
        let Ev {
            count: _,
            first: _,
            last: _,
            example,
        } = e;
        self.entries += 1;
        self.bytes += example.as_ref().map_or(0, String::len);
    }

    fn evs(&mut self, m: &BTreeMap<String, Ev>) {
        for (k, e) in m {
            self.key(k);
            self.ev(e);
        }
    }

    fn set(&mut self, s: &BTreeSet<String>) {
        for k in s {
            self.key(k);
        }
    }
}

impl PrincipalAcc {
    fn retained(&self, r: &mut Retained) {
        let Self {
            seen,
            calls: _,
            allows: _,
            denies: _,
            before_window: _,
            scopes,
            scopes_before,
            permissions,
            permissions_before,
            routes,
            reasons,
            calls_with_token: _,
            max_lifetime: _,
            long_lived,
            unbound,
            unbound_route_calls: _,
            max_depth: _,
            delegated,
            allowed_after_revocation,
            denied_after_revocation: _,
            peers,
            as_current_actor: _,
            as_prior_actor: _,
        } = self;
        for e in [
            seen,
            long_lived,
            unbound,
            delegated,
            allowed_after_revocation,
        ] {
            r.ev(e);
        }
        r.evs(scopes);
        r.evs(permissions);
        r.evs(reasons);
        r.set(scopes_before);
        r.set(permissions_before);
        r.set(peers);
        for (api, by_route) in routes {
            r.key(api);
            for (route, acc) in by_route {
                let RouteAcc {
                    allows: _,
                    denies: _,
                    ev,
                    revisions,
                } = acc;
                r.key(route);
                r.ev(ev);
                r.entries += revisions.len();
            }
        }
    }
}
