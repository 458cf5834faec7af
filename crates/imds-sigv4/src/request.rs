//! The two data types of the API: what the verifier reads of a request, and
//! the parsed (not yet verified) signature.

use std::fmt;

use crate::consts::TERMINATOR;

/// What the verifier needs of a request, borrowed from it.
///
/// `path` is the raw request path as received (still percent-encoded, not
/// normalised), `query` the raw query string without `?` (empty if none),
/// `body` the full body bytes (the caller bounds its size before reading it).
///
/// `headers` must contain `host`: with HTTP/2, insert the `:authority` value
/// as `host` before verifying, since the SDKs sign it under that name.
#[derive(Debug, Clone, Copy)]
pub struct RequestParts<'a> {
    /// The request method as sent (`POST`, `GET`...).
    pub method: &'a str,
    /// The raw, still percent-encoded request path.
    pub path: &'a str,
    /// The raw query string, without the leading `?`.
    pub query: &'a str,
    /// All request headers.
    pub headers: &'a http::HeaderMap,
    /// The complete request body.
    pub body: &'a [u8],
}

impl<'a> RequestParts<'a> {
    /// Borrows method, path, query and headers from request parts, with the
    /// body read separately.
    pub fn new(parts: &'a http::request::Parts, body: &'a [u8]) -> Self {
        RequestParts {
            method: parts.method.as_str(),
            path: parts.uri.path(),
            query: parts.uri.query().unwrap_or(""),
            headers: &parts.headers,
            body,
        }
    }

    /// Borrows everything from a request whose body is already in memory.
    pub fn from_request<B: AsRef<[u8]>>(req: &'a http::Request<B>) -> Self {
        RequestParts {
            method: req.method().as_str(),
            path: req.uri().path(),
            query: req.uri().query().unwrap_or(""),
            headers: req.headers(),
            body: req.body().as_ref(),
        }
    }
}

/// The credential scope and signature of a request, as parsed by
/// [`parse`](crate::parse) and not yet verified.
///
/// Look up the secret key for `access_key_id` (and check `session_token`
/// against it when present), then call [`verify`](crate::verify).
///
/// `Debug` redacts the session token.
#[derive(Clone, PartialEq, Eq)]
pub struct SignatureInfo {
    /// The access key ID of the credential scope.
    pub access_key_id: String,
    /// The credential scope date, `YYYYMMDD`.
    pub date: String,
    /// The credential scope region, as signed (not validated against a list).
    pub region: String,
    /// The credential scope service (`ec2`, `lightsail`...), as signed.
    pub service: String,
    /// The signed header names: lower case, sorted, distinct.
    pub signed_headers: Vec<String>,
    /// The signature, 64 hex digits.
    pub signature: String,
    /// The signing time (`X-Amz-Date`) as sent, `YYYYMMDDTHHMMSSZ`.
    pub amz_date: String,
    /// The signing time in Unix seconds (the same instant as `amz_date`).
    pub timestamp_unix: i64,
    /// The session token of temporary credentials (`x-amz-security-token`
    /// header or `X-Amz-Security-Token` parameter), if any.
    pub session_token: Option<String>,
    /// Whether the signature came in the query string (presigned request)
    /// rather than the `Authorization` header.
    pub from_query: bool,
    /// `X-Amz-Expires` of a presigned request; `None` in the header form.
    pub expires_secs: Option<u64>,
}

impl SignatureInfo {
    /// The credential scope without the access key:
    /// `YYYYMMDD/region/service/aws4_request`.
    pub fn credential_scope(&self) -> String {
        format!("{}/{}/{}/{TERMINATOR}", self.date, self.region, self.service)
    }
}

impl fmt::Debug for SignatureInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignatureInfo")
            .field("access_key_id", &self.access_key_id)
            .field("date", &self.date)
            .field("region", &self.region)
            .field("service", &self.service)
            .field("signed_headers", &self.signed_headers)
            .field("signature", &self.signature)
            .field("amz_date", &self.amz_date)
            .field("timestamp_unix", &self.timestamp_unix)
            .field("session_token", &self.session_token.as_ref().map(|_| "** redacted **"))
            .field("from_query", &self.from_query)
            .field("expires_secs", &self.expires_secs)
            .finish()
    }
}
