/*
 * store_int.h — private to the storage modules: the table of operations that
 * a backend fills in, and the head every backend's struct starts with.
 *
 * include/store.h is the public face; src/store.c implements each of its
 * functions as one call through s->ops, so a backend (store_sqlite*.c,
 * store_pg*.c, each with a private header of its own) fills in one const
 * struct store_ops. What is the same for every backend (store_strerror, the
 * *_clear and *_free helpers, the queue's policy below) lives in store.c;
 * what only SQLite can do (store_backup, store_sqlite_version) stays public
 * in store_sqlite_open.c.
 *
 * Nothing outside src/store*.c includes this file.
 */
#ifndef ORDERD_STORE_INT_H
#define ORDERD_STORE_INT_H

#include "store.h"

/* The PostgreSQL backend's fixed limits (next to bounds.h's STORE_* ones). */
#define STORE_PG_POOL 8                 /* connections for claims, settles, reads, admin */
#define STORE_PG_POLL_MS 500            /* longest a worker sleeps: other nodes enqueue too */
#define STORE_PG_BACKOFF_MIN_MS 100     /* first reconnect delay after a failed connect */
#define STORE_PG_BACKOFF_MAX_MS 5000    /* reconnect delays double up to this */
#define STORE_PG_CONNECT_TIMEOUT_S "5"  /* libpq connect_timeout unless the dsn sets one */
#define STORE_PG_STATS_SLOTS 128        /* rows of queue_stats (see store_pg.c) */
#define STORE_PG_VACUUM_EVERY 20000     /* settled messages between VACUUMs of the queue */

/* One entry per function of store.h that depends on the backend. Each has the
 * contract written in store.h; s is the backend's own struct (cast from it). */
struct store_ops {
    const char *name;             /* "sqlite", "postgres": for log lines */
    void (*close)(struct store *s);
    int (*enqueue_batch)(struct store *s, struct store_new_order *orders, size_t n,
                         uint64_t max_depth);
    bool (*defers_sync)(struct store *s);   /* NULL: never */
    bool can_lease_on_enqueue;              /* enqueue_batch honours lease_receipt */
    int (*sync)(struct store *s);           /* NULL: commits are durable by themselves */
    int (*get_order)(struct store *s, const char *order_id, int64_t now_ms,
                     struct store_order *out);
    int (*list_orders)(struct store *s, const struct store_order_filter *f, int64_t now_ms,
                       struct store_order **out, size_t *n);
    int (*idempotency_get)(struct store *s, const char *key, int64_t now_ms,
                           struct store_idempotency *out);
    int (*idempotency_prune)(struct store *s, int64_t now_ms, uint64_t *deleted);
    int (*stats)(struct store *s, struct store_stats *out);
    void (*put_metrics)(struct store *s, struct metrics_sink *sink); /* NULL: none */
    bool (*writable)(struct store *s);
    int (*claim)(struct store *s, int64_t now_ms, int64_t visibility_timeout_ms, uint32_t max_receives,
                 struct store_message *out, size_t max, size_t *n, size_t *dead_lettered);
    int (*settle)(struct store *s, struct store_settlement *items, size_t n, int64_t now_ms);
    int (*release)(struct store *s, const struct store_message *msgs, size_t n, int64_t now_ms);
    int (*purge_expired)(struct store *s, enum store_retention_kind kind, int64_t cutoff_ms,
                         size_t max, uint64_t *deleted);
    int (*export_orders)(struct store *s, const struct store_export_filter *f, store_export_fn fn,
                         void *arg);
    int (*extend_leases)(struct store *s, struct store_lease *items, size_t n, int64_t now_ms,
                         int64_t visibility_timeout_ms);
    int (*next_visible_ms)(struct store *s, int64_t *when_ms);
    int (*list_dead_letters)(struct store *s, const char *before_id, size_t limit,
                             struct store_dead_letter **out, size_t *n);
    int (*redrive)(struct store *s, const char *order_id, int64_t now_ms);
    int (*redrive_all)(struct store *s, int64_t now_ms, uint64_t *moved);
    int (*delete_dead_letter)(struct store *s, const char *order_id, int64_t now_ms);
};

/* The first member of every backend's struct, so a struct store * is both. */
struct store {
    const struct store_ops *ops;
};

/* ---- the queue's policy, the same for every backend (store.c) ---------- */

/* The status constant (store_order.status) a stored or derived status string
 * names: "queued" "processing" "completed" "dead_lettered" "discarded";
 * "queued" for anything else. */
const char *store_status_constant(const char *s);

/* The status a listing's filter looks for in the orders table: "processing"
 * is stored as "queued" (a lease makes the difference); others as they are. */
const char *store_stored_status(const char *shown);

/* Which listing a filter needs: each backend has one statement per variant,
 * in this order. */
enum store_list_variant {
    STORE_LIST_ALL,
    STORE_LIST_CUSTOMER,
    STORE_LIST_STATUS,
    STORE_LIST_BOTH,
};
enum store_list_variant store_list_variant(const struct store_order_filter *f);

/* Why a message is dead-lettered when its last lease (receive number
 * max_receives) ran out without a verdict; last_error may be NULL. */
void store_lease_exhausted_reason(char *out, size_t size, uint32_t max_receives,
                                  const char *last_error);

/* Backend constructors, called by store_open(); same contract as store_open. */
int store_sqlite_open(const struct store_options *opts, struct store **out);
int store_pg_open(const struct store_options *opts, struct store **out);

#endif
