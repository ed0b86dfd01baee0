/*
 * test_ratelimit.c — token buckets: burst then refuse, Retry-After, refill,
 * per-client isolation, the memory bound and LRU eviction, live
 * reconfiguration, rate 0 = off, and 4 threads at once (run under TSan too).
 * Time is injected (now_ms) except in the adapter test.
 */
#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "ratelimit.h"
#include "timeouts.h"

Suite *suite_ratelimit(void);

static struct ratelimit *make(size_t capacity, double rate, uint32_t burst)
{
    struct ratelimit *rl = NULL;
    ck_assert_int_eq(ratelimit_new(capacity, rate, burst, &rl), 0);
    ck_assert_ptr_nonnull(rl);
    return rl;
}

/* Checks n times at now; returns how many were allowed. */
static unsigned allowed(struct ratelimit *rl, const char *client, unsigned n, uint64_t now)
{
    unsigned ok = 0;
    for (unsigned i = 0; i < n; i++)
        ok += ratelimit_check_at(rl, client, now) == 0;
    return ok;
}

START_TEST(burst_then_refuse)
{
    struct ratelimit *rl = make(0, 1.0, 3);
    ck_assert_uint_eq(ratelimit_check_at(rl, "a", 1000), 0);
    ck_assert_uint_eq(ratelimit_check_at(rl, "a", 1000), 0);
    ck_assert_uint_eq(ratelimit_check_at(rl, "a", 1000), 0);
    ck_assert_uint_eq(ratelimit_check_at(rl, "a", 1000), 1);
    ck_assert_uint_eq(ratelimit_check_at(rl, "a", 1000), 1);
    ratelimit_free(rl);
}
END_TEST

/* Retry-After = ceil(seconds until one token), within [1, RATELIMIT_RETRY_AFTER_MAX]. */
static const struct {
    double rate;
    uint32_t burst;
    uint64_t later_ms;                /* second check this long after the burst is spent */
    unsigned wait;
} waits[] = {
    {1.0, 1, 0, 1},
    {0.5, 1, 0, 2},
    {0.1, 1, 0, 10},
    {0.1, 1, 5000, 5},                /* half a token back: 5 s to go */
    {0.1, 1, 5001, 5},
    {0.1, 1, 4999, 6},
    {0.25, 1, 1000, 3},
    {10.0, 1, 0, 1},                  /* 0.1 s rounds up to 1 */
    {1000.0, 5, 0, 1},
    {1e-6, 1, 0, RATELIMIT_RETRY_AFTER_MAX},
    {1.0 / 3600, 2, 0, 3600},
};

START_TEST(retry_after_table)
{
    struct ratelimit *rl = make(0, waits[_i].rate, waits[_i].burst);
    ck_assert_uint_eq(allowed(rl, "c", waits[_i].burst, 1000), waits[_i].burst);
    unsigned w = ratelimit_check_at(rl, "c", 1000 + waits[_i].later_ms);
    ck_assert_msg(w == waits[_i].wait, "rate %g after %llu ms: wait %u, want %u", waits[_i].rate,
                  (unsigned long long)waits[_i].later_ms, w, waits[_i].wait);
    ratelimit_free(rl);
}
END_TEST

START_TEST(refill_over_time)
{
    struct ratelimit *rl = make(0, 2.0, 2);
    ck_assert_uint_eq(allowed(rl, "a", 2, 0), 2);
    ck_assert_uint_eq(ratelimit_check_at(rl, "a", 0), 1);
    ck_assert_uint_eq(ratelimit_check_at(rl, "a", 499), 1);
    ck_assert_uint_eq(ratelimit_check_at(rl, "a", 500), 0);
    ck_assert_uint_eq(ratelimit_check_at(rl, "a", 500), 1);
    ck_assert_uint_eq(ratelimit_check_at(rl, "a", 1000), 0);
    ck_assert_uint_eq(ratelimit_check_at(rl, "a", 1000), 1);
    /* A long idle time refills to burst, never beyond. */
    ck_assert_uint_eq(allowed(rl, "a", 10, 3600 * 1000), 2);
    /* Sustained: 2 per second over 10 seconds, checked every 10 ms. */
    unsigned ok = 0;
    for (uint64_t t = 4000 * 1000; t < 4000 * 1000 + 10000; t += 10)
        ok += ratelimit_check_at(rl, "a", t) == 0;
    ck_assert_uint_ge(ok, 20);
    ck_assert_uint_le(ok, 22);        /* 20 refilled + the full bucket of 2 */
    ratelimit_free(rl);
}
END_TEST

START_TEST(time_going_back)
{
    struct ratelimit *rl = make(0, 1.0, 1);
    ck_assert_uint_eq(ratelimit_check_at(rl, "a", 10000), 0);
    ck_assert_uint_eq(ratelimit_check_at(rl, "a", 5000), 1);  /* no refill from the past */
    ck_assert_uint_eq(ratelimit_check_at(rl, "a", 10999), 1); /* nor from going back and forth */
    ck_assert_uint_eq(ratelimit_check_at(rl, "a", 11000), 0);
    ratelimit_free(rl);
}
END_TEST

START_TEST(clients_are_isolated)
{
    struct ratelimit *rl = make(0, 1.0, 2);
    ck_assert_uint_eq(allowed(rl, "10.0.0.1", 5, 0), 2);
    ck_assert_uint_eq(allowed(rl, "10.0.0.2", 5, 0), 2);
    ck_assert_uint_eq(allowed(rl, "writer", 5, 0), 2);
    ck_assert_uint_eq(allowed(rl, "Writer", 5, 0), 2);         /* names are case-sensitive */
    ck_assert_uint_eq(allowed(rl, "", 5, 0), 2);
    ck_assert_uint_eq(allowed(rl, NULL, 5, 0), 0);             /* NULL is the "" client */
    ck_assert_uint_eq(ratelimit_size(rl), 5);
    ratelimit_free(rl);
}
END_TEST

/* Names are kept to RATELIMIT_CLIENT_MAX bytes: longer ones sharing that prefix share a bucket. */
START_TEST(long_names_cut)
{
    char a[RATELIMIT_CLIENT_MAX + 10], b[RATELIMIT_CLIENT_MAX + 10];
    memset(a, 'x', sizeof(a));
    memcpy(b, a, sizeof(b));
    a[sizeof(a) - 1] = b[sizeof(b) - 1] = '\0';
    b[RATELIMIT_CLIENT_MAX] = 'y';
    struct ratelimit *rl = make(0, 1.0, 1);
    ck_assert_uint_eq(ratelimit_check_at(rl, a, 0), 0);
    ck_assert_uint_eq(ratelimit_check_at(rl, b, 0), 1);
    b[RATELIMIT_CLIENT_MAX - 1] = 'y';
    ck_assert_uint_eq(ratelimit_check_at(rl, b, 0), 0);
    ratelimit_free(rl);
}
END_TEST

static const struct {
    size_t asked, got;
} capacities[] = {
    {0, RATELIMIT_CAPACITY_DEFAULT},
    {1, RATELIMIT_STRIPES},
    {RATELIMIT_STRIPES, RATELIMIT_STRIPES},
    {100, 2 * RATELIMIT_STRIPES},
    {65536, 65536},
};

START_TEST(capacity_rounding)
{
    struct ratelimit *rl = make(capacities[_i].asked, 1.0, 1);
    ck_assert_uint_eq(ratelimit_capacity(rl), capacities[_i].got);
    ratelimit_free(rl);
}
END_TEST

START_TEST(eviction_bounds_memory)
{
    struct ratelimit *rl = make(4 * RATELIMIT_STRIPES, 1.0, 1);
    char name[32];
    size_t n = 20000;
    for (size_t i = 0; i < n; i++) {
        snprintf(name, sizeof(name), "client-%zu", i);
        ck_assert_uint_eq(ratelimit_check_at(rl, name, 0), 0); /* every new client: full bucket */
        ck_assert_uint_le(ratelimit_size(rl), ratelimit_capacity(rl));
    }
    ck_assert_uint_eq(ratelimit_size(rl), ratelimit_capacity(rl));
    ck_assert_uint_eq(ratelimit_size(rl) + ratelimit_evictions(rl), n);
    ratelimit_free(rl);
}
END_TEST

/* A client in constant use is never the least recently used: it keeps its (empty) bucket. */
START_TEST(lru_keeps_active_client)
{
    struct ratelimit *rl = make(2 * RATELIMIT_STRIPES, 1e-3, 1);
    char name[32];
    ck_assert_uint_eq(ratelimit_check_at(rl, "hot", 0), 0);
    for (size_t i = 0; i < 5000; i++) {
        snprintf(name, sizeof(name), "cold-%zu", i);
        ratelimit_check_at(rl, name, 0);
        ck_assert_uint_gt(ratelimit_check_at(rl, "hot", 0), 0);
    }
    ck_assert_uint_gt(ratelimit_evictions(rl), 0);
    ratelimit_free(rl);
}
END_TEST

/* An idle client is evicted under pressure and comes back with a full bucket. */
START_TEST(evicted_client_starts_full)
{
    struct ratelimit *rl = make(RATELIMIT_STRIPES, 1e-3, 1);
    char name[32];
    ck_assert_uint_eq(ratelimit_check_at(rl, "idle", 0), 0);
    ck_assert_uint_gt(ratelimit_check_at(rl, "idle", 0), 0);
    /* 2000 others over 64 one-slot stripes: "idle"'s stripe is hit with p = 1 - (63/64)^2000. */
    for (size_t i = 0; i < 2000; i++) {
        snprintf(name, sizeof(name), "other-%zu", i);
        ratelimit_check_at(rl, name, 0);
    }
    ck_assert_uint_eq(ratelimit_check_at(rl, "idle", 0), 0);
    ratelimit_free(rl);
}
END_TEST

START_TEST(reconfigure_live)
{
    struct ratelimit *rl = make(0, 1.0, 5);
    ck_assert_uint_eq(allowed(rl, "a", 10, 0), 5);
    /* Faster and bigger: 100 ms at 100/s refills 10 tokens. */
    ck_assert_int_eq(ratelimit_configure(rl, 100.0, 10), 0);
    ck_assert_uint_eq(allowed(rl, "a", 20, 100), 10);
    /* A new client gets the new burst. */
    ck_assert_uint_eq(allowed(rl, "b", 20, 100), 10);
    /* Smaller burst: a full bucket is cut down to it. */
    ck_assert_uint_eq(allowed(rl, "c", 1, 100), 1);
    ck_assert_int_eq(ratelimit_configure(rl, 100.0, 2), 0);
    ck_assert_uint_eq(allowed(rl, "c", 20, 10000), 2);
    /* Slower: the wait grows. */
    ck_assert_int_eq(ratelimit_configure(rl, 0.2, 2), 0);
    ck_assert_uint_eq(ratelimit_check_at(rl, "c", 10000), 5);
    ratelimit_free(rl);
}
END_TEST

START_TEST(rate_zero_is_off)
{
    struct ratelimit *rl = make(0, 0.0, 0);
    ck_assert_uint_eq(allowed(rl, "a", 10000, 0), 10000);
    ck_assert_uint_eq(ratelimit_size(rl), 0);           /* off: nothing is even stored */
    ck_assert_int_eq(ratelimit_configure(rl, 1.0, 2), 0);
    ck_assert_uint_eq(allowed(rl, "a", 10, 0), 2);
    ck_assert_int_eq(ratelimit_configure(rl, 0.0, 2), 0);
    ck_assert_uint_eq(allowed(rl, "a", 1000, 0), 1000);
    ck_assert_int_eq(ratelimit_configure(rl, 1.0, 2), 0);
    ck_assert_uint_eq(allowed(rl, "a", 10, 0), 0);      /* back on: the bucket was kept */
    ck_assert_uint_eq(allowed(rl, "a", 10, 1000), 1);
    ratelimit_free(rl);
}
END_TEST

START_TEST(burst_zero_counts_as_one)
{
    struct ratelimit *rl = make(0, 5.0, 0);
    ck_assert_uint_eq(allowed(rl, "a", 10, 0), 1);
    ratelimit_free(rl);
}
END_TEST

static const double bad_rates[] = {-1.0, -1e-9, NAN, INFINITY, -INFINITY};

START_TEST(bad_rates_refused)
{
    struct ratelimit *rl = NULL;
    ck_assert_int_eq(ratelimit_new(0, bad_rates[_i], 1, &rl), -EINVAL);
    ck_assert_ptr_null(rl);
    rl = make(0, 1.0, 1);
    ck_assert_int_eq(ratelimit_configure(rl, bad_rates[_i], 5), -EINVAL);
    ck_assert_uint_eq(allowed(rl, "a", 5, 0), 1); /* unchanged */
    ratelimit_free(rl);
}
END_TEST

START_TEST(http_adapter_uses_clock)
{
    struct ratelimit *rl = make(0, 0.001, 2);
    ck_assert_uint_eq(ratelimit_http_check(rl, "a"), 0);
    ck_assert_uint_eq(ratelimit_http_check(rl, "a"), 0);
    unsigned w = ratelimit_http_check(rl, "a");
    ck_assert_uint_ge(w, 999);
    ck_assert_uint_le(w, 1000);
    ratelimit_free(NULL);
    ratelimit_free(rl);
}
END_TEST

/* ---- 4 threads ------------------------------------------------------------------ */

#define THREADS 4
#define SHARED_BURST 1000

struct worker_arg {
    struct ratelimit *rl;
    int id;
    unsigned shared_ok, own_ok;
};

static void *worker(void *p)
{
    struct worker_arg *w = p;
    char own[32], other[32];
    snprintf(own, sizeof(own), "own-%d", w->id);
    for (int i = 0; i < 2000; i++) {
        /* Time stands still: the shared bucket gives out exactly SHARED_BURST tokens in all. */
        w->shared_ok += ratelimit_check_at(w->rl, "shared", 1) == 0;
        w->own_ok += ratelimit_check_at(w->rl, own, 1) == 0;
        snprintf(other, sizeof(other), "t%d-%d", w->id, i); /* churn: evictions on all threads */
        ratelimit_check_at(w->rl, other, 1);
    }
    return NULL;
}

START_TEST(four_threads)
{
    struct ratelimit *rl = make(8 * RATELIMIT_STRIPES, 1.0, SHARED_BURST);
    pthread_t th[THREADS];
    struct worker_arg args[THREADS];
    for (int i = 0; i < THREADS; i++) {
        args[i] = (struct worker_arg){.rl = rl, .id = i};
        ck_assert_int_eq(pthread_create(&th[i], NULL, worker, &args[i]), 0);
    }
    /* The loop thread reloads meanwhile (same values, so the counts stay exact). */
    for (int i = 0; i < 200; i++) {
        ck_assert_int_eq(ratelimit_configure(rl, 1.0, SHARED_BURST), 0);
        ck_assert_uint_le(ratelimit_size(rl), ratelimit_capacity(rl));
    }
    unsigned shared = 0;
    for (int i = 0; i < THREADS; i++) {
        pthread_join(th[i], NULL);
        shared += args[i].shared_ok;
    }
    ck_assert_uint_eq(shared, SHARED_BURST);
    /* "own-N" may be evicted by the churn and come back full, so at least its burst. */
    for (int i = 0; i < THREADS; i++)
        ck_assert_uint_ge(args[i].own_ok, SHARED_BURST);
    ck_assert_uint_le(ratelimit_size(rl), ratelimit_capacity(rl));
    ratelimit_free(rl);
}
END_TEST

/* ---- the client name of an address ------------------------------------ */

struct address_case {
    int family;
    const char *address;
    const char *name;
};

static const struct address_case addresses[] = {
    {AF_INET, "192.0.2.7", "192.0.2.7"},
    {AF_INET, "127.0.0.1", "127.0.0.1"},
    {AF_INET6, "2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"},
    {AF_INET6, "2001:db8:1:2:ffff:ffff:ffff:ffff", "2001:db8:1:2::/64"},
    {AF_INET6, "2001:db8:1:3::1", "2001:db8:1:3::/64"},
    {AF_INET6, "::1", "::/64"},
    {AF_INET6, "fe80::1234:5678:9abc:def0", "fe80::/64"},
    {AF_INET6, "::ffff:10.1.2.3", "10.1.2.3"},
    {AF_UNIX, NULL, "unknown"},
};

START_TEST(client_of_address)
{
    const struct address_case *c = &addresses[_i];
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    ss.ss_family = (sa_family_t)c->family;
    if (c->family == AF_INET)
        ck_assert_int_eq(inet_pton(AF_INET, c->address, &((struct sockaddr_in *)&ss)->sin_addr), 1);
    if (c->family == AF_INET6)
        ck_assert_int_eq(inet_pton(AF_INET6, c->address,
                                   &((struct sockaddr_in6 *)&ss)->sin6_addr),
                         1);
    char name[RATELIMIT_CLIENT_MAX + 1];
    memset(name, 'x', sizeof(name));
    ratelimit_client_of_address((const struct sockaddr *)&ss, name, sizeof(name));
    ck_assert_str_eq(name, c->name);
}
END_TEST

/* Two addresses of one /64 share a bucket; the next /64 has its own. */
START_TEST(ipv6_block_shares_a_bucket)
{
    struct ratelimit *rl = NULL;
    ck_assert_int_eq(ratelimit_new(0, 1.0, 1, &rl), 0);
    const char *a[] = {"2001:db8:1:2::a", "2001:db8:1:2::b", "2001:db8:1:3::a"};
    unsigned wait[3];
    for (int i = 0; i < 3; i++) {
        struct sockaddr_in6 in6;
        memset(&in6, 0, sizeof(in6));
        in6.sin6_family = AF_INET6;
        ck_assert_int_eq(inet_pton(AF_INET6, a[i], &in6.sin6_addr), 1);
        char name[RATELIMIT_CLIENT_MAX + 1];
        ratelimit_client_of_address((const struct sockaddr *)&in6, name, sizeof(name));
        wait[i] = ratelimit_check_at(rl, name, 1000);
    }
    ck_assert_uint_eq(wait[0], 0);
    ck_assert_uint_ge(wait[1], 1);  /* same /64: the one token is gone */
    ck_assert_uint_eq(wait[2], 0);  /* another /64 */
    ratelimit_free(rl);
}
END_TEST

#define N(a) ((int)(sizeof(a) / sizeof((a)[0])))

Suite *suite_ratelimit(void)
{
    Suite *s = suite_create("ratelimit");

    TCase *tc = tcase_create("bucket");
    tcase_set_timeout(tc, UNIT_TIMEOUT_LOGIC);
    tcase_add_test(tc, burst_then_refuse);
    tcase_add_loop_test(tc, retry_after_table, 0, N(waits));
    tcase_add_test(tc, refill_over_time);
    tcase_add_test(tc, time_going_back);
    tcase_add_test(tc, clients_are_isolated);
    tcase_add_test(tc, long_names_cut);
    tcase_add_test(tc, burst_zero_counts_as_one);
    tcase_add_loop_test(tc, bad_rates_refused, 0, N(bad_rates));
    tcase_add_test(tc, http_adapter_uses_clock);
    tcase_add_loop_test(tc, client_of_address, 0, N(addresses));
    tcase_add_test(tc, ipv6_block_shares_a_bucket);
    suite_add_tcase(s, tc);

    tc = tcase_create("table");
    tcase_set_timeout(tc, UNIT_TIMEOUT_IO);
    tcase_add_loop_test(tc, capacity_rounding, 0, N(capacities));
    tcase_add_test(tc, eviction_bounds_memory);
    tcase_add_test(tc, lru_keeps_active_client);
    tcase_add_test(tc, evicted_client_starts_full);
    suite_add_tcase(s, tc);

    tc = tcase_create("live");
    tcase_set_timeout(tc, UNIT_TIMEOUT_IO);
    tcase_add_test(tc, reconfigure_live);
    tcase_add_test(tc, rate_zero_is_off);
    tcase_add_test(tc, four_threads);
    suite_add_tcase(s, tc);
    return s;
}
