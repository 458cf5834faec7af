#!/usr/bin/env python3
"""How imdsd scales with registered instances, on the embedded redb store.

Prints:
  * RSS per registered instance: VmRSS with 0 instances and with N (default
    100,000) loaded through the store, after background work settled;
    with the sample record's role (minted credentials per instance) and,
    unless --skip-no-role, without a role;
  * time to load N instances at start: until the `listening` lines and until
    /healthz answers 200, for the first start on a freshly loaded store and
    for a restart;
  * DescribeInstances latency for one id among N: the same SigV4-signed
    request replayed on a keep-alive connection (server + HTTP only, no
    client signing in the timed loop), and the full boto3 call;
  * ModifyInstanceMetadataOptions -> applied: HttpTokens is flipped between
    optional and required on an instance at 127.0.0.1, then timed until the
    data plane behaves accordingly (an IMDSv1 GET turns 401 / 200) and until
    DescribeInstances shows `applied`.

    python3 bench/scale.py [--instances 100000] [--describe 200] [--modify 50] [--skip-no-role]
"""

from __future__ import annotations

import argparse
import http.client
import re
import shutil
import subprocess
import time

import lib

PROBE_ID = "i-0aaaaaaaaaaaaaaaa"  # at 127.0.0.1, the caller of the data-plane probes
REGION = "us-east-1"
CONFIG = lib.HIGH_LIMITS + lib.CONTROL_KEY


def signer():
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    auth = SigV4Auth(Credentials(lib.ACCESS_KEY, lib.SECRET_KEY), "ec2", REGION)

    def sign(control: str, params: dict) -> tuple[str, dict]:
        body = "&".join(f"{k}={v}" for k, v in {**params, "Version": "2016-11-15"}.items())
        req = AWSRequest(
            method="POST",
            url=f"http://{control}/",
            data=body,
            headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"},
        )
        auth.add_auth(req)
        return body, dict(req.headers.items())

    return sign


class Keepalive:
    def __init__(self, addr: str):
        host, port = addr.rsplit(":", 1)
        self.c = http.client.HTTPConnection(host, int(port), timeout=10)

    def call(self, method: str, path: str, body=None, headers=None) -> tuple[int, bytes]:
        self.c.request(method, path, body=body, headers=headers or {})
        r = self.c.getresponse()
        return r.status, r.read()


OPTIONS_STATE = re.compile(rb"<metadataOptions>.*?<state>(\w+)</state>", re.S)


def load(tools, data, count: int, role: bool) -> dict:
    data.mkdir(parents=True)
    cmd = [str(tools / "load-instances"), "--db", str(data / "imdsd.redb"), "--count", str(count),
           "--extra", f"{PROBE_ID}=127.0.0.1"]
    if not role:
        cmd.append("--no-role")
    import json

    return json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)


def start_measure(binary, data, name) -> tuple[lib.Imdsd, dict]:
    srv = lib.Imdsd(binary, data, name=name, demo=False, config_text=CONFIG).start()
    settle = lib.wait_idle(srv.pid)
    m = {
        "to_listening_s": srv.seconds_to_listening,
        "to_healthy_s": srv.seconds_to_healthy,
        "settle_s": settle,
        "rss_kib": srv.rss_kib(),
    }
    lib.log(f"{name}: listening {m['to_listening_s']:.2f}s, healthy {m['to_healthy_s']:.2f}s, "
            f"idle after +{settle:.1f}s, RSS {m['rss_kib'] / 1024:.1f} MiB")
    return srv, m


def describe_bench(srv: lib.Imdsd, sign, n: int) -> dict:
    body, headers = sign(srv.control, {"Action": "DescribeInstances", "InstanceId.1": PROBE_ID})
    ka = Keepalive(srv.control)
    status, reply = ka.call("POST", "/", body, headers)
    if status != 200 or PROBE_ID.encode() not in reply:
        raise RuntimeError(f"DescribeInstances answered {status}: {reply[:300]!r}")
    for _ in range(20):
        ka.call("POST", "/", body, headers)
    replay = []
    for _ in range(n):
        t = time.perf_counter()
        status, _ = ka.call("POST", "/", body, headers)
        replay.append((time.perf_counter() - t) * 1000)
        assert status == 200
    import boto3

    ec2 = boto3.client("ec2", endpoint_url=f"http://{srv.control}", region_name=REGION,
                       aws_access_key_id=lib.ACCESS_KEY, aws_secret_access_key=lib.SECRET_KEY)
    ec2.describe_instances(InstanceIds=[PROBE_ID])
    full = []
    for _ in range(n):
        t = time.perf_counter()
        ec2.describe_instances(InstanceIds=[PROBE_ID])
        full.append((time.perf_counter() - t) * 1000)
    return {
        "replay_p50_ms": lib.pct(replay, 50), "replay_p99_ms": lib.pct(replay, 99),
        "boto3_p50_ms": lib.pct(full, 50), "boto3_p99_ms": lib.pct(full, 99),
    }


def modify_bench(srv: lib.Imdsd, sign, n: int) -> dict:
    control = Keepalive(srv.control)
    data = Keepalive(srv.data)
    path = "/latest/meta-data/instance-id"
    desc_body, desc_headers = sign(srv.control, {"Action": "DescribeInstances", "InstanceId.1": PROBE_ID})
    status, _ = data.call("GET", path)
    current = "optional" if status == 200 else "required"
    api, to_dp, to_applied, timeouts = [], [], [], 0
    for _ in range(n):
        target = "required" if current == "optional" else "optional"
        want = 401 if target == "required" else 200
        body, headers = sign(srv.control, {"Action": "ModifyInstanceMetadataOptions",
                                           "InstanceId": PROBE_ID, "HttpTokens": target})
        t0 = time.perf_counter()
        status, reply = control.call("POST", "/", body, headers)
        t_api = time.perf_counter()
        if status != 200:
            raise RuntimeError(f"Modify answered {status}: {reply[:300]!r}")
        deadline = t0 + 5
        while data.call("GET", path)[0] != want:
            if time.perf_counter() > deadline:
                timeouts += 1
                break
        t_dp = time.perf_counter()
        while True:
            _, xml = control.call("POST", "/", desc_body, desc_headers)
            m = OPTIONS_STATE.search(xml)
            if m and m.group(1) == b"applied":
                break
            if time.perf_counter() > deadline:
                timeouts += 1
                break
        t_applied = time.perf_counter()
        api.append((t_api - t0) * 1000)
        to_dp.append((t_dp - t0) * 1000)
        to_applied.append((t_applied - t0) * 1000)
        current = target
    return {
        "modify_call_p50_ms": lib.pct(api, 50), "modify_call_p99_ms": lib.pct(api, 99),
        "to_dataplane_p50_ms": lib.pct(to_dp, 50), "to_dataplane_p99_ms": lib.pct(to_dp, 99),
        "to_applied_p50_ms": lib.pct(to_applied, 50), "to_applied_p99_ms": lib.pct(to_applied, 99),
        "timeouts": timeouts,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--instances", type=int, default=100_000)
    ap.add_argument("--describe", type=int, default=200, help="DescribeInstances calls")
    ap.add_argument("--modify", type=int, default=50, help="Modify -> applied changes")
    ap.add_argument("--skip-no-role", action="store_true", help="skip the run without roles")
    ap.add_argument("--keep", action="store_true")
    a = ap.parse_args()
    lib.need("taskset")
    note = lib.machine_note()
    binary = lib.build_imdsd()
    tools = lib.build_tools()
    sign = signer()
    work = lib.workdir("scale")
    res: dict = {}
    srv = None
    try:
        srv, res["empty"] = start_measure(binary, work / "empty", "imdsd (0 instances)")
        srv.stop()

        variants = [("role", True)] + ([] if a.skip_no_role else [("no_role", False)])
        for label, role in variants:
            data = work / f"loaded-{label}"
            t = time.monotonic()
            loaded = load(tools, data, a.instances, role)
            lib.log(f"{label}: wrote {loaded['written']} records ({loaded['bytes_per_record']} B JSON each) "
                    f"in {time.monotonic() - t:.2f}s")
            srv, first = start_measure(binary, data, f"imdsd ({a.instances}, {label}, first start)")
            srv.stop()
            srv, again = start_measure(binary, data, f"imdsd ({a.instances}, {label}, restart)")
            res[label] = {"load": loaded, "first": first, "restart": again}
            if role:
                lib.log("DescribeInstances")
                res["describe"] = describe_bench(srv, sign, a.describe)
                lib.log("Modify -> applied")
                res["modify"] = modify_bench(srv, sign, a.modify)
                res["rss_after_calls_kib"] = srv.rss_kib()
            srv.stop()
            srv = None
    finally:
        if srv:
            srv.stop()
        if not a.keep:
            shutil.rmtree(work, ignore_errors=True)
    report(a, note, res)


def report(a, note, res) -> None:
    n = a.instances
    lib.print_machine(note)
    print()
    e = res["empty"]["rss_kib"]

    def verdict(ok: bool) -> str:
        return "meets" if ok else "MISSES"

    print(f"RSS with 0 instances: {e / 1024:.1f} MiB")
    for label in ("role", "no_role"):
        if label not in res:
            continue
        r = res[label]
        per = (r["restart"]["rss_kib"] - e) * 1024 / n
        per_first = (r["first"]["rss_kib"] - e) * 1024 / n
        print(f"[{label}] {n} instances (+1 probe), {r['load']['bytes_per_record']} B of JSON each, "
              f"written through imds-store in {r['load']['seconds']:.2f}s")
        print(f"  RSS after restart {r['restart']['rss_kib'] / 1024:.1f} MiB -> {per / 1024:.2f} KiB per instance "
              f"(target <= 8 KiB: {verdict(per <= 8 * 1024)}); after first start {per_first / 1024:.2f} KiB")
        for k in ("first", "restart"):
            m = r[k]
            print(f"  {k:<7}: listening after {m['to_listening_s']:.2f}s, /healthz 200 after "
                  f"{m['to_healthy_s']:.2f}s (target <= 3 s: {verdict(m['to_healthy_s'] <= 3)}), "
                  f"CPU idle {m['settle_s']:.1f}s later")
    if "describe" in res:
        d = res["describe"]
        print(f"DescribeInstances, one id among {n}: replayed signed request p50 {d['replay_p50_ms']:.2f} ms, "
              f"p99 {d['replay_p99_ms']:.2f} ms (target p99 <= 5 ms: {verdict(d['replay_p99_ms'] <= 5)}); "
              f"boto3 call p50 {d['boto3_p50_ms']:.2f} ms, p99 {d['boto3_p99_ms']:.2f} ms")
    if "modify" in res:
        m = res["modify"]
        print(f"Modify -> applied ({a.modify} changes): Modify call p50 {m['modify_call_p50_ms']:.2f} / "
              f"p99 {m['modify_call_p99_ms']:.2f} ms; data plane follows p50 {m['to_dataplane_p50_ms']:.2f} / "
              f"p99 {m['to_dataplane_p99_ms']:.2f} ms (target p99 <= 20 ms: "
              f"{verdict(m['to_dataplane_p99_ms'] <= 20)}); DescribeInstances shows applied p50 "
              f"{m['to_applied_p50_ms']:.2f} / p99 {m['to_applied_p99_ms']:.2f} ms; timeouts {m['timeouts']}")
    path = lib.save_results("scale", {"machine": note, "args": vars(a), "results": res})
    print(f"raw results: {path.relative_to(lib.REPO)}")


if __name__ == "__main__":
    main()
