//! CloudWatch's metric read API (JSON 1.0, RPC v2 CBOR, query) and
//! Lightsail's `GetInstanceMetricData`, over real SigV4 signatures, with
//! usage data written by the real `imds_usage::UsageRecorder` under a
//! manual clock: the exact answers and errors of every protocol, the
//! routing next to EC2 and Lightsail on one listener, IAM, and the
//! control-plane metrics.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use ciborium::Value as Cbor;
use common::{ACCOUNT, AKID, LIMITED_AKID, LIMITED_SECRET, SECRET, admin_policy_free, limited};
use imds_control::{ControlConfig, ControlMetrics, ControlPlane, StaticCredential};
use imds_core::{Clock, InstanceId, ManualClock};
use imds_dataplane::usage::UsageSink;
use imds_store::MemoryStore;
use imds_usage::{UsageConfig, UsageRecorder};
use serde_json::{Value, json};
use std::borrow::Cow;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// 2024-01-02T03:04:00Z, a minute start.
const M0: u64 = 1_704_164_640;
const INSTANCE: &str = "i-0123456789abcdef0";
const XMLNS: &str = "http://monitoring.amazonaws.com/doc/2010-08-01/";
const CBOR_PATH: &str = "/service/GraniteServiceVersion20100801/operation/";

struct Plane {
    addr: SocketAddr,
    store: Arc<MemoryStore>,
    clock: ManualClock,
    metrics: ControlMetrics,
}

struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    fn text(&self) -> String {
        String::from_utf8(self.body.clone()).unwrap()
    }

    /// The body with the request id (from `x-amzn-requestid`) replaced by `REQ`.
    fn normalized(&self) -> String {
        let id = self.header("x-amzn-requestid").unwrap().to_owned();
        assert_eq!(id.len(), 36, "{id}");
        self.text().replace(&id, "REQ")
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }

    fn cbor(&self) -> Cbor {
        ciborium::from_reader(self.body.as_slice()).unwrap()
    }
}

impl Plane {
    async fn start() -> Self {
        let store = Arc::new(MemoryStore::new());
        let clock = ManualClock::new((M0 + 600) * 1000);
        let allowed = limited(
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["cloudwatch:GetMetricStatistics","lightsail:CreateInstances","lightsail:GetInstance"],"Resource":"*"}]}"#,
        );
        let config = ControlConfig {
            credentials: vec![admin_policy_free(), allowed],
            max_body_bytes: 64 * 1024,
            ..ControlConfig::default()
        };
        let cp = ControlPlane::new(
            store.clone(),
            config,
            Arc::new(Vec::<StaticCredential>::new()),
            Arc::new(clock.clone()),
        );
        let metrics = cp.metrics().clone();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let router = cp.router();
        tokio::spawn(async move {
            axum::serve(listener, router).await.unwrap();
        });
        Self { addr, store, clock, metrics }
    }

    /// Records usage with the real recorder: `(minute, served, rejected)`
    /// for `instance`, then flushes at `M0 + 600`.
    async fn usage(&self, instance: &str, minutes: &[(u64, u64, u64)]) {
        let recorder =
            UsageRecorder::new(self.store.clone(), Arc::new(self.clock.clone()), UsageConfig::default());
        let id = InstanceId::parse(instance).unwrap();
        let source: IpAddr = "10.0.0.5".parse().unwrap();
        for &(minute, served, rejected) in minutes {
            self.clock.set_millis((minute + 7) * 1000);
            for _ in 0..served {
                recorder.no_token(&id, source, Some(b"curl/8.0"), "/latest/meta-data/");
            }
            for _ in 0..rejected {
                recorder.no_token_rejected(&id);
            }
        }
        self.clock.set_millis((M0 + 600) * 1000);
        recorder.flush().await.unwrap();
    }

    /// A signed request as raw bytes.
    #[allow(clippy::too_many_arguments)]
    fn signed(
        &self,
        akid: &str,
        secret: &str,
        service: &str,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Vec<u8> {
        let uri = format!("http://{}{path}", self.addr);
        let identity: Identity = Credentials::new(akid, secret, None, None, "test").into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region("us-east-1")
            .name(service)
            .time(UNIX_EPOCH + Duration::from_millis(self.clock.now_millis()))
            .settings(SigningSettings::default())
            .build()
            .unwrap()
            .into();
        let signable = SignableRequest::new(
            method,
            Cow::Owned(uri.clone()),
            headers.iter().copied(),
            SignableBody::Bytes(body),
        )
        .unwrap();
        let (instructions, _) = sign(signable, &params).unwrap().into_parts();
        let mut req = http::Request::builder().method(method).uri(&uri);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let mut req = req.body(body.to_vec()).unwrap();
        instructions.apply_to_request_http1x(&mut req);
        let target = req.uri().path_and_query().map(|p| p.as_str().to_owned()).unwrap();
        let mut raw = format!("{method} {target} HTTP/1.1\r\nhost: {}\r\n", self.addr);
        for (k, v) in req.headers() {
            raw.push_str(&format!("{}: {}\r\n", k, v.to_str().unwrap()));
        }
        raw.push_str(&format!("content-length: {}\r\nconnection: close\r\n\r\n", body.len()));
        let mut bytes = raw.into_bytes();
        bytes.extend_from_slice(body);
        bytes
    }

    async fn send(&self, raw: &[u8]) -> Resp {
        let mut s = tokio::net::TcpStream::connect(self.addr).await.unwrap();
        s.write_all(raw).await.unwrap();
        let mut buf = Vec::new();
        let _ = s.read_to_end(&mut buf).await;
        let split = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
        let head = String::from_utf8_lossy(&buf[..split]).into_owned();
        let body = buf[split + 4..].to_vec();
        let mut lines = head.split("\r\n");
        let status = lines.next().and_then(|l| l.split(' ').nth(1)).and_then(|s| s.parse().ok()).unwrap();
        let headers = lines
            .filter_map(|l| l.split_once(':').map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned())))
            .collect::<Vec<_>>();
        assert!(
            !headers
                .iter()
                .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked")),
            "chunked answers are not expected"
        );
        Resp { status, headers, body }
    }

    /// A JSON 1.0 call as `akid`, signed for `service`.
    async fn json_as(&self, akid: &str, secret: &str, service: &str, op: &str, body: &Value) -> Resp {
        let target = format!("GraniteServiceVersion20100801.{op}");
        let headers = [
            ("content-type", "application/x-amz-json-1.0"),
            ("x-amz-target", target.as_str()),
            ("x-amzn-query-mode", "true"),
        ];
        let raw = self.signed(akid, secret, service, "POST", "/", &headers, body.to_string().as_bytes());
        self.send(&raw).await
    }

    async fn json(&self, op: &str, body: Value) -> Resp {
        self.json_as(AKID, SECRET, "monitoring", op, &body).await
    }

    /// A query call (form body) signed for `monitoring`.
    async fn query(&self, params: &[(&str, &str)]) -> Resp {
        self.query_as(AKID, SECRET, "monitoring", params).await
    }

    async fn query_as(&self, akid: &str, secret: &str, service: &str, params: &[(&str, &str)]) -> Resp {
        let body = common::form(params);
        let headers = [("content-type", "application/x-www-form-urlencoded; charset=utf-8")];
        let raw = self.signed(akid, secret, service, "POST", "/", &headers, body.as_bytes());
        self.send(&raw).await
    }

    /// An RPC v2 CBOR call.
    async fn cbor(&self, op: &str, body: &Cbor) -> Resp {
        let mut bytes = Vec::new();
        ciborium::into_writer(body, &mut bytes).unwrap();
        let headers = [
            ("content-type", "application/cbor"),
            ("accept", "application/cbor"),
            ("smithy-protocol", "rpc-v2-cbor"),
            ("x-amzn-query-mode", "true"),
        ];
        let raw =
            self.signed(AKID, SECRET, "monitoring", "POST", &format!("{CBOR_PATH}{op}"), &headers, &bytes);
        self.send(&raw).await
    }

    /// A Lightsail JSON 1.1 call.
    async fn lightsail_as(&self, akid: &str, secret: &str, op: &str, body: &Value) -> Resp {
        let target = format!("Lightsail_20161128.{op}");
        let headers = [("content-type", "application/x-amz-json-1.1"), ("x-amz-target", target.as_str())];
        let raw = self.signed(akid, secret, "lightsail", "POST", "/", &headers, body.to_string().as_bytes());
        self.send(&raw).await
    }

    async fn lightsail(&self, op: &str, body: Value) -> Resp {
        self.lightsail_as(AKID, SECRET, op, &body).await
    }

    /// The Prometheus text of the plane's metrics.
    fn metrics_text(&self) -> String {
        let mut registry = prometheus_client::registry::Registry::default();
        self.metrics.register(&mut registry);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        text
    }

    fn calls(&self, api: &str, action: &str, code: &str) -> u64 {
        let series =
            format!("imds_control_calls_total{{api=\"{api}\",action=\"{action}\",code=\"{code}\"}} ");
        self.metrics_text()
            .lines()
            .find_map(|l| l.strip_prefix(&series))
            .map_or(0, |v| v.trim().parse().unwrap())
    }
}

/// Usage of the sample: minute 0 three served and one rejected, minute 1
/// only two rejected (observed, `MetadataNoToken` 0), minute 3 five served.
const SAMPLE: &[(u64, u64, u64)] = &[(M0, 3, 1), (M0 + 60, 0, 2), (M0 + 180, 5, 0)];

fn gms_json(stats: &[&str]) -> Value {
    json!({
        "Namespace": "AWS/EC2",
        "MetricName": "MetadataNoToken",
        "Dimensions": [{"Name": "InstanceId", "Value": INSTANCE}],
        "StartTime": M0,
        "EndTime": M0 + 360,
        "Period": 120,
        "Statistics": stats,
    })
}

#[track_caller]
fn ok_json(r: &Resp) -> Value {
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/x-amz-json-1.0"));
    assert!(r.header("x-amzn-requestid").is_some_and(|v| v.len() == 36));
    assert_eq!(r.header("x-amzn-query-error"), None);
    r.json()
}

/// Asserts a JSON error: status, `__type`, the query code header; returns
/// the message.
#[track_caller]
fn json_err(r: &Resp, status: u16, shape: &str, code: &str) -> String {
    assert_eq!(r.status, status, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/x-amz-json-1.0"));
    let v = r.json();
    assert_eq!(v["__type"], shape, "{v}");
    let fault = if status >= 500 { "Receiver" } else { "Sender" };
    assert_eq!(r.header("x-amzn-query-error"), Some(format!("{code};{fault}").as_str()));
    assert_eq!(v.as_object().unwrap().len(), 2, "{v}");
    v["message"].as_str().unwrap().to_owned()
}

/// Asserts a query error document; returns the message.
#[track_caller]
fn query_err(r: &Resp, status: u16, code: &str) -> String {
    assert_eq!(r.status, status, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("text/xml"));
    let body = r.normalized();
    let prefix =
        format!("<ErrorResponse xmlns=\"{XMLNS}\"><Error><Type>Sender</Type><Code>{code}</Code><Message>");
    assert!(body.starts_with(&prefix), "{body}");
    assert!(body.ends_with("</Message></Error><RequestId>REQ</RequestId></ErrorResponse>"), "{body}");
    body[prefix.len()..body.len() - "</Message></Error><RequestId>REQ</RequestId></ErrorResponse>".len()]
        .to_owned()
}

fn text(s: &str) -> Cbor {
    Cbor::Text(s.to_owned())
}

fn time(secs: u64) -> Cbor {
    Cbor::Tag(1, Box::new(Cbor::Integer(secs.into())))
}

fn map(entries: Vec<(&str, Cbor)>) -> Cbor {
    Cbor::Map(entries.into_iter().map(|(k, v)| (text(k), v)).collect())
}

#[tokio::test]
async fn get_metric_statistics_json_is_exact() {
    let p = Plane::start().await;
    p.usage(INSTANCE, SAMPLE).await;
    let r = p
        .json("GetMetricStatistics", gms_json(&["Maximum", "Sum", "SampleCount", "Average", "Minimum"]))
        .await;
    ok_json(&r);
    assert_eq!(
        r.text(),
        format!(
            r#"{{"Label":"MetadataNoToken","Datapoints":[{{"Timestamp":{},"SampleCount":2.0,"Average":1.5,"Sum":3.0,"Minimum":0.0,"Maximum":3.0,"Unit":"Count"}},{{"Timestamp":{},"SampleCount":1.0,"Average":5.0,"Sum":5.0,"Minimum":5.0,"Maximum":5.0,"Unit":"Count"}}]}}"#,
            M0,
            M0 + 120
        )
    );
    // The rejected ones are their own metric.
    let mut body = gms_json(&["Sum", "SampleCount"]);
    body["MetricName"] = json!("MetadataNoTokenRejected");
    assert_eq!(
        ok_json(&p.json("GetMetricStatistics", body).await),
        json!({"Label": "MetadataNoTokenRejected", "Datapoints": [
            {"Timestamp": M0, "SampleCount": 2.0, "Sum": 3.0, "Unit": "Count"},
            {"Timestamp": M0 + 120, "SampleCount": 1.0, "Sum": 0.0, "Unit": "Count"}]})
    );
    // Fractional epoch times (botocore sends them with microseconds) round down.
    let mut body = gms_json(&["Sum"]);
    body["StartTime"] = json!(M0 as f64 + 0.25);
    body["Period"] = json!(60);
    let v = ok_json(&p.json("GetMetricStatistics", body).await);
    assert_eq!(v["Datapoints"].as_array().unwrap().len(), 3, "{v}");
}

#[tokio::test]
async fn get_metric_statistics_query_is_exact() {
    let p = Plane::start().await;
    p.usage(INSTANCE, SAMPLE).await;
    let r = p
        .query(&[
            ("Action", "GetMetricStatistics"),
            ("Version", "2010-08-01"),
            ("Namespace", "AWS/EC2"),
            ("MetricName", "MetadataNoToken"),
            ("Dimensions.member.1.Name", "InstanceId"),
            ("Dimensions.member.1.Value", INSTANCE),
            ("StartTime", "2024-01-02T03:04:00Z"),
            ("EndTime", "2024-01-02T03:10:00.000Z"),
            ("Period", "120"),
            ("Statistics.member.1", "Sum"),
            ("Statistics.member.2", "SampleCount"),
        ])
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("text/xml"));
    assert_eq!(
        r.normalized(),
        format!(
            "<GetMetricStatisticsResponse xmlns=\"{XMLNS}\"><GetMetricStatisticsResult><Label>MetadataNoToken</Label><Datapoints><member><Timestamp>2024-01-02T03:04:00Z</Timestamp><SampleCount>2.0</SampleCount><Sum>3.0</Sum><Unit>Count</Unit></member><member><Timestamp>2024-01-02T03:06:00Z</Timestamp><SampleCount>1.0</SampleCount><Sum>5.0</Sum><Unit>Count</Unit></member></Datapoints></GetMetricStatisticsResult><ResponseMetadata><RequestId>REQ</RequestId></ResponseMetadata></GetMetricStatisticsResponse>"
        )
    );
}

#[tokio::test]
async fn get_metric_statistics_cbor_is_exact() {
    let p = Plane::start().await;
    p.usage(INSTANCE, SAMPLE).await;
    let body = map(vec![
        ("Namespace", text("AWS/EC2")),
        ("MetricName", text("MetadataNoToken")),
        ("Dimensions", Cbor::Array(vec![map(vec![("Name", text("InstanceId")), ("Value", text(INSTANCE))])])),
        ("StartTime", time(M0)),
        ("EndTime", Cbor::Tag(1, Box::new(Cbor::Float((M0 + 360) as f64)))),
        ("Period", Cbor::Integer(120.into())),
        ("Statistics", Cbor::Array(vec![text("Sum"), text("Maximum")])),
    ]);
    let r = p.cbor("GetMetricStatistics", &body).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.header("content-type"), Some("application/cbor"));
    assert_eq!(r.header("smithy-protocol"), Some("rpc-v2-cbor"));
    assert!(r.header("x-amzn-requestid").is_some());
    let point = |t: u64, sum: f64, max: f64| {
        map(vec![
            ("Timestamp", time(t)),
            ("Sum", Cbor::Float(sum)),
            ("Maximum", Cbor::Float(max)),
            ("Unit", text("Count")),
        ])
    };
    assert_eq!(
        r.cbor(),
        map(vec![
            ("Label", text("MetadataNoToken")),
            ("Datapoints", Cbor::Array(vec![point(M0, 3.0, 3.0), point(M0 + 120, 5.0, 5.0)])),
        ])
    );
}

#[tokio::test]
async fn other_metrics_units_and_instances_have_no_datapoints() {
    let p = Plane::start().await;
    p.usage(INSTANCE, SAMPLE).await;
    let empty = json!({"Label": "MetadataNoToken", "Datapoints": []});
    let cases: Vec<(&str, Value)> = vec![
        ("Namespace", json!("AWS/Lambda")),
        ("Dimensions", json!([])),
        (
            "Dimensions",
            json!([{"Name": "InstanceId", "Value": INSTANCE}, {"Name": "AutoScalingGroupName", "Value": "x"}]),
        ),
        ("Dimensions", json!([{"Name": "InstanceId", "Value": "i-00000000000000001"}])),
        ("Dimensions", json!([{"Name": "InstanceId", "Value": "not-an-id"}])),
        ("Unit", json!("Percent")),
    ];
    for (member, value) in cases {
        let mut body = gms_json(&["Sum"]);
        body[member] = value.clone();
        assert_eq!(ok_json(&p.json("GetMetricStatistics", body).await), empty, "{member}={value}");
    }
    let mut body = gms_json(&["Sum"]);
    body["MetricName"] = json!("CPUUtilization");
    assert_eq!(
        ok_json(&p.json("GetMetricStatistics", body).await),
        json!({"Label": "CPUUtilization", "Datapoints": []})
    );
    let mut body = gms_json(&["Sum"]);
    body["Unit"] = json!("Count");
    assert_eq!(
        ok_json(&p.json("GetMetricStatistics", body).await)["Datapoints"].as_array().unwrap().len(),
        2
    );
    // The same in the query protocol: an empty list element.
    let r = p
        .query(&[
            ("Action", "GetMetricStatistics"),
            ("Version", "2010-08-01"),
            ("Namespace", "AWS/EC2"),
            ("MetricName", "CPUUtilization"),
            ("StartTime", "2024-01-02T03:04:00Z"),
            ("EndTime", "2024-01-02T03:10:00Z"),
            ("Period", "60"),
            ("Statistics.member.1", "Average"),
        ])
        .await;
    assert_eq!(
        r.normalized(),
        format!(
            "<GetMetricStatisticsResponse xmlns=\"{XMLNS}\"><GetMetricStatisticsResult><Label>CPUUtilization</Label><Datapoints/></GetMetricStatisticsResult><ResponseMetadata><RequestId>REQ</RequestId></ResponseMetadata></GetMetricStatisticsResponse>"
        )
    );
}

#[tokio::test]
async fn errors_have_each_protocols_shape_and_the_model_codes() {
    let p = Plane::start().await;
    // JSON.
    let mut body = gms_json(&["Sum"]);
    body.as_object_mut().unwrap().remove("StartTime");
    let m = json_err(
        &p.json("GetMetricStatistics", body).await,
        400,
        "com.amazonaws.cloudwatch#MissingRequiredParameterException",
        "MissingParameter",
    );
    assert_eq!(m, "The parameter StartTime is required.");
    let mut body = gms_json(&["Sum"]);
    body["Period"] = json!(90);
    let m = json_err(
        &p.json("GetMetricStatistics", body).await,
        400,
        "com.amazonaws.cloudwatch#InvalidParameterValueException",
        "InvalidParameterValue",
    );
    assert_eq!(m, "The parameter Period must be a multiple of 60 and at least 60 (got 90).");
    let mut body = gms_json(&["Sum"]);
    body["Period"] = json!(60);
    body["EndTime"] = json!(M0 + 86_400 + 60);
    let m = json_err(
        &p.json("GetMetricStatistics", body).await,
        400,
        "com.amazonaws.cloudwatch#InvalidParameterCombinationException",
        "InvalidParameterCombination",
    );
    assert!(m.starts_with("You have requested up to 1441 datapoints"), "{m}");
    let mut body = gms_json(&["Sum"]);
    body["EndTime"] = json!(M0);
    let m = json_err(
        &p.json("GetMetricStatistics", body).await,
        400,
        "com.amazonaws.cloudwatch#InvalidParameterValueException",
        "InvalidParameterValue",
    );
    assert_eq!(m, "The parameter StartTime must be less than the parameter EndTime.");
    let m = json_err(
        &p.json("GetMetricStatistics", gms_json(&["p99"])).await,
        400,
        "com.amazonaws.cloudwatch#InvalidParameterValueException",
        "InvalidParameterValue",
    );
    assert_eq!(
        m,
        "The parameter Statistics.member.1 must be a value in the set [ SampleCount, Average, Sum, Minimum, Maximum ]."
    );
    let m = json_err(
        &p.json("GetMetricStatistics", gms_json(&[])).await,
        400,
        "com.amazonaws.cloudwatch#InvalidParameterCombinationException",
        "InvalidParameterCombination",
    );
    assert_eq!(m, "Must specify either Statistics or ExtendedStatistics, but not both.");
    let mut body = gms_json(&["Sum"]);
    body["Unit"] = json!("Apples");
    json_err(
        &p.json("GetMetricStatistics", body).await,
        400,
        "com.amazonaws.cloudwatch#InvalidParameterValueException",
        "InvalidParameterValue",
    );
    let mut body = gms_json(&["Sum"]);
    body["Period"] = json!("60");
    let m = json_err(
        &p.json("GetMetricStatistics", body).await,
        400,
        "com.amazonaws.cloudwatch#InvalidParameterValueException",
        "InvalidParameterValue",
    );
    assert_eq!(m, "The parameter Period must be an integer.");
    json_err(
        &p.json("PutMetricData", json!({})).await,
        400,
        "com.amazon.coral.service#UnknownOperationException",
        "InvalidAction",
    );
    let raw = p.signed(
        AKID,
        SECRET,
        "monitoring",
        "POST",
        "/",
        &[
            ("content-type", "application/x-amz-json-1.0"),
            ("x-amz-target", "GraniteServiceVersion20100801.ListMetrics"),
        ],
        b"{not json",
    );
    json_err(
        &p.send(&raw).await,
        400,
        "com.amazon.coral.service#SerializationException",
        "SerializationException",
    );

    // Query.
    let base = [
        ("Action", "GetMetricStatistics"),
        ("Version", "2010-08-01"),
        ("Namespace", "AWS/EC2"),
        ("MetricName", "MetadataNoToken"),
        ("StartTime", "2024-01-02T03:04:00Z"),
        ("Statistics.member.1", "Sum"),
        ("Period", "60"),
    ];
    let m = query_err(&p.query(&base).await, 400, "MissingParameter");
    assert_eq!(m, "The parameter EndTime is required.");
    let mut params = base.to_vec();
    params.push(("EndTime", "yesterday"));
    let m = query_err(&p.query(&params).await, 400, "InvalidParameterValue");
    assert_eq!(m, "The parameter EndTime must be a timestamp.");
    let mut params = base.to_vec();
    params.retain(|(k, _)| *k != "Period");
    params.extend([("EndTime", "2024-01-02T03:10:00Z"), ("Period", "0")]);
    let m = query_err(&p.query(&params).await, 400, "InvalidParameterValue");
    assert_eq!(m, "The parameter Period must be greater than 0.");
    let m = query_err(
        &p.query(&[("Action", "DeleteAlarms"), ("Version", "2010-08-01")]).await,
        400,
        "InvalidAction",
    );
    assert_eq!(m, "The action DeleteAlarms is not valid for this web service.");
    query_err(
        &p.query(&[("Action", "ListMetrics"), ("Version", "2011-01-01")]).await,
        400,
        "InvalidParameterValue",
    );
    query_err(&p.query(&[("Action", "ListMetrics")]).await, 400, "MissingParameter");

    // CBOR.
    let r = p.cbor("GetMetricStatistics", &map(vec![("Namespace", text("AWS/EC2"))])).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.header("smithy-protocol"), Some("rpc-v2-cbor"));
    assert_eq!(r.header("x-amzn-query-error"), Some("MissingParameter;Sender"));
    assert_eq!(
        r.cbor(),
        map(vec![
            ("__type", text("com.amazonaws.cloudwatch#MissingRequiredParameterException")),
            ("message", text("The parameter MetricName is required.")),
        ])
    );
    let r = p.cbor("GetMetricStatistics", &Cbor::Bytes(vec![1])).await;
    assert_eq!(r.header("x-amzn-query-error"), Some("SerializationException;Sender"));
    let r = p.cbor("DescribeAlarms", &map(vec![])).await;
    assert_eq!(r.header("x-amzn-query-error"), Some("InvalidAction;Sender"));
}

#[tokio::test]
async fn get_metric_data_in_every_protocol() {
    let p = Plane::start().await;
    p.usage(INSTANCE, SAMPLE).await;
    let metric = json!({"Namespace": "AWS/EC2", "MetricName": "MetadataNoToken",
                        "Dimensions": [{"Name": "InstanceId", "Value": INSTANCE}]});
    let body = json!({
        "MetricDataQueries": [
            {"Id": "sum", "MetricStat": {"Metric": metric, "Period": 60, "Stat": "Sum"}},
            {"Id": "max", "Label": "peak", "MetricStat": {"Metric": metric, "Period": 120, "Stat": "Maximum", "Unit": "Count"}},
            {"Id": "hidden", "ReturnData": false, "MetricStat": {"Metric": metric, "Period": 60, "Stat": "Sum"}},
            {"Id": "other", "MetricStat": {"Metric": {"Namespace": "AWS/EC2", "MetricName": "CPUUtilization"}, "Period": 60, "Stat": "Average"}},
        ],
        "StartTime": M0,
        "EndTime": M0 + 300,
    });
    let r = p.json("GetMetricData", body.clone()).await;
    ok_json(&r);
    assert_eq!(
        r.text(),
        format!(
            r#"{{"MetricDataResults":[{{"Id":"sum","Label":"MetadataNoToken","Timestamps":[{},{},{}],"Values":[5.0,0.0,3.0],"StatusCode":"Complete"}},{{"Id":"max","Label":"peak","Timestamps":[{},{}],"Values":[5.0,3.0],"StatusCode":"Complete"}},{{"Id":"other","Label":"CPUUtilization","Timestamps":[],"Values":[],"StatusCode":"Complete"}}],"Messages":[]}}"#,
            M0 + 180,
            M0 + 60,
            M0,
            M0 + 120,
            M0
        )
    );

    // Ascending, two datapoints per page.
    let mut paged = body.clone();
    paged["ScanBy"] = json!("TimestampAscending");
    paged["MaxDatapoints"] = json!(2);
    let page1 = ok_json(&p.json("GetMetricData", paged.clone()).await);
    let results = page1["MetricDataResults"].as_array().unwrap();
    assert_eq!(results[0]["Timestamps"], json!([M0, M0 + 60]));
    assert_eq!(results[0]["StatusCode"], "PartialData");
    assert_eq!(results[1]["Values"], json!([]));
    assert_eq!(results[1]["StatusCode"], "PartialData");
    let mut token = page1["NextToken"].as_str().unwrap().to_owned();
    let mut collected = vec![results[0]["Values"].clone()];
    loop {
        paged["NextToken"] = json!(token);
        let page = ok_json(&p.json("GetMetricData", paged.clone()).await);
        collected
            .push(json!([page["MetricDataResults"][0]["Values"], page["MetricDataResults"][1]["Values"]]));
        match page["NextToken"].as_str() {
            Some(t) => token = t.to_owned(),
            None => {
                assert!(
                    page["MetricDataResults"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .all(|r| r["StatusCode"] == "Complete")
                );
                break;
            }
        }
    }
    assert_eq!(collected, vec![json!([3.0, 0.0]), json!([[5.0], [3.0]]), json!([[], [5.0]])]);
    paged["NextToken"] = json!("garbage");
    json_err(
        &p.json("GetMetricData", paged).await,
        400,
        "com.amazonaws.cloudwatch#InvalidNextToken",
        "InvalidNextToken",
    );

    // Query.
    let r = p
        .query(&[
            ("Action", "GetMetricData"),
            ("Version", "2010-08-01"),
            ("MetricDataQueries.member.1.Id", "m1"),
            ("MetricDataQueries.member.1.MetricStat.Metric.Namespace", "AWS/EC2"),
            ("MetricDataQueries.member.1.MetricStat.Metric.MetricName", "MetadataNoToken"),
            ("MetricDataQueries.member.1.MetricStat.Metric.Dimensions.member.1.Name", "InstanceId"),
            ("MetricDataQueries.member.1.MetricStat.Metric.Dimensions.member.1.Value", INSTANCE),
            ("MetricDataQueries.member.1.MetricStat.Period", "360"),
            ("MetricDataQueries.member.1.MetricStat.Stat", "SampleCount"),
            ("StartTime", "2024-01-02T03:04:00Z"),
            ("EndTime", "2024-01-02T03:10:00Z"),
        ])
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.normalized(),
        format!(
            "<GetMetricDataResponse xmlns=\"{XMLNS}\"><GetMetricDataResult><MetricDataResults><member><Id>m1</Id><Label>MetadataNoToken</Label><Timestamps><member>2024-01-02T03:04:00Z</member></Timestamps><Values><member>3.0</member></Values><StatusCode>Complete</StatusCode></member></MetricDataResults><Messages/></GetMetricDataResult><ResponseMetadata><RequestId>REQ</RequestId></ResponseMetadata></GetMetricDataResponse>"
        )
    );

    // CBOR.
    let query = map(vec![
        ("Id", text("m1")),
        (
            "MetricStat",
            map(vec![
                (
                    "Metric",
                    map(vec![
                        ("Namespace", text("AWS/EC2")),
                        ("MetricName", text("MetadataNoToken")),
                        (
                            "Dimensions",
                            Cbor::Array(vec![map(vec![
                                ("Name", text("InstanceId")),
                                ("Value", text(INSTANCE)),
                            ])]),
                        ),
                    ]),
                ),
                ("Period", Cbor::Integer(360.into())),
                ("Stat", text("Average")),
            ]),
        ),
    ]);
    let r = p
        .cbor(
            "GetMetricData",
            &map(vec![
                ("MetricDataQueries", Cbor::Array(vec![query])),
                ("StartTime", time(M0)),
                ("EndTime", time(M0 + 360)),
            ]),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.cbor(),
        map(vec![
            (
                "MetricDataResults",
                Cbor::Array(vec![map(vec![
                    ("Id", text("m1")),
                    ("Label", text("MetadataNoToken")),
                    ("Timestamps", Cbor::Array(vec![time(M0)])),
                    ("Values", Cbor::Array(vec![Cbor::Float(8.0 / 3.0)])),
                    ("StatusCode", text("Complete")),
                ])]),
            ),
            ("Messages", Cbor::Array(vec![])),
        ])
    );
}

#[tokio::test]
async fn get_metric_data_validates_queries() {
    let p = Plane::start().await;
    let stat = json!({"Metric": {"Namespace": "AWS/EC2", "MetricName": "MetadataNoToken"}, "Period": 60, "Stat": "Sum"});
    let call = |queries: Value| {
        let p = &p;
        async move {
            p.json(
                "GetMetricData",
                json!({"MetricDataQueries": queries, "StartTime": M0, "EndTime": M0 + 60}),
            )
            .await
        }
    };
    let ipv = "com.amazonaws.cloudwatch#InvalidParameterValueException";
    let m =
        json_err(&call(json!([{"Id": "Bad", "MetricStat": stat}])).await, 400, ipv, "InvalidParameterValue");
    assert!(m.contains("MetricDataQueries.member.1.Id"), "{m}");
    let m = json_err(
        &call(json!([{"Id": "a", "MetricStat": stat}, {"Id": "a", "MetricStat": stat}])).await,
        400,
        ipv,
        "InvalidParameterValue",
    );
    assert!(m.contains("not unique"), "{m}");
    json_err(
        &call(json!([{"Id": "a"}])).await,
        400,
        "com.amazonaws.cloudwatch#InvalidParameterCombinationException",
        "InvalidParameterCombination",
    );
    json_err(
        &call(json!([{"Id": "a", "Expression": "SUM(METRICS())"}])).await,
        400,
        ipv,
        "InvalidParameterValue",
    );
    json_err(&call(json!([])).await, 400, ipv, "InvalidParameterValue");
    let mut bad = stat.clone();
    bad["Stat"] = json!("p99");
    let m = json_err(&call(json!([{"Id": "a", "MetricStat": bad}])).await, 400, ipv, "InvalidParameterValue");
    assert!(m.contains("MetricDataQueries.member.1.MetricStat.Stat"), "{m}");
    let mut bad = stat.clone();
    bad.as_object_mut().unwrap().remove("Period");
    let m = json_err(
        &call(json!([{"Id": "a", "MetricStat": bad}])).await,
        400,
        "com.amazonaws.cloudwatch#MissingRequiredParameterException",
        "MissingParameter",
    );
    assert_eq!(m, "The parameter MetricDataQueries.member.1.MetricStat.Period is required.");
    // 1,441 one-minute periods are fine for GetMetricData (read in chunks).
    let r = p
        .json(
            "GetMetricData",
            json!({"MetricDataQueries": [{"Id": "a", "MetricStat": stat}], "StartTime": M0, "EndTime": M0 + 2 * 86_400}),
        )
        .await;
    ok_json(&r);
}

#[tokio::test]
async fn list_metrics_lists_both_metrics_of_live_instances() {
    let p = Plane::start().await;
    // Two instances through EC2 on the same listener.
    let mut ids = Vec::new();
    for _ in 0..2 {
        let r = p
            .query_as(
                AKID,
                SECRET,
                "ec2",
                &[
                    ("Action", "RunInstances"),
                    ("Version", "2016-11-15"),
                    ("ImageId", "ami-0abcdef1234567890"),
                    ("MinCount", "1"),
                    ("MaxCount", "1"),
                ],
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text());
        ids.push(common::texts(&r.text(), "instanceId").remove(0));
    }
    ids.sort();
    let v = ok_json(
        &p.json("ListMetrics", json!({"Namespace": "AWS/EC2", "MetricName": "MetadataNoToken"})).await,
    );
    let expected: Vec<Value> = ids
        .iter()
        .map(|id| json!({"Namespace": "AWS/EC2", "MetricName": "MetadataNoToken", "Dimensions": [{"Name": "InstanceId", "Value": id}]}))
        .collect();
    assert_eq!(v, json!({"Metrics": expected}));
    let v = ok_json(
        &p.json("ListMetrics", json!({"Dimensions": [{"Name": "InstanceId", "Value": ids[1]}]})).await,
    );
    let names: Vec<&str> =
        v["Metrics"].as_array().unwrap().iter().map(|m| m["MetricName"].as_str().unwrap()).collect();
    assert_eq!(names, ["MetadataNoToken", "MetadataNoTokenRejected"]);
    for filter in [
        json!({"Namespace": "AWS/S3"}),
        json!({"Dimensions": [{"Name": "ImageId"}]}),
        json!({"MetricName": "CPUUtilization"}),
    ] {
        assert_eq!(ok_json(&p.json("ListMetrics", filter.clone()).await), json!({"Metrics": []}), "{filter}");
    }
    let r = p
        .query(&[
            ("Action", "ListMetrics"),
            ("Version", "2010-08-01"),
            ("MetricName", "MetadataNoTokenRejected"),
            ("Dimensions.member.1.Name", "InstanceId"),
            ("Dimensions.member.1.Value", &ids[0]),
        ])
        .await;
    assert_eq!(
        r.normalized(),
        format!(
            "<ListMetricsResponse xmlns=\"{XMLNS}\"><ListMetricsResult><Metrics><member><Namespace>AWS/EC2</Namespace><MetricName>MetadataNoTokenRejected</MetricName><Dimensions><member><Name>InstanceId</Name><Value>{}</Value></member></Dimensions></member></Metrics></ListMetricsResult><ResponseMetadata><RequestId>REQ</RequestId></ResponseMetadata></ListMetricsResponse>",
            ids[0]
        )
    );
    let r = p
        .cbor(
            "ListMetrics",
            &map(vec![("RecentlyActive", text("PT3H")), ("MetricName", text("MetadataNoToken"))]),
        )
        .await;
    let Cbor::Map(entries) = r.cbor() else { panic!() };
    let Cbor::Array(metrics) = &entries[0].1 else { panic!() };
    assert_eq!(metrics.len(), 2);
}

#[tokio::test]
async fn signatures_scopes_and_policies_are_checked() {
    let p = Plane::start().await;
    // Signed for ec2, sent as CloudWatch JSON.
    let r = p.json_as(AKID, SECRET, "ec2", "ListMetrics", &json!({})).await;
    let m = json_err(&r, 403, "com.amazon.coral.service#InvalidSignatureException", "SignatureDoesNotMatch");
    assert_eq!(m, "Credential should be scoped to correct service: 'monitoring'.");
    let r = p.json_as("AKIAUNKNOWNEXAMPLE00", "x", "monitoring", "ListMetrics", &json!({})).await;
    json_err(&r, 403, "com.amazon.coral.service#UnrecognizedClientException", "InvalidClientTokenId");
    let r = p.json_as(AKID, "wrong", "monitoring", "ListMetrics", &json!({})).await;
    json_err(&r, 403, "com.amazon.coral.service#InvalidSignatureException", "SignatureDoesNotMatch");
    // Unsigned query with CloudWatch's version: a CloudWatch error, not EC2's.
    let body = common::form(&[("Action", "ListMetrics"), ("Version", "2010-08-01")]);
    let raw = format!(
        "POST / HTTP/1.1\r\nhost: {}\r\ncontent-type: application/x-www-form-urlencoded\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        p.addr,
        body.len()
    );
    query_err(&p.send(raw.as_bytes()).await, 403, "MissingAuthenticationToken");

    // The limited principal may GetMetricStatistics, nothing else here.
    let r = p
        .json_as(LIMITED_AKID, LIMITED_SECRET, "monitoring", "GetMetricStatistics", &gms_json(&["Sum"]))
        .await;
    assert_eq!(ok_json(&r)["Datapoints"], json!([]));
    let r = p.json_as(LIMITED_AKID, LIMITED_SECRET, "monitoring", "ListMetrics", &json!({})).await;
    let m = json_err(&r, 403, "com.amazon.coral.service#AccessDeniedException", "AccessDenied");
    assert_eq!(
        m,
        format!(
            "User: arn:aws:iam::{ACCOUNT}:user/dev is not authorized to perform: cloudwatch:ListMetrics because no identity-based policy allows the cloudwatch:ListMetrics action"
        )
    );
    let r = p
        .query_as(
            LIMITED_AKID,
            LIMITED_SECRET,
            "monitoring",
            &[("Action", "GetMetricData"), ("Version", "2010-08-01")],
        )
        .await;
    assert_eq!(r.status, 403);
    assert!(r.text().contains("<Code>AccessDenied</Code>"));
}

#[tokio::test]
async fn ec2_and_lightsail_keep_their_protocols_on_the_same_listener() {
    let p = Plane::start().await;
    let r =
        p.query_as(AKID, SECRET, "ec2", &[("Action", "DescribeRegions"), ("Version", "2016-11-15")]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        r.text().contains("<DescribeRegionsResponse xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15/\">")
    );
    // EC2-signed with CloudWatch's version stays an EC2 request.
    let r = p
        .query_as(AKID, SECRET, "ec2", &[("Action", "GetMetricStatistics"), ("Version", "2010-08-01")])
        .await;
    assert_eq!(r.status, 400);
    assert!(r.text().contains("<Response><Errors><Error><Code>NoSuchVersion</Code>"), "{}", r.text());
    // CloudWatch-signed with EC2's action is a CloudWatch error.
    let r = p.query(&[("Action", "DescribeInstances"), ("Version", "2016-11-15")]).await;
    query_err(&r, 400, "InvalidAction");
    let r = p.lightsail("GetInstances", json!({})).await;
    assert_eq!(r.status, 200, "{}", r.text());
}

async fn create_lightsail(p: &Plane, name: &str) -> String {
    let r = p
        .lightsail(
            "CreateInstances",
            json!({"instanceNames": [name], "availabilityZone": "us-east-1a",
                   "blueprintId": "amazon_linux_2023", "bundleId": "nano_3_0"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = p.lightsail("GetInstance", json!({"instanceName": name})).await;
    r.json()["instance"]["supportCode"].as_str().unwrap().split('/').nth(1).unwrap().to_owned()
}

fn imd(name: &str, extra: Value) -> Value {
    let mut body = json!({"instanceName": name, "metricName": "MetadataNoToken", "period": 120,
                          "startTime": M0, "endTime": M0 + 360, "unit": "Count",
                          "statistics": ["Sum", "SampleCount", "Average", "Minimum", "Maximum"]});
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    body
}

#[tokio::test]
async fn lightsail_get_instance_metric_data() {
    let p = Plane::start().await;
    let id = create_lightsail(&p, "web-1").await;
    p.usage(&id, SAMPLE).await;
    let r = p.lightsail("GetInstanceMetricData", imd("web-1", json!({}))).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/x-amz-json-1.1"));
    assert_eq!(
        r.text(),
        format!(
            r#"{{"metricData":[{{"average":1.5,"maximum":3.0,"minimum":0.0,"sampleCount":2.0,"sum":3.0,"timestamp":{},"unit":"Count"}},{{"average":5.0,"maximum":5.0,"minimum":5.0,"sampleCount":1.0,"sum":5.0,"timestamp":{},"unit":"Count"}}],"metricName":"MetadataNoToken"}}"#,
            M0,
            M0 + 120
        )
    );
    let v = p
        .lightsail("GetInstanceMetricData", imd("web-1", json!({"statistics": ["Sum"], "period": 360})))
        .await
        .json();
    assert_eq!(
        v,
        json!({"metricName": "MetadataNoToken", "metricData": [{"sum": 8.0, "timestamp": M0, "unit": "Count"}]})
    );
    // Other metrics and units: no data.
    for extra in [json!({"metricName": "CPUUtilization"}), json!({"unit": "Percent"})] {
        let v = p.lightsail("GetInstanceMetricData", imd("web-1", extra.clone())).await.json();
        assert_eq!(v["metricData"], json!([]), "{extra}");
    }

    let error = |r: &Resp| -> (u16, String, String) {
        let v = r.json();
        (r.status, v["__type"].as_str().unwrap().to_owned(), v["message"].as_str().unwrap().to_owned())
    };
    let (status, kind, message) = error(&p.lightsail("GetInstanceMetricData", imd("web-2", json!({}))).await);
    assert_eq!(
        (status, kind.as_str(), message.as_str()),
        (400, "NotFoundException", "The Instance does not exist: web-2")
    );
    let (_, kind, message) =
        error(&p.lightsail("GetInstanceMetricData", imd("web-1", json!({"metricName": "Nope"}))).await);
    assert_eq!(kind, "InvalidInputException");
    assert!(message.starts_with("Invalid value 'Nope' for parameter metricName."), "{message}");
    let (_, kind, message) =
        error(&p.lightsail("GetInstanceMetricData", imd("web-1", json!({"period": 90}))).await);
    assert_eq!(
        (kind.as_str(), message.as_str()),
        ("InvalidInputException", "The parameter Period must be a multiple of 60 and at least 60 (got 90).")
    );
    let (_, kind, _) =
        error(&p.lightsail("GetInstanceMetricData", imd("web-1", json!({"period": 30}))).await);
    assert_eq!(kind, "InvalidInputException");
    let (_, _, message) =
        error(&p.lightsail("GetInstanceMetricData", imd("web-1", json!({"statistics": ["p99"]}))).await);
    assert!(message.starts_with("Invalid value 'p99' for parameter statistics[0]."), "{message}");
    let mut body = imd("web-1", json!({}));
    body.as_object_mut().unwrap().remove("unit");
    let r = p.lightsail("GetInstanceMetricData", body).await;
    assert_eq!(r.json()["code"], "MissingParameter");
    let (_, kind, message) =
        error(&p.lightsail("GetInstanceMetricData", imd("web-1", json!({"startTime": M0 + 360}))).await);
    assert_eq!(
        (kind.as_str(), message.as_str()),
        ("InvalidInputException", "The parameter StartTime must be less than the parameter EndTime.")
    );
    // IAM: the limited principal lacks lightsail:GetInstanceMetricData.
    let r =
        p.lightsail_as(LIMITED_AKID, LIMITED_SECRET, "GetInstanceMetricData", &imd("web-1", json!({}))).await;
    let (status, kind, message) = error(&r);
    assert_eq!((status, kind.as_str()), (400, "AccessDeniedException"));
    assert!(
        message.contains("lightsail:GetInstanceMetricData on resource: arn:aws:lightsail:us-east-1:"),
        "{message}"
    );
}

#[tokio::test]
async fn calls_are_counted_by_api_action_and_code() {
    let p = Plane::start().await;
    for _ in 0..3 {
        ok_json(&p.json("GetMetricStatistics", gms_json(&["Sum"])).await);
    }
    p.json("GetMetricStatistics", gms_json(&["p50"])).await;
    p.json("PutMetricData", json!({})).await;
    p.query(&[("Action", "ListMetrics"), ("Version", "2010-08-01")]).await;
    p.cbor("GetMetricData", &map(vec![])).await;
    p.query_as(AKID, SECRET, "ec2", &[("Action", "DescribeRegions"), ("Version", "2016-11-15")]).await;
    p.query_as(AKID, SECRET, "ec2", &[("Action", "Frobnicate"), ("Version", "2016-11-15")]).await;
    p.lightsail("GetInstances", json!({})).await;
    p.lightsail("GetInstanceMetricData", imd("nope", json!({}))).await;
    p.lightsail("Explode", json!({})).await;

    assert_eq!(p.calls("cloudwatch", "GetMetricStatistics", "none"), 3);
    assert_eq!(p.calls("cloudwatch", "GetMetricStatistics", "InvalidParameterValue"), 1);
    assert_eq!(p.calls("cloudwatch", "unknown", "InvalidAction"), 1);
    assert_eq!(p.calls("cloudwatch", "ListMetrics", "none"), 1);
    assert_eq!(p.calls("cloudwatch", "GetMetricData", "MissingParameter"), 1);
    assert_eq!(p.calls("ec2", "DescribeRegions", "none"), 1);
    assert_eq!(p.calls("ec2", "unknown", "InvalidAction"), 1);
    assert_eq!(p.calls("lightsail", "GetInstances", "none"), 1);
    assert_eq!(p.calls("lightsail", "GetInstanceMetricData", "NotFoundException"), 1);
    assert_eq!(p.calls("lightsail", "unknown", "com.amazon.coral.service#UnknownOperationException"), 1);
    let text = p.metrics_text();
    assert!(
        text.contains(
            "imds_control_request_duration_seconds_count{api=\"cloudwatch\",action=\"GetMetricStatistics\"} 4"
        ),
        "{text}"
    );
    assert!(
        text.contains("imds_control_request_duration_seconds_count{api=\"ec2\",action=\"unknown\"} 1"),
        "{text}"
    );
}
