//! `POST /revocations` (spec §4): `{"kind","value","until"}` → 202, applied on this replica at
//! once and fanned out to the others. Consent services call it on consent withdrawal.

use http::{Response, StatusCode};
use serde::Deserialize;
use serde_json::json;

use super::write::json_response;
use crate::proxy::Guard;
use crate::response::Body;
use crate::revocation::{Fanout, Kind, Revocation, Source, metrics as rmetrics};
use crate::state::OnUnavailable;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RevocationRequest {
    kind: Kind,
    value: String,
    #[serde(default)]
    until: Option<i64>,
}

pub async fn post(guard: &Guard, content_type: &str, body: &[u8]) -> Response<Body> {
    let revs = guard.revocations();
    let invalid = |description: String| {
        revs.refused(Source::Admin, rmetrics::INVALID);
        json_response(
            StatusCode::BAD_REQUEST,
            json!({"error": "invalid_request", "description": description}),
        )
    };
    if content_type != "application/json" {
        return invalid("Content-Type must be application/json".into());
    }
    let req: RevocationRequest = match serde_json::from_slice(body) {
        Ok(r) => r,
        // serde's message names the field and the expected form; cut it short so it cannot
        // echo a large value back.
        Err(e) => return invalid(e.to_string().chars().take(160).collect()),
    };
    let now_us = revs.clock().now_micros();
    let now = now_us.div_euclid(1_000_000);
    let r = Revocation {
        kind: req.kind,
        value: req.value,
        until: req.until.unwrap_or_else(|| revs.default_until(now)),
        at_ms: now_us / 1000,
    };
    let r = match r.validated(now) {
        Ok(r) => r,
        Err(m) => return invalid(m),
    };
    let kind = r.kind.as_str();
    let until = r.until;
    match revs.revoke(r, Source::Admin).await {
        Err(e) => json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"error": "temporarily_unavailable", "description": e.to_string()}),
        ),
        // Applied here, and not even queued for the others (the queue is full): retry.
        Ok(Fanout::LocalOnly { queued: false }) => json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"error": "temporarily_unavailable",
                   "description": "applied on this replica only: the shared state backend is unavailable and the pending queue is full; retry"}),
        ),
        Ok(Fanout::LocalOnly { queued: true })
            if revs
                .shared()
                .is_some_and(|s| s.on_unavailable() == OnUnavailable::Deny) =>
        {
            // Applied here and queued in this process's memory only: the caller must retry
            // until the fleet has it durably.
            json_response(
                StatusCode::SERVICE_UNAVAILABLE,
                json!({"error": "temporarily_unavailable",
                       "description": "applied on this replica and queued: the shared state backend is unavailable; retry"}),
            )
        }
        Ok(f) => json_response(
            StatusCode::ACCEPTED,
            json!({"kind": kind, "until": until, "fanout": match f {
                Fanout::NotShared => "not_shared",
                Fanout::Published => "published",
                Fanout::LocalOnly { .. } => "local_only",
            }}),
        ),
    }
}
