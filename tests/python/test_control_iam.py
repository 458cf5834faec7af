"""IAM policies and authentication of the control plane
(docs/protocol/control-plane.md#error-codes, docs/protocol/control-plane.md#dry-run,
docs/protocol/control-plane.md#iam) with the AWS CLI v1/v2 and boto3, on an imdsd started with
a config file that adds a restricted access key whose policy holds the
documented patterns: example 4 (HttpTokens may only be changed to
`required`) and example 3 (no hop limit above 3)."""

from __future__ import annotations

import json

import botocore.exceptions
import pytest

import awsctl
from awsctl import Aws, Guest, Keys
from conftest import start_imdsd

RESTRICTED = Keys("AKIAIMDSDTESTLIMITED", "imdsdTestRestrictedSecretKey0000000000000")
WRONG_SECRET = Keys(RESTRICTED.access_key_id, "not" + RESTRICTED.secret_access_key[3:])
UNKNOWN = Keys("AKIAIMDSDTESTUNKNOWN", "imdsdTestUnknownSecretKey00000000000000000")

POLICY = {
    "Version": "2012-10-17",
    "Statement": [
        {"Sid": "AllowEc2", "Effect": "Allow", "Action": "ec2:*", "Resource": "*"},
        {
            # docs/protocol/control-plane.md#iam-examples, example 4: HttpTokens may be changed
            # only to `required`.
            "Sid": "OnlyRequireImdsV2",
            "Effect": "Deny",
            "Action": "ec2:ModifyInstanceMetadataOptions",
            "Resource": "*",
            "Condition": {
                "StringEquals": {"ec2:Attribute": "HttpTokens"},
                "StringNotEquals": {"ec2:Attribute/HttpTokens": "required"},
            },
        },
        {
            # docs/protocol/control-plane.md#iam-examples, example 3: no hop limit above 3.
            "Sid": "MaxHopLimit3",
            "Effect": "Deny",
            "Action": ["ec2:RunInstances", "ec2:ModifyInstanceMetadataOptions"],
            "Resource": "arn:aws:ec2:*:*:instance/*",
            "Condition": {"NumericGreaterThan": {"ec2:MetadataHttpPutResponseHopLimit": "3"}},
        },
    ],
}

# docs/protocol/control-plane.md#iam-examples, example 5: nothing with role credentials delivered
# through IMDSv1.
IMDSV2_ONLY_ROLE = "imdsv2-only-role"
ROLE_POLICY = {
    "Version": "2012-10-17",
    "Statement": [
        {"Sid": "AllowEc2", "Effect": "Allow", "Action": "ec2:*", "Resource": "*"},
        {"Sid": "RequireImdsV2Credentials", "Effect": "Deny", "Action": "*", "Resource": "*",
         "Condition": {"NumericLessThan": {"ec2:RoleDelivery": "2.0"}}},
    ],
}

CONFIG = f"""
[[control.credentials]]
access_key_id = "{RESTRICTED.access_key_id}"
secret_access_key = "{RESTRICTED.secret_access_key}"
policy = "restricted-policy.json"

[control.role_policies]
{IMDSV2_ONLY_ROLE} = "role-policy.json"
"""

MODIFY = ("ec2", "modify-instance-metadata-options")


@pytest.fixture(scope="module")
def imdsd():
    """An `imdsd serve --demo --config imdsd.toml` with the restricted key
    (the demo key stays unrestricted, for setup and checks)."""
    files = {"restricted-policy.json": json.dumps(POLICY, indent=2),
             "role-policy.json": json.dumps(ROLE_POLICY, indent=2)}
    with start_imdsd(CONFIG, files) as server:
        yield server


@pytest.fixture
def restricted(imdsd, aws_home, cli):
    """The same CLI version as `cli`, with the restricted key."""
    return Aws(imdsd, cli.version, aws_home / f"restricted-{cli.version}", keys=RESTRICTED)


@pytest.fixture(scope="module")
def restricted_ec2(imdsd):
    return awsctl.boto3_client(imdsd, "ec2", keys=RESTRICTED)


@pytest.fixture
def guest(imdsd, ec2, addresses):
    address = addresses.next()
    inst = awsctl.launch(ec2, address)
    g = Guest(imdsd, address)
    g.instance_id = inst["InstanceId"]
    return g


def options_of(ec2, instance_id: str) -> dict:
    return awsctl.describe_one(ec2, instance_id)["MetadataOptions"]


def test_restricted_key_may_read(restricted, guest):
    answer = restricted.ok("ec2", "describe-instances", "--instance-ids", guest.instance_id)
    assert answer["Reservations"][0]["Instances"][0]["InstanceId"] == guest.instance_id


def test_http_tokens_may_only_become_required(restricted, ec2, guest):
    iid = guest.instance_id
    message = restricted.fails(*MODIFY, "--instance-id", iid, "--http-tokens", "optional",
                               code="UnauthorizedOperation")
    assert message.startswith("You are not authorized to perform this operation."), message

    options = restricted.ok(*MODIFY, "--instance-id", iid, "--http-tokens", "required")
    assert options["InstanceMetadataOptions"]["HttpTokens"] == "required"
    awsctl.wait_applied(ec2, iid)
    assert guest.get("latest/meta-data/instance-id").status == 401

    # The denied change did not happen, and cannot be sneaked in beside another member.
    for extra in (["--http-endpoint", "enabled"], ["--http-put-response-hop-limit", "2"]):
        restricted.fails(*MODIFY, "--instance-id", iid, "--http-tokens", "optional", *extra,
                         code="UnauthorizedOperation")
    assert options_of(ec2, iid)["HttpTokens"] == "required"
    assert guest.get("latest/meta-data/instance-id").status == 401

    # Members other than HttpTokens are not restricted by example 4.
    restricted.ok(*MODIFY, "--instance-id", iid, "--instance-metadata-tags", "enabled")


def test_hop_limit_above_three_is_denied(restricted, ec2, guest):
    iid = guest.instance_id
    restricted.fails(*MODIFY, "--instance-id", iid, "--http-put-response-hop-limit", "4",
                     code="UnauthorizedOperation")
    assert options_of(ec2, iid)["HttpPutResponseHopLimit"] == 1
    answer = restricted.ok(*MODIFY, "--instance-id", iid, "--http-put-response-hop-limit", "3")
    assert answer["InstanceMetadataOptions"]["HttpPutResponseHopLimit"] == 3


def test_hop_limit_above_three_is_denied_at_launch(restricted, ec2):
    restricted.fails("ec2", "run-instances", "--image-id", "ami-0abcdef1234567890", "--count", "1",
                     "--tag-specifications", awsctl.cli_tag_spec({"Suite": "iam-hops"}),
                     "--metadata-options", "HttpPutResponseHopLimit=4", code="UnauthorizedOperation")
    assert ec2.describe_instances(Filters=[{"Name": "tag:Suite", "Values": ["iam-hops"]}])["Reservations"] == []
    answer = restricted.ok("ec2", "run-instances", "--image-id", "ami-0abcdef1234567890", "--count", "1",
                           "--metadata-options", "HttpPutResponseHopLimit=3")
    assert answer["Instances"][0]["MetadataOptions"]["HttpPutResponseHopLimit"] == 3


def test_dry_run_tells_allowed_from_denied(restricted, ec2, guest):
    iid = guest.instance_id
    restricted.fails(*MODIFY, "--instance-id", iid, "--http-tokens", "required", "--dry-run",
                     code="DryRunOperation")
    restricted.fails(*MODIFY, "--instance-id", iid, "--http-tokens", "optional", "--dry-run",
                     code="UnauthorizedOperation")
    restricted.fails(*MODIFY, "--instance-id", iid, "--http-put-response-hop-limit", "4", "--dry-run",
                     code="UnauthorizedOperation")
    assert options_of(ec2, iid)["HttpTokens"] == "optional"  # DryRun changed nothing


def test_http_status_codes_for_boto3(restricted_ec2, guest):
    iid = guest.instance_id
    cases = [
        (dict(HttpTokens="optional"), ("UnauthorizedOperation", 403)),
        (dict(HttpTokens="optional", DryRun=True), ("UnauthorizedOperation", 403)),
        (dict(HttpTokens="required", DryRun=True), ("DryRunOperation", 412)),
        (dict(HttpPutResponseHopLimit=4), ("UnauthorizedOperation", 403)),
    ]
    for params, expected in cases:
        with pytest.raises(botocore.exceptions.ClientError) as e:
            restricted_ec2.modify_instance_metadata_options(InstanceId=iid, **params)
        assert awsctl.client_error(e)[0::2] == expected, params


def test_validation_errors_come_before_authorisation(restricted, guest):
    # docs/protocol/control-plane.md#dry-run: 400 errors win over the policy decision.
    restricted.fails(*MODIFY, "--instance-id", guest.instance_id, "--http-tokens", "maybe",
                     code="InvalidParameterValue")
    restricted.fails(*MODIFY, "--instance-id", "i-0000000000000000f", "--http-tokens", "optional",
                     code="InvalidInstanceID.NotFound")


def test_wrong_secret_is_refused(imdsd, aws_home, cli, ec2, guest):
    bad = Aws(imdsd, cli.version, aws_home / f"wrong-{cli.version}", keys=WRONG_SECRET)
    bad.fails("ec2", "describe-instances", code=("AuthFailure", "SignatureDoesNotMatch"))
    bad.fails(*MODIFY, "--instance-id", guest.instance_id, "--http-tokens", "required",
              code=("AuthFailure", "SignatureDoesNotMatch"))
    assert options_of(ec2, guest.instance_id)["HttpTokens"] == "optional"


def test_unknown_access_key_is_refused(imdsd, aws_home, cli):
    unknown = Aws(imdsd, cli.version, aws_home / f"unknown-{cli.version}", keys=UNKNOWN)
    unknown.fails("ec2", "describe-instances", code="AuthFailure")


def test_auth_failures_are_http_401_or_403_for_boto3(imdsd):
    for keys, codes in [(UNKNOWN, {"AuthFailure"}), (WRONG_SECRET, {"AuthFailure", "SignatureDoesNotMatch"})]:
        with pytest.raises(botocore.exceptions.ClientError) as e:
            awsctl.boto3_client(imdsd, "ec2", keys=keys).describe_instances()
        code, _, status = awsctl.client_error(e)
        assert code in codes and status in (401, 403), (keys.access_key_id, code, status)


def test_wrong_region_is_refused(imdsd):
    import boto3
    import botocore.config

    client = boto3.session.Session(
        aws_access_key_id=RESTRICTED.access_key_id, aws_secret_access_key=RESTRICTED.secret_access_key,
        region_name="eu-west-1",
    ).client("ec2", endpoint_url=imdsd.control,
             config=botocore.config.Config(retries={"total_max_attempts": 1}))
    with pytest.raises(botocore.exceptions.ClientError) as e:
        client.describe_instances()
    assert awsctl.client_error(e)[0] in ("AuthFailure", "SignatureDoesNotMatch")


def role_keys(doc_response) -> Keys:
    assert doc_response.status == 200, (doc_response.status, doc_response.body)
    doc = doc_response.json()
    assert doc["Code"] == "Success", doc
    return Keys(doc["AccessKeyId"], doc["SecretAccessKey"], doc["Token"])


def test_role_delivery_tells_imdsv1_from_imdsv2_credentials(imdsd, ec2, addresses, aws_home, cli):
    """Role credentials an instance reads from IMDS authenticate to the
    control plane as the role, with ec2:RoleDelivery 2.0 when fetched with
    IMDSv2 and 1.0 with IMDSv1 (docs/protocol/control-plane.md#condition-keys); this role's
    policy refuses 1.0."""
    address = addresses.next()
    awsctl.launch(ec2, address, IamInstanceProfile={"Name": IMDSV2_ONLY_ROLE})
    guest = Guest(imdsd, address)
    path = f"latest/meta-data/iam/security-credentials/{IMDSV2_ONLY_ROLE}"
    v2 = role_keys(guest.v2_get(path))
    v1 = role_keys(guest.get(path))
    assert v1.access_key_id != v2.access_key_id, "IMDSv1 and IMDSv2 callers get different credentials"

    as_v2 = Aws(imdsd, cli.version, aws_home / f"role-v2-{cli.version}", keys=v2)
    answer = as_v2.ok("ec2", "describe-instances", "--filters", f"Name=private-ip-address,Values={address}")
    assert len(answer["Reservations"]) == 1
    as_v2.fails("ec2", "describe-instances", "--dry-run", code="DryRunOperation")

    as_v1 = Aws(imdsd, cli.version, aws_home / f"role-v1-{cli.version}", keys=v1)
    as_v1.fails("ec2", "describe-instances", code="UnauthorizedOperation")
    as_v1.fails("ec2", "describe-instances", "--dry-run", code="UnauthorizedOperation")

    # Without its session token the role's keys are not accepted.
    no_token = Aws(imdsd, cli.version, aws_home / f"role-nt-{cli.version}",
                   keys=Keys(v2.access_key_id, v2.secret_access_key))
    no_token.fails("ec2", "describe-instances", code=("AuthFailure", "UnrecognizedClientException",
                                                      "InvalidClientTokenId"))


def test_the_cli_on_the_demo_instance_uses_its_role(imdsd, aws_home, cli):
    """The AWS CLI's own credential chain on the demo instance (IMDS at the
    data plane, caller 127.0.0.1): the demo role may describe, not modify."""
    on_instance = Aws(imdsd, cli.version, aws_home / f"on-instance-{cli.version}",
                      imds_endpoint=imdsd.data_v4 + "/")  # (CLI v2.9 needs the slash)
    answer = on_instance.ok("ec2", "describe-instances", "--instance-ids", "i-0123456789abcdef0")
    assert answer["Reservations"][0]["Instances"][0]["InstanceId"] == "i-0123456789abcdef0"
    on_instance.fails("ec2", "modify-instance-metadata-options", "--instance-id", "i-0123456789abcdef0",
                      "--http-tokens", "required", code="UnauthorizedOperation")
