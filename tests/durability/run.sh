#!/usr/bin/env bash
# tests/durability/run.sh — what survives a power cut (issue 22; docs/durability.md).
# The database lives on LazyFS, a FUSE file system that keeps unsynced writes
# in its own cache and drops them on command, as a power cut does:
#
#   power_loss.sh    durability full: kill -9 + power cut under load, at random
#                    moments and inside WAL checkpoints, five rounds: every 202 is
#                    there. durability normal, the same rounds: must lose some.
#   torn_writes.sh   torn and reordered writes into the WAL and the database file
#                    (LazyFS torn-op / torn-seq): orderd serves every acknowledged
#                    order from a sound file, or refuses to start with one line.
#
#   LAZYFS=/path/to/lazyfs    the LazyFS binary (../shared/tools/build-lazyfs.sh
#                             OUTDIR builds OUTDIR/lazyfs); without it the suite
#                             prints "skipped: no LazyFS ..." and exits 0
#   TEST_ORDERD_BIN           binary under test (default build/orderd)
#   TEST_ONLY, TEST_KEEP_TMP  as in tests/integration/lib.sh
#   TEST_DURABILITY_ROUNDS (5), TEST_DURABILITY_NORMAL_ROUNDS (3),
#   TEST_DURABILITY_CLIENTS (8)
#
# Needs root, /dev/fuse, fusermount3 (fuse3), python3, sqlite3, curl. Every
# LazyFS mount is undone at the end, also after a case killed by its watchdog.
# Prints "ok NAME" / "FAIL NAME: why" and "# ..." lines (per round:
# acknowledged / present / lost), then "N passed, M failed"; exits non-zero on
# a failure.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
: "${LAZYFS:=}"
: "${TEST_DURABILITY_TIMEOUT:=600}"
export TEST_CASE_TIMEOUT=${TEST_CASE_TIMEOUT:-300} # per case (lib.sh: 120): rounds on a slow machine
export TEST_ORDERD_BIN="${TEST_ORDERD_BIN:-$root/build/orderd}"

if [[ -z $LAZYFS || ! -x $LAZYFS ]]; then
    echo "skipped: no LazyFS (set LAZYFS=/path/to/lazyfs)"
    exit 0
fi
why=
if [[ $(id -u) != 0 ]]; then
    why="LazyFS needs root (FUSE mounts)"
elif [[ ! -c /dev/fuse ]]; then
    why="no /dev/fuse"
elif ! command -v fusermount3 >/dev/null; then
    why="fusermount3 is missing (package fuse3)"
fi
if [[ -n $why ]]; then
    echo "skipped: $why"
    exit 0
fi
LAZYFS=$(cd "$(dirname "$LAZYFS")" && pwd)/$(basename "$LAZYFS")
export LAZYFS

work=$(mktemp -d "${TMPDIR:-/tmp}/orderd-durability.XXXXXX")
export LAZYFS_SWEEP_FILE=$work/sweep
: >"$LAZYFS_SWEEP_FILE"

# What a case left behind when it could not clean up: its mounts, its LazyFS
# processes (by pid, only if still a lazyfs), its "disks".
sweep() {
    local rc=$? kind value
    while read -r kind value; do
        case $kind in
        mount)
            if awk -v m="$value" '$2 == m { f = 1 } END { exit !f }' /proc/mounts; then
                fusermount3 -uz "$value" 2>/dev/null || true
            fi
            ;;
        pid)
            if [[ $(cat "/proc/$value/comm" 2>/dev/null) == lazyfs ]]; then
                kill -KILL "$value" 2>/dev/null || true
            fi
            ;;
        esac
    done <"$LAZYFS_SWEEP_FILE"
    if [[ ${TEST_KEEP_TMP:-0} != 1 ]]; then
        while read -r kind value; do
            if [[ $kind == root ]]; then rm -rf "$value"; fi
        done <"$LAZYFS_SWEEP_FILE"
        rm -rf "$work"
    fi
    return "$rc"
}
trap sweep EXIT
trap 'exit 143' TERM INT

passed=0
failed=0
started=$SECONDS
echo "# LazyFS: $LAZYFS; orderd: $TEST_ORDERD_BIN"
for file in power_loss torn_writes; do
    t0=$SECONDS
    rc=0
    TMPDIR=$work timeout -k 10 "$TEST_DURABILITY_TIMEOUT" bash "$here/$file.sh" >"$work/out" 2>&1 || rc=$?
    grep -vE '^[0-9]+ passed, [0-9]+ failed$' "$work/out" || true
    passed=$((passed + $(grep -c '^ok ' "$work/out" || true)))
    failed=$((failed + $(grep -c '^FAIL ' "$work/out" || true)))
    if ((rc != 0)) && ! grep -q '^FAIL ' "$work/out"; then
        echo "FAIL durability:$file: exited with status $rc"
        failed=$((failed + 1))
    fi
    echo "# durability:$file took $((SECONDS - t0))s"
done
echo "# durability tests took $((SECONDS - started))s"
echo "$passed passed, $failed failed"
((failed == 0))
