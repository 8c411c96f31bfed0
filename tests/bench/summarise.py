#!/usr/bin/env python3
"""Summarises a `make bench` run (tests/bench/run.sh) into a Markdown report.

usage: summarise.py RAW_DIR OUT.md

RAW_DIR holds what run.sh wrote:
  meta.txt   KEY=VALUE lines (date, machine, versions, settings)
  runs.tsv   proxy load round cpu_ticks wrk_output_file   (one line per wrk run)
  mem.tsv    proxy connections rss_before_kib rss_after_kib
  insn.tsv   proxy requests instructions tool
The report goes to OUT.md and to stdout.
"""
import os
import re
import statistics
import sys

PROXIES = ["clb", "nginx", "haproxy"]
LOADS = {
    "tiny": "2 B body, 50 conns, keep-alive",
    "16k": "16 KiB body, 200 conns, keep-alive",
    "1m": "1 MiB body, 20 conns, keep-alive",
    "close": "2 B body, 50 conns, `Connection: close`",
}
UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


def duration_ms(text):
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    return float(m.group(1)) * UNITS[m.group(2)]


def parse_wrk(path):
    out = {"requests": 0, "rps": 0.0, "p99": None, "non2xx": 0, "sockerr": 0}
    with open(path) as f:
        text = f.read()
    m = re.search(r"^\s*(\d+) requests in ([\d.]+)(\w+),", text, re.M)
    if m:
        out["requests"] = int(m.group(1))
    m = re.search(r"^Requests/sec:\s*([\d.]+)", text, re.M)
    if m:
        out["rps"] = float(m.group(1))
    m = re.search(r"^\s*99%\s+(\S+)", text, re.M)
    if m:
        out["p99"] = duration_ms(m.group(1))
    m = re.search(r"Non-2xx or 3xx responses:\s*(\d+)", text)
    if m:
        out["non2xx"] = int(m.group(1))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if m:
        out["sockerr"] = sum(int(g) for g in m.groups())
        out["sockerr_detail"] = m.group(0)
    return out


def read_tsv(path):
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [line.rstrip("\n").split("\t") for line in f if line.strip()]


def fmt_int(x):
    return f"{x:,.0f}"


def ratio(a, b):
    return f"{a / b:.2f}×" if a and b else "—"


def main(raw, out_path):
    meta = {}
    with open(os.path.join(raw, "meta.txt")) as f:
        for line in f:
            key, _, value = line.rstrip("\n").partition("=")
            meta[key] = value
    hz = float(meta.get("clk_tck", "100"))

    runs = {}  # (proxy, load) -> list of per-run dicts
    for proxy, load, rnd, ticks, wrk_file in read_tsv(os.path.join(raw, "runs.tsv")):
        r = parse_wrk(os.path.join(raw, wrk_file))
        r["round"] = int(rnd)
        r["cpu_s"] = int(ticks) / hz
        r["per_cpu_s"] = r["requests"] / r["cpu_s"] if r["cpu_s"] > 0 else 0.0
        runs.setdefault((proxy, load), []).append(r)

    lines = []
    w = lines.append
    w(f"# clb benchmark results ({meta.get('date', '?')})")
    w("")
    w(f"- machine: {meta.get('nproc', '?')} cores (`nproc`), {meta.get('cpu', '?')}, "
      f"kernel {meta.get('kernel', '?')}")
    w(f"- versions: clb {meta.get('clb', '?')} ({meta.get('rustc', '?')}), "
      f"{meta.get('nginx', '?')}, {meta.get('haproxy', '?')}, {meta.get('wrk', '?')}")
    w(f"- settings: {meta.get('rounds', '?')} rounds × {meta.get('duration', '?')} s per run, "
      f"proxies interleaved clb, nginx, haproxy in each round; proxy pinned to core "
      f"{meta.get('proxy_cpu', '?')}, wrk (1 thread) and the backends (one nginx worker) "
      f"to core {meta.get('load_cpu', '?')}")
    if "phase_wall" in meta:
        wall = float(meta["phase_wall"])
        cores = float(meta.get("nproc", "2"))
        other = 100 * int(meta["phase_other_ticks"]) / hz / wall
        ours = 100 * int(meta["phase_ours_ticks"]) / hz / wall
        steal = 100 * int(meta.get("phase_steal_ticks", "0")) / hz / wall
        w(f"- CPU during the throughput runs ({wall:.0f} s), in % of one core out of "
          f"{cores * 100:.0f} %: the benchmark's processes {ours:.0f} %, anything else "
          f"(other processes, interrupts) {max(other, 0):.0f} %, steal {steal:.0f} %"
          + (" — **the machine was shared: timings are disturbed**" if other + steal > 20 else ""))
    w("")
    w("Medians over the rounds. **req per CPU-s** = requests wrk completed / user+sys CPU "
      "seconds of the proxy's whole process tree during the run (the ranking figure: on 2 "
      "cores wrk and the backends cap raw req/s). CPU % is of one core. Errors are wrk's "
      "non-2xx/3xx responses plus socket errors, summed over the rounds.")
    w("")
    w("| load | proxy | req/s | p99 ms | proxy CPU % | req per CPU-s | errors |")
    w("|---|---|--:|--:|--:|--:|--:|")
    medians = {}
    for load, desc in LOADS.items():
        for proxy in PROXIES:
            rs = runs.get((proxy, load))
            if not rs:
                continue
            rps = statistics.median(r["rps"] for r in rs)
            p99s = [r["p99"] for r in rs if r["p99"] is not None]
            p99 = statistics.median(p99s) if p99s else None
            per = statistics.median(r["per_cpu_s"] for r in rs)
            dur = float(meta.get("duration", "1"))
            cpu_pct = statistics.median(100 * r["cpu_s"] / dur for r in rs)
            errors = sum(r["non2xx"] + r["sockerr"] for r in rs)
            medians[(proxy, load)] = {"rps": rps, "p99": p99, "per": per}
            p99_txt = f"{p99:.2f}" if p99 is not None else "—"
            err_txt = str(errors) if errors == 0 else f"**{errors}**"
            w(f"| {desc} | {proxy} | {fmt_int(rps)} | {p99_txt} | {cpu_pct:.0f} | "
              f"{fmt_int(per)} | {err_txt} |")
    w("")
    w("Ratios of clb to each peer (req per CPU-s: higher is better, the target is ≥ 1.5×; "
      "p99: lower is better, the target is ≤ 1.00×):")
    w("")
    w("| load | req/CPU-s clb/nginx | req/CPU-s clb/haproxy | p99 clb/nginx | p99 clb/haproxy |")
    w("|---|--:|--:|--:|--:|")
    for load, desc in LOADS.items():
        c = medians.get(("clb", load))
        n = medians.get(("nginx", load))
        h = medians.get(("haproxy", load))
        if not c:
            continue
        w(f"| {desc} | {ratio(c['per'], n and n['per'])} | {ratio(c['per'], h and h['per'])} | "
          f"{ratio(c['p99'], n and n['p99'])} | {ratio(c['p99'], h and h['p99'])} |")

    mem = read_tsv(os.path.join(raw, "mem.tsv"))
    if mem:
        w("")
        w(f"Memory per idle keep-alive client connection: {meta.get('mem_conns', '?')} "
          "connections opened, one `GET` of the 2 B body each, then held idle; VmRSS summed "
          "over the proxy's process tree before and after (kernel socket buffers are not in "
          "RSS). Target for clb: ≤ 1 KiB."
          + (" Fewer than 10,000 connections: fixed costs weigh more per connection."
             if int(meta.get("mem_conns", "10000")) < 10000 else ""))
        w("")
        w("| proxy | connections held | RSS before | RSS after | bytes per connection |")
        w("|---|--:|--:|--:|--:|")
        for proxy, conns, before, after in mem:
            conns, before, after = int(conns), int(before), int(after)
            per = (after - before) * 1024 / conns if conns else 0
            w(f"| {proxy} | {conns:,} | {before:,} KiB | {after:,} KiB | {per:,.0f} |")

    insn = read_tsv(os.path.join(raw, "insn.tsv"))
    if insn:
        w("")
        w("Instructions per request (user space, the proxy process alone, 2 B body over "
          f"{meta.get('insn_conns', '?')} keep-alive connections, counted after a warm-up; "
          "a repeatable figure for regressions, unlike the timings above):")
        w("")
        w("| proxy | requests | instructions | per request | counted with |")
        w("|---|--:|--:|--:|---|")
        for proxy, reqs, instr, tool in insn:
            reqs, instr = int(reqs), int(instr)
            per = instr / reqs if reqs else 0
            w(f"| {proxy} | {reqs:,} | {instr:,} | {per:,.0f} | {tool} |")

    bad = []
    for (proxy, load), rs in sorted(runs.items()):
        for r in rs:
            if r["non2xx"] or r["sockerr"]:
                bad.append(f"- {proxy} {load} round {r['round']}: non-2xx {r['non2xx']}, "
                           f"{r.get('sockerr_detail', 'socket errors 0')}")
    if bad:
        w("")
        w("Runs with errors:")
        w("")
        lines.extend(bad)

    w("")
    w("Per run (req/s, p99 ms, req per CPU-s):")
    w("")
    w("| load | proxy | " + " | ".join(f"round {i}" for i in range(1, int(meta.get("rounds", "1")) + 1)) + " |")
    w("|---|---|" + "--:|" * int(meta.get("rounds", "1")))
    for load, desc in LOADS.items():
        for proxy in PROXIES:
            rs = sorted(runs.get((proxy, load), []), key=lambda r: r["round"])
            if not rs:
                continue
            cells = [f"{fmt_int(r['rps'])} / {r['p99'] if r['p99'] is None else round(r['p99'], 2)} / "
                     f"{fmt_int(r['per_cpu_s'])}" for r in rs]
            w(f"| {load} | {proxy} | " + " | ".join(cells) + " |")

    text = "\n".join(lines) + "\n"
    with open(out_path, "w") as f:
        f.write(text)
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    sys.exit(main(sys.argv[1], sys.argv[2]))
