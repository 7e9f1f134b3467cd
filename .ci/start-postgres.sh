#!/bin/sh
# Start a throwaway PostgreSQL cluster for the tests and print its URL.
#
# Idempotent and non-interactive: initdb only when the data directory is
# empty, start only when the server is not already running. Trust auth on
# 127.0.0.1 only. The last line of stdout is the SQLAlchemy URL to export as
# GATEKEEPER_TEST_POSTGRES_URL.
#
# Environment: GATEKEEPER_PG_DATA (default /tmp/gatekeeper-pg),
# GATEKEEPER_PG_PORT (default 5433), GATEKEEPER_PG_BIN (default: newest
# /usr/lib/postgresql/*/bin).
set -eu

DATA=${GATEKEEPER_PG_DATA:-/tmp/gatekeeper-pg}
PORT=${GATEKEEPER_PG_PORT:-5433}
BIN=${GATEKEEPER_PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)}

if [ -z "$BIN" ] || [ ! -x "$BIN/initdb" ]; then
    echo "start-postgres: no PostgreSQL binaries found (install postgresql)" >&2
    exit 1
fi

# The server refuses to run as root: run it as the postgres user then.
if [ "$(id -u)" = 0 ]; then
    as_pg() { runuser -u postgres -- "$@"; }
    SUPERUSER=postgres
else
    as_pg() { "$@"; }
    SUPERUSER=$(id -un)
fi

if [ ! -s "$DATA/PG_VERSION" ]; then
    mkdir -p "$DATA"
    [ "$(id -u)" = 0 ] && chown postgres: "$DATA"
    chmod 700 "$DATA"
    as_pg "$BIN/initdb" -D "$DATA" -U "$SUPERUSER" --auth=trust --encoding=UTF8 >&2
fi

if ! as_pg "$BIN/pg_ctl" -D "$DATA" status >/dev/null 2>&1; then
    as_pg "$BIN/pg_ctl" -D "$DATA" -w -t 60 -l "$DATA/server.log" \
        -o "-k $DATA -p $PORT -h 127.0.0.1 -c fsync=off" start >&2
fi

echo "postgresql+psycopg2://$SUPERUSER@127.0.0.1:$PORT/postgres"
