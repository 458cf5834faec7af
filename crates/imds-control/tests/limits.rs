//! The control listener's admission limits over real sockets and real
//! SigV4 signatures, served by [`imds_control::listener::serve`]: the
//! per-credential rate limit in each protocol's error shape, the source
//! bucket of failed authentication, reloads, and the header-read and
//! whole-request timeouts.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic is the failure report

mod common;

use common::{AKID, LIMITED_AKID, LIMITED_SECRET, Resp, SECRET, Server, T0, admin_policy_free, limited};
use imds_control::{ControlConfig, ControlLimits, ControlPlane, LimitsHandle, StaticCredential};
use imds_core::ManualClock;
use imds_store::MemoryStore;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const ALLOW_ALL: &str =
    r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}"#;

/// A control plane served by `listener::serve` with `limits`; the handle
/// changes them while it serves.
async fn start(limits: ControlLimits) -> (Server, LimitsHandle, ControlPlaneMetrics) {
    let store = Arc::new(MemoryStore::new());
    let clock = ManualClock::new(T0 * 1000);
    let config = ControlConfig {
        credentials: vec![admin_policy_free(), limited(ALLOW_ALL)],
        limits,
        ..ControlConfig::default()
    };
    let cp = ControlPlane::new(
        store.clone(),
        config,
        Arc::new(Vec::<StaticCredential>::new()),
        Arc::new(clock.clone()),
    );
    let handle = cp.limits();
    let metrics = cp.metrics().clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (_stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let router = cp.router();
    let serving = handle.clone();
    tokio::spawn(async move {
        let _keep_sender = _stop_tx;
        imds_control::listener::serve(router, listener, serving, stop_rx).await;
    });
    (Server { addr, store, clock, max_body: 1024 * 1024 }, handle, metrics)
}

type ControlPlaneMetrics = imds_control::ControlMetrics;

fn limits(requests_per_second: f64, burst: u32) -> ControlLimits {
    ControlLimits { requests_per_second, burst, ..ControlLimits::default() }
}

async fn describe(s: &Server, akid: &str, secret: &str) -> Resp {
    s.ec2_as(akid, secret, "DescribeInstances", &[]).await
}

/// A signed request for `service` carrying `X-Amz-Target: target` (not a
/// signed header, so the signature stays valid).
fn with_target(raw: Vec<u8>, target: &str) -> Vec<u8> {
    let text = String::from_utf8(raw).unwrap();
    let (first, rest) = text.split_once("\r\n").unwrap();
    format!("{first}\r\nx-amz-target: {target}\r\n{rest}").into_bytes()
}

fn metric_text(m: &ControlPlaneMetrics) -> String {
    let mut registry = prometheus_client::registry::Registry::default();
    m.register(&mut registry);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    text
}

#[tokio::test]
async fn ec2_throttles_each_key_with_request_limit_exceeded() {
    let (s, handle, metrics) = start(limits(0.001, 2)).await;
    describe(&s, AKID, SECRET).await.assert_ok();
    describe(&s, AKID, SECRET).await.assert_ok();
    let r = describe(&s, AKID, SECRET).await;
    r.assert_error(503, "RequestLimitExceeded");
    assert_eq!(r.message(), "Request limit exceeded.");
    let id = r.text("RequestID").unwrap();
    assert_eq!(
        r.body,
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error><Code>RequestLimitExceeded</Code><Message>Request limit exceeded.</Message></Error></Errors><RequestID>{id}</RequestID></Response>"
        )
    );
    // Another key has its own bucket.
    describe(&s, LIMITED_AKID, LIMITED_SECRET).await.assert_ok();
    // A caller that fails authentication cannot spend the admin's budget
    // (nor its own beyond its source's bucket): it gets AuthFailure until
    // the source bucket is empty, then the throttling error.
    describe(&s, AKID, "wrong-secret").await.assert_error(403, "SignatureDoesNotMatch");
    describe(&s, "AKIAUNKNOWN000000000", SECRET).await.assert_error(401, "AuthFailure");
    describe(&s, AKID, "wrong-secret").await.assert_error(503, "RequestLimitExceeded");
    describe(&s, LIMITED_AKID, LIMITED_SECRET).await.assert_ok();
    let text = metric_text(&metrics);
    assert!(text.contains("imds_control_throttled_total{api=\"ec2\",bucket=\"credential\"} 1"), "{text}");
    assert!(text.contains("imds_control_throttled_total{api=\"ec2\",bucket=\"source\"} 1"), "{text}");
    assert!(
        text.contains("imds_control_calls_total{api=\"ec2\",action=\"DescribeInstances\",code=\"RequestLimitExceeded\"} 2"),
        "{text}"
    );
    // A reload that raises the limit takes effect at once (fresh buckets).
    handle.set(limits(0.001, 5));
    for _ in 0..5 {
        describe(&s, AKID, SECRET).await.assert_ok();
    }
    describe(&s, AKID, SECRET).await.assert_error(503, "RequestLimitExceeded");
    // Off.
    handle.set(limits(0.0, 1));
    for _ in 0..20 {
        describe(&s, AKID, SECRET).await.assert_ok();
    }
}

#[tokio::test]
async fn an_empty_bucket_refills() {
    let (s, _handle, _) = start(limits(2.0, 1)).await;
    // Sends faster than 2/s until refused (the first refusal comes at the
    // second request unless the machine stalls for half a second).
    let mut refused = false;
    for _ in 0..20 {
        if describe(&s, AKID, SECRET).await.status == 503 {
            refused = true;
            break;
        }
    }
    assert!(refused, "a 2/s bucket of 1 refuses back-to-back requests");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    describe(&s, AKID, SECRET).await.assert_ok();
}

#[tokio::test]
async fn lightsail_and_cloudwatch_answer_with_their_throttling_errors() {
    let (s, _handle, metrics) = start(limits(0.001, 1)).await;
    let ls = || {
        with_target(
            s.sign(AKID, SECRET, "POST", "/", "{}", "lightsail", "us-east-1", false),
            "Lightsail_20161128.GetInstances",
        )
    };
    let r = s.send(&ls()).await;
    assert_eq!(r.status, 200, "{}", r.body);
    // The key's bucket is shared by every API of the endpoint.
    let r = s.send(&ls()).await;
    assert_eq!(r.status, 400, "{}", r.body);
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(v["__type"], "ThrottlingException");
    assert_eq!(v["message"], "Rate exceeded");
    assert_eq!(r.header("content-type"), Some("application/x-amz-json-1.1"));

    let cw = s.sign(
        LIMITED_AKID,
        LIMITED_SECRET,
        "POST",
        "/",
        "Action=ListMetrics&Version=2010-08-01",
        "monitoring",
        "us-east-1",
        false,
    );
    let r = s.send(&cw).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = s.send(&cw).await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.text("Code").as_deref(), Some("Throttling"), "{}", r.body);
    assert_eq!(r.text("Type").as_deref(), Some("Sender"), "{}", r.body);
    let cw_json = with_target(
        s.sign(LIMITED_AKID, LIMITED_SECRET, "POST", "/", "{}", "monitoring", "us-east-1", false),
        "GraniteServiceVersion20100801.ListMetrics",
    );
    let r = s.send(&cw_json).await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.header("x-amzn-query-error"), Some("Throttling;Sender"));
    assert!(r.body.contains("ThrottlingException"), "{}", r.body);

    let text = metric_text(&metrics);
    assert!(
        text.contains("imds_control_throttled_total{api=\"lightsail\",bucket=\"credential\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("imds_control_throttled_total{api=\"cloudwatch\",bucket=\"credential\"} 2"),
        "{text}"
    );
}

/// Reads until EOF (or an error such as a reset); `None` if the server
/// kept the connection open past `within`.
async fn read_until_closed(conn: &mut tokio::net::TcpStream, within: Duration) -> Option<Vec<u8>> {
    let mut got = Vec::new();
    let read = async {
        let mut buf = [0u8; 4096];
        loop {
            match conn.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(within, read).await.ok().map(|()| got)
}

#[tokio::test]
async fn a_slow_request_head_is_disconnected() {
    let header_read_timeout = Duration::from_secs(1);
    let (s, _handle, _) = start(ControlLimits { header_read_timeout, ..ControlLimits::default() }).await;
    let mut conn = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    let (mut rd, mut wr) = conn.split();
    let head = b"POST / HTTP/1.1\r\nhost: x\r\ncontent-type: application/x-www-form-urlencoded\r\nx-padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    // One byte every 100 ms: the head would take ~14 s; the server gives up
    // after 1 s. The read side sees the close (EOF or a reset).
    let trickle = async {
        for b in head {
            if wr.write_all(&[*b]).await.is_err() {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        true
    };
    let closed = async {
        let mut buf = [0u8; 1024];
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::select! {
        completed = trickle => panic!("the whole head was accepted (completed={completed}) without a disconnect"),
        () = closed => {}
    }
}

#[tokio::test]
async fn a_body_that_never_completes_is_cut_off_with_a_retryable_error() {
    let request_timeout = Duration::from_secs(1);
    let (s, _handle, metrics) = start(ControlLimits { request_timeout, ..ControlLimits::default() }).await;
    let mut conn = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    conn.write_all(
        b"POST / HTTP/1.1\r\nhost: x\r\ncontent-type: application/x-www-form-urlencoded\r\ncontent-length: 1000\r\n\r\nAction=Describe",
    )
    .await
    .unwrap();
    let got = read_until_closed(&mut conn, Duration::from_secs(30))
        .await
        .expect("the server closes the connection");
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 503"), "{text}");
    assert!(text.to_ascii_lowercase().contains("connection: close"), "{text}");
    assert!(
        text.contains("<Response><Errors><Error><Code>ServiceUnavailable</Code><Message>The request did not complete within 1 seconds.</Message></Error></Errors><RequestID>"),
        "{text}"
    );
    let text = metric_text(&metrics);
    assert!(
        text.contains(
            "imds_control_calls_total{api=\"ec2\",action=\"unknown\",code=\"ServiceUnavailable\"} 1"
        ),
        "{text}"
    );

    // Lightsail's shape for the same: a ServiceException (500).
    let mut conn = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    conn.write_all(
        b"POST / HTTP/1.1\r\nhost: x\r\nx-amz-target: Lightsail_20161128.GetInstances\r\ncontent-length: 10\r\n\r\n{",
    )
    .await
    .unwrap();
    let got = read_until_closed(&mut conn, Duration::from_secs(30)).await.expect("closed");
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 500"), "{text}");
    assert!(text.contains("\"__type\":\"ServiceException\""), "{text}");
}
