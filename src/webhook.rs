//! `fapi-guard webhook`: a mutating admission webhook (AdmissionReview `admission.k8s.io/v1`)
//! that applies [`crate::inject::inject_pod`], the very transformation of `fapi-guard inject`, to
//! each Pod the API server sends, and answers with a JSONPatch (RFC 6902).
//!
//! Which pods are sent is the MutatingWebhookConfiguration's business (namespace and object
//! selectors on the `fapi-guard.io/inject` label, `deploy/kubernetes/webhook/`); here a pod
//! labelled or annotated `fapi-guard.io/inject: disabled` or already carrying the sidecar is
//! admitted unchanged, and a pod the injection refuses (a conflicting container or port, an
//! unknown `fapi-guard.io/inject` value) is denied with the reason, so that no pod that should
//! get the sidecar runs unprotected.

mod patch;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use base64::Engine;
use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use serde_json::{Value, json};
use tokio::net::TcpListener;

use crate::cli::WebhookArgs;
use crate::inject::{InjectOptions, PodOutcome, inject_pod};
use crate::tls::{ClientAuth, TlsAcceptor, TlsSettings};

pub use patch::diff;

/// The API server caps objects at about 1.5 MiB; a review carries the object once (old object
/// only on UPDATE, which this webhook is not registered for).
const MAX_REVIEW_BYTES: usize = 4 * 1024 * 1024;

/// Serves until SIGTERM/SIGINT.
pub async fn run(args: &WebhookArgs) -> Result<(), String> {
    let opts = args.flags.options();
    opts.validate()?;
    let acceptor = Arc::new(
        TlsAcceptor::new(TlsSettings {
            cert_file: args.cert_file.clone(),
            key_file: args.key_file.clone(),
            client_ca_file: None,
            client_auth: ClientAuth::Optional,
        })
        .map_err(|e| e.to_string())?,
    );
    // cert-manager rotates the serving certificate in place.
    let _watch = acceptor
        .watch()
        .map_err(|e| tracing::warn!(error = %e, "certificate watch unavailable"))
        .ok();
    let listener = TcpListener::bind(args.address)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", args.address))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    tracing::info!(%addr, "fapi-guard webhook listening");
    let opts = Arc::new(opts);
    tokio::select! {
        () = serve(listener, acceptor, opts) => {}
        () = crate::app::shutdown_signal() => tracing::info!("shutdown requested"),
    }
    Ok(())
}

/// Accepts TLS connections and answers reviews; runs until the task is dropped.
pub async fn serve(listener: TcpListener, acceptor: Arc<TlsAcceptor>, opts: Arc<InjectOptions>) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let acceptor = acceptor.clone();
        let opts = opts.clone();
        tokio::spawn(async move {
            let tls = match acceptor.accept(stream).await {
                Ok((tls, _)) => tls,
                Err(e) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
            };
            let svc = service_fn(move |req: Request<Incoming>| {
                let opts = opts.clone();
                async move { Ok::<_, Infallible>(handle(req, &opts, peer).await) }
            });
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(tls), svc)
                .await;
        });
    }
}

async fn handle(
    req: Request<Incoming>,
    opts: &InjectOptions,
    peer: SocketAddr,
) -> Response<Full<Bytes>> {
    match (req.method(), req.uri().path()) {
        (&Method::GET, "/healthz") => reply(StatusCode::OK, "text/plain", "ok\n".into()),
        (&Method::POST, "/mutate") => {
            let body = match Limited::new(req.into_body(), MAX_REVIEW_BYTES)
                .collect()
                .await
            {
                Ok(b) => b.to_bytes(),
                Err(_) => {
                    return reply(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "text/plain",
                        "review too large\n".into(),
                    );
                }
            };
            match review(&body, opts) {
                Ok(answer) => reply(
                    StatusCode::OK,
                    "application/json",
                    answer.to_string().into(),
                ),
                Err(e) => {
                    tracing::warn!(%peer, error = %e, "malformed admission review");
                    reply(
                        StatusCode::BAD_REQUEST,
                        "text/plain",
                        format!("{e}\n").into(),
                    )
                }
            }
        }
        _ => reply(StatusCode::NOT_FOUND, "text/plain", "not found\n".into()),
    }
}

/// Answers one AdmissionReview: the response for `request.uid`, with a JSONPatch when the pod
/// was injected. `Err` only for a body that is not an AdmissionReview v1.
pub fn review(body: &[u8], opts: &InjectOptions) -> Result<Value, String> {
    let review: Value = serde_json::from_slice(body).map_err(|e| format!("not JSON: {e}"))?;
    if review.get("apiVersion").and_then(Value::as_str) != Some("admission.k8s.io/v1")
        || review.get("kind").and_then(Value::as_str) != Some("AdmissionReview")
    {
        return Err("not an admission.k8s.io/v1 AdmissionReview".to_owned());
    }
    let request = review.get("request").ok_or("request missing")?;
    let uid = request
        .get("uid")
        .and_then(Value::as_str)
        .ok_or("request.uid missing")?;
    let is_pod = request.get("kind").is_some_and(|k| {
        k.get("group").and_then(Value::as_str) == Some("")
            && k.get("kind").and_then(Value::as_str) == Some("Pod")
    });
    let object = request.get("object");
    let mut response = json!({"uid": uid, "allowed": true});
    if let (true, Some(pod)) = (is_pod, object) {
        let name = pod
            .pointer("/metadata/name")
            .or_else(|| pod.pointer("/metadata/generateName"))
            .and_then(Value::as_str)
            .unwrap_or("?");
        let namespace = request
            .get("namespace")
            .and_then(Value::as_str)
            .unwrap_or("?");
        match mutate(pod, opts, &format!("Pod {namespace}/{name}")) {
            Ok(Some(ops)) => {
                let patch =
                    base64::engine::general_purpose::STANDARD.encode(Value::Array(ops).to_string());
                response["patchType"] = "JSONPatch".into();
                response["patch"] = patch.into();
                tracing::info!(namespace, pod = name, "sidecar injected");
            }
            Ok(None) => {}
            Err(message) => {
                tracing::warn!(namespace, pod = name, error = %message, "injection refused");
                response["allowed"] = false.into();
                response["status"] = json!({"code": 403, "message": format!("fapi-guard injection refused: {message}")});
            }
        }
    }
    Ok(json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "response": response,
    }))
}

/// The patch turning `pod` into its injected form; `None` when it stays as it is.
fn mutate(pod: &Value, opts: &InjectOptions, at: &str) -> Result<Option<Vec<Value>>, String> {
    // JSON is YAML: going through text keeps every value as the API server sent it.
    let text = serde_json::to_string(pod).map_err(|e| e.to_string())?;
    let mut yaml: serde_yaml::Value = serde_yaml::from_str(&text).map_err(|e| e.to_string())?;
    match inject_pod(&mut yaml, None, opts, at).map_err(|e| e.to_string())? {
        PodOutcome::Injected { .. } => {
            let text = serde_json::to_string(&yaml).map_err(|e| e.to_string())?;
            let injected: Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
            Ok(Some(diff(pod, &injected)))
        }
        PodOutcome::AlreadyInjected { .. } | PodOutcome::OptedOut => Ok(None),
    }
}

fn reply(status: StatusCode, content_type: &'static str, body: Bytes) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

#[cfg(test)]
mod tests;
