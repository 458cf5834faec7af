"""Stop/Start/TerminateInstances and the userData attribute through the AWS
CLI v1/v2 and boto3 (docs/protocol/control-plane.md#lifecycle,
docs/protocol/control-plane.md#user-data-attribute): a stopped or terminated
instance's address gets no HTTP answer from the data plane, a started one
is a new incarnation (old tokens are refused), and user data changed while
stopped is served after the start."""

from __future__ import annotations

import base64
import datetime as dt

import pytest

import awsctl
from awsctl import Guest

OLD_USER_DATA = b"#!/bin/sh\necho old\n"
NEW_USER_DATA = b"#!/bin/sh\necho new \xe2\x9c\x93\n"


@pytest.fixture
def guest(imdsd, ec2, addresses):
    """A fresh running instance with user data, at its own 127.0.0.x."""
    address = addresses.next()
    inst = awsctl.launch(ec2, address, UserData=OLD_USER_DATA)
    g = Guest(imdsd, address)
    g.instance_id = inst["InstanceId"]
    return g


def state_change(answer: dict, key: str, instance_id: str) -> tuple[str, str]:
    changes = answer[key]
    assert [c["InstanceId"] for c in changes] == [instance_id], answer
    return changes[0]["PreviousState"]["Name"], changes[0]["CurrentState"]["Name"]


def state_of(ec2, instance_id: str) -> str:
    return awsctl.describe_one(ec2, instance_id)["State"]["Name"]


def test_stop_closes_the_data_plane_and_start_is_a_new_incarnation(cli, ec2, guest):
    iid = guest.instance_id
    token = guest.token()
    assert guest.get("latest/meta-data/instance-id", token).text == iid

    answer = cli.ok("ec2", "stop-instances", "--instance-ids", iid)
    previous, current = state_change(answer, "StoppingInstances", iid)
    assert previous == "running" and current in ("stopping", "stopped"), answer
    guest.wait_closed()
    assert state_of(ec2, iid) == "stopped"
    # Stopping a stopped instance is no error and changes nothing.
    assert state_change(cli.ok("ec2", "stop-instances", "--instance-ids", iid),
                        "StoppingInstances", iid) == ("stopped", "stopped")

    answer = cli.ok("ec2", "start-instances", "--instance-ids", iid)
    previous, current = state_change(answer, "StartingInstances", iid)
    assert previous == "stopped" and current in ("pending", "running"), answer
    guest.wait_served()
    assert state_of(ec2, iid) == "running"

    # Starting a running instance is no error and changes nothing.
    assert state_change(cli.ok("ec2", "start-instances", "--instance-ids", iid),
                        "StartingInstances", iid) == ("running", "running")

    stale = guest.get("latest/meta-data/instance-id", token)
    assert stale.status == 401, ("a token from before the stop", stale.status, stale.body)
    resp = guest.v2_get("latest/meta-data/instance-id")
    assert (resp.status, resp.text) == (200, iid)
    assert guest.get("latest/user-data").body == OLD_USER_DATA


def test_options_changed_while_stopped_apply_at_start(cli, ec2, guest):
    iid = guest.instance_id
    cli.ok("ec2", "stop-instances", "--instance-ids", iid)
    guest.wait_closed()
    options = cli.ok("ec2", "modify-instance-metadata-options", "--instance-id", iid,
                     "--http-tokens", "required")["InstanceMetadataOptions"]
    assert options["HttpTokens"] == "required"
    assert awsctl.wait_applied(ec2, iid)["HttpTokens"] == "required"
    assert guest.answer() is None, "a stopped instance stays unreachable"
    cli.ok("ec2", "start-instances", "--instance-ids", iid)
    guest.wait_served()
    assert guest.get("latest/meta-data/instance-id").status == 401
    assert guest.v2_get("latest/meta-data/instance-id").text == iid


def test_user_data_can_only_change_while_stopped(cli, ec2, guest):
    iid = guest.instance_id
    new_b64 = base64.b64encode(NEW_USER_DATA).decode()

    message = cli.fails("ec2", "modify-instance-attribute", "--instance-id", iid,
                        "--attribute", "userData", "--value", new_b64, code="IncorrectInstanceState")
    assert iid in message and "stopped" in message, message
    assert guest.get("latest/user-data").body == OLD_USER_DATA

    cli.ok("ec2", "stop-instances", "--instance-ids", iid)
    guest.wait_closed()
    assert cli.run("ec2", "modify-instance-attribute", "--instance-id", iid, "--attribute", "userData",
                   "--value", new_b64).returncode == 0
    attr = cli.ok("ec2", "describe-instance-attribute", "--instance-id", iid, "--attribute", "userData")
    assert attr["InstanceId"] == iid
    assert attr["UserData"]["Value"] == new_b64

    cli.ok("ec2", "start-instances", "--instance-ids", iid)
    guest.wait_served()
    resp = guest.get("latest/user-data")
    assert (resp.status, resp.body) == (200, NEW_USER_DATA)


def test_boto3_user_data_value_form(ec2, guest):
    """boto3's UserData={'Value': bytes} (wire UserData.Value, base64 by botocore)."""
    iid = guest.instance_id
    ec2.stop_instances(InstanceIds=[iid])
    guest.wait_closed()
    ec2.modify_instance_attribute(InstanceId=iid, UserData={"Value": NEW_USER_DATA})
    attr = ec2.describe_instance_attribute(InstanceId=iid, Attribute="userData")
    assert base64.b64decode(attr["UserData"]["Value"]) == NEW_USER_DATA
    ec2.start_instances(InstanceIds=[iid])
    guest.wait_served()
    assert guest.get("latest/user-data").body == NEW_USER_DATA


def test_describe_user_data_of_an_instance_without_any(cli, ec2):
    inst = awsctl.launch(ec2, wait=False)
    attr = cli.ok("ec2", "describe-instance-attribute", "--instance-id", inst["InstanceId"],
                  "--attribute", "userData")
    assert attr["InstanceId"] == inst["InstanceId"]
    assert not attr.get("UserData", {}).get("Value"), attr


def test_terminate(cli, ec2, guest, addresses):
    iid = guest.instance_id
    answer = cli.ok("ec2", "terminate-instances", "--instance-ids", iid)
    previous, current = state_change(answer, "TerminatingInstances", iid)
    assert previous == "running" and current in ("shutting-down", "terminated"), answer
    guest.wait_closed()
    assert state_of(ec2, iid) == "terminated"

    message = cli.fails("ec2", "start-instances", "--instance-ids", iid, code="IncorrectInstanceState")
    assert iid in message
    cli.fails("ec2", "modify-instance-metadata-options", "--instance-id", iid, "--http-tokens", "required",
              code="InvalidInstanceID.NotFound")

    # Its address is free again: a new instance gets it and answers there.
    inst = awsctl.launch(ec2, guest.address)
    assert guest.v2_get("latest/meta-data/instance-id").text == inst["InstanceId"]


def test_unknown_and_malformed_ids(cli):
    cli.fails("ec2", "stop-instances", "--instance-ids", "i-0000000000000000f",
              code="InvalidInstanceID.NotFound")
    cli.fails("ec2", "start-instances", "--instance-ids", "i-bad", code="InvalidInstanceID.Malformed")


def test_stop_dry_run_changes_nothing(cli, ec2, guest):
    cli.fails("ec2", "stop-instances", "--instance-ids", guest.instance_id, "--dry-run",
              code="DryRunOperation")
    assert state_of(ec2, guest.instance_id) == "running"
    assert guest.answer() is not None


def test_start_regenerates_the_identity_document(ec2, guest):
    """docs/protocol/control-plane.md#lifecycle: on start the identity document is regenerated; its
    pendingTime is the instance's LaunchTime (docs/protocol/control-plane.md#describe-instances)."""
    iid = guest.instance_id

    def pending_time() -> dt.datetime:
        doc = guest.v2_get("latest/dynamic/instance-identity/document").json()
        return dt.datetime.strptime(doc["pendingTime"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.timezone.utc)

    before = awsctl.describe_one(ec2, iid)["LaunchTime"]
    assert pending_time() == before.replace(microsecond=0)
    ec2.stop_instances(InstanceIds=[iid])
    guest.wait_closed()
    ec2.start_instances(InstanceIds=[iid])
    guest.wait_served()
    after = awsctl.describe_one(ec2, iid)["LaunchTime"]
    assert after >= before
    assert pending_time() == after.replace(microsecond=0)


def test_user_data_attribute_validation(cli, ec2, guest):
    iid = guest.instance_id
    ec2.stop_instances(InstanceIds=[iid])
    guest.wait_closed()
    message = cli.fails("ec2", "modify-instance-attribute", "--instance-id", iid, "--attribute", "userData",
                        "--value", "not base64!", code="InvalidParameterValue")
    assert message == "Invalid BASE64 encoding of user data"
    too_big = base64.b64encode(b"x" * 16385).decode()
    message = cli.fails("ec2", "modify-instance-attribute", "--instance-id", iid, "--attribute", "userData",
                        "--value", too_big, code="InvalidParameterValue")
    assert message == "User data is limited to 16384 bytes"
    attr = cli.ok("ec2", "describe-instance-attribute", "--instance-id", iid, "--attribute", "userData")
    assert base64.b64decode(attr["UserData"]["Value"]) == OLD_USER_DATA
    cli.fails("ec2", "describe-instance-attribute", "--instance-id", "i-0000000000000000f",
              "--attribute", "userData", code="InvalidInstanceID.NotFound")


def test_terminated_instances_are_still_described(cli, ec2, guest):
    iid = guest.instance_id
    ec2.terminate_instances(InstanceIds=[iid])
    answer = cli.ok("ec2", "describe-instances", "--filters", "Name=instance-state-name,Values=terminated")
    ids = [i["InstanceId"] for r in answer["Reservations"] for i in r["Instances"]]
    assert iid in ids


def test_user_data_structure_form_of_the_cli(cli, ec2, guest):
    """`modify-instance-attribute --user-data Value=…` (wire UserData.Value):
    the CLI v1 base64-encodes the text it is given, the CLI v2 expects
    base64 (its default cli_binary_format) — either way the instance gets
    the same bytes."""
    iid = guest.instance_id
    text = "#!/bin/sh\necho structure-form"  # (the CLI's shorthand parser strips trailing whitespace)
    value = text if cli.version == "v1" else base64.b64encode(text.encode()).decode()
    cli.fails("ec2", "modify-instance-attribute", "--instance-id", iid, "--user-data", f"Value={value}",
              code="IncorrectInstanceState")
    cli.ok("ec2", "stop-instances", "--instance-ids", iid)
    guest.wait_closed()
    r = cli.run("ec2", "modify-instance-attribute", "--instance-id", iid, "--user-data", f"Value={value}")
    assert r.returncode == 0, r.describe()
    cli.ok("ec2", "start-instances", "--instance-ids", iid)
    guest.wait_served()
    assert guest.get("latest/user-data").body == text.encode()
