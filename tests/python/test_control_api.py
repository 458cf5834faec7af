"""Protocol behaviour every EC2 action shares
(docs/protocol/control-plane.md#query-protocol): DryRun
answers DryRunOperation (HTTP 412) and changes nothing, error codes and
messages the CLI prints, idempotent RunInstances, unsigned requests."""

from __future__ import annotations

import base64

import botocore.config
import botocore.exceptions
import pytest

import awsctl
import demo
from awsctl import Guest

IMAGE = "ami-0abcdef1234567890"


@pytest.fixture(scope="module")
def stopped(ec2):
    """A stopped instance tagged Suite=api, Team=blue."""
    inst = awsctl.launch(ec2, TagSpecifications=awsctl.tag_spec({"Suite": "api", "Team": "blue"}))
    ec2.stop_instances(InstanceIds=[inst["InstanceId"]])
    awsctl.wait_until(lambda: awsctl.describe_one(ec2, inst["InstanceId"])["State"]["Name"] == "stopped",
                      "the instance is stopped")
    return inst["InstanceId"]


def dry_run_commands(iid: str, key_file: str) -> list[list[str]]:
    return [
        ["ec2", "describe-instances"],
        ["ec2", "run-instances", "--image-id", IMAGE, "--count", "1"],
        ["ec2", "modify-instance-metadata-options", "--instance-id", iid, "--http-tokens", "required"],
        ["ec2", "start-instances", "--instance-ids", iid],
        ["ec2", "terminate-instances", "--instance-ids", iid],
        ["ec2", "modify-instance-attribute", "--instance-id", iid, "--attribute", "userData",
         "--value", base64.b64encode(b"changed").decode()],
        ["ec2", "describe-instance-attribute", "--instance-id", iid, "--attribute", "userData"],
        ["ec2", "create-tags", "--resources", iid, "--tags", "Key=Team,Value=red"],
        ["ec2", "delete-tags", "--resources", iid, "--tags", "Key=Team"],
        ["ec2", "describe-tags"],
        ["ec2", "register-image", "--name", "dry-run-image", "--root-device-name", "/dev/xvda"],
        ["ec2", "import-key-pair", "--key-name", "dry-run-key", "--public-key-material", f"fileb://{key_file}"],
    ]


def test_dry_run_of_every_action(cli, ec2, stopped, tmp_path):
    key_file = tmp_path / "key.pub"
    key_file.write_text(awsctl.ssh_ed25519_public_key(b"dry", "dry") + "\n")
    before = awsctl.describe_one(ec2, stopped)
    for command in dry_run_commands(stopped, str(key_file)):
        message = cli.fails(*command, "--dry-run", code="DryRunOperation")
        assert message == "Request would have succeeded, but DryRun flag is set.", command
    after = awsctl.describe_one(ec2, stopped)
    assert after["State"]["Name"] == "stopped"
    assert after["MetadataOptions"]["HttpTokens"] == before["MetadataOptions"]["HttpTokens"]
    assert {t["Key"]: t["Value"] for t in after["Tags"]} == {"Suite": "api", "Team": "blue"}
    assert not ec2.describe_images(Filters=[{"Name": "name", "Values": ["dry-run-image"]}])["Images"]
    assert "dry-run-key" not in [k["KeyName"] for k in ec2.describe_key_pairs()["KeyPairs"]]


@pytest.mark.parametrize("cli", ["v1"], indirect=True)
def test_dry_run_of_the_defaults_actions(cli):
    cli.fails("ec2", "get-instance-metadata-defaults", "--dry-run", code="DryRunOperation")
    cli.fails("ec2", "modify-instance-metadata-defaults", "--http-tokens", "required", "--dry-run",
              code="DryRunOperation")
    assert "HttpTokens" not in cli.ok("ec2", "get-instance-metadata-defaults").get("AccountLevel", {})


def test_several_unknown_ids_are_named_together(cli):
    message = cli.fails("ec2", "describe-instances", "--instance-ids", "i-0000000000000000a",
                        "i-0000000000000000b", code="InvalidInstanceID.NotFound")
    assert message == "The instance IDs 'i-0000000000000000a, i-0000000000000000b' do not exist"


def test_unknown_filter_is_refused(cli):
    cli.fails("ec2", "describe-instances", "--filters", "Name=no-such-filter,Values=x",
              code="InvalidParameterValue")


def test_client_token_makes_run_instances_idempotent(cli):
    token = f"idem-{cli.version}"
    args = ["ec2", "run-instances", "--image-id", IMAGE, "--count", "1", "--client-token", token]
    first = cli.ok(*args)["Instances"][0]["InstanceId"]
    again = cli.ok(*args)["Instances"][0]["InstanceId"]
    assert again == first
    cli.fails(*args, "--instance-type", "t3.large", code="IdempotentParameterMismatch")


def test_explicit_address_with_several_instances_is_refused(cli, addresses):
    cli.fails("ec2", "run-instances", "--image-id", IMAGE, "--count", "2",
              "--private-ip-address", addresses.next(), code="InvalidParameterCombination")


def test_unsigned_request_is_refused(imdsd):
    import boto3
    from botocore import UNSIGNED

    client = boto3.session.Session(region_name=imdsd.region).client(
        "ec2", endpoint_url=imdsd.control,
        config=botocore.config.Config(signature_version=UNSIGNED, retries={"total_max_attempts": 1}))
    with pytest.raises(botocore.exceptions.ClientError) as e:
        client.describe_instances()
    code, _, status = awsctl.client_error(e)
    assert code in ("AuthFailure", "MissingAuthenticationToken") and status == 401, (code, status)


def test_reboot_keeps_tokens_and_metadata(cli, imdsd):
    guest = Guest(imdsd, demo.PRIVATE_IPV4)
    token = guest.token()
    assert cli.run("ec2", "reboot-instances", "--instance-ids", demo.INSTANCE_ID).returncode == 0
    assert guest.get("latest/meta-data/instance-id", token).text == demo.INSTANCE_ID
