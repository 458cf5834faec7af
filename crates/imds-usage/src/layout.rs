//! Where usage data lives in the store and how it is encoded (the layout is
//! described in the crate docs). Key helpers are public for tools that read
//! or clean `usage/` directly; the records themselves are private to this
//! crate, which is the only writer.

use crate::query::{CallerGroup, Metric};
use imds_core::InstanceId;
use imds_store::{KeyValue, Revision, Store, StoreError};
use serde::{Deserialize, Serialize};

/// Prefix of everything this crate writes.
pub const USAGE_PREFIX: &str = "usage/";
/// Prefix of hour records: `usage/counts/<instance-id>/<hour>`.
pub const COUNTS_PREFIX: &str = "usage/counts/";
/// Prefix of callers records: `usage/callers/<instance-id>`.
pub const CALLERS_PREFIX: &str = "usage/callers/";

/// Seconds in a minute, the resolution of the counts.
pub(crate) const MINUTE: u64 = 60;
/// Seconds in an hour, the span of one hour record.
pub(crate) const HOUR: u64 = 3600;
/// Minutes in one hour record.
pub(crate) const MINUTES_PER_HOUR: usize = 60;

/// Up to this many hours, reads `get` each hour key; beyond, they list the
/// instance's prefix (bounded by the retention) and filter.
const MAX_POINT_READS: u64 = 24;

/// `usage/counts/<id>/`: every hour record of one instance.
pub fn counts_prefix(id: &InstanceId) -> String {
    format!("{COUNTS_PREFIX}{id}/")
}

/// `usage/counts/<id>/<hour>`, `hour` being the Unix time of the hour's start.
pub fn counts_key(id: &InstanceId, hour: u64) -> String {
    format!("{COUNTS_PREFIX}{id}/{hour}")
}

/// `usage/callers/<id>`.
pub fn callers_key(id: &InstanceId) -> String {
    format!("{CALLERS_PREFIX}{id}")
}

/// The instance a callers key belongs to.
pub(crate) fn instance_of_callers_key(key: &str) -> Option<InstanceId> {
    InstanceId::parse(key.strip_prefix(CALLERS_PREFIX)?).ok()
}

/// The hour of a key under [`counts_prefix`].
pub(crate) fn hour_of_counts_key(prefix: &str, key: &str) -> Option<u64> {
    let hour: u64 = key.strip_prefix(prefix)?.parse().ok()?;
    hour.is_multiple_of(HOUR).then_some(hour)
}

/// Start of the minute containing `secs`.
pub(crate) fn minute_of(secs: u64) -> u64 {
    secs - secs % MINUTE
}

/// Start of the hour containing `secs`.
pub(crate) fn hour_of(secs: u64) -> u64 {
    secs - secs % HOUR
}

/// Index (0..60) of the minute containing `secs` within its hour.
pub(crate) fn minute_index(secs: u64) -> usize {
    // < 60, so the conversion cannot fail.
    usize::try_from((secs % HOUR) / MINUTE).unwrap_or(0)
}

/// Whether data of the hour starting at `hour` is entirely older than
/// `cutoff` and so past retention.
pub(crate) fn hour_expired(hour: u64, cutoff: u64) -> bool {
    hour.saturating_add(HOUR) <= cutoff
}

/// A number of requests and when the first and last of them happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Span {
    /// Requests.
    pub count: u64,
    /// Unix seconds of the first one.
    pub first_seen: u64,
    /// Unix seconds of the last one.
    pub last_seen: u64,
}

impl Span {
    /// One request at `at`.
    pub fn one(at: u64) -> Self {
        Self { count: 1, first_seen: at, last_seen: at }
    }

    /// Adds `other`'s requests and widens the time range.
    pub fn absorb(&mut self, other: Span) {
        self.count = self.count.saturating_add(other.count);
        self.first_seen = self.first_seen.min(other.first_seen);
        self.last_seen = self.last_seen.max(other.last_seen);
    }
}

/// Adds `span` into an optional span.
pub(crate) fn absorb_into(target: &mut Option<Span>, span: Span) {
    match target {
        Some(t) => t.absorb(span),
        None => *target = Some(span),
    }
}

/// One hour of per-minute counts of one instance.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct HourRecord {
    /// Bit `i`: minute `i` was observed.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub seen: u64,
    /// `MetadataNoToken` per minute; missing entries are 0.
    #[serde(rename = "MetadataNoToken", default, skip_serializing_if = "Vec::is_empty")]
    pub no_token: Vec<u64>,
    /// `MetadataNoTokenRejected` per minute; missing entries are 0.
    #[serde(rename = "MetadataNoTokenRejected", default, skip_serializing_if = "Vec::is_empty")]
    pub rejected: Vec<u64>,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

impl HourRecord {
    fn counts(&self, metric: Metric) -> &Vec<u64> {
        match metric {
            Metric::MetadataNoToken => &self.no_token,
            Metric::MetadataNoTokenRejected => &self.rejected,
        }
    }

    fn counts_mut(&mut self, metric: Metric) -> &mut Vec<u64> {
        match metric {
            Metric::MetadataNoToken => &mut self.no_token,
            Metric::MetadataNoTokenRejected => &mut self.rejected,
        }
    }

    /// The count of `metric` in minute `idx` (0..60).
    pub fn count(&self, metric: Metric, idx: usize) -> u64 {
        self.counts(metric).get(idx).copied().unwrap_or(0)
    }

    /// Adds `n` to `metric` in minute `idx` (0..60) and marks it observed.
    pub fn add(&mut self, metric: Metric, idx: usize, n: u64) {
        self.mark_seen(idx);
        self.add_count(metric, idx, n);
    }

    /// Adds `delta`'s counts and observed minutes.
    pub fn merge(&mut self, delta: &HourRecord) {
        self.seen |= delta.seen;
        for metric in Metric::ALL {
            for (idx, &n) in delta.counts(metric).iter().enumerate() {
                self.add_count(metric, idx, n);
            }
        }
    }

    fn add_count(&mut self, metric: Metric, idx: usize, n: u64) {
        if n == 0 || idx >= MINUTES_PER_HOUR {
            return;
        }
        let v = self.counts_mut(metric);
        if v.len() <= idx {
            v.resize(idx + 1, 0);
        }
        v[idx] = v[idx].saturating_add(n);
    }

    /// Marks minute `idx` (0..60) observed.
    pub fn mark_seen(&mut self, idx: usize) {
        if idx < MINUTES_PER_HOUR {
            self.seen |= 1 << idx;
        }
    }

    /// Whether minute `idx` was observed; a minute with a count always is.
    pub fn is_seen(&self, idx: usize) -> bool {
        (idx < MINUTES_PER_HOUR && self.seen & (1 << idx) != 0)
            || self.count(Metric::MetadataNoToken, idx) > 0
            || self.count(Metric::MetadataNoTokenRejected, idx) > 0
    }

    /// Compact JSON, trailing zero minutes left out.
    pub fn encode(mut self) -> Result<Vec<u8>, StoreError> {
        for v in [&mut self.no_token, &mut self.rejected] {
            while v.last() == Some(&0) {
                v.pop();
            }
        }
        serde_json::to_vec(&self).map_err(|e| StoreError::Backend(format!("encoding usage counts: {e}")))
    }

    /// Decodes the record at `key`.
    pub fn decode(key: &str, bytes: &[u8]) -> Result<Self, StoreError> {
        let record: Self = serde_json::from_slice(bytes)
            .map_err(|e| StoreError::Corrupt { key: key.to_owned(), reason: e.to_string() })?;
        if record.no_token.len() > MINUTES_PER_HOUR || record.rejected.len() > MINUTES_PER_HOUR {
            return Err(StoreError::Corrupt {
                key: key.to_owned(),
                reason: "more than 60 minutes in an hour".to_owned(),
            });
        }
        Ok(record)
    }
}

/// The caller groups of one instance and its bookkeeping.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct CallersRecord {
    /// At most the configured number of groups, by count descending.
    #[serde(default)]
    pub groups: Vec<CallerGroup>,
    /// Requests of groups evicted to keep the bound.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub other: Option<Span>,
    /// Start of the newest minute with any data (counts or observation).
    #[serde(default)]
    pub newest_minute: u64,
    /// Id of the flush that wrote this record last.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub flush: String,
}

impl CallersRecord {
    /// Decodes the record at `key`.
    pub fn decode(key: &str, bytes: &[u8]) -> Result<Self, StoreError> {
        serde_json::from_slice(bytes)
            .map_err(|e| StoreError::Corrupt { key: key.to_owned(), reason: e.to_string() })
    }

    /// Compact JSON.
    pub fn encode(&self) -> Result<Vec<u8>, StoreError> {
        serde_json::to_vec(self).map_err(|e| StoreError::Backend(format!("encoding usage callers: {e}")))
    }

    /// Merges one group's requests in (same source, User-Agent and path add
    /// up). Call [`CallersRecord::settle`] afterwards.
    pub fn merge_group(&mut self, source: std::net::IpAddr, user_agent: &str, path: &str, span: Span) {
        if let Some(g) = self
            .groups
            .iter_mut()
            .find(|g| g.source == source && g.user_agent == user_agent && g.path == path)
        {
            g.count = g.count.saturating_add(span.count);
            g.first_seen = g.first_seen.min(span.first_seen);
            g.last_seen = g.last_seen.max(span.last_seen);
        } else {
            self.groups.push(CallerGroup {
                source,
                user_agent: user_agent.to_owned(),
                path: path.to_owned(),
                count: span.count,
                first_seen: span.first_seen,
                last_seen: span.last_seen,
            });
        }
    }

    /// Drops what was last seen before `cutoff`, sorts the groups and keeps
    /// the `top` most counted, moving the others' requests to `other`.
    /// Returns whether anything changed.
    pub fn settle(&mut self, top: usize, cutoff: u64) -> bool {
        let before = self.clone();
        self.groups.retain(|g| g.last_seen >= cutoff);
        if self.other.is_some_and(|o| o.last_seen < cutoff) {
            self.other = None;
        }
        self.groups.sort_by(CallerGroup::report_order);
        if self.groups.len() > top {
            for g in self.groups.drain(top..) {
                absorb_into(
                    &mut self.other,
                    Span { count: g.count, first_seen: g.first_seen, last_seen: g.last_seen },
                );
            }
        }
        *self != before
    }

    /// Whether nothing of the instance is left in this record.
    pub fn is_empty(&self) -> bool {
        self.groups.is_empty() && self.other.is_none()
    }
}

/// Decodes a callers record for a read-modify-write: a corrupt record is
/// replaced (and logged) rather than blocking the instance's counting.
pub(crate) fn callers_for_update(kv: Option<&KeyValue>) -> (CallersRecord, Revision) {
    match kv {
        None => (CallersRecord::default(), 0),
        Some(kv) => match CallersRecord::decode(&kv.key, &kv.value) {
            Ok(r) => (r, kv.mod_revision),
            Err(e) => {
                tracing::warn!(error = %e, "replacing corrupt usage callers record");
                (CallersRecord::default(), kv.mod_revision)
            }
        },
    }
}

/// [`callers_for_update`] for hour records.
pub(crate) fn hour_for_update(kv: Option<&KeyValue>) -> (HourRecord, Revision) {
    match kv {
        None => (HourRecord::default(), 0),
        Some(kv) => match HourRecord::decode(&kv.key, &kv.value) {
            Ok(r) => (r, kv.mod_revision),
            Err(e) => {
                tracing::warn!(error = %e, "replacing corrupt usage counts record");
                (HourRecord::default(), kv.mod_revision)
            }
        },
    }
}

/// The hour records of `id` for the hours starting in `[first, last]`
/// (both hour starts), in hour order. Short ranges read key by key; long
/// ones list the instance's prefix, which retention keeps small.
pub(crate) async fn read_hours(
    store: &dyn Store,
    id: &InstanceId,
    first: u64,
    last: u64,
) -> Result<Vec<(u64, HourRecord)>, StoreError> {
    let mut out = Vec::new();
    if last < first {
        return Ok(out);
    }
    if (last - first) / HOUR < MAX_POINT_READS {
        let mut hour = first;
        while hour <= last {
            let key = counts_key(id, hour);
            if let Some(kv) = store.get(&key).await? {
                out.push((hour, HourRecord::decode(&key, &kv.value)?));
            }
            let Some(next) = hour.checked_add(HOUR) else { break };
            hour = next;
        }
    } else {
        let prefix = counts_prefix(id);
        let (kvs, _) = store.list(&prefix).await?;
        for kv in kvs {
            let Some(hour) = hour_of_counts_key(&prefix, &kv.key) else { continue };
            if (first..=last).contains(&hour) {
                out.push((hour, HourRecord::decode(&kv.key, &kv.value)?));
            }
        }
        out.sort_by_key(|(h, _)| *h);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hour_record_round_trips_compactly() {
        let mut r = HourRecord::default();
        r.add(Metric::MetadataNoToken, 2, 12);
        r.add(Metric::MetadataNoToken, 0, 3);
        r.add(Metric::MetadataNoTokenRejected, 1, 1);
        r.mark_seen(5);
        let bytes = r.clone().encode().unwrap();
        assert_eq!(
            std::str::from_utf8(&bytes).unwrap(),
            r#"{"seen":39,"MetadataNoToken":[3,0,12],"MetadataNoTokenRejected":[0,1]}"#
        );
        assert_eq!(HourRecord::decode("k", &bytes).unwrap(), r);
        assert!(r.is_seen(5) && r.is_seen(2) && !r.is_seen(3));
    }

    #[test]
    fn hour_record_with_too_many_minutes_is_corrupt() {
        let bytes = serde_json::to_vec(&serde_json::json!({"MetadataNoToken": vec![1; 61]})).unwrap();
        assert!(matches!(HourRecord::decode("k", &bytes), Err(StoreError::Corrupt { .. })));
    }

    #[test]
    fn keys_parse_back() {
        let id = InstanceId::parse("i-0123456789abcdef0").unwrap();
        assert_eq!(instance_of_callers_key(&callers_key(&id)), Some(id.clone()));
        let prefix = counts_prefix(&id);
        assert_eq!(hour_of_counts_key(&prefix, &counts_key(&id, 7200)), Some(7200));
        assert_eq!(hour_of_counts_key(&prefix, &format!("{prefix}7201")), None);
        let short = InstanceId::parse("i-01234567").unwrap();
        assert!(!counts_key(&id, 0).starts_with(&counts_prefix(&short)));
    }

    #[test]
    fn settle_keeps_top_and_moves_rest_to_other() {
        let mut r = CallersRecord::default();
        let ip = std::net::IpAddr::from([10, 0, 0, 1]);
        for (i, n) in [5u64, 1, 9, 3].into_iter().enumerate() {
            r.merge_group(ip, &format!("ua{i}"), "/", Span { count: n, first_seen: 100, last_seen: 200 });
        }
        r.merge_group(ip, "ua0", "/", Span { count: 1, first_seen: 50, last_seen: 300 });
        assert!(r.settle(2, 0));
        let names: Vec<_> = r.groups.iter().map(|g| (g.user_agent.as_str(), g.count)).collect();
        assert_eq!(names, [("ua2", 9), ("ua0", 6)]);
        assert_eq!(r.groups[1].first_seen, 50);
        assert_eq!(r.groups[1].last_seen, 300);
        assert_eq!(r.other, Some(Span { count: 4, first_seen: 100, last_seen: 200 }));
        // Retention drops groups last seen before the cutoff.
        assert!(r.settle(2, 250));
        assert_eq!(r.groups.len(), 1);
        assert_eq!(r.other, None);
    }
}
