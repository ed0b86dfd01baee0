#!/usr/bin/env bash
# tests/pg/run.sh — the postgres backend against a real PostgreSQL server that
# this script starts in a temp dir (tests/pg/lib.sh) and removes at the end:
#
#   store        the store suite of tests/unit/test_store.c run against
#                PostgreSQL (TEST_STORE_DSN), the retention suite of
#                tests/unit/test_retention.c likewise, the export suite of
#                tests/unit/test_export.c likewise, plus tests/pg/test_store_pg.c
#                (migrations under concurrency, two stores = two nodes,
#                reconnect after a server restart); built here under ASan/UBSan
#   integration  tests/integration/test_*.sh with every daemon on postgres,
#                through lib.sh's TEST_STORAGE_HOOK (tests/pg/hook.sh)
#   nodes        tests/pg/test_nodes.sh: several orderd on one database,
#                kill -9 of one mid-work, a database restart
#   immediate_stop  tests/pg/test_immediate_stop.sh: the database killed
#                (pg_ctl stop -m immediate) under load from two nodes: every
#                202 stored once, the nodes reconnect by themselves
#
#   TEST_ORDERD_BIN   binary under test (default build/orderd)
#   TEST_PG_PARTS     which parts to run (default "store integration nodes
#                     immediate_stop")
#   TEST_PG_FILES     integration files (default: all but cli, which tests
#                     the command line and SQLite paths)
#
# Prints "ok NAME" / "FAIL NAME: why" per test, then "N passed, M failed";
# exits non-zero on any failure. Bounded: every part runs under timeout.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
export TEST_ORDERD_BIN="${TEST_ORDERD_BIN:-$root/build/orderd}"
: "${TEST_PG_PARTS:=store integration nodes immediate_stop}"
: "${TEST_PG_FILES:=api backpressure restart retention threaded_drain threaded_intake threaded_processing threaded_fulfilment_http threaded_tracing export}"
: "${TEST_PG_PART_TIMEOUT:=900}"

# shellcheck source-path=SCRIPTDIR
# shellcheck source=lib.sh
. "$here/lib.sh"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/orderd-pg.XXXXXX")
chmod 0755 "$tmp" # the server runs as postgres and lives in $tmp/pg
out=$tmp/out
cleanup() {
    local rc=$?
    pg_stop
    rm -rf "$tmp"
    return "$rc"
}
trap cleanup EXIT
trap 'exit 143' TERM INT

passed=0
failed=0
started=$SECONDS

# tally FILE — passes a part's ok/FAIL lines through and counts them.
tally() {
    grep -vE '^[0-9]+ passed, [0-9]+ failed$' "$1" || true
    passed=$((passed + $(grep -c '^ok ' "$1" || true)))
    failed=$((failed + $(grep -c '^FAIL ' "$1" || true)))
}

fail_line() {
    echo "FAIL $1"
    failed=$((failed + 1))
}

if ! pg_start "$tmp/pg" 2>"$tmp/pg_start.err"; then
    echo "FAIL pg:setup: cannot start PostgreSQL: $(tr '\n' ' ' <"$tmp/pg_start.err")"
    echo "0 passed, 1 failed"
    exit 1
fi
export TEST_PG_DIR=$PG_DIR TEST_PG_SOCK=$PG_SOCK TEST_PG_PORT=$PG_PORT TEST_PG_BIN=$PG_BIN
echo "# postgres: $("$PG_BIN/postgres" --version) in $PG_DIR (socket only)"

# ---- store suites --------------------------------------------------------------

# The check suites, one "ok"/"FAIL" line per test from CK_VERBOSE output.
run_store() {
    local bin=$tmp/store-tests
    local pkgs=(libmicrohttpd sqlite3 jansson libuv inih gnutls libpq check)
    cat >"$tmp/main.c" <<'EOC'
#include <check.h>
#include <stdlib.h>
Suite *suite_store(void);
Suite *suite_store_pg(void);
Suite *suite_retention(void);
Suite *suite_export(void);
int main(void) {
    SRunner *r = srunner_create(suite_store());
    srunner_add_suite(r, suite_store_pg());
    srunner_add_suite(r, suite_retention());
    srunner_add_suite(r, suite_export());
    srunner_run_all(r, CK_VERBOSE);
    int f = srunner_ntests_failed(r);
    srunner_free(r);
    return f ? EXIT_FAILURE : EXIT_SUCCESS;
}
EOC
    # shellcheck disable=SC2046  # pkg-config prints a list of flags
    if ! cc -std=c11 -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
        -g -O1 -fsanitize=address,undefined -fno-sanitize-recover=all -pthread \
        -Iinclude -Isrc -D_GNU_SOURCE -DORDERD_VERSION='"test"' $(pkg-config --cflags "${pkgs[@]}") \
        -o "$bin" "$tmp/main.c" tests/unit/test_store.c tests/unit/tmpdir.c tests/pg/test_store_pg.c \
        tests/unit/test_retention.c \
        tests/unit/test_export.c \
        src/store*.c src/sqlite_io.c src/strbuf.c src/wal_checkpointer.c src/ids.c src/log.c src/metrics.c \
        src/retention.c \
        $(pkg-config --libs "${pkgs[@]}") -lm >"$tmp/cc.log" 2>&1; then
        fail_line "pg:store: the suites do not build: $(head -c 600 "$tmp/cc.log" | tr '\n' ' ')"
        return 0
    fi
    pg_createdb orderd_store
    local rc=0
    (cd "$root" && TEST_STORE_DSN=$(pg_dsn orderd_store) TEST_PG_ADMIN_DSN=$(pg_dsn postgres) \
        CK_FORK=yes CK_DEFAULT_TIMEOUT=120 timeout -k 10 "$TEST_PG_PART_TIMEOUT" "$bin") \
        >"$tmp/store.log" 2>&1 || rc=$?
    # check: "file:line:P:tcase:test:ITERATION: Passed" / ":F:...: message" / ":E:";
    # the cases of a loop test are told apart by their iteration
    awk -F: 'NR == FNR { if ($3 ~ /^[PFE]$/) runs[$4 ":" $5]++; next }
             $3 !~ /^[PFE]$/ { next }
             { name = "pg:store:" $4 ":" $5 (runs[$4 ":" $5] > 1 ? "#" $6 : "") }
             $3 == "P" { print "ok " name; next }
             { msg = $0; sub(/^([^:]*:){6} ?/, "", msg); print "FAIL " name ": " msg }' \
        "$tmp/store.log" "$tmp/store.log" >"$out"
    if ((rc != 0)) && ! grep -q '^FAIL ' "$out"; then
        echo "FAIL pg:store: exited with status $rc: $(tail -n 5 "$tmp/store.log" | tr '\n' ' ')" >>"$out"
    fi
    tally "$out"
    grep -E 'SKIPPED|^[0-9]+%: Checks' "$tmp/store.log" | sed 's/^/# /' || true
}

# ---- the integration suite on postgres -------------------------------------------

run_integration() {
    if ! grep -q TEST_STORAGE_HOOK "$root/tests/integration/lib.sh"; then
        fail_line "pg:integration: tests/integration/lib.sh has no TEST_STORAGE_HOOK (see docs/scale-out.md, \"Tests\")"
        return 0
    fi
    local name rc
    for name in $TEST_PG_FILES; do
        rc=0
        TEST_STORAGE_HOOK=$here/hook.sh timeout -k 10 "$TEST_PG_PART_TIMEOUT" \
            bash "$root/tests/integration/test_$name.sh" >"$out" 2>&1 || rc=$?
        sed -i 's/^ok /ok pg:/; s/^FAIL /FAIL pg:/' "$out"
        if ((rc != 0)) && ! grep -q '^FAIL ' "$out"; then
            echo "FAIL pg:$name: the file exited with status $rc" >>"$out"
        fi
        tally "$out"
    done
}

# ---- several nodes on one database --------------------------------------------------

run_nodes() {
    local rc=0
    timeout -k 10 "$TEST_PG_PART_TIMEOUT" bash "$here/test_nodes.sh" >"$out" 2>&1 || rc=$?
    sed -i 's/^ok /ok pg:/; s/^FAIL /FAIL pg:/' "$out"
    if ((rc != 0)) && ! grep -q '^FAIL ' "$out"; then
        echo "FAIL pg:nodes: the file exited with status $rc" >>"$out"
    fi
    tally "$out"
}

# ---- the database crashes under load ---------------------------------------------

run_immediate_stop() {
    local rc=0
    timeout -k 10 "$TEST_PG_PART_TIMEOUT" bash "$here/test_immediate_stop.sh" >"$out" 2>&1 || rc=$?
    sed -i 's/^ok /ok pg:/; s/^FAIL /FAIL pg:/' "$out"
    if ((rc != 0)) && ! grep -q '^FAIL ' "$out"; then
        echo "FAIL pg:immediate_stop: the file exited with status $rc" >>"$out"
    fi
    tally "$out"
}

cd "$root"
for part in $TEST_PG_PARTS; do
    t0=$SECONDS
    case $part in
    store) run_store ;;
    integration) run_integration ;;
    nodes) run_nodes ;;
    immediate_stop) run_immediate_stop ;;
    *) fail_line "pg:$part: unknown part (TEST_PG_PARTS)" ;;
    esac
    echo "# pg:$part took $((SECONDS - t0))s"
done
echo "# postgres tests took $((SECONDS - started))s"
echo "$passed passed, $failed failed"
((failed == 0))
