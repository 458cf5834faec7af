"""MetadataNoToken through the AWS metric APIs (docs/protocol/metrics-api.md), end to
end with the real tools against a real `imdsd serve --demo`:

* CloudWatch GetMetricStatistics / GetMetricData / ListMetrics with the AWS
  CLI v1 (JSON 1.0 protocol), Debian's AWS CLI v2 (query protocol) and boto3
  — with botocore's JSON, and, forced, its RPC v2 CBOR and query protocols;
* Lightsail GetInstanceMetricData for an instance made with
  `aws lightsail create-instances`, called as that instance from its
  private address;
* the control-plane metrics on the admin endpoint.

The module's imdsd sees an exact number of token-less (IMDSv1) requests per
instance, plus IMDSv2 requests that must not count; the usage recorder
flushes to the store every 10 s, so readers poll until the count shows up,
then every client must read exactly that number.
"""

from __future__ import annotations

import datetime
import itertools
import json

import botocore.exceptions
import pytest

import awsctl
from conftest import ConnectionClosed, start_imdsd
from demo import INSTANCE_ID

CONFIG = """
[control]
subnet = "127.0.0.0/24"
"""
# Token-less requests the demo instance makes, and token-bearing ones.
DEMO_V1 = 7
DEMO_V2 = 4
# The same for each Lightsail instance.
LS_V1 = 5
LS_V2 = 3
# Usage is flushed every 10 s; allow a few flushes.
FLUSH_TIMEOUT_S = 45.0
CREATE = ["--availability-zone", "us-east-1a", "--blueprint-id", "amazon_linux_2023",
          "--bundle-id", "nano_3_0"]
_NAMES = itertools.count(1)
PROTOCOLS = ["json", "smithy-rpc-v2-cbor", "query"]


@pytest.fixture(scope="module")
def imdsd():
    with start_imdsd(CONFIG) as server:
        yield server


def window() -> tuple[datetime.datetime, datetime.datetime]:
    """From 10 minutes ago to 5 minutes ahead: every request of this module."""
    now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    return now - datetime.timedelta(minutes=10), now + datetime.timedelta(minutes=5)


def iso(t: datetime.datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def cloudwatch_client(imdsd, protocol: str = "json", monkeypatch=None):
    """boto3's CloudWatch client; with `protocol` other than json, botocore
    is made to pick that protocol of the model (as later versions may)."""
    if protocol != "json":
        import botocore.model

        assert monkeypatch is not None
        monkeypatch.setattr(botocore.model, "PRIORITY_ORDERED_SUPPORTED_PROTOCOLS", (protocol,))
    client = awsctl.boto3_client(imdsd, "cloudwatch")
    assert client.meta.service_model.resolved_protocol == protocol
    return client


def demo_sum(cloudwatch, metric: str = "MetadataNoToken") -> float:
    start, end = window()
    answer = cloudwatch.get_metric_statistics(
        Namespace="AWS/EC2", MetricName=metric,
        Dimensions=[{"Name": "InstanceId", "Value": INSTANCE_ID}],
        StartTime=start, EndTime=end, Period=60, Statistics=["Sum"])
    return sum(p["Sum"] for p in answer["Datapoints"])


@pytest.fixture(scope="module")
def demo_usage(imdsd):
    """Exactly DEMO_V1 token-less requests of the demo instance (127.0.0.1),
    after DEMO_V2 IMDSv2 ones, flushed: waits until CloudWatch shows them."""
    for _ in range(DEMO_V2):
        token = imdsd.token()
        assert imdsd.get("latest/meta-data/instance-id", token).status == 200
    for _ in range(DEMO_V1):
        resp = imdsd.get("latest/meta-data/instance-id")
        assert (resp.status, resp.text) == (200, INSTANCE_ID)
    cloudwatch = awsctl.boto3_client(imdsd, "cloudwatch")
    total = awsctl.wait_until(lambda: demo_sum(cloudwatch) >= DEMO_V1,
                              f"MetadataNoToken of {INSTANCE_ID} reaches {DEMO_V1}", FLUSH_TIMEOUT_S,
                              interval=0.5)
    assert demo_sum(cloudwatch) == DEMO_V1, total
    return DEMO_V1


def stats_args(*extra: str) -> list[str]:
    start, end = window()
    return ["cloudwatch", "get-metric-statistics", "--namespace", "AWS/EC2",
            "--metric-name", "MetadataNoToken",
            "--dimensions", f"Name=InstanceId,Value={INSTANCE_ID}",
            "--start-time", iso(start), "--end-time", iso(end), *extra]


def test_get_metric_statistics_counts_exactly_the_v1_requests(cli, demo_usage):
    answer = cli.ok(*stats_args("--statistics", "Sum", "SampleCount", "Maximum", "--period", "60"))
    assert answer["Label"] == "MetadataNoToken", answer
    points = answer["Datapoints"]
    assert points, answer
    assert sum(p["Sum"] for p in points) == demo_usage, answer
    for p in points:
        assert set(p) == {"Timestamp", "Sum", "SampleCount", "Maximum", "Unit"}, p
        assert p["Unit"] == "Count"
        assert p["SampleCount"] >= 1 and p["Maximum"] <= p["Sum"], p
    # One period over the whole window: one datapoint with the total.
    answer = cli.ok(*stats_args("--statistics", "Sum", "--period", "900"))
    assert [p["Sum"] for p in answer["Datapoints"]] == [demo_usage], answer


def test_other_metrics_and_instances_read_empty(cli, demo_usage):
    start, end = window()
    answer = cli.ok("cloudwatch", "get-metric-statistics", "--namespace", "AWS/EC2",
                    "--metric-name", "MetadataNoTokenRejected",
                    "--dimensions", f"Name=InstanceId,Value={INSTANCE_ID}",
                    "--start-time", iso(start), "--end-time", iso(end),
                    "--statistics", "Sum", "--period", "60")
    assert sum(p["Sum"] for p in answer["Datapoints"]) == 0, answer
    answer = cli.ok("cloudwatch", "get-metric-statistics", "--namespace", "AWS/EC2",
                    "--metric-name", "CPUUtilization",
                    "--dimensions", f"Name=InstanceId,Value={INSTANCE_ID}",
                    "--start-time", iso(start), "--end-time", iso(end),
                    "--statistics", "Average", "--period", "60")
    assert answer == {"Label": "CPUUtilization", "Datapoints": []}


def test_get_metric_data_counts_exactly_the_v1_requests(cli, demo_usage):
    start, end = window()
    queries = [{
        "Id": "notoken",
        "MetricStat": {
            "Metric": {"Namespace": "AWS/EC2", "MetricName": "MetadataNoToken",
                       "Dimensions": [{"Name": "InstanceId", "Value": INSTANCE_ID}]},
            "Period": 60, "Stat": "Sum"},
    }]
    answer = cli.ok("cloudwatch", "get-metric-data", "--metric-data-queries", json.dumps(queries),
                    "--start-time", iso(start), "--end-time", iso(end))
    [result] = answer["MetricDataResults"]
    assert (result["Id"], result["Label"], result["StatusCode"]) == \
        ("notoken", "MetadataNoToken", "Complete"), answer
    assert sum(result["Values"]) == demo_usage, answer
    assert len(result["Timestamps"]) == len(result["Values"]) > 0, answer


def test_list_metrics_names_the_demo_instance(cli):
    answer = cli.ok("cloudwatch", "list-metrics", "--namespace", "AWS/EC2",
                    "--metric-name", "MetadataNoToken")
    assert {"Namespace": "AWS/EC2", "MetricName": "MetadataNoToken",
            "Dimensions": [{"Name": "InstanceId", "Value": INSTANCE_ID}]} in answer["Metrics"], answer


def test_errors_carry_the_model_codes(cli):
    cli.fails(*stats_args("--statistics", "Sum", "--period", "90"), code="InvalidParameterValue")
    cli.fails(*stats_args("--period", "60"), code="InvalidParameterCombination")
    start = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=3)
    message = cli.fails("cloudwatch", "get-metric-statistics", "--namespace", "AWS/EC2",
                        "--metric-name", "MetadataNoToken", "--statistics", "Sum", "--period", "60",
                        "--start-time", iso(start), "--end-time", iso(start + datetime.timedelta(days=2)),
                        code="InvalidParameterCombination")
    assert "exceeds the limit of 1,440" in message, message


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_boto3_in_every_protocol(imdsd, demo_usage, protocol, monkeypatch):
    cloudwatch = cloudwatch_client(imdsd, protocol, monkeypatch)
    assert demo_sum(cloudwatch) == demo_usage
    start, end = window()
    answer = cloudwatch.get_metric_data(
        MetricDataQueries=[{"Id": "m", "MetricStat": {
            "Metric": {"Namespace": "AWS/EC2", "MetricName": "MetadataNoToken",
                       "Dimensions": [{"Name": "InstanceId", "Value": INSTANCE_ID}]},
            "Period": 300, "Stat": "SampleCount"}, "ReturnData": True}],
        StartTime=start, EndTime=end, ScanBy="TimestampAscending")
    values = answer["MetricDataResults"][0]["Values"]
    timestamps = answer["MetricDataResults"][0]["Timestamps"]
    assert values and all(v >= 1 for v in values), answer
    assert timestamps == sorted(timestamps) and all(t.tzinfo for t in timestamps), answer
    content_type = answer["ResponseMetadata"]["HTTPHeaders"]["content-type"]
    assert content_type == {"json": "application/x-amz-json-1.0", "smithy-rpc-v2-cbor": "application/cbor",
                            "query": "text/xml"}[protocol]
    metrics = cloudwatch.list_metrics(Dimensions=[{"Name": "InstanceId", "Value": INSTANCE_ID}])["Metrics"]
    assert sorted(m["MetricName"] for m in metrics) == ["MetadataNoToken", "MetadataNoTokenRejected"]
    with pytest.raises(botocore.exceptions.ClientError) as e:
        cloudwatch.get_metric_statistics(Namespace="AWS/EC2", MetricName="MetadataNoToken",
                                         StartTime=start, EndTime=end, Period=61, Statistics=["Sum"])
    code, message, status = awsctl.client_error(e)
    assert (code, status) == ("InvalidParameterValue", 400), (code, message)
    assert message == "The parameter Period must be a multiple of 60 and at least 60 (got 61).", message
    # Modeled errors map to the model's exception classes in every protocol.
    with pytest.raises(cloudwatch.exceptions.InvalidParameterCombinationException):
        cloudwatch.get_metric_statistics(Namespace="AWS/EC2", MetricName="MetadataNoToken",
                                         StartTime=start, EndTime=end, Period=60)


@pytest.fixture
def ls_instance(cli, imdsd):
    """A Lightsail instance made with `aws lightsail create-instances`, that
    has made exactly LS_V1 token-less requests (and LS_V2 IMDSv2 ones) from
    its private address."""
    name = f"metrics-{cli.version}-{next(_NAMES)}"
    cli.ok("lightsail", "create-instances", "--instance-names", name, *CREATE)
    address = cli.ok("lightsail", "get-instance", "--instance-name", name)["instance"]["privateIpAddress"]
    guest = awsctl.Guest(imdsd, address)

    def v2_served():
        # Waiting with IMDSv2 only: a token-less probe would be counted.
        try:
            return guest.put_token().status == 200
        except ConnectionClosed:
            return False

    awsctl.wait_until(v2_served, f"the data plane serves {address}")
    for _ in range(LS_V2):
        assert guest.v2_get("latest/meta-data/local-ipv4").status == 200
    for _ in range(LS_V1):
        resp = guest.get("latest/meta-data/local-ipv4")
        assert (resp.status, resp.text) == (200, address)
    guest.name = name
    return guest


def test_lightsail_get_instance_metric_data_counts_exactly(cli, imdsd, ls_instance):
    lightsail = awsctl.boto3_client(imdsd, "lightsail")
    start, end = window()

    def total():
        answer = lightsail.get_instance_metric_data(
            instanceName=ls_instance.name, metricName="MetadataNoToken", period=60,
            startTime=start, endTime=end, unit="Count", statistics=["Sum"])
        return sum(p["sum"] for p in answer["metricData"])

    awsctl.wait_until(lambda: total() >= LS_V1, f"MetadataNoToken of {ls_instance.name} reaches {LS_V1}",
                      FLUSH_TIMEOUT_S, interval=0.5)
    answer = cli.ok("lightsail", "get-instance-metric-data", "--instance-name", ls_instance.name,
                    "--metric-name", "MetadataNoToken", "--period", "60",
                    "--start-time", iso(start), "--end-time", iso(end), "--unit", "Count",
                    "--statistics", "Sum", "SampleCount", "Maximum")
    assert answer["metricName"] == "MetadataNoToken", answer
    points = answer["metricData"]
    assert sum(p["sum"] for p in points) == LS_V1, answer
    for p in points:
        assert set(p) == {"sum", "sampleCount", "maximum", "timestamp", "unit"}, p
        assert p["unit"] == "Count"
    # CloudWatch reads the same count for the instance behind the name.
    instance_id = ls_instance_id(cli, ls_instance.name)
    cloudwatch = awsctl.boto3_client(imdsd, "cloudwatch")
    answer = cloudwatch.get_metric_statistics(
        Namespace="AWS/EC2", MetricName="MetadataNoToken",
        Dimensions=[{"Name": "InstanceId", "Value": instance_id}],
        StartTime=start, EndTime=end, Period=900, Statistics=["Sum"])
    assert [p["Sum"] for p in answer["Datapoints"]] == [LS_V1], answer

    cli.fails("lightsail", "get-instance-metric-data", "--instance-name", "no-such-instance",
              "--metric-name", "MetadataNoToken", "--period", "60",
              "--start-time", iso(start), "--end-time", iso(end), "--unit", "Count",
              "--statistics", "Sum", code="NotFoundException")
    cli.fails("lightsail", "get-instance-metric-data", "--instance-name", ls_instance.name,
              "--metric-name", "MetadataNoToken", "--period", "90",
              "--start-time", iso(start), "--end-time", iso(end), "--unit", "Count",
              "--statistics", "Sum", code="InvalidInputException")


def ls_instance_id(cli, name: str) -> str:
    """The EC2 instance id behind a Lightsail name (DescribeInstances by the
    private address)."""
    inst = cli.ok("lightsail", "get-instance", "--instance-name", name)["instance"]
    address = inst["privateIpAddress"]
    reservations = cli.ok("ec2", "describe-instances", "--filters",
                          f"Name=private-ip-address,Values={address}")["Reservations"]
    [instance] = [i for r in reservations for i in r["Instances"] if i["State"]["Name"] != "terminated"]
    return instance["InstanceId"]


def test_control_plane_metrics_count_calls(imdsd):
    def series(api: str, action: str, code: str) -> str:
        return f'imds_control_calls_total{{api="{api}",action="{action}",code="{code}"}}'

    ok = series("cloudwatch", "GetMetricStatistics", "none")
    bad = series("cloudwatch", "GetMetricStatistics", "InvalidParameterValue")
    ls = series("lightsail", "GetInstanceMetricData", "NotFoundException")
    ec2 = series("ec2", "DescribeRegions", "none")
    latency = 'imds_control_request_duration_seconds_count{api="cloudwatch",action="GetMetricStatistics"}'
    before = imdsd.metrics()

    cloudwatch = awsctl.boto3_client(imdsd, "cloudwatch")
    demo_sum(cloudwatch)
    demo_sum(cloudwatch)
    start, end = window()
    with pytest.raises(botocore.exceptions.ClientError):
        cloudwatch.get_metric_statistics(Namespace="AWS/EC2", MetricName="MetadataNoToken",
                                         StartTime=start, EndTime=end, Period=30, Statistics=["Sum"])
    with pytest.raises(botocore.exceptions.ClientError):
        awsctl.boto3_client(imdsd, "lightsail").get_instance_metric_data(
            instanceName="no-such-instance", metricName="MetadataNoToken", period=60,
            startTime=start, endTime=end, unit="Count", statistics=["Sum"])
    awsctl.boto3_client(imdsd, "ec2").describe_regions()

    after = imdsd.metrics()
    delta = {s: after.get(s, 0.0) - before.get(s, 0.0) for s in (ok, bad, ls, ec2, latency)}
    assert delta == {ok: 2, bad: 1, ls: 1, ec2: 1, latency: 3}, delta
    # Only closed label sets: every action label is an implemented action or "unknown".
    actions = {line.split('action="')[1].split('"')[0] for line in after if line.startswith("imds_control_calls_total")}
    assert actions <= {"GetMetricStatistics", "GetMetricData", "ListMetrics", "GetInstanceMetricData",
                       "CreateInstances", "GetInstance", "GetInstances", "DescribeRegions",
                       "DescribeInstances", "unknown"}, actions
