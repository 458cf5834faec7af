//! The EC2 Query form parser: any body and query string.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let split = data.iter().position(|b| *b == 0).unwrap_or(data.len());
    let (body, query) = data.split_at(split);
    let _ = imds_control::query::parse_form(&[body, query]);
});
