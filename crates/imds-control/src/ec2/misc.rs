//! DescribeRegions and DescribeAvailabilityZones: the one configured region
//! and its zones `a`, `b`, `c` (with the zone ids RunInstances uses), so
//! tools that look these up before launching work.

use super::Cx;
use super::filter;
use crate::error::ApiError;
use crate::ids;
use crate::query::View;

/// Zone letters of the configured region.
pub const ZONE_LETTERS: [char; 3] = ['a', 'b', 'c'];

/// `DescribeRegions`.
pub async fn describe_regions(cx: &mut Cx<'_>, p: View<'_>) -> Result<String, ApiError> {
    p.bool("AllRegions")?;
    let filters = filter::parse(&p)?;
    let names = p.list("RegionName");
    if let Some(unknown) = names.iter().find(|n| **n != cx.region) {
        return Err(ApiError::invalid_value(format!("Invalid region: {unknown}")));
    }
    let endpoint = format!("ec2.{}.amazonaws.com", cx.region);
    let regions = filter::apply(
        vec![cx.region.to_owned()],
        &filters,
        |n| matches!(n, "region-name" | "endpoint" | "opt-in-status"),
        |r, name| {
            vec![match name {
                "region-name" => r.clone(),
                "endpoint" => endpoint.clone(),
                _ => "opt-in-not-required".to_owned(),
            }]
        },
    )?;
    cx.gate(vec![cx.check("*")])?;
    let mut x = cx.xml();
    x.list("regionInfo", &regions, |x, r| {
        x.leaf("regionName", r).leaf("regionEndpoint", &endpoint).leaf("optInStatus", "opt-in-not-required");
    });
    Ok(x.finish())
}

/// `DescribeAvailabilityZones`.
pub async fn describe_zones(cx: &mut Cx<'_>, p: View<'_>) -> Result<String, ApiError> {
    p.bool("AllAvailabilityZones")?;
    let filters = filter::parse(&p)?;
    let zones: Vec<(String, String)> = ZONE_LETTERS
        .iter()
        .map(|c| (format!("{}{c}", cx.region), ids::availability_zone_id(cx.region, *c)))
        .collect();
    let names = p.list("ZoneName");
    let zone_ids = p.list("ZoneId");
    for n in names.iter().chain(&zone_ids) {
        if !zones.iter().any(|(name, id)| name == n || id == n) {
            return Err(ApiError::invalid_value(format!("The zone '{n}' does not exist in this region.")));
        }
    }
    let selected: Vec<_> = zones
        .into_iter()
        .filter(|(name, id)| {
            (names.is_empty() && zone_ids.is_empty())
                || names.contains(&name.as_str())
                || zone_ids.contains(&id.as_str())
        })
        .collect();
    let region = cx.region.to_owned();
    let selected = filter::apply(
        selected,
        &filters,
        |n| {
            matches!(
                n,
                "zone-name"
                    | "zone-id"
                    | "region-name"
                    | "state"
                    | "zone-type"
                    | "group-name"
                    | "opt-in-status"
            )
        },
        |(name, id), f| {
            vec![match f {
                "zone-name" => name.clone(),
                "zone-id" => id.clone(),
                "region-name" | "group-name" => region.clone(),
                "state" => "available".to_owned(),
                "zone-type" => "availability-zone".to_owned(),
                _ => "opt-in-not-required".to_owned(),
            }]
        },
    )?;
    cx.gate(vec![cx.check("*")])?;
    let mut x = cx.xml();
    x.list("availabilityZoneInfo", &selected, |x, (name, id)| {
        x.leaf("zoneName", name)
            .leaf("zoneId", id)
            .leaf("zoneState", "available")
            .leaf("regionName", cx.region)
            .leaf("groupName", cx.region)
            .leaf("networkBorderGroup", cx.region)
            .leaf("optInStatus", "opt-in-not-required")
            .leaf("zoneType", "availability-zone")
            .empty("messageSet");
    });
    Ok(x.finish())
}
