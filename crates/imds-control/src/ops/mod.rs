//! Store-level operations of the control plane, independent of any wire
//! format: read instances with their `pending`/`applied` state, launch
//! instances (address allocation, idempotency), change instances with
//! compare-and-set, and keep the account settings, images and key pairs.
//! Both the EC2 Query front end and a Lightsail front end call these.
//!
//! Keys this module owns (besides `instances/` and `status/`, whose layout
//! is `imds_store::records`):
//!
//! | key | value |
//! | --- | --- |
//! | `addresses/<ip or cidr>` | id of the instance holding that address (allocation index) |
//! | `client-tokens/<token>` | [`launch::TokenRecord`]: the reservation a `ClientToken` created |
//! | `settings/account-defaults` | [`settings::AccountDefaults`] (ModifyInstanceMetadataDefaults) |
//! | `images/<ami-id>` | [`settings::ImageRecord`] |
//! | `image-names/<name>` | the `ami-` id using that name (uniqueness index) |
//! | `key-pairs/<name>` | [`settings::KeyPairRecord`] |
//! | `lightsail-names/<name>` | id of the live instance Lightsail knows by that name ([`names`]) |
//!
//! Every change is one store transaction guarded by the revisions it was
//! computed from, so a failed or conflicting request never leaves a partial
//! write. Validation of request *syntax* and authorisation belong to the
//! front ends, which hand in closures that run between reading and writing.

pub mod addresses;
pub mod launch;
pub mod names;
pub mod settings;

use crate::ids::RandomError;
use imds_core::{Clock, InstanceId, InstanceRecord, InstanceState};
use imds_store::records::{self, InstanceStatus};
use imds_store::{Compare, Op, Revision, Store, StoreError};
use ipnet::{Ipv4Net, Ipv6Net};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// How often a compare-and-set is retried when another writer got there
/// first before the request is answered with a retryable error.
pub const CAS_ATTEMPTS: usize = 8;

/// Why a store-level operation failed, independent of the protocol that
/// reports it.
#[derive(Debug, thiserror::Error)]
pub enum OpError {
    /// Well-formed ids that do not exist (or are terminated where that
    /// counts as gone).
    #[error("instances not found: {0:?}")]
    InstanceNotFound(Vec<String>),
    /// The instance's state does not allow the operation; the message is
    /// the client-visible text.
    #[error("{0}")]
    IncorrectInstanceState(String),
    /// A requested address belongs to another live instance.
    #[error("address {0} is in use")]
    AddressInUse(String),
    /// Not enough free addresses in the subnet (by id).
    #[error("not enough free addresses in {0}")]
    InsufficientAddresses(String),
    /// A value the client gave is invalid; the message is client-visible.
    #[error("{0}")]
    InvalidValue(String),
    /// Parameters that cannot be combined; the message is client-visible.
    #[error("{0}")]
    InvalidCombination(String),
    /// A tag key that cannot be exposed in instance metadata while
    /// `InstanceMetadataTags` is enabled.
    #[error("tag key {0:?} is not valid in instance metadata")]
    ImdsTagKey(String),
    /// More than 50 user tags on one resource.
    #[error("tag limit exceeded")]
    TagLimitExceeded,
    /// An image id that is not registered.
    #[error("image {0} not found")]
    ImageNotFound(String),
    /// An image name already used by another image.
    #[error("image name {name} is used by {existing}")]
    ImageNameDuplicate {
        /// The requested name.
        name: String,
        /// The image that has it.
        existing: String,
    },
    /// A key pair name that does not exist.
    #[error("key pair {0} not found")]
    KeyPairNotFound(String),
    /// A key pair name that already exists.
    #[error("key pair {0} exists")]
    KeyPairDuplicate(String),
    /// Lightsail instance names held by live instances.
    #[error("names in use: {0:?}")]
    NameInUse(Vec<String>),
    /// A `ClientToken` reused with different parameters.
    #[error("client token reused with other parameters")]
    IdempotentMismatch,
    /// The account enforces `HttpTokens=required`.
    #[error("HttpTokens=required is enforced")]
    HttpTokensEnforced,
    /// Valid input this emulation does not implement.
    #[error("{0}")]
    Unsupported(String),
    /// Other writers kept changing the same records.
    #[error("too much contention")]
    Contention,
    /// Fleet mode: no host agent is alive to place an instance on.
    #[error("no live host to place instances on")]
    NoLiveHost,
    /// Fleet mode: a `HostId` that no live host agent has registered.
    #[error("host {0} not found")]
    HostNotFound(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The random generator failed.
    #[error("random generator failed")]
    Random,
}

impl From<RandomError> for OpError {
    fn from(_: RandomError) -> Self {
        Self::Random
    }
}

/// Whether the data plane serves an instance's latest spec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OptionsState {
    /// The serving agent has not reported the latest generation yet.
    Pending,
    /// The serving agent serves the latest generation.
    Applied,
}

impl OptionsState {
    /// The wire spelling (`pending` / `applied`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Applied => "applied",
        }
    }

    /// `applied` iff the agent observed at least `generation`.
    pub fn of(generation: u64, status: Option<&InstanceStatus>) -> Self {
        match status {
            Some(s) if s.observed_generation >= generation => Self::Applied,
            _ => Self::Pending,
        }
    }
}

/// An instance as stored, with its revision and whether it is applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceView {
    /// The spec.
    pub record: InstanceRecord,
    /// Its `mod_revision` (for compare-and-set).
    pub revision: Revision,
    /// Whether the serving agent has observed its generation.
    pub options_state: OptionsState,
}

/// One instance changed by [`Ops::update`]: before and after.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The spec that was read.
    pub before: InstanceRecord,
    /// The spec that was written (equal to `before` when nothing changed;
    /// its generation is one more than `before`'s otherwise).
    pub after: InstanceRecord,
}

/// Which stored instances an operation may address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Visibility {
    /// Terminated instances count as existing (Describe, Stop, Start,
    /// Terminate report on them).
    IncludeTerminated,
    /// Terminated instances count as not found (modifications).
    LiveOnly,
}

/// Where the control plane allocates from and whom it acts for.
#[derive(Debug, Clone)]
pub struct OpsConfig {
    /// `us-east-1`.
    pub region: String,
    /// The account that owns everything (12 digits).
    pub account_id: String,
    /// IPv4 pool for instances launched without an address.
    pub subnet_v4: Ipv4Net,
    /// IPv6 pool for `Ipv6AddressCount`, if any.
    pub subnet_v6: Option<Ipv6Net>,
    /// Whether launches are placed on live hosts (fleet mode) or keep the
    /// `Placement.HostId` they were given (one host).
    pub host_assignment: launch::HostAssignment,
}

/// The store-level operations, shared by every protocol front end.
pub struct Ops {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    config: OpsConfig,
}

impl std::fmt::Debug for Ops {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ops").field("config", &self.config).finish_non_exhaustive()
    }
}

/// Drops repeated ids, keeping the first occurrence.
pub fn dedup_ids(ids: &[InstanceId]) -> Vec<InstanceId> {
    let mut seen = HashSet::new();
    ids.iter().filter(|id| seen.insert((*id).clone())).cloned().collect()
}

impl Ops {
    /// Operations over `store`.
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>, config: OpsConfig) -> Self {
        Self { store, clock, config }
    }

    /// The store.
    pub fn store(&self) -> &dyn Store {
        self.store.as_ref()
    }

    /// The clock.
    pub fn clock(&self) -> &dyn Clock {
        self.clock.as_ref()
    }

    /// Region, account and address pools.
    pub fn config(&self) -> &OpsConfig {
        &self.config
    }

    /// Every instance (terminated ones included) with its state, in id order.
    pub async fn list(&self) -> Result<Vec<InstanceView>, OpError> {
        let (records, _) = records::list_instances(self.store()).await?;
        let (statuses, _) = records::list_statuses(self.store()).await?;
        let statuses: HashMap<InstanceId, InstanceStatus> = statuses.into_iter().collect();
        Ok(records
            .into_iter()
            .map(|(record, revision)| {
                let options_state = OptionsState::of(record.generation, statuses.get(&record.instance_id));
                InstanceView { record, revision, options_state }
            })
            .collect())
    }

    /// The given instances (deduplicated, in request order), or
    /// [`OpError::InstanceNotFound`] naming every missing one.
    pub async fn get_many(
        &self,
        ids: &[InstanceId],
        visibility: Visibility,
    ) -> Result<Vec<InstanceView>, OpError> {
        let mut found = Vec::new();
        let mut missing = Vec::new();
        for id in dedup_ids(ids) {
            match records::get_instance(self.store(), &id).await? {
                Some((record, _))
                    if visibility == Visibility::LiveOnly && record.state == InstanceState::Terminated =>
                {
                    missing.push(id.to_string())
                }
                Some((record, revision)) => {
                    let status = records::get_status(self.store(), &id).await?.map(|(s, _)| s);
                    let options_state = OptionsState::of(record.generation, status.as_ref());
                    found.push(InstanceView { record, revision, options_state });
                }
                None => missing.push(id.to_string()),
            }
        }
        if missing.is_empty() { Ok(found) } else { Err(OpError::InstanceNotFound(missing)) }
    }

    /// One instance with its state.
    pub async fn get(&self, id: &InstanceId, visibility: Visibility) -> Result<InstanceView, OpError> {
        let mut views = self.get_many(std::slice::from_ref(id), visibility).await?;
        views.pop().ok_or_else(|| OpError::InstanceNotFound(vec![id.to_string()]))
    }

    /// Changes instances atomically: reads them (not found → error before
    /// `plan` runs), lets `plan` compute the new specs from the current
    /// views (validation, authorisation and DryRun belong in `plan`; it may
    /// run again after a conflict), then writes every changed spec in one
    /// transaction guarded by the revisions read, with the generation
    /// bumped. An instance that becomes terminated releases its addresses
    /// (and its Lightsail name) in the same transaction. Returns one [`Change`] per distinct id.
    pub async fn update<E, F>(
        &self,
        ids: &[InstanceId],
        visibility: Visibility,
        mut plan: F,
    ) -> Result<Vec<Change>, E>
    where
        E: From<OpError>,
        F: FnMut(&[InstanceView]) -> Result<Vec<InstanceRecord>, E>,
    {
        for _ in 0..CAS_ATTEMPTS {
            let views = self.get_many(ids, visibility).await?;
            let planned = plan(&views)?;
            let mut changes = Vec::with_capacity(views.len());
            let mut compares = Vec::new();
            let mut ops = Vec::new();
            for (view, mut after) in views.iter().zip(planned) {
                let before = &view.record;
                after.instance_id = before.instance_id.clone();
                after.generation = before.generation;
                if &after != before {
                    after.generation = before.generation + 1;
                    let key = records::instance_key(&before.instance_id);
                    let value = serde_json::to_vec(&after)
                        .map_err(|e| OpError::Store(StoreError::Backend(e.to_string())))?;
                    compares.push(Compare::ModRevision(key.clone(), view.revision));
                    ops.push(Op::put(key, value));
                    if after.state == InstanceState::Terminated && before.state != InstanceState::Terminated {
                        let (c, o) = addresses::release(self.store(), before).await.map_err(OpError::from)?;
                        compares.extend(c);
                        ops.extend(o);
                        let (c, o) = names::release(self.store(), before).await.map_err(OpError::from)?;
                        compares.extend(c);
                        ops.extend(o);
                    }
                }
                changes.push(Change { before: before.clone(), after });
            }
            if ops.is_empty() || self.store.txn(compares, ops).await.map_err(OpError::from)?.is_some() {
                return Ok(changes);
            }
            tracing::debug!("instance changed concurrently; retrying");
        }
        Err(OpError::Contention.into())
    }
}

#[cfg(test)]
pub(crate) mod testing {
    use super::*;
    use imds_core::ManualClock;
    use imds_store::MemoryStore;

    /// Ops over a fresh memory store at a fixed time.
    pub fn ops() -> (Ops, Arc<MemoryStore>, ManualClock) {
        let store = Arc::new(MemoryStore::new());
        let clock = ManualClock::new(1_700_000_000_000);
        let config = OpsConfig {
            region: "us-east-1".into(),
            account_id: "123456789012".into(),
            subnet_v4: "10.0.0.0/24".parse().unwrap(),
            subnet_v6: Some("2001:db8::/64".parse().unwrap()),
            host_assignment: launch::HostAssignment::None,
        };
        (Ops::new(store.clone(), Arc::new(clock.clone()), config), store, clock)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use imds_core::sample::sample_instance;
    use std::net::Ipv4Addr;

    fn id(s: &str) -> InstanceId {
        InstanceId::parse(s).unwrap()
    }

    async fn put(store: &dyn Store, rec: &InstanceRecord) {
        records::put_instance_if(store, rec, None).await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn state_is_applied_once_the_agent_observed_the_generation() {
        let (ops, store, _) = testing::ops();
        let a = sample_instance(id("i-1234abcd"), Ipv4Addr::new(10, 0, 0, 5), None);
        put(store.as_ref(), &a).await;
        assert_eq!(ops.list().await.unwrap()[0].options_state, OptionsState::Pending);
        let status = InstanceStatus { observed_generation: 1, host_id: "h-1".into(), applied_at_millis: 0 };
        records::put_status(store.as_ref(), &a.instance_id, &status).await.unwrap();
        assert_eq!(
            ops.get(&a.instance_id, Visibility::LiveOnly).await.unwrap().options_state,
            OptionsState::Applied
        );
    }

    #[tokio::test]
    async fn update_bumps_generation_only_on_change_and_reports_missing_ids() {
        let (ops, store, _) = testing::ops();
        let a = sample_instance(id("i-1234abcd"), Ipv4Addr::new(10, 0, 0, 5), None);
        put(store.as_ref(), &a).await;
        let (_, rev0) = store.list("").await.unwrap();
        let same: Vec<Change> = ops
            .update::<OpError, _>(std::slice::from_ref(&a.instance_id), Visibility::LiveOnly, |v| {
                Ok(vec![v[0].record.clone()])
            })
            .await
            .unwrap();
        assert_eq!(same[0].after.generation, 1);
        assert_eq!(store.list("").await.unwrap().1, rev0, "a no-op writes nothing");
        let changed = ops
            .update::<OpError, _>(
                &[a.instance_id.clone(), a.instance_id.clone()],
                Visibility::LiveOnly,
                |v| {
                    let mut r = v[0].record.clone();
                    r.instance_type = "t3.micro".into();
                    Ok(vec![r])
                },
            )
            .await
            .unwrap();
        assert_eq!(changed.len(), 1);
        assert_eq!(changed[0].after.generation, 2);
        let err = ops
            .update::<OpError, _>(
                &[a.instance_id.clone(), id("i-0000ffff")],
                Visibility::LiveOnly,
                |_| unreachable!(),
            )
            .await
            .unwrap_err();
        assert!(matches!(err, OpError::InstanceNotFound(ids) if ids == ["i-0000ffff"]));
    }

    #[tokio::test]
    async fn concurrent_writers_both_land() {
        let (ops, store, _) = testing::ops();
        let ops = Arc::new(ops);
        let a = sample_instance(id("i-1234abcd"), Ipv4Addr::new(10, 0, 0, 5), None);
        put(store.as_ref(), &a).await;
        let tasks: Vec<_> = (0..4)
            .map(|i| {
                let ops = Arc::clone(&ops);
                let target = a.instance_id.clone();
                tokio::spawn(async move {
                    ops.update::<OpError, _>(&[target], Visibility::LiveOnly, |v| {
                        let mut r = v[0].record.clone();
                        r.tags.insert(format!("k{i}"), "v".into());
                        Ok(vec![r])
                    })
                    .await
                    .unwrap();
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        let view = ops.get(&a.instance_id, Visibility::LiveOnly).await.unwrap();
        assert_eq!(view.record.generation, 5);
        assert!((0..4).all(|i| view.record.tags.contains_key(&format!("k{i}"))));
    }
}
