//! Prometheus metrics of the control plane: calls by API, action and
//! error code, the request latency, and the requests the rate limit
//! refused (by API and bucket).
//!
//! Every label comes from a closed set, so a client cannot grow the
//! metric families: `api` is `ec2`, `lightsail` or `cloudwatch`; `action`
//! is an action or operation name this endpoint implements, or `unknown`;
//! `code` is an error code this endpoint itself can answer with (the code
//! clients see: EC2's `Code`, Lightsail's `__type`, CloudWatch's query
//! error code), or `none` on success.
//!
//! Each protocol handler attaches a [`CallOutcome`] to its response; the
//! front door ([`crate::server`]) reads it back and records the call with
//! its duration. This module does not decide what an action or an error
//! is.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::time::Duration;

/// The `action` label of a request whose action is not one this endpoint
/// implements (or could not be read).
pub const UNKNOWN_ACTION: &str = "unknown";

/// The `code` label of a successful call.
pub const NO_ERROR: &str = "none";

/// Upper bounds of the latency buckets, in seconds.
const LATENCY_BUCKETS: [f64; 13] =
    [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];

/// Which API answered, which action it ran and with what result; attached
/// to a response as an extension by the protocol handlers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallOutcome {
    /// `ec2`, `lightsail` or `cloudwatch`.
    pub api: &'static str,
    /// The implemented action or operation, or [`UNKNOWN_ACTION`].
    pub action: &'static str,
    /// The error code, or [`NO_ERROR`].
    pub code: &'static str,
}

impl CallOutcome {
    /// An outcome; `action` `None` is [`UNKNOWN_ACTION`], `code` `None` is
    /// [`NO_ERROR`].
    pub fn new(api: &'static str, action: Option<&'static str>, code: Option<&'static str>) -> Self {
        Self { api, action: action.unwrap_or(UNKNOWN_ACTION), code: code.unwrap_or(NO_ERROR) }
    }
}

/// Labels of `imds_control_calls_total`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct CallLabels {
    /// `ec2`, `lightsail` or `cloudwatch`.
    pub api: &'static str,
    /// The action or operation, or `unknown`.
    pub action: &'static str,
    /// The error code, or `none`.
    pub code: &'static str,
}

/// Labels of `imds_control_request_duration_seconds`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct LatencyLabels {
    /// `ec2`, `lightsail` or `cloudwatch`.
    pub api: &'static str,
    /// The action or operation, or `unknown`.
    pub action: &'static str,
}

/// Labels of `imds_control_throttled_total`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct ThrottleLabels {
    /// `ec2`, `lightsail` or `cloudwatch`.
    pub api: &'static str,
    /// `credential` (an authenticated key's bucket) or `source` (failed
    /// authentication, charged to the source address).
    pub bucket: &'static str,
}

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

/// The control plane's metrics. Clones share their values, so one clone
/// can be registered while another records.
#[derive(Debug, Clone)]
pub struct ControlMetrics {
    /// Calls answered, by API, action and error code.
    pub calls: Family<CallLabels, Counter>,
    /// Time from the request's arrival to its answer, by API and action.
    pub latency: Family<LatencyLabels, Histogram, fn() -> Histogram>,
    /// Requests refused by the rate limit, by API and bucket.
    pub throttled: Family<ThrottleLabels, Counter>,
}

impl Default for ControlMetrics {
    fn default() -> Self {
        Self {
            calls: Family::default(),
            latency: Family::new_with_constructor(latency_histogram as fn() -> Histogram),
            throttled: Family::default(),
        }
    }
}

impl ControlMetrics {
    /// Registers every metric in `registry` under `imds_control_…` names.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "imds_control_calls",
            "Control-plane API calls answered, by API, action and error code (none on success)",
            self.calls.clone(),
        );
        registry.register(
            "imds_control_request_duration_seconds",
            "Control-plane request latency, by API and action",
            self.latency.clone(),
        );
        registry.register(
            "imds_control_throttled",
            "Control-plane requests refused by the rate limit, by API and bucket (credential or source)",
            self.throttled.clone(),
        );
    }

    /// Counts one request refused by the rate limit.
    pub fn throttle(&self, api: &'static str, bucket: &'static str) {
        self.throttled.get_or_create(&ThrottleLabels { api, bucket }).inc();
    }

    /// Records one answered call.
    pub fn record(&self, outcome: CallOutcome, elapsed: Duration) {
        self.calls
            .get_or_create(&CallLabels { api: outcome.api, action: outcome.action, code: outcome.code })
            .inc();
        self.latency
            .get_or_create(&LatencyLabels { api: outcome.api, action: outcome.action })
            .observe(elapsed.as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_and_latency_are_encoded_with_closed_labels() {
        let m = ControlMetrics::default();
        let mut registry = Registry::default();
        m.register(&mut registry);
        m.record(CallOutcome::new("cloudwatch", Some("GetMetricStatistics"), None), Duration::from_millis(3));
        m.record(CallOutcome::new("ec2", None, Some("InvalidAction")), Duration::from_millis(1));
        m.throttle("lightsail", "credential");
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(
            text.contains(
                "imds_control_calls_total{api=\"cloudwatch\",action=\"GetMetricStatistics\",code=\"none\"} 1"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "imds_control_calls_total{api=\"ec2\",action=\"unknown\",code=\"InvalidAction\"} 1"
            ),
            "{text}"
        );
        assert!(
            text.contains("imds_control_throttled_total{api=\"lightsail\",bucket=\"credential\"} 1"),
            "{text}"
        );
        assert!(
            text.contains(
                "imds_control_request_duration_seconds_bucket{le=\"0.005\",api=\"cloudwatch\",action=\"GetMetricStatistics\"} 1"
            ),
            "{text}"
        );
    }
}
