#!/usr/bin/env bash
# Slow clients (issues 7 and 14): do thousands of slow-loris connections slow normal
# clients, and is that the proxy's doing? Each proxy in turn (clb --workers 1, nginx with
# one worker, HAProxy with one thread) runs pinned to core PROXY_CPU in front of one nginx
# instance; wrk, the instance and the slow clients share core LOAD_CPU. wrk measures
# normal keep-alive requests alone, then again while SLOW connections each hold a partial
# request head and trickle a byte every 2 s (well inside every header timeout). Prints
# both runs per proxy and the ratios (target for clb: p99 at most 1.25x of alone). The
# same load on the peers tells what the proxy adds from what the machine adds (the slow
# clients' sender competes with wrk for its core at every burst). Bounded: about 2 minutes.
# PROXIES= (default "clb nginx haproxy clb-sink"), SLOW=, DURATION=, PORT=, PROXY_CPU=, LOAD_CPU=,
# PACE=burst (default: every slow connection's byte at once every 2 s) or paced (spread
# over the 2 s). The row "clb-sink" is the control run: clb serves wrk while the slow
# clients go to a listener on the proxy's core that accepts them and never reads, so the
# kernel takes their bytes and no proxy sees them: what p99 does then is the machine's.
# Needs nginx, haproxy and wrk (installed with apt when missing).
set -euo pipefail
cd "$(dirname "$0")/../.."

SLOW="${SLOW:-5000}"
DURATION="${DURATION:-8}"
PACE="${PACE:-burst}"
PORT="${PORT:-18481}"
PROXY_CPU="${PROXY_CPU:-0}"
LOAD_CPU="${LOAD_CPU:-1}"
read -r -a PROXIES <<<"${PROXIES:-clb nginx haproxy clb-sink}"
BACKEND_PORT=$((PORT + 1))
work=$(mktemp -d)
cleanup() {
    kill $(jobs -p) 2>/dev/null || true
    for pid in "$work"/*.pid; do [ -f "$pid" ] && kill "$(cat "$pid" 2>/dev/null)" 2>/dev/null; done
    rm -rf "$work"
}
trap cleanup EXIT
ulimit -n 20000 2>/dev/null || ulimit -n "$(ulimit -Hn)"

missing=()
command -v nginx >/dev/null || missing+=(nginx-light)
command -v haproxy >/dev/null || missing+=(haproxy)
command -v wrk >/dev/null || missing+=(wrk)
if [ "${#missing[@]}" -gt 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
[ -n "${CLB_BIN:-}" ] || cargo build --release -q
CLB="${CLB_BIN:-target/release/clb}"

mkdir -p "$work/backend" "$work/nginx"
cat > "$work/backend/nginx.conf" <<CONF
worker_processes 1;
daemon off;
pid $work/backend.pid;
error_log $work/backend/error.log;
events { worker_connections 4096; }
http {
  access_log off;
  server { listen 127.0.0.2:$BACKEND_PORT; location / { return 200 "ok"; } }
}
CONF
taskset -c "$LOAD_CPU" nginx -c "$work/backend/nginx.conf" -p "$work/backend" &

start_proxy() { # start_proxy NAME: sets PROXY_PID
    case $1 in
        clb)
            taskset -c "$PROXY_CPU" "$CLB" --listener "http:$PORT:http:$BACKEND_PORT" --bind 127.0.0.1 \
                --api off --workers 1 --max-connections 20000 --instance i-1=127.0.0.2 \
                --health-check "HTTP:$BACKEND_PORT/" 2>"$work/clb.log" & ;;
        nginx)
            cat > "$work/nginx/nginx.conf" <<CONF
worker_processes 1;
master_process off;
daemon off;
pid $work/nginx.pid;
error_log $work/nginx/error.log;
worker_rlimit_nofile 20000;
events { worker_connections 19000; }
http {
  access_log off;
  upstream instances { server 127.0.0.2:$BACKEND_PORT; keepalive 64; }
  server {
    listen 127.0.0.1:$PORT;
    location / {
      proxy_pass http://instances;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
    }
  }
}
CONF
            taskset -c "$PROXY_CPU" nginx -c "$work/nginx/nginx.conf" -p "$work/nginx" & ;;
        haproxy)
            cat > "$work/haproxy.cfg" <<CONF
global
  nbthread 1
  maxconn 19000
  no strict-limits
defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  timeout http-request 60s
  timeout http-keep-alive 60s
frontend fe
  bind 127.0.0.1:$PORT
  option forwardfor
  default_backend instances
backend instances
  http-reuse always
  server i-1 127.0.0.2:$BACKEND_PORT
CONF
            taskset -c "$PROXY_CPU" haproxy -db -f "$work/haproxy.cfg" 2>"$work/haproxy.log" & ;;
    esac
    PROXY_PID=$!
    # clb routes once its first health check passed
    if [ "$1" = clb ]; then
        for _ in $(seq 200); do grep -q InService "$work/clb.log" 2>/dev/null && break; sleep 0.1; done
    fi
    for _ in $(seq 100); do
        curl -fs -o /dev/null "http://127.0.0.1:$PORT/" && return 0
        sleep 0.1
    done
    echo "$1 did not answer on port $PORT" >&2
    exit 1
}

run() { # run LABEL: "req/s p50_ms p99_ms"
    taskset -c "$LOAD_CPU" wrk -t1 -c50 -d"${DURATION}s" --latency "http://127.0.0.1:$PORT/" >"$work/$1.txt"
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

rows=()
for p in "${PROXIES[@]}"; do
    start_proxy "${p%-sink}"
    read -r base_rps base_p50 base_p99 < <(run "$p-alone")
    rm -f "$work/slow.ready"
    slow_port=$PORT
    sink_pid=
    if [ "$p" != "${p%-sink}" ]; then
        slow_port=$((PORT + 2))
        taskset -c "$PROXY_CPU" python3 -c "
import socket, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(('127.0.0.1', $slow_port)); s.listen(8192)
held = []
while True:
    held.append(s.accept()[0])
" &
        sink_pid=$!
        sleep 0.5
    fi
    taskset -c "$LOAD_CPU" python3 - "$slow_port" "$SLOW" "$work/slow.ready" "$PACE" <<'PY' &
import socket, sys, time
port, n, ready, pace = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
socks = []
for i in range(n):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"GET /slow HTTP/1.1\r\nHost: a\r\nX-Slow: ")
    socks.append(s)
open(ready, "w").close()
# burst: every connection's byte at once every 2 s (as slowloris.py does); paced: the
# same bytes spread over the 2 s in 100 slices (as many attackers out of step would).
slices = 100 if pace == "paced" else 1
per = (len(socks) + slices - 1) // slices
while True:
    for k in range(slices):
        time.sleep(2 / slices)
        for s in socks[k * per:(k + 1) * per]:
            try:
                s.send(b"x")
            except OSError:
                pass
PY
    slow_pid=$!
    for _ in $(seq 300); do [ -f "$work/slow.ready" ] && break; sleep 0.1; done
    read -r slow_rps slow_p50 slow_p99 < <(run "$p-slow")
    rss=0
    for pid in $(python3 tests/bench/tools.py tree "$PROXY_PID"); do
        rss=$((rss + $(awk '/VmRSS/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)))
    done
    kill "$slow_pid" 2>/dev/null || true
    wait "$slow_pid" 2>/dev/null || true
    if [ -n "$sink_pid" ]; then kill "$sink_pid" 2>/dev/null || true; wait "$sink_pid" 2>/dev/null || true; fi
    kill "$PROXY_PID" 2>/dev/null || true
    wait "$PROXY_PID" 2>/dev/null || true
    rows+=("$p $base_rps $base_p50 $base_p99 $slow_rps $slow_p50 $slow_p99 $rss")
done

printf '| proxy | alone req/s | p50 ms | p99 ms | beside %s slow: req/s | p50 ms | p99 ms | p99 ratio | RSS with them |\n' "$SLOW"
printf '|---|--:|--:|--:|--:|--:|--:|--:|--:|\n'
for row in "${rows[@]}"; do
    python3 -c "
p, br, b50, b99, sr, s50, s99, rss = '''$row'''.split()
print(f'| {p} | {float(br):,.0f} | {b50} | {b99} | {float(sr):,.0f} | {s50} | {s99} | {float(s99) / float(b99):.2f}x | {int(rss):,} KiB |')
"
done
