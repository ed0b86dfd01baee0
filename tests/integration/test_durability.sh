#!/usr/bin/env bash
# test_durability.sh — what a 202 promises with durability = full (SPEC: "sent
# only after the order is durably committed ... fsync'd"), seen from outside:
# the daemon's system calls under strace, and a disk whose fsync fails
# (an LD_PRELOAD shim, fail_fsync.c).
#
# The failed fsync, here and in the unit tests. tests/unit/test_store_io.c
# fails sq_sync's fdatasync through the I/O seam (src/sqlite_io.h) and proves
# from inside the process, deterministically, that it exits 2 before the
# syncer answers any item that sync covered (not only "no 202": no answer at
# all), and what the store, committer, checkpointer and workers do on EIO
# and ENOSPC. The seam cannot be armed from outside the binary (no variable
# or config key reaches it, on purpose), so this file keeps what only the
# real binary shows, and nothing of it is replaced: that the syscall under
# the 202 is a real fdatasync of the -wal file (the shim fails libc's call,
# below the seam), the exit status and log line a supervisor sees, and that
# a restart keeps and completes what was acknowledged.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

# attach_strace PID OUT — traces PID's threads' fsyncs and socket writes into OUT.
attach_strace() {
    command -v strace >/dev/null || skip "strace is not installed"
    strace -f -y -s 32 -e trace=fdatasync,fsync,sendmsg,sendto,writev,write \
        -o "$2" -p "$1" 2>"$2.err" &
    STRACE_PID=$!
    on_exit "kill -INT $STRACE_PID 2>/dev/null || true"
    local deadline=$((SECONDS + 10))
    until grep -q 'attached' "$2.err" 2>/dev/null; do
        if ! kill -0 "$STRACE_PID" 2>/dev/null; then
            skip "strace cannot attach here: $(head -n 1 "$2.err")"
        fi
        ((SECONDS < deadline)) || fail "strace did not attach within 10s"
        sleep 0.05
    done
}

# Sequential requests: each order is committed after the previous answer went
# out, so each 202 needs an fsync of the WAL of its own, between the previous
# 202 and this one. The commit path may fsync inside SQLite's COMMIT or after
# it (store_sync): the test does not care which, only about the order.
test_every_202_follows_a_wal_fsync() {
    start_orderd storage.durability=full
    attach_strace "$D_PID" "$T/trace"
    local i
    for ((i = 0; i < 5; i++)); do
        post_order "C-sync-$i"
    done
    kill -INT "$STRACE_PID"
    wait "$STRACE_PID" 2>/dev/null || true
    local verdict
    verdict=$(awk '
        /(fdatasync|fsync)\([0-9]+<[^>]*-wal>/ && /= 0$/ { synced = 1 }
        /fdatasync resumed>|fsync resumed>/ && /= 0$/ && pending[$1] { synced = 1 }
        /(fdatasync|fsync)\([0-9]+<[^>]*-wal>/ && /unfinished/ { pending[$1] = 1 }
        /HTTP\/1\.1 202/ { answers++; if (!synced) bad++; synced = 0 }
        END { printf "%d %d\n", answers, bad }' "$T/trace")
    read -r answers unsynced <<<"$verdict"
    assert_eq "$answers" 5 "202 answers seen by strace"
    assert_eq "$unsynced" 0 "202 answers sent without a WAL fsync since the previous one"
    stop_orderd
}

# fsync of the WAL fails: the order is not acknowledged, the daemon exits 2
# (the kernel may have dropped the pages; nothing since the last good sync can
# be promised), and a restart keeps every order that was acknowledged before.
test_failed_fsync_ends_the_daemon_and_keeps_acknowledged_orders() {
    command -v cc >/dev/null || skip "cc is not installed"
    cc -shared -fPIC -o "$T/fail_fsync.so" "$LIB_DIR/fail_fsync.c" -ldl ||
        fail "cannot build the fail_fsync shim"
    (
        export LD_PRELOAD=$T/fail_fsync.so TEST_FAIL_FSYNC_FLAG=$T/fail
        # a sanitizer runtime must come first in the library list; the shim
        # is harmless there
        export ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}verify_asan_link_order=0
        start_orderd storage.durability=full
        echo "$D_CONF $D_CTL" >"$T/daemon"
        post_order C-before
        echo "$ORDER_ID" >"$T/acknowledged"
        touch "$T/fail"
        post_json "$(order_body C-during)"
        assert_ne "$STATUS" 202 "answer while the WAL cannot be fsync'd"
        assert_eq "$(wait_exit)" 2 "exit status after a failed fsync"
        grep -q 'fdatasync of .*-wal failed' "$D_LOG" || fail "no log line names the failed fsync"
    )
    local conf ctl id
    read -r conf ctl <"$T/daemon"
    id=$(<"$T/acknowledged")
    sanitizer_report "$ctl"
    start_orderd_conf "$conf"
    # the exit left its WAL: the start checked the file first
    grep -q 'was not closed cleanly .*PRAGMA quick_check of .* ok in' "$D_LOG" ||
        fail "no start check logged after the exit: $(head -n 3 "$D_LOG" | tr '\n' ' ')"
    http GET "/orders/$id"
    assert_status 200
    wait_until 20 "the acknowledged order completed" order_is "$id" completed
    stop_orderd
}

# The start check (docs/durability.md, store_sqlite_open.c): a clean stop
# skips it; after kill -9 (the WAL left behind) the file is checked with
# PRAGMA quick_check before orderd listens; with a page of garbage in
# orderd.db, damage no power cut makes, orderd refuses to start: exit 2, one
# line on stderr, and the same at the next try.
test_start_check_after_kill9() {
    [[ -z $TEST_STORAGE_HOOK ]] || skip "the start check is SQLite's"
    command -v sqlite3 >/dev/null || skip "sqlite3 is not installed"
    start_orderd storage.durability=full
    local i
    for ((i = 0; i < 60; i++)); do
        post_order "C-check-$i"
    done
    local first=$ORDER_ID
    wait_until 20 "the orders completed" order_is "$first" completed
    stop_orderd
    [[ ! -e $D_DB-wal ]] || fail "a clean stop left $(stat -c %s "$D_DB-wal") bytes of WAL"
    # the leaf of orders that holds the oldest ones: nothing later writes there
    local page
    page=$(sqlite3 "$D_DB" "select pageno from dbstat where name = 'orders' and pagetype = 'leaf' order by path limit 1")
    [[ $page =~ ^[0-9]+$ && $page -gt 1 ]] || fail "no leaf page of orders: '$page'"

    start_orderd_conf "$D_CONF"
    assert_not_contains "$(<"$D_LOG")" quick_check "log of a start after a clean stop"
    post_order C-check-late
    wait_until 20 "the late order completed" order_is "$ORDER_ID" completed
    kill9
    [[ -s $D_DB-wal ]] || fail "kill -9 left no WAL"

    start_orderd_conf "$D_CONF"
    assert_match "$(<"$D_LOG")" 'was not closed cleanly .*PRAGMA quick_check of .* ok in' \
        "log of a start after kill -9"
    http GET "/orders/$first"
    assert_status 200
    post_order C-check-last
    kill9
    [[ -s $D_DB-wal ]] || fail "kill -9 left no WAL"

    head -c 4096 /dev/zero | tr '\0' '\245' |
        dd of="$D_DB" bs=4096 seek=$((page - 1)) count=1 conv=notrunc status=none
    local try rc
    for try in 1 2; do
        rc=0
        timeout -k 5 "$START_TIMEOUT" "$TEST_ORDERD_BIN" -c "$D_CONF" </dev/null \
            >"$T/refused.out" 2>"$T/refused.err" || rc=$?
        assert_eq "$rc" 2 "exit status of start $try on the damaged file"
        assert_eq "$(grep -c . "$T/refused.err")" 1 "lines on stderr of refusal $try: $(<"$T/refused.err")"
        assert_contains "$(<"$T/refused.err")" "PRAGMA quick_check finds it damaged (Page $page: " \
            "the refusal's line"
    done
    note "start_check: $(<"$T/refused.err")"
}

run_tests
