/*
 * auth.c — API keys: the keys file, the Bearer header, the constant-time
 * match, the live swap on reload, and `orderd hash-key`.
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
 * What never happens here: a key (or a hash field from the file, in case an
 * operator pasted a key there by mistake) written to a log or an error
 * message. Errors name the line and the rule, and echo a NAME only once it
 * was found valid.
 *
 * Threads: auth_check() on any HTTP thread; auth_reload() on the loop thread;
 * auth_load()/auth_free() before and after serving.
 */
#include "auth.h"

#include <errno.h>
#include <fcntl.h>
#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

struct auth_key {
    uint8_t digest[AUTH_DIGEST_LEN];
    unsigned scopes;
    unsigned line;
    char name[AUTH_NAME_MAX + 1];
};

struct auth_table {
    unsigned refs;                    /* under auth.lock */
    size_t count;
    size_t cap;
    struct auth_key *keys;
};

struct auth {
    pthread_mutex_t lock;
    struct auth_table *table;         /* never NULL; under lock */
};

static const struct {
    const char *name;
    unsigned bit;
} scope_names[] = {
    {"orders:write", AUTH_SCOPE_ORDERS_WRITE},
    {"orders:read", AUTH_SCOPE_ORDERS_READ},
    {"admin", AUTH_SCOPE_ADMIN},
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

/* ---- the keys file ----------------------------------------------------------- */

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

int auth_scopes_parse(const char *s, size_t len, unsigned *out)
{
    unsigned bits = 0;
    size_t start = 0;
    if (len == 0)
        return -EINVAL;
    for (size_t i = 0; i <= len; i++) {
        if (i < len && s[i] != ',')
            continue;
        size_t n = i - start;
        unsigned bit = 0;
        for (size_t k = 0; k < sizeof(scope_names) / sizeof(scope_names[0]); k++)
            if (strlen(scope_names[k].name) == n && memcmp(s + start, scope_names[k].name, n) == 0)
                bit = scope_names[k].bit;
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
        unsigned bit = 0;
        for (size_t k = 0; k < sizeof(scope_names) / sizeof(scope_names[0]); k++)
            if (strlen(scope_names[k].name) == n && memcmp(tok, scope_names[k].name, n) == 0)
                bit = scope_names[k].bit;
        if (n == 0)
            add_error(errs, line, "empty scope in the scope list (stray comma)");
        else if (bit == 0 && echoable(tok, n))
            add_error(errs, line, "unknown scope \"%.*s\" (scopes: orders:write, orders:read, admin)",
                      (int)n, tok);
        else if (bit == 0)
            add_error(errs, line, "unknown scope (scopes: orders:write, orders:read, admin)");
        else if (bits & bit)
            add_error(errs, line, "scope \"%.*s\" listed twice", (int)n, tok);
        bits |= bit;
        start = i + 1;
    }
}

struct field {
    const char *s;
    size_t len;
};

static void table_free(struct auth_table *t)
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

/* Checks one split line and appends its key. 0, -EINVAL (reported) or -ENOMEM. */
static int add_key(struct auth_table *t, const struct field f[3], unsigned line,
                   struct auth_errors *errs)
{
    struct auth_key k = {.line = line};
    int bad = 0;

    if (!name_valid(f[0].s, f[0].len)) {
        add_error(errs, line, "name must be 1 to %d characters from A-Z a-z 0-9 _ . -",
                  AUTH_NAME_MAX);
        bad = 1;
    } else {
        memcpy(k.name, f[0].s, f[0].len);
        k.name[f[0].len] = '\0';
    }
    if (auth_scopes_parse(f[1].s, f[1].len, &k.scopes) != 0) {
        report_scopes(errs, line, f[1].s, f[1].len);
        bad = 1;
    }
    int hash_ok = hex_decode(f[2].s, f[2].len, k.digest) == 0;
    if (!hash_ok) {
        /* Never echoed: it might be a key pasted by mistake. */
        add_error(errs, line,
                  "hash must be %d hex digits, the SHA-256 of the key (see orderd hash-key)",
                  AUTH_HEX_LEN);
        bad = 1;
    }
    for (size_t i = 0; i < t->count; i++) {
        if (k.name[0] != '\0' && strcmp(t->keys[i].name, k.name) == 0) {
            add_error(errs, line, "name \"%s\" already used on line %u", k.name, t->keys[i].line);
            bad = 1;
        }
        if (hash_ok && memcmp(t->keys[i].digest, k.digest, AUTH_DIGEST_LEN) == 0) {
            add_error(errs, line, "same hash as \"%s\" on line %u (one key, two names)",
                      t->keys[i].name, t->keys[i].line);
            bad = 1;
        }
    }
    if (bad)
        return -EINVAL;
    if (t->count >= AUTH_KEYS_MAX) {
        add_error(errs, line, "more than %d keys", AUTH_KEYS_MAX);
        return -EINVAL;
    }
    if (t->count == t->cap) {
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
    }
    t->keys[t->count++] = k;
    return 0;
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
    if (nf == 0)
        return 0;
    if (nf != 3) {
        add_error(errs, line, "expected NAME SCOPES SHA256HEX, found %zu field%s", nf,
                  nf == 1 ? "" : "s");
        return -EINVAL;
    }
    return add_key(t, f, line, errs);
}

/* Builds a table from text[0..len). 0 with *out, -EINVAL, or -ENOMEM. */
static int parse_text(const char *text, size_t len, struct auth_table **out,
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
    t->refs = 1;
    int bad = 0;
    unsigned line = 0;
    size_t pos = 0;
    while (pos < len) {
        const char *nl = memchr(text + pos, '\n', len - pos);
        size_t end = nl ? (size_t)(nl - text) : len;
        int err = parse_line(t, text + pos, end - pos, ++line, errs);
        if (err == -ENOMEM) {
            table_free(t);
            return -ENOMEM;
        }
        if (err != 0)
            bad = 1;
        pos = end + 1;
    }
    if (bad) {
        table_free(t);
        return -EINVAL;
    }
    *out = t;
    return 0;
}

/* Reads and parses path. 0 with *out, -EINVAL or -errno (reported). */
static int read_table(const char *path, struct auth_table **out, struct auth_errors *errs)
{
    *out = NULL;
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
    char *buf = malloc(AUTH_FILE_BYTES_MAX + 1);
    if (buf == NULL) {
        close(fd);
        return -ENOMEM;
    }
    size_t len = 0;
    for (;;) {
        ssize_t n = read(fd, buf + len, AUTH_FILE_BYTES_MAX + 1 - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            int err = errno;
            close(fd);
            free(buf);
            add_error(errs, 0, "cannot read: %s", strerror(err));
            return -err;
        }
        if (n == 0)
            break;
        len += (size_t)n;
        if (len > AUTH_FILE_BYTES_MAX)
            break;
    }
    close(fd);
    int err = parse_text(buf, len, out, errs);
    free(buf);
    return err;
}

/* ---- the live table ---------------------------------------------------------- */

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
    a->table = t;
    *out = a;
    return 0;
}

int auth_load_string(const char *text, size_t len, struct auth **out, struct auth_errors *errs)
{
    struct auth_table *t = NULL;
    *out = NULL;
    int err = parse_text(text, len, &t, errs);
    if (err == 0 && (err = auth_new(t, out)) != 0)
        table_free(t);
    return err;
}

int auth_load(const char *path, struct auth **out, struct auth_errors *errs)
{
    struct auth_table *t = NULL;
    *out = NULL;
    int err = read_table(path, &t, errs);
    if (err == 0 && (err = auth_new(t, out)) != 0)
        table_free(t);
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
        table_free(t);
}

int auth_reload(struct auth *a, const char *path, struct auth_errors *errs)
{
    struct auth_table *fresh = NULL;
    int err = read_table(path, &fresh, errs);
    if (err != 0)
        return err;
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

unsigned auth_check(struct auth *a, const char *authorization, unsigned required,
                    char *client_out, size_t size)
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
    unsigned found = 0;
    for (size_t i = 0; i < t->count; i++) {
        unsigned eq = (unsigned)auth_digest_equal(digest, t->keys[i].digest);
        size_t mask = (size_t)0 - (size_t)eq;
        found |= eq;
        idx = (idx & ~mask) | (i & mask);
    }
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
    case HTTP_SCOPE_NONE: return 0;
    case HTTP_SCOPE_ORDERS_WRITE: return AUTH_SCOPE_ORDERS_WRITE;
    case HTTP_SCOPE_ORDERS_READ: return AUTH_SCOPE_ORDERS_READ;
    case HTTP_SCOPE_ADMIN: return AUTH_SCOPE_ADMIN;
    }
    return ~0u;
}

unsigned auth_http_authorize(void *ctx, const char *authorization, enum http_scope scope,
                             char *client_out, size_t size)
{
    return auth_check(ctx, authorization, auth_scope_for(scope), client_out, size);
}

/* ---- orderd hash-key ------------------------------------------------------- */

static int write_all(int fd, const char *s, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, s, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        s += n;
        len -= (size_t)n;
    }
    return 0;
}

/*
 * Reads up to cap bytes into buf: to EOF, or to the first newline from a
 * terminal. *len = bytes read; *more = input went on past cap. 0 or -errno.
 */
static int read_key(int fd, char *buf, size_t cap, int tty, size_t *len, int *more)
{
    *len = 0;
    *more = 0;
    for (;;) {
        char c;
        ssize_t n = read(fd, &c, 1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        if (n == 0)
            break;
        if (*len == cap) {
            *more = 1;
            break;
        }
        buf[(*len)++] = c;
        c = 0;
        if (tty && buf[*len - 1] == '\n')
            break;
    }
    return 0;
}

int auth_hash_key_fd(int in_fd, int out_fd)
{
    char buf[AUTH_KEY_MAX + 2];       /* the key, its newline, one byte to see "too long" */
    char hex[AUTH_HEX_LEN + 2];
    struct termios saved;
    int tty = isatty(in_fd) && tcgetattr(in_fd, &saved) == 0;
    size_t len = 0;
    int more = 0, err;

    if (tty) {
        struct termios quiet = saved;
        quiet.c_lflag &= ~(tcflag_t)ECHO;
        tcsetattr(in_fd, TCSAFLUSH, &quiet);
        fputs("API key (not echoed): ", stderr);
        fflush(stderr);
    }
    err = read_key(in_fd, buf, sizeof(buf), tty, &len, &more);
    if (tty) {
        tcsetattr(in_fd, TCSAFLUSH, &saved);
        fputs("\n", stderr);
    }
    if (err != 0) {
        fprintf(stderr, "orderd: hash-key: cannot read the key: %s\n", strerror(-err));
        goto out;
    }
    if (len > 0 && buf[len - 1] == '\n')
        len--;
    err = -EINVAL;
    if (len == 0) {
        fprintf(stderr, "orderd: hash-key: empty key\n");
        goto out;
    }
    if (more || len > AUTH_KEY_MAX) {
        fprintf(stderr, "orderd: hash-key: key longer than %d characters\n", AUTH_KEY_MAX);
        goto out;
    }
    for (size_t i = 0; i < len; i++) {
        if (!is_visible((unsigned char)buf[i])) {
            fprintf(stderr,
                    "orderd: hash-key: character %zu of the key is not visible ASCII "
                    "(a client could never send it in a Bearer header)\n",
                    i + 1);
            goto out;
        }
    }
    if ((err = auth_hash_hex(buf, len, hex)) != 0) {
        fprintf(stderr, "orderd: hash-key: SHA-256 failed\n");
        goto out;
    }
    hex[AUTH_HEX_LEN] = '\n';
    if ((err = write_all(out_fd, hex, AUTH_HEX_LEN + 1)) != 0)
        fprintf(stderr, "orderd: hash-key: cannot write: %s\n", strerror(-err));
out:
    explicit_bzero(buf, sizeof(buf));
    explicit_bzero(hex, sizeof(hex));
    return err;
}

int auth_hash_key_stdin(void) { return auth_hash_key_fd(STDIN_FILENO, STDOUT_FILENO); }
