#!/usr/bin/env bash
# Probe cost (issue 3): clb health-checking 1,000 instances every 5 s on loopback.
# Prints the probes the instance saw, clb's CPU time over the window, and how many
# probes started more than 100 ms late (clb logs each one as a warning).
# Needs nginx (installed with apt when missing); bounded: about 40 s.
set -euo pipefail
cd "$(dirname "$0")/../.."

INSTANCES="${INSTANCES:-1000}"
WINDOW="${WINDOW:-30}"
PORT="${PORT:-18181}"
WORKERS="${WORKERS:-2}"
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; [ -f "$work/nginx.pid" ] && kill "$(cat "$work/nginx.pid")" 2>/dev/null; rm -rf "$work"' EXIT

if ! command -v nginx >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light >/dev/null
fi
cargo build --release -q

cat > "$work/nginx.conf" <<CONF
worker_processes 1;
daemon off;
pid $work/nginx.pid;
error_log $work/nginx-error.log;
events { worker_connections 4096; }
http {
  access_log $work/access.log;
  server { listen 127.0.0.2:$PORT; location /health { return 200 "ok"; } }
}
CONF
nginx -c "$work/nginx.conf" -p "$work" &
for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.2/$PORT") 2>/dev/null && break; sleep 0.1; done

args=(--listener "http:18180:http:$PORT" --bind 127.0.0.1 --workers "$WORKERS"
      --health-check "HTTP:$PORT/health" --health-interval 5 --health-timeout 2)
for i in $(seq "$INSTANCES"); do args+=(--instance "i-$i=127.0.0.2:$PORT"); done
RUST_LOG=warn target/release/clb "${args[@]}" 2>"$work/clb.log" &
clb=$!
sleep 6 # one whole interval: every instance has been probed once
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)
t0=$(ticks "$clb"); p0=$(wc -l < "$work/access.log")
sleep "$WINDOW"
t1=$(ticks "$clb"); p1=$(wc -l < "$work/access.log")
probes=$((p1 - p0))
late=$(grep -c "late" "$work/clb.log" || true)
cpu=$(python3 -c "print(f'{($t1 - $t0) / $hz:.2f}')")
echo "instances=$INSTANCES interval=5s workers=$WORKERS window=${WINDOW}s"
echo "probes seen by the instance: $probes (expected $((INSTANCES * WINDOW / 5)))"
echo "clb CPU: ${cpu} s over ${WINDOW} s ($(python3 -c "print(f'{100 * ($t1 - $t0) / $hz / $WINDOW:.2f}')") % of one core), $(python3 -c "print(f'{1e6 * ($t1 - $t0) / $hz / max($probes, 1):.1f}')") us per probe"
echo "probes started more than 100 ms late: $late"
