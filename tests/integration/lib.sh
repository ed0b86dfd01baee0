# shellcheck shell=bash
# shellcheck disable=SC2034  # D_*, SHARED_*, STATUS...: globals set here for the test files
#
# tests/integration/lib.sh — helpers for the black-box tests of the orderd
# binary. Sourced by every tests/integration/test_*.sh and by tests/crash/run.sh.
#
# A test file defines functions named test_* (each a small independent case),
# may start one daemon shared by its cases, and ends with `run_tests`. Every
# case runs in its own subshell with `set -e`, its own temp dir ($T) and a
# watchdog; it passes when it returns, fails through `fail WHY` or the first
# command that fails. Daemons a case starts are killed when the case ends.
#
# The daemon is driven only from outside: a config file, curl, signals, and
# read-only queries of its database (db_query). JSON is read with grep/sed (no
# jq on CI): the daemon writes compact JSON, so "name":"value" is one token.
#
# Environment (never ORDERD_*: the daemon refuses unknown ORDERD_ variables):
#   TEST_ORDERD_BIN      binary under test (default: build/orderd)
#   TEST_ONLY            run only the cases whose name matches this regex
#   TEST_CASE_TIMEOUT    seconds before a case is killed (default 120)
#   TEST_KEEP_TMP        1: keep the temp dirs (for debugging)
#   TEST_STORAGE_HOOK    another storage backend for every daemon: a command
#                        run as `HOOK config DIR`, which prints section.key=value
#                        lines that each config of a daemon in DIR gets before
#                        the test's own, and as `HOOK query DIR SQL` by db_query
#                        (tests/pg/hook.sh: one PostgreSQL database per DIR)

LIB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$LIB_DIR/../.." && pwd)
: "${TEST_ORDERD_BIN:=$REPO_ROOT/build/orderd}"
: "${TEST_CASE_TIMEOUT:=120}"
: "${TEST_ONLY:=}"
: "${TEST_KEEP_TMP:=0}"
: "${TEST_STORAGE_HOOK:=}"
START_TIMEOUT=30        # seconds for the "listening on" line (sanitizer builds start slowly)
STOP_TIMEOUT=30         # seconds for a clean exit after SIGTERM (drain is at most 10 s)
HTTP_TIMEOUT=15         # curl --max-time

if [[ ! -x $TEST_ORDERD_BIN ]]; then
    echo "FAIL setup: $TEST_ORDERD_BIN is not an executable (build it, or set TEST_ORDERD_BIN)"
    echo "0 passed, 1 failed"
    exit 1
fi
TEST_ORDERD_BIN=$(cd "$(dirname "$TEST_ORDERD_BIN")" && pwd)/$(basename "$TEST_ORDERD_BIN")
export TEST_ORDERD_BIN

SUITE_TMP=$(mktemp -d "${TMPDIR:-/tmp}/orderd-test.XXXXXX")
SUITE_NAME=$(basename "$0" .sh)
SUITE_NAME=${SUITE_NAME#test_}
T=$SUITE_TMP            # the current case's own dir once a case runs

# ---- failing ----------------------------------------------------------------

# fail WHY... — ends the current case with this reason.
fail() {
    printf '%s\n' "$*" >"$T/.reason"
    if [[ ${IN_SETUP:-0} == 1 ]]; then
        echo "FAIL $SUITE_NAME:setup: $*"
        echo "0 passed, 1 failed"
    fi
    exit 1
}

# skip WHY... — ends the current case as skipped (neither passed nor failed).
skip() {
    printf '%s\n' "$*" >"$T/.reason"
    exit 77
}

# on_exit COMMAND — run COMMAND (eval'd) when the current case ends, after
# its daemons are killed (umount, ...).
CASE_CLEANUP=()
on_exit() {
    CASE_CLEANUP+=("$1")
}

# note TEXT... — an informative line in the runner's output ("# TEXT").
note() {
    printf '# %s\n' "$*" >>"$T/.notes"
}

assert_eq() { # GOT WANT WHAT
    [[ $1 == "$2" ]] || fail "$3: got '$1', want '$2'"
}

assert_ne() { # GOT UNWANTED WHAT
    [[ $1 != "$2" ]] || fail "$3: got '$1', which it must not be"
}

assert_match() { # TEXT ERE WHAT
    [[ $1 =~ $2 ]] || fail "$3: '$1' does not match /$2/"
}

assert_contains() { # TEXT PART WHAT
    [[ $1 == *"$2"* ]] || fail "$3: '$(printf '%.300s' "$1")' does not contain '$2'"
}

assert_not_contains() { # TEXT PART WHAT
    [[ $1 != *"$2"* ]] || fail "$3: '$(printf '%.300s' "$1")' contains '$2'"
}

# assert_status WANT — the last http call answered WANT (prints the body if not).
assert_status() {
    [[ $STATUS == "$1" ]] ||
        fail "$LAST_REQ: status $STATUS, want $1 (curl rc $HTTP_RC; body: $(printf '%.400s' "$BODY"))"
}

# wait_until SECONDS WHAT CMD... — polls CMD every 0.1 s until it succeeds.
wait_until() {
    local secs=$1 what=$2
    shift 2
    local deadline=$((SECONDS + secs))
    until "$@"; do
        ((SECONDS < deadline)) || fail "timed out after ${secs}s waiting for: $what"
        sleep 0.1
    done
}

# ---- config and daemons -------------------------------------------------------

CONFIG_SECTIONS=(server storage queue workers limits auth log)

# write_config FILE DIR [section.key=value ...] — a config for one daemon in DIR:
# loopback on a free port, database DIR/orderd.db (or TEST_STORAGE_HOOK's),
# text logs; each argument adds or replaces one key.
write_config() {
    local file=$1 dir=$2
    shift 2
    local -A kv=()
    local -a order=() hooked=()
    local arg k out
    if [[ -n $TEST_STORAGE_HOOK ]]; then
        out=$($TEST_STORAGE_HOOK config "$dir") || fail "write_config: $TEST_STORAGE_HOOK config $dir failed"
        [[ -z $out ]] || mapfile -t hooked <<<"$out"
    fi
    for arg in "server.listen=127.0.0.1:0" "storage.path=$dir/orderd.db" \
        "log.format=text" "log.level=info" "${hooked[@]}" "$@"; do
        k=${arg%%=*}
        [[ $k == *.* && $arg == *=* ]] || fail "write_config: '$arg' is not section.key=value"
        [[ -v kv[$k] ]] || order+=("$k")
        kv[$k]=${arg#*=}
    done
    local s
    {
        echo "# written by tests/integration/lib.sh"
        for s in "${CONFIG_SECTIONS[@]}"; do
            local first=1
            for k in "${order[@]}"; do
                [[ ${k%%.*} == "$s" ]] || continue
                ((first)) && printf '[%s]\n' "$s"
                first=0
                printf '%s = %s\n' "${k#*.}" "${kv[$k]}"
            done
        done
    } >"$file"
    for k in "${order[@]}"; do
        [[ " ${CONFIG_SECTIONS[*]} " == *" ${k%%.*} "* ]] || fail "write_config: unknown section in $k"
    done
}

# db_query DB SQL — a read-only query of the database of the daemon whose
# storage.path is DB (D_DB, SHARED_DB): one row a line, columns joined by |.
db_query() {
    if [[ -n $TEST_STORAGE_HOOK ]]; then
        $TEST_STORAGE_HOOK query "$(dirname "$1")" "$2"
    else
        sqlite3 -readonly "$1" "$2"
    fi
}

# start_orderd [section.key=value ...] — a fresh dir and config, then
# start_orderd_conf. Sets D_DIR D_CONF D_DB.
start_orderd() {
    D_DIR=$(mktemp -d "$T/d.XXXXXX")
    D_CONF=$D_DIR/orderd.conf
    write_config "$D_CONF" "$D_DIR" "$@"
    D_DB=$(sed -n 's/^path = //p' "$D_CONF")
    start_orderd_conf "$D_CONF"
}

# start_orderd_conf CONF — starts the daemon on CONF (again, for a restart on
# the same database) and waits until it listens. Sets D_PID (the daemon),
# D_CTL (its control dir: pid, rc once it exits), D_LOG, D_PORT and BASE_URL.
start_orderd_conf() {
    local conf=$1
    D_CONF=$conf
    D_CTL=$(mktemp -d "$(dirname "$conf")/run.XXXXXX")
    D_LOG=$D_CTL/stderr.log
    # The wrapper records the exit status, so any shell can wait for it with a bound.
    (
        trap - EXIT ERR
        set +e
        "$TEST_ORDERD_BIN" -c "$conf" </dev/null >"$D_CTL/stdout.log" 2>"$D_LOG" &
        echo $! >"$D_CTL/pid"
        wait $!
        echo $? >"$D_CTL/rc"
    ) 2>/dev/null &
    echo "$BASHPID $D_CTL" >>"$SUITE_TMP/.daemons"
    local deadline=$((SECONDS + START_TIMEOUT))
    until [[ -s $D_CTL/pid ]]; do
        ((SECONDS < deadline)) || fail "orderd did not start (no pid)"
        sleep 0.02
    done
    D_PID=$(<"$D_CTL/pid")
    D_PORT=
    while [[ -z $D_PORT ]]; do
        if [[ -e $D_CTL/rc ]]; then
            fail "orderd exited with status $(<"$D_CTL/rc") at start: $(tail -n 5 "$D_LOG" | tr '\n' ' ')"
        fi
        ((SECONDS < deadline)) || fail "orderd did not log 'listening on' within ${START_TIMEOUT}s"
        sleep 0.05
        D_PORT=$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9][0-9]*\).*/\1/p' "$D_LOG" | head -n 1)
    done
    BASE_URL=http://127.0.0.1:$D_PORT
    export BASE_URL
}

# wait_exit [CTL] [SECONDS] — waits for the daemon of CTL to exit; prints its
# exit status, or "timeout".
wait_exit() {
    local ctl=${1:-$D_CTL} secs=${2:-$STOP_TIMEOUT}
    local deadline=$((SECONDS + secs))
    until [[ -s $ctl/rc ]]; do
        if ((SECONDS >= deadline)); then
            echo timeout
            return 0
        fi
        sleep 0.05
    done
    cat "$ctl/rc"
}

# sanitizer_report [CTL] — fails the case if the daemon's log holds a
# sanitizer report.
sanitizer_report() {
    local log=${1:-$D_CTL}/stderr.log
    local re='ERROR: (Address|Leak|Thread|Memory)Sanitizer|WARNING: ThreadSanitizer|runtime error:'
    if grep -qE "$re" "$log"; then
        # the report itself goes to the case's output, which a FAIL prints
        grep -m 1 -A 30 -E "$re" "$log" | grep -E "$re|^ *#[0-3] |^  [A-Z][a-z]+ of size|^  Previous|^SUMMARY" >&2 || true
        fail "sanitizer report: $(grep -m 3 -E 'SUMMARY|runtime error' "$log" | tr '\n' ' ')"
    fi
}

# stop_orderd [CTL] — SIGTERM; the daemon must exit 0 within STOP_TIMEOUT.
stop_orderd() {
    local ctl=${1:-$D_CTL}
    [[ -e $ctl/rc ]] || kill -TERM "$(<"$ctl/pid")" 2>/dev/null || true
    expect_clean_exit "$ctl"
}

# expect_clean_exit [CTL] — the daemon, already told to stop, must exit 0
# within STOP_TIMEOUT (a second SIGTERM could hit it after it restored the
# default action, while it tears down).
expect_clean_exit() {
    local ctl=${1:-$D_CTL} rc
    rc=$(wait_exit "$ctl")
    if [[ $rc == timeout ]]; then
        kill -KILL "$(<"$ctl/pid")" 2>/dev/null || true
        fail "orderd did not exit within ${STOP_TIMEOUT}s of SIGTERM"
    fi
    sanitizer_report "$ctl"
    [[ $rc == 0 ]] || fail "orderd exited with status $rc after SIGTERM: $(tail -n 5 "$ctl/stderr.log" | tr '\n' ' ')"
}

# kill9 [CTL] — SIGKILL and wait for the process to be gone.
kill9() {
    local ctl=${1:-$D_CTL}
    kill -KILL "$(<"$ctl/pid")" 2>/dev/null || true
    [[ $(wait_exit "$ctl" 10) != timeout ]] || fail "orderd survived SIGKILL"
    sanitizer_report "$ctl"
}

# Kills the daemons started by shell $1 (a case's subshell) or by anyone ("all").
kill_daemons_of() {
    local owner=$1 who ctl
    [[ -f $SUITE_TMP/.daemons ]] || return 0
    while read -r who ctl; do
        [[ $owner == all || $who == "$owner" ]] || continue
        [[ -e $ctl/rc ]] && continue
        kill -KILL "$(cat "$ctl/pid" 2>/dev/null)" 2>/dev/null || true
    done <"$SUITE_TMP/.daemons"
}

# ---- HTTP --------------------------------------------------------------------

# req OUT METHOD PATH [curl args...] — one request to $BASE_URL; writes
# OUT.status ("000" when there was no answer), OUT.headers, OUT.body, OUT.rc
# (curl's exit status). Never fails on an HTTP or transport error.
req() {
    local out=$1 method=$2 path=$3
    shift 3
    local code rc=0
    : >"$out.headers"
    : >"$out.body"
    code=$(curl -sS --max-time "$HTTP_TIMEOUT" -X "$method" -o "$out.body" -D "$out.headers" \
        -w '%{http_code}' "$@" "$BASE_URL$path" 2>"$out.err") || rc=$?
    echo "${code:-000}" >"$out.status"
    echo "$rc" >"$out.rc"
}

# http METHOD PATH [curl args...] — req into $T/last; sets STATUS, BODY,
# HTTP_RC, LAST_REQ; header NAME reads its headers.
http() {
    LAST_REQ="$1 $2"
    req "$T/last" "$@"
    STATUS=$(<"$T/last.status")
    BODY=$(<"$T/last.body")
    HTTP_RC=$(<"$T/last.rc")
}

# header NAME [FILE] — the value of header NAME in the last answer (or FILE).
header() {
    local file=${2:-$T/last.headers}
    awk -v want="$(printf '%s' "$1" | tr '[:upper:]' '[:lower:]')" '
        { sub(/\r$/, "") }
        index($0, ":") { name = tolower(substr($0, 1, index($0, ":") - 1))
                         if (name == want) { v = substr($0, index($0, ":") + 1)
                                             sub(/^[ \t]+/, "", v); print v; exit } }' "$file"
}

JSON_CT=(-H 'Content-Type: application/json')

# order_body [CUSTOMER] [ITEM] [QUANTITY] — a valid order.
order_body() {
    printf '{"customer_id":"%s","items":[{"item":"%s","quantity":%s}]}' \
        "${1:-CUST-001}" "${2:-Laptop}" "${3:-1}"
}

# post_json BODY [curl args...] — POST /orders with a JSON body.
post_json() {
    local body=$1
    shift
    http POST /orders "${JSON_CT[@]}" --data-binary "$body" "$@"
}

# post_order [CUSTOMER] [curl args...] — POSTs a valid order, expects 202,
# sets ORDER_ID.
post_order() {
    local cust=${1:-CUST-001}
    shift || true
    post_json "$(order_body "$cust")" "$@"
    assert_status 202
    ORDER_ID=$(json_str order_id)
    assert_match "$ORDER_ID" '^[0-9A-HJKMNP-TV-Z]{26}$' "order_id of the 202"
}

# json_str FIELD [FILE|-] — the first "FIELD":"value" (of the last body).
json_str() {
    local src=${2:-$T/last.body}
    [[ $src == - ]] && src=/dev/stdin
    { grep -o "\"$1\":\"[^\"]*\"" "$src" || true; } | sed -n '1s/^"[^"]*":"\(.*\)"$/\1/p'
}

# json_all FIELD [FILE|-] — every "FIELD":"value", one a line.
json_all() {
    local src=${2:-$T/last.body}
    [[ $src == - ]] && src=/dev/stdin
    { grep -o "\"$1\":\"[^\"]*\"" "$src" || true; } | sed 's/^"[^"]*":"\(.*\)"$/\1/'
}

# json_raw FIELD [FILE|-] — the first non-string value of FIELD (number, null, bool).
json_raw() {
    local src=${2:-$T/last.body}
    [[ $src == - ]] && src=/dev/stdin
    { grep -oE "\"$1\":(-?[0-9][0-9.eE+-]*|null|true|false)" "$src" || true; } |
        sed -n '1s/^"[^"]*"://p'
}

# error_fields — the "field" of each entry of errors[] in the last problem.
error_fields() {
    json_all field
}

# order_status ID — the status of order ID (via GET), or the HTTP status.
order_status() {
    local out=$T/os.$BASHPID
    req "$out" GET "/orders/$1"
    if [[ $(<"$out.status") == 200 ]]; then
        json_str status "$out.body"
    else
        echo "http-$(<"$out.status")"
    fi
}

# order_is ID STATUS — for wait_until.
order_is() {
    [[ $(order_status "$1") == "$2" ]]
}

# metric NAME — the value of the series NAME (with its labels, exactly as
# exposed) from /metrics; 0 when absent.
metric() {
    local out=$T/metrics.$BASHPID
    req "$out" GET /metrics
    [[ $(<"$out.status") == 200 ]] || fail "GET /metrics answered $(<"$out.status")"
    awk -v n="$1" '$1 == n { print $2; found = 1; exit } END { if (!found) print 0 }' "$out.body"
}

metric_is() { # NAME VALUE — for wait_until
    [[ $(metric "$1") == "$2" ]]
}

# assert_metric NAME VALUE WHAT — the series reaches VALUE within 5 s (counters
# move just after the answer or the database commit that a test sees first).
assert_metric() {
    local deadline=$((SECONDS + 5)) got
    while got=$(metric "$1") && [[ $got != "$2" ]]; do
        ((SECONDS < deadline)) || fail "$3: $1 is $got, want $2"
        sleep 0.1
    done
}

metric_above() { # NAME VALUE — for wait_until
    awk -v v="$(metric "$1")" -v min="$2" 'BEGIN { exit !(v + 0 > min + 0) }'
}

# list_ids QUERY — every order_id the paged GET /orders?QUERY returns, following
# next_cursor; fails on a loop or a non-200 page.
list_ids() {
    local query=$1 cursor="" pages=0 out=$T/list.$BASHPID
    while :; do
        local q=$query
        [[ -n $cursor ]] && q="$q&cursor=$cursor"
        req "$out" GET "/orders?$q"
        [[ $(<"$out.status") == 200 ]] || fail "GET /orders?$q answered $(<"$out.status"): $(<"$out.body")"
        json_all order_id "$out.body"
        cursor=$(json_str next_cursor "$out.body")
        [[ -n $cursor ]] || break
        ((++pages < 10000)) || fail "GET /orders?$query: more than 10000 pages"
    done
}

# ---- load ---------------------------------------------------------------------

# load_client OUT MAX STOPFILE [CUSTOMER] — POSTs up to MAX orders one after
# the other until STOPFILE exists or the daemon refuses connections; appends
# one line per request to OUT: "START_EPOCH STATUS CURL_RC ORDER_ID|-".
# Meant to run in the background.
load_client() {
    local out=$1 max=$2 stopfile=$3 cust=${4:-LOAD}
    local i resp code rc t0 id body
    body=$(order_body "$cust")
    for ((i = 0; i < max; i++)); do
        [[ -e $stopfile ]] && break
        t0=$EPOCHREALTIME
        rc=0
        resp=$(curl -sS --max-time "$HTTP_TIMEOUT" -X POST "${JSON_CT[@]}" --data-binary "$body" \
            -w '\n%{http_code}' "$BASE_URL/orders" 2>/dev/null) || rc=$?
        code=${resp##*$'\n'}
        [[ $code =~ ^[0-9]{3}$ ]] || code=000
        id=-
        [[ $resp =~ \"order_id\":\"([0-9A-Z]{26})\" ]] && id=${BASH_REMATCH[1]}
        echo "$t0 $code $rc $id" >>"$out"
        ((rc == 7)) && break # connection refused: the daemon is gone
    done
    return 0
}

# get_all_ids FILE — GETs every order id listed in FILE (one a line), many per
# curl process; prints "STATUS ID" for every id not answered 200.
get_all_ids() {
    local file=$1 cfg=$T/get_all.$BASHPID.curl
    [[ -s $file ]] || return 0
    # one curl process, one connection: a config with a url and an output per id
    awk -v base="$BASE_URL" 'NF { printf "url = \"%s/orders/%s\"\noutput = \"/dev/null\"\n", base, $1 }' \
        "$file" >"$cfg"
    { curl -sS --max-time 30 -K "$cfg" -w '%{http_code} %{url_effective}\n' 2>/dev/null || true; } >"$cfg.out"
    awk '$1 != 200 { n = split($2, p, "/"); print $1, p[n] }' "$cfg.out"
    # an id curl never reached counts as missing too
    awk '{ n = split($2, p, "/"); print p[n] }' "$cfg.out" | sort >"$cfg.seen"
    sort "$file" | comm -23 - "$cfg.seen" | sed 's/^/unanswered /'
}

# ---- running the cases ---------------------------------------------------------

CASES_PASSED=0
CASES_FAILED=0
CASES_SKIPPED=0

suite_cleanup() {
    local rc=$?
    kill_daemons_of all
    if [[ $TEST_KEEP_TMP == 1 ]]; then
        echo "# kept $SUITE_TMP"
    else
        rm -rf "$SUITE_TMP"
    fi
    return "$rc"
}
trap suite_cleanup EXIT

# Runs one case in a subshell; the watchdog kills it after TEST_CASE_TIMEOUT.
run_case() {
    local name=$1 dir
    dir=$(mktemp -d "$SUITE_TMP/case.XXXXXX")
    (
        T=$dir
        set -eEuo pipefail
        # shellcheck disable=SC2317  # invoked by the EXIT trap
        case_cleanup() {
            local jobs_left hook
            jobs_left=$(jobs -p)
            kill_daemons_of "$BASHPID"
            # shellcheck disable=SC2086
            [[ -z $jobs_left ]] || kill $jobs_left 2>/dev/null || true
            for hook in "${CASE_CLEANUP[@]}"; do
                eval "$hook" || true
            done
        }
        trap case_cleanup EXIT
        trap 'exit 143' TERM
        trap '[[ -s $T/.errline ]] || echo "${BASH_SOURCE[0]##*/}:$LINENO: \`$BASH_COMMAND\` exited $?" >"$T/.errline"' ERR
        "$name"
    ) >"$dir/.output" 2>&1 &
    local pid=$!
    mkfifo "$dir/.watchdog"
    (
        # read -t is a builtin: killing this subshell leaves no sleeping child.
        trap - EXIT
        read -r -t "$TEST_CASE_TIMEOUT" _ <>"$dir/.watchdog" && exit 0
        echo "timed out after ${TEST_CASE_TIMEOUT}s" >"$dir/.reason"
        kill -TERM "$pid" 2>/dev/null
        read -r -t 5 _ <>"$dir/.watchdog" && exit 0
        kill -KILL "$pid" 2>/dev/null
    ) </dev/null >/dev/null 2>&1 &
    local watchdog=$!
    local rc=0
    wait "$pid" || rc=$?
    kill "$watchdog" 2>/dev/null || true
    wait "$watchdog" 2>/dev/null || true
    [[ -f $dir/.notes ]] && cat "$dir/.notes"
    local label="$SUITE_NAME:${name#test_}"
    if ((rc == 0)); then
        echo "ok $label"
        CASES_PASSED=$((CASES_PASSED + 1))
    elif ((rc == 77)); then
        echo "skip $label: $(cat "$dir/.reason" 2>/dev/null)"
        CASES_SKIPPED=$((CASES_SKIPPED + 1))
    else
        local why
        if [[ -s $dir/.reason ]]; then
            why=$(head -c 2000 "$dir/.reason" | tr '\n' ' ')
        elif [[ -s $dir/.errline ]]; then
            why=$(<"$dir/.errline")
        else
            why="exited with status $rc"
        fi
        echo "FAIL $label: $why"
        if [[ -s $dir/.output ]]; then
            sed 's/^/#   /' "$dir/.output" | tail -n 40
        fi
        CASES_FAILED=$((CASES_FAILED + 1))
    fi
}

# run_tests — runs every test_* function of the calling file, in the order
# they are written, then prints "N passed, M failed" and exits non-zero on a
# failure. TEST_ONLY=REGEX keeps the cases whose name matches.
run_tests() {
    local name
    local -a names=()
    mapfile -t names < <(grep -oE '^test_[A-Za-z0-9_]+ *\(\)' "$0" | sed 's/ *()$//')
    for name in "${names[@]}"; do
        if [[ -n $TEST_ONLY && ! $name =~ $TEST_ONLY ]]; then
            continue
        fi
        run_case "$name"
    done
    ((CASES_SKIPPED == 0)) || echo "# $CASES_SKIPPED skipped"
    echo "$CASES_PASSED passed, $CASES_FAILED failed"
    ((CASES_FAILED == 0))
}

# shared_orderd [section.key=value ...] — one daemon for the whole file,
# started before the cases (they find it at $BASE_URL); the file's last case
# should be `test_zz_clean_exit() { stop_shared; }`.
shared_orderd() {
    IN_SETUP=1
    T=$SUITE_TMP
    start_orderd "$@"
    SHARED_CTL=$D_CTL
    SHARED_DB=$D_DB
    IN_SETUP=0
}

stop_shared() {
    stop_orderd "$SHARED_CTL"
}
