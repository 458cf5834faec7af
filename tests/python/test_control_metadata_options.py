"""ModifyInstanceMetadataOptions through the AWS CLI v1/v2 and boto3
(docs/protocol/control-plane.md#modify-instance-metadata-options): the answer says
`pending`, DescribeInstances turns to `applied`, and from then on the data
plane, asked from the instance's own address, behaves as the new options say
(docs/protocol/data-plane.md)."""

from __future__ import annotations

import botocore.exceptions
import pytest

import awsctl
import demo
from awsctl import Guest

MODIFY = ("ec2", "modify-instance-metadata-options")


@pytest.fixture
def guest(imdsd, ec2, addresses):
    """A fresh running instance with default options (IMDSv1 allowed), tags
    Name/Team and tags hidden from metadata, reachable at its own 127.0.0.x."""
    address = addresses.next()
    inst = awsctl.launch(ec2, address,
                         TagSpecifications=awsctl.tag_spec({"Name": "opts", "Team": "blue"}))
    g = Guest(imdsd, address)
    g.instance_id = inst["InstanceId"]
    return g


def modify(cli, instance_id: str, *args: str) -> dict:
    answer = cli.ok(*MODIFY, "--instance-id", instance_id, *args)
    assert answer["InstanceId"] == instance_id, answer
    return answer["InstanceMetadataOptions"]


def test_require_tokens_then_imdsv1_is_refused(cli, ec2, guest, imdsd):
    assert guest.get("latest/meta-data/instance-id").status == 200  # IMDSv1 allowed at launch

    options = modify(cli, guest.instance_id, "--http-tokens", "required")
    assert options["State"] == "pending"
    assert options["HttpTokens"] == "required"
    # Omitted members keep their values.
    assert options["HttpEndpoint"] == "enabled"
    assert options["HttpPutResponseHopLimit"] == 1
    assert options["InstanceMetadataTags"] == "disabled"

    applied = awsctl.wait_applied(ec2, guest.instance_id)
    assert applied["HttpTokens"] == "required"

    v1 = guest.get("latest/meta-data/instance-id")
    assert v1.status == 401, (v1.status, v1.body)
    v2 = guest.v2_get("latest/meta-data/instance-id")
    assert (v2.status, v2.text) == (200, guest.instance_id)
    # Only this instance changed: the demo instance still answers IMDSv1.
    assert Guest(imdsd, demo.PRIVATE_IPV4).get("latest/meta-data/instance-id").text == demo.INSTANCE_ID

    # And back.
    assert modify(cli, guest.instance_id, "--http-tokens", "optional")["HttpTokens"] == "optional"
    awsctl.wait_applied(ec2, guest.instance_id)
    assert guest.get("latest/meta-data/instance-id").status == 200


def test_disabled_endpoint_answers_403_to_everything(cli, ec2, guest):
    token = guest.token()
    options = modify(cli, guest.instance_id, "--http-endpoint", "disabled")
    assert (options["State"], options["HttpEndpoint"]) == ("pending", "disabled")
    assert awsctl.wait_applied(ec2, guest.instance_id)["HttpEndpoint"] == "disabled"

    for what, resp in [
        ("IMDSv1 GET", guest.get("latest/meta-data/instance-id")),
        ("IMDSv2 GET with a token from before", guest.get("latest/meta-data/instance-id", token)),
        ("token PUT", guest.put_token()),
        ("user data", guest.get("latest/user-data")),
        ("version list", guest.get("")),
    ]:
        assert resp.status == 403, (what, resp.status, resp.body)

    assert modify(cli, guest.instance_id, "--http-endpoint", "enabled")["HttpEndpoint"] == "enabled"
    awsctl.wait_applied(ec2, guest.instance_id)
    resp = guest.v2_get("latest/meta-data/instance-id")
    assert (resp.status, resp.text) == (200, guest.instance_id)
    assert guest.get("latest/meta-data/instance-id").status == 200


def test_instance_metadata_tags_on_and_off(cli, ec2, guest):
    assert guest.get("latest/meta-data/tags/instance").status == 404

    options = modify(cli, guest.instance_id, "--instance-metadata-tags", "enabled")
    assert (options["State"], options["InstanceMetadataTags"]) == ("pending", "enabled")
    awsctl.wait_applied(ec2, guest.instance_id)
    listing = guest.get("latest/meta-data/tags/instance")
    assert listing.status == 200, (listing.status, listing.body)
    assert sorted(listing.text.split("\n")) == ["Name", "Team"]
    assert guest.get("latest/meta-data/tags/instance/Team").text == "blue"

    modify(cli, guest.instance_id, "--instance-metadata-tags", "disabled")
    awsctl.wait_applied(ec2, guest.instance_id)
    assert guest.get("latest/meta-data/tags/instance").status == 404
    assert guest.get("latest/meta-data/tags/instance/Team").status == 404


def test_hop_limit_is_stored(cli, ec2, guest):
    assert modify(cli, guest.instance_id, "--http-put-response-hop-limit", "64")["HttpPutResponseHopLimit"] == 64
    assert awsctl.wait_applied(ec2, guest.instance_id)["HttpPutResponseHopLimit"] == 64
    assert guest.token()  # the token PUT still works (TTL is not visible on loopback)


@pytest.mark.parametrize("hops", ["0", "65"])
def test_hop_limit_out_of_range(cli, ec2, guest, hops):
    message = cli.fails(*MODIFY, "--instance-id", guest.instance_id, "--http-put-response-hop-limit", hops,
                        code="InvalidParameterValue")
    assert hops in message and "HttpPutResponseHopLimit" in message, message
    assert awsctl.describe_one(ec2, guest.instance_id)["MetadataOptions"]["HttpPutResponseHopLimit"] == 1


def test_http_tokens_maybe_is_invalid(cli, ec2, guest):
    message = cli.fails(*MODIFY, "--instance-id", guest.instance_id, "--http-tokens", "maybe",
                        code="InvalidParameterValue")
    assert "maybe" in message and "HttpTokens" in message, message
    assert awsctl.describe_one(ec2, guest.instance_id)["MetadataOptions"]["HttpTokens"] == "optional"


def test_enum_values_are_case_sensitive(cli, guest):
    cli.fails(*MODIFY, "--instance-id", guest.instance_id, "--http-endpoint", "Enabled",
              code="InvalidParameterValue")


def test_unknown_instance(cli):
    message = cli.fails(*MODIFY, "--instance-id", "i-0000000000000000f", "--http-tokens", "required",
                        code="InvalidInstanceID.NotFound")
    assert message == "The instance ID 'i-0000000000000000f' does not exist"


def test_malformed_instance_id(cli):
    message = cli.fails(*MODIFY, "--instance-id", "i-xyz", "--http-tokens", "required",
                        code="InvalidInstanceID.Malformed")
    assert message == 'Invalid id: "i-xyz"'


def test_dry_run_changes_nothing(cli, ec2, guest):
    message = cli.fails(*MODIFY, "--instance-id", guest.instance_id, "--http-tokens", "required",
                        "--dry-run", code="DryRunOperation")
    assert message == "Request would have succeeded, but DryRun flag is set."
    assert awsctl.describe_one(ec2, guest.instance_id)["MetadataOptions"]["HttpTokens"] == "optional"
    assert guest.get("latest/meta-data/instance-id").status == 200


def test_dry_run_is_http_412_for_boto3(ec2, guest):
    with pytest.raises(botocore.exceptions.ClientError) as e:
        ec2.modify_instance_metadata_options(InstanceId=guest.instance_id, HttpTokens="required", DryRun=True)
    assert awsctl.client_error(e)[0::2] == ("DryRunOperation", 412)


def test_boto3_modify_all_members(ec2, guest):
    answer = ec2.modify_instance_metadata_options(
        InstanceId=guest.instance_id, HttpTokens="required", HttpPutResponseHopLimit=2,
        HttpEndpoint="enabled", HttpProtocolIpv6="enabled", InstanceMetadataTags="enabled")
    assert answer["InstanceId"] == guest.instance_id
    assert answer["InstanceMetadataOptions"] == {
        "State": "pending", "HttpTokens": "required", "HttpPutResponseHopLimit": 2,
        "HttpEndpoint": "enabled", "HttpProtocolIpv6": "enabled", "InstanceMetadataTags": "enabled",
    }
    applied = awsctl.wait_applied(ec2, guest.instance_id)
    assert applied == {**answer["InstanceMetadataOptions"], "State": "applied"}
    assert guest.get("latest/meta-data/instance-id").status == 401
    assert guest.v2_get("latest/meta-data/tags/instance/Name").text == "opts"


def test_errors_are_http_400_for_boto3(ec2):
    with pytest.raises(botocore.exceptions.ClientError) as e:
        ec2.modify_instance_metadata_options(InstanceId="i-0000000000000000f", HttpTokens="required")
    assert awsctl.client_error(e)[0::2] == ("InvalidInstanceID.NotFound", 400)


def test_enabling_tags_with_an_invalid_key_is_refused(cli, ec2, guest):
    ec2.create_tags(Resources=[guest.instance_id], Tags=[{"Key": "cost center", "Value": "x"}])
    message = cli.fails(*MODIFY, "--instance-id", guest.instance_id, "--instance-metadata-tags", "enabled",
                        code="InvalidParameterValue")
    assert message == awsctl.imds_tag_key_error("cost center")
    assert awsctl.describe_one(ec2, guest.instance_id)["MetadataOptions"]["InstanceMetadataTags"] == "disabled"
    assert guest.get("latest/meta-data/tags/instance").status == 404


def test_a_request_that_changes_nothing_succeeds(cli, ec2, guest):
    options = modify(cli, guest.instance_id)
    assert options["State"] == "pending"
    assert (options["HttpTokens"], options["HttpEndpoint"], options["HttpPutResponseHopLimit"]) == \
        ("optional", "enabled", 1)
    awsctl.wait_applied(ec2, guest.instance_id)
    assert guest.get("latest/meta-data/instance-id").status == 200


def test_tokens_stay_valid_across_option_changes(cli, ec2, guest):
    """docs/protocol/data-plane.md#token-format: tokens stay valid until they expire; a disabled
    endpoint answers 403 meanwhile."""
    token = guest.token()
    modify(cli, guest.instance_id, "--http-tokens", "required")
    awsctl.wait_applied(ec2, guest.instance_id)
    assert guest.get("latest/meta-data/instance-id", token).status == 200
    modify(cli, guest.instance_id, "--http-endpoint", "disabled")
    awsctl.wait_applied(ec2, guest.instance_id)
    assert guest.get("latest/meta-data/instance-id", token).status == 403
    modify(cli, guest.instance_id, "--http-endpoint", "enabled")
    awsctl.wait_applied(ec2, guest.instance_id)
    resp = guest.get("latest/meta-data/instance-id", token)
    assert (resp.status, resp.text) == (200, guest.instance_id)


@pytest.mark.parametrize("cli", ["v1"], indirect=True)
def test_ipv6_endpoint_follows_http_protocol_ipv6(cli, ec2, imdsd):
    """docs/protocol/data-plane.md#disabled: with HttpProtocolIpv6=disabled the IPv6 address
    does not answer at all, while IPv4 is unaffected. (The demo instance is
    the one owning ::1; it is restored afterwards.)"""
    v6 = Guest(imdsd, demo.IPV6)
    v4 = Guest(imdsd, demo.PRIVATE_IPV4)
    assert v6.get("latest/meta-data/instance-id").text == demo.INSTANCE_ID
    try:
        modify(cli, demo.INSTANCE_ID, "--http-protocol-ipv6", "disabled")
        awsctl.wait_applied(ec2, demo.INSTANCE_ID)
        assert v6.answer() is None, "the IPv6 endpoint still answers with HttpProtocolIpv6=disabled"
        assert v4.get("latest/meta-data/instance-id").text == demo.INSTANCE_ID
    finally:
        modify(cli, demo.INSTANCE_ID, "--http-protocol-ipv6", "enabled")
        awsctl.wait_applied(ec2, demo.INSTANCE_ID)
    assert v6.get("latest/meta-data/instance-id").text == demo.INSTANCE_ID


def test_launched_with_endpoint_disabled(ec2, imdsd, addresses):
    address = addresses.next()
    awsctl.launch(ec2, address, MetadataOptions={"HttpEndpoint": "disabled"})
    g = Guest(imdsd, address)
    assert g.get("latest/meta-data/instance-id").status == 403
    assert g.put_token().status == 403
