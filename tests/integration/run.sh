#!/usr/bin/env bash
# tests/integration/run.sh — runs every tests/integration/test_*.sh against the
# real binary ($TEST_ORDERD_BIN, default build/orderd) and sums their results.
#
#   TEST_FILTER=threaded   only the files whose name contains "threaded"
#                          (the concurrency-heavy ones, for the TSan build)
#   TEST_ONLY=REGEX        only the cases whose function name matches
#
# Each file prints "ok NAME" / "FAIL NAME: why" per case; this prints them
# through, then "N passed, M failed", and exits non-zero on any failure.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
: "${TEST_FILTER:=}"
: "${TEST_FILE_TIMEOUT:=600}"
export TEST_ORDERD_BIN="${TEST_ORDERD_BIN:-$here/../../build/orderd}"

passed=0
failed=0
started=$SECONDS
out=$(mktemp "${TMPDIR:-/tmp}/orderd-integration.XXXXXX")
trap 'rm -f "$out"' EXIT

echo "# integration: $TEST_ORDERD_BIN${TEST_FILTER:+ (files matching \"$TEST_FILTER\")}"
for file in "$here"/test_*.sh; do
    name=$(basename "$file" .sh)
    if [[ -n $TEST_FILTER && $name != *"$TEST_FILTER"* ]]; then
        continue
    fi
    t0=$SECONDS
    rc=0
    timeout -k 10 "$TEST_FILE_TIMEOUT" bash "$file" >"$out" 2>&1 || rc=$?
    # The file's own summary line is replaced by ours.
    grep -vE '^[0-9]+ passed, [0-9]+ failed$' "$out" || true
    p=$(grep -c '^ok ' "$out" || true)
    f=$(grep -c '^FAIL ' "$out" || true)
    if ((rc != 0 && f == 0)); then
        echo "FAIL ${name#test_}: the file exited with status $rc"
        f=1
    fi
    passed=$((passed + p))
    failed=$((failed + f))
    echo "# ${name#test_}: $p passed, $f failed in $((SECONDS - t0))s"
done
echo "# integration took $((SECONDS - started))s"
echo "$passed passed, $failed failed"
((failed == 0))
