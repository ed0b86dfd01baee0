#!/usr/bin/env bash
# test_threaded_drain.sh — SIGTERM drains (SPEC "Config file"): new work gets
# 503 with Retry-After, /readyz says 503, requests in flight are answered,
# the listener stays open for [server] drain_grace even with nothing in
# flight, the daemon exits 0 and every 202 it sent is in the database. Runs
# under ThreadSanitizer too (TEST_FILTER=threaded).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

# A request that started this long before SIGTERM has been read by the daemon
# (curl needs a few ms to start, more on a loaded machine): it must get an
# HTTP answer. A later one may find the listen socket closed (curl 7) or be
# reset in the daemon's accept backlog when it stops (curl 52, 56).
IN_FLIGHT_MARGIN=0.5

readyz_is() {
    [[ $(curl -sS --max-time 5 -o /dev/null -w '%{http_code}' "$BASE_URL/readyz") == "$1" ]]
}

test_drain_answers_in_flight_and_refuses_new_work() {
    start_orderd
    local conf=$D_CONF
    # a POST whose body arrives slowly (chunked from a pipe): in flight during the drain
    local body head tail
    body=$(order_body C-slow)
    head=${body:0:20}
    tail=${body:20}
    {
        printf '%s' "$head"
        sleep 4
        printf '%s' "$tail"
    } | curl -sS --max-time 30 -X POST -T - -H 'Content-Type: application/json' -H 'Expect:' \
        -D "$T/slow.headers" -o "$T/slow.body" -w '%{http_code}' "$BASE_URL/orders" \
        >"$T/slow.status" 2>"$T/slow.err" &
    local slow=$!
    sleep 1
    kill -TERM "$D_PID"
    # the daemon now drains, the slow request keeps it from finishing
    wait_until 5 "/readyz 503 while draining" readyz_is 503
    http GET /readyz
    assert_status 503
    assert_match "$(header Retry-After)" '^[0-9]+$' "Retry-After of /readyz while draining"
    post_json "$(order_body C-late)"
    assert_status 503
    assert_match "$(header Retry-After)" '^[0-9]+$' "Retry-After of a POST while draining"
    assert_eq "$(header Content-Type)" application/problem+json "content type of the 503"
    http GET /healthz
    assert_status 200
    [[ ! -e $D_CTL/rc ]] || fail "orderd exited while a request was in flight"

    wait "$slow" || true
    assert_eq "$(cat "$T/slow.status")" 202 "status of the POST in flight at SIGTERM ($(cat "$T/slow.body" "$T/slow.err"))"
    local id
    id=$(json_str order_id "$T/slow.body")
    expect_clean_exit
    # the order of the in-flight POST survived the shutdown
    start_orderd_conf "$conf"
    http GET "/orders/$id"
    assert_status 200
    http GET /readyz
    assert_status 200
    stop_orderd
}

# With nothing in flight, SIGTERM keeps the listener open for drain_grace:
# a load balancer's POST and health check get 503 + Retry-After, not a
# refused connection; the daemon then exits 0 by itself.
test_drain_grace_answers_503_with_nothing_in_flight() {
    # 10 s (the most drain_grace takes): room for a sanitizer build on busy cores
    start_orderd server.drain_grace=10s
    http GET /readyz
    assert_status 200
    local t0=$SECONDS
    kill -TERM "$D_PID"
    wait_until 8 "/readyz 503 after SIGTERM" readyz_is 503
    http GET /readyz
    assert_status 503
    assert_match "$(header Retry-After)" '^[0-9]+$' "Retry-After of /readyz during the grace"
    post_json "$(order_body C-grace)"
    assert_status 503
    assert_match "$(header Retry-After)" '^[0-9]+$' "Retry-After of a POST during the grace"
    assert_eq "$(header Content-Type)" application/problem+json "content type of the 503"
    http GET /healthz
    assert_status 200
    [[ ! -e $D_CTL/rc ]] || fail "orderd exited during drain_grace"
    expect_clean_exit
    local log
    log=$(<"$D_LOG")
    assert_contains "$log" "for at least 10.0 s (drain_grace)" "the drain's first line"
    assert_contains "$log" "drain: no request in flight; workers finish their current message" \
        "the drain's second line"
    assert_contains "$log" "drain: closing the listener" "the drain's last line"
    ((SECONDS - t0 >= 9)) || fail "the listener closed $((SECONDS - t0)) s after SIGTERM, before drain_grace"
}

# A second SIGTERM cuts drain_grace short.
test_second_signal_ends_the_grace() {
    start_orderd server.drain_grace=10s
    kill -TERM "$D_PID"
    wait_until 8 "/readyz 503 after SIGTERM" readyz_is 503
    local t0=$SECONDS
    kill -INT "$D_PID"
    local rc
    rc=$(wait_exit "$D_CTL" 30)
    assert_eq "$rc" 0 "exit status after a second signal"
    ((SECONDS - t0 < 8)) || fail "a second signal still waited $((SECONDS - t0)) s"
    sanitizer_report
    assert_contains "$(<"$D_LOG")" "SIGINT again: not waiting for the rest of drain_grace" "the log"
}

test_drain_under_load() {
    start_orderd workers.count=2
    local conf=$D_CONF c pids=()
    for ((c = 0; c < 8; c++)); do
        load_client "$T/client.$c" 100000 "$T/stop" "DRAIN-$c" &
        pids+=($!)
    done
    sleep 1.5
    echo "$EPOCHREALTIME" >"$T/sigterm_at"
    kill -TERM "$D_PID"
    local rc
    rc=$(wait_exit "$D_CTL" 30)
    touch "$T/stop"
    local pid
    for pid in "${pids[@]}"; do
        wait "$pid"
    done
    sanitizer_report
    assert_eq "$rc" 0 "exit status of a drain under load"

    cat "$T"/client.* >"$T/all"
    local t
    t=$(<"$T/sigterm_at")
    # start status curl_rc id
    local dropped unexpected accepted refused late_fail
    dropped=$(awk -v t="$t" -v m="$IN_FLIGHT_MARGIN" '$1 < t - m && $2 != 202 && $2 != 503 && $3 != 7' "$T/all")
    unexpected=$(awk '$2 != 202 && $2 != 503 && $2 != "000"' "$T/all")
    accepted=$(awk '$2 == 202' "$T/all" | wc -l)
    refused=$(awk '$2 == 503' "$T/all" | wc -l)
    late_fail=$(awk '$2 == "000" { n[$3]++ } END { for (rc in n) printf " curl%s:%d", rc, n[rc] }' "$T/all")
    note "drain_under_load: $accepted accepted, $refused answered 503, without answer:${late_fail:- none}"
    [[ -z $dropped ]] || fail "requests in flight at SIGTERM got no answer (start status curl_rc id): $(head -n 3 <<<"$dropped" | tr '\n' ';') sigterm at $t"
    [[ -z $unexpected ]] || fail "unexpected answers during the drain: $(head -n 3 <<<"$unexpected" | tr '\n' ';')"
    ((accepted > 0)) || fail "no POST was accepted before SIGTERM"

    # every 202 is stored, and nothing else
    awk '$2 == 202 {print $4}' "$T/all" | sort >"$T/acked"
    db_query "$D_DB" "select order_id from orders where customer_id like 'DRAIN-%' order by order_id" >"$T/stored"
    local missing extra
    missing=$(comm -23 "$T/acked" "$T/stored")
    extra=$(comm -13 "$T/acked" "$T/stored")
    [[ -z $missing ]] || fail "$(wc -l <<<"$missing") acknowledged orders not in the database after the drain: $(head -n 3 <<<"$missing" | tr '\n' ' ')"
    [[ -z $extra ]] || fail "$(wc -l <<<"$extra") orders stored whose 202 never reached the client: $(head -n 3 <<<"$extra" | tr '\n' ' ')"

    # and readable after a restart
    start_orderd_conf "$conf"
    missing=$(get_all_ids "$T/acked")
    [[ -z $missing ]] || fail "acknowledged orders not readable after restart: $(head -n 3 <<<"$missing")"
    stop_orderd
}

run_tests
