/*
 * api_admin.h — the dead-letter admin endpoints: GET /admin/dlq,
 * POST /admin/dlq/{id}/redrive, POST /admin/dlq/redrive, DELETE /admin/dlq/{id}.
 * Each redrive and delete is logged at info with the API key's name, the
 * client address and the order id (or the count).
 * Handlers run on HTTP threads; ctx is a struct api_admin.
 */
#ifndef ORDERD_API_ADMIN_H
#define ORDERD_API_ADMIN_H

#include "http.h"
#include "store.h"

struct api_admin {
    struct store *store;
    void (*wake)(void *arg);      /* workers_wake after a redrive; may be NULL */
    void *wake_arg;
};

void api_admin_dlq_list(struct http_request *req, void *ctx);
void api_admin_redrive(struct http_request *req, void *ctx);
void api_admin_redrive_all(struct http_request *req, void *ctx);
void api_admin_dlq_delete(struct http_request *req, void *ctx);

#endif
