//! SigV4 parsing and verification: any Authorization header and query
//! string; never a panic, never a pass for a made-up signature.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (auth, query) = text.split_once('\n').unwrap_or((&text, ""));
    let mut headers = http::HeaderMap::new();
    if let Ok(v) = http::HeaderValue::from_str(auth) {
        headers.insert(http::header::AUTHORIZATION, v);
    }
    headers.insert(http::header::HOST, http::HeaderValue::from_static("127.0.0.1:8773"));
    if let Ok(v) = http::HeaderValue::from_str("20261126T000000Z") {
        headers.insert("x-amz-date", v);
    }
    let req = imds_sigv4::RequestParts { method: "POST", path: "/", query, headers: &headers, body: b"Action=DescribeInstances" };
    if let Ok(info) = imds_sigv4::parse(&req) {
        assert!(imds_sigv4::verify(&req, &info, "secret", 1_795_651_200).is_err());
    }
});
