//! Protocol constants of Signature Version 4 and the size bounds this crate
//! enforces before it parses anything.
//!
//! Header names are lower case (as [`http::HeaderMap`] stores them); query
//! parameter names are case sensitive, spelled as the SDKs send them.

/// The only signing algorithm accepted: HMAC-SHA256 SigV4 (not SigV4a).
pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";

/// The last element of every credential scope.
pub const TERMINATOR: &str = "aws4_request";

/// The payload hash a query-string (presigned) signature may use instead of
/// the hash of the body.
pub const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";

/// Header carrying the request time (`YYYYMMDDTHHMMSSZ`) in the header form.
pub const HEADER_X_AMZ_DATE: &str = "x-amz-date";

/// Header carrying the session token of temporary credentials in the header form.
pub const HEADER_X_AMZ_SECURITY_TOKEN: &str = "x-amz-security-token";

/// Optional header carrying the hex SHA-256 of the body, used as the payload
/// hash when present.
pub const HEADER_X_AMZ_CONTENT_SHA256: &str = "x-amz-content-sha256";

/// Query parameter naming the algorithm in the query form; its presence
/// selects the query form.
pub const PARAM_ALGORITHM: &str = "X-Amz-Algorithm";

/// Query parameter carrying `AKID/YYYYMMDD/region/service/aws4_request`.
pub const PARAM_CREDENTIAL: &str = "X-Amz-Credential";

/// Query parameter carrying the signing time (`YYYYMMDDTHHMMSSZ`).
pub const PARAM_DATE: &str = "X-Amz-Date";

/// Query parameter carrying the validity of a presigned request in seconds.
pub const PARAM_EXPIRES: &str = "X-Amz-Expires";

/// Query parameter carrying the `;`-separated signed header names.
pub const PARAM_SIGNED_HEADERS: &str = "X-Amz-SignedHeaders";

/// Query parameter carrying the hex signature; the only parameter left out
/// of the canonical query string.
pub const PARAM_SIGNATURE: &str = "X-Amz-Signature";

/// Query parameter carrying the session token in the query form.
pub const PARAM_SECURITY_TOKEN: &str = "X-Amz-Security-Token";

/// Largest accepted difference, in seconds, between the server clock and the
/// signing time of a header-form request, either way (AWS: 15 minutes).
/// Presigned requests may also be dated at most this far in the future.
pub const MAX_SKEW_SECS: i64 = 15 * 60;

/// Largest accepted `X-Amz-Expires` (seven days, as AWS); the smallest is 1.
pub const MAX_EXPIRES_SECS: u64 = 7 * 24 * 60 * 60;

/// Longest `Authorization` header value looked at.
pub const MAX_AUTHORIZATION_LEN: usize = 8 * 1024;

/// Most signed header names accepted in one signature.
pub const MAX_SIGNED_HEADERS: usize = 64;

/// Longest access key ID accepted (IAM allows 16..=128 characters).
pub const MAX_ACCESS_KEY_ID_LEN: usize = 128;

/// Longest region or service name accepted in a credential scope.
pub const MAX_SCOPE_PART_LEN: usize = 64;

/// Longest session token accepted.
pub const MAX_SESSION_TOKEN_LEN: usize = 8 * 1024;

/// Longest raw request path canonicalised.
pub const MAX_PATH_LEN: usize = 8 * 1024;

/// Longest raw query string canonicalised (an EC2 Query request sent as GET
/// carries all its parameters there, user data included).
pub const MAX_QUERY_LEN: usize = 256 * 1024;

/// Most `&`-separated query parameters canonicalised.
pub const MAX_QUERY_PARAMS: usize = 4096;
