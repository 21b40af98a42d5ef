//! The single enforcement point: takes a request, snapshots the policy, gathers the facts
//! (token from cache or JWKS, proof, certificate), calls the pure `decide`, then forwards or
//! answers with the spec's denial.

pub mod credentials;
pub mod forward;
pub mod headers;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use arc_swap::ArcSwap;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE, HOST, HeaderValue};
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;

use crate::clock::Clock;
use crate::config::Config;
use crate::decide::{self, AuthScheme, Decision, DpopFact, Facts, TokenFact};
use crate::http_client::HttpsClient;
use crate::path;
use crate::policy::{Mode, PolicySet, Route};
use crate::reason::DenyReason;
use crate::response::{self, Body, ChallengeContext, INTERACTION_ID};
use crate::token::{self, TokenFailure, TokenVerifier, VerifiedToken};

use forward::{Upstream, UpstreamError};

/// What the server knows about the connection a request came on.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    pub peer: SocketAddr,
    /// SHA-256 of the verified client certificate (mTLS on this connection).
    pub client_cert_sha256: Option<[u8; 32]>,
}

/// Shared state of the proxy: one per process, behind an `Arc`.
pub struct Guard {
    config: Arc<Config>,
    policies: ArcSwap<PolicySet>,
    tokens: TokenVerifier,
    upstream: Upstream,
    clock: Clock,
    dpop_algs: String,
    draining: AtomicBool,
}

/// The outcome of evaluating a request, before any response is written.
pub struct Evaluation {
    pub route: Option<Arc<Route>>,
    pub decision: Decision,
    pub token: Option<Arc<VerifiedToken>>,
    pub scheme: Option<AuthScheme>,
    pub decide_ns: u64,
}

impl Evaluation {
    fn early(reason: DenyReason, scheme: Option<AuthScheme>) -> Self {
        Self {
            route: None,
            decision: Decision::Deny(reason),
            token: None,
            scheme,
            decide_ns: 0,
        }
    }
}

impl Guard {
    pub fn new(config: Arc<Config>, policies: PolicySet, http: HttpsClient, clock: Clock) -> Self {
        let tokens = TokenVerifier::new(
            &config.issuers,
            config.token_cache_capacity,
            http,
            clock.clone(),
        );
        let upstream = Upstream::new(&config.upstream);
        Self {
            dpop_algs: "PS256 ES256 EdDSA".to_owned(),
            policies: ArcSwap::from_pointee(policies),
            tokens,
            upstream,
            clock,
            config,
            draining: AtomicBool::new(false),
        }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn tokens(&self) -> &TokenVerifier {
        &self.tokens
    }

    pub fn policies(&self) -> Arc<PolicySet> {
        self.policies.load_full()
    }

    pub fn replace_policies(&self, p: PolicySet) {
        self.policies.store(Arc::new(p));
    }

    pub fn set_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// Ready when issuer keys are loaded and we are not draining (policies are compiled before
    /// the guard exists).
    pub fn is_ready(&self) -> bool {
        !self.is_draining() && self.tokens.all_keys_loaded()
    }

    /// Handles one request end to end. Never fails: every path ends in a response.
    pub async fn handle(&self, req: Request<Incoming>, conn: &ConnInfo) -> Response<Body> {
        let limits = self.config.listen.limits;
        let iid = interaction_id(req.headers());
        match tokio::time::timeout(limits.request_timeout, self.handle_inner(req, conn, &iid)).await
        {
            Ok(resp) => resp,
            Err(_) => {
                response::upstream_error(StatusCode::GATEWAY_TIMEOUT, "request_timeout", &iid)
            }
        }
    }

    async fn handle_inner(
        &self,
        req: Request<Incoming>,
        conn: &ConnInfo,
        iid: &str,
    ) -> Response<Body> {
        let (mut parts, body) = req.into_parts();
        let policies = self.policies.load_full();
        let limits = self.config.listen.limits;

        // Bodies are read only where a check needs them: a form body may carry an access token
        // (RFC 6750 §2.2), which is refused.
        let mut body: Body = body.boxed();
        let mut early = None;
        if headers::header_bytes(&parts.headers) > limits.max_header_bytes {
            early = Some(DenyReason::HeadersTooLarge);
        } else if content_length(&parts.headers).is_some_and(|n| n > limits.max_body_bytes as u64) {
            early = Some(DenyReason::RequestTooLarge);
        } else if is_form(&parts.headers) {
            match Limited::new(body, limits.max_body_bytes).collect().await {
                Ok(b) => {
                    let bytes = b.to_bytes();
                    if path::form_has_access_token(&bytes) {
                        early = Some(DenyReason::RequestMalformed);
                    }
                    body = response::full(bytes);
                }
                Err(_) => {
                    return self
                        .respond_deny(&Evaluation::early(DenyReason::RequestTooLarge, None), iid);
                }
            }
        }

        let eval = match early {
            Some(r) => Evaluation::early(r, None),
            None => self.evaluate(&parts, &policies, conn).await,
        };
        let forward = match eval.decision {
            Decision::Allow(_) => true,
            // `mode: audit` forwards what would be denied (the record says so), except requests
            // that matched no route or could not be parsed.
            Decision::Deny(_) => eval.route.as_ref().is_some_and(|r| r.mode == Mode::Audit),
        };
        if !forward {
            return self.respond_deny(&eval, iid);
        }
        let Ok(normalized) = path::normalize(parts.uri.path()) else {
            return self.respond_deny(&Evaluation::early(DenyReason::RequestMalformed, None), iid);
        };
        let Some(uri) = self.upstream.uri(&normalized, parts.uri.query()) else {
            return self.respond_deny(&Evaluation::early(DenyReason::RequestMalformed, None), iid);
        };
        drop(normalized);
        let host = parts.headers.get(HOST).cloned().or_else(|| {
            parts
                .uri
                .authority()
                .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
        });
        headers::for_upstream(
            &mut parts.headers,
            conn.peer.ip(),
            self.config.listen.public_scheme,
            host,
        );
        if let Ok(v) = HeaderValue::from_str(iid) {
            parts.headers.insert(INTERACTION_ID, v);
        }
        parts.uri = uri;
        match self.upstream.send(Request::from_parts(parts, body)).await {
            Ok(resp) => {
                let (mut rp, rb) = resp.into_parts();
                headers::remove_hop_by_hop(&mut rp.headers);
                let mut resp = Response::from_parts(rp, rb.boxed());
                response::set_interaction_id(&mut resp, iid);
                resp
            }
            Err(e) => {
                tracing::warn!(interaction_id = iid, error = %e, "upstream error");
                let (status, code) = match e {
                    UpstreamError::Timeout => (StatusCode::GATEWAY_TIMEOUT, "upstream_timeout"),
                    UpstreamError::Connect | UpstreamError::Protocol => {
                        (StatusCode::BAD_GATEWAY, "upstream_unavailable")
                    }
                };
                response::upstream_error(status, code, iid)
            }
        }
    }

    /// Every check up to the decision. No response is written here.
    pub async fn evaluate(
        &self,
        parts: &http::request::Parts,
        policies: &PolicySet,
        conn: &ConnInfo,
    ) -> Evaluation {
        // Spec §5: ambiguous paths are refused before any matching.
        let Ok(norm) = path::normalize(parts.uri.path()) else {
            return Evaluation::early(DenyReason::RequestMalformed, None);
        };
        // RFC 6750 §2.3 / FAPI 2.0: never accept a token in the query.
        if parts.uri.query().is_some_and(path::query_has_access_token) {
            return Evaluation::early(DenyReason::RequestMalformed, None);
        }
        let presented = match credentials::authorization(&parts.headers) {
            Ok(p) => p,
            Err(r) => return Evaluation::early(r, None),
        };
        let scheme = presented.map(|p| p.scheme);
        if let Err(r) = credentials::dpop_proof(&parts.headers) {
            return Evaluation::early(r, scheme);
        }
        let Some(m) = policies.lookup(&parts.method, &norm) else {
            return Evaluation::early(DenyReason::RouteNotFound, scheme);
        };
        let route = m.route.clone();

        let (token, rejected) = match presented {
            Some(p) if !route.public => match self.verified_token(p.token).await {
                Ok(t) => (Some(t), None),
                Err(TokenFailure::Deny(r)) => (None, Some(r)),
                Err(TokenFailure::KeysUnavailable) => {
                    return Evaluation {
                        route: Some(route),
                        ..Evaluation::early(DenyReason::DependencyUnavailable, scheme)
                    };
                }
            },
            _ => (None, None),
        };
        let token_fact = match (&token, rejected) {
            (Some(t), _) => TokenFact::Verified(t),
            (None, Some(r)) => TokenFact::Rejected(r),
            (None, None) => TokenFact::Missing,
        };
        let facts = Facts {
            now: self.clock.now_unix(),
            scheme: scheme.unwrap_or(AuthScheme::Bearer),
            token: token_fact,
            dpop: DpopFact::Absent,
            client_cert_sha256: conn.client_cert_sha256.as_ref(),
        };
        let t0 = Instant::now();
        let decision = decide::decide(&facts, &route);
        let decide_ns = t0.elapsed().as_nanos() as u64;
        Evaluation {
            route: Some(route),
            decision,
            token,
            scheme,
            decide_ns,
        }
    }

    /// Warm path: the cache (no crypto, no I/O); cold path: full verification.
    async fn verified_token(&self, raw: &str) -> Result<Arc<VerifiedToken>, TokenFailure> {
        let digest = token::digest(raw);
        match self.tokens.cached(&digest) {
            Some(t) => Ok(t),
            None => self.tokens.verify(raw, digest).await,
        }
    }

    fn respond_deny(&self, eval: &Evaluation, iid: &str) -> Response<Body> {
        let Decision::Deny(reason) = eval.decision else {
            // Only called for denials; an allow here would be a bug, so fail closed.
            return response::upstream_error(StatusCode::INTERNAL_SERVER_ERROR, "internal", iid);
        };
        let scope = eval.route.as_ref().map(|r| r.scopes.join(" "));
        tracing::info!(
            interaction_id = iid,
            api = eval.route.as_ref().map(|r| &*r.api),
            route = eval.route.as_ref().map(|r| &*r.name),
            reason = reason.as_str(),
            "denied"
        );
        response::deny(
            reason,
            iid,
            &ChallengeContext {
                scheme: eval.scheme,
                dpop_algs: &self.dpop_algs,
                scope: scope.as_deref(),
                dpop_nonce: None,
            },
        )
    }
}

/// The client's `x-fapi-interaction-id` when it is a UUID (FAPI), otherwise a fresh one.
pub fn interaction_id(h: &HeaderMap) -> String {
    match h.get(INTERACTION_ID).and_then(|v| v.to_str().ok()) {
        Some(s) if s.len() == 36 && uuid::Uuid::try_parse(s).is_ok() => s.to_owned(),
        _ => uuid::Uuid::new_v4().hyphenated().to_string(),
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
