#!/usr/bin/env bash
# Load test on this machine: builds release binaries, starts a world-server on a free loopback
# port, runs the dummy-client swarm against it, and prints the bots' report followed by the
# server's CPU time and memory.
#
#   scripts/load.sh [BOTS] [SECS] [extra dummy-client flags...]
#   scripts/load.sh 1000 60
#   scripts/load.sh 5000 60 --config my-bots.toml
#
# Environment: PORT (default 7400), SERVER_CONFIG (a world-server TOML file), OUT (folder for
# the server log, report.json and report.html, default target/load), SERVER_BIN (the server binary, default
# the one this script builds: set it to compare another build, or to load the arena, with
# extra flags `--scenario arena`).
set -euo pipefail
cd "$(dirname "$0")/.."

bots=${1:-1000}
secs=${2:-60}
shift $(( $# > 2 ? 2 : $# ))
port=${PORT:-7400}
out=${OUT:-target/load}
mkdir -p "$out"

cargo build --release -q -p world-server -p dummy-client -p arena

server_bin=${SERVER_BIN:-./target/release/world-server}
server_args=(--listen "127.0.0.1:$port")
# No web port, so that runs never collide on it (builds from before it have no --web).
"$server_bin" --help | grep -q -- --web && server_args+=(--web off)
[ -n "${SERVER_CONFIG:-}" ] && server_args+=(--config "$SERVER_CONFIG")
"$server_bin" "${server_args[@]}" 2>"$out/server.log" &
server=$!
trap 'kill -TERM $server 2>/dev/null || true' EXIT
for _ in $(seq 50); do
    grep -q listening "$out/server.log" 2>/dev/null && break
    sleep 0.1
done

ticks=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$server/stat"; }
cpu_before=$(cpu_ticks)
started=$(date +%s%N)

status=0
./target/release/dummy-client --server "127.0.0.1:$port" --bots "$bots" --duration "$secs" \
    --json "$out/report.json" --html "$out/report.html" "$@" || status=$?

awk -v ns="$(( $(date +%s%N) - started ))" -v cpu="$(( $(cpu_ticks) - cpu_before ))" -v hz="$ticks" \
    -v peak="$(awk '/VmHWM/ {print $2}' "/proc/$server/status")" \
    -v now="$(awk '/VmRSS/ {print $2}' "/proc/$server/status")" 'BEGIN {
        wall = ns / 1e9; c = cpu / hz
        printf "\nserver: %.1f s CPU over %.1f s wall = %.0f%% of one core; RSS peak %.1f MiB, now %.1f MiB\n",
            c, wall, 100 * c / wall, peak / 1024, now / 1024 }'

kill -TERM "$server"
wait "$server" || { echo "server exited with $?"; status=1; }
trap - EXIT
echo "server log: $out/server.log; report: $out/report.json and $out/report.html"
exit $status
