//! End to end: a real `imdsd serve --demo` process on ephemeral ports, spoken
//! to over raw HTTP so every status, header and byte can be checked against
//! docs/protocol/data-plane.md.

#![allow(clippy::unwrap_used)] // tests unwrap: a panic is the failure report

use imds_testkit::http::{get, read_response, request, token};
use imds_testkit::{ImdsdBuilder, ImdsdProcess, raw_request};
use std::io::Write;
use std::net::{SocketAddr, TcpStream};

const BIN: &str = env!("CARGO_BIN_EXE_imdsd");

fn demo() -> ImdsdProcess {
    ImdsdBuilder::new(BIN).demo().start().expect("imdsd starts")
}

const NOT_FOUND_PAGE: &str = "<?xml version=\"1.0\" encoding=\"iso-8859-1\"?>\n<!DOCTYPE html PUBLIC \"-//W3C//DTD XHTML 1.0 Transitional//EN\"\n\t\"http://www.w3.org/TR/xhtml1/DTD/xhtml1-transitional.dtd\">\n<html xmlns=\"http://www.w3.org/1999/xhtml\" xml:lang=\"en\" lang=\"en\">\n <head>\n  <title>404 - Not Found</title>\n </head>\n <body>\n  <h1>404 - Not Found</h1>\n </body>\n</html>";

#[test]
fn version_list_and_version_roots() {
    let s = demo();
    let r = get(s.data_v4(), "/", &[]).unwrap();
    assert_eq!(r.status, 200);
    let text = r.text();
    assert!(text.starts_with("1.0\n2007-01-19\n"), "{text}");
    assert!(text.ends_with("\n2022-09-24\nlatest"), "{text}");
    assert_eq!(r.header("server"), Some("EC2ws"));
    assert_eq!(r.header("content-type"), Some("text/plain"));
    for root in ["/latest", "/latest/", "/2009-04-04/", "/2021-03-23"] {
        let r = get(s.data_v4(), root, &[]).unwrap();
        assert_eq!((r.status, r.text().as_str()), (200, "dynamic\nmeta-data\nuser-data"), "{root}");
    }
    let r = get(s.data_v4(), "/1999-01-01/meta-data/", &[]).unwrap();
    assert_eq!(r.status, 404);
    assert_eq!(r.text(), NOT_FOUND_PAGE);
    assert_eq!(r.header("content-type"), Some("text/html"));
}

#[test]
fn imdsv1_reads_the_demo_instance() {
    let s = demo();
    let r = get(s.data_v4(), "/latest/meta-data/instance-id", &[]).unwrap();
    assert_eq!((r.status, r.text().as_str()), (200, "i-0123456789abcdef0"));
    assert_eq!(r.header("content-length"), Some("19"));
    assert!(r.header("date").is_some());
    assert_eq!(r.header("x-aws-ec2-metadata-token-ttl-seconds"), None, "no TTL header on IMDSv1 answers");
    let r = get(s.data_v4(), "/latest/meta-data/local-ipv4", &[]).unwrap();
    assert_eq!(r.text(), "127.0.0.1");
    let r = get(s.data_v4(), "/latest/meta-data/tags/instance", &[]).unwrap();
    assert_eq!(r.text(), "Environment\nName");
}

#[test]
fn token_put_then_token_get() {
    let s = demo();
    let r =
        request(s.data_v4(), "PUT", "/latest/api/token", &["X-aws-ec2-metadata-token-ttl-seconds: 21600"])
            .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-aws-ec2-metadata-token-ttl-seconds"), Some("21600"));
    assert_eq!(r.header("content-type"), Some("text/plain"));
    let tok = r.text();
    assert!(tok.len() >= 40 && tok.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b)), "{tok}");
    let r = get(s.data_v4(), "/latest/meta-data/instance-id", &[&format!("X-aws-ec2-metadata-token: {tok}")])
        .unwrap();
    assert_eq!((r.status, r.text().as_str()), (200, "i-0123456789abcdef0"));
    let remaining: u32 = r.header("x-aws-ec2-metadata-token-ttl-seconds").unwrap().parse().unwrap();
    assert!((21590..=21600).contains(&remaining), "{remaining}");
}

#[test]
fn token_put_validation() {
    let s = demo();
    let a = s.data_v4();
    let put = |headers: &[&str]| request(a, "PUT", "/latest/api/token", headers).unwrap();
    let missing = put(&[]);
    assert_eq!(missing.status, 400);
    assert!(missing.text().contains("<title>400 - Bad Request</title>"));
    for bad in ["0", "21601", "-1", "1.5", "abc", "", "99999999999999999999999"] {
        assert_eq!(
            put(&[&format!("X-aws-ec2-metadata-token-ttl-seconds: {bad}")]).status,
            400,
            "ttl {bad:?}"
        );
    }
    for ok in ["1", "21600", "0060"] {
        assert_eq!(put(&[&format!("x-aws-ec2-metadata-token-ttl-seconds: {ok}")]).status, 200, "ttl {ok:?}");
    }
    let xff = put(&["X-aws-ec2-metadata-token-ttl-seconds: 60", "X-Forwarded-For: 10.0.0.1"]);
    assert_eq!(xff.status, 403);
    assert!(xff.body.is_empty());
    assert_eq!(xff.header("content-type"), Some("text/plain"));
    assert_eq!(xff.header("server"), Some("EC2ws"));
    let versioned =
        request(a, "PUT", "/2021-03-23/api/token", &["X-aws-ec2-metadata-token-ttl-seconds: 60"]).unwrap();
    assert_eq!(versioned.status, 403);
    let get_token = request(a, "GET", "/latest/api/token", &[]).unwrap();
    assert_eq!(get_token.status, 405);
    assert_eq!(get_token.header("allow"), Some("PUT"));
    let post = request(a, "POST", "/latest/meta-data/", &[]).unwrap();
    assert_eq!(post.status, 405);
    assert_eq!(post.header("allow"), Some("GET, HEAD"));
}

#[test]
fn invalid_tokens_are_401_even_when_imdsv1_is_allowed() {
    let s = demo();
    let a = s.data_v4();
    let good = token(a, 60).unwrap();
    let mut altered = good.clone().into_bytes();
    let last = altered.len() - 1;
    altered[last] = if altered[last] == b'A' { b'B' } else { b'A' };
    let altered = String::from_utf8(altered).unwrap();
    for bad in [altered.as_str(), "garbage", "", &"A".repeat(5000)] {
        let r =
            get(a, "/latest/meta-data/instance-id", &[&format!("X-aws-ec2-metadata-token: {bad}")]).unwrap();
        assert_eq!(r.status, 401, "token {bad:?}");
        assert!(r.text().contains("<title>401 - Unauthorized</title>"));
    }
    let xff = get(
        a,
        "/latest/meta-data/instance-id",
        &[&format!("X-aws-ec2-metadata-token: {good}"), "X-Forwarded-For: 1.2.3.4"],
    )
    .unwrap();
    assert_eq!(xff.status, 403, "a token-bearing GET through a proxy is refused");
    let v1_xff = get(a, "/latest/meta-data/instance-id", &["X-Forwarded-For: 1.2.3.4"]).unwrap();
    assert_eq!(v1_xff.status, 200, "IMDSv1 through a proxy still works");
}

#[test]
fn path_normalisation_as_real_clients_need_it() {
    let s = demo();
    let a = s.data_v4();
    let cases = [
        ("//latest/meta-data/instance-id", "i-0123456789abcdef0"),
        ("/latest//meta-data/reservation-id", "r-0123456789abcdef0"),
        ("/latest/meta-data/placement/availability-zone/", "us-east-1a"),
        ("/latest/meta-data/tags/instance/", "Environment\nName"),
        ("/latest/meta-data/public-keys/", "0=demo-key"),
        ("/latest/meta-data/instance-id?x=1", "i-0123456789abcdef0"),
        ("/latest/meta-data/instance%2Did", "i-0123456789abcdef0"),
    ];
    for (path, body) in cases {
        let r = get(a, path, &[]).unwrap();
        assert_eq!((r.status, r.text().as_str()), (200, body), "{path}");
    }
    assert_eq!(get(a, "/latest/Meta-Data/instance-id", &[]).unwrap().status, 404);
    assert_eq!(get(a, "/latest/meta-data/nope", &[]).unwrap().status, 404);
    assert_eq!(get(a, "/latest/meta-data/%zz", &[]).unwrap().status, 400);
    assert_eq!(get(a, "/latest/meta-data/%ff%fe", &[]).unwrap().status, 400);
}

#[test]
fn listings_and_user_data() {
    let s = demo();
    let a = s.data_v4();
    let top = get(a, "/latest/meta-data/", &[]).unwrap().text();
    assert!(!top.ends_with('\n'));
    for entry in ["ami-id", "block-device-mapping/", "iam/", "instance-id", "network/", "placement/", "tags/"]
    {
        assert!(top.lines().any(|l| l == entry), "{entry} missing from {top}");
    }
    let ud = get(a, "/latest/user-data", &[]).unwrap();
    assert_eq!(ud.status, 200);
    assert_eq!(ud.header("content-type"), Some("application/octet-stream"));
    assert_eq!(ud.body, b"#!/bin/sh\necho 'hello from imdsd user data'\n");
    assert_eq!(get(a, "/latest/user-data/", &[]).unwrap().body, ud.body);
}

#[test]
fn head_has_the_headers_of_get_and_no_body() {
    let s = demo();
    let mut c = TcpStream::connect(s.data_v4()).unwrap();
    c.write_all(b"HEAD /latest/meta-data/instance-id HTTP/1.1\r\nHost: x\r\n\r\nGET /latest/meta-data/ami-id HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let head = read_response(&mut c, true).unwrap();
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-length"), Some("19"));
    // The next response on the same connection starts right after the head:
    // had HEAD sent a body, this parse would fail.
    let next = read_response(&mut c, false).unwrap();
    assert_eq!((next.status, next.text().as_str()), (200, "ami-0a887e401f7654935"));
}

#[test]
fn keep_alive_serves_many_requests_on_one_connection() {
    let s = demo();
    let mut c = TcpStream::connect(s.data_v4()).unwrap();
    for _ in 0..5 {
        c.write_all(b"GET /latest/meta-data/instance-type HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let r = read_response(&mut c, false).unwrap();
        assert_eq!((r.status, r.text().as_str()), (200, "m5.large"));
    }
}

#[test]
fn ipv6_loopback_is_the_same_instance() {
    let s = demo();
    let Some(v6) = s.data_v6() else { panic!("no IPv6 listener") };
    let tok = token(v6, 60).unwrap();
    let r = get(v6, "/latest/meta-data/instance-id", &[&format!("X-aws-ec2-metadata-token: {tok}")]).unwrap();
    assert_eq!((r.status, r.text().as_str()), (200, "i-0123456789abcdef0"));
    // A token is bound to the instance, not to the address family.
    let r = get(s.data_v4(), "/latest/meta-data/instance-id", &[&format!("X-aws-ec2-metadata-token: {tok}")])
        .unwrap();
    assert_eq!(r.status, 200);
}

fn connect_from(source: &str, target: SocketAddr) -> std::io::Result<TcpStream> {
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    sock.bind(&source.parse::<SocketAddr>().unwrap().into())?;
    sock.connect(&target.into())?;
    Ok(sock.into())
}

#[test]
fn unknown_callers_learn_nothing_and_are_counted() {
    let s = demo();
    let mut c = connect_from("127.0.0.2:0", s.data_v4()).unwrap();
    let _ = c.write_all(b"GET /latest/meta-data/instance-id HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(read_response(&mut c, false).is_err(), "an unknown source gets no answer");
    let metrics = get(s.admin, "/metrics", &[]).unwrap().text();
    let line = metrics
        .lines()
        .find(|l| l.starts_with("imds_connections_refused_total{reason=\"unknown_source\"}"))
        .expect(&metrics);
    assert!(line.ends_with(" 1"), "{line}");
}

#[test]
fn hostile_input_gets_a_clean_4xx_or_a_closed_connection() {
    let s = demo();
    let a = s.data_v4();
    let huge_header =
        format!("GET /latest/meta-data/ HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n", "a".repeat(100_000));
    // A closed connection (Err) is also acceptable.
    if let Ok(r) = raw_request(a, huge_header.as_bytes()) {
        assert!((400..500).contains(&r.status), "{}", r.status);
    }
    let long_path = format!("GET /latest/meta-data/{} HTTP/1.1\r\nHost: x\r\n\r\n", "a/".repeat(30_000));
    if let Ok(r) = raw_request(a, long_path.as_bytes()) {
        assert!((400..500).contains(&r.status), "{}", r.status);
    }
    if let Ok(r) = raw_request(a, b"\x00\x01\x02garbage\r\n\r\n") {
        assert!((400..500).contains(&r.status), "{}", r.status);
    }
    // A client that disconnects mid-request does not hurt anyone else.
    {
        let mut c = TcpStream::connect(a).unwrap();
        c.write_all(b"GET /latest/meta-da").unwrap();
    }
    let r = get(a, "/latest/meta-data/instance-id", &[]).unwrap();
    assert_eq!(r.status, 200);
    let health = get(s.admin, "/healthz", &[]).unwrap();
    assert_eq!((health.status, health.text().as_str()), (200, "ok\n"));
}
