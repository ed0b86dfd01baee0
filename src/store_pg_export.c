/*
 * store_pg_export.c — export for the PostgreSQL backend (store_export):
 * every order that matches a filter, from ONE snapshot, streamed.
 *
 * On one pool connection held for the whole export: BEGIN ISOLATION LEVEL
 * REPEATABLE READ READ ONLY, whose first statement fixes the snapshot (what
 * every node had committed then, whatever commits meanwhile), then a
 * server-side cursor over the orders in order_id order with the listing's
 * columns (pg_order_select) and filter, read EXPORT_FETCH rows at a time:
 * memory is one batch of rows however many there are. Each row is decoded
 * as GET /orders/{id} decodes it (pg_read_order_row), handed to fn and
 * cleared. COMMIT at the end closes the cursor; a stop (fn's nonzero value)
 * or an error rolls back, and a connection that cannot roll back is dropped
 * (the pool reconnects it).
 *
 * The cursor's plan favours the first rows (cursor_tuple_fraction): a walk
 * of the primary key, or of orders_by_customer / orders_by_status, which
 * are in order_id order, rather than a sort of the whole table. A long
 * REPEATABLE READ transaction holds back VACUUM's cleanup of rows deleted
 * after it began (the queue's settled messages) until it ends.
 *
 * Threads: any; it borrows a pool connection as every read does.
 */
#include "ids.h"
#include "log.h"
#include "store_pg_int.h"

#define EXPORT_FETCH 1000 /* rows a FETCH returns */
#define STR_(x) #x
#define STR(x) STR_(x)
#define EXPORT_SQL_MAX 4096
#define EXPORT_CURSOR "orderd_export"

/* The DECLARE of the cursor for f; $1 now, then each of f's values in
 * params[1..], numbered in the order they appear. *nparams gets the count. */
static int export_sql(const struct store_export_filter *f, struct num *now, struct num *before,
                      const char **params, int *nparams, char *out, size_t size)
{
    int n = 1;
    char customer[64] = "", status[512] = "", created[64] = "";
    params[0] = num(now, ids_now_ms());
    if (f->customer_id) {
        params[n++] = f->customer_id;
        snprintf(customer, sizeof(customer), " AND o.customer_id = $%d::text", n);
    }
    if (f->status) {
        params[n++] = store_stored_status(f->status);
        params[n++] = f->status;
        snprintf(status, sizeof(status), " AND o.status = $%d::text AND %s = $%d::text", n - 1,
                 pg_status_expr, n);
    }
    if (f->before_ms > 0) {
        params[n++] = num(before, f->before_ms);
        snprintf(created, sizeof(created), " AND o.created_at < $%d::bigint", n);
    }
    *nparams = n;
    int len = snprintf(out, size,
                       "DECLARE " EXPORT_CURSOR " NO SCROLL CURSOR FOR %sWHERE true%s%s%s "
                       "ORDER BY o.order_id",
                       pg_order_select, customer, status, created);
    return len > 0 && (size_t)len < size ? STORE_OK : STORE_EINTERNAL;
}

/* FETCHes to the end, each row to fn: STORE_OK, fn's nonzero value, or an error. */
static int stream_rows(struct pg_conn *c, store_export_fn fn, void *arg)
{
    for (;;) {
        PGresult *res = NULL;
        int err = pg_exec_sql(c, "FETCH " STR(EXPORT_FETCH) " FROM " EXPORT_CURSOR, "export: fetch",
                              &res);
        if (err != STORE_OK)
            return err;
        int rows = PQntuples(res);
        for (int r = 0; r < rows; r++) {
            struct store_order o;
            err = pg_read_order_row(res, r, &o);
            if (err == STORE_OK) {
                err = fn(arg, &o);
                store_order_clear(&o);
            }
            if (err != STORE_OK) {
                PQclear(res);
                return err;
            }
        }
        PQclear(res);
        if (rows < EXPORT_FETCH)
            return STORE_OK;
    }
}

int pgs_export_orders(struct store *base, const struct store_export_filter *f, store_export_fn fn,
                      void *arg)
{
    struct pg_store *s = pgs(base);
    if (f->status != NULL && !store_status_valid(f->status))
        return STORE_EINTERNAL; /* the caller validates it */
    struct num now, before;
    const char *params[5];
    int nparams = 0;
    char sql[EXPORT_SQL_MAX];
    int err = export_sql(f, &now, &before, params, &nparams, sql, sizeof(sql));
    if (err != STORE_OK)
        return err;
    struct pg_conn *c = NULL;
    err = pg_pool_acquire(s, &c);
    if (err != STORE_OK)
        return err;
    err = pg_exec_sql(c, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", "export: begin", NULL);
    if (err == STORE_OK)
        err = pg_exec_params(c, sql, nparams, params, "export: declare", NULL);
    if (err == STORE_OK)
        err = stream_rows(c, fn, arg);
    if (err == STORE_OK)
        err = pg_exec_sql(c, "COMMIT", "export: commit", NULL);
    if (err != STORE_OK && c->pg != NULL && PQtransactionStatus(c->pg) != PQTRANS_IDLE &&
        pg_exec_sql(c, "ROLLBACK", "export: rollback", NULL) != STORE_OK && c->pg != NULL)
        pg_conn_drop(c);
    pg_pool_release(s, c);
    return err;
}
