"""CreateTags / DeleteTags / DescribeTags through the AWS CLI v1/v2
(docs/protocol/control-plane.md#tags): with tags in instance metadata enabled the instance
sees its tags change live under tags/instance/, and keys IMDS cannot carry
are refused with the exact message of docs/protocol/categories.md#tags."""

from __future__ import annotations

import pytest

import awsctl
from awsctl import Guest


@pytest.fixture
def guest(imdsd, ec2, addresses):
    """A fresh running instance with tags in metadata enabled and tag Name."""
    address = addresses.next()
    inst = awsctl.launch(ec2, address, TagSpecifications=awsctl.tag_spec({"Name": "tagged"}),
                         MetadataOptions={"InstanceMetadataTags": "enabled"})
    g = Guest(imdsd, address)
    g.instance_id = inst["InstanceId"]
    return g


def tag_keys(guest: Guest) -> list[str] | None:
    resp = guest.get("latest/meta-data/tags/instance")
    assert resp.status == 200, (resp.status, resp.body)
    return sorted(resp.text.split("\n")) if resp.text else []


def described_tags(cli, instance_id: str) -> dict[str, str]:
    answer = cli.ok("ec2", "describe-tags", "--filters", f"Name=resource-id,Values={instance_id}")
    for t in answer["Tags"]:
        assert t["ResourceId"] == instance_id and t["ResourceType"] == "instance", t
    return {t["Key"]: t["Value"] for t in answer["Tags"]}


def test_tags_change_live_in_metadata(cli, guest):
    iid = guest.instance_id
    assert tag_keys(guest) == ["Name"]

    assert cli.run("ec2", "create-tags", "--resources", iid,
                   "--tags", "Key=Team,Value=blue", "Key=Cost,Value=").returncode == 0
    assert described_tags(cli, iid) == {"Name": "tagged", "Team": "blue", "Cost": ""}
    awsctl.wait_until(lambda: tag_keys(guest) == ["Cost", "Name", "Team"], "tags/instance lists Team and Cost")
    assert guest.get("latest/meta-data/tags/instance/Team").text == "blue"
    empty = guest.get("latest/meta-data/tags/instance/Cost")
    assert (empty.status, empty.body) == (200, b"")

    # Overwrite.
    cli.ok("ec2", "create-tags", "--resources", iid, "--tags", "Key=Team,Value=red")
    awsctl.wait_until(lambda: guest.get("latest/meta-data/tags/instance/Team").text == "red",
                      "tags/instance/Team is red")

    # Delete by key; a key with a different value is not deleted.
    cli.ok("ec2", "delete-tags", "--resources", iid, "--tags", "Key=Team", "Key=Name,Value=other")
    assert described_tags(cli, iid) == {"Name": "tagged", "Cost": ""}
    awsctl.wait_until(lambda: tag_keys(guest) == ["Cost", "Name"], "Team is gone from tags/instance")
    assert guest.get("latest/meta-data/tags/instance/Team").status == 404


def test_describe_tags_filters(cli, guest):
    iid = guest.instance_id
    cli.ok("ec2", "create-tags", "--resources", iid, "--tags", f"Key=Owner,Value=owner-{iid}")
    answer = cli.ok("ec2", "describe-tags", "--filters", "Name=key,Values=Owner",
                    f"Name=value,Values=owner-{iid}")
    assert [(t["ResourceId"], t["Key"]) for t in answer["Tags"]] == [(iid, "Owner")]


@pytest.mark.parametrize("key", ["bad key", "team/name", "_index", "..", "."])
def test_invalid_imds_tag_key_is_refused(cli, ec2, guest, key):
    message = cli.fails("ec2", "create-tags", "--resources", guest.instance_id,
                        "--tags", f"Key={key},Value=x", code="InvalidParameterValue")
    assert message == awsctl.imds_tag_key_error(key)
    assert key not in {t["Key"] for t in awsctl.describe_one(ec2, guest.instance_id).get("Tags", [])}


def test_aws_prefix_is_reserved(cli, guest):
    cli.fails("ec2", "create-tags", "--resources", guest.instance_id, "--tags", "Key=aws:team,Value=x",
              code="InvalidParameterValue")


def test_unknown_resources(cli):
    cli.fails("ec2", "create-tags", "--resources", "i-0000000000000000f", "--tags", "Key=a,Value=b",
              code="InvalidInstanceID.NotFound")
    cli.fails("ec2", "create-tags", "--resources", "nonsense", "--tags", "Key=a,Value=b",
              code="InvalidID")


def test_tag_limit(cli, guest):
    tags = [f"Key=k{i},Value=v" for i in range(50)]  # 50 more beside Name
    cli.fails("ec2", "create-tags", "--resources", guest.instance_id, "--tags", *tags,
              code="TagLimitExceeded")
    assert tag_keys(guest) == ["Name"]


def test_delete_tags_without_tags_deletes_every_user_tag(cli, guest):
    iid = guest.instance_id
    cli.ok("ec2", "create-tags", "--resources", iid, "--tags", "Key=Team,Value=blue")
    cli.ok("ec2", "delete-tags", "--resources", iid)
    assert described_tags(cli, iid) == {}
    awsctl.wait_until(lambda: guest.get("latest/meta-data/tags/instance/Name").status == 404,
                      "tags/instance/Name is gone")
