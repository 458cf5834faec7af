//! Data-plane networking below HTTP.
//!
//! Owns the map from a caller's source address to the instance it belongs
//! to ([`SourceTable`]), the listening sockets ([`listen`]), and the
//! per-connection control of the IP TTL / IPv6 hop limit that IMDSv2 uses to
//! keep session tokens from crossing a router ([`HopLimitedStream`]). It
//! knows nothing of HTTP or of what an instance is.

mod hop_limit;
mod listen;
mod source;

pub use hop_limit::{HopLimitControl, HopLimitedStream};
pub use listen::{ListenError, bind_listener};
pub use source::{SourceTable, canonical_ip};
