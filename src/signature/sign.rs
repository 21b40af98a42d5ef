//! Producing RFC 9421 signatures: the sidecar's response signature (FAPI 2.0 Message
//! Signing, `tag="fapi-2-response"`), and any signature over a [`Message`] (the demo's client
//! signs its payments with it).

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use http::HeaderMap;
use http::header::{CONTENT_TYPE, HeaderValue};
use serde_json::{Map, Value, json};
use sfv::{KeyRef, ListSerializer, StringRef};

use super::base::{self, Message, RequestParts, ResponseParts};
use super::config::SignatureSettings;
use super::fields::{Component, Params, SignatureInput};
use super::{Algorithm, RESPONSE_LABEL, RESPONSE_TAG, audit_info, digest};
use crate::audit::SignatureInfo;

/// Why a signature could not be produced.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignError {
    #[error("a component or parameter cannot be serialized as a structured field")]
    Serialize,
    #[error("signature base: {0}")]
    Base(#[from] base::BaseError),
    #[error("signing failed")]
    Crypto,
    #[error("the signature does not fit in a header value")]
    Header,
}

/// A signature ready to be set on a message.
#[derive(Debug, Clone)]
pub struct Produced {
    /// The `Signature-Input` value (`label=(…);created=…`).
    pub input: String,
    /// The `Signature` value (`label=:…:`).
    pub signature: String,
    pub info: SignatureInfo,
}

/// The `@signature-params` value (RFC 9421 §2.3) for `components` and `params`.
pub fn serialize_params(components: &[Component], params: &Params) -> Result<String, SignError> {
    let mut ser = ListSerializer::new();
    {
        let mut inner = ser.inner_list();
        for c in components {
            let mut item = inner.bare_item(string(&c.name)?);
            if c.bs {
                item = item.parameter(key("bs")?, true);
            }
            if c.req {
                item = item.parameter(key("req")?, true);
            }
        }
        let mut p = inner.finish();
        let int = |v: i64| sfv::Integer::try_from(v).map_err(|_| SignError::Serialize);
        if let Some(v) = params.created {
            p = p.parameter(key("created")?, int(v)?);
        }
        if let Some(v) = params.expires {
            p = p.parameter(key("expires")?, int(v)?);
        }
        for (name, value) in [
            ("nonce", &params.nonce),
            ("keyid", &params.keyid),
            ("alg", &params.alg),
            ("tag", &params.tag),
        ] {
            if let Some(v) = value {
                p = p.parameter(key(name)?, string(v)?);
            }
        }
    }
    ser.finish().ok_or(SignError::Serialize)
}

fn key(k: &str) -> Result<&KeyRef, SignError> {
    KeyRef::from_str(k).map_err(|_| SignError::Serialize)
}

fn string(s: &str) -> Result<&StringRef, SignError> {
    StringRef::from_str(s).map_err(|_| SignError::Serialize)
}

/// Signs `msg` over `components` with `params`, `sign` turning the base into signature bytes.
pub fn produce(
    label: &str,
    msg: Message<'_>,
    components: &[Component],
    params: &Params,
    alg: Algorithm,
    sign: impl FnOnce(&[u8]) -> Result<Vec<u8>, SignError>,
) -> Result<Produced, SignError> {
    let serialized = serialize_params(components, params)?;
    let base = base::signature_base(msg, components, &serialized)?;
    let value = sign(base.as_bytes())?;
    let input = SignatureInput {
        label: label.to_owned(),
        components: components.to_vec(),
        params: params.clone(),
        serialized: serialized.clone(),
    };
    let content_digest = match msg {
        Message::Request(r) => r.headers,
        Message::Response(r) => r.headers,
    }
    .get(digest::HEADER)
    .and_then(|v| v.to_str().ok())
    .filter(|_| {
        components
            .iter()
            .any(|c| c.name == digest::HEADER && !c.req)
    })
    .map(str::to_owned);
    let info = audit_info(label, &input, alg, &value, &base, content_digest);
    Ok(Produced {
        input: format!("{label}={serialized}"),
        signature: format!("{label}=:{}:", STANDARD.encode(&value)),
        info,
    })
}

/// The sidecar's response signing key (EC P-256): from `signatures.response_signing_key_file`
/// or generated at start, its public half published at admin `/jwks`.
pub struct ResponseSigner {
    pair: EcdsaKeyPair,
    rng: SystemRandom,
    keyid: String,
    jwk: Value,
}

impl std::fmt::Debug for ResponseSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseSigner")
            .field("keyid", &self.keyid)
            .finish_non_exhaustive()
    }
}

impl ResponseSigner {
    pub fn new(settings: &SignatureSettings) -> Result<Self, String> {
        let pair = match &settings.response_key {
            Some(der) => {
                EcdsaKeyPair::from_private_key_der(&ECDSA_P256_SHA256_FIXED_SIGNING, &der.0)
                    .map_err(|_| "signatures.response_signing_key_file: not an EC P-256 key")?
            }
            None => EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING)
                .map_err(|_| "signatures: key generation failed")?,
        };
        let point = pair.public_key().as_ref();
        if point.len() != 65 || point[0] != 4 {
            return Err("signatures: unexpected public key encoding".into());
        }
        let mut jwk = Map::new();
        jwk.insert("kty".into(), "EC".into());
        jwk.insert("crv".into(), "P-256".into());
        jwk.insert("x".into(), URL_SAFE_NO_PAD.encode(&point[1..33]).into());
        jwk.insert("y".into(), URL_SAFE_NO_PAD.encode(&point[33..65]).into());
        let keyid = match &settings.response_key_id {
            Some(id) => id.clone(),
            None => crate::jwk::thumbprint(&jwk).map_err(|e| e.to_string())?,
        };
        jwk.insert("kid".into(), keyid.clone().into());
        jwk.insert("use".into(), "sig".into());
        jwk.insert("alg".into(), "ES256".into());
        Ok(Self {
            pair,
            rng: SystemRandom::new(),
            keyid,
            jwk: Value::Object(jwk),
        })
    }

    pub fn keyid(&self) -> &str {
        &self.keyid
    }

    /// The public JWK (no private members) for admin `/jwks`.
    pub fn jwk(&self) -> &Value {
        &self.jwk
    }

    /// `{"keys":[…]}` with the public key.
    pub fn jwks(&self) -> Value {
        json!({ "keys": [self.jwk.clone()] })
    }

    /// Signs a response the sidecar relays: replaces any `Content-Digest`, `Signature` and
    /// `Signature-Input` of the API with its own `Content-Digest` (SHA-256 of `body`, the exact
    /// bytes forwarded) and a `tag="fapi-2-response"` signature covering `@status`,
    /// `content-type` (when the response has one), `content-digest`, and the request's
    /// `"@method";req` and `"@target-uri";req`.
    pub fn sign_response(
        &self,
        status: u16,
        headers: &mut HeaderMap,
        body: &[u8],
        request: RequestParts<'_>,
        now: i64,
    ) -> Result<SignatureInfo, SignError> {
        headers.remove("signature");
        headers.remove("signature-input");
        headers.remove(digest::HEADER);
        let digest_value =
            HeaderValue::from_str(&digest::sha256_field(body)).map_err(|_| SignError::Header)?;
        headers.insert(digest::HEADER, digest_value);
        let mut components = vec![Component::new("@status")];
        if headers.contains_key(CONTENT_TYPE) {
            components.push(Component::new("content-type"));
        }
        components.push(Component::new(digest::HEADER));
        components.push(Component::req("@method"));
        components.push(Component::req("@target-uri"));
        let params = Params {
            created: Some(now),
            keyid: Some(self.keyid.clone()),
            alg: Some(Algorithm::EcdsaP256Sha256.as_str().to_owned()),
            tag: Some(RESPONSE_TAG.to_owned()),
            ..Params::default()
        };
        let msg = Message::Response(ResponseParts {
            status,
            headers,
            request: Some(request),
        });
        let produced = produce(
            RESPONSE_LABEL,
            msg,
            &components,
            &params,
            Algorithm::EcdsaP256Sha256,
            |b| {
                self.pair
                    .sign(&self.rng, b)
                    .map(|s| s.as_ref().to_vec())
                    .map_err(|_| SignError::Crypto)
            },
        )?;
        let input = HeaderValue::from_str(&produced.input).map_err(|_| SignError::Header)?;
        let signature =
            HeaderValue::from_str(&produced.signature).map_err(|_| SignError::Header)?;
        headers.insert("signature-input", input);
        headers.insert("signature", signature);
        Ok(produced.info)
    }
}

#[cfg(test)]
mod tests;
