/*
 * trace.h — W3C Trace Context (traceparent, version 00).
 *
 * An incoming traceparent is honoured when valid; otherwise a new trace is
 * started. Each hop (HTTP handler, worker) gets its own span id under the same
 * trace id. Pure functions plus getrandom: any thread.
 */
#ifndef ORDERD_TRACE_H
#define ORDERD_TRACE_H

#include <stdbool.h>
#include <stdint.h>

#include "bounds.h"

struct trace_context {
    char trace_id[TRACE_ID_HEX_LEN + 1];
    char span_id[SPAN_ID_HEX_LEN + 1];
    uint8_t flags;                /* bit 0: sampled */
};

/*
 * Parses "00-<32 hex>-<16 hex>-<2 hex>" (lower-case hex, ids not all zero,
 * version ff invalid; higher versions parsed by their first four fields as the
 * spec says). 0 or -EINVAL.
 */
int trace_parse(const char *header, struct trace_context *out);

/* A new trace: random trace id and span id, flags 01. 0 or -errno. */
int trace_new(struct trace_context *out);

/* Same trace id, new span id: the next hop. 0 or -errno. */
int trace_child(const struct trace_context *parent, struct trace_context *out);

/* Writes "00-trace-span-flags" into out (TRACEPARENT_LEN + 1 bytes). Never fails. */
void trace_format(const struct trace_context *tc, char out[TRACEPARENT_LEN + 1]);

#endif
