//! Key pairs: ImportKeyPair (OpenSSH `ssh-rsa` / `ssh-ed25519` public
//! keys), DescribeKeyPairs and DeleteKeyPair. RunInstances' `KeyName` must
//! name an imported key; its public key is what the metadata serves under
//! `public-keys/0/openssh-key`.
//!
//! Fingerprints are the SHA-256 of the key blob, base64 — what EC2 shows
//! for ED25519 keys (for imported RSA keys EC2 shows an MD5 digest, which
//! this endpoint does not compute).

use super::filter;
use super::{Cx, render};
use crate::error::ApiError;
use crate::ids;
use crate::ops::settings::KeyPairRecord;
use crate::query::View;
use aws_lc_rs::digest;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use std::collections::BTreeMap;

/// Parses an OpenSSH public key line into (key type, `type base64`, blob).
pub fn parse_openssh(text: &str) -> Result<(&'static str, String, Vec<u8>), ApiError> {
    let bad = || ApiError::key_pair_format("Key is not in valid OpenSSH public key format");
    let mut parts = text.split_ascii_whitespace();
    let (Some(kind), Some(b64)) = (parts.next(), parts.next()) else {
        return Err(bad());
    };
    let key_type = match kind {
        "ssh-ed25519" => "ed25519",
        "ssh-rsa" => "rsa",
        _ => return Err(bad()),
    };
    let blob = STANDARD.decode(b64).map_err(|_| bad())?;
    // The blob starts with the key type as an SSH string (u32 length + bytes).
    let declared = blob
        .get(..4)
        .and_then(|l| <[u8; 4]>::try_from(l).ok())
        .map(u32::from_be_bytes)
        .and_then(|n| usize::try_from(n).ok())
        .and_then(|n| blob.get(4..4 + n));
    if declared != Some(kind.as_bytes()) {
        return Err(bad());
    }
    Ok((key_type, format!("{kind} {b64}"), blob))
}

fn fingerprint(blob: &[u8]) -> String {
    STANDARD.encode(digest::digest(&digest::SHA256, blob).as_ref())
}

fn key_name(raw: &str) -> Result<&str, ApiError> {
    if raw.is_empty() || raw.len() > 255 || !raw.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return Err(ApiError::invalid_parameter("KeyName", raw));
    }
    Ok(raw)
}

/// `ImportKeyPair`.
pub async fn import(cx: &mut Cx<'_>, p: View<'_>) -> Result<String, ApiError> {
    let name = key_name(p.required_str("KeyName")?)?;
    let material = p.required_str("PublicKeyMaterial")?;
    let decoded = STANDARD
        .decode(material.trim())
        .or_else(|_| STANDARD_NO_PAD.decode(material.trim()))
        .map_err(|_| {
            ApiError::invalid_value(
                "Value for parameter PublicKeyMaterial is invalid. Invalid BASE64 encoding.",
            )
        })?;
    let text = String::from_utf8(decoded)
        .map_err(|_| ApiError::key_pair_format("Key is not in valid OpenSSH public key format"))?;
    let (key_type, public_key, blob) = parse_openssh(&text)?;
    let mut tags = BTreeMap::new();
    for spec in p.struct_list("TagSpecification") {
        if spec.required_str("ResourceType")? == "key-pair" {
            for (k, v) in super::tags::parse_tags(&spec, true)? {
                tags.insert(k, v.unwrap_or_default());
            }
        }
    }
    cx.gate(vec![cx.check(cx.key_pair_arn(name)).request_tags(&tags)])?;
    let key = KeyPairRecord {
        key_name: name.to_owned(),
        key_pair_id: ids::resource_id("key").map_err(|_| ApiError::internal())?,
        key_type: key_type.to_owned(),
        key_fingerprint: fingerprint(&blob),
        public_key,
        create_millis: cx.ops.clock().now_millis(),
        tags,
    };
    cx.ops.import_key_pair(&key).await?;
    cx.touched = vec![key.key_pair_id.clone()];
    let mut x = cx.xml();
    x.leaf("keyFingerprint", &key.key_fingerprint)
        .leaf("keyName", &key.key_name)
        .leaf("keyPairId", &key.key_pair_id);
    render::tags(&mut x, &key.tags);
    Ok(x.finish())
}

/// `DescribeKeyPairs`.
pub async fn describe(cx: &mut Cx<'_>, p: View<'_>) -> Result<String, ApiError> {
    let names = p.list("KeyName");
    let ids = p.list("KeyPairId");
    let include_public = p.bool("IncludePublicKey")?.unwrap_or(false);
    let filters = filter::parse(&p)?;
    let mut keys = cx.ops.key_pairs().await?;
    if let Some(missing) = names.iter().find(|n| !keys.iter().any(|k| k.key_name == **n)) {
        return Err(ApiError::key_pair_not_found(missing));
    }
    if let Some(missing) = ids.iter().find(|i| !keys.iter().any(|k| k.key_pair_id == **i)) {
        return Err(ApiError::key_pair_not_found(missing));
    }
    if !names.is_empty() || !ids.is_empty() {
        keys.retain(|k| names.contains(&k.key_name.as_str()) || ids.contains(&k.key_pair_id.as_str()));
    }
    let known = |n: &str| {
        matches!(n, "key-name" | "key-pair-id" | "fingerprint" | "key-type" | "tag-key")
            || n.strip_prefix("tag:").is_some_and(|k| !k.is_empty())
    };
    let keys = filter::apply(keys, &filters, known, |k, name| match name {
        "key-name" => vec![k.key_name.clone()],
        "key-pair-id" => vec![k.key_pair_id.clone()],
        "fingerprint" => vec![k.key_fingerprint.clone()],
        "key-type" => vec![k.key_type.clone()],
        "tag-key" => k.tags.keys().cloned().collect(),
        tag => k.tags.get(tag.trim_start_matches("tag:")).cloned().into_iter().collect(),
    })?;
    cx.gate(vec![cx.check("*")])?;
    let mut x = cx.xml();
    x.list("keySet", &keys, |x, k| {
        x.leaf("keyPairId", &k.key_pair_id)
            .leaf("keyName", &k.key_name)
            .leaf("keyFingerprint", &k.key_fingerprint)
            .leaf("keyType", &k.key_type);
        render::tags(x, &k.tags);
        x.leaf("createTime", render::iso_time(k.create_millis / 1000));
        if include_public {
            x.leaf("publicKey", &k.public_key);
        }
    });
    Ok(x.finish())
}

/// `DeleteKeyPair`: idempotent; answers the id of what it deleted.
pub async fn delete(cx: &mut Cx<'_>, p: View<'_>) -> Result<String, ApiError> {
    let name = match (p.str("KeyName"), p.str("KeyPairId")) {
        (Some(n), _) => Some(key_name(n)?.to_owned()),
        (None, Some(id)) => {
            cx.ops.key_pairs().await?.into_iter().find(|k| k.key_pair_id == id).map(|k| k.key_name)
        }
        (None, None) => return Err(ApiError::missing_parameter("KeyName")),
    };
    cx.gate(vec![cx.check(cx.key_pair_arn(name.as_deref().unwrap_or("*")))])?;
    let deleted = match &name {
        Some(n) => cx.ops.delete_key_pair(n).await?,
        None => None,
    };
    cx.touched = deleted.iter().map(|k| k.key_pair_id.clone()).collect();
    let mut x = cx.xml();
    x.leaf("return", true);
    x.leaf_opt("keyPairId", deleted.map(|k| k.key_pair_id));
    Ok(x.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ED: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHnV3TLlAFs1TcUxAWv9v1n3dtSC0ZjyZ1IFiKxSN8qL me@host";

    #[test]
    fn openssh_keys_are_checked() {
        let (kind, public, blob) = parse_openssh(ED).unwrap();
        assert_eq!(kind, "ed25519");
        assert_eq!(
            public,
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHnV3TLlAFs1TcUxAWv9v1n3dtSC0ZjyZ1IFiKxSN8qL"
        );
        assert_eq!(blob.len(), 51);
        assert_eq!(fingerprint(&blob).len(), 44);
        assert!(
            parse_openssh("ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAIHnV3TLlAFs1TcUxAWv9v1n3dtSC0ZjyZ1IFiKxSN8qL")
                .is_err()
        );
        assert!(parse_openssh("ssh-ed25519 !!!").is_err());
        assert!(parse_openssh("").is_err());
        assert!(parse_openssh("ecdsa-sha2-nistp256 AAAA").is_err());
    }
}
