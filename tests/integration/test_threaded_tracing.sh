#!/usr/bin/env bash
# test_threaded_tracing.sh — OpenTelemetry spans ([tracing], issue 21) against
# a real OTLP/HTTP receiver on 127.0.0.1 (otlp_receiver.py: it checks every
# export against OTLP's JSON shape and records the spans): one order from its
# POST to its completion makes SERVER "POST /orders", INTERNAL orderd.enqueue,
# CONSUMER orderd.process and the fulfilment's CLIENT "POST" (or INTERNAL
# orderd.fulfilment_command) in one trace, parented as docs/observability.md
# says, and the fulfilment service sees the CLIENT span in its traceparent;
# failures and dead letters are errors; an incoming traceparent is honoured,
# its sampled flag too; sample_ratio 0 keeps no new trace; a collector that is
# down or answers 503 loses no order and slows no request; SIGHUP turns
# tracing on and off. Spans end on HTTP, committer, syncer and worker threads
# at once, so this file also runs under ThreadSanitizer.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

OTLP=$LIB_DIR/otlp_receiver.py
FULFIL=$LIB_DIR/fulfil_receiver.py
SERVER=2 CLIENT=3 CONSUMER=5 INTERNAL=1 # OTLP's SpanKind
ERROR=2                                 # OTLP's status code

# ---- the receivers ------------------------------------------------------------

# start_otlp [--fail-first N] — an OTLP receiver in $T; sets O_PID, O_PORT, O_LOG, O_URL.
start_otlp() {
    O_LOG=$T/otlp.log
    python3 "$OTLP" serve "$T/otlp.port" "$O_LOG" "$@" 2>"$T/otlp.err" &
    O_PID=$!
    on_exit "kill $O_PID 2>/dev/null || true"
    wait_until 30 "the OTLP receiver listens" test -s "$T/otlp.port"
    O_PORT=$(<"$T/otlp.port")
    O_URL=http://127.0.0.1:$O_PORT/v1/traces
}

# start_fulfil — the fulfilment service of fulfil_receiver.py; sets R_PORT, R_LOG.
start_fulfil() {
    R_LOG=$T/fulfil.log
    : >"$R_LOG"
    python3 "$FULFIL" "$T/fulfil.port" "$R_LOG" 2>"$T/fulfil.err" &
    local pid=$!
    on_exit "kill $pid 2>/dev/null || true"
    wait_until 30 "the fulfilment service listens" test -s "$T/fulfil.port"
    R_PORT=$(<"$T/fulfil.port")
}

# start_traced ENDPOINT [section.key=value ...] — start_orderd with a [tracing]
# section: otlp_endpoint = ENDPOINT (none when empty) and the tracing.* keys.
start_traced() {
    local endpoint=$1 arg
    shift
    local -a keys=() tracing=()
    for arg in "$@"; do
        if [[ $arg == tracing.* ]]; then
            tracing+=("${arg#tracing.}")
        else
            keys+=("$arg")
        fi
    done
    D_DIR=$(mktemp -d "$T/d.XXXXXX")
    D_CONF=$D_DIR/orderd.conf
    write_config "$D_CONF" "$D_DIR" "${keys[@]}"
    {
        echo "[tracing]"
        [[ -z $endpoint ]] || echo "otlp_endpoint = $endpoint"
        for arg in "${tracing[@]}"; do
            echo "${arg%%=*} = ${arg#*=}"
        done
    } >>"$D_CONF"
    D_DB=$(sed -n 's/^path = //p' "$D_CONF")
    start_orderd_conf "$D_CONF"
}

# ---- what was received ------------------------------------------------------------

# spans — every span the receiver accepted, one compact JSON object a line.
spans() {
    python3 "$OTLP" spans "$O_LOG"
}

# spans_of TRACE — the spans of one trace.
spans_of() {
    local all
    all=$(spans)
    grep "\"trace\":\"$1\"" <<<"$all" || true
}

spans_at_least() { # TRACE N — for wait_until
    (($(spans_of "$1" | grep -c . || true) >= $2))
}

# span_of TRACE NAME [FILTER] — the one span of TRACE named NAME (whose line
# contains FILTER, when given); fails unless there is exactly one.
span_of() {
    local lines
    lines=$(spans_of "$1" | grep -F "\"name\":\"$2\"" | grep -F -- "${3:-}" || true)
    [[ -n $lines ]] || fail "no span '$2' ${3:+($3) }in trace $1: $(spans_of "$1" | cut -c1-300)"
    (($(grep -c . <<<"$lines") == 1)) || fail "more than one span '$2' ${3:+($3) }in trace $1: $lines"
    printf '%s\n' "$lines"
}

field() { # SPAN_JSON FIELD — a string field or attribute of a span
    json_str "$2" - <<<"$1"
}

number() { # SPAN_JSON FIELD — a number field or attribute of a span
    json_raw "$2" - <<<"$1"
}

# assert_shape — every export the receiver got had OTLP's shape.
assert_shape() {
    local errors
    errors=$(python3 "$OTLP" errors "$O_LOG") || fail "exports not in OTLP's JSON shape: $(head -n 5 <<<"$errors")"
}

# assert_span SPAN NAME KIND PARENT_SPAN_ID — name, kind and parent of a span.
assert_span() {
    assert_eq "$(field "$1" name)" "$2" "name"
    assert_eq "$(number "$1" kind)" "$3" "kind of $2"
    assert_eq "$(field "$1" parent)" "$4" "parent of $2"
    assert_match "$(field "$1" span)" '^[0-9a-f]{16}$' "span id of $2"
}

# assert_within INNER OUTER — INNER starts and ends within OUTER.
assert_within() {
    local is ie os oe
    is=$(number "$1" start) ie=$(number "$1" end) os=$(number "$2" start) oe=$(number "$2" end)
    ((is >= os && ie <= oe)) ||
        fail "$(field "$1" name) [$is, $ie] is not within $(field "$2" name) [$os, $oe]"
}

# tp_span TRACEPARENT — its span id.
tp_span() {
    cut -d- -f3 <<<"$1"
}

# post_many N OUT — N POST /orders, 16 at a time over keep-alive connections;
# one line each in OUT: "STATUS SECONDS".
post_many() {
    local n=$1 out=$2 i
    order_body LOAD >"$T/many.body"
    for ((i = 0; i < n; i++)); do
        printf 'url = "%s/orders"\noutput = "/dev/null"\n' "$BASE_URL"
    done >"$T/many.curl"
    curl -sS -Z --parallel-max 16 --max-time "$HTTP_TIMEOUT" "${JSON_CT[@]}" \
        --data-binary @"$T/many.body" -K "$T/many.curl" -w '%{http_code} %{time_total}\n' \
        >"$out" 2>"$T/many.err" || true
}

slowest() { # FILE — the longest time of post_many's lines
    sort -k2 -g "$1" | tail -n 1 | cut -d' ' -f2
}

# assert_not_slow FILE — no request of post_many took 3 s: one that waited
# for an export would take its timeout (5 s).
assert_not_slow() {
    local s
    s=$(slowest "$1")
    awk -v s="$s" 'BEGIN { exit !(s < 3) }' || fail "the slowest POST took ${s}s"
}

# ---- the cases ---------------------------------------------------------------------

test_order_with_http_fulfilment_makes_four_spans() {
    start_otlp
    start_fulfil
    printf '# sent with every export\nX-Orderd-Test: token-1\n' >"$T/headers"
    start_traced "$O_URL" "workers.fulfilment_url=http://user:secret@127.0.0.1:$R_PORT/fulfil?k=v" \
        "tracing.headers_file=$T/headers" "tracing.service_name=orderd-test" log.level=debug
    post_order ok-1
    local id=$ORDER_ID trace reply_tp
    trace=$(json_str trace_id)
    reply_tp=$(header traceparent)
    assert_match "$reply_tp" "^00-$trace-[0-9a-f]{16}-01\$" "the reply's traceparent"
    wait_until 60 "the order is completed" order_is "$id" completed
    wait_until 30 "the four spans of the order" spans_at_least "$trace" 4
    sleep 1.5 # a fifth would have come by now
    assert_eq "$(spans_of "$trace" | grep -c .)" 4 "spans in the order's trace"

    local server enqueue process client
    server=$(span_of "$trace" "POST /orders")
    assert_span "$server" "POST /orders" "$SERVER" ""
    assert_eq "$(field "$server" span)" "$(tp_span "$reply_tp")" "the reply's traceparent is the SERVER span"
    assert_eq "$(field "$server" service)" orderd-test "service.name"
    assert_eq "$(field "$server" http.request.method)" POST "http.request.method"
    assert_eq "$(field "$server" http.route)" /orders "http.route"
    assert_eq "$(field "$server" url.path)" /orders "url.path"
    assert_eq "$(field "$server" client.address)" 127.0.0.1 "client.address"
    assert_eq "$(number "$server" http.response.status_code)" 202 "http.response.status_code"
    assert_eq "$(field "$server" orderd.order_id)" "$id" "orderd.order_id"
    assert_eq "$(number "$server" status)" 0 "status of the SERVER span"
    local server_id
    server_id=$(field "$server" span)

    enqueue=$(span_of "$trace" orderd.enqueue)
    assert_span "$enqueue" orderd.enqueue "$INTERNAL" "$server_id"
    assert_within "$enqueue" "$server"
    assert_match "$(number "$enqueue" orderd.batch_size)" '^[1-9][0-9]*$' "orderd.batch_size"
    assert_match "$(number "$enqueue" orderd.fsync_ms)" '^[0-9.eE+-]+$' "orderd.fsync_ms"

    process=$(span_of "$trace" orderd.process)
    assert_span "$process" orderd.process "$CONSUMER" "$server_id"
    assert_eq "$(field "$process" messaging.system)" orderd "messaging.system"
    assert_eq "$(field "$process" messaging.operation)" process "messaging.operation"
    assert_eq "$(field "$process" messaging.message.id)" "$id" "messaging.message.id"
    assert_eq "$(number "$process" orderd.attempt)" 1 "orderd.attempt"
    assert_eq "$(field "$process" orderd.outcome)" completed "orderd.outcome"
    assert_eq "$(number "$process" status)" 0 "status of orderd.process"

    client=$(span_of "$trace" POST)
    assert_span "$client" POST "$CLIENT" "$(field "$process" span)"
    assert_within "$client" "$process"
    assert_eq "$(field "$client" http.request.method)" POST "http.request.method"
    assert_eq "$(field "$client" url.full)" "http://127.0.0.1:$R_PORT/fulfil" \
        "url.full, without credentials or query"
    assert_eq "$(field "$client" server.address)" 127.0.0.1 "server.address"
    assert_eq "$(number "$client" server.port)" "$R_PORT" "server.port"
    assert_eq "$(number "$client" http.response.status_code)" 200 "the answer's status"
    assert_not_contains "$(spans)" secret "the URL's password in a span"

    # the fulfilment service continues the trace under the CLIENT span
    local downstream
    downstream=$(grep -m 1 "\"order_id\": \"$id\"" "$R_LOG")
    assert_contains "$downstream" "\"traceparent\": \"00-$trace-$(field "$client" span)-01\"" \
        "the traceparent the fulfilment service got"

    # the logs carry the span beside the trace
    assert_contains "$(grep 'order accepted' "$D_LOG")" "trace_id=$trace span_id=$server_id" \
        "the span of 'order accepted'"
    assert_contains "$(grep 'order completed' "$D_LOG")" \
        "trace_id=$trace span_id=$(field "$process" span)" "the span of 'order completed'"

    # every route is a SERVER span named by its template
    http GET "/orders/$id"
    assert_status 200
    local get_trace
    get_trace=$(header traceparent | cut -d- -f2)
    wait_until 30 "the span of the GET" spans_at_least "$get_trace" 1
    local get
    get=$(span_of "$get_trace" "GET /orders/{id}")
    assert_span "$get" "GET /orders/{id}" "$SERVER" ""
    assert_eq "$(field "$get" http.route)" "/orders/{id}" "http.route of the GET"
    assert_eq "$(field "$get" url.path)" "/orders/$id" "url.path of the GET"
    assert_eq "$(field "$get" orderd.order_id)" "$id" "orderd.order_id of the GET"
    assert_eq "$(number "$get" http.response.status_code)" 200 "status of the GET"

    assert_contains "$(grep -m 1 '"x-orderd-test"' "$O_LOG")" '"x-orderd-test":"token-1"' \
        "the header of headers_file"
    assert_shape
    stop_orderd
}

test_failed_attempts_and_dead_letters_are_errors() {
    start_otlp
    start_fulfil
    start_traced "$O_URL" "workers.fulfilment_url=http://127.0.0.1:$R_PORT/" \
        queue.max_receives=3 queue.backoff_base=50ms queue.backoff_max=1s
    post_order retry-1 # 503 with Retry-After: 1 the first time, then 200
    local retried=$ORDER_ID retry_trace
    retry_trace=$(json_str trace_id)
    post_order reject-1 # 422: dead letter at once
    local rejected=$ORDER_ID reject_trace
    reject_trace=$(json_str trace_id)
    wait_until 60 "the retried order is completed" order_is "$retried" completed
    wait_until 60 "the rejected order is dead-lettered" order_is "$rejected" dead_lettered
    wait_until 30 "six spans of the retried order" spans_at_least "$retry_trace" 6
    wait_until 30 "four spans of the rejected order" spans_at_least "$reject_trace" 4

    local first second c1 c2 server_id
    server_id=$(field "$(span_of "$retry_trace" "POST /orders")" span)
    first=$(span_of "$retry_trace" orderd.process '"orderd.attempt":1')
    second=$(span_of "$retry_trace" orderd.process '"orderd.attempt":2')
    assert_span "$first" orderd.process "$CONSUMER" "$server_id"
    assert_span "$second" orderd.process "$CONSUMER" "$server_id"
    assert_eq "$(number "$first" status)" "$ERROR" "status of the failed attempt"
    assert_contains "$(field "$first" message)" "503" "the reason of the failed attempt"
    assert_eq "$(field "$first" orderd.outcome)" retry "orderd.outcome of the failed attempt"
    assert_eq "$(number "$second" status)" 0 "status of the attempt that completed"
    c1=$(span_of "$retry_trace" POST "\"parent\":\"$(field "$first" span)\"")
    c2=$(span_of "$retry_trace" POST "\"parent\":\"$(field "$second" span)\"")
    assert_eq "$(number "$c1" http.response.status_code)" 503 "status code of the first request"
    assert_eq "$(number "$c1" status)" "$ERROR" "status of the first request's span"
    assert_eq "$(field "$c1" error.type)" 503 "error.type of the first request"
    assert_eq "$(number "$c2" http.response.status_code)" 200 "status code of the second request"
    assert_eq "$(number "$c2" status)" 0 "status of the second request's span"

    local dead client
    dead=$(span_of "$reject_trace" orderd.process)
    assert_eq "$(number "$dead" status)" "$ERROR" "status of the dead-lettered delivery"
    assert_contains "$(field "$dead" message)" "dead-lettered after 1 attempts" "why"
    assert_contains "$(field "$dead" message)" "422" "the service's answer in why"
    assert_eq "$(field "$dead" orderd.outcome)" dead_letter "orderd.outcome"
    client=$(span_of "$reject_trace" POST)
    assert_eq "$(number "$client" http.response.status_code)" 422 "status code of the rejection"
    assert_eq "$(number "$client" status)" "$ERROR" "status of the rejected request's span"
    assert_shape
    stop_orderd
}

test_command_fulfilment_makes_an_internal_span() {
    start_otlp
    local seen=$T/traceparents
    start_traced "$O_URL" \
        "workers.fulfilment_command=/bin/sh -c 'echo \"\$TRACEPARENT\" >>$seen && exit \$((3 * \$(grep -c fail-cmd)))'" \
        queue.max_receives=1
    post_order ok-cmd
    local ok=$ORDER_ID ok_trace
    ok_trace=$(json_str trace_id)
    post_order fail-cmd
    local failed=$ORDER_ID fail_trace
    fail_trace=$(json_str trace_id)
    wait_until 60 "the order is completed" order_is "$ok" completed
    wait_until 60 "the failing order is dead-lettered" order_is "$failed" dead_lettered
    wait_until 30 "the spans of the order" spans_at_least "$ok_trace" 4
    wait_until 30 "the spans of the failing order" spans_at_least "$fail_trace" 4

    local process command
    process=$(span_of "$ok_trace" orderd.process)
    command=$(span_of "$ok_trace" orderd.fulfilment_command)
    assert_span "$command" orderd.fulfilment_command "$INTERNAL" "$(field "$process" span)"
    assert_within "$command" "$process"
    assert_eq "$(number "$command" process.exit.code)" 0 "process.exit.code"
    assert_eq "$(number "$command" status)" 0 "status of the command's span"
    assert_contains "$(cat "$seen")" "00-$ok_trace-$(field "$command" span)-01" \
        "the command's TRACEPARENT is its span"
    assert_eq "$(spans_of "$ok_trace" | grep -c '"kind":3' || true)" 0 "CLIENT spans for a command"

    command=$(span_of "$fail_trace" orderd.fulfilment_command)
    assert_eq "$(number "$command" process.exit.code)" 3 "process.exit.code of the failure"
    assert_eq "$(number "$command" status)" "$ERROR" "status of the failed command"
    assert_eq "$(number "$(span_of "$fail_trace" orderd.process)" status)" "$ERROR" \
        "status of its delivery"
    assert_shape
    stop_orderd
}

test_incoming_traceparent_is_honoured() {
    start_otlp
    start_traced "$O_URL"
    local t1=4bf92f3577b34da6a3ce929d0e0e4736 t2=0af7651916cd43dd8448eb211c80319c
    local t3=5c1e4f7a9b2d4e6f8a0b1c2d3e4f5a6b
    post_order CUST-1 -H "traceparent: 00-$t1-00f067aa0ba902b7-01"
    assert_eq "$(json_str trace_id)" "$t1" "the trace of the 202"
    local reply_tp
    reply_tp=$(header traceparent)
    assert_match "$reply_tp" "^00-$t1-[0-9a-f]{16}-01\$" "the reply's traceparent"
    local sampled=$ORDER_ID
    wait_until 60 "completed" order_is "$sampled" completed
    wait_until 30 "the three spans of the trace" spans_at_least "$t1" 3
    local server
    server=$(span_of "$t1" "POST /orders")
    assert_span "$server" "POST /orders" "$SERVER" 00f067aa0ba902b7
    assert_eq "$(field "$server" span)" "$(tp_span "$reply_tp")" "the SERVER span in the reply"
    assert_eq "$(field "$(span_of "$t1" orderd.process)" parent)" "$(field "$server" span)" \
        "the parent of orderd.process"
    assert_eq "$(field "$(span_of "$t1" orderd.enqueue)" parent)" "$(field "$server" span)" \
        "the parent of orderd.enqueue"

    # not sampled upstream: the flag goes on, nothing is exported
    post_order CUST-2 -H "traceparent: 00-$t2-b7ad6b7169203331-00"
    assert_match "$(header traceparent)" "^00-$t2-[0-9a-f]{16}-00\$" "the unsampled reply's traceparent"
    wait_until 60 "completed" order_is "$ORDER_ID" completed
    post_order CUST-3 -H "traceparent: 00-$t3-b7ad6b7169203331-01"
    wait_until 60 "completed" order_is "$ORDER_ID" completed
    wait_until 30 "the spans of the later trace" spans_at_least "$t3" 3
    assert_eq "$(spans_of "$t2" | grep -c . || true)" 0 "spans of the unsampled trace"
    assert_shape
    stop_orderd
}

test_sample_ratio_zero_keeps_no_new_trace() {
    start_otlp
    start_traced "$O_URL" tracing.sample_ratio=0
    local i
    for i in 1 2 3; do
        post_order "CUST-$i"
        assert_match "$(header traceparent)" '^00-[0-9a-f]{32}-[0-9a-f]{16}-00$' "an unsampled trace"
    done
    wait_until 60 "completed" order_is "$ORDER_ID" completed
    local t=4bf92f3577b34da6a3ce929d0e0e4736
    post_order CUST-4 -H "traceparent: 00-$t-00f067aa0ba902b7-01"
    wait_until 60 "completed" order_is "$ORDER_ID" completed
    wait_until 30 "the spans of the sampled trace" spans_at_least "$t" 3
    sleep 1.5
    local others
    others=$(spans | grep -v "\"trace\":\"$t\"" || true)
    assert_eq "$others" "" "spans of traces that started here"
    assert_shape
    stop_orderd
}

# A collector that is down: every order goes through as fast as ever, spans
# pile up, and what does not fit in the buffer is dropped and counted.
test_collector_down_loses_no_order() {
    start_otlp
    local url=$O_URL
    kill "$O_PID"
    wait_until 10 "the receiver is gone" bash -c "! (exec 3<>/dev/tcp/127.0.0.1/$O_PORT) 2>/dev/null"
    start_traced "$url"
    # three spans an order (SERVER, enqueue, process): more than the buffer holds
    local n=3500
    post_many "$n" "$T/posts"
    assert_eq "$(grep -c '^202 ' "$T/posts" || true)" "$n" "orders accepted"
    assert_not_slow "$T/posts"
    note "collector down: $n orders, slowest POST $(slowest "$T/posts")s"
    wait_until 120 "every order is processed" metric_is orderd_orders_processed_total "$n"
    wait_until 30 "spans are dropped" metric_above orderd_trace_spans_dropped_total 0
    assert_eq "$(metric orderd_trace_spans_exported_total)" 0 "spans exported"
    assert_contains "$(cat "$D_LOG")" "tracing: cannot export spans" "the log says so"
    stop_orderd
}

# A collector that answers 503 a while: nothing waits for it, and the spans
# come once it accepts them, each once.
test_collector_answering_503_delays_spans_only() {
    start_otlp --fail-first 3
    start_traced "$O_URL"
    local i traces=()
    for i in 1 2 3 4 5; do
        post_order "CUST-$i"
        traces+=("$(json_str trace_id)")
    done
    post_many 100 "$T/posts"
    assert_eq "$(grep -c '^202 ' "$T/posts" || true)" 100 "orders accepted"
    assert_not_slow "$T/posts"
    wait_until 60 "every order is processed" metric_is orderd_orders_processed_total 105
    for i in "${traces[@]}"; do
        wait_until 60 "the spans of trace $i" spans_at_least "$i" 3
        assert_eq "$(spans_of "$i" | grep -c .)" 3 "spans of trace $i, each once"
    done
    read -r requests accepted < <(python3 "$OTLP" requests "$O_LOG")
    ((requests - accepted >= 3)) || fail "the receiver refused $((requests - accepted)) exports, want 3"
    assert_shape
    stop_orderd
}

test_sighup_turns_tracing_on_and_off() {
    start_otlp
    start_traced ""
    post_order CUST-off
    local before
    before=$(json_str trace_id)
    wait_until 60 "completed" order_is "$ORDER_ID" completed

    echo "otlp_endpoint = $O_URL" >>"$D_CONF"
    kill -HUP "$D_PID"
    wait_until 30 "the reload" grep -q "reload: tracing on: spans to $O_URL" "$D_LOG"
    post_order CUST-on
    local on
    on=$(json_str trace_id)
    wait_until 60 "completed" order_is "$ORDER_ID" completed
    wait_until 30 "the spans after the reload" spans_at_least "$on" 3
    assert_eq "$(spans_of "$before" | grep -c . || true)" 0 "spans from before tracing was on"

    sed -i '/^otlp_endpoint/d' "$D_CONF"
    kill -HUP "$D_PID"
    wait_until 30 "the reload" grep -q "reload: tracing off" "$D_LOG"
    post_order CUST-off-again
    local off
    off=$(json_str trace_id)
    wait_until 60 "completed" order_is "$ORDER_ID" completed
    sleep 1.5
    assert_eq "$(spans_of "$off" | grep -c . || true)" 0 "spans after tracing was turned off"
    assert_shape
    stop_orderd
}

run_tests
