#!/usr/bin/env bash
# bench/retention.sh — what retention costs durable intake (issue 20): orderd
# purges 1 M expired orders while wrk posts orders, against the same run
# without the purge, in the same session (ratios are the result; absolute
# numbers move with the machine: docs/performance.md). Targets: req/s with
# the purge >= 0.8 of without, p99 <= 1.5x. And what happens to the SQLite
# file: its size with 1 M orders, after they are purged, and after 1 M more.
#
#   bash bench/retention.sh
#   BENCH_ROUNDS=1 BENCH_ROWS=200000 bash bench/retention.sh      (a quick look)
#
# How: orderd creates a database, and sqlite3 fills it in one transaction
# with BENCH_ROWS completed orders created and processed 2-3 days ago (valid
# ULIDs of those times, the row sizes of bench/post_order.lua's order); it is
# checkpointed and kept as the pristine copy. Each round then runs, each on a
# fresh copy of it, with durability full and wrk (BENCH_WRK_THREADS threads,
# BENCH_CONNS connections, bench/post_order.lua) as bench/run.sh does:
#   purge     orderd starts with retention off; after BENCH_WARMUP_SECONDS of
#             wrk, a SIGHUP sets [retention] completed = 1d and the sweeper
#             starts deleting. /metrics is polled every 0.2 s; when
#             orderd_retention_deleted_total{table="completed"} reaches
#             BENCH_ROWS, wrk is stopped (SIGINT: it prints its statistics).
#             purge_s is the time from the SIGHUP to then.
#   none      the same, without the SIGHUP, for as long as the purge run took.
# cpu_s is the CPU time orderd used in the run (all threads). The purge's own
# cost, in each round's line, is what the purge run used beyond its intake
# at the other run's CPU per order: other load on the machine moves it less
# than the rates.
# Rounds run "purge" first (its length sets the other's). A purge that has
# not ended after BENCH_MAX_SECONDS stops the run and is reported as such.
#
# BENCH_MODE=alternate measures the same on a machine whose other load comes
# and goes (a shared VM): one orderd on one copy, wrk in windows of
# BENCH_WINDOW_SECONDS, the purge turned on and off by SIGHUP between them in
# pairs ordered on-off, off-on, ... (drift cancels), until the purge is done;
# each window is a row, and the ratios are of the on windows' total req/s to
# the off windows', and of the median p99s. purge_s is then the time the purge
# was on.
#
# Then the file: a copy of the pristine database, orderd with retention on
# and no load (the unloaded purge time), stopped; its size and freelist; then
# BENCH_ROWS more orders written by sqlite3, and the size and freelist again.
#
# Settings (environment): BENCH_ORDERD_BIN (else TEST_ORDERD_BIN, else
# build/orderd; copied first), BENCH_ROWS (1000000), BENCH_ROUNDS (3),
# BENCH_CONNS (64), BENCH_WRK_THREADS (2), BENCH_WARMUP_SECONDS (1),
# BENCH_MAX_SECONDS (600), BENCH_MODE (runs | alternate), BENCH_WINDOW_SECONDS
# (10).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
# shellcheck source-path=SCRIPTDIR
# shellcheck source=wrk.sh
. "$here/wrk.sh"
bin=${BENCH_ORDERD_BIN:-${TEST_ORDERD_BIN:-$root/build/orderd}}
rows=${BENCH_ROWS:-1000000}
rounds=${BENCH_ROUNDS:-3}
conns=${BENCH_CONNS:-64}
threads=${BENCH_WRK_THREADS:-2}
warmup=${BENCH_WARMUP_SECONDS:-1}
max_seconds=${BENCH_MAX_SECONDS:-600}
mode=${BENCH_MODE:-runs}
window=${BENCH_WINDOW_SECONDS:-10}
deleted_series='orderd_retention_deleted_total{table="completed"}'

tmp=$(mktemp -d /tmp/orderd-bench-retention.XXXXXX)
orderd_pid=""
wrk_pid=""
alive() {
    local state
    state=$(sed -n 's/.*) \([A-Za-z]\).*/\1/p' "/proc/$1/stat" 2>/dev/null) || return 1
    [ -n "$state" ] && [ "$state" != Z ]
}
cleanup() {
    [ -n "$wrk_pid" ] && kill -INT "$wrk_pid" 2>/dev/null && wait "$wrk_pid" 2>/dev/null
    [ -n "$orderd_pid" ] && kill -KILL "$orderd_pid" 2>/dev/null && wait "$orderd_pid" 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

die() {
    echo "bench-retention: $*" >&2
    exit 1
}

for tool in wrk curl sqlite3; do
    command -v "$tool" >/dev/null || die "$tool is missing (make deps-bench)"
done
[ -x "$bin" ] || die "$bin is missing (make)"
cp "$bin" "$tmp/orderd" # others may rebuild the tree meanwhile
bin=$tmp/orderd

# write_config FILE DB COMPLETED — durable intake as bench/run.sh; retention completed.
write_config() {
    cat >"$1" <<EOF
[server]
listen = 127.0.0.1:0
max_connections = 4096
max_connections_per_ip = 0
[storage]
path = $2
durability = full
[queue]
max_depth = 100000000
[retention]
completed = $3
[log]
level = warn
EOF
}

# start_orderd CONF — sets orderd_pid and orderd_port.
start_orderd() {
    : >"$tmp/orderd.log"
    ORDERD_LOG_LEVEL=info "$bin" -c "$1" 2>"$tmp/orderd.log" &
    orderd_pid=$!
    for _ in $(seq 1 600); do
        orderd_port=$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$tmp/orderd.log" | head -1)
        [ -n "$orderd_port" ] && return
        alive "$orderd_pid" || break
        sleep 0.05
    done
    cat "$tmp/orderd.log" >&2
    die "orderd did not start"
}

stop_orderd() {
    local rc=0
    kill -TERM "$orderd_pid"
    wait "$orderd_pid" || rc=$?
    orderd_pid=""
    [ "$rc" -eq 0 ] || { tail -n 20 "$tmp/orderd.log" >&2; die "orderd exited $rc"; }
}

metric() {
    curl -s --max-time 2 "http://127.0.0.1:$orderd_port/metrics" |
        awk -v m="$1" '$1 == m { v = $2 } END { print (v == "" ? 0 : v) }'
}

now() {
    date +%s.%N
}

# cpu_s PID — CPU seconds (user + system, all threads) the process has used.
cpu_s() {
    awk -v hz="$(getconf CLK_TCK)" '{ printf "%.2f", ($14 + $15) / hz }' "/proc/$1/stat"
}

mib() {
    awk -v b="$1" 'BEGIN { printf "%.1f", b / 1048576 }'
}

# db_size DB — bytes of the file and its -wal (orderd stopped: the WAL is empty).
db_size() {
    local total
    total=$(stat -c %s "$1")
    [ -e "$1-wal" ] && total=$((total + $(stat -c %s "$1-wal")))
    echo "$total"
}

# insert_old DB N FROM_MS — N completed orders, ids and created_at FROM_MS +
# 50 ms apart, processed 100 ms after, in one transaction. An id is the ULID
# of its time (10 Crockford characters) and 16 random hex digits (hex is
# Crockford too). Names only the columns it sets.
insert_old() {
    local db=$1 n=$2 from=$3
    sqlite3 -bail "$db" <<SQL >/dev/null || die "sqlite3 could not fill $db"
PRAGMA journal_mode = WAL;
BEGIN IMMEDIATE;
WITH RECURSIVE
  n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < $n - 1),
  t(ms) AS (SELECT $from + i * 50 FROM n),
  a(c) AS (SELECT '0123456789ABCDEFGHJKMNPQRSTVWXYZ')
INSERT INTO orders (order_id, customer_id, items, status, attempts, created_at, processed_at,
                    traceparent)
SELECT substr(c, ((ms >> 45) & 31) + 1, 1) || substr(c, ((ms >> 40) & 31) + 1, 1) ||
       substr(c, ((ms >> 35) & 31) + 1, 1) || substr(c, ((ms >> 30) & 31) + 1, 1) ||
       substr(c, ((ms >> 25) & 31) + 1, 1) || substr(c, ((ms >> 20) & 31) + 1, 1) ||
       substr(c, ((ms >> 15) & 31) + 1, 1) || substr(c, ((ms >> 10) & 31) + 1, 1) ||
       substr(c, ((ms >> 5) & 31) + 1, 1) || substr(c, (ms & 31) + 1, 1) ||
       hex(randomblob(8)),
       'CUST-001', '[{"item":"Laptop","quantity":1}]', 'completed', 1, ms, ms + 100,
       '00-' || lower(hex(randomblob(16))) || '-' || lower(hex(randomblob(8))) || '-01'
FROM t, a;
COMMIT;
PRAGMA wal_checkpoint(TRUNCATE);
SQL
}

freelist() {
    sqlite3 -readonly "$1" 'PRAGMA freelist_count;'
}

# --- the pristine database ----------------------------------------------------
prepare() {
    mkdir -p "$tmp/pristine"
    local db=$tmp/pristine/orderd.db t0 t1 n
    write_config "$tmp/pristine/orderd.conf" "$db" 0
    start_orderd "$tmp/pristine/orderd.conf" # creates the schema
    stop_orderd
    t0=$(now)
    insert_old "$db" "$rows" $(($(date +%s%3N) - 3 * 86400000))
    t1=$(now)
    n=$(sqlite3 -readonly "$db" "SELECT count(*) FROM orders WHERE status = 'completed'")
    [ "$n" = "$rows" ] || die "the fill wrote $n orders, not $rows"
    sync
    pristine_size=$(db_size "$db")
    printf 'fill: %s completed orders 2-3 days old in %.0f s; the file: %s MiB\n' "$rows" \
        "$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')" "$(mib "$pristine_size")"
}

# wrk_parse FILE — sets r_rps r_p50 r_p99 r_err from wrk's output.
wrk_parse() {
    local out non2xx errors
    out=$(<"$1")
    r_rps=$(awk '/^Requests\/sec/ {printf "%.0f", $2}' <<<"$out")
    r_p50=$(to_ms "$(awk '$1=="50%" {print $2}' <<<"$out")")
    r_p99=$(to_ms "$(awk '$1=="99%" {print $2}' <<<"$out")")
    non2xx=$(awk '/Non-2xx/ {print $NF}' <<<"$out")
    errors=$(awk '/Socket errors/ {gsub(",",""); print $4+$6+$8+$10}' <<<"$out")
    r_err=$((${non2xx:-0} + ${errors:-0}))
    [ -n "$r_rps" ] || { echo "$out" >&2; die "wrk gave no rate"; }
}

wrk_threads() {
    if [ "$conns" -lt "$threads" ]; then echo "$conns"; else echo "$threads"; fi
}

# --- one run --------------------------------------------------------------------
# run KIND SECONDS — KIND purge or none on a fresh copy; SECONDS (none only):
# how long wrk runs. Sets r_rps r_p50 r_p99 r_err r_secs r_purge r_deleted
# r_accepted r_before r_after.
run() {
    local kind=$1 secs=${2:-0} dir=$tmp/run db conf out t_start t_hup t_end deleted=0
    rm -rf "$dir"
    mkdir -p "$dir"
    db=$dir/orderd.db
    conf=$dir/orderd.conf
    cp "$tmp/pristine/orderd.db" "$db"
    sync
    write_config "$conf" "$db" 0
    r_before=$(db_size "$db")
    start_orderd "$conf"
    local cpu0
    cpu0=$(cpu_s "$orderd_pid")
    t_start=$(now)
    wrk -t"$(wrk_threads)" -c"$conns" -d"${max_seconds}s" --latency -s "$here/post_order.lua" \
        "http://127.0.0.1:$orderd_port/orders" >"$tmp/wrk.out" 2>&1 &
    wrk_pid=$!
    sleep "$warmup"
    r_purge=-
    if [ "$kind" = purge ]; then
        write_config "$conf" "$db" 1d
        kill -HUP "$orderd_pid"
        t_hup=$(now)
        while :; do
            deleted=$(metric "$deleted_series")
            [ "$deleted" -ge "$rows" ] && break
            awk -v a="$t_hup" -v b="$(now)" -v m="$max_seconds" 'BEGIN { exit !(b - a > m) }' &&
                break
            alive "$wrk_pid" || break
            sleep 0.2
        done
        t_end=$(now)
        r_purge=$(awk -v a="$t_hup" -v b="$t_end" -v d="$deleted" -v n="$rows" \
            'BEGIN { printf (d >= n ? "%.1f" : "%.1f(unfinished)"), b - a }')
    else
        local until
        until=$(awk -v a="$t_start" -v s="$secs" 'BEGIN { printf "%.3f", a + s }')
        while awk -v u="$until" -v b="$(now)" 'BEGIN { exit !(b < u) }'; do
            sleep 0.2
            metric "$deleted_series" >/dev/null # the same polling as the purge run
        done
    fi
    kill -INT "$wrk_pid"
    wait "$wrk_pid" || true
    wrk_pid=""
    t_end=$(now)
    r_secs=$(awk -v a="$t_start" -v b="$t_end" 'BEGIN { printf "%.1f", b - a }')
    r_deleted=$(metric "$deleted_series")
    r_accepted=$(metric orderd_orders_received_total)
    r_cpu=$(awk -v a="$cpu0" -v b="$(cpu_s "$orderd_pid")" 'BEGIN { printf "%.1f", b - a }')
    stop_orderd
    r_after=$(db_size "$db")
    wrk_parse "$tmp/wrk.out"
}

# --- alternating windows ------------------------------------------------------------
# alternate ROUND — one orderd on a fresh copy; windows with the purge on and
# off until it is done. Prints a row per window and the round's ratios.
alternate() {
    local round=$1 dir=$tmp/run db conf pair=0 deleted=0 on_s=0 state=0 kind t0 started cpu0 acc0 del0
    rm -rf "$dir"
    mkdir -p "$dir"
    db=$dir/orderd.db
    conf=$dir/orderd.conf
    cp "$tmp/pristine/orderd.db" "$db"
    sync
    write_config "$conf" "$db" 0
    r_before=$(db_size "$db")
    start_orderd "$conf"
    : >"$tmp/windows"
    started=$(now)
    while [ "$deleted" -lt "$rows" ]; do
        awk -v a="$started" -v b="$(now)" -v m="$max_seconds" 'BEGIN { exit !(b - a > 2 * m) }' &&
            break
        pair=$((pair + 1))
        for kind in $(if [ $((pair % 2)) -eq 1 ]; then echo on off; else echo off on; fi); do
            if [ "$kind" = on ] && [ "$state" = 0 ]; then
                write_config "$conf" "$db" 1d
                kill -HUP "$orderd_pid"
                state=1
            elif [ "$kind" = off ] && [ "$state" = 1 ]; then
                write_config "$conf" "$db" 0
                kill -HUP "$orderd_pid"
                state=0
            fi
            t0=$(now)
            cpu0=$(cpu_s "$orderd_pid")
            acc0=$(metric orderd_orders_received_total)
            del0=$deleted
            wrk -t"$(wrk_threads)" -c"$conns" -d"${window}s" --latency -s "$here/post_order.lua" \
                "http://127.0.0.1:$orderd_port/orders" >"$tmp/wrk.out" 2>&1 || true
            wrk_parse "$tmp/wrk.out"
            [ "$kind" = on ] && on_s=$(awk -v s="$on_s" -v a="$t0" -v b="$(now)" 'BEGIN { print s + b - a }')
            deleted=$(metric "$deleted_series")
            r_cpu=$(awk -v a="$cpu0" -v b="$(cpu_s "$orderd_pid")" 'BEGIN { printf "%.1f", b - a }')
            r_accepted=$(($(metric orderd_orders_received_total) - acc0))
            echo "$kind $r_rps $r_p50 $r_p99 $r_err $deleted $r_cpu $r_accepted $((deleted - del0))" \
                >>"$tmp/windows"
            printf '%5s %-6s | %6s %8s %7s %7s %6s | %9s %10s %9s %6s |\n' "$round" "$kind" \
                "$window" "$r_rps" "$r_p50" "$r_p99" "$r_err" "$r_accepted" - "$deleted" "$r_cpu"
        done
    done
    r_accepted=$(metric orderd_orders_received_total)
    stop_orderd
    r_after=$(db_size "$db")
    r_purge=$(awk -v s="$on_s" -v d="$deleted" -v n="$rows" \
        'BEGIN { printf (d >= n ? "%.1f" : "%.1f(unfinished)"), s }')
    # on/off req/s over all windows; the median p99 of each
    awk -v r="$round" -v purge="$r_purge" -v total="$r_accepted" -v b="$(mib "$r_before")" \
        -v a="$(mib "$r_after")" '
        { rps[$1] += $2; n[$1]++; p[$1, n[$1]] = $4; cpu[$1] += $7; acc[$1] += $8; del[$1] += $9 }
        function median(k,   i, j, t, m) {
            m = n[k]
            for (i = 1; i <= m; i++) v[i] = p[k, i]
            for (i = 2; i <= m; i++) for (j = i; j > 1 && v[j - 1] > v[j]; j--) {
                t = v[j]; v[j] = v[j - 1]; v[j - 1] = t }
            return m % 2 ? v[(m + 1) / 2] : (v[m / 2] + v[m / 2 + 1]) / 2
        }
        END {
            extra = cpu["on"] - acc["on"] * cpu["off"] / acc["off"]
            printf "round %s: %d windows each; req/s %.0f with the purge, %.0f without: %.2f (target >= 0.8); " \
                "median p99 %.2f ms, %.2f ms: %.2fx (target <= 1.5); purge_s %s; %s orders accepted; " \
                "the file %s -> %s MiB; the purge used %.1f s of CPU, %.1f us per order deleted\n",
                r, n["on"], rps["on"] / n["on"], rps["off"] / n["off"],
                (rps["on"] / n["on"]) / (rps["off"] / n["off"]), median("on"), median("off"),
                median("on") / median("off"), purge, total, b, a, extra,
                (del["on"] > 0 ? extra * 1e6 / del["on"] : 0)
        }' "$tmp/windows" >>"$tmp/summary"
}

row() { # ROUND KIND
    printf '%5s %-6s | %6s %8s %7s %7s %6s | %9s %10s %9s %6s | %9s %9s\n' "$1" "$2" "$r_secs" \
        "$r_rps" "$r_p50" "$r_p99" "$r_err" "$r_accepted" "$r_purge" "$r_deleted" "$r_cpu" \
        "$(mib "$r_before")" "$(mib "$r_after")"
}

# --- the file ---------------------------------------------------------------------
file_reuse() {
    local dir=$tmp/file db conf t0 deleted=0 purged free1 refilled free2 purge_s
    mkdir -p "$dir"
    db=$dir/orderd.db
    conf=$dir/orderd.conf
    cp "$tmp/pristine/orderd.db" "$db"
    write_config "$conf" "$db" 1d
    t0=$(now)
    start_orderd "$conf"
    for _ in $(seq 1 $((max_seconds * 5))); do
        deleted=$(metric "$deleted_series")
        [ "$deleted" -ge "$rows" ] && break
        sleep 0.2
    done
    purge_s=$(awk -v a="$t0" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }')
    stop_orderd
    [ "$deleted" -ge "$rows" ] || die "file: the purge did not end within $max_seconds s"
    purged=$(db_size "$db")
    free1=$(freelist "$db")
    insert_old "$db" "$rows" $(($(date +%s%3N) - 86400000 / 2))
    refilled=$(db_size "$db")
    free2=$(freelist "$db")
    printf '\nthe file (auto_vacuum %s: free-page reuse), %s orders:\n' \
        "$(sqlite3 -readonly "$db" 'PRAGMA auto_vacuum')" "$rows"
    printf '  filled      %8s MiB\n' "$(mib "$pristine_size")"
    printf '  purged      %8s MiB, %s free pages (%s MiB); purge without load: %s s\n' \
        "$(mib "$purged")" "$free1" "$(mib $((free1 * 4096)))" "$purge_s"
    printf '  refilled    %8s MiB, %s free pages: %s MiB more than filled\n' "$(mib "$refilled")" \
        "$free2" "$(mib $((refilled - pristine_size)))"
}

printf 'orderd retention bench: %s rows, wrk %s threads %s connections, %s cores, %s\n' "$rows" \
    "$threads" "$conns" "$(nproc)" "$(date -u +%FT%TZ)"
prepare
printf '\n%5s %-6s | %6s %8s %7s %7s %6s | %9s %10s %9s %6s | %9s %9s\n' round run seconds \
    req/s p50ms p99ms errors accepted purge_s deleted cpu_s MiB_before MiB_after
: >"$tmp/summary"
for r in $(seq 1 "$rounds"); do
    if [ "$mode" = alternate ]; then
        alternate "$r"
        continue
    fi
    run purge
    row "$r" purge
    p_rps=$r_rps p_p99=$r_p99 p_secs=$r_secs p_cpu=$r_cpu p_acc=$r_accepted p_del=$r_deleted
    run none "$p_secs"
    row "$r" none
    awk -v r="$r" -v a="$p_rps" -v b="$r_rps" -v pa="$p_p99" -v pb="$r_p99" -v ca="$p_cpu" \
        -v aa="$p_acc" -v cb="$r_cpu" -v ab="$r_accepted" -v d="$p_del" 'BEGIN {
        extra = ca - aa * cb / ab
        printf "round %s: req/s %.2f of without (target >= 0.8), p99 %.2fx (target <= 1.5); " \
            "the purge used %.1f s of CPU, %.1f us per order deleted\n",
            r, a / b, pa / pb, extra, (d > 0 ? extra * 1e6 / d : 0) }' >>"$tmp/summary"
done
printf '\n'
cat "$tmp/summary"
file_reuse
if [ "$mode" = alternate ]; then
    printf '\npurge_s = the time the purge was on until the last of %s orders was deleted;\n' "$rows"
    printf 'on / off = a window of %s s with the purge on / off; the file = the database\n' "$window"
    printf '(orderd stopped) before and after the round, with what its intake wrote\n'
else
    printf '\npurge_s = from the SIGHUP that turned retention on to the last of %s orders deleted;\n' "$rows"
    printf 'the run without the purge lasts as long as the purge run; MiB = the database file\n'
    printf '(orderd stopped) before and after the run, with what the run'\''s intake wrote\n'
fi
