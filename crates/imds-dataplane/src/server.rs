//! The accept loop: one task per connection, HTTP/1.x with keep-alive.
//!
//! The caller's address is checked at accept time, so a source that belongs
//! to no instance is closed before a byte is read; each request is checked
//! again (the instance may have been stopped while the connection was idle).
//!
//! Also owns what a connection may cost the service: a connection must
//! complete a request head within [`ConnLimits::header_read_timeout`] of
//! opening and of its previous request head (slowloris and idle
//! connections are closed), and a connection answered 429 is not read again
//! until its instance's turn ([`InstanceAdmission::throttle_pause`]).

use crate::limits::InstanceAdmission;
use crate::service::{ConnInfo, Outcome, RequestHead, handle};
use crate::snapshot::DataPlane;
use http::StatusCode;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use imds_net::{HopLimitedStream, canonical_ip};
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::time::Sleep;

/// Limits of one data-plane connection.
#[derive(Debug, Clone, Copy)]
pub struct ConnLimits {
    /// Time allowed to complete a request head after the connection opened
    /// or after the previous request head: closes slowloris and idle
    /// keep-alive connections.
    pub header_read_timeout: Duration,
    /// Largest request head accepted, in bytes; larger ones are refused.
    pub max_header_bytes: usize,
}

impl Default for ConnLimits {
    fn default() -> Self {
        Self { header_read_timeout: Duration::from_secs(10), max_header_bytes: 16 * 1024 }
    }
}

/// The request was answered by closing the connection.
#[derive(Debug)]
struct Refused(&'static str);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "connection refused: {}", self.0)
    }
}

impl std::error::Error for Refused {}

/// Resolves once `shutdown` turns true (or its sender is gone). The watch
/// guard is dropped inside, so callers' futures stay `Send`.
pub async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

/// Connections accepted by hand after each `accept().await` before the
/// accept loop lets the connection tasks run: during a connection storm the
/// listener is always ready, and without yielding the loop would hold the
/// worker for thousands of accepts (tens of milliseconds).
const ACCEPT_BATCH: usize = 16;

/// Serves `listener` until `shutdown` turns true; then stops accepting and
/// lets open connections finish their current request.
pub async fn serve(
    dp: Arc<DataPlane>,
    listener: TcpListener,
    limits: ConnLimits,
    mut shutdown: watch::Receiver<bool>,
) {
    let via_ipv6 = listener.local_addr().map(|a| a.is_ipv6()).unwrap_or(false);
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stopped(&mut shutdown) => break,
        };
        match accepted {
            Ok((stream, peer)) => admit(&dp, Accepted::Registered(stream), peer, via_ipv6, limits, &shutdown),
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        }
        // Whatever else is queued is accepted without registering the
        // socket with the reactor first (`TcpListener::accept` does): a
        // refused connection (a flooding instance at its cap reconnects
        // thousands of times a second) then costs accept, set-linger and
        // close, nothing more. `WouldBlock` ends the batch; the next
        // `accept().await` waits for readiness.
        for _ in 0..ACCEPT_BATCH {
            match socket2::SockRef::from(&listener).accept() {
                Ok((socket, addr)) => {
                    let Some(peer) = addr.as_socket() else { continue };
                    admit(&dp, Accepted::Raw(socket.into()), peer, via_ipv6, limits, &shutdown);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    break;
                }
            }
        }
        tokio::task::yield_now().await;
    }
}

/// A connection as accepted: through tokio (registered) or by hand.
enum Accepted {
    Registered(tokio::net::TcpStream),
    Raw(std::net::TcpStream),
}

/// Serves a new connection in its own task, or resets it.
fn admit(
    dp: &Arc<DataPlane>,
    stream: Accepted,
    peer: std::net::SocketAddr,
    via_ipv6: bool,
    limits: ConnLimits,
    shutdown: &watch::Receiver<bool>,
) {
    let peer_ip = canonical_ip(peer.ip());
    let v6_peer = via_ipv6 && peer_ip.is_ipv6();
    let admitted = match dp.slot_for(peer_ip) {
        None => Err("unknown_source"),
        Some(slot) => {
            let options = slot.load().options;
            let v6_on = options.http_endpoint.is_enabled() && options.http_protocol_ipv6.is_enabled();
            if v6_peer && !v6_on {
                Err("ipv6_disabled")
            } else {
                dp.admit_connection(&slot)
                    .map(|permit| (permit, Arc::clone(slot.admission())))
                    .map_err(|r| r.reason())
            }
        }
    };
    let (permit, admission) = match admitted {
        Ok(admitted) => admitted,
        Err(reason) => {
            dp.metrics().refuse(reason);
            tracing::debug!(%peer, reason, "connection refused");
            // A reset, not a polite close: to the caller this endpoint does
            // not exist, as on EC2.
            let linger = Some(Duration::ZERO);
            let _ = match &stream {
                Accepted::Registered(s) => socket2::SockRef::from(s).set_linger(linger),
                Accepted::Raw(s) => socket2::SockRef::from(s).set_linger(linger),
            };
            return;
        }
    };
    let stream = match stream {
        Accepted::Registered(s) => s,
        Accepted::Raw(s) => match s.set_nonblocking(true).and_then(|()| tokio::net::TcpStream::from_std(s)) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, %peer, "cannot register an accepted connection");
                return;
            }
        },
    };
    let _ = stream.set_nodelay(true);
    let dp = Arc::clone(dp);
    let shutdown = shutdown.clone();
    tokio::spawn(async move {
        serve_connection(dp, stream, peer_ip, v6_peer, admission, limits, shutdown).await;
        drop(permit);
    });
}

/// What the service and the stream of one connection share. Both run in
/// the connection's task; atomics because the task must be `Send`.
#[derive(Debug)]
struct ConnClock {
    /// Time base of the fields below.
    opened: Instant,
    /// Nanoseconds after `opened` when the last request head was complete
    /// (0: none yet).
    last_head: AtomicU64,
    /// Nanoseconds after `opened` before which nothing is read (0: read).
    resume_at: AtomicU64,
}

impl ConnClock {
    fn nanos_since_open(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.opened).as_nanos()).unwrap_or(u64::MAX).max(1)
    }

    fn at(&self, nanos: u64) -> Instant {
        self.opened + Duration::from_nanos(nanos)
    }

    /// Nothing more is read from the connection for `pause`.
    fn pause(&self, pause: Duration) {
        if !pause.is_zero() {
            self.resume_at.store(self.nanos_since_open(Instant::now() + pause), Ordering::Relaxed);
        }
    }
}

/// The connection's stream, which stops reading while its [`ConnClock`]
/// says so. Writes are never held: the 429 itself goes out at once.
struct Paced<S> {
    inner: S,
    clock: Arc<ConnClock>,
    /// Only throttled connections ever create one.
    sleep: Option<Pin<Box<Sleep>>>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Paced<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let resume_at = this.clock.resume_at.load(Ordering::Relaxed);
        if resume_at != 0 {
            let deadline = tokio::time::Instant::from_std(this.clock.at(resume_at));
            let sleep = match &mut this.sleep {
                Some(sleep) => {
                    if sleep.deadline() != deadline {
                        sleep.as_mut().reset(deadline);
                    }
                    sleep
                }
                None => this.sleep.insert(Box::pin(tokio::time::sleep_until(deadline))),
            };
            if sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            // Only clear the pause this sleep was for; a newer one stays.
            let _ = this.clock.resume_at.compare_exchange(resume_at, 0, Ordering::Relaxed, Ordering::Relaxed);
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Paced<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

async fn serve_connection(
    dp: Arc<DataPlane>,
    stream: tokio::net::TcpStream,
    peer: std::net::IpAddr,
    via_ipv6: bool,
    admission: Arc<InstanceAdmission>,
    limits: ConnLimits,
    mut shutdown: watch::Receiver<bool>,
) {
    let (stream, hop_limit) = HopLimitedStream::new(stream);
    let clock = Arc::new(ConnClock {
        opened: Instant::now(),
        last_head: AtomicU64::new(0),
        resume_at: AtomicU64::new(0),
    });
    let conn_info = ConnInfo { peer, via_ipv6, hop_limit };
    let service_clock = Arc::clone(&clock);
    // `handle` is synchronous, so the answer is ready when the head is:
    // no per-request state is cloned into an async block.
    let service = service_fn(move |req: Request<Incoming>| {
        service_clock.last_head.store(service_clock.nanos_since_open(Instant::now()), Ordering::Relaxed);
        let head = RequestHead {
            method: req.method(),
            path_and_query: req.uri().path_and_query().map(|p| p.as_str()).unwrap_or("/"),
            headers: req.headers(),
        };
        let outcome = match handle(&dp, &conn_info, &head) {
            Outcome::Respond(resp) => {
                if resp.status() == StatusCode::TOO_MANY_REQUESTS {
                    service_clock.pause(admission.throttle_pause());
                }
                Ok::<Response<_>, Refused>(resp)
            }
            Outcome::Close(reason) => {
                dp.metrics().refuse(reason);
                Err(Refused(reason))
            }
        };
        std::future::ready(outcome)
    });
    let mut builder = http1::Builder::new();
    // hyper's own header timeout allocates and arms a timer for every
    // request; the watchdog below checks the same deadline lazily instead.
    // Bodies are small (a token, a value, a JSON document): copying one
    // into the head's buffer and writing once is cheaper than queueing it
    // for a vectored write.
    builder
        .header_read_timeout(None)
        .writev(false)
        .max_buf_size(limits.max_header_bytes.max(8192))
        .keep_alive(true);
    let io = Paced { inner: stream, clock: Arc::clone(&clock), sleep: None };
    let conn = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    let timeout = limits.header_read_timeout;
    let watchdog = tokio::time::sleep(timeout);
    tokio::pin!(watchdog);
    loop {
        tokio::select! {
            biased;
            res = conn.as_mut() => {
                if let Err(e) = res {
                    tracing::trace!(error = %e, %peer, "connection ended with an error");
                }
                break;
            }
            () = watchdog.as_mut() => {
                // Due `timeout` after the last complete request head (or the
                // connection's opening): close, or sleep until then.
                let last = clock.at(clock.last_head.load(Ordering::Relaxed));
                let due = last + timeout;
                if Instant::now() >= due {
                    tracing::debug!(%peer, "no complete request head within the header read timeout; closing");
                    break;
                }
                watchdog.as_mut().reset(tokio::time::Instant::from_std(due));
            }
            _ = stopped(&mut shutdown) => {
                conn.as_mut().graceful_shutdown();
                let _ = conn.await;
                break;
            }
        }
    }
}
