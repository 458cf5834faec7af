//! Test harness: the control plane on 127.0.0.1:0 over a memory store with
//! a manual clock, requests signed by the real `aws-sigv4` signer and sent
//! over a plain TCP connection, and small helpers to read the XML back.
#![allow(dead_code)] // each test binary uses a different subset
#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic is the failure report

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SignatureLocation, SigningSettings, sign};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use imds_control::{ControlConfig, ControlPlane, StaticCredential};
use imds_core::{Clock, InstanceId, InstanceRecord, ManualClock};
use imds_policy::Policy;
use imds_store::records::{self, InstanceStatus};
use imds_store::{MemoryStore, Store};
use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub const AKID: &str = "AKIAIOSFODNN7EXAMPLE";
pub const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
pub const LIMITED_AKID: &str = "AKIALIMITEDEXAMPLE01";
pub const LIMITED_SECRET: &str = "limited/secret/key";
pub const ACCOUNT: &str = "123456789012";
/// 2024-01-02T03:04:05Z
pub const T0: u64 = 1_704_164_645;

/// A running control plane.
pub struct Server {
    pub addr: SocketAddr,
    pub store: Arc<MemoryStore>,
    pub clock: ManualClock,
    pub max_body: usize,
}

/// What came back.
#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Resp {
    /// Text of the first `<name>` element.
    pub fn text(&self, name: &str) -> Option<String> {
        texts(&self.body, name).into_iter().next()
    }

    /// `state` of every `metadataOptions` block.
    pub fn metadata_states(&self) -> Vec<String> {
        texts(&self.body, "metadataOptions")
            .iter()
            .map(|m| texts(m, "state").into_iter().next().unwrap_or_default())
            .collect()
    }

    /// The error code of an error document.
    pub fn code(&self) -> String {
        self.text("Code").unwrap_or_default()
    }

    pub fn message(&self) -> String {
        self.text("Message").unwrap_or_default().replace("&apos;", "'").replace("&quot;", "\"")
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// Asserts an EC2 error with this status and code.
    #[track_caller]
    pub fn assert_error(&self, status: u16, code: &str) {
        assert_eq!((self.status, self.code().as_str()), (status, code), "{}", self.body);
        assert!(
            self.body
                .starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error><Code>")
        );
        assert!(self.body.contains("</Error></Errors><RequestID>"));
    }

    #[track_caller]
    pub fn assert_ok(&self) {
        assert_eq!(self.status, 200, "{}", self.body);
    }

    /// The body with the request id replaced by `REQ`.
    pub fn normalized(&self) -> String {
        let id = self.text("requestId").or_else(|| self.text("RequestID")).unwrap_or_default();
        self.body.replace(&id, "REQ")
    }
}

/// Texts of every `<name>…</name>` (empty elements give "").
pub fn texts(body: &str, name: &str) -> Vec<String> {
    let open = format!("<{name}>");
    let close = format!("</{name}>");
    let empty = format!("<{name}/>");
    let mut out = Vec::new();
    let mut rest = body;
    loop {
        let next_open = rest.find(&open);
        let next_empty = rest.find(&empty);
        match (next_open, next_empty) {
            (Some(o), e) if e.is_none_or(|e| o < e) => {
                let after = &rest[o + open.len()..];
                let end = after.find(&close).unwrap();
                out.push(after[..end].to_owned());
                rest = &after[end..];
            }
            (_, Some(e)) => {
                out.push(String::new());
                rest = &rest[e + empty.len()..];
            }
            _ => return out,
        }
    }
}

pub fn admin_policy_free() -> StaticCredential {
    StaticCredential {
        access_key_id: AKID.into(),
        secret_access_key: SECRET.into(),
        principal_arn: format!("arn:aws:iam::{ACCOUNT}:user/admin"),
        policy: None,
    }
}

/// A second principal whose requests are checked against `policy`.
pub fn limited(policy: &str) -> StaticCredential {
    StaticCredential {
        access_key_id: LIMITED_AKID.into(),
        secret_access_key: LIMITED_SECRET.into(),
        principal_arn: format!("arn:aws:iam::{ACCOUNT}:user/dev"),
        policy: Some(Policy::parse(policy).unwrap()),
    }
}

impl Server {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(adjust: impl FnOnce(&mut ControlConfig)) -> Self {
        Self::start_with_source(adjust, Arc::new(Vec::<StaticCredential>::new())).await
    }

    pub async fn start_with_source(
        adjust: impl FnOnce(&mut ControlConfig),
        source: Arc<dyn imds_control::CredentialSource>,
    ) -> Self {
        let store = Arc::new(MemoryStore::new());
        let clock = ManualClock::new(T0 * 1000);
        let mut config = ControlConfig {
            credentials: vec![admin_policy_free()],
            subnet_v6: Some("2001:db8:10::/64".parse().unwrap()),
            max_body_bytes: 64 * 1024,
            ..ControlConfig::default()
        };
        adjust(&mut config);
        let max_body = config.max_body_bytes;
        let cp = ControlPlane::new(store.clone(), config, source, Arc::new(clock.clone()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let router = cp.router();
        tokio::spawn(async move {
            axum::serve(listener, router).await.unwrap();
        });
        Self { addr, store, clock, max_body }
    }

    /// Signs a form body as the admin.
    pub async fn call(&self, params: &[(&str, &str)]) -> Resp {
        self.call_as(AKID, SECRET, params).await
    }

    pub async fn call_as(&self, akid: &str, secret: &str, params: &[(&str, &str)]) -> Resp {
        let body = form(params);
        self.send(&self.sign(akid, secret, "POST", "/", &body, "ec2", "us-east-1", false)).await
    }

    /// An EC2 call with `Action`, `Version` and the given members.
    pub async fn ec2(&self, action: &str, params: &[(&str, &str)]) -> Resp {
        let mut all = vec![("Action", action), ("Version", "2016-11-15")];
        all.extend_from_slice(params);
        self.call(&all).await
    }

    pub async fn ec2_as(&self, akid: &str, secret: &str, action: &str, params: &[(&str, &str)]) -> Resp {
        let mut all = vec![("Action", action), ("Version", "2016-11-15")];
        all.extend_from_slice(params);
        self.call_as(akid, secret, &all).await
    }

    /// A signed request as raw bytes on the wire.
    #[allow(clippy::too_many_arguments)]
    pub fn sign(
        &self,
        akid: &str,
        secret: &str,
        method: &str,
        path_and_query: &str,
        body: &str,
        service: &str,
        region: &str,
        presign: bool,
    ) -> Vec<u8> {
        self.sign_with_token(akid, secret, None, method, path_and_query, body, service, region, presign)
    }

    /// [`Server::sign`] with temporary credentials' session token.
    #[allow(clippy::too_many_arguments)]
    pub fn sign_with_token(
        &self,
        akid: &str,
        secret: &str,
        token: Option<&str>,
        method: &str,
        path_and_query: &str,
        body: &str,
        service: &str,
        region: &str,
        presign: bool,
    ) -> Vec<u8> {
        let uri = format!("http://{}{path_and_query}", self.addr);
        let headers = [("content-type", "application/x-www-form-urlencoded; charset=utf-8")];
        let identity: Identity =
            Credentials::new(akid, secret, token.map(str::to_owned), None, "test").into();
        let mut settings = SigningSettings::default();
        if presign {
            settings.signature_location = SignatureLocation::QueryParams;
            settings.expires_in = Some(Duration::from_secs(300));
        }
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(region)
            .name(service)
            .time(UNIX_EPOCH + Duration::from_millis(self.clock.now_millis()))
            .settings(settings)
            .build()
            .unwrap()
            .into();
        let signable = SignableRequest::new(
            method,
            Cow::Owned(uri.clone()),
            headers.iter().copied(),
            SignableBody::Bytes(body.as_bytes()),
        )
        .unwrap();
        let (instructions, _) = sign(signable, &params).unwrap().into_parts();
        let mut req = http::Request::builder().method(method).uri(&uri);
        for (k, v) in headers {
            req = req.header(k, v);
        }
        let mut req = req.body(body.as_bytes().to_vec()).unwrap();
        instructions.apply_to_request_http1x(&mut req);
        let target = req.uri().path_and_query().map(|p| p.as_str().to_owned()).unwrap();
        let mut raw = format!("{method} {target} HTTP/1.1\r\nhost: {}\r\n", self.addr);
        for (k, v) in req.headers() {
            raw.push_str(&format!("{}: {}\r\n", k, v.to_str().unwrap()));
        }
        raw.push_str(&format!("content-length: {}\r\nconnection: close\r\n\r\n", body.len()));
        let mut bytes = raw.into_bytes();
        bytes.extend_from_slice(body.as_bytes());
        bytes
    }

    /// Sends raw request bytes and reads the whole response.
    pub async fn send(&self, raw: &[u8]) -> Resp {
        let mut s = tokio::net::TcpStream::connect(self.addr).await.unwrap();
        s.write_all(raw).await.unwrap();
        let mut buf = Vec::new();
        // The server may close early (oversized bodies); take what came.
        let _ = s.read_to_end(&mut buf).await;
        parse_response(&buf)
    }

    /// Every key and value in the store, for before/after comparisons.
    pub async fn dump(&self) -> Vec<(String, Vec<u8>)> {
        let (kvs, _) = self.store.list("").await.unwrap();
        kvs.into_iter().map(|kv| (kv.key, kv.value)).collect()
    }

    pub async fn record(&self, id: &str) -> InstanceRecord {
        records::get_instance(self.store.as_ref(), &InstanceId::parse(id).unwrap()).await.unwrap().unwrap().0
    }

    pub async fn put_record(&self, r: &InstanceRecord) {
        records::put_instance_if(self.store.as_ref(), r, None).await.unwrap().unwrap();
    }

    /// Acts as the agent: reports the instance's current generation.
    pub async fn ack(&self, id: &str) {
        let r = self.record(id).await;
        let status =
            InstanceStatus { observed_generation: r.generation, host_id: "h-1".into(), applied_at_millis: 0 };
        records::put_status(self.store.as_ref(), &r.instance_id, &status).await.unwrap();
    }

    /// Launches `count` instances and returns their ids.
    pub async fn run(&self, extra: &[(&str, &str)]) -> Vec<String> {
        let mut params = vec![("ImageId", "ami-0abcdef1234567890"), ("MinCount", "1"), ("MaxCount", "1")];
        for (k, v) in extra {
            params.retain(|(pk, _)| pk != k);
            params.push((k, v));
        }
        let r = self.ec2("RunInstances", &params).await;
        r.assert_ok();
        texts(&r.body, "instanceId")
    }
}

pub fn form(params: &[(&str, &str)]) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (k, v) in params {
        s.append_pair(k, v);
    }
    s.finish()
}

fn parse_response(buf: &[u8]) -> Resp {
    let text = String::from_utf8_lossy(buf).into_owned();
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        return Resp { status: 0, headers: Vec::new(), body: text };
    };
    let mut lines = head.split("\r\n");
    let status = lines.next().and_then(|l| l.split(' ').nth(1)).and_then(|s| s.parse().ok()).unwrap_or(0);
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':').map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned())))
        .collect();
    let chunked =
        headers.iter().any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    let body = if chunked { dechunk(body) } else { body.to_owned() };
    Resp { status, headers, body }
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&rest[..n]);
        s = &rest[n + 2..];
    }
    out
}
