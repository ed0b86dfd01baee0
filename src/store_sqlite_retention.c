/*
 * store_sqlite_retention.c — retention for the SQLite backend
 * (store_purge_expired): deleting the orders that outlived [retention]
 * completed / dead_letters, at most max of them per call, in ONE short
 * writer transaction (the retention sweeper, src/retention.c, calls it
 * between intake commits and pauses after each full batch).
 *
 * WHAT GOES (the states are those of the essay at the top of store_sqlite.c)
 *
 *   COMPLETED      orders rows with status 'completed' and processed_at before
 *                  the cutoff. Such an order has no queue row (settle deleted
 *                  it in the transaction that completed the order) and no
 *                  dead_letters row (it never died, or was redriven first).
 *   DEAD_LETTERS   dead_letters rows with dead_lettered_at before the cutoff,
 *                  and their orders rows (status 'dead_lettered'; no queue row:
 *                  an order_id is in at most one of queue and dead_letters);
 *                  then, with what is left of max, orders with status
 *                  'discarded' and discarded_at before the cutoff (their
 *                  dead_letters row went when they were discarded).
 *                  dlq_depth goes down by the dead_letters rows deleted, after
 *                  the commit and under the write lock (INVARIANTS).
 *
 *   Queued and processing orders are never touched: every statement names the
 *   status it deletes. A redriven order is queued again and has no
 *   dead_letters row any more, so it is not a dead letter however old its
 *   first death was; if it dies again, its new dead_lettered_at counts.
 *
 *   idempotency_keys rows that name a deleted order are KEPT: they expire by
 *   their own TTL (IDEMPOTENCY_TTL_S, pruned by store_idempotency_prune). A
 *   key promises that a retry within its TTL is answered with the first
 *   answer and creates no second order; deleting it with the order would let
 *   a late retry create the order again, after it was processed. The replay
 *   then names an order that GET /orders/{id} answers 404. (And there is no
 *   index on idempotency_keys(order_id): finding them would scan the table.)
 *
 * CHEAP ON A BIG TABLE, WITHOUT A SCHEMA CHANGE. An order_id is a ULID whose
 * first 48 bits are its creation time in ms, and an order cannot complete or
 * die before it was created. So every expired order has an order_id below
 * the smallest ULID of the cutoff's millisecond (ulid_floor), and the
 * candidates are a range of the existing index orders_by_status(status,
 * order_id) — or of dead_letters' primary key — read from its start, oldest
 * first, and only up to max rows that also pass the time test. The time test
 * stays: the floor only bounds the scan. What such a scan reads beyond the
 * rows it deletes are orders created before the cutoff that finished after
 * it (they lived longer than now - cutoff: few), each batch again until they
 * expire. A wall clock that steps back can put an order's processed_at
 * before its id's time: it is then deleted a little later, never early.
 *
 * THE PLANS (sqlite 3.40, EXPLAIN QUERY PLAN of each statement below; the
 * subquery is a list evaluated first, so no row is deleted while its index
 * is being walked; INDEXED BY makes a schema change that drops the index fail
 * here instead of turning each batch into a scan of every order):
 *
 *   completed, discarded:
 *     |--SEARCH orders USING PRIMARY KEY (order_id=?)
 *     `--LIST SUBQUERY 1
 *        `--SEARCH orders USING INDEX orders_by_status (status=? AND order_id<?)
 *   dead letters' orders:
 *     |--SEARCH orders USING COVERING INDEX orders_by_status (status=? AND order_id=?)
 *     `--LIST SUBQUERY 1
 *        `--SEARCH dead_letters USING PRIMARY KEY (order_id<?)
 *   dead letters:
 *     |--SEARCH dead_letters USING PRIMARY KEY (order_id=?)
 *     `--LIST SUBQUERY 1
 *        `--SEARCH dead_letters USING PRIMARY KEY (order_id<?)
 *
 * The statements are prepared per call (three at most; microseconds against
 * a batch of deletes), so that nothing here adds to the shared statement
 * table of store_sqlite_open.c.
 *
 * THE FILE. orderd's database has auto_vacuum NONE (SQLite's default; orderd
 * never sets it): the pages that deleted rows free go to the freelist and the
 * next inserts take them before the file grows. So the file stops growing
 * once retention deletes as many orders as intake writes; it does not
 * shrink. Incremental vacuum would give pages back to the filesystem, but
 * needs auto_vacuum = INCREMENTAL set before the first table is created (or
 * a full VACUUM to switch), and it moves pages under the write lock, which
 * intake would wait for. To shrink a file once, stop orderd and VACUUM it.
 *
 * Threads: any (the retention sweeper); under write_lock like every writer
 * transaction, with synchronous=NORMAL: a purge lost to a power cut is only
 * done again.
 */
#include <stdatomic.h>
#include <string.h>

#include "ids.h"
#include "log.h"
#include "store_sqlite_int.h"

#define ULID_TIME_CHARS 10                     /* ids.c: 48 bits of ms, 5 per character */
#define ULID_TIME_MAX ((INT64_C(1) << 48) - 1) /* the last millisecond a ULID can name */

/* ?1 the floor (ulid_floor), ?2 the cutoff (ms), ?3 at most this many. */
#define EXPIRED_DEAD_LETTERS                                                                       \
    "SELECT order_id FROM dead_letters WHERE order_id < ?1 AND dead_lettered_at < ?2 "             \
    "ORDER BY order_id LIMIT ?3"

static const char sql_completed[] =
    "DELETE FROM orders WHERE order_id IN (SELECT order_id FROM orders "
    "INDEXED BY orders_by_status WHERE status = 'completed' AND order_id < ?1 "
    "AND processed_at < ?2 ORDER BY order_id LIMIT ?3)";
static const char sql_dead_orders[] = "DELETE FROM orders WHERE status = 'dead_lettered' "
                                      "AND order_id IN (" EXPIRED_DEAD_LETTERS ")";
static const char sql_dead_letters[] =
    "DELETE FROM dead_letters WHERE order_id IN (" EXPIRED_DEAD_LETTERS ")";
static const char sql_discarded[] =
    "DELETE FROM orders WHERE order_id IN (SELECT order_id FROM orders "
    "INDEXED BY orders_by_status WHERE status = 'discarded' AND order_id < ?1 "
    "AND discarded_at < ?2 ORDER BY order_id LIMIT ?3)";

/* The smallest ULID of millisecond ms (its random part all zeros): an
 * order_id sorts below it exactly when it was made before ms. */
static int ulid_floor(int64_t ms, char out[ID_ULID_LEN + 1])
{
    if (ms > ULID_TIME_MAX)
        ms = ULID_TIME_MAX;
    if (ids_ulid_at((uint64_t)ms, out) != 0)
        return -1;
    memset(out + ULID_TIME_CHARS, '0', ID_ULID_LEN - ULID_TIME_CHARS);
    return 0;
}

/* Runs one of the DELETEs above in the open transaction; *changes = rows deleted. */
static int run_delete(struct sq_store *s, const char *sql, const char *floor, int64_t cutoff_ms,
                      int64_t limit, uint64_t *changes)
{
    sqlite3_stmt *st = NULL;
    *changes = 0;
    int rc = sqlite3_prepare_v3(s->writer, sql, -1, 0, &st, NULL);
    if (rc != SQLITE_OK)
        return rc;
    bind_text(st, 1, floor);
    sqlite3_bind_int64(st, 2, cutoff_ms);
    sqlite3_bind_int64(st, 3, limit);
    rc = sqlite3_step(st);
    if (rc == SQLITE_DONE) {
        rc = SQLITE_OK;
        *changes = (uint64_t)sqlite3_changes(s->writer);
    }
    sqlite3_finalize(st);
    return rc;
}

int sq_purge_expired(struct store *base, enum store_retention_kind kind, int64_t cutoff_ms,
                     size_t max, uint64_t *deleted)
{
    struct sq_store *s = sq(base);
    *deleted = 0;
    if (cutoff_ms <= 0 || max == 0)
        return STORE_OK; /* nothing finished before 1970 */
    char floor[ID_ULID_LEN + 1];
    if (ulid_floor(cutoff_ms, floor) != 0)
        return STORE_EINTERNAL;
    int64_t limit = max > (size_t)INT64_MAX ? INT64_MAX : (int64_t)max;

    int err = sq_txn_begin(s, false, "retention");
    if (err != STORE_OK)
        return err;
    uint64_t orders = 0, dead = 0, discarded = 0;
    int rc;
    if (kind == STORE_RETENTION_COMPLETED) {
        rc = run_delete(s, sql_completed, floor, cutoff_ms, limit, &orders);
    } else {
        /* The orders first: the second DELETE reads the same dead_letters rows. */
        rc = run_delete(s, sql_dead_orders, floor, cutoff_ms, limit, &orders);
        if (rc == SQLITE_OK)
            rc = run_delete(s, sql_dead_letters, floor, cutoff_ms, limit, &dead);
        if (rc == SQLITE_OK && orders != dead)
            log_warn(NULL, "store: retention: %llu dead letters had %llu orders rows",
                     (unsigned long long)dead, (unsigned long long)orders);
        if (rc == SQLITE_OK && dead < (uint64_t)limit)
            rc = run_delete(s, sql_discarded, floor, cutoff_ms, limit - (int64_t)dead, &discarded);
        orders += discarded;
    }
    if (rc != SQLITE_OK)
        return sq_txn_abort(s, rc, "retention");
    err = sq_txn_commit_hold(s, "retention commit");
    if (err != STORE_OK)
        return err;
    atomic_fetch_sub(&s->dlq_depth, dead);
    sq_writer_unlock(s);
    *deleted = orders;
    return STORE_OK;
}
