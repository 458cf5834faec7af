//! The admin endpoint: `/healthz` for supervisors and load balancers,
//! `/metrics` for Prometheus, and the JSON API under `/v1/` that the `imdsd`
//! subcommands use, and the read-only web console at `/` (see
//! [`crate::console`]). It listens on loopback by default: whoever reaches it
//! may read metrics and manage events.

use crate::admin_api::{self, ApiState};
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use prometheus_client::registry::Registry;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// What the admin endpoint reports.
pub struct AdminState {
    /// Every metric of the process.
    pub registry: Registry,
    /// True once the data plane serves what the store holds.
    pub ready: AtomicBool,
}

async fn healthz(State(state): State<Arc<AdminState>>) -> Response {
    if state.ready.load(Ordering::Acquire) {
        (StatusCode::OK, "ok\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "starting\n").into_response()
    }
}

async fn metrics(State(state): State<Arc<AdminState>>) -> Response {
    let mut text = String::new();
    match prometheus_client::encoding::text::encode(&mut text, &state.registry) {
        Ok(()) => {
            ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], text)
                .into_response()
        }
        Err(_) => (StatusCode::INTERNAL_SERVER_ERROR, "encoding failed\n").into_response(),
    }
}

/// Changes through the admin API must carry `Content-Type:
/// application/json` and no foreign `Origin`. A web page the operator has
/// open can then not make the browser change anything here: a cross-site
/// request with that content type needs a CORS preflight, which this
/// endpoint never grants, and the simple form posts a page can send
/// without one are refused.
async fn refuse_cross_site_writes(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    use axum::http::Method;
    if matches!(*req.method(), Method::GET | Method::HEAD) {
        return next.run(req).await;
    }
    let headers = req.headers();
    let json = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|v| {
        v.split(';').next().is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"))
    });
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or("");
    let foreign_origin = headers
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|o| o.strip_prefix("http://").or_else(|| o.strip_prefix("https://")) != Some(host));
    if !json {
        return (StatusCode::UNSUPPORTED_MEDIA_TYPE, "changes need Content-Type: application/json\n")
            .into_response();
    }
    if foreign_origin {
        return (StatusCode::FORBIDDEN, "cross-site changes are refused\n").into_response();
    }
    next.run(req).await
}

/// The admin routes: health, metrics, the `/v1/` API and the console.
pub fn router(state: Arc<AdminState>, api: Arc<ApiState>) -> Router {
    let v1 = Router::new()
        .route("/v1/identity/certificate", get(admin_api::identity_certificate))
        .route("/v1/identity/rotate", post(admin_api::identity_rotate))
        .route("/v1/tokens/rotate", post(admin_api::tokens_rotate))
        .route("/v1/reports/v1-callers", get(admin_api::v1_callers))
        .route("/v1/events", get(admin_api::list_events).post(admin_api::schedule_event))
        .route("/v1/events/{event_id}", delete(admin_api::cancel_event))
        .route("/v1/instances", get(admin_api::list_instances))
        .route("/v1/metrics/metadata-no-token", get(admin_api::metadata_no_token))
        .layer(axum::middleware::from_fn(refuse_cross_site_writes))
        .with_state(api);
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .with_state(state)
        .merge(v1)
        .merge(crate::console::router())
}
