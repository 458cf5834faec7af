//! A deliberately small HTTP/1.1 client over a raw socket, so tests control
//! every byte sent (odd methods, duplicate headers, garbage) and see every
//! byte received.

use anyhow::{Context, bail};
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::Duration;

/// A parsed response.
#[derive(Debug, Clone)]
pub struct RawResponse {
    /// Status code.
    pub status: u16,
    /// Header names lower-cased, in order.
    pub headers: Vec<(String, String)>,
    /// Body bytes (read by Content-Length).
    pub body: Vec<u8>,
}

impl RawResponse {
    /// First value of a header (name case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str())
    }

    /// Body as UTF-8 text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Sends `request` (complete bytes, e.g. `"GET / HTTP/1.1\r\nHost: x\r\n\r\n"`)
/// on a new connection and reads one response. A HEAD request's response is
/// read without a body.
pub fn raw_request(addr: SocketAddr, request: &[u8]) -> anyhow::Result<RawResponse> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.write_all(request)?;
    let head_only = request.starts_with(b"HEAD ");
    read_response(&mut s, head_only)
}

/// [`raw_request`] from a chosen local address (`127.0.0.2`, …), so the
/// data plane sees the caller as the instance owning that address.
pub fn raw_request_from(source: IpAddr, addr: SocketAddr, request: &[u8]) -> anyhow::Result<RawResponse> {
    let domain = if source.is_ipv4() { socket2::Domain::IPV4 } else { socket2::Domain::IPV6 };
    let sock = socket2::Socket::new(domain, socket2::Type::STREAM, None)?;
    sock.bind(&SocketAddr::new(source, 0).into())?;
    sock.connect_timeout(&addr.into(), Duration::from_secs(5))?;
    let mut s: TcpStream = sock.into();
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.write_all(request)?;
    let head_only = request.starts_with(b"HEAD ");
    read_response(&mut s, head_only)
}

/// Reads one response from a stream (for keep-alive tests).
pub fn read_response(s: &mut TcpStream, head_only: bool) -> anyhow::Result<RawResponse> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        let n = s.read(&mut byte).context("reading the response head")?;
        if n == 0 {
            bail!("connection closed before a response (read {} bytes)", buf.len());
        }
        buf.push(byte[0]);
        if buf.len() > 64 * 1024 {
            bail!("response head too large");
        }
    }
    let head = String::from_utf8(buf).context("response head is not UTF-8")?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().context("empty head")?;
    let status: u16 = status_line.split(' ').nth(1).context("no status")?.parse()?;
    let headers: Vec<(String, String)> = lines
        .filter(|l| !l.is_empty())
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let len: usize =
        headers.iter().find(|(n, _)| n == "content-length").map(|(_, v)| v.parse()).transpose()?.unwrap_or(0);
    let mut body = vec![0u8; if head_only { 0 } else { len }];
    s.read_exact(&mut body).context("reading the body")?;
    Ok(RawResponse { status, headers, body })
}

/// `GET path` with extra header lines (each `"Name: value"`).
pub fn get(addr: SocketAddr, path: &str, headers: &[&str]) -> anyhow::Result<RawResponse> {
    request(addr, "GET", path, headers)
}

/// Any method on `path` with extra header lines and no body.
pub fn request(addr: SocketAddr, method: &str, path: &str, headers: &[&str]) -> anyhow::Result<RawResponse> {
    raw_request(addr, build(method, path, headers).as_bytes())
}

/// The bytes of a request with `Connection: close`.
fn build(method: &str, path: &str, headers: &[&str]) -> String {
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: 169.254.169.254\r\n");
    for h in headers {
        req.push_str(h);
        req.push_str("\r\n");
    }
    if method == "PUT" || method == "POST" {
        req.push_str("Content-Length: 0\r\n");
    }
    req.push_str("Connection: close\r\n\r\n");
    req
}

/// [`request`] from a chosen local address.
pub fn request_from(
    source: IpAddr,
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[&str],
) -> anyhow::Result<RawResponse> {
    raw_request_from(source, addr, build(method, path, headers).as_bytes())
}

/// `PUT /latest/api/token` with the given TTL; returns the token text on 200.
pub fn token(addr: SocketAddr, ttl: u32) -> anyhow::Result<String> {
    let r = request(
        addr,
        "PUT",
        "/latest/api/token",
        &[&format!("X-aws-ec2-metadata-token-ttl-seconds: {ttl}")],
    )?;
    if r.status != 200 {
        bail!("token PUT answered {}", r.status);
    }
    Ok(r.text())
}
