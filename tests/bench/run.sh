#!/usr/bin/env bash
# `make bench` (issues 5 and 6): clb against nginx and HAProxy, side by side, on loopback.
#
# Three identical backends (127.0.0.2-4, one nginx worker serving fixed 2 B, 16 KiB and
# 1 MiB bodies) sit behind each proxy: clb (release, 1 worker), nginx (1 worker, upstream
# keepalive, least_conn) and HAProxy (1 thread, leastconn, http-reuse always). Each proxy
# is pinned to core PROXY_CPU; wrk and the backends share core LOAD_CPU. wrk runs against
# the proxies in turn (clb, nginx, haproxy, clb, ...) for ROUNDS rounds of the loads, and
# the proxy's CPU time (user+sys of its process tree) is read from /proc around each run;
# its user/kernel split comes from perf task-clock samples taken meanwhile (SPLIT=proc:
# /proc's utime/stime instead, which are tick-sampled and drift; see perf_start).
# Loads (LOADS=, any of them, in this order):
#   tiny    2 B body, 50 connections, keep-alive
#   16k     16 KiB body, 200 connections, keep-alive
#   1m      1 MiB body, 20 connections, keep-alive
#   close   2 B body, 50 connections, `Connection: close` (a new TCP connection per request)
#   tls     HTTPS, 2 B body, 50 connections, keep-alive
#   tlsnew  HTTPS, 2 B body, 50 connections, `Connection: close`: a full TLS handshake per
#           request (wrk would resume the TLS session; an LD_PRELOAD shim stops that)
#   tcp     TCP listeners (layer 4: clb tcp:, nginx stream, HAProxy mode tcp, round robin)
#           tunnelling HTTP to the backends, 1 MiB body, 20 connections, keep-alive
# TLS: one ECDSA P-256 key and self-signed certificate (openssl, in the temp folder) for
# all three; nginx and HAProxy are set to clb's policy (TLS 1.2 + 1.3, ECDHE-GCM, server
# order, TLS_AES_128_GCM_SHA256 first, X25519 first); what each negotiates with
# `openssl s_client` (the libssl wrk uses) is recorded in the report. With SPLICE_OFF=1 a
# second clb with CLB_SPLICE=off (copies through user space instead of splice(2)) also runs
# the 1m and tcp loads. Then: RSS per idle keep-alive client connection (MEM_CONNS
# connections to each proxy, three ways: never sent a byte, after one request, after a
# burst of as many connections came and went) and user-space instructions per request for a fixed request
# count (perf stat, or callgrind where perf has no hardware counters).
#
# Settings (environment): LOADS ("tiny 16k 1m close tls tlsnew tcp"), SPLICE_OFF (1),
# ROUNDS (5), DURATION seconds per wrk run (6), MEM_CONNS (10000; 0 skips the memory
# phase), INSN_REQUESTS (20000; 0 skips the instruction counts), INSN_PEERS (1: also count
# nginx's and HAProxy's instructions), SLOW_CLIENTS (5000; slow-loris connections of the
# last phase, tests/bench/slow_clients.sh; 0 skips it), TLS_RESUME (0; 1 lets wrk resume TLS sessions in the
# tlsnew load), SPLIT (perf, or proc), CLB_BIN (a clb binary to use instead of
# `cargo build --release`),
# BASE_PORT (18300; ports BASE_PORT to BASE_PORT+19 are used), PROXY_CPU (0), LOAD_CPU (1),
# OUT (tests/bench/results.md), KEEP=1 keeps the raw wrk outputs (their folder is
# printed). QUICK=1 or --quick: 1 round of 3 s, 2,000 idle connections, 5,000 counted
# requests (about 2 minutes plus the build; for trying the script). Default run: about
# 14 minutes plus the build (7 loads x 3 proxies + 2 splice-off runs = 23 wrk runs of
# 6 s per round; LOADS="tiny 1m" and the like run a part). See tests/bench/README.md.
# Installs nginx-light, libnginx-mod-stream, haproxy, wrk, openssl, linux-perf (and
# valgrind) with apt-get when missing; needs root for that. Every process it starts is
# stopped when it exits, however it exits.
set -euo pipefail
cd "$(dirname "$0")/../.."
BENCH=tests/bench

if [ "${1:-}" = "--quick" ]; then QUICK=1; fi
if [ "${QUICK:-0}" = 1 ]; then
    : "${ROUNDS:=1}" "${DURATION:=3}" "${MEM_CONNS:=2000}" "${INSN_REQUESTS:=5000}" "${SLOW_CLIENTS:=1000}"
fi
ROUNDS="${ROUNDS:-5}"
DURATION="${DURATION:-6}"
MEM_CONNS="${MEM_CONNS:-10000}"
INSN_REQUESTS="${INSN_REQUESTS:-20000}"
INSN_CONNS="${INSN_CONNS:-10}"
INSN_PEERS="${INSN_PEERS:-1}"
SLOW_CLIENTS="${SLOW_CLIENTS:-5000}"
SPLICE_OFF="${SPLICE_OFF:-1}"
TLS_RESUME="${TLS_RESUME:-0}"
BASE_PORT="${BASE_PORT:-18300}"
PROXY_CPU="${PROXY_CPU:-0}"
LOAD_CPU="${LOAD_CPU:-1}"
OUT="${OUT:-$BENCH/results.md}"
ALL_LOADS=(tiny 16k 1m close tls tlsnew tcp)
LOADS="${LOADS:-${ALL_LOADS[*]}}"
read -r -a LOADS <<<"${LOADS//,/ }"

BACKEND_PORT=$((BASE_PORT + 10))
# Listener ports of the throughput proxies, by PROXY/KIND (kind: http, https, tcp).
declare -A LPORT=(
    [clb/http]=$BASE_PORT [nginx/http]=$((BASE_PORT + 1)) [haproxy/http]=$((BASE_PORT + 2))
    [clb/https]=$((BASE_PORT + 11)) [nginx/https]=$((BASE_PORT + 12)) [haproxy/https]=$((BASE_PORT + 13))
    [clb/tcp]=$((BASE_PORT + 14)) [nginx/tcp]=$((BASE_PORT + 15)) [haproxy/tcp]=$((BASE_PORT + 16))
    [clb-nosplice/http]=$((BASE_PORT + 17)) [clb-nosplice/tcp]=$((BASE_PORT + 18))
)
CHECK_PORT=$((BASE_PORT + 19)) # a throw-away nginx that checks wrk's TLS session reuse
declare -A MEM_PORT=([clb]=$((BASE_PORT + 3)) [nginx]=$((BASE_PORT + 4)) [haproxy]=$((BASE_PORT + 5)))
declare -A INSN_PORT=([clb]=$((BASE_PORT + 6)) [nginx]=$((BASE_PORT + 7)) [haproxy]=$((BASE_PORT + 8)))
PROXIES=(clb nginx haproxy)
declare -A LOAD_PATH=([tiny]=/b2 [16k]=/b16k [1m]=/b1m [close]=/b2 [tls]=/b2 [tlsnew]=/b2 [tcp]=/b1m)
declare -A LOAD_CONNS=([tiny]=50 [16k]=200 [1m]=20 [close]=50 [tls]=50 [tlsnew]=50 [tcp]=20)
declare -A LOAD_KIND=([tiny]=http [16k]=http [1m]=http [close]=http [tls]=https [tlsnew]=https [tcp]=tcp)
# The loads the CLB_SPLICE=off clb runs (the two that splice(2) large bodies).
SPLICE_LOADS=(1m tcp)

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

has() { # has WORD LIST...: is WORD one of LIST
    local w=$1 x
    shift
    for x in "$@"; do [ "$x" = "$w" ] && return 0; done
    return 1
}
for load in "${LOADS[@]}"; do
    has "$load" "${ALL_LOADS[@]}" || die "LOADS: unknown load '$load' (known: ${ALL_LOADS[*]})"
done
[ "${#LOADS[@]}" -gt 0 ] || die "LOADS is empty"
# keep the canonical order whatever order LOADS names them in
sel=("${LOADS[@]}")
LOADS=()
for load in "${ALL_LOADS[@]}"; do has "$load" "${sel[@]}" && LOADS+=("$load"); done
NEED_TLS=0 NEED_TCP=0 NEED_NOSPLICE=0
for load in "${LOADS[@]}"; do
    case ${LOAD_KIND[$load]} in https) NEED_TLS=1 ;; tcp) NEED_TCP=1 ;; esac
    [ "$SPLICE_OFF" = 1 ] && has "$load" "${SPLICE_LOADS[@]}" && NEED_NOSPLICE=1
done
RUN_PROXIES=("${PROXIES[@]}")
[ "$NEED_NOSPLICE" = 1 ] && RUN_PROXIES+=(clb-nosplice)

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
[ "$NEED_TLS" = 1 ] && ! command -v openssl >/dev/null && need+=(openssl)
if ! command -v nginx >/dev/null; then
    # nginx-light is gone from newer Debian releases, where `nginx` is the small build
    if apt_install nginx-light; then :; else apt_install nginx || die "cannot install nginx"; fi
fi
if [ "${#need[@]}" -gt 0 ]; then apt_install "${need[@]}" || die "cannot install ${need[*]}"; fi

# nginx's TCP proxy is the stream module: built in, or a dynamic module that Debian ships
# apart (libnginx-mod-stream). NGINX_STREAM: "" (built in), a load_module line, or "none".
NGINX_STREAM=none
if [ "$NEED_TCP" = 1 ]; then
    nginx_conf_args=$(nginx -V 2>&1)
    if grep -q -- '--with-stream=dynamic' <<<"$nginx_conf_args"; then
        mods=$(grep -o -- '--modules-path=[^ ]*' <<<"$nginx_conf_args" | cut -d= -f2)
        mod="${mods:-/usr/lib/nginx/modules}/ngx_stream_module.so"
        [ -f "$mod" ] || { [ "$(id -u)" = 0 ] && apt_install libnginx-mod-stream; } || true
        [ -f "$mod" ] && NGINX_STREAM="load_module $mod;"
    elif grep -q -- '--with-stream\b' <<<"$nginx_conf_args"; then
        NGINX_STREAM=""
    fi
    [ "$NGINX_STREAM" = none ] &&
        log "warning: nginx has no stream module (libnginx-mod-stream): nginx skips the tcp load"
fi

perf_works() {
    command -v perf >/dev/null &&
        perf stat -x, -e instructions:u true 2>&1 >/dev/null | grep -Eq '^[0-9]+,'
}
# perf: instruction counts where it has hardware counters (else callgrind), and the
# user/kernel split of the proxies' CPU time (software clock, works in VMs too)
if ! command -v perf >/dev/null && [ "$(id -u)" = 0 ]; then apt_install linux-perf || true; fi
INSN_TOOL=callgrind
if [ "$INSN_REQUESTS" -le 0 ]; then
    INSN_TOOL=none
elif perf_works; then
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

# A copy: a rebuild during the run (cargo replaces target/release/clb) must not change
# the binary that the later phases start.
CLB="$work/clb"
CLB_COMMIT=$(git rev-parse --short=7 HEAD 2>/dev/null || echo unknown)
if [ -n "${CLB_BIN:-}" ]; then
    [ -x "$CLB_BIN" ] || die "CLB_BIN=$CLB_BIN is not an executable"
    log "using $CLB_BIN (CLB_BIN; not built)"
    cp "$CLB_BIN" "$CLB"
    CLB_COMMIT+=" (but the binary is CLB_BIN=$CLB_BIN, not built from this tree)"
else
    log "building clb (cargo build --release)"
    cargo build --release -q
    cp target/release/clb "$CLB"
    git diff --quiet HEAD -- src Cargo.toml Cargo.lock 2>/dev/null || CLB_COMMIT+=" + uncommitted changes in src/"
fi

for port in "${LPORT[@]}" "${MEM_PORT[@]}" "${INSN_PORT[@]}" "$BACKEND_PORT" "$CHECK_PORT"; do
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

# TLS material and settings (loads tls and tlsnew): one ECDSA P-256 key and a self-signed
# certificate for all three proxies. nginx and HAProxy are set to clb's only policy
# (ELBSecurityPolicy-TLS-1-2-2017-01 as rustls has it): TLS 1.2 and 1.3, server order,
# TLS 1.3 suites AES-128-GCM first, TLS 1.2 ECDHE-GCM in ELB's order, and rustls's
# (ring) key exchange groups X25519, P-256, P-384.
TLS_DIR="$work/tls"
TLS13_SUITES=TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256
TLS12_CIPHERS=ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384
TLS_GROUPS=X25519:P-256:P-384
NORESUME_SO="" # LD_PRELOAD for wrk in the tlsnew load: a full handshake per connection
if [ "$NEED_TLS" = 1 ]; then
    mkdir -p "$TLS_DIR"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
        -subj /CN=localhost -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
        -keyout "$TLS_DIR/key.pem" -out "$TLS_DIR/cert.pem" >"$TLS_DIR/openssl.log" 2>&1 ||
        die "openssl cannot make the certificate: $(cat "$TLS_DIR/openssl.log")"
    cat "$TLS_DIR/cert.pem" "$TLS_DIR/key.pem" >"$TLS_DIR/haproxy.pem"
    chmod 644 "$TLS_DIR"/*.pem # nginx's and HAProxy's workers may run as another user
    if has tlsnew "${LOADS[@]}" && [ "$TLS_RESUME" != 1 ]; then
        # wrk ends a connection with SSL_shutdown + SSL_clear, which keeps the session, so
        # its next connection resumes it (no certificate, no signature): this shim drops
        # the session after SSL_clear, so every connection is a full handshake.
        cat >"$TLS_DIR/noresume.c" <<'C'
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stddef.h>
int SSL_clear(void *ssl) {
    static int (*real_clear)(void *);
    static int (*set_session)(void *, void *);
    if (!real_clear) {
        real_clear = (int (*)(void *))dlsym(RTLD_NEXT, "SSL_clear");
        set_session = (int (*)(void *, void *))dlsym(RTLD_DEFAULT, "SSL_set_session");
    }
    int r = real_clear(ssl);
    if (set_session) set_session(ssl, NULL);
    return r;
}
C
        if command -v cc >/dev/null &&
            cc -shared -fPIC -O2 -o "$TLS_DIR/noresume.so" "$TLS_DIR/noresume.c" -ldl 2>"$TLS_DIR/cc.log"; then
            NORESUME_SO="$TLS_DIR/noresume.so"
        else
            log "warning: cannot build the no-resume shim (cc): wrk resumes TLS sessions in tlsnew"
        fi
    fi
fi

# nginx_location: the proxying of every nginx HTTP/HTTPS server
nginx_location() {
    cat <<CONF
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
CONF
}

# nginx_tls: the TLS settings of an nginx server (clb's policy, see above)
nginx_tls() {
    cat <<CONF
    ssl_certificate $TLS_DIR/cert.pem;
    ssl_certificate_key $TLS_DIR/key.pem;
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_prefer_server_ciphers on;
    ssl_ciphers $TLS12_CIPHERS;
    ssl_conf_command Ciphersuites $TLS13_SUITES;
    ssl_ecdh_curve $TLS_GROUPS;
CONF
}

# nginx_proxy_conf DIR MASTER(on|off) HTTP_PORT [TLS_PORT] [TCP_PORT]
nginx_proxy_conf() {
    local dir=$1 master=$2 port=$3 tls=${4:-} tcp=${5:-}
    [ -n "$tcp" ] && echo "$NGINX_STREAM"
    cat <<CONF
worker_processes 1;
master_process $master;
daemon off;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
worker_rlimit_nofile $NOFILE;
events { worker_connections $NOFILE; }
http {
  $(nginx_temps "$dir")
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
    listen 127.0.0.1:$port;
$(nginx_location)
  }
CONF
    if [ -n "$tls" ]; then
        cat <<CONF
  server {
    listen 127.0.0.1:$tls ssl;
$(nginx_tls)
$(nginx_location)
  }
CONF
    fi
    echo "}"
    if [ -n "$tcp" ]; then
        cat <<CONF
stream {
  upstream tcp_instances {
    server 127.0.0.2:$BACKEND_PORT;
    server 127.0.0.3:$BACKEND_PORT;
    server 127.0.0.4:$BACKEND_PORT;
  }
  server {
    listen 127.0.0.1:$tcp;
    proxy_pass tcp_instances;
  }
}
CONF
    fi
}

# haproxy_conf HTTP_PORT [TLS_PORT] [TCP_PORT]
haproxy_conf() {
    local port=$1 tls=${2:-} tcp=${3:-}
    cat <<CONF
global
  nbthread 1
  maxconn $((MEM_CONNS + 500))
  # HAProxy wants 2 descriptors per connection of maxconn; where the hard limit is lower
  # (containers), start anyway: idle client connections need only one each
  no strict-limits
CONF
    [ -n "$tls" ] && cat <<CONF
  # clb's policy (server order is HAProxy's default)
  ssl-default-bind-options ssl-min-ver TLSv1.2
  ssl-default-bind-ciphersuites $TLS13_SUITES
  ssl-default-bind-ciphers $TLS12_CIPHERS
CONF
    cat <<CONF
defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  timeout http-keep-alive 60s
frontend fe
  bind 127.0.0.1:$port
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
    [ -n "$tls" ] && cat <<CONF
frontend fe_tls
  bind 127.0.0.1:$tls ssl crt $TLS_DIR/haproxy.pem curves $TLS_GROUPS
  option forwardfor
  http-request set-header X-Forwarded-Proto https
  http-request set-header X-Forwarded-Port %[dst_port]
  default_backend instances
CONF
    [ -n "$tcp" ] && cat <<CONF
frontend fe_tcp
  mode tcp
  bind 127.0.0.1:$tcp
  default_backend tcp_instances
backend tcp_instances
  mode tcp
  balance roundrobin
  server i-1 127.0.0.2:$BACKEND_PORT
  server i-2 127.0.0.3:$BACKEND_PORT
  server i-3 127.0.0.4:$BACKEND_PORT
CONF
    return 0
}

# start_proxy NAME MODE HTTP_PORT [TLS_PORT] [TCP_PORT]: starts one proxy in front of the
# backends with an HTTP listener (and an HTTPS and a TCP one when their port is given),
# pinned to PROXY_CPU, and sets STARTED_PID. NAME: clb, nginx, haproxy, or clb-nosplice
# (clb with CLB_SPLICE=off). MODE: multi = as deployed (nginx and HAProxy with their
# master process); single = one process (for instruction counts); callgrind = single,
# under valgrind --tool=callgrind.
start_proxy() {
    local name=$1 mode=$2 port=$3 tls=${4:-} tcp=${5:-} dir="$work/$1-$3" cmd=() envs=(RUST_LOG=warn)
    mkdir -p "$dir"
    case $name in
        clb | clb-nosplice)
            cmd=("$CLB" --listener "http:$port:http:$BACKEND_PORT")
            [ -n "$tls" ] && cmd+=(--listener "https:$tls:http:$BACKEND_PORT"
                                   --cert "$TLS_DIR/cert.pem" --key "$TLS_DIR/key.pem")
            [ -n "$tcp" ] && cmd+=(--listener "tcp:$tcp:tcp:$BACKEND_PORT")
            cmd+=(--instance i-1=127.0.0.2 --instance i-2=127.0.0.3 --instance i-3=127.0.0.4
                  --bind 127.0.0.1 --workers 1 --api off --max-connections 40000)
            [ "$name" = clb-nosplice ] && envs+=(CLB_SPLICE=off) ;;
        nginx)
            nginx_proxy_conf "$dir" "$([ "$mode" = multi ] && echo on || echo off)" "$port" "$tls" "$tcp" >"$dir/nginx.conf"
            cmd=(nginx -p "$dir" -e "$dir/error.log" -c "$dir/nginx.conf") ;;
        haproxy)
            haproxy_conf "$port" "$tls" "$tcp" >"$dir/haproxy.cfg"
            cmd=(haproxy -db -f "$dir/haproxy.cfg")
            [ "$mode" = multi ] && cmd=(haproxy -W -db -f "$dir/haproxy.cfg") ;;
    esac
    if [ "$mode" = callgrind ]; then
        cmd=(valgrind --tool=callgrind -q --callgrind-out-file="$dir/callgrind.out" "${cmd[@]}")
    fi
    env "${envs[@]}" taskset -c "$PROXY_CPU" "${cmd[@]}" >"$dir/out.log" 2>&1 &
    STARTED_PID=$!
    STARTED+=("$!")
}

stop_pid() { kill -TERM "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }

wait_ready() { # wait_ready PORT SECONDS NAME PID [tls]
    python3 "$BENCH/tools.py" ready 127.0.0.1 "$1" /b2 "$2" "${5:-}" ||
        die "$3 does not answer 200 on 127.0.0.1:$1${5:+ ($5)} (see $work; KEEP=1 keeps it)"
    kill -0 "$4" 2>/dev/null || die "$3 exited"
}

# proxy_runs LOAD PROXY: does PROXY take part in LOAD
proxy_runs() {
    case $2 in
        clb-nosplice) has "$1" "${SPLICE_LOADS[@]}" ;;
        nginx) [ "$1" != tcp ] || [ "$NGINX_STREAM" != none ] ;;
        *) return 0 ;;
    esac
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
for p in "${RUN_PROXIES[@]}"; do
    tls="" tcp=""
    [ "$NEED_TLS" = 1 ] && [ "$p" != clb-nosplice ] && tls=${LPORT[$p/https]}
    [ "$NEED_TCP" = 1 ] && proxy_runs tcp "$p" && tcp=${LPORT[$p/tcp]}
    start_proxy "$p" multi "${LPORT[$p/http]}" "$tls" "$tcp"
    PID[$p]=$STARTED_PID
done
listening=""
for p in "${RUN_PROXIES[@]}"; do
    wait_ready "${LPORT[$p/http]}" 10 "$p" "${PID[$p]}"
    listening+=" $p :${LPORT[$p/http]}"
    if [ "$NEED_TLS" = 1 ] && [ "$p" != clb-nosplice ]; then
        wait_ready "${LPORT[$p/https]}" 10 "$p" "${PID[$p]}" tls
        listening+=" https :${LPORT[$p/https]}"
    fi
    if [ "$NEED_TCP" = 1 ] && proxy_runs tcp "$p"; then
        wait_ready "${LPORT[$p/tcp]}" 10 "$p" "${PID[$p]}"
        listening+=" tcp :${LPORT[$p/tcp]}"
    fi
    listening+=","
done
log "proxies up (core $PROXY_CPU):${listening%,}"

# ---------------------------------------------------------------- metadata
clb_version=$($CLB --version 2>&1 | head -1)
{
    echo "date=$(date -u +%Y-%m-%d)"
    echo "nproc=$cores"
    echo "cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
    echo "kernel=$(uname -r)"
    echo "clb=${clb_version#clb } at $CLB_COMMIT"
    echo "rustc=$(rustc -V 2>/dev/null || echo 'rustc ?')"
    echo "nginx=$(nginx -v 2>&1 | sed 's/^nginx version: //')"
    echo "haproxy=HAProxy $(haproxy -v | head -1 | awk '{print $3}')"
    echo "wrk=wrk $(wrk -v 2>&1 | head -1 | awk '{print $2}')"
    echo "openssl=$(openssl version 2>/dev/null | sed 's/ *(Library.*//' || echo '?')"
    echo "rounds=$ROUNDS"
    echo "duration=$DURATION"
    echo "loads=${LOADS[*]}"
    echo "splice_off=$NEED_NOSPLICE"
    echo "nginx_stream=$([ "$NGINX_STREAM" = none ] && echo none || echo yes)"
    echo "proxy_cpu=$PROXY_CPU"
    echo "load_cpu=$LOAD_CPU"
    echo "clk_tck=$(getconf CLK_TCK)"
    echo "mem_conns=$MEM_CONNS"
    echo "insn_conns=$INSN_CONNS"
} >"$raw/meta.txt"

# ---------------------------------------------------------------- TLS check
# What each proxy negotiates with OpenSSL's client defaults (the libssl wrk uses), and
# whether wrk resumes TLS sessions (with and without the shim) against a throw-away nginx
# that logs $ssl_session_reused.
if [ "$NEED_TLS" = 1 ]; then
    : >"$raw/tls.tsv"
    for p in "${PROXIES[@]}"; do
        out=$(timeout 10 openssl s_client -connect "127.0.0.1:${LPORT[$p/https]}" -servername localhost \
            </dev/null 2>&1 || true)
        proto=$(sed -n 's/^New, \([^,]*\), Cipher is \(.*\)$/\1/p' <<<"$out" | head -1)
        cipher=$(sed -n 's/^New, \([^,]*\), Cipher is \(.*\)$/\2/p' <<<"$out" | head -1)
        group=$(sed -n 's/^Server Temp Key: \([^,]*\).*$/\1/p' <<<"$out" | head -1)
        sig=$(sed -n 's/^Peer signature type: \(.*\)$/\1/p' <<<"$out" | head -1)
        digest=$(sed -n 's/^Peer signing digest: \(.*\)$/\1/p' <<<"$out" | head -1)
        printf '%s\t%s\t%s\t%s\t%s\n' "$p" "${proto:-?}" "${cipher:-?}" "${group:-?}" \
            "${sig:-?}${digest:+ $digest}" >>"$raw/tls.tsv"
        log "TLS $p: ${proto:-?} ${cipher:-?} ${group:-?} ${sig:-?} ${digest:-}"
    done
    if [ "$(cut -f2-4 "$raw/tls.tsv" | sort -u | wc -l)" != 1 ]; then
        log "warning: the proxies negotiate different TLS parameters (see above)"
    fi
    if has tlsnew "${LOADS[@]}"; then
        cdir="$work/tls-check"
        mkdir -p "$cdir"
        cat >"$cdir/nginx.conf" <<CONF
worker_processes 1;
master_process off;
daemon off;
pid $cdir/nginx.pid;
error_log $cdir/error.log warn;
events { worker_connections 1024; }
http {
  $(nginx_temps "$cdir")
  log_format reuse '\$ssl_session_reused';
  access_log $cdir/access.log reuse;
  server {
    listen 127.0.0.1:$CHECK_PORT ssl;
$(nginx_tls)
    root $work/www;
  }
}
CONF
        taskset -c "$PROXY_CPU" nginx -p "$cdir" -e "$cdir/error.log" -c "$cdir/nginx.conf" &
        cpid=$!
        STARTED+=("$cpid")
        wait_ready "$CHECK_PORT" 10 "TLS check nginx" "$cpid" tls
        reuse_count() { # reuse_count [LD_PRELOAD]: "resumed of total" for 1 s of tlsnew
            : >"$cdir/access.log"
            run_wait taskset -c "$LOAD_CPU" env ${1:+"LD_PRELOAD=$1"} wrk -t1 -c4 -d1s \
                -H "Connection: close" "https://localhost:$CHECK_PORT/b2" >/dev/null
            sleep 0.2
            echo "$(grep -c '^r' "$cdir/access.log" || true) of $(wc -l <"$cdir/access.log")"
        }
        plain=$(reuse_count)
        shim=""
        [ -n "$NORESUME_SO" ] && shim=$(reuse_count "$NORESUME_SO")
        stop_pid "$cpid"
        {
            echo "tls_reuse_plain=$plain"
            echo "tls_reuse_shim=${shim:-not used}"
        } >>"$raw/meta.txt"
        log "TLS session resumption by wrk, Connection: close: $plain connections resumed without the shim, ${shim:-(shim not used)} with it"
    fi
fi

# ---------------------------------------------------------------- throughput
# wrk_cmd LOAD PROXY SECONDS: the wrk command line (quoted for eval), pinned to LOAD_CPU
wrk_cmd() {
    local kind=${LOAD_KIND[$1]} pre=() a=(-t1 -c"${LOAD_CONNS[$1]}" -d"$3"s --timeout 5s --latency)
    # HTTPS by name: wrk sends the URL's host as SNI, and an IP address there is illegal
    # (rustls logs a warning per handshake for it). Where localhost also resolves to ::1,
    # wrk's start-up connect is refused there and it settles on 127.0.0.1.
    local scheme=http host=127.0.0.1
    [ "$kind" = https ] && scheme=https host=localhost
    case $1 in close | tlsnew) a+=(-H "Connection: close") ;; esac
    [ "$1" = tlsnew ] && [ -n "$NORESUME_SO" ] && pre=("LD_PRELOAD=$NORESUME_SO")
    echo "taskset -c $LOAD_CPU env ${pre[*]@Q} wrk ${a[*]@Q} $scheme://$host:${LPORT[$2/$kind]}${LOAD_PATH[$1]}"
}
cpu_ticks() { python3 "$BENCH/tools.py" cpu "$1"; }
cpu_split() { python3 "$BENCH/tools.py" cpusplit "$1"; }

# The user/kernel split of a run. /proc's utime and stime come from the scheduler tick
# (250 Hz here): the tick stops on an idle core and, on a shared core, a woken proxy often
# runs just after a tick and sleeps before the next, so a proxy that works in short bursts
# is barely sampled; and the kernel scales the cumulative samples to the exact run time
# without letting either figure go down, so after a sys-heavy load the difference over a
# user-heavy run can show no sys at all (seen: nginx's handshakes, 0-5 % sys by /proc, 26 %
# by perf). perf's task-clock samples instead every 1 ms of the proxy's own run time (an
# hrtimer that runs only while the proxy runs), at about 0.2 % of its CPU. PERF_SPLIT=1
# when perf can do that here; else /proc's split is reported, marked rough.
PERF_SPLIT=0
mkdir -p "$work/perf"
if [ "${SPLIT:-perf}" = perf ] && command -v perf >/dev/null &&
    perf record -q -e task-clock -c 1000000 -o "$work/perf/check.data" -- true >/dev/null 2>&1 &&
    [ -n "$(python3 "$BENCH/tools.py" perfsplit "$work/perf/check.data")" ]; then
    PERF_SPLIT=1
fi
echo "split=$([ "$PERF_SPLIT" = 1 ] && echo perf || echo proc)" >>"$raw/meta.txt"
perf_start() { # perf_start PID FILE: sample PID's process tree until perf_stop
    PERF_PID=""
    [ "$PERF_SPLIT" = 1 ] || return 0
    local pids
    pids=$(python3 "$BENCH/tools.py" tree "$1" | paste -sd,)
    taskset -c "$LOAD_CPU" perf record -q -B -N -e task-clock -c 1000000 -p "$pids" -o "$2" \
        >/dev/null 2>&1 &
    PERF_PID=$!
    STARTED+=("$PERF_PID")
    sleep 0.1 # attached before the load starts
}
perf_stop() {
    [ -n "$PERF_PID" ] || return 0
    kill -INT "$PERF_PID" 2>/dev/null || true
    wait "$PERF_PID" 2>/dev/null || true
}

total=0
for load in "${LOADS[@]}"; do
    for p in "${RUN_PROXIES[@]}"; do proxy_runs "$load" "$p" && total=$((total + 1)); done
done
log "warm-up: 1 s of every load on every proxy ($total runs)"
for load in "${LOADS[@]}"; do
    for p in "${RUN_PROXIES[@]}"; do
        proxy_runs "$load" "$p" || continue
        eval "run_wait $(wrk_cmd "$load" "$p" 1)" >/dev/null
    done
done

log "throughput: $ROUNDS round(s) x $total runs (${LOADS[*]}; proxies ${RUN_PROXIES[*]}) x ${DURATION} s ($((ROUNDS * total * DURATION)) s of wrk)"
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
        for p in "${RUN_PROXIES[@]}"; do
            proxy_runs "$load" "$p" || continue
            file="$p.$load.$round.wrk"
            perf_start "${PID[$p]}" "$work/perf/$file.data"
            read -r u0 s0 < <(cpu_split "${PID[$p]}")
            eval "run_wait $(wrk_cmd "$load" "$p" "$DURATION")" >"$raw/$file"
            read -r u1 s1 < <(cpu_split "${PID[$p]}")
            perf_stop
            kill -0 "${PID[$p]}" 2>/dev/null || die "$p exited during the $load load"
            user=$((u1 - u0)) sys=$((s1 - s0))
            printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$p" "$load" "$round" $((user + sys)) "$file" \
                "$user" "$sys" >>"$raw/runs.tsv"
            rps=$(awk '/^Requests\/sec/ {print $2}' "$raw/$file")
            p99=$(awk '$1 == "99%" {print $2}' "$raw/$file")
            errs=$(grep -E 'Non-2xx|Socket errors' "$raw/$file" | tr -s ' ' | tr '\n' ';' || true)
            log "round $round $load $p: $rps req/s, p99 $p99, proxy CPU $((user + sys)) ticks ${errs:+ $errs}"
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
if [ "$PERF_SPLIT" = 1 ]; then
    log "user/kernel split: reading the perf samples"
    (cd "$work/perf" && python3 "$OLDPWD/$BENCH/tools.py" perfsplit $(cut -f5 "$raw/runs.tsv" | sed 's/$/.data/')) |
        sed 's/\.data\t/\t/' >"$raw/split.tsv"
fi
log "throughput phase: $(grep phase_ "$raw/meta.txt" | tr '\n' ' ')"

# The throughput proxies are done: stop them so they cannot disturb what follows.
for p in "${RUN_PROXIES[@]}"; do stop_pid "${PID[$p]}"; done
# A proxy that logs per request or per connection pays for it in the figures: count what
# each wrote (clb: RUST_LOG=warn; nginx and HAProxy: warnings and errors only).
for p in "${RUN_PROXIES[@]}"; do
    lines=$(cat "$work/$p-${LPORT[$p/http]}"/*.log 2>/dev/null | wc -l)
    echo "log_lines_$p=$lines" >>"$raw/meta.txt"
    [ "$lines" -gt 20 ] && log "warning: $p wrote $lines log lines during the runs (see $work/$p-${LPORT[$p/http]}; KEEP=1 keeps it): $(cat "$work/$p-${LPORT[$p/http]}"/*.log | sort | uniq -c | sort -rn | head -1)"
done

# ---------------------------------------------------------------- idle memory
# On a fresh process of each proxy: freed heap that a process keeps after the loads above
# would hide the growth.
: >"$raw/mem.tsv"
if [ "$MEM_CONNS" -gt 0 ]; then
    log "memory: $MEM_CONNS idle keep-alive connections to a fresh process of each proxy, three ways"
    for mode in silent one burst; do
        for p in "${PROXIES[@]}"; do
            start_proxy "$p" multi "${MEM_PORT[$p]}"
            mpid=$STARTED_PID
            wait_ready "${MEM_PORT[$p]}" 10 "$p" "$mpid"
            sleep 0.5
            read -r held before after < <(taskset -c "$LOAD_CPU" python3 "$BENCH/tools.py" idle \
                127.0.0.1 "${MEM_PORT[$p]}" /b2 "$MEM_CONNS" "$mpid" 2 "$mode")
            stop_pid "$mpid"
            printf '%s\t%s\t%s\t%s\t%s\n' "$p" "$held" "$before" "$after" "$mode" >>"$raw/mem.tsv"
            log "$p ($mode): $held connections held, RSS $before KiB -> $after KiB ($(((after - before) * 1024 / (held > 0 ? held : 1))) B each)"
        done
    done
fi

# ---------------------------------------------------------------- instructions
: >"$raw/insn.tsv"
insn_proxies=()
if [ "$INSN_TOOL" != none ]; then
    insn_proxies=(clb)
    [ "$INSN_PEERS" = 1 ] && insn_proxies+=(nginx haproxy)
    log "instructions per request ($INSN_TOOL): $INSN_REQUESTS requests over $INSN_CONNS connections to ${insn_proxies[*]}"
fi
for p in "${insn_proxies[@]}"; do
    port=${INSN_PORT[$p]}
    if [ "$INSN_TOOL" = perf ]; then
        start_proxy "$p" single "$port"
        ipid=$STARTED_PID
        wait_ready "$port" 10 "$p" "$ipid"
        taskset -c "$LOAD_CPU" python3 "$BENCH/tools.py" load 127.0.0.1 "$port" /b2 2000 "$INSN_CONNS" >/dev/null
        read -r ok failed < <(taskset -c "$LOAD_CPU" perf stat -x, -e instructions:u -o "$work/$p.perf" \
            -p "$ipid" -- python3 "$BENCH/tools.py" load 127.0.0.1 "$port" /b2 "$INSN_REQUESTS" "$INSN_CONNS")
        instr=$(awk -F, '/instructions/ {print $1}' "$work/$p.perf")
        tool="perf stat -e instructions:u"
    else
        start_proxy "$p" callgrind "$port"
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
# p99 of normal clients beside slow-loris connections, for all three (make bench-slow)
if [ "$SLOW_CLIENTS" != 0 ]; then
    log "slow clients: $SLOW_CLIENTS slow-loris connections beside wrk, each proxy in turn"
    if table=$(CLB_BIN="$CLB" SLOW="$SLOW_CLIENTS" DURATION="$DURATION" PROXY_CPU="$PROXY_CPU" \
        LOAD_CPU="$LOAD_CPU" "$BENCH/slow_clients.sh" 2>"$work/slow_clients.log"); then
        {
            echo
            echo "Normal clients beside $SLOW_CLIENTS slow-loris connections (\`make bench-slow\`: wrk, 50 keep-alive connections, alone and then beside connections that each hold a partial head and trickle a byte every 2 s; each proxy pinned to core $PROXY_CPU, wrk, the instance and the slow clients on core $LOAD_CPU; target for clb: p99 ratio ≤ 1.25×; the row clb-sink is the control run, clb serving wrk while the slow clients go to a listener that never reads, so no proxy sees them):"
            echo
            printf '%s\n' "$table"
        } >>"$OUT"
        printf '%s\n' "$table"
    else
        log "warning: the slow-clients run failed (see $work/slow_clients.log)"
    fi
fi
log "written to $OUT"
