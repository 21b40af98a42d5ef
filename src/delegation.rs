//! Delegation provenance (spec §1 point 4, §5 `delegation`, §7): the RFC 8693 §4.1 `act` chain.
//!
//! RFC 8693 §4.1: `act` names the party acting on behalf of the subject (`sub`, optionally
//! `iss`/`client_id`); a prior actor is expressed by nesting another `act` inside it. The
//! outermost `act` is the *current* actor and, per the RFC, the only one used for access-control
//! decisions; nested ones are informational provenance. A route may add a bank rule on top of
//! the RFC: every prior hop must match the `chain` patterns.
//!
//! How the lead wires it: [`parse`] the token's `act` claim once (the chain also goes into the
//! audit record, allowed or denied), then [`check`] against the route's [`DelegationRule`],
//! then [`check_attenuation`] with the token's scopes.
//!
//! # Per-hop scope (scope attenuation)
//!
//! RFC 8693 does not carry scope per actor. For Txn-Token chains (draft-ietf-oauth-transaction-
//! tokens: a replacement token may narrow, never widen, the authorization context) we read an
//! optional `scope` member on each `act` level: the space-delimited scope of the token *that
//! actor held* when it acted. Scopes may only shrink towards the present:
//!
//! ```text
//! token.scope ⊆ act.scope ⊆ act.act.scope ⊆ …      (levels without `scope` are skipped)
//! ```
//!
//! Any violation is `delegation_scope_escalation`. The sidecar's own Txn-Tokens carry the chain
//! in this shape (see `txn_token`).

mod pattern;

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::reason::DenyReason;

pub use crate::audit::Actor;
pub use pattern::Pattern;

/// Most `act` levels we ever look at. Parsing stops here, so a hostile chain costs at most this
/// many steps however deep it is (serde_json already refuses nesting beyond 128 when the token
/// is decoded). A route's `max_depth` cannot exceed it.
pub const MAX_CHAIN_DEPTH: usize = 16;

/// The parsed `act` chain: actors outermost (current actor) first, with the per-hop scope of
/// each level at the same index.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Chain {
    pub actors: Vec<Actor>,
    pub scopes: Vec<HopScopes>,
}

/// The `scope` an `act` level carried, split, sorted and deduplicated; `None` when the level
/// has no `scope` member (no information, not "no scope").
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HopScopes {
    pub scope: Option<Vec<String>>,
}

/// A route's compiled `delegation` section (spec §5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DelegationRule {
    /// How many `act` levels a token may carry; 0 refuses every token with `act`.
    pub max_depth: usize,
    /// Patterns for the current actor (outermost `act.sub`).
    pub actors: Box<[Pattern]>,
    /// Patterns every prior hop (`act.act…sub`) must match, when set.
    pub chain: Option<Box<[Pattern]>>,
}

/// `delegation:` in a route, exactly as written.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Delegation")]
pub struct RawDelegation {
    #[serde(default)]
    pub max_depth: usize,
    #[serde(default)]
    pub actors: Vec<String>,
    #[serde(default)]
    pub chain: Option<Vec<String>>,
}

impl RawDelegation {
    /// Errors read `field: message` relative to the `delegation` section.
    pub fn compile(self) -> Result<DelegationRule, String> {
        if self.max_depth > MAX_CHAIN_DEPTH {
            return Err(format!("max_depth: at most {MAX_CHAIN_DEPTH}"));
        }
        if self.max_depth == 0 {
            if !self.actors.is_empty() || self.chain.is_some() {
                return Err(
                    "max_depth: 0 refuses every delegated token, so actors and chain \
                            would never apply; set max_depth or remove them"
                        .into(),
                );
            }
        } else if self.actors.is_empty() {
            return Err("actors: list the actors allowed to act for the subject".into());
        }
        let actors = compile_patterns("actors", &self.actors)?;
        let chain = match self.chain {
            None => None,
            Some(c) if c.is_empty() => {
                return Err("chain: an empty list allows no prior hop; omit it instead".into());
            }
            Some(c) => Some(compile_patterns("chain", &c)?),
        };
        Ok(DelegationRule {
            max_depth: self.max_depth,
            actors,
            chain,
        })
    }
}

fn compile_patterns(field: &str, raw: &[String]) -> Result<Box<[Pattern]>, String> {
    raw.iter()
        .enumerate()
        .map(|(i, p)| Pattern::parse(p).map_err(|m| format!("{field}[{i}]: {m}")))
        .collect()
}

impl Chain {
    pub fn is_empty(&self) -> bool {
        self.actors.is_empty()
    }

    /// Number of `act` levels.
    pub fn depth(&self) -> usize {
        self.actors.len()
    }

    /// The chain back in RFC 8693 §4.1 nested form (with per-hop `scope`), for a Txn-Token.
    /// `None` when there is no actor. Only the members we validated are emitted.
    pub fn to_act_claim(&self) -> Option<Value> {
        let mut inner: Option<Value> = None;
        for (actor, hop) in self.actors.iter().zip(&self.scopes).rev() {
            let mut m = Map::new();
            m.insert("sub".into(), Value::String(actor.sub.clone()));
            if let Some(c) = &actor.client_id {
                m.insert("client_id".into(), Value::String(c.clone()));
            }
            if let Some(i) = &actor.iss {
                m.insert("iss".into(), Value::String(i.clone()));
            }
            if let Some(s) = &hop.scope {
                m.insert("scope".into(), Value::String(s.join(" ")));
            }
            if let Some(v) = inner.take() {
                m.insert("act".into(), v);
            }
            inner = Some(Value::Object(m));
        }
        inner
    }
}

/// Parses the `act` claim (RFC 8693 §4.1) strictly: every level must be a JSON object with a
/// non-empty string `sub`; `client_id`, `iss` and `scope`, when present, must be strings; other
/// members are tolerated (the RFC allows them) and ignored. Anything else — a string, array,
/// number or `null` where an object belongs — is `delegation_malformed`. Iterative and capped
/// at [`MAX_CHAIN_DEPTH`] levels (`delegation_depth_exceeded` beyond), so the cost is bounded.
pub fn parse(act: Option<&Value>) -> Result<Chain, DenyReason> {
    let malformed = DenyReason::DelegationMalformed;
    let mut chain = Chain::default();
    let mut next = act;
    while let Some(level) = next {
        if chain.actors.len() == MAX_CHAIN_DEPTH {
            return Err(DenyReason::DelegationDepthExceeded);
        }
        let obj = level.as_object().ok_or(malformed)?;
        let sub = string_member(obj, "sub")?
            .filter(|s| !s.is_empty())
            .ok_or(malformed)?;
        let actor = Actor {
            sub: sub.to_owned(),
            client_id: string_member(obj, "client_id")?.map(str::to_owned),
            iss: string_member(obj, "iss")?.map(str::to_owned),
        };
        let scope = string_member(obj, "scope")?.map(split_scope);
        chain.actors.push(actor);
        chain.scopes.push(HopScopes { scope });
        next = obj.get("act");
    }
    Ok(chain)
}

/// [`parse`], keeping only the actors (outermost first).
pub fn parse_chain(act: Option<&Value>) -> Result<Vec<Actor>, DenyReason> {
    parse(act).map(|c| c.actors)
}

/// Applies a route's `delegation` rule to a parsed chain. No `act` → allowed. With `act`: the
/// route must allow delegation (`max_depth` ≥ 1), the depth must fit, the current actor must
/// match `actors` (RFC 8693 §4.1: the outermost `act` is the one authorization uses), and each
/// prior hop must match `chain` when the route sets it (a bank provenance rule beyond the RFC).
pub fn check(rule: Option<&DelegationRule>, chain: &[Actor]) -> Result<(), DenyReason> {
    let Some(current) = chain.first() else {
        return Ok(());
    };
    let rule = match rule {
        Some(r) if r.max_depth > 0 => r,
        _ => return Err(DenyReason::DelegationNotAllowed),
    };
    if chain.len() > rule.max_depth {
        return Err(DenyReason::DelegationDepthExceeded);
    }
    if !matches_any(&rule.actors, &current.sub) {
        return Err(DenyReason::DelegationActorNotAllowed);
    }
    if let Some(allowed) = &rule.chain
        && chain[1..].iter().any(|hop| !matches_any(allowed, &hop.sub))
    {
        return Err(DenyReason::DelegationChainNotAllowed);
    }
    Ok(())
}

/// Scope attenuation across hops (see the module docs): `token_scopes` must be within the first
/// hop that states a scope, and each stated hop scope within the next older one. A hop may
/// never widen what the hop before it held → `delegation_scope_escalation`.
pub fn check_attenuation<S: AsRef<str>>(
    token_scopes: &[S],
    hops: &[HopScopes],
) -> Result<(), DenyReason> {
    let mut stated = hops.iter().filter_map(|h| h.scope.as_deref());
    let Some(mut wider) = stated.next() else {
        return Ok(());
    };
    if !token_scopes.iter().all(|s| contains(wider, s.as_ref())) {
        return Err(DenyReason::DelegationScopeEscalation);
    }
    for older in stated {
        if !wider.iter().all(|s| contains(older, s)) {
            return Err(DenyReason::DelegationScopeEscalation);
        }
        wider = older;
    }
    Ok(())
}

fn matches_any(patterns: &[Pattern], s: &str) -> bool {
    patterns.iter().any(|p| p.matches(s))
}

/// `sorted` is sorted and deduplicated by [`split_scope`].
fn contains(sorted: &[String], s: &str) -> bool {
    sorted.binary_search_by(|x| x.as_str().cmp(s)).is_ok()
}

/// RFC 6749 §3.3: space-delimited, order not significant.
fn split_scope(s: &str) -> Vec<String> {
    let mut v: Vec<String> = s
        .split(' ')
        .filter(|x| !x.is_empty())
        .map(str::to_owned)
        .collect();
    v.sort_unstable();
    v.dedup();
    v
}

/// `Ok(None)` when absent, `Ok(Some)` for a string, `delegation_malformed` for anything else.
fn string_member<'a>(
    obj: &'a Map<String, Value>,
    name: &str,
) -> Result<Option<&'a str>, DenyReason> {
    match obj.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(DenyReason::DelegationMalformed),
    }
}

#[cfg(test)]
mod tests;
