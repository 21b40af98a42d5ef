//! The admin write endpoints (spec §4): `POST /revocations` and `POST /ssf/events`. Each needs
//! `Authorization: Bearer <admin token>` (`admin.token_file`, compared in constant time) and
//! reads at most [`MAX_BODY_BYTES`] of body.

use http::header::{CONTENT_TYPE, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::{Bytes, Incoming};
use serde_json::json;

use super::{revocations, ssf};
use crate::proxy::Guard;
use crate::response::{Body, full};
use crate::revocation::{Source, metrics as rmetrics};

/// Admin request bodies are small JSON documents or one SET; anything larger is refused (413).
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Handles the write endpoints; any other request is handed back for the read-only router.
pub async fn route(
    guard: &Guard,
    req: Request<Incoming>,
) -> Result<Response<Body>, Request<Incoming>> {
    let source = match req.uri().path() {
        "/revocations" => Source::Admin,
        "/ssf/events" => Source::Ssf,
        _ => return Err(req),
    };
    // Authenticate before saying anything about the endpoint, even its methods.
    if let Some(resp) = authorize(guard, &req) {
        guard.revocations().refused(source, rmetrics::UNAUTHORIZED);
        return Ok(resp);
    }
    if req.method() != Method::POST {
        return Ok(json_response(
            StatusCode::METHOD_NOT_ALLOWED,
            json!({"error": "method_not_allowed", "description": "use POST"}),
        ));
    }
    let content_type = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
        .unwrap_or_default();
    let body = match read_body(req.into_body()).await {
        Ok(b) => b,
        Err(resp) => {
            guard.revocations().refused(source, rmetrics::TOO_LARGE);
            return Ok(resp);
        }
    };
    Ok(match source {
        Source::Ssf => ssf::post(guard, &content_type, &body).await,
        _ => revocations::post(guard, &content_type, &body).await,
    })
}

/// The admin bearer token (`super::require_admin_token`: constant time, one field line).
fn authorize(guard: &Guard, req: &Request<Incoming>) -> Option<Response<Body>> {
    let token = guard.config().admin.as_ref().and_then(|a| a.token.as_ref());
    super::require_admin_token(req, token)
        .err()
        .map(super::unauthorized)
}

async fn read_body(b: Incoming) -> Result<Bytes, Response<Body>> {
    match Limited::new(b, MAX_BODY_BYTES).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(json_response(
            StatusCode::PAYLOAD_TOO_LARGE,
            json!({"error": "too_large", "description": format!("body over {MAX_BODY_BYTES} bytes")}),
        )),
        Err(_) => Err(json_response(
            StatusCode::BAD_REQUEST,
            json!({"error": "invalid_request", "description": "body could not be read"}),
        )),
    }
}

pub fn json_response(status: StatusCode, v: serde_json::Value) -> Response<Body> {
    let mut r = Response::new(full(v.to_string()));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}
