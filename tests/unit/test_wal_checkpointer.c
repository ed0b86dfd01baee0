/*
 * test_wal_checkpointer.c — the checkpoint thread on a real SQLite file: it
 * keeps the WAL from growing while a writer commits, what it copies is in the
 * database file, a reader's old snapshot makes it wait for more pages instead
 * of trying on every commit, and stop() leaves the writer usable.
 *
 * Each case has its own directory and database; the writer commits small
 * rows, one WAL page or so each, under the write lock as the store does.
 */
#include <check.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/stat.h>
#include <time.h>

#include "tmpdir.h"
#include "wal_checkpointer.h"
#include "timeouts.h"

Suite *suite_wal_checkpointer(void);

#define FRAMES 64 /* checkpoint mark of these tests, in WAL pages */
#define PAGE 4096
#define WAIT_MS 30000 /* bound on every wait for the thread (sanitizers are slow) */

static char dir[512];
static char dbpath[600];
static char walpath[620];
static sqlite3 *writer;
static pthread_mutex_t write_lock = PTHREAD_MUTEX_INITIALIZER;
static struct wal_checkpointer *ckpt;

static void exec_ok(sqlite3 *db, const char *sql)
{
    char *err = NULL;
    int rc = sqlite3_exec(db, sql, NULL, NULL, &err);
    ck_assert_msg(rc == SQLITE_OK, "%s: %s", sql, err ? err : "?");
    sqlite3_free(err);
}

static void setup(void)
{
    tmpdir_make(dir, sizeof(dir), NULL, "orderd-test-ckpt");
    snprintf(dbpath, sizeof(dbpath), "%s/t.db", dir);
    snprintf(walpath, sizeof(walpath), "%s-wal", dbpath);
    ck_assert_int_eq(
        sqlite3_open_v2(dbpath, &writer,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL),
        SQLITE_OK);
    sqlite3_busy_timeout(writer, 5000);
    exec_ok(writer, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
                    "CREATE TABLE t (id INTEGER PRIMARY KEY, pad BLOB NOT NULL)");
    ckpt = NULL;
}

static void teardown(void)
{
    wal_checkpointer_stop(ckpt);
    ckpt = NULL;
    sqlite3_close(writer);
    writer = NULL;
    tmpdir_remove(dir);
}

static void start(void)
{
    struct wal_checkpointer_options o = {
        .path = dbpath, .frames = FRAMES, .writer = writer, .write_lock = &write_lock};
    ck_assert_int_eq(wal_checkpointer_start(&o, &ckpt), 0);
}

static void sleep_us(long us)
{
    struct timespec ts = {.tv_sec = us / 1000000, .tv_nsec = (us % 1000000) * 1000L};
    nanosleep(&ts, NULL);
}

static int64_t file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (int64_t)st.st_size : 0;
}

/* n transactions of one 3 KiB row each (one new WAL page or so), under the
 * write lock, with a pause between them as a committer has; returns the
 * largest WAL file size seen after a commit. */
static int64_t commit_rows(int n)
{
    int64_t largest = 0;
    for (int i = 0; i < n; i++) {
        pthread_mutex_lock(&write_lock);
        exec_ok(writer, "INSERT INTO t (pad) VALUES (zeroblob(3072))");
        pthread_mutex_unlock(&write_lock);
        int64_t size = file_size(walpath);
        if (size > largest)
            largest = size;
        sleep_us(200);
    }
    return largest;
}

static struct wal_checkpointer_stats stats(void)
{
    struct wal_checkpointer_stats s;
    wal_checkpointer_stats(ckpt, &s);
    return s;
}

static bool wait_completed(uint64_t at_least)
{
    for (int waited = 0; waited < WAIT_MS; waited += 5) {
        if (stats().completed >= at_least)
            return true;
        sleep_us(5000);
    }
    return false;
}

static int64_t count_rows(const char *path)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    ck_assert_int_eq(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    ck_assert_int_eq(sqlite3_prepare_v2(db, "SELECT count(*) FROM t", -1, &st, NULL), SQLITE_OK);
    ck_assert_int_eq(sqlite3_step(st), SQLITE_ROW);
    int64_t n = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return n;
}

/* A reader whose snapshot dates from before the writes that follow: no
 * checkpoint can copy past it while it is open. */
static sqlite3 *hold_old_snapshot(void)
{
    commit_rows(1);
    sqlite3 *reader = NULL;
    ck_assert_int_eq(sqlite3_open_v2(dbpath, &reader, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    exec_ok(reader, "BEGIN; SELECT count(*) FROM t");
    return reader;
}

static void release_snapshot(sqlite3 *reader)
{
    exec_ok(reader, "COMMIT");
    sqlite3_close(reader);
}

/* 1 600 commits append ~25 times the mark; with the thread the WAL file never
 * holds more than a few marks' worth, and the rows are in the database file. */
START_TEST(wal_stays_bounded_while_writing)
{
    start();
    int64_t largest = commit_rows(1600);
    ck_assert(wait_completed(5));
    struct wal_checkpointer_stats s = stats();
    ck_assert_uint_eq(s.failed, 0);
    ck_assert_msg(largest <= 6 * FRAMES * (PAGE + 24),
                  "WAL reached %lld bytes; the mark is %d pages", (long long)largest, FRAMES);
    /* Copied, not only logged: the database file alone holds most rows. */
    ck_assert_int_ge(file_size(dbpath), 1200LL * 3072);
    ck_assert_int_eq(count_rows(dbpath), 1600);
}
END_TEST

/* The same writes without the thread (SQLite's own checkpoint off, as the
 * checkpointer sets it) grow the WAL past the bound above: the bound means
 * something. */
START_TEST(without_the_thread_the_wal_grows)
{
    sqlite3_wal_autocheckpoint(writer, 0);
    int64_t largest = commit_rows(1600);
    ck_assert_int_gt(largest, 6 * FRAMES * (PAGE + 24));
}
END_TEST

/*
 * A reader's snapshot from before the writes keeps every later page in the
 * WAL: each checkpoint is partial. The thread then waits for another mark of
 * pages before it tries again — one try per mark, not one per commit (1 600
 * commits, ~2 pages each) — and completes once the reader is gone.
 */
START_TEST(old_snapshot_is_waited_out_without_spinning)
{
    sqlite3 *reader = hold_old_snapshot();
    start();
    commit_rows(1600);
    struct wal_checkpointer_stats s = stats();
    /* Nothing restarted the WAL: its size counts every page appended. */
    int64_t marks = (file_size(walpath) - 32) / (PAGE + 24) / FRAMES;
    ck_assert_uint_eq(s.completed, 0);
    ck_assert_uint_ge(s.partial, 1);
    ck_assert_msg(s.partial <= (uint64_t)marks + 2, "%llu tries for %lld marks of pages",
                  (unsigned long long)s.partial, (long long)marks);
    release_snapshot(reader);
    commit_rows(2 * FRAMES);
    ck_assert(wait_completed(1));
}
END_TEST

/* A writer thread that commits one row at a time until told to stop, as
 * the committer does under load; counts its failures instead of asserting
 * (check's assertions belong to the test's own thread). */
static atomic_bool writing;
static atomic_int write_failures;

static void *keep_writing(void *arg)
{
    (void)arg;
    while (atomic_load(&writing)) {
        pthread_mutex_lock(&write_lock);
        if (sqlite3_exec(writer, "INSERT INTO t (pad) VALUES (zeroblob(3072))", NULL, NULL, NULL) !=
            SQLITE_OK)
            atomic_fetch_add(&write_failures, 1);
        pthread_mutex_unlock(&write_lock);
        sleep_us(100);
    }
    return NULL;
}

/*
 * A reader held ~150 marks of pages in the WAL; once it is gone, copying them
 * takes long enough for a busy writer to append several marks more. Step 1
 * goes round again for those, so the part copied under the write lock (what
 * every writer waits for) stays near one mark instead of all that was
 * appended during the long copy.
 */
START_TEST(backlog_is_copied_without_the_lock)
{
    sqlite3 *reader = hold_old_snapshot();
    start();
    commit_rows(3200);
    ck_assert_uint_eq(stats().completed, 0);

    atomic_store(&writing, true);
    atomic_store(&write_failures, 0);
    pthread_t thread;
    ck_assert_int_eq(pthread_create(&thread, NULL, keep_writing, NULL), 0);
    release_snapshot(reader);
    bool completed = wait_completed(1);
    atomic_store(&writing, false);
    pthread_join(thread, NULL);

    ck_assert(completed);
    ck_assert_int_eq(atomic_load(&write_failures), 0);
    struct wal_checkpointer_stats s = stats();
    ck_assert_msg(s.max_locked_frames <= 2 * FRAMES,
                  "%llu pages copied under the write lock; the mark is %d",
                  (unsigned long long)s.max_locked_frames, FRAMES);
}
END_TEST

/* stop() removes the WAL hook: later commits on the writer must not reach
 * the freed checkpointer (ASan would report it), and the data stays. */
START_TEST(writer_works_after_stop)
{
    start();
    commit_rows(2 * FRAMES);
    wal_checkpointer_stop(ckpt);
    ckpt = NULL;
    commit_rows(2 * FRAMES);
    ck_assert_int_eq(count_rows(dbpath), 4 * FRAMES);
}
END_TEST

/* A database that cannot be opened: start fails, nothing is installed. */
START_TEST(start_fails_on_a_missing_file)
{
    char missing[700];
    snprintf(missing, sizeof(missing), "%s/no/such/dir/t.db", dir);
    struct wal_checkpointer_options o = {
        .path = missing, .frames = FRAMES, .writer = writer, .write_lock = &write_lock};
    struct wal_checkpointer *c = NULL;
    ck_assert_int_eq(wal_checkpointer_start(&o, &c), -1);
    ck_assert_ptr_null(c);
    commit_rows(4); /* no hook left behind */
}
END_TEST

Suite *suite_wal_checkpointer(void)
{
    Suite *s = suite_create("wal_checkpointer");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, UNIT_TIMEOUT_THREADED);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, wal_stays_bounded_while_writing);
    tcase_add_test(tc, without_the_thread_the_wal_grows);
    tcase_add_test(tc, old_snapshot_is_waited_out_without_spinning);
    tcase_add_test(tc, backlog_is_copied_without_the_lock);
    tcase_add_test(tc, writer_works_after_stop);
    tcase_add_test(tc, start_fails_on_a_missing_file);
    suite_add_tcase(s, tc);
    return s;
}
