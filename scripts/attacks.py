#!/usr/bin/env python3
"""Attacks on a running world-server, from many connections and many loopback addresses at once,
with the figures they produce. Python 3 standard library only; speaks the wire format of
docs/PROTOCOL.md by hand.

Start the server with a config that does not exempt loopback from the per-address limits
(`[limits] exempt_addresses = []`), then run one attack:

  scripts/attacks.py guess   --server 127.0.0.1:7400          # 200 guesses at once, one host
  scripts/attacks.py lockout --server 127.0.0.1:7400          # the owner after 5 wrong from A
  scripts/attacks.py spread  --server 127.0.0.1:7400          # 300 guesses, 60 addresses
  scripts/attacks.py hog     --server 127.0.0.1:7400 --conns 10000
  scripts/attacks.py farm    --server 127.0.0.1:7400 --secs 60
  scripts/attacks.py fill    --server 127.0.0.1:7400 --rooms 520 --db world.db
  scripts/attacks.py idle    --server 127.0.0.1:7400 --conns 5000 --pid PID
  scripts/attacks.py state   --admin 127.0.0.1:9100 --secs 20   # /api/state flood, the tick

Each prints what got through and how long the legitimate client took. Every address of
127.0.0.0/8 reaches the server as a host of its own.
"""

import argparse
import asyncio
import os
import random
import struct
import sys
import time

# Message ids (proto/ids.proto).
S2C_CHAT, S2C_PONG, S2C_WELCOME, S2C_ERROR, S2C_AUTH_RESULT = 1000, 1001, 1002, 1003, 1010
S2C_ROOM_JOINED, S2C_ROOM_LEFT = 1030, 1031
C2S_CHAT, C2S_PING, C2S_REGISTER, C2S_LOGIN, C2S_RESUME = 2000, 2001, 2010, 2011, 2012
C2S_ROOM_JOIN, C2S_ROOM_LEAVE = 2030, 2031
# ErrorCode (proto/session.proto).
CODES = {1: "BAD_REQUEST", 2: "NOT_AUTHENTICATED", 3: "ALREADY_AUTHENTICATED", 4: "REPLACED",
         5: "INVALID_CREDENTIALS", 6: "USERNAME_TAKEN", 7: "INVALID_TOKEN", 8: "USER_OFFLINE",
         9: "ROOM_FULL", 10: "NOT_IN_ROOM", 11: "RATE_LIMITED", 12: "SERVER_FULL",
         13: "INTERNAL", 14: "TOO_MANY_CONNECTIONS", 15: "LOGIN_TIMEOUT"}


def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def field_str(num, text):
    data = text.encode()
    return varint(num << 3 | 2) + varint(len(data)) + data


def field_int(num, value):
    return varint(num << 3) + varint(value)


def frame(msg_id, payload=b""):
    return struct.pack("<HH", 4 + len(payload), msg_id) + payload


def login(user, password=""):
    return frame(C2S_LOGIN, field_str(1, user) + (field_str(2, password) if password else b""))


def register(user, password):
    return frame(C2S_REGISTER, field_str(1, user) + field_str(2, password))


def ping(seq):
    return frame(C2S_PING, field_int(1, seq))


def join(room):
    return frame(C2S_ROOM_JOIN, field_str(1, room))


def leave(room):
    return frame(C2S_ROOM_LEAVE, field_str(1, room))


def chat(room, content):
    return frame(C2S_CHAT, field_str(1, room) + field_str(2, content) + field_int(3, 1))


def read_varint(data, i):
    """The varint at `data[i:]`, and the index after it."""
    value, shift = 0, 0
    while True:
        b = data[i]
        i += 1
        value |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return value, i


def error_code(payload):
    """The `code` field (1) of an S2C_Error payload."""
    i = 0
    while i < len(payload):
        key, i = read_varint(payload, i)
        value, i = read_varint(payload, i)
        if key == 0x08:
            return value
        if key & 7 == 2:  # length-delimited: `value` bytes follow
            i += value
    return 0


class Client:
    def __init__(self, reader, writer):
        self.reader, self.writer = reader, writer

    @classmethod
    async def connect(cls, server, source):
        host, port = server.rsplit(":", 1)
        reader, writer = await asyncio.open_connection(host, int(port), local_addr=(source, 0))
        return cls(reader, writer)

    async def recv(self, timeout=30.0):
        """(id, payload), or None when the server closed the connection."""
        try:
            header = await asyncio.wait_for(self.reader.readexactly(4), timeout)
            size, msg_id = struct.unpack("<HH", header)
            payload = await asyncio.wait_for(self.reader.readexactly(size - 4), timeout)
            return msg_id, payload
        except (asyncio.IncompleteReadError, ConnectionError):
            return None

    async def answer(self, timeout=60.0):
        """The next reply that is not chat or presence: ("OK", id) or (error name, id)."""
        while True:
            got = await self.recv(timeout)
            if got is None:
                return ("CLOSED", 0)
            msg_id, payload = got
            if msg_id == S2C_ERROR:
                return (CODES.get(error_code(payload), "UNKNOWN"), msg_id)
            if msg_id in (S2C_AUTH_RESULT, S2C_ROOM_JOINED, S2C_ROOM_LEFT, S2C_PONG):
                return ("OK", msg_id)

    def send(self, data):
        self.writer.write(data)

    def close(self):
        self.writer.close()


async def connected(server, source):
    """A client that got S2C_Welcome, or the error it got instead."""
    client = await Client.connect(server, source)
    got = await client.recv()
    if got and got[0] == S2C_WELCOME:
        return client, "WELCOME"
    code = CODES.get(error_code(got[1]), "UNKNOWN") if got else "CLOSED"
    client.close()
    return None, code


async def account(server, source, user, password):
    client, how = await connected(server, source)
    assert client, how
    client.send(register(user, password))
    result, _ = await client.answer()
    client.close()
    return result  # OK or USERNAME_TAKEN


async def guess(args):
    await account(args.server, "127.0.0.2", args.user, "correct horse")
    clients = []
    tally = {}
    for _ in range(args.count):
        client, how = await connected(args.server, args.source)
        clients.append(client)
        if not client:
            tally[how] = tally.get(how, 0) + 1
    for i, client in enumerate(clients):
        password = "correct horse" if i == args.right_at - 1 else f"guess-{i:05}"
        if client:
            client.send(login(args.user, password))
    results = await asyncio.gather(
        *(c.answer() if c else asyncio.sleep(0, ("not connected", 0)) for c in clients))
    for client, (result, _) in zip(clients, results):
        if client:
            tally[result] = tally.get(result, 0) + 1
    checked = sum(n for r, n in tally.items()
                  if r in ("OK", "INVALID_CREDENTIALS"))
    print(f"guess: {args.count} logins for {args.user} at once from {args.source}: "
          f"{checked} checked, {tally}; guess {args.right_at} (right) got "
          f"{results[args.right_at - 1][0]}")


async def lockout(args):
    user = f"victim{random.randrange(10**6)}"
    await account(args.server, "127.0.3.1", user, "correct horse")
    attacker, _ = await connected(args.server, "127.0.3.2")
    for i in range(args.wrong):
        attacker.send(login(user, f"wrong-{i}"))
        await attacker.answer()
    attacker.send(login(user, "correct horse"))
    from_attacker = (await attacker.answer())[0]
    owner, _ = await connected(args.server, "127.0.3.3")
    started = time.monotonic()
    owner.send(login(user, "correct horse"))
    result = (await owner.answer())[0]
    took = time.monotonic() - started
    print(f"lockout: after {args.wrong} wrong passwords from 127.0.3.2, the right one from there "
          f"got {from_attacker}; the owner from 127.0.3.3 got {result} in {took * 1000:.0f} ms")
    resumer, _ = await connected(args.server, "127.0.3.4")
    for _ in range(args.resumes):
        resumer.send(frame(C2S_RESUME, field_str(1, "ab" * 32)))
        await resumer.answer()
    resumer.send(login(user, "correct horse"))
    print(f"lockout: after {args.resumes} bad resumes from 127.0.3.4, a password login from "
          f"there got {(await resumer.answer())[0]}")


async def spread(args):
    user = f"target{random.randrange(10**6)}"
    home = "127.0.5.250"
    await account(args.server, home, user, "correct horse")
    guessers = []
    for a in range(args.addresses):
        for _ in range(args.each):
            client, how = await connected(args.server, f"127.0.5.{a + 1}")
            assert client, how
            guessers.append(client)
    started = time.monotonic()
    for i, client in enumerate(guessers):
        client.send(login(user, f"guess-{i:05}"))

    async def timed(client):
        result, _ = await client.answer(timeout=600)
        return result, time.monotonic() - started

    answers = asyncio.gather(*(timed(c) for c in guessers))
    await asyncio.sleep(0.5)
    owner, _ = await connected(args.server, home)
    owner_started = time.monotonic()
    owner.send(login(user, "correct horse"))
    owner_result = (await owner.answer())[0]
    owner_took = time.monotonic() - owner_started
    results = await answers
    checked = sorted(t for r, t in results if r == "INVALID_CREDENTIALS")
    tally = {}
    for r, _ in results:
        tally[r] = tally.get(r, 0) + 1
    print(f"spread: {len(guessers)} guesses at {user} at once from {args.addresses} addresses: "
          f"{len(checked)} checked, the last after {checked[-1]:.1f} s; {tally}")
    print(f"spread: meanwhile its owner, at the address it registered from, got {owner_result} in "
          f"{owner_took * 1000:.0f} ms")


async def legit_login(server, source, name):
    started = time.monotonic()
    client, how = await connected(server, source)
    if not client:
        return how, time.monotonic() - started
    client.send(login(name))
    result, _ = await client.answer()
    client.close()
    return result, time.monotonic() - started


async def hog(args):
    # At most 500 connects in flight: the kernel's accept backlog is the only other bound.
    gate = asyncio.Semaphore(500)

    async def one():
        async with gate:
            return await connected(args.server, args.source)

    results = await asyncio.gather(*(one() for _ in range(args.conns)), return_exceptions=True)
    held = [c for c, _ in (r for r in results if not isinstance(r, Exception)) if c]
    refused = {}
    for r in results:
        how = type(r).__name__ if isinstance(r, Exception) else r[1]
        if how != "WELCOME":
            refused[how] = refused.get(how, 0) + 1
    print(f"hog: {args.conns} connections from {args.source}: {len(held)} held, refused {refused}")
    closed = set()

    async def watch(client):
        while await client.recv(timeout=3600) is not None:
            pass
        closed.add(id(client))

    watchers = [asyncio.ensure_future(watch(c)) for c in held]
    seq = 0
    deadline = time.monotonic() + args.secs
    while time.monotonic() < deadline:
        for client in held:
            try:
                client.send(ping(seq))
            except Exception:
                pass
        seq += 1
        result, took = await legit_login(args.server, "127.0.0.200", f"player{seq}")
        alive = len(held) - len(closed)
        print(f"hog: t+{args.secs - (deadline - time.monotonic()):4.0f} s: "
              f"{alive} of the host's connections open; a player from 127.0.0.200 got "
              f"{result} in {took * 1000:.0f} ms")
        await asyncio.sleep(args.every)
    for watcher in watchers:
        watcher.cancel()


async def farm(args):
    victim = f"victim{random.randrange(10**6)}"
    await account(args.server, "127.0.0.2", victim, "correct horse")
    created = 0
    refused = {}
    stop = time.monotonic() + args.secs

    def source(n):
        if args.sources <= 1:
            return args.source
        return f"127.0.{4 + n % args.sources // 250}.{n % args.sources % 250 + 1}"

    async def farmer(n):
        nonlocal created
        client, how = await connected(args.server, source(n))
        if not client:
            refused[how] = refused.get(how, 0) + 1
            return
        i = 0
        while time.monotonic() < stop:
            client.send(register(f"f{n}x{i}x{random.randrange(10**9)}", "farm-password"))
            result, _ = await client.answer()
            if result == "OK":
                created += 1
                client.send(frame(2013))  # Logout, so the session can register again
            elif result == "CLOSED":
                # Closed (a login deadline): a farmer connects again.
                refused["CLOSED"] = refused.get("CLOSED", 0) + 1
                client, how = await connected(args.server, source(n))
                if not client:
                    refused[how] = refused.get(how, 0) + 1
                    return
            else:
                refused[result] = refused.get(result, 0) + 1
                await asyncio.sleep(0.05)
            i += 1
        client.close()

    async def victim_logins():
        times = []
        while time.monotonic() < stop:
            client, _ = await connected(args.server, "127.0.0.250")
            started = time.monotonic()
            client.send(login(victim, "correct horse"))
            result, _ = await client.answer()
            times.append((result, time.monotonic() - started))
            client.close()
            await asyncio.sleep(1)
        return times

    results = await asyncio.gather(*(farmer(n) for n in range(args.farmers)), victim_logins())
    times = results[-1]
    ok = sorted(t for r, t in times if r == "OK")
    others = [r for r, _ in times if r != "OK"]
    per_minute = created * 60 / args.secs
    where = args.source if args.sources <= 1 else f"{args.sources} addresses"
    print(f"farm: {args.farmers} connections from {where} for {args.secs} s: {created} "
          f"accounts ({per_minute:.0f}/min), refused {refused}")
    if ok:
        print(f"farm: victim logins from 127.0.0.250: {len(ok)} ok, p50 {ok[len(ok) // 2] * 1000:.0f} ms, "
              f"max {ok[-1] * 1000:.0f} ms; failed {others}")


async def fill(args):
    size_before = os.path.getsize(args.db) if args.db else 0
    started = time.monotonic()

    async def guest(g):
        client, how = await connected(args.server, f"127.0.1.{g + 1}")
        assert client, how
        client.send(login(f"filler{g}"))
        await client.answer()
        for r in range(g, args.rooms, args.guests):
            room = f"fill-{r:05}"
            client.send(join(room))
            await client.answer()
            for n in range(args.lines):
                client.send(chat(room, f"line {n} of {room} " + "x" * 100))
                await asyncio.sleep(1 / args.rate)
            client.send(leave(room))
            await client.answer()
        client.close()

    def db_size():
        return sum(os.path.getsize(p) for p in (args.db, args.db + "-wal") if os.path.exists(p))

    async def monitor():
        while True:
            await asyncio.sleep(20)
            if args.db:
                print(f"fill: t+{time.monotonic() - started:.0f} s: database "
                      f"{db_size() / 1024:.0f} KiB (with its WAL)", flush=True)

    watching = asyncio.ensure_future(monitor())
    await asyncio.gather(*(guest(g) for g in range(args.guests)))
    watching.cancel()
    await asyncio.sleep(1)
    took = time.monotonic() - started
    if args.db:
        size = db_size()
        print(f"fill: {args.guests} guests wrote {args.rooms} rooms x {args.lines} lines in "
              f"{took:.0f} s: database {size_before / 1024:.0f} KiB -> {size / 1024:.0f} KiB "
              f"(with its WAL)")


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS"):
                return int(line.split()[1])
    return 0


async def idle(args):
    before = rss_kib(args.pid)
    gate = asyncio.Semaphore(200)

    async def one(i):
        async with gate:
            client, how = await connected(args.server, f"127.0.2.{i // 60 + 1}")
            assert client, how
            client.send(login(f"idle{i:05}"))
            client.send(join(f"room{i // 20:04}"))
            await client.answer()
            await client.answer()
            return client

    clients = await asyncio.gather(*(one(i) for i in range(args.conns)))
    # Room after room, its members say 7 lines of 500 bytes each (about one 64 KiB arena chunk
    # of frames), then fall silent for good: each room's last frames live in a chunk of their
    # own, which is what an idle session could keep alive.
    line = "x" * 500
    for r in range(0, args.conns, 20):
        room = f"room{r // 20:04}"
        for member in clients[r:r + 20]:
            for _ in range(7):
                member.send(chat(room, line))
        await asyncio.sleep(0.06)
        for member in clients[r:r + 20]:
            try:
                await asyncio.wait_for(member.reader.read(1 << 20), 0.001)
            except asyncio.TimeoutError:
                pass
    await asyncio.sleep(2)
    for client in clients:
        while True:
            try:
                await asyncio.wait_for(client.reader.read(65536), 0.001)
            except asyncio.TimeoutError:
                break
    await asyncio.sleep(args.settle)
    after = rss_kib(args.pid)
    print(f"idle: {args.conns} logged-in sessions, their rooms chatting one after another, then "
          f"silent: "
          f"server RSS {before / 1024:.1f} MiB -> {after / 1024:.1f} MiB "
          f"({(after - before) / args.conns:.1f} KiB per session)")
    for client in clients:
        client.close()


async def http_get(admin, path):
    """One GET on a connection of its own: (status, body), or None when refused or closed."""
    host, port = admin.rsplit(":", 1)
    try:
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        await writer.drain()
        data = await reader.read()
        writer.close()
    except OSError:
        return None
    head, _, body = data.partition(b"\r\n\r\n")
    try:
        return int(head.split(b" ")[1]), body
    except (IndexError, ValueError):
        return None


async def tick_totals(admin):
    """(sum of tick seconds, ticks) from the admin listener's /metrics."""
    got = await http_get(admin, "/metrics")
    total = count = 0.0
    for line in (got[1].decode() if got else "").splitlines():
        if line.startswith("world_tick_duration_seconds_sum "):
            total = float(line.split()[1])
        elif line.startswith("world_tick_duration_seconds_count "):
            count = float(line.split()[1])
    return total, count


async def state(args):
    """Floods /api/state from `--conns` connections at once for `--secs`, after as long a
    quiet window, then /healthz as long: the average tick of each window, and the requests
    answered."""
    async def window(secs, flood, path):
        before = await tick_totals(args.admin)
        answered = 0
        end = time.monotonic() + secs

        async def one():
            nonlocal answered
            while time.monotonic() < end:
                got = await http_get(args.admin, path)
                if got and got[0] == 200:
                    answered += 1

        if flood:
            await asyncio.gather(*(one() for _ in range(args.conns)))
        else:
            await asyncio.sleep(secs)
        after = await tick_totals(args.admin)
        ticks = max(after[1] - before[1], 1)
        return 1000 * (after[0] - before[0]) / ticks, answered / secs

    quiet, _ = await window(args.secs, False, "")
    flooded, rate = await window(args.secs, True, "/api/state")
    # The same flood on /healthz, which reads nothing of the world: what the flood costs the
    # machine (the flooder, the HTTP work, on two cores) rather than the world.
    control, control_rate = await window(args.secs, True, "/healthz")
    print(f"state: average tick {quiet:.2f} ms quiet; {flooded:.2f} ms while /api/state was "
          f"answered {rate:.0f} times a second; {control:.2f} ms while /healthz was answered "
          f"{control_rate:.0f} times a second ({args.conns} connections)")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--server", default="127.0.0.1:7400")
    sub = parser.add_subparsers(dest="attack", required=True)
    p = sub.add_parser("guess")
    p.add_argument("--user", default="bob")
    p.add_argument("--count", type=int, default=200)
    p.add_argument("--right-at", type=int, default=150)
    p.add_argument("--source", default="127.0.0.3")
    p = sub.add_parser("lockout")
    p.add_argument("--wrong", type=int, default=5)
    p.add_argument("--resumes", type=int, default=20)
    p = sub.add_parser("spread")
    p.add_argument("--addresses", type=int, default=60)
    p.add_argument("--each", type=int, default=5)
    p = sub.add_parser("hog")
    p.add_argument("--conns", type=int, default=10000)
    p.add_argument("--source", default="127.0.0.9")
    p.add_argument("--secs", type=float, default=60)
    p.add_argument("--every", type=float, default=25)
    p = sub.add_parser("farm")
    p.add_argument("--secs", type=float, default=60)
    p.add_argument("--farmers", type=int, default=8)
    p.add_argument("--source", default="127.0.0.7")
    p.add_argument("--sources", type=int, default=1,
                   help="spread the farmers over this many addresses from 127.0.4.1")
    p = sub.add_parser("fill")
    p.add_argument("--rooms", type=int, default=520)
    p.add_argument("--lines", type=int, default=50)
    p.add_argument("--guests", type=int, default=5)
    p.add_argument("--rate", type=float, default=150, help="lines per second per guest")
    p.add_argument("--db", default="")
    p = sub.add_parser("idle")
    p.add_argument("--conns", type=int, default=5000)
    p.add_argument("--pid", type=int, required=True)
    p.add_argument("--settle", type=float, default=3)
    p = sub.add_parser("state")
    p.add_argument("--admin", default="127.0.0.1:9100")
    p.add_argument("--secs", type=float, default=20)
    p.add_argument("--conns", type=int, default=16)
    args = parser.parse_args()
    attack = {"guess": guess, "lockout": lockout, "spread": spread, "hog": hog, "farm": farm,
              "fill": fill, "idle": idle, "state": state}[args.attack]
    asyncio.run(attack(args))


if __name__ == "__main__":
    sys.exit(main())
