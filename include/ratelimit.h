/*
 * ratelimit.h — a token bucket per client (API key name, else address).
 *
 * Each client has a bucket of at most `burst` tokens that refills at `rate`
 * tokens per second; a request takes one token, or is refused with the
 * seconds until one token is back (for Retry-After, rounded up, at least 1,
 * at most RATELIMIT_RETRY_AFTER_MAX). rate 0 turns the limiter off.
 *
 * Memory is bounded: the buckets live in a fixed-capacity table allocated
 * once, split into RATELIMIT_STRIPES stripes, each with its own mutex, hash
 * index and LRU list. When a stripe is full the least recently used bucket in
 * it is evicted (approximately global LRU). Trade-off: an evicted client comes
 * back with a full bucket, so a flood of distinct client names (many source
 * addresses) can reset the buckets of clients idle long enough to be least
 * recently used; the alternative — refusing new clients when full — would let
 * the same flood lock every new client out. A bucket evicted after being idle
 * for burst / rate seconds had refilled anyway, so eviction only matters when
 * more than the capacity of distinct clients are active within that window.
 *
 * Threads: ratelimit_check_at()/ratelimit_http_check() on any HTTP thread;
 * ratelimit_configure() on the loop thread (SIGHUP), live; every check is O(1)
 * under one stripe mutex. The client string is hashed with a keyed hash
 * (seeded from getrandom) so that chosen names cannot pile into one chain.
 */
#ifndef ORDERD_RATELIMIT_H
#define ORDERD_RATELIMIT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define RATELIMIT_CAPACITY_DEFAULT 65536  /* buckets kept; ~7 MiB reserved */
#define RATELIMIT_STRIPES 64              /* mutexes; capacity is split among them */
#define RATELIMIT_CLIENT_MAX 64           /* bytes of a client name kept; longer ones are cut */
#define RATELIMIT_RETRY_AFTER_MAX 86400   /* seconds; the cap on a very slow rate's wait */

struct ratelimit;

/*
 * A limiter for up to `capacity` clients (rounded up to a multiple of
 * RATELIMIT_STRIPES; 0 = RATELIMIT_CAPACITY_DEFAULT) with the given rate
 * (tokens/s, >= 0; 0 = off) and burst (0 with a rate above 0 counts as 1).
 * 0 and *out (free with ratelimit_free()), -EINVAL (negative or non-finite
 * rate), -ENOMEM.
 */
int ratelimit_new(size_t capacity, double rate, uint32_t burst, struct ratelimit **out);
/* Safe with NULL; no check may be running. */
void ratelimit_free(struct ratelimit *rl);

/*
 * Applies a new rate and burst to every bucket from the next check on
 * (a bucket holding more than the new burst is cut down to it). -EINVAL for a
 * negative or non-finite rate (nothing changes), else 0. Loop thread.
 */
int ratelimit_configure(struct ratelimit *rl, double rate, uint32_t burst);

/*
 * The decision for one request of client at now_ms (any monotonic
 * milliseconds; time going back counts as no time passing): 0 to allow, else
 * the seconds to wait. Any thread.
 */
unsigned ratelimit_check_at(struct ratelimit *rl, const char *client, uint64_t now_ms);

/* The http_rate_limit_fn adapter: ctx is a struct ratelimit *; time from CLOCK_MONOTONIC. */
unsigned ratelimit_http_check(void *ctx, const char *client);

/*
 * The client name an address is limited under (for requests without an API
 * key): an IPv4 address as itself ("192.0.2.7"); an IPv6 address by its /64
 * ("2001:db8:1:2::/64"), the block one host or site is usually given, so
 * that rotating addresses inside it does not buy a fresh bucket; an
 * IPv4-mapped IPv6 address as the IPv4 address. "unknown" for NULL or
 * another family. size >= RATELIMIT_CLIENT_MAX.
 */
void ratelimit_client_of_address(const struct sockaddr *sa, char *out, size_t size);

/* Buckets in use (<= capacity) and buckets evicted so far (for tests and metrics). */
size_t ratelimit_size(struct ratelimit *rl);
size_t ratelimit_capacity(const struct ratelimit *rl);
uint64_t ratelimit_evictions(struct ratelimit *rl);

#endif
