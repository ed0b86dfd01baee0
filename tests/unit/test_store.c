/*
 * test_store.c — the SQLite store against the state machine written at the top
 * of src/store_sqlite.c: schema and open, intake (max_depth, idempotency), the
 * derived order status, claim / settle / release with fencing receipts, dead
 * letters, redrive and delete with the history they leave on the order,
 * schema upgrades, backup, counters, and a full disk (STORE_EUNAVAILABLE).
 *
 * Time is driven through the now_ms arguments from T0.
 *
 * Temp files: each test case (tcase) makes one root directory in the parent
 * process (unchecked fixture) and removes it there, so a test that fails or
 * times out in its forked child still leaves nothing behind. Each test opens a
 * fresh database in its own directory under that root (checked fixture).
 * The disk-full case mounts a 1 MiB tmpfs on its root when mount(2) is allowed
 * (root) and reports itself skipped otherwise.
 *
 * Backends: SQLite by default. With TEST_STORE_DSN set (tests/pg/run.sh) the
 * same cases run against PostgreSQL: each test starts from an empty schema of
 * that database, and the test's own SQL goes through psql. The cases about
 * SQLite's file (modes, PRAGMAs, backup, a full disk) skip themselves there;
 * tests/pg/test_store_pg.c has the PostgreSQL-only ones.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bounds.h"
#include "ids.h"
#include "store.h"
#include "tmpdir.h"
#include "timeouts.h"

Suite *suite_store(void);

/* The schema versions this build writes (store_sqlite.c, store_pg.c). */
#define SCHEMA_SQLITE 4
#define SCHEMA_PG 3
#define SCHEMA_SQLITE_NEWER "5"

#define T0 INT64_C(1700000000000)
#define TTL_MS ((int64_t)IDEMPOTENCY_TTL_S * 1000)
#define NO_LIMIT UINT64_MAX

/* ---- fixtures ------------------------------------------------------------------------------- */

static char root[512];        /* per tcase, made and removed in the parent */
static bool root_is_tmpfs;
static int tmpfs_errno;

static char dir[1024];        /* per test, under root */
static char dbpath[1100];
static struct store *st;

/* The PostgreSQL database of this run, or NULL: SQLite. */
static const char *pg_dsn(void)
{
    const char *dsn = getenv("TEST_STORE_DSN");
    return dsn && *dsn ? dsn : NULL;
}

/* Cases about SQLite's file: nothing to test on PostgreSQL. */
#define SQLITE_ONLY()                                                                     \
    do {                                                                                  \
        if (pg_dsn()) {                                                                   \
            fprintf(stderr, "store: %s SKIPPED on postgres\n", __func__);                 \
            return;                                                                       \
        }                                                                                 \
    } while (0)

static struct store_options store_opts(const char *path, enum durability durability)
{
    return (struct store_options){
        .backend = pg_dsn() ? STORE_BACKEND_POSTGRES : STORE_BACKEND_SQLITE,
        .path = path,
        .dsn = pg_dsn(),
        .durability = durability,
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

static void make_root(void)
{
    tmpdir_make(root, sizeof(root), NULL, "orderd-test-store");
}

static void remove_root(void)
{
    if (root_is_tmpfs)
        umount2(root, MNT_DETACH);
    root_is_tmpfs = false;
    tmpdir_remove(root);
}

static void make_tmpfs_root(void)
{
    make_root();
    if (mount("tmpfs", root, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=0700") == 0)
        root_is_tmpfs = true;
    else
        tmpfs_errno = errno;
}

static void open_store_at(const char *path, struct store **out)
{
    struct store_options opts = store_opts(path, DURABILITY_FULL);
    ck_assert_int_eq(store_open(&opts, out), STORE_OK);
}

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
    open_store_at(dbpath, &st);
}

static void teardown(void)
{
    store_close(st);
    st = NULL;
    tmpdir_remove(dir);
}

/* ---- orders made by the tests --------------------------------------------------------------- */

/* The text a store_new_order points into. */
struct order_text {
    char id[ID_ULID_LEN + 1];
    char customer[ORDER_CUSTOMER_ID_MAX + 1];
    char items[64];
    char traceparent[TRACEPARENT_LEN + 1];
    char request[96];
    char response[96];
};

static unsigned trace_seq;

/* ids from created_ms: orders made at later ms sort after earlier ones. */
static void order_make(struct order_text *t, struct store_new_order *o, int64_t created_ms,
                       const char *customer, const char *key)
{
    memset(t, 0, sizeof(*t));
    memset(o, 0, sizeof(*o));
    ck_assert_int_eq(ids_ulid_at((uint64_t)created_ms, t->id), 0);
    snprintf(t->customer, sizeof(t->customer), "%s", customer ? customer : "cust");
    snprintf(t->items, sizeof(t->items), "[{\"item\":\"widget\",\"quantity\":%u}]",
             ++trace_seq % 10000 + 1);
    snprintf(t->traceparent, sizeof(t->traceparent), "00-%032x-%016x-01", trace_seq, trace_seq);
    o->order_id = t->id;
    o->customer_id = t->customer;
    o->items_json = t->items;
    o->traceparent = t->traceparent;
    o->created_at_ms = created_ms;
    o->result = 1; /* neither OK nor an error: the store must set it */
    if (key != NULL) {
        snprintf(t->request, sizeof(t->request), "{\"customer_id\":\"%s\",\"n\":%u}",
                 t->customer, trace_seq);
        snprintf(t->response, sizeof(t->response), "{\"order_id\":\"%s\"}", t->id);
        o->idempotency_key = key;
        o->request_json = t->request;
        o->response_json = t->response;
    }
}

struct batch {
    size_t n;
    struct order_text *text;
    struct store_new_order *orders;
};

/* n orders created at first_ms, first_ms + 1, ... (so ids ascend). */
static void batch_make(struct batch *b, size_t n, int64_t first_ms, const char *customer)
{
    b->n = n;
    b->text = calloc(n, sizeof(*b->text));
    b->orders = calloc(n, sizeof(*b->orders));
    ck_assert_ptr_nonnull(b->text);
    ck_assert_ptr_nonnull(b->orders);
    for (size_t i = 0; i < n; i++)
        order_make(&b->text[i], &b->orders[i], first_ms + (int64_t)i, customer, NULL);
}

static void batch_free(struct batch *b)
{
    free(b->text);
    free(b->orders);
    memset(b, 0, sizeof(*b));
}

/* Commits the whole batch; every order must be written. */
static void batch_commit(struct batch *b)
{
    ck_assert_int_eq(store_enqueue_batch(st, b->orders, b->n, NO_LIMIT), STORE_OK);
    for (size_t i = 0; i < b->n; i++)
        ck_assert_int_eq(b->orders[i].result, STORE_OK);
}

/* One order committed on its own. */
static void enqueue_one(struct order_text *t, int64_t created_ms, const char *customer)
{
    struct store_new_order o;
    order_make(t, &o, created_ms, customer, NULL);
    ck_assert_int_eq(store_enqueue_batch(st, &o, 1, NO_LIMIT), STORE_OK);
    ck_assert_int_eq(o.result, STORE_OK);
}

static struct store_stats stats(void)
{
    struct store_stats s;
    memset(&s, 0xff, sizeof(s));
    ck_assert_int_eq(store_stats(st, &s), STORE_OK);
    return s;
}

/* Claims with the store's result asserted OK; returns how many were delivered. */
static size_t claim(int64_t now, int64_t visibility_timeout_ms, uint32_t max_receives, size_t max,
                    struct store_message *out, size_t *dead)
{
    size_t n = 99, d = 99;
    ck_assert_int_eq(store_claim(st, now, visibility_timeout_ms, max_receives, out, max, &n, &d), STORE_OK);
    if (dead)
        *dead = d;
    else
        ck_assert_uint_eq(d, 0);
    return n;
}

static void messages_clear(struct store_message *m, size_t n)
{
    for (size_t i = 0; i < n; i++)
        store_message_clear(&m[i]);
}

/* One settlement in its own transaction; returns its per-item result. */
static int settle1(const char *order_id, int64_t receipt, enum store_outcome outcome,
                   const char *error, int64_t visible_at_ms, uint32_t attempts, int64_t now)
{
    struct store_settlement it = {
        .order_id = order_id,
        .receipt = receipt,
        .outcome = outcome,
        .error = error,
        .visible_at_ms = visible_at_ms,
        .attempts = attempts,
        .result = 1,
    };
    ck_assert_int_eq(store_settle(st, &it, 1, now), STORE_OK);
    return it.result;
}

/* Claims everything visible at now and dead-letters it; returns how many. */
static size_t dead_letter_all(int64_t now, const char *error)
{
    struct store_message m[WORKER_BATCH_MAX];
    struct store_settlement s[WORKER_BATCH_MAX];
    size_t total = 0, n;
    while ((n = claim(now, 1000, 100, WORKER_BATCH_MAX, m, NULL)) > 0) {
        for (size_t i = 0; i < n; i++)
            s[i] = (struct store_settlement){.order_id = m[i].order_id,
                                             .receipt = m[i].receipt,
                                             .outcome = STORE_OUTCOME_DEAD_LETTER,
                                             .error = error,
                                             .attempts = m[i].receive_count};
        ck_assert_int_eq(store_settle(st, s, n, now), STORE_OK);
        for (size_t i = 0; i < n; i++)
            ck_assert_int_eq(s[i].result, STORE_OK);
        messages_clear(m, n);
        total += n;
    }
    return total;
}

/* The receipt under which id was delivered in m (a claim's output). */
static int64_t receipt_of(const struct store_message *m, size_t n, const char *id)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(m[i].order_id, id) == 0)
            return m[i].receipt;
    ck_abort_msg("order %s was not delivered", id);
    return -1;
}

static void get_ok(const char *id, int64_t now, struct store_order *o)
{
    memset(o, 0, sizeof(*o));
    ck_assert_int_eq(store_get_order(st, id, now, o), STORE_OK);
}

/* The status, attempts and last error the API would show for id at now. */
static void assert_order_state(const char *id, int64_t now, const char *status, uint32_t attempts,
                               const char *last_error)
{
    struct store_order o;
    get_ok(id, now, &o);
    ck_assert_str_eq(o.order_id, id);
    ck_assert_str_eq(o.status, status);
    ck_assert_uint_eq(o.attempts, attempts);
    ck_assert_pstr_eq(o.last_error, last_error);
    store_order_clear(&o);
}

/* The order's history through the dead-letter queue (store.h, struct store_order). */
struct history {
    uint32_t redrives;
    int64_t redriven_at_ms;
    uint32_t previous_attempts;
    const char *previous_error;
    int64_t discarded_at_ms;
};

static void assert_history(const char *id, int64_t now, struct history want)
{
    struct store_order o;
    get_ok(id, now, &o);
    ck_assert_uint_eq(o.redrives, want.redrives);
    ck_assert_int_eq(o.redriven_at_ms, want.redriven_at_ms);
    if (want.redrives > 0)
        ck_assert_uint_eq(o.previous_attempts, want.previous_attempts);
    ck_assert_pstr_eq(o.previous_error, want.previous_error);
    ck_assert_int_eq(o.discarded_at_ms, want.discarded_at_ms);
    store_order_clear(&o);
}

static int get_status(const char *id, int64_t now)
{
    struct store_order o;
    memset(&o, 0, sizeof(o));
    int rc = store_get_order(st, id, now, &o);
    store_order_clear(&o);
    return rc;
}

/* The queue is empty: SQLite says so; PostgreSQL, where other nodes enqueue
 * unseen, answers the time of its next poll, soon (store.h). */
static void assert_no_next_visible(void)
{
    int64_t when = 0, before = ids_now_ms();
    if (!pg_dsn()) {
        ck_assert_int_eq(store_next_visible_ms(st, &when), STORE_ENOTFOUND);
        return;
    }
    ck_assert_int_eq(store_next_visible_ms(st, &when), STORE_OK);
    ck_assert_int_ge(when, before);
    ck_assert_int_le(when, ids_now_ms() + 10000);
}

/* Maps ids back to their 1-based index in text: "531" = text[4], text[2], text[0]. */
static void ids_to_digits(const char *const *ids, size_t n, const struct order_text *text,
                          size_t ntext, char *out, size_t size)
{
    size_t k = 0;
    for (size_t i = 0; i < n && k + 1 < size; i++) {
        char c = '?';
        for (size_t j = 0; j < ntext; j++)
            if (strcmp(ids[i], text[j].id) == 0)
                c = (char)(j < 9 ? '1' + j : 'a' + (j - 9));
        out[k++] = c;
    }
    out[k] = '\0';
}

static void list_digits(const struct store_order_filter *f, int64_t now,
                        const struct order_text *text, size_t ntext, char *out, size_t size)
{
    struct store_order *rows = NULL;
    size_t n = 999;
    ck_assert_int_eq(store_list_orders(st, f, now, &rows, &n), STORE_OK);
    ck_assert_uint_le(n, f->limit);
    const char *ids[STORE_LIST_LIMIT_MAX];
    for (size_t i = 0; i < n; i++)
        ids[i] = rows[i].order_id;
    ids_to_digits(ids, n, text, ntext, out, size);
    store_orders_free(rows, n);
}

static void dlq_digits(const char *before_id, size_t limit, const struct order_text *text,
                       size_t ntext, char *out, size_t size)
{
    struct store_dead_letter *rows = NULL;
    size_t n = 999;
    ck_assert_int_eq(store_list_dead_letters(st, before_id, limit, &rows, &n), STORE_OK);
    ck_assert_uint_le(n, limit);
    const char *ids[STORE_LIST_LIMIT_MAX];
    for (size_t i = 0; i < n; i++)
        ids[i] = rows[i].order_id;
    ids_to_digits(ids, n, text, ntext, out, size);
    store_dead_letters_free(rows, n);
}

static int64_t sql_int(const char *path, const char *sql)
{
    if (pg_dsn()) {
        char line[64];
        psql_line(sql, line, sizeof(line));
        return strtoll(line, NULL, 10);
    }
    sqlite3 *db = NULL;
    sqlite3_stmt *q = NULL;
    ck_assert_int_eq(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    ck_assert_int_eq(sqlite3_prepare_v2(db, sql, -1, &q, NULL), SQLITE_OK);
    ck_assert_int_eq(sqlite3_step(q), SQLITE_ROW);
    int64_t v = sqlite3_column_int64(q, 0);
    sqlite3_finalize(q);
    sqlite3_close(db);
    return v;
}

static void sql_text(const char *path, const char *sql, char *out, size_t size)
{
    if (pg_dsn()) {
        psql_line(sql, out, size);
        return;
    }
    sqlite3 *db = NULL;
    sqlite3_stmt *q = NULL;
    ck_assert_int_eq(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    ck_assert_int_eq(sqlite3_prepare_v2(db, sql, -1, &q, NULL), SQLITE_OK);
    ck_assert_int_eq(sqlite3_step(q), SQLITE_ROW);
    const unsigned char *t = sqlite3_column_text(q, 0);
    snprintf(out, size, "%s", t ? (const char *)t : "(null)");
    sqlite3_finalize(q);
    sqlite3_close(db);
}

static unsigned file_mode(const char *path)
{
    struct stat sb;
    ck_assert_int_eq(stat(path, &sb), 0);
    return (unsigned)(sb.st_mode & 07777);
}

/* ---- open ----------------------------------------------------------------------------------- */

START_TEST(open_creates_schema_and_private_file)
{
    SQLITE_ONLY();
    char tables[256], wal[PATH_MAX + 8];

    ck_assert_uint_eq(file_mode(dbpath), 0600); /* 0600 = 384 */
    snprintf(wal, sizeof(wal), "%s-wal", dbpath);
    if (access(wal, F_OK) == 0)
        ck_assert_uint_eq(file_mode(wal), 0600);
    ck_assert_int_eq(sql_int(dbpath, "PRAGMA user_version"), SCHEMA_SQLITE);
    sql_text(dbpath, "PRAGMA journal_mode", tables, sizeof(tables));
    ck_assert_str_eq(tables, "wal");
    sql_text(dbpath,
             "SELECT group_concat(name, ',') FROM (SELECT name FROM sqlite_master "
             "WHERE type = 'table' ORDER BY name)",
             tables, sizeof(tables));
    ck_assert_str_eq(tables, "dead_letters,heartbeat,idempotency_keys,orders,queue");

    struct store_stats s = stats();
    ck_assert_uint_eq(s.queue_depth, 0);
    ck_assert_uint_eq(s.dlq_depth, 0);
    ck_assert_int_eq(s.oldest_enqueued_at_ms, 0);
}
END_TEST

START_TEST(reopen_keeps_data_and_counts)
{
    struct batch b;
    batch_make(&b, 4, T0 + 1, "alice");
    batch_commit(&b);
    struct store_message m[WORKER_BATCH_MAX];
    ck_assert_uint_eq(claim(T0 + 10, 1000, 5, 1, m, NULL), 1);
    ck_assert_int_eq(settle1(m[0].order_id, m[0].receipt, STORE_OUTCOME_DEAD_LETTER, "bad", 0, 1,
                             T0 + 20),
                     STORE_OK);
    messages_clear(m, 1);

    store_close(st);
    st = NULL;
    struct store_options opts = store_opts(dbpath, DURABILITY_NORMAL);
    ck_assert_int_eq(store_open(&opts, &st), STORE_OK);

    struct store_stats s = stats();
    ck_assert_uint_eq(s.queue_depth, 3);
    ck_assert_uint_eq(s.dlq_depth, 1);
    ck_assert_int_eq(s.oldest_enqueued_at_ms, T0 + 2);
    ck_assert_int_eq(sql_int(dbpath, pg_dsn() ? "SELECT version FROM schema_version"
                                              : "PRAGMA user_version"),
                     pg_dsn() ? SCHEMA_PG : SCHEMA_SQLITE);
    assert_order_state(b.text[0].id, T0 + 30, "dead_lettered", 1, "bad");
    for (size_t i = 1; i < b.n; i++)
        assert_order_state(b.text[i].id, T0 + 30, "queued", 0, NULL);
    batch_free(&b);
}
END_TEST

/* store.h: only sqlite with durability full defers the fsync to store_sync(). */
START_TEST(sync_deferred_only_for_sqlite_full)
{
    ck_assert(store_defers_sync(st) == (pg_dsn() == NULL));
    struct batch b;
    batch_make(&b, 3, T0 + 1, "alice");
    batch_commit(&b);
    ck_assert_int_eq(store_sync(st), STORE_OK);
    ck_assert_int_eq(store_sync(st), STORE_OK); /* nothing new: at once */
    store_close(st);
    st = NULL;
    struct store_options opts = store_opts(dbpath, DURABILITY_NORMAL);
    ck_assert_int_eq(store_open(&opts, &st), STORE_OK);
    ck_assert(!store_defers_sync(st));
    ck_assert_int_eq(store_sync(st), STORE_OK);
    for (size_t i = 0; i < b.n; i++)
        assert_order_state(b.text[i].id, T0 + 30, "queued", 0, NULL);
    batch_free(&b);
}
END_TEST

/* A database as orderd 0.1.0 made it (schema version 1), word for word. */
static const char schema_v1_of_0_1_0[] =
    "CREATE TABLE orders (  order_id TEXT PRIMARY KEY,  customer_id TEXT NOT NULL,"
    "  items TEXT NOT NULL,"
    "  status TEXT NOT NULL CHECK (status IN ('queued','completed','dead_lettered')),"
    "  attempts INTEGER NOT NULL DEFAULT 0,  created_at INTEGER NOT NULL,"
    "  processed_at INTEGER,  last_error TEXT,  traceparent TEXT NOT NULL) WITHOUT ROWID;"
    "CREATE INDEX orders_by_customer ON orders(customer_id, order_id);"
    "CREATE INDEX orders_by_status ON orders(status, order_id);"
    "CREATE TABLE queue (  seq INTEGER PRIMARY KEY,  order_id TEXT NOT NULL UNIQUE,"
    "  enqueued_at INTEGER NOT NULL,  visible_at INTEGER NOT NULL,"
    "  receive_count INTEGER NOT NULL DEFAULT 0,  receipt INTEGER,  last_error TEXT);"
    "CREATE INDEX queue_by_visible ON queue(visible_at);"
    "CREATE TABLE dead_letters (  order_id TEXT PRIMARY KEY,  attempts INTEGER NOT NULL,"
    "  last_error TEXT,  enqueued_at INTEGER NOT NULL,  dead_lettered_at INTEGER NOT NULL"
    ") WITHOUT ROWID;"
    "CREATE TABLE idempotency_keys (  key TEXT PRIMARY KEY,  request TEXT NOT NULL,"
    "  response TEXT NOT NULL,  order_id TEXT NOT NULL,  created_at INTEGER NOT NULL"
    ") WITHOUT ROWID;"
    "CREATE INDEX idempotency_by_age ON idempotency_keys(created_at);"
    "CREATE TABLE heartbeat (id INTEGER PRIMARY KEY, at INTEGER NOT NULL);"
    "INSERT INTO orders(order_id, customer_id, items, status, created_at, traceparent) VALUES"
    " ('01J00000000000000000000001', 'old', '[{\"item\":\"w\",\"quantity\":1}]', 'queued',"
    "  1700000000001, '00-0123456789abcdef0123456789abcdef-0123456789abcdef-01');"
    "INSERT INTO queue(order_id, enqueued_at, visible_at)"
    " VALUES ('01J00000000000000000000001', 1700000000001, 1700000000001);"
    "PRAGMA user_version = 1;";

/* Schema 1 -> 2 -> 3 (src/store_sqlite_open.c: migrate_to_2, migrate_to_3) keeps rows and the
 * rule, in place. */
START_TEST(open_migrates_schema_1)
{
    SQLITE_ONLY();
    store_close(st);
    st = NULL;
    char old[1200];
    snprintf(old, sizeof(old), "%s/old.db", dir);
    sqlite3 *db = NULL;
    ck_assert_int_eq(sqlite3_open(old, &db), SQLITE_OK);
    ck_assert_int_eq(sqlite3_exec(db, "PRAGMA journal_mode=WAL", NULL, NULL, NULL), SQLITE_OK);
    ck_assert_int_eq(sqlite3_exec(db, schema_v1_of_0_1_0, NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);

    open_store_at(old, &st);
    ck_assert_int_eq(sql_int(old, "PRAGMA user_version"), SCHEMA_SQLITE);
    ck_assert_int_eq(sql_int(old, "SELECT instr(sql, 'status IN') = 0 AND "
                                  "instr(sql, 'status = ''queued'' OR') > 0 AND "
                                  "instr(sql, 'status = ''discarded''') > 0 "
                                  "FROM sqlite_schema WHERE name = 'orders'"),
                     1);
    ck_assert_int_eq(sql_int(old, "SELECT count(*) FROM pragma_integrity_check "
                                  "WHERE integrity_check = 'ok'"),
                     1);
    const char *id = "01J00000000000000000000001";
    assert_order_state(id, T0 + 1, "queued", 0, NULL);
    struct store_message m[WORKER_BATCH_MAX];
    ck_assert_uint_eq(claim(T0 + 10, 1000, 5, 4, m, NULL), 1);
    ck_assert_str_eq(m[0].order_id, id);
    ck_assert_int_eq(settle1(id, m[0].receipt, STORE_OUTCOME_COMPLETED, NULL, 0, 1, T0 + 20),
                     STORE_OK);
    messages_clear(m, 1);
    assert_order_state(id, T0 + 30, "completed", 1, NULL);

    /* The rule still holds for anyone writing to the file. */
    ck_assert_int_eq(sqlite3_open(old, &db), SQLITE_OK);
    int rc = sqlite3_exec(db, "INSERT INTO orders(order_id, customer_id, items, status, "
                              "created_at, traceparent) VALUES ('x', 'c', '[]', 'bogus', 1, 't')",
                          NULL, NULL, NULL);
    ck_assert_int_eq(sqlite3_extended_errcode(db), SQLITE_CONSTRAINT_CHECK);
    ck_assert_int_eq(rc, SQLITE_CONSTRAINT);
    sqlite3_close(db);

    /* Opening again migrates nothing more. */
    store_close(st);
    open_store_at(old, &st);
    ck_assert_int_eq(sql_int(old, "PRAGMA user_version"), SCHEMA_SQLITE);
    assert_order_state(id, T0 + 30, "completed", 1, NULL);
}
END_TEST

/* Schema 2 as orderd made it before schema 3: schema 1's text with migrate_to_2's CHECK. */
static const char schema_1_to_2[] =
    "PRAGMA writable_schema = ON;"
    "UPDATE sqlite_schema SET sql = replace(sql,"
    "  'CHECK (status IN (''queued'',''completed'',''dead_lettered''))',"
    "  'CHECK (status = ''queued'' OR status = ''completed'' OR status = ''dead_lettered'')')"
    "  WHERE name = 'orders';"
    "PRAGMA writable_schema = OFF;"
    "PRAGMA user_version = 2;";

/* The PostgreSQL schema 1 (src/store_pg_conn.c, schema_v1 before version 2), word for word. */
static const char pg_schema_1[] =
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
    "CREATE TABLE queue_stats ("
    "  slot integer PRIMARY KEY,"
    "  queue bigint NOT NULL DEFAULT 0,"
    "  dlq bigint NOT NULL DEFAULT 0"
    ") WITH (fillfactor = 50, autovacuum_vacuum_scale_factor = 0,"
    "        autovacuum_vacuum_threshold = 1000);"
    "INSERT INTO queue_stats (slot) SELECT generate_series(0, 127);"
    "CREATE TABLE schema_version (version integer NOT NULL);"
    "INSERT INTO schema_version VALUES (1);"
    "UPDATE queue_stats SET dlq = 2 WHERE slot = 0;";

/* Two dead letters in a database of the schema before the history (both backends). */
#define OLD_DEAD_1 "01J00000000000000000000002"
#define OLD_DEAD_2 "01J00000000000000000000003"
static const char old_dead_letters[] =
    "INSERT INTO orders(order_id, customer_id, items, status, attempts, created_at, last_error,"
    " traceparent) VALUES"
    " ('" OLD_DEAD_1 "', 'old', '[{\"item\":\"w\",\"quantity\":1}]', 'dead_lettered', 3,"
    "  1700000000002, 'boom', '00-0123456789abcdef0123456789abcdef-0123456789abcdef-01'),"
    " ('" OLD_DEAD_2 "', 'old', '[{\"item\":\"w\",\"quantity\":2}]', 'dead_lettered', 3,"
    "  1700000000003, 'bang', '00-0123456789abcdef0123456789abcdef-0123456789abcdef-01');"
    "INSERT INTO dead_letters(order_id, attempts, last_error, enqueued_at, dead_lettered_at)"
    " VALUES ('" OLD_DEAD_1 "', 3, 'boom', 1700000000002, 1700000000100),"
    " ('" OLD_DEAD_2 "', 3, 'bang', 1700000000003, 1700000000100);";

/* Makes the old database (SQLite: schema from_version 1 or 2; PostgreSQL: 1) at path. */
static void make_old_database(const char *path, int from_version)
{
    if (pg_dsn()) {
        char none[8];
        psql_line("SET client_min_messages = warning; DROP SCHEMA IF EXISTS public CASCADE; "
                  "CREATE SCHEMA public",
                  none, sizeof(none));
        psql_line(pg_schema_1, none, sizeof(none));
        psql_line(old_dead_letters, none, sizeof(none));
        return;
    }
    sqlite3 *db = NULL;
    ck_assert_int_eq(sqlite3_open(path, &db), SQLITE_OK);
    ck_assert_int_eq(sqlite3_exec(db, "PRAGMA journal_mode=WAL", NULL, NULL, NULL), SQLITE_OK);
    ck_assert_int_eq(sqlite3_exec(db, schema_v1_of_0_1_0, NULL, NULL, NULL), SQLITE_OK);
    ck_assert_int_eq(sqlite3_exec(db, old_dead_letters, NULL, NULL, NULL), SQLITE_OK);
    if (from_version == 2)
        ck_assert_int_eq(sqlite3_exec(db, schema_1_to_2, NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
}

/* An existing database upgrades in place: its dead letters open with an empty history,
 * and a redrive and a delete then write one (SQLite from schema 1 and 2, PostgreSQL 1). */
START_TEST(open_upgrades_dead_letters_to_history)
{
    int from_version = 1 + _i;
    if (pg_dsn() && from_version > 1) {
        fprintf(stderr, "store: %s from schema %d SKIPPED on postgres\n", __func__, from_version);
        return;
    }
    store_close(st);
    st = NULL;
    char old[1200];
    snprintf(old, sizeof(old), "%s/old.db", dir);
    make_old_database(old, from_version);

    open_store_at(old, &st);
    ck_assert_int_eq(sql_int(old, pg_dsn() ? "SELECT version FROM schema_version"
                                           : "PRAGMA user_version"),
                     pg_dsn() ? SCHEMA_PG : SCHEMA_SQLITE);
    ck_assert_uint_eq(stats().dlq_depth, 2);
    assert_order_state(OLD_DEAD_1, T0 + 500, "dead_lettered", 3, "boom");
    assert_history(OLD_DEAD_1, T0 + 500, (struct history){0});
    char got[16];
    struct order_text old_text[2];
    memset(old_text, 0, sizeof(old_text));
    snprintf(old_text[0].id, sizeof(old_text[0].id), "%s", OLD_DEAD_1);
    snprintf(old_text[1].id, sizeof(old_text[1].id), "%s", OLD_DEAD_2);
    dlq_digits(NULL, 10, old_text, 2, got, sizeof(got));
    ck_assert_str_eq(got, "21");

    ck_assert_int_eq(store_redrive(st, OLD_DEAD_1, T0 + 1000), STORE_OK);
    assert_order_state(OLD_DEAD_1, T0 + 1000, "queued", 0, NULL);
    assert_history(OLD_DEAD_1, T0 + 1000, (struct history){1, T0 + 1000, 3, "boom", 0});
    ck_assert_int_eq(store_delete_dead_letter(st, OLD_DEAD_2, T0 + 1100), STORE_OK);
    assert_order_state(OLD_DEAD_2, T0 + 1100, "discarded", 3, "bang");
    assert_history(OLD_DEAD_2, T0 + 1100, (struct history){.discarded_at_ms = T0 + 1100});
    struct store_order_filter f = {.status = "discarded", .limit = 10};
    list_digits(&f, T0 + 1100, old_text, 2, got, sizeof(got));
    ck_assert_str_eq(got, "2");

    /* Opening again migrates nothing more and keeps what was written. */
    store_close(st);
    open_store_at(old, &st);
    assert_history(OLD_DEAD_1, T0 + 1200, (struct history){1, T0 + 1000, 3, "boom", 0});
    assert_order_state(OLD_DEAD_2, T0 + 1200, "discarded", 3, "bang");
    ck_assert_uint_eq(stats().dlq_depth, 0);
    /* SQLite's old file also holds schema 1's queued order. */
    ck_assert_uint_eq(stats().queue_depth, pg_dsn() ? 1 : 2);
}
END_TEST

START_TEST(open_refuses_newer_schema)
{
    SQLITE_ONLY();
    store_close(st);
    st = NULL;
    sqlite3 *db = NULL;
    ck_assert_int_eq(sqlite3_open(dbpath, &db), SQLITE_OK);
    ck_assert_int_eq(sqlite3_exec(db, "PRAGMA user_version = " SCHEMA_SQLITE_NEWER, NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);

    struct store_options opts = {.path = dbpath, .durability = DURABILITY_FULL};
    struct store *s2 = NULL;
    ck_assert_int_eq(store_open(&opts, &s2), STORE_EOPEN);
    ck_assert_ptr_null(s2);
}
END_TEST

START_TEST(open_refuses_non_database)
{
    SQLITE_ONLY();
    char path[PATH_MAX + 32];
    snprintf(path, sizeof(path), "%s/garbage.db", dir);
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    for (int i = 0; i < 256; i++)
        fputs("this is not an SQLite database. ", f);
    fclose(f);
    struct stat before, after;
    ck_assert_int_eq(stat(path, &before), 0);
    struct store_options opts = {.path = path, .durability = DURABILITY_FULL};
    struct store *s2 = NULL;
    ck_assert_int_eq(store_open(&opts, &s2), STORE_EOPEN);
    ck_assert_ptr_null(s2);
    ck_assert_int_eq(stat(path, &after), 0);
    ck_assert_int_eq(after.st_size, before.st_size);
}
END_TEST

START_TEST(open_fails_without_directory)
{
    SQLITE_ONLY();
    char path[PATH_MAX + 32];
    snprintf(path, sizeof(path), "%s/missing/orderd.db", dir);
    struct store_options opts = {.path = path, .durability = DURABILITY_NORMAL};
    struct store *s2 = NULL;
    ck_assert_int_eq(store_open(&opts, &s2), STORE_EOPEN);
    ck_assert_ptr_null(s2);
    store_close(NULL);
}
END_TEST

struct strerror_case {
    int err;
    const char *text;
};

static const struct strerror_case strerror_cases[] = {
    {STORE_OK, "ok"},
    {STORE_ENOTFOUND, "not found"},
    {STORE_EUNAVAILABLE, "storage unavailable"},
    {STORE_EQUEUEFULL, "queue full"},
    {STORE_ESTALE, "stale receipt"},
    {STORE_ECONFLICT, "idempotency key conflict"},
    {STORE_ENOMEM, "out of memory"},
    {STORE_EINTERNAL, "internal storage error"},
    {STORE_EOPEN, "cannot open database"},
    {-99, "unknown storage error"},
};

START_TEST(strerror_names_every_error)
{
    ck_assert_str_eq(store_strerror(strerror_cases[_i].err), strerror_cases[_i].text);
}
END_TEST

/* ---- intake --------------------------------------------------------------------------------- */

START_TEST(enqueue_writes_orders_and_messages)
{
    struct batch b;
    batch_make(&b, 3, T0 + 100, "alice");
    int rc = store_enqueue_batch(st, b.orders, b.n, NO_LIMIT);
    ck_assert_int_eq(rc, STORE_OK);
    for (size_t i = 0; i < b.n; i++)
        ck_assert_int_eq(b.orders[i].result, STORE_OK);

    struct store_stats s = stats();
    ck_assert_uint_eq(s.queue_depth, 3);
    ck_assert_int_eq(s.oldest_enqueued_at_ms, T0 + 100);
    int64_t when = 0;
    ck_assert_int_eq(store_next_visible_ms(st, &when), STORE_OK);
    ck_assert_int_eq(when, T0 + 100);
    ck_assert_int_eq(sql_int(dbpath, "SELECT count(*) FROM orders"), 3);
    ck_assert_int_eq(sql_int(dbpath, "SELECT count(*) FROM queue"), 3);

    for (size_t i = 0; i < b.n; i++) {
        struct store_order o;
        get_ok(b.text[i].id, T0 + 200, &o);
        ck_assert_str_eq(o.order_id, b.text[i].id);
        ck_assert_str_eq(o.customer_id, "alice");
        ck_assert_str_eq(o.items_json, b.text[i].items);
        ck_assert_str_eq(o.status, "queued");
        ck_assert_uint_eq(o.attempts, 0);
        ck_assert_int_eq(o.created_at_ms, T0 + 100 + (int64_t)i);
        ck_assert_int_eq(o.processed_at_ms, 0);
        ck_assert_ptr_null(o.last_error);
        ck_assert_str_eq(o.traceparent, b.text[i].traceparent);
        store_order_clear(&o);
    }
    ck_assert_int_eq(get_status("01ARZ3NDEKTSV4RRFFQ69G5FAV", T0), STORE_ENOTFOUND);
    batch_free(&b);
}
END_TEST

/* A batch is one transaction: one bad row and nothing of the batch is written. */
START_TEST(enqueue_batch_is_atomic)
{
    struct batch b;
    batch_make(&b, 3, T0 + 1, "alice");
    b.orders[2].order_id = b.orders[0].order_id; /* duplicate primary key */
    ck_assert_int_eq(store_enqueue_batch(st, b.orders, b.n, NO_LIMIT), STORE_EINTERNAL);
    for (size_t i = 0; i < b.n; i++)
        ck_assert_int_eq(b.orders[i].result, STORE_EINTERNAL);
    ck_assert_int_eq(get_status(b.text[0].id, T0), STORE_ENOTFOUND);
    ck_assert_int_eq(get_status(b.text[1].id, T0), STORE_ENOTFOUND);
    ck_assert_uint_eq(stats().queue_depth, 0);
    ck_assert_int_eq(sql_int(dbpath, "SELECT count(*) FROM queue"), 0);

    /* The writer is usable afterwards. */
    b.orders[2].order_id = b.text[2].id;
    batch_commit(&b);
    ck_assert_uint_eq(stats().queue_depth, 3);
    batch_free(&b);
}
END_TEST

/*
 * Orders are written STORE_INSERT_ROWS_MAX per statement (sqlite): batches
 * below, at and across that size, some orders leased (where the backend can
 * lease on enqueue), some with a key, one whose key is taken — every row must
 * land with its own values, and a refused order must not shift the others.
 */
static const size_t chunk_sizes[] = {1, STORE_INSERT_ROWS_MAX - 1, STORE_INSERT_ROWS_MAX,
                                     STORE_INSERT_ROWS_MAX + 1, 2 * STORE_INSERT_ROWS_MAX + 5,
                                     COMMIT_BATCH_MAX};

START_TEST(enqueue_rows_land_whatever_the_chunking)
{
    static char keys[COMMIT_BATCH_MAX][24];
    size_t n = chunk_sizes[_i], taken_at = n / 2;
    bool can_lease = store_enqueue_can_lease(st);
    struct batch old, b;
    batch_make(&old, 1, T0, "old");
    old.orders[0].idempotency_key = "taken";
    old.orders[0].request_json = "{}";
    old.orders[0].response_json = "{}";
    batch_commit(&old);

    batch_make(&b, n, T0 + 100, "chunky");
    for (size_t i = 0; i < n; i++) {
        struct store_new_order *o = &b.orders[i];
        if (can_lease && i % 2 == 1) {
            o->lease_receipt = 1000 + (int64_t)i;
            o->lease_until_ms = T0 + 5000 + (int64_t)i;
        }
        if (i % 7 == 3 || (n > 1 && i == taken_at)) {
            snprintf(keys[i], sizeof(keys[i]), "k%zu", i);
            o->idempotency_key = i == taken_at ? "taken" : keys[i];
            o->request_json = "{}";
            o->response_json = "{}";
        }
    }
    ck_assert_int_eq(store_enqueue_batch(st, b.orders, n, NO_LIMIT), STORE_OK);

    size_t stored = 0, leased = 0;
    for (size_t i = 0; i < n; i++) {
        bool refused = n > 1 && i == taken_at, lease = can_lease && i % 2 == 1;
        ck_assert_int_eq(b.orders[i].result, refused ? STORE_ECONFLICT : STORE_OK);
        char sql[1024];
        snprintf(sql, sizeof(sql),
                 "SELECT count(*) FROM orders o JOIN queue q USING (order_id) WHERE "
                 "o.order_id = '%s' AND o.customer_id = 'chunky' AND o.items = '%s' AND "
                 "o.status = 'queued' AND o.created_at = %lld AND o.traceparent = '%s' AND "
                 "q.enqueued_at = o.created_at AND q.visible_at = %lld AND "
                 "q.receive_count = %d AND %s",
                 b.text[i].id, b.text[i].items, (long long)(T0 + 100 + (int64_t)i),
                 b.text[i].traceparent,
                 (long long)(lease ? T0 + 5000 + (int64_t)i : T0 + 100 + (int64_t)i),
                 lease ? 1 : 0,
                 lease ? (i == 1 ? "q.receipt = 1001" : "q.receipt IS NOT NULL")
                       : "q.receipt IS NULL");
        ck_assert_msg(sql_int(dbpath, sql) == (refused ? 0 : 1), "order %zu of %zu", i, n);
        stored += !refused;
        leased += !refused && lease;
    }
    ck_assert_int_eq(sql_int(dbpath, "SELECT count(*) FROM orders WHERE customer_id = 'chunky'"),
                     (int64_t)stored);
    ck_assert_int_eq(sql_int(dbpath, "SELECT count(*) FROM queue"), (int64_t)stored + 1);
    ck_assert_int_eq(sql_int(dbpath, "SELECT count(DISTINCT receipt) FROM queue"),
                     (int64_t)leased);
    ck_assert_uint_eq(stats().queue_depth, stored + 1);
    batch_free(&old);
    batch_free(&b);
}
END_TEST

struct depth_case {
    size_t existing;   /* messages already queued */
    uint64_t max_depth;
    size_t batch;      /* orders in the new batch */
    size_t accepted;   /* the first `accepted` commit, the rest are STORE_EQUEUEFULL */
};

static const struct depth_case depth_cases[] = {
    {0, 3, 5, 3}, {2, 3, 2, 1}, {3, 3, 1, 0}, {0, 1, 1, 1}, {0, 10, 4, 4}, {4, 5, 3, 1},
};

START_TEST(enqueue_respects_max_depth)
{
    const struct depth_case *c = &depth_cases[_i];
    struct batch old, b;
    batch_make(&old, c->existing, T0, "alice");
    if (c->existing > 0)
        batch_commit(&old);

    batch_make(&b, c->batch, T0 + 100, "bob");
    ck_assert_int_eq(store_enqueue_batch(st, b.orders, b.n, c->max_depth), STORE_OK);
    for (size_t i = 0; i < b.n; i++) {
        int want = i < c->accepted ? STORE_OK : STORE_EQUEUEFULL;
        ck_assert_int_eq(b.orders[i].result, want);
        ck_assert_int_eq(get_status(b.text[i].id, T0 + 200),
                         want == STORE_OK ? STORE_OK : STORE_ENOTFOUND);
    }
    ck_assert_uint_eq(stats().queue_depth, c->existing + c->accepted);
    ck_assert_int_eq(sql_int(dbpath, "SELECT count(*) FROM queue"),
                     (int64_t)(c->existing + c->accepted));
    batch_free(&old);
    batch_free(&b);
}
END_TEST

/* ---- idempotency ---------------------------------------------------------------------------- */

START_TEST(idempotency_key_stored_with_order)
{
    struct order_text t;
    struct store_new_order o;
    order_make(&t, &o, T0, "alice", "key-1");
    ck_assert_int_eq(store_enqueue_batch(st, &o, 1, NO_LIMIT), STORE_OK);
    ck_assert_int_eq(o.result, STORE_OK);

    struct store_idempotency r;
    ck_assert_int_eq(store_idempotency_get(st, "key-1", T0 + 1000, &r), STORE_OK);
    ck_assert_str_eq(r.request_json, t.request);
    ck_assert_str_eq(r.response_json, t.response);
    ck_assert_str_eq(r.order_id, t.id);
    store_idempotency_clear(&r);

    ck_assert_int_eq(store_idempotency_get(st, "key-2", T0 + 1000, &r), STORE_ENOTFOUND);
}
END_TEST

START_TEST(idempotency_key_taken_in_later_batch)
{
    struct order_text t1, t2;
    struct store_new_order o1, o2;
    order_make(&t1, &o1, T0, "alice", "key-1");
    ck_assert_int_eq(store_enqueue_batch(st, &o1, 1, NO_LIMIT), STORE_OK);
    ck_assert_int_eq(o1.result, STORE_OK);

    order_make(&t2, &o2, T0 + 5000, "alice", "key-1");
    ck_assert_int_eq(store_enqueue_batch(st, &o2, 1, NO_LIMIT), STORE_OK);
    ck_assert_int_eq(o2.result, STORE_ECONFLICT);
    ck_assert_int_eq(get_status(t2.id, T0 + 6000), STORE_ENOTFOUND);
    ck_assert_uint_eq(stats().queue_depth, 1);

    struct store_idempotency r;
    ck_assert_int_eq(store_idempotency_get(st, "key-1", T0 + 6000, &r), STORE_OK);
    ck_assert_str_eq(r.order_id, t1.id);
    ck_assert_str_eq(r.request_json, t1.request);
    store_idempotency_clear(&r);
}
END_TEST

START_TEST(idempotency_key_twice_in_one_batch)
{
    struct order_text t[3];
    struct store_new_order o[3];
    order_make(&t[0], &o[0], T0, "alice", "key-1");
    order_make(&t[1], &o[1], T0 + 1, "alice", "key-1");
    order_make(&t[2], &o[2], T0 + 2, "alice", "key-2");
    ck_assert_int_eq(store_enqueue_batch(st, o, 3, NO_LIMIT), STORE_OK);
    ck_assert_int_eq(o[0].result, STORE_OK);
    ck_assert_int_eq(o[1].result, STORE_ECONFLICT);
    ck_assert_int_eq(o[2].result, STORE_OK);
    ck_assert_int_eq(get_status(t[1].id, T0 + 10), STORE_ENOTFOUND);
    ck_assert_uint_eq(stats().queue_depth, 2);
}
END_TEST

struct ttl_case {
    int64_t age_ms;   /* now - created_at of the stored key */
    bool live;        /* returned by get, and refused to a new order */
};

static const struct ttl_case ttl_cases[] = {
    {0, true},           {TTL_MS - 1, true}, {TTL_MS, true},
    {TTL_MS + 1, false}, {2 * TTL_MS, false},
};

START_TEST(idempotency_key_expires_after_ttl)
{
    const struct ttl_case *c = &ttl_cases[_i];
    struct order_text t1, t2;
    struct store_new_order o1, o2;
    order_make(&t1, &o1, T0, "alice", "key-1");
    ck_assert_int_eq(store_enqueue_batch(st, &o1, 1, NO_LIMIT), STORE_OK);
    ck_assert_int_eq(o1.result, STORE_OK);

    int64_t now = T0 + c->age_ms;
    struct store_idempotency r;
    ck_assert_int_eq(store_idempotency_get(st, "key-1", now, &r),
                     c->live ? STORE_OK : STORE_ENOTFOUND);
    store_idempotency_clear(&r);

    /* A new request with the same key, made at now. */
    order_make(&t2, &o2, now, "alice", "key-1");
    ck_assert_int_eq(store_enqueue_batch(st, &o2, 1, NO_LIMIT), STORE_OK);
    ck_assert_int_eq(o2.result, c->live ? STORE_ECONFLICT : STORE_OK);

    ck_assert_int_eq(store_idempotency_get(st, "key-1", now, &r), STORE_OK);
    ck_assert_str_eq(r.order_id, c->live ? t1.id : t2.id);
    ck_assert_str_eq(r.response_json, c->live ? t1.response : t2.response);
    store_idempotency_clear(&r);
}
END_TEST

START_TEST(idempotency_prune_deletes_old_keys)
{
    struct order_text t[3];
    struct store_new_order o[3];
    order_make(&t[0], &o[0], T0, "alice", "old");
    order_make(&t[1], &o[1], T0 + 1000, "alice", "young");
    order_make(&t[2], &o[2], T0 + 2000, "alice", NULL);
    ck_assert_int_eq(store_enqueue_batch(st, o, 3, NO_LIMIT), STORE_OK);

    uint64_t deleted = 99;
    ck_assert_int_eq(store_idempotency_prune(st, T0 + TTL_MS, &deleted), STORE_OK);
    ck_assert_uint_eq(deleted, 0); /* "old" is exactly TTL old: still live */
    ck_assert_int_eq(store_idempotency_prune(st, T0 + TTL_MS + 500, &deleted), STORE_OK);
    ck_assert_uint_eq(deleted, 1);
    ck_assert_int_eq(sql_int(dbpath, "SELECT count(*) FROM idempotency_keys"), 1);

    struct store_idempotency r;
    ck_assert_int_eq(store_idempotency_get(st, "young", T0 + TTL_MS + 500, &r), STORE_OK);
    ck_assert_str_eq(r.order_id, t[1].id);
    store_idempotency_clear(&r);
    /* Orders are not touched by the prune. */
    ck_assert_int_eq(get_status(t[0].id, T0 + TTL_MS + 500), STORE_OK);
    ck_assert_int_eq(store_idempotency_prune(st, T0 + 10 * TTL_MS, NULL), STORE_OK);
    ck_assert_int_eq(sql_int(dbpath, "SELECT count(*) FROM idempotency_keys"), 0);
}
END_TEST

/* ---- order status --------------------------------------------------------------------------- */

START_TEST(order_status_follows_its_message)
{
    struct order_text t;
    struct store_message m[WORKER_BATCH_MAX];
    enqueue_one(&t, T0, "alice");
    assert_order_state(t.id, T0, "queued", 0, NULL);

    /* Claimed: processing while the lease lives, queued again once it ran out. */
    ck_assert_uint_eq(claim(T0 + 10, 1000, 5, 1, m, NULL), 1);
    assert_order_state(t.id, T0 + 10, "processing", 1, NULL);
    assert_order_state(t.id, T0 + 1009, "processing", 1, NULL);
    assert_order_state(t.id, T0 + 1010, "queued", 1, NULL);
    messages_clear(m, 1);

    /* Claimed again, then RETRY: queued with the error, attempts = receives. */
    ck_assert_uint_eq(claim(T0 + 2000, 1000, 5, 1, m, NULL), 1);
    ck_assert_uint_eq(m[0].receive_count, 2);
    assert_order_state(t.id, T0 + 2000, "processing", 2, NULL);
    ck_assert_int_eq(settle1(t.id, m[0].receipt, STORE_OUTCOME_RETRY, "boom", T0 + 5000, 2,
                             T0 + 2100),
                     STORE_OK);
    assert_order_state(t.id, T0 + 2100, "queued", 2, "boom");
    messages_clear(m, 1);

    /* Third delivery completes it. */
    ck_assert_uint_eq(claim(T0 + 5000, 1000, 5, 1, m, NULL), 1);
    assert_order_state(t.id, T0 + 5000, "processing", 3, "boom");
    ck_assert_int_eq(settle1(t.id, m[0].receipt, STORE_OUTCOME_COMPLETED, NULL, 0, 3, T0 + 5100),
                     STORE_OK);
    messages_clear(m, 1);
    struct store_order o;
    get_ok(t.id, T0 + 9000, &o);
    ck_assert_str_eq(o.status, "completed");
    ck_assert_uint_eq(o.attempts, 3);
    ck_assert_int_eq(o.processed_at_ms, T0 + 5100);
    ck_assert_ptr_null(o.last_error);
    ck_assert_int_eq(o.created_at_ms, T0);
    store_order_clear(&o);
}
END_TEST

START_TEST(order_status_dead_lettered)
{
    struct order_text t;
    struct store_message m[WORKER_BATCH_MAX];
    enqueue_one(&t, T0, "alice");
    ck_assert_uint_eq(claim(T0 + 10, 1000, 5, 1, m, NULL), 1);
    ck_assert_int_eq(settle1(t.id, m[0].receipt, STORE_OUTCOME_DEAD_LETTER, "invalid sku", 0, 1,
                             T0 + 20),
                     STORE_OK);
    messages_clear(m, 1);
    assert_order_state(t.id, T0 + 30, "dead_lettered", 1, "invalid sku");
    assert_order_state(t.id, T0 + 999999, "dead_lettered", 1, "invalid sku");
}
END_TEST

/* ---- list ----------------------------------------------------------------------------------- */

START_TEST(list_orders_newest_first_with_cursor)
{
    struct batch b;
    batch_make(&b, 7, T0 + 1, "alice");
    batch_commit(&b);
    char got[16];
    struct store_order_filter f = {.limit = 3};
    list_digits(&f, T0 + 100, b.text, b.n, got, sizeof(got));
    ck_assert_str_eq(got, "765");
    f.before_id = b.text[4].id;
    list_digits(&f, T0 + 100, b.text, b.n, got, sizeof(got));
    ck_assert_str_eq(got, "432");
    f.before_id = b.text[1].id;
    list_digits(&f, T0 + 100, b.text, b.n, got, sizeof(got));
    ck_assert_str_eq(got, "1");
    f.before_id = b.text[0].id;
    list_digits(&f, T0 + 100, b.text, b.n, got, sizeof(got));
    ck_assert_str_eq(got, "");
    f = (struct store_order_filter){.limit = HTTP_LIST_LIMIT_MAX};
    list_digits(&f, T0 + 100, b.text, b.n, got, sizeof(got));
    ck_assert_str_eq(got, "7654321");
    /* A page and one row more (the API's test for a next page). */
    f.limit = STORE_LIST_LIMIT_MAX;
    list_digits(&f, T0 + 100, b.text, b.n, got, sizeof(got));
    ck_assert_str_eq(got, "7654321");
    f.limit = 4;
    list_digits(&f, T0 + 100, b.text, b.n, got, sizeof(got));
    ck_assert_str_eq(got, "7654");
    f.limit = 1;
    list_digits(&f, T0 + 100, b.text, b.n, got, sizeof(got));
    ck_assert_str_eq(got, "7");
    batch_free(&b);
}
END_TEST

struct filter_case {
    const char *customer;
    const char *status;
    const char *expect; /* 1-based indices of the orders, newest first */
};

/* See list_state_setup: 1 queued (retry pending), 2 processing, 3 completed,
 * 4 dead_lettered, 5 queued (its lease expired); a = alice, b = bob. */
static const struct filter_case filter_cases[] = {
    {NULL, NULL, "54321"},
    {"alice", NULL, "531"},
    {"bob", NULL, "42"},
    {NULL, "queued", "51"},
    {NULL, "processing", "2"},
    {NULL, "completed", "3"},
    {NULL, "dead_lettered", "4"},
    {"alice", "queued", "51"},
    {"bob", "processing", "2"},
    {"alice", "processing", ""},
    {"bob", "queued", ""},
    {"alice", "completed", "3"},
    {"bob", "dead_lettered", "4"},
    {"nobody", NULL, ""},
    {"nobody", "queued", ""},
};

#define LIST_NOW (T0 + 500)

/* Five orders in every state at LIST_NOW. */
static void list_state_setup(struct order_text *t)
{
    static const char *const customers[5] = {"alice", "bob", "alice", "bob", "alice"};
    struct store_new_order o[5];
    for (int i = 0; i < 5; i++)
        order_make(&t[i], &o[i], T0 + 1 + i, customers[i], NULL);
    ck_assert_int_eq(store_enqueue_batch(st, o, 5, NO_LIMIT), STORE_OK);

    struct store_message m[WORKER_BATCH_MAX];
    ck_assert_uint_eq(claim(T0 + 10, 10, 5, 5, m, NULL), 5); /* leases end at T0 + 20 */
    struct store_settlement s[4] = {
        {.order_id = t[0].id, .outcome = STORE_OUTCOME_RETRY, .error = "e1",
         .visible_at_ms = T0 + 1000, .attempts = 1},
        {.order_id = t[2].id, .outcome = STORE_OUTCOME_COMPLETED, .attempts = 1},
        {.order_id = t[3].id, .outcome = STORE_OUTCOME_DEAD_LETTER, .error = "e4", .attempts = 1},
        {.order_id = t[1].id, .outcome = STORE_OUTCOME_RETRY, .error = "e2",
         .visible_at_ms = T0 + 15, .attempts = 1},
    };
    for (int i = 0; i < 4; i++)
        s[i].receipt = receipt_of(m, 5, s[i].order_id);
    ck_assert_int_eq(store_settle(st, s, 4, T0 + 12), STORE_OK);
    for (int i = 0; i < 4; i++)
        ck_assert_int_eq(s[i].result, STORE_OK);
    messages_clear(m, 5);
    /* At T0 + 15 only order 2 is visible (5 is leased until T0 + 20). */
    ck_assert_uint_eq(claim(T0 + 15, 1000, 5, 5, m, NULL), 1);
    ck_assert_str_eq(m[0].order_id, t[1].id);
    messages_clear(m, 1);
}

START_TEST(list_orders_filters)
{
    const struct filter_case *c = &filter_cases[_i];
    struct order_text t[5];
    list_state_setup(t);
    char got[16];
    struct store_order_filter f = {.customer_id = c->customer, .status = c->status, .limit = 50};
    list_digits(&f, LIST_NOW, t, 5, got, sizeof(got));
    ck_assert_str_eq(got, c->expect);

    /* The shown status of every listed order matches the filter. */
    struct store_order *rows = NULL;
    size_t n = 0;
    ck_assert_int_eq(store_list_orders(st, &f, LIST_NOW, &rows, &n), STORE_OK);
    for (size_t i = 0; i < n; i++) {
        if (c->status)
            ck_assert_str_eq(rows[i].status, c->status);
        if (c->customer)
            ck_assert_str_eq(rows[i].customer_id, c->customer);
    }
    store_orders_free(rows, n);
}
END_TEST

START_TEST(list_orders_shows_states)
{
    struct order_text t[5];
    list_state_setup(t);
    assert_order_state(t[0].id, LIST_NOW, "queued", 1, "e1");
    assert_order_state(t[1].id, LIST_NOW, "processing", 2, "e2");
    assert_order_state(t[2].id, LIST_NOW, "completed", 1, NULL);
    assert_order_state(t[3].id, LIST_NOW, "dead_lettered", 1, "e4");
    assert_order_state(t[4].id, LIST_NOW, "queued", 1, NULL);
    /* Order 5 was processing before its lease ran out. */
    assert_order_state(t[4].id, T0 + 19, "processing", 1, NULL);
}
END_TEST

/* ---- claim ---------------------------------------------------------------------------------- */

START_TEST(claim_oldest_first_up_to_max)
{
    struct batch b;
    batch_make(&b, 3, T0 + 1, "alice");
    batch_commit(&b);
    struct store_message m[WORKER_BATCH_MAX];

    ck_assert_uint_eq(claim(T0, 1000, 5, 2, m, NULL), 0); /* nothing visible before T0 + 1 */
    ck_assert_uint_eq(claim(T0 + 100, 1000, 5, 2, m, NULL), 2);
    for (size_t i = 0; i < 2; i++) {
        ck_assert_str_eq(m[i].order_id, b.text[i].id);
        ck_assert_str_eq(m[i].customer_id, "alice");
        ck_assert_str_eq(m[i].items_json, b.text[i].items);
        ck_assert_str_eq(m[i].traceparent, b.text[i].traceparent);
        ck_assert_int_eq(m[i].created_at_ms, T0 + 1 + (int64_t)i);
        ck_assert_uint_eq(m[i].receive_count, 1);
        ck_assert_int_ge(m[i].receipt, 0);
    }
    int64_t first_receipt = m[0].receipt;
    messages_clear(m, 2);

    ck_assert_uint_eq(claim(T0 + 100, 1000, 5, 5, m, NULL), 1);
    ck_assert_str_eq(m[0].order_id, b.text[2].id);
    ck_assert_int_ne(m[0].receipt, first_receipt);
    messages_clear(m, 1);
    ck_assert_uint_eq(claim(T0 + 100, 1000, 5, 5, m, NULL), 0);
    ck_assert_uint_eq(stats().queue_depth, 3); /* claimed is still queued */
    batch_free(&b);
}
END_TEST

START_TEST(claim_lease_hides_then_reveals)
{
    struct order_text t;
    struct store_message m[WORKER_BATCH_MAX];
    enqueue_one(&t, T0, "alice");
    ck_assert_uint_eq(claim(T0, 1000, 5, 4, m, NULL), 1);
    int64_t r1 = m[0].receipt;
    messages_clear(m, 1);

    int64_t when = 0;
    ck_assert_int_eq(store_next_visible_ms(st, &when), STORE_OK);
    ck_assert_int_eq(when, T0 + 1000);
    ck_assert_uint_eq(claim(T0 + 999, 1000, 5, 4, m, NULL), 0);

    ck_assert_uint_eq(claim(T0 + 1000, 1000, 5, 4, m, NULL), 1);
    ck_assert_str_eq(m[0].order_id, t.id);
    ck_assert_uint_eq(m[0].receive_count, 2);
    ck_assert_int_ne(m[0].receipt, r1);
    messages_clear(m, 1);
}
END_TEST

START_TEST(claim_dead_letters_after_max_receives)
{
    struct order_text t;
    struct store_message m[WORKER_BATCH_MAX];
    size_t dead = 99;
    enqueue_one(&t, T0, "alice");
    /* max_receives 2: two deliveries whose leases run out. */
    ck_assert_uint_eq(claim(T0, 100, 2, 4, m, &dead), 1);
    ck_assert_uint_eq(dead, 0);
    messages_clear(m, 1);
    ck_assert_uint_eq(claim(T0 + 100, 100, 2, 4, m, &dead), 1);
    ck_assert_uint_eq(m[0].receive_count, 2);
    ck_assert_uint_eq(dead, 0);
    messages_clear(m, 1);
    ck_assert_uint_eq(claim(T0 + 150, 100, 2, 4, m, &dead), 0); /* still leased */
    ck_assert_uint_eq(dead, 0);

    ck_assert_uint_eq(claim(T0 + 200, 100, 2, 4, m, &dead), 0);
    ck_assert_uint_eq(dead, 1);
    struct store_stats s = stats();
    ck_assert_uint_eq(s.queue_depth, 0);
    ck_assert_uint_eq(s.dlq_depth, 1);
    struct store_order o;
    get_ok(t.id, T0 + 300, &o);
    ck_assert_str_eq(o.status, "dead_lettered");
    ck_assert_uint_eq(o.attempts, 2);
    ck_assert_ptr_nonnull(o.last_error);
    ck_assert_ptr_nonnull(strstr(o.last_error, "lease expired"));
    store_order_clear(&o);

    struct store_dead_letter *d = NULL;
    size_t n = 0;
    ck_assert_int_eq(store_list_dead_letters(st, NULL, 10, &d, &n), STORE_OK);
    ck_assert_uint_eq(n, 1);
    ck_assert_str_eq(d[0].order_id, t.id);
    ck_assert_uint_eq(d[0].attempts, 2);
    ck_assert_int_eq(d[0].dead_lettered_at_ms, T0 + 200);
    store_dead_letters_free(d, n);
    ck_assert_uint_eq(claim(T0 + 10000, 100, 2, 4, m, &dead), 0);
    ck_assert_uint_eq(dead, 0);
}
END_TEST

/* A RETRY on the last receive: the next claim dead-letters it, keeping the error;
 * the other visible message of the same claim is still delivered. */
START_TEST(claim_dead_letters_retried_last_receive)
{
    struct batch b;
    batch_make(&b, 2, T0 + 1, "alice");
    batch_commit(&b);
    struct store_message m[WORKER_BATCH_MAX];
    size_t dead = 99;
    ck_assert_uint_eq(claim(T0 + 10, 100, 1, 1, m, NULL), 1);
    ck_assert_str_eq(m[0].order_id, b.text[0].id);
    ck_assert_int_eq(settle1(b.text[0].id, m[0].receipt, STORE_OUTCOME_RETRY, "flaky", T0 + 20,
                             1, T0 + 11),
                     STORE_OK);
    messages_clear(m, 1);

    ck_assert_uint_eq(claim(T0 + 30, 100, 1, 4, m, &dead), 1);
    ck_assert_uint_eq(dead, 1);
    ck_assert_str_eq(m[0].order_id, b.text[1].id);
    ck_assert_uint_eq(m[0].receive_count, 1);
    messages_clear(m, 1);
    struct store_order o;
    get_ok(b.text[0].id, T0 + 40, &o);
    ck_assert_str_eq(o.status, "dead_lettered");
    ck_assert_uint_eq(o.attempts, 1);
    ck_assert_ptr_nonnull(o.last_error);
    ck_assert_ptr_nonnull(strstr(o.last_error, "flaky"));
    store_order_clear(&o);
    struct store_stats s = stats();
    ck_assert_uint_eq(s.queue_depth, 1);
    ck_assert_uint_eq(s.dlq_depth, 1);
    batch_free(&b);
}
END_TEST

/* ---- settle --------------------------------------------------------------------------------- */

/* The fulfilment service's answer is kept with the completed order; one
 * completed without an answer, or still queued, shows none. */
START_TEST(settle_completed_keeps_fulfilment_result)
{
    struct order_text a, b;
    struct store_message m[WORKER_BATCH_MAX];
    enqueue_one(&a, T0, "alice");
    enqueue_one(&b, T0 + 1, "bob");
    ck_assert_uint_eq(claim(T0 + 10, 1000, 5, 2, m, NULL), 2);
    struct store_settlement items[2] = {
        {.order_id = a.id, .receipt = receipt_of(m, 2, a.id), .outcome = STORE_OUTCOME_COMPLETED,
         .attempts = 1, .result_json = "{\"shipment_id\":\"S-1\"}"},
        {.order_id = b.id, .receipt = receipt_of(m, 2, b.id), .outcome = STORE_OUTCOME_COMPLETED,
         .attempts = 1},
    };
    struct store_order o;
    ck_assert_int_eq(store_get_order(st, a.id, T0 + 20, &o), STORE_OK);
    ck_assert_ptr_null(o.fulfilment_result);
    store_order_clear(&o);
    ck_assert_int_eq(store_settle(st, items, 2, T0 + 50), STORE_OK);
    ck_assert_int_eq(items[0].result, STORE_OK);
    ck_assert_int_eq(items[1].result, STORE_OK);
    ck_assert_int_eq(store_get_order(st, a.id, T0 + 60, &o), STORE_OK);
    ck_assert_str_eq(o.status, "completed");
    ck_assert_str_eq(o.fulfilment_result, "{\"shipment_id\":\"S-1\"}");
    store_order_clear(&o);
    ck_assert_int_eq(store_get_order(st, b.id, T0 + 60, &o), STORE_OK);
    ck_assert_ptr_null(o.fulfilment_result);
    store_order_clear(&o);
    messages_clear(m, 2);
}
END_TEST

START_TEST(settle_completed_removes_message)
{
    struct order_text t;
    struct store_message m[WORKER_BATCH_MAX];
    enqueue_one(&t, T0, "alice");
    ck_assert_uint_eq(claim(T0 + 10, 1000, 5, 1, m, NULL), 1);
    ck_assert_int_eq(settle1(t.id, m[0].receipt, STORE_OUTCOME_COMPLETED, NULL, 0, 1, T0 + 50),
                     STORE_OK);
    struct store_stats s = stats();
    ck_assert_uint_eq(s.queue_depth, 0);
    ck_assert_uint_eq(s.dlq_depth, 0);
    ck_assert_int_eq(s.oldest_enqueued_at_ms, 0);
    assert_no_next_visible();
    ck_assert_int_eq(sql_int(dbpath, "SELECT count(*) FROM queue"), 0);
    assert_order_state(t.id, T0 + 60, "completed", 1, NULL);

    /* Settling it again: the message is gone, the receipt is stale. */
    ck_assert_int_eq(settle1(t.id, m[0].receipt, STORE_OUTCOME_COMPLETED, NULL, 0, 1, T0 + 70),
                     STORE_ESTALE);
    ck_assert_uint_eq(stats().queue_depth, 0);
    messages_clear(m, 1);
}
END_TEST

static const enum store_outcome outcomes[] = {
    STORE_OUTCOME_COMPLETED,
    STORE_OUTCOME_RETRY,
    STORE_OUTCOME_DEAD_LETTER,
};

/* Lease runs out, a second delivery takes over: the first receipt acts on nothing. */
START_TEST(settle_with_stale_receipt_changes_nothing)
{
    struct order_text t;
    struct store_message m[WORKER_BATCH_MAX];
    enqueue_one(&t, T0, "alice");
    ck_assert_uint_eq(claim(T0, 100, 5, 1, m, NULL), 1);
    int64_t old = m[0].receipt;
    messages_clear(m, 1);
    ck_assert_uint_eq(claim(T0 + 100, 1000, 5, 1, m, NULL), 1);
    int64_t current = m[0].receipt;
    ck_assert_int_ne(current, old);
    messages_clear(m, 1);

    ck_assert_int_eq(settle1(t.id, old, outcomes[_i], "late worker", T0 + 150, 1, T0 + 150),
                     STORE_ESTALE);
    assert_order_state(t.id, T0 + 200, "processing", 2, NULL);
    struct store_stats s = stats();
    ck_assert_uint_eq(s.queue_depth, 1);
    ck_assert_uint_eq(s.dlq_depth, 0);
    ck_assert_int_eq(sql_int(dbpath, "SELECT count(*) FROM dead_letters"), 0);
    ck_assert_uint_eq(claim(T0 + 200, 1000, 5, 1, m, NULL), 0); /* still leased by current */
    int64_t when = 0;
    ck_assert_int_eq(store_next_visible_ms(st, &when), STORE_OK);
    ck_assert_int_eq(when, T0 + 1100);

    /* The current delivery still settles. */
    ck_assert_int_eq(settle1(t.id, current, STORE_OUTCOME_COMPLETED, NULL, 0, 2, T0 + 300),
                     STORE_OK);
    assert_order_state(t.id, T0 + 400, "completed", 2, NULL);
}
END_TEST

START_TEST(settle_retry_delays_and_records_error)
{
    struct order_text t;
    struct store_message m[WORKER_BATCH_MAX];
    enqueue_one(&t, T0, "alice");
    ck_assert_uint_eq(claim(T0, 10000, 5, 1, m, NULL), 1);
    int64_t r1 = m[0].receipt;
    messages_clear(m, 1);
    ck_assert_int_eq(settle1(t.id, r1, STORE_OUTCOME_RETRY, "timeout", T0 + 3000, 1, T0 + 10),
                     STORE_OK);

    /* Lease cleared: queued at once although the old lease would still run. */
    assert_order_state(t.id, T0 + 20, "queued", 1, "timeout");
    ck_assert_int_eq(sql_int(dbpath, "SELECT count(*) FROM queue WHERE receipt IS NULL"), 1);
    int64_t when = 0;
    ck_assert_int_eq(store_next_visible_ms(st, &when), STORE_OK);
    ck_assert_int_eq(when, T0 + 3000);
    ck_assert_uint_eq(stats().queue_depth, 1);
    ck_assert_uint_eq(claim(T0 + 2999, 1000, 5, 1, m, NULL), 0);
    /* The retried receipt is spent. */
    ck_assert_int_eq(settle1(t.id, r1, STORE_OUTCOME_COMPLETED, NULL, 0, 1, T0 + 20),
                     STORE_ESTALE);

    ck_assert_uint_eq(claim(T0 + 3000, 1000, 5, 1, m, NULL), 1);
    ck_assert_uint_eq(m[0].receive_count, 2);
    assert_order_state(t.id, T0 + 3000, "processing", 2, "timeout");
    messages_clear(m, 1);
}
END_TEST

START_TEST(settle_dead_letter_moves_message)
{
    struct order_text t;
    struct store_message m[WORKER_BATCH_MAX];
    enqueue_one(&t, T0, "alice");
    ck_assert_uint_eq(claim(T0 + 5, 1000, 5, 1, m, NULL), 1);
    ck_assert_int_eq(settle1(t.id, m[0].receipt, STORE_OUTCOME_DEAD_LETTER, "no such sku", 0, 4,
                             T0 + 50),
                     STORE_OK);
    messages_clear(m, 1);

    struct store_stats s = stats();
    ck_assert_uint_eq(s.queue_depth, 0);
    ck_assert_uint_eq(s.dlq_depth, 1);
    ck_assert_int_eq(sql_int(dbpath, "SELECT count(*) FROM queue"), 0);
    assert_order_state(t.id, T0 + 60, "dead_lettered", 4, "no such sku");

    struct store_dead_letter *d = NULL;
    size_t n = 0;
    ck_assert_int_eq(store_list_dead_letters(st, NULL, 10, &d, &n), STORE_OK);
    ck_assert_uint_eq(n, 1);
    ck_assert_str_eq(d[0].order_id, t.id);
    ck_assert_str_eq(d[0].customer_id, "alice");
    ck_assert_str_eq(d[0].items_json, t.items);
    ck_assert_uint_eq(d[0].attempts, 4);
    ck_assert_pstr_eq(d[0].last_error, "no such sku");
    ck_assert_int_eq(d[0].created_at_ms, T0);
    ck_assert_int_eq(d[0].dead_lettered_at_ms, T0 + 50);
    ck_assert_str_eq(d[0].traceparent, t.traceparent);
    store_dead_letters_free(d, n);
    ck_assert_uint_eq(claim(T0 + 5000, 1000, 5, 1, m, NULL), 0);
}
END_TEST

/* Several outcomes in one store_settle(): each has its own result. */
START_TEST(settle_batch_results_per_item)
{
    struct batch b;
    batch_make(&b, 4, T0 + 1, "alice");
    batch_commit(&b);
    struct store_message m[WORKER_BATCH_MAX];
    ck_assert_uint_eq(claim(T0 + 10, 1000, 5, 4, m, NULL), 4);
    struct store_settlement s[4] = {
        {.order_id = b.text[0].id, .outcome = STORE_OUTCOME_COMPLETED, .attempts = 1},
        {.order_id = b.text[1].id, .outcome = STORE_OUTCOME_RETRY, .error = "later",
         .visible_at_ms = T0 + 100, .attempts = 1},
        {.order_id = b.text[2].id, .outcome = STORE_OUTCOME_DEAD_LETTER, .error = "bad",
         .attempts = 1},
        {.order_id = b.text[3].id, .outcome = STORE_OUTCOME_COMPLETED, .attempts = 1},
    };
    for (int i = 0; i < 4; i++)
        s[i].receipt = receipt_of(m, 4, s[i].order_id);
    s[3].receipt ^= 1; /* not the current receipt */
    ck_assert_int_eq(store_settle(st, s, 4, T0 + 20), STORE_OK);
    ck_assert_int_eq(s[0].result, STORE_OK);
    ck_assert_int_eq(s[1].result, STORE_OK);
    ck_assert_int_eq(s[2].result, STORE_OK);
    ck_assert_int_eq(s[3].result, STORE_ESTALE);
    messages_clear(m, 4);
    struct store_stats after = stats();
    ck_assert_uint_eq(after.queue_depth, 2);
    ck_assert_uint_eq(after.dlq_depth, 1);
    ck_assert_int_eq(sql_int(dbpath, "SELECT count(*) FROM queue"), 2);
    ck_assert_int_eq(sql_int(dbpath, "SELECT count(*) FROM dead_letters"), 1);
    assert_order_state(b.text[0].id, T0 + 30, "completed", 1, NULL);
    assert_order_state(b.text[1].id, T0 + 30, "queued", 1, "later");
    assert_order_state(b.text[2].id, T0 + 30, "dead_lettered", 1, "bad");
    assert_order_state(b.text[3].id, T0 + 30, "processing", 1, NULL);
    batch_free(&b);
}
END_TEST

/* ---- release (reads the real clock) --------------------------------------------------------- */

START_TEST(release_makes_visible_now_and_gives_back_the_receive)
{
    int64_t now = ids_now_ms();
    struct order_text t;
    struct store_message m[WORKER_BATCH_MAX];
    enqueue_one(&t, now - 1000, "alice");
    ck_assert_uint_eq(claim(now, 600000, 5, 1, m, NULL), 1);
    ck_assert_uint_eq(m[0].receive_count, 1);
    assert_order_state(t.id, now, "processing", 1, NULL);

    /* A stale receipt releases nothing. */
    struct store_message stale = m[0];
    stale.receipt ^= 1;
    ck_assert_int_eq(store_release(st, &stale, 1, now + 10), STORE_OK);
    assert_order_state(t.id, now, "processing", 1, NULL);

    int64_t after = now + 20;
    ck_assert_int_eq(store_release(st, m, 1, after), STORE_OK);
    assert_order_state(t.id, after, "queued", 0, NULL);
    int64_t when = 0;
    ck_assert_int_eq(store_next_visible_ms(st, &when), STORE_OK);
    ck_assert_int_eq(when, after);
    ck_assert_uint_eq(stats().queue_depth, 1);
    messages_clear(m, 1);

    ck_assert_uint_eq(claim(after, 600000, 5, 1, m, NULL), 1);
    ck_assert_uint_eq(m[0].receive_count, 1);
    messages_clear(m, 1);
}
END_TEST

/* A lease renewed while the work goes on keeps the message hidden past its
 * first lease; a stale receipt renews nothing and says so. */
START_TEST(extend_leases_keeps_message_hidden)
{
    int64_t now = ids_now_ms();
    struct order_text a, b;
    struct store_message m[WORKER_BATCH_MAX];
    enqueue_one(&a, now - 2000, "alice");
    enqueue_one(&b, now - 1000, "bob");
    ck_assert_uint_eq(claim(now, 1000, 5, 2, m, NULL), 2);

    struct store_lease leases[2] = {{m[0].order_id, m[0].receipt, 99},
                                    {m[1].order_id, m[1].receipt ^ 1, 99}};
    ck_assert_int_eq(store_extend_leases(st, leases, 2, now + 500, 1000), STORE_OK);
    ck_assert_int_eq(leases[0].result, STORE_OK);
    ck_assert_int_eq(leases[1].result, STORE_ESTALE);
    messages_clear(m, 2);

    /* at now + 1200 only the message whose lease was not renewed is back */
    ck_assert_uint_eq(claim(now + 1200, 1000, 5, 2, m, NULL), 1);
    ck_assert_str_eq(m[0].order_id, b.id);
    messages_clear(m, 1);
    if (!pg_dsn()) { /* postgres answers at most STORE_PG_POLL_MS ahead (store.h) */
        int64_t when = 0;
        ck_assert_int_eq(store_next_visible_ms(st, &when), STORE_OK);
        ck_assert_int_eq(when, now + 1500);
    }
    ck_assert_uint_eq(claim(now + 1499, 1000, 5, 2, m, NULL), 0);
    ck_assert_uint_eq(claim(now + 1500, 1000, 5, 2, m, NULL), 1);
    ck_assert_str_eq(m[0].order_id, a.id);
    ck_assert_uint_eq(m[0].receive_count, 2);
    messages_clear(m, 1);

    /* renewing never shortens a lease */
    ck_assert_uint_eq(claim(now + 20000, 60000, 5, 2, m, NULL), 2);
    struct store_lease one = {m[0].order_id, m[0].receipt, 99};
    ck_assert_int_eq(store_extend_leases(st, &one, 1, now + 20000, 10), STORE_OK);
    ck_assert_int_eq(one.result, STORE_OK);
    ck_assert_uint_eq(claim(now + 30000, 60000, 5, 2, m + 2, NULL), 0);
    messages_clear(m, 2);
}
END_TEST

START_TEST(next_visible_is_the_earliest)
{
    int64_t when = 0;
    assert_no_next_visible();
    struct order_text a, b;
    enqueue_one(&a, T0 + 50, "alice");
    enqueue_one(&b, T0 + 30, "alice");
    ck_assert_int_eq(store_next_visible_ms(st, &when), STORE_OK);
    ck_assert_int_eq(when, T0 + 30);
    struct store_message m[WORKER_BATCH_MAX];
    ck_assert_uint_eq(claim(T0 + 40, 1000, 5, 4, m, NULL), 1);
    ck_assert_str_eq(m[0].order_id, b.id);
    messages_clear(m, 1);
    ck_assert_int_eq(store_next_visible_ms(st, &when), STORE_OK);
    ck_assert_int_eq(when, T0 + 50);
}
END_TEST

/* ---- dead letters --------------------------------------------------------------------------- */

START_TEST(list_dead_letters_pages)
{
    struct batch b;
    batch_make(&b, 5, T0 + 1, "alice");
    batch_commit(&b);
    ck_assert_uint_eq(dead_letter_all(T0 + 100, "bad"), 5);
    char got[16];
    dlq_digits(NULL, 2, b.text, b.n, got, sizeof(got));
    ck_assert_str_eq(got, "54");
    dlq_digits(b.text[3].id, 2, b.text, b.n, got, sizeof(got));
    ck_assert_str_eq(got, "32");
    dlq_digits(b.text[1].id, 2, b.text, b.n, got, sizeof(got));
    ck_assert_str_eq(got, "1");
    dlq_digits(b.text[0].id, 2, b.text, b.n, got, sizeof(got));
    ck_assert_str_eq(got, "");
    dlq_digits(NULL, HTTP_LIST_LIMIT_MAX, b.text, b.n, got, sizeof(got));
    ck_assert_str_eq(got, "54321");
    dlq_digits(NULL, STORE_LIST_LIMIT_MAX, b.text, b.n, got, sizeof(got));
    ck_assert_str_eq(got, "54321");
    batch_free(&b);
}
END_TEST

START_TEST(redrive_one_requeues)
{
    struct batch b;
    batch_make(&b, 2, T0 + 1, "alice");
    batch_commit(&b);
    ck_assert_uint_eq(dead_letter_all(T0 + 100, "bad"), 2);

    ck_assert_int_eq(store_redrive(st, b.text[0].id, T0 + 200), STORE_OK);
    struct store_stats s = stats();
    ck_assert_uint_eq(s.queue_depth, 1);
    ck_assert_uint_eq(s.dlq_depth, 1);
    ck_assert_int_eq(s.oldest_enqueued_at_ms, T0 + 200);
    /* A new run starts; the one that failed stays readable. */
    assert_order_state(b.text[0].id, T0 + 200, "queued", 0, NULL);
    assert_history(b.text[0].id, T0 + 200, (struct history){1, T0 + 200, 1, "bad", 0});
    assert_history(b.text[1].id, T0 + 200, (struct history){0});
    ck_assert_int_eq(sql_int(dbpath, "SELECT receive_count FROM queue"), 0);
    char got[16];
    dlq_digits(NULL, 10, b.text, b.n, got, sizeof(got));
    ck_assert_str_eq(got, "2");

    /* Redriven: delivered again, first receive. */
    struct store_message m[WORKER_BATCH_MAX];
    ck_assert_uint_eq(claim(T0 + 200, 1000, 5, 4, m, NULL), 1);
    ck_assert_str_eq(m[0].order_id, b.text[0].id);
    ck_assert_uint_eq(m[0].receive_count, 1);
    messages_clear(m, 1);

    /* Not (or no longer) a dead letter. */
    ck_assert_int_eq(store_redrive(st, b.text[0].id, T0 + 300), STORE_ENOTFOUND);
    ck_assert_int_eq(store_redrive(st, "01ARZ3NDEKTSV4RRFFQ69G5FAV", T0 + 300), STORE_ENOTFOUND);
    s = stats();
    ck_assert_uint_eq(s.queue_depth, 1);
    ck_assert_uint_eq(s.dlq_depth, 1);
    batch_free(&b);
}
END_TEST

/* 1100 dead letters: three batches of redrive_all (500 + 500 + 100). */
START_TEST(redrive_all_moves_every_batch)
{
    enum { N = 1100 };
    struct batch b;
    batch_make(&b, N, T0 + 1, "alice");
    batch_commit(&b);
    ck_assert_uint_eq(dead_letter_all(T0 + 5000, "bad"), N);
    struct store_stats s = stats();
    ck_assert_uint_eq(s.queue_depth, 0);
    ck_assert_uint_eq(s.dlq_depth, N);

    uint64_t moved = 0;
    ck_assert_int_eq(store_redrive_all(st, T0 + 6000, &moved), STORE_OK);
    ck_assert_uint_eq(moved, N);
    s = stats();
    ck_assert_uint_eq(s.queue_depth, N);
    ck_assert_uint_eq(s.dlq_depth, 0);
    ck_assert_int_eq(sql_int(dbpath, "SELECT count(*) FROM queue WHERE receive_count = 0"), N);
    ck_assert_int_eq(sql_int(dbpath, "SELECT count(*) FROM dead_letters"), 0);
    ck_assert_int_eq(sql_int(dbpath, "SELECT count(*) FROM orders WHERE status = 'queued'"), N);
    assert_order_state(b.text[0].id, T0 + 6000, "queued", 0, NULL);
    assert_order_state(b.text[N - 1].id, T0 + 6000, "queued", 0, NULL);
    assert_history(b.text[0].id, T0 + 6000, (struct history){1, T0 + 6000, 1, "bad", 0});
    assert_history(b.text[N - 1].id, T0 + 6000, (struct history){1, T0 + 6000, 1, "bad", 0});
    ck_assert_int_eq(sql_int(dbpath, "SELECT count(*) FROM orders WHERE redrives = 1 AND "
                                     "previous_error = 'bad' AND last_error IS NULL"),
                     N);

    ck_assert_int_eq(store_redrive_all(st, T0 + 7000, &moved), STORE_OK);
    ck_assert_uint_eq(moved, 0);
    ck_assert_int_eq(store_redrive_all(st, T0 + 7000, NULL), STORE_OK);
    batch_free(&b);
}
END_TEST

START_TEST(delete_dead_letter_discards_it)
{
    struct order_text t, queued;
    enqueue_one(&t, T0, "alice");
    ck_assert_uint_eq(dead_letter_all(T0 + 100, "bad"), 1);
    enqueue_one(&queued, T0 + 110, "bob");
    ck_assert_int_eq(store_delete_dead_letter(st, t.id, T0 + 150), STORE_OK);
    struct store_stats s = stats();
    ck_assert_uint_eq(s.dlq_depth, 0);
    ck_assert_uint_eq(s.queue_depth, 1);
    ck_assert_int_eq(sql_int(dbpath, "SELECT count(*) FROM dead_letters"), 0);
    /* No longer a dead letter, and it says so: discarded, when, after what. */
    assert_order_state(t.id, T0 + 200, "discarded", 1, "bad");
    assert_history(t.id, T0 + 200, (struct history){.discarded_at_ms = T0 + 150});

    ck_assert_int_eq(store_delete_dead_letter(st, t.id, T0 + 300), STORE_ENOTFOUND);
    ck_assert_int_eq(store_redrive(st, t.id, T0 + 300), STORE_ENOTFOUND);
    assert_history(t.id, T0 + 300, (struct history){.discarded_at_ms = T0 + 150});
    /* Only a dead letter can be discarded. */
    ck_assert_int_eq(store_delete_dead_letter(st, queued.id, T0 + 300), STORE_ENOTFOUND);
    ck_assert_int_eq(store_delete_dead_letter(st, "01ARZ3NDEKTSV4RRFFQ69G5FAV", T0 + 300),
                     STORE_ENOTFOUND);
    assert_order_state(queued.id, T0 + 300, "queued", 0, NULL);
    assert_history(queued.id, T0 + 300, (struct history){0});
    s = stats();
    ck_assert_uint_eq(s.dlq_depth, 0);
    ck_assert_uint_eq(s.queue_depth, 1);
}
END_TEST

/* Two failed runs and a success: each redrive keeps the run before it. */
START_TEST(redrive_keeps_the_failed_run)
{
    struct order_text t;
    struct store_message m[WORKER_BATCH_MAX];
    enqueue_one(&t, T0, "alice");
    ck_assert_uint_eq(claim(T0 + 10, 1000, 5, 1, m, NULL), 1);
    ck_assert_int_eq(settle1(t.id, m[0].receipt, STORE_OUTCOME_RETRY, "flaky", T0 + 20, 1,
                             T0 + 11),
                     STORE_OK);
    messages_clear(m, 1);
    ck_assert_uint_eq(claim(T0 + 20, 1000, 5, 1, m, NULL), 1);
    ck_assert_int_eq(settle1(t.id, m[0].receipt, STORE_OUTCOME_DEAD_LETTER, "declined", 0, 2,
                             T0 + 21),
                     STORE_OK);
    messages_clear(m, 1);
    assert_order_state(t.id, T0 + 30, "dead_lettered", 2, "declined");

    ck_assert_int_eq(store_redrive(st, t.id, T0 + 100), STORE_OK);
    assert_order_state(t.id, T0 + 100, "queued", 0, NULL);
    assert_history(t.id, T0 + 100, (struct history){1, T0 + 100, 2, "declined", 0});

    /* The second run fails at once; it is now the last error, the first stays previous. */
    ck_assert_uint_eq(claim(T0 + 100, 1000, 5, 1, m, NULL), 1);
    ck_assert_uint_eq(m[0].receive_count, 1);
    assert_order_state(t.id, T0 + 101, "processing", 1, NULL);
    ck_assert_int_eq(settle1(t.id, m[0].receipt, STORE_OUTCOME_DEAD_LETTER, "still declined", 0,
                             1, T0 + 110),
                     STORE_OK);
    messages_clear(m, 1);
    assert_order_state(t.id, T0 + 120, "dead_lettered", 1, "still declined");
    assert_history(t.id, T0 + 120, (struct history){1, T0 + 100, 2, "declined", 0});

    /* Redriven again, then completed: the history is the last failed run's. */
    ck_assert_int_eq(store_redrive(st, t.id, T0 + 200), STORE_OK);
    assert_history(t.id, T0 + 200, (struct history){2, T0 + 200, 1, "still declined", 0});
    ck_assert_uint_eq(claim(T0 + 200, 1000, 5, 1, m, NULL), 1);
    ck_assert_int_eq(settle1(t.id, m[0].receipt, STORE_OUTCOME_COMPLETED, NULL, 0, 1, T0 + 210),
                     STORE_OK);
    messages_clear(m, 1);
    assert_order_state(t.id, T0 + 300, "completed", 1, NULL);
    assert_history(t.id, T0 + 300, (struct history){2, T0 + 200, 1, "still declined", 0});
}
END_TEST

/* status=discarded lists the deleted dead letters, and only those. */
START_TEST(list_orders_filters_discarded)
{
    struct batch b;
    batch_make(&b, 4, T0 + 1, "alice");
    batch_commit(&b);
    ck_assert_uint_eq(dead_letter_all(T0 + 100, "bad"), 4);
    ck_assert_int_eq(store_delete_dead_letter(st, b.text[1].id, T0 + 200), STORE_OK);
    ck_assert_int_eq(store_delete_dead_letter(st, b.text[3].id, T0 + 200), STORE_OK);
    ck_assert_int_eq(store_redrive(st, b.text[0].id, T0 + 200), STORE_OK);
    char got[16];
    struct store_order_filter f = {.status = "discarded", .limit = 10};
    list_digits(&f, T0 + 300, b.text, b.n, got, sizeof(got));
    ck_assert_str_eq(got, "42");
    f.customer_id = "alice";
    list_digits(&f, T0 + 300, b.text, b.n, got, sizeof(got));
    ck_assert_str_eq(got, "42");
    f = (struct store_order_filter){.status = "dead_lettered", .limit = 10};
    list_digits(&f, T0 + 300, b.text, b.n, got, sizeof(got));
    ck_assert_str_eq(got, "3");
    f.status = "queued";
    list_digits(&f, T0 + 300, b.text, b.n, got, sizeof(got));
    ck_assert_str_eq(got, "1");
    batch_free(&b);
}
END_TEST

/* ---- maintenance ---------------------------------------------------------------------------- */

START_TEST(writable_on_healthy_db)
{
    ck_assert(store_writable(st));
    ck_assert(store_writable(st));
    ck_assert_int_eq(sql_int(dbpath, "SELECT count(*) FROM heartbeat"), 1);
}
END_TEST

START_TEST(backup_copies_and_refuses_existing_destination)
{
    SQLITE_ONLY();
    struct batch b;
    batch_make(&b, 3, T0 + 1, "alice");
    batch_commit(&b);
    ck_assert_uint_eq(dead_letter_all(T0 + 100, "bad"), 3);
    ck_assert_int_eq(store_redrive(st, b.text[1].id, T0 + 200), STORE_OK);

    char dest[PATH_MAX + 16];
    snprintf(dest, sizeof(dest), "%s/backup.db", dir);
    ck_assert_int_eq(store_backup(dbpath, dest), STORE_OK);
    ck_assert_uint_eq(file_mode(dest), 0600);
    ck_assert_int_eq(sql_int(dest, "PRAGMA user_version"), SCHEMA_SQLITE);
    char mode[16];
    sql_text(dest, "PRAGMA journal_mode", mode, sizeof(mode));
    ck_assert_str_eq(mode, "delete");

    /* A second backup onto it is refused and leaves it whole. */
    struct stat before, after;
    ck_assert_int_eq(stat(dest, &before), 0);
    ck_assert_int_eq(store_backup(dbpath, dest), STORE_EOPEN);
    ck_assert_int_eq(stat(dest, &after), 0);
    ck_assert_int_eq(after.st_size, before.st_size);
    ck_assert_int_eq(after.st_ino, before.st_ino);

    /* Any existing file, too. */
    char other[PATH_MAX + 16];
    snprintf(other, sizeof(other), "%s/keep.txt", dir);
    FILE *f = fopen(other, "w");
    ck_assert_ptr_nonnull(f);
    fputs("keep me", f);
    fclose(f);
    ck_assert_int_eq(store_backup(dbpath, other), STORE_EOPEN);
    char text[16] = "";
    f = fopen(other, "r");
    ck_assert_ptr_nonnull(f);
    ck_assert_ptr_nonnull(fgets(text, sizeof(text), f));
    fclose(f);
    ck_assert_str_eq(text, "keep me");

    /* A missing source: refused, and no half-made copy is left behind. */
    char missing[PATH_MAX + 16], dest2[PATH_MAX + 16];
    snprintf(missing, sizeof(missing), "%s/missing.db", dir);
    snprintf(dest2, sizeof(dest2), "%s/backup2.db", dir);
    ck_assert_int_eq(store_backup(missing, dest2), STORE_EOPEN);
    ck_assert_int_eq(access(dest2, F_OK), -1);
    ck_assert_int_eq(access(missing, F_OK), -1);

    /* The copy opens as a store with the same orders and counts. */
    store_close(st);
    st = NULL;
    open_store_at(dest, &st);
    struct store_stats s = stats();
    ck_assert_uint_eq(s.queue_depth, 1);
    ck_assert_uint_eq(s.dlq_depth, 2);
    assert_order_state(b.text[0].id, T0 + 300, "dead_lettered", 1, "bad");
    assert_order_state(b.text[1].id, T0 + 300, "queued", 0, NULL);
    assert_history(b.text[1].id, T0 + 300, (struct history){1, T0 + 200, 1, "bad", 0});
    assert_order_state(b.text[2].id, T0 + 300, "dead_lettered", 1, "bad");
    batch_free(&b);
}
END_TEST

START_TEST(stats_oldest_enqueued_at)
{
    ck_assert_int_eq(stats().oldest_enqueued_at_ms, 0);
    struct order_text a, b;
    enqueue_one(&a, T0 + 10, "alice");
    enqueue_one(&b, T0 + 20, "alice");
    ck_assert_int_eq(stats().oldest_enqueued_at_ms, T0 + 10);
    struct store_message m[WORKER_BATCH_MAX];
    ck_assert_uint_eq(claim(T0 + 30, 1000, 5, 1, m, NULL), 1);
    ck_assert_int_eq(stats().oldest_enqueued_at_ms, T0 + 10); /* leased is still queued */
    ck_assert_int_eq(settle1(a.id, m[0].receipt, STORE_OUTCOME_COMPLETED, NULL, 0, 1, T0 + 40),
                     STORE_OK);
    messages_clear(m, 1);
    ck_assert_int_eq(stats().oldest_enqueued_at_ms, T0 + 20);
}
END_TEST

/* ---- threads -------------------------------------------------------------------------------- */

struct reader_arg {
    const char *id;
    atomic_int failures;
};

static void *reader_main(void *p)
{
    struct reader_arg *a = p;
    for (int i = 0; i < 200; i++) {
        struct store_order o;
        memset(&o, 0, sizeof(o));
        if (store_get_order(st, a->id, T0 + 1000000, &o) != STORE_OK)
            atomic_fetch_add(&a->failures, 1);
        store_order_clear(&o);
        struct store_order_filter f = {.limit = 20};
        struct store_order *rows = NULL;
        size_t n = 0;
        if (store_list_orders(st, &f, T0 + 1000000, &rows, &n) != STORE_OK)
            atomic_fetch_add(&a->failures, 1);
        else
            store_orders_free(rows, n);
        struct store_stats s;
        if (store_stats(st, &s) != STORE_OK)
            atomic_fetch_add(&a->failures, 1);
    }
    return NULL;
}

/* More readers than the pool holds, while the writer enqueues and settles. */
START_TEST(readers_and_writer_concurrently)
{
    enum { READERS = 8, ROUNDS = 60 };
    struct order_text first;
    enqueue_one(&first, T0, "alice");
    struct reader_arg arg = {.id = first.id};
    atomic_init(&arg.failures, 0);
    pthread_t th[READERS];
    for (int i = 0; i < READERS; i++)
        ck_assert_int_eq(pthread_create(&th[i], NULL, reader_main, &arg), 0);

    struct store_message m[WORKER_BATCH_MAX];
    for (int r = 0; r < ROUNDS; r++) {
        struct batch b;
        batch_make(&b, 3, T0 + 10 + 10 * r, "bob");
        batch_commit(&b);
        size_t n = claim(T0 + 10 + 10 * r + 5, 1000000, 100, 2, m, NULL);
        for (size_t i = 0; i < n; i++)
            ck_assert_int_eq(settle1(m[i].order_id, m[i].receipt, STORE_OUTCOME_COMPLETED, NULL,
                                     0, 1, T0 + 10 + 10 * r + 6),
                             STORE_OK);
        messages_clear(m, n);
        batch_free(&b);
    }
    for (int i = 0; i < READERS; i++)
        ck_assert_int_eq(pthread_join(th[i], NULL), 0);
    ck_assert_int_eq(atomic_load(&arg.failures), 0);
    ck_assert_uint_eq(stats().queue_depth,
                      (uint64_t)sql_int(dbpath, "SELECT count(*) FROM queue"));
}
END_TEST

/* ---- disk full ------------------------------------------------------------------------------ */

static char big_items[4096];

START_TEST(unavailable_when_disk_full_then_recovers)
{
    SQLITE_ONLY();
    if (!root_is_tmpfs) {
        fprintf(stderr, "store: unavailable_when_disk_full_then_recovers SKIPPED: "
                        "cannot mount a tmpfs (%s)\n",
                strerror(tmpfs_errno));
        return;
    }
    struct batch before, big, later;
    batch_make(&before, 5, T0 + 1, "alice");
    batch_commit(&before);

    /* Fill the file system. */
    char filler[PATH_MAX + 16];
    snprintf(filler, sizeof(filler), "%s/filler", dir);
    int fd = open(filler, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    ck_assert_int_ge(fd, 0);
    char chunk[4096];
    memset(chunk, 'x', sizeof(chunk));
    int werr = 0;
    for (int i = 0; i < 1024 && werr == 0; i++) /* 4 MiB > the 1 MiB tmpfs */
        if (write(fd, chunk, sizeof(chunk)) < 0)
            werr = errno;
    close(fd);
    ck_assert_int_eq(werr, ENOSPC);

    /* ~256 KiB of orders cannot be appended to the WAL. */
    snprintf(big_items, sizeof(big_items), "[{\"item\":\"%0*d\",\"quantity\":1}]", 4000, 7);
    batch_make(&big, 64, T0 + 100, "bob");
    for (size_t i = 0; i < big.n; i++)
        big.orders[i].items_json = big_items;
    ck_assert_int_eq(store_enqueue_batch(st, big.orders, big.n, NO_LIMIT), STORE_EUNAVAILABLE);
    for (size_t i = 0; i < big.n; i++)
        ck_assert_int_eq(big.orders[i].result, STORE_EUNAVAILABLE);

    /* Reads still work; nothing of the failed batch is visible or counted. */
    ck_assert_uint_eq(stats().queue_depth, 5);
    for (size_t i = 0; i < big.n; i++)
        ck_assert_int_eq(get_status(big.text[i].id, T0 + 200), STORE_ENOTFOUND);
    for (size_t i = 0; i < before.n; i++)
        assert_order_state(before.text[i].id, T0 + 200, "queued", 0, NULL);

    /* Space comes back: the store recovers by itself. */
    ck_assert_int_eq(unlink(filler), 0);
    batch_make(&later, 5, T0 + 300, "carol");
    batch_commit(&later);
    for (size_t i = 0; i < big.n; i++)
        big.orders[i].result = 1;
    batch_commit(&big);
    ck_assert(store_writable(st));

    ck_assert_uint_eq(stats().queue_depth, 5 + 64 + 5);
    for (size_t i = 0; i < before.n; i++) {
        struct store_order o;
        get_ok(before.text[i].id, T0 + 400, &o);
        ck_assert_str_eq(o.status, "queued");
        ck_assert_str_eq(o.items_json, before.text[i].items);
        ck_assert_str_eq(o.customer_id, "alice");
        store_order_clear(&o);
    }
    for (size_t i = 0; i < later.n; i++)
        assert_order_state(later.text[i].id, T0 + 400, "queued", 0, NULL);
    struct store_order o;
    get_ok(big.text[63].id, T0 + 400, &o);
    ck_assert_str_eq(o.items_json, big_items);
    store_order_clear(&o);
    char check[32];
    sql_text(dbpath, "PRAGMA integrity_check", check, sizeof(check));
    ck_assert_str_eq(check, "ok");
    batch_free(&before);
    batch_free(&big);
    batch_free(&later);
}
END_TEST

/* ---- the one list --------------------------------------------------------------------------- */

#define N_OF(a) ((int)(sizeof(a) / sizeof((a)[0])))

static TCase *tcase_new(const char *name, void (*make)(void))
{
    TCase *tc = tcase_create(name);
    tcase_add_unchecked_fixture(tc, make, remove_root);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, UNIT_TIMEOUT_THREADED);
    return tc;
}

Suite *suite_store(void)
{
    Suite *s = suite_create("store");

    TCase *tc = tcase_new("open", make_root);
    tcase_add_test(tc, open_creates_schema_and_private_file);
    tcase_add_test(tc, reopen_keeps_data_and_counts);
    tcase_add_test(tc, sync_deferred_only_for_sqlite_full);
    tcase_add_test(tc, open_migrates_schema_1);
    tcase_add_loop_test(tc, open_upgrades_dead_letters_to_history, 0, 2);
    tcase_add_test(tc, open_refuses_newer_schema);
    tcase_add_test(tc, open_refuses_non_database);
    tcase_add_test(tc, open_fails_without_directory);
    tcase_add_loop_test(tc, strerror_names_every_error, 0, N_OF(strerror_cases));
    suite_add_tcase(s, tc);

    tc = tcase_new("intake", make_root);
    tcase_add_test(tc, enqueue_writes_orders_and_messages);
    tcase_add_test(tc, enqueue_batch_is_atomic);
    tcase_add_loop_test(tc, enqueue_rows_land_whatever_the_chunking, 0,
                        (int)(sizeof(chunk_sizes) / sizeof(chunk_sizes[0])));
    tcase_add_loop_test(tc, enqueue_respects_max_depth, 0, N_OF(depth_cases));
    tcase_add_test(tc, idempotency_key_stored_with_order);
    tcase_add_test(tc, idempotency_key_taken_in_later_batch);
    tcase_add_test(tc, idempotency_key_twice_in_one_batch);
    tcase_add_loop_test(tc, idempotency_key_expires_after_ttl, 0, N_OF(ttl_cases));
    tcase_add_test(tc, idempotency_prune_deletes_old_keys);
    suite_add_tcase(s, tc);

    tc = tcase_new("reads", make_root);
    tcase_add_test(tc, order_status_follows_its_message);
    tcase_add_test(tc, order_status_dead_lettered);
    tcase_add_test(tc, list_orders_newest_first_with_cursor);
    tcase_add_loop_test(tc, list_orders_filters, 0, N_OF(filter_cases));
    tcase_add_test(tc, list_orders_shows_states);
    tcase_add_test(tc, list_orders_filters_discarded);
    tcase_add_test(tc, stats_oldest_enqueued_at);
    suite_add_tcase(s, tc);

    tc = tcase_new("queue", make_root);
    tcase_add_test(tc, claim_oldest_first_up_to_max);
    tcase_add_test(tc, claim_lease_hides_then_reveals);
    tcase_add_test(tc, claim_dead_letters_after_max_receives);
    tcase_add_test(tc, claim_dead_letters_retried_last_receive);
    tcase_add_test(tc, settle_completed_removes_message);
    tcase_add_test(tc, settle_completed_keeps_fulfilment_result);
    tcase_add_loop_test(tc, settle_with_stale_receipt_changes_nothing, 0, N_OF(outcomes));
    tcase_add_test(tc, settle_retry_delays_and_records_error);
    tcase_add_test(tc, settle_dead_letter_moves_message);
    tcase_add_test(tc, settle_batch_results_per_item);
    tcase_add_test(tc, release_makes_visible_now_and_gives_back_the_receive);
    tcase_add_test(tc, extend_leases_keeps_message_hidden);
    tcase_add_test(tc, next_visible_is_the_earliest);
    suite_add_tcase(s, tc);

    tc = tcase_new("dead_letters", make_root);
    tcase_add_test(tc, list_dead_letters_pages);
    tcase_add_test(tc, redrive_one_requeues);
    tcase_add_test(tc, redrive_all_moves_every_batch);
    tcase_add_test(tc, delete_dead_letter_discards_it);
    tcase_add_test(tc, redrive_keeps_the_failed_run);
    suite_add_tcase(s, tc);

    tc = tcase_new("maintenance", make_root);
    tcase_add_test(tc, writable_on_healthy_db);
    tcase_add_test(tc, backup_copies_and_refuses_existing_destination);
    tcase_add_test(tc, readers_and_writer_concurrently);
    suite_add_tcase(s, tc);

    tc = tcase_new("disk_full", make_tmpfs_root);
    tcase_add_test(tc, unavailable_when_disk_full_then_recovers);
    suite_add_tcase(s, tc);

    return s;
}
