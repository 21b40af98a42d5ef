//! The proxy's hooks for HTTP Message Signatures (RFC 9421, FAPI 2.0 Message Signing): the
//! request signature is checked after token, binding, scope and consent passed (authorize
//! before you buffer), the body read only then and only for such a route; the response of a
//! `response: sign` route is buffered up to a bound, digested and signed. The RFC logic itself
//! lives in `crate::signature`.

use bytes::Bytes;
use http::response::Parts as ResponseHead;
use http::{HeaderMap, StatusCode};
use http_body::Body as _;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;

use super::body_limit::BodySlot;
use super::{Evaluation, Guard};
use crate::audit::SignatureInfo;
use crate::config::Config;
use crate::decide::Decision;
use crate::http_client::HttpsClient;
use crate::metrics::Metrics;
use crate::signature::config::SignatureSettings;
use crate::signature::{ClientKeys, RequestParts, ResponseSigner, SigFailure, verify};

/// Everything signatures need at run time: client keys, the time window, the response key.
pub(super) struct Signatures {
    clients: ClientKeys,
    settings: SignatureSettings,
    /// `Some` when the configuration has a `signatures:` section.
    signer: Option<ResponseSigner>,
    /// `listen.public_url` split into the `@scheme` and `@authority` clients sign.
    scheme: &'static str,
    authority: String,
}

impl Signatures {
    pub(super) fn new(
        config: &Config,
        http: &HttpsClient,
        metrics: &std::sync::Arc<Metrics>,
    ) -> Result<Self, String> {
        let signer = match &config.signatures {
            None => None,
            Some(s) => Some(ResponseSigner::new(s)?),
        };
        let settings = config
            .signatures
            .clone()
            .unwrap_or_else(|| SignatureSettings::defaults(config.listen.limits.max_body_bytes));
        let public = &config.listen.public_url;
        let authority = public
            .split_once("://")
            .map_or(public.as_str(), |(_, a)| a)
            .to_owned();
        Ok(Self {
            clients: ClientKeys::new(&config.clients, http, metrics),
            settings,
            signer,
            scheme: config.listen.public_scheme,
            authority,
        })
    }

    pub(super) fn spawn_refresh(&self) {
        self.clients.spawn_refresh();
    }

    pub(super) fn signer(&self) -> Option<&ResponseSigner> {
        self.signer.as_ref()
    }

    fn parts<'a>(
        &'a self,
        method: &'a str,
        path: &'a str,
        query: Option<&'a str>,
        headers: &'a HeaderMap,
    ) -> RequestParts<'a> {
        RequestParts {
            method,
            scheme: self.scheme,
            authority: &self.authority,
            path,
            query,
            headers,
        }
    }
}

/// What signing the response needs of the request, kept before the request moves upstream
/// (its URI is then rewritten to the API's).
pub(super) struct SignedExchange {
    method: String,
    path: String,
    query: Option<String>,
}

impl SignedExchange {
    pub(super) fn new(parts: &http::request::Parts) -> Self {
        Self {
            method: parts.method.as_str().to_owned(),
            path: parts.uri.path().to_owned(),
            query: parts.uri.query().map(str::to_owned),
        }
    }
}

impl Guard {
    /// For a route with `signatures.request` on and a request otherwise allowed: verifies the
    /// `fapi-2-request` signature and, when the request has content, its `Content-Digest`
    /// against the exact bytes that will be forwarded. A failure becomes the decision.
    pub(super) async fn check_request_signature(
        &self,
        parts: &http::request::Parts,
        eval: &mut Evaluation,
        slot: &mut BodySlot,
    ) {
        // Hot path: a route without request signatures costs one field read here.
        let Some(rule) = eval.route.as_ref().map(|r| r.signatures) else {
            return;
        };
        if !rule.verifies_requests() || !matches!(eval.decision, Decision::Allow(_)) {
            return;
        }
        let required = rule.request == crate::signature::RequestSignatures::Required;
        match self.verify_request_signature(parts, eval, slot).await {
            Ok(Some(info)) => eval.signature = Some(info),
            Ok(None) if !required => {}
            Ok(None) => eval.decision = Decision::Deny(SigFailure::Missing.reason()),
            Err(f) => {
                tracing::info!(detail = %f.detail(), "request signature refused");
                eval.decision = Decision::Deny(f.reason());
            }
        }
    }

    async fn verify_request_signature(
        &self,
        parts: &http::request::Parts,
        eval: &Evaluation,
        slot: &mut BodySlot,
    ) -> Result<Option<SignatureInfo>, SigFailure> {
        let Some(token) = &eval.token else {
            // An allowed request on a non-public route always has a verified token.
            return Err(SigFailure::Invalid("no verified token to name the client"));
        };
        let sigs = &self.signatures;
        let req = sigs.parts(
            parts.method.as_str(),
            parts.uri.path(),
            parts.uri.query(),
            &parts.headers,
        );
        let window = verify::Window {
            now: self.clock.now_unix(),
            max_age: sigs.settings.max_age,
            clock_skew: sigs.settings.clock_skew,
        };
        let Some(candidate) = verify::candidate(&req, window)? else {
            return Ok(None);
        };
        let key = sigs
            .clients
            .resolve(&token.client_id, &candidate.keyid)
            .await?;
        let mut verified = verify::with_key(&candidate, &key.public)?;
        // The body is read only now, and only when there is one.
        let body = if slot.body.is_end_stream() {
            Bytes::new()
        } else {
            self.buffer_body(&parts.headers, slot).await.map_err(|r| {
                // Over the limit, budget spent, or the client failed: that is the answer.
                tracing::info!(reason = r.as_str(), "signed request body not readable");
                SigFailure::Body(r)
            })?
        };
        verified.check_body(&parts.headers, &body)?;
        Ok(Some(verified.info))
    }

    /// Buffers the upstream response of a `response: sign` route (at most
    /// `signatures.max_response_bytes`), sets `Content-Digest` and the `fapi-2-response`
    /// signature. `Err` is the upstream error word: the caller answers 502 and records it,
    /// never relaying the response unsigned.
    pub(super) async fn sign_response(
        &self,
        head: &mut ResponseHead,
        body: Incoming,
        exchange: &SignedExchange,
    ) -> Result<(Bytes, SignatureInfo), &'static str> {
        let sigs = &self.signatures;
        let Some(signer) = sigs.signer() else {
            return Err("response_unsigned");
        };
        let bound = sigs.settings.max_response_bytes;
        let declared = head
            .headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > bound as u64) {
            return Err("response_too_large");
        }
        let bytes = match Limited::new(body, bound).collect().await {
            Ok(c) => c.to_bytes(),
            Err(e)
                if e.downcast_ref::<http_body_util::LengthLimitError>()
                    .is_some() =>
            {
                return Err("response_too_large");
            }
            Err(_) => return Err("body"),
        };
        let empty = HeaderMap::new();
        let request = sigs.parts(
            &exchange.method,
            &exchange.path,
            exchange.query.as_deref(),
            &empty,
        );
        let info = signer
            .sign_response(
                head.status.as_u16(),
                &mut head.headers,
                &bytes,
                request,
                self.clock.now_unix(),
            )
            .map_err(|e| {
                tracing::error!(error = %e, "response signing failed");
                "response_unsigned"
            })?;
        Ok((bytes, info))
    }

    /// The public keys this sidecar signs with (admin `/jwks`): the Txn-Token key and the
    /// response signing key, whichever are configured.
    pub fn public_jwks(&self) -> Option<serde_json::Value> {
        let mut keys = Vec::new();
        if let Some(serde_json::Value::Array(k)) = self
            .txn_jwks()
            .and_then(|mut j| j.get_mut("keys").map(serde_json::Value::take))
        {
            keys.extend(k);
        }
        if let Some(s) = self.signatures.signer() {
            keys.push(s.jwk().clone());
        }
        (!keys.is_empty()).then(|| serde_json::json!({ "keys": keys }))
    }

    /// The `kid` of the response signing key, when responses can be signed.
    pub fn response_key_id(&self) -> Option<&str> {
        self.signatures.signer().map(ResponseSigner::keyid)
    }
}

/// The status the caller answers for a response that could not be signed.
pub(super) const UNSIGNED_STATUS: StatusCode = StatusCode::BAD_GATEWAY;

/// A route that verifies request signatures needs registered clients; one that signs
/// responses needs the `signatures:` section (its key, published at admin `/jwks`).
pub(super) fn check_policies(config: &Config, p: &crate::policy::PolicySet) -> Result<(), String> {
    for r in p.routes() {
        if r.signatures.verifies_requests() && config.clients.is_empty() {
            return Err(format!(
                "route {:?} of api {:?} verifies request signatures, but the configuration has no `clients:`",
                r.name, r.api
            ));
        }
        if r.signatures.signs_responses() && config.signatures.is_none() {
            return Err(format!(
                "route {:?} of api {:?} signs responses, but the configuration has no `signatures:` section",
                r.name, r.api
            ));
        }
    }
    Ok(())
}
