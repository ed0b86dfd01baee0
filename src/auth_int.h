/*
 * auth_int.h — private to the auth module: the key table that
 * src/auth_keys_file.c builds from the keys file and src/auth.c holds live.
 *
 * include/auth.h is the module's public face; auth_errors_print() and
 * auth_scopes_parse(), declared there, live in auth_keys_file.c with the
 * parser. Nothing outside src/auth*.c includes this file.
 */
#ifndef ORDERD_AUTH_INT_H
#define ORDERD_AUTH_INT_H

#include <stddef.h>
#include <stdint.h>

#include "auth.h"

struct auth_key {
    uint8_t digest[AUTH_DIGEST_LEN];
    unsigned scopes;
    unsigned line;
    char name[AUTH_NAME_MAX + 1];
};

/* The keys are immutable once built; only refs changes after that. */
struct auth_table {
    unsigned refs; /* auth.c's, under struct auth's lock; 0 from the parser */
    size_t count;
    size_t cap;
    struct auth_key *keys;
};

/* Builds a table from text[0..len); no file checks. 0 with *out, -EINVAL (errors in
 * errs, which may be NULL) or -ENOMEM. *out is NULL on failure. */
int auth_table_parse(const char *text, size_t len, struct auth_table **out,
                     struct auth_errors *errs);

/* Reads and parses the file at path (a regular file others may not write, at most
 * AUTH_FILE_BYTES_MAX). 0 with *out, -EINVAL or -errno (reported), -ENOMEM. */
int auth_table_read(const char *path, struct auth_table **out, struct auth_errors *errs);

/* Wipes the keys and frees; safe with NULL. */
void auth_table_free(struct auth_table *t);

#endif
