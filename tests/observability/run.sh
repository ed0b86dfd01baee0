#!/usr/bin/env bash
# tests/observability/run.sh — what an operator's tools see of orderd
# (issue "Observability"): the alert rules and their unit tests (promtool),
# the Alertmanager config (amtool), the Grafana dashboard, the /metrics
# exposition of a real daemon (`promtool check metrics` silent, counters that
# count), /status.json, the status page in a real headless browser
# (chromium), trace context in the logs and the fulfilment command, and the
# cost of a scrape with a large queue.
#
#   TEST_ORDERD_BIN=build/orderd tests/observability/run.sh
#
# Environment (never ORDERD_*): see tests/integration/lib.sh, plus
#   TEST_OBS_BULK_ROWS       queued messages for the scrape-cost case (50000)
#   TEST_OBS_SCRAPES         scrapes timed in that case (100)
#   TEST_OBS_SCRAPE_MAX_MS   mean scrape time that fails the case (50 ms)
#   TEST_CHROMIUM            the browser (default: chromium on PATH)
#
# Needs promtool (prometheus), amtool (prometheus-alertmanager), chromium,
# node, sqlite3 and curl: a missing tool fails its case, naming the package.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR
# shellcheck source=../integration/lib.sh
. "$(dirname "$0")/../integration/lib.sh"
SUITE_NAME=observability

OBS_DIR=$REPO_ROOT/tests/observability
CHECK=$OBS_DIR/check.mjs
RULES=$REPO_ROOT/etc/prometheus/orderd-alerts.yml
RULE_TESTS=$REPO_ROOT/etc/prometheus/orderd-alerts.test.yml
AM_CONFIG=$REPO_ROOT/etc/alertmanager/alertmanager.yml
DASHBOARD=$REPO_ROOT/etc/grafana/orderd-dashboard.json
: "${TEST_OBS_BULK_ROWS:=50000}"
: "${TEST_OBS_SCRAPES:=100}"
: "${TEST_OBS_SCRAPE_MAX_MS:=50}"
: "${TEST_CHROMIUM:=chromium}"
BROWSER_TIMEOUT=90   # seconds for one headless chromium run
WORK_TIMEOUT=30      # seconds for the workers to settle a handful of orders

# need TOOL PACKAGE — fails the case when TOOL is not installed.
need() {
    command -v "$1" >/dev/null 2>&1 || fail "$1 not found (apt-get install $2)"
}

# status_json OUT — GET /status.json into OUT (fails unless 200 JSON).
status_json() {
    http GET /status.json
    assert_status 200
    assert_match "$(header Content-Type)" '^application/json' "content type of /status.json"
    cp "$T/last.body" "$1"
}

# settled N — /metrics says N orders processed and an empty queue.
settled() {
    [[ $(metric orderd_orders_processed_total) == "$1" && $(metric orderd_queue_depth) == 0 ]]
}

# scrape OUT — GET /metrics into OUT (the bytes as served).
scrape() {
    http GET /metrics
    assert_status 200
    cp "$T/last.body" "$1"
}

# sample NAME FILE — the value of the series NAME (labels exactly as exposed).
sample() {
    awk -v n="$1" '$1 == n { print $2; found = 1; exit } END { if (!found) print "absent" }' "$2"
}

# promtool_metrics_silent FILE — `promtool check metrics` prints nothing.
promtool_metrics_silent() {
    local out
    out=$(promtool check metrics <"$1" 2>&1) || fail "promtool check metrics failed: $out"
    [[ -z $out ]] || fail "promtool check metrics is not silent: $(printf '%.600s' "$out")"
}

# ---- the files an operator installs ----------------------------------------------

test_alert_rules_check() {
    need promtool prometheus
    local out
    out=$(promtool check rules "$RULES" 2>&1) || fail "promtool check rules: $out"
    local alert
    for alert in OrderdProcessingFailures OrderdOldestMessageTooOld OrderdDeadLetters \
        OrderdDown OrderdNotReady; do
        grep -q "^ *- alert: $alert\$" "$RULES" || fail "$RULES lacks the alert $alert"
    done
    # every alert has for:, a severity and the three annotations
    awk '
        /^ *- alert:/ { if (name != "") check(); name = $3; f = s = su = d = r = 0 }
        /^ *for:/ { f = 1 } /^ *severity:/ { s = 1 } /^ *summary:/ { su = 1 }
        /^ *description:/ { d = 1 } /^ *runbook_url: docs\/observability\.md#/ { r = 1 }
        function check() { if (!(f && s && su && d && r)) { print name; bad = 1 } }
        END { if (name != "") check(); exit bad }' "$RULES" >"$T/incomplete" ||
        fail "alerts without for/severity/summary/description/runbook_url: $(tr '\n' ' ' <"$T/incomplete")"
}

test_alert_rules_unit_tests() {
    need promtool prometheus
    local out
    out=$(cd "$(dirname "$RULE_TESTS")" && promtool test rules "$(basename "$RULE_TESTS")" 2>&1) ||
        fail "promtool test rules: $(printf '%.1500s' "$out")"
    # each alert of the rules file is exercised by the tests
    local alert
    while read -r alert; do
        grep -q "alertname: $alert\$" "$RULE_TESTS" || fail "$RULE_TESTS never tests $alert"
    done < <(sed -n 's/^ *- alert: *//p' "$RULES")
}

test_runbook_sections_exist() {
    local doc=$REPO_ROOT/docs/observability.md anchor
    [[ -f $doc ]] || fail "docs/observability.md is missing"
    while read -r anchor; do
        # GitHub-style anchor of a "### Name" heading: lower case
        grep -qiE "^#+ +$anchor\$" "$doc" || fail "docs/observability.md has no section #$anchor"
    done < <(sed -n 's/^ *runbook_url: docs\/observability\.md#//p' "$RULES")
}

test_alertmanager_config() {
    need amtool prometheus-alertmanager
    local out
    out=$(amtool check-config "$AM_CONFIG" 2>&1) || fail "amtool check-config: $out"
    local labels
    # each orderd alert reaches both receivers; other alerts only the default
    for labels in "alertname=OrderdDown severity=critical instance=a:8080" \
        "alertname=OrderdDeadLetters severity=warning instance=a:8080"; do
        # shellcheck disable=SC2086  # one argument per label
        out=$(amtool config routes test --config.file="$AM_CONFIG" \
            --verify.receivers=orderd-email,orderd-slack $labels 2>&1) ||
            fail "routing of {$labels}: $out"
    done
}

test_dashboard() {
    need node nodejs
    need promtool prometheus
    node "$CHECK" dashboard "$DASHBOARD" "$T/dashboard-rules.yml" 2>"$T/err" ||
        fail "$DASHBOARD: $(tr '\n' ';' <"$T/err")"
    local out
    out=$(promtool check rules "$T/dashboard-rules.yml" 2>&1) ||
        fail "a dashboard query is not valid PromQL: $(printf '%.800s' "$out")"
}

# ---- a running daemon ------------------------------------------------------------

test_metrics_exposition() {
    need promtool prometheus
    start_orderd
    local ids=() i
    for i in 1 2; do
        post_order OBS-1
        ids+=("$ORDER_ID")
    done
    post_order OBS-1 -H 'Idempotency-Key: obs-key-1'
    ids+=("$ORDER_ID")
    # a replay answers again but is not a new order
    post_json "$(order_body OBS-1)" -H 'Idempotency-Key: obs-key-1'
    assert_status 202
    assert_eq "$(header Idempotent-Replayed)" true "Idempotent-Replayed of the replay"
    http GET "/orders/${ids[0]}"
    assert_status 200
    http GET /no/such/path
    assert_status 404
    wait_until "$WORK_TIMEOUT" "3 orders processed" settled 3

    scrape "$T/metrics"
    promtool_metrics_silent "$T/metrics"
    assert_eq "$(sample orderd_orders_received_total "$T/metrics")" 3 "orderd_orders_received_total"
    assert_eq "$(sample orderd_orders_processed_total "$T/metrics")" 3 "orderd_orders_processed_total"
    assert_eq "$(sample orderd_orders_failed_total "$T/metrics")" 0 "orderd_orders_failed_total"
    assert_eq "$(sample orderd_queue_depth "$T/metrics")" 0 "orderd_queue_depth"
    assert_eq "$(sample orderd_dlq_depth "$T/metrics")" 0 "orderd_dlq_depth"
    assert_eq "$(sample orderd_storage_up "$T/metrics")" 1 "orderd_storage_up"
    assert_eq "$(sample 'orderd_http_requests_total{route="/orders",code="202"}' "$T/metrics")" 4 \
        "202s of POST /orders (3 orders and 1 replay)"
    assert_eq "$(sample 'orderd_http_requests_total{route="/orders/{id}",code="200"}' "$T/metrics")" 1 \
        "GET /orders/{id} counted under its template"
    assert_eq "$(sample 'orderd_http_requests_total{route="other",code="404"}' "$T/metrics")" 1 \
        "an unknown path counted as route=\"other\""
    for i in "${ids[@]}"; do
        ! grep -q "$i" "$T/metrics" || fail "an order id ($i) appears in /metrics: labels must be templates"
    done
    # buckets from 100 µs to 10 s
    grep -q '^orderd_http_request_duration_seconds_bucket{route="/orders",le="0.0001"} ' "$T/metrics" ||
        fail "no 100 µs bucket for route /orders"
    grep -q '^orderd_http_request_duration_seconds_bucket{route="/orders",le="10"} ' "$T/metrics" ||
        fail "no 10 s bucket for route /orders"
    assert_eq "$(sample 'orderd_processing_duration_seconds_count' "$T/metrics")" 3 \
        "orderd_processing_duration_seconds_count"
    # three orders posted one after the other: three group commits, each made
    # durable by an fsync before its 202 (durability = full)
    assert_eq "$(sample orderd_intake_commits_total "$T/metrics")" 3 "orderd_intake_commits_total"
    assert_eq "$(sample orderd_storage_sync_duration_seconds_count "$T/metrics")" 3 \
        "orderd_storage_sync_duration_seconds_count"
    # SQLite's WAL: its size (a few pages so far) and the checkpoint counters
    # under the result labels the alerts and the dashboard select, at 0: three
    # orders are far from the 1000 WAL pages that start a checkpoint
    local wal_bytes result
    wal_bytes=$(sample orderd_storage_wal_bytes "$T/metrics")
    [[ $wal_bytes =~ ^[1-9][0-9]*$ ]] || fail "orderd_storage_wal_bytes is $wal_bytes, want a size > 0"
    for result in completed partial failed; do
        assert_eq "$(sample "orderd_storage_checkpoints_total{result=\"$result\"}" "$T/metrics")" 0 \
            "orderd_storage_checkpoints_total{result=\"$result\"}"
    done
    local version
    version=$("$TEST_ORDERD_BIN" --version | awk '{ print $2 }')
    grep -qE "^orderd_build_info\{version=\"$version\",sqlite_version=\"[0-9.]+\"\} 1\$" "$T/metrics" ||
        fail "orderd_build_info{version=\"$version\",sqlite_version=...} 1 is missing"
    local name
    for name in process_cpu_seconds_total process_resident_memory_bytes process_start_time_seconds \
        process_open_fds process_max_fds process_virtual_memory_bytes; do
        [[ $(sample "$name" "$T/metrics") =~ ^[0-9.e+]+$ ]] || fail "$name is missing or not a number"
    done
    stop_orderd
}

test_status_json() {
    need node nodejs
    start_orderd
    status_json "$T/s0.json"
    node "$CHECK" status-json "$T/s0.json" received=0 processed=0 failed=0 dead_lettered=0 \
        queue_depth=0 dlq_depth=0 oldest_age_seconds=0 ready=true 2>"$T/err" ||
        fail "fresh daemon: $(tr '\n' ';' <"$T/err")"
    local version
    version=$("$TEST_ORDERD_BIN" --version | awk '{ print $2 }')
    assert_eq "$(json_str version "$T/s0.json")" "$version" "version"
    post_order OBS-2
    post_order OBS-2
    wait_until "$WORK_TIMEOUT" "2 orders processed" settled 2
    status_json "$T/s1.json"
    node "$CHECK" status-json "$T/s1.json" received=2 processed=2 failed=0 queue_depth=0 \
        ready=true 2>"$T/err" || fail "after 2 orders: $(tr '\n' ';' <"$T/err")"
    # the same numbers as /metrics
    scrape "$T/metrics"
    assert_eq "$(json_raw received "$T/s1.json")" "$(sample orderd_orders_received_total "$T/metrics")" \
        "received vs orderd_orders_received_total"
    http POST /status.json
    assert_status 405
    stop_orderd
}

test_status_page_served() {
    need node nodejs
    start_orderd
    http GET /
    assert_status 200
    assert_eq "$(header Content-Type)" "text/html; charset=utf-8" "content type of /"
    assert_eq "$(header X-Content-Type-Options)" nosniff "X-Content-Type-Options"
    local policy
    policy=$(header Content-Security-Policy)
    [[ -n $policy ]] || fail "no Content-Security-Policy on /"
    cp "$T/last.body" "$T/page.html"
    node "$CHECK" csp "$T/page.html" "$policy" 2>"$T/err" || fail "$(tr '\n' ';' <"$T/err")"
    assert_contains "$BODY" "status.json" "the page fetches status.json"
    # the route is exactly "/": no directory listing, no files
    http GET /index.html
    assert_status 404
    http HEAD /
    assert_status 200
    stop_orderd
}

# The page in a real browser: its script must fetch /status.json and show the
# daemon's numbers (the dumped DOM holds "–" in every field until it has).
test_status_page_in_browser() {
    need "$TEST_CHROMIUM" chromium
    need node nodejs
    start_orderd
    local i
    for i in 1 2 3; do post_order OBS-3; done
    wait_until "$WORK_TIMEOUT" "3 orders processed" settled 3
    local profile=$T/chromium-profile
    mkdir -p "$profile"
    local rc=0
    timeout -k 5 "$BROWSER_TIMEOUT" "$TEST_CHROMIUM" --headless --no-sandbox --disable-gpu \
        --disable-background-networking --disable-component-update --disable-sync \
        --no-first-run --no-default-browser-check --disable-dev-shm-usage \
        --user-data-dir="$profile" --virtual-time-budget=8000 --dump-dom "$BASE_URL/" \
        >"$T/dom.html" 2>"$T/chromium.log" </dev/null || rc=$?
    ((rc == 0)) || fail "chromium exited $rc: $(grep -v -e 'shared_image' -e '^\[' "$T/chromium.log" | tail -n 3 | tr '\n' ' ')"
    [[ -s $T/dom.html ]] || fail "chromium dumped no DOM"
    if ! node "$CHECK" dom "$T/dom.html" received=3 processed=3 failed=0 dead_lettered=0 \
        queue_depth=0 dlq_depth=0 ready=yes conn-class="meta live" 2>"$T/err"; then
        note "dumped DOM: $(grep -oE 'id="(conn|received|processed)"[^<]*' "$T/dom.html" | tr '\n' ' ')"
        fail "the page does not show the live numbers: $(tr '\n' ';' <"$T/err")"
    fi
    # the page really asked for status.json (not a number baked into the HTML)
    http GET /metrics
    [[ $BODY == *'orderd_http_requests_total{route="/status.json",code="200"}'* ]] ||
        fail "no GET /status.json reached the daemon"
    stop_orderd
}

# ---- trace context, as docs/observability.md tells an operator to follow it -----

test_trace_id_follows_the_order() {
    # a fulfilment command that records its TRACEPARENT and fails once
    local script=$T/fulfil.sh
    cat >"$script" <<'EOF'
#!/bin/sh
dir=$(dirname "$0")
echo "$TRACEPARENT" >>"$dir/traceparents"
cat >>"$dir/stdin"
[ -e "$dir/failed-once" ] && exit 0
touch "$dir/failed-once"
echo "warehouse says no (test)" >&2
exit 1
EOF
    chmod +x "$script"
    # debug: "order accepted" and "order completed" are debug lines (one per order)
    start_orderd "workers.fulfilment_command=$script" "queue.backoff_base=10ms" \
        "queue.backoff_max=20ms" "log.format=json" "log.level=debug"
    local trace=4bf92f3577b34da6a3ce929d0e0e4736
    post_order OBS-TRACE -H "traceparent: 00-$trace-00f067aa0ba902b7-01"
    assert_eq "$(json_str trace_id)" "$trace" "trace_id of the 202"
    wait_until "$WORK_TIMEOUT" "the order completed" order_is "$ORDER_ID" completed
    # the fulfilment command ran twice, both times in the request's trace
    assert_eq "$(wc -l <"$T/traceparents" | tr -d ' ')" 2 "fulfilment runs"
    local tp
    while read -r tp; do
        assert_match "$tp" "^00-$trace-[0-9a-f]{16}-[0-9a-f]{2}\$" "TRACEPARENT of the fulfilment command"
    done <"$T/traceparents"
    assert_contains "$(head -n 1 "$T/stdin")" "\"trace_id\":\"$trace\"" "the order on the command's stdin"
    # the documented searches (docs/observability.md): by trace id, then by
    # trace id or order id
    grep "\"trace_id\":\"$trace\"" "$D_LOG" >"$T/trace.log" || true
    grep -q '"msg":"order accepted"' "$T/trace.log" || fail "no 'order accepted' line with the trace id"
    grep -q '"msg":"http: POST /orders -> 202 ' "$T/trace.log" || fail "no request line with the trace id"
    grep -q '"msg":"processing attempt 1 failed: .*warehouse says no' "$T/trace.log" ||
        fail "no 'processing attempt 1 failed' line with the trace id"
    grep -q "\"order_id\":\"$ORDER_ID\"" "$T/trace.log" || fail "the trace's lines do not name the order"
    grep -e "\"trace_id\":\"$trace\"" -e "\"order_id\":\"$ORDER_ID\"" "$D_LOG" >"$T/order.log" || true
    grep -q '"msg":"order completed"' "$T/order.log" || fail "no 'order completed' line for the order"
    http GET "/orders/$ORDER_ID"
    assert_match "$(json_str trace_id)" "^$trace\$" "trace_id of GET /orders/{id}"
    stop_orderd
}

# ---- scrape cost with a large queue ------------------------------------------------

# bulk_queue DB N AGE_S — adds N queued orders to the stopped daemon's
# database in one transaction: the oldest AGE_S seconds old, none visible for
# a day (so the workers leave them alone and the queue keeps its size).
bulk_queue() {
    local db=$1 n=$2 age=$3 now
    now=$(($(date +%s) * 1000))
    sqlite3 "$db" >/dev/null <<EOF
.timeout 5000
BEGIN;
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $n)
INSERT INTO orders (order_id, customer_id, items, status, attempts, created_at, traceparent)
SELECT printf('BULK%022d', i), 'BULK', '[{"item":"Bulk","quantity":1}]', 'queued', 0,
       $now - $age * 1000 + i, '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01'
FROM n;
INSERT INTO queue (order_id, enqueued_at, visible_at, receive_count)
SELECT order_id, created_at, $now + 86400000, 0 FROM orders WHERE customer_id = 'BULK'
ORDER BY created_at;
COMMIT;
EOF
}

test_scrape_cost_large_queue() {
    need promtool prometheus
    need sqlite3 sqlite3
    start_orderd "workers.count=1"
    local conf=$D_CONF db=$D_DB
    stop_orderd
    bulk_queue "$db" "$TEST_OBS_BULK_ROWS" 3600 || fail "sqlite3 could not add the bulk rows"
    start_orderd_conf "$conf"
    scrape "$T/metrics"
    promtool_metrics_silent "$T/metrics"
    assert_eq "$(sample orderd_queue_depth "$T/metrics")" "$TEST_OBS_BULK_ROWS" "orderd_queue_depth"
    local age
    age=$(sample orderd_queue_oldest_age_seconds "$T/metrics")
    awk -v a="$age" 'BEGIN { exit !(a >= 3600 && a < 3700) }' ||
        fail "orderd_queue_oldest_age_seconds is $age, want about 3600"
    # one connection, TEST_OBS_SCRAPES requests: the daemon's cost, not curl's start-up
    local urls=() i
    for ((i = 0; i < TEST_OBS_SCRAPES; i++)); do urls+=(-o /dev/null "$BASE_URL/metrics"); done
    curl -sS --max-time 120 -w '%{http_code} %{time_total}\n' "${urls[@]}" \
        >"$T/times" || fail "curl failed while scraping"
    local bad
    bad=$(awk '$1 != 200' "$T/times" | head -n 1)
    [[ -z $bad ]] || fail "a scrape answered: $bad"
    local mean max
    read -r mean max < <(awk '{ s += $2; if ($2 > m) m = $2 } END { printf "%.2f %.2f\n", s / NR * 1000, m * 1000 }' "$T/times")
    note "scrape cost: $TEST_OBS_BULK_ROWS queued, $TEST_OBS_SCRAPES scrapes: mean ${mean} ms, max ${max} ms"
    awk -v m="$mean" -v lim="$TEST_OBS_SCRAPE_MAX_MS" 'BEGIN { exit !(m <= lim) }' ||
        fail "a scrape takes ${mean} ms on average with $TEST_OBS_BULK_ROWS queued (limit ${TEST_OBS_SCRAPE_MAX_MS} ms)"
    status_json "$T/s.json"
    assert_eq "$(json_raw queue_depth "$T/s.json")" "$TEST_OBS_BULK_ROWS" "queue_depth of /status.json"
    stop_orderd
}

run_tests
