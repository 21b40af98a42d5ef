//! Reading what the request carries before and after the decision: the body where a check
//! needs it, the client certificate, and the verified context for the upstream (identity
//! headers, Txn-Token).

use bytes::Bytes;
use http::HeaderMap;
use http::header::{CONTENT_LENGTH, HeaderValue};

use super::body_limit::{BodySlot, BufferError};
use super::{ConnInfo, Evaluation, Guard, content_type, headers, host};
use crate::audit::AuditRecord;
use crate::decide::Decision;
use crate::identity::{IdentityFields, IdentityValues};
use crate::path;
use crate::reason::DenyReason;
use crate::txn_token::{self, RequestContext, TxnContext};

/// The verified context for the upstream, computed before the decision is recorded and set
/// on the request last (`headers::UpstreamHeaders::prepare`).
#[derive(Debug, Default)]
pub(super) struct UpstreamContext {
    pub identity: Option<IdentityFields>,
    pub txn_token: Option<HeaderValue>,
}

/// What the connection and the request line say about the client, checked before anything else.
#[derive(Debug, Default)]
pub(super) struct PeerFacts {
    /// The client certificate the binding check uses.
    pub cert_sha256: Option<[u8; 32]>,
    /// The same certificate as forwarded to the API.
    pub cert_header: Option<HeaderValue>,
    /// The authority the client addressed (validated `Host` / `:authority`).
    pub host: Option<HeaderValue>,
    /// The peer is a trusted hop (`forwarded_client_cert.trusted_peers`).
    pub trusted: bool,
}

impl Guard {
    /// Computes the identity headers from the verified token and mints (edge) or passes on
    /// (internal hop) the Txn-Token.
    pub(super) fn upstream_context(
        &self,
        headers: &HeaderMap,
        method: &http::Method,
        eval: &mut Evaluation,
        conn: &ConnInfo,
        iid: &str,
    ) -> Result<UpstreamContext, DenyReason> {
        let allowed = matches!(eval.decision, Decision::Allow(_));
        let token = eval.token.clone().filter(|_| allowed);
        let consent_id = eval.consent.as_ref().map(|c| c.id.as_str());
        let Some(t) = token else {
            return Ok(UpstreamContext::default());
        };
        let names = &self.config.upstream.identity_headers;
        let identity = names
            .fields(&IdentityValues {
                subject: &t.sub,
                client_id: &t.client_id,
                consent_id,
            })
            .map_err(|_| DenyReason::TokenMalformed)?;
        let mut ctx = UpstreamContext {
            identity: Some(identity),
            txn_token: None,
        };
        if let Some(issuer) = &self.txn_issuer {
            let chain = t.delegation.as_ref().map_err(|r| *r)?;
            let route = eval.route.as_ref().map_or("", |r| &r.name);
            let txn_ctx = TxnContext {
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
            let (jwt, txn) = issuer.mint(&txn_ctx, self.clock.now_unix()).map_err(|e| {
                tracing::error!(error = %e, "Txn-Token minting failed; refusing");
                DenyReason::DependencyUnavailable
            })?;
            self.audit
                .record_detached(AuditRecord::txn_token_issued(txn.clone()).interaction_id(iid));
            eval.txn = Some(txn);
            ctx.txn_token =
                Some(HeaderValue::from_str(&jwt).map_err(|_| DenyReason::DependencyUnavailable)?);
            return Ok(ctx);
        }
        // Internal hop: the verified inbound Txn-Token travels on unchanged within the domain.
        eval.txn = t.txn.clone();
        ctx.txn_token = t
            .txn
            .as_ref()
            .and_then(|_| headers.get(txn_token::HEADER).cloned());
        Ok(ctx)
    }

    /// Refusals that need no body and no route: an oversized header block (request target
    /// included), a declared `Content-Length` over `max_body_bytes` (413 before a byte of the
    /// body is read), and a `Content-Type` the API could read as another media type (two field
    /// lines, or two types folded into one line: 400).
    pub(super) fn early_refusal(&self, parts: &http::request::Parts) -> Option<DenyReason> {
        let limits = self.config.listen.limits;
        let h = &parts.headers;
        // The request target counts too: hyper's own limit sits at 4 × max_header_bytes, and a
        // target between the two would otherwise be forwarded.
        let target = parts.uri.path_and_query().map_or(0, |p| p.as_str().len());
        if headers::header_bytes(h).saturating_add(target) > limits.max_header_bytes {
            return Some(DenyReason::HeadersTooLarge);
        }
        if content_length(h).is_some_and(|n| n > limits.max_body_bytes as u64) {
            return Some(DenyReason::RequestTooLarge);
        }
        if content_type::single(h).is_err() {
            return Some(DenyReason::RequestMalformed);
        }
        None
    }

    /// RFC 6750 §2.2: a form body may carry an access token, which is refused. Called only for
    /// a request that is otherwise allowed (authorize before you buffer); any other body
    /// streams untouched. The body is searched as UTF-8, so a form in another `charset` is
    /// refused rather than searched for the wrong bytes.
    pub(super) async fn check_form_body(
        &self,
        h: &HeaderMap,
        slot: &mut BodySlot,
    ) -> Result<(), DenyReason> {
        // `early_refusal` already refused an ambiguous Content-Type.
        let Ok(Some(ct)) = content_type::single(h) else {
            return Ok(());
        };
        if !ct.is_form() {
            return Ok(());
        }
        if !ct.utf8 {
            return Err(DenyReason::RequestMalformed);
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

    /// The authority the client addressed and the client certificate: this connection's
    /// (mTLS), or one forwarded by a trusted TLS terminator. A forwarded-certificate header
    /// from anyone else is ignored (and stripped before the upstream); from a trusted peer it
    /// must be one field line, or which line would the API read? (400 `request_malformed`.)
    pub(super) fn peer_facts(
        &self,
        parts: &http::request::Parts,
        conn: &ConnInfo,
    ) -> Result<PeerFacts, DenyReason> {
        let host = host::authority(parts)?;
        let own = PeerFacts {
            cert_sha256: conn.client_cert_sha256,
            cert_header: conn.client_cert_header.clone(),
            host,
            trusted: false,
        };
        let Some(fwd) = &self.config.listen.forwarded_client_cert else {
            return Ok(own);
        };
        if !fwd.trusted_peers.iter().any(|c| c.contains(conn.peer.ip())) {
            return Ok(own);
        }
        let mut lines = parts.headers.get_all(&fwd.header).iter();
        let (Some(line), None) = (lines.next(), lines.next()) else {
            return match parts.headers.contains_key(&fwd.header) {
                true => Err(DenyReason::RequestMalformed),
                false => Ok(PeerFacts {
                    trusted: true,
                    ..own
                }),
            };
        };
        let forwarded = line
            .to_str()
            .ok()
            .and_then(|v| crate::mtls::parse_forwarded(v, fwd.format).ok());
        Ok(match forwarded {
            Some(sha) => PeerFacts {
                cert_sha256: Some(sha),
                cert_header: Some(line.clone()),
                trusted: true,
                ..own
            },
            None => PeerFacts {
                trusted: true,
                ..own
            },
        })
    }
}

fn content_length(h: &HeaderMap) -> Option<u64> {
    h.get(CONTENT_LENGTH)?.to_str().ok()?.parse().ok()
}
