/*
 * store_pg.c — the PostgreSQL backend of store.h, for several orderd nodes
 * that share one database behind a load balancer ([storage] backend =
 * postgres; [storage] dsn is a libpq connection string or URI). This half
 * holds the message's transitions — intake with its group commit, claim,
 * settle, release, lease renewal, the dead letters (list, redrive, delete) —
 * and the reads (orders, idempotency keys, stats, readiness), each a call of
 * one statement prepared by store_pg_conn.c on a connection it lends, and the
 * table store.c calls through (store_pg_ops). Any thread: the committer's
 * intake has its own connection, every other caller borrows one from the pool.
 *
 * The schema, the states of a message, every transition and the invariants
 * are written once, at the top of store_sqlite.c: read that first. The tables
 * and columns, the states and transitions, and the fencing (settle, release
 * and lease renewal act only under the current receipt, else STORE_ESTALE)
 * are the same here. What follows is only where PostgreSQL differs.
 *
 * SCHEMA (store_pg_conn.c). Its version is the one row of a table,
 * schema_version, not a pragma: 1..3, where 2 (the order's history through
 * the dead letters) is SQLite's 3 and 3 (fulfilment_result) SQLite's 4. One
 * table more: queue_stats(slot PK, queue, dlq), STORE_PG_STATS_SLOTS rows
 * whose sums are the depths (COUNTERS). Times are BIGINT ms by the caller's
 * clock (now_ms): a lease is "visible_at = now + lease" by the claiming
 * node's clock, so the nodes' clocks must agree (NTP) to well within a
 * lease. Ids and keys are text COLLATE "C", so that ULIDs sort and page the
 * same whatever the database's locale.
 *
 * ONE STATEMENT PER TRANSITION — data-modifying CTEs, so each is one round
 * trip and one (implicit) transaction; the SQL is pstmt_sql in
 * store_pg_conn.c:
 *
 *   enqueue   unnest() of arrays: idempotency keys (INSERT ... ON CONFLICT DO
 *             UPDATE ... WHERE expired RETURNING), orders, queue rows and the
 *             depth counter, for the whole batch. Never written already
 *             leased (store_enqueue_can_lease() is false): the committer
 *             hands nothing to the workers in memory; they claim every message.
 *   claim     SELECT ... WHERE visible_at <= now ORDER BY visible_at LIMIT n
 *             FOR UPDATE SKIP LOCKED (a MATERIALIZED CTE, so that it runs once),
 *             then UPDATE queue ... FROM it RETURNING, joined to the orders:
 *             nodes never take the same message and never wait for each
 *             other. A message whose receive count passed max_receives (its
 *             last lease expired) is then dead-lettered by a second statement
 *             under the same receipt (SQLite: in the claim's transaction);
 *             between the two it is merely leased, so a crash there only
 *             delays the dead-lettering.
 *   settle    completed / retry / dead letter for the whole batch at once;
 *             the rows it returns are the settlements whose receipt matched.
 *   release, extend leases: arrays of (order id, receipt); the rows still
 *             under their receipt. redrive: one, or batches of 500 with SKIP
 *             LOCKED. delete: the order discarded.
 *
 * MAX_DEPTH. The enqueue statement reads the depth (the sum of queue_stats)
 * and writes nothing when depth + batch > max_depth; the batch is then
 * retried in an explicit transaction, order by order, which gives each its
 * own STORE_OK / STORE_EQUEUEFULL / STORE_ECONFLICT exactly as SQLite does.
 * Near the limit the depth is approximate across nodes: two nodes that read it
 * at once may together overshoot by up to one batch each. max_depth guards
 * the disk; it is not a precise quota.
 *
 * COUNTERS. SQLite keeps the depths in memory; here several nodes change
 * them, and they must be cheap to read (every /metrics scrape, every batch)
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
 * DURABILITY. No syncer (store_defers_sync() is false): a 202 is sent only
 * after the COMMIT of its batch returned. The intake connection keeps
 * synchronous_commit as the server has it (on, the default; remote_apply
 * etc. are kept), forcing off to on, when durability is full; with
 * durability normal it runs with synchronous_commit = off. Every other
 * connection (claims, settlements, admin) runs with synchronous_commit =
 * off, the reasoning of SQLite's NORMAL: the WAL is flushed within
 * wal_writer_delay and by the next synchronous commit, and a lost settlement
 * is only a redelivery.
 *
 * THREADS AND CONNECTIONS. No write lock: one intake connection behind
 * intake_lock (the committer is its one caller), plus a pool of
 * STORE_PG_POOL connections lent to one caller at a time for everything
 * else: workers' claims and settlements, HTTP reads, admin and housekeeping.
 * No lock is held in orderd while another connection works: the database
 * orders concurrent writers (row locks, SKIP LOCKED). Each connection has
 * its prepared statements.
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
 * without waiting for it (pg_vacuum_now_and_then). The big tables (orders,
 * idempotency_keys) are left to autovacuum. SQLite has no such step.
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
#include "ids.h"
#include "log.h"
#include "store_pg_int.h"
#include "strbuf.h"

#define REDRIVE_BATCH 500

/* ---- array parameters -------------------------------------------------- */

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

/* Finishes the literals a[0..cols) into params[0..cols); false when memory ran out. */
static bool arr_params(struct strbuf *a, int cols, const char **params)
{
    bool oom = false;
    for (int i = 0; i < cols; i++)
        oom |= (params[i] = arr_end(&a[i])) == NULL;
    return !oom;
}

/* Runs which on c with the literals a[0..cols) (freed here) as $1..$cols and
 * the caller's params[cols..nparams) after them; as pg_run(). */
static int run_arrays(struct pg_conn *c, enum pstmt which, struct strbuf *a, int cols,
                      const char **params, int nparams, const char *where, PGresult **out)
{
    int err =
        arr_params(a, cols, params) ? pg_run(c, which, nparams, params, where, out) : STORE_ENOMEM;
    arrs_free(a, cols);
    return err;
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
    params[COLS] = num(&max, max_depth);
    params[COLS + 1] = num(&ttl, (int64_t)IDEMPOTENCY_TTL_S * 1000);
    params[COLS + 2] = num(&slot, c->slot);
    PGresult *res = NULL;
    int err = run_arrays(c, S_ENQUEUE, a, COLS, params, COLS + 3, "enqueue", &res);
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
    int err = pg_exec_sql(c, "BEGIN", "enqueue", NULL);
    if (err != STORE_OK)
        return err;
    err = pg_run(c, S_DEPTH, 0, NULL, "enqueue depth", &res);
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
        return pg_exec_sql(c, "COMMIT", "enqueue commit", NULL);
    if (c->pg != NULL && PQtransactionStatus(c->pg) != PQTRANS_IDLE &&
        pg_exec_sql(c, "ROLLBACK", "enqueue rollback", NULL) != STORE_OK && c->pg != NULL)
        pg_conn_drop(c);
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
    int err = pg_conn_ready(s, &s->intake);
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

/* A row of pg_order_select into o (its strings malloc'd); shared with the export. */
int pg_read_order_row(const PGresult *r, int row, struct store_order *o)
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
    int err = pg_pool_query(s, S_GET_ORDER, 2, params, "get order", &res);
    if (err == STORE_OK)
        err = PQntuples(res) == 0 ? STORE_ENOTFOUND : pg_read_order_row(res, 0, out);
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
    int err = pg_pool_query(s, list_stmt(f), nparams, params, "list orders", &res);
    size_t count = 0;
    for (int r = 0; err == STORE_OK && r < PQntuples(res) && count < f->limit; r++) {
        err = pg_read_order_row(res, r, &rows[count]);
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
    int err = pg_pool_query(s, S_IDEM_GET, 2, params, "idempotency get", &res);
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
    int err = pg_pool_acquire(s, &c);
    if (err != STORE_OK)
        return err;
    struct num cutoff;
    const char *params[] = {num(&cutoff, now_ms - (int64_t)IDEMPOTENCY_TTL_S * 1000)};
    uint64_t n = 0;
    err = pg_run_cmd(c, S_IDEM_PRUNE, 1, params, "idempotency prune", &n);
    pg_pool_release(s, c);
    if (err == STORE_OK && deleted)
        *deleted = n;
    return err;
}

/* Cheap: STORE_PG_STATS_SLOTS small rows of counters and one index lookup (COUNTERS). */
static int pgs_stats(struct store *base, struct store_stats *out)
{
    struct pg_store *s = pgs(base);
    memset(out, 0, sizeof(*out));
    PGresult *res = NULL;
    int err = pg_pool_query(s, S_STATS, 0, NULL, "stats", &res);
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
    if (pg_pool_acquire(s, &c) != STORE_OK)
        return false;
    struct num now;
    const char *params[] = {num(&now, ids_now_ms())};
    int err = pg_run_cmd(c, S_HEARTBEAT, 1, params, "readiness", NULL);
    pg_pool_release(s, c);
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
    params[COLS] = num(&now, now_ms);
    params[COLS + 1] = num(&slot, c->slot);
    PGresult *res = NULL;
    int err = run_arrays(c, S_SETTLE, a, COLS, params, COLS + 2, "settle", &res);
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
    int err = pg_pool_acquire(s, &c);
    if (err != STORE_OK)
        return err;
    struct num r, now, lease, lim;
    const char *params[] = {num(&r, receipt), num(&now, now_ms), num(&lease, visibility_timeout_ms),
                            num(&lim, (int64_t)max)};
    PGresult *res = NULL;
    err = pg_run(c, S_CLAIM, 4, params, "claim", &res);
    if (err != STORE_OK) {
        pg_pool_release(s, c);
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
    pg_pool_release(s, c);
    if (err != STORE_OK) {
        for (size_t i = 0; i < *n; i++)
            store_message_clear(&out[i]);
        *n = 0;
    }
    return err;
}

static int pgs_settle(struct store *base, struct store_settlement *items, size_t n,
                      int64_t now_ms)
{
    struct pg_store *s = pgs(base);
    if (n == 0)
        return STORE_OK;
    struct pg_conn *c = NULL;
    int err = pg_pool_acquire(s, &c);
    if (err != STORE_OK)
        return err;
    size_t removed = 0;
    err = settle_exec(c, items, n, now_ms, &removed, NULL);
    if (err == STORE_OK)
        pg_vacuum_now_and_then(s, c, removed);
    pg_pool_release(s, c);
    return err;
}

/* Adds one message to the arrays of run_on_receipts: its order id to a[0], its receipt to a[1]. */
static void receipts_add(struct strbuf a[2], const char *order_id, int64_t receipt)
{
    arr_text(&a[0], order_id);
    arr_i64(&a[1], receipt);
}

/*
 * Runs which with $1 the order ids and $2 the receipts of the n messages the
 * caller put in a[0] and a[1] (receipts_add; freed here), and $3 the time t;
 * *res, when not NULL, gets the rows. No statement at all when n is 0.
 */
static int run_on_receipts(struct pg_store *s, enum pstmt which, struct strbuf a[2], size_t n,
                           int64_t t, const char *where, PGresult **res)
{
    if (n == 0)
        return STORE_OK;
    struct num tn;
    const char *params[3];
    bool ok = arr_params(a, 2, params);
    params[2] = num(&tn, t);
    PGresult *r = NULL;
    int err = ok ? pg_pool_query(s, which, 3, params, where, &r) : STORE_ENOMEM;
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
    struct strbuf a[2] = {STRBUF_INIT, STRBUF_INIT};
    for (size_t i = 0; i < n; i++)
        receipts_add(a, msgs[i].order_id, msgs[i].receipt);
    return run_on_receipts(s, S_RELEASE, a, n, now_ms, "release", NULL);
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
    struct strbuf a[2] = {STRBUF_INIT, STRBUF_INIT};
    for (size_t i = 0; i < n; i++)
        receipts_add(a, items[i].order_id, items[i].receipt);
    PGresult *res = NULL;
    int err =
        run_on_receipts(s, S_EXTEND, a, n, now_ms + visibility_timeout_ms, "extend leases", &res);
    if (err == STORE_OK)
        mark_extended(res, items, n);
    PQclear(res);
    return err;
}

static int pgs_next_visible_ms(struct store *base, int64_t *when_ms)
{
    struct pg_store *s = pgs(base);
    PGresult *res = NULL;
    int err = pg_pool_query(s, S_NEXT_VISIBLE, 0, NULL, "next visible", &res);
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
    int err = pg_pool_query(s, S_DLQ_LIST, 2, params, "list dead letters", &res);
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
    int err = pg_pool_acquire(s, &c);
    if (err != STORE_OK)
        return err;
    struct num now, slot;
    const char *params[] = {first, num(&now, now_ms), num(&slot, c->slot)};
    PGresult *res = NULL;
    err = pg_run(c, which, 3, params, where, &res);
    pg_pool_release(s, c);
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

/* ---- the table store.c dispatches through ------------------------------ */

const struct store_ops store_pg_ops = {
    .name = "postgres",
    .close = store_pg_close,
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
    .purge_expired = pgs_purge_expired,
    .export_orders = pgs_export_orders,
    .next_visible_ms = pgs_next_visible_ms,
    .list_dead_letters = pgs_list_dead_letters,
    .redrive = pgs_redrive,
    .redrive_all = pgs_redrive_all,
    .delete_dead_letter = pgs_delete_dead_letter,
};
