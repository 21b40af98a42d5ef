//! Reading what the request carries before and after the decision: the body where a check
//! needs it, the client certificate, and the verified context for the upstream (identity
//! headers, Txn-Token).

use bytes::Bytes;
use http::HeaderMap;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE, HeaderValue};

use super::body_limit::{BodySlot, BufferError};
use super::{ConnInfo, Evaluation, Guard, headers};
use crate::audit::AuditRecord;
use crate::decide::Decision;
use crate::identity::{self, IdentityValues};
use crate::path;
use crate::reason::DenyReason;
use crate::txn_token::{self, RequestContext, TxnContext};

impl Guard {
    /// Sets the identity headers from the verified token and mints (edge) or passes on (internal
    /// hop) the Txn-Token. Returns the `Txn-Token` header value for the upstream.
    pub(super) fn upstream_context(
        &self,
        headers: &mut HeaderMap,
        method: &http::Method,
        eval: &mut Evaluation,
        conn: &ConnInfo,
        iid: &str,
    ) -> Result<Option<HeaderValue>, DenyReason> {
        let allowed = matches!(eval.decision, Decision::Allow(_));
        let token = eval.token.clone().filter(|_| allowed);
        let consent_id = eval.consent.as_ref().map(|c| c.id.as_str());
        let identity = token.as_deref().map(|t| IdentityValues {
            subject: &t.sub,
            client_id: &t.client_id,
            consent_id,
        });
        let names = &self.config.upstream.identity_headers;
        identity::strip_and_set(headers, names, identity.as_ref())
            .map_err(|_| DenyReason::TokenMalformed)?;
        let Some(t) = token else {
            return Ok(None);
        };
        if let Some(issuer) = &self.txn_issuer {
            let chain = t.delegation.as_ref().map_err(|r| *r)?;
            let route = eval.route.as_ref().map_or("", |r| &r.name);
            let ctx = TxnContext {
                sub: &t.sub,
                scopes: &t.scopes,
                req_wl: &t.client_id,
                chain,
                purpose: eval.consent_purpose.as_deref().or(t.purpose()),
                consent_id,
                rctx: RequestContext {
                    req_ip: conn.peer.ip(),
                    method: method.as_str(),
                    route,
                },
            };
            let (jwt, txn) = issuer.mint(&ctx, self.clock.now_unix()).map_err(|e| {
                tracing::error!(error = %e, "Txn-Token minting failed; refusing");
                DenyReason::DependencyUnavailable
            })?;
            self.audit
                .record_detached(AuditRecord::txn_token_issued(txn.clone()).interaction_id(iid));
            eval.txn = Some(txn);
            return HeaderValue::from_str(&jwt)
                .map(Some)
                .map_err(|_| DenyReason::DependencyUnavailable);
        }
        // Internal hop: the verified inbound Txn-Token travels on unchanged within the domain.
        eval.txn = t.txn.clone();
        Ok(t.txn
            .as_ref()
            .and_then(|_| headers.get(txn_token::HEADER).cloned()))
    }

    /// Refusals that need no body and no route: oversized headers, and a declared
    /// `Content-Length` over `max_body_bytes` (413 before a byte of the body is read).
    pub(super) fn early_refusal(&self, h: &HeaderMap) -> Option<DenyReason> {
        let limits = self.config.listen.limits;
        if headers::header_bytes(h) > limits.max_header_bytes {
            return Some(DenyReason::HeadersTooLarge);
        }
        if content_length(h).is_some_and(|n| n > limits.max_body_bytes as u64) {
            return Some(DenyReason::RequestTooLarge);
        }
        None
    }

    /// RFC 6750 §2.2: a form body may carry an access token, which is refused. Called only for
    /// a request that is otherwise allowed (authorize before you buffer); any other body
    /// streams untouched.
    pub(super) async fn check_form_body(
        &self,
        h: &HeaderMap,
        slot: &mut BodySlot,
    ) -> Result<(), DenyReason> {
        if !is_form(h) {
            return Ok(());
        }
        let bytes = self.buffer_body(h, slot).await?;
        if path::form_has_access_token(&bytes) {
            return Err(DenyReason::RequestMalformed);
        }
        Ok(())
    }

    /// Reads the whole body within `max_body_bytes` and the buffer budget, leaving the identical
    /// bytes in `slot` for the upstream.
    pub(super) async fn buffer_body(
        &self,
        h: &HeaderMap,
        slot: &mut BodySlot,
    ) -> Result<Bytes, DenyReason> {
        self.buffers
            .buffer(slot, content_length(h), &self.metrics)
            .await
            .map_err(|e| match e {
                BufferError::TooLarge => DenyReason::RequestTooLarge,
                BufferError::BudgetSpent => {
                    tracing::warn!("request body buffer budget spent; refusing");
                    DenyReason::DependencyUnavailable
                }
                BufferError::Client => DenyReason::RequestMalformed,
            })
    }

    /// The client certificate: this connection's (mTLS), or one forwarded by a trusted TLS
    /// terminator. A forwarded-certificate header from anyone else is removed and ignored.
    pub(super) fn client_cert(&self, h: &mut HeaderMap, conn: &ConnInfo) -> Option<[u8; 32]> {
        let Some(fwd) = &self.config.listen.forwarded_client_cert else {
            return conn.client_cert_sha256;
        };
        let trusted = fwd.trusted_peers.iter().any(|c| c.contains(conn.peer.ip()));
        if !trusted {
            h.remove(&fwd.header);
            return conn.client_cert_sha256;
        }
        let forwarded = h
            .get(&fwd.header)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| crate::mtls::parse_forwarded(v, fwd.format).ok());
        forwarded.or(conn.client_cert_sha256)
    }
}

fn content_length(h: &HeaderMap) -> Option<u64> {
    h.get(CONTENT_LENGTH)?.to_str().ok()?.parse().ok()
}

fn is_form(h: &HeaderMap) -> bool {
    h.get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| {
            ct.split(';').next().is_some_and(|m| {
                m.trim()
                    .eq_ignore_ascii_case("application/x-www-form-urlencoded")
            })
        })
}
