"""The Lightsail JSON API (docs/protocol/control-plane.md#lightsail: awsJson 1.1,
UpdateInstanceMetadataOptions, GetInstance/GetInstances metadataOptions)
through the AWS CLI v1/v2 and boto3.

This imdsd's address pool is 127.0.0.0/24 (config `[control] subnet`), so
an instance Lightsail's CreateInstances makes gets an address this machine
can bind, and the tests check the data plane as that instance too.
"""

from __future__ import annotations

import ipaddress
import itertools

import botocore.exceptions
import pytest

import awsctl
from awsctl import Guest
from conftest import start_imdsd

CONFIG = """
[control]
subnet = "127.0.0.0/24"
"""
CREATE = ["--availability-zone", "us-east-1a", "--blueprint-id", "amazon_linux_2023",
          "--bundle-id", "nano_3_0"]
_NAMES = itertools.count(1)
OPTION_KEYS = {"state", "httpTokens", "httpEndpoint", "httpPutResponseHopLimit", "httpProtocolIpv6"}


@pytest.fixture(scope="module")
def imdsd():
    with start_imdsd(CONFIG) as server:
        yield server


@pytest.fixture(scope="module")
def lightsail(imdsd):
    return awsctl.boto3_client(imdsd, "lightsail")


def get_instance(cli, name: str) -> dict:
    return cli.ok("lightsail", "get-instance", "--instance-name", name)["instance"]


def wait_ls_applied(cli, name: str) -> dict:
    def applied():
        options = get_instance(cli, name)["metadataOptions"]
        return options if options["state"] == "applied" else None

    return awsctl.wait_until(applied, f"Lightsail metadataOptions.state of {name} is applied")


@pytest.fixture
def created(cli, imdsd):
    """A Lightsail instance made with `aws lightsail create-instances`,
    answering the data plane at its private address."""
    name = f"ls-{cli.version}-{next(_NAMES)}"
    answer = cli.ok("lightsail", "create-instances", "--instance-names", name, *CREATE)
    ops = answer["operations"]
    assert [(o["resourceName"], o["resourceType"]) for o in ops] == [(name, "Instance")], answer
    assert ops[0]["operationType"] == "CreateInstance", ops
    inst = get_instance(cli, name)
    address = inst["privateIpAddress"]
    assert ipaddress.ip_address(address) in ipaddress.ip_network("127.0.0.0/24"), address
    guest = Guest(imdsd, address)
    guest.wait_served()
    guest.name = name
    return guest


def test_get_instances_answers(cli):
    answer = cli.ok("lightsail", "get-instances")
    assert isinstance(answer["instances"], list), answer


def test_created_instance_has_metadata_options_and_answers(cli, created):
    inst = get_instance(cli, created.name)
    assert inst["name"] == created.name
    options = inst["metadataOptions"]
    assert set(options) == OPTION_KEYS, options  # no instanceMetadataTags in Lightsail
    assert options["httpEndpoint"] == "enabled"
    assert options["httpTokens"] in ("optional", "required")
    names = [i["name"] for i in cli.ok("lightsail", "get-instances")["instances"]]
    assert created.name in names
    resp = created.v2_get("latest/meta-data/local-ipv4")
    assert (resp.status, resp.text) == (200, inst["privateIpAddress"])


def test_update_instance_metadata_options(cli, created):
    name = created.name
    cli.ok("lightsail", "update-instance-metadata-options", "--instance-name", name,
           "--http-tokens", "optional")
    wait_ls_applied(cli, name)
    assert created.get("latest/meta-data/instance-id").status == 200

    answer = cli.ok("lightsail", "update-instance-metadata-options", "--instance-name", name,
                    "--http-tokens", "required", "--http-put-response-hop-limit", "2")
    op = answer["operation"]  # singular, unlike most Lightsail actions
    assert (op["resourceName"], op["resourceType"], op["operationType"]) == \
        (name, "Instance", "UpdateInstanceMetadataOptions"), op
    assert op["status"] in ("NotStarted", "Started", "Succeeded", "Completed"), op
    options = get_instance(cli, name)["metadataOptions"]
    assert (options["httpTokens"], options["httpPutResponseHopLimit"]) == ("required", 2)
    assert options["state"] in ("pending", "applied")
    wait_ls_applied(cli, name)
    assert created.get("latest/meta-data/instance-id").status == 401
    assert created.v2_get("latest/meta-data/instance-id").status == 200

    cli.ok("lightsail", "update-instance-metadata-options", "--instance-name", name,
           "--http-endpoint", "disabled")
    options = wait_ls_applied(cli, name)
    assert (options["httpEndpoint"], options["httpTokens"]) == ("disabled", "required")  # others kept
    assert created.put_token().status == 403


def test_unknown_instance_is_not_found(cli):
    cli.fails("lightsail", "update-instance-metadata-options", "--instance-name", "no-such-instance",
              "--http-tokens", "required", code="NotFoundException")
    cli.fails("lightsail", "get-instance", "--instance-name", "no-such-instance", code="NotFoundException")


def test_invalid_values_are_refused(cli, created):
    cli.fails("lightsail", "update-instance-metadata-options", "--instance-name", created.name,
              "--http-tokens", "maybe", code="InvalidInputException")
    cli.fails("lightsail", "update-instance-metadata-options", "--instance-name", created.name,
              "--http-put-response-hop-limit", "65", code="InvalidInputException")
    assert get_instance(cli, created.name)["metadataOptions"]["httpPutResponseHopLimit"] == 1


def test_boto3_errors_are_http_400(lightsail):
    with pytest.raises(botocore.exceptions.ClientError) as e:
        lightsail.update_instance_metadata_options(instanceName="no-such-instance", httpTokens="required")
    assert awsctl.client_error(e)[0::2] == ("NotFoundException", 400)


def test_ec2_instances_get_addresses_from_the_configured_pool(cli, imdsd, ec2):
    """The same pool serves EC2 launches without an address."""
    inst = cli.ok("ec2", "run-instances", "--image-id", "ami-0abcdef1234567890", "--count", "1")["Instances"][0]
    address = inst["PrivateIpAddress"]
    assert ipaddress.ip_address(address) in ipaddress.ip_network("127.0.0.0/24"), address
    assert address not in ("127.0.0.0", "127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.255"), address
    awsctl.wait_applied(ec2, inst["InstanceId"])
    resp = Guest(imdsd, address).get("latest/meta-data/instance-id")
    assert (resp.status, resp.text) == (200, inst["InstanceId"])
