"""DescribeInstances through the AWS CLI v1/v2 and boto3: the demo instance
as `imdsd serve --demo` creates it, filters, and pagination
(docs/protocol/control-plane.md#describe-instances), cross-checked against what the data plane
serves."""

from __future__ import annotations

import pytest

import awsctl
import demo
from awsctl import Guest


def instances_of(answer: dict) -> list[dict]:
    return [i for r in answer["Reservations"] for i in r["Instances"]]


def ids_of(answer: dict) -> list[str]:
    return [i["InstanceId"] for i in instances_of(answer)]


def test_demo_instance_is_described_as_the_data_plane_serves_it(cli, imdsd):
    answer = cli.ok("ec2", "describe-instances")
    by_id = {i["InstanceId"]: i for i in instances_of(answer)}
    assert demo.INSTANCE_ID in by_id, answer
    inst = by_id[demo.INSTANCE_ID]
    assert inst["State"] == {"Code": 16, "Name": "running"}
    assert inst["MetadataOptions"] == {
        "State": "applied",
        "HttpTokens": "optional",
        "HttpPutResponseHopLimit": 1,
        "HttpEndpoint": "enabled",
        "HttpProtocolIpv6": "enabled",
        "InstanceMetadataTags": "enabled",
    }
    assert {t["Key"]: t["Value"] for t in inst["Tags"]} == demo.TAGS
    assert inst["PrivateIpAddress"] == demo.PRIVATE_IPV4
    assert inst["KeyName"] == demo.KEY_NAME
    assert inst["Placement"]["AvailabilityZone"] == demo.AZ
    assert inst["IamInstanceProfile"]["Arn"].endswith(f":instance-profile/{demo.PROFILE}")

    # The same instance, asked from its own address (IMDSv1 is allowed).
    guest = Guest(imdsd, demo.PRIVATE_IPV4)
    served = {
        "instance-id": inst["InstanceId"],
        "local-ipv4": inst["PrivateIpAddress"],
        "ami-id": inst["ImageId"],
        "instance-type": inst["InstanceType"],
        "placement/availability-zone": inst["Placement"]["AvailabilityZone"],
        "local-hostname": inst["PrivateDnsName"],
        "iam/info": None,
    }
    for path, expected in served.items():
        resp = guest.get(f"latest/meta-data/{path}")
        assert resp.status == 200, (path, resp.status, resp.body)
        if expected is not None:
            assert resp.text == expected, path
    assert guest.get("latest/meta-data/iam/info").json()["InstanceProfileArn"] == inst["IamInstanceProfile"]["Arn"]
    assert guest.get("latest/meta-data/tags/instance/Name").text == demo.TAGS["Name"]


def test_describe_by_id(cli):
    answer = cli.ok("ec2", "describe-instances", "--instance-ids", demo.INSTANCE_ID)
    assert ids_of(answer) == [demo.INSTANCE_ID]


def test_unknown_instance_id_is_not_found(cli):
    message = cli.fails("ec2", "describe-instances", "--instance-ids", "i-0000000000000000f",
                        code="InvalidInstanceID.NotFound")
    assert "i-0000000000000000f" in message


def test_malformed_instance_id(cli):
    message = cli.fails("ec2", "describe-instances", "--instance-ids", "i-not-an-id",
                        code="InvalidInstanceID.Malformed")
    assert "i-not-an-id" in message


@pytest.fixture(scope="module")
def filter_fleet(ec2):
    """Three instances tagged Suite=filters: web (required tokens), db
    (optional, then stopped), cache (optional)."""
    made = {}
    for name, tokens in [("web", "required"), ("db", "optional"), ("cache", "optional")]:
        inst = awsctl.launch(ec2, TagSpecifications=awsctl.tag_spec({"Name": name, "Suite": "filters"}),
                             MetadataOptions={"HttpTokens": tokens})
        made[name] = inst["InstanceId"]
    ec2.stop_instances(InstanceIds=[made["db"]])
    awsctl.wait_until(lambda: awsctl.describe_one(ec2, made["db"])["State"]["Name"] == "stopped",
                      "db is stopped")
    return made


def test_filters(cli, filter_fleet):
    suite = "Name=tag:Suite,Values=filters"

    def ids(*filters: str) -> set[str]:
        return set(ids_of(cli.ok("ec2", "describe-instances", "--filters", *filters)))

    f = filter_fleet
    assert ids(suite) == set(f.values())
    assert ids(suite, "Name=instance-state-name,Values=running") == {f["web"], f["cache"]}
    assert ids(suite, "Name=instance-state-name,Values=stopped") == {f["db"]}
    assert ids(suite, "Name=metadata-options.http-tokens,Values=required") == {f["web"]}
    assert ids(suite, "Name=metadata-options.http-tokens,Values=optional") == {f["db"], f["cache"]}
    # Several values of one filter: any; several filters: all.
    assert ids("Name=tag:Name,Values=web,cache") == {f["web"], f["cache"]}
    assert ids("Name=tag:Name,Values=web,cache",
               "Name=metadata-options.http-tokens,Values=optional") == {f["cache"]}
    # The demo instance by its Name tag, and by its IMDS options.
    assert ids("Name=tag:Name,Values=demo-instance") == {demo.INSTANCE_ID}
    assert demo.INSTANCE_ID in ids("Name=instance-state-name,Values=running",
                                   "Name=metadata-options.instance-metadata-tags,Values=enabled")
    assert ids("Name=tag:Name,Values=no-such-name") == set()


def test_filter_on_metadata_options_state(cli, filter_fleet):
    answer = cli.ok("ec2", "describe-instances", "--filters", "Name=tag:Suite,Values=filters",
                    "Name=metadata-options.state,Values=applied")
    assert set(ids_of(answer)) == set(filter_fleet.values())


@pytest.fixture(scope="module")
def paging_fleet(ec2):
    """Seven instances in seven reservations, tagged Suite=paging."""
    return {
        awsctl.launch(ec2, wait=False, TagSpecifications=awsctl.tag_spec({"Suite": "paging"}))["InstanceId"]
        for _ in range(7)
    }


def test_boto3_paginator_pages(ec2, paging_fleet):
    paginator = ec2.get_paginator("describe_instances")
    pages = list(paginator.paginate(Filters=[{"Name": "tag:Suite", "Values": ["paging"]}],
                                    PaginationConfig={"PageSize": 5}))
    per_page = [len(ids_of(p)) for p in pages]
    assert per_page == [5, 2], per_page
    seen = [i for p in pages for i in ids_of(p)]
    assert len(seen) == len(set(seen)) and set(seen) == paging_fleet


def test_boto3_paginator_max_items_and_resume(ec2, paging_fleet):
    paginator = ec2.get_paginator("describe_instances")
    filters = [{"Name": "tag:Suite", "Values": ["paging"]}]
    first = paginator.paginate(Filters=filters,
                               PaginationConfig={"PageSize": 5, "MaxItems": 6}).build_full_result()
    assert len(first["Reservations"]) == 6, first
    assert first.get("NextToken"), "boto3 gives a token to resume after MaxItems"
    rest = paginator.paginate(Filters=filters, PaginationConfig={
        "PageSize": 5, "StartingToken": first["NextToken"]}).build_full_result()
    assert "NextToken" not in rest
    seen = ids_of(first) + ids_of(rest)
    assert len(seen) == 7 and set(seen) == paging_fleet


def test_cli_page_size_and_max_items(cli, paging_fleet):
    filters = ["--filters", "Name=tag:Suite,Values=paging"]
    first = cli.ok("ec2", "describe-instances", *filters, "--page-size", "5", "--max-items", "6")
    assert len(ids_of(first)) == 6, first
    assert first.get("NextToken"), first
    rest = cli.ok("ec2", "describe-instances", *filters, "--page-size", "5",
                  "--starting-token", first["NextToken"])
    assert "NextToken" not in rest
    seen = ids_of(first) + ids_of(rest)
    assert len(seen) == 7 and set(seen) == paging_fleet


def test_max_results_with_instance_ids_is_refused(ec2):
    import botocore.exceptions

    with pytest.raises(botocore.exceptions.ClientError) as e:
        ec2.describe_instances(InstanceIds=[demo.INSTANCE_ID], MaxResults=5)
    code, _, status = awsctl.client_error(e)
    assert (code, status) == ("InvalidParameterCombination", 400)


def test_max_results_below_five_is_refused(ec2):
    import botocore.exceptions

    with pytest.raises(botocore.exceptions.ClientError) as e:
        ec2.describe_instances(MaxResults=4)
    code, _, status = awsctl.client_error(e)
    assert (code, status) == ("InvalidParameterValue", 400)


def test_filter_on_hop_limit(cli, filter_fleet):
    answer = cli.ok("ec2", "describe-instances", "--filters", "Name=tag:Suite,Values=filters",
                    "Name=metadata-options.http-put-response-hop-limit,Values=1")
    assert set(ids_of(answer)) == set(filter_fleet.values())
    answer = cli.ok("ec2", "describe-instances", "--filters", "Name=tag:Suite,Values=filters",
                    "Name=metadata-options.http-put-response-hop-limit,Values=2")
    assert ids_of(answer) == []
