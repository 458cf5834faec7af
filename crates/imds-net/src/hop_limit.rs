//! The IP TTL / IPv6 hop limit of one connection, lowered for the token
//! response.
//!
//! IMDSv2 sends the answer to `PUT /latest/api/token` with an IP TTL equal to
//! the instance's `HttpPutResponseHopLimit`, so a process one router away
//! (a container, a forwarding proxy) never receives a token. The service asks
//! for a hop limit through [`HopLimitControl`] before it returns the token
//! response; [`HopLimitedStream`] applies it with `setsockopt` just before the
//! next bytes are written. A hop limit is only ever lowered: once a token left
//! on a connection, later writes (and the kernel's retransmissions of the
//! token, which read the socket's TTL when they are sent) keep the low value.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// Hop limit the kernel uses when nothing is set (Linux default).
const UNSET: u8 = 0;

/// Shared handle through which a request handler asks for a lower hop limit
/// on its connection.
#[derive(Debug, Clone, Default)]
pub struct HopLimitControl(Arc<AtomicU8>);

impl HopLimitControl {
    /// Asks that the next writes leave with at most `hops` as TTL / hop
    /// limit. A request for a higher value than one already asked for is
    /// ignored: the limit never rises on a connection.
    pub fn lower_to(&self, hops: u8) {
        let hops = hops.max(1);
        let _ = self.0.fetch_update(Ordering::AcqRel, Ordering::Acquire, |cur| {
            (cur == UNSET || hops < cur).then_some(hops)
        });
    }

    /// The hop limit asked for so far, if any.
    pub fn requested(&self) -> Option<u8> {
        match self.0.load(Ordering::Acquire) {
            UNSET => None,
            h => Some(h),
        }
    }
}

/// A TCP stream whose IP TTL / IPv6 hop limit follows a [`HopLimitControl`].
#[derive(Debug)]
pub struct HopLimitedStream {
    stream: TcpStream,
    control: HopLimitControl,
    applied: u8,
}

impl HopLimitedStream {
    /// Wraps an accepted stream; returns the stream and its control handle.
    pub fn new(stream: TcpStream) -> (Self, HopLimitControl) {
        let control = HopLimitControl::default();
        (Self { stream, control: control.clone(), applied: UNSET }, control)
    }

    /// The wrapped stream.
    pub fn get_ref(&self) -> &TcpStream {
        &self.stream
    }

    /// Applies a newly requested hop limit before bytes are written.
    fn sync_hop_limit(&mut self) -> io::Result<()> {
        let Some(want) = self.control.requested() else {
            return Ok(());
        };
        if want == self.applied {
            return Ok(());
        }
        let sock = socket2::SockRef::from(&self.stream);
        let is_v6_socket = self.stream.local_addr()?.is_ipv6();
        if is_v6_socket {
            // IP_TTL alone does not limit native IPv6 packets; a dual-stack
            // socket serving an IPv4-mapped peer needs IP_TTL as well.
            sock.set_unicast_hops_v6(u32::from(want))?;
            let _ = sock.set_ttl_v4(u32::from(want));
        } else {
            sock.set_ttl_v4(u32::from(want))?;
        }
        self.applied = want;
        Ok(())
    }
}

impl AsyncRead for HopLimitedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for HopLimitedStream {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.sync_hop_limit()?;
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.sync_hop_limit()?;
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    #[test]
    fn hop_limit_only_goes_down() {
        let c = HopLimitControl::default();
        assert_eq!(c.requested(), None);
        c.lower_to(2);
        assert_eq!(c.requested(), Some(2));
        c.lower_to(5);
        assert_eq!(c.requested(), Some(2));
        c.lower_to(1);
        assert_eq!(c.requested(), Some(1));
        c.lower_to(0);
        assert_eq!(c.requested(), Some(1), "0 is clamped to 1, never 'unset'");
    }

    async fn socket_ttl(addr: &str) -> (u32, u32) {
        let listener = TcpListener::bind(addr).await.unwrap();
        let target = listener.local_addr().unwrap();
        let client = tokio::spawn(async move {
            let mut c = TcpStream::connect(target).await.unwrap();
            let mut b = [0u8; 2];
            c.read_exact(&mut b).await.unwrap();
        });
        let (accepted, _) = listener.accept().await.unwrap();
        let (mut s, control) = HopLimitedStream::new(accepted);
        let ttl_of = |s: &HopLimitedStream| {
            let sock = socket2::SockRef::from(s.get_ref());
            if target.is_ipv6() { sock.unicast_hops_v6().unwrap() } else { sock.ttl_v4().unwrap() }
        };
        let before = ttl_of(&s);
        control.lower_to(3);
        s.write_all(b"ok").await.unwrap();
        let after = ttl_of(&s);
        client.await.unwrap();
        (before, after)
    }

    #[tokio::test]
    async fn write_applies_requested_ttl_on_ipv4() {
        let (before, after) = socket_ttl("127.0.0.1:0").await;
        assert_eq!(before, 64);
        assert_eq!(after, 3);
    }

    #[tokio::test]
    async fn write_applies_requested_hop_limit_on_ipv6() {
        let (before, after) = socket_ttl("[::1]:0").await;
        assert_ne!(before, 3);
        assert_eq!(after, 3);
    }
}
