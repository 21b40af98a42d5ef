//! Pass 2: fold the records of the trusted files into per-principal counters. One line at a
//! time, borrowing strings from the line where it can: memory grows with the number of
//! clients, actors, routes, scopes and deny reasons, never with the number of records.

mod line;
mod retained;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;

use super::collect::Revocation;
use super::model::Evidence;
use super::stamp;
use super::{Policies, ReportOptions, RouteNeeds};
use crate::audit::record::token_digest;
use line::{Line, as_str};

/// Timeline buckets across the window.
pub const BUCKETS: i64 = 30;

/// Counts with first/last seen and the interaction id of the earliest occurrence.
#[derive(Debug, Clone, Default)]
pub struct Ev {
    pub count: u64,
    pub first: Option<i64>,
    pub last: Option<i64>,
    pub example: Option<String>,
}

impl Ev {
    pub fn note(&mut self, ts: i64, iid: Option<&str>) {
        self.count += 1;
        if self.first.is_none_or(|f| ts < f) {
            self.first = Some(ts);
            if let Some(i) = iid {
                self.example = Some(i.to_owned());
            }
        } else if self.example.is_none() {
            self.example = iid.map(str::to_owned);
        }
        if self.last.is_none_or(|l| ts > l) {
            self.last = Some(ts);
        }
    }

    /// Combines the evidence of records that are disjoint (one deny reason per record).
    pub fn merge(&mut self, other: &Ev) {
        self.count += other.count;
        self.widen(other);
    }

    /// Combines the evidence of items a record may carry together (several scopes of one
    /// token): the count becomes the largest item's, a lower bound of the records concerned.
    pub fn merge_max(&mut self, other: &Ev) {
        self.count = self.count.max(other.count);
        self.widen(other);
    }

    fn widen(&mut self, other: &Ev) {
        if let Some(f) = other.first
            && self.first.is_none_or(|s| f < s)
        {
            self.first = Some(f);
            self.example.clone_from(&other.example);
        }
        if let Some(l) = other.last
            && self.last.is_none_or(|s| l > s)
        {
            self.last = Some(l);
        }
    }

    pub fn evidence(&self) -> Evidence {
        Evidence {
            count: self.count,
            first_seen: self.first.map(stamp::format_micros),
            last_seen: self.last.map(stamp::format_micros),
            example_interaction_id: self.example.clone(),
        }
    }
}

#[derive(Debug, Default)]
pub struct RouteAcc {
    pub allows: u64,
    pub denies: u64,
    pub ev: Ev,
    /// Indices into `Policies::revisions` under which it was called.
    pub revisions: BTreeSet<usize>,
}

/// Everything about one client or actor.
#[derive(Debug, Default)]
pub struct PrincipalAcc {
    pub seen: Ev,
    pub calls: u64,
    pub allows: u64,
    pub denies: u64,
    pub before_window: u64,
    pub scopes: BTreeMap<String, Ev>,
    pub scopes_before: BTreeSet<String>,
    pub permissions: BTreeMap<String, Ev>,
    pub permissions_before: BTreeSet<String>,
    /// api → route → use.
    pub routes: BTreeMap<String, BTreeMap<String, RouteAcc>>,
    pub reasons: BTreeMap<String, Ev>,
    pub calls_with_token: u64,
    pub max_lifetime: Option<i64>,
    pub long_lived: Ev,
    pub unbound: Ev,
    pub unbound_route_calls: u64,
    pub max_depth: u32,
    pub delegated: Ev,
    pub allowed_after_revocation: Ev,
    pub denied_after_revocation: u64,
    pub peers: BTreeSet<String>,
    /// Actors: calls made as the current actor (outermost `act`), and as an earlier hop.
    pub as_current_actor: u64,
    pub as_prior_actor: u64,
}

/// Pass-2 state.
pub struct Aggregator<'p> {
    policies: &'p Policies,
    since: i64,
    as_of: i64,
    bucket: i64,
    max_lifetime: i64,
    /// Revocations by kind → digest of the revoked value → (recorded at, until).
    revoked: HashMap<String, HashMap<String, Vec<(i64, Option<i64>)>>>,
    revision_index: HashMap<String, Option<usize>>,
    pub clients: BTreeMap<String, PrincipalAcc>,
    pub actors: BTreeMap<String, PrincipalAcc>,
    pub totals: super::model::Totals,
    pub reasons: BTreeMap<String, u64>,
    pub timeline: Vec<(u64, u64)>,
    pub revisions_seen: BTreeSet<String>,
    pub other_revision: u64,
}

impl<'p> Aggregator<'p> {
    pub fn new(opts: &ReportOptions, policies: &'p Policies, revocations: &[Revocation]) -> Self {
        let since = opts.as_of_micros - opts.since_secs * 1_000_000;
        let window = (opts.as_of_micros - since).max(1);
        let bucket = (window + BUCKETS - 1) / BUCKETS;
        let mut revoked: HashMap<String, HashMap<String, Vec<(i64, Option<i64>)>>> = HashMap::new();
        for r in revocations {
            revoked
                .entry(r.kind.clone())
                .or_default()
                .entry(r.value_sha256.clone())
                .or_default()
                .push((r.at_micros, r.until));
        }
        Self {
            policies,
            since,
            as_of: opts.as_of_micros,
            bucket,
            max_lifetime: opts.max_token_lifetime_secs,
            revoked,
            revision_index: HashMap::new(),
            clients: BTreeMap::new(),
            actors: BTreeMap::new(),
            totals: Default::default(),
            reasons: BTreeMap::new(),
            timeline: vec![(0, 0); BUCKETS as usize],
            revisions_seen: BTreeSet::new(),
            other_revision: 0,
        }
    }

    pub fn since_micros(&self) -> i64 {
        self.since
    }

    pub fn bucket_micros(&self) -> i64 {
        self.bucket
    }

    /// Reads one (already verified) file.
    pub fn file(&mut self, path: &Path) -> std::io::Result<()> {
        let mut reader = BufReader::with_capacity(1 << 20, File::open(path)?);
        let mut line = Vec::with_capacity(4096);
        loop {
            line.clear();
            if reader.read_until(b'\n', &mut line)? == 0 {
                return Ok(());
            }
            if line.last() == Some(&b'\n') {
                line.pop();
            }
            self.line(&line);
        }
    }

    /// One record line.
    pub fn line(&mut self, line: &[u8]) {
        self.totals.records += 1;
        let Ok(rec) = serde_json::from_slice::<Line<'_>>(line) else {
            self.totals.unreadable_records += 1;
            return;
        };
        match &*rec.kind {
            "decision" => {}
            "revocation" => {
                self.totals.revocations += 1;
                return;
            }
            _ => return,
        }
        let Some(ts) = stamp::parse_micros(&rec.ts) else {
            self.totals.unreadable_records += 1;
            return;
        };
        self.totals.decisions += 1;
        if ts > self.as_of {
            self.totals.after_as_of += 1;
            return;
        }
        let iid = as_str(&rec.interaction_id);
        if ts < self.since {
            self.totals.before_window += 1;
            if let Some(c) = as_str(&rec.client_id).and_then(|c| entry(&mut self.clients, c)) {
                before(c, &rec, ts, iid);
            }
            for (_, sub) in actors(&rec) {
                if let Some(a) = entry(&mut self.actors, sub) {
                    before(a, &rec, ts, iid);
                }
            }
            return;
        }
        self.decision(&rec, ts, iid);
    }

    fn decision(&mut self, rec: &Line<'_>, ts: i64, iid: Option<&str>) {
        let allow = match as_str(&rec.decision) {
            Some("allow") => true,
            Some("deny") => false,
            _ => {
                self.totals.unreadable_records += 1;
                return;
            }
        };
        self.totals.decisions_in_window += 1;
        let b = ((ts - self.since) / self.bucket).clamp(0, BUCKETS - 1) as usize;
        if allow {
            self.totals.allows += 1;
            self.timeline[b].0 += 1;
        } else {
            self.totals.denies += 1;
            self.timeline[b].1 += 1;
            if let Some(r) = as_str(&rec.reason) {
                *self.reasons.entry(r.to_owned()).or_default() += 1;
            }
        }
        let rev = as_str(&rec.policy_revision);
        let rev_idx = self.revision(rev);
        let route = match (as_str(&rec.api), as_str(&rec.route)) {
            (Some(api), Some(route)) => {
                let needs = rev_idx.and_then(|(i, _)| {
                    self.policies.revisions[i]
                        .1
                        .get(api)
                        .and_then(|t| t.get(route))
                        .map(|n| (i, n))
                });
                Some((api, route, needs))
            }
            _ => None,
        };
        if rev_idx.is_some_and(|(_, exact)| !exact) {
            self.other_revision += 1;
        }
        let Some(client) = as_str(&rec.client_id) else {
            self.totals.unattributed += 1;
            return;
        };
        let revoked = self.after_revocation(rec, ts);
        let fact = Fact {
            rec,
            ts,
            iid,
            allow,
            route,
            revoked,
            max_lifetime: self.max_lifetime,
        };
        if let Some(c) = entry(&mut self.clients, client) {
            fact.apply(c);
            for (_, sub) in actors(rec) {
                if !c.peers.contains(sub) {
                    c.peers.insert(sub.to_owned());
                }
            }
        }
        // Every actor of the chain (RFC 8693 §4.1: the outermost is the current one, the
        // nested ones acted before it), each once per call.
        for (hop, sub) in actors(rec) {
            let Some(acc) = entry(&mut self.actors, sub) else {
                continue;
            };
            fact.apply(acc);
            if hop == 0 {
                acc.as_current_actor += 1;
            } else {
                acc.as_prior_actor += 1;
            }
            if !acc.peers.contains(client) {
                acc.peers.insert(client.to_owned());
            }
        }
    }

    /// Index of the policy revision for `rev`, and whether it matched exactly.
    fn revision(&mut self, rev: Option<&str>) -> Option<(usize, bool)> {
        if let Some(r) = rev
            && !self.revisions_seen.contains(r)
        {
            self.revisions_seen.insert(r.to_owned());
        }
        if self.policies.is_empty() {
            return None;
        }
        let last = self.policies.revisions.len() - 1;
        let Some(r) = rev else {
            return Some((last, false));
        };
        if let Some(hit) = self.revision_index.get(r) {
            return Some(hit.map_or((last, false), |i| (i, true)));
        }
        let found = self.policies.revisions.iter().position(|(x, _)| x == r);
        self.revision_index.insert(r.to_owned(), found);
        Some(found.map_or((last, false), |i| (i, true)))
    }

    /// Whether a revocation recorded before `ts` (and still in force) matches this call.
    /// Subject and client revocations apply to tokens issued at or before them.
    fn after_revocation(&self, rec: &Line<'_>, ts: i64) -> bool {
        if self.revoked.is_empty() {
            return false;
        }
        let iat = rec.token.as_ref().and_then(|t| t.iat);
        let hit = |kind: &str, value: Option<&str>, iat_rule: bool| -> bool {
            let (Some(map), Some(v)) = (self.revoked.get(kind), value) else {
                return false;
            };
            let Some(list) = map.get(&token_digest(v)) else {
                return false;
            };
            list.iter().any(|(at, until)| {
                *at <= ts
                    && until.is_none_or(|u| ts.div_euclid(1_000_000) <= u)
                    && (!iat_rule || iat.is_none_or(|i| i.saturating_mul(1_000_000) <= *at))
            })
        };
        let token = rec.token.as_ref();
        hit("jti", token.and_then(|t| as_str(&t.jti)), false)
            || hit("token_sha256", token.and_then(|t| as_str(&t.sha256)), false)
            || hit("subject", as_str(&rec.subject), true)
            || hit("client", as_str(&rec.client_id), true)
            || hit("consent", rec.consent.as_ref().map(|c| &*c.id), false)
    }
}

fn before(p: &mut PrincipalAcc, rec: &Line<'_>, ts: i64, iid: Option<&str>) {
    p.seen.note(ts, iid);
    p.before_window += 1;
    for s in rec.scopes.iter().flatten() {
        if !p.scopes_before.contains(&**s) {
            p.scopes_before.insert(s.to_string());
        }
    }
    for perm in rec
        .consent
        .iter()
        .flat_map(|c| c.permissions.iter().flatten())
    {
        if !p.permissions_before.contains(&**perm) {
            p.permissions_before.insert(perm.to_string());
        }
    }
}

/// One in-window decision, applied to the client and to every actor of its chain.
struct Fact<'r, 'l, 'n> {
    rec: &'r Line<'l>,
    ts: i64,
    iid: Option<&'r str>,
    allow: bool,
    route: Option<(&'r str, &'r str, Option<(usize, &'n RouteNeeds)>)>,
    revoked: bool,
    max_lifetime: i64,
}

impl Fact<'_, '_, '_> {
    fn apply(&self, p: &mut PrincipalAcc) {
        let (ts, iid, rec) = (self.ts, self.iid, self.rec);
        p.seen.note(ts, iid);
        p.calls += 1;
        if self.allow {
            p.allows += 1;
        } else {
            p.denies += 1;
            if let Some(r) = as_str(&rec.reason) {
                note(&mut p.reasons, r, ts, iid);
            }
        }
        for s in rec.scopes.iter().flatten() {
            note(&mut p.scopes, s, ts, iid);
        }
        for perm in rec
            .consent
            .iter()
            .flat_map(|c| c.permissions.iter().flatten())
        {
            note(&mut p.permissions, perm, ts, iid);
        }
        if let Some((api, route, needs)) = self.route {
            let Some(r) = entry(&mut p.routes, api).and_then(|m| entry(m, route)) else {
                return;
            };
            r.ev.note(ts, iid);
            if self.allow {
                r.allows += 1;
            } else {
                r.denies += 1;
            }
            if let Some((i, n)) = needs {
                r.revisions.insert(i);
                if n.unbound_allowed {
                    p.unbound_route_calls += 1;
                }
            }
        }
        if let Some(t) = &rec.token {
            p.calls_with_token += 1;
            if let (Some(exp), Some(iat)) = (t.exp, t.iat) {
                let life = exp.saturating_sub(iat);
                if p.max_lifetime.is_none_or(|m| life > m) {
                    p.max_lifetime = Some(life);
                }
                if life > self.max_lifetime {
                    p.long_lived.note(ts, iid);
                }
            }
            if as_str(&t.binding) == Some("none") {
                p.unbound.note(ts, iid);
            }
            if self.revoked {
                if self.allow {
                    p.allowed_after_revocation.note(ts, iid);
                } else {
                    p.denied_after_revocation += 1;
                }
            }
        }
        if let Some(chain) = &rec.delegation
            && !chain.is_empty()
        {
            p.delegated.note(ts, iid);
            p.max_depth = p
                .max_depth
                .max(u32::try_from(chain.len()).unwrap_or(u32::MAX));
        }
    }
}

/// The actors of a record's `act` chain with their hop (0: the current actor), outermost first,
/// each `sub` once (a chain may name one actor at two hops; its first hop counts).
fn actors<'r>(rec: &'r Line<'_>) -> impl Iterator<Item = (usize, &'r str)> {
    let chain = rec.delegation.as_deref().unwrap_or_default();
    chain
        .iter()
        .enumerate()
        .filter(move |(i, a)| !chain[..*i].iter().any(|b| *b.sub == *a.sub))
        .map(|(i, a)| (i, &*a.sub))
}

/// The entry for `key`, allocating the key only the first time it is seen.
fn entry<'m, V: Default>(map: &'m mut BTreeMap<String, V>, key: &str) -> Option<&'m mut V> {
    if !map.contains_key(key) {
        map.insert(key.to_owned(), V::default());
    }
    map.get_mut(key)
}

fn note(map: &mut BTreeMap<String, Ev>, key: &str, ts: i64, iid: Option<&str>) {
    if let Some(e) = entry(map, key) {
        e.note(ts, iid);
    }
}
