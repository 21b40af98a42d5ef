use super::*;
use crate::identity::IdentityValues;

fn rules() -> UpstreamHeaders {
    let strip: Vec<HeaderName> = DEFAULT_STRIP
        .iter()
        .map(|n| HeaderName::from_static(n))
        .collect();
    UpstreamHeaders::from_parts(&IdentityHeaders::default(), None, &strip)
}

fn forwarding(trusted_peer: bool) -> Forwarding<'static> {
    Forwarding {
        peer: "10.0.0.7".parse().expect("ip"),
        proto: "https",
        host: Some(HeaderValue::from_static("api.bank.example")),
        trusted_peer,
        client_cert: None,
    }
}

fn inbound(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.append(HeaderName::from_static(k), HeaderValue::from_static(v));
    }
    h
}

#[test]
fn hop_by_hop_and_proxy_owned_headers_are_removed_then_verified_values_set() {
    let identity = IdentityHeaders::default()
        .fields(&IdentityValues {
            subject: "psu-9",
            client_id: "tpp-1",
            consent_id: None,
        })
        .expect("fields");
    let mut h = inbound(&[
        // Connection may remove a harmless field, but not what the proxy sets or checked.
        (
            "connection",
            "keep-alive, x-secret-hop, x-fapi-subject, x-fapi-client-id, authorization, traceparent, x-forwarded-for, content-type",
        ),
        ("x-secret-hop", "1"),
        ("keep-alive", "timeout=5"),
        ("te", "trailers"),
        ("upgrade", "websocket"),
        ("host", "api.bank.example"),
        ("authorization", "DPoP abc"),
        ("content-type", "application/json"),
        (
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ),
        ("txn-token", "forged"),
        ("x-fapi-subject", "admin"),
        ("x_fapi_subject", "admin"),
        ("x-fapi_client-id", "evil"),
        ("x-fapi-consent-id", "c-forged"),
        ("x-forwarded-for", "203.0.113.9"),
        ("x_forwarded_for", "203.0.113.9"),
        ("x-forwarded-proto", "gopher"),
        ("x-forwarded-host", "evil.example"),
        ("forwarded", "for=203.0.113.9"),
        ("x-real-ip", "203.0.113.9"),
        ("x-forwarded-client-cert", "Hash=00"),
        ("client-cert", ":AAAA:"),
        ("client-cert-chain", ":AAAA:"),
        ("x-http-method-override", "DELETE"),
        ("x-original-url", "/admin"),
        ("x-fapi-interaction-id", "not-a-uuid"),
        ("accept", "application/json"),
    ]);
    rules().prepare(
        &mut h,
        &Asserted {
            identity: Some(&identity),
            txn_token: None,
            interaction_id: "a7b8c9d0-0000-4000-8000-000000000001",
            new_trace: None,
            forwarding: forwarding(false),
        },
    );
    let mut got: Vec<(String, String)> = h
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().expect("ascii").to_owned()))
        .collect();
    got.sort();
    let mut want: Vec<(String, String)> = [
        ("accept", "application/json"),
        ("authorization", "DPoP abc"),
        ("content-type", "application/json"),
        (
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ),
        ("x-fapi-subject", "psu-9"),
        ("x-fapi-client-id", "tpp-1"),
        (
            "x-fapi-interaction-id",
            "a7b8c9d0-0000-4000-8000-000000000001",
        ),
        ("x-forwarded-for", "10.0.0.7"),
        (
            "forwarded",
            "for=10.0.0.7;host=\"api.bank.example\";proto=https",
        ),
        ("x-forwarded-proto", "https"),
        ("x-forwarded-host", "api.bank.example"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    want.sort();
    assert_eq!(got, want);
}

#[test]
fn trusted_peers_are_appended_to_everyone_else_replaced() {
    let cases = [
        (
            false,
            "10.0.0.7",
            "for=10.0.0.7;host=\"api.bank.example\";proto=https",
        ),
        (
            true,
            "203.0.113.9, 198.51.100.1, 10.0.0.7",
            "for=203.0.113.9, for=10.0.0.7;host=\"api.bank.example\";proto=https",
        ),
    ];
    for (trusted, xff, fwd) in cases {
        let mut h = inbound(&[
            ("x-forwarded-for", "203.0.113.9"),
            ("x-forwarded-for", "198.51.100.1"),
            ("forwarded", "for=203.0.113.9"),
        ]);
        rules().prepare(
            &mut h,
            &Asserted {
                identity: None,
                txn_token: None,
                interaction_id: "x",
                new_trace: None,
                forwarding: forwarding(trusted),
            },
        );
        assert_eq!(h["x-forwarded-for"], xff, "trusted {trusted}");
        assert_eq!(h["forwarded"], fwd, "trusted {trusted}");
        assert_eq!(h.get_all("x-forwarded-for").iter().count(), 1);
    }
}

#[test]
fn ipv6_peers_are_quoted_and_the_verified_certificate_is_set() {
    let name = HeaderName::from_static("client-cert");
    let value = HeaderValue::from_static(":MIIB:");
    let mut h = inbound(&[("client-cert", ":Zm9yZ2Vk:"), ("client-cert", ":b3RoZXI=:")]);
    let mut f = forwarding(false);
    f.peer = "2001:db8::1".parse().expect("ip");
    f.client_cert = Some((&name, &value));
    rules().prepare(
        &mut h,
        &Asserted {
            identity: None,
            txn_token: Some(HeaderValue::from_static("minted")),
            interaction_id: "x",
            new_trace: Some("4bf92f3577b34da6a3ce929d0e0e4736"),
            forwarding: f,
        },
    );
    assert_eq!(
        h["forwarded"],
        "for=\"[2001:db8::1]\";host=\"api.bank.example\";proto=https"
    );
    assert_eq!(
        h.get_all("client-cert").iter().collect::<Vec<_>>(),
        [":MIIB:"]
    );
    assert_eq!(h["txn-token"], "minted");
    assert!(
        h["traceparent"]
            .to_str()
            .expect("ascii")
            .starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-")
    );
}

#[test]
fn response_hop_by_hop_removal_honours_connection() {
    let mut h = inbound(&[
        ("connection", "x-internal"),
        ("x-internal", "1"),
        ("a", "b"),
    ]);
    remove_hop_by_hop(&mut h, &[]);
    assert_eq!(h.len(), 1);
}

#[test]
fn underscore_folding() {
    for (a, b, want) in [
        ("x_fapi_subject", "x-fapi-subject", true),
        ("x-fapi-subject", "x-fapi-subject", true),
        ("x-fapi-subjec_", "x-fapi-subject", false),
        ("x_fapi", "x-fapi-subject", false),
    ] {
        assert_eq!(eq_underscore_folded(a, b), want, "{a}");
    }
}

#[test]
fn header_size_counts_names_and_values() {
    let mut h = HeaderMap::new();
    h.insert("a", HeaderValue::from_static("bc"));
    assert_eq!(header_bytes(&h), 7);
}
