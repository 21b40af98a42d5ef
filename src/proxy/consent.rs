//! Gathering the consent behind a request (spec §1.3, §5): the consent record from the bank's
//! consent service (cached), or the RAR `authorization_details` in the token, and the request
//! body where a rule compares it. The comparisons themselves are the pure functions of
//! `crate::consent`.

use serde_json::Value;

use super::body_limit::BodySlot;
use super::{Guard, content_type};
use crate::consent::{
    ConsentContext, ConsentLookupError, ConsentOutcome, ConsentRule, judge, parse_body,
};
use crate::path;
use crate::reason::DenyReason;
use crate::token::VerifiedToken;

impl Guard {
    pub(super) async fn check_consent(
        &self,
        rule: &ConsentRule,
        token: &VerifiedToken,
        parts: &http::request::Parts,
        params: &matchit::Params<'_, '_>,
        body: &mut BodySlot,
        now: i64,
    ) -> ConsentOutcome {
        let json = if rule.needs_body() {
            match self.json_body(parts, body).await {
                Ok(v) => Some(v),
                Err(r) => return ConsentOutcome::deny(r),
            }
        } else {
            None
        };
        let decoded = path::decode_params(params);
        let ctx = ConsentContext {
            client_id: &token.client_id,
            subject: &token.sub,
            params: &decoded,
            query: parts.uri.query(),
            public_origin: &self.config.listen.public_url,
            now,
            body: json.as_ref(),
        };
        let record = match rule {
            ConsentRule::Rar(_) => None,
            ConsentRule::Record(rec_rule) => {
                let id = match rec_rule.consent_id(&token.extra, &parts.headers) {
                    Ok(id) => id,
                    Err(r) => return ConsentOutcome::deny(r),
                };
                // Startup refuses record rules without a `consent:` section; fail closed anyway.
                let Some(client) = &self.consent else {
                    return ConsentOutcome::deny(DenyReason::DependencyUnavailable);
                };
                match client.get(id).await {
                    Ok(rec) => Some((id, rec)),
                    Err(ConsentLookupError::Missing) => {
                        return ConsentOutcome::deny(DenyReason::ConsentMissing);
                    }
                    Err(ConsentLookupError::Unavailable) => {
                        return ConsentOutcome::deny(DenyReason::DependencyUnavailable);
                    }
                }
            }
        };
        judge(
            rule,
            &token.extra,
            &ctx,
            record.as_ref().map(|(id, r)| (*id, &**r)),
        )
    }

    /// Reads a JSON body (within `max_body_bytes` and the buffer budget) and leaves the
    /// identical bytes for the upstream. Non-JSON (a `charset` other than UTF-8 included: RFC
    /// 8259 §8.1), malformed or ambiguous JSON → 400; too large → 413; budget spent → 503.
    async fn json_body(
        &self,
        parts: &http::request::Parts,
        body: &mut BodySlot,
    ) -> Result<Value, DenyReason> {
        let is_json = content_type::single(&parts.headers)
            .ok()
            .flatten()
            .is_some_and(|ct| ct.is_json() && ct.utf8);
        if !is_json {
            return Err(DenyReason::RequestMalformed);
        }
        let bytes = self.buffer_body(&parts.headers, body).await?;
        parse_body(&bytes).map_err(|e| {
            tracing::info!(error = %e, "request body refused");
            DenyReason::RequestMalformed
        })
    }
}
