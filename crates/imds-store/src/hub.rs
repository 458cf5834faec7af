//! Watch fan-out for the embedded backends: a bounded in-memory history of
//! recent revisions plus a broadcast channel of live commits.
//!
//! Backends call [`Hub::publish`] after each durable commit, in revision
//! order (they hold their commit-ordering lock while doing so). Publishing
//! and subscribing both happen under the hub's lock, so a new watch gets the
//! replayed history up to some revision and then exactly the live commits
//! after it: no gap, no duplicate. A watcher that lags behind the broadcast
//! buffer resumes from the history the same way; only one that fell out of
//! the history gets [`WatchMessage::Compacted`].
//!
//! This module owns no data, only the change log kept for watches.

use crate::{Revision, StoreError, WatchEvent, WatchMessage, WatchReceiver};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use tokio::sync::{broadcast, mpsc};

/// Live commits buffered per watcher before it counts as lagging (it then
/// resumes from the history).
const BROADCAST_CAPACITY: usize = 256;

/// Messages buffered between a watch's forwarding task and its receiver.
const WATCH_CHANNEL_CAPACITY: usize = 64;

/// One committed revision and its changes.
#[derive(Debug)]
pub(crate) struct Committed {
    revision: Revision,
    events: Vec<WatchEvent>,
}

struct State {
    /// Consecutive revisions `first_available..=current`.
    history: VecDeque<Arc<Committed>>,
    /// Oldest revision a watch can start from.
    first_available: Revision,
    /// Last published revision.
    current: Revision,
    sender: broadcast::Sender<Arc<Committed>>,
}

/// Where a watcher continues from.
struct Resumed {
    next: Revision,
    backlog: VecDeque<Arc<Committed>>,
    live: broadcast::Receiver<Arc<Committed>>,
}

struct Shared {
    state: Mutex<State>,
    capacity: usize,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing panics while holding this lock; if something ever did, the
        // state is still a valid log, so keep serving.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The history from `next` (0: the next revision), a receiver for
    /// everything after it, and the effective `next`, taken atomically;
    /// `Err(first_available)` when `next` is too old.
    fn resume(&self, next: Revision) -> Result<Resumed, Revision> {
        let state = self.lock();
        let next = if next == 0 { state.current + 1 } else { next };
        if next < state.first_available {
            return Err(state.first_available);
        }
        let backlog = state.history.iter().filter(|c| c.revision >= next).cloned().collect();
        Ok(Resumed { next, backlog, live: state.sender.subscribe() })
    }
}

/// The watch fan-out of one store.
pub(crate) struct Hub {
    shared: Arc<Shared>,
}

impl Hub {
    /// A hub for a store at revision `current`, keeping up to `capacity`
    /// revisions of history. Revisions up to `current` are not replayable.
    pub(crate) fn new(current: Revision, capacity: usize) -> Self {
        let (sender, _) = broadcast::channel(BROADCAST_CAPACITY);
        let state =
            State { history: VecDeque::new(), first_available: current.saturating_add(1), current, sender };
        Self { shared: Arc::new(Shared { state: Mutex::new(state), capacity }) }
    }

    /// Records a durable commit. Must be called in revision order, once per
    /// revision, by the holder of the backend's commit lock.
    pub(crate) fn publish(&self, revision: Revision, events: Vec<WatchEvent>) {
        let committed = Arc::new(Committed { revision, events });
        let mut state = self.shared.lock();
        if revision != state.current + 1 {
            tracing::error!(revision, current = state.current, "store revisions published out of order");
        }
        state.current = revision;
        state.history.push_back(Arc::clone(&committed));
        while state.history.len() > self.shared.capacity {
            state.history.pop_front();
        }
        state.first_available = state.history.front().map_or(revision + 1, |c| c.revision);
        // No receivers is fine: nobody is watching.
        let _ = state.sender.send(committed);
    }

    /// Starts a watch of `prefix` from `from` (0: from the next revision).
    /// Needs a tokio runtime, which runs the watch's forwarding task.
    pub(crate) fn watch(&self, prefix: String, from: Revision) -> Result<WatchReceiver, StoreError> {
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| StoreError::Backend("a watch needs a tokio runtime".to_owned()))?;
        let (out, receiver) = mpsc::channel(WATCH_CHANNEL_CAPACITY);
        match self.shared.resume(from) {
            Ok(resumed) => {
                let weak = Arc::downgrade(&self.shared);
                runtime.spawn(forward(weak, prefix, resumed, out));
            }
            Err(compact_revision) => {
                // A fresh channel has room for one message.
                let _ = out.try_send(WatchMessage::Compacted { compact_revision });
            }
        }
        Ok(receiver)
    }
}

/// Delivers the backlog, then live commits, to one watcher; resumes from
/// the history after a broadcast lag. Ends when the receiver is dropped, the
/// store is dropped, or after sending `Compacted`.
async fn forward(hub: Weak<Shared>, prefix: String, resumed: Resumed, out: mpsc::Sender<WatchMessage>) {
    let Resumed { mut next, mut backlog, mut live } = resumed;
    loop {
        while let Some(committed) = backlog.pop_front() {
            if !deliver(&committed, &prefix, &mut next, &out).await {
                return;
            }
        }
        let received = tokio::select! {
            _ = out.closed() => return,
            received = live.recv() => received,
        };
        match received {
            Ok(committed) => {
                if !deliver(&committed, &prefix, &mut next, &out).await {
                    return;
                }
            }
            Err(broadcast::error::RecvError::Closed) => return,
            Err(broadcast::error::RecvError::Lagged(_)) => {
                let Some(shared) = hub.upgrade() else { return };
                match shared.resume(next) {
                    Ok(resumed) => {
                        backlog = resumed.backlog;
                        live = resumed.live;
                    }
                    Err(compact_revision) => {
                        tracing::debug!(next, compact_revision, "watcher fell out of the history");
                        let _ = out.send(WatchMessage::Compacted { compact_revision }).await;
                        return;
                    }
                }
            }
        }
    }
}

/// Sends the prefix's share of one revision if it is at or after `next`;
/// false when the receiver is gone.
async fn deliver(
    committed: &Committed,
    prefix: &str,
    next: &mut Revision,
    out: &mpsc::Sender<WatchMessage>,
) -> bool {
    if committed.revision < *next {
        return true;
    }
    *next = committed.revision + 1;
    let events: Vec<WatchEvent> =
        committed.events.iter().filter(|e| e.key().starts_with(prefix)).cloned().collect();
    if events.is_empty() {
        return true;
    }
    out.send(WatchMessage::Events { revision: committed.revision, events }).await.is_ok()
}
