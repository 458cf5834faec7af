//! Images (AMIs) as far as instance metadata needs them: RegisterImage,
//! DescribeImages, DeregisterImage, and the `ImdsSupport` / description
//! attributes (Modify/DescribeImageAttribute). An image's `ImdsSupport=v2.0`
//! makes launches default to `HttpTokens=required` and hop limit 2
//! ([`crate::ops::launch::resolve_options`]); once set it cannot be undone.

use super::filter;
use super::{Cx, render, tags};
use crate::error::ApiError;
use crate::ops::OpError;
use crate::ops::settings::ImageRecord;
use crate::query::View;
use crate::xml::Xml;
use imds_core::ids::is_valid_resource_id;
use std::collections::BTreeMap;

const ARCHITECTURES: &[&str] = &["i386", "x86_64", "arm64", "x86_64_mac", "arm64_mac"];

/// `ImageAttributeName` of the model.
const IMAGE_ATTRIBUTES: &[&str] = &[
    "description",
    "kernel",
    "ramdisk",
    "launchPermission",
    "productCodes",
    "blockDeviceMapping",
    "sriovNetSupport",
    "bootMode",
    "tpmSupport",
    "uefiData",
    "lastLaunchedTime",
    "imdsSupport",
    "deregistrationProtection",
];

fn image_id(raw: &str) -> Result<&str, ApiError> {
    if is_valid_resource_id("ami", raw) { Ok(raw) } else { Err(ApiError::image_malformed(raw)) }
}

fn one_of(name: &str, value: Option<&str>, allowed: &[&str]) -> Result<Option<String>, ApiError> {
    match value {
        None => Ok(None),
        Some(v) if allowed.contains(&v) => Ok(Some(v.to_owned())),
        Some(v) => Err(ApiError::invalid_parameter(name, v)),
    }
}

fn resource_tags(p: &View<'_>, resource_type: &str) -> Result<BTreeMap<String, String>, ApiError> {
    let mut out = BTreeMap::new();
    for spec in p.struct_list("TagSpecification") {
        if spec.required_str("ResourceType")? == resource_type {
            for (k, v) in tags::parse_tags(&spec, true)? {
                out.insert(k, v.unwrap_or_default());
            }
        }
    }
    if out.len() > tags::MAX_TAGS {
        return Err(ApiError::tag_limit_exceeded());
    }
    Ok(out)
}

/// `RegisterImage`.
pub async fn register(cx: &mut Cx<'_>, p: View<'_>) -> Result<String, ApiError> {
    let name = p.required_str("Name")?;
    let name_ok = (3..=128).contains(&name.chars().count())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || "()[] ./-'@_".contains(c));
    if !name_ok {
        return Err(ApiError::invalid_value(
            "AMI names must be between 3 and 128 characters long, and may contain letters, numbers, '(', ')', '[', ']', ' ', '.', '/', '-', ''', '@' and '_'",
        ));
    }
    let description = p.str("Description").map(str::to_owned);
    if description.as_ref().is_some_and(|d| d.chars().count() > 255) {
        return Err(ApiError::invalid_value("The description is longer than 255 characters."));
    }
    let image = ImageRecord {
        image_id: String::new(),
        name: name.to_owned(),
        description,
        architecture: one_of("Architecture", p.str("Architecture"), ARCHITECTURES)?
            .unwrap_or_else(|| "x86_64".into()),
        imds_support: one_of("ImdsSupport", p.str("ImdsSupport"), &["v2.0"])?,
        root_device_name: p.str("RootDeviceName").unwrap_or("/dev/xvda").to_owned(),
        virtualization_type: one_of(
            "VirtualizationType",
            p.str("VirtualizationType"),
            &["hvm", "paravirtual"],
        )?
        .unwrap_or_else(|| "hvm".into()),
        kernel_id: p.str("KernelId").map(str::to_owned),
        ramdisk_id: p.str("RamdiskId").map(str::to_owned),
        ena_support: p.bool("EnaSupport")?.unwrap_or(false),
        boot_mode: one_of("BootMode", p.str("BootMode"), &["legacy-bios", "uefi", "uefi-preferred"])?,
        tpm_support: one_of("TpmSupport", p.str("TpmSupport"), &["v2.0"])?,
        sriov_net_support: p.str("SriovNetSupport").map(str::to_owned),
        image_location: p.str("ImageLocation").map(str::to_owned),
        creation_millis: cx.ops.clock().now_millis(),
        owner_id: cx.account.to_owned(),
        tags: resource_tags(&p, "image")?,
    };
    cx.gate(vec![cx.check(cx.image_arn("*")).request_tags(&image.tags)])?;
    let image = cx.ops.register_image(image).await?;
    cx.touched = vec![image.image_id.clone()];
    let mut x = cx.xml();
    x.leaf("imageId", &image.image_id);
    Ok(x.finish())
}

fn image_filter_values(i: &ImageRecord, name: &str) -> Vec<String> {
    if let Some(k) = name.strip_prefix("tag:") {
        return i.tags.get(k).cloned().into_iter().collect();
    }
    match name {
        "image-id" => vec![i.image_id.clone()],
        "name" => vec![i.name.clone()],
        "description" => i.description.clone().into_iter().collect(),
        "architecture" => vec![i.architecture.clone()],
        "state" => vec!["available".into()],
        "owner-id" => vec![i.owner_id.clone()],
        "image-type" => vec!["machine".into()],
        "is-public" => vec!["false".into()],
        "root-device-name" => vec![i.root_device_name.clone()],
        "root-device-type" => vec!["ebs".into()],
        "virtualization-type" => vec![i.virtualization_type.clone()],
        "imds-support" => i.imds_support.clone().into_iter().collect(),
        "tag-key" => i.tags.keys().cloned().collect(),
        _ => Vec::new(),
    }
}

const IMAGE_FILTERS: &[&str] = &[
    "image-id",
    "name",
    "description",
    "architecture",
    "state",
    "owner-id",
    "image-type",
    "is-public",
    "root-device-name",
    "root-device-type",
    "virtualization-type",
    "imds-support",
    "tag-key",
];

/// `DescribeImages`.
pub async fn describe(cx: &mut Cx<'_>, p: View<'_>) -> Result<String, ApiError> {
    let ids = p.list("ImageId").into_iter().map(image_id).collect::<Result<Vec<_>, _>>()?;
    if !ids.is_empty() && p.str("MaxResults").is_some() {
        return Err(ApiError::invalid_combination(
            "The parameter ImageId cannot be used with the parameter MaxResults",
        ));
    }
    let filters = filter::parse(&p)?;
    let page = filter::page(&p, 5, 1000)?;
    let owners = p.list("Owner");
    let mut images = cx.ops.images().await?;
    if !ids.is_empty() {
        let missing: Vec<String> = ids
            .iter()
            .filter(|id| !images.iter().any(|i| i.image_id == **id))
            .map(|s| (*s).to_owned())
            .collect();
        if !missing.is_empty() {
            return Err(ApiError::image_not_found(&missing));
        }
        images.retain(|i| ids.contains(&i.image_id.as_str()));
    }
    if !owners.is_empty() {
        images.retain(|i| owners.iter().any(|o| *o == "self" || *o == i.owner_id));
    }
    let known = |n: &str| IMAGE_FILTERS.contains(&n) || n.strip_prefix("tag:").is_some_and(|k| !k.is_empty());
    let images = filter::apply(images, &filters, known, image_filter_values)?;
    cx.gate(vec![cx.check("*")])?;
    let (images, next) = filter::paginate(images, &page, |i| i.image_id.clone());
    let mut x = cx.xml();
    x.list("imagesSet", &images, image);
    x.leaf_opt("nextToken", next);
    Ok(x.finish())
}

fn image(x: &mut Xml, i: &ImageRecord) {
    let location = i.image_location.clone().unwrap_or_else(|| format!("{}/{}", i.owner_id, i.name));
    x.leaf("imageId", &i.image_id)
        .leaf("imageLocation", location)
        .leaf("imageState", "available")
        .leaf("imageOwnerId", &i.owner_id)
        .leaf("creationDate", render::iso_time(i.creation_millis / 1000))
        .leaf("isPublic", false)
        .leaf("architecture", &i.architecture)
        .leaf("imageType", "machine")
        .leaf_opt("kernelId", i.kernel_id.as_deref())
        .leaf_opt("ramdiskId", i.ramdisk_id.as_deref())
        .leaf("name", &i.name)
        .leaf_opt("description", i.description.as_deref())
        .leaf("rootDeviceType", "ebs")
        .leaf("rootDeviceName", &i.root_device_name)
        .empty("blockDeviceMapping")
        .leaf("virtualizationType", &i.virtualization_type);
    render::tags(x, &i.tags);
    x.leaf("hypervisor", "xen")
        .leaf("enaSupport", i.ena_support)
        .leaf_opt("sriovNetSupport", i.sriov_net_support.as_deref())
        .leaf_opt("bootMode", i.boot_mode.as_deref())
        .leaf_opt("tpmSupport", i.tpm_support.as_deref())
        .leaf_opt("imdsSupport", i.imds_support.as_deref())
        .leaf("platformDetails", "Linux/UNIX")
        .leaf("usageOperation", "RunInstances");
}

async fn existing(cx: &Cx<'_>, raw: &str) -> Result<ImageRecord, ApiError> {
    let id = image_id(raw)?;
    cx.ops.image(id).await?.ok_or_else(|| ApiError::image_not_found(&[id.to_owned()]))
}

/// `DeregisterImage`.
pub async fn deregister(cx: &mut Cx<'_>, p: View<'_>) -> Result<String, ApiError> {
    let img = existing(cx, p.required_str("ImageId")?).await?;
    cx.gate(vec![cx.check(cx.image_arn(&img.image_id))])?;
    cx.ops.deregister_image(&img.image_id).await?;
    cx.touched = vec![img.image_id];
    Ok(Xml::return_true(cx.action, cx.request_id))
}

/// `ModifyImageAttribute`: `imdsSupport` (only `v2.0`, irreversible) and
/// `description`.
pub async fn modify_attribute(cx: &mut Cx<'_>, p: View<'_>) -> Result<String, ApiError> {
    let mut forms: Vec<(&str, Option<&str>)> = Vec::new();
    if let Some(a) = p.str("Attribute") {
        forms.push((a, p.str("Value")));
    } else if p.str("Value").is_some() {
        return Err(ApiError::missing_parameter("Attribute"));
    }
    for (member, name) in [("ImdsSupport", "imdsSupport"), ("Description", "description")] {
        if p.has_sub(member) {
            forms.push((name, p.sub(member).str("Value")));
        }
    }
    let other = [
        "LaunchPermission",
        "OperationType",
        "ProductCode",
        "UserGroup",
        "UserId",
        "OrganizationArn",
        "OrganizationalUnitArn",
    ];
    if other.iter().any(|m| p.has_sub(m) || p.str(m).is_some() || !p.list(m).is_empty()) {
        forms.push(("launchPermission", None));
    }
    let (attribute, value) = match forms.as_slice() {
        [] => return Err(ApiError::missing_parameter("Attribute")),
        [(a, Some(v))] if matches!(*a, "imdsSupport" | "description") => (*a, *v),
        [(a, None)] if matches!(*a, "imdsSupport" | "description") => {
            return Err(ApiError::missing_parameter("Value"));
        }
        [(a, _)] => {
            return Err(ApiError::invalid_value(format!(
                "Modifying the image attribute '{a}' is not supported by this endpoint; only imdsSupport and description can be changed."
            )));
        }
        _ => return Err(ApiError::invalid_combination("Only one attribute can be modified per request.")),
    };
    if attribute == "imdsSupport" && value != "v2.0" {
        return Err(ApiError::invalid_parameter("ImdsSupport", value));
    }
    if attribute == "description" && value.chars().count() > 255 {
        return Err(ApiError::invalid_value("The description is longer than 255 characters."));
    }
    let img = existing(cx, p.required_str("ImageId")?).await?;
    let check = cx
        .check(cx.image_arn(&img.image_id))
        .attribute(if attribute == "imdsSupport" { "ImdsSupport" } else { "Description" }, value);
    cx.gate(vec![check])?;
    cx.ops
        .update_image::<OpError>(&img.image_id, |i| {
            match attribute {
                "imdsSupport" => i.imds_support = Some(value.to_owned()),
                _ => i.description = Some(value.to_owned()),
            }
            Ok(())
        })
        .await?;
    cx.touched = vec![img.image_id];
    Ok(Xml::return_true(cx.action, cx.request_id))
}

/// `DescribeImageAttribute`.
pub async fn describe_attribute(cx: &mut Cx<'_>, p: View<'_>) -> Result<String, ApiError> {
    let attribute = p.required_str("Attribute")?;
    if !IMAGE_ATTRIBUTES.contains(&attribute) {
        return Err(ApiError::invalid_parameter("Attribute", attribute));
    }
    let img = existing(cx, p.required_str("ImageId")?).await?;
    cx.gate(vec![cx.check(cx.image_arn(&img.image_id))])?;
    let mut x = cx.xml();
    x.leaf("imageId", &img.image_id);
    let value = |x: &mut Xml, v: Option<&str>| {
        match v {
            Some(v) => x.structure(attribute, |x| {
                x.leaf("value", v);
            }),
            None => x.empty(attribute),
        };
    };
    match attribute {
        "description" => value(&mut x, img.description.as_deref()),
        "kernel" => value(&mut x, img.kernel_id.as_deref()),
        "ramdisk" => value(&mut x, img.ramdisk_id.as_deref()),
        "sriovNetSupport" => value(&mut x, img.sriov_net_support.as_deref()),
        "bootMode" => value(&mut x, img.boot_mode.as_deref()),
        "tpmSupport" => value(&mut x, img.tpm_support.as_deref()),
        "imdsSupport" => value(&mut x, img.imds_support.as_deref()),
        "deregistrationProtection" => value(&mut x, Some("disabled")),
        "uefiData" | "lastLaunchedTime" => value(&mut x, None),
        list => {
            x.empty(list);
        }
    }
    Ok(x.finish())
}
