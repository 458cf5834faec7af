//! The typed layer: where each record lives in the key space and how it is
//! encoded. The control plane and the agents use these helpers rather than
//! raw keys, so the layout is defined in exactly one place.
//!
//! | key | value | written by |
//! | --- | --- | --- |
//! | `instances/<instance-id>` | JSON [`InstanceRecord`] (the spec) | control plane |
//! | `status/<instance-id>` | JSON [`InstanceStatus`] | the serving agent |
//! | `secrets/token-keys/<host-id>` | opaque bytes (the token key ring) | its owner |
//! | `meta/demo-instance` | marker | `imdsd serve --demo` |
//!
//! A value that does not decode is reported as [`StoreError::Corrupt`] with
//! its key, never a panic. This module does not decide *when* to write
//! (generations, placement, retries belong to the control plane and agent).

use crate::{Compare, Op, Revision, Store, StoreError};
use imds_core::{InstanceId, InstanceRecord};
use serde::{Deserialize, Serialize};

/// Prefix of instance specs: `instances/<instance-id>`.
pub const INSTANCES_PREFIX: &str = "instances/";
/// Prefix of instance statuses: `status/<instance-id>`.
pub const STATUS_PREFIX: &str = "status/";
/// Prefix of every secret; nothing under it may be logged or served.
pub const SECRETS_PREFIX: &str = "secrets/";
/// Prefix of token key rings: `secrets/token-keys/<host-id>`.
pub const TOKEN_KEYS_PREFIX: &str = "secrets/token-keys/";
/// Prefix of live hosts: `hosts/<host-id>`, each under its agent's lease.
pub const HOSTS_PREFIX: &str = "hosts/";
/// Prefix of instance events: `events/<instance-id>/<event-id>`.
pub const EVENTS_PREFIX: &str = "events/";
/// Prefix of per-region identity signing keys: `secrets/identity-keys/<region>`.
pub const IDENTITY_KEYS_PREFIX: &str = "secrets/identity-keys/";
/// Marker that the demo instance was created once (so deleting it sticks).
pub const DEMO_INSTANCE_KEY: &str = "meta/demo-instance";

/// How many times [`put_secret_if_absent`] retries when the key is deleted
/// between its failed create and its read.
const SECRET_ATTEMPTS: usize = 8;

/// What the agent serving an instance reports back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceStatus {
    /// The spec generation the agent serves.
    pub observed_generation: u64,
    /// The host (`h-…`) whose agent serves the instance.
    pub host_id: String,
    /// When that generation started being served, Unix milliseconds.
    pub applied_at_millis: u64,
}

/// `instances/<id>`
pub fn instance_key(id: &InstanceId) -> String {
    format!("{INSTANCES_PREFIX}{id}")
}

/// `status/<id>`
pub fn status_key(id: &InstanceId) -> String {
    format!("{STATUS_PREFIX}{id}")
}

/// `secrets/token-keys/<host-id>`
pub fn token_keys_key(host_id: &str) -> String {
    format!("{TOKEN_KEYS_PREFIX}{host_id}")
}

/// `hosts/<host-id>`
pub fn host_key(host_id: &str) -> String {
    format!("{HOSTS_PREFIX}{host_id}")
}

/// `events/<instance-id>/<event-id>`
pub fn event_key(instance_id: &InstanceId, event_id: &str) -> String {
    format!("{EVENTS_PREFIX}{instance_id}/{event_id}")
}

/// `secrets/identity-keys/<region>`
pub fn identity_keys_key(region: &str) -> String {
    format!("{IDENTITY_KEYS_PREFIX}{region}")
}

/// Every event of every instance, at one revision.
pub async fn list_events(
    store: &dyn Store,
) -> Result<(Vec<imds_core::events::InstanceEvent>, Revision), StoreError> {
    let (kvs, revision) = store.list(EVENTS_PREFIX).await?;
    let events = kvs.iter().map(|kv| decode(&kv.key, &kv.value)).collect::<Result<Vec<_>, _>>()?;
    Ok((events, revision))
}

/// The instance id in an `instances/…` or `status/…` key (for watch events,
/// deletes carry only the key).
pub fn instance_id_from_key(key: &str) -> Option<InstanceId> {
    let id = key.strip_prefix(INSTANCES_PREFIX).or_else(|| key.strip_prefix(STATUS_PREFIX))?;
    InstanceId::parse(id).ok()
}

/// Decodes a JSON record, naming the key when it does not decode.
pub fn decode<T: for<'de> Deserialize<'de>>(key: &str, value: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(value)
        .map_err(|e| StoreError::Corrupt { key: key.to_owned(), reason: e.to_string() })
}

fn encode<T: Serialize>(key: &str, value: &T) -> Result<Vec<u8>, StoreError> {
    // Our record types always serialise; a failure would be a bug, reported
    // as a backend error rather than a panic.
    serde_json::to_vec(value)
        .map_err(|e| StoreError::Backend(format!("cannot encode record for {key:?}: {e}")))
}

/// Decodes an instance spec and checks that it is stored under its own id.
pub fn decode_instance(key: &str, value: &[u8]) -> Result<InstanceRecord, StoreError> {
    let record: InstanceRecord = decode(key, value)?;
    if key != instance_key(&record.instance_id) {
        return Err(StoreError::Corrupt {
            key: key.to_owned(),
            reason: format!("holds the record of {}", record.instance_id),
        });
    }
    Ok(record)
}

/// The spec of `id` and its `mod_revision` (the `expected` value for the
/// next [`put_instance_if`]).
pub async fn get_instance(
    store: &dyn Store,
    id: &InstanceId,
) -> Result<Option<(InstanceRecord, Revision)>, StoreError> {
    let key = instance_key(id);
    match store.get(&key).await? {
        Some(kv) => Ok(Some((decode_instance(&kv.key, &kv.value)?, kv.mod_revision))),
        None => Ok(None),
    }
}

/// Every spec with its `mod_revision`, in id order, at one revision (watch
/// [`INSTANCES_PREFIX`] from that revision + 1 to follow changes).
pub async fn list_instances(
    store: &dyn Store,
) -> Result<(Vec<(InstanceRecord, Revision)>, Revision), StoreError> {
    let (kvs, revision) = store.list(INSTANCES_PREFIX).await?;
    let records = kvs
        .iter()
        .map(|kv| Ok((decode_instance(&kv.key, &kv.value)?, kv.mod_revision)))
        .collect::<Result<Vec<_>, StoreError>>()?;
    Ok((records, revision))
}

/// Writes a spec if nobody changed it meanwhile: with `expected = None`
/// only if the instance does not exist yet, else only if its `mod_revision`
/// is still `expected`. `Ok(None)` when the condition failed (re-read and
/// retry); `Ok(Some(revision))` once durable.
pub async fn put_instance_if(
    store: &dyn Store,
    record: &InstanceRecord,
    expected: Option<Revision>,
) -> Result<Option<Revision>, StoreError> {
    let key = instance_key(&record.instance_id);
    let value = encode(&key, record)?;
    let compare = match expected {
        None => Compare::Absent(key.clone()),
        Some(revision) => Compare::ModRevision(key.clone(), revision),
    };
    store.txn(vec![compare], vec![Op::Put { key, value }]).await
}

/// Deletes a spec and its status together if the spec's `mod_revision` is
/// still `expected`; `Ok(None)` when it changed meanwhile.
pub async fn delete_instance_if(
    store: &dyn Store,
    id: &InstanceId,
    expected: Revision,
) -> Result<Option<Revision>, StoreError> {
    let key = instance_key(id);
    store
        .txn(
            vec![Compare::ModRevision(key.clone(), expected)],
            vec![Op::Delete { key }, Op::Delete { key: status_key(id) }],
        )
        .await
}

/// Records the status of `id` (unconditionally: one agent serves an
/// instance at a time). Returns the revision of the write.
pub async fn put_status(
    store: &dyn Store,
    id: &InstanceId,
    status: &InstanceStatus,
) -> Result<Revision, StoreError> {
    let key = status_key(id);
    let value = encode(&key, status)?;
    store
        .txn(Vec::new(), vec![Op::Put { key: key.clone(), value }])
        .await?
        .ok_or_else(|| StoreError::Backend(format!("unconditional write of {key:?} was refused")))
}

/// The status of `id` and its `mod_revision`, if an agent reported one.
pub async fn get_status(
    store: &dyn Store,
    id: &InstanceId,
) -> Result<Option<(InstanceStatus, Revision)>, StoreError> {
    let key = status_key(id);
    match store.get(&key).await? {
        Some(kv) => Ok(Some((decode(&kv.key, &kv.value)?, kv.mod_revision))),
        None => Ok(None),
    }
}

/// Every reported status by instance id, at one revision. Keys that are not
/// instance ids are reported as corrupt.
pub async fn list_statuses(
    store: &dyn Store,
) -> Result<(Vec<(InstanceId, InstanceStatus)>, Revision), StoreError> {
    let (kvs, revision) = store.list(STATUS_PREFIX).await?;
    let statuses = kvs
        .iter()
        .map(|kv| {
            let id = instance_id_from_key(&kv.key).ok_or_else(|| StoreError::Corrupt {
                key: kv.key.clone(),
                reason: "not an instance id".to_owned(),
            })?;
            Ok((id, decode(&kv.key, &kv.value)?))
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    Ok((statuses, revision))
}

/// The opaque value at `key` (a secret or a marker), if present.
pub async fn get_secret(store: &dyn Store, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
    Ok(store.get(key).await?.map(|kv| kv.value))
}

/// Stores `value` at `key` unless something is already there, and returns
/// what is stored afterwards: `value`, or the value that was already present.
/// Two processes starting at once thus agree on one key ring.
pub async fn put_secret_if_absent(
    store: &dyn Store,
    key: &str,
    value: Vec<u8>,
) -> Result<Vec<u8>, StoreError> {
    for _ in 0..SECRET_ATTEMPTS {
        let created = store
            .txn(
                vec![Compare::Absent(key.to_owned())],
                vec![Op::Put { key: key.to_owned(), value: value.clone() }],
            )
            .await?;
        if created.is_some() {
            return Ok(value);
        }
        if let Some(existing) = store.get(key).await? {
            return Ok(existing.value);
        }
        // Deleted between our create attempt and our read: try again.
    }
    Err(StoreError::Backend(format!("{key:?} keeps being created and deleted")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conformance::ok;
    use imds_core::sample::sample_instance;
    use std::net::Ipv4Addr;
    use std::sync::Arc;

    fn id(s: &str) -> InstanceId {
        InstanceId::parse(s).unwrap()
    }

    fn record(instance: &str) -> InstanceRecord {
        sample_instance(id(instance), Ipv4Addr::new(10, 0, 0, 12), None)
    }

    async fn spec_is_created_once_then_updated_by_revision(store: Arc<dyn Store>) {
        let store = store.as_ref();
        let mut rec = record("i-1234567890abcdef0");
        let r1 = ok(put_instance_if(store, &rec, None).await).unwrap();
        // Create-if-absent refuses a second create.
        assert_eq!(ok(put_instance_if(store, &rec, None).await), None);
        rec.generation = 2;
        let r2 = ok(put_instance_if(store, &rec, Some(r1)).await).unwrap();
        // A writer holding the old revision loses.
        rec.generation = 3;
        assert_eq!(ok(put_instance_if(store, &rec, Some(r1)).await), None);
        let (stored, at) = ok(get_instance(store, &rec.instance_id).await).unwrap();
        assert_eq!((stored.generation, at), (2, r2));

        let other = record("i-0badc0de");
        ok(put_instance_if(store, &other, None).await).unwrap();
        let (all, revision) = ok(list_instances(store).await);
        let ids: Vec<_> = all.iter().map(|(r, _)| r.instance_id.as_str()).collect();
        assert_eq!(ids, ["i-0badc0de", "i-1234567890abcdef0"]);
        assert_eq!(revision, r2 + 1);

        let status = InstanceStatus {
            observed_generation: 2,
            host_id: "h-0123456789abcdef0".into(),
            applied_at_millis: 7,
        };
        ok(put_status(store, &rec.instance_id, &status).await);
        assert_eq!(ok(get_status(store, &rec.instance_id).await).map(|(s, _)| s), Some(status.clone()));
        assert_eq!(ok(list_statuses(store).await).0, vec![(rec.instance_id.clone(), status)]);

        // Deleting removes spec and status together, guarded by revision.
        assert_eq!(ok(delete_instance_if(store, &rec.instance_id, r1).await), None);
        ok(delete_instance_if(store, &rec.instance_id, r2).await).unwrap();
        assert_eq!(ok(get_instance(store, &rec.instance_id).await), None);
        assert_eq!(ok(get_status(store, &rec.instance_id).await), None);
    }

    async fn corrupt_values_are_reported_not_panicked(store: Arc<dyn Store>) {
        let store = store.as_ref();
        let bad = id("i-1234abcd");
        let puts = vec![
            Op::put(instance_key(&bad), b"{not json".to_vec()),
            Op::put(status_key(&bad), br#"{"observed_generation":"x"}"#.to_vec()),
        ];
        ok(store.txn(Vec::new(), puts).await);
        let got = get_instance(store, &bad).await;
        assert!(
            matches!(&got, Err(StoreError::Corrupt { key, .. }) if key == "instances/i-1234abcd"),
            "{got:?}"
        );
        assert!(matches!(list_instances(store).await, Err(StoreError::Corrupt { .. })));
        assert!(matches!(get_status(store, &bad).await, Err(StoreError::Corrupt { .. })));

        // A valid record under another instance's key is corrupt too.
        let misplaced = serde_json::to_vec(&record("i-0badc0de")).unwrap();
        ok(store.txn(Vec::new(), vec![Op::put(instance_key(&bad), misplaced)]).await);
        assert!(matches!(get_instance(store, &bad).await, Err(StoreError::Corrupt { .. })));
        // A key that is not an instance id.
        ok(store
            .txn(Vec::new(), vec![Op::delete(instance_key(&bad)), Op::put("instances/junk", b"{}".to_vec())])
            .await);
        assert!(matches!(list_instances(store).await, Err(StoreError::Corrupt { .. })));
    }

    async fn secret_is_generated_once_even_when_two_starts_race(store: Arc<dyn Store>) {
        let key = token_keys_key("h-0123456789abcdef0");
        assert_eq!(ok(get_secret(store.as_ref(), &key).await), None);
        let tasks: Vec<_> = (0..4u8)
            .map(|i| {
                let (store, key) = (Arc::clone(&store), key.clone());
                tokio::spawn(async move { ok(put_secret_if_absent(store.as_ref(), &key, vec![i; 32]).await) })
            })
            .collect();
        let mut winners = Vec::new();
        for task in tasks {
            winners.push(task.await.unwrap());
        }
        assert!(winners.windows(2).all(|w| w[0] == w[1]), "two different secrets: {winners:?}");
        assert_eq!(ok(get_secret(store.as_ref(), &key).await), Some(winners[0].clone()));
        assert_eq!(ok(put_secret_if_absent(store.as_ref(), &key, vec![9; 32]).await), winners[0]);
    }

    #[test]
    fn keys_follow_the_layout() {
        let i = id("i-1234abcd");
        assert_eq!(instance_key(&i), "instances/i-1234abcd");
        assert_eq!(status_key(&i), "status/i-1234abcd");
        assert_eq!(token_keys_key("h-1"), "secrets/token-keys/h-1");
        assert!(token_keys_key("h-1").starts_with(SECRETS_PREFIX));
        assert_eq!(instance_id_from_key("instances/i-1234abcd"), Some(i.clone()));
        assert_eq!(instance_id_from_key("status/i-1234abcd"), Some(i));
        assert_eq!(instance_id_from_key("instances/junk"), None);
        assert_eq!(instance_id_from_key("secrets/token-keys/h-1"), None);
    }

    macro_rules! on_both_backends {
        ($($name:ident),*) => {
            mod memory_backend {
                $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(std::sync::Arc::new(crate::MemoryStore::new())).await;
                })*
            }
            mod redb_backend {
                $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let dir = tempfile::tempdir().unwrap();
                    let store = crate::RedbStore::open(dir.path().join("s.redb")).unwrap();
                    super::$name(std::sync::Arc::new(store)).await;
                })*
            }
        };
    }

    on_both_backends!(
        spec_is_created_once_then_updated_by_revision,
        corrupt_values_are_reported_not_panicked,
        secret_is_generated_once_even_when_two_starts_race
    );
}
