#!/usr/bin/env python3
"""Summarises a `make bench` run (tests/bench/run.sh) into a Markdown report.

usage: summarise.py RAW_DIR OUT.md

RAW_DIR holds what run.sh wrote:
  meta.txt   KEY=VALUE lines (date, machine, versions, settings)
  runs.tsv   proxy load round cpu_ticks wrk_output_file [user_ticks sys_ticks]
             (one line per wrk run; proxy "clb-nosplice" is clb with CLB_SPLICE=off)
  mem.tsv    proxy connections rss_before_kib rss_after_kib way (silent, one, burst)
  insn.tsv   proxy requests instructions tool
  tls.tsv    proxy protocol cipher group signature   (what `openssl s_client` negotiated)
  split.tsv  wrk_output_file user_samples kernel_samples   (perf task-clock samples of
             the proxy during that run; without it the split is /proc's utime/stime)
The report goes to OUT.md and to stdout.
"""
import os
import re
import statistics
import sys

PROXIES = ["clb", "nginx", "haproxy"]
NOSPLICE = "clb-nosplice"  # clb with CLB_SPLICE=off
LOADS = {
    "tiny": "2 B body, 50 conns, keep-alive",
    "16k": "16 KiB body, 200 conns, keep-alive",
    "1m": "1 MiB body, 20 conns, keep-alive",
    "close": "2 B body, 50 conns, `Connection: close`",
    "tls": "HTTPS, 2 B body, 50 conns, keep-alive",
    "tlsnew": "HTTPS, 2 B body, 50 conns, `Connection: close` (a handshake per request)",
    "tcp": "TCP listener, 1 MiB body, 20 conns, keep-alive",
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


def fmt_us(x):
    if x is None:
        return "—"
    return f"{x:.1f}" if x < 100 else f"{x:,.0f}"


def fmt_pct(x):
    return "—" if x is None else f"{100 * x:.0f} %"


def median_of(rs, key):
    xs = [r[key] for r in rs if r.get(key) is not None]
    return statistics.median(xs) if xs else None


def summary(rs, meta):
    """Medians of one (proxy, load)'s runs."""
    dur = float(meta.get("duration", "1"))
    return {
        "rps": statistics.median(r["rps"] for r in rs),
        "p99": median_of(rs, "p99"),
        "per": statistics.median(r["per_cpu_s"] for r in rs),
        "cpu_pct": statistics.median(100 * r["cpu_s"] / dur for r in rs),
        "user_us": median_of(rs, "user_us"),
        "sys_us": median_of(rs, "sys_us"),
        "sys_share": median_of(rs, "sys_share"),
        "errors": sum(r["non2xx"] + r["sockerr"] for r in rs),
    }


def main(raw, out_path):
    meta = {}
    with open(os.path.join(raw, "meta.txt")) as f:
        for line in f:
            key, _, value = line.rstrip("\n").partition("=")
            meta[key] = value
    hz = float(meta.get("clk_tck", "100"))

    split = {row[0]: (int(row[1]), int(row[2]))
             for row in read_tsv(os.path.join(raw, "split.tsv")) if len(row) >= 3}
    runs = {}  # (proxy, load) -> list of per-run dicts
    for row in read_tsv(os.path.join(raw, "runs.tsv")):
        proxy, load, rnd, ticks, wrk_file = row[:5]
        r = parse_wrk(os.path.join(raw, wrk_file))
        r["round"] = int(rnd)
        r["cpu_s"] = int(ticks) / hz
        r["per_cpu_s"] = r["requests"] / r["cpu_s"] if r["cpu_s"] > 0 else 0.0
        # the user/kernel split: perf's samples if taken, else /proc's utime and stime
        # (older raw folders have only the sum)
        share = None
        if wrk_file in split and sum(split[wrk_file]) > 0:
            share = split[wrk_file][1] / sum(split[wrk_file])
            # one sample per ms of run time: far fewer means perf missed part of the run
            r["coverage"] = sum(split[wrk_file]) / (1000 * r["cpu_s"]) if r["cpu_s"] else 0
        elif len(row) >= 7 and int(ticks) > 0:
            share = int(row[6]) / int(ticks)
        n = r["requests"]
        if share is not None and n:
            r["sys_share"] = share
            r["user_us"] = 1e6 * r["cpu_s"] * (1 - share) / n
            r["sys_us"] = 1e6 * r["cpu_s"] * share / n
        runs.setdefault((proxy, load), []).append(r)

    lines = []
    w = lines.append
    w(f"# clb benchmark results ({meta.get('date', '?')})")
    w("")
    w(f"- machine: {meta.get('nproc', '?')} cores (`nproc`), {meta.get('cpu', '?')}, "
      f"kernel {meta.get('kernel', '?')}")
    w(f"- versions: clb {meta.get('clb', '?')} ({meta.get('rustc', '?')}), "
      f"{meta.get('nginx', '?')}, {meta.get('haproxy', '?')}, {meta.get('wrk', '?')}"
      + (f", {meta['openssl']}" if "openssl" in meta else ""))
    w(f"- settings: {meta.get('rounds', '?')} rounds × {meta.get('duration', '?')} s per run, "
      f"proxies interleaved clb, nginx, haproxy"
      + (" (then clb with `CLB_SPLICE=off` in the 1m and tcp loads)"
         if meta.get("splice_off") == "1" else "")
      + f" in each round; proxy pinned to core "
      f"{meta.get('proxy_cpu', '?')}, wrk (1 thread) and the backends (one nginx worker) "
      f"to core {meta.get('load_cpu', '?')}"
      + (f"; loads: {meta['loads']}" if meta.get("loads") and
         meta["loads"].split() != list(LOADS) else ""))
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
    noisy = [(k[len("log_lines_"):], int(v)) for k, v in meta.items()
             if k.startswith("log_lines_") and int(v) > 20]
    for proxy, n in noisy:
        w(f"- **{proxy} wrote {n:,} log lines during the throughput runs**: logging costs it CPU")
    w("")
    w("Medians over the rounds. **req per CPU-s** = requests wrk completed / user+sys CPU "
      "seconds of the proxy's whole process tree during the run (the ranking figure: on 2 "
      "cores wrk and the backends cap raw req/s); for the handshake load it is handshakes "
      "per CPU-second. CPU % is of one core. **user µs/req** and **sys µs/req** split that "
      "CPU time per request, and **sys share** is the kernel's part: "
      + ("the proportion of perf `task-clock` samples (one per 1 ms of the proxy's own run "
         "time) that hit kernel code"
         if meta.get("split") == "perf" else
         "from utime and stime in /proc/PID/stat, which the kernel samples at its timer "
         "tick; **rough**: a proxy that works in short bursts is barely sampled, and the "
         "difference of two readings of a long-lived process drifts")
      + ". sys is the kernel working in the proxy's context: system calls, TCP, and on "
      "loopback much of the peer's receive path too. Errors are wrk's non-2xx/3xx "
      "responses plus socket errors, summed over the rounds.")
    w("")
    w("| load | proxy | req/s | p99 ms | proxy CPU % | req per CPU-s | user µs/req | "
      "sys µs/req | sys share | errors |")
    w("|---|---|--:|--:|--:|--:|--:|--:|--:|--:|")
    medians = {}
    for load, desc in LOADS.items():
        for proxy in PROXIES + [NOSPLICE]:
            rs = runs.get((proxy, load))
            if not rs:
                continue
            medians[(proxy, load)] = m = summary(rs, meta)
            if proxy == NOSPLICE:
                continue  # in its own table below
            p99_txt = f"{m['p99']:.2f}" if m["p99"] is not None else "—"
            err_txt = str(m["errors"]) if m["errors"] == 0 else f"**{m['errors']}**"
            w(f"| {desc} | {proxy} | {fmt_int(m['rps'])} | {p99_txt} | {m['cpu_pct']:.0f} | "
              f"{fmt_int(m['per'])} | {fmt_us(m['user_us'])} | {fmt_us(m['sys_us'])} | "
              f"{fmt_pct(m['sys_share'])} | {err_txt} |")
    thin = [f"{p} {load} round {r['round']} ({100 * r['coverage']:.0f} %)"
            for (p, load), rs in sorted(runs.items()) for r in rs
            if r.get("coverage") is not None and r["coverage"] < 0.8]
    if thin:
        w("")
        w("perf sampled less than 80 % of these runs' CPU time (the split is of the part "
          "sampled): " + ", ".join(thin) + ".")
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
    if meta.get("loads") and "tcp" in meta["loads"].split() and meta.get("nginx_stream") == "none":
        w("")
        w("nginx has no stream module here (libnginx-mod-stream): no nginx figure for the TCP load.")

    splice = [(load, desc) for load, desc in LOADS.items()
              if ("clb", load) in medians and (NOSPLICE, load) in medians]
    if splice:
        w("")
        w("clb splice on vs off: the same clb with `CLB_SPLICE=off` (bodies copied through "
          "user space instead of splice(2)), run in the same rounds (medians; a binary that "
          "ignores the variable gives equal figures):")
        w("")
        w("| load | req/CPU-s splice on | req/CPU-s splice off | on/off | user µs/req on / off | "
          "sys µs/req on / off | p99 ms on / off | errors off |")
        w("|---|--:|--:|--:|--:|--:|--:|--:|")
        for load, desc in splice:
            on, off = medians[("clb", load)], medians[(NOSPLICE, load)]
            p99 = " / ".join("—" if x is None else f"{x:.2f}" for x in (on["p99"], off["p99"]))
            err_txt = str(off["errors"]) if off["errors"] == 0 else f"**{off['errors']}**"
            w(f"| {desc} | {fmt_int(on['per'])} | {fmt_int(off['per'])} | "
              f"{ratio(on['per'], off['per'])} | {fmt_us(on['user_us'])} / {fmt_us(off['user_us'])} | "
              f"{fmt_us(on['sys_us'])} / {fmt_us(off['sys_us'])} | {p99} | {err_txt} |")

    tls = read_tsv(os.path.join(raw, "tls.tsv"))
    if tls:
        w("")
        w("TLS as negotiated by `openssl s_client` with OpenSSL's client defaults (the libssl "
          "wrk uses), one ECDSA P-256 self-signed certificate for all three; nginx and "
          "HAProxy are configured to clb's policy (TLS 1.2 + 1.3, ECDHE-GCM, server order, "
          "TLS_AES_128_GCM_SHA256 first, groups X25519, P-256, P-384)"
          + (" — **they differ**" if len({tuple(row[1:4]) for row in tls}) > 1 else "")
          + ":")
        w("")
        w("| proxy | protocol | cipher | key exchange | signature |")
        w("|---|---|---|---|---|")
        for row in tls:
            row = (row + ["?"] * 5)[:5]
            w(f"| {row[0]} | {row[1]} | {row[2]} | {row[3]} | {row[4]} |")
        if "tls_reuse_plain" in meta:
            shim = meta.get("tls_reuse_shim", "not used")
            w("")
            if shim == "not used":
                w(f"TLS sessions in the handshake load: **wrk resumes them** ({meta['tls_reuse_plain']} "
                  "connections to a test nginx were resumptions), so its figures are mostly "
                  "abbreviated handshakes (no certificate, no signature).")
            else:
                w("Full handshakes in the handshake load: wrk keeps the TLS session across its "
                  f"reconnects and would resume it ({meta['tls_reuse_plain']} connections to a test "
                  "nginx were resumptions); an LD_PRELOAD shim drops the session after "
                  f"`SSL_clear`, leaving {shim} resumed. Each proxy still issues its session "
                  "tickets, as deployed.")

    mem = read_tsv(os.path.join(raw, "mem.tsv"))
    if mem:
        w("")
        w(f"Memory per idle client connection: {meta.get('mem_conns', '?')} connections "
          "held idle on a fresh process of each proxy, three ways: *silent* (connected, never "
          "sent a byte), *one* (one `GET` of the 2 B body each, then idle), *burst* (first as "
          "many connections came, sent a `GET` each and went, then as *one*); VmRSS summed "
          "over the proxy's process tree before and after (kernel socket buffers are not in "
          "RSS). Target for clb: ≤ 400 B."
          + (" Fewer than 10,000 connections: fixed costs weigh more per connection."
             if int(meta.get("mem_conns", "10000")) < 10000 else ""))
        w("")
        w("| way | proxy | connections held | RSS before | RSS after | bytes per connection |")
        w("|---|---|--:|--:|--:|--:|")
        for row in mem:
            proxy, conns, before, after = row[:4]
            mode = row[4] if len(row) > 4 else "one"
            conns, before, after = int(conns), int(before), int(after)
            per = (after - before) * 1024 / conns if conns else 0
            w(f"| {mode} | {proxy} | {conns:,} | {before:,} KiB | {after:,} KiB | {per:,.0f} |")
        w("")

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
        for proxy in PROXIES + [NOSPLICE]:
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
