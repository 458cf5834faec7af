//! The metadata tree of one instance, rendered once into an immutable,
//! compact lookup structure.
//!
//! Owns what exists under a version root (`meta-data/…`, `dynamic/…`,
//! `user-data`) for an [`InstanceRecord`], the bodies of every leaf, and the
//! directory listings (docs/protocol/data-plane.md#listings,
//! docs/protocol/categories.md). A request does one path normalisation
//! ([`crate::path`]), one hash and (usually) one probe here; bodies are slices
//! of one [`Bytes`] buffer, so answering clones a reference count, not the
//! data. It does not own the JSON layouts ([`crate::docs`]), the v1/v2 policy
//! or statuses (the HTTP service), nor where credentials come from
//! ([`RenderInputs`]).
//!
//! Layout (why: a fleet of 100,000 instances keeps 100,000 of these, so a
//! tree is a few allocations, not one per path): every node name, leaf body
//! and listing lives in one buffer; nodes are one boxed slice of 20-byte
//! entries holding offsets into it and their parent's index, plus a 32-bit
//! hash of each node's full path and an open-addressing table of 16-bit node
//! indices by that hash. A lookup hashes the path, usually probes once, and
//! checks the path by walking up the parents (no path is stored whole:
//! per-instance paths such as a MAC's 20 keys would cost kilobytes).
//!
//! Listings are never written by hand: [`TreeBuilder`] derives every
//! directory from the leaves inserted below it, so a listing cannot show an
//! entry that answers 404 and a directory with no children does not exist.
//! Entries are in byte order of their names; the documented exceptions are
//! expressed as [`TreeBuilder::rank`] (MAC directories by device number) and
//! [`TreeBuilder::label`] (`0=<key name>` under `public-keys/`, `dynamic` and
//! `meta-data` without a slash in the version root listing).

use crate::docs;
use crate::responses::TEXT_PLAIN;
use bytes::Bytes;
use imds_core::events::{EventKind, EventPhase, InstanceEvent, SpotAction};
use imds_core::instance::{ip_hostname, is_imds_tag_key, public_hostname};
use imds_core::timefmt::iso8601_secs;
use imds_core::{InstanceRecord, NetworkInterface, RoleCredentials};
use imds_identity::RegionSigner;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::sync::{Arc, OnceLock};

/// Content type of `user-data` (the official mock's choice,
/// docs/protocol/categories.md#user-data; every other node is [`TEXT_PLAIN`]).
pub const USER_DATA_CONTENT_TYPE: &str = "application/octet-stream";

/// Role name of the instance identity credentials
/// (`identity-credentials/ec2/security-credentials/ec2-instance`).
pub const IDENTITY_ROLE_NAME: &str = "ec2-instance";

/// Value of `meta-data/metrics/vhostmd`, a legacy placeholder.
const VHOSTMD: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>";

/// A leaf computed on its first request and then kept: the signed identity
/// documents. Signing at render time would cost about a millisecond per
/// instance, minutes for a fleet of 100,000, for documents few guests read.
pub struct LazyLeaf {
    cell: OnceLock<Option<Bytes>>,
    make: Box<dyn Fn() -> Option<Bytes> + Send + Sync>,
}

impl LazyLeaf {
    /// A leaf whose body `make` computes once; `None` means it failed (logged
    /// by `make`), and the request gets a server error instead of a body.
    pub fn new(make: impl Fn() -> Option<Bytes> + Send + Sync + 'static) -> Arc<Self> {
        Arc::new(Self { cell: OnceLock::new(), make: Box::new(make) })
    }

    /// The body, computed on first use.
    pub fn get(&self) -> Option<&Bytes> {
        self.cell.get_or_init(|| (self.make)()).as_ref()
    }
}

/// What a packed node is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A leaf; `extra` is its content type (0: [`TEXT_PLAIN`], `i`: `types[i - 1]`).
    Leaf,
    /// A directory; the body is its listing.
    Dir,
    /// Role credentials: the body is the IMDSv1 document, followed in the
    /// buffer by the IMDSv2 one, `extra` bytes long.
    Role,
    /// A [`LazyLeaf`]; `extra` is its index in `lazy`.
    Lazy,
}

/// One node: offsets into [`MetadataTree::data`] (20 bytes, plus its
/// 4-byte hash in [`MetadataTree::hashes`]). Its name is the `name_len`
/// bytes just before its body.
#[derive(Debug, Clone, Copy)]
struct Entry {
    body_start: u32,
    body_len: u32,
    extra: u32,
    name_len: u16,
    /// Index of the parent directory; [`NO_PARENT`] for the version root.
    parent: u16,
    kind: Kind,
}

/// `Entry::parent` of the version root.
const NO_PARENT: u16 = u16::MAX;

/// A free slot of [`MetadataTree::slots`].
const EMPTY_SLOT: u16 = u16::MAX;

/// Hash of a tree path, for the lookup table (FxHash's multiply-rotate on
/// 8-byte words). Not keyed: a guest can only look paths up, and a path
/// whose hash collides with a node's costs one more name comparison.
fn path_hash(path: &[u8]) -> u32 {
    const K: u64 = 0xf135_7aea_2e62_a9c5;
    let mut h = u64::try_from(path.len()).unwrap_or(u64::MAX);
    let mut words = path.chunks_exact(8);
    for word in &mut words {
        let mut w = [0u8; 8];
        w.copy_from_slice(word);
        h = (h.rotate_left(5) ^ u64::from_le_bytes(w)).wrapping_mul(K);
    }
    let rest = words.remainder();
    if !rest.is_empty() {
        let mut w = [0u8; 8];
        w[..rest.len()].copy_from_slice(rest);
        h = (h.rotate_left(5) ^ u64::from_le_bytes(w)).wrapping_mul(K);
    }
    // The multiplication carries every input bit into the high half.
    u32::try_from(h >> 32).unwrap_or_default()
}

/// One node of a tree, as [`MetadataTree::get`] finds it.
#[derive(Clone, Copy)]
pub struct Node<'a> {
    tree: &'a MetadataTree,
    entry: &'a Entry,
}

impl Node<'_> {
    /// The response body for a request that did (`imdsv2 = true`) or did
    /// not carry a valid token; only role credentials differ.
    /// `None` only when a lazy leaf failed to compute.
    pub fn body(&self, imdsv2: bool) -> Option<Bytes> {
        let e = self.entry;
        match e.kind {
            Kind::Lazy => self.tree.lazy.get(e.extra as usize)?.get().cloned(),
            Kind::Role if imdsv2 => self.tree.slice(e.body_start as usize + e.body_len as usize, e.extra),
            Kind::Leaf | Kind::Dir | Kind::Role => self.tree.slice(e.body_start as usize, e.body_len),
        }
    }

    /// The response `Content-Type`.
    pub fn content_type(&self) -> &'static str {
        match self.entry.kind {
            Kind::Leaf if self.entry.extra > 0 => {
                self.tree.types.get(self.entry.extra as usize - 1).copied().unwrap_or(TEXT_PLAIN)
            }
            Kind::Leaf | Kind::Dir | Kind::Role | Kind::Lazy => TEXT_PLAIN,
        }
    }

    /// Whether this is a directory (its body is a listing).
    pub fn is_dir(&self) -> bool {
        self.entry.kind == Kind::Dir
    }
}

impl fmt::Debug for Node<'_> {
    /// Credential bodies hold secrets and never reach logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.entry.kind {
            Kind::Leaf => f
                .debug_struct("Leaf")
                .field("body", &self.body(false))
                .field("content_type", &self.content_type())
                .finish(),
            Kind::Dir => f.debug_tuple("Dir").field(&self.body(false)).finish(),
            Kind::Role => f.write_str("RoleCredentials(<redacted>)"),
            Kind::Lazy => {
                let cell = self.tree.lazy.get(self.entry.extra as usize).and_then(|l| l.cell.get());
                f.debug_tuple("Lazy").field(&cell).finish()
            }
        }
    }
}

/// What the record alone does not say: the current credential sets and the
/// time to stamp on documents that have no time of their own.
#[derive(Debug, Clone, Copy)]
pub struct RenderInputs<'a> {
    /// Role credentials for IMDSv1 callers. `None` while the instance has a
    /// profile => the error document of
    /// docs/protocol/credentials.md#error-document (200, `Code` != `Success`)
    /// for that role.
    pub role_credentials_v1: Option<&'a RoleCredentials>,
    /// Role credentials for IMDSv2 callers; `None` as for v1.
    pub role_credentials_v2: Option<&'a RoleCredentials>,
    /// `Code` and `Message` of the error document served while a set is
    /// missing (e.g. `Pending` before the first STS answer); `None` means
    /// EC2's `AssumeRoleUnauthorizedAccess` document.
    pub role_error: Option<(&'a str, &'a str)>,
    /// Credentials of `identity-credentials/ec2/security-credentials/ec2-instance`;
    /// `None` => the same error-document treatment.
    pub identity_credentials: Option<&'a RoleCredentials>,
    /// Now, Unix seconds: `LastUpdated` of error documents, of info
    /// documents when no credentials exist yet, and the time events are
    /// judged at (hidden, active, completed, canceled).
    pub now_secs: u64,
    /// The instance's events (spot, rebalance, maintenance, lifecycle).
    pub events: &'a [InstanceEvent],
    /// The region's identity signer; without one the signed documents
    /// (`pkcs7`, `rsa2048`, `signature`) are absent.
    pub signer: Option<&'a Arc<RegionSigner>>,
}

/// Immutable, rendered tree of one instance: a request does one
/// normalisation, one hash and (usually) one probe, no allocation beyond the
/// response.
#[derive(Clone, Default)]
pub struct MetadataTree {
    /// Node names, leaf bodies and listings.
    data: Bytes,
    /// [`path_hash`] of each node's full path, ascending.
    hashes: Box<[u32]>,
    /// Open-addressing table (linear probing) of node indices by hash, a
    /// power of two with at least one [`EMPTY_SLOT`]: a lookup is usually
    /// one probe (a binary search over the hashes cost ~15 ns more).
    slots: Box<[u16]>,
    /// The nodes, in the order of `hashes`; empty for a tree with no node.
    nodes: Box<[Entry]>,
    /// Leaves computed on first request.
    lazy: Box<[Arc<LazyLeaf>]>,
    /// Content types other than [`TEXT_PLAIN`].
    types: Box<[&'static str]>,
}

impl fmt::Debug for MetadataTree {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MetadataTree")
            .field("nodes", &self.nodes.len())
            .field("bytes", &self.data.len())
            .finish_non_exhaustive()
    }
}

impl MetadataTree {
    /// Renders every path of `record` (docs/protocol/categories.md), with
    /// credentials and time from `inputs`.
    pub fn render(record: &InstanceRecord, inputs: &RenderInputs<'_>) -> MetadataTree {
        let mut b = TreeBuilder::new();
        render_meta_data(&mut b, record, inputs);
        render_dynamic(&mut b, record, inputs.signer);
        if let Some(user_data) = record.user_data.as_deref().filter(|u| !u.is_empty()) {
            b.binary("user-data", Bytes::copy_from_slice(user_data), USER_DATA_CONTENT_TYPE);
        }
        // The version root lists its trees without slashes
        // (docs/protocol/data-plane.md#version-root).
        b.label("meta-data", "meta-data");
        b.label("dynamic", "dynamic");
        b.build()
    }

    /// The node at `tree_path`, as produced by
    /// [`Route::Tree`](crate::path::Route::Tree) (`""` is the version root).
    pub fn get(&self, tree_path: &str) -> Option<Node<'_>> {
        let path = tree_path.as_bytes();
        let hash = path_hash(path);
        let mask = self.slots.len().checked_sub(1)?;
        let mut at = hash as usize & mask;
        // Ends: the table always has an empty slot.
        loop {
            let i = usize::from(*self.slots.get(at)?);
            if i == usize::from(EMPTY_SLOT) {
                return None;
            }
            if self.hashes.get(i) == Some(&hash)
                && let Some(entry) = self.nodes.get(i).filter(|e| self.is_at(e, path))
            {
                return Some(Node { tree: self, entry });
            }
            at = (at + 1) & mask;
        }
    }

    /// Whether `e`'s full path is `path`: its name ends `path`, its
    /// parent's ends what is left before the `/`, up to the root.
    fn is_at<'t>(&'t self, mut e: &'t Entry, mut path: &[u8]) -> bool {
        loop {
            let Some(rest) = path.strip_suffix(self.name(e)) else { return false };
            let Some(parent) = self.nodes.get(usize::from(e.parent)) else {
                // The root: nothing may be left.
                return e.parent == NO_PARENT && rest.is_empty();
            };
            if parent.parent == NO_PARENT {
                // A child of the root: its name is the whole path.
                return rest.is_empty();
            }
            let Some(rest) = rest.strip_suffix(b"/") else { return false };
            path = rest;
            e = parent;
        }
    }

    /// Every path that answers 200, in no particular order (tests, crawls).
    pub fn paths(&self) -> impl Iterator<Item = String> + '_ {
        self.nodes.iter().map(|e| {
            let mut names = Vec::new();
            let mut at = e;
            while let Some(parent) = self.nodes.get(usize::from(at.parent)) {
                names.push(String::from_utf8_lossy(self.name(at)));
                at = parent;
            }
            names.reverse();
            names.join("/")
        })
    }

    /// Number of nodes, directories included.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether the tree has no node at all (not even the version root).
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Bytes this tree keeps on the heap (buffer and node table; lazy
    /// leaves not counted), for memory accounting in tests and benches.
    pub fn heap_bytes(&self) -> usize {
        self.data.len()
            + std::mem::size_of_val::<[Entry]>(&self.nodes)
            + std::mem::size_of_val::<[u32]>(&self.hashes)
            + std::mem::size_of_val::<[u16]>(&self.slots)
    }

    fn name(&self, e: &Entry) -> &[u8] {
        let end = e.body_start as usize;
        self.data.get(end.saturating_sub(usize::from(e.name_len))..end).unwrap_or_default()
    }

    fn slice(&self, start: usize, len: u32) -> Option<Bytes> {
        let end = start.checked_add(len as usize)?;
        // Always true for a built tree; checked so no request can panic.
        (end <= self.data.len()).then(|| self.data.slice(start..end))
    }
}

/// A leaf as inserted, before packing.
enum Pending {
    Leaf { body: Bytes, content_type: &'static str },
    Role { imdsv1: Bytes, imdsv2: Bytes },
    Lazy(Arc<LazyLeaf>),
}

/// Builds a [`MetadataTree`] from leaves; directories and their listings are
/// derived in [`TreeBuilder::build`].
///
/// Paths are tree paths (`meta-data/placement/region`): segments separated by
/// single `/`, none empty, `.` or `..`, none containing a control character
/// (a newline would split a listing entry). A path breaking these rules is
/// skipped with a warning rather than served, since it could not be listed
/// or reached. Inserting the same path twice keeps the last value.
#[derive(Default)]
pub struct TreeBuilder {
    leaves: BTreeMap<String, Pending>,
    labels: HashMap<String, String>,
    ranks: HashMap<String, u64>,
}

impl TreeBuilder {
    /// An empty builder.
    pub fn new() -> Self {
        Self::default()
    }

    /// A `text/plain` leaf.
    pub fn leaf(&mut self, path: &str, body: impl Into<Bytes>) -> &mut Self {
        self.binary(path, body, TEXT_PLAIN)
    }

    /// A JSON document leaf; served as `text/plain` like every IMDS document
    /// (docs/protocol/data-plane.md#headers). Separate from
    /// [`TreeBuilder::leaf`] so callers say what they insert.
    pub fn json(&mut self, path: &str, body: String) -> &mut Self {
        self.leaf(path, body)
    }

    /// A leaf with its own content type.
    pub fn binary(&mut self, path: &str, body: impl Into<Bytes>, content_type: &'static str) -> &mut Self {
        self.insert(path, Pending::Leaf { body: body.into(), content_type })
    }

    /// A role-credentials leaf with its IMDSv1 and IMDSv2 documents.
    pub fn role_credentials(&mut self, path: &str, imdsv1: String, imdsv2: String) -> &mut Self {
        self.insert(path, Pending::Role { imdsv1: imdsv1.into(), imdsv2: imdsv2.into() })
    }

    /// A text leaf computed on first request.
    pub fn lazy(&mut self, path: &str, leaf: Arc<LazyLeaf>) -> &mut Self {
        self.insert(path, Pending::Lazy(leaf))
    }

    /// Shows `path` in its parent's listing as `label` instead of its name
    /// (plus `/` for a directory). Has no effect unless `path` exists; a
    /// label with a control character is ignored.
    pub fn label(&mut self, path: &str, label: impl Into<String>) -> &mut Self {
        let label = label.into();
        if label.chars().any(char::is_control) {
            tracing::warn!(path, "listing label with a control character ignored");
        } else {
            self.labels.insert(path.to_owned(), label);
        }
        self
    }

    /// Orders `path` among its siblings by `rank` first, then by name
    /// (unranked entries have rank 0).
    pub fn rank(&mut self, path: &str, rank: u64) -> &mut Self {
        self.ranks.insert(path.to_owned(), rank);
        self
    }

    fn insert(&mut self, path: &str, node: Pending) -> &mut Self {
        if is_valid_tree_path(path) {
            self.leaves.insert(path.to_owned(), node);
        } else {
            tracing::warn!(path, "metadata path with an empty, dot or control segment skipped");
        }
        self
    }

    /// Derives every directory and its listing and freezes the tree.
    ///
    /// A leaf whose path is also a directory (`a` and `a/b` both inserted) is
    /// dropped with a warning: the directory wins, so both the listing and
    /// the lookup agree.
    pub fn build(self) -> MetadataTree {
        let TreeBuilder { mut leaves, labels, ranks } = self;

        let mut dirs: BTreeSet<String> = BTreeSet::new();
        for path in leaves.keys() {
            let mut p = path.as_str();
            while let Some((parent, _)) = p.rsplit_once('/') {
                dirs.insert(parent.to_owned());
                p = parent;
            }
            dirs.insert(String::new());
        }
        let shadowed: Vec<String> = leaves.keys().filter(|p| dirs.contains(p.as_str())).cloned().collect();
        for path in &shadowed {
            tracing::warn!(path = path.as_str(), "metadata leaf shadowed by a directory dropped");
            leaves.remove(path);
        }

        // Children of each directory: (child path, is a directory), in byte
        // order of the path, which is byte order of the name (same parent).
        let mut children: BTreeMap<String, BTreeSet<(String, bool)>> = BTreeMap::new();
        for path in leaves.keys() {
            let mut child = path.as_str();
            let mut child_is_dir = false;
            loop {
                let parent = child.rsplit_once('/').map_or("", |(parent, _)| parent);
                let fresh =
                    children.entry(parent.to_owned()).or_default().insert((child.to_owned(), child_is_dir));
                if !fresh || parent.is_empty() {
                    break;
                }
                child = parent;
                child_is_dir = true;
            }
        }
        match pack(leaves, children, &labels, &ranks) {
            Some(tree) => tree,
            None => {
                // Offsets are 32-bit and names and listings 16-bit: only a
                // record far beyond EC2's limits (user data > 4 GiB) gets here.
                tracing::error!("metadata tree too large to pack; serving none");
                MetadataTree::default()
            }
        }
    }
}

/// A node before packing.
struct Draft {
    path: String,
    parent: u16,
    kind: Kind,
    /// Listing, leaf body, or IMDSv1 document.
    body: Bytes,
    /// IMDSv2 document of a role node.
    body2: Bytes,
    /// See [`Entry`]: content type or lazy index.
    extra: u32,
}

/// Lists every directory (breadth first) and packs the nodes into one
/// buffer and a table sorted by path hash.
fn pack(
    mut leaves: BTreeMap<String, Pending>,
    mut children: BTreeMap<String, BTreeSet<(String, bool)>>,
    labels: &HashMap<String, String>,
    ranks: &HashMap<String, u64>,
) -> Option<MetadataTree> {
    if leaves.is_empty() {
        return Some(MetadataTree::default());
    }
    let mut drafts: Vec<Draft> = Vec::with_capacity(leaves.len() + children.len());
    let mut lazy = Vec::new();
    let mut types: Vec<&'static str> = Vec::new();
    let u32_of = |n: usize| u32::try_from(n).ok();
    let dir = |path: String, parent: u16| Draft {
        path,
        parent,
        kind: Kind::Dir,
        body: Bytes::new(),
        body2: Bytes::new(),
        extra: 0,
    };
    drafts.push(dir(String::new(), NO_PARENT));
    let mut at = 0;
    while let Some(draft) = drafts.get(at) {
        if draft.kind != Kind::Dir {
            at += 1;
            continue;
        }
        let entries = children.remove(&draft.path).unwrap_or_default();
        let mut listed: Vec<&(String, bool)> = entries.iter().collect();
        listed.sort_by(|(a, _), (b, _)| {
            let rank = |p: &str| ranks.get(p).copied().unwrap_or(0);
            (rank(a), name_of(a)).cmp(&(rank(b), name_of(b)))
        });
        let mut listing = Vec::new();
        for (i, (child, is_dir)) in listed.into_iter().enumerate() {
            if i > 0 {
                listing.push(b'\n');
            }
            match labels.get(child) {
                Some(label) => listing.extend_from_slice(label.as_bytes()),
                None => {
                    listing.extend_from_slice(name_of(child).as_bytes());
                    if *is_dir {
                        listing.push(b'/');
                    }
                }
            }
        }
        drafts.get_mut(at)?.body = Bytes::from(listing);
        let parent = u16::try_from(at).ok().filter(|p| *p != NO_PARENT)?;
        for (child, is_dir) in entries {
            if is_dir {
                drafts.push(dir(child, parent));
                continue;
            }
            let mut d = Draft { kind: Kind::Leaf, ..dir(String::new(), parent) };
            match leaves.remove(&child)? {
                Pending::Leaf { body, content_type } => {
                    d.body = body;
                    if content_type != TEXT_PLAIN {
                        let i = match types.iter().position(|t| *t == content_type) {
                            Some(i) => i,
                            None => {
                                types.push(content_type);
                                types.len() - 1
                            }
                        };
                        d.extra = u32_of(i + 1)?;
                    }
                }
                Pending::Role { imdsv1, imdsv2 } => {
                    d.kind = Kind::Role;
                    d.extra = u32_of(imdsv2.len())?;
                    (d.body, d.body2) = (imdsv1, imdsv2);
                }
                Pending::Lazy(leaf) => {
                    d.kind = Kind::Lazy;
                    d.extra = u32_of(lazy.len())?;
                    lazy.push(leaf);
                }
            }
            d.path = child;
            drafts.push(d);
        }
        at += 1;
    }

    // Sorted by hash; parents renumbered to their new places.
    if drafts.len() >= usize::from(NO_PARENT) {
        return None;
    }
    let hashes: Vec<u32> = drafts.iter().map(|d| path_hash(d.path.as_bytes())).collect();
    let mut order: Vec<usize> = (0..drafts.len()).collect();
    order.sort_by_key(|&i| hashes.get(i).copied());
    let mut place = vec![0u16; drafts.len()];
    for (new, &old) in order.iter().enumerate() {
        *place.get_mut(old)? = u16::try_from(new).ok()?;
    }
    let size: usize = drafts.iter().map(|d| name_of(&d.path).len() + d.body.len() + d.body2.len()).sum();
    let mut data: Vec<u8> = Vec::with_capacity(size);
    let mut nodes: Vec<Entry> = Vec::with_capacity(drafts.len());
    let mut sorted_hashes: Vec<u32> = Vec::with_capacity(drafts.len());
    for &old in &order {
        let d = drafts.get(old)?;
        let name = name_of(&d.path);
        data.extend_from_slice(name.as_bytes());
        let body_start = data.len();
        data.extend_from_slice(&d.body);
        data.extend_from_slice(&d.body2);
        let parent = if d.parent == NO_PARENT { NO_PARENT } else { *place.get(usize::from(d.parent))? };
        sorted_hashes.push(*hashes.get(old)?);
        nodes.push(Entry {
            body_start: u32_of(body_start)?,
            body_len: u32_of(d.body.len())?,
            extra: d.extra,
            name_len: u16::try_from(name.len()).ok()?,
            parent,
            kind: d.kind,
        });
    }
    u32_of(data.len())?;
    // At most two thirds full, so probes stay short and one slot is free.
    let mut slots = vec![EMPTY_SLOT; (nodes.len() + nodes.len() / 2 + 1).next_power_of_two()];
    let mask = slots.len() - 1;
    for (i, hash) in sorted_hashes.iter().enumerate() {
        let mut at = *hash as usize & mask;
        while slots.get(at).is_some_and(|s| *s != EMPTY_SLOT) {
            at = (at + 1) & mask;
        }
        *slots.get_mut(at)? = u16::try_from(i).ok()?;
    }
    Some(MetadataTree {
        // A boxed slice holds no spare capacity, and its `Bytes` gets one
        // shared header at the first request, not one per body.
        data: Bytes::from(data.into_boxed_slice()),
        hashes: sorted_hashes.into_boxed_slice(),
        slots: slots.into_boxed_slice(),
        nodes: nodes.into_boxed_slice(),
        lazy: lazy.into_boxed_slice(),
        types: types.into_boxed_slice(),
    })
}

/// Last segment of a tree path.
fn name_of(path: &str) -> &str {
    path.rsplit_once('/').map_or(path, |(_, name)| name)
}

fn is_valid_tree_path(path: &str) -> bool {
    path.split('/').all(|segment| {
        !segment.is_empty() && segment != "." && segment != ".." && !segment.chars().any(char::is_control)
    })
}

/// `meta-data/<sub>`
fn md(sub: &str) -> String {
    format!("meta-data/{sub}")
}

/// Newline-separated values, `None` when there are none (the leaf is then
/// absent rather than empty).
fn lines<T: fmt::Display>(items: impl IntoIterator<Item = T>) -> Option<String> {
    let mut out = String::new();
    for (i, item) in items.into_iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        out.push_str(&item.to_string());
    }
    (!out.is_empty()).then_some(out)
}

fn render_meta_data(b: &mut TreeBuilder, r: &InstanceRecord, inputs: &RenderInputs<'_>) {
    // Instance identity and image (docs/protocol/categories.md#identity).
    b.leaf(&md("ami-id"), r.image_id.clone());
    b.leaf(&md("ami-launch-index"), r.ami_launch_index.to_string());
    b.leaf(&md("ami-manifest-path"), "(unknown)");
    b.leaf(&md("instance-action"), "none");
    b.leaf(&md("instance-id"), r.instance_id.to_string());
    b.leaf(&md("instance-life-cycle"), r.instance_life_cycle.clone());
    b.leaf(&md("instance-type"), r.instance_type.clone());
    if let Some(kernel) = r.kernel_id.as_deref().filter(|k| !k.is_empty()) {
        b.leaf(&md("kernel-id"), kernel.to_owned());
    }
    if let Some(ramdisk) = r.ramdisk_id.as_deref().filter(|k| !k.is_empty()) {
        b.leaf(&md("ramdisk-id"), ramdisk.to_owned());
    }
    if let Some(codes) = lines(&r.product_codes) {
        b.leaf(&md("product-codes"), codes);
    }
    b.leaf(&md("reservation-id"), r.reservation_id.clone());
    let profile = if r.kernel_id.is_some() { "default-paravirtual" } else { "default-hvm" };
    b.leaf(&md("profile"), profile);
    b.leaf(&md("system"), "nitro");
    b.leaf(&md("metrics/vhostmd"), VHOSTMD);
    if let Some(groups) = lines(r.security_groups().iter().map(|g| &g.name)) {
        b.leaf(&md("security-groups"), groups);
    }

    // Hostnames and addresses of device 0
    // (docs/protocol/categories.md#addresses).
    let local_hostname = r.local_hostname();
    b.leaf(&md("hostname"), local_hostname.clone());
    b.leaf(&md("local-hostname"), local_hostname);
    if let Some(ip) = r.private_ipv4() {
        b.leaf(&md("local-ipv4"), ip.to_string());
    }
    if let Some(ip) = r.ipv6() {
        b.leaf(&md("ipv6"), ip.to_string());
    }
    if let Some(ip) = r.public_ipv4() {
        b.leaf(&md("public-ipv4"), ip.to_string());
    }
    if let Some(name) = r.public_hostname() {
        b.leaf(&md("public-hostname"), name);
    }
    if let Some(primary) = r.primary_interface() {
        b.leaf(&md("mac"), primary.mac.clone());
    }

    // Block devices (docs/protocol/categories.md#block-devices) and events
    // (docs/protocol/categories.md#events).
    for device in &r.block_devices {
        b.leaf(&md(&format!("block-device-mapping/{}", device.name)), device.device.clone());
    }
    render_events(b, inputs);

    render_credentials(b, r, inputs);

    for nic in &r.network_interfaces {
        render_interface(b, r, nic);
    }

    // Placement and services (docs/protocol/categories.md#placement).
    let p = &r.placement;
    b.leaf(&md("placement/availability-zone"), p.availability_zone.clone());
    b.leaf(&md("placement/availability-zone-id"), p.availability_zone_id.clone());
    b.leaf(&md("placement/region"), p.region.clone());
    if let Some(group) = p.group_name.as_deref().filter(|g| !g.is_empty()) {
        b.leaf(&md("placement/group-name"), group.to_owned());
    }
    if let Some(partition) = p.partition_number {
        b.leaf(&md("placement/partition-number"), partition.to_string());
    }
    if let Some(host) = p.host_id.as_deref().filter(|h| !h.is_empty()) {
        b.leaf(&md("placement/host-id"), host.to_owned());
    }
    b.leaf(&md("services/domain"), r.domain());
    b.leaf(&md("services/partition"), r.partition());

    // Public keys (docs/protocol/categories.md#public-keys): listed as
    // `0=<name>`, key followed by its name.
    if let Some(key) = &r.key {
        b.leaf(&md("public-keys/0/openssh-key"), format!("{} {}", key.openssh_key, key.name));
        b.label(&md("public-keys/0"), format!("0={}", key.name));
    }

    // Tags (docs/protocol/categories.md#tags): only when enabled, only keys IMDS can expose.
    if r.metadata_options.instance_metadata_tags.is_enabled() {
        for (key, value) in &r.tags {
            if is_imds_tag_key(key) {
                b.leaf(&md(&format!("tags/instance/{key}")), value.clone());
            }
        }
    }
}

/// Events as seen at `inputs.now_secs` (docs/protocol/categories.md#events,
/// docs/protocol/categories.md#spot): each path exists only while it has
/// something to say, except the maintenance lists, which are always present
/// (`[]` when empty).
fn render_events(b: &mut TreeBuilder, inputs: &RenderInputs<'_>) {
    let now = inputs.now_secs;
    let mut scheduled = Vec::new();
    let mut history = Vec::new();
    let mut lifecycle: Option<(u64, &str)> = None;
    for e in inputs.events {
        let phase = e.phase(now);
        match (&e.kind, phase) {
            (_, EventPhase::Hidden) => {}
            (EventKind::Maintenance { code, description, not_before, not_after, not_before_deadline }, _) => {
                let (list, state, prefix) = match phase {
                    EventPhase::Completed => (&mut history, "completed", "[Completed] "),
                    EventPhase::Canceled => (&mut history, "canceled", "[Canceled] "),
                    _ => (&mut scheduled, "active", ""),
                };
                list.push(docs::MaintenanceEntry {
                    event_id: &e.event_id,
                    code: code.as_str(),
                    description: format!("{prefix}{description}"),
                    state,
                    not_before: *not_before,
                    not_after: *not_after,
                    not_before_deadline: *not_before_deadline,
                });
            }
            (_, EventPhase::Canceled | EventPhase::Completed) => {}
            (EventKind::SpotInterruption { action, time }, EventPhase::Active) => {
                b.json(&md("spot/instance-action"), docs::spot_instance_action(*action, *time));
                if *action == SpotAction::Terminate {
                    b.leaf(&md("spot/termination-time"), iso8601_secs(*time));
                }
            }
            (EventKind::Rebalance { notice_time }, EventPhase::Active) => {
                b.json(&md("events/recommendations/rebalance"), docs::rebalance_recommendation(*notice_time));
            }
            (EventKind::TargetLifecycleState { state }, EventPhase::Active) => {
                // The most recent transition is the state in force.
                if lifecycle.is_none_or(|(at, _)| e.visible_from >= at) {
                    lifecycle = Some((e.visible_from, state));
                }
            }
        }
    }
    if let Some((_, state)) = lifecycle {
        b.leaf(&md("autoscaling/target-lifecycle-state"), state.to_owned());
    }
    b.json(&md("events/maintenance/scheduled"), docs::maintenance_events(&scheduled));
    b.json(&md("events/maintenance/history"), docs::maintenance_events(&history));
}

/// IAM role and instance identity credentials (docs/protocol/credentials.md).
fn render_credentials(b: &mut TreeBuilder, r: &InstanceRecord, inputs: &RenderInputs<'_>) {
    let now = inputs.now_secs;
    if let Some(profile) = &r.iam_instance_profile {
        let role = profile.role_name.as_str();
        let document = |creds: Option<&RoleCredentials>| match (creds, inputs.role_error) {
            (Some(c), _) => docs::role_credentials(c),
            (None, Some((code, message))) => docs::credentials_error_document(code, message, now),
            (None, None) => docs::credentials_error(role, now),
        };
        let last_updated =
            inputs.role_credentials_v2.or(inputs.role_credentials_v1).map_or(now, |c| c.last_updated);
        b.json(&md("iam/info"), docs::iam_info(profile, last_updated));
        b.role_credentials(
            &md(&format!("iam/security-credentials/{role}")),
            document(inputs.role_credentials_v1),
            document(inputs.role_credentials_v2),
        );
    }

    let identity = inputs.identity_credentials;
    let last_updated = identity.map_or(now, |c| c.last_updated);
    b.json(&md("identity-credentials/ec2/info"), docs::identity_credentials_info(&r.owner_id, last_updated));
    let document = match identity {
        Some(c) => docs::role_credentials(c),
        None => docs::credentials_error(IDENTITY_ROLE_NAME, now),
    };
    b.json(&md(&format!("identity-credentials/ec2/security-credentials/{IDENTITY_ROLE_NAME}")), document);
}

/// `network/interfaces/macs/<mac>/…` of one interface
/// (docs/protocol/categories.md#network-interfaces); each key only when it has
/// data.
fn render_interface(b: &mut TreeBuilder, r: &InstanceRecord, nic: &NetworkInterface) {
    let dir = md(&format!("network/interfaces/macs/{}", nic.mac));
    b.rank(&dir, u64::from(nic.device_index));
    let at = |key: &str| format!("{dir}/{key}");

    b.leaf(&at("device-number"), nic.device_index.to_string());
    b.leaf(&at("interface-id"), nic.interface_id.clone());
    b.leaf(&at("mac"), nic.mac.clone());
    b.leaf(&at("network-card"), nic.network_card_index.to_string());
    b.leaf(&at("network-card-index"), nic.network_card_index.to_string());
    b.leaf(&at("owner-id"), nic.owner_id.clone());
    b.leaf(&at("subnet-id"), nic.subnet_id.clone());
    b.leaf(&at("vpc-id"), nic.vpc_id.clone());

    let suffix = r.private_dns_suffix();
    let local_hostname = match nic.private_ipv4s.first() {
        Some(ip) => ip_hostname(*ip, &suffix),
        None => format!("{}.{suffix}", r.instance_id),
    };
    b.leaf(&at("local-hostname"), local_hostname);

    let optional = [
        ("local-ipv4s", lines(&nic.private_ipv4s)),
        ("ipv6s", lines(&nic.ipv6s)),
        ("ipv4-prefix", lines(&nic.ipv4_prefixes)),
        ("ipv6-prefix", lines(&nic.ipv6_prefixes)),
        ("subnet-ipv4-cidr-block", nic.subnet_ipv4_cidr.map(|c| c.to_string())),
        ("subnet-ipv6-cidr-blocks", lines(&nic.subnet_ipv6_cidrs)),
        ("vpc-ipv4-cidr-block", nic.vpc_ipv4_cidrs.first().map(|c| c.to_string())),
        ("vpc-ipv4-cidr-blocks", lines(&nic.vpc_ipv4_cidrs)),
        ("vpc-ipv6-cidr-blocks", lines(&nic.vpc_ipv6_cidrs)),
        ("security-groups", lines(nic.security_groups.iter().map(|g| &g.name))),
        ("security-group-ids", lines(nic.security_groups.iter().map(|g| &g.id))),
    ];
    for (key, value) in optional {
        if let Some(value) = value {
            b.leaf(&at(key), value);
        }
    }

    if let Some(public) = nic.public_ipv4 {
        b.leaf(&at("public-ipv4s"), public.to_string());
        b.leaf(&at("public-hostname"), public_hostname(public, &r.placement.region));
        if let Some(private) = nic.private_ipv4s.first() {
            b.leaf(&at(&format!("ipv4-associations/{public}")), private.to_string());
        }
    }
}

fn render_dynamic(b: &mut TreeBuilder, r: &InstanceRecord, signer: Option<&Arc<RegionSigner>>) {
    let monitoring = if r.monitoring { "enabled" } else { "disabled" };
    b.leaf("dynamic/fws/instance-monitoring", monitoring);
    // One copy shared by the three signers' closures (each signs on first request).
    let document = Bytes::from(docs::identity_document(r));
    if let Some(signer) = signer {
        // Each signs exactly the bytes served at `document`
        // (docs/protocol/categories.md#signatures).
        type SignFn = fn(&RegionSigner, &[u8]) -> Result<String, imds_identity::IdentityError>;
        let kinds: [(&str, SignFn); 3] = [
            ("pkcs7", RegionSigner::pkcs7),
            ("rsa2048", RegionSigner::rsa2048),
            ("signature", RegionSigner::signature),
        ];
        for (name, sign) in kinds {
            let (signer, doc) = (Arc::clone(signer), document.clone());
            b.lazy(
                &format!("dynamic/instance-identity/{name}"),
                LazyLeaf::new(move || match sign(&signer, &doc) {
                    Ok(text) => Some(Bytes::from(text)),
                    Err(e) => {
                        tracing::error!(error = %e, kind = name, "cannot sign the identity document");
                        None
                    }
                }),
            );
        }
    }
    b.leaf("dynamic/instance-identity/document", document);
}

#[cfg(test)]
mod tests {
    use super::*;
    use imds_core::sample::sample_instance;
    use imds_core::{Enabled, InstanceId, PublicKey, SecurityGroup};
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn sample() -> InstanceRecord {
        let id = InstanceId::parse("i-1234567890abcdef0").unwrap();
        sample_instance(id, Ipv4Addr::new(172, 16, 34, 43), None)
    }

    fn creds(key: &str, at: u64) -> RoleCredentials {
        RoleCredentials {
            access_key_id: key.into(),
            secret_access_key: format!("secret-of-{key}"),
            token: format!("token-of-{key}"),
            last_updated: at,
            expiration: at + 6 * 3600,
        }
    }

    const NOW: u64 = 1_700_000_100;

    fn render_with_creds(r: &InstanceRecord) -> MetadataTree {
        let v1 = creds("ASIAV1", 1_700_000_000);
        let v2 = creds("ASIAV2", 1_700_000_050);
        let id = creds("ASIAID", 1_700_000_010);
        let inputs = RenderInputs {
            role_credentials_v1: Some(&v1),
            role_credentials_v2: Some(&v2),
            role_error: None,
            identity_credentials: Some(&id),
            now_secs: NOW,
            events: &[],
            signer: None,
        };
        MetadataTree::render(r, &inputs)
    }

    fn render_without_creds(r: &InstanceRecord) -> MetadataTree {
        let inputs = RenderInputs {
            role_credentials_v1: None,
            role_credentials_v2: None,
            role_error: None,
            identity_credentials: None,
            now_secs: NOW,
            events: &[],
            signer: None,
        };
        MetadataTree::render(r, &inputs)
    }

    fn text(tree: &MetadataTree, path: &str) -> String {
        let node = tree.get(path).unwrap_or_else(|| panic!("{path} missing"));
        String::from_utf8(node.body(true).unwrap().to_vec()).unwrap()
    }

    /// An instance with no role, no key, no public IP, no user data, one
    /// interface, IPv4 only.
    fn bare() -> InstanceRecord {
        let mut r = sample();
        r.iam_instance_profile = None;
        r.key = None;
        r.user_data = None;
        for n in &mut r.network_interfaces {
            n.public_ipv4 = None;
        }
        r
    }

    /// Tags enabled, including keys IMDS cannot expose and an empty value.
    fn tagged() -> InstanceRecord {
        let mut r = sample();
        r.metadata_options.instance_metadata_tags = Enabled::Enabled;
        r.tags.insert("has space".into(), "x".into());
        r.tags.insert("a/b".into(), "x".into());
        r.tags.insert("_index".into(), "x".into());
        r.tags.insert("aws:autoscaling:groupName".into(), "asg".into());
        r.tags.insert("Empty".into(), String::new());
        r
    }

    /// Two interfaces whose MACs sort opposite to their device numbers,
    /// IPv6 addresses and delegated prefixes on both.
    fn dual_stack() -> InstanceRecord {
        let id = InstanceId::parse("i-0123456789abcdef0").unwrap();
        let mut r =
            sample_instance(id, Ipv4Addr::new(10, 0, 0, 12), Some("2001:db8:1234:1a00::12".parse().unwrap()));
        let primary = &mut r.network_interfaces[0];
        primary.mac = "0e:ff:00:00:00:01".into();
        primary.private_ipv4s.push(Ipv4Addr::new(10, 0, 0, 13));
        primary.ipv4_prefixes = vec!["10.1.1.0/28".parse().unwrap()];
        primary.ipv6_prefixes = vec!["2001:db8:1:2::/80".parse().unwrap()];
        primary.vpc_ipv4_cidrs.push("100.64.0.0/16".parse().unwrap());
        primary.security_groups.push(SecurityGroup { id: "sg-0000000000000000a".into(), name: "ssh".into() });
        let mut second = primary.clone();
        second.mac = "0e:00:00:00:00:02".into();
        second.device_index = 1;
        second.network_card_index = 1;
        second.interface_id = "eni-00000000000000002".into();
        second.private_ipv4s = Vec::new();
        second.public_ipv4 = None;
        second.ipv6s = vec!["2001:db8:1234:1a00::99".parse().unwrap()];
        second.subnet_ipv4_cidr = None;
        r.network_interfaces.push(second);
        r
    }

    /// An IPv6-only instance: no private IPv4 anywhere.
    fn ipv6_only() -> InstanceRecord {
        let id = InstanceId::parse("i-0123456789abcdef1").unwrap();
        let mut r = sample_instance(id, Ipv4Addr::UNSPECIFIED, Some(Ipv6Addr::LOCALHOST));
        for n in &mut r.network_interfaces {
            n.private_ipv4s.clear();
            n.public_ipv4 = None;
            n.subnet_ipv4_cidr = None;
        }
        r
    }

    fn fixtures() -> Vec<(&'static str, MetadataTree)> {
        let mut with_user_data = sample();
        with_user_data.user_data = Some(b"#!/bin/sh\necho hi\n".to_vec());
        vec![
            ("sample", render_with_creds(&sample())),
            ("sample without credentials", render_without_creds(&sample())),
            ("bare", render_with_creds(&bare())),
            ("tagged", render_with_creds(&tagged())),
            ("dual stack", render_with_creds(&dual_stack())),
            ("ipv6 only", render_with_creds(&ipv6_only())),
            ("user data", render_with_creds(&with_user_data)),
        ]
    }

    /// Follows listings from the version root like cloud-init does from
    /// `meta-data`: every entry must resolve, directories carry a slash
    /// except the documented exceptions, and nothing is left unreachable.
    fn crawl(name: &str, tree: &MetadataTree) {
        let mut seen = BTreeSet::new();
        let mut queue = vec![String::new()];
        seen.insert(String::new());
        while let Some(dir) = queue.pop() {
            let Some(listing) = tree.get(&dir).filter(Node::is_dir).and_then(|n| n.body(false)) else {
                panic!("{name}: {dir:?} is not a directory");
            };
            let listing = std::str::from_utf8(&listing).unwrap();
            assert!(!listing.is_empty(), "{name}: empty listing at {dir:?}");
            for entry in listing.split('\n') {
                assert!(!entry.is_empty(), "{name}: empty entry in {dir:?}");
                let (segment, claims_dir) = match entry.split_once('=') {
                    // cloud-init turns `0=name` into `0/`.
                    Some((index, _)) if dir == "meta-data/public-keys" => (index, true),
                    _ => match entry.strip_suffix('/') {
                        Some(d) => (d, true),
                        // The version root lists its two trees without a slash.
                        None => (entry, dir.is_empty() && matches!(entry, "dynamic" | "meta-data")),
                    },
                };
                let child = if dir.is_empty() { segment.to_owned() } else { format!("{dir}/{segment}") };
                let node = tree.get(&child).unwrap_or_else(|| panic!("{name}: listed {child:?} is 404"));
                assert_eq!(node.is_dir(), claims_dir, "{name}: {child:?} listed as {entry:?}");
                if seen.insert(child.clone()) && claims_dir {
                    queue.push(child);
                }
            }
        }
        let all: BTreeSet<String> = tree.paths().collect();
        let orphans: Vec<_> = all.difference(&seen).collect();
        assert!(orphans.is_empty(), "{name}: unreachable {orphans:?}");
    }

    fn render_at(r: &InstanceRecord, events: &[InstanceEvent], now: u64) -> MetadataTree {
        let inputs = RenderInputs {
            role_credentials_v1: None,
            role_credentials_v2: None,
            role_error: None,
            identity_credentials: None,
            now_secs: now,
            events,
            signer: None,
        };
        MetadataTree::render(r, &inputs)
    }

    fn ev(id: &str, kind: EventKind, visible_from: u64) -> InstanceEvent {
        InstanceEvent {
            event_id: id.to_owned(),
            instance_id: sample().instance_id,
            kind,
            visible_from,
            canceled_at: None,
        }
    }

    #[test]
    fn maintenance_event_matches_the_documented_layout_and_moves_to_history() {
        use imds_core::events::MaintenanceCode;
        let e = ev(
            "instance-event-0d59937288b749b32",
            EventKind::Maintenance {
                code: MaintenanceCode::SystemReboot,
                description: "scheduled reboot".into(),
                not_before: 1_548_061_243,      // 21 Jan 2019 09:00:43 GMT
                not_after: Some(1_548_062_243), // 21 Jan 2019 09:17:23 GMT
                not_before_deadline: None,
            },
            0,
        );
        let expected = "[\n  {\n    \"NotBefore\" : \"21 Jan 2019 09:00:43 GMT\",\n    \"Code\" : \"system-reboot\",\n    \"Description\" : \"scheduled reboot\",\n    \"EventId\" : \"instance-event-0d59937288b749b32\",\n    \"NotAfter\" : \"21 Jan 2019 09:17:23 GMT\",\n    \"State\" : \"active\"\n  }\n]";
        let before = render_at(&sample(), std::slice::from_ref(&e), 1_548_061_000);
        assert_eq!(text(&before, "meta-data/events/maintenance/scheduled"), expected);
        assert_eq!(text(&before, "meta-data/events/maintenance/history"), "[]");
        let parsed: serde_json::Value = serde_json::from_str(expected).unwrap();
        assert_eq!(parsed[0]["Code"], "system-reboot");
        let after = render_at(&sample(), std::slice::from_ref(&e), 1_548_062_243);
        assert_eq!(text(&after, "meta-data/events/maintenance/scheduled"), "[]");
        let history = text(&after, "meta-data/events/maintenance/history");
        assert!(history.contains("\"Description\" : \"[Completed] scheduled reboot\""), "{history}");
        assert!(history.contains("\"State\" : \"completed\""), "{history}");
        let mut canceled = e.clone();
        canceled.canceled_at = Some(1_548_061_100);
        let c = render_at(&sample(), &[canceled], 1_548_061_200);
        assert!(text(&c, "meta-data/events/maintenance/history").contains("[Canceled] scheduled reboot"));
    }

    #[test]
    fn spot_rebalance_and_lifecycle_appear_only_while_active() {
        use imds_core::events::SpotAction;
        let events = [
            ev(
                "instance-event-00000000000000001",
                EventKind::SpotInterruption { action: SpotAction::Terminate, time: 1_505_722_920 },
                100,
            ),
            ev("instance-event-00000000000000002", EventKind::Rebalance { notice_time: 1_603_786_920 }, 100),
            ev(
                "instance-event-00000000000000003",
                EventKind::TargetLifecycleState { state: "Standby".into() },
                100,
            ),
            ev(
                "instance-event-00000000000000004",
                EventKind::TargetLifecycleState { state: "InService".into() },
                150,
            ),
        ];
        let hidden = render_at(&sample(), &events, 99);
        for p in ["meta-data/spot", "meta-data/events/recommendations", "meta-data/autoscaling"] {
            assert!(hidden.get(p).is_none(), "{p} before the event");
        }
        assert!(!text(&hidden, "meta-data").contains("spot/"));
        let shown = render_at(&sample(), &events, 120);
        assert_eq!(
            text(&shown, "meta-data/spot/instance-action"),
            r#"{"action": "terminate", "time": "2017-09-18T08:22:00Z"}"#
        );
        assert_eq!(text(&shown, "meta-data/spot/termination-time"), "2017-09-18T08:22:00Z");
        assert_eq!(
            text(&shown, "meta-data/events/recommendations/rebalance"),
            r#"{"noticeTime": "2020-10-27T08:22:00Z"}"#
        );
        assert_eq!(text(&shown, "meta-data/autoscaling/target-lifecycle-state"), "Standby");
        assert_eq!(text(&shown, "meta-data/events"), "maintenance/\nrecommendations/");
        crawl("events", &shown);
        let later = render_at(&sample(), &events, 200);
        assert_eq!(text(&later, "meta-data/autoscaling/target-lifecycle-state"), "InService");
        let mut canceled = events.to_vec();
        for e in &mut canceled {
            e.canceled_at = Some(180);
        }
        let gone = render_at(&sample(), &canceled, 200);
        assert!(gone.get("meta-data/spot/instance-action").is_none());
        assert!(gone.get("meta-data/events/recommendations/rebalance").is_none());
        assert!(gone.get("meta-data/autoscaling").is_none());
        crawl("canceled events", &gone);
    }

    #[test]
    fn spot_stop_has_no_termination_time() {
        use imds_core::events::SpotAction;
        let events = [ev(
            "instance-event-00000000000000001",
            EventKind::SpotInterruption { action: SpotAction::Stop, time: 1_505_722_920 },
            0,
        )];
        let t = render_at(&sample(), &events, 10);
        assert_eq!(text(&t, "meta-data/spot"), "instance-action");
    }

    #[test]
    fn crawl_reaches_every_node_and_every_listed_entry_answers() {
        for (name, tree) in fixtures() {
            crawl(name, &tree);
        }
    }

    #[test]
    fn no_body_ends_with_a_newline() {
        for (name, tree) in fixtures() {
            for path in tree.paths().filter(|p| *p != "user-data") {
                let node = tree.get(&path).unwrap();
                for v2 in [false, true] {
                    let body = node.body(v2).unwrap();
                    assert!(!body.ends_with(b"\n"), "{name}: {path} ends with a newline");
                    assert!(!body.starts_with(b"\n"), "{name}: {path} starts with a newline");
                }
            }
        }
    }

    #[test]
    fn top_level_listing_matches_a_real_nitro_instance() {
        let tree = render_with_creds(&sample());
        let expected = "ami-id\nami-launch-index\nami-manifest-path\nblock-device-mapping/\nevents/\nhostname\niam/\nidentity-credentials/\ninstance-action\ninstance-id\ninstance-life-cycle\ninstance-type\nlocal-hostname\nlocal-ipv4\nmac\nmetrics/\nnetwork/\nplacement/\nprofile\npublic-hostname\npublic-ipv4\npublic-keys/\nreservation-id\nsecurity-groups\nservices/\nsystem";
        assert_eq!(text(&tree, "meta-data"), expected);
    }

    #[test]
    fn absent_categories_leave_the_listing_and_answer_404() {
        let tree = render_with_creds(&bare());
        let listing = text(&tree, "meta-data");
        for gone in ["iam/", "public-keys/", "public-hostname", "public-ipv4", "tags/", "ipv6"] {
            assert!(!listing.split('\n').any(|e| e == gone), "{gone} listed");
        }
        for path in [
            "meta-data/iam",
            "meta-data/iam/info",
            "meta-data/iam/security-credentials",
            "meta-data/public-keys",
            "meta-data/public-keys/0/openssh-key",
            "meta-data/public-ipv4",
            "meta-data/public-hostname",
            "meta-data/ipv6",
            "meta-data/kernel-id",
            "meta-data/ramdisk-id",
            "meta-data/product-codes",
            "meta-data/placement/group-name",
            "meta-data/spot",
            "meta-data/network/interfaces/macs/0e:49:61:0f:c3:11/ipv4-associations",
            "meta-data/network/interfaces/macs/0e:49:61:0f:c3:11/public-ipv4s",
            "meta-data/network/interfaces/macs/0e:49:61:0f:c3:11/ipv6s",
            "user-data",
        ] {
            assert!(tree.get(path).is_none(), "{path} should be 404");
        }
        // Identity credentials exist without an instance profile.
        assert!(tree.get("meta-data/identity-credentials/ec2/info").is_some());
    }

    #[test]
    fn version_root_lists_trees_without_slashes() {
        assert_eq!(text(&render_with_creds(&sample()), ""), "dynamic\nmeta-data");
        let mut r = sample();
        r.user_data = Some(b"x".to_vec());
        assert_eq!(text(&render_with_creds(&r), ""), "dynamic\nmeta-data\nuser-data");
    }

    #[test]
    fn dynamic_tree_lists_and_serves_its_documents() {
        let r = sample();
        let tree = render_with_creds(&r);
        assert_eq!(text(&tree, "dynamic"), "fws/\ninstance-identity/");
        assert_eq!(text(&tree, "dynamic/fws"), "instance-monitoring");
        assert_eq!(text(&tree, "dynamic/fws/instance-monitoring"), "disabled");
        assert_eq!(text(&tree, "dynamic/instance-identity/document"), docs::identity_document(&r));
    }

    #[test]
    fn user_data_round_trips_every_byte_value() {
        let mut r = sample();
        let bytes: Vec<u8> = (0..=255u8).collect();
        r.user_data = Some(bytes.clone());
        let tree = render_with_creds(&r);
        let node = tree.get("user-data").unwrap();
        assert_eq!(node.body(false).unwrap().as_ref(), bytes.as_slice());
        assert_eq!(node.content_type(), USER_DATA_CONTENT_TYPE);
    }

    #[test]
    fn empty_user_data_is_absent() {
        let mut r = sample();
        r.user_data = Some(Vec::new());
        let tree = render_with_creds(&r);
        assert!(tree.get("user-data").is_none());
        assert_eq!(text(&tree, ""), "dynamic\nmeta-data");
    }

    #[test]
    fn everything_but_user_data_is_text_plain() {
        let mut r = tagged();
        r.user_data = Some(b"x".to_vec());
        let tree = render_with_creds(&r);
        for path in tree.paths().filter(|p| *p != "user-data") {
            assert_eq!(tree.get(&path).unwrap().content_type(), TEXT_PLAIN, "{path}");
        }
    }

    #[test]
    fn tags_disabled_means_no_tags_at_all() {
        let mut r = tagged();
        r.metadata_options.instance_metadata_tags = Enabled::Disabled;
        let tree = render_with_creds(&r);
        assert!(tree.paths().all(|p| !p.starts_with("meta-data/tags")));
        assert!(!text(&tree, "meta-data").contains("tags"));
    }

    #[test]
    fn tags_enabled_lists_valid_keys_in_byte_order() {
        let tree = render_with_creds(&tagged());
        assert_eq!(text(&tree, "meta-data/tags"), "instance/");
        assert_eq!(
            text(&tree, "meta-data/tags/instance"),
            "Empty\nEnvironment\nName\naws:autoscaling:groupName"
        );
        assert_eq!(text(&tree, "meta-data/tags/instance/Name"), "demo-instance");
        assert_eq!(text(&tree, "meta-data/tags/instance/Empty"), "");
        assert!(tree.get("meta-data/tags/instance/_index").is_none());
        assert!(tree.get("meta-data/tags/instance/has space").is_none());
        assert!(tree.get("meta-data/tags/instance/a").is_none());
    }

    #[test]
    fn tags_enabled_without_valid_keys_is_absent() {
        let mut r = sample();
        r.metadata_options.instance_metadata_tags = Enabled::Enabled;
        r.tags.clear();
        r.tags.insert("bad key".into(), "v".into());
        let tree = render_with_creds(&r);
        assert!(tree.get("meta-data/tags").is_none());
    }

    #[test]
    fn public_keys_use_the_index_equals_name_form() {
        let tree = render_with_creds(&sample());
        assert_eq!(text(&tree, "meta-data/public-keys"), "0=demo-key");
        assert_eq!(text(&tree, "meta-data/public-keys/0"), "openssh-key");
        assert_eq!(
            text(&tree, "meta-data/public-keys/0/openssh-key"),
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHnV3TLlAFs1TcUxAWv9v1n3dtSC0ZjyZ1IFiKxSN8qL demo-key"
        );
    }

    #[test]
    fn key_name_with_a_newline_cannot_break_the_listing() {
        let mut r = sample();
        r.key = Some(PublicKey { name: "evil\nname".into(), openssh_key: "ssh-ed25519 AAAA".into() });
        let tree = render_with_creds(&r);
        assert_eq!(text(&tree, "meta-data/public-keys"), "0/");
        crawl("evil key", &tree);
    }

    #[test]
    fn role_listing_shows_the_role_without_slash_and_serves_both_sets() {
        let tree = render_with_creds(&sample());
        assert_eq!(text(&tree, "meta-data/iam"), "info\nsecurity-credentials/");
        assert_eq!(text(&tree, "meta-data/iam/security-credentials"), "demo-role");
        let node = tree.get("meta-data/iam/security-credentials/demo-role").unwrap();
        let v1 = String::from_utf8(node.body(false).unwrap().to_vec()).unwrap();
        let v2 = String::from_utf8(node.body(true).unwrap().to_vec()).unwrap();
        assert_eq!(v1, docs::role_credentials(&creds("ASIAV1", 1_700_000_000)));
        assert_eq!(v2, docs::role_credentials(&creds("ASIAV2", 1_700_000_050)));
        assert_eq!(node.content_type(), TEXT_PLAIN);
        assert!(tree.get("meta-data/iam/security-credentials/other-role").is_none());
        // iam/info is stamped with the newest credentials.
        let info = text(&tree, "meta-data/iam/info");
        assert!(info.contains("\"LastUpdated\" : \"2023-11-14T22:14:10Z\""), "{info}");
    }

    #[test]
    fn missing_credentials_serve_the_error_document() {
        let tree = render_without_creds(&sample());
        let node = tree.get("meta-data/iam/security-credentials/demo-role").unwrap();
        for v2 in [false, true] {
            let body = String::from_utf8(node.body(v2).unwrap().to_vec()).unwrap();
            assert_eq!(body, docs::credentials_error("demo-role", NOW));
        }
        assert_eq!(
            text(&tree, "meta-data/identity-credentials/ec2/security-credentials/ec2-instance"),
            docs::credentials_error("ec2-instance", NOW)
        );
        assert_eq!(
            text(&tree, "meta-data/identity-credentials/ec2/info"),
            docs::identity_credentials_info("123456789012", NOW)
        );
    }

    #[test]
    fn identity_credentials_are_listed_and_served() {
        let tree = render_with_creds(&sample());
        assert_eq!(text(&tree, "meta-data/identity-credentials"), "ec2/");
        assert_eq!(text(&tree, "meta-data/identity-credentials/ec2"), "info\nsecurity-credentials/");
        assert_eq!(text(&tree, "meta-data/identity-credentials/ec2/security-credentials"), "ec2-instance");
        assert_eq!(
            text(&tree, "meta-data/identity-credentials/ec2/security-credentials/ec2-instance"),
            docs::role_credentials(&creds("ASIAID", 1_700_000_010))
        );
    }

    #[test]
    fn leaves_of_the_sample_instance() {
        let tree = render_with_creds(&sample());
        let expected = [
            ("ami-id", "ami-0a887e401f7654935"),
            ("ami-launch-index", "0"),
            ("ami-manifest-path", "(unknown)"),
            ("block-device-mapping", "ami\nroot"),
            ("block-device-mapping/ami", "/dev/xvda"),
            ("block-device-mapping/root", "/dev/xvda"),
            ("events", "maintenance/"),
            ("events/maintenance", "history\nscheduled"),
            ("events/maintenance/history", "[]"),
            ("events/maintenance/scheduled", "[]"),
            ("hostname", "ip-172-16-34-43.ec2.internal"),
            ("local-hostname", "ip-172-16-34-43.ec2.internal"),
            ("instance-action", "none"),
            ("instance-id", "i-1234567890abcdef0"),
            ("instance-life-cycle", "on-demand"),
            ("instance-type", "m5.large"),
            ("local-ipv4", "172.16.34.43"),
            ("mac", "0e:49:61:0f:c3:11"),
            ("metrics", "vhostmd"),
            ("metrics/vhostmd", "<?xml version=\"1.0\" encoding=\"UTF-8\"?>"),
            ("network", "interfaces/"),
            ("network/interfaces", "macs/"),
            ("network/interfaces/macs", "0e:49:61:0f:c3:11/"),
            ("placement", "availability-zone\navailability-zone-id\nregion"),
            ("placement/availability-zone", "us-east-1a"),
            ("placement/availability-zone-id", "use1-az4"),
            ("placement/region", "us-east-1"),
            ("profile", "default-hvm"),
            ("public-hostname", "ec2-192-0-2-54.compute-1.amazonaws.com"),
            ("public-ipv4", "192.0.2.54"),
            ("reservation-id", "r-1234567890abcdef0"),
            ("security-groups", "default"),
            ("services", "domain\npartition"),
            ("services/domain", "amazonaws.com"),
            ("services/partition", "aws"),
            ("system", "nitro"),
        ];
        for (path, value) in expected {
            assert_eq!(text(&tree, &md(path)), value, "{path}");
        }
    }

    #[test]
    fn interface_keys_of_the_sample_instance() {
        let tree = render_with_creds(&sample());
        let mac = md("network/interfaces/macs/0e:49:61:0f:c3:11");
        assert_eq!(
            text(&tree, &mac),
            "device-number\ninterface-id\nipv4-associations/\nlocal-hostname\nlocal-ipv4s\nmac\nnetwork-card\nnetwork-card-index\nowner-id\npublic-hostname\npublic-ipv4s\nsecurity-group-ids\nsecurity-groups\nsubnet-id\nsubnet-ipv4-cidr-block\nvpc-id\nvpc-ipv4-cidr-block\nvpc-ipv4-cidr-blocks"
        );
        let expected = [
            ("device-number", "0"),
            ("interface-id", "eni-1234567890abcdef0"),
            ("ipv4-associations", "192.0.2.54"),
            ("ipv4-associations/192.0.2.54", "172.16.34.43"),
            ("local-hostname", "ip-172-16-34-43.ec2.internal"),
            ("local-ipv4s", "172.16.34.43"),
            ("mac", "0e:49:61:0f:c3:11"),
            ("network-card", "0"),
            ("network-card-index", "0"),
            ("owner-id", "123456789012"),
            ("public-hostname", "ec2-192-0-2-54.compute-1.amazonaws.com"),
            ("public-ipv4s", "192.0.2.54"),
            ("security-group-ids", "sg-0b07f8f6cb485d4df"),
            ("security-groups", "default"),
            ("subnet-id", "subnet-be9b61d7"),
            ("subnet-ipv4-cidr-block", "172.16.0.0/16"),
            ("vpc-id", "vpc-d295a6a7"),
            ("vpc-ipv4-cidr-block", "172.16.0.0/16"),
            ("vpc-ipv4-cidr-blocks", "172.16.0.0/16"),
        ];
        for (key, value) in expected {
            assert_eq!(text(&tree, &format!("{mac}/{key}")), value, "{key}");
        }
    }

    #[test]
    fn macs_are_listed_by_device_number() {
        let tree = render_with_creds(&dual_stack());
        assert_eq!(
            text(&tree, "meta-data/network/interfaces/macs"),
            "0e:ff:00:00:00:01/\n0e:00:00:00:00:02/"
        );
        // Independent of the order of interfaces in the record.
        let mut reversed = dual_stack();
        reversed.network_interfaces.reverse();
        assert_eq!(
            text(&render_with_creds(&reversed), "meta-data/network/interfaces/macs"),
            "0e:ff:00:00:00:01/\n0e:00:00:00:00:02/"
        );
    }

    #[test]
    fn ipv6_and_prefixes_are_served_per_interface() {
        let tree = render_with_creds(&dual_stack());
        assert_eq!(text(&tree, "meta-data/ipv6"), "2001:db8:1234:1a00::12");
        let first = md("network/interfaces/macs/0e:ff:00:00:00:01");
        assert_eq!(text(&tree, &format!("{first}/ipv6s")), "2001:db8:1234:1a00::12");
        assert_eq!(text(&tree, &format!("{first}/ipv4-prefix")), "10.1.1.0/28");
        assert_eq!(text(&tree, &format!("{first}/ipv6-prefix")), "2001:db8:1:2::/80");
        assert_eq!(text(&tree, &format!("{first}/local-ipv4s")), "10.0.0.12\n10.0.0.13");
        assert_eq!(text(&tree, &format!("{first}/vpc-ipv4-cidr-blocks")), "172.16.0.0/16\n100.64.0.0/16");
        assert_eq!(text(&tree, &format!("{first}/subnet-ipv6-cidr-blocks")), "2001:db8:1234:1a00::/64");
        assert_eq!(text(&tree, &format!("{first}/vpc-ipv6-cidr-blocks")), "2001:db8:1234::/56");
        assert_eq!(
            text(&tree, &format!("{first}/security-group-ids")),
            "sg-0b07f8f6cb485d4df\nsg-0000000000000000a"
        );
        assert_eq!(text(&tree, &format!("{first}/security-groups")), "default\nssh");
        assert_eq!(text(&tree, "meta-data/security-groups"), "default\nssh");

        let second = md("network/interfaces/macs/0e:00:00:00:00:02");
        assert_eq!(text(&tree, &format!("{second}/device-number")), "1");
        assert_eq!(text(&tree, &format!("{second}/network-card")), "1");
        assert_eq!(text(&tree, &format!("{second}/local-hostname")), "i-0123456789abcdef0.ec2.internal");
        for absent in ["local-ipv4s", "public-ipv4s", "ipv4-associations", "subnet-ipv4-cidr-block"] {
            assert!(tree.get(&format!("{second}/{absent}")).is_none(), "{absent}");
        }
    }

    #[test]
    fn ipv6_only_instance_has_no_local_ipv4() {
        let tree = render_with_creds(&ipv6_only());
        assert!(tree.get("meta-data/local-ipv4").is_none());
        assert_eq!(text(&tree, "meta-data/ipv6"), "::1");
        assert_eq!(text(&tree, "meta-data/hostname"), "i-0123456789abcdef1.ec2.internal");
    }

    #[test]
    fn optional_identity_values_appear_when_set() {
        let mut r = sample();
        r.kernel_id = Some("aki-5c21674b".into());
        r.ramdisk_id = Some("ari-01bb5768".into());
        r.product_codes = vec!["3iplms73etrdhxdepv72l6ywj".into(), "second".into()];
        r.placement.group_name = Some("a-placement-group".into());
        r.placement.partition_number = Some(1);
        r.placement.host_id = Some("h-0da999999f9999fb9".into());
        r.monitoring = true;
        let tree = render_with_creds(&r);
        assert_eq!(text(&tree, "meta-data/kernel-id"), "aki-5c21674b");
        assert_eq!(text(&tree, "meta-data/ramdisk-id"), "ari-01bb5768");
        assert_eq!(text(&tree, "meta-data/product-codes"), "3iplms73etrdhxdepv72l6ywj\nsecond");
        assert_eq!(text(&tree, "meta-data/profile"), "default-paravirtual");
        assert_eq!(
            text(&tree, "meta-data/placement"),
            "availability-zone\navailability-zone-id\ngroup-name\nhost-id\npartition-number\nregion"
        );
        assert_eq!(text(&tree, "dynamic/fws/instance-monitoring"), "enabled");
        crawl("optional", &tree);
    }

    #[test]
    fn client_spellings_of_a_path_reach_the_same_node() {
        use crate::path::{Route, normalise};
        let mut r = tagged();
        r.user_data = Some(b"data".to_vec());
        let tree = render_with_creds(&r);
        let cases = [
            ("/latest/meta-data/placement/availability-zone/", "us-east-1a"),
            ("/latest//meta-data/reservation-id", "r-1234567890abcdef0"),
            ("//latest/meta-data/instance-id", "i-1234567890abcdef0"),
            ("/2021-03-23/meta-data/instance-id", "i-1234567890abcdef0"),
            ("/latest/meta-data/tags/instance", "Empty\nEnvironment\nName\naws:autoscaling:groupName"),
            ("/latest/meta-data/tags/instance/", "Empty\nEnvironment\nName\naws:autoscaling:groupName"),
            ("/latest/meta-data/tags/instance/aws%3Aautoscaling%3AgroupName", "asg"),
            ("/latest/user-data/", "data"),
            ("/latest/", "dynamic\nmeta-data\nuser-data"),
            ("/latest", "dynamic\nmeta-data\nuser-data"),
        ];
        for (raw, expected) in cases {
            let normal = normalise(raw).unwrap();
            let Route::Tree(path) = normal.route() else {
                panic!("{raw} does not route into the tree");
            };
            assert_eq!(text(&tree, path), expected, "{raw}");
        }
    }

    #[test]
    fn builder_derives_listings_and_resolves_conflicts() {
        let mut b = TreeBuilder::new();
        b.leaf("a/b", "1")
            .leaf("a", "shadowed by the directory")
            .leaf("a/c/d", "2")
            .leaf("z", "3")
            .leaf("bad//path", "x")
            .leaf("bad/../path", "x")
            .leaf("bad/new\nline", "x")
            .label("nowhere", "ghost")
            .rank("z", 0);
        let tree = b.build();
        assert_eq!(text(&tree, ""), "a/\nz");
        assert_eq!(text(&tree, "a"), "b\nc/");
        assert_eq!(text(&tree, "a/c"), "d");
        assert!(tree.get("bad").is_none());
        assert_eq!(tree.len(), 6);
        crawl("builder", &tree);
    }

    #[test]
    fn paths_below_a_leaf_or_with_empty_segments_are_absent() {
        let tree = render_with_creds(&sample());
        for path in [
            "meta-data/instance-id/x",
            "meta-data//instance-id",
            "meta-data/",
            "/meta-data",
            "meta-data/placement/region/",
            "meta-dat",
            "meta-data/instance-idx",
            "dynamic/instance-identity/document/more",
        ] {
            assert!(tree.get(path).is_none(), "{path:?}");
        }
        assert!(tree.get("meta-data/placement").unwrap().is_dir());
        assert!(!tree.get("meta-data/placement/region").unwrap().is_dir());
    }

    #[test]
    fn builder_ranks_sort_before_names() {
        let mut b = TreeBuilder::new();
        b.leaf("d/x/v", "1").leaf("d/y/v", "1").rank("d/x", 2).rank("d/y", 1);
        assert_eq!(text(&b.build(), "d"), "y/\nx/");
    }

    #[test]
    fn empty_builder_has_no_root() {
        let tree = TreeBuilder::new().build();
        assert!(tree.is_empty());
        assert!(tree.get("").is_none());
    }

    #[test]
    fn debug_output_hides_credentials() {
        let tree = render_with_creds(&sample());
        let node = tree.get("meta-data/iam/security-credentials/demo-role").unwrap();
        let shown = format!("{node:?} {tree:?}");
        assert!(!shown.contains("secret-of"), "{shown}");
    }
}
