/*
 * ids.c — identifiers: random bytes from GnuTLS's DRBG, ULIDs, random hex, and
 * the two clocks every module reads.
 *
 * A ULID is 128 bits: 48 bits of Unix milliseconds, big-endian, then 80 random
 * bits, written as 26 Crockford base32 characters (the first carries only
 * 3 bits, so it is 0..7). Ids sort by time to the millisecond; within one
 * millisecond they are random, never incremented, so one id does not reveal
 * the next.
 *
 * Random bytes come from gnutls_rnd(GNUTLS_RND_RANDOM): a user-space DRBG
 * seeded and reseeded from getrandom(2), thread-safe, and without a system
 * call per id (a request makes four ids; a syscall each showed in profiles).
 * Each thread draws RANDOM_POOL_BYTES at a time into a pool of its own and
 * hands them out in order, wiping each byte as it goes: one call into GnuTLS
 * per ~20 ids instead of one per id (the generator's per-call work was 3 %
 * of a POST /orders). The pool is thread-local, so no lock; a forked child
 * (the fulfilment command) execs without drawing ids. Any thread.
 */
#include "ids.h"

#include <errno.h>
#include <gnutls/crypto.h>
#include <string.h>
#include <time.h>

#define ULID_TIME_CHARS 10
#define ULID_RANDOM_BYTES 10
#define ULID_TIME_MAX ((UINT64_C(1) << 48) - 1)

static const char crockford[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
static const char hex_digits[] = "0123456789abcdef";

#define RANDOM_POOL_BYTES 256

static _Thread_local struct {
    unsigned char bytes[RANDOM_POOL_BYTES];
    size_t used;                  /* bytes handed out (and wiped) from the front */
} random_pool = {.used = RANDOM_POOL_BYTES};

int ids_random_bytes(void *buf, size_t n)
{
    if (n == 0)
        return 0;
    if (n > RANDOM_POOL_BYTES / 4) /* large requests go straight to GnuTLS */
        return gnutls_rnd(GNUTLS_RND_RANDOM, buf, n) == 0 ? 0 : -EIO;
    if (RANDOM_POOL_BYTES - random_pool.used < n) {
        if (gnutls_rnd(GNUTLS_RND_RANDOM, random_pool.bytes, RANDOM_POOL_BYTES) != 0)
            return -EIO;
        random_pool.used = 0;
    }
    unsigned char *from = random_pool.bytes + random_pool.used;
    memcpy(buf, from, n);
    memset(from, 0, n); /* a byte handed out is not kept */
    random_pool.used += n;
    return 0;
}

/* Value of a Crockford character, or -1 (upper case only, no I L O U). */
static int crockford_value(char c)
{
    const char *at;

    if (c == '\0')
        return -1;
    at = strchr(crockford, c);
    return at == NULL ? -1 : (int)(at - crockford);
}

/* 80 bits -> 16 characters, 5 bits at a time, most significant first. */
static void encode_random(const unsigned char bytes[ULID_RANDOM_BYTES], char out[16])
{
    unsigned int acc = 0, bits = 0;
    size_t o = 0;

    for (size_t i = 0; i < ULID_RANDOM_BYTES; i++) {
        acc = (acc << 8) | bytes[i];
        bits += 8;
        while (bits >= 5) {
            bits -= 5;
            out[o++] = crockford[(acc >> bits) & 31];
        }
    }
}

int ids_ulid_at(uint64_t ms, char out[ID_ULID_LEN + 1])
{
    unsigned char rnd[ULID_RANDOM_BYTES];
    int rc;

    if (ms > ULID_TIME_MAX)
        return -ERANGE;
    rc = ids_random_bytes(rnd, sizeof(rnd));
    if (rc != 0)
        return rc;
    for (int i = ULID_TIME_CHARS - 1; i >= 0; i--) {
        out[i] = crockford[ms & 31];
        ms >>= 5;
    }
    encode_random(rnd, out + ULID_TIME_CHARS);
    out[ID_ULID_LEN] = '\0';
    return 0;
}

int ids_ulid_new(char out[ID_ULID_LEN + 1])
{
    return ids_ulid_at((uint64_t)ids_now_ms(), out);
}

bool ids_ulid_valid(const char *s)
{
    if (s == NULL || s[0] < '0' || s[0] > '7')
        return false;
    for (size_t i = 0; i < ID_ULID_LEN; i++)
        if (crockford_value(s[i]) < 0)
            return false;
    return s[ID_ULID_LEN] == '\0';
}

uint64_t ids_ulid_time_ms(const char *ulid)
{
    uint64_t ms = 0;

    for (size_t i = 0; i < ULID_TIME_CHARS; i++) {
        int d = crockford_value(ulid[i]);

        if (d < 0)
            return 0;
        ms = (ms << 5) | (uint64_t)d;
    }
    return ms;
}

int ids_random_hex(char *out, size_t n_bytes)
{
    unsigned char chunk[32];

    for (size_t done = 0; done < n_bytes;) {
        size_t n = n_bytes - done < sizeof(chunk) ? n_bytes - done : sizeof(chunk);
        int rc = ids_random_bytes(chunk, n);

        if (rc != 0)
            return rc;
        for (size_t i = 0; i < n; i++, done++) {
            out[2 * done] = hex_digits[chunk[i] >> 4];
            out[2 * done + 1] = hex_digits[chunk[i] & 15];
        }
    }
    out[2 * n_bytes] = '\0';
    return 0;
}

int64_t ids_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

double ids_monotonic_seconds(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}
