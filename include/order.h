/*
 * order.h — the order model: parse and validate a request body, and write the
 * canonical JSON that is stored and handed to workers.
 *
 * Validation follows SPEC "Validation" exactly; every bad field is reported
 * (up to ORDER_FIELD_ERRORS_MAX) with a JSON-pointer-like name such as
 * "items[2].quantity". Unknown fields are rejected. Pure functions: any thread.
 */
#ifndef ORDERD_ORDER_H
#define ORDERD_ORDER_H

#include <stddef.h>

#include "bounds.h"

struct order_item {
    char *item;                   /* UTF-8, NUL-terminated */
    int quantity;
};

struct order {
    char *customer_id;
    struct order_item *items;
    size_t item_count;
};

struct order_field_error {
    char field[48];               /* "customer_id", "items[3].item", "" for the body */
    char message[128];
};

struct order_validation {
    size_t count;
    struct order_field_error errors[ORDER_FIELD_ERRORS_MAX];
};

enum order_parse_result {
    ORDER_OK = 0,
    ORDER_EMALFORMED = -1,        /* not JSON (or nested too deep); errors[0] says where */
    ORDER_EINVALID = -2,          /* JSON, but not an object, a NUL character (\u0000)
                                   * in it, or fields break the rules */
    ORDER_ENOMEM = -3,
};

/*
 * Parses body[0..len) (need not be NUL-terminated). On ORDER_OK fills *out,
 * which the caller releases with order_free(). On failure *out is empty and
 * v lists the problems.
 */
int order_parse(const char *body, size_t len, struct order *out, struct order_validation *v);
void order_free(struct order *o);

/*
 * Validates an order as it was stored (customer_id, and the items JSON array)
 * by the same rules as order_parse(), without building a struct order: the
 * worker's "validate again". ORDER_OK, ORDER_EMALFORMED (items not JSON),
 * ORDER_EINVALID or ORDER_ENOMEM; v lists the problems.
 */
int order_validate_stored(const char *customer_id, const char *items_json,
                          struct order_validation *v);

/*
 * Canonical JSON of the order as submitted: {"customer_id":..,"items":[{"item":..,"quantity":..}]}
 * with keys in that order and no spaces. Two bodies that mean the same order
 * give the same string (used by Idempotency-Key matching). Caller frees; NULL on ENOMEM.
 */
char *order_canonical_json(const struct order *o);

/* JSON of just the items array, canonical. Caller frees; NULL on ENOMEM. */
char *order_items_json(const struct order *o);

#endif
