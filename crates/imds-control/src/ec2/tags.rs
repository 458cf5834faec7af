//! Tags: CreateTags / DeleteTags on instances (all resources of a call in
//! one transaction), DescribeTags over instances, images and key pairs, and
//! the tag rules every action shares — key 1..=128 characters without the
//! reserved `aws:` prefix, value up to 256, at most 50 per resource, and the
//! IMDS key rule for instances that expose tags in metadata.

use super::filter::{self};
use super::{Cx, instance_ids};
use crate::auth::Check;
use crate::error::ApiError;
use crate::ops::Visibility;
use crate::query::View;
use crate::xml::Xml;
use imds_core::instance::is_imds_tag_key;
use imds_core::{InstanceRecord, InstanceState};
use std::collections::BTreeMap;

/// Most user tags one resource may carry.
pub const MAX_TAGS: usize = 50;
/// Longest tag key, in characters.
pub const MAX_KEY_CHARS: usize = 128;
/// Longest tag value, in characters.
pub const MAX_VALUE_CHARS: usize = 256;

fn printable(s: &str) -> bool {
    !s.chars().any(|c| c.is_control() && !matches!(c, '\t' | '\n' | '\r'))
}

/// Checks one key (and value, when given) against EC2's tag rules.
pub fn validate_tag(key: &str, value: Option<&str>) -> Result<(), ApiError> {
    if key.is_empty() {
        return Err(ApiError::invalid_value("Tag keys must not be empty."));
    }
    if key.chars().count() > MAX_KEY_CHARS || !printable(key) {
        return Err(ApiError::invalid_value(format!(
            "Tag key exceeds the maximum length of {MAX_KEY_CHARS} characters or contains invalid characters: '{}'",
            key.chars().take(MAX_KEY_CHARS + 8).collect::<String>()
        )));
    }
    if key.len() >= 4 && key[..4].eq_ignore_ascii_case("aws:") {
        return Err(ApiError::invalid_value("Tag keys starting with 'aws:' are reserved for internal use"));
    }
    if let Some(v) = value
        && (v.chars().count() > MAX_VALUE_CHARS || !printable(v))
    {
        return Err(ApiError::invalid_value(format!(
            "Tag value exceeds the maximum length of {MAX_VALUE_CHARS} characters or contains invalid characters (key '{key}')"
        )));
    }
    Ok(())
}

/// The `Tag.N.Key` / `Tag.N.Value` list under `v`, validated; the value is
/// `None` when the member is absent (CreateTags stores it as empty).
pub fn parse_tags(v: &View<'_>, unique: bool) -> Result<Vec<(String, Option<String>)>, ApiError> {
    let mut out: Vec<(String, Option<String>)> = Vec::new();
    for t in v.struct_list("Tag") {
        let key = t.required_str("Key")?;
        let value = t.str("Value");
        validate_tag(key, value)?;
        if unique && out.iter().any(|(k, _)| k == key) {
            return Err(ApiError::invalid_value(format!("Duplicate tag key '{key}' specified.")));
        }
        out.push((key.to_owned(), value.map(str::to_owned)));
    }
    Ok(out)
}

/// The IMDS key rule for an instance with tags in metadata.
pub fn check_imds_keys(record: &InstanceRecord) -> Result<(), ApiError> {
    if record.metadata_options.instance_metadata_tags.is_enabled()
        && let Some(bad) = record.tags.keys().find(|k| !is_imds_tag_key(k))
    {
        return Err(ApiError::invalid_value(imds_core::instance::imds_tag_key_error(bad)));
    }
    Ok(())
}

/// `ResourceId.N`: instance ids only.
fn resources(p: &View<'_>) -> Result<Vec<imds_core::InstanceId>, ApiError> {
    let raw = p.list("ResourceId");
    if raw.is_empty() {
        return Err(ApiError::missing_parameter("ResourceId"));
    }
    if raw.len() > 1000 {
        return Err(ApiError::invalid_value("At most 1000 resources may be tagged in one request."));
    }
    if let Some(other) = raw.iter().find(|r| !r.starts_with("i-")) {
        return Err(ApiError::invalid_id(other));
    }
    instance_ids(&raw)
}

/// `CreateTags`.
pub async fn create(cx: &mut Cx<'_>, p: View<'_>) -> Result<String, ApiError> {
    let ids = resources(&p)?;
    let tags = parse_tags(&p, false)?;
    if tags.is_empty() {
        return Err(ApiError::missing_parameter("Tag"));
    }
    let set: BTreeMap<String, String> = tags.into_iter().map(|(k, v)| (k, v.unwrap_or_default())).collect();
    {
        let cx = &*cx;
        cx.ops
            .update::<ApiError, _>(&ids, Visibility::LiveOnly, |views| {
                let mut out = Vec::with_capacity(views.len());
                for v in views {
                    let mut r = v.record.clone();
                    r.tags.extend(set.clone());
                    if r.tags.len() > MAX_TAGS {
                        return Err(ApiError::tag_limit_exceeded());
                    }
                    check_imds_keys(&r)?;
                    out.push(r);
                }
                let checks = views
                    .iter()
                    .map(|v| {
                        cx.check(cx.instance_arn(v.record.instance_id.as_str()))
                            .instance(&v.record)
                            .request_tags(&set)
                    })
                    .collect();
                cx.gate(checks)?;
                Ok(out)
            })
            .await?;
    }
    cx.touched = ids.iter().map(ToString::to_string).collect();
    Ok(Xml::return_true(cx.action, cx.request_id))
}

/// `DeleteTags`.
pub async fn delete(cx: &mut Cx<'_>, p: View<'_>) -> Result<String, ApiError> {
    let ids = resources(&p)?;
    let tags = parse_tags(&p, false)?;
    {
        let cx = &*cx;
        cx.ops
            .update::<ApiError, _>(&ids, Visibility::LiveOnly, |views| {
                let out = views
                    .iter()
                    .map(|v| {
                        let mut r = v.record.clone();
                        if tags.is_empty() {
                            r.tags.clear();
                        }
                        for (key, value) in &tags {
                            if value.as_ref().is_none_or(|want| r.tags.get(key) == Some(want)) {
                                r.tags.remove(key);
                            }
                        }
                        r
                    })
                    .collect();
                let checks = views
                    .iter()
                    .map(|v| {
                        let mut c =
                            cx.check(cx.instance_arn(v.record.instance_id.as_str())).instance(&v.record);
                        for (k, _) in &tags {
                            c = c.with("aws:TagKeys", k.clone());
                        }
                        c
                    })
                    .collect::<Vec<Check>>();
                cx.gate(checks)?;
                Ok(out)
            })
            .await?;
    }
    cx.touched = ids.iter().map(ToString::to_string).collect();
    Ok(Xml::return_true(cx.action, cx.request_id))
}

/// One row of DescribeTags.
#[derive(Debug, Clone, PartialEq, Eq)]
struct TagRow {
    resource_id: String,
    resource_type: &'static str,
    key: String,
    value: String,
}

/// `DescribeTags`.
pub async fn describe(cx: &mut Cx<'_>, p: View<'_>) -> Result<String, ApiError> {
    let filters = filter::parse(&p)?;
    let page = filter::page(&p, 5, 1000)?;
    let mut rows = Vec::new();
    let mut push = |id: &str, kind: &'static str, tags: &BTreeMap<String, String>| {
        for (k, v) in tags {
            rows.push(TagRow {
                resource_id: id.to_owned(),
                resource_type: kind,
                key: k.clone(),
                value: v.clone(),
            });
        }
    };
    for v in cx.ops.list().await? {
        if v.record.state != InstanceState::Terminated {
            push(v.record.instance_id.as_str(), "instance", &v.record.tags);
        }
    }
    for i in cx.ops.images().await? {
        push(&i.image_id, "image", &i.tags);
    }
    for k in cx.ops.key_pairs().await? {
        push(&k.key_pair_id, "key-pair", &k.tags);
    }
    let known = |n: &str| {
        matches!(n, "key" | "value" | "resource-id" | "resource-type")
            || n.strip_prefix("tag:").is_some_and(|k| !k.is_empty())
    };
    let rows = filter::apply(rows, &filters, known, |r, name| match name {
        "key" => vec![r.key.clone()],
        "value" => vec![r.value.clone()],
        "resource-id" => vec![r.resource_id.clone()],
        "resource-type" => vec![r.resource_type.to_owned()],
        tag => {
            // `tag:<k>`: the row's resource carries tag k with a matching value.
            let k = tag.trim_start_matches("tag:");
            if r.key == k { vec![r.value.clone()] } else { Vec::new() }
        }
    })?;
    cx.gate(vec![cx.check("*")])?;
    let (rows, next) = filter::paginate(rows, &page, |r| format!("{}\u{0}{}", r.resource_id, r.key));
    let mut x = cx.xml();
    x.list("tagSet", &rows, |x, r| {
        x.leaf("resourceId", &r.resource_id)
            .leaf("resourceType", r.resource_type)
            .leaf("key", &r.key)
            .leaf("value", &r.value);
    });
    x.leaf_opt("nextToken", next);
    Ok(x.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_rules() {
        assert!(validate_tag("Name", Some("")).is_ok());
        assert!(validate_tag(&"k".repeat(128), Some(&"v".repeat(256))).is_ok());
        assert!(validate_tag(&"k".repeat(129), None).is_err());
        assert!(validate_tag("k", Some(&"v".repeat(257))).is_err());
        assert!(validate_tag("", None).is_err());
        assert_eq!(
            validate_tag("AWS:thing", None).unwrap_err().message,
            "Tag keys starting with 'aws:' are reserved for internal use"
        );
        assert!(validate_tag("a\u{1}b", None).is_err());
        assert!(validate_tag("ключ", Some("значение")).is_ok());
    }
}
