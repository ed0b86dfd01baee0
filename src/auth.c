/*
 * auth.c — the live key table and the decision: load, reload (a live swap),
 * free, auth_check() on the Bearer header with a constant-time match, and
 * the SHA-256 both the match and `orderd hash-key` (src/cli.c) use. The
 * keys file itself is read and checked by src/auth_keys_file.c.
 *
 * The key table is immutable once built. struct auth holds a pointer to the
 * current table and a reference count per table, both behind one mutex held
 * only for a pointer copy and a counter change (never during the hash or the
 * scan). auth_reload() builds the new table with no lock held, swaps the
 * pointer, and drops the struct's reference to the old one; whichever of the
 * reload or the last request still using the old table drops the count to
 * zero frees it. So a request sees one whole table from start to end.
 *
 * The match: the presented key is hashed (SHA-256, GnuTLS) and the digest is
 * compared with every stored digest by auth_digest_equal(), which ORs the
 * byte differences without branching; the index of the match is selected
 * with masks, so the time depends on the number of keys only, not on which
 * key matched or on how many leading bytes agreed. A digest, not the key, is
 * what is compared, so even a timing leak would tell about a hash, not a key.
 *
 * Threads: auth_check() on any HTTP thread; auth_reload() on the loop thread;
 * auth_load()/auth_free() before and after serving.
 */
#include "auth_int.h"

#include <errno.h>
#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct auth {
    pthread_mutex_t lock;
    struct auth_table *table; /* never NULL; under lock */
};

/* ---- hashing and comparing ------------------------------------------------- */

int auth_digest_equal(const uint8_t a[AUTH_DIGEST_LEN], const uint8_t b[AUTH_DIGEST_LEN])
{
    /* volatile: the compiler may not turn the loop into one that exits early. */
    volatile uint8_t diff = 0;
    for (size_t i = 0; i < AUTH_DIGEST_LEN; i++)
        diff = (uint8_t)(diff | (a[i] ^ b[i]));
    /* 1 when diff == 0: (0 - 1) >> 8 has bit 0 set; (1..255 - 1) >> 8 is 0. */
    return (int)((((unsigned)diff - 1u) >> 8) & 1u);
}

static int sha256(const void *data, size_t len, uint8_t out[AUTH_DIGEST_LEN])
{
    return gnutls_hash_fast(GNUTLS_DIG_SHA256, data, len, out) == 0 ? 0 : -EIO;
}

static const char hex_digits[] = "0123456789abcdef";

static void digest_hex(const uint8_t d[AUTH_DIGEST_LEN], char hex[AUTH_HEX_LEN + 1])
{
    for (size_t i = 0; i < AUTH_DIGEST_LEN; i++) {
        hex[2 * i] = hex_digits[d[i] >> 4];
        hex[2 * i + 1] = hex_digits[d[i] & 0x0f];
    }
    hex[AUTH_HEX_LEN] = '\0';
}

int auth_hash_hex(const void *key, size_t len, char hex[AUTH_HEX_LEN + 1])
{
    uint8_t d[AUTH_DIGEST_LEN];
    int err = sha256(key, len, d);
    if (err == 0)
        digest_hex(d, hex);
    explicit_bzero(d, sizeof(d));
    return err;
}

/* ---- the live table ---------------------------------------------------------- */

/* Takes t (its first reference) into a new struct auth; on failure t is the caller's. */
static int auth_new(struct auth_table *t, struct auth **out)
{
    struct auth *a = calloc(1, sizeof(*a));
    if (a == NULL)
        return -ENOMEM;
    int err = pthread_mutex_init(&a->lock, NULL);
    if (err != 0) {
        free(a);
        return -err;
    }
    t->refs = 1;
    a->table = t;
    *out = a;
    return 0;
}

int auth_load_string(const char *text, size_t len, struct auth **out, struct auth_errors *errs)
{
    struct auth_table *t = NULL;
    *out = NULL;
    int err = auth_table_parse(text, len, &t, errs);
    if (err == 0 && (err = auth_new(t, out)) != 0)
        auth_table_free(t);
    return err;
}

int auth_load(const char *path, struct auth **out, struct auth_errors *errs)
{
    struct auth_table *t = NULL;
    *out = NULL;
    int err = auth_table_read(path, &t, errs);
    if (err == 0 && (err = auth_new(t, out)) != 0)
        auth_table_free(t);
    return err;
}

static struct auth_table *table_acquire(struct auth *a)
{
    pthread_mutex_lock(&a->lock);
    struct auth_table *t = a->table;
    t->refs++;
    pthread_mutex_unlock(&a->lock);
    return t;
}

static void table_release(struct auth *a, struct auth_table *t)
{
    pthread_mutex_lock(&a->lock);
    unsigned left = --t->refs;
    pthread_mutex_unlock(&a->lock);
    if (left == 0)
        auth_table_free(t);
}

int auth_reload(struct auth *a, const char *path, struct auth_errors *errs)
{
    struct auth_table *fresh = NULL;
    int err = auth_table_read(path, &fresh, errs);
    if (err != 0)
        return err;
    fresh->refs = 1; /* not yet shared: no lock needed */
    pthread_mutex_lock(&a->lock);
    struct auth_table *old = a->table;
    a->table = fresh;
    pthread_mutex_unlock(&a->lock);
    table_release(a, old);
    return 0;
}

void auth_free(struct auth *a)
{
    if (a == NULL)
        return;
    table_release(a, a->table);
    a->table = NULL;
    pthread_mutex_destroy(&a->lock);
    free(a);
}

size_t auth_key_count(struct auth *a)
{
    struct auth_table *t = table_acquire(a);
    size_t n = t->count;
    table_release(a, t);
    return n;
}

/* ---- the decision ------------------------------------------------------------ */

static int is_visible(unsigned char c) { return c > 0x20 && c < 0x7f; }

/* "Bearer KEY": scheme case-insensitive, one space, 1..AUTH_KEY_MAX visible chars. */
static int bearer_key(const char *h, const char **key, size_t *len)
{
    static const char scheme[] = "Bearer ";
    const size_t sl = sizeof(scheme) - 1;
    if (strncasecmp(h, scheme, sl - 1) != 0 || h[sl - 1] != ' ')
        return -EINVAL;
    const char *k = h + sl;
    size_t n = 0;
    while (k[n] != '\0') {
        if (n >= AUTH_KEY_MAX || !is_visible((unsigned char)k[n]))
            return -EINVAL;
        n++;
    }
    if (n == 0)
        return -EINVAL;
    *key = k;
    *len = n;
    return 0;
}

/* Scans every key of t, without early exit; 1 with *idx set when digest is among them. */
static unsigned table_match(const struct auth_table *t, const uint8_t digest[AUTH_DIGEST_LEN],
                            size_t *idx)
{
    size_t at = 0;
    unsigned found = 0;
    for (size_t i = 0; i < t->count; i++) {
        unsigned eq = (unsigned)auth_digest_equal(digest, t->keys[i].digest);
        size_t mask = (size_t)0 - (size_t)eq;
        found |= eq;
        at = (at & ~mask) | (i & mask);
    }
    *idx = at;
    return found;
}

unsigned auth_check(struct auth *a, const char *authorization, unsigned required, char *client_out,
                    size_t size)
{
    const char *key = NULL;
    size_t klen = 0;
    uint8_t digest[AUTH_DIGEST_LEN];

    if (a == NULL || authorization == NULL || bearer_key(authorization, &key, &klen) != 0)
        return 401;
    if (sha256(key, klen, digest) != 0)
        return 401;

    struct auth_table *t = table_acquire(a);
    size_t idx = 0;
    unsigned found = table_match(t, digest, &idx);
    explicit_bzero(digest, sizeof(digest));

    unsigned code;
    if (!found) {
        code = 401;
    } else if ((t->keys[idx].scopes & required) != required) {
        code = 403;
    } else {
        code = 0;
        if (client_out != NULL && size > 0)
            snprintf(client_out, size, "%s", t->keys[idx].name);
    }
    table_release(a, t);
    return code;
}

unsigned auth_scope_for(enum http_scope scope)
{
    switch (scope) {
    case HTTP_SCOPE_NONE:
        return 0;
    case HTTP_SCOPE_ORDERS_WRITE:
        return AUTH_SCOPE_ORDERS_WRITE;
    case HTTP_SCOPE_ORDERS_READ:
        return AUTH_SCOPE_ORDERS_READ;
    case HTTP_SCOPE_ADMIN:
        return AUTH_SCOPE_ADMIN;
    }
    return ~0u;
}

unsigned auth_http_authorize(void *ctx, const char *authorization, enum http_scope scope,
                             char *client_out, size_t size)
{
    return auth_check(ctx, authorization, auth_scope_for(scope), client_out, size);
}
