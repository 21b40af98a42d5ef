//! The admin write endpoints (spec §4): `POST /revocations` and `POST /ssf/events`. Each needs
//! `Authorization: Bearer <admin token>` (`admin.token_file`, compared in constant time) and
//! reads at most [`MAX_BODY_BYTES`] of body.

use http::header::{CONTENT_TYPE, HeaderValue, WWW_AUTHENTICATE};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::{Bytes, Incoming};
use serde_json::json;

use super::{AdminAuthError, revocations, ssf};
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
    if let Some(resp) = authorize(guard, &req, source) {
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
    let body = match read_body(req.into_body(), source).await {
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

/// The admin bearer token (`super::require_admin_token`: constant time, one field line). On
/// `/ssf/events` the refusal is in RFC 8935 §2.3 form: `{"err","description"}` with
/// `authentication_failed` (401) or `access_denied` (403), beside the Bearer challenge.
fn authorize(guard: &Guard, req: &Request<Incoming>, source: Source) -> Option<Response<Body>> {
    let token = guard.config().admin.as_ref().and_then(|a| a.token.as_ref());
    let e = super::require_admin_token(req, token).err()?;
    let mut resp = super::unauthorized(e);
    if source == Source::Ssf {
        let (err, description) = match e {
            AdminAuthError::NotConfigured => (
                "access_denied",
                "admin writes are disabled: no admin.token_file configured",
            ),
            AdminAuthError::Missing => ("authentication_failed", "admin token required"),
            AdminAuthError::Invalid => ("authentication_failed", "invalid admin token"),
        };
        let mut json = json_response(
            resp.status(),
            json!({"err": err, "description": description}),
        );
        if let Some(challenge) = resp.headers_mut().remove(WWW_AUTHENTICATE) {
            json.headers_mut().insert(WWW_AUTHENTICATE, challenge);
        }
        resp = json;
    }
    Some(resp)
}

async fn read_body(b: Incoming, source: Source) -> Result<Bytes, Response<Body>> {
    // RFC 8935 §2.3 bodies on `/ssf/events` (`err`); the admin API's own form elsewhere.
    let key = if source == Source::Ssf {
        "err"
    } else {
        "error"
    };
    match Limited::new(b, MAX_BODY_BYTES).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            let code = if source == Source::Ssf {
                "invalid_request"
            } else {
                "too_large"
            };
            Err(json_response(
                StatusCode::PAYLOAD_TOO_LARGE,
                json!({key: code, "description": format!("body over {MAX_BODY_BYTES} bytes")}),
            ))
        }
        Err(_) => Err(json_response(
            StatusCode::BAD_REQUEST,
            json!({key: "invalid_request", "description": "body could not be read"}),
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
