//! The token key ring of one host, kept in the store so a restarted host
//! keeps accepting the tokens it sealed, rotated on a schedule and on
//! command. Rotation keeps the previous keys (see `KeyRing::rotate`), so a
//! token stays valid until it expires.

use imds_store::records;
use imds_store::{Compare, Op, Revision, Store, StoreError};
use imds_token::KeyRing;

/// The ring could not be loaded, created or rotated.
#[derive(Debug, thiserror::Error)]
pub enum TokenKeyError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Key generation failed, or the stored ring is unreadable.
    #[error("token keys: {0}")]
    Keys(String),
}

/// How many times a rotation retries when another writer got there first.
const ROTATE_ATTEMPTS: usize = 8;

/// The stored ring of `host_id`, created (once, race-free) if absent.
pub async fn load_or_create(
    store: &dyn Store,
    host_id: &str,
    now_millis: u64,
) -> Result<KeyRing, TokenKeyError> {
    let fresh = KeyRing::generate(now_millis).map_err(|e| TokenKeyError::Keys(e.to_string()))?;
    let bytes = serde_json::to_vec(&fresh).map_err(|e| TokenKeyError::Keys(e.to_string()))?;
    let stored = records::put_secret_if_absent(store, &records::token_keys_key(host_id), bytes).await?;
    decode(&stored)
}

/// Decodes a stored ring.
pub fn decode(bytes: &[u8]) -> Result<KeyRing, TokenKeyError> {
    serde_json::from_slice(bytes)
        .map_err(|e| TokenKeyError::Keys(format!("the stored token key ring is unreadable: {e}")))
}

/// Rotates the stored ring of `host_id` if `due` says so for the ring in
/// the store (compare-and-set, retried on conflict); returns the ring in
/// force afterwards and the revision it was written at, if it was.
pub async fn rotate_if(
    store: &dyn Store,
    host_id: &str,
    now_millis: u64,
    due: impl Fn(&KeyRing) -> bool,
) -> Result<(KeyRing, Option<Revision>), TokenKeyError> {
    let key = records::token_keys_key(host_id);
    for _ in 0..ROTATE_ATTEMPTS {
        let Some(kv) = store.get(&key).await? else {
            return Ok((load_or_create(store, host_id, now_millis).await?, None));
        };
        let mut ring = decode(&kv.value)?;
        if !due(&ring) {
            return Ok((ring, None));
        }
        ring.rotate(now_millis).map_err(|e| TokenKeyError::Keys(e.to_string()))?;
        let bytes = serde_json::to_vec(&ring).map_err(|e| TokenKeyError::Keys(e.to_string()))?;
        if let Some(rev) = store
            .txn(vec![Compare::ModRevision(key.clone(), kv.mod_revision)], vec![Op::put(key.clone(), bytes)])
            .await?
        {
            tracing::info!(host_id, key_id = ring.current_key_id(), "token key rotated");
            return Ok((ring, Some(rev)));
        }
    }
    Err(TokenKeyError::Keys("too many concurrent rotations".to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use imds_store::MemoryStore;
    use imds_token::TokenBinding;

    #[tokio::test]
    async fn rotation_keeps_old_tokens_valid_and_persists() {
        let store = MemoryStore::new();
        let ring = load_or_create(&store, "h-1", 1_000).await.unwrap();
        let binding = TokenBinding { instance_id: "i-1234567890abcdef0", incarnation: 1 };
        let token = ring.seal(&binding, 1_000, 3600).unwrap();
        let (rotated, rev) = rotate_if(&store, "h-1", 2_000, |_| true).await.unwrap();
        assert!(rev.is_some());
        assert_ne!(rotated.current_key_id(), ring.current_key_id());
        assert!(
            rotated.open(token.as_bytes(), &binding, 3_000).is_ok(),
            "sealed before rotation, still valid"
        );
        // Persisted: a restart loads the rotated ring.
        let again = load_or_create(&store, "h-1", 4_000).await.unwrap();
        assert_eq!(again.current_key_id(), rotated.current_key_id());
        // Not due: nothing written.
        let (_, rev) = rotate_if(&store, "h-1", 5_000, |_| false).await.unwrap();
        assert!(rev.is_none());
    }

    #[tokio::test]
    async fn concurrent_creates_agree_on_one_ring() {
        let store = std::sync::Arc::new(MemoryStore::new());
        let (a, b) =
            tokio::join!(load_or_create(store.as_ref(), "h-2", 1), load_or_create(store.as_ref(), "h-2", 2));
        assert_eq!(a.unwrap().current_created_millis(), b.unwrap().current_created_millis());
    }
}
