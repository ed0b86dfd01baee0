#!/usr/bin/env bash
# tests/ops/static.sh — static checks of what an operator installs: the
# systemd unit (verify, sandbox exposure), sysusers.d/tmpfiles.d, every
# example config, the man pages, docs/openapi.yaml (OpenAPI 3.1 schema and
# every served route documented), make install/uninstall, shellcheck of the
# scripts, and `npx --yes` in every documented npx command.
#
# Run by `make test-static` after `make`. Uses build/orderd, or
# TEST_ORDERD_BIN. Prints `ok NAME` / `FAIL NAME: why` per check, then
# `N passed, M failed`, and exits 1 on any failure.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BIN=${TEST_ORDERD_BIN:-$ROOT/build/orderd}
# The exposure `systemd-analyze security` may give the unit, at most.
MAX_EXPOSURE=2.0
# OpenAPI 3.1 validator (npm), installed under build/ on first use.
OAS_VALIDATOR=@seriousme/openapi-schema-validator@2.11.0
NPM_DIR=$ROOT/build/ops-npm

WORK=$(mktemp -d "${TMPDIR:-/tmp}/orderd-static.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

passed=0
failed=0
skipped=0

# check NAME FUNCTION: runs FUNCTION; its last output line is the reason on
# failure. Functions run with errexit off (they are called in a condition),
# so each one tests every command it relies on.
check() {
    local name=$1 fn=$2 out
    if out=$("$fn" 2>&1); then
        if [[ $out == SKIP:* ]]; then
            echo "ok $name # skip ${out#SKIP: }"
            skipped=$((skipped + 1))
        else
            echo "ok $name"
            passed=$((passed + 1))
        fi
    else
        echo "FAIL $name: $(printf '%s\n' "$out" | grep -v '^$' | tail -n 3 | tr '\n' ' ')"
        printf '%s\n' "$out" | sed 's/^/    | /' | tail -n 30
        failed=$((failed + 1))
    fi
}

# The environment without ORDERD_* variables, which are config overrides.
clean_env() {
    local unset=() v
    for v in $(compgen -e); do
        [[ $v == ORDERD_* ]] && unset+=(-u "$v")
    done
    env "${unset[@]}" "$@"
}

# A copy of the unit as installed with BINDIR=dir of $BIN, and the man pages
# where `man` (run by systemd-analyze verify for Documentation=) finds them.
prepare_unit() {
    mkdir -p "$WORK/unit" "$WORK/man/man8" "$WORK/man/man5" || return 1
    sed "s|@BINDIR@|$(dirname "$BIN")|g" "$ROOT/systemd/orderd.service" \
        > "$WORK/unit/orderd.service" || return 1
    cp "$ROOT/docs/orderd.8" "$WORK/man/man8/orderd.8" &&
        cp "$ROOT/docs/orderd.conf.5" "$WORK/man/man5/orderd.conf.5"
}

# ---- checks -----------------------------------------------------------------

check_binary() {
    [[ -x $BIN ]] || { echo "$BIN is not an executable; run make first"; return 1; }
    "$BIN" --version | grep -q '^orderd ' || { echo "$BIN --version says no version"; return 1; }
}

check_unit_contents() {
    local u=$ROOT/systemd/orderd.service line
    # shellcheck disable=SC2016 # $MAINPID is for systemd, not for bash
    for line in 'Type=notify' \
        'ExecStart=@BINDIR@/orderd -c /etc/orderd/orderd.conf' \
        'ExecReload=/bin/kill -HUP $MAINPID' \
        'Restart=on-failure' 'User=orderd' 'StateDirectory=orderd' \
        'StateDirectoryMode=0750' 'UMask=0077' 'NoNewPrivileges=yes' \
        'ProtectSystem=strict' 'CapabilityBoundingSet=' \
        'RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX' \
        'SystemCallFilter=@system-service' 'SystemCallArchitectures=native'; do
        grep -qxF -- "$line" "$u" || { echo "systemd/orderd.service lacks the line: $line"; return 1; }
    done
    local stop
    stop=$(sed -n 's/^TimeoutStopSec=\([0-9]*\)s\{0,1\}$/\1/p' "$u")
    [[ -n $stop && $stop -gt 10 ]] ||
        { echo "TimeoutStopSec must be above the 10 s drain timeout (is '${stop:-unset}')"; return 1; }
}

check_unit_verify() {
    prepare_unit || { echo "cannot prepare the unit"; return 1; }
    local out rc=0
    out=$(MANPATH=$WORK/man timeout 60 systemd-analyze verify "$WORK/unit/orderd.service" 2>&1) || rc=$?
    if [[ $rc -ne 0 || -n $out ]]; then
        printf '%s\n' "$out"
        echo "systemd-analyze verify: exit $rc, output above"
        return 1
    fi
}

check_unit_security() {
    prepare_unit || { echo "cannot prepare the unit"; return 1; }
    local out level
    out=$(timeout 60 systemd-analyze security --offline=true --no-pager \
        "$WORK/unit/orderd.service" 2>&1) || { printf '%s\n' "$out" | tail -n 5; return 1; }
    level=$(printf '%s\n' "$out" |
        sed -n 's/.*Overall exposure level for orderd.service: \([0-9.]*\).*/\1/p')
    [[ -n $level ]] || { echo "no 'Overall exposure level' line in the output"; return 1; }
    printf '%s\n' "$out" | grep '✗' || true
    if ! awk -v l="$level" -v m="$MAX_EXPOSURE" 'BEGIN { exit !(l + 0 <= m + 0) }'; then
        echo "exposure $level is above $MAX_EXPOSURE"
        return 1
    fi
    echo "exposure $level" >"$WORK/exposure"
}

check_sysusers_tmpfiles() {
    if [[ $(id -u) -ne 0 ]]; then
        echo "SKIP: needs root to chown in a scratch root"
        return 0
    fi
    local r=$WORK/sysroot uid mode
    mkdir -p "$r/etc" || return 1
    timeout 30 systemd-sysusers --root="$r" - <"$ROOT/systemd/orderd.sysusers" >/dev/null ||
        { echo "systemd-sysusers refused systemd/orderd.sysusers"; return 1; }
    uid=$(awk -F: '$1 == "orderd" { print $3 }' "$r/etc/passwd")
    [[ -n $uid ]] || { echo "no orderd user in the scratch /etc/passwd"; return 1; }
    grep -q '^orderd:' "$r/etc/group" || { echo "no orderd group"; return 1; }
    awk -F: '$1 == "orderd" { exit !($3 < 1000) }' "$r/etc/passwd" ||
        { echo "orderd is not a system user (uid $uid)"; return 1; }
    timeout 30 systemd-tmpfiles --root="$r" --create - <"$ROOT/systemd/orderd.tmpfiles" ||
        { echo "systemd-tmpfiles refused systemd/orderd.tmpfiles"; return 1; }
    mode=$(stat -c '%a %u' "$r/var/lib/orderd") || { echo "no /var/lib/orderd made"; return 1; }
    [[ $mode == "750 $uid" ]] || { echo "/var/lib/orderd is '$mode', want '750 $uid'"; return 1; }
}

check_configs() {
    local f out n=0
    for f in "$ROOT"/etc/orderd/*.conf; do
        out=$(clean_env timeout 10 "$BIN" -c "$f" --check-config 2>&1) ||
            { printf '%s\n' "$out"; echo "${f#"$ROOT"/} fails --check-config"; return 1; }
        n=$((n + 1))
    done
    [[ $n -ge 4 ]] || { echo "expected orderd, dev, staging and prod configs, found $n"; return 1; }
    # and the check can fail: a broken copy is refused with its line number
    printf '[server]\nlisten = 127.0.0.1:8080\nthreads = many\n' >"$WORK/broken.conf"
    local rc=0
    out=$(clean_env timeout 10 "$BIN" -c "$WORK/broken.conf" --check-config 2>&1) || rc=$?
    [[ $rc -eq 1 ]] || { echo "a broken config gave exit $rc, want 1"; return 1; }
    grep -q 'broken.conf:3:' <<<"$out" || { echo "no line number in: $out"; return 1; }
}

# The value of [section] key in an INI file, "" when unset.
ini_get() {
    awk -v s="[$2]" -v k="$3" '
        /^[ \t]*\[/ { cur = $0; gsub(/[ \t]/, "", cur) }
        cur == s && $0 ~ "^[ \t]*" k "[ \t]*=" {
            v = $0; sub(/^[^=]*=[ \t]*/, "", v); sub(/[ \t]+[#;].*$/, "", v); print v; exit
        }' "$1"
}

# Environments differ where they really differ (issue 6, item 3).
check_environments() {
    local d=$ROOT/etc/orderd what sec key a b c f
    for f in dev staging prod; do
        [[ -f $d/$f.conf ]] || { echo "etc/orderd/$f.conf is missing"; return 1; }
    done
    for what in "log level" "log format" "storage durability" "limits rate" \
        "auth keys_file" "server tls_cert" "workers count"; do
        read -r sec key <<<"$what"
        a=$(ini_get "$d/dev.conf" "$sec" "$key")
        b=$(ini_get "$d/staging.conf" "$sec" "$key")
        c=$(ini_get "$d/prod.conf" "$sec" "$key")
        if [[ $a == "$b" && $b == "$c" ]]; then
            echo "[$sec] $key is '$a' in dev, staging and prod alike"
            return 1
        fi
    done
    [[ $(ini_get "$d/prod.conf" storage durability) == full ]] ||
        { echo "prod.conf must use durability = full"; return 1; }
    [[ -n $(ini_get "$d/prod.conf" auth keys_file) ]] ||
        { echo "prod.conf must set [auth] keys_file"; return 1; }
}

check_man_pages() {
    local p out sec
    for p in "$ROOT/docs/orderd.8" "$ROOT/docs/orderd.conf.5"; do
        [[ -f $p ]] || { echo "${p#"$ROOT"/} is missing"; return 1; }
        out=$(LC_ALL=C.UTF-8 timeout 30 groff -man -ww -z -Tutf8 "$p" 2>&1) ||
            { printf '%s\n' "$out"; echo "groff failed on ${p#"$ROOT"/}"; return 1; }
        [[ -z $out ]] || { printf '%s\n' "$out"; echo "groff warns on ${p#"$ROOT"/}"; return 1; }
        out=$(LC_ALL=C.UTF-8 MANWIDTH=80 timeout 30 man --warnings -l "$p" 2>&1 >/dev/null) ||
            { printf '%s\n' "$out"; echo "man failed on ${p#"$ROOT"/}"; return 1; }
        [[ -z $out ]] || { printf '%s\n' "$out"; echo "man warns on ${p#"$ROOT"/}"; return 1; }
    done
    for sec in NAME SYNOPSIS DESCRIPTION COMMANDS SIGNALS "EXIT STATUS" ENVIRONMENT FILES "SEE ALSO"; do
        grep -qx "\.SH \"\{0,1\}$sec\"\{0,1\}" "$ROOT/docs/orderd.8" ||
            { echo "docs/orderd.8 has no $sec section"; return 1; }
    done
}

# node and the validator, in build/ops-npm (reused while the version matches).
npm_ready() {
    command -v node >/dev/null || { echo "node is not installed (Debian: nodejs)"; return 1; }
    command -v npm >/dev/null || { echo "npm is not installed (Debian: npm)"; return 1; }
    local name=${OAS_VALIDATOR%@*} version=${OAS_VALIDATOR##*@} have=""
    local pj=$NPM_DIR/node_modules/$name/package.json
    [[ -f $pj ]] && have=$(node -p "require(process.argv[1]).version" "$pj" 2>/dev/null)
    [[ $have == "$version" && -f $NPM_DIR/node_modules/yaml/package.json ]] && return 0
    mkdir -p "$NPM_DIR" || return 1
    [[ -f $NPM_DIR/package.json ]] || echo '{"private": true}' >"$NPM_DIR/package.json"
    timeout 300 npm install --prefix "$NPM_DIR" --cache "$NPM_DIR/cache" --no-audit \
        --no-fund --loglevel=error "$OAS_VALIDATOR" >"$WORK/npm.log" 2>&1 ||
        { tail -n 5 "$WORK/npm.log"; echo "npm install $OAS_VALIDATOR failed"; return 1; }
}

check_openapi() {
    [[ -f $ROOT/docs/openapi.yaml ]] || { echo "docs/openapi.yaml is missing"; return 1; }
    npm_ready || return 1
    timeout 60 node "$ROOT/tests/ops/openapi-check.mjs" "$ROOT/docs/openapi.yaml" \
        "$ROOT/src" "$NPM_DIR/node_modules"
}

# The route check can fail: a copy of the document without GET /orders/{order_id}.
check_openapi_catches_missing_route() {
    npm_ready || return 1
    awk '/^  \/orders\/\{order_id\}:/ { skip = 1; next } skip && /^  [^ ]/ { skip = 0 } !skip' \
        "$ROOT/docs/openapi.yaml" >"$WORK/openapi-cut.yaml" || return 1
    local out rc=0
    out=$(timeout 60 node "$ROOT/tests/ops/openapi-check.mjs" "$WORK/openapi-cut.yaml" \
        "$ROOT/src" "$NPM_DIR/node_modules" 2>&1) || rc=$?
    [[ $rc -ne 0 ]] || { echo "a document without /orders/{order_id} passed"; return 1; }
    grep -q 'route GET /orders/{}' <<<"$out" || { printf '%s\n' "$out"; echo "wrong complaint"; return 1; }
}

check_install_uninstall() {
    local d=$WORK/dest f
    local mk=(make -C "$ROOT" --no-print-directory DESTDIR="$d" PREFIX=/usr)
    timeout 300 "${mk[@]}" install >"$WORK/install.log" 2>&1 ||
        { tail -n 5 "$WORK/install.log"; echo "make install failed"; return 1; }
    local files=(usr/bin/orderd lib/systemd/system/orderd.service etc/orderd/orderd.conf
        usr/share/man/man8/orderd.8 usr/share/man/man5/orderd.conf.5
        usr/lib/sysusers.d/orderd.conf usr/lib/tmpfiles.d/orderd.conf)
    for f in "${files[@]}"; do
        [[ -f $d/$f ]] || { echo "make install did not install /$f"; return 1; }
    done
    [[ -x $d/usr/bin/orderd ]] || { echo "/usr/bin/orderd is not executable"; return 1; }
    grep -qxF 'ExecStart=/usr/bin/orderd -c /etc/orderd/orderd.conf' \
        "$d/lib/systemd/system/orderd.service" ||
        { echo "installed unit: ExecStart is not /usr/bin/orderd"; return 1; }
    ! grep -q '@BINDIR@' "$d/lib/systemd/system/orderd.service" ||
        { echo "installed unit still holds @BINDIR@"; return 1; }
    [[ $(stat -c %a "$d/etc/orderd/orderd.conf") == 640 ]] ||
        { echo "installed config is not mode 0640"; return 1; }
    cmp -s "$ROOT/systemd/orderd.sysusers" "$d/usr/lib/sysusers.d/orderd.conf" ||
        { echo "sysusers.d/orderd.conf differs from systemd/orderd.sysusers"; return 1; }
    # an operator's config is never overwritten
    echo "# operator's edit" >>"$d/etc/orderd/orderd.conf"
    timeout 300 "${mk[@]}" install >"$WORK/install2.log" 2>&1 ||
        { tail -n 5 "$WORK/install2.log"; echo "second make install failed"; return 1; }
    grep -q "^# operator's edit" "$d/etc/orderd/orderd.conf" ||
        { echo "a second make install overwrote /etc/orderd/orderd.conf"; return 1; }
    timeout 300 "${mk[@]}" uninstall >"$WORK/uninstall.log" 2>&1 ||
        { tail -n 5 "$WORK/uninstall.log"; echo "make uninstall failed"; return 1; }
    for f in "${files[@]}"; do
        [[ $f == etc/orderd/orderd.conf ]] && continue
        [[ ! -e $d/$f ]] || { echo "make uninstall left /$f"; return 1; }
    done
    grep -q "^# operator's edit" "$d/etc/orderd/orderd.conf" ||
        { echo "make uninstall removed or changed /etc/orderd/orderd.conf"; return 1; }
}

check_shellcheck() {
    command -v shellcheck >/dev/null || { echo "shellcheck is not installed"; return 1; }
    # every shell script of the tree: tests, bench, build helpers, CI
    shellcheck -x "$ROOT"/tests/*/*.sh "$ROOT"/bench/*.sh "$ROOT"/build-aux/*.sh "$ROOT"/.ci/run
}

# npx lines that do not say --yes right after npx, in PATH... (directories
# too): without a terminal npx stops at its install prompt ("npx canceled due
# to missing packages and no YES option"), so a documented command must not.
npx_without_yes() {
    grep -rIHnE '(^|[^[:alnum:]_./-])npx[[:space:]]' "$@" |
        grep -vE '(^|[^[:alnum:]_./-])npx[[:space:]]+--yes([[:space:]]|$)' || true
}

# Every npx command in README.md, docs/, tests/*.yml and bench/ runs unattended.
check_npx_yes() {
    local bad
    [[ -f $ROOT/README.md && -d $ROOT/docs ]] || { echo "no README.md or docs/ to read"; return 1; }
    bad=$(npx_without_yes "$ROOT/README.md" "$ROOT/docs" "$ROOT"/tests/*.yml "$ROOT/bench")
    [[ -z $bad ]] || { printf '%s\n' "${bad//"$ROOT"\//}"; echo "npx without --yes (it prompts)"; return 1; }
    # and the check can fail: the README's line before issue 17
    echo "npx artillery@2 run tests/load-test.yml     # terminal 2" >"$WORK/npx.md"
    [[ -n $(npx_without_yes "$WORK/npx.md") ]] || { echo "'npx artillery@2 run' was not caught"; return 1; }
}

check binary check_binary
check unit-contents check_unit_contents
check unit-verify check_unit_verify
check unit-security check_unit_security
check sysusers-tmpfiles check_sysusers_tmpfiles
check configs-check check_configs
check environments-differ check_environments
check man-pages check_man_pages
check openapi check_openapi
check openapi-route-check-can-fail check_openapi_catches_missing_route
check install-uninstall check_install_uninstall
check shellcheck check_shellcheck
check npx-yes check_npx_yes

[[ -f $WORK/exposure ]] && echo "# unit $(cat "$WORK/exposure") (at most $MAX_EXPOSURE)"
if [[ $skipped -gt 0 ]]; then
    echo "$passed passed, $failed failed, $skipped skipped"
else
    echo "$passed passed, $failed failed"
fi
[[ $failed -eq 0 ]]
