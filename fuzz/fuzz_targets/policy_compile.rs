//! The policy compiler on arbitrary text: a policy set or located errors, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(src) = std::str::from_utf8(data) else { return };
    let file = std::path::PathBuf::from("fuzz.yaml");
    if let Err(errors) = fapi_guard::policy::PolicySet::compile(&[(file.clone(), src.to_owned())]) {
        for e in errors {
            assert_eq!(e.file, file);
            assert!(e.line.is_some() || !e.field.is_empty(), "error without a location: {e}");
        }
    }
});
