/*
 * test_trace.c — traceparent parsing (valid and every invalid form), format,
 * new traces and child spans.
 */
#include <check.h>
#include <errno.h>
#include <string.h>

#include "trace.h"
#include "timeouts.h"

Suite *suite_trace(void);

#define TID "4bf92f3577b34da6a3ce929d0e0e4736"
#define SID "00f067aa0ba902b7"
#define VALID "00-" TID "-" SID "-01"

struct parse_case {
    const char *header;
    int rc;
    const char *trace_id;   /* expected when rc == 0 */
    const char *span_id;
    int flags;
};

static const struct parse_case valid_cases[] = {
    {VALID, 0, TID, SID, 0x01},
    {"00-" TID "-" SID "-00", 0, TID, SID, 0x00},
    {"00-" TID "-" SID "-ff", 0, TID, SID, 0xff},
    {"00-00000000000000000000000000000001-0000000000000001-01", 0,
     "00000000000000000000000000000001", "0000000000000001", 0x01},
    /* a future version: first four fields, then nothing or '-' */
    {"01-" TID "-" SID "-01", 0, TID, SID, 0x01},
    {"01-" TID "-" SID "-01-xyz", 0, TID, SID, 0x01},
    {"cc-" TID "-" SID "-09-what-the-future-will-be-like", 0, TID, SID, 0x09},
    {"fe-" TID "-" SID "-01-", 0, TID, SID, 0x01},
};

START_TEST(parse_valid)
{
    const struct parse_case *c = &valid_cases[_i];
    struct trace_context tc;

    ck_assert_int_eq(trace_parse(c->header, &tc), 0);
    ck_assert_str_eq(tc.trace_id, c->trace_id);
    ck_assert_str_eq(tc.span_id, c->span_id);
    ck_assert_int_eq(tc.flags, c->flags);
}
END_TEST

static const char *const invalid_headers[] = {
    NULL,
    "",
    "00",
    "00-",
    "00-" TID "-" SID "-0",                   /* 54 */
    "00-" TID "-" SID "-011",                 /* 56 */
    "00-" TID "-" SID "-01-",                 /* version 00 has nothing after */
    "00-" TID "-" SID "-01-xyz",
    "00-" TID "-" SID "-01 ",
    " 00-" TID "-" SID "-01",
    "00-" TID "0-" SID "-01",                 /* trace id 33 */
    "00-" "4bf92f3577b34da6a3ce929d0e0e473" "-" SID "-01",
    "00-4BF92F3577B34DA6A3CE929D0E0E4736-" SID "-01", /* upper-case hex */
    "00-" TID "-00F067AA0BA902B7-01",
    "00-" TID "-" SID "-0A",
    "0A-" TID "-" SID "-01",
    "00-00000000000000000000000000000000-" SID "-01", /* all-zero trace id */
    "00-" TID "-0000000000000000-01",         /* all-zero span id */
    "01-00000000000000000000000000000000-" SID "-01-x",
    "ff-" TID "-" SID "-01",                  /* version ff */
    "ff-" TID "-" SID "-01-xyz",
    "00_" TID "-" SID "-01",                  /* bad separators */
    "00-" TID "_" SID "-01",
    "00-" TID "-" SID "_01",
    "00-4bf92f3577b34da6a3ce929d0e0e473g-" SID "-01", /* not hex */
    "00-" TID "-00f067aa0ba902bz-01",
    "00-" TID "-" SID "-0g",
    "0g-" TID "-" SID "-01",
    "00-" TID "-" SID "--1",
    "-00-" TID "-" SID "-1",
    "01-" TID "-" SID "-01xyz",               /* future version: next char must be '-' */
    "01-" TID "-" SID "-01.xyz",
};

START_TEST(parse_invalid)
{
    struct trace_context tc;

    memset(&tc, 'k', sizeof(tc));
    ck_assert_int_eq(trace_parse(invalid_headers[_i], &tc), -EINVAL);
    ck_assert_int_eq(tc.trace_id[0], 'k'); /* untouched on failure */
}
END_TEST

static const char *const round_trip_headers[] = {
    VALID,
    "00-" TID "-" SID "-00",
    "00-" TID "-" SID "-ff",
    "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
};

START_TEST(format_parse_round_trip)
{
    struct trace_context tc;
    char out[TRACEPARENT_LEN + 1];

    ck_assert_int_eq(trace_parse(round_trip_headers[_i], &tc), 0);
    trace_format(&tc, out);
    ck_assert_str_eq(out, round_trip_headers[_i]);
}
END_TEST

START_TEST(future_version_formats_as_00)
{
    struct trace_context tc;
    char out[TRACEPARENT_LEN + 1];

    ck_assert_int_eq(trace_parse("01-" TID "-" SID "-01-xyz", &tc), 0);
    trace_format(&tc, out);
    ck_assert_str_eq(out, VALID);
}
END_TEST

START_TEST(new_trace_is_valid)
{
    struct trace_context a, b, back;
    char out[TRACEPARENT_LEN + 1];

    ck_assert_int_eq(trace_new(&a), 0);
    ck_assert_int_eq(trace_new(&b), 0);
    ck_assert_int_eq(a.flags, 0x01);
    trace_format(&a, out);
    ck_assert_uint_eq(strlen(out), TRACEPARENT_LEN);
    ck_assert_int_eq(trace_parse(out, &back), 0);
    ck_assert_str_eq(back.trace_id, a.trace_id);
    ck_assert_str_eq(back.span_id, a.span_id);
    ck_assert_str_ne(a.trace_id, b.trace_id);
    ck_assert_str_ne(a.span_id, b.span_id);
}
END_TEST

START_TEST(child_keeps_trace_changes_span)
{
    struct trace_context parent, child;

    ck_assert_int_eq(trace_parse("00-" TID "-" SID "-00", &parent), 0);
    ck_assert_int_eq(trace_child(&parent, &child), 0);
    ck_assert_str_eq(child.trace_id, TID);
    ck_assert_int_eq(child.flags, 0x00);
    ck_assert_str_ne(child.span_id, SID);
    ck_assert_uint_eq(strlen(child.span_id), SPAN_ID_HEX_LEN);
    ck_assert_uint_eq(strspn(child.span_id, "0123456789abcdef"), SPAN_ID_HEX_LEN);
}
END_TEST

START_TEST(child_in_place)
{
    struct trace_context tc;

    ck_assert_int_eq(trace_parse(VALID, &tc), 0);
    ck_assert_int_eq(trace_child(&tc, &tc), 0);
    ck_assert_str_eq(tc.trace_id, TID);
    ck_assert_str_ne(tc.span_id, SID);
    ck_assert_int_eq(tc.flags, 0x01);
}
END_TEST

#define N(a) (int)(sizeof(a) / sizeof((a)[0]))

Suite *suite_trace(void)
{
    Suite *s = suite_create("trace");
    TCase *parse = tcase_create("parse");
    tcase_set_timeout(parse, UNIT_TIMEOUT_LOGIC);
    TCase *make = tcase_create("make");
    tcase_set_timeout(make, UNIT_TIMEOUT_LOGIC);

    tcase_add_loop_test(parse, parse_valid, 0, N(valid_cases));
    tcase_add_loop_test(parse, parse_invalid, 0, N(invalid_headers));
    tcase_add_loop_test(parse, format_parse_round_trip, 0, N(round_trip_headers));
    tcase_add_test(parse, future_version_formats_as_00);

    tcase_add_test(make, new_trace_is_valid);
    tcase_add_test(make, child_keeps_trace_changes_span);
    tcase_add_test(make, child_in_place);

    suite_add_tcase(s, parse);
    suite_add_tcase(s, make);
    return s;
}
