//! The in-memory revocation sets every request is checked against: no I/O, one read lock, and
//! nothing at all while the sets are empty.
//!
//! Entries expire by time, never by capacity (conventions, "security state expires by time"):
//! an entry is kept until its `until`, and at `max_entries` a new revocation is refused (the
//! caller answers 503 and counts it) rather than forgetting an older one.

use std::collections::HashMap;
use std::sync::RwLock;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};

use super::{Kind, Revocation};
use crate::token::{TokenDigest, VerifiedToken};

/// What a token or consent matched, if anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hit {
    Jti,
    TokenSha256,
    Subject,
    Client,
}

/// The set is full: the revocation was not applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the revocation set holds its maximum number of live entries")]
pub struct SetFull;

pub struct RevocationSet {
    inner: RwLock<Inner>,
    len: AtomicUsize,
    max_entries: usize,
    last_prune: AtomicI64,
}

#[derive(Default)]
struct Inner {
    /// value → until (unix seconds).
    jti: HashMap<String, i64>,
    sha256: HashMap<TokenDigest, i64>,
    consent: HashMap<String, i64>,
    /// value → (revoked at, unix seconds; until).
    subject: HashMap<String, (i64, i64)>,
    client: HashMap<String, (i64, i64)>,
}

impl Inner {
    fn len(&self) -> usize {
        self.jti.len()
            + self.sha256.len()
            + self.consent.len()
            + self.subject.len()
            + self.client.len()
    }

    fn prune(&mut self, now: i64) {
        self.jti.retain(|_, u| *u >= now);
        self.sha256.retain(|_, u| *u >= now);
        self.consent.retain(|_, u| *u >= now);
        self.subject.retain(|_, (_, u)| *u >= now);
        self.client.retain(|_, (_, u)| *u >= now);
    }
}

impl RevocationSet {
    pub fn new(max_entries: usize) -> Self {
        Self {
            inner: RwLock::new(Inner::default()),
            len: AtomicUsize::new(0),
            max_entries: max_entries.max(1),
            last_prune: AtomicI64::new(0),
        }
    }

    /// Entries held (live or not yet pruned).
    pub fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Adds `r` (merging with an existing entry for the same value: the later revocation time
    /// and the later expiry win, so a merge never shortens what was revoked).
    /// Returns whether anything changed (a repeated revocation is a no-op).
    pub fn insert(&self, r: &Revocation, now: i64) -> Result<bool, SetFull> {
        let mut g = self.write();
        if self.last_prune.swap(now, Ordering::Relaxed) != now {
            g.prune(now);
        }
        let exists = match r.kind {
            Kind::Jti => g.jti.contains_key(&r.value),
            Kind::TokenSha256 => r.digest().is_some_and(|d| g.sha256.contains_key(&d)),
            Kind::Consent => g.consent.contains_key(&r.value),
            Kind::Subject => g.subject.contains_key(&r.value),
            Kind::Client => g.client.contains_key(&r.value),
        };
        if !exists && g.len() >= self.max_entries {
            g.prune(now);
            if g.len() >= self.max_entries {
                return Err(SetFull);
            }
        }
        let at = r.at_ms.div_euclid(1000);
        let changed = match r.kind {
            Kind::Jti => merge(&mut g.jti, r.value.clone(), r.until),
            Kind::Consent => merge(&mut g.consent, r.value.clone(), r.until),
            // `validated` made sure the value is a digest; anything else cannot match a token.
            Kind::TokenSha256 => r.digest().is_some_and(|d| merge(&mut g.sha256, d, r.until)),
            Kind::Subject => merge_at(&mut g.subject, &r.value, at, r.until),
            Kind::Client => merge_at(&mut g.client, &r.value, at, r.until),
        };
        self.len.store(g.len(), Ordering::Relaxed);
        Ok(changed)
    }

    /// Drops expired entries.
    pub fn prune(&self, now: i64) {
        let mut g = self.write();
        g.prune(now);
        self.len.store(g.len(), Ordering::Relaxed);
    }

    /// Whether `t` is revoked at `now`: by its `jti`, its SHA-256, or its subject or client
    /// when it was issued (`iat`) at or before the revocation.
    pub fn token(&self, t: &VerifiedToken, now: i64) -> Option<Hit> {
        if self.is_empty() {
            return None;
        }
        let g = self.read();
        let live = |u: Option<&i64>| u.is_some_and(|u| *u >= now);
        let before = |e: Option<&(i64, i64)>| e.is_some_and(|(at, u)| *u >= now && t.iat <= *at);
        if live(g.jti.get(t.jti.as_str())) {
            Some(Hit::Jti)
        } else if live(g.sha256.get(&t.digest)) {
            Some(Hit::TokenSha256)
        } else if before(g.subject.get(t.sub.as_str())) {
            Some(Hit::Subject)
        } else if before(g.client.get(t.client_id.as_str())) {
            Some(Hit::Client)
        } else {
            None
        }
    }

    pub fn consent(&self, id: &str, now: i64) -> bool {
        if self.is_empty() {
            return false;
        }
        self.read().consent.get(id).is_some_and(|u| *u >= now)
    }

    // A poisoned lock means a thread panicked while holding it; the maps are still whole
    // (every mutation is a single insert/retain), so keep enforcing rather than failing open.
    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(|p| p.into_inner())
    }
}

fn merge<K: std::hash::Hash + Eq>(m: &mut HashMap<K, i64>, k: K, until: i64) -> bool {
    match m.get_mut(&k) {
        Some(u) if *u >= until => false,
        Some(u) => {
            *u = until;
            true
        }
        None => {
            m.insert(k, until);
            true
        }
    }
}

fn merge_at(m: &mut HashMap<String, (i64, i64)>, k: &str, at: i64, until: i64) -> bool {
    match m.get_mut(k) {
        Some((a, u)) if *a >= at && *u >= until => false,
        Some((a, u)) => {
            *a = (*a).max(at);
            *u = (*u).max(until);
            true
        }
        None => {
            m.insert(k.to_owned(), (at, until));
            true
        }
    }
}
