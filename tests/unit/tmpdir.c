/*
 * tmpdir.c — temporary directories for unit tests (see tmpdir.h).
 */
#include "tmpdir.h"

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>

static int remove_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

void tmpdir_make(char *out, size_t size, const char *parent, const char *name)
{
    const char *tmp = getenv("TMPDIR");
    if (parent == NULL)
        parent = tmp && *tmp ? tmp : "/tmp";
    int n = snprintf(out, size, "%s/%s.XXXXXX", parent, name);
    if (n < 0 || (size_t)n >= size || mkdtemp(out) == NULL) {
        perror("unit tests: mkdtemp");
        abort();
    }
}

void tmpdir_remove(const char *path)
{
    nftw(path, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}
