/*
 * store_pg.c — the PostgreSQL backend of store.h: the same orders, queue and
 * dead letters as store_sqlite.c, in one database that several orderd nodes
 * share behind a load balancer. Chosen by [storage] backend = postgres; the
 * connection is [storage] dsn (a libpq connection string or URI).
 *
 * SCHEMA (schema_version 3) — store_sqlite.c's, column for column
 *
 *   orders(order_id PK, customer_id, items, status, attempts, created_at,
 *          processed_at, last_error, traceparent, redrives, redriven_at,
 *          previous_attempts, previous_error, discarded_at, fulfilment_result)
 *   queue(seq PK, order_id UNIQUE, enqueued_at, visible_at, receive_count,
 *         receipt, last_error)
 *   dead_letters(order_id PK, attempts, last_error, enqueued_at, dead_lettered_at)
 *   idempotency_keys(key PK, request, response, order_id, created_at)
 *   heartbeat(id PK, at) — the one row readiness probes write.
 *   queue_stats(slot PK, queue, dlq) — STORE_PG_STATS_SLOTS rows whose sums
 *       are the queue and dead-letter depths (see COUNTERS).
 *   schema_version(version) — one row.
 *
 *   Times are BIGINT ms since the epoch passed in by the caller (now_ms), as
 *   in SQLite: a lease is "visible_at = now + lease" by the claiming node's
 *   clock, so the nodes' clocks must agree (NTP) to well within a lease.
 *   Ids and keys are text COLLATE "C", so that ULIDs sort and page
 *   the same whatever the database's locale. status is 'queued' |
 *   'completed' | 'dead_lettered' | 'discarded'; "processing" is derived
 *   exactly as in SQLite: a queued order whose message holds a live lease.
 *   Version 2 added the order's history through the dead-letter queue
 *   (redrives .. discarded_at, and 'discarded'), as SQLite's version 3;
 *   version 3 the fulfilment service's answer (fulfilment_result), as
 *   SQLite's version 4.
 *
 * STATES AND TRANSITIONS are those written at the top of store_sqlite.c, with
 * the same fencing: settle and release act only under the current receipt
 * (else STORE_ESTALE). Each transition below is ONE statement — data-modifying
 * CTEs — so it is one round trip and one (implicit) transaction:
 *
 *   enqueue   unnest() of arrays: idempotency keys (INSERT ... ON CONFLICT DO
 *             UPDATE ... WHERE expired RETURNING), orders, queue rows and the
 *             depth counter, for the whole batch.
 *   claim     SELECT ... WHERE visible_at <= now ORDER BY visible_at LIMIT n
 *             FOR UPDATE SKIP LOCKED (a MATERIALIZED CTE, so that it runs once),
 *             then UPDATE queue ... FROM it RETURNING, joined to the orders:
 *             nodes never take the same message and never wait for each
 *             other. A message whose receive count passed max_receives (its
 *             last lease expired) is then dead-lettered by a second statement
 *             under the same receipt; between the two it is merely leased, so
 *             a crash there only delays the dead-lettering.
 *   settle    completed / retry / dead letter for the whole batch at once;
 *             the rows it returns are the settlements whose receipt matched.
 *   release, extend leases (the rows still under their receipt), redrive
 *             (one, or batches of 500 with SKIP LOCKED; the order's failed run
 *             moves to previous_*), delete (the order: discarded).
 *
 * MAX_DEPTH. The enqueue statement reads the depth (the sum of queue_stats)
 * and writes nothing when depth + batch > max_depth; the batch is then
 * retried in an explicit transaction, order by order, which gives each its
 * own STORE_OK / STORE_EQUEUEFULL / STORE_ECONFLICT exactly as SQLite does.
 * Near the limit the depth is approximate across nodes: two nodes that read it
 * at once may together overshoot by up to one batch each. max_depth guards
 * the disk; it is not a precise quota.
 *
 * COUNTERS. Depths must be cheap to read (every /metrics scrape, every batch)
 * and exact: no count(*) of a big table. Each transaction that changes the
 * number of queued or dead-lettered messages adds its delta to one row of
 * queue_stats in the same transaction. The row is the connection's slot:
 * each connection takes a free one at connect with a session advisory lock
 * (pg_try_advisory_lock(STORE_PG_SLOT_NS, slot)), which the server releases
 * when the connection ends, even by a crash. So no two connections of any
 * nodes write the same row and never wait for each other (beyond
 * STORE_PG_STATS_SLOTS connections they share: slower, still exact); a
 * reader sums 128 small rows. The delta is updated last in each statement,
 * so a row lock is held only until the commit that follows.
 *
 * MIGRATIONS run at open in one transaction that first takes
 * pg_advisory_xact_lock(STORE_PG_LOCK_ID): nodes that start together apply
 * each step once, the others wait and then find it done. A database whose
 * schema is newer than this orderd is refused.
 *
 * DURABILITY. A 202 is sent only after the COMMIT of its batch returned. The
 * intake connection keeps synchronous_commit as the server has it (on, the
 * default; remote_apply etc. are kept), forcing off to on, when durability is
 * full; with durability normal it runs with synchronous_commit = off.
 * Every other connection (claims, settlements, admin) runs with
 * synchronous_commit = off, the reasoning of SQLite's NORMAL: the WAL is
 * flushed within wal_writer_delay and by the next synchronous commit, and a
 * lost settlement is only a redelivery.
 *
 * THREADS AND CONNECTIONS. One intake connection behind intake_lock (the
 * committer is its one caller), plus a pool of STORE_PG_POOL connections lent
 * to one caller at a time for everything else: workers' claims and
 * settlements, HTTP reads, admin and housekeeping. No lock is held in orderd
 * while another connection works: the database orders concurrent writers
 * (row locks, SKIP LOCKED). Each connection has its prepared statements.
 *
 * PLANS. The queue is empty at first, then may hold a backlog of millions: a
 * plan cached while it was small (a full scan of a "one-row" table) would
 * stay and turn each claim into a scan of the backlog. So the pool's
 * connections plan every execution anew (plan_cache_mode =
 * force_custom_plan), statements on queue rows name their ids in an
 * indexable "order_id = ANY ($1)", and the node's queue VACUUM also ANALYZEs.
 * The intake statement only inserts: its cached plan does not depend on sizes.
 *
 * VACUUM. Each message leaves dead index entries where every claim starts its
 * scan; autovacuum comes at most once a minute. So each node vacuums the
 * queue table itself every STORE_PG_VACUUM_EVERY messages it settles,
 * without waiting for it (vacuum_now_and_then). The big tables (orders,
 * idempotency_keys) are left to autovacuum.
 *
 * WHEN THE DATABASE GOES AWAY. A statement that fails because the server is
 * gone, shutting down, read-only (a standby after a failover), out of disk
 * or of connections returns STORE_EUNAVAILABLE (HTTP 503; workers retry).
 * A broken connection is closed and reopened on the next call that needs it;
 * an idle one that the server closed meanwhile (a restart sends each client
 * a FATAL message and closes it) is noticed before it is used, so the first
 * requests after the database is back do not fail on it.
 * After a failed connect, no connect is tried before a backoff
 * (STORE_PG_BACKOFF_MIN_MS doubling to _MAX_MS) and only one caller at a
 * time tries: the others get STORE_EUNAVAILABLE at once instead of waiting
 * for connect_timeout. Nothing is retried blindly: a write whose COMMIT got no
 * answer returns STORE_EUNAVAILABLE — never a 202 — so an acknowledged order
 * is never lost (the client may retry, with its Idempotency-Key).
 *
 * OTHER NODES. A node's workers are woken by its own committer; orders that
 * other nodes accept (or messages whose lease a dead node held) are found by
 * polling: store_next_visible_ms() answers at most STORE_PG_POLL_MS ahead.
 */
#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <libpq-fe.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ids.h"
#include "log.h"
#include "store_int.h"
#include "strbuf.h"

#define SCHEMA_VERSION 3
#define STORE_PG_LOCK_ID "8030604196226347009" /* 0x6f72646572640001: "orderd" 0 1 */
#define STORE_PG_SLOT_NS "1869767794"          /* 0x6f726472: "ordr", with the slot */
#define REDRIVE_BATCH 500
#define CURSOR_NONE "~" /* sorts after every ULID in COLLATE "C": "no cursor" */

static const char schema_v1[] =
    "CREATE TABLE orders ("
    "  order_id text COLLATE \"C\" PRIMARY KEY,"
    "  customer_id text COLLATE \"C\" NOT NULL,"
    "  items text NOT NULL,"
    "  status text NOT NULL CHECK (status IN ('queued','completed','dead_lettered')),"
    "  attempts integer NOT NULL DEFAULT 0,"
    "  created_at bigint NOT NULL,"
    "  processed_at bigint,"
    "  last_error text,"
    "  traceparent text NOT NULL"
    ");"
    "CREATE INDEX orders_by_customer ON orders (customer_id, order_id);"
    "CREATE INDEX orders_by_status ON orders (status, order_id);"
    "CREATE TABLE queue ("
    "  seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
    "  order_id text COLLATE \"C\" NOT NULL UNIQUE,"
    "  enqueued_at bigint NOT NULL,"
    "  visible_at bigint NOT NULL,"
    "  receive_count integer NOT NULL DEFAULT 0,"
    "  receipt bigint,"
    "  last_error text"
    ") WITH (autovacuum_vacuum_scale_factor = 0.02, autovacuum_vacuum_threshold = 1000);"
    "CREATE INDEX queue_by_visible ON queue (visible_at);"
    "CREATE TABLE dead_letters ("
    "  order_id text COLLATE \"C\" PRIMARY KEY,"
    "  attempts integer NOT NULL,"
    "  last_error text,"
    "  enqueued_at bigint NOT NULL,"
    "  dead_lettered_at bigint NOT NULL"
    ");"
    "CREATE TABLE idempotency_keys ("
    "  key text COLLATE \"C\" PRIMARY KEY,"
    "  request text NOT NULL,"
    "  response text NOT NULL,"
    "  order_id text COLLATE \"C\" NOT NULL,"
    "  created_at bigint NOT NULL"
    ");"
    "CREATE INDEX idempotency_by_age ON idempotency_keys (created_at);"
    "CREATE TABLE heartbeat (id integer PRIMARY KEY, at bigint NOT NULL);"
    /* Updated by every write: room on each page for HOT updates, vacuumed often. */
    "CREATE TABLE queue_stats ("
    "  slot integer PRIMARY KEY,"
    "  queue bigint NOT NULL DEFAULT 0,"
    "  dlq bigint NOT NULL DEFAULT 0"
    ") WITH (fillfactor = 50, autovacuum_vacuum_scale_factor = 0,"
    "        autovacuum_vacuum_threshold = 1000);"
    "INSERT INTO queue_stats (slot) SELECT generate_series(0, 127);";

/*
 * Version 2: the order's history through the dead-letter queue (store.h).
 * ADD COLUMN with no default or a constant one rewrites no row. The CHECK
 * on status (named by PostgreSQL's rule, table_column_check) is replaced by
 * a looser one NOT VALID: every stored row passed the stricter rule, so
 * orders is not scanned under the migration's table lock; new and changed
 * rows are checked as always.
 */
static const char schema_v2[] =
    "ALTER TABLE orders ADD COLUMN redrives integer NOT NULL DEFAULT 0,"
    "  ADD COLUMN redriven_at bigint,"
    "  ADD COLUMN previous_attempts integer,"
    "  ADD COLUMN previous_error text,"
    "  ADD COLUMN discarded_at bigint,"
    "  DROP CONSTRAINT orders_status_check,"
    "  ADD CONSTRAINT orders_status_check"
    "    CHECK (status IN ('queued','completed','dead_lettered','discarded')) NOT VALID;";

/* Version 3: the fulfilment service's JSON answer, as SQLite's version 4. */
static const char schema_v3[] = "ALTER TABLE orders ADD COLUMN fulfilment_result text;";

/* Prepared on every connection. $n are typed by their casts. */
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

/* ?slot: the connection's row of queue_stats; updated last (see COUNTERS). */
#define STATS_DELTA(slot, queue_delta, dlq_delta, when)                                    \
    "st AS (UPDATE queue_stats SET queue = queue + (" queue_delta "), "                   \
    "dlq = dlq + (" dlq_delta ") WHERE slot = " slot " AND " when ")"

/* One dead letter or a batch back to the queue; d is the deleted rows. The
 * right-hand sides of SET read the row as it was: the failed run moves to
 * previous_*. */
#define REDRIVE_TAIL                                                                      \
    "RETURNING order_id), "                                                               \
    "q AS (INSERT INTO queue (order_id, enqueued_at, visible_at) "                        \
    "  SELECT order_id, $2::bigint, $2::bigint FROM d), "                                 \
    "o AS (UPDATE orders SET status = 'queued', redrives = redrives + 1, "                \
    "  redriven_at = $2::bigint, previous_attempts = attempts, "                          \
    "  previous_error = last_error, attempts = 0, last_error = NULL "                     \
    "  WHERE order_id IN (SELECT order_id FROM d)), " STATS_DELTA(                        \
        "$3::int", "SELECT count(*) FROM d", "-(SELECT count(*) FROM d)",                 \
        "EXISTS (SELECT 1 FROM d)") " SELECT count(*) FROM d"

/* What the API shows: 'processing' is a queued order under a live lease ($1 = now). */
#define STATUS_EXPR                                                                       \
    "CASE WHEN o.status = 'queued' AND q.receipt IS NOT NULL AND q.visible_at > $1::bigint " \
    "THEN 'processing' ELSE o.status END"

#define ORDER_COLUMNS                                                                     \
    "o.order_id, o.customer_id, o.items, " STATUS_EXPR ", "                               \
    "CASE WHEN o.status = 'queued' THEN coalesce(q.receive_count, 0) ELSE o.attempts END, " \
    "o.created_at, o.processed_at, coalesce(q.last_error, o.last_error), o.traceparent, " \
    "o.redrives, o.redriven_at, o.previous_attempts, o.previous_error, o.discarded_at, "  \
    "o.fulfilment_result FROM orders o LEFT JOIN queue q ON q.order_id = o.order_id "

/* $1 now, $2 cursor (CURSOR_NONE = first page), $3 limit, $4 shown status or NULL. */
#define LIST_TAIL                                                                         \
    " o.order_id < $2::text AND ($4::text IS NULL OR " STATUS_EXPR " = $4::text) "        \
    "ORDER BY o.order_id DESC LIMIT $3::int"

static const char *const pstmt_sql[S_COUNT] = {
    /* $1..$8 arrays of the batch, $9 max_depth, $10 idempotency TTL (ms), $11 slot.
     * Writes nothing when the batch does not fit (room.ok false). */
    [S_ENQUEUE] =
        "WITH new AS (SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], "
        "  $5::text[], $6::text[], $7::text[], $8::text[]) WITH ORDINALITY "
        "  AS n(order_id, customer_id, items, created_at, traceparent, idem_key, request, "
        "       response, ord)), "
        "room AS (SELECT (SELECT coalesce(sum(queue), 0) FROM queue_stats) "
        "  + (SELECT count(*) FROM new) <= $9::bigint AS ok), "
        /* An expired key may be taken again; a live one may not (no row returned). */
        "keys AS (INSERT INTO idempotency_keys AS k (key, request, response, order_id, "
        "  created_at) SELECT idem_key, request, response, order_id, created_at FROM new "
        "  WHERE idem_key IS NOT NULL AND (SELECT ok FROM room) "
        "  ON CONFLICT (key) DO UPDATE SET request = excluded.request, "
        "  response = excluded.response, order_id = excluded.order_id, "
        "  created_at = excluded.created_at "
        "  WHERE k.created_at < excluded.created_at - $10::bigint RETURNING k.key), "
        "acc AS (SELECT * FROM new WHERE (SELECT ok FROM room) "
        "  AND (idem_key IS NULL OR idem_key IN (SELECT key FROM keys))), "
        "o AS (INSERT INTO orders (order_id, customer_id, items, status, created_at, "
        "  traceparent) SELECT order_id, customer_id, items, 'queued', created_at, "
        "  traceparent FROM acc), "
        "q AS (INSERT INTO queue (order_id, enqueued_at, visible_at) "
        "  SELECT order_id, created_at, created_at FROM acc ORDER BY ord), " STATS_DELTA(
            "$11::int", "SELECT count(*) FROM acc", "0", "EXISTS (SELECT 1 FROM acc)") " "
        "SELECT r.ok, a.ord FROM room r LEFT JOIN acc a ON true ORDER BY a.ord",
    [S_DEPTH] = "SELECT coalesce(sum(queue), 0)::bigint FROM queue_stats",
    /* $1 receipt, $2 now, $3 lease, $4 max. The picked rows are MATERIALIZED:
     * as "WHERE seq IN (SELECT ... LIMIT n FOR UPDATE SKIP LOCKED)" the planner
     * may run the subquery again per row and update more than n. */
    [S_CLAIM] =
        "WITH picked AS MATERIALIZED (SELECT seq FROM queue WHERE visible_at <= $2::bigint "
        "  ORDER BY visible_at LIMIT $4::int FOR UPDATE SKIP LOCKED), "
        "c AS (UPDATE queue q SET receive_count = q.receive_count + 1, receipt = $1::bigint, "
        "  visible_at = $2::bigint + $3::bigint FROM picked p WHERE q.seq = p.seq "
        "  RETURNING q.seq, q.order_id, q.receive_count, q.enqueued_at, q.last_error) "
        "SELECT c.order_id, c.receive_count, c.enqueued_at, c.last_error, o.customer_id, "
        "  o.items, o.traceparent, o.created_at "
        "FROM c LEFT JOIN orders o ON o.order_id = c.order_id ORDER BY c.seq",
    /* $1 ids, $2 receipts, $3 outcomes (0 completed, 1 retry, 2 dead letter), $4 notes (the
     * error, or the fulfilment result of a completed one),
     * $5 visible_at, $6 attempts; $7 now, $8 slot. Returns the settlements applied. */
    [S_SETTLE] =
        "WITH s AS (SELECT * FROM unnest($1::text[], $2::bigint[], $3::int[], $4::text[], "
        "  $5::bigint[], $6::int[]) AS u(order_id, receipt, outcome, note, visible_at, "
        "  attempts)), "
        "done AS (DELETE FROM queue q USING s WHERE q.order_id = ANY ($1::text[]) "
        "  AND q.order_id = s.order_id AND q.receipt = s.receipt AND s.outcome <> 1 "
        "  RETURNING q.order_id, q.receipt, q.enqueued_at, s.outcome, s.note, s.attempts), "
        "ord AS (UPDATE orders o SET "
        "  status = CASE WHEN d.outcome = 0 THEN 'completed' ELSE 'dead_lettered' END, "
        "  attempts = d.attempts, "
        "  processed_at = CASE WHEN d.outcome = 0 THEN $7::bigint ELSE o.processed_at END, "
        "  last_error = CASE WHEN d.outcome = 0 THEN NULL ELSE d.note END, "
        "  fulfilment_result = CASE WHEN d.outcome = 0 THEN d.note ELSE o.fulfilment_result END "
        "  FROM done d WHERE o.order_id = d.order_id), "
        "dlq AS (INSERT INTO dead_letters (order_id, attempts, last_error, enqueued_at, "
        "  dead_lettered_at) SELECT order_id, attempts, note, enqueued_at, $7::bigint "
        "  FROM done WHERE outcome = 2), "
        "retried AS (UPDATE queue q SET receipt = NULL, visible_at = s.visible_at, "
        "  last_error = s.note FROM s WHERE q.order_id = ANY ($1::text[]) "
        "  AND q.order_id = s.order_id AND q.receipt = s.receipt AND s.outcome = 1 "
        "  RETURNING q.order_id, s.receipt), "
        STATS_DELTA("$8::int", "-(SELECT count(*) FROM done)",
                    "SELECT count(*) FROM done WHERE outcome = 2",
                    "EXISTS (SELECT 1 FROM done)") " "
        "SELECT order_id, receipt FROM done UNION ALL SELECT order_id, receipt FROM retried",
    /* $1 ids, $2 receipts, $3 now. */
    [S_RELEASE] = "UPDATE queue q SET receipt = NULL, visible_at = $3::bigint, "
                  "receive_count = greatest(q.receive_count - 1, 0) "
                  "FROM unnest($1::text[], $2::bigint[]) AS u(order_id, receipt) "
                  "WHERE q.order_id = ANY ($1::text[]) AND q.order_id = u.order_id "
                  "AND q.receipt = u.receipt",
    [S_EXTEND] = "UPDATE queue q SET visible_at = greatest(q.visible_at, $3::bigint) "
                 "FROM unnest($1::text[], $2::bigint[]) AS u(order_id, receipt) "
                 "WHERE q.order_id = ANY ($1::text[]) AND q.order_id = u.order_id "
                 "AND q.receipt = u.receipt RETURNING q.order_id",
    [S_NEXT_VISIBLE] = "SELECT min(visible_at) FROM queue",
    /* $1 id, $2 now, $3 slot. */
    [S_REDRIVE_ONE] = "WITH d AS (DELETE FROM dead_letters WHERE order_id = $1::text " REDRIVE_TAIL,
    /* $1 batch size, $2 now, $3 slot; MATERIALIZED as in S_CLAIM. */
    [S_REDRIVE_BATCH] = "WITH picked AS MATERIALIZED (SELECT order_id FROM dead_letters "
                        "  LIMIT $1::int FOR UPDATE SKIP LOCKED), "
                        "d AS (DELETE FROM dead_letters WHERE order_id IN "
                        "  (SELECT order_id FROM picked) " REDRIVE_TAIL,
    /* $1 id, $2 now, $3 slot. */
    [S_DLQ_DELETE] = "WITH d AS (DELETE FROM dead_letters WHERE order_id = $1::text "
                     "RETURNING order_id), "
                     "o AS (UPDATE orders SET status = 'discarded', discarded_at = $2::bigint "
                     "  WHERE order_id IN (SELECT order_id FROM d)), " STATS_DELTA(
                         "$3::int", "0", "-(SELECT count(*) FROM d)",
                         "EXISTS (SELECT 1 FROM d)") " SELECT count(*) FROM d",
    [S_IDEM_PRUNE] = "DELETE FROM idempotency_keys WHERE created_at < $1::bigint",
    [S_HEARTBEAT] = "INSERT INTO heartbeat (id, at) VALUES (1, $1::bigint) "
                    "ON CONFLICT (id) DO UPDATE SET at = excluded.at",
    [S_GET_ORDER] = "SELECT " ORDER_COLUMNS "WHERE o.order_id = $2::text",
    [S_LIST_ALL] = "SELECT " ORDER_COLUMNS "WHERE" LIST_TAIL,
    [S_LIST_CUSTOMER] = "SELECT " ORDER_COLUMNS "WHERE o.customer_id = $5::text AND" LIST_TAIL,
    [S_LIST_STATUS] = "SELECT " ORDER_COLUMNS "WHERE o.status = $5::text AND" LIST_TAIL,
    [S_LIST_BOTH] = "SELECT " ORDER_COLUMNS
                    "WHERE o.customer_id = $5::text AND o.status = $6::text AND" LIST_TAIL,
    [S_IDEM_GET] = "SELECT request, response, order_id FROM idempotency_keys "
                   "WHERE key = $1::text AND created_at >= $2::bigint",
    [S_STATS] = "SELECT coalesce(sum(queue), 0)::bigint, coalesce(sum(dlq), 0)::bigint, "
                "(SELECT enqueued_at FROM queue ORDER BY seq LIMIT 1) FROM queue_stats",
    /* $1 cursor (CURSOR_NONE = first page), $2 limit. */
    [S_DLQ_LIST] = "SELECT d.order_id, o.customer_id, o.items, d.attempts, d.last_error, "
                   "o.created_at, d.dead_lettered_at, o.traceparent FROM dead_letters d "
                   "JOIN orders o ON o.order_id = d.order_id "
                   "WHERE d.order_id < $1::text ORDER BY d.order_id DESC LIMIT $2::int",
};

enum outcome_code { OUT_COMPLETED = 0, OUT_RETRY = 1, OUT_DEAD_LETTER = 2 };

struct pg_conn {
    PGconn *pg;                   /* NULL: not connected (never, or lost) */
    int slot;                     /* its row of queue_stats */
    bool intake;                  /* the committer's connection */
    bool busy;                    /* pool: lent to a caller (pool_lock) */
    bool vacuuming;               /* pool: a VACUUM runs on it, unanswered (pool_lock) */
};

/* libpq's connection keywords: the dsn, then defaults it does not set itself. */
#define CONN_PARAMS_MAX 12

struct pg_store {
    struct store base;            /* first: the ops table (store_int.h) */
    enum durability durability;
    char *dsn;
    const char *keywords[CONN_PARAMS_MAX + 1];
    const char *values[CONN_PARAMS_MAX + 1];

    pthread_mutex_t intake_lock;  /* guards intake */
    struct pg_conn intake;

    pthread_mutex_t pool_lock;    /* guards pool[].busy */
    pthread_cond_t pool_free;
    struct pg_conn pool[STORE_PG_POOL];

    _Atomic uint64_t settled;     /* messages this node removed from the queue (VACUUM) */

    pthread_mutex_t link_lock;    /* guards the reconnect state below */
    double retry_at;              /* monotonic seconds: no connect before */
    int64_t backoff_ms;           /* 0 after a success */
    bool connecting;              /* one caller probes a database that is down */
    bool down;                    /* the last connect failed (logged once) */
};

static const struct store_ops pgs_ops;

_Static_assert(STORE_PG_STATS_SLOTS == 128, "schema_v1 creates slots 0..127 of queue_stats");

static struct pg_store *pgs(struct store *base)
{
    assert(base->ops == &pgs_ops);
    return (struct pg_store *)base;
}

/* ---- errors ------------------------------------------------------------ */

/* SQLSTATE -> store error: what a retry later can fix is STORE_EUNAVAILABLE. */
static int map_sqlstate(const char *state)
{
    if (state == NULL || strlen(state) != 5)
        return STORE_EUNAVAILABLE; /* no answer from the server: the link broke */
    if (strncmp(state, "08", 2) == 0 ||   /* connection exception */
        strncmp(state, "53", 2) == 0 ||   /* disk full, out of memory, too many connections */
        strncmp(state, "57", 2) == 0 ||   /* shutdown, cancel, cannot connect now */
        strncmp(state, "58", 2) == 0 ||   /* I/O error */
        strncmp(state, "40", 2) == 0 ||   /* serialization failure, deadlock: try again */
        strcmp(state, "25006") == 0 ||    /* read-only transaction: a standby */
        strcmp(state, "55P03") == 0)      /* lock not available */
        return STORE_EUNAVAILABLE;
    return STORE_EINTERNAL;               /* constraint, syntax, a corrupt schema: a bug */
}

/* A libpq message without its trailing newline, for a log line. */
static void one_line(const char *msg, char *out, size_t size)
{
    snprintf(out, size, "%s", msg ? msg : "");
    size_t n = strlen(out);
    while (n > 0 && (out[n - 1] == '\n' || out[n - 1] == ' '))
        out[--n] = '\0';
    for (char *p = out; *p; p++)
        if (*p == '\n')
            *p = ' ';
}

static void conn_drop(struct pg_conn *c)
{
    PQfinish(c->pg);
    c->pg = NULL;
}

/*
 * Checks the result of a statement run on c: STORE_OK, or the error logged
 * with its place and mapped; res is then cleared. A connection that broke is
 * closed here, so that the next call on it reconnects.
 */
static int check(struct pg_conn *c, PGresult *res, const char *where)
{
    ExecStatusType st = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;
    if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK)
        return STORE_OK;
    char msg[512];
    one_line(res ? PQresultErrorMessage(res) : PQerrorMessage(c->pg), msg, sizeof(msg));
    if (msg[0] == '\0')
        one_line(PQerrorMessage(c->pg), msg, sizeof(msg));
    int err = map_sqlstate(res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL);
    PQclear(res);
    if (PQstatus(c->pg) == CONNECTION_BAD) {
        log_warn(NULL, "store: %s: lost the connection to postgres: %s", where, msg);
        conn_drop(c);
        return STORE_EUNAVAILABLE;
    }
    log_error(NULL, "store: %s: %s", where, msg);
    return err;
}

/* The name a statement is prepared under on every connection. */
static const char *stmt_name(enum pstmt which, char out[16])
{
    snprintf(out, 16, "orderd_%u", (unsigned)which % 100u);
    return out;
}

/* Runs a prepared statement; STORE_OK with *out to PQclear(), or an error. */
static int run(struct pg_conn *c, enum pstmt which, int nparams, const char *const *params,
               const char *where, PGresult **out)
{
    char name[16];
    stmt_name(which, name);
    PGresult *res = PQexecPrepared(c->pg, name, nparams, params, NULL, NULL, 0);
    int err = check(c, res, where);
    *out = err == STORE_OK ? res : NULL;
    return err;
}

/* Runs a prepared statement whose rows are not needed; *affected may be NULL. */
static int run_cmd(struct pg_conn *c, enum pstmt which, int nparams, const char *const *params,
                   const char *where, uint64_t *affected)
{
    PGresult *res = NULL;
    int err = run(c, which, nparams, params, where, &res);
    if (err == STORE_OK && affected)
        *affected = strtoull(PQcmdTuples(res), NULL, 10);
    PQclear(res);
    return err;
}

/* Runs plain SQL without parameters (BEGIN, COMMIT, migrations). */
static int exec_sql(struct pg_conn *c, const char *sql, const char *where, PGresult **out)
{
    PGresult *res = PQexec(c->pg, sql);
    int err = check(c, res, where);
    if (out)
        *out = err == STORE_OK ? res : NULL;
    else if (err == STORE_OK)
        PQclear(res);
    return err;
}

/* ---- values in and out ------------------------------------------------- */

struct num {
    char s[24];
};

/* Writes v into n (never reads it) and returns its text. */
static const char *num(struct num *n, int64_t v)
{
    /* cppcheck-suppress ctuuninitvar */
    snprintf(n->s, sizeof(n->s), "%" PRId64, v);
    return n->s;
}

static char *col_dup(const PGresult *r, int row, int col)
{
    return PQgetisnull(r, row, col) ? NULL : strdup(PQgetvalue(r, row, col));
}

static void col_copy(const PGresult *r, int row, int col, char *dst, size_t size)
{
    snprintf(dst, size, "%s", PQgetvalue(r, row, col)); /* "" when NULL */
}

static int64_t col_i64(const PGresult *r, int row, int col)
{
    return PQgetisnull(r, row, col) ? 0 : strtoll(PQgetvalue(r, row, col), NULL, 10);
}

/*
 * A PostgreSQL array literal being built in a strbuf: {"a","b",NULL,...}.
 * Elements are quoted with " and \ escaped, so any text goes through; when
 * memory ran out (failed) the literal is not used.
 */
static void arr_sep(struct strbuf *a)
{
    strbuf_add(a, a->len == 0 ? "{" : ",", 1);
}

static void arr_text(struct strbuf *a, const char *s)
{
    arr_sep(a);
    if (s == NULL) {
        strbuf_add(a, "NULL", 4);
        return;
    }
    strbuf_add(a, "\"", 1);
    for (const char *p = s; *p; p++) {
        size_t run_len = strcspn(p, "\"\\");
        strbuf_add(a, p, run_len);
        p += run_len;
        if (*p == '\0')
            break;
        strbuf_add(a, "\\", 1);
        strbuf_add(a, p, 1);
    }
    strbuf_add(a, "\"", 1);
}

static void arr_i64(struct strbuf *a, int64_t v)
{
    struct num n;
    const char *text = num(&n, v);
    arr_sep(a);
    strbuf_add(a, text, strlen(text));
}

/* The finished literal ("{}" when empty); NULL when memory ran out. */
static const char *arr_end(struct strbuf *a)
{
    if (a->len == 0)
        strbuf_add(a, "{", 1);
    strbuf_add(a, "}", 1);
    return a->failed ? NULL : a->p;
}

static void arrs_free(struct strbuf *a, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(a[i].p);
        memset(&a[i], 0, sizeof(a[i]));
    }
}

/* ---- connections ------------------------------------------------------- */

static void on_notice(void *arg, const char *message)
{
    (void)arg;
    char msg[256];
    one_line(message, msg, sizeof(msg));
    log_debug(NULL, "store: postgres: %s", msg);
}

/* A free slot of queue_stats for the session (COUNTERS); pid mod 128 when none is. */
#define TAKE_SLOT                                                                          \
    "coalesce((SELECT n FROM generate_series(0, 127) n WHERE pg_try_advisory_lock("         \
    STORE_PG_SLOT_NS ", n) LIMIT 1), pg_backend_pid() % 128)"

/* The connection's session: its synchronous_commit (DURABILITY), its slot. */
static int conn_session(struct pg_store *s, struct pg_conn *c)
{
    bool durable = c->intake && s->durability == DURABILITY_FULL;
    const char *sql =
        durable ? "SELECT " TAKE_SLOT ", set_config('synchronous_commit', "
                  "CASE current_setting('synchronous_commit') WHEN 'off' THEN 'on' "
                  "ELSE current_setting('synchronous_commit') END, false)"
                : "SELECT " TAKE_SLOT ", set_config('synchronous_commit', 'off', false), "
                  "set_config('plan_cache_mode', 'force_custom_plan', false)";
    PGresult *res = NULL;
    int err = exec_sql(c, sql, "session", &res);
    if (err != STORE_OK)
        return err;
    c->slot = (int)col_i64(res, 0, 0);
    PQclear(res);
    assert(c->slot >= 0 && c->slot < STORE_PG_STATS_SLOTS);
    for (int i = 0; i < S_COUNT; i++) {
        char name[16];
        res = PQprepare(c->pg, stmt_name((enum pstmt)i, name), pstmt_sql[i], 0, NULL);
        err = check(c, res, "prepare");
        if (err != STORE_OK)
            return err;
        PQclear(res);
    }
    return STORE_OK;
}

/* Opens c (blocking, bounded by connect_timeout); no session set up yet. */
static int conn_connect(struct pg_store *s, struct pg_conn *c)
{
    assert(c->pg == NULL);
    PGconn *pg = PQconnectdbParams(s->keywords, s->values, 1);
    if (pg == NULL)
        return STORE_ENOMEM;
    if (PQstatus(pg) != CONNECTION_OK) {
        char msg[512];
        one_line(PQerrorMessage(pg), msg, sizeof(msg));
        PQfinish(pg);
        log_warn(NULL, "store: cannot connect to postgres: %s", msg);
        return STORE_EUNAVAILABLE;
    }
    PQsetNoticeProcessor(pg, on_notice, NULL);
    c->pg = pg;
    return STORE_OK;
}

static int conn_open(struct pg_store *s, struct pg_conn *c)
{
    int err = conn_connect(s, c);
    if (err == STORE_OK && (err = conn_session(s, c)) != STORE_OK && c->pg != NULL)
        conn_drop(c);
    return err;
}

/*
 * Drops c if the server closed it while it sat idle: its goodbye (a FATAL
 * "terminating connection" on a restart) and the end of the stream wait on
 * the socket, and libpq would only notice them on the next statement, which
 * would then fail. One poll() that returns at once; a connection with
 * nothing to read is left alone.
 */
static void drop_if_closed_by_server(struct pg_conn *c)
{
    /* libpq reads one message per call: the FATAL (which it reports as a
     * notice, since no statement is running), then the end of the stream. */
    for (int reads = 0;; reads++) {
        struct pollfd p = {.fd = PQsocket(c->pg), .events = POLLIN};
        if (p.fd < 0 || poll(&p, 1, 0) <= 0 || reads == 4)
            return; /* nothing (more) to read: still usable */
        if (!PQconsumeInput(c->pg) || PQstatus(c->pg) != CONNECTION_OK)
            break;
    }
    log_info(NULL, "store: postgres closed an idle connection (a restart, or a terminated "
                   "backend); opening another");
    conn_drop(c);
}

/*
 * Makes sure c is connected: STORE_OK, or STORE_EUNAVAILABLE at once while
 * the database is backing off or another caller probes it (WHEN THE DATABASE
 * GOES AWAY).
 */
static int conn_ready(struct pg_store *s, struct pg_conn *c)
{
    if (c->pg != NULL)
        drop_if_closed_by_server(c);
    if (c->pg != NULL)
        return STORE_OK;
    pthread_mutex_lock(&s->link_lock);
    bool go = !s->down || (!s->connecting && ids_monotonic_seconds() >= s->retry_at);
    if (go && s->down)
        s->connecting = true;
    bool probing = go && s->down;
    pthread_mutex_unlock(&s->link_lock);
    if (!go)
        return STORE_EUNAVAILABLE;

    int err = conn_open(s, c);

    pthread_mutex_lock(&s->link_lock);
    if (probing)
        s->connecting = false;
    if (err == STORE_OK) {
        if (s->down)
            log_info(NULL, "store: connected to postgres again");
        s->down = false;
        s->backoff_ms = 0;
    } else {
        s->backoff_ms = s->backoff_ms == 0 ? STORE_PG_BACKOFF_MIN_MS : s->backoff_ms * 2;
        if (s->backoff_ms > STORE_PG_BACKOFF_MAX_MS)
            s->backoff_ms = STORE_PG_BACKOFF_MAX_MS;
        s->retry_at = ids_monotonic_seconds() + (double)s->backoff_ms / 1000.0;
        if (!s->down)
            log_warn(NULL, "store: postgres is unavailable; retrying with backoff "
                           "(requests get 503 meanwhile)");
        s->down = true;
    }
    pthread_mutex_unlock(&s->link_lock);
    return err == STORE_OK ? STORE_OK : STORE_EUNAVAILABLE;
}

/* Waits for the end of the VACUUM that c was left running (vacuum_now_and_then). */
static void vacuum_wait(struct pg_conn *c)
{
    PGresult *res;
    while (c->pg != NULL && (res = PQgetResult(c->pg)) != NULL)
        if (check(c, res, "vacuum queue") == STORE_OK)
            PQclear(res);
    c->vacuuming = false;
}

/* Lends a pool connection, connected: STORE_OK with *out, or STORE_EUNAVAILABLE.
 * A connection still running a VACUUM is taken only when no other is free. */
static int pool_acquire(struct pg_store *s, struct pg_conn **out)
{
    struct pg_conn *c = NULL;
    pthread_mutex_lock(&s->pool_lock);
    while (c == NULL) {
        for (int i = 0; i < STORE_PG_POOL && c == NULL; i++)
            if (!s->pool[i].busy && !s->pool[i].vacuuming)
                c = &s->pool[i];
        for (int i = 0; i < STORE_PG_POOL && c == NULL; i++)
            if (!s->pool[i].busy)
                c = &s->pool[i];
        if (c == NULL)
            pthread_cond_wait(&s->pool_free, &s->pool_lock);
    }
    c->busy = true;
    pthread_mutex_unlock(&s->pool_lock);
    if (c->vacuuming)
        vacuum_wait(c);
    int err = conn_ready(s, c);
    if (err != STORE_OK) {
        pthread_mutex_lock(&s->pool_lock);
        c->busy = false;
        pthread_cond_signal(&s->pool_free);
        pthread_mutex_unlock(&s->pool_lock);
        return err;
    }
    *out = c;
    return STORE_OK;
}

static void pool_release(struct pg_store *s, struct pg_conn *c)
{
    /* Every call ends its transaction; a connection left in one is not reused. */
    if (c->pg != NULL && !c->vacuuming && PQtransactionStatus(c->pg) != PQTRANS_IDLE) {
        log_error(NULL, "store: a pool connection was left inside a transaction; closing it");
        conn_drop(c);
    }
    pthread_mutex_lock(&s->pool_lock);
    assert(c->busy);
    c->busy = false;
    pthread_cond_signal(&s->pool_free);
    pthread_mutex_unlock(&s->pool_lock);
}

/* One statement on a pooled connection: acquire, run, release. *out is the
 * result (caller PQclears it) when STORE_OK. */
static int pool_query(struct pg_store *s, enum pstmt which, int nparams,
                      const char *const *params, const char *where, PGresult **out)
{
    struct pg_conn *c = NULL;
    int err = pool_acquire(s, &c);
    if (err != STORE_OK)
        return err;
    err = run(c, which, nparams, params, where, out);
    pool_release(s, c);
    return err;
}

/* ---- open / close ------------------------------------------------------ */

/* keywords/values for PQconnectdbParams: the dsn (expanded), then libpq
 * settings that keep a dead server from hanging a thread, unless it sets them. */
static int conn_params(struct pg_store *s)
{
    static const char *const defaults[][2] = {
        {"fallback_application_name", "orderd"},
        {"connect_timeout", STORE_PG_CONNECT_TIMEOUT_S},
        {"keepalives", "1"},
        {"keepalives_idle", "10"},
        {"keepalives_interval", "5"},
        {"keepalives_count", "3"},
        {"tcp_user_timeout", "20000"},
    };
    char *errmsg = NULL;
    PQconninfoOption *opts = PQconninfoParse(s->dsn, &errmsg);
    if (opts == NULL) {
        /* libpq's message may quote the string, which may hold a password. */
        log_error(NULL, "store: [storage] dsn is not a valid libpq connection string or URI");
        PQfreemem(errmsg);
        return STORE_EOPEN;
    }
    size_t n = 0;
    s->keywords[n] = "dbname";
    s->values[n++] = s->dsn;
    s->keywords[n] = "client_encoding";
    s->values[n++] = "UTF8";
    for (size_t i = 0; i < sizeof(defaults) / sizeof(defaults[0]); i++) {
        bool set = false;
        for (PQconninfoOption *o = opts; o->keyword != NULL; o++)
            if (strcmp(o->keyword, defaults[i][0]) == 0 && o->val != NULL && o->val[0])
                set = true;
        if (!set && n < CONN_PARAMS_MAX) {
            s->keywords[n] = defaults[i][0];
            s->values[n++] = defaults[i][1];
        }
    }
    s->keywords[n] = NULL;
    s->values[n] = NULL;
    PQconninfoFree(opts);
    return STORE_OK;
}

/* The schema at SCHEMA_VERSION, under the advisory lock (MIGRATIONS). */
static int migrate(struct pg_conn *c)
{
    PGresult *res = NULL;
    int err = exec_sql(c,
                       "BEGIN; SELECT pg_advisory_xact_lock(" STORE_PG_LOCK_ID "); "
                       "CREATE TABLE IF NOT EXISTS schema_version (version integer NOT NULL); "
                       "SELECT coalesce(max(version), 0) FROM schema_version",
                       "migrate", &res);
    if (err != STORE_OK)
        goto rollback;
    int64_t version = col_i64(res, 0, 0);
    PQclear(res);
    if (version > SCHEMA_VERSION) {
        log_error(NULL, "store: database schema %" PRId64 " is newer than this orderd (%d)",
                  version, SCHEMA_VERSION);
        err = STORE_EOPEN;
        goto rollback;
    }
    if (version < 1) {
        err = exec_sql(c, schema_v1, "migrate to 1", NULL);
        if (err == STORE_OK)
            err = exec_sql(c, "DELETE FROM schema_version; INSERT INTO schema_version VALUES (1)",
                           "migrate to 1", NULL);
        if (err != STORE_OK)
            goto rollback;
    }
    if (version < 2) {
        err = exec_sql(c, schema_v2, "migrate to 2", NULL);
        if (err == STORE_OK)
            err = exec_sql(c, "UPDATE schema_version SET version = 2", "migrate to 2", NULL);
        if (err != STORE_OK)
            goto rollback;
    }
    if (version < 3) {
        err = exec_sql(c, schema_v3, "migrate to 3", NULL);
        if (err == STORE_OK)
            err = exec_sql(c, "UPDATE schema_version SET version = 3", "migrate to 3", NULL);
        if (err != STORE_OK)
            goto rollback;
    }
    /* Later versions: if (version < 4) { ... } — each step in this transaction. */
    if (version < 1)
        log_info(NULL, "store: created postgres schema version %d", SCHEMA_VERSION);
    else if (version < SCHEMA_VERSION)
        log_info(NULL, "store: migrated the postgres schema from version %" PRId64 " to %d",
                 version, SCHEMA_VERSION);
    return exec_sql(c, "COMMIT", "migrate commit", NULL);

rollback:
    if (c->pg != NULL && PQtransactionStatus(c->pg) != PQTRANS_IDLE)
        PQclear(PQexec(c->pg, "ROLLBACK"));
    return err;
}

static void pgs_destroy(struct pg_store *s);

int store_pg_open(const struct store_options *opts, struct store **out)
{
    *out = NULL;
    if (opts->dsn == NULL || opts->dsn[0] == '\0') {
        log_error(NULL, "store: backend postgres needs [storage] dsn");
        return STORE_EOPEN;
    }
    struct pg_store *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return STORE_ENOMEM;
    s->base.ops = &pgs_ops;
    s->durability = opts->durability;
    s->intake.intake = true;
    s->dsn = strdup(opts->dsn);
    if (s->dsn == NULL)
        goto fail_alloc;
    if (pthread_mutex_init(&s->intake_lock, NULL) != 0)
        goto fail_alloc;
    if (pthread_mutex_init(&s->pool_lock, NULL) != 0)
        goto fail_intake_lock;
    if (pthread_cond_init(&s->pool_free, NULL) != 0)
        goto fail_pool_lock;
    if (pthread_mutex_init(&s->link_lock, NULL) != 0)
        goto fail_pool_free;

    /* From here on pgs_destroy() undoes everything. */
    int err = conn_params(s);
    if (err == STORE_OK)
        err = conn_connect(s, &s->intake);
    if (err == STORE_OK)
        err = migrate(&s->intake);
    if (err == STORE_OK)
        err = conn_session(s, &s->intake);
    for (int i = 0; err == STORE_OK && i < STORE_PG_POOL; i++)
        err = conn_open(s, &s->pool[i]);
    if (err != STORE_OK) {
        log_error(NULL, "store: cannot open the postgres database");
        pgs_destroy(s);
        return STORE_EOPEN;
    }
    log_info(NULL, "store: postgres database %s on %s, %d + 1 connections",
             PQdb(s->intake.pg), PQhost(s->intake.pg), STORE_PG_POOL);
    *out = &s->base;
    return STORE_OK;

fail_pool_free:
    pthread_cond_destroy(&s->pool_free);
fail_pool_lock:
    pthread_mutex_destroy(&s->pool_lock);
fail_intake_lock:
    pthread_mutex_destroy(&s->intake_lock);
fail_alloc:
    free(s->dsn);
    free(s);
    return STORE_ENOMEM;
}

static void pgs_destroy(struct pg_store *s)
{
    for (int i = 0; i < STORE_PG_POOL; i++) {
        assert(!s->pool[i].busy);
        if (s->pool[i].vacuuming)
            vacuum_wait(&s->pool[i]);
        conn_drop(&s->pool[i]);
    }
    conn_drop(&s->intake);
    pthread_mutex_destroy(&s->link_lock);
    pthread_cond_destroy(&s->pool_free);
    pthread_mutex_destroy(&s->pool_lock);
    pthread_mutex_destroy(&s->intake_lock);
    if (s->dsn) {
        explicit_bzero(s->dsn, strlen(s->dsn)); /* it may hold a password */
        free(s->dsn);
        s->dsn = NULL;
    }
    free(s);
}

static void pgs_close(struct store *base)
{
    pgs_destroy(pgs(base));
}

/* ---- intake ------------------------------------------------------------ */

/*
 * Runs S_ENQUEUE on the orders at idx[0..m): *fits false when the batch does
 * not fit under max_depth (then nothing was written); else each of them gets
 * STORE_OK or STORE_ECONFLICT.
 */
static int enqueue_exec(struct pg_store *s, struct store_new_order *orders, const size_t *idx,
                        size_t m, int64_t max_depth, bool *fits)
{
    struct pg_conn *c = &s->intake;
    enum { COLS = 8 };
    struct strbuf a[COLS];
    memset(a, 0, sizeof(a));
    for (size_t j = 0; j < m; j++) {
        const struct store_new_order *o = &orders[idx[j]];
        arr_text(&a[0], o->order_id);
        arr_text(&a[1], o->customer_id);
        arr_text(&a[2], o->items_json);
        arr_i64(&a[3], o->created_at_ms);
        arr_text(&a[4], o->traceparent);
        arr_text(&a[5], o->idempotency_key);
        arr_text(&a[6], o->idempotency_key ? o->request_json : NULL);
        arr_text(&a[7], o->idempotency_key ? o->response_json : NULL);
    }
    struct num max, ttl, slot;
    const char *params[COLS + 3];
    bool oom = false;
    for (int i = 0; i < COLS; i++)
        oom |= (params[i] = arr_end(&a[i])) == NULL;
    params[COLS] = num(&max, max_depth);
    params[COLS + 1] = num(&ttl, (int64_t)IDEMPOTENCY_TTL_S * 1000);
    params[COLS + 2] = num(&slot, c->slot);
    PGresult *res = NULL;
    int err = oom ? STORE_ENOMEM : run(c, S_ENQUEUE, COLS + 3, params, "enqueue", &res);
    arrs_free(a, COLS);
    if (err != STORE_OK)
        return err;
    *fits = PQntuples(res) > 0 && strcmp(PQgetvalue(res, 0, 0), "t") == 0;
    for (size_t j = 0; *fits && j < m; j++)
        orders[idx[j]].result = STORE_ECONFLICT;
    for (int r = 0; *fits && r < PQntuples(res); r++) {
        int64_t ord = col_i64(res, r, 1); /* 1-based position in the arrays; 0 = none */
        if (ord >= 1 && (size_t)ord <= m)
            orders[idx[ord - 1]].result = STORE_OK;
    }
    PQclear(res);
    return STORE_OK;
}

/* The batch near max_depth: one transaction, order by order, as SQLite does. */
static int enqueue_careful(struct pg_store *s, struct store_new_order *orders, size_t n,
                           int64_t max_depth)
{
    struct pg_conn *c = &s->intake;
    PGresult *res = NULL;
    int err = exec_sql(c, "BEGIN", "enqueue", NULL);
    if (err != STORE_OK)
        return err;
    err = run(c, S_DEPTH, 0, NULL, "enqueue depth", &res);
    int64_t depth = err == STORE_OK ? col_i64(res, 0, 0) : 0;
    PQclear(res);
    int64_t added = 0;
    for (size_t i = 0; err == STORE_OK && i < n; i++) {
        if (depth + added >= max_depth) {
            orders[i].result = STORE_EQUEUEFULL;
            continue;
        }
        bool fits = false;
        err = enqueue_exec(s, orders, &i, 1, INT64_MAX, &fits);
        if (err == STORE_OK && !fits)
            err = STORE_EINTERNAL; /* INT64_MAX always fits */
        if (err == STORE_OK && orders[i].result == STORE_OK)
            added++;
    }
    if (err == STORE_OK)
        return exec_sql(c, "COMMIT", "enqueue commit", NULL);
    if (c->pg != NULL && PQtransactionStatus(c->pg) != PQTRANS_IDLE &&
        exec_sql(c, "ROLLBACK", "enqueue rollback", NULL) != STORE_OK && c->pg != NULL)
        conn_drop(c);
    return err;
}

static int pgs_enqueue_batch(struct store *base, struct store_new_order *orders, size_t n,
                             uint64_t max_depth)
{
    struct pg_store *s = pgs(base);
    int64_t max = max_depth > (uint64_t)INT64_MAX ? INT64_MAX : (int64_t)max_depth;
    size_t *idx = calloc(n ? n : 1, sizeof(*idx)); /* the orders sent: not duplicate keys */
    size_t m = 0;
    if (idx == NULL) {
        for (size_t i = 0; i < n; i++)
            orders[i].result = STORE_ENOMEM;
        return STORE_ENOMEM;
    }
    /* A key twice in one batch: the later ones conflict with the first. */
    for (size_t i = 0; i < n; i++) {
        orders[i].result = STORE_EINTERNAL;
        bool dup = false;
        for (size_t j = 0; orders[i].idempotency_key && j < i && !dup; j++)
            dup = orders[j].idempotency_key &&
                  strcmp(orders[i].idempotency_key, orders[j].idempotency_key) == 0;
        if (dup)
            orders[i].result = STORE_ECONFLICT;
        else
            idx[m++] = i;
    }

    pthread_mutex_lock(&s->intake_lock);
    int err = conn_ready(s, &s->intake);
    bool fits = false;
    if (err == STORE_OK && m > 0)
        err = enqueue_exec(s, orders, idx, m, max, &fits);
    if (err == STORE_OK && m > 0 && !fits)
        err = enqueue_careful(s, orders, n, max);
    pthread_mutex_unlock(&s->intake_lock);
    free(idx);

    if (err != STORE_OK)
        for (size_t i = 0; i < n; i++)
            orders[i].result = err;
    return err;
}

/* ---- reads ------------------------------------------------------------- */

static int read_order_row(const PGresult *r, int row, struct store_order *o)
{
    memset(o, 0, sizeof(*o));
    col_copy(r, row, 0, o->order_id, sizeof(o->order_id));
    o->customer_id = col_dup(r, row, 1);
    o->items_json = col_dup(r, row, 2);
    o->status = store_status_constant(PQgetvalue(r, row, 3));
    o->attempts = (uint32_t)col_i64(r, row, 4);
    o->created_at_ms = col_i64(r, row, 5);
    o->processed_at_ms = col_i64(r, row, 6);
    bool has_error = !PQgetisnull(r, row, 7);
    o->last_error = col_dup(r, row, 7);
    col_copy(r, row, 8, o->traceparent, sizeof(o->traceparent));
    o->redrives = (uint32_t)col_i64(r, row, 9);
    o->redriven_at_ms = col_i64(r, row, 10);
    o->previous_attempts = (uint32_t)col_i64(r, row, 11);
    bool has_previous = !PQgetisnull(r, row, 12);
    o->previous_error = col_dup(r, row, 12);
    o->discarded_at_ms = col_i64(r, row, 13);
    bool has_result = !PQgetisnull(r, row, 14);
    o->fulfilment_result = col_dup(r, row, 14);
    if (o->customer_id == NULL || o->items_json == NULL || (has_error && o->last_error == NULL) ||
        (has_previous && o->previous_error == NULL) || (has_result && o->fulfilment_result == NULL)) {
        store_order_clear(o);
        return STORE_ENOMEM;
    }
    return STORE_OK;
}

static int pgs_get_order(struct store *base, const char *order_id, int64_t now_ms,
                         struct store_order *out)
{
    struct pg_store *s = pgs(base);
    struct num now;
    const char *params[] = {num(&now, now_ms), order_id};
    PGresult *res = NULL;
    int err = pool_query(s, S_GET_ORDER, 2, params, "get order", &res);
    if (err == STORE_OK)
        err = PQntuples(res) == 0 ? STORE_ENOTFOUND : read_order_row(res, 0, out);
    PQclear(res);
    return err;
}

/* The listing statement of a filter: S_LIST_ALL + the variant (same order). */
static enum pstmt list_stmt(const struct store_order_filter *f)
{
    return (enum pstmt)(S_LIST_ALL + (int)store_list_variant(f));
}

static int pgs_list_orders(struct store *base, const struct store_order_filter *f, int64_t now_ms,
                           struct store_order **out, size_t *n)
{
    struct pg_store *s = pgs(base);
    assert(f->limit >= 1 && f->limit <= STORE_LIST_LIMIT_MAX);
    struct num now, limit;
    const char *params[6] = {num(&now, now_ms), f->before_id ? f->before_id : CURSOR_NONE,
                             num(&limit, (int64_t)f->limit), f->status};
    int nparams = 4;
    if (f->customer_id)
        params[nparams++] = f->customer_id;
    if (f->status)
        params[nparams++] = store_stored_status(f->status);
    struct store_order *rows = calloc(f->limit, sizeof(*rows));
    if (rows == NULL)
        return STORE_ENOMEM;
    PGresult *res = NULL;
    int err = pool_query(s, list_stmt(f), nparams, params, "list orders", &res);
    size_t count = 0;
    for (int r = 0; err == STORE_OK && r < PQntuples(res) && count < f->limit; r++) {
        err = read_order_row(res, r, &rows[count]);
        count += err == STORE_OK;
    }
    PQclear(res);
    if (err != STORE_OK) {
        store_orders_free(rows, count);
        return err;
    }
    *out = rows;
    *n = count;
    return STORE_OK;
}

static int pgs_idempotency_get(struct store *base, const char *key, int64_t now_ms,
                               struct store_idempotency *out)
{
    struct pg_store *s = pgs(base);
    memset(out, 0, sizeof(*out));
    struct num cutoff;
    const char *params[] = {key, num(&cutoff, now_ms - (int64_t)IDEMPOTENCY_TTL_S * 1000)};
    PGresult *res = NULL;
    int err = pool_query(s, S_IDEM_GET, 2, params, "idempotency get", &res);
    if (err == STORE_OK && PQntuples(res) == 0) {
        err = STORE_ENOTFOUND;
    } else if (err == STORE_OK) {
        out->request_json = col_dup(res, 0, 0);
        out->response_json = col_dup(res, 0, 1);
        col_copy(res, 0, 2, out->order_id, sizeof(out->order_id));
        if (out->request_json == NULL || out->response_json == NULL) {
            store_idempotency_clear(out);
            err = STORE_ENOMEM;
        }
    }
    PQclear(res);
    return err;
}

static int pgs_idempotency_prune(struct store *base, int64_t now_ms, uint64_t *deleted)
{
    struct pg_store *s = pgs(base);
    struct pg_conn *c = NULL;
    int err = pool_acquire(s, &c);
    if (err != STORE_OK)
        return err;
    struct num cutoff;
    const char *params[] = {num(&cutoff, now_ms - (int64_t)IDEMPOTENCY_TTL_S * 1000)};
    uint64_t n = 0;
    err = run_cmd(c, S_IDEM_PRUNE, 1, params, "idempotency prune", &n);
    pool_release(s, c);
    if (err == STORE_OK && deleted)
        *deleted = n;
    return err;
}

/* Cheap: 64 small rows of counters and one index lookup (COUNTERS). */
static int pgs_stats(struct store *base, struct store_stats *out)
{
    struct pg_store *s = pgs(base);
    memset(out, 0, sizeof(*out));
    PGresult *res = NULL;
    int err = pool_query(s, S_STATS, 0, NULL, "stats", &res);
    if (err != STORE_OK)
        return err;
    int64_t queue = col_i64(res, 0, 0), dlq = col_i64(res, 0, 1);
    out->queue_depth = queue > 0 ? (uint64_t)queue : 0;
    out->dlq_depth = dlq > 0 ? (uint64_t)dlq : 0;
    out->oldest_enqueued_at_ms = col_i64(res, 0, 2);
    PQclear(res);
    return STORE_OK;
}

static bool pgs_writable(struct store *base)
{
    struct pg_store *s = pgs(base);
    struct pg_conn *c = NULL;
    if (pool_acquire(s, &c) != STORE_OK)
        return false;
    struct num now;
    const char *params[] = {num(&now, ids_now_ms())};
    int err = run_cmd(c, S_HEARTBEAT, 1, params, "readiness", NULL);
    pool_release(s, c);
    return err == STORE_OK;
}

/* ---- queue ------------------------------------------------------------- */

/*
 * Applies settlements (completed / retry / dead letter) in one statement on c
 * and sets each one's result: STORE_OK when its receipt matched, else
 * STORE_ESTALE. *removed counts the messages that left the queue, *dead
 * (may be NULL) those that went to the dead letters.
 */
static int settle_exec(struct pg_conn *c, struct store_settlement *items, size_t n,
                       int64_t now_ms, size_t *removed, size_t *dead)
{
    enum { COLS = 6 };
    struct strbuf a[COLS];
    memset(a, 0, sizeof(a));
    for (size_t i = 0; i < n; i++) {
        const struct store_settlement *it = &items[i];
        int code = it->outcome == STORE_OUTCOME_COMPLETED ? OUT_COMPLETED
                   : it->outcome == STORE_OUTCOME_RETRY   ? OUT_RETRY
                                                          : OUT_DEAD_LETTER;
        arr_text(&a[0], it->order_id);
        arr_i64(&a[1], it->receipt);
        arr_i64(&a[2], code);
        /* note: the fulfilment's result when completed, else the error */
        arr_text(&a[3], code == OUT_COMPLETED ? it->result_json : it->error);
        arr_i64(&a[4], code == OUT_RETRY ? it->visible_at_ms : 0);
        arr_i64(&a[5], it->attempts);
    }
    struct num now, slot;
    const char *params[COLS + 2];
    bool oom = false;
    for (int i = 0; i < COLS; i++)
        oom |= (params[i] = arr_end(&a[i])) == NULL;
    params[COLS] = num(&now, now_ms);
    params[COLS + 1] = num(&slot, c->slot);
    PGresult *res = NULL;
    int err = oom ? STORE_ENOMEM : run(c, S_SETTLE, COLS + 2, params, "settle", &res);
    arrs_free(a, COLS);
    if (err != STORE_OK)
        return err;
    for (size_t i = 0; i < n; i++)
        items[i].result = STORE_ESTALE;
    for (int r = 0; r < PQntuples(res); r++) {
        const char *id = PQgetvalue(res, r, 0);
        int64_t receipt = col_i64(res, r, 1);
        for (size_t i = 0; i < n; i++) {
            struct store_settlement *it = &items[i];
            if (it->result == STORE_ESTALE && it->receipt == receipt &&
                strcmp(it->order_id, id) == 0) {
                it->result = STORE_OK;
                *removed += it->outcome != STORE_OUTCOME_RETRY;
                if (dead && it->outcome == STORE_OUTCOME_DEAD_LETTER)
                    (*dead)++;
                break;
            }
        }
    }
    PQclear(res);
    return STORE_OK;
}

/* Dead-letters the exhausted messages of one claim, under its receipt. */
static void claim_dead_letter(struct pg_conn *c, const PGresult *res, int rows,
                              const bool *exhausted, int64_t receipt, uint32_t max_receives,
                              int64_t now_ms, size_t *dead)
{
    struct store_settlement items[WORKER_BATCH_MAX];
    char (*whys)[STORE_ERROR_TEXT_MAX] = calloc(WORKER_BATCH_MAX, sizeof(*whys));
    if (whys == NULL)
        return;
    size_t m = 0;
    for (int r = 0; r < rows; r++) {
        if (!exhausted[r])
            continue;
        store_lease_exhausted_reason(whys[m], sizeof(whys[m]), max_receives,
                                     PQgetisnull(res, r, 3) ? NULL : PQgetvalue(res, r, 3));
        items[m] = (struct store_settlement){
            .order_id = PQgetvalue(res, r, 0),
            .receipt = receipt,
            .outcome = STORE_OUTCOME_DEAD_LETTER,
            .error = whys[m],
            .attempts = max_receives,
        };
        m++;
    }
    size_t removed = 0;
    if (m > 0 && settle_exec(c, items, m, now_ms, &removed, dead) != STORE_OK)
        log_warn(NULL, "store: %zu exhausted messages stay leased; the next claim after "
                       "their lease dead-letters them", m);
    free(whys);
}

static int pgs_claim(struct store *base, int64_t now_ms, int64_t visibility_timeout_ms, uint32_t max_receives,
                     struct store_message *out, size_t max, size_t *n, size_t *dead_lettered)
{
    struct pg_store *s = pgs(base);
    assert(max >= 1 && max <= WORKER_BATCH_MAX);
    *n = 0;
    *dead_lettered = 0;
    int64_t receipt = 0;
    if (ids_random_bytes(&receipt, sizeof(receipt)) != 0)
        return STORE_EINTERNAL;
    receipt &= INT64_MAX;

    struct pg_conn *c = NULL;
    int err = pool_acquire(s, &c);
    if (err != STORE_OK)
        return err;
    struct num r, now, lease, lim;
    const char *params[] = {num(&r, receipt), num(&now, now_ms), num(&lease, visibility_timeout_ms),
                            num(&lim, (int64_t)max)};
    PGresult *res = NULL;
    err = run(c, S_CLAIM, 4, params, "claim", &res);
    if (err != STORE_OK) {
        pool_release(s, c);
        return err;
    }
    bool exhausted[WORKER_BATCH_MAX] = {false};
    bool any_exhausted = false;
    int rows = PQntuples(res);
    if (rows > (int)max) { /* a bug: the extra leases just expire */
        log_error(NULL, "store: claim: %d rows for at most %zu", rows, max);
        rows = (int)max;
    }
    for (int i = 0; i < rows && err == STORE_OK; i++) {
        uint32_t count = (uint32_t)col_i64(res, i, 1);
        if (count > max_receives) {
            exhausted[i] = any_exhausted = true;
            continue;
        }
        if (PQgetisnull(res, i, 4)) {
            log_error(NULL, "store: claim: message %s has no order row", PQgetvalue(res, i, 0));
            err = STORE_EINTERNAL; /* a message without its order breaks the invariant */
            break;
        }
        struct store_message *m = &out[*n];
        memset(m, 0, sizeof(*m));
        col_copy(res, i, 0, m->order_id, sizeof(m->order_id));
        m->receipt = receipt;
        m->receive_count = count;
        m->customer_id = col_dup(res, i, 4);
        m->items_json = col_dup(res, i, 5);
        col_copy(res, i, 6, m->traceparent, sizeof(m->traceparent));
        m->created_at_ms = col_i64(res, i, 7);
        if (m->customer_id == NULL || m->items_json == NULL) {
            store_message_clear(m);
            err = STORE_ENOMEM;
            break;
        }
        (*n)++;
    }
    if (err == STORE_OK && any_exhausted)
        claim_dead_letter(c, res, rows, exhausted, receipt, max_receives, now_ms, dead_lettered);
    PQclear(res);
    pool_release(s, c);
    if (err != STORE_OK) {
        for (size_t i = 0; i < *n; i++)
            store_message_clear(&out[i]);
        *n = 0;
    }
    return err;
}

/*
 * Every message leaves two dead index entries where each claim starts its
 * scan (the smallest visible_at): the version its claim replaced and the row
 * its settlement deleted. Claims slow down with them until a VACUUM removes
 * them, and autovacuum looks at a table at most once a minute (naptime): so
 * every STORE_PG_VACUUM_EVERY messages this node settles, it vacuums the
 * queue itself — a small table. The VACUUM is sent and not waited for: the
 * connection goes back to the pool with it running, and is lent again only
 * when no other is free (pool_acquire). SKIP_LOCKED: when another node is at
 * it, nothing to do.
 */
static void vacuum_now_and_then(struct pg_store *s, struct pg_conn *c, size_t removed)
{
    uint64_t before = atomic_fetch_add(&s->settled, removed);
    if (before / STORE_PG_VACUUM_EVERY == (before + removed) / STORE_PG_VACUUM_EVERY)
        return;
    if (PQsendQuery(c->pg, "VACUUM (ANALYZE, SKIP_LOCKED) queue")) {
        pthread_mutex_lock(&s->pool_lock);
        c->vacuuming = true;
        pthread_mutex_unlock(&s->pool_lock);
    } else {
        char msg[256];
        one_line(PQerrorMessage(c->pg), msg, sizeof(msg));
        log_warn(NULL, "store: vacuum queue: %s", msg);
    }
}

static int pgs_settle(struct store *base, struct store_settlement *items, size_t n,
                      int64_t now_ms)
{
    struct pg_store *s = pgs(base);
    if (n == 0)
        return STORE_OK;
    struct pg_conn *c = NULL;
    int err = pool_acquire(s, &c);
    if (err != STORE_OK)
        return err;
    size_t removed = 0;
    err = settle_exec(c, items, n, now_ms, &removed, NULL);
    if (err == STORE_OK)
        vacuum_now_and_then(s, c, removed);
    pool_release(s, c);
    return err;
}

/*
 * Runs which with $1 the order ids and $2 the receipts the caller put in a[0]
 * and a[1] (freed here), and $3 the time t; *res, when not NULL, gets the rows.
 */
static int run_on_receipts(struct pg_store *s, enum pstmt which, struct strbuf a[2], int64_t t,
                           const char *where, PGresult **res)
{
    struct num tn;
    const char *params[] = {arr_end(&a[0]), arr_end(&a[1]), num(&tn, t)};
    PGresult *r = NULL;
    int err = params[0] && params[1] ? pool_query(s, which, 3, params, where, &r) : STORE_ENOMEM;
    arrs_free(a, 2);
    if (res != NULL)
        *res = r;
    else
        PQclear(r);
    return err;
}

static int pgs_release(struct store *base, const struct store_message *msgs, size_t n,
                       int64_t now_ms)
{
    struct pg_store *s = pgs(base);
    if (n == 0)
        return STORE_OK;
    struct strbuf a[2];
    memset(a, 0, sizeof(a));
    for (size_t i = 0; i < n; i++) {
        arr_text(&a[0], msgs[i].order_id);
        arr_i64(&a[1], msgs[i].receipt);
    }
    return run_on_receipts(s, S_RELEASE, a, now_ms, "release", NULL);
}

/* Marks each lease STORE_OK when its order is among the rows the UPDATE returned. */
static void mark_extended(PGresult *res, struct store_lease *items, size_t n)
{
    int rows = PQntuples(res);
    for (size_t i = 0; i < n; i++) {
        items[i].result = STORE_ESTALE;
        for (int r = 0; r < rows; r++)
            if (strcmp(PQgetvalue(res, r, 0), items[i].order_id) == 0)
                items[i].result = STORE_OK;
    }
}

static int pgs_extend_leases(struct store *base, struct store_lease *items, size_t n,
                             int64_t now_ms, int64_t visibility_timeout_ms)
{
    struct pg_store *s = pgs(base);
    if (n == 0)
        return STORE_OK;
    struct strbuf a[2];
    memset(a, 0, sizeof(a));
    for (size_t i = 0; i < n; i++) {
        arr_text(&a[0], items[i].order_id);
        arr_i64(&a[1], items[i].receipt);
    }
    PGresult *res = NULL;
    int err = run_on_receipts(s, S_EXTEND, a, now_ms + visibility_timeout_ms, "extend leases", &res);
    if (err == STORE_OK)
        mark_extended(res, items, n);
    PQclear(res);
    return err;
}

static int pgs_next_visible_ms(struct store *base, int64_t *when_ms)
{
    struct pg_store *s = pgs(base);
    PGresult *res = NULL;
    int err = pool_query(s, S_NEXT_VISIBLE, 0, NULL, "next visible", &res);
    if (err != STORE_OK)
        return err;
    /* Never later than the next poll: other nodes enqueue without waking us. */
    int64_t poll = ids_now_ms() + STORE_PG_POLL_MS;
    int64_t when = PQgetisnull(res, 0, 0) ? poll : col_i64(res, 0, 0);
    PQclear(res);
    *when_ms = when < poll ? when : poll;
    return STORE_OK;
}

/* ---- dead letters ------------------------------------------------------ */

static int pgs_list_dead_letters(struct store *base, const char *before_id, size_t limit,
                                 struct store_dead_letter **out, size_t *n)
{
    struct pg_store *s = pgs(base);
    assert(limit >= 1 && limit <= STORE_LIST_LIMIT_MAX);
    struct store_dead_letter *rows = calloc(limit, sizeof(*rows));
    if (rows == NULL)
        return STORE_ENOMEM;
    struct num lim;
    const char *params[] = {before_id ? before_id : CURSOR_NONE, num(&lim, (int64_t)limit)};
    PGresult *res = NULL;
    int err = pool_query(s, S_DLQ_LIST, 2, params, "list dead letters", &res);
    size_t count = 0;
    for (int r = 0; err == STORE_OK && r < PQntuples(res) && count < limit; r++) {
        struct store_dead_letter *d = &rows[count++];
        col_copy(res, r, 0, d->order_id, sizeof(d->order_id));
        d->customer_id = col_dup(res, r, 1);
        d->items_json = col_dup(res, r, 2);
        d->attempts = (uint32_t)col_i64(res, r, 3);
        d->last_error = col_dup(res, r, 4);
        d->created_at_ms = col_i64(res, r, 5);
        d->dead_lettered_at_ms = col_i64(res, r, 6);
        col_copy(res, r, 7, d->traceparent, sizeof(d->traceparent));
        if (d->customer_id == NULL || d->items_json == NULL)
            err = STORE_ENOMEM;
    }
    PQclear(res);
    if (err != STORE_OK) {
        store_dead_letters_free(rows, count);
        return err;
    }
    *out = rows;
    *n = count;
    return STORE_OK;
}

/* Runs a statement whose one row is a count (redrive, delete). */
static int run_count(struct pg_store *s, enum pstmt which, const char *first, int64_t now_ms,
                     const char *where, int64_t *count)
{
    struct pg_conn *c = NULL;
    int err = pool_acquire(s, &c);
    if (err != STORE_OK)
        return err;
    struct num now, slot;
    const char *params[] = {first, num(&now, now_ms), num(&slot, c->slot)};
    PGresult *res = NULL;
    err = run(c, which, 3, params, where, &res);
    pool_release(s, c);
    if (err == STORE_OK)
        *count = col_i64(res, 0, 0);
    PQclear(res);
    return err;
}

static int pgs_redrive(struct store *base, const char *order_id, int64_t now_ms)
{
    int64_t moved = 0;
    int err = run_count(pgs(base), S_REDRIVE_ONE, order_id, now_ms, "redrive", &moved);
    return err == STORE_OK && moved == 0 ? STORE_ENOTFOUND : err;
}

static int pgs_redrive_all(struct store *base, int64_t now_ms, uint64_t *moved)
{
    struct pg_store *s = pgs(base);
    struct num batch;
    num(&batch, REDRIVE_BATCH);
    uint64_t total = 0;
    int64_t n = 0;
    int err;
    do {
        err = run_count(s, S_REDRIVE_BATCH, batch.s, now_ms, "redrive all", &n);
        if (err == STORE_OK)
            total += (uint64_t)n;
    } while (err == STORE_OK && n > 0);
    if (moved)
        *moved = total;
    return err;
}

static int pgs_delete_dead_letter(struct store *base, const char *order_id, int64_t now_ms)
{
    int64_t deleted = 0;
    int err = run_count(pgs(base), S_DLQ_DELETE, order_id, now_ms, "delete dead letter", &deleted);
    return err == STORE_OK && deleted == 0 ? STORE_ENOTFOUND : err;
}

/* ---- maintenance ------------------------------------------------------- */

/* ---- the table store.c dispatches through ------------------------------ */

static const struct store_ops pgs_ops = {
    .name = "postgres",
    .close = pgs_close,
    .enqueue_batch = pgs_enqueue_batch,
    .get_order = pgs_get_order,
    .list_orders = pgs_list_orders,
    .idempotency_get = pgs_idempotency_get,
    .idempotency_prune = pgs_idempotency_prune,
    .stats = pgs_stats,
    .writable = pgs_writable,
    .claim = pgs_claim,
    .settle = pgs_settle,
    .release = pgs_release,
    .extend_leases = pgs_extend_leases,
    .next_visible_ms = pgs_next_visible_ms,
    .list_dead_letters = pgs_list_dead_letters,
    .redrive = pgs_redrive,
    .redrive_all = pgs_redrive_all,
    .delete_dead_letter = pgs_delete_dead_letter,
};
