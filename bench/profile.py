#!/usr/bin/env python3
"""Where the data plane's time goes, per workload (IMDSv2 GET, IMDSv1 GET,
token PUT), on the release binary.

  1. perf (sampling, software `cpu-clock` event, so it works where hardware
     counters are "not supported"): flat profile of imdsd under wrk load,
     split by DSO (kernel vs imdsd vs libc) and by symbol.
  2. callgrind: exactly --requests requests per workload on one keep-alive
     connection, counters zeroed before and dumped after each workload:
     instructions per request, calls to malloc/calloc/realloc/free per
     request, and the top functions (exclusive and inclusive).
  3. strace -c (if installed): system calls per request.

Full reports go to target/bench-results/profile-<time>/.

    python3 bench/profile.py [--requests 2000] [--perf-seconds 5] [--skip-perf] [--skip-callgrind]
"""

from __future__ import annotations

import argparse
import http.client
import re
import shutil
import subprocess
import time
from pathlib import Path

import lib

PATH = "/latest/meta-data/instance-id"
ALLOC_FNS = ("malloc", "calloc", "realloc", "free", "posix_memalign", "aligned_alloc")


def workloads(token: str) -> list[tuple[str, str, dict, str, list[str]]]:
    return [
        ("v2_get", "GET", {"X-aws-ec2-metadata-token": token}, "v2_get.lua", [token]),
        ("v1_get", "GET", {}, "v1_get.lua", []),
        ("token_put", "PUT", {"X-aws-ec2-metadata-token-ttl-seconds": "21600"}, "token_put.lua", []),
    ]


def send(addr: str, method: str, headers: dict, n: int) -> None:
    host, port = addr.rsplit(":", 1)
    c = http.client.HTTPConnection(host, int(port), timeout=60)
    path = "/latest/api/token" if method == "PUT" else PATH
    for _ in range(n):
        c.request(method, path, headers=headers)
        r = c.getresponse()
        r.read()
        if r.status != 200:
            raise RuntimeError(f"{method} answered {r.status}")
    c.close()


def perf_profile(binary: Path, out: Path, seconds: float) -> list[str]:
    lines = []
    if shutil.which("perf") is None:
        return ["perf: not installed (apt-get install linux-perf)"]
    work = lib.workdir("perf")
    srv = lib.Imdsd(binary, work / "imdsd").start()
    try:
        lib.wait_idle(srv.pid)
        token = lib.imds_token(srv.data)
        for name, _, _, script, args in workloads(token):
            data = out / f"perf-{name}.data"
            load = subprocess.Popen(
                lib.pinned(lib.CLIENT_CPU, ["wrk", "-t1", "-c32", f"-d{round(seconds) + 2}s", "-s",
                                            str(lib.BENCH / "wrk" / script), f"http://{srv.data}"]
                           + (["--"] + args if args else [])),
                stdout=subprocess.DEVNULL)
            time.sleep(1)
            subprocess.run(["perf", "record", "-q", "-e", "cpu-clock", "-F", "4000", "-o", str(data),
                            "-p", str(srv.pid), "--", "sleep", str(seconds)],
                           check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            load.wait()
            by_dso = subprocess.run(["perf", "report", "-i", str(data), "--stdio", "--no-children",
                                     "--sort", "dso", "--percent-limit", "1"],
                                    capture_output=True, text=True).stdout
            by_sym = subprocess.run(["perf", "report", "-i", str(data), "--stdio", "--no-children",
                                     "--sort", "dso,sym", "--percent-limit", "0.8"],
                                    capture_output=True, text=True).stdout
            (out / f"perf-{name}.txt").write_text(by_dso + "\n" + by_sym)
            lines.append(f"== perf {name}: share by DSO")
            lines += [l for l in by_dso.splitlines() if l.strip() and not l.startswith("#")][:6]
            lines.append(f"== perf {name}: top symbols")
            lines += [l for l in by_sym.splitlines() if l.strip() and not l.startswith("#")][:25]
    finally:
        srv.stop()
        shutil.rmtree(work, ignore_errors=True)
    return lines


def parse_callgrind(dump: Path) -> tuple[dict[str, int], dict[str, int], dict[str, int]]:
    """Reads a callgrind dump: (self cost by function, inclusive cost of
    calls by callee, number of calls by callee). callgrind_annotate 3.19
    misattributes dumps taken after `callgrind_control -z`, so the file is
    read here (format: valgrind docs, "Callgrind Format Specification")."""
    names: dict[str, str] = {}
    own: dict[str, int] = {}
    incl: dict[str, int] = {}
    calls: dict[str, int] = {}
    current = callee = None
    pending_call = False
    named = re.compile(r"\((\d+)\)(?: (.*))?")

    def name_of(ref: str) -> str:
        m = named.match(ref)
        if not m:
            return ref.strip()
        if m.group(2):
            names[m.group(1)] = m.group(2).strip()
        return names.get(m.group(1), ref)

    for line in dump.read_text(errors="replace").splitlines():
        if not line:
            continue
        c = line[0]
        if line.startswith("fn="):
            current = name_of(line[3:])
        elif line.startswith("cfn="):
            callee = name_of(line[4:])
        elif line.startswith("calls="):
            calls[callee] = calls.get(callee, 0) + int(line[6:].split()[0])
            pending_call = True
        elif c.isdigit() or c in "+-*":
            parts = line.split()
            cost = int(parts[1]) if len(parts) > 1 else 0
            if pending_call:
                incl[callee] = incl.get(callee, 0) + cost
                pending_call = False
            else:
                own[current] = own.get(current, 0) + cost
    return own, incl, calls


def parse_calls(dump: Path) -> dict[str, int]:
    """Calls of ALLOC_FNS in the dump."""
    _, _, calls = parse_callgrind(dump)
    return {f: calls.get(f, 0) for f in ALLOC_FNS}


def total_ir(dump: Path) -> int:
    for line in dump.read_text(errors="replace").splitlines():
        if line.startswith("summary:") or line.startswith("totals:"):
            return int(line.split()[1])
    return 0


def callgrind_profile(binary: Path, out: Path, n: int) -> list[str]:
    if shutil.which("valgrind") is None:
        return ["callgrind: valgrind not installed"]
    work = lib.workdir("callgrind")
    lines = []
    # First start natively: creating the identity signer under valgrind takes long.
    lib.Imdsd(binary, work / "imdsd").start().stop()
    cg_out = out / "callgrind.out"
    srv = lib.Imdsd(binary, work / "imdsd", wrapper=["valgrind", "--tool=callgrind",
                                                     f"--callgrind-out-file={cg_out}"])
    try:
        srv.start(timeout=600)
        token = lib.imds_token(srv.data)
        pid = srv.pid
        for name, method, headers, _, _ in workloads(token):
            send(srv.data, method, headers, 50)  # warm-up
            subprocess.run(["callgrind_control", "-z", str(pid)], check=True, capture_output=True)
            send(srv.data, method, headers, n)
            subprocess.run(["callgrind_control", "-d", name, str(pid)], check=True, capture_output=True)
            dumps = sorted(out.glob("callgrind.out*"), key=lambda p: p.stat().st_mtime)
            dump = dumps[-1]
            target = out / f"callgrind-{name}.out"
            dump.rename(target)
            ir = total_ir(target)
            calls = parse_calls(target)
            own, incl, ncalls = parse_callgrind(target)
            calls = {f: ncalls.get(f, 0) for f in ALLOC_FNS}
            top_own = sorted(own.items(), key=lambda kv: -kv[1])[:40]
            top_incl = sorted(incl.items(), key=lambda kv: -kv[1])[:80]
            with open(out / f"callgrind-{name}.txt", "w") as f:
                f.write(f"{ir / n:,.0f} instructions per request over {n} requests\n\nself cost:\n")
                for fn, cost in top_own:
                    f.write(f"{cost / n:>10,.0f} Ir/req {100 * cost / ir:5.1f}%  {fn}\n")
                f.write("\ninclusive cost of calls, calls per request:\n")
                for fn, cost in top_incl:
                    f.write(f"{cost / n:>10,.0f} Ir/req {100 * cost / ir:5.1f}%  {ncalls.get(fn, 0) / n:6.2f}x  {fn}\n")
            allocs = sum(calls[f] for f in ALLOC_FNS if f != "free")
            lines.append(f"== callgrind {name}: {ir / n:,.0f} instructions/request, "
                         f"{allocs / n:.1f} allocations/request (malloc {calls['malloc'] / n:.1f}, "
                         f"realloc {calls['realloc'] / n:.1f}, calloc {calls['calloc'] / n:.1f}), "
                         f"free {calls['free'] / n:.1f}/request")
            lines += [f"   self {cost / n:>7,.0f} Ir/req {100 * cost / ir:5.1f}%  {fn[:150]}" for fn, cost in top_own[:15]]
    finally:
        srv.stop()
        shutil.rmtree(work, ignore_errors=True)
    return lines


def strace_profile(binary: Path, out: Path, n: int) -> list[str]:
    if shutil.which("strace") is None:
        return ["strace: not installed (apt-get install strace)"]
    work = lib.workdir("strace")
    lines = []
    srv = lib.Imdsd(binary, work / "imdsd").start()
    try:
        lib.wait_idle(srv.pid)
        token = lib.imds_token(srv.data)
        for name, method, headers, _, _ in workloads(token):
            report = out / f"strace-{name}.txt"
            tr = subprocess.Popen(["strace", "-c", "-f", "-o", str(report), "-p", str(srv.pid)],
                                  stderr=subprocess.DEVNULL)
            time.sleep(1)
            send(srv.data, method, headers, n)
            time.sleep(0.5)
            tr.terminate()
            tr.wait()
            text = report.read_text()
            rows = []
            for l in text.splitlines():
                parts = l.split()
                if len(parts) >= 5 and parts[0][0].isdigit() and parts[-1] not in ("total",):
                    calls = int(parts[3])
                    rows.append((calls, parts[-1]))
            rows.sort(reverse=True)
            total = sum(c for c, _ in rows)
            lines.append(f"== strace {name}: {total / n:.2f} system calls/request: "
                         + ", ".join(f"{s} {c / n:.2f}" for c, s in rows[:8]))
    finally:
        srv.stop()
        shutil.rmtree(work, ignore_errors=True)
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=2000, help="per workload under callgrind and strace")
    ap.add_argument("--perf-seconds", type=float, default=5.0)
    ap.add_argument("--skip-perf", action="store_true")
    ap.add_argument("--skip-callgrind", action="store_true")
    ap.add_argument("--skip-strace", action="store_true")
    a = ap.parse_args()
    note = lib.machine_note()
    binary = lib.build_imdsd()
    out = lib.RESULTS / f"profile-{time.strftime('%Y%m%d-%H%M%S')}"
    out.mkdir(parents=True)
    lines: list[str] = []
    if not a.skip_perf:
        lines += perf_profile(binary, out, a.perf_seconds)
    if not a.skip_callgrind:
        lines += callgrind_profile(binary, out, a.requests)
    if not a.skip_strace:
        lines += strace_profile(binary, out, a.requests)
    lib.print_machine(note)
    print("\n".join(lines))
    print(f"full reports: {out.relative_to(lib.REPO)}")


if __name__ == "__main__":
    main()
