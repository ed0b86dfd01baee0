#!/usr/bin/env bash
# tests/pg/hook.sh — TEST_STORAGE_HOOK of tests/integration/lib.sh for the
# postgres backend: each daemon directory gets its own database on the server
# that tests/pg/run.sh started (TEST_PG_SOCK, TEST_PG_PORT), so the cases
# stay as independent as with one SQLite file each.
#
#   hook.sh config DIR      prints the config lines for a daemon in DIR
#                           (creating its database the first time)
#   hook.sh query DIR SQL   runs SQL on DIR's database: a row a line, |-separated
set -euo pipefail

: "${TEST_PG_SOCK:?set by tests/pg/run.sh}"
: "${TEST_PG_PORT:=5432}"

verb=${1:?usage: hook.sh config DIR | query DIR SQL}
dir=${2:?usage: hook.sh config DIR | query DIR SQL}

# A database name from the directory: the same DIR always maps to the same one,
# so a restart on "the same database" (a second config in DIR) finds its data.
name=orderd_$(printf '%s' "$dir" | sha256sum | cut -c1-20)

dsn() {
    printf 'postgresql:///%s?host=%s&port=%s&user=postgres' "$1" "$TEST_PG_SOCK" "$TEST_PG_PORT"
}

psql_on() {
    psql -X -q -A -t -v ON_ERROR_STOP=1 -d "$(dsn "$1")" -c "$2"
}

case $verb in
config)
    if [[ -z $(psql_on postgres "SELECT 1 FROM pg_database WHERE datname = '$name'") ]]; then
        psql_on postgres "CREATE DATABASE $name" >/dev/null
    fi
    echo "storage.backend=postgres"
    echo "storage.dsn=$(dsn "$name")"
    ;;
query)
    psql_on "$name" "${3:?usage: hook.sh query DIR SQL}"
    ;;
*)
    echo "hook.sh: unknown verb $verb" >&2
    exit 2
    ;;
esac
