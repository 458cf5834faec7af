//! CloudWatch request bodies: the CBOR (smithy-rpc-v2) and JSON 1.0 decoders
//! take any bytes a caller sends to the control listener.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = imds_control::cloudwatch::input::from_cbor(data);
    let _ = imds_control::cloudwatch::input::from_json(data);
});
