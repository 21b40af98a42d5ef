//! The demo's sample consent service: `GET /consents/{id}` returns a consent record in the
//! spec §5 contract, 404 for unknown ids.

use std::net::SocketAddr;

use http::StatusCode;
use serde_json::{Value, json};

use super::http::json_response;

pub const AUTHORISED: &str = "aisp-c-1";
pub const REVOKED: &str = "aisp-c-revoked";
pub const EXPIRED: &str = "aisp-c-expired";
/// Authorised until the demo withdraws it through the admin API.
pub const WITHDRAWN: &str = "aisp-c-withdrawn";

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
        AUTHORISED | WITHDRAWN => Some(base("Authorised", "2099-12-31T00:00:00Z")),
        REVOKED => Some(base("Revoked", "2099-12-31T00:00:00Z")),
        EXPIRED => Some(base("Authorised", "2020-01-01T00:00:00Z")),
        _ => None,
    }
}

pub async fn serve() -> Result<SocketAddr, String> {
    super::http::serve(|req| {
        let id = req.uri().path().rsplit('/').next().unwrap_or_default();
        match record(id) {
            Some(r) => json_response(StatusCode::OK, r.to_string()),
            None => json_response(StatusCode::NOT_FOUND, String::new()),
        }
    })
    .await
}
