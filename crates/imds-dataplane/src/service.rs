//! One IMDS request, from headers to response, without sockets.
//!
//! [`handle`] applies docs/protocol/data-plane.md#request-order in this order:
//! caller → instance (unknown callers get no answer at all), IPv6 and endpoint
//! switches, path normalisation, the token endpoint's own checks, the method,
//! then IMDSv1 / IMDSv2 authentication, then the lookup in the instance's
//! snapshot. Authentication comes before the lookup so that a caller without a
//! valid token learns nothing, not even which paths exist.

use crate::metrics::{ImdsVersion, RequestLabels, RouteClass};
use crate::path::{self, Route};
use crate::responses::{BAD_REQUEST_HTML, NOT_FOUND_HTML, SERVER, TEXT_HTML, TEXT_PLAIN, UNAUTHORIZED_HTML};
use crate::snapshot::{DataPlane, InstanceSnapshot};
use bytes::Bytes;
use http::header::{ALLOW, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Response, StatusCode};
use http_body_util::Full;
use imds_core::HttpTokens;
use imds_net::HopLimitControl;
use imds_token::{TOKEN_HEADER, TOKEN_TTL_HEADER, TokenBinding, parse_ttl};
use std::net::IpAddr;
use std::sync::LazyLock;

/// Header whose presence marks a proxied request.
pub const X_FORWARDED_FOR: &str = "x-forwarded-for";

// Header names as values: looking one up by `&str` parses and lower-cases
// the name each time, and inserting by `&str` allocates a copy of it.
const TOKEN_NAME: HeaderName = HeaderName::from_static(TOKEN_HEADER);
const TOKEN_TTL_NAME: HeaderName = HeaderName::from_static(TOKEN_TTL_HEADER);
const X_FORWARDED_FOR_NAME: HeaderName = HeaderName::from_static(X_FORWARDED_FOR);
const CONTENT_TYPE_TEXT_PLAIN: HeaderValue = HeaderValue::from_static(TEXT_PLAIN);
const CONTENT_TYPE_TEXT_HTML: HeaderValue = HeaderValue::from_static(TEXT_HTML);
const SERVER_VALUE: HeaderValue = HeaderValue::from_static(SERVER);

/// `GET /`: the metadata versions, one per line, `latest` last.
static VERSION_LIST: LazyLock<Bytes> = LazyLock::new(|| Bytes::from(path::VERSIONS.join("\n")));

/// What the server knows about the connection a request came on.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    /// Caller's address (IPv4-mapped addresses already unmapped).
    pub peer: IpAddr,
    /// The request reached an IPv6 endpoint.
    pub via_ipv6: bool,
    /// Lowers the TTL of the connection's next writes.
    pub hop_limit: HopLimitControl,
}

/// The answer to a request.
#[derive(Debug)]
pub enum Outcome {
    /// Send this response.
    Respond(Response<Full<Bytes>>),
    /// Close the connection without answering (reason for the metric).
    Close(&'static str),
}

/// The parts of a request the data plane reads.
#[derive(Debug)]
pub struct RequestHead<'a> {
    /// Method.
    pub method: &'a Method,
    /// Path and query as sent.
    pub path_and_query: &'a str,
    /// Headers.
    pub headers: &'a HeaderMap,
}

/// Answers one request.
pub fn handle(dp: &DataPlane, conn: &ConnInfo, req: &RequestHead<'_>) -> Outcome {
    let Some(slot) = dp.slot_for(conn.peer) else {
        return Outcome::Close("unknown_source");
    };
    let snap = slot.load();
    let endpoint_on = snap.options.http_endpoint.is_enabled();
    if !slot.admission().admit_request() {
        // Over the instance's request rate
        // (docs/protocol/data-plane.md#throttling): 429, empty. The server also
        // stops reading the connection for a while.
        dp.metrics().throttled.inc();
        let response = empty(StatusCode::TOO_MANY_REQUESTS);
        dp.metrics().request(RequestLabels {
            version: ImdsVersion::V1,
            route: RouteClass::Other,
            status: 429,
        });
        return Outcome::Respond(response);
    }
    if conn.via_ipv6 && !(endpoint_on && snap.options.http_protocol_ipv6.is_enabled()) {
        // The IPv6 endpoint of such an instance does not exist at all.
        return Outcome::Close("ipv6_disabled");
    }
    let token = req.headers.get(&TOKEN_NAME);
    let version =
        if token.is_some() || is_token_path(req.path_and_query) { ImdsVersion::V2 } else { ImdsVersion::V1 };
    let (route_class, response) = if endpoint_on {
        route(dp, conn, &snap, req, token)
    } else {
        (RouteClass::Other, empty(StatusCode::FORBIDDEN))
    };
    dp.metrics().request(RequestLabels { version, route: route_class, status: response.status().as_u16() });
    Outcome::Respond(response)
}

fn is_token_path(p: &str) -> bool {
    p.ends_with("/api/token")
}

fn route(
    dp: &DataPlane,
    conn: &ConnInfo,
    snap: &InstanceSnapshot,
    req: &RequestHead<'_>,
    token_header: Option<&HeaderValue>,
) -> (RouteClass, Response<Full<Bytes>>) {
    let Ok(normal) = path::normalise(req.path_and_query) else {
        return (RouteClass::Other, html(StatusCode::BAD_REQUEST, BAD_REQUEST_HTML));
    };
    let route = normal.route();
    if let Route::Token { latest } = route {
        return (RouteClass::Token, token(dp, conn, snap, req, latest));
    }
    if req.method != Method::GET && req.method != Method::HEAD {
        let mut r = empty(StatusCode::METHOD_NOT_ALLOWED);
        r.headers_mut().insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return (class_of(&route), r);
    }
    let remaining = match authenticate(dp, snap, req.headers, token_header) {
        Auth::V1 => {
            let user_agent = req.headers.get(http::header::USER_AGENT).map(HeaderValue::as_bytes);
            dp.usage().no_token(&snap.instance_id, conn.peer, user_agent, normal.as_str());
            None
        }
        Auth::V2 { remaining } => Some(remaining),
        Auth::Forbidden => return (class_of(&route), empty(StatusCode::FORBIDDEN)),
        Auth::Unauthorized => return (class_of(&route), html(StatusCode::UNAUTHORIZED, UNAUTHORIZED_HTML)),
    };
    let v2 = remaining.is_some();
    let mut resp = match route {
        Route::VersionList => text(VERSION_LIST.clone(), TEXT_PLAIN),
        Route::Tree(p) => match snap.tree().get(p) {
            Some(node) => match node.body(v2) {
                Some(body) => text(body, node.content_type()),
                None => empty(StatusCode::INTERNAL_SERVER_ERROR),
            },
            None => html(StatusCode::NOT_FOUND, NOT_FOUND_HTML),
        },
        Route::NotFound | Route::Token { .. } => html(StatusCode::NOT_FOUND, NOT_FOUND_HTML),
    };
    if let Some(secs) = remaining {
        resp.headers_mut().insert(TOKEN_TTL_NAME, HeaderValue::from(secs));
    }
    (class_of(&route), resp)
}

/// The IMDSv1 / IMDSv2 decision for a GET or HEAD.
enum Auth {
    /// Token-less and allowed.
    V1,
    /// A valid token with this many whole seconds left.
    V2 { remaining: u32 },
    /// A token-bearing request through a proxy (`X-Forwarded-For`).
    Forbidden,
    /// No token where one is required, or a bad token.
    Unauthorized,
}

fn authenticate(
    dp: &DataPlane,
    snap: &InstanceSnapshot,
    headers: &HeaderMap,
    token_header: Option<&HeaderValue>,
) -> Auth {
    let metrics = dp.metrics();
    match token_header {
        Some(_) if headers.contains_key(&X_FORWARDED_FOR_NAME) => Auth::Forbidden,
        Some(token) => {
            let binding =
                TokenBinding { instance_id: snap.instance_id.as_str(), incarnation: snap.incarnation };
            match dp.keys().open(token.as_bytes(), &binding, dp.clock().now_millis()) {
                Ok(remaining) => Auth::V2 { remaining },
                Err(e) => {
                    metrics.reject_token(e.reason());
                    Auth::Unauthorized
                }
            }
        }
        None if snap.options.http_tokens == HttpTokens::Required => {
            metrics.no_token_rejected.inc();
            dp.usage().no_token_rejected(&snap.instance_id);
            Auth::Unauthorized
        }
        None => {
            metrics.no_token.inc();
            Auth::V1
        }
    }
}

/// `PUT /<version>/api/token` (docs/protocol/data-plane.md#token-put, in that order).
fn token(
    dp: &DataPlane,
    conn: &ConnInfo,
    snap: &InstanceSnapshot,
    req: &RequestHead<'_>,
    latest: bool,
) -> Response<Full<Bytes>> {
    if req.method != Method::PUT {
        let mut r = empty(StatusCode::METHOD_NOT_ALLOWED);
        r.headers_mut().insert(ALLOW, HeaderValue::from_static("PUT"));
        return r;
    }
    if !latest || req.headers.contains_key(&X_FORWARDED_FOR_NAME) {
        return empty(StatusCode::FORBIDDEN);
    }
    let Some(ttl_header) = req.headers.get(&TOKEN_TTL_NAME) else {
        return html(StatusCode::BAD_REQUEST, BAD_REQUEST_HTML);
    };
    let Ok(ttl) = parse_ttl(ttl_header.as_bytes()) else {
        return html(StatusCode::BAD_REQUEST, BAD_REQUEST_HTML);
    };
    let binding = TokenBinding { instance_id: snap.instance_id.as_str(), incarnation: snap.incarnation };
    let token = match dp.keys().seal(&binding, dp.clock().now_millis(), ttl) {
        Ok(t) => t,
        Err(e) => {
            tracing::error!(error = %e, "cannot seal a token");
            return empty(StatusCode::INTERNAL_SERVER_ERROR);
        }
    };
    dp.metrics().tokens_issued.inc();
    conn.hop_limit.lower_to(snap.options.http_put_response_hop_limit.get());
    let mut resp = text(Bytes::from(token), TEXT_PLAIN);
    resp.headers_mut().insert(TOKEN_TTL_NAME, granted_ttl(ttl_header, ttl));
    resp
}

fn class_of(route: &Route<'_>) -> RouteClass {
    match route {
        Route::VersionList => RouteClass::Root,
        Route::Token { .. } => RouteClass::Token,
        Route::NotFound => RouteClass::Other,
        Route::Tree(p) => {
            let (top, rest) = p.split_once('/').unwrap_or((p, ""));
            match top {
                "" => RouteClass::Root,
                "user-data" => RouteClass::UserData,
                "dynamic" => RouteClass::Dynamic,
                "meta-data"
                    if rest.starts_with("iam/security-credentials/")
                        || rest.starts_with("identity-credentials/ec2/security-credentials/") =>
                {
                    RouteClass::Credentials
                }
                "meta-data" => RouteClass::MetaData,
                _ => RouteClass::Other,
            }
        }
    }
}

/// The TTL response header of a token PUT: the request's own value when it
/// is already the canonical spelling of `ttl` (what clients send: `21600`),
/// which costs nothing; else `ttl` written out (`021600`, ` 60 ` → `60`).
fn granted_ttl(requested: &HeaderValue, ttl: u32) -> HeaderValue {
    let bytes = requested.as_bytes();
    let canonical =
        bytes.first().is_some_and(|b| (b'1'..=b'9').contains(b)) && bytes.iter().all(u8::is_ascii_digit);
    if canonical { requested.clone() } else { HeaderValue::from(ttl) }
}

fn response(status: StatusCode, body: Bytes, content_type: HeaderValue) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(CONTENT_TYPE, content_type);
    h.insert(http::header::SERVER, SERVER_VALUE);
    r
}

fn text(body: Bytes, content_type: &'static str) -> Response<Full<Bytes>> {
    let content_type = match content_type {
        TEXT_PLAIN => CONTENT_TYPE_TEXT_PLAIN,
        other => HeaderValue::from_static(other),
    };
    response(StatusCode::OK, body, content_type)
}

fn html(status: StatusCode, page: &'static str) -> Response<Full<Bytes>> {
    response(status, Bytes::from_static(page.as_bytes()), CONTENT_TYPE_TEXT_HTML)
}

/// 403 / 405 answers: empty body, `text/plain` (as captured from real IMDS).
fn empty(status: StatusCode) -> Response<Full<Bytes>> {
    response(status, Bytes::new(), CONTENT_TYPE_TEXT_PLAIN)
}
