#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# tests/durability/torn_writes.sh — torn and reordered writes (issue 22, part 2).
# LazyFS's faults put part of one write (torn-op), or some writes of a sequence
# between two fsyncs and not the ones before them (torn-seq), on the disk below,
# then kill LazyFS: a power cut in the middle of writing. Under load from
# TEST_DURABILITY_CLIENTS clients with durability = full, one fault a case:
#
#   torn_op_wal    the next write into orderd.db-wal after 200 acknowledgements
#                  reaches the disk without its middle third (parts=3, persist=1,3)
#   torn_seq_wal   of the next run of WAL writes between two fsyncs, the 1st and
#                  the 3rd reach the disk, the 2nd does not (persist=1,3)
#   torn_op_db     the next write into orderd.db — a checkpoint copying its first
#                  page — reaches the disk as its first 3/8 (parts=8, persist=1,2,3)
#   torn_seq_db    of the next checkpoint's run of page writes, only the 2nd
#                  reaches the disk, not the 1st (persist=2), before its fsync
#
# Then orderd is killed with -9, LazyFS mounted again on what reached the
# disk, and orderd started on it. It must either serve a database that holds
# every acknowledged order (integrity_check ok, the queue drains), or refuse to
# start: exit status 2 with one line on stderr. It must never serve from a
# corrupt file. Each case notes which of the two happened.
set -euo pipefail
# shellcheck source=../integration/lib.sh
. "$(dirname "$0")/../integration/lib.sh"
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"
SUITE_NAME=durability

# torn_case NAME FAULT — FAULT is the command after "lazyfs::" with FILE for
# the path of the file below LazyFS (orderd.db or orderd.db-wal).
torn_case() {
    local name=$1 fault=$2
    lazyfs_require
    lazyfs_mount
    start_orderd "storage.path=$LZ_MNT/orderd.db" storage.durability=full \
        queue.visibility_timeout=2s workers.count=2
    local conf=$D_CONF cmd=lazyfs::${fault//FILE/$LZ_ROOT/}
    load_start "$T/acked" TORN
    wait_until 60 "200 acknowledgements before the fault" lines_at_least "$T/acked" 200
    lazyfs_cmd "$cmd"
    lazyfs_configured "$cmd"
    wait_until 60 "the fault to fire (LazyFS ends)" lazyfs_dead
    grep -q 'Triggered fault condition' "$LZ_CTL/out.log" ||
        fail "LazyFS ended without its fault: $(tail -n 3 "$LZ_CTL/out.log" | tr '\n' ' ')"
    local persisted
    persisted=$(grep -oE 'will persist [0-9]+ bytes from offset [0-9]+|persist the write [0-9]+' \
        "$LZ_CTL/out.log" | tr '\n' ',' | sed 's/,$//; s/,/, /g')
    kill9 "$D_CTL"
    load_stop
    lazyfs_remount
    start_or_refuse "$conf"
    if ((STARTED)); then
        check_acked "$T/acked"
        ((ROUND_LOST == 0)) || fail "$ROUND_LOST of $ROUND_ACKED acknowledged orders lost: $(head -n 3 "$T/acked.lost" | tr '\n' ' ')"
        check_consistent
        check_drains
        note "$name ($persisted): orderd started again; $ROUND_ACKED acknowledged, $ROUND_PRESENT present," \
            "0 lost, integrity_check ok, queue drained [load: $(<"$T/acked.stats")]"
        stop_orderd
    else
        assert_eq "$REFUSED_RC" 2 "exit status of an orderd that refuses the torn database"
        assert_eq "$(grep -c . <<<"$REFUSED_LOG")" 1 "lines on stderr of the refusal (want one clear line): $REFUSED_LOG"
        note "$name ($persisted): orderd refused to start (exit 2): $REFUSED_LOG"
    fi
}

test_torn_op_wal() {
    torn_case torn_op_wal 'torn-op::file=FILEorderd.db-wal::parts=3::persist=1,3'
}

test_torn_seq_wal() {
    torn_case torn_seq_wal 'torn-seq::op=write::file=FILEorderd.db-wal::persist=1,3'
}

test_torn_op_db() {
    torn_case torn_op_db 'torn-op::file=FILEorderd.db::parts=8::persist=1,2,3'
}

test_torn_seq_db() {
    torn_case torn_seq_db 'torn-seq::op=write::file=FILEorderd.db::persist=2'
}

run_tests
