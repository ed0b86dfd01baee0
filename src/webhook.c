/*
 * webhook.c — Standard Webhooks signing (see webhook.h): the secrets file and
 * the `webhook-signature` header value.
 *
 * Owns struct webhook_secrets: up to WEBHOOK_SECRETS_MAX decoded keys in one
 * fixed-size allocation, written only by webhook_secrets_load() and wiped by
 * webhook_secrets_free(). webhook_sign() only reads it and keeps its state per
 * call (a GnuTLS HMAC handle per signature, the rest on its stack), so any
 * number of threads sign at once with no lock.
 *
 * All cryptography is GnuTLS's: base64 (gnutls_base64_decode2/encode2) and
 * HMAC-SHA256, fed in parts (gnutls_hmac_init/gnutls_hmac/gnutls_hmac_deinit:
 * the same HMAC as gnutls_hmac_fast, without copying the body into one
 * buffer with the id and timestamp). What is checked here is only the shape
 * of a secret: the `whsec_` prefix and the base64 alphabet (so that GnuTLS's
 * decoder, which skips blanks and newlines, never joins two words into a key).
 *
 * Key material this file holds is wiped before it is freed: the file's text,
 * GnuTLS's decoded copy, the set itself. Errors name a line and a rule, never a line's content.
 *
 * Threads: webhook_sign()/webhook_secrets_count() on any thread;
 * webhook_secrets_load() on any thread (it shares nothing);
 * webhook_secrets_free() once no thread uses the set.
 */
#include "webhook.h"

#include <errno.h>
#include <fcntl.h>
#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define DIGEST_LEN 32 /* HMAC-SHA256 */
#define PREFIX_LEN (sizeof(WEBHOOK_SECRET_PREFIX) - 1)
/* base64 of WEBHOOK_KEY_MAX bytes, with padding */
#define KEY_B64_MAX (((WEBHOOK_KEY_MAX + 2) / 3) * 4)

struct webhook_key {
    size_t len;
    uint8_t bytes[WEBHOOK_KEY_MAX];
};

struct webhook_secrets {
    size_t count;
    struct webhook_key keys[WEBHOOK_SECRETS_MAX];
};

struct span {
    const void *p;
    size_t len;
};

static void set_error(char *error, size_t size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_error(char *error, size_t size, const char *fmt, ...)
{
    if (error == NULL || size == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(error, size, fmt, ap);
    va_end(ap);
}

/* ---- the secrets file -------------------------------------------------------- */

static int is_blank(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f'; }

static int is_base64(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' ||
           c == '/' || c == '=';
}

/* s[0..len) without blanks at either end. */
static struct span trim(const char *s, size_t len)
{
    while (len > 0 && is_blank(s[0])) {
        s++;
        len--;
    }
    while (len > 0 && is_blank(s[len - 1]))
        len--;
    return (struct span){s, len};
}

/* Base64 b64[0..len) into k. 0, -EINVAL (reported), -ENOMEM. */
static int decode_key(const char *b64, size_t len, struct webhook_key *k, unsigned line,
                      char *error, size_t error_size)
{
    gnutls_datum_t in = {(unsigned char *)(uintptr_t)b64, (unsigned)len}, raw = {NULL, 0};
    int rc = gnutls_base64_decode2(&in, &raw);
    if (rc == GNUTLS_E_MEMORY_ERROR)
        return -ENOMEM;
    int err = 0;
    if (rc < 0) {
        set_error(error, error_size,
                  "line %u: the key after " WEBHOOK_SECRET_PREFIX
                  " is not valid base64 (standard alphabet, with padding)",
                  line);
        err = -EINVAL;
    } else if (raw.size < 1 || raw.size > WEBHOOK_KEY_MAX) {
        set_error(error, error_size, "line %u: the key must decode to 1 to %d bytes, not %u", line,
                  WEBHOOK_KEY_MAX, raw.size);
        err = -EINVAL;
    } else {
        memcpy(k->bytes, raw.data, raw.size);
        k->len = raw.size;
    }
    if (raw.data != NULL) {
        explicit_bzero(raw.data, raw.size);
        gnutls_free(raw.data);
    }
    return err;
}

/* One trimmed, non-empty, non-comment line into k. 0, -EINVAL (reported), -ENOMEM. */
static int parse_secret(struct span s, struct webhook_key *k, unsigned line, char *error,
                        size_t error_size)
{
    const char *text = s.p;
    if (s.len < PREFIX_LEN || memcmp(text, WEBHOOK_SECRET_PREFIX, PREFIX_LEN) != 0) {
        set_error(error, error_size, "line %u: a secret must start with " WEBHOOK_SECRET_PREFIX,
                  line);
        return -EINVAL;
    }
    const char *b64 = text + PREFIX_LEN;
    size_t len = s.len - PREFIX_LEN;
    if (len == 0) {
        set_error(error, error_size, "line %u: no key after " WEBHOOK_SECRET_PREFIX, line);
        return -EINVAL;
    }
    for (size_t i = 0; i < len; i++) {
        if (!is_base64(b64[i])) {
            set_error(error, error_size,
                      "line %u: character %zu of the secret is not base64 (A-Z a-z 0-9 + / =)",
                      line, PREFIX_LEN + i + 1);
            return -EINVAL;
        }
    }
    if (len > KEY_B64_MAX) {
        set_error(error, error_size, "line %u: the key is longer than %d bytes", line,
                  WEBHOOK_KEY_MAX);
        return -EINVAL;
    }
    return decode_key(b64, len, k, line, error, error_size);
}

/* One line without its '\n' into s (unless blank or a comment). 0, -EINVAL, -ENOMEM. */
static int parse_line(struct webhook_secrets *s, const char *text, size_t len, unsigned line,
                      char *error, size_t error_size)
{
    struct span t = trim(text, len);
    if (t.len == 0 || ((const char *)t.p)[0] == '#')
        return 0;
    if (s->count == WEBHOOK_SECRETS_MAX) {
        set_error(error, error_size, "line %u: more than %d secrets", line, WEBHOOK_SECRETS_MAX);
        return -EINVAL;
    }
    int err = parse_secret(t, &s->keys[s->count], line, error, error_size);
    if (err == 0)
        s->count++;
    return err;
}

/* Fills s from text[0..len). 0, -EINVAL, -ENOMEM (error set). */
static int parse_text(struct webhook_secrets *s, const char *text, size_t len, char *error,
                      size_t error_size)
{
    unsigned line = 0;
    size_t pos = 0;
    while (pos < len) {
        const char *nl = memchr(text + pos, '\n', len - pos);
        size_t end = nl != NULL ? (size_t)(nl - text) : len;
        int err = parse_line(s, text + pos, end - pos, ++line, error, error_size);
        if (err == -ENOMEM)
            set_error(error, error_size, "line %u: out of memory", line);
        if (err != 0)
            return err;
        pos = end + 1;
    }
    if (s->count == 0) {
        set_error(error, error_size,
                  "no secret in the file (one " WEBHOOK_SECRET_PREFIX "... a line is needed)");
        return -EINVAL;
    }
    return 0;
}

/* Reads all of fd into buf (WEBHOOK_FILE_BYTES_MAX + 1 bytes). 0 or -errno / -EFBIG. */
static int read_all(int fd, char *buf, size_t *len, char *error, size_t error_size)
{
    *len = 0;
    for (;;) {
        ssize_t n = read(fd, buf + *len, WEBHOOK_FILE_BYTES_MAX + 1 - *len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            int err = errno;
            set_error(error, error_size, "cannot read: %s", strerror(err));
            return -err;
        }
        if (n == 0)
            return 0;
        *len += (size_t)n;
        if (*len > WEBHOOK_FILE_BYTES_MAX) {
            set_error(error, error_size, "larger than %d bytes", WEBHOOK_FILE_BYTES_MAX);
            return -EFBIG;
        }
    }
}

/* Opens path and checks it is a regular file of a sane size. fd or -errno / -EINVAL / -EFBIG. */
static int open_file(const char *path, char *error, size_t error_size)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        int err = errno;
        set_error(error, error_size, "cannot open: %s", strerror(err));
        return -err;
    }
    struct stat st;
    int err = 0;
    if (fstat(fd, &st) != 0) {
        err = -errno;
        set_error(error, error_size, "cannot stat: %s", strerror(-err));
    } else if (!S_ISREG(st.st_mode)) {
        err = -EINVAL;
        set_error(error, error_size, "not a regular file");
    } else if (st.st_size > WEBHOOK_FILE_BYTES_MAX) {
        err = -EFBIG;
        set_error(error, error_size, "larger than %d bytes", WEBHOOK_FILE_BYTES_MAX);
    }
    if (err != 0) {
        close(fd);
        return err;
    }
    return fd;
}

void webhook_secrets_free(struct webhook_secrets *s)
{
    if (s == NULL)
        return;
    explicit_bzero(s, sizeof(*s));
    free(s);
}

int webhook_secrets_load(const char *path, struct webhook_secrets **out, char *error,
                         size_t error_size)
{
    *out = NULL;
    set_error(error, error_size, "%s", "");
    int fd = open_file(path, error, error_size);
    if (fd < 0)
        return fd;
    char *buf = malloc(WEBHOOK_FILE_BYTES_MAX + 1);
    struct webhook_secrets *s = calloc(1, sizeof(*s));
    size_t len = 0;
    int err = buf == NULL || s == NULL ? -ENOMEM : read_all(fd, buf, &len, error, error_size);
    if (err == -ENOMEM)
        set_error(error, error_size, "out of memory");
    close(fd);
    if (err == 0)
        err = parse_text(s, buf, len, error, error_size);
    if (buf != NULL) {
        explicit_bzero(buf, len);
        free(buf);
    }
    if (err != 0) {
        webhook_secrets_free(s);
        return err;
    }
    *out = s;
    return 0;
}

size_t webhook_secrets_count(const struct webhook_secrets *s) { return s != NULL ? s->count : 0; }

/* ---- signing ------------------------------------------------------------------ */

/* HMAC-SHA256 with k over the concatenation of parts[0..n). 0 or -EIO. */
static int hmac_sha256(const struct webhook_key *k, const struct span *parts, size_t n,
                       uint8_t digest[DIGEST_LEN])
{
    gnutls_hmac_hd_t h;
    if (gnutls_hmac_init(&h, GNUTLS_MAC_SHA256, k->bytes, k->len) < 0)
        return -EIO;
    for (size_t i = 0; i < n; i++) {
        if (parts[i].len > 0 && gnutls_hmac(h, parts[i].p, parts[i].len) < 0) {
            gnutls_hmac_deinit(h, NULL);
            return -EIO;
        }
    }
    gnutls_hmac_deinit(h, digest);
    return 0;
}

/* "v1,BASE64" of one key's HMAC over parts into dst, NUL-terminated. 0, -EIO, -ENOMEM. */
static int sign_one(const struct webhook_key *k, const struct span *parts, size_t n,
                    char dst[WEBHOOK_SIG_LEN + 1])
{
    uint8_t digest[DIGEST_LEN];
    int err = hmac_sha256(k, parts, n, digest);
    if (err != 0)
        return err;
    gnutls_datum_t raw = {digest, DIGEST_LEN}, b64 = {NULL, 0};
    int rc = gnutls_base64_encode2(&raw, &b64);
    if (rc == GNUTLS_E_MEMORY_ERROR)
        err = -ENOMEM;
    else if (rc < 0 || b64.size != WEBHOOK_SIG_LEN - 3)
        err = -EIO;
    if (err == 0) {
        memcpy(dst, "v1,", 3);
        memcpy(dst + 3, b64.data, b64.size);
        dst[WEBHOOK_SIG_LEN] = '\0';
    }
    gnutls_free(b64.data);
    return err;
}

int webhook_sign(const struct webhook_secrets *s, const char *msg_id, int64_t timestamp,
                 const char *body, size_t body_len, char *out, size_t out_size)
{
    if (out != NULL && out_size > 0)
        out[0] = '\0';
    if (s == NULL || s->count == 0 || msg_id == NULL || msg_id[0] == '\0' || timestamp < 0 ||
        (body == NULL && body_len > 0) || out == NULL)
        return -EINVAL;
    if (out_size < s->count * (WEBHOOK_SIG_LEN + 1))
        return -ENOSPC;

    char ts[24];
    int ts_len = snprintf(ts, sizeof(ts), "%" PRId64, timestamp);
    if (ts_len < 0 || (size_t)ts_len >= sizeof(ts))
        return -EINVAL;
    const struct span parts[] = {
        {msg_id, strlen(msg_id)}, {".", 1}, {ts, (size_t)ts_len}, {".", 1}, {body, body_len},
    };
    char *p = out;
    for (size_t i = 0; i < s->count; i++) {
        if (i > 0)
            *p++ = ' ';
        int err = sign_one(&s->keys[i], parts, sizeof(parts) / sizeof(parts[0]), p);
        if (err != 0) {
            out[0] = '\0';
            return err;
        }
        p += WEBHOOK_SIG_LEN;
    }
    return 0;
}
