"""Shared helpers of the bench/ scripts: building, starting and stopping
imdsd and nginx pinned to a CPU, driving wrk, reading RSS, and summarising.

Everything runs on loopback, every child process is started by us and
stopped by pid, and every load is bounded in time.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
TOOLS_TARGET = REPO / "target" / "bench-tools"
RESULTS = REPO / "target" / "bench-results"

# The server under test and the baseline share this CPU; the load generator
# runs on the other one (the machine has 2).
SERVER_CPU = int(os.environ.get("BENCH_SERVER_CPU", "0"))
CLIENT_CPU = int(os.environ.get("BENCH_CLIENT_CPU", "1"))

DEMO_INSTANCE_ID = "i-0123456789abcdef0"
TOKEN_LEN = 55

# Control-plane key of the bench configs (loopback only, never a real key).
ACCESS_KEY = "AKIABENCHBENCHBENCH1"
SECRET_KEY = "benchbenchbenchbenchbenchbenchbenchbench"

HIGH_LIMITS = """\
[limits]
requests_per_second = 1000000000
burst = 1000000000
max_connections_per_instance = 100000
max_connections = 200000
"""

# The control plane's per-key rate limit is off: the scale run replays
# DescribeInstances back to back to measure latency, not the limiter.
CONTROL_KEY = f"""\
[control]
requests_per_second = 0

[[control.credentials]]
access_key_id = "{ACCESS_KEY}"
secret_access_key = "{SECRET_KEY}"
"""


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, check=True, **kw)


# ---------------------------------------------------------------- building


def build_imdsd() -> Path:
    """`cargo build --release -p imdsd` (skipped when IMDSD_BIN is set)."""
    if os.environ.get("IMDSD_BIN"):
        return Path(os.environ["IMDSD_BIN"])
    if not os.environ.get("BENCH_NO_BUILD"):
        log("building imdsd (release)")
        run(["cargo", "build", "--release", "-q", "-p", "imdsd"], cwd=REPO)
    return REPO / "target" / "release" / "imdsd"


def build_tools() -> Path:
    """Builds bench/rust (load-instances, abuse); returns its bin directory."""
    if not os.environ.get("BENCH_NO_BUILD"):
        log("building bench tools (release)")
        run(
            ["cargo", "build", "--release", "-q", "--target-dir", str(TOOLS_TARGET)],
            cwd=BENCH / "rust",
        )
    return TOOLS_TARGET / "release"


def need(*tools: str) -> None:
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        sys.exit(f"missing tools: {' '.join(missing)} (see bench/README.md: apt-get install ...)")


# ---------------------------------------------------------------- machine


def machine_note() -> dict:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO, capture_output=True, text=True
    ).stdout.strip()
    if os.environ.get("BENCH_COMMIT"):
        commit, dirty = os.environ["BENCH_COMMIT"], ""
    load = os.getloadavg()
    return {
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "commit": commit + (" (+ uncommitted changes)" if dirty else ""),
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "kernel": os.uname().release,
        "loadavg_at_start": [round(x, 2) for x in load],
    }


def print_machine(note: dict) -> None:
    print(
        f"# {note['date']}  commit {note['commit']}  {note['cpus']} CPUs ({note['cpu_model']}), "
        f"kernel {note['kernel']}, load average at start {note['loadavg_at_start']}"
    )


# ---------------------------------------------------------------- processes


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def tree_pids(pid: int) -> list[int]:
    """`pid` and its child processes (nginx's worker)."""
    pids = [pid]
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            kids = Path(f"/proc/{pid}/task/{tid}/children").read_text().split()
            pids += [int(k) for k in kids]
    except OSError:
        pass
    return pids


def tree_ticks(pids: list[int]) -> int:
    total = 0
    for p in pids:
        try:
            total += cpu_ticks(p)
        except OSError:
            pass
    return total


CLK_TCK = os.sysconf("SC_CLK_TCK")


def wait_idle(pid: int, quiet_ticks: int = 3, period: float = 1.0, timeout: float = 400.0,
              quiet_periods: int = 5) -> float:
    """Waits until the process used at most `quiet_ticks` clock ticks of CPU
    in each of `quiet_periods` consecutive `period`s (background work after
    start has settled); returns the seconds waited until the quiet stretch
    began."""
    start = time.monotonic()
    last = cpu_ticks(pid)
    quiet = 0
    quiet_since = start
    while time.monotonic() - start < timeout:
        time.sleep(period)
        now = cpu_ticks(pid)
        if now - last <= quiet_ticks:
            if quiet == 0:
                quiet_since = time.monotonic() - period
            quiet += 1
            if quiet >= quiet_periods:
                return quiet_since - start
        else:
            quiet = 0
        last = now
    log(f"pid {pid} still busy after {timeout}s")
    return time.monotonic() - start


def raise_nofile(limit: int = 65536) -> None:
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(limit, hard) if hard != resource.RLIM_INFINITY else limit
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, want), hard))


def pinned(cpu: int, cmd: list[str], nice: int = 0) -> list[str]:
    prefix = ["taskset", "-c", str(cpu)]
    if nice:
        prefix += ["nice", "-n", str(nice)]
    return prefix + cmd


@dataclass
class Imdsd:
    """One `imdsd serve` on ephemeral loopback ports, pinned to a CPU."""

    binary: Path
    data_dir: Path
    name: str = "imdsd"
    demo: bool = True
    config_text: str = HIGH_LIMITS
    cpu: int = SERVER_CPU
    wrapper: list[str] = field(default_factory=list)  # e.g. valgrind
    proc: subprocess.Popen | None = None
    data: str = ""
    control: str = ""
    admin: str = ""
    seconds_to_listening: float = 0.0
    seconds_to_healthy: float = 0.0

    def start(self, timeout: float = 300.0) -> "Imdsd":
        try:
            return self._start(timeout)
        except BaseException:
            self.stop()
            raise

    def _start(self, timeout: float) -> "Imdsd":
        self.data_dir.mkdir(parents=True, exist_ok=True)
        config = self.data_dir.parent / f"{self.data_dir.name}.toml"
        config.write_text(self.config_text)
        cmd = self.wrapper + [
            str(self.binary),
            "serve",
            "--data-dir",
            str(self.data_dir),
            "--config",
            str(config),
            "--data-listen",
            "127.0.0.1:0",
            "--control-listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
        ]
        if self.demo:
            cmd.append("--demo")
        env = dict(os.environ, IMDSD_LOG=os.environ.get("IMDSD_LOG", "warn"))
        self.stderr_path = self.data_dir.parent / f"{self.data_dir.name}.stderr"
        t0 = time.monotonic()
        self.proc = subprocess.Popen(
            pinned(self.cpu, cmd),
            stdout=subprocess.PIPE,
            stderr=open(self.stderr_path, "w"),
            text=True,
            env=env,
            preexec_fn=raise_nofile,
        )
        deadline = t0 + timeout
        assert self.proc.stdout is not None
        while not (self.data and self.control and self.admin):
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError(f"{self.name} exited early; see {self.stderr_path}:\n"
                                   + self.stderr_path.read_text()[-2000:])
            m = re.match(r"listening (data|control|admin) http://(\S+)", line)
            if m:
                setattr(self, m.group(1), m.group(2))
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} did not start in {timeout}s")
        self.seconds_to_listening = time.monotonic() - t0
        while True:
            try:
                status, _ = http_request(self.admin, "GET", "/healthz", timeout=2)
                if status == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name}: /healthz never answered 200")
            time.sleep(0.005)
        self.seconds_to_healthy = time.monotonic() - t0
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def port(self) -> int:
        return int(self.data.rsplit(":", 1)[1])

    def rss_kib(self) -> int:
        return rss_kib(self.pid)

    def metrics(self) -> str:
        _, body = http_request(self.admin, "GET", "/metrics")
        return body.decode()

    def stop(self) -> None:
        stop_process(self.proc, signal.SIGTERM, timeout=60)


NGINX_CONF = """\
# Baseline for bench/: one worker, a static file and a fixed token answer.
worker_processes 1;
daemon off;
master_process on;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 65536; }}
http {{
    access_log off;
    default_type text/plain;
    sendfile on;
    tcp_nodelay on;
    keepalive_requests 100000000;
    keepalive_timeout 300s;
    client_body_temp_path {dir}/tmp;
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        root {dir}/www;
        location = /latest/api/token {{
            add_header X-aws-ec2-metadata-token-ttl-seconds 21600 always;
            return 200 "{token}";
        }}
        location / {{ }}
    }}
}}
"""


@dataclass
class Nginx:
    """nginx (one worker) serving the instance id as a static file and
    answering the token PUT with `return 200` and a 55-byte body."""

    work: Path
    instance_id: str = DEMO_INSTANCE_ID
    cpu: int = SERVER_CPU
    proc: subprocess.Popen | None = None
    port: int = 0

    def start(self) -> "Nginx":
        need("nginx")
        self.work.mkdir(parents=True, exist_ok=True)
        (self.work / "tmp").mkdir(exist_ok=True)
        leaf = self.work / "www" / "latest" / "meta-data" / "instance-id"
        leaf.parent.mkdir(parents=True, exist_ok=True)
        leaf.write_bytes(self.instance_id.encode())
        for p in [self.work, *self.work.rglob("*")]:
            p.chmod(0o755 if p.is_dir() else 0o644)
        self.port = free_port()
        conf = self.work / "nginx.conf"
        conf.write_text(NGINX_CONF.format(dir=self.work, port=self.port, token="A" * TOKEN_LEN))
        self.proc = subprocess.Popen(
            pinned(self.cpu, ["nginx", "-c", str(conf), "-p", str(self.work)]),
            stdout=subprocess.DEVNULL,
            stderr=open(self.work / "stderr", "w"),
            preexec_fn=raise_nofile,
        )
        status = await_instance_id(f"127.0.0.1:{self.port}")
        if status == 200:
            return self
        self.stop()
        raise RuntimeError(f"nginx did not answer 200 (last status {status}): "
                           + (self.work / "stderr").read_text())

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def stop(self) -> None:
        stop_process(self.proc, signal.SIGQUIT, timeout=20)


@dataclass
class BareHyper:
    """`bench/rust` `bare-hyper`: tokio + hyper answering constant bytes, the
    floor of any hyper-based server (what imdsd adds shows as imdsd / bare)."""

    binary: Path
    cpu: int = SERVER_CPU
    proc: subprocess.Popen | None = None
    port: int = 0
    name: str = "bare-hyper"

    def start(self) -> "BareHyper":
        self.port = free_port()
        self.proc = subprocess.Popen(
            pinned(self.cpu, [str(self.binary), "--port", str(self.port)]),
            stdout=subprocess.DEVNULL,
            preexec_fn=raise_nofile,
        )
        status = await_instance_id(f"127.0.0.1:{self.port}")
        if status == 200:
            return self
        self.stop()
        raise RuntimeError(f"bare-hyper did not answer 200 (last status {status})")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def stop(self) -> None:
        stop_process(self.proc, signal.SIGKILL, timeout=20)


def stop_process(proc: subprocess.Popen | None, sig: int, timeout: float) -> None:
    """Sends `sig` to a still running `proc`, waits `timeout` seconds, then kills it."""
    if proc and proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def await_instance_id(addr: str, tries: int = 500) -> int | None:
    """Polls GET /latest/meta-data/instance-id on `addr` every 10 ms until it
    answers 200 or `tries` run out; returns the last status (None: never
    connected)."""
    status = None
    for _ in range(tries):
        try:
            status = http_request(addr, "GET", "/latest/meta-data/instance-id", timeout=1)[0]
            if status == 200:
                return status
        except OSError:
            pass
        time.sleep(0.01)
    return status


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_request(
    addr: str, method: str, path: str, headers: dict | None = None, timeout: float = 5, body=None
) -> tuple[int, bytes]:
    host, port = addr.rsplit(":", 1)
    c = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


def imds_token(addr: str, ttl: int = 21600) -> str:
    status, body = http_request(
        addr, "PUT", "/latest/api/token", {"X-aws-ec2-metadata-token-ttl-seconds": str(ttl)}
    )
    if status != 200:
        raise RuntimeError(f"token PUT to {addr} answered {status}")
    return body.decode()


# ---------------------------------------------------------------- wrk

WRK_RESULT = re.compile(r"WRK_RESULT (.*)")


def wrk(addr: str, script: str, args: list[str], seconds: float, connections: int,
        server_pids: list[int] | None = None) -> dict:
    """One wrk run from the client CPU; returns req/s, p50/p99 (ms), errors
    and, given the server's pids, the CPU time the server used: requests per
    server CPU-second does not depend on how much of its CPU other work on
    the machine left to the server."""
    need("wrk")
    cmd = pinned(
        CLIENT_CPU,
        [
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{max(1, round(seconds))}s",
            "--timeout",
            "5s",
            "-s",
            str(BENCH / "wrk" / script),
            f"http://{addr}",
        ]
        + (["--"] + args if args else []),
    )
    ticks0 = tree_ticks(server_pids) if server_pids else 0
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    ticks = tree_ticks(server_pids) - ticks0 if server_pids else 0
    m = WRK_RESULT.search(out)
    if not m:
        raise RuntimeError("wrk printed no WRK_RESULT line:\n" + out)
    kv = dict(pair.split("=") for pair in m.group(1).split())
    requests = int(kv["requests"])
    duration = int(kv["duration_us"]) / 1e6
    errors = sum(int(kv[k]) for k in ("connect", "read", "write", "status", "timeout"))
    cpu_s = ticks / CLK_TCK
    return {
        "rps": requests / duration,
        "server_cpu": cpu_s / duration if server_pids else None,
        "req_per_cpu_s": requests / cpu_s if cpu_s else None,
        "p50_ms": int(kv["p50_us"]) / 1000,
        "p99_ms": int(kv["p99_us"]) / 1000,
        "requests": requests,
        "errors": errors,
    }


# ---------------------------------------------------------------- stats


def pct(values: list[float], p: float) -> float:
    """Nearest-rank percentile."""
    if not values:
        return float("nan")
    s = sorted(values)
    k = max(1, min(len(s), int(-(-p * len(s) // 100))))
    return s[k - 1]


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def save_results(name: str, data: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(data, indent=2))
    return path


def workdir(prefix: str) -> Path:
    path = Path(tempfile.mkdtemp(prefix=f"imdsd-bench-{prefix}-"))
    path.chmod(0o755)  # nginx's worker (www-data) reads its files below
    return path
