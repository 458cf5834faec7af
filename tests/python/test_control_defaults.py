"""Account-level defaults and the AMI's ImdsSupport
(docs/protocol/control-plane.md#account-defaults,
docs/protocol/control-plane.md#imds-support) and the order of precedence at launch
(docs/protocol/control-plane.md#precedence: launch parameters > account
defaults > AMI > service defaults), through the AWS CLI and boto3, with the
effect checked on the data plane.

Modify/GetInstanceMetadataDefaults are newer than Debian's AWS CLI v2
(2.9.x has no such commands), so those run with the CLI v1 only.
"""

from __future__ import annotations

import pytest

import awsctl
import demo
from awsctl import Guest

IMAGE = "ami-0abcdef1234567890"
CLEAR = ["--http-tokens", "no-preference", "--http-put-response-hop-limit", "-1",
         "--http-endpoint", "no-preference", "--instance-metadata-tags", "no-preference",
         "--http-tokens-enforced", "no-preference"]


@pytest.fixture(autouse=True)
def cleared_defaults(ec2):
    """Every test starts and ends with no account defaults."""
    clear = dict(HttpTokens="no-preference", HttpPutResponseHopLimit=-1, HttpEndpoint="no-preference",
                 InstanceMetadataTags="no-preference", HttpTokensEnforced="no-preference")
    ec2.modify_instance_metadata_defaults(**clear)
    yield
    ec2.modify_instance_metadata_defaults(**clear)


@pytest.fixture(scope="module")
def v2_image(ec2):
    """An AMI registered with ImdsSupport=v2.0."""
    return ec2.register_image(Name="imds-v2-only", ImdsSupport="v2.0", RootDeviceName="/dev/xvda",
                              Architecture="x86_64")["ImageId"]


def launched_options(cli, *args: str) -> tuple[str, dict]:
    answer = cli.ok("ec2", "run-instances", "--count", "1", *args)
    inst = answer["Instances"][0]
    return inst["InstanceId"], inst["MetadataOptions"]


@pytest.mark.parametrize("cli", ["v1"], indirect=True)
def test_no_defaults_at_first(cli):
    answer = cli.ok("ec2", "get-instance-metadata-defaults")
    assert "HttpTokens" not in answer.get("AccountLevel", {}), answer


@pytest.mark.parametrize("cli", ["v1"], indirect=True)
def test_account_default_http_tokens(cli, ec2, imdsd, addresses):
    assert cli.ok("ec2", "modify-instance-metadata-defaults", "--http-tokens", "required") == {"Return": True}
    level = cli.ok("ec2", "get-instance-metadata-defaults")["AccountLevel"]
    assert level["HttpTokens"] == "required", level
    assert level.get("ManagedBy", "account") == "account", level

    # A launch without MetadataOptions gets it...
    address = addresses.next()
    iid, options = launched_options(cli, "--image-id", IMAGE, "--private-ip-address", address)
    assert options["HttpTokens"] == "required"
    awsctl.wait_applied(ec2, iid)
    guest = Guest(imdsd, address)
    assert guest.get("latest/meta-data/instance-id").status == 401
    assert guest.v2_get("latest/meta-data/instance-id").text == iid

    # ...explicit launch parameters win...
    address = addresses.next()
    iid, options = launched_options(cli, "--image-id", IMAGE, "--private-ip-address", address,
                                    "--metadata-options", "HttpTokens=optional")
    assert options["HttpTokens"] == "optional"
    awsctl.wait_applied(ec2, iid)
    assert Guest(imdsd, address).get("latest/meta-data/instance-id").text == iid

    # ...and existing instances are untouched.
    assert awsctl.describe_one(ec2, demo.INSTANCE_ID)["MetadataOptions"]["HttpTokens"] == "optional"
    assert Guest(imdsd, demo.PRIVATE_IPV4).get("latest/meta-data/instance-id").status == 200


@pytest.mark.parametrize("cli", ["v1"], indirect=True)
def test_defaults_for_every_member_and_clearing(cli, ec2):
    cli.ok("ec2", "modify-instance-metadata-defaults", "--http-put-response-hop-limit", "3",
           "--instance-metadata-tags", "enabled", "--http-endpoint", "enabled")
    level = cli.ok("ec2", "get-instance-metadata-defaults")["AccountLevel"]
    assert level["HttpPutResponseHopLimit"] == 3 and level["InstanceMetadataTags"] == "enabled", level
    assert "HttpTokens" not in level, level
    _, options = launched_options(cli, "--image-id", IMAGE)
    assert (options["HttpPutResponseHopLimit"], options["InstanceMetadataTags"], options["HttpTokens"]) == \
        (3, "enabled", "optional")

    cli.ok("ec2", "modify-instance-metadata-defaults", *CLEAR)
    level = cli.ok("ec2", "get-instance-metadata-defaults").get("AccountLevel", {})
    assert {k: v for k, v in level.items() if k != "ManagedBy"} == {}, level
    _, options = launched_options(cli, "--image-id", IMAGE)
    assert (options["HttpPutResponseHopLimit"], options["InstanceMetadataTags"]) == (1, "disabled")


@pytest.mark.parametrize("cli", ["v1"], indirect=True)
def test_invalid_defaults_are_refused(cli):
    cli.fails("ec2", "modify-instance-metadata-defaults", "--http-tokens", "maybe",
              code="InvalidParameterValue")
    cli.fails("ec2", "modify-instance-metadata-defaults", "--http-put-response-hop-limit", "65",
              code="InvalidParameterValue")
    cli.fails("ec2", "modify-instance-metadata-defaults", "--http-tokens", "required", "--dry-run",
              code="DryRunOperation")
    assert "HttpTokens" not in cli.ok("ec2", "get-instance-metadata-defaults").get("AccountLevel", {})


@pytest.mark.parametrize("cli", ["v1"], indirect=True)
def test_http_tokens_enforced_refuses_optional_launches(cli, ec2):
    cli.ok("ec2", "modify-instance-metadata-defaults", "--http-tokens-enforced", "enabled")
    assert cli.ok("ec2", "get-instance-metadata-defaults")["AccountLevel"]["HttpTokensEnforced"] == "enabled"
    cli.fails("ec2", "run-instances", "--image-id", IMAGE, "--count", "1",
              "--metadata-options", "HttpTokens=optional", code=("InvalidParameterValue", "UnauthorizedOperation",
                                                                  "InvalidParameterCombination"))
    _, options = launched_options(cli, "--image-id", IMAGE, "--metadata-options", "HttpTokens=required")
    assert options["HttpTokens"] == "required"


def test_register_image_with_imds_support(cli, ec2):
    image = cli.ok("ec2", "register-image", "--name", f"v2-{cli.version}", "--imds-support", "v2.0",
                   "--root-device-name", "/dev/xvda", "--architecture", "x86_64")["ImageId"]
    assert image.startswith("ami-")
    described = cli.ok("ec2", "describe-images", "--image-ids", image)["Images"]
    assert [(i["ImageId"], i.get("ImdsSupport")) for i in described] == [(image, "v2.0")]
    attr = cli.ok("ec2", "describe-image-attribute", "--image-id", image, "--attribute", "imdsSupport")
    assert attr["ImdsSupport"]["Value"] == "v2.0"


def test_instances_of_a_v2_ami_require_tokens_and_two_hops(cli, ec2, imdsd, addresses, v2_image):
    address = addresses.next()
    iid, options = launched_options(cli, "--image-id", v2_image, "--private-ip-address", address)
    assert (options["HttpTokens"], options["HttpPutResponseHopLimit"]) == ("required", 2)
    awsctl.wait_applied(ec2, iid)
    guest = Guest(imdsd, address)
    assert guest.get("latest/meta-data/instance-id").status == 401
    assert guest.v2_get("latest/meta-data/ami-id").text == v2_image


@pytest.mark.parametrize("cli", ["v1"], indirect=True)
def test_account_defaults_beat_the_ami(cli, ec2, imdsd, addresses, v2_image):
    cli.ok("ec2", "modify-instance-metadata-defaults", "--http-tokens", "optional")
    address = addresses.next()
    iid, options = launched_options(cli, "--image-id", v2_image, "--private-ip-address", address)
    # HttpTokens from the account, the hop limit (no account default) from the AMI.
    assert (options["HttpTokens"], options["HttpPutResponseHopLimit"]) == ("optional", 2)
    awsctl.wait_applied(ec2, iid)
    assert Guest(imdsd, address).get("latest/meta-data/instance-id").text == iid


@pytest.mark.parametrize("cli", ["v1"], indirect=True)
def test_launch_parameters_beat_account_and_ami(cli, ec2, v2_image):
    cli.ok("ec2", "modify-instance-metadata-defaults", "--http-tokens", "required",
           "--http-put-response-hop-limit", "3")
    _, options = launched_options(cli, "--image-id", v2_image, "--metadata-options", "HttpTokens=optional")
    assert (options["HttpTokens"], options["HttpPutResponseHopLimit"]) == ("optional", 3)
    _, options = launched_options(cli, "--image-id", v2_image,
                                  "--metadata-options", "HttpPutResponseHopLimit=5")
    assert (options["HttpTokens"], options["HttpPutResponseHopLimit"]) == ("required", 5)


def test_modify_image_attribute_imds_support(cli, ec2):
    image = ec2.register_image(Name=f"later-v2-{cli.version}", RootDeviceName="/dev/xvda",
                               Architecture="x86_64")["ImageId"]
    _, options = launched_options(cli, "--image-id", image)
    assert options["HttpTokens"] == "optional"
    # Both wire forms (docs/protocol/control-plane.md#imds-support): ImdsSupport.Value=v2.0 (CLI
    # v1), and
    # Attribute=imdsSupport&Value=v2.0 (Debian's CLI v2 has no --imds-support here).
    form = (["--imds-support", "Value=v2.0"] if cli.version == "v1"
            else ["--attribute", "imdsSupport", "--value", "v2.0"])
    r = cli.run("ec2", "modify-image-attribute", "--image-id", image, *form)
    assert r.returncode == 0, r.describe()
    attr = cli.ok("ec2", "describe-image-attribute", "--image-id", image, "--attribute", "imdsSupport")
    assert attr["ImdsSupport"]["Value"] == "v2.0"
    _, options = launched_options(cli, "--image-id", image)
    assert (options["HttpTokens"], options["HttpPutResponseHopLimit"]) == ("required", 2)
