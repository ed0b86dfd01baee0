/*
 * metrics.h — counters, gauges and histograms, and their Prometheus text
 * exposition (format 0.0.4).
 *
 * struct metrics is created once by main and handed to the modules that count.
 * Updates are lock-free atomics, safe from any thread; rendering takes a
 * snapshot (values may be a few microseconds apart, never torn). Gauges that
 * describe the queue are read through a callback at scrape time so that a
 * scrape costs a few indexed lookups, never a table scan.
 */
#ifndef ORDERD_METRICS_H
#define ORDERD_METRICS_H

#include <stddef.h>
#include <stdbool.h>
#include <stdint.h>

enum metrics_counter {
    METRICS_ORDERS_RECEIVED,      /* accepted by POST /orders (not replays) */
    METRICS_ORDERS_PROCESSED,     /* completed by a worker */
    METRICS_ORDERS_FAILED,        /* a processing attempt that failed */
    METRICS_ORDERS_DEAD_LETTERED, /* moved to the dead-letter table */
    METRICS_INTAKE_COMMITS,       /* transactions that wrote accepted orders (group commits) */
    METRICS_COUNTER_COUNT
};

/*
 * Routes: the label of orderd_http_requests_total and of the request
 * duration is the route's path template ("/orders/{id}"), never a raw path.
 * The HTTP server registers each route's template as it starts
 * (metrics_route_register), so adding a route touches only the route table;
 * id 0 is "other" (no route matched: 404s, or the table is full).
 */
#define METRICS_ROUTES_MAX 32 /* distinct templates, "other" included */
#define METRICS_ROUTE_OTHER 0u

/* Fulfilment: what ran, and how it ended (enum fulfilment_result, by name). */
enum metrics_fulfilment_kind { METRICS_FULFILMENT_COMMAND, METRICS_FULFILMENT_HTTP,
                               METRICS_FULFILMENT_KIND_COUNT };
enum metrics_fulfilment_result {
    METRICS_FULFILMENT_OK,        /* done: the order completes */
    METRICS_FULFILMENT_FAILED,    /* failed: retried (or dead-lettered at max_receives) */
    METRICS_FULFILMENT_TIMEOUT,   /* out of time: as failed */
    METRICS_FULFILMENT_REJECTED,  /* refused for good (HTTP 4xx): dead-lettered at once */
    METRICS_FULFILMENT_ERROR,     /* could not be started */
    METRICS_FULFILMENT_RESULT_COUNT
};

/* Retention: orders deleted, by the [retention] key that expired them. */
enum metrics_retention {
    METRICS_RETENTION_COMPLETED,    /* table="completed" */
    METRICS_RETENTION_DEAD_LETTERS, /* table="dead_letters" (and discarded orders) */
    METRICS_RETENTION_COUNT
};

/* Values read at scrape time from storage. */
struct metrics_queue_gauges {
    uint64_t queue_depth;
    double oldest_age_seconds;    /* 0 when the queue is empty */
    uint64_t dlq_depth;
};

/*
 * One sample a scrape-time source adds of its own (a storage backend's:
 * SQLite's WAL size and checkpoints), so that metrics.c knows nothing of
 * any backend. Samples of one family are put one after the other; the
 * family's HELP and TYPE lines are written before its first sample.
 */
struct metrics_sample {
    const char *family;  /* orderd_..., a valid metric name */
    const char *type;    /* "gauge" or "counter" */
    const char *help;
    const char *labels;  /* NULL, or the label pairs inside the braces: result="failed" */
    uint64_t value;
};
struct metrics_sink;
void metrics_sink_put(struct metrics_sink *sink, const struct metrics_sample *sample);

/*
 * Fills g and may put samples of its own into more; returns 0, or negative
 * when storage cannot be read (then the queue gauges and whatever was put
 * are omitted, and orderd_storage_up is 0).
 */
typedef int (*metrics_gauge_fn)(void *arg, struct metrics_queue_gauges *g,
                                struct metrics_sink *more);

struct metrics;

/* 0 or -ENOMEM. Caller releases with metrics_free(). */
int metrics_new(struct metrics **out);
void metrics_free(struct metrics *m);

/* Registers the scrape-time callback for the queue gauges (may be NULL). */
void metrics_set_gauge_source(struct metrics *m, metrics_gauge_fn fn, void *arg);

/* Build info label values (version, sqlite_version); copied. */
void metrics_set_build_info(struct metrics *m, const char *version, const char *sqlite_version);

void metrics_counter_add(struct metrics *m, enum metrics_counter c, uint64_t n);
uint64_t metrics_counter_get(const struct metrics *m, enum metrics_counter c);

/* One finished HTTP request: route template, status code, seconds taken. */
void metrics_http_observe(struct metrics *m, unsigned route, unsigned status, double seconds);
/* One processing attempt (success or failure), seconds taken. */
void metrics_processing_observe(struct metrics *m, double seconds);
/* One fsync that makes accepted orders durable before their 202, seconds taken. */
void metrics_sync_observe(struct metrics *m, double seconds);
/* One fulfilment attempt that ended: its kind, result and seconds taken. */
void metrics_fulfilment_observe(struct metrics *m, enum metrics_fulfilment_kind kind,
                                enum metrics_fulfilment_result result, double seconds);
/* Orders deleted by retention (store_purge_expired). */
void metrics_retention_add(struct metrics *m, enum metrics_retention table, uint64_t n);
/* Fulfilments in flight: +1 as one starts, -1 as it ends. */
void metrics_fulfilment_in_flight_add(struct metrics *m, int64_t delta);
/* Tracing (tracing.h): spans the collector accepted, and spans lost (the
 * buffer was full, the collector refused them, or they were unsent at stop). */
void metrics_trace_spans_add(struct metrics *m, uint64_t exported, uint64_t dropped);

/*
 * The id of a route template (copied), registering it when new: the same
 * template always gets the same id. METRICS_ROUTE_OTHER when
 * METRICS_ROUTES_MAX are taken or memory ran out. Any thread (the server
 * registers before it serves; a scrape sees a route once registered).
 */
unsigned metrics_route_register(struct metrics *m, const char *template);
/* The label of a route id; "other" for METRICS_ROUTE_OTHER and unknown ids. */
const char *metrics_route_label(const struct metrics *m, unsigned route);

/*
 * Renders the whole exposition, including process_* metrics read from /proc.
 * Returns a heap string (caller frees) and its length in *len; NULL on ENOMEM.
 */
char *metrics_render(struct metrics *m, size_t *len);

#endif
