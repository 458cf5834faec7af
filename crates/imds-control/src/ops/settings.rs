//! What the control plane keeps besides instances: the account-level
//! metadata defaults (`settings/account-defaults`), registered images
//! (`images/<ami-id>`, with the name index `image-names/<name>`) and
//! imported key pairs (`key-pairs/<name>`). Records are JSON; every write is
//! conditional on what was read. The precedence rules that combine these
//! with launch parameters live in [`super::launch`].

use super::{CAS_ATTEMPTS, OpError, Ops};
use crate::ids;
use imds_core::{Enabled, HopLimit, HttpTokens};
use imds_store::records::decode;
use imds_store::{Compare, Op, Revision, StoreError};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Key of the account defaults.
pub const ACCOUNT_DEFAULTS_KEY: &str = "settings/account-defaults";
/// Prefix of image records.
pub const IMAGES_PREFIX: &str = "images/";
/// Prefix of the image-name index.
pub const IMAGE_NAMES_PREFIX: &str = "image-names/";
/// Prefix of key pairs.
pub const KEY_PAIRS_PREFIX: &str = "key-pairs/";

/// Account-level defaults for new instances (ModifyInstanceMetadataDefaults);
/// `None` = no preference.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountDefaults {
    /// Default `HttpTokens`.
    #[serde(default)]
    pub http_tokens: Option<HttpTokens>,
    /// Default hop limit.
    #[serde(default)]
    pub http_put_response_hop_limit: Option<HopLimit>,
    /// Default endpoint state.
    #[serde(default)]
    pub http_endpoint: Option<Enabled>,
    /// Default tags-in-metadata state.
    #[serde(default)]
    pub instance_metadata_tags: Option<Enabled>,
    /// Whether launches must end up with `HttpTokens=required`.
    #[serde(default)]
    pub http_tokens_enforced: Option<Enabled>,
}

/// A change to [`AccountDefaults`]: `None` keeps a member, `Some(None)`
/// clears it (`no-preference` / `-1`), `Some(Some(v))` sets it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[allow(clippy::option_option)]
pub struct DefaultsPatch {
    /// `HttpTokens`.
    pub http_tokens: Option<Option<HttpTokens>>,
    /// `HttpPutResponseHopLimit`.
    pub http_put_response_hop_limit: Option<Option<HopLimit>>,
    /// `HttpEndpoint`.
    pub http_endpoint: Option<Option<Enabled>>,
    /// `InstanceMetadataTags`.
    pub instance_metadata_tags: Option<Option<Enabled>>,
    /// `HttpTokensEnforced`.
    pub http_tokens_enforced: Option<Option<Enabled>>,
}

impl DefaultsPatch {
    /// `defaults` with this patch applied.
    pub fn apply(&self, mut d: AccountDefaults) -> AccountDefaults {
        if let Some(v) = self.http_tokens {
            d.http_tokens = v;
        }
        if let Some(v) = self.http_put_response_hop_limit {
            d.http_put_response_hop_limit = v;
        }
        if let Some(v) = self.http_endpoint {
            d.http_endpoint = v;
        }
        if let Some(v) = self.instance_metadata_tags {
            d.instance_metadata_tags = v;
        }
        if let Some(v) = self.http_tokens_enforced {
            d.http_tokens_enforced = v;
        }
        d
    }
}

/// A registered image (AMI).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRecord {
    /// `ami-…`
    pub image_id: String,
    /// Unique name.
    pub name: String,
    /// Description.
    #[serde(default)]
    pub description: Option<String>,
    /// `x86_64`, `arm64`, …
    pub architecture: String,
    /// `v2.0` once set (it can never be unset).
    #[serde(default)]
    pub imds_support: Option<String>,
    /// `/dev/xvda`
    pub root_device_name: String,
    /// `hvm` or `paravirtual`.
    pub virtualization_type: String,
    /// Kernel (paravirtual).
    #[serde(default)]
    pub kernel_id: Option<String>,
    /// RAM disk (paravirtual).
    #[serde(default)]
    pub ramdisk_id: Option<String>,
    /// ENA support.
    #[serde(default)]
    pub ena_support: bool,
    /// `legacy-bios` | `uefi` | `uefi-preferred`.
    #[serde(default)]
    pub boot_mode: Option<String>,
    /// `v2.0`.
    #[serde(default)]
    pub tpm_support: Option<String>,
    /// `simple`.
    #[serde(default)]
    pub sriov_net_support: Option<String>,
    /// `ImageLocation`.
    #[serde(default)]
    pub image_location: Option<String>,
    /// Registration time, Unix milliseconds.
    pub creation_millis: u64,
    /// Owning account.
    pub owner_id: String,
    /// Tags.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

/// An imported key pair.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyPairRecord {
    /// Name (unique).
    pub key_name: String,
    /// `key-…`
    pub key_pair_id: String,
    /// `rsa` | `ed25519` (or the OpenSSH type for others).
    pub key_type: String,
    /// Fingerprint shown by DescribeKeyPairs.
    pub key_fingerprint: String,
    /// OpenSSH public key `type base64`, without comment.
    pub public_key: String,
    /// Import time, Unix milliseconds.
    pub create_millis: u64,
    /// Tags.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, OpError> {
    serde_json::to_vec(value).map_err(|e| OpError::Store(StoreError::Backend(e.to_string())))
}

/// `images/<id>`
pub fn image_key(id: &str) -> String {
    format!("{IMAGES_PREFIX}{id}")
}

/// `key-pairs/<name>`
pub fn key_pair_key(name: &str) -> String {
    format!("{KEY_PAIRS_PREFIX}{name}")
}

impl Ops {
    async fn get_json<T: for<'de> Deserialize<'de>>(
        &self,
        key: &str,
    ) -> Result<Option<(T, Revision)>, OpError> {
        match self.store().get(key).await? {
            Some(kv) => Ok(Some((decode(&kv.key, &kv.value)?, kv.mod_revision))),
            None => Ok(None),
        }
    }

    async fn list_json<T: for<'de> Deserialize<'de>>(&self, prefix: &str) -> Result<Vec<T>, OpError> {
        let (kvs, _) = self.store().list(prefix).await?;
        kvs.iter().map(|kv| decode(&kv.key, &kv.value).map_err(OpError::from)).collect()
    }

    /// The account defaults (all `None` when never set).
    pub async fn account_defaults(&self) -> Result<AccountDefaults, OpError> {
        Ok(self.get_json(ACCOUNT_DEFAULTS_KEY).await?.map(|(d, _)| d).unwrap_or_default())
    }

    /// Applies `patch` to the account defaults; `check` sees the result
    /// before it is written (authorisation, DryRun).
    pub async fn modify_account_defaults<E: From<OpError>>(
        &self,
        patch: DefaultsPatch,
        mut check: impl FnMut(&AccountDefaults) -> Result<(), E>,
    ) -> Result<AccountDefaults, E> {
        for _ in 0..CAS_ATTEMPTS {
            let current = self.get_json::<AccountDefaults>(ACCOUNT_DEFAULTS_KEY).await?;
            let revision = current.as_ref().map_or(0, |(_, r)| *r);
            let next = patch.apply(current.map(|(d, _)| d).unwrap_or_default());
            check(&next)?;
            let put = Op::put(ACCOUNT_DEFAULTS_KEY, encode(&next)?);
            let compare = Compare::ModRevision(ACCOUNT_DEFAULTS_KEY.to_owned(), revision);
            if self.store().txn(vec![compare], vec![put]).await.map_err(OpError::from)?.is_some() {
                return Ok(next);
            }
        }
        Err(OpError::Contention.into())
    }

    /// A registered image.
    pub async fn image(&self, id: &str) -> Result<Option<ImageRecord>, OpError> {
        Ok(self.get_json(&image_key(id)).await?.map(|(i, _)| i))
    }

    /// Every registered image, in id order.
    pub async fn images(&self) -> Result<Vec<ImageRecord>, OpError> {
        self.list_json(IMAGES_PREFIX).await
    }

    /// Registers an image under a fresh `ami-` id (the id in `image` is
    /// replaced); names are unique.
    pub async fn register_image(&self, mut image: ImageRecord) -> Result<ImageRecord, OpError> {
        let name_key = format!("{IMAGE_NAMES_PREFIX}{}", image.name);
        for _ in 0..CAS_ATTEMPTS {
            image.image_id = ids::resource_id("ami")?;
            let key = image_key(&image.image_id);
            let compares = vec![Compare::Absent(key.clone()), Compare::Absent(name_key.clone())];
            let ops = vec![Op::put(key, encode(&image)?), Op::put(name_key.clone(), image.image_id.clone())];
            if self.store().txn(compares, ops).await?.is_some() {
                return Ok(image);
            }
            if let Some(kv) = self.store().get(&name_key).await? {
                return Err(OpError::ImageNameDuplicate {
                    name: image.name,
                    existing: String::from_utf8_lossy(&kv.value).into_owned(),
                });
            }
        }
        Err(OpError::Contention)
    }

    /// Changes a registered image with compare-and-set; `change` may refuse.
    pub async fn update_image<E: From<OpError>>(
        &self,
        id: &str,
        mut change: impl FnMut(&mut ImageRecord) -> Result<(), E>,
    ) -> Result<ImageRecord, E> {
        let key = image_key(id);
        for _ in 0..CAS_ATTEMPTS {
            let Some((mut image, revision)) = self.get_json::<ImageRecord>(&key).await? else {
                return Err(OpError::ImageNotFound(id.to_owned()).into());
            };
            let before = image.clone();
            change(&mut image)?;
            if image == before {
                return Ok(image);
            }
            let ops = vec![Op::put(key.clone(), encode(&image)?)];
            if self
                .store()
                .txn(vec![Compare::ModRevision(key.clone(), revision)], ops)
                .await
                .map_err(OpError::from)?
                .is_some()
            {
                return Ok(image);
            }
        }
        Err(OpError::Contention.into())
    }

    /// Removes an image and its name.
    pub async fn deregister_image(&self, id: &str) -> Result<(), OpError> {
        let key = image_key(id);
        let Some((image, revision)) = self.get_json::<ImageRecord>(&key).await? else {
            return Err(OpError::ImageNotFound(id.to_owned()));
        };
        let name_key = format!("{IMAGE_NAMES_PREFIX}{}", image.name);
        let ops = vec![Op::delete(key.clone()), Op::delete(name_key)];
        match self.store().txn(vec![Compare::ModRevision(key, revision)], ops).await? {
            Some(_) => Ok(()),
            None => Err(OpError::Contention),
        }
    }

    /// A key pair by name.
    pub async fn key_pair(&self, name: &str) -> Result<Option<KeyPairRecord>, OpError> {
        Ok(self.get_json(&key_pair_key(name)).await?.map(|(k, _)| k))
    }

    /// Every key pair, in name order.
    pub async fn key_pairs(&self) -> Result<Vec<KeyPairRecord>, OpError> {
        self.list_json(KEY_PAIRS_PREFIX).await
    }

    /// Stores a new key pair; its name must be free.
    pub async fn import_key_pair(&self, key: &KeyPairRecord) -> Result<(), OpError> {
        let k = key_pair_key(&key.key_name);
        match self.store().txn(vec![Compare::Absent(k.clone())], vec![Op::put(k, encode(key)?)]).await? {
            Some(_) => Ok(()),
            None => Err(OpError::KeyPairDuplicate(key.key_name.clone())),
        }
    }

    /// Deletes a key pair by name; `Ok(None)` when there was none.
    pub async fn delete_key_pair(&self, name: &str) -> Result<Option<KeyPairRecord>, OpError> {
        let k = key_pair_key(name);
        let Some((key, revision)) = self.get_json::<KeyPairRecord>(&k).await? else {
            return Ok(None);
        };
        match self.store().txn(vec![Compare::ModRevision(k.clone(), revision)], vec![Op::delete(k)]).await? {
            Some(_) => Ok(Some(key)),
            None => Err(OpError::Contention),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing;
    use super::*;

    fn image(name: &str) -> ImageRecord {
        ImageRecord {
            image_id: String::new(),
            name: name.into(),
            description: None,
            architecture: "x86_64".into(),
            imds_support: None,
            root_device_name: "/dev/xvda".into(),
            virtualization_type: "hvm".into(),
            kernel_id: None,
            ramdisk_id: None,
            ena_support: true,
            boot_mode: None,
            tpm_support: None,
            sriov_net_support: None,
            image_location: None,
            creation_millis: 0,
            owner_id: "123456789012".into(),
            tags: BTreeMap::new(),
        }
    }

    #[tokio::test]
    async fn defaults_patch_sets_and_clears() {
        let (ops, _, _) = testing::ops();
        assert_eq!(ops.account_defaults().await.unwrap(), AccountDefaults::default());
        let set = DefaultsPatch { http_tokens: Some(Some(HttpTokens::Required)), ..Default::default() };
        ops.modify_account_defaults::<OpError>(set, |_| Ok(())).await.unwrap();
        let hop =
            DefaultsPatch { http_put_response_hop_limit: Some(HopLimit::new(3).ok()), ..Default::default() };
        let d = ops.modify_account_defaults::<OpError>(hop, |_| Ok(())).await.unwrap();
        assert_eq!(d.http_tokens, Some(HttpTokens::Required));
        let clear = DefaultsPatch { http_tokens: Some(None), ..Default::default() };
        let d = ops.modify_account_defaults::<OpError>(clear, |_| Ok(())).await.unwrap();
        assert_eq!(d.http_tokens, None);
        assert_eq!(d.http_put_response_hop_limit.map(HopLimit::get), Some(3));
        // A refusing check writes nothing.
        let refused =
            ops.modify_account_defaults::<OpError>(set, |_| Err(OpError::InvalidValue("no".into()))).await;
        assert!(refused.is_err());
        assert_eq!(ops.account_defaults().await.unwrap().http_tokens, None);
    }

    #[tokio::test]
    async fn image_names_are_unique_and_freed_by_deregistering() {
        let (ops, _, _) = testing::ops();
        let a = ops.register_image(image("web")).await.unwrap();
        assert!(a.image_id.starts_with("ami-"));
        let dup = ops.register_image(image("web")).await.unwrap_err();
        assert!(matches!(dup, OpError::ImageNameDuplicate { existing, .. } if existing == a.image_id));
        ops.deregister_image(&a.image_id).await.unwrap();
        assert!(ops.image(&a.image_id).await.unwrap().is_none());
        ops.register_image(image("web")).await.unwrap();
    }

    #[tokio::test]
    async fn key_pairs_are_unique() {
        let (ops, _, _) = testing::ops();
        let key = KeyPairRecord {
            key_name: "k".into(),
            key_pair_id: "key-0123456789abcdef0".into(),
            key_type: "ed25519".into(),
            key_fingerprint: "x".into(),
            public_key: "ssh-ed25519 AAAA".into(),
            create_millis: 0,
            tags: BTreeMap::new(),
        };
        ops.import_key_pair(&key).await.unwrap();
        assert!(matches!(ops.import_key_pair(&key).await, Err(OpError::KeyPairDuplicate(_))));
        assert_eq!(ops.key_pairs().await.unwrap(), vec![key.clone()]);
        assert_eq!(ops.delete_key_pair("k").await.unwrap(), Some(key));
        assert_eq!(ops.delete_key_pair("k").await.unwrap(), None);
    }
}
