/*
 * store_sqlite.c — the embedded backend of store.h: orders, the queue and the
 * dead letters in one SQLite file in WAL mode.
 *
 * SCHEMA (user_version 4; migrate() brings older files up to it)
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
 * The functions of store.h reach this file through store.c and the table
 * sq_ops at its end; store_backup() and store_sqlite_version() are public here.
 */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ids.h"
#include "log.h"
#include "metrics.h"
#include "store_int.h"
#include "wal_checkpointer.h"

#define SCHEMA_VERSION 4

static const char schema_v1[] =
    "CREATE TABLE orders ("
    "  order_id TEXT PRIMARY KEY,"
    "  customer_id TEXT NOT NULL,"
    "  items TEXT NOT NULL,"
    "  status TEXT NOT NULL CHECK (status IN ('queued','completed','dead_lettered')),"
    "  attempts INTEGER NOT NULL DEFAULT 0,"
    "  created_at INTEGER NOT NULL,"
    "  processed_at INTEGER,"
    "  last_error TEXT,"
    "  traceparent TEXT NOT NULL"
    ") WITHOUT ROWID;"
    "CREATE INDEX orders_by_customer ON orders(customer_id, order_id);"
    "CREATE INDEX orders_by_status ON orders(status, order_id);"
    "CREATE TABLE queue ("
    "  seq INTEGER PRIMARY KEY,"
    "  order_id TEXT NOT NULL UNIQUE,"
    "  enqueued_at INTEGER NOT NULL,"
    "  visible_at INTEGER NOT NULL,"
    "  receive_count INTEGER NOT NULL DEFAULT 0,"
    "  receipt INTEGER,"
    "  last_error TEXT"
    ");"
    "CREATE INDEX queue_by_visible ON queue(visible_at);"
    "CREATE TABLE dead_letters ("
    "  order_id TEXT PRIMARY KEY,"
    "  attempts INTEGER NOT NULL,"
    "  last_error TEXT,"
    "  enqueued_at INTEGER NOT NULL,"
    "  dead_lettered_at INTEGER NOT NULL"
    ") WITHOUT ROWID;"
    "CREATE TABLE idempotency_keys ("
    "  key TEXT PRIMARY KEY,"
    "  request TEXT NOT NULL,"
    "  response TEXT NOT NULL,"
    "  order_id TEXT NOT NULL,"
    "  created_at INTEGER NOT NULL"
    ") WITHOUT ROWID;"
    "CREATE INDEX idempotency_by_age ON idempotency_keys(created_at);"
    "CREATE TABLE heartbeat (id INTEGER PRIMARY KEY, at INTEGER NOT NULL);";

/*
 * Version 2: the same CHECK on orders.status, written as comparisons. SQLite
 * evaluates "status IN (list)" in a CHECK through a temporary table it builds
 * for every statement: ~1.8 us on each insert and status update, a quarter of
 * an order's insert (docs/performance.md). The rule and the stored rows stay
 * the same, so the table is changed in place by the procedure SQLite
 * documents for edits that leave stored content alone (lang_altertable.html,
 * "Making Other Kinds Of Table Schema Changes"): writable_schema, one UPDATE
 * of sqlite_schema, schema_version + 1, all in migrate()'s transaction.
 */
static const char status_check_v1[] = "CHECK (status IN ('queued','completed','dead_lettered'))";
static const char status_check_v2[] =
    "CHECK (status = 'queued' OR status = 'completed' OR status = 'dead_lettered')";

/*
 * Version 3: an order keeps its history through the dead-letter queue
 * (store.h): five columns added by ALTER TABLE (which rewrites no row), and
 * the status 'discarded' for a dead letter an operator deleted. The CHECK
 * gains it in place as in version 2: the rule only gets looser, so every
 * stored row still keeps to it.
 */
static const char status_check_v3[] =
    "CHECK (status = 'queued' OR status = 'completed' OR status = 'dead_lettered' OR "
    "status = 'discarded')";
static const char history_columns_v3[] =
    "ALTER TABLE orders ADD COLUMN redrives INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE orders ADD COLUMN redriven_at INTEGER;"
    "ALTER TABLE orders ADD COLUMN previous_attempts INTEGER;"
    "ALTER TABLE orders ADD COLUMN previous_error TEXT;"
    "ALTER TABLE orders ADD COLUMN discarded_at INTEGER;";

/* Version 4: what an HTTP fulfilment service answered (JSON, at most
 * FULFILMENT_RESULT_MAX bytes), kept with the completed order. */
static const char result_column_v4[] = "ALTER TABLE orders ADD COLUMN fulfilment_result TEXT;";

/* Statements of the writer connection, prepared once. */
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

static const char *const wstmt_sql[W_COUNT] = {
    [W_BEGIN] = "BEGIN IMMEDIATE",
    [W_COMMIT] = "COMMIT",
    [W_ROLLBACK] = "ROLLBACK",
    [W_SYNC_FULL] = "PRAGMA synchronous=FULL",
    [W_SYNC_NORMAL] = "PRAGMA synchronous=NORMAL",
    /* An expired key may be taken again; a live one may not (changes() = 0). */
    [W_INSERT_IDEM] = "INSERT INTO idempotency_keys(key, request, response, order_id, created_at) "
                      "VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT(key) DO UPDATE SET "
                      "request=excluded.request, response=excluded.response, "
                      "order_id=excluded.order_id, created_at=excluded.created_at "
                      "WHERE idempotency_keys.created_at < ?6",
    [W_CLAIM] = "UPDATE queue SET receive_count = receive_count + 1, receipt = ?1, "
                "visible_at = ?2 + ?3 WHERE seq IN (SELECT seq FROM queue WHERE visible_at <= ?2 "
                "ORDER BY visible_at LIMIT ?4) "
                "RETURNING order_id, receive_count, enqueued_at, last_error",
    [W_ORDER_FOR_MESSAGE] = "SELECT customer_id, items, traceparent, created_at FROM orders "
                            "WHERE order_id = ?1",
    [W_COMPLETE_DELETE] = "DELETE FROM queue WHERE order_id = ?1 AND receipt = ?2",
    [W_COMPLETE_ORDER] = "UPDATE orders SET status='completed', attempts=?2, processed_at=?3, "
                         "last_error=NULL, fulfilment_result=?4 WHERE order_id=?1",
    [W_RETRY] = "UPDATE queue SET receipt = NULL, visible_at = ?3, last_error = ?4 "
                "WHERE order_id = ?1 AND receipt = ?2",
    [W_DLQ_DELETE_QUEUE] = "DELETE FROM queue WHERE order_id = ?1 AND receipt = ?2 "
                           "RETURNING enqueued_at",
    [W_DLQ_INSERT] = "INSERT INTO dead_letters(order_id, attempts, last_error, enqueued_at, "
                     "dead_lettered_at) VALUES (?1, ?2, ?3, ?4, ?5)",
    [W_DLQ_ORDER] = "UPDATE orders SET status='dead_lettered', attempts=?2, last_error=?3 "
                    "WHERE order_id=?1",
    [W_RELEASE] = "UPDATE queue SET receipt = NULL, visible_at = ?3, "
                  "receive_count = max(receive_count - 1, 0) WHERE order_id = ?1 AND receipt = ?2",
    [W_EXTEND] = "UPDATE queue SET visible_at = max(visible_at, ?3) "
                 "WHERE order_id = ?1 AND receipt = ?2",
    [W_REDRIVE_QUEUE] = "INSERT INTO queue(order_id, enqueued_at, visible_at) VALUES (?1, ?2, ?2)",
    /* The right-hand sides read the row as it was: the failed run moves to previous_*. */
    [W_REDRIVE_ORDER] = "UPDATE orders SET status='queued', redrives=redrives+1, redriven_at=?2, "
                        "previous_attempts=attempts, previous_error=last_error, attempts=0, "
                        "last_error=NULL WHERE order_id=?1",
    [W_REDRIVE_NEXT] = "SELECT order_id FROM dead_letters LIMIT 500",
    [W_DLQ_DELETE] = "DELETE FROM dead_letters WHERE order_id = ?1",
    [W_DISCARD_ORDER] = "UPDATE orders SET status='discarded', discarded_at=?2 WHERE order_id=?1",
    [W_IDEM_PRUNE] = "DELETE FROM idempotency_keys WHERE created_at < ?1",
    [W_HEARTBEAT] = "INSERT INTO heartbeat(id, at) VALUES (1, ?1) "
                    "ON CONFLICT(id) DO UPDATE SET at=excluded.at",
};

/* Statements of a reader connection. */
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

/* Status as the API shows it: 'processing' is a queued order under a live lease. */
#define ORDER_COLUMNS                                                                     \
    "o.order_id, o.customer_id, o.items, "                                                \
    "CASE WHEN o.status = 'queued' AND q.receipt IS NOT NULL AND q.visible_at > ?1 "      \
    "THEN 'processing' ELSE o.status END AS st, "                                         \
    "CASE WHEN o.status = 'queued' THEN coalesce(q.receive_count, 0) ELSE o.attempts END, " \
    "o.created_at, o.processed_at, coalesce(q.last_error, o.last_error), o.traceparent, " \
    "o.redrives, o.redriven_at, o.previous_attempts, o.previous_error, o.discarded_at, "  \
    "o.fulfilment_result FROM orders o LEFT JOIN queue q ON q.order_id = o.order_id "

/* ?1 now, ?2 cursor (or NULL), ?3 limit, ?4 customer, ?5 stored status, ?6 shown status */
#define LIST_TAIL                                                                         \
    " AND (?2 IS NULL OR o.order_id < ?2) AND (?6 IS NULL OR st = ?6) "                   \
    "ORDER BY o.order_id DESC LIMIT ?3"

static const char *const rstmt_sql[R_COUNT] = {
    [R_GET_ORDER] = "SELECT " ORDER_COLUMNS "WHERE o.order_id = ?2",
    [R_LIST_ALL] = "SELECT " ORDER_COLUMNS "WHERE 1" LIST_TAIL,
    [R_LIST_CUSTOMER] = "SELECT " ORDER_COLUMNS "WHERE o.customer_id = ?4" LIST_TAIL,
    [R_LIST_STATUS] = "SELECT " ORDER_COLUMNS "WHERE o.status = ?5" LIST_TAIL,
    [R_LIST_BOTH] = "SELECT " ORDER_COLUMNS "WHERE o.customer_id = ?4 AND o.status = ?5" LIST_TAIL,
    [R_IDEM_GET] = "SELECT request, response, order_id FROM idempotency_keys "
                   "WHERE key = ?1 AND created_at >= ?2",
    [R_OLDEST] = "SELECT enqueued_at FROM queue ORDER BY seq LIMIT 1",
    [R_NEXT_VISIBLE] = "SELECT min(visible_at) FROM queue",
    [R_DLQ_LIST] = "SELECT d.order_id, o.customer_id, o.items, d.attempts, d.last_error, "
                   "o.created_at, d.dead_lettered_at, o.traceparent FROM dead_letters d "
                   "JOIN orders o ON o.order_id = d.order_id "
                   "WHERE (?1 IS NULL OR d.order_id < ?1) ORDER BY d.order_id DESC LIMIT ?2",
};

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

static const struct store_ops sq_ops;

static struct sq_store *sq(struct store *base)
{
    assert(base->ops == &sq_ops);
    return (struct sq_store *)base;
}

/* ---- errors ------------------------------------------------------------ */

static int map_sqlite_error(int rc)
{
    switch (rc & 0xff) {
    case SQLITE_OK:
    case SQLITE_DONE:
    case SQLITE_ROW:
        return STORE_OK;
    case SQLITE_FULL:
    case SQLITE_READONLY:
    case SQLITE_IOERR:
    case SQLITE_CANTOPEN:
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
    case SQLITE_PROTOCOL:
        return STORE_EUNAVAILABLE;
    case SQLITE_NOMEM:
        return STORE_ENOMEM;
    default:
        return STORE_EINTERNAL;
    }
}

/* Logs rc from db in the place it happened and maps it to a store error. */
static int fail(sqlite3 *db, int rc, const char *where)
{
    int err = map_sqlite_error(rc);
    log_error(NULL, "store: %s: %s (sqlite %d)", where, db ? sqlite3_errmsg(db) : sqlite3_errstr(rc),
              rc);
    return err;
}

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

static int bind_text(sqlite3_stmt *st, int i, const char *s)
{
    return s ? sqlite3_bind_text(st, i, s, -1, SQLITE_STATIC) : sqlite3_bind_null(st, i);
}

/* Steps a statement that returns no row; resets it. */
static int exec_stmt(sqlite3_stmt *st)
{
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return rc == SQLITE_DONE || rc == SQLITE_ROW ? SQLITE_OK : rc;
}

static void done_stmt(sqlite3_stmt *st)
{
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
}

/* ---- writer ------------------------------------------------------------ */

static sqlite3_stmt *wstmt(struct sq_store *s, enum wstmt which)
{
    return s->wstmts[which];
}

static int writer_exec(struct sq_store *s, enum wstmt which)
{
    return exec_stmt(wstmt(s, which));
}

static void writer_lock(struct sq_store *s)
{
    int rc = pthread_mutex_lock(&s->write_lock);
    assert(rc == 0);
    (void)rc;
}

static void writer_unlock(struct sq_store *s)
{
    int rc = pthread_mutex_unlock(&s->write_lock);
    assert(rc == 0);
    (void)rc;
}

/* Sets PRAGMA synchronous for the next transaction; called with write_lock held. */
static int writer_sync(struct sq_store *s, bool full)
{
    if (s->sync_full == full)
        return SQLITE_OK;
    int rc = writer_exec(s, full ? W_SYNC_FULL : W_SYNC_NORMAL);
    if (rc == SQLITE_OK)
        s->sync_full = full;
    return rc;
}

/* Starts a write transaction: write_lock taken, BEGIN IMMEDIATE done. */
static int txn_begin(struct sq_store *s, bool durable, const char *where)
{
    writer_lock(s);
    bool full = durable && s->durability == DURABILITY_FULL && s->wal_fd < 0;
    int rc = writer_sync(s, full);
    if (rc == SQLITE_OK)
        rc = writer_exec(s, W_BEGIN);
    if (rc != SQLITE_OK) {
        int err = fail(s->writer, rc, where);
        writer_unlock(s);
        return err;
    }
    return STORE_OK;
}

/* Rolls back after an error (if a transaction is still open) and unlocks. */
static int txn_abort(struct sq_store *s, int rc, const char *where)
{
    int err = rc == SQLITE_OK ? STORE_EINTERNAL : fail(s->writer, rc, where);
    if (!sqlite3_get_autocommit(s->writer)) {
        int rrc = writer_exec(s, W_ROLLBACK);
        if (rrc != SQLITE_OK)
            log_error(NULL, "store: %s: rollback: %s", where, sqlite3_errmsg(s->writer));
    }
    writer_unlock(s);
    return err;
}

/* Commits and keeps write_lock on success, so the caller updates the depth
 * counters before anyone else writes, then calls writer_unlock(); on failure
 * rolls back and unlocks. */
static int txn_commit_hold(struct sq_store *s, const char *where)
{
    int rc = writer_exec(s, W_COMMIT);
    return rc == SQLITE_OK ? STORE_OK : txn_abort(s, rc, where);
}

/* After a commit that delivers messages (enqueue, redrive), write_lock held:
 * with deferred sync, sq_sync() now has something to do. */
static void note_commit_to_sync(struct sq_store *s)
{
    if (s->wal_fd >= 0)
        atomic_fetch_add(&s->commits_to_sync, 1);
}

/* Commits and unlocks; on failure rolls back. */
static int txn_commit(struct sq_store *s, const char *where)
{
    int rc = writer_exec(s, W_COMMIT);
    if (rc != SQLITE_OK)
        return txn_abort(s, rc, where);
    writer_unlock(s);
    return STORE_OK;
}

/* ---- open / close ------------------------------------------------------ */

static int exec_sql(sqlite3 *db, const char *sql, const char *where)
{
    char *msg = NULL;
    int rc = sqlite3_exec(db, sql, NULL, NULL, &msg);
    if (rc != SQLITE_OK) {
        log_error(NULL, "store: %s: %s", where, msg ? msg : sqlite3_errstr(rc));
        sqlite3_free(msg);
    }
    return rc;
}

/* Creates the file 0600 before SQLite does, so it never exists with looser
 * modes. exclusive: fail if it exists (a backup never overwrites). */
static int create_private_file(const char *path, bool exclusive)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC | (exclusive ? O_EXCL : 0), 0600);
    if (fd < 0) {
        int err = -errno;
        log_error(NULL, "store: cannot create %s: %s", path, strerror(-err));
        return err;
    }
    close(fd);
    return 0;
}

static int pragma_int(sqlite3 *db, const char *sql, int64_t *out)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
    if (rc == SQLITE_OK) {
        rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
            *out = sqlite3_column_int64(st, 0);
            rc = SQLITE_OK;
        } else if (rc == SQLITE_DONE) {
            *out = 0;
            rc = SQLITE_OK;
        }
    }
    sqlite3_finalize(st);
    return rc;
}

static int open_connection(const char *path, int flags, sqlite3 **out)
{
    sqlite3 *db = NULL;
    int rc = sqlite3_open_v2(path, &db, flags | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) {
        log_error(NULL, "store: cannot open %s: %s", path,
                  db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
        sqlite3_close(db);
        return rc;
    }
    sqlite3_extended_result_codes(db, 1);
    sqlite3_busy_timeout(db, STORE_BUSY_TIMEOUT_MS);
    *out = db;
    return SQLITE_OK;
}

/*
 * Inside migrate()'s transaction: replaces the CHECK on orders.status in the
 * stored CREATE TABLE text (see status_check_v2). Ends with writable_schema
 * RESET, which also makes this connection read the schema again, so that a
 * later step (an ALTER TABLE) works on the text as it is now.
 */
static int replace_status_check(sqlite3 *db, const char *from, const char *to, const char *step)
{
    int64_t cookie = 0;
    int rc = pragma_int(db, "PRAGMA schema_version", &cookie);
    if (rc == SQLITE_OK)
        rc = exec_sql(db, "PRAGMA writable_schema = ON", step);
    if (rc != SQLITE_OK)
        return rc;
    sqlite3_stmt *st = NULL;
    rc = sqlite3_prepare_v2(db,
                            "UPDATE sqlite_schema SET sql = replace(sql, ?1, ?2) "
                            "WHERE type = 'table' AND name = 'orders' AND instr(sql, ?1) > 0",
                            -1, &st, NULL);
    if (rc == SQLITE_OK) {
        bind_text(st, 1, from);
        bind_text(st, 2, to);
        rc = sqlite3_step(st) == SQLITE_DONE ? SQLITE_OK : sqlite3_errcode(db);
    }
    sqlite3_finalize(st);
    if (rc == SQLITE_OK && sqlite3_changes(db) != 1) {
        log_error(NULL, "store: %s: the orders table is not the one of the schema before", step);
        rc = SQLITE_CORRUPT;
    }
    char bump[64];
    snprintf(bump, sizeof(bump), "PRAGMA schema_version = %lld", (long long)cookie + 1);
    if (rc == SQLITE_OK)
        rc = exec_sql(db, bump, step);
    int off = exec_sql(db, "PRAGMA writable_schema = RESET", step);
    if (rc == SQLITE_OK)
        rc = off;
    if (rc != SQLITE_OK && rc != SQLITE_CORRUPT)
        log_error(NULL, "store: %s: %s", step, sqlite3_errmsg(db));
    return rc;
}

/* Inside migrate()'s transaction; see status_check_v2. */
static int migrate_to_2(sqlite3 *db)
{
    int rc = replace_status_check(db, status_check_v1, status_check_v2, "migrate to 2");
    if (rc == SQLITE_OK)
        rc = exec_sql(db, "PRAGMA user_version = 2", "migrate to 2");
    return rc;
}

/* Inside migrate()'s transaction; see status_check_v3. */
static int migrate_to_3(sqlite3 *db)
{
    int rc = exec_sql(db, history_columns_v3, "migrate to 3");
    if (rc == SQLITE_OK)
        rc = replace_status_check(db, status_check_v2, status_check_v3, "migrate to 3");
    if (rc == SQLITE_OK)
        rc = exec_sql(db, "PRAGMA user_version = 3", "migrate to 3");
    return rc;
}

/* Inside migrate()'s transaction; see result_column_v4. */
static int migrate_to_4(sqlite3 *db)
{
    int rc = exec_sql(db, result_column_v4, "migrate to 4");
    if (rc == SQLITE_OK)
        rc = exec_sql(db, "PRAGMA user_version = 4", "migrate to 4");
    return rc;
}

static int migrate(sqlite3 *db)
{
    int64_t version = 0;
    int rc = exec_sql(db, "BEGIN IMMEDIATE", "migrate");
    if (rc != SQLITE_OK)
        return rc;
    rc = pragma_int(db, "PRAGMA user_version", &version);
    if (rc == SQLITE_OK && version > SCHEMA_VERSION) {
        log_error(NULL, "store: database schema %lld is newer than this orderd (%d)",
                  (long long)version, SCHEMA_VERSION);
        rc = SQLITE_ERROR;
    }
    if (rc == SQLITE_OK && version < 1) {
        rc = exec_sql(db, schema_v1, "migrate to 1");
        if (rc == SQLITE_OK)
            rc = exec_sql(db, "PRAGMA user_version = 1", "migrate");
    }
    if (rc == SQLITE_OK && version < 2)
        rc = migrate_to_2(db);
    if (rc == SQLITE_OK && version < 3)
        rc = migrate_to_3(db);
    if (rc == SQLITE_OK && version < 4)
        rc = migrate_to_4(db);
    /* Later versions: if (version < 5) { ... } — each step in this transaction. */
    if (rc == SQLITE_OK && version < 1)
        log_info(NULL, "store: created schema version %d", SCHEMA_VERSION);
    else if (rc == SQLITE_OK && version < SCHEMA_VERSION)
        log_info(NULL, "store: migrated the database from schema version %lld to %d",
                 (long long)version, SCHEMA_VERSION);
    if (rc == SQLITE_OK)
        return exec_sql(db, "COMMIT", "migrate");
    exec_sql(db, "ROLLBACK", "migrate");
    return rc;
}

#define INSERT_ORDERS_HEAD \
    "INSERT INTO orders(order_id, customer_id, items, status, created_at, traceparent) VALUES "
#define INSERT_ORDERS_ROW "(?, ?, ?, 'queued', ?, ?)"
#define INSERT_QUEUE_HEAD \
    "INSERT INTO queue(order_id, enqueued_at, visible_at, receive_count, receipt) VALUES "
#define INSERT_QUEUE_ROW "(?, ?, ?, ?, ?)"

/* Prepares "HEAD row, row, ..." with rows rows into *out (at open, not per order). */
static int prepare_rows(sqlite3 *db, const char *head, const char *row, int rows,
                        sqlite3_stmt **out)
{
    char sql[sizeof(INSERT_ORDERS_HEAD) + sizeof(INSERT_QUEUE_HEAD) +
             STORE_INSERT_ROWS_MAX * (sizeof(INSERT_ORDERS_ROW) + sizeof(INSERT_QUEUE_ROW) + 2)];
    int len = snprintf(sql, sizeof(sql), "%s", head);
    for (int i = 0; i < rows && len > 0 && (size_t)len < sizeof(sql); i++)
        len += snprintf(sql + len, sizeof(sql) - (size_t)len, "%s%s", i ? ", " : "", row);
    if (len <= 0 || (size_t)len >= sizeof(sql)) {
        log_error(NULL, "store: the INSERT of %d rows does not fit its buffer", rows);
        return STORE_EINTERNAL;
    }
    int rc = sqlite3_prepare_v3(db, sql, -1, SQLITE_PREPARE_PERSISTENT, out, NULL);
    return rc == SQLITE_OK ? STORE_OK : fail(db, rc, sql);
}

static int prepare_writer(struct sq_store *s)
{
    for (int i = 0; i < W_COUNT; i++) {
        int rc = sqlite3_prepare_v3(s->writer, wstmt_sql[i], -1, SQLITE_PREPARE_PERSISTENT,
                                    &s->wstmts[i], NULL);
        if (rc != SQLITE_OK)
            return fail(s->writer, rc, wstmt_sql[i]);
    }
    for (int k = 1; k <= STORE_INSERT_ROWS_MAX; k++) {
        int err = prepare_rows(s->writer, INSERT_ORDERS_HEAD, INSERT_ORDERS_ROW, k,
                               &s->insert_orders[k]);
        if (err == STORE_OK)
            err = prepare_rows(s->writer, INSERT_QUEUE_HEAD, INSERT_QUEUE_ROW, k,
                               &s->insert_queue[k]);
        if (err != STORE_OK)
            return err;
    }
    return STORE_OK;
}

/* Sets WAL mode (kept in the file) on db; 0 or an error logged. */
static int use_wal(sqlite3 *db, const char *path)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db, "PRAGMA journal_mode=WAL", -1, &st, NULL);
    if (rc == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW &&
        strcmp((const char *)sqlite3_column_text(st, 0), "wal") == 0)
        rc = SQLITE_OK;
    else
        rc = SQLITE_ERROR;
    sqlite3_finalize(st);
    if (rc != SQLITE_OK)
        log_error(NULL, "store: cannot switch %s to WAL mode: %s", path, sqlite3_errmsg(db));
    return rc;
}

/*
 * Creates the file if needed, switches it to WAL and migrates it, on a
 * connection of its own that is closed afterwards: a migration may edit
 * sqlite_schema (see migrate_to_2), and the writer and readers opened next
 * read the schema fresh from the file.
 */
static int prepare_file(const char *path)
{
    struct stat sb;
    if (stat(path, &sb) != 0 && errno == ENOENT && create_private_file(path, false) != 0)
        return STORE_EOPEN;
    sqlite3 *db = NULL;
    if (open_connection(path, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, &db) != SQLITE_OK)
        return STORE_EOPEN;
    int rc = use_wal(db, path);
    if (rc == SQLITE_OK)
        rc = exec_sql(db, "PRAGMA synchronous=FULL", "open");
    if (rc == SQLITE_OK)
        rc = migrate(db);
    if (sqlite3_close(db) != SQLITE_OK)
        log_error(NULL, "store: close after migrating: %s", sqlite3_errmsg(db));
    return rc == SQLITE_OK ? STORE_OK : STORE_EOPEN;
}

/* The WAL file is cut back to STORE_WAL_SIZE_LIMIT when it restarts, so a
 * long read that held checkpoints back does not leave a huge file behind. */
static int limit_wal_size(sqlite3 *db)
{
    char sql[64];
    snprintf(sql, sizeof(sql), "PRAGMA journal_size_limit=%d", STORE_WAL_SIZE_LIMIT);
    return exec_sql(db, sql, "open");
}

/*
 * Checkpoints: every STORE_WAL_CHECKPOINT_PAGES WAL pages (SQLite's default
 * mark, kept on purpose: ten times fewer checkpoints each copied ten times the
 * pages, 30-40 ms at a time), by the checkpointer thread (wal_checkpointer.h)
 * rather than inside the commit that crosses the mark: under the write lock
 * it copies only what was appended while it worked. It turns the writer's
 * automatic checkpoint off.
 */
static int start_checkpointer(struct sq_store *s)
{
    struct wal_checkpointer_options o = {
        .path = s->path,
        .frames = STORE_WAL_CHECKPOINT_PAGES,
        .writer = s->writer,
        .write_lock = &s->write_lock,
    };
    return wal_checkpointer_start(&o, &s->checkpointer) == 0 ? STORE_OK : STORE_EOPEN;
}

static int open_writer(struct sq_store *s)
{
    if (prepare_file(s->path) != STORE_OK)
        return STORE_EOPEN;
    if (open_connection(s->path, SQLITE_OPEN_READWRITE, &s->writer) != SQLITE_OK ||
        use_wal(s->writer, s->path) != SQLITE_OK ||
        exec_sql(s->writer, "PRAGMA synchronous=FULL", "open") != SQLITE_OK ||
        limit_wal_size(s->writer) != SQLITE_OK)
        return STORE_EOPEN;
    s->sync_full = true;
    return prepare_writer(s) == STORE_OK ? STORE_OK : STORE_EOPEN;
}

static int open_readers(struct sq_store *s)
{
    for (int i = 0; i < STORE_READERS; i++) {
        struct reader *r = &s->readers[i];
        if (open_connection(s->path, SQLITE_OPEN_READONLY, &r->db) != SQLITE_OK)
            return STORE_EOPEN;
        for (int j = 0; j < R_COUNT; j++) {
            int rc = sqlite3_prepare_v3(r->db, rstmt_sql[j], -1, SQLITE_PREPARE_PERSISTENT,
                                        &r->stmts[j], NULL);
            if (rc != SQLITE_OK) {
                fail(r->db, rc, rstmt_sql[j]);
                return STORE_EOPEN;
            }
        }
    }
    return STORE_OK;
}

static int count_rows(sqlite3 *db, const char *table_sql, _Atomic uint64_t *out)
{
    int64_t n = 0;
    int rc = pragma_int(db, table_sql, &n);
    if (rc != SQLITE_OK)
        return fail(db, rc, table_sql);
    atomic_store(out, (uint64_t)n);
    return STORE_OK;
}

static void sq_destroy(struct sq_store *s);

/*
 * With durability full, intake commits are made durable by sq_sync() outside
 * the write lock, so the next batch (and the workers) can write while the WAL
 * is being fsync'd. fdatasync() through a descriptor of our own flushes what
 * SQLite wrote through its own (Linux syncs the file, not the descriptor). The
 * WAL file exists once the writer has read the database in WAL mode and stays
 * (same inode; a checkpoint may truncate it) while our connections are open.
 */
static int open_wal_for_sync(struct sq_store *s)
{
    if (s->durability != DURABILITY_FULL)
        return STORE_OK;
    s->wal_fd = open(s->wal_path, O_RDONLY | O_CLOEXEC);
    if (s->wal_fd < 0) {
        log_error(NULL, "store: cannot open %s: %s", s->wal_path, strerror(errno));
        return STORE_EOPEN;
    }
    return STORE_OK;
}

int store_sqlite_open(const struct store_options *opts, struct store **out)
{
    struct sq_store *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return STORE_ENOMEM;
    s->base.ops = &sq_ops;
    s->durability = opts->durability;
    s->wal_fd = -1;
    s->path = strdup(opts->path);
    if (s->path == NULL)
        goto fail_alloc;
    if (asprintf(&s->wal_path, "%s-wal", s->path) < 0) {
        s->wal_path = NULL; /* undefined after a failure */
        goto fail_alloc;
    }
    if (pthread_mutex_init(&s->write_lock, NULL) != 0)
        goto fail_alloc;
    if (pthread_mutex_init(&s->readers_lock, NULL) != 0)
        goto fail_write_lock;
    if (pthread_cond_init(&s->reader_free, NULL) != 0)
        goto fail_readers_lock;
    if (open_writer(s) != STORE_OK || open_readers(s) != STORE_OK || open_wal_for_sync(s) != STORE_OK ||
        start_checkpointer(s) != STORE_OK ||
        count_rows(s->writer, "SELECT count(*) FROM queue", &s->queue_depth) != STORE_OK ||
        count_rows(s->writer, "SELECT count(*) FROM dead_letters", &s->dlq_depth) != STORE_OK) {
        sq_destroy(s);
        return STORE_EOPEN;
    }
    *out = &s->base;
    return STORE_OK;

fail_readers_lock:
    pthread_mutex_destroy(&s->readers_lock);
fail_write_lock:
    pthread_mutex_destroy(&s->write_lock);
fail_alloc:
    free(s->wal_path);
    free(s->path);
    free(s);
    return STORE_ENOMEM;
}

static void close_db(sqlite3 *db, sqlite3_stmt **stmts, int n)
{
    for (int i = 0; i < n; i++) {
        sqlite3_finalize(stmts[i]);
        stmts[i] = NULL;
    }
    if (db != NULL && sqlite3_close(db) != SQLITE_OK)
        log_error(NULL, "store: close: %s", sqlite3_errmsg(db));
}

static void sq_destroy(struct sq_store *s)
{
    for (int i = 0; i < STORE_READERS; i++)
        close_db(s->readers[i].db, s->readers[i].stmts, R_COUNT);
    wal_checkpointer_stop(s->checkpointer);
    if (s->writer != NULL) {
        /* A clean checkpoint so that the next start replays nothing. */
        int rc = sqlite3_wal_checkpoint_v2(s->writer, NULL, SQLITE_CHECKPOINT_TRUNCATE, NULL,
                                           NULL);
        if (rc != SQLITE_OK)
            log_warn(NULL, "store: final checkpoint: %s", sqlite3_errmsg(s->writer));
    }
    close_db(NULL, s->insert_orders, STORE_INSERT_ROWS_MAX + 1);
    close_db(NULL, s->insert_queue, STORE_INSERT_ROWS_MAX + 1);
    close_db(s->writer, s->wstmts, W_COUNT);
    if (s->wal_fd >= 0)
        close(s->wal_fd);
    pthread_cond_destroy(&s->reader_free);
    pthread_mutex_destroy(&s->readers_lock);
    pthread_mutex_destroy(&s->write_lock);
    free(s->wal_path);
    free(s->path);
    free(s);
}

static void sq_close(struct store *base)
{
    sq_destroy(sq(base));
}

const char *store_sqlite_version(void)
{
    return sqlite3_libversion();
}

/* ---- reader pool ------------------------------------------------------- */

static struct reader *reader_acquire(struct sq_store *s)
{
    pthread_mutex_lock(&s->readers_lock);
    for (;;) {
        for (int i = 0; i < STORE_READERS; i++) {
            if (!s->readers[i].busy) {
                s->readers[i].busy = true;
                pthread_mutex_unlock(&s->readers_lock);
                return &s->readers[i];
            }
        }
        pthread_cond_wait(&s->reader_free, &s->readers_lock);
    }
}

static void reader_release(struct sq_store *s, struct reader *r)
{
    pthread_mutex_lock(&s->readers_lock);
    assert(r->busy);
    r->busy = false;
    pthread_cond_signal(&s->reader_free);
    pthread_mutex_unlock(&s->readers_lock);
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
    int err = txn_begin(s, true, "enqueue");
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
        err = txn_abort(s, rc, "enqueue");
        goto fail_all;
    }
    err = txn_commit_hold(s, "enqueue commit");
    if (err != STORE_OK)
        goto fail_all;
    note_commit_to_sync(s);
    atomic_fetch_add(&s->queue_depth, added);
    writer_unlock(s);
    return STORE_OK;

fail_all:
    for (size_t i = 0; i < n; i++)
        orders[i].result = err;
    return err;
}

/* ---- reads ------------------------------------------------------------- */

static int read_order_row(sqlite3_stmt *st, struct store_order *o)
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
    struct reader *r = reader_acquire(s);
    sqlite3_stmt *st = r->stmts[R_GET_ORDER];
    sqlite3_bind_int64(st, 1, now_ms);
    bind_text(st, 2, order_id);
    int rc = sqlite3_step(st);
    int err;
    if (rc == SQLITE_ROW)
        err = read_order_row(st, out);
    else if (rc == SQLITE_DONE)
        err = STORE_ENOTFOUND;
    else
        err = fail(r->db, rc, "get order");
    done_stmt(st);
    reader_release(s, r);
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
    struct reader *r = reader_acquire(s);
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
        err = read_order_row(st, &rows[count]);
        if (err != STORE_OK)
            break;
        count++;
    }
    if (err == STORE_OK && count < f->limit && rc != SQLITE_DONE)
        err = fail(r->db, rc, "list orders");
    done_stmt(st);
    reader_release(s, r);
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
    struct reader *r = reader_acquire(s);
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
        err = fail(r->db, rc, "idempotency get");
    }
    done_stmt(st);
    reader_release(s, r);
    return err;
}

static int sq_idempotency_prune(struct store *base, int64_t now_ms, uint64_t *deleted)
{
    struct sq_store *s = sq(base);
    int err = txn_begin(s, false, "idempotency prune");
    if (err != STORE_OK)
        return err;
    sqlite3_stmt *st = wstmt(s, W_IDEM_PRUNE);
    sqlite3_bind_int64(st, 1, now_ms - (int64_t)IDEMPOTENCY_TTL_S * 1000);
    int rc = exec_stmt(st);
    if (rc != SQLITE_OK)
        return txn_abort(s, rc, "idempotency prune");
    if (deleted)
        *deleted = (uint64_t)sqlite3_changes(s->writer);
    return txn_commit(s, "idempotency prune");
}

/* Runs a one-integer query on a reader; *found false when it returned NULL. */
static int reader_int(struct sq_store *s, enum rstmt which, int64_t *value, bool *found)
{
    struct reader *r = reader_acquire(s);
    sqlite3_stmt *st = r->stmts[which];
    int rc = sqlite3_step(st);
    int err = STORE_OK;
    *found = false;
    if (rc == SQLITE_ROW && sqlite3_column_type(st, 0) != SQLITE_NULL) {
        *value = sqlite3_column_int64(st, 0);
        *found = true;
    } else if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
        err = fail(r->db, rc, rstmt_sql[which]);
    }
    done_stmt(st);
    reader_release(s, r);
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

/* The WAL: a WAL that only grows means checkpoints are held back or failing
 * (etc/prometheus/orderd-alerts.yml, OrderdWalGrowing). */
static void sq_put_metrics(struct store *base, struct metrics_sink *sink)
{
    struct sq_store *s = sq(base);
    struct wal_checkpointer_stats cs;
    wal_checkpointer_stats(s->checkpointer, &cs);
    struct stat wal;
    struct metrics_sample size = {
        .family = "orderd_storage_wal_bytes",
        .type = "gauge",
        .help = "Size of the SQLite write-ahead log file; checkpoints bring it back to the same size.",
        .value = stat(s->wal_path, &wal) == 0 ? (uint64_t)wal.st_size : 0,
    };
    metrics_sink_put(sink, &size);
    const char *labels[] = {"result=\"completed\"", "result=\"partial\"", "result=\"failed\""};
    uint64_t values[] = {cs.completed, cs.partial, cs.failed};
    for (size_t i = 0; i < 3; i++) {
        struct metrics_sample checkpoints = {
            .family = "orderd_storage_checkpoints_total",
            .type = "counter",
            .help = "WAL checkpoints by result: completed (the whole WAL copied into the database), "
                    "partial (a reader's snapshot or another checkpoint held part back), failed.",
            .labels = labels[i],
            .value = values[i],
        };
        metrics_sink_put(sink, &checkpoints);
    }
}

static bool sq_writable(struct store *base)
{
    struct sq_store *s = sq(base);
    if (txn_begin(s, false, "readiness") != STORE_OK)
        return false;
    sqlite3_stmt *st = wstmt(s, W_HEARTBEAT);
    sqlite3_bind_int64(st, 1, ids_now_ms());
    int rc = exec_stmt(st);
    if (rc != SQLITE_OK) {
        txn_abort(s, rc, "readiness");
        return false;
    }
    return txn_commit(s, "readiness") == STORE_OK;
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

    int err = txn_begin(s, false, "claim");
    if (err != STORE_OK)
        return err;
    int rc = run_claim(s, receipt, now_ms, visibility_timeout_ms, rows, max, &nrows);
    for (size_t i = 0; rc == SQLITE_OK && i < nrows; i++)
        rc = claim_one(s, &rows[i], receipt, max_receives, now_ms, out, n, &dead);
    for (size_t i = 0; i < nrows; i++)
        free(rows[i].last_error);
    err = rc == SQLITE_OK ? txn_commit_hold(s, "claim commit") : txn_abort(s, rc, "claim");
    if (err != STORE_OK) {
        for (size_t i = 0; i < *n; i++)
            store_message_clear(&out[i]);
        *n = 0;
        return err;
    }
    atomic_fetch_sub(&s->queue_depth, dead);
    atomic_fetch_add(&s->dlq_depth, dead);
    writer_unlock(s);
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
    int err = txn_begin(s, false, "settle");
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
    err = rc == SQLITE_OK ? txn_commit_hold(s, "settle commit") : txn_abort(s, rc, "settle");
    if (err != STORE_OK)
        return err;
    atomic_fetch_sub(&s->queue_depth, removed + dead);
    atomic_fetch_add(&s->dlq_depth, dead);
    writer_unlock(s);
    return STORE_OK;
}

static int sq_release(struct store *base, const struct store_message *msgs, size_t n,
                      int64_t now_ms)
{
    struct sq_store *s = sq(base);
    int err = txn_begin(s, false, "release");
    if (err != STORE_OK)
        return err;
    int64_t now = now_ms;
    int rc = SQLITE_OK;
    for (size_t i = 0; rc == SQLITE_OK && i < n; i++) {
        sqlite3_stmt *st = wstmt(s, W_RELEASE);
        bind_text(st, 1, msgs[i].order_id);
        sqlite3_bind_int64(st, 2, msgs[i].receipt);
        sqlite3_bind_int64(st, 3, now);
        rc = exec_stmt(st);
    }
    return rc == SQLITE_OK ? txn_commit(s, "release commit") : txn_abort(s, rc, "release");
}

static int sq_extend_leases(struct store *base, struct store_lease *items, size_t n,
                            int64_t now_ms, int64_t visibility_timeout_ms)
{
    struct sq_store *s = sq(base);
    int err = txn_begin(s, false, "extend leases");
    if (err != STORE_OK)
        return err;
    int rc = SQLITE_OK;
    for (size_t i = 0; rc == SQLITE_OK && i < n; i++) {
        sqlite3_stmt *st = wstmt(s, W_EXTEND);
        bind_text(st, 1, items[i].order_id);
        sqlite3_bind_int64(st, 2, items[i].receipt);
        sqlite3_bind_int64(st, 3, now_ms + visibility_timeout_ms);
        rc = exec_stmt(st);
        items[i].result = sqlite3_changes(s->writer) == 0 ? STORE_ESTALE : STORE_OK;
    }
    return rc == SQLITE_OK ? txn_commit(s, "extend leases commit")
                           : txn_abort(s, rc, "extend leases");
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
    struct reader *r = reader_acquire(s);
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
        err = fail(r->db, rc, "list dead letters");
    done_stmt(st);
    reader_release(s, r);
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
    int err = txn_begin(s, false, "redrive");
    if (err != STORE_OK)
        return err;
    int rc = redrive_one(s, order_id, now_ms);
    if (rc == SQLITE_NOTFOUND) {
        txn_abort(s, SQLITE_OK, "redrive");
        return STORE_ENOTFOUND;
    }
    if (rc != SQLITE_OK)
        return txn_abort(s, rc, "redrive");
    err = txn_commit_hold(s, "redrive commit");
    if (err == STORE_OK) {
        note_commit_to_sync(s);
        atomic_fetch_sub(&s->dlq_depth, 1);
        atomic_fetch_add(&s->queue_depth, 1);
        writer_unlock(s);
    }
    return err;
}

/* One batch of redrive-all; *moved gets how many, 0 when the table is empty. */
static int redrive_batch(struct sq_store *s, int64_t now_ms, uint64_t *moved)
{
    char ids[500][ID_ULID_LEN + 1];
    size_t n = 0;
    *moved = 0;
    int err = txn_begin(s, false, "redrive all");
    if (err != STORE_OK)
        return err;
    sqlite3_stmt *st = wstmt(s, W_REDRIVE_NEXT);
    int rc = SQLITE_DONE;
    while (n < 500 && (rc = sqlite3_step(st)) == SQLITE_ROW)
        copy_column(st, 0, ids[n++], sizeof(ids[0]));
    done_stmt(st);
    if (n < 500 && rc != SQLITE_DONE)
        return txn_abort(s, rc, "redrive all");
    rc = SQLITE_OK;
    for (size_t i = 0; rc == SQLITE_OK && i < n; i++)
        rc = redrive_one(s, ids[i], now_ms);
    if (rc != SQLITE_OK)
        return txn_abort(s, rc, "redrive all");
    err = txn_commit_hold(s, "redrive all commit");
    if (err == STORE_OK) {
        note_commit_to_sync(s);
        atomic_fetch_sub(&s->dlq_depth, n);
        atomic_fetch_add(&s->queue_depth, n);
        writer_unlock(s);
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
    int err = txn_begin(s, false, "delete dead letter");
    if (err != STORE_OK)
        return err;
    int rc = discard_one(s, order_id, now_ms);
    if (rc == SQLITE_NOTFOUND) {
        txn_abort(s, SQLITE_OK, "delete dead letter");
        return STORE_ENOTFOUND;
    }
    if (rc != SQLITE_OK)
        return txn_abort(s, rc, "delete dead letter");
    err = txn_commit_hold(s, "delete dead letter commit");
    if (err != STORE_OK)
        return err;
    atomic_fetch_sub(&s->dlq_depth, 1);
    writer_unlock(s);
    return STORE_OK;
}

/* ---- maintenance ------------------------------------------------------- */

int store_backup(const char *db_path, const char *dest_path)
{
    struct stat sb;
    if (stat(db_path, &sb) != 0) {
        log_error(NULL, "backup: cannot read %s: %s", db_path, strerror(errno));
        return STORE_EOPEN;
    }
    /* Opening a WAL database may create -wal/-shm files; made by another user
     * (root) they would lock the daemon out of its own database. */
    if (sb.st_uid != geteuid()) {
        log_error(NULL, "backup: run as the owner of %s (uid %u), e.g. runuser -u orderd --",
                  db_path, (unsigned)sb.st_uid);
        return STORE_EOPEN;
    }
    int crc = create_private_file(dest_path, true);
    if (crc != 0) {
        if (crc == -EEXIST)
            log_error(NULL, "backup: %s exists; refusing to overwrite it", dest_path);
        return STORE_EOPEN;
    }
    sqlite3 *src = NULL, *dst = NULL;
    int err = STORE_EOPEN;
    if (open_connection(db_path, SQLITE_OPEN_READONLY, &src) != SQLITE_OK)
        goto out;
    if (open_connection(dest_path, SQLITE_OPEN_READWRITE, &dst) != SQLITE_OK)
        goto out;
    sqlite3_backup *b = sqlite3_backup_init(dst, "main", src, "main");
    if (b == NULL) {
        err = fail(dst, sqlite3_errcode(dst), "backup init");
        goto out;
    }
    /* One step: the copy is a single read transaction, so it is consistent. */
    int rc = sqlite3_backup_step(b, -1);
    int frc = sqlite3_backup_finish(b);
    if (rc != SQLITE_DONE || frc != SQLITE_OK) {
        err = fail(dst, rc != SQLITE_DONE ? rc : frc, "backup step");
        goto out;
    }
    err = exec_sql(dst, "PRAGMA journal_mode=DELETE", "backup") == SQLITE_OK ? STORE_OK
                                                                             : STORE_EINTERNAL;
out:
    sqlite3_close(dst);
    sqlite3_close(src);
    if (err != STORE_OK)
        unlink(dest_path);
    return err;
}

/* ---- the table store.c dispatches through ------------------------------ */

/* ---- deferred sync ----------------------------------------------------- */

static bool sq_defers_sync(struct store *base)
{
    return sq(base)->wal_fd >= 0;
}

/*
 * Every commit counted before the fdatasync() began had finished writing its
 * WAL frames, so it is durable when the call returns. Callers may overlap: the
 * committer's syncer and a worker about to run a fulfilment command.
 *
 * A failed fdatasync ends the process. The kernel may have dropped the pages
 * it could not write and a later fdatasync may well succeed, so nothing
 * committed since the last good sync can be promised from here on; nothing
 * unsynced was acknowledged, and after a restart SQLite recovers from what is
 * on the disk (what PostgreSQL does too). _exit: the other threads' state
 * is not to be trusted or flushed.
 */
static int sq_sync(struct store *base)
{
    struct sq_store *s = sq(base);
    if (s->wal_fd < 0)
        return STORE_OK;
    uint64_t target = atomic_load(&s->commits_to_sync);
    uint64_t synced = atomic_load(&s->commits_synced);
    if (synced >= target)
        return STORE_OK;
    if (fdatasync(s->wal_fd) != 0) {
        log_error(NULL, "store: fdatasync of %s-wal failed: %s; what was committed since the "
                  "last good sync cannot be promised: exiting, so that recovery reads the disk",
                  s->path, strerror(errno));
        _exit(2);
    }
    while (synced < target && !atomic_compare_exchange_weak(&s->commits_synced, &synced, target))
        ;
    return STORE_OK;
}

/* ---- the table store.c dispatches through ------------------------------ */

static const struct store_ops sq_ops = {
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
    .next_visible_ms = sq_next_visible_ms,
    .list_dead_letters = sq_list_dead_letters,
    .redrive = sq_redrive,
    .redrive_all = sq_redrive_all,
    .delete_dead_letter = sq_delete_dead_letter,
};
