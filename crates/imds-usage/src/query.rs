//! The read side: CloudWatch-style statistics over the per-minute counts,
//! and the v1-caller report. Both read the store only; counts still in a
//! recorder's memory are not included (flush first to see them).

use crate::coverage::covered_minutes;
use crate::layout::{
    self, CALLERS_PREFIX, CallersRecord, MINUTE, MINUTES_PER_HOUR, hour_of, instance_of_callers_key,
    minute_index, minute_of, read_hours,
};
use imds_core::InstanceId;
use imds_store::{Store, StoreError};
use serde::{Deserialize, Serialize};
use std::cmp::Ordering;
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// The most datapoints one request may ask for (CloudWatch's limit).
pub const MAX_DATAPOINTS: u64 = 1440;

/// A usage metric, named as in CloudWatch (`AWS/EC2`) and Lightsail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Metric {
    /// Token-less (IMDSv1) requests that were answered.
    MetadataNoToken,
    /// Token-less requests refused because tokens are required.
    MetadataNoTokenRejected,
}

impl Metric {
    /// Every metric.
    pub const ALL: [Metric; 2] = [Metric::MetadataNoToken, Metric::MetadataNoTokenRejected];

    /// The CloudWatch metric name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::MetadataNoToken => "MetadataNoToken",
            Self::MetadataNoTokenRejected => "MetadataNoTokenRejected",
        }
    }

    /// The CloudWatch unit of every usage metric.
    pub fn unit(self) -> &'static str {
        "Count"
    }
}

impl fmt::Display for Metric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A metric or statistic name that is not one of ours.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {kind} {name:?}")]
pub struct ParseNameError {
    /// `"metric"` or `"statistic"`.
    pub kind: &'static str,
    /// The name given.
    pub name: String,
}

impl FromStr for Metric {
    type Err = ParseNameError;
    /// Exact, case-sensitive CloudWatch names (as CloudWatch matches them).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|m| m.as_str() == s)
            .ok_or_else(|| ParseNameError { kind: "metric", name: s.to_owned() })
    }
}

/// A CloudWatch statistic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Statistic {
    /// Total of the samples.
    Sum,
    /// Number of samples (observed minutes).
    SampleCount,
    /// `Sum / SampleCount`.
    Average,
    /// Smallest sample.
    Minimum,
    /// Largest sample.
    Maximum,
}

impl Statistic {
    /// Every statistic, in CloudWatch's documentation order.
    pub const ALL: [Statistic; 5] =
        [Statistic::SampleCount, Statistic::Average, Statistic::Sum, Statistic::Minimum, Statistic::Maximum];

    /// The CloudWatch name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sum => "Sum",
            Self::SampleCount => "SampleCount",
            Self::Average => "Average",
            Self::Minimum => "Minimum",
            Self::Maximum => "Maximum",
        }
    }
}

impl fmt::Display for Statistic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Statistic {
    type Err = ParseNameError;
    /// Exact CloudWatch names. Lightsail spells the same statistics the same
    /// way (`Sum`, `SampleCount`, …).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|m| m.as_str() == s)
            .ok_or_else(|| ParseNameError { kind: "statistic", name: s.to_owned() })
    }
}

/// The statistics of one period. Every field is filled; the API layer
/// returns those that were asked for.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Datapoint {
    /// Start of the period, Unix seconds.
    pub timestamp: u64,
    /// Total requests in the period's observed minutes.
    pub sum: f64,
    /// Number of observed minutes in the period.
    pub sample_count: f64,
    /// `sum / sample_count`.
    pub average: f64,
    /// The smallest per-minute count among the observed minutes.
    pub minimum: f64,
    /// The largest per-minute count among the observed minutes.
    pub maximum: f64,
}

impl Datapoint {
    /// The value of one statistic.
    pub fn value(&self, statistic: Statistic) -> f64 {
        match statistic {
            Statistic::Sum => self.sum,
            Statistic::SampleCount => self.sample_count,
            Statistic::Average => self.average,
            Statistic::Minimum => self.minimum,
            Statistic::Maximum => self.maximum,
        }
    }
}

/// Why a usage query failed.
#[derive(Debug, thiserror::Error)]
pub enum UsageError {
    /// The period is not a positive multiple of 60 seconds
    /// (CloudWatch: `InvalidParameterValue`).
    #[error("The parameter Period must be a multiple of 60 and at least 60 (got {0}).")]
    InvalidPeriod(u64),
    /// The start is not before the end (CloudWatch: `InvalidParameterValue`).
    #[error("The parameter StartTime must be less than the parameter EndTime.")]
    InvalidTimeRange {
        /// Requested start, Unix seconds.
        start: u64,
        /// Requested end, Unix seconds.
        end: u64,
    },
    /// Period and time range ask for more than [`MAX_DATAPOINTS`]
    /// (CloudWatch: `InvalidParameterCombination`).
    #[error(
        "You have requested up to {requested} datapoints, which exceeds the limit of 1,440. You may reduce the datapoints requested by increasing Period, or decreasing the time range."
    )]
    TooManyDatapoints {
        /// How many periods the request spans.
        requested: u64,
    },
    /// The store failed or holds a record that does not decode.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl UsageError {
    /// The CloudWatch error code of a client error; `None` for a server
    /// fault (the store), which the API layer reports as an internal error.
    pub fn aws_code(&self) -> Option<&'static str> {
        match self {
            Self::InvalidPeriod(_) | Self::InvalidTimeRange { .. } => Some("InvalidParameterValue"),
            Self::TooManyDatapoints { .. } => Some("InvalidParameterCombination"),
            Self::Store(_) => None,
        }
    }
}

/// Per-period accumulator.
#[derive(Debug, Clone, Copy, Default)]
struct Acc {
    samples: u64,
    sum: u64,
    min: u64,
    max: u64,
}

impl Acc {
    fn add(&mut self, v: u64) {
        if self.samples == 0 {
            self.min = v;
            self.max = v;
        } else {
            self.min = self.min.min(v);
            self.max = self.max.max(v);
        }
        self.samples += 1;
        self.sum = self.sum.saturating_add(v);
    }
}

/// `metric` of `instance` per `period` over `[start, end)` (Unix seconds),
/// CloudWatch style: one [`Datapoint`] per period that has at least one
/// observed minute (see the crate docs for what that means and why), in
/// time order, each stamped with its period's start.
///
/// As CloudWatch does for recent data, `start` is rounded down to the
/// minute; periods are then aligned to it (`start`, `start + period`, …). A
/// minute belongs to the period its start falls in; minutes starting at or
/// after `end` are left out.
///
/// Errors: `period` not a multiple of 60 or below 60, `start >= end`, or
/// more than [`MAX_DATAPOINTS`] periods in the range; a store failure.
pub async fn metric_statistics(
    store: &dyn Store,
    instance: &InstanceId,
    metric: Metric,
    start: u64,
    end: u64,
    period: u64,
) -> Result<Vec<Datapoint>, UsageError> {
    if period < MINUTE || !period.is_multiple_of(MINUTE) {
        return Err(UsageError::InvalidPeriod(period));
    }
    if start >= end {
        return Err(UsageError::InvalidTimeRange { start, end });
    }
    let start = minute_of(start);
    let requested = (end - start).div_ceil(period);
    if requested > MAX_DATAPOINTS {
        return Err(UsageError::TooManyDatapoints { requested });
    }
    // `requested` <= 1440, so this fits.
    let mut periods = vec![Acc::default(); usize::try_from(requested).unwrap_or(0)];
    let hours = read_hours(store, instance, hour_of(start), hour_of(end - 1)).await?;
    let mut add = |minute: u64, value: u64| {
        let slot = usize::try_from((minute - start) / period).ok().and_then(|i| periods.get_mut(i));
        if let Some(acc) = slot {
            acc.add(value);
        }
    };
    for (hour, record) in &hours {
        for idx in 0..MINUTES_PER_HOUR {
            let minute = hour + MINUTE * idx as u64;
            if minute < start || minute >= end || !record.is_seen(idx) {
                continue;
            }
            add(minute, record.count(metric, idx));
        }
    }
    // Minutes the instance was served without token-less activity are
    // observed with a count of 0; a minute is one sample however many
    // spans cover it.
    let mut covered = covered_minutes(store, instance, start, end).await?;
    covered.sort_unstable();
    let mut next_free = start;
    for (from, to) in covered {
        let mut minute = from.max(next_free);
        while minute <= to {
            let seen = hours
                .binary_search_by_key(&hour_of(minute), |(h, _)| *h)
                .ok()
                .and_then(|i| hours.get(i))
                .is_some_and(|(_, r)| r.is_seen(minute_index(minute)));
            if !seen {
                add(minute, 0);
            }
            minute += MINUTE;
        }
        next_free = next_free.max(to.saturating_add(MINUTE));
    }
    Ok(periods
        .into_iter()
        .zip(0u64..)
        .filter(|(acc, _)| acc.samples > 0)
        .map(|(acc, k)| {
            let sum = acc.sum as f64;
            let samples = acc.samples as f64;
            Datapoint {
                timestamp: start + k * period,
                sum,
                sample_count: samples,
                average: sum / samples,
                minimum: acc.min as f64,
                maximum: acc.max as f64,
            }
        })
        .collect())
}

/// Token-less requests from one source address with one User-Agent to one
/// path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallerGroup {
    /// The guest address the requests came from.
    pub source: IpAddr,
    /// The `User-Agent` header, at most [`MAX_USER_AGENT_BYTES`] bytes,
    /// invalid UTF-8 replaced by U+FFFD; empty when the header was absent.
    ///
    /// [`MAX_USER_AGENT_BYTES`]: crate::MAX_USER_AGENT_BYTES
    pub user_agent: String,
    /// The normalised request path, at most [`MAX_PATH_BYTES`] bytes.
    ///
    /// [`MAX_PATH_BYTES`]: crate::MAX_PATH_BYTES
    pub path: String,
    /// Requests since `first_seen` (all that are kept, not only those in a
    /// report's window). A group that was once evicted from the top groups
    /// and came back counts only since it came back; the requests before
    /// are in [`InstanceReport::other_requests`].
    pub count: u64,
    /// Unix seconds of the first request counted.
    pub first_seen: u64,
    /// Unix seconds of the latest request.
    pub last_seen: u64,
}

impl CallerGroup {
    /// Report order: most requests first, then most recently seen, then by
    /// source, User-Agent and path so the order is total.
    pub(crate) fn report_order(a: &Self, b: &Self) -> Ordering {
        b.count
            .cmp(&a.count)
            .then(b.last_seen.cmp(&a.last_seen))
            .then(a.source.cmp(&b.source))
            .then_with(|| a.user_agent.cmp(&b.user_agent))
            .then_with(|| a.path.cmp(&b.path))
    }
}

/// IMDSv1 use of one instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceReport {
    /// The instance.
    pub instance_id: InstanceId,
    /// `MetadataNoToken` requests in the minutes from the one containing
    /// `since` on.
    pub no_token_requests: u64,
    /// `MetadataNoTokenRejected` requests in the same minutes.
    pub rejected_requests: u64,
    /// Caller groups seen at or after `since`, most requests first.
    pub callers: Vec<CallerGroup>,
    /// Requests of caller groups evicted to keep the per-instance bound
    /// (0 unless some were last seen at or after `since`); with `callers`
    /// they account for every served token-less request kept.
    pub other_requests: u64,
}

/// The v1-caller report: for `instance` (or every instance with usage data
/// when `None`), the token-less requests since `since` (Unix seconds) and
/// who made them. Instances with no token-less activity in the window are
/// left out; reports are ordered by `no_token_requests` descending, then
/// by instance id.
pub async fn v1_callers(
    store: &dyn Store,
    instance: Option<&InstanceId>,
    since: u64,
) -> Result<Vec<InstanceReport>, UsageError> {
    let mut records = Vec::new();
    match instance {
        Some(id) => {
            let key = layout::callers_key(id);
            if let Some(kv) = store.get(&key).await? {
                records.push((id.clone(), CallersRecord::decode(&key, &kv.value)?));
            }
        }
        None => {
            let (kvs, _) = store.list(CALLERS_PREFIX).await?;
            for kv in kvs {
                let Some(id) = instance_of_callers_key(&kv.key) else {
                    tracing::warn!(key = %kv.key, "ignoring usage callers record with a malformed key");
                    continue;
                };
                records.push((id, CallersRecord::decode(&kv.key, &kv.value)?));
            }
        }
    }
    let since_minute = minute_of(since);
    let mut reports = Vec::with_capacity(records.len());
    for (id, record) in records {
        let (mut no_token, mut rejected) = (0u64, 0u64);
        if record.newest_minute >= since_minute {
            let hours = read_hours(store, &id, hour_of(since_minute), hour_of(record.newest_minute)).await?;
            for (hour, counts) in hours {
                for idx in 0..MINUTES_PER_HOUR {
                    if hour + MINUTE * idx as u64 >= since_minute {
                        no_token = no_token.saturating_add(counts.count(Metric::MetadataNoToken, idx));
                        rejected =
                            rejected.saturating_add(counts.count(Metric::MetadataNoTokenRejected, idx));
                    }
                }
            }
        }
        let mut callers: Vec<CallerGroup> =
            record.groups.into_iter().filter(|g| g.last_seen >= since).collect();
        callers.sort_by(CallerGroup::report_order);
        let other_requests = record.other.filter(|o| o.last_seen >= since).map_or(0, |o| o.count);
        if no_token == 0 && rejected == 0 && callers.is_empty() && other_requests == 0 {
            continue;
        }
        reports.push(InstanceReport {
            instance_id: id,
            no_token_requests: no_token,
            rejected_requests: rejected,
            callers,
            other_requests,
        });
    }
    reports.sort_by(|a, b| {
        b.no_token_requests.cmp(&a.no_token_requests).then_with(|| a.instance_id.cmp(&b.instance_id))
    });
    Ok(reports)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for m in Metric::ALL {
            assert_eq!(m.as_str().parse::<Metric>(), Ok(m));
        }
        for s in Statistic::ALL {
            assert_eq!(s.as_str().parse::<Statistic>(), Ok(s));
        }
        assert!("metadatanotoken".parse::<Metric>().is_err());
        assert!("p99".parse::<Statistic>().is_err());
    }

    #[test]
    fn errors_carry_cloudwatch_codes() {
        assert_eq!(UsageError::InvalidPeriod(30).aws_code(), Some("InvalidParameterValue"));
        assert_eq!(
            UsageError::InvalidTimeRange { start: 2, end: 1 }.aws_code(),
            Some("InvalidParameterValue")
        );
        assert_eq!(
            UsageError::TooManyDatapoints { requested: 1441 }.aws_code(),
            Some("InvalidParameterCombination")
        );
        assert_eq!(UsageError::Store(StoreError::Backend("x".into())).aws_code(), None);
    }
}
