//! Prometheus metrics of the data plane. Labels come from small closed sets;
//! per-instance detail never becomes a label.

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use std::fmt::Write;

/// How a request authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ImdsVersion {
    /// No token header.
    V1,
    /// With a token header (valid or not), or a token PUT.
    V2,
}

/// What a request asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RouteClass {
    /// `PUT /latest/api/token`
    Token,
    /// `GET /` and version roots.
    Root,
    /// `meta-data/…` other than credentials.
    MetaData,
    /// `iam/security-credentials/…`, `identity-credentials/…`
    Credentials,
    /// `dynamic/…`
    Dynamic,
    /// `user-data`
    UserData,
    /// Anything else (unknown paths, bad methods).
    Other,
}

impl EncodeLabelValue for ImdsVersion {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
        encoder.write_str(match self {
            Self::V1 => "v1",
            Self::V2 => "v2",
        })
    }
}

impl EncodeLabelValue for RouteClass {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
        encoder.write_str(match self {
            Self::Token => "token",
            Self::Root => "root",
            Self::MetaData => "meta_data",
            Self::Credentials => "credentials",
            Self::Dynamic => "dynamic",
            Self::UserData => "user_data",
            Self::Other => "other",
        })
    }
}

/// Labels of `imds_requests_total`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct RequestLabels {
    /// IMDS version of the request.
    pub version: ImdsVersion,
    /// Route class.
    pub route: RouteClass,
    /// HTTP status answered.
    pub status: u16,
}

/// Labels of `imds_tokens_rejected_total`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct ReasonLabels {
    /// Why (`malformed`, `forged`, `expired`, `unknown_key`, `empty`).
    pub reason: &'static str,
}

/// Labels of `imds_connections_refused_total`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct RefusedLabels {
    /// Why (`unknown_source`, `ipv6_disabled`, `instance_connection_cap`,
    /// `global_connection_cap`, `fair_share`).
    pub reason: &'static str,
}

/// The data plane's counters.
#[derive(Debug, Default, Clone)]
pub struct DataPlaneMetrics {
    /// Requests answered.
    pub requests: Family<RequestLabels, Counter>,
    /// Session tokens issued.
    pub tokens_issued: Counter,
    /// Token-bearing requests refused.
    pub tokens_rejected: Family<ReasonLabels, Counter>,
    /// IMDSv1 requests served (`MetadataNoToken`).
    pub no_token: Counter,
    /// IMDSv1 requests refused because tokens are required (`MetadataNoTokenRejected`).
    pub no_token_rejected: Counter,
    /// Connections closed without an answer.
    pub connections_refused: Family<RefusedLabels, Counter>,
    /// Requests answered 429 (over the instance's request rate).
    pub throttled: Counter,
}

impl DataPlaneMetrics {
    /// Registers every metric in `registry` under `imds_…` names.
    pub fn register(&self, registry: &mut Registry) {
        registry.register("imds_requests", "Data-plane requests answered", self.requests.clone());
        registry.register("imds_tokens_issued", "IMDSv2 session tokens issued", self.tokens_issued.clone());
        registry.register(
            "imds_tokens_rejected",
            "Requests refused for a bad token",
            self.tokens_rejected.clone(),
        );
        registry.register(
            "imds_no_token_requests",
            "IMDSv1 (token-less) requests served",
            self.no_token.clone(),
        );
        registry.register(
            "imds_no_token_rejected_requests",
            "IMDSv1 requests refused because tokens are required",
            self.no_token_rejected.clone(),
        );
        registry.register(
            "imds_requests_throttled",
            "Requests answered 429 because the instance exceeded its request rate",
            self.throttled.clone(),
        );
        registry.register(
            "imds_connections_refused",
            "Connections closed without an answer",
            self.connections_refused.clone(),
        );
    }

    /// Counts a connection closed for `reason`.
    pub fn refuse(&self, reason: &'static str) {
        self.connections_refused.get_or_create(&RefusedLabels { reason }).inc();
    }
}
