/*
 * test_retention.c — retention: store_purge_expired against a real store
 * (what each kind deletes and what it leaves, max, the depth counters, the
 * idempotency keys kept, the SQLite file reusing the pages it freed, two
 * sweepers at once, rows locked elsewhere skipped on PostgreSQL) and the sweeper of src/retention.c
 * (a backlog of several batches counted in orderd_retention_deleted_total, retention_set turning it
 * on live, a prompt stop).
 *
 * Time: store cases drive it through now_ms and cutoff_ms from T0 (2023);
 * the sweeper takes ids_now_ms() - duration as its cutoff, so orders
 * finished at T0 are long expired for it under a duration of a day, and
 * orders finished at ids_now_ms() are not.
 *
 * Backends: SQLite in a temp dir by default. With TEST_STORE_DSN set
 * (tests/pg/run.sh builds this file into its store part) every case runs on
 * PostgreSQL from an empty schema, the test's own SQL going through psql;
 * the case about SQLite's file skips itself there.
 */
#include <check.h>
#include <libpq-fe.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bounds.h"
#include "ids.h"
#include "metrics.h"
#include "retention.h"
#include "store.h"
#include "timeouts.h"
#include "tmpdir.h"

Suite *suite_retention(void);

#define T0 INT64_C(1700000000000)
#define DAY_MS UINT64_C(86400000)
#define NO_LIMIT UINT64_MAX
#define LONG_LEASE_MS INT64_C(1000000000)
#define N_OF(a) ((int)(sizeof(a) / sizeof((a)[0])))

/* ---- fixtures ------------------------------------------------------------------------------- */

static char root[512]; /* per tcase, made and removed in the parent */
static char dir[1024]; /* per test, under root */
static char dbpath[1100];
static struct store *st;

/* The PostgreSQL database of this run, or NULL: SQLite. */
static const char *pg_dsn(void)
{
    const char *dsn = getenv("TEST_STORE_DSN");
    return dsn && *dsn ? dsn : NULL;
}

static struct store_options store_opts(void)
{
    return (struct store_options){
        .backend = pg_dsn() ? STORE_BACKEND_POSTGRES : STORE_BACKEND_SQLITE,
        .path = dbpath,
        .dsn = pg_dsn(),
        .durability = DURABILITY_FULL,
    };
}

/* Runs psql -c sql on the test database; its first output line into out. */
static void psql_line(const char *sql, char *out, size_t size)
{
    int fds[2];
    ck_assert_int_eq(pipe(fds), 0);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        dup2(fds[1], STDOUT_FILENO);
        close(fds[0]);
        close(fds[1]);
        execlp("psql", "psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", pg_dsn(),
               "-c", sql, (char *)NULL);
        _exit(127);
    }
    close(fds[1]);
    char buf[4096];
    size_t len = 0;
    ssize_t got;
    while (len + 1 < sizeof(buf) && (got = read(fds[0], buf + len, sizeof(buf) - 1 - len)) > 0)
        len += (size_t)got;
    close(fds[0]);
    buf[len] = '\0';
    int status = 0;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "psql failed on: %s", sql);
    size_t line = strcspn(buf, "\n");
    line = line < size - 1 ? line : size - 1;
    memcpy(out, buf, line);
    out[line] = '\0';
}

/* One integer from the database (the same SQL on both backends). */
static int64_t sql_int(const char *sql)
{
    if (pg_dsn()) {
        char line[64];
        psql_line(sql, line, sizeof(line));
        return strtoll(line, NULL, 10);
    }
    sqlite3 *db = NULL;
    sqlite3_stmt *q = NULL;
    ck_assert_int_eq(sqlite3_open_v2(dbpath, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    ck_assert_int_eq(sqlite3_prepare_v2(db, sql, -1, &q, NULL), SQLITE_OK);
    ck_assert_int_eq(sqlite3_step(q), SQLITE_ROW);
    int64_t v = sqlite3_column_int64(q, 0);
    sqlite3_finalize(q);
    sqlite3_close(db);
    return v;
}

static void make_root(void) { tmpdir_make(root, sizeof(root), NULL, "orderd-test-retention"); }

static void remove_root(void) { tmpdir_remove(root); }

static void setup(void)
{
    tmpdir_make(dir, sizeof(dir), root, "t");
    snprintf(dbpath, sizeof(dbpath), "%s/orderd.db", dir);
    if (pg_dsn()) {
        char none[8];
        psql_line("SET client_min_messages = warning; DROP SCHEMA IF EXISTS public CASCADE; "
                  "CREATE SCHEMA public",
                  none, sizeof(none));
    }
    struct store_options opts = store_opts();
    ck_assert_int_eq(store_open(&opts, &st), STORE_OK);
}

static void teardown(void)
{
    store_close(st);
    st = NULL;
    tmpdir_remove(dir);
}

/* ---- orders made by the tests --------------------------------------------------------------- */

struct order_text {
    char id[ID_ULID_LEN + 1];
    char items[1200];
    char traceparent[TRACEPARENT_LEN + 1];
    char response[96];
};

static unsigned seq;

/* An order created at created_ms (its id's time); items of about pad bytes. */
static void order_make(struct order_text *t, struct store_new_order *o, int64_t created_ms,
                       size_t pad, const char *key)
{
    memset(t, 0, sizeof(*t));
    memset(o, 0, sizeof(*o));
    ck_assert_int_eq(ids_ulid_at((uint64_t)created_ms, t->id), 0);
    ck_assert_uint_lt(pad, sizeof(t->items) - 64);
    snprintf(t->items, sizeof(t->items), "[{\"item\":\"w%0*u\",\"quantity\":1}]",
             (int)(pad > 8 ? pad : 8), ++seq);
    snprintf(t->traceparent, sizeof(t->traceparent), "00-%032x-%016x-01", seq, seq);
    o->order_id = t->id;
    o->customer_id = "cust";
    o->items_json = t->items;
    o->traceparent = t->traceparent;
    o->created_at_ms = created_ms;
    if (key != NULL) {
        snprintf(t->response, sizeof(t->response), "{\"order_id\":\"%s\"}", t->id);
        o->idempotency_key = key;
        o->request_json = "{}";
        o->response_json = t->response;
    }
}

static void enqueue(struct order_text *t, int64_t created_ms, const char *key)
{
    struct store_new_order o;
    order_make(t, &o, created_ms, 8, key);
    ck_assert_int_eq(store_enqueue_batch(st, &o, 1, NO_LIMIT), STORE_OK);
    ck_assert_int_eq(o.result, STORE_OK);
}

/* Claims the one visible message at now (t's, when the caller queued nothing else). */
static int64_t claim_it(const struct order_text *t, int64_t now)
{
    struct store_message m;
    size_t n = 0, dead = 0;
    ck_assert_int_eq(store_claim(st, now, LONG_LEASE_MS, 100, &m, 1, &n, &dead), STORE_OK);
    ck_assert_uint_eq(n, 1);
    ck_assert_str_eq(m.order_id, t->id);
    int64_t receipt = m.receipt;
    store_message_clear(&m);
    return receipt;
}

static void settle(const struct order_text *t, int64_t receipt, enum store_outcome outcome,
                   int64_t now)
{
    struct store_settlement it = {
        .order_id = t->id,
        .receipt = receipt,
        .outcome = outcome,
        .error = outcome == STORE_OUTCOME_DEAD_LETTER ? "boom" : NULL,
        .attempts = 1,
        .result = 1,
    };
    ck_assert_int_eq(store_settle(st, &it, 1, now), STORE_OK);
    ck_assert_int_eq(it.result, STORE_OK);
}

/* An order created at created_ms, then completed or dead-lettered at at_ms.
 * Nothing else may be visible meanwhile: the claim takes the oldest message. */
static void finished(struct order_text *t, int64_t created_ms, enum store_outcome outcome,
                     int64_t at_ms, const char *key)
{
    enqueue(t, created_ms, key);
    settle(t, claim_it(t, at_ms), outcome, at_ms);
}

/* n orders created from created_ms on, all completed at at_ms, pad bytes of items each. */
static void completed_batch(size_t n, int64_t created_ms, int64_t at_ms, size_t pad)
{
    enum { CHUNK = 200 };
    struct order_text *t = calloc(CHUNK, sizeof(*t));
    struct store_new_order *o = calloc(CHUNK, sizeof(*o));
    ck_assert_ptr_nonnull(t);
    ck_assert_ptr_nonnull(o);
    ck_assert_int_ge(at_ms, created_ms + (int64_t)n); /* all visible at at_ms */
    for (size_t done = 0; done < n;) {
        size_t k = n - done < CHUNK ? n - done : CHUNK;
        for (size_t i = 0; i < k; i++)
            order_make(&t[i], &o[i], created_ms + (int64_t)(done + i), pad, NULL);
        ck_assert_int_eq(store_enqueue_batch(st, o, k, NO_LIMIT), STORE_OK);
        for (size_t i = 0; i < k; i++)
            ck_assert_int_eq(o[i].result, STORE_OK);
        done += k;
    }
    free(t);
    free(o);
    struct store_message m[WORKER_BATCH_MAX];
    struct store_settlement s[WORKER_BATCH_MAX];
    size_t total = 0, got = 0, dead = 0;
    do {
        ck_assert_int_eq(
            store_claim(st, at_ms, LONG_LEASE_MS, 100, m, WORKER_BATCH_MAX, &got, &dead), STORE_OK);
        for (size_t i = 0; i < got; i++)
            s[i] = (struct store_settlement){.order_id = m[i].order_id,
                                             .receipt = m[i].receipt,
                                             .outcome = STORE_OUTCOME_COMPLETED,
                                             .attempts = 1};
        if (got > 0)
            ck_assert_int_eq(store_settle(st, s, got, at_ms), STORE_OK);
        for (size_t i = 0; i < got; i++) {
            ck_assert_int_eq(s[i].result, STORE_OK);
            store_message_clear(&m[i]);
        }
        total += got;
    } while (got > 0);
    ck_assert_uint_eq(total, n);
}

static uint64_t purge(enum store_retention_kind kind, int64_t cutoff_ms, size_t max)
{
    uint64_t deleted = 999999;
    ck_assert_int_eq(store_purge_expired(st, kind, cutoff_ms, max, &deleted), STORE_OK);
    return deleted;
}

/* Purges until a batch comes back short; the total. */
static uint64_t purge_all(enum store_retention_kind kind, int64_t cutoff_ms)
{
    uint64_t total = 0, n;
    do {
        n = purge(kind, cutoff_ms, RETENTION_BATCH);
        total += n;
    } while (n == RETENTION_BATCH);
    return total;
}

static void assert_gone(const struct order_text *t)
{
    struct store_order o;
    memset(&o, 0, sizeof(o));
    ck_assert_msg(store_get_order(st, t->id, T0, &o) == STORE_ENOTFOUND, "order %s is still there",
                  t->id);
}

/* The order is there, with the status the API shows at now. */
static void assert_status(const struct order_text *t, int64_t now, const char *status)
{
    struct store_order o;
    memset(&o, 0, sizeof(o));
    ck_assert_msg(store_get_order(st, t->id, now, &o) == STORE_OK, "order %s is gone", t->id);
    ck_assert_str_eq(o.status, status);
    store_order_clear(&o);
}

static void assert_depths(uint64_t queue, uint64_t dlq)
{
    struct store_stats s;
    ck_assert_int_eq(store_stats(st, &s), STORE_OK);
    ck_assert_uint_eq(s.queue_depth, queue);
    ck_assert_uint_eq(s.dlq_depth, dlq);
    /* and they are the row counts */
    ck_assert_int_eq(sql_int("SELECT count(*) FROM queue"), (int64_t)queue);
    ck_assert_int_eq(sql_int("SELECT count(*) FROM dead_letters"), (int64_t)dlq);
}

/* ---- what each kind deletes ----------------------------------------------------------------- */

#define CUTOFF (T0 + 100000)
#define OLD (T0 + 1000)      /* finished before CUTOFF */
#define RECENT (T0 + 200000) /* finished after it */

/*
 * One order in every state, created before the cutoff:
 *   [0] completed long ago        [1] completed recently
 *   [2] dead-lettered long ago    [3] dead-lettered recently
 *   [4] discarded long ago        [5] discarded recently (dead long ago)
 *   [6] dead long ago, redriven: queued again
 *   [7] processing                [8] queued
 */
enum { C_OLD, C_NEW, D_OLD, D_NEW, X_OLD, X_NEW, REDRIVEN, PROCESSING, QUEUED, ALL };

static void every_state(struct order_text t[ALL])
{
    finished(&t[C_OLD], T0 + 1, STORE_OUTCOME_COMPLETED, OLD, NULL);
    finished(&t[C_NEW], T0 + 2, STORE_OUTCOME_COMPLETED, RECENT, NULL);
    finished(&t[D_OLD], T0 + 3, STORE_OUTCOME_DEAD_LETTER, OLD, NULL);
    finished(&t[D_NEW], T0 + 4, STORE_OUTCOME_DEAD_LETTER, RECENT, NULL);
    finished(&t[X_OLD], T0 + 5, STORE_OUTCOME_DEAD_LETTER, OLD, NULL);
    ck_assert_int_eq(store_delete_dead_letter(st, t[X_OLD].id, OLD + 10), STORE_OK);
    finished(&t[X_NEW], T0 + 6, STORE_OUTCOME_DEAD_LETTER, OLD, NULL);
    ck_assert_int_eq(store_delete_dead_letter(st, t[X_NEW].id, RECENT), STORE_OK);
    enqueue(&t[PROCESSING], T0 + 7, NULL);
    claim_it(&t[PROCESSING], T0 + 8);
    finished(&t[REDRIVEN], T0 + 9, STORE_OUTCOME_DEAD_LETTER, OLD, NULL);
    ck_assert_int_eq(store_redrive(st, t[REDRIVEN].id, OLD + 20), STORE_OK);
    enqueue(&t[QUEUED], T0 + 10, NULL);
    assert_depths(3, 2);
}

/* What stays: every order but those in gone[] (a list ended by ALL). */
static void assert_only_gone(const struct order_text t[ALL], const int *gone)
{
    static const char *const status[ALL] = {
        [C_OLD] = "completed",     [C_NEW] = "completed",       [D_OLD] = "dead_lettered",
        [D_NEW] = "dead_lettered", [X_OLD] = "discarded",       [X_NEW] = "discarded",
        [REDRIVEN] = "queued",     [PROCESSING] = "processing", [QUEUED] = "queued",
    };
    for (int i = 0; i < ALL; i++) {
        bool go = false;
        for (const int *g = gone; *g != ALL; g++)
            go |= *g == i;
        if (go)
            assert_gone(&t[i]);
        else
            assert_status(&t[i], T0 + 20, status[i]);
    }
}

START_TEST(completed_deletes_only_expired_completed)
{
    struct order_text t[ALL];
    every_state(t);
    ck_assert_uint_eq(purge(STORE_RETENTION_COMPLETED, CUTOFF, 100), 1);
    assert_only_gone(t, (const int[]){C_OLD, ALL});
    assert_depths(3, 2);
    ck_assert_uint_eq(purge(STORE_RETENTION_COMPLETED, CUTOFF, 100), 0);
    ck_assert_int_eq(sql_int("SELECT count(*) FROM orders"), ALL - 1);
}
END_TEST

START_TEST(dead_letters_deletes_expired_dead_and_discarded)
{
    struct order_text t[ALL];
    every_state(t);
    ck_assert_uint_eq(purge(STORE_RETENTION_DEAD_LETTERS, CUTOFF, 100), 2);
    assert_only_gone(t, (const int[]){D_OLD, X_OLD, ALL});
    assert_depths(3, 1); /* the dead letter's row went with its order */
    ck_assert_uint_eq(purge(STORE_RETENTION_DEAD_LETTERS, CUTOFF, 100), 0);
    ck_assert_int_eq(sql_int("SELECT count(*) FROM orders"), ALL - 2);
}
END_TEST

/* Everything finished, a cutoff after all of it: still nothing queued or processing. */
START_TEST(never_queued_or_processing)
{
    struct order_text t[ALL];
    every_state(t);
    int64_t later = RECENT + 1000;
    ck_assert_uint_eq(purge(STORE_RETENTION_COMPLETED, later, 100), 2);
    ck_assert_uint_eq(purge(STORE_RETENTION_DEAD_LETTERS, later, 100), 4);
    assert_only_gone(t, (const int[]){C_OLD, C_NEW, D_OLD, D_NEW, X_OLD, X_NEW, ALL});
    assert_depths(3, 0);
    /* Once a message expires its lease, the order is merely queued: still kept. */
    ck_assert_uint_eq(purge(STORE_RETENTION_COMPLETED, T0 + LONG_LEASE_MS * 2, 100), 0);
    ck_assert_uint_eq(purge(STORE_RETENTION_DEAD_LETTERS, T0 + LONG_LEASE_MS * 2, 100), 0);
    ck_assert_int_eq(sql_int("SELECT count(*) FROM orders"), 3);
}
END_TEST

/* A redriven order is no dead letter, however long ago it died; completed
 * after the redrive, it goes by its processed_at like any other. */
START_TEST(redriven_is_not_a_dead_letter)
{
    struct order_text t;
    finished(&t, T0, STORE_OUTCOME_DEAD_LETTER, T0 + 10, NULL);
    ck_assert_int_eq(store_redrive(st, t.id, T0 + 20), STORE_OK);
    ck_assert_uint_eq(purge(STORE_RETENTION_DEAD_LETTERS, CUTOFF, 100), 0);
    ck_assert_uint_eq(purge(STORE_RETENTION_COMPLETED, CUTOFF, 100), 0);
    assert_status(&t, T0 + 30, "queued");
    assert_depths(1, 0);
    settle(&t, claim_it(&t, T0 + 30), STORE_OUTCOME_COMPLETED, T0 + 40);
    ck_assert_uint_eq(purge(STORE_RETENTION_DEAD_LETTERS, CUTOFF, 100), 0);
    ck_assert_uint_eq(purge(STORE_RETENTION_COMPLETED, T0 + 40, 100), 0); /* not before */
    ck_assert_uint_eq(purge(STORE_RETENTION_COMPLETED, T0 + 41, 100), 1);
    assert_gone(&t);
    assert_depths(0, 0);
}
END_TEST

/* The cutoff is strict, whatever the id: finished at the cutoff is kept. */
START_TEST(cutoff_is_exclusive)
{
    struct order_text done, dead;
    finished(&done, T0, STORE_OUTCOME_COMPLETED, T0 + 500, NULL);
    finished(&dead, T0 + 1, STORE_OUTCOME_DEAD_LETTER, T0 + 500, NULL);
    ck_assert_uint_eq(purge(STORE_RETENTION_COMPLETED, T0 + 500, 100), 0);
    ck_assert_uint_eq(purge(STORE_RETENTION_DEAD_LETTERS, T0 + 500, 100), 0);
    /* created at the cutoff's millisecond cannot have finished before it */
    ck_assert_uint_eq(purge(STORE_RETENTION_COMPLETED, T0, 100), 0);
    ck_assert_uint_eq(purge(STORE_RETENTION_COMPLETED, T0 + 501, 100), 1);
    ck_assert_uint_eq(purge(STORE_RETENTION_DEAD_LETTERS, T0 + 501, 100), 1);
    assert_depths(0, 0);
    /* A cutoff before 1970 (a 100-year duration) finds nothing, and is no error. */
    finished(&done, T0 + 2, STORE_OUTCOME_COMPLETED, T0 + 600, NULL);
    ck_assert_uint_eq(purge(STORE_RETENTION_COMPLETED, -1000, 100), 0);
    ck_assert_uint_eq(purge(STORE_RETENTION_COMPLETED, 0, 100), 0);
    assert_status(&done, T0 + 700, "completed");
}
END_TEST

/* ---- max, oldest first ---------------------------------------------------------------------- */

START_TEST(completed_respects_max_oldest_first)
{
    enum { N = 10 };
    struct order_text t[N];
    for (int i = 0; i < N; i++)
        finished(&t[i], T0 + i, STORE_OUTCOME_COMPLETED, OLD + (N - i), NULL);
    ck_assert_uint_eq(purge(STORE_RETENTION_COMPLETED, CUTOFF, 3), 3);
    for (int i = 0; i < N; i++) {
        if (i < 3)
            assert_gone(&t[i]);
        else
            assert_status(&t[i], CUTOFF, "completed");
    }
    ck_assert_uint_eq(purge(STORE_RETENTION_COMPLETED, CUTOFF, 1), 1);
    assert_gone(&t[3]);
    ck_assert_uint_eq(purge(STORE_RETENTION_COMPLETED, CUTOFF, 100), N - 4);
    ck_assert_int_eq(sql_int("SELECT count(*) FROM orders"), 0);
}
END_TEST

/* max counts orders: dead letters first, then discarded ones with what is left. */
START_TEST(dead_letters_respects_max)
{
    enum { N = 3 };
    struct order_text dead[N], gone[N];
    for (int i = 0; i < N; i++) {
        finished(&gone[i], T0 + i, STORE_OUTCOME_DEAD_LETTER, OLD, NULL);
        ck_assert_int_eq(store_delete_dead_letter(st, gone[i].id, OLD + 1), STORE_OK);
    }
    for (int i = 0; i < N; i++)
        finished(&dead[i], T0 + 10 + i, STORE_OUTCOME_DEAD_LETTER, OLD, NULL);
    assert_depths(0, N);
    ck_assert_uint_eq(purge(STORE_RETENTION_DEAD_LETTERS, CUTOFF, 2), 2);
    assert_gone(&dead[0]);
    assert_gone(&dead[1]);
    assert_status(&dead[2], CUTOFF, "dead_lettered");
    assert_depths(0, 1);
    ck_assert_uint_eq(purge(STORE_RETENTION_DEAD_LETTERS, CUTOFF, 2), 2);
    assert_gone(&dead[2]);
    assert_gone(&gone[0]);
    assert_status(&gone[1], CUTOFF, "discarded");
    assert_depths(0, 0);
    ck_assert_uint_eq(purge(STORE_RETENTION_DEAD_LETTERS, CUTOFF, 100), N - 1);
    ck_assert_int_eq(sql_int("SELECT count(*) FROM orders"), 0);
}
END_TEST

/* ---- idempotency keys ----------------------------------------------------------------------- */

/* A key outlives its order (store_sqlite_retention.c): a retry within the
 * key's TTL is still answered with the first answer, never a second order. */
START_TEST(idempotency_key_outlives_its_order)
{
    struct order_text t, again;
    finished(&t, T0, STORE_OUTCOME_COMPLETED, T0 + 10, "key-1");
    ck_assert_uint_eq(purge(STORE_RETENTION_COMPLETED, T0 + 20, 100), 1);
    assert_gone(&t);
    struct store_idempotency k;
    ck_assert_int_eq(store_idempotency_get(st, "key-1", T0 + 30, &k), STORE_OK);
    ck_assert_str_eq(k.order_id, t.id);
    store_idempotency_clear(&k);
    struct store_new_order o;
    order_make(&again, &o, T0 + 40, 8, "key-1");
    ck_assert_int_eq(store_enqueue_batch(st, &o, 1, NO_LIMIT), STORE_OK);
    ck_assert_int_eq(o.result, STORE_ECONFLICT);
    assert_depths(0, 0);
}
END_TEST

/* ---- SQLite's file -------------------------------------------------------------------------- */

static off_t file_size(const char *path)
{
    struct stat sb;
    ck_assert_int_eq(stat(path, &sb), 0);
    return sb.st_size;
}

/* Closing checkpoints the WAL into the file and removes it: the file's size
 * is then all there is. */
static off_t closed_size(void)
{
    store_close(st);
    st = NULL;
    off_t size = file_size(dbpath);
    struct store_options opts = store_opts();
    ck_assert_int_eq(store_open(&opts, &st), STORE_OK);
    return size;
}

/*
 * Free-page reuse (auto_vacuum NONE): N orders written and completed, then
 * purged (the file keeps its size, the pages go to the freelist), then N
 * more: the file grows by no more than a small margin, and the freelist
 * shrinks as the new rows take its pages.
 */
START_TEST(sqlite_file_reuses_freed_pages)
{
    if (pg_dsn()) {
        fprintf(stderr, "retention: %s SKIPPED on postgres\n", __func__);
        return;
    }
    enum { N = 3000, PAD = 600 };
    ck_assert_int_eq(sql_int("PRAGMA auto_vacuum"), 0); /* NONE */
    completed_batch(N, T0, T0 + 60000, PAD);
    off_t full = closed_size();
    int64_t pages = sql_int("PRAGMA page_count");
    ck_assert_int_ge(pages, (int64_t)(N * PAD / 4096)); /* the rows are in the file */

    ck_assert_uint_eq(purge_all(STORE_RETENTION_COMPLETED, T0 + 60001), N);
    off_t purged = closed_size();
    int64_t freed = sql_int("PRAGMA freelist_count");
    ck_assert_int_eq(purged, full);          /* nothing given back ... */
    ck_assert_int_ge(freed, pages * 8 / 10); /* ... most pages free for reuse */

    completed_batch(N, T0 + 100000, T0 + 160000, PAD);
    off_t refilled = closed_size();
    int64_t still_free = sql_int("PRAGMA freelist_count");
    fprintf(stderr,
            "retention: %d orders: %lld bytes, purged %lld (%lld free pages), "
            "refilled %lld (%lld free pages)\n",
            N, (long long)full, (long long)purged, (long long)freed, (long long)refilled,
            (long long)still_free);
    ck_assert_int_le(refilled, full + full / 20); /* within 5 % */
    ck_assert_int_lt(still_free, freed / 5);
}
END_TEST

/* ---- two sweepers at once ------------------------------------------------------------------- */

struct sweep_arg {
    struct store *store;
    enum store_retention_kind kind;
    uint64_t deleted;
    int err;
};

static void *sweep_main(void *p)
{
    struct sweep_arg *a = p;
    uint64_t n = 0;
    do {
        a->err = store_purge_expired(a->store, a->kind, CUTOFF, 50, &n);
        a->deleted += n;
    } while (a->err == STORE_OK && n > 0);
    return NULL;
}

/*
 * Two sweepers on one database delete every expired order exactly once and
 * keep the dead-letter count right: on PostgreSQL two stores (= two nodes,
 * SKIP LOCKED), on SQLite two threads on one store (its write lock).
 */
START_TEST(two_sweepers_delete_each_order_once)
{
    enum { N = 600 };
    completed_batch(N, T0, OLD, 40);
    for (int i = 0; i < 40; i++) {
        struct order_text t;
        finished(&t, T0 + N + i, STORE_OUTCOME_DEAD_LETTER, OLD, NULL);
    }
    struct store *other = st;
    if (pg_dsn()) {
        struct store_options opts = store_opts();
        ck_assert_int_eq(store_open(&opts, &other), STORE_OK);
    }
    for (int k = 0; k < STORE_RETENTION_KIND_COUNT; k++) {
        struct sweep_arg a[2] = {{.store = st, .kind = (enum store_retention_kind)k},
                                 {.store = other, .kind = (enum store_retention_kind)k}};
        pthread_t th[2];
        for (int i = 0; i < 2; i++)
            ck_assert_int_eq(pthread_create(&th[i], NULL, sweep_main, &a[i]), 0);
        for (int i = 0; i < 2; i++) {
            ck_assert_int_eq(pthread_join(th[i], NULL), 0);
            ck_assert_int_eq(a[i].err, STORE_OK);
        }
        ck_assert_uint_eq(a[0].deleted + a[1].deleted, k == STORE_RETENTION_COMPLETED ? N : 40);
    }
    if (other != st)
        store_close(other);
    assert_depths(0, 0);
    ck_assert_int_eq(sql_int("SELECT count(*) FROM orders"), 0);
}
END_TEST

/*
 * PostgreSQL: rows another transaction holds (a node's sweep, a redrive) are
 * skipped, not waited for (FOR UPDATE SKIP LOCKED); they go in a later batch.
 */
START_TEST(pg_locked_rows_are_skipped)
{
    if (!pg_dsn()) {
        fprintf(stderr, "retention: %s SKIPPED on sqlite (one writer: nothing to skip)\n",
                __func__);
        return;
    }
    enum { N = 20, HELD = 5 };
    completed_batch(N, T0, OLD, 16);
    struct order_text dead[HELD + 1];
    for (int i = 0; i <= HELD; i++)
        finished(&dead[i], T0 + N + i, STORE_OUTCOME_DEAD_LETTER, OLD, NULL);
    PGconn *other = PQconnectdb(pg_dsn());
    ck_assert_int_eq(PQstatus(other), CONNECTION_OK);
    PGresult *res =
        PQexec(other, "BEGIN; SET lock_timeout = '60s'; "
                      "SELECT 1 FROM orders WHERE status = 'completed' "
                      "ORDER BY order_id LIMIT 5 FOR UPDATE; "
                      "SELECT 1 FROM dead_letters ORDER BY order_id LIMIT 5 FOR UPDATE");
    ck_assert_int_eq(PQresultStatus(res), PGRES_TUPLES_OK);
    PQclear(res);

    double t0 = ids_monotonic_seconds();
    ck_assert_uint_eq(purge(STORE_RETENTION_COMPLETED, CUTOFF, 100), N - HELD);
    ck_assert_uint_eq(purge(STORE_RETENTION_DEAD_LETTERS, CUTOFF, 100), 1);
    ck_assert_msg(ids_monotonic_seconds() - t0 < 10.0, "the purge waited for the locks");
    assert_depths(0, HELD);
    assert_status(&dead[0], CUTOFF, "dead_lettered");
    assert_gone(&dead[HELD]);

    res = PQexec(other, "COMMIT");
    ck_assert_int_eq(PQresultStatus(res), PGRES_COMMAND_OK);
    PQclear(res);
    PQfinish(other);
    ck_assert_uint_eq(purge(STORE_RETENTION_COMPLETED, CUTOFF, 100), HELD);
    ck_assert_uint_eq(purge(STORE_RETENTION_DEAD_LETTERS, CUTOFF, 100), HELD);
    assert_depths(0, 0);
    ck_assert_int_eq(sql_int("SELECT count(*) FROM orders"), 0);
}
END_TEST

/* ---- the sweeper ---------------------------------------------------------------------------- */

/* orderd_retention_deleted_total{table="NAME"} as rendered. */
static uint64_t deleted_metric(struct metrics *m, const char *table)
{
    size_t len = 0;
    char *text = metrics_render(m, &len);
    ck_assert_ptr_nonnull(text);
    char series[96];
    int w =
        snprintf(series, sizeof(series), "orderd_retention_deleted_total{table=\"%s\"} ", table);
    const char *at = strstr(text, series);
    ck_assert_msg(at != NULL, "no series %s", series);
    uint64_t v = strtoull(at + w, NULL, 10);
    free(text);
    return v;
}

/* Waits (up to secs) for the metric to reach want; returns what it is then. */
static uint64_t wait_deleted_at_least(struct metrics *m, const char *table, uint64_t want, int secs)
{
    double until = ids_monotonic_seconds() + secs;
    uint64_t got;
    while ((got = deleted_metric(m, table)) < want && ids_monotonic_seconds() < until)
        usleep(20000);
    ck_assert_msg(got >= want, "%s: %llu deleted after %d s, want %llu", table,
                  (unsigned long long)got, secs, (unsigned long long)want);
    return got;
}

/* The same, and no more than want. */
static void wait_deleted(struct metrics *m, const char *table, uint64_t want, int secs)
{
    uint64_t got = wait_deleted_at_least(m, table, want, secs);
    ck_assert_msg(got == want, "%s: %llu deleted, want %llu", table, (unsigned long long)got,
                  (unsigned long long)want);
}

START_TEST(sweeper_deletes_a_backlog_of_batches)
{
    enum { N = 3 * RETENTION_BATCH + 17 };
    completed_batch(N, T0, T0 + 10000, 16);
    struct order_text recent, dead, queued;
    int64_t now = ids_now_ms();
    finished(&recent, T0 + N, STORE_OUTCOME_COMPLETED, now, NULL); /* created long ago */
    finished(&dead, T0 + N + 1, STORE_OUTCOME_DEAD_LETTER, T0 + 20000, NULL);
    enqueue(&queued, T0 + N + 2, NULL);

    struct metrics *m = NULL;
    ck_assert_int_eq(metrics_new(&m), 0);
    struct retention *r = NULL;
    struct retention_options o = {.completed_ms = DAY_MS, .pause_ms = 1, .interval_ms = 50};
    ck_assert_int_eq(retention_start(st, m, &o, &r), 0);
    wait_deleted(m, "completed", N, 90);
    usleep(200000); /* a few more sweeps: nothing else goes */
    retention_stop(r);
    ck_assert_uint_eq(deleted_metric(m, "completed"), N);
    ck_assert_uint_eq(deleted_metric(m, "dead_letters"), 0);
    assert_status(&recent, now, "completed");
    assert_status(&dead, now, "dead_lettered");
    assert_status(&queued, now, "queued");
    ck_assert_int_eq(sql_int("SELECT count(*) FROM orders"), 3);
    assert_depths(1, 1);
    metrics_free(m);
}
END_TEST

/* Started with both durations 0 (kept forever), a reload turns it on. */
START_TEST(sweeper_set_turns_it_on_live)
{
    enum { N = 30 };
    completed_batch(N, T0, T0 + 1000, 16);
    struct order_text dead;
    finished(&dead, T0 + N, STORE_OUTCOME_DEAD_LETTER, T0 + 2000, NULL);
    struct metrics *m = NULL;
    ck_assert_int_eq(metrics_new(&m), 0);
    struct retention *r = NULL;
    /* a long interval: only retention_set's wake-up can make it sweep soon */
    struct retention_options o = {.pause_ms = 1, .interval_ms = 600000};
    ck_assert_int_eq(retention_start(st, m, &o, &r), 0);
    usleep(300000);
    ck_assert_uint_eq(deleted_metric(m, "completed"), 0);
    ck_assert_int_eq(sql_int("SELECT count(*) FROM orders"), N + 1);

    o.completed_ms = DAY_MS;
    retention_set(r, &o);
    wait_deleted(m, "completed", N, 30);
    assert_status(&dead, T0 + 3000, "dead_lettered");
    o.dead_letters_ms = DAY_MS;
    retention_set(r, &o);
    wait_deleted(m, "dead_letters", 1, 30);
    retention_stop(r);
    assert_gone(&dead);
    assert_depths(0, 0);
    metrics_free(m);
}
END_TEST

static double stop_seconds(struct retention *r)
{
    double t0 = ids_monotonic_seconds();
    retention_stop(r);
    return ids_monotonic_seconds() - t0;
}

/* Stop ends a long sleep at once, and a sweep through a backlog after its batch. */
START_TEST(sweeper_stop_is_prompt)
{
    struct metrics *m = NULL;
    ck_assert_int_eq(metrics_new(&m), 0);
    struct retention *r = NULL;
    struct retention_options o = {.completed_ms = DAY_MS, .interval_ms = 600000};
    ck_assert_int_eq(retention_start(st, m, &o, &r), 0);
    usleep(200000); /* found nothing: asleep for 10 minutes */
    double took = stop_seconds(r);
    ck_assert_msg(took < 5.0, "stop took %.2f s", took);

    enum { N = 4 * RETENTION_BATCH };
    completed_batch(N, T0, T0 + 10000, 16);
    o.pause_ms = 200; /* a backlog it cannot finish before the stop */
    ck_assert_int_eq(retention_start(st, m, &o, &r), 0);
    wait_deleted_at_least(m, "completed", RETENTION_BATCH, 30);
    took = stop_seconds(r);
    ck_assert_msg(took < 5.0, "stop took %.2f s", took);
    uint64_t done = deleted_metric(m, "completed");
    ck_assert_uint_lt(done, N);
    ck_assert_int_eq(sql_int("SELECT count(*) FROM orders"), (int64_t)(N - done));
    metrics_free(m);
}
END_TEST

/* ---- the one list --------------------------------------------------------------------------- */

static TCase *tcase_new(const char *name, int timeout)
{
    TCase *tc = tcase_create(name);
    tcase_add_unchecked_fixture(tc, make_root, remove_root);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, timeout);
    return tc;
}

Suite *suite_retention(void)
{
    Suite *s = suite_create("retention");

    TCase *tc = tcase_new("purge", UNIT_TIMEOUT_IO);
    tcase_add_test(tc, completed_deletes_only_expired_completed);
    tcase_add_test(tc, dead_letters_deletes_expired_dead_and_discarded);
    tcase_add_test(tc, never_queued_or_processing);
    tcase_add_test(tc, redriven_is_not_a_dead_letter);
    tcase_add_test(tc, cutoff_is_exclusive);
    tcase_add_test(tc, completed_respects_max_oldest_first);
    tcase_add_test(tc, dead_letters_respects_max);
    tcase_add_test(tc, idempotency_key_outlives_its_order);
    suite_add_tcase(s, tc);

    tc = tcase_new("file", UNIT_TIMEOUT_THREADED);
    tcase_add_test(tc, sqlite_file_reuses_freed_pages);
    suite_add_tcase(s, tc);

    tc = tcase_new("concurrent", UNIT_TIMEOUT_THREADED);
    tcase_add_test(tc, two_sweepers_delete_each_order_once);
    tcase_add_test(tc, pg_locked_rows_are_skipped);
    suite_add_tcase(s, tc);

    tc = tcase_new("sweeper", UNIT_TIMEOUT_THREADED);
    tcase_add_test(tc, sweeper_deletes_a_backlog_of_batches);
    tcase_add_test(tc, sweeper_set_turns_it_on_live);
    tcase_add_test(tc, sweeper_stop_is_prompt);
    suite_add_tcase(s, tc);

    return s;
}
