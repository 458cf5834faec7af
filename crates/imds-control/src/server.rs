//! The HTTP front door: one axum handler for every path that reads the body
//! (bounded), authenticates, parses the EC2 parameters, dispatches by
//! `Action`, and renders the XML answer or error. Requests carrying
//! `X-Amz-Target` belong to the JSON protocols ([`crate::lightsail`], or
//! [`crate::cloudwatch`] for its target prefix); CloudWatch's CBOR path and
//! its query form (signed for `monitoring`) go to [`crate::cloudwatch`] too.
//!
//! Every answered call is counted in [`ControlMetrics`] by API, action and
//! error code, with its latency; the protocol handlers say which through a
//! [`CallOutcome`] response extension.
//!
//! Each request gets a UUID request id (in the XML and the logs); every
//! mutating call — and every authentication failure — leaves one audit
//! line at `info` (target `imds_control::audit`) with access key,
//! principal, action, instance ids, result code and request id. Secrets,
//! bodies and user data are never logged.
//!
//! Admission ([`crate::limits`]): every protocol charges a request to the
//! rate-limit bucket of its authenticated key (or, when authentication
//! fails, of its source) through [`Shared::admit`] right after
//! authentication, and answers an empty bucket with its own throttling
//! error. [`handle`] puts a deadline on the whole request (body, handling,
//! answer) and answers a late one with a retryable 5xx in the protocol's
//! shape and `Connection: close`; [`crate::listener::serve`] runs the listener with hyper's
//! header-read timeout, so a client that sends its head slowly (slowloris)
//! or idles on a kept-alive connection is disconnected, and fails a write
//! that makes no progress for the request deadline (a client that stops
//! reading its answer).

use crate::auth::{self, Scope};
use crate::ec2::{self, Cx};
use crate::error::ApiError;
use crate::limits::LimitsHandle;
use crate::listener::PeerAddr;
use crate::metrics::{CallOutcome, ControlMetrics};
use crate::ops::Ops;
use crate::query::parse_form;
use crate::xml::CONTENT_TYPE;
use crate::{Caller, ControlConfig, CredentialSource, StaticCredentials, cloudwatch, lightsail};
use axum::Router;
use axum::body::{Body, to_bytes};
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, Method, StatusCode, header};
use imds_core::Clock;
use imds_sigv4::RequestParts;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The `api` label of EC2 calls.
const EC2_API_LABEL: &str = "ec2";

/// The code of [`ApiError::request_limit_exceeded`].
const THROTTLED: &str = "RequestLimitExceeded";

/// Header naming a JSON-protocol operation (Lightsail, …).
pub const X_AMZ_TARGET: &str = "x-amz-target";

/// What every request handler shares.
pub struct Shared {
    /// Store operations.
    pub ops: Ops,
    /// Settings.
    pub config: ControlConfig,
    /// `config.credentials`, prepared.
    pub statics: StaticCredentials,
    /// Further credentials (minted role credentials).
    pub credentials: Arc<dyn CredentialSource>,
    /// Time for signature checks.
    pub clock: Arc<dyn Clock>,
    /// Calls and latency.
    pub metrics: ControlMetrics,
    /// Rate limit and time limits (reloadable).
    pub limits: LimitsHandle,
}

/// The source address of a request, if [`crate::listener::serve`]
/// recorded it.
fn source_of(parts: &http::request::Parts) -> Option<IpAddr> {
    parts.extensions.get::<PeerAddr>().map(|p| p.0.ip())
}

impl Shared {
    /// Authenticates a request for `service` (`ec2`, `lightsail`,
    /// `monitoring`) against the static credentials, then the credential
    /// source.
    pub fn authenticate(&self, parts: &RequestParts<'_>, service: &str) -> Result<Caller, ApiError> {
        let scope = Scope {
            service,
            region: &self.config.region,
            max_skew_secs: self.config.clock_skew_secs.clamp(0, imds_sigv4::MAX_SKEW_SECS),
        };
        let now = i64::try_from(self.clock.now_secs()).unwrap_or(i64::MAX);
        let lookup = |key: &str| self.statics.lookup(key).or_else(|| self.credentials.lookup(key));
        auth::authenticate(parts, &lookup, scope, now)
    }

    /// Charges a request to the bucket of its authenticated key, or of its
    /// source when authentication failed (`access_key_id` `None`); `false`
    /// (and one count in `imds_control_throttled_total`) when that bucket
    /// is empty and the request must be refused with the protocol's
    /// throttling error.
    pub fn admit(
        &self,
        api: &'static str,
        access_key_id: Option<&str>,
        parts: &http::request::Parts,
    ) -> bool {
        match self.limits.admit(access_key_id, source_of(parts)) {
            Ok(()) => true,
            Err(bucket) => {
                self.metrics.throttle(api, bucket.label());
                tracing::debug!(api, bucket = bucket.label(), access_key_id, "request throttled");
                false
            }
        }
    }
}

/// The router: every path, `POST` and `GET`.
pub fn router(shared: Arc<Shared>) -> Router {
    Router::new().fallback(handle).with_state(shared)
}

/// A response with the EC2 content type.
fn xml_response(status: StatusCode, body: String) -> Response {
    let mut r = (status, body).into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    r.headers_mut().insert(header::SERVER, HeaderValue::from_static("AmazonEC2"));
    r
}

/// Renders an EC2 error.
pub fn error_response(e: &ApiError, request_id: &str) -> Response {
    xml_response(e.status, e.to_xml(request_id))
}

/// An EC2 error answered before the action is known, with its outcome.
fn early_error(e: &ApiError, request_id: &str) -> Response {
    let mut r = error_response(e, request_id);
    r.extensions_mut().insert(CallOutcome::new(EC2_API_LABEL, None, Some(e.code)));
    r
}

async fn handle(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    let started = Instant::now();
    let request_id = uuid::Uuid::new_v4().to_string();
    let deadline = shared.limits.limits().request_timeout;
    let api = Api::of(&req);
    let response = match tokio::time::timeout(deadline, dispatch(&shared, req, &request_id)).await {
        Ok(response) => response,
        Err(_) => {
            tracing::warn!(request_id, api = ?api, "request cut off at the deadline");
            timed_out(api, deadline, &request_id)
        }
    };
    let outcome = response.extensions().get::<CallOutcome>().copied().unwrap_or(CallOutcome::new(
        EC2_API_LABEL,
        None,
        (!response.status().is_success()).then_some("unknown"),
    ));
    shared.metrics.record(outcome, started.elapsed());
    response
}

/// Which protocol a request speaks, as far as its head tells (for the
/// shape of an answer given before the protocol handler could).
#[derive(Debug, Clone, Copy)]
enum Api {
    Ec2,
    Lightsail,
    CloudWatch(cloudwatch::render::Protocol),
}

impl Api {
    fn of(req: &Request) -> Self {
        if let Some(protocol) = cloudwatch::protocol_of(req) {
            return Self::CloudWatch(protocol);
        }
        if req.headers().contains_key(X_AMZ_TARGET) {
            return Self::Lightsail;
        }
        // A form request signed for CloudWatch names its service in the
        // credential scope of the `Authorization` header.
        let monitoring = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|a| a.contains(&format!("/{}/aws4_request", cloudwatch::SIGNING_SERVICE)));
        if monitoring { Self::CloudWatch(cloudwatch::render::Protocol::Query) } else { Self::Ec2 }
    }
}

/// The answer to a request that missed its deadline: a retryable 5xx in
/// the protocol's shape, and the connection closed after it (its body may
/// be half read).
fn timed_out(api: Api, deadline: Duration, request_id: &str) -> Response {
    let secs = deadline.as_secs_f64();
    let mut response = match api {
        Api::Ec2 => early_error(&ApiError::request_timeout(secs), request_id),
        Api::Lightsail => {
            lightsail::error_response(&lightsail::error::LsError::request_timeout(secs), None, request_id)
        }
        Api::CloudWatch(protocol) => {
            let e = cloudwatch::error::CwError::request_timeout(secs);
            let mut r = cloudwatch::render::error(protocol, &e, request_id);
            r.extensions_mut().insert(CallOutcome::new(cloudwatch::API_LABEL, None, Some(e.code)));
            r
        }
    };
    response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// The body of a request, read up to `limit` bytes; `None` when it is
/// larger (a declared `Content-Length` over the limit is refused before
/// anything is read). Each protocol answers `None` with its own error.
pub(crate) async fn read_body(
    parts: &http::request::Parts,
    body: Body,
    limit: usize,
) -> Option<bytes::Bytes> {
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > u64::try_from(limit).unwrap_or(u64::MAX)) {
        return None;
    }
    to_bytes(body, limit).await.ok()
}

async fn dispatch(shared: &Shared, req: Request, request_id: &str) -> Response {
    if let Some(protocol) = cloudwatch::protocol_of(&req) {
        return cloudwatch::handle(shared, req, protocol, request_id).await;
    }
    if req.headers().contains_key(X_AMZ_TARGET) {
        return lightsail::handle(shared, req, request_id).await;
    }
    let (parts, body) = req.into_parts();
    if parts.method != Method::POST && parts.method != Method::GET {
        return early_error(&ApiError::method_not_allowed(parts.method.as_str()), request_id);
    }
    let limit = shared.config.max_body_bytes;
    let Some(body) = read_body(&parts, body, limit).await else {
        return early_error(&ApiError::body_too_large(limit), request_id);
    };
    if cloudwatch::is_query(&parts, &body) {
        return cloudwatch::handle_query(shared, &parts, &body, request_id).await;
    }
    let (outcome, action) = process(shared, &parts, &body, request_id).await;
    let (mut response, code) = match outcome {
        Ok(xml) => (xml_response(StatusCode::OK, xml), None),
        Err(e) => (error_response(&e, request_id), Some(e.code)),
    };
    response.extensions_mut().insert(CallOutcome::new(EC2_API_LABEL, action, code));
    response
}

/// What one request did, for the audit line.
#[derive(Default)]
struct Audit {
    access_key_id: Option<String>,
    principal: Option<String>,
    action: Option<String>,
    mutating: bool,
    resources: Vec<String>,
}

/// Runs one EC2 request; the result and the implemented action it named,
/// if any (for the metrics).
async fn process(
    shared: &Shared,
    parts: &http::request::Parts,
    body: &[u8],
    request_id: &str,
) -> (Result<String, ApiError>, Option<&'static str>) {
    let mut audit = Audit::default();
    let result = run(shared, parts, body, request_id, &mut audit).await;
    let action = audit.action.as_deref().and_then(ec2::find).map(|d| d.name);
    let code = match &result {
        Ok(_) => "Success",
        Err(e) => e.code,
    };
    let auth_failed = matches!(&result, Err(e) if e.status == StatusCode::UNAUTHORIZED || e.code == "SignatureDoesNotMatch");
    // A throttled call changed nothing and is counted in the metrics; an
    // audit line each would let a flood flood the log.
    let throttled = matches!(&result, Err(e) if e.code == THROTTLED);
    if (audit.mutating || auth_failed) && !throttled {
        tracing::info!(
            target: "imds_control::audit",
            request_id,
            access_key_id = audit.access_key_id.as_deref().unwrap_or("-"),
            principal = audit.principal.as_deref().unwrap_or("-"),
            action = audit.action.as_deref().unwrap_or("-"),
            resources = ?audit.resources,
            result = code,
            "ec2 api call"
        );
    }
    (result, action)
}

async fn run(
    shared: &Shared,
    parts: &http::request::Parts,
    body: &[u8],
    request_id: &str,
    audit: &mut Audit,
) -> Result<String, ApiError> {
    let query = parts.uri.query().unwrap_or("");
    let params = parse_form(&[query.as_bytes(), body]);
    if let Ok(p) = &params {
        audit.action = p.root().str("Action").map(|a| a.chars().take(64).collect());
        audit.mutating = audit.action.as_deref().and_then(ec2::find).is_some_and(|d| d.mutating);
    }
    let sig = RequestParts::new(parts, body);
    let caller = shared.authenticate(&sig, "ec2");
    if let Ok(c) = &caller {
        audit.access_key_id = Some(c.access_key_id.clone());
        audit.principal = Some(c.principal_arn.clone());
    } else if let Ok(info) = imds_sigv4::parse(&sig) {
        audit.access_key_id = Some(info.access_key_id.chars().take(128).collect());
    }
    let key = caller.as_ref().ok().map(|c| c.access_key_id.as_str());
    if !shared.admit(EC2_API_LABEL, key, parts) {
        return Err(ApiError::request_limit_exceeded());
    }
    let caller = caller?;
    let params = params?;
    let action = params.action()?;
    let def = ec2::find(action).ok_or_else(|| ApiError::invalid_action(action))?;
    params.check_known(def.params)?;
    let root = params.root();
    let dry_run = root.bool("DryRun")?.unwrap_or(false);
    let mut cx = Cx {
        ops: &shared.ops,
        caller: &caller,
        region: &shared.config.region,
        account: &shared.config.account_id,
        request_id,
        action: def.name,
        dry_run,
        touched: Vec::new(),
    };
    let result = ec2::dispatch(&mut cx, root).await;
    audit.resources = cx.touched;
    result
}
