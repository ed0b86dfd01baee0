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
