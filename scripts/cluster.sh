#!/usr/bin/env bash
# Load test of a cluster on this machine: builds release binaries, starts a nats-server and
# NODES world-server nodes on free loopback ports (each with its own SQLite file and admin
# listener), runs the dummy-client swarm spread over the nodes, and prints the bots' report,
# then each node's and nats-server's CPU time and the bytes that crossed NATS.
#
#   scripts/cluster.sh [NODES] [BOTS] [SECS] [extra dummy-client flags...]
#   scripts/cluster.sh 3 3000 30
#
# Environment: OUT (folder for the logs and reports, default target/cluster), BASE_PORT
# (default 7600: nodes on BASE_PORT+1.., admin listeners on BASE_PORT+101.., NATS on
# BASE_PORT+200, its monitoring on BASE_PORT+201). Needs Debian's nats-server.
set -euo pipefail
cd "$(dirname "$0")/.."

nodes=${1:-3}
bots=${2:-3000}
secs=${3:-30}
shift $(( $# > 3 ? 3 : $# ))
base=${BASE_PORT:-7600}
out=${OUT:-target/cluster}
rm -rf "$out"
mkdir -p "$out"

command -v nats-server >/dev/null || { echo "nats-server is not installed (apt-get install nats-server)"; exit 1; }
cargo build --release -q -p world-server -p dummy-client

nats_port=$((base + 200))
nats-server -a 127.0.0.1 -p "$nats_port" -m $((base + 201)) -js -sd "$out/jetstream" >"$out/nats.log" 2>&1 &
pids=($!)
trap 'kill -TERM "${pids[@]}" 2>/dev/null || true' EXIT
sleep 0.5

servers=()
for i in $(seq "$nodes"); do
    ./target/release/world-server --listen "127.0.0.1:$((base + i))" --web off \
        --admin "127.0.0.1:$((base + 100 + i))" \
        --nats "nats://127.0.0.1:$nats_port" --node "node$i" --log-level warn \
        --config <(printf '[storage]\npath = "%s"\n' "$out/node$i.db") \
        2>"$out/node$i.log" &
    pids+=($!)
    servers+=("127.0.0.1:$((base + i))")
done
sleep 1

ticks=$(getconf CLK_TCK)
cpu_of() { awk '{print $14 + $15}' "/proc/$1/stat"; }
declare -A before
for pid in "${pids[@]}"; do before[$pid]=$(cpu_of "$pid"); done
varz() { curl -s "127.0.0.1:$((base + 201))/varz" | tr -d ' ,' | awk -F: -v k="\"$1\"" '$1 == k {print $2}'; }
nats_in_before=$(varz in_bytes)
started=$(date +%s%N)

status=0
list=$(IFS=,; echo "${servers[*]}")
./target/release/dummy-client --server "$list" --bots "$bots" --duration "$secs" \
    --json "$out/report.json" --html "$out/report.html" "$@" || status=$?

wall_ns=$(( $(date +%s%N) - started ))
nats_in=$(( $(varz in_bytes) - nats_in_before ))
echo
awk -v ns="$wall_ns" 'BEGIN { printf "wall %.1f s\n", ns / 1e9 }'
names=(nats-server)
for i in $(seq "$nodes"); do names+=("node$i"); done
for k in "${!pids[@]}"; do
    pid=${pids[$k]}
    awk -v name="${names[$k]}" -v cpu="$(( $(cpu_of "$pid") - ${before[$pid]} ))" -v hz="$ticks" \
        -v ns="$wall_ns" -v rss="$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")" 'BEGIN {
        c = cpu / hz; w = ns / 1e9
        printf "%-12s %.1f s CPU = %.0f%% of one core; RSS peak %.1f MiB\n", name, c, 100 * c / w, rss / 1024 }'
done
awk -v b="$nats_in" -v ns="$wall_ns" 'BEGIN {
    printf "NATS: %.1f MB published by the nodes, %.2f MB/s\n", b / 1e6, b / 1e6 / (ns / 1e9) }'
for i in $(seq "$nodes"); do
    curl -s "127.0.0.1:$((base + 100 + i))/metrics" | grep -E '^world_cluster_(sent|received)_bytes_total|^world_cluster_batches_(dropped|missing)_total' | sed "s/^/node$i /"
done
kill -TERM "${pids[@]}" 2>/dev/null || true
wait 2>/dev/null || true
trap - EXIT
echo "logs and reports in $out"
exit $status
