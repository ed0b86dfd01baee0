#!/usr/bin/env bash
# run.sh [TARGET...] — builds each libFuzzer target with clang
# (-fsanitize=fuzzer,address,undefined) against only the sources it needs and
# runs it for FUZZ_SECONDS (default 30) from its seed corpus in
# tests/fuzz/corpus/TARGET/ (read only: new inputs go to build/fuzz/corpus/).
# A crash, leak, timeout or broken property fails the target; the input is
# kept as build/fuzz/crashes/TARGET-*. Prints "ok NAME" / "FAIL NAME: why" and
# "N passed, M failed"; exits non-zero on any failure.
#
#   FUZZ_SECONDS=180 tests/fuzz/run.sh keys order
#   reproduce: build/fuzz/fuzz_order build/fuzz/crashes/order-crash-...
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
seconds=${FUZZ_SECONDS:-30}
out=${FUZZ_OUT:-build/fuzz}

# target -> the sources under test (the fuzz driver is tests/fuzz/fuzz_TARGET.c)
declare -A sources=(
    [order]="src/order.c src/strbuf.c"
    [config]="src/config.c src/config_keys.c src/config_values.c src/log.c"
    [traceparent]="src/trace.c src/ids.c"
    [keys]="src/auth.c src/auth_keys_file.c"
)
all_targets=(order config traceparent keys)

if [ $# -gt 0 ]; then
    targets=("$@")
else
    targets=("${all_targets[@]}")
fi

if ! command -v clang >/dev/null; then
    echo "FAIL setup: clang not found (apt-get install clang libclang-rt-14-dev)"
    echo "0 passed, 1 failed"
    exit 1
fi

pkgs=(libmicrohttpd sqlite3 jansson libuv inih gnutls)
read -r -a pkg_cflags <<<"$(pkg-config --cflags "${pkgs[@]}")"
read -r -a pkg_libs <<<"$(pkg-config --libs "${pkgs[@]}")"
mkdir -p "$out/crashes" "$out/logs"

passed=0
failed=0
for t in "${targets[@]}"; do
    if [ -z "${sources[$t]+set}" ]; then
        echo "FAIL $t: no such fuzz target (targets: ${all_targets[*]})"
        failed=$((failed + 1))
        continue
    fi
    bin="$out/fuzz_$t"
    log="$out/logs/$t.log"
    read -r -a srcs <<<"${sources[$t]}"
    if ! clang -std=c11 -g -O1 -fno-omit-frame-pointer -Wall -Wextra \
        -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
        -Iinclude -D_GNU_SOURCE -DORDERD_VERSION='"fuzz"' "${pkg_cflags[@]}" \
        -o "$bin" "tests/fuzz/fuzz_$t.c" "${srcs[@]}" "${pkg_libs[@]}" -pthread -lm \
        >"$log" 2>&1; then
        echo "FAIL $t: build failed (see $log)"
        sed -n '1,20p' "$log"
        failed=$((failed + 1))
        continue
    fi
    corpus="$out/corpus/$t"
    mkdir -p "$corpus"
    dict=()
    if [ -f "tests/fuzz/dict/$t.dict" ]; then
        dict=("-dict=tests/fuzz/dict/$t.dict")
    fi
    # -max_total_time bounds the run; -timeout flags one input that hangs;
    # timeout(1) is the backstop should the fuzzer itself wedge.
    if timeout --kill-after=10 $((seconds + 60)) "$bin" "${dict[@]}" \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=8192 \
        -print_final_stats=1 -artifact_prefix="$out/crashes/$t-" \
        "$corpus" "tests/fuzz/corpus/$t" >"$log" 2>&1; then
        execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
        echo "ok $t (${execs:-?} executions in ${seconds}s)"
        passed=$((passed + 1))
    else
        artifact=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -n 1)
        echo "FAIL $t: crash or property broken; input ${artifact:-unknown}, log $log"
        grep -m 5 -E 'ERROR|SUMMARY|runtime error|abort|deadly' "$log" || tail -n 20 "$log"
        failed=$((failed + 1))
    fi
done

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
