/*
 * test_auth.c — API keys: SHA-256 vectors, the constant-time compare, scopes,
 * the keys file (every error with its line), the Bearer header, the 0/401/403
 * decisions, and reload (swap, and keep the old table on error, also while
 * other threads authorize). `orderd hash-key` is tested in test_cli.c.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "auth.h"
#include "timeouts.h"

Suite *suite_auth(void);

#define assert_contains(s, part)                                                        \
    ck_assert_msg(strstr((s), (part)) != NULL, "\"%s\" lacks \"%s\"", (s), (part))

/* Keys and their SHA-256 (from sha256sum). */
#define K_WRITER "key-writer-0001"
#define H_WRITER "817eb271a5fff64983262a47c5bb0c5c1e3539b5c11cee772b6d444cfa0f72d2"
#define K_READER "key-reader-0002"
#define H_READER "503282e8d2e96604c0217efb112bc85e8689f80ce5a27e81d0097695e30810b6"
#define K_ADMIN "key-admin-0003"
#define H_ADMIN "327dc6fc5df4f3564f963872cdfd590c97eeeacf6572633cb4f389621b0674a8"
#define K_ALL "key-all-0004"
#define H_ALL "9a81e507487c86431d211e3aeb96c0ee69bd0fe416bad4fdb98eb2ef1175e2ee"

static const char keys_text[] =
    "# orderd keys\n"
    "\n"
    "writer   orders:write   " H_WRITER "\n"
    "reader\torders:read\t" H_READER "   # the dashboard\n"
    "ops.admin-1 admin " H_ADMIN "\r\n"
    "   all orders:write,orders:read,admin " H_ALL "\n";

static struct auth *load_ok(const char *text)
{
    struct auth *a = NULL;
    struct auth_errors errs = {0};
    int rc = auth_load_string(text, strlen(text), &a, &errs);
    ck_assert_msg(rc == 0, "rc %d, first error line %u: %s", rc,
                  errs.count ? errs.items[0].line : 0, errs.count ? errs.items[0].message : "");
    ck_assert_uint_eq(errs.count, 0);
    ck_assert_ptr_nonnull(a);
    return a;
}

/* ---- hashing --------------------------------------------------------------- */

static const struct {
    const char *in;
    const char *hex;
} vectors[] = {
    {"", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
    {"abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
    {"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
     "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"},
    {"The quick brown fox jumps over the lazy dog",
     "d7a8fbb307d7809469ca9abcb0082e4f8d5651e46d3cdb762d02d0bf37c9e592"},
    {K_WRITER, H_WRITER},
};

START_TEST(hash_known_vectors)
{
    char hex[AUTH_HEX_LEN + 1];
    ck_assert_int_eq(auth_hash_hex(vectors[_i].in, strlen(vectors[_i].in), hex), 0);
    ck_assert_str_eq(hex, vectors[_i].hex);
}
END_TEST

START_TEST(hash_million_a)
{
    size_t n = 1000000;
    char *buf = malloc(n);
    char hex[AUTH_HEX_LEN + 1];
    ck_assert_ptr_nonnull(buf);
    memset(buf, 'a', n);
    ck_assert_int_eq(auth_hash_hex(buf, n, hex), 0);
    ck_assert_str_eq(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
    free(buf);
}
END_TEST

/* ---- constant-time compare ------------------------------------------------- */

START_TEST(digest_equal_same)
{
    uint8_t a[AUTH_DIGEST_LEN], b[AUTH_DIGEST_LEN];
    for (size_t i = 0; i < AUTH_DIGEST_LEN; i++)
        a[i] = b[i] = (uint8_t)(i * 37 + 5);
    ck_assert_int_eq(auth_digest_equal(a, b), 1);
    memset(a, 0, sizeof(a));
    memset(b, 0, sizeof(b));
    ck_assert_int_eq(auth_digest_equal(a, b), 1);
    memset(a, 0xff, sizeof(a));
    memset(b, 0xff, sizeof(b));
    ck_assert_int_eq(auth_digest_equal(a, b), 1);
}
END_TEST

/* Every single-bit difference, at every byte, is seen. */
START_TEST(digest_equal_each_bit)
{
    uint8_t a[AUTH_DIGEST_LEN], b[AUTH_DIGEST_LEN];
    size_t byte = (size_t)_i / 8;
    unsigned bit = (unsigned)_i % 8;
    for (size_t i = 0; i < AUTH_DIGEST_LEN; i++)
        a[i] = b[i] = (uint8_t)(0xa5 ^ i);
    b[byte] ^= (uint8_t)(1u << bit);
    ck_assert_int_eq(auth_digest_equal(a, b), 0);
    ck_assert_int_eq(auth_digest_equal(b, a), 0);
}
END_TEST

START_TEST(digest_equal_all_differ)
{
    uint8_t a[AUTH_DIGEST_LEN], b[AUTH_DIGEST_LEN];
    memset(a, 0x00, sizeof(a));
    memset(b, 0xff, sizeof(b));
    ck_assert_int_eq(auth_digest_equal(a, b), 0);
}
END_TEST

/* ---- scopes ----------------------------------------------------------------- */

static const struct {
    const char *in;
    int rc;
    unsigned bits;
} scopes[] = {
    {"orders:write", 0, AUTH_SCOPE_ORDERS_WRITE},
    {"orders:read", 0, AUTH_SCOPE_ORDERS_READ},
    {"admin", 0, AUTH_SCOPE_ADMIN},
    {"orders:read,orders:write", 0, AUTH_SCOPE_ORDERS_READ | AUTH_SCOPE_ORDERS_WRITE},
    {"admin,orders:write,orders:read", 0,
     AUTH_SCOPE_ADMIN | AUTH_SCOPE_ORDERS_READ | AUTH_SCOPE_ORDERS_WRITE},
    {"", -EINVAL, 0},
    {",", -EINVAL, 0},
    {"admin,", -EINVAL, 0},
    {",admin", -EINVAL, 0},
    {"admin,,orders:read", -EINVAL, 0},
    {"Admin", -EINVAL, 0},
    {"orders:Write", -EINVAL, 0},
    {"orders", -EINVAL, 0},
    {"orders:*", -EINVAL, 0},
    {"admin,admin", -EINVAL, 0},
    {"adminx", -EINVAL, 0},
    {"admi", -EINVAL, 0},
};

START_TEST(scopes_parse_table)
{
    unsigned bits = 0xdead;
    int rc = auth_scopes_parse(scopes[_i].in, strlen(scopes[_i].in), &bits);
    ck_assert_msg(rc == scopes[_i].rc, "\"%s\": rc %d", scopes[_i].in, rc);
    if (rc == 0)
        ck_assert_uint_eq(bits, scopes[_i].bits);
}
END_TEST

START_TEST(scope_for_routes)
{
    ck_assert_uint_eq(auth_scope_for(HTTP_SCOPE_NONE), 0);
    ck_assert_uint_eq(auth_scope_for(HTTP_SCOPE_ORDERS_WRITE), AUTH_SCOPE_ORDERS_WRITE);
    ck_assert_uint_eq(auth_scope_for(HTTP_SCOPE_ORDERS_READ), AUTH_SCOPE_ORDERS_READ);
    ck_assert_uint_eq(auth_scope_for(HTTP_SCOPE_ADMIN), AUTH_SCOPE_ADMIN);
    ck_assert_uint_eq(auth_scope_for((enum http_scope)99), ~0u);
}
END_TEST

/* ---- the keys file: good files ---------------------------------------------- */

START_TEST(keys_file_parses)
{
    struct auth *a = load_ok(keys_text);
    ck_assert_uint_eq(auth_key_count(a), 4);
    auth_free(a);
}
END_TEST

static const struct {
    const char *text;
    size_t keys;
} good_files[] = {
    {"", 0},
    {"\n\n\n", 0},
    {"# only a comment\n   # indented comment\n\t\n", 0},
    {"a admin " H_ADMIN, 1},                     /* no final newline */
    {"a admin " H_ADMIN "#comment right after\n", 1},
    {"a admin "
     "327DC6FC5DF4F3564F963872CDFD590C97EEEACF6572633CB4F389621B0674A8\n", 1}, /* upper hex */
    {"A.b_c-9 admin " H_ADMIN "\r\n", 1},
    {"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa admin " H_ADMIN, 1},
    {"x admin " H_ADMIN "\ny admin " H_READER "\n", 2},
};

START_TEST(keys_file_good_table)
{
    struct auth *a = load_ok(good_files[_i].text);
    ck_assert_uint_eq(auth_key_count(a), good_files[_i].keys);
    auth_free(a);
}
END_TEST

/* ---- the keys file: every error with its line ------------------------------- */

static const struct {
    const char *text;
    unsigned line;
    const char *message;
} bad_files[] = {
    {"writer orders:write\n", 1, "expected NAME SCOPES SHA256HEX, found 2 fields"},
    {"\n\nwriter\n", 3, "found 1 field"},
    {"a admin " H_ADMIN " extra\n", 1, "found 4 fields"},
    {"a b c d e\n", 1, "found 5 fields"},
    {"bad/name admin " H_ADMIN "\n", 1, "name must be 1 to 64 characters"},
    {"b\xc3\xa9 admin " H_ADMIN "\n", 1, "name must be"},
    {"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa admin " H_ADMIN "\n", 1,
     "name must be"}, /* 65 characters */
    {"a root " H_ADMIN "\n", 1, "unknown scope \"root\""},
    {"a admin,root " H_ADMIN "\n", 1, "unknown scope \"root\""},
    {"a admin, " H_ADMIN "\n", 1, "empty scope"},
    {"a admin,admin " H_ADMIN "\n", 1, "scope \"admin\" listed twice"},
    {"a admin 1234\n", 1, "hash must be 64 hex digits"},
    {"a admin " H_ADMIN "0\n", 1, "hash must be 64 hex digits"},
    {"a admin g27dc6fc5df4f3564f963872cdfd590c97eeeacf6572633cb4f389621b0674a8\n", 1,
     "hash must be 64 hex digits"},
    {"a admin " H_ADMIN "\nb admin " H_READER "\na orders:read " H_WRITER "\n", 3,
     "name \"a\" already used on line 1"},
    {"a admin " H_ADMIN "\n# c\nb orders:read " H_ADMIN "\n", 3,
     "same hash as \"a\" on line 1"},
    {"a admin " H_ADMIN "\nb admin "
     "327DC6FC5DF4F3564F963872CDFD590C97EEEACF6572633CB4F389621B0674A8\n",
     2, "same hash as \"a\""},
};

START_TEST(keys_file_bad_table)
{
    struct auth *a = (struct auth *)1;
    struct auth_errors errs = {0};
    const char *text = bad_files[_i].text;
    int rc = auth_load_string(text, strlen(text), &a, &errs);
    ck_assert_int_eq(rc, -EINVAL);
    ck_assert_ptr_null(a);
    ck_assert_uint_ge(errs.count, 1);
    ck_assert_uint_eq(errs.items[0].line, bad_files[_i].line);
    assert_contains(errs.items[0].message, bad_files[_i].message);
}
END_TEST

/* One file, many errors: each is reported with its own line. */
START_TEST(keys_file_every_error)
{
    static const char text[] = "ok admin " H_ADMIN "\n"      /* 1 */
                               "bad! admin " H_READER "\n"    /* 2: name */
                               "# fine\n"                     /* 3 */
                               "c nope " H_WRITER "\n"        /* 4: scope */
                               "d admin xyz\n"                /* 5: hash */
                               "e\n"                          /* 6: fields */
                               "ok orders:read " H_ALL "\n";  /* 7: duplicate name */
    static const unsigned lines[] = {2, 4, 5, 6, 7};
    struct auth *a = NULL;
    struct auth_errors errs = {0};
    ck_assert_int_eq(auth_load_string(text, strlen(text), &a, &errs), -EINVAL);
    ck_assert_uint_eq(errs.count, sizeof(lines) / sizeof(lines[0]));
    for (size_t i = 0; i < errs.count; i++)
        ck_assert_uint_eq(errs.items[i].line, lines[i]);
}
END_TEST

START_TEST(keys_file_nul_byte)
{
    static const char text[] = "a admin " H_ADMIN "\nb\0 admin " H_READER "\n";
    struct auth *a = NULL;
    struct auth_errors errs = {0};
    ck_assert_int_eq(auth_load_string(text, sizeof(text) - 1, &a, &errs), -EINVAL);
    ck_assert_uint_eq(errs.count, 1);
    ck_assert_uint_eq(errs.items[0].line, 2);
    assert_contains(errs.items[0].message, "NUL");
}
END_TEST

START_TEST(keys_file_long_line)
{
    char *text = malloc(AUTH_LINE_MAX + 100);
    ck_assert_ptr_nonnull(text);
    strcpy(text, "a admin " H_ADMIN "\n# ");
    size_t n = strlen(text);
    memset(text + n, 'x', AUTH_LINE_MAX);
    text[n + AUTH_LINE_MAX] = '\0';
    struct auth *a = NULL;
    struct auth_errors errs = {0};
    ck_assert_int_eq(auth_load_string(text, strlen(text), &a, &errs), -EINVAL);
    ck_assert_uint_eq(errs.items[0].line, 2);
    assert_contains(errs.items[0].message, "longer than");
    free(text);
}
END_TEST

/* Key N gets the hash "%064x" of N: distinct, valid hex. */
static char *many_keys(size_t n)
{
    size_t line = 12 + 6 + 1 + 64 + 1;
    char *text = malloc(n * line + 1), *p = text;
    ck_assert_ptr_nonnull(text);
    for (size_t i = 0; i < n; i++)
        p += sprintf(p, "k%zu admin %064zx\n", i, i);
    return text;
}

START_TEST(keys_file_key_cap)
{
    char *text = many_keys(AUTH_KEYS_MAX);
    struct auth *a = load_ok(text);
    ck_assert_uint_eq(auth_key_count(a), AUTH_KEYS_MAX);
    auth_free(a);
    free(text);

    text = many_keys(AUTH_KEYS_MAX + 1);
    struct auth_errors errs = {0};
    ck_assert_int_eq(auth_load_string(text, strlen(text), &a, &errs), -EINVAL);
    ck_assert_uint_eq(errs.count, 1);
    ck_assert_uint_eq(errs.items[0].line, AUTH_KEYS_MAX + 1);
    assert_contains(errs.items[0].message, "more than");
    free(text);
}
END_TEST

START_TEST(keys_file_errors_capped)
{
    size_t n = AUTH_ERRORS_MAX + 10;
    char *text = malloc(n * 3 + 1);
    ck_assert_ptr_nonnull(text);
    for (size_t i = 0; i < n; i++)
        memcpy(text + 3 * i, "x \n", 3);
    text[3 * n] = '\0';
    struct auth *a = NULL;
    struct auth_errors errs = {0};
    ck_assert_int_eq(auth_load_string(text, strlen(text), &a, &errs), -EINVAL);
    ck_assert_uint_eq(errs.count, AUTH_ERRORS_MAX);
    ck_assert_uint_eq(errs.dropped, 10);
    free(text);
}
END_TEST

/* A key pasted in place of its hash must not be echoed in the error. */
START_TEST(keys_file_error_hides_hash_field)
{
    static const char text[] = "a admin my-secret-api-key\n";
    struct auth *a = NULL;
    struct auth_errors errs = {0};
    ck_assert_int_eq(auth_load_string(text, strlen(text), &a, &errs), -EINVAL);
    ck_assert_uint_eq(errs.count, 1);
    ck_assert_ptr_null(strstr(errs.items[0].message, "my-secret"));
}
END_TEST

START_TEST(errors_print_format)
{
    struct auth_errors errs = {.count = 2, .dropped = 3};
    errs.items[0].line = 0;
    strcpy(errs.items[0].message, "cannot open: x");
    errs.items[1].line = 7;
    strcpy(errs.items[1].message, "bad");
    char buf[256] = {0};
    FILE *f = fmemopen(buf, sizeof(buf) - 1, "w");
    ck_assert_ptr_nonnull(f);
    auth_errors_print(&errs, "/etc/orderd/keys", f);
    fclose(f);
    ck_assert_str_eq(buf, "/etc/orderd/keys: cannot open: x\n"
                          "/etc/orderd/keys:7: bad\n"
                          "/etc/orderd/keys: 3 more errors not shown\n");
}
END_TEST

/* ---- decisions ---------------------------------------------------------------- */

static const struct {
    const char *header;
    enum http_scope scope;
    unsigned code;
    const char *client;
} decisions[] = {
    {"Bearer " K_WRITER, HTTP_SCOPE_ORDERS_WRITE, 0, "writer"},
    {"Bearer " K_WRITER, HTTP_SCOPE_ORDERS_READ, 403, NULL},
    {"Bearer " K_WRITER, HTTP_SCOPE_ADMIN, 403, NULL},
    {"Bearer " K_READER, HTTP_SCOPE_ORDERS_READ, 0, "reader"},
    {"Bearer " K_READER, HTTP_SCOPE_ORDERS_WRITE, 403, NULL},
    {"Bearer " K_ADMIN, HTTP_SCOPE_ADMIN, 0, "ops.admin-1"},
    {"Bearer " K_ADMIN, HTTP_SCOPE_ORDERS_READ, 403, NULL}, /* admin does not imply read */
    {"Bearer " K_ALL, HTTP_SCOPE_ORDERS_WRITE, 0, "all"},
    {"Bearer " K_ALL, HTTP_SCOPE_ORDERS_READ, 0, "all"},
    {"Bearer " K_ALL, HTTP_SCOPE_ADMIN, 0, "all"},
    {"Bearer " K_ALL, HTTP_SCOPE_NONE, 0, "all"},
    {"Bearer " K_ALL, (enum http_scope)42, 403, NULL},
    {"bearer " K_WRITER, HTTP_SCOPE_ORDERS_WRITE, 0, "writer"},
    {"BEARER " K_WRITER, HTTP_SCOPE_ORDERS_WRITE, 0, "writer"},
    {"bEaReR " K_WRITER, HTTP_SCOPE_ORDERS_WRITE, 0, "writer"},
    /* 401: missing, malformed, unknown */
    {NULL, HTTP_SCOPE_ORDERS_WRITE, 401, NULL},
    {"", HTTP_SCOPE_ORDERS_WRITE, 401, NULL},
    {"Bearer", HTTP_SCOPE_ORDERS_WRITE, 401, NULL},
    {"Bearer ", HTTP_SCOPE_ORDERS_WRITE, 401, NULL},
    {"Bearer  " K_WRITER, HTTP_SCOPE_ORDERS_WRITE, 401, NULL},
    {"Bearer\t" K_WRITER, HTTP_SCOPE_ORDERS_WRITE, 401, NULL},
    {"Bearer " K_WRITER " ", HTTP_SCOPE_ORDERS_WRITE, 401, NULL},
    {"Bearer " K_WRITER "x", HTTP_SCOPE_ORDERS_WRITE, 401, NULL},
    {"Bearer key-writer-000", HTTP_SCOPE_ORDERS_WRITE, 401, NULL},
    {"Bearer Key-writer-0001", HTTP_SCOPE_ORDERS_WRITE, 401, NULL}, /* keys are case-sensitive */
    {"Bearer key-writer 0001", HTTP_SCOPE_ORDERS_WRITE, 401, NULL},
    {"Bearer " H_WRITER, HTTP_SCOPE_ORDERS_WRITE, 401, NULL}, /* the hash is not the key */
    {"Basic " K_WRITER, HTTP_SCOPE_ORDERS_WRITE, 401, NULL},
    {"Bearerx " K_WRITER, HTTP_SCOPE_ORDERS_WRITE, 401, NULL},
    {K_WRITER, HTTP_SCOPE_ORDERS_WRITE, 401, NULL},
    {" Bearer " K_WRITER, HTTP_SCOPE_ORDERS_WRITE, 401, NULL},
    {"Bearer key-\xc3\xa9", HTTP_SCOPE_ORDERS_WRITE, 401, NULL},
    {"Bearer \x7f", HTTP_SCOPE_ORDERS_WRITE, 401, NULL},
    {"Bearer unknown-key", HTTP_SCOPE_ORDERS_READ, 401, NULL},
};

START_TEST(decisions_table)
{
    struct auth *a = load_ok(keys_text);
    char client[64] = "untouched";
    unsigned code = auth_http_authorize(a, decisions[_i].header, decisions[_i].scope, client,
                                        sizeof(client));
    ck_assert_msg(code == decisions[_i].code, "\"%s\" scope %d: got %u, want %u",
                  decisions[_i].header ? decisions[_i].header : "(null)",
                  (int)decisions[_i].scope, code, decisions[_i].code);
    ck_assert_str_eq(client, decisions[_i].client ? decisions[_i].client : "untouched");
    auth_free(a);
}
END_TEST

/* Keys of 1 and AUTH_KEY_MAX characters work; AUTH_KEY_MAX + 1 is refused. */
START_TEST(key_length_bounds)
{
    char key[AUTH_KEY_MAX + 2], hex[AUTH_HEX_LEN + 1];
    char text[256], header[AUTH_KEY_MAX + 16];
    size_t lens[] = {1, AUTH_KEY_MAX, AUTH_KEY_MAX + 1};
    for (size_t i = 0; i < 3; i++) {
        memset(key, 'k', lens[i]);
        key[lens[i]] = '\0';
        ck_assert_int_eq(auth_hash_hex(key, lens[i], hex), 0);
        snprintf(text, sizeof(text), "k admin %s\n", hex);
        struct auth *a = load_ok(text);
        snprintf(header, sizeof(header), "Bearer %s", key);
        unsigned want = lens[i] <= AUTH_KEY_MAX ? 0 : 401;
        ck_assert_uint_eq(auth_check(a, header, AUTH_SCOPE_ADMIN, NULL, 0), want);
        auth_free(a);
    }
}
END_TEST

START_TEST(client_out_truncated)
{
    static const char text[] = "abcdefghij admin " H_ADMIN "\n";
    struct auth *a = load_ok(text);
    char client[5];
    ck_assert_uint_eq(auth_check(a, "Bearer " K_ADMIN, AUTH_SCOPE_ADMIN, client, sizeof(client)),
                      0);
    ck_assert_str_eq(client, "abcd");
    auth_free(a);
}
END_TEST

START_TEST(empty_table_refuses)
{
    struct auth *a = load_ok("# nobody\n");
    ck_assert_uint_eq(auth_check(a, "Bearer " K_ADMIN, 0, NULL, 0), 401);
    ck_assert_uint_eq(auth_check(NULL, "Bearer " K_ADMIN, 0, NULL, 0), 401);
    auth_free(a);
    auth_free(NULL);
}
END_TEST

/* The match is found wherever it sits among many keys (the scan has no early exit). */
START_TEST(match_anywhere_in_table)
{
    char *text = many_keys(AUTH_KEYS_MAX - 1);
    char *full = malloc(strlen(text) + 200);
    ck_assert_ptr_nonnull(full);
    if (_i == 0)
        sprintf(full, "first admin %s\n%s", H_ADMIN, text);
    else
        sprintf(full, "%slast admin %s\n", text, H_ADMIN);
    struct auth *a = load_ok(full);
    char client[64] = "";
    ck_assert_uint_eq(auth_check(a, "Bearer " K_ADMIN, AUTH_SCOPE_ADMIN, client, sizeof(client)),
                      0);
    ck_assert_str_eq(client, _i == 0 ? "first" : "last");
    auth_free(a);
    free(full);
    free(text);
}
END_TEST

/* ---- files and reload ----------------------------------------------------------- */

struct tmp {
    char dir[64];
    char path[96];
};

static void tmp_make(struct tmp *t)
{
    strcpy(t->dir, "/tmp/orderd-auth-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(t->dir));
    snprintf(t->path, sizeof(t->path), "%s/keys", t->dir);
}

static void tmp_write(const struct tmp *t, const char *text, mode_t mode)
{
    char next[128];
    snprintf(next, sizeof(next), "%s.new", t->path);
    FILE *f = fopen(next, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    ck_assert_int_eq(fclose(f), 0);
    ck_assert_int_eq(chmod(next, mode), 0);
    ck_assert_int_eq(rename(next, t->path), 0); /* as an editor would: atomic replace */
}

static void tmp_remove(const struct tmp *t)
{
    unlink(t->path);
    rmdir(t->dir);
}

START_TEST(load_from_file)
{
    struct tmp t;
    tmp_make(&t);
    tmp_write(&t, keys_text, 0640);
    struct auth *a = NULL;
    struct auth_errors errs = {0};
    ck_assert_int_eq(auth_load(t.path, &a, &errs), 0);
    ck_assert_uint_eq(auth_key_count(a), 4);
    auth_free(a);
    tmp_remove(&t);
}
END_TEST

START_TEST(load_missing_file)
{
    struct auth *a = (struct auth *)1;
    struct auth_errors errs = {0};
    ck_assert_int_eq(auth_load("/nonexistent/orderd/keys", &a, &errs), -ENOENT);
    ck_assert_ptr_null(a);
    ck_assert_uint_eq(errs.count, 1);
    ck_assert_uint_eq(errs.items[0].line, 0);
    assert_contains(errs.items[0].message, "cannot open");
}
END_TEST

START_TEST(load_refuses_world_writable)
{
    struct tmp t;
    tmp_make(&t);
    tmp_write(&t, keys_text, 0646);
    struct auth *a = NULL;
    struct auth_errors errs = {0};
    ck_assert_int_eq(auth_load(t.path, &a, &errs), -EINVAL);
    ck_assert_uint_eq(errs.items[0].line, 0);
    assert_contains(errs.items[0].message, "writable by other users");
    tmp_remove(&t);
}
END_TEST

START_TEST(load_refuses_directory)
{
    struct auth *a = NULL;
    struct auth_errors errs = {0};
    ck_assert_int_eq(auth_load("/tmp", &a, &errs), -EINVAL);
    assert_contains(errs.items[0].message, "not a regular file");
}
END_TEST

START_TEST(reload_swaps_and_keeps_old_on_error)
{
    struct tmp t;
    tmp_make(&t);
    tmp_write(&t, "w orders:write " H_WRITER "\n", 0600);
    struct auth *a = NULL;
    struct auth_errors errs = {0};
    ck_assert_int_eq(auth_load(t.path, &a, &errs), 0);
    ck_assert_uint_eq(auth_check(a, "Bearer " K_WRITER, AUTH_SCOPE_ORDERS_WRITE, NULL, 0), 0);
    ck_assert_uint_eq(auth_check(a, "Bearer " K_READER, AUTH_SCOPE_ORDERS_READ, NULL, 0), 401);

    /* Rotation: the new key is added, the old one stays. */
    tmp_write(&t, "w orders:write " H_WRITER "\nr orders:read " H_READER "\n", 0600);
    ck_assert_int_eq(auth_reload(a, t.path, &errs), 0);
    ck_assert_uint_eq(auth_check(a, "Bearer " K_READER, AUTH_SCOPE_ORDERS_READ, NULL, 0), 0);
    ck_assert_uint_eq(auth_check(a, "Bearer " K_WRITER, AUTH_SCOPE_ORDERS_WRITE, NULL, 0), 0);

    /* A broken file: errors with their lines, and the running table stays. */
    tmp_write(&t, "r orders:read " H_READER "\nw orders:wrote " H_WRITER "\n", 0600);
    ck_assert_int_eq(auth_reload(a, t.path, &errs), -EINVAL);
    ck_assert_uint_eq(errs.count, 1);
    ck_assert_uint_eq(errs.items[0].line, 2);
    ck_assert_uint_eq(auth_key_count(a), 2);
    ck_assert_uint_eq(auth_check(a, "Bearer " K_WRITER, AUTH_SCOPE_ORDERS_WRITE, NULL, 0), 0);

    /* A vanished file: same. */
    unlink(t.path);
    memset(&errs, 0, sizeof(errs));
    ck_assert_int_eq(auth_reload(a, t.path, &errs), -ENOENT);
    ck_assert_uint_eq(auth_check(a, "Bearer " K_READER, AUTH_SCOPE_ORDERS_READ, NULL, 0), 0);

    /* The old key removed. */
    tmp_write(&t, "r orders:read " H_READER "\n", 0600);
    ck_assert_int_eq(auth_reload(a, t.path, NULL), 0);
    ck_assert_uint_eq(auth_check(a, "Bearer " K_WRITER, AUTH_SCOPE_ORDERS_WRITE, NULL, 0), 401);
    ck_assert_uint_eq(auth_check(a, "Bearer " K_READER, AUTH_SCOPE_ORDERS_READ, NULL, 0), 0);
    auth_free(a);
    tmp_remove(&t);
}
END_TEST

/* Readers on 4 threads while the loop thread reloads: every answer comes from a whole table. */
struct reader_arg {
    struct auth *a;
    atomic_bool *stop;
    unsigned long checks, bad;
};

static void *reader(void *p)
{
    struct reader_arg *r = p;
    while (!atomic_load(r->stop)) {
        char client[64] = "";
        /* writer is in both tables; admin in one of them only. */
        if (auth_check(r->a, "Bearer " K_WRITER, AUTH_SCOPE_ORDERS_WRITE, client,
                       sizeof(client)) != 0 ||
            strcmp(client, "w") != 0)
            r->bad++;
        unsigned c = auth_check(r->a, "Bearer " K_ADMIN, AUTH_SCOPE_ADMIN, NULL, 0);
        if (c != 0 && c != 401)
            r->bad++;
        r->checks++;
    }
    return NULL;
}

START_TEST(reload_while_authorizing)
{
    static const char *tables[] = {
        "w orders:write " H_WRITER "\n",
        "w orders:write " H_WRITER "\nadm admin " H_ADMIN "\n",
    };
    struct tmp t;
    tmp_make(&t);
    tmp_write(&t, tables[0], 0600);
    struct auth *a = NULL;
    ck_assert_int_eq(auth_load(t.path, &a, NULL), 0);
    atomic_bool stop;
    atomic_init(&stop, false);
    pthread_t th[4];
    struct reader_arg args[4];
    for (int i = 0; i < 4; i++) {
        args[i] = (struct reader_arg){.a = a, .stop = &stop};
        ck_assert_int_eq(pthread_create(&th[i], NULL, reader, &args[i]), 0);
    }
    for (int i = 0; i < 200; i++) {
        tmp_write(&t, tables[i % 2], 0600);
        ck_assert_int_eq(auth_reload(a, t.path, NULL), 0);
    }
    atomic_store(&stop, true);
    unsigned long checks = 0;
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        ck_assert_uint_eq(args[i].bad, 0);
        checks += args[i].checks;
    }
    ck_assert_uint_gt(checks, 0);
    auth_free(a);
    tmp_remove(&t);
}
END_TEST

#define N(a) ((int)(sizeof(a) / sizeof((a)[0])))

Suite *suite_auth(void)
{
    Suite *s = suite_create("auth");

    TCase *tc = tcase_create("crypto");
    tcase_set_timeout(tc, UNIT_TIMEOUT_LOGIC);
    tcase_add_loop_test(tc, hash_known_vectors, 0, N(vectors));
    tcase_add_test(tc, hash_million_a);
    tcase_add_test(tc, digest_equal_same);
    tcase_add_loop_test(tc, digest_equal_each_bit, 0, AUTH_DIGEST_LEN * 8);
    tcase_add_test(tc, digest_equal_all_differ);
    suite_add_tcase(s, tc);

    tc = tcase_create("keys_file");
    tcase_set_timeout(tc, UNIT_TIMEOUT_LOGIC);
    tcase_add_loop_test(tc, scopes_parse_table, 0, N(scopes));
    tcase_add_test(tc, scope_for_routes);
    tcase_add_test(tc, keys_file_parses);
    tcase_add_loop_test(tc, keys_file_good_table, 0, N(good_files));
    tcase_add_loop_test(tc, keys_file_bad_table, 0, N(bad_files));
    tcase_add_test(tc, keys_file_every_error);
    tcase_add_test(tc, keys_file_nul_byte);
    tcase_add_test(tc, keys_file_long_line);
    tcase_add_test(tc, keys_file_key_cap);
    tcase_add_test(tc, keys_file_errors_capped);
    tcase_add_test(tc, keys_file_error_hides_hash_field);
    tcase_add_test(tc, errors_print_format);
    suite_add_tcase(s, tc);

    tc = tcase_create("decisions");
    tcase_set_timeout(tc, UNIT_TIMEOUT_LOGIC);
    tcase_add_loop_test(tc, decisions_table, 0, N(decisions));
    tcase_add_test(tc, key_length_bounds);
    tcase_add_test(tc, client_out_truncated);
    tcase_add_test(tc, empty_table_refuses);
    tcase_add_loop_test(tc, match_anywhere_in_table, 0, 2);
    suite_add_tcase(s, tc);

    tc = tcase_create("reload");
    tcase_set_timeout(tc, UNIT_TIMEOUT_IO);
    tcase_add_test(tc, load_from_file);
    tcase_add_test(tc, load_missing_file);
    tcase_add_test(tc, load_refuses_world_writable);
    tcase_add_test(tc, load_refuses_directory);
    tcase_add_test(tc, reload_swaps_and_keeps_old_on_error);
    tcase_add_test(tc, reload_while_authorizing);
    suite_add_tcase(s, tc);
    return s;
}
