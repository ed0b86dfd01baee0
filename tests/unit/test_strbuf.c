/*
 * test_strbuf.c — the growable string: growth past the initial capacity,
 * printf longer than its stack buffer, the empty text, and what happens once
 * memory ran out (an impossible size stands in for a failed realloc).
 */
#include <check.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "strbuf.h"
#include "timeouts.h"

Suite *suite_strbuf(void);

START_TEST(grows_and_stays_terminated)
{
    struct strbuf b = STRBUF_INIT;
    char want[5001];
    for (size_t i = 0; i < 5000; i++) {
        want[i] = (char)('a' + i % 26);
        strbuf_add(&b, &want[i], 1);
        ck_assert_uint_eq(strlen(b.p), i + 1); /* NUL after every append */
    }
    want[5000] = '\0';
    ck_assert_uint_eq(b.len, 5000);
    char *text = strbuf_finish(&b);
    ck_assert_str_eq(text, want);
    ck_assert_ptr_null(b.p); /* finish hands the text over */
    free(text);
}
END_TEST

START_TEST(printf_longer_than_its_stack_buffer)
{
    struct strbuf b = STRBUF_INIT;
    char long_word[1000];
    memset(long_word, 'x', sizeof(long_word) - 1);
    long_word[sizeof(long_word) - 1] = '\0';
    strbuf_str(&b, "<");
    strbuf_printf(&b, "%d:%s:%s", 42, long_word, "end");
    strbuf_printf(&b, "%s", "");
    char *text = strbuf_finish(&b);
    ck_assert_uint_eq(strlen(text), 1 + 3 + 999 + 4);
    ck_assert_int_eq(strncmp(text, "<42:xxx", 7), 0);
    ck_assert_str_eq(text + strlen(text) - 4, ":end");
    free(text);
}
END_TEST

START_TEST(nothing_added_is_the_empty_text)
{
    struct strbuf b = STRBUF_INIT;
    char *text = strbuf_finish(&b);
    ck_assert_ptr_nonnull(text);
    ck_assert_str_eq(text, "");
    free(text);
}
END_TEST

START_TEST(out_of_memory_sticks_and_finish_gives_null)
{
    struct strbuf b = STRBUF_INIT;
    strbuf_str(&b, "kept so far");
    ck_assert(!strbuf_reserve(&b, SIZE_MAX - 8)); /* no realloc can give this */
    ck_assert(b.failed);
    strbuf_str(&b, "ignored");
    strbuf_printf(&b, "%s", "ignored too");
    ck_assert_uint_eq(b.len, strlen("kept so far"));
    ck_assert_ptr_null(strbuf_finish(&b)); /* and nothing leaks (ASan) */
}
END_TEST

Suite *suite_strbuf(void)
{
    Suite *s = suite_create("strbuf");
    TCase *tc = tcase_create("strbuf");
    tcase_set_timeout(tc, UNIT_TIMEOUT_LOGIC);
    tcase_add_test(tc, grows_and_stays_terminated);
    tcase_add_test(tc, printf_longer_than_its_stack_buffer);
    tcase_add_test(tc, nothing_added_is_the_empty_text);
    tcase_add_test(tc, out_of_memory_sticks_and_finish_gives_null);
    suite_add_tcase(s, tc);
    return s;
}
