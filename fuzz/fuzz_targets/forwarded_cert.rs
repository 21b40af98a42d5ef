//! Forwarded client certificates: Envoy XFCC, RFC 9440 `Client-Cert`, URL-encoded PEM.
#![no_main]
use fapi_guard::mtls::{ForwardedFormat, parse_forwarded};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    for f in [ForwardedFormat::Xfcc, ForwardedFormat::Rfc9440, ForwardedFormat::PemUrlencoded] {
        let _ = parse_forwarded(s, f);
    }
});
