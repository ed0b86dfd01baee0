#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# test_nodes.sh — several orderd nodes on one PostgreSQL database (issue 9):
# what one node accepts the others see and process; a node killed with -9
# mid-work loses nothing acknowledged and its leased messages are delivered
# again by the survivor; every order is stored once; nodes that start
# together migrate once; a database restart means 503s, then recovery by
# itself.
#
# Run by tests/pg/run.sh, which starts the server and exports TEST_PG_DIR,
# TEST_PG_SOCK, TEST_PG_PORT and TEST_PG_BIN. Uses the helpers of
# tests/integration/lib.sh; each case makes its own database.
set -euo pipefail
unset TEST_STORAGE_HOOK # the nodes name their database themselves
# shellcheck source=../integration/lib.sh
. "$(dirname "$0")/../integration/lib.sh"
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

: "${TEST_PG_DIR:?run by tests/pg/run.sh}"
PG_DIR=$TEST_PG_DIR
PG_SOCK=$TEST_PG_SOCK
PG_PORT=$TEST_PG_PORT
PG_BIN=$TEST_PG_BIN

# new_db — a fresh database for this case; sets DB and DB_DSN.
new_db() {
    DB=orderd_nodes_${RANDOM}_$RANDOM
    pg_createdb "$DB"
    DB_DSN=$(pg_dsn "$DB")
}

sql() { # SQL — on the case's database
    pg_psql "$DB" "$1"
}

# start_node NAME [section.key=value ...] — a daemon on the case's database;
# sets URL_<NAME> and CTL_<NAME>.
start_node() {
    local name=$1
    shift
    start_orderd storage.backend=postgres "storage.dsn=$DB_DSN" "$@"
    printf -v "URL_$name" '%s' "$BASE_URL"
    printf -v "CTL_$name" '%s' "$D_CTL"
}

on() { # NAME — later requests go to node NAME
    local v=URL_$1
    BASE_URL=${!v}
}

test_nodes_share_orders_keys_and_dead_letters() {
    new_db
    cat >"$T/cmd.sh" <<'SH'
#!/bin/sh
# fails the orders of customer BAD until the flag exists
grep -q '"customer_id":"BAD"' && [ ! -e "$1/flag" ] && { echo "bad customer" >&2; exit 1; }
exit 0
SH
    chmod +x "$T/cmd.sh"
    local common=(queue.max_receives=1 "workers.fulfilment_command=$T/cmd.sh $T")
    start_node A "${common[@]}"
    start_node B "${common[@]}"

    on A
    post_order C-shared
    local id=$ORDER_ID
    on B
    wait_until 20 "order accepted on A completed, seen on B" order_is "$id" completed

    # an Idempotency-Key taken on A is replayed by B
    local key="nodes-$RANDOM$RANDOM" body first
    body=$(order_body C-key)
    on A
    post_json "$body" -H "Idempotency-Key: $key"
    assert_status 202
    first=$BODY
    on B
    post_json "$body" -H "Idempotency-Key: $key"
    assert_status 202
    assert_eq "$(header Idempotent-Replayed)" true "replay on the other node"
    assert_eq "$BODY" "$first" "replayed body on the other node"
    post_json "$(order_body C-other)" -H "Idempotency-Key: $key"
    assert_status 422

    # a dead letter made on either node is listed and redriven by the other
    on A
    post_order BAD
    local bad=$ORDER_ID
    on B
    wait_until 20 "order dead-lettered" order_is "$bad" dead_lettered
    http GET /admin/dlq
    assert_status 200
    assert_eq "$(json_all order_id)" "$bad" "dead letters seen from B"
    on A
    assert_metric orderd_dlq_depth 1 "orderd_dlq_depth on A"
    on B
    assert_metric orderd_dlq_depth 1 "orderd_dlq_depth on B"
    touch "$T/flag"
    http POST "/admin/dlq/$bad/redrive"
    assert_status 200
    on A
    wait_until 20 "redriven order completed" order_is "$bad" completed
    assert_metric orderd_dlq_depth 0 "orderd_dlq_depth after the redrive"
    assert_metric orderd_queue_depth 0 "orderd_queue_depth at the end"
    stop_orderd "$CTL_A"
    stop_orderd "$CTL_B"
}

all_completed() {
    [[ $(sql "select count(*) from orders where status <> 'completed'") == 0 ]]
}

test_kill9_one_node_mid_work_every_order_once() {
    new_db
    # records "NODE ORDER_ID" for every fulfilment, then takes a little while
    cat >"$T/cmd.sh" <<'SH'
#!/bin/sh
id=$(grep -o '"order_id":"[0-9A-Z]*"' | cut -d'"' -f4)
echo "$1 $id" >>"$2/fulfilled"
sleep 0.05
exit 0
SH
    chmod +x "$T/cmd.sh"
    local common=(workers.count=4 workers.fulfilment_concurrency=4 queue.visibility_timeout=3s
        workers.fulfilment_timeout=2s)
    start_node A "${common[@]}" "workers.fulfilment_command=$T/cmd.sh A $T"
    start_node B "${common[@]}" "workers.fulfilment_command=$T/cmd.sh B $T"

    # POST load spread over both nodes
    local c pids=()
    for ((c = 0; c < 6; c++)); do
        local node=A
        ((c % 2)) && node=B
        (
            on "$node"
            load_client "$T/client.$c" 100 "$T/stop" "KILL-$c"
        ) &
        pids+=($!)
    done
    wait_until 30 "node A fulfilling orders" grep -q '^A ' "$T/fulfilled"
    sleep 0.5
    kill9 "$CTL_A"
    echo "$EPOCHREALTIME" >"$T/killed_at"
    sleep 1
    touch "$T/stop"
    local pid
    for pid in "${pids[@]}"; do
        wait "$pid"
    done

    cat "$T"/client.* >"$T/all"
    awk '$2 == 202 { print $4 }' "$T/all" | sort >"$T/acked"
    local acked unexpected
    acked=$(wc -l <"$T/acked")
    ((acked > 0)) || fail "no order was accepted"
    # before the kill every answer is a 202; after it, A refuses connections.
    # A request in flight when A died ends in a curl error: 52 (no reply),
    # 55 (the send failed: killed while curl was writing), 56 (recv failed);
    # later ones in 7 (connection refused).
    unexpected=$(awk '$2 != 202 && !($2 == "000" && ($3 == 7 || $3 == 52 || $3 == 55 || $3 == 56))' "$T/all")
    [[ -z $unexpected ]] || fail "unexpected answers: $(head -n 3 <<<"$unexpected" | tr '\n' ';')"

    # every accepted order completes, on B alone now
    on B
    wait_until 60 "every order completed by the surviving node" all_completed
    sql "select order_id from orders order by order_id" >"$T/stored"
    local missing extra dups
    missing=$(comm -23 "$T/acked" "$T/stored")
    extra=$(comm -13 "$T/acked" "$T/stored" | wc -l)
    [[ -z $missing ]] || fail "$(wc -l <<<"$missing") acknowledged orders not stored: $(head -n 3 <<<"$missing" | tr '\n' ' ')"
    # stored without a 202: only the requests A was answering when it died (3 clients)
    ((extra <= 3)) || fail "$extra orders stored whose 202 never came (more than the 3 requests in flight on A)"
    # each order is stored once and fulfilled at least once
    assert_eq "$(sql 'select count(*) - count(distinct order_id) from orders')" 0 "orders stored twice"
    awk '{ print $2 }' "$T/fulfilled" | sort -u >"$T/fulfilled_ids"
    missing=$(comm -23 "$T/stored" "$T/fulfilled_ids")
    [[ -z $missing ]] || fail "completed orders never fulfilled: $(head -n 3 <<<"$missing" | tr '\n' ' ')"
    # at-least-once: a second fulfilment only for what A held when it died (4 in flight)
    dups=$(awk '{ print $2 }' "$T/fulfilled" | sort | uniq -d | wc -l)
    ((dups <= 4)) || fail "$dups orders fulfilled twice; A had at most 4 in flight"
    local by_a by_b redelivered
    by_a=$(grep -c '^A ' "$T/fulfilled" || true)
    by_b=$(grep -c '^B ' "$T/fulfilled" || true)
    ((by_b > 0)) || fail "node B fulfilled nothing"
    redelivered=$(sql "select count(*) from orders where attempts > 1")
    note "kill9: $acked accepted ($extra more stored), fulfilled by A $by_a, by B $by_b, $dups twice, $redelivered redelivered after A's lease expired"
    assert_eq "$(sql 'select count(*) from queue')" 0 "messages left in the queue"
    assert_eq "$(sql 'select count(*) from dead_letters')" 0 "dead letters"
    assert_eq "$(sql 'select sum(queue), sum(dlq) from queue_stats')" "0|0" "depth counters"
    assert_metric orderd_queue_depth 0 "orderd_queue_depth on B"
    stop_orderd "$CTL_B"
}

test_nodes_start_together_migrate_once() {
    new_db
    local i ctls=()
    for i in 1 2 3; do
        (
            start_node N storage.path="$T/n$i.db"
            echo "$D_CTL" >"$T/ctl.$i"
        ) &
    done
    wait
    for i in 1 2 3; do
        [[ -s $T/ctl.$i ]] || fail "node $i did not start"
        ctls+=("$(<"$T/ctl.$i")")
    done
    assert_eq "$(sql 'select count(*), max(version) from schema_version')" "1|3" "schema_version rows"
    local created
    created=$(cat "${ctls[0]}/stderr.log" "${ctls[1]}/stderr.log" "${ctls[2]}/stderr.log" |
        grep -c 'created postgres schema version' || true)
    assert_eq "$created" 1 "nodes that created the schema"
    for i in 0 1 2; do
        stop_orderd "${ctls[$i]}"
    done
}

readyz_is() { # STATUS
    local out=$T/ready.$BASHPID
    req "$out" GET /readyz
    [[ $(<"$out.status") == "$1" ]]
}

post_is() { # STATUS — POST one order, for wait_until
    post_json "$(order_body C-restart)"
    [[ $STATUS == "$1" ]]
}

test_database_restart_means_503_then_recovery() {
    new_db
    start_node A workers.count=1
    on A
    post_order C-before
    local before=$ORDER_ID
    wait_until 20 "first order completed" order_is "$before" completed

    pg_ctl_cmd stop -m fast
    on_exit "pg_ctl_cmd start || true"
    local t0=$SECONDS
    post_json "$(order_body C-down)"
    assert_status 503
    assert_match "$(header Retry-After)" '^[0-9]+$' "Retry-After of a POST while the database is down"
    http GET "/orders/$before"
    assert_status 503
    wait_until 10 "/readyz 503 while the database is down" readyz_is 503
    http GET /healthz
    assert_status 200
    ((SECONDS - t0 < 10)) || fail "answers took $((SECONDS - t0))s while the database was down"

    pg_ctl_cmd start
    wait_until 30 "a POST accepted again after the restart" post_is 202
    local after
    after=$(json_str order_id)
    http GET "/orders/$before"
    assert_status 200
    assert_eq "$(json_str status)" completed "order accepted before the restart"
    wait_until 20 "order accepted after the restart completed" order_is "$after" completed
    wait_until 10 "/readyz 200 again" readyz_is 200
    grep -q 'postgres is unavailable' "$D_LOG" || fail "no log line about the database going away"
    grep -q 'connected to postgres again' "$D_LOG" || fail "no log line about the database coming back"
    stop_orderd
}

run_tests
