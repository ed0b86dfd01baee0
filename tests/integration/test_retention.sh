#!/usr/bin/env bash
# test_retention.sh — [retention] (SPEC "Retention"): completed orders and dead
# letters older than their duration are deleted by the sweeper, counted in
# orderd_retention_deleted_total{table}, and answer 404; queued and processing
# orders stay; a SIGHUP turns retention on.
#
# The sweeper sweeps at start and, after a sweep that found little, once a
# minute; so each case makes its orders expire first and then starts the
# sweeper's work with a start or a reload, which sweep at once.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

# retention_config CONF COMPLETED DEAD_LETTERS — sets the [retention] section of
# CONF (lib.sh's write_config knows no such section: it is appended).
retention_config() {
    local conf=$1
    sed -i '/^\[retention\]$/,$d' "$conf"
    printf '[retention]\ncompleted = %s\ndead_letters = %s\n' "$2" "$3" >>"$conf"
}

completed_metric='orderd_retention_deleted_total{table="completed"}'
dead_metric='orderd_retention_deleted_total{table="dead_letters"}'

# A command that completes every order but those of customer C-fail.
write_fail_command() {
    cat >"$T/fail.sh" <<'SH'
#!/bin/sh
if grep -q '"C-fail"'; then exit 1; fi
exit 0
SH
    chmod +x "$T/fail.sh"
}

# A command that holds every order until the file $1 exists.
write_hold_command() {
    cat >"$T/hold.sh" <<'SH'
#!/bin/sh
cat >/dev/null
while [ ! -e "$1" ]; do sleep 0.1; done
exit 0
SH
    chmod +x "$T/hold.sh"
}

test_expired_orders_are_deleted_queued_and_processing_stay() {
    write_fail_command
    start_orderd queue.max_receives=1 "workers.fulfilment_command=$T/fail.sh"
    local dir=$D_DIR id done=() dead=() keep=()
    for _ in 1 2 3; do
        post_order C-done
        done+=("$ORDER_ID")
    done
    for _ in 1 2; do
        post_order C-fail
        dead+=("$ORDER_ID")
    done
    for id in "${done[@]}"; do
        wait_until 20 "order $id completed" order_is "$id" completed
    done
    for id in "${dead[@]}"; do
        wait_until 20 "order $id dead-lettered" order_is "$id" dead_lettered
    done
    http DELETE "/admin/dlq/${dead[1]}" # a discarded order goes with the dead letters
    assert_status 204
    stop_orderd
    sleep 1.5 # all of them finished more than 1 s ago

    # The same database; every new order is held (one processing, the rest queued).
    write_hold_command
    write_config "$dir/orderd.conf" "$dir" workers.count=1 workers.fulfilment_concurrency=1 \
        "workers.fulfilment_command=$T/hold.sh $T/release"
    retention_config "$dir/orderd.conf" 1s 1s
    start_orderd_conf "$dir/orderd.conf"
    on_exit "touch '$T/release'"
    for _ in 1 2 3; do
        post_order C-keep
        keep+=("$ORDER_ID")
    done
    wait_until 30 "3 completed orders deleted" metric_is "$completed_metric" 3
    wait_until 30 "a dead letter and a discarded order deleted" metric_is "$dead_metric" 2
    for id in "${done[@]}" "${dead[@]}"; do
        http GET "/orders/$id"
        assert_status 404
    done
    wait_until 20 "the first held order processing" order_is "${keep[0]}" processing
    sleep 1.5 # past their retention: still there
    assert_eq "$(order_status "${keep[0]}")" processing "a processing order"
    assert_eq "$(order_status "${keep[1]}")" queued "a queued order"
    assert_eq "$(order_status "${keep[2]}")" queued "a queued order"
    assert_eq "$(db_query "$D_DB" 'select count(*) from orders')" 3 "orders left"
    assert_eq "$(db_query "$D_DB" 'select count(*) from dead_letters')" 0 "dead letters left"
    assert_metric orderd_dlq_depth 0 "orderd_dlq_depth"
    assert_metric orderd_queue_depth 3 "orderd_queue_depth"
    assert_eq "$(metric "$completed_metric")" 3 "completed orders deleted"
    assert_eq "$(metric "$dead_metric")" 2 "dead letters deleted"
    touch "$T/release"
    for id in "${keep[@]}"; do
        wait_until 20 "order $id completed" order_is "$id" completed
    done
    stop_orderd
}

test_sighup_turns_retention_on() {
    start_orderd
    local conf=$D_CONF ids=() id
    for _ in 1 2 3 4; do
        post_order C-done
        ids+=("$ORDER_ID")
    done
    for id in "${ids[@]}"; do
        wait_until 20 "order $id completed" order_is "$id" completed
    done
    sleep 1.5
    assert_eq "$(metric "$completed_metric")" 0 "deleted without retention"
    assert_eq "$(order_status "${ids[0]}")" completed "an order without retention"

    retention_config "$conf" 1s 0
    kill -HUP "$D_PID"
    wait_until 10 "the reload" grep -q "reload: retention keeps completed orders 1s" "$D_LOG"
    wait_until 20 "4 completed orders deleted" metric_is "$completed_metric" 4
    for id in "${ids[@]}"; do
        http GET "/orders/$id"
        assert_status 404
    done
    assert_eq "$(db_query "$D_DB" 'select count(*) from orders')" 0 "orders left"
    assert_eq "$(metric "$dead_metric")" 0 "dead letters deleted"
    stop_orderd
}

run_tests
