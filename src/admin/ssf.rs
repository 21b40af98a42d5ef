//! `POST /ssf/events`: RFC 8935 push delivery. 202 when the SET is accepted (its revocations
//! applied here and fanned out), 400 `{"err","description"}` (RFC 8935 §2.3) otherwise.

use http::{Response, StatusCode};
use serde_json::json;

use super::write::json_response;
use crate::proxy::Guard;
use crate::response::Body;
use crate::revocation::ssf::{Rejected, SetError};
use crate::revocation::{Fanout, Source, metrics as rmetrics};
use crate::state::OnUnavailable;

pub async fn post(guard: &Guard, content_type: &str, body: &[u8]) -> Response<Body> {
    let revs = guard.revocations();
    let refuse = |code: SetError, description: &str| {
        revs.refused(Source::Ssf, rmetrics::INVALID);
        json_response(
            StatusCode::BAD_REQUEST,
            json!({"err": code.as_str(), "description": description}),
        )
    };
    let Some(receiver) = revs.ssf() else {
        return json_response(
            StatusCode::NOT_FOUND,
            json!({"err": "invalid_request", "description": "no revocation.ssf transmitter is configured"}),
        );
    };
    // RFC 8935 §2: the body is the SET itself.
    if content_type != "application/secevent+jwt" {
        return refuse(
            SetError::InvalidRequest,
            "Content-Type must be application/secevent+jwt",
        );
    }
    let Ok(set) = std::str::from_utf8(body) else {
        return refuse(SetError::InvalidRequest, "body is not UTF-8");
    };
    let now_ms = revs.clock().now_micros() / 1000;
    let verified = match receiver
        .verify(set, now_ms, revs.default_until(now_ms.div_euclid(1000)))
        .await
    {
        Ok(v) => v,
        Err(Rejected::Set(code, why)) => {
            tracing::info!(err = code.as_str(), why, "security event token refused");
            return refuse(code, why);
        }
        Err(Rejected::KeysUnavailable) => {
            return json_response(
                StatusCode::SERVICE_UNAVAILABLE,
                json!({"err": "temporarily_unavailable", "description": "transmitter keys unavailable"}),
            );
        }
    };
    if receiver.seen(&verified.jti) {
        return refuse(SetError::InvalidRequest, "duplicate jti");
    }
    // Fleet-wide de-duplication: the first replica to claim the jti in Redis processes the SET.
    // While Redis cannot answer, this replica's memory decides, and the fan-out below fails and
    // is answered as `on_unavailable` says.
    let shared = revs.shared();
    let claimed = match shared {
        None => false,
        Some(s) => match s.claim_ssf_jti(&verified.jti, receiver.jti_window()).await {
            Ok(true) => true,
            Ok(false) => return refuse(SetError::InvalidRequest, "duplicate jti"),
            Err(_) => false,
        },
    };
    // Not processed after all: forget the claim so the transmitter's retry is.
    let release = || async {
        if let (true, Some(s)) = (claimed, shared) {
            s.release_ssf_jti(&verified.jti).await;
        }
    };
    let (mut shared_failed, mut all_queued) = (false, true);
    for r in verified.revocations.iter().cloned() {
        match revs.revoke(r, Source::Ssf).await {
            Ok(Fanout::LocalOnly { queued }) => {
                shared_failed = true;
                all_queued &= queued;
            }
            Ok(_) => {}
            Err(e) => {
                release().await;
                return json_response(
                    StatusCode::SERVICE_UNAVAILABLE,
                    json!({"err": "temporarily_unavailable", "description": e.to_string()}),
                );
            }
        }
    }
    for _ in 0..verified.unknown_events {
        revs.refused(Source::Ssf, rmetrics::UNKNOWN_EVENT);
    }
    let required = shared.is_some_and(|s| s.on_unavailable() == OnUnavailable::Deny);
    if shared_failed && (required || !all_queued) {
        // Not recorded as seen: the transmitter's retry will be processed again.
        release().await;
        return json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"err": "temporarily_unavailable", "description": "applied on this replica only; retry"}),
        );
    }
    if !receiver.first_use(&verified.jti) {
        return refuse(SetError::InvalidRequest, "duplicate jti");
    }
    let mut r = Response::new(crate::response::full(""));
    *r.status_mut() = StatusCode::ACCEPTED;
    r
}
