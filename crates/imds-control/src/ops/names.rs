//! The Lightsail name index: `lightsail-names/<name>` holds the id of the
//! live instance using that name, so two `CreateInstances` racing for one
//! name cannot both win — each create is conditional on the index key
//! being absent (or on the stale entry it replaces). Terminating an
//! instance deletes its key in the same transaction ([`super::Ops::update`]),
//! which makes the name free again, as Lightsail does after `DeleteInstance`.
//!
//! This module does not decide what a valid name is (the Lightsail front
//! end does).

use super::{InstanceView, OpError, Ops, Visibility};
use imds_core::{InstanceId, InstanceRecord, InstanceState};
use imds_store::{Compare, Op, Store, StoreError};

/// Prefix of the name index.
pub const NAMES_PREFIX: &str = "lightsail-names/";

/// `lightsail-names/<name>`.
pub fn name_key(name: &str) -> String {
    format!("{NAMES_PREFIX}{name}")
}

/// Compares and deletes that free the name `record` holds (only if the
/// index still names it), for the transaction that terminates it.
pub async fn release(
    store: &dyn Store,
    record: &InstanceRecord,
) -> Result<(Vec<Compare>, Vec<Op>), StoreError> {
    let Some(info) = &record.lightsail else {
        return Ok((Vec::new(), Vec::new()));
    };
    let key = name_key(&info.name);
    match store.get(&key).await? {
        Some(kv) if kv.value == record.instance_id.as_str().as_bytes() => {
            Ok((vec![Compare::ModRevision(key.clone(), kv.mod_revision)], vec![Op::delete(key)]))
        }
        _ => Ok((Vec::new(), Vec::new())),
    }
}

impl Ops {
    /// The guards under which `names` may be claimed by new instances:
    /// `Absent` for free names, the current revision for index entries
    /// left behind by instances that are gone or terminated. Names held by
    /// live instances give [`OpError::NameInUse`] (all of them, in request
    /// order).
    pub async fn name_claims(&self, names: &[String]) -> Result<Vec<Compare>, OpError> {
        let mut compares = Vec::with_capacity(names.len());
        let mut in_use = Vec::new();
        for name in names {
            let key = name_key(name);
            match self.store().get(&key).await? {
                None => compares.push(Compare::Absent(key)),
                Some(kv) => {
                    let holder = std::str::from_utf8(&kv.value).ok().and_then(|s| InstanceId::parse(s).ok());
                    let live = match holder {
                        Some(id) => imds_store::records::get_instance(self.store(), &id).await?.is_some_and(
                            |(r, _)| {
                                r.state != InstanceState::Terminated
                                    && r.lightsail.as_ref().is_some_and(|l| &l.name == name)
                            },
                        ),
                        None => false,
                    };
                    if live {
                        in_use.push(name.clone());
                    } else {
                        compares.push(Compare::ModRevision(key, kv.mod_revision));
                    }
                }
            }
        }
        if in_use.is_empty() { Ok(compares) } else { Err(OpError::NameInUse(in_use)) }
    }

    /// The live instance the Lightsail API knows as `name`, if any.
    pub async fn get_by_name(&self, name: &str) -> Result<Option<InstanceView>, OpError> {
        let Some(kv) = self.store().get(&name_key(name)).await? else {
            return Ok(None);
        };
        let Some(id) = std::str::from_utf8(&kv.value).ok().and_then(|s| InstanceId::parse(s).ok()) else {
            return Ok(None);
        };
        match self.get(&id, Visibility::LiveOnly).await {
            Ok(view) if view.record.lightsail.as_ref().is_some_and(|l| l.name == name) => Ok(Some(view)),
            Ok(_) | Err(OpError::InstanceNotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Every live instance created through the Lightsail API, by name.
    pub async fn list_named(&self) -> Result<Vec<InstanceView>, OpError> {
        let mut views: Vec<InstanceView> = self
            .list()
            .await?
            .into_iter()
            .filter(|v| v.record.lightsail.is_some() && v.record.state != InstanceState::Terminated)
            .collect();
        views.sort_by(|a, b| {
            let name = |v: &InstanceView| v.record.lightsail.as_ref().map(|l| l.name.clone());
            name(a).cmp(&name(b))
        });
        Ok(views)
    }
}
