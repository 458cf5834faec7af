//! IMDSv1 usage: the per-instance counts behind CloudWatch's
//! `MetadataNoToken` / `MetadataNoTokenRejected`, and the "which software
//! still calls IMDSv1" report (token-less requests grouped by source
//! address, User-Agent and path).
//!
//! Operators migrate guests to IMDSv2 by watching `MetadataNoToken` until it
//! reads zero, then requiring tokens; the caller report tells them *what* to
//! fix first. `imdsd` sees every request, so it can answer both.
//!
//! This crate owns:
//!
//! * [`UsageRecorder`], the [`UsageSink`](imds_dataplane::usage::UsageSink)
//!   the data plane calls on every token-less request. The hot path only
//!   takes a short lock on one of a few shards and bumps counters in memory;
//!   [`UsageRecorder::run`] merges them into the store every
//!   [`UsageConfig::flush_interval`] and once more on shutdown, and deletes
//!   data older than [`UsageConfig::retention_days`].
//! * The read side the API layers build on: [`metric_statistics`]
//!   (CloudWatch `GetMetricStatistics` / `GetMetricData`, Lightsail
//!   `GetInstanceMetricData` semantics) and [`v1_callers`] (the report).
//! * The key layout and record encoding under `usage/` ([`layout`]).
//!
//! It does not own the wire protocols (CloudWatch JSON/CBOR/query, Lightsail
//! JSON), nor the mapping of [`UsageError`] to an HTTP status; it does not
//! decide which instances a process serves (see [`ServedInstances`]).
//!
//! # Storage layout
//!
//! Everything lives under `usage/`, so in fleet mode each agent writes the
//! data of the instances it serves with ordinary store transactions:
//!
//! | key | value |
//! | --- | --- |
//! | `usage/counts/<instance-id>/<hour>` | one hour of per-minute counts (below) |
//! | `usage/callers/<instance-id>` | the instance's caller groups and bookkeeping (below) |
//! | `usage/runs/<run-id>` | the minutes one recorder run flushed ([`coverage`]) |
//! | `usage/served/<instance-id>` | the spans of minutes in which runs served the instance ([`coverage`]) |
//!
//! `<hour>` is the Unix time (seconds) of the start of the UTC hour, in
//! decimal (ten digits until the year 2286, so key order is time order).
//!
//! An hour record is compact JSON; arrays are indexed by minute of the hour
//! and trailing zeros are left out (a missing entry is 0); a metric with no
//! requests in the hour is left out:
//!
//! ```json
//! {"seen":7,"MetadataNoToken":[3,0,12],"MetadataNoTokenRejected":[0,1]}
//! ```
//!
//! `seen` is a bit mask (bit *i* = minute *i*) of the minutes in which the
//! instance made a token-less request (served or rejected). A minute with a
//! non-zero count is always seen.
//!
//! Minutes in which the instance was merely *served* (reported by the
//! [`ServedInstances`] hook) are not written per instance: each recorder
//! run keeps one record of the minutes it flushed, and each instance a
//! span naming the run, opened when the run starts serving it and closed
//! when it stops ([`coverage`]). While the served set does not change, a
//! flush writes only the run record (at most once a minute), so an idle
//! fleet of any size costs one small write per minute; the hook's list is
//! compared on a blocking thread, off the runtime's workers.
//!
//! A callers record holds at most [`UsageConfig::top_callers_per_instance`]
//! groups, the requests of groups that were evicted to keep that bound
//! (`other`), the newest minute with any data of the instance (used for
//! retention and to bound reads), and the id of the last flush that wrote it
//! (to tell, after a write whose outcome is unknown, whether it applied):
//!
//! ```json
//! {"groups":[{"source":"10.0.0.5","user_agent":"aws-cli/1.18","path":"/latest/meta-data/iam/security-credentials/",
//!             "count":42,"first_seen":1795478400,"last_seen":1795482000}],
//!  "other":{"count":3,"first_seen":1795478460,"last_seen":1795478520},
//!  "newest_minute":1795482000,"flush":"8c1e…/17"}
//! ```
//!
//! A flush writes, per instance that made token-less requests, the callers
//! record and every hour record it touches in one transaction, guarded by a
//! compare on each key's `mod_revision`, and retries with fresh reads on conflict: two processes
//! may flush the same instance when it moves between hosts in fleet mode,
//! and neither loses the other's counts.
//!
//! # What a datapoint means
//!
//! CloudWatch reports nothing for a period without data points; a migrating
//! operator, however, must be able to see `MetadataNoToken` **= 0**, not
//! "no data". The rule here: a period inside `[start, end)` gets a datapoint
//! if and only if at least one of its minutes was *observed*: `seen` in
//! its hour record, or inside one of its served spans (above). Each observed minute is one sample whose value is that minute's
//! count (0 if there was none), so `SampleCount` is the number of observed
//! minutes in the period, `Sum` their total, `Average = Sum / SampleCount`,
//! and `Minimum` / `Maximum` range over them. Consequences:
//!
//! * a minute with only rejected requests is an observed minute with
//!   `MetadataNoToken` = 0 (and the other way round);
//! * with a [`ServedInstances`] hook (see [`UsageRecorder::with_served`]),
//!   every minute an instance is served is observed, so an instance that
//!   only uses IMDSv2 reads 0 for every minute, as on EC2;
//! * without it, only minutes with token-less activity are observed: an
//!   instance that never calls IMDSv1 (again) has no new datapoints.
//!
//! # Retention
//!
//! Hour records whose whole hour is older than `retention_days` are deleted,
//! caller groups (and `other`) last seen before then are dropped, and a
//! callers record with nothing left is deleted. The sweep is incremental:
//! at most once an hour it lists `usage/callers/`, then each flush sweeps a
//! few instances with a bounded number of deletes. The same hourly round
//! drops served spans and run records that ended before the retention
//! (decoding them on a blocking thread).
//!
//! # Counting guarantees
//!
//! Counts taken out of memory by a flush are put back if their write
//! fails, so nothing is lost while the store is down (memory then grows by
//! one small entry per instance and minute, bounded by the retention). If a
//! write's outcome is unknown (etcd timeout), the flush re-reads the
//! callers record and treats the write as applied only if it carries this
//! flush's id; if the re-read fails too, the counts are kept and may be
//! counted twice (at least once, never silently lost). Counts not yet
//! flushed are not visible to [`metric_statistics`] or [`v1_callers`].

pub mod coverage;
pub mod layout;
mod query;
mod recorder;

pub use query::{
    CallerGroup, Datapoint, InstanceReport, MAX_DATAPOINTS, Metric, ParseNameError, Statistic, UsageError,
    metric_statistics, v1_callers,
};
pub use recorder::{
    MAX_PATH_BYTES, MAX_USER_AGENT_BYTES, PendingStats, ServedInstances, UsageConfig, UsageRecorder,
};
