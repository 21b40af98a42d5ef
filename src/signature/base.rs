//! The signature base (RFC 9421 §2.5): one line per covered component, then
//! `"@signature-params"`. Built from the request *as the client addressed it*: the origin is
//! `listen.public_url` (the client signed the URL it called, not the pod address), the path
//! and query are the bytes of the request line, unnormalized.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use http::HeaderMap;

use super::fields::Component;

/// A request as its signer saw it.
#[derive(Debug, Clone, Copy)]
pub struct RequestParts<'a> {
    pub method: &'a str,
    /// `https` or `http`, lower case (from `listen.public_url`).
    pub scheme: &'a str,
    /// `host[:port]`, lower case, default port omitted (RFC 9421 §2.2.3).
    pub authority: &'a str,
    /// The path of the request target, as sent.
    pub path: &'a str,
    /// The query of the request target, as sent, without `?`.
    pub query: Option<&'a str>,
    pub headers: &'a HeaderMap,
}

impl RequestParts<'_> {
    /// RFC 9421 §2.2.2 `@target-uri`: scheme, authority, path and query of the request.
    pub fn target_uri(&self) -> String {
        let q = self.query.map_or(0, |q| q.len() + 1);
        let mut s = String::with_capacity(
            self.scheme.len() + 3 + self.authority.len() + self.path.len() + q,
        );
        s.push_str(self.scheme);
        s.push_str("://");
        s.push_str(self.authority);
        s.push_str(self.path_or_slash());
        if let Some(q) = self.query {
            s.push('?');
            s.push_str(q);
        }
        s
    }

    fn path_or_slash(&self) -> &str {
        // RFC 9421 §2.2.6: an empty path is `/`.
        if self.path.is_empty() { "/" } else { self.path }
    }
}

/// A response, and the request it answers (for `;req` components, RFC 9421 §2.4).
#[derive(Debug, Clone, Copy)]
pub struct ResponseParts<'a> {
    pub status: u16,
    pub headers: &'a HeaderMap,
    pub request: Option<RequestParts<'a>>,
}

/// The message a signature is over.
#[derive(Debug, Clone, Copy)]
pub enum Message<'a> {
    Request(RequestParts<'a>),
    Response(ResponseParts<'a>),
}

/// Why a base cannot be built. The signature is then refused (`signature_invalid`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BaseError {
    #[error("covered field {0:?} is absent")]
    Missing(String),
    #[error("component {0:?} is not supported")]
    Unsupported(String),
    #[error("component {0:?} does not apply to this message")]
    WrongMessage(String),
    #[error("field {0:?} is not visible ASCII")]
    NotAscii(String),
}

/// Builds the signature base (RFC 9421 §2.5) for `components` and the serialized signature
/// parameters `params` (the `@signature-params` value).
pub fn signature_base(
    msg: Message<'_>,
    components: &[Component],
    params: &str,
) -> Result<String, BaseError> {
    let mut base = String::with_capacity(256 + params.len());
    for c in components {
        base.push_str(&c.identifier());
        base.push_str(": ");
        value(msg, c, &mut base)?;
        base.push('\n');
    }
    base.push_str("\"@signature-params\": ");
    base.push_str(params);
    Ok(base)
}

/// Appends the component value of `c` in `msg` to `out`.
fn value(msg: Message<'_>, c: &Component, out: &mut String) -> Result<(), BaseError> {
    let wrong = || BaseError::WrongMessage(c.name.clone());
    // RFC 9421 §2.4: `;req` names the request a response answers; on a request it is an error.
    let (req, resp) = match (msg, c.req) {
        (Message::Request(r), false) => (Some(r), None),
        (Message::Request(_), true) => return Err(wrong()),
        (Message::Response(r), true) => (Some(r.request.ok_or_else(wrong)?), None),
        (Message::Response(r), false) => (None, Some(r)),
    };
    let headers = match (req, resp) {
        (Some(r), _) => r.headers,
        (None, Some(r)) => r.headers,
        (None, None) => return Err(wrong()),
    };
    if !c.is_derived() {
        return field(headers, c, out);
    }
    let name = c.name.as_str();
    if name == "@status" {
        let r = resp.ok_or_else(wrong)?;
        out.push_str(&r.status.to_string());
        return Ok(());
    }
    let Some(r) = req else {
        // Every other derived component is a request component (RFC 9421 §2.2).
        return Err(wrong());
    };
    match name {
        "@method" => out.push_str(r.method),
        "@target-uri" => out.push_str(&r.target_uri()),
        "@authority" => out.push_str(r.authority),
        "@scheme" => out.push_str(r.scheme),
        "@request-target" => {
            out.push_str(r.path_or_slash());
            if let Some(q) = r.query {
                out.push('?');
                out.push_str(q);
            }
        }
        "@path" => out.push_str(r.path_or_slash()),
        // RFC 9421 §2.2.7: with no query, the value is `?` alone.
        "@query" => {
            out.push('?');
            out.push_str(r.query.unwrap_or(""));
        }
        // `@query-param` would need a re-encoding that two parsers can disagree on;
        // `@signature-params` must never be covered (RFC 9421 §2.3).
        _ => return Err(BaseError::Unsupported(c.name.clone())),
    }
    Ok(())
}

/// RFC 9421 §2.1: every field line, trimmed of surrounding whitespace, joined with `, `; with
/// `;bs` (§2.1.3) each line base64-encoded as a byte sequence.
fn field(headers: &HeaderMap, c: &Component, out: &mut String) -> Result<(), BaseError> {
    let mut lines = headers.get_all(c.name.as_str()).iter().peekable();
    if lines.peek().is_none() {
        return Err(BaseError::Missing(c.name.clone()));
    }
    for (i, line) in lines.enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        if c.bs {
            let trimmed = line.as_bytes().trim_ascii();
            out.push(':');
            out.push_str(&STANDARD.encode(trimmed));
            out.push(':');
        } else {
            let s = line
                .to_str()
                .map_err(|_| BaseError::NotAscii(c.name.clone()))?;
            out.push_str(s.trim_matches([' ', '\t']));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
