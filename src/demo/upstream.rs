//! The demo's sample banking API: canned Open Banking style JSON for accounts and payments.

use std::convert::Infallible;
use std::net::SocketAddr;

use http::header::{CONTENT_TYPE, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::net::TcpListener;

use crate::response::{Body, full};

pub async fn serve() -> Result<SocketAddr, String> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let svc =
                service_fn(
                    |req: Request<Incoming>| async move { Ok::<_, Infallible>(answer(&req)) },
                );
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Ok(addr)
}

fn answer(req: &Request<Incoming>) -> Response<Body> {
    let path = req.uri().path();
    let seg: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let (status, body) = match (req.method(), seg.as_slice()) {
        (&Method::GET, ["health"]) => (StatusCode::OK, json!({"status": "UP"})),
        (&Method::GET, ["open-banking", _, "aisp", "accounts"]) => (
            StatusCode::OK,
            json!({"Data": {"Account": [
                {"AccountId": "acc-1", "Currency": "GBP", "Nickname": "Bills"},
                {"AccountId": "acc-2", "Currency": "GBP", "Nickname": "Savings"}]}}),
        ),
        (&Method::GET, ["open-banking", _, "aisp", "accounts", id]) => (
            StatusCode::OK,
            json!({"Data": {"Account": [{"AccountId": id, "Currency": "GBP"}]}}),
        ),
        (&Method::GET, ["open-banking", _, "aisp", "accounts", id, "balances"]) => (
            StatusCode::OK,
            json!({"Data": {"Balance": [{"AccountId": id, "Amount": {"Amount": "1230.00", "Currency": "GBP"}}]}}),
        ),
        (&Method::GET, ["open-banking", _, "aisp", "accounts", id, "transactions"]) => (
            StatusCode::OK,
            json!({"Data": {"Transaction": [], "AccountId": id}}),
        ),
        (&Method::POST, ["open-banking", _, "pisp", "domestic-payments"]) => (
            StatusCode::CREATED,
            json!({"Data": {"DomesticPaymentId": "pay-1", "Status": "AcceptedSettlementInProcess"}}),
        ),
        (&Method::GET, ["open-banking", _, "pisp", "domestic-payments", id, ..]) => (
            StatusCode::OK,
            json!({"Data": {"DomesticPaymentId": id, "Status": "AcceptedSettlementCompleted"}}),
        ),
        _ => (StatusCode::NOT_FOUND, json!({"error": "not found"})),
    };
    let mut r = Response::new(full(body.to_string()));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}
