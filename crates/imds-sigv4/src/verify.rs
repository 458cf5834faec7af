//! Checking a parsed signature against the request, the clock and the secret.

use aws_lc_rs::{constant_time, hmac};

use crate::amzdate;
use crate::canonical::{self, Dialect, hex_sha256, single_header_bytes};
use crate::consts::*;
use crate::error::{SigV4Error, truncate_for_message};
use crate::parse::validate_signed_headers;
use crate::request::{RequestParts, SignatureInfo};

/// Verifies the signature of `req`, parsed into `info` by
/// [`parse`](crate::parse), with `secret_access_key`, the secret of
/// `info.access_key_id`. `now_unix` is the server clock in Unix seconds.
///
/// In order:
/// 1. shape: `X-Amz-Date` consistent with `timestamp_unix`; the credential
///    scope date equal to its date part; signed headers well formed and
///    including `host` (and `x-amz-date` when that header is sent in the
///    header form);
/// 2. time: header form within ±[`MAX_SKEW_SECS`] of `now_unix`; query form
///    with `X-Amz-Expires` in `1..=`[`MAX_EXPIRES_SECS`], not expired
///    (`now <= date + expires`) and not dated more than `MAX_SKEW_SECS` ahead;
/// 3. payload: an `x-amz-content-sha256` header must equal the body's hash (a
///    presigned request may instead say `UNSIGNED-PAYLOAD`);
/// 4. signature: canonical request → string to sign → signing key → HMAC,
///    compared in constant time. Each [`Dialect`] is tried (and, for a
///    presigned request without `x-amz-content-sha256`, both the body hash and
///    `UNSIGNED-PAYLOAD`): a match under any is accepted, since each is what
///    some SDK signs and each is a deterministic function of the request.
///
/// The session token is not checked here: the caller validates
/// `info.session_token` together with the access key.
pub fn verify(
    req: &RequestParts<'_>,
    info: &SignatureInfo,
    secret_access_key: &str,
    now_unix: i64,
) -> Result<(), SigV4Error> {
    check_shape(req, info)?;
    check_time(info, now_unix)?;
    let payloads = payload_candidates(req, info)?;
    let provided = decode_signature(&info.signature)?;
    let key = signing_key(secret_access_key, info);

    let mut tried: Vec<String> = Vec::with_capacity(4);
    for dialect in Dialect::ALL {
        for payload in &payloads {
            let creq = canonical::build(req, info, dialect, payload, false)?;
            if tried.contains(&creq) {
                continue;
            }
            let sts = canonical::string_to_sign(info, &creq);
            let tag = hmac::sign(&key, sts.as_bytes());
            if constant_time::verify_slices_are_equal(tag.as_ref(), &provided).is_ok() {
                return Ok(());
            }
            tried.push(creq);
        }
    }

    let primary = payloads.first().map(String::as_str).unwrap_or(UNSIGNED_PAYLOAD);
    let creq = canonical::build(req, info, Dialect::Standard, primary, false)?;
    Err(SigV4Error::SignatureMismatch {
        string_to_sign: canonical::string_to_sign(info, &creq),
        canonical_request: canonical::build(req, info, Dialect::Standard, primary, true)?,
    })
}

fn check_shape(req: &RequestParts<'_>, info: &SignatureInfo) -> Result<(), SigV4Error> {
    if amzdate::parse(&info.amz_date) != Some(info.timestamp_unix) {
        return Err(SigV4Error::malformed(format!(
            "Invalid X-Amz-Date '{}': must be ISO 8601 basic format YYYYMMDD'T'HHMMSS'Z'.",
            truncate_for_message(&info.amz_date)
        )));
    }
    let date_part = info.amz_date.get(..8).unwrap_or_default();
    if info.date != date_part {
        return Err(SigV4Error::malformed(format!(
            "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: \
             '{}' != '{date_part}', from '{}'.",
            truncate_for_message(&info.date),
            info.amz_date
        )));
    }
    validate_signed_headers(&info.signed_headers)?;
    let signed = |name: &str| info.signed_headers.iter().any(|h| h == name);
    if !signed("host") {
        return Err(SigV4Error::malformed("'Host' must be a 'SignedHeader' in the AWS Authorization."));
    }
    if !info.from_query && req.headers.contains_key(HEADER_X_AMZ_DATE) && !signed(HEADER_X_AMZ_DATE) {
        return Err(SigV4Error::malformed("'X-Amz-Date' must be a 'SignedHeader' in the AWS Authorization."));
    }
    Ok(())
}

fn check_time(info: &SignatureInfo, now_unix: i64) -> Result<(), SigV4Error> {
    let signed_at = i128::from(info.timestamp_unix);
    let now = i128::from(now_unix);
    let skew = i128::from(MAX_SKEW_SECS);
    let now_text = || amzdate::format(now_unix).unwrap_or_else(|| now_unix.to_string());
    let shifted = |by: i128| {
        i64::try_from(now + by).ok().and_then(amzdate::format).unwrap_or_else(|| (now + by).to_string())
    };
    if !info.from_query {
        if signed_at < now - skew {
            return Err(SigV4Error::RequestExpired(format!(
                "Signature expired: {} is now earlier than {} ({} - 15 min.)",
                info.amz_date,
                shifted(-skew),
                now_text()
            )));
        }
        if signed_at > now + skew {
            return Err(SigV4Error::RequestExpired(format!(
                "Signature not yet current: {} is still later than {} ({} + 15 min.)",
                info.amz_date,
                shifted(skew),
                now_text()
            )));
        }
        return Ok(());
    }
    let expires = match info.expires_secs {
        Some(e) if (1..=MAX_EXPIRES_SECS).contains(&e) => i128::from(e),
        _ => {
            return Err(SigV4Error::malformed(format!(
                "'{PARAM_EXPIRES}' must be between 1 and {MAX_EXPIRES_SECS} seconds."
            )));
        }
    };
    if signed_at > now + skew {
        return Err(SigV4Error::RequestExpired(format!(
            "Request is not valid yet: {} is later than {} ({} + 15 min.)",
            info.amz_date,
            shifted(skew),
            now_text()
        )));
    }
    if now > signed_at + expires {
        return Err(SigV4Error::RequestExpired(format!(
            "Request has expired: signed at {} for {expires} seconds, now {}.",
            info.amz_date,
            now_text()
        )));
    }
    Ok(())
}

/// The payload hashes a signature may have used, most likely first.
fn payload_candidates(req: &RequestParts<'_>, info: &SignatureInfo) -> Result<Vec<String>, SigV4Error> {
    let body_hash = hex_sha256(req.body);
    match single_header_bytes(req, HEADER_X_AMZ_CONTENT_SHA256)? {
        Some(v) if v == body_hash.as_bytes() => Ok(vec![body_hash]),
        Some(v) if info.from_query && v == UNSIGNED_PAYLOAD.as_bytes() => {
            Ok(vec![UNSIGNED_PAYLOAD.to_owned()])
        }
        Some(_) => Err(SigV4Error::PayloadHashMismatch),
        None if info.from_query => Ok(vec![body_hash, UNSIGNED_PAYLOAD.to_owned()]),
        None => Ok(vec![body_hash]),
    }
}

fn decode_signature(hex: &str) -> Result<[u8; 32], SigV4Error> {
    let bad = || SigV4Error::malformed("The signature must be 64 hexadecimal digits.");
    let bytes = hex.as_bytes();
    if bytes.len() != 64 {
        return Err(bad());
    }
    let nibble = |c: u8| -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        }
    };
    let mut out = [0u8; 32];
    for (byte, pair) in out.iter_mut().zip(bytes.chunks_exact(2)) {
        *byte = (nibble(pair[0]).ok_or_else(bad)? << 4) | nibble(pair[1]).ok_or_else(bad)?;
    }
    Ok(out)
}

/// `kSigning = HMAC(HMAC(HMAC(HMAC("AWS4" + secret, date), region), service), "aws4_request")`.
fn signing_key(secret: &str, info: &SignatureInfo) -> hmac::Key {
    let mut k_secret = Vec::with_capacity(4 + secret.len());
    k_secret.extend_from_slice(b"AWS4");
    k_secret.extend_from_slice(secret.as_bytes());
    let mut key = hmac::Key::new(hmac::HMAC_SHA256, &k_secret);
    for part in [info.date.as_str(), &info.region, &info.service, TERMINATOR] {
        let tag = hmac::sign(&key, part.as_bytes());
        key = hmac::Key::new(hmac::HMAC_SHA256, tag.as_ref());
    }
    key
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::canonical::hex;

    #[test]
    fn signing_key_and_mac_match_the_aws_test_suite() {
        // aws-signing-test-suite v4/get-vanilla-query-order-key-case: string to sign and signature.
        let info = SignatureInfo {
            access_key_id: "AKIDEXAMPLE".into(),
            date: "20150830".into(),
            region: "us-east-1".into(),
            service: "service".into(),
            signed_headers: vec!["host".into()],
            signature: "0".repeat(64),
            amz_date: "20150830T123600Z".into(),
            timestamp_unix: 1_440_938_160,
            session_token: None,
            from_query: false,
            expires_secs: None,
        };
        let key = signing_key("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", &info);
        let sts = "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\n\
                   816cd5b414d056048ba4f7c5386d6e0533120fb1fcfa93762cf0fc39e2cf19e0";
        let tag = hmac::sign(&key, sts.as_bytes());
        assert_eq!(hex(tag.as_ref()), "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500");
    }

    #[test]
    fn signature_hex_decoding() {
        assert_eq!(decode_signature(&"aB".repeat(32)).unwrap(), [0xab; 32]);
        assert!(decode_signature(&"g0".repeat(32)).is_err());
        assert!(decode_signature("00").is_err());
        assert!(decode_signature(&"é".repeat(32)).is_err());
    }
}
