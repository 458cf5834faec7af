//! The Lightsail JSON protocol (awsJson 1.1, `X-Amz-Target:
//! Lightsail_20161128.<Operation>`, SigV4 service `lightsail`) on the
//! control-plane listener, over the same store operations as the EC2 API
//! ([`crate::ops`]): Lightsail instances are EC2-style instance records
//! with a [`imds_core::LightsailInfo`], so the data plane serves them like
//! any instance and `DescribeInstances` lists them too.
//!
//! Operations: `CreateInstances`, `GetInstance`, `GetInstances`,
//! `UpdateInstanceMetadataOptions` and `DeleteInstance`
//! (docs/protocol/control-plane.md#lightsail-operations), and
//! `GetInstanceMetricData` for `MetadataNoToken`; every other target is
//! answered with `UnknownOperationException`.
//!
//! A request is handled in this order: bounded body, SigV4
//! authentication, the rate limit (`ThrottlingException`), then an
//! authentication failure (`UnauthenticatedException`), the
//! operation, strict parsing and validation of the input (400s win), then
//! resource existence (`NotFoundException`), then IAM authorisation
//! (`lightsail:<Operation>` on the instance ARN, `AccessDeniedException`),
//! then one store transaction. A failed request changes nothing.
//!
//! Layers: [`error`] (error shapes and bodies), [`input`] (strict JSON
//! input), [`catalog`] (bundles, blueprints, names), [`render`] (response
//! shapes), `instances` (the instance operations), `metrics`
//! (`GetInstanceMetricData`).

pub mod catalog;
pub mod error;
pub mod input;
mod instances;
mod metrics;
pub mod render;

use crate::Caller;
use crate::auth::{self, Check};
use crate::metrics::CallOutcome;
use crate::ops::Ops;
use crate::server::{Shared, read_body};
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use error::LsError;
use http::{HeaderValue, Method, StatusCode, header};
use imds_core::{InstanceRecord, LightsailInfo};
use imds_sigv4::RequestParts;

/// `Content-Type` of awsJson 1.1.
pub const CONTENT_TYPE: &str = "application/x-amz-json-1.1";

/// The `X-Amz-Target` prefix of Lightsail operations.
pub const TARGET_PREFIX: &str = "Lightsail_20161128.";

/// The IAM service prefix of Lightsail actions.
pub const IAM_PREFIX: &str = "lightsail";

/// One operation this endpoint implements.
struct OperationDef {
    name: &'static str,
    /// Changes the store (audited).
    mutating: bool,
}

const OPERATIONS: &[OperationDef] = &[
    OperationDef { name: "CreateInstances", mutating: true },
    OperationDef { name: "DeleteInstance", mutating: true },
    OperationDef { name: "GetInstance", mutating: false },
    OperationDef { name: "GetInstanceMetricData", mutating: false },
    OperationDef { name: "GetInstances", mutating: false },
    OperationDef { name: "UpdateInstanceMetadataOptions", mutating: true },
];

fn find(name: &str) -> Option<&'static OperationDef> {
    OPERATIONS.iter().find(|d| d.name == name)
}

/// What one request may use: the store, the caller, where it is.
pub(crate) struct Cx<'a> {
    pub ops: &'a Ops,
    pub caller: &'a Caller,
    pub region: &'a str,
    pub account: &'a str,
    /// The operation (`GetInstance`).
    pub operation: &'static str,
    /// Instance names the call touched, for the audit line.
    pub touched: Vec<String>,
}

impl Cx<'_> {
    /// `lightsail:<Operation>`.
    pub fn action(&self) -> String {
        format!("{IAM_PREFIX}:{}", self.operation)
    }

    /// The ARN of a Lightsail instance.
    pub fn instance_arn(&self, info: &LightsailInfo) -> String {
        render::instance_arn(self.region, self.account, info)
    }

    /// A check of this operation on an existing instance, with
    /// `aws:ResourceTag/<key>` for its tags.
    pub fn instance_check(&self, record: &InstanceRecord, info: &LightsailInfo) -> Check {
        let mut check = Check::new(self.action(), self.instance_arn(info));
        for (k, v) in &record.tags {
            check.context.insert(format!("aws:ResourceTag/{k}"), v.clone());
        }
        check
    }

    /// Evaluates the caller's policies; the first check not allowed gives
    /// `AccessDeniedException` naming its action and resource.
    pub fn authorize(&self, checks: Vec<Check>) -> Result<(), LsError> {
        for check in checks {
            let (action, resource) = (check.action.clone(), check.resource.clone());
            if auth::authorize(self.caller, self.region, vec![check]).is_err() {
                return Err(LsError::access_denied(&self.caller.principal_arn, &action, &resource));
            }
        }
        Ok(())
    }
}

/// A JSON response with the awsJson headers.
fn json_response(status: StatusCode, body: String, request_id: &str) -> Response {
    let mut r = (status, body).into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    if let Ok(v) = HeaderValue::from_str(request_id) {
        r.headers_mut().insert("x-amzn-requestid", v);
    }
    r
}

/// Renders a Lightsail error; `operation` picks the `docs` link. The
/// response carries a [`CallOutcome`] without action (`handle` replaces
/// it once the operation is known).
pub fn error_response(e: &LsError, operation: Option<&str>, request_id: &str) -> Response {
    let mut r = json_response(e.shape.status(), e.to_json(operation), request_id);
    r.extensions_mut().insert(CallOutcome::new(API_LABEL, None, Some(e.shape.type_name())));
    r
}

/// What one request did, for the audit line.
#[derive(Default)]
struct Audit {
    access_key_id: Option<String>,
    principal: Option<String>,
    operation: Option<&'static str>,
    mutating: bool,
    resources: Vec<String>,
}

/// The `api` label of this API's metrics.
pub const API_LABEL: &str = "lightsail";

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
    let too_large = || {
        let e = LsError::invalid_code(
            "RequestEntityTooLarge",
            format!("The request body exceeds the limit of {limit} bytes."),
        );
        error_response(&e, None, request_id)
    };
    let Some(body) = read_body(&parts, body, limit).await else {
        return too_large();
    };
    let mut audit = Audit::default();
    let result = process(shared, &parts, &body, &target, &mut audit).await;
    let auth_failed = matches!(&result, Err(e) if e.shape == error::Shape::Unauthenticated);
    // Throttled calls are counted in the metrics, not audited one by one.
    let throttled = matches!(&result, Err(e) if e.shape == error::Shape::Throttling);
    if (audit.mutating || auth_failed) && !throttled {
        let code = match &result {
            Ok(_) => "Success".to_owned(),
            Err(e) => format!("{}/{}", e.shape.type_name(), e.code),
        };
        tracing::info!(
            target: "imds_control::audit",
            request_id,
            access_key_id = audit.access_key_id.as_deref().unwrap_or("-"),
            principal = audit.principal.as_deref().unwrap_or("-"),
            action = audit.operation.map(|o| format!("{IAM_PREFIX}:{o}")).as_deref().unwrap_or("-"),
            resources = ?audit.resources,
            result = code,
            "lightsail api call"
        );
    }
    let (mut response, code) = match result {
        Ok(json) => (json_response(StatusCode::OK, json, request_id), None),
        Err(e) => (error_response(&e, audit.operation, request_id), Some(e.shape.type_name())),
    };
    response.extensions_mut().insert(CallOutcome::new(API_LABEL, audit.operation, code));
    response
}

async fn process(
    shared: &Shared,
    parts: &http::request::Parts,
    body: &[u8],
    target: &str,
    audit: &mut Audit,
) -> Result<String, LsError> {
    let def = target.strip_prefix(TARGET_PREFIX).and_then(find);
    audit.operation = def.map(|d| d.name);
    audit.mutating = def.is_some_and(|d| d.mutating);
    let sig = RequestParts::new(parts, body);
    let caller = shared.authenticate(&sig, "lightsail");
    match &caller {
        Ok(c) => {
            audit.access_key_id = Some(c.access_key_id.clone());
            audit.principal = Some(c.principal_arn.clone());
        }
        Err(_) => {
            if let Ok(info) = imds_sigv4::parse(&sig) {
                audit.access_key_id = Some(info.access_key_id.chars().take(128).collect());
            }
        }
    }
    let key = caller.as_ref().ok().map(|c| c.access_key_id.as_str());
    if !shared.admit(API_LABEL, key, parts) {
        return Err(LsError::throttled());
    }
    let caller = caller.map_err(|e| LsError::unauthenticated(&e))?;
    let Some(def) = def else {
        return Err(LsError::unknown_operation());
    };
    if parts.method != Method::POST {
        return Err(LsError::invalid_code(
            "UnsupportedHttpVerb",
            format!("The HTTP verb {} is not supported; use POST.", parts.method),
        ));
    }
    let value = input::parse_body(body)?;
    let mut cx = Cx {
        ops: &shared.ops,
        caller: &caller,
        region: &shared.config.region,
        account: &shared.config.account_id,
        operation: def.name,
        touched: Vec::new(),
    };
    let result = match def.name {
        "GetInstanceMetricData" => metrics::get_instance_metric_data(&mut cx, &value).await,
        _ => instances::dispatch(&mut cx, &value).await,
    };
    audit.resources = cx.touched;
    result
}
