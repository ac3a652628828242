#!/usr/bin/env bash
# What `world-server --record` costs: the same swarm against the same release build, without and
# with a recording, alternated (this machine's speed drifts between runs, so only the ratio of
# neighbouring runs means anything). Prints, per run, the deliveries, the server's CPU per
# delivery, and the recording's size per 1,000 bots per minute; then replays each recording.
#
#   scripts/record-cost.sh [BOTS] [SECS] [ROUNDS]
#   scripts/record-cost.sh 1000 30 2
#
# Environment: PORT (default 7410), OUT (default target/record-cost).
set -euo pipefail
cd "$(dirname "$0")/.."

bots=${1:-1000}
secs=${2:-30}
rounds=${3:-2}
port=${PORT:-7410}
out=${OUT:-target/record-cost}
rm -rf "$out"
mkdir -p "$out"
out=$(cd "$out" && pwd)

cargo build --release -q -p world-server -p dummy-client
bin=$PWD/target/release/world-server
hz=$(getconf CLK_TCK)

printf '%-7s %-6s %12s %14s %12s %16s\n' run round deliveries "CPU us/deliv" "rec bytes" "rec MiB/1k bots/min"
for round in $(seq "$rounds"); do
    for mode in plain record; do
        dir="$out/$mode-$round"
        mkdir -p "$dir"
        args=(--listen "127.0.0.1:$port" --web off)
        [ "$mode" = record ] && args+=(--record "$dir/rec")
        (cd "$dir" && exec "$bin" "${args[@]}" >server.log 2>&1) &
        server=$!
        for _ in $(seq 100); do
            grep -q listening "$dir/server.log" 2>/dev/null && break
            sleep 0.1
        done
        cpu_before=$(awk '{print $14 + $15}' "/proc/$server/stat")
        ./target/release/dummy-client --server "127.0.0.1:$port" --bots "$bots" --duration "$secs" \
            --json "$dir/report.json" >"$dir/bots.txt" 2>&1
        cpu=$(( $(awk '{print $14 + $15}' "/proc/$server/stat") - cpu_before ))
        kill -TERM "$server"
        wait "$server"
        received=$(python3 -c "import json,sys; print(json.load(open('$dir/report.json'))['results']['received'])")
        bytes=0
        [ "$mode" = record ] && bytes=$(du -sb "$dir/rec" | cut -f1)
        awk -v m="$mode" -v r="$round" -v d="$received" -v c="$cpu" -v hz="$hz" -v b="$bytes" \
            -v bots="$bots" -v secs="$secs" 'BEGIN {
                printf "%-7s %-6s %12d %14.3f %12d %16.1f\n", m, r, d, c / hz * 1e6 / d, b,
                    b / 1048576 / (bots / 1000) / (secs / 60) }'
    done
done
for rec in "$out"/record-*/rec; do
    echo "$rec: $("$bin" replay "$rec" | tail -1)"
done
