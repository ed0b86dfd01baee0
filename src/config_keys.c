/*
 * config_keys.c — the keys of the config file and the rules between them.
 *
 * Owns: the one table of keys (section, name, type, range, field of struct
 * config) and the list of sections, finding a key by its name, the defaults
 * (config_init) and config_free(), the checks between keys that make a config
 * invalid (config_cross_check: run last by config.c's loader, blaming the key
 * set last), and the warnings about valid keys that work against each other
 * (config_warnings). A new key is a line of the table, a field of struct
 * config and its default here; the parser of its type is config_values.c's.
 *
 * Threads: pure functions of their input (the table is constant), any thread.
 */
#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config_int.h"

#define RATE_MAX 1000000 /* requests/s per client; more is "off" in practice */

#define DEFAULT_LISTEN "127.0.0.1:8080"
#define DEFAULT_LISTEN_HOST "127.0.0.1"
#define DEFAULT_LISTEN_PORT 8080
#define DEFAULT_STORAGE_PATH "/var/lib/orderd/orderd.db"

/* ---- the keys ------------------------------------------------------------ */

#define KEY(sec, key, type, field, lo, hi) \
    {sec, key, type, offsetof(struct config, field), lo, hi}

const struct key_def config_key_defs[] = {
    KEY("server", "listen", KT_LISTEN, listen, 0, 0),
    KEY("server", "max_body_bytes", KT_SIZE, max_body_bytes, 1, 16 * MIB),
    KEY("server", "tls_cert", KT_STRING, tls_cert, 0, 0),
    KEY("server", "tls_key", KT_STRING, tls_key, 0, 0),
    KEY("server", "max_connections", KT_U32, max_connections, 1, 100000),
    KEY("server", "max_connections_per_ip", KT_U32, max_connections_per_ip, 0, 100000),
    KEY("server", "request_timeout", KT_DURATION, request_timeout_ms, MS_PER_S, MS_PER_H),
    KEY("server", "threads", KT_U32, http_threads, 0, 64),
    KEY("server", "drain_grace", KT_DURATION, drain_grace_ms, 0, HTTP_DRAIN_TIMEOUT_MS),
    KEY("storage", "backend", KT_BACKEND, backend, 0, 0),
    KEY("storage", "path", KT_PATH, storage_path, 0, 0),
    KEY("storage", "durability", KT_DURABILITY, durability, 0, 0),
    KEY("storage", "dsn", KT_STRING, dsn, 0, 0),
    KEY("queue", "visibility_timeout", KT_DURATION, visibility_timeout_ms, MS_PER_S,
        12 * MS_PER_H),
    KEY("queue", "max_receives", KT_U32, max_receives, 1, 1000),
    KEY("queue", "backoff_base", KT_DURATION, backoff_base_ms, 1, MS_PER_H),
    KEY("queue", "backoff_max", KT_DURATION, backoff_max_ms, 1, 24 * MS_PER_H),
    KEY("queue", "max_depth", KT_U64, max_depth, 1, 1000000000),
    KEY("workers", "count", KT_U32, worker_count, 1, WORKER_COUNT_MAX),
    KEY("workers", "fulfilment_command", KT_STRING, fulfilment_command, 0, 0),
    KEY("workers", "fulfilment_url", KT_STRING, fulfilment_url, 0, 0),
    KEY("workers", "fulfilment_secret_file", KT_STRING, fulfilment_secret_file, 0, 0),
    KEY("workers", "fulfilment_ca_file", KT_STRING, fulfilment_ca_file, 0, 0),
    KEY("workers", "fulfilment_timeout", KT_DURATION, fulfilment_timeout_ms, 100, MS_PER_H),
    KEY("workers", "fulfilment_concurrency", KT_U32, fulfilment_concurrency, 1,
        FULFILMENT_CONCURRENCY_MAX),
    KEY("limits", "rate", KT_RATE, rate, 0, RATE_MAX),
    KEY("limits", "burst", KT_U32, burst, 0, 1000000),
    KEY("auth", "keys_file", KT_STRING, keys_file, 0, 0),
    KEY("auth", "protect_status", KT_BOOL, protect_status, 0, 0),
    KEY("retention", "completed", KT_DURATION, retention_completed_ms, 0, RETENTION_MAX_DAYS * MS_PER_D),
    KEY("retention", "dead_letters", KT_DURATION, retention_dead_letters_ms, 0,
        RETENTION_MAX_DAYS * MS_PER_D),
    KEY("tracing", "otlp_endpoint", KT_STRING, otlp_endpoint, 0, 0),
    KEY("tracing", "service_name", KT_STRING, service_name, 0, 0),
    KEY("tracing", "sample_ratio", KT_RATIO, sample_ratio, 0, 1),
    KEY("tracing", "headers_file", KT_STRING, tracing_headers_file, 0, 0),
    KEY("log", "level", KT_LEVEL, log_level, 0, 0),
    KEY("log", "format", KT_FORMAT, log_format, 0, 0),
};

#define KEYS_COUNT (sizeof(config_key_defs) / sizeof(config_key_defs[0]))
static_assert(KEYS_COUNT <= CONFIG_KEYS_MAX, "struct config's origins must hold every key");
const size_t config_keys_count = KEYS_COUNT;

static const char *const section_names[] = {
    "server", "storage", "queue", "workers", "limits", "auth", "retention", "tracing", "log",
};

int config_key_find(const char *section, const char *name)
{
    for (size_t i = 0; i < KEYS_COUNT; i++)
        if (strcmp(config_key_defs[i].section, section) == 0 &&
            strcmp(config_key_defs[i].name, name) == 0)
            return (int)i;
    return -1;
}

bool config_section_known(const char *section)
{
    for (size_t i = 0; i < sizeof(section_names) / sizeof(section_names[0]); i++)
        if (strcmp(section_names[i], section) == 0)
            return true;
    return false;
}

/* "server, storage, ..." : every section, for the message about an unknown one. */
void config_fmt_sections(char *buf, size_t cap)
{
    size_t used = 0;

    buf[0] = '\0';
    for (size_t i = 0; i < sizeof(section_names) / sizeof(section_names[0]); i++) {
        int w = snprintf(buf + used, cap - used, "%s%s", i == 0 ? "" : ", ", section_names[i]);
        if (w < 0 || (size_t)w >= cap - used)
            break;
        used += (size_t)w;
    }
}

/* "listen, max_body_bytes, ..." for the keys of one section. */
void config_fmt_section_keys(char *buf, size_t cap, const char *section)
{
    size_t used = 0;

    buf[0] = '\0';
    for (size_t i = 0; i < KEYS_COUNT && used < cap; i++) {
        if (strcmp(config_key_defs[i].section, section) != 0)
            continue;
        int w = snprintf(buf + used, cap - used, "%s%s", used == 0 ? "" : ", ",
                         config_key_defs[i].name);
        if (w < 0)
            return;
        used += (size_t)w;
    }
}

/* ---- defaults ----------------------------------------------------------------- */

int config_init(struct config *cfg)
{
    if (cfg == NULL)
        return -EINVAL;
    memset(cfg, 0, sizeof(*cfg));
    cfg->listen_port = DEFAULT_LISTEN_PORT;
    cfg->max_body_bytes = 65536;
    cfg->max_connections = 1024;
    cfg->max_connections_per_ip = 128;
    cfg->request_timeout_ms = 30 * MS_PER_S;
    cfg->http_threads = 0;
    cfg->backend = STORE_BACKEND_SQLITE;
    cfg->durability = DURABILITY_FULL;
    cfg->visibility_timeout_ms = 30 * MS_PER_S;
    cfg->max_receives = 5;
    cfg->backoff_base_ms = 1 * MS_PER_S;
    cfg->backoff_max_ms = 5 * MS_PER_M;
    cfg->max_depth = 1000000;
    cfg->worker_count = 2;
    cfg->fulfilment_timeout_ms = 10 * MS_PER_S;
    cfg->fulfilment_concurrency = 64;
    cfg->rate = 0;
    cfg->burst = 0;
    cfg->log_level = LOG_LEVEL_INFO;
    cfg->log_format = LOG_FORMAT_JSON;
    cfg->sample_ratio = 1.0;
    cfg->listen = strdup(DEFAULT_LISTEN);
    cfg->listen_host = strdup(DEFAULT_LISTEN_HOST);
    cfg->storage_path = strdup(DEFAULT_STORAGE_PATH);
    if (cfg->listen == NULL || cfg->listen_host == NULL || cfg->storage_path == NULL) {
        config_free(cfg);
        return -ENOMEM;
    }
    return 0;
}

static void str_release(char **s, bool secret)
{
    if (*s == NULL)
        return;
    if (secret)
        explicit_bzero(*s, strlen(*s));
    free(*s);
    *s = NULL;
}

void config_free(struct config *cfg)
{
    if (cfg == NULL)
        return;
    str_release(&cfg->listen, false);
    str_release(&cfg->listen_host, false);
    str_release(&cfg->tls_cert, false);
    str_release(&cfg->tls_key, true);
    str_release(&cfg->storage_path, false);
    str_release(&cfg->dsn, true);
    str_release(&cfg->fulfilment_command, false);
    str_release(&cfg->fulfilment_url, false);
    str_release(&cfg->fulfilment_secret_file, false);
    str_release(&cfg->fulfilment_ca_file, false);
    str_release(&cfg->keys_file, true);
    str_release(&cfg->otlp_endpoint, false);
    str_release(&cfg->service_name, false);
    str_release(&cfg->tracing_headers_file, false);
}

/* ---- checks between keys ---------------------------------------------------- */

static int key_index(const char *section, const char *name)
{
    int idx = config_key_find(section, name);

    assert(idx >= 0);
    return idx;
}

/*
 * Reports a broken rule between keys a and b against the one set last (the
 * environment comes after the file, a later line after an earlier one);
 * nothing when either already has an error of its own.
 */
__attribute__((format(printf, 4, 5))) static void cross_report(struct parser *p, int a, int b,
                                                               const char *fmt, ...)
{
    char msg[sizeof(p->errs->items[0].message)];
    int blame = p->keys[b].origin.seq > p->keys[a].origin.seq ? b : a;
    va_list ap;

    if (p->keys[a].bad || p->keys[b].bad)
        return;
    va_start(ap, fmt);
    (void)vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    config_report(p, &p->keys[blame].origin, &config_key_defs[blame], "%s", msg);
}

/* An http:// or https:// URL with a host: what fulfilment_url may be. */
static bool http_url(const char *u)
{
    size_t scheme = strncmp(u, "http://", 7) == 0 ? 7 : strncmp(u, "https://", 8) == 0 ? 8 : 0;
    if (scheme == 0 || u[scheme] == '\0' || u[scheme] == '/')
        return false;
    for (const char *c = u; *c; c++)
        if ((unsigned char)*c <= ' ' || *c == 0x7f)
            return false;
    return true;
}

static void check_fulfilment(struct parser *p)
{
    const struct config *cfg = p->cfg;
    int url = key_index("workers", "fulfilment_url");

    if (cfg->fulfilment_url && cfg->fulfilment_command)
        cross_report(p, key_index("workers", "fulfilment_command"), url,
                     "fulfilment_command and fulfilment_url exclude each other: set one");
    if (cfg->fulfilment_url && !p->keys[url].bad && !http_url(cfg->fulfilment_url))
        config_report(p, &p->keys[url].origin, &config_key_defs[url],
                      "'%s' is not an http:// or https:// URL with a host", cfg->fulfilment_url);
    if (cfg->fulfilment_url == NULL) {
        if (cfg->fulfilment_secret_file)
            cross_report(p, url, key_index("workers", "fulfilment_secret_file"),
                         "fulfilment_secret_file signs HTTP fulfilment: set fulfilment_url");
        if (cfg->fulfilment_ca_file)
            cross_report(p, url, key_index("workers", "fulfilment_ca_file"),
                         "fulfilment_ca_file verifies HTTP fulfilment: set fulfilment_url");
    }
}

void config_cross_check(struct parser *p)
{
    const struct config *cfg = p->cfg;
    char base[32], max[32];

    if ((cfg->tls_cert == NULL) != (cfg->tls_key == NULL))
        cross_report(p, key_index("server", "tls_cert"), key_index("server", "tls_key"),
                     "tls_cert and tls_key go together: set both or neither");
    if (cfg->backend == STORE_BACKEND_POSTGRES && cfg->dsn == NULL)
        cross_report(p, key_index("storage", "backend"), key_index("storage", "dsn"),
                     "backend = postgres needs a dsn (a libpq connection string)");
    if (cfg->backoff_max_ms < cfg->backoff_base_ms) {
        config_format_duration(cfg->backoff_base_ms, base, sizeof(base));
        config_format_duration(cfg->backoff_max_ms, max, sizeof(max));
        cross_report(p, key_index("queue", "backoff_base"), key_index("queue", "backoff_max"),
                     "backoff_max (%s) must be at least backoff_base (%s)", max, base);
    }
    check_fulfilment(p);
    if (cfg->rate > 0 && cfg->burst < 1)
        cross_report(p, key_index("limits", "rate"), key_index("limits", "burst"),
                     "burst must be at least 1 when rate is above 0 (rate = %g)", cfg->rate);
    if (cfg->protect_status && cfg->keys_file == NULL)
        cross_report(p, key_index("auth", "protect_status"), key_index("auth", "keys_file"),
                     "protect_status = true needs a keys_file: without keys no client could "
                     "read /metrics or /status.json");
}

/* ---- warnings ------------------------------------------------------------------ */

void config_warnings(const struct config *cfg, struct config_errors *warns)
{
    config_errs_reset(warns);
    bool fulfil = cfg->fulfilment_command != NULL || cfg->fulfilment_url != NULL;
    if (fulfil && cfg->worker_count > cfg->fulfilment_concurrency)
        config_key_error(cfg, "workers", "count", warns,
                         "%" PRIu32 " threads, but fulfilment_concurrency is %" PRIu32
                         ": only %" PRIu32 " of them run fulfilments; lower count or raise "
                         "fulfilment_concurrency",
                         cfg->worker_count, cfg->fulfilment_concurrency,
                         cfg->fulfilment_concurrency);
}
