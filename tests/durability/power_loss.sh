#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# tests/durability/power_loss.sh — "a 202 means the order survives kill -9 and
# power loss" (issue 22). The database lives on LazyFS (tests/durability/lib.sh),
# which holds every write that was not fsync'd in a cache of its own; a power
# cut is `kill -9` of orderd and, at once, `lazyfs::clear-cache`: what was not
# synced is gone, as after a real one. Then orderd starts on what reached the
# disk.
#
#   power_loss_full    durability = full: TEST_DURABILITY_ROUNDS (5) power cuts
#                      under load from TEST_DURABILITY_CLIENTS (8) clients, at
#                      random moments and while a WAL checkpoint runs; after each,
#                      every order that got a 202 is there, integrity_check is
#                      ok, no order or message is stored twice, the queue drains.
#   power_loss_normal  the same rounds with durability = normal must lose
#                      acknowledged orders (the 202 comes before any fsync):
#                      proof that the test above can fail. What was on the disk
#                      before a cut must survive the next ones here too.
#
# Moments of the cuts, round by round (then random again):
#   random             kill -9 + clear-cache 0.2-2.5 s (at random) into the load
#   checkpoint-copy    LazyFS crashes itself (a power cut) at the first write of a
#                      checkpoint into the database file: the WAL has been synced,
#                      the copy into orderd.db has begun
#                      (lazyfs::crash::timing=before::op=write::from_rgx=orderd\.db$)
#   checkpoint-synced  LazyFS crashes right after the checkpoint's fsync of
#                      orderd.db, before the WAL starts over
#                      (lazyfs::crash::timing=after::op=fsync::from_rgx=orderd\.db$)
# In orderd's WAL mode only a checkpoint writes to orderd.db, so these two fire
# inside a checkpoint, whichever comes next under the load; orderd, whose next
# fdatasync fails on the dead mount, is then killed with -9, LazyFS is mounted
# again on the same "disk".
#
# Prints one "# ..." line per round (acknowledged / present / lost), then
# "ok NAME" / "FAIL NAME: why". Run by tests/durability/run.sh (LAZYFS=...).
set -euo pipefail
# shellcheck source=../integration/lib.sh
. "$(dirname "$0")/../integration/lib.sh"
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"
SUITE_NAME=durability

: "${TEST_DURABILITY_ROUNDS:=5}"
: "${TEST_DURABILITY_NORMAL_ROUNDS:=3}"     # more, up to 8, while nothing was lost
MOMENTS=(random checkpoint-copy random checkpoint-synced random)

# A short lease: the messages the killed daemon held are delivered again within
# seconds, so the queue can drain before the next round.
start_on_lazyfs() { # DURABILITY
    start_orderd "storage.path=$LZ_MNT/orderd.db" "storage.durability=$1" \
        queue.visibility_timeout=2s workers.count=2
}

# crash_in_checkpoint FAULT — arm a LazyFS crash fault, wait for the next
# checkpoint to fire it, then kill -9 orderd and mount LazyFS again.
crash_in_checkpoint() {
    lazyfs_cmd "$1"
    local deadline=$((SECONDS + 10))
    until grep -q 'received: VALID crash fault' "$LZ_CTL/out.log"; do
        ((SECONDS < deadline)) || fail "LazyFS did not accept '$1': $(tail -n 3 "$LZ_CTL/out.log" | tr '\n' ' ')"
        sleep 0.05
    done
    wait_until 90 "a checkpoint to fire '$1'" lazyfs_dead
    grep -q 'Triggered fault condition' "$LZ_CTL/out.log" || fail "LazyFS ended without its fault: $(tail -n 3 "$LZ_CTL/out.log" | tr '\n' ' ')"
    kill9 "$D_CTL"
    lazyfs_remount
}

# power_round N MOMENT CUSTOMER CONF — load, a power cut at MOMENT, orderd
# started again on what reached the disk; sets ROUND_* (check_acked), ROUND_WHAT
# and ROUND_CHECKPOINTS (checkpoints completed by the daemon that was cut off).
power_round() {
    local n=$1 moment=$2 out=$T/acked.$1
    : >"$out"
    load_start "$out" "$3-$n"
    wait_until 60 "the first acknowledgements of round $n" lines_at_least "$out" 20
    case $moment in
    random)
        local ms=$((200 + RANDOM % 2300))
        sleep "$((ms / 1000)).$(printf '%03d' $((ms % 1000)))"
        ROUND_CHECKPOINTS=$(metric 'orderd_storage_checkpoints_total{result="completed"}')
        kill9_and_cut_power
        ROUND_WHAT="kill -9 + clear-cache ${ms} ms into the load"
        ;;
    checkpoint-copy)
        crash_in_checkpoint 'lazyfs::crash::timing=before::op=write::from_rgx=orderd\.db$'
        ROUND_WHAT="power cut at a checkpoint's first write into orderd.db"
        ;;
    checkpoint-synced)
        crash_in_checkpoint 'lazyfs::crash::timing=after::op=fsync::from_rgx=orderd\.db$'
        ROUND_WHAT="power cut right after a checkpoint's fsync of orderd.db"
        ;;
    *) fail "unknown moment $moment" ;;
    esac
    load_stop
    start_orderd_conf "$4"
    check_acked "$out"
}

# rounds DURABILITY MIN MAX — power rounds on one database until MIN rounds ran
# and (for normal) something was lost, at most MAX; each round's orders must
# complete, the database be sound, and every order that was present after an
# earlier round still be there. Sets LOST_TOTAL, ACKED_TOTAL, ROUNDS_RUN.
rounds() {
    local durability=$1 min=$2 max=$3 n moment
    lazyfs_mount
    start_on_lazyfs "$durability"
    local conf=$D_CONF
    : >"$T/kept"
    LOST_TOTAL=0
    ACKED_TOTAL=0
    for ((n = 1; n <= max; n++)); do
        if ((n > min)) && [[ $durability == full || $LOST_TOTAL -gt 0 ]]; then
            break
        fi
        moment=random
        ((n <= ${#MOMENTS[@]})) && moment=${MOMENTS[n - 1]}
        ROUND_CHECKPOINTS=
        power_round "$n" "$moment" "$durability" "$conf"
        local stats
        stats=$(<"$T/acked.$n.stats")
        note "$durability round $n ($ROUND_WHAT): $ROUND_ACKED acknowledged, $ROUND_PRESENT present," \
            "$ROUND_LOST lost after the restart [load: $stats${ROUND_CHECKPOINTS:+; checkpoints before the cut: $ROUND_CHECKPOINTS}]"
        LOST_TOTAL=$((LOST_TOTAL + ROUND_LOST))
        ACKED_TOTAL=$((ACKED_TOTAL + ROUND_ACKED))
        if [[ $durability == full ]] && ((ROUND_LOST > 0)); then
            fail "round $n ($ROUND_WHAT): $ROUND_LOST of $ROUND_ACKED acknowledged orders lost with durability = full:" \
                "$(head -n 3 "$T/acked.$n.lost" | tr '\n' ' ')"
        fi
        # what an earlier round left on the disk is still there
        check_acked "$T/kept"
        ((ROUND_LOST == 0)) || fail "round $n ($ROUND_WHAT): $ROUND_LOST orders present after an earlier round are gone:" \
            "$(head -n 3 "$T/kept.lost" | tr '\n' ' ')"
        comm -12 "$T/acked.$n.sorted" "$T/stored" >>"$T/kept"
        check_consistent
        check_drains
    done
    ROUNDS_RUN=$((n - 1))
    stop_orderd
    assert_eq "$(db_sql 'pragma integrity_check')" ok "integrity_check after the last clean stop"
}

test_power_loss_full() {
    lazyfs_require
    rounds full "$TEST_DURABILITY_ROUNDS" "$TEST_DURABILITY_ROUNDS"
    note "full: $ACKED_TOTAL acknowledged over $ROUNDS_RUN power cuts, none lost"
}

test_power_loss_normal() {
    lazyfs_require
    rounds normal "$TEST_DURABILITY_NORMAL_ROUNDS" 8
    ((LOST_TOTAL > 0)) || fail "durability = normal lost no acknowledged order in $ROUNDS_RUN power cuts:" \
        "the test cannot tell a synced 202 from an unsynced one"
    note "normal: $LOST_TOTAL of $ACKED_TOTAL acknowledged orders lost over $ROUNDS_RUN power cuts," \
        "as durability = normal allows: the power-loss test can fail"
}

run_tests
