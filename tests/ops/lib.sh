# tests/ops/lib.sh — helpers for the operations tests (sourced, not run).
#
# A test calls daemon_start with a config file; the daemon's stderr goes to
# $DAEMON_LOG, its pid is $DAEMON_PID and its port $DAEMON_PORT. Every
# process started here is recorded and ended by ops_cleanup (the runner's
# EXIT trap). Variables for tests never start with ORDERD_ (those are config
# overrides the daemon refuses when unknown).
# shellcheck shell=bash

OPS_PIDS=()

# Bounded wait: poll COMMAND every 0.05 s for at most SECONDS.
wait_for() {
    local seconds=$1
    shift
    local deadline=$((SECONDS + seconds))
    while ! "$@"; do
        [[ $SECONDS -lt $deadline ]] || return 1
        sleep 0.05
    done
}

# Lines of FILE matching the fixed string PATTERN (0 when none).
count_lines() {
    local n
    n=$(grep -cF -- "$2" "$1" 2>/dev/null) || true
    echo "${n:-0}"
}

log_has() { grep -qF -- "$2" "$1" 2>/dev/null; }

# A config for a test daemon: loopback, any free port, database in DIR.
# Extra INI text (whole sections) may follow as $3.
write_config() {
    local file=$1 dir=$2 extra=${3:-}
    cat >"$file" <<EOF
[server]
listen = 127.0.0.1:0

[storage]
path = $dir/orderd.db
durability = normal

[log]
level = info
format = text
$extra
EOF
}

# daemon_start CONF LOG: starts the binary and waits until it serves.
daemon_start() {
    local conf=$1
    DAEMON_LOG=$2
    : >"$DAEMON_LOG"
    "$BIN" -c "$conf" 2>>"$DAEMON_LOG" &
    DAEMON_PID=$!
    OPS_PIDS+=("$DAEMON_PID")
    if ! wait_for 15 log_has "$DAEMON_LOG" "listening on 127.0.0.1:"; then
        echo "the daemon did not log 'listening on' within 15 s:" >&2
        tail -n 5 "$DAEMON_LOG" >&2
        return 1
    fi
    DAEMON_PORT=$(grep -o 'listening on 127\.0\.0\.1:[0-9]*' "$DAEMON_LOG" | tail -n 1 | sed 's/.*://')
    BASE=http://127.0.0.1:$DAEMON_PORT
}

# daemon_stop: SIGTERM, wait (bounded) and check the exit status is 0.
daemon_stop() {
    local pid=$DAEMON_PID rc=0
    kill -TERM "$pid" 2>/dev/null || return 1
    if ! wait_for 20 proc_gone "$pid"; then
        kill -KILL "$pid" 2>/dev/null || true
        echo "the daemon did not stop within 20 s of SIGTERM" >&2
        return 1
    fi
    wait "$pid" || rc=$?
    [[ $rc -eq 0 ]] || { echo "the daemon exited $rc after SIGTERM" >&2; return 1; }
}

proc_gone() { ! kill -0 "$1" 2>/dev/null; }
proc_alive() { kill -0 "$1" 2>/dev/null; }

# post_order [CUSTOMER]: prints the order id of a 202, fails otherwise.
post_order() {
    local body code
    body=$(curl -s --max-time 10 -w '\n%{http_code}' -X POST "$BASE/orders" \
        -H 'Content-Type: application/json' \
        -d "{\"customer_id\":\"${1:-OPS-1}\",\"items\":[{\"item\":\"Laptop\",\"quantity\":1}]}") ||
        return 1
    code=${body##*$'\n'}
    [[ $code == 202 ]] || return 1
    body=${body%$'\n'*}
    sed -n 's/.*"order_id":"\([0-9A-Z]*\)".*/\1/p' <<<"$body"
}

# http_code METHOD PATH [curl args...]: prints the status code (000 on failure).
http_code() {
    local method=$1 path=$2
    shift 2
    curl -s --max-time 10 -o /dev/null -w '%{http_code}' -X "$method" "$@" "$BASE$path" || true
}

ops_cleanup() {
    local pid
    for pid in "${OPS_PIDS[@]}"; do
        kill -KILL "$pid" 2>/dev/null || true
    done
    for pid in "${OPS_PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
}
