//! A minimal EC2 Query API client for tests: every request is signed by
//! the real `aws-sigv4` signer and sent on its own connection, once —
//! no retries, unlike the SDKs and the AWS CLI — so a test sees exactly
//! which call failed and how (HTTP status and EC2 error code, or a
//! connection error).

use anyhow::{Context, bail};
use aws_credential_types::Credentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use std::borrow::Cow;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, SystemTime};

/// The EC2 API version every call names.
pub const EC2_API_VERSION: &str = "2016-11-15";

/// A signing EC2 client for one endpoint.
#[derive(Debug, Clone)]
pub struct Ec2Client {
    addr: SocketAddr,
    access_key_id: String,
    secret_access_key: String,
    region: String,
    timeout: Duration,
}

/// One answer of the EC2 API.
#[derive(Debug, Clone)]
pub struct Ec2Response {
    /// HTTP status.
    pub status: u16,
    /// The XML body.
    pub body: String,
}

impl Ec2Response {
    /// Whether the call succeeded (HTTP 200).
    pub fn ok(&self) -> bool {
        self.status == 200
    }

    /// The text of every `<name>…</name>` element (empty elements give "").
    pub fn texts(&self, name: &str) -> Vec<String> {
        xml_texts(&self.body, name)
    }

    /// The text of the first `<name>` element.
    pub fn text(&self, name: &str) -> Option<String> {
        self.texts(name).into_iter().next()
    }

    /// The EC2 error code of an error answer.
    pub fn code(&self) -> Option<String> {
        self.text("Code")
    }

    /// `Ok(self)` for HTTP 200, else an error with status and body.
    pub fn expect_ok(self) -> anyhow::Result<Self> {
        if self.ok() { Ok(self) } else { bail!("EC2 call failed with {}: {}", self.status, self.body) }
    }
}

/// The text of every `<name>…</name>` in `body` (empty elements give "").
pub fn xml_texts(body: &str, name: &str) -> Vec<String> {
    let open = format!("<{name}>");
    let close = format!("</{name}>");
    let empty = format!("<{name}/>");
    let mut out = Vec::new();
    let mut rest = body;
    loop {
        match (rest.find(&open), rest.find(&empty)) {
            (Some(o), e) if e.is_none_or(|e| o < e) => {
                let after = &rest[o + open.len()..];
                let Some(end) = after.find(&close) else { return out };
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

impl Ec2Client {
    /// A client of the control plane at `addr`, signing as the given key
    /// for `us-east-1`, with a 30 s bound on each call.
    pub fn new(addr: SocketAddr, access_key_id: &str, secret_access_key: &str) -> Self {
        Self {
            addr,
            access_key_id: access_key_id.to_owned(),
            secret_access_key: secret_access_key.to_owned(),
            region: "us-east-1".to_owned(),
            timeout: Duration::from_secs(30),
        }
    }

    /// The same client with another per-call time bound.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The endpoint.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Calls `action` with `params` once. `Err` only when no HTTP answer
    /// came (connection refused or reset, timeout).
    pub fn call(&self, action: &str, params: &[(&str, &str)]) -> anyhow::Result<Ec2Response> {
        let mut form = form_urlencoded::Serializer::new(String::new());
        form.append_pair("Action", action).append_pair("Version", EC2_API_VERSION);
        for (k, v) in params {
            form.append_pair(k, v);
        }
        let body = form.finish();
        let raw = self.sign(&body)?;
        let mut s = TcpStream::connect_timeout(&self.addr, self.timeout)?;
        s.set_read_timeout(Some(self.timeout))?;
        s.set_write_timeout(Some(self.timeout))?;
        s.write_all(&raw)?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).context("reading the answer")?;
        parse(&buf)
    }

    /// [`Ec2Client::call`] that must answer 200.
    pub fn ok(&self, action: &str, params: &[(&str, &str)]) -> anyhow::Result<Ec2Response> {
        self.call(action, params)?.expect_ok().with_context(|| format!("{action} {params:?}"))
    }

    fn sign(&self, body: &str) -> anyhow::Result<Vec<u8>> {
        let uri = format!("http://{}/", self.addr);
        let headers = [("content-type", "application/x-www-form-urlencoded; charset=utf-8")];
        let identity: Identity =
            Credentials::new(&self.access_key_id, &self.secret_access_key, None, None, "imds-testkit").into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name("ec2")
            .time(SystemTime::now())
            .settings(SigningSettings::default())
            .build()?
            .into();
        let signable = SignableRequest::new(
            "POST",
            Cow::Owned(uri.clone()),
            headers.iter().copied(),
            SignableBody::Bytes(body.as_bytes()),
        )?;
        let (instructions, _) = sign(signable, &params)?.into_parts();
        let mut req = http::Request::builder().method("POST").uri(&uri);
        for (k, v) in headers {
            req = req.header(k, v);
        }
        let mut req = req.body(())?;
        instructions.apply_to_request_http1x(&mut req);
        let mut raw = format!("POST / HTTP/1.1\r\nhost: {}\r\n", self.addr);
        for (k, v) in req.headers() {
            raw.push_str(&format!("{}: {}\r\n", k, v.to_str()?));
        }
        raw.push_str(&format!("content-length: {}\r\nconnection: close\r\n\r\n", body.len()));
        let mut bytes = raw.into_bytes();
        bytes.extend_from_slice(body.as_bytes());
        Ok(bytes)
    }
}

fn parse(buf: &[u8]) -> anyhow::Result<Ec2Response> {
    let text = String::from_utf8_lossy(buf);
    let (head, body) = text.split_once("\r\n\r\n").context("no complete HTTP answer")?;
    let status = head
        .split("\r\n")
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .context("no HTTP status")?;
    let chunked = head.lines().any(|l| {
        l.split_once(':').is_some_and(|(k, v)| {
            k.trim().eq_ignore_ascii_case("transfer-encoding") && v.to_ascii_lowercase().contains("chunked")
        })
    });
    let body = if chunked { dechunk(body)? } else { body.to_owned() };
    Ok(Ec2Response { status, body })
}

fn dechunk(mut s: &str) -> anyhow::Result<String> {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).context("bad chunk size")?;
        if n == 0 {
            break;
        }
        out.push_str(rest.get(..n).context("short chunk")?);
        s = rest.get(n + 2..).unwrap_or_default();
    }
    Ok(out)
}
