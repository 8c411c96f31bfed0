#!/usr/bin/env bash
# Slow clients (issue 7): do thousands of slow-loris connections slow normal clients?
# clb (release, --workers 1) in front of one nginx instance; wrk measures normal
# keep-alive requests alone, then again while SLOW connections each hold a partial
# request head and trickle a byte every 2 s (well inside the header timeout). Prints
# both runs and the ratios (target: at most 10 % slower). Bounded: about 40 s.
# Needs nginx and wrk (installed with apt when missing).
set -euo pipefail
cd "$(dirname "$0")/../.."

SLOW="${SLOW:-5000}"
DURATION="${DURATION:-8}"
PORT="${PORT:-18481}"
BACKEND_PORT=$((PORT + 1))
work=$(mktemp -d)
cleanup() {
    kill $(jobs -p) 2>/dev/null || true
    if [ -f "$work/nginx.pid" ]; then kill "$(cat "$work/nginx.pid")" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT
ulimit -n 20000

missing=()
command -v nginx >/dev/null || missing+=(nginx-light)
command -v wrk >/dev/null || missing+=(wrk)
if [ "${#missing[@]}" -gt 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
cargo build --release -q

cat > "$work/nginx.conf" <<CONF
worker_processes 1;
daemon off;
pid $work/nginx.pid;
error_log $work/nginx-error.log;
events { worker_connections 4096; }
http {
  access_log off;
  server { listen 127.0.0.2:$BACKEND_PORT; location / { return 200 "ok"; } }
}
CONF
nginx -c "$work/nginx.conf" -p "$work" &
target/release/clb --listener "http:$PORT:http:$BACKEND_PORT" --bind 127.0.0.1 --api off \
    --workers 1 --max-connections 20000 --instance i-1=127.0.0.2 \
    --health-check "HTTP:$BACKEND_PORT/" 2>"$work/clb.log" &
for _ in $(seq 100); do
    grep -q InService "$work/clb.log" && break
    sleep 0.1
done

run() {
    wrk -t1 -c50 -d"${DURATION}s" --latency "http://127.0.0.1:$PORT/" >"$work/$1.txt"
    python3 - "$work/$1.txt" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
def ms(p):
    m = re.search(p + r"%\s+([\d.]+)(us|ms|s)", text)
    v, unit = float(m.group(1)), m.group(2)
    return v / 1000 if unit == "us" else v * 1000 if unit == "s" else v
print(f"{rps:.0f} {ms('50'):.3f} {ms('99'):.3f}")
PY
}

read -r base_rps base_p50 base_p99 < <(run alone)
python3 - "$PORT" "$SLOW" "$work/slow.ready" <<'PY' &
import socket, sys, time
port, n, ready = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
socks = []
for i in range(n):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"GET /slow HTTP/1.1\r\nHost: a\r\nX-Slow: ")
    socks.append(s)
open(ready, "w").close()
while True:
    time.sleep(2)
    for s in socks:
        try:
            s.send(b"x")
        except OSError:
            pass
PY
for _ in $(seq 300); do [ -f "$work/slow.ready" ] && break; sleep 0.1; done
read -r slow_rps slow_p50 slow_p99 < <(run with-slow)
clb_pid=$(pgrep -f "clb --listener http:$PORT" | head -1)
rss=$(awk '/VmRSS/ {print $2}' "/proc/$clb_pid/status")

printf '| run | req/s | p50 ms | p99 ms |\n|---|--:|--:|--:|\n'
printf '| alone | %s | %s | %s |\n' "$base_rps" "$base_p50" "$base_p99"
printf '| beside %s slow connections | %s | %s | %s |\n' "$SLOW" "$slow_rps" "$slow_p50" "$slow_p99"
python3 -c "
b, s = float('$base_rps'), float('$slow_rps')
p50, q50 = float('$base_p50'), float('$slow_p50')
print(f'req/s with slow clients: {s / b:.2f}x of alone; p50 latency {q50 / p50:.2f}x; clb RSS with them: $rss KiB')
"
