/*
 * test_worker.c — the workers (worker.c, worker_inflight.c) through their
 * public face, worker.h:
 *   - the hand-over's places: workers_reserve() grants at most the free places
 *     of WORKER_HANDOFF_MAX (delivered messages not yet taken hold theirs),
 *     workers_unreserve() gives them back, and it grants none with a
 *     fulfilment (command or URL) or once workers_stop() has begun;
 *   - delivery: messages written leased and handed over with workers_deliver()
 *     are completed without a claim (receive count stays 1), through the ring
 *     more than once over, and the workers free their strings;
 *   - the choice of source: deliveries and a backlog in the store take turns;
 *   - stop: the leases of claimed and of delivered messages not yet processed
 *     are released (visible at once, the receive given back);
 *   - workers_wake(): a worker asleep with nothing due claims what was written
 *     visible meanwhile;
 *   - a fulfilment command: /bin/true completes, /bin/false is retried and
 *     dead-lettered at max_receives, a command failing once completes at the
 *     second attempt.
 *
 * Real parts: a SQLite store in a temp directory and real worker threads (and
 * real child processes for the commands). Outcomes are read back from the
 * database file on a connection of the test's own; every wait polls it with a
 * deadline of WAIT_MS, and no assertion depends on how fast the machine is.
 *
 * Determinism where a worker must be at a known point:
 *   - held in its first batch: a stored order that fails validation again
 *     makes the worker write a warning, and fd 2 is then a full pipe (the
 *     gate), so that write blocks until the test drains the pipe. The test
 *     reads /proc/self/task/TID/syscall until the worker sits in write(2):
 *     from then on it takes nothing, so what is delivered stays in the
 *     hand-over and what it claimed with the invalid order stays unprocessed.
 *   - asleep: the same file shows the worker in futex(2) for several looks in
 *     a row while nothing else runs, i.e. in its condition wait.
 *   - stopping: workers_stop() runs on a thread of its own (it waits for the
 *     held worker) and the test waits until workers_reserve() grants nothing
 *     although places are free; only then is the gate opened.
 * ASan/LSan check the ownership of delivered strings: the test never frees
 * them, so a leak or a double free in the workers fails the case.
 *
 * Temp files: one root directory per test case, made and removed in the parent
 * process (unchecked fixture), so a failed or timed-out child leaves nothing.
 */
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include "bounds.h"
#include "ids.h"
#include "log.h"
#include "metrics.h"
#include "store.h"
#include "timeouts.h"
#include "tmpdir.h"
#include "worker.h"

Suite *suite_worker(void);

#define NO_LIMIT UINT64_MAX
#define WAIT_MS 60000                /* bound on every wait for a worker (TSan on 2 busy cores) */
#define BACKLOG 20000                /* visible in the store before the worker starts */
#define DELIVERED WORKER_HANDOFF_MAX /* written leased, handed over at once */
#define THROUGH_RING (2 * WORKER_HANDOFF_MAX + WORKER_HANDOFF_MAX / 2) /* delivered in all */
#define CHUNK 200                                                      /* delivered at a time */
#define HANDED 100 /* delivered while the worker is held */
#define HELD 5     /* claimed behind the invalid order while the worker is held */
#define ITEMS_JSON "[{\"item\":\"w\",\"quantity\":1}]"
#define INVALID_ITEMS "[]" /* fails validation again: items must not be empty */
#define TRACEPARENT "00-0123456789abcdef0123456789abcdef-0123456789abcdef-01"
#define LEASE_MS 600000 /* of messages written leased: no claim can take them meanwhile */

/* ---- fixtures ------------------------------------------------------------ */

static char root[512];
static char dir[1024];
static char dbpath[1100];
static struct store *st;
static struct metrics *metrics;

static void make_root(void) { tmpdir_make(root, sizeof(root), NULL, "orderd-test-worker"); }

static void remove_root(void) { tmpdir_remove(root); }

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

/* A command that does not read its stdin closes the pipe: ignore SIGPIPE as main does. */
static void setup_fulfilment(void)
{
    signal(SIGPIPE, SIG_IGN);
    setup();
}

/* ---- helpers ----------------------------------------------------------------- */

static void sleep_ms(long ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static double deadline_in(long ms) { return ids_monotonic_seconds() + (double)ms / 1000.0; }

static bool passed(double deadline) { return ids_monotonic_seconds() >= deadline; }

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

/* How many orders of customer match cond (SQL over orders o and queue q, LEFT JOINed). */
static int64_t count_where(const char *customer, const char *cond)
{
    char sql[512];
    snprintf(sql, sizeof(sql),
             "SELECT count(*) FROM orders o LEFT JOIN queue q USING (order_id) "
             "WHERE o.customer_id = '%s' AND (%s)",
             customer, cond);
    return query_int(sql);
}

static int64_t count_of(const char *customer, const char *status)
{
    char cond[64];
    snprintf(cond, sizeof(cond), "o.status = '%s'", status);
    return count_where(customer, cond);
}

/* Waits (bounded) until want orders of customer have status; false at the deadline. */
static bool wait_count(const char *customer, const char *status, int64_t want)
{
    double deadline = deadline_in(WAIT_MS);
    while (count_of(customer, status) != want) {
        if (passed(deadline))
            return false;
        sleep_ms(5);
    }
    return true;
}

/*
 * Writes n orders of customer with items through store_enqueue_batch,
 * COMMIT_BATCH_MAX per transaction, created at created_ms (0: now): visible
 * (receipt 0), or leased under receipt for LEASE_MS, in which case msgs gets
 * each one as the committer would hand it to the workers (strings strdup'ed).
 */
static void write_orders_as(const char *customer, const char *items, int64_t created_ms, size_t n,
                            int64_t receipt, struct store_message *msgs)
{
    static struct store_new_order batch[COMMIT_BATCH_MAX];
    static char ids[COMMIT_BATCH_MAX][ID_ULID_LEN + 1];
    for (size_t done = 0; done < n;) {
        size_t k = n - done < COMMIT_BATCH_MAX ? n - done : COMMIT_BATCH_MAX;
        int64_t now = ids_now_ms();
        for (size_t i = 0; i < k; i++) {
            ck_assert_int_eq(ids_ulid_new(ids[i]), 0);
            batch[i] = (struct store_new_order){
                .order_id = ids[i],
                .customer_id = customer,
                .items_json = items,
                .traceparent = TRACEPARENT,
                .created_at_ms = created_ms ? created_ms : now,
                .lease_receipt = receipt,
                .lease_until_ms = receipt ? now + LEASE_MS : 0,
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
            m->items_json = strdup(items);
            ck_assert(m->customer_id != NULL && m->items_json != NULL);
            m->receipt = receipt;
            m->receive_count = 1;
            m->created_at_ms = batch[i].created_at_ms;
        }
        done += k;
    }
}

static void write_orders(const char *customer, size_t n, int64_t receipt,
                         struct store_message *msgs)
{
    write_orders_as(customer, ITEMS_JSON, 0, n, receipt, msgs);
}

/* An order that fails validation again, older than anything written after it:
 * the first of the worker's first claim. */
static void write_invalid_order(void)
{
    write_orders_as("INVALID", INVALID_ITEMS, ids_now_ms() - 1000, 1, 0, NULL);
}

/* Options without a fulfilment: persisting is all of processing. */
static struct worker_options plain_options(uint32_t count)
{
    return (struct worker_options){
        .count = count,
        .visibility_timeout_ms = LEASE_MS,
        .max_receives = 5,
        .backoff_base_ms = 1000,
        .backoff_max_ms = 60000,
    };
}

/* Options with a fulfilment command; backoff kept tiny so retries come at once. */
static struct worker_options command_options(const char *command, uint32_t max_receives)
{
    return (struct worker_options){
        .count = 1,
        .visibility_timeout_ms = 60000,
        .max_receives = max_receives,
        .backoff_base_ms = 1,
        .backoff_max_ms = 4,
        .fulfilment_command = command,
        .fulfilment_timeout_ms = 30000,
        .fulfilment_concurrency = 4,
    };
}

static struct workers *start_workers(const struct worker_options *opts)
{
    struct workers *w = NULL;
    ck_assert_int_eq(workers_start(st, metrics, opts, &w), 0);
    return w;
}

static void join_bounded(pthread_t t, const char *what)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += WAIT_MS / 1000;
    ck_assert_msg(pthread_timedjoin_np(t, NULL, &ts) == 0, "%s did not end in time", what);
}

/* ---- where the worker thread is: /proc/self/task --------------------------- */

/* The id of the thread worker.c named "worker" (one worker running); 0 while unnamed. */
static pid_t worker_thread_id(void)
{
    DIR *d = opendir("/proc/self/task");
    ck_assert(d != NULL);
    pid_t found = 0;
    int named = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        char path[300], comm[32] = "";
        snprintf(path, sizeof(path), "/proc/self/task/%s/comm", e->d_name);
        FILE *f = fopen(path, "r");
        if (f == NULL)
            continue;
        if (fgets(comm, sizeof(comm), f) != NULL && strcmp(comm, "worker\n") == 0) {
            found = (pid_t)atoi(e->d_name);
            named++;
        }
        fclose(f);
    }
    closedir(d);
    ck_assert_int_le(named, 1);
    return found;
}

/* The system call thread tid is blocked in; -1 when it runs (or is in none). */
static long blocked_in(pid_t tid)
{
    char path[64], line[128] = "";
    snprintf(path, sizeof(path), "/proc/self/task/%d/syscall", (int)tid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return -1;
    bool ok = fgets(line, sizeof(line), f) != NULL;
    fclose(f);
    if (!ok || line[0] < '0' || line[0] > '9') /* "running", or "-1 ..." */
        return -1;
    return strtol(line, NULL, 10);
}

/* Waits (bounded) until the worker thread is seen in system call sysno looks
 * times in a row, 10 ms apart; false at the deadline. */
static bool wait_worker_blocked_in(long sysno, int looks)
{
    double deadline = deadline_in(WAIT_MS);
    int seen = 0;
    while (seen < looks) {
        if (passed(deadline))
            return false;
        pid_t tid = worker_thread_id();
        seen = tid != 0 && blocked_in(tid) == sysno ? seen + 1 : 0;
        if (seen < looks)
            sleep_ms(10);
    }
    return true;
}

/* ---- the gate: fd 2 a full pipe, so the worker's next log line blocks ------ */

static int gate_saved = -1; /* the real stderr */
static int gate_read = -1;
static size_t gate_filled; /* bytes of filling ahead of the log lines */
static pthread_t gate_drainer;

static void gate_close(void)
{
    static const char fill[4096];
    int fds[2];
    ck_assert_int_eq(log_current_level() <= LOG_LEVEL_WARN, 1);
    ck_assert_int_eq(pipe2(fds, O_CLOEXEC), 0);
    ck_assert_int_eq(fcntl(fds[1], F_SETFL, O_NONBLOCK), 0);
    gate_filled = 0;
    ssize_t k;
    while ((k = write(fds[1], fill, sizeof(fill))) > 0)
        gate_filled += (size_t)k;
    while ((k = write(fds[1], fill, 1)) > 0)
        gate_filled += (size_t)k;
    ck_assert_int_eq(errno, EAGAIN);
    ck_assert_int_eq(fcntl(fds[1], F_SETFL, 0), 0);
    fflush(stderr);
    gate_saved = fcntl(STDERR_FILENO, F_DUPFD_CLOEXEC, 3);
    ck_assert_int_ge(gate_saved, 0);
    ck_assert_int_eq(dup2(fds[1], STDERR_FILENO), STDERR_FILENO);
    close(fds[1]);
    gate_read = fds[0];
}

/* Reads the pipe to its end: the filling is dropped, log lines go to the real stderr. */
static void *drain(void *arg)
{
    (void)arg;
    char buf[4096];
    size_t skip = gate_filled;
    for (;;) {
        ssize_t k = read(gate_read, buf, sizeof(buf));
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return NULL;
        size_t from = skip < (size_t)k ? skip : (size_t)k;
        skip -= from;
        if ((size_t)k > from) {
            ssize_t ignored = write(gate_saved, buf + from, (size_t)k - from);
            (void)ignored; /* keep draining whatever becomes of stderr */
        }
    }
}

/* Lets the held worker go on; its log lines flow from now on. */
static void gate_open(void)
{
    ck_assert_int_eq(pthread_create(&gate_drainer, NULL, drain, NULL), 0);
}

/* After the workers are stopped: stderr back, the drainer ends at the pipe's end. */
static void gate_remove(void)
{
    ck_assert_int_eq(dup2(gate_saved, STDERR_FILENO), STDERR_FILENO);
    join_bounded(gate_drainer, "the gate's drainer");
    close(gate_read);
    close(gate_saved);
    gate_read = gate_saved = -1;
}

/* Starts one worker and holds it in its first batch, the invalid order (written
 * before, with anything else the test wants claimed with it): from here on it
 * takes nothing until gate_open(). */
static struct workers *start_held_worker(void)
{
    gate_close();
    struct worker_options opts = plain_options(1);
    struct workers *w = start_workers(&opts);
    ck_assert_msg(wait_worker_blocked_in(SYS_write, 1),
                  "the worker did not stop at its warning about the invalid order");
    return w;
}

static void *stopper(void *w)
{
    workers_stop(w);
    return NULL;
}

/* Calls workers_stop(w) on a thread of its own (it waits for the held worker)
 * and waits (bounded) until w is stopping: workers_reserve() grants no place
 * although there are free ones. */
static pthread_t stop_in_background(struct workers *w)
{
    pthread_t t;
    ck_assert_int_eq(pthread_create(&t, NULL, stopper, w), 0);
    double deadline = deadline_in(WAIT_MS);
    size_t got;
    while ((got = workers_reserve(w, 1)) > 0 && !passed(deadline)) {
        workers_unreserve(w, got);
        sleep_ms(1);
    }
    ck_assert_msg(got == 0, "workers_reserve still grants places while stopping");
    return t;
}

/* ---- the hand-over's places ----------------------------------------------------- */

/*
 * Free places are WORKER_HANDOFF_MAX less those reserved (no message has been
 * delivered): more than that is never granted, a full hand-over grants none,
 * and unreserved places can be taken again.
 * Shown to fail: room computed without the reserved places (reserve(1) on a
 * full hand-over got 1); workers_unreserve() doing nothing (got 0 of 10).
 */
START_TEST(reserve_grants_at_most_the_free_places)
{
    struct worker_options opts = plain_options(2);
    struct workers *w = start_workers(&opts);

    ck_assert_uint_eq(workers_reserve(w, WORKER_HANDOFF_MAX + 10), WORKER_HANDOFF_MAX);
    ck_assert_uint_eq(workers_reserve(w, 1), 0);
    workers_unreserve(w, 10);
    ck_assert_uint_eq(workers_reserve(w, 20), 10);
    ck_assert_uint_eq(workers_reserve(w, 1), 0);
    workers_unreserve(w, WORKER_HANDOFF_MAX);
    ck_assert_uint_eq(workers_reserve(w, 7), 7);
    ck_assert_uint_eq(workers_reserve(w, WORKER_HANDOFF_MAX), WORKER_HANDOFF_MAX - 7);
    workers_unreserve(w, WORKER_HANDOFF_MAX);
    workers_stop(w); /* asserts that every place was given back */
}
END_TEST

/*
 * With the worker held, delivered messages stay in the hand-over and hold
 * their places; once workers_stop() has begun no place is granted at all.
 * Shown to fail: room computed without handoff_count (got MAX, not MAX - 100);
 * the !stopping test removed from workers_reserve (still 1 after WAIT_MS).
 */
START_TEST(reserve_counts_delivered_places_and_grants_none_once_stopping)
{
    write_invalid_order();
    struct workers *w = start_held_worker();

    static struct store_message msgs[HANDED];
    ck_assert_uint_eq(workers_reserve(w, HANDED), HANDED);
    write_orders("DELIVERED", HANDED, 4242, msgs);
    workers_deliver(w, msgs, HANDED);
    ck_assert_uint_eq(workers_reserve(w, WORKER_HANDOFF_MAX), WORKER_HANDOFF_MAX - HANDED);
    workers_unreserve(w, WORKER_HANDOFF_MAX - HANDED);

    pthread_t stopping = stop_in_background(w); /* asserts reserve() == 0 */
    gate_open();
    join_bounded(stopping, "workers_stop");
    gate_remove();
    ck_assert_int_eq(count_of("INVALID", "dead_lettered"), 1);
}
END_TEST

/*
 * No hand-over with a fulfilment: the committer must write every order
 * visible, for a worker syncs the WAL before a fulfilment acts.
 * Shown to fail: the handoff != NULL test removed from workers_reserve (got 1).
 */
START_TEST(reserve_grants_none_with_a_fulfilment)
{
    struct worker_options opts = command_options("/bin/true", 5);
    struct workers *w = start_workers(&opts);
    ck_assert_uint_eq(workers_reserve(w, 1), 0);
    workers_stop(w);

    opts.fulfilment_command = NULL;
    opts.fulfilment_url = "http://127.0.0.1:9/orders";
    w = start_workers(&opts);
    ck_assert_uint_eq(workers_reserve(w, 1), 0);
    workers_stop(w);
}
END_TEST

/* ---- delivery -------------------------------------------------------------------- */

/*
 * THROUGH_RING messages, written leased for LEASE_MS (so no claim can take
 * them) and delivered CHUNK at a time into whatever places are free, go round
 * the ring more than twice and are all completed at receive 1 by two workers.
 * The test never frees their strings: a leak or a double free is the
 * workers' (LSan/ASan).
 * Shown to fail: workers_deliver writing to slot handoff_count instead of
 * first + count (times out, orders left queued); store_message_clear()
 * dropped from worker_main (LSan: leaks); taking a delivered message twice
 * (ASan: double free).
 */
START_TEST(delivered_messages_are_completed_without_a_claim)
{
    struct worker_options opts = plain_options(2);
    struct workers *w = start_workers(&opts);

    static struct store_message msgs[CHUNK];
    double deadline = deadline_in(WAIT_MS);
    int64_t receipt = 1000;
    for (size_t delivered = 0; delivered < THROUGH_RING;) {
        size_t want = THROUGH_RING - delivered < CHUNK ? THROUGH_RING - delivered : CHUNK;
        size_t k = workers_reserve(w, want);
        ck_assert_uint_le(k, want);
        if (k == 0) {
            ck_assert_msg(!passed(deadline), "the hand-over never had room again");
            sleep_ms(1);
            continue;
        }
        write_orders("DELIVERED", k, receipt++, msgs);
        workers_deliver(w, msgs, k);
        delivered += k;
    }
    ck_assert_msg(wait_count("DELIVERED", "completed", THROUGH_RING),
                  "delivered messages not all completed");
    workers_stop(w);

    ck_assert_int_eq(count_where("DELIVERED", "o.attempts = 1 AND o.processed_at IS NOT NULL"),
                     THROUGH_RING);
    ck_assert_int_eq(query_int("SELECT count(*) FROM queue"), 0);
    ck_assert_int_eq(query_int("SELECT count(*) FROM dead_letters"), 0);
}
END_TEST

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
    struct worker_options opts = plain_options(1);
    struct workers *w = start_workers(&opts);

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

/* ---- stop ------------------------------------------------------------------------- */

/*
 * The worker is held in its first batch: the invalid order, then HELD valid
 * ones it claimed with it. HANDED more are delivered meanwhile. Once stopping,
 * it finishes the message in hand (the invalid one, dead-lettered) and
 * releases the rest of its batch; workers_stop() releases what is still in
 * the hand-over. Released means: the same queue row, no receipt, visible now,
 * the receive given back (receive_count 1 -> 0), the order still queued — and
 * a claim from the store gets every one of them at receive 1.
 * Shown to fail: release_undelivered() not called by workers_stop (the
 * delivered rows keep their receipt and lease; LSan also reports their
 * strings); store_release() dropped from process_batch (the claimed rows
 * keep theirs); the stopping test dropped from process_batch (the claimed
 * ones completed).
 */
START_TEST(stop_releases_claimed_and_delivered_leases)
{
    write_invalid_order();
    write_orders("CLAIMED", HELD, 0, NULL);
    struct workers *w = start_held_worker();

    static struct store_message msgs[HANDED];
    ck_assert_uint_eq(workers_reserve(w, HANDED), HANDED);
    write_orders("DELIVERED", HANDED, 4242, msgs);
    workers_deliver(w, msgs, HANDED);

    pthread_t stopping = stop_in_background(w);
    gate_open();
    join_bounded(stopping, "workers_stop");
    gate_remove();
    int64_t stopped_at = ids_now_ms();

    ck_assert_int_eq(count_where("INVALID", "o.status = 'dead_lettered' AND o.attempts = 1"), 1);
    char released[160];
    snprintf(released, sizeof(released),
             "o.status = 'queued' AND q.receipt IS NULL AND q.receive_count = 0 AND "
             "q.visible_at <= %lld",
             (long long)stopped_at);
    ck_assert_int_eq(count_where("CLAIMED", released), HELD);
    ck_assert_int_eq(count_where("DELIVERED", released), HANDED);

    struct store_message again[WORKER_BATCH_MAX];
    size_t claimed = 0, first_receive = 0, n, dead = 0;
    do {
        ck_assert_int_eq(
            store_claim(st, ids_now_ms(), 60000, 5, again, WORKER_BATCH_MAX, &n, &dead), STORE_OK);
        ck_assert_uint_eq(dead, 0);
        claimed += n;
        for (size_t i = 0; i < n; i++) {
            first_receive += again[i].receive_count == 1;
            store_message_clear(&again[i]);
        }
    } while (n > 0);
    ck_assert_uint_eq(claimed, HELD + HANDED);
    ck_assert_uint_eq(first_receive, HELD + HANDED);
}
END_TEST

/* ---- wake ------------------------------------------------------------------------- */

/*
 * A worker asleep with an empty queue (no timeout: nothing is due) claims an
 * order written visible once workers_wake() is called; twice, so the second
 * wake is seen after the first. The worker is seen in futex(2) for 5 looks
 * in a row first, so without the wake nothing would reach it.
 * Shown to fail: workers_wake() without generation++ (or without the
 * broadcast): "WOKEN1" still queued at WAIT_MS.
 */
START_TEST(wake_makes_a_sleeping_worker_claim)
{
    struct worker_options opts = plain_options(1);
    struct workers *w = start_workers(&opts);
    const char *customers[] = {"WOKEN1", "WOKEN2"};
    for (size_t i = 0; i < 2; i++) {
        ck_assert_msg(wait_worker_blocked_in(SYS_futex, 5), "the worker never fell asleep");
        write_orders(customers[i], 1, 0, NULL);
        workers_wake(w);
        ck_assert_msg(wait_count(customers[i], "completed", 1), "the woken worker claimed nothing");
    }
    workers_stop(w);
}
END_TEST

/* ---- a fulfilment command ------------------------------------------------------- */

/*
 * /bin/true: completed at the first attempt, nothing left queued.
 * Shown to fail: verdict_conclude treating FULFILMENT_OK as a failure (the
 * orders end dead-lettered, never completed).
 */
START_TEST(a_succeeding_command_completes)
{
    write_orders("FULFILLED", 3, 0, NULL);
    struct worker_options opts = command_options("/bin/true", 3);
    struct workers *w = start_workers(&opts);
    ck_assert_msg(wait_count("FULFILLED", "completed", 3), "orders not completed");
    workers_stop(w);
    ck_assert_int_eq(count_where("FULFILLED", "o.attempts = 1"), 3);
    ck_assert_int_eq(query_int("SELECT count(*) FROM queue"), 0);
}
END_TEST

/*
 * /bin/false with max_receives 3: retried after a backoff twice, then
 * dead-lettered by the worker at receive 3 with the command's failure as
 * last_error (not by a later claim, whose reason is the exhausted lease).
 * Shown to fail: verdict_conclude dead-lettering at once (attempts 1);
 * verdict_conclude always retrying (dead-lettered by the 4th claim with the
 * exhausted-lease reason instead of the command's failure).
 */
START_TEST(a_failing_command_is_retried_then_dead_lettered)
{
    write_orders("FAILING", 2, 0, NULL);
    struct worker_options opts = command_options("/bin/false", 3);
    struct workers *w = start_workers(&opts);
    ck_assert_msg(wait_count("FAILING", "dead_lettered", 2), "orders not dead-lettered");
    workers_stop(w);
    ck_assert_int_eq(count_where("FAILING",
                                 "o.attempts = 3 AND o.last_error LIKE 'fulfilment exited with "
                                 "status 1%' AND o.order_id IN (SELECT order_id FROM dead_letters "
                                 "WHERE attempts = 3)"),
                     2);
    ck_assert_int_eq(query_int("SELECT count(*) FROM queue"), 0);
}
END_TEST

/*
 * A command that fails the first attempt at each order and succeeds the next
 * (a marker file per ORDER_ID next to the script): the retry is claimed
 * again and completes at attempt 2.
 * Shown to fail: verdict_conclude dead-lettering at once (dead_lettered at 1).
 */
START_TEST(a_command_failing_once_completes_at_the_retry)
{
    char script[1200], command[1300];
    snprintf(script, sizeof(script), "%s/once.sh", dir);
    FILE *f = fopen(script, "w");
    ck_assert(f != NULL);
    fputs("m=\"$0.$ORDER_ID\"\n"
          "if [ -e \"$m\" ]; then exit 0; fi\n"
          ": > \"$m\"\n"
          "echo 'first attempt fails' >&2\n"
          "exit 1\n",
          f);
    ck_assert_int_eq(fclose(f), 0);
    snprintf(command, sizeof(command), "/bin/sh %s", script);

    write_orders("ONCE", 2, 0, NULL);
    struct worker_options opts = command_options(command, 3);
    struct workers *w = start_workers(&opts);
    ck_assert_msg(wait_count("ONCE", "completed", 2), "orders not completed");
    workers_stop(w);
    ck_assert_int_eq(count_where("ONCE", "o.attempts = 2"), 2);
    ck_assert_int_eq(query_int("SELECT count(*) FROM queue"), 0);
}
END_TEST

static TCase *threaded_case(const char *name, void (*set_up)(void))
{
    TCase *tc = tcase_create(name);
    tcase_set_timeout(tc, UNIT_TIMEOUT_THREADED);
    tcase_add_unchecked_fixture(tc, make_root, remove_root);
    tcase_add_checked_fixture(tc, set_up, teardown);
    return tc;
}

Suite *suite_worker(void)
{
    Suite *s = suite_create("worker");

    TCase *tc = threaded_case("reserve", setup);
    tcase_add_test(tc, reserve_grants_at_most_the_free_places);
    tcase_add_test(tc, reserve_counts_delivered_places_and_grants_none_once_stopping);
    tcase_add_test(tc, reserve_grants_none_with_a_fulfilment);
    suite_add_tcase(s, tc);

    tc = threaded_case("delivery", setup);
    tcase_add_test(tc, delivered_messages_are_completed_without_a_claim);
    tcase_add_test(tc, deliveries_and_a_backlog_take_turns);
    suite_add_tcase(s, tc);

    tc = threaded_case("stop", setup);
    tcase_add_test(tc, stop_releases_claimed_and_delivered_leases);
    suite_add_tcase(s, tc);

    tc = threaded_case("wake", setup);
    tcase_add_test(tc, wake_makes_a_sleeping_worker_claim);
    suite_add_tcase(s, tc);

    tc = threaded_case("fulfilment", setup_fulfilment);
    tcase_add_test(tc, a_succeeding_command_completes);
    tcase_add_test(tc, a_failing_command_is_retried_then_dead_lettered);
    tcase_add_test(tc, a_command_failing_once_completes_at_the_retry);
    suite_add_tcase(s, tc);
    return s;
}
