#!/usr/bin/env bash
# `make bench` (issue 5): clb against nginx and HAProxy, side by side, on loopback.
#
# Three identical backends (127.0.0.2-4, one nginx worker serving fixed 2 B, 16 KiB and
# 1 MiB bodies) sit behind each proxy: clb (release, 1 worker), nginx (1 worker, upstream
# keepalive, least_conn) and HAProxy (1 thread, leastconn, http-reuse always). Each proxy
# is pinned to core PROXY_CPU; wrk and the backends share core LOAD_CPU. wrk runs against
# the proxies in turn (clb, nginx, haproxy, clb, ...) for ROUNDS rounds of four loads, and
# the proxy's CPU time (user+sys of its process tree) is read from /proc around each run.
# Then: RSS per idle keep-alive client connection (MEM_CONNS connections to each proxy) and
# user-space instructions per request for a fixed request count (perf stat, or callgrind
# where perf has no hardware counters).
#
# Settings (environment): ROUNDS (5), DURATION seconds per wrk run (6), MEM_CONNS (10000),
# INSN_REQUESTS (20000), INSN_PEERS (1: also count nginx's and HAProxy's instructions),
# BASE_PORT (18300), PROXY_CPU (0), LOAD_CPU (1), OUT (tests/bench/results.md), KEEP=1 keeps
# the raw wrk outputs (their folder is printed). QUICK=1 or --quick: 1 round of 3 s, 2,000
# idle connections, 5,000 counted requests (about 1.5 minutes; for trying the script).
# Default run: about 8 minutes. Installs nginx-light, haproxy, wrk (and linux-perf or
# valgrind) with apt-get when missing; needs root for that. Every process it starts is
# stopped when it exits, however it exits.
set -euo pipefail
cd "$(dirname "$0")/../.."
BENCH=tests/bench

if [ "${1:-}" = "--quick" ]; then QUICK=1; fi
if [ "${QUICK:-0}" = 1 ]; then
    : "${ROUNDS:=1}" "${DURATION:=3}" "${MEM_CONNS:=2000}" "${INSN_REQUESTS:=5000}"
fi
ROUNDS="${ROUNDS:-5}"
DURATION="${DURATION:-6}"
MEM_CONNS="${MEM_CONNS:-10000}"
INSN_REQUESTS="${INSN_REQUESTS:-20000}"
INSN_CONNS="${INSN_CONNS:-10}"
INSN_PEERS="${INSN_PEERS:-1}"
BASE_PORT="${BASE_PORT:-18300}"
PROXY_CPU="${PROXY_CPU:-0}"
LOAD_CPU="${LOAD_CPU:-1}"
OUT="${OUT:-$BENCH/results.md}"

BACKEND_PORT=$((BASE_PORT + 10))
declare -A PORT=([clb]=$BASE_PORT [nginx]=$((BASE_PORT + 1)) [haproxy]=$((BASE_PORT + 2)))
declare -A MEM_PORT=([clb]=$((BASE_PORT + 3)) [nginx]=$((BASE_PORT + 4)) [haproxy]=$((BASE_PORT + 5)))
declare -A INSN_PORT=([clb]=$((BASE_PORT + 6)) [nginx]=$((BASE_PORT + 7)) [haproxy]=$((BASE_PORT + 8)))
PROXIES=(clb nginx haproxy)
LOADS=(tiny 16k 1m close)
declare -A LOAD_PATH=([tiny]=/b2 [16k]=/b16k [1m]=/b1m [close]=/b2)
declare -A LOAD_CONNS=([tiny]=50 [16k]=200 [1m]=20 [close]=50)

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# ---------------------------------------------------------------- cleanup
work=$(mktemp -d /tmp/clb-bench.XXXXXX)
chmod 755 "$work" # nginx workers run as an unprivileged user and read the bodies here
raw="$work/raw"
mkdir -p "$raw"
STARTED=() # pids of everything started in the background; their trees are killed on exit
cleanup() {
    local rc=$? all=() p
    trap - EXIT INT TERM
    # everything below this shell (clients, perf, valgrind, proxies and their workers),
    # and the trees of the recorded pids in case one was re-parented
    for p in $(python3 "$BENCH/tools.py" tree $$ 2>/dev/null) "${STARTED[@]}"; do
        [ "$p" = $$ ] && continue
        kill -0 "$p" 2>/dev/null || continue
        # shellcheck disable=SC2207
        all+=($(python3 "$BENCH/tools.py" tree "$p" 2>/dev/null || echo "$p"))
    done
    if [ "${#all[@]}" -gt 0 ]; then
        kill -TERM "${all[@]}" 2>/dev/null || true
        for _ in $(seq 30); do
            local left=0
            for p in "${all[@]}"; do kill -0 "$p" 2>/dev/null && left=1; done
            [ "$left" = 0 ] && break
            sleep 0.1
        done
        kill -KILL "${all[@]}" 2>/dev/null || true
    fi
    wait 2>/dev/null || true
    if [ "${KEEP:-0}" = 1 ]; then log "raw outputs kept in $work"; else rm -rf "$work"; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Runs a command in the background, records it for cleanup and waits for it, so a
# signal to this script is handled at once rather than after the command ends.
run_wait() {
    "$@" &
    local pid=$!
    STARTED+=("$pid")
    wait "$pid"
}

# ---------------------------------------------------------------- installs
apt_install() {
    [ "$(id -u)" = 0 ] || die "missing $*; install them (apt-get install $*) or run as root"
    export DEBIAN_FRONTEND=noninteractive
    # Debian starts a service at install; forbid that while installing (policy-rc.d 101),
    # so no nginx or haproxy is left running on port 80 behind our back.
    local policy=/usr/sbin/policy-rc.d made_policy=0
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && made_policy=1
    fi
    log "apt-get update; apt-get install $*"
    local ok=1
    if [ -z "${APT_UPDATED:-}" ]; then apt-get update -qq || ok=0; APT_UPDATED=1; fi
    [ "$ok" = 1 ] && { apt-get install -y -qq --no-install-recommends "$@" >/dev/null || ok=0; }
    [ "$made_policy" = 1 ] && rm -f "$policy"
    [ "$ok" = 1 ] || return 1
}

need=()
command -v python3 >/dev/null || need+=(python3)
command -v taskset >/dev/null || need+=(util-linux)
command -v haproxy >/dev/null || need+=(haproxy)
command -v wrk >/dev/null || need+=(wrk)
if ! command -v nginx >/dev/null; then
    # nginx-light is gone from newer Debian releases, where `nginx` is the small build
    if apt_install nginx-light; then :; else apt_install nginx || die "cannot install nginx"; fi
fi
if [ "${#need[@]}" -gt 0 ]; then apt_install "${need[@]}" || die "cannot install ${need[*]}"; fi

perf_works() {
    command -v perf >/dev/null &&
        perf stat -x, -e instructions:u true 2>&1 >/dev/null | grep -Eq '^[0-9]+,'
}
INSN_TOOL=callgrind
if perf_works; then
    INSN_TOOL=perf
elif ! command -v perf >/dev/null && apt_install linux-perf 2>/dev/null && perf_works; then
    INSN_TOOL=perf
fi
if [ "$INSN_TOOL" = callgrind ] && ! command -v valgrind >/dev/null; then
    apt_install valgrind || die "cannot install valgrind"
fi

cores=$(nproc)
if [ "$cores" -lt 2 ]; then
    log "warning: $cores core(s); proxy and load share core 0, figures are not comparable"
    PROXY_CPU=0 LOAD_CPU=0
fi

# 10,000 idle client connections need as many descriptors in the proxy and the client.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt $((MEM_CONNS + 200)) ]; then
    MEM_CONNS=$(($(ulimit -n) - 200))
    log "warning: open-file limit $(ulimit -n): holding only $MEM_CONNS idle connections"
fi
NOFILE=$(ulimit -n)
[ "$NOFILE" = unlimited ] && NOFILE=65536

log "building clb (cargo build --release)"
cargo build --release -q
# A copy: a rebuild during the run (cargo replaces target/release/clb) must not change
# the binary that the later phases start.
CLB="$work/clb"
cp target/release/clb "$CLB"
CLB_COMMIT=$(git rev-parse --short=7 HEAD 2>/dev/null || echo unknown)
git diff --quiet HEAD -- src Cargo.toml Cargo.lock 2>/dev/null || CLB_COMMIT+=" + uncommitted changes in src/"

for port in "${PORT[@]}" "${MEM_PORT[@]}" "${INSN_PORT[@]}" "$BACKEND_PORT"; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        die "port $port is taken on 127.0.0.1; choose another BASE_PORT"
    fi
done

# ---------------------------------------------------------------- configs
mkdir -p "$work/www" "$work/backend"
printf 'ok' >"$work/www/b2"
head -c 16384 /dev/zero | tr '\0' 'x' >"$work/www/b16k"
head -c 1048576 /dev/zero | tr '\0' 'x' >"$work/www/b1m"

nginx_temps() { # nginx-light's compiled-in temp paths may not exist or be writable
    local d=$1
    echo "client_body_temp_path $d/body; proxy_temp_path $d/proxy; fastcgi_temp_path $d/fastcgi;"
    echo "uwsgi_temp_path $d/uwsgi; scgi_temp_path $d/scgi;"
}

cat >"$work/backend/nginx.conf" <<CONF
worker_processes 1;
daemon off;
pid $work/backend/nginx.pid;
error_log $work/backend/error.log warn;
worker_rlimit_nofile $NOFILE;
events { worker_connections $NOFILE; }
http {
  $(nginx_temps "$work/backend")
  access_log off;
  default_type application/octet-stream;
  sendfile on;
  etag off;
  keepalive_requests 100000000;
  keepalive_timeout 300s;
  server {
    listen 127.0.0.2:$BACKEND_PORT;
    listen 127.0.0.3:$BACKEND_PORT;
    listen 127.0.0.4:$BACKEND_PORT;
    root $work/www;
  }
}
CONF

# nginx_proxy_conf DIR PORT MASTER(on|off)
nginx_proxy_conf() {
    cat <<CONF
worker_processes 1;
master_process $3;
daemon off;
pid $1/nginx.pid;
error_log $1/error.log warn;
worker_rlimit_nofile $NOFILE;
events { worker_connections $NOFILE; }
http {
  $(nginx_temps "$1")
  access_log off;
  keepalive_requests 100000000;
  keepalive_timeout 60s;
  upstream instances {
    least_conn;
    server 127.0.0.2:$BACKEND_PORT;
    server 127.0.0.3:$BACKEND_PORT;
    server 127.0.0.4:$BACKEND_PORT;
    keepalive 256;
    keepalive_requests 100000000;
    keepalive_timeout 60s;
  }
  server {
    listen 127.0.0.1:$2;
    location / {
      proxy_pass http://instances;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host \$http_host;
      proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto \$scheme;
      proxy_set_header X-Forwarded-Port \$server_port;
      # 16 KiB buffers like clb's and HAProxy's (nginx's default is one page), in
      # memory only: no temporary files for large bodies
      proxy_buffer_size 16k;
      proxy_buffers 8 16k;
      proxy_busy_buffers_size 32k;
      proxy_max_temp_file_size 0;
    }
  }
}
CONF
}

# haproxy_conf PORT
haproxy_conf() {
    cat <<CONF
global
  nbthread 1
  maxconn $((MEM_CONNS + 500))
  # HAProxy wants 2 descriptors per connection of maxconn; where the hard limit is lower
  # (containers), start anyway: idle client connections need only one each
  no strict-limits
defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  timeout http-keep-alive 60s
frontend fe
  bind 127.0.0.1:$1
  option forwardfor
  http-request set-header X-Forwarded-Proto http
  http-request set-header X-Forwarded-Port %[dst_port]
  default_backend instances
backend instances
  balance leastconn
  http-reuse always
  server i-1 127.0.0.2:$BACKEND_PORT
  server i-2 127.0.0.3:$BACKEND_PORT
  server i-3 127.0.0.4:$BACKEND_PORT
CONF
}

# start_proxy NAME PORT MODE: starts one proxy in front of the backends, pinned to
# PROXY_CPU, and sets STARTED_PID. MODE: multi = as deployed (nginx and HAProxy with their
# master process); single = one process (for instruction counts); callgrind = single,
# under valgrind --tool=callgrind.
start_proxy() {
    local name=$1 port=$2 mode=$3 dir="$work/$1-$2" cmd=()
    mkdir -p "$dir"
    case $name in
        clb) cmd=("$CLB" --listener "http:$port:http:$BACKEND_PORT" --instance i-1=127.0.0.2
                  --instance i-2=127.0.0.3 --instance i-3=127.0.0.4 --bind 127.0.0.1
                  --workers 1 --api off --max-connections 40000) ;;
        nginx)
            nginx_proxy_conf "$dir" "$port" "$([ "$mode" = multi ] && echo on || echo off)" >"$dir/nginx.conf"
            cmd=(nginx -p "$dir" -e "$dir/error.log" -c "$dir/nginx.conf") ;;
        haproxy)
            haproxy_conf "$port" >"$dir/haproxy.cfg"
            cmd=(haproxy -db -f "$dir/haproxy.cfg")
            [ "$mode" = multi ] && cmd=(haproxy -W -db -f "$dir/haproxy.cfg") ;;
    esac
    if [ "$mode" = callgrind ]; then
        cmd=(valgrind --tool=callgrind -q --callgrind-out-file="$dir/callgrind.out" "${cmd[@]}")
    fi
    RUST_LOG=warn taskset -c "$PROXY_CPU" "${cmd[@]}" >"$dir/out.log" 2>&1 &
    STARTED_PID=$!
    STARTED+=("$!")
}

stop_pid() { kill -TERM "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }

wait_ready() { # wait_ready PORT SECONDS NAME PID
    python3 "$BENCH/tools.py" ready 127.0.0.1 "$1" /b2 "$2" ||
        die "$3 does not answer 200 on 127.0.0.1:$1 (see $work; KEEP=1 keeps it)"
    kill -0 "$4" 2>/dev/null || die "$3 exited"
}

# ---------------------------------------------------------------- start
log "starting backends on 127.0.0.2-4:$BACKEND_PORT (one nginx worker, core $LOAD_CPU)"
taskset -c "$LOAD_CPU" nginx -p "$work/backend" -e "$work/backend/error.log" \
    -c "$work/backend/nginx.conf" &
STARTED+=("$!")
BACKEND_PID=$!
for ip in 127.0.0.2 127.0.0.3 127.0.0.4; do
    python3 "$BENCH/tools.py" ready "$ip" "$BACKEND_PORT" /b2 10 || die "backend $ip does not answer"
done

declare -A PID
for p in "${PROXIES[@]}"; do
    start_proxy "$p" "${PORT[$p]}" multi
    PID[$p]=$STARTED_PID
done
for p in "${PROXIES[@]}"; do wait_ready "${PORT[$p]}" 10 "$p" "${PID[$p]}"; done
log "proxies up: clb :${PORT[clb]}, nginx :${PORT[nginx]}, haproxy :${PORT[haproxy]} (core $PROXY_CPU)"

# ---------------------------------------------------------------- metadata
clb_version=$($CLB --version 2>&1 | head -1)
{
    echo "date=$(date -u +%Y-%m-%d)"
    echo "nproc=$cores"
    echo "cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
    echo "kernel=$(uname -r)"
    echo "clb=${clb_version#clb } at $CLB_COMMIT"
    echo "rustc=$(rustc -V)"
    echo "nginx=$(nginx -v 2>&1 | sed 's/^nginx version: //')"
    echo "haproxy=HAProxy $(haproxy -v | head -1 | awk '{print $3}')"
    echo "wrk=wrk $(wrk -v 2>&1 | head -1 | awk '{print $2}')"
    echo "rounds=$ROUNDS"
    echo "duration=$DURATION"
    echo "proxy_cpu=$PROXY_CPU"
    echo "load_cpu=$LOAD_CPU"
    echo "clk_tck=$(getconf CLK_TCK)"
    echo "mem_conns=$MEM_CONNS"
    echo "insn_conns=$INSN_CONNS"
} >"$raw/meta.txt"

# ---------------------------------------------------------------- throughput
wrk_args() { # wrk_args LOAD PROXY SECONDS
    local a=(-t1 -c"${LOAD_CONNS[$1]}" -d"$3"s --timeout 5s --latency)
    [ "$1" = close ] && a+=(-H "Connection: close")
    echo "${a[@]@Q} http://127.0.0.1:${PORT[$2]}${LOAD_PATH[$1]}"
}
cpu_ticks() { python3 "$BENCH/tools.py" cpu "$1"; }

log "warm-up: 1 s of every load on every proxy"
for load in "${LOADS[@]}"; do
    for p in "${PROXIES[@]}"; do
        eval "run_wait taskset -c $LOAD_CPU wrk $(wrk_args "$load" "$p" 1)" >/dev/null
    done
done

total=$((ROUNDS * ${#LOADS[@]} * ${#PROXIES[@]}))
log "throughput: $ROUNDS round(s) x ${#LOADS[@]} loads x ${#PROXIES[@]} proxies x ${DURATION} s ($((total * DURATION)) s of wrk)"
: >"$raw/runs.tsv"
# How busy the machine was with other work meanwhile: CPU time of all processes and of
# interrupts (/proc/stat) less the CPU time of this script's process tree (a process's
# time includes the loopback softirq work done in its context; /proc/stat counts that
# as softirq).
stat_busy() { awk '/^cpu / {print $2 + $3 + $4, $7 + $8, $9}' /proc/stat; }
read -r busy0 irq0 steal0 < <(stat_busy)
ours0=$(cpu_ticks $$)
wall0=$(date +%s.%N)
for round in $(seq "$ROUNDS"); do
    for load in "${LOADS[@]}"; do
        for p in "${PROXIES[@]}"; do
            file="$p.$load.$round.wrk"
            t0=$(cpu_ticks "${PID[$p]}")
            eval "run_wait taskset -c $LOAD_CPU wrk $(wrk_args "$load" "$p" "$DURATION")" >"$raw/$file"
            t1=$(cpu_ticks "${PID[$p]}")
            kill -0 "${PID[$p]}" 2>/dev/null || die "$p exited during the $load load"
            printf '%s\t%s\t%s\t%s\t%s\n' "$p" "$load" "$round" $((t1 - t0)) "$file" >>"$raw/runs.tsv"
            rps=$(awk '/^Requests\/sec/ {print $2}' "$raw/$file")
            p99=$(awk '$1 == "99%" {print $2}' "$raw/$file")
            errs=$(grep -E 'Non-2xx|Socket errors' "$raw/$file" | tr -s ' ' | tr '\n' ';' || true)
            log "round $round $load $p: $rps req/s, p99 $p99, proxy CPU $((t1 - t0)) ticks ${errs:+ $errs}"
        done
    done
done

read -r busy1 irq1 steal1 < <(stat_busy)
ours1=$(cpu_ticks $$)
wall1=$(date +%s.%N)
{
    echo "phase_wall=$(python3 -c "print(round($wall1 - $wall0, 1))")"
    echo "phase_other_ticks=$((busy1 - busy0 + irq1 - irq0 - (ours1 - ours0)))"
    echo "phase_irq_ticks=$((irq1 - irq0))"
    echo "phase_steal_ticks=$((steal1 - steal0))"
    echo "phase_ours_ticks=$((ours1 - ours0))"
} >>"$raw/meta.txt"
log "throughput phase: $(grep phase_ "$raw/meta.txt" | tr '\n' ' ')"

# The throughput proxies are done: stop them so they cannot disturb what follows.
for p in "${PROXIES[@]}"; do stop_pid "${PID[$p]}"; done

# ---------------------------------------------------------------- idle memory
# On a fresh process of each proxy: freed heap that a process keeps after the loads above
# would hide the growth.
log "memory: $MEM_CONNS idle keep-alive connections to a fresh process of each proxy"
: >"$raw/mem.tsv"
for p in "${PROXIES[@]}"; do
    start_proxy "$p" "${MEM_PORT[$p]}" multi
    mpid=$STARTED_PID
    wait_ready "${MEM_PORT[$p]}" 10 "$p" "$mpid"
    sleep 0.5
    read -r held before after < <(taskset -c "$LOAD_CPU" python3 "$BENCH/tools.py" idle \
        127.0.0.1 "${MEM_PORT[$p]}" /b2 "$MEM_CONNS" "$mpid" 2)
    stop_pid "$mpid"
    printf '%s\t%s\t%s\t%s\n' "$p" "$held" "$before" "$after" >>"$raw/mem.tsv"
    log "$p: $held connections held, RSS $before KiB -> $after KiB ($(((after - before) * 1024 / (held > 0 ? held : 1))) B each)"
done

# ---------------------------------------------------------------- instructions
insn_proxies=(clb)
[ "$INSN_PEERS" = 1 ] && insn_proxies+=(nginx haproxy)
log "instructions per request ($INSN_TOOL): $INSN_REQUESTS requests over $INSN_CONNS connections to ${insn_proxies[*]}"
: >"$raw/insn.tsv"
for p in "${insn_proxies[@]}"; do
    port=${INSN_PORT[$p]}
    if [ "$INSN_TOOL" = perf ]; then
        start_proxy "$p" "$port" single
        ipid=$STARTED_PID
        wait_ready "$port" 10 "$p" "$ipid"
        taskset -c "$LOAD_CPU" python3 "$BENCH/tools.py" load 127.0.0.1 "$port" /b2 2000 "$INSN_CONNS" >/dev/null
        read -r ok failed < <(taskset -c "$LOAD_CPU" perf stat -x, -e instructions:u -o "$work/$p.perf" \
            -p "$ipid" -- python3 "$BENCH/tools.py" load 127.0.0.1 "$port" /b2 "$INSN_REQUESTS" "$INSN_CONNS")
        instr=$(awk -F, '/instructions/ {print $1}' "$work/$p.perf")
        tool="perf stat -e instructions:u"
    else
        start_proxy "$p" "$port" callgrind
        ipid=$STARTED_PID
        wait_ready "$port" 60 "$p" "$ipid"
        taskset -c "$LOAD_CPU" python3 "$BENCH/tools.py" load 127.0.0.1 "$port" /b2 1000 "$INSN_CONNS" >/dev/null
        callgrind_control -z "$ipid" >/dev/null 2>&1
        read -r ok failed < <(taskset -c "$LOAD_CPU" python3 "$BENCH/tools.py" load 127.0.0.1 "$port" /b2 \
            "$INSN_REQUESTS" "$INSN_CONNS")
        callgrind_control -d "$ipid" >/dev/null 2>&1
        dump=$(ls "$work/$p-$port/callgrind.out".* 2>/dev/null | head -1)
        [ -n "$dump" ] || die "callgrind wrote no dump for $p"
        instr=$(awk '/^(summary|totals):/ {print $2; exit}' "$dump")
        tool="callgrind ($(valgrind --version))"
    fi
    stop_pid "$ipid"
    [ "$failed" = 0 ] || log "warning: $p: $failed of $INSN_REQUESTS counted requests failed"
    [ -n "$instr" ] || die "no instruction count for $p"
    printf '%s\t%s\t%s\t%s\n' "$p" "$ok" "$instr" "$tool" >>"$raw/insn.tsv"
    log "$p: $instr instructions for $ok requests ($((instr / (ok > 0 ? ok : 1))) per request)"
done

# ---------------------------------------------------------------- report
stop_pid "$BACKEND_PID"
echo
python3 "$BENCH/summarise.py" "$raw" "$OUT"
log "written to $OUT"
