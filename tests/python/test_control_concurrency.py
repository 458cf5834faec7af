"""The control plane under concurrent callers (no lost updates, one winner
per address) and across a restart of imdsd on the same data directory
(what was launched and changed is still there, and the data plane serves
it as before), driven with boto3 and the AWS CLI."""

from __future__ import annotations

import concurrent.futures

import botocore.exceptions
import pytest

import awsctl
from awsctl import Aws, Guest
from conftest import start_imdsd

IMAGE = "ami-0abcdef1234567890"
WORKERS = 8


def parallel(calls):
    """Runs the zero-argument callables at once; their results or exceptions."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(calls)) as pool:
        futures = [pool.submit(c) for c in calls]
        out = []
        for f in futures:
            try:
                out.append(f.result(timeout=120))
            except Exception as e:  # noqa: BLE001 (collected for the assertions)
                out.append(e)
        return out


@pytest.fixture(scope="module")
def clients(imdsd):
    """One boto3 client per worker (clients are not shared across threads)."""
    return [awsctl.boto3_client(imdsd, "ec2") for _ in range(WORKERS)]


def test_concurrent_create_tags_lose_nothing(ec2, clients, imdsd, addresses):
    address = addresses.next()
    iid = awsctl.launch(ec2, address, MetadataOptions={"InstanceMetadataTags": "enabled"})["InstanceId"]
    results = parallel([
        (lambda c=c, i=i: c.create_tags(Resources=[iid], Tags=[{"Key": f"k{i}", "Value": f"v{i}"}]))
        for i, c in enumerate(clients)
    ])
    assert not [r for r in results if isinstance(r, Exception)], results
    tags = {t["Key"]: t["Value"] for t in awsctl.describe_one(ec2, iid)["Tags"]}
    assert tags == {f"k{i}": f"v{i}" for i in range(WORKERS)}
    guest = Guest(imdsd, address)
    awsctl.wait_until(
        lambda: sorted(guest.get("latest/meta-data/tags/instance").text.split("\n"))
        == sorted(f"k{i}" for i in range(WORKERS)),
        "every tag is in tags/instance")


def test_concurrent_option_changes_lose_nothing(ec2, clients, imdsd, addresses):
    address = addresses.next()
    iid = awsctl.launch(ec2, address, TagSpecifications=awsctl.tag_spec({"Name": "racy"}))["InstanceId"]
    changes = [
        dict(HttpTokens="required"),
        dict(HttpPutResponseHopLimit=7),
        dict(InstanceMetadataTags="enabled"),
        dict(HttpProtocolIpv6="enabled"),
    ]
    results = parallel([
        (lambda c=c, ch=ch: c.modify_instance_metadata_options(InstanceId=iid, **ch))
        for c, ch in zip(clients, changes)
    ])
    assert not [r for r in results if isinstance(r, Exception)], results
    options = awsctl.wait_applied(ec2, iid)
    assert (options["HttpTokens"], options["HttpPutResponseHopLimit"], options["InstanceMetadataTags"],
            options["HttpProtocolIpv6"]) == ("required", 7, "enabled", "enabled"), options
    guest = Guest(imdsd, address)
    assert guest.get("latest/meta-data/instance-id").status == 401
    assert guest.v2_get("latest/meta-data/tags/instance/Name").text == "racy"


def test_one_address_one_winner(clients, ec2, imdsd, addresses):
    address = addresses.next()
    results = parallel([
        (lambda c=c: c.run_instances(ImageId=IMAGE, MinCount=1, MaxCount=1, PrivateIpAddress=address))
        for c in clients
    ])
    won = [r for r in results if not isinstance(r, Exception)]
    lost = [r for r in results if isinstance(r, Exception)]
    assert len(won) == 1, results
    for e in lost:
        assert isinstance(e, botocore.exceptions.ClientError), e
        assert e.response["Error"]["Code"] == "InvalidIPAddress.InUse", e.response["Error"]
    winner = won[0]["Instances"][0]["InstanceId"]
    awsctl.wait_applied(ec2, winner)
    assert Guest(imdsd, address).get("latest/meta-data/instance-id").text == winner
    owners = ec2.describe_instances(Filters=[{"Name": "private-ip-address", "Values": [address]}])
    assert [i["InstanceId"] for r in owners["Reservations"] for i in r["Instances"]] == [winner]


def test_concurrent_launches_get_distinct_addresses(clients):
    results = parallel([
        (lambda c=c: c.run_instances(ImageId=IMAGE, MinCount=2, MaxCount=2)) for c in clients
    ])
    assert not [r for r in results if isinstance(r, Exception)], results
    addrs = [i["PrivateIpAddress"] for r in results for i in r["Instances"]]
    assert len(addrs) == 2 * WORKERS and len(set(addrs)) == len(addrs), addrs


def test_everything_survives_a_restart(tmp_path, aws_home):
    workdir = tmp_path / "imdsd"
    workdir.mkdir()
    with start_imdsd(workdir=workdir) as first:
        ec2 = awsctl.boto3_client(first)
        running = awsctl.launch(ec2, "127.0.0.20", UserData=b"kept\n",
                                TagSpecifications=awsctl.tag_spec({"Name": "kept"}),
                                MetadataOptions={"InstanceMetadataTags": "enabled"})["InstanceId"]
        ec2.modify_instance_metadata_options(InstanceId=running, HttpTokens="required")
        awsctl.wait_applied(ec2, running)
        stopped = awsctl.launch(ec2, "127.0.0.21")["InstanceId"]
        ec2.stop_instances(InstanceIds=[stopped])
        Guest(first, "127.0.0.21").wait_closed()
        token = Guest(first, "127.0.0.20").token()
        keys = awsctl.demo_keys(first)

    with start_imdsd(workdir=workdir) as second:
        assert awsctl.demo_keys(second) == keys, "the demo key is kept across restarts"
        cli = Aws(second, "v1", aws_home / "restart")
        answer = cli.ok("ec2", "describe-instances", "--instance-ids", running, stopped)
        by_id = {i["InstanceId"]: i for r in answer["Reservations"] for i in r["Instances"]}
        assert by_id[running]["State"]["Name"] == "running"
        assert by_id[stopped]["State"]["Name"] == "stopped"
        ec2 = awsctl.boto3_client(second)
        options = awsctl.wait_applied(ec2, running)
        assert options["HttpTokens"] == "required"

        guest = Guest(second, "127.0.0.20")
        guest.wait_served()
        assert guest.get("latest/meta-data/instance-id").status == 401
        resp = guest.get("latest/meta-data/instance-id", token)
        assert (resp.status, resp.text) == (200, running), "a token from before the restart"
        assert guest.get("latest/user-data", token).body == b"kept\n"
        assert guest.get("latest/meta-data/tags/instance/Name", token).text == "kept"
        assert Guest(second, "127.0.0.21").answer() is None, "the stopped instance stays unreachable"
