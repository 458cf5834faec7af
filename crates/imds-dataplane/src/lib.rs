//! The IMDS data plane: the HTTP service a guest reaches at
//! `169.254.169.254`.
//!
//! Owns request routing, IMDSv1/IMDSv2 policy, the token PUT, and the
//! per-instance metadata snapshots the hot path reads (each renders its tree
//! on first use). It does not own the store: an agent makes
//! [`snapshot::InstanceSnapshot`]s from store records and hands them to
//! [`DataPlane::apply`].

pub mod docs;
pub mod limits;
pub mod metrics;
pub mod path;
pub mod responses;
pub mod server;
pub mod service;
pub mod snapshot;
pub mod tree;
pub mod usage;

pub use limits::Limits;
pub use metrics::DataPlaneMetrics;
pub use snapshot::{
    DataPlane, DataPlaneOptions, InstanceSnapshot, SnapshotChange, SnapshotCredentials, SnapshotSource,
};
