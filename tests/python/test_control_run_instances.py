"""RunInstances (and ImportKeyPair) through the AWS CLI v1/v2 and boto3
(docs/protocol/control-plane.md#run-instances): what the answer says, and that the new instance then
answers the data plane from its own address with its own identity, user
data, tags, key and role credentials."""

from __future__ import annotations

import base64
import gzip

import botocore.exceptions
import pytest

import awsctl
import demo
from awsctl import Guest

IMAGE = "ami-0abcdef1234567890"
USER_DATA = "#!/bin/sh\necho 'héllo from run-instances'\n"


def run(cli, *args: str) -> dict:
    answer = cli.ok("ec2", "run-instances", "--image-id", IMAGE, "--count", "1", *args)
    assert len(answer["Instances"]) == 1, answer
    return answer["Instances"][0]


def test_run_instances_then_the_instance_answers_as_itself(cli, imdsd, ec2, addresses, tmp_path):
    address = addresses.next()
    key_name = f"key-{cli.version}"
    public_key = awsctl.ssh_ed25519_public_key(key_name.encode(), f"{key_name}@test")
    key_file = tmp_path / "key.pub"
    key_file.write_text(public_key + "\n")
    imported = cli.ok("ec2", "import-key-pair", "--key-name", key_name,
                      "--public-key-material", f"fileb://{key_file}")
    assert imported["KeyName"] == key_name and imported.get("KeyFingerprint"), imported

    inst = run(cli, "--private-ip-address", address, "--user-data", USER_DATA,
               "--tag-specifications", awsctl.cli_tag_spec({"Name": f"web-{cli.version}", "Team": "blue"}),
               "--metadata-options", "HttpTokens=required,InstanceMetadataTags=enabled",
               "--iam-instance-profile", "Name=r1", "--key-name", key_name,
               "--instance-type", "t3.small")
    iid = inst["InstanceId"]
    assert inst["State"] == {"Code": 0, "Name": "pending"}
    assert inst["PrivateIpAddress"] == address
    assert inst["ImageId"] == IMAGE and inst["InstanceType"] == "t3.small"
    assert inst["KeyName"] == key_name
    assert inst["IamInstanceProfile"]["Arn"].endswith(":instance-profile/r1"), inst["IamInstanceProfile"]
    assert {t["Key"]: t["Value"] for t in inst["Tags"]} == {"Name": f"web-{cli.version}", "Team": "blue"}
    options = inst["MetadataOptions"]
    assert options["HttpTokens"] == "required" and options["InstanceMetadataTags"] == "enabled"
    assert options["HttpEndpoint"] == "enabled" and options["HttpPutResponseHopLimit"] == 1

    guest = Guest(imdsd, address)
    guest.wait_served()
    described = awsctl.describe_one(ec2, iid)
    assert described["State"]["Name"] == "running"

    # IMDSv2 only.
    assert guest.get("latest/meta-data/instance-id").status == 401
    token = guest.token()

    def get(path: str):
        resp = guest.get(path, token)
        assert resp.status == 200, (path, resp.status, resp.body)
        return resp

    assert get("latest/meta-data/instance-id").text == iid
    assert get("latest/meta-data/local-ipv4").text == address
    assert get("latest/meta-data/ami-id").text == IMAGE
    assert get("latest/meta-data/instance-type").text == "t3.small"
    assert get("latest/user-data").body == USER_DATA.encode("utf-8")
    assert sorted(get("latest/meta-data/tags/instance").text.split("\n")) == ["Name", "Team"]
    assert get("latest/meta-data/tags/instance/Name").text == f"web-{cli.version}"
    assert get("latest/meta-data/public-keys/").text == f"0={key_name}"
    # docs/protocol/categories.md#public-keys: the key, a space and the key-pair name (not the
    # comment).
    key_type, key_body, _comment = public_key.split(" ")
    assert get("latest/meta-data/public-keys/0/openssh-key").text == f"{key_type} {key_body} {key_name}"
    info = get("latest/meta-data/iam/info").json()
    assert info["InstanceProfileArn"] == inst["IamInstanceProfile"]["Arn"]
    assert get("latest/meta-data/iam/security-credentials/").text == "r1"
    creds = get("latest/meta-data/iam/security-credentials/r1").json()
    assert creds["Code"] == "Success" and demo.ACCESS_KEY_RE.match(creds["AccessKeyId"]), creds
    doc = get("latest/dynamic/instance-identity/document").json()
    assert (doc["instanceId"], doc["privateIp"], doc["imageId"]) == (iid, address, IMAGE)

    # A token is bound to the instance that asked for it.
    demo_guest = Guest(imdsd, demo.PRIVATE_IPV4)
    assert demo_guest.get("latest/meta-data/instance-id", token).status == 401
    demo_token = demo_guest.token()
    assert guest.get("latest/meta-data/instance-id", demo_token).status == 401
    assert demo_guest.get("latest/meta-data/instance-id", demo_token).text == demo.INSTANCE_ID


def test_addresses_in_use_are_refused(cli, ec2, addresses):
    message = cli.fails("ec2", "run-instances", "--image-id", IMAGE, "--count", "1",
                        "--private-ip-address", demo.PRIVATE_IPV4, code="InvalidIPAddress.InUse")
    assert demo.PRIVATE_IPV4 in message
    address = addresses.next()
    awsctl.launch(ec2, address)
    message = cli.fails("ec2", "run-instances", "--image-id", IMAGE, "--count", "1",
                        "--private-ip-address", address, code="InvalidIPAddress.InUse")
    assert address in message


def test_user_data_over_16384_bytes_is_refused(cli, tmp_path, ec2):
    big = tmp_path / "user-data.txt"
    big.write_text("x" * 16385)
    message = cli.fails("ec2", "run-instances", "--image-id", IMAGE, "--count", "1",
                        "--tag-specifications", awsctl.cli_tag_spec({"Suite": "too-big"}),
                        "--user-data", f"file://{big}", code="InvalidParameterValue")
    assert message == "User data is limited to 16384 bytes"
    none = ec2.describe_instances(Filters=[{"Name": "tag:Suite", "Values": ["too-big"]}])
    assert none["Reservations"] == []


def test_user_data_of_exactly_16384_bytes_is_served(ec2, imdsd, addresses):
    address = addresses.next()
    data = bytes(range(256)) * 64
    assert len(data) == 16384
    awsctl.launch(ec2, address, UserData=data)
    resp = Guest(imdsd, address).get("latest/user-data")
    assert resp.status == 200 and resp.body == data


def test_binary_user_data_from_boto3_is_served_byte_for_byte(ec2, imdsd, addresses):
    address = addresses.next()
    data = gzip.compress(b"#cloud-config\nruncmd: [echo hi]\n", mtime=0)
    inst = awsctl.launch(ec2, address, UserData=data)
    resp = Guest(imdsd, address).get("latest/user-data")
    assert resp.status == 200 and resp.body == data
    attr = ec2.describe_instance_attribute(InstanceId=inst["InstanceId"], Attribute="userData")
    assert base64.b64decode(attr["UserData"]["Value"]) == data


def test_dry_run_launches_nothing(cli, ec2):
    message = cli.fails("ec2", "run-instances", "--image-id", IMAGE, "--count", "1", "--dry-run",
                        "--tag-specifications", awsctl.cli_tag_spec({"Suite": "dry-run"}),
                        code="DryRunOperation")
    assert message == "Request would have succeeded, but DryRun flag is set."
    assert ec2.describe_instances(Filters=[{"Name": "tag:Suite", "Values": ["dry-run"]}])["Reservations"] == []


def test_invalid_launch_options_are_refused(cli):
    cli.fails("ec2", "run-instances", "--image-id", IMAGE, "--count", "1",
              "--metadata-options", "HttpTokens=maybe", code="InvalidParameterValue")
    cli.fails("ec2", "run-instances", "--image-id", IMAGE, "--count", "1",
              "--metadata-options", "HttpPutResponseHopLimit=65", code="InvalidParameterValue")


def test_invalid_imds_tag_key_at_launch_is_refused(cli, ec2):
    message = cli.fails("ec2", "run-instances", "--image-id", IMAGE, "--count", "1",
                        "--metadata-options", "InstanceMetadataTags=enabled",
                        "--tag-specifications", "ResourceType=instance,Tags=[{Key=Suite,Value=badkey},"
                        "{Key=team/name,Value=x}]", code="InvalidParameterValue")
    assert message == awsctl.imds_tag_key_error("team/name")
    assert ec2.describe_instances(Filters=[{"Name": "tag:Suite", "Values": ["badkey"]}])["Reservations"] == []


def test_the_same_key_without_tags_in_metadata_is_accepted(ec2):
    inst = awsctl.launch(ec2, wait=False, TagSpecifications=awsctl.tag_spec({"team/name": "x"}))
    assert inst["MetadataOptions"]["InstanceMetadataTags"] == "disabled"


def test_default_addresses_come_from_the_pool(ec2):
    inst = awsctl.launch(ec2, wait=False)
    assert inst["PrivateIpAddress"].startswith("10.0."), inst["PrivateIpAddress"]


def test_unknown_key_pair_is_refused(cli):
    cli.fails("ec2", "run-instances", "--image-id", IMAGE, "--count", "1", "--key-name", "no-such-key",
              code="InvalidKeyPair.NotFound")


def test_boto3_run_instances_answer(ec2):
    answer = ec2.run_instances(ImageId=IMAGE, MinCount=2, MaxCount=2,
                               MetadataOptions={"HttpTokens": "required", "HttpPutResponseHopLimit": 3})
    assert answer["ReservationId"].startswith("r-")
    assert len(answer["Instances"]) == 2
    assert sorted(i["AmiLaunchIndex"] for i in answer["Instances"]) == [0, 1]
    for inst in answer["Instances"]:
        assert inst["MetadataOptions"]["HttpTokens"] == "required"
        assert inst["MetadataOptions"]["HttpPutResponseHopLimit"] == 3
    addrs = {i["PrivateIpAddress"] for i in answer["Instances"]}
    assert len(addrs) == 2
    with pytest.raises(botocore.exceptions.ClientError) as e:
        ec2.run_instances(ImageId=IMAGE, MinCount=1, MaxCount=1, DryRun=True)
    assert awsctl.client_error(e)[0::2] == ("DryRunOperation", 412)
