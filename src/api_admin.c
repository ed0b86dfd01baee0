/*
 * api_admin.c — the dead-letter queue for operators (see api_admin.h).
 *
 * A redriven message goes back to the queue with a zero receive count and the
 * workers are woken; its order keeps the run that failed (redrives,
 * redriven_at, previous_attempts, previous_error in GET /orders/{id}). A
 * deleted dead letter is gone for good; its order row stays, status
 * discarded with discarded_at, so GET /orders/{id} still tells its story.
 *
 * Every action that changes the dead-letter queue leaves an info line: what
 * was done, to which order (or how many), by which API key (its name, never
 * the key) and from which client address.
 *
 * Threads: HTTP threads.
 */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api_admin.h"
#include "api_json.h"
#include "api_orders.h"
#include "bounds.h"
#include "ids.h"
#include "log.h"

/* One info line for an admin action: "admin: WHAT by key=NAME client=ADDR".
 * order_id, when given, goes into the line's context. */
static void log_action(struct http_request *req, enum log_level level, const char *order_id,
                       const char *what)
{
    char peer[HTTP_CLIENT_MAX + 1];
    http_request_peer_address(req, peer, sizeof(peer));
    const char *key = http_request_key_name(req);
    const struct trace_context *tc = http_request_trace(req);
    struct log_ctx lc = {http_request_id(req), tc->trace_id, order_id, tc->span_id};
    log_write(level, &lc, "admin: %s by key=%s client=%s", what, key ? key : "(auth off)", peer);
}

static void reply_storage_error(struct http_request *req, int err)
{
    if (err == STORE_ENOTFOUND) {
        http_reply_problem(req, 404, NULL, "no dead letter with this id", NULL, 0);
        return;
    }
    api_reply_unavailable(req, "storage is unavailable; retry later");
}

static json_t *dead_letter_json(const struct store_dead_letter *d)
{
    json_t *items = json_loads(d->items_json, 0, NULL);
    return json_pack("{s:s, s:s, s:o, s:I, s:o, s:o, s:o, s:o}", "order_id", d->order_id,
                     "customer_id", d->customer_id, "items", items ? items : json_array(),
                     "attempts", (json_int_t)d->attempts, "last_error",
                     d->last_error ? json_string(d->last_error) : json_null(), "created_at",
                     api_time_or_null(d->created_at_ms), "dead_lettered_at",
                     api_time_or_null(d->dead_lettered_at_ms), "trace_id",
                     api_trace_id_of(d->traceparent));
}

static void reject_unknown(void *arg, const char *name)
{
    static const char *const known[] = {"limit", "cursor", NULL};
    api_query_reject_unknown(arg, name, known);
}

/* Parses limit and cursor; false (with a 400 reply) when invalid. */
static bool page_params(struct http_request *req, size_t *limit, char *before, size_t size)
{
    struct api_query_errors q = {.n = 0};
    bool present = false;
    http_request_query_names(req, reject_unknown, &q);
    *limit = HTTP_LIST_LIMIT_DEFAULT;
    before[0] = '\0';
    const char *v = http_request_query(req, "limit", &present);
    if (present) {
        char *end = NULL;
        errno = 0;
        long l = strtol(v, &end, 10);
        if (errno || end == v || *end || l < 1 || l > HTTP_LIST_LIMIT_MAX)
            api_query_error(&q, "limit", "must be an integer from 1 to %d", HTTP_LIST_LIMIT_MAX);
        else
            *limit = (size_t)l;
    }
    v = http_request_query(req, "cursor", &present);
    if (present && api_cursor_decode(v, before, size) != 0)
        api_query_error(&q, "cursor", "is not a cursor this server handed out");
    return !api_reply_query_errors(req, &q);
}

void api_admin_dlq_list(struct http_request *req, void *ctx)
{
    struct api_admin *a = ctx;
    size_t limit = 0;
    char before[ID_ULID_LEN + 1];
    if (!page_params(req, &limit, before, sizeof(before)))
        return;
    struct store_dead_letter *rows = NULL;
    size_t n = 0;
    /* one row more than the page: it tells whether a next page exists */
    int err = store_list_dead_letters(a->store, before[0] ? before : NULL, limit + 1, &rows, &n);
    if (err != STORE_OK) {
        reply_storage_error(req, err);
        return;
    }
    size_t shown = api_page_size(n, limit);
    json_t *arr = json_array();
    for (size_t i = 0; arr && i < shown; i++)
        json_array_append_new(arr, dead_letter_json(&rows[i]));
    json_t *next = api_next_cursor(shown ? rows[shown - 1].order_id : NULL, n, limit);
    store_dead_letters_free(rows, n);
    api_reply_object(req, 200, json_pack("{s:o, s:o}", "dead_letters", arr ? arr : json_array(),
                                     "next_cursor", next));
}

void api_admin_redrive(struct http_request *req, void *ctx)
{
    struct api_admin *a = ctx;
    const char *id = http_request_param(req);
    if (id == NULL || !ids_ulid_valid(id)) {
        reply_storage_error(req, STORE_ENOTFOUND);
        return;
    }
    int err = store_redrive(a->store, id, ids_now_ms());
    if (err != STORE_OK) {
        reply_storage_error(req, err);
        return;
    }
    log_action(req, LOG_LEVEL_INFO, id, "dead letter redriven");
    if (a->wake)
        a->wake(a->wake_arg);
    api_reply_object(req, 200, json_pack("{s:s, s:s}", "order_id", id, "status", "queued"));
}

void api_admin_redrive_all(struct http_request *req, void *ctx)
{
    struct api_admin *a = ctx;
    uint64_t moved = 0;
    int err = store_redrive_all(a->store, ids_now_ms(), &moved);
    char what[96];
    snprintf(what, sizeof(what), "all dead letters redriven: %llu%s", (unsigned long long)moved,
             err == STORE_OK ? "" : ", then a storage error stopped it");
    log_action(req, err == STORE_OK ? LOG_LEVEL_INFO : LOG_LEVEL_WARN, NULL, what);
    if (moved > 0 && a->wake)
        a->wake(a->wake_arg);
    if (err != STORE_OK) {
        reply_storage_error(req, err == STORE_ENOTFOUND ? STORE_EUNAVAILABLE : err);
        return;
    }
    api_reply_object(req, 200, json_pack("{s:I}", "redriven", (json_int_t)moved));
}

void api_admin_dlq_delete(struct http_request *req, void *ctx)
{
    struct api_admin *a = ctx;
    const char *id = http_request_param(req);
    if (id == NULL || !ids_ulid_valid(id)) {
        reply_storage_error(req, STORE_ENOTFOUND);
        return;
    }
    int err = store_delete_dead_letter(a->store, id, ids_now_ms());
    if (err != STORE_OK) {
        reply_storage_error(req, err);
        return;
    }
    log_action(req, LOG_LEVEL_INFO, id, "dead letter deleted (order discarded)");
    http_reply_static(req, 204, "application/json", "", 0);
}
