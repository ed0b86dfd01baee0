/*
 * api_status.h — the built-in status page: GET / (one self-contained HTML
 * page, compiled into the binary) and GET /status.json (the numbers it shows).
 *
 * For the operator who has no Prometheus or Grafana at hand: the page polls
 * /status.json every few seconds and shows the order counters, the queue
 * gauges and readiness, and has a dead-letter console over /admin/dlq (with
 * an admin key typed into the page when keys are configured). Handlers run on
 * HTTP threads.
 */
#ifndef ORDERD_API_STATUS_H
#define ORDERD_API_STATUS_H

#include <stdatomic.h>
#include <stdint.h>

#include "http.h"
#include "metrics.h"
#include "store.h"

/* Long enough for "script-src 'sha256-<44 base64>'" and the fixed directives. */
#define API_STATUS_CSP_MAX 512

/* Owned by the daemon; filled by api_status_init(), read by both handlers. */
struct api_status {
    struct metrics *metrics;
    struct store *store;
    double started_s;                  /* monotonic clock at init: uptime */
    char csp[API_STATUS_CSP_MAX];      /* Content-Security-Policy of the page */
    /* readiness is probed with a write (store_writable); cached so that a
     * page left open, or a client polling fast, costs at most one write per
     * API_STATUS_READY_CACHE_MS */
    _Atomic int64_t ready_checked_ms;
    atomic_bool ready;
};

/* Never fails. Call on the loop thread before the HTTP server starts. */
void api_status_init(struct api_status *st, struct metrics *metrics, struct store *store);

/* GET / — the HTML page (static; CSP, nosniff and no-referrer headers). */
void api_status_page(struct http_request *req, void *ctx);
/* GET /status.json — {"version","uptime_seconds","received","processed","failed",
 * "dead_lettered","queue_depth","oldest_age_seconds","dlq_depth","ready"};
 * the three queue fields are null when storage cannot be read. */
void api_status_json(struct http_request *req, void *ctx);

#endif
