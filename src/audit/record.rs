//! The audit record of spec §8: what producers build. The chain header (`v`, `seq`, `ts`,
//! `prev`) is added by the writer (see `chain.rs`), so a producer cannot get it wrong.
//!
//! Records never hold raw tokens, DPoP proofs, secrets or `Authorization` headers (spec §2,
//! conventions "never log a token"): callers pass [`token_digest`] of a token instead.

use aws_lc_rs::digest;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

use crate::reason::DenyReason;

/// Spec §8 kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordKind {
    Decision,
    Outcome,
    Revocation,
    PolicyReload,
    TxnTokenIssued,
}

impl RecordKind {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Decision => "decision",
            Self::Outcome => "outcome",
            Self::Revocation => "revocation",
            Self::PolicyReload => "policy_reload",
            Self::TxnTokenIssued => "txn_token_issued",
        }
    }
}

/// `decision` field. A policy in `mode: audit` still records `deny` (what enforcement would have
/// done) and adds `"mode":"audit"`; "audit_only" is not a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Allow,
    Deny,
}

/// `token` object: identifies the access token without containing it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TokenInfo {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    /// [`token_digest`] of the token as presented.
    pub sha256: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exp: Option<i64>,
    /// `iat` of the token: with `exp`, the lifetime the issuer granted (`audit report` flags
    /// long-lived tokens). Added after v1 shipped; absent in older records.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iat: Option<i64>,
    /// `dpop`, `mtls` or `none` (unbound, where the route allows it).
    pub binding: &'static str,
    /// RFC 9449 `cnf.jkt` for DPoP-bound tokens.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jkt: Option<String>,
}

/// `consent` object. `source` is `record` (consent service) or `authorization_details` (RAR).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ConsentInfo {
    pub id: String,
    pub source: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// The consent record's granted `permissions` (spec §5), so `audit report` can compare them
    /// with what the routes called needed. Absent for RAR consents and in older records.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub permissions: Option<Vec<String>>,
}

/// One hop of the RFC 8693 `act` chain, outermost (current actor) first (spec §7).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Actor {
    pub sub: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
}

/// `revocation` object. The revoked value is only ever stored as a digest.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RevocationInfo {
    /// `jti`, `subject`, `client`, `consent` or `token_sha256` (spec §4 `/revocations`).
    pub kind: &'static str,
    /// [`token_digest`] of the revoked value.
    pub value_sha256: String,
    /// `ssf`, `admin` or `redis`.
    pub source: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub until: Option<i64>,
}

/// `signature` (decision) / `response_signature` (outcome) object: an RFC 9421 signature as
/// verified or produced. Never the signature base itself (it contains the access token): its
/// SHA-256, and SHA-512 for `rsa-pss-sha512`, so `audit verify --signatures` can re-check
/// `value` against the signer's key later.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignatureInfo {
    /// The label in `Signature-Input` / `Signature`.
    pub label: String,
    pub keyid: String,
    /// `ecdsa-p256-sha256`, `ed25519` or `rsa-pss-sha512`.
    pub alg: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// Covered components in signed order, `@target-uri;req` style.
    pub components: Vec<String>,
    pub created: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<i64>,
    /// The signature bytes, base64 (as in the `Signature` field).
    pub value: String,
    /// base64url (no padding) SHA-256 of the signature base.
    pub base_sha256: String,
    /// base64url (no padding) SHA-512 of the signature base (`rsa-pss-sha512` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_sha512: Option<String>,
    /// The `Content-Digest` value covered and checked against the body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_digest: Option<String>,
}

/// One spec §8 record, minus the chain header. Field order here is the JSON field order: keep it
/// stable, auditors diff these lines. `None` fields are omitted.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditRecord {
    pub kind: RecordKind,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interaction_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub txn: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// The path as the client sent it, only when it differs from `path` (the normalized path
    /// that was matched and forwarded), or when it could not be normalized (then `path` is
    /// absent: the request was refused before any matching).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub raw_path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decision: Option<Verdict>,
    /// Outer `None`: field absent (not a decision). `Some(None)`: `"reason":null` (an allow).
    /// Spec §8: a decision record always carries `reason`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<Option<&'static str>>,
    /// `audit` when the policy runs in `mode: audit` (spec §5): the request was forwarded anyway.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<&'static str>,
    /// `false` beside a `deny` in `mode: audit`: the request was forwarded, the denial was not
    /// enforced (so an auditor reading `decision: deny` is never misled). Absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enforced: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<TokenInfo>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub consent: Option<ConsentInfo>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delegation: Option<Vec<Actor>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub purpose: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scopes: Option<Vec<String>>,
    /// The verified request signature (RFC 9421).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signature: Option<SignatureInfo>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy_revision: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decide_us: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_us: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream_error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cancelled: Option<bool>,
    /// The signature the sidecar put on the response (RFC 9421).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_signature: Option<SignatureInfo>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revocation: Option<RevocationInfo>,
    /// Policy reloads: `ok` or `error`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl AuditRecord {
    /// An empty record of `kind`; prefer the constructors below.
    pub fn new(kind: RecordKind) -> Self {
        Self {
            kind,
            interaction_id: None,
            trace_id: None,
            txn: None,
            api: None,
            route: None,
            method: None,
            path: None,
            raw_path: None,
            decision: None,
            reason: None,
            mode: None,
            enforced: None,
            client_id: None,
            subject: None,
            issuer: None,
            token: None,
            consent: None,
            delegation: None,
            purpose: None,
            scopes: None,
            signature: None,
            policy_revision: None,
            decide_us: None,
            status: None,
            duration_us: None,
            upstream_error: None,
            cancelled: None,
            response_signature: None,
            revocation: None,
            result: None,
            error: None,
        }
    }

    /// A `decision` record: `None` is an allow (`"reason":null`), `Some(r)` a deny.
    pub fn decision(deny: Option<DenyReason>) -> Self {
        let mut r = Self::new(RecordKind::Decision);
        r.decision = Some(if deny.is_some() {
            Verdict::Deny
        } else {
            Verdict::Allow
        });
        r.reason = Some(deny.map(DenyReason::as_str));
        r
    }

    pub fn allow() -> Self {
        Self::decision(None)
    }

    pub fn deny(reason: DenyReason) -> Self {
        Self::decision(Some(reason))
    }

    /// An `outcome` record: the upstream answered `status` after `duration_us` (whole request).
    pub fn outcome(status: u16, duration_us: u64) -> Self {
        let mut r = Self::new(RecordKind::Outcome);
        r.status = Some(status);
        r.duration_us = Some(duration_us);
        r.cancelled = Some(false);
        r
    }

    /// An `outcome` record for a request that never got an upstream answer. `kind` is a fixed
    /// error word (`connect`, `timeout`, …); `status` is what the client received, if anything.
    pub fn upstream_failure(kind: &str, status: Option<u16>, duration_us: u64) -> Self {
        let mut r = Self::new(RecordKind::Outcome);
        r.status = status;
        r.duration_us = Some(duration_us);
        r.upstream_error = Some(kind.to_owned());
        r.cancelled = Some(false);
        r
    }

    pub fn revocation(info: RevocationInfo) -> Self {
        let mut r = Self::new(RecordKind::Revocation);
        r.revocation = Some(info);
        r
    }

    pub fn policy_reload_ok(revision: impl Into<String>) -> Self {
        let mut r = Self::new(RecordKind::PolicyReload);
        r.result = Some("ok");
        r.policy_revision = Some(revision.into());
        r
    }

    /// `error` is the compiler's located message (file:line:col), never request data.
    pub fn policy_reload_failed(error: impl Into<String>) -> Self {
        let mut r = Self::new(RecordKind::PolicyReload);
        r.result = Some("error");
        r.error = Some(error.into());
        r
    }

    /// A `txn_token_issued` record (spec §7) for transaction id `txn`.
    pub fn txn_token_issued(txn: impl Into<String>) -> Self {
        let mut r = Self::new(RecordKind::TxnTokenIssued);
        r.txn = Some(txn.into());
        r
    }

    // Builder-ish setters: `AuditRecord::allow().interaction_id(id).route("accounts", "get")`.

    pub fn interaction_id(mut self, id: impl Into<String>) -> Self {
        self.interaction_id = Some(id.into());
        self
    }

    pub fn trace_id(mut self, id: impl Into<String>) -> Self {
        self.trace_id = Some(id.into());
        self
    }

    pub fn txn(mut self, txn: impl Into<String>) -> Self {
        self.txn = Some(txn.into());
        self
    }

    pub fn route(mut self, api: impl Into<String>, route: impl Into<String>) -> Self {
        self.api = Some(api.into());
        self.route = Some(route.into());
        self
    }

    /// The normalized path that was matched (spec §5), never the raw query string.
    pub fn request(mut self, method: impl Into<String>, path: impl Into<String>) -> Self {
        self.method = Some(method.into());
        self.path = Some(path.into());
        self
    }

    /// The request line's path as received: `path` becomes the normalized path the route was
    /// matched on and the upstream received (spec §5), and `raw_path` keeps what the client
    /// sent when it differs. A path that cannot be normalized (refused as ambiguous) is kept
    /// only as `raw_path`.
    pub fn request_raw(mut self, method: impl Into<String>, raw: &str) -> Self {
        self.method = Some(method.into());
        match crate::path::normalize(raw) {
            Ok(norm) if norm == raw => self.path = Some(raw.to_owned()),
            Ok(norm) => {
                self.path = Some(norm.into_owned());
                self.raw_path = Some(raw.to_owned());
            }
            Err(_) => self.raw_path = Some(raw.to_owned()),
        }
        self
    }

    /// Marks a decision taken by a policy in `mode: audit` (spec §5).
    pub fn audit_mode(mut self) -> Self {
        self.mode = Some("audit");
        self.enforced = Some(false);
        self
    }

    pub fn client_id(mut self, client_id: impl Into<String>) -> Self {
        self.client_id = Some(client_id.into());
        self
    }

    pub fn subject(mut self, subject: impl Into<String>) -> Self {
        self.subject = Some(subject.into());
        self
    }

    pub fn issuer(mut self, issuer: impl Into<String>) -> Self {
        self.issuer = Some(issuer.into());
        self
    }

    pub fn token(mut self, token: TokenInfo) -> Self {
        self.token = Some(token);
        self
    }

    pub fn consent(mut self, consent: ConsentInfo) -> Self {
        self.consent = Some(consent);
        self
    }

    pub fn delegation(mut self, chain: Vec<Actor>) -> Self {
        self.delegation = Some(chain);
        self
    }

    pub fn purpose(mut self, purpose: impl Into<String>) -> Self {
        self.purpose = Some(purpose.into());
        self
    }

    pub fn scopes(mut self, scopes: Vec<String>) -> Self {
        self.scopes = Some(scopes);
        self
    }

    pub fn policy_revision(mut self, revision: impl Into<String>) -> Self {
        self.policy_revision = Some(revision.into());
        self
    }

    pub fn decide_us(mut self, micros: u64) -> Self {
        self.decide_us = Some(micros);
        self
    }

    /// Outcome of a request the client abandoned before the upstream answered.
    pub fn cancelled(mut self) -> Self {
        self.cancelled = Some(true);
        self
    }
}

/// First 22 characters of the base64url SHA-256 of `token` (132 bits): enough to correlate a
/// token across records and revocations, useless for replaying it (spec §8 `token.sha256`).
pub fn token_digest(token: &str) -> String {
    digest_prefix(digest::digest(&digest::SHA256, token.as_bytes()).as_ref())
}

/// The same 22-character form for a SHA-256 the caller already computed (the proxy hashes each
/// token once, for its cache key).
pub fn digest_prefix(sha256: &[u8]) -> String {
    let mut s = URL_SAFE_NO_PAD.encode(sha256);
    s.truncate(22);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(v: &serde_json::Value) -> Vec<String> {
        v.as_object().expect("object").keys().cloned().collect()
    }

    /// `path` is the normalized path (what was matched and forwarded), the
    /// raw one is kept in `raw_path` only when it differs.
    #[test]
    fn request_raw_records_the_normalized_path() {
        let cases: [(&str, &str, Option<&str>, Option<&str>); 5] = [
            (
                "canonical",
                "/accounts/acc-1",
                Some("/accounts/acc-1"),
                None,
            ),
            (
                "encoded unreserved",
                "/accounts/%61cc-1",
                Some("/accounts/acc-1"),
                Some("/accounts/%61cc-1"),
            ),
            (
                "lower-case hex",
                "/a/%c3%a9",
                Some("/a/%C3%A9"),
                Some("/a/%c3%a9"),
            ),
            ("ambiguous: refused", "/a/../b", None, Some("/a/../b")),
            ("encoded slash: refused", "/a%2Fb", None, Some("/a%2Fb")),
        ];
        for (name, raw, path, raw_path) in cases {
            let r = AuditRecord::allow().request_raw("GET", raw);
            assert_eq!(r.path.as_deref(), path, "{name}");
            assert_eq!(r.raw_path.as_deref(), raw_path, "{name}");
            let json = serde_json::to_value(&r).expect("json");
            assert_eq!(json.get("raw_path").is_some(), raw_path.is_some(), "{name}");
        }
    }

    #[test]
    fn token_digest_is_22_chars_of_base64url_sha256() {
        // SHA-256("abc") = ungWv48Bz-pBQUDeXa4iI7ADYaOWF3qctBD_YfIAFa0 (FIPS 180-2 B.1).
        let cases = [
            ("fips vector", "abc", "ungWv48Bz-pBQUDeXa4iI7"),
            ("empty", "", "47DEQpj8HBSa-_TImW-5JC"),
        ];
        for (name, input, want) in cases {
            assert_eq!(token_digest(input), want, "{name}");
        }
    }

    #[test]
    fn records_serialize_with_spec_field_names_and_order() {
        let full = AuditRecord::allow()
            .interaction_id("i-1")
            .txn("t-1")
            .route("accounts", "get-account")
            .request("GET", "/accounts/acc-1")
            .client_id("tpp-1")
            .subject("psu-9")
            .issuer("https://as.bank.example")
            .token(TokenInfo {
                jti: Some("j-1".into()),
                sha256: token_digest("tok"),
                exp: Some(1_764_000_000),
                iat: Some(1_763_999_700),
                binding: "dpop",
                jkt: Some("jkt-1".into()),
            })
            .consent(ConsentInfo {
                id: "c-123".into(),
                source: "record",
                status: Some("Authorised".into()),
                permissions: Some(vec!["ReadAccountsDetail".into()]),
            })
            .delegation(vec![Actor {
                sub: "spiffe://agg".into(),
                client_id: Some("agg-1".into()),
                iss: None,
            }])
            .purpose("account-information")
            .scopes(vec!["accounts".into()])
            .policy_revision("sha256:x")
            .decide_us(14);
        let cases: Vec<(&str, AuditRecord, &str)> = vec![
            (
                "full allow, spec §8 example order",
                full,
                r#"{"kind":"decision","interaction_id":"i-1","txn":"t-1","api":"accounts","route":"get-account","method":"GET","path":"/accounts/acc-1","decision":"allow","reason":null,"client_id":"tpp-1","subject":"psu-9","issuer":"https://as.bank.example","token":{"jti":"j-1","sha256":"GnZ0607njffhrEOak8P6jj","exp":1764000000,"iat":1763999700,"binding":"dpop","jkt":"jkt-1"},"consent":{"id":"c-123","source":"record","status":"Authorised","permissions":["ReadAccountsDetail"]},"delegation":[{"sub":"spiffe://agg","client_id":"agg-1"}],"purpose":"account-information","scopes":["accounts"],"policy_revision":"sha256:x","decide_us":14}"#,
            ),
            (
                "deny carries its reason",
                AuditRecord::deny(DenyReason::TokenExpired).route("accounts", "get-account"),
                r#"{"kind":"decision","api":"accounts","route":"get-account","decision":"deny","reason":"token_expired"}"#,
            ),
            (
                "audit mode deny",
                AuditRecord::deny(DenyReason::ScopeInsufficient).audit_mode(),
                r#"{"kind":"decision","decision":"deny","reason":"scope_insufficient","mode":"audit","enforced":false}"#,
            ),
            (
                "outcome",
                AuditRecord::outcome(200, 5120).interaction_id("i-1"),
                r#"{"kind":"outcome","interaction_id":"i-1","status":200,"duration_us":5120,"cancelled":false}"#,
            ),
            (
                "upstream failure, cancelled",
                AuditRecord::upstream_failure("timeout", None, 30_000_000).cancelled(),
                r#"{"kind":"outcome","duration_us":30000000,"upstream_error":"timeout","cancelled":true}"#,
            ),
            (
                "revocation",
                AuditRecord::revocation(RevocationInfo {
                    kind: "jti",
                    value_sha256: token_digest("j-1"),
                    source: "admin",
                    until: Some(1_764_000_600),
                }),
                r#"{"kind":"revocation","revocation":{"kind":"jti","value_sha256":"tGFBNCCecq--n7UUc5Kkkn","source":"admin","until":1764000600}}"#,
            ),
            (
                "reload ok",
                AuditRecord::policy_reload_ok("sha256:y"),
                r#"{"kind":"policy_reload","policy_revision":"sha256:y","result":"ok"}"#,
            ),
            (
                "reload error",
                AuditRecord::policy_reload_failed("accounts.yaml:3:5: unknown field"),
                r#"{"kind":"policy_reload","result":"error","error":"accounts.yaml:3:5: unknown field"}"#,
            ),
            (
                "txn token",
                AuditRecord::txn_token_issued("t-9").subject("psu-9"),
                r#"{"kind":"txn_token_issued","txn":"t-9","subject":"psu-9"}"#,
            ),
        ];
        for (name, rec, want) in cases {
            assert_eq!(
                serde_json::to_string(&rec).expect("serializable"),
                want,
                "{name}"
            );
        }
    }

    #[test]
    fn allow_always_has_null_reason_and_other_kinds_none() {
        let allow = serde_json::to_value(AuditRecord::allow()).expect("serializable");
        // serde_json::Value sorts keys; order itself is checked on the string form above.
        assert_eq!(keys(&allow), ["decision", "kind", "reason"]);
        assert!(allow["reason"].is_null());
        let outcome = serde_json::to_value(AuditRecord::outcome(204, 1)).expect("serializable");
        assert!(outcome.get("reason").is_none());
    }
}
