//! Actor patterns for `delegation.actors` / `delegation.chain`: an exact string (a SPIFFE ID,
//! a client id) or a `*` suffix glob, compiled at policy load.

/// A compiled actor pattern. Comparison is exact and case-sensitive: SPIFFE IDs and client ids
/// are opaque identifiers, and case folding would let `Agg` impersonate `agg`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pattern {
    Exact(Box<str>),
    /// `prefix*`: the value must start with `prefix` and have at least one more character.
    /// `*` spans `/`, so `spiffe://bank.example/*` covers every workload of the trust domain.
    Prefix(Box<str>),
}

impl Pattern {
    /// Accepts `exact` or `prefix*`. Refuses empty patterns, `*` anywhere but at the end (no
    /// infix or multiple globs: they are easy to get wrong in a security rule), whitespace and
    /// control characters (a trailing space would silently never match).
    pub fn parse(s: &str) -> Result<Self, String> {
        if s.is_empty() {
            return Err("an empty pattern matches nothing".into());
        }
        if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(format!("{s:?} contains whitespace or control characters"));
        }
        match s.find('*') {
            None => Ok(Self::Exact(s.into())),
            Some(i) if i + 1 == s.len() => Ok(Self::Prefix(s[..i].into())),
            Some(_) => Err(format!(
                "{s:?}: `*` is only allowed once, as the last character"
            )),
        }
    }

    /// `*` alone: every actor matches (an actor's `sub` is never empty).
    pub fn matches_every_actor(&self) -> bool {
        matches!(self, Self::Prefix(p) if p.is_empty())
    }

    pub fn matches(&self, s: &str) -> bool {
        match self {
            Self::Exact(e) => **e == *s,
            Self::Prefix(p) => s.len() > p.len() && s.starts_with(&**p),
        }
    }
}
