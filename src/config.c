/*
 * config.c — the INI file of SPEC "Config file" into a struct config.
 *
 * Owns: the one table of keys (section, name, type, range), the value parsers
 * (durations, sizes, listen addresses, enums, rates), the ORDERD_<SECTION>_<KEY>
 * environment overrides, the checks between keys, and the error list with the
 * line of each error, where each key was set (struct config's origins, so that
 * config_key_error() can place an error found elsewhere at the key's line),
 * and the warnings about valid keys that work against each other
 * (config_warnings). Leaves to others: acting on a config (main.c applies it,
 * the reload path decides what may change live) and checking that the files it
 * names exist (config is pure: it never opens anything but the config file).
 *
 * How a file is read: libinih does the INI syntax, through ini_parse_stream()
 * and our own reader. The reader hands inih one whole line at a time, counts
 * lines (Debian's libinih is built without INI_HANDLER_LINENO, so this is how
 * the key handler knows its line), and looks at each line as inih will: a line
 * that is too long, holds a NUL, is not "key = value" or is a "[section" without
 * its ']' is reported there, with its line, and inih gets a blank line instead.
 * That way every syntax error is named, not only the first one inih returns.
 * Order of assignment: defaults, the file top to bottom, then the environment;
 * the checks between keys run last and blame the key that was set last.
 *
 * Threads: pure functions of their input, callable from any thread. libinih's
 * options are process-wide globals: they are set once, under pthread_once().
 */
#include "config.h"

#include <arpa/inet.h>
#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <ini.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MS_PER_S UINT64_C(1000)
#define MS_PER_M (60 * MS_PER_S)
#define MS_PER_H (60 * MS_PER_M)
#define MS_PER_D (24 * MS_PER_H)
#define KIB UINT64_C(1024)
#define MIB (1024 * KIB)
#define RATE_MAX 1000000      /* requests/s per client; more is "off" in practice */
#define GOT_MAX 60            /* bytes of a bad value quoted back in a message */
#define ENV_PREFIX "ORDERD_"
#define COMMENT_PREFIXES ";#" /* at line start, and inline after whitespace */

#define DEFAULT_LISTEN "127.0.0.1:8080"
#define DEFAULT_LISTEN_HOST "127.0.0.1"
#define DEFAULT_LISTEN_PORT 8080
#define DEFAULT_STORAGE_PATH "/var/lib/orderd/orderd.db"

/* ---- the keys ------------------------------------------------------------ */

enum key_type {
    KT_LISTEN,     /* host:port -> listen, listen_host, listen_port */
    KT_STRING,     /* char *; empty = unset (NULL) */
    KT_PATH,       /* char *; must not be empty */
    KT_U32,        /* uint32_t in [min, max] */
    KT_U64,        /* uint64_t in [min, max] */
    KT_SIZE,       /* uint64_t bytes, k/M suffix, in [min, max] */
    KT_DURATION,   /* uint64_t milliseconds, unit required, in [min, max] */
    KT_RATE,       /* double, decimal, in [min, max] */
    KT_RATIO,      /* double, decimal, in [0, 1] */
    KT_BACKEND,    /* enum store_backend */
    KT_DURABILITY, /* enum durability */
    KT_LEVEL,      /* enum log_level */
    KT_FORMAT,     /* enum log_format */
    KT_BOOL,       /* bool: true | false */
};

struct key_def {
    const char *section;
    const char *name;
    enum key_type type;
    size_t offset; /* of the field in struct config */
    uint64_t min, max;
};

#define KEY(sec, key, type, field, lo, hi) \
    {sec, key, type, offsetof(struct config, field), lo, hi}

static const struct key_def key_defs[] = {
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

#define KEYS_COUNT (sizeof(key_defs) / sizeof(key_defs[0]))
static_assert(KEYS_COUNT <= CONFIG_KEYS_MAX, "struct config's origins must hold every key");

static const char *const section_names[] = {
    "server", "storage", "queue", "workers", "limits", "auth", "retention", "tracing", "log",
};

struct enum_name {
    const char *name;
    int value;
};

static const struct enum_name backend_names[] = {
    {"sqlite", STORE_BACKEND_SQLITE}, {"postgres", STORE_BACKEND_POSTGRES}, {NULL, 0}};
static const struct enum_name durability_names[] = {
    {"full", DURABILITY_FULL}, {"normal", DURABILITY_NORMAL}, {NULL, 0}};
/* Our own copy of log.c's names, so that config does not link against log. */
static const struct enum_name level_names[] = {{"debug", LOG_LEVEL_DEBUG},
                                               {"info", LOG_LEVEL_INFO},
                                               {"warn", LOG_LEVEL_WARN},
                                               {"error", LOG_LEVEL_ERROR},
                                               {NULL, 0}};
static const struct enum_name format_names[] = {
    {"json", LOG_FORMAT_JSON}, {"text", LOG_FORMAT_TEXT}, {NULL, 0}};
static const struct enum_name bool_names[] = {{"true", 1}, {"false", 0}, {NULL, 0}};

static int key_find(const char *section, const char *name)
{
    for (size_t i = 0; i < KEYS_COUNT; i++)
        if (strcmp(key_defs[i].section, section) == 0 && strcmp(key_defs[i].name, name) == 0)
            return (int)i;
    return -1;
}

static bool section_known(const char *section)
{
    for (size_t i = 0; i < sizeof(section_names) / sizeof(section_names[0]); i++)
        if (strcmp(section_names[i], section) == 0)
            return true;
    return false;
}

/* Values of these keys may be secrets (a password in a dsn): never quoted back. */
static bool key_is_secret(const struct key_def *k)
{
    return strstr(k->name, "key") != NULL || strstr(k->name, "dsn") != NULL;
}

/* ---- the parse state --------------------------------------------------------- */

/* Where a key's current value came from. */
struct origin {
    unsigned line;   /* line of the file; 0 for a default or the environment */
    unsigned seq;    /* order of assignment; 0 = the default */
    const char *env; /* "ORDERD_X=value" in envp when from the environment */
};

struct key_state {
    struct origin origin;
    bool bad; /* its last assignment was rejected: skip the checks between keys */
};

enum section_state {
    SECTION_NONE,  /* before any [section] */
    SECTION_KNOWN, /* keys are looked up */
    SECTION_BAD,   /* unknown or malformed header, reported once: keys skipped */
};

struct parser {
    struct config *cfg;
    struct config_errors *errs;
    int rc; /* sticky -ENOMEM */
    /* line source: a FILE or a string */
    FILE *fp;
    const char *text;
    size_t pos;
    int read_errno;
    unsigned lineno;
    enum section_state section;
    unsigned seq;
    struct key_state keys[KEYS_COUNT];
    char line[CONFIG_LINE_MAX + 1];
};

/* ---- errors -------------------------------------------------------------- */

/* Bounded copy of src[0..len) with control characters shown as '?'. */
static void copy_printable(char *dst, size_t cap, const char *src, size_t len)
{
    size_t n = 0;

    assert(cap > 0);
    for (; n < len && n + 1 < cap && src[n] != '\0'; n++)
        dst[n] = iscntrl((unsigned char)src[n]) ? '?' : src[n];
    dst[n] = '\0';
}

__attribute__((format(printf, 5, 6))) static void
errs_add(struct config_errors *errs, unsigned line, const char *section, const char *key,
         const char *fmt, ...)
{
    struct config_error *e;
    va_list ap;

    if (errs->count >= CONFIG_ERRORS_MAX) {
        errs->dropped++;
        return;
    }
    e = &errs->items[errs->count++];
    e->line = line;
    copy_printable(e->section, sizeof(e->section), section, strlen(section));
    copy_printable(e->key, sizeof(e->key), key, strlen(key));
    va_start(ap, fmt);
    (void)vsnprintf(e->message, sizeof(e->message), fmt, ap);
    va_end(ap);
}

static void errs_reset(struct config_errors *errs)
{
    errs->count = 0;
    errs->dropped = 0;
}

static bool errs_have_line(const struct config_errors *errs, unsigned line)
{
    for (size_t i = 0; i < errs->count; i++)
        if (errs->items[i].line == line)
            return true;
    return false;
}

static void parser_nomem(struct parser *p)
{
    if (p->rc == 0)
        errs_add(p->errs, 0, "", "", "out of memory");
    p->rc = -ENOMEM;
}

/*
 * Reports an error against a key where its value came from: the file line
 * ("[section] key"), or the environment (line 0, no section, the variable's
 * name as key — config_errors_print() shows it as "environment: NAME").
 */
__attribute__((format(printf, 4, 5))) static void
report(struct parser *p, const struct origin *o, const struct key_def *k, const char *fmt, ...)
{
    char msg[sizeof(p->errs->items[0].message)];
    va_list ap;

    va_start(ap, fmt);
    (void)vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (o->env != NULL) {
        char name[sizeof(p->errs->items[0].key)];
        copy_printable(name, sizeof(name), o->env, strcspn(o->env, "="));
        errs_add(p->errs, 0, "", name, "%s", msg);
    } else {
        errs_add(p->errs, o->line, k->section, k->name, "%s", msg);
    }
}

/* ---- value parsers -------------------------------------------------------- */

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* Leading decimal digits -> *out, *end after them. -EINVAL without a digit or on overflow. */
static int parse_digits(const char *s, uint64_t *out, const char **end)
{
    uint64_t n = 0;

    if (!is_digit(*s))
        return -EINVAL;
    for (; is_digit(*s); s++) {
        uint64_t d = (uint64_t)(*s - '0');
        if (n > (UINT64_MAX - d) / 10)
            return -EINVAL;
        n = n * 10 + d;
    }
    *out = n;
    *end = s;
    return 0;
}

static int parse_u64(const char *s, uint64_t *out)
{
    const char *end;

    if (parse_digits(s, out, &end) != 0 || *end != '\0')
        return -EINVAL;
    return 0;
}

int config_parse_duration_ms(const char *s, uint64_t *out)
{
    static const struct {
        const char *unit;
        uint64_t ms;
    } units[] = {{"ms", 1}, {"s", MS_PER_S}, {"m", MS_PER_M}, {"h", MS_PER_H}, {"d", MS_PER_D}};
    const char *end;
    uint64_t n;

    if (s == NULL || out == NULL || parse_digits(s, &n, &end) != 0)
        return -EINVAL;
    if (strcmp(s, "0") == 0) { /* nothing needs no unit: "completed = 0" */
        *out = 0;
        return 0;
    }
    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
        if (strcmp(end, units[i].unit) != 0)
            continue;
        if (n > UINT64_MAX / units[i].ms)
            return -EINVAL;
        *out = n * units[i].ms;
        return 0;
    }
    return -EINVAL;
}

int config_parse_size(const char *s, uint64_t *out)
{
    const char *end;
    uint64_t n, mult;

    if (s == NULL || out == NULL || parse_digits(s, &n, &end) != 0)
        return -EINVAL;
    if (strcmp(end, "") == 0)
        mult = 1;
    else if (strcmp(end, "k") == 0)
        mult = KIB;
    else if (strcmp(end, "M") == 0)
        mult = MIB;
    else
        return -EINVAL;
    if (n > UINT64_MAX / mult)
        return -EINVAL;
    *out = n * mult;
    return 0;
}

/* "10", "2.5", "0.25": digits, then optionally '.' and digits. No sign, exponent, inf or nan. */
static int parse_decimal(const char *s, double *out)
{
    const char *end;
    uint64_t whole;
    double v, scale = 1.0;

    if (parse_digits(s, &whole, &end) != 0)
        return -EINVAL;
    v = (double)whole;
    if (*end == '.') {
        end++;
        if (!is_digit(*end))
            return -EINVAL;
        for (; is_digit(*end); end++) {
            scale /= 10;
            v += (double)(*end - '0') * scale;
        }
    }
    if (*end != '\0')
        return -EINVAL;
    *out = v;
    return 0;
}

static int parse_port(const char *s, uint16_t *out)
{
    uint64_t n;

    if (parse_u64(s, &n) != 0 || n > 65535)
        return -EINVAL;
    *out = (uint16_t)n;
    return 0;
}

/*
 * "127.0.0.1:8080", "[::1]:8080", "localhost:8080" -> host without brackets
 * into host[cap] ("localhost" becomes "127.0.0.1") and port.
 * -EINVAL for a bad address, -ERANGE for a bad port.
 */
static int parse_listen(const char *s, char *host, size_t cap, uint16_t *port)
{
    const char *colon, *h = s;
    size_t hlen;
    int family = AF_INET;
    unsigned char addr[sizeof(struct in6_addr)];

    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        if (close == NULL || close[1] != ':')
            return -EINVAL;
        h = s + 1;
        hlen = (size_t)(close - h);
        colon = close + 1;
        family = AF_INET6;
    } else {
        colon = strrchr(s, ':');
        if (colon == NULL)
            return -EINVAL;
        hlen = (size_t)(colon - s);
    }
    if (hlen == 0 || hlen >= cap)
        return -EINVAL;
    memcpy(host, h, hlen);
    host[hlen] = '\0';
    if (family == AF_INET && strcmp(host, "localhost") == 0)
        (void)snprintf(host, cap, "%s", "127.0.0.1");
    else if (inet_pton(family, host, addr) != 1)
        return -EINVAL;
    if (parse_port(colon + 1, port) != 0)
        return -ERANGE;
    return 0;
}

static int enum_parse(const struct enum_name *names, const char *s, int *out)
{
    for (; names->name != NULL; names++) {
        if (strcmp(names->name, s) == 0) {
            *out = names->value;
            return 0;
        }
    }
    return -EINVAL;
}

/* ---- formatting for messages ----------------------------------------------- */

/* ", got \"VALUE\"" (at most GOT_MAX bytes of it), or nothing for a secret. */
static void fmt_got(char *buf, size_t cap, const char *value, bool secret)
{
    char shown[GOT_MAX + 1];
    size_t len = strlen(value);

    if (secret) {
        buf[0] = '\0';
        return;
    }
    if (len == 0) {
        (void)snprintf(buf, cap, ", got an empty value");
        return;
    }
    copy_printable(shown, sizeof(shown), value, len);
    (void)snprintf(buf, cap, ", got \"%s%s\"", shown, len > GOT_MAX ? "..." : "");
}

void config_format_duration(uint64_t ms, char *buf, size_t cap)
{
    if (ms != 0 && ms % MS_PER_D == 0)
        (void)snprintf(buf, cap, "%" PRIu64 "d", ms / MS_PER_D);
    else if (ms != 0 && ms % MS_PER_H == 0)
        (void)snprintf(buf, cap, "%" PRIu64 "h", ms / MS_PER_H);
    else if (ms != 0 && ms % MS_PER_M == 0)
        (void)snprintf(buf, cap, "%" PRIu64 "m", ms / MS_PER_M);
    else if (ms != 0 && ms % MS_PER_S == 0)
        (void)snprintf(buf, cap, "%" PRIu64 "s", ms / MS_PER_S);
    else
        (void)snprintf(buf, cap, "%" PRIu64 "ms", ms);
}

static void fmt_size(char *buf, size_t cap, uint64_t n)
{
    if (n != 0 && n % MIB == 0)
        (void)snprintf(buf, cap, "%" PRIu64 "M", n / MIB);
    else if (n != 0 && n % KIB == 0)
        (void)snprintf(buf, cap, "%" PRIu64 "k", n / KIB);
    else
        (void)snprintf(buf, cap, "%" PRIu64, n);
}

static void fmt_enum(char *buf, size_t cap, const struct enum_name *names)
{
    size_t used = 0;

    buf[0] = '\0';
    for (const struct enum_name *n = names; n->name != NULL && used < cap; n++) {
        int w = snprintf(buf + used, cap - used, "%s%s", n == names ? "" : ", ", n->name);
        if (w < 0)
            return;
        used += (size_t)w;
    }
}

/* "listen, max_body_bytes, ..." for the keys of one section. */
static void fmt_section_keys(char *buf, size_t cap, const char *section)
{
    size_t used = 0;

    buf[0] = '\0';
    for (size_t i = 0; i < KEYS_COUNT && used < cap; i++) {
        if (strcmp(key_defs[i].section, section) != 0)
            continue;
        int w = snprintf(buf + used, cap - used, "%s%s", used == 0 ? "" : ", ",
                         key_defs[i].name);
        if (w < 0)
            return;
        used += (size_t)w;
    }
}

/* ---- assigning one value ---------------------------------------------------- */

/* Replaces *field by a copy of value, or by NULL when value is empty. */
static int set_string(char **field, const char *value, bool secret)
{
    char *copy = NULL;

    if (value[0] != '\0') {
        copy = strdup(value);
        if (copy == NULL)
            return -ENOMEM;
    }
    if (*field != NULL && secret)
        explicit_bzero(*field, strlen(*field));
    free(*field);
    *field = copy;
    return 0;
}

static int apply_listen(struct config *cfg, const char *v, const char *got, char *msg,
                        size_t cap)
{
    char host[INET6_ADDRSTRLEN + 1];
    uint16_t port;
    char *listen, *listen_host;
    int rc = parse_listen(v, host, sizeof(host), &port);

    if (rc == -ERANGE) {
        (void)snprintf(msg, cap, "expected a port from 0 to 65535 after the last ':'%s", got);
        return -EINVAL;
    }
    if (rc != 0) {
        (void)snprintf(msg, cap,
                       "expected IPv4:port, [IPv6]:port or localhost:port "
                       "(e.g. 127.0.0.1:8080)%s",
                       got);
        return -EINVAL;
    }
    listen = strdup(v);
    listen_host = strdup(host);
    if (listen == NULL || listen_host == NULL) {
        free(listen);
        free(listen_host);
        return -ENOMEM;
    }
    free(cfg->listen);
    free(cfg->listen_host);
    cfg->listen = listen;
    cfg->listen_host = listen_host;
    cfg->listen_port = port;
    return 0;
}

static int apply_integer(void *field, const struct key_def *k, const char *v, const char *got,
                         char *msg, size_t cap)
{
    uint64_t n;

    if (parse_u64(v, &n) != 0 || n < k->min || n > k->max) {
        (void)snprintf(msg, cap, "expected an integer from %" PRIu64 " to %" PRIu64 "%s", k->min,
                       k->max, got);
        return -EINVAL;
    }
    if (k->type == KT_U32)
        *(uint32_t *)field = (uint32_t)n;
    else
        *(uint64_t *)field = n;
    return 0;
}

static int apply_duration(uint64_t *field, const struct key_def *k, const char *v,
                          const char *got, char *msg, size_t cap)
{
    char lo[32], hi[32];
    uint64_t ms;

    if (config_parse_duration_ms(v, &ms) != 0) {
        (void)snprintf(msg, cap, "expected a duration with a unit (ms, s, m, h, d)%s", got);
        return -EINVAL;
    }
    if (ms < k->min || ms > k->max) {
        config_format_duration(k->min, lo, sizeof(lo));
        config_format_duration(k->max, hi, sizeof(hi));
        (void)snprintf(msg, cap, "expected a duration from %s to %s%s", lo, hi, got);
        return -EINVAL;
    }
    *field = ms;
    return 0;
}

static int apply_size(uint64_t *field, const struct key_def *k, const char *v, const char *got,
                      char *msg, size_t cap)
{
    char lo[32], hi[32];
    uint64_t n;

    if (config_parse_size(v, &n) != 0) {
        (void)snprintf(msg, cap, "expected a size in bytes, optionally with k or M (e.g. 64k)%s",
                       got);
        return -EINVAL;
    }
    if (n < k->min || n > k->max) {
        fmt_size(lo, sizeof(lo), k->min);
        fmt_size(hi, sizeof(hi), k->max);
        (void)snprintf(msg, cap, "expected a size from %s to %s%s", lo, hi, got);
        return -EINVAL;
    }
    *field = n;
    return 0;
}

static int apply_rate(double *field, const struct key_def *k, const char *v, const char *got,
                      char *msg, size_t cap)
{
    double r;

    if (parse_decimal(v, &r) != 0 || r < (double)k->min || r > (double)k->max) {
        (void)snprintf(msg, cap,
                       "expected a decimal number of requests per second from %" PRIu64
                       " to %" PRIu64 " (0 = off)%s",
                       k->min, k->max, got);
        return -EINVAL;
    }
    *field = r;
    return 0;
}

static int apply_ratio(double *field, const char *v, const char *got, char *msg, size_t cap)
{
    double r;

    if (parse_decimal(v, &r) != 0 || r < 0 || r > 1) {
        (void)snprintf(msg, cap, "expected a decimal number from 0 to 1%s", got);
        return -EINVAL;
    }
    *field = r;
    return 0;
}

static const struct enum_name *enum_names_of(enum key_type type)
{
    switch (type) {
    case KT_BACKEND:
        return backend_names;
    case KT_DURABILITY:
        return durability_names;
    case KT_LEVEL:
        return level_names;
    case KT_FORMAT:
        return format_names;
    case KT_BOOL:
        return bool_names;
    default:
        return NULL;
    }
}

static int apply_enum(struct config *cfg, const struct key_def *k, const char *v, const char *got,
                      char *msg, size_t cap)
{
    const struct enum_name *names = enum_names_of(k->type);
    char list[64];
    int value;

    assert(names != NULL);
    if (enum_parse(names, v, &value) != 0) {
        fmt_enum(list, sizeof(list), names);
        (void)snprintf(msg, cap, "expected one of %s%s", list, got);
        return -EINVAL;
    }
    switch (k->type) {
    case KT_BACKEND:
        cfg->backend = (enum store_backend)value;
        break;
    case KT_DURABILITY:
        cfg->durability = (enum durability)value;
        break;
    case KT_LEVEL:
        cfg->log_level = (enum log_level)value;
        break;
    case KT_BOOL:
        *(bool *)((char *)cfg + k->offset) = value != 0;
        break;
    default:
        cfg->log_format = (enum log_format)value;
        break;
    }
    return 0;
}

/* Sets one key from its text. 0, -EINVAL with msg filled, or -ENOMEM. */
static int key_apply(struct config *cfg, const struct key_def *k, const char *v, char *msg,
                     size_t cap)
{
    char got[GOT_MAX + 20]; /* , got "VALUE..." */
    void *field = (char *)cfg + k->offset;

    fmt_got(got, sizeof(got), v, key_is_secret(k));
    switch (k->type) {
    case KT_LISTEN:
        return apply_listen(cfg, v, got, msg, cap);
    case KT_PATH:
        if (v[0] == '\0') {
            (void)snprintf(msg, cap, "expected a path, got an empty value");
            return -EINVAL;
        }
        return set_string(field, v, false);
    case KT_STRING:
        return set_string(field, v, key_is_secret(k));
    case KT_U32:
    case KT_U64:
        return apply_integer(field, k, v, got, msg, cap);
    case KT_SIZE:
        return apply_size(field, k, v, got, msg, cap);
    case KT_DURATION:
        return apply_duration(field, k, v, got, msg, cap);
    case KT_RATE:
        return apply_rate(field, k, v, got, msg, cap);
    case KT_RATIO:
        return apply_ratio(field, v, got, msg, cap);
    default:
        return apply_enum(cfg, k, v, got, msg, cap);
    }
}

/* Records where key idx came from, then sets it; errors go to the error list. */
static void key_set(struct parser *p, int idx, const struct origin *o, const char *value)
{
    const struct key_def *k = &key_defs[idx];
    char msg[sizeof(p->errs->items[0].message)];
    int rc;

    p->keys[idx].origin = *o;
    rc = key_apply(p->cfg, k, value, msg, sizeof(msg));
    p->keys[idx].bad = rc != 0;
    if (rc == -ENOMEM)
        parser_nomem(p);
    else if (rc != 0)
        report(p, o, k, "%s", msg);
}

/* ---- the file: reader and handler for libinih ---------------------------- */

static char start_comment_prefixes[] = COMMENT_PREFIXES;
static char inline_comment_prefixes[] = COMMENT_PREFIXES;
static pthread_once_t ini_once = PTHREAD_ONCE_INIT;

static void ini_setup(void)
{
    ini_allow_multiline = false; /* an indented line is a key of its own, not a continuation */
    ini_allow_bom = true;
    ini_start_comment_prefixes = start_comment_prefixes;
    ini_allow_inline_comments = true;
    ini_inline_comment_prefixes = inline_comment_prefixes;
    ini_use_stack = true;
    ini_max_line = CONFIG_LINE_MAX + 3; /* '\r', '\n' and '\0', as ini.h says */
    ini_allow_realloc = false;
    ini_stop_on_first_error = false;
    ini_allow_no_value = false;
}

static int source_getc(struct parser *p)
{
    int c;

    if (p->fp == NULL)
        return p->text[p->pos] == '\0' ? EOF : (unsigned char)p->text[p->pos++];
    c = getc(p->fp);
    if (c == EOF && ferror(p->fp) && p->read_errno == 0)
        p->read_errno = errno != 0 ? errno : EIO;
    return c;
}

static char *rstrip(char *s)
{
    size_t n = strlen(s);

    while (n > 0 && isspace((unsigned char)s[n - 1]))
        s[--n] = '\0';
    return s;
}

static char *lskip(char *s)
{
    while (*s != '\0' && isspace((unsigned char)*s))
        s++;
    return s;
}

/* inih's find_chars_or_comment(): the first of chars, an inline comment, or the end. */
static char *scan_to(char *s, const char *chars)
{
    bool was_space = false;

    while (*s != '\0' && strchr(chars, *s) == NULL &&
           !(was_space && strchr(COMMENT_PREFIXES, *s) != NULL)) {
        was_space = isspace((unsigned char)*s);
        s++;
    }
    return s;
}

static void section_header(struct parser *p, char *name)
{
    char list[128];
    size_t used = 0;

    if (section_known(name)) {
        p->section = SECTION_KNOWN;
        return;
    }
    p->section = SECTION_BAD;
    list[0] = '\0';
    for (size_t i = 0; i < sizeof(section_names) / sizeof(section_names[0]); i++) {
        int w = snprintf(list + used, sizeof(list) - used, "%s%s", i == 0 ? "" : ", ",
                         section_names[i]);
        if (w < 0 || (size_t)w >= sizeof(list) - used)
            break;
        used += (size_t)w;
    }
    errs_add(p->errs, p->lineno, name, "", "unknown section (expected one of %s)", list);
}

/*
 * Looks at one line as inih will read it. Returns where it starts, to be
 * handed to inih, or NULL after reporting a syntax error (inih then gets a
 * blank line, so that each error is reported once, here, with its line).
 */
static char *line_check(struct parser *p, char *line)
{
    char *s = line, *end;

    if (p->lineno == 1 && strncmp(s, "\xEF\xBB\xBF", 3) == 0)
        s += 3;
    s = lskip(rstrip(s));
    if (*s == '\0' || strchr(COMMENT_PREFIXES, *s) != NULL)
        return s;
    if (*s == '[') {
        end = scan_to(s + 1, "]");
        if (*end != ']') {
            p->section = SECTION_BAD;
            errs_add(p->errs, p->lineno, "", "", "expected \"[section]\": no closing ']'");
            return NULL;
        }
        *end = '\0';
        section_header(p, s + 1);
        *end = ']';
        return s;
    }
    end = scan_to(s, "=:");
    if (*end != '=' && *end != ':') {
        errs_add(p->errs, p->lineno, "", "",
                 "expected \"key = value\", \"[section]\" or a comment (; or #)");
        return NULL;
    }
    return s;
}

/* libinih's reader (an fgets()): one whole line per call, counted. */
static char *ini_read_line(char *str, int num, void *stream)
{
    struct parser *p = stream;
    size_t len = 0, n;
    bool too_long = false, has_nul = false;
    char *start = NULL;
    int c;

    assert(num >= 2);
    c = source_getc(p);
    if (c == EOF)
        return NULL;
    for (; c != EOF && c != '\n'; c = source_getc(p)) {
        if (c == '\0')
            has_nul = true;
        if (len < CONFIG_LINE_MAX)
            p->line[len++] = (char)c;
        else
            too_long = true;
    }
    p->line[len] = '\0';
    p->lineno++;
    if (too_long || len + 2 > (size_t)num) {
        if (*lskip(p->line) == '[')
            p->section = SECTION_BAD;
        errs_add(p->errs, p->lineno, "", "", "line too long (more than %d characters)",
                 CONFIG_LINE_MAX);
    } else if (has_nul) {
        errs_add(p->errs, p->lineno, "", "", "line holds a NUL byte");
    } else {
        start = line_check(p, p->line);
    }
    if (start == NULL)
        start = "";
    n = strlen(start);
    memcpy(str, start, n);
    str[n] = '\n';
    str[n + 1] = '\0';
    return str;
}

/* libinih's handler: one key = value. Always 1: our errors are in p->errs. */
static int ini_on_key(void *user, const char *section, const char *name, const char *value)
{
    struct parser *p = user;
    struct origin o = {.line = p->lineno, .seq = 0, .env = NULL};
    char list[160];
    int idx;

    if (p->section == SECTION_BAD)
        return 1;
    if (p->section == SECTION_NONE) {
        errs_add(p->errs, p->lineno, "", name, "key before any [section]");
        return 1;
    }
    if (name[0] == '\0') {
        errs_add(p->errs, p->lineno, section, "", "expected a key name before '='");
        return 1;
    }
    idx = key_find(section, name);
    if (idx < 0) {
        fmt_section_keys(list, sizeof(list), section);
        errs_add(p->errs, p->lineno, section, name, "unknown key (expected one of %s)", list);
        return 1;
    }
    if (p->keys[idx].origin.line != 0) {
        errs_add(p->errs, p->lineno, section, name, "duplicate key (first set on line %u)",
                 p->keys[idx].origin.line);
        return 1;
    }
    o.seq = ++p->seq;
    key_set(p, idx, &o, value);
    return 1;
}

static void parse_file(struct parser *p)
{
    int rc = pthread_once(&ini_once, ini_setup);

    if (rc != 0) {
        errs_add(p->errs, 0, "", "", "cannot set up the INI parser (error %d)", rc);
        if (p->rc == 0)
            p->rc = -rc;
        return;
    }
    rc = ini_parse_stream(ini_read_line, p, ini_on_key, p);
    if (rc == -2) {
        parser_nomem(p);
    } else if (rc > 0 && !errs_have_line(p->errs, (unsigned)rc)) {
        /* inih saw what line_check() did not: still an error of that line */
        errs_add(p->errs, (unsigned)rc, "", "", "syntax error");
    } else if (rc < 0 && p->rc == 0) {
        errs_add(p->errs, 0, "", "", "cannot parse (libinih error %d)", rc);
        p->rc = -EIO;
    }
}

/* ---- the environment ---------------------------------------------------------- */

/* Lower-cased copy of src[0..len) into dst[cap]; -EINVAL when empty or too long. */
static int lower_copy(char *dst, size_t cap, const char *src, size_t len)
{
    if (len == 0 || len >= cap)
        return -EINVAL;
    for (size_t i = 0; i < len; i++)
        dst[i] = (char)tolower((unsigned char)src[i]);
    dst[len] = '\0';
    return 0;
}

/* ORDERD_SERVER_MAX_BODY_BYTES -> index of [server] max_body_bytes, or -1. */
static int env_key_find(const char *name, size_t len)
{
    char section[16], key[48];
    const char *sep = memchr(name, '_', len);

    if (sep == NULL)
        return -1;
    if (lower_copy(section, sizeof(section), name, (size_t)(sep - name)) != 0 ||
        lower_copy(key, sizeof(key), sep + 1, len - (size_t)(sep - name) - 1) != 0)
        return -1;
    return key_find(section, key);
}

static void env_apply_one(struct parser *p, const char *entry)
{
    const char *eq = strchr(entry, '=');
    const char *name = entry + strlen(ENV_PREFIX), *v;
    struct origin o = {.line = 0, .seq = ++p->seq, .env = entry};
    size_t vlen;
    int idx;

    assert(eq != NULL);
    idx = env_key_find(name, (size_t)(eq - name));
    if (idx < 0) {
        report(p, &o, NULL,
               "no such setting (expected ORDERD_<SECTION>_<KEY> for a key of the file, "
               "e.g. ORDERD_SERVER_LISTEN)");
        return;
    }
    /* surrounding blanks are dropped, as in the file */
    v = eq + 1;
    while (*v != '\0' && isspace((unsigned char)*v))
        v++;
    vlen = strlen(v);
    while (vlen > 0 && isspace((unsigned char)v[vlen - 1]))
        vlen--;
    if (vlen > CONFIG_LINE_MAX) {
        report(p, &o, &key_defs[idx], "value too long (more than %d characters)",
               CONFIG_LINE_MAX);
        p->keys[idx].bad = true;
        return;
    }
    memcpy(p->line, v, vlen);
    p->line[vlen] = '\0';
    key_set(p, idx, &o, p->line);
    explicit_bzero(p->line, vlen);
}

static void env_apply(struct parser *p, char *const *envp)
{
    if (envp == NULL)
        return;
    for (; *envp != NULL; envp++) {
        if (strncmp(*envp, ENV_PREFIX, strlen(ENV_PREFIX)) != 0 || strchr(*envp, '=') == NULL)
            continue;
        env_apply_one(p, *envp);
    }
}

/* ---- checks between keys ---------------------------------------------------- */

static int key_index(const char *section, const char *name)
{
    int idx = key_find(section, name);

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
    report(p, &p->keys[blame].origin, &key_defs[blame], "%s", msg);
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
        report(p, &p->keys[url].origin, &key_defs[url],
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

static void cross_check(struct parser *p)
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

/* ---- public ------------------------------------------------------------------ */

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

/* Shared by both loaders: cfg is initialised here, over whatever it held. */
static int load(FILE *fp, const char *text, char *const *envp, struct config *cfg,
                struct config_errors *errs)
{
    struct parser p;
    int rc;

    memset(&p, 0, sizeof(p));
    p.cfg = cfg;
    p.errs = errs;
    p.fp = fp;
    p.text = text;
    rc = config_init(cfg);
    if (rc != 0) {
        errs_add(errs, 0, "", "", "out of memory");
        return rc;
    }
    parse_file(&p);
    if (p.read_errno != 0) {
        char buf[128];
        errs_add(errs, 0, "", "", "cannot read: %s",
                 strerror_r(p.read_errno, buf, sizeof(buf)));
        rc = -p.read_errno;
        goto out;
    }
    if (p.rc == 0)
        env_apply(&p, envp);
    if (p.rc == 0)
        cross_check(&p);
    for (size_t i = 0; i < KEYS_COUNT; i++) {
        cfg->origins[i].line = p.keys[i].origin.line;
        cfg->origins[i].env = p.keys[i].origin.env != NULL;
    }
    rc = p.rc != 0 ? p.rc : (errs->count != 0 || errs->dropped != 0) ? -EINVAL : 0;
out:
    explicit_bzero(p.line, sizeof(p.line));
    return rc;
}

int config_load(const char *path, char *const *envp, struct config *cfg,
                struct config_errors *errs)
{
    FILE *fp;
    int rc;

    if (cfg == NULL || errs == NULL)
        return -EINVAL;
    errs_reset(errs);
    if (path == NULL) {
        errs_add(errs, 0, "", "", "no config file given");
        return config_init(cfg) == 0 ? -EINVAL : -ENOMEM;
    }
    fp = fopen(path, "re");
    if (fp == NULL) {
        char buf[128];
        rc = -errno;
        errs_add(errs, 0, "", "", "cannot open: %s", strerror_r(-rc, buf, sizeof(buf)));
        return config_init(cfg) == 0 ? rc : -ENOMEM;
    }
    rc = load(fp, NULL, envp, cfg, errs);
    if (fclose(fp) != 0 && rc == 0)
        rc = -EIO; /* read-only stream: cannot really fail */
    return rc;
}

int config_load_string(const char *text, char *const *envp, struct config *cfg,
                       struct config_errors *errs)
{
    if (cfg == NULL || errs == NULL)
        return -EINVAL;
    errs_reset(errs);
    if (text == NULL) {
        errs_add(errs, 0, "", "", "no config text given");
        return config_init(cfg) == 0 ? -EINVAL : -ENOMEM;
    }
    return load(NULL, text, envp, cfg, errs);
}

/* snprintf at buf + *used, moving *used on; stops quietly once buf is full. */
__attribute__((format(printf, 4, 5))) static void append(char *buf, size_t size, size_t *used,
                                                         const char *fmt, ...)
{
    va_list ap;
    int w;

    if (*used + 1 >= size)
        return;
    va_start(ap, fmt);
    w = vsnprintf(buf + *used, size - *used, fmt, ap);
    va_end(ap);
    if (w < 0)
        return;
    *used = (size_t)w >= size - *used ? size - 1 : *used + (size_t)w;
}

void config_error_format(const struct config_error *e, const char *path, char *buf, size_t size)
{
    size_t used = 0;

    if (buf == NULL || size == 0)
        return;
    buf[0] = '\0';
    if (e == NULL)
        return;
    if (path == NULL)
        path = "config";
    if (e->line == 0 && e->section[0] == '\0' && e->key[0] != '\0') {
        (void)snprintf(buf, size, "environment: %s: %s", e->key, e->message);
        return;
    }
    if (e->line != 0)
        append(buf, size, &used, "%s:%u: ", path, e->line);
    else
        append(buf, size, &used, "%s: ", path);
    if (e->section[0] != '\0')
        append(buf, size, &used, "[%s]%s", e->section, e->key[0] != '\0' ? " " : ": ");
    if (e->key[0] != '\0')
        append(buf, size, &used, "%s: ", e->key);
    append(buf, size, &used, "%s", e->message);
}

void config_errors_print(const struct config_errors *errs, const char *path, void *stream)
{
    FILE *out = stream;
    /* a path of up to PATH_MAX plus the fields of one error */
    char line[4096 + sizeof(errs->items[0]) + 16];

    if (errs == NULL || out == NULL)
        return;
    if (path == NULL)
        path = "config";
    for (size_t i = 0; i < errs->count && i < CONFIG_ERRORS_MAX; i++) {
        config_error_format(&errs->items[i], path, line, sizeof(line));
        (void)fprintf(out, "%s\n", line);
    }
    if (errs->dropped != 0)
        (void)fprintf(out, "%s: %zu more error%s not shown\n", path, errs->dropped,
                      errs->dropped == 1 ? "" : "s");
}

/* ---- errors about a loaded config ------------------------------------------------ */

void config_key_error(const struct config *cfg, const char *section, const char *key,
                      struct config_errors *errs, const char *fmt, ...)
{
    char msg[sizeof(errs->items[0].message)];
    int idx = key_find(section, key);
    va_list ap;

    va_start(ap, fmt);
    (void)vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (idx < 0 || !cfg->origins[idx].env) {
        errs_add(errs, idx < 0 ? 0 : cfg->origins[idx].line, section, key, "%s", msg);
        return;
    }
    /* as report() names a variable: no section, its name as the key */
    char name[sizeof(errs->items[0].key)];
    int n = snprintf(name, sizeof(name), ENV_PREFIX "%s_%s", section, key);
    size_t len = n < 0 ? 0 : (size_t)n < sizeof(name) ? (size_t)n : sizeof(name) - 1;
    for (size_t i = 0; i < len; i++)
        name[i] = (char)toupper((unsigned char)name[i]);
    errs_add(errs, 0, "", name, "%s", msg);
}

void config_warnings(const struct config *cfg, struct config_errors *warns)
{
    errs_reset(warns);
    bool fulfil = cfg->fulfilment_command != NULL || cfg->fulfilment_url != NULL;
    if (fulfil && cfg->worker_count > cfg->fulfilment_concurrency)
        config_key_error(cfg, "workers", "count", warns,
                         "%" PRIu32 " threads, but fulfilment_concurrency is %" PRIu32
                         ": only %" PRIu32 " of them run fulfilments; lower count or raise "
                         "fulfilment_concurrency",
                         cfg->worker_count, cfg->fulfilment_concurrency,
                         cfg->fulfilment_concurrency);
}
