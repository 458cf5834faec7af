//! Prometheus metrics of the data plane. Labels come from small closed sets;
//! per-instance detail never becomes a label.
//!
//! Owns the metric names and labels, and the per-label-set counter handles
//! the request path increments: a `Family` lookup takes a lock and hashes
//! the labels, so each label set's counter is looked up once and kept.

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use std::fmt::Write;
use std::sync::{Arc, OnceLock};

/// How a request authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum ImdsVersion {
    /// No token header.
    V1,
    /// With a token header (valid or not), or a token PUT.
    V2,
}

/// What a request asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
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

/// Statuses the data plane answers; each gets a cached counter handle per
/// version and route class. Any other status goes through the family.
const STATUSES: [u16; 8] = [200, 400, 401, 403, 404, 405, 429, 500];
const ROUTE_CLASSES: usize = 7;
const REQUEST_SLOTS: usize = 2 * ROUTE_CLASSES * STATUSES.len();

/// Reasons of `imds_connections_refused_total` the server uses.
const REFUSED_REASONS: [&str; 5] =
    ["unknown_source", "ipv6_disabled", "instance_connection_cap", "global_connection_cap", "fair_share"];

/// Reasons of `imds_tokens_rejected_total` (`TokenError::reason` of open).
const REJECTED_REASONS: [&str; 4] = ["malformed", "unknown_key", "forged", "expired"];

impl RequestLabels {
    /// Index of this label set among the cached handles, if it has one.
    fn slot(&self) -> Option<usize> {
        let status = STATUSES.iter().position(|s| *s == self.status)?;
        Some((self.version as usize * ROUTE_CLASSES + self.route as usize) * STATUSES.len() + status)
    }
}

/// Counter handles taken from the families on first use. Created lazily so
/// the exposition lists exactly the label sets that were counted, as the
/// families alone would.
#[derive(Debug)]
struct Handles {
    requests: [OnceLock<Counter>; REQUEST_SLOTS],
    refused: [OnceLock<Counter>; REFUSED_REASONS.len()],
    rejected: [OnceLock<Counter>; REJECTED_REASONS.len()],
}

impl Default for Handles {
    fn default() -> Self {
        Self {
            requests: std::array::from_fn(|_| OnceLock::new()),
            refused: std::array::from_fn(|_| OnceLock::new()),
            rejected: std::array::from_fn(|_| OnceLock::new()),
        }
    }
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
    /// Shared by clones, like the families they point into.
    handles: Arc<Handles>,
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

    /// Counts one answered request (`imds_requests_total`).
    pub fn request(&self, labels: RequestLabels) {
        match labels.slot().and_then(|i| self.handles.requests.get(i)) {
            Some(handle) => handle.get_or_init(|| self.requests.get_or_create(&labels).clone()).inc(),
            None => self.requests.get_or_create(&labels).inc(),
        };
    }

    /// Counts a connection closed for `reason`.
    pub fn refuse(&self, reason: &'static str) {
        cached(&self.connections_refused, &self.handles.refused, &REFUSED_REASONS, reason, |reason| {
            RefusedLabels { reason }
        });
    }

    /// Counts a token refused for `reason` (`TokenError::reason`).
    pub fn reject_token(&self, reason: &'static str) {
        cached(&self.tokens_rejected, &self.handles.rejected, &REJECTED_REASONS, reason, |reason| {
            ReasonLabels { reason }
        });
    }
}

/// Increments `family`'s counter for `reason` through its cached handle
/// when `reason` is one of `known`.
fn cached<L>(
    family: &Family<L, Counter>,
    handles: &[OnceLock<Counter>],
    known: &[&str],
    reason: &'static str,
    labels: impl Fn(&'static str) -> L,
) where
    L: Clone + std::hash::Hash + Eq + EncodeLabelSet + std::fmt::Debug + Send + Sync + 'static,
{
    match known.iter().position(|k| *k == reason).and_then(|i| handles.get(i)) {
        Some(handle) => handle.get_or_init(|| family.get_or_create(&labels(reason)).clone()).inc(),
        None => family.get_or_create(&labels(reason)).inc(),
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::encoding::text::encode;

    fn exposition(m: &DataPlaneMetrics) -> String {
        let mut registry = Registry::default();
        m.register(&mut registry);
        let mut out = String::new();
        encode(&mut out, &registry).unwrap_or_default();
        out
    }

    #[test]
    fn cached_handles_count_into_the_exported_series_and_only_those() {
        let m = DataPlaneMetrics::default();
        let clone = m.clone();
        let ok = RequestLabels { version: ImdsVersion::V2, route: RouteClass::MetaData, status: 200 };
        m.request(ok.clone());
        clone.request(ok);
        m.request(RequestLabels { version: ImdsVersion::V1, route: RouteClass::Other, status: 418 });
        m.refuse("instance_connection_cap");
        clone.refuse("something_new");
        m.reject_token("forged");
        let text = exposition(&m);
        for line in [
            "imds_requests_total{version=\"v2\",route=\"meta_data\",status=\"200\"} 2",
            "imds_requests_total{version=\"v1\",route=\"other\",status=\"418\"} 1",
            "imds_connections_refused_total{reason=\"instance_connection_cap\"} 1",
            "imds_connections_refused_total{reason=\"something_new\"} 1",
            "imds_tokens_rejected_total{reason=\"forged\"} 1",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing from\n{text}");
        }
        assert_eq!(text.lines().filter(|l| l.starts_with("imds_requests_total{")).count(), 2, "{text}");
    }

    #[test]
    fn every_cached_request_label_set_has_its_own_slot() {
        let versions = [ImdsVersion::V1, ImdsVersion::V2];
        let routes = [
            RouteClass::Token,
            RouteClass::Root,
            RouteClass::MetaData,
            RouteClass::Credentials,
            RouteClass::Dynamic,
            RouteClass::UserData,
            RouteClass::Other,
        ];
        let mut seen = std::collections::HashSet::new();
        for version in versions {
            for route in routes {
                for status in STATUSES {
                    let slot = RequestLabels { version, route, status }.slot();
                    assert!(slot.is_some_and(|i| i < REQUEST_SLOTS && seen.insert(i)));
                }
            }
        }
        assert_eq!(seen.len(), REQUEST_SLOTS);
    }
}
