/*
 * test_store_pg.c — what only the PostgreSQL backend (src/store_pg.c) has to
 * show, beyond the store suite of tests/unit/test_store.c that tests/pg/run.sh
 * also runs against it: the schema and its migration when several nodes open
 * the database at once, a bad dsn, two stores on one database (= two nodes)
 * that never claim the same message and keep the depth counters exact, the
 * max_depth bound across nodes, the worker poll, the queue's VACUUM, and
 * STORE_EUNAVAILABLE while the server is down, then recovery without a reopen.
 *
 * Needs TEST_STORE_DSN (a database this suite may wipe), and for the restart
 * case TEST_PG_DIR / TEST_PG_BIN (the server tests/pg/lib.sh started). Each
 * test starts from an empty schema, opened as `st`.
 */
#include <check.h>
#include <libpq-fe.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bounds.h"
#include "ids.h"
#include "store.h"
#include "store_int.h"

Suite *suite_store_pg(void);

#define NO_LIMIT UINT64_MAX
#define N_OF(a) ((int)(sizeof(a) / sizeof((a)[0])))

static struct store *st;

static const char *dsn(void)
{
    const char *d = getenv("TEST_STORE_DSN");
    ck_assert_msg(d && *d, "TEST_STORE_DSN is not set (run tests/pg/run.sh)");
    return d;
}

/* ---- the test's own SQL (libpq, not the store) ------------------------------ */

static PGconn *admin(void)
{
    PGconn *c = PQconnectdb(dsn());
    ck_assert_msg(PQstatus(c) == CONNECTION_OK, "connect: %s", PQerrorMessage(c));
    return c;
}

static void sql_exec(const char *sql)
{
    PGconn *c = admin();
    PGresult *r = PQexec(c, sql);
    ck_assert_msg(PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK,
                  "%s: %s", sql, PQerrorMessage(c));
    PQclear(r);
    PQfinish(c);
}

static void sql_text(const char *sql, char *out, size_t size)
{
    PGconn *c = admin();
    PGresult *r = PQexec(c, sql);
    ck_assert_msg(PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1, "%s: %s", sql,
                  PQerrorMessage(c));
    snprintf(out, size, "%s", PQgetisnull(r, 0, 0) ? "(null)" : PQgetvalue(r, 0, 0));
    PQclear(r);
    PQfinish(c);
}

static int64_t sql_int(const char *sql)
{
    char text[64];
    sql_text(sql, text, sizeof(text));
    return strtoll(text, NULL, 10);
}

static void wipe_schema(void)
{
    sql_exec("SET client_min_messages = warning; DROP SCHEMA IF EXISTS public CASCADE; "
             "CREATE SCHEMA public");
}

static struct store_options pg_opts(const char *the_dsn)
{
    return (struct store_options){.backend = STORE_BACKEND_POSTGRES,
                                  .path = "/nonexistent/unused.db",
                                  .dsn = the_dsn,
                                  .durability = DURABILITY_FULL};
}

static struct store *open_pg(void)
{
    struct store_options o = pg_opts(dsn());
    struct store *s = NULL;
    ck_assert_int_eq(store_open(&o, &s), STORE_OK);
    ck_assert_ptr_nonnull(s);
    return s;
}

static void setup(void)
{
    wipe_schema();
    st = open_pg();
}

static void teardown(void)
{
    store_close(st);
    st = NULL;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- orders made by the tests ----------------------------------------------- */

struct order_text {
    char id[ID_ULID_LEN + 1];
    char customer[ORDER_CUSTOMER_ID_MAX + 1];
    char traceparent[TRACEPARENT_LEN + 1];
};

static const char ITEMS[] = "[{\"item\":\"widget\",\"quantity\":1}]";

/* Order number `index` of a test, created at ms; its customer names the index. */
static void order_make(struct order_text *t, struct store_new_order *o, int64_t ms, unsigned index)
{
    memset(t, 0, sizeof(*t));
    memset(o, 0, sizeof(*o));
    ck_assert_int_eq(ids_ulid_at((uint64_t)ms, t->id), 0);
    snprintf(t->customer, sizeof(t->customer), "c%06u", index);
    snprintf(t->traceparent, sizeof(t->traceparent), "00-%032x-%016x-01", index + 1, index + 1);
    o->order_id = t->id;
    o->customer_id = t->customer;
    o->items_json = ITEMS;
    o->traceparent = t->traceparent;
    o->created_at_ms = ms;
    o->result = 1;
}

/* Enqueues orders first..first+n-1 through s in one batch; returns how many fit. */
static size_t enqueue_range(struct store *s, unsigned first, size_t n, uint64_t max_depth)
{
    struct order_text t[COMMIT_BATCH_MAX];
    struct store_new_order o[COMMIT_BATCH_MAX];
    ck_assert_uint_le(n, COMMIT_BATCH_MAX);
    int64_t now = ids_now_ms();
    for (size_t i = 0; i < n; i++)
        order_make(&t[i], &o[i], now, first + (unsigned)i);
    ck_assert_int_eq(store_enqueue_batch(s, o, n, max_depth), STORE_OK);
    size_t ok = 0;
    for (size_t i = 0; i < n; i++) {
        ck_assert(o[i].result == STORE_OK || o[i].result == STORE_EQUEUEFULL);
        ok += o[i].result == STORE_OK;
    }
    return ok;
}

/* ---- schema and open ---------------------------------------------------------- */

START_TEST(open_creates_schema)
{
    char text[512];
    sql_text("SELECT string_agg(table_name, ',' ORDER BY table_name) FROM "
             "information_schema.tables WHERE table_schema = 'public'",
             text, sizeof(text));
    ck_assert_str_eq(text, "dead_letters,heartbeat,idempotency_keys,orders,queue,queue_stats,"
                           "schema_version");
    ck_assert_int_eq(sql_int("SELECT version FROM schema_version"), 3);
    ck_assert_int_eq(sql_int("SELECT count(*) FROM queue_stats"), STORE_PG_STATS_SLOTS);
    /* ULIDs sort and page the same whatever the database's locale. */
    sql_text("SELECT collation_name FROM information_schema.columns WHERE table_name = 'orders' "
             "AND column_name = 'order_id'",
             text, sizeof(text));
    ck_assert_str_eq(text, "C");
    struct store_stats s;
    ck_assert_int_eq(store_stats(st, &s), STORE_OK);
    ck_assert_uint_eq(s.queue_depth, 0);
    ck_assert_uint_eq(s.dlq_depth, 0);
    ck_assert_int_eq(s.oldest_enqueued_at_ms, 0);
    ck_assert(store_writable(st));
}
END_TEST

START_TEST(open_refuses_newer_schema)
{
    store_close(st);
    st = NULL;
    sql_exec("UPDATE schema_version SET version = 4");
    struct store_options o = pg_opts(dsn());
    struct store *s2 = NULL;
    ck_assert_int_eq(store_open(&o, &s2), STORE_EOPEN);
    ck_assert_ptr_null(s2);
}
END_TEST

struct open_thread {
    struct store *s;
    int rc;
};

static void *open_main(void *p)
{
    struct open_thread *a = p;
    struct store_options o = pg_opts(dsn());
    a->rc = store_open(&o, &a->s);
    return NULL;
}

/* Nodes that start together: every open succeeds, the schema is made once. */
START_TEST(concurrent_opens_migrate_once)
{
    enum { NODES = 6 };
    store_close(st);
    st = NULL;
    wipe_schema();
    struct open_thread a[NODES];
    pthread_t th[NODES];
    memset(a, 0, sizeof(a));
    for (int i = 0; i < NODES; i++)
        ck_assert_int_eq(pthread_create(&th[i], NULL, open_main, &a[i]), 0);
    for (int i = 0; i < NODES; i++)
        ck_assert_int_eq(pthread_join(th[i], NULL), 0);
    for (int i = 0; i < NODES; i++) {
        ck_assert_int_eq(a[i].rc, STORE_OK);
        store_close(a[i].s);
    }
    ck_assert_int_eq(sql_int("SELECT count(*) FROM schema_version"), 1);
    ck_assert_int_eq(sql_int("SELECT count(*) FROM queue_stats"), STORE_PG_STATS_SLOTS);
}
END_TEST

static const char *const bad_dsns[] = {
    "",                                      /* none */
    "host = = broken",                       /* not a connection string */
    "postgresql:///orderd_no_such_database", /* filled in with the test server below */
    "host=/nonexistent/socket/dir port=1",   /* no server */
};

START_TEST(open_refuses_bad_dsn)
{
    char d[512];
    snprintf(d, sizeof(d), "%s", bad_dsns[_i]);
    const char *sock = getenv("TEST_PG_SOCK");
    if (_i == 2 && sock)
        snprintf(d, sizeof(d),
                 "postgresql:///orderd_no_such_database?host=%s&port=%s&user=postgres", sock,
                 getenv("TEST_PG_PORT") ? getenv("TEST_PG_PORT") : "5432");
    struct store_options o = pg_opts(d);
    struct store *s2 = NULL;
    double t0 = now_s();
    ck_assert_int_eq(store_open(&o, &s2), STORE_EOPEN);
    ck_assert_ptr_null(s2);
    ck_assert_double_lt(now_s() - t0, 10.0);
}
END_TEST

/* ---- two nodes ------------------------------------------------------------------ */

enum { NODE_ORDERS = 2000, NODE_BATCH = 100, NODE_THREADS = 4 };

struct worker_arg {
    struct store *s;
    _Atomic unsigned *delivered;   /* per order index: completions */
    _Atomic size_t *done;          /* completed in all */
    atomic_int failures;
};

static void *node_worker(void *p)
{
    struct worker_arg *a = p;
    struct store_message m[16];
    struct store_settlement s[16];
    int idle = 0;
    while (atomic_load(a->done) < NODE_ORDERS && idle < 2000) {
        size_t n = 0, dead = 0;
        if (store_claim(a->s, ids_now_ms(), 600000, 5, m, 16, &n, &dead) != STORE_OK || dead) {
            atomic_fetch_add(&a->failures, 1);
            break;
        }
        if (n == 0) {
            idle++;
            usleep(1000);
            continue;
        }
        for (size_t i = 0; i < n; i++) {
            unsigned idx = (unsigned)strtoul(m[i].customer_id + 1, NULL, 10);
            if (idx < NODE_ORDERS)
                atomic_fetch_add(&a->delivered[idx], 1);
            s[i] = (struct store_settlement){.order_id = m[i].order_id,
                                             .receipt = m[i].receipt,
                                             .outcome = STORE_OUTCOME_COMPLETED,
                                             .attempts = m[i].receive_count};
        }
        if (store_settle(a->s, s, n, ids_now_ms()) != STORE_OK)
            atomic_fetch_add(&a->failures, 1);
        for (size_t i = 0; i < n; i++) {
            if (s[i].result != STORE_OK)
                atomic_fetch_add(&a->failures, 1);
            store_message_clear(&m[i]);
        }
        atomic_fetch_add(a->done, n);
    }
    return NULL;
}

/* Two stores on one database, four workers each: every message once. */
START_TEST(two_nodes_never_claim_the_same_message)
{
    struct store *b = open_pg();
    for (unsigned first = 0; first < NODE_ORDERS; first += NODE_BATCH)
        ck_assert_uint_eq(enqueue_range((first / NODE_BATCH) % 2 ? b : st, first, NODE_BATCH,
                                        NO_LIMIT),
                          NODE_BATCH);
    struct store_stats ss;
    ck_assert_int_eq(store_stats(b, &ss), STORE_OK);
    ck_assert_uint_eq(ss.queue_depth, NODE_ORDERS);

    static _Atomic unsigned delivered[NODE_ORDERS];
    static _Atomic size_t done;
    for (int i = 0; i < NODE_ORDERS; i++)
        atomic_init(&delivered[i], 0);
    atomic_init(&done, 0);
    struct worker_arg args[2] = {{.s = st, .delivered = delivered, .done = &done},
                                 {.s = b, .delivered = delivered, .done = &done}};
    atomic_init(&args[0].failures, 0);
    atomic_init(&args[1].failures, 0);
    pthread_t th[2 * NODE_THREADS];
    for (int i = 0; i < 2 * NODE_THREADS; i++)
        ck_assert_int_eq(pthread_create(&th[i], NULL, node_worker, &args[i % 2]), 0);
    for (int i = 0; i < 2 * NODE_THREADS; i++)
        ck_assert_int_eq(pthread_join(th[i], NULL), 0);

    int failures = atomic_load(&args[0].failures) + atomic_load(&args[1].failures);
    ck_assert_int_eq(failures, 0);
    for (int i = 0; i < NODE_ORDERS; i++) {
        unsigned times = atomic_load(&delivered[i]);
        ck_assert_msg(times == 1, "order %d delivered %u times", i, times);
    }
    ck_assert_int_eq(sql_int("SELECT count(*) FROM orders WHERE status = 'completed'"),
                     NODE_ORDERS);
    ck_assert_int_eq(sql_int("SELECT count(*) FROM queue"), 0);
    ck_assert_int_eq(store_stats(st, &ss), STORE_OK);
    ck_assert_uint_eq(ss.queue_depth, 0);
    store_close(b);
}
END_TEST

struct mixed_arg {
    struct store *s;
    unsigned first;               /* order indexes of this thread */
    atomic_int failures;
};

/* Enqueue, then every outcome, redrive and delete, in rounds. */
static void *mixed_main(void *p)
{
    struct mixed_arg *a = p;
    struct store_message m[8];
    struct store_settlement s[8];
    for (unsigned round = 0; round < 15; round++) {
        enqueue_range(a->s, a->first + round * 10, 10, NO_LIMIT);
        size_t n = 0, dead = 0;
        if (store_claim(a->s, ids_now_ms(), 600000, 5, m, 8, &n, &dead) != STORE_OK) {
            atomic_fetch_add(&a->failures, 1);
            continue;
        }
        for (size_t i = 0; i < n; i++)
            s[i] = (struct store_settlement){.order_id = m[i].order_id,
                                             .receipt = m[i].receipt,
                                             .outcome = (enum store_outcome)(i % 3),
                                             .error = i % 3 ? "mixed" : NULL,
                                             .visible_at_ms = ids_now_ms(),
                                             .attempts = 1};
        if (store_settle(a->s, s, n, ids_now_ms()) != STORE_OK)
            atomic_fetch_add(&a->failures, 1);
        if (n > 2 && round % 2 == 0 && store_redrive(a->s, m[2].order_id, ids_now_ms()) != STORE_OK)
            atomic_fetch_add(&a->failures, 1);
        if (n > 5 && round % 2 == 1 &&
            store_delete_dead_letter(a->s, m[5].order_id, ids_now_ms()) != STORE_OK)
            atomic_fetch_add(&a->failures, 1);
        for (size_t i = 0; i < n; i++)
            store_message_clear(&m[i]);
    }
    return NULL;
}

/* The counters (queue_stats) equal the row counts after concurrent work. */
START_TEST(counters_stay_exact_across_nodes)
{
    enum { THREADS = 4 };
    struct store *b = open_pg();
    struct mixed_arg args[THREADS];
    pthread_t th[THREADS];
    for (int i = 0; i < THREADS; i++) {
        args[i] = (struct mixed_arg){.s = i % 2 ? b : st, .first = (unsigned)i * 1000};
        atomic_init(&args[i].failures, 0);
        ck_assert_int_eq(pthread_create(&th[i], NULL, mixed_main, &args[i]), 0);
    }
    for (int i = 0; i < THREADS; i++) {
        ck_assert_int_eq(pthread_join(th[i], NULL), 0);
        int failures = atomic_load(&args[i].failures);
        ck_assert_int_eq(failures, 0);
    }
    struct store_stats s;
    ck_assert_int_eq(store_stats(b, &s), STORE_OK);
    ck_assert_uint_eq(s.queue_depth, (uint64_t)sql_int("SELECT count(*) FROM queue"));
    ck_assert_uint_eq(s.dlq_depth, (uint64_t)sql_int("SELECT count(*) FROM dead_letters"));
    ck_assert_uint_gt(s.dlq_depth, 0);
    uint64_t moved = 0;
    ck_assert_int_eq(store_redrive_all(st, ids_now_ms(), &moved), STORE_OK);
    ck_assert_uint_eq(moved, s.dlq_depth);
    ck_assert_int_eq(store_stats(st, &s), STORE_OK);
    ck_assert_uint_eq(s.dlq_depth, 0);
    ck_assert_uint_eq(s.queue_depth, (uint64_t)sql_int("SELECT count(*) FROM queue"));
    store_close(b);
}
END_TEST

struct depth_arg {
    struct store *s;
    unsigned first;
    unsigned full;                /* batches that found the queue full */
};

static void *depth_main(void *p)
{
    struct depth_arg *a = p;
    for (unsigned i = 0; i < 40 && a->full < 3; i++)
        if (enqueue_range(a->s, a->first + i * 5, 5, 50) < 5)
            a->full++;
    return NULL;
}

/* max_depth across nodes: reached, overshot by at most one batch of the other node. */
START_TEST(max_depth_holds_across_nodes)
{
    struct store *b = open_pg();
    struct depth_arg args[2] = {{.s = st, .first = 0}, {.s = b, .first = 1000}};
    pthread_t th[2];
    for (int i = 0; i < 2; i++)
        ck_assert_int_eq(pthread_create(&th[i], NULL, depth_main, &args[i]), 0);
    for (int i = 0; i < 2; i++)
        ck_assert_int_eq(pthread_join(th[i], NULL), 0);
    ck_assert_uint_eq(args[0].full, 3);
    ck_assert_uint_eq(args[1].full, 3);
    int64_t depth = sql_int("SELECT count(*) FROM queue");
    ck_assert_int_ge(depth, 50);
    ck_assert_int_le(depth, 55);
    struct store_stats s;
    ck_assert_int_eq(store_stats(st, &s), STORE_OK);
    ck_assert_uint_eq(s.queue_depth, (uint64_t)depth);
    store_close(b);
}
END_TEST

/* Idle workers poll: never told to sleep longer than STORE_PG_POLL_MS. */
START_TEST(next_visible_is_at_most_one_poll_away)
{
    int64_t when = 0, before = ids_now_ms();
    ck_assert_int_eq(store_next_visible_ms(st, &when), STORE_OK); /* empty */
    ck_assert_int_ge(when, before + STORE_PG_POLL_MS);
    ck_assert_int_le(when, ids_now_ms() + STORE_PG_POLL_MS);

    struct order_text t;
    struct store_new_order o;
    order_make(&t, &o, before + 3600 * 1000, 1); /* visible in an hour */
    ck_assert_int_eq(store_enqueue_batch(st, &o, 1, NO_LIMIT), STORE_OK);
    ck_assert_int_eq(store_next_visible_ms(st, &when), STORE_OK);
    ck_assert_int_le(when, ids_now_ms() + STORE_PG_POLL_MS);

    order_make(&t, &o, before - 5000, 2); /* visible already */
    ck_assert_int_eq(store_enqueue_batch(st, &o, 1, NO_LIMIT), STORE_OK);
    ck_assert_int_eq(store_next_visible_ms(st, &when), STORE_OK);
    ck_assert_int_eq(when, before - 5000);
}
END_TEST

/* A node that settles STORE_PG_VACUUM_EVERY messages vacuums (and analyzes)
 * the queue, without waiting for it, and goes on working meanwhile. */
START_TEST(settling_vacuums_the_queue)
{
    enum { N = STORE_PG_VACUUM_EVERY + 500 };
    for (unsigned first = 0; first < N; first += COMMIT_BATCH_MAX)
        enqueue_range(st, first, first + COMMIT_BATCH_MAX <= N ? COMMIT_BATCH_MAX : N - first,
                      NO_LIMIT);
    struct store_message m[WORKER_BATCH_MAX];
    struct store_settlement set[WORKER_BATCH_MAX];
    size_t done = 0, n, dead;
    do {
        ck_assert_int_eq(store_claim(st, ids_now_ms(), 600000, 5, m, WORKER_BATCH_MAX, &n, &dead),
                         STORE_OK);
        for (size_t i = 0; i < n; i++)
            set[i] = (struct store_settlement){.order_id = m[i].order_id,
                                               .receipt = m[i].receipt,
                                               .outcome = STORE_OUTCOME_COMPLETED,
                                               .attempts = 1};
        ck_assert_int_eq(store_settle(st, set, n, ids_now_ms()), STORE_OK);
        for (size_t i = 0; i < n; i++) {
            ck_assert_int_eq(set[i].result, STORE_OK);
            store_message_clear(&m[i]);
        }
        done += n;
        /* reads while the VACUUM may still run on one of the pool's connections */
        struct store_stats ss;
        ck_assert_int_eq(store_stats(st, &ss), STORE_OK);
        ck_assert_uint_eq(ss.queue_depth, N - done);
    } while (n > 0);
    ck_assert_uint_eq(done, N);
    /* The server's statistics arrive within a second or so. */
    int64_t vacuums = 0;
    for (int i = 0; i < 50 && vacuums == 0; i++) {
        vacuums = sql_int("SELECT vacuum_count + analyze_count FROM pg_stat_user_tables "
                          "WHERE relname = 'queue'");
        if (vacuums == 0)
            usleep(100 * 1000);
    }
    ck_assert_int_ge(vacuums, 2);
}
END_TEST

/* Text that needs quoting in an array literal goes through unchanged. */
START_TEST(enqueue_keeps_awkward_text)
{
    static const char items[] = "[{\"item\":\"a \\\"quoted\\\" \\\\ back{slash},NULL\","
                                "\"quantity\":1}]";
    struct order_text t;
    struct store_new_order o;
    order_make(&t, &o, ids_now_ms(), 7);
    o.items_json = items;
    o.idempotency_key = "NULL";
    o.request_json = "{\"k\":\"} {\"}";
    o.response_json = "\"";
    ck_assert_int_eq(store_enqueue_batch(st, &o, 1, NO_LIMIT), STORE_OK);
    ck_assert_int_eq(o.result, STORE_OK);
    struct store_order got;
    ck_assert_int_eq(store_get_order(st, t.id, ids_now_ms(), &got), STORE_OK);
    ck_assert_str_eq(got.items_json, items);
    store_order_clear(&got);
    struct store_idempotency r;
    ck_assert_int_eq(store_idempotency_get(st, "NULL", ids_now_ms(), &r), STORE_OK);
    ck_assert_str_eq(r.request_json, "{\"k\":\"} {\"}");
    ck_assert_str_eq(r.response_json, "\"");
    store_idempotency_clear(&r);
}
END_TEST

/* ---- the server goes away ------------------------------------------------------ */

/* Runs pg_ctl ARGS on the test server, as its owner; its exit status. */
static int pg_ctl(const char *args)
{
    const char *dir = getenv("TEST_PG_DIR"), *bin = getenv("TEST_PG_BIN");
    if (dir == NULL || bin == NULL)
        return -1;
    char cmd[2048];
    snprintf(cmd, sizeof(cmd), "%s%s/pg_ctl -D %s/data -l %s/server.log -w -t 60 %s >/dev/null",
             geteuid() == 0 ? "runuser -u postgres -- " : "", bin, dir, dir, args);
    return system(cmd);
}

/* In the parent after the tcase: whatever happened, the server runs again. */
static void server_up(void)
{
    if (pg_ctl("status") != 0)
        pg_ctl("start");
}

START_TEST(unavailable_while_server_down_then_recovers)
{
    if (getenv("TEST_PG_DIR") == NULL) {
        fprintf(stderr, "store_pg: %s SKIPPED: no TEST_PG_DIR\n", __func__);
        return;
    }
    ck_assert_uint_eq(enqueue_range(st, 0, 3, NO_LIMIT), 3);
    char first_id[ID_ULID_LEN + 1];
    sql_text("SELECT min(order_id) FROM orders", first_id, sizeof(first_id));

    ck_assert_int_eq(pg_ctl("stop -m fast"), 0);
    struct order_text t;
    struct store_new_order o;
    order_make(&t, &o, ids_now_ms(), 10);
    ck_assert_int_eq(store_enqueue_batch(st, &o, 1, NO_LIMIT), STORE_EUNAVAILABLE);
    ck_assert_int_eq(o.result, STORE_EUNAVAILABLE);
    /* Every call fails fast while it is down, however many. */
    double t0 = now_s();
    for (int i = 0; i < 50; i++) {
        struct store_order got;
        ck_assert_int_eq(store_get_order(st, first_id, ids_now_ms(), &got), STORE_EUNAVAILABLE);
        struct store_message m[4];
        size_t n = 9, dead = 9;
        ck_assert_int_eq(store_claim(st, ids_now_ms(), 1000, 5, m, 4, &n, &dead),
                         STORE_EUNAVAILABLE);
        ck_assert_uint_eq(n, 0);
        ck_assert(!store_writable(st));
    }
    struct store_stats s;
    ck_assert_int_eq(store_stats(st, &s), STORE_EUNAVAILABLE);
    ck_assert_double_lt(now_s() - t0, 5.0);

    ck_assert_int_eq(pg_ctl("start"), 0);
    /* Back by itself, within the longest backoff and a few tries. */
    t0 = now_s();
    int rc = STORE_EUNAVAILABLE;
    while (rc != STORE_OK && now_s() - t0 < 30) {
        order_make(&t, &o, ids_now_ms(), 11);
        rc = store_enqueue_batch(st, &o, 1, NO_LIMIT);
        if (rc != STORE_OK)
            usleep(100 * 1000);
    }
    ck_assert_int_eq(rc, STORE_OK);
    ck_assert_int_eq(o.result, STORE_OK);
    ck_assert_double_lt(now_s() - t0, (STORE_PG_BACKOFF_MAX_MS + 5000) / 1000.0);
    while (!store_writable(st) && now_s() - t0 < 30)
        usleep(100 * 1000);
    ck_assert(store_writable(st));
    ck_assert_int_eq(store_stats(st, &s), STORE_OK);
    ck_assert_uint_eq(s.queue_depth, 4);
    struct store_order got;
    ck_assert_int_eq(store_get_order(st, first_id, ids_now_ms(), &got), STORE_OK);
    ck_assert_str_eq(got.status, "queued");
    store_order_clear(&got);
}
END_TEST

/*
 * The server ends the store's idle connections (pg_terminate_backend, as a
 * restart or an idle-session timeout does): each one hears a FATAL and the end
 * of its stream while it sits in the pool. The next calls get fresh
 * connections and succeed — the first read and the first write too, not
 * only those after a failure has been paid for.
 */
START_TEST(connections_the_server_closed_are_replaced_before_use)
{
    ck_assert_uint_eq(enqueue_range(st, 0, 1, NO_LIMIT), 1);
    char first_id[ID_ULID_LEN + 1];
    sql_text("SELECT min(order_id) FROM orders", first_id, sizeof(first_id));
    struct store_order got;
    ck_assert_int_eq(store_get_order(st, first_id, ids_now_ms(), &got), STORE_OK);
    store_order_clear(&got);

    /* The store's connections: every client of this database but the query's own. */
    static const char others[] = "FROM pg_stat_activity WHERE datname = current_database() "
                                 "AND pid <> pg_backend_pid() AND backend_type = 'client backend'";
    char count[256], terminate[256];
    snprintf(count, sizeof(count), "SELECT count(*) %s", others);
    snprintf(terminate, sizeof(terminate), "SELECT pg_terminate_backend(pid) %s", others);
    ck_assert_int_ge(sql_int(count), 2); /* the intake connection and a pooled one */
    sql_exec(terminate);
    double t0 = now_s();
    while (sql_int(count) > 0 && now_s() - t0 < 10)
        usleep(20 * 1000);
    ck_assert_int_eq(sql_int(count), 0);

    ck_assert_int_eq(store_get_order(st, first_id, ids_now_ms(), &got), STORE_OK);
    store_order_clear(&got);
    struct order_text t;
    struct store_new_order o;
    order_make(&t, &o, ids_now_ms(), 20);
    ck_assert_int_eq(store_enqueue_batch(st, &o, 1, NO_LIMIT), STORE_OK);
    ck_assert_int_eq(o.result, STORE_OK);
}
END_TEST

/* ---- the one list --------------------------------------------------------------- */

static TCase *tcase_new(const char *name, int timeout)
{
    TCase *tc = tcase_create(name);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, timeout);
    return tc;
}

Suite *suite_store_pg(void)
{
    Suite *s = suite_create("store_pg");

    TCase *tc = tcase_new("pg_open", 60);
    tcase_add_test(tc, open_creates_schema);
    tcase_add_test(tc, open_refuses_newer_schema);
    tcase_add_test(tc, concurrent_opens_migrate_once);
    tcase_add_loop_test(tc, open_refuses_bad_dsn, 0, N_OF(bad_dsns));
    suite_add_tcase(s, tc);

    tc = tcase_new("pg_nodes", 180);
    tcase_add_test(tc, two_nodes_never_claim_the_same_message);
    tcase_add_test(tc, counters_stay_exact_across_nodes);
    tcase_add_test(tc, max_depth_holds_across_nodes);
    tcase_add_test(tc, next_visible_is_at_most_one_poll_away);
    tcase_add_test(tc, enqueue_keeps_awkward_text);
    tcase_add_test(tc, settling_vacuums_the_queue);
    suite_add_tcase(s, tc);

    tc = tcase_new("pg_restart", 120);
    tcase_add_unchecked_fixture(tc, NULL, server_up);
    tcase_add_test(tc, unavailable_while_server_down_then_recovers);
    tcase_add_test(tc, connections_the_server_closed_are_replaced_before_use);
    suite_add_tcase(s, tc);

    return s;
}
