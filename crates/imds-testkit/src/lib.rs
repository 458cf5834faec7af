//! Test-only helpers shared by the integration tests: start a real `imdsd`
//! process on ephemeral ports with its own data directory (`serve`, or the
//! fleet's `control` and `agent`), talk raw HTTP/1.1 to it so every byte
//! of a response can be asserted (from a chosen source address, to act as
//! an instance), and call its EC2 API with signed requests.

pub mod ec2;
pub mod fleet;
pub mod http;
pub mod process;

pub use ec2::{Ec2Client, Ec2Response};
pub use fleet::{FleetBuilder, FleetProcess};
pub use http::{RawResponse, raw_request};
pub use process::{ImdsdBuilder, ImdsdProcess};
