/*
 * test_ids.c — ULIDs (shape, validity, time, order), random bytes and hex, clocks.
 */
#include <check.h>
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ids.h"
#include "timeouts.h"

Suite *suite_ids(void);

#define ALPHABET "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
#define ULID_TIME_MAX ((UINT64_C(1) << 48) - 1)

START_TEST(ulid_shape)
{
    char id[ID_ULID_LEN + 1];

    ck_assert_int_eq(ids_ulid_new(id), 0);
    ck_assert_uint_eq(strlen(id), ID_ULID_LEN);
    ck_assert_uint_eq(strspn(id, ALPHABET), ID_ULID_LEN);
    ck_assert_int_eq(ids_ulid_valid(id), 1);
}
END_TEST

START_TEST(ulid_new_uses_now)
{
    char id[ID_ULID_LEN + 1];
    uint64_t before = (uint64_t)ids_now_ms();

    ck_assert_int_eq(ids_ulid_new(id), 0);
    ck_assert_uint_ge(ids_ulid_time_ms(id), before);
    ck_assert_uint_le(ids_ulid_time_ms(id), (uint64_t)ids_now_ms());
}
END_TEST

/* Ascending: later_ms_sorts_after relies on it. */
static const uint64_t times[] = {
    0, 1, 31, 32, 1000, UINT64_C(0xFFFFFFFFFF), 1700000000000, 1700000000001, ULID_TIME_MAX,
};

START_TEST(ulid_time_round_trip)
{
    char id[ID_ULID_LEN + 1];

    ck_assert_int_eq(ids_ulid_at(times[_i], id), 0);
    ck_assert_int_eq(ids_ulid_valid(id), 1);
    ck_assert_uint_eq(ids_ulid_time_ms(id), times[_i]);
}
END_TEST

struct encoding_case {
    uint64_t ms;
    const char *time_part;
};

static const struct encoding_case encoding_cases[] = {
    {0, "0000000000"},
    {ULID_TIME_MAX, "7ZZZZZZZZZ"},
    {1469918176385, "01ARYZ6S41"}, /* the ULID spec's example */
};

START_TEST(ulid_time_known_encoding)
{
    char id[ID_ULID_LEN + 1];

    ck_assert_int_eq(ids_ulid_at(encoding_cases[_i].ms, id), 0);
    id[10] = '\0';
    ck_assert_str_eq(id, encoding_cases[_i].time_part);
}
END_TEST

START_TEST(ulid_time_out_of_range)
{
    char id[ID_ULID_LEN + 1];

    ck_assert_int_eq(ids_ulid_at(ULID_TIME_MAX + 1, id), -ERANGE);
}
END_TEST

START_TEST(ulids_differ_within_one_ms)
{
    char a[ID_ULID_LEN + 1], b[ID_ULID_LEN + 1];

    ck_assert_int_eq(ids_ulid_at(1700000000000, a), 0);
    ck_assert_int_eq(ids_ulid_at(1700000000000, b), 0);
    ck_assert_str_ne(a, b);
}
END_TEST

START_TEST(later_ms_sorts_after)
{
    char prev[ID_ULID_LEN + 1], next[ID_ULID_LEN + 1];

    ck_assert_int_eq(ids_ulid_at(times[0], prev), 0);
    for (size_t i = 1; i < sizeof(times) / sizeof(times[0]); i++) {
        ck_assert_int_eq(ids_ulid_at(times[i], next), 0);
        ck_assert_int_lt(strcmp(prev, next), 0);
        memcpy(prev, next, sizeof(prev));
    }
}
END_TEST

/* Random part uses all of the alphabet over many ids (not a counter, not stuck). */
START_TEST(ulid_random_part_spread)
{
    char id[ID_ULID_LEN + 1], seen[sizeof(ALPHABET)] = {0};

    for (int n = 0; n < 200; n++) {
        ck_assert_int_eq(ids_ulid_at(42, id), 0);
        for (int i = 10; i < ID_ULID_LEN; i++)
            seen[strchr(ALPHABET, id[i]) - ALPHABET] = 1;
    }
    ck_assert_ptr_null(memchr(seen, 0, 32));
}
END_TEST

struct valid_case {
    const char *s;
    int valid;
};

static const struct valid_case valid_cases[] = {
    {"01ARZ3NDEKTSV4RRFFQ69G5FAV", 1},
    {"00000000000000000000000000", 1},
    {"7ZZZZZZZZZZZZZZZZZZZZZZZZZ", 1},
    {"01arz3ndektsv4rrffq69g5fav", 0}, /* lower case */
    {"01ARZ3NDEKTSV4RRFFQ69G5FAv", 0},
    {"01ARZ3NDEKTSV4RRFFQ69G5FAI", 0}, /* I L O U are not Crockford */
    {"01ARZ3NDEKTSV4RRFFQ69G5FAL", 0},
    {"01ARZ3NDEKTSV4RRFFQ69G5FAO", 0},
    {"01ARZ3NDEKTSV4RRFFQ69G5FAU", 0},
    {"01ARZ3NDEKTSV4RRFFQ69G5FA", 0},  /* 25 */
    {"01ARZ3NDEKTSV4RRFFQ69G5FAVX", 0}, /* 27 */
    {"81ARZ3NDEKTSV4RRFFQ69G5FAV", 0}, /* first char > 7 */
    {"Z1ARZ3NDEKTSV4RRFFQ69G5FAV", 0},
    {"01ARZ3NDEK-SV4RRFFQ69G5FAV", 0},
    {"01ARZ3NDEK SV4RRFFQ69G5FAV", 0},
    {"", 0},
    {NULL, 0},
};

START_TEST(ulid_validity)
{
    ck_assert_int_eq(ids_ulid_valid(valid_cases[_i].s), valid_cases[_i].valid);
}
END_TEST

START_TEST(ulid_time_of_invalid_is_zero)
{
    ck_assert_uint_eq(ids_ulid_time_ms("0IARZ3NDEKTSV4RRFFQ69G5FAV"), 0);
    ck_assert_uint_eq(ids_ulid_time_ms(""), 0);
}
END_TEST

static const size_t hex_sizes[] = {0, 1, 8, 16, 31, 32, 33, 100};

START_TEST(random_hex_shape)
{
    size_t n = hex_sizes[_i];
    char *a = malloc(2 * n + 1), *b = malloc(2 * n + 1);

    ck_assert_int_eq(ids_random_hex(a, n), 0);
    ck_assert_int_eq(ids_random_hex(b, n), 0);
    ck_assert_uint_eq(strlen(a), 2 * n);
    ck_assert_uint_eq(strspn(a, "0123456789abcdef"), 2 * n);
    if (n >= 8)
        ck_assert_str_ne(a, b);
    free(a);
    free(b);
}
END_TEST

START_TEST(random_bytes_fill_large_buffer)
{
    size_t n = 1 << 20;
    unsigned char *buf = calloc(n, 1);
    size_t zeros = 0;

    ck_assert_int_eq(ids_random_bytes(buf, n), 0);
    for (size_t i = n - 4096; i < n; i++)
        zeros += buf[i] == 0;
    ck_assert_uint_lt(zeros, 64); /* ~16 expected; the tail was written too */
    ck_assert_int_eq(ids_random_bytes(buf, 0), 0);
    free(buf);
}
END_TEST

/*
 * Small draws come from a per-thread pool refilled 256 bytes at a time. Draws
 * of sizes that do not divide it cross refills; no draw may repeat another,
 * within a thread or across threads (each has a pool of its own). Repeats
 * would mean a byte handed out twice: 2^-64 by chance for 8-byte draws.
 */
enum { DRAWS = 400, DRAW_THREADS = 4 };

struct draws {
    uint64_t v[DRAWS];
};

static void draw_all(struct draws *d)
{
    for (size_t i = 0; i < DRAWS; i++) {
        unsigned char odd[3];
        ck_assert_int_eq(ids_random_bytes(&d->v[i], sizeof(d->v[i])), 0);
        ck_assert_int_eq(ids_random_bytes(odd, sizeof(odd)), 0); /* misalign the next */
    }
}

static void *draw_main(void *arg)
{
    draw_all(arg);
    return NULL;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

START_TEST(random_small_draws_never_repeat)
{
    static struct draws d[DRAW_THREADS];
    pthread_t t[DRAW_THREADS];
    draw_all(&d[0]); /* this thread, then others alongside each other */
    for (int i = 1; i < DRAW_THREADS; i++)
        ck_assert_int_eq(pthread_create(&t[i], NULL, draw_main, &d[i]), 0);
    for (int i = 1; i < DRAW_THREADS; i++)
        ck_assert_int_eq(pthread_join(t[i], NULL), 0);
    uint64_t *all = (uint64_t *)d;
    size_t n = (size_t)DRAW_THREADS * DRAWS;
    qsort(all, n, sizeof(uint64_t), cmp_u64);
    for (size_t i = 1; i < n; i++)
        ck_assert_msg(all[i] != all[i - 1], "a random draw repeated: %016llx",
                      (unsigned long long)all[i]);
}
END_TEST

START_TEST(clocks)
{
    double t0 = ids_monotonic_seconds(), t1;

    ck_assert_int_gt(ids_now_ms(), INT64_C(1577836800000)); /* after 2020 */
    ck_assert_int_lt(ids_now_ms(), INT64_C(4102444800000)); /* before 2100 */
    t1 = ids_monotonic_seconds();
    ck_assert_double_ge(t1, t0);
    ck_assert_double_gt(t0, 0.0);
}
END_TEST

Suite *suite_ids(void)
{
    Suite *s = suite_create("ids");
    TCase *ulid = tcase_create("ulid");
    tcase_set_timeout(ulid, UNIT_TIMEOUT_LOGIC);
    TCase *random = tcase_create("random");
    tcase_set_timeout(random, UNIT_TIMEOUT_LOGIC);

    tcase_add_test(ulid, ulid_shape);
    tcase_add_test(ulid, ulid_new_uses_now);
    tcase_add_loop_test(ulid, ulid_time_round_trip, 0, sizeof(times) / sizeof(times[0]));
    tcase_add_loop_test(ulid, ulid_time_known_encoding, 0,
                        sizeof(encoding_cases) / sizeof(encoding_cases[0]));
    tcase_add_test(ulid, ulid_time_out_of_range);
    tcase_add_test(ulid, ulids_differ_within_one_ms);
    tcase_add_test(ulid, later_ms_sorts_after);
    tcase_add_test(ulid, ulid_random_part_spread);
    tcase_add_loop_test(ulid, ulid_validity, 0, sizeof(valid_cases) / sizeof(valid_cases[0]));
    tcase_add_test(ulid, ulid_time_of_invalid_is_zero);

    tcase_add_loop_test(random, random_hex_shape, 0, sizeof(hex_sizes) / sizeof(hex_sizes[0]));
    tcase_add_test(random, random_bytes_fill_large_buffer);
    tcase_add_test(random, random_small_draws_never_repeat);
    tcase_add_test(random, clocks);

    suite_add_tcase(s, ulid);
    suite_add_tcase(s, random);
    return s;
}
