/*
 * config_values.c — one value of the config file: its text into a field of
 * struct config, or into the message that says what was expected instead.
 *
 * Owns: the parser of each key type of config_int.h (durations, sizes,
 * integers, decimal rates and ratios, listen addresses, enums and booleans
 * with their names, strings and paths), the range check against the key's
 * bounds, the wording of a bad value's message (the value quoted, unless the
 * key may hold a secret), and include/config.h's config_parse_duration_ms(),
 * config_parse_size() and config_format_duration(). Knows nothing of files,
 * lines or the environment: config.c hands it a key of config_keys.c's table
 * and the value's text (config_key_apply).
 *
 * Threads: pure functions of their input, callable from any thread.
 */
#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config_int.h"

#define GOT_MAX 60 /* bytes of a bad value quoted back in a message */

/* ---- the names of enum and bool values ------------------------------------- */

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

/* Values of these keys may be secrets (a password in a dsn): never quoted back. */
static bool key_is_secret(const struct key_def *k)
{
    return strstr(k->name, "key") != NULL || strstr(k->name, "dsn") != NULL;
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
    config_copy_printable(shown, sizeof(shown), value, len);
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
int config_key_apply(struct config *cfg, const struct key_def *k, const char *v, char *msg,
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
