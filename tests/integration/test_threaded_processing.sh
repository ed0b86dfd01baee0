#!/usr/bin/env bash
# test_threaded_processing.sh — workers and fulfilment_command (SPEC "Queue
# semantics"): success, retries with backoff, dead letters, the admin DLQ
# (list, redrive one, redrive all, delete; the history each leaves on the
# order and the audit line in the log), timeouts that kill the whole
# process group, and the processing metrics. Several workers run commands at
# once here, so this file also runs under ThreadSanitizer.
# shellcheck disable=SC2016  # the fulfilment scripts are single-quoted on purpose
set -euo pipefail
# shellcheck source-path=SCRIPTDIR
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

FAST_RETRY=(queue.max_receives=3 queue.backoff_base=100ms queue.backoff_max=200ms)

# all_orders_are STATUS ID... — for wait_until.
all_orders_are() {
    local want=$1 id
    shift
    for id in "$@"; do
        [[ $(order_status "$id") == "$want" ]] || return 1
    done
}

# pkill_marker MARKER — kills our own helper processes named with MARKER, by pid.
pkill_marker() {
    local pids
    pids=$(pgrep -f "$1" || true)
    # shellcheck disable=SC2086  # a list of pids
    [[ -z $pids ]] || kill -KILL $pids 2>/dev/null || true
}

# script NAME BODY — an executable /bin/sh script $T/NAME; prints its path.
script() {
    printf '#!/bin/sh\n%s\n' "$2" >"$T/$1"
    chmod +x "$T/$1"
    echo "$T/$1"
}

# The fulfilment command of the success cases: checks what orderd hands it,
# and leaves a marker per order (TRACEPARENT, then stdin).
ok_script() {
    script ok.sh '
set -u
dir=$1
input=$(cat)
[ -n "${ORDER_ID:-}" ] || { echo "ORDER_ID is not set" >&2; exit 10; }
[ -n "${TRACEPARENT:-}" ] || { echo "TRACEPARENT is not set" >&2; exit 11; }
printf "%s" "$input" | grep -Eq "\"order_id\" *: *\"$ORDER_ID\"" ||
    { echo "stdin lacks order_id $ORDER_ID: $input" >&2; exit 12; }
printf "%s\n%s\n" "$TRACEPARENT" "$input" >"$dir/done.$ORDER_ID.tmp"
mv "$dir/done.$ORDER_ID.tmp" "$dir/done.$ORDER_ID"
echo "$ORDER_ID" >>"$dir/all"'
}

test_fulfilment_success() {
    local cmd
    cmd=$(ok_script)
    mkdir "$T/out"
    start_orderd workers.count=4 "workers.fulfilment_command=$cmd $T/out"
    local trace=0af7651916cd43dd8448eb211c80319c
    post_order C-ok -H "traceparent: 00-$trace-b7ad6b7169203331-01"
    local traced=$ORDER_ID ids=("$ORDER_ID") i
    for ((i = 0; i < 11; i++)); do
        post_order "C-ok-$i"
        ids+=("$ORDER_ID")
    done
    wait_until 30 "12 orders completed" all_orders_are completed "${ids[@]}"
    local id
    for id in "${ids[@]}"; do
        [[ -f $T/out/done.$id ]] || fail "no marker of the command for $id"
        http GET "/orders/$id"
        assert_eq "$(json_raw attempts)" 1 "attempts of $id"
        assert_match "$(json_str processed_at)" '^[0-9]{4}-' "processed_at of $id"
        assert_eq "$(json_raw last_error)" null "last_error of $id"
    done
    assert_eq "$(sort "$T/out/all" | uniq -d | wc -l)" 0 "orders fulfilled twice"
    assert_eq "$(wc -l <"$T/out/all")" 12 "fulfilments"
    # the trace goes from the request to the command
    local tp
    tp=$(head -n 1 "$T/out/done.$traced")
    assert_match "$tp" "^00-$trace-[0-9a-f]{16}-[0-9a-f]{2}\$" "TRACEPARENT given to the command"
    assert_ne "$tp" "00-$trace-b7ad6b7169203331-01" "TRACEPARENT given to the command (its own span)"
    assert_contains "$(sed -n 2p "$T/out/done.$traced")" "$trace" "stdin of the command"
    assert_metric orderd_orders_processed_total 12 orderd_orders_processed_total
    assert_metric orderd_orders_failed_total 0 orderd_orders_failed_total
    assert_metric orderd_queue_depth 0 orderd_queue_depth
    assert_metric orderd_processing_duration_seconds_count 12 "processing attempts observed"
    stop_orderd
}

test_command_ignoring_stdin() {
    start_orderd "workers.fulfilment_command=/bin/true"
    post_json "{\"customer_id\":\"C-true\",\"items\":[$(printf '{"item":"%0120d","quantity":1},' $(seq 1 99))"'{"item":"last","quantity":1}]}'
    assert_status 202
    local id
    id=$(json_str order_id)
    wait_until 20 "order completed" order_is "$id" completed
    stop_orderd
}

test_retry_then_success() {
    local cmd
    cmd=$(script flaky.sh '
n=$(cat "$1/count.$ORDER_ID" 2>/dev/null || echo 0)
n=$((n + 1))
echo "$n" >"$1/count.$ORDER_ID"
cat >/dev/null
if [ "$n" -lt 2 ]; then echo "transient failure number $n" >&2; exit 1; fi
exit 0')
    start_orderd "${FAST_RETRY[@]}" "workers.fulfilment_command=$cmd $T"
    post_order C-flaky
    local id=$ORDER_ID
    wait_until 20 "order completed after a retry" order_is "$id" completed
    http GET "/orders/$id"
    assert_eq "$(json_raw attempts)" 2 "attempts after one failure"
    assert_eq "$(cat "$T/count.$id")" 2 "runs of the command"
    assert_metric orderd_orders_failed_total 1 orderd_orders_failed_total
    assert_metric orderd_orders_processed_total 1 orderd_orders_processed_total
    assert_metric orderd_orders_dead_lettered_total 0 orderd_orders_dead_lettered_total
    stop_orderd
}

# log_line_with TEXT... — the first line of the daemon's log that holds every TEXT.
log_line_with() {
    local line part ok
    while IFS= read -r line; do
        ok=1
        for part in "$@"; do
            [[ $line == *"$part"* ]] || ok=0
        done
        ((ok)) && { printf '%s\n' "$line"; return 0; }
    done <"$D_LOG"
    return 0
}

# assert_logged WHAT TEXT... — the daemon logged one line holding every TEXT.
assert_logged() {
    local what=$1
    shift
    [[ -n $(log_line_with "$@") ]] || fail "$what: no line of the log holds: $*"
}

# dlq_ids [QUERY] — every order_id of GET /admin/dlq, following next_cursor.
dlq_ids() {
    local query=${1:-} cursor="" pages=0 out=$T/dlq.$BASHPID
    while :; do
        local q=$query
        [[ -n $cursor ]] && q="${q:+$q&}cursor=$cursor"
        req "$out" GET "/admin/dlq${q:+?$q}"
        [[ $(<"$out.status") == 200 ]] || fail "GET /admin/dlq?$q answered $(<"$out.status"): $(<"$out.body")"
        json_all order_id "$out.body"
        cursor=$(json_str next_cursor "$out.body")
        [[ -n $cursor ]] || break
        ((++pages < 100)) || fail "GET /admin/dlq: more than 100 pages"
    done
}

test_failures_dead_letter_redrive_delete() {
    local cmd
    cmd=$(script fail.sh '
cat >/dev/null
if [ -e "$1/flag" ]; then exit 0; fi
echo "card declined for $ORDER_ID" >&2
exit 3')
    start_orderd "${FAST_RETRY[@]}" "workers.fulfilment_command=$cmd $T"
    local a b c
    post_order C-fail-a
    a=$ORDER_ID
    post_order C-fail-b
    b=$ORDER_ID
    post_order C-fail-c
    c=$ORDER_ID
    wait_until 30 "3 orders dead-lettered" all_orders_are dead_lettered "$a" "$b" "$c"
    local id
    for id in "$a" "$b" "$c"; do
        http GET "/orders/$id"
        assert_eq "$(json_raw attempts)" 3 "attempts of dead-lettered $id"
        assert_contains "$(json_str last_error)" "card declined for $id" "last_error of $id"
        assert_contains "$(json_str last_error)" 3 "last_error of $id (exit status)"
    done
    assert_metric orderd_orders_failed_total 9 orderd_orders_failed_total
    assert_metric orderd_orders_dead_lettered_total 3 orderd_orders_dead_lettered_total
    assert_metric orderd_orders_processed_total 0 orderd_orders_processed_total
    assert_metric orderd_dlq_depth 3 orderd_dlq_depth
    assert_metric orderd_queue_depth 0 orderd_queue_depth

    # the dead-letter list
    http GET /admin/dlq
    assert_status 200
    assert_eq "$(json_all order_id | sort | tr '\n' ' ')" "$(printf '%s\n' "$a" "$b" "$c" | sort | tr '\n' ' ')" "GET /admin/dlq"
    assert_contains "$BODY" "card declined for $a" "last_error in /admin/dlq"
    assert_eq "$({ grep -o '"attempts":[0-9]*' "$T/last.body" || true; } | sort -u)" '"attempts":3' "attempts in /admin/dlq"
    local f
    for f in customer_id items created_at dead_lettered_at trace_id; do
        assert_contains "$BODY" "\"$f\":" "members of a dead letter"
    done
    local q
    for q in limit=0 limit=501 limit=x cursor=!!! cursor=AAAA; do
        http GET "/admin/dlq?$q"
        [[ $STATUS == 400 ]] || fail "GET /admin/dlq?$q: status $STATUS, want 400"
        assert_contains "$(error_fields)" "${q%%=*}" "errors of GET /admin/dlq?$q"
    done
    for q in not-an-id 01arz3ndektsv4rrffq69g5fav; do
        http POST "/admin/dlq/$q/redrive"
        [[ $STATUS == 404 ]] || fail "POST /admin/dlq/$q/redrive: status $STATUS, want 404"
        http DELETE "/admin/dlq/$q"
        [[ $STATUS == 404 ]] || fail "DELETE /admin/dlq/$q: status $STATUS, want 404"
    done
    http PUT /admin/dlq
    assert_status 405
    assert_contains "$(header Allow)" GET "Allow of /admin/dlq"
    http GET /admin/dlq/redrive
    assert_status 405
    assert_contains "$(header Allow)" POST "Allow of /admin/dlq/redrive"
    dlq_ids limit=1 >"$T/paged"
    assert_eq "$(sort "$T/paged" | tr '\n' ' ')" "$(printf '%s\n' "$a" "$b" "$c" | sort | tr '\n' ' ')" "GET /admin/dlq paged by 1"
    # a page that ends at the last dead letter has no next_cursor
    http GET "/admin/dlq?limit=3"
    assert_eq "$(json_all order_id | wc -l)" 3 "dead letters on a page of limit=3"
    assert_eq "$(json_raw next_cursor)" null "next_cursor of /admin/dlq?limit=3 with 3 dead letters"
    http GET "/admin/dlq?limit=2"
    local cursor
    cursor=$(json_str next_cursor)
    assert_ne "$cursor" "" "next_cursor of /admin/dlq?limit=2 with 3 dead letters"
    http GET "/admin/dlq?limit=2&cursor=$cursor"
    assert_eq "$(json_all order_id | wc -l)" 1 "dead letters on the last page"
    assert_eq "$(json_raw next_cursor)" null "next_cursor of the last page of /admin/dlq"

    # redrive one, now that the command succeeds
    touch "$T/flag"
    http POST "/admin/dlq/$a/redrive"
    assert_status 200
    assert_eq "$(json_str order_id)" "$a" "order_id of a redrive"
    assert_eq "$(json_str status)" queued "status of a redrive"
    wait_until 20 "redriven order completed" order_is "$a" completed
    assert_logged "redrive of $a" "INFO admin: dead letter redriven by key=(auth off) client=127.0.0.1 " \
        "order_id=$a"
    # the run that ended in the dead-letter queue stays readable
    http GET "/orders/$a"
    assert_eq "$(json_raw attempts)" 1 "attempts of the run after the redrive"
    assert_eq "$(json_raw last_error)" null "last_error of the run after the redrive"
    assert_eq "$(json_raw redrives)" 1 "redrives"
    assert_match "$(json_str redriven_at)" '^[0-9]{4}-[0-9]{2}-[0-9]{2}T' "redriven_at"
    assert_eq "$(json_raw previous_attempts)" 3 "previous_attempts"
    assert_contains "$(json_str previous_error)" "card declined for $a" "previous_error"
    assert_eq "$(json_raw discarded_at)" null "discarded_at of a redriven order"
    assert_eq "$(dlq_ids | sort | tr '\n' ' ')" "$(printf '%s\n' "$b" "$c" | sort | tr '\n' ' ')" "dead letters after one redrive"
    http POST "/admin/dlq/$a/redrive"
    assert_status 404
    http POST /admin/dlq/01ARZ3NDEKTSV4RRFFQ69G5FAV/redrive
    assert_status 404

    # delete one
    http DELETE "/admin/dlq/$c"
    assert_status 204
    assert_eq "$BODY" "" "body of a 204"
    http DELETE "/admin/dlq/$c"
    assert_status 404
    assert_metric orderd_dlq_depth 1 "orderd_dlq_depth after a delete"
    assert_logged "delete of $c" "INFO admin: dead letter deleted (order discarded) by key=(auth off) client=127.0.0.1 " \
        "order_id=$c"
    # no longer a dead letter, and the order says so
    http GET "/orders/$c"
    assert_eq "$(json_str status)" discarded "status after DELETE /admin/dlq/{id}"
    assert_match "$(json_str discarded_at)" '^[0-9]{4}-[0-9]{2}-[0-9]{2}T' "discarded_at"
    assert_eq "$(json_raw attempts)" 3 "attempts of a discarded order"
    assert_contains "$(json_str last_error)" "card declined for $c" "last_error of a discarded order"
    http GET "/orders?status=discarded"
    assert_status 200
    assert_eq "$(json_all order_id | tr '\n' ' ')" "$c " "GET /orders?status=discarded"
    http GET "/orders?status=dead_lettered"
    assert_eq "$(json_all order_id | tr '\n' ' ')" "$b " "GET /orders?status=dead_lettered"

    # redrive the rest
    http POST /admin/dlq/redrive
    assert_status 200
    assert_eq "$(json_raw redriven)" 1 "redriven"
    wait_until 20 "order completed after redrive all" order_is "$b" completed
    assert_logged "redrive all" "INFO admin: all dead letters redriven: 1 by key=(auth off) client=127.0.0.1"
    assert_eq "$(dlq_ids | wc -l)" 0 "dead letters after redrive all"
    assert_metric orderd_dlq_depth 0 "orderd_dlq_depth at the end"
    assert_metric orderd_orders_processed_total 2 "orderd_orders_processed_total at the end"
    http POST /admin/dlq/redrive
    assert_status 200
    assert_eq "$(json_raw redriven)" 0 "redriven of an empty DLQ"
    stop_orderd
}

# With API keys the audit lines name the key (never the secret) and the client.
test_admin_actions_logged_with_the_key_name() {
    local cmd
    cmd=$(script fail.sh '
cat >/dev/null
echo "out of stock for $ORDER_ID" >&2
exit 4')
    local admin_secret=adm-secret-$RANDOM$RANDOM writer_secret=wr-secret-$RANDOM$RANDOM
    {
        echo "writer orders:write,orders:read $(printf '%s' "$writer_secret" | "$TEST_ORDERD_BIN" hash-key)"
        echo "ops-admin admin $(printf '%s' "$admin_secret" | "$TEST_ORDERD_BIN" hash-key)"
    } >"$T/keys"
    chmod 600 "$T/keys"
    start_orderd queue.max_receives=1 "auth.keys_file=$T/keys" "workers.fulfilment_command=$cmd"
    local writer=(-H "Authorization: Bearer $writer_secret") admin=(-H "Authorization: Bearer $admin_secret")
    local ids=() i
    for i in 1 2 3; do
        post_order "C-audit-$i" "${writer[@]}"
        ids+=("$ORDER_ID")
    done
    wait_until 30 "3 dead letters" eval '[[ $(dlq_ids_as_admin | wc -l) == 3 ]]'

    http POST "/admin/dlq/${ids[0]}/redrive" "${admin[@]}"
    assert_status 200
    assert_logged "redrive" "INFO admin: dead letter redriven by key=ops-admin client=127.0.0.1 " \
        "order_id=${ids[0]}"
    http DELETE "/admin/dlq/${ids[1]}" "${admin[@]}"
    assert_status 204
    assert_logged "delete" "INFO admin: dead letter deleted (order discarded) by key=ops-admin client=127.0.0.1 " \
        "order_id=${ids[1]}"
    http GET "/orders/${ids[1]}" "${writer[@]}"
    assert_eq "$(json_str status)" discarded "status of a deleted dead letter"
    # a refused action changes nothing and is not an action
    http POST /admin/dlq/redrive "${writer[@]}"
    assert_status 403
    wait_until 30 "the redriven order dead-lettered again" eval '[[ $(dlq_ids_as_admin | wc -l) == 2 ]]'
    http POST /admin/dlq/redrive "${admin[@]}"
    assert_status 200
    assert_eq "$(json_raw redriven)" 2 "redriven"
    assert_logged "redrive all" "INFO admin: all dead letters redriven: 2 by key=ops-admin client=127.0.0.1"
    assert_eq "$(grep -c 'INFO admin: ' "$D_LOG")" 3 "admin lines in the log"
    assert_not_contains "$(cat "$D_LOG")" "$admin_secret" "the log (the admin key's secret)"
    stop_orderd
}

# dlq_ids_as_admin — dlq_ids with the admin key of the case above.
dlq_ids_as_admin() {
    local out=$T/dlqa.$BASHPID
    req "$out" GET "/admin/dlq?limit=500" -H "Authorization: Bearer $admin_secret"
    json_all order_id "$out.body"
}

test_timeout_kills_process_group() {
    local marker="orderd-hang-$$-$RANDOM$RANDOM"
    ln -s "$(command -v sleep)" "$T/$marker-sleep"
    local cmd
    # a shell that starts a helper in the background and one in the foreground
    cmd=$(script "$marker.sh" "
\"$T/$marker-sleep\" 60 &
\"$T/$marker-sleep\" 61
wait")
    start_orderd queue.max_receives=2 queue.backoff_base=100ms queue.backoff_max=100ms \
        workers.fulfilment_timeout=500ms "workers.fulfilment_command=$cmd"
    post_order C-hang
    local id=$ORDER_ID
    wait_until 10 "the command started" pgrep -f "$marker-sleep" >/dev/null
    wait_until 20 "order dead-lettered after two timeouts" order_is "$id" dead_lettered
    http GET "/orders/$id"
    assert_eq "$(json_raw attempts)" 2 "attempts after two timeouts"
    assert_match "$(json_str last_error)" '[Tt]ime(d)? ?out' "last_error after a timeout"
    # nothing of the command's process group is left
    local left=""
    local deadline=$((SECONDS + 3))
    while left=$(pgrep -f "$marker" || true) && [[ -n $left ]] && ((SECONDS < deadline)); do
        sleep 0.1
    done
    if [[ -n $left ]]; then
        pkill_marker "$marker"
        fail "processes of a timed-out command are left: $(tr '\n' ' ' <<<"$left")"
    fi
    assert_metric orderd_orders_failed_total 2 orderd_orders_failed_total
    assert_metric orderd_orders_dead_lettered_total 1 orderd_orders_dead_lettered_total
    stop_orderd
}

test_slow_command_keeps_its_lease() {
    # the command outlives the 1 s lease more than twice over: its lease is
    # renewed while it runs, so no second worker gets the message, and the
    # order is done once. (A verdict under a receipt that is no longer current
    # is dropped: tests/unit/test_store.c's stale-receipt cases.)
    local cmd
    cmd=$(script slow.sh '
cat >/dev/null
echo "$ORDER_ID start" >>"$1/runs"
sleep 2.5
echo "$ORDER_ID end" >>"$1/runs"')
    start_orderd workers.count=2 queue.visibility_timeout=1s workers.fulfilment_timeout=10s \
        "workers.fulfilment_command=$cmd $T"
    post_order C-lease
    local id=$ORDER_ID
    wait_until 30 "order completed" order_is "$id" completed
    sleep 1.5 # a second delivery, if the lease had run out, would start by now
    assert_eq "$(grep -c " start$" "$T/runs")" 1 "runs of the command"
    http GET "/orders/$id"
    assert_eq "$(json_raw attempts)" 1 "attempts"
    assert_metric orderd_orders_processed_total 1 orderd_orders_processed_total
    assert_metric orderd_queue_depth 0 orderd_queue_depth
    ! grep -q "lease" "$D_LOG" || fail "a log line about a lease: $(grep -m 1 lease "$D_LOG")"
    stop_orderd
}

test_noisy_failing_command() {
    local cmd
    cmd=$(script noisy.sh '
cat >/dev/null
echo "FIRST-LINE of a long complaint" >&2
head -c 200000 /dev/zero | tr "\0" x >&2
head -c 200000 /dev/zero | tr "\0" y
exit 5')
    start_orderd queue.max_receives=1 "workers.fulfilment_command=$cmd"
    post_order C-noisy
    local id=$ORDER_ID
    wait_until 20 "order dead-lettered" order_is "$id" dead_lettered
    http GET "/orders/$id"
    local err
    err=$(json_str last_error)
    assert_contains "$err" "FIRST-LINE of a long complaint" "last_error of a noisy command"
    ((${#err} <= 8192)) || fail "last_error keeps ${#err} characters of stderr; it should be bounded"
    stop_orderd
}

test_background_child_does_not_fail_the_order() {
    # SPEC: exit 0 = success. A command that exits 0 at once but leaves a
    # helper behind (which inherits its stderr) has still succeeded.
    local marker="orderd-bg-$$-$RANDOM$RANDOM"
    ln -s "$(command -v sleep)" "$T/$marker-sleep"
    local cmd
    cmd=$(script bg.sh "
cat >/dev/null
\"$T/$marker-sleep\" 30 &
exit 0")
    on_exit "pkill_marker '$marker'"
    start_orderd queue.max_receives=1 workers.fulfilment_timeout=3s "workers.fulfilment_command=$cmd"
    post_order C-bg
    local id=$ORDER_ID
    wait_until 20 "order settled" eval '[[ ! $(order_status "$id") =~ ^(queued|processing)$ ]]'
    http GET "/orders/$id"
    [[ $(json_str status) == completed ]] ||
        fail "a command that exited 0 at once (its background child keeps stderr open) ended as $(json_str status): $(json_str last_error)"
    stop_orderd
}

test_missing_command() {
    start_orderd "${FAST_RETRY[@]}" "workers.fulfilment_command=$T/no-such-command"
    post_order C-missing
    local id=$ORDER_ID
    wait_until 20 "order dead-lettered" order_is "$id" dead_lettered
    http GET "/orders/$id"
    assert_contains "$(json_str last_error)" no-such-command "last_error of a missing command"
    stop_orderd
}

run_tests
