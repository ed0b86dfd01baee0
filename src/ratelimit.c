/*
 * ratelimit.c — token buckets per client in a fixed-capacity, striped table.
 *
 * Layout: RATELIMIT_STRIPES stripes, chosen by the top bits of a SipHash-2-4
 * of the client name (key from getrandom, so a client cannot choose names that
 * collide). Each stripe owns, behind its own mutex:
 *   slots[cap]      the buckets, allocated once; slots[0..used) are in use
 *   index[nidx]     heads of hash chains (nidx a power of two >= cap), linked
 *                   through slot.chain; NIL = empty
 *   head, tail      a doubly linked LRU list of the used slots, most recent
 *                   at head
 *   rate, burst     the stripe's copy of the settings, changed by configure
 * Invariants (per stripe, under its lock): every used slot is on exactly one
 * chain and on the LRU list; used <= cap; a bucket's tokens <= burst after
 * each check. A check is O(1): one hash, one short chain walk, a constant
 * amount of list surgery. When the stripe is full the tail (least recently
 * used) slot is unlinked and reused; see ratelimit.h for the trade-off.
 *
 * Time: the core function takes now_ms (tests inject it); the HTTP adapter
 * reads CLOCK_MONOTONIC. A bucket remembers the last time it was refilled;
 * time that goes back is taken as no time passing.
 *
 * Threads: checks on any HTTP thread (one stripe lock each); configure on the
 * loop thread (each stripe lock in turn). `enabled` lets a check skip the lock
 * when the limiter is off.
 */
#include "ratelimit.h"

#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#define NIL UINT32_MAX
#define STRIPE_SHIFT 58               /* 64 - log2(RATELIMIT_STRIPES) */
#define TOKEN_EPSILON 1e-9            /* tolerance for refills summed in floating point */

_Static_assert(RATELIMIT_STRIPES == 64, "STRIPE_SHIFT assumes 64 stripes");
_Static_assert(RATELIMIT_CLIENT_MAX <= 255, "client length is kept in a byte");

struct bucket {
    uint64_t hash;
    double tokens;
    uint64_t last_ms;
    uint32_t prev, next;              /* LRU list */
    uint32_t chain;                   /* hash chain */
    uint8_t len;
    char client[RATELIMIT_CLIENT_MAX];
};

struct stripe {
    pthread_mutex_t lock;
    double rate;                      /* tokens per second; 0 = off */
    double burst;
    uint32_t cap, used;
    uint32_t head, tail;
    uint32_t index_mask;
    uint64_t evictions;
    uint32_t *index;
    struct bucket *slots;
} __attribute__((aligned(64)));       /* one cache line each, no false sharing of locks */

struct ratelimit {
    struct stripe stripes[RATELIMIT_STRIPES];
    atomic_bool enabled;
    uint64_t key[2];                  /* SipHash key; constant after new */
    size_t capacity;
};

/* ---- SipHash-2-4 (Aumasson & Bernstein), 64-bit output -------------------- */

#define ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))
#define SIPROUND                                                                                   \
    do {                                                                                           \
        v0 += v1; v1 = ROTL(v1, 13); v1 ^= v0; v0 = ROTL(v0, 32);                                  \
        v2 += v3; v3 = ROTL(v3, 16); v3 ^= v2;                                                     \
        v0 += v3; v3 = ROTL(v3, 21); v3 ^= v0;                                                     \
        v2 += v1; v1 = ROTL(v1, 17); v1 ^= v2; v2 = ROTL(v2, 32);                                  \
    } while (0)

static uint64_t load_le64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

static uint64_t siphash(const uint64_t key[2], const void *data, size_t len)
{
    const unsigned char *p = data;
    uint64_t v0 = 0x736f6d6570736575ULL ^ key[0], v1 = 0x646f72616e646f6dULL ^ key[1];
    uint64_t v2 = 0x6c7967656e657261ULL ^ key[0], v3 = 0x7465646279746573ULL ^ key[1];
    size_t full = len & ~(size_t)7;
    for (size_t i = 0; i < full; i += 8) {
        uint64_t m = load_le64(p + i);
        v3 ^= m;
        SIPROUND;
        SIPROUND;
        v0 ^= m;
    }
    uint64_t b = (uint64_t)len << 56;
    for (size_t i = 0; i < (len & 7); i++)
        b |= (uint64_t)p[full + i] << (8 * i);
    v3 ^= b;
    SIPROUND;
    SIPROUND;
    v0 ^= b;
    v2 ^= 0xff;
    SIPROUND;
    SIPROUND;
    SIPROUND;
    SIPROUND;
    return v0 ^ v1 ^ v2 ^ v3;
}

/* ---- life cycle -------------------------------------------------------------- */

static bool rate_valid(double rate) { return isfinite(rate) && rate >= 0; }

static double effective_burst(double rate, uint32_t burst)
{
    return rate > 0 && burst == 0 ? 1.0 : (double)burst;
}

static uint32_t pow2_at_least(uint32_t n)
{
    uint32_t p = 1;
    while (p < n)
        p <<= 1;
    return p;
}

static void seed_key(uint64_t key[2])
{
    if (getrandom(key, 2 * sizeof(key[0]), 0) == (ssize_t)(2 * sizeof(key[0])))
        return;
    /* No entropy (very early boot): a weaker key still spreads ordinary names. */
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    key[0] = (uint64_t)ts.tv_nsec * 0x9e3779b97f4a7c15ULL ^ (uint64_t)(uintptr_t)key;
    key[1] = (uint64_t)ts.tv_sec * 0xbf58476d1ce4e5b9ULL;
}

void ratelimit_free(struct ratelimit *rl)
{
    if (rl == NULL)
        return;
    for (size_t i = 0; i < RATELIMIT_STRIPES; i++) {
        struct stripe *s = &rl->stripes[i];
        free(s->index);
        free(s->slots);
        s->index = NULL;
        s->slots = NULL;
        pthread_mutex_destroy(&s->lock);
    }
    free(rl);
}

int ratelimit_new(size_t capacity, double rate, uint32_t burst, struct ratelimit **out)
{
    *out = NULL;
    if (!rate_valid(rate))
        return -EINVAL;
    if (capacity == 0)
        capacity = RATELIMIT_CAPACITY_DEFAULT;
    if (capacity > (size_t)RATELIMIT_STRIPES * (NIL / 2))
        return -EINVAL;
    uint32_t per = (uint32_t)((capacity + RATELIMIT_STRIPES - 1) / RATELIMIT_STRIPES);
    uint32_t nidx = pow2_at_least(per);

    struct ratelimit *rl = aligned_alloc(64, sizeof(*rl));
    if (rl == NULL)
        return -ENOMEM;
    memset(rl, 0, sizeof(*rl));
    rl->capacity = (size_t)per * RATELIMIT_STRIPES;
    seed_key(rl->key);
    atomic_init(&rl->enabled, rate > 0);
    size_t i;
    for (i = 0; i < RATELIMIT_STRIPES; i++) {
        struct stripe *s = &rl->stripes[i];
        if (pthread_mutex_init(&s->lock, NULL) != 0)
            goto fail;
        s->rate = rate;
        s->burst = effective_burst(rate, burst);
        s->cap = per;
        s->head = s->tail = NIL;
        s->index_mask = nidx - 1;
        s->index = malloc(nidx * sizeof(*s->index));
        s->slots = calloc(per, sizeof(*s->slots));
        if (s->index == NULL || s->slots == NULL) {
            i++;
            goto fail;
        }
        memset(s->index, 0xff, nidx * sizeof(*s->index)); /* all NIL */
    }
    *out = rl;
    return 0;
fail:
    /* Stripes [0, i) have a mutex; the others are zeroed, which free() and destroy tolerate. */
    for (size_t j = 0; j < i; j++) {
        free(rl->stripes[j].index);
        free(rl->stripes[j].slots);
        pthread_mutex_destroy(&rl->stripes[j].lock);
    }
    free(rl);
    return -ENOMEM;
}

int ratelimit_configure(struct ratelimit *rl, double rate, uint32_t burst)
{
    if (!rate_valid(rate))
        return -EINVAL;
    double b = effective_burst(rate, burst);
    for (size_t i = 0; i < RATELIMIT_STRIPES; i++) {
        struct stripe *s = &rl->stripes[i];
        pthread_mutex_lock(&s->lock);
        s->rate = rate;
        s->burst = b;
        pthread_mutex_unlock(&s->lock);
    }
    atomic_store(&rl->enabled, rate > 0);
    return 0;
}

/* ---- the table ----------------------------------------------------------------- */

static void lru_unlink(struct stripe *s, uint32_t i)
{
    struct bucket *b = &s->slots[i];
    if (b->prev != NIL)
        s->slots[b->prev].next = b->next;
    else
        s->head = b->next;
    if (b->next != NIL)
        s->slots[b->next].prev = b->prev;
    else
        s->tail = b->prev;
    b->prev = b->next = NIL;
}

static void lru_push_front(struct stripe *s, uint32_t i)
{
    struct bucket *b = &s->slots[i];
    b->prev = NIL;
    b->next = s->head;
    if (s->head != NIL)
        s->slots[s->head].prev = i;
    s->head = i;
    if (s->tail == NIL)
        s->tail = i;
}

static void chain_unlink(struct stripe *s, uint32_t i)
{
    uint32_t *link = &s->index[s->slots[i].hash & s->index_mask];
    while (*link != i) {
        assert(*link != NIL);
        link = &s->slots[*link].chain;
    }
    *link = s->slots[i].chain;
    s->slots[i].chain = NIL;
}

static uint32_t find(const struct stripe *s, uint64_t hash, const char *client, size_t len)
{
    for (uint32_t i = s->index[hash & s->index_mask]; i != NIL; i = s->slots[i].chain) {
        const struct bucket *b = &s->slots[i];
        if (b->hash == hash && b->len == len && memcmp(b->client, client, len) == 0)
            return i;
    }
    return NIL;
}

/* A slot for a new client: a never-used one, else the least recently used. */
static uint32_t take_slot(struct stripe *s)
{
    if (s->used < s->cap)
        return s->used++;
    uint32_t i = s->tail;
    assert(i != NIL);
    lru_unlink(s, i);
    chain_unlink(s, i);
    s->evictions++;
    return i;
}

static unsigned wait_seconds(double tokens, double rate)
{
    double w = ceil((1.0 - tokens) / rate);
    if (!(w >= 1.0))
        return 1;
    if (w > RATELIMIT_RETRY_AFTER_MAX)
        return RATELIMIT_RETRY_AFTER_MAX;
    return (unsigned)w;
}

unsigned ratelimit_check_at(struct ratelimit *rl, const char *client, uint64_t now_ms)
{
    if (!atomic_load_explicit(&rl->enabled, memory_order_relaxed))
        return 0;
    if (client == NULL)
        client = "";
    size_t len = strnlen(client, RATELIMIT_CLIENT_MAX);
    uint64_t hash = siphash(rl->key, client, len);
    struct stripe *s = &rl->stripes[hash >> STRIPE_SHIFT];
    unsigned wait = 0;

    pthread_mutex_lock(&s->lock);
    if (s->rate <= 0)
        goto out;
    uint32_t i = find(s, hash, client, len);
    struct bucket *b;
    if (i != NIL) {
        b = &s->slots[i];
        lru_unlink(s, i);
        if (now_ms > b->last_ms) {
            b->tokens += (double)(now_ms - b->last_ms) * s->rate / 1000.0;
            b->last_ms = now_ms;
        }
        if (b->tokens > s->burst)
            b->tokens = s->burst;
    } else {
        i = take_slot(s);
        b = &s->slots[i];
        b->hash = hash;
        b->len = (uint8_t)len;
        memcpy(b->client, client, len);
        b->tokens = s->burst;
        b->last_ms = now_ms;
        b->chain = s->index[hash & s->index_mask];
        s->index[hash & s->index_mask] = i;
    }
    lru_push_front(s, i);
    if (b->tokens + TOKEN_EPSILON >= 1.0) {
        b->tokens -= 1.0;
        if (b->tokens < 0)
            b->tokens = 0;
    } else {
        wait = wait_seconds(b->tokens, s->rate);
    }
out:
    pthread_mutex_unlock(&s->lock);
    return wait;
}

unsigned ratelimit_http_check(void *ctx, const char *client)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    uint64_t now_ms = (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
    return ratelimit_check_at(ctx, client, now_ms);
}

/* ---- introspection ----------------------------------------------------------- */

size_t ratelimit_size(struct ratelimit *rl)
{
    size_t n = 0;
    for (size_t i = 0; i < RATELIMIT_STRIPES; i++) {
        pthread_mutex_lock(&rl->stripes[i].lock);
        n += rl->stripes[i].used;
        pthread_mutex_unlock(&rl->stripes[i].lock);
    }
    return n;
}

size_t ratelimit_capacity(const struct ratelimit *rl) { return rl->capacity; }

uint64_t ratelimit_evictions(struct ratelimit *rl)
{
    uint64_t n = 0;
    for (size_t i = 0; i < RATELIMIT_STRIPES; i++) {
        pthread_mutex_lock(&rl->stripes[i].lock);
        n += rl->stripes[i].evictions;
        pthread_mutex_unlock(&rl->stripes[i].lock);
    }
    return n;
}

void ratelimit_client_of_address(const struct sockaddr *sa, char *out, size_t size)
{
    assert(size >= RATELIMIT_CLIENT_MAX);
    char text[INET6_ADDRSTRLEN];
    const char *name = NULL;
    if (sa != NULL && sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)(const void *)sa;
        name = inet_ntop(AF_INET, &in->sin_addr, text, sizeof(text));
    } else if (sa != NULL && sa->sa_family == AF_INET6) {
        const struct in6_addr *a = &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr;
        if (IN6_IS_ADDR_V4MAPPED(a)) {
            name = inet_ntop(AF_INET, &a->s6_addr[12], text, sizeof(text));
        } else {
            struct in6_addr prefix = *a;
            memset(&prefix.s6_addr[8], 0, 8);
            if (inet_ntop(AF_INET6, &prefix, text, sizeof(text) - 3) != NULL)
                name = strcat(text, "/64");
        }
    }
    snprintf(out, size, "%s", name ? name : "unknown");
}
