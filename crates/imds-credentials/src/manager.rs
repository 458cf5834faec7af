//! [`CredentialManager`]: the credentials of every tracked instance run,
//! obtained and refreshed by a background task, never on the request path.
//!
//! It owns, per instance run, the identity credentials (always minted) and
//! the two role credential sets (IMDSv1 and IMDSv2 deliveries), their
//! refresh schedule, the retries of a failing provider, and the store
//! records of minted sets (`secrets/minted/<AKID>`). It does not render
//! documents (the data plane does) and does not decide which instances to
//! serve (the agent calls [`CredentialManager::track`] and
//! [`CredentialManager::untrack`]).
//!
//! # Timing
//!
//! All decisions (is a set due for refresh, has it expired, is a retry due)
//! read the injected [`Clock`]. A background task wakes at the next due
//! time, at most every [`ManagerOptions::tick`], and whenever `track` or a
//! finished STS call asks it to. Tests move a `ManualClock` and never sleep
//! for expiry.
//!
//! # Failure
//!
//! A failing provider never blocks anything: `track`, `untrack` and
//! `current` are synchronous and only read memory. An STS set that cannot
//! be refreshed keeps being served until it expires; the fetch is retried
//! with exponential backoff (plus up to 20 % jitter). A failing store
//! delays only the persistence of minted records, which is retried in order.
//!
//! # Lifetimes of minted records
//!
//! A rotated set stays valid (and in the store) until its own expiry, as on
//! EC2, so clients holding it keep working until they refresh; its record
//! is deleted by the first refresh transaction after it expired. A new
//! instance run, a changed instance profile and `untrack` revoke the old
//! sets at once (their records are deleted). A manager that starts deletes
//! expired records of every host, and the still-valid records its
//! predecessor on this host left behind once they expire.

use crate::config::{CredentialsConfig, DEFAULT_MINTED_LIFETIME_SECS, DEFAULT_MINTED_REFRESH_BEFORE_SECS};
use crate::config::{DEFAULT_STATIC_WINDOW_SECS, ProviderConfig};
use crate::mint::{fill_random, mint};
use crate::record::{
    IDENTITY_ROLE_NAME, MINTED_PREFIX, MintedRecord, RoleDelivery, minted_key, principal_arn,
};
use crate::sts::{FetchError, StsProvider};
use imds_core::{Clock, IamInstanceProfile, InstanceId, InstanceRecord, RoleCredentials};
use imds_store::records::decode;
use imds_store::{Op, Store};
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
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
/// EC2's code for a role it cannot assume (credentials.md §3.1).
pub const ERROR_CODE_UNAUTHORIZED: &str = "AssumeRoleUnauthorizedAccess";

/// An STS set is never replaced sooner than this after it was issued: STS
/// may grant less than the duration asked for (a role's maximum session),
/// and refreshing `refresh_before` ahead of such an expiry would otherwise
/// call STS in a loop.
const MIN_STS_ROTATION_SECS: u64 = 60;
/// A minted set lives at least this long. Minted lifetimes are ours and
/// validated (`refresh_before < lifetime`), so no storm is possible; short
/// settings are honoured (tests rotate every second).
const MIN_MINTED_ROTATION_SECS: u64 = 1;
/// Shortest pause of the background task, whatever is due.
const MIN_SLEEP: Duration = Duration::from_millis(10);
/// Deletes per transaction when sweeping old records.
const SWEEP_BATCH: usize = 128;

/// What the data plane serves for one instance run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceCredentials {
    /// The role's credentials; `None` without an instance profile.
    pub role: Option<RoleSet>,
    /// `identity-credentials/ec2/security-credentials/ec2-instance`
    /// (always minted); `None` only if the system RNG failed.
    pub identity: Option<RoleCredentials>,
}

/// The two credential sets of a role, or why one is missing.
///
/// A `None` set is served as the error document of credentials.md §3.1
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
    /// First retry delay after a failed fetch or store write (default 1 s).
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
    /// expiry): the receiver re-renders them from [`CredentialManager::current`].
    /// Changes made by `track` itself are returned by it, not announced.
    ///
    /// `config` should have been validated (deserialising it does that).
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
            state: Mutex::new(State::default()),
            events,
            wake: Notify::new(),
            flush_lock: tokio::sync::Mutex::new(()),
        });
        let worker = tokio::spawn(worker(Arc::clone(&shared))).abort_handle();
        (Self { shared, worker }, receiver)
    }

    /// Starts or updates the tracking of an instance run and returns what is
    /// current, at once: it never waits for a provider or the store.
    ///
    /// The same run (incarnation) with the same instance profile keeps its
    /// credentials. A new incarnation gets all new credentials; a changed
    /// profile gets new role credentials. Minted sets are served at once
    /// and persisted in the background right after; an STS role is served
    /// as the error document ([`ERROR_CODE_PENDING`]) until its first fetch
    /// finishes.
    pub fn track(&self, record: &InstanceRecord) -> InstanceCredentials {
        let shared = &self.shared;
        let now = shared.clock.now_secs();
        let mut state = shared.lock();
        let id = &record.instance_id;
        let keep_identity = match state.instances.get(id) {
            Some(t) if t.incarnation == record.incarnation && t.profile == record.iam_instance_profile => {
                return t.view(now);
            }
            Some(t) => t.incarnation == record.incarnation,
            None => false,
        };
        let old = state.instances.remove(id);
        let mut ops = Vec::new();
        let mut identity = MintedSlot::default();
        if let Some(old) = old {
            if keep_identity {
                identity = old.identity;
            } else {
                old.identity.revoke(&mut ops);
            }
            if let Some(role) = old.role {
                role.revoke(&mut ops);
            }
        }
        state.next_epoch += 1;
        let mut tracked = Tracked {
            epoch: state.next_epoch,
            incarnation: record.incarnation,
            profile: record.iam_instance_profile.clone(),
            owner_id: record.owner_id.clone(),
            region: record.placement.region.clone(),
            identity,
            role: None,
        };
        if tracked.identity.current.is_none() {
            let (lifetime, _) = shared.identity_timing();
            let meta = tracked.identity_meta(id);
            tracked.identity.replace(shared, &meta, now, lifetime, &mut ops);
        }
        if let Some(profile) = &record.iam_instance_profile {
            tracked.role = Some(shared.new_role(&tracked, id, profile, now, &mut ops));
        }
        let view = tracked.view(now);
        tracing::debug!(instance = %id, epoch = tracked.epoch, "tracking credentials");
        state.instances.insert(id.clone(), tracked);
        if !ops.is_empty() {
            state.writes.push_back(ops);
        }
        drop(state);
        shared.wake.notify_one();
        view
    }

    /// Stops tracking an instance run and revokes its minted sets (their
    /// records are deleted in the background).
    pub fn untrack(&self, id: &InstanceId) {
        let mut state = self.shared.lock();
        let Some(old) = state.instances.remove(id) else { return };
        let mut ops = Vec::new();
        old.identity.revoke(&mut ops);
        if let Some(role) = old.role {
            role.revoke(&mut ops);
        }
        if !ops.is_empty() {
            state.writes.push_back(ops);
        }
        drop(state);
        tracing::debug!(instance = %id, "untracked credentials");
        self.shared.wake.notify_one();
    }

    /// What is current for a tracked instance run (expired sets left out).
    pub fn current(&self, id: &InstanceId) -> Option<InstanceCredentials> {
        let now = self.shared.clock.now_secs();
        self.shared.lock().instances.get(id).map(|t| t.view(now))
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
            Some(RoleState::Sts { v1, v2, .. }) => Some((v1.failures, v2.failures)),
            _ => None,
        }
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
    /// Never held across an `.await`.
    state: Mutex<State>,
    events: mpsc::UnboundedSender<InstanceId>,
    wake: Notify,
    /// Serialises store writes so batches land in queue order.
    flush_lock: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct State {
    instances: HashMap<InstanceId, Tracked>,
    /// Store transactions not yet applied, in order.
    writes: VecDeque<Vec<Op>>,
    write_failures: u32,
    /// Clock seconds before which no write is retried.
    write_retry_at: u64,
    /// Valid records of a previous manager on this host, deleted at expiry.
    orphans: Vec<Expiring>,
    /// Whether the start-up sweep of old records is done.
    swept: bool,
    next_epoch: u64,
}

/// A record that must be deleted once it expired.
#[derive(Debug, Clone)]
struct Expiring {
    access_key_id: String,
    expiration: u64,
}

/// One tracked instance run.
struct Tracked {
    /// Changes whenever the credentials are started anew; a fetch that
    /// finishes for an older epoch is dropped.
    epoch: u64,
    incarnation: u64,
    profile: Option<IamInstanceProfile>,
    owner_id: String,
    region: String,
    identity: MintedSlot,
    role: Option<RoleState>,
}

/// Who a minted set belongs to, for its store record.
struct RecordMeta {
    instance_id: InstanceId,
    role_name: String,
    delivery: Option<RoleDelivery>,
    principal_arn: String,
}

impl Tracked {
    fn role_name(&self) -> &str {
        self.profile.as_ref().map_or("", |p| p.role_name.as_str())
    }

    fn identity_meta(&self, id: &InstanceId) -> RecordMeta {
        RecordMeta {
            instance_id: id.clone(),
            role_name: IDENTITY_ROLE_NAME.to_owned(),
            delivery: None,
            principal_arn: principal_arn(None, &self.owner_id, &self.region, IDENTITY_ROLE_NAME, id),
        }
    }

    fn role_meta(&self, id: &InstanceId, delivery: RoleDelivery) -> RecordMeta {
        let profile_arn = self.profile.as_ref().map(|p| p.arn.as_str());
        RecordMeta {
            instance_id: id.clone(),
            role_name: self.role_name().to_owned(),
            delivery: Some(delivery),
            principal_arn: principal_arn(profile_arn, &self.owner_id, &self.region, self.role_name(), id),
        }
    }

    fn view(&self, now: u64) -> InstanceCredentials {
        InstanceCredentials {
            role: self.role.as_ref().map(|r| r.view(self.role_name(), now)),
            identity: self.identity.current.clone().filter(|c| c.expiration > now),
        }
    }
}

/// A minted set and the still-valid sets it replaced.
#[derive(Default)]
struct MintedSlot {
    current: Option<RoleCredentials>,
    superseded: Vec<Expiring>,
}

impl MintedSlot {
    /// Mints a new current set (the old one is superseded, or deleted if it
    /// expired) and queues its record; false if the RNG failed.
    fn replace(
        &mut self,
        shared: &Shared,
        meta: &RecordMeta,
        now: u64,
        lifetime: u64,
        ops: &mut Vec<Op>,
    ) -> bool {
        let new = match mint(now, lifetime) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(instance = %meta.instance_id, error = %e, "cannot mint credentials");
                return false;
            }
        };
        let record = MintedRecord {
            access_key_id: new.access_key_id.clone(),
            secret_access_key: new.secret_access_key.clone(),
            session_token: new.token.clone(),
            expiration: new.expiration,
            instance_id: meta.instance_id.clone(),
            role_name: meta.role_name.clone(),
            role_delivery: meta.delivery,
            principal_arn: meta.principal_arn.clone(),
            host_id: shared.host_id.clone(),
        };
        match serde_json::to_vec(&record) {
            Ok(value) => ops.push(Op::put(minted_key(&record.access_key_id), value)),
            // Cannot happen for this plain struct; never log the record.
            Err(_) => tracing::error!(instance = %meta.instance_id, "cannot encode a minted record"),
        }
        if let Some(old) = self.current.replace(new) {
            let old = Expiring { access_key_id: old.access_key_id, expiration: old.expiration };
            if old.expiration > now {
                self.superseded.push(old);
            } else {
                ops.push(Op::delete(minted_key(&old.access_key_id)));
            }
        }
        true
    }

    /// Queues deletes of superseded sets that expired.
    fn drop_expired(&mut self, now: u64, ops: &mut Vec<Op>) {
        self.superseded.retain(|e| {
            let keep = e.expiration > now;
            if !keep {
                ops.push(Op::delete(minted_key(&e.access_key_id)));
            }
            keep
        });
    }

    /// Queues deletes of every record of this slot.
    fn revoke(self, ops: &mut Vec<Op>) {
        let current = self.current.map(|c| c.access_key_id);
        for akid in current.into_iter().chain(self.superseded.into_iter().map(|e| e.access_key_id)) {
            ops.push(Op::delete(minted_key(&akid)));
        }
    }

    fn access_key_ids(&self) -> impl Iterator<Item = &str> {
        self.current
            .iter()
            .map(|c| c.access_key_id.as_str())
            .chain(self.superseded.iter().map(|e| e.access_key_id.as_str()))
    }

    /// Brings the slot up to date; returns whether the current set changed
    /// and the next time it needs a look.
    fn refresh(
        &mut self,
        shared: &Shared,
        meta: &RecordMeta,
        now: u64,
        (lifetime, refresh_before): (u64, u64),
        ops: &mut Vec<Op>,
    ) -> (bool, u64) {
        self.drop_expired(now, ops);
        let due = self
            .current
            .as_ref()
            .is_none_or(|c| now >= refresh_at(c, refresh_before, MIN_MINTED_ROTATION_SECS));
        let changed = due && self.replace(shared, meta, now, lifetime, ops);
        let next = self
            .current
            .as_ref()
            .map(|c| refresh_at(c, refresh_before, MIN_MINTED_ROTATION_SECS))
            .into_iter()
            .chain(self.superseded.iter().map(|e| e.expiration))
            .min()
            // Only after an RNG failure: try again soon.
            .unwrap_or(now.saturating_add(shared.options.retry_min_secs));
        (changed, next)
    }
}

/// When a set is replaced: `refresh_before` ahead of its expiry, but never
/// within `min_gap` seconds of its issue.
fn refresh_at(c: &RoleCredentials, refresh_before: u64, min_gap: u64) -> u64 {
    c.expiration.saturating_sub(refresh_before).max(c.last_updated.saturating_add(min_gap))
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

/// The credentials of a role, by provider.
enum RoleState {
    Minted { lifetime: u64, refresh_before: u64, v1: MintedSlot, v2: MintedSlot },
    Static { creds: RoleCredentials, window: u64 },
    Sts { provider: Arc<StsProvider>, v1: StsSlot, v2: StsSlot },
}

impl RoleState {
    fn view(&self, role: &str, now: u64) -> RoleSet {
        let valid = |c: &Option<RoleCredentials>| c.clone().filter(|c| c.expiration > now);
        match self {
            Self::Minted { v1, v2, .. } => {
                let (imdsv1, imdsv2) = (valid(&v1.current), valid(&v2.current));
                let error = (imdsv1.is_none() || imdsv2.is_none()).then(|| unavailable(role));
                RoleSet { imdsv1, imdsv2, error }
            }
            Self::Static { creds, .. } => {
                let c = Some(creds.clone()).filter(|c| c.expiration > now);
                let error = c.is_none().then(|| unavailable(role));
                RoleSet { imdsv1: c.clone(), imdsv2: c, error }
            }
            Self::Sts { v1, v2, .. } => {
                let (imdsv1, imdsv2) = (valid(&v1.current), valid(&v2.current));
                let slot_error = |slot: &StsSlot| slot.error.clone().unwrap_or_else(|| pending(role));
                let error = match (&imdsv1, &imdsv2) {
                    (None, _) => Some(slot_error(v1)),
                    (_, None) => Some(slot_error(v2)),
                    _ => None,
                };
                RoleSet { imdsv1, imdsv2, error }
            }
        }
    }

    fn revoke(self, ops: &mut Vec<Op>) {
        if let Self::Minted { v1, v2, .. } = self {
            v1.revoke(ops);
            v2.revoke(ops);
        }
    }
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

    fn sts_provider(&self, role: &str) -> Option<Arc<StsProvider>> {
        if self.config.roles.contains_key(role) {
            self.role_sts.get(role).cloned()
        } else {
            self.default_sts.clone()
        }
    }

    /// The role state of a new run or profile, with minted sets issued.
    fn new_role(
        &self,
        tracked: &Tracked,
        id: &InstanceId,
        profile: &IamInstanceProfile,
        now: u64,
        ops: &mut Vec<Op>,
    ) -> RoleState {
        match self.config.provider_for(&profile.role_name) {
            ProviderConfig::Minted { lifetime_secs, refresh_before_secs } => {
                let (mut v1, mut v2) = (MintedSlot::default(), MintedSlot::default());
                v1.replace(self, &tracked.role_meta(id, RoleDelivery::V1), now, *lifetime_secs, ops);
                v2.replace(self, &tracked.role_meta(id, RoleDelivery::V2), now, *lifetime_secs, ops);
                RoleState::Minted { lifetime: *lifetime_secs, refresh_before: *refresh_before_secs, v1, v2 }
            }
            ProviderConfig::Static { access_key_id, secret_access_key, session_token, expiration_secs } => {
                let window = expiration_secs.unwrap_or(DEFAULT_STATIC_WINDOW_SECS);
                let creds = RoleCredentials {
                    access_key_id: access_key_id.clone(),
                    secret_access_key: secret_access_key.clone(),
                    token: session_token.clone().unwrap_or_default(),
                    last_updated: now,
                    expiration: now.saturating_add(window),
                };
                RoleState::Static { creds, window }
            }
            ProviderConfig::Sts { .. } => match self.sts_provider(&profile.role_name) {
                Some(provider) => RoleState::Sts {
                    provider,
                    v1: StsSlot { next_attempt: now, ..StsSlot::default() },
                    v2: StsSlot { next_attempt: now, ..StsSlot::default() },
                },
                // Unreachable: a client is built for every STS provider.
                // Serve the error document rather than panic.
                None => RoleState::Static {
                    creds: RoleCredentials {
                        access_key_id: String::new(),
                        secret_access_key: String::new(),
                        token: String::new(),
                        last_updated: now,
                        expiration: now,
                    },
                    window: 0,
                },
            },
        }
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

    /// One look at every tracked run, under the lock: rotate, re-announce,
    /// expire, schedule fetches, queue store writes.
    fn pass(&self) -> PassOutcome {
        let now = self.clock.now_secs();
        let mut out = PassOutcome::default();
        let identity_timing = self.identity_timing();
        let mut state = self.lock();
        let mut batches = Vec::new();
        for (id, t) in &mut state.instances {
            let mut ops = Vec::new();
            let mut changed = false;
            let meta = t.identity_meta(id);
            let (c, next) = t.identity.refresh(self, &meta, now, identity_timing, &mut ops);
            changed |= c;
            out.due_at(next);
            let metas = (t.role_meta(id, RoleDelivery::V1), t.role_meta(id, RoleDelivery::V2));
            match &mut t.role {
                None => {}
                Some(RoleState::Minted { lifetime, refresh_before, v1, v2 }) => {
                    for (slot, meta) in [(v1, &metas.0), (v2, &metas.1)] {
                        let (c, next) = slot.refresh(self, meta, now, (*lifetime, *refresh_before), &mut ops);
                        changed |= c;
                        out.due_at(next);
                    }
                }
                Some(RoleState::Static { creds, window }) => {
                    // Re-announce when half the window has passed.
                    let at = creds.last_updated.saturating_add(*window / 2);
                    if now >= at {
                        creds.last_updated = now;
                        creds.expiration = now.saturating_add(*window);
                        changed = true;
                    }
                    out.due_at(creds.last_updated.saturating_add(*window / 2));
                }
                Some(RoleState::Sts { provider, v1, v2 }) => {
                    for (slot, delivery) in [(v1, RoleDelivery::V1), (v2, RoleDelivery::V2)] {
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
                                epoch: t.epoch,
                                delivery,
                                provider: Arc::clone(provider),
                            });
                        } else {
                            out.due_at(slot.next_attempt);
                        }
                    }
                }
            }
            if changed {
                out.changed.push(id.clone());
            }
            if !ops.is_empty() {
                batches.push(ops);
            }
        }
        let mut orphan_deletes = Vec::new();
        state.orphans.retain(|e| {
            let keep = e.expiration > now;
            if !keep {
                orphan_deletes.push(Op::delete(minted_key(&e.access_key_id)));
            }
            keep
        });
        if let Some(first) = state.orphans.iter().map(|e| e.expiration).min() {
            out.due_at(first);
        }
        batches.extend(chunks(orphan_deletes));
        state.writes.extend(batches);
        if !state.writes.is_empty() {
            out.due_at(state.write_retry_at);
        }
        if !out.changed.is_empty() {
            tracing::info!(instances = out.changed.len(), "rotated credentials");
        }
        out
    }

    /// Applies queued store writes in order; stops at the first failure and
    /// schedules a retry.
    async fn flush(&self) {
        let _serial = self.flush_lock.lock().await;
        loop {
            let batch = {
                let state = self.lock();
                if self.clock.now_secs() < state.write_retry_at {
                    return;
                }
                match state.writes.front() {
                    Some(ops) => ops.clone(),
                    None => return,
                }
            };
            let result = self.store.txn(Vec::new(), batch).await;
            let mut state = self.lock();
            match result {
                Ok(_) => {
                    state.writes.pop_front();
                    state.write_failures = 0;
                }
                Err(e) => {
                    state.write_failures = state.write_failures.saturating_add(1);
                    let delay = self.backoff_secs(state.write_failures);
                    state.write_retry_at = self.clock.now_secs().saturating_add(delay);
                    tracing::warn!(error = %e, pending = state.writes.len(), retry_in_secs = delay,
                        "cannot persist minted credentials; will retry");
                    return;
                }
            }
        }
    }

    /// Once per manager: deletes expired minted records (of any host) and
    /// schedules the deletion of this host's records that no tracked run
    /// holds (left by a previous process) for when they expire.
    async fn sweep(&self) -> bool {
        let (kvs, _) = match self.store.list(MINTED_PREFIX).await {
            Ok(listed) => listed,
            Err(e) => {
                tracing::warn!(error = %e, "cannot list minted credentials; will retry");
                return false;
            }
        };
        let now = self.clock.now_secs();
        let mut state = self.lock();
        let live: HashSet<&str> = state
            .instances
            .values()
            .flat_map(|t| {
                let role: Vec<&str> = match &t.role {
                    Some(RoleState::Minted { v1, v2, .. }) => {
                        v1.access_key_ids().chain(v2.access_key_ids()).collect()
                    }
                    _ => Vec::new(),
                };
                t.identity.access_key_ids().chain(role)
            })
            .collect();
        let mut deletes = Vec::new();
        let mut orphans = Vec::new();
        for kv in &kvs {
            let record: MintedRecord = match decode(&kv.key, &kv.value) {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(error = %e, "undecodable minted credentials record left alone");
                    continue;
                }
            };
            if !record.is_valid_at(now) {
                deletes.push(Op::delete(kv.key.clone()));
            } else if record.host_id == self.host_id && !live.contains(record.access_key_id.as_str()) {
                orphans.push(Expiring { access_key_id: record.access_key_id, expiration: record.expiration });
            }
        }
        tracing::info!(expired = deletes.len(), previous = orphans.len(), "swept minted credentials");
        state.orphans.extend(orphans);
        state.writes.extend(chunks(deletes));
        state.swept = true;
        true
    }

    /// One round of background work; returns when it next has to look.
    async fn run_once(self: &Arc<Self>) -> Option<u64> {
        if !self.lock().swept && !self.sweep().await {
            let retry = self.clock.now_secs().saturating_add(self.options.retry_min_secs.max(1));
            let outcome = self.run_pass().await;
            return Some(outcome.map_or(retry, |d| d.min(retry)));
        }
        self.run_pass().await
    }

    async fn run_pass(self: &Arc<Self>) -> Option<u64> {
        let outcome = self.pass();
        for job in outcome.fetches {
            let weak = Arc::downgrade(self);
            let clock = Arc::clone(&self.clock);
            tokio::spawn(fetch(weak, clock, job));
        }
        self.flush().await;
        // Announce after the records were (if possible) written, so a guest
        // rarely meets a key the control plane does not know yet.
        for id in outcome.changed {
            let _ = self.events.send(id);
        }
        let write_due = {
            let state = self.lock();
            (!state.writes.is_empty()).then_some(state.write_retry_at)
        };
        match (outcome.next_due, write_due) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Records the result of one STS call; returns whether what is served
    /// changed.
    fn finish_fetch(&self, job: &FetchJob, result: Result<RoleCredentials, FetchError>) -> bool {
        let now = self.clock.now_secs();
        let mut state = self.lock();
        let Some(t) = state.instances.get_mut(&job.id).filter(|t| t.epoch == job.epoch) else {
            return false;
        };
        let role = t.role_name().to_owned();
        let before = t.view(now);
        let Some(RoleState::Sts { provider, v1, v2 }) = &mut t.role else { return false };
        let slot = match job.delivery {
            RoleDelivery::V1 => v1,
            RoleDelivery::V2 => v2,
        };
        slot.in_flight = false;
        match result {
            Ok(creds) => {
                tracing::info!(instance = %job.id, delivery = job.delivery.as_str(),
                    access_key_id = %creds.access_key_id, expiration = creds.expiration,
                    "obtained STS credentials");
                slot.next_attempt = refresh_at(&creds, provider.refresh_before_secs, MIN_STS_ROTATION_SECS);
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
                        role_arn = provider.role_arn(), failures = slot.failures, retry_in_secs = delay,
                        still_serving_last_set = serving, error = %detail, "AssumeRole failed");
                } else {
                    tracing::debug!(instance = %job.id, failures = slot.failures, error = %detail,
                        "AssumeRole failed again");
                }
            }
        }
        t.view(now) != before
    }
}

/// Splits deletes into transactions of bounded size.
fn chunks(ops: Vec<Op>) -> Vec<Vec<Op>> {
    let mut out = Vec::new();
    let mut iter = ops.into_iter().peekable();
    while iter.peek().is_some() {
        out.push(iter.by_ref().take(SWEEP_BATCH).collect());
    }
    out
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
        tokio::select! {
            _ = tokio::time::sleep(sleep) => {}
            _ = shared.wake.notified() => {}
        }
    }
}
