/*
 * sqlite_io.c — the "orderd" VFS and sqlite_io_fdatasync() (sqlite_io.h):
 * a shim over SQLite's default VFS (unix on Linux), as SQLite's own
 * vfstrace.c is, and the fault that tests arm on it.
 *
 * The shim: struct io_file is the sqlite3_file SQLite allocates for us
 * (szOsFile bytes); the real VFS's file lives right after it. Every method
 * passes its call to the real file's methods, and every VFS call to the
 * real VFS. Files get a method table of the same iVersion as the real one:
 * WAL mode needs version 2 (xShm*: the WAL index), mmap version 3
 * (xFetch/xUnfetch); claiming a version the real file lacks would call a
 * NULL pointer.
 *
 * The fault: one rule (struct sqlite_io_fault) behind a mutex, and `armed`,
 * the only thing an I/O call reads while no rule is set (one relaxed
 * atomic load). While armed, the calls the rule could match take the mutex
 * to count themselves.
 *
 * Threads: any. SQLite calls the methods of one file from one connection's
 * thread at a time (orderd opens its connections NOMUTEX and uses each on
 * one thread at a time), and the VFS functions from any thread.
 */
#include "sqlite_io.h"

#include <errno.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

#define VFS_NAME "orderd"
#define SUFFIX_MAX 64

/* ---- the fault ---------------------------------------------------------- */

static atomic_bool armed;
static pthread_mutex_t fault_lock = PTHREAD_MUTEX_INITIALIZER;
static struct {
    struct sqlite_io_fault rule; /* path_suffix points into suffix */
    char suffix[SUFFIX_MAX];
    uint64_t matched, failed;
} fault; /* guarded by fault_lock */

int sqlite_io_fault_set(const struct sqlite_io_fault *f)
{
    if (f->ops == 0 || (f->error != EIO && f->error != ENOSPC) ||
        (f->path_suffix != NULL && strlen(f->path_suffix) >= SUFFIX_MAX))
        return -EINVAL;
    pthread_mutex_lock(&fault_lock);
    fault.rule = *f;
    fault.rule.path_suffix = NULL;
    if (f->path_suffix != NULL) {
        snprintf(fault.suffix, sizeof(fault.suffix), "%s", f->path_suffix);
        fault.rule.path_suffix = fault.suffix;
    }
    fault.matched = 0;
    fault.failed = 0;
    atomic_store(&armed, true);
    pthread_mutex_unlock(&fault_lock);
    return 0;
}

void sqlite_io_fault_clear(void)
{
    pthread_mutex_lock(&fault_lock);
    atomic_store(&armed, false);
    pthread_mutex_unlock(&fault_lock);
}

void sqlite_io_fault_counts(struct sqlite_io_fault_counts *out)
{
    pthread_mutex_lock(&fault_lock);
    out->matched = fault.matched;
    out->failed = fault.failed;
    out->armed = atomic_load(&armed);
    pthread_mutex_unlock(&fault_lock);
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && memcmp(s + n - k, suffix, k) == 0;
}

/*
 * Whether this call fails, and with which errno: 0 to go through. The cheap
 * test first: while nothing is armed, nothing else is read.
 */
static int fault_hit(enum sqlite_io_op op, unsigned file, const char *path)
{
    if (!atomic_load_explicit(&armed, memory_order_relaxed))
        return 0;
    int error = 0;
    pthread_mutex_lock(&fault_lock);
    const struct sqlite_io_fault *r = &fault.rule;
    if (atomic_load_explicit(&armed, memory_order_relaxed) && (r->ops & op) != 0 &&
        (r->files == 0 || (r->files & file) != 0) &&
        (r->path_suffix == NULL || (path != NULL && ends_with(path, r->path_suffix)))) {
        if (fault.matched++ >= r->after) {
            fault.failed++;
            error = r->error;
            if (r->times != 0 && fault.failed >= r->times)
                atomic_store(&armed, false); /* spent */
        }
    }
    pthread_mutex_unlock(&fault_lock);
    return error;
}

/* ---- the files ---------------------------------------------------------- */

struct io_file {
    sqlite3_file base;  /* first: SQLite sees this */
    sqlite3_file *real; /* the real VFS's file, right after this struct */
    unsigned kind;      /* enum sqlite_io_file */
    const char *path;   /* xOpen's name (valid until xClose), or NULL */
};

static sqlite3_file *real_of(sqlite3_file *f) { return ((struct io_file *)f)->real; }

/* A failed call as the unix VFS reports one: errno set, SQLite's code. */
static int fail_with(int error, int code)
{
    errno = error;
    return code;
}

static int io_close(sqlite3_file *f)
{
    sqlite3_file *real = real_of(f);
    int rc = real->pMethods->xClose(real);
    f->pMethods = NULL;
    return rc;
}

static int io_read(sqlite3_file *f, void *buf, int amount, sqlite3_int64 offset)
{
    struct io_file *p = (struct io_file *)f;
    int error = fault_hit(SQLIO_READ, p->kind, p->path);
    if (error != 0)
        return fail_with(error, SQLITE_IOERR_READ);
    return p->real->pMethods->xRead(p->real, buf, amount, offset);
}

static int io_write(sqlite3_file *f, const void *buf, int amount, sqlite3_int64 offset)
{
    struct io_file *p = (struct io_file *)f;
    int error = fault_hit(SQLIO_WRITE, p->kind, p->path);
    if (error != 0) /* unixWrite: a short write or ENOSPC is SQLITE_FULL */
        return fail_with(error, error == ENOSPC ? SQLITE_FULL : SQLITE_IOERR_WRITE);
    return p->real->pMethods->xWrite(p->real, buf, amount, offset);
}

static int io_truncate(sqlite3_file *f, sqlite3_int64 size)
{
    struct io_file *p = (struct io_file *)f;
    int error = fault_hit(SQLIO_TRUNCATE, p->kind, p->path);
    if (error != 0)
        return fail_with(error, SQLITE_IOERR_TRUNCATE);
    return p->real->pMethods->xTruncate(p->real, size);
}

static int io_sync(sqlite3_file *f, int flags)
{
    struct io_file *p = (struct io_file *)f;
    int error = fault_hit(SQLIO_SYNC, p->kind, p->path);
    if (error != 0) /* unixSync: any failed fsync is SQLITE_IOERR_FSYNC */
        return fail_with(error, SQLITE_IOERR_FSYNC);
    return p->real->pMethods->xSync(p->real, flags);
}

static int io_file_size(sqlite3_file *f, sqlite3_int64 *size)
{
    sqlite3_file *real = real_of(f);
    return real->pMethods->xFileSize(real, size);
}

static int io_lock(sqlite3_file *f, int level)
{
    sqlite3_file *real = real_of(f);
    return real->pMethods->xLock(real, level);
}

static int io_unlock(sqlite3_file *f, int level)
{
    sqlite3_file *real = real_of(f);
    return real->pMethods->xUnlock(real, level);
}

static int io_check_reserved_lock(sqlite3_file *f, int *out)
{
    sqlite3_file *real = real_of(f);
    return real->pMethods->xCheckReservedLock(real, out);
}

static int io_file_control(sqlite3_file *f, int op, void *arg)
{
    sqlite3_file *real = real_of(f);
    return real->pMethods->xFileControl(real, op, arg);
}

static int io_sector_size(sqlite3_file *f)
{
    sqlite3_file *real = real_of(f);
    return real->pMethods->xSectorSize(real);
}

static int io_device_characteristics(sqlite3_file *f)
{
    sqlite3_file *real = real_of(f);
    return real->pMethods->xDeviceCharacteristics(real);
}

/* Version 2: the WAL index (-shm), shared memory the real VFS maps. */
static int io_shm_map(sqlite3_file *f, int page, int size, int extend, void volatile **out)
{
    sqlite3_file *real = real_of(f);
    return real->pMethods->xShmMap(real, page, size, extend, out);
}

static int io_shm_lock(sqlite3_file *f, int offset, int n, int flags)
{
    sqlite3_file *real = real_of(f);
    return real->pMethods->xShmLock(real, offset, n, flags);
}

static void io_shm_barrier(sqlite3_file *f)
{
    sqlite3_file *real = real_of(f);
    real->pMethods->xShmBarrier(real);
}

static int io_shm_unmap(sqlite3_file *f, int delete_flag)
{
    sqlite3_file *real = real_of(f);
    return real->pMethods->xShmUnmap(real, delete_flag);
}

/* Version 3: memory-mapped reads. */
static int io_fetch(sqlite3_file *f, sqlite3_int64 offset, int amount, void **out)
{
    sqlite3_file *real = real_of(f);
    return real->pMethods->xFetch(real, offset, amount, out);
}

static int io_unfetch(sqlite3_file *f, sqlite3_int64 offset, void *p)
{
    sqlite3_file *real = real_of(f);
    return real->pMethods->xUnfetch(real, offset, p);
}

#define IO_METHODS(version)                                                                        \
    {                                                                                              \
        .iVersion = (version), .xClose = io_close, .xRead = io_read, .xWrite = io_write,           \
        .xTruncate = io_truncate, .xSync = io_sync, .xFileSize = io_file_size, .xLock = io_lock,   \
        .xUnlock = io_unlock, .xCheckReservedLock = io_check_reserved_lock,                        \
        .xFileControl = io_file_control, .xSectorSize = io_sector_size,                            \
        .xDeviceCharacteristics = io_device_characteristics,                                       \
        .xShmMap = (version) >= 2 ? io_shm_map : NULL,                                             \
        .xShmLock = (version) >= 2 ? io_shm_lock : NULL,                                           \
        .xShmBarrier = (version) >= 2 ? io_shm_barrier : NULL,                                     \
        .xShmUnmap = (version) >= 2 ? io_shm_unmap : NULL,                                         \
        .xFetch = (version) >= 3 ? io_fetch : NULL,                                                \
        .xUnfetch = (version) >= 3 ? io_unfetch : NULL,                                            \
    }

/* By the real file's iVersion: [0] for 1, [1] for 2, [2] for 3 and later. */
static const sqlite3_io_methods io_methods[3] = {IO_METHODS(1), IO_METHODS(2), IO_METHODS(3)};

/* ---- the VFS ------------------------------------------------------------ */

static sqlite3_vfs io_vfs;

/* The VFS ours passes every call to (pAppData). */
static sqlite3_vfs *real_vfs(sqlite3_vfs *vfs) { return vfs->pAppData; }

static unsigned kind_of_flags(int flags)
{
    if (flags & SQLITE_OPEN_MAIN_DB)
        return SQLIO_DB;
    if (flags & SQLITE_OPEN_WAL)
        return SQLIO_WAL;
    if (flags & SQLITE_OPEN_MAIN_JOURNAL)
        return SQLIO_JOURNAL;
    return SQLIO_OTHER;
}

static int vfs_open(sqlite3_vfs *vfs, sqlite3_filename name, sqlite3_file *f, int flags,
                    int *out_flags)
{
    struct io_file *p = (struct io_file *)f;
    p->base.pMethods = NULL; /* SQLite calls no xClose after a failed open */
    p->real = (sqlite3_file *)(p + 1);
    p->kind = kind_of_flags(flags);
    p->path = name;
    int error = fault_hit(SQLIO_OPEN, p->kind, name);
    if (error != 0)
        return fail_with(error, SQLITE_CANTOPEN);
    sqlite3_vfs *real = real_vfs(vfs);
    int rc = real->xOpen(real, name, p->real, flags, out_flags);
    /* The real file may have methods even when its open failed (sqlite3.h:
     * xClose is then called): give it ours, which pass xClose on. */
    const sqlite3_io_methods *m = p->real->pMethods;
    if (m != NULL)
        p->base.pMethods = &io_methods[m->iVersion >= 3 ? 2 : m->iVersion - 1];
    return rc;
}

static int vfs_delete(sqlite3_vfs *vfs, const char *name, int sync_dir)
{
    return real_vfs(vfs)->xDelete(real_vfs(vfs), name, sync_dir);
}

static int vfs_access(sqlite3_vfs *vfs, const char *name, int flags, int *out)
{
    return real_vfs(vfs)->xAccess(real_vfs(vfs), name, flags, out);
}

static int vfs_full_pathname(sqlite3_vfs *vfs, const char *name, int n, char *out)
{
    return real_vfs(vfs)->xFullPathname(real_vfs(vfs), name, n, out);
}

static void *vfs_dl_open(sqlite3_vfs *vfs, const char *name)
{
    return real_vfs(vfs)->xDlOpen(real_vfs(vfs), name);
}

static void vfs_dl_error(sqlite3_vfs *vfs, int n, char *out)
{
    real_vfs(vfs)->xDlError(real_vfs(vfs), n, out);
}

static void (*vfs_dl_sym(sqlite3_vfs *vfs, void *handle, const char *symbol))(void)
{
    return real_vfs(vfs)->xDlSym(real_vfs(vfs), handle, symbol);
}

static void vfs_dl_close(sqlite3_vfs *vfs, void *handle)
{
    real_vfs(vfs)->xDlClose(real_vfs(vfs), handle);
}

static int vfs_randomness(sqlite3_vfs *vfs, int n, char *out)
{
    return real_vfs(vfs)->xRandomness(real_vfs(vfs), n, out);
}

static int vfs_sleep(sqlite3_vfs *vfs, int us) { return real_vfs(vfs)->xSleep(real_vfs(vfs), us); }

static int vfs_current_time(sqlite3_vfs *vfs, double *out)
{
    return real_vfs(vfs)->xCurrentTime(real_vfs(vfs), out);
}

static int vfs_get_last_error(sqlite3_vfs *vfs, int n, char *out)
{
    return real_vfs(vfs)->xGetLastError(real_vfs(vfs), n, out);
}

static int vfs_current_time_int64(sqlite3_vfs *vfs, sqlite3_int64 *out)
{
    return real_vfs(vfs)->xCurrentTimeInt64(real_vfs(vfs), out);
}

static int vfs_set_system_call(sqlite3_vfs *vfs, const char *name, sqlite3_syscall_ptr p)
{
    return real_vfs(vfs)->xSetSystemCall(real_vfs(vfs), name, p);
}

static sqlite3_syscall_ptr vfs_get_system_call(sqlite3_vfs *vfs, const char *name)
{
    return real_vfs(vfs)->xGetSystemCall(real_vfs(vfs), name);
}

static const char *vfs_next_system_call(sqlite3_vfs *vfs, const char *name)
{
    return real_vfs(vfs)->xNextSystemCall(real_vfs(vfs), name);
}

static pthread_once_t register_once = PTHREAD_ONCE_INIT;
static const char *registered_name; /* written once, under register_once */

static void register_vfs(void)
{
    sqlite3_vfs *real = sqlite3_vfs_find(NULL); /* before ours exists: unix */
    if (real == NULL) {
        log_error(NULL, "store: SQLite has no default VFS; opening without the I/O seam");
        return;
    }
    int version = real->iVersion < 3 ? real->iVersion : 3;
    io_vfs = (sqlite3_vfs){
        .iVersion = version,
        .szOsFile = (int)sizeof(struct io_file) + real->szOsFile,
        .mxPathname = real->mxPathname,
        .zName = VFS_NAME,
        .pAppData = real,
        .xOpen = vfs_open,
        .xDelete = vfs_delete,
        .xAccess = vfs_access,
        .xFullPathname = vfs_full_pathname,
        .xDlOpen = vfs_dl_open,
        .xDlError = vfs_dl_error,
        .xDlSym = vfs_dl_sym,
        .xDlClose = vfs_dl_close,
        .xRandomness = vfs_randomness,
        .xSleep = vfs_sleep,
        .xCurrentTime = vfs_current_time,
        .xGetLastError = vfs_get_last_error,
        .xCurrentTimeInt64 = version >= 2 ? vfs_current_time_int64 : NULL,
        .xSetSystemCall = version >= 3 ? vfs_set_system_call : NULL,
        .xGetSystemCall = version >= 3 ? vfs_get_system_call : NULL,
        .xNextSystemCall = version >= 3 ? vfs_next_system_call : NULL,
    };
    int rc = sqlite3_vfs_register(&io_vfs, 0);
    if (rc != SQLITE_OK) {
        log_error(NULL, "store: cannot register the %s VFS: %s; opening without the I/O seam",
                  VFS_NAME, sqlite3_errstr(rc));
        return;
    }
    registered_name = VFS_NAME;
}

const char *sqlite_io_vfs(void)
{
    pthread_once(&register_once, register_vfs);
    return registered_name;
}

/* ---- orderd's own fdatasync --------------------------------------------- */

static unsigned kind_of_path(const char *path)
{
    if (path != NULL && ends_with(path, "-wal"))
        return SQLIO_WAL;
    if (path != NULL && ends_with(path, "-journal"))
        return SQLIO_JOURNAL;
    return SQLIO_DB;
}

int sqlite_io_fdatasync(int fd, const char *path)
{
    int error = fault_hit(SQLIO_FDATASYNC, kind_of_path(path), path);
    if (error != 0) {
        errno = error;
        return -1;
    }
    return fdatasync(fd);
}
