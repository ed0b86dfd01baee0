/*
 * store_sqlite_export.c — export for the SQLite backend (store_export):
 * every order that matches a filter, from ONE snapshot, streamed row by row.
 *
 * A connection of its own (sq_open_read_connection), not a pooled reader:
 * an export of a million rows holds it for a while, and the daemon's reads
 * must not wait for it. On it: BEGIN, one statement over orders in order_id
 * order, COMMIT. In WAL mode the first step fixes the snapshot: what was
 * committed then, whatever commits meanwhile. Each row is decoded into one
 * struct store_order (sq_read_order_row, as GET /orders/{id} reads it),
 * handed to fn and cleared before the next step, so memory stays that of one
 * row plus SQLite's page cache, however many rows there are.
 *
 * The statement is built for the filter with only the conditions it has, so
 * that SQLite walks an index that is already in order_id order — the primary
 * key, orders_by_customer (customer_id, order_id) or orders_by_status
 * (status, order_id) — and never sorts (a sort would first gather every row
 * in a temporary b-tree). "processing" is derived as the listing derives
 * it: a queued order whose message holds a lease live when the export began.
 *
 * The price of one long snapshot: while it is held, a checkpoint cannot
 * copy the WAL frames written after it back into the database, so the WAL
 * grows with intake until the export ends (then journal_size_limit cuts it
 * back at its next restart). docs/operations.md, "Archiving with export".
 *
 * Threads: any; it shares nothing with the store but the file's path.
 */
#include <stdio.h>

#include "ids.h"
#include "log.h"
#include "store_sqlite_int.h"

/* ?1 now (in sq_order_select), ?2 customer, ?3 stored status, ?4 shown status,
 * ?5 created before; only those of the filter appear. */
#define EXPORT_SQL_MAX 2048

static int export_sql(const struct store_export_filter *f, char *out, size_t size)
{
    int n = snprintf(out, size, "%sWHERE 1%s%s%s ORDER BY o.order_id", sq_order_select,
                     f->customer_id ? " AND o.customer_id = ?2" : "",
                     f->status ? " AND o.status = ?3 AND st = ?4" : "",
                     f->before_ms > 0 ? " AND o.created_at < ?5" : "");
    return n > 0 && (size_t)n < size ? STORE_OK : STORE_EINTERNAL;
}

static int bind_filter(sqlite3_stmt *st, const struct store_export_filter *f, int64_t now_ms)
{
    int rc = sqlite3_bind_int64(st, 1, now_ms);
    if (rc == SQLITE_OK && f->customer_id)
        rc = bind_text(st, 2, f->customer_id);
    if (rc == SQLITE_OK && f->status)
        rc = bind_text(st, 3, store_stored_status(f->status));
    if (rc == SQLITE_OK && f->status)
        rc = bind_text(st, 4, f->status);
    if (rc == SQLITE_OK && f->before_ms > 0)
        rc = sqlite3_bind_int64(st, 5, f->before_ms);
    return rc;
}

/* Steps st to its end, each row to fn: STORE_OK, fn's nonzero value, or an error. */
static int stream_rows(sqlite3 *db, sqlite3_stmt *st, store_export_fn fn, void *arg)
{
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        struct store_order o;
        int err = sq_read_order_row(st, &o);
        if (err != STORE_OK)
            return err;
        int stop = fn(arg, &o);
        store_order_clear(&o);
        if (stop != 0)
            return stop;
    }
    return rc == SQLITE_DONE ? STORE_OK : sq_fail(db, rc, "export: read orders");
}

int sq_export_orders(struct store *base, const struct store_export_filter *f, store_export_fn fn,
                     void *arg)
{
    struct sq_store *s = sq(base);
    if (f->status != NULL && !store_status_valid(f->status))
        return STORE_EINTERNAL; /* the caller validates it */
    char sql[EXPORT_SQL_MAX];
    int err = export_sql(f, sql, sizeof(sql));
    if (err != STORE_OK)
        return err;
    sqlite3 *db = NULL;
    err = sq_open_read_connection(s, &db);
    if (err != STORE_OK)
        return err;
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_exec(db, "BEGIN", NULL, NULL, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
    if (rc == SQLITE_OK)
        rc = bind_filter(st, f, ids_now_ms());
    if (rc != SQLITE_OK)
        err = sq_fail(db, rc, "export: begin");
    else
        err = stream_rows(db, st, fn, arg);
    sqlite3_finalize(st);
    /* Nothing was written: COMMIT only ends the read transaction. */
    if (!sqlite3_get_autocommit(db) &&
        (rc = sqlite3_exec(db, "COMMIT", NULL, NULL, NULL)) != SQLITE_OK && err == STORE_OK)
        err = sq_fail(db, rc, "export: end");
    if (sqlite3_close(db) != SQLITE_OK)
        log_error(NULL, "store: export: close: %s", sqlite3_errmsg(db));
    return err;
}
