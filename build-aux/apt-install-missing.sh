#!/usr/bin/env bash
# build-aux/apt-install-missing.sh — installs those of the Debian packages
# named that are not installed yet. The Makefile's deps, deps-test and
# deps-bench targets call it (make run and make test go through them).
#
#   build-aux/apt-install-missing.sh [--npm] PKG...
#
#   --npm   also install Debian's npm when there is no npm command. npm is not
#           in the Makefile's lists: where nodejs comes from NodeSource it
#           ships npm, and Debian's npm package would conflict with it.
#
# Prints "deps: installing: PKG..." before and "deps: installed: PKG..." after,
# nothing when every package is there already.
#
# Another apt or dpkg holding a lock (unattended-upgrades and apt-daily do on
# a machine that has just booted) is waited for, at most APT_LOCK_TIMEOUT
# seconds (default 600) in all, with a line saying so, instead of failing at
# once with "Could not get lock". apt-get install waits by itself with
# -o DPkg::Lock::Timeout; apt-get update (apt 2.6) ignores that option for
# /var/lib/apt/lists/lock, so a command that failed on a lock is run again
# here until the same deadline.
#
# Environment:
#   APT_LOCK_TIMEOUT  seconds to wait for other apt/dpkg processes (600)
#   SUDO              command prefix for apt-get; unset: sudo unless root
#   DEPS_FORCE=1      run apt-get for every PKG, even an installed one (a no-op
#                     for apt, but it takes the same locks: the ops test
#                     apt-install-waits-for-dpkg-lock relies on it)
#   APT_CONFIG        read by apt-config and apt-get as usual (tests point the
#                     package lists at a scratch directory with it)
set -euo pipefail

timeout_s=${APT_LOCK_TIMEOUT:-600}
[[ $timeout_s =~ ^[0-9]+$ ]] || { echo "deps: APT_LOCK_TIMEOUT must be seconds, not '$timeout_s'" >&2; exit 2; }
if [[ -v SUDO ]]; then
    read -r -a sudo_cmd <<<"$SUDO"
elif [[ $(id -u) -eq 0 ]]; then
    sudo_cmd=()
else
    sudo_cmd=(sudo)
fi

want=()
for arg in "$@"; do
    case $arg in
    --npm) command -v npm >/dev/null 2>&1 || want+=(npm) ;;
    -*) echo "usage: $0 [--npm] PKG..." >&2; exit 2 ;;
    *) want+=("$arg") ;;
    esac
done

missing=()
for p in "${want[@]}"; do
    if [[ ${DEPS_FORCE:-0} != 1 ]] &&
        dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed'; then
        continue
    fi
    missing+=("$p")
done
[[ ${#missing[@]} -gt 0 ]] || exit 0

# The lock files apt and dpkg take, as this apt configuration names them:
# apt-get update takes the lists' lock, apt-get install dpkg's and the
# archives'.
admin_dir=/var/lib/dpkg lists_dir=/var/lib/apt/lists archives_dir=/var/cache/apt/archives
if conf=$(apt-config shell STATUS Dir::State::status/f LISTS Dir::State::lists/d \
    ARCHIVES Dir::Cache::archives/d 2>/dev/null); then
    STATUS='' LISTS='' ARCHIVES=''
    eval "$conf"
    [[ -n $STATUS ]] && admin_dir=$(dirname "$STATUS")
    [[ -n $LISTS ]] && lists_dir=${LISTS%/}
    [[ -n $ARCHIVES ]] && archives_dir=${ARCHIVES%/}
fi

# lock_holder FILE: "process PID (NAME)" when a process holds an fcntl lock
# on FILE (as apt and dpkg take them; /proc/locks lists them), else fails.
lock_holder() {
    local dev pid name
    dev=$(stat -c '%Hd %Ld %i' "$1" 2>/dev/null) || return 1
    # shellcheck disable=SC2086 # three numbers
    dev=$(printf '%02x:%02x:%s' $dev)
    pid=$(awk -v id="$dev" '!/->/ { for (i = 2; i <= NF; i++) if ($i == id) { print $(i - 1); exit } }' \
        /proc/locks 2>/dev/null) || return 1
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    name=$(cat "/proc/$pid/comm" 2>/dev/null) || name='?'
    echo "process $pid ($name)"
}

deadline=$((SECONDS + timeout_s))
left() { echo $((deadline > SECONDS ? deadline - SECONDS : 0)); }

# wait_unlocked FILE...: while another process holds one of them, says so
# (once per holder) and waits, until the deadline.
wait_unlocked() {
    local f holder said=''
    while [[ $SECONDS -lt $deadline ]]; do
        holder=''
        for f in "$@"; do
            holder=$(lock_holder "$f") && break
        done
        [[ -n $holder ]] || return 0
        if [[ $said != "$f $holder" ]]; then
            echo "deps: waiting for $f, held by $holder (at most $(left) s more)"
            said="$f $holder"
        fi
        sleep 1
    done
}

# run_apt COMMAND ARGS...: runs apt-get COMMAND ARGS... (its output shown as
# it comes) until it succeeds, fails for another reason than a lock, or the
# deadline passes.
run_apt() {
    local err rc locks
    if [[ $1 == update ]]; then
        locks=("$lists_dir/lock")
    else
        locks=("$admin_dir/lock-frontend" "$admin_dir/lock" "$archives_dir/lock")
    fi
    err=$(mktemp "${TMPDIR:-/tmp}/apt-install-missing.XXXXXX")
    while :; do
        wait_unlocked "${locks[@]}"
        rc=0
        { "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get \
            -o "DPkg::Lock::Timeout=$(left)" "$@" \
            2>&1 1>&3 3>&- | tee "$err" >&2; } 3>&1 || rc=$?
        if [[ $rc -ne 0 ]] && grep -q 'Could not get lock' "$err" && [[ $SECONDS -lt $deadline ]]; then
            echo "deps: apt-get $1 found a lock taken; trying again in 2 s (at most $(left) s more)"
            sleep 2
            continue
        fi
        rm -f "$err"
        return "$rc"
    done
}

echo "deps: installing: ${missing[*]}"
run_apt update -q ||
    { echo "deps: apt-get update failed; nothing installed" >&2; exit 1; }
run_apt install -y -q --no-install-recommends "${missing[@]}" ||
    { echo "deps: apt-get install failed: ${missing[*]}" >&2; exit 1; }
echo "deps: installed: ${missing[*]}"
