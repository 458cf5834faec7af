//! The token TTL header: accepted values are exactly 1..=21600.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(ttl) = imds_token::parse_ttl(data) {
        assert!((imds_token::TTL_MIN_SECS..=imds_token::TTL_MAX_SECS).contains(&ttl));
    }
});
