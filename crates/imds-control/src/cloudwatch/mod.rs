//! The CloudWatch metric read API on the control-plane listener, so that
//! operators read `MetadataNoToken` (and `MetadataNoTokenRejected`) of their
//! instances with the AWS tools: `GetMetricStatistics`, `GetMetricData` and
//! `ListMetrics` over the usage data of [`imds_usage`].
//!
//! CloudWatch clients speak one of three protocols (the model lists
//! `smithy-rpc-v2-cbor`, `json`, `query`; each client picks the first it
//! implements), and this endpoint speaks all three:
//!
//! * JSON 1.0: `POST /` with `X-Amz-Target: GraniteServiceVersion20100801.<Op>`
//!   (AWS CLI v1, boto3);
//! * RPC v2 CBOR: `POST /service/GraniteServiceVersion20100801/operation/<Op>`
//!   (later SDKs);
//! * query: `Action=<Op>&Version=2010-08-01` form (Debian's AWS CLI v2), told
//!   apart from EC2's query by the signing scope's service `monitoring` or
//!   the `Version` ([`is_query`]).
//!
//! Requests are signed with SigV4 for the service `monitoring` and
//! authorised as `cloudwatch:<Op>` on `*` (CloudWatch's read actions have
//! no resource-level permissions). A request is handled in this order:
//! bounded body, authentication, the rate limit (`Throttling`), the
//! operation, authorisation, strict
//! reading of the input (400s), then the store. Nothing is written.
//!
//! Layers: [`error`] (codes and statuses), [`input`] (one input tree for
//! the three protocols), [`render`] (answers and errors per protocol),
//! [`operations`] (the operations).

pub mod error;
pub mod input;
pub mod operations;
pub mod render;

use crate::auth::{self, Check};
use crate::metrics::CallOutcome;
use crate::query::parse_form;
use crate::server::{Shared, X_AMZ_TARGET, read_body};
use axum::extract::Request;
use axum::response::Response;
use error::CwError;
use http::Method;
use imds_sigv4::RequestParts;
use input::{Input, Node};
use render::{Out, Protocol};

/// The SigV4 service name (and endpoint prefix) of CloudWatch.
pub const SIGNING_SERVICE: &str = "monitoring";

/// The IAM service prefix of CloudWatch actions.
pub const IAM_PREFIX: &str = "cloudwatch";

/// The API version of the query protocol.
pub const API_VERSION: &str = "2010-08-01";

/// The model's `targetPrefix` (JSON) and service name (CBOR path).
pub const TARGET_PREFIX: &str = "GraniteServiceVersion20100801";

/// The path prefix of RPC v2 CBOR requests.
pub const CBOR_PATH_PREFIX: &str = "/service/GraniteServiceVersion20100801/operation/";

/// The `api` label of this API's metrics.
pub const API_LABEL: &str = "cloudwatch";

/// The operations this endpoint implements.
pub const OPERATIONS: &[&str] = &["GetMetricData", "GetMetricStatistics", "ListMetrics"];

fn find(name: &str) -> Option<&'static str> {
    OPERATIONS.iter().copied().find(|o| *o == name)
}

/// The JSON or CBOR protocol of a request, if it is a CloudWatch one:
/// `X-Amz-Target: GraniteServiceVersion20100801.<Op>` or a path under
/// [`CBOR_PATH_PREFIX`]. Query requests are recognised after the body is
/// read ([`is_query`]).
pub fn protocol_of(req: &Request) -> Option<Protocol> {
    if req.uri().path().starts_with(CBOR_PATH_PREFIX) {
        return Some(Protocol::Cbor);
    }
    let target = req.headers().get(X_AMZ_TARGET)?.to_str().ok()?;
    target.strip_prefix(TARGET_PREFIX)?.starts_with('.').then_some(Protocol::Json)
}

/// Whether a form request (not JSON, not CBOR) is for CloudWatch rather
/// than EC2: signed for the service `monitoring`, or, unsigned or not
/// parseable, carrying `Version=2010-08-01`.
pub fn is_query(parts: &http::request::Parts, body: &[u8]) -> bool {
    if let Ok(info) = imds_sigv4::parse(&RequestParts::new(parts, body)) {
        return info.service == SIGNING_SERVICE;
    }
    let query = parts.uri.query().unwrap_or("");
    parse_form(&[query.as_bytes(), body]).is_ok_and(|p| p.root().str("Version") == Some(API_VERSION))
}

/// Reads a JSON or CBOR request's body (bounded) and answers it.
pub async fn handle(shared: &Shared, req: Request, protocol: Protocol, request_id: &str) -> Response {
    let operation = match protocol {
        Protocol::Cbor => req.uri().path().strip_prefix(CBOR_PATH_PREFIX).unwrap_or_default().to_owned(),
        _ => req
            .headers()
            .get(X_AMZ_TARGET)
            .and_then(|v| v.to_str().ok())
            .and_then(|t| t.strip_prefix(TARGET_PREFIX))
            .and_then(|t| t.strip_prefix('.'))
            .unwrap_or_default()
            .to_owned(),
    };
    let (parts, body) = req.into_parts();
    let limit = shared.config.max_body_bytes;
    let Some(body) = read_body(&parts, body, limit).await else {
        return answer(protocol, find(&operation), Err(CwError::body_too_large(limit)), request_id);
    };
    handle_body(shared, &parts, &body, protocol, &operation, request_id).await
}

/// Answers a query request whose body is already read (the EC2 front door
/// read it before it could tell the two apart).
pub async fn handle_query(
    shared: &Shared,
    parts: &http::request::Parts,
    body: &[u8],
    request_id: &str,
) -> Response {
    let query = parts.uri.query().unwrap_or("");
    let action = parse_form(&[query.as_bytes(), body])
        .ok()
        .and_then(|p| p.root().str("Action").map(|a| a.chars().take(64).collect::<String>()))
        .unwrap_or_default();
    handle_body(shared, parts, body, Protocol::Query, &action, request_id).await
}

async fn handle_body(
    shared: &Shared,
    parts: &http::request::Parts,
    body: &[u8],
    protocol: Protocol,
    operation: &str,
    request_id: &str,
) -> Response {
    let def = find(operation);
    let result = process(shared, parts, body, protocol, operation, def).await;
    answer(protocol, def, result, request_id)
}

/// The response, with the [`CallOutcome`] for the metrics.
fn answer(
    protocol: Protocol,
    def: Option<&'static str>,
    result: Result<Out, CwError>,
    request_id: &str,
) -> Response {
    let (mut response, code) = match &result {
        Ok(out) => (render::success(protocol, def.unwrap_or_default(), out, request_id), None),
        Err(e) => (render::error(protocol, e, request_id), Some(e.code)),
    };
    response.extensions_mut().insert(CallOutcome::new(API_LABEL, def, code));
    response
}

async fn process(
    shared: &Shared,
    parts: &http::request::Parts,
    body: &[u8],
    protocol: Protocol,
    operation: &str,
    def: Option<&'static str>,
) -> Result<Out, CwError> {
    let sig = RequestParts::new(parts, body);
    let caller = shared.authenticate(&sig, SIGNING_SERVICE);
    let key = caller.as_ref().ok().map(|c| c.access_key_id.as_str());
    if !shared.admit(API_LABEL, key, parts) {
        return Err(CwError::throttled());
    }
    let caller = match caller {
        Ok(c) => c,
        Err(e) => {
            let key =
                imds_sigv4::parse(&sig).ok().map(|i| i.access_key_id.chars().take(128).collect::<String>());
            tracing::info!(
                target: "imds_control::audit",
                access_key_id = key.as_deref().unwrap_or("-"),
                action = def.map(|d| format!("{IAM_PREFIX}:{d}")).as_deref().unwrap_or("-"),
                result = e.code,
                "cloudwatch api call"
            );
            return Err(CwError::unauthenticated(&e));
        }
    };
    let params = match protocol {
        Protocol::Query => {
            let query = parts.uri.query().unwrap_or("");
            let params = parse_form(&[query.as_bytes(), body]).map_err(|e| CwError::from_form(&e))?;
            let root = params.root();
            match root.str("Action").filter(|a| !a.is_empty()) {
                None => return Err(CwError::missing_action()),
                Some(_) if def.is_none() => return Err(CwError::invalid_action(operation)),
                Some(_) => {}
            }
            match root.str("Version") {
                None | Some("") => return Err(CwError::missing("Version")),
                Some(API_VERSION) => {}
                Some(other) => return Err(CwError::no_such_version(other)),
            }
            Some(params)
        }
        _ => None,
    };
    let Some(def) = def else {
        return Err(CwError::invalid_action(operation));
    };
    if parts.method != Method::POST && !(protocol == Protocol::Query && parts.method == Method::GET) {
        return Err(CwError::method_not_allowed(parts.method.as_str()));
    }
    let action = format!("{IAM_PREFIX}:{def}");
    if auth::authorize(&caller, &shared.config.region, vec![Check::new(action.clone(), "*")]).is_err() {
        return Err(CwError::access_denied(&caller.principal_arn, &action));
    }
    let node = match (protocol, &params) {
        (Protocol::Json, _) => input::from_json(body)?,
        (Protocol::Cbor, _) => input::from_cbor(body)?,
        (Protocol::Query, Some(params)) => input::from_form(params)?,
        (Protocol::Query, None) => Node::Null,
    };
    let input = Input::root(&node, protocol == Protocol::Query)?;
    let ops = &shared.ops;
    match def {
        "GetMetricStatistics" => operations::get_metric_statistics(ops, &input).await,
        "GetMetricData" => operations::get_metric_data(ops, &input).await,
        "ListMetrics" => operations::list_metrics(ops, &input).await,
        other => Err(CwError::invalid_action(other)),
    }
}
