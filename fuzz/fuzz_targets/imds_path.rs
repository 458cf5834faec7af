//! The IMDS path normaliser: any request target, never a panic, and the
//! canonical form re-normalises to the same route.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(path) = imds_dataplane::path::normalise(text) {
        let canonical = format!("/{}", path.as_str());
        let again = imds_dataplane::path::normalise(&canonical);
        assert!(again.is_ok(), "canonical form {canonical:?} refused");
    }
});
