#!/usr/bin/env bash
# test_ctl.sh — `orderd ctl` (issue 20) against a real daemon: every command
# as a table and as --json, paging with --all, each exit status (0 done, 1
# usage, 2 no answer, 3 not found, 4 refused, 5 another error answer), the
# URL derived from the config's listen and --url over it, TLS with
# --ca-file, and an API key that never shows: not in ctl's output, its argv
# (ps), its environment or the daemon's log.
#
# One shared daemon with API keys and a fulfilment command that fails for
# customers named C-FAIL* (max_receives 1: one failure is a dead letter).
# shellcheck disable=SC2016  # single-quoted scripts and regexes on purpose
set -euo pipefail
# shellcheck source-path=SCRIPTDIR
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

# The keys: long and distinctive, so that any leak is found by a plain search.
ADMIN_KEY="ctl-admin-K3y-6c1f0e9a2b7d48e5"
READER_KEY="ctl-reader-K3y-93ad51e07c2f"
WRITER_KEY="ctl-writer-K3y-4e8b21d6a0f3"
WRONG_KEY="ctl-wrong-K3y-000000000000"
ALL_KEYS=("$ADMIN_KEY" "$READER_KEY" "$WRITER_KEY" "$WRONG_KEY")
NO_SUCH_ID=01AAAAAAAAAAAAAAAAAAAAAAAA

hash_key() {
    printf '%s' "$1" | "$TEST_ORDERD_BIN" hash-key
}

# ---- the shared daemon ------------------------------------------------------------

IN_SETUP=1
T=$SUITE_TMP
KEYS=$SUITE_TMP/keys
mkdir -m 700 "$KEYS"
for k in admin reader writer wrong; do
    v=${k^^}_KEY
    printf '%s\n' "${!v}" >"$KEYS/$k.key"
    chmod 600 "$KEYS/$k.key"
done
{
    echo "ops admin $(hash_key "$ADMIN_KEY")"
    echo "reader orders:read $(hash_key "$READER_KEY")"
    echo "writer orders:write,orders:read $(hash_key "$WRITER_KEY")"
} >"$KEYS/keys"
chmod 600 "$KEYS/keys"
cat >"$SUITE_TMP/fulfil.sh" <<'SH'
#!/bin/sh
input=$(cat)
case $input in
*C-FAIL*)
    printf 'boom: the warehouse said no\n\tsecond line \033[31mred\033[0m\n' >&2
    exit 1 ;;
esac
exit 0
SH
chmod +x "$SUITE_TMP/fulfil.sh"
IN_SETUP=0
shared_orderd "auth.keys_file=$KEYS/keys" queue.max_receives=1 \
    "workers.fulfilment_command=$SUITE_TMP/fulfil.sh"
SHARED_PORT=$D_PORT
SHARED_LOG=$D_LOG

# ctl_conf FILE LISTEN [CERT KEY] — a config for ctl alone, which reads only
# [server] listen and tls_cert (so no storage, and no database under
# TEST_STORAGE_HOOK).
ctl_conf() {
    {
        printf '[server]\nlisten = %s\n' "$2"
        [[ $# -lt 4 ]] || printf 'tls_cert = %s\ntls_key = %s\n' "$3" "$4"
    } >"$1"
}

# ctl's own config: the shared daemon's port in listen (the daemon's has port 0)
CTL_CONF=$SUITE_TMP/ctl.conf
ctl_conf "$CTL_CONF" "127.0.0.1:$SHARED_PORT"

# ---- helpers -----------------------------------------------------------------------

# no_key_in TEXT WHAT — none of the keys is in TEXT.
no_key_in() {
    local k
    for k in "${ALL_KEYS[@]}"; do
        [[ $1 != *"$k"* ]] || fail "$2 shows an API key"
    done
}

# ctl_with CONF ARGS... — `orderd -c CONF ctl ARGS` (bounded); sets RC, OUT, ERR.
# Fails the case when the output shows a key or ctl's stderr holds a
# sanitizer report.
ctl_with() {
    local conf=$1
    shift
    RC=0
    timeout -k 5 60 "$TEST_ORDERD_BIN" -c "$conf" ctl "$@" >"$T/out" 2>"$T/err" </dev/null || RC=$?
    OUT=$(<"$T/out")
    ERR=$(<"$T/err")
    no_key_in "$OUT$ERR" "orderd ctl $*"
    if grep -qE 'ERROR: (Address|Leak)Sanitizer|runtime error:' "$T/err"; then
        fail "orderd ctl $*: sanitizer report: $(grep -m 3 -E 'SUMMARY|runtime error' "$T/err" | tr '\n' ' ')"
    fi
}

# ctl ARGS... — ctl_with the config that points at the shared daemon.
ctl() {
    ctl_with "$CTL_CONF" "$@"
}

assert_rc() { # WANT WHAT
    [[ $RC == "$1" ]] ||
        fail "$2: exit status $RC, want $1 (stdout: $(printf '%.300s' "$OUT"); stderr: $(printf '%.300s' "$ERR"))"
}

# assert_one_line TEXT WHAT — a failure is told in one line.
assert_one_line() {
    [[ -n $1 && $1 != *$'\n'* ]] || fail "$2: not one line: '$1'"
}

admin() { printf 'Authorization: Bearer %s' "$ADMIN_KEY"; }
reader() { printf 'Authorization: Bearer %s' "$READER_KEY"; }

# status_of ID — the order's status, read with curl and the reader's key.
status_of() {
    local out=$T/st.$BASHPID
    req "$out" GET "/orders/$1" -H "$(reader)"
    json_str status "$out.body"
}

status_is() { [[ $(status_of "$1") == "$2" ]]; }

# post_for CUSTOMER — posts an order of two items (writer key); sets ORDER_ID.
post_for() {
    post_json "{\"customer_id\":\"$1\",\"items\":[{\"item\":\"Laptop\",\"quantity\":2},{\"item\":\"Mouse\",\"quantity\":1}]}" \
        -H "Authorization: Bearer $WRITER_KEY"
    assert_status 202
    ORDER_ID=$(json_str order_id)
}

# json_lines_ok FILE — every line of FILE is one JSON object (python3).
json_lines_ok() {
    python3 -c '
import json, sys
n = 0
for line in open(sys.argv[1]):
    assert isinstance(json.loads(line), dict), line
    n += 1
print(n)' "$1"
}

# silent_listener REQFILE — a TCP server on loopback that takes one request,
# writes what it read to REQFILE and never answers. Sets SILENT_PORT.
silent_listener() {
    python3 -c '
import os, socket, sys, time
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen(4)
print(s.getsockname()[1], flush=True)
c, _ = s.accept()
data = b""
while b"\r\n\r\n" not in data:
    d = c.recv(4096)
    if not d:
        break
    data += d
open(sys.argv[1] + ".tmp", "wb").write(data)
os.rename(sys.argv[1] + ".tmp", sys.argv[1])
time.sleep(60)' "$1" >"$T/silent.port" &
    wait_until 10 "the silent listener's port" test -s "$T/silent.port"
    SILENT_PORT=$(<"$T/silent.port")
}

make_cert() {
    command -v openssl >/dev/null || skip "openssl is not installed"
    openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=127.0.0.1" \
        -addext "subjectAltName=IP:127.0.0.1" -keyout "$T/key.pem" -out "$T/cert.pem" \
        >/dev/null 2>&1 || fail "openssl could not make a test certificate"
}

# ---- usage --------------------------------------------------------------------------

test_help_and_usage_errors() {
    ctl --help
    assert_rc 0 "ctl --help"
    assert_contains "$OUT" "orders list [--status S]" "ctl --help"
    assert_contains "$OUT" "3  not found (404)" "ctl --help names the exit statuses"
    assert_contains "$OUT" "--ca-file FILE" "ctl --help"
    ctl help
    assert_rc 0 "ctl help"

    local -a line
    local bad
    for bad in "" "bogus" "orders" "orders get" "orders get A B" "dlq redrive" \
        "dlq redrive $NO_SUCH_ID --all" "dlq list --status queued" "stats --all" \
        "orders list --limit zero" "stats --timeout never" "stats --no-such-option" \
        "stats --url ftp://127.0.0.1:1" "stats --url http://user:pw@127.0.0.1:1" \
        "stats --url" "stats --ca-file $T/no-such-ca.pem" "stats --key-file $T/no-such.key"; do
        read -ra line <<<"$bad"
        ctl "${line[@]}"
        assert_rc 1 "ctl $bad"
        assert_eq "$OUT" "" "stdout of ctl $bad"
        assert_one_line "$ERR" "stderr of ctl $bad"
        assert_match "$ERR" '^orderd ctl: ' "stderr of ctl $bad"
    done

    # a key file others may read is refused, as ssh refuses such a private key
    cp "$KEYS/admin.key" "$T/open.key"
    chmod 644 "$T/open.key"
    ctl --key-file "$T/open.key" dlq list
    assert_rc 1 "a key file readable by others"
    assert_contains "$ERR" "readable by other users (mode 0644)" "stderr for an open key file"
    : >"$T/empty.key"
    chmod 600 "$T/empty.key"
    ctl --key-file "$T/empty.key" dlq list
    assert_rc 1 "an empty key file"
    assert_contains "$ERR" "empty" "stderr for an empty key file"
}

# ---- the commands ----------------------------------------------------------------------

test_orders_get_as_lines_and_json() {
    post_for C-GET
    local id=$ORDER_ID
    wait_until 30 "order completed" status_is "$id" completed
    ctl --key-file "$KEYS/reader.key" orders get "$id"
    assert_rc 0 "orders get"
    assert_match "$OUT" "(^|"$'\n'")order_id: +$id"$'\n' "orders get: the id"
    assert_match "$OUT" $'\n''status: +completed'$'\n' "orders get: the status"
    assert_match "$OUT" $'\n''items: +2 x Laptop'$'\n'' +1 x Mouse'$'\n' "orders get: the items"
    assert_match "$OUT" $'\n''processed_at: +20[0-9-]+T' "orders get: processed_at"
    assert_match "$OUT" $'\n''last_error: +-'$'\n' "orders get: no error"
    assert_eq "$ERR" "" "stderr of orders get"

    ctl --key-file "$KEYS/reader.key" --json orders get "$id"
    assert_rc 0 "orders get --json"
    http GET "/orders/$id" -H "$(reader)"
    assert_eq "$OUT" "$BODY" "orders get --json is the API's answer"

    # an id with a slash stays one path segment
    ctl --key-file "$KEYS/reader.key" orders get "a/b?c"
    assert_rc 3 "orders get of an id with a slash"
    assert_contains "$ERR" "/orders/a%2Fb%3Fc:" "the request of an id with a slash"
}

test_orders_list_pages_filters_and_all() {
    local cust=C-LIST-$RANDOM$RANDOM i
    local -a ids=()
    for ((i = 0; i < 5; i++)); do
        post_for "$cust"
        ids=("$ORDER_ID" "${ids[@]}") # newest first, as the API lists them
    done
    wait_until 30 "5 orders completed" status_is "${ids[4]}" completed
    for i in "${ids[@]}"; do wait_until 30 "order completed" status_is "$i" completed; done
    local r=(--key-file "$KEYS/reader.key")

    # one page as a table: a header, 2 rows, and a word on stderr about the rest
    ctl "${r[@]}" orders list --customer "$cust" --limit 2
    assert_rc 0 "orders list --limit 2"
    local -a lines
    mapfile -t lines <<<"$OUT"
    assert_eq "${#lines[@]}" 3 "lines of a page of 2"
    assert_match "${lines[0]}" '^ID +STATUS +CUSTOMER +ATTEMPTS +CREATED$' "the header"
    assert_match "${lines[1]}" "^${ids[0]}  completed  $cust +1  20[0-9-]+T[0-9:.]+Z$" "a row"
    assert_match "$ERR" '^more: --cursor [^ ]+ for the next page, or --all$' "the hint of a next page"

    # --all: every page (2 a page: 3 requests)
    ctl "${r[@]}" orders list --customer "$cust" --limit 2 --all
    assert_rc 0 "orders list --all"
    assert_eq "$(awk 'NR > 1 { print $1 }' <<<"$OUT" | tr '\n' ' ')" "${ids[*]} " "ids of --all"
    assert_eq "$ERR" "" "stderr of orders list --all"

    # --json: the page as the API answers it; with --all, one order a line
    ctl "${r[@]}" orders list --customer "$cust" --limit 2 --json
    assert_rc 0 "orders list --json"
    http GET "/orders?customer_id=$cust&limit=2" -H "$(reader)"
    assert_eq "$OUT" "$BODY" "orders list --json is the API's page"
    local cursor
    cursor=$(json_str next_cursor)
    [[ -n $cursor ]] || fail "no next_cursor after 2 of 5"
    ctl "${r[@]}" orders list --customer "$cust" --limit 2 --json --cursor "$cursor"
    http GET "/orders?customer_id=$cust&limit=2&cursor=$cursor" -H "$(reader)"
    assert_eq "$OUT" "$BODY" "orders list --cursor"

    ctl "${r[@]}" --json orders list --customer "$cust" --limit 2 --all
    assert_rc 0 "orders list --json --all"
    assert_eq "$(json_lines_ok "$T/out")" 5 "JSON lines of --json --all"
    assert_eq "$(json_all order_id "$T/out" | tr '\n' ' ')" "${ids[*]} " "ids of --json --all"

    # filters pass through; an empty answer says so on stderr
    ctl "${r[@]}" orders list --customer "$cust" --status completed --all
    assert_rc 0 "orders list --status completed"
    assert_eq "$(awk 'NR > 1 { print $2 }' <<<"$OUT" | sort -u)" completed "statuses listed"
    ctl "${r[@]}" orders list --customer "$cust" --status dead_lettered
    assert_rc 0 "an empty list"
    assert_eq "$OUT" "" "stdout of an empty list"
    assert_eq "$ERR" "no orders" "stderr of an empty list"
}

test_dlq_list_redrive_delete() {
    local cust=C-FAIL-$RANDOM$RANDOM i id
    local -a ids=()
    for ((i = 0; i < 3; i++)); do
        post_for "$cust-$i"
        ids+=("$ORDER_ID")
    done
    for id in "${ids[@]}"; do wait_until 30 "dead-lettered" status_is "$id" dead_lettered; done
    local a=(--key-file "$KEYS/admin.key")
    export COLUMNS=200 # whatever the terminal running the tests

    ctl "${a[@]}" dlq list --all
    assert_rc 0 "dlq list"
    assert_match "${OUT%%$'\n'*}" '^ID +ATTEMPTS +AGE +LAST ERROR$' "the header of dlq list"
    for id in "${ids[@]}"; do
        assert_match "$OUT" $'\n'"$id +1 +[0-9]+s  fulfilment exited with status 1: boom: the warehouse said no" \
            "the row of $id"
    done
    # the error's lines joined into one, its escape characters gone
    assert_contains "$OUT" "said no second line [31mred [0m"$'\n' "the error of a row"
    assert_not_contains "$OUT" $'\e' "dlq list (an escape character of the error)"
    assert_eq "$(awk 'NR > 1 && ($1 !~ /^[0-9A-Z]+$/ || length($1) != 26)' <<<"$OUT")" "" "lines that are no row"

    # a narrow terminal: the error is cut, every line fits
    RC=0
    COLUMNS=60 timeout 60 "$TEST_ORDERD_BIN" -c "$CTL_CONF" ctl "${a[@]}" dlq list >"$T/narrow" 2>&1 ||
        RC=$?
    assert_eq "$RC" 0 "dlq list with COLUMNS=60"
    assert_eq "$(awk 'length > 60' "$T/narrow")" "" "lines over 60 columns"
    assert_match "$(grep -m 1 "${ids[0]}" "$T/narrow")" '\.\.\.$' "a cut error ends in ..."

    ctl "${a[@]}" --json dlq list
    assert_rc 0 "dlq list --json"
    http GET /admin/dlq -H "$(admin)"
    assert_eq "$OUT" "$BODY" "dlq list --json is the API's page"
    ctl "${a[@]}" --json dlq list --all --limit 2
    assert_rc 0 "dlq list --json --all"
    json_lines_ok "$T/out" >/dev/null
    for id in "${ids[@]}"; do
        assert_contains "$OUT" "\"order_id\":\"$id\"" "dlq list --json --all"
    done

    # redrive one: it fails again and comes back, with its history
    ctl "${a[@]}" dlq redrive "${ids[0]}"
    assert_rc 0 "dlq redrive ID"
    assert_eq "$OUT" "redriven: ${ids[0]} queued again" "dlq redrive ID"
    ctl "${a[@]}" --json dlq redrive "${ids[1]}"
    assert_rc 0 "dlq redrive ID --json"
    assert_eq "$OUT" "{\"order_id\":\"${ids[1]}\",\"status\":\"queued\"}" "dlq redrive --json"
    wait_until 30 "redriven order dead again" bash -c \
        "curl -s -H 'Authorization: Bearer $READER_KEY' $BASE_URL/orders/${ids[0]} | grep -q '\"status\":\"dead_lettered\",.*\"redrives\":1'"

    # delete: the order stays, discarded; a second delete finds nothing
    ctl "${a[@]}" dlq delete "${ids[2]}"
    assert_rc 0 "dlq delete"
    assert_eq "$OUT" "deleted: dead letter ${ids[2]}; its order stays, discarded" "dlq delete"
    assert_eq "$(status_of "${ids[2]}")" discarded "status after dlq delete"
    ctl "${a[@]}" dlq delete "${ids[2]}"
    assert_rc 3 "a second dlq delete"
    assert_contains "$ERR" "404" "stderr of a second delete"
    wait_until 30 "second redriven order dead again" status_is "${ids[1]}" dead_lettered
    ctl "${a[@]}" --json dlq delete "${ids[1]}"
    assert_rc 0 "dlq delete --json"
    assert_eq "$OUT" "" "dlq delete --json (204: no body)"

    # redrive all
    ctl "${a[@]}" dlq redrive --all
    assert_rc 0 "dlq redrive --all"
    assert_match "$OUT" '^redriven: [1-9][0-9]* dead letters? queued again$' "dlq redrive --all"
    wait_until 30 "dead again" status_is "${ids[0]}" dead_lettered
    ctl "${a[@]}" --json dlq redrive --all
    assert_rc 0 "dlq redrive --all --json"
    assert_match "$OUT" '^\{"redriven":[1-9][0-9]*\}$' "dlq redrive --all --json"
}

test_stats_as_lines_and_json() {
    ctl stats
    assert_rc 0 "stats"
    assert_match "$OUT" "(^|"$'\n'")version: +$(cat "$REPO_ROOT/VERSION")"$'\n' "stats: version"
    local k
    for k in received processed failed dead_lettered queue_depth dlq_depth; do
        assert_match "$OUT" $'\n'"$k: +[0-9]+("$'\n'"|$)" "stats: $k"
    done
    assert_match "$OUT" $'\n''ready: +true' "stats: ready"
    ctl --json stats
    assert_rc 0 "stats --json"
    assert_eq "$(json_lines_ok "$T/out")" 1 "stats --json is one JSON document"
    assert_match "$OUT" '^\{.*"received":[0-9]+,' "stats --json"
    assert_match "$OUT" '"dlq_depth":[0-9]+[,}]' "stats --json"
}

# ---- exit statuses ---------------------------------------------------------------------

test_exit_2_when_no_answer() {
    # nothing listens on port 1
    ctl --url http://127.0.0.1:1 stats
    assert_rc 2 "a refused connection"
    assert_one_line "$ERR" "stderr of a refused connection"
    assert_contains "$ERR" "GET http://127.0.0.1:1/status.json: no answer:" "stderr of a refused connection"
    # a daemon that never answers: --timeout
    silent_listener "$T/req"
    local t0=$SECONDS
    ctl --url "http://127.0.0.1:$SILENT_PORT" --timeout 1s stats
    assert_rc 2 "a request that times out"
    ((SECONDS - t0 < 10)) || fail "--timeout 1s took $((SECONDS - t0)) s"
    assert_contains "$ERR" "timed out" "stderr of a timeout"
    assert_contains "$ERR" "(--timeout)" "stderr of a timeout"
    # a name that does not resolve
    ctl --url http://no-such-host.invalid:8080 --timeout 5s stats
    assert_rc 2 "an unknown host"
    assert_one_line "$ERR" "stderr of an unknown host"
    # a key over plain http to another host: said before it goes
    ctl --url http://no-such-host.invalid:8080 --timeout 5s --key-file "$KEYS/admin.key" dlq list
    assert_rc 2 "an unknown host, with a key"
    assert_match "$ERR" '^orderd ctl: warning: the API key goes unencrypted to http://no-such-host\.invalid:8080 \(plain http\); use https'$'\n' \
        "the warning of a key over plain http"
}

test_exit_3_when_not_found() {
    ctl --key-file "$KEYS/reader.key" orders get "$NO_SUCH_ID"
    assert_rc 3 "orders get of an unknown id"
    assert_one_line "$ERR" "stderr of a 404"
    assert_match "$ERR" "^orderd ctl: GET http://127\.0\.0\.1:$SHARED_PORT/orders/$NO_SUCH_ID: 404 Not Found: no order with this id \[request [0-9A-Z]{26}\]$" \
        "stderr of a 404"
    assert_eq "$OUT" "" "stdout of a 404"
    ctl --key-file "$KEYS/admin.key" dlq delete "$NO_SUCH_ID"
    assert_rc 3 "dlq delete of an unknown id"
    ctl --key-file "$KEYS/admin.key" dlq redrive "$NO_SUCH_ID"
    assert_rc 3 "dlq redrive of an unknown id"
    # an order that is no dead letter: the API's 404 "no dead letter with this id"
    post_for C-NOT-DEAD
    wait_until 30 "order completed" status_is "$ORDER_ID" completed
    ctl --key-file "$KEYS/admin.key" dlq redrive "$ORDER_ID"
    assert_rc 3 "dlq redrive of a completed order"
    assert_contains "$ERR" "no dead letter with this id" "stderr of a redrive of a completed order"
}

test_exit_4_when_refused() {
    ctl orders list
    assert_rc 4 "orders list without a key"
    assert_one_line "$ERR" "stderr of a 401"
    assert_contains "$ERR" ": 401 Unauthorized" "stderr of a 401"
    assert_contains "$ERR" "pass --key-file" "the hint of a 401 without a key"
    ctl --key-file "$KEYS/wrong.key" orders list
    assert_rc 4 "orders list with an unknown key"
    assert_contains "$ERR" "does not know the key" "the hint of a 401 with a key"
    ctl --key-file "$KEYS/reader.key" dlq list
    assert_rc 4 "dlq list with a reader's key"
    assert_contains "$ERR" ": 403 Forbidden" "stderr of a 403"
    assert_contains "$ERR" "lacks the scope" "the hint of a 403"
    ctl --key-file "$KEYS/writer.key" dlq redrive --all
    assert_rc 4 "dlq redrive --all with a writer's key"
    ctl --key-file "$KEYS/admin.key" orders get "$NO_SUCH_ID"
    assert_rc 4 "orders get with the admin key (admin does not imply orders:read)"
}

test_exit_5_for_other_error_answers() {
    ctl --key-file "$KEYS/reader.key" orders list --status bogus
    assert_rc 5 "an invalid --status"
    assert_one_line "$ERR" "stderr of a 400"
    assert_contains "$ERR" ": 400 Invalid query" "stderr of a 400"
    assert_contains "$ERR" "(status: must be one of queued," "the field of a 400"
    assert_eq "$OUT" "" "stdout of a 400"
    ctl --key-file "$KEYS/reader.key" orders list --limit 501
    assert_rc 5 "--limit over the API's"
    assert_contains "$ERR" "limit: must be an integer from 1 to 500" "stderr of a --limit 501"
}

test_exit_5_while_the_daemon_drains() {
    start_orderd server.drain_grace=4s
    kill -TERM "$D_PID"
    wait_until 5 "/readyz answers 503" bash -c \
        "[[ \$(curl -s -o /dev/null -w '%{http_code}' $BASE_URL/readyz) == 503 ]]"
    ctl --url "$BASE_URL" orders list
    assert_rc 5 "orders list while draining"
    assert_one_line "$ERR" "stderr of a 503"
    assert_contains "$ERR" ": 503 Service Unavailable" "stderr of a 503"
    expect_clean_exit
}

# ---- where ctl connects --------------------------------------------------------------------

test_url_from_listen_and_url_override() {
    # the config's listen, a wildcard address meaning loopback
    ctl_conf "$T/any.conf" "0.0.0.0:$SHARED_PORT"
    ctl_with "$T/any.conf" stats
    assert_rc 0 "stats with listen 0.0.0.0"
    assert_contains "$OUT" "received:" "stats with listen 0.0.0.0"
    ctl_conf "$T/any6.conf" "[::]:1"
    ctl_with "$T/any6.conf" stats
    assert_rc 2 "stats with listen [::]:1 (nothing there)"
    assert_contains "$ERR" "GET http://[::1]:1/status.json:" "the URL from listen [::]"
    # port 0 is any free port: there is nothing to derive
    ctl_conf "$T/zero.conf" 127.0.0.1:0
    ctl_with "$T/zero.conf" stats
    assert_rc 1 "stats with listen on port 0"
    assert_contains "$ERR" "pass --url" "stderr with listen on port 0"
    # tls_cert set: https
    ctl_conf "$T/tls.conf" 127.0.0.1:1 "$T/none.pem" "$T/none.key"
    ctl_with "$T/tls.conf" stats
    assert_rc 2 "stats with tls_cert and nothing listening"
    assert_contains "$ERR" "GET https://127.0.0.1:1/status.json:" "the URL with tls_cert"
    # --url wins over listen; a trailing slash is fine
    ctl_conf "$T/elsewhere.conf" 127.0.0.1:1
    ctl_with "$T/elsewhere.conf" --url "$BASE_URL/" --key-file "$KEYS/admin.key" dlq list
    assert_rc 0 "--url over listen"
    ctl_with "$T/elsewhere.conf" dlq list --key-file "$KEYS/admin.key"
    assert_rc 2 "no --url: listen's port 1"
}

test_tls_with_ca_file() {
    make_cert
    start_orderd "server.tls_cert=$T/cert.pem" "server.tls_key=$T/key.pem"
    ctl_conf "$T/c.conf" "127.0.0.1:$D_PORT" "$T/cert.pem" "$T/key.pem"
    ctl_with "$T/c.conf" --ca-file "$T/cert.pem" stats
    assert_rc 0 "stats over https with --ca-file"
    assert_contains "$OUT" "ready:" "stats over https"
    BASE_URL=https://127.0.0.1:$D_PORT
    post_order C-TLS --cacert "$T/cert.pem"
    ctl_with "$T/c.conf" --ca-file "$T/cert.pem" --url "https://127.0.0.1:$D_PORT" orders list
    assert_rc 0 "orders list over https with --url"
    assert_contains "$OUT" "$ORDER_ID" "orders list over https"
    # verified by default: a self-signed certificate without --ca-file is refused
    ctl_with "$T/c.conf" stats
    assert_rc 2 "https without --ca-file"
    assert_one_line "$ERR" "stderr of an unverified certificate"
    assert_contains "$ERR" "pass --ca-file" "the hint of an unverified certificate"
    # and the name is checked: the certificate holds 127.0.0.1, not localhost
    ctl_with "$T/c.conf" --ca-file "$T/cert.pem" --url "https://localhost:$D_PORT" stats
    assert_rc 2 "https to a name the certificate does not hold"
    # plain http to the TLS port
    ctl_with "$T/c.conf" --url "http://127.0.0.1:$D_PORT" stats
    assert_rc 2 "http to the https port"
    stop_orderd
}

# ---- the key never shows -----------------------------------------------------------------

test_key_is_sent_but_never_in_argv_environment_or_output() {
    silent_listener "$T/req"
    local pid
    "$TEST_ORDERD_BIN" -c "$CTL_CONF" ctl --url "http://127.0.0.1:$SILENT_PORT" --timeout 20s \
        --key-file "$KEYS/admin.key" dlq list >"$T/out" 2>"$T/err" </dev/null &
    pid=$!
    wait_until 15 "ctl's request reaches the listener" test -s "$T/req"
    # ctl is still waiting for an answer: what ps and /proc show of it
    local args
    args=$(ps -ww -o args= -p "$pid") || fail "ctl is not running any more"
    assert_contains "$args" "--key-file $KEYS/admin.key" "ctl's command line"
    no_key_in "$args" "ps of ctl"
    no_key_in "$(tr '\0' ' ' <"/proc/$pid/cmdline")" "/proc/PID/cmdline of ctl"
    no_key_in "$(tr '\0' '\n' <"/proc/$pid/environ")" "/proc/PID/environ of ctl"
    kill -TERM "$pid"
    wait "$pid" || true
    no_key_in "$(cat "$T/out" "$T/err")" "ctl's output"
    # what went over the wire: the key, in the header
    local sent
    sent=$(tr -d '\r' <"$T/req")
    assert_eq "${sent%%$'\n'*}" "GET /admin/dlq HTTP/1.1" "the request line"
    grep -qx "Authorization: Bearer $ADMIN_KEY" <<<"$sent" || fail "no Authorization header with the key"
    assert_contains "$sent" "User-Agent: orderd-ctl/" "the User-Agent header"
}

test_zz_clean_exit() {
    stop_shared
    no_key_in "$(cat "$SHARED_LOG")" "the daemon's log"
}

run_tests
