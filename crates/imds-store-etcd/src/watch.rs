//! Prefix watches that outlive the member serving them.
//!
//! etcd-client's watch stream ends for good when the member behind it dies
//! (`h2 protocol error`, `channel closed`) or loses its leader (we send
//! `hasleader`, so the member cancels it). A task per watch re-creates the
//! stream from the last delivered revision + 1 — etcd replays history from
//! there, so nothing is lost or repeated — and reports
//! [`WatchMessage::Compacted`] only when that revision has been compacted
//! meanwhile. Events at revisions already delivered are dropped, so a
//! replay can never deliver one twice.
//!
//! A watch lives until its receiver is dropped (its task holds the etcd
//! client, so dropping the [`EtcdStore`] does not end it), until it is
//! compacted, or until it cannot be re-created for
//! [`EtcdOptions::watch_reconnect_window`](crate::EtcdOptions::watch_reconnect_window):
//! then its channel closes and the caller re-creates it from the last seen
//! revision + 1, as for any Store.
//!
//! This module does not own retries of unary calls (`Inner::call`) nor the
//! mapping of etcd errors (the `error` module).

use std::sync::Arc;
use std::time::Duration;

use etcd_client::{EventType, WatchOptions, WatchResponse, WatchStream};
use imds_store::{Revision, StoreError, WatchEvent, WatchMessage, WatchReceiver};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::error::Failure;
use crate::{EtcdStore, Inner, MAX_DECODING_MESSAGE, bump, to_etcd, to_store};

/// Messages buffered between the etcd stream and a slow receiver; beyond
/// it the task stops reading, and etcd holds the rest (it never drops
/// events of a slow watcher, it replays them later).
const CHANNEL: usize = 256;

/// First pause before re-creating a broken stream; doubled up to
/// [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(50);

/// Longest pause between two attempts to re-create a stream.
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// The etcd key range of one watch.
#[derive(Clone)]
struct Range {
    key: Vec<u8>,
    end: Vec<u8>,
}

/// Opens the watch: resolves `from` (0 is "after the current revision"),
/// creates the first stream (so a dead cluster is an error here, not a
/// silent empty watch), and hands it to a task.
pub(crate) async fn start(
    store: &EtcdStore,
    prefix: &str,
    from: Revision,
) -> Result<WatchReceiver, StoreError> {
    let inner = Arc::clone(store.inner());
    let (key, end) = inner.prefix_range(prefix);
    let range = Range { key, end };
    // etcd revision of the first event still to deliver.
    let next = if from == 0 { to_etcd(store.current_revision().await?) + 1 } else { to_etcd(from) };
    let (stream, pending) = open(&inner, &range, next).await.map_err(|f| inner.fail(f, false))?;
    let (tx, rx) = mpsc::channel(CHANNEL);
    tokio::spawn(run(inner, range, next, stream, pending, tx));
    Ok(rx)
}

/// Creates a watch stream from etcd revision `next` and waits for its
/// `created` answer (any other first answer is returned to be processed).
async fn open(
    inner: &Inner,
    range: &Range,
    next: i64,
) -> Result<(WatchStream, Option<WatchResponse>), Failure> {
    inner
        .call(false, |client| {
            let range = range.clone();
            async move {
                let options = WatchOptions::new().with_range(range.end).with_start_revision(next);
                let mut stream = client
                    .watch_client()
                    .max_decoding_message_size(MAX_DECODING_MESSAGE)
                    .watch(range.key, Some(options))
                    .await?;
                match stream.message().await? {
                    Some(response) if response.created() && !response.canceled() => Ok((stream, None)),
                    Some(response) => Ok((stream, Some(response))),
                    None => {
                        Err(etcd_client::Error::WatchError("watch stream ended before it was created".into()))
                    }
                }
            }
        })
        .await
}

/// Why [`pump`] returned.
enum Pumped {
    /// The receiver is gone or the watch was compacted: the task ends.
    Done,
    /// The stream broke; re-create it.
    Broken(String),
}

/// The watch task: pumps streams until the receiver goes away, re-creating
/// them when they break.
async fn run(
    inner: Arc<Inner>,
    range: Range,
    mut next: i64,
    mut stream: WatchStream,
    mut pending: Option<WatchResponse>,
    tx: mpsc::Sender<WatchMessage>,
) {
    loop {
        let reason = match pump(&inner, &mut next, &mut stream, pending.take(), &tx).await {
            Pumped::Done => return,
            Pumped::Broken(reason) => reason,
        };
        drop(stream);
        bump(&inner.counters.watch_restarts);
        tracing::info!(%reason, next, "etcd watch stream broke; re-creating it");
        let began = Instant::now();
        let mut delay = FIRST_BACKOFF;
        (stream, pending) = loop {
            let attempt = tokio::select! {
                () = tx.closed() => return,
                attempt = open(&inner, &range, next) => attempt,
            };
            match attempt {
                Ok(opened) => break opened,
                Err(failure) if began.elapsed() >= inner.options.watch_reconnect_window => {
                    tracing::warn!(error = %failure.message, "etcd watch could not be re-created; ending it");
                    return;
                }
                Err(failure) => {
                    tracing::debug!(error = %failure.message, "etcd watch re-creation failed; retrying");
                    tokio::select! {
                        () = tx.closed() => return,
                        () = tokio::time::sleep(delay) => {}
                    }
                    delay = (delay * 2).min(MAX_BACKOFF);
                }
            }
        };
    }
}

/// Forwards one stream's events until it breaks or the watch is over.
async fn pump(
    inner: &Inner,
    next: &mut i64,
    stream: &mut WatchStream,
    mut pending: Option<WatchResponse>,
    tx: &mpsc::Sender<WatchMessage>,
) -> Pumped {
    loop {
        let response = match pending.take() {
            Some(response) => response,
            None => {
                let message = tokio::select! {
                    () = tx.closed() => return Pumped::Done,
                    message = stream.message() => message,
                };
                match message {
                    Ok(Some(response)) => response,
                    Ok(None) => return Pumped::Broken("stream ended".to_owned()),
                    Err(e) => return Pumped::Broken(e.to_string()),
                }
            }
        };
        // etcd 3.4 cancels a compacted watch with an empty cancel_reason:
        // compact_revision is the signal.
        if response.compact_revision() != 0 {
            let compact_revision = to_store(response.compact_revision());
            // The task ends either way; a gone receiver needs no message.
            let _ = tx.send(WatchMessage::Compacted { compact_revision }).await;
            return Pumped::Done;
        }
        if response.canceled() {
            return Pumped::Broken(format!("watch canceled: {}", response.cancel_reason()));
        }
        let mut events = Vec::with_capacity(response.events().len());
        let mut last = *next - 1;
        for event in response.events() {
            let Some(kv) = event.kv() else { continue };
            if kv.mod_revision() < *next {
                continue; // Already delivered before the stream was re-created.
            }
            last = kv.mod_revision();
            // etcd has only these two event types.
            let converted = match event.event_type() {
                EventType::Put => inner.key_value(kv).map(WatchEvent::Put),
                EventType::Delete => inner
                    .relative_key(kv.key())
                    .map(|key| WatchEvent::Delete { key, mod_revision: to_store(kv.mod_revision()) }),
            };
            match converted {
                Ok(event) => events.push(event),
                Err(e) => {
                    tracing::warn!(error = %e, "skipping an etcd watch event this store cannot represent")
                }
            }
        }
        if last >= *next {
            *next = last + 1;
            if !events.is_empty() {
                let message = WatchMessage::Events { revision: to_store(last), events };
                if tx.send(message).await.is_err() {
                    return Pumped::Done;
                }
            }
        }
    }
}
