/*
 * ids.h — identifiers that sort by time and cannot be guessed.
 *
 * Order ids are ULIDs: 48 bits of milliseconds and 80 random bits from the
 * GnuTLS DRBG (gnutls_rnd, seeded from getrandom), in Crockford base32
 * (26 characters). Thread-safe.
 */
#ifndef ORDERD_IDS_H
#define ORDERD_IDS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bounds.h"

/* Fills buf with n random bytes; 0 or -EIO (DRBG failure). */
int ids_random_bytes(void *buf, size_t n);

/* Writes a ULID for time ms into out (ID_ULID_LEN + 1 bytes). 0 or -errno. */
int ids_ulid_at(uint64_t ms, char out[ID_ULID_LEN + 1]);
int ids_ulid_new(char out[ID_ULID_LEN + 1]);

/* True for 26 Crockford base32 characters (upper case) whose first is 0..7. */
bool ids_ulid_valid(const char *s);

/* Milliseconds encoded in a valid ULID. */
uint64_t ids_ulid_time_ms(const char *ulid);

/* n random bytes as 2n lower-case hex characters plus NUL. 0 or -errno. */
int ids_random_hex(char *out, size_t n_bytes);

/* Wall-clock milliseconds since the epoch; monotonic-ish ms for durations. */
int64_t ids_now_ms(void);
double ids_monotonic_seconds(void);

#endif
