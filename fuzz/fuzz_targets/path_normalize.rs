//! Path normalization (spec §5): never panics, and is idempotent on what it accepts.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(raw) = std::str::from_utf8(data) else { return };
    if let Ok(norm) = fapi_guard::path::normalize(raw) {
        let again = fapi_guard::path::normalize(&norm).expect("a normalized path normalizes");
        assert_eq!(again, norm, "normalize is idempotent");
    }
});
