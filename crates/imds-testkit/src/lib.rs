//! Test-only helpers shared by the integration tests: start a real `imdsd`
//! process on ephemeral ports with its own data directory, and talk raw
//! HTTP/1.1 to it so every byte of a response can be asserted.

pub mod http;
pub mod process;

pub use http::{RawResponse, raw_request};
pub use process::{ImdsdBuilder, ImdsdProcess};
