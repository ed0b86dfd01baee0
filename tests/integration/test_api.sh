#!/usr/bin/env bash
# test_api.sh — the HTTP API of one daemon without a fulfilment command:
# intake, validation, body limits, content types, idempotency, reads, lists,
# probes, metrics, routing, request ids and trace context (SPEC "HTTP API").
set -euo pipefail
# shellcheck source-path=SCRIPTDIR
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

MAX_BODY=8192
shared_orderd server.max_body_bytes=$MAX_BODY

ULID_RE='^[0-9A-HJKMNP-TV-Z]{26}$'
TRACE_RE='^00-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}$'
TIME_RE='^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?Z$'

# A customer id no other case uses.
fresh_customer() {
    echo "C-${1:-x}-$RANDOM$RANDOM"
}

# repeat STRING N — STRING N times.
repeat() {
    local out="" i
    for ((i = 0; i < $2; i++)); do out+=$1; done
    printf '%s' "$out"
}

# items_json N — an items array with N valid entries.
items_json() {
    local out="[" i
    for ((i = 0; i < $1; i++)); do
        ((i > 0)) && out+=","
        out+='{"item":"x","quantity":1}'
    done
    printf '%s]' "$out"
}

# expect_invalid BODY FIELD — POST answers 400 problem+json naming FIELD.
expect_invalid() {
    post_json "$1"
    assert_status 400
    assert_eq "$(header Content-Type)" application/problem+json "content type of the 400 for $1"
    local fields
    fields=$(error_fields | tr '\n' ' ')
    [[ " $fields " == *" $2 "* ]] || fail "POST $(printf '%.120s' "$1"): errors name '$fields', want '$2'"
}

test_post_accepted_then_completed() {
    local cust
    cust=$(fresh_customer accept)
    post_json "{\"customer_id\":\"$cust\",\"items\":[{\"item\":\"Laptop\",\"quantity\":2},{\"item\":\"Mouse\",\"quantity\":1}]}"
    assert_status 202
    local id
    id=$(json_str order_id)
    assert_match "$id" "$ULID_RE" "order_id"
    assert_eq "$(json_str status)" queued "status of the 202"
    assert_match "$(json_str trace_id)" '^[0-9a-f]{32}$' "trace_id of the 202"
    assert_eq "$(header Location)" "/orders/$id" "Location"
    assert_match "$(header Content-Type)" '^application/json' "content type of the 202"

    http GET "/orders/$id"
    assert_status 200
    assert_eq "$(json_str order_id)" "$id" "GET order_id"
    assert_eq "$(json_str customer_id)" "$cust" "GET customer_id"
    assert_match "$(json_str status)" '^(queued|processing|completed)$' "GET status right after the 202"
    assert_contains "$BODY" '"items":[{"item":"Laptop","quantity":2},{"item":"Mouse","quantity":1}]' "GET items"
    assert_match "$(json_str created_at)" "$TIME_RE" "created_at"

    wait_until 20 "order $id completed" order_is "$id" completed
    http GET "/orders/$id"
    assert_status 200
    assert_eq "$(json_raw attempts)" 1 "attempts once completed"
    assert_match "$(json_str processed_at)" "$TIME_RE" "processed_at once completed"
    assert_eq "$(json_raw last_error)" null "last_error once completed"
    # its history through the dead-letter queue: none
    assert_eq "$(json_raw redrives)" 0 "redrives of an order never dead-lettered"
    local f
    for f in redriven_at previous_attempts previous_error discarded_at; do
        assert_eq "$(json_raw "$f")" null "$f of an order never dead-lettered"
    done
}

test_validation_customer_id() {
    local items='[{"item":"x","quantity":1}]'
    expect_invalid "{\"items\":$items}" customer_id
    expect_invalid "{\"customer_id\":\"\",\"items\":$items}" customer_id
    expect_invalid "{\"customer_id\":\"$(repeat a 65)\",\"items\":$items}" customer_id
    expect_invalid "{\"customer_id\":42,\"items\":$items}" customer_id
    expect_invalid "{\"customer_id\":null,\"items\":$items}" customer_id
    expect_invalid "{\"customer_id\":\"a\\u0001b\",\"items\":$items}" customer_id
    # the longest one passes
    post_json "{\"customer_id\":\"$(repeat a 64)\",\"items\":$items}"
    assert_status 202
}

test_validation_items() {
    local c='"customer_id":"C-items"'
    expect_invalid "{$c}" items
    expect_invalid "{$c,\"items\":[]}" items
    expect_invalid "{$c,\"items\":{}}" items
    expect_invalid "{$c,\"items\":$(items_json 101)}" items
    expect_invalid "{$c,\"items\":[{\"quantity\":1}]}" "items[0].item"
    expect_invalid "{$c,\"items\":[{\"item\":\"\",\"quantity\":1}]}" "items[0].item"
    expect_invalid "{$c,\"items\":[{\"item\":\"$(repeat i 129)\",\"quantity\":1}]}" "items[0].item"
    expect_invalid "{$c,\"items\":[{\"item\":\"ok\",\"quantity\":1},\"string\"]}" "items[1]"
    post_json "{$c,\"items\":$(items_json 100)}"
    assert_status 202
    post_json "{$c,\"items\":[{\"item\":\"$(repeat i 128)\",\"quantity\":1}]}"
    assert_status 202
}

test_validation_quantity() {
    local pre='{"customer_id":"C-qty","items":[{"item":"x","quantity":'
    local bad
    for bad in 0 -1 10001 1.5 '"1"' null true 1e3; do
        expect_invalid "$pre$bad}]}" "items[0].quantity"
    done
    # too large for the parser: malformed or invalid, 400 either way
    post_json "${pre}99999999999999999999}]}"
    assert_status 400
    expect_invalid '{"customer_id":"C-qty","items":[{"item":"x"}]}' "items[0].quantity"
    post_json "${pre}1}]}"
    assert_status 202
    post_json "${pre}10000}]}"
    assert_status 202
}

test_validation_unknown_fields() {
    expect_invalid '{"customer_id":"C","items":[{"item":"x","quantity":1}],"extra":1}' extra
    expect_invalid '{"customer_id":"C","items":[{"item":"x","quantity":1}],"Customer_id":"C"}' Customer_id
    expect_invalid '{"customer_id":"C","items":[{"item":"x","quantity":1,"price":3}]}' "items[0].price"
}

test_validation_reports_every_field() {
    post_json '{"customer_id":"","items":[{"item":"","quantity":0}],"bogus":true}'
    assert_status 400
    local fields
    fields=$(error_fields | sort | tr '\n' ' ')
    assert_contains "$fields" customer_id "errors"
    assert_contains "$fields" "items[0].item" "errors"
    assert_contains "$fields" "items[0].quantity" "errors"
    assert_contains "$fields" bogus "errors"
}

# A \u0000 is valid JSON that orderd refuses: in its own words, not the JSON
# library's ("not allowed without JSON_ALLOW_NUL").
test_nul_character_refused_in_plain_words() {
    local body
    for body in '{"customer_id":"A\u0000B","items":[{"item":"x","quantity":1}]}' \
        '{"customer_id":"A","items":[{"item":"\u0000","quantity":1}]}'; do
        post_json "$body"
        assert_status 400
        assert_eq "$(header Content-Type)" application/problem+json "content type of the 400"
        assert_contains "$BODY" 'the body contains a NUL character (\\u0000), which is not allowed' \
            "problem for a NUL character"
        assert_not_contains "$BODY" JSON_ "problem for a NUL character"
        assert_not_contains "$BODY" jansson "problem for a NUL character"
    done
}

test_malformed_json() {
    local body
    for body in '{"customer_id":' 'not json' '' '[]' '"a string"' '42' \
        '{"customer_id":"C","items":[{"item":"x","quantity":1}]} trailing' \
        '{"customer_id":"C","customer_id":"D","items":[{"item":"x","quantity":1}]}' \
        "$(repeat '[' 50)$(repeat ']' 50)"; do
        post_json "$body"
        [[ $STATUS == 400 ]] || fail "POST '$(printf '%.60s' "$body")': status $STATUS, want 400 ($BODY)"
        assert_eq "$(header Content-Type)" application/problem+json "content type of the 400"
        assert_eq "$(json_raw status)" 400 "problem status member"
        assert_ne "$(json_str title)" "" "problem title"
    done
}

# pad_to N — a valid order padded with JSON whitespace to exactly N bytes, in $T/pad.json
pad_to() {
    local base
    base=$(order_body C-pad)
    {
        printf '%s' "$base"
        head -c $(($1 - ${#base})) /dev/zero | tr '\0' ' '
    } >"$T/pad.json"
    assert_eq "$(stat -c %s "$T/pad.json")" "$1" "size of the padded body"
}

test_body_limit_content_length() {
    pad_to $MAX_BODY
    http POST /orders "${JSON_CT[@]}" --data-binary @"$T/pad.json"
    assert_status 202
    pad_to $((MAX_BODY + 1))
    http POST /orders "${JSON_CT[@]}" --data-binary @"$T/pad.json"
    assert_status 413
    assert_eq "$(header Content-Type)" application/problem+json "content type of the 413"
    # The body is read and thrown away before the 413 (an answer sent while
    # it is still coming is often lost to a connection reset): the next
    # request goes over the same connection.
    local two
    two=$(curl -sS --max-time "$HTTP_TIMEOUT" -o /dev/null -w '%{http_code} %{num_connects}\n' \
        -X POST "${JSON_CT[@]}" --data-binary @"$T/pad.json" "$BASE_URL/orders" \
        -: -sS --max-time "$HTTP_TIMEOUT" -o /dev/null -w '%{http_code} %{num_connects}\n' \
        "$BASE_URL/healthz")
    assert_eq "$two" $'413 1\n200 0' "a 413, then a request on the same connection"
    head -c 1000000 /dev/zero | tr '\0' ' ' >"$T/huge.json"
    http POST /orders "${JSON_CT[@]}" --data-binary @"$T/huge.json"
    assert_status 413
    # with Expect: 100-continue the body need not be sent at all
    head -c 3000000 /dev/zero | tr '\0' ' ' >"$T/huge.json"
    http POST /orders "${JSON_CT[@]}" -H 'Expect: 100-continue' --data-binary @"$T/huge.json"
    assert_status 413
    http GET /healthz
    assert_status 200
}

test_body_limit_chunked() {
    pad_to $((MAX_BODY + 1))
    http POST /orders "${JSON_CT[@]}" -H 'Transfer-Encoding: chunked' --data-binary @"$T/pad.json"
    assert_status 413
    head -c 300000 /dev/zero | tr '\0' ' ' >"$T/huge.json"
    http POST /orders "${JSON_CT[@]}" -H 'Transfer-Encoding: chunked' --data-binary @"$T/huge.json"
    assert_status 413
    # a chunked body under the limit is read whole
    pad_to 2000
    http POST /orders "${JSON_CT[@]}" -H 'Transfer-Encoding: chunked' --data-binary @"$T/pad.json"
    assert_status 202
    # and the server still serves after the refusals
    http GET /healthz
    assert_status 200
}

test_content_type() {
    local body
    body=$(order_body C-ct)
    http POST /orders -H 'Content-Type:' --data-binary "$body"
    assert_status 415
    assert_eq "$(header Content-Type)" application/problem+json "content type of the 415"
    local ct
    for ct in text/plain application/x-www-form-urlencoded application/jsonx 'application/xml'; do
        http POST /orders -H "Content-Type: $ct" --data-binary "$body"
        [[ $STATUS == 415 ]] || fail "Content-Type $ct: status $STATUS, want 415"
    done
    for ct in 'application/json; charset=utf-8' 'application/json;charset=UTF-8' 'Application/JSON'; do
        http POST /orders -H "Content-Type: $ct" --data-binary "$body"
        [[ $STATUS == 202 ]] || fail "Content-Type $ct: status $STATUS, want 202 ($BODY)"
    done
}

test_idempotency_replay() {
    local key="idem-$RANDOM$RANDOM" cust
    cust=$(fresh_customer idem)
    local before
    before=$(metric orderd_orders_received_total)
    post_json "{\"customer_id\":\"$cust\",\"items\":[{\"item\":\"x\",\"quantity\":1}]}" -H "Idempotency-Key: $key"
    assert_status 202
    assert_eq "$(header Idempotent-Replayed)" "" "Idempotent-Replayed on the first answer"
    local first=$BODY id location
    id=$(json_str order_id)
    location=$(header Location)

    local variant
    for variant in \
        "{\"customer_id\":\"$cust\",\"items\":[{\"item\":\"x\",\"quantity\":1}]}" \
        "  {  \"customer_id\" : \"$cust\" ,
            \"items\" : [ { \"item\" : \"x\" , \"quantity\" : 1 } ] }  " \
        "{\"items\":[{\"quantity\":1,\"item\":\"x\"}],\"customer_id\":\"$cust\"}"; do
        post_json "$variant" -H "Idempotency-Key: $key"
        assert_status 202
        assert_eq "$(header Idempotent-Replayed)" true "Idempotent-Replayed on a replay"
        assert_eq "$BODY" "$first" "body of a replay"
        assert_eq "$(header Location)" "$location" "Location of a replay"
    done

    post_json "{\"customer_id\":\"$cust\",\"items\":[{\"item\":\"x\",\"quantity\":2}]}" -H "Idempotency-Key: $key"
    assert_status 422
    assert_eq "$(header Content-Type)" application/problem+json "content type of the 422"

    # one order only, counted once
    assert_eq "$(list_ids "customer_id=$cust" | tr '\n' ' ')" "$id " "orders of $cust"
    assert_metric orderd_orders_received_total $((before + 1)) "orderd_orders_received_total after 1 order and 3 replays"
}

test_idempotency_key_invalid() {
    local body
    body=$(order_body C-badkey)
    http POST /orders "${JSON_CT[@]}" --data-binary "$body" -H 'Idempotency-Key;'
    assert_status 400
    assert_contains "$(error_fields)" Idempotency-Key "errors of an empty key"
    http POST /orders "${JSON_CT[@]}" --data-binary "$body" -H "Idempotency-Key: $(repeat k 256)"
    assert_status 400
    assert_contains "$(error_fields)" Idempotency-Key "errors of a 256-character key"
    http POST /orders "${JSON_CT[@]}" --data-binary "$body" -H 'Idempotency-Key: two words'
    assert_status 400
    http POST /orders "${JSON_CT[@]}" --data-binary "$body" -H "Idempotency-Key: $(repeat k 255)"
    assert_status 202
}

test_get_unknown_and_malformed_ids() {
    local path
    for path in /orders/01ARZ3NDEKTSV4RRFFQ69G5FAV /orders/not-an-order-id /orders/01arz3ndektsv4rrffq69g5fav \
        /orders/01ARZ3NDEKTSV4RRFFQ69G5FAVX /orders/%00 "/orders/$(repeat 9 300)" /orders/01ARZ3NDEKTSV4RRFFQ69G5FA/x; do
        http GET "$path"
        [[ $STATUS == 404 ]] || fail "GET $(printf '%.60s' "$path"): status $STATUS, want 404"
        assert_eq "$(header Content-Type)" application/problem+json "content type of the 404"
    done
}

test_list_newest_first_and_paging() {
    local cust i
    cust=$(fresh_customer list)
    : >"$T/posted"
    for ((i = 0; i < 7; i++)); do
        post_order "$cust"
        echo "$ORDER_ID" >>"$T/posted"
    done
    tac "$T/posted" >"$T/want"

    http GET "/orders?customer_id=$cust"
    assert_status 200
    assert_eq "$(json_all order_id | tr '\n' ' ')" "$(tr '\n' ' ' <"$T/want")" "unpaged list, newest first"
    assert_eq "$(json_raw next_cursor)" null "next_cursor of the only page"

    local limit
    for limit in 1 3 7; do
        list_ids "customer_id=$cust&limit=$limit" >"$T/got"
        cmp -s "$T/got" "$T/want" || fail "paging with limit=$limit: got $(tr '\n' ' ' <"$T/got"), want $(tr '\n' ' ' <"$T/want")"
    done
    http GET "/orders?customer_id=$cust&limit=3"
    assert_status 200
    assert_eq "$(json_all order_id | wc -l)" 3 "orders on a page of limit=3"
    assert_ne "$(json_str next_cursor)" "" "next_cursor of a full page"

    # the unfiltered list pages over every order exactly once too
    list_ids "limit=4" >"$T/all"
    assert_eq "$(sort "$T/all" | uniq -d | wc -l)" 0 "orders seen twice while paging"
    assert_eq "$(sort -r "$T/all" | tr '\n' ' ')" "$(tr '\n' ' ' <"$T/all")" "unfiltered list newest first"
    local id
    while read -r id; do
        grep -qx "$id" "$T/all" || fail "order $id missing from the unfiltered paged list"
    done <"$T/posted"
    local total
    total=$(db_query "$SHARED_DB" 'select count(*) from orders')
    [[ $(wc -l <"$T/all") -le $total ]] || fail "paged list has more orders than the database"
}

# A page that ends exactly at the last order has no next_cursor: a client
# never follows a cursor to an empty page.
test_list_exactly_limit_rows_left() {
    local cust i
    cust=$(fresh_customer exact)
    : >"$T/posted"
    for ((i = 0; i < 6; i++)); do
        post_order "$cust"
        echo "$ORDER_ID" >>"$T/posted"
    done
    http GET "/orders?customer_id=$cust&limit=6"
    assert_status 200
    assert_eq "$(json_all order_id | wc -l)" 6 "orders on a page of limit=6"
    assert_eq "$(json_raw next_cursor)" null "next_cursor when exactly limit orders are left"
    http GET "/orders?customer_id=$cust&limit=3"
    assert_status 200
    local cursor
    cursor=$(json_str next_cursor)
    assert_ne "$cursor" "" "next_cursor when more than limit orders are left"
    http GET "/orders?customer_id=$cust&limit=3&cursor=$cursor"
    assert_status 200
    assert_eq "$(json_all order_id | tr '\n' ' ')" "$(head -n 3 "$T/posted" | tac | tr '\n' ' ')" \
        "the last page"
    assert_eq "$(json_raw next_cursor)" null "next_cursor of a last page that is full"
    http GET "/orders?customer_id=$cust&limit=5"
    assert_status 200
    assert_eq "$(json_all order_id | wc -l)" 5 "orders on a page of limit=5 out of 6"
    assert_ne "$(json_str next_cursor)" "" "next_cursor when one order is left"
}

test_list_filters() {
    local cust other
    cust=$(fresh_customer filt)
    other=$(fresh_customer other)
    post_order "$cust"
    local a=$ORDER_ID
    post_order "$other"
    post_order "$cust"
    local b=$ORDER_ID
    wait_until 20 "orders completed" order_is "$a" completed
    wait_until 20 "orders completed" order_is "$b" completed
    http GET "/orders?customer_id=$cust"
    assert_status 200
    assert_eq "$(json_all customer_id | sort -u)" "$cust" "customers in a filtered list"
    assert_eq "$(json_all order_id | tr '\n' ' ')" "$b $a " "filtered list"
    http GET "/orders?customer_id=$cust&status=completed"
    assert_status 200
    assert_eq "$(json_all order_id | tr '\n' ' ')" "$b $a " "completed orders of $cust"
    http GET "/orders?customer_id=$cust&status=queued"
    assert_status 200
    assert_eq "$(json_all order_id | wc -l)" 0 "queued orders of $cust"
    http GET "/orders?status=completed&limit=20"
    assert_status 200
    assert_eq "$(json_all status | sort -u)" completed "statuses in status=completed"
    http GET "/orders?customer_id=no-such-customer-$RANDOM"
    assert_status 200
    assert_eq "$BODY" '{"orders":[],"next_cursor":null}' "empty list"
}

test_list_bad_parameters() {
    local q field
    while read -r q field; do
        http GET "/orders?$q"
        [[ $STATUS == 400 ]] || fail "GET /orders?$q: status $STATUS, want 400"
        assert_eq "$(header Content-Type)" application/problem+json "content type of the 400"
        [[ $(error_fields) == *"$field"* ]] || fail "GET /orders?$q: errors name '$(error_fields)', want '$field'"
    done <<'EOF'
limit=0 limit
limit=501 limit
limit=abc limit
limit=-1 limit
limit=1.5 limit
limit= limit
status=bogus status
status=QUEUED status
status= status
cursor=!!! cursor
cursor=AAAA cursor
cursor= cursor
customer_id= customer_id
bogus=1 bogus
EOF
    http GET "/orders?status=bogus"
    assert_match "$BODY" '"message":"must be one of queued, processing, completed, dead_lettered, discarded"' \
        "the statuses a filter may name"
    http GET "/orders?limit=500"
    assert_status 200
    http GET "/orders?status=discarded"
    assert_status 200
}

test_probes() {
    http GET /healthz
    assert_status 200
    http GET /readyz
    assert_status 200
    assert_match "$(header Content-Type)" '^application/json' "content type of /readyz"
}

test_metrics_exposition() {
    http GET /metrics
    assert_status 200
    assert_match "$(header Content-Type)" '^text/plain; version=0\.0\.4' "content type of /metrics"
    local name
    for name in orderd_orders_received_total orderd_orders_processed_total orderd_orders_failed_total \
        orderd_orders_dead_lettered_total orderd_queue_depth orderd_queue_oldest_age_seconds \
        orderd_dlq_depth orderd_http_requests_total orderd_http_request_duration_seconds \
        orderd_processing_duration_seconds orderd_build_info process_cpu_seconds_total \
        process_resident_memory_bytes process_open_fds process_start_time_seconds; do
        grep -q "^# TYPE $name " "$T/last.body" || fail "/metrics lacks # TYPE $name"
    done
}

test_metrics_count_accepted_only() {
    local before after key="m-$RANDOM$RANDOM"
    before=$(metric orderd_orders_received_total)
    post_order "$(fresh_customer m)" -H "Idempotency-Key: $key"
    post_json "$(order_body C-m)" -H "Idempotency-Key: $key"
    post_json '{"customer_id":""}'
    assert_status 400
    http POST /orders -H 'Content-Type: text/plain' --data-binary "$(order_body C-m)"
    assert_status 415
    after=$(metric orderd_orders_received_total)
    assert_eq "$after" $((before + 1)) "orderd_orders_received_total after 1 order, 1 replay, 1 invalid, 1 refused"
}

test_metrics_route_labels_are_templates() {
    post_order C-routes
    local id=$ORDER_ID
    http GET "/orders/$id"
    http GET /orders/NOT-AN-ID-ROUTE-LABEL
    http GET /no/such/path/ROUTE-LABEL
    http DELETE /healthz
    local before
    before=$(metric 'orderd_http_requests_total{route="/orders/{id}",code="200"}')
    http GET "/orders/$id"
    assert_status 200
    assert_metric 'orderd_http_requests_total{route="/orders/{id}",code="200"}' $((before + 1)) \
        'orderd_http_requests_total{route="/orders/{id}",code="200"} after one GET'
    http GET /metrics
    local routes
    routes=$(grep -o 'route="[^"]*"' "$T/last.body" | sort -u | tr '\n' ' ')
    assert_contains "$routes" 'route="/orders/{id}"' "route labels"
    assert_not_contains "$routes" "$id" "route labels"
    assert_not_contains "$routes" ROUTE-LABEL "route labels"
    if grep -qE 'route="[^"]*[0-9A-HJKMNP-TV-Z]{26}' "$T/last.body"; then
        fail "a route label holds a raw order id: $(grep -m1 -oE 'route="[^"]*[0-9A-Z]{26}[^"]*"' "$T/last.body")"
    fi
}

test_method_not_allowed() {
    local method path allow
    while read -r method path allow; do
        http "$method" "$path"
        [[ $STATUS == 405 ]] || fail "$method $path: status $STATUS, want 405"
        assert_eq "$(header Content-Type)" application/problem+json "content type of the 405"
        local got
        got=$(header Allow)
        local m
        for m in ${allow//,/ }; do
            [[ ", $got, " == *", $m, "* ]] || fail "$method $path: Allow '$got' lacks $m"
        done
    done <<'EOF'
DELETE /orders POST,GET
PUT /orders POST,GET
PATCH /orders/01ARZ3NDEKTSV4RRFFQ69G5FAV GET
POST /orders/01ARZ3NDEKTSV4RRFFQ69G5FAV GET
POST /healthz GET
PUT /readyz GET
POST /metrics GET
EOF
}

test_unknown_path() {
    local path
    for path in /nope /orders/x/y /ordersx /admin /healthz/x /status.jsonx; do
        http GET "$path"
        [[ $STATUS == 404 ]] || fail "GET $path: status $STATUS, want 404"
    done
    http POST /nope "${JSON_CT[@]}" --data-binary '{}'
    assert_status 404
    assert_eq "$(header Content-Type)" application/problem+json "content type of the 404"
}

test_request_id() {
    http GET /healthz -H 'X-Request-Id: test-req-42'
    assert_eq "$(header X-Request-Id)" test-req-42 "echoed X-Request-Id"
    post_json '{"bad":1}' -H 'X-Request-Id: test-req-43'
    assert_status 400
    assert_eq "$(header X-Request-Id)" test-req-43 "echoed X-Request-Id on a 400"
    http GET /nope -H 'X-Request-Id: test-req-44'
    assert_eq "$(header X-Request-Id)" test-req-44 "echoed X-Request-Id on a 404"
    http GET /healthz
    local a
    a=$(header X-Request-Id)
    assert_match "$a" '^[!-~]{8,64}$' "generated X-Request-Id"
    http GET /healthz
    assert_ne "$(header X-Request-Id)" "$a" "a second generated X-Request-Id"
    # not acceptable (too long) is replaced
    http GET /healthz -H "X-Request-Id: $(repeat r 65)"
    assert_ne "$(header X-Request-Id)" "$(repeat r 65)" "an over-long X-Request-Id"
    assert_match "$(header X-Request-Id)" '^[!-~]{1,64}$' "replacement X-Request-Id"
    # every kind of answer carries both headers
    local path
    for path in /healthz /nope /orders/x /metrics; do
        http GET "$path"
        assert_ne "$(header X-Request-Id)" "" "X-Request-Id on GET $path"
        assert_match "$(header traceparent)" "$TRACE_RE" "traceparent on GET $path"
    done
}

test_traceparent_kept() {
    local trace=4bf92f3577b34da6a3ce929d0e0e4736 span=00f067aa0ba902b7
    post_order "$(fresh_customer tp)" -H "traceparent: 00-$trace-$span-01"
    local id=$ORDER_ID tp
    tp=$(header traceparent)
    [[ $tp =~ $TRACE_RE ]] || fail "response traceparent '$tp'"
    assert_eq "${BASH_REMATCH[1]}" "$trace" "trace id of the response traceparent"
    assert_ne "${BASH_REMATCH[2]}" "$span" "span id of the response traceparent"
    assert_eq "$(json_str trace_id)" "$trace" "trace_id of the 202"
    http GET "/orders/$id"
    assert_eq "$(json_str trace_id)" "$trace" "trace_id of the stored order"
    http GET /healthz -H "traceparent: 00-$trace-$span-00"
    [[ $(header traceparent) =~ $TRACE_RE ]] || fail "traceparent of /healthz"
    assert_eq "${BASH_REMATCH[1]}" "$trace" "trace id kept on GET"
}

test_traceparent_invalid_replaced() {
    local bad
    for bad in garbage 00-00000000000000000000000000000000-00f067aa0ba902b7-01 \
        00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01 \
        ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01 \
        00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01 \
        00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01; do
        post_order C-tp-bad -H "traceparent: $bad"
        local tp
        tp=$(header traceparent)
        [[ $tp =~ $TRACE_RE ]] || fail "traceparent '$tp' answered to '$bad'"
        local trace=${BASH_REMATCH[1]}
        assert_ne "$trace" 00000000000000000000000000000000 "trace id answered to '$bad'"
        assert_ne "$trace" 4bf92f3577b34da6a3ce929d0e0e4736 "trace id answered to '$bad'"
        assert_eq "$(json_str trace_id)" "$trace" "trace_id of the 202 for '$bad'"
    done
}

test_zz_clean_exit() {
    stop_shared
}

run_tests
