/*
 * api_json.h — the pieces of JSON and replies that every API module shares:
 * timestamps, an order's object (which orderd export writes too), opaque
 * list cursors, the next_cursor of a page, the problems found in a query
 * string, JSON object replies and 503s with Retry-After. Pure or
 * per-request: any HTTP thread.
 */
#ifndef ORDERD_API_JSON_H
#define ORDERD_API_JSON_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "http.h"

/* RFC 3339 UTC with milliseconds: "2026-11-26T00:03:19.295Z". Never fails. */
void api_format_time(int64_t ms, char out[32]);
/* That string, or JSON null for ms <= 0 (not yet). New reference. */
json_t *api_time_or_null(int64_t ms);
/* The trace id of a traceparent as a JSON string, or null when it is invalid. */
json_t *api_trace_id_of(const char *traceparent);

/* An order as GET /orders/{id} shows it — also each order of GET /orders and
 * each line of orderd export: {"order_id",...}; NULL when memory ran out. */
struct store_order;
json_t *api_order_json(const struct store_order *o);

/* Cursor text for an order id (base64url, opaque to clients), and back. */
void api_cursor_encode(const char *order_id, char *out, size_t size);
/* 0, or -EINVAL when cursor is not one this server hands out. */
int api_cursor_decode(const char *cursor, char *order_id, size_t size);
/*
 * A page of a list: the handler asks the store for limit + 1 rows and gets n.
 * The page shows api_page_size(n, limit) of them; its next_cursor is a
 * cursor after the last one shown when the extra row came (n > limit), else
 * null, so that a client never follows a cursor to an empty page.
 */
size_t api_page_size(size_t n, size_t limit);
json_t *api_next_cursor(const char *last_shown_id, size_t n, size_t limit);

/* What is wrong with one request's query parameters, answered as one 400. */
#define API_QUERY_ERRORS_MAX 8
struct api_query_errors {
    struct http_field_error errors[API_QUERY_ERRORS_MAX];
    size_t n;
};
/* Notes a problem with field (cut to fit); beyond API_QUERY_ERRORS_MAX, dropped. */
__attribute__((format(printf, 3, 4))) void api_query_error(struct api_query_errors *q,
                                                           const char *field, const char *fmt, ...);
/* Calls api_query_error(q, name, "unknown query parameter") unless name is
 * one of known (NULL-terminated). For http_request_query_names(). */
void api_query_reject_unknown(struct api_query_errors *q, const char *name,
                              const char *const *known);
/* With problems noted: replies 400 "Invalid query" listing them, true. */
bool api_reply_query_errors(struct http_request *req, const struct api_query_errors *q);

/* Replies with obj as compact JSON; steals the reference (NULL: 500). */
void api_reply_object(struct http_request *req, unsigned status, json_t *obj);
/* 503 problem with Retry-After: HTTP_RETRY_AFTER_S. */
void api_reply_unavailable(struct http_request *req, const char *detail);

#endif
