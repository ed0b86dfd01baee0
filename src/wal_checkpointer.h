/*
 * wal_checkpointer.h — copies an SQLite database's write-ahead log back into
 * the database file on a thread of its own, so that no commit pays for it.
 *
 * SQLite's automatic checkpoint runs inside the commit that crosses the mark,
 * on the writer's thread and under its lock: every other writer, and every
 * request waiting for an answer, waits for the pages to be copied and for two
 * fsyncs. Here a commit only notices the WAL's size (a WAL hook on the writer
 * connection) and wakes this thread, which checkpoints with a connection of
 * its own in two steps:
 *
 *   1. PASSIVE, without the write lock: copies what has been committed so
 *      far while writers go on appending; again (a few times at most) while
 *      they appended more than `frames` meanwhile, as after a long reader.
 *   2. PASSIVE again, holding the write lock: copies the few frames appended
 *      during step 1. No writer can append meanwhile, so when no reader holds
 *      an older snapshot the whole WAL is now in the database file and the
 *      next write transaction starts the WAL over from its beginning: the
 *      file stays the same size (SQLite cannot restart a WAL that a writer
 *      keeps appending to, so step 1 alone lets it grow without bound).
 *
 * A checkpoint that cannot finish (a reader, such as a backup, holds an older
 * snapshot) is tried again only after another `frames` have been appended,
 * never once per commit.
 */
#ifndef ORDERD_WAL_CHECKPOINTER_H
#define ORDERD_WAL_CHECKPOINTER_H

#include <pthread.h>
#include <sqlite3.h>
#include <stdint.h>

struct wal_checkpointer;

struct wal_checkpointer_options {
    const char *path;            /* the database file, in WAL mode */
    int frames;                  /* checkpoint once the WAL holds this many frames (> 0) */
    sqlite3 *writer;             /* the connection every write goes through */
    pthread_mutex_t *write_lock; /* held around every transaction of writer */
};

/*
 * Opens a connection to o->path, replaces writer's automatic checkpoints by
 * the WAL hook and starts the thread. Call before writer is shared. Returns
 * 0, or -1 (logged) with writer left as it was.
 */
int wal_checkpointer_start(const struct wal_checkpointer_options *o, struct wal_checkpointer **out);

/* Stops the thread after the checkpoint in progress, closes its connection
 * and removes the hook from writer (call while no one else uses writer).
 * NULL is a no-op. */
void wal_checkpointer_stop(struct wal_checkpointer *c);

struct wal_checkpointer_stats {
    uint64_t completed;         /* checkpoints that left the whole WAL in the database file */
    uint64_t partial;           /* held back by a reader's snapshot or another
                                 * connection's checkpoint (SQLITE_BUSY) */
    uint64_t failed;            /* any other error (logged) */
    uint64_t max_locked_frames; /* most WAL frames one step 2 copied (under the lock) */
};

void wal_checkpointer_stats(const struct wal_checkpointer *c, struct wal_checkpointer_stats *out);

#endif
