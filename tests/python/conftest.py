"""Starts a real `imdsd serve --demo` for the Python client tests.

The binary comes from $IMDSD_BIN (scripts/test passes target/debug/imdsd).
Each test module gets its own process and a fresh data directory, on
ephemeral ports, IPv4 and IPv6 loopback; the URLs are parsed from the
"listening ..." lines imdsd prints on standard output once it serves, and
the demo's AWS CLI profile from its "try: AWS_SHARED_CREDENTIALS_FILE=..."
line. `start_imdsd` starts further instances (e.g. with a --config file)
for tests that need their own.
"""

from __future__ import annotations

import contextlib
import dataclasses
import http.client
import json
import os
import queue
import re
import signal
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

START_TIMEOUT_S = 60.0
LISTEN_RE = re.compile(r"^listening (data|admin|control) (http://\S+)$")
# The --demo hint: which credentials file, profile and region the AWS CLI uses.
TRY_RE = re.compile(
    r"^try: AWS_SHARED_CREDENTIALS_FILE=(\S+) aws --profile (\S+) --region (\S+) "
    r"--endpoint-url (http://\S+) "
)

# Variables that would change what the clients do (proxies, AWS settings).
_SCRUBBED_ENV_PREFIXES = ("AWS_",)
_SCRUBBED_ENV = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")


def _opener() -> urllib.request.OpenerDirector:
    # Never send loopback traffic through a proxy from the environment.
    return urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclasses.dataclass
class Response:
    status: int
    headers: dict[str, str]  # lower-cased names
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8")

    def json(self):
        return json.loads(self.body)


class ConnectionClosed(Exception):
    """The server closed the connection without an HTTP answer (what the data
    plane does for a caller that is no running instance)."""


@dataclasses.dataclass
class Imdsd:
    """A running imdsd: its URLs and small raw-HTTP helpers (urllib)."""

    proc: subprocess.Popen
    data_dir: Path
    stderr_path: Path
    data_v4: str  # http://127.0.0.1:PORT
    data_v6: str  # http://[::1]:PORT
    admin: str  # http://127.0.0.1:PORT
    control: str | None = None  # http://127.0.0.1:PORT (EC2 Query / Lightsail API)
    credentials_file: Path | None = None  # the --demo AWS shared-credentials file
    profile: str | None = None  # its profile (imdsd-demo)
    region: str = "us-east-1"

    def stderr(self) -> str:
        try:
            return self.stderr_path.read_text(errors="replace")
        except OSError:
            return ""

    def request(
        self,
        method: str,
        path: str,
        headers: dict[str, str] | None = None,
        base: str | None = None,
    ) -> Response:
        url = (base or self.data_v4).rstrip("/") + "/" + path.lstrip("/")
        req = urllib.request.Request(url, method=method, headers=headers or {})
        if method == "PUT":
            req.data = b""
        try:
            with _opener().open(req, timeout=10) as resp:
                return Response(
                    resp.status,
                    {k.lower(): v for k, v in resp.headers.items()},
                    resp.read(),
                )
        except urllib.error.HTTPError as e:
            return Response(
                e.code, {k.lower(): v for k, v in e.headers.items()}, e.read()
            )

    def get(self, path: str, token: str | None = None, base: str | None = None) -> Response:
        headers = {"X-aws-ec2-metadata-token": token} if token is not None else {}
        return self.request("GET", path, headers, base)

    def request_from(
        self,
        source: str,
        method: str,
        path: str,
        headers: dict[str, str] | None = None,
        timeout: float = 10,
    ) -> Response:
        """One request to the data plane from a client socket bound to
        `source` (any 127.0.0.0/8 address on Linux, or ::1 for the IPv6
        listener), i.e. as the instance that owns that address. Raises
        ConnectionClosed when the server closes the connection without
        answering."""
        url = urllib.parse.urlsplit(self.data_v6 if ":" in source else self.data_v4)
        conn = http.client.HTTPConnection(
            url.hostname, url.port, timeout=timeout, source_address=(source, 0)
        )
        try:
            try:
                conn.request(method, "/" + path.lstrip("/"), body=b"" if method == "PUT" else None,
                             headers=headers or {})
                resp = conn.getresponse()
                body = resp.read()
            except (http.client.RemoteDisconnected, ConnectionResetError,
                    ConnectionAbortedError, BrokenPipeError) as e:
                raise ConnectionClosed(f"{method} /{path.lstrip('/')} from {source}: {e!r}") from e
            return Response(resp.status, {k.lower(): v for k, v in resp.getheaders()}, body)
        finally:
            conn.close()

    def token(self, ttl: int = 21600, base: str | None = None) -> str:
        """PUT /latest/api/token the way the AWS docs show it."""
        resp = self.request(
            "PUT",
            "latest/api/token",
            {"X-aws-ec2-metadata-token-ttl-seconds": str(ttl)},
            base,
        )
        assert resp.status == 200, (resp.status, resp.body)
        assert resp.headers.get("x-aws-ec2-metadata-token-ttl-seconds") == str(ttl), resp.headers
        return resp.text

    def metrics(self) -> dict[str, float]:
        """The admin /metrics (Prometheus text) as {series: value}; a series is
        the metric name plus its label set exactly as printed."""
        with _opener().open(self.admin.rstrip("/") + "/metrics", timeout=10) as resp:
            assert resp.status == 200
            text = resp.read().decode("utf-8")
        out: dict[str, float] = {}
        for line in text.splitlines():
            if not line or line.startswith("#"):
                continue
            series, _, value = line.rpartition(" ")
            out[series] = float(value)
        return out

    def metric(self, series: str) -> float:
        """One series' value; an unlabelled counter never incremented may be
        printed as 0 or be absent, both read as 0."""
        return self.metrics().get(series, 0.0)


def _start_imdsd(tmp: Path, config: Path | None = None, demo: bool = True) -> Imdsd:
    binary = os.environ.get("IMDSD_BIN")
    if not binary:
        pytest.fail("IMDSD_BIN is not set: build with `cargo build --bin imdsd` and "
                    "run IMDSD_BIN=$PWD/target/debug/imdsd python3 -m pytest tests/python")
    if not os.access(binary, os.X_OK):
        pytest.fail(f"IMDSD_BIN={binary} is not an executable file")

    data_dir = tmp / "data"
    stderr_path = tmp / "imdsd.stderr"
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMDSD_")}
    env.setdefault("IMDSD_LOG", "info")
    argv = [
        binary, "serve",
        *(["--demo"] if demo else []),
        *(["--config", str(config)] if config is not None else []),
        "--data-dir", str(data_dir),
        "--data-listen", "127.0.0.1:0",
        "--data-listen", "[::1]:0",
        # Never the default 8773: parallel runs would collide.
        "--control-listen", "127.0.0.1:0",
        "--admin-listen", "127.0.0.1:0",
    ]
    stderr_file = open(stderr_path, "wb")
    proc = subprocess.Popen(
        argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=stderr_file, env=env, start_new_session=True,
    )
    stderr_file.close()

    # Read stdout on a thread (keeps draining it for the process's life, so a
    # later line can never block imdsd on a full pipe).
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            lines.put(raw.decode("utf-8", "replace").rstrip("\r\n"))
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()

    data: list[str] = []
    admin: str | None = None
    control: str | None = None
    hint: re.Match | None = None
    deadline = time.monotonic() + START_TIMEOUT_S
    try:
        while admin is None or control is None or len(data) < 2 or (demo and hint is None):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise RuntimeError(f"imdsd printed no listening lines within {START_TIMEOUT_S}s")
            try:
                line = lines.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                raise RuntimeError(f"imdsd exited with status {proc.wait()} before it was ready")
            if demo and (t := TRY_RE.match(line)):
                hint = t
                continue
            m = LISTEN_RE.match(line)
            if not m:
                continue
            if m.group(1) == "admin":
                admin = m.group(2)
            elif m.group(1) == "control":
                control = m.group(2)
            else:
                data.append(m.group(2))
    except RuntimeError as e:
        _stop(proc)
        pytest.fail(f"{e}\nargv: {argv}\nstderr:\n{stderr_path.read_text(errors='replace')}")

    v4 = [u for u in data if "[" not in u]
    v6 = [u for u in data if "[" in u]
    assert len(v4) == 1 and len(v6) == 1, f"expected one IPv4 and one IPv6 data listener, got {data}"
    assert v6[0].startswith("http://[::1]:"), v6
    assert v4[0].startswith("http://127.0.0.1:"), v4
    server = Imdsd(proc, data_dir, stderr_path, v4[0], v6[0], admin, control)
    if hint is not None:
        assert hint.group(4) == control, (hint.group(0), control)
        server.credentials_file = Path(hint.group(1))
        server.profile = hint.group(2)
        server.region = hint.group(3)
    return server


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=15)


@contextlib.contextmanager
def start_imdsd(config_text: str | None = None, files: dict[str, str] | None = None,
                demo: bool = True, workdir: Path | None = None):
    """A fresh `imdsd serve [--demo]` in its own temporary directory, with an
    optional TOML config file (`config_text`) and files beside it (`files`,
    name -> text, e.g. IAM policy documents the config names); stopped on
    exit, whatever happened. Fails if imdsd died meanwhile. With `workdir`
    the data directory is workdir/data and is kept, so a second start on the
    same workdir is a restart of the same imdsd."""
    with contextlib.ExitStack() as stack:
        if workdir is None:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="imdsd-pytest-")))
        tmp_path = workdir
        config = None
        for name, text in (files or {}).items():
            (tmp_path / name).write_text(text)
        if config_text is not None:
            config = tmp_path / "imdsd.toml"
            config.write_text(config_text)
        server = _start_imdsd(tmp_path, config=config, demo=demo)
        try:
            yield server
        finally:
            crashed = server.proc.poll()
            _stop(server.proc)
        # A server that died under the clients is a failure of its own, even
        # when every assertion above happened to pass.
        assert crashed is None, (
            f"imdsd exited with status {crashed} during the tests; stderr:\n{server.stderr()}"
        )


@pytest.fixture(scope="module")
def imdsd():
    """A fresh `imdsd serve --demo` for one test module; stopped afterwards,
    whatever the tests did."""
    with start_imdsd() as server:
        yield server


@pytest.fixture(autouse=True)
def _clean_client_env(monkeypatch):
    """Client libraries read AWS_* and proxy variables; the tests must not
    depend on the caller's environment."""
    for name in list(os.environ):
        if name.startswith(_SCRUBBED_ENV_PREFIXES) or name.lower() in _SCRUBBED_ENV:
            monkeypatch.delenv(name, raising=False)


# --- Control-plane fixtures (tests/python/test_control_*.py). They use the
# `imdsd` fixture in scope, so a module that overrides `imdsd` (e.g. with a
# --config file) gets clients of its own server.


@pytest.fixture(scope="module")
def aws_home(tmp_path_factory):
    """An empty HOME / AWS config for the AWS CLI, one per module."""
    return tmp_path_factory.mktemp("aws-home")


@pytest.fixture(scope="module")
def ec2(imdsd):
    """boto3's EC2 client on the module's imdsd, with the demo key."""
    import awsctl

    return awsctl.boto3_client(imdsd, "ec2")


@pytest.fixture(scope="module")
def addresses():
    """Distinct 127.0.0.x addresses for instances launched in this module."""
    import awsctl

    return awsctl.Addresses()


@pytest.fixture(params=["v1", "v2"])
def cli(request, imdsd, aws_home):
    """The AWS CLI v1 (pip) and v2 (Debian, /usr/bin/aws) with the demo
    profile; parametrize indirectly with ["v1"] where v2 lacks the command."""
    import awsctl

    return awsctl.Aws(imdsd, request.param, aws_home / request.param)
