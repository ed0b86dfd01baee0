/*
 * webhook.h — Standard Webhooks signatures (https://www.standardwebhooks.com)
 * for the HTTP requests orderd sends to a fulfilment service (issue 18).
 *
 * The secrets file holds one secret a line, `whsec_` followed by the key in
 * base64 (standard alphabet, with padding). Surrounding blanks and a '\r' are
 * trimmed; blank lines and lines whose first non-blank character is '#' are
 * skipped (a '#' after a secret is not a comment: it makes the line invalid).
 * The key is the base64-DECODED bytes. Standard Webhooks secrets are 24 to 64
 * bytes; any length from 1 to WEBHOOK_KEY_MAX is accepted here, so a short
 * secret is the operator's choice. Several secrets (1 to WEBHOOK_SECRETS_MAX)
 * are for a rotation: every request is signed with each, in file order, so a
 * receiver that knows any one of them accepts it. The file holds keys: it
 * should be mode 0600 or 0640; the mode is not checked.
 *
 * The signature: HMAC-SHA256 over `ID.TIMESTAMP.BODY` (the webhook-id, a dot,
 * the decimal Unix timestamp in seconds, a dot, the raw body bytes), base64,
 * prefixed `v1,`. The `webhook-signature` header value is these, one per
 * secret, separated by single spaces.
 *
 * Errors never echo a secret or any part of a line that may hold one; they
 * name the line.
 *
 * Threads: a struct webhook_secrets is immutable once loaded, so
 * webhook_sign() and webhook_secrets_count() run on any number of threads at
 * once. webhook_secrets_free() runs when no thread uses the set any more.
 */
#ifndef ORDERD_WEBHOOK_H
#define ORDERD_WEBHOOK_H

#include <stddef.h>
#include <stdint.h>

#define WEBHOOK_SECRETS_MAX 8              /* secrets in one file */
#define WEBHOOK_KEY_MAX 64                 /* bytes of one decoded key */
#define WEBHOOK_FILE_BYTES_MAX (64 * 1024) /* size of the secrets file */
#define WEBHOOK_SECRET_PREFIX "whsec_"
/* One signature: "v1," and the base64 of a 32-byte HMAC-SHA256 (44 characters). */
#define WEBHOOK_SIG_LEN (3 + 44)
/* The longest header value and its NUL: WEBHOOK_SECRETS_MAX signatures, a space between two. */
#define WEBHOOK_SIGNATURE_MAX (WEBHOOK_SECRETS_MAX * (WEBHOOK_SIG_LEN + 1))

struct webhook_secrets;

/*
 * Reads the secrets file at path. Returns 0 and *out (free with
 * webhook_secrets_free()), or with *out NULL: -EINVAL (a bad line, more than
 * WEBHOOK_SECRETS_MAX secrets, no secret at all, not a regular file), -EFBIG
 * (larger than WEBHOOK_FILE_BYTES_MAX), -errno when it cannot be opened or
 * read, -ENOMEM. On failure error receives one line, "line N: reason" for a
 * bad line (cut to error_size - 1 bytes; error may be NULL when error_size is
 * 0). The first bad line stops the load. Any thread; nothing is shared.
 */
int webhook_secrets_load(const char *path, struct webhook_secrets **out, char *error,
                         size_t error_size);

/* Wipes the keys and frees s. Safe with NULL. */
void webhook_secrets_free(struct webhook_secrets *s);

/* Secrets in the set: 1 to WEBHOOK_SECRETS_MAX. */
size_t webhook_secrets_count(const struct webhook_secrets *s);

/*
 * Writes the `webhook-signature` header value for one request, NUL-terminated,
 * into out: "v1,SIG" for each secret in file order, separated by a space. It
 * takes webhook_secrets_count(s) * (WEBHOOK_SIG_LEN + 1) bytes, at most
 * WEBHOOK_SIGNATURE_MAX. msg_id is the webhook-id header (non-empty),
 * timestamp the webhook-timestamp header (Unix seconds, >= 0), body[0..body_len)
 * the exact bytes sent (body may be NULL when body_len is 0). Returns 0,
 * -EINVAL for bad arguments, -ENOSPC when out_size is too small, -EIO or
 * -ENOMEM when GnuTLS fails; on failure out holds "" (when out_size > 0), and
 * with -EINVAL or -ENOSPC nothing past out[0] is written. Any thread.
 */
int webhook_sign(const struct webhook_secrets *s, const char *msg_id, int64_t timestamp,
                 const char *body, size_t body_len, char *out, size_t out_size);

#endif
