//! The EC2 actions: the table of implemented actions (name, accepted
//! parameters, whether it changes anything), the per-request context
//! [`Cx`] with the authorise-then-DryRun gate, dispatch, and helpers every
//! action family shares (instance ids, filters, pagination). One module per
//! action family holds the actions themselves.
//!
//! Every action follows the same order: parse and validate parameters (400
//! errors win), check that referenced resources exist, authorise, then
//! answer DryRun with 412 (or 403), then change the store.

mod attributes;
mod filter;
mod images;
mod instances;
mod keypairs;
mod metadata;
mod misc;
pub mod params;
mod placement;
mod render;
mod tags;

use crate::Caller;
use crate::auth::{self, Check};
use crate::error::ApiError;
use crate::ops::Ops;
use crate::query::View;
use crate::xml::Xml;
use imds_core::InstanceId;

/// One implemented action.
#[derive(Debug, Clone, Copy)]
pub struct ActionDef {
    /// `RunInstances`.
    pub name: &'static str,
    /// Accepted parameter patterns (see [`params`]).
    pub params: &'static [&'static str],
    /// Whether it changes state (audited).
    pub mutating: bool,
}

const fn def(name: &'static str, params: &'static [&'static str], mutating: bool) -> ActionDef {
    ActionDef { name, params, mutating }
}

/// Every implemented action.
pub const ACTIONS: &[ActionDef] = &[
    def("RunInstances", params::RUN_INSTANCES, true),
    def("DescribeInstances", params::DESCRIBE_INSTANCES, false),
    def("ModifyInstanceMetadataOptions", params::MODIFY_INSTANCE_METADATA_OPTIONS, true),
    def("StopInstances", params::STOP_INSTANCES, true),
    def("StartInstances", params::START_INSTANCES, true),
    def("TerminateInstances", params::TERMINATE_INSTANCES, true),
    def("RebootInstances", params::REBOOT_INSTANCES, true),
    def("ModifyInstanceAttribute", params::MODIFY_INSTANCE_ATTRIBUTE, true),
    def("ModifyInstancePlacement", placement::MODIFY_INSTANCE_PLACEMENT, true),
    def("DescribeInstanceAttribute", params::DESCRIBE_INSTANCE_ATTRIBUTE, false),
    def("DescribeInstanceStatus", params::DESCRIBE_INSTANCE_STATUS, false),
    def("CreateTags", params::CREATE_TAGS, true),
    def("DeleteTags", params::DELETE_TAGS, true),
    def("DescribeTags", params::DESCRIBE_TAGS, false),
    def("ModifyInstanceMetadataDefaults", params::MODIFY_INSTANCE_METADATA_DEFAULTS, true),
    def("GetInstanceMetadataDefaults", params::GET_INSTANCE_METADATA_DEFAULTS, false),
    def("RegisterImage", params::REGISTER_IMAGE, true),
    def("DescribeImages", params::DESCRIBE_IMAGES, false),
    def("DeregisterImage", params::DEREGISTER_IMAGE, true),
    def("ModifyImageAttribute", params::MODIFY_IMAGE_ATTRIBUTE, true),
    def("DescribeImageAttribute", params::DESCRIBE_IMAGE_ATTRIBUTE, false),
    def("ImportKeyPair", params::IMPORT_KEY_PAIR, true),
    def("DescribeKeyPairs", params::DESCRIBE_KEY_PAIRS, false),
    def("DeleteKeyPair", params::DELETE_KEY_PAIR, true),
    def("DescribeRegions", params::DESCRIBE_REGIONS, false),
    def("DescribeAvailabilityZones", params::DESCRIBE_AVAILABILITY_ZONES, false),
];

/// The implemented action called `name` (case-sensitive, as EC2).
pub fn find(name: &str) -> Option<&'static ActionDef> {
    ACTIONS.iter().find(|d| d.name == name)
}

/// Everything one request's action needs.
pub struct Cx<'a> {
    /// Store operations.
    pub ops: &'a Ops,
    /// The authenticated caller.
    pub caller: &'a Caller,
    /// Region served.
    pub region: &'a str,
    /// Owning account.
    pub account: &'a str,
    /// This request's id.
    pub request_id: &'a str,
    /// The action name.
    pub action: &'static str,
    /// `DryRun=true`.
    pub dry_run: bool,
    /// Resource ids the action touched (for the audit line).
    pub touched: Vec<String>,
}

impl Cx<'_> {
    /// `ec2:<Action>`.
    pub fn iam_action(&self) -> String {
        format!("ec2:{}", self.action)
    }

    /// A check of this action on `resource`.
    pub fn check(&self, resource: impl Into<String>) -> Check {
        Check::new(self.iam_action(), resource)
    }

    /// `arn:aws:ec2:<region>:<account>:instance/<id>` (`*` for all).
    pub fn instance_arn(&self, id: &str) -> String {
        format!("arn:aws:ec2:{}:{}:instance/{id}", self.region, self.account)
    }

    /// `arn:aws:ec2:<region>::image/<id>`.
    pub fn image_arn(&self, id: &str) -> String {
        format!("arn:aws:ec2:{}::image/{id}", self.region)
    }

    /// `arn:aws:ec2:<region>:<account>:key-pair/<name>`.
    pub fn key_pair_arn(&self, name: &str) -> String {
        format!("arn:aws:ec2:{}:{}:key-pair/{name}", self.region, self.account)
    }

    /// Authorises every check, then ends a DryRun with 412.
    pub fn gate(&self, checks: Vec<Check>) -> Result<(), ApiError> {
        auth::authorize(self.caller, self.region, checks)?;
        if self.dry_run { Err(ApiError::dry_run_ok()) } else { Ok(()) }
    }

    /// A response document for this action.
    pub fn xml(&self) -> Xml {
        Xml::response(self.action, self.request_id)
    }
}

/// Runs the action of `cx` with its parameters.
pub async fn dispatch(cx: &mut Cx<'_>, p: View<'_>) -> Result<String, ApiError> {
    match cx.action {
        "RunInstances" => instances::run(cx, p).await,
        "DescribeInstances" => instances::describe(cx, p).await,
        "StopInstances" => instances::stop(cx, p).await,
        "StartInstances" => instances::start(cx, p).await,
        "TerminateInstances" => instances::terminate(cx, p).await,
        "RebootInstances" => instances::reboot(cx, p).await,
        "DescribeInstanceStatus" => instances::describe_status(cx, p).await,
        "ModifyInstanceMetadataOptions" => metadata::modify_options(cx, p).await,
        "ModifyInstanceMetadataDefaults" => metadata::modify_defaults(cx, p).await,
        "GetInstanceMetadataDefaults" => metadata::get_defaults(cx, p).await,
        "ModifyInstanceAttribute" => attributes::modify(cx, p).await,
        "ModifyInstancePlacement" => placement::modify(cx, p).await,
        "DescribeInstanceAttribute" => attributes::describe(cx, p).await,
        "CreateTags" => tags::create(cx, p).await,
        "DeleteTags" => tags::delete(cx, p).await,
        "DescribeTags" => tags::describe(cx, p).await,
        "RegisterImage" => images::register(cx, p).await,
        "DescribeImages" => images::describe(cx, p).await,
        "DeregisterImage" => images::deregister(cx, p).await,
        "ModifyImageAttribute" => images::modify_attribute(cx, p).await,
        "DescribeImageAttribute" => images::describe_attribute(cx, p).await,
        "ImportKeyPair" => keypairs::import(cx, p).await,
        "DescribeKeyPairs" => keypairs::describe(cx, p).await,
        "DeleteKeyPair" => keypairs::delete(cx, p).await,
        "DescribeRegions" => misc::describe_regions(cx, p).await,
        "DescribeAvailabilityZones" => misc::describe_zones(cx, p).await,
        other => Err(ApiError::invalid_action(other)),
    }
}

/// Parses instance ids; the first malformed one is the error.
pub fn instance_ids(raw: &[&str]) -> Result<Vec<InstanceId>, ApiError> {
    raw.iter().map(|s| InstanceId::parse(s).map_err(|_| ApiError::instance_malformed(s))).collect()
}

/// The required `InstanceId.N` list of Stop/Start/Terminate/Reboot.
pub fn required_instance_ids(p: &View<'_>) -> Result<Vec<InstanceId>, ApiError> {
    let raw = p.list("InstanceId");
    if raw.is_empty() {
        return Err(ApiError::missing_parameter("InstanceId"));
    }
    instance_ids(&raw)
}

/// The single required `InstanceId` of the Modify/Describe attribute
/// actions.
pub fn required_instance_id(p: &View<'_>) -> Result<InstanceId, ApiError> {
    let raw = p.required_str("InstanceId")?;
    InstanceId::parse(raw).map_err(|_| ApiError::instance_malformed(raw))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_action_is_dispatched_and_accepts_dry_run() {
        for d in ACTIONS {
            assert!(d.params.contains(&"DryRun"), "{} has no DryRun", d.name);
            assert_eq!(find(d.name).map(|x| x.name), Some(d.name));
        }
        assert!(find("runinstances").is_none());
    }
}
