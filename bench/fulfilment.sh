#!/usr/bin/env bash
# bench/fulfilment.sh — how fast orderd's workers drain a queue that is already
# full, each rate next to its own ceiling measured in the same run (ratios are
# the result; absolute numbers move with the machine: docs/performance.md).
#
#   make bench-fulfilment
#   BENCH_ROWS="command" bench/fulfilment.sh        (a subset of the rows)
#
# Rows:
#   persist  no fulfilment: persisting is the whole processing. Its reference
#            is orderd's durable intake rate below (no target).
#   command  fulfilment_command = /bin/true. Ceiling: bench/spawn_rate.c, which
#            starts /bin/true as src/fulfilment.c does (pipes, own process
#            group) from nproc threads and reaps it. Target 0.8.
#   nginx    fulfilment_url = nginx answering a static 200 on loopback.
#            Ceiling: orderd's durable intake rate (durability full, 64
#            connections, wrk with bench/post_order.lua). Target 0.5.
#   slow     fulfilment_url = bench/slow_receiver.py, 200 after 50 ms.
#            Ceiling: fulfilment_concurrency / 50 ms. Target 0.8.
# and orderd's peak RSS (VmHWM) in each row, target <= 64 MiB.
#
# How: orderd with no fulfilment takes wrk's orders for BENCH_FILL_SECONDS
# (that run is the intake measurement) and processes them; after SIGTERM (it
# drains and exits 0) the database is checkpointed and kept as the pristine
# copy. Each row copies it, turns its first N completed orders back into
# queued messages with sqlite3, starts orderd with the row's config on the
# copy and polls GET /metrics every 100 ms: rate = change of
# orderd_orders_processed_total between the first sample that saw processing
# and the one that saw the queue empty, over the time between them. A row
# stops after BENCH_ROW_TIMEOUT seconds; then the rate is over what was done
# and the row says "timed out".
#
# A build without fulfilment_url (--check-config names it as unknown) skips
# the nginx and slow rows; fulfilment_concurrency is set only where the build
# has it. The command row's ceiling is the mean of a spawn_rate run before
# the row and one after it (the machine drifts).
#
# Settings (environment): BENCH_ORDERD_BIN (else TEST_ORDERD_BIN, else
# build/orderd; copied first, so a rebuild meanwhile changes nothing),
# BENCH_SPAWN_BIN (spawn_rate next to it), BENCH_ROWS, BENCH_FILL_SECONDS (10),
# BENCH_ROW_TIMEOUT (60), BENCH_SPAWN_SECONDS (5), BENCH_WORKERS (nproc),
# BENCH_CONCURRENCY (64), BENCH_COMMAND (/bin/true), BENCH_N_PERSIST (300000,
# at most what the fill took), BENCH_N_COMMAND (5000), BENCH_N_NGINX (50000),
# BENCH_N_SLOW (5000).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
bin=${BENCH_ORDERD_BIN:-${TEST_ORDERD_BIN:-$root/build/orderd}}
spawn_bin=${BENCH_SPAWN_BIN:-$(dirname "$bin")/spawn_rate}
rows=${BENCH_ROWS:-"persist command nginx slow"}
fill_seconds=${BENCH_FILL_SECONDS:-10}
fill_conns=64
row_timeout=${BENCH_ROW_TIMEOUT:-60}
spawn_seconds=${BENCH_SPAWN_SECONDS:-5}
workers=${BENCH_WORKERS:-$(nproc)}
concurrency=${BENCH_CONCURRENCY:-64}
command=${BENCH_COMMAND:-/bin/true}
delay_ms=50
rss_target_mib=64
n_persist=${BENCH_N_PERSIST:-300000}
n_command=${BENCH_N_COMMAND:-5000}
n_nginx=${BENCH_N_NGINX:-50000}
n_slow=${BENCH_N_SLOW:-5000}

tmp=$(mktemp -d /tmp/orderd-bench-fulfilment.XXXXXX)
orderd_pid=""
nginx_pid=""
slow_pid=""
# alive PID — the process runs (a child that exited but is not reaped yet is
# a zombie, which kill -0 still finds).
alive() {
    local state
    state=$(sed -n 's/.*) \([A-Za-z]\).*/\1/p' "/proc/$1/stat" 2>/dev/null) || return 1
    [ -n "$state" ] && [ "$state" != Z ]
}
# stop_pid PID — SIGTERM, then SIGKILL if it is still there after 30 s.
stop_pid() {
    local pid=$1
    kill -TERM "$pid" 2>/dev/null || return 0
    for _ in $(seq 1 300); do
        alive "$pid" || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}
cleanup() {
    [ -n "$orderd_pid" ] && stop_pid "$orderd_pid"
    [ -n "$nginx_pid" ] && stop_pid "$nginx_pid"
    [ -n "$slow_pid" ] && stop_pid "$slow_pid"
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

die() {
    echo "bench-fulfilment: $*" >&2
    exit 1
}

for tool in wrk nginx curl sqlite3 python3; do
    command -v "$tool" >/dev/null || die "$tool is missing (make deps-bench deps-test)"
done
[ -x "$bin" ] || die "$bin is missing (make)"
[ -x "$spawn_bin" ] || die "$spawn_bin is missing (make $(dirname "$bin")/spawn_rate)"
# Others may rebuild the tree meanwhile: every row runs this copy.
cp "$bin" "$tmp/orderd"
bin=$tmp/orderd

free_port() {
    local p
    for _ in $(seq 1 100); do
        p=$((20000 + RANDOM % 40000))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
            echo "$p"
            return
        fi
    done
    die "no free port"
}

# wait_answering PORT NAME LOG — returns once 127.0.0.1:PORT answers HTTP
# (5 s at most); else prints LOG and ends the bench.
wait_answering() {
    local port=$1 name=$2 log=$3
    for _ in $(seq 1 50); do
        curl -s -o /dev/null "http://127.0.0.1:$port/" && return
        sleep 0.1
    done
    cat "$log" >&2
    die "$name did not start"
}

start_nginx() {
    local port=$1
    mkdir -p "$tmp/nginx/logs"
    cat > "$tmp/nginx/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $tmp/nginx/nginx.pid;
error_log stderr warn;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 1000000;
    keepalive_timeout 300s;
    server {
        listen 127.0.0.1:$port;
        location / {
            default_type application/json;
            return 200 '{}';
        }
    }
}
EOF
    nginx -p "$tmp/nginx" -c "$tmp/nginx/nginx.conf" 2>"$tmp/nginx/err.log" &
    nginx_pid=$!
    wait_answering "$port" nginx "$tmp/nginx/err.log"
}

start_slow_receiver() {
    local port=$1
    python3 "$here/slow_receiver.py" "$port" --delay "0.$(printf '%03d' "$delay_ms")" \
        >"$tmp/slow_receiver.log" 2>&1 &
    slow_pid=$!
    wait_answering "$port" slow_receiver "$tmp/slow_receiver.log"
}

# write_config FILE DB [KEY = VALUE lines for [workers]]
write_config() {
    local file=$1 db=$2
    shift 2
    {
        cat <<EOF
[server]
listen = 127.0.0.1:0
max_connections = 4096
max_connections_per_ip = 0
[storage]
path = $db
durability = full
[queue]
max_depth = 100000000
[log]
level = warn
[workers]
count = $workers
EOF
        local line
        for line in "$@"; do
            echo "$line"
        done
    } > "$file"
}

# accepts KEY VALUE — whether this build's --check-config takes [workers] KEY.
# An unknown key is exit 1 naming it; anything else failing ends the bench.
accepts() {
    local key=$1 value=$2 out rc=0
    mkdir -p "$tmp/probe"
    write_config "$tmp/probe/orderd.conf" "$tmp/probe/orderd.db" "$key = $value"
    out=$("$bin" -c "$tmp/probe/orderd.conf" --check-config 2>&1) || rc=$?
    [ "$rc" -eq 0 ] && return 0
    if [ "$rc" -eq 1 ] && grep -q "$key" <<<"$out"; then
        return 1
    fi
    echo "$out" >&2
    die "--check-config failed (exit $rc) on a config with $key"
}

# start_orderd CONF — sets orderd_pid and orderd_port.
start_orderd() {
    local conf=$1
    : > "$tmp/orderd.log"
    ORDERD_LOG_LEVEL=info "$bin" -c "$conf" 2>"$tmp/orderd.log" &
    orderd_pid=$!
    for _ in $(seq 1 200); do
        orderd_port=$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$tmp/orderd.log" | head -1)
        [ -n "$orderd_port" ] && return
        alive "$orderd_pid" || break
        sleep 0.05
    done
    cat "$tmp/orderd.log" >&2
    die "orderd did not start"
}

# stop_orderd — SIGTERM, bounded wait; sets orderd_rc to its exit status.
stop_orderd() {
    orderd_rc=0
    kill -TERM "$orderd_pid"
    for _ in $(seq 1 600); do
        alive "$orderd_pid" || break
        sleep 0.1
    done
    if alive "$orderd_pid"; then
        kill -KILL "$orderd_pid"
        echo "bench-fulfilment: orderd did not exit within 60 s of SIGTERM" >&2
    fi
    wait "$orderd_pid" || orderd_rc=$?
    orderd_pid=""
}

# metrics -> "processed depth failed" from one GET /metrics
metrics() {
    curl -s --max-time 2 "http://127.0.0.1:$orderd_port/metrics" | awk '
        $1 == "orderd_orders_processed_total" { p = $2 }
        $1 == "orderd_queue_depth" { d = $2 }
        $1 == "orderd_orders_failed_total" { f = $2 }
        END { printf "%d %d %d\n", (p == "" ? -1 : p), (d == "" ? -1 : d), f }'
}

peak_rss_mib() {
    awk '/VmHWM/ {r = sprintf("%.1f", $2 / 1024)} END {print (r == "" ? "-" : r)}' \
        "/proc/$orderd_pid/status" 2>/dev/null || echo -
}

now() {
    date +%s.%N
}

# --- fill: the intake measurement, and the pristine database ----------------
fill() {
    mkdir -p "$tmp/fill"
    write_config "$tmp/fill/orderd.conf" "$tmp/fill/orderd.db"
    start_orderd "$tmp/fill/orderd.conf"
    local out non2xx errors depth=-1
    out=$(wrk -t2 -c"$fill_conns" -d"${fill_seconds}s" -s "$here/post_order.lua" \
        "http://127.0.0.1:$orderd_port/orders" 2>&1)
    intake_rate=$(awk '/^Requests\/sec/ {printf "%.0f", $2}' <<<"$out")
    non2xx=$(awk '/Non-2xx/ {print $NF}' <<<"$out")
    errors=$(awk '/Socket errors/ {gsub(",",""); print $4+$6+$8+$10}' <<<"$out")
    [ -n "$intake_rate" ] || { echo "$out" >&2; die "wrk gave no rate"; }
    [ "${non2xx:-0}" -eq 0 ] || die "fill: $non2xx answers were not 2xx"
    for _ in $(seq 1 600); do
        read -r _ depth _ <<<"$(metrics)"
        [ "$depth" = "0" ] && break
        sleep 0.1
    done
    [ "$depth" = "0" ] || die "fill: the queue did not empty within 60 s"
    intake_rss=$(peak_rss_mib)
    stop_orderd
    [ "$orderd_rc" -eq 0 ] || { cat "$tmp/orderd.log" >&2; die "fill: orderd exited $orderd_rc"; }
    # Everything into the main file, the -wal emptied, before it is copied.
    out=$(sqlite3 -bail "$tmp/fill/orderd.db" 'PRAGMA wal_checkpoint(TRUNCATE);') ||
        die "fill: checkpoint failed: $out"
    [ "${out%%|*}" = "0" ] || die "fill: checkpoint was blocked: $out"
    sync
    filled=$(sqlite3 -bail "$tmp/fill/orderd.db" \
        "SELECT count(*) FROM orders WHERE status = 'completed';") || die "fill: cannot count"
    printf 'fill: %s orders in %ss at %s connections, intake %s orders/s, %s socket errors, peak RSS %s MiB\n' \
        "$filled" "$fill_seconds" "$fill_conns" "$intake_rate" "${errors:-0}" "$intake_rss"
}

# requeue DB N — turns the first N completed orders of DB back into queued
# orders with a visible message each, as if they had just been accepted.
# Names only the columns it sets, so that columns a later schema adds keep
# their defaults. Prints the queue's length.
requeue() {
    local db=$1 n=$2 out
    if ! out=$(sqlite3 -bail "$db" 2>&1 <<SQL
BEGIN IMMEDIATE;
CREATE TEMP TABLE pick AS
    SELECT order_id FROM orders WHERE status = 'completed' ORDER BY order_id LIMIT $n;
UPDATE orders SET status = 'queued', attempts = 0, processed_at = NULL, last_error = NULL
    WHERE order_id IN (SELECT order_id FROM temp.pick);
INSERT INTO queue(order_id, enqueued_at, visible_at)
    SELECT o.order_id, o.created_at, 0 FROM orders o JOIN temp.pick p ON p.order_id = o.order_id
    ORDER BY o.order_id;
COMMIT;
SELECT count(*) FROM queue;
SQL
    ); then
        echo "$out" >&2
        die "requeue failed on $db (schema changed?)"
    fi
    [ "$out" = "$n" ] || die "requeue: the queue holds '$out' messages, not $n"
    echo "$out"
}

# --- one row -----------------------------------------------------------------
# prepare_row NAME N — a fresh copy of the pristine database with N orders
# queued (at most what the fill took), written out to the disk before
# anything is timed. Sets row_n.
prepare_row() {
    local name=$1 dir=$tmp/row-$1
    row_n=$2
    [ "$row_n" -gt "$filled" ] && row_n=$filled
    mkdir -p "$dir"
    cp "$tmp/fill/orderd.db" "$dir/orderd.db"
    if [ -f "$tmp/fill/orderd.db-wal" ]; then
        cp "$tmp/fill/orderd.db-wal" "$dir/orderd.db-wal"
    fi
    requeue "$dir/orderd.db" "$row_n" >/dev/null
    sync
}

# run_row NAME CEILING TARGET [KEY = VALUE lines for [workers]] — after
# prepare_row NAME. Appends one line to $tmp/table: name orders seconds rate
# ceiling target rss note (tab-separated; print_table works out the ratio).
run_row() {
    local name=$1 n=$row_n ceiling=$2 target=$3
    shift 3
    local dir=$tmp/row-$name
    write_config "$dir/orderd.conf" "$dir/orderd.db" "$@"
    start_orderd "$dir/orderd.conf"
    local t0
    t0=$(now)

    local t c d f t_first="" c_first=0 t_last="" c_last=0 failed=0 done_all=no deadline
    deadline=$(awk -v s="$(now)" -v r="$row_timeout" 'BEGIN { printf "%.3f", s + r }')
    for _ in $(seq 1 $((row_timeout * 10 + 50))); do
        read -r c d f <<<"$(metrics)"
        t=$(now)
        if [ "$c" != "-1" ]; then
            failed=$f
            if [ -z "$t_first" ] && [ "$c" -gt 0 ]; then
                t_first=$t
                c_first=$c
            fi
            if [ -n "$t_first" ] && [ "$c" -gt "$c_last" ]; then
                t_last=$t
                c_last=$c
            fi
            if [ "$d" = "0" ] && [ "$c" -ge "$n" ]; then
                done_all=yes
                break
            fi
        fi
        alive "$orderd_pid" || break
        awk -v t="$t" -v d="$deadline" 'BEGIN { exit !(t >= d) }' && break
        sleep 0.1
    done
    local rss
    rss=$(peak_rss_mib)
    stop_orderd

    local note=""
    if [ "$done_all" = no ]; then
        if [ "$orderd_rc" -ne 0 ]; then
            note="stopped early ($c_last of $n done)"
        else
            note="timed out after ${row_timeout}s ($c_last of $n done)"
        fi
    fi
    [ "$failed" -gt 0 ] && note="${note:+$note; }$failed failed attempts"
    [ "$orderd_rc" -eq 0 ] || note="${note:+$note; }orderd exited $orderd_rc"
    if [ -z "$t_first" ]; then
        note="${note:+$note; }nothing processed"
    fi
    awk -v name="$name" -v t0="$t0" -v t1="${t_first:-0}" -v c1="$c_first" -v t2="${t_last:-0}" \
        -v c2="$c_last" -v ceil="$ceiling" -v target="$target" -v rss="$rss" \
        -v rss_max="$rss_target_mib" -v note="$note" 'BEGIN {
        secs = t2 - t1; rate = (secs > 0 && c2 > c1) ? (c2 - c1) / secs : 0;
        if (rate == 0 && c2 > 0 && t2 > t0) {
            # Every order was done by the first sample: time it from "listening on".
            secs = t2 - t0; rate = c2 / secs;
        }
        if (secs < 1)
            note = note (note == "" ? "" : "; ") "under 1 s, too short to time: raise N";
        if (rss != "-" && rss + 0 > rss_max + 0)
            note = note (note == "" ? "" : "; ") "RSS over " rss_max " MiB";
        printf "%s\t%d\t%.2f\t%.0f\t%s\t%s\t%s\t%s\n", name, c2, secs, rate, ceil, target,
            rss, note }' >> "$tmp/table"
}

skip_row() {
    printf '%s\t-\t-\t-\t-\t%s\t-\t%s\n' "$1" "$2" "$3" >> "$tmp/table"
}

# set_ceiling ROW VALUE — the ceiling of a row measured after it ran.
set_ceiling() {
    awk -F'\t' -v OFS='\t' -v row="$1" -v c="$2" '$1 == row { $5 = c } { print }' \
        "$tmp/table" > "$tmp/table.new"
    mv "$tmp/table.new" "$tmp/table"
}

print_table() {
    awk -F'\t' 'BEGIN {
        fmt = "%-8s %7s %8s %9s %9s %6s %6s %4s %8s  %s\n";
        printf "\n" fmt, "row", "orders", "seconds", "orders/s", "ceiling", "ratio", "target",
            "met", "rss_MiB", "note" }
    {
        ratio = "-"; met = "-";
        if ($4 != "-" && $5 + 0 > 0) {
            ratio = sprintf("%.2f", $4 / $5);
            if ($6 != "-") met = (ratio + 0 >= $6 + 0) ? "yes" : "no";
        }
        printf fmt, $1, $2, $3, $4, $5, ratio, $6, met, $7, $8 }' "$tmp/table"
}

# --- the run -----------------------------------------------------------------
: > "$tmp/table"
has_url=yes
accepts fulfilment_url "http://127.0.0.1:1/" || has_url=no
concurrency_line=()
accepts fulfilment_concurrency "$concurrency" &&
    concurrency_line=("fulfilment_concurrency = $concurrency")

printf '\norderd bench-fulfilment: %s cores, %s workers, %s, %s\n' "$(nproc)" "$workers" \
    "$(date -u +%FT%TZ)" "${BENCH_ORDERD_BIN:-${TEST_ORDERD_BIN:-$root/build/orderd}}"
fill

for row in $rows; do
    case $row in
    persist)
        prepare_row persist "$n_persist"
        run_row persist "$intake_rate" - ;;
    command)
        # The ceiling: the mean of one spawn_rate run before the row and one after.
        prepare_row command "$n_command"
        spawn_before=$("$spawn_bin" "$spawn_seconds" "$(nproc)" "$command") ||
            die "spawn_rate failed"
        run_row command - 0.8 \
            "fulfilment_command = $command" "${concurrency_line[@]}"
        spawn_after=$("$spawn_bin" "$spawn_seconds" "$(nproc)" "$command") ||
            die "spawn_rate failed"
        echo "ceiling of command: spawn_rate before the row: $spawn_before"
        echo "                    spawn_rate after the row:  $spawn_after"
        spawn_rate=$(awk -v a="$spawn_before" -v b="$spawn_after" \
            'BEGIN { split(a, x, " "); split(b, y, " "); printf "%.0f", (x[2] + y[2]) / 2 }')
        set_ceiling command "$spawn_rate" ;;
    nginx)
        if [ "$has_url" = no ]; then
            echo "nginx: skipped: this build has no fulfilment_url"
            skip_row nginx 0.5 "skipped: this build has no fulfilment_url"
            continue
        fi
        prepare_row nginx "$n_nginx"
        nginx_port=$(free_port)
        start_nginx "$nginx_port"
        run_row nginx "$intake_rate" 0.5 \
            "fulfilment_url = http://127.0.0.1:$nginx_port/fulfil" "${concurrency_line[@]}"
        stop_pid "$nginx_pid"
        nginx_pid="" ;;
    slow)
        if [ "$has_url" = no ]; then
            echo "slow: skipped: this build has no fulfilment_url"
            skip_row slow 0.8 "skipped: this build has no fulfilment_url"
            continue
        fi
        prepare_row slow "$n_slow"
        slow_port=$(free_port)
        start_slow_receiver "$slow_port"
        run_row slow "$((concurrency * 1000 / delay_ms))" 0.8 \
            "fulfilment_url = http://127.0.0.1:$slow_port/fulfil" "${concurrency_line[@]}"
        stop_pid "$slow_pid"
        slow_pid="" ;;
    *)
        die "unknown row $row (persist, command, nginx, slow)" ;;
    esac
done

print_table
printf '\nceiling: persist = orderd intake (durability full, %s connections, wrk, same run; no target)\n' "$fill_conns"
printf '         command = bench/spawn_rate: %s with pipes, %s threads, mean of %ss before and\n' \
    "$command" "$(nproc)" "$spawn_seconds"
printf '                   %ss after the row\n' "$spawn_seconds"
printf '         nginx = orderd intake as for persist; slow = fulfilment_concurrency %s / %s ms\n' \
    "$concurrency" "$delay_ms"
printf 'orders/s = orders processed / seconds between the first and the last 100 ms sample of\n'
printf '           orderd_orders_processed_total; rss_MiB = orderd VmHWM (target <= %s MiB)\n' "$rss_target_mib"
