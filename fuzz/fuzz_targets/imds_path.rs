//! The IMDS path normaliser: any request target, never a panic, and the
//! canonical form re-normalises to the same path. (The canonical form is
//! percent-decoded, so it is only fed back when it holds no `%`: decoding
//! twice is not an invariant — the first fuzz runs found exactly that in an
//! earlier version of this harness: `%25q` → `%q`, `%23` → `#`.)
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(path) = imds_dataplane::path::normalise(text) {
        let canonical = format!("/{}", path.as_str());
        if canonical.contains(['%', '?', '#']) {
            return;
        }
        match imds_dataplane::path::normalise(&canonical) {
            Ok(again) => assert_eq!(again.as_str(), path.as_str(), "canonical form {canonical:?} moved"),
            Err(e) => panic!("canonical form {canonical:?} refused: {e}"),
        }
    }
});
