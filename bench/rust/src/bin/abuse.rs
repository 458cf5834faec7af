//! Loopback load for the hardening benchmark (bench/abuse.py): a flooding
//! instance and a well-behaved one, each bound to its own source address so
//! that imdsd sees two instances. Both stop by themselves (deadline and
//! caps on connection attempts); every target must be a loopback address.
//!
//! ```text
//! abuse steady --target 127.0.0.1:PORT --src 127.0.0.3 --rate 200 --seconds 10 [--reconnect-every 50]
//! abuse flood  --target 127.0.0.1:PORT --src 127.0.0.2 --seconds 10 --idle 3000 --flood-conns 32
//!              [--max-connects 50000]
//! ```
//!
//! `steady` gets a token (PUT) and then GETs `instance-id` with it at a fixed
//! rate, opening a fresh connection every `--reconnect-every` requests as
//! SDKs do now and then; it prints one JSON line with its counts and latency
//! percentiles (ms, from sending the request to the end of the response).
//!
//! `flood` opens `--flood-conns` connections that send IMDSv1 GETs back to
//! back, and `--idle` connections that send nothing; whenever the server
//! closes or resets one, it is reopened (so refused connections turn into a
//! connection storm, capped by `--max-connects`). Prints one JSON line:
//! statuses seen, connections refused (reset while connecting or before any
//! answer), idle connections closed later by the server.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

fn usage() -> ! {
    eprintln!("usage: abuse steady|flood --target ADDR --src IP --seconds S [options]; see the source");
    std::process::exit(2)
}

#[derive(Clone)]
struct Opts {
    target: SocketAddr,
    src: IpAddr,
    seconds: f64,
    rate: f64,
    reconnect_every: u64,
    idle: usize,
    flood_conns: usize,
    max_connects: u64,
}

fn arg<T: std::str::FromStr>(v: &str) -> T {
    v.parse().unwrap_or_else(|_| usage())
}

fn parse(mut it: impl Iterator<Item = String>) -> Opts {
    let mut o = Opts {
        target: SocketAddr::from(([127, 0, 0, 1], 0)),
        src: IpAddr::from([127, 0, 0, 1]),
        seconds: 10.0,
        rate: 200.0,
        reconnect_every: 50,
        idle: 0,
        flood_conns: 0,
        max_connects: 50_000,
    };
    while let Some(a) = it.next() {
        let v = it.next().unwrap_or_else(|| usage());
        match a.as_str() {
            "--target" => o.target = arg(&v),
            "--src" => o.src = arg(&v),
            "--seconds" => o.seconds = arg(&v),
            "--rate" => o.rate = arg(&v),
            "--reconnect-every" => o.reconnect_every = arg(&v),
            "--idle" => o.idle = arg(&v),
            "--flood-conns" => o.flood_conns = arg(&v),
            "--max-connects" => o.max_connects = arg(&v),
            _ => usage(),
        }
    }
    // Loopback only, bounded in time: this tool never aims anywhere else.
    if !o.target.ip().is_loopback() || !o.src.is_loopback() {
        eprintln!("abuse: --target and --src must be loopback addresses");
        std::process::exit(2)
    }
    if !(o.seconds > 0.0 && o.seconds <= 600.0) || o.rate <= 0.0 || o.reconnect_every == 0 {
        usage()
    }
    o
}

fn main() {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_else(|| usage());
    let opts = parse(args);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap_or_else(|e| {
        eprintln!("abuse: runtime: {e}");
        std::process::exit(1)
    });
    match mode.as_str() {
        "steady" => rt.block_on(steady(opts)),
        "flood" => rt.block_on(flood(opts)),
        _ => usage(),
    }
}

async fn connect(o: &Opts) -> std::io::Result<TcpStream> {
    let socket = if o.src.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    socket.bind(SocketAddr::new(o.src, 0))?;
    let stream = socket.connect(o.target).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Reads one response; returns its status and body. Keeps leftover bytes in `buf`.
async fn read_response(stream: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<(u16, Vec<u8>)> {
    let eof = || std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "closed");
    let head_end = loop {
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
        if buf.len() > 64 * 1024 {
            return Err(std::io::Error::other("response head too large"));
        }
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(eof());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let status: u16 = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let len: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length").then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    while buf.len() < head_end + len {
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(eof());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = buf[head_end..head_end + len].to_vec();
    buf.drain(..head_end + len);
    Ok((status, body))
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

async fn steady(o: Opts) {
    const TIMEOUT: Duration = Duration::from_secs(2);
    let deadline = Instant::now() + Duration::from_secs_f64(o.seconds);
    let interval = Duration::from_secs_f64(1.0 / o.rate);
    let mut statuses: BTreeMap<u16, u64> = BTreeMap::new();
    let mut errors: BTreeMap<String, u64> = BTreeMap::new();
    let mut latencies = Vec::new();
    // First request on each connection: it also waits for the server to
    // accept the connection (behind whatever else is in the accept queue).
    let mut first_latencies = Vec::new();
    let mut token: Option<String> = None;
    let mut conn: Option<(TcpStream, Vec<u8>)> = None;
    let mut on_conn = 0u64;
    let mut connections = 0u64;
    let mut next = Instant::now();
    let mut late = 0u64;
    while next < deadline {
        let now = Instant::now();
        if next > now {
            tokio::time::sleep_until(next.into()).await;
        } else if now - next > interval {
            late += 1;
        }
        next += interval;
        if on_conn >= o.reconnect_every {
            conn = None;
        }
        if conn.is_none() {
            match tokio::time::timeout(TIMEOUT, connect(&o)).await {
                Ok(Ok(s)) => {
                    conn = Some((s, Vec::new()));
                    on_conn = 0;
                    connections += 1;
                }
                Ok(Err(e)) => {
                    *errors.entry(format!("connect: {}", e.kind())).or_default() += 1;
                    continue;
                }
                Err(_) => {
                    *errors.entry("connect: timeout".into()).or_default() += 1;
                    continue;
                }
            }
        }
        let Some((stream, buf)) = conn.as_mut() else { continue };
        let request = match &token {
            None => "PUT /latest/api/token HTTP/1.1\r\nHost: 169.254.169.254\r\nX-aws-ec2-metadata-token-ttl-seconds: 21600\r\n\r\n".to_owned(),
            Some(t) => format!(
                "GET /latest/meta-data/instance-id HTTP/1.1\r\nHost: 169.254.169.254\r\nX-aws-ec2-metadata-token: {t}\r\n\r\n"
            ),
        };
        let started = Instant::now();
        let result = tokio::time::timeout(TIMEOUT, async {
            stream.write_all(request.as_bytes()).await?;
            let status = read_response(stream, buf).await?;
            Ok::<_, std::io::Error>(status)
        })
        .await;
        on_conn += 1;
        match result {
            Ok(Ok((status, body))) => {
                let ms = started.elapsed().as_secs_f64() * 1000.0;
                latencies.push(ms);
                if on_conn == 1 {
                    first_latencies.push(ms);
                }
                *statuses.entry(status).or_default() += 1;
                if token.is_none() && status == 200 {
                    token = Some(String::from_utf8_lossy(&body).into_owned());
                }
            }
            Ok(Err(e)) => {
                *errors.entry(format!("request: {}", e.kind())).or_default() += 1;
                conn = None;
            }
            Err(_) => {
                *errors.entry("request: timeout".into()).or_default() += 1;
                conn = None;
            }
        }
    }
    latencies.sort_by(f64::total_cmp);
    first_latencies.sort_by(f64::total_cmp);
    let ok = statuses.get(&200).copied().unwrap_or(0);
    let sent: u64 = statuses.values().sum::<u64>() + errors.values().sum::<u64>();
    let json_map = |m: &BTreeMap<String, u64>| {
        m.iter().map(|(k, v)| format!("\"{k}\": {v}")).collect::<Vec<_>>().join(", ")
    };
    let status_map = statuses.iter().map(|(k, v)| format!("\"{k}\": {v}")).collect::<Vec<_>>().join(", ");
    println!(
        "{{\"mode\": \"steady\", \"src\": \"{}\", \"sent\": {sent}, \"ok\": {ok}, \"statuses\": {{{status_map}}}, \"errors\": {{{}}}, \"connections\": {connections}, \"late\": {late}, \"p50_ms\": {:.3}, \"p99_ms\": {:.3}, \"max_ms\": {:.3}, \"first_on_connection_p50_ms\": {:.3}, \"first_on_connection_max_ms\": {:.3}}}",
        o.src,
        json_map(&errors),
        percentile(&latencies, 50.0),
        percentile(&latencies, 99.0),
        latencies.last().copied().unwrap_or(0.0),
        percentile(&first_latencies, 50.0),
        first_latencies.last().copied().unwrap_or(0.0),
    );
}

#[derive(Default)]
struct FloodCounts {
    connect_attempts: AtomicU64,
    connect_errors: AtomicU64,
    refused: AtomicU64,
    idle_held: AtomicU64,
    idle_held_max: AtomicU64,
    idle_closed_later: AtomicU64,
    ok: AtomicU64,
    throttled: AtomicU64,
    other_status: AtomicU64,
    request_errors: AtomicU64,
    connect_error_kinds: std::sync::Mutex<BTreeMap<String, u64>>,
}

impl FloodCounts {
    fn connect_failed(&self, e: Option<std::io::Error>) {
        // A reset racing the handshake's completion is a refusal too.
        if e.as_ref().is_some_and(|e| e.kind() == std::io::ErrorKind::ConnectionReset) {
            self.refused.fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.connect_errors.fetch_add(1, Ordering::Relaxed);
        let kind = e.map(|e| format!("{:?}", e.kind())).unwrap_or_else(|| "timeout".into());
        if let Ok(mut m) = self.connect_error_kinds.lock() {
            *m.entry(kind).or_default() += 1;
        }
    }

    fn take_attempt(&self, max: u64) -> bool {
        self.connect_attempts.fetch_add(1, Ordering::Relaxed) < max
    }
}

async fn flood(o: Opts) {
    let deadline = Instant::now() + Duration::from_secs_f64(o.seconds);
    let counts = Arc::new(FloodCounts::default());
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..o.flood_conns {
        let (o, c) = (o.clone(), Arc::clone(&counts));
        tasks.spawn(async move { flood_worker(o, c, deadline).await });
    }
    for _ in 0..o.idle {
        let (o, c) = (o.clone(), Arc::clone(&counts));
        tasks.spawn(async move { idle_worker(o, c, deadline).await });
    }
    let _ = tokio::time::timeout_at((deadline + Duration::from_secs(3)).into(), async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    tasks.abort_all();
    let c = &counts;
    let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
    println!(
        "{{\"mode\": \"flood\", \"src\": \"{}\", \"connect_attempts\": {}, \"connect_errors\": {}, \"connect_error_kinds\": {{{}}}, \"refused\": {}, \"idle_held_max\": {}, \"idle_closed_later\": {}, \"ok\": {}, \"throttled_429\": {}, \"other_status\": {}, \"request_errors\": {}}}",
        o.src,
        g(&c.connect_attempts).min(o.max_connects),
        g(&c.connect_errors),
        c.connect_error_kinds
            .lock()
            .map(|m| m.iter().map(|(k, v)| format!("\"{k}\": {v}")).collect::<Vec<_>>().join(", "))
            .unwrap_or_default(),
        g(&c.refused),
        g(&c.idle_held_max),
        g(&c.idle_closed_later),
        g(&c.ok),
        g(&c.throttled),
        g(&c.other_status),
        g(&c.request_errors),
    );
}

async fn flood_worker(o: Opts, c: Arc<FloodCounts>, deadline: Instant) {
    const REQ: &[u8] = b"GET /latest/meta-data/instance-id HTTP/1.1\r\nHost: 169.254.169.254\r\n\r\n";
    while Instant::now() < deadline && c.take_attempt(o.max_connects) {
        let mut s = match tokio::time::timeout_at(deadline.into(), connect(&o)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                c.connect_failed(Some(e));
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
            Err(_) => {
                c.connect_failed(None);
                continue;
            }
        };
        let mut buf = Vec::new();
        let mut answered = 0u64;
        while Instant::now() < deadline {
            let r = tokio::time::timeout_at(deadline.into(), async {
                s.write_all(REQ).await?;
                read_response(&mut s, &mut buf).await
            })
            .await;
            match r {
                Ok(Ok((200, _))) => c.ok.fetch_add(1, Ordering::Relaxed),
                Ok(Ok((429, _))) => c.throttled.fetch_add(1, Ordering::Relaxed),
                Ok(Ok(_)) => c.other_status.fetch_add(1, Ordering::Relaxed),
                Ok(Err(_)) if answered == 0 => {
                    c.refused.fetch_add(1, Ordering::Relaxed);
                    break;
                }
                Ok(Err(_)) => {
                    c.request_errors.fetch_add(1, Ordering::Relaxed);
                    break;
                }
                Err(_) => break,
            };
            answered += 1;
        }
        // Back off a little after a refusal, as any client loop would.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn idle_worker(o: Opts, c: Arc<FloodCounts>, deadline: Instant) {
    while Instant::now() < deadline && c.take_attempt(o.max_connects) {
        let mut s = match tokio::time::timeout_at(deadline.into(), connect(&o)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                c.connect_failed(Some(e));
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
            Err(_) => {
                c.connect_failed(None);
                continue;
            }
        };
        let opened = Instant::now();
        let held = c.idle_held.fetch_add(1, Ordering::Relaxed) + 1;
        c.idle_held_max.fetch_max(held, Ordering::Relaxed);
        let mut byte = [0u8; 1];
        let r = tokio::time::timeout_at(deadline.into(), s.read(&mut byte)).await;
        c.idle_held.fetch_sub(1, Ordering::Relaxed);
        match r {
            Err(_) => return, // held until the end
            Ok(_) if opened.elapsed() < Duration::from_millis(500) => {
                c.refused.fetch_add(1, Ordering::Relaxed);
            }
            Ok(_) => {
                c.idle_closed_later.fetch_add(1, Ordering::Relaxed);
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
