//! Test helpers: sign with the real `aws-sigv4` signer, parse raw recorded
//! HTTP requests, verify.
#![allow(dead_code)] // each test binary uses a different subset
#![allow(clippy::unwrap_used)] // tests unwrap: a panic is the failure report

use std::borrow::Cow;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    PayloadChecksumKind, SignableBody, SignableRequest, SignatureLocation, SigningSettings, sign,
};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use http::{HeaderMap, HeaderName, HeaderValue};
use imds_sigv4::{RequestParts, SigV4Error, SignatureInfo};

pub const AKID: &str = "AKIDEXAMPLE";
pub const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
pub const TOKEN: &str = "FwoGZXIvYXdzEXAMPLE//token+with/slashes=";
/// 2024-01-02T03:04:05Z
pub const T0: i64 = 1_704_164_645;

/// What to sign and how.
#[derive(Clone, Debug)]
pub struct Spec {
    pub method: String,
    /// Absolute URI, already percent-encoded as a client would send it.
    pub uri: String,
    /// Headers as the client sets them (any case; repeated names allowed).
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub service: String,
    pub region: String,
    pub token: Option<String>,
    /// `Some(expires)`: presigned (query-string) signature.
    pub presign: Option<Duration>,
    /// Add an `x-amz-content-sha256` header (header form only).
    pub content_sha256: bool,
    /// Sign `UNSIGNED-PAYLOAD` instead of the body hash.
    pub unsigned_payload: bool,
    pub time: i64,
}

impl Spec {
    pub fn new(method: &str, uri: &str) -> Self {
        Spec {
            method: method.into(),
            uri: uri.into(),
            headers: Vec::new(),
            body: Vec::new(),
            service: "ec2".into(),
            region: "us-east-1".into(),
            token: None,
            presign: None,
            content_sha256: false,
            unsigned_payload: false,
            time: T0,
        }
    }

    pub fn ec2_form(body: &str) -> Self {
        let mut s = Spec::new("POST", "https://ec2.us-east-1.amazonaws.com/");
        s.headers.push(("Content-Type".into(), "application/x-www-form-urlencoded; charset=utf-8".into()));
        s.body = body.as_bytes().to_vec();
        s
    }

    pub fn lightsail_json(target: &str, body: &str) -> Self {
        let mut s = Spec::new("POST", "https://lightsail.us-east-1.amazonaws.com/");
        s.service = "lightsail".into();
        s.headers.push(("Content-Type".into(), "application/x-amz-json-1.1".into()));
        s.headers.push(("X-Amz-Target".into(), format!("Lightsail_20161128.{target}")));
        s.body = body.as_bytes().to_vec();
        s
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    pub fn token(mut self, token: &str) -> Self {
        self.token = Some(token.into());
        self
    }

    pub fn presigned(mut self, expires_secs: u64) -> Self {
        self.presign = Some(Duration::from_secs(expires_secs));
        self
    }
}

/// A request as the server receives it.
#[derive(Clone, Debug)]
pub struct Wire {
    pub method: String,
    pub path: String,
    pub query: String,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Wire {
    pub fn parts(&self) -> RequestParts<'_> {
        RequestParts {
            method: &self.method,
            path: &self.path,
            query: &self.query,
            headers: &self.headers,
            body: &self.body,
        }
    }

    pub fn parse(&self) -> Result<SignatureInfo, SigV4Error> {
        imds_sigv4::parse(&self.parts())
    }

    /// Parses then verifies with `secret` at `now`.
    pub fn verify_with(&self, secret: &str, now: i64) -> Result<SignatureInfo, SigV4Error> {
        let info = self.parse()?;
        imds_sigv4::verify(&self.parts(), &info, secret, now)?;
        Ok(info)
    }

    pub fn verify_at(&self, now: i64) -> Result<SignatureInfo, SigV4Error> {
        self.verify_with(SECRET, now)
    }

    pub fn set_header(&mut self, name: &str, value: &str) {
        self.headers
            .insert(HeaderName::from_bytes(name.as_bytes()).unwrap(), HeaderValue::from_str(value).unwrap());
    }

    /// Replaces the value of the first query parameter named `name` (raw).
    pub fn set_query_param(&mut self, name: &str, value: &str) {
        let mut found = false;
        let pairs: Vec<String> = self
            .query
            .split('&')
            .map(|p| match p.split_once('=') {
                Some((k, _)) if k == name && !found => {
                    found = true;
                    format!("{k}={value}")
                }
                _ => p.to_owned(),
            })
            .collect();
        assert!(found, "no query parameter {name}");
        self.query = pairs.join("&");
    }
}

pub fn system_time(unix: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(u64::try_from(unix).unwrap())
}

/// Signs `spec` with aws-sigv4 and returns what goes on the wire, with the
/// `host` header an HTTP client adds from the URI.
pub fn sign_with(spec: &Spec, secret: &str) -> Wire {
    let mut req = http::Request::builder().method(spec.method.as_str()).uri(spec.uri.as_str());
    for (k, v) in &spec.headers {
        req = req.header(k.as_str(), HeaderValue::from_str(v).unwrap());
    }
    let mut req = req.body(spec.body.clone()).unwrap();

    let identity: Identity = Credentials::new(AKID, secret, spec.token.clone(), None, "test").into();
    let mut settings = SigningSettings::default();
    if let Some(expires) = spec.presign {
        settings.signature_location = SignatureLocation::QueryParams;
        settings.expires_in = Some(expires);
    }
    if spec.content_sha256 {
        settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
    }
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(&spec.region)
        .name(&spec.service)
        .time(system_time(spec.time))
        .settings(settings)
        .build()
        .unwrap()
        .into();
    let signable = SignableRequest::new(
        &spec.method,
        Cow::Owned(spec.uri.clone()),
        spec.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        if spec.unsigned_payload { SignableBody::UnsignedPayload } else { SignableBody::Bytes(&spec.body) },
    )
    .unwrap();
    let (instructions, _signature) = sign(signable, &params).unwrap().into_parts();
    instructions.apply_to_request_http1x(&mut req);

    let uri = req.uri().clone();
    let authority = uri.authority().unwrap();
    let default_port = matches!(
        (uri.scheme_str(), authority.port_u16()),
        (Some("https"), Some(443)) | (Some("http"), Some(80))
    );
    let host = if default_port { authority.host() } else { authority.as_str() };
    let (parts, body) = req.into_parts();
    let mut headers = parts.headers;
    headers.insert(http::header::HOST, HeaderValue::from_str(host).unwrap());
    Wire {
        method: parts.method.to_string(),
        path: uri.path().to_owned(),
        query: uri.query().unwrap_or("").to_owned(),
        headers,
        body,
    }
}

pub fn sign_spec(spec: &Spec) -> Wire {
    sign_with(spec, SECRET)
}

/// Parses a raw HTTP/1.1 request (CRLF or LF line ends) the way hyper hands
/// it over: target split at `?`, header values trimmed of spaces and tabs,
/// the rest after the blank line is the body. `None` for obs-folded headers.
pub fn parse_http(raw: &[u8]) -> Option<Wire> {
    let (head, body) = match find(raw, b"\r\n\r\n") {
        Some(i) => (&raw[..i], &raw[i + 4..]),
        None => match find(raw, b"\n\n") {
            Some(i) => (&raw[..i], &raw[i + 2..]),
            None => (raw, &b""[..]),
        },
    };
    let head = std::str::from_utf8(head).unwrap();
    let mut lines = head.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    let request_line = lines.next().unwrap();
    let method_end = request_line.find(' ').unwrap();
    let version_start = request_line.rfind(' ').unwrap();
    let method = &request_line[..method_end];
    let target = &request_line[method_end + 1..version_start];
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let mut headers = HeaderMap::new();
    for line in lines {
        if line.is_empty() {
            continue;
        }
        if line.starts_with([' ', '\t']) {
            return None; // obs-fold: hyper rejects it
        }
        let (name, value) = line.split_once(':').unwrap();
        let value = value.trim_matches([' ', '\t']);
        headers.append(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_bytes(value.as_bytes()).unwrap(),
        );
    }
    Some(Wire {
        method: method.to_owned(),
        path: path.to_owned(),
        query: query.to_owned(),
        headers,
        body: body.to_vec(),
    })
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The Unix time of the request's `X-Amz-Date` (header or query parameter).
pub fn signed_at(wire: &Wire) -> i64 {
    wire.parse().unwrap().timestamp_unix
}

pub fn is_mismatch<T: std::fmt::Debug>(r: &Result<T, SigV4Error>) -> bool {
    matches!(r, Err(SigV4Error::SignatureMismatch { .. }))
}
