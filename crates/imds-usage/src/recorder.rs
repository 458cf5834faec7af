//! The recording side: [`UsageRecorder`] counts token-less requests in
//! memory on the request path and merges them into the store off it.
//!
//! The hot path takes one of [`SHARDS`] mutexes (chosen by instance) for a
//! few counter updates; it does no store I/O, never awaits, and allocates
//! only when an instance or a caller group is new. Memory between flushes is
//! bounded per instance: at most `top_callers_per_instance` caller groups
//! (the least counted is evicted into `other` to make room), User-Agents and
//! paths clipped to [`MAX_USER_AGENT_BYTES`] / [`MAX_PATH_BYTES`], and one
//! small entry per minute.

use crate::coverage::{
    RUNS_PREFIX, RunRecord, SERVED_PREFIX, ServedRecord, SpanChange, run_key, served_for_update, served_key,
};
use crate::layout::{
    CALLERS_PREFIX, CallersRecord, HourRecord, Span, absorb_into, callers_for_update, callers_key,
    counts_key, counts_prefix, hour_expired, hour_for_update, hour_of, hour_of_counts_key,
    instance_of_callers_key, minute_index, minute_of,
};
use crate::query::Metric;
use imds_core::{Clock, InstanceId};
use imds_dataplane::usage::UsageSink;
use imds_store::{Compare, Op, Revision, Store, StoreError};
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use tokio::sync::watch;

/// User-Agents are kept up to this many bytes (longer ones are clipped at
/// a character boundary).
pub const MAX_USER_AGENT_BYTES: usize = 256;
/// Paths are kept up to this many bytes.
pub const MAX_PATH_BYTES: usize = 256;

/// Lock shards of the in-memory counts; enough that the data plane's
/// worker threads rarely meet on one.
const SHARDS: usize = 16;
/// Attempts of one instance's read-modify-write before a flush gives up on
/// it (and keeps its counts for the next flush).
const MAX_ATTEMPTS: usize = 16;
/// Writes per transaction when a flush batches instances: below etcd's
/// default `--max-txn-ops` of 128.
const OPS_PER_TXN: usize = 100;
/// Served-span changes (instances a run starts or stops serving) written
/// per transaction (one write each).
const SPAN_CHANGES_PER_TXN: usize = OPS_PER_TXN;
/// A retention sweep over all instances starts at most this often.
const SWEEP_EVERY: u64 = 3600;
/// Instances swept per flush.
const SWEEP_INSTANCES_PER_FLUSH: usize = 8;
/// Keys deleted per flush by the sweep.
const SWEEP_DELETES_PER_FLUSH: usize = 1024;
/// Keys deleted per transaction.
const DELETES_PER_TXN: usize = OPS_PER_TXN;
/// `run` never flushes more often than this, whatever the configuration.
const MIN_FLUSH_INTERVAL: Duration = Duration::from_millis(100);

/// How usage is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageConfig {
    /// Data older than this many days is deleted (CloudWatch keeps 1-minute
    /// data for 15 days).
    pub retention_days: u32,
    /// Caller groups kept per instance, in memory between flushes and in the
    /// store; the requests of evicted groups are counted as "other".
    pub top_callers_per_instance: usize,
    /// How often [`UsageRecorder::run`] merges the counts into the store.
    pub flush_interval: Duration,
}

impl Default for UsageConfig {
    fn default() -> Self {
        Self { retention_days: 15, top_callers_per_instance: 20, flush_interval: Duration::from_secs(10) }
    }
}

impl UsageConfig {
    fn retention_secs(&self) -> u64 {
        u64::from(self.retention_days) * 86_400
    }
}

/// Which instances this process serves right now. With it, a recorder
/// marks every minute an instance is served as observed, so
/// `MetadataNoToken` reads 0 rather than "no data" for an instance that only
/// uses IMDSv2 (see the crate docs). Called once per flush, off the request
/// path. Any `Fn() -> Vec<InstanceId>` is one.
pub trait ServedInstances: Send + Sync + 'static {
    /// The instances served now.
    fn served(&self) -> Vec<InstanceId>;
}

impl<F> ServedInstances for F
where
    F: Fn() -> Vec<InstanceId> + Send + Sync + 'static,
{
    fn served(&self) -> Vec<InstanceId> {
        self()
    }
}

/// What a recorder holds in memory, waiting for the next flush.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PendingStats {
    /// Instances with unflushed counts.
    pub instances: usize,
    /// Caller groups over all those instances.
    pub caller_groups: usize,
    /// Per-minute entries over all those instances.
    pub minutes: usize,
    /// The most caller groups held for one instance.
    pub max_groups_per_instance: usize,
}

/// One caller group in memory.
#[derive(Debug)]
struct PendingGroup {
    /// Hash of (source, user agent, path), compared first.
    hash: u64,
    source: IpAddr,
    user_agent: Box<str>,
    path: Box<str>,
    span: Span,
}

/// The unflushed counts of one instance.
#[derive(Debug, Default)]
struct Pending {
    /// `(minute start, [no token, rejected])`, sorted by minute. A `[0, 0]`
    /// entry marks a minute observed without requests.
    minutes: Vec<(u64, [u64; 2])>,
    groups: Vec<PendingGroup>,
    other: Option<Span>,
}

impl Pending {
    fn add_minute(&mut self, minute: u64, counts: [u64; 2]) {
        let add = |c: &mut [u64; 2]| {
            c[0] = c[0].saturating_add(counts[0]);
            c[1] = c[1].saturating_add(counts[1]);
        };
        match self.minutes.last_mut() {
            Some((m, c)) if *m == minute => add(c),
            None => self.minutes.push((minute, counts)),
            Some((m, _)) if *m < minute => self.minutes.push((minute, counts)),
            // The clock went back, or counts are being put back after a
            // failed flush: keep the order.
            Some(_) => match self.minutes.binary_search_by_key(&minute, |(m, _)| *m) {
                Ok(i) => add(&mut self.minutes[i].1),
                Err(i) => self.minutes.insert(i, (minute, counts)),
            },
        }
    }

    fn add_caller(
        &mut self,
        top: usize,
        hash: u64,
        source: IpAddr,
        user_agent: &str,
        path: &str,
        span: Span,
    ) {
        if let Some(g) = self.groups.iter_mut().find(|g| {
            g.hash == hash && g.source == source && *g.user_agent == *user_agent && *g.path == *path
        }) {
            g.span.absorb(span);
            return;
        }
        if top == 0 {
            absorb_into(&mut self.other, span);
            return;
        }
        if self.groups.len() >= top {
            // Least counted first; among equals the one seen longest ago, so
            // a newcomer that keeps calling gets the chance to climb.
            let victim = self
                .groups
                .iter()
                .enumerate()
                .min_by_key(|(_, g)| (g.span.count, g.span.last_seen))
                .map(|(i, _)| i);
            if let Some(i) = victim {
                let evicted = self.groups.swap_remove(i);
                absorb_into(&mut self.other, evicted.span);
            }
        }
        self.groups.push(PendingGroup {
            hash,
            source,
            user_agent: user_agent.into(),
            path: path.into(),
            span,
        });
    }

    /// Adds `other` (counts taken by a flush that failed) back in.
    fn merge(&mut self, other: Pending, top: usize) {
        for (minute, counts) in other.minutes {
            self.add_minute(minute, counts);
        }
        for g in other.groups {
            self.add_caller(top, g.hash, g.source, &g.user_agent, &g.path, g.span);
        }
        if let Some(o) = other.other {
            absorb_into(&mut self.other, o);
        }
    }
}

/// State owned by the (single) flush in progress.
#[derive(Debug, Default)]
struct FlushState {
    seq: u64,
    /// The instances served at the last flush: each has an open span of
    /// this run in the store, or a change queued in `span_changes`.
    served: HashSet<InstanceId>,
    /// The minute of the last flush that read the served set.
    last_minute: Option<u64>,
    /// The first minute of this run.
    run_from: Option<u64>,
    /// The last `to` written to this run's record.
    run_written: Option<u64>,
    /// Span changes not written yet (a write failed), oldest first.
    span_changes: HashMap<InstanceId, Vec<SpanChange>>,
    sweep_queue: VecDeque<InstanceId>,
    /// Clock time (s) before which no new sweep round starts.
    next_sweep: u64,
}

/// One instance's batch as changes to its records (what is past the
/// retention left out).
struct Delta<'a> {
    hours: BTreeMap<u64, HourRecord>,
    groups: Vec<&'a PendingGroup>,
    other: Option<Span>,
    newest_minute: u64,
}

impl<'a> Delta<'a> {
    /// `None` when nothing is left to write.
    fn of(batch: &'a Pending, cutoff: u64) -> Option<Self> {
        let mut hours: BTreeMap<u64, HourRecord> = BTreeMap::new();
        let mut newest_minute = 0;
        for &(minute, [no_token, rejected]) in &batch.minutes {
            let hour = hour_of(minute);
            if hour_expired(hour, cutoff) {
                continue;
            }
            let delta = hours.entry(hour).or_default();
            let idx = minute_index(minute);
            delta.add(Metric::MetadataNoToken, idx, no_token);
            delta.add(Metric::MetadataNoTokenRejected, idx, rejected);
            newest_minute = newest_minute.max(minute);
        }
        let groups: Vec<&PendingGroup> = batch.groups.iter().filter(|g| g.span.last_seen >= cutoff).collect();
        let other = batch.other.filter(|o| o.last_seen >= cutoff);
        if hours.is_empty() && groups.is_empty() && other.is_none() {
            return None;
        }
        Some(Self { hours, groups, other, newest_minute })
    }
}

type Shard = Mutex<HashMap<InstanceId, Pending>>;

/// Counts token-less requests for the data plane (it is the data plane's
/// [`UsageSink`]) and keeps them in the store; see the crate docs.
pub struct UsageRecorder {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    config: UsageConfig,
    served: Option<Arc<dyn ServedInstances>>,
    shards: Box<[Shard]>,
    flushing: tokio::sync::Mutex<FlushState>,
    /// Unique per recorder; with a sequence number it names each flush.
    flush_id: String,
}

impl std::fmt::Debug for UsageRecorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UsageRecorder")
            .field("config", &self.config)
            .field("flush_id", &self.flush_id)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The data under the lock is plain counters, consistent after any
    // panic, so a poisoned lock is still usable.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn shard_index(id: &InstanceId) -> usize {
    // FNV-1a: cheap, and instance ids are not attacker-chosen.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in id.as_str().bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    usize::try_from(h % SHARDS as u64).unwrap_or(0)
}

fn group_hash(source: IpAddr, user_agent: &str, path: &str) -> u64 {
    let mut h = DefaultHasher::new();
    source.hash(&mut h);
    user_agent.hash(&mut h);
    path.hash(&mut h);
    h.finish()
}

/// `s` cut to at most `max` bytes at a character boundary.
pub(crate) fn clip_str(s: &str, max: usize) -> &str {
    let mut end = max.min(s.len());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.get(..end).unwrap_or_default()
}

/// A User-Agent header as text: at most [`MAX_USER_AGENT_BYTES`] bytes,
/// invalid UTF-8 replaced by U+FFFD. Borrowed (no allocation) when the
/// header is valid UTF-8, as nearly every one is.
pub(crate) fn clip_user_agent(raw: &[u8]) -> Cow<'_, str> {
    let clipped = raw.get(..MAX_USER_AGENT_BYTES).unwrap_or(raw);
    match std::str::from_utf8(clipped) {
        Ok(s) => Cow::Borrowed(s),
        // Only the character the clip cut in two is incomplete: drop it.
        Err(e) if e.error_len().is_none() && clipped.len() < raw.len() => {
            String::from_utf8_lossy(clipped.get(..e.valid_up_to()).unwrap_or_default())
        }
        Err(_) => {
            // Each replacement character takes 3 bytes: clip again.
            let lossy = String::from_utf8_lossy(clipped);
            Cow::Owned(clip_str(&lossy, MAX_USER_AGENT_BYTES).to_owned())
        }
    }
}

impl UsageRecorder {
    /// A recorder writing to `store`, reading time from `clock`. Start
    /// [`UsageRecorder::run`] to flush periodically.
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>, config: UsageConfig) -> Arc<Self> {
        Self::build(store, clock, config, None)
    }

    /// [`UsageRecorder::new`], with the instances this process serves, so
    /// that minutes without token-less requests read 0 (see the crate docs).
    pub fn with_served(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        config: UsageConfig,
        served: Arc<dyn ServedInstances>,
    ) -> Arc<Self> {
        Self::build(store, clock, config, Some(served))
    }

    fn build(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        config: UsageConfig,
        served: Option<Arc<dyn ServedInstances>>,
    ) -> Arc<Self> {
        Arc::new(Self {
            store,
            clock,
            config,
            served,
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            flushing: tokio::sync::Mutex::new(FlushState::default()),
            flush_id: uuid::Uuid::new_v4().simple().to_string(),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &UsageConfig {
        &self.config
    }

    /// What is held in memory waiting for the next flush (for metrics and
    /// tests).
    pub fn pending(&self) -> PendingStats {
        let mut stats = PendingStats::default();
        for shard in self.shards.iter() {
            let shard = lock(shard);
            stats.instances += shard.len();
            for p in shard.values() {
                stats.caller_groups += p.groups.len();
                stats.minutes += p.minutes.len();
                stats.max_groups_per_instance = stats.max_groups_per_instance.max(p.groups.len());
            }
        }
        stats
    }

    fn with_pending(&self, instance: &InstanceId, f: impl FnOnce(&mut Pending)) {
        let mut shard = lock(&self.shards[shard_index(instance)]);
        if let Some(p) = shard.get_mut(instance) {
            f(p);
        } else {
            let mut p = Pending::default();
            f(&mut p);
            shard.insert(instance.clone(), p);
        }
    }

    /// Flushes every `flush_interval` until `shutdown` turns true (or its
    /// sender is dropped), then flushes once more and returns. A failed
    /// flush is logged and its counts kept for the next one.
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let mut ticker = tokio::time::interval(self.config.flush_interval.max(MIN_FLUSH_INTERVAL));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            if *shutdown.borrow_and_update() {
                break;
            }
            tokio::select! {
                _ = ticker.tick() => {
                    if let Err(e) = self.flush_inner().await {
                        tracing::warn!(error = %e, "usage flush failed; counts kept for the next one");
                    }
                }
                changed = shutdown.changed() => {
                    if changed.is_err() {
                        break;
                    }
                }
            }
        }
        if let Err(e) = self.flush_inner().await {
            tracing::error!(error = %e, "last usage flush failed; unflushed IMDSv1 counts are lost");
        }
    }

    /// Merges everything counted so far into the store now (and the
    /// changes of the served set since the last flush), then does a bounded
    /// step of the retention sweep. On error, the counts that could
    /// not be written stay in memory for the next flush; the first error is
    /// returned.
    pub async fn flush(&self) -> Result<(), StoreError> {
        self.flush_inner().await
    }

    async fn flush_inner(&self) -> Result<(), StoreError> {
        let mut state = self.flushing.lock().await;
        let now = self.clock.now_secs();
        let cutoff = now.saturating_sub(self.config.retention_secs());
        state.seq += 1;
        let marker = format!("{}/{}", self.flush_id, state.seq);

        let mut batches: HashMap<InstanceId, Pending> = HashMap::new();
        for shard in self.shards.iter() {
            batches.extend(std::mem::take(&mut *lock(shard)));
        }
        let mut first_error = None;
        if let Err(e) = self.observe_served(&mut state, now).await {
            tracing::warn!(error = %e, "could not record which instances are served; retrying at the next flush");
            first_error = Some(e);
        }
        for (id, batch, e) in self.write_instances(batches, &marker, cutoff).await {
            tracing::warn!(instance = %id, error = %e, "could not write IMDSv1 usage; keeping it for the next flush");
            let top = self.config.top_callers_per_instance;
            self.with_pending(&id, |p| p.merge(batch, top));
            first_error.get_or_insert(e);
        }
        if let Err(e) = self.sweep(&mut state, now, cutoff).await {
            tracing::warn!(error = %e, "usage retention sweep failed; it resumes at the next flush");
            first_error.get_or_insert(e);
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Records which instances this run serves: reads the served set,
    /// queues a span change for each instance that appeared or disappeared
    /// since the last flush, extends this run's record to this minute, and
    /// writes the queued changes in a few batched transactions. While the
    /// served set does not change, this writes one small key (at most once
    /// a minute), whatever the number of instances.
    async fn observe_served(&self, state: &mut FlushState, now: u64) -> Result<(), StoreError> {
        let Some(served) = &self.served else { return Ok(()) };
        let now_minute = minute_of(now);
        let hook = Arc::clone(served);
        let previous = std::mem::take(&mut state.served);
        // Reading and comparing the served set walks every instance: a
        // blocking thread does it, not the runtime's workers (which serve
        // the data plane in `imdsd serve`).
        let diff = tokio::task::spawn_blocking(move || {
            let current: HashSet<InstanceId> = hook.served().into_iter().collect();
            let added: Vec<InstanceId> = current.difference(&previous).cloned().collect();
            let removed: Vec<InstanceId> = previous.difference(&current).cloned().collect();
            (current, added, removed)
        })
        .await;
        let (current, added, removed) = match diff {
            Ok(d) => d,
            Err(e) => {
                // The served set is forgotten: the next flush sees every
                // instance as new, and opening an open span changes nothing.
                tracing::error!(error = %e, "reading the served instances failed");
                (HashSet::new(), Vec::new(), Vec::new())
            }
        };
        if let Some(last) = state.last_minute {
            for id in removed {
                state.span_changes.entry(id).or_default().push(SpanChange::Close(last));
            }
        }
        for id in added {
            state.span_changes.entry(id).or_default().push(SpanChange::Open(now_minute));
        }
        state.served = current;
        state.last_minute = Some(now_minute);
        if !state.served.is_empty() && state.run_written.is_none_or(|w| w < now_minute) {
            // Before the spans that name this run.
            let record = RunRecord { from: *state.run_from.get_or_insert(now_minute), to: now_minute };
            self.store.txn(Vec::new(), vec![Op::put(run_key(&self.flush_id), record.encode()?)]).await?;
            state.run_written = Some(now_minute);
        }
        self.write_span_changes(state).await
    }

    /// Writes the queued span changes, [`SPAN_CHANGES_PER_TXN`] instances
    /// per transaction; what fails stays queued.
    async fn write_span_changes(&self, state: &mut FlushState) -> Result<(), StoreError> {
        if state.span_changes.is_empty() {
            return Ok(());
        }
        let queued: Vec<(InstanceId, Vec<SpanChange>)> =
            std::mem::take(&mut state.span_changes).into_iter().collect();
        let mut first_error = None;
        for chunk in queued.chunks(SPAN_CHANGES_PER_TXN) {
            if let Err(e) = self.write_span_chunk(chunk).await {
                // Changes are idempotent: after an unknown outcome they are
                // simply applied again.
                state.span_changes.extend(chunk.iter().cloned());
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// One compare-and-set transaction over the served records of `chunk`,
    /// retried with fresh reads on conflict.
    async fn write_span_chunk(&self, chunk: &[(InstanceId, Vec<SpanChange>)]) -> Result<(), StoreError> {
        for _ in 0..MAX_ATTEMPTS {
            let mut compares = Vec::new();
            let mut ops = Vec::new();
            for (id, changes) in chunk {
                let key = served_key(id);
                let kv = self.store.get(&key).await?;
                let (mut record, revision) = served_for_update(kv.as_ref());
                let mut changed = false;
                for change in changes {
                    changed |= record.apply(&self.flush_id, *change);
                }
                if changed {
                    ops.push(Op::put(key.clone(), record.encode()?));
                    compares.push(Compare::ModRevision(key, revision));
                }
            }
            if ops.is_empty() || self.store.txn(compares, ops).await?.is_some() {
                return Ok(());
            }
        }
        Err(StoreError::Unavailable(format!(
            "served spans: {MAX_ATTEMPTS} attempts conflicted with concurrent writers"
        )))
    }

    /// Drops served spans that ended before `cutoff`, served records left
    /// empty, and the records of runs that ended before it.
    async fn sweep_coverage(&self, cutoff: u64) -> Result<(), StoreError> {
        let (runs, _) = self.store.list(RUNS_PREFIX).await?;
        let (served, _) = self.store.list(SERVED_PREFIX).await?;
        let own = run_key(&self.flush_id);
        // Decoding every served record is O(instances): on a blocking thread.
        let plan = tokio::task::spawn_blocking(move || {
            let mut ends: HashMap<String, u64> = HashMap::new();
            let mut writes: Vec<(String, Revision, Option<Vec<u8>>)> = Vec::new();
            for kv in &runs {
                let Ok(run) = RunRecord::decode(&kv.key, &kv.value) else { continue };
                let id = kv.key.strip_prefix(RUNS_PREFIX).unwrap_or_default().to_owned();
                ends.insert(id, run.to);
                if kv.key != own && hour_expired(hour_of(run.to), cutoff) {
                    writes.push((kv.key.clone(), kv.mod_revision, None));
                }
            }
            for kv in served {
                let mut record = match ServedRecord::decode(&kv.key, &kv.value) {
                    Ok(r) => r,
                    Err(e) => {
                        tracing::warn!(error = %e, "deleting corrupt usage served record");
                        writes.push((kv.key, kv.mod_revision, None));
                        continue;
                    }
                };
                if record.prune(cutoff, |run| ends.get(run).copied()) {
                    let value = if record.spans.is_empty() { None } else { record.encode().ok() };
                    writes.push((kv.key, kv.mod_revision, value));
                }
            }
            writes
        })
        .await
        .map_err(|e| StoreError::Backend(format!("usage coverage sweep: {e}")))?;
        for chunk in plan.chunks(DELETES_PER_TXN) {
            let compares = chunk.iter().map(|(k, rev, _)| Compare::ModRevision(k.clone(), *rev)).collect();
            let ops = chunk
                .iter()
                .map(|(k, _, v)| match v {
                    Some(v) => Op::put(k.clone(), v.clone()),
                    None => Op::delete(k.as_str()),
                })
                .collect();
            // A conflict means a flush just wrote one of them; the next
            // round sees it.
            self.store.txn(compares, ops).await?;
        }
        Ok(())
    }

    /// Writes the batches of the instances that made token-less requests:
    /// as many instances per compare-and-set transaction as fit in
    /// [`OPS_PER_TXN`], so a flush costs a few transactions (and
    /// `fdatasync`s) however many instances called. A group whose
    /// transaction conflicts is written instance by instance, with retries.
    /// Returns what could not be written.
    async fn write_instances(
        &self,
        batches: HashMap<InstanceId, Pending>,
        marker: &str,
        cutoff: u64,
    ) -> Vec<(InstanceId, Pending, StoreError)> {
        let mut failures = Vec::new();
        let mut group: Vec<(InstanceId, Pending)> = Vec::new();
        let (mut compares, mut ops) = (Vec::new(), Vec::new());
        for (id, batch) in batches {
            let Some(delta) = Delta::of(&batch, cutoff) else { continue };
            let (c, o) = match self.merge_ops(&id, &delta, marker, cutoff).await {
                Ok(merged) => merged,
                Err(e) => {
                    failures.push((id, batch, e));
                    continue;
                }
            };
            if !group.is_empty() && ops.len() + o.len() > OPS_PER_TXN {
                let full = std::mem::take(&mut group);
                let (c, o) = (std::mem::take(&mut compares), std::mem::take(&mut ops));
                self.commit_group(full, c, o, marker, cutoff, &mut failures).await;
            }
            compares.extend(c);
            ops.extend(o);
            group.push((id, batch));
        }
        if !group.is_empty() {
            self.commit_group(group, compares, ops, marker, cutoff, &mut failures).await;
        }
        failures
    }

    /// One transaction for a group's merged records; on conflict each
    /// instance again on its own.
    async fn commit_group(
        &self,
        group: Vec<(InstanceId, Pending)>,
        compares: Vec<Compare>,
        ops: Vec<Op>,
        marker: &str,
        cutoff: u64,
        failures: &mut Vec<(InstanceId, Pending, StoreError)>,
    ) {
        match self.store.txn(compares, ops).await {
            Ok(Some(_)) => {}
            Ok(None) => {
                for (id, batch) in group {
                    self.write_alone(id, batch, marker, cutoff, failures).await;
                }
            }
            Err(e) => {
                // The transaction is atomic: one record carrying this
                // flush's marker means all of them were written.
                let applied = match (&e, group.first()) {
                    (StoreError::OutcomeUnknown(_), Some((id, _))) => self.carries_marker(id, marker).await,
                    _ => false,
                };
                if !applied {
                    // The store error is not `Clone`: the first instance
                    // gets it, the others its text.
                    let text = e.to_string();
                    let mut error = Some(e);
                    for (id, batch) in group {
                        let e = error.take().unwrap_or_else(|| StoreError::Unavailable(text.clone()));
                        failures.push((id, batch, e));
                    }
                }
            }
        }
    }

    /// [`UsageRecorder::write_instance`], recording a failure.
    async fn write_alone(
        &self,
        id: InstanceId,
        batch: Pending,
        marker: &str,
        cutoff: u64,
        failures: &mut Vec<(InstanceId, Pending, StoreError)>,
    ) {
        let Err(e) = self.write_instance(&id, &batch, marker, cutoff).await else { return };
        if matches!(e, StoreError::OutcomeUnknown(_)) && self.carries_marker(&id, marker).await {
            return;
        }
        failures.push((id, batch, e));
    }

    /// Merges one instance's batch into its callers record and hour records
    /// in one compare-and-set transaction, retrying on conflict.
    async fn write_instance(
        &self,
        id: &InstanceId,
        batch: &Pending,
        marker: &str,
        cutoff: u64,
    ) -> Result<(), StoreError> {
        let Some(delta) = Delta::of(batch, cutoff) else { return Ok(()) };
        for _ in 0..MAX_ATTEMPTS {
            let (compares, ops) = self.merge_ops(id, &delta, marker, cutoff).await?;
            if self.store.txn(compares, ops).await?.is_some() {
                return Ok(());
            }
        }
        Err(StoreError::Unavailable(format!(
            "usage of {id}: {MAX_ATTEMPTS} attempts conflicted with concurrent writers"
        )))
    }

    /// Reads the records `delta` changes and returns the compares and
    /// writes that merge it in.
    async fn merge_ops(
        &self,
        id: &InstanceId,
        delta: &Delta<'_>,
        marker: &str,
        cutoff: u64,
    ) -> Result<(Vec<Compare>, Vec<Op>), StoreError> {
        let callers_key = callers_key(id);
        let kv = self.store.get(&callers_key).await?;
        let (mut record, revision) = callers_for_update(kv.as_ref());
        let mut compares = vec![Compare::ModRevision(callers_key.clone(), revision)];
        let mut ops = Vec::with_capacity(delta.hours.len() + 1);
        for (&hour, change) in &delta.hours {
            let key = counts_key(id, hour);
            let kv = self.store.get(&key).await?;
            let (mut stored, revision) = hour_for_update(kv.as_ref());
            stored.merge(change);
            compares.push(Compare::ModRevision(key.clone(), revision));
            ops.push(Op::put(key, stored.encode()?));
        }
        for g in &delta.groups {
            record.merge_group(g.source, &g.user_agent, &g.path, g.span);
        }
        if let Some(o) = delta.other {
            absorb_into(&mut record.other, o);
        }
        record.settle(self.config.top_callers_per_instance, cutoff);
        record.newest_minute = record.newest_minute.max(delta.newest_minute);
        record.flush = marker.to_owned();
        ops.push(Op::put(callers_key, record.encode()?));
        Ok((compares, ops))
    }

    /// Whether the callers record of `id` was last written by the flush
    /// `marker` (so a write whose outcome was unknown did apply).
    async fn carries_marker(&self, id: &InstanceId, marker: &str) -> bool {
        let key = callers_key(id);
        match self.store.get(&key).await {
            Ok(Some(kv)) => CallersRecord::decode(&key, &kv.value).is_ok_and(|r| r.flush == marker),
            _ => false,
        }
    }

    /// One bounded step of the retention sweep: at most once per
    /// [`SWEEP_EVERY`] a round lists the instances with usage data; each
    /// flush then sweeps a few of them.
    async fn sweep(&self, state: &mut FlushState, now: u64, cutoff: u64) -> Result<(), StoreError> {
        if state.sweep_queue.is_empty() {
            if now < state.next_sweep {
                return Ok(());
            }
            state.next_sweep = now.saturating_add(SWEEP_EVERY);
            if let Err(e) = self.sweep_coverage(cutoff).await {
                tracing::warn!(error = %e, "usage coverage sweep failed; it runs again with the next round");
            }
            let (kvs, _) = self.store.list(CALLERS_PREFIX).await?;
            state.sweep_queue = kvs.iter().filter_map(|kv| instance_of_callers_key(&kv.key)).collect();
        }
        let mut budget = SWEEP_DELETES_PER_FLUSH;
        for _ in 0..SWEEP_INSTANCES_PER_FLUSH {
            let Some(id) = state.sweep_queue.pop_front() else { break };
            match self.sweep_instance(&id, cutoff, &mut budget).await {
                Ok(true) => {}
                Ok(false) => {
                    state.sweep_queue.push_front(id);
                    break;
                }
                Err(e) => {
                    state.sweep_queue.push_front(id);
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    /// Deletes the expired hours of `id` and prunes its callers record.
    /// `Ok(false)` when the delete budget ran out first.
    async fn sweep_instance(
        &self,
        id: &InstanceId,
        cutoff: u64,
        budget: &mut usize,
    ) -> Result<bool, StoreError> {
        let prefix = counts_prefix(id);
        let (kvs, _) = self.store.list(&prefix).await?;
        let mut expired = Vec::new();
        let mut kept = 0usize;
        for kv in kvs {
            match hour_of_counts_key(&prefix, &kv.key) {
                Some(hour) if hour_expired(hour, cutoff) => expired.push(kv.key),
                _ => kept += 1,
            }
        }
        let n = expired.len().min(*budget);
        for chunk in expired.get(..n).unwrap_or_default().chunks(DELETES_PER_TXN) {
            self.store.txn(Vec::new(), chunk.iter().map(|k| Op::delete(k.as_str())).collect()).await?;
        }
        *budget -= n;
        if n < expired.len() {
            return Ok(false);
        }
        self.prune_callers(id, cutoff, kept == 0).await?;
        Ok(true)
    }

    /// Drops expired groups from the callers record of `id`, and deletes
    /// the record when nothing of the instance is left.
    async fn prune_callers(
        &self,
        id: &InstanceId,
        cutoff: u64,
        no_hours_left: bool,
    ) -> Result<(), StoreError> {
        let key = callers_key(id);
        let Some(kv) = self.store.get(&key).await? else { return Ok(()) };
        let compare = vec![Compare::ModRevision(key.clone(), kv.mod_revision)];
        let ops = match CallersRecord::decode(&key, &kv.value) {
            Ok(mut record) => {
                let changed = record.settle(self.config.top_callers_per_instance, cutoff);
                if record.is_empty() && no_hours_left && hour_expired(hour_of(record.newest_minute), cutoff) {
                    vec![Op::delete(key)]
                } else if changed {
                    vec![Op::put(key, record.encode()?)]
                } else {
                    return Ok(());
                }
            }
            Err(e) if no_hours_left => {
                tracing::warn!(error = %e, "deleting corrupt usage callers record of an instance without data");
                vec![Op::delete(key)]
            }
            Err(_) => return Ok(()),
        };
        // A conflict means a flush just wrote the record; the next round
        // sees it.
        self.store.txn(compare, ops).await?;
        Ok(())
    }
}

impl UsageSink for UsageRecorder {
    fn no_token(&self, instance: &InstanceId, source: IpAddr, user_agent: Option<&[u8]>, path: &str) {
        let now = self.clock.now_secs();
        let user_agent = clip_user_agent(user_agent.unwrap_or_default());
        let path = clip_str(path, MAX_PATH_BYTES);
        let hash = group_hash(source, &user_agent, path);
        let top = self.config.top_callers_per_instance;
        self.with_pending(instance, |p| {
            p.add_minute(minute_of(now), [1, 0]);
            p.add_caller(top, hash, source, &user_agent, path, Span::one(now));
        });
    }

    fn no_token_rejected(&self, instance: &InstanceId) {
        let now = self.clock.now_secs();
        self.with_pending(instance, |p| p.add_minute(minute_of(now), [0, 1]));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_agent_is_clipped_at_a_character_boundary() {
        let long = "é".repeat(200); // 400 bytes
        let clipped = clip_user_agent(long.as_bytes());
        assert!(matches!(clipped, Cow::Borrowed(_)));
        assert_eq!(clipped.len(), 256);
        let odd = format!("a{}", "é".repeat(200));
        let clipped = clip_user_agent(odd.as_bytes());
        assert_eq!(clipped.len(), 255);
        assert!(clipped.chars().all(|c| c == 'a' || c == 'é'));
    }

    #[test]
    fn invalid_user_agent_is_decoded_lossily_and_bounded() {
        assert_eq!(clip_user_agent(b"curl/\xff8"), "curl/\u{fffd}8");
        let bad = vec![0xffu8; 1000];
        let clipped = clip_user_agent(&bad);
        assert!(clipped.len() <= MAX_USER_AGENT_BYTES);
        assert!(clipped.chars().all(|c| c == '\u{fffd}'));
        assert_eq!(clip_user_agent(b""), "");
    }

    #[test]
    fn path_is_clipped() {
        let p = format!("/latest/meta-data/{}", "x".repeat(500));
        assert_eq!(clip_str(&p, MAX_PATH_BYTES).len(), MAX_PATH_BYTES);
        assert_eq!(clip_str("/", MAX_PATH_BYTES), "/");
    }

    #[test]
    fn pending_minutes_stay_sorted() {
        let mut p = Pending::default();
        p.add_minute(120, [1, 0]);
        p.add_minute(120, [1, 0]);
        p.add_minute(240, [0, 1]);
        p.add_minute(60, [1, 0]);
        p.add_minute(180, [0, 0]);
        p.add_minute(240, [2, 0]);
        assert_eq!(p.minutes, vec![(60, [1, 0]), (120, [2, 0]), (180, [0, 0]), (240, [2, 1])]);
    }

    #[test]
    fn eviction_moves_the_least_counted_to_other() {
        let mut p = Pending::default();
        let ip = IpAddr::from([10, 0, 0, 1]);
        let add = |p: &mut Pending, ua: &str, at: u64| {
            p.add_caller(2, group_hash(ip, ua, "/"), ip, ua, "/", Span::one(at));
        };
        add(&mut p, "a", 1);
        add(&mut p, "a", 2);
        add(&mut p, "b", 3);
        add(&mut p, "c", 4); // evicts b (count 1)
        add(&mut p, "d", 5); // evicts c (count 1, older than a? no: a has 2)
        let names: Vec<_> = p.groups.iter().map(|g| (&*g.user_agent, g.span.count)).collect();
        assert_eq!(names, [("a", 2), ("d", 1)]);
        assert_eq!(p.other, Some(Span { count: 2, first_seen: 3, last_seen: 4 }));
    }

    #[test]
    fn zero_top_counts_everything_as_other() {
        let mut p = Pending::default();
        let ip = IpAddr::from([10, 0, 0, 1]);
        p.add_caller(0, 1, ip, "a", "/", Span::one(7));
        assert!(p.groups.is_empty());
        assert_eq!(p.other.map(|o| o.count), Some(1));
    }
}
