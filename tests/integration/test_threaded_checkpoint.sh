#!/usr/bin/env bash
# test_threaded_checkpoint.sh — the SQLite WAL while clients write: the
# checkpointer thread copies it back into the database file (counted on
# /metrics), the WAL file stays near the 1 000-page mark instead of growing,
# and every acknowledged order is stored. SQLite only. Runs under
# ThreadSanitizer too (TEST_FILTER=threaded): the checkpointer shares the
# write lock with the committer and the workers.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

CLIENTS=4
PER_CLIENT=200
MARK_PAGES=1000 # STORE_WAL_CHECKPOINT_PAGES
WAL_FRAME=4120  # a 4 KiB page and its 24-byte frame header

test_wal_is_checkpointed_while_clients_write() {
    [[ -z $TEST_STORAGE_HOOK ]] || skip "SQLite's WAL only (a storage hook is set)"
    start_orderd storage.durability=normal
    local c pids=()
    for ((c = 0; c < CLIENTS; c++)); do
        load_client "$T/load.$c" "$PER_CLIENT" "$T/stop" "CKPT-$c" &
        pids+=($!)
    done
    wait "${pids[@]}" # not a bare wait: the daemon's wrapper is a job too
    cat "$T"/load.* >"$T/all"
    assert_eq "$(awk '$2 == 202' "$T/all" | wc -l)" $((CLIENTS * PER_CLIENT)) "orders accepted"

    # ~800 orders and their settlements append several marks of pages
    wait_until 30 "a completed checkpoint" \
        metric_above 'orderd_storage_checkpoints_total{result="completed"}' 0
    assert_eq "$(metric 'orderd_storage_checkpoints_total{result="failed"}')" 0 "failed checkpoints"
    local wal on_disk
    wal=$(metric orderd_storage_wal_bytes)
    on_disk=$(stat -c %s "$D_DB-wal")
    ((wal > 0)) || fail "orderd_storage_wal_bytes is $wal"
    # the file only grows (a restarted WAL is overwritten in place): its size
    # is the largest it has been
    ((on_disk <= 3 * MARK_PAGES * WAL_FRAME)) ||
        fail "the WAL grew to $on_disk bytes; checkpoints start at $MARK_PAGES pages"

    awk '$2 == 202 { print $4 }' "$T/all" | sort >"$T/acknowledged"
    db_query "$D_DB" "SELECT order_id FROM orders WHERE customer_id LIKE 'CKPT-%' ORDER BY 1" \
        >"$T/stored"
    local missing
    missing=$(comm -23 "$T/acknowledged" "$T/stored" | wc -l)
    assert_eq "$missing" 0 "acknowledged orders not in the database"
    stop_orderd
}

run_tests
