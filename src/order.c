/*
 * order.c — the order model: parse a request body with jansson, validate it
 * against SPEC "Validation", and write the canonical JSON that is stored
 * (by hand, byte for byte what jansson's compact dump would write).
 *
 * Parsing happens in three steps: a byte pre-scan that refuses deep nesting
 * before jansson spends anything on it; jansson itself (duplicate keys,
 * invalid UTF-8, trailing bytes and oversized integers are all "malformed";
 * a \u0000, valid JSON that jansson refuses, is "invalid"); then a
 * validation pass that records every broken rule without allocating. Only a
 * body that passes is copied into struct order. Messages are our own words
 * where jansson's would name its API (JSON_ALLOW_NUL): see report_parse_error.
 *
 * Pure: no globals, no I/O. Safe on any thread.
 */
#include "order.h"
#include "strbuf.h"

#include <assert.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FIELD_LEN sizeof(((struct order_field_error *)0)->field)
#define MESSAGE_LEN sizeof(((struct order_field_error *)0)->message)

static const char *const top_keys[] = {"customer_id", "items", NULL};
static const char *const item_keys[] = {"item", "quantity", NULL};

/* Copies src into dst[size], cutting only at a UTF-8 character boundary. */
static void copy_utf8(char *dst, size_t size, const char *src)
{
    size_t n = strlen(src);

    if (n >= size) {
        n = size - 1;
        while (n > 0 && ((unsigned char)src[n] & 0xC0) == 0x80)
            n--;
    }
    memcpy(dst, src, n);
    dst[n] = '\0';
}

/* Records one error; past ORDER_FIELD_ERRORS_MAX the rest are dropped. */
__attribute__((format(printf, 3, 4)))
static void add_error(struct order_validation *v, const char *field, const char *fmt, ...)
{
    struct order_field_error *e;
    va_list ap;

    if (v->count >= ORDER_FIELD_ERRORS_MAX)
        return;
    e = &v->errors[v->count++];
    copy_utf8(e->field, FIELD_LEN, field);
    va_start(ap, fmt);
    vsnprintf(e->message, MESSAGE_LEN, fmt, ap);
    va_end(ap);
}

/* Counts [ and { outside strings; true once nesting passes the limit. */
static bool nesting_too_deep(const char *p, size_t len)
{
    size_t depth = 0;
    bool in_string = false, escaped = false;

    for (size_t i = 0; i < len; i++) {
        char c = p[i];

        if (in_string) {
            if (escaped)
                escaped = false;
            else if (c == '\\')
                escaped = true;
            else if (c == '"')
                in_string = false;
        } else if (c == '"') {
            in_string = true;
        } else if (c == '[' || c == '{') {
            if (++depth > ORDER_JSON_DEPTH_MAX)
                return true;
        } else if ((c == ']' || c == '}') && depth > 0) {
            depth--;
        }
    }
    return false;
}

/*
 * jansson's text may quote raw input bytes (invalid UTF-8 among them); keep
 * printable ASCII only so the message can itself be written as JSON.
 */
static void report_malformed(struct order_validation *v, const json_error_t *err)
{
    char text[JSON_ERROR_TEXT_LENGTH];
    size_t i;

    for (i = 0; i + 1 < sizeof(text) && err->text[i] != '\0'; i++) {
        unsigned char c = (unsigned char)err->text[i];
        text[i] = (c >= 0x20 && c < 0x7F) ? (char)c : '?';
    }
    text[i] = '\0';
    add_error(v, "", "invalid JSON at line %d, column %d: %s", err->line, err->column, text);
}

/*
 * Why jansson refused the text, as an order_parse() result with its message.
 * A NUL character (\u0000, in a value or a key) is valid JSON that jansson
 * refuses, in words that name its own flag ("not allowed without
 * JSON_ALLOW_NUL"): that one gets a message of ours and ORDER_EINVALID. Its
 * other texts describe the JSON ("unexpected token near '}'") and pass.
 */
static int report_parse_error(struct order_validation *v, const json_error_t *err)
{
    switch (json_error_code(err)) {
    case json_error_out_of_memory:
        return ORDER_ENOMEM;
    case json_error_null_character:
    case json_error_null_byte_in_key:
        add_error(v, "",
                  "the body contains a NUL character (\\u0000), which is not allowed "
                  "(line %d, column %d)",
                  err->line, err->column);
        return ORDER_EINVALID;
    default:
        report_malformed(v, err);
        return ORDER_EMALFORMED;
    }
}

/* Unicode code points in valid UTF-8: every byte that is not a continuation. */
static size_t utf8_chars(const char *s, size_t bytes)
{
    size_t n = 0;

    for (size_t i = 0; i < bytes; i++)
        if (((unsigned char)s[i] & 0xC0) != 0x80)
            n++;
    return n;
}

/* C0 (U+0000–U+001F), DEL and C1 (U+0080–U+009F, encoded C2 80..C2 9F). */
static bool has_control(const char *s, size_t bytes)
{
    for (size_t i = 0; i < bytes; i++) {
        unsigned char c = (unsigned char)s[i];

        if (c < 0x20 || c == 0x7F)
            return true;
        if (c == 0xC2 && i + 1 < bytes && (unsigned char)s[i + 1] <= 0x9F)
            return true;
    }
    return false;
}

static void check_text(struct order_validation *v, const char *field, const json_t *value,
                       size_t max_chars)
{
    const char *s;
    size_t bytes;

    if (value == NULL) {
        add_error(v, field, "is required");
        return;
    }
    if (!json_is_string(value)) {
        add_error(v, field, "must be a string");
        return;
    }
    s = json_string_value(value);
    bytes = json_string_length(value);
    if (bytes == 0) {
        add_error(v, field, "must not be empty");
        return;
    }
    if (utf8_chars(s, bytes) > max_chars)
        add_error(v, field, "must be at most %zu characters", max_chars);
    if (has_control(s, bytes))
        add_error(v, field, "must not contain control characters");
}

static void check_quantity(struct order_validation *v, const char *field, const json_t *value)
{
    json_int_t q;

    if (value == NULL) {
        add_error(v, field, "is required");
        return;
    }
    if (!json_is_integer(value)) {
        add_error(v, field, "must be an integer");
        return;
    }
    q = json_integer_value(value);
    if (q < ORDER_QUANTITY_MIN || q > ORDER_QUANTITY_MAX)
        add_error(v, field, "must be an integer from %d to %d", ORDER_QUANTITY_MIN,
                  ORDER_QUANTITY_MAX);
}

static bool key_known(const char *key, const char *const *known)
{
    for (; *known != NULL; known++)
        if (strcmp(key, *known) == 0)
            return true;
    return false;
}

/* One "unknown field" error per key of obj not in known; prefix is "" or "items[3].". */
static void check_unknown(struct order_validation *v, json_t *obj, const char *const *known,
                          const char *prefix)
{
    const char *key;
    json_t *value;

    json_object_foreach(obj, key, value) {
        char field[FIELD_LEN + 1];

        (void)value;
        if (key_known(key, known))
            continue;
        /* One byte longer than order_field_error.field, so add_error sees the cut and
         * backs off to a character boundary. */
        snprintf(field, sizeof(field), "%s%s", prefix, key);
        add_error(v, field, "unknown field");
    }
}

static void check_item(struct order_validation *v, size_t index, json_t *entry)
{
    char field[FIELD_LEN], prefix[32];

    if (!json_is_object(entry)) {
        snprintf(field, sizeof(field), "items[%zu]", index);
        add_error(v, field, "must be an object");
        return;
    }
    snprintf(field, sizeof(field), "items[%zu].item", index);
    check_text(v, field, json_object_get(entry, "item"), ORDER_ITEM_NAME_MAX);
    snprintf(field, sizeof(field), "items[%zu].quantity", index);
    check_quantity(v, field, json_object_get(entry, "quantity"));
    snprintf(prefix, sizeof(prefix), "items[%zu].", index);
    check_unknown(v, entry, item_keys, prefix);
}

static void check_items(struct order_validation *v, const json_t *items)
{
    size_t n;

    if (items == NULL) {
        add_error(v, "items", "is required");
        return;
    }
    if (!json_is_array(items)) {
        add_error(v, "items", "must be an array");
        return;
    }
    n = json_array_size(items);
    if (n == 0) {
        add_error(v, "items", "must not be empty");
        return;
    }
    if (n > ORDER_ITEMS_MAX) {
        add_error(v, "items", "must have at most %d entries", ORDER_ITEMS_MAX);
        return;
    }
    for (size_t i = 0; i < n && v->count < ORDER_FIELD_ERRORS_MAX; i++)
        check_item(v, i, json_array_get(items, i));
}

static void check_order(struct order_validation *v, json_t *root)
{
    if (!json_is_object(root)) {
        add_error(v, "", "must be a JSON object");
        return;
    }
    check_text(v, "customer_id", json_object_get(root, "customer_id"), ORDER_CUSTOMER_ID_MAX);
    check_items(v, json_object_get(root, "items"));
    check_unknown(v, root, top_keys, "");
}

/* Copies a validated document into *out. 0 or ORDER_ENOMEM (out left empty). */
static int build_order(json_t *root, struct order *out)
{
    json_t *items = json_object_get(root, "items");
    size_t n = json_array_size(items);

    out->customer_id = strdup(json_string_value(json_object_get(root, "customer_id")));
    out->items = calloc(n, sizeof(*out->items));
    if (out->customer_id == NULL || out->items == NULL)
        goto fail;
    for (size_t i = 0; i < n; i++) {
        json_t *entry = json_array_get(items, i);

        out->items[i].item = strdup(json_string_value(json_object_get(entry, "item")));
        if (out->items[i].item == NULL)
            goto fail;
        out->items[i].quantity = (int)json_integer_value(json_object_get(entry, "quantity"));
        out->item_count = i + 1;
    }
    return ORDER_OK;
fail:
    order_free(out);
    return ORDER_ENOMEM;
}

int order_parse(const char *body, size_t len, struct order *out, struct order_validation *v)
{
    json_error_t err;
    json_t *root;
    int rc;

    assert(out != NULL && v != NULL && (body != NULL || len == 0));
    memset(out, 0, sizeof(*out));
    v->count = 0;
    if (nesting_too_deep(body, len)) {
        add_error(v, "", "JSON nested deeper than %d levels", ORDER_JSON_DEPTH_MAX);
        return ORDER_EMALFORMED;
    }
    root = json_loadb(len > 0 ? body : "", len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &err);
    if (root == NULL)
        return report_parse_error(v, &err);
    check_order(v, root);
    rc = v->count > 0 ? ORDER_EINVALID : build_order(root, out);
    json_decref(root);
    return rc;
}

int order_validate_stored(const char *customer_id, const char *items_json,
                          struct order_validation *v)
{
    json_error_t err;
    size_t len = strlen(items_json);

    assert(customer_id != NULL && v != NULL);
    v->count = 0;
    if (nesting_too_deep(items_json, len)) {
        add_error(v, "items", "JSON nested deeper than %d levels", ORDER_JSON_DEPTH_MAX);
        return ORDER_EMALFORMED;
    }
    json_t *items = json_loadb(items_json, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &err);
    if (items == NULL)
        return report_parse_error(v, &err);
    json_t *root = json_object();
    if (root == NULL) {
        json_decref(items);
        return ORDER_ENOMEM;
    }
    int rc = json_object_set_new(root, "items", items);
    json_t *customer = json_string(customer_id);
    if (customer == NULL) {
        /* not UTF-8, or no memory: an empty string tells which */
        json_t *probe = json_string("");
        if (probe == NULL)
            rc = -1;
        else
            add_error(v, "customer_id", "must be UTF-8 text");
        json_decref(probe);
    } else if (rc == 0) {
        rc = json_object_set_new(root, "customer_id", customer);
    } else {
        json_decref(customer);
    }
    if (rc != 0) {
        json_decref(root);
        return ORDER_ENOMEM;
    }
    if (v->count == 0)
        check_order(v, root);
    json_decref(root);
    return v->count > 0 ? ORDER_EINVALID : ORDER_OK;
}

void order_free(struct order *o)
{
    if (o == NULL)
        return;
    for (size_t i = 0; i < o->item_count; i++)
        free(o->items[i].item);
    free(o->items);
    free(o->customer_id);
    memset(o, 0, sizeof(*o));
}

/*
 * The canonical JSON is written here directly, byte for byte what jansson's
 * json_dumps(JSON_COMPACT | JSON_PRESERVE_ORDER) writes for the same values
 * (tests/unit/test_order.c compares the two on hostile strings): building a
 * jansson tree only to dump it was 5 % of the CPU of a POST /orders.
 *
 * A JSON string as jansson escapes it: ", \ and control characters; UTF-8
 * and '/' as they are.
 */
static void text_json_string(struct strbuf *t, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    strbuf_add(t, "\"", 1);
    const char *run = s;
    for (; *s != '\0'; s++) {
        unsigned char c = (unsigned char)*s;
        if (c >= 0x20 && c != '"' && c != '\\')
            continue;
        strbuf_add(t, run, (size_t)(s - run));
        run = s + 1;
        switch (c) {
        case '"': strbuf_add(t, "\\\"", 2); break;
        case '\\': strbuf_add(t, "\\\\", 2); break;
        case '\b': strbuf_add(t, "\\b", 2); break;
        case '\f': strbuf_add(t, "\\f", 2); break;
        case '\n': strbuf_add(t, "\\n", 2); break;
        case '\r': strbuf_add(t, "\\r", 2); break;
        case '\t': strbuf_add(t, "\\t", 2); break;
        default: {
            char seq[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
            strbuf_add(t, seq, sizeof(seq));
        }
        }
    }
    strbuf_add(t, run, (size_t)(s - run));
    strbuf_add(t, "\"", 1);
}

/* Decimal, as "%d" writes it. */
static void text_int(struct strbuf *t, int value)
{
    char digits[16];
    size_t at = sizeof(digits);
    unsigned int u = value < 0 ? 0u - (unsigned int)value : (unsigned int)value;
    do {
        digits[--at] = (char)('0' + u % 10);
        u /= 10;
    } while (u != 0);
    if (value < 0)
        digits[--at] = '-';
    strbuf_add(t, digits + at, sizeof(digits) - at);
}

static void text_items(struct strbuf *t, const struct order *o)
{
    strbuf_add(t, "[", 1);
    for (size_t i = 0; i < o->item_count; i++) {
        strbuf_str(t, i ? ",{\"item\":" : "{\"item\":");
        text_json_string(t, o->items[i].item);
        strbuf_str(t, ",\"quantity\":");
        text_int(t, o->items[i].quantity);
        strbuf_add(t, "}", 1);
    }
    strbuf_add(t, "]", 1);
}

char *order_canonical_json(const struct order *o)
{
    struct strbuf t = STRBUF_INIT;
    strbuf_str(&t, "{\"customer_id\":");
    text_json_string(&t, o->customer_id);
    strbuf_str(&t, ",\"items\":");
    text_items(&t, o);
    strbuf_add(&t, "}", 1);
    return strbuf_finish(&t);
}

char *order_items_json(const struct order *o)
{
    struct strbuf t = STRBUF_INIT;
    text_items(&t, o);
    return strbuf_finish(&t);
}
