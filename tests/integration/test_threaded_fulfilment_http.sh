#!/usr/bin/env bash
# test_threaded_fulfilment_http.sh — HTTP fulfilment (`[workers] fulfilment_url`)
# against a real receiver on 127.0.0.1 (fulfil_receiver.py: its answer is
# chosen by the order's customer_id, and it logs every request it gets):
# the headers and the signed body, the result kept with the order, every
# class of answer (2xx, 4xx, 408/429/5xx with Retry-After, timeouts,
# connection refused, a redirect), TLS with a throw-away CA, keep-alive,
# many in flight, a fulfilment slower than visibility_timeout that still runs
# once, and kill -9 in the middle of deliveries. Many requests run at once
# on each worker thread, so this file also runs under ThreadSanitizer.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

RECEIVER=$LIB_DIR/fulfil_receiver.py
FAST_RETRY=(queue.max_receives=3 queue.backoff_base=50ms queue.backoff_max=5s)
SECRET_A=whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw
SECRET_B=whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD

# start_receiver [args...] — starts fulfil_receiver.py in $T; sets R_PORT, R_LOG.
start_receiver() {
    R_LOG=$T/receiver.log
    : >"$R_LOG"
    python3 "$RECEIVER" "$T/receiver.port" "$R_LOG" "$@" 2>"$T/receiver.err" &
    local pid=$!
    on_exit "kill $pid 2>/dev/null || true"
    wait_until 30 "the receiver listens" test -s "$T/receiver.port"
    R_PORT=$(<"$T/receiver.port")
}

# received ORDER_ID — how many requests for the order the receiver got.
received() {
    grep -c "\"order_id\": \"$1\"" "$R_LOG" || true
}

# request_of ORDER_ID — the receiver's log line of the order's first request.
request_of() {
    grep -m 1 "\"order_id\": \"$1\"" "$R_LOG"
}

# most_in_flight — the most requests the receiver was answering at once.
most_in_flight() {
    python3 -c '
import json, sys
print(max(json.loads(l)["in_flight"] for l in open(sys.argv[1])))' "$R_LOG"
}

all_orders_are() { # STATUS ID...
    local want=$1 id
    shift
    for id in "$@"; do
        [[ $(order_status "$id") == "$want" ]] || return 1
    done
}

test_success_headers_signature_and_result() {
    printf '# the current secret, then the next one\n%s\n%s\n' "$SECRET_A" "$SECRET_B" >"$T/secrets"
    printf '%s\n' "$SECRET_B" >"$T/receiver-secrets"
    start_receiver --secrets "$T/receiver-secrets"
    start_orderd "workers.fulfilment_url=http://127.0.0.1:$R_PORT/fulfil" \
        "workers.fulfilment_secret_file=$T/secrets"
    local trace=0af7651916cd43dd8448eb211c80319c
    post_order ok-1 -H "traceparent: 00-$trace-b7ad6b7169203331-01"
    local id=$ORDER_ID
    wait_until 60 "the order is completed" order_is "$id" completed
    assert_eq "$(received "$id")" 1 "requests for the order"
    local line
    line=$(request_of "$id")
    assert_contains "$line" '"path": "/fulfil"' "path"
    assert_contains "$line" '"content-type": "application/json"' "Content-Type"
    assert_contains "$line" "\"idempotency-key\": \"$id\"" "Idempotency-Key"
    assert_contains "$line" "\"webhook-id\": \"$id\"" "webhook-id"
    assert_match "$line" '"webhook-timestamp": "[0-9]{10}"' "webhook-timestamp"
    assert_match "$line" '"webhook-signature": "v1,[^ "]+ v1,[^ "]+"' "two signatures"
    assert_contains "$line" '"verified": true' "the signature verifies with the second secret"
    assert_match "$line" "\"traceparent\": \"00-$trace-[0-9a-f]{16}-01\"" "a child of the order's trace"
    assert_not_contains "$line" "b7ad6b7169203331" "the span is a new one"
    assert_match "$line" '"user-agent": "orderd/[0-9]' "User-Agent"
    assert_contains "$line" "\\\"customer_id\\\":\\\"ok-1\\\"" "the body is the order"
    http GET "/orders/$id"
    assert_contains "$BODY" "\"fulfilment_result\":{\"shipment_id\":\"S-$id\"}" "the receiver's answer kept"
    assert_eq "$(json_raw attempts)" 1 "attempts"
    stop_orderd
}

# A rotation: the receiver knows only the new secret; SIGHUP makes orderd sign
# with the file as it is now, old and new secret together.
test_sighup_rereads_the_secrets() {
    printf '%s\n' "$SECRET_A" >"$T/secrets"
    printf '%s\n' "$SECRET_B" >"$T/receiver-secrets"
    start_receiver --secrets "$T/receiver-secrets"
    start_orderd "workers.fulfilment_url=http://127.0.0.1:$R_PORT/" \
        "workers.fulfilment_secret_file=$T/secrets"
    post_order ok-before
    local before=$ORDER_ID
    wait_until 60 "completed" order_is "$before" completed
    assert_contains "$(request_of "$before")" '"verified": false' "signed with the old secret only"
    printf '%s\n%s\n' "$SECRET_A" "$SECRET_B" >"$T/secrets"
    kill -HUP "$D_PID"
    wait_until 30 "the reload" grep -q "signing fulfilment requests with the 2 secrets" "$D_LOG"
    post_order ok-after
    wait_until 60 "completed" order_is "$ORDER_ID" completed
    assert_contains "$(request_of "$ORDER_ID")" '"verified": true' "signed with the new secret too"
    # a broken file is refused whole: the two secrets stay in use
    printf 'not a secret\n' >"$T/secrets"
    kill -HUP "$D_PID"
    wait_until 30 "the refused reload" grep -q "keeping the secrets in use" "$D_LOG"
    post_order ok-kept
    wait_until 60 "completed" order_is "$ORDER_ID" completed
    assert_contains "$(request_of "$ORDER_ID")" '"verified": true' "the secrets kept"
    stop_orderd
}

test_non_json_answer_completes_without_result() {
    start_receiver
    start_orderd "workers.fulfilment_url=http://127.0.0.1:$R_PORT/"
    post_order text-1
    wait_until 60 "completed" order_is "$ORDER_ID" completed
    http GET "/orders/$ORDER_ID"
    assert_eq "$(json_raw fulfilment_result)" null "fulfilment_result of a text answer"
    stop_orderd
}

test_4xx_dead_letters_at_once() {
    start_receiver
    start_orderd "workers.fulfilment_url=http://127.0.0.1:$R_PORT/" "${FAST_RETRY[@]}"
    post_order reject-1
    local id=$ORDER_ID
    wait_until 60 "dead-lettered" order_is "$id" dead_lettered
    http GET "/orders/$id"
    assert_eq "$(json_raw attempts)" 1 "attempts: a 422 is not retried"
    assert_contains "$(json_str last_error)" "422" "last_error names the status"
    assert_contains "$BODY" "unknown customer" "last_error quotes the body"
    assert_eq "$(received "$id")" 1 "requests"
    stop_orderd
}

test_redirect_is_not_followed() {
    start_receiver
    start_orderd "workers.fulfilment_url=http://127.0.0.1:$R_PORT/" "${FAST_RETRY[@]}"
    post_order redirect-1
    wait_until 60 "dead-lettered" order_is "$ORDER_ID" dead_lettered
    assert_not_contains "$(cat "$R_LOG")" '/elsewhere' "a request to the redirect's target"
    http GET "/orders/$ORDER_ID"
    assert_contains "$(json_str last_error)" "302" "last_error"
    stop_orderd
}

# retry_after_is_honoured CUSTOMER — the first answer says Retry-After: 1;
# the second request comes no sooner, then the order completes.
retry_after_is_honoured() {
    start_receiver
    start_orderd "workers.fulfilment_url=http://127.0.0.1:$R_PORT/" "${FAST_RETRY[@]}"
    post_order "$1"
    local id=$ORDER_ID
    wait_until 60 "completed" order_is "$id" completed
    assert_eq "$(received "$id")" 2 "requests"
    local gap
    gap=$(grep "\"order_id\": \"$id\"" "$R_LOG" | python3 -c '
import json, sys
t = [json.loads(l)["time"] for l in sys.stdin]
print("%.3f" % (t[1] - t[0]))')
    # backoff_base is 50 ms: only Retry-After makes the gap a second
    awk -v g="$gap" 'BEGIN { exit !(g >= 0.95) }' || fail "retried after ${gap}s, before Retry-After: 1"
    http GET "/orders/$id"
    assert_eq "$(json_raw attempts)" 2 "attempts"
    stop_orderd
}

test_503_retry_after() { retry_after_is_honoured retry-1; }
test_429_retry_after() { retry_after_is_honoured limited-1; }

test_5xx_retries_then_dead_letters() {
    start_receiver
    start_orderd "workers.fulfilment_url=http://127.0.0.1:$R_PORT/" "${FAST_RETRY[@]}"
    post_order fail-1
    local id=$ORDER_ID
    wait_until 60 "dead-lettered" order_is "$id" dead_lettered
    assert_eq "$(received "$id")" 3 "requests (max_receives 3)"
    http GET "/orders/$id"
    assert_contains "$(json_str last_error)" "500" "last_error"
    assert_contains "$(json_str last_error)" "boom" "last_error quotes the body"
    stop_orderd
}

test_hanging_receiver_times_out() {
    start_receiver
    start_orderd "workers.fulfilment_url=http://127.0.0.1:$R_PORT/" "${FAST_RETRY[@]}" \
        queue.max_receives=2 workers.fulfilment_timeout=500ms
    post_order hang-1
    local id=$ORDER_ID
    wait_until 60 "dead-lettered" order_is "$id" dead_lettered
    http GET "/orders/$id"
    assert_contains "$(json_str last_error)" "timed out after 500 ms" "last_error"
    assert_eq "$(received "$id")" 2 "requests"
    stop_orderd
}

test_connection_refused_is_retried() {
    # a port nobody listens on: bind one, note it, close it
    local port
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    start_orderd "workers.fulfilment_url=http://127.0.0.1:$port/" "${FAST_RETRY[@]}"
    post_order ok-refused
    wait_until 60 "dead-lettered" order_is "$ORDER_ID" dead_lettered
    http GET "/orders/$ORDER_ID"
    assert_eq "$(json_raw attempts)" 3 "attempts"
    assert_contains "$(json_str last_error)" "connect" "last_error"
    stop_orderd
}

# make_ca DIR — a throw-away CA and a certificate for 127.0.0.1 signed by it.
make_ca() {
    local d=$1
    openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=orderd test CA" \
        -keyout "$d/ca.key" -out "$d/ca.pem" 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" \
        -keyout "$d/srv.key" -out "$d/srv.csr" 2>/dev/null
    printf 'subjectAltName=IP:127.0.0.1\n' >"$d/ext"
    openssl x509 -req -in "$d/srv.csr" -CA "$d/ca.pem" -CAkey "$d/ca.key" -CAcreateserial \
        -days 2 -extfile "$d/ext" -out "$d/srv.pem" 2>/dev/null
}

test_tls_with_private_ca() {
    make_ca "$T"
    start_receiver --cert "$T/srv.pem" --key "$T/srv.key"
    start_orderd "workers.fulfilment_url=https://127.0.0.1:$R_PORT/" \
        "workers.fulfilment_ca_file=$T/ca.pem"
    post_order ok-tls
    wait_until 60 "completed over TLS" order_is "$ORDER_ID" completed
    stop_orderd
}

test_tls_unknown_ca_is_refused() {
    make_ca "$T"
    start_receiver --cert "$T/srv.pem" --key "$T/srv.key"
    start_orderd "workers.fulfilment_url=https://127.0.0.1:$R_PORT/" "${FAST_RETRY[@]}"
    post_order ok-untrusted
    wait_until 60 "dead-lettered" order_is "$ORDER_ID" dead_lettered
    assert_eq "$(received "$ORDER_ID")" 0 "requests that reached the receiver"
    http GET "/orders/$ORDER_ID"
    assert_match "$(json_str last_error)" "[Cc]ertificate|SSL|TLS" "last_error"
    stop_orderd
}

test_keepalive_and_many_in_flight() {
    start_receiver
    start_orderd "workers.fulfilment_url=http://127.0.0.1:$R_PORT/" workers.count=2 \
        workers.fulfilment_concurrency=32
    local ids=() i
    # answers that take 2 s: the orders posted meanwhile are all in flight
    for ((i = 0; i < 40; i++)); do
        post_order "slow2000-$i"
        ids+=("$ORDER_ID")
    done
    wait_until 120 "40 orders completed" all_orders_are completed "${ids[@]}"
    local most ports
    most=$(most_in_flight)
    ((most >= 8)) || fail "at most $most requests were in flight at once"
    ((most <= 32)) || fail "$most requests were in flight at once, over fulfilment_concurrency 32"
    ports=$(python3 -c '
import json, sys
print(len({json.loads(l)["client_port"] for l in open(sys.argv[1])}))' "$R_LOG")
    ((ports <= 32)) || fail "$ports connections for 40 requests: they are not kept alive"
    note "$most requests in flight at once, over $ports connections"
    stop_orderd
}

# More threads than fulfilment_concurrency: the bound holds (only that many
# threads start), and the start says so.
test_concurrency_bounds_more_threads() {
    start_receiver
    start_orderd "workers.fulfilment_url=http://127.0.0.1:$R_PORT/" workers.count=4 \
        workers.fulfilment_concurrency=2
    local ids=() i
    for ((i = 0; i < 8; i++)); do
        post_order "slow500-$i"
        ids+=("$ORDER_ID")
    done
    wait_until 120 "8 orders completed" all_orders_are completed "${ids[@]}"
    local most
    most=$(most_in_flight)
    ((most <= 2)) || fail "$most requests in flight at once, over fulfilment_concurrency 2"
    assert_contains "$(grep WARN "$D_LOG")" "[workers] count: 4 threads" "the warning at start"
    stop_orderd
}

test_slower_than_visibility_timeout_runs_once() {
    start_receiver
    start_orderd "workers.fulfilment_url=http://127.0.0.1:$R_PORT/" \
        queue.visibility_timeout=1s workers.fulfilment_timeout=20s
    post_order slow4000-1
    local id=$ORDER_ID
    wait_until 60 "completed" order_is "$id" completed
    assert_eq "$(received "$id")" 1 "requests: the lease was extended while it ran"
    http GET "/orders/$id"
    assert_eq "$(json_raw attempts)" 1 "attempts"
    stop_orderd
}

test_kill9_mid_delivery_delivers_again_with_the_same_id() {
    printf '%s\n' "$SECRET_A" >"$T/secrets"
    printf '%s\n' "$SECRET_A" >"$T/receiver-secrets"
    start_receiver --secrets "$T/receiver-secrets"
    start_orderd "workers.fulfilment_url=http://127.0.0.1:$R_PORT/" \
        "workers.fulfilment_secret_file=$T/secrets" \
        queue.visibility_timeout=1s workers.fulfilment_timeout=20s
    local ids=() i
    for ((i = 0; i < 6; i++)); do
        post_order "slow3000-$i"
        ids+=("$ORDER_ID")
    done
    wait_until 60 "six requests in flight" test "$(wc -l <"$R_LOG")" -ge 6
    kill -KILL "$D_PID"
    wait_exit >/dev/null
    start_orderd_conf "$D_CONF"
    wait_until 120 "six orders completed" all_orders_are completed "${ids[@]}"
    local id lines
    for id in "${ids[@]}"; do
        lines=$(grep "\"order_id\": \"$id\"" "$R_LOG")
        assert_eq "$(wc -l <<<"$lines")" 2 "requests for $id (once before the kill, once after)"
        assert_eq "$(grep -c "\"webhook-id\": \"$id\"" <<<"$lines")" 2 "the same webhook-id both times"
        assert_eq "$(grep -c "\"idempotency-key\": \"$id\"" <<<"$lines")" 2 \
            "the same Idempotency-Key both times"
        assert_eq "$(grep -c '"verified": true' <<<"$lines")" 2 "signed both times"
        http GET "/orders/$id"
        assert_eq "$(json_raw attempts)" 2 "attempts of $id: the delivery cut by the kill counts"
    done
    assert_metric orderd_orders_processed_total 6 "orders completed once, by the second daemon"
    stop_orderd
}

test_fulfilment_metrics() {
    start_receiver
    start_orderd "workers.fulfilment_url=http://127.0.0.1:$R_PORT/" "${FAST_RETRY[@]}"
    post_order ok-m
    wait_until 60 "completed" order_is "$ORDER_ID" completed
    post_order reject-m
    wait_until 60 "dead-lettered" order_is "$ORDER_ID" dead_lettered
    assert_metric 'orderd_fulfilment_results_total{result="ok"}' 1 "ok results"
    assert_metric 'orderd_fulfilment_results_total{result="rejected"}' 1 "rejected results"
    assert_metric 'orderd_fulfilment_duration_seconds_count{kind="http"}' 2 "durations observed"
    assert_metric 'orderd_fulfilment_in_flight' 0 "in flight at rest"
    stop_orderd
}

run_tests
