//! Deny reasons: the stable codes of spec §6, and the one place that maps each to an HTTP status
//! and an RFC 6750 / RFC 9449 / RFC 9470 error code.

use http::StatusCode;

/// Why a request was refused. The string form is a metric label and an audit field: never rename.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DenyReason {
    RouteNotFound,
    RequestMalformed,
    RequestTooLarge,
    HeadersTooLarge,
    TokenMissing,
    TokenMalformed,
    TokenSignatureInvalid,
    TokenExpired,
    TokenNotYetValid,
    TokenLifetimeExceeded,
    TokenAlgorithmRejected,
    TokenIssuerUnknown,
    TokenAudienceMismatch,
    TokenTypeInvalid,
    TokenRevoked,
    TokenInactive,
    BindingMissing,
    BindingSchemeMismatch,
    DpopProofMissing,
    DpopProofInvalid,
    DpopProofReplayed,
    DpopProofStale,
    DpopHtmMismatch,
    DpopHtuMismatch,
    DpopAthMismatch,
    DpopKeyMismatch,
    DpopNonceRequired,
    MtlsCertificateMissing,
    MtlsCertificateMismatch,
    ScopeInsufficient,
    ConsentMissing,
    ConsentNotAuthorised,
    ConsentExpired,
    ConsentRevoked,
    ConsentClientMismatch,
    ConsentPermissionMissing,
    ConsentResourceMismatch,
    ConsentBodyMismatch,
    DelegationNotAllowed,
    DelegationDepthExceeded,
    DelegationActorNotAllowed,
    DelegationChainNotAllowed,
    DelegationMalformed,
    DelegationScopeEscalation,
    PurposeNotAllowed,
    AssuranceInsufficient,
    SignatureMissing,
    SignatureInvalid,
    SignatureStale,
    ContentDigestMismatch,
    DependencyUnavailable,
}

/// The `error` code carried in the `WWW-Authenticate` challenge and the JSON body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// RFC 6750 §3.1
    InvalidRequest,
    /// RFC 6750 §3.1
    InvalidToken,
    /// RFC 6750 §3.1
    InsufficientScope,
    /// RFC 9449 §7.1
    InvalidDpopProof,
    /// RFC 9449 §9
    UseDpopNonce,
    /// RFC 9470 §3
    InsufficientUserAuthentication,
    /// Not an OAuth error: route missing, body too large, dependency down.
    NotFound,
    TooLarge,
    Unavailable,
}

impl ErrorCode {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::InvalidRequest => "invalid_request",
            Self::InvalidToken => "invalid_token",
            Self::InsufficientScope => "insufficient_scope",
            Self::InvalidDpopProof => "invalid_dpop_proof",
            Self::UseDpopNonce => "use_dpop_nonce",
            Self::InsufficientUserAuthentication => "insufficient_user_authentication",
            Self::NotFound => "not_found",
            Self::TooLarge => "request_too_large",
            Self::Unavailable => "temporarily_unavailable",
        }
    }

    /// Whether the error belongs in a `WWW-Authenticate` challenge (RFC 6750 §3).
    pub const fn is_challenge(self) -> bool {
        !matches!(self, Self::NotFound | Self::TooLarge | Self::Unavailable)
    }
}

/// Which challenge scheme a denial is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Bearer,
    Dpop,
}

impl DenyReason {
    pub const ALL: &'static [DenyReason] = &[
        Self::RouteNotFound,
        Self::RequestMalformed,
        Self::RequestTooLarge,
        Self::HeadersTooLarge,
        Self::TokenMissing,
        Self::TokenMalformed,
        Self::TokenSignatureInvalid,
        Self::TokenExpired,
        Self::TokenNotYetValid,
        Self::TokenLifetimeExceeded,
        Self::TokenAlgorithmRejected,
        Self::TokenIssuerUnknown,
        Self::TokenAudienceMismatch,
        Self::TokenTypeInvalid,
        Self::TokenRevoked,
        Self::TokenInactive,
        Self::BindingMissing,
        Self::BindingSchemeMismatch,
        Self::DpopProofMissing,
        Self::DpopProofInvalid,
        Self::DpopProofReplayed,
        Self::DpopProofStale,
        Self::DpopHtmMismatch,
        Self::DpopHtuMismatch,
        Self::DpopAthMismatch,
        Self::DpopKeyMismatch,
        Self::DpopNonceRequired,
        Self::MtlsCertificateMissing,
        Self::MtlsCertificateMismatch,
        Self::ScopeInsufficient,
        Self::ConsentMissing,
        Self::ConsentNotAuthorised,
        Self::ConsentExpired,
        Self::ConsentRevoked,
        Self::ConsentClientMismatch,
        Self::ConsentPermissionMissing,
        Self::ConsentResourceMismatch,
        Self::ConsentBodyMismatch,
        Self::DelegationNotAllowed,
        Self::DelegationDepthExceeded,
        Self::DelegationActorNotAllowed,
        Self::DelegationChainNotAllowed,
        Self::DelegationMalformed,
        Self::DelegationScopeEscalation,
        Self::PurposeNotAllowed,
        Self::AssuranceInsufficient,
        Self::SignatureMissing,
        Self::SignatureInvalid,
        Self::SignatureStale,
        Self::ContentDigestMismatch,
        Self::DependencyUnavailable,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::RouteNotFound => "route_not_found",
            Self::RequestMalformed => "request_malformed",
            Self::RequestTooLarge => "request_too_large",
            Self::HeadersTooLarge => "headers_too_large",
            Self::TokenMissing => "token_missing",
            Self::TokenMalformed => "token_malformed",
            Self::TokenSignatureInvalid => "token_signature_invalid",
            Self::TokenExpired => "token_expired",
            Self::TokenNotYetValid => "token_not_yet_valid",
            Self::TokenLifetimeExceeded => "token_lifetime_exceeded",
            Self::TokenAlgorithmRejected => "token_algorithm_rejected",
            Self::TokenIssuerUnknown => "token_issuer_unknown",
            Self::TokenAudienceMismatch => "token_audience_mismatch",
            Self::TokenTypeInvalid => "token_type_invalid",
            Self::TokenRevoked => "token_revoked",
            Self::TokenInactive => "token_inactive",
            Self::BindingMissing => "binding_missing",
            Self::BindingSchemeMismatch => "binding_scheme_mismatch",
            Self::DpopProofMissing => "dpop_proof_missing",
            Self::DpopProofInvalid => "dpop_proof_invalid",
            Self::DpopProofReplayed => "dpop_proof_replayed",
            Self::DpopProofStale => "dpop_proof_stale",
            Self::DpopHtmMismatch => "dpop_htm_mismatch",
            Self::DpopHtuMismatch => "dpop_htu_mismatch",
            Self::DpopAthMismatch => "dpop_ath_mismatch",
            Self::DpopKeyMismatch => "dpop_key_mismatch",
            Self::DpopNonceRequired => "dpop_nonce_required",
            Self::MtlsCertificateMissing => "mtls_certificate_missing",
            Self::MtlsCertificateMismatch => "mtls_certificate_mismatch",
            Self::ScopeInsufficient => "scope_insufficient",
            Self::ConsentMissing => "consent_missing",
            Self::ConsentNotAuthorised => "consent_not_authorised",
            Self::ConsentExpired => "consent_expired",
            Self::ConsentRevoked => "consent_revoked",
            Self::ConsentClientMismatch => "consent_client_mismatch",
            Self::ConsentPermissionMissing => "consent_permission_missing",
            Self::ConsentResourceMismatch => "consent_resource_mismatch",
            Self::ConsentBodyMismatch => "consent_body_mismatch",
            Self::DelegationNotAllowed => "delegation_not_allowed",
            Self::DelegationDepthExceeded => "delegation_depth_exceeded",
            Self::DelegationActorNotAllowed => "delegation_actor_not_allowed",
            Self::DelegationChainNotAllowed => "delegation_chain_not_allowed",
            Self::DelegationMalformed => "delegation_malformed",
            Self::DelegationScopeEscalation => "delegation_scope_escalation",
            Self::PurposeNotAllowed => "purpose_not_allowed",
            Self::AssuranceInsufficient => "assurance_insufficient",
            Self::SignatureMissing => "signature_missing",
            Self::SignatureInvalid => "signature_invalid",
            Self::SignatureStale => "signature_stale",
            Self::ContentDigestMismatch => "content_digest_mismatch",
            Self::DependencyUnavailable => "dependency_unavailable",
        }
    }

    /// Parses the stable string form (policy test files name reasons this way).
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|r| r.as_str() == s)
    }

    /// Status and error code: spec §6, one line per reason family.
    pub const fn status_and_error(self) -> (StatusCode, ErrorCode) {
        use ErrorCode as E;
        match self {
            Self::RouteNotFound => (StatusCode::NOT_FOUND, E::NotFound),
            // RFC 6750 §3.1 invalid_request: malformed request, duplicated parameters.
            Self::RequestMalformed => (StatusCode::BAD_REQUEST, E::InvalidRequest),
            Self::RequestTooLarge => (StatusCode::PAYLOAD_TOO_LARGE, E::TooLarge),
            // RFC 6585 §5: header fields too large is 431, not 413.
            Self::HeadersTooLarge => (StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, E::TooLarge),
            // RFC 6750 §3.1: no credentials → challenge without an error code (handled by caller).
            Self::TokenMissing => (StatusCode::UNAUTHORIZED, E::InvalidToken),
            // RFC 6750 §3.1 invalid_token; RFC 8705 §3 / RFC 9449 §7.2 binding failures.
            Self::TokenMalformed
            | Self::TokenSignatureInvalid
            | Self::TokenExpired
            | Self::TokenNotYetValid
            | Self::TokenLifetimeExceeded
            | Self::TokenAlgorithmRejected
            | Self::TokenIssuerUnknown
            | Self::TokenAudienceMismatch
            | Self::TokenTypeInvalid
            | Self::TokenRevoked
            | Self::TokenInactive
            | Self::BindingMissing
            | Self::BindingSchemeMismatch
            | Self::MtlsCertificateMissing
            | Self::MtlsCertificateMismatch => (StatusCode::UNAUTHORIZED, E::InvalidToken),
            // RFC 9449 §7.1: invalid_dpop_proof.
            Self::DpopProofMissing
            | Self::DpopProofInvalid
            | Self::DpopProofReplayed
            | Self::DpopProofStale
            | Self::DpopHtmMismatch
            | Self::DpopHtuMismatch
            | Self::DpopAthMismatch
            | Self::DpopKeyMismatch => (StatusCode::UNAUTHORIZED, E::InvalidDpopProof),
            // RFC 9449 §9: use_dpop_nonce with a DPoP-Nonce header.
            Self::DpopNonceRequired => (StatusCode::UNAUTHORIZED, E::UseDpopNonce),
            // RFC 6750 §3.1 insufficient_scope: the token is fine, the grant does not cover this.
            Self::ScopeInsufficient
            | Self::ConsentMissing
            | Self::ConsentNotAuthorised
            | Self::ConsentExpired
            | Self::ConsentRevoked
            | Self::ConsentClientMismatch
            | Self::ConsentPermissionMissing
            | Self::ConsentResourceMismatch
            | Self::ConsentBodyMismatch
            | Self::DelegationNotAllowed
            | Self::DelegationDepthExceeded
            | Self::DelegationActorNotAllowed
            | Self::DelegationChainNotAllowed
            | Self::DelegationMalformed
            | Self::DelegationScopeEscalation
            | Self::PurposeNotAllowed => (StatusCode::FORBIDDEN, E::InsufficientScope),
            // RFC 9470 §3: step-up.
            Self::AssuranceInsufficient => {
                (StatusCode::UNAUTHORIZED, E::InsufficientUserAuthentication)
            }
            // RFC 9421 §3.2 (signature absent, malformed, not verifying, outside its window)
            // and RFC 9530 §2 (content not matching its digest): the request is not
            // acceptable as sent, under a valid token, so 401 with RFC 6750 §3.1
            // invalid_request in the challenge of the client's scheme (RFC 9110 §15.5.2).
            Self::SignatureMissing
            | Self::SignatureInvalid
            | Self::SignatureStale
            | Self::ContentDigestMismatch => (StatusCode::UNAUTHORIZED, E::InvalidRequest),
            // Fail closed when a dependency (JWKS, consent, state) cannot answer.
            Self::DependencyUnavailable => (StatusCode::SERVICE_UNAVAILABLE, E::Unavailable),
        }
    }

    /// The scheme whose challenge carries the error (RFC 9449 §7.1: DPoP proof errors are
    /// reported in a `DPoP` challenge).
    pub const fn scheme(self) -> Option<Scheme> {
        match self.status_and_error().1 {
            ErrorCode::InvalidDpopProof | ErrorCode::UseDpopNonce => Some(Scheme::Dpop),
            _ => None,
        }
    }
}

impl std::fmt::Display for DenyReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_round_trips_and_is_unique() {
        let mut seen = std::collections::HashSet::new();
        for r in DenyReason::ALL {
            assert!(seen.insert(r.as_str()), "duplicate {}", r.as_str());
            assert_eq!(DenyReason::parse(r.as_str()), Some(*r));
        }
        assert_eq!(DenyReason::parse("nope"), None);
    }

    #[test]
    fn families_map_to_spec_statuses() {
        let cases = [
            (DenyReason::RouteNotFound, 404, "not_found"),
            (DenyReason::RequestMalformed, 400, "invalid_request"),
            (DenyReason::TokenExpired, 401, "invalid_token"),
            (DenyReason::BindingSchemeMismatch, 401, "invalid_token"),
            (DenyReason::DpopProofReplayed, 401, "invalid_dpop_proof"),
            (DenyReason::DpopNonceRequired, 401, "use_dpop_nonce"),
            (DenyReason::ScopeInsufficient, 403, "insufficient_scope"),
            (DenyReason::ConsentBodyMismatch, 403, "insufficient_scope"),
            (
                DenyReason::AssuranceInsufficient,
                401,
                "insufficient_user_authentication",
            ),
            (
                DenyReason::DependencyUnavailable,
                503,
                "temporarily_unavailable",
            ),
            (DenyReason::SignatureMissing, 401, "invalid_request"),
            (DenyReason::SignatureInvalid, 401, "invalid_request"),
            (DenyReason::SignatureStale, 401, "invalid_request"),
            (DenyReason::ContentDigestMismatch, 401, "invalid_request"),
            (DenyReason::RequestTooLarge, 413, "request_too_large"),
            (DenyReason::HeadersTooLarge, 431, "request_too_large"),
        ];
        for (reason, status, error) in cases {
            let (s, e) = reason.status_and_error();
            assert_eq!(s.as_u16(), status, "{reason}");
            assert_eq!(e.as_str(), error, "{reason}");
        }
    }
}
