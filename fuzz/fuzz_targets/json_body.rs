//! The consent body checker: any bytes give a value or a refusal, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = fapi_guard::consent::parse_body(data);
});
