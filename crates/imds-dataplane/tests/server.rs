//! The server over real sockets: what a flooding instance, a slow client and
//! an idle connection observe, and that another instance is unaffected.
//!
//! Time only appears as generous bounds that a slow machine cannot break:
//! lower bounds on how long a throttled flood takes (a slow machine only
//! makes it longer) and upper bounds of many seconds on closes that are due
//! after one.

#![allow(clippy::unwrap_used)] // tests unwrap: a panic is the failure report

use imds_core::sample::sample_instance;
use imds_core::{InstanceId, SystemClock};
use imds_dataplane::server::{ConnLimits, serve};
use imds_dataplane::tree::RenderInputs;
use imds_dataplane::{DataPlane, DataPlaneOptions, InstanceSnapshot, Limits, SnapshotChange};
use imds_token::KeyRing;
use std::net::{Ipv4Addr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::watch;

const FLOODER: (&str, [u8; 4]) = ("i-00000000000000002", [127, 0, 0, 2]);
const STEADY: (&str, [u8; 4]) = ("i-00000000000000003", [127, 0, 0, 3]);
const GET: &[u8] = b"GET /latest/meta-data/instance-id HTTP/1.1\r\nHost: 169.254.169.254\r\n\r\n";

struct Server {
    addr: SocketAddr,
    dp: Arc<DataPlane>,
    _stop: watch::Sender<bool>,
}

async fn start(limits: Limits, conn_limits: ConnLimits) -> Server {
    let options = DataPlaneOptions { limits, ..DataPlaneOptions::default() };
    let dp = DataPlane::new(KeyRing::generate(0).unwrap(), Arc::new(SystemClock), options);
    let inputs = RenderInputs {
        role_credentials_v1: None,
        role_credentials_v2: None,
        role_error: None,
        identity_credentials: None,
        now_secs: 0,
        events: &[],
        signer: None,
    };
    let snapshots = [FLOODER, STEADY].map(|(id, ip)| {
        let record = sample_instance(InstanceId::parse(id).unwrap(), Ipv4Addr::from(ip), None);
        SnapshotChange::Upsert(Arc::new(InstanceSnapshot::render(&record, &inputs)))
    });
    dp.apply(snapshots.into());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stop_rx) = watch::channel(false);
    tokio::spawn(serve(Arc::clone(&dp), listener, conn_limits, stop_rx));
    Server { addr, dp, _stop: stop }
}

async fn connect(from: [u8; 4], to: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::from((from, 0))).unwrap();
    socket.connect(to).await.unwrap()
}

/// Sends one GET and reads its response: (status, body).
async fn get(stream: &mut TcpStream) -> (u16, String) {
    stream.write_all(GET).await.unwrap();
    let mut buf = Vec::new();
    loop {
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await.unwrap();
        assert!(n > 0, "connection closed mid-response");
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let len: usize = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap())
                })
                .unwrap_or(0);
            if body.len() >= len {
                let status = head.split(' ').nth(1).unwrap().parse().unwrap();
                return (status, body[..len].to_owned());
            }
        }
    }
}

/// True once the server has closed `stream` (EOF or reset).
async fn closed_by_server(stream: &mut TcpStream, within: Duration) -> bool {
    let mut byte = [0u8; 1];
    matches!(tokio::time::timeout(within, stream.read(&mut byte)).await, Ok(Ok(0) | Err(_)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_is_held_near_the_configured_rate_and_another_instance_is_served() {
    // 50 requests per second, burst 10.
    let limits = Limits {
        requests_per_second: NonZeroU32::new(50).unwrap(),
        burst: NonZeroU32::new(10).unwrap(),
        ..Limits::default()
    };
    let server = start(limits, ConnLimits::default()).await;
    const CONNS: usize = 4;
    const PER_CONN: usize = 50;

    let started = Instant::now();
    let flood: Vec<_> = (0..CONNS)
        .map(|_| {
            let addr = server.addr;
            tokio::spawn(async move {
                let mut s = connect(FLOODER.1, addr).await;
                let mut statuses = Vec::new();
                for _ in 0..PER_CONN {
                    let (status, body) = get(&mut s).await;
                    if status == 429 {
                        assert_eq!(body, "", "a 429 has an empty body");
                    }
                    statuses.push(status);
                }
                statuses
            })
        })
        .collect();
    // Meanwhile the other instance makes a burst's worth of requests.
    let mut steady = connect(STEADY.1, server.addr).await;
    for _ in 0..10 {
        assert_eq!(get(&mut steady).await, (200, STEADY.0.to_owned()));
    }
    let mut statuses = Vec::new();
    for task in flood {
        statuses.extend(task.await.unwrap());
    }
    let elapsed = started.elapsed();

    let ok = statuses.iter().filter(|s| **s == 200).count();
    let throttled = statuses.iter().filter(|s| **s == 429).count();
    assert_eq!(ok + throttled, CONNS * PER_CONN, "only 200s and 429s: {statuses:?}");
    assert!(throttled > 0 && ok >= 10, "{ok} answered 200, {throttled} 429");
    // Every 429 made its connection wait for a turn, 20 ms after the
    // previous turn, and a 200 needs a token (10 + 50 per second): 200
    // requests cannot be answered in much less than 1.9 s. Unpaced, they
    // take a few milliseconds on loopback.
    assert!(elapsed >= Duration::from_millis(1_500), "{} requests in {elapsed:?}", CONNS * PER_CONN);
    // The 200s stay within the bucket, however long the run took.
    let allowed = 10.0 + 50.0 * elapsed.as_secs_f64() + 2.0;
    assert!((ok as f64) <= allowed, "{ok} answered 200 in {elapsed:?}");
    assert_eq!(server.dp.metrics().throttled.get(), throttled as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throttled_connection_is_answered_429_at_once_and_read_again_later() {
    let limits = Limits {
        requests_per_second: NonZeroU32::new(1).unwrap(),
        burst: NonZeroU32::new(1).unwrap(),
        ..Limits::default()
    };
    let server = start(limits, ConnLimits::default()).await;
    let mut s = connect(FLOODER.1, server.addr).await;
    assert_eq!(get(&mut s).await.0, 200);
    assert_eq!(get(&mut s).await, (429, String::new()));
    // The connection stays usable: the next request is read once the
    // instance's turn comes (a second at 1 request per second), and it
    // finds a token again.
    let started = Instant::now();
    assert_eq!(get(&mut s).await.0, 200);
    assert!(started.elapsed() >= Duration::from_millis(400), "{:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_idle_connections_are_closed_after_the_header_read_timeout() {
    let conn_limits = ConnLimits { header_read_timeout: Duration::from_secs(1), ..ConnLimits::default() };
    let server = start(Limits::default(), conn_limits).await;

    // Slowloris: part of a head, then nothing.
    let mut slow = connect(STEADY.1, server.addr).await;
    let opened = Instant::now();
    slow.write_all(b"GET /latest/meta-data/instance-id HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    assert!(closed_by_server(&mut slow, Duration::from_secs(20)).await, "a partial head is closed");
    assert!(opened.elapsed() >= Duration::from_millis(900), "closed early: {:?}", opened.elapsed());

    // Never sends anything.
    let mut silent = connect(STEADY.1, server.addr).await;
    assert!(closed_by_server(&mut silent, Duration::from_secs(20)).await, "a silent connection is closed");

    // Idle after a request on a kept-alive connection.
    let mut idle = connect(STEADY.1, server.addr).await;
    assert_eq!(get(&mut idle).await, (200, STEADY.0.to_owned()));
    let answered = Instant::now();
    assert!(closed_by_server(&mut idle, Duration::from_secs(20)).await, "an idle connection is closed");
    assert!(answered.elapsed() >= Duration::from_millis(900), "closed early: {:?}", answered.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_keeps_sending_requests_stays_open() {
    let conn_limits = ConnLimits { header_read_timeout: Duration::from_secs(5), ..ConnLimits::default() };
    let server = start(Limits::default(), conn_limits).await;
    let mut s = connect(STEADY.1, server.addr).await;
    // Longer than the timeout in all, one request every 100 ms: the
    // deadline counts from the last request, not from the opening.
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(7) {
        assert_eq!(get(&mut s).await, (200, STEADY.0.to_owned()));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
