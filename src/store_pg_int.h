/*
 * store_pg_int.h — private to the PostgreSQL backend's two files:
 * store_pg_conn.c, which opens and keeps the database (schema, statements,
 * connections, pool), and store_pg.c, which runs the transitions on it and
 * fills in the ops table. Here: struct pg_store and struct pg_conn, the
 * prepared statements by name, reading a result's columns, and the calls by
 * which store_pg.c gets a connection and runs a statement on it.
 *
 * Capitals in comments (COUNTERS, DURABILITY, ...) name the sections of the
 * essay at the top of store_pg.c. Nothing but src/store_pg*.c includes this.
 */
#ifndef ORDERD_STORE_PG_INT_H
#define ORDERD_STORE_PG_INT_H

#include <assert.h>
#include <inttypes.h>
#include <libpq-fe.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store_int.h"

#define CURSOR_NONE "~" /* sorts after every ULID in COLLATE "C": "no cursor" */

/* Prepared on every connection (store_pg_conn.c, pstmt_sql). $n are typed by their casts. */
enum pstmt {
    S_ENQUEUE,
    S_DEPTH,
    S_CLAIM,
    S_SETTLE,
    S_RELEASE,
    S_EXTEND,
    S_NEXT_VISIBLE,
    S_REDRIVE_ONE,
    S_REDRIVE_BATCH,
    S_DLQ_DELETE,
    S_IDEM_PRUNE,
    S_HEARTBEAT,
    S_GET_ORDER,
    S_LIST_ALL, /* these four in the order of enum store_list_variant */
    S_LIST_CUSTOMER,
    S_LIST_STATUS,
    S_LIST_BOTH,
    S_IDEM_GET,
    S_STATS,
    S_DLQ_LIST,
    S_COUNT
};

/* S_SETTLE's outcomes ($3). */
enum outcome_code { OUT_COMPLETED = 0, OUT_RETRY = 1, OUT_DEAD_LETTER = 2 };

struct pg_conn {
    PGconn *pg;     /* NULL: not connected (never, or lost) */
    int slot;       /* its row of queue_stats */
    bool intake;    /* the committer's connection */
    bool busy;      /* pool: lent to a caller (pool_lock) */
    bool vacuuming; /* pool: a VACUUM runs on it, unanswered (pool_lock) */
    bool read_only; /* its session is read-only: pg_run refuses writes */
};

/* libpq's connection keywords: the dsn, then defaults it does not set itself. */
#define CONN_PARAMS_MAX 12

struct pg_store {
    struct store base; /* first: the ops table (store_int.h) */
    enum durability durability;
    bool read_only; /* store_options.read_only: no intake, no migration, no slot */
    char *dsn;
    const char *keywords[CONN_PARAMS_MAX + 1];
    const char *values[CONN_PARAMS_MAX + 1];

    pthread_mutex_t intake_lock; /* guards intake */
    struct pg_conn intake;

    pthread_mutex_t pool_lock; /* guards pool[].busy */
    pthread_cond_t pool_free;
    struct pg_conn pool[STORE_PG_POOL];

    _Atomic uint64_t settled; /* messages this node removed from the queue (VACUUM) */

    pthread_mutex_t link_lock; /* guards the reconnect state below */
    double retry_at;           /* monotonic seconds: no connect before */
    int64_t backoff_ms;        /* 0 after a success */
    bool connecting;           /* one caller probes a database that is down */
    bool down;                 /* the last connect failed (logged once) */
};

/* The table store.c dispatches through (store_pg.c). */
extern const struct store_ops store_pg_ops;

static inline struct pg_store *pgs(struct store *base)
{
    assert(base->ops == &store_pg_ops);
    return (struct pg_store *)base;
}

/* ---- values in and out ------------------------------------------------- */

struct num {
    char s[24];
};

/* Writes v into n (never reads it) and returns its text. */
static inline const char *num(struct num *n, int64_t v)
{
    /* cppcheck-suppress ctuuninitvar */
    snprintf(n->s, sizeof(n->s), "%" PRId64, v);
    return n->s;
}

static inline char *col_dup(const PGresult *r, int row, int col)
{
    return PQgetisnull(r, row, col) ? NULL : strdup(PQgetvalue(r, row, col));
}

static inline void col_copy(const PGresult *r, int row, int col, char *dst, size_t size)
{
    snprintf(dst, size, "%s", PQgetvalue(r, row, col)); /* "" when NULL */
}

static inline int64_t col_i64(const PGresult *r, int row, int col)
{
    return PQgetisnull(r, row, col) ? 0 : strtoll(PQgetvalue(r, row, col), NULL, 10);
}

/* ---- store_pg_conn.c: statements and connections ----------------------- */

/* Runs a prepared statement on c; STORE_OK with *out to PQclear(), or the
 * error logged with where and mapped (a broken connection is closed). */
int pg_run(struct pg_conn *c, enum pstmt which, int nparams, const char *const *params,
           const char *where, PGresult **out);
/* The same for a statement whose rows are not needed; *affected may be NULL. */
int pg_run_cmd(struct pg_conn *c, enum pstmt which, int nparams, const char *const *params,
               const char *where, uint64_t *affected);
/* Plain SQL without parameters (BEGIN, COMMIT); out may be NULL. */
int pg_exec_sql(struct pg_conn *c, const char *sql, const char *where, PGresult **out);
/* SQL that is not prepared, with $1..$nparams (the export's DECLARE); as pg_run(). */
int pg_exec_params(struct pg_conn *c, const char *sql, int nparams, const char *const *params,
                   const char *where, PGresult **out);
/* Closes c; the next pg_conn_ready() opens it again. */
void pg_conn_drop(struct pg_conn *c);
/* Makes sure c is connected: STORE_OK, or STORE_EUNAVAILABLE (WHEN THE
 * DATABASE GOES AWAY). For the intake connection, under intake_lock. */
int pg_conn_ready(struct pg_store *s, struct pg_conn *c);

/* Lends a pool connection, connected: STORE_OK with *out, or STORE_EUNAVAILABLE.
 * Every call ends its transaction before pg_pool_release(). */
int pg_pool_acquire(struct pg_store *s, struct pg_conn **out);
void pg_pool_release(struct pg_store *s, struct pg_conn *c);
/* One statement on a pooled connection: acquire, run, release. */
int pg_pool_query(struct pg_store *s, enum pstmt which, int nparams, const char *const *params,
                  const char *where, PGresult **out);

/* After a settlement on the lent c removed `removed` messages: VACUUM. */
void pg_vacuum_now_and_then(struct pg_store *s, struct pg_conn *c, size_t removed);

/* store_close() of this backend. */
void store_pg_close(struct store *base);

/* "SELECT <an order's columns> FROM orders o LEFT JOIN queue q ...", $1 = now:
 * the head of every read of orders, which pg_read_order_row() decodes; and
 * the status the API shows (processing: a live lease), for a filter on it. */
extern const char pg_order_select[];
extern const char pg_status_expr[];

/* ---- defined in store_pg.c ---------------------------------------------- */

/* Row row of a pg_order_select result into o, its strings malloc'd
 * (store_order_clear): STORE_OK or STORE_ENOMEM. */
int pg_read_order_row(const PGresult *r, int row, struct store_order *o);

/* ---- defined in store_pg_retention.c and store_pg_export.c ------------- */

int pgs_purge_expired(struct store *base, enum store_retention_kind kind, int64_t cutoff_ms,
                      size_t max, uint64_t *deleted);
int pgs_export_orders(struct store *base, const struct store_export_filter *f,
                      store_export_fn fn, void *arg);

#endif
