/*
 * auth.h — API keys with scopes (SPEC "Auth").
 *
 * The keys file holds one key a line:
 *
 *     NAME SCOPES SHA256HEX      # a comment may follow
 *
 * NAME is [A-Za-z0-9_.-]{1,64} and names the client (in logs and for rate
 * limiting); SCOPES is a comma-separated subset of orders:write, orders:read,
 * admin (each independent: admin does not imply the others); SHA256HEX is the
 * SHA-256 of the key as 64 hex digits (either case), printed by `orderd
 * hash-key`. Fields are separated by blanks; '#' starts a comment; blank lines
 * are skipped. Duplicate names and duplicate hashes are errors. The key itself
 * is never stored, logged or copied beyond the stack buffer that hashes it.
 *
 * A request presents `Authorization: Bearer KEY` (scheme case-insensitive,
 * one space, KEY 1..AUTH_KEY_MAX visible ASCII characters). The SHA-256 of KEY
 * is compared in constant time against every stored hash, without early exit.
 *
 * Threads: auth_check()/auth_http_authorize() run on any HTTP thread at once;
 * auth_reload() runs on the loop thread (SIGHUP) and swaps the key table
 * atomically: a request sees either the old table or the new one, never a mix,
 * and a table is freed only when the last request using it is done. A failed
 * reload keeps the old table. auth_load()/auth_free() are not concurrent with
 * anything else on the same struct auth.
 *
 * Two files implement it: src/auth_keys_file.c reads and checks the keys
 * file, src/auth.c holds the live table and decides; src/auth_int.h is what
 * they share. `orderd hash-key` is src/cli.c's.
 */
#ifndef ORDERD_AUTH_H
#define ORDERD_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "http.h"

#define AUTH_NAME_MAX 64              /* characters in a key's NAME */
#define AUTH_KEY_MAX 512              /* characters in a presented key */
#define AUTH_KEYS_MAX 1024            /* keys in one file (each request scans them all) */
#define AUTH_FILE_BYTES_MAX (1024 * 1024)
#define AUTH_LINE_MAX 1024            /* bytes in one line of the keys file */
#define AUTH_ERRORS_MAX 64            /* errors reported per load */
#define AUTH_DIGEST_LEN 32            /* SHA-256 */
#define AUTH_HEX_LEN (2 * AUTH_DIGEST_LEN)

/* Scope bits of a key; SCOPES in the file is an OR of these. */
enum auth_scope {
    AUTH_SCOPE_ORDERS_WRITE = 1u << 0,
    AUTH_SCOPE_ORDERS_READ = 1u << 1,
    AUTH_SCOPE_ADMIN = 1u << 2,
};

struct auth_error {
    unsigned line;                    /* 1-based; 0 = the file as a whole */
    char message[160];
};

struct auth_errors {
    size_t count;
    size_t dropped;                   /* errors beyond AUTH_ERRORS_MAX */
    struct auth_error items[AUTH_ERRORS_MAX];
};

/* ---- the keys file (src/auth_keys_file.c) ---- */

/* Prints "PATH:LINE: message" lines (PATH alone for line 0); never fails. stream is a FILE *. */
void auth_errors_print(const struct auth_errors *errs, const char *path, void *stream);

/* Parses "orders:write,admin" into bits. 0 or -EINVAL. */
int auth_scopes_parse(const char *s, size_t len, unsigned *out);

/* ---- the live table and the decision (src/auth.c) ---- */

struct auth;

/*
 * Reads the keys file at path. Returns 0 and *out (caller frees with
 * auth_free()), -EINVAL when errs holds at least one error (bad line, duplicate,
 * a file other users may write), -errno when the file cannot be read (errs then
 * holds one line-0 error saying why), -ENOMEM. *out is NULL on failure.
 * errs may be NULL. A file with no keys loads (every request is then refused);
 * see auth_key_count().
 */
int auth_load(const char *path, struct auth **out, struct auth_errors *errs);

/* Same from text[0..len) (tests, fuzzing); no file checks. */
int auth_load_string(const char *text, size_t len, struct auth **out, struct auth_errors *errs);

/*
 * Reads path again and, when it has no error, swaps the new table in for every
 * later request. On failure (same codes as auth_load) the old table stays.
 * Loop thread; safe while HTTP threads call auth_check().
 */
int auth_reload(struct auth *a, const char *path, struct auth_errors *errs);

/* Safe with NULL; no request may be in auth_check() on a. */
void auth_free(struct auth *a);

/* Keys in the current table. */
size_t auth_key_count(struct auth *a);

/*
 * The decision for one request: 0 allow (and the key's NAME is copied into
 * client_out, truncated to size - 1), 401 when the header is missing,
 * malformed or names no known key, 403 when the key lacks any bit of
 * required (an OR of enum auth_scope; 0 allows any known key). Any thread.
 */
unsigned auth_check(struct auth *a, const char *authorization, unsigned required,
                    char *client_out, size_t size);

/* The http_authorize_fn adapter: ctx is a struct auth *. */
unsigned auth_http_authorize(void *ctx, const char *authorization, enum http_scope scope,
                             char *client_out, size_t size);

/* The scope bits a route needs; 0 for HTTP_SCOPE_NONE, ~0u for an unknown value. */
unsigned auth_scope_for(enum http_scope scope);

/* ---- hashing (src/auth.c) ---- */

/* Lower-case hex SHA-256 of key[0..len) into hex (AUTH_HEX_LEN + 1 bytes). 0 or -EIO. */
int auth_hash_hex(const void *key, size_t len, char hex[AUTH_HEX_LEN + 1]);

/* 1 when the two digests are equal, else 0; time independent of the contents. */
int auth_digest_equal(const uint8_t a[AUTH_DIGEST_LEN], const uint8_t b[AUTH_DIGEST_LEN]);

#endif
