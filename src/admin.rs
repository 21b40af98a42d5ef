//! The admin listener (spec §4): `/healthz`, `/readyz`, `/metrics`, `/jwks`; bind it to localhost or a pod-internal
//! port.

use std::convert::Infallible;
use std::sync::Arc;

use http::header::{CONTENT_TYPE, HeaderValue};
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

pub async fn serve(listener: TcpListener, guard: Arc<Guard>, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let g = guard.clone();
                let svc = service_fn(move |req: Request<Incoming>| {
                    let g = g.clone();
                    async move {
                        let resp = match write::route(&g, req).await {
                            Ok(resp) => resp,
                            Err(req) => route(&g, &req),
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
        (&Method::GET, "/jwks") => match guard.txn_jwks() {
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
                "transaction tokens are not enabled\n",
            ),
        },
        (&Method::GET, "/metrics") => {
            let mut r = Response::new(full(guard.metrics().encode()));
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
