#!/usr/bin/env bash
# A/B of two clb binaries (issue 14, "no regression"): A=old B=new tests/bench/ab.sh.
# Both pinned in turn to core 0 in front of one nginx serving three instance addresses
# on core 1; wrk (core 1) runs keep-alive then `Connection: close` loads, four
# alternating rounds of D seconds (default 6). Prints "load round A|B requests
# cpu_ticks req_per_cpu_s" per run. Needs nginx and wrk. About 2 minutes.
set -u
W=$(mktemp -d); cd "$W"; BP=18710; D=${D:-6}
cat > be.conf <<CONF
worker_processes 1; daemon off; pid $W/be.pid; error_log $W/be.err;
events { worker_connections 4096; }
http { access_log off; server { listen 127.0.0.2:$BP; listen 127.0.0.3:$BP; listen 127.0.0.4:$BP; location / { return 200 "ok"; } } }
CONF
taskset -c 1 nginx -c $W/be.conf -p $W & BEP=$!
sleep 0.5
for load in keep close; do
for r in 1 2 3 4; do
for v in A B; do
  if [ $v = A ]; then BIN=$A; else BIN=$B; fi
  RUST_LOG=warn taskset -c 0 $BIN --listener http:18700:http:$BP --instance i-1=127.0.0.2 --instance i-2=127.0.0.3 --instance i-3=127.0.0.4 --bind 127.0.0.1 --workers 1 --api off & PID=$!
  for i in $(seq 50); do curl -fs -o /dev/null http://127.0.0.1:18700/ && break; sleep 0.1; done
  H=(); [ $load = close ] && H=(-H 'Connection: close')
  taskset -c 1 wrk -t1 -c50 -d1 "${H[@]}" http://127.0.0.1:18700/ >/dev/null
  t0=$(awk '{print $14+$15}' /proc/$PID/stat)
  taskset -c 1 wrk -t1 -c50 -d$D "${H[@]}" http://127.0.0.1:18700/ > $W/wrk
  t1=$(awk '{print $14+$15}' /proc/$PID/stat)
  req=$(awk '/requests in/ {print $1}' $W/wrk)
  echo "$load $r $v $req $((t1-t0)) $(python3 -c "print(round($req/(($t1-$t0)/100)))")"
  kill $PID; wait $PID 2>/dev/null
done; done; done
kill $BEP
