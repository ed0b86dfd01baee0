/*
 * test_export.c — store_export() (include/store.h) and the read-only open it
 * runs on (store_options.read_only): every order in order_id order with what
 * GET /orders/{id} shows (the derived "processing", dead letters, discarded
 * orders, redrive history, fulfilment results), the filters (status,
 * customer, created before), one snapshot (orders committed and settled
 * while the export runs, from inside fn or from another thread, are not
 * seen), a nonzero fn stops it, and a read-only store refuses a missing file
 * or another schema version, writes nothing, and exports beside a store
 * that writes (the daemon).
 *
 * Backends: SQLite in a temp dir by default; with TEST_STORE_DSN set
 * (tests/pg/run.sh) the same cases run against PostgreSQL, each from an
 * empty schema, the test's own SQL through libpq. The case about a missing
 * file is SQLite's only.
 *
 * Time: export derives "processing" from leases live at the wall clock's
 * now (it takes no now_ms), so orders here are made around NOW, the wall
 * clock when the test began, and leases last an hour.
 */
#include <check.h>
#include <libpq-fe.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bounds.h"
#include "ids.h"
#include "store.h"
#include "timeouts.h"
#include "tmpdir.h"

Suite *suite_export(void);

#define SCHEMA_SQLITE 4
#define SCHEMA_PG 3
#define NO_LIMIT UINT64_MAX
#define LEASE_MS (3600 * 1000)
#define N_OF(a) ((int)(sizeof(a) / sizeof((a)[0])))

static char root[512]; /* per tcase, made and removed in the parent */
static char dir[1024]; /* per test, under root */
static char dbpath[1100];
static struct store *st; /* the "daemon": a store that writes */
static int64_t NOW;

static const char *pg_dsn(void)
{
    const char *dsn = getenv("TEST_STORE_DSN");
    return dsn && *dsn ? dsn : NULL;
}

static struct store_options opts_for(const char *path, bool read_only)
{
    return (struct store_options){
        .backend = pg_dsn() ? STORE_BACKEND_POSTGRES : STORE_BACKEND_SQLITE,
        .path = path,
        .dsn = pg_dsn(),
        .durability = DURABILITY_NORMAL,
        .read_only = read_only,
    };
}

/* The test's own SQL on PostgreSQL (not through the store). */
static void pg_sql(const char *sql)
{
    PGconn *c = PQconnectdb(pg_dsn());
    ck_assert_msg(PQstatus(c) == CONNECTION_OK, "connect: %s", PQerrorMessage(c));
    PGresult *r = PQexec(c, sql);
    ck_assert_msg(PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK,
                  "%s: %s", sql, PQerrorMessage(c));
    PQclear(r);
    PQfinish(c);
}

/* The test's own SQL on the SQLite file. */
static void sqlite_sql(const char *sql)
{
    sqlite3 *db = NULL;
    ck_assert_int_eq(sqlite3_open(dbpath, &db), SQLITE_OK);
    char *msg = NULL;
    int rc = sqlite3_exec(db, sql, NULL, NULL, &msg);
    ck_assert_msg(rc == SQLITE_OK, "%s: %s", sql, msg ? msg : "");
    sqlite3_close(db);
}

/* The first column of the first row of sql, as a number (either backend). */
static int64_t sql_int(const char *sql)
{
    int64_t v = -1;
    if (pg_dsn()) {
        PGconn *c = PQconnectdb(pg_dsn());
        ck_assert_msg(PQstatus(c) == CONNECTION_OK, "connect: %s", PQerrorMessage(c));
        PGresult *r = PQexec(c, sql);
        ck_assert_msg(PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1, "%s: %s", sql,
                      PQerrorMessage(c));
        v = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
        PQclear(r);
        PQfinish(c);
        return v;
    }
    sqlite3 *db = NULL;
    sqlite3_stmt *st_ = NULL;
    ck_assert_int_eq(sqlite3_open_v2(dbpath, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    ck_assert_int_eq(sqlite3_prepare_v2(db, sql, -1, &st_, NULL), SQLITE_OK);
    ck_assert_int_eq(sqlite3_step(st_), SQLITE_ROW);
    v = sqlite3_column_int64(st_, 0);
    sqlite3_finalize(st_);
    sqlite3_close(db);
    return v;
}

static void make_root(void) { tmpdir_make(root, sizeof(root), NULL, "orderd-test-export"); }

static void remove_root(void) { tmpdir_remove(root); }

static void setup(void)
{
    tmpdir_make(dir, sizeof(dir), root, "t");
    snprintf(dbpath, sizeof(dbpath), "%s/orderd.db", dir);
    if (pg_dsn())
        pg_sql("SET client_min_messages = warning; DROP SCHEMA IF EXISTS public CASCADE; "
               "CREATE SCHEMA public");
    struct store_options o = opts_for(dbpath, false);
    ck_assert_int_eq(store_open(&o, &st), STORE_OK);
    NOW = ids_now_ms();
}

static void teardown(void)
{
    store_close(st);
    st = NULL;
    tmpdir_remove(dir);
}

static struct store *open_read_only(void)
{
    struct store_options o = opts_for(dbpath, true);
    struct store *ro = NULL;
    ck_assert_int_eq(store_open(&o, &ro), STORE_OK);
    return ro;
}

/* ---- orders --------------------------------------------------------------------------------- */

struct made {
    char id[ID_ULID_LEN + 1];
    char customer[32];
    char items[64];
    char traceparent[TRACEPARENT_LEN + 1];
};

static unsigned seq;

/* n orders of customer created at first_ms, first_ms + 1, ... in one batch into s. */
static void enqueue_n(struct store *s, struct made *m, size_t n, int64_t first_ms,
                      const char *customer)
{
    struct store_new_order *o = calloc(n, sizeof(*o));
    ck_assert_ptr_nonnull(o);
    for (size_t i = 0; i < n; i++) {
        ck_assert_int_eq(ids_ulid_at((uint64_t)(first_ms + (int64_t)i), m[i].id), 0);
        snprintf(m[i].customer, sizeof(m[i].customer), "%s", customer);
        snprintf(m[i].items, sizeof(m[i].items), "[{\"item\":\"widget\",\"quantity\":%u}]",
                 ++seq % 100 + 1);
        snprintf(m[i].traceparent, sizeof(m[i].traceparent), "00-%032x-%016x-01", seq + 1, seq + 1);
        o[i] = (struct store_new_order){.order_id = m[i].id,
                                        .customer_id = m[i].customer,
                                        .items_json = m[i].items,
                                        .traceparent = m[i].traceparent,
                                        .created_at_ms = first_ms + (int64_t)i,
                                        .result = 1};
    }
    ck_assert_int_eq(store_enqueue_batch(s, o, n, NO_LIMIT), STORE_OK);
    for (size_t i = 0; i < n; i++)
        ck_assert_int_eq(o[i].result, STORE_OK);
    free(o);
}

/* Claims the one visible message, which must be id; returns its receipt. */
static int64_t claim_one(const char *id)
{
    struct store_message m;
    size_t n = 0, dead = 0;
    ck_assert_int_eq(store_claim(st, NOW + 1000, LEASE_MS, 100, &m, 1, &n, &dead), STORE_OK);
    ck_assert_uint_eq(n, 1);
    ck_assert_str_eq(m.order_id, id);
    int64_t receipt = m.receipt;
    store_message_clear(&m);
    return receipt;
}

static void settle_one(const char *id, int64_t receipt, enum store_outcome outcome,
                       const char *note)
{
    struct store_settlement it = {.order_id = id,
                                  .receipt = receipt,
                                  .outcome = outcome,
                                  .error = outcome == STORE_OUTCOME_COMPLETED ? NULL : note,
                                  .result_json = outcome == STORE_OUTCOME_COMPLETED ? note : NULL,
                                  .attempts = 1,
                                  .result = 1};
    ck_assert_int_eq(store_settle(st, &it, 1, NOW + 2000), STORE_OK);
    ck_assert_int_eq(it.result, STORE_OK);
}

/*
 * One order in each state, each created 10 ms after the one before, in this
 * order (so their ids ascend): completed (with a fulfilment result),
 * dead_lettered, discarded, processing, a queued one redriven from the dead
 * letters, and a queued one never claimed. Customers alternate "even" /
 * "odd". Each is claimed right after it is made: the only visible message.
 */
enum { S_COMPLETED, S_DEAD, S_DISCARDED, S_PROCESSING, S_REDRIVEN, S_QUEUED, S_N };
static const char *const state_status[S_N] = {"completed",  "dead_lettered", "discarded",
                                              "processing", "queued",        "queued"};
static struct made states[S_N];

static void make_states(void)
{
    for (int i = 0; i < S_N; i++) {
        enqueue_n(st, &states[i], 1, NOW + 10 * i, i % 2 ? "odd" : "even");
        const char *id = states[i].id;
        if (i == S_QUEUED)
            continue;
        int64_t r = claim_one(id);
        switch (i) {
        case S_COMPLETED:
            settle_one(id, r, STORE_OUTCOME_COMPLETED, "{\"ok\":true}");
            break;
        case S_DEAD:
            settle_one(id, r, STORE_OUTCOME_DEAD_LETTER, "boom");
            break;
        case S_DISCARDED:
            settle_one(id, r, STORE_OUTCOME_DEAD_LETTER, "gone");
            ck_assert_int_eq(store_delete_dead_letter(st, id, NOW + 3000), STORE_OK);
            break;
        case S_PROCESSING:
            break; /* leased for an hour */
        case S_REDRIVEN:
            settle_one(id, r, STORE_OUTCOME_DEAD_LETTER, "try again");
            ck_assert_int_eq(store_redrive(st, id, NOW + 3000), STORE_OK);
            break;
        }
    }
}

/* ---- what an export hands over ------------------------------------------------------------- */

struct seen {
    size_t n, cap;
    struct store_order *orders; /* copies */
    int stop_at;                /* fn returns 42 on this call (1-based); 0: never */
    void (*on_first)(void);     /* run inside the first call */
};

static char *dup_or_null(const char *s) { return s ? strdup(s) : NULL; }

static int collect(void *arg, const struct store_order *o)
{
    struct seen *s = arg;
    if (s->n == 0 && s->on_first)
        s->on_first();
    if (s->n == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 16;
        s->orders = realloc(s->orders, s->cap * sizeof(*s->orders));
        ck_assert_ptr_nonnull(s->orders);
    }
    struct store_order *c = &s->orders[s->n++];
    *c = *o;
    c->customer_id = dup_or_null(o->customer_id);
    c->items_json = dup_or_null(o->items_json);
    c->last_error = dup_or_null(o->last_error);
    c->previous_error = dup_or_null(o->previous_error);
    c->fulfilment_result = dup_or_null(o->fulfilment_result);
    return s->stop_at > 0 && (int)s->n == s->stop_at ? 42 : 0;
}

static void seen_free(struct seen *s)
{
    store_orders_free(s->orders, s->n);
    memset(s, 0, sizeof(*s));
}

static int export_into(struct store *s, const char *status, const char *customer, int64_t before_ms,
                       struct seen *out)
{
    struct store_export_filter f = {
        .status = status, .customer_id = customer, .before_ms = before_ms};
    return store_export(s, &f, collect, out);
}

static bool has_id(const struct seen *s, const char *id)
{
    for (size_t i = 0; i < s->n; i++)
        if (strcmp(s->orders[i].order_id, id) == 0)
            return true;
    return false;
}

static void assert_ascending(const struct seen *s)
{
    for (size_t i = 1; i < s->n; i++)
        ck_assert_msg(strcmp(s->orders[i - 1].order_id, s->orders[i].order_id) < 0,
                      "order %zu (%s) does not come after %s", i, s->orders[i].order_id,
                      s->orders[i - 1].order_id);
}

static void assert_str_or_null(const char *got, const char *want, const char *what)
{
    if (want == NULL)
        ck_assert_msg(got == NULL, "%s: got '%s', want NULL", what, got);
    else
        ck_assert_msg(got != NULL && strcmp(got, want) == 0, "%s: got '%s', want '%s'", what,
                      got ? got : "(null)", want);
}

/* The exported order is the one GET /orders/{id} reads. */
static void assert_as_get(struct store *s, const struct store_order *e)
{
    struct store_order g;
    ck_assert_int_eq(store_get_order(s, e->order_id, ids_now_ms(), &g), STORE_OK);
    ck_assert_str_eq(e->status, g.status);
    assert_str_or_null(e->customer_id, g.customer_id, "customer_id");
    assert_str_or_null(e->items_json, g.items_json, "items");
    ck_assert_uint_eq(e->attempts, g.attempts);
    ck_assert_int_eq(e->created_at_ms, g.created_at_ms);
    ck_assert_int_eq(e->processed_at_ms, g.processed_at_ms);
    assert_str_or_null(e->last_error, g.last_error, "last_error");
    ck_assert_str_eq(e->traceparent, g.traceparent);
    ck_assert_uint_eq(e->redrives, g.redrives);
    ck_assert_int_eq(e->redriven_at_ms, g.redriven_at_ms);
    ck_assert_uint_eq(e->previous_attempts, g.previous_attempts);
    assert_str_or_null(e->previous_error, g.previous_error, "previous_error");
    ck_assert_int_eq(e->discarded_at_ms, g.discarded_at_ms);
    assert_str_or_null(e->fulfilment_result, g.fulfilment_result, "fulfilment_result");
    store_order_clear(&g);
}

/* ---- every order, as GET shows it ----------------------------------------------------------- */

START_TEST(export_every_order_in_id_order)
{
    /* committed out of id order: later ids in the first batch */
    struct made late[40], early[25];
    enqueue_n(st, late, 40, NOW + 1000, "c");
    enqueue_n(st, early, 25, NOW - 1000, "c");
    struct seen s = {0};
    ck_assert_int_eq(export_into(st, NULL, NULL, 0, &s), STORE_OK);
    ck_assert_uint_eq(s.n, 65);
    assert_ascending(&s);
    ck_assert_str_eq(s.orders[0].order_id, early[0].id);
    ck_assert_str_eq(s.orders[64].order_id, late[39].id);
    for (size_t i = 0; i < s.n; i++) {
        ck_assert_str_eq(s.orders[i].status, "queued");
        ck_assert_str_eq(s.orders[i].customer_id, "c");
    }
    seen_free(&s);
}
END_TEST

START_TEST(export_empty_store)
{
    struct seen s = {0};
    ck_assert_int_eq(export_into(st, NULL, NULL, 0, &s), STORE_OK);
    ck_assert_uint_eq(s.n, 0);
}
END_TEST

START_TEST(export_shows_each_state_as_get_does)
{
    make_states();
    struct seen s = {0};
    ck_assert_int_eq(export_into(st, NULL, NULL, 0, &s), STORE_OK);
    ck_assert_uint_eq(s.n, S_N);
    for (int i = 0; i < S_N; i++) {
        ck_assert_str_eq(s.orders[i].order_id, states[i].id);
        ck_assert_str_eq(s.orders[i].status, state_status[i]);
        assert_as_get(st, &s.orders[i]);
    }
    assert_str_or_null(s.orders[S_COMPLETED].fulfilment_result, "{\"ok\":true}", "result");
    assert_str_or_null(s.orders[S_DEAD].last_error, "boom", "dead letter's error");
    ck_assert_int_eq(s.orders[S_DISCARDED].discarded_at_ms, NOW + 3000);
    ck_assert_uint_eq(s.orders[S_PROCESSING].attempts, 1);
    ck_assert_uint_eq(s.orders[S_REDRIVEN].redrives, 1);
    assert_str_or_null(s.orders[S_REDRIVEN].previous_error, "try again", "previous_error");
    seen_free(&s);
}
END_TEST

/* ---- filters ----------------------------------------------------------------------------------
 */

static const char *const statuses[] = {"queued", "processing", "completed", "dead_lettered",
                                       "discarded"};

START_TEST(export_filters_by_status)
{
    const char *want = statuses[_i];
    make_states();
    struct seen s = {0};
    ck_assert_int_eq(export_into(st, want, NULL, 0, &s), STORE_OK);
    size_t expected = 0;
    for (int i = 0; i < S_N; i++) {
        bool match = strcmp(state_status[i], want) == 0;
        expected += match;
        ck_assert_msg(has_id(&s, states[i].id) == match, "%s: order %d (%s) %s", want, i,
                      state_status[i], match ? "missing" : "exported");
    }
    ck_assert_uint_eq(s.n, expected);
    for (size_t i = 0; i < s.n; i++)
        ck_assert_str_eq(s.orders[i].status, want);
    assert_ascending(&s);
    seen_free(&s);
}
END_TEST

START_TEST(export_filters_by_customer_and_status)
{
    make_states();
    struct made other[30];
    enqueue_n(st, other, 30, NOW + 100, "someone-else");
    struct seen s = {0};
    ck_assert_int_eq(export_into(st, NULL, "odd", 0, &s), STORE_OK);
    ck_assert_uint_eq(s.n, 3); /* dead_lettered, processing, queued */
    ck_assert_str_eq(s.orders[0].order_id, states[S_DEAD].id);
    ck_assert_str_eq(s.orders[1].order_id, states[S_PROCESSING].id);
    ck_assert_str_eq(s.orders[2].order_id, states[S_QUEUED].id);
    seen_free(&s);

    ck_assert_int_eq(export_into(st, "queued", "even", 0, &s), STORE_OK);
    ck_assert_uint_eq(s.n, 1);
    ck_assert_str_eq(s.orders[0].order_id, states[S_REDRIVEN].id);
    seen_free(&s);

    ck_assert_int_eq(export_into(st, "queued", "someone-else", 0, &s), STORE_OK);
    ck_assert_uint_eq(s.n, 30);
    assert_ascending(&s);
    seen_free(&s);

    ck_assert_int_eq(export_into(st, NULL, "nobody", 0, &s), STORE_OK);
    ck_assert_uint_eq(s.n, 0);
}
END_TEST

START_TEST(export_filters_created_before)
{
    struct made m[20];
    enqueue_n(st, m, 20, NOW, "c"); /* created at NOW .. NOW + 19 */
    struct seen s = {0};
    ck_assert_int_eq(export_into(st, NULL, NULL, NOW + 7, &s), STORE_OK);
    ck_assert_uint_eq(s.n, 7); /* strictly before */
    ck_assert_str_eq(s.orders[6].order_id, m[6].id);
    seen_free(&s);
    ck_assert_int_eq(export_into(st, NULL, NULL, NOW, &s), STORE_OK);
    ck_assert_uint_eq(s.n, 0);
    ck_assert_int_eq(export_into(st, "queued", "c", NOW + 1000, &s), STORE_OK);
    ck_assert_uint_eq(s.n, 20);
    seen_free(&s);
}
END_TEST

/* ---- one snapshot -----------------------------------------------------------------------------
 */

/*
 * More orders than any page a paging export might read at a time: the
 * writes made meanwhile land after the first pages (the last order, new
 * ids), where only one snapshot keeps them out.
 */
#define SNAP_N 2500
static struct made *snap_orders; /* SNAP_N; the last one (the newest id) dead-lettered */
static struct made snap_new[5];

/* Before the export: the last order is made first, as the one message to
 * claim, and dead-lettered; the others are made after it with older ids. */
static void make_snapshot_orders(void)
{
    snap_orders = calloc(SNAP_N, sizeof(*snap_orders));
    ck_assert_ptr_nonnull(snap_orders);
    enqueue_n(st, &snap_orders[SNAP_N - 1], 1, NOW, "c");
    settle_one(snap_orders[SNAP_N - 1].id, claim_one(snap_orders[SNAP_N - 1].id),
               STORE_OUTCOME_DEAD_LETTER, "boom");
    enqueue_n(st, snap_orders, SNAP_N - 1, NOW - 10000, "c");
}

/* Inside the export's first call: new orders, and the last one redriven. */
static void write_during_export(void)
{
    enqueue_n(st, snap_new, 5, NOW + 60000, "c");
    ck_assert_int_eq(store_redrive(st, snap_orders[SNAP_N - 1].id, NOW + 1000), STORE_OK);
}

START_TEST(export_is_one_snapshot_despite_writes_from_fn)
{
    make_snapshot_orders();
    struct seen s = {.on_first = write_during_export};
    ck_assert_int_eq(export_into(st, NULL, NULL, 0, &s), STORE_OK);
    ck_assert_uint_eq(s.n, SNAP_N);
    assert_ascending(&s);
    ck_assert_str_eq(s.orders[SNAP_N - 1].order_id, snap_orders[SNAP_N - 1].id);
    ck_assert_str_eq(s.orders[SNAP_N - 1].status, "dead_lettered"); /* when it began */
    for (int i = 0; i < 5; i++)
        ck_assert(!has_id(&s, snap_new[i].id));
    seen_free(&s);

    /* the next export sees them */
    ck_assert_int_eq(export_into(st, NULL, NULL, 0, &s), STORE_OK);
    ck_assert_uint_eq(s.n, SNAP_N + 5);
    ck_assert_str_eq(s.orders[SNAP_N - 1].status, "queued");
    ck_assert_uint_eq(s.orders[SNAP_N - 1].redrives, 1);
    seen_free(&s);
    free(snap_orders);
}
END_TEST

/* Another thread commits (through the writing store) while the export,
 * on a read-only store, waits inside its first call. */
static struct store *writer_store;
static struct made thread_orders[50];

static void *writer_main(void *arg)
{
    (void)arg;
    for (int i = 0; i < 5; i++)
        enqueue_n(writer_store, &thread_orders[i * 10], 10, NOW + 100000 + i * 10, "t");
    ck_assert_int_eq(store_redrive(writer_store, snap_orders[SNAP_N - 1].id, NOW + 1000), STORE_OK);
    return NULL;
}

static void write_from_thread(void)
{
    pthread_t th;
    ck_assert_int_eq(pthread_create(&th, NULL, writer_main, NULL), 0);
    ck_assert_int_eq(pthread_join(th, NULL), 0);
}

START_TEST(export_read_only_beside_a_writer_is_one_snapshot)
{
    make_snapshot_orders();
    struct store *ro = open_read_only();
    writer_store = st;
    struct seen s = {.on_first = write_from_thread};
    ck_assert_int_eq(export_into(ro, NULL, NULL, 0, &s), STORE_OK);
    ck_assert_uint_eq(s.n, SNAP_N);
    assert_ascending(&s);
    ck_assert_str_eq(s.orders[SNAP_N - 1].status, "dead_lettered");
    for (int i = 0; i < 50; i++)
        ck_assert(!has_id(&s, thread_orders[i].id));
    seen_free(&s);
    /* a new export of the same read-only store sees what was committed since */
    ck_assert_int_eq(export_into(ro, NULL, NULL, 0, &s), STORE_OK);
    ck_assert_uint_eq(s.n, SNAP_N + 50);
    ck_assert_str_eq(s.orders[SNAP_N - 1].status, "queued");
    seen_free(&s);
    store_close(ro);
    free(snap_orders);
}
END_TEST

/* ---- stopping ----------------------------------------------------------------------------------
 */

START_TEST(export_stops_when_fn_says_so)
{
    struct made m[30];
    enqueue_n(st, m, 30, NOW, "c");
    struct seen s = {.stop_at = 3};
    ck_assert_int_eq(export_into(st, NULL, NULL, 0, &s), 42);
    ck_assert_uint_eq(s.n, 3);
    seen_free(&s);
    /* nothing was left open: the store writes and exports as before */
    struct made more[1];
    enqueue_n(st, more, 1, NOW + 100, "c");
    ck_assert_int_eq(export_into(st, NULL, NULL, 0, &s), STORE_OK);
    ck_assert_uint_eq(s.n, 31);
    seen_free(&s);
}
END_TEST

/* ---- the read-only store ------------------------------------------------------------------------
 */

START_TEST(read_only_reads_and_refuses_writes)
{
    make_states();
    struct store *ro = open_read_only();
    struct store_order o;
    ck_assert_int_eq(store_get_order(ro, states[S_DEAD].id, ids_now_ms(), &o), STORE_OK);
    ck_assert_str_eq(o.status, "dead_lettered");
    store_order_clear(&o);
    struct store_stats stats;
    ck_assert_int_eq(store_stats(ro, &stats), STORE_OK);
    ck_assert_uint_eq(stats.dlq_depth, 1);

    struct store_new_order n = {.order_id = "01ARZ3NDEKTSV4RRFFQ69G5FAV",
                                .customer_id = "x",
                                .items_json = "[]",
                                .traceparent = states[0].traceparent,
                                .created_at_ms = NOW};
    ck_assert_int_eq(store_enqueue_batch(ro, &n, 1, NO_LIMIT), STORE_EINTERNAL);
    ck_assert(!store_writable(ro));
    ck_assert_int_eq(store_redrive(ro, states[S_DEAD].id, NOW), STORE_EINTERNAL);
    store_close(ro);

    /* nothing changed: the dead letter is still one */
    ck_assert_int_eq(store_get_order(st, states[S_DEAD].id, ids_now_ms(), &o), STORE_OK);
    ck_assert_str_eq(o.status, "dead_lettered");
    store_order_clear(&o);
    ck_assert_int_eq(store_get_order(st, n.order_id, ids_now_ms(), &o), STORE_ENOTFOUND);
}
END_TEST

START_TEST(read_only_refuses_a_missing_file)
{
    if (pg_dsn()) {
        fprintf(stderr, "export: %s SKIPPED on postgres\n", __func__);
        return;
    }
    char missing[1200];
    snprintf(missing, sizeof(missing), "%s/nothing-here.db", dir);
    struct store_options o = opts_for(missing, true);
    struct store *ro = NULL;
    ck_assert_int_eq(store_open(&o, &ro), STORE_EOPEN);
    ck_assert_ptr_null(ro);
    struct stat sb;
    ck_assert_int_ne(stat(missing, &sb), 0); /* not created */
}
END_TEST

/* Another schema version: older (the daemon has not migrated it yet) and newer. */
START_TEST(read_only_refuses_another_schema_version)
{
    int version = _i == 0 ? (pg_dsn() ? SCHEMA_PG : SCHEMA_SQLITE) - 1
                          : (pg_dsn() ? SCHEMA_PG : SCHEMA_SQLITE) + 1;
    char sql[128];
    if (pg_dsn()) {
        snprintf(sql, sizeof(sql), "UPDATE schema_version SET version = %d", version);
        pg_sql(sql);
    } else {
        snprintf(sql, sizeof(sql), "PRAGMA user_version = %d", version);
        sqlite_sql(sql);
    }
    struct store_options o = opts_for(dbpath, true);
    struct store *ro = NULL;
    ck_assert_int_eq(store_open(&o, &ro), STORE_EOPEN);
    ck_assert_ptr_null(ro);
    /* and when it is right again, it opens */
    snprintf(sql, sizeof(sql),
             pg_dsn() ? "UPDATE schema_version SET version = %d" : "PRAGMA user_version = %d",
             pg_dsn() ? SCHEMA_PG : SCHEMA_SQLITE);
    if (pg_dsn())
        pg_sql(sql);
    else
        sqlite_sql(sql);
    ck_assert_int_eq(store_open(&o, &ro), STORE_OK);
    store_close(ro);
}
END_TEST

START_TEST(read_only_refuses_a_database_without_schema)
{
    store_close(st);
    st = NULL;
    if (pg_dsn()) {
        pg_sql("SET client_min_messages = warning; DROP SCHEMA IF EXISTS public CASCADE; "
               "CREATE SCHEMA public");
    } else {
        char side[1200];
        ck_assert_int_eq(unlink(dbpath), 0);
        snprintf(side, sizeof(side), "%s-wal", dbpath);
        unlink(side);
        snprintf(side, sizeof(side), "%s-shm", dbpath);
        unlink(side);
        sqlite_sql("CREATE TABLE unrelated (x)");
    }
    struct store_options o = opts_for(dbpath, true);
    struct store *ro = NULL;
    ck_assert_int_eq(store_open(&o, &ro), STORE_EOPEN);
    /* and creates none */
    ck_assert_int_eq(sql_int(pg_dsn() ? "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"
                                      : "SELECT count(*) FROM sqlite_schema"),
                     pg_dsn() ? 0 : 1);
    struct store_options w = opts_for(dbpath, false);
    ck_assert_int_eq(store_open(&w, &st), STORE_OK); /* the daemon would: teardown closes it */
}
END_TEST

Suite *suite_export(void)
{
    Suite *s = suite_create("export");
    TCase *tc = tcase_create("export");
    tcase_add_unchecked_fixture(tc, make_root, remove_root);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, UNIT_TIMEOUT_IO);
    tcase_add_test(tc, export_every_order_in_id_order);
    tcase_add_test(tc, export_empty_store);
    tcase_add_test(tc, export_shows_each_state_as_get_does);
    tcase_add_loop_test(tc, export_filters_by_status, 0, N_OF(statuses));
    tcase_add_test(tc, export_filters_by_customer_and_status);
    tcase_add_test(tc, export_filters_created_before);
    tcase_add_test(tc, export_is_one_snapshot_despite_writes_from_fn);
    tcase_add_test(tc, export_read_only_beside_a_writer_is_one_snapshot);
    tcase_add_test(tc, export_stops_when_fn_says_so);
    suite_add_tcase(s, tc);

    tc = tcase_create("read_only");
    tcase_add_unchecked_fixture(tc, make_root, remove_root);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, UNIT_TIMEOUT_IO);
    tcase_add_test(tc, read_only_reads_and_refuses_writes);
    tcase_add_test(tc, read_only_refuses_a_missing_file);
    tcase_add_loop_test(tc, read_only_refuses_another_schema_version, 0, 2);
    tcase_add_test(tc, read_only_refuses_a_database_without_schema);
    suite_add_tcase(s, tc);
    return s;
}
