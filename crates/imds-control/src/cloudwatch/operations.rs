//! The operations: `GetMetricStatistics`, `GetMetricData` and
//! `ListMetrics`, over the usage data of [`imds_usage`].
//!
//! This endpoint has the metrics `AWS/EC2` `MetadataNoToken` and
//! `MetadataNoTokenRejected`, each with exactly the dimension `InstanceId`,
//! in unit `Count`. As in CloudWatch, a request for any other metric — other
//! namespace, name, dimension set, or unit — is valid and has no
//! datapoints; malformed input, bad periods and time ranges are errors
//! whatever the metric. Each operation validates its whole input before it
//! reads the store.

use super::error::CwError;
use super::input::{Input, whole_seconds};
use super::render::Out;
use crate::ops::Ops;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use imds_core::{InstanceId, InstanceState};
use imds_store::Store;
use imds_usage::{Datapoint, MAX_DATAPOINTS, Metric, Statistic, UsageError, metric_statistics};

/// The namespace of the usage metrics.
pub const NAMESPACE: &str = "AWS/EC2";

/// The one dimension of the usage metrics.
pub const DIMENSION: &str = "InstanceId";

/// The unit of the usage metrics.
pub const UNIT: &str = "Count";

/// Seconds in a minute, the resolution of the usage data.
const MINUTE: u64 = 60;

/// Most datapoints one `GetMetricData` answer holds (CloudWatch's default
/// and largest `MaxDatapoints`).
pub const MAX_METRIC_DATA_POINTS: u64 = 100_800;

/// Most queries in one `GetMetricData` call.
pub const MAX_QUERIES: usize = 500;

/// Metrics per `ListMetrics` page.
pub const LIST_PAGE_SIZE: usize = 500;

/// The units of the model (`StandardUnit`).
pub const UNITS: &[&str] = &[
    "Seconds",
    "Microseconds",
    "Milliseconds",
    "Bytes",
    "Kilobytes",
    "Megabytes",
    "Gigabytes",
    "Terabytes",
    "Bits",
    "Kilobits",
    "Megabits",
    "Gigabits",
    "Terabits",
    "Percent",
    "Count",
    "Bytes/Second",
    "Kilobytes/Second",
    "Megabytes/Second",
    "Gigabytes/Second",
    "Terabytes/Second",
    "Bits/Second",
    "Kilobits/Second",
    "Megabits/Second",
    "Gigabits/Second",
    "Terabits/Second",
    "Count/Second",
    "None",
];

/// The statistic names, in the order CloudWatch lists them in messages.
const STATISTICS: &[&str] = &["SampleCount", "Average", "Sum", "Minimum", "Maximum"];

/// A metric as a request names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricRef {
    /// `AWS/EC2`.
    pub namespace: String,
    /// `MetadataNoToken`.
    pub metric_name: String,
    /// Name and value of each dimension, in request order.
    pub dimensions: Vec<(String, String)>,
}

impl MetricRef {
    /// The usage metric and instance this names, if it names one: namespace
    /// `AWS/EC2`, a usage metric's name, and the single dimension
    /// `InstanceId` with a well-formed id.
    pub fn resolve(&self) -> Option<(Metric, InstanceId)> {
        if self.namespace != NAMESPACE {
            return None;
        }
        let metric = self.metric_name.parse::<Metric>().ok()?;
        match self.dimensions.as_slice() {
            [(name, value)] if name == DIMENSION => Some((metric, InstanceId::parse(value).ok()?)),
            _ => None,
        }
    }
}

/// Checks a string member's length against the model's bounds.
fn check_len(input: &Input<'_>, member: &str, value: &str, max: usize) -> Result<(), CwError> {
    if value.is_empty() || value.chars().count() > max {
        return Err(CwError::invalid_value(format!(
            "The parameter {} must be between 1 and {max} characters long.",
            input.name(member)
        )));
    }
    Ok(())
}

/// `Dimensions`: a list of `{Name, Value}`, both required (`Value`
/// optional where `filter`, as in `ListMetrics`).
fn dimensions(input: &Input<'_>, filter: bool) -> Result<Vec<(String, Option<String>)>, CwError> {
    let items = input.struct_list("Dimensions")?.unwrap_or_default();
    let max = if filter { 10 } else { 30 };
    if items.len() > max {
        return Err(CwError::invalid_value(format!(
            "The collection {} must not have more than {max} members.",
            input.name("Dimensions")
        )));
    }
    let mut out: Vec<(String, Option<String>)> = Vec::with_capacity(items.len());
    for item in &items {
        let name = item.required_str("Name")?;
        check_len(item, "Name", name, 255)?;
        let value = if filter { item.str("Value")? } else { Some(item.required_str("Value")?) };
        if let Some(v) = value {
            check_len(item, "Value", v, 1024)?;
        }
        if out.iter().any(|(n, _)| n == name) {
            return Err(CwError::invalid_value(format!(
                "The dimension name {name} is specified more than once in {}.",
                input.name("Dimensions")
            )));
        }
        out.push((name.to_owned(), value.map(str::to_owned)));
    }
    Ok(out)
}

/// `Namespace`, `MetricName` and `Dimensions` of a metric.
fn metric_ref(input: &Input<'_>, required: bool) -> Result<MetricRef, CwError> {
    let get = |member: &str, max: usize| -> Result<String, CwError> {
        let value = if required { Some(input.required_str(member)?) } else { input.str(member)? };
        let value = value.unwrap_or_default();
        if required || !value.is_empty() {
            check_len(input, member, value, max)?;
        }
        Ok(value.to_owned())
    };
    let namespace = get("Namespace", 255)?;
    if namespace.starts_with(':') {
        return Err(CwError::invalid_value(format!(
            "The parameter {} must not start with ':'.",
            input.name("Namespace")
        )));
    }
    let metric_name = get("MetricName", 255)?;
    let dimensions = dimensions(input, false)?.into_iter().map(|(n, v)| (n, v.unwrap_or_default())).collect();
    Ok(MetricRef { namespace, metric_name, dimensions })
}

/// A `Period` member: present, positive.
fn period(input: &Input<'_>) -> Result<u64, CwError> {
    let p = input.int("Period")?.ok_or_else(|| CwError::missing(&input.name("Period")))?;
    u64::try_from(p).ok().filter(|p| *p >= 1).ok_or_else(|| {
        CwError::invalid_value(format!("The parameter {} must be greater than 0.", input.name("Period")))
    })
}

/// An optional `Unit`, checked against the model's units.
fn unit<'a>(input: &Input<'a>) -> Result<Option<&'a str>, CwError> {
    input.enum_str("Unit", UNITS)
}

/// `StartTime` and `EndTime`, as whole Unix seconds (rounded down).
fn time_range(input: &Input<'_>) -> Result<(u64, u64), CwError> {
    let start = input.required_timestamp("StartTime")?;
    let end = input.required_timestamp("EndTime")?;
    Ok((whole_seconds(start), whole_seconds(end)))
}

/// The checks [`metric_statistics`] makes, for requests that do not reach
/// it (other metrics) and for `GetMetricData`'s larger `limit`: a period of
/// whole minutes, a non-empty range, at most `limit` periods.
pub(crate) fn check_range(start: u64, end: u64, period: u64, limit: u64) -> Result<u64, UsageError> {
    if period < MINUTE || !period.is_multiple_of(MINUTE) {
        return Err(UsageError::InvalidPeriod(period));
    }
    if start >= end {
        return Err(UsageError::InvalidTimeRange { start, end });
    }
    let aligned = start - start % MINUTE;
    let requested = (end - aligned).div_ceil(period);
    if requested > limit {
        return Err(UsageError::TooManyDatapoints { requested });
    }
    Ok(requested)
}

/// [`metric_statistics`] over a range of up to [`MAX_METRIC_DATA_POINTS`]
/// periods, read [`MAX_DATAPOINTS`] periods at a time on the same grid
/// (periods start at `start` rounded down to the minute).
pub(crate) async fn statistics_over(
    store: &dyn Store,
    instance: &InstanceId,
    metric: Metric,
    start: u64,
    end: u64,
    period: u64,
) -> Result<Vec<Datapoint>, UsageError> {
    check_range(start, end, period, MAX_METRIC_DATA_POINTS)?;
    let mut chunk_start = start - start % MINUTE;
    let span = period * MAX_DATAPOINTS;
    let mut out = Vec::new();
    while chunk_start < end {
        let chunk_end = end.min(chunk_start + span);
        out.extend(metric_statistics(store, instance, metric, chunk_start, chunk_end, period).await?);
        chunk_start = chunk_end;
    }
    Ok(out)
}

/// The datapoints of `metric` (empty for metrics this endpoint does not
/// have, or another `unit`), after the range checks with `limit`.
async fn datapoints(
    store: &dyn Store,
    metric: &MetricRef,
    unit: Option<&str>,
    (start, end): (u64, u64),
    period: u64,
    limit: u64,
) -> Result<Vec<Datapoint>, CwError> {
    check_range(start, end, period, limit)?;
    if unit.is_some_and(|u| u != UNIT) {
        return Ok(Vec::new());
    }
    match metric.resolve() {
        Some((m, id)) => Ok(statistics_over(store, &id, m, start, end, period).await?),
        None => Ok(Vec::new()),
    }
}

/// `GetMetricStatistics`.
pub async fn get_metric_statistics(ops: &Ops, input: &Input<'_>) -> Result<Out, CwError> {
    let metric = metric_ref(input, true)?;
    let range = time_range(input)?;
    let period = period(input)?;
    let names = input.str_list("Statistics")?;
    let extended = input.str_list("ExtendedStatistics")?;
    let statistics = match (names, extended) {
        (Some(s), None) if !s.is_empty() => s,
        (Some(s), Some(e)) if !s.is_empty() && !e.is_empty() => {
            return Err(CwError::invalid_combination(
                "Must specify either Statistics or ExtendedStatistics, but not both.",
            ));
        }
        (_, Some(e)) if !e.is_empty() => {
            return Err(CwError::invalid_value(
                "ExtendedStatistics (percentiles) are not supported by this endpoint; use Statistics.",
            ));
        }
        _ => {
            return Err(CwError::invalid_combination(
                "Must specify either Statistics or ExtendedStatistics, but not both.",
            ));
        }
    };
    if statistics.len() > STATISTICS.len() {
        return Err(CwError::invalid_value(format!(
            "The collection {} must not have more than {} members.",
            input.name("Statistics"),
            STATISTICS.len()
        )));
    }
    let mut wanted = Vec::with_capacity(statistics.len());
    for (i, s) in statistics.iter().enumerate() {
        let stat = s
            .parse::<Statistic>()
            .map_err(|_| CwError::not_in_set(&format!("Statistics.member.{}", i + 1), STATISTICS))?;
        if !wanted.contains(&stat) {
            wanted.push(stat);
        }
    }
    let unit = unit(input)?;
    let points = datapoints(ops.store(), &metric, unit, range, period, MAX_DATAPOINTS).await?;
    // Members in the model's order, whatever order they were asked in.
    let order =
        [Statistic::SampleCount, Statistic::Average, Statistic::Sum, Statistic::Minimum, Statistic::Maximum];
    let datapoints = points
        .iter()
        .map(|p| {
            let mut members = vec![("Timestamp", Out::Time(p.timestamp))];
            for stat in order.iter().filter(|s| wanted.contains(s)) {
                members.push((stat.as_str(), Out::Double(p.value(*stat))));
            }
            members.push(("Unit", Out::Str(UNIT.to_owned())));
            Out::structure(members)
        })
        .collect();
    Ok(Out::structure(vec![("Label", Out::Str(metric.metric_name)), ("Datapoints", Out::List(datapoints))]))
}

/// One validated `MetricDataQuery`.
struct Query {
    id: String,
    label: Option<String>,
    metric: MetricRef,
    period: u64,
    stat: Statistic,
    unit: Option<String>,
    return_data: bool,
}

fn valid_id(id: &str) -> bool {
    let mut chars = id.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && id.len() <= 255
}

fn metric_data_query(q: &Input<'_>) -> Result<Query, CwError> {
    let id = q.required_str("Id")?;
    if !valid_id(id) {
        return Err(CwError::invalid_value(format!(
            "The value {} for parameter {} is not valid: it must start with a lower-case letter and contain only letters, digits and underscores.",
            id.chars().take(64).collect::<String>(),
            q.name("Id")
        )));
    }
    let stat = q.structure("MetricStat")?;
    let expression = q.str("Expression")?;
    let stat = match (stat, expression) {
        (Some(s), None) => s,
        (None, Some(_)) => {
            return Err(CwError::invalid_value(format!(
                "{}: metric math expressions are not supported by this endpoint; use MetricStat.",
                q.name("Expression")
            )));
        }
        _ => {
            return Err(CwError::invalid_combination(format!(
                "Exactly one of {} and {} must be specified.",
                q.name("MetricStat"),
                q.name("Expression")
            )));
        }
    };
    q.int("Period")?;
    q.str("AccountId")?;
    let metric = stat.structure("Metric")?.ok_or_else(|| CwError::missing(&stat.name("Metric")))?;
    let metric = metric_ref(&metric, true)?;
    let period = period(&stat)?;
    let stat_name = stat.required_str("Stat")?;
    let statistic = stat_name.parse::<Statistic>().map_err(|_| {
        CwError::invalid_value(format!(
            "The value {} for parameter {} is not supported; use one of {}.",
            stat_name.chars().take(64).collect::<String>(),
            stat.name("Stat"),
            STATISTICS.join(", ")
        ))
    })?;
    let unit = unit(&stat)?.map(str::to_owned);
    Ok(Query {
        id: id.to_owned(),
        label: q.str("Label")?.map(str::to_owned),
        metric,
        period,
        stat: statistic,
        unit,
        return_data: q.bool("ReturnData")?.unwrap_or(true),
    })
}

/// `NextToken` of `GetMetricData` and `ListMetrics`: the number of items
/// already returned.
fn decode_token(token: Option<&str>) -> Result<usize, CwError> {
    let Some(token) = token.filter(|t| !t.is_empty()) else {
        return Ok(0);
    };
    let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| CwError::invalid_next_token())?;
    let text = String::from_utf8(bytes).map_err(|_| CwError::invalid_next_token())?;
    text.strip_prefix("offset:")
        .and_then(|n| n.parse::<usize>().ok())
        .filter(|n| *n > 0)
        .ok_or_else(CwError::invalid_next_token)
}

fn encode_token(offset: usize) -> String {
    URL_SAFE_NO_PAD.encode(format!("offset:{offset}"))
}

/// `GetMetricData`: one result per query with `ReturnData` (default true),
/// datapoints newest first unless `ScanBy` is `TimestampAscending`, paged
/// by `MaxDatapoints` over all results in query order.
pub async fn get_metric_data(ops: &Ops, input: &Input<'_>) -> Result<Out, CwError> {
    let queries =
        input.struct_list("MetricDataQueries")?.ok_or_else(|| CwError::missing("MetricDataQueries"))?;
    if queries.is_empty() || queries.len() > MAX_QUERIES {
        return Err(CwError::invalid_value(format!(
            "The collection MetricDataQueries must have between 1 and {MAX_QUERIES} members."
        )));
    }
    let queries = queries.iter().map(metric_data_query).collect::<Result<Vec<_>, _>>()?;
    for (i, q) in queries.iter().enumerate() {
        if queries[..i].iter().any(|other| other.id == q.id) {
            return Err(CwError::invalid_value(format!(
                "The values for parameter Id in MetricDataQueries are not unique: {}.",
                q.id
            )));
        }
    }
    let range = time_range(input)?;
    let ascending = input.enum_str("ScanBy", &["TimestampDescending", "TimestampAscending"])?
        == Some("TimestampAscending");
    let max = match input.int("MaxDatapoints")? {
        None => MAX_METRIC_DATA_POINTS,
        Some(n) => {
            u64::try_from(n).ok().filter(|n| (1..=MAX_METRIC_DATA_POINTS).contains(n)).ok_or_else(|| {
                CwError::invalid_value(format!(
                    "The parameter MaxDatapoints must be between 1 and {MAX_METRIC_DATA_POINTS}."
                ))
            })?
        }
    };
    let max = usize::try_from(max).unwrap_or(usize::MAX);
    let offset = decode_token(input.str("NextToken")?)?;
    if let Some(options) = input.structure("LabelOptions")? {
        options.str("Timezone")?;
    }
    // Validate every query's range before reading anything.
    for q in &queries {
        check_range(range.0, range.1, q.period, MAX_METRIC_DATA_POINTS)?;
    }
    let mut series = Vec::new();
    for q in queries.iter().filter(|q| q.return_data) {
        let mut points: Vec<(u64, f64)> =
            datapoints(ops.store(), &q.metric, q.unit.as_deref(), range, q.period, MAX_METRIC_DATA_POINTS)
                .await?
                .iter()
                .map(|p| (p.timestamp, p.value(q.stat)))
                .collect();
        if !ascending {
            points.reverse();
        }
        series.push((q, points));
    }
    let total: usize = series.iter().map(|(_, p)| p.len()).sum();
    if offset > total {
        return Err(CwError::invalid_next_token());
    }
    let page_end = offset.saturating_add(max).min(total);
    let mut seen = 0usize;
    let mut results = Vec::with_capacity(series.len());
    for (q, points) in &series {
        let (first, last) = (seen, seen + points.len());
        seen = last;
        let from = offset.clamp(first, last) - first;
        let to = page_end.clamp(first, last) - first;
        let page = &points[from..to];
        // More of this query's points lie beyond this page.
        let status = if last > page_end.max(first) { "PartialData" } else { "Complete" };
        results.push(Out::structure(vec![
            ("Id", Out::Str(q.id.clone())),
            ("Label", Out::Str(q.label.clone().unwrap_or_else(|| q.metric.metric_name.clone()))),
            ("Timestamps", Out::List(page.iter().map(|(t, _)| Out::Time(*t)).collect())),
            ("Values", Out::List(page.iter().map(|(_, v)| Out::Double(*v)).collect())),
            ("StatusCode", Out::Str(status.to_owned())),
        ]));
    }
    let next = (page_end < total).then(|| Out::Str(encode_token(page_end)));
    Ok(Out::Struct(vec![
        ("MetricDataResults", Some(Out::List(results))),
        ("NextToken", next),
        ("Messages", Some(Out::List(Vec::new()))),
    ]))
}

/// `ListMetrics`: both usage metrics of every instance that is not
/// terminated, filtered by `Namespace`, `MetricName` and `Dimensions`
/// (`Name` with an optional `Value`), [`LIST_PAGE_SIZE`] per page.
/// `RecentlyActive` is accepted; every listed metric counts as active.
pub async fn list_metrics(ops: &Ops, input: &Input<'_>) -> Result<Out, CwError> {
    let filter = metric_ref_filter(input)?;
    input.enum_str("RecentlyActive", &["PT3H"])?;
    input.bool("IncludeLinkedAccounts")?;
    input.str("OwningAccount")?;
    let offset = decode_token(input.str("NextToken")?)?;
    let mut ids: Vec<InstanceId> = ops
        .list()
        .await?
        .into_iter()
        .filter(|v| v.record.state != InstanceState::Terminated)
        .map(|v| v.record.instance_id)
        .collect();
    ids.sort();
    let mut all = Vec::new();
    for id in &ids {
        for metric in Metric::ALL {
            if filter.matches(metric, id) {
                all.push((metric, id));
            }
        }
    }
    if offset > all.len() {
        return Err(CwError::invalid_next_token());
    }
    let end = (offset + LIST_PAGE_SIZE).min(all.len());
    let metrics = all[offset..end]
        .iter()
        .map(|(metric, id)| {
            Out::structure(vec![
                ("Namespace", Out::Str(NAMESPACE.to_owned())),
                ("MetricName", Out::Str(metric.as_str().to_owned())),
                (
                    "Dimensions",
                    Out::List(vec![Out::structure(vec![
                        ("Name", Out::Str(DIMENSION.to_owned())),
                        ("Value", Out::Str(id.as_str().to_owned())),
                    ])]),
                ),
            ])
        })
        .collect();
    let next = (end < all.len()).then(|| Out::Str(encode_token(end)));
    Ok(Out::Struct(vec![("Metrics", Some(Out::List(metrics))), ("NextToken", next)]))
}

/// The filter of `ListMetrics`.
struct ListFilter {
    namespace: Option<String>,
    metric_name: Option<String>,
    dimensions: Vec<(String, Option<String>)>,
}

impl ListFilter {
    fn matches(&self, metric: Metric, id: &InstanceId) -> bool {
        self.namespace.as_deref().is_none_or(|n| n == NAMESPACE)
            && self.metric_name.as_deref().is_none_or(|n| n == metric.as_str())
            && self
                .dimensions
                .iter()
                .all(|(name, value)| name == DIMENSION && value.as_deref().is_none_or(|v| v == id.as_str()))
    }
}

fn metric_ref_filter(input: &Input<'_>) -> Result<ListFilter, CwError> {
    let opt = |member: &str| -> Result<Option<String>, CwError> {
        match input.str(member)? {
            None => Ok(None),
            Some(v) => {
                check_len(input, member, v, 255)?;
                Ok(Some(v.to_owned()))
            }
        }
    };
    Ok(ListFilter {
        namespace: opt("Namespace")?,
        metric_name: opt("MetricName")?,
        dimensions: dimensions(input, true)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metric(ns: &str, name: &str, dims: &[(&str, &str)]) -> MetricRef {
        MetricRef {
            namespace: ns.into(),
            metric_name: name.into(),
            dimensions: dims.iter().map(|(n, v)| ((*n).to_owned(), (*v).to_owned())).collect(),
        }
    }

    #[test]
    fn only_the_usage_metrics_with_one_instance_dimension_resolve() {
        let id = "i-0123456789abcdef0";
        assert!(metric("AWS/EC2", "MetadataNoToken", &[("InstanceId", id)]).resolve().is_some());
        assert!(metric("AWS/EC2", "MetadataNoTokenRejected", &[("InstanceId", id)]).resolve().is_some());
        assert!(metric("AWS/EC2", "CPUUtilization", &[("InstanceId", id)]).resolve().is_none());
        assert!(metric("AWS/Lambda", "MetadataNoToken", &[("InstanceId", id)]).resolve().is_none());
        assert!(metric("AWS/EC2", "MetadataNoToken", &[]).resolve().is_none());
        assert!(metric("AWS/EC2", "MetadataNoToken", &[("InstanceId", id), ("X", "y")]).resolve().is_none());
        assert!(metric("AWS/EC2", "MetadataNoToken", &[("InstanceId", "web-1")]).resolve().is_none());
    }

    #[test]
    fn ranges_are_checked_like_the_usage_crate() {
        assert!(matches!(check_range(0, 60, 30, 1440), Err(UsageError::InvalidPeriod(30))));
        assert!(matches!(check_range(0, 60, 90, 1440), Err(UsageError::InvalidPeriod(90))));
        assert!(matches!(check_range(60, 60, 60, 1440), Err(UsageError::InvalidTimeRange { .. })));
        assert_eq!(check_range(0, 86_400, 60, 1440).unwrap(), 1440);
        assert!(matches!(
            check_range(0, 86_401, 60, 1440),
            Err(UsageError::TooManyDatapoints { requested: 1441 })
        ));
        // Start rounds down to the minute.
        assert_eq!(check_range(59, 120, 60, 1440).unwrap(), 2);
    }

    #[test]
    fn tokens_round_trip_and_reject_garbage() {
        assert_eq!(decode_token(Some(&encode_token(7))).unwrap(), 7);
        assert_eq!(decode_token(None).unwrap(), 0);
        assert_eq!(decode_token(Some("!!")).unwrap_err().code, "InvalidNextToken");
        assert_eq!(
            decode_token(Some(&URL_SAFE_NO_PAD.encode("offset:0"))).unwrap_err().code,
            "InvalidNextToken"
        );
    }

    #[test]
    fn ids_start_lower_case() {
        assert!(valid_id("m1"));
        assert!(valid_id("no_token"));
        assert!(!valid_id("M1"));
        assert!(!valid_id("1m"));
        assert!(!valid_id("m-1"));
        assert!(!valid_id(""));
    }
}
