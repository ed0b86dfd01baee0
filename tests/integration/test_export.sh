#!/usr/bin/env bash
# test_export.sh — `orderd -c FILE export` (SPEC "Retention and operator
# commands", orderd(8) EXPORT) with the real binary, beside a running daemon:
# one valid JSON object a line, the same as GET /orders/{id}, in order_id
# order, the filters (--status, --customer, --before in each form), one
# snapshot while orders keep coming, bad arguments (exit 1), output errors
# (a full disk, a closed pipe: exit 1), a missing database or another schema
# version (exit 2), and memory that does not grow with the number of rows
# (SQLite only: 20 000 vs 200 000 rows written with the sqlite3 CLI).
#
# Runs on postgres too (tests/pg/run.sh, TEST_PG_FILES): every case but the
# memory one, which fills a SQLite file.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

# A growth of the exporter's peak RSS from 20 000 to 200 000 rows beyond this
# is memory that grows with the rows.
: "${TEST_EXPORT_RSS_SLACK_KB:=4096}"

# export_run NAME [ARGS...] — runs the export of the daemon's config D_CONF;
# stdout in $T/NAME.out, stderr in $T/NAME.err, exit status in EXPORT_RC.
export_run() {
    local name=$1
    shift
    EXPORT_RC=0
    "$TEST_ORDERD_BIN" -c "$D_CONF" export "$@" >"$T/$name.out" 2>"$T/$name.err" || EXPORT_RC=$?
}

# export_ok NAME [ARGS...] — export_run that must succeed with valid NDJSON:
# each line one compact JSON object (jq prints it back byte for byte), ids
# ascending, and the summary line; sets EXPORTED (the line count).
export_ok() {
    local name=$1
    export_run "$@"
    [[ $EXPORT_RC == 0 ]] || fail "export $*: exit status $EXPORT_RC: $(head -c 600 "$T/$name.err")"
    jq -c . "$T/$name.out" >"$T/$name.jq" 2>"$T/$name.jqerr" ||
        fail "export $*: not JSON lines: $(head -c 300 "$T/$name.jqerr")"
    cmp -s "$T/$name.jq" "$T/$name.out" || fail "export $*: lines are not one compact object each"
    [[ -z $(jq -r 'select(type != "object") | "x"' "$T/$name.out") ]] ||
        fail "export $*: a line is not an object"
    jq -r .order_id "$T/$name.out" >"$T/$name.ids"
    sort -c "$T/$name.ids" 2>/dev/null || fail "export $*: ids are not in ascending order"
    [[ -z $(uniq -d "$T/$name.ids") ]] || fail "export $*: an order twice"
    EXPORTED=$(wc -l <"$T/$name.out")
    local noun=orders
    ((EXPORTED == 1)) && noun=order
    assert_eq "$(tail -n 1 "$T/$name.err")" "exported $EXPORTED $noun" "export $*: summary line"
}

# count_status NAME STATUS — lines of NAME's output with that status.
count_status() {
    jq -r --arg s "$2" 'select(.status == $s) | .order_id' "$T/$1.out" | wc -l
}

# A fulfilment that fails the orders of customers named FAIL-*: with
# max_receives 1 their first failure dead-letters them.
fulfilment_script() {
    cat >"$T/fulfil.sh" <<'SH'
#!/bin/sh
if grep -q 'FAIL-' ; then
    echo "refused by the test" >&2
    exit 3
fi
exit 0
SH
    chmod +x "$T/fulfil.sh"
}

# Posts 5 orders of OK-A, 3 of OK-B, 2 of FAIL-1; waits until all are
# settled; discards one dead letter. Sets IDS (all), DEAD, DISCARDED.
post_and_settle() {
    local i
    IDS=()
    for i in 1 2 3 4 5; do
        post_order OK-A
        IDS+=("$ORDER_ID")
    done
    for i in 1 2 3; do
        post_order OK-B
        IDS+=("$ORDER_ID")
    done
    post_order FAIL-1
    DEAD=$ORDER_ID
    IDS+=("$ORDER_ID")
    post_order FAIL-1
    DISCARDED=$ORDER_ID
    IDS+=("$ORDER_ID")
    for i in "${IDS[@]:0:8}"; do
        wait_until 30 "order $i completed" order_is "$i" completed
    done
    wait_until 30 "order $DEAD dead-lettered" order_is "$DEAD" dead_lettered
    wait_until 30 "order $DISCARDED dead-lettered" order_is "$DISCARDED" dead_lettered
    http DELETE "/admin/dlq/$DISCARDED"
    assert_status 204
}

test_export_beside_the_daemon() {
    fulfilment_script
    start_orderd queue.max_receives=1 "workers.fulfilment_command=$T/fulfil.sh"
    post_and_settle

    export_ok all
    assert_eq "$EXPORTED" 10 "orders exported"
    assert_eq "$(count_status all completed)" 8 "completed orders"
    assert_eq "$(count_status all dead_lettered)" 1 "dead-lettered orders"
    assert_eq "$(count_status all discarded)" 1 "discarded orders"
    assert_eq "$(sort "$T/all.ids" | tr '\n' ' ')" "$(printf '%s\n' "${IDS[@]}" | sort | tr '\n' ' ')" \
        "the ids exported"
    # each line is what GET /orders/{id} answers, byte for byte
    local line id
    while IFS= read -r line; do
        id=$(jq -r .order_id <<<"$line")
        http GET "/orders/$id"
        assert_status 200
        assert_eq "$line" "$BODY" "export line of $id vs GET /orders/$id"
    done <"$T/all.out"
    assert_contains "$(grep "\"$DEAD\"" "$T/all.out")" '"last_error":"' "the dead letter's last_error"
    assert_contains "$(grep "\"$DISCARDED\"" "$T/all.out")" '"discarded_at":"' "discarded_at"

    export_ok completed --status completed
    assert_eq "$EXPORTED" 8 "--status completed"
    export_ok dead --status dead_lettered
    assert_eq "$(<"$T/dead.ids")" "$DEAD" "--status dead_lettered"
    export_ok discarded --status=discarded
    assert_eq "$(<"$T/discarded.ids")" "$DISCARDED" "--status=discarded"
    export_ok queued --status queued
    assert_eq "$EXPORTED" 0 "--status queued"
    export_ok b --customer OK-B
    assert_eq "$EXPORTED" 3 "--customer OK-B"
    export_ok bc --customer OK-B --status completed
    assert_eq "$EXPORTED" 3 "--customer OK-B --status completed"
    export_ok fail --customer FAIL-1 --status completed
    assert_eq "$EXPORTED" 0 "--customer FAIL-1 --status completed"
    export_ok none --customer nobody
    assert_eq "$EXPORTED" 0 "--customer nobody"
    stop_orderd
}

# created_at of an order, as GET shows it (RFC 3339 UTC, ms).
created_at() {
    http GET "/orders/$1"
    assert_status 200
    json_str created_at
}

test_export_before() {
    start_orderd
    local i first=() second=()
    for i in 1 2 3 4; do
        post_order EARLY
        first+=("$ORDER_ID")
    done
    sleep 0.05
    for i in 1 2 3; do
        post_order LATE
        second+=("$ORDER_ID")
    done
    local cut
    cut=$(created_at "${second[0]}")
    assert_match "$cut" '^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z$' "created_at"
    [[ $(created_at "${first[3]}") < $cut ]] || fail "the groups were created in the same ms"

    export_ok cut --before "$cut"
    assert_eq "$(tr '\n' ' ' <"$T/cut.ids")" "$(printf '%s ' "${first[@]}")" "--before $cut"
    # the same instant with an offset, and with a fraction finer than a ms
    local secs ms offset
    secs=$(date -u -d "${cut%.*}Z" +%s)
    ms=${cut##*.}
    ms=${ms%Z}
    offset=$(TZ=Etc/GMT-2 date -d "@$secs" "+%Y-%m-%dT%H:%M:%S.${ms}%:z")
    assert_match "$offset" '\+02:00$' "the time with an offset"
    export_ok offset --before "$offset"
    assert_eq "$EXPORTED" 4 "--before $offset"
    export_ok lower --before "${cut/T/t}"
    assert_eq "$EXPORTED" 4 "--before with a lower-case t"
    # 1 µs after the first LATE order's ms: it was created before that
    export_ok micro --before "${cut%Z}001Z"
    assert_eq "$EXPORTED" 5 "--before ${cut%Z}001Z"
    # dates: midnight UTC
    export_ok old --before 2001-01-01
    assert_eq "$EXPORTED" 0 "--before 2001-01-01"
    export_ok future --before 2999-12-31
    assert_eq "$EXPORTED" 7 "--before 2999-12-31"
    export_ok both --before 2999-12-31T23:59:59Z --customer LATE
    assert_eq "$EXPORTED" 3 "--before and --customer"
    stop_orderd
}

# fill_rows DB FROM TO — completed orders FROM..TO-1 written straight into
# the daemon's tables (SQLite, or postgres through TEST_STORAGE_HOOK), as the
# daemon writes them, with a fulfilment result on every tenth; their ids
# ("01" and 24 digits) sort before the daemon's own.
fill_rows() {
    if [[ -n $TEST_STORAGE_HOOK ]]; then
        db_query "$1" "
            INSERT INTO orders (order_id, customer_id, items, status, attempts, created_at,
                                processed_at, traceparent, fulfilment_result)
            SELECT '01' || lpad(i::text, 24, '0'), 'CUST-' || (i % 1000),
                   '[{\"item\":\"widget-' || (i % 97) || '\",\"quantity\":' || (1 + i % 9) || '}]',
                   'completed', 1, 1700000000000 + i, 1700000000000 + i + 5,
                   '00-' || lpad(to_hex(i + 1), 32, '0') || '-' || lpad(to_hex(i + 1), 16, '0') || '-01',
                   CASE WHEN i % 10 = 0 THEN '{\"shipment\":\"S-' || i || '\"}' END
            FROM generate_series($2, $3 - 1) AS i" >/dev/null
        return
    fi
    sqlite3 "$1" "
        WITH RECURSIVE n(i) AS (SELECT $2 UNION ALL SELECT i + 1 FROM n WHERE i + 1 < $3)
        INSERT INTO orders (order_id, customer_id, items, status, attempts, created_at,
                            processed_at, traceparent, fulfilment_result)
        SELECT '01' || printf('%024d', i), 'CUST-' || (i % 1000),
               '[{\"item\":\"widget-' || (i % 97) || '\",\"quantity\":' || (1 + i % 9) || '}]',
               'completed', 1, 1700000000000 + i, 1700000000000 + i + 5,
               '00-' || printf('%032x', i + 1) || '-' || printf('%016x', i + 1) || '-01',
               CASE WHEN i % 10 = 0 THEN '{\"shipment\":\"S-' || i || '\"}' END
        FROM n"
}

# One snapshot while orders keep arriving: a client posts orders one after
# the other (each waits for its 202), so what is committed at any instant is
# a prefix of its orders; the export, slowed by 50 000 older rows, must hold
# exactly such a prefix (nothing later, no gap), and a later export all.
test_export_while_orders_arrive() {
    start_orderd
    stop_orderd
    fill_rows "$D_DB" 0 50000
    start_orderd_conf "$D_CONF"
    local stop=$T/stop
    load_client "$T/load" 100000 "$stop" DURING &
    local loader=$!
    wait_until 20 "the first order of the load" grep -q ' 202 ' "$T/load"
    export_ok during
    local during=$EXPORTED
    touch "$stop"
    wait "$loader"
    awk '$2 == 202 { print $4 }' "$T/load" >"$T/accepted"
    local seen k
    seen=$(jq -r 'select(.customer_id == "DURING") | .order_id' "$T/during.out")
    k=$(grep -c . <<<"$seen" || true)
    assert_eq "$((during - k))" 50000 "orders of before the load in the export"
    assert_eq "$(sort <<<"$seen")" "$(head -n "$k" "$T/accepted" | sort)" \
        "the export's orders of the load: the first $k accepted"
    export_ok after
    assert_eq "$(jq -r 'select(.customer_id == "DURING") | .order_id' "$T/after.out" | sort)" \
        "$(sort "$T/accepted")" "the orders of the load in a later export"
    note "an export of $during orders during a load held $k of its $(wc -l <"$T/accepted") orders"
    stop_orderd
}

# export_fails NAME RC MESSAGE ARGS... — export ARGS must exit RC with
# MESSAGE on stderr and nothing on stdout.
export_fails() {
    local name=$1 rc=$2 msg=$3
    shift 3
    export_run "$name" "$@"
    assert_eq "$EXPORT_RC" "$rc" "exit status of export $*"
    assert_contains "$(<"$T/$name.err")" "$msg" "stderr of export $*"
    [[ ! -s $T/$name.out ]] || fail "export $*: wrote to stdout: $(head -c 200 "$T/$name.out")"
}

test_export_bad_arguments() {
    start_orderd
    post_order C-1
    export_fails st 1 "unknown status 'bogus'; one of: queued, processing, completed, dead_lettered, discarded" \
        --status bogus
    export_fails st2 1 "--status is given twice" --status queued --status completed
    export_fails nov 1 "--status needs a value" --status
    export_fails opt 1 "unknown option --zap" --zap
    export_fails pos 1 "unexpected argument 'extra'" extra
    export_fails cust 1 "--customer needs a customer_id" --customer ""
    local t
    for t in yesterday 2026-02-30 2026-13-01 "2026-11-01 00:00:00" 2026-11-01T00:00:00 \
        2026-11-01T24:00:00Z 2026-11-01T00:00Z 2026-11-01T00:00:00+2:00 2026-11-01T00:00:00.Z \
        1970-01-01 "2026-11-01T00:00:00Z " 26-11-01; do
        export_fails before 1 "--before '$t' is not a time" --before "$t"
    done
    export_run help --help
    assert_eq "$EXPORT_RC" 0 "export --help"
    assert_contains "$(<"$T/help.out")" "usage: orderd -c FILE export" "export --help"
    stop_orderd
}

test_export_output_errors() {
    start_orderd
    post_order C-1
    post_order C-2
    local rc=0
    "$TEST_ORDERD_BIN" -c "$D_CONF" export >/dev/full 2>"$T/full.err" || rc=$?
    assert_eq "$rc" 1 "export to a full disk"
    assert_contains "$(<"$T/full.err")" "cannot write to stdout" "export to a full disk"
    assert_contains "$(<"$T/full.err")" "No space left on device" "export to a full disk"
    [[ $(wc -l <"$T/full.err") == 1 ]] || fail "export to a full disk: more than one line: $(<"$T/full.err")"
    # a pipe whose reader is gone before the first write
    ERR=$T/pipe.err python3 -c '
import os, subprocess, sys
r, w = os.pipe()
os.close(r)
p = subprocess.run(sys.argv[1:], stdout=w, stderr=open(os.environ["ERR"], "w"))
print(p.returncode)' "$TEST_ORDERD_BIN" -c "$D_CONF" export >"$T/pipe.rc"
    assert_eq "$(<"$T/pipe.rc")" 1 "export to a closed pipe (a negative status is a signal)"
    assert_contains "$(<"$T/pipe.err")" "Broken pipe" "export to a closed pipe"
    stop_orderd
}

test_export_missing_database() {
    local dir=$T/nothing conf=$T/missing.conf rc=0
    mkdir "$dir"
    if [[ -n $TEST_STORAGE_HOOK ]]; then
        # a database that does not exist on the test's server
        local dsn
        dsn=$($TEST_STORAGE_HOOK config "$dir" | sed -n 's/^storage\.dsn=//p')
        [[ $dsn == postgresql:///*\?* ]] || fail "no dsn URI from $TEST_STORAGE_HOOK: '$dsn'"
        printf '[storage]\nbackend = postgres\ndsn = %s\n[log]\nformat = text\n' \
            "postgresql:///orderd_no_such_db?${dsn#*\?}" >"$conf"
    else
        printf '[storage]\npath = %s/orderd.db\n[log]\nformat = text\n' "$dir" >"$conf"
    fi
    "$TEST_ORDERD_BIN" -c "$conf" export >"$T/m.out" 2>"$T/m.err" || rc=$?
    assert_eq "$rc" 2 "export of a missing database"
    [[ ! -s $T/m.out ]] || fail "export of a missing database wrote to stdout"
    if [[ -n $TEST_STORAGE_HOOK ]]; then
        assert_contains "$(<"$T/m.err")" "orderd_no_such_db" "the error names the database"
    else
        assert_contains "$(<"$T/m.err")" "cannot read $dir/orderd.db: No such file or directory" \
            "the error names the file"
        [[ -z $(ls -A "$dir") ]] || fail "export created files: $(ls -A "$dir")"
    fi
}

test_export_other_schema_version() {
    start_orderd
    post_order C-1
    stop_orderd
    local want
    if [[ -n $TEST_STORAGE_HOOK ]]; then
        db_query "$D_DB" "UPDATE schema_version SET version = 2" >/dev/null
        want="has schema 2, this orderd reads 3: run the daemon once to migrate it"
    else
        sqlite3 "$D_DB" "PRAGMA user_version = 3"
        want="has database schema 3, this orderd reads 4: run the daemon once to migrate it"
    fi
    export_fails old 2 "$want"
    if [[ -n $TEST_STORAGE_HOOK ]]; then
        db_query "$D_DB" "UPDATE schema_version SET version = 9" >/dev/null
    else
        sqlite3 "$D_DB" "PRAGMA user_version = 9"
    fi
    export_fails new 2 "read it with the orderd that wrote it"
}

# ---- memory ----------------------------------------------------------------------

# An unsanitized orderd for the memory case: ASan keeps freed memory in
# quarantine (up to 256 MiB), which a peak RSS would count. TEST_ORDERD_BIN
# if it is one, else build/orderd (make test builds it first).
plain_bin() {
    local bin syms
    for bin in "$TEST_ORDERD_BIN" "$REPO_ROOT/build/orderd"; do
        [[ -x $bin ]] || continue
        syms=$(nm -D "$bin" 2>/dev/null || true)
        [[ $syms =~ __(asan|tsan|msan)_init ]] && continue
        "$bin" -c /dev/null export --help >/dev/null 2>&1 || continue
        echo "$bin"
        return 0
    done
}

# peak_rss_kb NAME ARGS... — runs orderd ARGS with stdout to /dev/null; prints
# its peak RSS in KiB; its stderr in $T/NAME.err.
peak_rss_kb() {
    local name=$1
    shift
    ERR=$T/$name.err python3 -c '
import os, resource, subprocess, sys
p = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=open(os.environ["ERR"], "w"))
if p.returncode != 0:
    sys.exit("exit status %d" % p.returncode)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)' "$@"
}

test_export_memory_does_not_grow_with_rows() {
    [[ -z $TEST_STORAGE_HOOK ]] || skip "the rows are written into a SQLite file"
    local bin
    bin=$(plain_bin)
    [[ -n $bin ]] || skip "no unsanitized orderd with export (build one: make)"
    start_orderd
    stop_orderd # the schema, created by the daemon
    local small big t0
    fill_rows "$D_DB" 0 20000
    small=$(peak_rss_kb small "$bin" -c "$D_CONF" export)
    assert_eq "$(tail -n 1 "$T/small.err")" "exported 20000 orders" "export of 20 000 rows"
    t0=$EPOCHREALTIME
    fill_rows "$D_DB" 20000 200000
    note "filled 180 000 rows in $(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }') s"
    t0=$EPOCHREALTIME
    big=$(peak_rss_kb big "$bin" -c "$D_CONF" export)
    assert_eq "$(tail -n 1 "$T/big.err")" "exported 200000 orders" "export of 200 000 rows"
    note "peak RSS of $bin export: $small KiB for 20 000 rows, $big KiB for 200 000" \
        "($(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }') s)"
    ((big - small <= TEST_EXPORT_RSS_SLACK_KB)) ||
        fail "peak RSS grew from $small KiB (20 000 rows) to $big KiB (200 000 rows)"
}

run_tests
