//! The demo's sample consent service: `GET /consents/{id}` returns a consent record in the
//! spec §5 contract, 404 for unknown ids.

use std::convert::Infallible;
use std::net::SocketAddr;

use http::header::{CONTENT_TYPE, HeaderValue};
use http::{Response, StatusCode};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpListener;

use crate::response::full;

pub const AUTHORISED: &str = "aisp-c-1";
pub const REVOKED: &str = "aisp-c-revoked";
pub const EXPIRED: &str = "aisp-c-expired";

fn record(id: &str) -> Option<Value> {
    let base = |status: &str, expires: &str| {
        json!({
            "id": id, "status": status, "client_id": "tpp-1", "subject": "psu-9",
            "expires_at": expires,
            "permissions": ["ReadAccountsBasic", "ReadAccountsDetail", "ReadBalances", "ReadTransactionsDetail"],
            "accounts": ["acc-1", "acc-2"], "purpose": "account-information",
        })
    };
    match id {
        AUTHORISED => Some(base("Authorised", "2099-12-31T00:00:00Z")),
        REVOKED => Some(base("Revoked", "2099-12-31T00:00:00Z")),
        EXPIRED => Some(base("Authorised", "2020-01-01T00:00:00Z")),
        _ => None,
    }
}

pub async fn serve() -> Result<SocketAddr, String> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let svc = service_fn(|req: http::Request<hyper::body::Incoming>| async move {
                let id = req
                    .uri()
                    .path()
                    .rsplit('/')
                    .next()
                    .unwrap_or_default()
                    .to_owned();
                let (status, body) = match record(&id) {
                    Some(r) => (StatusCode::OK, r.to_string()),
                    None => (StatusCode::NOT_FOUND, String::new()),
                };
                let mut resp = Response::new(full(body));
                *resp.status_mut() = status;
                resp.headers_mut()
                    .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
                Ok::<_, Infallible>(resp)
            });
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Ok(addr)
}
