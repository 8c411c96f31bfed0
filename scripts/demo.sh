#!/usr/bin/env bash
# `make run`: three demo instances on loopback and clb in front of them.
#
# The instances are target/release/clb-demo-backend on 127.0.0.2-4:INSTANCE_PORT;
# clb runs in the foreground on 127.0.0.1:PORT until Ctrl-C, and the instances are
# stopped whenever this script exits.
set -euo pipefail
cd "$(dirname "$0")/.."

PORT="${PORT:-8080}"
INSTANCE_PORT="${INSTANCE_PORT:-8081}"
BIN=target/release
IPS=(127.0.0.2 127.0.0.3 127.0.0.4)

for exe in clb clb-demo-backend; do
    if [ ! -x "$BIN/$exe" ]; then
        echo "demo: $BIN/$exe is missing; run 'make build' first" >&2
        exit 1
    fi
done

pids=()
stop_instances() {
    for pid in "${pids[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    wait "${pids[@]}" 2>/dev/null || true
}
trap stop_instances EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

for i in 0 1 2; do
    "$BIN/clb-demo-backend" --listen "${IPS[$i]}:$INSTANCE_PORT" --name "i-$((i + 1))" &
    pids+=("$!")
done

# Wait (at most 5 s each) until every instance accepts connections.
for i in 0 1 2; do
    ready=no
    for _ in $(seq 50); do
        if ! kill -0 "${pids[$i]}" 2>/dev/null; then
            break # it exited: the port is taken, and it said so
        fi
        if (exec 3<>"/dev/tcp/${IPS[$i]}/$INSTANCE_PORT") 2>/dev/null; then
            ready=yes
            break
        fi
        sleep 0.1
    done
    if [ "$ready" != yes ]; then
        echo "demo: instance i-$((i + 1)) did not start on ${IPS[$i]}:$INSTANCE_PORT" >&2
        exit 1
    fi
done

echo "clb is balancing http://127.0.0.1:$PORT/ across 3 demo instances; try: curl http://127.0.0.1:$PORT/"
# In the background with `wait`, so a TERM or INT to this script runs the traps at once
# (bash defers traps while a foreground child runs) and stops clb with the instances.
"$BIN/clb" --listener "http:$PORT:http:$INSTANCE_PORT" \
    --instance i-1=127.0.0.2@zone-a \
    --instance i-2=127.0.0.3@zone-a \
    --instance i-3=127.0.0.4@zone-b \
    --bind 127.0.0.1 &
pids+=("$!")
wait "$!"
