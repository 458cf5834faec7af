#!/usr/bin/env python3
"""Data-plane throughput and latency of imdsd against nginx, side by side.

Starts, each pinned to the server CPU (taskset):
  * nginx (one worker) serving the demo instance id from a static file and
    answering the token PUT with `return 200` and a 55-byte body;
  * imdsd with the demo instance only;
  * imdsd with the demo instance plus N instances loaded through the store
    (`--instances N`, default 100000; 0 leaves it out);
  * bare-hyper (`bench/rust`): tokio + hyper answering the same constant
    bytes with nothing else, the floor of any hyper server (`--no-bare`
    leaves it out), so imdsd / bare-hyper shows what imdsd's own work costs;
then drives them with wrk (one thread, from the other CPU) through three
workloads (IMDSv2 GET with a token, IMDSv1 GET, token PUT), interleaving the
servers inside every round and rotating their order between rounds. Every
figure is reported as a ratio to nginx measured in the same round, so a
machine busy with other work slows both sides alike.

    python3 bench/throughput.py [--rounds 5] [--seconds 4] [--connections 32] [--instances 100000]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time

import lib

WORKLOADS = [
    # name, wrk script, needs a token, target ratio to nginx
    ("v2_get", "v2_get.lua", True, 1.30),
    ("v1_get", "v1_get.lua", False, 1.30),
    ("token_put", "token_put.lua", False, 0.95),
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=4.0, help="per wrk run")
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--instances", type=int, default=100_000, help="extra instances in the second imdsd; 0: none")
    ap.add_argument("--past", type=float, default=0.0,
                    help="start measuring the loaded imdsd only once it has run this long and is idle again "
                         "(0: as soon as it is idle)")
    ap.add_argument("--no-bare", action="store_true", help="leave out the bare tokio + hyper reference")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    a = ap.parse_args()
    lib.need("wrk", "nginx", "taskset")

    note = lib.machine_note()
    binary = lib.build_imdsd()
    tools = lib.build_tools() if a.instances or not a.no_bare else None
    work = lib.workdir("throughput")
    servers: dict[str, object] = {}
    try:
        nginx = lib.Nginx(work / "nginx").start()
        servers["nginx"] = nginx
        imdsd = lib.Imdsd(binary, work / "imdsd-1", name="imdsd").start()
        servers["imdsd"] = imdsd
        big = None
        if a.instances:
            data = work / f"imdsd-{a.instances}"
            data.mkdir()
            lib.log(f"loading {a.instances} instances through the store")
            out = subprocess.run(
                [str(tools / "load-instances"), "--db", str(data / "imdsd.redb"), "--count", str(a.instances)],
                check=True, capture_output=True, text=True,
            ).stdout
            lib.log(f"loaded: {out.strip()}")
            started = time.monotonic()
            big = lib.Imdsd(binary, data, name=f"imdsd+{a.instances}").start()
            servers[big.name] = big
            lib.log(f"{big.name}: healthy after {big.seconds_to_healthy:.2f}s; waiting for background work")
            settled = lib.wait_idle(big.pid)
            lib.log(f"{big.name}: idle {settled:.0f}s later, RSS {big.rss_kib() / 1024:.0f} MiB")
            age = time.monotonic() - started
            if a.past > age:
                lib.log(f"{big.name}: waiting {a.past - age:.0f}s more for its periodic usage writes (--past)")
                time.sleep(a.past - age)
                settled = lib.wait_idle(big.pid)
                lib.log(f"{big.name}: idle again after {settled:.0f}s")
        lib.wait_idle(imdsd.pid)
        addrs = {"nginx": f"127.0.0.1:{nginx.port}", "imdsd": imdsd.data}
        tokens = {"nginx": "A" * lib.TOKEN_LEN, "imdsd": lib.imds_token(imdsd.data)}
        if big:
            addrs[big.name] = big.data
            tokens[big.name] = lib.imds_token(big.data)
        if not a.no_bare:
            bare = lib.BareHyper(tools / "bare-hyper").start()
            servers[bare.name] = bare
            addrs[bare.name] = f"127.0.0.1:{bare.port}"
            tokens[bare.name] = "A" * lib.TOKEN_LEN
        names = list(addrs)

        def once(server: str, workload: tuple, seconds: float) -> dict:
            name, script, needs_token, _ = workload
            args = [tokens[server]] if needs_token else []
            return lib.wrk(addrs[server], script, args, seconds, a.connections,
                           lib.tree_pids(servers[server].pid))

        lib.log("warm-up")
        for w in WORKLOADS:
            for s in names:
                r = once(s, w, 1)
                if r["errors"]:
                    sys.exit(f"{s} {w[0]}: {r['errors']} errors in warm-up; is the server answering 200?")

        results: dict[str, dict[str, list[dict]]] = {w[0]: {s: [] for s in names} for w in WORKLOADS}
        for rnd in range(a.rounds):
            order = names[rnd % len(names):] + names[: rnd % len(names)]
            for w in WORKLOADS:
                for s in order:
                    r = once(s, w, a.seconds)
                    results[w[0]][s].append(r)
            lib.log(f"round {rnd + 1}/{a.rounds} done")
        rss = {s: lib.rss_kib(servers[s].pid) for s in names if s != "nginx"}
    finally:
        for s in servers.values():
            s.stop()
        if not a.keep:
            shutil.rmtree(work, ignore_errors=True)

    report(a, note, names, results, rss)


def report(a, note, names, results, rss) -> None:
    lib.print_machine(note)
    print(f"# {a.rounds} rounds x {a.seconds:g}s per server and workload, wrk -t1 -c{a.connections}, "
          f"servers on CPU {lib.SERVER_CPU}, wrk on CPU {lib.CLIENT_CPU}")
    print("# req/s and latency are what the client saw; cpu = share of one CPU the server used;")
    print("# req/cpu-s = requests per CPU-second of the server (independent of how much CPU other")
    print("# work on the machine left it). Ratios: median [min..max] over rounds, each round's")
    print("# imdsd run against the nginx run of the same round.")
    print()
    print(f"{'workload':<10} {'server':<14} {'req/s':>7} {'cpu':>5} {'req/cpu-s':>9} {'p50 ms':>7} {'p99 ms':>7}"
          f" {'err':>3}  {'req/s ratio':<22} {'req/cpu-s ratio':<22} target")
    summary = {}
    for w, _, _, target in WORKLOADS:
        for s in names:
            runs = results[w][s]
            rps = lib.median([r["rps"] for r in runs])
            cpu = lib.median([r["server_cpu"] for r in runs])
            eff = lib.median([r["req_per_cpu_s"] for r in runs])
            p50 = lib.median([r["p50_ms"] for r in runs])
            p99 = lib.median([r["p99_ms"] for r in runs])
            errs = sum(r["errors"] for r in runs)
            entry = {"rps": rps, "server_cpu": cpu, "req_per_cpu_s": eff, "p50_ms": p50, "p99_ms": p99,
                     "errors": errs}
            cols = ""
            if s != "nginx":
                nruns = results[w]["nginx"]
                ratios = [r["rps"] / n["rps"] for r, n in zip(runs, nruns)]
                effs = [r["req_per_cpu_s"] / n["req_per_cpu_s"] for r, n in zip(runs, nruns)]
                med, emed = lib.median(ratios), lib.median(effs)
                verdict = "meets" if med >= target else "MISSES"
                everdict = "meets" if emed >= target else "MISSES"
                cols = (f"{med:.2f}x [{min(ratios):.2f}..{max(ratios):.2f}]".ljust(22) + " "
                        + f"{emed:.2f}x [{min(effs):.2f}..{max(effs):.2f}]".ljust(22)
                        + f" >= {target}: {verdict} / {everdict}")
                entry.update(ratio=med, ratio_min=min(ratios), ratio_max=max(ratios), cpu_ratio=emed,
                             cpu_ratio_min=min(effs), cpu_ratio_max=max(effs), target=target)
            print(f"{w:<10} {s:<14} {rps:>7.0f} {cpu:>5.2f} {eff:>9.0f} {p50:>7.3f} {p99:>7.3f} {errs:>3}  {cols}")
            summary.setdefault(w, {})[s] = entry
        if "bare-hyper" in names:
            ratios = [i["rps"] / b["rps"] for i, b in zip(results[w]["imdsd"], results[w]["bare-hyper"])]
            effs = [i["req_per_cpu_s"] / b["req_per_cpu_s"]
                    for i, b in zip(results[w]["imdsd"], results[w]["bare-hyper"])]
            print(f"{'':<10} {'imdsd / bare-hyper':<58}  "
                  f"{lib.median(ratios):.2f}x [{min(ratios):.2f}..{max(ratios):.2f}]".ljust(24) + " "
                  + f"{lib.median(effs):.2f}x [{min(effs):.2f}..{max(effs):.2f}]".ljust(22)
                  + " (1.00: imdsd's own work is free)")
            summary[w]["imdsd_vs_bare"] = lib.median(ratios)
            summary[w]["imdsd_vs_bare_cpu"] = lib.median(effs)
        bigs = [n for n in names if n.startswith("imdsd+")]
        if bigs:
            big = bigs[0]
            ratios = [b["rps"] / i["rps"] for b, i in zip(results[w][big], results[w]["imdsd"])]
            effs = [b["req_per_cpu_s"] / i["req_per_cpu_s"] for b, i in zip(results[w][big], results[w]["imdsd"])]
            print(f"{'':<10} {big + ' / imdsd':<58}  "
                  f"{lib.median(ratios):.2f}x [{min(ratios):.2f}..{max(ratios):.2f}]".ljust(24) + " "
                  + f"{lib.median(effs):.2f}x [{min(effs):.2f}..{max(effs):.2f}]".ljust(22)
                  + " (1.00: lookup cost does not grow)")
            best = (max(r["req_per_cpu_s"] for r in results[w][big])
                    / max(r["req_per_cpu_s"] for r in results[w]["imdsd"]))
            print(f"{'':<10} {'best round of each, req/cpu-s':<58}  {best:.2f}x  (background work in a"
                  " server only adds CPU: the best round is its cleanest figure)")
            summary[w]["loaded_vs_single"] = lib.median(ratios)
            summary[w]["loaded_vs_single_cpu"] = lib.median(effs)
            summary[w]["loaded_vs_single_cpu_best"] = best
    print()
    print("RSS after the run: " + ", ".join(f"{s} {kib / 1024:.1f} MiB" for s, kib in rss.items()))
    path = lib.save_results("throughput", {"machine": note, "args": vars(a), "summary": summary,
                                           "runs": results, "rss_kib": rss})
    print(f"raw results: {path.relative_to(lib.REPO)}")


if __name__ == "__main__":
    main()
