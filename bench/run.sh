#!/usr/bin/env bash
# bench/run.sh — durable intake of orderd against nginx answering a static 202,
# same machine, same wrk load, same run. Ratios are the result; absolute numbers
# move with the machine. A second reference, mhd_static (bench/mhd_static.c),
# is libmicrohttpd set up as orderd sets it up, answering a static 202: the
# ceiling of any server on that library here, so orderd / mhd_static is what
# orderd's own work leaves of it.
#
#   make bench                          (BENCH_SECONDS=10 BENCH_CONNS="1 16 64 256")
#   BENCH_DURABILITY="full" make bench
#
# For each durability and connection count: orderd req/s, ratio to nginx,
# p50/p99 of both, the drain rate of the workers (processed/s over the run
# plus the time to empty the queue, against accepted/s), peak RSS, and
# orderd's CPU time per accepted order (intake and processing).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
# shellcheck source-path=SCRIPTDIR
# shellcheck source=wrk.sh
. "$here/wrk.sh"
bin=${TEST_ORDERD_BIN:-$root/build/orderd}
mhd_bin=${BENCH_MHD_BIN:-$(dirname "$bin")/mhd_static}
seconds=${BENCH_SECONDS:-10}
conns=${BENCH_CONNS:-"1 16 64 256"}
durabilities=${BENCH_DURABILITY:-"full normal"}
threads=${BENCH_WRK_THREADS:-2}

tmp=$(mktemp -d /tmp/orderd-bench.XXXXXX)
orderd_pid=""
nginx_pid=""
mhd_pid=""
cleanup() {
    [ -n "$mhd_pid" ] && kill "$mhd_pid" 2>/dev/null && wait "$mhd_pid" 2>/dev/null
    [ -n "$orderd_pid" ] && kill "$orderd_pid" 2>/dev/null && wait "$orderd_pid" 2>/dev/null
    [ -n "$nginx_pid" ] && kill "$nginx_pid" 2>/dev/null && wait "$nginx_pid" 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT

for tool in wrk nginx curl; do
    command -v "$tool" >/dev/null || { echo "bench: $tool is missing (make deps-bench)" >&2; exit 1; }
done
[ -x "$mhd_bin" ] || { echo "bench: $mhd_bin is missing (make)" >&2; exit 1; }

free_port() {
    local p
    for _ in $(seq 1 100); do
        p=$((20000 + RANDOM % 40000))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
            echo "$p"
            return
        fi
    done
    echo "bench: no free port" >&2
    exit 1
}

# wait_answering PORT NAME LOG — returns once 127.0.0.1:PORT answers HTTP
# (5 s at most); else prints LOG and ends the bench.
wait_answering() {
    local port=$1 name=$2 log=$3
    for _ in $(seq 1 50); do
        curl -s -o /dev/null "http://127.0.0.1:$port/" && return
        sleep 0.1
    done
    echo "bench: $name did not start" >&2
    cat "$log" >&2
    exit 1
}

start_nginx() {
    local port=$1
    mkdir -p "$tmp/nginx/logs"
    cat > "$tmp/nginx/nginx.conf" <<EOF
worker_processes 2;
daemon off;
pid $tmp/nginx/nginx.pid;
error_log stderr warn;
events { worker_connections 4096; }
http {
    access_log off;
    server {
        listen 127.0.0.1:$port;
        location / {
            default_type application/json;
            return 202 '{"order_id":"01M8AJKVKZGKBC8VSNJ2N4KRD3","status":"queued","trace_id":"beb2d5bdf7ba4ba9afa3042cb7313832"}';
        }
    }
}
EOF
    nginx -p "$tmp/nginx" -c "$tmp/nginx/nginx.conf" 2>"$tmp/nginx/err.log" &
    nginx_pid=$!
    wait_answering "$port" nginx "$tmp/nginx/err.log"
}

start_mhd_static() {
    local port=$1
    "$mhd_bin" "$port" 2>"$tmp/mhd_static.log" &
    mhd_pid=$!
    wait_answering "$port" mhd_static "$tmp/mhd_static.log"
}

start_orderd() {
    local durability=$1
    rm -rf "$tmp/db"
    mkdir -p "$tmp/db"
    cat > "$tmp/orderd.conf" <<EOF
[server]
listen = 127.0.0.1:0
max_connections = 4096
max_connections_per_ip = 0
[storage]
path = $tmp/db/orderd.db
durability = $durability
[queue]
max_depth = 100000000
[log]
level = warn
EOF
    : > "$tmp/orderd.log"
    ORDERD_LOG_LEVEL=info "$bin" -c "$tmp/orderd.conf" 2>"$tmp/orderd.log" &
    orderd_pid=$!
    for _ in $(seq 1 100); do
        orderd_port=$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$tmp/orderd.log" | head -1)
        [ -n "$orderd_port" ] && return
        sleep 0.05
    done
    echo "bench: orderd did not start" >&2
    cat "$tmp/orderd.log" >&2
    exit 1
}

stop_orderd() {
    kill -TERM "$orderd_pid"
    wait "$orderd_pid" || true
    orderd_pid=""
}

# wrk_run URL CONNS -> "rps p50_ms p99_ms non2xx errors"
wrk_run() {
    local url=$1 c=$2 t=$threads out
    [ "$c" -lt "$t" ] && t=$c
    out=$(wrk -t"$t" -c"$c" -d"${seconds}s" --latency -s "$here/post_order.lua" "$url" 2>&1)
    local rps p50 p99 non2xx errors
    rps=$(awk '/^Requests\/sec/ {print $2}' <<<"$out")
    p50=$(awk '$1=="50%" {print $2}' <<<"$out")
    p99=$(awk '$1=="99%" {print $2}' <<<"$out")
    non2xx=$(awk '/Non-2xx/ {print $NF}' <<<"$out")
    errors=$(awk '/Socket errors/ {gsub(",",""); print $4+$6+$8+$10}' <<<"$out")
    echo "$rps $(to_ms "$p50") $(to_ms "$p99") ${non2xx:-0} ${errors:-0}"
}


metric() {
    curl -s "http://127.0.0.1:$orderd_port/metrics" | awk -v m="$1" '$1==m {print $2}'
}

# Seconds (fractional) until the queue is empty, bounded.
drain_seconds() {
    local start now depth
    start=$(date +%s.%N)
    for _ in $(seq 1 1200); do
        depth=$(metric orderd_queue_depth)
        [ "${depth:-1}" = "0" ] && break
        sleep 0.05
    done
    now=$(date +%s.%N)
    awk -v a="$start" -v b="$now" 'BEGIN { printf "%.2f", b - a }'
}

# CPU ticks (user + system, all threads) the process has used so far.
cpu_ticks() {
    awk '{print $14 + $15}' "/proc/$1/stat"
}

# The same for nginx: its master and worker processes.
nginx_ticks() {
    local total=0 p
    for p in "$nginx_pid" $(pgrep -P "$nginx_pid"); do
        total=$((total + $(cpu_ticks "$p")))
    done
    echo "$total"
}

peak_rss_mib() {
    awk '/VmHWM/ {printf "%.1f", $2 / 1024}' "/proc/$orderd_pid/status"
}

nginx_port=$(free_port)
start_nginx "$nginx_port"
mhd_port=$(free_port)
start_mhd_static "$mhd_port"

printf '\norderd bench: %ss per run, wrk %s threads, %s cores, %s\n' "$seconds" "$threads" \
    "$(nproc)" "$(date -u +%FT%TZ)"
printf '%-10s %5s | %9s %9s %6s | %9s %6s | %8s %8s %8s %8s | %9s %9s %6s | %8s %8s | %7s %6s %6s %6s\n' \
    durability conns orderd nginx ratio mhd o/mhd o_p50ms o_p99ms n_p50ms n_p99ms accept/s \
    drain/s keeps o/commit fsync_ms rss_MiB o_cpu n_cpu errors
for durability in $durabilities; do
    for c in $conns; do
        start_orderd "$durability"
        ticks0=$(cpu_ticks "$orderd_pid")
        read -r o_rps o_p50 o_p99 o_non2xx o_err <<<"$(wrk_run "http://127.0.0.1:$orderd_port/orders" "$c")"
        accepted=$(metric orderd_orders_received_total)
        commits=$(metric orderd_intake_commits_total)
        syncs=$(metric orderd_storage_sync_duration_seconds_count)
        sync_sum=$(metric orderd_storage_sync_duration_seconds_sum)
        drain=$(drain_seconds)
        ticks=$(($(cpu_ticks "$orderd_pid") - ticks0))
        rss=$(peak_rss_mib)
        stop_orderd
        nticks0=$(nginx_ticks)
        read -r n_rps n_p50 n_p99 _ _ <<<"$(wrk_run "http://127.0.0.1:$nginx_port/orders" "$c")"
        nticks=$(($(nginx_ticks) - nticks0))
        read -r m_rps _ <<<"$(wrk_run "http://127.0.0.1:$mhd_port/orders" "$c")"
        awk -v d="$durability" -v c="$c" -v o="$o_rps" -v n="$n_rps" -v op50="$o_p50" \
            -v op99="$o_p99" -v np50="$n_p50" -v np99="$n_p99" -v acc="$accepted" \
            -v s="$seconds" -v dr="$drain" -v rss="$rss" -v e="$((o_non2xx + o_err))" \
            -v ticks="$ticks" -v nticks="$nticks" -v hz="$(getconf CLK_TCK)" -v m="$m_rps" \
            -v commits="${commits:-0}" -v syncs="${syncs:-0}" -v sync_sum="${sync_sum:-0}" 'BEGIN {
            arate = acc / s; drate = acc / (s + dr);
            cpu = acc > 0 ? ticks * 1e6 / hz / acc : 0;
            ncpu = n > 0 ? nticks * 1e6 / hz / (n * s) : 0;
            per_commit = commits > 0 ? acc / commits : 0;
            fsync_ms = syncs > 0 ? sync_sum * 1000 / syncs : 0;
            printf "%-10s %5d | %9.0f %9.0f %6.2f | %9.0f %6.2f | %8.2f %8.2f %8.2f %8.2f | %9.0f %9.0f %6s | %8.1f %8.2f | %7s %6.1f %6.1f %6d\n",
                d, c, o, n, o / n, m, o / m, op50, op99, np50, np99, arate, drate,
                (dr < 1 ? "yes" : "no"), per_commit, fsync_ms, rss, cpu, ncpu, e }'
    done
done
printf '\nratio = orderd req/s / nginx req/s; mhd = libmicrohttpd answering a static 202 (bench/mhd_static.c)\n'
printf 'o/mhd = orderd req/s / mhd req/s; keeps = the queue was empty within 1 s of the end of the run\n'
printf 'o/commit = orders per intake transaction (group commit); fsync_ms = mean WAL fsync before a 202\n'
printf 'drain/s = accepted / (run + time to empty the queue); errors = non-2xx + socket errors of orderd\n'
printf 'o_cpu = CPU time orderd used (all threads, run + drain) per accepted order, in microseconds;\n'
printf 'n_cpu = CPU time nginx used (master + workers) per request answered, in microseconds\n'
