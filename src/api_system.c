/*
 * api_system.c — liveness, readiness and the Prometheus scrape.
 *
 * /healthz answers 200 while the process serves HTTP at all. /readyz answers
 * 200 only when a write transaction can commit now and the daemon is not
 * draining, so a load balancer stops sending orders that would get 503.
 * Threads: HTTP threads.
 */
#include <stdio.h>
#include <string.h>

#include "api_system.h"
#include "bounds.h"
#include "ids.h"

static const char healthy[] = "{\"status\":\"ok\"}";
static const char ready[] = "{\"status\":\"ready\"}";

void api_system_healthz(struct http_request *req, void *ctx)
{
    (void)ctx;
    http_reply_static(req, 200, "application/json", healthy, sizeof(healthy) - 1);
}

void api_system_readyz(struct http_request *req, void *ctx)
{
    struct api_system *sys = ctx;
    const char *why = NULL;
    struct http_server *srv = atomic_load(&sys->server);
    if (srv && http_server_draining(srv))
        why = "orderd is shutting down";
    else if (!store_writable(sys->store))
        why = "the database is not writable (disk full, read-only or I/O error)";
    if (why == NULL) {
        http_reply_static(req, 200, "application/json", ready, sizeof(ready) - 1);
        return;
    }
    char v[16];
    snprintf(v, sizeof(v), "%d", HTTP_RETRY_AFTER_S);
    http_reply_header(req, "Retry-After", v);
    http_reply_problem(req, 503, "Not Ready", why, NULL, 0);
}

void api_system_metrics(struct http_request *req, void *ctx)
{
    struct api_system *sys = ctx;
    size_t len = 0;
    char *text = metrics_render(sys->metrics, &len);
    if (text == NULL) {
        http_reply_problem(req, 500, NULL, "out of memory", NULL, 0);
        return;
    }
    http_reply_owned(req, 200, "text/plain; version=0.0.4; charset=utf-8", text, len);
}

int api_system_queue_gauges(void *arg, struct metrics_queue_gauges *g, struct metrics_sink *more)
{
    struct store_stats st;
    int err = store_stats(arg, &st);
    if (err != STORE_OK)
        return err;
    g->queue_depth = st.queue_depth;
    g->dlq_depth = st.dlq_depth;
    store_put_metrics(arg, more);
    g->oldest_age_seconds = 0;
    if (st.oldest_enqueued_at_ms > 0) {
        int64_t age = ids_now_ms() - st.oldest_enqueued_at_ms;
        g->oldest_age_seconds = age > 0 ? (double)age / 1000.0 : 0;
    }
    return 0;
}
