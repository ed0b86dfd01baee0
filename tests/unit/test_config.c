/*
 * test_config.c — the config module: defaults, every key, every bad value,
 * durations and sizes, syntax errors with their lines, environment overrides,
 * checks between keys, the printed form of errors, errors placed at a key
 * from outside (config_key_error), warnings, and the shipped files.
 * Runs from the repository root: the files under etc/orderd/ are read by relative path.
 */
#include <check.h>
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "timeouts.h"

Suite *suite_config(void);

#define assert_contains(s, part)                                                        \
    ck_assert_msg(strstr((s), (part)) != NULL, "\"%s\" lacks \"%s\"", (s), (part))

/* A loaded config and its errors, released by teardown-free helpers below. */
struct loaded {
    struct config cfg;
    struct config_errors errs;
    int rc;
};

static struct loaded *load_text(const char *text, char *const *envp)
{
    struct loaded *l = calloc(1, sizeof(*l));

    ck_assert_ptr_nonnull(l);
    l->rc = config_load_string(text, envp, &l->cfg, &l->errs);
    return l;
}

static void loaded_free(struct loaded *l)
{
    config_free(&l->cfg);
    free(l);
}

/* Every error of l, one a line, for failure messages. */
static const char *errors_text(const struct loaded *l)
{
    static char buf[8192];
    FILE *f = fmemopen(buf, sizeof(buf), "w");

    if (f == NULL)
        return "(fmemopen failed)";
    config_errors_print(&l->errs, "t.conf", f);
    fclose(f);
    return buf;
}

static void assert_ok(const struct loaded *l)
{
    ck_assert_msg(l->rc == 0 && l->errs.count == 0, "rc %d, errors:\n%s", l->rc, errors_text(l));
}

/* Exactly one error, with this line, section, key and a message containing want. */
static void assert_one_error(const struct loaded *l, unsigned line, const char *section,
                             const char *key, const char *want)
{
    ck_assert_int_eq(l->rc, -EINVAL);
    ck_assert_msg(l->errs.count == 1, "want 1 error, got %zu:\n%s", l->errs.count,
                  errors_text(l));
    ck_assert_uint_eq(l->errs.items[0].line, line);
    ck_assert_str_eq(l->errs.items[0].section, section);
    ck_assert_str_eq(l->errs.items[0].key, key);
    ck_assert_msg(strstr(l->errs.items[0].message, want) != NULL, "message \"%s\" lacks \"%s\"",
                  l->errs.items[0].message, want);
}

/* ---- defaults and every key ------------------------------------------------- */

static void assert_defaults(const struct config *c)
{
    ck_assert_str_eq(c->listen, "127.0.0.1:8080");
    ck_assert_str_eq(c->listen_host, "127.0.0.1");
    ck_assert_uint_eq(c->listen_port, 8080);
    ck_assert_uint_eq(c->max_body_bytes, 65536);
    ck_assert_ptr_null(c->tls_cert);
    ck_assert_ptr_null(c->tls_key);
    ck_assert_uint_eq(c->max_connections, 1024);
    ck_assert_uint_eq(c->max_connections_per_ip, 128);
    ck_assert_uint_eq(c->request_timeout_ms, 30000);
    ck_assert_uint_eq(c->http_threads, 0);
    ck_assert_uint_eq(c->drain_grace_ms, 0);
    ck_assert_uint_eq(c->retention_completed_ms, 0);
    ck_assert_ptr_null(c->otlp_endpoint);
    ck_assert_ptr_null(c->service_name);
    ck_assert_ptr_null(c->tracing_headers_file);
    ck_assert_double_eq(c->sample_ratio, 1.0);
    ck_assert_uint_eq(c->retention_dead_letters_ms, 0);
    ck_assert_int_eq(c->backend, STORE_BACKEND_SQLITE);
    ck_assert_str_eq(c->storage_path, "/var/lib/orderd/orderd.db");
    ck_assert_int_eq(c->durability, DURABILITY_FULL);
    ck_assert_ptr_null(c->dsn);
    ck_assert_uint_eq(c->visibility_timeout_ms, 30000);
    ck_assert_uint_eq(c->max_receives, 5);
    ck_assert_uint_eq(c->backoff_base_ms, 1000);
    ck_assert_uint_eq(c->backoff_max_ms, 300000);
    ck_assert_uint_eq(c->max_depth, 1000000);
    ck_assert_uint_eq(c->worker_count, 2);
    ck_assert_ptr_null(c->fulfilment_command);
    ck_assert_uint_eq(c->fulfilment_timeout_ms, 10000);
    ck_assert_double_eq(c->rate, 0);
    ck_assert_uint_eq(c->burst, 0);
    ck_assert_ptr_null(c->keys_file);
    ck_assert(!c->protect_status);
    ck_assert_int_eq(c->log_level, LOG_LEVEL_INFO);
    ck_assert_int_eq(c->log_format, LOG_FORMAT_JSON);
}

START_TEST(test_init_defaults)
{
    struct config c;

    ck_assert_int_eq(config_init(&c), 0);
    assert_defaults(&c);
    config_free(&c);
    config_free(&c); /* pointers were set to NULL: harmless */
    ck_assert_int_eq(config_init(NULL), -EINVAL);
}
END_TEST

START_TEST(test_empty_file_gives_defaults)
{
    struct loaded *l = load_text("", NULL);

    assert_ok(l);
    assert_defaults(&l->cfg);
    loaded_free(l);
    l = load_text("# only a comment\n\n; another\n[server]\n[log]\n", NULL);
    assert_ok(l);
    assert_defaults(&l->cfg);
    loaded_free(l);
}
END_TEST

START_TEST(test_every_key)
{
    static const char text[] = "[server]\n"
                               "listen = [::1]:9090\n"
                               "max_body_bytes = 1M\n"
                               "tls_cert = /etc/orderd/tls/cert.pem\n"
                               "tls_key = /etc/orderd/tls/key.pem\n"
                               "max_connections = 100000\n"
                               "max_connections_per_ip = 0\n"
                               "request_timeout = 1h\n"
                               "threads = 64\n"
                               "drain_grace = 10s\n"
                               "[storage]\n"
                               "backend = postgres\n"
                               "path = var/x.db\n"
                               "durability = normal\n"
                               "dsn = host=db user=orderd password=hunter2\n"
                               "[queue]\n"
                               "visibility_timeout = 12h\n"
                               "max_receives = 1000\n"
                               "backoff_base = 250ms\n"
                               "backoff_max = 24h\n"
                               "max_depth = 1000000000\n"
                               "[workers]\n"
                               "count = 64\n"
                               "fulfilment_command = /usr/bin/ship --fast\n"
                               "fulfilment_timeout = 100ms\n"
                               "[limits]\n"
                               "rate = 2.5\n"
                               "burst = 1000000\n"
                               "[auth]\n"
                               "keys_file = /etc/orderd/keys\n"
                               "protect_status = true\n"
                               "[log]\n"
                               "level = debug\n"
                               "format = text\n";
    struct loaded *l = load_text(text, NULL);
    const struct config *c = &l->cfg;

    assert_ok(l);
    ck_assert_str_eq(c->listen, "[::1]:9090");
    ck_assert_str_eq(c->listen_host, "::1");
    ck_assert_uint_eq(c->listen_port, 9090);
    ck_assert_uint_eq(c->max_body_bytes, 1048576);
    ck_assert_str_eq(c->tls_cert, "/etc/orderd/tls/cert.pem");
    ck_assert_str_eq(c->tls_key, "/etc/orderd/tls/key.pem");
    ck_assert_uint_eq(c->max_connections, 100000);
    ck_assert_uint_eq(c->max_connections_per_ip, 0);
    ck_assert_uint_eq(c->request_timeout_ms, 3600000);
    ck_assert_uint_eq(c->http_threads, 64);
    ck_assert_uint_eq(c->drain_grace_ms, 10000);
    ck_assert_int_eq(c->backend, STORE_BACKEND_POSTGRES);
    ck_assert_str_eq(c->storage_path, "var/x.db");
    ck_assert_int_eq(c->durability, DURABILITY_NORMAL);
    ck_assert_str_eq(c->dsn, "host=db user=orderd password=hunter2");
    ck_assert_uint_eq(c->visibility_timeout_ms, 12 * 3600000);
    ck_assert_uint_eq(c->max_receives, 1000);
    ck_assert_uint_eq(c->backoff_base_ms, 250);
    ck_assert_uint_eq(c->backoff_max_ms, 24 * 3600000);
    ck_assert_uint_eq(c->max_depth, 1000000000);
    ck_assert_uint_eq(c->worker_count, 64);
    ck_assert_str_eq(c->fulfilment_command, "/usr/bin/ship --fast");
    ck_assert_uint_eq(c->fulfilment_timeout_ms, 100);
    ck_assert_double_eq(c->rate, 2.5);
    ck_assert_uint_eq(c->burst, 1000000);
    ck_assert_str_eq(c->keys_file, "/etc/orderd/keys");
    ck_assert(c->protect_status);
    ck_assert_int_eq(c->log_level, LOG_LEVEL_DEBUG);
    ck_assert_int_eq(c->log_format, LOG_FORMAT_TEXT);
    loaded_free(l);
}
END_TEST

/* The "Config file" block of SPEC.md, as an operator would write it out. */
START_TEST(test_spec_block_accepted)
{
    static const char text[] =
        "[server]\n"
        "listen = 127.0.0.1:8080\n"
        "max_body_bytes = 65536\n"
        "tls_cert =\n"
        "tls_key =\n"
        "[storage]\n"
        "backend = sqlite            # sqlite | postgres (several nodes, one database)\n"
        "path = /var/lib/orderd/orderd.db\n"
        "durability = full   # full | normal\n"
        "dsn =                       # libpq connection string, for postgres\n"
        "[queue]\n"
        "visibility_timeout = 30s\n"
        "max_receives = 5\n"
        "backoff_base = 1s\n"
        "backoff_max = 5m\n"
        "max_depth = 1000000\n"
        "[workers]\n"
        "count = 2\n"
        "fulfilment_command =\n"
        "fulfilment_timeout = 10s\n"
        "[limits]\n"
        "rate = 0\n"
        "burst = 0          # requests/s per client; 0 = off\n"
        "[auth]\n"
        "keys_file =                 # empty = no auth\n"
        "[log]\n"
        "level = info\n"
        "format = json      # json | text\n";
    struct loaded *l = load_text(text, NULL);

    assert_ok(l);
    assert_defaults(&l->cfg);
    loaded_free(l);
}
END_TEST

/* ---- good and bad values, one key at a time ----------------------------------- */

struct value_case {
    const char *section;
    const char *key;
    const char *value;
    const char *want; /* NULL: accepted; else a part of the error message */
};

static const struct value_case value_cases[] = {
    /* listen */
    {"server", "listen", "0.0.0.0:0", NULL},
    {"server", "listen", "localhost:8080", NULL},
    {"server", "listen", "[::]:65535", NULL},
    {"server", "listen", "127.0.0.1", "expected IPv4:port, [IPv6]:port or localhost:port"},
    {"server", "listen", "127.0.0.1:65536", "expected a port from 0 to 65535"},
    {"server", "listen", "127.0.0.1:", "expected a port"},
    {"server", "listen", "127.0.0.1:-1", "expected a port"},
    {"server", "listen", "127.0.0.1:80x", "expected a port"},
    {"server", "listen", "::1:8080", "expected IPv4:port"},
    {"server", "listen", "[::1]8080", "expected IPv4:port"},
    {"server", "listen", "[::1:8080", "expected IPv4:port"},
    {"server", "listen", "example.com:80", "got \"example.com:80\""},
    {"server", "listen", "256.1.1.1:80", "expected IPv4:port"},
    {"server", "listen", ":8080", "expected IPv4:port"},
    {"server", "listen", "", "got an empty value"},
    /* sizes */
    {"server", "max_body_bytes", "1", NULL},
    {"server", "max_body_bytes", "16M", NULL},
    {"server", "max_body_bytes", "64k", NULL},
    {"server", "max_body_bytes", "0", "expected a size from 1 to 16M, got \"0\""},
    {"server", "max_body_bytes", "16385k", "expected a size from 1 to 16M"},
    {"server", "max_body_bytes", "1G", "expected a size in bytes, optionally with k or M"},
    {"server", "max_body_bytes", "64kb", "expected a size in bytes"},
    {"server", "max_body_bytes", "-1", "expected a size in bytes"},
    {"server", "max_body_bytes", "", "expected a size in bytes"},
    /* integers */
    {"server", "max_connections", "1", NULL},
    {"server", "max_connections", "0", "expected an integer from 1 to 100000, got \"0\""},
    {"server", "max_connections", "100001", "expected an integer from 1 to 100000"},
    {"server", "max_connections", "1e3", "expected an integer"},
    {"server", "max_connections", "", "got an empty value"},
    {"server", "max_connections_per_ip", "100000", NULL},
    {"server", "max_connections_per_ip", "100001", "expected an integer from 0 to 100000"},
    {"server", "threads", "0", NULL},
    {"server", "threads", "65", "expected an integer from 0 to 64"},
    {"server", "threads", "99999999999999999999999", "expected an integer from 0 to 64"},
    {"queue", "max_receives", "0", "expected an integer from 1 to 1000"},
    {"queue", "max_receives", "1001", "expected an integer from 1 to 1000"},
    {"queue", "max_depth", "0", "expected an integer from 1 to 1000000000"},
    {"queue", "max_depth", "1000000001", "expected an integer from 1 to 1000000000"},
    {"workers", "count", "0", "expected an integer from 1 to 64"},
    {"workers", "count", "65", "expected an integer from 1 to 64"},
    {"workers", "count", "+2", "expected an integer"},
    {"limits", "burst", "1000001", "expected an integer from 0 to 1000000"},
    /* durations */
    {"server", "request_timeout", "1s", NULL},
    {"server", "request_timeout", "30", "expected a duration with a unit (ms, s, m, h, d), got \"30\""},
    {"server", "request_timeout", "999ms", "expected a duration from 1s to 1h, got \"999ms\""},
    {"server", "request_timeout", "61m", "expected a duration from 1s to 1h"},
    {"server", "request_timeout", "0s", "expected a duration from 1s to 1h"},
    {"queue", "visibility_timeout", "13h", "expected a duration from 1s to 12h"},
    {"queue", "visibility_timeout", "1.5s", "expected a duration with a unit"},
    {"queue", "backoff_base", "0ms", "expected a duration from 1ms to 1h"},
    {"queue", "backoff_max", "25h", "expected a duration from 1ms to 1d"},
    {"workers", "fulfilment_timeout", "99ms", "expected a duration from 100ms to 1h"},
    {"workers", "fulfilment_timeout", "", "expected a duration with a unit"},
    {"server", "drain_grace", "0s", NULL},
    {"server", "drain_grace", "10s", NULL},
    {"server", "drain_grace", "10001ms", "expected a duration from 0ms to 10s, got \"10001ms\""},
    {"server", "drain_grace", "5", "expected a duration with a unit"},
    /* enums */
    {"storage", "backend", "mysql", "expected one of sqlite, postgres, got \"mysql\""},
    {"storage", "backend", "", "expected one of sqlite, postgres"},
    {"storage", "backend", "SQLite", "expected one of sqlite, postgres"},
    {"storage", "durability", "fast", "expected one of full, normal"},
    {"tracing", "sample_ratio", "0", NULL},
    {"tracing", "sample_ratio", "0.01", NULL},
    {"tracing", "sample_ratio", "1", NULL},
    {"tracing", "sample_ratio", "1.5", "expected a decimal number from 0 to 1, got \"1.5\""},
    {"tracing", "sample_ratio", "-0.1", "expected a decimal number from 0 to 1"},
    {"tracing", "sample_ratio", "half", "expected a decimal number from 0 to 1"},
    {"tracing", "otlp_endpoint", "http://127.0.0.1:4318/v1/traces", NULL},
    {"tracing", "service_name", "orderd-eu", NULL},
    {"retention", "completed", "30d", NULL},
    {"retention", "completed", "0", NULL},
    {"retention", "dead_letters", "90d", NULL},
    {"retention", "dead_letters", "36501d", "expected a duration from 0ms to 36500d"},
    {"retention", "dead_letters", "1w", "expected a duration with a unit"},
    {"log", "level", "verbose", "expected one of debug, info, warn, error"},
    {"log", "level", "", "expected one of debug, info, warn, error"},
    {"log", "level", "warn", NULL},
    {"log", "level", "error", NULL},
    {"log", "format", "xml", "expected one of json, text"},
    {"auth", "protect_status", "false", NULL},
    {"auth", "protect_status", "yes", "expected one of true, false, got \"yes\""},
    {"auth", "protect_status", "True", "expected one of true, false"},
    {"auth", "protect_status", "", "expected one of true, false"},
    /* path */
    {"storage", "path", "", "expected a path"},
    /* rate */
    {"limits", "rate", "0.5", NULL},
    {"limits", "rate", "1000000", NULL},
    {"limits", "rate", "-1", "expected a decimal number of requests per second"},
    {"limits", "rate", "1e3", "expected a decimal number"},
    {"limits", "rate", "1.", "expected a decimal number"},
    {"limits", "rate", ".5", "expected a decimal number"},
    {"limits", "rate", "inf", "expected a decimal number"},
    {"limits", "rate", "nan", "expected a decimal number"},
    {"limits", "rate", "1000000.5", "expected a decimal number"},
    {"limits", "rate", "", "expected a decimal number"},
    /* strings: empty = unset, anything else kept */
    {"storage", "dsn", "", NULL},
    {"workers", "fulfilment_command", "", NULL},
    {"auth", "keys_file", "", NULL},
};

START_TEST(test_value)
{
    const struct value_case *vc = &value_cases[_i];
    char text[512];
    struct loaded *l;

    /* a rate needs a burst; give one so that only the value under test matters */
    snprintf(text, sizeof(text), "%s[%s]\n%s = %s\n",
             strcmp(vc->key, "rate") == 0 ? "[limits]\nburst = 1\n" : "#\n#\n", vc->section,
             vc->key, vc->value);
    l = load_text(text, NULL);
    if (vc->want == NULL)
        assert_ok(l);
    else
        assert_one_error(l, 4, vc->section, vc->key, vc->want);
    loaded_free(l);
}
END_TEST

START_TEST(test_bad_value_keeps_default)
{
    struct loaded *l = load_text("[workers]\ncount = many\n", NULL);

    ck_assert_int_eq(l->rc, -EINVAL);
    ck_assert_uint_eq(l->cfg.worker_count, 2);
    loaded_free(l);
}
END_TEST

/* ---- durations and sizes ------------------------------------------------------ */

struct number_case {
    const char *text;
    int rc;
    uint64_t want;
};

static const struct number_case duration_cases[] = {
    {"250ms", 0, 250},
    {"30s", 0, 30000},
    {"5m", 0, 300000},
    {"1h", 0, 3600000},
    {"0s", 0, 0},
    {"0", 0, 0},
    {"00", -EINVAL, 0},
    {"0ms", 0, 0},
    {"007s", 0, 7000},
    {"18446744073709551615ms", 0, UINT64_MAX},
    {"5124095576030h", 0, UINT64_C(5124095576030) * 3600000},
    {"18446744073709551616ms", -EINVAL, 0}, /* digits overflow */
    {"5124095576031h", -EINVAL, 0},         /* unit overflows */
    {"18446744073709552s", -EINVAL, 0},
    {"30", -EINVAL, 0},
    {"1.5s", -EINVAL, 0},
    {"10 s", -EINVAL, 0},
    {" 10s", -EINVAL, 0},
    {"10s ", -EINVAL, 0},
    {"-1s", -EINVAL, 0},
    {"+1s", -EINVAL, 0},
    {"s", -EINVAL, 0},
    {"", -EINVAL, 0},
    {"10sec", -EINVAL, 0},
    {"10S", -EINVAL, 0},
    {"10d", 0, UINT64_C(864000000)},
    {"213503982335d", -EINVAL, 0},          /* unit overflows */
    {"10us", -EINVAL, 0},
    {"1h30m", -EINVAL, 0},
    {"10ms5", -EINVAL, 0},
};

START_TEST(test_duration)
{
    const struct number_case *nc = &duration_cases[_i];
    uint64_t out = 12345;

    ck_assert_msg(config_parse_duration_ms(nc->text, &out) == nc->rc, "\"%s\"", nc->text);
    if (nc->rc == 0)
        ck_assert_uint_eq(out, nc->want);
    else
        ck_assert_uint_eq(out, 12345); /* untouched on error */
}
END_TEST

static const struct number_case size_cases[] = {
    {"0", 0, 0},
    {"65536", 0, 65536},
    {"64k", 0, 65536},
    {"1M", 0, 1048576},
    {"16M", 0, 16777216},
    {"18446744073709551615", 0, UINT64_MAX},
    {"18014398509481983k", 0, UINT64_C(18014398509481983) * 1024},
    {"18446744073709551616", -EINVAL, 0},
    {"18014398509481984k", -EINVAL, 0},
    {"17592186044416M", -EINVAL, 0},
    {"1G", -EINVAL, 0},
    {"1m", -EINVAL, 0},
    {"1K", -EINVAL, 0},
    {"1kB", -EINVAL, 0},
    {"1.5k", -EINVAL, 0},
    {"k", -EINVAL, 0},
    {"", -EINVAL, 0},
    {" 1", -EINVAL, 0},
    {"1 k", -EINVAL, 0},
    {"-1", -EINVAL, 0},
    {"0x10", -EINVAL, 0},
};

START_TEST(test_size)
{
    const struct number_case *nc = &size_cases[_i];
    uint64_t out = 12345;

    ck_assert_msg(config_parse_size(nc->text, &out) == nc->rc, "\"%s\"", nc->text);
    if (nc->rc == 0)
        ck_assert_uint_eq(out, nc->want);
    else
        ck_assert_uint_eq(out, 12345);
}
END_TEST

START_TEST(test_parse_null)
{
    uint64_t out;

    ck_assert_int_eq(config_parse_duration_ms(NULL, &out), -EINVAL);
    ck_assert_int_eq(config_parse_duration_ms("1s", NULL), -EINVAL);
    ck_assert_int_eq(config_parse_size(NULL, &out), -EINVAL);
    ck_assert_int_eq(config_parse_size("1", NULL), -EINVAL);
}
END_TEST

/* ---- syntax, sections, keys, lines ------------------------------------------- */

struct syntax_case {
    const char *text;
    unsigned line;
    const char *section;
    const char *key;
    const char *want;
};

static const struct syntax_case syntax_cases[] = {
    {"[lgo]\nlevel = debug\n", 1, "lgo", "", "unknown section (expected one of server, "},
    {"[server]\n[]\nlisten = x\n", 2, "", "", "unknown section"},
    {"[server\nlisten = x\n", 1, "", "", "no closing ']'"},
    {"[server]\nlisten\n", 2, "", "", "expected \"key = value\""},
    /* ':' separates too (inih's configparser concession) */
    {"[server]\nlisten 127.0.0.1:80\n", 2, "server", "listen 127.0.0.1", "unknown key"},
    {"[server]\n  # fine\nfoo ;= bar\n", 3, "", "", "expected \"key = value\""},
    {"listen = 127.0.0.1:80\n[server]\n", 1, "", "listen", "key before any [section]"},
    {"[server]\nlisen = 127.0.0.1:80\n", 2, "server", "lisen",
     "unknown key (expected one of listen, max_body_bytes, tls_cert"},
    {"[server]\nListen = 127.0.0.1:80\n", 2, "server", "Listen", "unknown key"},
    {"[log]\nlisten = 127.0.0.1:80\n", 2, "log", "listen", "unknown key (expected one of level, format)"},
    {"[server]\n= 1\n", 2, "server", "", "expected a key name"},
    {"[log]\nlevel = debug\n\nlevel = warn\n", 4, "log", "level",
     "duplicate key (first set on line 2)"},
    {"[log]\nlevel = debug\n[server]\n[log]\nlevel = warn\n", 5, "log", "level",
     "duplicate key (first set on line 2)"},
};

START_TEST(test_syntax)
{
    const struct syntax_case *sc = &syntax_cases[_i];
    struct loaded *l = load_text(sc->text, NULL);

    assert_one_error(l, sc->line, sc->section, sc->key, sc->want);
    loaded_free(l);
}
END_TEST

/* A rejected value still counts as set: a second one is a duplicate. */
START_TEST(test_rejected_value_counts_as_set)
{
    struct loaded *l = load_text("[log]\nlevel = bogus\nlevel = warn\n", NULL);

    ck_assert_uint_eq(l->errs.count, 2);
    ck_assert_uint_eq(l->errs.items[0].line, 2);
    ck_assert_uint_eq(l->errs.items[1].line, 3);
    assert_contains(l->errs.items[1].message, "duplicate key (first set on line 2)");
    loaded_free(l);
}
END_TEST

START_TEST(test_unknown_section_skips_its_keys)
{
    struct loaded *l = load_text("[lgo]\nlevel = debug\nbogus = 1\n[log]\nlevel = warn\n", NULL);

    assert_one_error(l, 1, "lgo", "", "unknown section");
    ck_assert_int_eq(l->cfg.log_level, LOG_LEVEL_WARN);
    loaded_free(l);
}
END_TEST

START_TEST(test_several_errors_with_their_lines)
{
    static const char text[] = "# orderd\n"                   /* 1 */
                               "[server]\n"                   /* 2 */
                               "listen = 127.0.0.1:8080\n"    /* 3 */
                               "max_body_bytes = 64 k\n"      /* 4: bad */
                               "\n"                           /* 5 */
                               "; comment\n"                  /* 6 */
                               "nonsense\n"                   /* 7: syntax */
                               "[queue]\n"                    /* 8 */
                               "visibility_timeout = 30\n"    /* 9: bad */
                               "max_recieves = 5\n"           /* 10: unknown */
                               "[storage]\n"                  /* 11 */
                               "path = a.db\n"                /* 12 */
                               "path = b.db\n"                /* 13: duplicate */
                               "[nope]\n"                     /* 14: unknown section */
                               "x = 1\n"                      /* 15: skipped */
                               "[server\n"                    /* 16: syntax */
                               "[log]\n"                      /* 17 */
                               "format = yaml ; comment\n";   /* 18: bad */
    static const unsigned want_lines[] = {4, 7, 9, 10, 13, 14, 16, 18};
    struct loaded *l = load_text(text, NULL);
    size_t n = sizeof(want_lines) / sizeof(want_lines[0]);

    ck_assert_int_eq(l->rc, -EINVAL);
    ck_assert_msg(l->errs.count == n, "want %zu errors, got:\n%s", n, errors_text(l));
    for (size_t i = 0; i < n; i++)
        ck_assert_uint_eq(l->errs.items[i].line, want_lines[i]);
    ck_assert_str_eq(l->errs.items[7].message, "expected one of json, text, got \"yaml\"");
    ck_assert_str_eq(l->cfg.storage_path, "a.db");
    loaded_free(l);
}
END_TEST

START_TEST(test_inline_comments)
{
    static const char text[] = "# comment\n"
                               "; comment\n"
                               "[server] ; the server\n"
                               "listen = 127.0.0.1:9090 ; comment\n"
                               "[workers] # workers\n"
                               "count = 4 # four\n"
                               "fulfilment_command = /bin/echo a#b;c\n"
                               "[storage]\n"
                               "  path   =   spaced.db   \n"
                               "dsn = ; only a comment\n"
                               "[log]\n"
                               "level: warn\n";
    struct loaded *l = load_text(text, NULL);

    assert_ok(l);
    ck_assert_uint_eq(l->cfg.listen_port, 9090);
    ck_assert_uint_eq(l->cfg.worker_count, 4);
    ck_assert_str_eq(l->cfg.fulfilment_command, "/bin/echo a#b;c");
    ck_assert_str_eq(l->cfg.storage_path, "spaced.db");
    ck_assert_ptr_null(l->cfg.dsn);
    ck_assert_int_eq(l->cfg.log_level, LOG_LEVEL_WARN);
    loaded_free(l);
}
END_TEST

START_TEST(test_crlf_and_bom)
{
    struct loaded *l =
        load_text("\xEF\xBB\xBF[server]\r\nlisten = 127.0.0.1:81\r\n[log]\r\nlevel = error", NULL);

    assert_ok(l);
    ck_assert_uint_eq(l->cfg.listen_port, 81);
    ck_assert_int_eq(l->cfg.log_level, LOG_LEVEL_ERROR);
    loaded_free(l);
}
END_TEST

START_TEST(test_long_lines)
{
    size_t fill = CONFIG_LINE_MAX - strlen("fulfilment_command = ");
    size_t cap = 3 * CONFIG_LINE_MAX;
    char *text = malloc(cap);
    struct loaded *l;
    int n;

    ck_assert_ptr_nonnull(text);
    /* exactly CONFIG_LINE_MAX characters: accepted */
    n = snprintf(text, cap, "[workers]\nfulfilment_command = %0*d\n", (int)fill, 7);
    ck_assert_int_lt(n, (int)cap);
    l = load_text(text, NULL);
    assert_ok(l);
    ck_assert_uint_eq(strlen(l->cfg.fulfilment_command), fill);
    loaded_free(l);
    /* one more: an error of that line, and the lines after still count */
    snprintf(text, cap, "[workers]\nfulfilment_command = %0*d\ncount = 0\n", (int)fill + 1, 7);
    l = load_text(text, NULL);
    ck_assert_uint_eq(l->errs.count, 2);
    ck_assert_uint_eq(l->errs.items[0].line, 2);
    assert_contains(l->errs.items[0].message, "line too long");
    ck_assert_uint_eq(l->errs.items[1].line, 3);
    ck_assert_str_eq(l->errs.items[1].key, "count");
    ck_assert_ptr_null(l->cfg.fulfilment_command);
    loaded_free(l);
    free(text);
}
END_TEST

START_TEST(test_errors_are_capped)
{
    size_t cap = 100 * 16;
    char *text = malloc(cap);
    size_t used = 0;
    struct loaded *l;

    ck_assert_ptr_nonnull(text);
    used += (size_t)snprintf(text, cap, "[server]\n");
    for (int i = 0; i < 100; i++)
        used += (size_t)snprintf(text + used, cap - used, "k%d = 1\n", i);
    l = load_text(text, NULL);
    ck_assert_int_eq(l->rc, -EINVAL);
    ck_assert_uint_eq(l->errs.count, CONFIG_ERRORS_MAX);
    ck_assert_uint_eq(l->errs.dropped, 100 - CONFIG_ERRORS_MAX);
    ck_assert_uint_eq(l->errs.items[CONFIG_ERRORS_MAX - 1].line, CONFIG_ERRORS_MAX + 1);
    loaded_free(l);
    free(text);
}
END_TEST

START_TEST(test_null_text)
{
    struct config c;
    struct config_errors e;

    ck_assert_int_eq(config_load_string(NULL, NULL, &c, &e), -EINVAL);
    ck_assert_uint_eq(e.count, 1);
    assert_defaults(&c);
    config_free(&c);
    ck_assert_int_eq(config_load_string("", NULL, NULL, &e), -EINVAL);
    ck_assert_int_eq(config_load_string("", NULL, &c, NULL), -EINVAL);
}
END_TEST

/* ---- checks between keys ------------------------------------------------------ */

static const struct syntax_case cross_cases[] = {
    {"[server]\ntls_cert = /c.pem\n", 2, "server", "tls_cert", "set both or neither"},
    {"[server]\ntls_key = /k.pem\n", 2, "server", "tls_key", "set both or neither"},
    {"[server]\ntls_cert = /c.pem\ntls_key =\n", 3, "server", "tls_key", "set both or neither"},
    {"[storage]\nbackend = postgres\n", 2, "storage", "backend", "needs a dsn"},
    {"[storage]\nbackend = postgres\ndsn =\n", 3, "storage", "dsn", "needs a dsn"},
    {"[queue]\nbackoff_max = 500ms\n", 2, "queue", "backoff_max",
     "backoff_max (500ms) must be at least backoff_base (1s)"},
    {"[queue]\nbackoff_max = 2s\nbackoff_base = 3s\n", 3, "queue", "backoff_base",
     "backoff_max (2s) must be at least backoff_base (3s)"},
    {"[limits]\nrate = 10\n", 2, "limits", "rate", "burst must be at least 1 when rate is above 0"},
    {"[limits]\nrate = 10\nburst = 0\n", 3, "limits", "burst", "burst must be at least 1"},
    {"[auth]\nprotect_status = true\n", 2, "auth", "protect_status", "needs a keys_file"},
    {"[auth]\nprotect_status = true\nkeys_file =\n", 3, "auth", "keys_file",
     "needs a keys_file"},
};

START_TEST(test_cross)
{
    const struct syntax_case *sc = &cross_cases[_i];
    struct loaded *l = load_text(sc->text, NULL);

    assert_one_error(l, sc->line, sc->section, sc->key, sc->want);
    loaded_free(l);
}
END_TEST

START_TEST(test_cross_ok)
{
    static const char *const texts[] = {
        "[server]\ntls_cert = /c.pem\ntls_key = /k.pem\n",
        "[storage]\nbackend = postgres\ndsn = host=db\n",
        "[queue]\nbackoff_base = 5s\nbackoff_max = 5s\n",
        "[limits]\nrate = 0\nburst = 5\n",
        "[limits]\nrate = 0.1\nburst = 1\n",
        "[auth]\nkeys_file = /k\nprotect_status = true\n",
        "[auth]\nprotect_status = false\n",
    };

    for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
        struct loaded *l = load_text(texts[i], NULL);
        assert_ok(l);
        loaded_free(l);
    }
}
END_TEST

START_TEST(test_cross_skipped_after_bad_value)
{
    /* backoff_base is bad: no second error comparing it with backoff_max */
    struct loaded *l = load_text("[queue]\nbackoff_max = 500ms\nbackoff_base = 2 s\n", NULL);

    assert_one_error(l, 3, "queue", "backoff_base", "expected a duration with a unit");
    loaded_free(l);
}
END_TEST

/* ---- environment ------------------------------------------------------------- */

START_TEST(test_env_overrides)
{
    char *env[] = {
        "PATH=/usr/bin",
        "ORDERDX=1",
        "orderd_server_listen=ignored",
        "ORDERD_SERVER_LISTEN=0.0.0.0:9000",
        "ORDERD_SERVER_MAX_BODY_BYTES=128k",
        "ORDERD_SERVER_THREADS=4",
        "ORDERD_STORAGE_PATH=var/orderd.db",
        "ORDERD_LOG_LEVEL= debug ",
        "ORDERD_LOG_FORMAT=text",
        "ORDERD_WORKERS_COUNT=8",
        "ORDERD_WORKERS_FULFILMENT_COMMAND=",
        "ORDERD_Limits_Rate=5",
        "ORDERD_LIMITS_BURST=10",
        "ORDERD_SERVER_DRAIN_GRACE=3s",
        "ORDERD_AUTH_KEYS_FILE=/k",
        "ORDERD_AUTH_PROTECT_STATUS=true",
        NULL,
    };
    struct loaded *l =
        load_text("[log]\nlevel = error\n[workers]\nfulfilment_command = /bin/true\n", env);

    assert_ok(l);
    ck_assert_str_eq(l->cfg.listen, "0.0.0.0:9000");
    ck_assert_str_eq(l->cfg.listen_host, "0.0.0.0");
    ck_assert_uint_eq(l->cfg.listen_port, 9000);
    ck_assert_uint_eq(l->cfg.max_body_bytes, 131072);
    ck_assert_uint_eq(l->cfg.http_threads, 4);
    ck_assert_str_eq(l->cfg.storage_path, "var/orderd.db");
    ck_assert_int_eq(l->cfg.log_level, LOG_LEVEL_DEBUG);
    ck_assert_int_eq(l->cfg.log_format, LOG_FORMAT_TEXT);
    ck_assert_uint_eq(l->cfg.worker_count, 8);
    ck_assert_ptr_null(l->cfg.fulfilment_command);
    ck_assert_double_eq(l->cfg.rate, 5);
    ck_assert_uint_eq(l->cfg.burst, 10);
    ck_assert_uint_eq(l->cfg.drain_grace_ms, 3000);
    ck_assert(l->cfg.protect_status);
    loaded_free(l);
}
END_TEST

START_TEST(test_env_fixes_a_bad_file_value)
{
    char *env[] = {"ORDERD_QUEUE_BACKOFF_BASE=2s", NULL};
    struct loaded *l = load_text("[queue]\nbackoff_base = 2\nbackoff_max = 1s\n", env);

    /* the file's error stays; the env value then takes part in the checks */
    ck_assert_uint_eq(l->errs.count, 2);
    ck_assert_uint_eq(l->errs.items[0].line, 2);
    ck_assert_str_eq(l->errs.items[1].key, "ORDERD_QUEUE_BACKOFF_BASE");
    assert_contains(l->errs.items[1].message, "must be at least backoff_base (2s)");
    loaded_free(l);
}
END_TEST

struct env_case {
    const char *file; /* fine on its own, until the variable applies */
    const char *var;
    const char *key; /* the name reported */
    const char *want;
    const char *secret; /* must not appear in the message */
};

static const struct env_case env_cases[] = {
    {"", "ORDERD_QUEUE_BACKOFF_MAX=30", "ORDERD_QUEUE_BACKOFF_MAX",
     "expected a duration with a unit (ms, s, m, h, d), got \"30\"", NULL},
    {"", "ORDERD_WORKERS_COUNT=", "ORDERD_WORKERS_COUNT", "got an empty value", NULL},
    {"", "ORDERD_SERVER_LISTN=0.0.0.0:1", "ORDERD_SERVER_LISTN", "no such setting", "0.0.0.0:1"},
    {"", "ORDERD_FOO=1", "ORDERD_FOO", "no such setting", NULL},
    {"", "ORDERD_=1", "ORDERD_", "no such setting", NULL},
    {"", "ORDERD_SERVER=1", "ORDERD_SERVER", "no such setting", NULL},
    {"", "ORDERD_SERVER_=1", "ORDERD_SERVER_", "no such setting", NULL},
    {"", "ORDERD_LOGS_LEVEL=debug", "ORDERD_LOGS_LEVEL", "no such setting", NULL},
    {"", "ORDERD_AUTH_API_KEY=hunter2", "ORDERD_AUTH_API_KEY", "no such setting", "hunter2"},
    {"", "ORDERD_SERVER_TLS_KEY=/secret/k.pem", "ORDERD_SERVER_TLS_KEY", "set both or neither",
     "/secret"},
    {"", "ORDERD_STORAGE_BACKEND=postgres", "ORDERD_STORAGE_BACKEND", "needs a dsn", NULL},
    {"[storage]\nbackend = postgres\ndsn = host=x\n", "ORDERD_STORAGE_DSN=", "ORDERD_STORAGE_DSN", "needs a dsn", NULL},
    {"", "ORDERD_LIMITS_RATE=3", "ORDERD_LIMITS_RATE", "burst must be at least 1", NULL},
};

START_TEST(test_env_error)
{
    const struct env_case *ec = &env_cases[_i];
    char *env[] = {(char *)ec->var, NULL};
    struct loaded *l = load_text(ec->file, env);

    assert_one_error(l, 0, "", ec->key, ec->want);
    if (ec->secret != NULL)
        ck_assert_ptr_null(strstr(l->errs.items[0].message, ec->secret));
    loaded_free(l);
}
END_TEST

/* ---- printing ------------------------------------------------------------------ */

static char *print_to_string(const struct config_errors *errs, const char *path)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);

    ck_assert_ptr_nonnull(f);
    config_errors_print(errs, path, f);
    ck_assert_int_eq(fclose(f), 0);
    return buf;
}

START_TEST(test_print_format)
{
    char *env[] = {"ORDERD_LOG_LEVEL=loud", NULL};
    struct loaded *l = load_text("junk\n[server]\nmax_connections = 0\n[bad]\n"
                                 "[queue]\nbackoff_max = 1ms\n",
                                 env);
    char *s = print_to_string(&l->errs, "/etc/orderd/orderd.conf");

    ck_assert_str_eq(s, "/etc/orderd/orderd.conf:1: expected \"key = value\", \"[section]\" or "
                        "a comment (; or #)\n"
                        "/etc/orderd/orderd.conf:3: [server] max_connections: expected an "
                        "integer from 1 to 100000, got \"0\"\n"
                        "/etc/orderd/orderd.conf:4: [bad]: unknown section (expected one of "
                        "server, storage, queue, workers, limits, auth, retention, tracing, log)\n"
                        "environment: ORDERD_LOG_LEVEL: expected one of debug, info, warn, "
                        "error, got \"loud\"\n"
                        "/etc/orderd/orderd.conf:6: [queue] backoff_max: backoff_max (1ms) must "
                        "be at least backoff_base (1s)\n");
    free(s);
    loaded_free(l);
}
END_TEST

START_TEST(test_print_line_zero_and_dropped)
{
    struct config_errors errs;
    char *s;

    memset(&errs, 0, sizeof(errs));
    errs.count = 3;
    snprintf(errs.items[0].message, sizeof(errs.items[0].message), "cannot open: No such file");
    errs.items[1].line = 0;
    snprintf(errs.items[1].section, sizeof(errs.items[1].section), "server");
    snprintf(errs.items[1].key, sizeof(errs.items[1].key), "tls_key");
    snprintf(errs.items[1].message, sizeof(errs.items[1].message), "whole-file message");
    errs.items[2].line = 7;
    snprintf(errs.items[2].key, sizeof(errs.items[2].key), "listen");
    snprintf(errs.items[2].message, sizeof(errs.items[2].message), "key before any [section]");
    errs.dropped = 5;
    s = print_to_string(&errs, "x.conf");
    ck_assert_str_eq(s, "x.conf: cannot open: No such file\n"
                        "x.conf: [server] tls_key: whole-file message\n"
                        "x.conf:7: listen: key before any [section]\n"
                        "x.conf: 5 more errors not shown\n");
    free(s);
    errs.count = 0;
    errs.dropped = 1;
    s = print_to_string(&errs, NULL);
    ck_assert_str_eq(s, "config: 1 more error not shown\n");
    free(s);
    config_errors_print(NULL, "x", stderr); /* never fails */
}
END_TEST

/* config_error_format() is the line config_errors_print() prints. */
START_TEST(test_error_format)
{
    char *env[] = {"ORDERD_LOG_LEVEL=loud", NULL};
    struct loaded *l = load_text("junk\n[server]\nmax_connections = 0\n", env);
    char *printed = print_to_string(&l->errs, "a.conf");
    char line[512], joined[2048] = "";

    for (size_t i = 0; i < l->errs.count; i++) {
        config_error_format(&l->errs.items[i], "a.conf", line, sizeof(line));
        strcat(joined, line);
        strcat(joined, "\n");
    }
    ck_assert_str_eq(joined, printed);
    config_error_format(&l->errs.items[1], "a.conf", line, 12);
    ck_assert_str_eq(line, "a.conf:3: ["); /* cut, still terminated */
    free(printed);
    loaded_free(l);
}
END_TEST

/* ---- errors placed at a key, and warnings ------------------------------------------ */

START_TEST(test_key_error_placement)
{
    char *env[] = {"ORDERD_AUTH_KEYS_FILE=/etc/orderd/keys", NULL};
    struct loaded *l = load_text("[server]\nlisten = 127.0.0.1:1\n\ntls_cert = /c.pem\n"
                                 "tls_key = /k.pem\n",
                                 env);
    struct config_errors e = {0};

    assert_ok(l);
    config_key_error(&l->cfg, "server", "tls_key", &e, "cannot read %s", "/k.pem");
    config_key_error(&l->cfg, "auth", "keys_file", &e, "not here");
    config_key_error(&l->cfg, "server", "tls_cert", &e, "set on line %d", 4);
    config_key_error(&l->cfg, "log", "level", &e, "a default");
    ck_assert_uint_eq(e.count, 4);
    char *s = print_to_string(&e, "x.conf");
    ck_assert_str_eq(s, "x.conf:5: [server] tls_key: cannot read /k.pem\n"
                        "environment: ORDERD_AUTH_KEYS_FILE: not here\n"
                        "x.conf:4: [server] tls_cert: set on line 4\n"
                        "x.conf: [log] level: a default\n");
    free(s);
    loaded_free(l);
}
END_TEST

START_TEST(test_warnings)
{
    struct config_errors w;
    struct loaded *l = load_text("[workers]\ncount = 8\nfulfilment_url = http://x.test/\n"
                                 "fulfilment_concurrency = 4\n",
                                 NULL);

    assert_ok(l);
    memset(&w, 0xff, sizeof(w)); /* reset by config_warnings */
    config_warnings(&l->cfg, &w);
    ck_assert_uint_eq(w.count, 1);
    ck_assert_uint_eq(w.dropped, 0);
    ck_assert_uint_eq(w.items[0].line, 2);
    ck_assert_str_eq(w.items[0].key, "count");
    assert_contains(w.items[0].message, "8 threads, but fulfilment_concurrency is 4");
    assert_contains(w.items[0].message, "only 4 of them run fulfilments");
    loaded_free(l);

    /* from the environment: named as the variable */
    char *env[] = {"ORDERD_WORKERS_COUNT=3", NULL};
    l = load_text("[workers]\nfulfilment_command = /bin/x\nfulfilment_concurrency = 2\n", env);
    config_warnings(&l->cfg, &w);
    ck_assert_uint_eq(w.count, 1);
    ck_assert_str_eq(w.items[0].key, "ORDERD_WORKERS_COUNT");
    loaded_free(l);

    static const char *const quiet[] = {
        "[workers]\ncount = 8\nfulfilment_concurrency = 2\n", /* no fulfilment: no share */
        "[workers]\nfulfilment_command = /bin/x\n",           /* 2 threads, 64 */
        "[workers]\ncount = 4\nfulfilment_command = x\nfulfilment_concurrency = 4\n",
        /* a lease shorter than the fulfilment is renewed while it runs */
        "[queue]\nvisibility_timeout = 1s\n[workers]\nfulfilment_command = x\n"
        "fulfilment_timeout = 1h\n",
    };
    for (size_t i = 0; i < sizeof(quiet) / sizeof(quiet[0]); i++) {
        l = load_text(quiet[i], NULL);
        assert_ok(l);
        config_warnings(&l->cfg, &w);
        ck_assert_msg(w.count == 0, "%s: %s", quiet[i], w.items[0].message);
        loaded_free(l);
    }
}
END_TEST

/* ---- files --------------------------------------------------------------------- */

START_TEST(test_load_file_errors)
{
    struct config c;
    struct config_errors e;
    char path[] = "/tmp/orderd-config-XXXXXX";
    int fd = mkstemp(path);
    static const char text[] = "[server]\nlisten = 1.2.3.4:5\nthreads = x\n";

    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, text, sizeof(text) - 1), (int)(sizeof(text) - 1));
    ck_assert_int_eq(close(fd), 0);
    ck_assert_int_eq(config_load(path, NULL, &c, &e), -EINVAL);
    ck_assert_uint_eq(e.count, 1);
    ck_assert_uint_eq(e.items[0].line, 3);
    ck_assert_str_eq(c.listen_host, "1.2.3.4");
    config_free(&c);
    ck_assert_int_eq(unlink(path), 0);

    ck_assert_int_eq(config_load(path, NULL, &c, &e), -ENOENT);
    ck_assert_uint_eq(e.count, 1);
    ck_assert_uint_eq(e.items[0].line, 0);
    assert_contains(e.items[0].message, "cannot open");
    assert_defaults(&c);
    config_free(&c);

    ck_assert_int_eq(config_load("/tmp", NULL, &c, &e), -EISDIR);
    ck_assert_uint_eq(e.count, 1);
    assert_contains(e.items[0].message, "cannot read");
    config_free(&c);

    ck_assert_int_eq(config_load(NULL, NULL, &c, &e), -EINVAL);
    config_free(&c);
}
END_TEST

static const char *const shipped[] = {
    "etc/orderd/orderd.conf",
    "etc/orderd/dev.conf",
    "etc/orderd/staging.conf",
    "etc/orderd/prod.conf",
};

START_TEST(test_shipped_file)
{
    struct config c;
    struct config_errors e;
    int rc = config_load(shipped[_i], NULL, &c, &e);

    if (rc != 0)
        config_errors_print(&e, shipped[_i], stderr);
    ck_assert_int_eq(rc, 0);
    ck_assert_uint_eq(e.count, 0);
    switch (_i) {
    case 0:
        assert_defaults(&c); /* the example shows every default */
        break;
    case 1:
        ck_assert_str_eq(c.listen, "127.0.0.1:8080");
        ck_assert_str_eq(c.storage_path, "var/orderd.db");
        ck_assert_int_eq(c.durability, DURABILITY_NORMAL);
        ck_assert_int_eq(c.log_level, LOG_LEVEL_DEBUG);
        ck_assert_int_eq(c.log_format, LOG_FORMAT_TEXT);
        ck_assert_ptr_null(c.keys_file);
        ck_assert_double_eq(c.rate, 0);
        break;
    case 2:
        ck_assert_int_eq(c.durability, DURABILITY_FULL);
        ck_assert_int_eq(c.log_level, LOG_LEVEL_INFO);
        ck_assert_int_eq(c.log_format, LOG_FORMAT_JSON);
        ck_assert_str_eq(c.keys_file, "/etc/orderd/keys");
        ck_assert(c.rate > 0);
        break;
    default:
        ck_assert_str_eq(c.listen, "0.0.0.0:8443");
        ck_assert_uint_eq(c.listen_port, 8443);
        ck_assert_int_eq(c.durability, DURABILITY_FULL);
        ck_assert_str_eq(c.tls_cert, "/etc/orderd/tls/cert.pem");
        ck_assert_str_eq(c.tls_key, "/etc/orderd/tls/key.pem");
        ck_assert_str_eq(c.keys_file, "/etc/orderd/keys");
        ck_assert_uint_eq(c.worker_count, 4);
        ck_assert(c.rate > 0);
        ck_assert_uint_eq(c.drain_grace_ms, 5000);
        break;
    }
    config_free(&c);
}
END_TEST

/* A file with a NUL byte: an error of that line, not a silently cut value. */
START_TEST(test_load_file_with_nul)
{
    struct config c;
    struct config_errors e;
    char path[] = "/tmp/orderd-config-XXXXXX";
    int fd = mkstemp(path);
    static const char text[] = "[log]\nlevel = de\0bug\nformat = text\n";

    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, text, sizeof(text) - 1), (int)(sizeof(text) - 1));
    ck_assert_int_eq(close(fd), 0);
    ck_assert_int_eq(config_load(path, NULL, &c, &e), -EINVAL);
    ck_assert_uint_eq(e.count, 1);
    ck_assert_uint_eq(e.items[0].line, 2);
    assert_contains(e.items[0].message, "NUL");
    ck_assert_int_eq(c.log_level, LOG_LEVEL_INFO);
    ck_assert_int_eq(c.log_format, LOG_FORMAT_TEXT);
    config_free(&c);
    ck_assert_int_eq(unlink(path), 0);
}
END_TEST

/* Loads from several threads at once (TSan checks the one-time inih setup). */
static void *load_in_thread(void *arg)
{
    const char *path = arg;

    for (int i = 0; i < 20; i++) {
        struct config c;
        struct config_errors e;
        int rc = config_load(path, NULL, &c, &e);
        config_free(&c);
        if (rc != 0)
            return (void *)path;
    }
    return NULL;
}

START_TEST(test_concurrent_loads)
{
    pthread_t threads[4];

    for (int i = 0; i < 4; i++)
        ck_assert_int_eq(pthread_create(&threads[i], NULL, load_in_thread, (void *)shipped[i]),
                         0);
    for (int i = 0; i < 4; i++) {
        void *failed = NULL;
        ck_assert_int_eq(pthread_join(threads[i], &failed), 0);
        ck_assert_ptr_null(failed);
    }
}
END_TEST

/* `make run`'s environment over dev.conf. */
START_TEST(test_dev_with_make_run_env)
{
    char *env[] = {"ORDERD_STORAGE_PATH=var/orderd.db", "ORDERD_LOG_FORMAT=text", NULL};
    struct config c;
    struct config_errors e;

    ck_assert_int_eq(config_load("etc/orderd/dev.conf", env, &c, &e), 0);
    config_free(&c);
}
END_TEST

#define N(a) ((int)(sizeof(a) / sizeof((a)[0])))

Suite *suite_config(void)
{
    Suite *s = suite_create("config");
    TCase *basics = tcase_create("basics");
    tcase_set_timeout(basics, UNIT_TIMEOUT_LOGIC);
    TCase *values = tcase_create("values");
    tcase_set_timeout(values, UNIT_TIMEOUT_LOGIC);
    TCase *syntax = tcase_create("syntax");
    tcase_set_timeout(syntax, UNIT_TIMEOUT_LOGIC);
    TCase *cross = tcase_create("cross");
    tcase_set_timeout(cross, UNIT_TIMEOUT_LOGIC);
    TCase *env = tcase_create("env");
    tcase_set_timeout(env, UNIT_TIMEOUT_LOGIC);
    TCase *print = tcase_create("print");
    tcase_set_timeout(print, UNIT_TIMEOUT_LOGIC);
    TCase *files = tcase_create("files");
    tcase_set_timeout(files, UNIT_TIMEOUT_LOGIC);

    tcase_add_test(basics, test_init_defaults);
    tcase_add_test(basics, test_empty_file_gives_defaults);
    tcase_add_test(basics, test_every_key);
    tcase_add_test(basics, test_spec_block_accepted);
    tcase_add_test(basics, test_null_text);
    suite_add_tcase(s, basics);

    tcase_add_loop_test(values, test_value, 0, N(value_cases));
    tcase_add_test(values, test_bad_value_keeps_default);
    tcase_add_loop_test(values, test_duration, 0, N(duration_cases));
    tcase_add_loop_test(values, test_size, 0, N(size_cases));
    tcase_add_test(values, test_parse_null);
    suite_add_tcase(s, values);

    tcase_add_loop_test(syntax, test_syntax, 0, N(syntax_cases));
    tcase_add_test(syntax, test_rejected_value_counts_as_set);
    tcase_add_test(syntax, test_unknown_section_skips_its_keys);
    tcase_add_test(syntax, test_several_errors_with_their_lines);
    tcase_add_test(syntax, test_inline_comments);
    tcase_add_test(syntax, test_crlf_and_bom);
    tcase_add_test(syntax, test_long_lines);
    tcase_add_test(syntax, test_errors_are_capped);
    suite_add_tcase(s, syntax);

    tcase_add_loop_test(cross, test_cross, 0, N(cross_cases));
    tcase_add_test(cross, test_cross_ok);
    tcase_add_test(cross, test_cross_skipped_after_bad_value);
    suite_add_tcase(s, cross);

    tcase_add_test(env, test_env_overrides);
    tcase_add_test(env, test_env_fixes_a_bad_file_value);
    tcase_add_loop_test(env, test_env_error, 0, N(env_cases));
    suite_add_tcase(s, env);

    tcase_add_test(print, test_print_format);
    tcase_add_test(print, test_print_line_zero_and_dropped);
    tcase_add_test(print, test_error_format);
    tcase_add_test(print, test_key_error_placement);
    tcase_add_test(print, test_warnings);
    suite_add_tcase(s, print);

    tcase_add_test(files, test_load_file_errors);
    tcase_add_loop_test(files, test_shipped_file, 0, N(shipped));
    tcase_add_test(files, test_dev_with_make_run_env);
    tcase_add_test(files, test_load_file_with_nul);
    tcase_add_test(files, test_concurrent_loads);
    suite_add_tcase(s, files);
    return s;
}
