#!/usr/bin/env bash
# test_cli.sh — the command line and its exit codes (SPEC "Command line"):
# 0 success, 1 bad config or usage, 2 runtime failure, each failure with one
# clear line on stderr.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

# run_bin ARGS... — runs the binary (bounded); sets RC, OUT, ERR.
run_bin() {
    RC=0
    timeout -k 5 20 "$TEST_ORDERD_BIN" "$@" >"$T/out" 2>"$T/err" </dev/null || RC=$?
    OUT=$(<"$T/out")
    ERR=$(<"$T/err")
}

assert_rc() { # WANT WHAT
    [[ $RC == "$1" ]] || fail "$2: exit status $RC, want $1 (stderr: $(printf '%.300s' "$ERR"))"
}

test_version() {
    run_bin --version
    assert_rc 0 "orderd --version"
    assert_match "$OUT" '^orderd [0-9]+\.[0-9]+\.[0-9]+' "--version output"
    assert_eq "$OUT" "orderd $(cat "$REPO_ROOT/VERSION")" "--version against VERSION"
}

test_usage_errors() {
    run_bin --no-such-option
    assert_rc 1 "orderd --no-such-option"
    assert_ne "$ERR" "" "stderr of a usage error"
    run_bin -c "$T/none.conf" no-such-command
    assert_rc 1 "orderd no-such-command"
}

test_bad_config_names_the_line() {
    write_config "$T/bad.conf" "$T"
    # the third line of the [server] section is bogus
    sed -i '/^listen = /a bogus_key = 1' "$T/bad.conf"
    local line
    line=$(grep -n '^bogus_key' "$T/bad.conf" | cut -d: -f1)
    run_bin -c "$T/bad.conf"
    assert_rc 1 "orderd with an unknown key"
    assert_contains "$ERR" "bad.conf:$line" "stderr of a bad config"
    assert_contains "$ERR" bogus_key "stderr of a bad config"
    run_bin -c "$T/bad.conf" --check-config
    assert_rc 1 "--check-config with an unknown key"
    assert_contains "$ERR" "bad.conf:$line" "--check-config stderr"

    printf '[queue]\nmax_receives = 5\nvisibility_timeout = soon\n' >"$T/bad2.conf"
    run_bin -c "$T/bad2.conf" --check-config
    assert_rc 1 "--check-config with a bad duration"
    assert_contains "$ERR" "bad2.conf:3" "--check-config stderr for a bad duration"

    run_bin -c "$T/does-not-exist.conf"
    assert_rc 1 "orderd with a missing config file"
    assert_ne "$ERR" "" "stderr for a missing config file"
}

test_unknown_environment_override() {
    write_config "$T/ok.conf" "$T"
    RC=0
    env ORDERD_NO_SUCH_SECTION_KEY=1 timeout 20 "$TEST_ORDERD_BIN" -c "$T/ok.conf" --check-config \
        >"$T/out" 2>"$T/err" </dev/null || RC=$?
    ERR=$(<"$T/err")
    assert_rc 1 "an unknown ORDERD_ variable"
    assert_contains "$ERR" ORDERD_NO_SUCH_SECTION_KEY "stderr for an unknown ORDERD_ variable"
}

test_check_config_shipped_files() {
    local f n=0
    for f in "$REPO_ROOT"/etc/orderd/*.conf; do
        run_bin -c "$f" --check-config
        assert_rc 0 "--check-config $f"
        n=$((n + 1))
    done
    ((n >= 1)) || fail "no etc/orderd/*.conf"
}

# ---- what the config names (issue 17, item 4) -------------------------------------

# make_pair NAME — a self-signed certificate $T/NAME.crt and its key $T/NAME.key.
make_pair() {
    command -v openssl >/dev/null || skip "openssl is not installed"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
        -subj "/CN=$1" -keyout "$T/$1.key" -out "$T/$1.crt" >/dev/null 2>&1 ||
        fail "openssl could not make a test certificate"
}

# line_of FILE KEY — the line of "KEY = ..." in FILE.
line_of() {
    grep -n "^$2 = " "$1" | cut -d: -f1
}

# check_fails WHAT KEY PART section.key=value... — --check-config of a config
# with these keys exits 1 and names the line of KEY with PART.
check_fails() {
    local what=$1 key=$2 part=$3
    shift 3
    write_config "$T/f.conf" "$T" "$@"
    run_bin -c "$T/f.conf" --check-config
    assert_rc 1 "--check-config with $what"
    assert_contains "$ERR" "f.conf:$(line_of "$T/f.conf" "$key"): " "--check-config with $what"
    assert_contains "$ERR" "] $key: " "--check-config with $what"
    assert_contains "$ERR" "$part" "--check-config with $what"
}

test_check_config_checks_the_files_start_up_needs() {
    make_pair a
    make_pair b
    printf 'junk line\n' >"$T/bad-keys"
    printf '#!/bin/sh\nexit 0\n' >"$T/noexec.sh"
    chmod 0644 "$T/noexec.sh"
    : >"$T/empty.pem"
    local tls=("server.tls_cert=$T/a.crt" "server.tls_key=$T/a.key")
    check_fails "a directory as tls_cert" tls_cert "Is a directory" \
        "server.tls_cert=$T" "server.tls_key=$T/a.key"
    check_fails "an empty tls_cert" tls_cert "is empty" \
        "server.tls_cert=$T/empty.pem" "server.tls_key=$T/a.key"
    check_fails "a key that is not a key" tls_key "no unencrypted PEM private key" \
        "server.tls_cert=$T/a.crt" "server.tls_key=$T/b.crt"
    check_fails "another certificate's key" tls_key "not the private key of the certificate" \
        "server.tls_cert=$T/a.crt" "server.tls_key=$T/b.key"
    check_fails "a broken keys_file" keys_file "bad-keys:1: expected NAME SCOPES SHA256HEX" \
        "auth.keys_file=$T/bad-keys"
    check_fails "a program that is not executable" fulfilment_command "not executable" \
        "workers.fulfilment_command=$T/noexec.sh --flag"
    check_fails "a command line with an open quote" fulfilment_command "quote" \
        "workers.fulfilment_command=/bin/true 'open"

    printf 'whsec_not*base64\n' >"$T/bad-secrets"
    check_fails "a broken fulfilment_secret_file" fulfilment_secret_file "bad-secrets: line 1:" \
        "workers.fulfilment_url=http://127.0.0.1:9/" "workers.fulfilment_secret_file=$T/bad-secrets"
    check_fails "a fulfilment_ca_file that is not PEM" fulfilment_ca_file "no PEM certificate" \
        "workers.fulfilment_url=https://127.0.0.1:9/" "workers.fulfilment_ca_file=$T/noexec.sh"

    # what start-up will find: all good
    printf 'ops admin %s\n' "$(printf 'k-1' | "$TEST_ORDERD_BIN" hash-key)" >"$T/keys"
    chmod 0600 "$T/keys"
    write_config "$T/ok.conf" "$T" "${tls[@]}" "auth.keys_file=$T/keys" \
        "workers.fulfilment_command=true --ignored"
    run_bin -c "$T/ok.conf" --check-config
    assert_rc 0 "--check-config with usable files"
    assert_eq "$ERR" "" "stderr of --check-config with usable files"

    # files that do not exist here: warnings with their lines, not errors
    # (a config for another host, checked on a build machine)
    write_config "$T/away.conf" "$T" "server.tls_cert=$T/none.crt" "server.tls_key=$T/none.key" \
        "auth.keys_file=$T/no-keys" "workers.fulfilment_command=no-such-program-17 --x"
    run_bin -c "$T/away.conf" --check-config
    assert_rc 0 "--check-config with files that are not here"
    local key
    for key in tls_cert tls_key keys_file fulfilment_command; do
        assert_contains "$ERR" "warning: $T/away.conf:$(line_of "$T/away.conf" "$key"): " \
            "the warning for $key"
    done
    assert_eq "$(grep -c '^warning: ' <<<"$ERR")" 4 "warnings of --check-config ($ERR)"
    write_config "$T/away2.conf" "$T" "workers.fulfilment_url=https://erp.test/orders" \
        "workers.fulfilment_secret_file=$T/none.secrets" "workers.fulfilment_ca_file=$T/none.pem"
    run_bin -c "$T/away2.conf" --check-config
    assert_rc 0 "--check-config with HTTP fulfilment files that are not here"
    for key in fulfilment_secret_file fulfilment_ca_file; do
        assert_contains "$ERR" "warning: $T/away2.conf:$(line_of "$T/away2.conf" "$key"): " \
            "the warning for $key"
    done
}

# A start that cannot use what the config names stops before it creates the
# database, with one line (in the configured log format) naming the key.
test_start_refuses_unusable_files_before_touching_storage() {
    make_pair a
    printf 'junk line\n' >"$T/bad-keys"
    local what args
    for what in tls keys; do
        rm -rf "$T/db"
        if [[ $what == tls ]]; then
            args=("server.tls_cert=$T/a.crt" "server.tls_key=$T/none.key")
        else
            args=("auth.keys_file=$T/bad-keys")
        fi
        write_config "$T/s.conf" "$T" "storage.path=$T/db/orderd.db" log.format=json "${args[@]}"
        run_bin -c "$T/s.conf"
        assert_rc 2 "a start with an unusable $what file"
        [[ ! -e $T/db ]] || fail "a start with an unusable $what file created $(ls -R "$T/db")"
        assert_eq "$(wc -l <<<"$ERR")" 1 "lines on stderr for an unusable $what file ($ERR)"
        jq -e '.level == "error" and (.msg | startswith("cannot start: "))' <<<"$ERR" >/dev/null ||
            fail "not a JSON error line: $ERR"
    done
    assert_contains "$ERR" "s.conf:$(line_of "$T/s.conf" keys_file): [auth] keys_file: " \
        "the line for the keys file"
}

# More worker threads than fulfilment_concurrency: the threads beyond it
# would run nothing. Warned about, at the key to change; not refused.
test_idle_threads_are_warned_about() {
    write_config "$T/w.conf" "$T" workers.count=4 workers.fulfilment_concurrency=2 \
        workers.fulfilment_command=true
    run_bin -c "$T/w.conf" --check-config
    assert_rc 0 "--check-config with more threads than fulfilment_concurrency"
    assert_contains "$ERR" "warning: $T/w.conf:$(line_of "$T/w.conf" count): [workers] count: 4 threads, but fulfilment_concurrency is 2" \
        "the warning"
    assert_contains "$ERR" "lower count or raise fulfilment_concurrency" "the warning's advice"
    start_orderd_conf "$T/w.conf"
    assert_contains "$(grep WARN "$D_LOG")" "[workers] count: 4 threads" "the warning at start"
    stop_orderd
}

# ---- [tracing] (issue 21): the collector's URL and the headers file ------------------

# tracing_config FILE ENDPOINT HEADERS_FILE [section.key=value...] — write_config
# (which knows no [tracing]) with a [tracing] section appended.
tracing_config() {
    local file=$1 endpoint=$2 headers=$3
    shift 3
    write_config "$file" "$T" "$@"
    printf '[tracing]\notlp_endpoint = %s\nsample_ratio = 0.5\nheaders_file = %s\n' \
        "$endpoint" "$headers" >>"$file"
}

# tracing_fails WHAT KEY PART ENDPOINT HEADERS_FILE — --check-config exits 1
# and names the line of KEY with PART.
tracing_fails() {
    local what=$1 key=$2 part=$3
    tracing_config "$T/t.conf" "$4" "$5"
    run_bin -c "$T/t.conf" --check-config
    assert_rc 1 "--check-config with $what"
    assert_contains "$ERR" "t.conf:$(line_of "$T/t.conf" "$key"): [tracing] $key: " \
        "--check-config with $what"
    assert_contains "$ERR" "$part" "--check-config with $what"
}

test_check_config_checks_tracing() {
    local url=http://127.0.0.1:4318/v1/traces
    printf '# for the collector\nAuthorization: Bearer tok-1\n\nX-Scope-OrgID: tenant-1\n' \
        >"$T/headers"
    tracing_config "$T/ok.conf" "$url" "$T/headers"
    run_bin -c "$T/ok.conf" --check-config
    assert_rc 0 "--check-config with a usable [tracing]"
    assert_eq "$ERR" "" "stderr of --check-config with a usable [tracing]"

    tracing_fails "an endpoint without a scheme" otlp_endpoint "http:// or https://" \
        "127.0.0.1:4318/v1/traces" "$T/headers"
    tracing_fails "an ftp endpoint" otlp_endpoint "http:// or https://" "ftp://collector/x" ""
    printf 'X-Ok: 1\nContent-Type: text/plain\n' >"$T/h-ctype"
    tracing_fails "a headers_file that sets Content-Type" headers_file \
        "h-ctype:2: Content-Type is set by orderd" "$url" "$T/h-ctype"
    printf 'Bearer secret-token-9\n' >"$T/h-bare"
    tracing_fails "a headers_file line without a name" headers_file "h-bare:1: expected Name: value" \
        "$url" "$T/h-bare"
    assert_not_contains "$ERR" "secret-token-9" "the message for a bad headers_file line"
    printf 'X-Token: abc\r\n' >"$T/h-crlf"
    tracing_fails "a headers_file with CRLF lines" headers_file "h-crlf:1: a carriage return" \
        "$url" "$T/h-crlf"
    local i
    for i in $(seq 17); do echo "X-H$i: v"; done >"$T/h-many"
    tracing_fails "a headers_file with 17 headers" headers_file "h-many:17: more than 16 headers" \
        "$url" "$T/h-many"

    # a headers file that is not here: a warning for --check-config, not an error ...
    tracing_config "$T/away.conf" "$url" "$T/no-headers"
    run_bin -c "$T/away.conf" --check-config
    assert_rc 0 "--check-config with a headers_file that is not here"
    assert_contains "$ERR" "warning: $T/away.conf:$(line_of "$T/away.conf" headers_file): [tracing] headers_file: " \
        "the warning for headers_file"
    # ... but a start refuses it, before it touches storage
    rm -rf "$T/db"
    tracing_config "$T/s.conf" "$url" "$T/no-headers" "storage.path=$T/db/orderd.db" \
        log.format=json
    run_bin -c "$T/s.conf"
    assert_rc 2 "a start with a headers_file that is not here"
    [[ ! -e $T/db ]] || fail "a start with a missing headers_file created the database"
    assert_contains "$ERR" "cannot start: " "the start's line"
    assert_contains "$ERR" "[tracing] headers_file: " "the start's line"
}

# ---- backup (issue 17, item 7b) ------------------------------------------------------

# backup_fails CONF DEST WHAT — the backup exits 2 with exactly one line on stderr.
backup_fails() {
    run_bin -c "$1" backup "$2"
    assert_rc 2 "backup $3"
    assert_eq "$(wc -l <<<"$ERR")" 1 "lines on stderr of a failed backup $3 ($ERR)"
    assert_contains "$ERR" "$2" "stderr of a failed backup $3"
}

test_failed_backup_prints_one_line_in_the_log_format() {
    start_orderd
    post_order
    stop_orderd
    write_config "$T/json.conf" "$T" "storage.path=$D_DB" log.format=json
    write_config "$T/text.conf" "$T" "storage.path=$D_DB" log.format=text
    backup_fails "$T/json.conf" "$T/no/such/dir/b.db" "into a missing directory (json)"
    jq -e '.level == "error" and (.msg | contains("backup"))' <<<"$ERR" >/dev/null ||
        fail "a failed backup's line is not a JSON error line: $ERR"
    backup_fails "$T/text.conf" "$T/no/such/dir/b.db" "into a missing directory (text)"
    assert_match "$ERR" '^[0-9T:.-]+Z ERROR backup ' "the text line"
    run_bin -c "$T/json.conf" backup "$T/b.db"
    assert_rc 0 "a backup"
    backup_fails "$T/json.conf" "$T/b.db" "onto an existing file"
    jq -e . <<<"$ERR" >/dev/null || fail "not JSON: $ERR"
    write_config "$T/none.conf" "$T" "storage.path=$T/none.db" log.format=json
    backup_fails "$T/none.conf" "$T/c.db" "of a database that does not exist"
}

test_unwritable_database() {
    write_config "$T/c.conf" "$T" "storage.path=$T/c.conf/orderd.db"
    run_bin -c "$T/c.conf"
    assert_rc 2 "orderd with a database under a regular file"
    assert_ne "$ERR" "" "stderr when the database cannot be opened"
    mkdir "$T/ro"
    chmod 0555 "$T/ro"
    if [[ $(id -u) != 0 ]]; then
        write_config "$T/d.conf" "$T" "storage.path=$T/ro/orderd.db"
        run_bin -c "$T/d.conf"
        assert_rc 2 "orderd with a database in a read-only directory"
    fi
}

test_port_in_use() {
    start_orderd
    local port=$D_PORT first=$D_CTL
    mkdir "$T/second"
    write_config "$T/second/c.conf" "$T/second" "server.listen=127.0.0.1:$port"
    run_bin -c "$T/second/c.conf"
    assert_rc 2 "a second orderd on port $port"
    assert_ne "$ERR" "" "stderr when the port is in use"
    assert_contains "$ERR" "$port" "stderr when the port is in use"
    # the first one is unharmed
    http GET /healthz
    assert_status 200
    stop_orderd "$first"
}

test_clean_exit_on_sigint() {
    start_orderd
    kill -INT "$D_PID"
    expect_clean_exit
}

run_tests
