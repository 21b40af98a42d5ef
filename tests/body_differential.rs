//! Issue 9, defect 1 through the real proxy: a payment body that two common JSON parsers could
//! read differently is refused (400 `request_malformed`, audited) and nothing reaches the API.

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
            "Kelvin-sign creditor key",
            format!(
                r#"{{"Data":{{"Initiation":{{"InstructedAmount":{{"Amount":"10.00","Currency":"GBP"}},"CreditorAccount":{{"Identification":"{IBAN}"}},"Creditoraccount":{{"Identification":"GB00EVIL"}}}}}}}}"#
            )
            .into_bytes(),
        ),
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
    assert_eq!(refused, 8, "every refusal is audited");
}
