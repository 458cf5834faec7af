//! Property tests: whatever `aws-sigv4` signs verifies and any change to the
//! signature fails; no input makes `parse` or `verify` panic.
#![allow(clippy::unwrap_used)] // tests unwrap: a panic is the failure report

mod common;

use common::*;
use http::{HeaderMap, HeaderName, HeaderValue};
use imds_sigv4::{Dialect, RequestParts, SigV4Error, SignatureInfo, canonical_request, parse, verify};
use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};
use proptest::prelude::*;

/// What cannot appear raw in a URI path (plus `%`, so any escape we produce is valid).
const PATH_ESCAPE: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'[')
    .add(b'\\')
    .add(b']')
    .add(b'^')
    .add(b'`')
    .add(b'{')
    .add(b'|')
    .add(b'}');

/// What cannot appear raw in a query value, and the separators. `+` stays raw on purpose:
/// it means a space to both sides.
const QUERY_ESCAPE: &AsciiSet = &PATH_ESCAPE.add(b'&').add(b'=');

fn path_strategy() -> impl Strategy<Value = String> {
    // Printable ASCII with extra weight on the characters normalisation cares about.
    prop::collection::vec(prop_oneof![3 => "[ -~]{0,6}", 1 => Just(".".to_owned()), 1 => Just("..".to_owned()), 1 => Just(String::new())], 0..6)
        .prop_map(|segments| {
            let raw = format!("/{}", segments.join("/"));
            utf8_percent_encode(&raw, PATH_ESCAPE).to_string()
        })
}

fn query_strategy() -> impl Strategy<Value = String> {
    prop::collection::vec(("[ -~]{0,8}", "[ -~]{0,8}", any::<bool>()), 0..6).prop_map(|params| {
        params
            .iter()
            .map(|(k, v, with_eq)| {
                let k = utf8_percent_encode(k, QUERY_ESCAPE).to_string();
                let v = utf8_percent_encode(v, QUERY_ESCAPE).to_string();
                if *with_eq || !v.is_empty() { format!("{k}={v}") } else { k }
            })
            .collect::<Vec<_>>()
            .join("&")
    })
}

fn spec_strategy() -> impl Strategy<Value = Spec> {
    (
        path_strategy(),
        query_strategy(),
        prop::collection::vec(any::<u8>(), 0..256),
        prop::option::of("[A-Za-z0-9+/=]{1,64}"),
        prop::option::of(1u64..=604_800),
        prop::sample::select(vec!["ec2", "lightsail"]),
        prop::collection::vec(("[A-Za-z][A-Za-z0-9-]{0,10}", "[ -~]{0,16}"), 0..3),
        any::<bool>(),
        prop::sample::select(vec!["GET", "POST", "PUT", "DELETE"]),
    )
        .prop_map(|(path, query, body, token, presign, service, headers, content_sha256, method)| {
            let uri = if query.is_empty() {
                format!("https://{service}.us-east-1.amazonaws.com{path}")
            } else {
                format!("https://{service}.us-east-1.amazonaws.com{path}?{query}")
            };
            let mut spec = Spec::new(method, &uri);
            spec.service = service.into();
            spec.body = body;
            spec.token = token;
            spec.content_sha256 = content_sha256 && presign.is_none();
            spec.presign = presign.map(std::time::Duration::from_secs);
            for (name, value) in headers {
                // Names that the signer or the HTTP layer own would change the meaning of the case.
                let lower = name.to_ascii_lowercase();
                if lower.starts_with("x-amz")
                    || ["host", "authorization", "user-agent", "transfer-encoding"].contains(&lower.as_str())
                {
                    continue;
                }
                spec.headers.push((format!("X-P-{name}"), value));
            }
            spec
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn whatever_aws_sigv4_signs_verifies(spec in spec_strategy()) {
        let wire = sign_spec(&spec);
        let info = wire.verify_at(T0);
        prop_assert!(info.is_ok(), "{:?}\n{:#?}", info, wire);
    }

    #[test]
    fn any_change_to_the_signature_fails(spec in spec_strategy(), pos in 0usize..64, delta in 1u8..16) {
        let wire = sign_spec(&spec);
        let mut info = wire.parse().unwrap();
        let mut sig = info.signature.clone().into_bytes();
        let nibble = u8::try_from(char::from(sig[pos]).to_digit(16).unwrap()).unwrap();
        sig[pos] = b"0123456789abcdef"[usize::from((nibble + delta) % 16)];
        info.signature = String::from_utf8(sig).unwrap();
        let r = verify(&wire.parts(), &info, SECRET, T0);
        prop_assert!(is_mismatch(&r), "{:?}", r);
    }

    #[test]
    fn changing_the_path_or_body_fails(spec in spec_strategy(), extra in "[a-z0-9]{1,4}") {
        let mut wire = sign_spec(&spec);
        wire.path = format!("{}/{extra}", wire.path.trim_end_matches('/'));
        let r = wire.verify_at(T0);
        // Appending a segment changes the canonical URI (dot segments cannot eat it: it is alphanumeric).
        prop_assert!(is_mismatch(&r), "{:?}", r);

        let mut wire = sign_spec(&spec);
        wire.body.extend_from_slice(extra.as_bytes());
        let r = wire.verify_at(T0);
        prop_assert!(is_mismatch(&r) || r == Err(SigV4Error::PayloadHashMismatch), "{:?}", r);
    }

    #[test]
    fn both_dialects_agree_on_canonically_encoded_requests(spec in spec_strategy()) {
        // The SDKs only differ on unusual inputs; for a request aws-sigv4 sent whose path has no
        // trailing dot segment and whose query is canonically encoded, they must agree.
        let wire = sign_spec(&spec);
        let info = wire.parse().unwrap();
        let standard = canonical_request(&wire.parts(), &info, Dialect::Standard).unwrap();
        let botocore = canonical_request(&wire.parts(), &info, Dialect::Botocore).unwrap();
        let canonical_query = standard.split('\n').nth(2).unwrap() == wire.query;
        let plain_path = !wire.path.contains('.') && !wire.path.contains("//");
        if canonical_query && plain_path {
            prop_assert_eq!(standard, botocore);
        }
    }

    #[test]
    fn parse_never_panics_on_arbitrary_authorization_headers(value in prop::collection::vec(any::<u8>(), 0..300)) {
        let Ok(value) = HeaderValue::from_bytes(&value) else { return Ok(()) };
        let mut headers = HeaderMap::new();
        headers.insert(http::header::AUTHORIZATION, value);
        headers.insert("x-amz-date", HeaderValue::from_static("20240102T030405Z"));
        check_parse_and_verify(&headers, "");
    }

    #[test]
    fn parse_never_panics_on_arbitrary_strings(value in ".{0,200}", query in ".{0,200}") {
        let mut headers = HeaderMap::new();
        if let Ok(v) = HeaderValue::from_str(&value) {
            headers.insert(http::header::AUTHORIZATION, v);
        }
        check_parse_and_verify(&headers, &query);
        check_parse_and_verify(&HeaderMap::new(), &query);
    }

    #[test]
    fn parse_never_panics_on_near_miss_authorization_headers(
        algorithm in prop::sample::select(vec!["AWS4-HMAC-SHA256", "AWS4-HMAC-SHA256 ", "aws4-hmac-sha256", "AWS", ""]),
        parts in prop::collection::vec(
            prop_oneof![
                "Credential=[A-Za-z0-9/_.-]{0,60}",
                Just("Credential=AKIDEXAMPLE/20240102/us-east-1/ec2/aws4_request".to_owned()),
                "SignedHeaders=[a-z;-]{0,30}",
                Just("SignedHeaders=host;x-amz-date".to_owned()),
                "Signature=[0-9a-fA-Fg]{0,70}",
                "[ -~]{0,20}",
            ],
            0..5,
        ),
        separator in prop::sample::select(vec![", ", ",", " ", ";", ",,"]),
        date in prop::sample::select(vec!["20240102T030405Z", "20240102T030405", "", "99999999T999999Z"]),
    ) {
        let auth = format!("{algorithm} {}", parts.join(separator));
        let mut headers = HeaderMap::new();
        if let Ok(v) = HeaderValue::from_str(&auth) {
            headers.insert(http::header::AUTHORIZATION, v);
        }
        if let Ok(v) = HeaderValue::from_str(date) {
            headers.insert("x-amz-date", v);
        }
        headers.insert("host", HeaderValue::from_static("ec2.us-east-1.amazonaws.com"));
        check_parse_and_verify(&headers, "");
    }

    #[test]
    fn parse_never_panics_on_near_miss_query_forms(
        params in prop::collection::vec(
            (
                prop::sample::select(vec![
                    "X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Date", "X-Amz-Expires",
                    "X-Amz-SignedHeaders", "X-Amz-Signature", "X-Amz-Security-Token", "X-Amz-%41lgorithm", "Action",
                ]),
                prop_oneof![
                    Just("AWS4-HMAC-SHA256".to_owned()),
                    Just("AKIDEXAMPLE%2F20240102%2Fus-east-1%2Fec2%2Faws4_request".to_owned()),
                    Just("20240102T030405Z".to_owned()),
                    Just("host".to_owned()),
                    "[0-9a-f]{64}",
                    "[0-9]{0,21}",
                    "[ -~]{0,30}",
                ],
            ),
            0..10,
        ),
    ) {
        let query = params.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("&");
        let mut headers = HeaderMap::new();
        headers.insert("host", HeaderValue::from_static("ec2.us-east-1.amazonaws.com"));
        check_parse_and_verify(&headers, &query);
    }

    #[test]
    fn verify_never_panics_on_arbitrary_signature_info(
        access_key_id in ".{0,20}",
        date in ".{0,10}",
        region in ".{0,10}",
        service in ".{0,10}",
        signed_headers in prop::collection::vec(".{0,10}", 0..5),
        signature in ".{0,70}",
        amz_date in ".{0,20}",
        timestamp_unix in any::<i64>(),
        session_token in prop::option::of(".{0,10}"),
        from_query in any::<bool>(),
        expires_secs in prop::option::of(any::<u64>()),
        now in any::<i64>(),
        path in ".{0,30}",
        query in ".{0,30}",
        method in ".{0,10}",
        body in prop::collection::vec(any::<u8>(), 0..32),
        header_names in prop::collection::vec("[a-z-]{1,12}", 0..4),
    ) {
        let info = SignatureInfo {
            access_key_id, date, region, service, signed_headers, signature, amz_date, timestamp_unix,
            session_token, from_query, expires_secs,
        };
        let mut headers = HeaderMap::new();
        for name in header_names {
            headers.append(HeaderName::from_bytes(name.as_bytes()).unwrap(), HeaderValue::from_static("v"));
        }
        let req = RequestParts { method: &method, path: &path, query: &query, headers: &headers, body: &body };
        let _ = verify(&req, &info, "secret", now);
        for dialect in Dialect::ALL {
            let _ = canonical_request(&req, &info, dialect);
        }
    }
}

/// `parse` returns one of the parse errors (or a signature); `verify` of
/// whatever it returns does not panic either.
fn check_parse_and_verify(headers: &HeaderMap, query: &str) {
    let req = RequestParts { method: "POST", path: "/", query, headers, body: b"" };
    match parse(&req) {
        Ok(info) => {
            let _ = verify(&req, &info, SECRET, T0);
        }
        Err(SigV4Error::Missing | SigV4Error::Malformed(_) | SigV4Error::UnsupportedAlgorithm(_)) => {}
        Err(other) => panic!("parse returned {other:?}"),
    }
}
