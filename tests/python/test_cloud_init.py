"""cloud-init's real EC2 datasource crawling a running `imdsd serve --demo`.

cloud-init is the strictest IMDS client: it follows every entry of every
listing under meta-data/ and drops the whole crawl (no datasource, no
network config, no SSH keys) if a single listed entry does not answer 200.
It is not on PyPI; Debian's `cloud-init` package installs it for Debian's
/usr/bin/python3, so the crawl runs in a subprocess (cloudinit_crawl.py).
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
from pathlib import Path

import pytest

import demo

HERE = Path(__file__).resolve().parent
DEBIAN_PYTHON = os.environ.get("CLOUD_INIT_PYTHON", "/usr/bin/python3")
CLEAN_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}
TOKENS_ISSUED = "imds_tokens_issued_total"
NO_TOKEN = "imds_no_token_requests_total"


def _cloud_init_importable() -> str | None:
    """None if Debian's cloud-init can be imported, else why not."""
    if not os.access(DEBIAN_PYTHON, os.X_OK):
        return f"{DEBIAN_PYTHON} does not exist"
    probe = subprocess.run(
        [DEBIAN_PYTHON, "-c",
         "import cloudinit.sources.DataSourceEc2, cloudinit.sources.helpers.ec2"],
        env=CLEAN_ENV, capture_output=True, text=True, timeout=60,
    )
    if probe.returncode != 0:
        return probe.stderr.strip().splitlines()[-1] if probe.stderr.strip() else "import failed"
    return None


_missing = _cloud_init_importable()
if _missing is not None:
    _reason = (f"cloud-init is not importable by {DEBIAN_PYTHON} ({_missing}); "
               "install it with: apt-get install -y --no-install-recommends cloud-init")
    if os.environ.get("CI") == "true":
        # .ci/run installs it: missing there is a broken CI setup, not a skip.
        pytest.fail(_reason, pytrace=False)
    pytest.skip(_reason, allow_module_level=True)


@pytest.fixture(scope="module")
def crawl(imdsd):
    """One real crawl; returns (result, stderr log, metrics before, after)."""
    before = imdsd.metrics()
    proc = subprocess.run(
        [DEBIAN_PYTHON, str(HERE / "cloudinit_crawl.py"), imdsd.data_v4],
        env=CLEAN_ENV, capture_output=True, text=True, timeout=600,
    )
    after = imdsd.metrics()
    assert proc.returncode == 0, f"crawler failed ({proc.returncode}):\n{proc.stderr[-20000:]}"
    return json.loads(proc.stdout), proc.stderr, before, after


def _problems(log: str) -> str:
    """The lines of cloud-init's log that say what went wrong."""
    lines = [line for line in log.splitlines()
             if line.startswith(("WARNING", "ERROR", "CRITICAL")) or "Error:" in line]
    return "\n".join(lines[-60:]) or log[-8000:]


def test_crawl_succeeds_on_the_newest_version(crawl):
    out, log, _, _ = crawl
    # cloud-init probes 2021-03-23 first (tags support) and uses it if it answers.
    assert out["api_version"] == "2021-03-23", _problems(log)
    assert out["meta_data"], "cloud-init's crawl of meta-data/ failed:\n" + _problems(log)
    assert out["meta_data"]["instance-id"] == demo.INSTANCE_ID


def test_crawl_contents(crawl):
    out, log, _, _ = crawl
    md = out["meta_data"]
    assert md, _problems(log)

    assert md["placement"]["availability-zone"] == demo.AZ
    assert md["placement"]["region"] == demo.REGION
    assert md["local-ipv4"] == demo.PRIVATE_IPV4
    assert md["services"] == {"domain": "amazonaws.com", "partition": "aws"}
    assert "ami" in md["block-device-mapping"] and "root" in md["block-device-mapping"]

    # What cloud-init renders the network configuration from.
    mac = md["mac"]
    macs = md["network"]["interfaces"]["macs"]
    assert list(macs) == [mac]
    eni = macs[mac]
    assert eni["device-number"] == "0"
    assert eni["local-ipv4s"] == demo.PRIVATE_IPV4  # one value: a string
    assert eni["ipv6s"] == demo.IPV6
    assert eni["mac"] == mac
    assert "subnet-ipv4-cidr-block" in eni

    # public-keys/ lists "0=demo-key"; cloud-init turns it into 0/openssh-key.
    assert list(md["public-keys"]) == [demo.KEY_NAME]
    key = md["public-keys"][demo.KEY_NAME]
    assert key.startswith("ssh-") and key.endswith(" " + demo.KEY_NAME), key
    assert out["public_ssh_keys"] == [key]

    assert md["tags"] == {"instance": demo.TAGS}

    # The role is visible, its credentials are skipped by cloud-init.
    assert md["iam"]["info"]["InstanceProfileArn"].endswith(f":instance-profile/{demo.PROFILE}")
    assert "security-credentials" not in md["iam"]
    assert md["identity-credentials"]["ec2"]["info"]["Code"] == "Success"


def test_user_data_bytes(crawl):
    out, log, _, _ = crawl
    assert out["user_data_b64"] is not None, _problems(log)
    assert base64.b64decode(out["user_data_b64"]) == demo.USER_DATA


def test_instance_identity(crawl):
    out, log, _, _ = crawl
    identity = (out["dynamic"] or {}).get("instance-identity") or {}
    assert identity, "cloud-init's crawl of dynamic/instance-identity failed:\n" + _problems(log)
    doc = identity["document"]  # parsed as JSON by cloud-init's leaf decoder
    assert doc["instanceId"] == demo.INSTANCE_ID
    assert doc["region"] == demo.REGION
    assert doc["privateIp"] == demo.PRIVATE_IPV4


def test_instance_identity_signatures(crawl):
    # docs/protocol/categories.md#dynamic: dynamic/instance-identity/ lists document, pkcs7,
    # rsa2048 and signature (base64, 76-column lines); cloud-init fetches
    # every listed entry, and tools that verify the document need them.
    out, log, _, _ = crawl
    identity = (out["dynamic"] or {}).get("instance-identity") or {}
    assert identity, _problems(log)
    assert sorted(identity) == ["document", "pkcs7", "rsa2048", "signature"], sorted(identity)
    for name in ("pkcs7", "rsa2048", "signature"):
        value = identity[name]
        # The leaf decoder returns one string, or a list of lines.
        lines = value if isinstance(value, list) else [value]
        assert lines and all(0 < len(line) <= 76 for line in lines), (name, value)
        base64.b64decode("".join(lines), validate=True)


def test_min_version_fallback_tree(crawl):
    out, log, _, _ = crawl
    md = out["min_version_meta_data"]
    assert md, "crawl of /2009-04-04/meta-data/ failed:\n" + _problems(log)
    assert md["instance-id"] == demo.INSTANCE_ID
    assert list(md["public-keys"]) == [demo.KEY_NAME]


def test_crawl_used_one_imdsv2_token_and_no_imdsv1(crawl):
    out, log, before, after = crawl
    assert out["meta_data"], _problems(log)
    # One PUT at start; a 401 anywhere would have made cloud-init fetch more.
    assert after.get(TOKENS_ISSUED, 0) - before.get(TOKENS_ISSUED, 0) == 1, _problems(log)
    assert after.get(NO_TOKEN, 0) == before.get(NO_TOKEN, 0)
    # Every request of the crawl was answered 200: no 401 (token trouble),
    # no 404 (a listed entry that does not exist), nothing else.
    not_ok = {
        series: value - before.get(series, 0)
        for series, value in after.items()
        if series.startswith("imds_requests_total{") and 'status="200"' not in series
        and value != before.get(series, 0)
    }
    assert not not_ok, not_ok
