#!/usr/bin/env bash
# run-one.sh SUITE SRC... — builds and runs one unit suite against only the given
# sources (plus the tests' tmpdir.c), under ASan+UBSan, while the rest of the tree
# may not compile yet.
# Example: tests/unit/run-one.sh config src/config*.c src/log.c
set -euo pipefail
suite=$1; shift
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
cat > "$out/main.c" <<EOC
#include <check.h>
#include <stdlib.h>
Suite *suite_$suite(void);
int main(void) {
    SRunner *r = srunner_create(suite_$suite());
    srunner_run_all(r, CK_NORMAL);
    int f = srunner_ntests_failed(r);
    srunner_free(r);
    return f ? EXIT_FAILURE : EXIT_SUCCESS;
}
EOC
PKGS=(libmicrohttpd sqlite3 jansson libuv inih gnutls libpq libcurl check)
read -ra pkg_cflags <<<"$(pkg-config --cflags "${PKGS[@]}")"
read -ra pkg_libs <<<"$(pkg-config --libs "${PKGS[@]}")"
cc -std=c11 -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
   -g -O1 -fsanitize=address,undefined -fno-sanitize-recover=all -pthread \
   -Iinclude -Isrc -D_GNU_SOURCE -DORDERD_VERSION='"test"' "${pkg_cflags[@]}" \
   -o "$out/t" "$out/main.c" "tests/unit/test_$suite.c" tests/unit/tmpdir.c "$@" \
   "${pkg_libs[@]}" -lm
CK_FORK=yes "$out/t"
