//! RFC 9421 `Signature-Input` / `Signature` and RFC 9530 `Content-Digest` parsing, and the whole
//! pre-key verification step (selection, time window, coverage, signature base).
#![no_main]
use fapi_guard::signature::{RequestParts, digest, fields, verify};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    let _ = fields::parse_inputs(s);
    let _ = fields::parse_signatures(s);
    let _ = digest::verify_value(s, data);
    // Split the input into the two fields and run the verifier's first step over them.
    let (input, sig) = s.split_once('\n').unwrap_or((s, ""));
    let mut h = http::HeaderMap::new();
    for (name, value) in [("signature-input", input), ("signature", sig)] {
        if let Ok(v) = http::HeaderValue::from_str(value) {
            h.insert(name, v);
        }
    }
    let req = RequestParts {
        method: "POST",
        scheme: "https",
        authority: "api.bank.example",
        path: "/p",
        query: None,
        headers: &h,
    };
    let window = verify::Window {
        now: 1_800_000_000,
        max_age: std::time::Duration::from_secs(60),
        clock_skew: std::time::Duration::from_secs(10),
    };
    let _ = verify::candidate(&req, window);
});
