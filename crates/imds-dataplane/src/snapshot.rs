//! What the hot path reads: immutable per-instance snapshots behind atomic
//! pointers, and the source-address routing table that finds them.
//!
//! Writers (the agent) build a new [`InstanceSnapshot`] and swap it into the
//! instance's slot: an option change is one pointer swap, visible to the next
//! request, with no lock on the request path. Adding or removing instances,
//! or changing their addresses, rebuilds the routing table and swaps it.

use crate::limits::{ConnectionCounter, ConnectionPermit, ConnectionRefusal, InstanceAdmission, Limits};
use crate::metrics::DataPlaneMetrics;
use crate::tree::{MetadataTree, RenderInputs};
use crate::usage::{NoUsage, UsageSink};
use arc_swap::ArcSwap;
use imds_core::{Clock, InstanceId, InstanceRecord, MetadataOptions};
use imds_net::SourceTable;
use imds_token::KeyRing;
use ipnet::IpNet;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// One instance as the data plane serves it: its options and its rendered
/// metadata tree, never changed after construction.
#[derive(Debug)]
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
    /// Rendered metadata.
    tree: MetadataTree,
}

impl InstanceSnapshot {
    /// Renders a snapshot from the instance record.
    pub fn render(record: &InstanceRecord, inputs: &RenderInputs<'_>) -> Self {
        Self {
            instance_id: record.instance_id.clone(),
            incarnation: record.incarnation,
            generation: record.generation,
            options: record.metadata_options,
            sources: record.source_networks(),
            tree: MetadataTree::render(record, inputs),
        }
    }

    /// The instance's metadata tree.
    pub fn tree(&self) -> &MetadataTree {
        &self.tree
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
