/*
 * api_orders.h — the order endpoints: POST /orders, GET /orders/{id},
 * GET /orders. Validation, idempotency keys, and the hand-off of accepted
 * orders to the committer.
 *
 * Handlers run on HTTP threads; the completion of a POST runs on the
 * committer thread (it sets the reply and resumes the request).
 */
#ifndef ORDERD_API_ORDERS_H
#define ORDERD_API_ORDERS_H

#include "committer.h"
#include "http.h"
#include "metrics.h"
#include "store.h"

struct api_orders;

/* 0 or -ENOMEM. The pointers are borrowed and must outlive the api. */
int api_orders_new(struct store *store, struct committer *committer, struct metrics *metrics,
                   struct api_orders **out);
void api_orders_free(struct api_orders *api);

/* http_handler_fn for each route; ctx is the struct api_orders. */
void api_orders_post(struct http_request *req, void *ctx);
void api_orders_get(struct http_request *req, void *ctx);
void api_orders_list(struct http_request *req, void *ctx);

#endif
