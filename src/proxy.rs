//! The single enforcement point: takes a request, snapshots the policy, gathers the facts
//! (token from cache or JWKS, DPoP proof, client certificate), calls the pure `decide`, writes the
//! audit record, then forwards or answers with the denial of its reason (`response::deny`).

pub mod body_limit;
mod client_body;
mod consent;
mod content_type;
pub mod credentials;
mod evaluate;
pub mod forward;
pub mod headers;
mod host;
mod record;
mod request;
mod revoked;
mod signed;
mod trace;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use arc_swap::ArcSwap;
use http::header::HeaderValue;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;

use crate::assurance::AssuranceRule;
use crate::audit::{AuditLog, Durability};
use crate::audit::{AuditRecord, ConsentInfo};
use crate::clock::Clock;
use crate::config::Config;
use crate::consent::ConsentClient;
use crate::decide::{AuthScheme, Decision};
use crate::dpop::{MemoryReplayStore, ReplayStore};
use crate::http_client::HttpsClient;
use crate::metrics::{self, Metrics};
use crate::path;
use crate::policy::{Mode, PolicySet, Route};
use crate::reason::DenyReason;
use crate::response::{self, Body, ChallengeContext, INTERACTION_ID};
use crate::token::{TokenDigest, TokenVerifier, VerifiedToken};
use crate::txn_token::{TxnTokenIssuer, TxnTokenVerifier};

use body_limit::{BodySlot, BufferBudget};
use forward::{Upstream, UpstreamError};
use record::{Outcome, RequestInfo};

/// What the server knows about the connection a request came on.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    pub peer: SocketAddr,
    /// SHA-256 of the verified client certificate (mTLS on this connection).
    pub client_cert_sha256: Option<[u8; 32]>,
    /// That certificate as the API receives it (`tls::client_cert`), encoded once per
    /// connection in the header format `headers::UpstreamHeaders::client_cert_header` names.
    pub client_cert_header: Option<HeaderValue>,
    /// Whether the connection is TLS (for `x-forwarded-proto`).
    pub tls: bool,
}

/// Marks a response relayed from the upstream (as opposed to one the proxy answered itself,
/// possibly before the request body was read: the server closes those HTTP/1.1 connections).
#[derive(Debug, Clone, Copy)]
pub struct Relayed;

/// Shared state of the proxy: one per process, behind an `Arc`.
pub struct Guard {
    config: Arc<Config>,
    policies: ArcSwap<PolicySet>,
    tokens: TokenVerifier,
    upstream: Upstream,
    upstream_headers: headers::UpstreamHeaders,
    clock: Clock,
    metrics: Arc<Metrics>,
    audit: AuditLog,
    replay: ReplayStore,
    buffers: BufferBudget,
    txn_issuer: Option<TxnTokenIssuer>,
    txn_verifier: Option<TxnTokenVerifier>,
    consent: Option<Arc<ConsentClient>>,
    dpop_algs: String,
    draining: AtomicBool,
    revocations: Arc<crate::revocation::Revocations>,
    /// RFC 9421: client keys, the signature window, the response signing key.
    signatures: signed::Signatures,
}

/// The outcome of evaluating a request, before any response is written.
pub struct Evaluation {
    pub route: Option<Arc<Route>>,
    pub decision: Decision,
    pub token: Option<Arc<VerifiedToken>>,
    pub digest: Option<TokenDigest>,
    pub scheme: Option<AuthScheme>,
    pub decide_ns: u64,
    /// A DPoP nonce to hand out (RFC 9449 §8.2), when nonces are required.
    pub dpop_nonce: Option<String>,
    /// The transaction id: of the Txn-Token minted for this request, or of the verified inbound
    /// one at an internal hop.
    pub txn: Option<String>,
    /// The consent behind the request (audit, identity header, Txn-Token).
    pub consent: Option<ConsentInfo>,
    /// The consent record's purpose, which takes precedence over the token's.
    pub consent_purpose: Option<String>,
    /// A refusal that even `mode: audit` does not forward: the request body was consumed without
    /// being kept (over the limit, buffer budget spent), or a form body carries an access token.
    pub refused_outright: bool,
    /// The verified request signature (RFC 9421), for the audit record.
    pub signature: Option<crate::audit::SignatureInfo>,
}

impl Evaluation {
    fn early(reason: DenyReason, scheme: Option<AuthScheme>) -> Self {
        Self {
            route: None,
            decision: Decision::Deny(reason),
            token: None,
            digest: None,
            scheme,
            decide_ns: 0,
            dpop_nonce: None,
            txn: None,
            consent: None,
            consent_purpose: None,
            refused_outright: false,
            signature: None,
        }
    }

    /// `api`/`route` metric labels: compiled names only, `unmatched` before a route is known.
    fn labels(&self) -> (&str, &str) {
        match &self.route {
            Some(r) => (&r.api, &r.name),
            None => ("unmatched", "unmatched"),
        }
    }

    /// Forward the request? Allowed ones, and denials on a route in `mode: audit`.
    fn forwards(&self) -> bool {
        if self.refused_outright {
            return false;
        }
        match self.decision {
            Decision::Allow(_) => true,
            Decision::Deny(_) => self.route.as_ref().is_some_and(|r| r.mode == Mode::Audit),
        }
    }
}

impl Guard {
    pub fn new(
        config: Arc<Config>,
        policies: PolicySet,
        http: HttpsClient,
        clock: Clock,
        metrics: Arc<Metrics>,
        audit: AuditLog,
    ) -> Result<Self, String> {
        let txn = &config.transaction_token;
        let txn_issuer = match &txn.mint {
            None => None,
            Some(m) => Some(TxnTokenIssuer::new(m).map_err(|e| format!("transaction_token: {e}"))?),
        };
        let txn_verifier = txn
            .accept
            .as_ref()
            .map(|a| TxnTokenVerifier::new(a, http.clone(), metrics.clone()));
        check_policies(&config, &policies)?;
        let consent = config
            .consent
            .clone()
            .map(|c| Arc::new(ConsentClient::new(c, http.clone(), metrics.clone())));
        let tokens = TokenVerifier::new(
            &config.issuers,
            config.token_cache_capacity,
            http.clone(),
            clock.clone(),
            metrics.clone(),
        );
        let signatures = signed::Signatures::new(&config, &http, &metrics)?;
        let (revocations, shared_replay) = revoked::build(
            &config,
            &metrics,
            &audit,
            &clock,
            &tokens,
            consent.as_ref(),
            http,
        )?;
        let upstream = Upstream::new(&config.upstream);
        let upstream_headers = headers::UpstreamHeaders::new(&config);
        let dpop_algs = config
            .dpop
            .algorithms
            .iter()
            .map(|a| a.as_str())
            .collect::<Vec<_>>()
            .join(" ");
        metrics.set_policy_revision(policies.revision());
        Ok(Self {
            txn_issuer,
            txn_verifier,
            consent,
            dpop_algs,
            policies: ArcSwap::from_pointee(policies),
            tokens,
            upstream,
            upstream_headers,
            clock,
            metrics,
            audit,
            replay: replay_store(shared_replay, config.dpop.replay_cache_max_entries),
            buffers: BufferBudget::new(
                config.listen.limits.max_buffered_bytes,
                config.listen.limits.max_body_bytes,
            ),
            config,
            draining: AtomicBool::new(false),
            revocations,
            signatures,
        })
    }

    /// Starts the background key refreshes (issuers, registered clients, and the trusted
    /// Txn-Token issuer).
    pub fn spawn_refresh(&self) {
        self.tokens.spawn_refresh();
        self.signatures.spawn_refresh();
        if let Some(v) = &self.txn_verifier {
            v.spawn_refresh();
        }
        if let Some(r) = self.revocations.ssf() {
            crate::token::jwks::spawn_refresh(r.keys().clone());
        }
        if let Some(s) = self.revocations.shared() {
            s.spawn(self.revocations.clone());
        }
    }

    /// The public keys of this sidecar's Txn-Token signing key (admin `/jwks`).
    pub fn txn_jwks(&self) -> Option<serde_json::Value> {
        self.txn_issuer.as_ref().map(TxnTokenIssuer::jwks)
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn tokens(&self) -> &TokenVerifier {
        &self.tokens
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The metrics exposition for a scrape. Gauges of state that shrinks by time alone are
    /// brought up to date first: the replay store drops expired proofs and reports its size,
    /// so `fapi_guard_replay_cache_entries` is fresh even when no DPoP request came lately.
    pub fn metrics_text(&self) -> String {
        self.replay.purge_expired(self.clock.now_unix());
        self.metrics.set_replay_entries(self.replay.entries());
        self.refresh_cache_gauges();
        self.metrics.encode()
    }

    /// `fapi_guard_cache_entries` / `fapi_guard_cache_capacity`: every in-memory cache's size
    /// against its bound, at scrape time.
    fn refresh_cache_gauges(&self) {
        for (cache, entries, bound) in self.tokens.cache_sizes() {
            self.metrics.set_cache_size(cache, entries, bound);
        }
        if let Some(c) = &self.consent {
            for (cache, entries, bound) in c.cache_sizes() {
                self.metrics.set_cache_size(cache, entries, bound);
            }
        }
        let replay_bound =
            u64::try_from(self.config.dpop.replay_cache_max_entries).unwrap_or(u64::MAX);
        let replay = u64::try_from(self.replay.entries()).unwrap_or(u64::MAX);
        self.metrics
            .set_cache_size("dpop_replay", replay, replay_bound);
    }

    pub fn audit(&self) -> &AuditLog {
        &self.audit
    }

    pub fn policies(&self) -> Arc<PolicySet> {
        self.policies.load_full()
    }

    /// Swaps in a new policy set, unless it needs something this process was not configured
    /// with (e.g. a consent service).
    pub fn replace_policies(&self, p: PolicySet) -> Result<(), String> {
        check_policies(&self.config, &p)?;
        self.metrics.set_policy_revision(p.revision());
        self.policies.store(Arc::new(p));
        Ok(())
    }

    pub fn set_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// Ready when issuer keys are loaded and we are not draining (policies are compiled before
    /// the guard exists; the state backend is in-process).
    pub fn is_ready(&self) -> bool {
        !self.is_draining()
            && self.tokens.all_keys_loaded()
            && self
                .txn_verifier
                .as_ref()
                .is_none_or(TxnTokenVerifier::has_keys)
            && self.revocations.shared().is_none_or(|s| s.ready())
    }

    /// Handles one request end to end. Never fails: every path ends in a response.
    pub async fn handle(&self, req: Request<Incoming>, conn: &ConnInfo) -> Response<Body> {
        let started = Instant::now();
        let iid = interaction_id(req.headers());
        let (trace_id, new_trace) = trace::trace_id(req.headers());
        let work = self.handle_inner(req, conn, &iid, &trace_id, new_trace, started);
        match tokio::time::timeout(self.config.listen.limits.request_timeout, work).await {
            Ok(resp) => resp,
            Err(_) => {
                // Whatever stage was running (a slow body, a slow dependency, the upstream) is
                // dropped; the record says why the client got 504.
                let waited = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
                self.audit.record_detached(
                    AuditRecord::upstream_failure("request_timeout", Some(504), waited)
                        .interaction_id(&iid)
                        .trace_id(&trace_id),
                );
                response::upstream_error(StatusCode::GATEWAY_TIMEOUT, "request_timeout", &iid)
            }
        }
    }

    async fn handle_inner(
        &self,
        req: Request<Incoming>,
        conn: &ConnInfo,
        iid: &str,
        trace_id: &str,
        new_trace: bool,
        started: Instant,
    ) -> Response<Body> {
        let (mut parts, body) = req.into_parts();
        let policies = self.policies.load_full();
        // One limit for every transfer coding, and a body is read only for
        // a request that is otherwise authorized (`evaluate` reads a JSON body for the consent
        // check only after token, binding, scope and replay passed; the form check runs last).
        let limit = self.config.listen.limits.max_body_bytes;
        let mut slot = BodySlot::new(body_limit::limited(body, limit, self.metrics.clone()));
        let early = self.early_refusal(&parts);
        let peer = self.peer_facts(&parts, conn);
        let early = early.or(peer.as_ref().err().copied());
        let peer = peer.unwrap_or_default();
        let mut eval = match early {
            Some(r) => Evaluation::early(r, None),
            None => {
                self.evaluate(&parts, &policies, peer.cert_sha256.as_ref(), &mut slot)
                    .await
            }
        };
        if eval.forwards()
            && let Err(r) = self.check_form_body(&parts.headers, &mut slot).await
        {
            eval.decision = Decision::Deny(r);
            eval.refused_outright = true;
        }
        // RFC 9421: after everything else allowed the request (it may read the body).
        if eval.forwards() {
            self.check_request_signature(&parts, &mut eval, &mut slot)
                .await;
        }
        eval.refused_outright |= slot.spoiled;
        // The buffered bytes count against `max_buffered_bytes` until the request is done.
        let BodySlot {
            body,
            permit: _buffered,
            ..
        } = slot;
        let info = RequestInfo {
            interaction_id: iid,
            trace_id,
            method: parts.method.as_str(),
            path: parts.uri.path(),
            revision: policies.revision(),
        };
        if !eval.forwards() {
            self.observe_decision(&eval);
            let resp = self.respond_deny(&eval, iid, trace_id);
            self.audit.record_detached(record::decision(&eval, &info));
            let (api, route) = eval.labels();
            self.metrics
                .observe_request(api, route, started.elapsed().as_secs_f64());
            return resp;
        }

        // Verified context for the upstream: identity headers and the Txn-Token, prepared before
        // the record so that a failure is recorded as what the client gets; set on the request
        // last, after every removal (`headers::UpstreamHeaders::prepare`).
        let context =
            match self.upstream_context(&parts.headers, &parts.method, &mut eval, conn, iid) {
                Ok(c) => c,
                Err(reason) => {
                    eval.decision = Decision::Deny(reason);
                    self.observe_decision(&eval);
                    let resp = self.respond_deny(&eval, iid, trace_id);
                    self.audit.record_detached(record::decision(&eval, &info));
                    return resp;
                }
            };

        // Spec §8: with `before_forward` no request reaches the API without its record.
        let mut outcome = Outcome::new(&self.audit, &eval, &info, started);
        if self.audit.durability() == Durability::BeforeForward
            && let Err(e) = self.audit.record(record::decision(&eval, &info)).await
        {
            tracing::error!(interaction_id = iid, error = %e, "audit record not written; refusing");
            outcome.disarm();
            eval.decision = Decision::Deny(DenyReason::DependencyUnavailable);
            self.observe_decision(&eval);
            return self.respond_deny(&eval, iid, trace_id);
        }
        self.observe_decision(&eval);

        let Some(uri) = path::normalize(parts.uri.path())
            .ok()
            .and_then(|p| self.upstream.uri(&p, parts.uri.query()))
        else {
            outcome.disarm();
            eval.decision = Decision::Deny(DenyReason::RequestMalformed);
            return self.respond_deny(&eval, iid, trace_id);
        };
        let proto = if conn.tls {
            "https"
        } else {
            self.config.listen.public_scheme
        };
        let cert_name = self.upstream_headers.client_cert_header();
        self.upstream_headers.prepare(
            &mut parts.headers,
            &headers::Asserted {
                identity: context.identity.as_ref(),
                txn_token: context.txn_token,
                interaction_id: iid,
                new_trace: new_trace.then_some(trace_id),
                forwarding: headers::Forwarding {
                    peer: conn.peer.ip(),
                    proto,
                    host: peer.host,
                    trusted_peer: peer.trusted,
                    client_cert: peer.cert_header.as_ref().map(|v| (cert_name, v)),
                },
            },
        );
        // What the response signature covers of the request (`;req`), kept before the URI is
        // rewritten for the upstream.
        let exchange = eval
            .route
            .as_ref()
            .filter(|r| r.signatures.signs_responses())
            .map(|_| signed::SignedExchange::new(&parts));
        parts.uri = uri;
        let (body, client_body_failed) = client_body::watch(body);
        let sent = self.upstream.send(Request::from_parts(parts, body)).await;
        let (api, route) = eval.labels();
        self.metrics
            .observe_request(api, route, started.elapsed().as_secs_f64());
        match sent {
            Ok(resp) => {
                let (mut rp, rb) = resp.into_parts();
                headers::remove_hop_by_hop(&mut rp.headers, &[]);
                rp.extensions.insert(Relayed);
                if let Some(v) = eval
                    .dpop_nonce
                    .as_deref()
                    .and_then(|n| HeaderValue::from_str(n).ok())
                {
                    rp.headers.insert("dpop-nonce", v);
                }
                let rb = match exchange {
                    None => {
                        outcome.finish(rp.status.as_u16(), None);
                        forward::WatchedBody::new(rb, self.metrics.clone(), iid).boxed()
                    }
                    // RFC 9421 / FAPI 2.0: a signed route's response is never relayed unsigned.
                    Some(x) => match self.sign_response(&mut rp, rb, &x).await {
                        Ok((bytes, info)) => {
                            outcome.response_signature(info);
                            outcome.finish(rp.status.as_u16(), None);
                            response::full(bytes)
                        }
                        Err(kind) => {
                            self.metrics.upstream_error(kind);
                            tracing::warn!(interaction_id = iid, kind, "response not signed");
                            outcome.finish(signed::UNSIGNED_STATUS.as_u16(), Some(kind));
                            return response::upstream_error(signed::UNSIGNED_STATUS, kind, iid);
                        }
                    },
                };
                let mut resp = Response::from_parts(rp, rb);
                response::set_interaction_id(&mut resp, iid);
                resp
            }
            // The client's body broke mid-stream (a bad chunk, a cut connection): the upstream
            // request was aborted, never completed; the fault is the client's.
            Err(_) if client_body_failed.get() => {
                outcome.finish(400, Some("client_body"));
                eval.decision = Decision::Deny(DenyReason::RequestMalformed);
                self.respond_deny(&eval, iid, trace_id)
            }
            // The streamed body passed `max_body_bytes` before the API answered: the client's
            // fault too (counted in fapi_guard_body_limit_exceeded_total, not as an upstream
            // error).
            Err(UpstreamError::BodyTooLarge) => {
                outcome.finish(413, Some(UpstreamError::BodyTooLarge.kind()));
                eval.decision = Decision::Deny(DenyReason::RequestTooLarge);
                self.respond_deny(&eval, iid, trace_id)
            }
            Err(e) => {
                self.metrics.upstream_error(e.kind());
                tracing::warn!(interaction_id = iid, trace_id, error = %e, "upstream error");
                let (status, code) = match e {
                    UpstreamError::Timeout => (StatusCode::GATEWAY_TIMEOUT, "upstream_timeout"),
                    UpstreamError::Connect
                    | UpstreamError::Protocol
                    | UpstreamError::BodyTooLarge => {
                        (StatusCode::BAD_GATEWAY, "upstream_unavailable")
                    }
                };
                outcome.finish(status.as_u16(), Some(e.kind()));
                response::upstream_error(status, code, iid)
            }
        }
    }

    /// Counts the final decision (after every late refusal: minting, audit sink) by route and
    /// reason, with the time `decide` took.
    fn observe_decision(&self, eval: &Evaluation) {
        let (api, route) = eval.labels();
        let decision = match (eval.decision, eval.forwards()) {
            (Decision::Allow(_), _) => metrics::DECISION_ALLOW,
            (Decision::Deny(_), true) => metrics::DECISION_AUDIT_DENY,
            (Decision::Deny(_), false) => metrics::DECISION_DENY,
        };
        let reason = match eval.decision {
            Decision::Deny(r) => r.as_str(),
            Decision::Allow(_) => metrics::REASON_NONE,
        };
        self.metrics
            .observe_decision(api, route, decision, reason, eval.decide_ns as f64 / 1e9);
    }

    fn respond_deny(&self, eval: &Evaluation, iid: &str, trace_id: &str) -> Response<Body> {
        let Decision::Deny(reason) = eval.decision else {
            // Only called for denials; an allow here would be a bug, so fail closed.
            return response::upstream_error(StatusCode::INTERNAL_SERVER_ERROR, "internal", iid);
        };
        let scope = eval.route.as_ref().map(|r| r.scopes.join(" "));
        let assurance = eval.route.as_ref().and_then(|r| r.assurance.as_ref());
        let (api, route) = eval.labels();
        tracing::info!(
            interaction_id = iid,
            trace_id,
            api,
            route,
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
                dpop_nonce: eval.dpop_nonce.as_deref(),
                acr_values: assurance.and_then(AssuranceRule::acr_values),
                max_age: assurance.and_then(AssuranceRule::max_age),
            },
        )
    }
}

/// The DPoP replay store: fleet-wide on Redis when `state.backend: redis`, else this process's.
fn replay_store(shared: Option<crate::state::RedisReplay>, max_entries: usize) -> ReplayStore {
    let local = MemoryReplayStore::new(max_entries);
    match shared {
        None => ReplayStore::Memory(local),
        Some(shared) => ReplayStore::Shared {
            fallback: shared.state().on_unavailable() == crate::state::OnUnavailable::Local,
            shared,
            local,
        },
    }
}

/// Cross-checks policies against the configuration: a route that reads consent records needs
/// the `consent:` service section.
fn check_policies(config: &Config, p: &PolicySet) -> Result<(), String> {
    match (p.needs_consent_service(), &config.consent) {
        (Some(r), None) => Err(format!(
            "route {:?} of api {:?} checks consent records, but the configuration has no `consent:` section",
            r.name, r.api
        )),
        // RFC 9421 routes: `clients:` to verify, `signatures:` to sign.
        _ => signed::check_policies(config, p),
    }
}

/// The client's `x-fapi-interaction-id` when it is a UUID (FAPI), otherwise a fresh one.
pub fn interaction_id(h: &HeaderMap) -> String {
    match h.get(INTERACTION_ID).and_then(|v| v.to_str().ok()) {
        Some(s) if s.len() == 36 && uuid::Uuid::try_parse(s).is_ok() => s.to_owned(),
        _ => crate::ids::uuid_v4(),
    }
}
