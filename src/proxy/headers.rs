//! Header hygiene between client, proxy and upstream, in one place and in a visible order
//! ([`UpstreamHeaders::prepare`]):
//!
//! 1. hop-by-hop removal (RFC 9110 §7.6.1), including the fields a `Connection` header names —
//!    except proxy-owned and end-to-end-critical ones, which no `Connection` option can remove;
//! 2. every client copy of a proxy-owned header is stripped (identity headers, `Txn-Token`,
//!    forwarding and forwarded-certificate headers, rewrite/override headers), including
//!    look-alikes spelled with `_`;
//! 3. the verified values are set last.

use std::net::IpAddr;

use http::HeaderMap;
use http::header::{CONNECTION, HOST, HeaderName, HeaderValue};

use crate::config::Config;
use crate::identity::{IdentityFields, IdentityHeaders};
use crate::response::INTERACTION_ID;
use crate::tls::client_cert::RFC9440_HEADER;

/// Headers that only describe one connection and are never forwarded (RFC 9110 §7.6.1).
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Set only by the proxy (besides the configurable identity headers, forwarded-certificate
/// header and `upstream.strip_headers`). A client copy is always removed.
const PROXY_OWNED: &[&str] = &[
    "txn-token",
    "x-fapi-guard-decision",
    // Forwarding: rebuilt from the real peer (RFC 7239; the de-facto X-Forwarded-*).
    "forwarded",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-proto",
    "x-forwarded-port",
    "x-forwarded-prefix",
    "x-forwarded-server",
    "x-real-ip",
    "x-client-ip",
    "true-client-ip",
    // Client certificates: only the one the proxy verified reaches the API.
    "x-forwarded-client-cert",
    "client-cert",
    "client-cert-chain",
];

/// End-to-end fields a `Connection` option may not remove: credentials and their proofs,
/// framing and content the checks looked at, correlation. (Proxy-owned names are added.)
const END_TO_END: &[&str] = &[
    "authorization",
    "dpop",
    "host",
    "content-length",
    "content-type",
    "content-encoding",
    "content-digest",
    "signature",
    "signature-input",
    "cookie",
    "x-fapi-interaction-id",
    "x-fapi-auth-date",
    "x-fapi-customer-ip-address",
    "traceparent",
    "tracestate",
];

/// Default `upstream.strip_headers`: method-override and URL-rewrite headers that frameworks
/// honour (so a client could change the method or path the API acts on after the policy
/// matched another).
pub const DEFAULT_STRIP: &[&str] = &[
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
    "x-original-url",
    "x-rewrite-url",
    "x-original-method",
];

/// The compiled header rules: built once from the configuration.
#[derive(Debug, Clone)]
pub struct UpstreamHeaders {
    /// Stripped from every request (client copies of what the proxy sets, `strip_headers`).
    owned: Vec<HeaderName>,
    /// Never removed because a `Connection` option names them.
    protected: Vec<HeaderName>,
    /// The header the verified client certificate travels in: the configured forwarded
    /// certificate header, else RFC 9440 `Client-Cert`.
    cert_header: HeaderName,
}

/// Where the request came from, as the API is told (RFC 7239 and `X-Forwarded-*`).
#[derive(Debug, Clone)]
pub struct Forwarding<'a> {
    pub peer: IpAddr,
    pub proto: &'static str,
    /// The `Host` (or `:authority`) the client addressed, already validated.
    pub host: Option<HeaderValue>,
    /// The peer is in `forwarded_client_cert.trusted_peers`: its `X-Forwarded-For` and
    /// `Forwarded` are kept and appended to.
    pub trusted_peer: bool,
    /// The client certificate the proxy verified (its own mTLS or a trusted hop's header).
    pub client_cert: Option<(&'a HeaderName, &'a HeaderValue)>,
}

/// Everything the proxy asserts to the upstream, all from verified sources.
#[derive(Debug, Clone)]
pub struct Asserted<'a> {
    pub identity: Option<&'a IdentityFields>,
    pub txn_token: Option<HeaderValue>,
    pub interaction_id: &'a str,
    /// The trace id when the proxy started the trace (no valid inbound `traceparent`).
    pub new_trace: Option<&'a str>,
    pub forwarding: Forwarding<'a>,
}

impl UpstreamHeaders {
    pub fn new(config: &Config) -> Self {
        Self::from_parts(
            &config.upstream.identity_headers,
            config
                .listen
                .forwarded_client_cert
                .as_ref()
                .map(|f| f.header.clone()),
            &config.upstream.strip_headers,
        )
    }

    pub fn from_parts(
        identity: &IdentityHeaders,
        forwarded_cert: Option<HeaderName>,
        strip: &[HeaderName],
    ) -> Self {
        let fixed = |names: &[&'static str]| {
            names
                .iter()
                .map(|n| HeaderName::from_static(n))
                .collect::<Vec<_>>()
        };
        let mut owned = fixed(PROXY_OWNED);
        owned.extend(identity.names().into_iter().cloned());
        owned.extend(forwarded_cert.iter().cloned());
        owned.extend(strip.iter().cloned());
        owned.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        owned.dedup();
        let mut protected = fixed(END_TO_END);
        protected.extend(owned.iter().cloned());
        Self {
            owned,
            protected,
            cert_header: forwarded_cert.unwrap_or(RFC9440_HEADER),
        }
    }

    /// The header name the verified client certificate travels in: the configured forwarded
    /// certificate header, else RFC 9440 `Client-Cert`.
    pub fn client_cert_header(&self) -> &HeaderName {
        &self.cert_header
    }

    /// Prepares the request headers for the upstream. The order is the point: removals first,
    /// verified values last.
    pub fn prepare(&self, h: &mut HeaderMap, a: &Asserted<'_>) {
        // Read what a trusted hop already recorded before its copies go (RFC 7239 §4 / XFF:
        // each proxy appends itself).
        let prior = a.forwarding.trusted_peer.then(|| {
            (
                joined(h, &HeaderName::from_static("x-forwarded-for")),
                joined(h, &HeaderName::from_static("forwarded")),
            )
        });

        // 1. Hop-by-hop, without letting `Connection` reach proxy-owned or end-to-end fields.
        remove_hop_by_hop(h, &self.protected);

        // 2. Client copies of everything the proxy owns, and `Host` (the client sets it from
        //    the upstream URI; the original travels in `X-Forwarded-Host` / `Forwarded`).
        h.remove(HOST);
        self.strip_owned(h);

        // 3. Verified values, last.
        if let Some(id) = a.identity {
            id.set(h);
        }
        if let Some(t) = &a.txn_token {
            h.insert(crate::txn_token::HEADER, t.clone());
        }
        if let Ok(v) = HeaderValue::from_str(a.interaction_id) {
            h.insert(INTERACTION_ID, v);
        }
        if let Some(trace_id) = a.new_trace {
            super::trace::start(h, trace_id);
        }
        self.set_forwarding(h, &a.forwarding, prior);
    }

    fn strip_owned(&self, h: &mut HeaderMap) {
        for n in &self.owned {
            h.remove(n);
        }
        // Some servers and frameworks fold `_` into `-` (CGI `HTTP_X_FORWARDED_FOR`), which
        // would let `x_fapi_subject` smuggle an identity header past an exact-name strip.
        if !h.keys().any(|k| k.as_str().contains('_')) {
            return;
        }
        let doomed: Vec<HeaderName> = h
            .keys()
            .filter(|k| {
                k.as_str().contains('_')
                    && self
                        .owned
                        .iter()
                        .any(|o| eq_underscore_folded(k.as_str(), o.as_str()))
            })
            .cloned()
            .collect();
        for k in doomed {
            h.remove(k);
        }
    }

    fn set_forwarding(
        &self,
        h: &mut HeaderMap,
        f: &Forwarding<'_>,
        prior: Option<(Option<String>, Option<String>)>,
    ) {
        let (prior_xff, prior_fwd) = prior.unwrap_or_default();
        let peer = f.peer.to_string();
        let xff = match prior_xff {
            Some(p) => format!("{p}, {peer}"),
            None => peer,
        };
        // RFC 7239 §4: `for` and `host` are quoted where they are not tokens (an IPv6 address
        // in brackets, a host with a port).
        let mut fwd = match f.peer {
            IpAddr::V4(ip) => format!("for={ip}"),
            IpAddr::V6(ip) => format!("for=\"[{ip}]\""),
        };
        if let Some(host) = f.host.as_ref().and_then(|v| v.to_str().ok()) {
            fwd.push_str(";host=\"");
            fwd.push_str(host);
            fwd.push('"');
        }
        fwd.push_str(";proto=");
        fwd.push_str(f.proto);
        let fwd = match prior_fwd {
            Some(p) => format!("{p}, {fwd}"),
            None => fwd,
        };
        for (name, value) in [("x-forwarded-for", xff), ("forwarded", fwd)] {
            if let Ok(v) = HeaderValue::from_str(&value) {
                h.insert(name, v);
            }
        }
        h.insert("x-forwarded-proto", HeaderValue::from_static(f.proto));
        if let Some(v) = &f.host {
            h.insert("x-forwarded-host", v.clone());
        }
        if let Some((name, value)) = f.client_cert {
            h.insert(name.clone(), value.clone());
        }
    }
}

/// Removes hop-by-hop headers, including those the `Connection` header names unless they are
/// in `protected` (a client must not be able to remove what the proxy set or checked).
pub fn remove_hop_by_hop(h: &mut HeaderMap, protected: &[HeaderName]) {
    let named: Vec<HeaderName> = h
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .filter(|n| !protected.contains(n))
        .collect();
    for n in named {
        h.remove(n);
    }
    for n in HOP_BY_HOP {
        h.remove(*n);
    }
}

/// All field lines of `name` combined as one list value (RFC 9110 §5.3).
fn joined(h: &HeaderMap, name: &HeaderName) -> Option<String> {
    let parts: Vec<&str> = h
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .collect();
    (!parts.is_empty()).then(|| parts.join(", "))
}

/// `a` equals `b` when every `_` in `a` is read as `-` (names are already lower case).
fn eq_underscore_folded(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .all(|(x, y)| x == y || (x == b'_' && y == b'-'))
}

/// Approximate size of the header block as sent (name + ": " + value + CRLF per field).
pub fn header_bytes(h: &HeaderMap) -> usize {
    h.iter().map(|(n, v)| n.as_str().len() + v.len() + 4).sum()
}

#[cfg(test)]
mod tests;
