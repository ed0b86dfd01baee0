/*
 * api_json.c — JSON pieces and replies shared by the API modules (see
 * api_json.h). Runs on HTTP threads (and the committer, for replies); the
 * pure ones (an order's object) also in orderd export.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "api_json.h"
#include "bounds.h"
#include "ids.h"
#include "store.h"
#include "trace.h"

void api_format_time(int64_t ms, char out[32])
{
    time_t secs = (time_t)(ms / 1000);
    struct tm tm;
    if (gmtime_r(&secs, &tm) == NULL) {
        snprintf(out, 32, "1970-01-01T00:00:00.000Z");
        return;
    }
    char base[24];
    strftime(base, sizeof(base), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out, 32, "%s.%03dZ", base, (int)(ms % 1000));
}

json_t *api_time_or_null(int64_t ms)
{
    if (ms <= 0)
        return json_null();
    char t[32];
    api_format_time(ms, t);
    return json_string(t);
}

json_t *api_trace_id_of(const char *traceparent)
{
    struct trace_context tc;
    if (trace_parse(traceparent, &tc) != 0)
        return json_null();
    return json_string(tc.trace_id);
}

/* The fulfilment service's answer as stored (JSON text), or null. */
static json_t *fulfilment_result_json(const char *text)
{
    json_t *j = text ? json_loads(text, JSON_DECODE_ANY, NULL) : NULL;
    return j ? j : json_null();
}

json_t *api_order_json(const struct store_order *o)
{
    json_t *items = json_loads(o->items_json, 0, NULL);
    bool redriven = o->redrives > 0;
    json_t *obj = json_pack(
        "{s:s, s:s, s:o, s:s, s:I, s:o, s:o, s:o, s:o, s:I, s:o, s:o, s:o, s:o, s:o}", "order_id",
        o->order_id, "customer_id", o->customer_id, "items", items ? items : json_array(), "status",
        o->status, "attempts", (json_int_t)o->attempts, "created_at",
        api_time_or_null(o->created_at_ms), "processed_at", api_time_or_null(o->processed_at_ms),
        "last_error", o->last_error ? json_string(o->last_error) : json_null(), "trace_id",
        api_trace_id_of(o->traceparent), "redrives", (json_int_t)o->redrives, "redriven_at",
        api_time_or_null(o->redriven_at_ms), "previous_attempts",
        redriven ? json_integer(o->previous_attempts) : json_null(), "previous_error",
        redriven && o->previous_error ? json_string(o->previous_error) : json_null(),
        "discarded_at", api_time_or_null(o->discarded_at_ms), "fulfilment_result",
        fulfilment_result_json(o->fulfilment_result));
    return obj;
}

static const char b64url[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

void api_cursor_encode(const char *order_id, char *out, size_t size)
{
    const unsigned char *in = (const unsigned char *)order_id;
    size_t len = strlen(order_id), o = 0;
    for (size_t i = 0; i < len && o + 5 < size; i += 3) {
        unsigned v = (unsigned)in[i] << 16;
        if (i + 1 < len)
            v |= (unsigned)in[i + 1] << 8;
        if (i + 2 < len)
            v |= in[i + 2];
        out[o++] = b64url[(v >> 18) & 63];
        out[o++] = b64url[(v >> 12) & 63];
        if (i + 1 < len)
            out[o++] = b64url[(v >> 6) & 63];
        if (i + 2 < len)
            out[o++] = b64url[v & 63];
    }
    out[o] = '\0';
}

int api_cursor_decode(const char *cursor, char *order_id, size_t size)
{
    size_t len = strlen(cursor), o = 0;
    unsigned v = 0;
    int bits = 0;
    for (size_t i = 0; i < len; i++) {
        const char *p = strchr(b64url, cursor[i]);
        if (p == NULL)
            return -EINVAL;
        v = (v << 6) | (unsigned)(p - b64url);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (o + 1 >= size)
                return -EINVAL;
            order_id[o++] = (char)((v >> bits) & 0xff);
        }
    }
    order_id[o] = '\0';
    return ids_ulid_valid(order_id) ? 0 : -EINVAL;
}

size_t api_page_size(size_t n, size_t limit)
{
    return n > limit ? limit : n;
}

json_t *api_next_cursor(const char *last_shown_id, size_t n, size_t limit)
{
    if (last_shown_id == NULL || n <= limit)
        return json_null();
    char cursor[64];
    api_cursor_encode(last_shown_id, cursor, sizeof(cursor));
    return json_string(cursor);
}

void api_reply_object(struct http_request *req, unsigned status, json_t *obj)
{
    char *text = obj ? json_dumps(obj, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(obj);
    http_reply_json(req, status, text);
}

void api_reply_unavailable(struct http_request *req, const char *detail)
{
    char v[16];
    snprintf(v, sizeof(v), "%d", HTTP_RETRY_AFTER_S);
    http_reply_header(req, "Retry-After", v);
    http_reply_problem(req, 503, NULL, detail, NULL, 0);
}

/* ---- problems in a query string ------------------------------------------ */

void api_query_error(struct api_query_errors *q, const char *field, const char *fmt, ...)
{
    if (q->n >= API_QUERY_ERRORS_MAX)
        return;
    struct http_field_error *e = &q->errors[q->n++];
    snprintf(e->field, sizeof(e->field), "%s", field);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof(e->message), fmt, ap);
    va_end(ap);
}

void api_query_reject_unknown(struct api_query_errors *q, const char *name,
                              const char *const *known)
{
    for (size_t i = 0; known[i] != NULL; i++)
        if (strcmp(name, known[i]) == 0)
            return;
    api_query_error(q, name, "unknown query parameter");
}

bool api_reply_query_errors(struct http_request *req, const struct api_query_errors *q)
{
    if (q->n == 0)
        return false;
    http_reply_problem(req, 400, "Invalid query", "one or more query parameters are invalid",
                       q->errors, q->n);
    return true;
}
