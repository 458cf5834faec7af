//! The Lightsail JSON protocol (awsJson 1.1, `X-Amz-Target:
//! Lightsail_20161128.<Operation>`): the extension point where
//! `UpdateInstanceMetadataOptions`, `GetInstance` and `GetInstances` will
//! be implemented on top of [`crate::ops`] (the same store operations the
//! EC2 actions use: [`crate::ops::Ops::update`] for changes with
//! compare-and-set, [`crate::ops::Ops::get`] / [`crate::ops::Ops::list`]
//! for reads with `pending`/`applied`).
//!
//! For now every JSON-protocol request is authenticated (service
//! `lightsail`) and answered with `UnknownOperationException`, in the
//! awsJson error shape botocore reads (`__type`, `message`). Errors of this
//! protocol map to their codes here, not in [`crate::error`].

use crate::server::Shared;
use axum::body::{Body, to_bytes};
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use imds_sigv4::RequestParts;

/// `Content-Type` of awsJson 1.1.
pub const CONTENT_TYPE: &str = "application/x-amz-json-1.1";

/// The `X-Amz-Target` prefix of Lightsail operations.
pub const TARGET_PREFIX: &str = "Lightsail_20161128.";

/// An awsJson error: `{"__type": code, "message": message}`.
pub fn error_response(status: StatusCode, code: &str, message: &str, request_id: &str) -> Response {
    let body = serde_json::json!({ "__type": code, "message": message }).to_string();
    let mut r = (status, body).into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    if let Ok(v) = HeaderValue::from_str(request_id) {
        r.headers_mut().insert("x-amzn-requestid", v);
    }
    r
}

/// Handles a request that carries `X-Amz-Target`.
pub async fn handle(shared: &Shared, req: Request, request_id: &str) -> Response {
    let target = req
        .headers()
        .get(crate::server::X_AMZ_TARGET)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .chars()
        .take(128)
        .collect::<String>();
    let (parts, body) = req.into_parts();
    let limit = shared.config.max_body_bytes;
    let Ok(body) = to_bytes(Body::new(body), limit).await else {
        let message = format!("The request body exceeds the limit of {limit} bytes.");
        return error_response(StatusCode::PAYLOAD_TOO_LARGE, "InvalidInputException", &message, request_id);
    };
    let sig = RequestParts::new(&parts, &body);
    if let Err(e) = shared.authenticate(&sig, "lightsail") {
        return error_response(e.status, "UnauthenticatedException", &e.message, request_id);
    }
    let operation = target.strip_prefix(TARGET_PREFIX).unwrap_or(&target);
    tracing::info!(target: "imds_control::audit", request_id, operation, "unsupported JSON-protocol operation");
    error_response(
        StatusCode::BAD_REQUEST,
        "UnknownOperationException",
        &format!("The operation {operation} is not supported by this endpoint."),
        request_id,
    )
}
