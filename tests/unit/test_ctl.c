/*
 * test_ctl.c — the pure parts of `orderd ctl` (src/ctl_int.h): the command
 * line, the URL derived from [server] listen and the one given with --url,
 * percent-encoding, the key file, the exit status of an HTTP status, and the
 * text for people (cells cleaned and cut, tables, "key: value" lines, ages).
 * The commands against a real daemon are tests/integration/test_ctl.sh.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "auth.h"
#include "ctl_int.h" /* src/, private */
#include "timeouts.h"
#include "tmpdir.h"

Suite *suite_ctl(void);

#define N(a) ((int)(sizeof(a) / sizeof((a)[0])))

/* ---- exit statuses ------------------------------------------------------------------ */

static const struct {
    long status;
    int rc;
} exits[] = {
    {200, CTL_EXIT_OK},        {204, CTL_EXIT_OK},        {299, CTL_EXIT_OK},
    {0, CTL_EXIT_UNREACHABLE}, {404, CTL_EXIT_NOT_FOUND}, {401, CTL_EXIT_REFUSED},
    {403, CTL_EXIT_REFUSED},   {400, CTL_EXIT_FAILED},    {405, CTL_EXIT_FAILED},
    {409, CTL_EXIT_FAILED},    {422, CTL_EXIT_FAILED},    {429, CTL_EXIT_FAILED},
    {500, CTL_EXIT_FAILED},    {503, CTL_EXIT_FAILED},    {301, CTL_EXIT_FAILED},
    {101, CTL_EXIT_FAILED},
};

START_TEST(exit_for_status)
{
    ck_assert_int_eq(ctl_exit_for_status(exits[_i].status), exits[_i].rc);
}
END_TEST

START_TEST(exit_codes_are_the_documented_numbers)
{
    ck_assert_int_eq(CTL_EXIT_OK, 0);
    ck_assert_int_eq(CTL_EXIT_USAGE, 1);
    ck_assert_int_eq(CTL_EXIT_UNREACHABLE, 2);
    ck_assert_int_eq(CTL_EXIT_NOT_FOUND, 3);
    ck_assert_int_eq(CTL_EXIT_REFUSED, 4);
    ck_assert_int_eq(CTL_EXIT_FAILED, 5);
}
END_TEST

/* ---- the URL from listen ------------------------------------------------------------ */

static const struct {
    const char *host;
    unsigned port;
    bool tls;
    int rc;
    const char *url;
} defaults[] = {
    {"127.0.0.1", 8080, false, 0, "http://127.0.0.1:8080"},
    {"127.0.0.1", 8443, true, 0, "https://127.0.0.1:8443"},
    {"0.0.0.0", 80, false, 0, "http://127.0.0.1:80"},
    {"0.0.0.0", 443, true, 0, "https://127.0.0.1:443"},
    {"::", 8080, false, 0, "http://[::1]:8080"},
    {"0:0::0", 8080, true, 0, "https://[::1]:8080"},
    {"::1", 1, false, 0, "http://[::1]:1"},
    {"2001:db8::7", 65535, true, 0, "https://[2001:db8::7]:65535"},
    {"192.0.2.7", 9, false, 0, "http://192.0.2.7:9"},
    {NULL, 8080, false, 0, "http://127.0.0.1:8080"},
    {"127.0.0.1", 0, false, -EINVAL, ""}, /* listen on any free port: nothing to derive */
    {"::", 0, true, -EINVAL, ""},
};

START_TEST(default_url)
{
    char buf[128] = "";
    int rc =
        ctl_default_url(defaults[_i].host, defaults[_i].port, defaults[_i].tls, buf, sizeof(buf));
    ck_assert_int_eq(rc, defaults[_i].rc);
    if (rc == 0)
        ck_assert_str_eq(buf, defaults[_i].url);
}
END_TEST

START_TEST(default_url_too_long)
{
    char buf[16];
    ck_assert_int_eq(ctl_default_url("127.0.0.1", 8080, false, buf, sizeof(buf)), -ENAMETOOLONG);
    char fits[sizeof("http://127.0.0.1:8080")];
    ck_assert_int_eq(ctl_default_url("127.0.0.1", 8080, false, fits, sizeof(fits)), 0);
}
END_TEST

/* ---- --url ------------------------------------------------------------------------- */

static const struct {
    const char *in;
    int rc;
    const char *out;
    bool loopback;
    const char *why; /* part of the reason, when refused */
} urls[] = {
    {"http://127.0.0.1:8080", 0, "http://127.0.0.1:8080", true, NULL},
    {"http://127.0.0.1:8080/", 0, "http://127.0.0.1:8080", true, NULL},
    {"https://orders.example.com:8443", 0, "https://orders.example.com:8443", false, NULL},
    {"https://orders.example.com/orderd//", 0, "https://orders.example.com/orderd", false, NULL},
    {"http://[::1]:9", 0, "http://[::1]:9", true, NULL},
    {"http://localhost:9", 0, "http://localhost:9", true, NULL},
    {"http://127.8.9.10:9", 0, "http://127.8.9.10:9", true, NULL},
    {"HTTPS://192.0.2.1", 0, "https://192.0.2.1", false, NULL},
    {"127.0.0.1:8080", -EINVAL, NULL, false, "http"},
    {"ftp://example.com", -EINVAL, NULL, false, "http"},
    {"file:///etc/passwd", -EINVAL, NULL, false, "http"},
    {"http://user:secret@h:1", -EINVAL, NULL, false, "--key-file"},
    {"http://h:1/?limit=1", -EINVAL, NULL, false, "query"},
    {"http://h:1/#top", -EINVAL, NULL, false, "fragment"},
    {"http://", -EINVAL, NULL, false, "URL"},
    {"", -EINVAL, NULL, false, "http"},
};

START_TEST(check_url)
{
    char out[256] = "", why[256] = "";
    bool loopback = !urls[_i].loopback;
    int rc = ctl_check_url(urls[_i].in, out, sizeof(out), &loopback, why, sizeof(why));
    ck_assert_msg(rc == urls[_i].rc, "%s: rc %d (%s)", urls[_i].in, rc, why);
    if (rc == 0) {
        ck_assert_str_eq(out, urls[_i].out);
        ck_assert_int_eq(loopback, urls[_i].loopback);
    } else {
        ck_assert_msg(strstr(why, urls[_i].why) != NULL, "%s: why '%s'", urls[_i].in, why);
        ck_assert_ptr_null(strstr(why, "secret"));
    }
}
END_TEST

/* ---- percent-encoding ------------------------------------------------------------------ */

START_TEST(escape)
{
    char out[64] = "/orders/";
    ck_assert_int_eq(ctl_escape("01J9ZQ4X7W3T5B8N2K6M4P0R1S", out, sizeof(out)), 0);
    ck_assert_str_eq(out, "/orders/01J9ZQ4X7W3T5B8N2K6M4P0R1S");
    strcpy(out, "");
    ck_assert_int_eq(ctl_escape("a b/c?d&e=f#g%h-._~", out, sizeof(out)), 0);
    ck_assert_str_eq(out, "a%20b%2Fc%3Fd%26e%3Df%23g%25h-._~");
    strcpy(out, "x=");
    ck_assert_int_eq(ctl_escape("\xc3\xa9\n", out, sizeof(out)), 0);
    ck_assert_str_eq(out, "x=%C3%A9%0A");
    char small[5] = "";
    ck_assert_int_eq(ctl_escape("ab/cd", small, sizeof(small)), -ENAMETOOLONG);
    ck_assert_str_eq(small, "ab"); /* what fitted, never half an escape */
}
END_TEST

/* ---- the command line ----------------------------------------------------------------- */

/* Splits line on spaces into argv (at most 31 words) and parses it. */
static int parse_line(const char *line, struct ctl_options *o, char *err, size_t size, char **words,
                      int *argc)
{
    static char buf[512];
    snprintf(buf, sizeof(buf), "%s", line);
    *argc = 0;
    for (char *save = NULL, *w = strtok_r(buf, " ", &save); w != NULL && *argc < 31;
         w = strtok_r(NULL, " ", &save))
        words[(*argc)++] = w;
    words[*argc] = NULL;
    return ctl_parse_args(*argc, words, o, err, size);
}

static const struct {
    const char *line;
    enum ctl_command cmd;
    const char *id;
    bool json, all;
} good_lines[] = {
    {"ctl stats", CTL_CMD_STATS, NULL, false, false},
    {"ctl --json stats", CTL_CMD_STATS, NULL, true, false},
    {"ctl orders get 01ABC", CTL_CMD_ORDERS_GET, "01ABC", false, false},
    {"ctl orders get 01ABC --json", CTL_CMD_ORDERS_GET, "01ABC", true, false},
    {"ctl orders --json get 01ABC", CTL_CMD_ORDERS_GET, "01ABC", true, false},
    {"ctl orders list", CTL_CMD_ORDERS_LIST, NULL, false, false},
    {"ctl orders list --all", CTL_CMD_ORDERS_LIST, NULL, false, true},
    {"ctl dlq list --all --json", CTL_CMD_DLQ_LIST, NULL, true, true},
    {"ctl dlq redrive 01ABC", CTL_CMD_DLQ_REDRIVE, "01ABC", false, false},
    {"ctl dlq redrive --all", CTL_CMD_DLQ_REDRIVE_ALL, NULL, false, true},
    {"ctl --all dlq redrive", CTL_CMD_DLQ_REDRIVE_ALL, NULL, false, true},
    {"ctl dlq delete 01ABC", CTL_CMD_DLQ_DELETE, "01ABC", false, false},
    {"ctl -- orders get -01", CTL_CMD_ORDERS_GET, "-01", false, false},
};

START_TEST(parse_good)
{
    struct ctl_options o;
    char err[256], *words[32];
    int argc;
    int rc = parse_line(good_lines[_i].line, &o, err, sizeof(err), words, &argc);
    ck_assert_msg(rc == 0, "%s: %s", good_lines[_i].line, err);
    ck_assert_int_eq(o.cmd, good_lines[_i].cmd);
    ck_assert_int_eq(o.json, good_lines[_i].json);
    ck_assert_int_eq(o.all, good_lines[_i].all);
    ck_assert_int_eq(o.help, false);
    if (good_lines[_i].id == NULL)
        ck_assert_ptr_null(o.id);
    else
        ck_assert_str_eq(o.id, good_lines[_i].id);
    ck_assert_uint_eq(o.timeout_ms, CTL_TIMEOUT_MS_DEFAULT);
}
END_TEST

START_TEST(parse_options_and_values)
{
    struct ctl_options o;
    char err[256], *words[32];
    int argc;
    ck_assert_int_eq(parse_line("ctl orders list --status queued --customer C-1 --limit 2 "
                                "--cursor K1 --url http://h:1 --key-file /k --ca-file /ca "
                                "--timeout 250ms",
                                &o, err, sizeof(err), words, &argc),
                     0);
    ck_assert_str_eq(o.status, "queued");
    ck_assert_str_eq(o.customer, "C-1");
    ck_assert_uint_eq(o.limit, 2);
    ck_assert_str_eq(o.cursor, "K1");
    ck_assert_str_eq(o.url, "http://h:1");
    ck_assert_str_eq(o.key_file, "/k");
    ck_assert_str_eq(o.ca_file, "/ca");
    ck_assert_uint_eq(o.timeout_ms, 250);
    /* the caller's argv is as it was: getopt permuted a copy */
    ck_assert_str_eq(words[1], "orders");
    ck_assert_str_eq(words[3], "--status");
    ck_assert_str_eq(words[argc - 1], "250ms");

    ck_assert_int_eq(parse_line("ctl --timeout 5 stats", &o, err, sizeof(err), words, &argc), 0);
    ck_assert_uint_eq(o.timeout_ms, 5000);
    ck_assert_int_eq(parse_line("ctl --timeout 1m stats", &o, err, sizeof(err), words, &argc), 0);
    ck_assert_uint_eq(o.timeout_ms, 60000);
    /* parsed again from scratch: nothing of the last parse stays */
    ck_assert_int_eq(parse_line("ctl stats", &o, err, sizeof(err), words, &argc), 0);
    ck_assert_ptr_null(o.url);
    ck_assert_uint_eq(o.timeout_ms, CTL_TIMEOUT_MS_DEFAULT);
    ck_assert_int_eq(parse_line("ctl --url=http://h:2 stats", &o, err, sizeof(err), words, &argc),
                     0);
    ck_assert_str_eq(o.url, "http://h:2");
}
END_TEST

START_TEST(parse_help)
{
    struct ctl_options o;
    char err[256], *words[32];
    int argc;
    static const char *const lines[] = {"ctl --help", "ctl -h", "ctl help", "ctl orders get -h",
                                        "ctl --help nonsense words"};
    for (int i = 0; i < N(lines); i++) {
        ck_assert_int_eq(parse_line(lines[i], &o, err, sizeof(err), words, &argc), 0);
        ck_assert_msg(o.help, "%s", lines[i]);
    }
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    ctl_usage(f);
    fclose(f);
    /* the exit statuses are documented where a script writer looks */
    static const char *const parts[] = {"orders get ID", "dlq redrive ID | --all",
                                        "--key-file",    "--ca-file",
                                        "--timeout",     "0  done",
                                        "2  no answer",  "3  not found",
                                        "4  refused",    "5  another error"};
    for (int i = 0; i < N(parts); i++)
        ck_assert_msg(strstr(text, parts[i]) != NULL, "usage lacks '%s'", parts[i]);
    free(text);
}
END_TEST

static const struct {
    const char *line;
    const char *why; /* part of the message */
} bad_lines[] = {
    {"ctl", "no command"},
    {"ctl nope", "unknown command: nope"},
    {"ctl orders", "orders what"},
    {"ctl orders put", "unknown command: orders put"},
    {"ctl orders get", "needs an ID"},
    {"ctl orders get A B", "unexpected argument: B"},
    {"ctl orders list extra", "unexpected argument: extra"},
    {"ctl stats now", "unexpected argument: now"},
    {"ctl dlq", "dlq what"},
    {"ctl dlq purge", "unknown command: dlq purge"},
    {"ctl dlq redrive", "needs an ID, or --all"},
    {"ctl dlq redrive A --all", "not both"},
    {"ctl dlq delete", "needs an ID"},
    {"ctl dlq delete --all A", "--all is for"},
    {"ctl --status queued dlq list", "--status is for orders list"},
    {"ctl --customer C stats", "--customer is for orders list"},
    {"ctl --limit 2 stats", "--limit is for"},
    {"ctl orders get A --cursor K", "--cursor is for"},
    {"ctl --all stats", "--all is for"},
    {"ctl orders list --limit 0", "--limit 0"},
    {"ctl orders list --limit -1", "--limit -1"},
    {"ctl orders list --limit two", "--limit two"},
    {"ctl --timeout 0 stats", "--timeout 0"},
    {"ctl --timeout soon stats", "--timeout soon"},
    {"ctl --timeout 2h stats", "--timeout 2h"},
    {"ctl --timeout 99999999 stats", "--timeout 99999999"},
    {"ctl stats --url", "--url needs a value"},
    {"ctl --bogus stats", "unknown option --bogus"},
    {"ctl -x stats", "unknown option -x"},
};

START_TEST(parse_bad)
{
    struct ctl_options o;
    char err[256], *words[32];
    int argc;
    int rc = parse_line(bad_lines[_i].line, &o, err, sizeof(err), words, &argc);
    ck_assert_msg(rc == -EINVAL, "%s: rc %d", bad_lines[_i].line, rc);
    ck_assert_msg(strstr(err, bad_lines[_i].why) != NULL, "%s: '%s' lacks '%s'", bad_lines[_i].line,
                  err, bad_lines[_i].why);
    ck_assert_ptr_null(strchr(err, '\n')); /* one line */
}
END_TEST

/* ---- the key file ------------------------------------------------------------------------ */

static char key_dir[256];

static void key_setup(void) { tmpdir_make(key_dir, sizeof(key_dir), NULL, "ctl-key"); }
static void key_teardown(void) { tmpdir_remove(key_dir); }

/* Writes text to key_dir/name with mode; its path in path. */
static void key_file(const char *name, const char *text, size_t len, mode_t mode, char *path,
                     size_t size)
{
    snprintf(path, size, "%s/%s", key_dir, name);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq((int)write(fd, text, len), (int)len);
    close(fd);
    ck_assert_int_eq(chmod(path, mode), 0);
}

static const struct {
    const char *text;
    mode_t mode;
    int rc;
    const char *key; /* or part of the reason */
} keys[] = {
    {"key-secret-1\n", 0600, 0, "key-secret-1"},
    {"key-secret-1", 0600, 0, "key-secret-1"},
    {"key-secret-1\r\n", 0600, 0, "key-secret-1"},
    {"key-secret-1\nsecond line\n", 0400, 0, "key-secret-1"},
    {"key-secret-1\n", 0640, 0, "key-secret-1"}, /* a group of operators may share it */
    {"key-secret-1\n", 0644, -EPERM, "readable by other users (mode 0644)"},
    {"key-secret-1\n", 0604, -EPERM, "readable by other users"},
    {"key-secret-1\n", 0602, -EPERM, "writable by other users"},
    {"", 0600, -EINVAL, "empty"},
    {"\nkey-secret-1\n", 0600, -EINVAL, "empty"},
    {" key-secret-1\n", 0600, -EINVAL, "character 1 "},
    {"key-secret-1 \n", 0600, -EINVAL, "character 13 "},
    {"key\tsecret\n", 0600, -EINVAL, "character 4 "},
    {"k\xc3\xa9y-secret\n", 0600, -EINVAL, "character 2 "},
};

START_TEST(read_key)
{
    char path[512], key[AUTH_KEY_MAX + 1] = "", why[256] = "";
    key_file("k", keys[_i].text, strlen(keys[_i].text), keys[_i].mode, path, sizeof(path));
    int rc = ctl_read_key(path, key, sizeof(key), why, sizeof(why));
    ck_assert_msg(rc == keys[_i].rc, "case %d: rc %d (%s)", _i, rc, why);
    if (rc == 0) {
        ck_assert_str_eq(key, keys[_i].key);
    } else {
        ck_assert_msg(strstr(why, keys[_i].key) != NULL, "case %d: why '%s'", _i, why);
        ck_assert_ptr_null(strstr(why, "secret")); /* the reason never shows the key */
    }
}
END_TEST

START_TEST(read_key_bounds)
{
    char path[512], key[AUTH_KEY_MAX + 1], why[256];
    char text[AUTH_KEY_MAX + 3];
    memset(text, 'k', sizeof(text));
    text[AUTH_KEY_MAX] = '\n';
    key_file("max", text, AUTH_KEY_MAX + 1, 0600, path, sizeof(path));
    ck_assert_int_eq(ctl_read_key(path, key, sizeof(key), why, sizeof(why)), 0);
    ck_assert_uint_eq(strlen(key), AUTH_KEY_MAX);
    text[AUTH_KEY_MAX] = 'k';
    text[AUTH_KEY_MAX + 1] = '\n';
    key_file("long", text, AUTH_KEY_MAX + 2, 0600, path, sizeof(path));
    ck_assert_int_eq(ctl_read_key(path, key, sizeof(key), why, sizeof(why)), -EINVAL);
    ck_assert_ptr_nonnull(strstr(why, "longer"));
    /* a first line longer than what is read at all */
    size_t big = CTL_KEY_FILE_READ_MAX * 2;
    char *huge = malloc(big);
    memset(huge, 'k', big);
    key_file("huge", huge, big, 0600, path, sizeof(path));
    free(huge);
    ck_assert_int_eq(ctl_read_key(path, key, sizeof(key), why, sizeof(why)), -EINVAL);
}
END_TEST

START_TEST(read_key_not_a_file)
{
    char path[512], key[AUTH_KEY_MAX + 1], why[256];
    snprintf(path, sizeof(path), "%s/none", key_dir);
    ck_assert_int_eq(ctl_read_key(path, key, sizeof(key), why, sizeof(why)), -ENOENT);
    ck_assert_ptr_nonnull(strstr(why, "cannot open"));
    ck_assert_int_eq(ctl_read_key(key_dir, key, sizeof(key), why, sizeof(why)), -EINVAL);
    ck_assert_ptr_nonnull(strstr(why, "not a regular file or a pipe"));
    /* a pipe, as `--key-file <(pass show orderd)` gives */
    int p[2];
    ck_assert_int_eq(pipe(p), 0);
    ck_assert_int_eq((int)write(p[1], "piped-key\n", 10), 10);
    close(p[1]);
    snprintf(path, sizeof(path), "/dev/fd/%d", p[0]);
    ck_assert_int_eq(ctl_read_key(path, key, sizeof(key), why, sizeof(why)), 0);
    ck_assert_str_eq(key, "piped-key");
    close(p[0]);
}
END_TEST

/* ---- cells ----------------------------------------------------------------------------- */

static const struct {
    const char *in;
    size_t max;
    const char *out;
    size_t cols;
} cells[] = {
    {"abc", 0, "abc", 3},
    {"", 0, "", 0},
    {"  a \n\t b  ", 0, "a b", 3},
    {"line one\nline two\r\n", 0, "line one line two", 17},
    {"a\x1b[31mred\x1b[0m", 0, "a [31mred [0m", 13}, /* ESC gone: no colour, no cursor moves */
    {"a\x7f"
     "b",
     0, "a b", 3},
    {"a\xc2\x85"
     "b",
     0, "a b", 3},                   /* C1 NEL */
    {"x\xe2\x80\xa8y", 0, "x y", 3}, /* LINE SEPARATOR */
    {"x\xe2\x80\xaey", 0, "x y", 3}, /* RIGHT-TO-LEFT OVERRIDE */
    {"\xff"
     "a",
     0, "?a", 2},                  /* invalid UTF-8 */
    {"\xc0\xaf", 0, "??", 2},      /* overlong */
    {"\xed\xa0\x80", 0, "???", 3}, /* a surrogate */
    {"\xe2\x82", 0, "??", 2},      /* cut short */
    {"\xc3\xa9t\xc3\xa9", 0, "\xc3\xa9t\xc3\xa9", 3},
    {"abcdefghij", 10, "abcdefghij", 10},
    {"abcdefghij", 8, "abcde...", 8},
    {"abcd efgh", 8, "abcd...", 7}, /* not "abcd ..." */
    {"\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9", 4, "\xc3\xa9...", 4},
    {"abcdef", 3, "abc", 3},
};

START_TEST(cell)
{
    char out[64];
    size_t cols = ctl_cell(cells[_i].in, cells[_i].max, out, sizeof(out));
    ck_assert_msg(strcmp(out, cells[_i].out) == 0, "case %d: '%s'", _i, out);
    ck_assert_uint_eq(cols, cells[_i].cols);
    ck_assert_uint_eq(ctl_columns(out), cols);
}
END_TEST

START_TEST(cell_bounded_by_its_buffer)
{
    char out[4];
    ck_assert_uint_eq(ctl_cell("abcdef", 0, out, sizeof(out)), 3);
    ck_assert_str_eq(out, "abc");
    ck_assert_uint_eq(ctl_cell("\xc3\xa9\xc3\xa9", 0, out, sizeof(out)), 1); /* no half é */
    ck_assert_str_eq(out, "\xc3\xa9");
    ck_assert_uint_eq(ctl_cell(NULL, 0, out, sizeof(out)), 0);
    ck_assert_str_eq(out, "");
}
END_TEST

/* ---- times ------------------------------------------------------------------------------- */

static const struct {
    long long s;
    const char *text;
} ages[] = {
    {-5, "0s"},       {0, "0s"},        {59, "59s"},        {60, "1m"},
    {3599, "59m"},    {3600, "1h00m"},  {3661, "1h01m"},    {86399, "23h59m"},
    {86400, "1d00h"}, {90061, "1d01h"}, {864000, "10d00h"},
};

START_TEST(format_age)
{
    char buf[32];
    ctl_format_age(ages[_i].s, buf, sizeof(buf));
    ck_assert_str_eq(buf, ages[_i].text);
}
END_TEST

START_TEST(parse_time)
{
    int64_t t = -1;
    ck_assert_int_eq(ctl_parse_time("1970-01-01T00:00:00.000Z", &t), 0);
    ck_assert_int_eq(t, 0);
    ck_assert_int_eq(ctl_parse_time("2024-05-01T12:00:00.123Z", &t), 0);
    ck_assert_int_eq(t, 1714564800);
    ck_assert_int_eq(ctl_parse_time("2024-05-01T12:00:00Z", &t), 0);
    ck_assert_int_eq(t, 1714564800);
    static const char *const bad[] = {
        "2024-05-01 12:00:00Z",
        "2024-05-01T12:00:00",
        "2024-13-01T00:00:00Z",
        "2024-05-01T24:00:00Z",
        "2024-05-01T12:00:00.Z",
        "2024-05-01T12:00:00.1Zx",
        "x",
        "",
    };
    for (int i = 0; i < N(bad); i++)
        ck_assert_msg(ctl_parse_time(bad[i], &t) == -EINVAL, "%s", bad[i]);
    ck_assert_int_eq(ctl_parse_time(NULL, &t), -EINVAL);
}
END_TEST

/* ---- tables ------------------------------------------------------------------------------ */

static char *print_table(const struct ctl_table *t, size_t width)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    ctl_table_print(t, width, f);
    fclose(f);
    return text;
}

START_TEST(table)
{
    static const char *const h[] = {"ID", "N", "LAST"};
    struct ctl_table *t = ctl_table_new(3, h, 1u << 1);
    ck_assert_ptr_nonnull(t);
    const char *r1[] = {"a", "1", "short"};
    const char *r2[] = {"bbb", "22", "a long error message that goes on"};
    const char *r3[] = {"c\x1b[2J\nd", NULL, "x\n\ty"};
    const char *r4[] = {"\xc3\xa9", "3", ""};
    ck_assert_int_eq(ctl_table_add(t, r1), 0);
    ck_assert_int_eq(ctl_table_add(t, r2), 0);
    ck_assert_int_eq(ctl_table_add(t, r3), 0);
    ck_assert_int_eq(ctl_table_add(t, r4), 0);
    ck_assert_uint_eq(ctl_table_rows(t), 4);

    char *text = print_table(t, 80);
    ck_assert_str_eq(text, "ID        N  LAST\n"
                           "a         1  short\n"
                           "bbb      22  a long error message that goes on\n"
                           "c [2J d   -  x y\n"
                           "\xc3\xa9         3\n"); /* é is one column; no trailing spaces */
    free(text);
    /* 30 columns: the last column gets what is left, 30 - 13 */
    text = print_table(t, 30);
    ck_assert_str_eq(text, "ID        N  LAST\n"
                           "a         1  short\n"
                           "bbb      22  a long error m...\n"
                           "c [2J d   -  x y\n"
                           "\xc3\xa9         3\n");
    free(text);
    /* narrower than the fixed columns: the last one keeps CTL_FLEX_MIN */
    text = print_table(t, 10);
    ck_assert_ptr_nonnull(strstr(text, "\nbbb      22  a long error...\n"));
    free(text);
    ctl_table_free(t);
}
END_TEST

START_TEST(table_many_rows)
{
    static const char *const h[] = {"ID", "V"};
    struct ctl_table *t = ctl_table_new(2, h, 0);
    char id[16];
    for (int i = 0; i < 1000; i++) {
        snprintf(id, sizeof(id), "%d", i);
        const char *row[] = {id, "v"};
        ck_assert_int_eq(ctl_table_add(t, row), 0);
    }
    char *text = print_table(t, 80);
    ck_assert_ptr_nonnull(strstr(text, "\n999  v\n"));
    ck_assert_ptr_nonnull(strstr(text, "ID   V\n0    v\n"));
    free(text);
    ctl_table_free(t);
}
END_TEST

/* ---- "key: value" lines ---------------------------------------------------------------- */

START_TEST(fields)
{
    json_error_t e;
    json_t *o =
        json_loads("{\"order_id\":\"01ABC\",\"items\":[{\"item\":\"Laptop\",\"quantity\":2},"
                   "{\"item\":\"Mo\\u001buse\",\"quantity\":1}],\"status\":\"completed\","
                   "\"attempts\":1,\"processed_at\":null,\"last_error\":\"one\\ntwo\\u001b[1m\","
                   "\"ready\":true,\"age\":1.5,\"empty\":\"\",\"result\":{\"k\":\"v\\u00e9\"},"
                   "\"tags\":[]}",
                   0, &e);
    ck_assert_msg(o != NULL, "%s", e.text);
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    ctl_print_fields(o, f);
    fclose(f);
    ck_assert_str_eq(text, "order_id:     01ABC\n"
                           "items:        2 x Laptop\n"
                           "              1 x Mo use\n"
                           "status:       completed\n"
                           "attempts:     1\n"
                           "processed_at: -\n"
                           "last_error:   one\n"
                           "              two [1m\n"
                           "ready:        true\n"
                           "age:          1.500\n"
                           "empty:\n"
                           "result:       {\"k\":\"v\\u00E9\"}\n"
                           "tags:         []\n");
    free(text);
    json_decref(o);
}
END_TEST

Suite *suite_ctl(void)
{
    Suite *s = suite_create("ctl");

    TCase *tc = tcase_create("exit");
    tcase_set_timeout(tc, UNIT_TIMEOUT_LOGIC);
    tcase_add_loop_test(tc, exit_for_status, 0, N(exits));
    tcase_add_test(tc, exit_codes_are_the_documented_numbers);
    suite_add_tcase(s, tc);

    tc = tcase_create("url");
    tcase_set_timeout(tc, UNIT_TIMEOUT_LOGIC);
    tcase_add_loop_test(tc, default_url, 0, N(defaults));
    tcase_add_test(tc, default_url_too_long);
    tcase_add_loop_test(tc, check_url, 0, N(urls));
    tcase_add_test(tc, escape);
    suite_add_tcase(s, tc);

    tc = tcase_create("args");
    tcase_set_timeout(tc, UNIT_TIMEOUT_LOGIC);
    tcase_add_loop_test(tc, parse_good, 0, N(good_lines));
    tcase_add_test(tc, parse_options_and_values);
    tcase_add_test(tc, parse_help);
    tcase_add_loop_test(tc, parse_bad, 0, N(bad_lines));
    suite_add_tcase(s, tc);

    tc = tcase_create("key_file");
    tcase_set_timeout(tc, UNIT_TIMEOUT_IO);
    tcase_add_checked_fixture(tc, key_setup, key_teardown);
    tcase_add_loop_test(tc, read_key, 0, N(keys));
    tcase_add_test(tc, read_key_bounds);
    tcase_add_test(tc, read_key_not_a_file);
    suite_add_tcase(s, tc);

    tc = tcase_create("text");
    tcase_set_timeout(tc, UNIT_TIMEOUT_LOGIC);
    tcase_add_loop_test(tc, cell, 0, N(cells));
    tcase_add_test(tc, cell_bounded_by_its_buffer);
    tcase_add_loop_test(tc, format_age, 0, N(ages));
    tcase_add_test(tc, parse_time);
    tcase_add_test(tc, table);
    tcase_add_test(tc, table_many_rows);
    tcase_add_test(tc, fields);
    suite_add_tcase(s, tc);
    return s;
}
