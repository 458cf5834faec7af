//! The canonical request and the string to sign.
//!
//! Two [`Dialect`]s exist because the SDKs do not canonicalise identically
//! and the signature a client computed is the ground truth:
//!
//! | step | [`Dialect::Standard`] (AWS docs, aws-sigv4 / Rust SDK) | [`Dialect::Botocore`] (Python SDK, AWS CLI) |
//! | --- | --- | --- |
//! | path | remove `.`/`..`/empty segments; a trailing `/`, `/.` or `/..` keeps a trailing `/`; then encode again (`%` → `%25`) | same, but the trailing `/` is kept only when the path ends in `/` and is not reduced to the root |
//! | query | form-decode every name and value (`+` is a space), re-encode with the unreserved set, sort by name then value | the raw `name=value` pairs as sent, sorted, empty pairs kept |
//! | header values | trim spaces, collapse runs of spaces | split on any Unicode (Python) whitespace, join with one space |
//!
//! For requests the SDKs send normally (EC2 Query and Lightsail JSON
//! requests: path `/`, no query or a canonically encoded one, plain header
//! values) both dialects give the same bytes.
//!
//! Canonicalisation maps several wire forms to one (that is how SigV4 is
//! defined): `a=%7E` and `a=~`, `a=x+y` and `a=x%20y`, invalid UTF-8 escapes
//! (decoded lossily), `/a/../b` and `/b`, `a  b` and `a b` in a header value.
//! A verified request therefore means what was signed only if the caller
//! reads it the same way: form-decode the query (as `form_urlencoded` does),
//! and route on the normalised path (or accept only `/`).

use std::borrow::Cow;

use aws_lc_rs::digest;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};

use crate::consts::*;
use crate::error::SigV4Error;
use crate::request::{RequestParts, SignatureInfo};

/// Everything but the unreserved characters `A-Z a-z 0-9 - _ . ~`.
const ENCODE_QUERY: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');

/// As [`ENCODE_QUERY`], but `/` separates path segments and stays.
const ENCODE_PATH: &AsciiSet = &ENCODE_QUERY.remove(b'/');

/// Which SDK family's canonicalisation rules to apply (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Dialect {
    /// The rules of the AWS documentation as implemented by the `aws-sigv4`
    /// crate (and the other SDKs built on the same test suite).
    Standard,
    /// The rules of botocore, used by the AWS CLI and boto3.
    Botocore,
}

impl Dialect {
    /// Every dialect, the standard one first.
    pub const ALL: [Dialect; 2] = [Dialect::Standard, Dialect::Botocore];
}

/// The canonical request of `req` for the signature described by `info`.
///
/// The payload hash is the `x-amz-content-sha256` header when the request has
/// one, else the hex SHA-256 of the body. ([`verify`](crate::verify) also
/// tries `UNSIGNED-PAYLOAD` for presigned requests.)
///
/// Errors ([`SigV4Error::Malformed`]) when a signed header is absent from the
/// request or not UTF-8, or a size bound is exceeded.
///
/// The result contains the session token when `x-amz-security-token` is
/// signed: do not log it as is.
pub fn canonical_request(
    req: &RequestParts<'_>,
    info: &SignatureInfo,
    dialect: Dialect,
) -> Result<String, SigV4Error> {
    let payload = match single_header_bytes(req, HEADER_X_AMZ_CONTENT_SHA256)? {
        Some(v) => String::from_utf8_lossy(v).into_owned(),
        None => hex_sha256(req.body),
    };
    build(req, info, dialect, &payload, false)
}

/// The string to sign for a canonical request:
/// `AWS4-HMAC-SHA256\n<X-Amz-Date>\n<scope>\n<hex SHA-256 of the canonical request>`.
pub fn string_to_sign(info: &SignatureInfo, canonical_request: &str) -> String {
    format!(
        "{ALGORITHM}\n{}\n{}\n{}",
        info.amz_date,
        info.credential_scope(),
        hex_sha256(canonical_request.as_bytes())
    )
}

/// Lower-case hex of the SHA-256 of `data`.
pub(crate) fn hex_sha256(data: &[u8]) -> String {
    hex(digest::digest(&digest::SHA256, data).as_ref())
}

/// Lower-case hex.
pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    s
}

/// The single value of a header, raw; `None` if absent.
pub(crate) fn single_header_bytes<'h>(
    req: &RequestParts<'h>,
    name: &str,
) -> Result<Option<&'h [u8]>, SigV4Error> {
    let mut values = req.headers.get_all(name).iter();
    let first = values.next();
    if values.next().is_some() {
        return Err(SigV4Error::malformed(format!("The request carries more than one '{name}' header.")));
    }
    Ok(first.map(|v| v.as_bytes()))
}

/// Builds the canonical request with an explicit payload hash; `redact`
/// replaces the session token value (for error messages).
pub(crate) fn build(
    req: &RequestParts<'_>,
    info: &SignatureInfo,
    dialect: Dialect,
    payload_hash: &str,
    redact: bool,
) -> Result<String, SigV4Error> {
    let uri = canonical_uri(req.path, dialect)?;
    let query = canonical_query(req.query, dialect, info.from_query)?;
    let mut out = String::with_capacity(128 + uri.len() + query.len());
    out.push_str(req.method);
    out.push('\n');
    out.push_str(&uri);
    out.push('\n');
    out.push_str(&query);
    out.push('\n');
    for name in &info.signed_headers {
        out.push_str(name);
        out.push(':');
        if redact && name == HEADER_X_AMZ_SECURITY_TOKEN {
            out.push_str("** redacted **");
        } else {
            canonical_header_value(req, name, dialect, &mut out)?;
        }
        out.push('\n');
    }
    out.push('\n');
    out.push_str(&info.signed_headers.join(";"));
    out.push('\n');
    out.push_str(payload_hash);
    Ok(out)
}

/// The canonical URI: normalised path, percent-encoded once more.
pub(crate) fn canonical_uri(path: &str, dialect: Dialect) -> Result<String, SigV4Error> {
    if path.len() > MAX_PATH_LEN {
        return Err(SigV4Error::malformed(format!("The request path is longer than {MAX_PATH_LEN} bytes.")));
    }
    let normalised = match dialect {
        Dialect::Standard => normalize_path_standard(path),
        Dialect::Botocore => Cow::Owned(normalize_path_botocore(path)),
    };
    Ok(utf8_percent_encode(&normalised, ENCODE_PATH).to_string())
}

/// aws-sigv4's `normalize_uri_path`.
fn normalize_path_standard(path: &str) -> Cow<'_, str> {
    if path.is_empty() {
        return Cow::Borrowed("/");
    }
    let rooted = if path.starts_with('/') { Cow::Borrowed(path) } else { Cow::Owned(format!("/{path}")) };
    if !(rooted.contains('.') || rooted.contains("//")) {
        return rooted;
    }
    let mut segments: Vec<&str> = Vec::new();
    for segment in rooted.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            other => segments.push(other),
        }
    }
    let mut out = String::with_capacity(rooted.len() + 1);
    out.push('/');
    out.push_str(&segments.join("/"));
    let trailing = ["/", "/.", "/./", "/..", "/../"].iter().any(|end| rooted.ends_with(end));
    if trailing && !out.ends_with('/') {
        out.push('/');
    }
    Cow::Owned(out)
}

/// botocore's `normalize_url_path` / `remove_dot_segments`.
fn normalize_path_botocore(path: &str) -> String {
    if path.is_empty() {
        return "/".to_owned();
    }
    let mut segments: Vec<&str> = Vec::new();
    for segment in path.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            other => segments.push(other),
        }
    }
    let first = if path.starts_with('/') { "/" } else { "" };
    let last = if path.ends_with('/') && !segments.is_empty() { "/" } else { "" };
    format!("{first}{}{last}", segments.join("/"))
}

/// The `name=value` pairs of a raw query string, empty pairs skipped, a
/// missing `=` giving an empty value (as `application/x-www-form-urlencoded`).
pub(crate) fn raw_pairs(query: &str) -> impl Iterator<Item = (&str, &str)> {
    query.split('&').filter(|p| !p.is_empty()).map(|p| p.split_once('=').unwrap_or((p, "")))
}

/// Form decoding: `+` is a space, `%XX` a byte (invalid escapes stay as
/// they are), invalid UTF-8 replaced, as the `form_urlencoded` crate does.
pub(crate) fn form_decode(s: &str) -> Cow<'_, str> {
    if !s.contains(['+', '%']) {
        return Cow::Borrowed(s);
    }
    let spaced = s.replace('+', " ");
    Cow::Owned(percent_decode_str(&spaced).decode_utf8_lossy().into_owned())
}

/// The canonical query string; `X-Amz-Signature` is left out for the query form.
pub(crate) fn canonical_query(query: &str, dialect: Dialect, from_query: bool) -> Result<String, SigV4Error> {
    if query.len() > MAX_QUERY_LEN {
        return Err(SigV4Error::malformed(format!("The query string is longer than {MAX_QUERY_LEN} bytes.")));
    }
    if query.split('&').take(MAX_QUERY_PARAMS + 1).count() > MAX_QUERY_PARAMS {
        return Err(SigV4Error::malformed(format!(
            "The query string has more than {MAX_QUERY_PARAMS} parameters."
        )));
    }
    let mut pairs: Vec<(Cow<'_, str>, Cow<'_, str>)> = match dialect {
        Dialect::Standard => raw_pairs(query)
            .map(|(k, v)| (form_decode(k), form_decode(v)))
            .filter(|(k, _)| !(from_query && k == PARAM_SIGNATURE))
            .map(|(k, v)| {
                (
                    Cow::Owned(utf8_percent_encode(&k, ENCODE_QUERY).to_string()),
                    Cow::Owned(utf8_percent_encode(&v, ENCODE_QUERY).to_string()),
                )
            })
            .collect(),
        Dialect::Botocore if query.is_empty() => Vec::new(),
        Dialect::Botocore => query
            .split('&')
            .map(|p| p.split_once('=').unwrap_or((p, "")))
            .filter(|(k, _)| !(from_query && *k == PARAM_SIGNATURE))
            .map(|(k, v)| (Cow::Borrowed(k), Cow::Borrowed(v)))
            .collect(),
    };
    pairs.sort();
    let mut out = String::with_capacity(query.len() + 16);
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        out.push_str(k);
        out.push('=');
        out.push_str(v);
    }
    Ok(out)
}

/// Appends the canonical value of signed header `name`: every value
/// normalised, joined with `,`.
fn canonical_header_value(
    req: &RequestParts<'_>,
    name: &str,
    dialect: Dialect,
    out: &mut String,
) -> Result<(), SigV4Error> {
    let mut any = false;
    for (i, value) in req.headers.get_all(name).iter().enumerate() {
        any = true;
        if i > 0 {
            out.push(',');
        }
        let text = std::str::from_utf8(value.as_bytes())
            .map_err(|_| SigV4Error::malformed(format!("The signed header '{name}' is not valid UTF-8.")))?;
        match dialect {
            Dialect::Standard => trim_all_spaces(text, out),
            Dialect::Botocore => {
                for (j, word) in text.split(is_python_whitespace).filter(|w| !w.is_empty()).enumerate() {
                    if j > 0 {
                        out.push(' ');
                    }
                    out.push_str(word);
                }
            }
        }
    }
    if !any {
        return Err(SigV4Error::malformed(format!("The signed header '{name}' is not in the request.")));
    }
    Ok(())
}

/// aws-sigv4's `trim_all`: spaces (only spaces) trimmed at both ends, runs of
/// spaces inside collapsed to one.
fn trim_all_spaces(text: &str, out: &mut String) {
    let mut previous_space = false;
    for c in text.trim_matches(' ').chars() {
        if c == ' ' {
            if !previous_space {
                out.push(' ');
            }
            previous_space = true;
        } else {
            out.push(c);
            previous_space = false;
        }
    }
}

/// What Python's `str.split()` splits on: Unicode `White_Space` plus the
/// information separators U+001C..=U+001F.
fn is_python_whitespace(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_path_normalisation_matches_aws_sigv4() {
        // Cases from aws-sigv4's uri_path_normalization tests.
        for (input, want) in [
            ("", "/"),
            ("/", "/"),
            ("foo", "/foo"),
            ("/foo/bar/", "/foo/bar/"),
            ("./", "/"),
            ("./foo", "/foo"),
            ("../foo", "/foo"),
            ("/.", "/"),
            ("/./foo", "/foo"),
            ("/foo/bar/.", "/foo/bar/"),
            ("/foo/./bar/./", "/foo/bar/"),
            ("/..", "/"),
            ("/foo/bar/..", "/foo/"),
            ("/foo/../bar/../", "/"),
            (".", "/"),
            ("..", "/"),
            ("/a/b/c/./../../g", "/a/g"),
            ("mid/content=5/../6", "/mid/6"),
            ("//foo//", "/foo/"),
            ("/foo%2F.%2Fbar", "/foo%2F.%2Fbar"),
        ] {
            assert_eq!(normalize_path_standard(input), want, "{input:?}");
        }
    }

    #[test]
    fn botocore_path_normalisation_matches_remove_dot_segments() {
        // Expected values computed with botocore.utils.normalize_url_path.
        for (input, want) in [
            ("", "/"),
            ("/", "/"),
            ("/foo/bar/", "/foo/bar/"),
            ("/foo/bar/.", "/foo/bar"),
            ("/foo/bar/..", "/foo"),
            ("/foo/../bar/../", "/"),
            ("/a/b/c/./../../g", "/a/g"),
            ("//foo//", "/foo/"),
            ("/..", "/"),
        ] {
            assert_eq!(normalize_path_botocore(input), want, "{input:?}");
        }
    }

    #[test]
    fn path_is_encoded_again() {
        assert_eq!(canonical_uri("/example%20space/", Dialect::Standard).unwrap(), "/example%2520space/");
        assert_eq!(canonical_uri("/ሴ", Dialect::Standard).unwrap(), "/%E1%88%B4");
        assert_eq!(canonical_uri("/a b/~x/@:!", Dialect::Botocore).unwrap(), "/a%20b/~x/%40%3A%21");
        assert!(canonical_uri(&"/a".repeat(MAX_PATH_LEN), Dialect::Standard).is_err());
    }

    #[test]
    fn standard_query_decodes_encodes_and_sorts() {
        let q = "b=2&a=%7e&a=1&c&d=x+y&&e=%2f%zz&%E1%88%B4=bar";
        assert_eq!(
            canonical_query(q, Dialect::Standard, false).unwrap(),
            "%E1%88%B4=bar&a=1&a=~&b=2&c=&d=x%20y&e=%2F%25zz"
        );
        assert_eq!(canonical_query("X-Amz-Signature=abc&a=1", Dialect::Standard, true).unwrap(), "a=1");
        assert_eq!(
            canonical_query("X-Amz-Signature=abc&a=1", Dialect::Standard, false).unwrap(),
            "X-Amz-Signature=abc&a=1"
        );
        assert_eq!(canonical_query("", Dialect::Standard, false).unwrap(), "");
    }

    #[test]
    fn botocore_query_keeps_raw_pairs() {
        assert_eq!(
            canonical_query("b=%7e&a=x+y&c=%2f", Dialect::Botocore, false).unwrap(),
            "a=x+y&b=%7e&c=%2f"
        );
        assert_eq!(canonical_query("a&&b=1", Dialect::Botocore, false).unwrap(), "=&a=&b=1");
        assert_eq!(canonical_query("", Dialect::Botocore, false).unwrap(), "");
    }

    #[test]
    fn query_bounds() {
        assert!(canonical_query(&"&".repeat(MAX_QUERY_PARAMS + 1), Dialect::Standard, false).is_err());
    }

    #[test]
    fn header_values_per_dialect() {
        let mut s = String::new();
        trim_all_spaces("  a   b\t\tc  ", &mut s);
        assert_eq!(s, "a b\t\tc");
        let words: Vec<&str> =
            "a\tb   c\u{a0}d\u{1c}e  ü".split(is_python_whitespace).filter(|w| !w.is_empty()).collect();
        assert_eq!(words, ["a", "b", "c", "d", "e", "ü"]);
    }

    #[test]
    fn python_whitespace_is_exactly_pythons() {
        // python3 -c "import sys;print([hex(c) for c in range(sys.maxunicode+1) if len(('a'+chr(c)+'b').split())==2])"
        let python: Vec<u32> = vec![
            0x9, 0xa, 0xb, 0xc, 0xd, 0x1c, 0x1d, 0x1e, 0x1f, 0x20, 0x85, 0xa0, 0x1680, 0x2000, 0x2001,
            0x2002, 0x2003, 0x2004, 0x2005, 0x2006, 0x2007, 0x2008, 0x2009, 0x200a, 0x2028, 0x2029, 0x202f,
            0x205f, 0x3000,
        ];
        let ours: Vec<u32> = (0..=0x10ffff_u32)
            .filter_map(char::from_u32)
            .filter(|&c| is_python_whitespace(c))
            .map(u32::from)
            .collect();
        assert_eq!(ours, python);
    }

    #[test]
    fn form_decode_matches_form_urlencoded() {
        assert_eq!(form_decode("a+b%20c"), "a b c");
        assert_eq!(form_decode("%zz%4"), "%zz%4");
        assert_eq!(form_decode("%ff"), "\u{fffd}");
        assert!(matches!(form_decode("plain"), Cow::Borrowed(_)));
    }

    #[test]
    fn hex_is_lower_case() {
        assert_eq!(hex(&[0x00, 0xab, 0xff]), "00abff");
        assert_eq!(hex_sha256(b""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    }
}
