#!/usr/bin/env bash
# `make cluster`: etcd in a temporary directory, three clb nodes on 127.0.1.1,
# 127.0.2.1 and 127.0.3.1 (zones zone-a, zone-b, zone-c) sharing it, and the three demo
# instances of `make run` behind them. Prints the dig and curl lines to try; Ctrl-C
# stops everything (etcd's directory is removed).
set -euo pipefail
cd "$(dirname "$0")/.."

PORT="${PORT:-8080}"
INSTANCE_PORT="${INSTANCE_PORT:-8081}"
DNS_PORT="${DNS_PORT:-5353}"
API_PORT="${API_PORT:-9900}"
ETCD_PORT="${ETCD_PORT:-23790}"
BIN="${BIN:-target/release}"
IPS=(127.0.0.2 127.0.0.3 127.0.0.4)
NODES=(127.0.1.1 127.0.2.1 127.0.3.1)
ZONES=(zone-a zone-b zone-c)

for exe in clb clb-demo-backend; do
    if [ ! -x "$BIN/$exe" ]; then
        echo "cluster: $BIN/$exe is missing; run 'make build' first" >&2
        exit 1
    fi
done
if ! command -v etcd >/dev/null; then
    echo "cluster: etcd is missing (Debian: apt-get install etcd-server)" >&2
    exit 1
fi

dir="$(mktemp -d -t clb-cluster.XXXXXX)"
pids=()
stop_all() {
    for pid in "${pids[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    wait "${pids[@]}" 2>/dev/null || true
    rm -rf "$dir"
}
trap stop_all EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Waits (at most 10 s) until HOST:PORT accepts connections, or says which did not.
wait_port() {
    local what="$1" pid="$2" host="$3" port="$4"
    for _ in $(seq 100); do
        if ! kill -0 "$pid" 2>/dev/null; then
            break
        fi
        if (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null; then
            return 0
        fi
        sleep 0.1
    done
    echo "cluster: $what did not start on $host:$port (log in $dir)" >&2
    exit 1
}

etcd_url="http://127.0.0.1:$ETCD_PORT"
peer_url="http://127.0.0.1:$((ETCD_PORT + 1))"
etcd --name demo --data-dir "$dir/etcd" \
    --listen-client-urls "$etcd_url" --advertise-client-urls "$etcd_url" \
    --listen-peer-urls "$peer_url" --initial-advertise-peer-urls "$peer_url" \
    --initial-cluster "demo=$peer_url" >"$dir/etcd.log" 2>&1 &
pids+=("$!")
wait_port etcd "$!" 127.0.0.1 "$ETCD_PORT"

for i in 0 1 2; do
    "$BIN/clb-demo-backend" --listen "${IPS[$i]}:$INSTANCE_PORT" --name "i-$((i + 1))" &
    pids+=("$!")
    wait_port "instance i-$((i + 1))" "$!" "${IPS[$i]}" "$INSTANCE_PORT"
done

for n in 0 1 2; do
    ip="${NODES[$n]}"
    "$BIN/clb" --cluster "$etcd_url" \
        --node "n$((n + 1))" --node-zone "${ZONES[$n]}" --node-address "$ip" \
        --bind "$ip" --api "$ip:$API_PORT" --dns "$ip:$DNS_PORT" \
        --listener "http:$PORT:http:$INSTANCE_PORT" \
        --instance i-1=127.0.0.2@zone-a \
        --instance i-2=127.0.0.3@zone-b \
        --instance i-3=127.0.0.4@zone-c \
        >"$dir/n$((n + 1)).log" 2>&1 &
    pids+=("$!")
    wait_port "clb node n$((n + 1))" "$!" "$ip" "$PORT"
done

cat <<TRY
Three clb nodes share etcd at $etcd_url (data and logs in $dir):
  n1 127.0.1.1 zone-a    n2 127.0.2.1 zone-b    n3 127.0.3.1 zone-c
Try:
  dig @127.0.2.1 -p $DNS_PORT default.elb.localhost A +short      # the three nodes
  dig @127.0.2.1 -p $DNS_PORT elb.localhost NS                    # a name server per node, with glue
  curl http://127.0.1.1:$PORT/   curl http://127.0.3.1:$PORT/      # any node, any instance
  curl -s http://127.0.1.1:$API_PORT/ | grep -o 'n[123] (this node)'  # status page: Nodes table
  aws elb describe-load-balancers --endpoint-url http://127.0.2.1:$API_PORT --no-sign-request
  ETCDCTL_API=3 etcdctl --endpoints=$etcd_url get --prefix /clb/nodes/
  kill -9 <a node's pid> and dig again: gone within --node-ttl (10 s)
Ctrl-C stops everything.
TRY
wait "${pids[-1]}"
