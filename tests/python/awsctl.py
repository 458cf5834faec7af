"""Drives imdsd's control plane with the real AWS tools: the AWS CLI v1 (the
`awscli` package of this Python, run as `python -m awscli`), Debian's AWS
CLI v2 (/usr/bin/aws) and boto3, plus the instance's side of the story: the
data plane reached from a client socket bound to the instance's 127.0.0.x
address.

Nothing here knows imdsd's internals: the CLI gets the demo's credentials
file and profile exactly as the `try:` line imdsd prints names them, and
every check is on what a user sees (exit status, JSON on stdout, the error
line on stderr, HTTP answers of the data plane).
"""

from __future__ import annotations

import base64
import configparser
import dataclasses
import json
import os
import re
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import pytest

from conftest import ConnectionClosed, Imdsd, Response

CLI_V2_PATH = "/usr/bin/aws"
CLI_VERSIONS = ["v1", "v2"]
CLI_TIMEOUT_S = 120
# How long an accepted change may take to reach the data plane.
APPLY_TIMEOUT_S = 5.0

# "An error occurred (Code) when calling the Operation operation: message"
# (with " (reached max retries: N)" before the colon when retries were on).
ERROR_RE = re.compile(
    r"An error occurred \(([^)]+)\) when calling the (\w+) operation"
    r"(?: \(reached max retries: \d+\))?: (.*)"
)


@dataclasses.dataclass(frozen=True)
class Keys:
    access_key_id: str
    secret_access_key: str
    session_token: str | None = None


def demo_keys(imdsd: Imdsd) -> Keys:
    """The demo key from the credentials file `imdsd serve --demo` wrote."""
    assert imdsd.credentials_file is not None and imdsd.profile, "not a --demo imdsd"
    parser = configparser.ConfigParser()
    parser.read(imdsd.credentials_file)
    section = parser[imdsd.profile]
    return Keys(section["aws_access_key_id"], section["aws_secret_access_key"])


def cli_argv(version: str) -> list[str]:
    if version == "v1":
        return [sys.executable, "-m", "awscli"]
    assert version == "v2", version
    if not os.access(CLI_V2_PATH, os.X_OK):
        reason = (f"{CLI_V2_PATH} (Debian's AWS CLI v2, apt package `awscli`) is not installed")
        if os.environ.get("CI") == "true":
            pytest.fail(reason + "; CI must install it")
        pytest.skip(reason)
    return [CLI_V2_PATH]


@dataclasses.dataclass
class CliResult:
    argv: list[str]
    returncode: int
    stdout: str
    stderr: str

    def describe(self) -> str:
        return (f"$ {' '.join(self.argv)}\nexit status {self.returncode}\n"
                f"stdout:\n{self.stdout}\nstderr:\n{self.stderr}")

    def json(self) -> Any:
        return json.loads(self.stdout) if self.stdout.strip() else {}


class Aws:
    """One AWS CLI (v1 or v2) pointed at one imdsd's control endpoint."""

    def __init__(self, imdsd: Imdsd, version: str, home: Path, keys: Keys | None = None,
                 imds_endpoint: str | None = None):
        """With neither `keys` nor `imds_endpoint` the CLI uses the demo
        profile; with `imds_endpoint` it has no credentials but what its own
        credential chain fetches from that IMDS endpoint."""
        self.imdsd = imdsd
        self.version = version
        self.argv0 = cli_argv(version)
        self.home = home
        self.keys = keys
        self.imds_endpoint = imds_endpoint
        home.mkdir(parents=True, exist_ok=True)
        (home / "config").touch()

    def env(self) -> dict[str, str]:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.home),
            "LC_ALL": "C.UTF-8",
            "AWS_CONFIG_FILE": str(self.home / "config"),
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_PAGER": "",
            # One attempt: a retried error would hide what the server said.
            "AWS_MAX_ATTEMPTS": "1",
            "AWS_RETRY_MODE": "standard",
        }
        if self.imds_endpoint is not None:
            env["AWS_SHARED_CREDENTIALS_FILE"] = str(self.home / "no-credentials")
            del env["AWS_EC2_METADATA_DISABLED"]
            env["AWS_EC2_METADATA_SERVICE_ENDPOINT"] = self.imds_endpoint
        elif self.keys is None:
            env["AWS_SHARED_CREDENTIALS_FILE"] = str(self.imdsd.credentials_file)
        else:
            env["AWS_SHARED_CREDENTIALS_FILE"] = str(self.home / "no-credentials")
            env["AWS_ACCESS_KEY_ID"] = self.keys.access_key_id
            env["AWS_SECRET_ACCESS_KEY"] = self.keys.secret_access_key
            if self.keys.session_token:
                env["AWS_SESSION_TOKEN"] = self.keys.session_token
        return env

    def run(self, *args: str) -> CliResult:
        argv = [*self.argv0]
        if self.keys is None and self.imds_endpoint is None:
            argv += ["--profile", self.imdsd.profile]
        argv += ["--region", self.imdsd.region, "--endpoint-url", self.imdsd.control,
                 "--output", "json", *args]
        proc = subprocess.run(argv, env=self.env(), capture_output=True, text=True,
                              stdin=subprocess.DEVNULL, timeout=CLI_TIMEOUT_S)
        shown = ["aws" if self.version == "v1" else CLI_V2_PATH, *argv[len(self.argv0):]]
        return CliResult(shown, proc.returncode, proc.stdout, proc.stderr)

    def ok(self, *args: str) -> Any:
        """Runs a command that must succeed; its JSON output."""
        r = self.run(*args)
        assert r.returncode == 0, r.describe()
        return r.json()

    def fails(self, *args: str, code: str | tuple[str, ...]) -> str:
        """Runs a command that must fail with the service error `code` (or
        one of several); returns the error message."""
        r = self.run(*args)
        codes = (code,) if isinstance(code, str) else code
        assert r.returncode != 0, f"expected {'/'.join(codes)}, the command succeeded:\n{r.describe()}"
        m = ERROR_RE.search(r.stderr)
        assert m, f"expected {'/'.join(codes)}; no service error on stderr:\n{r.describe()}"
        assert m.group(1) in codes, f"expected {'/'.join(codes)}, got {m.group(1)}:\n{r.describe()}"
        return m.group(3).strip()


def boto3_client(imdsd: Imdsd, service: str = "ec2", keys: Keys | None = None):
    """A boto3 client for `service` on imdsd's control endpoint, reading no
    configuration file, making one attempt per call."""
    import boto3
    import botocore.config
    import botocore.session

    keys = keys or demo_keys(imdsd)
    core = botocore.session.Session()
    core.set_config_variable("config_file", os.devnull)
    core.set_config_variable("credentials_file", os.devnull)
    session = boto3.session.Session(
        aws_access_key_id=keys.access_key_id,
        aws_secret_access_key=keys.secret_access_key,
        region_name=imdsd.region,
        botocore_session=core,
    )
    config = botocore.config.Config(retries={"total_max_attempts": 1}, connect_timeout=10,
                                    read_timeout=60)
    return session.client(service, endpoint_url=imdsd.control, config=config)


def client_error(excinfo) -> tuple[str, str, int]:
    """(code, message, HTTP status) of a botocore ClientError."""
    err = excinfo.value.response
    return err["Error"]["Code"], err["Error"].get("Message", ""), err["ResponseMetadata"]["HTTPStatusCode"]


def wait_until(check: Callable[[], Any], what: str, timeout: float = APPLY_TIMEOUT_S,
               interval: float = 0.05):
    """Polls `check` until it returns something truthy (returned) or
    `timeout` passes (assertion error naming `what` and the last value)."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        last = check()
        if last:
            return last
        if time.monotonic() >= deadline:
            raise AssertionError(f"not within {timeout}s: {what} (last observed: {last!r})")
        time.sleep(interval)


class Guest:
    """The data plane as seen from inside one instance: requests come from
    the instance's private address (a 127.0.0.x the client socket binds)."""

    def __init__(self, imdsd: Imdsd, address: str):
        self.imdsd = imdsd
        self.address = address

    def request(self, method: str, path: str, headers: dict[str, str] | None = None) -> Response:
        return self.imdsd.request_from(self.address, method, path, headers)

    def get(self, path: str, token: str | None = None) -> Response:
        headers = {"X-aws-ec2-metadata-token": token} if token is not None else {}
        return self.request("GET", path, headers)

    def put_token(self, ttl: int = 21600) -> Response:
        return self.request("PUT", "latest/api/token", {"X-aws-ec2-metadata-token-ttl-seconds": str(ttl)})

    def token(self, ttl: int = 21600) -> str:
        resp = self.put_token(ttl)
        assert resp.status == 200, (self.address, resp.status, resp.body)
        return resp.text

    def v2_get(self, path: str) -> Response:
        """GET the way IMDSv2 clients do: a fresh token, then the request."""
        return self.get(path, self.token())

    def answer(self, path: str = "latest/meta-data/instance-id", token: str | None = None):
        """The HTTP answer, or None when the connection is closed unanswered."""
        try:
            return self.get(path, token)
        except ConnectionClosed:
            return None

    def wait_served(self) -> None:
        """Waits until the data plane answers this address at all."""
        wait_until(lambda: self.answer() is not None, f"the data plane answers {self.address}")

    def wait_closed(self) -> None:
        """Waits until the data plane closes connections from this address."""
        wait_until(lambda: self.answer() is None,
                   f"the data plane closes connections from {self.address} unanswered")


class Addresses:
    """Hands out distinct loopback addresses (127.0.0.10 up) for instances
    launched in one imdsd."""

    def __init__(self) -> None:
        self._next = 10

    def next(self) -> str:
        assert self._next < 255, "out of 127.0.0.x addresses"
        address = f"127.0.0.{self._next}"
        self._next += 1
        return address


def describe_one(ec2, instance_id: str) -> dict:
    reservations = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"]
    instances = [i for r in reservations for i in r["Instances"]]
    assert [i["InstanceId"] for i in instances] == [instance_id], reservations
    return instances[0]


def wait_applied(ec2, instance_id: str, timeout: float = APPLY_TIMEOUT_S) -> dict:
    """Polls DescribeInstances until the instance's MetadataOptions say
    `applied`; returns them."""

    def applied():
        options = describe_one(ec2, instance_id)["MetadataOptions"]
        return options if options.get("State") == "applied" else None

    return wait_until(applied, f"MetadataOptions.State of {instance_id} is applied", timeout)


def launch(ec2, address: str | None = None, wait: bool = True, image_id: str = "ami-0abcdef1234567890",
           **params) -> dict:
    """RunInstances with boto3 (setup for tests of other actions): one
    instance, at `address` when given; waits until the data plane serves it
    (its options apply)."""
    if address is not None:
        params["PrivateIpAddress"] = address
    reservation = ec2.run_instances(ImageId=image_id, MinCount=1, MaxCount=1, **params)
    instance = reservation["Instances"][0]
    if wait:
        # `applied` means the data plane has switched to the new instance.
        wait_applied(ec2, instance["InstanceId"])
    return instance


def tag_spec(tags: dict[str, str]) -> list[dict]:
    return [{"ResourceType": "instance", "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}]


def cli_tag_spec(tags: dict[str, str]) -> str:
    inner = ",".join(f"{{Key={k},Value={v}}}" for k, v in tags.items())
    return f"ResourceType=instance,Tags=[{inner}]"


def ssh_ed25519_public_key(seed: bytes, comment: str) -> str:
    """A well-formed OpenSSH ed25519 public key line (its 32 key bytes
    derived from `seed`; nothing is ever signed with it)."""
    import hashlib

    def string(b: bytes) -> bytes:
        return struct.pack(">I", len(b)) + b

    blob = string(b"ssh-ed25519") + string(hashlib.sha256(seed).digest())
    return f"ssh-ed25519 {base64.b64encode(blob).decode()} {comment}"


def imds_tag_key_error(key: str) -> str:
    """The exact InvalidParameterValue message of docs/protocol/categories.md#tags."""
    return (f"'{key}' is not a valid tag key. Tag keys must match pattern "
            r"([0-9a-zA-Z\\-_+=,.@:]{1,255}), and must not be a reserved name ('.', '..', '_index')")
