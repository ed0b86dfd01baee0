/*
 * log.c — structured log lines on stderr.
 *
 * Owns: the current level and format (two C11 atomics, the module's only
 * state, changed live by log_configure() on reload) and a mutex that keeps
 * whole lines together on fd 2. Leaves to others: where stderr goes (journald
 * under systemd, a terminal under `make run`).
 *
 * Threads: every function is safe from any thread. A line below the current
 * level costs one relaxed atomic load. A line that is printed is built in a
 * stack buffer of at most LOG_LINE_MAX bytes and written with one write(2)
 * under a mutex, so that even a line the kernel takes in two pieces (a short
 * write, EINTR) is never interleaved with another thread's line.
 *
 * Every line is one line and, in JSON form, valid JSON whatever a client sent:
 * '"', '\\' and control characters are escaped, valid UTF-8 passes through,
 * and each maximal invalid UTF-8 subsequence becomes U+FFFD (the Unicode
 * "substitution of maximal subparts" practice). Text form escapes control
 * characters and '\\' the same way so a message cannot forge a second line.
 * Too long a message is cut at a character boundary and ends in "...".
 */
#include "log.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define LOG_LINE_MAX 8192 /* whole line, '\n' included */
#define LOG_MSG_RAW_MAX 6144 /* formatted message before escaping */
#define LOG_CTX_RAW_MAX 128 /* each context value before escaping */
/* four fields, each ',"request_id":""' plus up to 6 bytes per escaped byte, then "}\n" */
#define LOG_TAIL_MAX (4 * (16 + 6 * LOG_CTX_RAW_MAX) + 2)
#define LOG_TRUNC_MARK "..."

static atomic_int log_level_cur = LOG_LEVEL_INFO;
static atomic_int log_format_cur = LOG_FORMAT_JSON;
static pthread_mutex_t log_write_lock = PTHREAD_MUTEX_INITIALIZER;

static const char *const level_names[] = {"debug", "info", "warn", "error"};
static const char *const level_upper[] = {"DEBUG", "INFO", "WARN", "ERROR"};
static const char *const format_names[] = {"json", "text"};

void log_configure(enum log_level level, enum log_format format)
{
    if ((unsigned)level <= LOG_LEVEL_ERROR)
        atomic_store_explicit(&log_level_cur, (int)level, memory_order_relaxed);
    if ((unsigned)format <= LOG_FORMAT_TEXT)
        atomic_store_explicit(&log_format_cur, (int)format, memory_order_relaxed);
}

enum log_level log_current_level(void)
{
    return (enum log_level)atomic_load_explicit(&log_level_cur, memory_order_relaxed);
}

int log_level_parse(const char *s, enum log_level *out)
{
    if (s == NULL || out == NULL)
        return -EINVAL;
    for (unsigned i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++) {
        if (strcmp(s, level_names[i]) == 0) {
            *out = (enum log_level)i;
            return 0;
        }
    }
    return -EINVAL;
}

int log_format_parse(const char *s, enum log_format *out)
{
    if (s == NULL || out == NULL)
        return -EINVAL;
    for (unsigned i = 0; i < sizeof(format_names) / sizeof(format_names[0]); i++) {
        if (strcmp(s, format_names[i]) == 0) {
            *out = (enum log_format)i;
            return 0;
        }
    }
    return -EINVAL;
}

const char *log_level_name(enum log_level level)
{
    if ((unsigned)level > LOG_LEVEL_ERROR)
        return "unknown";
    return level_names[level];
}

/* A bounded output buffer: appends never pass `end`; `full` records a cut. */
struct outbuf {
    char *p;
    char *end;
    bool full;
};

static void out_bytes(struct outbuf *o, const char *s, size_t n)
{
    if ((size_t)(o->end - o->p) < n) {
        o->full = true;
        return;
    }
    memcpy(o->p, s, n);
    o->p += n;
}

static void out_str(struct outbuf *o, const char *s)
{
    out_bytes(o, s, strlen(s));
}

/*
 * Length of the valid UTF-8 sequence at s[0..n), or 0 if invalid; on 0,
 * *skip is the length of the maximal invalid subpart to replace by one U+FFFD.
 */
static size_t utf8_seq(const unsigned char *s, size_t n, size_t *skip)
{
    unsigned char c = s[0];
    size_t len;
    unsigned char lo = 0x80, hi = 0xBF; /* allowed range of the second byte */

    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF) {
        len = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        if (c == 0xE0)
            lo = 0xA0; /* no overlongs */
        else if (c == 0xED)
            hi = 0x9F; /* no surrogates */
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        if (c == 0xF0)
            lo = 0x90; /* no overlongs */
        else if (c == 0xF4)
            hi = 0x8F; /* nothing above U+10FFFF */
    } else {
        *skip = 1;
        return 0;
    }
    for (size_t i = 1; i < len; i++) {
        unsigned char lo_i = i == 1 ? lo : 0x80, hi_i = i == 1 ? hi : 0xBF;
        if (i >= n || s[i] < lo_i || s[i] > hi_i) {
            *skip = i;
            return 0;
        }
    }
    return len;
}

/* The two-byte escape for c, or NULL; '"' needs one only in JSON. */
static const char *short_escape(unsigned char c, bool json)
{
    switch (c) {
    case '"': return json ? "\\\"" : NULL;
    case '\\': return "\\\\";
    case '\n': return "\\n";
    case '\r': return "\\r";
    case '\t': return "\\t";
    case '\b': return "\\b";
    case '\f': return "\\f";
    default: return NULL;
    }
}

/*
 * Appends s[0..n) escaped; JSON form escapes '"' too. Stops before the first
 * unit that does not fit (o->full is then set). Returns bytes of s consumed.
 */
static size_t out_escaped(struct outbuf *o, const char *s, size_t n, bool json)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;

    while (i < n && !o->full) {
        unsigned char c = u[i];
        const char *esc = short_escape(c, json);
        size_t used = 1, skip = 0;

        if (esc != NULL) {
            out_bytes(o, esc, 2);
        } else if (c < 0x20 || c == 0x7F) {
            const char uesc[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 0xF]};
            out_bytes(o, uesc, sizeof(uesc));
        } else if ((used = utf8_seq(u + i, n - i, &skip)) != 0) {
            out_bytes(o, s + i, used);
        } else {
            out_bytes(o, "\xEF\xBF\xBD", 3); /* U+FFFD */
            used = skip;
        }
        if (!o->full)
            i += used;
    }
    return i;
}

/* "2026-11-25T23:59:01.123Z" (24 chars) into out[32]. */
static void format_time(char out[32])
{
    struct timespec ts;
    struct tm tm;
    size_t n;

    if (clock_gettime(CLOCK_REALTIME, &ts) != 0 || gmtime_r(&ts.tv_sec, &tm) == NULL ||
        (n = strftime(out, 32, "%Y-%m-%dT%H:%M:%S", &tm)) == 0 || n > 24) {
        memcpy(out, "1970-01-01T00:00:00.000Z", 25);
        return;
    }
    snprintf(out + n, 32 - n, ".%03uZ", (unsigned)(ts.tv_nsec / 1000000) % 1000u);
}

/* Appends the context fields and the line's end ("}\n" or "\n") to o. */
static void format_tail(struct outbuf *o, const struct log_ctx *ctx, bool json)
{
    static const char *const keys[] = {"request_id", "trace_id", "span_id", "order_id"};
    const char *vals[4] = {NULL, NULL, NULL, NULL};

    if (ctx != NULL) {
        vals[0] = ctx->request_id;
        vals[1] = ctx->trace_id;
        vals[2] = ctx->span_id;
        vals[3] = ctx->order_id;
    }
    for (int i = 0; i < 4; i++) {
        if (vals[i] == NULL)
            continue;
        size_t n = strnlen(vals[i], LOG_CTX_RAW_MAX);
        if (json) {
            out_str(o, ",\"");
            out_str(o, keys[i]);
            out_str(o, "\":\"");
            out_escaped(o, vals[i], n, true);
            out_str(o, "\"");
        } else {
            out_str(o, " ");
            out_str(o, keys[i]);
            out_str(o, "=");
            out_escaped(o, vals[i], n, false);
        }
    }
    out_str(o, json ? "}\n" : "\n");
}

/*
 * Writes all of buf to fd 2, retrying on EINTR and short writes; drops the
 * rest on any other error. The lock keeps a line that the kernel splits
 * (over PIPE_BUF, or a full socket buffer) whole against other threads.
 */
static void write_line(const char *buf, size_t len)
{
    size_t off = 0;

    pthread_mutex_lock(&log_write_lock);
    while (off < len) {
        ssize_t w = write(STDERR_FILENO, buf + off, len - off);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        off += (size_t)w;
    }
    pthread_mutex_unlock(&log_write_lock);
}

void log_write(enum log_level level, const struct log_ctx *ctx, const char *fmt, ...)
{
    if ((int)level < atomic_load_explicit(&log_level_cur, memory_order_relaxed))
        return;

    int saved_errno = errno;
    bool json = atomic_load_explicit(&log_format_cur, memory_order_relaxed) == LOG_FORMAT_JSON;
    char raw[LOG_MSG_RAW_MAX];
    char tail[LOG_TAIL_MAX];
    char line[LOG_LINE_MAX];
    char now[32];
    va_list ap;

    va_start(ap, fmt);
    int r = vsnprintf(raw, sizeof(raw), fmt, ap);
    va_end(ap);
    size_t raw_len;
    bool cut = false;
    if (r < 0) {
        raw_len = 0;
        cut = true;
    } else if ((size_t)r >= sizeof(raw)) {
        raw_len = sizeof(raw) - 1;
        cut = true;
        /* drop a sequence split by the cut rather than print U+FFFD for it */
        size_t k = raw_len;
        while (k > 0 && raw_len - k < 3 && ((unsigned char)raw[k - 1] & 0xC0) == 0x80)
            k--;
        if (k > 0 && (unsigned char)raw[k - 1] >= 0xC0) {
            size_t skip;
            if (utf8_seq((unsigned char *)raw + k - 1, raw_len - (k - 1), &skip) == 0)
                raw_len = k - 1;
        }
    } else {
        raw_len = (size_t)r;
    }

    struct outbuf t = {tail, tail + sizeof(tail), false};
    format_tail(&t, ctx, json);
    size_t tail_len = (size_t)(t.p - tail);

    /* the message may use what the head and the tail leave, minus room for "..." */
    struct outbuf o = {line, line + sizeof(line) - tail_len, false};
    format_time(now);
    if (json) {
        out_str(&o, "{\"time\":\"");
        out_str(&o, now);
        out_str(&o, "\",\"level\":\"");
        out_str(&o, log_level_name(level));
        out_str(&o, "\",\"msg\":\"");
    } else {
        out_str(&o, now);
        out_str(&o, " ");
        out_str(&o, (unsigned)level <= LOG_LEVEL_ERROR ? level_upper[level] : "UNKNOWN");
        out_str(&o, " ");
    }
    o.end -= strlen(LOG_TRUNC_MARK) + (json ? 1 : 0); /* "..." and the closing quote */
    if (out_escaped(&o, raw, raw_len, json) < raw_len)
        cut = true;
    o.end = line + sizeof(line);
    o.full = false;
    if (cut)
        out_str(&o, LOG_TRUNC_MARK);
    if (json)
        out_str(&o, "\"");
    out_bytes(&o, tail, tail_len);

    write_line(line, (size_t)(o.p - line));
    errno = saved_errno;
}
