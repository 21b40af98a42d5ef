//! HTTP Message Signatures (RFC 9421) as FAPI 2.0 Message Signing profiles them, with
//! `Content-Digest` (RFC 9530): clients sign requests, the sidecar signs responses, and the
//! audit trail keeps what was signed, so a bank can later prove what it received and answered.
//!
//! - [`fields`]: `Signature-Input` / `Signature` parsed strictly with `sfv` (RFC 8941/9651).
//! - [`base`]: the signature base (RFC 9421 §2.5) and the derived components.
//! - [`digest`]: `Content-Digest` over the exact body bytes (RFC 9530).
//! - [`verify`]: checking a client's `tag="fapi-2-request"` signature.
//! - [`sign`]: producing signatures (the response signer, and clients in the demo).
//! - [`keys`]: client keys from `clients:` (the issuers' JWKS machinery).
//! - [`config`], [`rule`]: the `clients:` / `signatures:` sections and the route rule.
//! - [`recheck`]: `fapi-guard audit verify --signatures`.
//!
//! Only ecdsa-p256-sha256, ed25519 and rsa-pss-sha512 exist here: the key decides which one
//! applies, an `alg` parameter may only confirm it, and no shared-secret (HMAC) algorithm is
//! representable (a bank cannot prove with a secret it shares who signed).

pub mod base;
pub mod config;
pub mod digest;
pub mod fields;
pub mod keys;
pub mod recheck;
pub mod rule;
pub mod sign;
pub mod verify;

use aws_lc_rs::digest as sha;
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};

use crate::audit::SignatureInfo;
use crate::jwk::{JwsAlg, KeyKind, PublicJwk};

pub use base::{Message, RequestParts, ResponseParts};
pub use fields::Component;
pub use keys::ClientKeys;
pub use rule::{RawSignatureRule, RequestSignatures, ResponseSignatures, SignatureRule};
pub use sign::ResponseSigner;
pub use verify::{SigFailure, VerifiedRequest};

/// FAPI 2.0 Message Signing: the tag of a client's request signature.
pub const REQUEST_TAG: &str = "fapi-2-request";
/// FAPI 2.0 Message Signing: the tag of the resource server's response signature.
pub const RESPONSE_TAG: &str = "fapi-2-response";
/// The label the sidecar gives its response signature.
pub const RESPONSE_LABEL: &str = "sig1";

/// The signature algorithms accepted (RFC 9421 §3.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// RFC 9421 §3.3.4: ECDSA P-256 over SHA-256 of the base, `r || s`.
    EcdsaP256Sha256,
    /// RFC 9421 §3.3.6: Ed25519 over the whole base.
    Ed25519,
    /// RFC 9421 §3.3.1: RSASSA-PSS, SHA-512, MGF1 SHA-512, 64-byte salt.
    RsaPssSha512,
}

impl Algorithm {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::EcdsaP256Sha256 => "ecdsa-p256-sha256",
            Self::Ed25519 => "ed25519",
            Self::RsaPssSha512 => "rsa-pss-sha512",
        }
    }

    /// An `alg` parameter we accept; `hmac-sha256`, `rsa-v1_5-sha256`, `ecdsa-p384-sha384`
    /// and anything unknown are not.
    pub fn parse(s: &str) -> Option<Self> {
        [Self::EcdsaP256Sha256, Self::Ed25519, Self::RsaPssSha512]
            .into_iter()
            .find(|a| a.as_str() == s)
    }

    /// The one algorithm `key` signs with here, if any: the key type decides (RFC 9421 §3.2
    /// step 5), and a JWK `alg` member that names another algorithm rules the key out.
    pub fn for_key(key: &PublicJwk) -> Option<Self> {
        let alg = match key.kind() {
            KeyKind::P256 => Self::EcdsaP256Sha256,
            KeyKind::Ed25519 => Self::Ed25519,
            KeyKind::Rsa => Self::RsaPssSha512,
            KeyKind::P384 => return None,
        };
        key.fits(alg.jws()).then_some(alg)
    }

    /// The same primitive in JOSE terms (RFC 7518): ES256 is `r || s` over SHA-256, PS512 is
    /// PSS with SHA-512 and a 64-byte salt, EdDSA is Ed25519.
    pub const fn jws(self) -> JwsAlg {
        match self {
            Self::EcdsaP256Sha256 => JwsAlg::ES256,
            Self::Ed25519 => JwsAlg::EdDSA,
            Self::RsaPssSha512 => JwsAlg::PS512,
        }
    }
}

/// The audit form of a signature: everything but the base itself, which holds the access
/// token; its SHA-256 (and SHA-512 for rsa-pss-sha512) lets `audit verify --signatures`
/// re-check the stored signature value later.
pub fn audit_info(
    label: &str,
    input: &fields::SignatureInput,
    alg: Algorithm,
    value: &[u8],
    base: &str,
    content_digest: Option<String>,
) -> SignatureInfo {
    let b = base.as_bytes();
    SignatureInfo {
        label: label.to_owned(),
        keyid: input.params.keyid.clone().unwrap_or_default(),
        alg: alg.as_str().to_owned(),
        tag: input.params.tag.clone(),
        components: input.components.iter().map(Component::audit_name).collect(),
        created: input.params.created.unwrap_or_default(),
        expires: input.params.expires,
        value: STANDARD.encode(value),
        base_sha256: URL_SAFE_NO_PAD.encode(sha::digest(&sha::SHA256, b)),
        base_sha512: (alg == Algorithm::RsaPssSha512)
            .then(|| URL_SAFE_NO_PAD.encode(sha::digest(&sha::SHA512, b))),
        content_digest,
    }
}

#[cfg(test)]
mod tests;
