#!/usr/bin/env bash
# Start a throwaway PostgreSQL cluster for tests on 127.0.0.1:${GPUFLEET_PG_PORT:-55432}.
#   scripts/dev-postgres.sh up|down|status|url
set -euo pipefail
PORT="${GPUFLEET_PG_PORT:-55432}"
DIR="${GPUFLEET_PG_DIR:-/var/tmp/gpufleet-pg}"
BIN="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)"
URL="postgresql+psycopg://gpufleet:gpufleet@127.0.0.1:${PORT}/gpufleet"

need_pkgs() {
    if [ -z "$BIN" ]; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
        BIN="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)"
    fi
}

as_pg() { runuser -u postgres -- "$@"; }

case "${1:-up}" in
up)
    need_pkgs
    if [ ! -f "$DIR/PG_VERSION" ]; then
        mkdir -p "$DIR" && chown postgres:postgres "$DIR"
        as_pg "$BIN/initdb" -D "$DIR" -A trust -U postgres >/dev/null
    fi
    if ! as_pg "$BIN/pg_ctl" -D "$DIR" status >/dev/null 2>&1; then
        as_pg "$BIN/pg_ctl" -D "$DIR" -l "$DIR/log" -w \
            -o "-p $PORT -k /tmp -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c max_connections=300" start >/dev/null
    fi
    psql -h 127.0.0.1 -p "$PORT" -U postgres -tAc "SELECT 1 FROM pg_roles WHERE rolname='gpufleet'" | grep -q 1 \
        || psql -h 127.0.0.1 -p "$PORT" -U postgres -qc "CREATE ROLE gpufleet LOGIN SUPERUSER PASSWORD 'gpufleet'"
    psql -h 127.0.0.1 -p "$PORT" -U postgres -tAc "SELECT 1 FROM pg_database WHERE datname='gpufleet'" | grep -q 1 \
        || psql -h 127.0.0.1 -p "$PORT" -U postgres -qc "CREATE DATABASE gpufleet OWNER gpufleet"
    echo "$URL"
    ;;
down)
    [ -n "$BIN" ] && as_pg "$BIN/pg_ctl" -D "$DIR" -m fast stop >/dev/null 2>&1 || true
    ;;
status)
    as_pg "$BIN/pg_ctl" -D "$DIR" status
    ;;
url)
    echo "$URL"
    ;;
*) echo "usage: $0 up|down|status|url" >&2; exit 2 ;;
esac
