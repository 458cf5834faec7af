//! The admin JSON API under `/v1/`: identity certificates and key rotation,
//! and instance events. The `imdsd identity` and `imdsd events` commands
//! are its clients. Errors are `{"error": "..."}` with a 4xx status.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use imds_core::events::{EventKind, InstanceEvent};
use imds_core::{Clock, InstanceId};
use imds_identity::RegionSigner;
use imds_store::{Compare, Op, Store, records};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// What the API handlers share.
pub struct ApiState {
    /// The store.
    pub store: Arc<dyn Store>,
    /// Time for scheduling.
    pub clock: Arc<dyn Clock>,
    /// Region used when a request names none.
    pub default_region: String,
    /// The host whose token keys `tokens rotate` replaces.
    pub host_id: String,
}

/// An API failure: status and message.
pub struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        #[derive(Serialize)]
        struct Body {
            error: String,
        }
        (self.0, Json(Body { error: self.1 })).into_response()
    }
}

fn bad_request(msg: impl Into<String>) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, msg.into())
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    tracing::error!(error = %e, "admin API failure");
    ApiError(StatusCode::INTERNAL_SERVER_ERROR, "internal error; see the server log".to_owned())
}

/// `?region=`
#[derive(Deserialize)]
pub struct RegionQuery {
    region: Option<String>,
}

/// `GET /v1/identity/certificate?region=R`: the PEM certificates that verify
/// this region's identity documents (created with the keys on first use).
pub async fn identity_certificate(
    State(state): State<Arc<ApiState>>,
    Query(q): Query<RegionQuery>,
) -> Result<String, ApiError> {
    let region = q.region.unwrap_or_else(|| state.default_region.clone());
    let signer = imds_agent::load_or_create_signer(state.store.as_ref(), &region)
        .await
        .map_err(|e| bad_request(e.to_string()))?;
    Ok(signer.certificate_pem())
}

/// `POST /v1/identity/rotate?region=R`: new signing keys for a region. Data
/// planes switch to them within a second; documents signed before verify
/// only with the old certificate.
pub async fn identity_rotate(
    State(state): State<Arc<ApiState>>,
    Query(q): Query<RegionQuery>,
) -> Result<String, ApiError> {
    let region = q.region.unwrap_or_else(|| state.default_region.clone());
    let region_owned = region.clone();
    let fresh = tokio::task::spawn_blocking(move || RegionSigner::generate(&region_owned))
        .await
        .map_err(internal)?
        .map_err(|e| bad_request(e.to_string()))?;
    let bytes = serde_json::to_vec(&fresh).map_err(internal)?;
    state
        .store
        .txn(Vec::new(), vec![Op::put(records::identity_keys_key(&region), bytes)])
        .await
        .map_err(internal)?;
    tracing::info!(%region, "identity signing keys rotated");
    Ok(fresh.certificate_pem())
}

/// Body of `POST /v1/events`: `instance_id`, optional `delay_secs`, and the
/// event itself tagged by `kind` (the JSON shape of [`EventKind`]).
#[derive(Debug)]
pub struct ScheduleRequest {
    /// Target instance.
    pub instance_id: String,
    /// The event.
    pub kind: EventKind,
    /// Seconds until the event becomes visible (0 = now).
    pub delay_secs: u64,
}

impl ScheduleRequest {
    /// Parses the body; unknown fields are refused by name.
    fn parse(body: &[u8]) -> Result<Self, String> {
        let mut value: serde_json::Value =
            serde_json::from_slice(body).map_err(|e| format!("the body is not JSON: {e}"))?;
        let obj = value.as_object_mut().ok_or("the body must be a JSON object")?;
        let instance_id = match obj.remove("instance_id") {
            Some(serde_json::Value::String(s)) => s,
            _ => return Err("instance_id (a string) is required".to_owned()),
        };
        let delay_secs = match obj.remove("delay_secs") {
            None => 0,
            Some(v) => v.as_u64().ok_or("delay_secs must be a non-negative integer")?,
        };
        let kind = serde_json::from_value(value).map_err(|e| format!("invalid event: {e}"))?;
        Ok(Self { instance_id, kind, delay_secs })
    }
}

fn random_event_id() -> Result<String, ApiError> {
    use aws_lc_rs::rand::{SecureRandom, SystemRandom};
    let mut bytes = [0u8; 9];
    SystemRandom::new().fill(&mut bytes).map_err(|_| internal("random number generator failed"))?;
    Ok(imds_core::ids::resource_id_from_bytes("instance-event", bytes))
}

/// `POST /v1/events`: schedules an event; 201 with the stored event.
pub async fn schedule_event(
    State(state): State<Arc<ApiState>>,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<InstanceEvent>), ApiError> {
    let req = ScheduleRequest::parse(&body).map_err(bad_request)?;
    let instance_id = InstanceId::parse(&req.instance_id).map_err(|e| bad_request(e.to_string()))?;
    req.kind.validate().map_err(|e| bad_request(e.to_string()))?;
    if records::get_instance(state.store.as_ref(), &instance_id).await.map_err(internal)?.is_none() {
        return Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("The instance ID '{instance_id}' does not exist"),
        ));
    }
    let event = InstanceEvent {
        event_id: random_event_id()?,
        instance_id: instance_id.clone(),
        kind: req.kind,
        visible_from: state.clock.now_secs().saturating_add(req.delay_secs),
        canceled_at: None,
    };
    let key = records::event_key(&instance_id, &event.event_id);
    let value = serde_json::to_vec(&event).map_err(internal)?;
    // The instance must still exist when the event is written.
    let instance_key = records::instance_key(&instance_id);
    let Some(kv) = state.store.get(&instance_key).await.map_err(internal)? else {
        return Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("The instance ID '{instance_id}' does not exist"),
        ));
    };
    let done = state
        .store
        .txn(vec![Compare::ModRevision(instance_key, kv.mod_revision)], vec![Op::put(key, value)])
        .await
        .map_err(internal)?;
    if done.is_none() {
        return Err(ApiError(StatusCode::CONFLICT, "the instance changed meanwhile; try again".to_owned()));
    }
    tracing::info!(instance_id = %event.instance_id, event_id = %event.event_id, kind = event.kind.name(), delay_secs = req.delay_secs, "event scheduled");
    Ok((StatusCode::CREATED, Json(event)))
}

/// `?instance_id=`
#[derive(Deserialize)]
pub struct InstanceQuery {
    instance_id: Option<String>,
}

/// One listed event with its phase now.
#[derive(Serialize)]
pub struct ListedEvent {
    #[serde(flatten)]
    event: InstanceEvent,
    phase: String,
}

/// `GET /v1/events[?instance_id=]`: every event, with its phase now.
pub async fn list_events(
    State(state): State<Arc<ApiState>>,
    Query(q): Query<InstanceQuery>,
) -> Result<Json<Vec<ListedEvent>>, ApiError> {
    let (events, _) = records::list_events(state.store.as_ref()).await.map_err(internal)?;
    let now = state.clock.now_secs();
    let listed = events
        .into_iter()
        .filter(|e| q.instance_id.as_deref().is_none_or(|id| e.instance_id.as_str() == id))
        .map(|event| ListedEvent { phase: event.phase(now).to_string(), event })
        .collect();
    Ok(Json(listed))
}

/// `DELETE /v1/events/{event_id}`: cancels an event. Maintenance moves to
/// history as `[Canceled]`; other kinds disappear.
pub async fn cancel_event(
    State(state): State<Arc<ApiState>>,
    Path(event_id): Path<String>,
) -> Result<Json<InstanceEvent>, ApiError> {
    let (kvs, _) = state.store.list(records::EVENTS_PREFIX).await.map_err(internal)?;
    let suffix = format!("/{event_id}");
    let Some(kv) = kvs.into_iter().find(|kv| kv.key.ends_with(&suffix)) else {
        return Err(ApiError(StatusCode::NOT_FOUND, format!("no event '{event_id}'")));
    };
    let mut event: InstanceEvent = records::decode(&kv.key, &kv.value).map_err(internal)?;
    if event.canceled_at.is_some() {
        return Ok(Json(event));
    }
    event.canceled_at = Some(state.clock.now_secs());
    let value = serde_json::to_vec(&event).map_err(internal)?;
    let done = state
        .store
        .txn(vec![Compare::ModRevision(kv.key.clone(), kv.mod_revision)], vec![Op::put(kv.key, value)])
        .await
        .map_err(internal)?;
    if done.is_none() {
        return Err(ApiError(StatusCode::CONFLICT, "the event changed meanwhile; try again".to_owned()));
    }
    tracing::info!(instance_id = %event.instance_id, %event_id, "event canceled");
    Ok(Json(event))
}

/// `POST /v1/tokens/rotate`: a new token sealing key for this host now.
/// Tokens sealed with the previous keys stay valid until they expire.
pub async fn tokens_rotate(State(state): State<Arc<ApiState>>) -> Result<String, ApiError> {
    let now = state.clock.now_millis();
    let (ring, _) = imds_agent::token_keys::rotate_if(state.store.as_ref(), &state.host_id, now, |_| true)
        .await
        .map_err(internal)?;
    Ok(format!("token key {} now seals new tokens\n", ring.current_key_id()))
}

/// `?instance_id=&since=` (Unix seconds).
#[derive(Deserialize)]
pub struct ReportQuery {
    instance_id: Option<String>,
    since: Option<u64>,
}

/// The IMDSv1 caller report.
#[derive(Serialize, Deserialize)]
pub struct V1CallersReport {
    /// Start of the window, Unix seconds.
    pub since: u64,
    /// Instances that made token-less requests in the window, with who made them.
    pub instances: Vec<imds_usage::InstanceReport>,
    /// Running or stopped instances that made none: safe to switch to
    /// `http-tokens required`.
    pub no_imdsv1_calls: Vec<String>,
}

/// `GET /v1/reports/v1-callers[?instance_id=][&since=]`: who still calls
/// IMDSv1, by source address, User-Agent and path (default window: 7 days).
pub async fn v1_callers(
    State(state): State<Arc<ApiState>>,
    Query(q): Query<ReportQuery>,
) -> Result<Json<V1CallersReport>, ApiError> {
    let since = q.since.unwrap_or_else(|| state.clock.now_secs().saturating_sub(7 * 86_400));
    let filter = match &q.instance_id {
        Some(id) => Some(InstanceId::parse(id).map_err(|e| bad_request(e.to_string()))?),
        None => None,
    };
    let reports =
        imds_usage::v1_callers(state.store.as_ref(), filter.as_ref(), since).await.map_err(internal)?;
    let instances: Vec<imds_usage::InstanceReport> =
        reports.into_iter().filter(|r| r.no_token_requests > 0).collect();
    let (all, _) = records::list_instances(state.store.as_ref()).await.map_err(internal)?;
    let no_imdsv1_calls = all
        .into_iter()
        .map(|(r, _)| r)
        .filter(|r| r.state != imds_core::InstanceState::Terminated)
        .filter(|r| filter.as_ref().is_none_or(|f| *f == r.instance_id))
        .filter(|r| !instances.iter().any(|i| i.instance_id == r.instance_id))
        .map(|r| r.instance_id.to_string())
        .collect();
    Ok(Json(V1CallersReport { since, instances, no_imdsv1_calls }))
}

/// One instance as `GET /v1/instances` lists it (for the web console).
#[derive(Serialize, Deserialize)]
pub struct ListedInstance {
    /// `i-…`
    pub instance_id: String,
    /// The `Name` tag, if any.
    pub name: Option<String>,
    /// Lifecycle state (`running`, `stopped`, …).
    pub state: String,
    /// Primary private IPv4 of device 0.
    pub private_ipv4: Option<std::net::Ipv4Addr>,
    /// First IPv6 of device 0.
    pub ipv6: Option<std::net::Ipv6Addr>,
    /// Public IPv4 of device 0.
    pub public_ipv4: Option<std::net::Ipv4Addr>,
    /// `m5.large`
    pub instance_type: String,
    /// `us-east-1a`
    pub availability_zone: String,
    /// Every tag, ordered by key.
    pub tags: std::collections::BTreeMap<String, String>,
    /// The five metadata options of the spec.
    pub metadata_options: imds_core::MetadataOptions,
    /// `applied` once the serving agent reported the spec's generation,
    /// else `pending` (as `DescribeInstances` reports `MetadataOptions.State`).
    pub options_state: String,
    /// Spec generation.
    pub generation: u64,
    /// Generation the serving agent reported, if any.
    pub observed_generation: Option<u64>,
    /// The host whose agent serves the instance, if one reported.
    pub served_by: Option<String>,
}

/// `GET /v1/instances`: every instance with its tags, addresses, metadata
/// options and whether those are applied yet, in id order.
pub async fn list_instances(
    State(state): State<Arc<ApiState>>,
) -> Result<Json<Vec<ListedInstance>>, ApiError> {
    let (records, _) = records::list_instances(state.store.as_ref()).await.map_err(internal)?;
    let (statuses, _) = records::list_statuses(state.store.as_ref()).await.map_err(internal)?;
    let statuses: std::collections::HashMap<InstanceId, records::InstanceStatus> =
        statuses.into_iter().collect();
    let listed = records
        .into_iter()
        .map(|(r, _)| {
            let status = statuses.get(&r.instance_id);
            let applied = status.is_some_and(|s| s.observed_generation >= r.generation);
            ListedInstance {
                instance_id: r.instance_id.to_string(),
                name: r.tags.get("Name").cloned(),
                state: r.state.name().to_owned(),
                private_ipv4: r.private_ipv4(),
                ipv6: r.ipv6(),
                public_ipv4: r.public_ipv4(),
                instance_type: r.instance_type.clone(),
                availability_zone: r.placement.availability_zone.clone(),
                metadata_options: r.metadata_options,
                options_state: if applied { "applied" } else { "pending" }.to_owned(),
                generation: r.generation,
                observed_generation: status.map(|s| s.observed_generation),
                served_by: status.map(|s| s.host_id.clone()),
                tags: r.tags,
            }
        })
        .collect();
    Ok(Json(listed))
}

/// `?instance_id=&start=&end=&period=` (Unix seconds; period in seconds).
#[derive(Deserialize)]
pub struct MetricQuery {
    instance_id: Option<String>,
    start: Option<u64>,
    end: Option<u64>,
    period: Option<u64>,
}

/// The `MetadataNoToken` datapoints of one instance.
#[derive(Serialize)]
pub struct MetricSeries {
    /// The instance.
    pub instance_id: String,
    /// `MetadataNoToken`
    pub metric: &'static str,
    /// Start of the range, Unix seconds (as requested).
    pub start: u64,
    /// End of the range (exclusive), Unix seconds.
    pub end: u64,
    /// Seconds per datapoint.
    pub period: u64,
    /// One per period with an observed minute, in time order (CloudWatch
    /// semantics: a period without one has no datapoint).
    pub datapoints: Vec<imds_usage::Datapoint>,
}

/// `GET /v1/metrics/metadata-no-token?instance_id=&start=&end=&period=`:
/// token-less requests of an instance per period (default: the last hour,
/// per minute). 400 for a period that is not a multiple of 60, an empty
/// range or more than 1,440 datapoints.
pub async fn metadata_no_token(
    State(state): State<Arc<ApiState>>,
    Query(q): Query<MetricQuery>,
) -> Result<Json<MetricSeries>, ApiError> {
    let Some(id) = q.instance_id else {
        return Err(bad_request("instance_id is required"));
    };
    let instance = InstanceId::parse(&id).map_err(|e| bad_request(e.to_string()))?;
    let end = q.end.unwrap_or_else(|| state.clock.now_secs());
    let start = q.start.unwrap_or_else(|| end.saturating_sub(3600));
    let period = q.period.unwrap_or(60);
    let datapoints = imds_usage::metric_statistics(
        state.store.as_ref(),
        &instance,
        imds_usage::Metric::MetadataNoToken,
        start,
        end,
        period,
    )
    .await
    .map_err(|e| match e.aws_code() {
        Some(_) => bad_request(e.to_string()),
        None => internal(e),
    })?;
    Ok(Json(MetricSeries {
        instance_id: instance.to_string(),
        metric: imds_usage::Metric::MetadataNoToken.as_str(),
        start,
        end,
        period,
        datapoints,
    }))
}
