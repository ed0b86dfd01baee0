/*
 * api_system.h — the endpoints an operator's tools call: GET /healthz,
 * GET /readyz, GET /metrics. Handlers run on HTTP threads.
 */
#ifndef ORDERD_API_SYSTEM_H
#define ORDERD_API_SYSTEM_H

#include "http.h"
#include "metrics.h"
#include "store.h"

struct api_system {
    struct store *store;
    struct metrics *metrics;
    struct http_server *server;   /* set once the server runs: draining state */
};

void api_system_healthz(struct http_request *req, void *ctx);
void api_system_readyz(struct http_request *req, void *ctx);
void api_system_metrics(struct http_request *req, void *ctx);

/* metrics_gauge_fn reading the queue gauges from the store (arg: struct store). */
int api_system_queue_gauges(void *arg, struct metrics_queue_gauges *g);

#endif
