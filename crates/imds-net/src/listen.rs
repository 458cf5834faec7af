//! Listening sockets for the data plane.

use std::net::SocketAddr;
use tokio::net::TcpListener;

/// A listener could not be opened.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {addr}: {source}")]
pub struct ListenError {
    /// The address asked for.
    pub addr: SocketAddr,
    /// Why.
    #[source]
    pub source: std::io::Error,
}

/// Binds a TCP listener. IPv6 listeners are IPv6-only, so `[::]:80` and
/// `0.0.0.0:80` can both be given and each family keeps its own rules;
/// `SO_REUSEADDR` lets a restarted server rebind at once.
pub fn bind_listener(addr: SocketAddr) -> Result<TcpListener, ListenError> {
    let err = |source| ListenError { addr, source };
    let domain = socket2::Domain::for_address(addr);
    let socket =
        socket2::Socket::new(domain, socket2::Type::STREAM, Some(socket2::Protocol::TCP)).map_err(err)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true).map_err(err)?;
    }
    socket.set_reuse_address(true).map_err(err)?;
    socket.set_nonblocking(true).map_err(err)?;
    socket.set_tcp_nodelay(true).map_err(err)?;
    socket.bind(&addr.into()).map_err(err)?;
    socket.listen(1024).map_err(err)?;
    TcpListener::from_std(socket.into()).map_err(err)
}
