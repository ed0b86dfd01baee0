/*
 * wal_checkpointer.c — the checkpoint thread of an SQLite database in WAL
 * mode (wal_checkpointer.h): the WAL hook that wakes it, the two-step
 * checkpoint, and its counters.
 *
 * Locks: write_lock (the store's) before c->lock, never the other way round.
 * The hook runs with write_lock held (SQLite calls it at the end of a commit
 * on the writer's thread); step 2 takes write_lock, then c->lock to re-arm.
 */
#include "wal_checkpointer.h"

#include <assert.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>

#include "log.h"
#include "sqlite_io.h"

/* Step 1 runs at most this many times before step 2 (copy_without_lock). */
#define CHECKPOINT_ROUNDS_MAX 8

struct wal_checkpointer {
    sqlite3 *db; /* the thread's own connection */
    sqlite3 *writer;
    pthread_mutex_t *write_lock;
    int frames;

    pthread_t thread;
    pthread_mutex_t lock; /* guards the writes of wanted and stop */
    pthread_cond_t wake;
    atomic_bool wanted; /* a checkpoint is due (read without lock by the hook) */
    bool stop;

    /* Written under write_lock only (the hook, step 2). */
    int trigger_at;         /* WAL frames at which the hook asks for a checkpoint */
    atomic_int last_frames; /* WAL frames after the last commit (read by step 1) */

    _Atomic uint64_t completed;
    _Atomic uint64_t partial;
    _Atomic uint64_t failed;
    _Atomic uint64_t max_locked_frames;
};

/* SQLite's WAL hook: the writer's thread, after each commit, write_lock held. */
static int on_commit(void *arg, sqlite3 *db, const char *schema, int frames)
{
    (void)db;
    (void)schema;
    struct wal_checkpointer *c = arg;
    atomic_store_explicit(&c->last_frames, frames, memory_order_relaxed);
    if (frames < c->trigger_at || atomic_load_explicit(&c->wanted, memory_order_relaxed))
        return SQLITE_OK;
    pthread_mutex_lock(&c->lock);
    if (!atomic_load(&c->wanted)) {
        atomic_store(&c->wanted, true);
        pthread_cond_signal(&c->wake);
    }
    pthread_mutex_unlock(&c->lock);
    return SQLITE_OK;
}

/* Waits until a checkpoint is due (true) or the thread must stop (false). */
static bool wait_for_work(struct wal_checkpointer *c)
{
    pthread_mutex_lock(&c->lock);
    while (!atomic_load(&c->wanted) && !c->stop)
        pthread_cond_wait(&c->wake, &c->lock);
    bool go = !c->stop;
    pthread_mutex_unlock(&c->lock);
    return go;
}

static int checkpoint(struct wal_checkpointer *c, int *log, int *copied)
{
    *log = -1;
    *copied = -1;
    return sqlite3_wal_checkpoint_v2(c->db, NULL, SQLITE_CHECKPOINT_PASSIVE, log, copied);
}

/* Keeps the largest number of frames step 2 copied, under the write lock. */
static void note_locked_frames(struct wal_checkpointer *c, uint64_t n)
{
    uint64_t seen = atomic_load(&c->max_locked_frames);
    while (n > seen && !atomic_compare_exchange_weak(&c->max_locked_frames, &seen, n))
        ;
}

/*
 * Step 2 and the re-arming, under write_lock: nothing is appended meanwhile,
 * so `log` and `copied` describe the WAL as the next writer will find it.
 */
static void finish_checkpoint(struct wal_checkpointer *c, int copied_before)
{
    int rc = pthread_mutex_lock(c->write_lock);
    assert(rc == 0);
    int log, copied;
    rc = checkpoint(c, &log, &copied);
    if (rc == SQLITE_OK && copied > copied_before)
        note_locked_frames(c, (uint64_t)(copied - copied_before));
    /* BUSY: another connection (sqlite3's PRAGMA wal_checkpoint, say) is
     * checkpointing the file right now; as with a reader, try again later. */
    bool busy = (rc & 0xff) == SQLITE_BUSY;
    bool whole = rc == SQLITE_OK && log >= 0 && copied == log;
    if (rc != SQLITE_OK && !busy) {
        atomic_fetch_add(&c->failed, 1);
        log_warn(NULL, "store: checkpoint: %s (tried again after %d more WAL pages)",
                 sqlite3_errmsg(c->db), c->frames);
    } else {
        atomic_fetch_add(whole ? &c->completed : &c->partial, 1);
    }
    /* A whole WAL restarts at the next write: ask again at `frames`. Else a
     * reader holds the rest back: ask again only after `frames` more. */
    c->trigger_at = whole ? c->frames : (log >= 0 ? log : atomic_load(&c->last_frames)) + c->frames;
    pthread_mutex_lock(&c->lock);
    atomic_store(&c->wanted, false);
    pthread_mutex_unlock(&c->lock);
    rc = pthread_mutex_unlock(c->write_lock);
    assert(rc == 0);
    (void)rc;
}

/*
 * Step 1, repeated while writers appended more than a mark meanwhile (after a
 * reader held the WAL back, copying it can take long enough for that), so
 * that step 2 copies at most about a mark under the lock. Bounded: a writer
 * faster than the copy gets its stall, not a thread that never finishes.
 * Errors, if lasting, are reported by step 2.
 */
static int copy_without_lock(struct wal_checkpointer *c)
{
    int done = 0;
    for (int round = 0; round < CHECKPOINT_ROUNDS_MAX; round++) {
        int log, copied;
        if (checkpoint(c, &log, &copied) != SQLITE_OK || copied <= done)
            break; /* failed, or a reader holds the rest back */
        done = copied;
        if (atomic_load_explicit(&c->last_frames, memory_order_relaxed) - copied <= c->frames)
            break;
    }
    return done;
}

static void *checkpointer_main(void *arg)
{
    struct wal_checkpointer *c = arg;
    pthread_setname_np(pthread_self(), "checkpointer"); /* top -H, perf: failure is harmless */
    while (wait_for_work(c)) {
        int copied = copy_without_lock(c);
        finish_checkpoint(c, copied);
    }
    return NULL;
}

/* A fresh connection knows the file is in WAL mode only once it has read it;
 * until then a checkpoint through it does nothing and says SQLITE_OK. */
static int open_connection(const char *path, sqlite3 **out)
{
    sqlite3 *db = NULL;
    /* Through the store's I/O seam (sqlite_io.h), as its other connections. */
    int rc =
        sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, sqlite_io_vfs());
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(db, "PRAGMA synchronous=FULL; SELECT count(*) FROM sqlite_schema", NULL,
                          NULL, NULL);
    if (rc != SQLITE_OK) {
        log_error(NULL, "store: checkpointer: cannot open %s: %s", path,
                  db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
        sqlite3_close(db);
        return -1;
    }
    *out = db;
    return 0;
}

int wal_checkpointer_start(const struct wal_checkpointer_options *o, struct wal_checkpointer **out)
{
    assert(o->frames > 0);
    struct wal_checkpointer *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        log_error(NULL, "store: checkpointer: out of memory");
        return -1;
    }
    c->writer = o->writer;
    c->write_lock = o->write_lock;
    c->frames = o->frames;
    c->trigger_at = o->frames;
    if (pthread_mutex_init(&c->lock, NULL) != 0)
        goto fail_alloc;
    if (pthread_cond_init(&c->wake, NULL) != 0)
        goto fail_lock;
    if (open_connection(o->path, &c->db) != 0)
        goto fail_cond;
    int rc = pthread_create(&c->thread, NULL, checkpointer_main, c);
    if (rc != 0) {
        log_error(NULL, "store: checkpointer: cannot start a thread (error %d)", rc);
        goto fail_db;
    }
    /* Installing a hook turns SQLite's automatic checkpoint off (it is a WAL
     * hook too); wal_autocheckpoint(0) says so explicitly first. */
    sqlite3_wal_autocheckpoint(o->writer, 0);
    sqlite3_wal_hook(o->writer, on_commit, c);
    *out = c;
    return 0;

fail_db:
    sqlite3_close(c->db);
fail_cond:
    pthread_cond_destroy(&c->wake);
fail_lock:
    pthread_mutex_destroy(&c->lock);
fail_alloc:
    free(c);
    return -1;
}

void wal_checkpointer_stop(struct wal_checkpointer *c)
{
    if (c == NULL)
        return;
    pthread_mutex_lock(&c->lock);
    c->stop = true;
    pthread_cond_signal(&c->wake);
    pthread_mutex_unlock(&c->lock);
    int rc = pthread_join(c->thread, NULL);
    assert(rc == 0);
    (void)rc;
    sqlite3_wal_hook(c->writer, NULL, NULL);
    if (sqlite3_close(c->db) != SQLITE_OK)
        log_error(NULL, "store: checkpointer: close: %s", sqlite3_errmsg(c->db));
    pthread_cond_destroy(&c->wake);
    pthread_mutex_destroy(&c->lock);
    free(c);
}

void wal_checkpointer_stats(const struct wal_checkpointer *c, struct wal_checkpointer_stats *out)
{
    out->completed = atomic_load(&c->completed);
    out->partial = atomic_load(&c->partial);
    out->failed = atomic_load(&c->failed);
    out->max_locked_frames = atomic_load(&c->max_locked_frames);
}
