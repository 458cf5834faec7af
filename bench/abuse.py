#!/usr/bin/env python3
"""One instance floods imdsd while another keeps a steady request rate.

Two instances are registered through the store: a flooder at 127.0.0.2 and
a well-behaved one at 127.0.0.3. imdsd runs with its default [limits]
(500 req/s, burst 1000, 64 connections per instance, 16,384 in all), pinned
to the server CPU. `bench/rust` `abuse` clients bind those source addresses:

  1. quiet: the steady client alone (IMDSv2: one token, then GETs at
     --rate req/s, a new connection every 50 requests);
  2. abuse: the flooder opens --idle idle connections and --flood-conns
     connections sending IMDSv1 GETs back to back, reopening whatever the
     server closes (capped at --max-connects attempts); meanwhile the steady
     client runs exactly as in 1. The flooder runs at nice 19 on the client
     CPU so that the steady client's own latency is not the flooder's doing.

Reports the flooder's 200s, 429s and refused connections, the steady
client's success rate (must be 100%) and p99 quiet vs abuse (target <= 2x),
imdsd's RSS before, at peak and after, and the CPU time imdsd spent in
each phase (user + system: what the flood cost it, however busy the
machine was otherwise). Loopback only; every phase ends
by itself.

    python3 bench/abuse.py [--seconds 10] [--rate 200] [--idle 3000] [--flood-conns 32]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import threading
import time

import lib

FLOODER = ("i-00000000000000002", "127.0.0.2")
STEADY = ("i-00000000000000003", "127.0.0.3")


def client(tools, mode: str, target: str, src: str, args: list[str], nice: int = 0) -> subprocess.Popen:
    cmd = lib.pinned(lib.CLIENT_CPU, [str(tools / "abuse"), mode, "--target", target, "--src", src] + args,
                     nice=nice)
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, preexec_fn=lib.raise_nofile)


def result(p: subprocess.Popen, timeout: float) -> dict:
    out, _ = p.communicate(timeout=timeout)
    return json.loads(out.strip().splitlines()[-1])


def counter(metrics: str, name: str) -> dict[str, float]:
    found = {}
    for line in metrics.splitlines():
        if line.startswith(name):
            key, value = line.rsplit(" ", 1)
            found[key] = float(value)
    return found


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=10.0, help="steady client's run, per phase")
    ap.add_argument("--rate", type=float, default=200.0, help="steady client's requests per second")
    ap.add_argument("--idle", type=int, default=3000, help="flooder's idle connections")
    ap.add_argument("--flood-conns", type=int, default=32, help="flooder's busy connections")
    ap.add_argument("--max-connects", type=int, default=100_000, help="cap on the flooder's connection attempts")
    ap.add_argument("--keep", action="store_true")
    a = ap.parse_args()
    lib.need("taskset")
    note = lib.machine_note()
    binary = lib.build_imdsd()
    tools = lib.build_tools()
    work = lib.workdir("abuse")
    srv = None
    try:
        data = work / "imdsd"
        data.mkdir()
        subprocess.run([str(tools / "load-instances"), "--db", str(data / "imdsd.redb"), "--count", "0",
                        "--extra", "=".join(FLOODER), "--extra", "=".join(STEADY)],
                       check=True, capture_output=True)
        # Default [limits]: the hardening under test.
        srv = lib.Imdsd(binary, data, name="imdsd", demo=False, config_text="").start()
        lib.wait_idle(srv.pid)
        target = srv.data
        steady_args = ["--seconds", str(a.seconds), "--rate", str(a.rate), "--reconnect-every", "50"]
        rss_before = srv.rss_kib()

        lib.log("quiet phase")
        cpu0 = lib.cpu_ticks(srv.pid)
        quiet = result(client(tools, "steady", target, STEADY[1], steady_args), a.seconds + 30)
        cpu_quiet = (lib.cpu_ticks(srv.pid) - cpu0) / lib.CLK_TCK

        lib.log("abuse phase")
        peak = [rss_before]
        stop = threading.Event()

        def sample() -> None:
            while not stop.is_set():
                peak.append(srv.rss_kib())
                time.sleep(0.2)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        flood_secs = a.seconds + 4
        cpu0 = lib.cpu_ticks(srv.pid)
        flooder = client(tools, "flood", target, FLOODER[1],
                         ["--seconds", str(flood_secs), "--idle", str(a.idle), "--flood-conns",
                          str(a.flood_conns), "--max-connects", str(a.max_connects)], nice=19)
        time.sleep(2)  # let the flood build up
        steady = client(tools, "steady", target, STEADY[1], steady_args)
        loaded = result(steady, a.seconds + 30)
        flood = result(flooder, flood_secs + 30)
        cpu_abuse = (lib.cpu_ticks(srv.pid) - cpu0) / lib.CLK_TCK
        stop.set()
        sampler.join()
        time.sleep(3)
        rss_after = srv.rss_kib()
        metrics = srv.metrics()
    finally:
        if srv:
            srv.stop()
        if not a.keep:
            shutil.rmtree(work, ignore_errors=True)

    lib.print_machine(note)
    print(f"# imdsd default [limits]; steady {STEADY[1]} at {a.rate:g} req/s for {a.seconds:g}s per phase; "
          f"flooder {FLOODER[1]}: {a.idle} idle + {a.flood_conns} busy connections for {flood_secs:g}s")
    print()
    print(f"flooder: {flood['ok']} answered 200, {flood['throttled_429']} answered 429, "
          f"{flood['other_status']} other statuses, {flood['refused']} connections refused (reset), "
          f"{flood['connect_attempts']} connection attempts ({flood['connect_errors']} failed to connect), at most {flood['idle_held_max']} idle held at once, "
          f"{flood['idle_closed_later']} idle closed later by the server, {flood['request_errors']} request errors")
    for name, r in (("quiet", quiet), ("abuse", loaded)):
        rate = 100.0 * r["ok"] / r["sent"] if r["sent"] else 0.0
        print(f"steady ({name}): {r['ok']}/{r['sent']} ok ({rate:.2f}%), statuses {r['statuses']}, "
              f"errors {r['errors']}, {r['connections']} connections, p50 {r['p50_ms']:.3f} ms, "
              f"p99 {r['p99_ms']:.3f} ms, max {r['max_ms']:.3f} ms; first request on a connection "
              f"p50 {r['first_on_connection_p50_ms']:.3f} ms, max {r['first_on_connection_max_ms']:.3f} ms")
    ok = loaded["sent"] > 0 and loaded["ok"] == loaded["sent"]
    ratio = loaded["p99_ms"] / quiet["p99_ms"] if quiet["p99_ms"] else float("inf")
    print(f"steady success under abuse: {'100%' if ok else 'NOT 100%'} (target 100%: {'meets' if ok else 'MISSES'}); "
          f"p99 abuse/quiet {ratio:.2f}x (target <= 2x: {'meets' if ratio <= 2 else 'MISSES'})")
    print(f"imdsd RSS: before {rss_before / 1024:.1f} MiB, peak {max(peak) / 1024:.1f} MiB, "
          f"after {rss_after / 1024:.1f} MiB")
    # CPU the server spent (user + system), whatever share of its CPU the
    # other work on the machine left it: what the flood cost imdsd.
    print(f"imdsd CPU: quiet phase {cpu_quiet:.2f} s, abuse phase {cpu_abuse:.2f} s "
          f"(flood of {flood_secs:g} s)")
    refused = counter(metrics, "imds_connections_refused_total")
    throttled = counter(metrics, "imds_requests_throttled_total")
    print(f"imdsd metrics: connections refused {refused}, throttled {throttled}")
    path = lib.save_results("abuse", {"machine": note, "args": vars(a), "quiet": quiet, "abuse": loaded,
                                      "flood": flood, "cpu_s": {"quiet": cpu_quiet, "abuse": cpu_abuse},
                                      "rss_kib": {"before": rss_before, "peak": max(peak),
                                                                  "after": rss_after},
                                      "metrics": {"refused": refused, "throttled": throttled}})
    print(f"raw results: {path.relative_to(lib.REPO)}")


if __name__ == "__main__":
    main()
