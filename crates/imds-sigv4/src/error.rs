//! The errors of parsing and verifying a signature, and the one place they
//! map to EC2 Query error codes and HTTP statuses.

/// Why a request's signature was not accepted.
///
/// An unknown access key ID is not among these: looking keys up is the
/// caller's concern (EC2 answers `AuthFailure`, HTTP 401).
///
/// `Display` gives a message in AWS's wording where AWS's is known; it never
/// contains a secret (the canonical request in
/// [`SigV4Error::SignatureMismatch`] has its session token redacted).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SigV4Error {
    /// Neither an `Authorization` header nor an `X-Amz-Algorithm` (or other
    /// `X-Amz-*` signature) query parameter: the request is not signed.
    #[error("Request is missing Authentication Token")]
    Missing,

    /// The signature is present but incomplete or not well formed: missing or
    /// duplicated components, bad credential scope, bad date, `host` not
    /// signed, a signed header absent, a size bound exceeded, both forms
    /// used at once...
    #[error("{0}")]
    Malformed(String),

    /// A signing algorithm other than `AWS4-HMAC-SHA256` (SigV2, SigV4a,
    /// anything else); carries the algorithm as given, truncated.
    #[error("Unsupported AWS 'algorithm': '{0}'. Only AWS4-HMAC-SHA256 is supported")]
    UnsupportedAlgorithm(String),

    /// The signing time is too far from the server clock (header form), or the
    /// presigned request has expired or is not valid yet (query form).
    #[error("{0}")]
    RequestExpired(String),

    /// The signature is well formed and in time but does not match the one
    /// computed with the secret key. Carries what the server signed so a
    /// client can compare (the session token value is redacted).
    #[error(
        "The request signature we calculated does not match the signature you provided. \
         Check your AWS Secret Access Key and signing method. Consult the service documentation for details."
    )]
    SignatureMismatch {
        /// The canonical request the server computed (standard rules), with
        /// the value of `x-amz-security-token` redacted.
        canonical_request: String,
        /// The string to sign the server computed from the unredacted
        /// canonical request.
        string_to_sign: String,
    },

    /// The `x-amz-content-sha256` header does not match the SHA-256 of the
    /// body (and is not `UNSIGNED-PAYLOAD` in a presigned request).
    #[error("The provided 'x-amz-content-sha256' header does not match what was computed.")]
    PayloadHashMismatch,
}

impl SigV4Error {
    /// The EC2 Query error code and HTTP status for this error.
    ///
    /// | variant | code | HTTP |
    /// | --- | --- | --- |
    /// | `Missing` | `MissingAuthenticationToken` | 401 |
    /// | `Malformed` | `IncompleteSignature` | 400 |
    /// | `UnsupportedAlgorithm` | `IncompleteSignature` | 400 |
    /// | `RequestExpired` | `RequestExpired` | 400 |
    /// | `SignatureMismatch` | `SignatureDoesNotMatch` | 403 |
    /// | `PayloadHashMismatch` | `SignatureDoesNotMatch` | 403 |
    ///
    /// (An unknown access key, decided by the caller, is `AuthFailure` / 401.)
    pub fn aws_code(&self) -> (&'static str, u16) {
        match self {
            SigV4Error::Missing => ("MissingAuthenticationToken", 401),
            SigV4Error::Malformed(_) | SigV4Error::UnsupportedAlgorithm(_) => ("IncompleteSignature", 400),
            SigV4Error::RequestExpired(_) => ("RequestExpired", 400),
            SigV4Error::SignatureMismatch { .. } | SigV4Error::PayloadHashMismatch => {
                ("SignatureDoesNotMatch", 403)
            }
        }
    }

    /// Shorthand for [`SigV4Error::Malformed`].
    pub(crate) fn malformed(msg: impl Into<String>) -> Self {
        SigV4Error::Malformed(msg.into())
    }
}

/// Cuts a client-supplied string down to a size fit for an error message,
/// on a character boundary.
pub(crate) fn truncate_for_message(s: &str) -> String {
    const MAX: usize = 64;
    if s.len() <= MAX {
        return s.to_owned();
    }
    let mut end = MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_table_matches_ec2_codes() {
        assert_eq!(SigV4Error::Missing.aws_code(), ("MissingAuthenticationToken", 401));
        assert_eq!(SigV4Error::malformed("x").aws_code(), ("IncompleteSignature", 400));
        assert_eq!(SigV4Error::UnsupportedAlgorithm("AWS".into()).aws_code(), ("IncompleteSignature", 400));
        assert_eq!(SigV4Error::RequestExpired("x".into()).aws_code(), ("RequestExpired", 400));
        let mismatch =
            SigV4Error::SignatureMismatch { canonical_request: String::new(), string_to_sign: String::new() };
        assert_eq!(mismatch.aws_code(), ("SignatureDoesNotMatch", 403));
        assert_eq!(SigV4Error::PayloadHashMismatch.aws_code(), ("SignatureDoesNotMatch", 403));
    }

    #[test]
    fn truncation_keeps_char_boundaries() {
        let s = "é".repeat(100);
        let t = truncate_for_message(&s);
        assert!(t.ends_with("..."));
        assert!(t.len() <= 64 + 3);
        assert_eq!(truncate_for_message("short"), "short");
    }
}
