/*
 * store_sqlite_open.c — the SQLite backend's file and connections: the file
 * created 0600, its schema created or migrated (user_version 1 .. 3 to 4),
 * the pragmas (WAL, synchronous, journal_size_limit), the text of every
 * prepared statement and its preparation, the writer connection with its
 * lock and transactions, the pool of read-only connections, the deferred
 * sync of the WAL (sq_sync), the checkpointer thread started and stopped
 * with the store and its WAL metrics, the readiness probe, close, and
 * store_backup(). A store opened read_only (orderd export) has only the
 * readers: see open_read_only(). Every connection goes through the "orderd"
 * VFS, and sq_sync's fdatasync through sqlite_io_fdatasync() (sqlite_io.h:
 * the I/O seam where unit tests make the disk fail). After a stop that was
 * not clean, the file is checked before anything is served: see
 * check_after_unclean_stop().
 *
 * What the tables hold, the states of a message and which thread uses which
 * connection are written once, at the top of store_sqlite.c, which runs the
 * transitions through the statements prepared here.
 *
 * Threads: store_sqlite_open() and sq_close() run on the main thread before
 * and after every other user. The writer's transactions run on any thread
 * that writes (committer, workers, admin and readiness requests), one at a
 * time under write_lock; readers on any thread; sq_sync() on the committer's
 * syncer and on workers, outside write_lock; the checkpointer thread
 * (wal_checkpointer.h) on a connection of its own.
 */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ids.h"
#include "log.h"
#include "metrics.h"
#include "sqlite_io.h"
#include "store_sqlite_int.h"
#include "wal_checkpointer.h"

/* ---- schema ------------------------------------------------------------ */

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

/* ---- statements -------------------------------------------------------- */

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

/* The head of every read of orders (store_sqlite_export.c adds its WHERE). */
const char sq_order_select[] = "SELECT " ORDER_COLUMNS;

const char *const sq_rstmt_sql[R_COUNT] = {
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
int sq_fail(sqlite3 *db, int rc, const char *where)
{
    int err = map_sqlite_error(rc);
    log_error(NULL, "store: %s: %s (sqlite %d)", where, db ? sqlite3_errmsg(db) : sqlite3_errstr(rc),
              rc);
    return err;
}

/* ---- writer ------------------------------------------------------------ */

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

void sq_writer_unlock(struct sq_store *s)
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
int sq_txn_begin(struct sq_store *s, bool durable, const char *where)
{
    /* Read-only (store_options.read_only): every write of the backend starts
     * here, and there is no writer to start it on. */
    if (s->writer == NULL) {
        log_error(NULL, "store: %s: the store was opened read-only", where);
        return STORE_EINTERNAL;
    }
    writer_lock(s);
    bool full = durable && s->durability == DURABILITY_FULL && s->wal_fd < 0;
    int rc = writer_sync(s, full);
    if (rc == SQLITE_OK)
        rc = writer_exec(s, W_BEGIN);
    if (rc != SQLITE_OK) {
        int err = sq_fail(s->writer, rc, where);
        sq_writer_unlock(s);
        return err;
    }
    return STORE_OK;
}

/* Rolls back after an error (if a transaction is still open) and unlocks. */
int sq_txn_abort(struct sq_store *s, int rc, const char *where)
{
    int err = rc == SQLITE_OK ? STORE_EINTERNAL : sq_fail(s->writer, rc, where);
    if (!sqlite3_get_autocommit(s->writer)) {
        int rrc = writer_exec(s, W_ROLLBACK);
        if (rrc != SQLITE_OK)
            log_error(NULL, "store: %s: rollback: %s", where, sqlite3_errmsg(s->writer));
    }
    sq_writer_unlock(s);
    return err;
}

/* Commits and keeps write_lock on success, so the caller updates the depth
 * counters before anyone else writes, then calls sq_writer_unlock(); on failure
 * rolls back and unlocks. */
int sq_txn_commit_hold(struct sq_store *s, const char *where)
{
    int rc = writer_exec(s, W_COMMIT);
    return rc == SQLITE_OK ? STORE_OK : sq_txn_abort(s, rc, where);
}

/* After a commit that delivers messages (enqueue, redrive), write_lock held:
 * with deferred sync, sq_sync() now has something to do. */
void sq_note_commit_to_sync(struct sq_store *s)
{
    if (s->wal_fd >= 0)
        atomic_fetch_add(&s->commits_to_sync, 1);
}

/* Commits and unlocks; on failure rolls back. */
int sq_txn_commit(struct sq_store *s, const char *where)
{
    int rc = writer_exec(s, W_COMMIT);
    if (rc != SQLITE_OK)
        return sq_txn_abort(s, rc, where);
    sq_writer_unlock(s);
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

/*
 * Every connection of the backend — writer, readers, the one that migrates,
 * export's, both ends of store_backup() — is opened here, through the
 * "orderd" VFS (sqlite_io.h): the unix VFS with a seam where unit tests make
 * a write, a sync or an open fail. The checkpointer opens its own the same
 * way (wal_checkpointer.c).
 */
static int open_connection(const char *path, int flags, sqlite3 **out)
{
    sqlite3 *db = NULL;
    int rc = sqlite3_open_v2(path, &db, flags | SQLITE_OPEN_NOMUTEX, sqlite_io_vfs());
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
    return rc == SQLITE_OK ? STORE_OK : sq_fail(db, rc, sql);
}

static int prepare_writer(struct sq_store *s)
{
    for (int i = 0; i < W_COUNT; i++) {
        int rc = sqlite3_prepare_v3(s->writer, wstmt_sql[i], -1, SQLITE_PREPARE_PERSISTENT,
                                    &s->wstmts[i], NULL);
        if (rc != SQLITE_OK)
            return sq_fail(s->writer, rc, wstmt_sql[i]);
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

/* ---- the start check --------------------------------------------------- */

/*
 * After a clean stop the WAL is gone (the last connection to close copies it
 * into the database and deletes it) or empty (sq_destroy's TRUNCATE
 * checkpoint, when another process such as orderd export still had the file
 * open). A WAL with something in it means the last run did not end through
 * store_close(): kill -9, exit 2 after a failed fsync, a crash, a power cut —
 * or another process held the file and wrote. Its size, or 0; read before
 * any connection is opened, since opening creates the file.
 */
static off_t left_behind_wal(const char *wal_path)
{
    struct stat sb;
    return stat(wal_path, &sb) == 0 ? sb.st_size : 0;
}

/*
 * Reads the file front to back once, so that quick_check's reads, page by
 * page in b-tree order, come from the page cache: on a cold cache (after a
 * reboot) the check of 1.2 GB took 1.3-3.4 s this way, 18 s without
 * (docs/durability.md). Not for a file larger than half the memory, which
 * would not stay cached. Errors are left to quick_check, which meets them.
 */
static void read_ahead(const char *path, off_t size)
{
    enum { CHUNK = 1 << 20 };
    long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    if (pages <= 0 || page <= 0 || (double)size > (double)pages * (double)page / 2)
        return;
    char *buf = malloc(CHUNK);
    int fd = buf != NULL ? open(path, O_RDONLY | O_CLOEXEC) : -1;
    if (fd >= 0) {
        (void)posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
        while (read(fd, buf, CHUNK) > 0)
            ;
        close(fd);
    }
    free(buf);
}

/*
 * The start check (docs/durability.md). SQLite recovers from a crash or a
 * power cut by itself: it replays the WAL up to its last complete commit.
 * Damage a power cut does not cause — a failing disk, a drive that lied
 * about a flush, an edit by hand — stays unseen until the damaged page is
 * read, and orderd would serve meanwhile. So after a stop that was not
 * clean, PRAGMA quick_check reads every page of every b-tree once (it does
 * not compare indexes with their tables, as the slower integrity_check
 * does), and the store does not open unless it says "ok": one line, exit 2.
 * A clean start skips it. Called right after the first read of the file,
 * which ran SQLite's recovery of the WAL, so it checks what would be served.
 */
static int check_after_unclean_stop(sqlite3 *db, const char *path, off_t wal_size)
{
    struct stat sb;
    off_t db_size = stat(path, &sb) == 0 ? sb.st_size : 0;
    double started = ids_monotonic_seconds();
    read_ahead(path, db_size);
    char first[200] = "";
    int problems = 0;
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db, "PRAGMA quick_check(10)", -1, &st, NULL);
    while (rc == SQLITE_OK) {
        rc = sqlite3_step(st);
        if (rc != SQLITE_ROW)
            break;
        rc = SQLITE_OK;
        const char *row = (const char *)sqlite3_column_text(st, 0);
        if (row != NULL && strcmp(row, "ok") == 0)
            continue;
        static const char head[] = "*** in database main ***\n";
        if (row != NULL && strncmp(row, head, sizeof(head) - 1) == 0)
            row += sizeof(head) - 1;
        if (problems++ == 0)
            snprintf(first, sizeof(first), "%s", row ? row : "?");
    }
    if (rc == SQLITE_DONE) /* each row a problem, or one "ok" */
        rc = SQLITE_OK;
    else if (problems == 0) /* SQLITE_CORRUPT, IOERR, ... with no row to say why */
        snprintf(first, sizeof(first), "%s", sqlite3_errmsg(db));
    sqlite3_finalize(st);
    double took = ids_monotonic_seconds() - started;
    if (rc == SQLITE_OK && problems == 0) {
        log_info(NULL,
                 "store: %s was not closed cleanly (%lld bytes of WAL left): "
                 "PRAGMA quick_check of %.1f MB ok in %.2f s",
                 path, (long long)wal_size, (double)db_size / 1e6, took);
        return SQLITE_OK;
    }
    /* Closing the last connection would copy the WAL into the file and
     * delete it: the next start would look clean and serve what this one
     * refused. The WAL stays, and so does the refusal. */
    sqlite3_db_config(db, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, NULL);
    for (char *c = first; *c != '\0'; c++) /* one log line */
        if (*c == '\n' || *c == '\r')
            *c = ' ';
    log_error(NULL,
              "store: %s was not closed cleanly and PRAGMA quick_check finds it damaged "
              "(%s%s; %.2f s): refusing to serve from it; restore a backup",
              path, first, problems > 1 ? "; and more" : "", took);
    return rc != SQLITE_OK ? rc : SQLITE_CORRUPT;
}

/*
 * Creates the file if needed, switches it to WAL (after a stop that was not
 * clean: checks it) and migrates it, on a connection of its own that is
 * closed afterwards: a migration may edit sqlite_schema (see migrate_to_2),
 * and the writer and readers opened next read the schema fresh from the file.
 */
static int prepare_file(const char *path, const char *wal_path)
{
    struct stat sb;
    if (stat(path, &sb) != 0 && errno == ENOENT && create_private_file(path, false) != 0)
        return STORE_EOPEN;
    off_t wal_left = left_behind_wal(wal_path);
    sqlite3 *db = NULL;
    if (open_connection(path, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, &db) != SQLITE_OK)
        return STORE_EOPEN;
    int rc = use_wal(db, path);
    if (rc == SQLITE_OK && wal_left > 0)
        rc = check_after_unclean_stop(db, path, wal_left);
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
    if (prepare_file(s->path, s->wal_path) != STORE_OK)
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
            int rc = sqlite3_prepare_v3(r->db, sq_rstmt_sql[j], -1, SQLITE_PREPARE_PERSISTENT,
                                        &r->stmts[j], NULL);
            if (rc != SQLITE_OK) {
                sq_fail(r->db, rc, sq_rstmt_sql[j]);
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
        return sq_fail(db, rc, table_sql);
    atomic_store(out, (uint64_t)n);
    return STORE_OK;
}

static void sq_destroy(struct sq_store *s);

/* ---- read-only (orderd export) ------------------------------------------ */

/*
 * store_options.read_only, for `orderd export` beside a running daemon: the
 * file must exist (nothing is created) and be at SCHEMA_VERSION (nothing is
 * migrated: that is the daemon's job). Then only the pool of read-only
 * connections is opened: no writer, no WAL descriptor, no checkpointer, so
 * every write stops in sq_txn_begin() (STORE_EINTERNAL) and sq_sync() has
 * nothing to do. As for store_backup(), only the file's owner may read it
 * this way: with the daemon stopped, a read-only connection still creates
 * the -wal and -shm files, and made by another user (root) they would lock
 * the daemon out of its own database.
 */
static int check_for_reading(const char *path)
{
    struct stat sb;
    if (stat(path, &sb) != 0) {
        log_error(NULL, "store: cannot read %s: %s", path, strerror(errno));
        return STORE_EOPEN;
    }
    if (sb.st_uid != geteuid()) {
        log_error(NULL, "store: read %s as its owner (uid %u), e.g. runuser -u orderd --", path,
                  (unsigned)sb.st_uid);
        return STORE_EOPEN;
    }
    sqlite3 *db = NULL;
    if (open_connection(path, SQLITE_OPEN_READONLY, &db) != SQLITE_OK)
        return STORE_EOPEN;
    int64_t version = 0;
    int rc = pragma_int(db, "PRAGMA user_version", &version);
    int err = STORE_OK;
    if (rc != SQLITE_OK) {
        sq_fail(db, rc, path);
        err = STORE_EOPEN;
    } else if (version != SCHEMA_VERSION) {
        log_error(NULL, "store: %s has database schema %lld, this orderd reads %d: %s", path,
                  (long long)version, SCHEMA_VERSION,
                  version < SCHEMA_VERSION ? "run the daemon once to migrate it"
                                           : "read it with the orderd that wrote it");
        err = STORE_EOPEN;
    }
    sqlite3_close(db);
    return err;
}

static int open_read_only(struct sq_store *s)
{
    if (check_for_reading(s->path) != STORE_OK || open_readers(s) != STORE_OK ||
        count_rows(s->readers[0].db, "SELECT count(*) FROM queue", &s->queue_depth) != STORE_OK ||
        count_rows(s->readers[0].db, "SELECT count(*) FROM dead_letters", &s->dlq_depth) !=
            STORE_OK)
        return STORE_EOPEN;
    return STORE_OK;
}

/* A read-only connection of the caller's own, on the store's file: one long
 * read transaction (store_sqlite_export.c) must not hold a pooled reader. */
int sq_open_read_connection(struct sq_store *s, sqlite3 **out)
{
    return open_connection(s->path, SQLITE_OPEN_READONLY, out) == SQLITE_OK ? STORE_OK
                                                                            : STORE_EOPEN;
}

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
    if (opts->read_only) {
        if (open_read_only(s) != STORE_OK) {
            sq_destroy(s);
            return STORE_EOPEN;
        }
        *out = &s->base;
        return STORE_OK;
    }
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

void sq_close(struct store *base)
{
    sq_destroy(sq(base));
}

const char *store_sqlite_version(void)
{
    return sqlite3_libversion();
}

/* ---- reader pool ------------------------------------------------------- */

struct reader *sq_reader_acquire(struct sq_store *s)
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

void sq_reader_release(struct sq_store *s, struct reader *r)
{
    pthread_mutex_lock(&s->readers_lock);
    assert(r->busy);
    r->busy = false;
    pthread_cond_signal(&s->reader_free);
    pthread_mutex_unlock(&s->readers_lock);
}

/* ---- deferred sync ----------------------------------------------------- */

bool sq_defers_sync(struct store *base)
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
int sq_sync(struct store *base)
{
    struct sq_store *s = sq(base);
    if (s->wal_fd < 0)
        return STORE_OK;
    uint64_t target = atomic_load(&s->commits_to_sync);
    uint64_t synced = atomic_load(&s->commits_synced);
    if (synced >= target)
        return STORE_OK;
    if (sqlite_io_fdatasync(s->wal_fd, s->wal_path) != 0) { /* fdatasync, or a test's fault */
        log_error(NULL, "store: fdatasync of %s-wal failed: %s; what was committed since the "
                  "last good sync cannot be promised: exiting, so that recovery reads the disk",
                  s->path, strerror(errno));
        _exit(2);
    }
    while (synced < target && !atomic_compare_exchange_weak(&s->commits_synced, &synced, target))
        ;
    return STORE_OK;
}

/* ---- the WAL's metrics and readiness ----------------------------------- */

/* The WAL: a WAL that only grows means checkpoints are held back or failing
 * (etc/prometheus/orderd-alerts.yml, OrderdWalGrowing). */
void sq_put_metrics(struct store *base, struct metrics_sink *sink)
{
    struct sq_store *s = sq(base);
    struct wal_checkpointer_stats cs = {0};
    if (s->checkpointer != NULL) /* none when read-only */
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

/* Readiness (/readyz): one heartbeat row written in a transaction of its own. */
bool sq_writable(struct store *base)
{
    struct sq_store *s = sq(base);
    if (sq_txn_begin(s, false, "readiness") != STORE_OK)
        return false;
    sqlite3_stmt *st = wstmt(s, W_HEARTBEAT);
    sqlite3_bind_int64(st, 1, ids_now_ms());
    int rc = exec_stmt(st);
    if (rc != SQLITE_OK) {
        sq_txn_abort(s, rc, "readiness");
        return false;
    }
    return sq_txn_commit(s, "readiness") == STORE_OK;
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
        err = sq_fail(dst, sqlite3_errcode(dst), "backup init");
        goto out;
    }
    /* One step: the copy is a single read transaction, so it is consistent. */
    int rc = sqlite3_backup_step(b, -1);
    int frc = sqlite3_backup_finish(b);
    if (rc != SQLITE_DONE || frc != SQLITE_OK) {
        err = sq_fail(dst, rc != SQLITE_DONE ? rc : frc, "backup step");
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
