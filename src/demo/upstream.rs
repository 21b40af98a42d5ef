//! The demo's sample banking API: canned Open Banking style JSON for accounts and payments.

use std::net::SocketAddr;

use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use serde_json::json;

use super::http::json_response;
use crate::response::Body;

pub async fn serve() -> Result<SocketAddr, String> {
    super::http::serve(answer).await
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
    json_response(status, body.to_string())
}
