/*
 * store_sqlite.c — the embedded backend of store.h: orders, the queue and the
 * dead letters in one SQLite file in WAL mode.
 *
 * SCHEMA (user_version 4; migrate() in store_sqlite_open.c brings older files
 * up to it; the DDL of each version is there)
 *
 *   orders(order_id PK, customer_id, items, status, attempts, created_at,
 *          processed_at, last_error, traceparent, redrives, redriven_at,
 *          previous_attempts, previous_error, discarded_at, fulfilment_result)
 *       One row per accepted order, written in the same transaction as its
 *       queue message. status is 'queued' | 'completed' | 'dead_lettered' |
 *       'discarded'; "processing" is derived: a queued order whose message
 *       holds a live lease. redrives .. discarded_at are its history through
 *       the dead-letter queue (store.h, struct store_order); fulfilment_result
 *       is what an HTTP fulfilment service answered (JSON), once completed.
 *   queue(seq PK, order_id UNIQUE, enqueued_at, visible_at, receive_count,
 *         receipt, last_error)
 *       One row per message not yet settled. seq gives the age order.
 *   dead_letters(order_id PK, attempts, last_error, enqueued_at, dead_lettered_at)
 *   idempotency_keys(key PK, request, response, order_id, created_at)
 *   heartbeat(id PK, at) — the one row readiness probes write.
 *
 * STATES OF A MESSAGE AND EVERY TRANSITION (each one transaction)
 *
 *   enqueue      -> visible   orders row + queue row (+ idempotency key)
 *   enqueue leased -> leased  the same, written already claimed (receive_count
 *                1, a receipt, visible_at = lease end) for a worker that gets
 *                the message in memory from the committer (committer.h)
 *   claim        visible -> leased: receive_count += 1, a fresh receipt,
 *                visible_at = now + lease. A lease that runs out makes the
 *                message visible again by itself (visible_at passes).
 *   settle COMPLETED    leased -> gone: queue row deleted, orders row completed.
 *   settle RETRY        leased -> visible at visible_at (backoff), receipt cleared.
 *   settle DEAD_LETTER  leased -> dead_letters row, orders row dead_lettered.
 *   claim of a message whose receive_count already reached max_receives (its
 *                last lease expired): -> dead_letters, never delivered again.
 *   release (drain)     leased -> visible now, receive_count -= 1.
 *   extend lease        leased -> leased longer (visible_at never moves
 *                earlier): a fulfilment still running keeps its message.
 *   redrive      dead_letters -> visible, receive_count 0, order queued again;
 *                the order's attempts and last_error move to previous_attempts
 *                and previous_error, redrives += 1, redriven_at = now.
 *   delete       dead_letters -> gone; the order becomes 'discarded' with
 *                discarded_at = now, its attempts and last_error kept.
 *
 * INVARIANTS
 *   - An order_id is in at most one of queue and dead_letters.
 *   - settle and release act only when the receipt matches (fencing): a worker
 *     whose lease ran out can never touch a newer delivery (STORE_ESTALE).
 *   - queue_depth / dlq_depth (in memory) equal the row counts: they are
 *     counted at open and changed only after the transaction that changed the
 *     rows committed, under the write lock.
 *
 * THREADS AND CONNECTIONS
 *   One writer connection guarded by write_lock: the committer and the
 *   workers take turns, so SQLite never answers BUSY inside the process.
 *   Intake commits run with synchronous=FULL when durability is full; worker
 *   and admin transactions run with synchronous=NORMAL — in WAL mode a later
 *   FULL commit syncs them too, and a lost settlement is only a redelivery.
 *   Reads go to a small pool of read-only connections (WAL: never blocked).
 *   The checkpointer thread (wal_checkpointer.h) has a connection of its own
 *   and takes write_lock only for the last part of each checkpoint.
 *
 * THE FILES
 *   store_sqlite.c       this essay; the transitions above, each one
 *                        transaction, and the reads; the table sq_ops at its
 *                        end, through which store.c reaches the backend.
 *   store_sqlite_open.c  the file and its connections: the DDL and migrate(),
 *                        the SQL of every prepared statement, pragmas, the
 *                        writer's lock and transactions, the reader pool,
 *                        sq_sync, the checkpointer, close, and the public
 *                        store_backup() and store_sqlite_version().
 *   store_sqlite_int.h   what the two share: struct sq_store, statement names.
 *   store_sqlite_retention.c, store_sqlite_export.c
 *                        deleting expired orders; streaming a snapshot.
 *   sqlite_io.c          the VFS every connection opens through (and the
 *                        WAL's own fdatasync): the seam where the unit tests
 *                        fail a chosen write, sync or open.
 *   wal_checkpointer.c   the checkpoints, on a thread of their own.
 */
#include <assert.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ids.h"
#include "store_sqlite_int.h"

/* ---- small helpers ----------------------------------------------------- */

static char *dup_column(sqlite3_stmt *st, int col)
{
    const unsigned char *t = sqlite3_column_text(st, col);
    return t ? strdup((const char *)t) : NULL;
}

static void copy_column(sqlite3_stmt *st, int col, char *dst, size_t size)
{
    const unsigned char *t = sqlite3_column_text(st, col);
    snprintf(dst, size, "%s", t ? (const char *)t : "");
}

static void done_stmt(sqlite3_stmt *st)
{
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
}

/* ---- intake ------------------------------------------------------------ */

static int insert_idempotency(struct sq_store *s, const struct store_new_order *o, bool *taken)
{
    sqlite3_stmt *st = wstmt(s, W_INSERT_IDEM);
    bind_text(st, 1, o->idempotency_key);
    bind_text(st, 2, o->request_json);
    bind_text(st, 3, o->response_json);
    bind_text(st, 4, o->order_id);
    sqlite3_bind_int64(st, 5, o->created_at_ms);
    sqlite3_bind_int64(st, 6, o->created_at_ms - (int64_t)IDEMPOTENCY_TTL_S * 1000);
    int rc = exec_stmt(st);
    *taken = rc == SQLITE_OK && sqlite3_changes(s->writer) == 0;
    return rc;
}

/* Writes k orders (1 <= k <= STORE_INSERT_ROWS_MAX) and their messages:
 * one statement for the rows of each table. */
static int insert_orders(struct sq_store *s, struct store_new_order *const *list, size_t k)
{
    assert(k >= 1 && k <= STORE_INSERT_ROWS_MAX);
    sqlite3_stmt *st = s->insert_orders[k];
    for (size_t i = 0; i < k; i++) {
        const struct store_new_order *o = list[i];
        int at = (int)i * 5;
        bind_text(st, at + 1, o->order_id);
        bind_text(st, at + 2, o->customer_id);
        bind_text(st, at + 3, o->items_json);
        sqlite3_bind_int64(st, at + 4, o->created_at_ms);
        bind_text(st, at + 5, o->traceparent);
    }
    int rc = exec_stmt(st);
    if (rc != SQLITE_OK)
        return rc;
    st = s->insert_queue[k];
    for (size_t i = 0; i < k; i++) {
        const struct store_new_order *o = list[i];
        int at = (int)i * 5;
        bool leased = o->lease_receipt != 0;
        bind_text(st, at + 1, o->order_id);
        sqlite3_bind_int64(st, at + 2, o->created_at_ms);
        sqlite3_bind_int64(st, at + 3, leased ? o->lease_until_ms : o->created_at_ms);
        sqlite3_bind_int64(st, at + 4, leased ? 1 : 0);
        if (leased)
            sqlite3_bind_int64(st, at + 5, o->lease_receipt);
        else
            sqlite3_bind_null(st, at + 5);
    }
    return exec_stmt(st);
}

static int sq_enqueue_batch(struct store *base, struct store_new_order *orders, size_t n,
                            uint64_t max_depth)
{
    struct sq_store *s = sq(base);
    int err = sq_txn_begin(s, true, "enqueue");
    if (err != STORE_OK)
        goto fail_all;

    uint64_t depth = atomic_load(&s->queue_depth);
    uint64_t added = 0;
    struct store_new_order *chunk[STORE_INSERT_ROWS_MAX];
    size_t chunked = 0;
    int rc = SQLITE_OK;
    for (size_t i = 0; rc == SQLITE_OK && i < n; i++) {
        struct store_new_order *o = &orders[i];
        if (depth + added >= max_depth) {
            o->result = STORE_EQUEUEFULL;
            continue;
        }
        if (o->idempotency_key != NULL) {
            bool taken = false;
            rc = insert_idempotency(s, o, &taken);
            if (rc != SQLITE_OK)
                break;
            if (taken) {
                o->result = STORE_ECONFLICT;
                continue;
            }
        }
        o->result = STORE_OK; /* unless the transaction fails: fail_all */
        added++;
        chunk[chunked++] = o;
        if (chunked == STORE_INSERT_ROWS_MAX) {
            rc = insert_orders(s, chunk, chunked);
            chunked = 0;
        }
    }
    if (rc == SQLITE_OK && chunked > 0)
        rc = insert_orders(s, chunk, chunked);
    if (rc != SQLITE_OK) {
        err = sq_txn_abort(s, rc, "enqueue");
        goto fail_all;
    }
    err = sq_txn_commit_hold(s, "enqueue commit");
    if (err != STORE_OK)
        goto fail_all;
    sq_note_commit_to_sync(s);
    atomic_fetch_add(&s->queue_depth, added);
    sq_writer_unlock(s);
    return STORE_OK;

fail_all:
    for (size_t i = 0; i < n; i++)
        orders[i].result = err;
    return err;
}

/* ---- reads ------------------------------------------------------------- */

/* A row of sq_order_select into o (its strings malloc'd); shared with the export. */
int sq_read_order_row(sqlite3_stmt *st, struct store_order *o)
{
    memset(o, 0, sizeof(*o));
    copy_column(st, 0, o->order_id, sizeof(o->order_id));
    o->customer_id = dup_column(st, 1);
    o->items_json = dup_column(st, 2);
    o->status = store_status_constant((const char *)sqlite3_column_text(st, 3));
    o->attempts = (uint32_t)sqlite3_column_int64(st, 4);
    o->created_at_ms = sqlite3_column_int64(st, 5);
    o->processed_at_ms = sqlite3_column_int64(st, 6);
    if (sqlite3_column_type(st, 7) != SQLITE_NULL)
        o->last_error = dup_column(st, 7);
    copy_column(st, 8, o->traceparent, sizeof(o->traceparent));
    o->redrives = (uint32_t)sqlite3_column_int64(st, 9);
    o->redriven_at_ms = sqlite3_column_int64(st, 10);
    o->previous_attempts = (uint32_t)sqlite3_column_int64(st, 11);
    if (sqlite3_column_type(st, 12) != SQLITE_NULL)
        o->previous_error = dup_column(st, 12);
    o->discarded_at_ms = sqlite3_column_int64(st, 13);
    if (sqlite3_column_type(st, 14) != SQLITE_NULL)
        o->fulfilment_result = dup_column(st, 14);
    if (o->customer_id == NULL || o->items_json == NULL ||
        (sqlite3_column_type(st, 7) != SQLITE_NULL && o->last_error == NULL) ||
        (sqlite3_column_type(st, 12) != SQLITE_NULL && o->previous_error == NULL) ||
        (sqlite3_column_type(st, 14) != SQLITE_NULL && o->fulfilment_result == NULL)) {
        store_order_clear(o);
        return STORE_ENOMEM;
    }
    return STORE_OK;
}

static int sq_get_order(struct store *base, const char *order_id, int64_t now_ms,
                        struct store_order *out)
{
    struct sq_store *s = sq(base);
    struct reader *r = sq_reader_acquire(s);
    sqlite3_stmt *st = r->stmts[R_GET_ORDER];
    sqlite3_bind_int64(st, 1, now_ms);
    bind_text(st, 2, order_id);
    int rc = sqlite3_step(st);
    int err;
    if (rc == SQLITE_ROW)
        err = sq_read_order_row(st, out);
    else if (rc == SQLITE_DONE)
        err = STORE_ENOTFOUND;
    else
        err = sq_fail(r->db, rc, "get order");
    done_stmt(st);
    sq_reader_release(s, r);
    return err;
}

/* The listing statement of a filter: R_LIST_ALL + the variant (same order). */
static enum rstmt list_stmt(const struct store_order_filter *f)
{
    return (enum rstmt)(R_LIST_ALL + (int)store_list_variant(f));
}

static int sq_list_orders(struct store *base, const struct store_order_filter *f, int64_t now_ms,
                          struct store_order **out, size_t *n)
{
    struct sq_store *s = sq(base);
    assert(f->limit >= 1 && f->limit <= STORE_LIST_LIMIT_MAX);
    struct store_order *rows = calloc(f->limit, sizeof(*rows));
    if (rows == NULL)
        return STORE_ENOMEM;
    struct reader *r = sq_reader_acquire(s);
    sqlite3_stmt *st = r->stmts[list_stmt(f)];
    sqlite3_bind_int64(st, 1, now_ms);
    bind_text(st, 2, f->before_id);
    sqlite3_bind_int64(st, 3, (sqlite3_int64)f->limit);
    if (f->customer_id)
        bind_text(st, 4, f->customer_id);
    if (f->status) {
        bind_text(st, 5, store_stored_status(f->status));
        bind_text(st, 6, f->status);
    } else {
        sqlite3_bind_null(st, 6);
    }
    size_t count = 0;
    int err = STORE_OK;
    int rc = SQLITE_DONE;
    while (count < f->limit && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        err = sq_read_order_row(st, &rows[count]);
        if (err != STORE_OK)
            break;
        count++;
    }
    if (err == STORE_OK && count < f->limit && rc != SQLITE_DONE)
        err = sq_fail(r->db, rc, "list orders");
    done_stmt(st);
    sq_reader_release(s, r);
    if (err != STORE_OK) {
        store_orders_free(rows, count);
        return err;
    }
    *out = rows;
    *n = count;
    return STORE_OK;
}

static int sq_idempotency_get(struct store *base, const char *key, int64_t now_ms,
                              struct store_idempotency *out)
{
    struct sq_store *s = sq(base);
    struct reader *r = sq_reader_acquire(s);
    sqlite3_stmt *st = r->stmts[R_IDEM_GET];
    bind_text(st, 1, key);
    sqlite3_bind_int64(st, 2, now_ms - (int64_t)IDEMPOTENCY_TTL_S * 1000);
    int rc = sqlite3_step(st);
    int err = STORE_OK;
    memset(out, 0, sizeof(*out));
    if (rc == SQLITE_ROW) {
        out->request_json = dup_column(st, 0);
        out->response_json = dup_column(st, 1);
        copy_column(st, 2, out->order_id, sizeof(out->order_id));
        if (out->request_json == NULL || out->response_json == NULL) {
            store_idempotency_clear(out);
            err = STORE_ENOMEM;
        }
    } else if (rc == SQLITE_DONE) {
        err = STORE_ENOTFOUND;
    } else {
        err = sq_fail(r->db, rc, "idempotency get");
    }
    done_stmt(st);
    sq_reader_release(s, r);
    return err;
}

static int sq_idempotency_prune(struct store *base, int64_t now_ms, uint64_t *deleted)
{
    struct sq_store *s = sq(base);
    int err = sq_txn_begin(s, false, "idempotency prune");
    if (err != STORE_OK)
        return err;
    sqlite3_stmt *st = wstmt(s, W_IDEM_PRUNE);
    sqlite3_bind_int64(st, 1, now_ms - (int64_t)IDEMPOTENCY_TTL_S * 1000);
    int rc = exec_stmt(st);
    if (rc != SQLITE_OK)
        return sq_txn_abort(s, rc, "idempotency prune");
    if (deleted)
        *deleted = (uint64_t)sqlite3_changes(s->writer);
    return sq_txn_commit(s, "idempotency prune");
}

/* Runs a one-integer query on a reader; *found false when it returned NULL. */
static int reader_int(struct sq_store *s, enum rstmt which, int64_t *value, bool *found)
{
    struct reader *r = sq_reader_acquire(s);
    sqlite3_stmt *st = r->stmts[which];
    int rc = sqlite3_step(st);
    int err = STORE_OK;
    *found = false;
    if (rc == SQLITE_ROW && sqlite3_column_type(st, 0) != SQLITE_NULL) {
        *value = sqlite3_column_int64(st, 0);
        *found = true;
    } else if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
        err = sq_fail(r->db, rc, sq_rstmt_sql[which]);
    }
    done_stmt(st);
    sq_reader_release(s, r);
    return err;
}

static int sq_stats(struct store *base, struct store_stats *out)
{
    struct sq_store *s = sq(base);
    int64_t oldest = 0;
    bool found = false;
    int err = reader_int(s, R_OLDEST, &oldest, &found);
    out->queue_depth = atomic_load(&s->queue_depth);
    out->dlq_depth = atomic_load(&s->dlq_depth);
    out->oldest_enqueued_at_ms = found ? oldest : 0;
    return err;
}

/* ---- queue ------------------------------------------------------------- */

/* Moves a message (already deleted from queue) to dead_letters; inside a txn. */
static int dead_letter_rows(struct sq_store *s, const char *order_id, uint32_t attempts,
                            const char *error, int64_t enqueued_at, int64_t now_ms)
{
    sqlite3_stmt *st = wstmt(s, W_DLQ_INSERT);
    bind_text(st, 1, order_id);
    sqlite3_bind_int64(st, 2, attempts);
    bind_text(st, 3, error);
    sqlite3_bind_int64(st, 4, enqueued_at);
    sqlite3_bind_int64(st, 5, now_ms);
    int rc = exec_stmt(st);
    if (rc != SQLITE_OK)
        return rc;
    st = wstmt(s, W_DLQ_ORDER);
    bind_text(st, 1, order_id);
    sqlite3_bind_int64(st, 2, attempts);
    bind_text(st, 3, error);
    return exec_stmt(st);
}

/* Deletes the message under its receipt; SQLITE_NOTFOUND when stale. */
static int delete_leased(struct sq_store *s, const char *order_id, int64_t receipt,
                         int64_t *enqueued_at)
{
    sqlite3_stmt *st = wstmt(s, W_DLQ_DELETE_QUEUE);
    bind_text(st, 1, order_id);
    sqlite3_bind_int64(st, 2, receipt);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        *enqueued_at = sqlite3_column_int64(st, 0);
        rc = sqlite3_step(st);
    } else if (rc == SQLITE_DONE) {
        rc = SQLITE_NOTFOUND;
    }
    done_stmt(st);
    return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

static int load_message_order(struct sq_store *s, struct store_message *m)
{
    sqlite3_stmt *st = wstmt(s, W_ORDER_FOR_MESSAGE);
    bind_text(st, 1, m->order_id);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        m->customer_id = dup_column(st, 0);
        m->items_json = dup_column(st, 1);
        copy_column(st, 2, m->traceparent, sizeof(m->traceparent));
        m->created_at_ms = sqlite3_column_int64(st, 3);
        rc = (m->customer_id && m->items_json) ? SQLITE_OK : SQLITE_NOMEM;
    } else if (rc == SQLITE_DONE) {
        rc = SQLITE_CORRUPT; /* a message without its order breaks the invariant */
    }
    done_stmt(st);
    return rc;
}

/* Collected rows of the claim UPDATE ... RETURNING, before any other statement runs. */
struct claimed_row {
    char order_id[ID_ULID_LEN + 1];
    uint32_t receive_count;
    int64_t enqueued_at;
    char *last_error;
};

static int run_claim(struct sq_store *s, int64_t receipt, int64_t now_ms, int64_t visibility_timeout_ms,
                     struct claimed_row *rows, size_t max, size_t *n)
{
    sqlite3_stmt *st = wstmt(s, W_CLAIM);
    sqlite3_bind_int64(st, 1, receipt);
    sqlite3_bind_int64(st, 2, now_ms);
    sqlite3_bind_int64(st, 3, visibility_timeout_ms);
    sqlite3_bind_int64(st, 4, (sqlite3_int64)max);
    int rc;
    *n = 0;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        assert(*n < max);
        struct claimed_row *row = &rows[(*n)++];
        copy_column(st, 0, row->order_id, sizeof(row->order_id));
        row->receive_count = (uint32_t)sqlite3_column_int64(st, 1);
        row->enqueued_at = sqlite3_column_int64(st, 2);
        row->last_error = dup_column(st, 3);
    }
    done_stmt(st);
    return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

static int claim_one(struct sq_store *s, const struct claimed_row *row, int64_t receipt,
                     uint32_t max_receives, int64_t now_ms, struct store_message *out,
                     size_t *n, size_t *dead)
{
    if (row->receive_count > max_receives) {
        /* Its last lease expired without a verdict: dead-letter, never deliver again. */
        char why[STORE_ERROR_TEXT_MAX];
        store_lease_exhausted_reason(why, sizeof(why), max_receives, row->last_error);
        int64_t enq = 0;
        int rc = delete_leased(s, row->order_id, receipt, &enq);
        if (rc == SQLITE_OK)
            rc = dead_letter_rows(s, row->order_id, max_receives, why, row->enqueued_at, now_ms);
        if (rc == SQLITE_OK)
            (*dead)++;
        return rc;
    }
    struct store_message *m = &out[*n];
    memset(m, 0, sizeof(*m));
    memcpy(m->order_id, row->order_id, sizeof(m->order_id));
    m->receipt = receipt;
    m->receive_count = row->receive_count;
    int rc = load_message_order(s, m);
    if (rc != SQLITE_OK) {
        store_message_clear(m);
        return rc;
    }
    (*n)++;
    return SQLITE_OK;
}

static int sq_claim(struct store *base, int64_t now_ms, int64_t visibility_timeout_ms, uint32_t max_receives,
                    struct store_message *out, size_t max, size_t *n, size_t *dead_lettered)
{
    struct sq_store *s = sq(base);
    assert(max >= 1 && max <= WORKER_BATCH_MAX);
    struct claimed_row rows[WORKER_BATCH_MAX];
    size_t nrows = 0, dead = 0;
    int64_t receipt = 0;
    *n = 0;
    *dead_lettered = 0;
    if (ids_random_bytes(&receipt, sizeof(receipt)) != 0)
        return STORE_EINTERNAL;
    receipt &= INT64_MAX;

    int err = sq_txn_begin(s, false, "claim");
    if (err != STORE_OK)
        return err;
    int rc = run_claim(s, receipt, now_ms, visibility_timeout_ms, rows, max, &nrows);
    for (size_t i = 0; rc == SQLITE_OK && i < nrows; i++)
        rc = claim_one(s, &rows[i], receipt, max_receives, now_ms, out, n, &dead);
    for (size_t i = 0; i < nrows; i++)
        free(rows[i].last_error);
    err = rc == SQLITE_OK ? sq_txn_commit_hold(s, "claim commit") : sq_txn_abort(s, rc, "claim");
    if (err != STORE_OK) {
        for (size_t i = 0; i < *n; i++)
            store_message_clear(&out[i]);
        *n = 0;
        return err;
    }
    atomic_fetch_sub(&s->queue_depth, dead);
    atomic_fetch_add(&s->dlq_depth, dead);
    sq_writer_unlock(s);
    *dead_lettered = dead;
    return STORE_OK;
}

static int settle_completed(struct sq_store *s, struct store_settlement *it, int64_t now_ms)
{
    sqlite3_stmt *st = wstmt(s, W_COMPLETE_DELETE);
    bind_text(st, 1, it->order_id);
    sqlite3_bind_int64(st, 2, it->receipt);
    int rc = exec_stmt(st);
    if (rc != SQLITE_OK)
        return rc;
    if (sqlite3_changes(s->writer) == 0) {
        it->result = STORE_ESTALE;
        return SQLITE_OK;
    }
    st = wstmt(s, W_COMPLETE_ORDER);
    bind_text(st, 1, it->order_id);
    sqlite3_bind_int64(st, 2, it->attempts);
    sqlite3_bind_int64(st, 3, now_ms);
    bind_text(st, 4, it->result_json);
    rc = exec_stmt(st);
    if (rc == SQLITE_OK)
        it->result = STORE_OK;
    return rc;
}

static int settle_retry(struct sq_store *s, struct store_settlement *it)
{
    sqlite3_stmt *st = wstmt(s, W_RETRY);
    bind_text(st, 1, it->order_id);
    sqlite3_bind_int64(st, 2, it->receipt);
    sqlite3_bind_int64(st, 3, it->visible_at_ms);
    bind_text(st, 4, it->error);
    int rc = exec_stmt(st);
    if (rc == SQLITE_OK)
        it->result = sqlite3_changes(s->writer) == 0 ? STORE_ESTALE : STORE_OK;
    return rc;
}

static int settle_dead_letter(struct sq_store *s, struct store_settlement *it, int64_t now_ms)
{
    int64_t enqueued_at = 0;
    int rc = delete_leased(s, it->order_id, it->receipt, &enqueued_at);
    if (rc == SQLITE_NOTFOUND) {
        it->result = STORE_ESTALE;
        return SQLITE_OK;
    }
    if (rc == SQLITE_OK)
        rc = dead_letter_rows(s, it->order_id, it->attempts, it->error, enqueued_at, now_ms);
    if (rc == SQLITE_OK)
        it->result = STORE_OK;
    return rc;
}

static int sq_settle(struct store *base, struct store_settlement *items, size_t n, int64_t now_ms)
{
    struct sq_store *s = sq(base);
    int err = sq_txn_begin(s, false, "settle");
    if (err != STORE_OK)
        return err;
    int rc = SQLITE_OK;
    uint64_t removed = 0, dead = 0;
    for (size_t i = 0; rc == SQLITE_OK && i < n; i++) {
        struct store_settlement *it = &items[i];
        it->result = STORE_EINTERNAL;
        switch (it->outcome) {
        case STORE_OUTCOME_COMPLETED:
            rc = settle_completed(s, it, now_ms);
            removed += rc == SQLITE_OK && it->result == STORE_OK;
            break;
        case STORE_OUTCOME_RETRY:
            rc = settle_retry(s, it);
            break;
        case STORE_OUTCOME_DEAD_LETTER:
            rc = settle_dead_letter(s, it, now_ms);
            dead += rc == SQLITE_OK && it->result == STORE_OK;
            break;
        }
    }
    err = rc == SQLITE_OK ? sq_txn_commit_hold(s, "settle commit") : sq_txn_abort(s, rc, "settle");
    if (err != STORE_OK)
        return err;
    atomic_fetch_sub(&s->queue_depth, removed + dead);
    atomic_fetch_add(&s->dlq_depth, dead);
    sq_writer_unlock(s);
    return STORE_OK;
}

/*
 * Runs which (?1 order id, ?2 receipt, ?3 t) on one message under its receipt,
 * inside the caller's transaction: release and extend leases. *result, when
 * not NULL, gets STORE_ESTALE if no row was still under that receipt.
 */
static int run_on_receipt(struct sq_store *s, enum wstmt which, const char *order_id,
                          int64_t receipt, int64_t t, int *result)
{
    sqlite3_stmt *st = wstmt(s, which);
    bind_text(st, 1, order_id);
    sqlite3_bind_int64(st, 2, receipt);
    sqlite3_bind_int64(st, 3, t);
    int rc = exec_stmt(st);
    if (result != NULL)
        *result = sqlite3_changes(s->writer) == 0 ? STORE_ESTALE : STORE_OK;
    return rc;
}

static int sq_release(struct store *base, const struct store_message *msgs, size_t n,
                      int64_t now_ms)
{
    struct sq_store *s = sq(base);
    int err = sq_txn_begin(s, false, "release");
    if (err != STORE_OK)
        return err;
    int rc = SQLITE_OK;
    for (size_t i = 0; rc == SQLITE_OK && i < n; i++)
        rc = run_on_receipt(s, W_RELEASE, msgs[i].order_id, msgs[i].receipt, now_ms, NULL);
    return rc == SQLITE_OK ? sq_txn_commit(s, "release commit") : sq_txn_abort(s, rc, "release");
}

static int sq_extend_leases(struct store *base, struct store_lease *items, size_t n,
                            int64_t now_ms, int64_t visibility_timeout_ms)
{
    struct sq_store *s = sq(base);
    int err = sq_txn_begin(s, false, "extend leases");
    if (err != STORE_OK)
        return err;
    int rc = SQLITE_OK;
    for (size_t i = 0; rc == SQLITE_OK && i < n; i++)
        rc = run_on_receipt(s, W_EXTEND, items[i].order_id, items[i].receipt,
                            now_ms + visibility_timeout_ms, &items[i].result);
    return rc == SQLITE_OK ? sq_txn_commit(s, "extend leases commit")
                           : sq_txn_abort(s, rc, "extend leases");
}

static int sq_next_visible_ms(struct store *base, int64_t *when_ms)
{
    struct sq_store *s = sq(base);
    bool found = false;
    int err = reader_int(s, R_NEXT_VISIBLE, when_ms, &found);
    if (err != STORE_OK)
        return err;
    return found ? STORE_OK : STORE_ENOTFOUND;
}

/* ---- dead letters ------------------------------------------------------ */

static int sq_list_dead_letters(struct store *base, const char *before_id, size_t limit,
                                struct store_dead_letter **out, size_t *n)
{
    struct sq_store *s = sq(base);
    assert(limit >= 1 && limit <= STORE_LIST_LIMIT_MAX);
    struct store_dead_letter *rows = calloc(limit, sizeof(*rows));
    if (rows == NULL)
        return STORE_ENOMEM;
    struct reader *r = sq_reader_acquire(s);
    sqlite3_stmt *st = r->stmts[R_DLQ_LIST];
    bind_text(st, 1, before_id);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)limit);
    size_t count = 0;
    int rc = SQLITE_DONE, err = STORE_OK;
    while (count < limit && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        struct store_dead_letter *d = &rows[count++];
        copy_column(st, 0, d->order_id, sizeof(d->order_id));
        d->customer_id = dup_column(st, 1);
        d->items_json = dup_column(st, 2);
        d->attempts = (uint32_t)sqlite3_column_int64(st, 3);
        d->last_error = dup_column(st, 4);
        d->created_at_ms = sqlite3_column_int64(st, 5);
        d->dead_lettered_at_ms = sqlite3_column_int64(st, 6);
        copy_column(st, 7, d->traceparent, sizeof(d->traceparent));
        if (d->customer_id == NULL || d->items_json == NULL) {
            err = STORE_ENOMEM;
            break;
        }
    }
    if (err == STORE_OK && count < limit && rc != SQLITE_DONE)
        err = sq_fail(r->db, rc, "list dead letters");
    done_stmt(st);
    sq_reader_release(s, r);
    if (err != STORE_OK) {
        store_dead_letters_free(rows, count);
        return err;
    }
    *out = rows;
    *n = count;
    return STORE_OK;
}

/* Deletes one dead letter's row; SQLITE_NOTFOUND when there is none. */
static int delete_dead_letter_row(struct sq_store *s, const char *order_id)
{
    sqlite3_stmt *st = wstmt(s, W_DLQ_DELETE);
    bind_text(st, 1, order_id);
    int rc = exec_stmt(st);
    if (rc == SQLITE_OK && sqlite3_changes(s->writer) == 0)
        return SQLITE_NOTFOUND;
    return rc;
}

/* Inside a transaction: dead letter -> queue. SQLITE_NOTFOUND when absent. */
static int redrive_one(struct sq_store *s, const char *order_id, int64_t now_ms)
{
    int rc = delete_dead_letter_row(s, order_id);
    if (rc != SQLITE_OK)
        return rc;
    sqlite3_stmt *st = wstmt(s, W_REDRIVE_QUEUE);
    bind_text(st, 1, order_id);
    sqlite3_bind_int64(st, 2, now_ms);
    rc = exec_stmt(st);
    if (rc != SQLITE_OK)
        return rc;
    st = wstmt(s, W_REDRIVE_ORDER);
    bind_text(st, 1, order_id);
    sqlite3_bind_int64(st, 2, now_ms);
    return exec_stmt(st);
}

static int sq_redrive(struct store *base, const char *order_id, int64_t now_ms)
{
    struct sq_store *s = sq(base);
    int err = sq_txn_begin(s, false, "redrive");
    if (err != STORE_OK)
        return err;
    int rc = redrive_one(s, order_id, now_ms);
    if (rc == SQLITE_NOTFOUND) {
        sq_txn_abort(s, SQLITE_OK, "redrive");
        return STORE_ENOTFOUND;
    }
    if (rc != SQLITE_OK)
        return sq_txn_abort(s, rc, "redrive");
    err = sq_txn_commit_hold(s, "redrive commit");
    if (err == STORE_OK) {
        sq_note_commit_to_sync(s);
        atomic_fetch_sub(&s->dlq_depth, 1);
        atomic_fetch_add(&s->queue_depth, 1);
        sq_writer_unlock(s);
    }
    return err;
}

/* One batch of redrive-all; *moved gets how many, 0 when the table is empty. */
static int redrive_batch(struct sq_store *s, int64_t now_ms, uint64_t *moved)
{
    char ids[500][ID_ULID_LEN + 1];
    size_t n = 0;
    *moved = 0;
    int err = sq_txn_begin(s, false, "redrive all");
    if (err != STORE_OK)
        return err;
    sqlite3_stmt *st = wstmt(s, W_REDRIVE_NEXT);
    int rc = SQLITE_DONE;
    while (n < 500 && (rc = sqlite3_step(st)) == SQLITE_ROW)
        copy_column(st, 0, ids[n++], sizeof(ids[0]));
    done_stmt(st);
    if (n < 500 && rc != SQLITE_DONE)
        return sq_txn_abort(s, rc, "redrive all");
    rc = SQLITE_OK;
    for (size_t i = 0; rc == SQLITE_OK && i < n; i++)
        rc = redrive_one(s, ids[i], now_ms);
    if (rc != SQLITE_OK)
        return sq_txn_abort(s, rc, "redrive all");
    err = sq_txn_commit_hold(s, "redrive all commit");
    if (err == STORE_OK) {
        sq_note_commit_to_sync(s);
        atomic_fetch_sub(&s->dlq_depth, n);
        atomic_fetch_add(&s->queue_depth, n);
        sq_writer_unlock(s);
        *moved = n;
    }
    return err;
}

static int sq_redrive_all(struct store *base, int64_t now_ms, uint64_t *moved)
{
    struct sq_store *s = sq(base);
    uint64_t total = 0, batch = 0;
    int err;
    do {
        err = redrive_batch(s, now_ms, &batch);
        total += batch;
    } while (err == STORE_OK && batch > 0);
    if (moved)
        *moved = total;
    return err;
}

/* Inside a transaction: dead letter -> gone, order discarded. SQLITE_NOTFOUND when absent. */
static int discard_one(struct sq_store *s, const char *order_id, int64_t now_ms)
{
    int rc = delete_dead_letter_row(s, order_id);
    if (rc != SQLITE_OK)
        return rc;
    sqlite3_stmt *st = wstmt(s, W_DISCARD_ORDER);
    bind_text(st, 1, order_id);
    sqlite3_bind_int64(st, 2, now_ms);
    return exec_stmt(st);
}

static int sq_delete_dead_letter(struct store *base, const char *order_id, int64_t now_ms)
{
    struct sq_store *s = sq(base);
    int err = sq_txn_begin(s, false, "delete dead letter");
    if (err != STORE_OK)
        return err;
    int rc = discard_one(s, order_id, now_ms);
    if (rc == SQLITE_NOTFOUND) {
        sq_txn_abort(s, SQLITE_OK, "delete dead letter");
        return STORE_ENOTFOUND;
    }
    if (rc != SQLITE_OK)
        return sq_txn_abort(s, rc, "delete dead letter");
    err = sq_txn_commit_hold(s, "delete dead letter commit");
    if (err != STORE_OK)
        return err;
    atomic_fetch_sub(&s->dlq_depth, 1);
    sq_writer_unlock(s);
    return STORE_OK;
}

/* ---- the table store.c dispatches through ------------------------------ */

const struct store_ops sq_ops = {
    .name = "sqlite",
    .close = sq_close,
    .enqueue_batch = sq_enqueue_batch,
    .defers_sync = sq_defers_sync,
    .can_lease_on_enqueue = true,
    .sync = sq_sync,
    .get_order = sq_get_order,
    .list_orders = sq_list_orders,
    .idempotency_get = sq_idempotency_get,
    .idempotency_prune = sq_idempotency_prune,
    .stats = sq_stats,
    .put_metrics = sq_put_metrics,
    .writable = sq_writable,
    .claim = sq_claim,
    .settle = sq_settle,
    .release = sq_release,
    .extend_leases = sq_extend_leases,
    .purge_expired = sq_purge_expired,
    .export_orders = sq_export_orders,
    .next_visible_ms = sq_next_visible_ms,
    .list_dead_letters = sq_list_dead_letters,
    .redrive = sq_redrive,
    .redrive_all = sq_redrive_all,
    .delete_dead_letter = sq_delete_dead_letter,
};
