//! Per-instance and global admission limits: a noisy or hostile instance
//! gets 429s and refused connections; it never slows down or starves
//! another one (EC2 throttles queries per instance and caps simultaneous
//! connections from an instance; docs/protocol/data-plane.md#throttling).
//!
//! Over its rate an instance also waits: [`InstanceAdmission::throttle_pause`]
//! hands each throttled connection its own turn, one request interval
//! apart, and the server reads nothing more from that connection until
//! then. A flood thus costs the flooder time, not the service CPU: however
//! many connections it keeps busy, the service reads about one request per
//! interval from them.

use arc_swap::ArcSwap;
use governor::clock::DefaultClock;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Longest a throttled connection is left unread (or one request interval,
/// if that is longer). Long enough to hold an instance's 64 connections one
/// interval apart at the default rate (64 × 2 ms), short enough that a
/// throttled SDK's next request is not held past its own timeout for long.
pub const MAX_THROTTLE_PAUSE: Duration = Duration::from_millis(500);

/// Admission limits, from the `[limits]` section of the config file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Sustained requests per second per instance (token bucket refill).
    pub requests_per_second: NonZeroU32,
    /// Requests an instance may send at once above the sustained rate.
    pub burst: NonZeroU32,
    /// Simultaneous connections from one instance.
    pub max_connections_per_instance: usize,
    /// Simultaneous connections in all. Once half of them are in use, an
    /// instance may hold at most its fair share (total / active instances).
    pub max_connections: usize,
}

impl Default for Limits {
    /// Generous for any real guest (SDKs cache credentials and make a
    /// handful of calls), tight enough that one guest cannot monopolise the
    /// service: 500 req/s with bursts of 1000, 64 connections per instance,
    /// 16,384 in all.
    fn default() -> Self {
        Self {
            requests_per_second: NonZeroU32::new(500).unwrap_or(NonZeroU32::MIN),
            burst: NonZeroU32::new(1000).unwrap_or(NonZeroU32::MIN),
            max_connections_per_instance: 64,
            max_connections: 16_384,
        }
    }
}

/// The admission state of one instance, kept across snapshot swaps.
#[derive(Debug)]
pub struct InstanceAdmission {
    /// Swapped whole when the limits are reloaded.
    limiter: ArcSwap<DefaultDirectRateLimiter>,
    connections: AtomicUsize,
    /// Time base of `next_turn`.
    epoch: Instant,
    /// Nanoseconds after `epoch` of the latest turn handed to a throttled
    /// connection; the next one goes one interval later.
    next_turn: AtomicU64,
    /// One request interval at the sustained rate, in nanoseconds.
    interval_nanos: AtomicU64,
}

impl InstanceAdmission {
    /// Fresh state under `limits`.
    pub fn new(limits: &Limits) -> Self {
        Self {
            limiter: ArcSwap::from_pointee(bucket(limits)),
            connections: AtomicUsize::new(0),
            epoch: Instant::now(),
            next_turn: AtomicU64::new(0),
            interval_nanos: AtomicU64::new(interval_nanos(limits)),
        }
    }

    /// Applies new limits (a config reload); the bucket starts full.
    pub fn set_limits(&self, limits: &Limits) {
        self.limiter.store(Arc::new(bucket(limits)));
        self.interval_nanos.store(interval_nanos(limits), Ordering::Relaxed);
        self.next_turn.store(0, Ordering::Relaxed);
    }

    /// Takes one request from the bucket; `false` means answer 429.
    pub fn admit_request(&self) -> bool {
        self.limiter.load().check().is_ok()
    }

    /// How long a connection that was just answered 429 stays unread: until
    /// its own turn, one request interval after the turn handed out before
    /// it (or after now), at most [`MAX_THROTTLE_PAUSE`] or one interval.
    ///
    /// Only a connection that was answered 429 waits: a new connection's
    /// first request is read at once and gets its 200 or 429 without delay
    /// (docs/protocol/data-plane.md#throttling: over the limit, a 429).
    pub fn throttle_pause(&self) -> Duration {
        let now = u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX);
        let interval = self.interval_nanos.load(Ordering::Relaxed);
        // At very low rates one interval is the shortest useful pause.
        let cap = u64::try_from(MAX_THROTTLE_PAUSE.as_nanos()).unwrap_or(u64::MAX).max(interval);
        let mut turn = now;
        let _ = self.next_turn.fetch_update(Ordering::AcqRel, Ordering::Acquire, |last| {
            // Turns never pile up further ahead than the longest pause.
            turn = last.max(now).saturating_add(interval).min(now.saturating_add(cap));
            Some(turn)
        });
        Duration::from_nanos(turn.saturating_sub(now))
    }
}

fn interval_nanos(limits: &Limits) -> u64 {
    1_000_000_000 / u64::from(limits.requests_per_second.get())
}

fn bucket(limits: &Limits) -> DefaultDirectRateLimiter {
    // One clock for every bucket: making a quanta clock calibrates it with
    // `cpuid`, which traps in a VM (~25 % of loading 100k instances).
    static CLOCK: std::sync::OnceLock<DefaultClock> = std::sync::OnceLock::new();
    let clock = CLOCK.get_or_init(DefaultClock::default).clone();
    RateLimiter::direct_with_clock(
        Quota::per_second(limits.requests_per_second).allow_burst(limits.burst),
        clock,
    )
}

/// Connections counted across all instances.
#[derive(Debug, Default)]
pub struct ConnectionCounter {
    total: AtomicUsize,
    /// Instances holding at least one connection.
    active_instances: AtomicUsize,
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionRefusal {
    /// The instance holds its maximum.
    InstanceCap,
    /// The service is at its maximum.
    GlobalCap,
    /// The service is busy and the instance holds more than its fair share.
    FairShare,
}

impl ConnectionRefusal {
    /// Metric label.
    pub fn reason(self) -> &'static str {
        match self {
            Self::InstanceCap => "instance_connection_cap",
            Self::GlobalCap => "global_connection_cap",
            Self::FairShare => "fair_share",
        }
    }
}

/// A held connection slot; released on drop.
#[derive(Debug)]
pub struct ConnectionPermit {
    counter: Arc<ConnectionCounter>,
    instance: Arc<InstanceAdmission>,
}

impl Drop for ConnectionPermit {
    fn drop(&mut self) {
        if self.instance.connections.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.counter.active_instances.fetch_sub(1, Ordering::AcqRel);
        }
        self.counter.total.fetch_sub(1, Ordering::AcqRel);
    }
}

impl ConnectionCounter {
    /// Number of open connections.
    pub fn total(&self) -> usize {
        self.total.load(Ordering::Acquire)
    }

    /// Admits a connection of `instance` under `limits`, or says why not.
    pub fn admit(
        self: &Arc<Self>,
        instance: &Arc<InstanceAdmission>,
        limits: &Limits,
    ) -> Result<ConnectionPermit, ConnectionRefusal> {
        let total = self.total.fetch_add(1, Ordering::AcqRel) + 1;
        let mine = instance.connections.fetch_add(1, Ordering::AcqRel) + 1;
        if mine == 1 {
            self.active_instances.fetch_add(1, Ordering::AcqRel);
        }
        // From here on the permit releases what was taken, whatever happens.
        let permit = ConnectionPermit { counter: Arc::clone(self), instance: Arc::clone(instance) };
        if total > limits.max_connections {
            return Err(ConnectionRefusal::GlobalCap);
        }
        if mine > limits.max_connections_per_instance {
            return Err(ConnectionRefusal::InstanceCap);
        }
        if total > limits.max_connections / 2 {
            let active = self.active_instances.load(Ordering::Acquire).max(1);
            let fair = (limits.max_connections / active).max(1);
            if mine > fair {
                return Err(ConnectionRefusal::FairShare);
            }
        }
        Ok(permit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(per_instance: usize, total: usize) -> Limits {
        Limits { max_connections_per_instance: per_instance, max_connections: total, ..Limits::default() }
    }

    #[test]
    fn per_instance_cap_and_release() {
        let counter = Arc::new(ConnectionCounter::default());
        let l = limits(2, 100);
        let a = Arc::new(InstanceAdmission::new(&l));
        let p1 = counter.admit(&a, &l).unwrap();
        let _p2 = counter.admit(&a, &l).unwrap();
        assert_eq!(counter.admit(&a, &l).unwrap_err(), ConnectionRefusal::InstanceCap);
        drop(p1);
        let _p3 = counter.admit(&a, &l).expect("a released connection frees its slot");
        assert_eq!(counter.total(), 2, "refused attempts hold nothing");
    }

    #[test]
    fn a_busy_service_shares_fairly() {
        let counter = Arc::new(ConnectionCounter::default());
        let l = limits(100, 10);
        let hog = Arc::new(InstanceAdmission::new(&l));
        let quiet = Arc::new(InstanceAdmission::new(&l));
        let mut held = Vec::new();
        // Alone, the hog may take everything up to the global cap.
        while let Ok(p) = counter.admit(&hog, &l) {
            held.push(p);
        }
        assert_eq!(held.len(), 10);
        // The quiet instance is refused only by the global cap; once the hog
        // gives some back, the quiet one gets in and the hog is held to half.
        assert_eq!(counter.admit(&quiet, &l).unwrap_err(), ConnectionRefusal::GlobalCap);
        held.truncate(6);
        let q = counter.admit(&quiet, &l).unwrap();
        assert_eq!(counter.admit(&hog, &l).unwrap_err(), ConnectionRefusal::FairShare);
        drop(q);
    }

    #[test]
    fn throttled_connections_get_turns_one_interval_apart() {
        let l = Limits { requests_per_second: NonZeroU32::new(100).unwrap(), ..Limits::default() };
        let a = InstanceAdmission::new(&l);
        let first = a.throttle_pause();
        let second = a.throttle_pause();
        let third = a.throttle_pause();
        // 10 ms apart (less whatever time passed between the calls).
        assert!(first <= Duration::from_millis(10), "{first:?}");
        assert!(second > first && third > second, "{first:?} {second:?} {third:?}");
        assert!(third >= Duration::from_millis(20), "{third:?}");
        // However many connections are throttled, none waits longer than the cap.
        let longest = (0..1_000).map(|_| a.throttle_pause()).max().unwrap();
        assert!(longest <= MAX_THROTTLE_PAUSE, "{longest:?}");
    }

    #[test]
    fn request_bucket_allows_the_burst_then_refuses() {
        let l = Limits {
            requests_per_second: NonZeroU32::new(1).unwrap(),
            burst: NonZeroU32::new(5).unwrap(),
            ..Limits::default()
        };
        let a = InstanceAdmission::new(&l);
        let admitted = (0..50).filter(|_| a.admit_request()).count();
        // 5 from the burst, at most one more refilled while looping.
        assert!((5..=6).contains(&admitted), "{admitted}");
    }
}
