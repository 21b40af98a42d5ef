//! DPoP proof verification (RFC 9449 §4.3) on arbitrary proofs: refused, never a panic.
#![no_main]
use fapi_guard::dpop::{DpopSettings, ProofRequest, verify_proof};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(proof) = std::str::from_utf8(data) else { return };
    let settings = DpopSettings::default();
    let req = ProofRequest {
        proof,
        method: "GET",
        htu: "https://api.bank.example/accounts",
        access_token: Some("token"),
        now: 1_800_000_000,
    };
    assert!(verify_proof(&req, &settings).is_err(), "an unsigned input was accepted");
});
