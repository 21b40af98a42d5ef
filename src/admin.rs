//! The admin listener (spec §4): `/healthz`, `/readyz`, `/metrics`, `/jwks`; bind it to localhost or a pod-internal
//! port.
//!
//! Two surfaces share one router:
//! - the full admin listener (`admin.address`): reads are open, every other method must carry
//!   `Authorization: Bearer <admin.token_file>` ([`require_admin_token`]); the write endpoints
//!   (revocations, Shared Signals) live here;
//! - the read-only metrics listener (`admin.metrics_address`): `GET` of the four read endpoints
//!   and nothing else, so Prometheus and kubelet probes can reach the pod IP while the full
//!   admin stays on 127.0.0.1.

use std::convert::Infallible;
use std::sync::Arc;

use http::header::{ALLOW, AUTHORIZATION, CONTENT_TYPE, HeaderValue, WWW_AUTHENTICATE};
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;

mod revocations;
mod ssf;
pub mod write;

use crate::proxy::Guard;
use crate::response::{Body, full};
use crate::secret::Secret;

/// Which endpoints a listener serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Surface {
    /// `admin.address`: read endpoints, and write endpoints behind the admin token.
    Full,
    /// `admin.metrics_address`: read endpoints only; no method but `GET`/`HEAD` is served.
    ReadOnly,
}

/// The read endpoints every surface serves.
const READ_PATHS: [&str; 4] = ["/healthz", "/readyz", "/metrics", "/jwks"];

pub async fn serve(listener: TcpListener, guard: Arc<Guard>, stop: watch::Receiver<bool>) {
    serve_surface(listener, guard, stop, Surface::Full).await;
}

/// Serves one admin surface until `stop` changes.
pub async fn serve_surface(
    listener: TcpListener,
    guard: Arc<Guard>,
    mut stop: watch::Receiver<bool>,
    surface: Surface,
) {
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let g = guard.clone();
                let svc = service_fn(move |req: Request<Incoming>| {
                    let g = g.clone();
                    async move {
                        // The write endpoints exist only on the full surface; everything else
                        // (and every method on the read-only surface) goes to `handle`.
                        let resp = match surface {
                            Surface::Full => match write::route(&g, req).await {
                                Ok(resp) => resp,
                                Err(req) => handle(&g, &req, surface),
                            },
                            Surface::ReadOnly => handle(&g, &req, surface),
                        };
                        Ok::<_, Infallible>(resp)
                    }
                });
                tokio::spawn(async move {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
            _ = stop.changed() => break,
        }
    }
}

/// Why an admin write was refused; answered 401 with a Bearer challenge (RFC 6750 §3), or
/// 403 when no admin token is configured at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminAuthError {
    /// No `admin.token_file` configured: no write is possible.
    NotConfigured,
    Missing,
    Invalid,
}

/// Checks `Authorization: Bearer <admin token>` in constant time (RFC 6750 §2.1: the scheme
/// is case-insensitive, RFC 9110 §11.1). Every admin endpoint that changes state calls this
/// first. More than one `Authorization` field line is refused rather than choosing one.
pub fn require_admin_token<B>(
    req: &Request<B>,
    token: Option<&Secret>,
) -> Result<(), AdminAuthError> {
    let token = token.ok_or(AdminAuthError::NotConfigured)?;
    let mut values = req.headers().get_all(AUTHORIZATION).iter();
    let value = values.next().ok_or(AdminAuthError::Missing)?;
    if values.next().is_some() {
        return Err(AdminAuthError::Invalid);
    }
    let value = value.as_bytes();
    let presented = match value.get(..7) {
        Some(scheme) if scheme.eq_ignore_ascii_case(b"bearer ") => &value[7..],
        _ => return Err(AdminAuthError::Invalid),
    };
    if token.matches(presented) {
        Ok(())
    } else {
        Err(AdminAuthError::Invalid)
    }
}

fn handle<B>(guard: &Guard, req: &Request<B>, surface: Surface) -> Response<Body> {
    let read = matches!(*req.method(), Method::GET | Method::HEAD);
    if read {
        return route(guard, req);
    }
    if surface == Surface::ReadOnly {
        // Nothing here changes state; a write method is simply not allowed.
        return not_allowed(READ_PATHS.contains(&req.uri().path()));
    }
    // Authenticate before saying anything about the endpoint.
    let token = guard.config().admin.as_ref().and_then(|a| a.token.as_ref());
    if let Err(e) = require_admin_token(req, token) {
        return unauthorized(e);
    }
    // The write endpoints (`POST /revocations`, `POST /ssf/events`) were matched before
    // (`write::route`); nothing else changes state.
    not_allowed(READ_PATHS.contains(&req.uri().path()))
}

/// 405 with `Allow: GET, HEAD` for a read endpoint (RFC 9110 §15.5.6), 404 for anything else.
fn not_allowed(known: bool) -> Response<Body> {
    if !known {
        return text(StatusCode::NOT_FOUND, "not found\n");
    }
    let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
    r.headers_mut()
        .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
    r
}

pub(crate) fn unauthorized(e: AdminAuthError) -> Response<Body> {
    let (status, challenge, body) = match e {
        // No credential could help: 403 (RFC 9110 §15.5.4), with the reason.
        AdminAuthError::NotConfigured => (
            StatusCode::FORBIDDEN,
            "Bearer realm=\"fapi-guard-admin\"",
            "admin writes are disabled: no admin.token_file configured\n",
        ),
        AdminAuthError::Missing => (
            StatusCode::UNAUTHORIZED,
            "Bearer realm=\"fapi-guard-admin\"",
            "admin token required\n",
        ),
        AdminAuthError::Invalid => (
            StatusCode::UNAUTHORIZED,
            "Bearer realm=\"fapi-guard-admin\", error=\"invalid_token\"",
            "invalid admin token\n",
        ),
    };
    let mut r = text(status, body);
    r.headers_mut()
        .insert(WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
    r
}

fn route<B>(guard: &Guard, req: &Request<B>) -> Response<Body> {
    match (req.method(), req.uri().path()) {
        (&Method::GET, "/healthz") => text(StatusCode::OK, "ok\n"),
        (&Method::GET, "/readyz") => {
            if guard.is_ready() {
                text(StatusCode::OK, "ready\n")
            } else if guard.is_draining() {
                text(StatusCode::SERVICE_UNAVAILABLE, "draining\n")
            } else if guard.tokens().all_keys_loaded() {
                text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "state backend unavailable\n",
                )
            } else {
                text(StatusCode::SERVICE_UNAVAILABLE, "issuer keys not loaded\n")
            }
        }
        (&Method::GET, "/jwks") => match guard.public_jwks() {
            Some(jwks) => {
                let mut r = Response::new(full(jwks.to_string()));
                r.headers_mut().insert(
                    CONTENT_TYPE,
                    HeaderValue::from_static("application/jwk-set+json"),
                );
                r
            }
            None => text(
                StatusCode::NOT_FOUND,
                "no signing keys: transaction tokens and response signatures are not enabled\n",
            ),
        },
        (&Method::GET, "/metrics") => {
            let mut r = Response::new(full(guard.metrics_text()));
            r.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            r
        }
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    }
}

fn text(status: StatusCode, body: &'static str) -> Response<Body> {
    let mut r = Response::new(full(body));
    *r.status_mut() = status;
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "admin-token-0123456789";

    fn req(auth: &[&str]) -> Request<()> {
        let mut b = Request::post("/revocations");
        for a in auth {
            b = b.header(AUTHORIZATION, *a);
        }
        b.body(()).expect("request")
    }

    #[test]
    fn admin_token_table() {
        let secret = Secret::new(TOKEN).expect("secret");
        let good = format!("Bearer {TOKEN}");
        let lower = format!("bearer {TOKEN}");
        let cases: Vec<(&str, Vec<&str>, Option<&Secret>, Result<(), AdminAuthError>)> = vec![
            ("right token", vec![&good], Some(&secret), Ok(())),
            (
                "scheme is case-insensitive",
                vec![&lower],
                Some(&secret),
                Ok(()),
            ),
            (
                "no header",
                vec![],
                Some(&secret),
                Err(AdminAuthError::Missing),
            ),
            (
                "wrong token",
                vec!["Bearer admin-token-0123456780"],
                Some(&secret),
                Err(AdminAuthError::Invalid),
            ),
            (
                "prefix of the token",
                vec!["Bearer admin-token"],
                Some(&secret),
                Err(AdminAuthError::Invalid),
            ),
            (
                "empty bearer",
                vec!["Bearer "],
                Some(&secret),
                Err(AdminAuthError::Invalid),
            ),
            (
                "basic scheme",
                vec!["Basic YWRtaW46eA=="],
                Some(&secret),
                Err(AdminAuthError::Invalid),
            ),
            (
                "token without scheme",
                vec![TOKEN],
                Some(&secret),
                Err(AdminAuthError::Invalid),
            ),
            (
                "two header lines",
                vec![&good, &good],
                Some(&secret),
                Err(AdminAuthError::Invalid),
            ),
            (
                "no token configured",
                vec![&good],
                None,
                Err(AdminAuthError::NotConfigured),
            ),
        ];
        for (name, auth, token, want) in cases {
            assert_eq!(require_admin_token(&req(&auth), token), want, "{name}");
        }
    }
}
