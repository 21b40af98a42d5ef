//! Consent enforcement (spec §1 point 3, §5 route `consent`, §6 `consent_*`): "a valid identity
//! is not the same as a valid action". A route checks the request against what the customer
//! approved, from one of two sources:
//!
//! - a **consent record** fetched from the bank's consent service by an id carried in a token
//!   claim (`openbanking_intent_id`, `consent_id`, …) and/or the Berlin Group `Consent-ID`
//!   header, cached by [`ConsentClient`];
//! - **Rich Authorization Requests** (RFC 9396): the `authorization_details` claim of the token.
//!
//! The split follows the house shape: [`ConsentRule`] is compiled once from the policy, the
//! client does the I/O before the decision, and [`check_record`] / [`check_rar`] are pure and
//! synchronous (tens to a few hundred nanoseconds), so they can run inside `decide`.
//!
//! Body matching compares JSON numbers by their literal text (`"10.00"` ≠ `"10.0"`); that needs
//! serde_json's `arbitrary_precision` feature, enabled in `Cargo.toml` (see [`body`]).

mod body;
mod check;
mod client;
mod judge;
mod record;
mod rfc3339;
mod rule;

pub use body::{BodyError, exact_eq, parse_body};
pub use check::{ConsentContext, RarMatch, check_rar, check_record};
pub use client::{ConsentClient, ConsentConfig, ConsentLookupError, ConsentSettings};
pub use judge::{ConsentOutcome, judge};
pub use record::ConsentRecord;
pub use rfc3339::parse_rfc3339;
pub use rule::{
    ConsentRule, JsonPointer, ParamSource, RarRule, RawConsentRule, RawRar, RecordRule,
};
