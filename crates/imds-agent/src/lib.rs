//! The host agent: keeps a data plane in step with the store.
//!
//! It lists the instances placed on its host, renders each into an
//! immutable snapshot and swaps it into the [`DataPlane`], then follows the
//! store's watch stream from the list revision. After a snapshot is in force
//! it writes the instance's `observed_generation`, which is how the control
//! plane's `pending` becomes `applied`. A lost or compacted watch is answered
//! by listing again. It owns no API parsing and no HTTP.

pub mod credentials;

use credentials::{CredentialPolicy, mint};
use imds_core::{Clock, InstanceId, InstanceRecord, RoleCredentials};
use imds_dataplane::tree::RenderInputs;
use imds_dataplane::{DataPlane, InstanceSnapshot, SnapshotChange};
use imds_store::records::{self, InstanceStatus};
use imds_store::{Op, Store, StoreError, WatchEvent, WatchMessage};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Which instances this agent serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placement {
    /// Every instance (the all-in-one `imdsd serve`).
    All,
    /// Only instances whose `Placement.HostId` is this host.
    Host(String),
}

/// Agent settings.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// This host's id, written into status records.
    pub host_id: String,
    /// Which instances to serve.
    pub placement: Placement,
    /// Lifetime and refresh of minted credentials.
    pub credentials: CredentialPolicy,
    /// How often credentials are checked for refresh.
    pub refresh_interval: Duration,
}

/// The agent failed in a way it cannot retry.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Randomness failed.
    #[error(transparent)]
    Random(#[from] credentials::RandomError),
}

/// Credentials served for one instance run.
#[derive(Debug, Clone)]
struct InstanceCredentials {
    incarnation: u64,
    role: Option<(RoleCredentials, RoleCredentials)>,
    identity: RoleCredentials,
}

/// Reconciles a data plane with the store.
pub struct Agent {
    store: Arc<dyn Store>,
    dp: Arc<DataPlane>,
    clock: Arc<dyn Clock>,
    cfg: AgentConfig,
    /// The records in force, by instance.
    served: HashMap<InstanceId, InstanceRecord>,
    creds: HashMap<InstanceId, InstanceCredentials>,
    /// Revision of a sync not yet followed by a watch (set by [`Agent::sync`]).
    synced_at: Option<u64>,
}

impl Agent {
    /// An agent that has not synced yet.
    pub fn new(store: Arc<dyn Store>, dp: Arc<DataPlane>, clock: Arc<dyn Clock>, cfg: AgentConfig) -> Self {
        Self { store, dp, clock, cfg, served: HashMap::new(), creds: HashMap::new(), synced_at: None }
    }

    /// Lists the store and brings the data plane in line; returns the
    /// revision the next watch starts after.
    pub async fn sync(&mut self) -> Result<u64, AgentError> {
        let (records, revision) = records::list_instances(self.store.as_ref()).await?;
        let mut seen = std::collections::HashSet::new();
        let mut changes = Vec::new();
        let mut acks = Vec::new();
        for (record, _) in records {
            seen.insert(record.instance_id.clone());
            self.reconcile(record, &mut changes, &mut acks)?;
        }
        let gone: Vec<InstanceId> = self.served.keys().filter(|id| !seen.contains(*id)).cloned().collect();
        for id in gone {
            self.forget(&id, &mut changes);
        }
        self.dp.apply(changes);
        self.ack(acks).await?;
        tracing::info!(instances = self.served.len(), revision, "synced with the store");
        self.synced_at = Some(revision);
        Ok(revision)
    }

    /// Runs until `shutdown` turns true: sync (unless [`Agent::sync`] was
    /// just called), then follow changes.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) -> Result<(), AgentError> {
        let mut refresh = tokio::time::interval(self.cfg.refresh_interval);
        refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        'relist: loop {
            let synced = match self.synced_at.take() {
                Some(r) => Ok(r),
                None => self.sync().await,
            };
            let revision = match synced {
                Ok(r) => r,
                Err(AgentError::Store(e)) => {
                    tracing::warn!(error = %e, "sync failed; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(1)) => continue 'relist,
                        _ = imds_dataplane::server::stopped(&mut shutdown) => return Ok(()),
                    }
                }
                Err(e) => return Err(e),
            };
            let mut rx = match self.store.watch(records::INSTANCES_PREFIX, revision + 1).await {
                Ok(rx) => rx,
                Err(e) => {
                    tracing::warn!(error = %e, "watch failed; relisting");
                    continue 'relist;
                }
            };
            loop {
                tokio::select! {
                    msg = rx.recv() => match msg {
                        Some(WatchMessage::Events { events, .. }) => self.on_events(events).await?,
                        Some(WatchMessage::Compacted { compact_revision }) => {
                            tracing::info!(compact_revision, "watch compacted; relisting");
                            continue 'relist;
                        }
                        None => {
                            tracing::warn!("watch ended; relisting");
                            continue 'relist;
                        }
                    },
                    _ = refresh.tick() => self.refresh_credentials().await?,
                    _ = imds_dataplane::server::stopped(&mut shutdown) => return Ok(()),
                }
            }
        }
    }

    async fn on_events(&mut self, events: Vec<WatchEvent>) -> Result<(), AgentError> {
        let mut changes = Vec::new();
        let mut acks = Vec::new();
        for event in events {
            match event {
                WatchEvent::Put(kv) => match serde_json::from_slice::<InstanceRecord>(&kv.value) {
                    Ok(record) => self.reconcile(record, &mut changes, &mut acks)?,
                    Err(e) => {
                        tracing::error!(key = %kv.key, error = %e, "undecodable instance record skipped")
                    }
                },
                WatchEvent::Delete { key, .. } => {
                    if let Some(id) =
                        key.strip_prefix(records::INSTANCES_PREFIX).and_then(|s| InstanceId::parse(s).ok())
                    {
                        self.forget(&id, &mut changes);
                    }
                }
            }
        }
        self.dp.apply(changes);
        self.ack(acks).await
    }

    fn placed_here(&self, record: &InstanceRecord) -> bool {
        match &self.cfg.placement {
            Placement::All => true,
            Placement::Host(h) => record.placement.host_id.as_deref() == Some(h.as_str()),
        }
    }

    /// Renders `record` if this host serves it, or removes it if no longer.
    fn reconcile(
        &mut self,
        record: InstanceRecord,
        changes: &mut Vec<SnapshotChange>,
        acks: &mut Vec<(InstanceId, u64)>,
    ) -> Result<(), AgentError> {
        let id = record.instance_id.clone();
        if !self.placed_here(&record) {
            self.forget(&id, changes);
            return Ok(());
        }
        if self.served.get(&id).is_some_and(|r| r == &record) {
            return Ok(());
        }
        acks.push((id.clone(), record.generation));
        if !record.state.is_served() {
            // A stopped instance is not served; its latest spec is still
            // acknowledged, so changes made while stopped show `applied`.
            self.forget(&id, changes);
            self.served.insert(id, record);
            return Ok(());
        }
        let creds = self.credentials_for(&record)?;
        changes.push(SnapshotChange::Upsert(Arc::new(self.render(&record, &creds))));
        self.creds.insert(id.clone(), creds);
        self.served.insert(id, record);
        Ok(())
    }

    fn forget(&mut self, id: &InstanceId, changes: &mut Vec<SnapshotChange>) {
        self.served.remove(id);
        self.creds.remove(id);
        changes.push(SnapshotChange::Remove(id.clone()));
    }

    fn render(&self, record: &InstanceRecord, creds: &InstanceCredentials) -> InstanceSnapshot {
        let inputs = RenderInputs {
            role_credentials_v1: creds.role.as_ref().map(|(v1, _)| v1),
            role_credentials_v2: creds.role.as_ref().map(|(_, v2)| v2),
            identity_credentials: Some(&creds.identity),
            now_secs: self.clock.now_secs(),
        };
        InstanceSnapshot::render(record, &inputs)
    }

    /// Reuses the credentials of the running incarnation while they are
    /// fresh; a new start or a role change gets new ones.
    fn credentials_for(&self, record: &InstanceRecord) -> Result<InstanceCredentials, AgentError> {
        let now = self.clock.now_secs();
        let policy = &self.cfg.credentials;
        let previous = self.creds.get(&record.instance_id).filter(|c| c.incarnation == record.incarnation);
        let fresh = |c: &RoleCredentials| !policy.needs_refresh(c, now);
        let identity = match previous.map(|p| &p.identity).filter(|c| fresh(c)) {
            Some(c) => c.clone(),
            None => mint(now, policy)?,
        };
        let role_unchanged = self
            .served
            .get(&record.instance_id)
            .is_some_and(|r| r.iam_instance_profile == record.iam_instance_profile);
        let role = match (&record.iam_instance_profile, previous.and_then(|p| p.role.as_ref())) {
            (None, _) => None,
            (Some(_), Some((v1, v2))) if role_unchanged && fresh(v1) && fresh(v2) => {
                Some((v1.clone(), v2.clone()))
            }
            (Some(_), _) => Some((mint(now, policy)?, mint(now, policy)?)),
        };
        Ok(InstanceCredentials { incarnation: record.incarnation, role, identity })
    }

    /// Replaces credentials that are about to expire.
    async fn refresh_credentials(&mut self) -> Result<(), AgentError> {
        let now = self.clock.now_secs();
        let policy = self.cfg.credentials;
        let stale: Vec<InstanceId> = self
            .creds
            .iter()
            .filter(|(_, c)| {
                policy.needs_refresh(&c.identity, now)
                    || c.role
                        .as_ref()
                        .is_some_and(|(a, b)| policy.needs_refresh(a, now) || policy.needs_refresh(b, now))
            })
            .map(|(id, _)| id.clone())
            .collect();
        let mut changes = Vec::new();
        for id in stale {
            let Some(record) = self.served.get(&id).cloned() else { continue };
            let creds = self.credentials_for(&record)?;
            changes.push(SnapshotChange::Upsert(Arc::new(self.render(&record, &creds))));
            self.creds.insert(id, creds);
        }
        if !changes.is_empty() {
            tracing::info!(instances = changes.len(), "rotated role credentials");
            self.dp.apply(changes);
        }
        Ok(())
    }

    /// Records that this host now serves these generations.
    async fn ack(&self, acks: Vec<(InstanceId, u64)>) -> Result<(), AgentError> {
        if acks.is_empty() {
            return Ok(());
        }
        let now = self.clock.now_millis();
        let ops = acks
            .into_iter()
            .map(|(id, generation)| {
                let status = InstanceStatus {
                    observed_generation: generation,
                    host_id: self.cfg.host_id.clone(),
                    applied_at_millis: now,
                };
                serde_json::to_vec(&status).map(|v| Op::put(records::status_key(&id), v))
            })
            .collect::<Result<Vec<Op>, _>>()
            .map_err(|e| StoreError::Backend(format!("cannot encode a status: {e}")))?;
        self.store.txn(Vec::new(), ops).await?;
        Ok(())
    }
}
