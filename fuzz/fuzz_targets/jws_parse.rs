//! Compact JWS structure and JSON member decoding (access tokens, Txn-Tokens).
#![no_main]
use fapi_guard::token::jws;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = jws::unique_member_names(data);
    let Ok(s) = std::str::from_utf8(data) else { return };
    if let Some((h, p, _)) = jws::split(s, 12 * 1024) {
        let _ = jws::decode_json::<serde_json::Value>(h);
        let _ = jws::decode_json::<serde_json::Value>(p);
    }
});
