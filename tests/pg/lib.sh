# shellcheck shell=bash
#
# tests/pg/lib.sh — a throwaway PostgreSQL server for the tests and the bench
# of the postgres backend. Sourced by tests/pg/run.sh and tests/pg/bench.sh.
#
#   pg_start DIR      initdb in DIR/data, start a server that listens only on a
#                     unix socket in DIR/sock (no TCP port: nothing to collide
#                     with, nothing reachable from outside); sets PG_DIR,
#                     PG_SOCK, PG_PORT, PG_BIN. As root (CI) the server runs as
#                     the `postgres` user, which must exist (Debian's
#                     postgresql package makes it); DIR is then chowned to it
#                     (its parents must let postgres through: mode 0755).
#   pg_stop           stop it (immediate mode: tests do not need a checkpoint)
#   pg_ctl_cmd ARGS   run pg_ctl on it (restart, stop, start) as its owner
#   pg_createdb NAME  a fresh database; pg_dsn NAME prints its libpq URI
#   pg_psql NAME SQL  run SQL on it, unaligned tuples only, one value a line
#
# Environment: TEST_PG_BIN overrides the directory of initdb/pg_ctl (default:
# the newest /usr/lib/postgresql/*/bin, 15 on Debian 12).

PG_DIR=
PG_SOCK=
PG_PORT=5432
PG_BIN=

pg_find_bin() {
    if [[ -n ${TEST_PG_BIN:-} ]]; then
        PG_BIN=$TEST_PG_BIN
    else
        PG_BIN=$(find /usr/lib/postgresql -maxdepth 2 -name bin -type d 2>/dev/null | sort -V | tail -n 1)
    fi
    [[ -n $PG_BIN && -x $PG_BIN/initdb && -x $PG_BIN/pg_ctl ]] || {
        echo "no PostgreSQL server binaries (install the postgresql package, or set TEST_PG_BIN)" >&2
        return 1
    }
    command -v psql >/dev/null || {
        echo "psql is missing (postgresql-client)" >&2
        return 1
    }
}

# as_pg CMD... — runs CMD as the owner of the cluster (postgres when root).
as_pg() {
    if [[ $(id -u) == 0 ]]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

pg_start() {
    PG_DIR=$1
    pg_find_bin || return 1
    PG_SOCK=$PG_DIR/sock
    mkdir -p "$PG_DIR/data" "$PG_SOCK"
    if [[ $(id -u) == 0 ]]; then
        id postgres >/dev/null 2>&1 || {
            echo "no postgres user to run the server as (install the postgresql package)" >&2
            return 1
        }
        chown -R postgres:postgres "$PG_DIR"
        chmod 0755 "$PG_DIR"
    fi
    as_pg "$PG_BIN/initdb" -D "$PG_DIR/data" -U postgres --auth=trust --encoding=UTF8 \
        --locale=C.UTF-8 -N >"$PG_DIR/initdb.log" 2>&1 || {
        echo "initdb failed:" >&2
        tail -n 20 "$PG_DIR/initdb.log" >&2
        return 1
    }
    cat >>"$PG_DIR/data/postgresql.conf" <<CONF
# tests/pg/lib.sh
listen_addresses = ''
unix_socket_directories = '$PG_SOCK'
port = $PG_PORT
max_connections = 200
shared_buffers = 128MB
log_min_messages = warning
log_line_prefix = '%m [%p] '
CONF
    pg_ctl_cmd start || {
        echo "postgres did not start:" >&2
        tail -n 20 "$PG_DIR/server.log" >&2
        return 1
    }
}

pg_ctl_cmd() {
    as_pg "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/server.log" -w -t 60 "$@" >/dev/null
}

pg_stop() {
    [[ -n $PG_DIR && -f $PG_DIR/data/postmaster.pid ]] || return 0
    pg_ctl_cmd stop -m immediate || true
}

pg_dsn() {
    printf 'postgresql:///%s?host=%s&port=%s&user=postgres' "$1" "$PG_SOCK" "$PG_PORT"
}

pg_psql() {
    psql -X -q -A -t -v ON_ERROR_STOP=1 -d "$(pg_dsn "$1")" -c "$2"
}

pg_createdb() {
    pg_psql postgres "CREATE DATABASE \"$1\"" >/dev/null
}
