/*
 * store_sqlite_int.h — the private face of the SQLite backend: what
 * store_sqlite_open.c (the file and its connections) and store_sqlite.c (the
 * transitions of a message) share, and nobody else: struct sq_store, the
 * prepared statements by name, and the few functions one half calls in the
 * other. What is stored and how a message moves is written once, at the top
 * of store_sqlite.c.
 *
 * Nothing outside src/store_sqlite*.c includes this file.
 */
#ifndef ORDERD_STORE_SQLITE_INT_H
#define ORDERD_STORE_SQLITE_INT_H

#include <assert.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "store_int.h"

struct wal_checkpointer;

/* Statements of the writer connection, prepared once at open; their SQL is
 * wstmt_sql in store_sqlite_open.c. */
enum wstmt {
    W_BEGIN,
    W_COMMIT,
    W_ROLLBACK,
    W_SYNC_FULL,
    W_SYNC_NORMAL,
    W_INSERT_IDEM,
    W_CLAIM,
    W_ORDER_FOR_MESSAGE,
    W_COMPLETE_DELETE,
    W_COMPLETE_ORDER,
    W_RETRY,
    W_DLQ_DELETE_QUEUE,
    W_DLQ_INSERT,
    W_DLQ_ORDER,
    W_RELEASE,
    W_EXTEND,
    W_REDRIVE_QUEUE,
    W_REDRIVE_ORDER,
    W_REDRIVE_NEXT,
    W_DLQ_DELETE,
    W_DISCARD_ORDER,
    W_IDEM_PRUNE,
    W_HEARTBEAT,
    W_COUNT
};

/* Statements of a reader connection (sq_rstmt_sql in store_sqlite_open.c). */
enum rstmt {
    R_GET_ORDER,
    R_LIST_ALL, /* these four in the order of enum store_list_variant */
    R_LIST_CUSTOMER,
    R_LIST_STATUS,
    R_LIST_BOTH,
    R_IDEM_GET,
    R_OLDEST,
    R_NEXT_VISIBLE,
    R_DLQ_LIST,
    R_COUNT
};

extern const char *const sq_rstmt_sql[R_COUNT];
/* "SELECT <an order's columns> FROM orders o LEFT JOIN queue q ...", ?1 = now:
 * the head of every read of orders, which sq_read_order_row() decodes. */
extern const char sq_order_select[];

struct reader {
    sqlite3 *db;
    bool busy;
    sqlite3_stmt *stmts[R_COUNT];
};

struct sq_store {
    struct store base;            /* first: the ops table (store_int.h) */
    char *path;
    enum durability durability;

    pthread_mutex_t write_lock;   /* guards writer, wstmts, sync_full */
    sqlite3 *writer;
    sqlite3_stmt *wstmts[W_COUNT];
    /* Multi-row INSERTs of k orders and of their k messages, k = 1 ..
     * STORE_INSERT_ROWS_MAX ([0] unused): one statement per chunk of a batch
     * costs 5.5 us per order where one per row cost 7.5 (docs/performance.md). */
    sqlite3_stmt *insert_orders[STORE_INSERT_ROWS_MAX + 1];
    sqlite3_stmt *insert_queue[STORE_INSERT_ROWS_MAX + 1];
    bool sync_full;               /* writer's current PRAGMA synchronous */

    pthread_mutex_t readers_lock; /* guards readers[].busy */
    pthread_cond_t reader_free;
    struct reader readers[STORE_READERS];

    _Atomic uint64_t queue_depth;
    _Atomic uint64_t dlq_depth;

    /* Deferred sync (durability full): intake commits skip SQLite's fsync and
     * sq_sync() fdatasyncs the WAL through wal_fd, outside write_lock. -1 when
     * SQLite syncs every intake commit itself. */
    int wal_fd;
    _Atomic uint64_t commits_to_sync; /* intake commits left to sq_sync, so far */
    _Atomic uint64_t commits_synced;  /* of those, known durable */

    /* Copies the WAL into the database file off the writer's path. */
    struct wal_checkpointer *checkpointer;
    char *wal_path; /* path + "-wal": sq_sync's descriptor, the size in sq_stats */
};

extern const struct store_ops sq_ops;

static inline struct sq_store *sq(struct store *base)
{
    assert(base->ops == &sq_ops);
    return (struct sq_store *)base;
}

/* ---- statement helpers of both halves ---------------------------------- */

static inline int bind_text(sqlite3_stmt *st, int i, const char *s)
{
    return s ? sqlite3_bind_text(st, i, s, -1, SQLITE_STATIC) : sqlite3_bind_null(st, i);
}

/* Steps a statement that returns no row; resets it. */
static inline int exec_stmt(sqlite3_stmt *st)
{
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return rc == SQLITE_DONE || rc == SQLITE_ROW ? SQLITE_OK : rc;
}

static inline sqlite3_stmt *wstmt(struct sq_store *s, enum wstmt which)
{
    return s->wstmts[which];
}

/* ---- defined in store_sqlite_open.c ------------------------------------ */

/* Logs rc from db in the place it happened and maps it to a store error. */
int sq_fail(sqlite3 *db, int rc, const char *where);

/* The writer's transactions, each documented where it is defined: every
 * transition runs between sq_txn_begin() and sq_txn_commit() or
 * sq_txn_abort(); after sq_txn_commit_hold() it updates the depth counters,
 * then calls sq_writer_unlock(). */
int sq_txn_begin(struct sq_store *s, bool durable, const char *where);
int sq_txn_abort(struct sq_store *s, int rc, const char *where);
int sq_txn_commit_hold(struct sq_store *s, const char *where);
int sq_txn_commit(struct sq_store *s, const char *where);
void sq_writer_unlock(struct sq_store *s);
void sq_note_commit_to_sync(struct sq_store *s);

/* The reader pool: a free read-only connection, waiting for one if need be. */
struct reader *sq_reader_acquire(struct sq_store *s);
void sq_reader_release(struct sq_store *s, struct reader *r);
/* A read-only connection of the caller's own (sqlite3_close it): STORE_OK or
 * STORE_EOPEN, logged. */
int sq_open_read_connection(struct sq_store *s, sqlite3 **out);

/* The entries of sq_ops that concern the file rather than a message. */
void sq_close(struct store *base);
bool sq_defers_sync(struct store *base);
int sq_sync(struct store *base);
void sq_put_metrics(struct store *base, struct metrics_sink *sink);
bool sq_writable(struct store *base);

/* ---- defined in store_sqlite.c ----------------------------------------- */

/* One row of sq_order_select into o, its strings malloc'd (store_order_clear):
 * STORE_OK or STORE_ENOMEM. */
int sq_read_order_row(sqlite3_stmt *st, struct store_order *o);

/* ---- defined in store_sqlite_retention.c and store_sqlite_export.c ------ */

int sq_purge_expired(struct store *base, enum store_retention_kind kind, int64_t cutoff_ms,
                     size_t max, uint64_t *deleted);
int sq_export_orders(struct store *base, const struct store_export_filter *f, store_export_fn fn,
                     void *arg);

#endif
