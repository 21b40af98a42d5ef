//! Header hygiene between client, proxy and upstream: hop-by-hop removal (RFC 9110 §7.6.1),
//! `X-Forwarded-*`, and stripping headers only the proxy may set.

use std::net::IpAddr;

use http::HeaderMap;
use http::header::{
    CONNECTION, HOST, HeaderName, HeaderValue, TE, TRAILER, TRANSFER_ENCODING, UPGRADE,
};

/// Headers that only describe one connection and must not be forwarded (RFC 9110 §7.6.1).
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

/// Headers the proxy sets for the upstream; a client-sent copy is removed so the API can trust
/// them (later issues add the identity headers and `Txn-Token`).
pub const PROXY_ONLY: &[&str] = &["txn-token", "x-fapi-guard-decision"];

/// Removes hop-by-hop headers, including those the `Connection` header names.
pub fn remove_hop_by_hop(h: &mut HeaderMap) {
    let named: Vec<HeaderName> = h
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for n in named {
        h.remove(n);
    }
    for n in [CONNECTION, TE, TRAILER, TRANSFER_ENCODING, UPGRADE] {
        h.remove(n);
    }
    for n in HOP_BY_HOP {
        h.remove(*n);
    }
}

/// Prepares request headers for the upstream: hop-by-hop and proxy-only headers removed, the
/// `Host` replaced by the upstream's (the original goes in `X-Forwarded-Host`), the client
/// address appended to `X-Forwarded-For`.
pub fn for_upstream(
    h: &mut HeaderMap,
    peer: IpAddr,
    proto: &'static str,
    host: Option<HeaderValue>,
) {
    remove_hop_by_hop(h);
    for n in PROXY_ONLY {
        h.remove(*n);
    }
    h.remove(HOST);
    let xff = match h.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
        Some(prev) => format!("{prev}, {peer}"),
        None => peer.to_string(),
    };
    if let Ok(v) = HeaderValue::from_str(&xff) {
        h.insert("x-forwarded-for", v);
    }
    h.insert("x-forwarded-proto", HeaderValue::from_static(proto));
    match host {
        Some(v) => {
            h.insert("x-forwarded-host", v);
        }
        None => {
            h.remove("x-forwarded-host");
        }
    }
}

/// Approximate size of the header block as sent (name + ": " + value + CRLF per field).
pub fn header_bytes(h: &HeaderMap) -> usize {
    h.iter().map(|(n, v)| n.as_str().len() + v.len() + 4).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_headers_are_cleaned() {
        let mut h = HeaderMap::new();
        h.insert(
            CONNECTION,
            HeaderValue::from_static("keep-alive, x-secret-hop"),
        );
        h.insert("x-secret-hop", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert(TE, HeaderValue::from_static("trailers"));
        h.insert(UPGRADE, HeaderValue::from_static("websocket"));
        h.insert(HOST, HeaderValue::from_static("api.bank.example"));
        h.insert("txn-token", HeaderValue::from_static("forged"));
        h.insert("x-forwarded-for", HeaderValue::from_static("203.0.113.9"));
        h.insert("x-forwarded-proto", HeaderValue::from_static("gopher"));
        h.insert("accept", HeaderValue::from_static("application/json"));
        let host = h.get(HOST).cloned();
        for_upstream(&mut h, "10.0.0.7".parse().expect("ip"), "https", host);
        for gone in [
            "connection",
            "x-secret-hop",
            "keep-alive",
            "te",
            "upgrade",
            "host",
            "txn-token",
        ] {
            assert!(!h.contains_key(gone), "{gone} must be removed");
        }
        assert_eq!(h["x-forwarded-for"], "203.0.113.9, 10.0.0.7");
        assert_eq!(h["x-forwarded-proto"], "https");
        assert_eq!(h["x-forwarded-host"], "api.bank.example");
        assert_eq!(h["accept"], "application/json");
    }

    #[test]
    fn header_size_counts_names_and_values() {
        let mut h = HeaderMap::new();
        h.insert("a", HeaderValue::from_static("bc"));
        assert_eq!(header_bytes(&h), 7);
    }
}
