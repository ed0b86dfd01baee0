/*
 * fuzz_traceparent.c — trace_parse() on arbitrary header values (libFuzzer).
 *
 * Property: an accepted header, written back with trace_format(), parses to
 * the same trace id, span id and flags (what we forward is what we read).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "trace.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *header = malloc(size + 1);
    if (header == NULL)
        return 0;
    memcpy(header, data, size);
    header[size] = '\0';

    struct trace_context tc;
    if (trace_parse(header, &tc) == 0) {
        char out[TRACEPARENT_LEN + 1];
        struct trace_context again;
        trace_format(&tc, out);
        if (strlen(out) != TRACEPARENT_LEN || trace_parse(out, &again) != 0 ||
            strcmp(tc.trace_id, again.trace_id) != 0 || strcmp(tc.span_id, again.span_id) != 0 ||
            tc.flags != again.flags) {
            fprintf(stderr, "round trip broke: \"%s\" -> \"%s\"\n", header, out);
            abort();
        }
    }
    free(header);
    return 0;
}
