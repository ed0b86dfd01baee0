/*
 * test_cli.c — the subcommands of cli.c: `orderd hash-key` (the hash of a
 * key read from a pipe, every refusal: empty, too long, a character a client
 * could not send). `orderd backup` is tested by tests/integration/test_cli.sh.
 */
#include <check.h>
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "auth.h"
#include "cli.h"
#include "timeouts.h"

Suite *suite_cli(void);

/* A key and its SHA-256 (from sha256sum), as in test_auth.c. */
#define K_WRITER "key-writer-0001"
#define H_WRITER "817eb271a5fff64983262a47c5bb0c5c1e3539b5c11cee772b6d444cfa0f72d2"

/* ---- orderd hash-key ------------------------------------------------------------- */

/* Feeds in[0..len) to cli_hash_key; returns its code, output in out. */
static int hash_key_io(const char *in, size_t len, char *out, size_t cap)
{
    int ip[2], op[2];
    ck_assert_int_eq(pipe(ip), 0);
    ck_assert_int_eq(pipe(op), 0);
    ck_assert_int_eq((int)write(ip[1], in, len), (int)len);
    close(ip[1]);
    int rc = cli_hash_key(ip[0], op[1]);
    close(ip[0]);
    close(op[1]);
    ssize_t n = read(op[0], out, cap - 1);
    out[n > 0 ? n : 0] = '\0';
    close(op[0]);
    return rc;
}

static const struct {
    const char *in;
    int rc;
    const char *out;
} hash_keys[] = {
    {"abc\n", 0, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad\n"},
    {"abc", 0, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad\n"},
    {K_WRITER "\n", 0, H_WRITER "\n"},
    {"", -EINVAL, ""},
    {"\n", -EINVAL, ""},
    {"abc\n\n", -EINVAL, ""}, /* one newline is stripped, not two */
    {"abc\r\n", -EINVAL, ""}, /* a CR is no part of a key a client can send */
    {"a b\n", -EINVAL, ""},
    {"\tabc\n", -EINVAL, ""},
    {"k\xc3\xa9y\n", -EINVAL, ""},
};

START_TEST(hash_key_table)
{
    char out[256];
    int rc = hash_key_io(hash_keys[_i].in, strlen(hash_keys[_i].in), out, sizeof(out));
    ck_assert_int_eq(rc, hash_keys[_i].rc);
    ck_assert_str_eq(out, hash_keys[_i].out);
}
END_TEST

START_TEST(hash_key_length_bounds)
{
    char in[AUTH_KEY_MAX + 8], out[256];
    memset(in, 'a', sizeof(in));
    in[AUTH_KEY_MAX] = '\n';
    ck_assert_int_eq(hash_key_io(in, AUTH_KEY_MAX + 1, out, sizeof(out)), 0);
    ck_assert_str_eq(out, "471be6558b665e4f6dd49f1184814d1491b0315d466beea768c153cc5500c836\n");
    ck_assert_int_eq(hash_key_io(in, AUTH_KEY_MAX, out, sizeof(out)), 0);
    memset(in, 'a', sizeof(in));
    ck_assert_int_eq(hash_key_io(in, AUTH_KEY_MAX + 1, out, sizeof(out)), -EINVAL);
    ck_assert_int_eq(hash_key_io(in, sizeof(in), out, sizeof(out)), -EINVAL);
    ck_assert_str_eq(out, "");
}
END_TEST

#define N(a) ((int)(sizeof(a) / sizeof((a)[0])))

Suite *suite_cli(void)
{
    Suite *s = suite_create("cli");

    TCase *tc = tcase_create("hash_key");
    tcase_set_timeout(tc, UNIT_TIMEOUT_LOGIC);
    tcase_add_loop_test(tc, hash_key_table, 0, N(hash_keys));
    tcase_add_test(tc, hash_key_length_bounds);
    suite_add_tcase(s, tc);
    return s;
}
