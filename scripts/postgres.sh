#!/usr/bin/env bash
# A PostgreSQL server of your own, for trying the shared database on this machine, with
# Debian's `postgresql` binaries and no system cluster: initdb into DIR, start it on
# 127.0.0.1:PORT, create the role `world` (password `secret`) and its database `world`, and print
# the URL to give world-server (storage.postgres_url). Run as root, the server runs as the
# `postgres` user. Connections from this machine need no password for the `postgres` role:
# for trying, not for production.
#
#   scripts/postgres.sh [PORT] [DIR]      start (default 5433 and /tmp/world-pg), print the URL
#   scripts/postgres.sh stop [DIR]        stop it
set -euo pipefail

bin=""
for dir in /usr/lib/postgresql/*/bin; do
    [ -x "$dir/initdb" ] && bin=$dir
done
if [ -z "$bin" ]; then
    bin=$(dirname "$(command -v initdb 2>/dev/null || echo /nonexistent/initdb)")
fi
if [ ! -x "$bin/initdb" ]; then
    echo "postgres.sh: no initdb: install Debian's postgresql (apt-get install postgresql)" >&2
    exit 1
fi

# Runs a command as the server's owner: postgres when run as root, the caller otherwise.
as_owner() {
    if [ "$(id -u)" -eq 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

if [ "${1:-}" = stop ]; then
    data=${2:-/tmp/world-pg}
    as_owner "$bin/pg_ctl" -D "$data" -m fast stop >/dev/null
    echo "stopped the server in $data"
    exit 0
fi

port=${1:-5433}
data=${2:-/tmp/world-pg}
if [ ! -f "$data/PG_VERSION" ]; then
    mkdir -p "$data"
    [ "$(id -u)" -eq 0 ] && chown postgres: "$data"
    as_owner "$bin/initdb" -D "$data" -A trust -U postgres --no-sync >/dev/null
fi
if ! as_owner "$bin/pg_ctl" -D "$data" status >/dev/null 2>&1; then
    as_owner "$bin/pg_ctl" -D "$data" -l "$data/server.log" -w \
        -o "-p $port -k $data -c listen_addresses=127.0.0.1" start >/dev/null
fi
psql=("$bin/psql" -h 127.0.0.1 -p "$port" -U postgres -qAt)
if [ -z "$("${psql[@]}" -c "SELECT 1 FROM pg_roles WHERE rolname = 'world'")" ]; then
    "${psql[@]}" -c "CREATE ROLE world LOGIN PASSWORD 'secret'"
fi
if [ -z "$("${psql[@]}" -c "SELECT 1 FROM pg_database WHERE datname = 'world'")" ]; then
    "${psql[@]}" -c "CREATE DATABASE world OWNER world"
fi
echo "postgres://world:secret@127.0.0.1:$port/world"
