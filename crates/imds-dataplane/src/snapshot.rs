//! What the hot path reads: immutable per-instance snapshots behind atomic
//! pointers, and the source-address routing table that finds them.
//!
//! Writers (the agent) build a new [`InstanceSnapshot`] and swap it into the
//! instance's slot: an option change is one pointer swap, visible to the next
//! request, with no lock on the request path. A snapshot holds what its
//! metadata tree is rendered from and renders it on the first request that
//! needs it. Adding or removing instances,
//! or changing their addresses, rebuilds the routing table and swaps it.

use crate::limits::{ConnectionCounter, ConnectionPermit, ConnectionRefusal, InstanceAdmission, Limits};
use crate::metrics::DataPlaneMetrics;
use crate::tree::{MetadataTree, RenderInputs};
use crate::usage::{NoUsage, UsageSink};
use arc_swap::ArcSwap;
use imds_core::events::InstanceEvent;
use imds_core::{Clock, InstanceId, InstanceRecord, MetadataOptions, RoleCredentials};
use imds_identity::RegionSigner;
use imds_net::SourceTable;
use imds_token::KeyRing;
use ipnet::IpNet;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

/// The credential sets a snapshot renders, owned and shared (`Arc`) so a
/// snapshot can render its tree later, on its first request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SnapshotCredentials {
    /// Role credentials for IMDSv1 callers (see [`RenderInputs`]).
    pub role_v1: Option<RoleCredentials>,
    /// Role credentials for IMDSv2 callers.
    pub role_v2: Option<RoleCredentials>,
    /// `Code` and `Message` of the error document served while a role set
    /// is missing; `None` means `AssumeRoleUnauthorizedAccess`.
    pub role_error: Option<(String, String)>,
    /// Instance identity credentials.
    pub identity: Option<RoleCredentials>,
}

/// Everything an instance's tree is rendered from, captured when the
/// snapshot is made. The tree rendered from it on the first request is the
/// one an eager render at that moment would have given: `now_secs` is the
/// snapshot's time, not the request's.
#[derive(Clone)]
pub struct SnapshotSource {
    /// The record, shared with the agent (one copy per instance).
    pub record: Arc<InstanceRecord>,
    /// Credential sets in force.
    pub credentials: Arc<SnapshotCredentials>,
    /// The instance's events.
    pub events: Vec<InstanceEvent>,
    /// The region's identity signer.
    pub signer: Option<Arc<RegionSigner>>,
    /// When the snapshot was made, Unix seconds (see [`RenderInputs::now_secs`]).
    pub now_secs: u64,
}

impl SnapshotSource {
    /// The borrowed form [`MetadataTree::render`] takes.
    pub fn inputs(&self) -> RenderInputs<'_> {
        let c = &*self.credentials;
        RenderInputs {
            role_credentials_v1: c.role_v1.as_ref(),
            role_credentials_v2: c.role_v2.as_ref(),
            role_error: c.role_error.as_ref().map(|(code, message)| (code.as_str(), message.as_str())),
            identity_credentials: c.identity.as_ref(),
            now_secs: self.now_secs,
            events: &self.events,
            signer: self.signer.as_ref(),
        }
    }
}

/// One instance as the data plane serves it: its options and what its
/// metadata tree is rendered from, never changed after construction.
///
/// The tree is rendered on the first request that needs it and kept
/// ([`OnceLock`]): most of a fleet's instances are never asked for most of
/// the time, and rendering 100,000 trees at start-up took most of it. After
/// that first render a request reads it without a lock.
pub struct InstanceSnapshot {
    /// The instance.
    pub instance_id: InstanceId,
    /// Tokens are bound to this; it changes at every start.
    pub incarnation: u64,
    /// Spec generation this snapshot was rendered from.
    pub generation: u64,
    /// Options in force.
    pub options: MetadataOptions,
    /// Source networks that identify the instance.
    pub sources: Vec<IpNet>,
    source: SnapshotSource,
    tree: OnceLock<MetadataTree>,
}

impl std::fmt::Debug for InstanceSnapshot {
    /// The record holds user data and the credentials secrets: neither is shown.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InstanceSnapshot")
            .field("instance_id", &self.instance_id)
            .field("incarnation", &self.incarnation)
            .field("generation", &self.generation)
            .field("options", &self.options)
            .field("sources", &self.sources)
            .field("tree", &self.tree.get())
            .finish_non_exhaustive()
    }
}

impl InstanceSnapshot {
    /// A snapshot whose tree is rendered from `source` on first use.
    pub fn new(source: SnapshotSource) -> Self {
        let record = &source.record;
        Self {
            instance_id: record.instance_id.clone(),
            incarnation: record.incarnation,
            generation: record.generation,
            options: record.metadata_options,
            sources: record.source_networks(),
            source,
            tree: OnceLock::new(),
        }
    }

    /// A snapshot of borrowed inputs (tests, benches): copies them into a
    /// [`SnapshotSource`]; the tree is still rendered on first use.
    pub fn render(record: &InstanceRecord, inputs: &RenderInputs<'_>) -> Self {
        let credentials = SnapshotCredentials {
            role_v1: inputs.role_credentials_v1.cloned(),
            role_v2: inputs.role_credentials_v2.cloned(),
            role_error: inputs.role_error.map(|(c, m)| (c.to_owned(), m.to_owned())),
            identity: inputs.identity_credentials.cloned(),
        };
        Self::new(SnapshotSource {
            record: Arc::new(record.clone()),
            credentials: Arc::new(credentials),
            events: inputs.events.to_vec(),
            signer: inputs.signer.cloned(),
            now_secs: inputs.now_secs,
        })
    }

    /// The instance's metadata tree, rendered by the first caller.
    pub fn tree(&self) -> &MetadataTree {
        self.tree.get_or_init(|| MetadataTree::render(&self.source.record, &self.source.inputs()))
    }

    /// Whether the tree has been rendered yet (memory accounting, tests).
    pub fn is_rendered(&self) -> bool {
        self.tree.get().is_some()
    }

    /// What the tree is (or will be) rendered from.
    pub fn source(&self) -> &SnapshotSource {
        &self.source
    }
}

/// The slot of one instance; its content is swapped on every change.
#[derive(Debug)]
pub struct InstanceSlot {
    snapshot: ArcSwap<InstanceSnapshot>,
    /// Request rate and connection count; survives snapshot swaps.
    admission: Arc<InstanceAdmission>,
}

impl InstanceSlot {
    /// The snapshot in force now.
    pub fn load(&self) -> arc_swap::Guard<Arc<InstanceSnapshot>> {
        self.snapshot.load()
    }

    /// The instance's admission state.
    pub fn admission(&self) -> &Arc<InstanceAdmission> {
        &self.admission
    }
}

/// How a data plane is built besides its keys and clock.
pub struct DataPlaneOptions {
    /// Counters to update.
    pub metrics: DataPlaneMetrics,
    /// Sink of IMDSv1 use reports.
    pub usage: Arc<dyn UsageSink>,
    /// Admission limits.
    pub limits: Limits,
}

impl Default for DataPlaneOptions {
    fn default() -> Self {
        Self { metrics: DataPlaneMetrics::default(), usage: Arc::new(NoUsage), limits: Limits::default() }
    }
}

/// A change the agent hands to the data plane.
#[derive(Debug)]
pub enum SnapshotChange {
    /// Serve this snapshot (new instance or new generation).
    Upsert(Arc<InstanceSnapshot>),
    /// Stop serving this instance.
    Remove(InstanceId),
}

/// The whole data-plane state shared by all connections.
pub struct DataPlane {
    routes: ArcSwap<SourceTable<Arc<InstanceSlot>>>,
    /// Writers' view, never touched by requests.
    slots: Mutex<HashMap<InstanceId, Arc<InstanceSlot>>>,
    keys: ArcSwap<KeyRing>,
    clock: Arc<dyn Clock>,
    metrics: DataPlaneMetrics,
    usage: Arc<dyn UsageSink>,
    limits: ArcSwap<Limits>,
    connections: Arc<ConnectionCounter>,
}

impl std::fmt::Debug for DataPlane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataPlane").field("sources", &self.routes.load().len()).finish_non_exhaustive()
    }
}

impl DataPlane {
    /// A data plane serving no instance yet.
    pub fn new(keys: KeyRing, clock: Arc<dyn Clock>, options: DataPlaneOptions) -> Arc<Self> {
        Arc::new(Self {
            routes: ArcSwap::from_pointee(SourceTable::new()),
            slots: Mutex::new(HashMap::new()),
            keys: ArcSwap::from_pointee(keys),
            clock,
            metrics: options.metrics,
            usage: options.usage,
            limits: ArcSwap::from_pointee(options.limits),
            connections: Arc::new(ConnectionCounter::default()),
        })
    }

    /// Admits a new connection from the instance of `slot`, or says why not.
    pub fn admit_connection(&self, slot: &InstanceSlot) -> Result<ConnectionPermit, ConnectionRefusal> {
        self.connections.admit(&slot.admission, &self.limits.load())
    }

    /// Applies new admission limits to every instance (config reload).
    pub fn set_limits(&self, limits: Limits) {
        let slots = match self.slots.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        for slot in slots.values() {
            slot.admission.set_limits(&limits);
        }
        self.limits.store(Arc::new(limits));
    }

    /// The admission limits in force.
    pub fn limits(&self) -> Limits {
        **self.limits.load()
    }

    /// Open data-plane connections.
    pub fn open_connections(&self) -> usize {
        self.connections.total()
    }

    /// Where IMDSv1 use is reported.
    pub fn usage(&self) -> &dyn UsageSink {
        self.usage.as_ref()
    }

    /// Applies changes; each instance's new snapshot is visible to the next
    /// request once this returns.
    pub fn apply(&self, changes: Vec<SnapshotChange>) {
        let mut slots = match self.slots.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        let mut reroute = false;
        for change in changes {
            match change {
                SnapshotChange::Upsert(snap) => match slots.get(&snap.instance_id) {
                    Some(slot) => {
                        reroute |= slot.load().sources != snap.sources;
                        slot.snapshot.store(snap);
                    }
                    None => {
                        let id = snap.instance_id.clone();
                        let admission = Arc::new(InstanceAdmission::new(&self.limits.load()));
                        slots.insert(id, Arc::new(InstanceSlot { snapshot: ArcSwap::new(snap), admission }));
                        reroute = true;
                    }
                },
                SnapshotChange::Remove(id) => reroute |= slots.remove(&id).is_some(),
            }
        }
        if reroute {
            let mut table = SourceTable::new();
            for slot in slots.values() {
                for net in &slot.load().sources {
                    table.insert(*net, Arc::clone(slot));
                }
            }
            self.routes.store(Arc::new(table));
        }
    }

    /// The instance a source address belongs to.
    pub fn slot_for(&self, ip: std::net::IpAddr) -> Option<Arc<InstanceSlot>> {
        self.routes.load().lookup(ip).cloned()
    }

    /// Snapshot of one instance by id (for status reporting and tests).
    pub fn snapshot_of(&self, id: &InstanceId) -> Option<Arc<InstanceSnapshot>> {
        let slots = match self.slots.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        slots.get(id).map(|s| s.load_full())
    }

    /// Ids of the instances served now.
    pub fn instance_ids(&self) -> Vec<InstanceId> {
        let slots = match self.slots.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        slots.keys().cloned().collect()
    }

    /// Replaces the token key ring (rotation).
    pub fn set_keys(&self, keys: KeyRing) {
        self.keys.store(Arc::new(keys));
    }

    /// The token key ring in force.
    pub fn keys(&self) -> arc_swap::Guard<Arc<KeyRing>> {
        self.keys.load()
    }

    /// The clock tokens are checked against.
    pub fn clock(&self) -> &dyn Clock {
        self.clock.as_ref()
    }

    /// The data plane's metrics.
    pub fn metrics(&self) -> &DataPlaneMetrics {
        &self.metrics
    }
}

impl InstanceSlot {
    fn load_full(&self) -> Arc<InstanceSnapshot> {
        self.snapshot.load_full()
    }
}
