/*
 * tmpdir.h — temporary directories for unit tests that need real files
 * (a SQLite database): made under $TMPDIR (or /tmp), removed with all they
 * hold. Shared by the suites; not a suite itself.
 */
#ifndef ORDERD_TEST_TMPDIR_H
#define ORDERD_TEST_TMPDIR_H

#include <stddef.h>

/* Makes parent/NAME.XXXXXX (parent NULL: $TMPDIR or /tmp) into out; aborts
 * when it cannot, since no case could run without it. */
void tmpdir_make(char *out, size_t size, const char *parent, const char *name);
/* Removes path and everything under it; a missing path is not an error. */
void tmpdir_remove(const char *path);

#endif
