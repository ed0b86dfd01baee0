/*
 * auth_keys_file.c — the keys file (format in include/auth.h): reads it,
 * checks every line, reports each error with its line (struct auth_errors,
 * auth_errors_print), parses scope lists, and builds the immutable key table
 * (src/auth_int.h) that auth.c serves from.
 *
 * What never happens here: a key (or a hash field from the file, in case an
 * operator pasted a key there by mistake) written to a log or an error
 * message. Errors name the line and the rule, and echo a NAME only once it
 * was found valid.
 *
 * Threads: no state of its own; whichever thread loads the file runs it
 * (main thread at start and for --check-config, loop thread on reload), with
 * no lock held.
 */
#include "auth_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const struct {
    const char *name;
    unsigned bit;
} scope_names[] = {
    {"orders:write", AUTH_SCOPE_ORDERS_WRITE},
    {"orders:read", AUTH_SCOPE_ORDERS_READ},
    {"admin", AUTH_SCOPE_ADMIN},
};

struct field {
    const char *s;
    size_t len;
};

/* ---- errors ------------------------------------------------------------------ */

static void add_error(struct auth_errors *errs, unsigned line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void add_error(struct auth_errors *errs, unsigned line, const char *fmt, ...)
{
    if (errs == NULL)
        return;
    if (errs->count >= AUTH_ERRORS_MAX) {
        errs->dropped++;
        return;
    }
    struct auth_error *e = &errs->items[errs->count++];
    e->line = line;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof(e->message), fmt, ap);
    va_end(ap);
}

void auth_errors_print(const struct auth_errors *errs, const char *path, void *stream)
{
    FILE *f = stream;
    if (errs == NULL || f == NULL)
        return;
    if (path == NULL)
        path = "keys file";
    for (size_t i = 0; i < errs->count; i++) {
        if (errs->items[i].line > 0)
            fprintf(f, "%s:%u: %s\n", path, errs->items[i].line, errs->items[i].message);
        else
            fprintf(f, "%s: %s\n", path, errs->items[i].message);
    }
    if (errs->dropped > 0)
        fprintf(f, "%s: %zu more errors not shown\n", path, errs->dropped);
}

/* ---- fields ------------------------------------------------------------------ */

static int is_visible(unsigned char c) { return c > 0x20 && c < 0x7f; }

static int is_blank(char c) { return c == ' ' || c == '\t' || c == '\r'; }

static int name_valid(const char *s, size_t len)
{
    if (len < 1 || len > AUTH_NAME_MAX)
        return 0;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '.' || c == '-'))
            return 0;
    }
    return 1;
}

/* A field is echoed in an error only when short and printable. */
static int echoable(const char *s, size_t len)
{
    if (len > 32)
        return 0;
    for (size_t i = 0; i < len; i++)
        if (!is_visible((unsigned char)s[i]))
            return 0;
    return 1;
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* s[0..len) must be exactly AUTH_HEX_LEN hex digits. 0 or -EINVAL. */
static int hex_decode(const char *s, size_t len, uint8_t out[AUTH_DIGEST_LEN])
{
    if (len != AUTH_HEX_LEN)
        return -EINVAL;
    for (size_t i = 0; i < AUTH_DIGEST_LEN; i++) {
        int hi = hex_value(s[2 * i]), lo = hex_value(s[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return -EINVAL;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return 0;
}

/* ---- scopes ------------------------------------------------------------------ */

/* The bit of the scope named s[0..n), or 0 when no scope has that name. */
static unsigned scope_bit(const char *s, size_t n)
{
    for (size_t k = 0; k < sizeof(scope_names) / sizeof(scope_names[0]); k++)
        if (strlen(scope_names[k].name) == n && memcmp(s, scope_names[k].name, n) == 0)
            return scope_names[k].bit;
    return 0;
}

int auth_scopes_parse(const char *s, size_t len, unsigned *out)
{
    unsigned bits = 0;
    size_t start = 0;
    if (len == 0)
        return -EINVAL;
    for (size_t i = 0; i <= len; i++) {
        if (i < len && s[i] != ',')
            continue;
        unsigned bit = scope_bit(s + start, i - start);
        if (bit == 0 || (bits & bit) != 0)
            return -EINVAL;
        bits |= bit;
        start = i + 1;
    }
    *out = bits;
    return 0;
}

/* Reports each bad scope of s[0..len) with its reason. */
static void report_scopes(struct auth_errors *errs, unsigned line, const char *s, size_t len)
{
    unsigned bits = 0;
    size_t start = 0;
    for (size_t i = 0; i <= len; i++) {
        if (i < len && s[i] != ',')
            continue;
        const char *tok = s + start;
        size_t n = i - start;
        unsigned bit = scope_bit(tok, n);
        if (n == 0)
            add_error(errs, line, "empty scope in the scope list (stray comma)");
        else if (bit == 0 && echoable(tok, n))
            add_error(errs, line,
                      "unknown scope \"%.*s\" (scopes: orders:write, orders:read, admin)", (int)n,
                      tok);
        else if (bit == 0)
            add_error(errs, line, "unknown scope (scopes: orders:write, orders:read, admin)");
        else if (bits & bit)
            add_error(errs, line, "scope \"%.*s\" listed twice", (int)n, tok);
        bits |= bit;
        start = i + 1;
    }
}

/* ---- the table --------------------------------------------------------------- */

void auth_table_free(struct auth_table *t)
{
    if (t == NULL)
        return;
    if (t->keys != NULL) {
        explicit_bzero(t->keys, t->cap * sizeof(*t->keys));
        free(t->keys);
        t->keys = NULL;
    }
    free(t);
}

/* Fills k from NAME SCOPES SHA256HEX; *hash_ok says whether k->digest is set. 0 or -EINVAL
 * (reported). */
static int key_from_fields(struct auth_key *k, const struct field f[3], unsigned line,
                           struct auth_errors *errs, int *hash_ok)
{
    int bad = 0;
    if (!name_valid(f[0].s, f[0].len)) {
        add_error(errs, line, "name must be 1 to %d characters from A-Z a-z 0-9 _ . -",
                  AUTH_NAME_MAX);
        bad = 1;
    } else {
        memcpy(k->name, f[0].s, f[0].len);
        k->name[f[0].len] = '\0';
    }
    if (auth_scopes_parse(f[1].s, f[1].len, &k->scopes) != 0) {
        report_scopes(errs, line, f[1].s, f[1].len);
        bad = 1;
    }
    *hash_ok = hex_decode(f[2].s, f[2].len, k->digest) == 0;
    if (!*hash_ok) {
        /* Never echoed: it might be a key pasted by mistake. */
        add_error(errs, line,
                  "hash must be %d hex digits, the SHA-256 of the key (see orderd hash-key)",
                  AUTH_HEX_LEN);
        bad = 1;
    }
    return bad ? -EINVAL : 0;
}

/* Reports a name or a hash of k that an earlier line already has. 0 or -EINVAL. */
static int check_duplicates(const struct auth_table *t, const struct auth_key *k, int hash_ok,
                            struct auth_errors *errs)
{
    int bad = 0;
    for (size_t i = 0; i < t->count; i++) {
        if (k->name[0] != '\0' && strcmp(t->keys[i].name, k->name) == 0) {
            add_error(errs, k->line, "name \"%s\" already used on line %u", k->name,
                      t->keys[i].line);
            bad = 1;
        }
        if (hash_ok && memcmp(t->keys[i].digest, k->digest, AUTH_DIGEST_LEN) == 0) {
            add_error(errs, k->line, "same hash as \"%s\" on line %u (one key, two names)",
                      t->keys[i].name, t->keys[i].line);
            bad = 1;
        }
    }
    return bad ? -EINVAL : 0;
}

/* Old arrays are wiped before they are freed: they hold digests. 0 or -ENOMEM. */
static int table_grow(struct auth_table *t)
{
    size_t cap = t->cap ? 2 * t->cap : 16;
    struct auth_key *keys = calloc(cap, sizeof(*keys));
    if (keys == NULL)
        return -ENOMEM;
    if (t->count > 0)
        memcpy(keys, t->keys, t->count * sizeof(*keys));
    if (t->keys != NULL) {
        explicit_bzero(t->keys, t->cap * sizeof(*t->keys));
        free(t->keys);
    }
    t->keys = keys;
    t->cap = cap;
    return 0;
}

/* Checks one split line and appends its key. 0, -EINVAL (reported) or -ENOMEM. */
static int add_key(struct auth_table *t, const struct field f[3], unsigned line,
                   struct auth_errors *errs)
{
    struct auth_key k = {.line = line};
    int hash_ok = 0;
    int bad = key_from_fields(&k, f, line, errs, &hash_ok) != 0;
    bad |= check_duplicates(t, &k, hash_ok, errs) != 0;
    if (bad)
        return -EINVAL;
    if (t->count >= AUTH_KEYS_MAX) {
        add_error(errs, line, "more than %d keys", AUTH_KEYS_MAX);
        return -EINVAL;
    }
    if (t->count == t->cap && table_grow(t) != 0)
        return -ENOMEM;
    t->keys[t->count++] = k;
    return 0;
}

/* Splits s[0..len) at blanks into up to 3 fields; returns how many there are. */
static size_t split_fields(const char *s, size_t len, struct field f[3])
{
    size_t nf = 0, i = 0;
    while (i < len) {
        while (i < len && is_blank(s[i]))
            i++;
        if (i == len)
            break;
        size_t start = i;
        while (i < len && !is_blank(s[i]))
            i++;
        if (nf < 3)
            f[nf] = (struct field){s + start, i - start};
        nf++;
    }
    return nf;
}

/* One line without its '\n'. 0, -EINVAL (reported) or -ENOMEM. */
static int parse_line(struct auth_table *t, const char *s, size_t len, unsigned line,
                      struct auth_errors *errs)
{
    if (memchr(s, '\0', len) != NULL) {
        add_error(errs, line, "line contains a NUL byte");
        return -EINVAL;
    }
    if (len > AUTH_LINE_MAX) {
        add_error(errs, line, "line longer than %d bytes", AUTH_LINE_MAX);
        return -EINVAL;
    }
    const char *hash = memchr(s, '#', len);
    if (hash != NULL)
        len = (size_t)(hash - s);

    struct field f[3];
    size_t nf = split_fields(s, len, f);
    if (nf == 0)
        return 0;
    if (nf != 3) {
        add_error(errs, line, "expected NAME SCOPES SHA256HEX, found %zu field%s", nf,
                  nf == 1 ? "" : "s");
        return -EINVAL;
    }
    return add_key(t, f, line, errs);
}

int auth_table_parse(const char *text, size_t len, struct auth_table **out,
                     struct auth_errors *errs)
{
    *out = NULL;
    if (len > AUTH_FILE_BYTES_MAX) {
        add_error(errs, 0, "larger than %d bytes", AUTH_FILE_BYTES_MAX);
        return -EINVAL;
    }
    struct auth_table *t = calloc(1, sizeof(*t));
    if (t == NULL)
        return -ENOMEM;
    int bad = 0;
    unsigned line = 0;
    size_t pos = 0;
    while (pos < len) {
        const char *nl = memchr(text + pos, '\n', len - pos);
        size_t end = nl ? (size_t)(nl - text) : len;
        int err = parse_line(t, text + pos, end - pos, ++line, errs);
        if (err == -ENOMEM) {
            auth_table_free(t);
            return -ENOMEM;
        }
        if (err != 0)
            bad = 1;
        pos = end + 1;
    }
    if (bad) {
        auth_table_free(t);
        return -EINVAL;
    }
    *out = t;
    return 0;
}

/* ---- the file ---------------------------------------------------------------- */

/* Opens path if it is a file the keys may come from. The fd, or -EINVAL / -errno (reported). */
static int open_checked(const char *path, struct auth_errors *errs)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        int err = errno;
        add_error(errs, 0, "cannot open: %s", strerror(err));
        return -err;
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int err = errno;
        close(fd);
        add_error(errs, 0, "cannot stat: %s", strerror(err));
        return -err;
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        add_error(errs, 0, "not a regular file");
        return -EINVAL;
    }
    if (st.st_mode & S_IWOTH) {
        /* Whoever may write the file may let themselves in. */
        close(fd);
        add_error(errs, 0, "writable by other users (mode %04o); chmod o-w it",
                  (unsigned)(st.st_mode & 07777));
        return -EINVAL;
    }
    if (st.st_size > AUTH_FILE_BYTES_MAX) {
        close(fd);
        add_error(errs, 0, "larger than %d bytes", AUTH_FILE_BYTES_MAX);
        return -EINVAL;
    }
    return fd;
}

/* Reads fd to its end or to one byte past AUTH_FILE_BYTES_MAX (so that parsing refuses it).
 * 0 with *len, or -errno (reported). */
static int read_bounded(int fd, char *buf, size_t *len, struct auth_errors *errs)
{
    *len = 0;
    for (;;) {
        ssize_t n = read(fd, buf + *len, AUTH_FILE_BYTES_MAX + 1 - *len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            int err = errno;
            add_error(errs, 0, "cannot read: %s", strerror(err));
            return -err;
        }
        if (n == 0)
            return 0;
        *len += (size_t)n;
        if (*len > AUTH_FILE_BYTES_MAX)
            return 0;
    }
}

int auth_table_read(const char *path, struct auth_table **out, struct auth_errors *errs)
{
    *out = NULL;
    int fd = open_checked(path, errs);
    if (fd < 0)
        return fd;
    char *buf = malloc(AUTH_FILE_BYTES_MAX + 1);
    if (buf == NULL) {
        close(fd);
        return -ENOMEM;
    }
    size_t len = 0;
    int err = read_bounded(fd, buf, &len, errs);
    close(fd);
    if (err == 0)
        err = auth_table_parse(buf, len, out, errs);
    free(buf);
    return err;
}
