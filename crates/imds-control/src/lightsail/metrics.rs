//! `GetInstanceMetricData` for the metric `MetadataNoToken` of a Lightsail
//! instance: the same per-minute usage data as CloudWatch's `AWS/EC2`
//! `MetadataNoToken` of the instance behind the name
//! ([`crate::cloudwatch`]), in Lightsail's shapes.
//!
//! The other instance metrics of the model (`CPUUtilization`, …) are valid
//! names without data here, and a unit other than `Count` matches no data,
//! as in CloudWatch: both answer an empty `metricData`. Input is validated
//! whole, then the instance must exist (`NotFoundException`), then
//! `lightsail:GetInstanceMetricData` is authorised on its ARN.

use super::Cx;
use super::catalog;
use super::error::LsError;
use super::input::Input;
use crate::cloudwatch::input::{MAX_TIME, whole_seconds};
use crate::cloudwatch::operations::{UNIT, UNITS, check_range};
use imds_usage::{MAX_DATAPOINTS, Metric, Statistic, metric_statistics};
use serde_json::{Map, Value, json};

/// The model's `InstanceMetricName` values.
pub const INSTANCE_METRIC_NAMES: &[&str] = &[
    "CPUUtilization",
    "NetworkIn",
    "NetworkOut",
    "StatusCheckFailed",
    "StatusCheckFailed_Instance",
    "StatusCheckFailed_System",
    "BurstCapacityTime",
    "BurstCapacityPercentage",
    "MetadataNoToken",
];

/// The model's `MetricStatistic` values.
const STATISTICS: &[&str] = &["Minimum", "Maximum", "Sum", "Average", "SampleCount"];

/// The model's bounds of `period` (`MetricPeriod`).
const PERIOD_MIN: i64 = 60;
const PERIOD_MAX: i64 = 86_400;

/// A required epoch-seconds timestamp member, rounded down.
fn timestamp(input: &Input<'_>, member: &str) -> Result<u64, LsError> {
    let secs = input.number(member)?.ok_or_else(|| LsError::missing(member))?;
    if !secs.is_finite() || !(0.0..=MAX_TIME).contains(&secs) {
        return Err(LsError::invalid(format!("The value of {member} must be a time between 1970 and 9999.")));
    }
    Ok(whole_seconds(secs))
}

/// The lower-camel-case member of a statistic in `MetricDatapoint`.
fn member(statistic: Statistic) -> &'static str {
    match statistic {
        Statistic::Average => "average",
        Statistic::Maximum => "maximum",
        Statistic::Minimum => "minimum",
        Statistic::SampleCount => "sampleCount",
        Statistic::Sum => "sum",
    }
}

/// `GetInstanceMetricData`.
pub(crate) async fn get_instance_metric_data(cx: &mut Cx<'_>, value: &Value) -> Result<String, LsError> {
    let input = Input::new(
        value,
        "",
        &["instanceName", "metricName", "period", "startTime", "endTime", "unit", "statistics"],
    )?;
    let name = input.required_str("instanceName")?;
    catalog::resource_name(name)?;
    let metric_name =
        input.enum_str("metricName", INSTANCE_METRIC_NAMES)?.ok_or_else(|| LsError::missing("metricName"))?;
    let period = input.int("period")?.ok_or_else(|| LsError::missing("period"))?;
    if !(PERIOD_MIN..=PERIOD_MAX).contains(&period) {
        return Err(LsError::invalid(format!(
            "The value {period} for parameter period is not valid. It must be between {PERIOD_MIN} and {PERIOD_MAX}."
        )));
    }
    let period = u64::try_from(period).unwrap_or(0);
    let start = timestamp(&input, "startTime")?;
    let end = timestamp(&input, "endTime")?;
    let unit = input.enum_str("unit", UNITS)?.ok_or_else(|| LsError::missing("unit"))?;
    let names = input.str_list("statistics")?.ok_or_else(|| LsError::missing("statistics"))?;
    if names.is_empty() {
        return Err(LsError::invalid("statistics must name at least one statistic."));
    }
    let mut statistics: Vec<Statistic> = Vec::with_capacity(names.len());
    for (i, s) in names.iter().enumerate() {
        let stat = s
            .parse::<Statistic>()
            .map_err(|_| LsError::not_in_enum(&format!("statistics[{i}]"), s, STATISTICS))?;
        if !statistics.contains(&stat) {
            statistics.push(stat);
        }
    }
    check_range(start, end, period, MAX_DATAPOINTS).map_err(LsError::from_usage)?;

    let view = cx.ops.get_by_name(name).await.map_err(|e| LsError::from_op(e, Some(name)))?;
    let view = view.ok_or_else(|| LsError::not_found("Instance", name))?;
    let info = view.record.lightsail.clone().ok_or_else(|| LsError::not_found("Instance", name))?;
    cx.authorize(vec![cx.instance_check(&view.record, &info)])?;

    let points = if metric_name == Metric::MetadataNoToken.as_str() && unit == UNIT {
        metric_statistics(
            cx.ops.store(),
            &view.record.instance_id,
            Metric::MetadataNoToken,
            start,
            end,
            period,
        )
        .await
        .map_err(LsError::from_usage)?
    } else {
        Vec::new()
    };
    let metric_data: Vec<Value> = points
        .iter()
        .map(|p| {
            let mut m = Map::new();
            for stat in &statistics {
                m.insert(member(*stat).to_owned(), json!(p.value(*stat)));
            }
            m.insert("timestamp".to_owned(), json!(p.timestamp));
            m.insert("unit".to_owned(), json!(UNIT));
            Value::Object(m)
        })
        .collect();
    Ok(json!({ "metricName": metric_name, "metricData": metric_data }).to_string())
}
