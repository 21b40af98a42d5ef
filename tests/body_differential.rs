//! Parser differentials on request bodies, through the real proxy: a payment body that two
//! common JSON parsers could read differently (keys equal under case or Unicode folding,
//! duplicates, invalid UTF-8, ...), or a `Content-Type` that could name two media types, is
//! refused (400 `request_malformed`, audited) and nothing reaches the API.

mod common;

use bytes::Bytes;
use common::*;
use http::Request;
use http_body_util::Full;
use serde_json::json;

const POLICY: &str = "\
api: payments
defaults:
  binding: unbound_allowed
  scopes: [payments]
routes:
  - name: create-payment
    method: POST
    path: /payments
    consent:
      authorization_details:
        type: payment_initiation
        match_body:
          /Data/Initiation/InstructedAmount/Amount: /instructedAmount/amount
          /Data/Initiation/InstructedAmount/Currency: /instructedAmount/currency
          /Data/Initiation/CreditorAccount/Identification: /creditorAccount/iban
  - name: public-notes
    method: POST
    path: /notes
    public: true
";

const IBAN: &str = "GB29NWBK60161331926819";

fn payment(amount_members: &str) -> String {
    format!(
        r#"{{"Data":{{"Initiation":{{"InstructedAmount":{{{amount_members},"Currency":"GBP"}},"CreditorAccount":{{"Identification":"{IBAN}"}}}}}}}}"#
    )
}

#[tokio::test]
async fn ambiguous_payment_bodies_are_refused_and_never_forwarded() {
    let key = TestKey::new("k1");
    let jwks = Jwks::start(vec![key.jwks_entry()]).await;
    let echo = Echo::start().await;
    let proxy = Proxy::start(&format!("http://{}", echo.addr), &jwks.uri(), "", POLICY).await;
    proxy.wait_ready().await;
    let token = format!(
        "Bearer {}",
        key.token(|_, c| {
            c["scope"] = json!("payments");
            c["authorization_details"] = json!([{"type": "payment_initiation",
                "instructedAmount": {"amount": "10.00", "currency": "GBP"},
                "creditorAccount": {"iban": IBAN}}]);
        })
    );
    let post = |body: Vec<u8>| {
        Request::post(proxy.url("/payments"))
            .header("authorization", token.as_str())
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body)))
            .expect("req")
    };

    // The approved payment goes through, byte for byte.
    let exact = payment(r#""Amount":"10.00""#);
    let r = send(post(exact.clone().into_bytes())).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(echo.count(), 1);

    let deep = format!(
        r#"{{"Data":{{"Initiation":{{"InstructedAmount":{{"Amount":"10.00","Currency":"GBP"}},"CreditorAccount":{{"Identification":"{IBAN}"}},"x":{}1{}}}}}}}"#,
        "[".repeat(40),
        "]".repeat(40)
    );
    let cases: Vec<(&str, Vec<u8>)> = vec![
        // Go encoding/json and ASP.NET Core bind case-insensitively, last one wins: 9999.00.
        (
            "case-variant amount",
            payment(r#""Amount":"10.00","amount":"9999.00""#).into_bytes(),
        ),
        (
            "second instructedAmount object",
            format!(
                r#"{{"Data":{{"Initiation":{{"InstructedAmount":{{"Amount":"10.00","Currency":"GBP"}},"CreditorAccount":{{"Identification":"{IBAN}"}},"instructedAmount":{{"Amount":"9999.00","Currency":"GBP"}}}}}}}}"#
            )
            .into_bytes(),
        ),
        (
            "escaped duplicate",
            payment(r#""Amount":"10.00","\u0041mount":"9999.00""#).into_bytes(),
        ),
        (
            "case-variant creditor key",
            format!(
                r#"{{"Data":{{"Initiation":{{"InstructedAmount":{{"Amount":"10.00","Currency":"GBP"}},"CreditorAccount":{{"Identification":"{IBAN}"}},"Creditoraccount":{{"Identification":"GB00EVIL"}}}}}}}}"#
            )
            .into_bytes(),
        ),
        // Go's encoding/json folds keys with simple Unicode case folding (bytes.EqualFold):
        // U+212A KELVIN SIGN matches `k` and `K`, U+017F LATIN SMALL LETTER LONG S matches `s`.
        (
            "Kelvin-sign key (raw UTF-8)",
            payment("\"Amount\":\"10.00\",\"Remark\":\"ok\",\"Remar\u{212A}\":\"evil\"").into_bytes(),
        ),
        (
            "Kelvin-sign key (escaped)",
            payment(r#""Amount":"10.00","Remark":"ok","Remar\u212a":"evil""#).into_bytes(),
        ),
        (
            "long-s instructedAmount",
            format!(
                "{{\"Data\":{{\"Initiation\":{{\"InstructedAmount\":{{\"Amount\":\"10.00\",\"Currency\":\"GBP\"}},\"CreditorAccount\":{{\"Identification\":\"{IBAN}\"}},\"In\u{17F}tructedAmount\":{{\"Amount\":\"9999.00\",\"Currency\":\"GBP\"}}}}}}}}"
            )
            .into_bytes(),
        ),
        // NFKC maps fullwidth letters to ASCII: a normalizing binder reads `Identification`.
        (
            "fullwidth creditor identification",
            format!(
                "{{\"Data\":{{\"Initiation\":{{\"InstructedAmount\":{{\"Amount\":\"10.00\",\"Currency\":\"GBP\"}},\"CreditorAccount\":{{\"Identification\":\"{IBAN}\",\"\u{FF29}dentification\":\"GB00EVIL\"}}}}}}}}"
            )
            .into_bytes(),
        ),
        // The same name composed (NFC) and decomposed (NFD).
        (
            "NFC and NFD names",
            payment("\"Amount\":\"10.00\",\"R\u{E9}f\":\"a\",\"Re\u{301}f\":\"b\"").into_bytes(),
        ),
        ("invalid UTF-8 (0xFF) in a value", {
            let mut b = payment(r#""Amount":"10.00","Note":"x""#).into_bytes();
            let at = b.iter().position(|&c| c == b'x').expect("marker");
            b[at] = 0xFF;
            b
        }),
        ("overlong UTF-8 in a name", {
            // 0xC1 0x81 is an overlong `A`: a lenient decoder reads `Amount` twice.
            let mut b = payment(r#""Amount":"10.00","XXmount":"9999.00""#).into_bytes();
            let at = b.windows(2).position(|w| w == b"XX").expect("marker");
            b[at] = 0xC1;
            b[at + 1] = 0x81;
            b
        }),
        ("byte-order mark", {
            let mut b = b"\xEF\xBB\xBF".to_vec();
            b.extend_from_slice(exact.as_bytes());
            b
        }),
        ("deep nesting", deep.into_bytes()),
        (
            "lone surrogate",
            payment(r#""Amount":"10.00","Note":"\ud800""#).into_bytes(),
        ),
        (
            "huge number",
            payment(&format!(r#""Amount":"10.00","Fee":{}"#, "9".repeat(40))).into_bytes(),
        ),
    ];
    for (name, body) in cases {
        let r = send(post(body)).await;
        assert_eq!(
            (r.status, r.reason()),
            (400, Some("request_malformed")),
            "{name}"
        );
    }
    assert_eq!(echo.count(), 1, "no ambiguous body reached the API");
    let records = proxy.audit_records().await;
    let refused = records
        .iter()
        .filter(|r| r["kind"] == "decision" && r["reason"] == "request_malformed")
        .count();
    assert_eq!(refused, 15, "every refusal is audited");
}

/// `Content-Type` is single-valued: with two field lines (or two types folded into one line) the
/// proxy could check the body as JSON while a last-wins stack (gunicorn's WSGI environ, say)
/// reads the same bytes as a form and pays `Amount=9999.00`. Refused on every route. Where the
/// proxy reads the body as UTF-8, a `charset` other than UTF-8 is refused too.
#[tokio::test]
async fn a_content_type_that_names_two_media_types_or_another_charset_is_refused() {
    let key = TestKey::new("k1");
    let jwks = Jwks::start(vec![key.jwks_entry()]).await;
    let echo = Echo::start().await;
    let proxy = Proxy::start(&format!("http://{}", echo.addr), &jwks.uri(), "", POLICY).await;
    proxy.wait_ready().await;
    let token = format!(
        "Bearer {}",
        key.token(|_, c| {
            c["scope"] = json!("payments");
            c["authorization_details"] = json!([{"type": "payment_initiation",
                "instructedAmount": {"amount": "10.00", "currency": "GBP"},
                "creditorAccount": {"iban": IBAN}}]);
        })
    );
    // A JSON/form polyglot: JSON with Amount 10.00, and a form whose `Amount` is 9999.00.
    let polyglot = payment(r#""Amount":"10.00","x":"&Amount=9999.00&""#);
    let post = |path: &str, content_types: &[&[u8]], body: &str| {
        let mut req = Request::post(proxy.url(path)).header("authorization", token.as_str());
        for ct in content_types {
            req = req.header(
                "content-type",
                http::HeaderValue::from_bytes(ct).expect("test header"),
            );
        }
        req.body(Full::new(Bytes::from(body.to_owned())))
            .expect("req")
    };

    // Controls: one JSON type, with or without a UTF-8 charset, is checked and forwarded.
    let allowed: &[(&str, &[&[u8]])] = &[
        ("plain", &[b"application/json"]),
        ("charset utf-8", &[b"application/json; charset=utf-8"]),
        (
            "quoted upper case",
            &[b"Application/JSON;charset=\"UTF-8\""],
        ),
    ];
    for (name, ct) in allowed {
        let r = send(post("/payments", ct, &polyglot)).await;
        assert_eq!(r.status, 200, "{name}: {:?}", r.body);
    }
    assert_eq!(echo.count(), allowed.len());
    let r = send(post("/notes", &[b"text/plain"], "hello")).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let forwarded = echo.count();

    let refused: &[(&str, &str, &[&[u8]])] = &[
        (
            "JSON then form",
            "/payments",
            &[b"application/json", b"application/x-www-form-urlencoded"],
        ),
        (
            "form then JSON",
            "/payments",
            &[b"application/x-www-form-urlencoded", b"application/json"],
        ),
        (
            "the same type twice",
            "/payments",
            &[b"application/json", b"application/json"],
        ),
        (
            "two types folded into one line",
            "/payments",
            &[b"application/json, application/x-www-form-urlencoded"],
        ),
        (
            "two charsets",
            "/payments",
            &[b"application/json; charset=utf-8; charset=utf-16"],
        ),
        (
            "utf-16 JSON",
            "/payments",
            &[b"application/json; charset=utf-16"],
        ),
        (
            "latin-1 JSON",
            "/payments",
            &[b"application/json; charset=iso-8859-1"],
        ),
        ("obs-text", "/payments", &[b"application/json; x=\xe9"]),
        (
            "two lines on a public route",
            "/notes",
            &[b"text/plain", b"application/x-www-form-urlencoded"],
        ),
        (
            "latin-1 form on a public route",
            "/notes",
            &[b"application/x-www-form-urlencoded; charset=iso-8859-1"],
        ),
    ];
    for (name, path, ct) in refused {
        let r = send(post(path, ct, &polyglot)).await;
        assert_eq!(
            (r.status, r.reason()),
            (400, Some("request_malformed")),
            "{name}"
        );
    }
    assert_eq!(
        echo.count(),
        forwarded,
        "no refused request reached the API"
    );
    let records = proxy.audit_records().await;
    let audited = records
        .iter()
        .filter(|r| r["kind"] == "decision" && r["reason"] == "request_malformed")
        .count();
    assert_eq!(audited, refused.len(), "every refusal is audited");
}
