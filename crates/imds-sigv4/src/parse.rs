//! Parsing the signature out of a request: the `Authorization` header form
//! and the query-string (presigned) form, into a [`SignatureInfo`].
//!
//! Parsing checks syntax only (sizes, shapes, duplicates, the algorithm, the
//! scope terminator); everything that needs the clock or the secret is in
//! [`verify`](crate::verify).

use http::HeaderMap;
use http::header::AUTHORIZATION;

use crate::amzdate;
use crate::canonical::{form_decode, raw_pairs};
use crate::consts::*;
use crate::error::{SigV4Error, truncate_for_message};
use crate::request::{RequestParts, SignatureInfo};

/// Parses the signature of a request, in either form.
///
/// * Header form: `Authorization: AWS4-HMAC-SHA256 Credential=AKID/YYYYMMDD/region/service/aws4_request,
///   SignedHeaders=a;b;c, Signature=hex` with the time in `X-Amz-Date` and an optional
///   `X-Amz-Security-Token` header.
/// * Query form: `X-Amz-Algorithm`, `X-Amz-Credential`, `X-Amz-Date`, `X-Amz-Expires`,
///   `X-Amz-SignedHeaders`, `X-Amz-Signature` and optional `X-Amz-Security-Token` parameters.
///
/// Errors: [`SigV4Error::Missing`] when the request carries neither,
/// [`SigV4Error::UnsupportedAlgorithm`] for another algorithm, otherwise
/// [`SigV4Error::Malformed`]. Never panics; sizes are bounded (see
/// [`consts`](crate::consts)) before anything is split or allocated per item.
pub fn parse(req: &RequestParts<'_>) -> Result<SignatureInfo, SigV4Error> {
    let mut auth_values = req.headers.get_all(AUTHORIZATION).iter();
    let auth = auth_values.next();
    if auth.is_some() && auth_values.next().is_some() {
        return Err(SigV4Error::malformed("The request carries more than one Authorization header."));
    }
    let query = QueryAuth::scan(req.query)?;
    match (auth, query.present()) {
        (Some(_), true) => Err(SigV4Error::malformed(
            "Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter or the \
             Authorization header should be specified.",
        )),
        (Some(value), false) => parse_header_form(value, req.headers),
        (None, true) => query.into_info(),
        (None, false) => Err(SigV4Error::Missing),
    }
}

fn is_ows(c: char) -> bool {
    c == ' ' || c == '\t'
}

fn parse_header_form(value: &http::HeaderValue, headers: &HeaderMap) -> Result<SignatureInfo, SigV4Error> {
    if value.len() > MAX_AUTHORIZATION_LEN {
        return Err(SigV4Error::malformed(format!(
            "The Authorization header is longer than {MAX_AUTHORIZATION_LEN} bytes."
        )));
    }
    let text = value
        .to_str()
        .map_err(|_| {
            SigV4Error::malformed("The Authorization header contains characters other than visible ASCII.")
        })?
        .trim_matches(is_ows);
    if text.is_empty() {
        return Err(SigV4Error::malformed("The Authorization header is empty."));
    }
    let (algorithm, rest) = match text.find(is_ows) {
        Some(i) => (&text[..i], &text[i..]),
        None => (text, ""),
    };
    if algorithm != ALGORITHM {
        return Err(SigV4Error::UnsupportedAlgorithm(truncate_for_message(algorithm)));
    }

    let (mut credential, mut signed_headers, mut signature) = (None, None, None);
    for component in rest.split(',') {
        let component = component.trim_matches(is_ows);
        if component.is_empty() {
            continue;
        }
        let Some((key, val)) = component.split_once('=') else {
            return Err(SigV4Error::malformed(format!(
                "Authorization header component is not of the form key=value: '{}'.",
                truncate_for_message(component)
            )));
        };
        let slot = match key {
            "Credential" => &mut credential,
            "SignedHeaders" => &mut signed_headers,
            "Signature" => &mut signature,
            _ => {
                return Err(SigV4Error::malformed(format!(
                    "Unknown Authorization header component '{}'.",
                    truncate_for_message(key)
                )));
            }
        };
        if slot.replace(val).is_some() {
            return Err(SigV4Error::malformed(format!(
                "The Authorization header has more than one '{key}' component."
            )));
        }
    }
    let amz_date = single_header(headers, HEADER_X_AMZ_DATE, 16)?;

    let mut missing = String::new();
    for (name, present) in [
        ("Credential", credential.is_some()),
        ("Signature", signature.is_some()),
        ("SignedHeaders", signed_headers.is_some()),
    ] {
        if !present {
            missing.push_str(&format!("Authorization header requires '{name}' parameter. "));
        }
    }
    if amz_date.is_none() {
        missing.push_str("Authorization header requires existence of a 'X-Amz-Date' header. ");
    }
    let (Some(credential), Some(signed_headers), Some(signature), Some(amz_date)) =
        (credential, signed_headers, signature, amz_date)
    else {
        return Err(SigV4Error::Malformed(missing.trim_end().to_owned()));
    };

    let session_token = single_header(headers, HEADER_X_AMZ_SECURITY_TOKEN, MAX_SESSION_TOKEN_LEN)?;
    build_info(credential, signed_headers, signature, amz_date, session_token.map(str::to_owned), false, None)
}

/// The single value of a header, as text; `None` if absent.
fn single_header<'h>(
    headers: &'h HeaderMap,
    name: &str,
    max_len: usize,
) -> Result<Option<&'h str>, SigV4Error> {
    let mut values = headers.get_all(name).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(SigV4Error::malformed(format!("The request carries more than one '{name}' header.")));
    }
    if value.len() > max_len {
        return Err(SigV4Error::malformed(format!("The '{name}' header is longer than {max_len} bytes.")));
    }
    let text = value
        .to_str()
        .map_err(|_| SigV4Error::malformed(format!("The '{name}' header is not visible ASCII.")))?;
    Ok(Some(text))
}

/// The signature parameters found in a query string.
#[derive(Default)]
struct QueryAuth {
    algorithm: Option<String>,
    credential: Option<String>,
    date: Option<String>,
    expires: Option<String>,
    signed_headers: Option<String>,
    signature: Option<String>,
    security_token: Option<String>,
    duplicate: Option<&'static str>,
}

impl QueryAuth {
    /// Scans the query for `X-Amz-*` signature parameters (names compared
    /// after form decoding, case-sensitively, as AWS does).
    fn scan(query: &str) -> Result<Self, SigV4Error> {
        if query.len() > MAX_QUERY_LEN {
            return Err(SigV4Error::malformed(format!(
                "The query string is longer than {MAX_QUERY_LEN} bytes."
            )));
        }
        let mut found = QueryAuth::default();
        for (n, (raw_name, raw_value)) in raw_pairs(query).enumerate() {
            if n >= MAX_QUERY_PARAMS {
                return Err(SigV4Error::malformed(format!(
                    "The query string has more than {MAX_QUERY_PARAMS} parameters."
                )));
            }
            if !raw_name.contains("Amz") && !raw_name.contains('%') {
                continue; // fast path: cannot be one of ours
            }
            let (name, slot) = match &*form_decode(raw_name) {
                PARAM_ALGORITHM => (PARAM_ALGORITHM, &mut found.algorithm),
                PARAM_CREDENTIAL => (PARAM_CREDENTIAL, &mut found.credential),
                PARAM_DATE => (PARAM_DATE, &mut found.date),
                PARAM_EXPIRES => (PARAM_EXPIRES, &mut found.expires),
                PARAM_SIGNED_HEADERS => (PARAM_SIGNED_HEADERS, &mut found.signed_headers),
                PARAM_SIGNATURE => (PARAM_SIGNATURE, &mut found.signature),
                PARAM_SECURITY_TOKEN => (PARAM_SECURITY_TOKEN, &mut found.security_token),
                _ => continue,
            };
            if slot.is_some() {
                found.duplicate.get_or_insert(name);
                continue;
            }
            *slot = Some(form_decode(raw_value).into_owned());
        }
        Ok(found)
    }

    /// Whether the query carries a signature at all.
    fn present(&self) -> bool {
        self.algorithm.is_some() || self.credential.is_some() || self.signature.is_some()
    }

    fn into_info(self) -> Result<SignatureInfo, SigV4Error> {
        if let Some(name) = self.duplicate {
            return Err(SigV4Error::malformed(format!(
                "The query parameter '{name}' is given more than once."
            )));
        }
        let Some(algorithm) = self.algorithm else {
            return Err(SigV4Error::malformed(format!(
                "A presigned request requires the '{PARAM_ALGORITHM}' query parameter."
            )));
        };
        if algorithm != ALGORITHM {
            return Err(SigV4Error::UnsupportedAlgorithm(truncate_for_message(&algorithm)));
        }
        let mut missing = Vec::new();
        for (name, present) in [
            (PARAM_CREDENTIAL, self.credential.is_some()),
            (PARAM_DATE, self.date.is_some()),
            (PARAM_EXPIRES, self.expires.is_some()),
            (PARAM_SIGNED_HEADERS, self.signed_headers.is_some()),
            (PARAM_SIGNATURE, self.signature.is_some()),
        ] {
            if !present {
                missing.push(name);
            }
        }
        let (Some(credential), Some(date), Some(expires), Some(signed_headers), Some(signature)) =
            (self.credential, self.date, self.expires, self.signed_headers, self.signature)
        else {
            return Err(SigV4Error::malformed(format!(
                "Query-string authentication requires the {} parameter(s).",
                missing.join(", ")
            )));
        };
        let expires_secs = parse_expires(&expires)?;
        if let Some(token) = &self.security_token
            && token.len() > MAX_SESSION_TOKEN_LEN
        {
            return Err(SigV4Error::malformed(format!(
                "The '{PARAM_SECURITY_TOKEN}' parameter is longer than {MAX_SESSION_TOKEN_LEN} bytes."
            )));
        }
        build_info(
            &credential,
            &signed_headers,
            &signature,
            &date,
            self.security_token,
            true,
            Some(expires_secs),
        )
    }
}

fn parse_expires(s: &str) -> Result<u64, SigV4Error> {
    let bad = || {
        SigV4Error::malformed(format!(
            "'{PARAM_EXPIRES}' must be a whole number of seconds, not '{}'.",
            truncate_for_message(s)
        ))
    };
    if s.is_empty() || s.len() > 19 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    s.parse().map_err(|_| bad())
}

fn build_info(
    credential: &str,
    signed_headers: &str,
    signature: &str,
    amz_date: &str,
    session_token: Option<String>,
    from_query: bool,
    expires_secs: Option<u64>,
) -> Result<SignatureInfo, SigV4Error> {
    let (access_key_id, date, region, service) = parse_credential(credential)?;
    let signed_headers = parse_signed_headers(signed_headers)?;
    if signature.len() != 64 || !signature.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(SigV4Error::malformed("The signature must be 64 hexadecimal digits."));
    }
    let timestamp_unix = amzdate::parse(amz_date).ok_or_else(|| {
        SigV4Error::malformed(format!(
            "Invalid X-Amz-Date '{}': must be ISO 8601 basic format YYYYMMDD'T'HHMMSS'Z'.",
            truncate_for_message(amz_date)
        ))
    })?;
    if session_token.as_deref() == Some("") {
        return Err(SigV4Error::malformed("The session token is empty."));
    }
    Ok(SignatureInfo {
        access_key_id: access_key_id.to_owned(),
        date: date.to_owned(),
        region: region.to_owned(),
        service: service.to_owned(),
        signed_headers,
        signature: signature.to_owned(),
        amz_date: amz_date.to_owned(),
        timestamp_unix,
        session_token,
        from_query,
        expires_secs,
    })
}

fn scope_part_ok(s: &str, max: usize) -> bool {
    !s.is_empty() && s.len() <= max && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

/// Splits `AKID/YYYYMMDD/region/service/aws4_request`.
fn parse_credential(s: &str) -> Result<(&str, &str, &str, &str), SigV4Error> {
    let mut parts = s.splitn(6, '/');
    let (Some(akid), Some(date), Some(region), Some(service), Some(terminator), None) =
        (parts.next(), parts.next(), parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(SigV4Error::malformed(format!(
            "Credential should be of the form AKID/YYYYMMDD/region/service/{TERMINATOR}, not '{}'.",
            truncate_for_message(s)
        )));
    };
    if terminator != TERMINATOR {
        return Err(SigV4Error::malformed(format!(
            "Credential should be scoped with a valid terminator: '{TERMINATOR}', not '{}'.",
            truncate_for_message(terminator)
        )));
    }
    if !scope_part_ok(akid, MAX_ACCESS_KEY_ID_LEN) {
        return Err(SigV4Error::malformed(
            "The access key ID in the credential is empty, too long or not alphanumeric.",
        ));
    }
    if date.len() != 8 || !date.bytes().all(|b| b.is_ascii_digit()) {
        return Err(SigV4Error::malformed(format!(
            "The credential scope date must be YYYYMMDD, not '{}'.",
            truncate_for_message(date)
        )));
    }
    if !scope_part_ok(region, MAX_SCOPE_PART_LEN) {
        return Err(SigV4Error::malformed(format!(
            "Invalid region in the credential scope: '{}'.",
            truncate_for_message(region)
        )));
    }
    if !scope_part_ok(service, MAX_SCOPE_PART_LEN) {
        return Err(SigV4Error::malformed(format!(
            "Invalid service in the credential scope: '{}'.",
            truncate_for_message(service)
        )));
    }
    Ok((akid, date, region, service))
}

fn parse_signed_headers(s: &str) -> Result<Vec<String>, SigV4Error> {
    // Count before splitting so a huge list costs no allocation.
    if s.bytes().filter(|&b| b == b';').count() >= MAX_SIGNED_HEADERS {
        return Err(SigV4Error::malformed(format!("More than {MAX_SIGNED_HEADERS} signed headers.")));
    }
    let names: Vec<String> = s.split(';').map(str::to_owned).collect();
    validate_signed_headers(&names)?;
    Ok(names)
}

/// Checks a signed header list: 1..=[`MAX_SIGNED_HEADERS`] names, each a
/// lower-case HTTP token, sorted and distinct (as every SDK sends them).
pub(crate) fn validate_signed_headers(names: &[String]) -> Result<(), SigV4Error> {
    if names.is_empty() || names.len() > MAX_SIGNED_HEADERS {
        return Err(SigV4Error::malformed(format!(
            "SignedHeaders must list 1 to {MAX_SIGNED_HEADERS} header names."
        )));
    }
    for name in names {
        let token = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"!#$%&'*+-.^_`|~".contains(&b));
        if !token {
            return Err(SigV4Error::malformed(format!(
                "Invalid signed header name '{}': SignedHeaders must be lower-case header names separated by ';'.",
                truncate_for_message(name)
            )));
        }
    }
    if names.windows(2).any(|w| w[0] >= w[1]) {
        return Err(SigV4Error::malformed("SignedHeaders must be sorted and must not repeat a name."));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    const AUTH: &str = "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/ec2/aws4_request, \
        SignedHeaders=host;x-amz-date, Signature=b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500";

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(http::HeaderName::from_bytes(k.as_bytes()).unwrap(), HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn parse_with(h: &HeaderMap, query: &str) -> Result<SignatureInfo, SigV4Error> {
        parse(&RequestParts { method: "GET", path: "/", query, headers: h, body: b"" })
    }

    #[test]
    fn parses_the_header_form() {
        let h = headers(&[("authorization", AUTH), ("x-amz-date", "20150830T123600Z"), ("host", "h")]);
        let info = parse_with(&h, "").unwrap();
        assert_eq!(info.access_key_id, "AKIDEXAMPLE");
        assert_eq!(info.date, "20150830");
        assert_eq!(info.region, "us-east-1");
        assert_eq!(info.service, "ec2");
        assert_eq!(info.signed_headers, ["host", "x-amz-date"]);
        assert_eq!(info.timestamp_unix, 1_440_938_160);
        assert_eq!(info.credential_scope(), "20150830/us-east-1/ec2/aws4_request");
        assert!(!info.from_query);
        assert_eq!(info.expires_secs, None);
        assert_eq!(info.session_token, None);
    }

    #[test]
    fn accepts_components_without_spaces_and_in_any_order() {
        let auth = "AWS4-HMAC-SHA256 Signature=b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500,\
            SignedHeaders=host,Credential=AKIDEXAMPLE/20150830/us-east-1/ec2/aws4_request";
        let h = headers(&[("authorization", auth), ("x-amz-date", "20150830T123600Z")]);
        assert_eq!(parse_with(&h, "").unwrap().signed_headers, ["host"]);
    }

    #[test]
    fn no_signature_at_all_is_missing() {
        assert_eq!(
            parse_with(&headers(&[("host", "h")]), "Action=DescribeInstances"),
            Err(SigV4Error::Missing)
        );
    }

    #[test]
    fn other_algorithms_are_unsupported() {
        for auth in [
            "AWS AKIDEXAMPLE:c2lnbmF0dXJl",
            "AWS4-ECDSA-P256-SHA256 Credential=x",
            "Bearer abc",
            "AWS4-HMAC-SHA256x",
        ] {
            let h = headers(&[("authorization", auth), ("x-amz-date", "20150830T123600Z")]);
            assert!(matches!(parse_with(&h, ""), Err(SigV4Error::UnsupportedAlgorithm(_))), "{auth}");
        }
        let h = headers(&[("host", "h")]);
        assert!(matches!(
            parse_with(&h, "X-Amz-Algorithm=AWS4-ECDSA-P256-SHA256"),
            Err(SigV4Error::UnsupportedAlgorithm(_))
        ));
    }

    #[test]
    fn missing_components_are_listed() {
        let h = headers(&[("authorization", "AWS4-HMAC-SHA256 ")]);
        let Err(SigV4Error::Malformed(msg)) = parse_with(&h, "") else { panic!() };
        for part in ["'Credential'", "'Signature'", "'SignedHeaders'", "'X-Amz-Date'"] {
            assert!(msg.contains(part), "{msg}");
        }
    }

    #[test]
    fn malformed_header_forms() {
        let cases = [
            AUTH.replace("aws4_request", "aws5_request"),
            AUTH.replace("/ec2/", "/"),
            AUTH.replace("/ec2/", "/ec2/x/"),
            AUTH.replace("20150830/", "2015083/"),
            AUTH.replace("host;x-amz-date", "x-amz-date;host"),
            AUTH.replace("host;x-amz-date", "host;host"),
            AUTH.replace("host;x-amz-date", "Host;x-amz-date"),
            AUTH.replace("host;x-amz-date", "host;;x-amz-date"),
            AUTH.replace("host;x-amz-date", ""),
            AUTH.replace("Signature=b97d", "Signature=zz7d"),
            AUTH.replace("Signature=b97d", "Signature=b97"),
            AUTH.replace("SignedHeaders=", "Signedheaders="),
            format!("{AUTH}, Signature=00"),
            format!("{AUTH}, junk"),
            AUTH.replace("AKIDEXAMPLE", ""),
            AUTH.replace("AKIDEXAMPLE", "AKID EXAMPLE"),
            AUTH.replace("us-east-1", "us east 1"),
            String::new(),
        ];
        for auth in cases {
            let h = headers(&[("authorization", &auth), ("x-amz-date", "20150830T123600Z")]);
            assert!(matches!(parse_with(&h, ""), Err(SigV4Error::Malformed(_))), "{auth}");
        }
    }

    #[test]
    fn bad_dates_and_duplicates_are_malformed() {
        for h in [
            headers(&[("authorization", AUTH), ("x-amz-date", "2015-08-30T12:36:00Z")]),
            headers(&[("authorization", AUTH)]),
            headers(&[
                ("authorization", AUTH),
                ("x-amz-date", "20150830T123600Z"),
                ("x-amz-date", "20150830T123600Z"),
            ]),
            headers(&[("authorization", AUTH), ("authorization", AUTH), ("x-amz-date", "20150830T123600Z")]),
            headers(&[
                ("authorization", AUTH),
                ("x-amz-date", "20150830T123600Z"),
                ("x-amz-security-token", ""),
            ]),
        ] {
            assert!(matches!(parse_with(&h, ""), Err(SigV4Error::Malformed(_))), "{h:?}");
        }
    }

    #[test]
    fn size_bounds_are_enforced_before_parsing() {
        let long = format!("{AUTH}{}", " ".repeat(MAX_AUTHORIZATION_LEN));
        let h = headers(&[("authorization", &long), ("x-amz-date", "20150830T123600Z")]);
        assert!(matches!(parse_with(&h, ""), Err(SigV4Error::Malformed(_))));

        let many: Vec<String> = (0..=MAX_SIGNED_HEADERS).map(|i| format!("h{i:03}")).collect();
        let auth = AUTH.replace("host;x-amz-date", &many.join(";"));
        let h = headers(&[("authorization", &auth), ("x-amz-date", "20150830T123600Z")]);
        let Err(SigV4Error::Malformed(msg)) = parse_with(&h, "") else { panic!() };
        assert!(msg.contains("More than"), "{msg}");

        let h = headers(&[("host", "h")]);
        assert!(matches!(parse_with(&h, &"a&".repeat(MAX_QUERY_PARAMS + 1)), Err(SigV4Error::Malformed(_))));
        assert!(matches!(parse_with(&h, &"a".repeat(MAX_QUERY_LEN + 1)), Err(SigV4Error::Malformed(_))));
    }

    const QUERY: &str = "Action=DescribeInstances&X-Amz-Algorithm=AWS4-HMAC-SHA256\
        &X-Amz-Credential=AKIDEXAMPLE%2F20150830%2Fus-east-1%2Fec2%2Faws4_request&X-Amz-Date=20150830T123600Z\
        &X-Amz-Expires=900&X-Amz-SignedHeaders=host\
        &X-Amz-Security-Token=tok%2Ben%2F%3D\
        &X-Amz-Signature=86012e2c9ad4d77369f5d81c11f75158aae4f895a085212cc6d3f923d300bed5";

    #[test]
    fn parses_the_query_form() {
        let h = headers(&[("host", "h")]);
        let info = parse_with(&h, QUERY).unwrap();
        assert!(info.from_query);
        assert_eq!(info.expires_secs, Some(900));
        assert_eq!(info.session_token.as_deref(), Some("tok+en/="));
        assert_eq!(info.service, "ec2");
        assert_eq!(info.signed_headers, ["host"]);
        assert!(!format!("{info:?}").contains("tok+en"), "Debug must redact the token");
    }

    #[test]
    fn malformed_query_forms() {
        let h = headers(&[("host", "h")]);
        for q in [
            QUERY.replace("&X-Amz-Expires=900", ""),
            QUERY.replace("X-Amz-Expires=900", "X-Amz-Expires=-1"),
            QUERY.replace("X-Amz-Expires=900", "X-Amz-Expires=99999999999999999999"),
            QUERY.replace("&X-Amz-Date=20150830T123600Z", ""),
            QUERY.replace("X-Amz-Algorithm=AWS4-HMAC-SHA256", "X-Amz-Foo=1"),
            format!("{QUERY}&X-Amz-Date=20150830T123600Z"),
            QUERY.replace("%2Faws4_request", "%2Faws4"),
        ] {
            assert!(matches!(parse_with(&h, &q), Err(SigV4Error::Malformed(_))), "{q}");
        }
    }

    #[test]
    fn both_forms_at_once_are_rejected() {
        let h = headers(&[("authorization", AUTH), ("x-amz-date", "20150830T123600Z")]);
        assert!(matches!(parse_with(&h, QUERY), Err(SigV4Error::Malformed(_))));
    }
}
