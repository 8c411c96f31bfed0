#!/usr/bin/env bash
# Closed loop, each proxy pinned (issue 14): clb, nginx and HAProxy in turn on core 0,
# wrk and one nginx serving three instance addresses on core 1, two rounds of D seconds
# (default 8). Per run: req/s, the proxy core's busy share, wrk's latency percentiles,
# epoll_wait calls per request (perf tracepoint) and context switches per request on
# each core. CLB= the clb binary (default target/release/clb). Needs nginx, haproxy,
# wrk and perf. About 1.5 minutes.
set -u
CLB="${CLB:-$PWD/target/release/clb}"
W=$(mktemp -d); cd "$W"
BP=18610; D=${D:-8}
cat > be.conf <<CONF
worker_processes 1; daemon off; pid $W/be.pid; error_log $W/be.err;
events { worker_connections 4096; }
http { access_log off; server { listen 127.0.0.2:$BP; listen 127.0.0.3:$BP; listen 127.0.0.4:$BP; location / { return 200 "ok"; } } }
CONF
taskset -c 1 nginx -c $W/be.conf -p $W & 
cat > px.conf <<CONF
worker_processes 1; master_process off; daemon off; pid $W/px.pid; error_log $W/px.err;
events { worker_connections 4096; }
http { access_log off; upstream u { least_conn; server 127.0.0.2:$BP; server 127.0.0.3:$BP; server 127.0.0.4:$BP; keepalive 64; }
 server { listen 127.0.0.1:18601; location / { proxy_pass http://u; proxy_http_version 1.1; proxy_set_header Connection ""; proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for; } } }
CONF
cat > hp.cfg <<CONF
global
  nbthread 1
defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
frontend fe
  bind 127.0.0.1:18602
  option forwardfor
  default_backend b
backend b
  balance leastconn
  http-reuse always
  server a 127.0.0.2:$BP
  server b 127.0.0.3:$BP
  server c 127.0.0.4:$BP
CONF
sleep 0.5
for p in clb nginx haproxy clb nginx haproxy; do
  case $p in
    clb) RUST_LOG=warn taskset -c 0 $CLB --listener http:18600:http:$BP --instance i-1=127.0.0.2 --instance i-2=127.0.0.3 --instance i-3=127.0.0.4 --bind 127.0.0.1 --workers 1 --api off & PID=$!; PORT=18600;;
    nginx) taskset -c 0 nginx -c $W/px.conf -p $W & PID=$!; PORT=18601;;
    haproxy) taskset -c 0 haproxy -db -f $W/hp.cfg & PID=$!; PORT=18602;;
  esac
  for i in $(seq 50); do curl -fs -o /dev/null http://127.0.0.1:$PORT/ && break; sleep 0.1; done
  taskset -c 1 wrk -t1 -c50 -d1 http://127.0.0.1:$PORT/ >/dev/null
  t0=$(awk '{print $14+$15}' /proc/$PID/stat)
  perf stat -x, -e syscalls:sys_enter_epoll_wait,context-switches -p $PID -o $W/p.$p -- sleep $D & P1=$!
  perf stat -x, -a -A -e context-switches -C 0,1 -o $W/cs.$p -- sleep $D & P2=$!
  taskset -c 1 wrk -t1 -c50 -d${D} --latency http://127.0.0.1:$PORT/ > $W/wrk.$p
  wait $P1 $P2 2>/dev/null; sleep 0.3
  t1=$(awk '{print $14+$15}' /proc/$PID/stat)
  req=$(awk '/requests in/ {print $1}' $W/wrk.$p)
  rps=$(awk '/Requests\/sec/ {print $2}' $W/wrk.$p)
  lat=$(awk '/ 50%| 90%| 99%/ {printf "%s=%s ", $1, $2}' $W/wrk.$p)
  ew=$(awk -F, '/epoll_wait/ {print $1}' $W/p.$p)
  cs0=$(awk -F, '/CPU0/ && /context-switches/ {print $2}' $W/cs.$p)
  cs1=$(awk -F, '/CPU1/ && /context-switches/ {print $2}' $W/cs.$p)
  cpu=$(python3 -c "print(f'{($t1-$t0)/100/$D*100:.0f}%')")
  python3 -c "
req=$req; ew=${ew:-0}; cs0=${cs0:-0}; cs1=${cs1:-0}
print(f'$p: {float(\"$rps\"):,.0f} req/s; proxy core busy $cpu; $lat; epoll_wait per req {ew/req:.3f} (requests per wait {req/max(ew,1):.1f}); ctx switches per req core0 {cs0/req:.3f} core1 {cs1/req:.3f}')"
  kill $PID; wait $PID 2>/dev/null
done
kill $(cat $W/be.pid) 2>/dev/null
