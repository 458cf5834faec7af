//! The accept loop: one task per connection, HTTP/1.x with keep-alive.
//!
//! The caller's address is checked at accept time, so a source that belongs
//! to no instance is closed before a byte is read; each request is checked
//! again (the instance may have been stopped while the connection was idle).

use crate::service::{ConnInfo, Outcome, RequestHead, handle};
use crate::snapshot::DataPlane;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use imds_net::{HopLimitedStream, canonical_ip};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// Limits of one data-plane connection.
#[derive(Debug, Clone, Copy)]
pub struct ConnLimits {
    /// Time allowed to send a complete request head (slowloris defence).
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
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
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
                    dp.admit_connection(&slot).map_err(|r| r.reason())
                }
            }
        };
        let permit = match admitted {
            Ok(permit) => permit,
            Err(reason) => {
                dp.metrics().refuse(reason);
                tracing::debug!(%peer, reason, "connection refused");
                // A reset, not a polite close: to the caller this endpoint does
                // not exist, as on EC2.
                let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let dp = Arc::clone(&dp);
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            serve_connection(dp, stream, peer_ip, v6_peer, limits, shutdown).await;
            drop(permit);
        });
    }
}

async fn serve_connection(
    dp: Arc<DataPlane>,
    stream: tokio::net::TcpStream,
    peer: std::net::IpAddr,
    via_ipv6: bool,
    limits: ConnLimits,
    mut shutdown: watch::Receiver<bool>,
) {
    let (stream, hop_limit) = HopLimitedStream::new(stream);
    let conn_info = ConnInfo { peer, via_ipv6, hop_limit };
    let service = service_fn(move |req: Request<Incoming>| {
        let dp = Arc::clone(&dp);
        let conn_info = conn_info.clone();
        async move {
            let head = RequestHead {
                method: req.method(),
                path_and_query: req.uri().path_and_query().map(|p| p.as_str()).unwrap_or("/"),
                headers: req.headers(),
            };
            match handle(&dp, &conn_info, &head) {
                Outcome::Respond(resp) => Ok::<Response<_>, Refused>(resp),
                Outcome::Close(reason) => {
                    dp.metrics().refuse(reason);
                    Err(Refused(reason))
                }
            }
        }
    });
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes.max(8192))
        .keep_alive(true);
    let conn = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    tokio::select! {
        res = conn.as_mut() => {
            if let Err(e) = res {
                tracing::trace!(error = %e, %peer, "connection ended with an error");
            }
        }
        _ = stopped(&mut shutdown) => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}
