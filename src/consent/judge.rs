//! The whole consent verdict for one request, once any record it names is at hand: shared by
//! the proxy (record from the consent client) and `policy test` (record from the test file).

use serde_json::{Map, Value};

use super::{ConsentContext, ConsentRecord, ConsentRule, check_rar, check_record};
use crate::audit::ConsentInfo;
use crate::reason::DenyReason;

/// What the consent check found.
#[derive(Debug)]
pub struct ConsentOutcome {
    /// `Err` is the deny reason.
    pub result: Result<(), DenyReason>,
    pub info: Option<ConsentInfo>,
    /// The consent record's purpose: it takes precedence over the token's (spec §1.5).
    pub purpose: Option<String>,
}

impl ConsentOutcome {
    pub fn deny(reason: DenyReason) -> Self {
        Self {
            result: Err(reason),
            info: None,
            purpose: None,
        }
    }
}

/// Judges the request against `rule`. `claims` are the token's other claims (RAR reads
/// `authorization_details` there); `record` is the consent record a record rule named, with
/// its id (`None` for RAR rules, or when no record exists: `consent_missing`).
pub fn judge(
    rule: &ConsentRule,
    claims: &Map<String, Value>,
    ctx: &ConsentContext<'_>,
    record: Option<(&str, &ConsentRecord)>,
) -> ConsentOutcome {
    match rule {
        ConsentRule::Rar(rar) => match check_rar(rar, claims.get("authorization_details"), ctx) {
            Ok(m) => ConsentOutcome {
                result: Ok(()),
                info: Some(m.audit_info()),
                purpose: None,
            },
            Err(r) => ConsentOutcome::deny(r),
        },
        ConsentRule::Record(rule) => match record {
            None => ConsentOutcome::deny(DenyReason::ConsentMissing),
            Some((id, rec)) => ConsentOutcome {
                result: check_record(rule, rec, ctx),
                info: Some(rec.audit_info(id)),
                purpose: rec.purpose.clone(),
            },
        },
    }
}
