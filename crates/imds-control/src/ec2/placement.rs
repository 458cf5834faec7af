//! `ModifyInstancePlacement`: moves a stopped instance to another host (and
//! into or out of a placement group or partition). The move is a spec
//! change like any other: the generation is bumped, the host that now has
//! the instance acknowledges it (`applied`), and the host it left stops
//! serving it. The next `StartInstances` gives it a new incarnation, so
//! tokens issued before the move are refused everywhere.
//!
//! What this emulation does with each member:
//!
//! * `HostId`: the serving host. In a fleet it must be a live host
//!   (`InvalidHostID.NotFound` otherwise, see
//!   [`crate::ops::launch`]); on one host any id is kept as given.
//! * `GroupName` (`""` leaves the group, and its partition), and
//!   `PartitionNumber` (1–7, needs a group): stored and shown in metadata.
//! * `Tenancy`: imdsd derives it from the host (`host` with a `HostId`,
//!   `default` without), so a value that contradicts the result is refused.
//! * `Affinity`: accepted and validated; it changes nothing, because an
//!   instance always stays on its host across stop and start (what EC2 calls
//!   `host` affinity).
//! * `HostResourceGroupArn`, `GroupId`: `Unsupported` (no resource groups,
//!   no placement-group ids here).
//!
//! As on EC2, changing the host, tenancy, group or partition needs a
//! stopped instance (`IncorrectInstanceState` otherwise).

use super::{Cx, required_instance_id};
use crate::error::ApiError;
use crate::ops::Visibility;
use crate::query::View;
use imds_core::InstanceState;

/// Accepted members of `ModifyInstancePlacement` (botocore model, API
/// version 2016-11-15), plus `DryRun`: the model has none for this action
/// (SDKs never send it), but every action of this endpoint answers it the
/// same way.
pub const MODIFY_INSTANCE_PLACEMENT: &[&str] = &[
    "GroupName",
    "PartitionNumber",
    "HostResourceGroupArn",
    "GroupId",
    "InstanceId",
    "Tenancy",
    "Affinity",
    "HostId",
    "DryRun",
];

/// Largest placement group name accepted.
const MAX_GROUP_NAME: usize = 255;

/// The requested changes, validated.
#[derive(Debug, Default)]
struct Request<'a> {
    host_id: Option<&'a str>,
    /// `Some(None)`: leave the group.
    group_name: Option<Option<&'a str>>,
    partition_number: Option<u32>,
    tenancy: Option<&'a str>,
    affinity: Option<&'a str>,
}

impl Request<'_> {
    /// Whether anything that needs a stopped instance is asked for.
    fn moves(&self) -> bool {
        self.host_id.is_some()
            || self.group_name.is_some()
            || self.partition_number.is_some()
            || self.tenancy.is_some()
    }
}

/// A host id as RunInstances accepts it.
fn valid_host_id(h: &str) -> bool {
    !h.is_empty() && h.len() <= 128 && h.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

fn parse<'a>(p: &View<'a>) -> Result<Request<'a>, ApiError> {
    for unsupported in ["HostResourceGroupArn", "GroupId"] {
        if p.str(unsupported).is_some() {
            return Err(ApiError::unsupported(format!(
                "The parameter {unsupported} is not supported by this endpoint."
            )));
        }
    }
    let host_id = match p.str("HostId") {
        Some(h) if !valid_host_id(h) => return Err(ApiError::invalid_parameter("HostId", h)),
        h => h,
    };
    let group_name = match p.str("GroupName") {
        None => None,
        Some("") => Some(None),
        Some(g) if g.len() > MAX_GROUP_NAME => return Err(ApiError::invalid_parameter("GroupName", g)),
        Some(g) => Some(Some(g)),
    };
    let partition_number = match p.int("PartitionNumber")? {
        None => None,
        Some(n) => Some(
            u32::try_from(n)
                .ok()
                .filter(|n| (1..=7).contains(n))
                .ok_or_else(|| ApiError::invalid_parameter("PartitionNumber", &n.to_string()))?,
        ),
    };
    let tenancy = match p.str("Tenancy") {
        Some(t) if !matches!(t, "default" | "dedicated" | "host") => {
            return Err(ApiError::invalid_parameter("Tenancy", t));
        }
        t => t,
    };
    let affinity = match p.str("Affinity") {
        Some(a) if !matches!(a, "default" | "host") => {
            return Err(ApiError::invalid_parameter("Affinity", a));
        }
        a => a,
    };
    let req = Request { host_id, group_name, partition_number, tenancy, affinity };
    if !req.moves() && req.affinity.is_none() {
        return Err(ApiError::invalid_combination(
            "At least one of Affinity, HostId, Tenancy, GroupName or PartitionNumber must be specified.",
        ));
    }
    Ok(req)
}

/// `ModifyInstancePlacement`.
pub async fn modify(cx: &mut Cx<'_>, p: View<'_>) -> Result<String, ApiError> {
    let id = required_instance_id(&p)?;
    let req = parse(&p)?;
    if let Some(host) = req.host_id {
        cx.ops.ensure_host(host).await?;
    }
    {
        let cx = &*cx;
        cx.ops
            .update::<ApiError, _>(std::slice::from_ref(&id), Visibility::LiveOnly, |views| {
                let mut out = Vec::with_capacity(views.len());
                let mut checks = Vec::with_capacity(views.len());
                for v in views {
                    if req.moves() && v.record.state != InstanceState::Stopped {
                        return Err(ApiError::incorrect_instance_state(format!(
                            "The instance '{}' is not in the 'stopped' state.",
                            v.record.instance_id
                        )));
                    }
                    let mut r = v.record.clone();
                    let placement = &mut r.placement;
                    if let Some(h) = req.host_id {
                        placement.host_id = Some(h.to_owned());
                    }
                    match req.group_name {
                        Some(None) => {
                            placement.group_name = None;
                            placement.partition_number = None;
                        }
                        Some(Some(g)) => placement.group_name = Some(g.to_owned()),
                        None => {}
                    }
                    if let Some(n) = req.partition_number {
                        if placement.group_name.is_none() {
                            return Err(ApiError::invalid_combination(
                                "PartitionNumber needs the instance to be in a placement group (GroupName).",
                            ));
                        }
                        placement.partition_number = Some(n);
                    }
                    match (req.tenancy, &placement.host_id) {
                        (Some("host"), None) => {
                            return Err(ApiError::invalid_combination(
                                "Tenancy 'host' needs a HostId for the instance.",
                            ));
                        }
                        (Some(t @ ("default" | "dedicated")), Some(_)) => {
                            return Err(ApiError::invalid_combination(format!(
                                "The tenancy of an instance on a host cannot be changed from 'host' to '{t}'."
                            )));
                        }
                        _ => {}
                    }
                    checks.push(cx.check(cx.instance_arn(r.instance_id.as_str())).instance(&v.record));
                    out.push(r);
                }
                cx.gate(checks)?;
                Ok(out)
            })
            .await?;
    }
    cx.touched = vec![id.to_string()];
    let mut x = cx.xml();
    x.leaf("return", true);
    Ok(x.finish())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::Params;

    fn parsed(pairs: &[(&str, &str)]) -> Result<(), ApiError> {
        let params = Params::from_pairs(pairs.iter().copied());
        parse(&params.root()).map(|_| ())
    }

    #[test]
    fn members_are_validated_before_anything_is_read() {
        assert_eq!(parsed(&[("HostId", "h-1")]), Ok(()));
        assert_eq!(parsed(&[("Affinity", "host")]), Ok(()));
        assert_eq!(parsed(&[("GroupName", "")]), Ok(()));
        assert_eq!(parsed(&[]).unwrap_err().code, "InvalidParameterCombination");
        assert_eq!(parsed(&[("HostId", "h 1")]).unwrap_err().code, "InvalidParameterValue");
        assert_eq!(parsed(&[("Tenancy", "shared")]).unwrap_err().code, "InvalidParameterValue");
        assert_eq!(parsed(&[("Affinity", "none")]).unwrap_err().code, "InvalidParameterValue");
        assert_eq!(parsed(&[("PartitionNumber", "8")]).unwrap_err().code, "InvalidParameterValue");
        assert_eq!(parsed(&[("GroupId", "pg-1")]).unwrap_err().code, "Unsupported");
    }
}
