/*
 * store_pg_conn.c — the half of the PostgreSQL backend that opens and keeps
 * the database: the schema and its migrations (schema_version 1..3), the
 * statements prepared on every connection (pstmt_sql: the SQL of each
 * transition store_pg.c runs, and the listings), the connections (libpq
 * parameters, the session's synchronous_commit and plan_cache_mode, its slot
 * of queue_stats), reconnecting with a backoff and noticing idle connections
 * the server closed, the pool lent to one caller at a time, the queue's
 * VACUUM now and then, and running a statement with its error mapped to
 * store.h's codes. A store opened read_only (orderd export) migrates
 * nothing and writes nothing: see open_read_only().
 *
 * store_pg_open() runs once at start (main thread), store_pg_close() at the
 * end; the rest runs on whichever thread a transition of store_pg.c runs on:
 * the committer holds the intake connection (intake_lock), workers, HTTP
 * threads and housekeeping borrow pool connections (pool_lock), and one
 * caller at a time probes a database that is down (link_lock).
 *
 * Why it is built this way — COUNTERS, MIGRATIONS, DURABILITY, THREADS AND
 * CONNECTIONS, PLANS, VACUUM, WHEN THE DATABASE GOES AWAY — is the essay at
 * the top of store_pg.c; the capitals in the comments below name its sections.
 */
#include <poll.h>

#include "ids.h"
#include "log.h"
#include "store_pg_int.h"

#define SCHEMA_VERSION 3
#define STORE_PG_LOCK_ID "8030604196226347009" /* 0x6f72646572640001: "orderd" 0 1 */
#define STORE_PG_SLOT_NS "1869767794"          /* 0x6f726472: "ordr", with the slot */

/* ---- schema ------------------------------------------------------------ */

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

_Static_assert(STORE_PG_STATS_SLOTS == 128, "schema_v1 creates slots 0..127 of queue_stats");

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

/*
 * The steps of migrate(), version 1 first: each runs its schema change, then
 * stamps the version it leaves, in migrate()'s one transaction. A later
 * version is a schema_vN above and one row more here.
 */
static const struct migration {
    const char *sql;
    const char *stamp;
    const char *where;
} migrations[] = {
    {schema_v1, "DELETE FROM schema_version; INSERT INTO schema_version VALUES (1)",
     "migrate to 1"},
    {schema_v2, "UPDATE schema_version SET version = 2", "migrate to 2"},
    {schema_v3, "UPDATE schema_version SET version = 3", "migrate to 3"},
};
_Static_assert(sizeof(migrations) / sizeof(migrations[0]) == SCHEMA_VERSION,
               "one step of migrations[] per schema version");

/* ---- statements -------------------------------------------------------- */

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

/* The statements prepared on every connection (conn_session), one per transition
 * or read of store_pg.c (ONE STATEMENT PER TRANSITION); enum pstmt names them. */
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

/* The head of every read of orders and the status it shows (store_pg_export.c). */
const char pg_order_select[] = "SELECT " ORDER_COLUMNS;
const char pg_status_expr[] = STATUS_EXPR;

/* The statements that write: a read-only store (store_options.read_only)
 * refuses them in pg_run() before the server would (its session is
 * read-only too). */
static const bool pstmt_writes[S_COUNT] = {
    [S_ENQUEUE] = true,    [S_CLAIM] = true,       [S_SETTLE] = true,        [S_RELEASE] = true,
    [S_EXTEND] = true,     [S_REDRIVE_ONE] = true, [S_REDRIVE_BATCH] = true, [S_DLQ_DELETE] = true,
    [S_IDEM_PRUNE] = true, [S_HEARTBEAT] = true,
};

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

void pg_conn_drop(struct pg_conn *c)
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
        pg_conn_drop(c);
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
int pg_run(struct pg_conn *c, enum pstmt which, int nparams, const char *const *params,
           const char *where, PGresult **out)
{
    char name[16];
    stmt_name(which, name);
    if (c->read_only && pstmt_writes[which]) {
        log_error(NULL, "store: %s: the store was opened read-only", where);
        *out = NULL;
        return STORE_EINTERNAL;
    }
    PGresult *res = PQexecPrepared(c->pg, name, nparams, params, NULL, NULL, 0);
    int err = check(c, res, where);
    *out = err == STORE_OK ? res : NULL;
    return err;
}

/* Runs a prepared statement whose rows are not needed; *affected may be NULL. */
int pg_run_cmd(struct pg_conn *c, enum pstmt which, int nparams, const char *const *params,
               const char *where, uint64_t *affected)
{
    PGresult *res = NULL;
    int err = pg_run(c, which, nparams, params, where, &res);
    if (err == STORE_OK && affected)
        *affected = strtoull(PQcmdTuples(res), NULL, 10);
    PQclear(res);
    return err;
}

/* Runs plain SQL without parameters (BEGIN, COMMIT, migrations). */
int pg_exec_sql(struct pg_conn *c, const char *sql, const char *where, PGresult **out)
{
    PGresult *res = PQexec(c->pg, sql);
    int err = check(c, res, where);
    if (out)
        *out = err == STORE_OK ? res : NULL;
    else if (err == STORE_OK)
        PQclear(res);
    return err;
}

/* SQL that is not prepared, with parameters (the export's DECLARE ... CURSOR). */
int pg_exec_params(struct pg_conn *c, const char *sql, int nparams, const char *const *params,
                   const char *where, PGresult **out)
{
    PGresult *res = PQexecParams(c->pg, sql, nparams, NULL, params, NULL, NULL, 0);
    int err = check(c, res, where);
    if (out)
        *out = err == STORE_OK ? res : NULL;
    else if (err == STORE_OK)
        PQclear(res);
    return err;
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
    /* Read-only (orderd export): no slot of queue_stats (it only counts
     * writes), so no advisory lock; the server refuses writes too. */
    if (s->read_only)
        sql = "SELECT 0, set_config('default_transaction_read_only', 'on', false), "
              "set_config('plan_cache_mode', 'force_custom_plan', false)";
    PGresult *res = NULL;
    int err = pg_exec_sql(c, sql, "session", &res);
    if (err != STORE_OK)
        return err;
    c->slot = (int)col_i64(res, 0, 0);
    c->read_only = s->read_only;
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
        pg_conn_drop(c);
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
    pg_conn_drop(c);
}

/*
 * Makes sure c is connected: STORE_OK, or STORE_EUNAVAILABLE at once while
 * the database is backing off or another caller probes it (WHEN THE DATABASE
 * GOES AWAY).
 */
int pg_conn_ready(struct pg_store *s, struct pg_conn *c)
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

/* Waits for the end of the VACUUM that c was left running (pg_vacuum_now_and_then). */
static void vacuum_wait(struct pg_conn *c)
{
    PGresult *res;
    while (c->pg != NULL && (res = PQgetResult(c->pg)) != NULL)
        if (check(c, res, "vacuum queue") == STORE_OK)
            PQclear(res);
    c->vacuuming = false;
}

/*
 * Every message leaves two dead index entries where each claim starts its
 * scan (the smallest visible_at): the version its claim replaced and the row
 * its settlement deleted. Claims slow down with them until a VACUUM removes
 * them, and autovacuum looks at a table at most once a minute (naptime): so
 * every STORE_PG_VACUUM_EVERY messages this node settles, it vacuums the
 * queue itself — a small table. The VACUUM is sent and not waited for: the
 * connection goes back to the pool with it running, and is lent again only
 * when no other is free (pg_pool_acquire). SKIP_LOCKED: when another node is
 * at it, nothing to do.
 */
void pg_vacuum_now_and_then(struct pg_store *s, struct pg_conn *c, size_t removed)
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

/* Lends a pool connection, connected: STORE_OK with *out, or STORE_EUNAVAILABLE.
 * A connection still running a VACUUM is taken only when no other is free. */
int pg_pool_acquire(struct pg_store *s, struct pg_conn **out)
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
    int err = pg_conn_ready(s, c);
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

void pg_pool_release(struct pg_store *s, struct pg_conn *c)
{
    /* Every call ends its transaction; a connection left in one is not reused. */
    if (c->pg != NULL && !c->vacuuming && PQtransactionStatus(c->pg) != PQTRANS_IDLE) {
        log_error(NULL, "store: a pool connection was left inside a transaction; closing it");
        pg_conn_drop(c);
    }
    pthread_mutex_lock(&s->pool_lock);
    assert(c->busy);
    c->busy = false;
    pthread_cond_signal(&s->pool_free);
    pthread_mutex_unlock(&s->pool_lock);
}

/* One statement on a pooled connection: acquire, run, release. *out is the
 * result (caller PQclears it) when STORE_OK. */
int pg_pool_query(struct pg_store *s, enum pstmt which, int nparams, const char *const *params,
                  const char *where, PGresult **out)
{
    struct pg_conn *c = NULL;
    int err = pg_pool_acquire(s, &c);
    if (err != STORE_OK)
        return err;
    err = pg_run(c, which, nparams, params, where, out);
    pg_pool_release(s, c);
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
    int err = pg_exec_sql(c,
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
    for (int64_t v = version < 0 ? 0 : version; v < SCHEMA_VERSION; v++) {
        const struct migration *m = &migrations[v];
        err = pg_exec_sql(c, m->sql, m->where, NULL);
        if (err == STORE_OK)
            err = pg_exec_sql(c, m->stamp, m->where, NULL);
        if (err != STORE_OK)
            goto rollback;
    }
    if (version < 1)
        log_info(NULL, "store: created postgres schema version %d", SCHEMA_VERSION);
    else if (version < SCHEMA_VERSION)
        log_info(NULL, "store: migrated the postgres schema from version %" PRId64 " to %d",
                 version, SCHEMA_VERSION);
    return pg_exec_sql(c, "COMMIT", "migrate commit", NULL);

rollback:
    if (c->pg != NULL && PQtransactionStatus(c->pg) != PQTRANS_IDLE)
        PQclear(PQexec(c->pg, "ROLLBACK"));
    return err;
}

static void pgs_destroy(struct pg_store *s);

/*
 * store_options.read_only (orderd export beside running nodes): one pool
 * connection now, the others when a read needs them; the schema must be at
 * SCHEMA_VERSION and is not migrated (that takes the migration's advisory
 * lock, a write); no intake connection; each session is read-only and
 * takes no slot of queue_stats (see conn_session).
 */
static int open_read_only(struct pg_store *s)
{
    struct pg_conn *c = &s->pool[0];
    int err = conn_connect(s, c);
    PGresult *res = NULL;
    if (err == STORE_OK)
        err = pg_exec_sql(c, "SELECT to_regclass('schema_version') IS NOT NULL", "schema", &res);
    if (err != STORE_OK)
        return err;
    bool has_schema = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
    PQclear(res);
    int64_t version = 0;
    if (has_schema) {
        err =
            pg_exec_sql(c, "SELECT coalesce(max(version), 0) FROM schema_version", "schema", &res);
        if (err != STORE_OK)
            return err;
        version = col_i64(res, 0, 0);
        PQclear(res);
    }
    if (version != SCHEMA_VERSION) {
        log_error(NULL,
                  "store: postgres database %s has schema %" PRId64 ", this orderd reads %d: %s",
                  PQdb(c->pg), version, SCHEMA_VERSION,
                  version < SCHEMA_VERSION ? "run the daemon once to migrate it"
                                           : "read it with the orderd that wrote it");
        return STORE_EOPEN;
    }
    return conn_session(s, c);
}

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
    s->base.ops = &store_pg_ops;
    s->durability = opts->durability;
    s->read_only = opts->read_only;
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
    if (err == STORE_OK && s->read_only) {
        err = open_read_only(s);
        if (err != STORE_OK) {
            pgs_destroy(s);
            return STORE_EOPEN;
        }
        *out = &s->base;
        return STORE_OK;
    }
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
        pg_conn_drop(&s->pool[i]);
    }
    pg_conn_drop(&s->intake);
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

void store_pg_close(struct store *base)
{
    pgs_destroy(pgs(base));
}
