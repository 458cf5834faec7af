"""PyPI `ec2-metadata` (3.0.0) against a running `imdsd serve --demo`.

The library hard-codes http://169.254.169.254/latest/ in instance attributes
set by EC2Metadata.__init__ (service_url and the three URLs derived from it);
the tests point those at imdsd and otherwise use the library unchanged. It
always uses IMDSv2 (token PUT, TTL 21600) and raises on any HTTP status >= 400
except the 404s it tolerates, so every property read below is a request
imdsd had to answer correctly.
"""

from __future__ import annotations

import datetime as dt
import re

import pytest
import urllib3
from ec2_metadata import EC2Metadata, NetworkInterface, PublicKey

import demo

NO_TOKEN = "imds_no_token_requests_total"
TOKENS_ISSUED = "imds_tokens_issued_total"


def client_for(base: str) -> EC2Metadata:
    md = EC2Metadata(pool_manager=urllib3.PoolManager())
    md.service_url = f"{base.rstrip('/')}/latest/"
    md.dynamic_url = f"{md.service_url}dynamic/"
    md.metadata_url = f"{md.service_url}meta-data/"
    md.userdata_url = f"{md.service_url}user-data/"
    return md


@pytest.fixture
def md(imdsd):
    return client_for(imdsd.data_v4)


def test_identity(md):
    assert md.instance_id == demo.INSTANCE_ID
    assert md.region == demo.REGION  # from the identity document
    assert md.availability_zone == demo.AZ
    assert re.fullmatch(r"use1-az[0-9]+", md.availability_zone_id), md.availability_zone_id
    assert demo.ACCOUNT_RE.match(md.account_id)
    assert md.ami_id.startswith("ami-")
    assert md.ami_launch_index == 0
    assert md.instance_life_cycle == "on-demand"
    assert md.instance_action == "none"
    assert md.instance_type and "\n" not in md.instance_type
    assert md.reservation_id.startswith("r-")
    assert md.partition == "aws"
    assert md.domain == "amazonaws.com"
    assert md.private_ipv4 == demo.PRIVATE_IPV4
    assert md.security_groups and all(md.security_groups)


def test_absent_categories_are_404_not_errors(md):
    # The library maps these 404s to None; any other status raises.
    assert md.kernel_id is None
    assert md.spot_instance_action is None
    assert md.autoscaling_target_lifecycle_state is None


def test_tags(md):
    assert dict(md.tags) == demo.TAGS


def test_user_data_bytes(md):
    # The library asks for latest/user-data/ (trailing slash).
    assert md.user_data == demo.USER_DATA


def test_iam(md, imdsd):
    info = md.iam_info
    assert info is not None
    assert info["Code"] == "Success"
    assert info["InstanceProfileArn"] == f"arn:aws:iam::{md.account_id}:instance-profile/{demo.PROFILE}"
    assert re.fullmatch(r"AIPA[A-Z0-9]{17}", info["InstanceProfileId"]), info["InstanceProfileId"]
    dt.datetime.strptime(info["LastUpdated"], demo.TIMESTAMP_FMT)
    assert md.instance_profile_name == demo.PROFILE

    creds = md.iam_security_credentials  # GET iam/security-credentials/<profile name>
    assert creds is not None
    assert creds["Code"] == "Success" and creds["Type"] == "AWS-HMAC"
    assert demo.ACCESS_KEY_RE.match(creds["AccessKeyId"])
    assert demo.SECRET_KEY_RE.match(creds["SecretAccessKey"])
    expiration = dt.datetime.strptime(creds["Expiration"], demo.TIMESTAMP_FMT)
    utc_now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    assert expiration > utc_now + dt.timedelta(hours=1), creds["Expiration"]

    # The library is an IMDSv2 caller, so it gets the IMDSv2 set.
    v2 = imdsd.get(f"latest/meta-data/iam/security-credentials/{demo.ROLE}", token=imdsd.token()).json()
    v1 = imdsd.get(f"latest/meta-data/iam/security-credentials/{demo.ROLE}").json()
    assert creds["AccessKeyId"] == v2["AccessKeyId"]
    assert creds["AccessKeyId"] != v1["AccessKeyId"]


def test_public_keys(md):
    # public-keys/ lists "0=demo-key"; the library splits on "=".
    keys = md.public_keys
    assert list(keys) == [demo.KEY_NAME]
    assert keys[demo.KEY_NAME] == PublicKey(0, md)
    openssh = keys[demo.KEY_NAME].openssh_key
    assert openssh is not None
    parts = openssh.split(" ")
    assert parts[0].startswith(("ssh-", "ecdsa-")), openssh
    assert re.fullmatch(r"[A-Za-z0-9+/]+={0,2}", parts[1]), openssh
    assert parts[-1] == demo.KEY_NAME  # docs/protocol/categories.md#public-keys
    assert not openssh.endswith("\n")


def test_network_interfaces(md):
    interfaces = md.network_interfaces
    assert list(interfaces) == [md.mac]
    assert re.fullmatch(r"([0-9a-f]{2}:){5}[0-9a-f]{2}", md.mac), md.mac
    eni = interfaces[md.mac]
    assert eni == NetworkInterface(md.mac, md)
    assert eni.device_number == 0
    assert eni.interface_id.startswith("eni-")
    assert eni.private_ipv4s == [demo.PRIVATE_IPV4]
    assert eni.ipv6s == [demo.IPV6]
    assert eni.owner_id == md.account_id
    assert eni.subnet_id.startswith("subnet-")
    assert eni.vpc_id.startswith("vpc-")
    assert eni.security_groups == md.security_groups
    assert eni.security_group_ids and all(g.startswith("sg-") for g in eni.security_group_ids)
    assert len(eni.security_group_ids) == len(eni.security_groups)
    assert eni.private_hostname == md.private_hostname
    assert eni.subnet_ipv4_cidr_block is not None and "/" in eni.subnet_ipv4_cidr_block
    assert eni.vpc_ipv4_cidr_block in eni.vpc_ipv4_cidr_blocks
    for cidr in eni.subnet_ipv6_cidr_blocks + eni.vpc_ipv6_cidr_blocks:
        assert ":" in cidr and "/" in cidr, cidr
    # Each public IPv4 maps back to the interface's private address, and
    # the instance-level public-ipv4 is the first one of device 0.
    assert eni.ipv4_associations == {ip: [demo.PRIVATE_IPV4] for ip in eni.public_ipv4s}
    if eni.public_ipv4s:
        assert md.public_ipv4 == eni.public_ipv4s[0]
    else:
        assert md.public_ipv4 is None


def test_only_imdsv2_requests(imdsd):
    md = client_for(imdsd.data_v4)
    before = imdsd.metrics()
    assert md.instance_id == demo.INSTANCE_ID
    assert dict(md.tags) == demo.TAGS
    assert md.user_data == demo.USER_DATA
    after = imdsd.metrics()
    assert after.get(TOKENS_ISSUED, 0) == before.get(TOKENS_ISSUED, 0) + 1  # one token, reused
    assert after.get(NO_TOKEN, 0) == before.get(NO_TOKEN, 0)


def test_ipv6_endpoint(imdsd):
    md = client_for(imdsd.data_v6)
    assert md.instance_id == demo.INSTANCE_ID
    assert md.region == demo.REGION
    assert md.user_data == demo.USER_DATA
