#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# test_immediate_stop.sh — the database crashes under load (issue 22, part 4):
# two orderd nodes on one PostgreSQL database take orders from six clients;
# `pg_ctl stop -m immediate` (no checkpoint, no shutdown: PostgreSQL's own
# crash, recovered from its WAL at the next start) at a random moment; the
# server is started again while the clients go on. The nodes are not
# restarted: they must notice (503, /readyz 503), reconnect by themselves and
# accept orders again. Every order that got a 202 — before, during or after
# the crash — must be stored exactly once and completed; the queue drains.
# Orders stored without a 202 (a COMMIT whose answer the crash cut off) are
# allowed and counted.
#
# Run by tests/pg/run.sh (part immediate_stop), which starts the server and
# exports TEST_PG_DIR, TEST_PG_SOCK, TEST_PG_PORT and TEST_PG_BIN. Uses the
# helpers of tests/integration/lib.sh; the case makes its own database.
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

new_db() { # a fresh database for this case; sets DB and DB_DSN
    DB=orderd_stop_${RANDOM}_$RANDOM
    pg_createdb "$DB"
    DB_DSN=$(pg_dsn "$DB")
}

sql() { # SQL — on the case's database
    pg_psql "$DB" "$1"
}

# start_node NAME [section.key=value ...] — sets URL_<NAME> and CTL_<NAME>.
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

acked_count_at_least() { # N — 202s recorded by the clients so far
    local n
    n=$(cat "$T"/client.* 2>/dev/null | awk '$2 == 202' | wc -l)
    ((n >= $1))
}

# acked_since_at_least EPOCH N — 202s to requests started after EPOCH.
acked_since_at_least() {
    local n
    n=$(cat "$T"/client.* | awk -v t="$1" '$2 == 202 && $1 > t' | wc -l)
    ((n >= $2))
}

readyz_is() { # STATUS
    local out=$T/ready.$BASHPID
    req "$out" GET /readyz
    [[ $(<"$out.status") == "$1" ]]
}

node_readyz_is() { # NODE STATUS
    on "$1"
    readyz_is "$2"
}

# node_accepts NODE — one POST to NODE answered 202 (its id joins the acked).
node_accepts() {
    on "$1"
    post_json "$(order_body "STOP-probe-$1")"
    [[ $STATUS == 202 ]] || return 1
    json_str order_id >>"$T/acked.probe"
}

all_completed() {
    [[ $(sql "select count(*) from orders where status <> 'completed'") == 0 ]]
}

test_immediate_stop_under_load_every_202_once() {
    new_db
    local common=(workers.count=2 queue.visibility_timeout=3s)
    start_node A "${common[@]}"
    start_node B "${common[@]}"
    : >"$T/acked.probe"

    local c pids=()
    for ((c = 0; c < 6; c++)); do
        local node=A
        ((c % 2)) && node=B
        (
            on "$node"
            load_client "$T/client.$c" 1000000 "$T/stop" "STOP-$c"
        ) &
        pids+=($!)
    done
    wait_until 60 "100 orders accepted before the crash" acked_count_at_least 100
    local ms=$((300 + RANDOM % 1200))
    sleep "$((ms / 1000)).$(printf '%03d' $((ms % 1000)))"

    local acked_before t_stop t_up
    acked_before=$(cat "$T"/client.* | awk '$2 == 202' | wc -l)
    t_stop=$EPOCHREALTIME
    pg_ctl_cmd stop -m immediate
    on_exit "pg_ctl_cmd status || pg_ctl_cmd start || true"
    wait_until 20 "node A notices the database is gone (/readyz 503)" node_readyz_is A 503
    wait_until 20 "node B notices the database is gone (/readyz 503)" node_readyz_is B 503
    pg_ctl_cmd start
    wait_until 60 "node A accepts orders again, by itself" node_accepts A
    wait_until 60 "node B accepts orders again, by itself" node_accepts B
    t_up=$EPOCHREALTIME
    wait_until 60 "100 more orders accepted after the restart" acked_since_at_least "$t_up" 100
    touch "$T/stop"
    local pid
    for pid in "${pids[@]}"; do
        wait "$pid"
    done

    cat "$T"/client.* >"$T/all"
    { awk '$2 == 202 { print $4 }' "$T/all"; cat "$T/acked.probe"; } | sort >"$T/acked"
    local acked s503 unexpected
    acked=$(wc -l <"$T/acked")
    s503=$(awk '$2 == 503' "$T/all" | wc -l)
    # the nodes stay up: every answer is a 202 or, while the database is
    # down, a 503
    unexpected=$(awk '$2 != 202 && $2 != 503' "$T/all")
    [[ -z $unexpected ]] || fail "answers other than 202 and 503: $(head -n 3 <<<"$unexpected" | tr '\n' ';')"
    ((s503 > 0)) || fail "no POST was answered 503: the crash went unnoticed"
    [[ -z $(uniq -d "$T/acked") ]] || fail "one order id acknowledged twice: $(uniq -d "$T/acked" | head -n 3 | tr '\n' ' ')"

    on A
    wait_until 90 "every order completed after the restart" all_completed
    sql "select order_id from orders order by order_id" >"$T/stored"
    local missing extra
    missing=$(comm -23 "$T/acked" "$T/stored")
    extra=$(comm -13 "$T/acked" "$T/stored" | wc -l)
    [[ -z $missing ]] || fail "$(wc -l <<<"$missing") acknowledged orders not stored after the restart: $(head -n 3 <<<"$missing" | tr '\n' ' ')"
    assert_eq "$(sql 'select count(*) - count(distinct order_id) from orders')" 0 "orders stored twice"
    assert_eq "$(sql 'select count(*) from queue')" 0 "messages left in the queue"
    assert_eq "$(sql 'select count(*) from dead_letters')" 0 "dead letters"
    assert_metric orderd_queue_depth 0 "orderd_queue_depth on A"
    on B
    assert_metric orderd_queue_depth 0 "orderd_queue_depth on B"
    local ctl
    for ctl in "$CTL_A" "$CTL_B"; do
        grep -q 'connected to postgres again' "$ctl/stderr.log" ||
            fail "a node logged no reconnection: $(grep -m 3 postgres "$ctl/stderr.log" | tr '\n' ' ')"
    done
    note "immediate_stop: $acked acknowledged ($acked_before before the crash ${ms} ms into the load), all" \
        "stored once and completed; $extra stored without a 202; $s503 POSTs answered 503;" \
        "both nodes accepted orders again $(awk -v a="$t_stop" -v b="$t_up" 'BEGIN { printf "%.1f", b - a }') s" \
        "after the stop, without a restart"
    stop_orderd "$CTL_A"
    stop_orderd "$CTL_B"
}

run_tests
