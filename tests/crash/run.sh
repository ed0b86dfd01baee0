#!/usr/bin/env bash
# tests/crash/run.sh — what survives the worst: kill -9 during intake, kill -9
# during processing, and a full disk. Drives the real binary
# ($TEST_ORDERD_BIN, default build/orderd) with curl, signals and read-only
# sqlite3 queries, through the helpers of tests/integration/lib.sh.
#
#   intake_crash      16 clients POST for ~3 s, kill -9, restart: every 202 is there.
#   processing_crash  slow fulfilment, kill -9 while commands run, restart:
#                     every accepted order completes exactly once in `orders`.
#   disk_full         database on a 3 MB tmpfs filled up: 503 + Retry-After and
#                     /readyz 503, nothing acknowledged lost, recovery once space is back.
#
# Prints "ok NAME" / "FAIL NAME: why" (and "# ..." numbers), then
# "N passed, M failed"; exits non-zero on any failure.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR
# shellcheck source=../integration/lib.sh
. "$(dirname "$0")/../integration/lib.sh"
SUITE_NAME=crash

: "${TEST_CRASH_CLIENTS:=16}"
: "${TEST_CRASH_LOAD_SECONDS:=3}"

# start_clients N PREFIX — N load_clients in the background until $T/stop.
start_clients() {
    local c
    CLIENT_PIDS=()
    for ((c = 0; c < $1; c++)); do
        load_client "$T/client.$c" 1000000 "$T/stop" "$2-$c" &
        CLIENT_PIDS+=($!)
    done
}

stop_clients() {
    touch "$T/stop"
    local pid
    for pid in "${CLIENT_PIDS[@]}"; do
        wait "$pid"
    done
}

# count_where SQL_CONDITION — rows of orders matching (read-only).
count_where() {
    sqlite3 -readonly "$D_DB" "select count(*) from orders where $1"
}

test_intake_crash() {
    start_orderd storage.durability=full workers.count=2
    local conf=$D_CONF
    start_clients "$TEST_CRASH_CLIENTS" CRASH
    sleep "$TEST_CRASH_LOAD_SECONDS"
    kill9
    stop_clients
    cat "$T"/client.* >"$T/all"
    awk '$2 == 202 {print $4}' "$T/all" | sort >"$T/acked"
    local acked cut
    acked=$(wc -l <"$T/acked")
    cut=$(awk '$2 == "000" && $3 != 7' "$T/all" | wc -l)
    ((acked > 0)) || fail "no POST was acknowledged in ${TEST_CRASH_LOAD_SECONDS}s"
    local other
    other=$(awk '$2 != 202 && $2 != "000"' "$T/all" | head -n 3)
    [[ -z $other ]] || fail "answers other than 202 before the crash: $other"

    start_orderd_conf "$conf"
    local missing found
    missing=$(get_all_ids "$T/acked")
    found=$((acked - $(grep -c . <<<"$missing" || true)))
    local stored
    stored=$(count_where "customer_id like 'CRASH-%'")
    note "intake_crash: $acked acknowledged, $found found after kill -9 and restart," \
        "$stored stored ($((stored - acked)) committed without the client seeing the 202)," \
        "$cut requests cut off by the kill"
    [[ -z $missing ]] || fail "$((acked - found)) acknowledged orders lost: $(head -n 3 <<<"$missing" | tr '\n' ' ')"
    ((stored >= acked)) || fail "fewer orders stored ($stored) than acknowledged ($acked)"
    assert_eq "$(sqlite3 -readonly "$D_DB" 'pragma integrity_check')" ok "integrity_check after the crash"
    # the queue of the dead daemon is worked off by the new one
    wait_until 60 "queue empty after the restart" metric_is orderd_queue_depth 0
    assert_eq "$(count_where "customer_id like 'CRASH-%' and status != 'completed'")" 0 "orders not completed"
    stop_orderd
}

completed_count_is() {
    [[ $(count_where "status = 'completed'") == "$1" ]]
}

no_process_matches() {
    ! pgrep -f "$1" >/dev/null
}

test_processing_crash() {
    local marker="orderd-crash-$$-$RANDOM$RANDOM"
    local cmd=$T/$marker.sh
    cat >"$cmd" <<'EOF'
#!/bin/sh
cat >/dev/null
sleep 0.3
echo "$ORDER_ID" >>"$1/fulfilled"
EOF
    chmod +x "$cmd"
    : >"$T/fulfilled"
    # 4 in flight at a time, 0.3 s each: a backlog is still queued at the kill
    start_orderd queue.visibility_timeout=2s workers.count=4 workers.fulfilment_concurrency=4 \
        "workers.fulfilment_command=$cmd $T"
    local conf=$D_CONF c pids=()
    for ((c = 0; c < 4; c++)); do
        load_client "$T/client.$c" 10 "$T/never" "PC-$c" &
        pids+=($!)
    done
    local pid
    for pid in "${pids[@]}"; do
        wait "$pid"
    done
    cat "$T"/client.* >"$T/all"
    local bad
    bad=$(awk '$2 != 202' "$T/all" | head -n 3)
    [[ -z $bad ]] || fail "POSTs not accepted: $bad"
    awk '{print $4}' "$T/all" | sort >"$T/acked"
    local acked
    acked=$(wc -l <"$T/acked")

    # kill -9 while fulfilment commands run
    wait_until 10 "fulfilment commands running" pgrep -f "$marker" >/dev/null
    sleep 0.5
    local before_kill
    before_kill=$(wc -l <"$T/fulfilled")
    kill9
    local running
    running=$(pgrep -fc "$marker" || true)
    ((before_kill < acked)) || fail "every order was fulfilled before the kill: nothing to test"

    start_orderd_conf "$conf"
    wait_until 90 "all $acked orders completed after the restart" completed_count_is "$acked"
    assert_eq "$(count_where "status != 'completed'")" 0 "orders not completed"
    assert_eq "$(sqlite3 -readonly "$D_DB" 'select order_id from orders group by order_id having count(*) > 1')" "" \
        "order ids stored twice"
    assert_eq "$(list_ids "status=completed&limit=16" | sort | uniq | wc -l)" "$acked" "completed orders via the API"
    list_ids "status=completed&limit=16" | sort | cmp -s - "$T/acked" || fail "completed orders via the API differ from the accepted ones"
    assert_metric orderd_queue_depth 0 "orderd_queue_depth"
    assert_metric orderd_dlq_depth 0 "orderd_dlq_depth"
    # at least once: every order was fulfilled, some twice (the ones the kill cut)
    wait_until 10 "commands of the killed daemon gone" no_process_matches "$marker"
    local unfulfilled twice
    unfulfilled=$(sort -u "$T/fulfilled" | comm -23 "$T/acked" -)
    twice=$(sort "$T/fulfilled" | uniq -d | wc -l)
    note "processing_crash: $acked accepted, $before_kill fulfilled before kill -9 ($running commands running)," \
        "$(count_where "status = 'completed'") completed once after restart, $twice fulfilled twice (at-least-once)"
    [[ -z $unfulfilled ]] || fail "orders completed without a successful fulfilment: $(head -n 3 <<<"$unfulfilled" | tr '\n' ' ')"
    stop_orderd
}

# readyz_is CODE — for wait_until.
readyz_is() {
    [[ $(curl -sS --max-time 5 -o /dev/null -w '%{http_code}' "$BASE_URL/readyz") == "$1" ]]
}

test_disk_full() {
    [[ $(id -u) == 0 ]] || skip "mounting a tmpfs needs root"
    local mnt=$T/mnt
    mkdir "$mnt"
    if ! mount -t tmpfs -o size=3m tmpfs "$mnt" 2>"$T/mount.err"; then
        skip "mount -t tmpfs is not permitted here: $(<"$T/mount.err")"
    fi
    on_exit "umount -l '$mnt'"
    start_orderd "storage.path=$mnt/orderd.db" storage.durability=full
    : >"$T/acked"
    local i
    for ((i = 0; i < 10; i++)); do
        post_order DISK
        echo "$ORDER_ID" >>"$T/acked"
    done
    # fill the file system
    dd if=/dev/zero of="$mnt/junk" bs=64k 2>/dev/null || true
    local before=0 got503=0
    for ((i = 0; i < 3000; i++)); do
        post_json "$(order_body DISK)"
        if [[ $STATUS == 202 ]]; then
            json_str order_id >>"$T/acked"
            before=$((before + 1))
            continue
        fi
        [[ $STATUS == 503 ]] || fail "POST on a full disk: status $STATUS, want 202 or 503 ($BODY)"
        got503=1
        break
    done
    ((got503)) || fail "3000 POSTs on a full disk and no 503"
    assert_match "$(header Retry-After)" '^[0-9]+$' "Retry-After of the 503 on a full disk"
    assert_eq "$(header Content-Type)" application/problem+json "content type of the 503"
    wait_until 10 "/readyz 503 on a full disk" readyz_is 503
    http GET /healthz
    assert_status 200
    local missing
    missing=$(get_all_ids "$T/acked")
    [[ -z $missing ]] || fail "acknowledged orders unreadable on a full disk: $(head -n 3 <<<"$missing")"
    note "disk_full: $before more POSTs accepted after dd filled the disk, then 503"

    rm -f "$mnt/junk"
    local deadline=$((SECONDS + 10))
    while :; do
        post_json "$(order_body DISK)"
        [[ $STATUS == 202 ]] && break
        ((SECONDS < deadline)) || fail "POST still answered $STATUS 10 s after space came back"
        sleep 0.2
    done
    json_str order_id >>"$T/acked"
    wait_until 10 "/readyz 200 once space is back" readyz_is 200
    missing=$(get_all_ids "$T/acked")
    [[ -z $missing ]] || fail "acknowledged orders unreadable after recovery: $(head -n 3 <<<"$missing")"
    stop_orderd
    assert_eq "$(sqlite3 -readonly "$D_DB" 'pragma integrity_check')" ok "integrity_check after the full disk"
}

# Files that turn read-only under the daemon (chattr +i makes every write,
# even on descriptors already open, fail with EPERM as on a file system the
# kernel remounted read-only): POST and /readyz answer 503 with Retry-After,
# reads keep working, and once the files are writable again intake resumes by
# itself and nothing acknowledged is lost.
test_read_only_database() {
    [[ $(id -u) == 0 ]] || skip "chattr +i needs root"
    command -v chattr >/dev/null || skip "chattr is not installed"
    start_orderd storage.durability=full
    : >"$T/acked"
    local i f
    for ((i = 0; i < 5; i++)); do
        post_order RO
        echo "$ORDER_ID" >>"$T/acked"
    done
    local -a files=("$D_DB" "$D_DB-wal")
    for f in "${files[@]}"; do
        chattr +i "$f" 2>/dev/null || skip "chattr +i is not supported on this file system"
        on_exit "chattr -i '$f' 2>/dev/null"
    done
    post_json "$(order_body RO)"
    assert_status 503
    assert_match "$(header Retry-After)" '^[0-9]+$' "Retry-After of the 503 on a read-only database"
    wait_until 10 "/readyz 503 on a read-only database" readyz_is 503
    http GET "/orders/$(head -n 1 "$T/acked")"
    assert_status 200
    for f in "${files[@]}"; do
        chattr -i "$f"
    done
    local deadline=$((SECONDS + 10))
    while :; do
        post_json "$(order_body RO)"
        [[ $STATUS == 202 ]] && break
        ((SECONDS < deadline)) || fail "POST still answered $STATUS 10 s after the database became writable"
        sleep 0.2
    done
    json_str order_id >>"$T/acked"
    wait_until 10 "/readyz 200 once writable" readyz_is 200
    local missing
    missing=$(get_all_ids "$T/acked")
    [[ -z $missing ]] || fail "acknowledged orders unreadable after the read-only spell: $(head -n 3 <<<"$missing")"
    stop_orderd
    assert_eq "$(sqlite3 -readonly "$D_DB" 'pragma integrity_check')" ok "integrity_check after the read-only spell"
}

run_tests
