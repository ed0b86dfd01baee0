/*
 * api_system.h — the endpoints an operator's tools call: GET /healthz,
 * GET /readyz, GET /metrics. Handlers run on HTTP threads.
 */
#ifndef ORDERD_API_SYSTEM_H
#define ORDERD_API_SYSTEM_H

#include <stdatomic.h>

#include "http.h"
#include "metrics.h"
#include "store.h"

struct api_system {
    struct store *store;
    struct metrics *metrics;
    /* Set by the loop thread once the server runs, read by HTTP threads. */
    struct http_server *_Atomic server;
};

void api_system_healthz(struct http_request *req, void *ctx);
void api_system_readyz(struct http_request *req, void *ctx);
void api_system_metrics(struct http_request *req, void *ctx);

/* metrics_gauge_fn reading the queue gauges from the store (arg: struct store). */
int api_system_queue_gauges(void *arg, struct metrics_queue_gauges *g, struct metrics_sink *more);

#endif
