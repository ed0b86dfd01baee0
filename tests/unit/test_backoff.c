/* test_backoff.c — the retry delay formula and its jitter bounds. */
#include <check.h>
#include <stdint.h>

#include "backoff.h"
#include "timeouts.h"

Suite *suite_backoff(void);

static const struct {
    uint64_t base, max;
    uint32_t attempt;
    uint64_t cap;
} caps[] = {
    {1000, 300000, 1, 1000},    {1000, 300000, 2, 2000},     {1000, 300000, 3, 4000},
    {1000, 300000, 9, 256000},  {1000, 300000, 10, 300000},  {1000, 300000, 1000, 300000},
    {1000, 300000, 0, 1000},    {0, 300000, 5, 0},           {500, 500, 7, 500},
    {UINT64_MAX / 2 + 1, UINT64_MAX, 3, UINT64_MAX},
};

START_TEST(cap_follows_formula)
{
    ck_assert_uint_eq(backoff_cap_ms(caps[_i].base, caps[_i].max, caps[_i].attempt), caps[_i].cap);
}
END_TEST

START_TEST(jitter_stays_within_cap)
{
    for (uint64_t r = 0; r < 100000; r += 7) {
        uint64_t d = backoff_delay_ms(1000, 300000, 3, r * 2654435761u);
        ck_assert_uint_le(d, 4000);
    }
}
END_TEST

START_TEST(jitter_spans_the_window)
{
    ck_assert_uint_eq(backoff_delay_ms(1000, 300000, 1, 0), 0);
    ck_assert_uint_eq(backoff_delay_ms(1000, 300000, 1, 1000), 1000);
    ck_assert_uint_eq(backoff_delay_ms(1000, 300000, 1, 1001), 0);
}
END_TEST

Suite *suite_backoff(void)
{
    Suite *s = suite_create("backoff");
    TCase *tc = tcase_create("formula");
    tcase_set_timeout(tc, UNIT_TIMEOUT_LOGIC);
    tcase_add_loop_test(tc, cap_follows_formula, 0, (int)(sizeof(caps) / sizeof(caps[0])));
    tcase_add_test(tc, jitter_stays_within_cap);
    tcase_add_test(tc, jitter_spans_the_window);
    suite_add_tcase(s, tc);
    return s;
}
