/*
 * sqlite_io.h — the SQLite backend's I/O seam: every file SQLite opens for
 * orderd goes through a VFS named "orderd" that passes each call on to the
 * default (unix) VFS unchanged, and the one fdatasync orderd makes itself
 * (sq_sync's, of the WAL) goes through sqlite_io_fdatasync(). Both can be
 * made to fail by a fault (below), so that unit tests can show what the
 * store, the committer, the checkpointer and the workers do when the disk
 * says EIO or ENOSPC (tests/unit/test_store_io.c).
 *
 * Faults are armed only by C code that includes this header: the unit
 * tests. Nothing in a config, the environment or the API reaches them. With
 * no fault armed each call costs one relaxed atomic load more than the unix
 * VFS alone.
 *
 * What the seam does not see: the WAL index (-shm), which SQLite maps into
 * memory through xShmMap (its failures are not modelled), reads through
 * mmap (orderd leaves mmap_size at 0), and files opened outside SQLite.
 *
 * Private to the SQLite backend: store_sqlite_open.c, wal_checkpointer.c and
 * the tests include it.
 */
#ifndef ORDERD_SQLITE_IO_H
#define ORDERD_SQLITE_IO_H

#include <stdint.h>

/*
 * The VFS's name for sqlite3_open_v2(): registers it on the first call (once
 * per process, any thread, never as the default VFS). NULL — SQLite's
 * default VFS, without the seam — when it cannot be registered (logged).
 */
const char *sqlite_io_vfs(void);

/*
 * fdatasync(fd), or the armed fault's error: 0, or -1 with errno set. path
 * names the file for the fault's rules (a name ending in "-wal" is the WAL,
 * in "-journal" a journal, anything else the database).
 */
int sqlite_io_fdatasync(int fd, const char *path);

/* ---- faults (tests only) ------------------------------------------------ */

/* Operations a fault can fail; a bit set. */
enum sqlite_io_op {
    SQLIO_OPEN = 1 << 0,      /* xOpen: SQLITE_CANTOPEN */
    SQLIO_READ = 1 << 1,      /* xRead: SQLITE_IOERR_READ */
    SQLIO_WRITE = 1 << 2,     /* xWrite: SQLITE_FULL for ENOSPC, else SQLITE_IOERR_WRITE */
    SQLIO_SYNC = 1 << 3,      /* xSync, SQLite's own syncs: SQLITE_IOERR_FSYNC */
    SQLIO_TRUNCATE = 1 << 4,  /* xTruncate: SQLITE_IOERR_TRUNCATE */
    SQLIO_FDATASYNC = 1 << 5, /* sqlite_io_fdatasync(): -1 and errno */
};

/* Which files; a bit set, 0 for any. As SQLite's xOpen flags say, or for
 * sqlite_io_fdatasync() as its path says. */
enum sqlite_io_file {
    SQLIO_DB = 1 << 0,      /* the main database file */
    SQLIO_WAL = 1 << 1,     /* its write-ahead log */
    SQLIO_JOURNAL = 1 << 2, /* a rollback journal (a backup's destination) */
    SQLIO_OTHER = 1 << 3,   /* temporary files, statement journals */
};

/*
 * One rule: of the calls that match ops, files and path_suffix, the first
 * `after` go through, then `times` fail (0: every one, until cleared), each
 * with the result the unix VFS gives for `error` (EIO or ENOSPC; errno is
 * set to it too). The results listed above are those of the unix VFS, so a
 * fault looks to SQLite as the disk would.
 */
struct sqlite_io_fault {
    unsigned ops;            /* enum sqlite_io_op bits, at least one */
    unsigned files;          /* enum sqlite_io_file bits; 0: any file */
    const char *path_suffix; /* NULL: any path; else the file's name ends so (copied) */
    int error;               /* EIO or ENOSPC */
    uint64_t after;
    uint64_t times;
};

/* Arms f in place of any fault armed before, its counts reset: 0, or -EINVAL
 * (no op, an error other than EIO and ENOSPC, a suffix too long). Any thread. */
int sqlite_io_fault_set(const struct sqlite_io_fault *f);

/* Disarms the fault; the counts stay readable. Any thread. */
void sqlite_io_fault_clear(void);

struct sqlite_io_fault_counts {
    uint64_t matched; /* calls that matched the rule, let through or failed */
    uint64_t failed;  /* of those, failed */
    int armed;        /* 1 while the rule may still fail a call */
};

void sqlite_io_fault_counts(struct sqlite_io_fault_counts *out);

#endif
