//! Domain types of `imdsd`, shared by every other crate.
//!
//! This crate owns what an instance *is* (its launch record, its metadata
//! options, its addresses), the validation of identifiers and option values,
//! and the injectable [`Clock`]. It performs no I/O: the store persists these
//! types, the agent renders them into data-plane snapshots, and the control
//! plane creates and changes them.

pub mod clock;
pub mod credentials;
pub mod events;
pub mod ids;
pub mod instance;
pub mod options;
pub mod sample;
pub mod timefmt;

pub use clock::{Clock, ManualClock, SystemClock};
pub use credentials::RoleCredentials;
pub use ids::InstanceId;
pub use instance::{
    BlockDevice, IamInstanceProfile, InstanceRecord, InstanceState, LightsailInfo, NetworkInterface,
    Placement, PublicKey, SecurityGroup,
};
pub use options::{Enabled, HopLimit, HttpTokens, MetadataOptions};
