//! The host agent: keeps a data plane in step with the store.
//!
//! It lists the instances placed on its host, makes each into an immutable
//! snapshot (which renders its metadata tree on its first request) and
//! swaps it into the [`DataPlane`], then follows the
//! store's watch stream from the list revision. After a snapshot is in force
//! it writes the instance's `observed_generation`, which is how the control
//! plane's `pending` becomes `applied`. A lost or compacted watch is answered
//! by listing again. It owns no API parsing and no HTTP.

pub mod metrics;
pub mod token_keys;

use imds_core::events::InstanceEvent;
use imds_core::{Clock, InstanceId, InstanceRecord};

use imds_credentials::{CredentialManager, CredentialsConfig, InstanceCredentials};
use imds_dataplane::{DataPlane, InstanceSnapshot, SnapshotChange, SnapshotCredentials, SnapshotSource};
use imds_identity::RegionSigner;
use imds_store::records::{self, InstanceStatus};
use imds_store::{Compare, Op, Store, StoreError, WatchEvent, WatchMessage};
use std::collections::{BTreeMap, HashMap};
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
    /// Role credential providers (minted by default).
    pub credentials: CredentialsConfig,
    /// A new token key is made when the current one is this old; tokens
    /// sealed with older keys stay valid until they expire.
    pub token_key_rotation: Duration,
    /// Where the agent reports.
    pub metrics: metrics::AgentMetrics,
}

/// The agent failed in a way it cannot retry.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The token key ring could not be loaded or rotated.
    #[error(transparent)]
    TokenKeys(#[from] token_keys::TokenKeyError),
    /// Identity signing keys could not be created or read.
    #[error("identity signing keys: {0}")]
    Identity(String),
}

/// Reconciles a data plane with the store.
pub struct Agent {
    store: Arc<dyn Store>,
    dp: Arc<DataPlane>,
    clock: Arc<dyn Clock>,
    cfg: AgentConfig,
    /// The records in force, by instance; the same `Arc` the instance's
    /// snapshot holds, so each record is in memory once.
    served: HashMap<InstanceId, Arc<InstanceRecord>>,
    /// Credentials of the served instances, refreshed in the background.
    credentials: CredentialManager,
    /// Instances whose credentials changed (rotation, first STS fetch).
    credential_changes: tokio::sync::mpsc::UnboundedReceiver<InstanceId>,
    /// Events by instance and event id.
    events: HashMap<InstanceId, BTreeMap<String, InstanceEvent>>,
    /// Identity signers by region.
    signers: HashMap<String, Arc<RegionSigner>>,
    /// Time (Unix seconds) event phases were last judged at.
    rendered_at: u64,
    /// Revisions of a sync (instances, events) not yet followed by a watch.
    synced_at: Option<(u64, u64)>,
    /// Acknowledgements of the last sync, written by [`Agent::run`].
    unacked: Vec<Ack>,
}

impl Agent {
    /// An agent that has not synced yet.
    pub fn new(store: Arc<dyn Store>, dp: Arc<DataPlane>, clock: Arc<dyn Clock>, cfg: AgentConfig) -> Self {
        let (credentials, credential_changes) = CredentialManager::new(
            Arc::clone(&store),
            Arc::clone(&clock),
            cfg.credentials.clone(),
            cfg.host_id.clone(),
        );
        Self {
            store,
            dp,
            clock,
            cfg,
            served: HashMap::new(),
            credentials,
            credential_changes,
            events: HashMap::new(),
            signers: HashMap::new(),
            rendered_at: 0,
            synced_at: None,
            unacked: Vec::new(),
        }
    }

    /// Lists the store and brings the data plane in line; returns the
    /// revision the next watch starts after. The statuses of what it applied
    /// are written when [`Agent::run`] starts.
    pub async fn sync(&mut self) -> Result<(u64, u64), AgentError> {
        // Raw values are decoded one at a time below (as `list_instances`
        // would, failing the same way): holding every decoded record and
        // every raw value at once would be the peak of a large fleet's start.
        let (kvs, revision) = self.store.list(records::INSTANCES_PREFIX).await?;
        let (events, events_revision) = records::list_events(self.store.as_ref()).await?;
        self.events.clear();
        for e in events {
            self.events.entry(e.instance_id.clone()).or_default().insert(e.event_id.clone(), e);
        }
        // Events and keys may have changed while we were not watching: make
        // every snapshot afresh. Records that did not change keep their `Arc`,
        // so a relist does not hold two copies of each while the data plane
        // still serves the old snapshots.
        let previous = std::mem::take(&mut self.served);
        self.signers.clear();
        let ring =
            token_keys::load_or_create(self.store.as_ref(), &self.cfg.host_id, self.clock.now_millis())
                .await?;
        self.dp.set_keys(ring);
        // Minted credentials need the fleet's minting key (read once).
        self.credentials.ready().await?;
        let mut seen = std::collections::HashSet::new();
        let mut changes = Vec::new();
        let mut acks = Vec::new();
        for kv in kvs {
            let record = records::decode_instance(&kv.key, &kv.value)?;
            let mod_revision = kv.mod_revision;
            drop(kv);
            self.ensure_signers(vec![record.placement.region.clone()]).await?;
            seen.insert(record.instance_id.clone());
            let record = match previous.get(&record.instance_id) {
                Some(old) if **old == record => Arc::clone(old),
                _ => Arc::new(record),
            };
            self.reconcile(record, mod_revision, &mut changes, &mut acks)?;
        }
        // Instances deleted while the agent was not watching.
        let gone: Vec<InstanceId> = previous.into_keys().filter(|id| !seen.contains(id)).collect();
        for id in gone {
            self.forget(&id, &mut changes);
        }
        self.dp.apply(changes);
        // Written by `run` (first thing after a sync): what is served does
        // not wait for the status writes, which at 100k instances are one
        // large transaction.
        self.unacked = acks;
        tracing::info!(instances = self.served.len(), revision, events_revision, "synced with the store");
        self.synced_at = Some((revision, events_revision));
        Ok((revision, events_revision))
    }

    /// Runs until `shutdown` turns true: sync (unless [`Agent::sync`] was
    /// just called), then follow changes to instances and events.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) -> Result<(), AgentError> {
        let mut rotation = tokio::time::interval(self.cfg.token_key_rotation.min(Duration::from_secs(60)));
        rotation.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        'relist: loop {
            let synced = match self.synced_at.take() {
                Some(r) => Ok(r),
                None => {
                    self.cfg.metrics.relists.inc();
                    self.sync().await
                }
            };
            let synced = match synced {
                Ok(r) => self.ack_synced().await.map(|()| r),
                Err(e) => Err(e),
            };
            let (revision, events_revision) = match synced {
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
            let watches = async {
                let instances = self.store.watch(records::INSTANCES_PREFIX, revision + 1).await?;
                let events = self.store.watch(records::EVENTS_PREFIX, events_revision + 1).await?;
                // Keys are loaded lazily during sync; any later change is a rotation.
                let signers = self
                    .store
                    .watch(records::IDENTITY_KEYS_PREFIX, revision.max(events_revision) + 1)
                    .await?;
                let tokens = self
                    .store
                    .watch(&records::token_keys_key(&self.cfg.host_id), revision.max(events_revision) + 1)
                    .await?;
                Ok::<_, StoreError>((instances, events, signers, tokens))
            };
            let (mut instances_rx, mut events_rx, mut signers_rx, mut tokens_rx) = match watches.await {
                Ok(w) => w,
                Err(e) => {
                    tracing::warn!(error = %e, "watch failed; relisting");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue 'relist;
                }
            };
            loop {
                let wake = self.next_event_change();
                tokio::select! {
                    msg = instances_rx.recv() => match msg {
                        Some(WatchMessage::Events { revision, events }) => {
                            let received = std::time::Instant::now();
                            let count = events.len() as u64;
                            if let Err(e) = self.on_instance_changes(events).await {
                                // A failed ack (etcd member lost mid-write) must not end
                                // the agent: relisting renders and acks everything again.
                                self.pause_after(e, &mut shutdown).await?;
                                continue 'relist;
                            }
                            let m = &self.cfg.metrics;
                            m.apply_seconds.observe(received.elapsed().as_secs_f64());
                            m.applied_revision.set(i64::try_from(revision).unwrap_or(i64::MAX));
                            m.instance_changes.inc_by(count);
                        }
                        Some(WatchMessage::Compacted { compact_revision }) => {
                            tracing::info!(compact_revision, "instance watch compacted; relisting");
                            continue 'relist;
                        }
                        None => {
                            tracing::warn!("instance watch ended; relisting");
                            continue 'relist;
                        }
                    },
                    msg = events_rx.recv() => match msg {
                        Some(WatchMessage::Events { events, .. }) => self.on_event_changes(events),
                        Some(WatchMessage::Compacted { compact_revision }) => {
                            tracing::info!(compact_revision, "event watch compacted; relisting");
                            continue 'relist;
                        }
                        None => {
                            tracing::warn!("event watch ended; relisting");
                            continue 'relist;
                        }
                    },
                    msg = signers_rx.recv() => match msg {
                        Some(WatchMessage::Events { events, .. }) => {
                            if let Err(e) = self.on_signer_changes(events).await {
                                self.pause_after(e, &mut shutdown).await?;
                                continue 'relist;
                            }
                        }
                        Some(WatchMessage::Compacted { .. }) | None => continue 'relist,
                    },
                    msg = tokens_rx.recv() => match msg {
                        Some(WatchMessage::Events { events, .. }) => self.on_token_key_changes(events),
                        Some(WatchMessage::Compacted { .. }) | None => continue 'relist,
                    },
                    _ = rotation.tick() => {
                        if let Err(e) = self.rotate_token_keys_if_due().await {
                            self.pause_after(e, &mut shutdown).await?;
                            continue 'relist;
                        }
                    }
                    _ = sleep_until_unix(wake, self.clock.as_ref()) => self.rerender_due_events(),
                    Some(id) = self.credential_changes.recv() => {
                        let mut ids = std::collections::BTreeSet::new();
                        ids.insert(id);
                        self.rerender(ids);
                    }
                    _ = imds_dataplane::server::stopped(&mut shutdown) => return Ok(()),
                }
            }
        }
    }

    /// After a failure while following the store: a store error (etcd member
    /// lost, a write's outcome unknown) is logged and followed by a short
    /// pause, after which the caller relists; any other error ends the
    /// agent. `Ok` also when shutdown was asked for during the pause (the
    /// relist then sees it).
    async fn pause_after(
        &mut self,
        error: AgentError,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<(), AgentError> {
        let e = match error {
            AgentError::Store(e) | AgentError::TokenKeys(token_keys::TokenKeyError::Store(e)) => e,
            other => return Err(other),
        };
        tracing::warn!(error = %e, "store operation failed while following changes; relisting");
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            _ = imds_dataplane::server::stopped(shutdown) => {}
        }
        Ok(())
    }

    /// Loads (or creates, once per store) the identity signer of every region
    /// not loaded yet. Creating one takes about half a second (DSA
    /// parameters), so it runs on a blocking thread.
    async fn ensure_signers(&mut self, regions: Vec<String>) -> Result<(), AgentError> {
        for region in regions {
            if self.signers.contains_key(&region) {
                continue;
            }
            let signer = load_or_create_signer(self.store.as_ref(), &region).await?;
            self.signers.insert(region, Arc::new(signer));
        }
        Ok(())
    }

    /// A region's signing keys changed (rotation): reload and re-render.
    async fn on_signer_changes(&mut self, changes: Vec<WatchEvent>) -> Result<(), AgentError> {
        let changed: Vec<String> = changes
            .iter()
            .filter_map(|c| c.key().strip_prefix(records::IDENTITY_KEYS_PREFIX).map(str::to_owned))
            .collect();
        let mut before = HashMap::new();
        for region in &changed {
            if let Some(old) = self.signers.remove(region) {
                before.insert(region.clone(), old.certificate_pem());
            }
        }
        self.ensure_signers(changed.clone()).await?;
        // The watch also delivers the key this agent itself created for a
        // new region during `sync` (moments earlier): same certificate,
        // nothing to re-render. Re-rendering a whole fleet for it doubled
        // the start-up work and fragmented the heap (bench/README §2).
        let regions: Vec<String> = changed
            .into_iter()
            .filter(|r| {
                let now = self.signers.get(r).map(|s| s.certificate_pem());
                now.is_none() || before.get(r) != now.as_ref()
            })
            .collect();
        if regions.is_empty() {
            return Ok(());
        }
        let ids = self
            .served
            .values()
            .filter(|r| regions.contains(&r.placement.region))
            .map(|r| r.instance_id.clone())
            .collect();
        self.rerender(ids);
        tracing::info!(?regions, "identity signing keys reloaded");
        Ok(())
    }

    /// The host's token key ring changed in the store (rotation here, by
    /// command, or by another process of the same host): serve it.
    fn on_token_key_changes(&mut self, changes: Vec<WatchEvent>) {
        let key = records::token_keys_key(&self.cfg.host_id);
        for change in changes {
            // The watch is on a prefix: `h-1` must not pick up `h-10`'s keys.
            if let WatchEvent::Put(kv) = change
                && kv.key == key
            {
                match token_keys::decode(&kv.value) {
                    Ok(ring) => {
                        tracing::info!(key_id = ring.current_key_id(), "token keys loaded");
                        self.dp.set_keys(ring);
                    }
                    Err(e) => tracing::error!(error = %e, "ignoring an unreadable token key ring"),
                }
            }
        }
    }

    /// Makes a new token key when the current one is older than the period.
    async fn rotate_token_keys_if_due(&mut self) -> Result<(), AgentError> {
        let now = self.clock.now_millis();
        let period = u64::try_from(self.cfg.token_key_rotation.as_millis()).unwrap_or(u64::MAX);
        let due = |ring: &imds_token::KeyRing| now.saturating_sub(ring.current_created_millis()) >= period;
        if due(&self.dp.keys()) {
            // The watch delivers the written ring to every process of this host.
            token_keys::rotate_if(self.store.as_ref(), &self.cfg.host_id, now, due).await?;
        }
        Ok(())
    }

    /// Applies changes to events and renders the instances they belong to.
    fn on_event_changes(&mut self, changes: Vec<WatchEvent>) {
        let mut touched = std::collections::BTreeSet::new();
        for change in changes {
            match change {
                WatchEvent::Put(kv) => match records::decode::<InstanceEvent>(&kv.key, &kv.value) {
                    Ok(e) => {
                        touched.insert(e.instance_id.clone());
                        self.events.entry(e.instance_id.clone()).or_default().insert(e.event_id.clone(), e);
                    }
                    Err(e) => tracing::error!(error = %e, "undecodable event skipped"),
                },
                WatchEvent::Delete { key, .. } => {
                    let parts = key.strip_prefix(records::EVENTS_PREFIX).and_then(|k| k.split_once('/'));
                    if let Some((id, event_id)) =
                        parts.and_then(|(i, e)| Some((InstanceId::parse(i).ok()?, e)))
                    {
                        if let Some(list) = self.events.get_mut(&id) {
                            list.remove(event_id);
                        }
                        touched.insert(id);
                    }
                }
            }
        }
        self.rerender(touched);
    }

    /// The earliest time (Unix seconds) at which an event changes phase.
    fn next_event_change(&self) -> Option<u64> {
        let now = self.clock.now_secs();
        self.events.values().flat_map(|m| m.values()).filter_map(|e| e.next_change_after(now)).min()
    }

    /// Renders the instances whose events changed phase by now.
    fn rerender_due_events(&mut self) {
        let now = self.clock.now_secs();
        let last = self.rendered_at;
        let due: std::collections::BTreeSet<InstanceId> = self
            .events
            .iter()
            .filter(|(_, m)| m.values().any(|e| e.next_change_after(last).is_some_and(|t| t <= now)))
            .map(|(id, _)| id.clone())
            .collect();
        self.rendered_at = now;
        self.rerender(due);
    }

    /// Re-renders served instances (credentials and record unchanged).
    fn rerender(&mut self, ids: std::collections::BTreeSet<InstanceId>) {
        let mut changes = Vec::new();
        for id in ids {
            let (Some(record), Some(creds)) = (self.served.get(&id), self.credentials.current(&id)) else {
                continue;
            };
            if record.state.is_served() {
                changes.push(SnapshotChange::Upsert(Arc::new(self.snapshot(record, creds))));
            }
        }
        if !changes.is_empty() {
            self.dp.apply(changes);
        }
    }

    async fn on_instance_changes(&mut self, events: Vec<WatchEvent>) -> Result<(), AgentError> {
        let mut changes = Vec::new();
        let mut acks = Vec::new();
        let regions: Vec<String> = events
            .iter()
            .filter_map(|e| match e {
                WatchEvent::Put(kv) => serde_json::from_slice::<InstanceRecord>(&kv.value).ok(),
                WatchEvent::Delete { .. } => None,
            })
            .map(|r| r.placement.region)
            .collect();
        self.ensure_signers(regions).await?;
        for event in events {
            match event {
                WatchEvent::Put(kv) => match serde_json::from_slice::<InstanceRecord>(&kv.value) {
                    Ok(record) => {
                        self.reconcile(Arc::new(record), kv.mod_revision, &mut changes, &mut acks)?
                    }
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
        record: Arc<InstanceRecord>,
        revision: u64,
        changes: &mut Vec<SnapshotChange>,
        acks: &mut Vec<Ack>,
    ) -> Result<(), AgentError> {
        let id = record.instance_id.clone();
        if !self.placed_here(&record) {
            self.forget(&id, changes);
            return Ok(());
        }
        if self.served.get(&id).is_some_and(|r| **r == *record) {
            return Ok(());
        }
        acks.push(Ack { id: id.clone(), generation: record.generation, revision });
        if !record.state.is_served() {
            // A stopped instance is not served; its latest spec is still
            // acknowledged, so changes made while stopped show `applied`.
            self.forget(&id, changes);
            self.served.insert(id, record);
            return Ok(());
        }
        let creds = self.credentials.track(&record);
        changes.push(SnapshotChange::Upsert(Arc::new(self.snapshot(&record, creds))));
        self.served.insert(id, record);
        Ok(())
    }

    fn forget(&mut self, id: &InstanceId, changes: &mut Vec<SnapshotChange>) {
        self.served.remove(id);
        self.credentials.untrack(id);
        changes.push(SnapshotChange::Remove(id.clone()));
    }

    /// A snapshot of `record` with these credentials and the instance's
    /// events and signer as they are now; its tree is rendered on the first
    /// request that needs it, as it would have been rendered now.
    fn snapshot(&self, record: &Arc<InstanceRecord>, creds: InstanceCredentials) -> InstanceSnapshot {
        let events: Vec<InstanceEvent> =
            self.events.get(&record.instance_id).map(|m| m.values().cloned().collect()).unwrap_or_default();
        let (role_v1, role_v2, role_error) = match creds.role {
            Some(role) => (role.imdsv1, role.imdsv2, role.error),
            None => (None, None, None),
        };
        let credentials = SnapshotCredentials { role_v1, role_v2, role_error, identity: creds.identity };
        InstanceSnapshot::new(SnapshotSource {
            record: Arc::clone(record),
            credentials: Arc::new(credentials),
            events,
            signer: self.signers.get(&record.placement.region).cloned(),
            now_secs: self.clock.now_secs(),
        })
    }

    /// Acknowledges what the last sync applied, except the instances whose
    /// status already names this host and generation: a restart finds most
    /// of them so, and rewriting them would only move `applied_at_millis`
    /// (at a write per instance).
    async fn ack_synced(&mut self) -> Result<(), AgentError> {
        let mut acks = std::mem::take(&mut self.unacked);
        if acks.is_empty() {
            return Ok(());
        }
        let acknowledged = self.acknowledged_here().await?;
        acks.retain(|a| acknowledged.get(&a.id) != Some(&a.generation));
        self.ack(acks).await
    }

    /// The generation each instance's stored status says this host serves.
    /// A status that does not decode is left out (it is acknowledged anew).
    async fn acknowledged_here(&self) -> Result<HashMap<InstanceId, u64>, AgentError> {
        let (kvs, _) = self.store.list(records::STATUS_PREFIX).await?;
        let mut acknowledged = HashMap::with_capacity(kvs.len());
        for kv in kvs {
            let Some(id) = records::instance_id_from_key(&kv.key) else { continue };
            if let Ok(status) = serde_json::from_slice::<InstanceStatus>(&kv.value)
                && status.host_id == self.cfg.host_id
            {
                acknowledged.insert(id, status.observed_generation);
            }
        }
        Ok(acknowledged)
    }

    /// Records that this host now serves these generations. Each status is
    /// written only while the record it acknowledges is still the stored one
    /// (compare on its revision): a late ack from a host the instance has
    /// left, or of a generation already superseded, can never overwrite a
    /// newer status and turn `applied` back into `pending`.
    async fn ack(&self, acks: Vec<Ack>) -> Result<(), AgentError> {
        if acks.is_empty() {
            return Ok(());
        }
        let now = self.clock.now_millis();
        let mut compares = Vec::with_capacity(acks.len());
        let mut ops = Vec::with_capacity(acks.len());
        for ack in &acks {
            let status = InstanceStatus {
                observed_generation: ack.generation,
                host_id: self.cfg.host_id.clone(),
                applied_at_millis: now,
            };
            let value = serde_json::to_vec(&status)
                .map_err(|e| StoreError::Backend(format!("cannot encode a status: {e}")))?;
            compares.push(Compare::ModRevision(records::instance_key(&ack.id), ack.revision));
            ops.push(Op::put(records::status_key(&ack.id), value));
        }
        if let Some(ack_revision) = self.store.txn(compares.clone(), ops.clone()).await? {
            // Everything committed after the newest change acknowledged here,
            // up to this ack, is what the agent has not caught up with yet.
            let newest = acks.iter().map(|a| a.revision).max().unwrap_or(ack_revision);
            let lag = ack_revision.saturating_sub(newest).saturating_sub(1);
            self.cfg.metrics.watch_lag_revisions.set(i64::try_from(lag).unwrap_or(i64::MAX));
            return Ok(());
        }
        // Some record changed meanwhile: ack the others one by one; the
        // changed ones are acknowledged when their new version is applied.
        for (compare, op) in compares.into_iter().zip(ops) {
            self.store.txn(vec![compare], vec![op]).await?;
        }
        Ok(())
    }
}

/// One acknowledgement: this generation of this instance, as stored at
/// `revision`, is served here.
#[derive(Debug, Clone)]
struct Ack {
    id: InstanceId,
    generation: u64,
    revision: u64,
}

/// The stored signer of `region`, created and stored first if there is
/// none. Two agents racing here agree on one signer (create-if-absent).
pub async fn load_or_create_signer(store: &dyn Store, region: &str) -> Result<RegionSigner, AgentError> {
    let key = records::identity_keys_key(region);
    let stored = match records::get_secret(store, &key).await? {
        Some(bytes) => bytes,
        None => {
            let region_owned = region.to_owned();
            let fresh = tokio::task::spawn_blocking(move || RegionSigner::generate(&region_owned))
                .await
                .map_err(|e| AgentError::Identity(format!("key generation task failed: {e}")))?
                .map_err(|e| AgentError::Identity(e.to_string()))?;
            let bytes = serde_json::to_vec(&fresh).map_err(|e| AgentError::Identity(e.to_string()))?;
            records::put_secret_if_absent(store, &key, bytes).await?
        }
    };
    serde_json::from_slice(&stored)
        .map_err(|e| AgentError::Identity(format!("stored identity keys of {region} are unreadable: {e}")))
}

/// Sleeps until the Unix time `at` (seconds) by `clock`, or forever if `None`.
/// Sleeps a second at most between looks at the clock, so a clock that
/// jumps (tests, NTP) is noticed quickly.
async fn sleep_until_unix(at: Option<u64>, clock: &dyn Clock) {
    let Some(at) = at else { return std::future::pending::<()>().await };
    loop {
        let now_ms = clock.now_millis();
        let due_ms = at.saturating_mul(1000);
        if now_ms >= due_ms {
            return;
        }
        tokio::time::sleep(Duration::from_millis((due_ms - now_ms).min(1000))).await;
    }
}
