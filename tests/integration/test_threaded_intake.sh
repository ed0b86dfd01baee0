#!/usr/bin/env bash
# test_threaded_intake.sh — many clients at once: concurrent POSTs with
# readers alongside, and the Idempotency-Key race (one order, never two).
# Runs under ThreadSanitizer too (TEST_FILTER=threaded).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

shared_orderd workers.count=4

CLIENTS=8
PER_CLIENT=25

# reader_loop STOPFILE OUT — GETs lists, one order and /metrics until STOPFILE exists.
reader_loop() {
    local stop=$1 out=$2 code
    while [[ ! -e $stop ]]; do
        for path in "/orders?limit=20" /metrics /readyz; do
            code=$(curl -sS --max-time "$HTTP_TIMEOUT" -o /dev/null -w '%{http_code}' "$BASE_URL$path" 2>/dev/null) || code=000
            echo "$path $code" >>"$out"
        done
    done
}

test_concurrent_posts() {
    local run=$RANDOM$RANDOM before c
    before=$(metric orderd_orders_received_total)
    reader_loop "$T/stop" "$T/reads" &
    local reader=$!
    local pids=()
    for ((c = 0; c < CLIENTS; c++)); do
        load_client "$T/client.$c" "$PER_CLIENT" "$T/never" "CONC-$run-$c" &
        pids+=($!)
    done
    local pid
    for pid in "${pids[@]}"; do
        wait "$pid"
    done
    touch "$T/stop"
    wait "$reader"

    cat "$T"/client.* >"$T/all"
    local total=$((CLIENTS * PER_CLIENT))
    assert_eq "$(wc -l <"$T/all")" "$total" "requests made"
    local bad
    bad=$(awk '$2 != 202' "$T/all" | head -n 3)
    [[ -z $bad ]] || fail "POSTs not answered 202 (start status curl_rc id): $bad"
    awk '{print $4}' "$T/all" | sort >"$T/ids"
    assert_eq "$(uniq -d "$T/ids" | wc -l)" 0 "order ids handed out twice"
    bad=$(awk '$2 != 200' "$T/reads" | head -n 3)
    [[ -z $bad ]] || fail "reads during the load not answered 200: $bad"
    note "concurrent_posts: $total orders from $CLIENTS clients, $(wc -l <"$T/reads") reads alongside"

    for ((c = 0; c < CLIENTS; c++)); do
        awk '{print $4}' "$T/client.$c" | sort >"$T/want.$c"
        list_ids "customer_id=CONC-$run-$c&limit=7" >"$T/listed.$c"
        assert_eq "$(sort -r "$T/listed.$c" | tr '\n' ' ')" "$(tr '\n' ' ' <"$T/listed.$c")" "list of client $c newest first"
        sort "$T/listed.$c" | cmp -s - "$T/want.$c" || fail "list of client $c: $(wc -l <"$T/listed.$c") orders, want its $PER_CLIENT"
    done
    assert_metric orderd_orders_received_total $((before + total)) orderd_orders_received_total
    wait_until 60 "queue drained by the workers" metric_is orderd_queue_depth 0
    local missing
    missing=$(get_all_ids "$T/ids")
    [[ -z $missing ]] || fail "accepted orders not readable: $(head -n 3 <<<"$missing")"
    assert_eq "$(db_query "$SHARED_DB" "select count(*) from orders where customer_id like 'CONC-$run-%' and status = 'completed'")" \
        "$total" "completed orders of this run"
}

# One round of the race: N identical requests with one key at once.
idempotency_race() {
    local n=$1 key="race-$RANDOM$RANDOM-$2" i
    local body
    body=$(order_body "RACE-$key")
    for ((i = 0; i < n; i++)); do
        req "$T/r.$2.$i" POST /orders "${JSON_CT[@]}" -H "Idempotency-Key: $key" --data-binary "$body" &
    done
    wait
    local first=0 replays=0 conflicts=0 ids=""
    for ((i = 0; i < n; i++)); do
        local f=$T/r.$2.$i status
        status=$(<"$f.status")
        case $status in
            202)
                if [[ $(header Idempotent-Replayed "$f.headers") == true ]]; then
                    replays=$((replays + 1))
                else
                    first=$((first + 1))
                fi
                ids+="$(json_str order_id "$f.body")"$'\n'
                ;;
            409) conflicts=$((conflicts + 1)) ;;
            *) fail "racing request $i with key $key: status $status ($(cat "$f.body"))" ;;
        esac
    done
    assert_eq "$first" 1 "first (not replayed) 202s for one key"
    assert_eq "$(sort -u <<<"${ids%$'\n'}" | wc -l)" 1 "distinct order ids for one key"
    assert_eq "$(db_query "$SHARED_DB" "select count(*) from orders where customer_id = 'RACE-$key'")" 1 \
        "orders stored for one key"
    echo "$replays $conflicts" >>"$T/race"
}

test_idempotency_race() {
    local round
    for round in 1 2 3 4 5; do
        idempotency_race 16 "$round"
    done
    note "idempotency_race: replays and 409s per round: $(tr '\n' ',' <"$T/race")"
}

test_zz_clean_exit() {
    stop_shared
}

run_tests
