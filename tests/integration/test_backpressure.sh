#!/usr/bin/env bash
# test_backpressure.sh — max_depth: when the queue holds max_depth messages,
# POST /orders answers 503 with Retry-After (SPEC "Queue semantics").
set -euo pipefail
# shellcheck source-path=SCRIPTDIR
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

test_queue_full_gets_503() {
    # one fulfilment at a time, 5 s each, cannot keep up with 5 quick POSTs
    start_orderd queue.max_depth=3 workers.count=1 workers.fulfilment_concurrency=1 \
        "workers.fulfilment_command=sleep 5" workers.fulfilment_timeout=20s
    local i ids=()
    for ((i = 1; i <= 3; i++)); do
        post_order C-bp
        ids+=("$ORDER_ID")
    done
    local before
    before=$(metric orderd_orders_received_total)
    for ((i = 4; i <= 6; i++)); do
        post_json "$(order_body C-bp)"
        [[ $STATUS == 503 ]] || fail "POST number $i at max_depth 3: status $STATUS, want 503 ($BODY)"
        assert_match "$(header Retry-After)" '^[0-9]+$' "Retry-After of the 503"
        assert_eq "$(header Content-Type)" application/problem+json "content type of the 503"
    done
    assert_metric orderd_queue_depth 3 orderd_queue_depth
    # the age of the oldest message is known
    wait_until 10 "orderd_queue_oldest_age_seconds above 0.2" metric_above orderd_queue_oldest_age_seconds 0.2
    # the first is leased by the worker running its command: "processing"
    wait_until 10 "first order processing" order_is "${ids[0]}" processing
    assert_eq "$(order_status "${ids[1]}")" queued "status of a waiting order"
    http GET "/orders?status=processing"
    assert_status 200
    assert_eq "$(json_all order_id | tr '\n' ' ')" "${ids[0]} " "GET /orders?status=processing"
    http GET "/orders?status=queued"
    assert_eq "$(json_all order_id | tr '\n' ' ')" "${ids[2]} ${ids[1]} " "GET /orders?status=queued"
    assert_metric orderd_orders_received_total "$before" "orderd_orders_received_total after refusals"
    # accepted orders stay readable
    http GET "/orders/${ids[0]}"
    assert_status 200
    assert_eq "$(db_query "$D_DB" 'select count(*) from orders')" 3 "orders stored"
    # reads keep working, and the probes say the daemon is alive
    http GET /healthz
    assert_status 200
    # SIGTERM while the worker runs its command: it finishes, the daemon exits 0
    stop_orderd
}

run_tests
