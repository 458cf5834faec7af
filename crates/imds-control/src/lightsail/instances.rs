//! The instance operations: `CreateInstances` (EC2-style launch through
//! [`Ops::prepare_launch`] / [`Ops::commit_launch_named`]), `GetInstance`,
//! `GetInstances` (paged by name), `UpdateInstanceMetadataOptions` (the
//! same compare-and-set update as `ModifyInstanceMetadataOptions`, bumping
//! the generation so the options read `pending` until the serving agent
//! reports it) and `DeleteInstance` (terminate, which frees the name).
//!
//! Each operation validates its whole input before reading the store, and
//! authorises after finding the resources and before writing.

use super::Cx;
use super::catalog;
use super::error::LsError;
use super::input::Input;
use super::render::{self, Operation};
use crate::auth::Check;
use crate::ops::launch::{InterfaceSpec, LaunchSpec, OptionsRequest, PlacementSpec, Prepared};
use crate::ops::{Change, InstanceView, OpError, Visibility};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use imds_core::instance::USER_DATA_MAX_BYTES;
use imds_core::{Enabled, HopLimit, HttpTokens, InstanceId, InstanceRecord, InstanceState, LightsailInfo};
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;

/// Most names one `CreateInstances` call may create (Lightsail's default
/// per-Region instance quota).
pub const MAX_NAMES_PER_CALL: usize = 20;

/// Instances per `GetInstances` page.
pub const PAGE_SIZE: usize = 20;

/// Most tags on one resource.
pub const MAX_TAGS: usize = 50;

const IP_ADDRESS_TYPES: &[&str] = &["dualstack", "ipv4", "ipv6"];
const HTTP_TOKENS: &[&str] = &["optional", "required"];
const ENABLED: &[&str] = &["disabled", "enabled"];

/// Runs `cx.operation` on the request body `value`.
pub(crate) async fn dispatch(cx: &mut Cx<'_>, value: &Value) -> Result<String, LsError> {
    match cx.operation {
        "CreateInstances" => create_instances(cx, value).await,
        "GetInstance" => get_instance(cx, value).await,
        "GetInstances" => get_instances(cx, value).await,
        "UpdateInstanceMetadataOptions" => update_metadata_options(cx, value).await,
        "DeleteInstance" => delete_instance(cx, value).await,
        _ => Err(LsError::unknown_operation()),
    }
}

fn to_json<T: Serialize>(value: &T) -> Result<String, LsError> {
    serde_json::to_string(value).map_err(|e| {
        tracing::error!(error = %e, "serialising a Lightsail response failed");
        LsError::internal()
    })
}

/// A required `instanceName`, checked against the resource-name rules.
fn instance_name<'a>(input: &Input<'a>) -> Result<&'a str, LsError> {
    let name = input.required_str("instanceName")?;
    catalog::resource_name(name)?;
    Ok(name)
}

/// The live Lightsail instance `name`, or `NotFoundException`.
async fn named(cx: &Cx<'_>, name: &str) -> Result<(InstanceView, LightsailInfo), LsError> {
    let view = cx.ops.get_by_name(name).await.map_err(|e| LsError::from_op(e, Some(name)))?;
    let view = view.ok_or_else(|| LsError::not_found("Instance", name))?;
    let info = view.record.lightsail.clone().ok_or_else(|| LsError::not_found("Instance", name))?;
    Ok((view, info))
}

/// `tags` of CreateInstances: `[{"key": …, "value": …}]`, keys unique.
fn parse_tags(input: &Input<'_>) -> Result<BTreeMap<String, String>, LsError> {
    let mut out = BTreeMap::new();
    let Some(items) = input.list("tags")? else {
        return Ok(out);
    };
    for (i, item) in items.iter().enumerate() {
        let path = format!("tags[{i}]");
        let tag = Input::new(item, &path, &["key", "value"])?;
        let key = tag.required_str("key")?;
        let value = tag.str("value")?.unwrap_or_default();
        catalog::tag(key, value)?;
        if out.insert(key.to_owned(), value.to_owned()).is_some() {
            return Err(LsError::invalid(format!("Duplicate tag key '{key}' specified.")));
        }
    }
    if out.len() > MAX_TAGS {
        return Err(LsError::invalid_code("TagLimitExceeded", "A resource can have at most 50 tags."));
    }
    Ok(out)
}

/// `addOns`: checked against the model, then refused — this endpoint has
/// no snapshots or idle stops to attach them to.
fn check_add_ons(input: &Input<'_>) -> Result<(), LsError> {
    let Some(items) = input.list("addOns")? else {
        return Ok(());
    };
    for (i, item) in items.iter().enumerate() {
        let path = format!("addOns[{i}]");
        let add_on =
            Input::new(item, &path, &["addOnType", "autoSnapshotAddOnRequest", "stopInstanceOnIdleRequest"])?;
        add_on
            .enum_str("addOnType", &["AutoSnapshot", "StopInstanceOnIdle"])?
            .ok_or_else(|| LsError::missing(&add_on.name("addOnType")))?;
        if let Some(v) = item.get("autoSnapshotAddOnRequest").filter(|v| !v.is_null()) {
            let p = format!("{path}.autoSnapshotAddOnRequest");
            Input::new(v, &p, &["snapshotTimeOfDay"])?.str("snapshotTimeOfDay")?;
        }
        if let Some(v) = item.get("stopInstanceOnIdleRequest").filter(|v| !v.is_null()) {
            let p = format!("{path}.stopInstanceOnIdleRequest");
            let idle = Input::new(v, &p, &["threshold", "duration"])?;
            idle.str("threshold")?;
            idle.str("duration")?;
        }
    }
    if items.is_empty() {
        Ok(())
    } else {
        Err(LsError::invalid_code("Unsupported", "Add-ons are not supported by this endpoint."))
    }
}

/// `{"operations": [...]}`.
#[derive(Serialize)]
struct Operations {
    operations: Vec<Operation>,
}

/// `CreateInstances`.
async fn create_instances(cx: &mut Cx<'_>, value: &Value) -> Result<String, LsError> {
    let input = Input::new(
        value,
        "",
        &[
            "instanceNames",
            "availabilityZone",
            "customImageName",
            "blueprintId",
            "bundleId",
            "userData",
            "keyPairName",
            "tags",
            "addOns",
            "ipAddressType",
        ],
    )?;
    let names = input.str_list("instanceNames")?.ok_or_else(|| LsError::missing("instanceNames"))?;
    let availability_zone = input.required_str("availabilityZone")?;
    let blueprint_id = input.required_str("blueprintId")?;
    let bundle_id = input.required_str("bundleId")?;
    if names.is_empty() {
        return Err(LsError::invalid("instanceNames must name at least one instance."));
    }
    if names.len() > MAX_NAMES_PER_CALL {
        return Err(LsError::invalid(format!(
            "At most {MAX_NAMES_PER_CALL} instances can be created in one request."
        )));
    }
    let mut seen = std::collections::HashSet::new();
    for name in &names {
        catalog::resource_name(name)?;
        if !seen.insert(*name) {
            return Err(LsError::invalid(format!("The instance name {name} is specified more than once.")));
        }
    }
    if let Some(custom) = input.str("customImageName")? {
        // Discontinued and ignored by the service; still a resource name.
        catalog::resource_name(custom)?;
    }
    catalog::blueprint(blueprint_id)?;
    let bundle = catalog::bundle(bundle_id)?;
    let user_data = match input.str("userData")? {
        None | Some("") => None,
        // Lightsail takes the launch script as text, not base64.
        Some(text) if text.len() > USER_DATA_MAX_BYTES => {
            return Err(LsError::invalid(format!("User data is limited to {USER_DATA_MAX_BYTES} bytes.")));
        }
        Some(text) => Some(text.as_bytes().to_vec()),
    };
    let key_name = input.str("keyPairName")?;
    if let Some(k) = key_name {
        catalog::resource_name(k)?;
    }
    let tags = parse_tags(&input)?;
    check_add_ons(&input)?;
    let ip_address_type = input.enum_str("ipAddressType", IP_ADDRESS_TYPES)?.unwrap_or("dualstack");
    let v6_pool = cx.ops.config().subnet_v6.is_some();
    if ip_address_type == "ipv6" && !v6_pool {
        return Err(LsError::invalid(
            "ipAddressType ipv6 needs IPv6 addresses, and this endpoint has no IPv6 address pool.",
        ));
    }
    let names: Vec<String> = names.into_iter().map(str::to_owned).collect();
    let count = u32::try_from(names.len()).unwrap_or(1);
    let spec = LaunchSpec {
        image_id: crate::ids::derived_id("ami", &format!("lightsail-blueprint/{blueprint_id}")),
        instance_type: bundle.instance_type.to_owned(),
        min_count: count,
        max_count: count,
        interfaces: vec![InterfaceSpec {
            ipv6_count: u32::from(ip_address_type != "ipv4" && v6_pool),
            ..InterfaceSpec::default()
        }],
        placement: PlacementSpec {
            availability_zone: Some(availability_zone.to_owned()),
            ..Default::default()
        },
        key_name: key_name.map(str::to_owned),
        iam_instance_profile: None,
        user_data,
        tags,
        options: OptionsRequest::default(),
        monitoring: false,
        instance_life_cycle: "on-demand".to_owned(),
        kernel_id: None,
        ramdisk_id: None,
        client_token: None,
    };
    cx.ops.name_claims(&names).await.map_err(|e| LsError::from_op(e, None))?;
    let plan = match cx.ops.prepare_launch(spec).await.map_err(|e| LsError::from_op(e, None))? {
        Prepared::New(plan) => plan,
        Prepared::Existing(_) => return Err(LsError::internal()),
    };
    let check = Check::new(cx.action(), format!("arn:aws:lightsail:{}:{}:Instance/*", cx.region, cx.account))
        .request_tags(&plan.spec.tags);
    cx.authorize(vec![check])?;
    let now = cx.ops.clock().now_millis();
    let infos: Vec<LightsailInfo> = names
        .iter()
        .map(|name| LightsailInfo {
            name: name.clone(),
            resource_id: uuid::Uuid::new_v4().to_string(),
            blueprint_id: blueprint_id.to_owned(),
            bundle_id: bundle_id.to_owned(),
            ip_address_type: ip_address_type.to_owned(),
            created_at_millis: now,
        })
        .collect();
    let records = cx.ops.commit_launch_named(&plan, &infos).await.map_err(|e| LsError::from_op(e, None))?;
    cx.touched = names.clone();
    let operations = records
        .iter()
        .filter_map(|r| {
            let name = &r.lightsail.as_ref()?.name;
            Some(Operation::new(r, name, "CreateInstance", "Started", now))
        })
        .collect();
    to_json(&Operations { operations })
}

/// `GetInstance`.
async fn get_instance(cx: &mut Cx<'_>, value: &Value) -> Result<String, LsError> {
    let input = Input::new(value, "", &["instanceName", "includeHealthStatus"])?;
    let name = instance_name(&input)?;
    input.bool("includeHealthStatus")?;
    let (view, info) = named(cx, name).await?;
    cx.authorize(vec![cx.instance_check(&view.record, &info)])?;
    #[derive(Serialize)]
    struct Answer {
        instance: render::Instance,
    }
    let instance = render::instance(&view, cx.account).ok_or_else(|| LsError::not_found("Instance", name))?;
    to_json(&Answer { instance })
}

fn decode_page_token(token: &str) -> Result<String, LsError> {
    let invalid = || LsError::invalid("The pageToken is not valid.");
    let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| invalid())?;
    let name = String::from_utf8(bytes).map_err(|_| invalid())?;
    if catalog::is_resource_name(&name) { Ok(name) } else { Err(invalid()) }
}

/// `GetInstances`: live Lightsail instances by name, [`PAGE_SIZE`] per
/// page; the token is the (encoded) last name of the previous page.
async fn get_instances(cx: &mut Cx<'_>, value: &Value) -> Result<String, LsError> {
    let input = Input::new(value, "", &["pageToken"])?;
    let after = match input.str("pageToken")? {
        None | Some("") => None,
        Some(token) => Some(decode_page_token(token)?),
    };
    cx.authorize(vec![Check::new(cx.action(), "*")])?;
    let views = cx.ops.list_named().await.map_err(|e| LsError::from_op(e, None))?;
    let name_of = |v: &InstanceView| v.record.lightsail.as_ref().map(|l| l.name.clone()).unwrap_or_default();
    let rest: Vec<&InstanceView> =
        views.iter().filter(|v| after.as_ref().is_none_or(|a| name_of(v) > *a)).collect();
    let page = &rest[..rest.len().min(PAGE_SIZE)];
    let next_page_token =
        (rest.len() > PAGE_SIZE).then(|| page.last().map(|v| URL_SAFE_NO_PAD.encode(name_of(v)))).flatten();
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Answer {
        instances: Vec<render::Instance>,
        #[serde(skip_serializing_if = "Option::is_none")]
        next_page_token: Option<String>,
    }
    let instances = page.iter().filter_map(|v| render::instance(v, cx.account)).collect();
    to_json(&Answer { instances, next_page_token })
}

/// The members of UpdateInstanceMetadataOptions; `None` keeps a value.
#[derive(Debug, Clone, Copy, Default)]
struct OptionsChange {
    http_tokens: Option<HttpTokens>,
    http_endpoint: Option<Enabled>,
    hop_limit: Option<HopLimit>,
    http_protocol_ipv6: Option<Enabled>,
}

fn options_change(input: &Input<'_>) -> Result<OptionsChange, LsError> {
    let enabled = |member: &str| -> Result<Option<Enabled>, LsError> {
        Ok(match input.enum_str(member, ENABLED)? {
            Some("enabled") => Some(Enabled::Enabled),
            Some(_) => Some(Enabled::Disabled),
            None => None,
        })
    };
    let http_tokens = match input.enum_str("httpTokens", HTTP_TOKENS)? {
        Some("required") => Some(HttpTokens::Required),
        Some(_) => Some(HttpTokens::Optional),
        None => None,
    };
    let hop_limit = match input.int("httpPutResponseHopLimit")? {
        None => None,
        Some(n) => Some(HopLimit::new(n).map_err(|_| {
            LsError::invalid(format!(
                "The value {n} for parameter httpPutResponseHopLimit is not valid. It must be between {} and {}.",
                HopLimit::MIN,
                HopLimit::MAX
            ))
        })?),
    };
    Ok(OptionsChange {
        http_tokens,
        http_endpoint: enabled("httpEndpoint")?,
        hop_limit,
        http_protocol_ipv6: enabled("httpProtocolIpv6")?,
    })
}

/// Applies `edit` to the live instance `id` by compare-and-set, as long as
/// it is still the one named `name` and the caller may act on it (checked
/// again on every attempt); a vanished instance is `NotFoundException`.
async fn update_named(
    cx: &Cx<'_>,
    name: &str,
    id: &InstanceId,
    edit: impl Fn(&mut InstanceRecord),
) -> Result<Vec<Change>, LsError> {
    cx.ops
        .update::<LsError, _>(std::slice::from_ref(id), Visibility::LiveOnly, |views| {
            let mut out = Vec::with_capacity(views.len());
            for v in views {
                let info = v
                    .record
                    .lightsail
                    .as_ref()
                    .filter(|l| l.name == name)
                    .ok_or_else(|| LsError::not_found("Instance", name))?;
                cx.authorize(vec![cx.instance_check(&v.record, info)])?;
                let mut r = v.record.clone();
                edit(&mut r);
                out.push(r);
            }
            Ok(out)
        })
        .await
        .map_err(|e| match e.shape {
            super::error::Shape::NotFound => LsError::not_found("Instance", name),
            _ => e,
        })
}

/// `UpdateInstanceMetadataOptions`: answers the singular `operation`.
async fn update_metadata_options(cx: &mut Cx<'_>, value: &Value) -> Result<String, LsError> {
    let input = Input::new(
        value,
        "",
        &["instanceName", "httpTokens", "httpEndpoint", "httpPutResponseHopLimit", "httpProtocolIpv6"],
    )?;
    let name = instance_name(&input)?;
    let change = options_change(&input)?;
    let (view, _) = named(cx, name).await?;
    if change.http_tokens == Some(HttpTokens::Optional)
        && cx.ops.account_defaults().await.map_err(|e| LsError::from_op(e, None))?.http_tokens_enforced
            == Some(Enabled::Enabled)
    {
        return Err(LsError::from_op(OpError::HttpTokensEnforced, None));
    }
    let changes = update_named(cx, name, &view.record.instance_id, |o| {
        let o = &mut o.metadata_options;
        o.http_tokens = change.http_tokens.unwrap_or(o.http_tokens);
        o.http_endpoint = change.http_endpoint.unwrap_or(o.http_endpoint);
        o.http_put_response_hop_limit = change.hop_limit.unwrap_or(o.http_put_response_hop_limit);
        o.http_protocol_ipv6 = change.http_protocol_ipv6.unwrap_or(o.http_protocol_ipv6);
    })
    .await?;
    cx.touched = vec![name.to_owned()];
    let record = changes.first().map(|c| &c.after).ok_or_else(|| LsError::not_found("Instance", name))?;
    #[derive(Serialize)]
    struct Answer {
        operation: Operation,
    }
    let now = cx.ops.clock().now_millis();
    to_json(&Answer {
        operation: Operation::new(record, name, "UpdateInstanceMetadataOptions", "Started", now),
    })
}

/// `DeleteInstance`: terminates the instance (its addresses and name are
/// released in the same transaction).
async fn delete_instance(cx: &mut Cx<'_>, value: &Value) -> Result<String, LsError> {
    let input = Input::new(value, "", &["instanceName", "forceDeleteAddOns"])?;
    let name = instance_name(&input)?;
    input.bool("forceDeleteAddOns")?;
    let (view, _) = named(cx, name).await?;
    let changes =
        update_named(cx, name, &view.record.instance_id, |r| r.state = InstanceState::Terminated).await?;
    cx.touched = vec![name.to_owned()];
    let now = cx.ops.clock().now_millis();
    let operations =
        changes.iter().map(|c| Operation::new(&c.after, name, "DeleteInstance", "Succeeded", now)).collect();
    to_json(&Operations { operations })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_tokens_round_trip_names_only() {
        let token = URL_SAFE_NO_PAD.encode("web-1");
        assert_eq!(decode_page_token(&token).unwrap(), "web-1");
        assert!(decode_page_token("!!").is_err());
        assert!(decode_page_token(&URL_SAFE_NO_PAD.encode("a b")).is_err());
    }
}
