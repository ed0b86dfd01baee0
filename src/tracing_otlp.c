/*
 * tracing_otlp.c — the exporter thread: takes ended spans from the buffer in
 * batches, encodes them as OTLP/HTTP JSON (an ExportTraceServiceRequest) and
 * POSTs them to [tracing] otlp_endpoint with libcurl.
 *
 * When: as soon as TRACING_BATCH_SPANS wait (the thread that ends the
 * batch's last span wakes it), else every TRACING_EXPORT_INTERVAL_MS while
 * any wait. One request at a time, at most TRACING_BATCH_SPANS spans each.
 *
 * The JSON follows the OTLP specification's "JSON Protobuf Encoding": keys
 * in lowerCamelCase, trace and span ids as hex strings (not base64), enums
 * (kind, status code) as integers, 64-bit integers (times in nanoseconds,
 * intValue) as decimal strings, doubles as numbers or "NaN" / "Infinity" /
 * "-Infinity"; a root span has no parentSpanId. Strings are escaped, and
 * invalid UTF-8 is replaced by U+FFFD (each maximal invalid subpart), so a
 * client's odd bytes in an attribute cannot make the collector refuse the
 * batch.
 *
 * Answers: 2xx → exported (minus partialSuccess.rejectedSpans, counted as
 * dropped); 429, 502, 503, 504 and network errors → the same body again
 * after a backoff (Retry-After when given, up to TRACING_BACKOFF_MAX_MS;
 * else full jitter from TRACING_EXPORT_INTERVAL_MS doubling to that bound)
 * while new spans keep filling the buffer, and dropping once it is full;
 * anything else (400, other 4xx and 5xx, a redirect, an answer over
 * TRACING_ANSWER_MAX) → the batch is dropped and counted. Each change of
 * state (exporting, retrying, refused, buffer full) is logged once, never
 * each batch.
 *
 * Stop: what is buffered is sent for at most TRACING_FLUSH_MS, one attempt
 * per batch; what is left then is dropped and counted. Off (a reload
 * without an endpoint): the request in flight is abandoned and everything
 * buffered dropped.
 *
 * Thread: the exporter's own; it sleeps in curl_multi_poll(), woken by
 * curl_multi_wakeup() (a full batch, configure, stop) or its timers.
 */
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backoff.h"
#include "log.h"
#include "tracing_int.h"

/* Roughly what one span takes in JSON, to size the body once. */
#define SPAN_JSON_GUESS 600

enum export_state {
    EXPORT_OK,       /* the last export was accepted (or none yet) */
    EXPORT_RETRYING, /* network error, 429 or 5xx that may pass: backing off */
    EXPORT_REFUSED,  /* a batch was refused for good */
};

struct exporter {
    struct tracing *t;
    uint64_t gen; /* of the target below */
    char *endpoint, *service_name;
    struct curl_slist *headers;
    /* the list the request in flight was given: libcurl does not copy it, so
     * a configure meanwhile frees it only once that request ends */
    struct curl_slist *headers_in_use;
    bool stopping;
    int64_t deadline_ms;

    CURL *easy; /* reused: the multi keeps the connection alive between exports */
    bool in_flight;
    char curl_error[CURL_ERROR_SIZE];
    struct strbuf answer;
    bool answer_too_big;

    char *body; /* the batch being sent or waiting for its retry */
    size_t body_len, body_spans;
    uint32_t attempt;
    int64_t retry_at_ms, next_tick_ms;

    enum export_state state;
    uint64_t full_seen; /* full_drops when last looked at */
    bool full_logged;
    int64_t full_quiet_since_ms;
};

/* ---- JSON ---------------------------------------------------------------------- */

/*
 * Length of the valid UTF-8 sequence at p (2..4), or 0 with *skip set to the
 * maximal subpart to replace (at least 1). Never reads past a NUL: 0 is
 * outside every continuation range.
 */
static size_t utf8_sequence(const unsigned char *p, size_t *skip)
{
    unsigned c = p[0], lo = 0x80, hi = 0xBF;
    size_t need;

    if (c >= 0xC2 && c <= 0xDF) {
        need = 1;
    } else if (c >= 0xE0 && c <= 0xEF) {
        need = 2;
        lo = c == 0xE0 ? 0xA0 : 0x80; /* no overlong forms */
        hi = c == 0xED ? 0x9F : 0xBF; /* no surrogates */
    } else if (c >= 0xF0 && c <= 0xF4) {
        need = 3;
        lo = c == 0xF0 ? 0x90 : 0x80;
        hi = c == 0xF4 ? 0x8F : 0xBF; /* nothing above U+10FFFF */
    } else {
        *skip = 1;
        return 0;
    }
    for (size_t i = 1; i <= need; i++) {
        if (p[i] < lo || p[i] > hi) {
            *skip = i;
            return 0;
        }
        lo = 0x80;
        hi = 0xBF;
    }
    return need + 1;
}

static void json_str(struct strbuf *b, const char *s)
{
    const unsigned char *p = (const unsigned char *)(s != NULL ? s : ""), *run = p;

    strbuf_add(b, "\"", 1);
    while (*p != '\0') {
        if (*p >= 0x20 && *p < 0x80 && *p != '"' && *p != '\\') {
            p++;
            continue;
        }
        size_t skip = 0, len = *p < 0x80 ? 1 : utf8_sequence(p, &skip);
        if (*p >= 0x80 && len > 0) {
            p += len;
            continue;
        }
        strbuf_add(b, (const char *)run, (size_t)(p - run));
        if (*p >= 0x80) {
            strbuf_add(b, "\xEF\xBF\xBD", 3); /* U+FFFD */
            p += skip;
        } else {
            switch (*p) {
            case '"':
                strbuf_add(b, "\\\"", 2);
                break;
            case '\\':
                strbuf_add(b, "\\\\", 2);
                break;
            case '\n':
                strbuf_add(b, "\\n", 2);
                break;
            case '\r':
                strbuf_add(b, "\\r", 2);
                break;
            case '\t':
                strbuf_add(b, "\\t", 2);
                break;
            default:
                strbuf_printf(b, "\\u%04x", *p);
                break;
            }
            p++;
        }
        run = p;
    }
    strbuf_add(b, (const char *)run, (size_t)(p - run));
    strbuf_add(b, "\"", 1);
}

static void json_key(struct strbuf *b, const char *key)
{
    json_str(b, key);
    strbuf_add(b, ":", 1);
}

static void kv_string(struct strbuf *b, const char *key, const char *value)
{
    strbuf_str(b, "{\"key\":");
    json_str(b, key);
    strbuf_str(b, ",\"value\":{\"stringValue\":");
    json_str(b, value);
    strbuf_str(b, "}}");
}

static void attr_json(struct strbuf *b, const struct tracing_attr *a)
{
    switch (a->type) {
    case TRACING_ATTR_INT:
        strbuf_str(b, "{\"key\":");
        json_str(b, a->key);
        strbuf_printf(b, ",\"value\":{\"intValue\":\"%" PRId64 "\"}}", a->v.i);
        break;
    case TRACING_ATTR_DOUBLE:
        strbuf_str(b, "{\"key\":");
        json_str(b, a->key);
        strbuf_str(b, ",\"value\":{\"doubleValue\":");
        if (isnan(a->v.d))
            strbuf_str(b, "\"NaN\"");
        else if (isinf(a->v.d))
            strbuf_str(b, a->v.d > 0 ? "\"Infinity\"" : "\"-Infinity\"");
        else
            strbuf_printf(b, "%.17g", a->v.d);
        strbuf_str(b, "}}");
        break;
    default:
        kv_string(b, a->key, a->v.s);
        break;
    }
}

static void span_json(struct strbuf *b, const struct tracing_span *s)
{
    int kind = s->kind >= TRACING_INTERNAL && s->kind <= TRACING_CONSUMER ? (int)s->kind : 0;
    int64_t start = s->start_unix_ns > 0 ? s->start_unix_ns : 0;
    int64_t end = s->end_unix_ns > start ? s->end_unix_ns : start;

    strbuf_str(b, "{\"traceId\":");
    json_str(b, s->ctx.trace_id);
    strbuf_str(b, ",\"spanId\":");
    json_str(b, s->ctx.span_id);
    if (s->parent_span_id[0] != '\0') {
        strbuf_str(b, ",\"parentSpanId\":");
        json_str(b, s->parent_span_id);
    }
    strbuf_str(b, ",\"name\":");
    json_str(b, s->name);
    strbuf_printf(b,
                  ",\"kind\":%d,\"startTimeUnixNano\":\"%" PRId64
                  "\",\"endTimeUnixNano\":\"%" PRId64 "\",\"attributes\":[",
                  kind, start, end);
    size_t n = s->n_attrs <= TRACING_ATTRS_MAX ? s->n_attrs : TRACING_ATTRS_MAX;
    bool first = true;
    for (size_t i = 0; i < n; i++) {
        if (s->attrs[i].key == NULL)
            continue;
        if (!first)
            strbuf_add(b, ",", 1);
        attr_json(b, &s->attrs[i]);
        first = false;
    }
    strbuf_add(b, "]", 1);
    if (s->status == TRACING_STATUS_OK || s->status == TRACING_STATUS_ERROR) {
        strbuf_printf(b, ",\"status\":{\"code\":%d", (int)s->status);
        if (s->status_message[0] != '\0') {
            strbuf_add(b, ",", 1);
            json_key(b, "message");
            json_str(b, s->status_message);
        }
        strbuf_add(b, "}", 1);
    }
    strbuf_add(b, "}", 1);
}

void tracing__encode(struct strbuf *out, const char *service_name, const char *instance_id,
                     const char *host_name, const struct tracing_span *spans, size_t n)
{
    strbuf_str(out, "{\"resourceSpans\":[{\"resource\":{\"attributes\":[");
    kv_string(out, "service.name", service_name);
    strbuf_add(out, ",", 1);
    kv_string(out, "service.version", ORDERD_VERSION);
    strbuf_add(out, ",", 1);
    kv_string(out, "service.instance.id", instance_id);
    strbuf_add(out, ",", 1);
    kv_string(out, "host.name", host_name);
    strbuf_str(out, "]},\"scopeSpans\":[{\"scope\":{\"name\":");
    json_str(out, TRACING_SCOPE_NAME);
    strbuf_str(out, ",\"version\":");
    json_str(out, ORDERD_VERSION);
    strbuf_str(out, "},\"spans\":[");
    for (size_t i = 0; i < n; i++) {
        if (i > 0)
            strbuf_add(out, ",", 1);
        span_json(out, &spans[i]);
    }
    strbuf_str(out, "]}]}]}");
}

/* ---- the buffer ------------------------------------------------------------------ */

static size_t buffered(struct tracing *t)
{
    pthread_mutex_lock(&t->lock);
    size_t n = t->count;
    pthread_mutex_unlock(&t->lock);
    return n;
}

/* Drops every span waiting in the buffer; counted. Caller holds t->lock. */
static void drop_buffered_locked(struct tracing *t)
{
    size_t n = t->count;

    t->head = (t->head + n) % TRACING_BUFFER_SPANS;
    t->count = 0;
    tracing__count_dropped(t, n);
}

static void drop_buffered(struct tracing *t)
{
    pthread_mutex_lock(&t->lock);
    drop_buffered_locked(t);
    pthread_mutex_unlock(&t->lock);
}

/*
 * Off: drops what was buffered before tracing was turned off, unless the
 * target changed or stop began since this thread read them (spans ended
 * since then are kept for the next turn). Under cfg_lock no configure can
 * turn tracing on, so no span enters the ring meanwhile.
 */
static void drop_buffered_while_off(struct exporter *x)
{
    struct tracing *t = x->t;

    pthread_mutex_lock(&t->cfg_lock);
    if (t->target_gen == x->gen && !t->stopping) {
        pthread_mutex_lock(&t->lock);
        drop_buffered_locked(t);
        pthread_mutex_unlock(&t->lock);
    }
    pthread_mutex_unlock(&t->cfg_lock);
}

/*
 * Encodes the oldest spans (at most a batch, not across the ring's end) into
 * x->body and frees their slots. The slots stay counted while they are read
 * outside the lock, so no thread that ends a span writes them meanwhile.
 */
static void take_batch(struct exporter *x)
{
    struct tracing *t = x->t;
    struct strbuf b = STRBUF_INIT;

    pthread_mutex_lock(&t->lock);
    size_t head = t->head, n = t->count;
    pthread_mutex_unlock(&t->lock);
    if (n > TRACING_BATCH_SPANS)
        n = TRACING_BATCH_SPANS;
    if (n > TRACING_BUFFER_SPANS - head)
        n = TRACING_BUFFER_SPANS - head;
    if (n == 0)
        return;
    strbuf_reserve(&b, n * SPAN_JSON_GUESS + 1024);
    tracing__encode(&b, x->service_name, t->instance_id, t->host_name, &t->ring[head], n);
    pthread_mutex_lock(&t->lock);
    t->head = (head + n) % TRACING_BUFFER_SPANS;
    t->count -= n;
    pthread_mutex_unlock(&t->lock);
    size_t len = b.len;
    char *body = strbuf_finish(&b);
    if (body == NULL) {
        log_warn(NULL, "tracing: out of memory encoding %zu spans: dropped", n);
        tracing__count_dropped(t, n);
        return;
    }
    x->body = body;
    x->body_len = len;
    x->body_spans = n;
    x->attempt = 0;
}

static void drop_body(struct exporter *x)
{
    if (x->body == NULL)
        return;
    tracing__count_dropped(x->t, x->body_spans);
    free(x->body);
    x->body = NULL;
    x->body_len = x->body_spans = 0;
}

/* ---- the target ------------------------------------------------------------------ */

static void slist_free_wiped(struct curl_slist *l)
{
    for (struct curl_slist *p = l; p != NULL; p = p->next)
        explicit_bzero(p->data, strlen(p->data));
    curl_slist_free_all(l);
}

/* Takes the configured target when it changed; false when memory ran out
 * (the old one stays, tried again on the next turn). */
static bool refresh_target(struct exporter *x)
{
    struct tracing *t = x->t;
    bool ok = true;

    pthread_mutex_lock(&t->cfg_lock);
    x->stopping = t->stopping;
    x->deadline_ms = t->stop_deadline_ms;
    if (t->target_gen != x->gen) {
        const struct tracing_target *g = &t->target;
        char *endpoint = g->endpoint != NULL ? strdup(g->endpoint) : NULL;
        char *name = strdup(g->service_name != NULL ? g->service_name : "orderd");
        /* Expect: no 100-continue round trip before a large body */
        struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
        struct curl_slist *h2 = h != NULL ? curl_slist_append(h, "Expect:") : NULL;
        ok = name != NULL && (g->endpoint == NULL || endpoint != NULL) && h2 != NULL;
        h = h2;
        for (size_t i = 0; ok && i < g->n_headers; i++) {
            struct curl_slist *next = curl_slist_append(h, g->headers[i]);
            ok = next != NULL;
            h = next != NULL ? next : h;
        }
        if (ok) {
            free(x->endpoint);
            free(x->service_name);
            if (x->headers != x->headers_in_use)
                slist_free_wiped(x->headers);
            x->endpoint = endpoint;
            x->service_name = name;
            x->headers = h;
            x->gen = t->target_gen;
        } else {
            free(endpoint);
            free(name);
            slist_free_wiped(h);
        }
    }
    pthread_mutex_unlock(&t->cfg_lock);
    return ok;
}

/* ---- one export ---------------------------------------------------------------- */

static size_t on_answer(char *data, size_t size, size_t nmemb, void *arg)
{
    struct exporter *x = arg;
    size_t n = size * nmemb;

    if (x->answer.len + n > TRACING_ANSWER_MAX)
        x->answer_too_big = true;
    else
        strbuf_add(&x->answer, data, n);
    return n;
}

static void set_state(struct exporter *x, enum export_state next, const char *why)
{
    if (next == x->state)
        return;
    if (next == EXPORT_OK)
        log_info(NULL, "tracing: the collector accepts spans again");
    else if (next == EXPORT_RETRYING)
        log_warn(NULL,
                 "tracing: cannot export spans: %s; retrying with backoff (spans that do not "
                 "fit in the buffer are dropped meanwhile)",
                 why);
    else
        log_warn(NULL,
                 "tracing: the collector refused a batch: %s; its spans are dropped (logged "
                 "again only after an export succeeds)",
                 why);
    x->state = next;
}

/* Starts sending x->body; false when the request could not be made (the
 * body is then dropped). */
static bool send_body(struct exporter *x, int64_t now)
{
    long timeout = TRACING_EXPORT_TIMEOUT_MS;
    CURLcode rc = CURLE_OK;

    if (x->stopping && x->deadline_ms - now < timeout)
        timeout = x->deadline_ms - now > 1 ? (long)(x->deadline_ms - now) : 1;
    if (x->easy == NULL && (x->easy = curl_easy_init()) == NULL)
        rc = CURLE_OUT_OF_MEMORY;
#define SET(opt, val)                                                                              \
    do {                                                                                           \
        if (rc == CURLE_OK)                                                                        \
            rc = curl_easy_setopt(x->easy, opt, val);                                              \
    } while (0)
    SET(CURLOPT_URL, x->endpoint);
    SET(CURLOPT_PROTOCOLS_STR, "http,https");
    SET(CURLOPT_FOLLOWLOCATION, 0L);
    SET(CURLOPT_NOSIGNAL, 1L);
    SET(CURLOPT_TCP_KEEPALIVE, 1L);
    SET(CURLOPT_TIMEOUT_MS, timeout);
    SET(CURLOPT_POST, 1L);
    SET(CURLOPT_POSTFIELDS, x->body);
    SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)x->body_len);
    SET(CURLOPT_HTTPHEADER, x->headers);
    SET(CURLOPT_USERAGENT, "orderd/" ORDERD_VERSION);
    SET(CURLOPT_WRITEFUNCTION, on_answer);
    SET(CURLOPT_WRITEDATA, x);
    SET(CURLOPT_ERRORBUFFER, x->curl_error);
    SET(CURLOPT_SSL_VERIFYPEER, 1L);
    SET(CURLOPT_SSL_VERIFYHOST, 2L);
#undef SET
    x->curl_error[0] = '\0';
    x->answer.len = 0;
    x->answer_too_big = false;
    if (rc == CURLE_OK && curl_multi_add_handle(x->t->multi, x->easy) == CURLM_OK) {
        x->in_flight = true;
        x->headers_in_use = x->headers;
        atomic_fetch_add_explicit(&x->t->requests, 1, memory_order_relaxed);
        return true;
    }
    log_warn(NULL, "tracing: cannot make an export request: %s; %zu spans dropped",
             curl_easy_strerror(rc), x->body_spans);
    drop_body(x);
    return false;
}

/* The request in flight is over (ended, or abandoned): its header list may go. */
static void request_over(struct exporter *x)
{
    curl_multi_remove_handle(x->t->multi, x->easy);
    x->in_flight = false;
    if (x->headers_in_use != x->headers)
        slist_free_wiped(x->headers_in_use);
    x->headers_in_use = NULL;
}

static void abandon_request(struct exporter *x)
{
    if (x->in_flight)
        request_over(x);
}

/* partialSuccess.rejectedSpans of a 2xx answer (a string or a number); 0 when absent. */
static uint64_t rejected_spans(const struct exporter *x)
{
    json_t *root = json_loadb(x->answer.p != NULL ? x->answer.p : "", x->answer.len, 0, NULL);
    json_t *v = json_object_get(json_object_get(root, "partialSuccess"), "rejectedSpans");
    uint64_t n = 0;

    if (json_is_integer(v) && json_integer_value(v) > 0)
        n = (uint64_t)json_integer_value(v);
    else if (json_is_string(v))
        n = strtoull(json_string_value(v), NULL, 10);
    json_decref(root);
    return n;
}

static void retry_later(struct exporter *x, int64_t now, const char *why, curl_off_t retry_after_s)
{
    if (x->stopping) { /* the flush makes one attempt per batch */
        drop_body(x);
        return;
    }
    set_state(x, EXPORT_RETRYING, why);
    x->attempt++;
    uint64_t delay;
    if (retry_after_s > 0)
        delay = retry_after_s < TRACING_BACKOFF_MAX_MS / 1000 ? (uint64_t)retry_after_s * 1000
                                                              : TRACING_BACKOFF_MAX_MS;
    else
        delay = backoff_delay_ms(TRACING_EXPORT_INTERVAL_MS, TRACING_BACKOFF_MAX_MS, x->attempt,
                                 tracing__random64());
    x->retry_at_ms = now + (int64_t)delay;
}

/* The request in flight ended with rc: exported, retried or dropped. */
static void request_done(struct exporter *x, CURLcode rc, int64_t now)
{
    long status = 0;
    curl_off_t retry_after = 0;
    char why[CURL_ERROR_SIZE + 64];

    curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_getinfo(x->easy, CURLINFO_RETRY_AFTER, &retry_after);
    request_over(x);
    if (rc != CURLE_OK) {
        snprintf(why, sizeof(why), "%s",
                 x->curl_error[0] != '\0' ? x->curl_error : curl_easy_strerror(rc));
        retry_later(x, now, why, 0);
        return;
    }
    snprintf(why, sizeof(why), "HTTP %ld", status);
    if (status >= 200 && status <= 299 && !x->answer_too_big) {
        uint64_t rejected = rejected_spans(x);
        if (rejected > x->body_spans)
            rejected = x->body_spans;
        tracing__count_exported(x->t, x->body_spans - rejected);
        tracing__count_dropped(x->t, rejected);
        free(x->body);
        x->body = NULL;
        x->body_spans = x->body_len = 0;
        x->attempt = 0;
        set_state(x, EXPORT_OK, NULL);
        return;
    }
    if (status == 429 || status == 502 || status == 503 || status == 504) {
        retry_later(x, now, why, retry_after);
        return;
    }
    if (x->answer_too_big)
        snprintf(why, sizeof(why), "HTTP %ld with an answer over %d bytes", status,
                 TRACING_ANSWER_MAX);
    set_state(x, EXPORT_REFUSED, why);
    drop_body(x);
}

/* Logs once when spans start to be dropped for want of room, and again only
 * after a quiet interval. */
static void watch_full_buffer(struct exporter *x, int64_t now)
{
    pthread_mutex_lock(&x->t->lock);
    uint64_t full = x->t->full_drops;
    pthread_mutex_unlock(&x->t->lock);

    if (full != x->full_seen) {
        if (!x->full_logged)
            log_warn(NULL,
                     "tracing: the span buffer is full (%d spans): new spans are dropped until "
                     "the collector catches up",
                     TRACING_BUFFER_SPANS);
        x->full_logged = true;
        x->full_seen = full;
        x->full_quiet_since_ms = now;
    } else if (x->full_logged && now - x->full_quiet_since_ms >= TRACING_EXPORT_INTERVAL_MS) {
        x->full_logged = false;
    }
}

/* ---- the thread ---------------------------------------------------------------- */

/* What to do next when nothing is in flight. */
static void next_step(struct exporter *x, int64_t now)
{
    if (x->body != NULL) {
        if (x->stopping || now >= x->retry_at_ms)
            send_body(x, now);
        return;
    }
    size_t n = buffered(x->t);
    if (n == 0) {
        if (now >= x->next_tick_ms)
            x->next_tick_ms = now + TRACING_EXPORT_INTERVAL_MS;
        return;
    }
    if (n >= TRACING_BATCH_SPANS || now >= x->next_tick_ms || x->stopping) {
        take_batch(x);
        x->next_tick_ms = now + TRACING_EXPORT_INTERVAL_MS;
        if (x->body != NULL)
            send_body(x, now);
    }
}

static int poll_timeout(const struct exporter *x, int64_t now)
{
    int64_t wait = TRACING_EXPORT_INTERVAL_MS;

    if (!x->in_flight && x->endpoint != NULL) {
        if (x->body != NULL)
            wait = x->retry_at_ms - now;
        else if (x->next_tick_ms - now < wait)
            wait = x->next_tick_ms - now;
    }
    if (x->stopping && x->deadline_ms - now < wait)
        wait = x->deadline_ms - now;
    if (wait > TRACING_EXPORT_INTERVAL_MS)
        wait = TRACING_EXPORT_INTERVAL_MS;
    return wait > 0 ? (int)wait : 0;
}

static void *exporter_main(void *arg)
{
    struct exporter x = {.t = arg, .answer = STRBUF_INIT};
    struct tracing *t = x.t;

    x.next_tick_ms = tracing__now_ms() + TRACING_EXPORT_INTERVAL_MS;
    for (;;) {
        bool fresh = refresh_target(&x);
        int64_t now = tracing__now_ms();
        if (x.endpoint == NULL) { /* off: nothing is kept */
            abandon_request(&x);
            drop_body(&x);
            drop_buffered_while_off(&x);
        }
        if (x.stopping) { /* the target read with stopping is the last one */
            if (now >= x.deadline_ms || x.endpoint == NULL) {
                abandon_request(&x);
                drop_body(&x);
                drop_buffered(t);
                break;
            }
            if (!x.in_flight && x.body == NULL && buffered(t) == 0)
                break;
        }
        watch_full_buffer(&x, now);
        if (!x.in_flight && x.endpoint != NULL)
            next_step(&x, now);
        int timeout = fresh ? poll_timeout(&x, now) : 100;
        curl_multi_poll(t->multi, NULL, 0, timeout, NULL);
        int running = 0;
        curl_multi_perform(t->multi, &running);
        int left = 0;
        CURLMsg *m;
        while ((m = curl_multi_info_read(t->multi, &left)) != NULL)
            if (m->msg == CURLMSG_DONE && m->easy_handle == x.easy && x.in_flight)
                request_done(&x, m->data.result, tracing__now_ms());
    }
    abandon_request(&x);
    if (x.easy != NULL)
        curl_easy_cleanup(x.easy);
    free(x.endpoint);
    free(x.service_name);
    slist_free_wiped(x.headers);
    free(strbuf_finish(&x.answer));
    return NULL;
}

/* libcurl's global state, once per process, before the first multi handle;
 * never cleaned up (the process ends with it). */
static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_result = CURLE_FAILED_INIT;

static void curl_init_once(void) { curl_init_result = curl_global_init(CURL_GLOBAL_DEFAULT); }

int tracing__exporter_start(struct tracing *t)
{
    if (pthread_once(&curl_once, curl_init_once) != 0 || curl_init_result != CURLE_OK)
        return -ENOMEM;
    t->multi = curl_multi_init();
    if (t->multi == NULL)
        return -ENOMEM;
    int rc = pthread_create(&t->thread, NULL, exporter_main, t);
    if (rc != 0) {
        curl_multi_cleanup(t->multi);
        t->multi = NULL;
        return -rc;
    }
    return 0;
}

void tracing__exporter_join(struct tracing *t)
{
    pthread_join(t->thread, NULL);
    curl_multi_cleanup(t->multi);
    t->multi = NULL;
}
