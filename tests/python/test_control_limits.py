"""The control listener's rate limit and time limits ([control]
requests_per_second / burst / request_timeout_secs /
header_read_timeout_secs), as the AWS CLI, boto3 and a raw TCP client see
them: EC2 answers an empty bucket with RequestLimitExceeded (503),
Lightsail with ThrottlingException (400); buckets are per access key;
they refill; botocore's retries (standard mode, and boto3 as shipped)
get through; a SIGHUP that raises the
limit takes effect; a slow request head is disconnected and a body that
never completes is cut off with a 503.

Each test uses its own access key, so the tests do not share buckets.
"""

from __future__ import annotations

import os
import signal
import socket
import time

import botocore.config
import botocore.exceptions
import pytest

import awsctl
from awsctl import Keys
from conftest import start_imdsd

# One token every 10 s: slow enough that a test drains a bucket (and a CLI
# call that takes a second or two to start still finds it empty) without
# the bucket refilling in between, fast enough to wait for a refill.
RATE = 0.1
BURST = 3
REFILL_S = 1 / RATE
TIMEOUTS_S = 2

KEYS = {name: Keys(f"AKIALIMIT{name.upper():0<11}", f"secret-{name}")
        for name in ("boto", "other", "cli", "ls", "retry", "hup")}


def config(burst: int = BURST) -> str:
    text = (f"[control]\nrequests_per_second = {RATE}\nburst = {burst}\n"
            f"request_timeout_secs = {TIMEOUTS_S}\nheader_read_timeout_secs = {TIMEOUTS_S}\n")
    for k in KEYS.values():
        text += (f"[[control.credentials]]\naccess_key_id = \"{k.access_key_id}\"\n"
                 f"secret_access_key = \"{k.secret_access_key}\"\n")
    return text


@pytest.fixture(scope="module")
def imdsd():
    with start_imdsd(config()) as server:
        yield server


def client(imdsd, service: str, key: str, **retries):
    """boto3's `service` client signing with KEYS[key]: one attempt, or
    botocore's retries as given."""
    if not retries:
        return awsctl.boto3_client(imdsd, service, KEYS[key])
    import boto3
    import botocore.session

    core = botocore.session.Session()
    core.set_config_variable("config_file", os.devnull)
    core.set_config_variable("credentials_file", os.devnull)
    session = boto3.session.Session(
        aws_access_key_id=KEYS[key].access_key_id,
        aws_secret_access_key=KEYS[key].secret_access_key,
        region_name=imdsd.region,
        botocore_session=core,
    )
    config = botocore.config.Config(retries=retries, connect_timeout=10, read_timeout=60)
    return session.client(service, endpoint_url=imdsd.control, config=config)


def drain(call) -> tuple[str, str, int]:
    """Calls until refused; the error (code, message, status)."""
    for _ in range(BURST + 3):
        try:
            call()
        except botocore.exceptions.ClientError as e:
            err = e.response
            return err["Error"]["Code"], err["Error"].get("Message", ""), err["ResponseMetadata"]["HTTPStatusCode"]
    pytest.fail(f"no refusal within {BURST + 3} calls of a bucket of {BURST}")


def test_ec2_key_gets_request_limit_exceeded_and_other_keys_do_not(imdsd):
    ec2 = client(imdsd, "ec2", "boto")
    assert drain(ec2.describe_instances) == ("RequestLimitExceeded", "Request limit exceeded.", 503)
    # Another key has its own bucket.
    client(imdsd, "ec2", "other").describe_instances()
    # After a refill the key works again.
    time.sleep(REFILL_S + 1)
    ec2.describe_instances()
    assert imdsd.metric('imds_control_throttled_total{api="ec2",bucket="credential"}') >= 1
    assert imdsd.metric(
        'imds_control_calls_total{api="ec2",action="DescribeInstances",code="RequestLimitExceeded"}') >= 1


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_aws_cli_reports_the_throttling_errors(imdsd, aws_home, version):
    cli = awsctl.Aws(imdsd, version, aws_home / f"limits-{version}", keys=KEYS["cli"])
    ec2 = client(imdsd, "ec2", "cli")
    drain(ec2.describe_instances)
    # AWS_MAX_ATTEMPTS=1 (awsctl's environment): the CLI shows the error.
    before = imdsd.metric('imds_control_throttled_total{api="ec2",bucket="credential"}')
    message = cli.fails("ec2", "describe-instances", code="RequestLimitExceeded")
    assert message == "Request limit exceeded.", message
    after = imdsd.metric('imds_control_throttled_total{api="ec2",bucket="credential"}')
    assert after - before == 1, f"{after - before} attempts: the CLI retried"
    message = cli.fails("lightsail", "get-instances", code="ThrottlingException")
    assert message == "Rate exceeded", message
    time.sleep(REFILL_S + 1)  # the next parametrization starts full


def test_lightsail_gets_throttling_exception(imdsd):
    ls = client(imdsd, "lightsail", "ls")
    assert drain(ls.get_instances) == ("ThrottlingException", "Rate exceeded", 400)
    assert imdsd.metric('imds_control_throttled_total{api="lightsail",bucket="credential"}') >= 1


def test_botocore_retries_until_the_bucket_refills(imdsd):
    ec2 = client(imdsd, "ec2", "retry")
    drain(ec2.describe_instances)
    before = imdsd.metric('imds_control_throttled_total{api="ec2",bucket="credential"}')
    # Standard mode backs off up to 20 s per attempt: ten attempts outlast a
    # 10-s refill (RequestLimitExceeded is a throttling error to botocore).
    patient = client(imdsd, "ec2", "retry", mode="standard", max_attempts=10)
    patient.describe_instances()
    assert imdsd.metric('imds_control_throttled_total{api="ec2",bucket="credential"}') > before


def raw_connection(imdsd) -> socket.socket:
    host, port = imdsd.control.removeprefix("http://").rstrip("/").rsplit(":", 1)
    return socket.create_connection((host, int(port)), timeout=30)


def closed(sock: socket.socket) -> bytes | None:
    """Everything the server sent before closing; None if it is still open."""
    got = b""
    sock.settimeout(0.2)
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return got
            got += chunk
    except socket.timeout:
        return None
    except ConnectionError:
        return got


def test_a_slow_request_head_is_disconnected(imdsd):
    head = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n\r\n"
    with raw_connection(imdsd) as sock:
        started = time.monotonic()
        for i, byte in enumerate(head):
            try:
                sock.sendall(bytes([byte]))
            except OSError:
                break
            if closed(sock) is not None:
                break
            time.sleep(1)
        else:
            pytest.fail("the whole head went through one byte a second without a disconnect")
        assert i < len(head) - 1
        assert time.monotonic() - started < 30


def test_a_body_that_never_completes_is_cut_off(imdsd):
    with raw_connection(imdsd) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n"
                     b"Content-Length: 1000\r\n\r\nAction=DescribeInstances")
        deadline = time.monotonic() + 30
        answer = None
        while answer is None and time.monotonic() < deadline:
            answer = closed(sock)
        assert answer is not None, "the connection stayed open"
    text = answer.decode()
    assert text.startswith("HTTP/1.1 503"), text
    assert "connection: close" in text.lower(), text
    assert "<Code>ServiceUnavailable</Code>" in text, text


def test_sighup_raising_the_limit_takes_effect(imdsd):
    ec2 = client(imdsd, "ec2", "hup")
    drain(ec2.describe_instances)
    (imdsd.data_dir.parent / "imdsd.toml").write_text(config(burst=50))
    imdsd.proc.send_signal(signal.SIGHUP)
    awsctl.wait_until(lambda: "control-plane limits in force" in imdsd.stderr(),
                      "imdsd applies the reloaded control-plane limits", timeout=30)
    for _ in range(20):
        ec2.describe_instances()


def test_default_boto3_retries_get_through(aws_home):
    """boto3 as shipped (legacy retry mode, 5 attempts, no Config): its
    retries of RequestLimitExceeded outlast a half-second refill."""
    import boto3
    import botocore.session

    key = KEYS["retry"]
    text = (f"[control]\nrequests_per_second = 2\nburst = 1\n"
            f"[[control.credentials]]\naccess_key_id = \"{key.access_key_id}\"\n"
            f"secret_access_key = \"{key.secret_access_key}\"\n")
    with start_imdsd(text, demo=False) as server:
        core = botocore.session.Session()
        core.set_config_variable("config_file", os.devnull)
        core.set_config_variable("credentials_file", os.devnull)
        default = boto3.session.Session(
            aws_access_key_id=key.access_key_id, aws_secret_access_key=key.secret_access_key,
            region_name="us-east-1", botocore_session=core,
        ).client("ec2", endpoint_url=server.control)
        once = awsctl.boto3_client(server, "ec2", key)
        series = 'imds_control_throttled_total{api="ec2",bucket="credential"}'
        # Drain the bucket of 1, then call at once: the first attempt is
        # refused, a retry gets the refilled token.
        before = server.metric(series)
        refused_at = None
        for _ in range(5):
            try:
                once.describe_instances()
            except botocore.exceptions.ClientError:
                refused_at = time.monotonic()
                break
        assert refused_at is not None
        gap = time.monotonic() - refused_at
        default.describe_instances()
        if gap < 0.3:  # the first attempt came well before the refill
            assert server.metric(series) - before >= 2, "the default client was refused, then retried"
