//! Where the data plane reports IMDSv1 use, per instance: the counts behind
//! CloudWatch's `MetadataNoToken` / `MetadataNoTokenRejected` and the
//! "who still calls IMDSv1" report. The data plane only calls the sink; the
//! sink (crate `imds-usage`) aggregates and persists off the request path.

use imds_core::InstanceId;
use std::net::IpAddr;

/// Receives one call per token-less request.
pub trait UsageSink: Send + Sync + 'static {
    /// A token-less (IMDSv1) request was served.
    fn no_token(&self, instance: &InstanceId, source: IpAddr, user_agent: Option<&[u8]>, path: &str);
    /// A token-less request was refused because tokens are required.
    fn no_token_rejected(&self, instance: &InstanceId);
}

/// A sink that records nothing (tests, and processes that keep no usage).
#[derive(Debug, Default, Clone, Copy)]
pub struct NoUsage;

impl UsageSink for NoUsage {
    fn no_token(&self, _: &InstanceId, _: IpAddr, _: Option<&[u8]>, _: &str) {}
    fn no_token_rejected(&self, _: &InstanceId) {}
}
