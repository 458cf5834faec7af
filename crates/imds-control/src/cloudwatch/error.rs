//! Every error a CloudWatch client can see: the query error code (the code
//! of the model's error shapes — `InvalidParameterValue`,
//! `MissingParameter`, `InvalidParameterCombination`, …), the HTTP status,
//! whether the sender or the receiver is at fault, and the message.
//!
//! The three protocols carry the same error differently
//! ([`super::render`]): the query protocol as `<ErrorResponse>` with `Code`,
//! JSON 1.0 and RPC v2 CBOR as a `__type` (the error shape) with `message`
//! plus the `x-amzn-query-error: <Code>;<Sender|Receiver>` header of
//! query-compatible services, from which botocore takes the code — so a
//! client reports the same code whichever protocol it speaks. Usage-query
//! failures ([`UsageError`]) are mapped here and nowhere else.

use crate::error::ApiError;
use http::StatusCode;
use imds_usage::UsageError;

/// A client-visible CloudWatch error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CwError {
    /// The query error code (`InvalidParameterValue`).
    pub code: &'static str,
    /// The human-readable message.
    pub message: String,
    /// The HTTP status; never 2xx.
    pub status: StatusCode,
}

impl std::fmt::Display for CwError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}): {}", self.code, self.status.as_u16(), self.message)
    }
}

impl std::error::Error for CwError {}

fn bad(code: &'static str, message: impl Into<String>) -> CwError {
    CwError { code, message: message.into(), status: StatusCode::BAD_REQUEST }
}

impl CwError {
    /// `InvalidParameterValue` (400).
    pub fn invalid_value(message: impl Into<String>) -> Self {
        bad("InvalidParameterValue", message)
    }

    /// `InvalidParameterCombination` (400).
    pub fn invalid_combination(message: impl Into<String>) -> Self {
        bad("InvalidParameterCombination", message)
    }

    /// `MissingParameter` (400): a required member is absent.
    pub fn missing(name: &str) -> Self {
        bad("MissingParameter", format!("The parameter {name} is required."))
    }

    /// `InvalidParameterValue` for a member of the wrong type.
    pub fn wrong_type(name: &str, expected: &str) -> Self {
        Self::invalid_value(format!("The parameter {name} must be {expected}."))
    }

    /// `InvalidParameterValue` for a value outside an enumeration.
    pub fn not_in_set(name: &str, allowed: &[&str]) -> Self {
        Self::invalid_value(format!(
            "The parameter {name} must be a value in the set [ {} ].",
            allowed.join(", ")
        ))
    }

    /// `InvalidNextToken` (400).
    pub fn invalid_next_token() -> Self {
        bad("InvalidNextToken", "The service couldn't process the provided NextToken.")
    }

    /// `InvalidAction` (400): the operation does not exist here.
    pub fn invalid_action(name: &str) -> Self {
        bad("InvalidAction", format!("The action {name} is not valid for this web service."))
    }

    /// `MissingAction` (400): a query request without `Action`.
    pub fn missing_action() -> Self {
        bad("MissingAction", "The request must contain the parameter Action.")
    }

    /// `InvalidParameterValue` for a `Version` other than `2010-08-01`.
    pub fn no_such_version(version: &str) -> Self {
        Self::invalid_value(format!(
            "The requested version ({version}) of service CloudWatch does not exist; use 2010-08-01."
        ))
    }

    /// `SerializationException` (400): a JSON or CBOR body that does not
    /// decode.
    pub fn serialization(message: impl Into<String>) -> Self {
        bad("SerializationException", message)
    }

    /// `AccessDenied` (403) in IAM's wording.
    pub fn access_denied(principal: &str, action: &str) -> Self {
        Self {
            code: "AccessDenied",
            message: format!(
                "User: {principal} is not authorized to perform: {action} because no identity-based policy allows the {action} action"
            ),
            status: StatusCode::FORBIDDEN,
        }
    }

    /// `UnsupportedHttpVerb` (405).
    pub fn method_not_allowed(method: &str) -> Self {
        Self {
            code: "UnsupportedHttpVerb",
            message: format!("The HTTP verb {method} is not supported; use POST."),
            status: StatusCode::METHOD_NOT_ALLOWED,
        }
    }

    /// `RequestEntityTooLarge` (413).
    pub fn body_too_large(limit: usize) -> Self {
        Self {
            code: "RequestEntityTooLarge",
            message: format!("The request body exceeds the limit of {limit} bytes."),
            status: StatusCode::PAYLOAD_TOO_LARGE,
        }
    }

    /// `InternalServiceError` (500, the model's `InternalServiceFault`):
    /// details are logged, not sent.
    pub fn internal() -> Self {
        Self {
            code: "InternalServiceError",
            message: "An internal error has occurred. Please try again.".to_owned(),
            status: StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// `ServiceUnavailable` (503): temporary; SDKs retry.
    pub fn unavailable() -> Self {
        Self {
            code: "ServiceUnavailable",
            message: "The service is unavailable. Please try again shortly.".to_owned(),
            status: StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// `Throttling` (400, CloudWatch's query code for an exceeded request
    /// rate; JSON and CBOR clients see `ThrottlingException` with the same
    /// code in `x-amzn-query-error`). botocore retries it as throttling.
    pub fn throttled() -> Self {
        Self { code: "Throttling", message: "Rate exceeded".to_owned(), status: StatusCode::BAD_REQUEST }
    }

    /// `ServiceUnavailable` (503): the request did not complete within the
    /// deadline; SDKs retry it.
    pub fn request_timeout(secs: f64) -> Self {
        Self {
            message: format!("The request did not complete within {secs} seconds."),
            ..Self::unavailable()
        }
    }

    /// An authentication failure of the shared SigV4 check, in CloudWatch's
    /// codes: an unknown key is `InvalidClientTokenId`, a scope for another
    /// service or region `SignatureDoesNotMatch` (both 403), the
    /// verifier's own codes stay.
    pub fn unauthenticated(e: &ApiError) -> Self {
        let (code, status) = match e.code {
            "AuthFailure" if e.message.starts_with("Credential should be scoped") => {
                ("SignatureDoesNotMatch", StatusCode::FORBIDDEN)
            }
            "AuthFailure" => ("InvalidClientTokenId", StatusCode::FORBIDDEN),
            "MissingAuthenticationToken" | "SignatureDoesNotMatch" => (e.code, StatusCode::FORBIDDEN),
            other => (other, e.status),
        };
        Self { code, message: e.message.clone(), status }
    }

    /// A failure of the shared query-form parser (a repeated key).
    pub fn from_form(e: &ApiError) -> Self {
        Self { code: e.code, message: e.message.clone(), status: e.status }
    }

    /// Whether the client (`Sender`) or the service (`Receiver`) is at
    /// fault.
    pub fn fault(&self) -> &'static str {
        if self.status.is_server_error() { "Receiver" } else { "Sender" }
    }

    /// The error shape named in `__type` by the JSON and CBOR protocols:
    /// the model's shape for modeled errors, the AWS front end's for the
    /// others.
    pub fn type_name(&self) -> &'static str {
        match self.code {
            "InvalidParameterValue" => "com.amazonaws.cloudwatch#InvalidParameterValueException",
            "MissingParameter" => "com.amazonaws.cloudwatch#MissingRequiredParameterException",
            "InvalidParameterCombination" => "com.amazonaws.cloudwatch#InvalidParameterCombinationException",
            "InvalidNextToken" => "com.amazonaws.cloudwatch#InvalidNextToken",
            "InternalServiceError" => "com.amazonaws.cloudwatch#InternalServiceFault",
            "InvalidClientTokenId" => "com.amazon.coral.service#UnrecognizedClientException",
            "SignatureDoesNotMatch" | "RequestExpired" => {
                "com.amazon.coral.service#InvalidSignatureException"
            }
            "IncompleteSignature" => "com.amazon.coral.service#IncompleteSignatureException",
            "MissingAuthenticationToken" => "com.amazon.coral.service#MissingAuthenticationTokenException",
            "AccessDenied" => "com.amazon.coral.service#AccessDeniedException",
            "InvalidAction" | "MissingAction" => "com.amazon.coral.service#UnknownOperationException",
            "SerializationException" => "com.amazon.coral.service#SerializationException",
            "ServiceUnavailable" => "com.amazon.coral.service#ServiceUnavailableException",
            "Throttling" => "com.amazon.coral.availability#ThrottlingException",
            "UnsupportedHttpVerb" => "com.amazon.coral.service#UnsupportedHttpVerbException",
            "RequestEntityTooLarge" => "com.amazon.coral.service#RequestEntityTooLargeException",
            _ => "com.amazon.coral.service#ValidationException",
        }
    }

    /// The `x-amzn-query-error` header value: `<Code>;<Sender|Receiver>`.
    pub fn query_error_header(&self) -> String {
        format!("{};{}", self.code, self.fault())
    }
}

impl From<UsageError> for CwError {
    fn from(e: UsageError) -> Self {
        match e.aws_code() {
            Some("InvalidParameterCombination") => Self::invalid_combination(e.to_string()),
            Some(_) => Self::invalid_value(e.to_string()),
            None => {
                tracing::error!(error = %e, "reading usage data failed");
                match e {
                    UsageError::Store(imds_store::StoreError::Unavailable(_)) => Self::unavailable(),
                    _ => Self::internal(),
                }
            }
        }
    }
}

impl From<crate::ops::OpError> for CwError {
    fn from(e: crate::ops::OpError) -> Self {
        match ApiError::from(e) {
            a if a.status == StatusCode::SERVICE_UNAVAILABLE => Self::unavailable(),
            _ => Self::internal(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_errors_keep_their_cloudwatch_codes() {
        let e: CwError = UsageError::InvalidPeriod(30).into();
        assert_eq!((e.code, e.status.as_u16()), ("InvalidParameterValue", 400));
        let e: CwError = UsageError::TooManyDatapoints { requested: 1441 }.into();
        assert_eq!(e.code, "InvalidParameterCombination");
        assert!(e.message.contains("exceeds the limit of 1,440"), "{}", e.message);
        let e: CwError = UsageError::Store(imds_store::StoreError::Backend("x".into())).into();
        assert_eq!((e.code, e.status.as_u16(), e.fault()), ("InternalServiceError", 500, "Receiver"));
    }

    #[test]
    fn modeled_errors_name_their_shapes() {
        assert_eq!(
            CwError::missing("StartTime").type_name(),
            "com.amazonaws.cloudwatch#MissingRequiredParameterException"
        );
        assert_eq!(CwError::missing("StartTime").message, "The parameter StartTime is required.");
        assert_eq!(CwError::invalid_value("x").query_error_header(), "InvalidParameterValue;Sender");
    }

    #[test]
    fn authentication_failures_use_cloudwatch_codes() {
        let e = CwError::unauthenticated(&ApiError::auth_failure());
        assert_eq!((e.code, e.status.as_u16()), ("InvalidClientTokenId", 403));
        let e = CwError::unauthenticated(&ApiError::auth_failure_with(
            "Credential should be scoped to correct service: 'monitoring'.",
        ));
        assert_eq!(e.code, "SignatureDoesNotMatch");
        let e = CwError::unauthenticated(&ApiError::signature("RequestExpired", 400, "late"));
        assert_eq!((e.code, e.status.as_u16()), ("RequestExpired", 400));
    }
}
