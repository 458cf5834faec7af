//! Prometheus metrics of the agent: how far behind the store it is and how
//! long a change takes to be served.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// The agent's metrics.
#[derive(Debug, Clone)]
pub struct AgentMetrics {
    /// Seconds from receiving a batch of instance changes to the new
    /// snapshots being served and `observed_generation` being committed.
    pub apply_seconds: Histogram,
    /// Store revision of the last change applied.
    pub applied_revision: Gauge,
    /// Watch lag: store revisions committed between the newest change the
    /// agent acknowledged and its acknowledgement (0 when it keeps up).
    pub watch_lag_revisions: Gauge,
    /// Full relists (lost or compacted watch, or a store error).
    pub relists: Counter,
    /// Instance changes applied.
    pub instance_changes: Counter,
}

impl Default for AgentMetrics {
    fn default() -> Self {
        // 0.5 ms .. ~4 s
        let buckets = || prometheus_client::metrics::histogram::exponential_buckets(0.0005, 2.0, 14);
        Self {
            apply_seconds: Histogram::new(buckets()),
            applied_revision: Gauge::default(),
            watch_lag_revisions: Gauge::default(),
            relists: Counter::default(),
            instance_changes: Counter::default(),
        }
    }
}

impl AgentMetrics {
    /// Registers every metric in `registry` under `imds_agent_…` names.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "imds_agent_apply_seconds",
            "Time from receiving instance changes to serving them and acknowledging the generation",
            self.apply_seconds.clone(),
        );
        registry.register(
            "imds_agent_applied_revision",
            "Store revision of the last change applied",
            self.applied_revision.clone(),
        );
        registry.register(
            "imds_agent_watch_lag_revisions",
            "Store revisions committed between the newest change acknowledged and the acknowledgement",
            self.watch_lag_revisions.clone(),
        );
        registry.register("imds_agent_relists", "Full relists of the store", self.relists.clone());
        registry.register(
            "imds_agent_instance_changes",
            "Instance changes applied",
            self.instance_changes.clone(),
        );
    }
}
