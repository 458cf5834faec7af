//! The read-only web console on the admin listener: `/` serves one HTML
//! page, `/console/…` its script, style sheet and icon. The page reads the
//! admin JSON API (`/v1/instances`, `/v1/reports/v1-callers`,
//! `/v1/metrics/metadata-no-token`, `/v1/events`) to show the instances,
//! their metadata options and whether those are applied, and the IMDSv1
//! migration: `MetadataNoToken` over the last hour and day, who still calls
//! IMDSv1, and which instances are safe to switch to `http-tokens required`.
//!
//! The assets are compiled into the binary (no build step, nothing fetched
//! from elsewhere). Every response carries a Content-Security-Policy that
//! allows only this origin and no inline script or style; the script puts
//! data into the page with `textContent` only, since instance tags and
//! User-Agents are chosen by guests. The console changes nothing.

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// The page.
const INDEX_HTML: &str = include_str!("../console/index.html");
/// Its script (served as a file: the policy forbids inline scripts).
const APP_JS: &str = include_str!("../console/app.js");
/// Its style sheet.
const APP_CSS: &str = include_str!("../console/app.css");
/// Its icon.
const FAVICON_SVG: &str = include_str!("../console/favicon.svg");

/// The Content-Security-Policy of every console response: this origin
/// only, no inline script or style, no plug-ins, not framed, no forms.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
     img-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; \
     frame-ancestors 'none'";

/// One embedded asset with the console's security headers. `no-cache`:
/// the browser revalidates, so an upgraded binary's assets are used at once.
fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY)),
            (header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")),
            (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
            (header::REFERRER_POLICY, HeaderValue::from_static("no-referrer")),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        body,
    )
        .into_response()
}

/// `GET /`: the console page.
async fn index() -> Response {
    asset("text/html; charset=utf-8", INDEX_HTML)
}

/// `GET /console/app.js`
async fn app_js() -> Response {
    asset("text/javascript; charset=utf-8", APP_JS)
}

/// `GET /console/app.css`
async fn app_css() -> Response {
    asset("text/css; charset=utf-8", APP_CSS)
}

/// `GET /console/favicon.svg`
async fn favicon() -> Response {
    asset("image/svg+xml", FAVICON_SVG)
}

/// The console's routes, to merge into the admin router (they need no
/// state: the page reads the JSON API from the browser).
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(index))
        .route("/console/", get(index))
        .route("/console/app.js", get(app_js))
        .route("/console/app.css", get(app_css))
        .route("/console/favicon.svg", get(favicon))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin_api::{self, ApiState};
    use axum::extract::{Query, State};
    use imds_core::sample::sample_instance;
    use imds_core::{Clock, InstanceId, ManualClock};
    use imds_dataplane::usage::UsageSink;
    use imds_store::records::{self, InstanceStatus};
    use imds_store::{MemoryStore, Store};
    use imds_usage::{UsageConfig, UsageRecorder};
    use std::net::Ipv4Addr;
    use std::sync::Arc;

    async fn body_text(resp: Response) -> String {
        use http_body_util::BodyExt;
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn page_has_policy_and_no_inline_script() {
        let resp = index().await;
        let csp = resp.headers().get(header::CONTENT_SECURITY_POLICY).unwrap().to_str().unwrap();
        assert!(csp.starts_with("default-src 'self'"), "{csp}");
        assert!(!csp.contains("unsafe"), "{csp}");
        assert_eq!(resp.headers().get(header::X_CONTENT_TYPE_OPTIONS).unwrap(), "nosniff");
        let html = body_text(resp).await;
        // Scripts only by src, from this origin, and nothing from elsewhere.
        for (i, _) in html.match_indices("<script") {
            let tag = &html[i..i + html[i..].find('>').unwrap()];
            assert!(tag.contains("src=\"/console/"), "{tag}");
        }
        assert!(!html.contains("http://") && !html.contains("https://"));
        assert!(!html.contains(" style=") && !html.contains("<style"));
        // No inline event handlers (` onclick=` and the like).
        for (i, _) in html.match_indices(" on") {
            let name: String = html[i + 1..].chars().take_while(char::is_ascii_alphabetic).collect();
            assert!(!html[i + 1 + name.len()..].starts_with('='), "inline handler {name}");
        }
        assert!(html.contains("read-only"));
    }

    #[test]
    fn script_never_parses_data_as_html() {
        for sink in ["innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("] {
            assert!(!APP_JS.contains(sink), "app.js uses {sink}");
        }
        // Nothing is loaded from elsewhere (the SVG namespace is a name, not a URL fetched).
        let js = APP_JS.replace("http://www.w3.org/2000/svg", "");
        assert!(!js.contains("http://") && !js.contains("https://"));
    }

    #[tokio::test]
    async fn assets_have_their_types() {
        let js = app_js().await;
        assert!(js.headers()[header::CONTENT_TYPE].to_str().unwrap().starts_with("text/javascript"));
        let css = app_css().await;
        assert!(css.headers()[header::CONTENT_TYPE].to_str().unwrap().starts_with("text/css"));
        assert_eq!(favicon().await.headers()[header::CONTENT_TYPE], "image/svg+xml");
    }

    fn api(store: Arc<dyn Store>, clock: Arc<dyn Clock>) -> Arc<ApiState> {
        Arc::new(ApiState {
            store,
            clock,
            default_region: "us-east-1".to_owned(),
            host_id: "h-local".to_owned(),
        })
    }

    #[tokio::test]
    async fn instances_report_options_state() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let clock: Arc<dyn Clock> = Arc::new(ManualClock::new(1_800_000_000_000));
        let a = InstanceId::parse("i-0aaaaaaaaaaaaaaaa").unwrap();
        let b = InstanceId::parse("i-0bbbbbbbbbbbbbbbb").unwrap();
        let mut ra = sample_instance(a.clone(), Ipv4Addr::new(10, 0, 0, 5), None);
        ra.generation = 3;
        ra.tags.insert("Name".to_owned(), "<img src=x onerror=alert(1)>".to_owned());
        let rb = sample_instance(b.clone(), Ipv4Addr::new(10, 0, 0, 6), None);
        for r in [&ra, &rb] {
            records::put_instance_if(store.as_ref(), r, None).await.unwrap().unwrap();
        }
        let status =
            |g| InstanceStatus { observed_generation: g, host_id: "h-1".into(), applied_at_millis: 0 };
        records::put_status(store.as_ref(), &a, &status(2)).await.unwrap();
        records::put_status(store.as_ref(), &b, &status(1)).await.unwrap();

        let listed = admin_api::list_instances(State(api(store, clock))).await.ok().unwrap().0;
        let json = serde_json::to_value(&listed).unwrap();
        assert_eq!(json[0]["instance_id"], "i-0aaaaaaaaaaaaaaaa");
        assert_eq!(json[0]["options_state"], "pending");
        assert_eq!(json[0]["observed_generation"], 2);
        assert_eq!(json[0]["name"], "<img src=x onerror=alert(1)>");
        assert_eq!(json[0]["private_ipv4"], "10.0.0.5");
        assert_eq!(json[1]["options_state"], "applied");
        assert_eq!(json[1]["served_by"], "h-1");
        let opts = &json[1]["metadata_options"];
        assert_eq!(opts["http_tokens"], "optional");
        assert_eq!(opts["http_put_response_hop_limit"], 1);
        for key in ["http_endpoint", "http_protocol_ipv6", "instance_metadata_tags"] {
            assert!(opts[key].is_string(), "{key}");
        }
    }

    #[tokio::test]
    async fn metadata_no_token_series() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let start_ms = 1_800_000_000_000; // a whole minute
        let manual = Arc::new(ManualClock::new(start_ms));
        let clock: Arc<dyn Clock> = manual.clone();
        let id = InstanceId::parse("i-0aaaaaaaaaaaaaaaa").unwrap();
        let recorder = UsageRecorder::new(Arc::clone(&store), Arc::clone(&clock), UsageConfig::default());
        for _ in 0..3 {
            recorder.no_token(&id, "10.0.0.5".parse().unwrap(), Some(b"curl/8"), "/latest/meta-data/");
        }
        manual.advance_millis(120_000);
        recorder.no_token(&id, "10.0.0.5".parse().unwrap(), Some(b"curl/8"), "/latest/meta-data/");
        recorder.flush().await.unwrap();
        manual.advance_millis(60_000);

        let api = api(store, clock);
        let query = |q: &str| Query::try_from_uri(&format!("http://x/?{q}").parse().unwrap()).unwrap();
        let series =
            admin_api::metadata_no_token(State(Arc::clone(&api)), query("instance_id=i-0aaaaaaaaaaaaaaaa"))
                .await
                .ok()
                .unwrap()
                .0;
        let json = serde_json::to_value(&series).unwrap();
        assert_eq!(json["metric"], "MetadataNoToken");
        assert_eq!(json["period"], 60);
        let points = json["datapoints"].as_array().unwrap();
        assert_eq!(points.len(), 2, "{json}");
        assert_eq!(points[0]["timestamp"], 1_800_000_000);
        assert_eq!(points[0]["sum"], 3.0);
        assert_eq!(points[1]["sum"], 1.0);

        let hourly = admin_api::metadata_no_token(
            State(Arc::clone(&api)),
            query("instance_id=i-0aaaaaaaaaaaaaaaa&start=1799996400&end=1800003600&period=3600"),
        )
        .await
        .ok()
        .unwrap()
        .0;
        assert_eq!(hourly.datapoints.iter().map(|d| d.sum).sum::<f64>(), 4.0);

        for bad in ["", "instance_id=nope", "instance_id=i-0aaaaaaaaaaaaaaaa&period=61"] {
            let err = admin_api::metadata_no_token(State(Arc::clone(&api)), query(bad)).await.err().unwrap();
            assert_eq!(err.into_response().status(), 400, "{bad}");
        }
    }
}
