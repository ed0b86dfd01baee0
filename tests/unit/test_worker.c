/*
 * test_worker.c — the workers' choice of where the next batch comes from:
 * messages delivered in memory and a backlog in the store take turns, so
 * neither waits behind the other (worker.c, next_batch()).
 *
 * Real parts: a SQLite store in a temp directory and one real worker thread.
 * The order of processing is read back from the database afterwards
 * (orders.processed_at), so no assertion depends on how fast the machine is.
 *
 * Temp files: one root directory per test case, made and removed in the parent
 * process (unchecked fixture), so a failed or timed-out child leaves nothing.
 */
#include <check.h>
#include <sqlite3.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bounds.h"
#include "ids.h"
#include "metrics.h"
#include "store.h"
#include "tmpdir.h"
#include "worker.h"
#include "timeouts.h"

Suite *suite_worker(void);

#define NO_LIMIT UINT64_MAX
#define WAIT_MS 60000 /* bound on every wait for the worker (sanitizers are slow) */
#define BACKLOG 20000 /* visible in the store before the worker starts */
#define DELIVERED WORKER_HANDOFF_MAX /* written leased, handed over at once */
#define ITEMS_JSON "[{\"item\":\"w\",\"quantity\":1}]"
#define TRACEPARENT "00-0123456789abcdef0123456789abcdef-0123456789abcdef-01"

/* ---- fixtures ------------------------------------------------------------ */

static char root[512];
static char dir[1024];
static char dbpath[1100];
static struct store *st;
static struct metrics *metrics;

static void make_root(void)
{
    tmpdir_make(root, sizeof(root), NULL, "orderd-test-worker");
}

static void remove_root(void)
{
    tmpdir_remove(root);
}

static void setup(void)
{
    tmpdir_make(dir, sizeof(dir), root, "t");
    snprintf(dbpath, sizeof(dbpath), "%s/orderd.db", dir);
    struct store_options opts = {.path = dbpath, .durability = DURABILITY_NORMAL};
    ck_assert_int_eq(store_open(&opts, &st), STORE_OK);
    ck_assert_int_eq(metrics_new(&metrics), 0);
}

static void teardown(void)
{
    metrics_free(metrics);
    metrics = NULL;
    store_close(st);
    st = NULL;
    tmpdir_remove(dir);
}

/* ---- helpers ----------------------------------------------------------------- */

static void sleep_ms(long ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* One integer from a query of the database file, on a connection of our own. */
static int64_t query_int(const char *sql)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *stmt = NULL;
    ck_assert_int_eq(sqlite3_open_v2(dbpath, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    ck_assert_int_eq(sqlite3_prepare_v2(db, sql, -1, &stmt, NULL), SQLITE_OK);
    ck_assert_int_eq(sqlite3_step(stmt), SQLITE_ROW);
    int64_t v = sqlite3_column_int64(stmt, 0);
    sqlite3_finalize(stmt);
    sqlite3_close(db);
    return v;
}

static int64_t count_of(const char *customer, const char *status)
{
    char sql[256];
    snprintf(sql, sizeof(sql),
             "SELECT count(*) FROM orders WHERE customer_id = '%s' AND status = '%s'", customer,
             status);
    return query_int(sql);
}

/* Waits (bounded) until want orders of customer have status; false on timeout. */
static bool wait_count(const char *customer, const char *status, int64_t want)
{
    for (int waited = 0; waited < WAIT_MS; waited += 5) {
        if (count_of(customer, status) == want)
            return true;
        sleep_ms(5);
    }
    return count_of(customer, status) == want;
}

/*
 * Writes n orders of customer through store_enqueue_batch, COMMIT_BATCH_MAX
 * per transaction: visible (receipt 0), or leased under receipt, in which case
 * msgs gets each one as the committer would hand it to the workers.
 */
static void write_orders(const char *customer, size_t n, int64_t receipt,
                         struct store_message *msgs)
{
    static struct store_new_order batch[COMMIT_BATCH_MAX];
    static char ids[COMMIT_BATCH_MAX][ID_ULID_LEN + 1];
    for (size_t done = 0; done < n;) {
        size_t k = n - done < COMMIT_BATCH_MAX ? n - done : COMMIT_BATCH_MAX;
        for (size_t i = 0; i < k; i++) {
            ck_assert_int_eq(ids_ulid_new(ids[i]), 0);
            batch[i] = (struct store_new_order){
                .order_id = ids[i],
                .customer_id = customer,
                .items_json = ITEMS_JSON,
                .traceparent = TRACEPARENT,
                .created_at_ms = ids_now_ms(),
                .lease_receipt = receipt,
                .lease_until_ms = receipt ? ids_now_ms() + 600000 : 0,
            };
        }
        ck_assert_int_eq(store_enqueue_batch(st, batch, k, NO_LIMIT), STORE_OK);
        for (size_t i = 0; msgs != NULL && i < k; i++) {
            struct store_message *m = &msgs[done + i];
            ck_assert_int_eq(batch[i].result, STORE_OK);
            memset(m, 0, sizeof(*m));
            memcpy(m->order_id, ids[i], sizeof(m->order_id));
            snprintf(m->traceparent, sizeof(m->traceparent), "%s", TRACEPARENT);
            m->customer_id = strdup(customer);
            m->items_json = strdup(ITEMS_JSON);
            ck_assert(m->customer_id != NULL && m->items_json != NULL);
            m->receipt = receipt;
            m->receive_count = 1;
            m->created_at_ms = batch[i].created_at_ms;
        }
        done += k;
    }
}

static struct workers *start_one_worker(void)
{
    struct worker_options opts = {
        .count = 1,
        .visibility_timeout_ms = 600000,
        .max_receives = 5,
        .backoff_base_ms = 1000,
        .backoff_max_ms = 60000,
    };
    struct workers *w = NULL;
    ck_assert_int_eq(workers_start(st, metrics, &opts, &w), 0);
    return w;
}

/* ---- tests ------------------------------------------------------------------- */

/*
 * A backlog of BACKLOG visible messages is being claimed when DELIVERED
 * messages are handed over at once. Taking turns means batches of the backlog
 * are settled between the first and the last delivered message: about one
 * claimed batch per delivered batch, DELIVERED in all. Were the store always
 * asked first, the delivered messages would wait until the backlog is gone
 * (no backlog settled in between); were deliveries always taken first, the
 * backlog would wait for the hand-over to empty (at most the batches at the
 * two edges of the window, which share its first and last millisecond).
 */
START_TEST(deliveries_and_a_backlog_take_turns)
{
    write_orders("BACKLOG", BACKLOG, 0, NULL);
    struct workers *w = start_one_worker();

    static struct store_message msgs[DELIVERED];
    ck_assert_uint_eq(workers_reserve(w, DELIVERED), DELIVERED);
    write_orders("FEED", DELIVERED, 4242, msgs);
    workers_deliver(w, msgs, DELIVERED);

    ck_assert_msg(wait_count("FEED", "completed", DELIVERED), "delivered messages not all settled");
    ck_assert_msg(wait_count("BACKLOG", "completed", BACKLOG), "the backlog did not drain");
    workers_stop(w);

    int64_t between = query_int(
        "SELECT count(*) FROM orders WHERE customer_id = 'BACKLOG' AND processed_at BETWEEN "
        "(SELECT min(processed_at) FROM orders WHERE customer_id = 'FEED') AND "
        "(SELECT max(processed_at) FROM orders WHERE customer_id = 'FEED')");
    ck_assert_int_gt(between, DELIVERED / 2);
    ck_assert_int_lt(between, BACKLOG);
    ck_assert_int_eq(query_int("SELECT count(*) FROM queue"), 0);
}
END_TEST

Suite *suite_worker(void)
{
    Suite *s = suite_create("worker");
    TCase *tc = tcase_create("sources");
    tcase_set_timeout(tc, UNIT_TIMEOUT_THREADED);
    tcase_add_unchecked_fixture(tc, make_root, remove_root);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, deliveries_and_a_backlog_take_turns);
    suite_add_tcase(s, tc);
    return s;
}
