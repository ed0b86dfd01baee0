/*
 * test_store_io.c — the SQLite backend when the disk fails, through the I/O
 * seam of src/sqlite_io.h (the "orderd" VFS and sqlite_io_fdatasync), on
 * real files in a temp directory with the real committer, checkpointer and
 * workers:
 *   - intake: a write of the WAL failing with ENOSPC (SQLITE_FULL) or EIO
 *     (SQLITE_IOERR_WRITE) during the commit answers every item with
 *     STORE_EUNAVAILABLE (api_orders.c: 503), stores nothing of it, and the
 *     next batch after the fault is stored; what was acknowledged before is
 *     intact;
 *   - the WAL's fdatasync in sq_sync failing ends the process with exit 2
 *     before any item it covered is answered (an exit test: check forks);
 *   - an open failing (SQLITE_CANTOPEN) at any of store_open's connections:
 *     STORE_EOPEN with a log line, nothing leaked (ASan), and the store
 *     opens once the fault is gone; a read failing: STORE_EUNAVAILABLE;
 *   - the checkpointer: a checkpoint whose write or fsync fails is counted
 *     failed (its stats, and orderd_storage_checkpoints_total through the
 *     metrics sink), and once the fault is gone the next one completes and
 *     the WAL starts over;
 *   - the workers: a settlement that fails with EIO leaves the messages
 *     leased as they were, and they are delivered again and completed once
 *     the disk is back;
 *   - the start check (store_sqlite_open.c, check_after_unclean_stop): a
 *     database left with its WAL by a killed process and a page of garbage
 *     is refused with one log line; the same without the garbage opens
 *     after the check; a clean stop skips it.
 *
 * Faults are process-wide: each test runs in a child of its own (CK_FORK,
 * as `make unit` runs), and the teardown clears the fault anyway. Every wait
 * is bounded by WAIT_MS; no assertion depends on the machine's speed.
 *
 * Temp files: one root directory per test case, made and removed in the
 * parent process (unchecked fixture), so a failed, timed-out or exited
 * child leaves nothing.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bounds.h"
#include "committer.h"
#include "ids.h"
#include "metrics.h"
#include "sqlite_io.h"
#include "store.h"
#include "timeouts.h"
#include "tmpdir.h"
#include "worker.h"

Suite *suite_store_io(void);

#define NO_LIMIT UINT64_MAX
#define WAIT_MS 60000 /* bound on every wait for a thread (TSan on 2 busy cores) */
#define ITEMS_JSON "[{\"item\":\"w\",\"quantity\":1}]"
#define TRACEPARENT "00-0123456789abcdef0123456789abcdef-0123456789abcdef-01"

/* ---- fixtures ------------------------------------------------------------ */

static char root[512];
static char dir[1024];
static char dbpath[1100];
static char walpath[1110];
static struct store *st;

static void make_root(void) { tmpdir_make(root, sizeof(root), NULL, "orderd-test-store-io"); }

static void remove_root(void) { tmpdir_remove(root); }

static void open_store(enum durability durability)
{
    struct store_options opts = {.path = dbpath, .durability = durability};
    ck_assert_int_eq(store_open(&opts, &st), STORE_OK);
}

/* A directory for the test; no store opened. */
static void setup_dir(void)
{
    tmpdir_make(dir, sizeof(dir), root, "t");
    snprintf(dbpath, sizeof(dbpath), "%s/orderd.db", dir);
    snprintf(walpath, sizeof(walpath), "%s-wal", dbpath);
    st = NULL;
}

static void setup_full(void)
{
    setup_dir();
    open_store(DURABILITY_FULL);
}

static void teardown(void)
{
    sqlite_io_fault_clear();
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

static double deadline_in(long ms) { return ids_monotonic_seconds() + (double)ms / 1000.0; }

static bool passed(double deadline) { return ids_monotonic_seconds() >= deadline; }

static void arm(unsigned ops, unsigned files, int error)
{
    struct sqlite_io_fault f = {.ops = ops, .files = files, .error = error};
    ck_assert_int_eq(sqlite_io_fault_set(&f), 0);
}

static struct sqlite_io_fault_counts fault_counts(void)
{
    struct sqlite_io_fault_counts c;
    sqlite_io_fault_counts(&c);
    return c;
}

/* Waits (bounded) until the fault has failed at least n calls. */
static bool wait_fault_failed(uint64_t n)
{
    double deadline = deadline_in(WAIT_MS);
    while (fault_counts().failed < n) {
        if (passed(deadline))
            return false;
        sleep_ms(1);
    }
    return true;
}

/* One integer from a query of the database file, on a connection of the
 * test's own (SQLite's default VFS: no fault reaches it). */
static int64_t query_int(const char *sql)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *q = NULL;
    ck_assert_int_eq(sqlite3_open_v2(dbpath, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    ck_assert_int_eq(sqlite3_prepare_v2(db, sql, -1, &q, NULL), SQLITE_OK);
    ck_assert_int_eq(sqlite3_step(q), SQLITE_ROW);
    int64_t v = sqlite3_column_int64(q, 0);
    sqlite3_finalize(q);
    sqlite3_close(db);
    return v;
}

static void query_text(const char *sql, char *out, size_t size)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *q = NULL;
    ck_assert_int_eq(sqlite3_open_v2(dbpath, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    ck_assert_int_eq(sqlite3_prepare_v2(db, sql, -1, &q, NULL), SQLITE_OK);
    ck_assert_int_eq(sqlite3_step(q), SQLITE_ROW);
    const unsigned char *t = sqlite3_column_text(q, 0);
    snprintf(out, size, "%s", t ? (const char *)t : "(null)");
    sqlite3_finalize(q);
    sqlite3_close(db);
}

static int64_t file_size(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 ? (int64_t)sb.st_size : -1;
}

/* The store's answer for an order: STORE_OK, STORE_ENOTFOUND, ... */
static int order_status(const char *id)
{
    struct store_order o;
    memset(&o, 0, sizeof(o));
    int rc = store_get_order(st, id, ids_now_ms(), &o);
    store_order_clear(&o);
    return rc;
}

/* fd 2 into a file while a call logs, then its text (free it). */
struct capture {
    int saved;
    char path[1200];
};

static void capture_begin(struct capture *c)
{
    snprintf(c->path, sizeof(c->path), "%s/stderr.log", dir);
    int fd = open(c->path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    ck_assert_int_ge(fd, 0);
    c->saved = dup(STDERR_FILENO);
    ck_assert_int_ge(c->saved, 0);
    ck_assert_int_eq(dup2(fd, STDERR_FILENO), STDERR_FILENO);
    close(fd);
}

static char *capture_end(struct capture *c)
{
    ck_assert_int_eq(dup2(c->saved, STDERR_FILENO), STDERR_FILENO);
    close(c->saved);
    FILE *f = fopen(c->path, "r");
    ck_assert_ptr_nonnull(f);
    char *text = calloc(1, 65536);
    ck_assert_ptr_nonnull(text);
    size_t n = fread(text, 1, 65535, f);
    text[n] = '\0';
    fclose(f);
    fputs(text, stderr); /* still seen in the test's output */
    return text;
}

/* Waits (bounded) until what stderr got since capture_begin holds needle. */
static bool capture_wait_for(const struct capture *c, const char *needle)
{
    double deadline = deadline_in(WAIT_MS);
    static char text[65536];
    for (;;) {
        FILE *f = fopen(c->path, "r");
        ck_assert_ptr_nonnull(f);
        size_t n = fread(text, 1, sizeof(text) - 1, f);
        text[n] = '\0';
        fclose(f);
        if (strstr(text, needle) != NULL)
            return true;
        if (passed(deadline))
            return false;
        sleep_ms(5);
    }
}

static int count_lines(const char *text)
{
    int n = 0;
    for (const char *p = text; *p != '\0'; p++)
        n += *p == '\n';
    return n;
}

/* ---- orders ------------------------------------------------------------------ */

struct torder {
    struct committer_item item;
    char id[ID_ULID_LEN + 1];
    atomic_int calls;  /* done() calls */
    atomic_int result; /* order.result seen in done() */
};

static atomic_int done_total;

static void item_done(struct committer_item *item, void *arg)
{
    struct torder *t = arg;
    /* On the committer or syncer thread: no ck_assert here. */
    atomic_store(&t->result, item == &t->item ? item->order.result : 12345);
    atomic_fetch_add(&t->calls, 1);
    atomic_fetch_add(&done_total, 1);
}

static void torder_init(struct torder *t, const char *customer, const char *items)
{
    memset(t, 0, sizeof(*t));
    ck_assert_int_eq(ids_ulid_new(t->id), 0);
    struct store_new_order *o = &t->item.order;
    o->order_id = t->id;
    o->customer_id = customer;
    o->items_json = items;
    o->traceparent = TRACEPARENT;
    o->created_at_ms = ids_now_ms();
    o->result = 1; /* neither OK nor an error: the committer must set it */
    t->item.done = item_done;
    t->item.arg = t;
    atomic_init(&t->calls, 0);
    atomic_init(&t->result, 1);
}

static struct torder *torders_new(size_t n, const char *customer)
{
    struct torder *t = calloc(n, sizeof(*t));
    ck_assert_ptr_nonnull(t);
    for (size_t i = 0; i < n; i++)
        torder_init(&t[i], customer, ITEMS_JSON);
    return t;
}

static bool wait_done(int want)
{
    double deadline = deadline_in(WAIT_MS);
    while (atomic_load(&done_total) < want) {
        if (passed(deadline))
            return false;
        sleep_ms(1);
    }
    return true;
}

static int ld(atomic_int *v) { return atomic_load(v); }

/* Submits t[0..n) and waits for all their answers. */
static void submit_all(struct committer *c, struct torder *t, size_t n)
{
    int before = atomic_load(&done_total);
    for (size_t i = 0; i < n; i++)
        ck_assert_int_eq(committer_submit(c, &t[i].item), 0);
    ck_assert(wait_done(before + (int)n));
}

/* n orders written by the store directly, COMMIT_BATCH_MAX to a transaction:
 * visible (receipt 0) or leased for lease_ms under receipt; their ids into
 * ids (n of them). */
static void write_orders(size_t n, const char *customer, const char *items, int64_t receipt,
                         int64_t lease_ms, char (*ids)[ID_ULID_LEN + 1])
{
    static struct store_new_order batch[COMMIT_BATCH_MAX];
    for (size_t done = 0; done < n;) {
        size_t k = n - done < COMMIT_BATCH_MAX ? n - done : COMMIT_BATCH_MAX;
        int64_t now = ids_now_ms();
        for (size_t i = 0; i < k; i++) {
            ck_assert_int_eq(ids_ulid_new(ids[done + i]), 0);
            batch[i] = (struct store_new_order){
                .order_id = ids[done + i],
                .customer_id = customer,
                .items_json = items,
                .traceparent = TRACEPARENT,
                .created_at_ms = now,
                .lease_receipt = receipt,
                .lease_until_ms = receipt ? now + lease_ms : 0,
                .result = 1,
            };
        }
        ck_assert_int_eq(store_enqueue_batch(st, batch, k, NO_LIMIT), STORE_OK);
        for (size_t i = 0; i < k; i++)
            ck_assert_int_eq(batch[i].result, STORE_OK);
        done += k;
    }
}

/* The value of the line of /metrics that begins with `head` (name, labels, space). */
static uint64_t metric_value(struct metrics *m, const char *head)
{
    char want[160];
    snprintf(want, sizeof(want), "\n%s", head);
    size_t len = 0;
    char *text = metrics_render(m, &len);
    ck_assert_ptr_nonnull(text);
    const char *p = strstr(text, want);
    ck_assert_msg(p != NULL, "no line %s in /metrics", head);
    uint64_t v = strtoull(p + strlen(want), NULL, 10);
    free(text);
    return v;
}

/* ---- intake ------------------------------------------------------------------- */

static const int intake_errors[] = {ENOSPC, EIO};

/*
 * A write of the WAL fails while the committer commits: every item submitted
 * meanwhile is answered STORE_EUNAVAILABLE (503), none is stored, nothing is
 * synced for them; once the fault is gone the same orders, sent again, and
 * new ones are stored, and those acknowledged before are intact.
 */
START_TEST(intake_write_fault_answers_every_item_unavailable)
{
    enum { BEFORE = 5, DURING = 40, AFTER = 5 };
    int error = intake_errors[_i];
    struct metrics *m = NULL;
    ck_assert_int_eq(metrics_new(&m), 0);
    struct committer *c = NULL;
    struct committer_options o = {.max_depth = NO_LIMIT, .metrics = m};
    ck_assert_int_eq(committer_start(st, &o, &c), 0);
    ck_assert(store_defers_sync(st)); /* pipelined: the syncer answers */

    struct torder *before = torders_new(BEFORE, "before");
    struct torder *during = torders_new(DURING, "during");
    struct torder *after = torders_new(AFTER, "after");
    submit_all(c, before, BEFORE);
    for (int i = 0; i < BEFORE; i++)
        ck_assert_int_eq(ld(&before[i].result), STORE_OK);
    char text[4096];
    uint64_t syncs_before = metric_value(m, "orderd_storage_sync_duration_seconds_count ");

    arm(SQLIO_WRITE, SQLIO_WAL, error);
    submit_all(c, during, DURING);
    ck_assert_uint_ge(fault_counts().failed, 1);
    for (int i = 0; i < DURING; i++) {
        ck_assert_int_eq(ld(&during[i].calls), 1);
        ck_assert_int_eq(ld(&during[i].result), STORE_EUNAVAILABLE);
        ck_assert_int_eq(order_status(during[i].id), STORE_ENOTFOUND);
    }
    /* No sync ran for them: nothing was written. */
    ck_assert_uint_eq(metric_value(m, "orderd_storage_sync_duration_seconds_count "), syncs_before);
    struct store_stats s;
    ck_assert_int_eq(store_stats(st, &s), STORE_OK);
    ck_assert_uint_eq(s.queue_depth, BEFORE);

    /* The disk is back: new orders and the refused ones, sent again, are stored. */
    sqlite_io_fault_clear();
    submit_all(c, after, AFTER);
    for (int i = 0; i < DURING; i++) {
        during[i].item.order.result = 1;
        atomic_store(&during[i].calls, 0);
    }
    submit_all(c, during, DURING);
    committer_stop(c);
    for (int i = 0; i < AFTER; i++)
        ck_assert_int_eq(ld(&after[i].result), STORE_OK);
    for (int i = 0; i < DURING; i++)
        ck_assert_int_eq(ld(&during[i].result), STORE_OK);
    for (int i = 0; i < BEFORE; i++) {
        struct store_order ord;
        memset(&ord, 0, sizeof(ord));
        ck_assert_int_eq(store_get_order(st, before[i].id, ids_now_ms(), &ord), STORE_OK);
        ck_assert_str_eq(ord.customer_id, "before");
        ck_assert_str_eq(ord.items_json, ITEMS_JSON);
        store_order_clear(&ord);
    }
    ck_assert_int_eq(store_stats(st, &s), STORE_OK);
    ck_assert_uint_eq(s.queue_depth, BEFORE + DURING + AFTER);
    ck_assert_int_eq(query_int("SELECT count(*) FROM orders"), BEFORE + DURING + AFTER);
    query_text("PRAGMA integrity_check", text, sizeof(text));
    ck_assert_str_eq(text, "ok");
    metrics_free(m);
    free(before);
    free(during);
    free(after);
}
END_TEST

/* ---- a failed fsync of the WAL ------------------------------------------------ */

/* An answer to an item the failed fsync covered: there must be none. Exit 3
 * instead of the 2 the test expects, from whichever thread answers. */
static void answered_too_early(struct committer_item *item, void *arg)
{
    (void)item;
    (void)arg;
    _exit(3);
}

/*
 * sq_sync's fdatasync of the WAL fails: the process ends with exit 2
 * (store.h: store_sync never returns an error) before the syncer answers any
 * item of that sync. An exit test: the case passes only if this child
 * process exits with status 2.
 */
START_TEST(failed_wal_fdatasync_exits_2_before_any_answer)
{
    struct committer *c = NULL;
    struct committer_options o = {.max_depth = NO_LIMIT};
    ck_assert_int_eq(committer_start(st, &o, &c), 0);
    struct torder *before = torders_new(3, "before");
    submit_all(c, before, 3);
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(ld(&before[i].result), STORE_OK);

    arm(SQLIO_FDATASYNC, SQLIO_WAL, EIO);
    struct torder *during = torders_new(8, "during");
    for (int i = 0; i < 8; i++) {
        during[i].item.done = answered_too_early;
        ck_assert_int_eq(committer_submit(c, &during[i].item), 0);
    }
    /* The syncer ends the process; until then, wait (bounded). */
    double deadline = deadline_in(WAIT_MS);
    while (!passed(deadline))
        sleep_ms(10);
    ck_abort_msg("still running %d s after the WAL's fdatasync failed (%llu failed calls)",
                 WAIT_MS / 1000, (unsigned long long)fault_counts().failed);
}
END_TEST

/* ---- open and read ------------------------------------------------------------- */

/*
 * The opens of the database file in store_open, in order: the connection
 * that migrates, the writer, STORE_READERS readers, the checkpointer's.
 * Failing the n-th of them (after = n) leaves store_open STORE_EOPEN with a
 * log line and nothing leaked; one past the last, it opens. Then, the fault
 * gone, the same file opens.
 */
#define DB_OPENS (2 + STORE_READERS + 1)

START_TEST(open_fault_at_each_connection_is_eopen)
{
    unsigned after = (unsigned)_i;
    struct sqlite_io_fault f = {.ops = SQLIO_OPEN, .files = SQLIO_DB, .error = EIO, .after = after};
    ck_assert_int_eq(sqlite_io_fault_set(&f), 0);
    struct store_options opts = {.path = dbpath, .durability = DURABILITY_FULL};
    struct capture cap;
    capture_begin(&cap);
    int rc = store_open(&opts, &st);
    char *log = capture_end(&cap);
    struct sqlite_io_fault_counts fc = fault_counts();
    if (after < DB_OPENS) {
        ck_assert_int_eq(rc, STORE_EOPEN);
        ck_assert_ptr_null(st);
        ck_assert_uint_eq(fc.failed, 1);
        ck_assert_uint_eq(fc.matched, after + 1);
        ck_assert_ptr_nonnull(strstr(log, "cannot open"));
    } else {
        ck_assert_int_eq(rc, STORE_OK);
        ck_assert_uint_eq(fc.failed, 0);
        ck_assert_uint_eq(fc.matched, DB_OPENS);
        store_close(st);
        st = NULL;
    }
    free(log);
    sqlite_io_fault_clear();
    open_store(DURABILITY_FULL);
    ck_assert(store_writable(st));
}
END_TEST

/* The WAL cannot be opened (created): the first read of the file in WAL mode fails. */
START_TEST(open_fault_on_the_wal_is_eopen)
{
    arm(SQLIO_OPEN, SQLIO_WAL, EIO);
    struct store_options opts = {.path = dbpath, .durability = DURABILITY_FULL};
    struct capture cap;
    capture_begin(&cap);
    int rc = store_open(&opts, &st);
    char *log = capture_end(&cap);
    ck_assert_int_eq(rc, STORE_EOPEN);
    ck_assert_ptr_null(st);
    ck_assert_uint_ge(fault_counts().failed, 1);
    ck_assert_ptr_nonnull(strstr(log, "unable to open database file"));
    free(log);
    sqlite_io_fault_clear();
    open_store(DURABILITY_FULL);
    ck_assert(store_writable(st));
}
END_TEST

/* A read that fails (EIO) makes a lookup STORE_EUNAVAILABLE (503); it works again after. */
START_TEST(read_fault_is_unavailable_then_recovers)
{
    open_store(DURABILITY_FULL);
    char ids[3][ID_ULID_LEN + 1];
    write_orders(3, "r", ITEMS_JSON, 0, 0, ids);
    arm(SQLIO_READ, 0, EIO);
    /* The write changed the file: the reader reads its pages again. */
    struct store_order o;
    memset(&o, 0, sizeof(o));
    ck_assert_int_eq(store_get_order(st, ids[0], ids_now_ms(), &o), STORE_EUNAVAILABLE);
    ck_assert_uint_ge(fault_counts().failed, 1);
    sqlite_io_fault_clear();
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(order_status(ids[i]), STORE_OK);
}
END_TEST

/* ---- the checkpointer ---------------------------------------------------------- */

static int gauges(void *arg, struct metrics_queue_gauges *g, struct metrics_sink *more)
{
    struct store_stats s;
    if (store_stats(arg, &s) != STORE_OK)
        return -1;
    g->queue_depth = s.queue_depth;
    g->dlq_depth = s.dlq_depth;
    g->oldest_age_seconds = 0;
    store_put_metrics(arg, more);
    return 0;
}

/* orderd_storage_checkpoints_total{result="RESULT"} as /metrics shows it. */
static uint64_t checkpoints(struct metrics *m, const char *result)
{
    char head[128];
    snprintf(head, sizeof(head), "orderd_storage_checkpoints_total{result=\"%s\"} ", result);
    return metric_value(m, head);
}

/* The WAL header's checkpoint sequence number: SQLite adds one each time the
 * WAL starts over from its beginning. */
static uint32_t wal_checkpoint_seq(void)
{
    unsigned char h[16];
    int fd = open(walpath, O_RDONLY | O_CLOEXEC);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(pread(fd, h, sizeof(h), 0), (ssize_t)sizeof(h));
    close(fd);
    return (uint32_t)h[12] << 24 | (uint32_t)h[13] << 16 | (uint32_t)h[14] << 8 | h[15];
}

static char big_items[3200];

/* Writes about `pages` WAL pages of orders (3 KiB each, 64 to a transaction). */
static void write_wal_pages(int pages)
{
    static char ids[64][ID_ULID_LEN + 1];
    for (int written = 0; written < pages; written += 64)
        write_orders(64, "ckpt", big_items, 0, 0, ids);
}

struct ckpt_case {
    unsigned ops;
    unsigned files;
};

static const struct ckpt_case ckpt_cases[] = {
    {SQLIO_WRITE, SQLIO_DB}, /* copying pages into the database file */
    {SQLIO_SYNC, SQLIO_WAL}, /* the WAL's fsync before the copy */
    {SQLIO_SYNC, SQLIO_DB},  /* the database's fsync after it */
};

static bool wait_checkpoints(struct metrics *m, const char *result, uint64_t at_least)
{
    double deadline = deadline_in(WAIT_MS);
    while (checkpoints(m, result) < at_least) {
        if (passed(deadline))
            return false;
        sleep_ms(5);
    }
    return true;
}

/*
 * With the fault armed, more than a checkpoint's worth of WAL pages: the
 * checkpoint fails and is counted so; intake goes on meanwhile. The fault
 * gone and another mark's worth written, a checkpoint completes and the next
 * write starts the WAL over.
 */
START_TEST(checkpoint_fault_is_counted_failed_then_the_next_completes)
{
    const struct ckpt_case *cc = &ckpt_cases[_i];
    snprintf(big_items, sizeof(big_items), "[{\"item\":\"%0*d\",\"quantity\":1}]", 3000, 7);
    struct metrics *m = NULL;
    ck_assert_int_eq(metrics_new(&m), 0);
    metrics_set_gauge_source(m, gauges, st);
    ck_assert_uint_eq(checkpoints(m, "failed"), 0);
    ck_assert_uint_eq(checkpoints(m, "completed"), 0);

    /* A WAL's first commit writes its header and syncs it (SQLite's
     * syncHeader): that sync is not a checkpoint's, so it comes first. */
    static char one[1][ID_ULID_LEN + 1];
    write_orders(1, "ckpt", ITEMS_JSON, 0, 0, one);
    arm(cc->ops, cc->files, EIO);
    write_wal_pages(STORE_WAL_CHECKPOINT_PAGES + 200);
    ck_assert(wait_checkpoints(m, "failed", 1));
    ck_assert_uint_ge(fault_counts().failed, 1);
    ck_assert_uint_eq(checkpoints(m, "completed"), 0);
    uint32_t seq = wal_checkpoint_seq();
    int64_t grown = file_size(walpath);
    ck_assert_int_gt(grown, (int64_t)STORE_WAL_CHECKPOINT_PAGES * 4096);

    sqlite_io_fault_clear();
    write_wal_pages(STORE_WAL_CHECKPOINT_PAGES + 200);
    ck_assert(wait_checkpoints(m, "completed", 1));
    /* The next commit starts the WAL over from its beginning. */
    write_orders(1, "ckpt", ITEMS_JSON, 0, 0, one);
    ck_assert_uint_ne(wal_checkpoint_seq(), seq);
    char text[64];
    query_text("PRAGMA integrity_check", text, sizeof(text));
    ck_assert_str_eq(text, "ok");
    metrics_set_gauge_source(m, NULL, NULL);
    metrics_free(m);
}
END_TEST

/* ---- the workers ----------------------------------------------------------------- */

#define SETTLE_N 10
#define SETTLE_LEASE_MS 3000 /* the messages' lease: long enough for the checks under the fault */

/*
 * Messages written leased and delivered to a worker, as the committer does;
 * the worker's settlement fails with EIO: the messages stay leased as they
 * were (receive count 1, the same receipt), the orders queued. Once the disk
 * is back, the leases run out, a worker claims them again and completes
 * them: attempts 2.
 */
START_TEST(settle_fault_leaves_messages_leased_then_they_complete)
{
    open_store(DURABILITY_NORMAL);
    struct metrics *m = NULL;
    ck_assert_int_eq(metrics_new(&m), 0);
    struct worker_options wo = {
        .count = 1,
        .visibility_timeout_ms = SETTLE_LEASE_MS,
        .max_receives = 5,
        .backoff_base_ms = 100,
        .backoff_max_ms = 1000,
    };
    struct workers *w = NULL;
    ck_assert_int_eq(workers_start(st, m, &wo, &w), 0);

    const int64_t receipt = 4242;
    static char ids[SETTLE_N][ID_ULID_LEN + 1];
    write_orders(SETTLE_N, "settle", ITEMS_JSON, receipt, SETTLE_LEASE_MS, ids);
    struct store_message msgs[SETTLE_N];
    for (int i = 0; i < SETTLE_N; i++) {
        memset(&msgs[i], 0, sizeof(msgs[i]));
        memcpy(msgs[i].order_id, ids[i], sizeof(msgs[i].order_id));
        snprintf(msgs[i].traceparent, sizeof(msgs[i].traceparent), "%s", TRACEPARENT);
        msgs[i].customer_id = strdup("settle");
        msgs[i].items_json = strdup(ITEMS_JSON);
        ck_assert(msgs[i].customer_id != NULL && msgs[i].items_json != NULL);
        msgs[i].receipt = receipt;
        msgs[i].receive_count = 1;
        msgs[i].created_at_ms = ids_now_ms();
    }

    arm(SQLIO_WRITE, SQLIO_WAL, EIO);
    struct capture cap;
    capture_begin(&cap);
    ck_assert_uint_eq(workers_reserve(w, SETTLE_N), SETTLE_N);
    workers_deliver(w, msgs, SETTLE_N); /* the worker owns their strings now */
    /* the settlement's failure, not a claim's (a poll may fail first) */
    bool seen = capture_wait_for(&cap, "cannot settle 10 messages: storage unavailable");
    free(capture_end(&cap));
    ck_assert(seen);
    /* Nothing was settled: each message as it was written, leased. */
    char sql[256];
    snprintf(sql, sizeof(sql),
             "SELECT count(*) FROM queue WHERE receipt = %lld AND receive_count = 1",
             (long long)receipt);
    ck_assert_int_eq(query_int(sql), SETTLE_N);
    ck_assert_int_eq(query_int("SELECT count(*) FROM orders WHERE status = 'queued'"), SETTLE_N);

    sqlite_io_fault_clear();
    double deadline = deadline_in(WAIT_MS);
    while (query_int("SELECT count(*) FROM orders WHERE status = 'completed'") < SETTLE_N) {
        ck_assert_msg(!passed(deadline), "not completed %d s after the disk came back",
                      WAIT_MS / 1000);
        sleep_ms(20);
    }
    workers_stop(w);
    ck_assert_int_eq(query_int("SELECT count(*) FROM orders WHERE status = 'completed' "
                               "AND attempts = 2"),
                     SETTLE_N);
    ck_assert_int_eq(query_int("SELECT count(*) FROM queue"), 0);
    metrics_free(m);
}
END_TEST

/* ---- the start check ----------------------------------------------------------- */

/*
 * Orders are due in the store but every claim fails (the WAL cannot be
 * written): a worker asks again only every WORKER_STORE_RETRY_MS, instead of
 * spinning on the failing disk (it made some 40 000 claim transactions and
 * log lines a second before). Both worker loops: without a fulfilment, and
 * with one (worker_inflight.c). Once the disk is back, every order completes.
 */
#define IDLE_N 5
#define IDLE_WATCH_MS 2000

START_TEST(failing_claims_are_retried_slowly_then_complete)
{
    open_store(DURABILITY_NORMAL);
    struct metrics *m = NULL;
    ck_assert_int_eq(metrics_new(&m), 0);
    static char ids[IDLE_N][ID_ULID_LEN + 1];
    write_orders(IDLE_N, "idle", ITEMS_JSON, 0, 0, ids); /* visible: to be claimed */
    signal(SIGPIPE, SIG_IGN); /* as main() does: /bin/true leaves its stdin unread */
    struct worker_options wo = {
        .count = 1,
        .visibility_timeout_ms = 30000,
        .max_receives = 5,
        .backoff_base_ms = 100,
        .backoff_max_ms = 1000,
        .fulfilment_command = _i == 1 ? "/bin/true" : NULL,
        .fulfilment_timeout_ms = 10000,
        .fulfilment_concurrency = 4,
    };
    arm(SQLIO_WRITE, SQLIO_WAL, EIO);
    struct capture cap;
    capture_begin(&cap);
    struct workers *w = NULL;
    ck_assert_int_eq(workers_start(st, m, &wo, &w), 0);
    ck_assert(wait_fault_failed(1));
    uint64_t first = fault_counts().failed;
    sleep_ms(IDLE_WATCH_MS);
    uint64_t during = fault_counts().failed - first;
    sqlite_io_fault_clear();
    char *log = capture_end(&cap);
    int lines = count_lines(log);
    free(log);
    /* one claim a second at most, a few writes each: far from thousands */
    uint64_t most = 8 * (IDLE_WATCH_MS / WORKER_STORE_RETRY_MS + 1);
    ck_assert_msg(during <= most, "%llu failed writes in %d ms, want at most %llu",
                  (unsigned long long)during, IDLE_WATCH_MS, (unsigned long long)most);
    ck_assert_msg(lines <= 40, "%d log lines while the disk failed", lines);

    double deadline = deadline_in(WAIT_MS);
    while (query_int("SELECT count(*) FROM orders WHERE status = 'completed'") < IDLE_N) {
        ck_assert_msg(!passed(deadline), "not completed %d s after the disk came back",
                      WAIT_MS / 1000);
        sleep_ms(20);
    }
    workers_stop(w);
    metrics_free(m);
}
END_TEST

#define START_ORDERS 300

/* A store with START_ORDERS orders, closed cleanly; returns a page of the
 * orders table past the header (a leaf), found while no WAL is left. */
static int64_t clean_store_and_a_leaf_page(void)
{
    open_store(DURABILITY_FULL);
    static char ids[START_ORDERS][ID_ULID_LEN + 1];
    write_orders(START_ORDERS, "start", ITEMS_JSON, 0, 0, ids);
    store_close(st);
    st = NULL;
    ck_assert_int_eq(file_size(walpath), -1); /* a clean stop leaves no WAL */
    /* A read-write connection: as the last one to close it leaves no WAL either. */
    sqlite3 *db = NULL;
    sqlite3_stmt *q = NULL;
    ck_assert_int_eq(sqlite3_open_v2(dbpath, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
    ck_assert_int_eq(sqlite3_prepare_v2(db,
                                        "SELECT pageno FROM dbstat WHERE name = 'orders' AND "
                                        "pagetype = 'leaf' ORDER BY pageno DESC LIMIT 1 OFFSET 1",
                                        -1, &q, NULL),
                     SQLITE_OK);
    ck_assert_int_eq(sqlite3_step(q), SQLITE_ROW);
    int64_t page = sqlite3_column_int64(q, 0);
    sqlite3_finalize(q);
    ck_assert_int_eq(sqlite3_close(db), SQLITE_OK);
    ck_assert_int_gt(page, 1);
    ck_assert_int_eq(file_size(walpath), -1);
    return page;
}

/* A child opens the store, writes (the heartbeat: a page of its own table)
 * and is killed holding it: the WAL stays behind with content. */
static void unclean_stop(void)
{
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        struct store_options opts = {.path = dbpath, .durability = DURABILITY_FULL};
        struct store *s = NULL;
        if (store_open(&opts, &s) != STORE_OK || !store_writable(s))
            _exit(1);
        raise(SIGKILL);
        _exit(1);
    }
    int status = 0;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert_msg(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL,
                  "the child holding the store was not killed (status %d)", status);
    ck_assert_int_gt(file_size(walpath), 0);
}

/* Garbage over one page of the database file (no connection is open). */
static void damage_page(int64_t page)
{
    char junk[4096];
    memset(junk, 0xa5, sizeof(junk));
    int fd = open(dbpath, O_WRONLY | O_CLOEXEC);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(pwrite(fd, junk, sizeof(junk), (off_t)(page - 1) * 4096),
                     (ssize_t)sizeof(junk));
    close(fd);
}

/* Damaged past the header after a stop that was not clean: refused, with one line. */
START_TEST(start_check_refuses_a_damaged_file_after_an_unclean_stop)
{
    int64_t page = clean_store_and_a_leaf_page();
    unclean_stop();
    damage_page(page);
    struct store_options opts = {.path = dbpath, .durability = DURABILITY_FULL};
    struct capture cap;
    capture_begin(&cap);
    int rc = store_open(&opts, &st);
    char *log = capture_end(&cap);
    ck_assert_int_eq(rc, STORE_EOPEN);
    ck_assert_ptr_null(st);
    ck_assert_ptr_nonnull(strstr(log, "was not closed cleanly and PRAGMA quick_check finds it "
                                      "damaged"));
    char page_line[64];
    snprintf(page_line, sizeof(page_line), "(Page %lld: ", (long long)page);
    ck_assert_msg(strstr(log, page_line) != NULL, "the line does not name %s", page_line);
    ck_assert_int_eq(count_lines(log), 1);
    free(log);
    /* The WAL is kept: the next start refuses too, rather than finding a
     * clean-looking file. */
    ck_assert_int_gt(file_size(walpath), 0);
    ck_assert_int_eq(store_open(&opts, &st), STORE_EOPEN);
    ck_assert_ptr_null(st);
}
END_TEST

/* The same stop without the damage: the check runs, says ok, the store opens
 * with everything in it. */
START_TEST(start_check_passes_a_sound_file_after_an_unclean_stop)
{
    (void)clean_store_and_a_leaf_page();
    unclean_stop();
    struct store_options opts = {.path = dbpath, .durability = DURABILITY_FULL};
    struct capture cap;
    capture_begin(&cap);
    int rc = store_open(&opts, &st);
    char *log = capture_end(&cap);
    ck_assert_int_eq(rc, STORE_OK);
    ck_assert_ptr_nonnull(strstr(log, "was not closed cleanly"));
    ck_assert_ptr_nonnull(strstr(log, "quick_check"));
    ck_assert_ptr_nonnull(strstr(log, " ok in "));
    free(log);
    struct store_stats s;
    ck_assert_int_eq(store_stats(st, &s), STORE_OK);
    ck_assert_uint_eq(s.queue_depth, START_ORDERS);
    ck_assert(store_writable(st));
}
END_TEST

/* A clean stop (or an empty WAL left by another process) skips the check:
 * the damage then goes unseen at open, which is what the check is for. */
START_TEST(start_check_skipped_after_a_clean_stop)
{
    int64_t page = clean_store_and_a_leaf_page();
    damage_page(page);
    int fd = open(walpath, O_WRONLY | O_CREAT | O_CLOEXEC, 0600); /* empty */
    ck_assert_int_ge(fd, 0);
    close(fd);
    struct store_options opts = {.path = dbpath, .durability = DURABILITY_FULL};
    struct capture cap;
    capture_begin(&cap);
    int rc = store_open(&opts, &st);
    char *log = capture_end(&cap);
    ck_assert_int_eq(rc, STORE_OK);
    ck_assert_ptr_null(strstr(log, "quick_check"));
    free(log);
}
END_TEST

/* ---- the one list ------------------------------------------------------------- */

#define N_OF(a) ((int)(sizeof(a) / sizeof((a)[0])))

static TCase *tcase_new(const char *name, void (*setup)(void), int timeout)
{
    TCase *tc = tcase_create(name);
    tcase_add_unchecked_fixture(tc, make_root, remove_root);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, timeout);
    return tc;
}

Suite *suite_store_io(void)
{
    Suite *s = suite_create("store_io");

    TCase *tc = tcase_new("intake", setup_full, UNIT_TIMEOUT_THREADED);
    tcase_add_loop_test(tc, intake_write_fault_answers_every_item_unavailable, 0,
                        N_OF(intake_errors));
    suite_add_tcase(s, tc);

    tc = tcase_new("fsync", setup_full, UNIT_TIMEOUT_THREADED);
    tcase_add_exit_test(tc, failed_wal_fdatasync_exits_2_before_any_answer, 2);
    suite_add_tcase(s, tc);

    tc = tcase_new("open", setup_dir, UNIT_TIMEOUT_IO);
    tcase_add_loop_test(tc, open_fault_at_each_connection_is_eopen, 0, DB_OPENS + 1);
    tcase_add_test(tc, open_fault_on_the_wal_is_eopen);
    tcase_add_test(tc, read_fault_is_unavailable_then_recovers);
    suite_add_tcase(s, tc);

    tc = tcase_new("checkpointer", setup_full, UNIT_TIMEOUT_THREADED);
    tcase_add_loop_test(tc, checkpoint_fault_is_counted_failed_then_the_next_completes, 0,
                        N_OF(ckpt_cases));
    suite_add_tcase(s, tc);

    tc = tcase_new("workers", setup_dir, UNIT_TIMEOUT_THREADED);
    tcase_add_test(tc, settle_fault_leaves_messages_leased_then_they_complete);
    tcase_add_loop_test(tc, failing_claims_are_retried_slowly_then_complete, 0, 2);
    suite_add_tcase(s, tc);

    tc = tcase_new("start_check", setup_dir, UNIT_TIMEOUT_IO);
    tcase_add_test(tc, start_check_refuses_a_damaged_file_after_an_unclean_stop);
    tcase_add_test(tc, start_check_passes_a_sound_file_after_an_unclean_stop);
    tcase_add_test(tc, start_check_skipped_after_a_clean_stop);
    suite_add_tcase(s, tc);

    return s;
}
