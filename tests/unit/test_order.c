/*
 * test_order.c — order_parse validation (every edge of every SPEC rule),
 * malformed bodies, and the canonical JSON.
 *
 * Errors are compared as one string, "field: message; field: message", so a
 * failure prints everything the parser said next to what was expected.
 */
#include <check.h>
#include <jansson.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "order.h"
#include "timeouts.h"

Suite *suite_order(void);

#define EXAMPLE "{\"customer_id\": \"CUST-001\", \"items\": [{\"item\": \"Laptop\", \"quantity\": 1}]}"
#define OK_ITEMS "[{\"item\":\"x\",\"quantity\":1}]"

/* ---- helpers ---------------------------------------------------------- */

struct result {
    int rc;
    char errors[ORDER_FIELD_ERRORS_MAX * 200];
    struct order order;
    struct order_validation v;
};

static void join_errors(const struct order_validation *v, char *out, size_t size)
{
    size_t used = 0;

    out[0] = '\0';
    for (size_t i = 0; i < v->count && used < size; i++)
        used += (size_t)snprintf(out + used, size - used, "%s%s: %s", i ? "; " : "",
                                 v->errors[i].field, v->errors[i].message);
}

/* Parses body[0..len) from an exact-size heap copy, so ASan sees any overread. */
static void parse_n(const char *body, size_t len, struct result *r)
{
    char *copy = malloc(len > 0 ? len : 1);

    ck_assert_ptr_nonnull(copy);
    memcpy(copy, body, len);
    r->rc = order_parse(copy, len, &r->order, &r->v);
    join_errors(&r->v, r->errors, sizeof(r->errors));
    free(copy);
}

static void parse(const char *body, struct result *r)
{
    parse_n(body, strlen(body), r);
}

/* unit repeated n times; caller frees. */
static char *repeat(const char *unit, size_t n)
{
    size_t len = strlen(unit);
    char *s = malloc(len * n + 1);

    ck_assert_ptr_nonnull(s);
    for (size_t i = 0; i < n; i++)
        memcpy(s + i * len, unit, len);
    s[len * n] = '\0';
    return s;
}

static char *format_body(const char *fmt, const char *a, const char *b)
{
    size_t size = strlen(fmt) + strlen(a) + strlen(b) + 1;
    char *s = malloc(size);

    ck_assert_ptr_nonnull(s);
    snprintf(s, size, fmt, a, b);
    return s;
}

static void expect(const struct result *r, int rc, const char *errors)
{
    ck_assert_str_eq(r->errors, errors);
    ck_assert_int_eq(r->rc, rc);
}

/* ---- the SPEC example ------------------------------------------------- */

START_TEST(spec_example_is_valid)
{
    struct result r;

    parse(EXAMPLE, &r);
    expect(&r, ORDER_OK, "");
    ck_assert_str_eq(r.order.customer_id, "CUST-001");
    ck_assert_uint_eq(r.order.item_count, 1);
    ck_assert_str_eq(r.order.items[0].item, "Laptop");
    ck_assert_int_eq(r.order.items[0].quantity, 1);
    order_free(&r.order);
}
END_TEST

/* ---- string lengths, counted in characters ---------------------------- */

struct length_case {
    const char *field;      /* "customer_id" or "item" */
    const char *unit;       /* one character, possibly several bytes */
    size_t n;
    const char *errors;
};

static const struct length_case length_cases[] = {
    {"customer_id", "a", 0, "customer_id: must not be empty"},
    {"customer_id", "a", 1, ""},
    {"customer_id", "a", 64, ""},
    {"customer_id", "a", 65, "customer_id: must be at most 64 characters"},
    {"customer_id", "\xc3\xa9", 1, ""},                   /* é, 2 bytes */
    {"customer_id", "\xc3\xa9", 64, ""},
    {"customer_id", "\xc3\xa9", 65, "customer_id: must be at most 64 characters"},
    {"customer_id", "\\u00e9", 64, ""},                   /* é, escaped */
    {"customer_id", "\xe2\x82\xac", 64, ""},              /* €, 3 bytes */
    {"customer_id", "\xf0\x9f\x98\x80", 64, ""},          /* 😀, 4 bytes */
    {"customer_id", "\xf0\x9f\x98\x80", 65, "customer_id: must be at most 64 characters"},
    {"customer_id", "\\ud83d\\ude00", 64, ""},            /* 😀 as a surrogate pair */
    {"item", "a", 0, "items[0].item: must not be empty"},
    {"item", "a", 1, ""},
    {"item", "a", 128, ""},
    {"item", "a", 129, "items[0].item: must be at most 128 characters"},
    {"item", "\xc3\xa9", 128, ""},
    {"item", "\xc3\xa9", 129, "items[0].item: must be at most 128 characters"},
    {"item", "\xe2\x82\xac", 128, ""},
    {"item", "\xe2\x82\xac", 129, "items[0].item: must be at most 128 characters"},
};

START_TEST(string_lengths)
{
    const struct length_case *c = &length_cases[_i];
    char *text = repeat(c->unit, c->n);
    int is_item = strcmp(c->field, "item") == 0;
    char *body = format_body("{\"customer_id\":\"%s\",\"items\":[{\"item\":\"%s\",\"quantity\":1}]}",
                             is_item ? "c" : text, is_item ? text : "x");
    struct result r;

    parse(body, &r);
    expect(&r, c->errors[0] ? ORDER_EINVALID : ORDER_OK, c->errors);
    order_free(&r.order);
    free(body);
    free(text);
}
END_TEST

/* ---- control characters ----------------------------------------------- */

struct text_case {
    const char *json_value; /* as written in the body */
    int ok;
};

static const struct text_case control_cases[] = {
    {"\"a\\u0001\"", 0},
    {"\"\\u001f\"", 0},
    {"\"a\\tb\"", 0},
    {"\"a\\nb\"", 0},
    {"\"a\\u007fb\"", 0},
    {"\"a\x7f" "b\"", 0},        /* raw DEL is legal JSON, still a control character */
    {"\"a\\u0080b\"", 0},
    {"\"a\xc2\x85" "b\"", 0},    /* raw U+0085 (NEL) */
    {"\"a\\u009fb\"", 0},
    {"\"a\\u00a0b\"", 1},        /* no-break space is printable */
    {"\"a b\"", 1},
    {"\"~\"", 1},
    {"\"\\u0020\"", 1},
};

START_TEST(control_characters_in_customer_id)
{
    const struct text_case *c = &control_cases[_i];
    char *body = format_body("{\"customer_id\":%s,\"items\":" OK_ITEMS "%s}", c->json_value, "");
    struct result r;

    parse(body, &r);
    expect(&r, c->ok ? ORDER_OK : ORDER_EINVALID,
           c->ok ? "" : "customer_id: must not contain control characters");
    order_free(&r.order);
    free(body);
}
END_TEST

START_TEST(control_characters_in_item)
{
    const struct text_case *c = &control_cases[_i];
    char *body = format_body("{\"customer_id\":\"c\",\"items\":[{\"item\":%s,\"quantity\":1}]%s}",
                             c->json_value, "");
    struct result r;

    parse(body, &r);
    expect(&r, c->ok ? ORDER_OK : ORDER_EINVALID,
           c->ok ? "" : "items[0].item: must not contain control characters");
    order_free(&r.order);
    free(body);
}
END_TEST

START_TEST(too_long_and_control_both_reported)
{
    char *text = repeat("a", 65);
    char *body = format_body("{\"customer_id\":\"%s\\u0001\",\"items\":" OK_ITEMS "%s}", text, "");
    struct result r;

    parse(body, &r);
    expect(&r, ORDER_EINVALID,
           "customer_id: must be at most 64 characters; "
           "customer_id: must not contain control characters");
    free(body);
    free(text);
}
END_TEST

/* ---- number of items -------------------------------------------------- */

static char *items_body(size_t n)
{
    char *entries = repeat(",{\"item\":\"x\",\"quantity\":1}", n);
    char *body = format_body("{\"customer_id\":\"c\",\"items\":[%s]%s}", n ? entries + 1 : "", "");

    free(entries);
    return body;
}

struct count_case {
    size_t n;
    const char *errors;
};

static const struct count_case count_cases[] = {
    {0, "items: must not be empty"},
    {1, ""},
    {2, ""},
    {100, ""},
    {101, "items: must have at most 100 entries"},
    {10000, "items: must have at most 100 entries"},
};

START_TEST(item_counts)
{
    const struct count_case *c = &count_cases[_i];
    char *body = items_body(c->n);
    struct result r;

    parse(body, &r);
    expect(&r, c->errors[0] ? ORDER_EINVALID : ORDER_OK, c->errors);
    if (r.rc == ORDER_OK)
        ck_assert_uint_eq(r.order.item_count, c->n);
    order_free(&r.order);
    free(body);
}
END_TEST

/* ---- quantity --------------------------------------------------------- */

struct quantity_case {
    const char *json;
    int rc;
    const char *errors;
    int value;
};

#define RANGE "items[0].quantity: must be an integer from 1 to 10000"
#define NOT_INT "items[0].quantity: must be an integer"

static const struct quantity_case quantity_cases[] = {
    {"0", ORDER_EINVALID, RANGE, 0},
    {"1", ORDER_OK, "", 1},
    {"10000", ORDER_OK, "", 10000},
    {"10001", ORDER_EINVALID, RANGE, 0},
    {"-1", ORDER_EINVALID, RANGE, 0},
    {"2147483649", ORDER_EINVALID, RANGE, 0},         /* would wrap to 1 as an int */
    {"-9223372036854775808", ORDER_EINVALID, RANGE, 0},
    {"1.0", ORDER_EINVALID, NOT_INT, 0},
    {"1e3", ORDER_EINVALID, NOT_INT, 0},
    {"1.5", ORDER_EINVALID, NOT_INT, 0},
    {"\"1\"", ORDER_EINVALID, NOT_INT, 0},
    {"true", ORDER_EINVALID, NOT_INT, 0},
    {"null", ORDER_EINVALID, NOT_INT, 0},
    {"[1]", ORDER_EINVALID, NOT_INT, 0},
    {"{}", ORDER_EINVALID, NOT_INT, 0},
    {"99999999999999999999", ORDER_EMALFORMED, NULL, 0}, /* too big for jansson */
};

START_TEST(quantities)
{
    const struct quantity_case *c = &quantity_cases[_i];
    char *body = format_body("{\"customer_id\":\"c\",\"items\":[{\"item\":\"x\",\"quantity\":%s}]%s}",
                             c->json, "");
    struct result r;

    parse(body, &r);
    if (c->errors != NULL)
        expect(&r, c->rc, c->errors);
    ck_assert_int_eq(r.rc, c->rc);
    if (r.rc == ORDER_OK)
        ck_assert_int_eq(r.order.items[0].quantity, c->value);
    order_free(&r.order);
    free(body);
}
END_TEST

/* ---- missing fields, wrong types, unknown fields ---------------------- */

struct body_case {
    const char *body;
    int rc;
    const char *errors;
};

static const struct body_case invalid_cases[] = {
    {"{}", ORDER_EINVALID, "customer_id: is required; items: is required"},
    {"{\"items\":" OK_ITEMS "}", ORDER_EINVALID, "customer_id: is required"},
    {"{\"customer_id\":\"c\"}", ORDER_EINVALID, "items: is required"},
    {"{\"customer_id\":\"c\",\"items\":[{\"quantity\":1}]}", ORDER_EINVALID,
     "items[0].item: is required"},
    {"{\"customer_id\":\"c\",\"items\":[{\"item\":\"x\"}]}", ORDER_EINVALID,
     "items[0].quantity: is required"},
    {"{\"customer_id\":\"c\",\"items\":[{}]}", ORDER_EINVALID,
     "items[0].item: is required; items[0].quantity: is required"},
    /* wrong types */
    {"{\"customer_id\":1,\"items\":" OK_ITEMS "}", ORDER_EINVALID, "customer_id: must be a string"},
    {"{\"customer_id\":null,\"items\":" OK_ITEMS "}", ORDER_EINVALID, "customer_id: must be a string"},
    {"{\"customer_id\":true,\"items\":" OK_ITEMS "}", ORDER_EINVALID, "customer_id: must be a string"},
    {"{\"customer_id\":[\"c\"],\"items\":" OK_ITEMS "}", ORDER_EINVALID, "customer_id: must be a string"},
    {"{\"customer_id\":{},\"items\":" OK_ITEMS "}", ORDER_EINVALID, "customer_id: must be a string"},
    {"{\"customer_id\":\"c\",\"items\":\"x\"}", ORDER_EINVALID, "items: must be an array"},
    {"{\"customer_id\":\"c\",\"items\":{}}", ORDER_EINVALID, "items: must be an array"},
    {"{\"customer_id\":\"c\",\"items\":null}", ORDER_EINVALID, "items: must be an array"},
    {"{\"customer_id\":\"c\",\"items\":1}", ORDER_EINVALID, "items: must be an array"},
    {"{\"customer_id\":\"c\",\"items\":[1]}", ORDER_EINVALID, "items[0]: must be an object"},
    {"{\"customer_id\":\"c\",\"items\":[\"Laptop\"]}", ORDER_EINVALID, "items[0]: must be an object"},
    {"{\"customer_id\":\"c\",\"items\":[[]]}", ORDER_EINVALID, "items[0]: must be an object"},
    {"{\"customer_id\":\"c\",\"items\":[{\"item\":5,\"quantity\":1}]}", ORDER_EINVALID,
     "items[0].item: must be a string"},
    {"{\"customer_id\":\"c\",\"items\":[{\"item\":null,\"quantity\":1}]}", ORDER_EINVALID,
     "items[0].item: must be a string"},
    /* top level not an object */
    {"[]", ORDER_EINVALID, ": must be a JSON object"},
    {"[" EXAMPLE "]", ORDER_EINVALID, ": must be a JSON object"},
    {"\"x\"", ORDER_EINVALID, ": must be a JSON object"},
    {"1", ORDER_EINVALID, ": must be a JSON object"},
    {"null", ORDER_EINVALID, ": must be a JSON object"},
    /* unknown fields */
    {"{\"customr_id\":\"c\",\"items\":" OK_ITEMS "}", ORDER_EINVALID,
     "customer_id: is required; customr_id: unknown field"},
    {"{\"customer_id\":\"c\",\"items\":" OK_ITEMS ",\"note\":\"hi\"}", ORDER_EINVALID,
     "note: unknown field"},
    {"{\"customer_id\":\"c\",\"items\":" OK_ITEMS ",\"a\":1,\"b\":2}", ORDER_EINVALID,
     "a: unknown field; b: unknown field"},
    {"{\"customer_id\":\"c\",\"items\":[{\"item\":\"x\",\"quantity\":1,\"price\":9}]}", ORDER_EINVALID,
     "items[0].price: unknown field"},
    {"{\"customer_id\":\"c\",\"items\":[{\"item\":\"x\",\"qty\":1}]}", ORDER_EINVALID,
     "items[0].quantity: is required; items[0].qty: unknown field"},
    {"{\"customer_id\":\"c\",\"items\":[{\"item\":\"x\",\"quantity\":1},{\"item\":\"y\",\"quantity\":2,"
     "\"Item\":\"z\"}]}", ORDER_EINVALID, "items[1].Item: unknown field"},
    {"{\"Customer_id\":\"c\",\"customer_id\":\"c\",\"items\":" OK_ITEMS "}", ORDER_EINVALID,
     "Customer_id: unknown field"},
};

START_TEST(invalid_bodies)
{
    const struct body_case *c = &invalid_cases[_i];
    struct result r;

    parse(c->body, &r);
    expect(&r, c->rc, c->errors);
    ck_assert_ptr_null(r.order.customer_id);
    ck_assert_ptr_null(r.order.items);
    ck_assert_uint_eq(r.order.item_count, 0);
}
END_TEST

START_TEST(every_error_reported)
{
    struct result r;

    parse("{\"customer_id\":\"\",\"x\":1,\"items\":["
          "{\"item\":\"ok\",\"quantity\":1},"
          "{\"item\":\"\",\"quantity\":0},"
          "7,"
          "{\"item\":\"y\",\"quantity\":1.0,\"price\":1}]}",
          &r);
    expect(&r, ORDER_EINVALID,
           "customer_id: must not be empty; "
           "items[1].item: must not be empty; "
           "items[1].quantity: must be an integer from 1 to 10000; "
           "items[2]: must be an object; "
           "items[3].quantity: must be an integer; "
           "items[3].price: unknown field; "
           "x: unknown field");
}
END_TEST

START_TEST(errors_capped)
{
    char *entries = repeat(",{\"item\":\"\",\"quantity\":0}", 50);
    char *body = format_body("{\"customer_id\":\"c\",\"items\":[%s]%s}", entries + 1, "");
    struct result r;

    parse(body, &r);
    ck_assert_int_eq(r.rc, ORDER_EINVALID);
    ck_assert_uint_eq(r.v.count, ORDER_FIELD_ERRORS_MAX);
    ck_assert_str_eq(r.v.errors[ORDER_FIELD_ERRORS_MAX - 1].field, "items[7].quantity");
    free(body);
    free(entries);
}
END_TEST

START_TEST(long_unknown_field_cut_at_character)
{
    char *name = repeat("\xc3\xa9", 60);
    char *body = format_body("{\"customer_id\":\"c\",\"items\":" OK_ITEMS ",\"%s\":1%s}", name, "");
    struct result r;

    parse(body, &r);
    ck_assert_int_eq(r.rc, ORDER_EINVALID);
    ck_assert_uint_eq(r.v.count, 1);
    /* 47 bytes fit; the 24th "é" would be cut in half, so it is dropped. */
    ck_assert_uint_eq(strlen(r.v.errors[0].field), 46);
    ck_assert_str_eq(r.v.errors[0].message, "unknown field");
    free(body);
    free(name);
}
END_TEST

/* ---- malformed -------------------------------------------------------- */

struct malformed_case {
    const char *body;
    size_t len;             /* 0: strlen(body) */
    const char *message;    /* expected in errors[0].message */
};

#define RAW_NUL_BODY "{\"customer_id\":\"a\0b\",\"items\":" OK_ITEMS "}"

static const struct malformed_case malformed_cases[] = {
    {"", 0, "line 1, column"},
    {"   ", 0, "invalid JSON at line 1"},
    {"[", 0, "invalid JSON"},
    {"{", 0, "invalid JSON"},
    {"{\"customer_id\":\"c\",", 0, "invalid JSON"},
    {EXAMPLE " x", 0, "end of file expected"},
    {EXAMPLE EXAMPLE, 0, "end of file expected"},
    {"{\"customer_id\":\"a\",\"customer_id\":\"b\",\"items\":" OK_ITEMS "}", 0, "duplicate"},
    {"{\"customer_id\":\"\xff\",\"items\":" OK_ITEMS "}", 0, "invalid JSON"},
    {"{\"customer_id\":\"\xc3\x28\",\"items\":" OK_ITEMS "}", 0, "invalid JSON"},
    {"{\"customer_id\":\"\xc0\xaf\",\"items\":" OK_ITEMS "}", 0, "invalid JSON"},   /* overlong */
    {"{\"customer_id\":\"\xed\xa0\x80\",\"items\":" OK_ITEMS "}", 0, "invalid JSON"}, /* surrogate */
    {"{\"customer_id\":\"\\ud800\",\"items\":" OK_ITEMS "}", 0, "invalid JSON"},     /* lone */
    {RAW_NUL_BODY, sizeof(RAW_NUL_BODY) - 1, "invalid JSON"},
    {"{\"customer_id\":\"a\tb\",\"items\":" OK_ITEMS "}", 0, "invalid JSON"},       /* raw tab */
    {"{'customer_id':'c'}", 0, "invalid JSON"},
    {"{\"customer_id\":\"c\",\"items\":" OK_ITEMS ",}", 0, "invalid JSON"},
    {"{\"customer_id\":\"c\",\"items\":[{\"item\":\"x\",\"quantity\":01}]}", 0, "invalid JSON"},
    {"{\"customer_id\":\"c\",\"items\":[{\"item\":\"x\",\"quantity\":NaN}]}", 0, "invalid JSON"},
    {"\xef\xbb\xbf" EXAMPLE, 0, "invalid JSON"},                                    /* BOM */
};

START_TEST(malformed_bodies)
{
    const struct malformed_case *c = &malformed_cases[_i];
    struct result r;

    parse_n(c->body, c->len ? c->len : strlen(c->body), &r);
    ck_assert_int_eq(r.rc, ORDER_EMALFORMED);
    ck_assert_uint_eq(r.v.count, 1);
    ck_assert_str_eq(r.v.errors[0].field, "");
    ck_assert_ptr_nonnull(strstr(r.v.errors[0].message, c->message));
    /* Our words or the JSON's, never jansson's API (its flags are named JSON_*). */
    ck_assert_ptr_null(strstr(r.v.errors[0].message, "JSON_"));
    ck_assert_ptr_null(r.order.customer_id);
}
END_TEST

/* A NUL character written \u0000 is valid JSON that jansson refuses in words
 * about its own API ("not allowed without JSON_ALLOW_NUL"): the client gets
 * ours, and "invalid", not "malformed". */
static const char *const nul_bodies[] = {
    "{\"customer_id\":\"a\\u0000b\",\"items\":" OK_ITEMS "}",
    "{\"customer_id\":\"c\",\"items\":[{\"item\":\"\\u0000\",\"quantity\":1}]}",
    "{\"customer_id\\u0000\":\"c\",\"items\":" OK_ITEMS "}", /* in a key */
    "\"\\u0000\"",
};

START_TEST(nul_character_refused_in_our_words)
{
    struct result r;

    parse(nul_bodies[_i], &r);
    ck_assert_int_eq(r.rc, ORDER_EINVALID);
    ck_assert_uint_eq(r.v.count, 1);
    ck_assert_str_eq(r.v.errors[0].field, "");
    static const char want[] =
        "the body contains a NUL character (\\u0000), which is not allowed (line 1, column ";
    ck_assert_msg(strncmp(r.v.errors[0].message, want, strlen(want)) == 0, "message: %s",
                  r.v.errors[0].message);
    ck_assert_ptr_null(strstr(r.v.errors[0].message, "JSON_ALLOW_NUL"));
    ck_assert_ptr_null(r.order.customer_id);
}
END_TEST

START_TEST(malformed_names_line_and_column)
{
    struct result r;

    parse("{\n  \"customer_id\": \"c\",\n  \"items\": [}\n}", &r);
    ck_assert_int_eq(r.rc, ORDER_EMALFORMED);
    ck_assert_str_eq(r.v.errors[0].message, "invalid JSON at line 3, column 13: unexpected token near '}'");
}
END_TEST

START_TEST(malformed_message_is_ascii)
{
    struct result r;

    parse("{\"customer_id\":\"c\",\"items\":\xff\xfe}", &r);
    ck_assert_int_eq(r.rc, ORDER_EMALFORMED);
    for (const char *p = r.v.errors[0].message; *p; p++)
        ck_assert_msg(*p >= 0x20 && *p < 0x7f, "byte 0x%02x in \"%s\"", (unsigned char)*p,
                      r.v.errors[0].message);
}
END_TEST

/* The byte pre-scan answers (its own message, not jansson's), so 10000 '['
 * never reach the recursive parser. No timing: unit tests assert behaviour. */
START_TEST(deep_nesting_rejected_by_the_prescan)
{
    char *open = repeat("[", 10000);
    struct result r;

    parse(open, &r);
    expect(&r, ORDER_EMALFORMED, ": JSON nested deeper than 8 levels");
    free(open);
}
END_TEST

struct depth_case {
    const char *body;
    int rc;
    const char *errors;
};

static const struct depth_case depth_cases[] = {
    {"[[[[[[[[]]]]]]]]", ORDER_EINVALID, ": must be a JSON object"},               /* 8 */
    {"[[[[[[[[[]]]]]]]]]", ORDER_EMALFORMED, ": JSON nested deeper than 8 levels"}, /* 9 */
    {"{\"customer_id\":\"c\",\"items\":" OK_ITEMS ",\"x\":[[[[[{}]]]]]}", ORDER_EINVALID,
     "x: unknown field"},                                                           /* 7 */
    {"{\"customer_id\":\"c\",\"items\":" OK_ITEMS ",\"x\":[[[[[[[{}]]]]]]]}", ORDER_EMALFORMED,
     ": JSON nested deeper than 8 levels"},                                         /* 9 */
    /* brackets inside strings do not count, escaped quotes do not end them */
    {"{\"customer_id\":\"[[[[[[[[[[{{{{{{\",\"items\":" OK_ITEMS "}", ORDER_OK, ""},
    {"{\"customer_id\":\"\\\"[[[[[[[[[[\\\\\",\"items\":" OK_ITEMS "}", ORDER_OK, ""},
    /* closers do not drive the count negative */
    {"]]]]]]]]]][[[[[[[[[", ORDER_EMALFORMED, ": JSON nested deeper than 8 levels"},
};

START_TEST(nesting_depth)
{
    const struct depth_case *c = &depth_cases[_i];
    struct result r;

    parse(c->body, &r);
    expect(&r, c->rc, c->errors);
    order_free(&r.order);
}
END_TEST

/* ---- buffers ---------------------------------------------------------- */

START_TEST(input_not_nul_terminated)
{
    struct result r;

    parse_n(EXAMPLE, strlen(EXAMPLE), &r); /* parse_n copies without the NUL */
    expect(&r, ORDER_OK, "");
    order_free(&r.order);
}
END_TEST

START_TEST(only_len_bytes_read)
{
    const char *buf = EXAMPLE "garbage that must not be seen";
    struct order o;
    struct order_validation v;

    ck_assert_int_eq(order_parse(buf, strlen(EXAMPLE), &o, &v), ORDER_OK);
    ck_assert_str_eq(o.customer_id, "CUST-001");
    order_free(&o);
}
END_TEST

START_TEST(free_zeroes_and_is_idempotent)
{
    struct order o;
    struct order_validation v;

    memset(&o, 0, sizeof(o));
    order_free(&o);
    order_free(NULL);
    ck_assert_int_eq(order_parse(EXAMPLE, strlen(EXAMPLE), &o, &v), ORDER_OK);
    order_free(&o);
    ck_assert_ptr_null(o.customer_id);
    ck_assert_ptr_null(o.items);
    ck_assert_uint_eq(o.item_count, 0);
    order_free(&o);
}
END_TEST

START_TEST(validation_reset_between_calls)
{
    struct order o;
    struct order_validation v;

    ck_assert_int_eq(order_parse("{}", 2, &o, &v), ORDER_EINVALID);
    ck_assert_uint_eq(v.count, 2);
    ck_assert_int_eq(order_parse(EXAMPLE, strlen(EXAMPLE), &o, &v), ORDER_OK);
    ck_assert_uint_eq(v.count, 0);
    order_free(&o);
}
END_TEST

/* ---- canonical JSON --------------------------------------------------- */

#define CANONICAL "{\"customer_id\":\"CUST-001\",\"items\":[{\"item\":\"Laptop\",\"quantity\":1}]}"

static const char *const same_order_bodies[] = {
    EXAMPLE,
    CANONICAL,
    "{\"items\":[{\"quantity\":1,\"item\":\"Laptop\"}],\"customer_id\":\"CUST-001\"}",
    " \n\t{ \"items\" :\n [ { \"quantity\" : 1 ,\r\n \"item\" : \"Laptop\" } ] ,"
    " \"customer_id\" : \"CUST-001\" }\n",
    "{\"customer_id\":\"\\u0043UST-001\",\"items\":[{\"item\":\"L\\u0061ptop\",\"quantity\":1}]}",
};

START_TEST(canonical_json_ignores_layout)
{
    struct result r;
    char *json;

    parse(same_order_bodies[_i], &r);
    expect(&r, ORDER_OK, "");
    json = order_canonical_json(&r.order);
    ck_assert_str_eq(json, CANONICAL);
    free(json);
    json = order_items_json(&r.order);
    ck_assert_str_eq(json, "[{\"item\":\"Laptop\",\"quantity\":1}]");
    free(json);
    order_free(&r.order);
}
END_TEST

START_TEST(canonical_json_keeps_item_order_and_round_trips)
{
    const char *body = "{\"customer_id\":\"caf\\u00e9 \\\"q\\\" \\\\ \xf0\x9f\x98\x80\",\"items\":["
                       "{\"item\":\"b\",\"quantity\":2},{\"item\":\"a\",\"quantity\":10000}]}";
    struct result r, again;
    char *json, *json2;

    parse(body, &r);
    expect(&r, ORDER_OK, "");
    ck_assert_str_eq(r.order.customer_id, "caf\xc3\xa9 \"q\" \\ \xf0\x9f\x98\x80");
    json = order_canonical_json(&r.order);
    ck_assert_str_eq(json, "{\"customer_id\":\"caf\xc3\xa9 \\\"q\\\" \\\\ \xf0\x9f\x98\x80\",\"items\":["
                           "{\"item\":\"b\",\"quantity\":2},{\"item\":\"a\",\"quantity\":10000}]}");
    parse(json, &again);
    expect(&again, ORDER_OK, "");
    json2 = order_canonical_json(&again.order);
    ck_assert_str_eq(json2, json);
    free(json2);
    free(json);
    order_free(&again.order);
    order_free(&r.order);
}
END_TEST

START_TEST(canonical_json_differs_for_different_orders)
{
    struct result a, b;
    char *ja, *jb;

    parse(EXAMPLE, &a);
    parse("{\"customer_id\":\"CUST-001\",\"items\":[{\"item\":\"Laptop\",\"quantity\":2}]}", &b);
    ja = order_canonical_json(&a.order);
    jb = order_canonical_json(&b.order);
    ck_assert_str_ne(ja, jb);
    free(ja);
    free(jb);
    order_free(&a.order);
    order_free(&b.order);
}
END_TEST

/*
 * order.c writes the canonical JSON itself; it must be byte for byte what
 * jansson's json_dumps(JSON_COMPACT | JSON_PRESERVE_ORDER) writes (stored
 * items and idempotency records made by either must compare equal). Strings
 * here go beyond what validation lets through (control characters), since
 * the writer must not depend on it.
 */
static const char *const hostile_strings[] = {
    "",
    "Laptop",
    "\"quoted\" and \\back\\slashed\\",
    "a/b </script>",
    "\x01\x02\x07\x08\x09\x0a\x0b\x0c\x0d\x1b\x1f end",
    "\x7f del",
    "caf\xc3\xa9 \xe2\x80\xa8 \xe2\x82\xac \xf0\x9f\x98\x80",
    "\\u0041 is not unescaped",
};

static char *jansson_canonical(const struct order *o, bool whole)
{
    json_t *items = json_array();
    for (size_t i = 0; i < o->item_count; i++) {
        json_t *e = json_object();
        json_object_set_new(e, "item", json_string(o->items[i].item));
        json_object_set_new(e, "quantity", json_integer(o->items[i].quantity));
        json_array_append_new(items, e);
    }
    json_t *root = items;
    if (whole) {
        root = json_object();
        json_object_set_new(root, "customer_id", json_string(o->customer_id));
        json_object_set_new(root, "items", items);
    }
    char *text = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(root);
    ck_assert_ptr_nonnull(text);
    return text;
}

START_TEST(canonical_json_is_what_jansson_writes)
{
    enum { N = sizeof(hostile_strings) / sizeof(hostile_strings[0]) };
    struct order_item items[N];
    const int amounts[] = {1, 10000, 42, -7, 0, INT_MAX, INT_MIN, 9};
    for (size_t i = 0; i < N; i++) {
        items[i].item = (char *)hostile_strings[(i + (size_t)_i) % N];
        items[i].quantity = amounts[i % (sizeof(amounts) / sizeof(amounts[0]))];
    }
    struct order o = {(char *)hostile_strings[_i], items, (size_t)(_i % 3 == 2 ? 0 : N - (size_t)_i)};
    char *ours = order_canonical_json(&o), *theirs = jansson_canonical(&o, true);
    ck_assert_str_eq(ours, theirs);
    free(ours);
    free(theirs);
    ours = order_items_json(&o);
    theirs = jansson_canonical(&o, false);
    ck_assert_str_eq(ours, theirs);
    free(ours);
    free(theirs);
}
END_TEST

/* ---- order_validate_stored: the worker's "validate again" ------------- */

struct stored_case {
    const char *customer_id;
    const char *items_json;
    int rc;
    const char *errors;     /* prefix of the joined errors ("" = none) */
};

static const struct stored_case stored_cases[] = {
    {"CUST-001", "[{\"item\":\"Laptop\",\"quantity\":1}]", ORDER_OK, ""},
    {"CUST-001", "[{\"item\":\"a\",\"quantity\":1},{\"item\":\"b\",\"quantity\":10000}]",
     ORDER_OK, ""},
    {"", OK_ITEMS, ORDER_EINVALID, "customer_id: "},
    {"CUST\x01", OK_ITEMS, ORDER_EINVALID, "customer_id: "},
    {"\xff\xfe", OK_ITEMS, ORDER_EINVALID, "customer_id: must be UTF-8 text"},
    {"CUST-001", "[]", ORDER_EINVALID, "items: "},
    {"CUST-001", "[{\"item\":\"x\",\"quantity\":0}]", ORDER_EINVALID, "items[0].quantity: "},
    {"CUST-001", "[{\"item\":\"x\",\"quantity\":1,\"price\":2}]", ORDER_EINVALID,
     "items[0].price: "},
    {"CUST-001", "{\"item\":\"x\"}", ORDER_EINVALID, "items: "},
    {"CUST-001", "[{\"item\":\"x\",\"quantity\":1}", ORDER_EMALFORMED, ""},
    {"CUST-001", "not json", ORDER_EMALFORMED, ""},
    {"CUST-001", "[{\"item\":\"\\u0000\",\"quantity\":1}]", ORDER_EINVALID,
     ": the body contains a NUL character"},
    {"CUST-001", "[[[[[[[[[[[[1]]]]]]]]]]]]", ORDER_EMALFORMED, "items: JSON nested deeper"},
};

START_TEST(stored_orders_validated_again)
{
    const struct stored_case *c = &stored_cases[_i];
    struct order_validation v;
    char errors[ORDER_FIELD_ERRORS_MAX * 200];
    memset(&v, 0x5a, sizeof(v)); /* the call resets it */
    int rc = order_validate_stored(c->customer_id, c->items_json, &v);
    join_errors(&v, errors, sizeof(errors));
    ck_assert_int_eq(rc, c->rc);
    if (c->rc == ORDER_OK)
        ck_assert_str_eq(errors, "");
    else
        ck_assert_uint_ge(v.count, 1);
    ck_assert_msg(strncmp(errors, c->errors, strlen(c->errors)) == 0, "errors '%s', want '%s...'",
                  errors, c->errors);
}
END_TEST

#define N(a) (int)(sizeof(a) / sizeof((a)[0]))

Suite *suite_order(void)
{
    Suite *s = suite_create("order");
    TCase *valid = tcase_create("valid");
    tcase_set_timeout(valid, UNIT_TIMEOUT_LOGIC);
    TCase *rules = tcase_create("rules");
    tcase_set_timeout(rules, UNIT_TIMEOUT_LOGIC);
    TCase *malformed = tcase_create("malformed");
    tcase_set_timeout(malformed, UNIT_TIMEOUT_LOGIC);
    TCase *canonical = tcase_create("canonical");
    tcase_set_timeout(canonical, UNIT_TIMEOUT_LOGIC);

    tcase_add_test(valid, spec_example_is_valid);
    tcase_add_test(valid, input_not_nul_terminated);
    tcase_add_test(valid, only_len_bytes_read);
    tcase_add_test(valid, free_zeroes_and_is_idempotent);
    tcase_add_test(valid, validation_reset_between_calls);

    tcase_add_loop_test(rules, string_lengths, 0, N(length_cases));
    tcase_add_loop_test(rules, control_characters_in_customer_id, 0, N(control_cases));
    tcase_add_loop_test(rules, control_characters_in_item, 0, N(control_cases));
    tcase_add_test(rules, too_long_and_control_both_reported);
    tcase_add_loop_test(rules, item_counts, 0, N(count_cases));
    tcase_add_loop_test(rules, quantities, 0, N(quantity_cases));
    tcase_add_loop_test(rules, invalid_bodies, 0, N(invalid_cases));
    tcase_add_test(rules, every_error_reported);
    tcase_add_test(rules, errors_capped);
    tcase_add_test(rules, long_unknown_field_cut_at_character);
    tcase_add_loop_test(rules, stored_orders_validated_again, 0, N(stored_cases));

    tcase_add_loop_test(malformed, malformed_bodies, 0, N(malformed_cases));
    tcase_add_test(malformed, malformed_names_line_and_column);
    tcase_add_loop_test(malformed, nul_character_refused_in_our_words, 0, N(nul_bodies));
    tcase_add_test(malformed, malformed_message_is_ascii);
    tcase_add_test(malformed, deep_nesting_rejected_by_the_prescan);
    tcase_add_loop_test(malformed, nesting_depth, 0, N(depth_cases));

    tcase_add_loop_test(canonical, canonical_json_ignores_layout, 0, N(same_order_bodies));
    tcase_add_test(canonical, canonical_json_keeps_item_order_and_round_trips);
    tcase_add_test(canonical, canonical_json_differs_for_different_orders);
    tcase_add_loop_test(canonical, canonical_json_is_what_jansson_writes, 0,
                        (int)(sizeof(hostile_strings) / sizeof(hostile_strings[0])));

    suite_add_tcase(s, valid);
    suite_add_tcase(s, rules);
    suite_add_tcase(s, malformed);
    suite_add_tcase(s, canonical);
    return s;
}
