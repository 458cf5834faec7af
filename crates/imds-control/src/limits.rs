//! Request admission on the control listener: the per-credential rate
//! limit and the time limits of a request, both replaceable at run time
//! (SIGHUP) through a [`LimitsHandle`].
//!
//! The rate limit is a token bucket (GCRA, `governor`) per access key id,
//! charged only after SigV4 authentication succeeded, so a caller cannot
//! spend another key's budget by naming it. Requests that fail
//! authentication are charged to a bucket of their source address (an IPv6
//! source by its /64), so they cannot flood the endpoint either. Buckets
//! that have refilled completely carry no information and are dropped once
//! a minute ([`governor::RateLimiter::retain_recent`]); the source buckets
//! are also capped in number, beyond which unknown sources share one
//! bucket. Memory therefore stays bounded by the number of keys and
//! sources active within one refill period.
//!
//! This module decides *whether* a request may proceed; the protocol
//! handlers render the refusal in their own error shape and
//! [`crate::server`] applies the time limits.

use arc_swap::ArcSwap;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use std::net::{IpAddr, Ipv6Addr};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Default sustained rate per credential, in requests per second.
///
/// EC2 refills its request-rate buckets at 5/s (mutating actions) to 20/s
/// (non-mutating ones), per account. Here every access key (each
/// instance's role credentials included) gets 100/s: five times EC2's
/// fastest refill, so no client that works against EC2 is throttled here,
/// while one runaway credential is still held to a rate the store bears.
pub const DEFAULT_REQUESTS_PER_SECOND: f64 = 100.0;
/// Default bucket size per credential: five times EC2's largest bucket
/// (200, mutating actions), so benchmarks and tests that fire a few hundred
/// calls back to back are not throttled.
pub const DEFAULT_BURST: u32 = 1000;
/// Default whole-request deadline: reading the body, handling and
/// answering. botocore gives up after 60 s (`read_timeout`); a request
/// still running at 30 s is stuck, not slow.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Default time a client has to send a complete request head (and the idle
/// time of a kept-alive connection before its next request).
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Source buckets kept at most; beyond this, new sources share one bucket.
const MAX_SOURCE_BUCKETS: usize = 65_536;
/// How often fully refilled buckets are dropped.
const RETAIN_EVERY: Duration = Duration::from_secs(60);

/// The limits of the control listener.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ControlLimits {
    /// Sustained requests per second per access key (and per source for
    /// requests that fail authentication); `0` turns the rate limit off.
    pub requests_per_second: f64,
    /// Requests a bucket holds (a burst above the sustained rate).
    pub burst: u32,
    /// Deadline of one request: body, handling and answer.
    pub request_timeout: Duration,
    /// Time to send a complete request head.
    pub header_read_timeout: Duration,
}

impl Default for ControlLimits {
    fn default() -> Self {
        Self {
            requests_per_second: DEFAULT_REQUESTS_PER_SECOND,
            burst: DEFAULT_BURST,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
        }
    }
}

impl ControlLimits {
    /// The bucket quota, `None` when the rate limit is off (or the values
    /// make no quota).
    fn quota(&self) -> Option<Quota> {
        if !(self.requests_per_second.is_finite() && self.requests_per_second > 0.0) {
            return None;
        }
        let period = Duration::try_from_secs_f64(1.0 / self.requests_per_second).ok()?;
        let burst = NonZeroU32::new(self.burst.max(1))?;
        Some(Quota::with_period(period.max(Duration::from_nanos(1)))?.allow_burst(burst))
    }
}

/// Which bucket refused a request (the `bucket` label of
/// `imds_control_throttled_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bucket {
    /// The authenticated access key's.
    Credential,
    /// The source address's (authentication failed).
    Source,
}

impl Bucket {
    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Self::Credential => "credential",
            Self::Source => "source",
        }
    }
}

/// The buckets of one quota.
struct Rate {
    quota: Option<Quota>,
    keys: Option<DefaultKeyedRateLimiter<String>>,
    sources: Option<DefaultKeyedRateLimiter<IpAddr>>,
    /// Milliseconds since `epoch` of the last `retain_recent`.
    last_retain: AtomicU64,
    epoch: Instant,
}

impl Rate {
    fn new(quota: Option<Quota>) -> Self {
        Self {
            quota,
            keys: quota.map(RateLimiter::keyed),
            sources: quota.map(RateLimiter::keyed),
            last_retain: AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }

    /// Drops fully refilled buckets, at most once per [`RETAIN_EVERY`]
    /// (whoever wins the race does it).
    fn maybe_retain(&self) {
        let now = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        let last = self.last_retain.load(Ordering::Relaxed);
        let every = u64::try_from(RETAIN_EVERY.as_millis()).unwrap_or(u64::MAX);
        if now.saturating_sub(last) < every
            || self.last_retain.compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).is_err()
        {
            return;
        }
        self.retain();
    }

    /// Drops the buckets that are full again (they hold no state a fresh
    /// bucket would not).
    fn retain(&self) {
        if let Some(k) = &self.keys {
            k.retain_recent();
            k.shrink_to_fit();
        }
        if let Some(s) = &self.sources {
            s.retain_recent();
            s.shrink_to_fit();
        }
    }
}

/// The limits in force with their buckets.
struct Buckets {
    limits: ControlLimits,
    rate: Arc<Rate>,
}

/// The limits in force and their buckets; clones share them, so the
/// handle kept for reloads changes what the serving plane uses.
#[derive(Clone)]
pub struct LimitsHandle {
    current: Arc<ArcSwap<Buckets>>,
}

impl std::fmt::Debug for LimitsHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LimitsHandle").field("limits", &self.limits()).finish()
    }
}

impl LimitsHandle {
    /// A handle enforcing `limits`.
    pub fn new(limits: ControlLimits) -> Self {
        let rate = Arc::new(Rate::new(limits.quota()));
        Self { current: Arc::new(ArcSwap::from_pointee(Buckets { limits, rate })) }
    }

    /// The limits in force.
    pub fn limits(&self) -> ControlLimits {
        self.current.load().limits
    }

    /// Replaces the limits (config reload). A changed rate or burst starts
    /// every bucket full again; the time limits apply to requests and
    /// connections that start afterwards.
    pub fn set(&self, limits: ControlLimits) {
        let old = self.current.load();
        if old.limits == limits {
            return;
        }
        // Only a changed quota starts the buckets afresh (full); a reload
        // that changes the time limits keeps what callers have spent.
        let quota = limits.quota();
        let rate = if old.rate.quota == quota { Arc::clone(&old.rate) } else { Arc::new(Rate::new(quota)) };
        self.current.store(Arc::new(Buckets { limits, rate }));
        tracing::info!(
            requests_per_second = limits.requests_per_second,
            burst = limits.burst,
            request_timeout_secs = limits.request_timeout.as_secs_f64(),
            header_read_timeout_secs = limits.header_read_timeout.as_secs_f64(),
            "control-plane limits in force"
        );
    }

    /// Charges one request to the bucket of `access_key_id` (authenticated)
    /// or, without one, of `source`; `Err` names the bucket that is empty.
    pub fn admit(&self, access_key_id: Option<&str>, source: Option<IpAddr>) -> Result<(), Bucket> {
        let buckets = self.current.load();
        let rate = &buckets.rate;
        rate.maybe_retain();
        match access_key_id {
            Some(key) => match &rate.keys {
                Some(keys) if keys.check_key(&key.to_owned()).is_err() => Err(Bucket::Credential),
                _ => Ok(()),
            },
            None => match &rate.sources {
                Some(sources) => {
                    let mut source = source.map_or(IpAddr::V6(Ipv6Addr::UNSPECIFIED), source_key);
                    if sources.len() >= MAX_SOURCE_BUCKETS {
                        // Too many distinct sources within a refill period:
                        // the ones not tracked yet share one bucket.
                        source = IpAddr::V6(Ipv6Addr::UNSPECIFIED);
                    }
                    if sources.check_key(&source).is_err() { Err(Bucket::Source) } else { Ok(()) }
                }
                None => Ok(()),
            },
        }
    }
}

impl Default for LimitsHandle {
    fn default() -> Self {
        Self::new(ControlLimits::default())
    }
}

/// The bucket key of a source: IPv4 as is, IPv6 by its /64 (one host
/// usually owns a whole /64 and could rotate through it).
fn source_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut s = v6.segments();
                s[4..].fill(0);
                IpAddr::V6(Ipv6Addr::from(s))
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small(rps: f64, burst: u32) -> ControlLimits {
        ControlLimits { requests_per_second: rps, burst, ..ControlLimits::default() }
    }

    #[test]
    fn each_key_has_its_own_bucket() {
        let h = LimitsHandle::new(small(0.001, 2));
        assert_eq!(h.admit(Some("AKIAA"), None), Ok(()));
        assert_eq!(h.admit(Some("AKIAA"), None), Ok(()));
        assert_eq!(h.admit(Some("AKIAA"), None), Err(Bucket::Credential));
        assert_eq!(h.admit(Some("AKIAB"), None), Ok(()));
        // Failed authentication is charged to the source, not to the key.
        let ip = IpAddr::from([192, 0, 2, 1]);
        assert_eq!(h.admit(None, Some(ip)), Ok(()));
        assert_eq!(h.admit(None, Some(ip)), Ok(()));
        assert_eq!(h.admit(None, Some(ip)), Err(Bucket::Source));
        assert_eq!(h.admit(None, Some(IpAddr::from([192, 0, 2, 2]))), Ok(()));
    }

    #[test]
    fn refilled_buckets_are_dropped() {
        // A bucket of 1 refilling in a microsecond: full again at once.
        let rate = Rate::new(small(1_000_000.0, 1).quota());
        let keys = rate.keys.as_ref().map(|k| {
            for n in 0..1000 {
                let _ = k.check_key(&format!("AKIA{n:016}"));
            }
            k.len()
        });
        assert_eq!(keys, Some(1000));
        std::thread::sleep(Duration::from_millis(20));
        rate.retain();
        assert_eq!(rate.keys.as_ref().map(|k| k.len()), Some(0));
    }

    #[test]
    fn ipv6_sources_share_their_64() {
        let a: IpAddr = "2001:db8::1".parse().unwrap_or(IpAddr::V6(Ipv6Addr::LOCALHOST));
        let b: IpAddr = "2001:db8::ffff:2".parse().unwrap_or(IpAddr::V6(Ipv6Addr::LOCALHOST));
        assert_eq!(source_key(a), source_key(b));
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap_or(IpAddr::V6(Ipv6Addr::LOCALHOST));
        assert_eq!(source_key(mapped), IpAddr::from([192, 0, 2, 7]));
    }

    #[test]
    fn zero_rate_turns_the_limit_off_and_reload_applies() {
        let h = LimitsHandle::new(small(0.0, 1));
        for _ in 0..100 {
            assert_eq!(h.admit(Some("AKIAA"), None), Ok(()));
        }
        h.set(small(0.001, 1));
        assert_eq!(h.admit(Some("AKIAA"), None), Ok(()));
        assert_eq!(h.admit(Some("AKIAA"), None), Err(Bucket::Credential));
        h.set(small(0.001, 3));
        assert_eq!(h.limits().burst, 3);
        assert_eq!(h.admit(Some("AKIAA"), None), Ok(()));
        assert_eq!(h.admit(Some("AKIAA"), None), Ok(()));
    }
}
