#!/usr/bin/env bash
# test_restart.sh — what a restart keeps (SPEC "Queue semantics"): orders,
# Idempotency-Keys, dead letters, and queued messages, which the next daemon
# on the same database processes.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

test_state_survives_restart() {
    cat >"$T/cmd.sh" <<'SH'
#!/bin/sh
cat >/dev/null
[ -e "$1/flag" ] && exit 0
echo "not yet" >&2
exit 1
SH
    chmod +x "$T/cmd.sh"
    start_orderd queue.max_receives=1 "workers.fulfilment_command=$T/cmd.sh $T"
    local conf=$D_CONF key="restart-$RANDOM$RANDOM" body
    body=$(order_body C-restart)
    post_json "$body" -H "Idempotency-Key: $key"
    assert_status 202
    local first=$BODY id
    id=$(json_str order_id)
    wait_until 20 "order dead-lettered" order_is "$id" dead_lettered
    stop_orderd

    touch "$T/flag"
    start_orderd_conf "$conf"
    http GET "/orders/$id"
    assert_status 200
    assert_eq "$(json_str status)" dead_lettered "status after a restart"
    post_json "$body" -H "Idempotency-Key: $key"
    assert_status 202
    assert_eq "$(header Idempotent-Replayed)" true "replay after a restart"
    assert_eq "$BODY" "$first" "replayed body after a restart"
    post_json "$(order_body C-other)" -H "Idempotency-Key: $key"
    assert_status 422
    assert_metric orderd_dlq_depth 1 "orderd_dlq_depth after a restart"
    http GET /admin/dlq
    assert_status 200
    assert_eq "$(json_all order_id)" "$id" "dead letters after a restart"
    http POST "/admin/dlq/$id/redrive"
    assert_status 200
    wait_until 20 "redriven order completed" order_is "$id" completed
    stop_orderd
}

test_queued_orders_processed_after_restart() {
    # one slow fulfilment at a time: most orders are still queued at SIGTERM
    start_orderd workers.count=1 workers.fulfilment_concurrency=1 "workers.fulfilment_command=sleep 1"
    local ids=() i
    for ((i = 0; i < 5; i++)); do
        post_order C-queued
        ids+=("$ORDER_ID")
    done
    stop_orderd
    local queued
    queued=$(db_query "$D_DB" 'select count(*) from queue')
    ((queued >= 3)) || fail "only $queued orders left queued at SIGTERM: nothing to test"
    # the next daemon, without a command, works them off
    write_config "$D_DIR/second.conf" "$D_DIR"
    start_orderd_conf "$D_DIR/second.conf"
    local id
    for id in "${ids[@]}"; do
        wait_until 20 "order $id completed" order_is "$id" completed
        http GET "/orders/$id"
        assert_eq "$(json_raw attempts)" 1 "attempts of $id (a drain releases leases without counting them)"
    done
    assert_metric orderd_queue_depth 0 "orderd_queue_depth at the end"
    stop_orderd
}

run_tests
