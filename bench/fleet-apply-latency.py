#!/usr/bin/env python3
"""Modify -> applied latency of imdsd, on one host and on a fleet.

Two setups, measured one after the other in the same run:

  * redb: `imdsd serve` (store, control plane, agent and data plane in one
    process, the embedded redb file);
  * etcd: a 3-member etcd cluster (real `etcd` processes on loopback, data in
    /dev/shm), one `imdsd control --store etcd://...` and `--agents` (default
    8) `imdsd agent --host-id h-... --store etcd://...` processes.

Each setup gets `--per-host` instances per host (private addresses
127.0.1.x, so this script can call the data plane as the instance). Then
`--changes` ModifyInstanceMetadataOptions calls, round-robin over the
instances, flip HttpTokens between optional and required; for each one:

  * call:       the Modify call itself (SigV4-signed with botocore, one
                keep-alive connection);
  * data plane: from the start of the call until an IMDSv1 GET from the
                instance's address, at its host's data plane, answers 401 /
                200 accordingly (the new snapshot is in force there);
  * applied:    from the start of the call until DescribeInstances shows
                `applied` (the serving agent wrote observed_generation).

Both are polled as fast as one client can (no sleep), so they include one
polling round trip. p50 and p99 (nearest rank) are printed and written as
JSON to target/bench-results/. A script, not a test: nothing asserts.

    python3 bench/fleet-apply-latency.py [--changes 300] [--agents 8] [--per-host 2]

IMDSD_BIN=/path/to/imdsd uses a given binary; otherwise `cargo build
--release -p imdsd` runs first (BENCH_NO_BUILD=1 skips it and uses
target/release/imdsd). Needs /usr/bin/etcd (Debian etcd-server) and botocore.
Every process is started by this script and stopped by its pid.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "target" / "bench-results"
ETCD = os.environ.get("ETCD_BIN", "/usr/bin/etcd")
REGION = "us-east-1"
ACCESS_KEY = "AKIABENCHFLEET000001"
SECRET_KEY = "benchfleetbenchfleetbenchfleetbenchfleet"
# No control-plane rate limit: changes and DescribeInstances polls run
# back to back.
CONFIG = f"""\
[control]
requests_per_second = 0

[[control.credentials]]
access_key_id = "{ACCESS_KEY}"
secret_access_key = "{SECRET_KEY}"

[limits]
requests_per_second = 1000000000
burst = 1000000000
"""
OPTIONS_STATE = re.compile(rb"<metadataOptions>.*?<state>(\w+)</state>", re.S)
INSTANCE_ID = re.compile(rb"<instanceId>(i-[0-9a-f]+)</instanceId>")
DEADLINE_S = 15.0


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def pct(values: list[float], p: float) -> float:
    """Nearest-rank percentile."""
    if not values:
        return float("nan")
    s = sorted(values)
    k = max(1, min(len(s), int(-(-p * len(s) // 100))))
    return s[k - 1]


def binary() -> Path:
    if os.environ.get("IMDSD_BIN"):
        return Path(os.environ["IMDSD_BIN"])
    if not os.environ.get("BENCH_NO_BUILD"):
        log("cargo build --release -p imdsd")
        subprocess.run(["cargo", "build", "--release", "-p", "imdsd"], cwd=REPO, check=True)
    return REPO / "target" / "release" / "imdsd"


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


class Procs:
    """Every child started here, stopped by pid (SIGTERM, then SIGKILL)."""

    def __init__(self, work: Path):
        self.work = work
        self.children: list[subprocess.Popen] = []
        self.dirs: list[Path] = []  # removed after the children stopped

    def start(self, name: str, cmd: list[str], env: dict | None = None) -> subprocess.Popen:
        err = open(self.work / f"{name}.log", "wb")
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL,
                             env={**os.environ, **(env or {})})
        self.children.append(p)
        return p

    def stop_all(self) -> None:
        for p in reversed(self.children):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 10
        for p in reversed(self.children):
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.children.clear()
        for d in self.dirs:
            shutil.rmtree(d, ignore_errors=True)


def listeners(p: subprocess.Popen, want: set[str], timeout: float = 60) -> dict[str, str]:
    """Reads `listening <kind> http://addr` lines until every kind in `want`."""
    found: dict[str, str] = {}
    deadline = time.monotonic() + timeout
    while not want <= found.keys():
        if time.monotonic() > deadline:
            raise RuntimeError(f"no listeners {want - found.keys()} within {timeout}s")
        line = p.stdout.readline()
        if not line:
            raise RuntimeError(f"process exited ({p.wait()}) before reporting {want - found.keys()}")
        words = line.decode().split()
        if len(words) >= 3 and words[0] == "listening":
            found.setdefault(words[1], words[2].removeprefix("http://"))
    return found


def start_etcd(procs: Procs, work: Path) -> str:
    shm = Path("/dev/shm") if Path("/dev/shm").is_dir() else Path(tempfile.gettempdir())
    data = Path(tempfile.mkdtemp(prefix="imdsd-bench-etcd-", dir=shm))
    procs.dirs.append(data)
    ports = free_ports(6)
    names = ["n1", "n2", "n3"]
    cluster = ",".join(f"{n}=http://127.0.0.1:{ports[2 * i + 1]}" for i, n in enumerate(names))
    for i, n in enumerate(names):
        client, peer = f"http://127.0.0.1:{ports[2 * i]}", f"http://127.0.0.1:{ports[2 * i + 1]}"
        procs.start(f"etcd-{n}", [ETCD, "--name", n, "--data-dir", str(data / n),
                                  "--listen-client-urls", client, "--advertise-client-urls", client,
                                  "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                                  "--initial-cluster", cluster, "--initial-cluster-state", "new",
                                  "--initial-cluster-token", data.name])
    deadline = time.monotonic() + 30
    for i in range(3):
        while True:
            try:
                c = http.client.HTTPConnection("127.0.0.1", ports[2 * i], timeout=2)
                c.request("GET", "/health")
                if b'"true"' in c.getresponse().read():
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("etcd did not become healthy")
            time.sleep(0.1)
    return "etcd://" + ",".join(f"127.0.0.1:{ports[2 * i]}" for i in range(3))


class Ec2:
    """SigV4-signed EC2 Query calls on one keep-alive connection."""

    def __init__(self, addr: str):
        from botocore.auth import SigV4Auth
        from botocore.credentials import Credentials

        self.addr = addr
        self.auth = SigV4Auth(Credentials(ACCESS_KEY, SECRET_KEY), "ec2", REGION)
        host, port = addr.rsplit(":", 1)
        self.conn = http.client.HTTPConnection(host, int(port), timeout=30)

    def call(self, params: dict) -> tuple[int, bytes]:
        from botocore.awsrequest import AWSRequest

        body = "&".join(f"{k}={v}" for k, v in {**params, "Version": "2016-11-15"}.items())
        req = AWSRequest(method="POST", url=f"http://{self.addr}/", data=body,
                         headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"})
        self.auth.add_auth(req)
        self.conn.request("POST", "/", body=body, headers=dict(req.headers.items()))
        r = self.conn.getresponse()
        return r.status, r.read()

    def ok(self, params: dict) -> bytes:
        status, body = self.call(params)
        if status != 200:
            raise RuntimeError(f"{params.get('Action')} answered {status}: {body[:400]!r}")
        return body


def v1_status(ip: str, data: str) -> int:
    """Status of an IMDSv1 GET from `ip` at the data plane `data`; 0 if refused."""
    host, port = data.rsplit(":", 1)
    c = http.client.HTTPConnection(host, int(port), timeout=5, source_address=(ip, 0))
    try:
        c.request("GET", "/latest/meta-data/instance-id")
        return c.getresponse().status
    except OSError:
        return 0
    finally:
        c.close()


def launch(ec2: Ec2, host: str | None, ip: str) -> str:
    params = {"Action": "RunInstances", "ImageId": "ami-0abcdef1234567890", "MinCount": "1",
              "MaxCount": "1", "PrivateIpAddress": ip, "MetadataOptions.HttpTokens": "optional"}
    if host:
        params["Placement.HostId"] = host
    m = INSTANCE_ID.search(ec2.ok(params))
    if not m:
        raise RuntimeError("RunInstances answered no instance id")
    return m.group(1).decode()


def state(ec2: Ec2, iid: str) -> bytes:
    m = OPTIONS_STATE.search(ec2.ok({"Action": "DescribeInstances", "InstanceId.1": iid}))
    return m.group(1) if m else b""


def measure(ec2: Ec2, targets: list[tuple[str, str, str]], changes: int) -> dict:
    """targets: (instance id, its ip, its host's data plane)."""
    for iid, ip, data in targets:
        deadline = time.monotonic() + 60
        while state(ec2, iid) != b"applied" or v1_status(ip, data) != 200:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{iid} never served at {data}")
            time.sleep(0.05)
    tokens = {iid: "optional" for iid, _, _ in targets}
    call, to_dp, to_applied, timeouts = [], [], [], 0
    for n in range(changes):
        iid, ip, data = targets[n % len(targets)]
        target = "required" if tokens[iid] == "optional" else "optional"
        want = 401 if target == "required" else 200
        t0 = time.perf_counter()
        ec2.ok({"Action": "ModifyInstanceMetadataOptions", "InstanceId": iid, "HttpTokens": target})
        t_call = time.perf_counter()
        deadline = t0 + DEADLINE_S
        while v1_status(ip, data) != want:
            if time.perf_counter() > deadline:
                timeouts += 1
                break
        t_dp = time.perf_counter()
        while state(ec2, iid) != b"applied":
            if time.perf_counter() > deadline:
                timeouts += 1
                break
        t_applied = time.perf_counter()
        tokens[iid] = target
        call.append((t_call - t0) * 1000)
        to_dp.append((t_dp - t0) * 1000)
        to_applied.append((t_applied - t0) * 1000)
    summary = {"changes": changes, "timeouts": timeouts}
    for name, values in [("call", call), ("data_plane", to_dp), ("applied", to_applied)]:
        summary[f"{name}_p50_ms"] = round(pct(values, 50), 2)
        summary[f"{name}_p99_ms"] = round(pct(values, 99), 2)
    return summary


def run_redb(bin_: Path, work: Path, per_host: int, changes: int) -> dict:
    procs = Procs(work)
    try:
        cfg = work / "imdsd.toml"
        cfg.write_text(CONFIG)
        p = procs.start("serve", [str(bin_), "serve", "--data-dir", str(work / "redb"), "--config", str(cfg),
                                  "--data-listen", "127.0.0.1:0", "--control-listen", "127.0.0.1:0",
                                  "--admin-listen", "127.0.0.1:0"], env={"IMDSD_LOG": "warn"})
        addrs = listeners(p, {"data", "control", "admin"})
        ec2 = Ec2(addrs["control"])
        targets = []
        for i in range(per_host):
            ip = f"127.0.1.{10 + i}"
            targets.append((launch(ec2, None, ip), ip, addrs["data"]))
        log(f"redb: {len(targets)} instances; {changes} changes")
        return {"setup": "imdsd serve (redb)", "hosts": 1, "instances": len(targets),
                **measure(ec2, targets, changes)}
    finally:
        procs.stop_all()


def run_etcd(bin_: Path, work: Path, agents: int, per_host: int, changes: int) -> dict:
    procs = Procs(work)
    try:
        url = start_etcd(procs, work)
        cfg = work / "imdsd.toml"
        cfg.write_text(CONFIG)
        env = {"IMDSD_LOG": "warn"}
        control = procs.start("control", [str(bin_), "control", "--store", url, "--config", str(cfg),
                                          "--control-listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"],
                              env=env)
        ec2 = Ec2(listeners(control, {"control", "admin"})["control"])
        data = {}
        for a in range(agents):
            host = f"h-0bench{a:011d}"
            p = procs.start(f"agent-{a}", [str(bin_), "agent", "--host-id", host, "--store", url,
                                           "--config", str(cfg), "--data-listen", "127.0.0.1:0",
                                           "--admin-listen", "127.0.0.1:0"], env=env)
            data[host] = listeners(p, {"data", "admin"})["data"]
        targets = []
        for a, host in enumerate(sorted(data)):
            for i in range(per_host):
                ip = f"127.0.1.{10 + a * per_host + i}"
                targets.append((launch(ec2, host, ip), ip, data[host]))
        log(f"etcd: 3 members, {agents} agents, {len(targets)} instances; {changes} changes")
        return {"setup": f"imdsd control + {agents} agents (etcd, 3 members)", "hosts": agents,
                "instances": len(targets), **measure(ec2, targets, changes)}
    finally:
        procs.stop_all()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--changes", type=int, default=300, help="Modify calls per setup")
    ap.add_argument("--agents", type=int, default=8, help="agents (hosts) on etcd")
    ap.add_argument("--per-host", type=int, default=2, help="instances per host")
    ap.add_argument("--only", choices=["redb", "etcd"], help="run one setup")
    a = ap.parse_args()
    if not Path(ETCD).exists() and a.only != "redb":
        sys.exit(f"{ETCD} not found (Debian package etcd-server)")
    bin_ = binary()
    work = Path(tempfile.mkdtemp(prefix="imdsd-bench-fleet-"))
    results = []
    try:
        if a.only in (None, "redb"):
            results.append(run_redb(bin_, work, a.per_host, a.changes))
        if a.only in (None, "etcd"):
            results.append(run_etcd(bin_, work, a.agents, a.per_host, a.changes))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                            text=True).stdout.strip()
    print(f"\nModify -> applied latency (ms), commit {commit}, {os.cpu_count()} CPUs, binary {bin_}")
    print(f"{'setup':<44} {'inst':>4} {'n':>5}  {'call p50/p99':>15}  {'data plane p50/p99':>19}  "
          f"{'applied p50/p99':>16}  timeouts")
    for r in results:
        print(f"{r['setup']:<44} {r['instances']:>4} {r['changes']:>5}  "
              f"{r['call_p50_ms']:>7.2f}/{r['call_p99_ms']:<7.2f}  "
              f"{r['data_plane_p50_ms']:>9.2f}/{r['data_plane_p99_ms']:<9.2f}  "
              f"{r['applied_p50_ms']:>7.2f}/{r['applied_p99_ms']:<8.2f}  {r['timeouts']}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"fleet-apply-latency-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps({"commit": commit, "cpus": os.cpu_count(), "results": results}, indent=2))
    print(f"raw: {out}")


if __name__ == "__main__":
    main()
