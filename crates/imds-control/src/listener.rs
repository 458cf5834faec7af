//! The control listener: its own accept loop (hyper's HTTP/1 builder) so
//! that each connection gets hyper's header-read timeout, which also ends
//! idle kept-alive connections, and a socket wrapper that fails a write
//! making no progress for the request deadline (hyper has no write
//! timeout). What a request means is [`crate::server`]'s concern.

use crate::limits::{ControlLimits, LimitsHandle};
use axum::Router;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::sync::watch;

/// The peer of the connection a request came on (a request extension set
/// by [`serve`]); requests without it share one source bucket.
#[derive(Debug, Clone, Copy)]
pub struct PeerAddr(pub SocketAddr);

/// Serves `router` on `listener` until `shutdown` turns true, then lets
/// requests in flight finish. Each connection gets hyper's header-read
/// timeout from `limits` (as they are when it is accepted), which also
/// bounds how long a kept-alive connection may idle; each request is
/// tagged with its [`PeerAddr`] for the source buckets.
pub async fn serve(
    router: Router,
    listener: tokio::net::TcpListener,
    limits: LimitsHandle,
    mut shutdown: watch::Receiver<bool>,
) {
    use hyper::server::conn::http1;
    use hyper_util::rt::{TokioIo, TokioTimer};
    use hyper_util::service::TowerToHyperService;

    // Every connection task holds a sender; once the last is dropped, the
    // requests in flight at shutdown have finished.
    let (alive, mut all_done) = tokio::sync::mpsc::channel::<()>(1);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "control listener: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stopped(&mut shutdown) => break,
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(router.clone().layer(axum::Extension(PeerAddr(peer))));
        let ControlLimits { header_read_timeout, request_timeout, .. } = limits.limits();
        let mut shutdown = shutdown.clone();
        let alive = alive.clone();
        tokio::spawn(async move {
            let _alive = alive;
            let mut builder = http1::Builder::new();
            builder.timer(TokioTimer::new()).header_read_timeout(header_read_timeout).keep_alive(true);
            let io = TokioIo::new(StallGuard::new(stream, request_timeout));
            let conn = builder.serve_connection(io, service);
            tokio::pin!(conn);
            tokio::select! {
                res = conn.as_mut() => {
                    if let Err(e) = res {
                        tracing::debug!(error = %e, %peer, "control connection ended with an error");
                    }
                }
                _ = stopped(&mut shutdown) => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
        });
    }
    drop(alive);
    let _ = all_done.recv().await;
}

/// Resolves once `shutdown` turns true (or its sender is gone); the watch
/// guard is dropped inside, so the futures holding this stay `Send`.
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

/// A connection whose writes fail once they have made no progress for
/// `limit`: the answer to a client that stops reading cannot hold its task
/// and buffers forever (hyper has no write timeout). Reads are untouched;
/// the header-read timeout and the request deadline bound them.
struct StallGuard<T> {
    inner: T,
    limit: Duration,
    stalled: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
}

impl<T> StallGuard<T> {
    fn new(inner: T, limit: Duration) -> Self {
        Self { inner, limit, stalled: None }
    }

    /// Maps a pending write to an error once the stall outlasts the limit.
    fn check<R>(
        &mut self,
        cx: &mut std::task::Context<'_>,
        polled: std::task::Poll<std::io::Result<R>>,
    ) -> std::task::Poll<std::io::Result<R>> {
        use std::future::Future;
        use std::task::Poll;
        match polled {
            Poll::Ready(r) => {
                self.stalled = None;
                Poll::Ready(r)
            }
            Poll::Pending => {
                let limit = self.limit;
                let sleep = self.stalled.get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
                match sleep.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "the client read nothing of the answer within the request deadline",
                    ))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }
}

impl<T: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for StallGuard<T> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for StallGuard<T> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let polled = std::pin::Pin::new(&mut self.inner).poll_write(cx, buf);
        self.check(cx, polled)
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let polled = std::pin::Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.check(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let polled = std::pin::Pin::new(&mut self.inner).poll_flush(cx);
        self.check(cx, polled)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[tokio::test]
    async fn a_write_nobody_reads_fails_after_the_limit() {
        let (a, _b) = tokio::io::duplex(64);
        let mut guarded = StallGuard::new(a, Duration::from_millis(200));
        let result = tokio::time::timeout(Duration::from_secs(30), guarded.write_all(&[0u8; 4096])).await;
        let err = result.expect("the write gives up by itself").expect_err("nobody reads");
        assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
    }

    #[tokio::test]
    async fn a_slow_reader_is_not_cut_off() {
        use tokio::io::AsyncReadExt;
        let (a, mut b) = tokio::io::duplex(64);
        let mut guarded = StallGuard::new(a, Duration::from_secs(5));
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            b.read_to_end(&mut got).await.map(|_| got.len())
        });
        guarded.write_all(&[1u8; 4096]).await.expect("progress resets the stall timer");
        guarded.shutdown().await.expect("shutdown");
        drop(guarded);
        assert_eq!(reader.await.ok().and_then(Result::ok), Some(4096));
    }
}
