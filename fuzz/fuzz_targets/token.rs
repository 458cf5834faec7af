//! Token opening: arbitrary bytes as the X-aws-ec2-metadata-token header
//! never panic and are never accepted.
#![no_main]
use imds_token::{KeyRing, TokenBinding};
use libfuzzer_sys::fuzz_target;
use std::sync::LazyLock;

static RING: LazyLock<Option<KeyRing>> = LazyLock::new(|| KeyRing::generate(1_700_000_000_000).ok());

fuzz_target!(|data: &[u8]| {
    let Some(ring) = RING.as_ref() else { return };
    let binding = TokenBinding { instance_id: "i-0123456789abcdef0", incarnation: 1 };
    assert!(ring.open(data, &binding, 1_700_000_000_000).is_err());
});
