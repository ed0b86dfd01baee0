/*
 * api_orders.c — POST /orders, GET /orders/{id}, GET /orders.
 *
 * The path of an order: the HTTP thread validates the body (order.c), settles
 * the Idempotency-Key, makes the id and the reply, then suspends the request
 * and submits it to the committer. The committer thread calls accepted(),
 * which sets the reply (202 only when the order is committed) and resumes the
 * request. Nothing here touches SQL.
 *
 * Idempotency: a key is "in flight" from the moment a request with it is
 * admitted until its commit finishes; a second request with that key in that
 * window gets 409. After the commit the stored key answers: same canonical
 * body -> the first reply again, another body -> 422.
 *
 * Threads: handlers on HTTP threads; accepted() on the committer thread.
 * The in-flight key set is this module's own state behind keys_lock.
 */
#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api_json.h"
#include "api_orders.h"
#include "bounds.h"
#include "ids.h"
#include "log.h"
#include "order.h"

#define KEY_BUCKETS 256

struct inflight_key {
    struct inflight_key *next;
    char key[];
};

struct api_orders {
    struct store *store;
    struct committer *committer;
    struct metrics *metrics;
    pthread_mutex_t keys_lock;
    struct inflight_key *keys[KEY_BUCKETS];
};

/* One POST between its hand-off and its reply; owns every string it points to. */
struct pending_order {
    struct committer_item item;
    struct api_orders *api;
    struct http_request *req;
    char order_id[ID_ULID_LEN + 1];
    char traceparent[TRACEPARENT_LEN + 1];
    char *customer_id;
    char *items_json;
    char *request_json;
    char *response_json;
    char *idempotency_key;
};

/* ---- in-flight idempotency keys ----------------------------------------- */

static unsigned key_bucket(const char *key)
{
    unsigned h = 2166136261u;
    for (const unsigned char *p = (const unsigned char *)key; *p; p++)
        h = (h ^ *p) * 16777619u;
    return h % KEY_BUCKETS;
}

/* Marks key in flight; false when it already was, or (with *oom set) when
 * there was no memory to record it. */
static bool key_claim(struct api_orders *api, const char *key, bool *oom)
{
    unsigned b = key_bucket(key);
    bool claimed = false;
    *oom = false;
    pthread_mutex_lock(&api->keys_lock);
    struct inflight_key *k = api->keys[b];
    while (k && strcmp(k->key, key) != 0)
        k = k->next;
    if (k == NULL) {
        size_t len = strlen(key) + 1;
        k = malloc(sizeof(*k) + len);
        if (k == NULL) {
            *oom = true;
        } else {
            memcpy(k->key, key, len);
            k->next = api->keys[b];
            api->keys[b] = k;
            claimed = true;
        }
    }
    pthread_mutex_unlock(&api->keys_lock);
    return claimed;
}

static void key_release(struct api_orders *api, const char *key)
{
    unsigned b = key_bucket(key);
    pthread_mutex_lock(&api->keys_lock);
    for (struct inflight_key **pp = &api->keys[b]; *pp; pp = &(*pp)->next) {
        if (strcmp((*pp)->key, key) == 0) {
            struct inflight_key *dead = *pp;
            *pp = dead->next;
            free(dead);
            break;
        }
    }
    pthread_mutex_unlock(&api->keys_lock);
}

/* ---- life cycle ----------------------------------------------------------- */

int api_orders_new(struct store *store, struct committer *committer, struct metrics *metrics,
                   struct api_orders **out)
{
    struct api_orders *api = calloc(1, sizeof(*api));
    if (api == NULL)
        return -ENOMEM;
    if (pthread_mutex_init(&api->keys_lock, NULL) != 0) {
        free(api);
        return -ENOMEM;
    }
    api->store = store;
    api->committer = committer;
    api->metrics = metrics;
    *out = api;
    return 0;
}

void api_orders_free(struct api_orders *api)
{
    if (api == NULL)
        return;
    for (int i = 0; i < KEY_BUCKETS; i++) {
        while (api->keys[i]) {
            struct inflight_key *k = api->keys[i];
            api->keys[i] = k->next;
            free(k);
        }
    }
    pthread_mutex_destroy(&api->keys_lock);
    free(api);
}

/* ---- POST /orders ---------------------------------------------------------- */

static void pending_free(struct pending_order *p)
{
    free(p->customer_id);
    free(p->items_json);
    free(p->request_json);
    free(p->response_json);
    free(p->idempotency_key);
    free(p);
}

/* Takes body (the reply owns and frees it). */
static void reply_accepted(struct http_request *req, const char order_id[ID_ULID_LEN + 1],
                           char *body, bool replayed)
{
    char location[sizeof("/orders/") + ID_ULID_LEN];
    memcpy(location, "/orders/", sizeof("/orders/") - 1);
    memcpy(location + sizeof("/orders/") - 1, order_id, ID_ULID_LEN + 1);
    http_reply_header(req, "Location", location);
    tracing_span_attr_str(http_request_span(req), "orderd.order_id", order_id);
    if (replayed)
        http_reply_header(req, "Idempotent-Replayed", "true");
    http_reply_owned(req, 202, "application/json", body, strlen(body));
}

/* Committer thread: the order's transaction has finished. */
static void accepted(struct committer_item *item, void *arg)
{
    struct pending_order *p = arg;
    struct http_request *req = p->req;
    const struct trace_context *tc = http_request_trace(req);
    struct log_ctx lc = {http_request_id(req), tc->trace_id, p->order_id, tc->span_id};
    switch (item->order.result) {
    case STORE_OK:
        metrics_counter_add(p->api->metrics, METRICS_ORDERS_RECEIVED, 1);
        log_debug(&lc, "order accepted"); /* per order: debug, see docs/performance.md */
        reply_accepted(req, p->order_id, p->response_json, false);
        p->response_json = NULL;
        break;
    case STORE_EQUEUEFULL:
        log_warn(&lc, "order refused: the queue holds max_depth messages");
        api_reply_unavailable(req, "the queue is full; retry later");
        break;
    case STORE_ECONFLICT:
        http_reply_problem(req, 409, NULL,
                           "a request with this Idempotency-Key was accepted meanwhile", NULL, 0);
        break;
    case STORE_EUNAVAILABLE:
        api_reply_unavailable(req, "storage is unavailable (a write failed: disk full, read-only or I/O error); retry later");
        break;
    default:
        log_error(&lc, "order not stored: %s", store_strerror(item->order.result));
        http_reply_problem(req, 500, NULL, "the order could not be stored", NULL, 0);
        break;
    }
    if (p->idempotency_key)
        key_release(p->api, p->idempotency_key);
    http_request_resume(req);
    pending_free(p);
}

static bool idempotency_key_valid(const char *key)
{
    size_t n = strlen(key);
    if (n == 0 || n > IDEMPOTENCY_KEY_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)key[i] < 0x21 || (unsigned char)key[i] > 0x7e)
            return false;
    return true;
}

static void reply_invalid(struct http_request *req, int rc, const struct order_validation *v)
{
    const char *title = rc == ORDER_EMALFORMED ? "Malformed JSON" : "Invalid order";
    const char *detail = rc == ORDER_EMALFORMED ? "the body is not a valid JSON object"
                                                : "one or more fields are invalid";
    struct http_field_error errors[ORDER_FIELD_ERRORS_MAX];
    size_t n = v->count < ORDER_FIELD_ERRORS_MAX ? v->count : ORDER_FIELD_ERRORS_MAX;
    _Static_assert(sizeof(errors[0].field) >= sizeof(v->errors[0].field), "field");
    _Static_assert(sizeof(errors[0].message) >= sizeof(v->errors[0].message), "message");
    for (size_t i = 0; i < n; i++) {
        memcpy(errors[i].field, v->errors[i].field, sizeof(v->errors[i].field));
        memcpy(errors[i].message, v->errors[i].message, sizeof(v->errors[i].message));
    }
    http_reply_problem(req, 400, title, detail, errors, n);
}

/*
 * Answers from a stored key if there is one. Returns true when the request is
 * answered (replay, 422, or an error), false when the key is new.
 */
static bool answer_from_stored_key(struct api_orders *api, struct http_request *req,
                                   const char *key, const char *request_json)
{
    struct store_idempotency rec;
    int err = store_idempotency_get(api->store, key, ids_now_ms(), &rec);
    if (err == STORE_ENOTFOUND)
        return false;
    if (err != STORE_OK) {
        api_reply_unavailable(req, "storage is unavailable; retry later");
        return true;
    }
    if (strcmp(rec.request_json, request_json) == 0) {
        reply_accepted(req, rec.order_id, rec.response_json, true);
        rec.response_json = NULL;
    } else {
        http_reply_problem(req, 422, NULL,
                           "this Idempotency-Key was used with a different request body", NULL, 0);
    }
    store_idempotency_clear(&rec);
    return true;
}

/* A ULID and a hex trace id need no JSON escaping: copied in directly (no
 * printf: this runs for every order). */
static char *accepted_body(const char *order_id, const char *trace_id)
{
    static const char a[] = "{\"order_id\":\"", b[] = "\",\"status\":\"queued\",\"trace_id\":\"",
                      c[] = "\"}";
    char *text = malloc(sizeof(a) - 1 + ID_ULID_LEN + sizeof(b) - 1 + TRACE_ID_HEX_LEN + sizeof(c));
    if (text == NULL)
        return NULL;
    char *p = mempcpy(text, a, sizeof(a) - 1);
    p = mempcpy(p, order_id, ID_ULID_LEN);
    p = mempcpy(p, b, sizeof(b) - 1);
    p = mempcpy(p, trace_id, TRACE_ID_HEX_LEN);
    memcpy(p, c, sizeof(c)); /* with its NUL */
    return text;
}

/* Fills p from the validated order; takes ownership of canonical (the request
 * JSON kept with an Idempotency-Key; NULL without one). 0 or -ENOMEM / -errno. */
static int pending_fill(struct pending_order *p, struct http_request *req, const struct order *o,
                        const char *key, char *canonical)
{
    p->request_json = canonical;
    int err = ids_ulid_new(p->order_id);
    if (err != 0)
        return err;
    /* the message carries the request's span: orderd.process becomes its child */
    trace_format(http_request_trace(req), p->traceparent);
    p->customer_id = strdup(o->customer_id);
    p->items_json = order_items_json(o);
    p->response_json = accepted_body(p->order_id, http_request_trace(req)->trace_id);
    if (key)
        p->idempotency_key = strdup(key);
    if (!p->customer_id || !p->items_json || !p->response_json ||
        (key && (!p->idempotency_key || !p->request_json)))
        return -ENOMEM;
    struct store_new_order *n = &p->item.order;
    n->order_id = p->order_id;
    n->customer_id = p->customer_id;
    n->items_json = p->items_json;
    n->traceparent = p->traceparent;
    n->created_at_ms = ids_now_ms();
    n->idempotency_key = p->idempotency_key;
    n->request_json = p->request_json;
    n->response_json = p->response_json;
    p->item.done = accepted;
    p->item.arg = p;
    p->item.tracing = http_request_tracing(req); /* orderd.enqueue: a child of the request */
    p->item.trace_parent = http_request_trace(req);
    return 0;
}

/* Suspends req and hands the order to the committer; answers at once on failure. */
static void submit(struct api_orders *api, struct http_request *req, struct pending_order *p)
{
    http_request_suspend(req);
    int err = committer_submit(api->committer, &p->item);
    if (err == 0)
        return;
    if (err == -ESHUTDOWN)
        api_reply_unavailable(req, "orderd is shutting down");
    else
        api_reply_unavailable(req, "too many orders are waiting to be written; retry later");
    if (p->idempotency_key)
        key_release(api, p->idempotency_key);
    pending_free(p);
    http_request_resume(req);
}

static void post_validated(struct api_orders *api, struct http_request *req, const struct order *o,
                           const char *key)
{
    char *canonical = NULL;
    if (key) {
        bool oom = false;
        if (!key_claim(api, key, &oom)) {
            if (oom)
                http_reply_problem(req, 500, NULL, "out of memory", NULL, 0);
            else
                http_reply_problem(req, 409, NULL,
                                   "a request with this Idempotency-Key is still in flight", NULL,
                                   0);
            return;
        }
        canonical = order_canonical_json(o);
        if (canonical == NULL || answer_from_stored_key(api, req, key, canonical)) {
            if (canonical == NULL)
                http_reply_problem(req, 500, NULL, "out of memory", NULL, 0);
            free(canonical);
            key_release(api, key);
            return;
        }
    }
    struct pending_order *p = calloc(1, sizeof(*p));
    if (p == NULL)
        free(canonical);
    if (p == NULL || pending_fill(p, req, o, key, canonical) != 0) {
        http_reply_problem(req, 500, NULL, "the order could not be prepared", NULL, 0);
        if (p)
            pending_free(p);
        if (key)
            key_release(api, key);
        return;
    }
    p->api = api;
    p->req = req;
    submit(api, req, p);
}

void api_orders_post(struct http_request *req, void *ctx)
{
    struct api_orders *api = ctx;
    const char *key = http_request_header(req, "Idempotency-Key");
    if (key && !idempotency_key_valid(key)) {
        struct http_field_error fe = {"Idempotency-Key", ""};
        snprintf(fe.message, sizeof(fe.message),
                 "must be 1 to %d visible ASCII characters", IDEMPOTENCY_KEY_MAX);
        http_reply_problem(req, 400, "Invalid header", "the Idempotency-Key header is invalid",
                           &fe, 1);
        return;
    }
    size_t len = 0;
    const char *body = http_request_body(req, &len);
    struct order o;
    struct order_validation v;
    int rc = order_parse(body, len, &o, &v);
    if (rc == ORDER_ENOMEM) {
        http_reply_problem(req, 500, NULL, "out of memory", NULL, 0);
        return;
    }
    if (rc != ORDER_OK) {
        reply_invalid(req, rc, &v);
        return;
    }
    post_validated(api, req, &o, key);
    order_free(&o);
}

/* ---- GET /orders/{id} ------------------------------------------------------ */

static void reply_not_found(struct http_request *req, const char *what)
{
    char detail[96];
    snprintf(detail, sizeof(detail), "no %s with this id", what);
    http_reply_problem(req, 404, NULL, detail, NULL, 0);
}

void api_orders_get(struct http_request *req, void *ctx)
{
    struct api_orders *api = ctx;
    const char *id = http_request_param(req);
    if (id == NULL || !ids_ulid_valid(id)) {
        reply_not_found(req, "order");
        return;
    }
    tracing_span_attr_str(http_request_span(req), "orderd.order_id", id);
    struct store_order o;
    int err = store_get_order(api->store, id, ids_now_ms(), &o);
    if (err == STORE_ENOTFOUND) {
        reply_not_found(req, "order");
        return;
    }
    if (err != STORE_OK) {
        api_reply_unavailable(req, "storage is unavailable; retry later");
        return;
    }
    api_reply_object(req, 200, api_order_json(&o));
    store_order_clear(&o);
}

/* ---- GET /orders ------------------------------------------------------------ */

struct list_query {
    struct store_order_filter filter;
    char before[ID_ULID_LEN + 1];
    struct api_query_errors problems;
};

static void list_reject_unknown(void *arg, const char *name)
{
    static const char *const known[] = {"customer_id", "status", "limit", "cursor", NULL};
    api_query_reject_unknown(arg, name, known);
}

static void list_parse(struct http_request *req, struct list_query *q)
{
    bool present = false;
    memset(q, 0, sizeof(*q));
    q->filter.limit = HTTP_LIST_LIMIT_DEFAULT;
    http_request_query_names(req, list_reject_unknown, &q->problems);

    const char *v = http_request_query(req, "customer_id", &present);
    if (present && (v[0] == '\0' || strlen(v) > ORDER_CUSTOMER_ID_MAX * 4))
        api_query_error(&q->problems, "customer_id", "must be a non-empty customer id");
    else if (present)
        q->filter.customer_id = v;

    v = http_request_query(req, "status", &present);
    if (present && !store_status_valid(v))
        api_query_error(&q->problems, "status", "must be one of %s", store_status_names());
    else if (present)
        q->filter.status = v;

    v = http_request_query(req, "limit", &present);
    if (present) {
        char *end = NULL;
        errno = 0;
        long n = strtol(v, &end, 10);
        if (errno || end == v || *end || n < 1 || n > HTTP_LIST_LIMIT_MAX)
            api_query_error(&q->problems, "limit", "must be an integer from 1 to %d",
                            HTTP_LIST_LIMIT_MAX);
        else
            q->filter.limit = (size_t)n;
    }
    v = http_request_query(req, "cursor", &present);
    if (present && api_cursor_decode(v, q->before, sizeof(q->before)) != 0)
        api_query_error(&q->problems, "cursor", "is not a cursor this server handed out");
    else if (present)
        q->filter.before_id = q->before;
}

void api_orders_list(struct http_request *req, void *ctx)
{
    struct api_orders *api = ctx;
    struct list_query q;
    list_parse(req, &q);
    if (api_reply_query_errors(req, &q.problems))
        return;
    size_t limit = q.filter.limit;
    q.filter.limit = limit + 1; /* the extra row tells whether a next page exists */
    struct store_order *rows = NULL;
    size_t n = 0;
    int err = store_list_orders(api->store, &q.filter, ids_now_ms(), &rows, &n);
    if (err != STORE_OK) {
        api_reply_unavailable(req, "storage is unavailable; retry later");
        return;
    }
    size_t shown = api_page_size(n, limit);
    json_t *arr = json_array();
    for (size_t i = 0; arr && i < shown; i++)
        json_array_append_new(arr, api_order_json(&rows[i]));
    json_t *next = api_next_cursor(shown ? rows[shown - 1].order_id : NULL, n, limit);
    store_orders_free(rows, n);
    api_reply_object(req, 200, json_pack("{s:o, s:o}", "orders", arr ? arr : json_array(),
                                          "next_cursor", next));
}
