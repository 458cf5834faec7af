"""Starts a real `imdsd serve --demo` for the Python client tests.

The binary comes from $IMDSD_BIN (scripts/test passes target/debug/imdsd).
Each test module gets its own process and a fresh data directory, on
ephemeral ports, IPv4 and IPv6 loopback; the URLs are parsed from the
"listening ..." lines imdsd prints on standard output once it serves.
"""

from __future__ import annotations

import dataclasses
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
import urllib.request
from pathlib import Path

import pytest

START_TIMEOUT_S = 60.0
LISTEN_RE = re.compile(r"^listening (data|admin) (http://\S+)$")

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


@dataclasses.dataclass
class Imdsd:
    """A running imdsd: its URLs and small raw-HTTP helpers (urllib)."""

    proc: subprocess.Popen
    data_dir: Path
    stderr_path: Path
    data_v4: str  # http://127.0.0.1:PORT
    data_v6: str  # http://[::1]:PORT
    admin: str  # http://127.0.0.1:PORT

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


def _start_imdsd(tmp: Path) -> Imdsd:
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
        binary, "serve", "--demo",
        "--data-dir", str(data_dir),
        "--data-listen", "127.0.0.1:0",
        "--data-listen", "[::1]:0",
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
    deadline = time.monotonic() + START_TIMEOUT_S
    try:
        while admin is None or len(data) < 2:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise RuntimeError(f"imdsd printed no listening lines within {START_TIMEOUT_S}s")
            try:
                line = lines.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                raise RuntimeError(f"imdsd exited with status {proc.wait()} before it was ready")
            m = LISTEN_RE.match(line)
            if not m:
                continue
            if m.group(1) == "admin":
                admin = m.group(2)
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
    return Imdsd(proc, data_dir, stderr_path, v4[0], v6[0], admin)


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=15)


@pytest.fixture(scope="module")
def imdsd():
    """A fresh `imdsd serve --demo` for one test module; stopped afterwards,
    whatever the tests did."""
    with tempfile.TemporaryDirectory(prefix="imdsd-pytest-") as tmp:
        server = _start_imdsd(Path(tmp))
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


@pytest.fixture(autouse=True)
def _clean_client_env(monkeypatch):
    """Client libraries read AWS_* and proxy variables; the tests must not
    depend on the caller's environment."""
    for name in list(os.environ):
        if name.startswith(_SCRUBBED_ENV_PREFIXES) or name.lower() in _SCRUBBED_ENV:
            monkeypatch.delenv(name, raising=False)
