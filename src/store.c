/*
 * store.c — the storage interface of include/store.h, dispatched to a backend.
 *
 * store_open() picks the backend from store_options.backend: SQLite
 * (store_sqlite.c, one file, the embedded default) or PostgreSQL
 * (store_pg.c, several orderd nodes on one database). Every other function is
 * one call through the backend's table of operations (src/store_int.h), so
 * callers never know which one serves them. What does not depend on the
 * backend lives here: error names, freeing the structs a read returns, and
 * the queue's policy that both backends apply (status names, what a listing
 * filter looks for, why an exhausted lease dead-letters: store_int.h).
 *
 * Threads: no state of its own; each backend says which thread may call what
 * (any thread, for both).
 */
#include <assert.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "store_int.h"

const char *store_strerror(int err)
{
    switch (err) {
    case STORE_OK: return "ok";
    case STORE_ENOTFOUND: return "not found";
    case STORE_EUNAVAILABLE: return "storage unavailable";
    case STORE_EQUEUEFULL: return "queue full";
    case STORE_ESTALE: return "stale receipt";
    case STORE_ECONFLICT: return "idempotency key conflict";
    case STORE_ENOMEM: return "out of memory";
    case STORE_EINTERNAL: return "internal storage error";
    case STORE_EOPEN: return "cannot open database";
    default: return "unknown storage error";
    }
}

/* ---- open / close ------------------------------------------------------ */

int store_open(const struct store_options *opts, struct store **out)
{
    int err;
    *out = NULL;
    switch (opts->backend) {
    case STORE_BACKEND_SQLITE:
        err = store_sqlite_open(opts, out);
        break;
    case STORE_BACKEND_POSTGRES:
        err = store_pg_open(opts, out);
        break;
    default:
        log_error(NULL, "store: unknown backend %d", (int)opts->backend);
        return STORE_EOPEN;
    }
    assert(err != STORE_OK || (*out != NULL && (*out)->ops != NULL));
    return err;
}

void store_close(struct store *s)
{
    if (s != NULL)
        s->ops->close(s);
}

/* ---- intake ------------------------------------------------------------ */

int store_enqueue_batch(struct store *s, struct store_new_order *orders, size_t n,
                        uint64_t max_depth)
{
    for (size_t i = 0; i < n && !s->ops->can_lease_on_enqueue; i++)
        assert(orders[i].lease_receipt == 0);
    return s->ops->enqueue_batch(s, orders, n, max_depth);
}

bool store_enqueue_can_lease(struct store *s)
{
    return s->ops->can_lease_on_enqueue;
}

bool store_defers_sync(struct store *s)
{
    return s->ops->defers_sync != NULL && s->ops->defers_sync(s);
}

int store_sync(struct store *s)
{
    return s->ops->sync != NULL ? s->ops->sync(s) : STORE_OK;
}

/* ---- reads ------------------------------------------------------------- */

int store_get_order(struct store *s, const char *order_id, int64_t now_ms,
                    struct store_order *out)
{
    return s->ops->get_order(s, order_id, now_ms, out);
}

int store_list_orders(struct store *s, const struct store_order_filter *f, int64_t now_ms,
                      struct store_order **out, size_t *n)
{
    return s->ops->list_orders(s, f, now_ms, out, n);
}

int store_idempotency_get(struct store *s, const char *key, int64_t now_ms,
                          struct store_idempotency *out)
{
    return s->ops->idempotency_get(s, key, now_ms, out);
}

int store_idempotency_prune(struct store *s, int64_t now_ms, uint64_t *deleted)
{
    return s->ops->idempotency_prune(s, now_ms, deleted);
}

int store_stats(struct store *s, struct store_stats *out)
{
    return s->ops->stats(s, out);
}

void store_put_metrics(struct store *s, struct metrics_sink *sink)
{
    if (s->ops->put_metrics != NULL)
        s->ops->put_metrics(s, sink);
}

bool store_writable(struct store *s)
{
    return s->ops->writable(s);
}

/* ---- queue ------------------------------------------------------------- */

int store_claim(struct store *s, int64_t now_ms, int64_t visibility_timeout_ms, uint32_t max_receives,
                struct store_message *out, size_t max, size_t *n, size_t *dead_lettered)
{
    return s->ops->claim(s, now_ms, visibility_timeout_ms, max_receives, out, max, n, dead_lettered);
}

int store_settle(struct store *s, struct store_settlement *items, size_t n, int64_t now_ms)
{
    return s->ops->settle(s, items, n, now_ms);
}

int store_release(struct store *s, const struct store_message *msgs, size_t n, int64_t now_ms)
{
    return s->ops->release(s, msgs, n, now_ms);
}

int store_purge_expired(struct store *s, enum store_retention_kind kind, int64_t cutoff_ms,
                        size_t max, uint64_t *deleted)
{
    *deleted = 0;
    if ((unsigned)kind >= STORE_RETENTION_KIND_COUNT || max == 0)
        return STORE_OK;
    return s->ops->purge_expired(s, kind, cutoff_ms, max, deleted);
}

int store_export(struct store *s, const struct store_export_filter *f, store_export_fn fn,
                 void *arg)
{
    return s->ops->export_orders(s, f, fn, arg);
}

int store_extend_leases(struct store *s, struct store_lease *items, size_t n, int64_t now_ms,
                        int64_t visibility_timeout_ms)
{
    return s->ops->extend_leases(s, items, n, now_ms, visibility_timeout_ms);
}

int store_next_visible_ms(struct store *s, int64_t *when_ms)
{
    return s->ops->next_visible_ms(s, when_ms);
}

/* ---- dead letters ------------------------------------------------------ */

int store_list_dead_letters(struct store *s, const char *before_id, size_t limit,
                            struct store_dead_letter **out, size_t *n)
{
    return s->ops->list_dead_letters(s, before_id, limit, out, n);
}

int store_redrive(struct store *s, const char *order_id, int64_t now_ms)
{
    return s->ops->redrive(s, order_id, now_ms);
}

int store_redrive_all(struct store *s, int64_t now_ms, uint64_t *moved)
{
    return s->ops->redrive_all(s, now_ms, moved);
}

int store_delete_dead_letter(struct store *s, const char *order_id, int64_t now_ms)
{
    return s->ops->delete_dead_letter(s, order_id, now_ms);
}

/* ---- maintenance ------------------------------------------------------- */

/* ---- what a read returns, the same for every backend -------------------- */

void store_order_clear(struct store_order *o)
{
    free(o->customer_id);
    free(o->items_json);
    free(o->last_error);
    free(o->previous_error);
    free(o->fulfilment_result);
    memset(o, 0, sizeof(*o));
}

void store_orders_free(struct store_order *orders, size_t n)
{
    for (size_t i = 0; orders != NULL && i < n; i++)
        store_order_clear(&orders[i]);
    free(orders);
}

void store_idempotency_clear(struct store_idempotency *r)
{
    free(r->request_json);
    free(r->response_json);
    memset(r, 0, sizeof(*r));
}

void store_message_clear(struct store_message *m)
{
    free(m->customer_id);
    free(m->items_json);
    memset(m, 0, sizeof(*m));
}

void store_dead_letters_free(struct store_dead_letter *d, size_t n)
{
    for (size_t i = 0; d != NULL && i < n; i++) {
        free(d[i].customer_id);
        free(d[i].items_json);
        free(d[i].last_error);
    }
    free(d);
}

/* ---- the queue's policy ---------------------------------------------------- */

/* An order's statuses: adding one starts here (and in each backend's SQL). */
static const char *const status_names[] = {"queued", "processing", "completed", "dead_lettered",
                                           "discarded"};
#define STATUS_COUNT (sizeof(status_names) / sizeof(status_names[0]))

static const char *status_find(const char *s)
{
    for (size_t i = 0; s != NULL && i < STATUS_COUNT; i++)
        if (strcmp(s, status_names[i]) == 0)
            return status_names[i];
    return NULL;
}

bool store_status_valid(const char *s) { return status_find(s) != NULL; }

static char status_list[128];
static pthread_once_t status_list_once = PTHREAD_ONCE_INIT;

static void status_list_build(void)
{
    size_t used = 0;
    for (size_t i = 0; i < STATUS_COUNT && used < sizeof(status_list); i++)
        used += (size_t)snprintf(status_list + used, sizeof(status_list) - used, "%s%s",
                                 i > 0 ? ", " : "", status_names[i]);
}

const char *store_status_names(void)
{
    pthread_once(&status_list_once, status_list_build);
    return status_list;
}

const char *store_status_constant(const char *s)
{
    const char *name = status_find(s);
    return name != NULL ? name : "queued";
}

const char *store_stored_status(const char *shown)
{
    return shown && strcmp(shown, "processing") == 0 ? "queued" : shown;
}

enum store_list_variant store_list_variant(const struct store_order_filter *f)
{
    if (f->customer_id && f->status)
        return STORE_LIST_BOTH;
    if (f->customer_id)
        return STORE_LIST_CUSTOMER;
    if (f->status)
        return STORE_LIST_STATUS;
    return STORE_LIST_ALL;
}

void store_lease_exhausted_reason(char *out, size_t size, uint32_t max_receives,
                                  const char *last_error)
{
    snprintf(out, size, "lease expired on the last of %u receives%s%s", max_receives,
             last_error ? "; last error: " : "", last_error ? last_error : "");
}
