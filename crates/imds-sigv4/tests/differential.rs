//! Differential tests: requests signed by the real `aws-sigv4` signer verify,
//! and any change to what was signed does not.
#![allow(clippy::unwrap_used)] // tests unwrap: a panic is the failure report

mod common;

use common::*;
use imds_sigv4::{Dialect, MAX_SKEW_SECS, SigV4Error, canonical_request, string_to_sign};

const DESCRIBE: &str = "Action=DescribeInstances&Version=2016-11-15&InstanceId.1=i-1234567890abcdef0";

/// Every variant the tests sign, each checked to verify.
fn cases() -> Vec<(&'static str, Spec)> {
    vec![
        ("ec2 form", Spec::ec2_form(DESCRIBE)),
        ("ec2 form with token", Spec::ec2_form(DESCRIBE).token(TOKEN)),
        (
            "ec2 modify options",
            Spec::ec2_form(
                "Action=ModifyInstanceMetadataOptions&Version=2016-11-15&InstanceId=i-1234567890abcdef0\
                 &HttpTokens=required&HttpPutResponseHopLimit=2",
            ),
        ),
        ("ec2 with x-amz-content-sha256", {
            let mut s = Spec::ec2_form(DESCRIBE);
            s.content_sha256 = true;
            s
        }),
        ("ec2 empty body", Spec::ec2_form("")),
        ("lightsail json", Spec::lightsail_json("GetInstances", "{}")),
        (
            "lightsail json with token",
            Spec::lightsail_json(
                "UpdateInstanceMetadataOptions",
                r#"{"instanceName":"my instance \u00fc","httpTokens":"required","httpPutResponseHopLimit":2}"#,
            )
            .token(TOKEN),
        ),
        ("presigned get", Spec::new("GET", &format!("https://ec2.us-east-1.amazonaws.com/?{DESCRIBE}")).presigned(900)),
        (
            "presigned get with token",
            Spec::new("GET", &format!("https://ec2.us-east-1.amazonaws.com/?{DESCRIBE}")).presigned(3600).token(TOKEN),
        ),
        ("presigned post with body", Spec::ec2_form(DESCRIBE).presigned(60)),
        ("presigned lightsail", Spec::lightsail_json("GetInstances", "{}").presigned(604_800).token(TOKEN)),
        (
            "path with spaces, unicode and reserved characters",
            Spec::new("GET", "https://example.amazonaws.com/a%20b/%E2%9C%93/c%2Fd/%40x:y@z!$&'()*+,;=/~tilde"),
        ),
        ("path needing normalisation", Spec::new("GET", "https://example.amazonaws.com/foo/./bar/../baz//qux/")),
        ("path with dot segments at the end", Spec::new("GET", "https://example.amazonaws.com/foo/bar/..")),
        ("path with a percent-encoded dot", Spec::new("GET", "https://example.amazonaws.com/foo/%2E%2E/bar")),
        (
            "query with repeated keys, empty values and characters needing encoding",
            Spec::new(
                "GET",
                "https://example.amazonaws.com/?b=2&a=1&a=0&empty=&flag&sp=a%20b&plus=a%2Bb&raw=a+b\
                 &uni=%E2%9C%93&tilde=~&star=%2A&lower=%2a&slash=/&q=?&colon=:&B=upper",
            ),
        ),
        ("query and body", Spec::ec2_form(DESCRIBE).header("x-extra", "1").presigned(5)),
        (
            "mixed-case header names",
            Spec::ec2_form(DESCRIBE).header("X-Custom-Header", "Value").header("x-ANOTHER-one", "v2"),
        ),
        ("headers with runs of spaces", Spec::ec2_form(DESCRIBE).header("X-Spaces", "  a   b    c  ")),
        (
            "repeated header",
            Spec::ec2_form(DESCRIBE).header("X-Multi", "one").header("x-multi", "two  2").header("X-MULTI", "three"),
        ),
        ("header with utf-8 value", Spec::ec2_form(DESCRIBE).header("X-Utf8", "grüße ✓")),
        ("non-default port", Spec::new("POST", "http://127.0.0.1:8773/")),
        ("other region", {
            let mut s = Spec::ec2_form(DESCRIBE);
            s.region = "eu-west-3".into();
            s.uri = "https://ec2.eu-west-3.amazonaws.com/".into();
            s
        }),
    ]
}

#[test]
fn every_case_signed_by_aws_sigv4_verifies() {
    for (name, spec) in cases() {
        let wire = sign_spec(&spec);
        let info = wire.verify_at(T0).unwrap_or_else(|e| panic!("{name}: {e:?}\n{wire:#?}"));
        assert_eq!(info.access_key_id, AKID, "{name}");
        assert_eq!(info.service, spec.service, "{name}");
        assert_eq!(info.region, spec.region, "{name}");
        assert_eq!(info.session_token.as_deref(), spec.token.as_deref(), "{name}");
        assert_eq!(info.from_query, spec.presign.is_some(), "{name}");
        assert_eq!(info.expires_secs, spec.presign.map(|d| d.as_secs()), "{name}");
        assert_eq!(info.timestamp_unix, T0, "{name}");
        assert!(info.signed_headers.iter().any(|h| h == "host"), "{name}");
    }
}

#[test]
fn every_case_fails_with_another_secret() {
    for (name, spec) in cases() {
        let wire = sign_spec(&spec);
        let r = wire.verify_with("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEZ", T0);
        assert!(is_mismatch(&r), "{name}: {r:?}");
        let r = wire.verify_with("", T0);
        assert!(is_mismatch(&r), "{name}: {r:?}");
    }
}

#[test]
fn every_case_fails_when_a_body_byte_flips() {
    for (name, spec) in cases() {
        let mut wire = sign_spec(&spec);
        if wire.body.is_empty() {
            wire.body.push(b'x');
        } else {
            wire.body[0] ^= 0x01;
        }
        let r = wire.verify_at(T0);
        let expected = if spec.content_sha256 {
            matches!(r, Err(SigV4Error::PayloadHashMismatch))
        } else {
            is_mismatch(&r)
        };
        assert!(expected, "{name}: {r:?}");
    }
}

#[test]
fn every_case_fails_when_the_path_changes() {
    for (name, spec) in cases() {
        let mut wire = sign_spec(&spec);
        wire.path.push('x');
        assert!(is_mismatch(&wire.verify_at(T0)), "{name}");
        let mut wire = sign_spec(&spec);
        wire.path = wire.path.to_uppercase().replace("%2F", "%2f") + "/Z";
        assert!(is_mismatch(&wire.verify_at(T0)), "{name}");
    }
}

#[test]
fn every_case_fails_when_the_method_changes() {
    for (name, spec) in cases() {
        let mut wire = sign_spec(&spec);
        wire.method = if wire.method == "GET" { "POST".into() } else { "GET".into() };
        assert!(is_mismatch(&wire.verify_at(T0)), "{name}");
    }
}

#[test]
fn every_case_fails_when_any_signed_header_changes() {
    for (name, spec) in cases() {
        let wire = sign_spec(&spec);
        let info = wire.parse().unwrap();
        for header in &info.signed_headers {
            let mut changed = wire.clone();
            let old = changed.headers.get(header.as_str()).unwrap().to_str().unwrap_or("x").to_owned();
            changed.set_header(header, &format!("{old}1"));
            let r = changed.verify_at(T0);
            let ok = match header.as_str() {
                // A changed date no longer parses or shifts the time: either way it must fail.
                "x-amz-date" => {
                    matches!(r, Err(SigV4Error::Malformed(_) | SigV4Error::SignatureMismatch { .. }))
                }
                "x-amz-content-sha256" => matches!(r, Err(SigV4Error::PayloadHashMismatch)),
                _ => is_mismatch(&r),
            };
            assert!(ok, "{name}: changing {header}: {r:?}");

            let mut removed = wire.clone();
            removed.headers.remove(header.as_str());
            let r = removed.verify_at(T0);
            assert!(matches!(r, Err(SigV4Error::Malformed(_))), "{name}: removing {header}: {r:?}");
        }
    }
}

#[test]
fn unsigned_headers_may_change() {
    let mut wire = sign_spec(&Spec::ec2_form(DESCRIBE));
    wire.set_header("user-agent", "aws-cli/1.45.11");
    wire.set_header("amz-sdk-invocation-id", "43d636e2-424d-4dfe-b530-ade2877bb982");
    wire.verify_at(T0).unwrap();
}

#[test]
fn header_whitespace_outside_values_does_not_matter() {
    let mut wire = sign_spec(&Spec::ec2_form(DESCRIBE).header("X-Spaces", "a b"));
    wire.set_header("x-spaces", "   a     b   ");
    wire.verify_at(T0).unwrap();
}

#[test]
fn changing_the_signing_time_fails() {
    let wire = sign_spec(&Spec::ec2_form(DESCRIBE));
    // One second later, same day: the string to sign differs.
    let mut later = wire.clone();
    later.set_header("x-amz-date", "20240102T030406Z");
    assert!(is_mismatch(&later.verify_at(T0)));
    // Another day: the credential scope no longer matches the date.
    let mut other_day = wire.clone();
    other_day.set_header("x-amz-date", "20240103T030405Z");
    let r = other_day.verify_at(T0 + 86_400);
    let Err(SigV4Error::Malformed(msg)) = r else { panic!("{r:?}") };
    assert!(msg.contains("Credential scope"), "{msg}");
}

#[test]
fn changing_the_query_fails() {
    let spec = Spec::new("GET", "https://example.amazonaws.com/?a=1&b=2");
    let mut wire = sign_spec(&spec);
    wire.query.push_str("&c=3");
    assert!(is_mismatch(&wire.verify_at(T0)));
    let mut wire = sign_spec(&spec);
    wire.set_query_param("a", "2");
    assert!(is_mismatch(&wire.verify_at(T0)));
    // Equivalent encodings of the same parameters canonicalise the same.
    let mut wire = sign_spec(&Spec::new("GET", "https://example.amazonaws.com/?a=~&b=x%20y"));
    wire.query = "b=x+y&a=%7E".into();
    wire.verify_at(T0).unwrap();
}

#[test]
fn changing_a_presigned_parameter_fails() {
    let spec = Spec::new("GET", &format!("https://ec2.us-east-1.amazonaws.com/?{DESCRIBE}"))
        .presigned(900)
        .token(TOKEN);
    for (param, value) in [
        ("Action", "TerminateInstances"),
        ("X-Amz-Expires", "901"),
        ("X-Amz-Security-Token", "other"),
        ("X-Amz-SignedHeaders", "host%3Bx-amz-date"),
    ] {
        let mut wire = sign_spec(&spec);
        wire.set_query_param(param, value);
        let r = wire.verify_at(T0);
        let ok = if param == "X-Amz-SignedHeaders" {
            matches!(r, Err(SigV4Error::Malformed(_)))
        } else {
            is_mismatch(&r)
        };
        assert!(ok, "{param}: {r:?}");
    }
    let mut wire = sign_spec(&spec);
    wire.set_query_param("X-Amz-Signature", &"0".repeat(64));
    assert!(is_mismatch(&wire.verify_at(T0)));
}

#[test]
fn changing_the_session_token_header_fails() {
    let mut wire = sign_spec(&Spec::ec2_form(DESCRIBE).token(TOKEN));
    wire.set_header("x-amz-security-token", "FwoGZXIvYXdzEXAMPLE//other");
    assert!(is_mismatch(&wire.verify_at(T0)));
}

#[test]
fn clock_skew_window_is_fifteen_minutes_either_way() {
    let wire = sign_spec(&Spec::ec2_form(DESCRIBE));
    for delta in [-14 * 60, -MAX_SKEW_SECS, 0, 14 * 60, MAX_SKEW_SECS] {
        wire.verify_at(T0 + delta).unwrap_or_else(|e| panic!("{delta}: {e}"));
    }
    for delta in [-16 * 60, -MAX_SKEW_SECS - 1, MAX_SKEW_SECS + 1, 16 * 60, 86_400 * 365] {
        let r = wire.verify_at(T0 + delta);
        assert!(matches!(r, Err(SigV4Error::RequestExpired(_))), "{delta}: {r:?}");
    }
    let Err(e) = wire.verify_at(T0 + 16 * 60) else { panic!() };
    assert_eq!(e.aws_code(), ("RequestExpired", 400));
    assert_eq!(
        e.to_string(),
        "Signature expired: 20240102T030405Z is now earlier than 20240102T030505Z (20240102T032005Z - 15 min.)"
    );
    let Err(e) = wire.verify_at(T0 - 16 * 60) else { panic!() };
    assert!(e.to_string().starts_with("Signature not yet current"), "{e}");
    // Extreme clocks do not overflow.
    assert!(matches!(wire.verify_at(i64::MAX), Err(SigV4Error::RequestExpired(_))));
    assert!(matches!(wire.verify_at(i64::MIN), Err(SigV4Error::RequestExpired(_))));
}

#[test]
fn presigned_requests_honour_expires() {
    let wire = sign_spec(
        &Spec::new("GET", &format!("https://ec2.us-east-1.amazonaws.com/?{DESCRIBE}")).presigned(300),
    );
    for now in [T0, T0 + 299, T0 + 300, T0 - 14 * 60] {
        wire.verify_at(now).unwrap_or_else(|e| panic!("{now}: {e}"));
    }
    for now in [T0 + 301, T0 + 3600, T0 - 16 * 60, i64::MAX, i64::MIN] {
        let r = wire.verify_at(now);
        assert!(matches!(r, Err(SigV4Error::RequestExpired(_))), "{now}: {r:?}");
    }
    // A week is the longest validity, and it is not limited by the skew window.
    let week = sign_spec(
        &Spec::new("GET", "https://ec2.us-east-1.amazonaws.com/?Action=DescribeInstances").presigned(604_800),
    );
    week.verify_at(T0 + 604_800).unwrap();
    assert!(matches!(week.verify_at(T0 + 604_801), Err(SigV4Error::RequestExpired(_))));
}

#[test]
fn presigned_expires_out_of_range_is_malformed() {
    let spec = Spec::new("GET", "https://ec2.us-east-1.amazonaws.com/?Action=DescribeInstances");
    for expires in [0, 604_801] {
        let wire = sign_spec(&spec.clone().presigned(expires));
        let r = wire.verify_at(T0);
        assert!(matches!(r, Err(SigV4Error::Malformed(_))), "{expires}: {r:?}");
    }
}

#[test]
fn presigned_unsigned_payload_is_accepted_only_when_signed_so() {
    // aws-sigv4 presigns with the body hash; a server-side x-amz-content-sha256
    // of UNSIGNED-PAYLOAD then no longer matches what was signed.
    let spec = Spec::ec2_form(DESCRIBE).presigned(60);
    let mut wire = sign_spec(&spec);
    wire.set_header("x-amz-content-sha256", "UNSIGNED-PAYLOAD");
    assert!(is_mismatch(&wire.verify_at(T0)));
    // The header form never accepts UNSIGNED-PAYLOAD.
    let mut wire = sign_spec(&Spec::ec2_form(DESCRIBE));
    wire.set_header("x-amz-content-sha256", "UNSIGNED-PAYLOAD");
    assert_eq!(wire.verify_at(T0).unwrap_err(), SigV4Error::PayloadHashMismatch);
}

#[test]
fn presigned_unsigned_payload_verifies_with_or_without_the_header() {
    let mut spec = Spec::ec2_form(DESCRIBE).presigned(60);
    spec.unsigned_payload = true;
    let wire = sign_spec(&spec);
    wire.verify_at(T0).unwrap();
    let mut with_header = wire.clone();
    with_header.set_header("x-amz-content-sha256", "UNSIGNED-PAYLOAD");
    with_header.verify_at(T0).unwrap();
    // The body is not signed: that is what UNSIGNED-PAYLOAD means.
    let mut other_body = wire.clone();
    other_body.body = b"Action=TerminateInstances".to_vec();
    other_body.verify_at(T0).unwrap();
    // But everything else still is.
    let mut other_query = wire.clone();
    other_query.set_query_param("X-Amz-Expires", "61");
    assert!(is_mismatch(&other_query.verify_at(T0)));
}

#[test]
fn header_form_unsigned_payload_is_refused() {
    let mut spec = Spec::ec2_form(DESCRIBE);
    spec.unsigned_payload = true;
    spec.content_sha256 = true;
    let wire = sign_spec(&spec);
    assert_eq!(wire.headers.get("x-amz-content-sha256").unwrap(), "UNSIGNED-PAYLOAD");
    assert_eq!(wire.verify_at(T0).unwrap_err(), SigV4Error::PayloadHashMismatch);
}

#[test]
fn host_must_be_signed() {
    let wire = sign_spec(&Spec::ec2_form(DESCRIBE));
    let mut info = wire.parse().unwrap();
    info.signed_headers.retain(|h| h != "host");
    let r = imds_sigv4::verify(&wire.parts(), &info, SECRET, T0);
    let Err(SigV4Error::Malformed(msg)) = r else { panic!("{r:?}") };
    assert!(msg.contains("Host"), "{msg}");
}

#[test]
fn no_signature_is_missing_authentication_token() {
    let mut wire = sign_spec(&Spec::ec2_form(DESCRIBE));
    wire.headers.remove(http::header::AUTHORIZATION);
    let e = wire.verify_at(T0).unwrap_err();
    assert_eq!(e, SigV4Error::Missing);
    assert_eq!(e.aws_code(), ("MissingAuthenticationToken", 401));
}

#[test]
fn mismatch_error_shows_the_canonical_request_without_the_token() {
    let wire = sign_spec(&Spec::ec2_form(DESCRIBE).token(TOKEN));
    let r = wire.verify_with("wrong", T0);
    let Err(SigV4Error::SignatureMismatch { canonical_request: creq, string_to_sign: sts }) = r else {
        panic!("{r:?}")
    };
    assert!(!creq.contains(TOKEN), "{creq}");
    assert!(creq.contains("x-amz-security-token:** redacted **"), "{creq}");
    let info = wire.parse().unwrap();
    let full = canonical_request(&wire.parts(), &info, Dialect::Standard).unwrap();
    assert!(full.contains(TOKEN));
    assert_eq!(sts, string_to_sign(&info, &full));
    assert!(
        sts.starts_with("AWS4-HMAC-SHA256\n20240102T030405Z\n20240102/us-east-1/ec2/aws4_request\n"),
        "{sts}"
    );
    let e = SigV4Error::SignatureMismatch { canonical_request: creq, string_to_sign: sts };
    assert_eq!(e.aws_code(), ("SignatureDoesNotMatch", 403));
    assert!(!e.to_string().contains(TOKEN));
}

#[test]
fn canonical_request_of_an_ec2_call_is_as_documented() {
    let wire = sign_spec(&Spec::ec2_form(DESCRIBE));
    let info = wire.parse().unwrap();
    for dialect in Dialect::ALL {
        assert_eq!(
            canonical_request(&wire.parts(), &info, dialect).unwrap(),
            format!(
                "POST\n/\n\n\
                 content-type:application/x-www-form-urlencoded; charset=utf-8\n\
                 host:ec2.us-east-1.amazonaws.com\n\
                 x-amz-date:20240102T030405Z\n\n\
                 content-type;host;x-amz-date\n{}",
                sha256_hex(DESCRIBE.as_bytes())
            )
        );
    }
}

fn sha256_hex(data: &[u8]) -> String {
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, data)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
