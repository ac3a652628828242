#!/usr/bin/env python3
"""The server's benchmark, in one command: builds release binaries, then runs the server and the
bots on this machine for each scenario and writes one markdown table and one JSON file.

  scripts/bench.py                       # every scenario, 60 s of chat each
  scripts/bench.py --secs 20 --scenarios chat-1000,idle
  scripts/bench.py --other /path/to/old/world-server    # the same runs against another build,
                                                        # alternated with this one's
  scripts/bench.py --scenarios chat-5000 --perf          # and where the server's time went:
                                                        # perf record -g for 10 s mid-run
  scripts/bench.py --scenarios chat-5000 --floor         # and the floor under it: a null server
                                                        # making the same writes (net's example
                                                        # `floor`), its CPU per delivery

Scenarios (rooms of 20 and a line every 250 ms unless said):
  chat-1000, chat-5000, chat-10000   that many bots chatting
  idle                               2,000 bots logged in and silent: server RSS per connection
  broadcast                          400 bots in one room, a line every 500 ms
  resumable-1000                     chat-1000 with resumable sessions (acknowledged every second)
  chaos-1000                         resumable-1000 with each bot's connection dropped once a
                                     minute at random (closed or stalled): resumes, their
                                     latency, and the replay buffers' peak on the server

The server runs on its defaults but for what the bots need: no share of max_sessions kept for
accounts (the bots are guests) and rooms as large as a broadcast room.

Per run: deliveries per second, lost, latency p50/p99, the server's CPU (user and system) and
its CPU per delivery, its peak RSS (and for `idle` its RSS per idle connection), and the bots'
own CPU. This machine's speed drifts from day to day: compare builds with --other, in one run,
not with figures from another day. Python 3 standard library only; Linux (/proc).

Writes OUT/bench.md and OUT/bench.json (OUT: --out, default target/bench).
"""

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HZ = os.sysconf("SC_CLK_TCK")

SCENARIOS = {
    "chat-1000": {"bots": 1000, "bots_per_room": 20, "chat_interval_ms": 250},
    "chat-5000": {"bots": 5000, "bots_per_room": 20, "chat_interval_ms": 250},
    "chat-10000": {"bots": 10000, "bots_per_room": 20, "chat_interval_ms": 250},
    "idle": {"bots": 2000, "bots_per_room": 20, "chat_interval_ms": 3_600_000, "idle": True},
    "broadcast": {"bots": 400, "bots_per_room": 400, "chat_interval_ms": 500},
    "resumable-1000": {"bots": 1000, "bots_per_room": 20, "chat_interval_ms": 250,
                       "resumable": True},
    "chaos-1000": {"bots": 1000, "bots_per_room": 20, "chat_interval_ms": 250,
                   "resumable": True, "chaos_per_min": 1.0},
}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def proc_cpu(pid):
    """(user, system) seconds of a live process."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) / HZ, int(fields[12]) / HZ


def proc_kib(pid, key):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def bots_config(path, scenario, secs):
    s = SCENARIOS[scenario]
    idle = s.get("idle", False)
    with open(path, "w") as f:
        f.write(
            "[client]\n"
            f"bots = {s['bots']}\n"
            f"duration_secs = {secs}\n"
            "ramp_up_per_sec = 2000\n"
            "login_timeout_secs = 60\n"
            "[bots]\n"
            f"bots_per_room = {s['bots_per_room']}\n"
            f"chat_interval_ms = {s['chat_interval_ms']}\n"
            # Idle bots still ping, seldom, so that the server's idle timeout spares them.
            f"ping_interval_ms = {20000 if idle else 5000}\n"
            f"resumable = {'true' if s.get('resumable') else 'false'}\n"
            f"chaos_per_min = {s.get('chaos_per_min', 0.0)}\n"
        )


def server_config(path, scenario):
    """The server's settings for `scenario`: every bot is a guest, so none of max_sessions is
    kept for accounts; a broadcast room holds all its bots."""
    s = SCENARIOS[scenario]
    with open(path, "w") as f:
        f.write(
            "[server]\n"
            f"max_sessions = {max(10000, s['bots'] + 100)}\n"
            "[limits]\n"
            "account_reserve_percent = 0\n"
            "[world]\n"
            f"room_capacity = {max(100, s['bots_per_room'])}\n"
        )


def profile(pid, work, secs):
    """Samples the server's stacks for `secs` with perf; returns the report's path."""
    data = os.path.join(work, "perf.data")
    subprocess.run(["perf", "record", "-q", "-F", "499", "-g", "-p", str(pid), "-o", data, "--",
                    "sleep", str(secs)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    path = os.path.join(work, "perf.txt")
    with open(path, "w") as f:
        subprocess.run(["perf", "report", "-i", data, "--no-children", "--sort", "dso,symbol",
                        "--stdio", "--percent-limit", "0.7", "-g", "none"],
                       stdout=f, stderr=subprocess.DEVNULL)
    return path


def run(label, server_bin, client_bin, scenario, secs, out, perf=False):
    """One run: the server, the bots against it; the figures."""
    s = SCENARIOS[scenario]
    port = free_port()
    work = tempfile.mkdtemp(prefix=f"bench-{scenario}-", dir=out)
    log = open(os.path.join(work, "server.log"), "w")
    settings = os.path.join(work, "server.toml")
    server_config(settings, scenario)
    admin = free_port()
    server = subprocess.Popen(
        [server_bin, "--config", settings, "--listen", f"127.0.0.1:{port}", "--web", "off",
         "--admin", f"127.0.0.1:{admin}"],
        cwd=work, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.time() + 20
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    time.sleep(0.5)
    rss_empty = proc_kib(server.pid, "VmRSS")
    cpu_before = proc_cpu(server.pid)
    config = os.path.join(work, "bots.toml")
    bots_config(config, scenario, secs)
    report_path = os.path.join(work, "report.json")
    started = time.time()
    bots = subprocess.Popen(
        [client_bin, "--config", config, "--server", f"127.0.0.1:{port}", "--json", report_path,
         "--log-level", "warn"],
        cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    rss_loaded = 0
    perf_report = None
    if perf and not s.get("idle"):
        # Past the ramp-up, in the steady window.
        time.sleep(min(secs / 3, s["bots"] / 2000 + 5))
        perf_report = profile(server.pid, work, min(10, secs / 3))
    if s.get("idle"):
        # Every bot in, then silent for a while: the server's memory per idle connection.
        time.sleep(min(secs, s["bots"] / 2000 + 10))
        rss_loaded = proc_kib(server.pid, "VmRSS")
    # The replay buffers' peak, from the server's metrics once a second.
    buffers_peak = 0
    while s.get("resumable"):
        done, status, usage = os.wait4(bots.pid, os.WNOHANG)
        if done:
            break
        buffers_peak = max(buffers_peak, metric(admin, "world_resume_buffer_bytes"))
        time.sleep(1)
    else:
        _, status, usage = os.wait4(bots.pid, 0)
    wall = time.time() - started
    cpu_after = proc_cpu(server.pid)
    frames_out = metric(admin, "world_frames_out_total")
    bytes_out = metric(admin, "world_sent_bytes_total")
    peak = proc_kib(server.pid, "VmHWM")
    server.send_signal(signal.SIGTERM)
    server.wait(30)
    try:
        with open(report_path) as f:
            results = json.load(f)["results"]
    except (OSError, ValueError, KeyError):
        results = {}
    user = cpu_after[0] - cpu_before[0]
    system = cpu_after[1] - cpu_before[1]
    received = results.get("received", 0)
    figures = {
        "scenario": scenario,
        "build": label,
        "server": server_bin,
        "bots": s["bots"],
        "passed": os.waitstatus_to_exitcode(status) == 0,
        "reasons": results_reasons(report_path),
        "deliveries_per_sec": results.get("received_per_sec", 0),
        "sent": results.get("sent", 0),
        "received": received,
        "lost": results.get("lost", 0),
        "latency_p50_ms": results.get("latency_ms", {}).get("p50", 0),
        "latency_p99_ms": results.get("latency_ms", {}).get("p99", 0),
        "server_cpu_user_secs": round(user, 2),
        "server_cpu_sys_secs": round(system, 2),
        "server_cpu_percent": round(100 * (user + system) / wall, 1),
        "server_cpu_us_per_delivery": round((user + system) * 1e6 / received, 3) if received else None,
        "server_rss_peak_mib": round(peak / 1024, 1),
        "bytes_per_frame": round(bytes_out / frames_out, 1) if frames_out else None,
        "bots_cpu_secs": round(usage.ru_utime + usage.ru_stime, 2),
        "bots_cpu_percent": round(100 * (usage.ru_utime + usage.ru_stime) / wall, 1),
        "wall_secs": round(wall, 1),
    }
    if perf_report:
        figures["profile"] = perf_report
    if s.get("resumable"):
        resume = results.get("resume_ms", {})
        figures["resumes"] = results.get("resumes", 0)
        figures["resume_failures"] = results.get("resume_failures", 0)
        figures["duplicated"] = results.get("duplicated", 0)
        figures["resume_p50_ms"] = resume.get("p50", 0)
        figures["resume_p99_ms"] = resume.get("p99", 0)
        figures["resume_buffers_peak_kib"] = round(buffers_peak / 1024, 1)
    if s.get("idle"):
        figures["server_rss_empty_mib"] = round(rss_empty / 1024, 1)
        figures["server_rss_idle_mib"] = round(rss_loaded / 1024, 1)
        figures["rss_per_idle_connection_kib"] = round((rss_loaded - rss_empty) / s["bots"], 2)
    return figures


def floor(floor_bin, row, secs):
    """The null server (net/examples/floor.rs) making the writes the server makes in `row`'s
    scenario: as many connections, a write to each every tick (50 ms) of the lines its room
    says in a tick (all of them: the most deliveries a write can carry, so the least CPU per
    delivery), each as large as the server's frames were on average; the bots' lines as often
    as theirs. Its figures, from the JSON line it ends with."""
    s = SCENARIOS[row["scenario"]]
    frames = max(1, round(s["bots_per_room"] * 50 / s["chat_interval_ms"]))
    frame_bytes = max(8, round(row["bytes_per_frame"] or 80))
    out = subprocess.run(
        [floor_bin, "--conns", str(row["bots"]), "--secs", str(secs), "--frames", str(frames),
         "--frame-bytes", str(frame_bytes), "--line-ms", str(s["chat_interval_ms"])],
        capture_output=True, text=True)
    if out.returncode != 0:
        print(f"bench: the floor failed: {out.stderr.strip()}", file=sys.stderr)
        return None
    figures = json.loads(out.stdout.strip().splitlines()[-1])
    figures.update(scenario=row["scenario"], server_us_per_delivery=row["server_cpu_us_per_delivery"],
                   build=row["build"])
    return figures


def metric(port, name):
    """The value of an unlabelled metric on the server's admin listener (0 when not there)."""
    try:
        with socket.create_connection(("127.0.0.1", port), 1) as conn:
            conn.sendall(b"GET /metrics HTTP/1.0\r\nHost: bench\r\n\r\n")
            page = b""
            while chunk := conn.recv(65536):
                page += chunk
    except OSError:
        return 0
    for line in page.decode(errors="replace").splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0


def results_reasons(path):
    """Why the bots' run failed, from their report (empty when it passed)."""
    try:
        with open(path) as f:
            return json.load(f).get("reasons", [])
    except (OSError, ValueError):
        return ["no report"]


def table(rows):
    head = ("| scenario | build | deliveries/s | lost | p50 ms | p99 ms | server CPU % (user+sys s) "
            "| µs/delivery | RSS peak MiB | KiB/idle conn | bots CPU % |")
    lines = [head, "|" + "---|" * 11]
    for r in rows:
        per_idle = r.get("rss_per_idle_connection_kib")
        lines.append(
            f"| {r['scenario']}{'' if r['passed'] else ' (failed: ' + '; '.join(r['reasons']) + ')'} | {r['build']} | {r['deliveries_per_sec']:.0f} | {r['lost']} "
            f"| {r['latency_p50_ms']} | {r['latency_p99_ms']} | {r['server_cpu_percent']} "
            f"({r['server_cpu_user_secs']}+{r['server_cpu_sys_secs']}) "
            f"| {r['server_cpu_us_per_delivery'] if r['server_cpu_us_per_delivery'] is not None else '-'} "
            f"| {r['server_rss_peak_mib']} | {per_idle if per_idle is not None else '-'} "
            f"| {r['bots_cpu_percent']} |")
    resumable = [r for r in rows if "resumes" in r]
    if resumable:
        lines += ["", "| scenario | build | resumes | failed | duplicated | resume p50 ms | resume p99 ms "
                  "| replay buffers peak KiB |", "|" + "---|" * 8]
        for r in resumable:
            lines.append(
                f"| {r['scenario']} | {r['build']} | {r['resumes']} | {r['resume_failures']} "
                f"| {r['duplicated']} | {r['resume_p50_ms']} | {r['resume_p99_ms']} "
                f"| {r['resume_buffers_peak_kib']} |")
    return "\n".join(lines) + "\n"


def floor_table(rows, floors):
    """The floor under this build's runs (none: nothing)."""
    lines = []
    if floors:
        lines += ["", "| scenario | floor: frames/write × bytes | floor deliveries/s "
                  "| floor CPU % | floor's peers CPU % | floor µs/delivery (user+sys) "
                  "| server µs/delivery | server over floor |", "|" + "---|" * 8]
        for f in floors:
            over = (f"{f['server_us_per_delivery'] / f['us_per_delivery']:.2f}×"
                    if f["server_us_per_delivery"] and f["us_per_delivery"] else "-")
            lines.append(
                f"| {f['scenario']} | {f['frames_per_write']} × {f['frame_bytes']} "
                f"| {f['deliveries_per_sec']} | {f['cpu_percent']} | {f['peers_cpu_percent']} "
                f"| {f['us_per_delivery']} ({f['us_user_per_delivery']}+{f['us_sys_per_delivery']}) "
                f"| {f['server_us_per_delivery']} | {over} |")
    return "\n".join(lines) + "\n" if lines else ""


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--secs", type=int, default=60, help="seconds of chat per run")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    parser.add_argument("--other", help="another world-server binary, run alternately")
    parser.add_argument("--perf", action="store_true",
                        help="profile the server with perf for 10 s of each chat run")
    parser.add_argument("--floor", action="store_true",
                        help="after each chat run of this build, the null server making the same "
                             "writes: the floor under the server's CPU per delivery")
    parser.add_argument("--out", default=os.path.join(ROOT, "target", "bench"))
    args = parser.parse_args()
    scenarios = args.scenarios.split(",")
    for name in scenarios:
        if name not in SCENARIOS:
            sys.exit(f"bench: unknown scenario {name!r} (one of {', '.join(SCENARIOS)})")
    os.makedirs(args.out, exist_ok=True)
    out = os.path.abspath(args.out)
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "world-server", "-p", "dummy-client"],
                   cwd=ROOT, check=True)
    floor_bin = os.path.join(ROOT, "target", "release", "examples", "floor")
    if args.floor:
        subprocess.run(["cargo", "build", "--release", "-q", "-p", "net", "--example", "floor"],
                       cwd=ROOT, check=True)
    ours = os.path.join(ROOT, "target", "release", "world-server")
    client = os.path.join(ROOT, "target", "release", "dummy-client")
    servers = [("this", ours)] + ([("other", os.path.abspath(args.other))] if args.other else [])
    rows, floors = [], []
    for scenario in scenarios:
        for label, server in servers:
            print(f"bench: {scenario} against {label} ({server}) ...", file=sys.stderr, flush=True)
            rows.append(run(label, server, client, scenario, args.secs, out, args.perf))
            if rows[-1].get("profile"):
                print(f"bench: profile in {rows[-1]['profile']}", file=sys.stderr)
            if args.floor and label == "this" and not SCENARIOS[scenario].get("idle"):
                print(f"bench: {scenario}'s floor ...", file=sys.stderr, flush=True)
                figures = floor(floor_bin, rows[-1], args.secs)
                if figures:
                    floors.append(figures)
    with open(os.path.join(out, "bench.json"), "w") as f:
        json.dump({"secs": args.secs, "runs": rows, "floors": floors}, f, indent=2)
    text = table(rows) + floor_table(rows, floors)
    with open(os.path.join(out, "bench.md"), "w") as f:
        f.write(text)
    print(text)
    print(f"bench: {os.path.join(out, 'bench.md')} and bench.json", file=sys.stderr)


if __name__ == "__main__":
    main()
