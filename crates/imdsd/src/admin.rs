//! The admin endpoint: `/healthz` for supervisors and load balancers,
//! `/metrics` for Prometheus, and the JSON API under `/v1/` that the `imdsd`
//! subcommands use. It listens on loopback by default: whoever reaches it
//! may read metrics and manage events.

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus_client::registry::Registry;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::net::TcpListener;
use tokio::sync::watch;

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

/// The admin routes.
pub fn router(state: Arc<AdminState>) -> Router {
    Router::new().route("/healthz", get(healthz)).route("/metrics", get(metrics)).with_state(state)
}

/// Serves `router` on `listener` until `shutdown` turns true.
pub async fn serve(router: Router, listener: TcpListener, mut shutdown: watch::Receiver<bool>) {
    let stop = async move { imds_dataplane::server::stopped(&mut shutdown).await };
    if let Err(e) = axum::serve(listener, router).with_graceful_shutdown(stop).await {
        tracing::error!(error = %e, "admin endpoint failed");
    }
}
