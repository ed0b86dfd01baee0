/*
 * store_pg_retention.c — retention for the PostgreSQL backend
 * (store_purge_expired): what goes, what stays (idempotency keys), the ULID
 * floor that bounds each scan and why it is safe are written once, at the
 * top of store_sqlite_retention.c; the same holds here. What differs:
 *
 * ONE STATEMENT PER BATCH, run with PQexecParams on a pooled connection (the
 * statements prepared on every connection are store_pg_conn.c's; this file
 * adds none): a MATERIALIZED CTE picks at most max rows, oldest first, FOR
 * UPDATE SKIP LOCKED, and data-modifying CTEs delete them and what belongs to
 * them, in the statement's implicit transaction. Two nodes sweeping at once
 * take different rows and never wait for each other; a row that a worker,
 * a redrive or a discard holds is skipped and taken by a later batch.
 *
 *   completed      picked from orders_by_status (status = 'completed',
 *                  order_id < floor, processed_at < cutoff), deleted.
 *   dead letters   picked from dead_letters' primary key (order_id < floor,
 *                  dead_lettered_at < cutoff), deleted with their orders
 *                  rows; then, up to max in all, discarded orders from
 *                  orders_by_status (discarded_at < cutoff). A redrive or a
 *                  discard locks the dead_letters row before the order, as
 *                  this statement does: no deadlock, and whichever comes
 *                  second finds the row gone (the admin API answers 404).
 *
 * PLANS (PostgreSQL 15, EXPLAIN ANALYZE of one batch of 500 on 1.4 M orders
 * of which 200 k dead letters and 200 k discarded, after ANALYZE):
 *
 *   completed     Limit -> LockRows -> Index Scan using orders_by_status
 *                   Index Cond: status = 'completed' AND order_id < floor
 *                   Filter: processed_at < cutoff
 *                 Delete: Nested Loop, Index Scan using orders_pkey per row
 *                 (1.4 ms). On a table where nearly every old row is
 *                 completed the planner may walk orders_pkey instead, the
 *                 same range in the same order: either stops after max rows.
 *   dead letters  Limit -> LockRows -> Index Scan using dead_letters_pkey
 *                   Index Cond: order_id < floor; Filter: dead_lettered_at
 *                 then the discarded as completed above (orders_by_status,
 *                 status = 'discarded'), each Delete a Nested Loop of index
 *                 lookups by order_id (3.6 ms).
 *
 * COUNTERS. The dead letters deleted are subtracted from the dlq column of
 * the connection's queue_stats row, last, in the same statement (the rule of
 * store_pg.c, COUNTERS). Completed and discarded orders are in no counter.
 *
 * VACUUM. The rows deleted here are left to autovacuum (orders, like
 * idempotency_keys, is a big table; store_pg.c, VACUUM): their space is
 * reused by later inserts once vacuumed, so the tables stop growing when
 * retention keeps pace with intake.
 *
 * Threads: any (the retention sweeper); one pooled connection per call.
 */
#include <stdatomic.h>

#include "ids.h"
#include "log.h"
#include "store_pg_int.h"

#define ULID_TIME_CHARS 10                     /* ids.c: 48 bits of ms, 5 per character */
#define ULID_TIME_MAX ((INT64_C(1) << 48) - 1) /* the last millisecond a ULID can name */

/* $1 floor, $2 cutoff, $3 max. Returns the orders deleted. */
static const char sql_completed[] =
    "WITH picked AS MATERIALIZED (SELECT order_id FROM orders "
    "  WHERE status = 'completed' AND order_id < $1::text AND processed_at < $2::bigint "
    "  ORDER BY order_id LIMIT $3::int FOR UPDATE SKIP LOCKED), "
    "o AS (DELETE FROM orders o USING picked p WHERE o.order_id = p.order_id "
    "  AND o.status = 'completed' RETURNING o.order_id) "
    "SELECT count(*), 0 FROM o";

/* $1 floor, $2 cutoff, $3 max, $4 the connection's slot of queue_stats. Returns
 * the orders deleted and, of those, the dead letters. */
static const char sql_dead_letters[] =
    "WITH dl AS MATERIALIZED (SELECT order_id FROM dead_letters "
    "  WHERE order_id < $1::text AND dead_lettered_at < $2::bigint "
    "  ORDER BY order_id LIMIT $3::int FOR UPDATE SKIP LOCKED), "
    "dd AS (DELETE FROM dead_letters d USING dl WHERE d.order_id = dl.order_id "
    "  RETURNING d.order_id), "
    "disc AS MATERIALIZED (SELECT order_id FROM orders "
    "  WHERE status = 'discarded' AND order_id < $1::text AND discarded_at < $2::bigint "
    "  ORDER BY order_id LIMIT greatest($3::int - (SELECT count(*) FROM dl), 0) "
    "  FOR UPDATE SKIP LOCKED), "
    "o AS (DELETE FROM orders o USING "
    "  (SELECT order_id FROM dd UNION ALL SELECT order_id FROM disc) x "
    "  WHERE o.order_id = x.order_id AND o.status IN ('dead_lettered', 'discarded') "
    "  RETURNING o.order_id), "
    "st AS (UPDATE queue_stats SET dlq = dlq - (SELECT count(*) FROM dd) "
    "  WHERE slot = $4::int AND EXISTS (SELECT 1 FROM dd)) "
    "SELECT (SELECT count(*) FROM o), (SELECT count(*) FROM dd)";

/* The smallest ULID of millisecond ms: an order_id sorts below it exactly
 * when it was made before ms (COLLATE "C" on every id column). */
static int ulid_floor(int64_t ms, char out[ID_ULID_LEN + 1])
{
    if (ms > ULID_TIME_MAX)
        ms = ULID_TIME_MAX;
    if (ids_ulid_at((uint64_t)ms, out) != 0)
        return -1;
    memset(out + ULID_TIME_CHARS, '0', ID_ULID_LEN - ULID_TIME_CHARS);
    return 0;
}

/*
 * The error of a failed statement, logged and mapped as store_pg_conn.c maps
 * those of its prepared ones: what a retry later can fix (the link, the
 * server shutting down or out of resources, a serialization failure or
 * deadlock, a standby) is STORE_EUNAVAILABLE; a connection that broke is
 * closed, so that the next lending reconnects.
 */
static int failed(struct pg_conn *c, PGresult *res)
{
    const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    const char *msg = res ? PQresultErrorMessage(res) : PQerrorMessage(c->pg);
    log_error(NULL, "store: retention: %.*s", (int)strcspn(msg, "\n"), msg);
    int err = STORE_EINTERNAL;
    if (PQstatus(c->pg) == CONNECTION_BAD) {
        pg_conn_drop(c);
        err = STORE_EUNAVAILABLE;
    } else if (state == NULL || strlen(state) != 5) {
        err = STORE_EUNAVAILABLE;
    } else {
        static const char *const retry[] = {"08", "53", "57", "58", "40"};
        for (size_t i = 0; i < sizeof(retry) / sizeof(retry[0]); i++)
            if (strncmp(state, retry[i], 2) == 0)
                err = STORE_EUNAVAILABLE;
        if (strcmp(state, "25006") == 0 || strcmp(state, "55P03") == 0)
            err = STORE_EUNAVAILABLE;
    }
    PQclear(res);
    return err;
}

int pgs_purge_expired(struct store *base, enum store_retention_kind kind, int64_t cutoff_ms,
                      size_t max, uint64_t *deleted)
{
    struct pg_store *s = pgs(base);
    *deleted = 0;
    if (cutoff_ms <= 0 || max == 0)
        return STORE_OK; /* nothing finished before 1970 */
    char floor[ID_ULID_LEN + 1];
    if (ulid_floor(cutoff_ms, floor) != 0)
        return STORE_EINTERNAL;
    struct pg_conn *c = NULL;
    int err = pg_pool_acquire(s, &c);
    if (err != STORE_OK)
        return err;
    struct num cutoff, lim, slot;
    const char *params[] = {floor, num(&cutoff, cutoff_ms),
                            num(&lim, max > INT32_MAX ? INT32_MAX : (int64_t)max),
                            num(&slot, c->slot)};
    bool completed = kind == STORE_RETENTION_COMPLETED;
    PGresult *res = PQexecParams(c->pg, completed ? sql_completed : sql_dead_letters,
                                 completed ? 3 : 4, NULL, params, NULL, NULL, 0);
    if (res == NULL || PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
        err = failed(c, res);
    } else {
        int64_t orders = col_i64(res, 0, 0), dead = col_i64(res, 0, 1);
        if (orders < dead)
            log_warn(NULL, "store: retention: %" PRId64 " dead letters had %" PRId64 " orders rows",
                     dead, orders);
        *deleted = orders > 0 ? (uint64_t)orders : 0;
        PQclear(res);
    }
    pg_pool_release(s, c);
    return err;
}
