/*
 * trace.c — W3C Trace Context: parse and write traceparent, start a trace,
 * make the span id for the next hop.
 *
 * Version 00 is exactly "00-<32 hex>-<16 hex>-<2 hex>", lower-case hex, trace
 * id and span id not all zeros. Version ff is invalid. A higher version is read
 * by its first four fields when the 55th character is followed by nothing or
 * by '-' (the spec's forward-compatibility rule); we always write version 00.
 * Flags are kept as received.
 *
 * Pure functions plus getrandom (through ids.c): any thread.
 */
#include "trace.h"

#include <errno.h>
#include <stddef.h>
#include <string.h>

#include "ids.h"

#define TRACE_ID_BYTES (TRACE_ID_HEX_LEN / 2)
#define SPAN_ID_BYTES (SPAN_ID_HEX_LEN / 2)

/* Offsets in "vv-<trace>-<span>-ff". */
#define OFF_TRACE 3
#define OFF_SPAN (OFF_TRACE + TRACE_ID_HEX_LEN + 1)
#define OFF_FLAGS (OFF_SPAN + SPAN_ID_HEX_LEN + 1)

static const char hex_digits[] = "0123456789abcdef";

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* True when s[0..n) is lower-case hex and, if nonzero, not all '0'. */
static bool hex_field_ok(const char *s, size_t n, bool nonzero)
{
    bool any = false;

    for (size_t i = 0; i < n; i++) {
        if (hex_value(s[i]) < 0)
            return false;
        any |= s[i] != '0';
    }
    return any || !nonzero;
}

/* Reads two hex digits already checked by hex_field_ok. */
static unsigned int hex_byte(const char *s)
{
    return (unsigned int)(hex_value(s[0]) << 4 | hex_value(s[1]));
}

/* Length check that never reads past the first byte after the 55. */
static bool length_ok(const char *h, bool version_00)
{
    size_t n = strnlen(h, TRACEPARENT_LEN + 1);

    if (n < TRACEPARENT_LEN)
        return false;
    if (n == TRACEPARENT_LEN)
        return true;
    return !version_00 && h[TRACEPARENT_LEN] == '-';
}

int trace_parse(const char *header, struct trace_context *out)
{
    bool version_00;

    if (header == NULL || !hex_field_ok(header, 2, false))
        return -EINVAL;
    if (strncmp(header, "ff", 2) == 0)
        return -EINVAL;
    version_00 = strncmp(header, "00", 2) == 0;
    if (!length_ok(header, version_00))
        return -EINVAL;
    if (header[2] != '-' || header[OFF_SPAN - 1] != '-' || header[OFF_FLAGS - 1] != '-')
        return -EINVAL;
    if (!hex_field_ok(header + OFF_TRACE, TRACE_ID_HEX_LEN, true) ||
        !hex_field_ok(header + OFF_SPAN, SPAN_ID_HEX_LEN, true) ||
        !hex_field_ok(header + OFF_FLAGS, 2, false))
        return -EINVAL;
    memcpy(out->trace_id, header + OFF_TRACE, TRACE_ID_HEX_LEN);
    out->trace_id[TRACE_ID_HEX_LEN] = '\0';
    memcpy(out->span_id, header + OFF_SPAN, SPAN_ID_HEX_LEN);
    out->span_id[SPAN_ID_HEX_LEN] = '\0';
    out->flags = (uint8_t)hex_byte(header + OFF_FLAGS);
    return 0;
}

/* n random bytes, not all zero, as 2n hex characters plus NUL. 0 or -errno. */
static int random_nonzero_hex(char *out, size_t n)
{
    unsigned char buf[TRACE_ID_BYTES];
    bool any;

    do {
        int rc = ids_random_bytes(buf, n);

        if (rc != 0)
            return rc;
        any = false;
        for (size_t i = 0; i < n; i++)
            any |= buf[i] != 0;
    } while (!any);
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = hex_digits[buf[i] >> 4];
        out[2 * i + 1] = hex_digits[buf[i] & 15];
    }
    out[2 * n] = '\0';
    return 0;
}

int trace_new(struct trace_context *out)
{
    struct trace_context tc;
    int rc;

    rc = random_nonzero_hex(tc.trace_id, TRACE_ID_BYTES);
    if (rc == 0)
        rc = random_nonzero_hex(tc.span_id, SPAN_ID_BYTES);
    if (rc != 0)
        return rc;
    tc.flags = 0x01;
    *out = tc;
    return 0;
}

/* parent and out may be the same struct. */
int trace_child(const struct trace_context *parent, struct trace_context *out)
{
    struct trace_context tc = *parent;
    int rc = random_nonzero_hex(tc.span_id, SPAN_ID_BYTES);

    if (rc != 0)
        return rc;
    *out = tc;
    return 0;
}

void trace_format(const struct trace_context *tc, char out[TRACEPARENT_LEN + 1])
{
    memcpy(out, "00-", 3);
    memcpy(out + OFF_TRACE, tc->trace_id, TRACE_ID_HEX_LEN);
    out[OFF_SPAN - 1] = '-';
    memcpy(out + OFF_SPAN, tc->span_id, SPAN_ID_HEX_LEN);
    out[OFF_FLAGS - 1] = '-';
    out[OFF_FLAGS] = hex_digits[tc->flags >> 4];
    out[OFF_FLAGS + 1] = hex_digits[tc->flags & 15];
    out[TRACEPARENT_LEN] = '\0';
}
