//! Server-side verification of AWS Signature Version 4 (`AWS4-HMAC-SHA256`).
//!
//! The control plane accepts requests from the unmodified AWS CLI and SDKs,
//! which sign every request with SigV4. This crate decides whether such a
//! request is signed by the holder of a given secret key:
//!
//! 1. [`parse`] reads the signature from the `Authorization` header or from the
//!    query string (presigned form) into a [`SignatureInfo`], without any secret;
//! 2. the caller looks up the secret of [`SignatureInfo::access_key_id`] (an
//!    unknown key is its concern: EC2 answers `AuthFailure`, HTTP 401) and
//!    checks [`SignatureInfo::session_token`] if any;
//! 3. [`verify`] checks the clock window, the scope, the payload hash and the
//!    HMAC (in constant time).
//!
//! Every failure is a [`SigV4Error`], mapped to its EC2 error code and HTTP
//! status by [`SigV4Error::aws_code`]. [`canonical_request`] and
//! [`string_to_sign`] are public so tests and error messages can show what
//! the server signed.
//!
//! ```
//! use imds_sigv4::{RequestParts, parse, verify};
//!
//! /// The caller's side: the access key ID of an authentic request, or the
//! /// EC2 error code and status to answer with.
//! fn authenticate(
//!     req: &http::Request<Vec<u8>>,
//!     now_unix: i64,
//!     secret_for: impl Fn(&str) -> Option<String>,
//! ) -> Result<String, (&'static str, u16)> {
//!     let parts = RequestParts::from_request(req);
//!     let info = parse(&parts).map_err(|e| e.aws_code())?;
//!     let secret = secret_for(&info.access_key_id).ok_or(("AuthFailure", 401))?;
//!     verify(&parts, &info, &secret, now_unix).map_err(|e| e.aws_code())?;
//!     Ok(info.access_key_id)
//! }
//!
//! let unsigned = http::Request::post("/").body(b"Action=DescribeInstances".to_vec()).unwrap();
//! assert_eq!(authenticate(&unsigned, 0, |_| None), Err(("MissingAuthenticationToken", 401)));
//! ```
//!
//! It does not own policies (who may call what), key storage, request
//! routing or reading the body: the caller hands a [`RequestParts`] with the
//! whole body, already bounded in size.
//!
//! # Why it is written here
//!
//! No maintained crate verifies SigV4 on the server side: `aws-sigv4` only
//! signs, and its canonicalisation is private. The canonicalisation here
//! follows the AWS SigV4 documentation with the AWS SDKs as ground truth, and
//! is tested against `aws-sigv4` (differential and property tests), the AWS
//! signing test suite, and requests recorded from the AWS CLI / botocore.
//! Where botocore canonicalises differently from `aws-sigv4` (see
//! [`Dialect`]), a signature valid under either is accepted.
//!
//! # Rules, in short
//!
//! Non-S3 rules: the canonical URI is the received (already encoded) path,
//! dot segments and empty segments removed, encoded once more; the canonical
//! query is every name and value encoded with the unreserved set
//! (`A-Z a-z 0-9 - _ . ~`), sorted by name then value, without
//! `X-Amz-Signature` in the query form; canonical headers are the signed
//! names with trimmed values, runs of spaces collapsed, repeated headers
//! joined by `,`; the payload hash is the hex SHA-256 of the body (or the
//! `x-amz-content-sha256` header, or `UNSIGNED-PAYLOAD` for a presigned
//! request).
//!
//! Not supported: SigV4a, S3's single-encoded unnormalised paths and chunked
//! payload signing, the `Date` header instead of `X-Amz-Date`, and presigned
//! requests whose session token was added after signing.
//!
//! # Bounds
//!
//! Nothing is parsed before its size is checked (see [`consts`]): the
//! `Authorization` header, the number of signed headers, the query string and
//! its parameter count, the path, the session token. No input panics.

mod amzdate;
mod canonical;
pub mod consts;
mod error;
mod parse;
mod request;
mod verify;

pub use canonical::{Dialect, canonical_request, string_to_sign};
pub use consts::MAX_SKEW_SECS;
pub use error::SigV4Error;
pub use parse::parse;
pub use request::{RequestParts, SignatureInfo};
pub use verify::verify;
