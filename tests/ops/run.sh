#!/usr/bin/env bash
# tests/ops/run.sh — operations tests against the real binary: online
# backup while serving, restore, and reload with SIGHUP (log level, broken
# file, settings that need a restart, rate limits and keys when built in,
# no request dropped), and the package step of make run and make test
# waiting for another apt or dpkg (root only, skipped otherwise).
#
#   TEST_ORDERD_BIN=/abs/build/orderd tests/ops/run.sh [TEST...]
#
# Each test runs in its own process (`run.sh --one NAME`) under a time
# limit, with its own temp dir, and ends every process it started. Prints
# `ok NAME` / `FAIL NAME: why` per test (a test that exits 77 is skipped),
# then `N passed, M failed`.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
BIN=${TEST_ORDERD_BIN:-$ROOT/build/orderd}
TEST_LIMIT_S=180
# shellcheck source=lib.sh source-path=SCRIPTDIR
. "$HERE/lib.sh"

TESTS=(
    backup-while-serving
    backup-refuses-existing-dest
    restore-from-backup
    reload-log-level
    reload-broken-file-keeps-running
    reload-restart-needed-logged
    reload-drops-no-request
    reload-rate-limit
    reload-keys
    apt-install-waits-for-dpkg-lock
    apt-update-waits-for-lists-lock
)

fail() {
    echo "$*"
    exit 1
}

# ---- backup and restore -----------------------------------------------------

# Posts orders until $T/stop exists (at most 5000 or 120 s); each id acknowledged
# with 202 is appended to $T/acked, each failure to $T/failed.
post_loop() {
    local i=0 id
    while [[ ! -e $T/stop && $i -lt 5000 && $SECONDS -lt 120 ]]; do
        if id=$(post_order "LOOP-$((i % 7))") && [[ -n $id ]]; then
            echo "$id" >>"$T/acked"
        else
            echo "$i" >>"$T/failed"
        fi
        i=$((i + 1))
    done
}

complete_ids() { grep -E '^[0-9A-Z]{26}$' "$1" 2>/dev/null || true; }

acked_at_least() { [[ $(complete_ids "$T/acked" | wc -l) -ge $1 ]]; }

t_backup_while_serving() {
    write_config "$T/orderd.conf" "$T" "[workers]
count = 2"
    daemon_start "$T/orderd.conf" "$T/orderd.log" || fail "the daemon did not start"
    : >"$T/acked"
    post_loop &
    OPS_PIDS+=($!)
    local loop=$!
    wait_for 30 acked_at_least 100 || fail "fewer than 100 orders acknowledged in 30 s"
    complete_ids "$T/acked" >"$T/before"
    local out rc=0
    out=$("$BIN" -c "$T/orderd.conf" backup "$T/backup.db" 2>&1) || rc=$?
    # keep serving a little after the backup, then stop the load
    wait_for 10 acked_at_least $(($(wc -l <"$T/before") + 20)) || true
    touch "$T/stop"
    wait "$loop" || true
    [[ $rc -eq 0 ]] || fail "backup exited $rc: $out"
    [[ ! -s $T/failed ]] || fail "$(wc -l <"$T/failed") POSTs failed while the backup ran"
    proc_alive "$DAEMON_PID" || fail "the daemon died during the backup"
    [[ -f $T/backup.db ]] || fail "no backup file"
    [[ $(stat -c %a "$T/backup.db") == 600 ]] || fail "backup mode is $(stat -c %a "$T/backup.db"), want 600"
    [[ ! -e $T/backup.db-wal ]] || fail "the backup left a -wal file: it is not self-contained"
    local check
    check=$(sqlite3 "$T/backup.db" 'PRAGMA integrity_check;' 2>&1) ||
        fail "sqlite3 cannot open the backup: $check"
    [[ $check == ok ]] || fail "integrity_check: $check"
    sqlite3 "$T/backup.db" 'SELECT order_id FROM orders;' | sort >"$T/in-backup" ||
        fail "cannot read orders from the backup"
    local missing
    missing=$(sort "$T/before" | comm -23 - "$T/in-backup" | wc -l)
    [[ $missing -eq 0 ]] ||
        fail "$missing of $(wc -l <"$T/before") orders acknowledged before the backup are not in it"
    local all
    all=$(complete_ids "$T/acked" | wc -l)
    echo "backup held $(wc -l <"$T/in-backup") orders; $(wc -l <"$T/before") acknowledged before it, $all in all"
    daemon_stop || fail "the daemon did not stop cleanly"
}

t_backup_refuses_existing_dest() {
    write_config "$T/orderd.conf" "$T"
    daemon_start "$T/orderd.conf" "$T/orderd.log" || fail "the daemon did not start"
    post_order >/dev/null || fail "POST /orders failed"
    echo "not a database, and precious" >"$T/dest.db"
    cp "$T/dest.db" "$T/dest.copy"
    local out rc=0
    out=$("$BIN" -c "$T/orderd.conf" backup "$T/dest.db" 2>&1) || rc=$?
    [[ $rc -eq 2 ]] || fail "backup to an existing file exited $rc, want 2 ($out)"
    grep -q 'exists' <<<"$out" || fail "no clear message (want 'exists'): $out"
    cmp -s "$T/dest.db" "$T/dest.copy" || fail "the existing file was changed"
    # usage errors are exit 1
    rc=0
    out=$("$BIN" -c "$T/orderd.conf" backup 2>&1) || rc=$?
    [[ $rc -eq 1 ]] || fail "backup without DEST exited $rc, want 1"
    proc_alive "$DAEMON_PID" || fail "the daemon died"
    daemon_stop || fail "the daemon did not stop cleanly"
}

t_restore_from_backup() {
    write_config "$T/orderd.conf" "$T"
    daemon_start "$T/orderd.conf" "$T/orderd.log" || fail "the daemon did not start"
    local i id
    : >"$T/kept"
    for i in $(seq 1 20); do
        id=$(post_order "KEEP-$i") || fail "POST /orders failed"
        echo "$id" >>"$T/kept"
    done
    "$BIN" -c "$T/orderd.conf" backup "$T/backup.db" >/dev/null 2>&1 || fail "backup failed"
    local later
    later=$(post_order "LATER") || fail "POST /orders after the backup failed"
    [[ $(http_code GET "/orders/$later") == 200 ]] || fail "the later order is not readable before the restore"
    # the documented restore: stop, copy over the database, drop -wal/-shm, start
    daemon_stop || fail "the daemon did not stop cleanly"
    cp "$T/backup.db" "$T/orderd.db" || fail "cannot copy the backup over the database"
    rm -f "$T/orderd.db-wal" "$T/orderd.db-shm"
    daemon_start "$T/orderd.conf" "$T/orderd2.log" || fail "the daemon did not start on the restored database"
    local code n=0
    while read -r id; do
        code=$(http_code GET "/orders/$id")
        [[ $code == 200 ]] || fail "GET /orders/$id after the restore: $code"
        n=$((n + 1))
    done <"$T/kept"
    [[ $n -eq 20 ]] || fail "checked $n orders, want 20"
    code=$(http_code GET "/orders/$later")
    [[ $code == 404 ]] || fail "an order taken after the backup is still there ($code): the restore did not happen"
    id=$(post_order "AFTER-RESTORE") || fail "POST /orders on the restored database failed"
    daemon_stop || fail "the daemon did not stop cleanly"
}

# ---- reload -------------------------------------------------------------------

# reload_and_wait PATTERN: SIGHUPs the daemon (its file already changed) and
# waits for PATTERN to appear once more in the log.
reload_and_wait() {
    local pattern=$1 before
    before=$(count_lines "$DAEMON_LOG" "$pattern")
    kill -HUP "$DAEMON_PID" || return 1
    wait_for 10 more_lines "$DAEMON_LOG" "$pattern" "$before"
}

more_lines() { [[ $(count_lines "$1" "$2") -gt $3 ]]; }

t_reload_log_level() {
    write_config "$T/orderd.conf" "$T"
    daemon_start "$T/orderd.conf" "$T/orderd.log" || fail "the daemon did not start"
    [[ $(http_code GET /healthz) == 200 ]] || fail "GET /healthz failed"
    sleep 0.2
    ! log_has "$T/orderd.log" "http: GET /healthz" || fail "debug lines at level info"
    sed -i 's/^level = info$/level = debug/' "$T/orderd.conf"
    reload_and_wait "reload: applied" || fail "no 'reload: applied' line after SIGHUP"
    log_has "$T/orderd.log" "log level debug" || fail "the reload line does not name level debug"
    [[ $(http_code GET /healthz) == 200 ]] || fail "GET /healthz failed after the reload"
    wait_for 5 log_has "$T/orderd.log" "http: GET /healthz" ||
        fail "no debug line for a request after the reload to level debug"
    # and back: debug lines stop
    sed -i 's/^level = debug$/level = warn/' "$T/orderd.conf"
    kill -HUP "$DAEMON_PID"
    sleep 0.5
    local n
    n=$(count_lines "$T/orderd.log" "http: GET /healthz")
    http_code GET /healthz >/dev/null
    sleep 0.3
    [[ $(count_lines "$T/orderd.log" "http: GET /healthz") -eq $n ]] ||
        fail "debug lines still written after the reload to level warn"
    daemon_stop || fail "the daemon did not stop cleanly"
}

t_reload_broken_file_keeps_running() {
    write_config "$T/orderd.conf" "$T"
    sed -i 's/^level = info$/level = debug/' "$T/orderd.conf"
    daemon_start "$T/orderd.conf" "$T/orderd.log" || fail "the daemon did not start"
    # line 12 holds the error
    cat >"$T/orderd.conf" <<EOF
[server]
listen = 127.0.0.1:0

[storage]
path = $T/orderd.db
durability = normal

[log]
level = info
format = text
[workers]
count = lots
EOF
    reload_and_wait "keeping the running config" ||
        fail "no 'keeping the running config' line after SIGHUP with a broken file"
    grep -F "reload: $T/orderd.conf:12:" "$T/orderd.log" | grep "count" >/dev/null ||
        fail "the error is not logged with its line (want '$T/orderd.conf:12: ... count')"
    proc_alive "$DAEMON_PID" || fail "the daemon died on a broken file"
    [[ $(http_code GET /healthz) == 200 ]] || fail "GET /healthz failed after the broken reload"
    post_order >/dev/null || fail "POST /orders failed after the broken reload"
    # the running config stayed: still level debug, though the file says info
    wait_for 5 log_has "$T/orderd.log" "http: GET /healthz" ||
        fail "level changed although the file was refused"
    daemon_stop || fail "the daemon did not stop cleanly"
}

t_reload_restart_needed_logged() {
    write_config "$T/orderd.conf" "$T"
    daemon_start "$T/orderd.conf" "$T/orderd.log" || fail "the daemon did not start"
    local port=$DAEMON_PORT other=$((DAEMON_PORT == 65535 ? 1024 : DAEMON_PORT + 1))
    sed -i "s/^listen = .*/listen = 127.0.0.1:$other/" "$T/orderd.conf"
    reload_and_wait "reload: applied" || fail "no 'reload: applied' after SIGHUP"
    grep "listen" "$T/orderd.log" | grep "restart" >/dev/null ||
        fail "a changed listen is not logged as needing a restart"
    [[ $(http_code GET /healthz) == 200 ]] || fail "the old port $port stopped serving"
    sed -i "s|^path = .*|path = $T/other.db|" "$T/orderd.conf"
    reload_and_wait "reload: applied" || fail "no 'reload: applied' after the second SIGHUP"
    grep "storage" "$T/orderd.log" | grep "restart" >/dev/null ||
        fail "a changed storage path is not logged as needing a restart"
    [[ ! -e $T/other.db ]] || fail "the new storage path was opened without a restart"
    post_order >/dev/null || fail "POST /orders failed after the reloads"
    daemon_stop || fail "the daemon did not stop cleanly"
}

# curl loop across SIGHUPs: every request must succeed.
t_reload_drops_no_request() {
    write_config "$T/orderd.conf" "$T"
    daemon_start "$T/orderd.conf" "$T/orderd.log" || fail "the daemon did not start"
    : >"$T/acked"
    post_loop &
    OPS_PIDS+=($!)
    local loop=$! i level
    wait_for 30 acked_at_least 20 || fail "the load did not start"
    for i in $(seq 1 20); do
        if ((i % 2)); then level=debug; else level=info; fi
        sed -i "s/^level = .*/level = $level/" "$T/orderd.conf"
        kill -HUP "$DAEMON_PID" || fail "SIGHUP failed: the daemon is gone"
        sleep 0.1
    done
    local n
    n=$(complete_ids "$T/acked" | wc -l)
    wait_for 10 acked_at_least $((n + 20)) || true
    touch "$T/stop"
    wait "$loop" || true
    [[ ! -s $T/failed ]] || fail "$(wc -l <"$T/failed") of the POSTs across 20 reloads failed"
    [[ $(count_lines "$T/orderd.log" "reload: applied") -ge 20 ]] ||
        fail "fewer than 20 reloads logged"
    echo "$(complete_ids "$T/acked" | wc -l) POSTs across 20 reloads, none failed"
    daemon_stop || fail "the daemon did not stop cleanly"
}

# Codes of N quick GET /orders, one per line.
burst_codes() {
    local i
    for i in $(seq 1 "$1"); do
        http_code GET /orders "${@:2}"
        echo
    done
}

t_reload_rate_limit() {
    write_config "$T/orderd.conf" "$T" "[limits]
rate = 1
burst = 1"
    daemon_start "$T/orderd.conf" "$T/orderd.log" || fail "the daemon did not start"
    # Collect the codes first: `burst_codes | grep -q` under pipefail fails
    # whenever grep stops reading early.
    local codes
    codes=$(burst_codes 6 | tr '\n' ' ')
    [[ $codes == *429* ]] || fail "no 429 from 6 quick requests at rate 1, burst 1: $codes"
    sed -i 's/^rate = 1$/rate = 0/; s/^burst = 1$/burst = 0/' "$T/orderd.conf"
    reload_and_wait "reload: applied" || fail "no 'reload: applied' after SIGHUP"
    sleep 1.1
    codes=$(burst_codes 10 | tr '\n' ' ')
    [[ $codes != *429* ]] || fail "still 429 after reloading with rate = 0: $codes"
    sed -i 's/^rate = 0$/rate = 1/; s/^burst = 0$/burst = 1/' "$T/orderd.conf"
    reload_and_wait "reload: applied" || fail "no 'reload: applied' after SIGHUP"
    codes=$(burst_codes 6 | tr '\n' ' ')
    [[ $codes == *429* ]] || fail "no 429 after reloading with rate = 1: $codes"
    daemon_stop || fail "the daemon did not stop cleanly"
}

key_line() { printf '%s %s %s\n' "$1" "$2" "$(printf '%s' "$3" | sha256sum | cut -d' ' -f1)"; }

t_reload_keys() {
    local a=ops-key-alpha-0123456789 b=ops-key-bravo-9876543210
    key_line alpha orders:read,orders:write "$a" >"$T/keys"
    write_config "$T/orderd.conf" "$T" "[auth]
keys_file = $T/keys"
    daemon_start "$T/orderd.conf" "$T/orderd.log" || fail "the daemon did not start"
    [[ $(http_code GET /orders) == 401 ]] || fail "no 401 without a key while keys_file is set"
    [[ $(http_code GET /orders -H "Authorization: Bearer $a") == 200 ]] || fail "key alpha refused"
    [[ $(http_code GET /orders -H "Authorization: Bearer $b") == 401 ]] || fail "key bravo accepted before the reload"
    key_line bravo orders:read "$b" >"$T/keys"
    reload_and_wait "reload: applied" || fail "no 'reload: applied' after SIGHUP"
    [[ $(http_code GET /orders -H "Authorization: Bearer $b") == 200 ]] || fail "key bravo refused after the reload"
    [[ $(http_code GET /orders -H "Authorization: Bearer $a") == 401 ]] || fail "key alpha still accepted after the reload"
    [[ $(http_code GET /healthz) == 200 ]] || fail "/healthz asks for a key"
    daemon_stop || fail "the daemon did not stop cleanly"
}

# ---- packages: make run and make test wait for another apt (issue 17) --------
# build-aux/apt-install-missing.sh with DEPS_FORCE=1 on curl (installed: a
# no-op for apt, but it takes the same locks) while another process holds a
# lock the way apt and dpkg do. The package lists, caches and auto/manual
# marks are scratch ones (empty sources: no network, the machine's apt state
# untouched); dpkg's database and its locks are the machine's own.

skip() {
    echo "$*"
    exit 77
}

apt_case_ready() {
    [[ $(id -u) -eq 0 ]] || skip "needs root (takes the dpkg lock of the machine)"
    command -v apt-get >/dev/null || skip "no apt-get"
    command -v python3 >/dev/null || skip "no python3 to hold an fcntl lock"
    dpkg-query -W -f='${Status}\n' curl 2>/dev/null | grep -q '^install ok installed' ||
        skip "curl is not installed as a Debian package"
    mkdir -p "$T/apt/lists/partial" "$T/apt/cache/archives/partial" "$T/apt/sources.list.d" ||
        fail "cannot make the scratch apt directories"
    : >"$T/apt/sources.list"
    printf 'Dir::State::Lists "%s";\nDir::State::extended_states "%s";\nDir::Cache "%s";\nDir::Etc::SourceList "%s";\nDir::Etc::SourceParts "%s";\n' \
        "$T/apt/lists" "$T/apt/extended_states" "$T/apt/cache" "$T/apt/sources.list" \
        "$T/apt/sources.list.d" >"$T/apt/apt.conf"
}

# hold_lock FILE SECONDS: holds an fcntl write lock on FILE (F_SETLK, as apt
# and dpkg take theirs, not flock) for SECONDS in the background; sets
# HOLDER_PID, skips the test when another process keeps the lock for 30 s.
hold_lock() {
    rm -f "$T/held"
    python3 -c '
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o640)
end = time.monotonic() + 30
while True:
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        break
    except OSError:
        if time.monotonic() > end:
            sys.exit(3)
        time.sleep(0.1)
open(sys.argv[2], "w").close()
time.sleep(float(sys.argv[3]))
' "$1" "$T/held" "$2" &
    HOLDER_PID=$!
    OPS_PIDS+=("$HOLDER_PID")
    wait_for 35 held_or_gone || fail "the lock holder did not start"
    [[ -e $T/held ]] || skip "another process has held $1 for 30 s"
}

held_or_gone() { [[ -e $T/held ]] || proc_gone "$HOLDER_PID"; }

now_ms() { echo $(($(date +%s%N) / 1000000)); }

# apt_install_while_locked LOCKFILE: the install step while LOCKFILE is held 3 s.
apt_install_while_locked() {
    hold_lock "$1" 3
    local start rc=0 took
    start=$(now_ms)
    APT_CONFIG=$T/apt/apt.conf DEPS_FORCE=1 APT_LOCK_TIMEOUT=60 SUDO='' \
        timeout -k 5 90 bash "$ROOT/build-aux/apt-install-missing.sh" curl >"$T/apt.log" 2>&1 || rc=$?
    took=$(($(now_ms) - start))
    wait "$HOLDER_PID" || true
    grep -v 'Reading database' "$T/apt.log" | sed 's/^/  | /' | tail -n 15
    [[ $rc -eq 0 ]] || fail "the install step exited $rc after $took ms while $1 was held 3 s"
    log_has "$T/apt.log" "deps: installing: curl" || fail "no 'deps: installing: curl' line"
    log_has "$T/apt.log" "deps: waiting for $1, held by process $HOLDER_PID" ||
        fail "no 'deps: waiting for $1, held by process $HOLDER_PID' line"
    log_has "$T/apt.log" "deps: installed: curl" || fail "no 'deps: installed: curl' line"
    [[ $took -ge 2000 ]] || fail "done in $took ms: it did not wait for the lock"
    echo "waited for $1 and succeeded in $took ms"
}

t_apt_install_waits_for_dpkg_lock() {
    apt_case_ready
    apt_install_while_locked /var/lib/dpkg/lock-frontend
}

# apt-get update ignores DPkg::Lock::Timeout (apt 2.6): the script waits itself.
t_apt_update_waits_for_lists_lock() {
    apt_case_ready
    apt_install_while_locked "$T/apt/lists/lock"
}

# ---- runner -------------------------------------------------------------------

if [[ ${1:-} == --one ]]; then
    T=$(mktemp -d "${TMPDIR:-/tmp}/orderd-ops.XXXXXX")
    trap 'ops_cleanup; rm -rf "$T"' EXIT
    trap 'exit 143' TERM INT
    fn=t_${2//-/_}
    declare -F "$fn" >/dev/null || fail "no test $2"
    set +e
    "$fn"
    exit $?
fi

[[ -x $BIN ]] || { echo "FAIL setup: $BIN is not executable (set TEST_ORDERD_BIN)"; echo "0 passed, 1 failed"; exit 1; }
for tool in curl sqlite3 sha256sum timeout; do
    command -v "$tool" >/dev/null || { echo "FAIL setup: $tool is not installed"; echo "0 passed, 1 failed"; exit 1; }
done

LOGS=$(mktemp -d "${TMPDIR:-/tmp}/orderd-ops-logs.XXXXXX")
trap 'rm -rf "$LOGS"' EXIT
passed=0
failed=0
skipped=0
selected=("$@")
[[ ${#selected[@]} -gt 0 ]] || selected=("${TESTS[@]}")
for t in "${selected[@]}"; do
    rc=0
    TEST_ORDERD_BIN=$BIN timeout -k 5 "$TEST_LIMIT_S" "$0" --one "$t" >"$LOGS/$t.log" 2>&1 || rc=$?
    last=$(grep -v '^$' "$LOGS/$t.log" | tail -n 1 || true)
    if [[ $rc -eq 0 ]]; then
        echo "ok $t"
        passed=$((passed + 1))
    elif [[ $rc -eq 77 ]]; then
        echo "ok $t # skip $last"
        skipped=$((skipped + 1))
    else
        [[ $rc -eq 124 || $rc -eq 137 ]] && last="timed out after $TEST_LIMIT_S s; $last"
        echo "FAIL $t: $last"
        sed 's/^/    | /' "$LOGS/$t.log" | tail -n 20
        failed=$((failed + 1))
    fi
done
if [[ $skipped -gt 0 ]]; then
    echo "$passed passed, $failed failed, $skipped skipped"
else
    echo "$passed passed, $failed failed"
fi
[[ $failed -eq 0 ]]
