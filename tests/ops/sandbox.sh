#!/usr/bin/env bash
# tests/ops/sandbox.sh — runs systemd/orderd.service under a real systemd,
# sandbox and all, and checks that orderd works inside it: READY=1 makes the
# unit active, an order is accepted and processed by a fulfilment_command
# (fork+exec under the system-call filter), process_* metrics read /proc,
# `systemctl reload` and `systemctl stop` (drain, exit 0) behave.
#
# NOT run by `make test`: it boots a private systemd as PID 1 of new PID,
# mount, cgroup, UTS and IPC namespaces, which needs root and a writable
# cgroup file system, and which creates (then removes) cgroups. For an
# operator or a developer who changed the unit:
#
#   sudo TEST_ORDERD_BIN=$PWD/build/orderd tests/ops/sandbox.sh
#
# Prints `ok NAME` / `FAIL NAME: why`, then `N passed, M failed`.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
BIN=${TEST_ORDERD_BIN:-$ROOT/build/orderd}
SYSTEMD=/lib/systemd/systemd

if [[ ${1:-} == --inner ]]; then
    # PID 1 of the new namespaces. $2: scratch dir. Everything mounted here
    # lives and dies with the mount namespace.
    S=$2
    mount -t tmpfs -o mode=0755 tmpfs /run
    mkdir -p /run/systemd/system /run/orderd-test
    cp /etc/passwd "$S/passwd" && cp /etc/group "$S/group"
    grep -q '^orderd:' "$S/passwd" || echo 'orderd:x:990:990:orderd:/var/lib/orderd:/usr/sbin/nologin' >>"$S/passwd"
    grep -q '^orderd:' "$S/group" || echo 'orderd:x:990:' >>"$S/group"
    mount --bind "$S/passwd" /etc/passwd
    mount --bind "$S/group" /etc/group
    mkdir -p "$S/varlib" && mount --bind "$S/varlib" /var/lib
    cat >/run/orderd-test/orderd.conf <<'EOF'
[server]
listen = 127.0.0.1:0
[storage]
path = /var/lib/orderd/orderd.db
[workers]
fulfilment_command = /bin/sh -c 'cat >/dev/null; exit 0'
[log]
level = info
format = json
EOF
    chown root:orderd /run/orderd-test/orderd.conf
    chmod 0640 /run/orderd-test/orderd.conf
    # The unit as installed, pointed at the test binary and config; no default
    # dependencies, so that this systemd starts orderd and nothing else.
    sed -e "s|^ExecStart=@BINDIR@/orderd -c /etc/orderd/orderd.conf\$|ExecStart=$BIN -c /run/orderd-test/orderd.conf|" \
        -e '/^\[Unit\]$/a DefaultDependencies=no' \
        -e '/^\[Service\]$/a StandardError=append:/run/orderd-test/orderd.log' \
        "$ROOT/systemd/orderd.service" >/run/systemd/system/orderd.service
    printf '[Unit]\nDescription=orderd sandbox test\nWants=orderd.service\n' \
        >/run/systemd/system/orderd-test.target
    exec "$SYSTEMD" --system --unit=orderd-test.target --log-target=null </dev/null
fi

passed=0
failed=0
ok() { echo "ok $1"; passed=$((passed + 1)); }
bad() { echo "FAIL $1: $2"; failed=$((failed + 1)); }
finish() {
    echo "$passed passed, $failed failed"
    [[ $failed -eq 0 ]]
    exit
}

if [[ $(id -u) -ne 0 || ! -x $SYSTEMD ]] || ! command -v unshare >/dev/null; then
    echo "FAIL setup: needs root, $SYSTEMD and unshare"
    finish
fi
[[ -x $BIN ]] || { echo "FAIL setup: $BIN is not executable"; finish; }

S=$(mktemp -d "${TMPDIR:-/tmp}/orderd-sandbox.XXXXXX")
before=$(find /sys/fs/cgroup -mindepth 2 -maxdepth 4 -type d \( -name init.scope -o -name system.slice \) 2>/dev/null | sort)
UPID=""
# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
    if [[ -n $UPID ]]; then
        local init
        init=$(ps -o pid= --ppid "$UPID" | tr -d ' ' || true)
        [[ -n $init ]] && kill -KILL "$init" 2>/dev/null
        kill -KILL "$UPID" 2>/dev/null || true
        wait "$UPID" 2>/dev/null || true
    fi
    # remove the cgroups that the private systemd made, once its tasks are gone
    local after d left
    after=$(find /sys/fs/cgroup -mindepth 2 -maxdepth 4 -type d \( -name init.scope -o -name system.slice \) 2>/dev/null | sort)
    left=$(comm -13 <(echo "$before") <(echo "$after") | grep -v '^$' || true)
    for _ in $(seq 1 30); do
        for d in $left; do
            find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null || true
        done
        left=$(for d in $left; do [[ -d $d ]] && echo "$d"; done || true)
        [[ -z $left ]] && break
        sleep 0.1
    done
    [[ -z $left ]] || echo "# could not remove cgroups: $left"
    rm -rf "$S"
}
trap cleanup EXIT

TEST_ORDERD_BIN=$BIN unshare --pid --fork --mount --mount-proc --cgroup --uts --ipc \
    --propagation private "$0" --inner "$S" >"$S/unshare.log" 2>&1 &
UPID=$!

INIT=""
for _ in $(seq 1 100); do
    INIT=$(ps -o pid= --ppid "$UPID" | tr -d ' ' || true)
    [[ -n $INIT ]] && break
    sleep 0.1
done
[[ -n $INIT ]] || { echo "FAIL setup: the private systemd did not start"; cat "$S/unshare.log"; finish; }
in_ns() { nsenter -t "$INIT" -m -p -u -i -- "$@"; }
LOG=/proc/$INIT/root/run/orderd-test/orderd.log

state=""
for _ in $(seq 1 150); do
    state=$(in_ns systemctl is-active orderd 2>/dev/null || true)
    [[ $state == active || $state == failed ]] && break
    sleep 0.1
done
if [[ $state == active ]]; then ok unit-active-after-ready; else
    bad unit-active-after-ready "orderd is '$state'"
    in_ns systemctl status orderd --no-pager 2>&1 | tail -n 15 | sed 's/^/    | /'
    finish
fi

PORT=$(grep -o 'listening on 127\.0\.0\.1:[0-9]*' "$LOG" | tail -n 1 | sed 's/.*://')
BASE=http://127.0.0.1:$PORT
PID=$(in_ns systemctl show -p MainPID --value orderd)
HPID=$(ps -o pid= --ppid "$INIT" | tr -d ' ' | head -n 1)

if grep -q '^NoNewPrivs:[[:space:]]*1' "/proc/$HPID/status" &&
    grep -q '^CapEff:[[:space:]]*0000000000000000' "/proc/$HPID/status" &&
    grep -q '^Seccomp:[[:space:]]*2' "/proc/$HPID/status" &&
    [[ $(stat -c %U "/proc/$HPID") != root ]]; then
    ok sandbox-applied
else
    bad sandbox-applied "no_new_privs, no capabilities, seccomp filter and a non-root user expected (pid $PID in the namespace)"
fi

body=$(curl -s --max-time 10 -X POST "$BASE/orders" -H 'Content-Type: application/json' \
    -d '{"customer_id":"SANDBOX","items":[{"item":"x","quantity":1}]}' || true)
id=$(sed -n 's/.*"order_id":"\([0-9A-Z]*\)".*/\1/p' <<<"$body")
status=""
for _ in $(seq 1 100); do
    [[ -n $id ]] || break
    status=$(curl -s --max-time 5 "$BASE/orders/$id" | sed -n 's/.*"status":"\([a-z_]*\)".*/\1/p')
    [[ $status == completed || $status == dead_lettered ]] && break
    sleep 0.1
done
if [[ $status == completed ]]; then ok order-processed-with-fulfilment-command; else
    bad order-processed-with-fulfilment-command "order '$id' is '$status' (POST said: $body)"
fi

metrics=$(curl -s --max-time 10 "$BASE/metrics" || true)
if grep -q '^process_start_time_seconds ' <<<"$metrics" && grep -q '^process_open_fds ' <<<"$metrics"; then
    ok process-metrics-from-proc
else
    bad process-metrics-from-proc "process_start_time_seconds or process_open_fds missing"
fi

if in_ns systemctl reload orderd && sleep 0.5 && [[ $(in_ns systemctl is-active orderd) == active ]] &&
    grep -q 'reload: applied' "$LOG"; then
    ok systemctl-reload
else
    bad systemctl-reload "reload failed or was not logged"
fi

if in_ns systemctl stop orderd; then
    result=$(in_ns systemctl show -p Result --value orderd)
    code=$(in_ns systemctl show -p ExecMainStatus --value orderd)
    if [[ $result == success && $code == 0 ]] && grep -q 'stopped cleanly' "$LOG"; then
        ok systemctl-stop-drains
    else
        bad systemctl-stop-drains "Result=$result ExecMainStatus=$code"
    fi
else
    bad systemctl-stop-drains "systemctl stop failed"
fi

exposure=$(in_ns systemd-analyze security orderd --no-pager 2>/dev/null |
    sed -n 's/.*Overall exposure level for orderd.service: \([0-9.]*\).*/\1/p')
if [[ -n $exposure ]] && awk -v l="$exposure" 'BEGIN { exit !(l + 0 <= 2.0) }'; then
    ok "online-exposure-$exposure"
else
    bad online-exposure "systemd-analyze security says '${exposure:-nothing}'"
fi
finish
