//! Which minutes an instance was *served* (see "What a datapoint means" in
//! the crate docs), stored as time ranges so that an idle fleet costs
//! nothing per instance and flush:
//!
//! | key | value |
//! | --- | --- |
//! | `usage/runs/<run-id>` | `{"from":m0,"to":m1}`: the minutes a recorder (one process run) was flushing |
//! | `usage/served/<instance-id>` | `{"spans":[{"run":"<run-id>","from":m0,"to":m1}]}` |
//!
//! A span is written when a run starts serving an instance (`to` absent:
//! open) and when it stops (`to` = the last minute it was seen served). An
//! open span lasts as long as its run: it covers `[from, run.to]`, and the
//! run's record is the only key a recorder rewrites while nothing changes
//! (once a minute). A process that stops or crashes leaves its run's `to`
//! at its last flush, so its open spans end there by themselves; a restart
//! is a new run that opens new spans.
//!
//! This module owns the two record types, their keys, the read used by the
//! queries (`covered_minutes`) and the pure update functions the recorder
//! applies in compare-and-set transactions. It does not decide when spans
//! open or close (the recorder does).

use crate::layout::{MINUTE, hour_expired, hour_of};
use imds_core::InstanceId;
use imds_store::{KeyValue, Revision, Store, StoreError};
use serde::{Deserialize, Serialize};

/// Prefix of run records: `usage/runs/<run-id>`.
pub const RUNS_PREFIX: &str = "usage/runs/";
/// Prefix of served records: `usage/served/<instance-id>`.
pub const SERVED_PREFIX: &str = "usage/served/";

/// Spans kept per instance at most (the oldest go first); each restart
/// of a serving process adds one, so this is far above what 15 days need.
const MAX_SPANS: usize = 256;

/// `usage/runs/<run>`.
pub fn run_key(run: &str) -> String {
    format!("{RUNS_PREFIX}{run}")
}

/// `usage/served/<id>`.
pub fn served_key(id: &InstanceId) -> String {
    format!("{SERVED_PREFIX}{id}")
}

/// The minutes one recorder run flushed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct RunRecord {
    /// First minute (start of).
    pub from: u64,
    /// Last minute flushed.
    pub to: u64,
}

impl RunRecord {
    pub fn encode(&self) -> Result<Vec<u8>, StoreError> {
        serde_json::to_vec(self).map_err(|e| StoreError::Backend(format!("encoding a usage run record: {e}")))
    }

    pub fn decode(key: &str, bytes: &[u8]) -> Result<Self, StoreError> {
        serde_json::from_slice(bytes)
            .map_err(|e| StoreError::Corrupt { key: key.to_owned(), reason: e.to_string() })
    }
}

/// One stretch of minutes a run served an instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ServedSpan {
    /// The run that served it.
    pub run: String,
    /// First minute.
    pub from: u64,
    /// Last minute; `None` while the run still serves it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<u64>,
}

/// The served spans of one instance.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ServedRecord {
    #[serde(default)]
    pub spans: Vec<ServedSpan>,
}

/// A change a recorder makes to an instance's served record. Applying one
/// twice changes nothing the second time, so a write whose outcome is
/// unknown can simply be repeated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SpanChange {
    /// The run serves the instance from this minute on.
    Open(u64),
    /// The run last served it in this minute.
    Close(u64),
}

impl ServedRecord {
    pub fn encode(&self) -> Result<Vec<u8>, StoreError> {
        serde_json::to_vec(self)
            .map_err(|e| StoreError::Backend(format!("encoding a usage served record: {e}")))
    }

    pub fn decode(key: &str, bytes: &[u8]) -> Result<Self, StoreError> {
        serde_json::from_slice(bytes)
            .map_err(|e| StoreError::Corrupt { key: key.to_owned(), reason: e.to_string() })
    }

    /// Applies `change` of `run`; `true` if the record changed.
    pub fn apply(&mut self, run: &str, change: SpanChange) -> bool {
        let open = self.spans.iter_mut().find(|s| s.run == run && s.to.is_none());
        match (change, open) {
            (SpanChange::Open(_), Some(_)) => false,
            (SpanChange::Open(from), None) => {
                self.spans.push(ServedSpan { run: run.to_owned(), from, to: None });
                if self.spans.len() > MAX_SPANS {
                    let excess = self.spans.len() - MAX_SPANS;
                    self.spans.drain(..excess);
                }
                true
            }
            (SpanChange::Close(to), Some(span)) => {
                span.to = Some(to.max(span.from));
                true
            }
            (SpanChange::Close(_), None) => false,
        }
    }

    /// Drops spans that ended before `cutoff` (an open span ends with its
    /// run; `run_end` gives a run's last minute, `None` if its record is
    /// gone). `true` if the record changed.
    pub fn prune(&mut self, cutoff: u64, run_end: impl Fn(&str) -> Option<u64>) -> bool {
        let before = self.spans.len();
        self.spans.retain(|s| match s.to.or_else(|| run_end(&s.run)) {
            Some(end) => !hour_expired(hour_of(end), cutoff),
            None => false,
        });
        self.spans.len() != before
    }
}

/// Decodes a served record for a read-modify-write: a corrupt record is
/// replaced (and logged) rather than blocking the instance's coverage.
pub(crate) fn served_for_update(kv: Option<&KeyValue>) -> (ServedRecord, Revision) {
    match kv {
        None => (ServedRecord::default(), 0),
        Some(kv) => match ServedRecord::decode(&kv.key, &kv.value) {
            Ok(r) => (r, kv.mod_revision),
            Err(e) => {
                tracing::warn!(error = %e, "replacing corrupt usage served record");
                (ServedRecord::default(), kv.mod_revision)
            }
        },
    }
}

/// The minute ranges (`[from, to]`, minute starts, inclusive) in which
/// `id` was served, clipped to `[start, end)`.
pub(crate) async fn covered_minutes(
    store: &dyn Store,
    id: &InstanceId,
    start: u64,
    end: u64,
) -> Result<Vec<(u64, u64)>, StoreError> {
    let key = served_key(id);
    let Some(kv) = store.get(&key).await? else { return Ok(Vec::new()) };
    let record = ServedRecord::decode(&key, &kv.value)?;
    let mut out = Vec::with_capacity(record.spans.len());
    for span in record.spans {
        let to = match span.to {
            Some(to) => to,
            None => {
                let key = run_key(&span.run);
                match store.get(&key).await? {
                    Some(kv) => RunRecord::decode(&key, &kv.value)?.to,
                    None => continue,
                }
            }
        };
        let from = span.from.max(start);
        // The last minute that starts before `end`.
        let to = to.min(end.saturating_sub(1) / MINUTE * MINUTE);
        if from <= to {
            out.push((from, to));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_are_idempotent() {
        let mut r = ServedRecord::default();
        assert!(r.apply("a", SpanChange::Open(60)));
        assert!(!r.apply("a", SpanChange::Open(120)));
        assert!(r.apply("b", SpanChange::Open(120)));
        assert!(r.apply("a", SpanChange::Close(180)));
        assert!(!r.apply("a", SpanChange::Close(240)));
        assert_eq!(
            serde_json::to_string(&r).unwrap_or_default(),
            r#"{"spans":[{"run":"a","from":60,"to":180},{"run":"b","from":120}]}"#
        );
        assert!(r.apply("a", SpanChange::Open(300)));
        assert_eq!(r.spans.len(), 3);
    }

    #[test]
    fn prune_drops_what_ended_before_the_cutoff() {
        let mut r = ServedRecord::default();
        r.apply("old", SpanChange::Open(0));
        r.apply("old", SpanChange::Close(3600));
        r.apply("live", SpanChange::Open(0));
        r.apply("gone", SpanChange::Open(0));
        let cutoff = 3 * 3600;
        assert!(r.prune(cutoff, |run| (run == "live").then_some(4 * 3600)));
        assert_eq!(r.spans.len(), 1);
        assert_eq!(r.spans[0].run, "live");
        assert!(!r.prune(cutoff, |_| Some(4 * 3600)));
    }
}
