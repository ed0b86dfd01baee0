/*
 * test_webhook.c — Standard Webhooks signatures: the spec's test vector,
 * rotation (several secrets, file order), what the signature covers, the
 * output buffer's bounds, concurrent signing, and the secrets file (comments,
 * blanks, every error with its line, no secret echoed in an error).
 *
 * Expected signatures other than the spec's were computed independently with
 * Python's standard library:
 *
 *   python3 -c 'import hmac,hashlib,base64; k=base64.b64decode(SECRET[6:]);
 *     print("v1,"+base64.b64encode(hmac.new(k, ID+b"."+TS+b"."+BODY,
 *     hashlib.sha256).digest()).decode())'
 */
#include <check.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "timeouts.h"
#include "tmpdir.h"
#include "webhook.h"

Suite *suite_webhook(void);

#define assert_contains(s, part)                                                                   \
    ck_assert_msg(strstr((s), (part)) != NULL, "\"%s\" lacks \"%s\"", (s), (part))

/* The vector from the Standard Webhooks specification. */
#define SECRET_A "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
#define MSG_ID "msg_p5jXN8AQM9LWM0D4loKWxJek"
#define TS 1614265330
#define BODY "{\"test\": 2432232314}"
#define SIG_A "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="

/* Bytes 1..32; SIG_B is its signature of the spec's message (Python, above). */
#define SECRET_B "whsec_AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA="
#define SIG_B "v1,frM35V2Z51bxs4v81I6TpLnscXkhXtKLP/7WPYVyj3A="
/* A 1-byte key ("k"), allowed though Standard Webhooks asks for 24 or more (Python). */
#define SECRET_SHORT "whsec_aw=="
#define SIG_SHORT "v1,hIlYWEFoquKXClsbVflwuyyPfLnAk1q2cBDzzeNfo+Q="
/* Bytes 1..64: the longest key; SIG_64 its signature of the spec's message (Python). */
#define SECRET_64                                                                                  \
    "whsec_AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyAhIiMkJSYnKCkqKywtLi8wMTIzNDU2Nzg5Ojs8"       \
    "PT4/QA=="
#define SIG_64 "v1,9iMOt2oYm01xd/Y0+KjCQsB5vQxtWhDwsRVTzyoajPo="
/* Bytes 1..65 and 1..67. */
#define SECRET_65                                                                                  \
    "whsec_AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyAhIiMkJSYnKCkqKywtLi8wMTIzNDU2Nzg5Ojs8"       \
    "PT4/QEE="
#define SECRET_67                                                                                  \
    "whsec_AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyAhIiMkJSYnKCkqKywtLi8wMTIzNDU2Nzg5Ojs8"       \
    "PT4/QEFCQw=="

static char dir[512];
static char path[600];

static void setup(void)
{
    tmpdir_make(dir, sizeof(dir), NULL, "orderd-test-webhook");
    snprintf(path, sizeof(path), "%s/secrets", dir);
}

static void teardown(void) { tmpdir_remove(dir); }

static void write_file(const char *text, size_t len)
{
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(text, 1, len, f), len);
    ck_assert_int_eq(fclose(f), 0);
}

static struct webhook_secrets *load_text(const char *text)
{
    struct webhook_secrets *s = NULL;
    char err[256] = "unset";
    write_file(text, strlen(text));
    int rc = webhook_secrets_load(path, &s, err, sizeof(err));
    ck_assert_msg(rc == 0, "rc %d: %s", rc, err);
    ck_assert_ptr_nonnull(s);
    return s;
}

static void sign_ok(const struct webhook_secrets *s, const char *id, int64_t ts, const char *body,
                    size_t len, char *out, size_t size)
{
    int rc = webhook_sign(s, id, ts, body, len, out, size);
    ck_assert_msg(rc == 0, "webhook_sign: %d", rc);
}

/* ---- signing ------------------------------------------------------------------ */

START_TEST(spec_vector)
{
    struct webhook_secrets *s = load_text(SECRET_A "\n");
    char out[WEBHOOK_SIGNATURE_MAX];
    ck_assert_uint_eq(webhook_secrets_count(s), 1);
    sign_ok(s, MSG_ID, TS, BODY, strlen(BODY), out, sizeof(out));
    ck_assert_str_eq(out, SIG_A);
    webhook_secrets_free(s);
}
END_TEST

START_TEST(two_secrets_in_file_order)
{
    char out[WEBHOOK_SIGNATURE_MAX];
    struct webhook_secrets *s = load_text(SECRET_A "\n" SECRET_B "\n");
    ck_assert_uint_eq(webhook_secrets_count(s), 2);
    sign_ok(s, MSG_ID, TS, BODY, strlen(BODY), out, sizeof(out));
    ck_assert_str_eq(out, SIG_A " " SIG_B);
    webhook_secrets_free(s);

    s = load_text(SECRET_B "\n" SECRET_A "\n");
    sign_ok(s, MSG_ID, TS, BODY, strlen(BODY), out, sizeof(out));
    ck_assert_str_eq(out, SIG_B " " SIG_A);
    webhook_secrets_free(s);
}
END_TEST

START_TEST(key_lengths_1_and_64)
{
    char out[WEBHOOK_SIGNATURE_MAX];
    struct webhook_secrets *s = load_text(SECRET_SHORT "\n" SECRET_64 "\n");
    ck_assert_uint_eq(webhook_secrets_count(s), 2);
    sign_ok(s, MSG_ID, TS, BODY, strlen(BODY), out, sizeof(out));
    ck_assert_str_eq(out, SIG_SHORT " " SIG_64);
    webhook_secrets_free(s);
}
END_TEST

/* The body is bytes[0..len), not a C string; an empty body may be NULL; the timestamp
 * is 64-bit (Python vectors). */
START_TEST(body_and_timestamp_as_given)
{
    char out[WEBHOOK_SIGNATURE_MAX];
    struct webhook_secrets *s = load_text(SECRET_A);
    sign_ok(s, MSG_ID, TS, "a\0b", 3, out, sizeof(out));
    ck_assert_str_eq(out, "v1,OCz/PmGBdMa0Av1gDdWl33myIh8dApC6qlZDpRISdA8=");
    sign_ok(s, MSG_ID, 0, NULL, 0, out, sizeof(out));
    ck_assert_str_eq(out, "v1,JPVN6l7QGXfeEJYJO+qvMW9fbZ/pqQMlD6P0EQsfyhE=");
    /* a timestamp past 2^32 (year 2481) is written in full */
    sign_ok(s, MSG_ID, (int64_t)TS * 10, BODY, strlen(BODY), out, sizeof(out));
    ck_assert_str_eq(out, "v1,2E50o44XuhG3f23nYO3Rt5HzKja5Qk9oKclphIair3Q=");
    webhook_secrets_free(s);
}
END_TEST

static const struct {
    const char *id;
    int64_t ts;
    const char *body;
    size_t len;
} changed[] = {
    {"msg_p5jXN8AQM9LWM0D4loKWxJeK", TS, BODY, sizeof(BODY) - 1},
    {"msg_p5jXN8AQM9LWM0D4loKWxJe", TS, BODY, sizeof(BODY) - 1},
    {MSG_ID, TS + 1, BODY, sizeof(BODY) - 1},
    {MSG_ID, (int64_t)TS * 10, BODY, sizeof(BODY) - 1},
    {MSG_ID, TS, "{\"test\": 2432232315}", sizeof(BODY) - 1},
    {MSG_ID, TS, BODY, sizeof(BODY) - 2},
    {MSG_ID, TS, BODY "\n", sizeof(BODY)},
};

START_TEST(any_change_changes_signature)
{
    char out[WEBHOOK_SIGNATURE_MAX];
    struct webhook_secrets *s = load_text(SECRET_A);
    sign_ok(s, changed[_i].id, changed[_i].ts, changed[_i].body, changed[_i].len, out, sizeof(out));
    ck_assert_uint_eq(strlen(out), WEBHOOK_SIG_LEN);
    ck_assert_int_eq(strncmp(out, "v1,", 3), 0);
    ck_assert_str_ne(out, SIG_A);
    webhook_secrets_free(s);
}
END_TEST

START_TEST(max_secrets_fill_signature_max)
{
    char text[2048] = "", expect[WEBHOOK_SIGNATURE_MAX] = "", out[WEBHOOK_SIGNATURE_MAX];
    for (int i = 0; i < WEBHOOK_SECRETS_MAX; i++) {
        strcat(text, i % 2 ? SECRET_B "\n" : SECRET_A "\n");
        strcat(expect, i == 0 ? "" : " ");
        strcat(expect, i % 2 ? SIG_B : SIG_A);
    }
    struct webhook_secrets *s = load_text(text);
    ck_assert_uint_eq(webhook_secrets_count(s), WEBHOOK_SECRETS_MAX);
    sign_ok(s, MSG_ID, TS, BODY, strlen(BODY), out, sizeof(out));
    ck_assert_str_eq(out, expect);
    ck_assert_uint_eq(strlen(out) + 1, WEBHOOK_SIGNATURE_MAX);
    webhook_secrets_free(s);
}
END_TEST

/* Every size short of the need is -ENOSPC and writes nothing past out_size. */
START_TEST(small_buffer_is_enospc)
{
    struct webhook_secrets *s = load_text(SECRET_A "\n" SECRET_B "\n");
    size_t need = sizeof(SIG_A " " SIG_B);
    char buf[WEBHOOK_SIGNATURE_MAX + 16];
    for (size_t size = 0; size < need; size++) {
        memset(buf, 'X', sizeof(buf));
        ck_assert_int_eq(webhook_sign(s, MSG_ID, TS, BODY, strlen(BODY), buf, size), -ENOSPC);
        if (size > 0)
            ck_assert_int_eq(buf[0], '\0');
        for (size_t i = size > 0 ? 1 : 0; i < sizeof(buf); i++)
            ck_assert_msg(buf[i] == 'X', "size %zu: byte %zu written", size, i);
    }
    /* exactly the need, on the heap so that ASan sees one byte too many */
    char *exact = malloc(need);
    ck_assert_ptr_nonnull(exact);
    sign_ok(s, MSG_ID, TS, BODY, strlen(BODY), exact, need);
    ck_assert_str_eq(exact, SIG_A " " SIG_B);
    free(exact);
    webhook_secrets_free(s);
}
END_TEST

START_TEST(bad_arguments_are_einval)
{
    struct webhook_secrets *s = load_text(SECRET_A);
    char out[WEBHOOK_SIGNATURE_MAX];
    const size_t n = strlen(BODY), size = sizeof(out);
    ck_assert_int_eq(webhook_sign(NULL, MSG_ID, TS, BODY, n, out, size), -EINVAL);
    ck_assert_int_eq(webhook_sign(s, NULL, TS, BODY, n, out, size), -EINVAL);
    ck_assert_int_eq(webhook_sign(s, "", TS, BODY, n, out, size), -EINVAL);
    ck_assert_int_eq(webhook_sign(s, MSG_ID, -1, BODY, n, out, size), -EINVAL);
    ck_assert_int_eq(webhook_sign(s, MSG_ID, TS, NULL, 1, out, size), -EINVAL);
    ck_assert_int_eq(webhook_sign(s, MSG_ID, TS, BODY, n, NULL, size), -EINVAL);
    strcpy(out, "stale");
    ck_assert_int_eq(webhook_sign(s, MSG_ID, -5, BODY, n, out, size), -EINVAL);
    ck_assert_str_eq(out, "");
    ck_assert_uint_eq(webhook_secrets_count(NULL), 0);
    webhook_secrets_free(NULL);
    webhook_secrets_free(s);
}
END_TEST

#define SIGNERS 4
#define SIGNS_EACH 300

static void *signer(void *arg)
{
    const struct webhook_secrets *s = arg;
    char out[WEBHOOK_SIGNATURE_MAX];
    for (int i = 0; i < SIGNS_EACH; i++) {
        if (webhook_sign(s, MSG_ID, TS, BODY, strlen(BODY), out, sizeof(out)) != 0 ||
            strcmp(out, SIG_A " " SIG_B) != 0)
            return (void *)1;
    }
    return NULL;
}

/* One set, several threads at once (TSan runs the unit suites). */
START_TEST(threads_sign_at_once)
{
    struct webhook_secrets *s = load_text(SECRET_A "\n" SECRET_B "\n");
    pthread_t t[SIGNERS];
    for (int i = 0; i < SIGNERS; i++)
        ck_assert_int_eq(pthread_create(&t[i], NULL, signer, s), 0);
    for (int i = 0; i < SIGNERS; i++) {
        void *bad = (void *)1;
        ck_assert_int_eq(pthread_join(t[i], &bad), 0);
        ck_assert_ptr_null(bad);
    }
    webhook_secrets_free(s);
}
END_TEST

/* ---- the secrets file ------------------------------------------------------------ */

START_TEST(comments_blanks_and_whitespace)
{
    char out[WEBHOOK_SIGNATURE_MAX];
    struct webhook_secrets *s = load_text("# webhook secrets, newest first\n"
                                          "\n"
                                          "   \t\r\n"
                                          "  \t" SECRET_A " \t\r\n"
                                          "   # " SECRET_SHORT " (retired)\n"
                                          "#" SECRET_64 "\n"
                                          "\t" SECRET_B); /* no final newline */
    ck_assert_uint_eq(webhook_secrets_count(s), 2);
    sign_ok(s, MSG_ID, TS, BODY, strlen(BODY), out, sizeof(out));
    ck_assert_str_eq(out, SIG_A " " SIG_B);
    webhook_secrets_free(s);
}
END_TEST

#define NINE_SECRETS                                                                               \
    "# rotation\n" SECRET_A "\n" SECRET_B "\n" SECRET_A "\n" SECRET_B "\n" SECRET_A "\n" SECRET_B  \
    "\n" SECRET_A "\n" SECRET_B "\n" SECRET_A "\n"

static const struct {
    const char *text;
    int rc;
    const char *message; /* the whole error text */
} bad_files[] = {
    {"", -EINVAL, "no secret in the file (one whsec_... a line is needed)"},
    {"\n  \n# only comments\n#" SECRET_A "\n", -EINVAL,
     "no secret in the file (one whsec_... a line is needed)"},
    {SECRET_A "\nMfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\n", -EINVAL,
     "line 2: a secret must start with whsec_"},
    {"\n\n  WHSEC_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\n", -EINVAL,
     "line 3: a secret must start with whsec_"},
    {"whsec", -EINVAL, "line 1: a secret must start with whsec_"},
    {"whsec_MfKQ9r8GKYqr*wjUPD8ILPZIo2LaLaSw", -EINVAL,
     "line 1: character 19 of the secret is not base64 (A-Z a-z 0-9 + / =)"},
    {"whsec_MfKQ9r8G KYqrTwjUPD8ILPZIo2LaLaSw", -EINVAL,
     "line 1: character 15 of the secret is not base64 (A-Z a-z 0-9 + / =)"},
    {"whsec_MfKQ9r8GKYqrTwjUPD8ILPZ-o2LaLa_w", -EINVAL, /* URL-safe alphabet */
     "line 1: character 30 of the secret is not base64 (A-Z a-z 0-9 + / =)"},
    {SECRET_A " # old\n", -EINVAL,
     "line 1: character 39 of the secret is not base64 (A-Z a-z 0-9 + / =)"},
    {"#\n" SECRET_A "\n\n#\n" SECRET_B "\nwhsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaS\n", -EINVAL,
     "line 6: the key after whsec_ is not valid base64 (standard alphabet, with padding)"},
    {"whsec_MfKQ=r8GKYqrTwjUPD8ILPZIo2LaLaSw", -EINVAL,
     "line 1: the key after whsec_ is not valid base64 (standard alphabet, with padding)"},
    {"whsec_", -EINVAL, "line 1: no key after whsec_"},
    {"  whsec_  \n", -EINVAL, "line 1: no key after whsec_"},
    {SECRET_65, -EINVAL, "line 1: the key must decode to 1 to 64 bytes, not 65"},
    {SECRET_67, -EINVAL, "line 1: the key is longer than 64 bytes"},
    {NINE_SECRETS, -EINVAL, "line 10: more than 8 secrets"},
};

/* No word of the file of 8 characters or more (a secret or part of one) is in text. */
static void assert_nothing_echoed(const char *file, const char *text)
{
    const char *p = file;
    while (*p != '\0') {
        size_t skip = strspn(p, " \t\r\n#"), n = strcspn(p + skip, " \t\r\n#");
        p += skip;
        if (n >= 8) {
            char word[256];
            ck_assert_uint_lt(n, sizeof(word));
            memcpy(word, p, n);
            word[n] = '\0';
            ck_assert_msg(strstr(text, word) == NULL, "error \"%s\" echoes \"%s\"", text, word);
        }
        p += n;
    }
}

START_TEST(bad_file_names_line)
{
    struct webhook_secrets *s = (struct webhook_secrets *)&s;
    char err[256] = "unset";
    write_file(bad_files[_i].text, strlen(bad_files[_i].text));
    int rc = webhook_secrets_load(path, &s, err, sizeof(err));
    ck_assert_msg(rc == bad_files[_i].rc, "rc %d: %s", rc, err);
    ck_assert_ptr_null(s);
    ck_assert_str_eq(err, bad_files[_i].message);
    assert_nothing_echoed(bad_files[_i].text, err);
}
END_TEST

START_TEST(missing_file)
{
    struct webhook_secrets *s = NULL;
    char err[256];
    ck_assert_int_eq(webhook_secrets_load(path, &s, err, sizeof(err)), -ENOENT);
    ck_assert_ptr_null(s);
    ck_assert_str_eq(err, "cannot open: No such file or directory");
}
END_TEST

START_TEST(directory_is_refused)
{
    struct webhook_secrets *s = NULL;
    char err[256];
    ck_assert_int_eq(mkdir(path, 0700), 0);
    ck_assert_int_eq(webhook_secrets_load(path, &s, err, sizeof(err)), -EINVAL);
    ck_assert_ptr_null(s);
    ck_assert_str_eq(err, "not a regular file");
}
END_TEST

/* A file of exactly WEBHOOK_FILE_BYTES_MAX loads; one byte more does not. */
START_TEST(file_size_bound)
{
    char *text = malloc(WEBHOOK_FILE_BYTES_MAX + 2);
    ck_assert_ptr_nonnull(text);
    memset(text, '#', WEBHOOK_FILE_BYTES_MAX + 1);
    memcpy(text, SECRET_A "\n", sizeof(SECRET_A));
    text[WEBHOOK_FILE_BYTES_MAX + 1] = '\0';

    struct webhook_secrets *s = NULL;
    char err[256] = "";
    write_file(text, WEBHOOK_FILE_BYTES_MAX);
    ck_assert_msg(webhook_secrets_load(path, &s, err, sizeof(err)) == 0, "%s", err);
    ck_assert_uint_eq(webhook_secrets_count(s), 1);
    webhook_secrets_free(s);

    s = NULL;
    write_file(text, WEBHOOK_FILE_BYTES_MAX + 1);
    ck_assert_int_eq(webhook_secrets_load(path, &s, err, sizeof(err)), -EFBIG);
    ck_assert_ptr_null(s);
    ck_assert_str_eq(err, "larger than 65536 bytes");
    free(text);
}
END_TEST

/* error may be NULL with size 0; a short buffer gets the start of the line. */
START_TEST(error_buffer_optional_and_bounded)
{
    struct webhook_secrets *s = NULL;
    char err[8];
    write_file("whsec_!", 7);
    ck_assert_int_eq(webhook_secrets_load(path, &s, NULL, 0), -EINVAL);
    ck_assert_ptr_null(s);
    ck_assert_int_eq(webhook_secrets_load(path, &s, err, sizeof(err)), -EINVAL);
    ck_assert_str_eq(err, "line 1:");
}
END_TEST

Suite *suite_webhook(void)
{
    Suite *s = suite_create("webhook");

    TCase *tc = tcase_create("sign");
    tcase_set_timeout(tc, UNIT_TIMEOUT_LOGIC);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, spec_vector);
    tcase_add_test(tc, two_secrets_in_file_order);
    tcase_add_test(tc, key_lengths_1_and_64);
    tcase_add_test(tc, body_and_timestamp_as_given);
    tcase_add_loop_test(tc, any_change_changes_signature, 0,
                        (int)(sizeof(changed) / sizeof(changed[0])));
    tcase_add_test(tc, max_secrets_fill_signature_max);
    tcase_add_test(tc, small_buffer_is_enospc);
    tcase_add_test(tc, bad_arguments_are_einval);
    tcase_add_test(tc, threads_sign_at_once);
    suite_add_tcase(s, tc);

    tc = tcase_create("secrets_file");
    tcase_set_timeout(tc, UNIT_TIMEOUT_LOGIC);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, comments_blanks_and_whitespace);
    tcase_add_loop_test(tc, bad_file_names_line, 0,
                        (int)(sizeof(bad_files) / sizeof(bad_files[0])));
    tcase_add_test(tc, missing_file);
    tcase_add_test(tc, directory_is_refused);
    tcase_add_test(tc, file_size_bound);
    tcase_add_test(tc, error_buffer_optional_and_bounded);
    suite_add_tcase(s, tc);
    return s;
}
