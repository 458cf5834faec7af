//! [`CredentialManager`]: the credentials of every tracked instance run,
//! obtained and refreshed by a background task, never on the request path.
//!
//! It owns, per instance run, the identity credentials (always minted) and
//! the two role credential sets (IMDSv1 and IMDSv2 deliveries), their
//! rotation schedule and the retries of a failing STS provider. It does not
//! render documents (the data plane does) and does not decide which
//! instances to serve (the agent calls [`CredentialManager::track`] and
//! [`CredentialManager::untrack`]).
//!
//! # Minted sets are computed, not stored
//!
//! A minted set is a pure function of the fleet's minting key and of (instance, run,
//! role, profile, delivery, issue time) ([`crate::mint`]); the issue times
//! follow a schedule, so the manager keeps no set in memory and writes
//! nothing to the store: [`CredentialManager::current`] computes the sets
//! in force, and a restarted process (or another host the instance moves
//! to) serves the very same sets. Per tracked run the manager keeps the
//! incarnation, a context shared by all runs of the same account, region
//! and instance profile, and when the served sets next change.
//!
//! The schedule: with `period = lifetime - refresh_before` (at least
//! [`MIN_MINTED_ROTATION_SECS`]), a run's sets are issued at `launch_time +
//! k × period`: as on EC2, the first set is issued when the run starts and
//! has its whole lifetime ahead, and a fleet rotates as spread out as it
//! was launched. A set issued at `t` expires at `t +
//! lifetime` and is replaced at `t + period`, `refresh_before` ahead of its
//! expiry, as before; a replaced set stays valid until it expires (the
//! control plane checks its expiry, not whether it is current). A new run
//! or a changed profile gives new sets; the control plane refuses the old
//! ones at once because it checks the instance record
//! ([`crate::MintedVerifier`]), so nothing needs revoking here.
//!
//! # Timing
//!
//! All decisions (is a set due for rotation, has it expired, is a retry
//! due) read the injected [`Clock`]. A background task wakes at the next
//! due time, at most every [`ManagerOptions::tick`], and whenever `track`
//! or a finished STS call asks it to. Tests move a `ManualClock` and never
//! sleep for expiry.
//!
//! # Failure
//!
//! A failing provider never blocks anything: `track`, `untrack` and
//! `current` are synchronous and only read memory. An STS set that cannot
//! be refreshed keeps being served until it expires; the fetch is retried
//! with exponential backoff (plus up to 20 % jitter). Until the minting key
//! is loaded (the store is read once, at start, retried the same way),
//! minted roles are served as [`ERROR_CODE_PENDING`] and identity
//! credentials are absent; [`CredentialManager::ready`] waits for it.

use crate::config::{CredentialsConfig, DEFAULT_MINTED_LIFETIME_SECS, DEFAULT_MINTED_REFRESH_BEFORE_SECS};
use crate::config::{DEFAULT_STATIC_WINDOW_SECS, ProviderConfig};
use crate::mint::{Claims, MintingKey, SetKind, fill_random};
use crate::principal::{IDENTITY_ROLE_NAME, RoleDelivery, principal_arn};
use crate::sts::{FetchError, StsProvider};
use imds_core::{Clock, IamInstanceProfile, InstanceId, InstanceRecord, RoleCredentials};
use imds_store::{Store, StoreError};
use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError, Weak};
use std::time::Duration;
use tokio::sync::{Notify, mpsc};
use tokio::task::AbortHandle;

/// `Code` of the error document while the first fetch of a role's
/// credentials has not finished. Every SDK treats any `Code` other than
/// `Success` as "no credentials" (botocore logs it and continues its chain,
/// Go and JS fail the call, Rust falls back to its last good set), and only
/// `AssumeRoleUnauthorizedAccess` makes the Rust SDK report a broken trust
/// policy; so transient states use other codes.
pub const ERROR_CODE_PENDING: &str = "Pending";
/// `Code` when the provider could not be reached (or failed) and no valid
/// set is left; transient, retried in the background.
pub const ERROR_CODE_UNAVAILABLE: &str = "ServiceUnavailable";
/// `Code` when STS refused `AssumeRole` (access denied, bad bridge keys):
/// EC2's code for a role it cannot assume (docs/protocol/credentials.md#error-document).
pub const ERROR_CODE_UNAUTHORIZED: &str = "AssumeRoleUnauthorizedAccess";

/// An STS set is never replaced sooner than this after it was issued: STS
/// may grant less than the duration asked for (a role's maximum session),
/// and refreshing `refresh_before` ahead of such an expiry would otherwise
/// call STS in a loop.
const MIN_STS_ROTATION_SECS: u64 = 60;
/// Shortest rotation period of minted sets. Minted lifetimes are ours and
/// validated (`refresh_before < lifetime`), so no storm is possible; short
/// settings are honoured (tests rotate every second).
pub const MIN_MINTED_ROTATION_SECS: u64 = 1;
/// Shortest pause of the background task, whatever is due.
const MIN_SLEEP: Duration = Duration::from_millis(10);

/// What the data plane serves for one instance run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceCredentials {
    /// The role's credentials; `None` without an instance profile.
    pub role: Option<RoleSet>,
    /// `identity-credentials/ec2/security-credentials/ec2-instance`
    /// (always minted); `None` only until the minting key is loaded.
    pub identity: Option<RoleCredentials>,
}

/// The two credential sets of a role, or why one is missing.
///
/// A `None` set is served as the error document of
/// docs/protocol/credentials.md#error-document
/// (HTTP 200, `Code` = `error.0`, `Message` = `error.1`, `LastUpdated`);
/// `error` is `Some` exactly when at least one set is `None`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleSet {
    /// Served to token-less (IMDSv1) requests.
    pub imdsv1: Option<RoleCredentials>,
    /// Served to token-authenticated (IMDSv2) requests.
    pub imdsv2: Option<RoleCredentials>,
    /// `(Code, Message)` of the error document: [`ERROR_CODE_PENDING`],
    /// [`ERROR_CODE_UNAVAILABLE`] or [`ERROR_CODE_UNAUTHORIZED`].
    pub error: Option<(String, String)>,
}

impl RoleSet {
    /// The set for one delivery.
    pub fn get(&self, delivery: RoleDelivery) -> Option<&RoleCredentials> {
        match delivery {
            RoleDelivery::V1 => self.imdsv1.as_ref(),
            RoleDelivery::V2 => self.imdsv2.as_ref(),
        }
    }
}

/// Timing of the background task.
#[derive(Debug, Clone)]
pub struct ManagerOptions {
    /// Longest pause between two looks at the clock (default 30 s).
    pub tick: Duration,
    /// First retry delay after a failed fetch or store read (default 1 s).
    pub retry_min_secs: u64,
    /// Largest retry delay (default 60 s).
    pub retry_max_secs: u64,
}

impl Default for ManagerOptions {
    fn default() -> Self {
        Self { tick: Duration::from_secs(30), retry_min_secs: 1, retry_max_secs: 60 }
    }
}

/// Role credentials of the tracked instance runs, refreshed in the
/// background. Dropping it stops the background task.
pub struct CredentialManager {
    shared: Arc<Shared>,
    worker: AbortHandle,
}

impl std::fmt::Debug for CredentialManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CredentialManager").field("host_id", &self.shared.host_id).finish_non_exhaustive()
    }
}

impl Drop for CredentialManager {
    fn drop(&mut self) {
        self.worker.abort();
    }
}

impl CredentialManager {
    /// A manager with [`ManagerOptions::default`]; see
    /// [`CredentialManager::with_options`].
    ///
    /// # Panics
    ///
    /// Outside a Tokio runtime (it spawns its background task).
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        config: CredentialsConfig,
        host_id: String,
    ) -> (Self, mpsc::UnboundedReceiver<InstanceId>) {
        Self::with_options(store, clock, config, host_id, ManagerOptions::default())
    }

    /// A manager and the channel on which it names instances whose
    /// credentials changed in the background (rotation, a finished fetch,
    /// expiry, the minting key loaded): the receiver re-renders them from
    /// [`CredentialManager::current`]. Changes made by `track` itself are
    /// returned by it, not announced.
    ///
    /// The minting key is loaded from `store` in the background;
    /// [`CredentialManager::ready`] waits for it. `config` should have been
    /// validated (deserialising it does that).
    ///
    /// # Panics
    ///
    /// Outside a Tokio runtime (it spawns its background task).
    pub fn with_options(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        config: CredentialsConfig,
        host_id: String,
        options: ManagerOptions,
    ) -> (Self, mpsc::UnboundedReceiver<InstanceId>) {
        if let Err(e) = config.validate() {
            tracing::error!(error = %e, "credentials config breaks a rule; using it anyway");
        }
        let (events, receiver) = mpsc::unbounded_channel();
        let default_sts = StsProvider::from_config(&config.default).map(Arc::new);
        let role_sts = config
            .roles
            .iter()
            .filter_map(|(role, p)| StsProvider::from_config(p).map(|s| (role.clone(), Arc::new(s))))
            .collect();
        let shared = Arc::new(Shared {
            store,
            clock,
            config,
            host_id,
            options,
            default_sts,
            role_sts,
            key: OnceLock::new(),
            state: Mutex::new(State::default()),
            events,
            wake: Notify::new(),
        });
        let worker = tokio::spawn(worker(Arc::clone(&shared))).abort_handle();
        (Self { shared, worker }, receiver)
    }

    /// Loads the minting key now if the background task has not yet (one
    /// store read, a write the very first time). Call it before tracking,
    /// so that the first sets served are real ones rather than
    /// [`ERROR_CODE_PENDING`].
    pub async fn ready(&self) -> Result<(), StoreError> {
        if self.shared.key.get().is_some() {
            return Ok(());
        }
        let key = MintingKey::load_or_create(self.shared.store.as_ref()).await?;
        // Another load may have won: both read the one stored key.
        let _ = self.shared.key.set(Arc::new(key));
        self.shared.wake.notify_one();
        Ok(())
    }

    /// Starts or updates the tracking of an instance run and returns what is
    /// current, at once: it never waits for a provider or the store.
    ///
    /// The same run (incarnation) with the same instance profile keeps its
    /// credentials. A new incarnation gets all new credentials; a changed
    /// profile gets new role credentials. Minted sets are served at once;
    /// an STS role is served as the error document ([`ERROR_CODE_PENDING`])
    /// until its first fetch finishes.
    pub fn track(&self, record: &InstanceRecord) -> InstanceCredentials {
        let shared = &self.shared;
        let now = shared.clock.now_secs();
        let id = &record.instance_id;
        let mut state = shared.lock();
        let same_run = state.instances.get(id).is_some_and(|t| {
            t.incarnation == record.incarnation && t.context.profile == record.iam_instance_profile
        });
        let mut wake = false;
        if !same_run {
            let context = state.intern(record);
            state.next_epoch += 1;
            let role = shared.new_role(&context, state.next_epoch, now);
            wake = matches!(role, RoleState::Sts(_));
            let mut tracked = Tracked {
                incarnation: record.incarnation,
                launch_time: record.launch_time,
                context,
                next_change: 0,
                role,
            };
            tracked.next_change = shared.next_change(&tracked, now);
            wake |= tracked.next_change < state.worker_wakes_at;
            tracing::debug!(instance = %id, "tracking credentials");
            state.instances.insert(id.clone(), tracked);
        } else if state.instances.get(id).is_some_and(|t| !t.context.same_place(record)) {
            // Same run and profile, another account or region (never in
            // practice): the principal ARN follows; the STS state stays.
            let context = state.intern(record);
            if let Some(t) = state.instances.get_mut(id) {
                t.context = context;
            }
        }
        let plan = state.instances.get(id).map(|t| shared.plan(id, t, now));
        drop(state);
        if wake {
            shared.wake.notify_one();
        }
        plan.map_or(InstanceCredentials { role: None, identity: None }, |p| shared.render(p, now))
    }

    /// Stops tracking an instance run. Nothing is revoked here: the control
    /// plane refuses the run's minted sets as soon as the instance record
    /// says it stopped, ended or changed profile.
    pub fn untrack(&self, id: &InstanceId) {
        if self.shared.lock().instances.remove(id).is_some() {
            tracing::debug!(instance = %id, "untracked credentials");
        }
    }

    /// What is current for a tracked instance run (expired sets left out).
    pub fn current(&self, id: &InstanceId) -> Option<InstanceCredentials> {
        let now = self.shared.clock.now_secs();
        let plan = self.shared.lock().instances.get(id).map(|t| self.shared.plan(id, t, now))?;
        Some(self.shared.render(plan, now))
    }
}

#[cfg(test)]
impl CredentialManager {
    /// One round of background work, as the task does it.
    pub(crate) async fn run_once(&self) {
        self.shared.run_once().await;
    }

    /// Consecutive STS failures of the (v1, v2) sets of an instance.
    pub(crate) fn sts_failures(&self, id: &InstanceId) -> Option<(u32, u32)> {
        match &self.shared.lock().instances.get(id)?.role {
            RoleState::Sts(s) => Some((s.v1.failures, s.v2.failures)),
            _ => None,
        }
    }

    /// Tracked runs and interned contexts.
    pub(crate) fn sizes(&self) -> (usize, usize) {
        let state = self.shared.lock();
        (state.instances.len(), state.contexts.len())
    }
}

/// State shared by the manager handle, its background task and the STS
/// fetches it spawns.
pub(crate) struct Shared {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    config: CredentialsConfig,
    host_id: String,
    options: ManagerOptions,
    default_sts: Option<Arc<StsProvider>>,
    role_sts: HashMap<String, Arc<StsProvider>>,
    /// Set once, by the background task or [`CredentialManager::ready`].
    key: OnceLock<Arc<MintingKey>>,
    /// Never held across an `.await`.
    state: Mutex<State>,
    events: mpsc::UnboundedSender<InstanceId>,
    wake: Notify,
}

#[derive(Default)]
struct State {
    instances: HashMap<InstanceId, Tracked>,
    /// One copy of each (account, region, profile), shared by the runs
    /// that have it; dropped by the next pass once no run holds it.
    contexts: HashSet<Arc<RunContext>>,
    next_epoch: u64,
    /// Consecutive failures to load the minting key.
    key_failures: u32,
    /// Clock seconds before which the key load is not retried.
    key_retry_at: u64,
    /// When the background task next looks on its own; `track` wakes it
    /// only for something due sooner.
    worker_wakes_at: u64,
}

impl State {
    /// The shared context of `record`'s account, region and profile.
    fn intern(&mut self, record: &InstanceRecord) -> Arc<RunContext> {
        let probe = RunContext {
            owner_id: record.owner_id.clone(),
            region: record.placement.region.clone(),
            profile: record.iam_instance_profile.clone(),
        };
        if let Some(existing) = self.contexts.get(&probe) {
            return Arc::clone(existing);
        }
        let context = Arc::new(probe);
        self.contexts.insert(Arc::clone(&context));
        context
    }
}

/// What the principal ARNs and the role of a run are made of.
#[derive(PartialEq, Eq)]
struct RunContext {
    owner_id: String,
    region: String,
    profile: Option<IamInstanceProfile>,
}

impl Hash for RunContext {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.owner_id.hash(state);
        self.region.hash(state);
        if let Some(p) = &self.profile {
            p.arn.hash(state);
            p.id.hash(state);
            p.role_name.hash(state);
        }
    }
}

impl RunContext {
    fn role_name(&self) -> &str {
        self.profile.as_ref().map_or("", |p| p.role_name.as_str())
    }

    fn same_place(&self, record: &InstanceRecord) -> bool {
        self.owner_id == record.owner_id && self.region == record.placement.region
    }
}

/// One tracked instance run: 56 bytes besides its id (about 130 bytes of
/// RSS per run with the map and the id, measured by the `track_100k` test).
struct Tracked {
    incarnation: u64,
    /// Start of the run (`InstanceRecord::launch_time`): where its
    /// rotation schedule starts.
    launch_time: u64,
    context: Arc<RunContext>,
    /// Clock second at which a minted set (identity or role) rotates next;
    /// 0 while the minting key is not loaded (announced once it is).
    next_change: u64,
    role: RoleState,
}

/// The credentials of a role, by provider.
enum RoleState {
    /// No instance profile.
    None,
    /// Computed from the minting key when asked for.
    Minted,
    /// The configured keys, re-announced every half `window`.
    Static { last_updated: u64, window: u64 },
    /// Fetched; boxed, as most runs are minted.
    Sts(Box<StsRole>),
}

struct StsRole {
    provider: Arc<StsProvider>,
    /// Changes whenever the role is started anew; a fetch that finishes
    /// for an older epoch is dropped.
    epoch: u64,
    v1: StsSlot,
    v2: StsSlot,
}

/// One STS-fetched set and its retry state.
#[derive(Default)]
struct StsSlot {
    current: Option<RoleCredentials>,
    /// Consecutive failures since the last success.
    failures: u32,
    /// Clock seconds at which the next fetch is due.
    next_attempt: u64,
    in_flight: bool,
    /// The last failure, cleared by a success.
    error: Option<(String, String)>,
}

/// What [`Shared::render`] needs of a run, taken under the lock so the
/// minting happens outside it.
struct Plan {
    id: InstanceId,
    incarnation: u64,
    launch_time: u64,
    context: Arc<RunContext>,
    role: RolePlan,
}

enum RolePlan {
    None,
    Minted,
    /// Static and STS sets, as they are.
    Ready(Box<RoleSet>),
}

impl StsRole {
    /// The served sets: the fetched ones still valid, or why not.
    fn view(&self, role: &str, now: u64) -> RoleSet {
        let valid = |c: &Option<RoleCredentials>| c.clone().filter(|c| c.expiration > now);
        let (imdsv1, imdsv2) = (valid(&self.v1.current), valid(&self.v2.current));
        let slot_error = |slot: &StsSlot| slot.error.clone().unwrap_or_else(|| pending(role));
        let error = match (&imdsv1, &imdsv2) {
            (None, _) => Some(slot_error(&self.v1)),
            (_, None) => Some(slot_error(&self.v2)),
            _ => None,
        };
        RoleSet { imdsv1, imdsv2, error }
    }
}

/// Rotation period of minted sets.
fn period((lifetime, refresh_before): (u64, u64)) -> u64 {
    lifetime.saturating_sub(refresh_before).max(MIN_MINTED_ROTATION_SECS)
}

/// Issue time of the set in force at `now`: the latest `phase + k × period`
/// not after `now`.
fn issued_at(now: u64, period: u64, phase: u64) -> u64 {
    let period = period.max(1);
    // In u128: `period` comes from the config and may be near `u64::MAX`.
    let since = (u128::from(now % period) + u128::from(period - phase % period)) % u128::from(period);
    // Saturating: only a clock within one period of 1970 could underflow.
    now.saturating_sub(u64::try_from(since).unwrap_or(0))
}

#[cfg(test)]
mod schedule_tests {
    use super::*;

    #[test]
    fn issue_times_are_the_latest_phase_point_not_after_now() {
        for (now, period, phase) in
            [(100, 7, 3), (1_700_000_000, 18_000, 12_345_678_901), (5, 10, 7), (42, 1, 9)]
        {
            let t = issued_at(now, period, phase);
            assert!(t <= now && now - t < period, "{now} {period} {phase} -> {t}");
            assert!(t == 0 || t % period == phase % period, "{now} {period} {phase} -> {t}");
        }
        // Extremes of the config and of the clock do not overflow.
        assert_eq!(issued_at(u64::MAX, u64::MAX, u64::MAX - 1), u64::MAX - 1);
        assert_eq!(issued_at(3, u64::MAX, 10), 0);
        assert_eq!(period((10, 20)), MIN_MINTED_ROTATION_SECS);
    }
}

/// When a fetched set is replaced: `refresh_before` ahead of its expiry, but never
/// within `min_gap` seconds of its issue.
fn refresh_at(c: &RoleCredentials, refresh_before: u64, min_gap: u64) -> u64 {
    c.expiration.saturating_sub(refresh_before).max(c.last_updated.saturating_add(min_gap))
}

fn pending(role: &str) -> (String, String) {
    (
        ERROR_CODE_PENDING.to_owned(),
        format!("Credentials for the role {role} are being obtained. Retry in a few seconds."),
    )
}

fn unavailable(role: &str) -> (String, String) {
    (
        ERROR_CODE_UNAVAILABLE.to_owned(),
        format!("Credentials for the role {role} are temporarily unavailable. Retry later."),
    )
}

fn unauthorized(role: &str) -> (String, String) {
    (
        ERROR_CODE_UNAUTHORIZED.to_owned(),
        format!(
            "EC2 cannot assume the role {role}.  Please see documentation at \
             https://docs.aws.amazon.com/IAM/latest/UserGuide/id_roles_use_switch-role-ec2.html."
        ),
    )
}

/// A fetch to run outside the lock.
struct FetchJob {
    id: InstanceId,
    epoch: u64,
    delivery: RoleDelivery,
    provider: Arc<StsProvider>,
}

/// What one pass over the state found to do.
#[derive(Default)]
struct PassOutcome {
    changed: Vec<InstanceId>,
    fetches: Vec<FetchJob>,
    /// Earliest clock second at which something is due next.
    next_due: Option<u64>,
}

impl PassOutcome {
    fn due_at(&mut self, at: u64) {
        self.next_due = Some(self.next_due.map_or(at, |d| d.min(at)));
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing panics while holding the lock; a poisoned state is still
        // consistent, so keep serving.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Lifetime and refresh margin of identity credentials: those of the
    /// default provider when it is minted, else the minted defaults.
    fn identity_timing(&self) -> (u64, u64) {
        match self.config.default {
            ProviderConfig::Minted { lifetime_secs, refresh_before_secs } => {
                (lifetime_secs, refresh_before_secs)
            }
            _ => (DEFAULT_MINTED_LIFETIME_SECS, DEFAULT_MINTED_REFRESH_BEFORE_SECS),
        }
    }

    /// Lifetime and refresh margin of a minted role.
    fn minted_timing(&self, role: &str) -> Option<(u64, u64)> {
        match self.config.provider_for(role) {
            ProviderConfig::Minted { lifetime_secs, refresh_before_secs } => {
                Some((*lifetime_secs, *refresh_before_secs))
            }
            _ => None,
        }
    }

    fn sts_provider(&self, role: &str) -> Option<Arc<StsProvider>> {
        if self.config.roles.contains_key(role) {
            self.role_sts.get(role).cloned()
        } else {
            self.default_sts.clone()
        }
    }

    /// The role state of a new run or profile.
    fn new_role(&self, context: &RunContext, epoch: u64, now: u64) -> RoleState {
        let Some(profile) = &context.profile else { return RoleState::None };
        match self.config.provider_for(&profile.role_name) {
            ProviderConfig::Minted { .. } => RoleState::Minted,
            ProviderConfig::Static { expiration_secs, .. } => RoleState::Static {
                last_updated: now,
                window: expiration_secs.unwrap_or(DEFAULT_STATIC_WINDOW_SECS),
            },
            ProviderConfig::Sts { .. } => match self.sts_provider(&profile.role_name) {
                Some(provider) => RoleState::Sts(Box::new(StsRole {
                    provider,
                    epoch,
                    v1: StsSlot { next_attempt: now, ..StsSlot::default() },
                    v2: StsSlot { next_attempt: now, ..StsSlot::default() },
                })),
                // Unreachable: a client is built for every STS provider.
                // Serve the error document rather than panic.
                None => RoleState::Static { last_updated: 0, window: 0 },
            },
        }
    }

    /// When a minted set of the run rotates next, after `now`; 0 without
    /// the minting key.
    fn next_change(&self, t: &Tracked, now: u64) -> u64 {
        if self.key.get().is_none() {
            return 0;
        }
        let phase = t.launch_time;
        let next = |timing| {
            let p = period(timing);
            issued_at(now, p, phase).saturating_add(p)
        };
        let mut at = next(self.identity_timing());
        if matches!(t.role, RoleState::Minted)
            && let Some(timing) = self.minted_timing(t.context.role_name())
        {
            at = at.min(next(timing));
        }
        at
    }

    /// What `render` needs of a run (taken under the lock).
    fn plan(&self, id: &InstanceId, t: &Tracked, now: u64) -> Plan {
        let role_name = t.context.role_name();
        let role = match &t.role {
            RoleState::None => RolePlan::None,
            RoleState::Minted => RolePlan::Minted,
            RoleState::Static { last_updated, window } => {
                RolePlan::Ready(Box::new(self.static_view(role_name, *last_updated, *window, now)))
            }
            RoleState::Sts(s) => RolePlan::Ready(Box::new(s.view(role_name, now))),
        };
        Plan {
            id: id.clone(),
            incarnation: t.incarnation,
            launch_time: t.launch_time,
            context: Arc::clone(&t.context),
            role,
        }
    }

    /// Both sets of a static role: the configured keys.
    fn static_view(&self, role: &str, last_updated: u64, window: u64, now: u64) -> RoleSet {
        let creds = match self.config.provider_for(role) {
            ProviderConfig::Static { access_key_id, secret_access_key, session_token, .. } => {
                Some(RoleCredentials {
                    access_key_id: access_key_id.clone(),
                    secret_access_key: secret_access_key.clone(),
                    token: session_token.clone().unwrap_or_default(),
                    last_updated,
                    expiration: last_updated.saturating_add(window),
                })
            }
            _ => None,
        }
        .filter(|c| c.expiration > now);
        let error = creds.is_none().then(|| unavailable(role));
        RoleSet { imdsv1: creds.clone(), imdsv2: creds, error }
    }

    /// The sets in force at `now`, minted ones computed (outside the lock).
    fn render(&self, plan: Plan, now: u64) -> InstanceCredentials {
        let ctx = &plan.context;
        let role_name = ctx.role_name();
        let Some(key) = self.key.get() else {
            let role = match plan.role {
                RolePlan::None => None,
                RolePlan::Ready(set) => Some(*set),
                RolePlan::Minted => {
                    Some(RoleSet { imdsv1: None, imdsv2: None, error: Some(pending(role_name)) })
                }
            };
            return InstanceCredentials { role, identity: None };
        };
        let phase = plan.launch_time;
        let identity_principal =
            principal_arn(None, &ctx.owner_id, &ctx.region, IDENTITY_ROLE_NAME, &plan.id);
        let identity =
            self.mint(key, &plan, phase, SetKind::Identity, &identity_principal, self.identity_timing(), now);
        let role = match plan.role {
            RolePlan::None => None,
            RolePlan::Ready(set) => Some(*set),
            RolePlan::Minted => Some(match self.minted_timing(role_name) {
                Some(timing) => {
                    let profile_arn = ctx.profile.as_ref().map(|p| p.arn.as_str());
                    let principal =
                        principal_arn(profile_arn, &ctx.owner_id, &ctx.region, role_name, &plan.id);
                    let mint = |d| self.mint(key, &plan, phase, SetKind::Role(d), &principal, timing, now);
                    let (imdsv1, imdsv2) = (mint(RoleDelivery::V1), mint(RoleDelivery::V2));
                    let error = (imdsv1.is_none() || imdsv2.is_none()).then(|| unavailable(role_name));
                    RoleSet { imdsv1, imdsv2, error }
                }
                // Unreachable: a minted role has minted timing.
                None => RoleSet { imdsv1: None, imdsv2: None, error: Some(unavailable(role_name)) },
            }),
        };
        InstanceCredentials { role, identity }
    }

    /// The set of `kind` in force at `now`.
    #[allow(clippy::too_many_arguments)] // one call site, all plain values
    fn mint(
        &self,
        key: &MintingKey,
        plan: &Plan,
        phase: u64,
        kind: SetKind,
        principal_arn: &str,
        (lifetime, refresh_before): (u64, u64),
        now: u64,
    ) -> Option<RoleCredentials> {
        let issued = issued_at(now, period((lifetime, refresh_before)), phase);
        let profile = match kind {
            SetKind::Identity => None,
            SetKind::Role(_) => plan.context.profile.as_ref(),
        };
        let claims = Claims {
            instance_id: plan.id.as_str(),
            incarnation: plan.incarnation,
            kind,
            role_name: profile.map_or(IDENTITY_ROLE_NAME, |p| p.role_name.as_str()),
            profile_arn: profile.map_or("", |p| p.arn.as_str()),
            profile_id: profile.map_or("", |p| p.id.as_str()),
            principal_arn,
            issued,
            expiration: issued.saturating_add(lifetime),
        };
        let minted = key.mint_claims(&claims);
        if minted.is_none() {
            tracing::error!(instance = %plan.id, "cannot seal a minted session token");
        }
        minted
    }

    /// Backoff before retry number `failures` (1-based), with jitter.
    fn backoff_secs(&self, failures: u32) -> u64 {
        let exp = failures.saturating_sub(1).min(30);
        let base =
            self.options.retry_min_secs.max(1).saturating_mul(1u64 << exp).min(self.options.retry_max_secs);
        let mut r = [0u8; 1];
        let jitter = if fill_random(&mut r).is_ok() { base * u64::from(r[0]) / (5 * 255) } else { 0 };
        base.saturating_add(jitter)
    }

    /// One look at every tracked run, under the lock: rotations due,
    /// static re-announcements, STS expiries and fetches to start.
    fn pass(&self) -> PassOutcome {
        let now = self.clock.now_secs();
        let mut out = PassOutcome::default();
        let has_key = self.key.get().is_some();
        let mut state = self.lock();
        // Until the task sleeps again, every `track` wakes it: a run
        // tracked after this scan is seen by the next pass.
        state.worker_wakes_at = u64::MAX;
        state.contexts.retain(|c| Arc::strong_count(c) > 1);
        let mut due = Vec::new();
        for (id, t) in &mut state.instances {
            let mut changed = false;
            match &mut t.role {
                RoleState::Static { last_updated, window } => {
                    // Re-announce when half the window has passed.
                    if now >= last_updated.saturating_add(*window / 2) {
                        *last_updated = now;
                        changed = true;
                    }
                    out.due_at(last_updated.saturating_add(*window / 2));
                }
                RoleState::Sts(sts) => changed |= sts_pass(id, sts, now, &mut out),
                RoleState::None | RoleState::Minted => {}
            }
            if has_key {
                if now >= t.next_change {
                    due.push(id.clone());
                } else {
                    out.due_at(t.next_change);
                }
            }
            if changed {
                out.changed.push(id.clone());
            }
        }
        // The few runs whose minted sets rotated: their next rotation (one
        // HMAC each) and an announcement.
        for id in due {
            if let Some(t) = state.instances.get(&id) {
                let next = self.next_change(t, now);
                out.due_at(next);
                if let Some(t) = state.instances.get_mut(&id) {
                    t.next_change = next;
                }
            }
            if !out.changed.contains(&id) {
                out.changed.push(id);
            }
        }
        if !out.changed.is_empty() {
            tracing::debug!(instances = out.changed.len(), "credentials changed");
        }
        out
    }

    /// Loads the minting key unless loaded or a retry is not due yet;
    /// returns when to try again after a failure.
    async fn load_key(&self) -> Option<u64> {
        if self.key.get().is_some() {
            return None;
        }
        let now = self.clock.now_secs();
        let retry_at = self.lock().key_retry_at;
        if now < retry_at {
            return Some(retry_at);
        }
        match MintingKey::load_or_create(self.store.as_ref()).await {
            Ok(key) => {
                let _ = self.key.set(Arc::new(key));
                self.lock().key_failures = 0;
                tracing::info!("minting key loaded");
                None
            }
            Err(e) => {
                let mut state = self.lock();
                state.key_failures = state.key_failures.saturating_add(1);
                let delay = self.backoff_secs(state.key_failures);
                state.key_retry_at = self.clock.now_secs().saturating_add(delay);
                tracing::warn!(error = %e, retry_in_secs = delay,
                    "cannot load the minting key; minted credentials wait for it");
                Some(state.key_retry_at)
            }
        }
    }

    /// One round of background work; returns when it next has to look.
    async fn run_once(self: &Arc<Self>) -> Option<u64> {
        let key_retry = self.load_key().await;
        let outcome = self.pass();
        for job in outcome.fetches {
            let weak = Arc::downgrade(self);
            let clock = Arc::clone(&self.clock);
            tokio::spawn(fetch(weak, clock, job));
        }
        for id in outcome.changed {
            let _ = self.events.send(id);
        }
        match (outcome.next_due, key_retry) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Records the result of one STS call; returns whether what is served
    /// changed.
    fn finish_fetch(&self, job: &FetchJob, result: Result<RoleCredentials, FetchError>) -> bool {
        let now = self.clock.now_secs();
        let mut state = self.lock();
        let Some(t) = state.instances.get_mut(&job.id) else { return false };
        let role = t.context.role_name().to_owned();
        let RoleState::Sts(sts) = &mut t.role else { return false };
        if sts.epoch != job.epoch {
            return false;
        }
        let before = sts.view(&role, now);
        let slot = match job.delivery {
            RoleDelivery::V1 => &mut sts.v1,
            RoleDelivery::V2 => &mut sts.v2,
        };
        slot.in_flight = false;
        match result {
            Ok(creds) => {
                tracing::info!(instance = %job.id, delivery = job.delivery.as_str(),
                    access_key_id = %creds.access_key_id, expiration = creds.expiration,
                    "obtained STS credentials");
                slot.next_attempt =
                    refresh_at(&creds, sts.provider.refresh_before_secs, MIN_STS_ROTATION_SECS);
                slot.current = Some(creds);
                slot.failures = 0;
                slot.error = None;
            }
            Err(e) => {
                slot.failures = slot.failures.saturating_add(1);
                let delay = self.backoff_secs(slot.failures);
                slot.next_attempt = now.saturating_add(delay);
                let (error, detail) = match e {
                    FetchError::Refused { code, detail } => {
                        tracing::warn!(%code, "STS refused AssumeRole");
                        (unauthorized(&role), detail)
                    }
                    FetchError::Unavailable { detail } => (unavailable(&role), detail),
                };
                slot.error = Some(error);
                let serving = slot.current.is_some();
                if slot.failures == 1 || slot.failures.is_multiple_of(10) {
                    tracing::warn!(instance = %job.id, delivery = job.delivery.as_str(),
                        role_arn = sts.provider.role_arn(), failures = slot.failures, retry_in_secs = delay,
                        still_serving_last_set = serving, error = %detail, "AssumeRole failed");
                } else {
                    tracing::debug!(instance = %job.id, failures = slot.failures, error = %detail,
                        "AssumeRole failed again");
                }
            }
        }
        sts.view(&role, now) != before
    }
}

/// Expiries and due fetches of one STS role; returns whether what is
/// served changed.
fn sts_pass(id: &InstanceId, sts: &mut StsRole, now: u64, out: &mut PassOutcome) -> bool {
    let mut changed = false;
    for delivery in [RoleDelivery::V1, RoleDelivery::V2] {
        let slot = match delivery {
            RoleDelivery::V1 => &mut sts.v1,
            RoleDelivery::V2 => &mut sts.v2,
        };
        if slot.current.as_ref().is_some_and(|c| c.expiration <= now) {
            slot.current = None;
            changed = true;
            tracing::warn!(instance = %id, delivery = delivery.as_str(),
                "STS credentials expired without a successful refresh");
        }
        if let Some(c) = &slot.current {
            out.due_at(c.expiration);
        }
        if slot.in_flight {
            continue;
        }
        if now >= slot.next_attempt {
            slot.in_flight = true;
            out.fetches.push(FetchJob {
                id: id.clone(),
                epoch: sts.epoch,
                delivery,
                provider: Arc::clone(&sts.provider),
            });
        } else {
            out.due_at(slot.next_attempt);
        }
    }
    changed
}

/// One STS call, off the lock and off the request path.
async fn fetch(shared: Weak<Shared>, clock: Arc<dyn Clock>, job: FetchJob) {
    let session = format!("{}-{}", job.id, job.delivery.session_suffix());
    let result = job.provider.assume(&session, clock.now_secs()).await;
    let Some(shared) = shared.upgrade() else { return };
    if shared.finish_fetch(&job, result) {
        let _ = shared.events.send(job.id.clone());
    }
    shared.wake.notify_one();
}

/// The background task: a pass, then sleep until something is due (at most
/// one tick) or somebody wakes it.
async fn worker(shared: Arc<Shared>) {
    loop {
        let due = shared.run_once().await;
        let now_ms = shared.clock.now_millis();
        let sleep = due
            .map(|d| Duration::from_millis(d.saturating_mul(1000).saturating_sub(now_ms)))
            .map_or(shared.options.tick, |d| d.min(shared.options.tick))
            .max(MIN_SLEEP);
        let wakes_at = now_ms.saturating_add(u64::try_from(sleep.as_millis()).unwrap_or(u64::MAX)) / 1000;
        shared.lock().worker_wakes_at = wakes_at;
        tokio::select! {
            _ = tokio::time::sleep(sleep) => {}
            _ = shared.wake.notified() => {}
        }
    }
}
