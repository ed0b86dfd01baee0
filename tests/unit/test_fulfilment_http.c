/*
 * test_fulfilment_http.c — what an HTTP answer decides (fulfilment_http.h):
 * the class of each status and the reading of Retry-After. The requests
 * themselves run against real receivers in tests/integration/test_threaded_fulfilment_http.sh.
 */
#include <check.h>
#include <stdint.h>

#include "fulfilment.h"
#include "fulfilment_http.h"
#include "timeouts.h"

Suite *suite_fulfilment_http(void);

static const struct {
    long status;
    int want;
} statuses[] = {
    {200, FULFILMENT_OK},       {201, FULFILMENT_OK},       {202, FULFILMENT_OK},
    {204, FULFILMENT_OK},       {299, FULFILMENT_OK},       {408, FULFILMENT_FAILED},
    {425, FULFILMENT_FAILED},   {429, FULFILMENT_FAILED},   {500, FULFILMENT_FAILED},
    {502, FULFILMENT_FAILED},   {503, FULFILMENT_FAILED},   {599, FULFILMENT_FAILED},
    {100, FULFILMENT_FAILED},   {0, FULFILMENT_FAILED},     {300, FULFILMENT_REJECTED},
    {301, FULFILMENT_REJECTED}, {302, FULFILMENT_REJECTED}, {304, FULFILMENT_REJECTED},
    {400, FULFILMENT_REJECTED}, {401, FULFILMENT_REJECTED}, {403, FULFILMENT_REJECTED},
    {404, FULFILMENT_REJECTED}, {409, FULFILMENT_REJECTED}, {422, FULFILMENT_REJECTED},
    {499, FULFILMENT_REJECTED}, {600, FULFILMENT_REJECTED},
};

START_TEST(status_decides_the_class)
{
    ck_assert_msg(fulfilment_http_classify(statuses[_i].status) == statuses[_i].want,
                  "status %ld: got %d, want %d", statuses[_i].status,
                  fulfilment_http_classify(statuses[_i].status), statuses[_i].want);
}
END_TEST

#define NOW 1614265330 /* Thu, 25 Feb 2021 15:02:10 GMT */

static const struct {
    const char *value;
    int64_t want_ms;
} retry_afters[] = {
    {"0", 0},
    {"1", 1000},
    {"  120 ", 120000},
    {"86400", 86400000},
    {"99999999999999999999", INT64_MAX},
    {"Thu, 25 Feb 2021 15:02:40 GMT", 30000},
    {"Thu, 25 Feb 2021 15:00:00 GMT", 0}, /* in the past: now */
    {"", -1},
    {"   ", -1},
    {"-5", -1},
    {"1.5", -1},
    {"10s", -1},
    {"soon", -1},
};

START_TEST(retry_after_values)
{
    ck_assert_msg(fulfilment_http_retry_after_ms(retry_afters[_i].value, NOW) ==
                      retry_afters[_i].want_ms,
                  "'%s': got %lld, want %lld", retry_afters[_i].value,
                  (long long)fulfilment_http_retry_after_ms(retry_afters[_i].value, NOW),
                  (long long)retry_afters[_i].want_ms);
}
END_TEST

/* A call that never ran frees everything it holds (ASan would tell). */
START_TEST(abandoned_call_frees_everything)
{
    struct fulfilment_http_options o = {.url = "http://127.0.0.1:9/", .timeout_ms = 1000};
    struct fulfilment_http_call *c = NULL;
    char error[128];
    ck_assert_int_eq(
        fulfilment_http_call_new(&o, "01ABCDEFGHJKMNPQRSTVWXYZ01",
                                 "00-0123456789abcdef0123456789abcdef-0123456789abcdef-01", "{}", 2,
                                 &c, error, sizeof(error)),
        0);
    ck_assert_ptr_nonnull(fulfilment_http_call_handle(c));
    fulfilment_http_call_abandon(c);
    fulfilment_http_call_abandon(NULL);
}
END_TEST

#define N(a) ((int)(sizeof(a) / sizeof((a)[0])))

Suite *suite_fulfilment_http(void)
{
    Suite *s = suite_create("fulfilment_http");
    TCase *tc = tcase_create("answers");
    tcase_set_timeout(tc, UNIT_TIMEOUT_LOGIC);
    tcase_add_loop_test(tc, status_decides_the_class, 0, N(statuses));
    tcase_add_loop_test(tc, retry_after_values, 0, N(retry_afters));
    tcase_add_test(tc, abandoned_call_frees_everything);
    suite_add_tcase(s, tc);
    return s;
}
