#!/usr/bin/env bash
# tests/pg/bench.sh — durable intake with 1, 2 and 3 orderd nodes on one
# PostgreSQL database, against one node on SQLite, under the same wrk load
# (bench/post_order.lua). The numbers of docs/scale-out.md come from here.
#
#   make bench-scale                      (or: TEST_ORDERD_BIN=build/orderd tests/pg/bench.sh)
#   BENCH_SECONDS=10 BENCH_CONNS=64 BENCH_NODES="1 2 3" BENCH_DURABILITY=full
#
# Every node, the server and wrk share this machine: with few cores the
# numbers say what one box gives, not what separate machines would; see
# docs/scale-out.md. BENCH_CONNS connections in all, split over the nodes,
# one wrk per node, all at once. accepted = orders the database holds after
# the run (checked against the nodes' orderd_orders_received_total).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
bin=${TEST_ORDERD_BIN:-$root/build/orderd}
seconds=${BENCH_SECONDS:-10}
conns=${BENCH_CONNS:-64}
nodes_list=${BENCH_NODES:-"1 2 3"}
durability=${BENCH_DURABILITY:-full}
workers=${BENCH_WORKERS:-2}

# shellcheck source-path=SCRIPTDIR
# shellcheck source=lib.sh
. "$here/lib.sh"
# shellcheck source-path=SCRIPTDIR/../..
# shellcheck source=bench/wrk.sh
. "$root/bench/wrk.sh"

for tool in wrk curl psql; do
    command -v "$tool" >/dev/null || { echo "bench: $tool is missing (make deps-bench deps-test)" >&2; exit 1; }
done
[[ -x $bin ]] || { echo "bench: $bin is not built" >&2; exit 1; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/orderd-bench-scale.XXXXXX")
chmod 0755 "$tmp"
pids=()
cleanup() {
    local p
    for p in "${pids[@]}"; do
        kill "$p" 2>/dev/null || true
    done
    for p in "${pids[@]}"; do
        wait "$p" 2>/dev/null || true
    done
    pg_stop
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 143' TERM INT

pg_start "$tmp/pg"

ports=()
# start_nodes K BACKEND DB — K daemons; fills ports[] and pids[].
start_nodes() {
    local k=$1 backend=$2 db=$3 i port
    ports=()
    for ((i = 1; i <= k; i++)); do
        local d=$tmp/node$i
        rm -rf "$d"
        mkdir -p "$d"
        {
            printf '[server]\nlisten = 127.0.0.1:0\nmax_connections = 4096\nmax_connections_per_ip = 0\n'
            printf '[storage]\nbackend = %s\npath = %s/orderd.db\ndurability = %s\n' "$backend" "$d" "$durability"
            [[ $backend == postgres ]] && printf 'dsn = %s\n' "$(pg_dsn "$db")"
            printf '[queue]\nmax_depth = 100000000\n[workers]\ncount = %s\n[log]\nlevel = warn\n' "$workers"
        } >"$d/orderd.conf"
        : >"$d/log" # exists before the child opens it: polled at once below
        ORDERD_LOG_LEVEL=info "$bin" -c "$d/orderd.conf" 2>"$d/log" &
        pids+=($!)
        port=
        for _ in $(seq 1 200); do
            port=$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$d/log" | head -n 1)
            [[ -n $port ]] && break
            sleep 0.05
        done
        [[ -n $port ]] || { echo "bench: node $i did not start:" >&2; tail -n 5 "$d/log" >&2; exit 1; }
        ports+=("$port")
    done
}

stop_nodes() {
    local p
    for p in "${pids[@]}"; do
        kill -TERM "$p" 2>/dev/null || true
    done
    for p in "${pids[@]}"; do
        wait "$p" 2>/dev/null || true
    done
    pids=()
}

metric() { # PORT NAME
    curl -s "http://127.0.0.1:$1/metrics" | awk -v m="$2" '$1 == m { print $2 }'
}


# run_load — one wrk per node at once, BENCH_CONNS split over them; prints
# "rps p50_ms p99_ms errors" (p50: the mean of the nodes', p99: the worst).
run_load() {
    local k=${#ports[@]} i c t outs=()
    local wrk_pids=()
    for ((i = 0; i < k; i++)); do
        c=$((conns / k + (i < conns % k ? 1 : 0)))
        t=$((k == 1 ? 2 : 1))
        wrk -t"$t" -c"$c" -d"${seconds}s" --latency -s "$root/bench/post_order.lua" \
            "http://127.0.0.1:${ports[$i]}/orders" >"$tmp/wrk.$i" 2>&1 &
        wrk_pids+=($!)
        outs+=("$tmp/wrk.$i")
    done
    for i in "${wrk_pids[@]}"; do
        wait "$i"
    done
    local rps=0 p50=0 p99=0 errors=0 f r l50 l99 n2 e
    for f in "${outs[@]}"; do
        r=$(awk '/^Requests\/sec/ { print $2 }' "$f")
        l50=$(to_ms "$(awk '$1 == "50%" { print $2 }' "$f")")
        l99=$(to_ms "$(awk '$1 == "99%" { print $2 }' "$f")")
        n2=$(awk '/Non-2xx/ { print $NF }' "$f")
        e=$(awk '/Socket errors/ { gsub(",", ""); print $4 + $6 + $8 + $10 }' "$f")
        rps=$(awk -v a="$rps" -v b="$r" 'BEGIN { printf "%.0f", a + b }')
        p50=$(awk -v a="$p50" -v b="$l50" -v k="$k" 'BEGIN { printf "%.2f", a + b / k }')
        p99=$(awk -v a="$p99" -v b="$l99" 'BEGIN { printf "%.2f", (b > a ? b : a) }')
        errors=$((errors + ${n2:-0} + ${e:-0}))
    done
    echo "$rps $p50 $p99 $errors"
}

# ticks PID... — CPU time (user + system, in clock ticks) of these processes.
ticks() {
    local t=0 p
    for p in "$@"; do
        [[ -r /proc/$p/stat ]] && t=$((t + $(awk '{ print $14 + $15 }' "/proc/$p/stat")))
    done
    echo "$t"
}

# pg_pids — the server and its children (backends, walwriter, ...).
pg_pids() {
    local pm
    pm=$(head -n 1 "$PG_DIR/data/postmaster.pid")
    echo "$pm" $(pgrep -P "$pm")
}

# box_ticks — all CPU time of the machine so far, and its idle part.
box_ticks() {
    awk '$1 == "cpu" { print $2 + $3 + $4 + $5 + $6 + $7 + $8, $5 + $6 }' /proc/stat
}

# drain_seconds — until the (shared) queue is empty, bounded.
drain_seconds() {
    local start depth
    start=$(date +%s.%N)
    for _ in $(seq 1 2400); do
        depth=$(metric "${ports[0]}" orderd_queue_depth)
        [[ ${depth:-1} == 0 ]] && break
        sleep 0.05
    done
    awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'
}

printf '\norderd scale-out bench: %ss per run, %s connections in all, durability %s, %s workers a node, %s cores, %s\n' \
    "$seconds" "$conns" "$durability" "$workers" "$(nproc)" "$(date -u +%FT%TZ)"
intake_sync=on
[[ $durability == full ]] || intake_sync=off
printf '%s, fsync on, synchronous_commit %s for intake (off for the rest), unix socket\n' \
    "$("$PG_BIN/postgres" --version)" "$intake_sync"
printf '%-9s %5s | %9s %8s %8s | %9s %9s %8s | %6s | %5s %6s %6s %5s\n' backend nodes req/s p50_ms \
    p99_ms accepted accept/s drain_s errors pg% orderd% other% idle%
run_one() { # BACKEND K
    local backend=$1 k=$2 db=bench_${1}_$2
    [[ $backend == postgres ]] && pg_createdb "$db"
    start_nodes "$k" "$backend" "$db"
    local rps p50 p99 errors received=0 i stored drain
    local pg0 od0 box0 idle0 pg1 od1 box1 idle1
    # shellcheck disable=SC2046  # lists of pids
    pg0=$(ticks $(pg_pids)) od0=$(ticks "${pids[@]}")
    read -r box0 idle0 < <(box_ticks)
    read -r rps p50 p99 errors <<<"$(run_load)"
    # shellcheck disable=SC2046
    pg1=$(ticks $(pg_pids)) od1=$(ticks "${pids[@]}")
    read -r box1 idle1 < <(box_ticks)
    for ((i = 0; i < k; i++)); do
        received=$((received + $(metric "${ports[$i]}" orderd_orders_received_total)))
    done
    drain=$(drain_seconds)
    if [[ $backend == postgres ]]; then
        stored=$(pg_psql "$db" 'select count(*) from orders')
        [[ $stored == "$received" ]] || echo "bench: $stored orders stored, $received counted by the nodes" >&2
    fi
    stop_nodes
    [[ $backend == postgres ]] || pg1=$pg0
    awk -v b="$backend" -v k="$k" -v r="$rps" -v p50="$p50" -v p99="$p99" -v acc="$received" \
        -v s="$seconds" -v d="$drain" -v e="$errors" -v pg=$((pg1 - pg0)) -v od=$((od1 - od0)) \
        -v box=$((box1 - box0)) -v idle=$((idle1 - idle0)) 'BEGIN {
        printf "%-9s %5d | %9.0f %8.2f %8.2f | %9d %9.0f %8.1f | %6d | %5.0f %6.0f %6.0f %5.0f\n",
            b, k, r, p50, p99, acc, acc / s, d, e,
            100 * pg / box, 100 * od / box, 100 * (box - idle - pg - od) / box, 100 * idle / box }'
}
run_one sqlite 1
for k in $nodes_list; do
    run_one postgres "$k"
done
printf '\nreq/s: sum of the wrk runs; accept/s: orders stored / run length; drain_s: time after the\n'
printf 'run until the shared queue was empty (processing lagging behind intake); errors: non-2xx + socket\n'
printf 'errors of wrk; pg%%, orderd%%, other%% (wrk, the kernel), idle%%: shares of all CPUs during the load\n'
