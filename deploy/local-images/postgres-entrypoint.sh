#!/bin/sh
# The part of the official postgres image's entrypoint that compose relies on: an empty
# data directory becomes a cluster whose superuser POSTGRES_USER (default postgres) has
# POSTGRES_PASSWORD, listening on every address with password authentication, with the
# database POSTGRES_DB (default: the user's name).
set -eu
: "${POSTGRES_PASSWORD:?set POSTGRES_PASSWORD}"
user=${POSTGRES_USER:-postgres}
if [ ! -s "$PGDATA/PG_VERSION" ]; then
    pwfile=$(mktemp)
    printf '%s\n' "$POSTGRES_PASSWORD" >"$pwfile"
    initdb -D "$PGDATA" --username="$user" --pwfile="$pwfile" --auth-local=trust \
        --auth-host=scram-sha-256 -E UTF8 --locale=C.UTF-8 >/dev/null
    rm -f "$pwfile"
    echo "listen_addresses = '*'" >>"$PGDATA/postgresql.conf"
    echo "host all all all scram-sha-256" >>"$PGDATA/pg_hba.conf"
    db=${POSTGRES_DB:-$user}
    if [ "$db" != postgres ]; then
        echo "CREATE DATABASE \"$db\"" | postgres --single -D "$PGDATA" template1 >/dev/null
    fi
    echo "docker-entrypoint.sh: initialised $PGDATA (database $db)"
fi
exec "$@"
