use http::HeaderValue;

use super::*;
use crate::jwk::PublicJwk;
use crate::signature::fields;

fn settings() -> SignatureSettings {
    SignatureSettings::defaults(1024)
}

fn request(h: &HeaderMap) -> RequestParts<'_> {
    RequestParts {
        method: "POST",
        scheme: "https",
        authority: "api.bank.example",
        path: "/payments",
        query: Some("x=1"),
        headers: h,
    }
}

/// Verifies a response signature the way a client would, from the headers alone.
fn verify(signer: &ResponseSigner, status: u16, h: &HeaderMap, req: RequestParts<'_>) -> bool {
    let Some(sel) = fields::select(h, RESPONSE_TAG).expect("fields parse") else {
        return false;
    };
    let msg = Message::Response(ResponseParts {
        status,
        headers: h,
        request: Some(req),
    });
    let base =
        base::signature_base(msg, &sel.input.components, &sel.input.serialized).expect("base");
    let jwk = PublicJwk::from_json(
        signer
            .jwk()
            .as_object()
            .map(|o| {
                let mut o = o.clone();
                o.remove("kid");
                o
            })
            .as_ref()
            .expect("object"),
    )
    .expect("public jwk");
    jwk.verify(
        Algorithm::EcdsaP256Sha256.jws(),
        base.as_bytes(),
        &sel.value,
    )
}

#[test]
fn the_response_signature_replaces_the_apis_and_verifies() {
    let signer = ResponseSigner::new(&settings()).expect("ephemeral key");
    let mut h = HeaderMap::new();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    // The API's own signature fields must not travel beside ours.
    h.insert("signature", HeaderValue::from_static("evil=:AAAA:"));
    h.insert(
        "signature-input",
        HeaderValue::from_static(r#"evil=();tag="fapi-2-response""#),
    );
    h.insert(digest::HEADER, HeaderValue::from_static("sha-256=:AAAA:"));
    let empty = HeaderMap::new();
    let body = br#"{"Data":{"Status":"Accepted"}}"#;
    let info = signer
        .sign_response(201, &mut h, body, request(&empty), 1_800_000_000)
        .expect("signed");
    assert_eq!(h.get_all("signature").iter().count(), 1);
    assert_eq!(h.get_all("signature-input").iter().count(), 1);
    assert_eq!(h.get_all(digest::HEADER).iter().count(), 1);
    assert_eq!(digest::verify(&h, body), Ok(()));
    assert!(verify(&signer, 201, &h, request(&empty)));
    assert_eq!(
        info.components,
        [
            "@status",
            "content-type",
            "content-digest",
            "@method;req",
            "@target-uri;req"
        ]
    );
    assert_eq!(info.tag.as_deref(), Some(RESPONSE_TAG));
    assert_eq!(info.keyid, signer.keyid());
    assert_eq!(info.content_digest, Some(digest::sha256_field(body)));

    // What the signature binds: another status, another request, another body all fail.
    assert!(!verify(&signer, 200, &h, request(&empty)));
    let other = RequestParts {
        path: "/payments/2",
        ..request(&empty)
    };
    assert!(!verify(&signer, 201, &h, other));
    assert_eq!(
        digest::verify(&h, b"{}"),
        Err(digest::DigestError::Mismatch)
    );
}

#[test]
fn without_content_type_it_is_not_covered() {
    let signer = ResponseSigner::new(&settings()).expect("key");
    let mut h = HeaderMap::new();
    let empty = HeaderMap::new();
    let info = signer
        .sign_response(204, &mut h, b"", request(&empty), 1)
        .expect("signed");
    assert!(!info.components.iter().any(|c| c == "content-type"));
    assert!(verify(&signer, 204, &h, request(&empty)));
}

#[test]
fn key_id_is_configured_or_the_thumbprint() {
    let plain = ResponseSigner::new(&settings()).expect("key");
    assert_eq!(plain.keyid().len(), 43, "RFC 7638 thumbprint");
    assert_eq!(plain.jwks()["keys"][0]["kid"], plain.keyid());
    assert!(
        plain.jwk().get("d").is_none(),
        "no private member published"
    );
    let named = ResponseSigner::new(&SignatureSettings {
        response_key_id: Some("resp-1".into()),
        ..settings()
    })
    .expect("key");
    assert_eq!(named.keyid(), "resp-1");
    assert!(format!("{named:?}").contains("resp-1"));
}

#[test]
fn params_serialize_as_structured_fields() {
    let comps = [Component::new("@method"), Component::req("@target-uri")];
    let p = Params {
        created: Some(1),
        expires: Some(2),
        nonce: Some("n".into()),
        keyid: Some("k \"q\"".into()),
        alg: Some("ed25519".into()),
        tag: Some("t".into()),
    };
    assert_eq!(
        serialize_params(&comps, &p).expect("serializes"),
        r#"("@method" "@target-uri";req);created=1;expires=2;nonce="n";keyid="k \"q\"";alg="ed25519";tag="t""#
    );
    // What we write, we read back identically.
    let back = fields::parse_inputs(&format!("s={}", serialize_params(&comps, &p).expect("s")))
        .expect("parses");
    assert_eq!(back[0].params, p);
    let bad = Params {
        keyid: Some("non-ascii é".into()),
        ..Params::default()
    };
    assert_eq!(serialize_params(&comps, &bad), Err(SignError::Serialize));
}
