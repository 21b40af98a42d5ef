//! Token abuse through the real proxy: `alg` confusion, `kid` injection, key-carrying
//! header parameters, JWS JSON serialization, duplicate members, non-string and huge claims,
//! oversized tokens and deep `act` nesting. Every token is built byte by byte here (raw JSON,
//! hand-made signatures with aws-lc-rs), never by the verifier's code. Each case is refused with
//! its reason, nothing reaches the API, and where boundedness is the point the answer comes
//! within a wall-clock bound.

mod common;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use aws_lc_rs::hmac;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use common::*;
use serde_json::{Value, json};

/// An ES256 key of this test's own; signs arbitrary header/payload text.
struct RawKey {
    kid: &'static str,
    pair: EcdsaKeyPair,
}

impl RawKey {
    fn new(kid: &'static str) -> Self {
        let rng = SystemRandom::new();
        let pkcs8 =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).expect("keygen");
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref())
            .expect("pkcs8");
        Self { kid, pair }
    }

    fn jwk(&self) -> Value {
        let p = self.pair.public_key().as_ref();
        json!({"kty": "EC", "crv": "P-256", "x": B64.encode(&p[1..33]),
               "y": B64.encode(&p[33..65]), "kid": self.kid, "use": "sig"})
    }

    /// `b64(header).b64(payload).b64(ES256 signature)` over the exact texts given.
    fn sign(&self, header: &str, payload: &str) -> String {
        let input = format!("{}.{}", B64.encode(header), B64.encode(payload));
        let sig = self
            .pair
            .sign(&SystemRandom::new(), input.as_bytes())
            .expect("sign");
        format!("{input}.{}", B64.encode(sig.as_ref()))
    }
}

/// The default claims as JSON text, with `extra` members spliced in raw (so duplicates and
/// odd types can be written).
fn claims(extra: &str) -> String {
    let t = now();
    let base = format!(
        r#""iss":"{ISSUER}","aud":"{AUDIENCE}","client_id":"tpp-1","scope":"accounts","iat":{},"exp":{},"jti":"{}""#,
        t - 5,
        t + 300,
        uuid_like()
    );
    if extra.is_empty() {
        format!("{{{base}}}")
    } else {
        format!("{{{base},{extra}}}")
    }
}

fn valid_claims() -> String {
    claims(r#""sub":"psu-9""#)
}

fn header(extra: &str) -> String {
    format!(r#"{{"alg":"ES256","typ":"at+jwt","kid":"k1"{extra}}}"#)
}

struct World {
    key: RawKey,
    jwks: Jwks,
    echo: Echo,
    proxy: Proxy,
}

async fn world() -> World {
    let key = RawKey::new("k1");
    let jwks = Jwks::start(vec![key.jwk()]).await;
    let echo = Echo::start().await;
    let proxy = Proxy::start(&format!("http://{}", echo.addr), &jwks.uri(), "", POLICY).await;
    proxy.wait_ready().await;
    World {
        key,
        jwks,
        echo,
        proxy,
    }
}

/// Sends `Authorization: Bearer <token>`; returns (status, reason, elapsed).
async fn present(w: &World, token: &str) -> (u16, Option<String>, Duration) {
    let started = Instant::now();
    let r = get(
        &w.proxy.url("/accounts"),
        &[("authorization", &format!("Bearer {token}"))],
    )
    .await;
    (r.status, r.reason().map(str::to_owned), started.elapsed())
}

/// Runs `cases`, each `(name, token, reason)`, and checks that none reached the API and each
/// was answered within `bound`.
async fn refused(w: &World, cases: Vec<(&str, String, &str)>, bound: Duration) {
    let before = w.echo.count();
    for (name, token, want) in cases {
        let (status, reason, took) = present(w, &token).await;
        assert_eq!(reason.as_deref(), Some(want), "{name}: status {status}");
        assert!(took < bound, "{name}: took {took:?}");
    }
    assert_eq!(w.echo.count(), before, "nothing reached the API");
}

#[tokio::test]
async fn the_baseline_token_is_accepted() {
    let w = world().await;
    let (status, reason, _) = present(&w, &w.key.sign(&header(""), &valid_claims())).await;
    assert_eq!((status, reason), (200, None));
}

#[tokio::test]
async fn alg_confusion_is_refused() {
    let w = world().await;
    let payload = valid_claims();
    let hs256 = |secret: &[u8], alg: &str| {
        let input = format!(
            "{}.{}",
            B64.encode(format!(r#"{{"alg":"{alg}","typ":"at+jwt","kid":"k1"}}"#)),
            B64.encode(&payload)
        );
        let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, secret), input.as_bytes());
        format!("{input}.{}", B64.encode(tag.as_ref()))
    };
    let jwk_text = w.key.jwk().to_string();
    let point = w.key.pair.public_key().as_ref().to_vec();
    let es256_sig = w.key.sign(&header(""), &payload);
    let sig = es256_sig.rsplit('.').next().expect("sig").to_owned();
    let with_alg = |alg: &str| {
        format!(
            "{}.{}.{sig}",
            B64.encode(format!(r#"{{"alg":"{alg}","typ":"at+jwt","kid":"k1"}}"#)),
            B64.encode(&payload)
        )
    };
    refused(
        &w,
        vec![
            (
                "HS256, public JWK as secret",
                hs256(jwk_text.as_bytes(), "HS256"),
                "token_algorithm_rejected",
            ),
            (
                "HS256, public point as secret",
                hs256(&point, "HS256"),
                "token_algorithm_rejected",
            ),
            ("HS512", hs256(&point, "HS512"), "token_algorithm_rejected"),
            (
                "none with a signature",
                with_alg("none"),
                "token_algorithm_rejected",
            ),
            (
                "None spelled differently",
                with_alg("None"),
                "token_algorithm_rejected",
            ),
            (
                "none, empty signature",
                format!(
                    "{}.{}.",
                    B64.encode(r#"{"alg":"none","typ":"at+jwt"}"#),
                    B64.encode(&payload)
                ),
                "token_malformed",
            ),
            (
                "lower-case es256",
                with_alg("es256"),
                "token_algorithm_rejected",
            ),
            (
                "ES384 (not allowed)",
                with_alg("ES384"),
                "token_algorithm_rejected",
            ),
            (
                "PS256 against an EC key",
                with_alg("PS256"),
                "token_signature_invalid",
            ),
            (
                "EdDSA against an EC key",
                with_alg("EdDSA"),
                "token_signature_invalid",
            ),
            (
                "alg not a string",
                format!(
                    "{}.{}.{sig}",
                    B64.encode(r#"{"alg":["ES256"],"typ":"at+jwt","kid":"k1"}"#),
                    B64.encode(&payload)
                ),
                "token_malformed",
            ),
        ],
        Duration::from_secs(3),
    )
    .await;
}

#[tokio::test]
async fn kid_injection_is_inert_and_unknown_kids_stay_within_the_refetch_limit() {
    let w = world().await;
    let payload = valid_claims();
    let with_kid = |kid: &str| {
        let h = json!({"alg": "ES256", "typ": "at+jwt", "kid": kid}).to_string();
        w.key.sign(&h, &payload)
    };
    let huge = "k".repeat(4000);
    refused(
        &w,
        vec![
            (
                "path traversal",
                with_kid("../../../../etc/passwd"),
                "token_signature_invalid",
            ),
            (
                "absolute path",
                with_kid("/dev/zero"),
                "token_signature_invalid",
            ),
            (
                "SQL-ish",
                with_kid("k1' OR '1'='1"),
                "token_signature_invalid",
            ),
            ("NUL", with_kid("k1\u{0}"), "token_signature_invalid"),
            (
                "URL",
                with_kid("http://127.0.0.1:1/keys"),
                "token_signature_invalid",
            ),
            ("huge kid", with_kid(&huge), "token_signature_invalid"),
            (
                "kid not a string",
                w.key
                    .sign(r#"{"alg":"ES256","typ":"at+jwt","kid":1}"#, &payload),
                "token_malformed",
            ),
        ],
        Duration::from_secs(3),
    )
    .await;

    // A flood of unknown kids: the issuer's JWKS is fetched at most once per
    // `jwks_min_refetch` (1 s in the test config), not once per request.
    let fetches = w.jwks.fetches.load(Ordering::SeqCst);
    let started = Instant::now();
    for i in 0..40 {
        let (_, reason, _) = present(&w, &with_kid(&format!("flood-{i}"))).await;
        assert_eq!(
            reason.as_deref(),
            Some("token_signature_invalid"),
            "flood {i}"
        );
    }
    let elapsed = started.elapsed();
    let extra = w.jwks.fetches.load(Ordering::SeqCst) - fetches;
    let allowed = elapsed.as_secs() as usize + 2;
    assert!(
        extra <= allowed,
        "{extra} JWKS fetches for 40 unknown kids in {elapsed:?} (at most {allowed})"
    );
    assert!(elapsed < Duration::from_secs(20), "flood took {elapsed:?}");
}

#[tokio::test]
async fn key_carrying_header_parameters_are_never_fetched_or_trusted() {
    let w = world().await;
    let attacker = RawKey::new("evil");
    let evil_jwks = Jwks::start(vec![attacker.jwk()]).await;
    let payload = valid_claims();
    let evil_jwk = attacker.jwk().to_string();
    let url = evil_jwks.uri();
    let forged = |extra: String, kid: &str| {
        let h = format!(r#"{{"alg":"ES256","typ":"at+jwt","kid":"{kid}"{extra}}}"#);
        attacker.sign(&h, &payload)
    };
    refused(
        &w,
        vec![
            (
                "jku to the attacker",
                forged(format!(r#","jku":"{url}""#), "evil"),
                "token_signature_invalid",
            ),
            (
                "jku, issuer's kid",
                forged(format!(r#","jku":"{url}""#), "k1"),
                "token_signature_invalid",
            ),
            (
                "x5u to the attacker",
                forged(format!(r#","x5u":"{url}""#), "evil"),
                "token_signature_invalid",
            ),
            (
                "embedded jwk",
                forged(format!(r#","jwk":{evil_jwk}"#), "evil"),
                "token_signature_invalid",
            ),
            (
                "embedded jwk, issuer's kid",
                forged(format!(r#","jwk":{evil_jwk}"#), "k1"),
                "token_signature_invalid",
            ),
            (
                "x5c",
                forged(r#","x5c":["MIIBszCCAVmgAwIBAgIUZXZpbA=="]"#.into(), "evil"),
                "token_signature_invalid",
            ),
            (
                "crit naming jku",
                forged(format!(r#","jku":"{url}","crit":["jku"]"#), "k1"),
                "token_malformed",
            ),
        ],
        Duration::from_secs(3),
    )
    .await;
    // A genuine token that merely carries these parameters is verified with the issuer's key;
    // the parameters are ignored (RFC 7515 §4.1.2-4.1.6 are optional to honour).
    let genuine = w.key.sign(
        &header(&format!(r#","jku":"{url}","x5u":"{url}","jwk":{evil_jwk}"#)),
        &payload,
    );
    assert_eq!(present(&w, &genuine).await.0, 200);
    assert_eq!(
        evil_jwks.fetches.load(Ordering::SeqCst),
        0,
        "the proxy fetched a key URL named by the token"
    );
}

#[tokio::test]
async fn json_serialization_and_duplicate_members_are_refused() {
    let w = world().await;
    let h = header("");
    let p = valid_claims();
    let compact = w.key.sign(&h, &p);
    let mut parts = compact.split('.');
    let (h64, p64, s64) = (
        parts.next().expect("h"),
        parts.next().expect("p"),
        parts.next().expect("s"),
    );
    let flattened = json!({"protected": h64, "payload": p64, "signature": s64}).to_string();
    let general =
        json!({"payload": p64, "signatures": [{"protected": h64, "signature": s64}]}).to_string();
    refused(
        &w,
        vec![
            // Not token68 (RFC 6750 §2.1): refused as a malformed request before any parsing.
            ("JWS JSON flattened", flattened.clone(), "request_malformed"),
            ("JWS JSON general", general, "request_malformed"),
            (
                "JWS JSON, base64url-wrapped",
                B64.encode(&flattened),
                "token_malformed",
            ),
            (
                "duplicate sub",
                w.key.sign(&h, &claims(r#""sub":"a","sub":"b""#)),
                "token_malformed",
            ),
            (
                "duplicate iss",
                w.key.sign(&h, &claims(r#""sub":"a","iss":"https://evil""#)),
                "token_malformed",
            ),
            (
                "duplicate extra claim",
                w.key
                    .sign(&h, &claims(r#""sub":"a","purpose":"x","purpose":"y""#)),
                "token_malformed",
            ),
            (
                "duplicate inside cnf",
                w.key
                    .sign(&h, &claims(r#""sub":"a","cnf":{"jkt":"a","jkt":"b"}"#)),
                "token_malformed",
            ),
            (
                "duplicate after unescaping",
                w.key.sign(&h, &claims(r#""sub":"a","\u0073ub":"b""#)),
                "token_malformed",
            ),
            (
                "duplicate alg",
                w.key.sign(
                    r#"{"alg":"ES256","alg":"none","typ":"at+jwt","kid":"k1"}"#,
                    &p,
                ),
                "token_malformed",
            ),
            (
                "duplicate kid",
                w.key.sign(
                    r#"{"alg":"ES256","typ":"at+jwt","kid":"k1","kid":"k2"}"#,
                    &p,
                ),
                "token_malformed",
            ),
            (
                "duplicate ignored parameter",
                w.key.sign(&header(r#","jku":"a","jku":"b""#), &p),
                "token_malformed",
            ),
            ("four parts", format!("{compact}.{s64}"), "token_malformed"),
        ],
        Duration::from_secs(3),
    )
    .await;
}

#[tokio::test]
async fn non_string_huge_and_deep_claims_are_refused_in_bounded_time() {
    let w = world().await;
    let h = header("");
    let deep = |levels: usize| {
        format!(
            r#""sub":"a","act":{}{{"sub":"x"}}{}"#,
            r#"{"sub":"x","act":"#.repeat(levels),
            "}".repeat(levels)
        )
    };
    let one_mb = "A".repeat(1024 * 1024);
    refused(
        &w,
        vec![
            (
                "sub as number",
                w.key.sign(&h, &claims(r#""sub":42"#)),
                "token_malformed",
            ),
            (
                "sub as object",
                w.key.sign(&h, &claims(r#""sub":{"id":"psu-9"}"#)),
                "token_malformed",
            ),
            (
                "sub null",
                w.key.sign(&h, &claims(r#""sub":null"#)),
                "token_malformed",
            ),
            (
                "scope as array",
                w.key.sign(&h, &claims(r#""sub":"a","scope":["accounts"]"#)),
                "token_malformed",
            ),
            (
                "exp as string",
                w.key.sign(&h, &claims(r#""sub":"a","exp":"9999999999""#)),
                "token_malformed",
            ),
            (
                "aud as number",
                w.key.sign(&h, &claims(r#""sub":"a","aud":1"#)),
                "token_malformed",
            ),
            // serde would read a positional array into the `cnf` struct: a binding to
            // `thumb` that no other reader of the token sees.
            (
                "cnf as a positional array",
                w.key.sign(&h, &claims(r#""sub":"a","cnf":["thumb"]"#)),
                "token_malformed",
            ),
            // Within the header limit but past serde_json's recursion limit (128).
            (
                "act nested 300 deep",
                w.key.sign(&h, &claims(&deep(300))),
                "token_malformed",
            ),
        ],
        Duration::from_secs(1),
    )
    .await;

    // A chain deep enough to parse is still refused where no delegation is allowed.
    let (_, reason, _) = present(&w, &w.key.sign(&h, &claims(&deep(20)))).await;
    assert!(
        reason
            .as_deref()
            .is_some_and(|r| r.starts_with("delegation_")),
        "{reason:?}"
    );

    // Past the header limit (listen.limits.max_header_bytes, 8 KiB here) the guard answers 431
    // `headers_too_large` before any token work, audited. A block past hyper's own buffer
    // (4 × the limit, at least 64 KiB: the 1 MB cases) is refused by the HTTP parser itself:
    // 431 with no body, and the request never reaches the guard.
    let before = w.echo.count();
    let records_before = w.proxy.audit_records().await.len();
    for (name, token, want) in [
        (
            "12 KiB token",
            "A".repeat(12 * 1024),
            Some("headers_too_large"),
        ),
        (
            "40 KiB claim",
            w.key.sign(
                &h,
                &claims(&format!(r#""sub":"a","big":"{}""#, "A".repeat(40 * 1024))),
            ),
            Some("headers_too_large"),
        ),
        ("1 MB token", one_mb.clone(), None),
        (
            "1 MB claim",
            w.key
                .sign(&h, &claims(&format!(r#""sub":"a","big":"{one_mb}""#))),
            None,
        ),
        (
            "act nested 10k deep",
            w.key.sign(&h, &claims(&deep(10_000))),
            None,
        ),
    ] {
        let (status, reason, took) = present(&w, &token).await;
        assert_eq!((status, reason.as_deref()), (431, want), "{name}");
        assert!(took < Duration::from_secs(1), "{name}: took {took:?}");
    }
    let records = w.proxy.audit_records().await;
    let too_large = records[records_before..]
        .iter()
        .filter(|r| r["kind"] == "decision" && r["reason"] == "headers_too_large")
        .count();
    assert_eq!(too_large, 2, "the guard's 431s are audited");
    assert_eq!(w.echo.count(), before, "nothing reached the API");
}

/// The verifier's own cap (`token::verify::MAX_TOKEN_BYTES`, 12 KiB) holds under a header limit
/// raised far above it: a token one step over the cap is refused as `token_malformed` before
/// any decoding, one just under it is verified and accepted, and large or deeply nested tokens
/// are refused in bounded time.
#[tokio::test]
async fn the_verifier_caps_tokens_at_12_kib_whatever_the_header_limit() {
    const CAP: usize = 12 * 1024;
    let key = RawKey::new("k1");
    let jwks = Jwks::start(vec![key.jwk()]).await;
    let echo = Echo::start().await;
    let proxy = Proxy::start_with(
        &format!("http://{}", echo.addr),
        &jwks.uri(),
        "",
        "  limits:\n    max_header_bytes: 65536\n    max_body_bytes: 4096\n",
        POLICY,
    )
    .await;
    proxy.wait_ready().await;
    let w = World {
        key,
        jwks,
        echo,
        proxy,
    };
    let h = header("");
    // A valid token padded with an unused claim to `len` bytes or just past it (base64url
    // skips one length in four).
    let padded = |at_least: usize| {
        // base64url makes 4 characters of 3 bytes: start a little below the length wanted.
        (at_least * 3 / 4 - 600..)
            .map(|pad| {
                w.key.sign(
                    &h,
                    &claims(&format!(r#""sub":"psu-9","pad":"{}""#, "p".repeat(pad))),
                )
            })
            .find(|t| t.len() >= at_least)
            .expect("some padding reaches the length")
    };
    let under = (CAP - 8..=CAP)
        .rev()
        .map(&padded)
        .find(|t| t.len() <= CAP)
        .expect("a token within the cap");
    let over = padded(CAP + 1);
    assert!(
        under.len() <= CAP && under.len() > CAP - 4,
        "{}",
        under.len()
    );
    assert!(over.len() > CAP && over.len() < CAP + 4, "{}", over.len());

    let (status, reason, _) = present(&w, &under).await;
    assert_eq!((status, reason), (200, None), "{} bytes", under.len());
    assert_eq!(w.echo.count(), 1);

    let deep = |levels: usize| {
        format!(
            r#""sub":"a","act":{}{{"sub":"x"}}{}"#,
            r#"{"sub":"x","act":"#.repeat(levels),
            "}".repeat(levels)
        )
    };
    refused(
        &w,
        vec![
            ("one step over the cap", over, "token_malformed"),
            ("20 KiB of junk", "A".repeat(20 * 1024), "token_malformed"),
            (
                "40 KiB claim",
                w.key.sign(
                    &h,
                    &claims(&format!(r#""sub":"a","big":"{}""#, "A".repeat(40 * 1024))),
                ),
                "token_malformed",
            ),
            (
                "act nested 2,000 deep",
                w.key.sign(&h, &claims(&deep(2_000))),
                "token_malformed",
            ),
        ],
        Duration::from_millis(500),
    )
    .await;
}
