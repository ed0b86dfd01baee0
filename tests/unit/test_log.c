/*
 * test_log.c — log lines as they reach fd 2: JSON that parses, escaping of
 * whatever a client sent, level filtering, text form, truncation, parsing of
 * the config words, and whole lines under concurrent writers.
 *
 * fd 2 is captured with a pipe + dup2 inside each test and restored after.
 */
#include <check.h>
#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <regex.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "timeouts.h"

Suite *suite_log(void);

#define LINE_MAX_BYTES 8192
#define CAPTURE_MAX (8 << 20)

/* ---- capture of fd 2 ------------------------------------------------------ */

struct capture {
    int saved_fd2;
    int rd;
    char *buf;
    size_t len;
};

static void capture_begin(struct capture *c)
{
    int p[2];

    ck_assert_int_eq(pipe(p), 0);
    c->saved_fd2 = dup(STDERR_FILENO);
    ck_assert_int_ge(c->saved_fd2, 0);
    ck_assert_int_eq(dup2(p[1], STDERR_FILENO), STDERR_FILENO);
    close(p[1]);
    c->rd = p[0];
    c->buf = NULL;
    c->len = 0;
}

/* Reads everything written so far; the write end closes when fd 2 is restored. */
static void capture_drain(struct capture *c)
{
    c->buf = malloc(CAPTURE_MAX + 1);
    ck_assert_ptr_nonnull(c->buf);
    for (;;) {
        ssize_t n = read(c->rd, c->buf + c->len, CAPTURE_MAX - c->len);
        if (n < 0 && errno == EINTR)
            continue;
        ck_assert_int_ge(n, 0);
        if (n == 0)
            break;
        c->len += (size_t)n;
        ck_assert_uint_lt(c->len, CAPTURE_MAX);
    }
    c->buf[c->len] = '\0';
}

static void capture_end(struct capture *c)
{
    ck_assert_int_eq(dup2(c->saved_fd2, STDERR_FILENO), STDERR_FILENO);
    close(c->saved_fd2);
    capture_drain(c);
    close(c->rd);
}

static void capture_free(struct capture *c)
{
    free(c->buf);
    c->buf = NULL;
}

/* Counts '\n' in s. */
static int count_lines(const char *s, size_t len)
{
    int n = 0;
    for (size_t i = 0; i < len; i++)
        n += s[i] == '\n';
    return n;
}

/* Index of the first byte below 0x20 in s[0..len), or len when there is none. */
static size_t first_control_byte(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)s[i] < 0x20)
            return i;
    return len;
}

/* Asserts line is one whole line of valid JSON (one object, no raw control bytes). */
static json_t *parse_line(const char *line, size_t len)
{
    json_error_t err;

    ck_assert_uint_gt(len, 0);
    ck_assert_uint_le(len, LINE_MAX_BYTES);
    ck_assert_int_eq(line[len - 1], '\n');
    /* one assertion per line, not per byte: under CK_FORK each ck_assert is a
     * write(2) to the parent, and a per-byte check made the concurrent-writers
     * case run past its timeout under ASan on 2 cores */
    size_t bad = first_control_byte(line, len - 1);
    if (bad < len - 1)
        ck_abort_msg("control byte 0x%02x at %zu: %.*s", (unsigned char)line[bad], bad,
                     (int)len, line);
    json_t *j = json_loadb(line, len, JSON_REJECT_DUPLICATES, &err);
    if (j == NULL)
        ck_abort_msg("not JSON (%s at %d): %.*s", err.text, err.position, (int)len, line);
    ck_assert(json_is_object(j));
    return j;
}

static const char *jstr(json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

static void assert_timestamp(const char *ts)
{
    regex_t re;
    struct tm tm;

    ck_assert_ptr_nonnull(ts);
    ck_assert_int_eq(regcomp(&re, "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3}Z$",
                             REG_EXTENDED | REG_NOSUB),
                     0);
    int rc = regexec(&re, ts, 0, NULL, 0);
    regfree(&re);
    if (rc != 0)
        ck_abort_msg("bad timestamp: %s", ts);
    memset(&tm, 0, sizeof(tm));
    ck_assert_ptr_nonnull(strptime(ts, "%Y-%m-%dT%H:%M:%S", &tm));
    long skew = (long)(timegm(&tm) - time(NULL));
    ck_assert_int_le(labs(skew), 5);
}

static void teardown(void)
{
    log_configure(LOG_LEVEL_INFO, LOG_FORMAT_JSON);
}

/* ---- JSON form ------------------------------------------------------------ */

START_TEST(test_defaults_info_json)
{
    struct capture c;

    ck_assert_int_eq(log_current_level(), LOG_LEVEL_INFO);
    capture_begin(&c);
    log_debug(NULL, "not shown");
    log_info(NULL, "shown");
    capture_end(&c);
    ck_assert_int_eq(count_lines(c.buf, c.len), 1);
    json_t *j = parse_line(c.buf, c.len);
    ck_assert_str_eq(jstr(j, "msg"), "shown");
    json_decref(j);
    capture_free(&c);
}
END_TEST

START_TEST(test_json_fields)
{
    struct capture c;
    struct log_ctx ctx = {"req-1", "4bf92f3577b34da6a3ce929d0e0e4736", "ord-9", "00f067aa0ba902b7"};

    capture_begin(&c);
    log_warn(&ctx, "order %s took %d ms", "ord-9", 42);
    capture_end(&c);
    json_t *j = parse_line(c.buf, c.len);
    assert_timestamp(jstr(j, "time"));
    ck_assert_str_eq(jstr(j, "level"), "warn");
    ck_assert_str_eq(jstr(j, "msg"), "order ord-9 took 42 ms");
    ck_assert_str_eq(jstr(j, "request_id"), "req-1");
    ck_assert_str_eq(jstr(j, "trace_id"), "4bf92f3577b34da6a3ce929d0e0e4736");
    ck_assert_str_eq(jstr(j, "order_id"), "ord-9");
    ck_assert_str_eq(jstr(j, "span_id"), "00f067aa0ba902b7");
    ck_assert_int_eq(json_object_size(j), 7);
    /* the documented key order, for humans reading the raw line */
    ck_assert_int_eq(strncmp(c.buf, "{\"time\":\"", 9), 0);
    ck_assert_ptr_nonnull(strstr(c.buf, "\",\"level\":\"warn\",\"msg\":\""));
    ck_assert_ptr_nonnull(strstr(c.buf, "\"trace_id\":\"4bf92f3577b34da6a3ce929d0e0e4736\","
                                        "\"span_id\":\"00f067aa0ba902b7\",\"order_id\""));
    json_decref(j);
    capture_free(&c);
}
END_TEST

START_TEST(test_json_context_only_when_set)
{
    struct capture c;
    struct log_ctx ctx = {NULL, "t-1", NULL, NULL};

    capture_begin(&c);
    log_error(&ctx, "a");
    log_error(NULL, "b");
    capture_end(&c);
    ck_assert_int_eq(count_lines(c.buf, c.len), 2);
    char *nl = strchr(c.buf, '\n');
    size_t first = (size_t)(nl - c.buf) + 1;

    json_t *a = parse_line(c.buf, first);
    ck_assert_str_eq(jstr(a, "level"), "error");
    ck_assert_str_eq(jstr(a, "trace_id"), "t-1");
    ck_assert_ptr_null(json_object_get(a, "request_id"));
    ck_assert_ptr_null(json_object_get(a, "order_id"));
    ck_assert_ptr_null(json_object_get(a, "span_id"));
    ck_assert_int_eq(json_object_size(a), 4);
    json_decref(a);

    json_t *b = parse_line(c.buf + first, c.len - first);
    ck_assert_str_eq(jstr(b, "msg"), "b");
    ck_assert_int_eq(json_object_size(b), 3);
    json_decref(b);
    capture_free(&c);
}
END_TEST

/* What a client might send, and what the JSON "msg" must decode to. */
static const struct {
    const char *in;
    const char *want;   /* decoded msg */
    const char *raw;    /* must appear in the raw line, or NULL */
} escape_cases[] = {
    {"say \"hi\"", "say \"hi\"", "say \\\"hi\\\""},
    {"back\\slash", "back\\slash", "back\\\\slash"},
    {"two\nlines\r\n", "two\nlines\r\n", "two\\nlines\\r\\n"},
    {"tab\there", "tab\there", "tab\\there"},
    {"bell\x01\x1f\x7f", "bell\x01\x1f\x7f", "bell\\u0001\\u001f\\u007f"},
    {"\b\f", "\b\f", "\\b\\f"},
    {"caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80", "caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80", NULL},
    {"bad\xFF", "bad\xEF\xBF\xBD", NULL},
    {"a\x80" "b", "a\xEF\xBF\xBD" "b", NULL},
    {"over\xC0\xAF", "over\xEF\xBF\xBD\xEF\xBF\xBD", NULL},
    {"surr\xED\xA0\x80", "surr\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD", NULL},
    {"cut\xE2\x82", "cut\xEF\xBF\xBD", NULL},
    {"cut\xE2\x82X", "cut\xEF\xBF\xBDX", NULL},
    {"big\xF4\x90\x80\x80", "big\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD", NULL},
    {"\xF5\xF8\xFE", "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD", NULL},
    {"emoji cut \xF0\x9F\x98", "emoji cut \xEF\xBF\xBD", NULL},
    {"</script>\xE2\x80\xA8", "</script>\xE2\x80\xA8", NULL},
};

START_TEST(test_json_escaping)
{
    struct capture c;

    capture_begin(&c);
    log_info(NULL, "%s", escape_cases[_i].in);
    capture_end(&c);
    ck_assert_int_eq(count_lines(c.buf, c.len), 1);
    json_t *j = parse_line(c.buf, c.len);
    ck_assert_str_eq(jstr(j, "msg"), escape_cases[_i].want);
    if (escape_cases[_i].raw != NULL && strstr(c.buf, escape_cases[_i].raw) == NULL)
        ck_abort_msg("want %s in %s", escape_cases[_i].raw, c.buf);
    json_decref(j);
    capture_free(&c);
}
END_TEST

START_TEST(test_json_context_escaped)
{
    struct capture c;
    struct log_ctx ctx = {"r\"1\n", "t\\1", "o\xFF", NULL};

    capture_begin(&c);
    log_info(&ctx, "x");
    capture_end(&c);
    json_t *j = parse_line(c.buf, c.len);
    ck_assert_str_eq(jstr(j, "request_id"), "r\"1\n");
    ck_assert_str_eq(jstr(j, "trace_id"), "t\\1");
    ck_assert_str_eq(jstr(j, "order_id"), "o\xEF\xBF\xBD");
    json_decref(j);
    capture_free(&c);
}
END_TEST

/* ---- levels ----------------------------------------------------------------- */

/* _i = configured * 4 + written: printed iff written >= configured. */
START_TEST(test_level_filter)
{
    enum log_level set = (enum log_level)(_i / 4), wrote = (enum log_level)(_i % 4);
    struct capture c;

    log_configure(set, LOG_FORMAT_JSON);
    ck_assert_int_eq(log_current_level(), set);
    capture_begin(&c);
    log_write(wrote, NULL, "level %d", (int)wrote);
    capture_end(&c);
    if (wrote >= set) {
        ck_assert_int_eq(count_lines(c.buf, c.len), 1);
        json_t *j = parse_line(c.buf, c.len);
        ck_assert_str_eq(jstr(j, "level"), log_level_name(wrote));
        json_decref(j);
    } else {
        ck_assert_uint_eq(c.len, 0);
    }
    capture_free(&c);
}
END_TEST

START_TEST(test_configure_live_and_invalid_ignored)
{
    struct capture c;

    capture_begin(&c);
    log_configure(LOG_LEVEL_ERROR, LOG_FORMAT_JSON);
    log_warn(NULL, "hidden");
    log_configure(LOG_LEVEL_DEBUG, LOG_FORMAT_JSON);
    log_debug(NULL, "visible");
    log_configure((enum log_level)17, (enum log_format)9);
    log_debug(NULL, "still json");
    capture_end(&c);
    ck_assert_int_eq(log_current_level(), LOG_LEVEL_DEBUG);
    ck_assert_int_eq(count_lines(c.buf, c.len), 2);
    ck_assert_ptr_null(strstr(c.buf, "hidden"));
    ck_assert_ptr_nonnull(strstr(c.buf, "\"msg\":\"still json\""));
    capture_free(&c);
}
END_TEST

START_TEST(test_errno_preserved)
{
    struct capture c;

    capture_begin(&c);
    errno = ENOSPC;
    log_error(NULL, "write failed: %s", strerror(errno));
    ck_assert_int_eq(errno, ENOSPC);
    capture_end(&c);
    capture_free(&c);
}
END_TEST

/* ---- text form -------------------------------------------------------------- */

START_TEST(test_text_format)
{
    struct capture c;
    struct log_ctx ctx = {"r1", "t1", "o1", "s1"};
    char ts[32];

    log_configure(LOG_LEVEL_INFO, LOG_FORMAT_TEXT);
    capture_begin(&c);
    log_warn(&ctx, "disk %s", "full");
    capture_end(&c);
    ck_assert_uint_gt(c.len, 25);
    memcpy(ts, c.buf, 24);
    ts[24] = '\0';
    assert_timestamp(ts);
    ck_assert_str_eq(c.buf + 24,
                     " WARN disk full request_id=r1 trace_id=t1 span_id=s1 order_id=o1\n");
    capture_free(&c);
}
END_TEST

START_TEST(test_text_format_one_line)
{
    struct capture c;
    struct log_ctx ctx = {NULL, NULL, "o\n2", NULL};

    log_configure(LOG_LEVEL_DEBUG, LOG_FORMAT_TEXT);
    capture_begin(&c);
    log_debug(&ctx, "a\nb\x01 \xFF");
    log_error(NULL, "plain");
    capture_end(&c);
    ck_assert_int_eq(count_lines(c.buf, c.len), 2);
    char *nl = strchr(c.buf, '\n');
    ck_assert_str_eq(nl + 1 + 24, " ERROR plain\n");
    nl[1] = '\0';
    ck_assert_str_eq(c.buf + 24, " DEBUG a\\nb\\u0001 \xEF\xBF\xBD order_id=o\\n2\n");
    capture_free(&c);
}
END_TEST

/* ---- truncation --------------------------------------------------------------- */

/* Builds n copies of unit into a heap string. */
static char *repeat(const char *unit, size_t n)
{
    size_t u = strlen(unit);
    char *s = malloc(u * n + 1);

    ck_assert_ptr_nonnull(s);
    for (size_t i = 0; i < n; i++)
        memcpy(s + i * u, unit, u);
    s[u * n] = '\0';
    return s;
}

static const struct {
    const char *unit; /* repeated to make the message */
    size_t times;
} long_cases[] = {
    {"a", 20000},          /* cut by the formatting buffer */
    {"\x01", 5000},        /* each byte becomes \u0001: cut by the line */
    {"\"", 7000},          /* each byte becomes \" */
    {"\xC3\xA9", 5000},    /* two-byte characters across the cut */
    {"\xF0\x9F\x98\x80", 3000}, /* four-byte characters across the cut */
    {"\xFF", 5000},        /* each byte becomes U+FFFD (3 bytes) */
    {"ab\xE2\x82", 3000},  /* invalid sequences everywhere */
};

START_TEST(test_long_message_truncated)
{
    struct capture c;
    char *msg = repeat(long_cases[_i].unit, long_cases[_i].times);
    char *big = repeat("\"", 1000);
    struct log_ctx ctx = {big, "t", big, big};

    capture_begin(&c);
    log_info(NULL, "%s", msg);
    log_info(&ctx, "%s", msg);
    capture_end(&c);
    ck_assert_int_eq(count_lines(c.buf, c.len), 2);
    char *nl = strchr(c.buf, '\n');
    size_t first = (size_t)(nl - c.buf) + 1;

    json_t *j = parse_line(c.buf, first);
    const char *got = jstr(j, "msg");
    ck_assert_ptr_nonnull(got);
    size_t gl = strlen(got);
    ck_assert_uint_gt(gl, 1000);
    ck_assert_str_eq(got + gl - 3, "...");
    json_decref(j);

    json_t *k = parse_line(c.buf + first, c.len - first);
    got = jstr(k, "msg");
    ck_assert_ptr_nonnull(got);
    ck_assert_str_eq(got + strlen(got) - 3, "...");
    ck_assert_uint_eq(strlen(jstr(k, "request_id")), 128);
    ck_assert_str_eq(jstr(k, "trace_id"), "t");
    ck_assert_uint_eq(strlen(jstr(k, "span_id")), 128);
    json_decref(k);

    free(msg);
    free(big);
    capture_free(&c);
}
END_TEST

/* A cut between whole characters leaves no U+FFFD behind. */
START_TEST(test_long_utf8_cut_clean)
{
    struct capture c;
    char *msg = repeat("\xC3\xA9", 5000);

    capture_begin(&c);
    log_info(NULL, "%s", msg);
    capture_end(&c);
    json_t *j = parse_line(c.buf, c.len);
    const char *got = jstr(j, "msg");
    ck_assert_ptr_null(strstr(got, "\xEF\xBF\xBD"));
    size_t gl = strlen(got);
    ck_assert_int_eq(strncmp(got, msg, gl - 3), 0);
    json_decref(j);
    free(msg);
    capture_free(&c);
}
END_TEST

START_TEST(test_long_text_truncated)
{
    struct capture c;
    char *msg = repeat("\n", 9000);

    log_configure(LOG_LEVEL_INFO, LOG_FORMAT_TEXT);
    capture_begin(&c);
    log_info(NULL, "%s", msg);
    capture_end(&c);
    ck_assert_int_eq(count_lines(c.buf, c.len), 1);
    ck_assert_uint_le(c.len, LINE_MAX_BYTES);
    ck_assert_str_eq(c.buf + c.len - 4, "...\n");
    free(msg);
    capture_free(&c);
}
END_TEST

/* ---- concurrent writers ------------------------------------------------------- */

#define WRITERS 4
#define LINES_EACH 100

static void *writer(void *arg)
{
    char *msg = arg;
    struct log_ctx ctx = {"r", "t", "o", NULL};

    for (int i = 0; i < LINES_EACH; i++)
        log_info(&ctx, "%d %s", i, msg);
    return NULL;
}

static void *reader(void *arg)
{
    capture_drain(arg);
    return NULL;
}

/* Lines over PIPE_BUF from several threads still arrive whole. */
START_TEST(test_concurrent_lines_whole)
{
    struct capture c;
    pthread_t w[WRITERS], r;
    char *msg = repeat("x", 6000);

    capture_begin(&c);
    ck_assert_int_eq(pthread_create(&r, NULL, reader, &c), 0);
    for (int i = 0; i < WRITERS; i++)
        ck_assert_int_eq(pthread_create(&w[i], NULL, writer, msg), 0);
    for (int i = 0; i < WRITERS; i++)
        ck_assert_int_eq(pthread_join(w[i], NULL), 0);
    ck_assert_int_eq(dup2(c.saved_fd2, STDERR_FILENO), STDERR_FILENO);
    close(c.saved_fd2);
    ck_assert_int_eq(pthread_join(r, NULL), 0);
    close(c.rd);

    ck_assert_int_eq(count_lines(c.buf, c.len), WRITERS * LINES_EACH);
    size_t off = 0;
    while (off < c.len) {
        size_t n = (size_t)(strchr(c.buf + off, '\n') - (c.buf + off)) + 1;
        json_t *j = parse_line(c.buf + off, n);
        ck_assert_str_eq(jstr(j, "order_id"), "o");
        json_decref(j);
        off += n;
    }
    free(msg);
    capture_free(&c);
}
END_TEST

/* ---- parsing of config words ---------------------------------------------------- */

static const struct {
    const char *s;
    int rc;
    enum log_level want;
} level_cases[] = {
    {"debug", 0, LOG_LEVEL_DEBUG}, {"info", 0, LOG_LEVEL_INFO},
    {"warn", 0, LOG_LEVEL_WARN},   {"error", 0, LOG_LEVEL_ERROR},
    {"", -EINVAL, 0},              {"INFO", -EINVAL, 0},
    {"warning", -EINVAL, 0},       {"inf", -EINVAL, 0},
    {"debug ", -EINVAL, 0},        {NULL, -EINVAL, 0},
};

START_TEST(test_level_parse)
{
    enum log_level got = (enum log_level)99;

    ck_assert_int_eq(log_level_parse(level_cases[_i].s, &got), level_cases[_i].rc);
    if (level_cases[_i].rc == 0) {
        ck_assert_int_eq(got, level_cases[_i].want);
        ck_assert_str_eq(log_level_name(got), level_cases[_i].s);
    } else {
        ck_assert_int_eq(got, 99);
    }
}
END_TEST

static const struct {
    const char *s;
    int rc;
    enum log_format want;
} format_cases[] = {
    {"json", 0, LOG_FORMAT_JSON}, {"text", 0, LOG_FORMAT_TEXT}, {"JSON", -EINVAL, 0},
    {"", -EINVAL, 0},             {"jsonl", -EINVAL, 0},        {NULL, -EINVAL, 0},
};

START_TEST(test_format_parse)
{
    enum log_format got = (enum log_format)99;

    ck_assert_int_eq(log_format_parse(format_cases[_i].s, &got), format_cases[_i].rc);
    ck_assert_int_eq(got, format_cases[_i].rc == 0 ? format_cases[_i].want : 99);
}
END_TEST

START_TEST(test_level_name)
{
    ck_assert_str_eq(log_level_name(LOG_LEVEL_DEBUG), "debug");
    ck_assert_str_eq(log_level_name(LOG_LEVEL_INFO), "info");
    ck_assert_str_eq(log_level_name(LOG_LEVEL_WARN), "warn");
    ck_assert_str_eq(log_level_name(LOG_LEVEL_ERROR), "error");
    ck_assert_str_eq(log_level_name((enum log_level)42), "unknown");
}
END_TEST

/* ---- the one list ------------------------------------------------------------- */

#define N(a) ((int)(sizeof(a) / sizeof((a)[0])))

Suite *suite_log(void)
{
    Suite *s = suite_create("log");
    TCase *tc = tcase_create("log");
    tcase_set_timeout(tc, UNIT_TIMEOUT_IO);

    tcase_add_checked_fixture(tc, NULL, teardown);
    tcase_add_test(tc, test_defaults_info_json);
    tcase_add_test(tc, test_json_fields);
    tcase_add_test(tc, test_json_context_only_when_set);
    tcase_add_loop_test(tc, test_json_escaping, 0, N(escape_cases));
    tcase_add_test(tc, test_json_context_escaped);
    tcase_add_loop_test(tc, test_level_filter, 0, 16);
    tcase_add_test(tc, test_configure_live_and_invalid_ignored);
    tcase_add_test(tc, test_errno_preserved);
    tcase_add_test(tc, test_text_format);
    tcase_add_test(tc, test_text_format_one_line);
    tcase_add_loop_test(tc, test_long_message_truncated, 0, N(long_cases));
    tcase_add_test(tc, test_long_utf8_cut_clean);
    tcase_add_test(tc, test_long_text_truncated);
    tcase_add_test(tc, test_concurrent_lines_whole);
    tcase_add_loop_test(tc, test_level_parse, 0, N(level_cases));
    tcase_add_loop_test(tc, test_format_parse, 0, N(format_cases));
    tcase_add_test(tc, test_level_name);
    suite_add_tcase(s, tc);
    return s;
}
