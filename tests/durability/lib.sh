# shellcheck shell=bash
# shellcheck disable=SC2034  # LZ_*, ROUND_*: globals set here for the test files
#
# tests/durability/lib.sh — LazyFS and the checks shared by the power-loss and
# torn-write tests. Sourced after tests/integration/lib.sh (its cases, $T,
# fail, note, start_orderd...) by tests/durability/power_loss.sh and
# torn_writes.sh.
#
# LazyFS (github.com/dsrhaslab/lazyfs, built by ../shared/tools/build-lazyfs.sh)
# is a FUSE file system that keeps every write in a cache of its own and
# passes it to the file below only on fsync/fdatasync. `lazyfs::clear-cache`
# (a line written into its faults FIFO) drops what was never synced: the disk
# as a power cut leaves it. Its torn-op / torn-seq faults write part of one
# write, or some writes of a sequence out of order, to the file below and
# then kill LazyFS itself: a power cut in the middle of a write.
#
#   lazyfs_mount           LazyFS over a fresh "disk": LZ_ROOT (the file below,
#                          a short path under /tmp: a FIFO command holds at most
#                          99 bytes) seen at LZ_MNT; sets LZ_*
#   lazyfs_cmd LINE        one command into the faults FIFO
#   lazyfs_clear_cache     drop every unsynced write; returns once LazyFS is done
#   lazyfs_alive           LazyFS still runs (a torn fault or a crash ends it)
#   lazyfs_remount         unmount (after a crash too), start again on LZ_ROOT
#   lazyfs_umount          unmount, wait for the process
#
# Environment: LAZYFS the binary (required); TEST_DURABILITY_CLIENTS (8)
# clients of load.py; LAZYFS_SWEEP_FILE, set by run.sh: every LazyFS pid,
# mount and root is listed there so that run.sh can clean up after a case
# killed by its watchdog.

DUR_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
: "${LAZYFS:=}"
: "${TEST_DURABILITY_CLIENTS:=8}"
: "${LAZYFS_SWEEP_FILE:=}"
LZ_GEN=0

# lazyfs_require — ends the case as skipped when LazyFS cannot run here.
lazyfs_require() {
    [[ -n $LAZYFS && -x $LAZYFS ]] || skip "no LazyFS (set LAZYFS=/path/to/lazyfs)"
    [[ $(id -u) == 0 ]] || skip "LazyFS needs root (FUSE mounts, allow_other)"
    [[ -c /dev/fuse ]] || skip "no /dev/fuse"
    command -v fusermount3 >/dev/null || skip "fusermount3 is missing (package fuse3)"
    command -v python3 >/dev/null || skip "python3 is missing"
}

sweep_add() { # KIND VALUE — for run.sh's clean-up
    [[ -z $LAZYFS_SWEEP_FILE ]] || echo "$1 $2" >>"$LAZYFS_SWEEP_FILE"
}

lz_mounted() {
    awk -v m="$LZ_MNT" '$2 == m && $3 ~ /^fuse/ { found = 1 } END { exit !found }' /proc/mounts
}

lazyfs_mount() {
    LZ_DIR=$T/lazyfs
    LZ_MNT=$T/mnt
    mkdir -p "$LZ_DIR" "$LZ_MNT"
    LZ_ROOT=$(mktemp -d /tmp/odlz.XXXXXX)
    sweep_add root "$LZ_ROOT"
    sweep_add mount "$LZ_MNT"
    LZ_FIFO=$LZ_DIR/faults.fifo
    mkfifo "$LZ_DIR/done.fifo"
    # read-write: opening never blocks, and LazyFS's own open of it for
    # writing (at mount) finds a reader at once
    exec {LZ_DONE_FD}<>"$LZ_DIR/done.fifo"
    cat >"$LZ_DIR/lazyfs.toml" <<EOF
[faults]
fifo_path="$LZ_FIFO"
fifo_path_completed="$LZ_DIR/done.fifo"
[cache]
apply_eviction=false
[cache.simple]
custom_size="256mb"
blocks_per_page=1
[filesystem]
log_all_operations=false
logfile=""
EOF
    on_exit lazyfs_cleanup
    lazyfs_start
}

# lazyfs_start — one LazyFS process in the foreground of a wrapper that
# records its exit status (LZ_CTL/rc), as lib.sh does for orderd.
lazyfs_start() {
    LZ_GEN=$((LZ_GEN + 1))
    LZ_CTL=$LZ_DIR/run.$LZ_GEN
    mkdir "$LZ_CTL"
    (
        trap - EXIT ERR
        set +e
        "$LAZYFS" "$LZ_MNT" --config-path "$LZ_DIR/lazyfs.toml" -o allow_other \
            -o modules=subdir -o "subdir=$LZ_ROOT" -f </dev/null >"$LZ_CTL/out.log" 2>&1 &
        echo $! >"$LZ_CTL/pid"
        wait $!
        echo $? >"$LZ_CTL/rc"
    ) 2>/dev/null &
    local deadline=$((SECONDS + 30))
    until [[ -s $LZ_CTL/pid ]]; do
        ((SECONDS < deadline)) || fail "LazyFS did not start (no pid)"
        sleep 0.02
    done
    LZ_PID=$(<"$LZ_CTL/pid")
    sweep_add pid "$LZ_PID"
    # mounted, and its FIFO worker (started by the mount) reads commands
    until lz_mounted && grep -q 'waiting for fault commands' "$LZ_CTL/out.log"; do
        [[ ! -e $LZ_CTL/rc ]] || fail "LazyFS exited with status $(<"$LZ_CTL/rc") at start: $(tail -n 5 "$LZ_CTL/out.log" | tr '\n' ' ')"
        ((SECONDS < deadline)) || fail "LazyFS not mounted on $LZ_MNT within 30s: $(tail -n 5 "$LZ_CTL/out.log" | tr '\n' ' ')"
        sleep 0.05
    done
}

# (the wrapper may be gone: a case's clean-up kills its background jobs first)
lazyfs_alive() {
    [[ ! -e $LZ_CTL/rc ]] && kill -0 "$LZ_PID" 2>/dev/null
}

lazyfs_dead() {
    ! lazyfs_alive
}

# lazyfs_cmd LINE — LazyFS reads its FIFO 100 bytes at a time and takes each
# read as one command, so a line must fit (and commands must not be sent
# faster than it reads them: each helper here waits for its effect).
lazyfs_cmd() {
    ((${#1} < 100)) || fail "LazyFS command longer than 99 bytes: $1"
    lazyfs_alive || fail "LazyFS is not running (command $1)"
    printf '%s\n' "$1" 1<>"$LZ_FIFO"
}

# lazyfs_configured TEXT — LazyFS logged that it accepted fault TEXT.
lazyfs_configured() {
    local deadline=$((SECONDS + 10))
    until grep -qF "configured successfully '$1'" "$LZ_CTL/out.log"; do
        if grep -qF "INVALID" "$LZ_CTL/out.log" || ((SECONDS >= deadline)); then
            fail "LazyFS did not accept '$1': $(grep -F 'faults.worker' "$LZ_CTL/out.log" | tail -n 4 | tr '\n' ' ')"
        fi
        sleep 0.05
    done
}

lazyfs_clear_cache() {
    lazyfs_cmd lazyfs::clear-cache
    local line
    read -r -t 30 -u "$LZ_DONE_FD" line || fail "LazyFS did not finish lazyfs::clear-cache within 30s"
    [[ $line == finished::clear-cache ]] || fail "LazyFS answered '$line' to lazyfs::clear-cache"
}

lazyfs_umount() {
    [[ -n ${LZ_CTL:-} ]] || return 0
    if lz_mounted; then
        fusermount3 -u "$LZ_MNT" 2>/dev/null || fusermount3 -uz "$LZ_MNT" || true
    fi
    local deadline=$((SECONDS + 20))
    while lazyfs_alive; do
        if ((SECONDS >= deadline)); then
            kill -KILL "$LZ_PID" 2>/dev/null || true
            break
        fi
        sleep 0.05
    done
}

# lazyfs_cleanup — at the end of a case: unmounted, the "disk" removed
# (kept with TEST_KEEP_TMP=1, to look at what a power cut left).
lazyfs_cleanup() {
    lazyfs_umount
    if [[ $TEST_KEEP_TMP == 1 ]]; then
        echo "# kept the LazyFS disk $LZ_ROOT" >>"$T/.notes"
    elif ! lz_mounted; then
        rm -rf "$LZ_ROOT"
    fi
}

lazyfs_remount() {
    lazyfs_umount
    lazyfs_start
}

# ---- load and checks ------------------------------------------------------------

# load_start OUT CUSTOMER — load.py's clients against $BASE_URL until
# load_stop; the ids answered 202 go to OUT.
load_start() {
    LOAD_OUT=$1
    rm -f "$T/load.stop"
    python3 "$DUR_DIR/load.py" "$BASE_URL" "$LOAD_OUT" "$TEST_DURABILITY_CLIENTS" "$T/load.stop" "$2" \
        2>"$LOAD_OUT.err" &
    LOAD_PID=$!
}

load_stop() {
    touch "$T/load.stop"
    wait "$LOAD_PID" || fail "load.py failed: $(tail -n 3 "$LOAD_OUT.err" | tr '\n' ' ')"
}

lines_at_least() { # FILE N — for wait_until
    [[ -f $1 ]] && (($(wc -l <"$1") >= $2))
}

# kill9_and_cut_power — the daemon killed with -9, then everything LazyFS
# holds unsynced dropped: the disk as a power cut at this moment leaves it.
kill9_and_cut_power() {
    kill9 "$D_CTL"
    lazyfs_clear_cache
}

db_sql() { # SQL — read-only, on the database of the current daemon
    sqlite3 -readonly "$D_DB" "$1"
}

# check_acked ACKED — after a restart on what reached the disk: sets
# ROUND_ACKED, ROUND_PRESENT, ROUND_LOST (ids listed in ACKED.lost) from the
# database file, and checks that the daemon answers GET for a sample of them.
check_acked() {
    local acked=$1
    sort -u "$acked" >"$acked.sorted"
    db_sql "select order_id from orders" | sort >"$T/stored"
    comm -23 "$acked.sorted" "$T/stored" >"$acked.lost"
    ROUND_ACKED=$(wc -l <"$acked.sorted")
    ROUND_LOST=$(wc -l <"$acked.lost")
    ROUND_PRESENT=$((ROUND_ACKED - ROUND_LOST))
    comm -12 "$acked.sorted" "$T/stored" | tail -n 20 >"$T/sample"
    local unanswered
    unanswered=$(get_all_ids "$T/sample")
    [[ -z $unanswered ]] || fail "orders in the database that GET does not answer: $(head -n 3 <<<"$unanswered" | tr '\n' ' ')"
}

# check_consistent — the database the daemon serves is sound: integrity_check
# ok, each order and each message once.
check_consistent() {
    assert_eq "$(db_sql 'pragma integrity_check')" ok "integrity_check"
    assert_eq "$(db_sql 'select order_id from orders group by order_id having count(*) > 1')" "" \
        "orders stored twice"
    assert_eq "$(db_sql 'select order_id from queue group by order_id having count(*) > 1')" "" \
        "messages queued twice"
    assert_eq "$(db_sql "select count(*) from queue q join orders o using (order_id) where o.status = 'completed'")" 0 \
        "completed orders still queued"
}

# check_drains — every order completes (no fulfilment: processing is the
# write itself), the queue is empty.
check_drains() {
    wait_until 60 "the queue drained after the restart" metric_is orderd_queue_depth 0
    assert_eq "$(db_sql "select count(*) from orders where status != 'completed'")" 0 "orders not completed"
}

# start_or_refuse CONF — starts orderd on CONF as lib.sh's start_orderd_conf
# does, but a daemon that exits at start is an answer, not a failure:
# STARTED=1 once it listens (D_*, BASE_URL set), or STARTED=0 with REFUSED_RC
# and REFUSED_LOG (its stderr) once it exited.
start_or_refuse() {
    local conf=$1
    D_CONF=$conf
    D_CTL=$(mktemp -d "$(dirname "$conf")/run.XXXXXX")
    D_LOG=$D_CTL/stderr.log
    (
        trap - EXIT ERR
        set +e
        "$TEST_ORDERD_BIN" -c "$conf" </dev/null >"$D_CTL/stdout.log" 2>"$D_LOG" &
        echo $! >"$D_CTL/pid"
        wait $!
        echo $? >"$D_CTL/rc"
    ) 2>/dev/null &
    echo "$BASHPID $D_CTL" >>"$SUITE_TMP/.daemons"
    local deadline=$((SECONDS + START_TIMEOUT))
    until [[ -s $D_CTL/pid ]]; do
        ((SECONDS < deadline)) || fail "orderd did not start (no pid)"
        sleep 0.02
    done
    D_PID=$(<"$D_CTL/pid")
    D_PORT=
    while [[ -z $D_PORT ]]; do
        if [[ -s $D_CTL/rc ]]; then
            STARTED=0
            REFUSED_RC=$(<"$D_CTL/rc")
            REFUSED_LOG=$(<"$D_LOG")
            return 0
        fi
        ((SECONDS < deadline)) || fail "orderd neither listened nor exited within ${START_TIMEOUT}s"
        sleep 0.05
        D_PORT=$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9][0-9]*\).*/\1/p' "$D_LOG" | head -n 1)
    done
    BASE_URL=http://127.0.0.1:$D_PORT
    export BASE_URL
    STARTED=1
}
