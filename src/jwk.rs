//! Public JSON Web Keys (RFC 7517/7518/8037): parsing, RFC 7638 thumbprints and JWS signature
//! verification with aws-lc-rs. Used for DPoP proof keys (RFC 9449 §4.2), where the key arrives
//! inside the (untrusted) proof itself, so every member is checked before any crypto runs.

use aws_lc_rs::constant_time::verify_slices_are_equal;
use aws_lc_rs::digest;
use aws_lc_rs::signature::{self, ParsedPublicKey, RsaParameters, RsaPublicKeyComponents};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value};

/// Asymmetric JWS algorithms (RFC 7518 §3.1, RFC 8037 §3.1). `none` and the HMAC family are not
/// representable: a DPoP proof must be signed with the private half of the key it carries
/// (RFC 9449 §4.2, RFC 8725 §3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JwsAlg {
    ES256,
    ES384,
    PS256,
    PS384,
    PS512,
    RS256,
    RS384,
    RS512,
    EdDSA,
}

/// Why a JWK was refused. Carries no key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwkError {
    #[error("jwk member {0:?} is missing or not a string")]
    MissingMember(&'static str),
    #[error("jwk member {0:?} is not canonical base64url (RFC 7515 §2) or has the wrong length")]
    BadEncoding(&'static str),
    #[error("jwk kty {0:?} is not supported (EC, RSA, OKP)")]
    UnsupportedKty(String),
    #[error("symmetric jwk (kty oct) is never accepted")]
    Symmetric,
    #[error("jwk contains private key member {0:?}")]
    PrivateMember(&'static str),
    #[error("jwk curve {0:?} is not supported")]
    UnsupportedCurve(String),
    #[error("jwk is not a valid public key for its curve")]
    InvalidKey,
    #[error("RSA modulus of {0} bits is outside 2048..=8192")]
    RsaModulusSize(usize),
    #[error("RSA public exponent is not acceptable")]
    RsaExponent,
}

/// A validated public key from a JWK, with its RFC 7638 thumbprint precomputed.
#[derive(Debug, Clone)]
pub struct PublicJwk {
    key: KeyMaterial,
    /// The JWK's own `alg` member (RFC 7517 §4.4), when present: the key is then only used with it.
    alg: Option<String>,
    thumbprint: String,
}

#[derive(Debug, Clone)]
enum KeyMaterial {
    /// Uncompressed SEC1 point `0x04 || x || y`.
    P256(Vec<u8>),
    P384(Vec<u8>),
    /// Big-endian, without leading zeros (RFC 7518 §6.3.1).
    Rsa {
        n: Vec<u8>,
        e: Vec<u8>,
    },
    Ed25519(Vec<u8>),
}

/// Members that only a private (or symmetric) JWK has: RFC 7518 §6.2.2, §6.3.2, §6.4.1 and
/// RFC 8037 §2. Their presence means the sender leaked its key, or confuses us on purpose.
const PRIVATE_MEMBERS: [&str; 8] = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

/// RFC 7638 §3: the SHA-256 thumbprint of the required public members, base64url without padding.
pub fn thumbprint(jwk: &Map<String, Value>) -> Result<String, JwkError> {
    let kty = member(jwk, "kty")?;
    // §3.2: only the required members, in lexicographic order, no whitespace.
    let members: &[&'static str] = match kty {
        "EC" => &["crv", "kty", "x", "y"],
        "RSA" => &["e", "kty", "n"],
        "OKP" => &["crv", "kty", "x"],
        "oct" => return Err(JwkError::Symmetric),
        other => return Err(JwkError::UnsupportedKty(truncated(other))),
    };
    let mut canonical = String::from("{");
    for (i, name) in members.iter().enumerate() {
        if i > 0 {
            canonical.push(',');
        }
        canonical.push('"');
        canonical.push_str(name);
        canonical.push_str("\":");
        // serde_json escapes exactly as RFC 7638 §3.3 (RFC 7159 string encoding) requires.
        canonical.push_str(&Value::String(member(jwk, name)?.to_owned()).to_string());
    }
    canonical.push('}');
    Ok(URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA256, canonical.as_bytes())))
}

/// Compares two thumbprints in constant time, so a caller cannot learn a prefix of `cnf.jkt`.
pub fn thumbprints_equal(a: &str, b: &str) -> bool {
    verify_slices_are_equal(a.as_bytes(), b.as_bytes()).is_ok()
}

impl JwsAlg {
    pub const ALL: [JwsAlg; 9] = [
        Self::ES256,
        Self::ES384,
        Self::PS256,
        Self::PS384,
        Self::PS512,
        Self::RS256,
        Self::RS384,
        Self::RS512,
        Self::EdDSA,
    ];

    /// Exact, case-sensitive match (RFC 7515 §4.1.1). Never yields `none` or `HS*`.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.as_str() == s)
    }

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::ES256 => "ES256",
            Self::ES384 => "ES384",
            Self::PS256 => "PS256",
            Self::PS384 => "PS384",
            Self::PS512 => "PS512",
            Self::RS256 => "RS256",
            Self::RS384 => "RS384",
            Self::RS512 => "RS512",
            Self::EdDSA => "EdDSA",
        }
    }

    fn rsa_params(self) -> Option<&'static RsaParameters> {
        match self {
            Self::PS256 => Some(&signature::RSA_PSS_2048_8192_SHA256),
            Self::PS384 => Some(&signature::RSA_PSS_2048_8192_SHA384),
            Self::PS512 => Some(&signature::RSA_PSS_2048_8192_SHA512),
            Self::RS256 => Some(&signature::RSA_PKCS1_2048_8192_SHA256),
            Self::RS384 => Some(&signature::RSA_PKCS1_2048_8192_SHA384),
            Self::RS512 => Some(&signature::RSA_PKCS1_2048_8192_SHA512),
            Self::ES256 | Self::ES384 | Self::EdDSA => None,
        }
    }
}

impl std::fmt::Display for JwsAlg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PublicJwk {
    /// Parses and validates a public JWK. Unknown members are ignored (RFC 7517 §4).
    pub fn from_json(jwk: &Map<String, Value>) -> Result<Self, JwkError> {
        if let Some(name) = PRIVATE_MEMBERS.into_iter().find(|m| jwk.contains_key(*m)) {
            return Err(JwkError::PrivateMember(name));
        }
        let key = match member(jwk, "kty")? {
            "EC" => parse_ec(jwk)?,
            "RSA" => parse_rsa(jwk)?,
            "OKP" => parse_okp(jwk)?,
            "oct" => return Err(JwkError::Symmetric),
            other => return Err(JwkError::UnsupportedKty(truncated(other))),
        };
        let alg = match jwk.get("alg") {
            None => None,
            Some(Value::String(a)) => Some(a.clone()),
            Some(_) => return Err(JwkError::MissingMember("alg")),
        };
        Ok(Self {
            key,
            alg,
            thumbprint: thumbprint(jwk)?,
        })
    }

    /// RFC 7638 thumbprint, the value a DPoP-bound token carries in `cnf.jkt` (RFC 9449 §6.1).
    pub fn thumbprint(&self) -> &str {
        &self.thumbprint
    }

    /// Whether this key can produce signatures of `alg` (RFC 7518 §3.4: ES256 is P-256 only, …).
    pub fn fits(&self, alg: JwsAlg) -> bool {
        let kind_fits = match &self.key {
            KeyMaterial::P256(_) => alg == JwsAlg::ES256,
            KeyMaterial::P384(_) => alg == JwsAlg::ES384,
            KeyMaterial::Rsa { .. } => alg.rsa_params().is_some(),
            KeyMaterial::Ed25519(_) => alg == JwsAlg::EdDSA,
        };
        kind_fits && self.alg.as_deref().is_none_or(|a| a == alg.as_str())
    }

    /// Verifies a JWS signature (RFC 7515 §5.2 step 8). ECDSA signatures are the fixed-width
    /// `r || s` form of RFC 7518 §3.4, not DER. Returns false for a key that does not fit `alg`.
    pub fn verify(&self, alg: JwsAlg, signing_input: &[u8], signature: &[u8]) -> bool {
        if !self.fits(alg) {
            return false;
        }
        let ok = match (&self.key, alg.rsa_params()) {
            (KeyMaterial::Rsa { n, e }, Some(params)) => RsaPublicKeyComponents {
                n: n.as_slice(),
                e: e.as_slice(),
            }
            .verify(params, signing_input, signature),
            (KeyMaterial::P256(point), _) => {
                signature::UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point)
                    .verify(signing_input, signature)
            }
            (KeyMaterial::P384(point), _) => {
                signature::UnparsedPublicKey::new(&signature::ECDSA_P384_SHA384_FIXED, point)
                    .verify(signing_input, signature)
            }
            (KeyMaterial::Ed25519(x), _) => {
                signature::UnparsedPublicKey::new(&signature::ED25519, x)
                    .verify(signing_input, signature)
            }
            (KeyMaterial::Rsa { .. }, None) => return false,
        };
        ok.is_ok()
    }
}

impl PublicJwk {
    /// Verifies a signature over a message of which only the digest is known (`digest` is
    /// SHA-256 for ES256, SHA-512 for PS512). `audit verify --signatures` re-checks stored
    /// request signatures this way, from the digest of a signature base it never stored.
    /// EdDSA signs the whole message (RFC 8032 has no prehash here), so it always fails.
    pub fn verify_digest(&self, alg: JwsAlg, digest: &[u8], signature: &[u8]) -> bool {
        use aws_lc_rs::digest::{Digest, SHA256, SHA512};
        if !self.fits(alg) {
            return false;
        }
        match (&self.key, alg) {
            (KeyMaterial::P256(point), JwsAlg::ES256) => Digest::import_less_safe(digest, &SHA256)
                .is_ok_and(|d| {
                    signature::UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point)
                        .verify_digest(&d, signature)
                        .is_ok()
                }),
            (KeyMaterial::Rsa { n, e }, JwsAlg::PS512) => {
                let parsed = RsaPublicKeyComponents {
                    n: n.as_slice(),
                    e: e.as_slice(),
                }
                .to_parsed_public_key(&signature::RSA_PSS_2048_8192_SHA512);
                match (parsed, Digest::import_less_safe(digest, &SHA512)) {
                    (Ok(k), Ok(d)) => k.verify_digest_sig(&d, signature).is_ok(),
                    _ => false,
                }
            }
            _ => false,
        }
    }

    /// The key's family, to pick the one RFC 9421 algorithm it may sign with.
    pub fn kind(&self) -> KeyKind {
        match &self.key {
            KeyMaterial::P256(_) => KeyKind::P256,
            KeyMaterial::P384(_) => KeyKind::P384,
            KeyMaterial::Rsa { .. } => KeyKind::Rsa,
            KeyMaterial::Ed25519(_) => KeyKind::Ed25519,
        }
    }
}

/// The family of a [`PublicJwk`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    P256,
    P384,
    Rsa,
    Ed25519,
}

fn member<'a>(jwk: &'a Map<String, Value>, name: &'static str) -> Result<&'a str, JwkError> {
    jwk.get(name)
        .and_then(Value::as_str)
        .ok_or(JwkError::MissingMember(name))
}

/// Decodes a base64url member. The engine refuses padding and non-zero trailing bits, so each
/// key has exactly one encoding and therefore exactly one thumbprint.
fn b64_member(jwk: &Map<String, Value>, name: &'static str) -> Result<Vec<u8>, JwkError> {
    let s = member(jwk, name)?;
    // 8192-bit RSA modulus = 1366 chars; anything longer is not a key we accept.
    if s.len() > 1400 {
        return Err(JwkError::BadEncoding(name));
    }
    URL_SAFE_NO_PAD
        .decode(s)
        .map_err(|_| JwkError::BadEncoding(name))
}

fn parse_ec(jwk: &Map<String, Value>) -> Result<KeyMaterial, JwkError> {
    let crv = member(jwk, "crv")?;
    let (len, alg): (usize, &'static signature::EcdsaVerificationAlgorithm) = match crv {
        "P-256" => (32, &signature::ECDSA_P256_SHA256_FIXED),
        "P-384" => (48, &signature::ECDSA_P384_SHA384_FIXED),
        other => return Err(JwkError::UnsupportedCurve(truncated(other))),
    };
    // RFC 7518 §6.2.1.2/3: coordinates are full-length octet strings for the curve.
    let x = b64_member(jwk, "x")?;
    let y = b64_member(jwk, "y")?;
    if x.len() != len {
        return Err(JwkError::BadEncoding("x"));
    }
    if y.len() != len {
        return Err(JwkError::BadEncoding("y"));
    }
    let mut point = Vec::with_capacity(1 + 2 * len);
    point.push(0x04);
    point.extend_from_slice(&x);
    point.extend_from_slice(&y);
    // Reject points not on the curve now (invalid-curve attacks), not at first use.
    ParsedPublicKey::new(alg, &point).map_err(|_| JwkError::InvalidKey)?;
    Ok(if len == 32 {
        KeyMaterial::P256(point)
    } else {
        KeyMaterial::P384(point)
    })
}

fn parse_rsa(jwk: &Map<String, Value>) -> Result<KeyMaterial, JwkError> {
    let n = b64_member(jwk, "n")?;
    let e = b64_member(jwk, "e")?;
    // RFC 7518 §6.3.1.1: minimal encoding, so no leading zero octet.
    let first = *n.first().ok_or(JwkError::BadEncoding("n"))?;
    if first == 0 {
        return Err(JwkError::BadEncoding("n"));
    }
    let bits = (n.len() - 1) * 8 + (8 - first.leading_zeros() as usize);
    if !(2048..=8192).contains(&bits) {
        return Err(JwkError::RsaModulusSize(bits));
    }
    // A small odd exponent (at most 32 bits, as every real key has): e = 1 would make any
    // "signature" verify, and huge exponents make verification expensive for an attacker's key.
    let e_ok = matches!(e.first(), Some(&b) if b != 0)
        && e.len() <= 4
        && e.last().is_some_and(|b| b & 1 == 1)
        && !(e.len() == 1 && e[0] < 3);
    if !e_ok {
        return Err(JwkError::RsaExponent);
    }
    Ok(KeyMaterial::Rsa { n, e })
}

fn parse_okp(jwk: &Map<String, Value>) -> Result<KeyMaterial, JwkError> {
    // RFC 8037 §2: Ed25519 only; X25519 is for key agreement, Ed448 is not supported.
    match member(jwk, "crv")? {
        "Ed25519" => {}
        other => return Err(JwkError::UnsupportedCurve(truncated(other))),
    }
    let x = b64_member(jwk, "x")?;
    if x.len() != 32 {
        return Err(JwkError::BadEncoding("x"));
    }
    ParsedPublicKey::new(&signature::ED25519, &x).map_err(|_| JwkError::InvalidKey)?;
    Ok(KeyMaterial::Ed25519(x))
}

/// Error messages may echo a short attacker-chosen value; never a long one.
fn truncated(s: &str) -> String {
    s.chars().take(16).collect()
}

#[cfg(test)]
mod tests;
