//! The route `signatures:` section of a policy: what a route asks of request and response
//! signatures.

use serde::Deserialize;

/// Raw `signatures: {request: …, response: …}` of a route.
#[derive(Debug, Clone, Copy, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Signatures")]
pub struct RawSignatureRule {
    /// `required`: a `tag="fapi-2-request"` signature (RFC 9421) must verify; `optional`: it
    /// is verified when present; `off`: not looked at.
    #[serde(default)]
    pub request: RequestSignatures,
    /// `sign`: the response gets `Content-Digest` and a `tag="fapi-2-response"` signature.
    #[serde(default)]
    pub response: ResponseSignatures,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RequestSignatures {
    Required,
    Optional,
    #[default]
    Off,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ResponseSignatures {
    Sign,
    #[default]
    Off,
}

/// The compiled rule of a route (both halves default to `off`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SignatureRule {
    pub request: RequestSignatures,
    pub response: ResponseSignatures,
}

impl SignatureRule {
    pub fn verifies_requests(self) -> bool {
        self.request != RequestSignatures::Off
    }

    pub fn signs_responses(self) -> bool {
        self.response == ResponseSignatures::Sign
    }
}

impl RawSignatureRule {
    /// `public` routes carry no token, so no client a request signature could be checked
    /// against.
    pub fn compile(self, public: bool) -> Result<SignatureRule, String> {
        if public && self.request != RequestSignatures::Off {
            return Err(
                "request signatures are checked against the token's client: a public route \
                 takes no token (response signing is allowed)"
                    .into(),
            );
        }
        Ok(SignatureRule {
            request: self.request,
            response: self.response,
        })
    }
}
