//! Transaction Tokens (draft-ietf-oauth-transaction-tokens; spec §4, §7): short-lived JWTs
//! (`typ: txntoken+jwt`) that carry the verified context of a request — subject, requesting
//! workload, actor chain, consent, purpose, scope — to the services behind the sidecar, in the
//! `Txn-Token` header (never `Authorization`: a Txn-Token is not an access token, the draft
//! keeps them apart so one can never be replayed as the other).
//!
//! - [`TxnTokenIssuer`]: the edge mints one per allowed request, ES256 with a key from file or
//!   an ephemeral one, `kid` = RFC 7638 thumbprint, public key at admin `/jwks`.
//! - [`TxnTokenVerifier`]: internal-hop mode; a sidecar in front of an internal service accepts
//!   Txn-Tokens from the trusted issuer as its credential and returns [`VerifiedTxnToken`], to
//!   which the same route policy (scopes, purpose, delegation) applies.
//! - [`config`]: the `transaction_token:` section.
//!
//! Tokens are never logged; only `txn` ids and digests are.

pub mod config;
mod issuer;
mod verifier;

use std::net::IpAddr;
use std::time::Duration;

use crate::delegation::Chain;
use std::sync::Arc;

use crate::config::IssuerSettings;
use crate::token::{TokenDigest, VerifiedToken};

pub use config::{AcceptSettings, MintSettings, TxnTokenConfig, TxnTokenSettings};
pub use issuer::TxnTokenIssuer;
pub use verifier::TxnTokenVerifier;

/// The request header carrying the token (draft §: "Txn-Token" HTTP header). Stripped from
/// every client request (`proxy::headers`, `PROXY_OWNED`) and set only from verified values.
pub const HEADER: &str = "txn-token";
/// JWT `typ` (draft: `txntoken+jwt`), so a Txn-Token is never mistaken for an access token
/// (`at+jwt`, RFC 9068) or an ID token.
pub const TYP: &str = "txntoken+jwt";
/// Longest lifetime we mint or accept (spec §4): Txn-Tokens live for one call chain.
pub const MAX_LIFETIME: Duration = Duration::from_secs(60);
/// Larger inbound Txn-Tokens are refused before any decoding.
pub const MAX_TOKEN_BYTES: usize = 12 * 1024;

/// What the edge knows about an allowed request, to be minted into a Txn-Token.
#[derive(Debug, Clone, Copy)]
pub struct TxnContext<'a> {
    /// The verified subject (`sub` of the access token).
    pub sub: &'a str,
    /// The granted scopes (`scope`, space-delimited in the token).
    pub scopes: &'a [Box<str>],
    /// The requesting workload (`req_wl`): the OAuth client the access token was issued to.
    pub req_wl: &'a str,
    /// The verified RFC 8693 actor chain, re-emitted as nested `act` with per-hop scope.
    pub chain: &'a Chain,
    pub purpose: Option<&'a str>,
    pub consent_id: Option<&'a str>,
    pub rctx: RequestContext<'a>,
}

/// `rctx` (draft: request context): where the call came from and what it was.
#[derive(Debug, Clone, Copy)]
pub struct RequestContext<'a> {
    /// The client address as the edge saw it (after trusted-proxy handling).
    pub req_ip: IpAddr,
    pub method: &'a str,
    /// The matched route's name (a compiled policy name, never raw request data).
    pub route: &'a str,
}

/// A verified inbound Txn-Token (internal-hop mode), in the shape the lead maps onto
/// `VerifiedToken`-like facts: `sub`, `req_wl` ≈ `client_id`, `scopes`, `chain`, `purpose`,
/// `consent_id`, and `txn` for the audit record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedTxnToken {
    /// SHA-256 of the token as presented (audit digest; the token itself is never kept).
    pub digest: TokenDigest,
    pub iss: String,
    pub aud: Vec<String>,
    pub iat: i64,
    pub exp: i64,
    pub txn: String,
    pub sub: String,
    pub req_wl: String,
    pub scopes: Box<[Box<str>]>,
    pub chain: Chain,
    pub purpose: Option<String>,
    pub consent_id: Option<String>,
    pub rctx: Option<RequestContextClaims>,
}

/// `rctx` as received; members optional since another Txn-Token service may send fewer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestContextClaims {
    pub req_ip: Option<String>,
    pub method: Option<String>,
    pub route: Option<String>,
}

impl VerifiedTxnToken {
    pub fn has_scope(&self, s: &str) -> bool {
        self.scopes.iter().any(|x| &**x == s)
    }

    /// The credential as `decide` sees it: the same route policy (scopes, purpose, delegation)
    /// applies to the Txn-Token's claims at an internal hop.
    pub fn into_verified_token(self, issuer: Arc<IssuerSettings>) -> VerifiedToken {
        let mut extra = serde_json::Map::new();
        if let Some(p) = self.purpose {
            extra.insert(issuer.purpose_claim.clone(), p.into());
        }
        if let Some(c) = self.consent_id {
            extra.insert("consent_id".to_owned(), c.into());
        }
        VerifiedToken {
            issuer,
            digest: self.digest,
            sub: self.sub,
            client_id: self.req_wl,
            jti: self.txn.clone(),
            aud: self.aud,
            exp: self.exp,
            iat: self.iat,
            nbf: None,
            scopes: self.scopes,
            cnf: Default::default(),
            delegation: Ok(self.chain),
            txn: Some(self.txn),
            extra,
        }
    }
}

/// Minting failures: infrastructure errors (the request should fail closed with 503, since the
/// upstream relies on the Txn-Token being there).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TxnTokenError {
    #[error("txn-token signing key: {0}")]
    Key(String),
    #[error("txn-token signing failed")]
    Signing,
}

#[cfg(test)]
mod tests;
