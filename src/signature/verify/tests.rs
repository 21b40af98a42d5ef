//! Request verification, table-driven: each case edits a correctly signed request.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::HeaderValue;

use super::*;
use crate::signature::fields::Params;
use crate::signature::sign::{SignError, produce};

const NOW: i64 = 1_800_000_000;
const BODY: &[u8] = br#"{"amount":"10.00"}"#;

pub(crate) struct Client {
    pair: EcdsaKeyPair,
}

impl Client {
    pub(crate) fn new() -> Self {
        Self {
            pair: EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).expect("keygen"),
        }
    }

    pub(crate) fn jwk(&self) -> PublicJwk {
        let p = self.pair.public_key().as_ref();
        let j = serde_json::json!({"kty": "EC", "crv": "P-256",
            "x": URL_SAFE_NO_PAD.encode(&p[1..33]), "y": URL_SAFE_NO_PAD.encode(&p[33..65])});
        PublicJwk::from_json(j.as_object().expect("obj")).expect("jwk")
    }

    /// Signs `req` and sets `Signature-Input` / `Signature` on `h`.
    fn sign(&self, h: &mut HeaderMap, req: RequestParts<'_>, names: &[&str], params: Params) {
        let components: Vec<Component> = names.iter().map(|n| Component::new(n)).collect();
        let rng = SystemRandom::new();
        let p = produce(
            "sig1",
            Message::Request(req),
            &components,
            &params,
            Algorithm::EcdsaP256Sha256,
            |b| {
                self.pair
                    .sign(&rng, b)
                    .map(|s| s.as_ref().to_vec())
                    .map_err(|_| SignError::Crypto)
            },
        )
        .expect("sign");
        h.insert(
            "signature-input",
            HeaderValue::from_str(&p.input).expect("v"),
        );
        h.insert("signature", HeaderValue::from_str(&p.signature).expect("v"));
    }
}

fn params() -> Params {
    Params {
        created: Some(NOW - 5),
        keyid: Some("k1".into()),
        tag: Some(REQUEST_TAG.into()),
        ..Params::default()
    }
}

fn base_headers() -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert("authorization", HeaderValue::from_static("DPoP token-abc"));
    h.insert("dpop", HeaderValue::from_static("proof-xyz"));
    h.insert("content-type", HeaderValue::from_static("application/json"));
    h.insert(
        "content-digest",
        HeaderValue::from_str(&digest::sha256_field(BODY)).expect("v"),
    );
    h
}

fn parts<'a>(
    h: &'a HeaderMap,
    method: &'a str,
    path: &'a str,
    q: Option<&'a str>,
) -> RequestParts<'a> {
    RequestParts {
        method,
        scheme: "https",
        authority: "api.bank.example",
        path,
        query: q,
        headers: h,
    }
}

const FULL: &[&str] = &[
    "@method",
    "@target-uri",
    "authorization",
    "dpop",
    "content-digest",
];

fn window() -> Window {
    Window {
        now: NOW,
        max_age: Duration::from_secs(60),
        clock_skew: Duration::from_secs(10),
    }
}

/// Signs a request, lets `tamper` change what is received, runs the whole verification.
fn run(
    names: &[&str],
    params: Params,
    tamper: impl FnOnce(&mut HeaderMap, &mut &'static str, &mut &'static str, &mut &'static [u8]),
) -> Result<Option<SignatureInfo>, SigFailure> {
    let client = Client::new();
    let mut h = base_headers();
    let signed = h.clone();
    client.sign(
        &mut h,
        parts(&signed, "POST", "/payments", Some("a=1")),
        names,
        params,
    );
    let (mut method, mut path, mut body) = ("POST", "/payments", BODY);
    tamper(&mut h, &mut method, &mut path, &mut body);
    let query = if path.contains("?") {
        None
    } else {
        Some("a=1")
    };
    let (path, query) = match path.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path, query),
    };
    let Some(c) = candidate(&parts(&h, method, path, query), window())? else {
        return Ok(None);
    };
    let mut v = with_key(&c, &client.jwk())?;
    v.check_body(&h, body)?;
    Ok(Some(v.info))
}

#[test]
fn a_correct_signature_verifies_and_is_audited_without_its_base() {
    let info = run(FULL, params(), |_, _, _, _| {})
        .expect("verifies")
        .expect("present");
    assert_eq!(info.keyid, "k1");
    assert_eq!(info.alg, "ecdsa-p256-sha256");
    assert_eq!(info.components, FULL);
    assert_eq!(info.created, NOW - 5);
    assert_eq!(info.base_sha256.len(), 43);
    assert!(info.base_sha512.is_none());
    assert_eq!(info.content_digest, Some(digest::sha256_field(BODY)));
    let json = serde_json::to_string(&info).expect("json");
    assert!(
        !json.contains("token-abc"),
        "the base (with the token) is never stored"
    );
}

#[test]
fn every_way_a_request_signature_fails() {
    use DenyReason as R;
    type Tamper = fn(&mut HeaderMap, &mut &'static str, &mut &'static str, &mut &'static [u8]);
    let none: Tamper = |_, _, _, _| {};
    let with = |f: fn(&mut Params)| {
        let mut p = params();
        f(&mut p);
        p
    };
    let cases: Vec<(&str, &[&str], Params, Tamper, R)> = vec![
        (
            "body changed",
            FULL,
            params(),
            |_, _, _, b| *b = br#"{"amount":"99.00"}"#,
            R::ContentDigestMismatch,
        ),
        (
            "header changed",
            FULL,
            params(),
            |h, _, _, _| {
                h.insert("authorization", HeaderValue::from_static("DPoP other"));
            },
            R::SignatureInvalid,
        ),
        (
            "method changed",
            FULL,
            params(),
            |_, m, _, _| *m = "PUT",
            R::SignatureInvalid,
        ),
        (
            "path changed",
            FULL,
            params(),
            |_, _, p, _| *p = "/payments/2",
            R::SignatureInvalid,
        ),
        (
            "query changed",
            FULL,
            params(),
            |_, _, p, _| *p = "/payments?a=2",
            R::SignatureInvalid,
        ),
        (
            "digest rewritten with the body",
            FULL,
            params(),
            |h, _, _, b| {
                *b = b"{}";
                h.insert(
                    "content-digest",
                    HeaderValue::from_str(&digest::sha256_field(b"{}")).expect("v"),
                );
            },
            R::SignatureInvalid,
        ),
        (
            "stale",
            FULL,
            with(|p| p.created = Some(NOW - 61)),
            none,
            R::SignatureStale,
        ),
        (
            "future",
            FULL,
            with(|p| p.created = Some(NOW + 11)),
            none,
            R::SignatureStale,
        ),
        (
            "expired",
            FULL,
            with(|p| p.expires = Some(NOW - 11)),
            none,
            R::SignatureStale,
        ),
        (
            "no created",
            FULL,
            with(|p| p.created = None),
            none,
            R::SignatureInvalid,
        ),
        (
            "no keyid",
            FULL,
            with(|p| p.keyid = None),
            none,
            R::SignatureInvalid,
        ),
        (
            "hmac alg",
            FULL,
            with(|p| p.alg = Some("hmac-sha256".into())),
            none,
            R::SignatureInvalid,
        ),
        (
            "unknown alg",
            FULL,
            with(|p| p.alg = Some("rot13".into())),
            none,
            R::SignatureInvalid,
        ),
        (
            "alg not the key's",
            FULL,
            with(|p| p.alg = Some("ed25519".into())),
            none,
            R::SignatureInvalid,
        ),
        (
            "@method not covered",
            &["@target-uri", "authorization", "dpop", "content-digest"],
            params(),
            none,
            R::SignatureInvalid,
        ),
        (
            "@target-uri not covered",
            &[
                "@method",
                "@path",
                "@query",
                "authorization",
                "dpop",
                "content-digest",
            ],
            params(),
            none,
            R::SignatureInvalid,
        ),
        (
            "authorization not covered",
            &["@method", "@target-uri", "dpop", "content-digest"],
            params(),
            none,
            R::SignatureInvalid,
        ),
        (
            "dpop not covered",
            &["@method", "@target-uri", "authorization", "content-digest"],
            params(),
            none,
            R::SignatureInvalid,
        ),
        (
            "content-digest not covered, body sent",
            &["@method", "@target-uri", "authorization", "dpop"],
            params(),
            none,
            R::SignatureInvalid,
        ),
        (
            "signature value replaced",
            FULL,
            params(),
            |h, _, _, _| {
                h.insert("signature", HeaderValue::from_static("sig1=:AAAA:"));
            },
            R::SignatureInvalid,
        ),
        (
            "tag missing: no fapi signature",
            FULL,
            with(|p| p.tag = None),
            none,
            R::SignatureMissing,
        ),
        (
            "signature header removed",
            FULL,
            params(),
            |h, _, _, _| {
                h.remove("signature");
            },
            R::SignatureInvalid,
        ),
    ];
    for (name, names, p, tamper, want) in cases {
        let got = match run(names, p, tamper) {
            Ok(Some(_)) => panic!("{name}: accepted"),
            Ok(None) => R::SignatureMissing,
            Err(f) => f.reason(),
        };
        assert_eq!(got, want, "{name}");
    }
}

#[test]
fn another_key_is_refused() {
    let client = Client::new();
    let mut h = base_headers();
    let signed = h.clone();
    client.sign(&mut h, parts(&signed, "POST", "/p", None), FULL, params());
    let c = candidate(&parts(&h, "POST", "/p", None), window())
        .expect("ok")
        .expect("some");
    let other = Client::new();
    assert_eq!(
        with_key(&c, &other.jwk()).map(|_| ()),
        Err(SigFailure::Invalid("signature does not verify"))
    );
    assert!(with_key(&c, &client.jwk()).is_ok());
}

#[test]
fn no_body_needs_no_digest() {
    let client = Client::new();
    let mut h = base_headers();
    h.remove("content-digest");
    let signed = h.clone();
    let names = &["@method", "@target-uri", "authorization", "dpop"];
    client.sign(&mut h, parts(&signed, "GET", "/a", None), names, params());
    let c = candidate(&parts(&h, "GET", "/a", None), window())
        .expect("ok")
        .expect("some");
    let mut v = with_key(&c, &client.jwk()).expect("verifies");
    assert_eq!(v.check_body(&h, b""), Ok(()));
    assert!(v.check_body(&h, b"x").is_err());
}
