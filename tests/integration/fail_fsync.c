/*
 * fail_fsync.c — an LD_PRELOAD shim for tests/integration/test_durability.sh:
 * fdatasync() and fsync() of a file whose name ends in "-wal" fail with EIO
 * while the file named by TEST_FAIL_FSYNC_FLAG exists; every other call goes
 * to the C library. The test builds it with cc at run time.
 *
 * Faults inside the process (a chosen write, sync or open failing with EIO
 * or ENOSPC) are the unit tests' (src/sqlite_io.h, tests/unit/test_store_io.c);
 * this shim stays for the one thing they cannot show: the real binary's
 * real fdatasync call failing (see test_durability.sh).
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int fdatasync(int fd);
int fsync(int fd);

static bool should_fail(int fd)
{
    const char *flag = getenv("TEST_FAIL_FSYNC_FLAG");
    if (flag == NULL || access(flag, F_OK) != 0)
        return false;
    char link[64], path[4096];
    snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, path, sizeof(path) - 1);
    if (n < 4)
        return false;
    path[n] = '\0';
    return strcmp(path + n - 4, "-wal") == 0;
}

static int call_next(const char *name, int fd)
{
    int (*next)(int) = (int (*)(int))dlsym(RTLD_NEXT, name);
    if (next == NULL) {
        errno = ENOSYS;
        return -1;
    }
    return next(fd);
}

int fdatasync(int fd)
{
    if (should_fail(fd)) {
        errno = EIO;
        return -1;
    }
    return call_next("fdatasync", fd);
}

int fsync(int fd)
{
    if (should_fail(fd)) {
        errno = EIO;
        return -1;
    }
    return call_next("fsync", fd);
}
