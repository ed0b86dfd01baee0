#!/usr/bin/env bash
# tests/browser/run.sh — the status page's dead-letter console in a real
# headless Chromium: dlq_console.mjs drives the page with puppeteer-core
# against the real orderd, whose fulfilment_command (fulfil_toggle.sh) fails
# while a marker file exists, so that with max_receives = 1 every order
# POSTed meanwhile is dead-lettered at once.
#
#   TEST_ORDERD_BIN=build/orderd tests/browser/run.sh
#
# Cases: with a keys file (the page asks for a key; a wrong key and a key
# without the admin scope are refused; redrive, delete with confirmation,
# paging, redrive all; the key is never stored), and without one (the
# console works with no key). Screenshots of each state go to
# TEST_BROWSER_SHOTS (default build/browser/); look at them after a change
# to the page.
#
# Environment (never ORDERD_*): see tests/integration/lib.sh, plus
#   TEST_CHROMIUM        the browser (default /usr/bin/chromium; missing: the
#                        suite prints "skipped: no chromium" and passes)
#   TEST_BROWSER_SHOTS   where the screenshots go
#   TEST_BROWSER_WAIT_MS the bound of each wait in the page (30000: a
#                        sanitizer build on 2 busy cores)
#
# Needs node and npm (Debian: nodejs, npm); puppeteer-core is installed on
# first use under build/browser-npm (no browser download: it drives
# TEST_CHROMIUM).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
: "${TEST_CHROMIUM:=/usr/bin/chromium}"
: "${TEST_BROWSER_SHOTS:=$ROOT/build/browser}"
: "${TEST_BROWSER_WAIT_MS:=30000}"
# a case starts a daemon, a browser and a few dozen orders: minutes under ASan
: "${TEST_CASE_TIMEOUT:=300}"
export TEST_CASE_TIMEOUT
# puppeteer-core 24 is the last line that runs on Debian 12's node 18/20 (25
# needs node 22); it speaks CDP to any recent Chromium (tested with 156).
PUPPETEER=puppeteer-core@24.43.1
NPM_DIR=$ROOT/build/browser-npm

if [[ ! -x $TEST_CHROMIUM ]]; then
    echo "skipped: no chromium ($TEST_CHROMIUM is missing; apt-get install chromium)"
    echo "0 passed, 0 failed, 1 skipped"
    exit 0
fi

# shellcheck source-path=SCRIPTDIR
# shellcheck source=../integration/lib.sh
. "$HERE/../integration/lib.sh"
SUITE_NAME=browser

# npm_ready — node, and puppeteer-core in build/browser-npm (reused while the
# version matches), as tests/ops/static.sh installs its validator.
npm_ready() {
    command -v node >/dev/null || fail "node is not installed (apt-get install nodejs)"
    command -v npm >/dev/null || fail "npm is not installed (apt-get install npm)"
    local name=${PUPPETEER%@*} version=${PUPPETEER##*@} have=""
    local pj=$NPM_DIR/node_modules/$name/package.json
    [[ -f $pj ]] && have=$(node -p "require(process.argv[1]).version" "$pj" 2>/dev/null)
    [[ $have == "$version" ]] && return 0
    mkdir -p "$NPM_DIR" || fail "cannot create $NPM_DIR"
    [[ -f $NPM_DIR/package.json ]] || echo '{"private": true}' >"$NPM_DIR/package.json"
    PUPPETEER_SKIP_DOWNLOAD=1 timeout 300 npm install --no-save --prefix "$NPM_DIR" \
        --cache "$NPM_DIR/cache" --no-audit --no-fund --loglevel=error "$PUPPETEER" \
        >"$SUITE_TMP/npm.log" 2>&1 ||
        fail "npm install $PUPPETEER failed: $(tail -n 5 "$SUITE_TMP/npm.log" | tr '\n' ' ')"
}

IN_SETUP=1
npm_ready
IN_SETUP=0
mkdir -p "$TEST_BROWSER_SHOTS"

# console MODE [section.key=value ...] — a daemon whose fulfilment fails while
# $T/marker exists, then dlq_console.mjs MODE against it; the daemon must then
# stop cleanly (and, under a sanitizer, without a report).
console() {
    local mode=$1
    shift
    local marker=$T/marker
    start_orderd "workers.fulfilment_command=$HERE/fulfil_toggle.sh $marker" \
        "workers.count=2" "queue.max_receives=1" "queue.backoff_base=10ms" \
        "queue.backoff_max=20ms" "$@"
    local rc=0 t0=$SECONDS
    TEST_BASE_URL=$BASE_URL TEST_MODE=$mode TEST_MARKER=$marker \
        TEST_NODE_MODULES=$NPM_DIR/node_modules TEST_CHROMIUM=$TEST_CHROMIUM \
        TEST_BROWSER_SHOTS=$TEST_BROWSER_SHOTS TEST_BROWSER_WAIT_MS=$TEST_BROWSER_WAIT_MS \
        TEST_BROWSER_PROFILE=$T/profile \
        timeout -k 5 "$((TEST_CASE_TIMEOUT - 30))" node "$HERE/dlq_console.mjs" \
        >"$T/console.out" 2>&1 </dev/null || rc=$?
    grep '^# ' "$T/console.out" >>"$T/.notes" || true
    note "$mode: browser steps took $((SECONDS - t0)) s"
    if ((rc != 0)); then
        sed 's/^/    | /' "$T/console.out" | tail -n 40
        fail "dlq_console.mjs $mode exited $rc: $(grep -v '^# ' "$T/console.out" | tail -n 3 | tr '\n' ' ')"
    fi
    stop_orderd
}

# A keys file: ops (admin and orders), reader (orders only).
test_console_with_keys() {
    local admin_key reader_key
    admin_key=ops-$(head -c 18 /dev/urandom | od -An -tx1 | tr -d ' \n')
    reader_key=reader-$(head -c 18 /dev/urandom | od -An -tx1 | tr -d ' \n')
    {
        echo "ops admin,orders:read,orders:write $(printf '%s' "$admin_key" | "$TEST_ORDERD_BIN" hash-key)"
        echo "reader orders:read,orders:write $(printf '%s' "$reader_key" | "$TEST_ORDERD_BIN" hash-key)"
    } >"$T/keys"
    TEST_ADMIN_KEY=$admin_key TEST_READER_KEY=$reader_key console keys "auth.keys_file=$T/keys"
}

# No keys_file: /admin needs no key, the console works without one.
test_console_without_keys() {
    console open
}

run_tests
