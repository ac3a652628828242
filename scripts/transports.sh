#!/usr/bin/env bash
# The same swarm over every transport, against one server, in one run: frames on TCP (the game
# port), on TLS (the TLS port), in WebSocket messages (the web port) and in WebSocket messages
# over TLS. For each: the server's CPU per delivery, the bots' p99 latency, and the server's
# memory per connection; then TLS handshakes per second (net's example `handshakes`, 256 at a
# time, against the TLS port) and the server's CPU per handshake.
# Transports are run in turn, ROUNDS times over, so that a machine whose speed drifts during
# the run weighs on all of them alike.
#
#   scripts/transports.sh [BOTS] [SECS]
#   scripts/transports.sh 1000 20
#
# Environment: PORT (default 7500; the web port is PORT+1, the TLS port PORT+2), ROUNDS
# (default 2), OUT (default target/transports: the certificate, server log, reports).
# Needs openssl (Debian's openssl) for the certificate.
set -euo pipefail
cd "$(dirname "$0")/.."

bots=${1:-1000}
secs=${2:-20}
port=${PORT:-7500}
rounds=${ROUNDS:-2}
out=${OUT:-target/transports}
mkdir -p "$out"
web=$((port + 1))
tls=$((port + 2))

cargo build --release -q -p world-server -p dummy-client -p net --example handshakes

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj /CN=localhost -addext "subjectAltName=IP:127.0.0.1,DNS:localhost" \
    -addext "basicConstraints=critical,CA:FALSE" \
    -keyout "$out/key.pem" -out "$out/cert.pem" 2>/dev/null

# A fresh server for every run, so that the memory each run adds is its own.
start_server() {
    ./target/release/world-server --listen "127.0.0.1:$port" --web "127.0.0.1:$web" \
        --tls-listen "127.0.0.1:$tls" --tls-cert "$out/cert.pem" --tls-key "$out/key.pem" \
        --log-level warn --config <(printf '[storage]\npath = "%s"\nsynchronous = "normal"\n' "$out/world.db") \
        2>>"$out/server.log" &
    server=$!
    sleep 1
}
stop_server() {
    kill -TERM "$server"
    wait "$server" || true
}
trap 'kill -TERM $server 2>/dev/null || true' EXIT

ticks=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$server/stat"; }
rss_kib() { awk '/VmRSS/ {print $2}' "/proc/$server/status"; }

flags_of() {
    case $1 in
        tcp) echo "--server 127.0.0.1:$port" ;;
        tls) echo "--server 127.0.0.1:$tls --tls --ca $out/cert.pem" ;;
        ws) echo "--server 127.0.0.1:$web --transport ws" ;;
        wss) echo "--server 127.0.0.1:$tls --transport ws --tls --ca $out/cert.pem" ;;
    esac
}

printf '%-5s %-6s %12s %12s %10s %14s %8s\n' transport round deliveries "CPU/deliv" "p99 ms" "RSS/conn KiB" lost
for round in $(seq "$rounds"); do
    for t in tcp tls ws wss; do
        start_server
        rss_before=$(rss_kib)
        cpu_before=$(cpu_ticks)
        # shellcheck disable=SC2046
        ./target/release/dummy-client $(flags_of "$t") --bots "$bots" --duration "$secs" \
            --log-level warn --json "$out/report-$t-$round.json" >"$out/report-$t-$round.txt" 2>&1 &
        swarm=$!
        # Memory mid-run, every bot connected.
        sleep $((secs * 2 / 3))
        rss_during=$(rss_kib)
        wait "$swarm" || true
        cpu=$(( $(cpu_ticks) - cpu_before ))
        python3 - "$out/report-$t-$round.json" "$t" "$round" "$cpu" "$ticks" "$rss_before" "$rss_during" "$bots" <<'EOF'
import json, sys
path, t, rnd, cpu, hz, before, during, bots = sys.argv[1:]
doc = json.load(open(path))
r = doc["results"]
received = r["received"]
cpu_s = int(cpu) / int(hz)
per = cpu_s / received * 1e6 if received else float("nan")
rss = (int(during) - int(before)) / int(bots)
print(f"{t:<5} {rnd:<6} {received:>12} {per:>10.3f}us {r['latency_ms']['p99']:>10.1f} {rss:>14.1f} {r['lost']:>8}")
EOF
        stop_server
    done
done

echo
start_server
echo "TLS handshakes (256 at a time, 10 s, a full handshake each):"
cpu_before=$(cpu_ticks)
handshakes=$(./target/release/examples/handshakes "127.0.0.1:$tls" "$out/cert.pem" 256 10)
cpu=$(( $(cpu_ticks) - cpu_before ))
echo "$handshakes"
echo "$handshakes" | awk -v c="$cpu" -v hz="$ticks" '{ printf "server CPU: %.2f s, %.0f us per handshake (session set-up and close included)\n", c / hz, c / hz / $1 * 1e6 }'


stop_server
start_server
# Connections that never finish setting up: 1000 that stop half way through a ClientHello on
# the TLS port, then 1000 half way through an upgrade request on the web port; each is
# closed at net.handshake_timeout_secs, and costs the server only this much meanwhile.
for what in tls web; do
    rss_before=$(rss_kib)
    python3 - "$what" "$tls" "$web" "$server" "$rss_before" <<'EOF'
import socket, sys, time
what, tls, web, pid, before = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], int(sys.argv[5])
port, start = (tls, bytes([0x16, 3, 1, 2, 0, 1, 0, 1])) if what == "tls" else (web, b"GET /ws HTTP/1.1\r\nHost: x\r\n")
socks = []
for _ in range(1000):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(start)
    socks.append(s)
time.sleep(3)
rss = int([l.split()[1] for l in open(f"/proc/{pid}/status") if l.startswith("VmRSS")][0])
print(f"1000 stalled {what} set-ups: server RSS +{(rss - before) / 1000:.1f} KiB each")
for s in socks:
    s.close()
EOF
done

stop_server
trap - EXIT
echo "server log: $out/server.log; reports: $out/report-*.json"
