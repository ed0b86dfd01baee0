/*
 * tracing.c — the tracer: span ids, parent-based sampling, spans begun and
 * ended by callers, the bounded buffer they end into, the headers file, and
 * the life of the exporter (configure on reload, stop). The exporter thread
 * and the OTLP/JSON encoding are tracing_otlp.c's; what both share is in
 * tracing_int.h.
 *
 * Sampling: a span with a parent takes the parent's flags (its sampled bit,
 * whatever the ratio). The root of a new trace is sampled with probability
 * sample_ratio: 53 bits from a per-thread xoshiro256** generator (seeded
 * from the DRBG behind ids.c, or from the clock when that fails) below
 * ratio * 2^53, so 0 and 1 are exact. The decision is bit 0 of the trace's
 * flags, and every traceparent that follows carries it. With t == NULL a new
 * trace is marked sampled (as trace_new() does); with a tracer, the ratio
 * decides even while no endpoint is set, so a reload that turns tracing on
 * changes nothing downstream.
 *
 * Ids: 16 random bytes for a trace, 8 for a span, never all zero. Should the
 * random source fail, an id is made of the clock and a process-wide counter
 * (unique in this process), so tracing_span_begin() never fails.
 *
 * The buffer (see tracing_int.h): ending a recording span copies it into a
 * ring slot under a mutex held for that copy only; a full ring drops the
 * span and counts it. The copy takes only the bytes in use (span_copy). The thread
 * that fills the ring to TRACING_BATCH_SPANS wakes the exporter
 * (curl_multi_wakeup); otherwise the exporter wakes on its interval.
 *
 * Threads: tracing_span_*() on any thread; tracing_start, tracing_configure
 * and tracing_stop on the loop thread (one at a time); the check functions
 * anywhere.
 */
#include "tracing.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "ids.h"
#include "log.h"
#include "metrics.h"
#include "tracing_int.h"

#define WHY_MAX 512
#define TWO_POW_53 9007199254740992.0 /* 2^53 */
#define DEFAULT_SERVICE_NAME "orderd"
#define RING_BYTES (TRACING_BUFFER_SPANS * sizeof(struct tracing_span)) /* ~21 MiB */

/* ---- clocks, random numbers, ids ----------------------------------------------- */

static int64_t clock_ns(clockid_t id)
{
    struct timespec ts;

    clock_gettime(id, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t tracing__now_ms(void) { return clock_ns(CLOCK_MONOTONIC) / 1000000; }

static int (*_Atomic random_source)(void *buf, size_t n);

void tracing__set_random_source(int (*fn)(void *buf, size_t n))
{
    atomic_store(&random_source, fn);
}

static int random_bytes(void *buf, size_t n)
{
    int (*fn)(void *, size_t) = atomic_load_explicit(&random_source, memory_order_relaxed);

    return fn != NULL ? fn(buf, n) : ids_random_bytes(buf, n);
}

/* Counts the ids made without the random source, and seeds of last resort. */
static _Atomic uint64_t fallback_counter;

/* splitmix64's finaliser: a bijection of 64-bit values (0 stays 0). */
static uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

static _Thread_local struct {
    uint64_t s[4];
    bool seeded;
} rng;

static void rng_seed(void)
{
    if (random_bytes(rng.s, sizeof(rng.s)) != 0 ||
        (rng.s[0] | rng.s[1] | rng.s[2] | rng.s[3]) == 0) {
        uint64_t x = (uint64_t)clock_ns(CLOCK_REALTIME) ^ (uint64_t)(uintptr_t)&rng ^
                     atomic_fetch_add(&fallback_counter, 1) * UINT64_C(0x9e3779b97f4a7c15);
        for (int i = 0; i < 4; i++) {
            x += UINT64_C(0x9e3779b97f4a7c15);
            rng.s[i] = mix64(x);
        }
    }
    rng.seeded = true;
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

/* xoshiro256** (Blackman and Vigna): fast, and good in every bit. */
uint64_t tracing__random64(void)
{
    if (!rng.seeded)
        rng_seed();
    uint64_t *s = rng.s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

static const char hex_digits[] = "0123456789abcdef";

static void hex_write(char *out, const unsigned char *bytes, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = hex_digits[bytes[i] >> 4];
        out[2 * i + 1] = hex_digits[bytes[i] & 15];
    }
    out[2 * n] = '\0';
}

static void u64_bytes(unsigned char *out, uint64_t v)
{
    for (int i = 7; i >= 0; i--, v >>= 8)
        out[i] = (unsigned char)v;
}

/* An id of n bytes (16 or 8) as hex into out, not all zero. Never fails. */
static void new_id(char *out, size_t n)
{
    unsigned char b[16];

    if (random_bytes(b, n) == 0) {
        for (size_t i = 0; i < n; i++) {
            if (b[i] != 0) {
                hex_write(out, b, n);
                return;
            }
        }
    }
    /* the clock and a counter: unique in this process, never zero (mix64 is a
     * bijection with mix64(0) == 0, and the counter starts at 1) */
    uint64_t c = atomic_fetch_add(&fallback_counter, 1) + 1;
    if (n == 16) {
        u64_bytes(b, (uint64_t)clock_ns(CLOCK_REALTIME));
        u64_bytes(b + 8, mix64(c));
    } else {
        u64_bytes(b, mix64(c));
    }
    hex_write(out, b, n);
}

static bool hex_id_ok(const char *s, size_t len)
{
    bool nonzero = false;

    for (size_t i = 0; i < len; i++) {
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false;
        nonzero |= s[i] != '0';
    }
    return nonzero && s[len] == '\0';
}

static bool sample_new_trace(const struct tracing *t)
{
    if (t == NULL)
        return true;
    uint64_t threshold = atomic_load_explicit(&t->sample_threshold, memory_order_relaxed);
    if (threshold == 0)
        return false;
    return (tracing__random64() >> 11) < threshold;
}

static uint64_t ratio_threshold(double ratio) { return (uint64_t)(ratio * TWO_POW_53); }

/* ---- spans ------------------------------------------------------------------------ */

void tracing_span_begin(struct tracing *t, struct tracing_span *s,
                        const struct trace_context *parent, const char *name,
                        enum tracing_kind kind)
{
    struct trace_context p;
    bool child = parent != NULL && hex_id_ok(parent->trace_id, TRACE_ID_HEX_LEN) &&
                 hex_id_ok(parent->span_id, SPAN_ID_HEX_LEN);

    if (child)
        p = *parent; /* s may be where parent lives */
    s->name = name;
    s->kind = kind;
    s->status = TRACING_STATUS_UNSET;
    s->status_message[0] = '\0';
    s->n_attrs = 0;
    s->end_unix_ns = 0;
    if (child) {
        memcpy(s->ctx.trace_id, p.trace_id, sizeof(s->ctx.trace_id));
        memcpy(s->parent_span_id, p.span_id, sizeof(s->parent_span_id));
        s->ctx.flags = p.flags;
    } else {
        new_id(s->ctx.trace_id, TRACE_ID_HEX_LEN / 2);
        s->parent_span_id[0] = '\0';
        s->ctx.flags = sample_new_trace(t) ? 0x01 : 0x00;
    }
    new_id(s->ctx.span_id, SPAN_ID_HEX_LEN / 2);
    s->recording = t != NULL && (s->ctx.flags & 0x01) != 0 &&
                   atomic_load_explicit(&t->on, memory_order_relaxed);
    s->start_unix_ns = clock_ns(CLOCK_REALTIME);
}

/* Copies at most max bytes of src, cut back to a UTF-8 character boundary. */
static void copy_cut(char *dst, const char *src, size_t max)
{
    if (src == NULL)
        src = "";
    size_t n = strnlen(src, max + 1);
    if (n > max) {
        n = max;
        while (n > 0 && ((unsigned char)src[n] & 0xC0) == 0x80)
            n--; /* src[n] continues a character: cut before its lead byte */
    }
    memcpy(dst, src, n);
    dst[n] = '\0';
}

static struct tracing_attr *attr_add(struct tracing_span *s, const char *key,
                                     enum tracing_attr_type type)
{
    if (key == NULL || s->n_attrs >= TRACING_ATTRS_MAX)
        return NULL;
    struct tracing_attr *a = &s->attrs[s->n_attrs++];
    a->key = key;
    a->type = type;
    return a;
}

void tracing_span_attr_str(struct tracing_span *s, const char *key, const char *value)
{
    struct tracing_attr *a = attr_add(s, key, TRACING_ATTR_STRING);

    if (a != NULL)
        copy_cut(a->v.s, value, TRACING_ATTR_VALUE_MAX);
}

void tracing_span_attr_int(struct tracing_span *s, const char *key, int64_t value)
{
    struct tracing_attr *a = attr_add(s, key, TRACING_ATTR_INT);

    if (a != NULL)
        a->v.i = value;
}

void tracing_span_attr_double(struct tracing_span *s, const char *key, double value)
{
    struct tracing_attr *a = attr_add(s, key, TRACING_ATTR_DOUBLE);

    if (a != NULL)
        a->v.d = value;
}

void tracing_span_error(struct tracing_span *s, const char *message)
{
    s->status = TRACING_STATUS_ERROR;
    copy_cut(s->status_message, message, TRACING_STATUS_MESSAGE_MAX);
}

/* Copies a string of at most max bytes (and its NUL), not the whole array. */
static void copy_string(char *dst, const char *src, size_t max)
{
    size_t n = strnlen(src, max);

    memcpy(dst, src, n);
    dst[n] = '\0';
}

/*
 * A span into a ring slot: the fields, and of each string only its bytes.
 * The ring (TRACING_BUFFER_SPANS slots of ~2.6 KiB) is far larger than a
 * cache, so a slot is cold when it is written again: what costs is the
 * cache lines touched, not the bytes. A whole-struct copy touches ~40; this
 * one touches 5 or 6 for a span with a few short attributes.
 */
static void span_copy(struct tracing_span *dst, const struct tracing_span *src)
{
    size_t n = src->n_attrs <= TRACING_ATTRS_MAX ? src->n_attrs : TRACING_ATTRS_MAX;

    dst->ctx = src->ctx;
    memcpy(dst->parent_span_id, src->parent_span_id, sizeof(dst->parent_span_id));
    dst->name = src->name;
    dst->kind = src->kind;
    dst->start_unix_ns = src->start_unix_ns;
    dst->end_unix_ns = src->end_unix_ns;
    dst->status = src->status;
    copy_string(dst->status_message, src->status_message, TRACING_STATUS_MESSAGE_MAX);
    for (size_t i = 0; i < n; i++) {
        const struct tracing_attr *a = &src->attrs[i];
        struct tracing_attr *d = &dst->attrs[i];
        d->key = a->key;
        d->type = a->type;
        if (a->type == TRACING_ATTR_INT)
            d->v.i = a->v.i;
        else if (a->type == TRACING_ATTR_DOUBLE)
            d->v.d = a->v.d;
        else
            copy_string(d->v.s, a->v.s, TRACING_ATTR_VALUE_MAX);
    }
    dst->n_attrs = n;
    dst->recording = true;
}

void tracing_span_end(struct tracing *t, struct tracing_span *s)
{
    bool wake = false, full = false;

    s->end_unix_ns = clock_ns(CLOCK_REALTIME);
    if (t == NULL || !s->recording)
        return;
    pthread_mutex_lock(&t->lock);
    if (!atomic_load_explicit(&t->on, memory_order_relaxed) || t->ring == NULL) {
        pthread_mutex_unlock(&t->lock);
        return;
    }
    if (t->count == TRACING_BUFFER_SPANS) {
        full = true;
        t->full_drops++;
    } else {
        span_copy(&t->ring[(t->head + t->count) % TRACING_BUFFER_SPANS], s);
        wake = ++t->count == TRACING_BATCH_SPANS;
    }
    pthread_mutex_unlock(&t->lock);
    if (full && t->metrics != NULL)
        metrics_trace_spans_add(t->metrics, 0, 1);
    if (wake)
        curl_multi_wakeup(t->multi);
}

void tracing__count_dropped(struct tracing *t, uint64_t n)
{
    if (n == 0)
        return;
    atomic_fetch_add_explicit(&t->dropped, n, memory_order_relaxed);
    if (t->metrics != NULL)
        metrics_trace_spans_add(t->metrics, 0, n);
}

void tracing__count_exported(struct tracing *t, uint64_t n)
{
    if (n == 0)
        return;
    atomic_fetch_add_explicit(&t->exported, n, memory_order_relaxed);
    if (t->metrics != NULL)
        metrics_trace_spans_add(t->metrics, n, 0);
}

void tracing_stats_get(struct tracing *t, struct tracing_stats *out)
{
    memset(out, 0, sizeof(*out));
    if (t == NULL)
        return;
    out->exported = atomic_load(&t->exported);
    out->dropped = atomic_load(&t->dropped);
    out->requests = atomic_load(&t->requests);
    pthread_mutex_lock(&t->lock);
    out->buffered = t->count;
    out->dropped += t->full_drops;
    pthread_mutex_unlock(&t->lock);
}

/* ---- the endpoint and the headers file --------------------------------------------- */

int tracing_endpoint_check(const char *url, char *why, size_t size)
{
    CURLU *u = curl_url();
    char *scheme = NULL, *host = NULL;
    int rc = -EINVAL;

    if (u == NULL) {
        snprintf(why, size, "out of memory");
        return -ENOMEM;
    }
    const char *slashes = url != NULL ? strstr(url, "://") : NULL;

    /* libcurl reads "http:///x" as the host x: refuse an empty authority */
    if (slashes != NULL && slashes[3] != '/' &&
        curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK &&
        (strcmp(scheme, "http") == 0 || strcmp(scheme, "https") == 0) &&
        curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK && host[0] != '\0')
        rc = 0;
    else
        snprintf(why, size,
                 "expected an http:// or https:// URL with a host, such as "
                 "http://127.0.0.1:4318/v1/traces");
    curl_free(scheme);
    curl_free(host);
    curl_url_cleanup(u);
    return rc;
}

/* Headers the exporter sets itself, or that would change how its body is read. */
static const char *const reserved_headers[] = {"Content-Type", "Content-Length", "Content-Encoding",
                                               "Transfer-Encoding"};

static bool is_tchar(unsigned char c)
{
    return isalnum(c) || (c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

static void headers_free(char **headers, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (headers[i] != NULL)
            explicit_bzero(headers[i], strlen(headers[i]));
        free(headers[i]);
    }
    free(headers);
}

/*
 * One line of a headers file (no '\n'), blank or a comment: *out stays NULL.
 * Else *out is "Name: value" (heap). 0, -EINVAL with msg set, or -ENOMEM.
 * The message never quotes the line: its value may be a token.
 */
static int header_line(const char *line, char **out, char *msg, size_t cap)
{
    const char *p = line;

    *out = NULL;
    while (*p == ' ' || *p == '\t')
        p++;
    if (*p == '\0' || *p == '#')
        return 0;
    if (strchr(line, '\r') != NULL) {
        snprintf(msg, cap, "a carriage return (save the file with Unix line ends)");
        return -EINVAL;
    }
    const char *colon = strchr(line, ':');
    if (colon == NULL) {
        snprintf(msg, cap, "expected Name: value");
        return -EINVAL;
    }
    size_t name_len = (size_t)(colon - line);
    for (size_t i = 0; i < name_len; i++) {
        if (!is_tchar((unsigned char)line[i])) {
            snprintf(msg, cap, "the name before ':' is not an HTTP header name (a token)");
            return -EINVAL;
        }
    }
    if (name_len == 0) {
        snprintf(msg, cap, "expected Name: value");
        return -EINVAL;
    }
    for (size_t i = 0; i < sizeof(reserved_headers) / sizeof(reserved_headers[0]); i++) {
        if (strlen(reserved_headers[i]) == name_len &&
            strncasecmp(line, reserved_headers[i], name_len) == 0) {
            snprintf(msg, cap, "%s is set by orderd and cannot be overridden", reserved_headers[i]);
            return -EINVAL;
        }
    }
    const char *v = colon + 1, *end = v + strlen(v);
    while (*v == ' ' || *v == '\t')
        v++;
    while (end > v && (end[-1] == ' ' || end[-1] == '\t'))
        end--;
    if (end == v) {
        snprintf(msg, cap, "the value is empty");
        return -EINVAL;
    }
    for (const char *q = v; q < end; q++) {
        unsigned char c = (unsigned char)*q;
        if ((c < 0x20 && c != '\t') || c == 0x7f) {
            snprintf(msg, cap, "a control character in the value");
            return -EINVAL;
        }
    }
    if (asprintf(out, "%.*s: %.*s", (int)name_len, line, (int)(end - v), v) < 0) {
        *out = NULL;
        return -ENOMEM;
    }
    return 0;
}

/* Reads path into headers (caller frees with headers_free). 0 or -errno with why. */
static int headers_load(const char *path, char ***headers, size_t *count, char *why, size_t size)
{
    char **list = NULL, *line = NULL, msg[WHY_MAX / 2];
    size_t n = 0, cap = 0;
    unsigned lineno = 0;
    ssize_t len;
    struct stat st;
    int rc = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);

    *headers = NULL;
    *count = 0;
    if (fd < 0) {
        rc = -errno;
        snprintf(why, size, "%s: %s", path, strerror(-rc));
        return rc;
    }
    if (fstat(fd, &st) != 0)
        rc = -errno;
    else if (S_ISDIR(st.st_mode))
        rc = -EISDIR;
    else if (!S_ISREG(st.st_mode))
        rc = -EINVAL;
    if (rc != 0) {
        snprintf(why, size, "%s: %s", path, rc == -EINVAL ? "not a regular file" : strerror(-rc));
        close(fd);
        return rc;
    }
    FILE *f = fdopen(fd, "r");
    if (f == NULL) {
        rc = -errno;
        close(fd);
        snprintf(why, size, "%s: %s", path, strerror(-rc));
        return rc;
    }
    list = calloc(TRACING_HEADERS_MAX, sizeof(*list));
    if (list == NULL)
        rc = -ENOMEM;
    while (rc == 0 && (len = getline(&line, &cap, f)) >= 0) {
        char *h = NULL;
        lineno++;
        if (len > 0 && line[len - 1] == '\n')
            line[--len] = '\0';
        if ((size_t)len != strlen(line)) {
            snprintf(msg, sizeof(msg), "a NUL byte");
            rc = -EINVAL;
        } else {
            rc = header_line(line, &h, msg, sizeof(msg));
        }
        if (rc == 0 && h != NULL && n == TRACING_HEADERS_MAX) {
            explicit_bzero(h, strlen(h));
            free(h);
            snprintf(msg, sizeof(msg), "more than %d headers", TRACING_HEADERS_MAX);
            rc = -EINVAL;
        } else if (rc == 0 && h != NULL) {
            list[n++] = h;
        }
        if (rc == -EINVAL)
            snprintf(why, size, "%s:%u: %s", path, lineno, msg);
    }
    if (rc == 0 && ferror(f)) {
        rc = -EIO;
        snprintf(why, size, "%s: read error", path);
    }
    if (rc == -ENOMEM)
        snprintf(why, size, "out of memory");
    if (line != NULL)
        explicit_bzero(line, cap);
    free(line);
    fclose(f);
    if (rc != 0) {
        if (list != NULL)
            headers_free(list, n);
        return rc;
    }
    *headers = list;
    *count = n;
    return 0;
}

int tracing_headers_check(const char *path, char *why, size_t size)
{
    char **headers;
    size_t n;
    int rc = headers_load(path, &headers, &n, why, size);

    if (rc == 0)
        headers_free(headers, n);
    return rc;
}

void tracing__target_free(struct tracing_target *target)
{
    free(target->endpoint);
    free(target->service_name);
    if (target->headers != NULL)
        headers_free(target->headers, target->n_headers);
    memset(target, 0, sizeof(*target));
}

/* ---- start, configure, stop ------------------------------------------------------ */

/* What opts ask for, checked and read; 0 or -errno with why set. */
static int target_from(const struct tracing_options *opts, struct tracing_target *out, char *why,
                       size_t size)
{
    const char *endpoint = opts->otlp_endpoint, *name = opts->service_name;
    int rc;

    memset(out, 0, sizeof(*out));
    if (!(opts->sample_ratio >= 0 && opts->sample_ratio <= 1)) {
        snprintf(why, size, "sample_ratio: expected a number from 0 to 1");
        return -EINVAL;
    }
    if (endpoint != NULL && endpoint[0] != '\0') {
        char msg[WHY_MAX / 2];
        if ((rc = tracing_endpoint_check(endpoint, msg, sizeof(msg))) != 0) {
            snprintf(why, size, "otlp_endpoint: %s", msg);
            return rc;
        }
        if ((out->endpoint = strdup(endpoint)) == NULL)
            goto fail_nomem;
    }
    if (opts->headers_file != NULL && opts->headers_file[0] != '\0') {
        char msg[WHY_MAX - 16];
        rc = headers_load(opts->headers_file, &out->headers, &out->n_headers, msg, sizeof(msg));
        if (rc != 0) {
            snprintf(why, size, "headers_file: %s", msg);
            tracing__target_free(out);
            return rc;
        }
    }
    out->service_name = strdup(name != NULL && name[0] != '\0' ? name : DEFAULT_SERVICE_NAME);
    if (out->service_name == NULL)
        goto fail_nomem;
    return 0;

fail_nomem:
    tracing__target_free(out);
    snprintf(why, size, "out of memory");
    return -ENOMEM;
}

/* The ring and the exporter thread, the first time tracing is turned on. */
static int exporter_prepare(struct tracing *t)
{
    if (t->thread_started)
        return 0;
    /* Mapped in now (MAP_POPULATE), so that the first spans do not each pay
     * for a fresh page: 2-4 µs a span over the ring's first round. */
    struct tracing_span *ring = mmap(NULL, RING_BYTES, PROT_READ | PROT_WRITE,
                                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    if (ring == MAP_FAILED)
        return -ENOMEM;
    pthread_mutex_lock(&t->lock);
    t->ring = ring;
    t->head = t->count = 0;
    pthread_mutex_unlock(&t->lock);
    int rc = tracing__exporter_start(t);
    if (rc != 0) {
        pthread_mutex_lock(&t->lock);
        t->ring = NULL;
        pthread_mutex_unlock(&t->lock);
        munmap(ring, RING_BYTES);
        return rc;
    }
    t->thread_started = true;
    return 0;
}

static int configure(struct tracing *t, const struct tracing_options *opts, bool at_start)
{
    struct tracing_target next;
    char why[WHY_MAX];
    int rc = target_from(opts, &next, why, sizeof(why));

    if (rc == 0 && next.endpoint != NULL && (rc = exporter_prepare(t)) != 0) {
        snprintf(why, sizeof(why), "cannot start the exporter: %s", strerror(-rc));
        tracing__target_free(&next);
    }
    if (rc != 0) {
        if (at_start)
            log_error(NULL, "tracing: %s", why);
        else
            log_warn(NULL, "tracing: %s; the running settings stay", why);
        return rc;
    }
    bool on = next.endpoint != NULL;
    /* Off: no span enters the ring once the exporter may see the new target.
     * On: the exporter has its target before the first span arrives. */
    if (!on) {
        pthread_mutex_lock(&t->lock);
        atomic_store(&t->on, false);
        pthread_mutex_unlock(&t->lock);
    }
    pthread_mutex_lock(&t->cfg_lock);
    struct tracing_target old = t->target;
    t->target = next;
    t->target_gen++;
    pthread_mutex_unlock(&t->cfg_lock);
    tracing__target_free(&old);
    atomic_store(&t->sample_threshold, ratio_threshold(opts->sample_ratio));
    if (on) {
        pthread_mutex_lock(&t->lock);
        atomic_store(&t->on, true);
        pthread_mutex_unlock(&t->lock);
    }
    if (t->thread_started)
        curl_multi_wakeup(t->multi);
    return 0;
}

int tracing_configure(struct tracing *t, const struct tracing_options *opts)
{
    if (t == NULL || opts == NULL)
        return -EINVAL;
    return configure(t, opts, false);
}

/* A random UUID (version 4), or one from the generator when the source fails. */
static void make_instance_id(char out[37])
{
    unsigned char b[16];

    if (random_bytes(b, sizeof(b)) != 0) {
        u64_bytes(b, tracing__random64());
        u64_bytes(b + 8, tracing__random64());
    }
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
    char hex[33];
    hex_write(hex, b, sizeof(b));
    snprintf(out, 37, "%.8s-%.4s-%.4s-%.4s-%.12s", hex, hex + 8, hex + 12, hex + 16, hex + 20);
}

int tracing_start(const struct tracing_options *opts, struct metrics *metrics, struct tracing **out)
{
    static const struct tracing_options off = {.sample_ratio = 1};
    struct tracing *t = calloc(1, sizeof(*t));

    *out = NULL;
    if (t == NULL)
        return -ENOMEM;
    if (pthread_mutex_init(&t->lock, NULL) != 0)
        goto fail_lock;
    if (pthread_mutex_init(&t->cfg_lock, NULL) != 0)
        goto fail_cfg_lock;
    t->metrics = metrics;
    make_instance_id(t->instance_id);
    if (gethostname(t->host_name, sizeof(t->host_name) - 1) != 0 || t->host_name[0] == '\0')
        snprintf(t->host_name, sizeof(t->host_name), "unknown");
    int rc = configure(t, opts != NULL ? opts : &off, true);
    if (rc != 0) {
        tracing_stop(t);
        return rc;
    }
    *out = t;
    return 0;

fail_cfg_lock:
    pthread_mutex_destroy(&t->lock);
fail_lock:
    free(t);
    return -ENOMEM;
}

void tracing_stop(struct tracing *t)
{
    if (t == NULL)
        return;
    if (t->thread_started) {
        pthread_mutex_lock(&t->lock);
        atomic_store(&t->on, false);
        pthread_mutex_unlock(&t->lock);
        pthread_mutex_lock(&t->cfg_lock);
        t->stopping = true;
        t->stop_deadline_ms = tracing__now_ms() + TRACING_FLUSH_MS;
        pthread_mutex_unlock(&t->cfg_lock);
        curl_multi_wakeup(t->multi);
        tracing__exporter_join(t); /* what it could not send is counted as dropped */
    }
    tracing__target_free(&t->target);
    if (t->ring != NULL)
        munmap(t->ring, RING_BYTES);
    pthread_mutex_destroy(&t->cfg_lock);
    pthread_mutex_destroy(&t->lock);
    free(t);
}
