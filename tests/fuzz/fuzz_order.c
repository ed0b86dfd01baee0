/*
 * fuzz_order.c — order_parse() on arbitrary bytes (libFuzzer).
 *
 * Beyond "no crash, no leak, no UB" it checks one property: an accepted order
 * written as canonical JSON parses again, to the same canonical JSON.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "order.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct order o;
    struct order_validation v;
    memset(&v, 0, sizeof(v));
    int rc = order_parse((const char *)data, size, &o, &v);
    if (rc != ORDER_OK) {
        if (v.count > ORDER_FIELD_ERRORS_MAX)
            abort();
        return 0;
    }
    char *canon = order_canonical_json(&o);
    char *items = order_items_json(&o);
    if (canon == NULL || items == NULL)
        abort();
    struct order again;
    struct order_validation v2;
    memset(&v2, 0, sizeof(v2));
    if (order_parse(canon, strlen(canon), &again, &v2) != ORDER_OK) {
        fprintf(stderr, "canonical JSON does not parse again: %s\n", canon);
        abort();
    }
    char *canon2 = order_canonical_json(&again);
    if (canon2 == NULL || strcmp(canon, canon2) != 0) {
        fprintf(stderr, "canonical JSON not stable:\n%s\n%s\n", canon, canon2 ? canon2 : "(null)");
        abort();
    }
    free(canon2);
    order_free(&again);
    free(items);
    free(canon);
    order_free(&o);
    return 0;
}
