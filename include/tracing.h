/*
 * tracing.h — OpenTelemetry spans, exported over OTLP/HTTP (JSON encoding)
 * from a background thread.
 *
 * A span is a plain value the caller fills (struct tracing_span): begin it,
 * add attributes, maybe mark it an error, end it. Ending copies it into a
 * bounded buffer and never blocks: when the buffer is full (the collector is
 * slow or down) the span is dropped and counted in
 * orderd_trace_spans_dropped_total. The exporter thread sends the buffer in
 * batches to [tracing] otlp_endpoint, retrying with backoff on 429, 503 and
 * network errors.
 *
 * Sampling is parent-based: a span whose parent came with a traceparent
 * obeys its sampled flag; a new trace is sampled with probability
 * sample_ratio, and the decision travels in the flags of every traceparent
 * that follows (the queue, the fulfilment's request), so the whole trace is
 * kept or dropped together.
 *
 * With tracing off (t == NULL, or no otlp_endpoint) the same calls still give
 * every span its ids, for the logs and for propagation, and record nothing.
 *
 * Threads: tracing_span_*() on any thread with no lock held for long (a
 * short mutex around the buffer); start/configure/stop on the loop thread.
 */
#ifndef ORDERD_TRACING_H
#define ORDERD_TRACING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bounds.h"
#include "trace.h"

struct metrics;

/* OTLP's SpanKind values. */
enum tracing_kind {
    TRACING_INTERNAL = 1,
    TRACING_SERVER = 2,
    TRACING_CLIENT = 3,
    TRACING_PRODUCER = 4,
    TRACING_CONSUMER = 5,
};

/* OTLP's status codes. */
enum tracing_status { TRACING_STATUS_UNSET = 0, TRACING_STATUS_OK = 1, TRACING_STATUS_ERROR = 2 };

enum tracing_attr_type { TRACING_ATTR_STRING, TRACING_ATTR_INT, TRACING_ATTR_DOUBLE };

struct tracing_attr {
    const char *key; /* a string constant: "http.route", "orderd.order_id" */
    enum tracing_attr_type type;
    union {
        char s[TRACING_ATTR_VALUE_MAX + 1]; /* cut to fit */
        int64_t i;
        double d;
    } v;
};

/* One span: filled by the caller on its own stack, copied at the end. */
struct tracing_span {
    struct trace_context ctx;                  /* this span's ids and flags */
    char parent_span_id[SPAN_ID_HEX_LEN + 1];  /* "" for the root of a trace */
    const char *name;                          /* a string constant */
    enum tracing_kind kind;
    int64_t start_unix_ns, end_unix_ns;
    enum tracing_status status;
    char status_message[TRACING_STATUS_MESSAGE_MAX + 1];
    struct tracing_attr attrs[TRACING_ATTRS_MAX]; /* beyond: dropped */
    size_t n_attrs;
    bool recording; /* sampled and tracing on: tracing_span_end() keeps it */
};

struct tracing_options {
    const char *otlp_endpoint; /* NULL or "": off. http(s)://host:port/v1/traces */
    const char *service_name;  /* resource service.name; NULL: "orderd" */
    double sample_ratio;       /* 0..1, for traces that start here */
    const char *headers_file;  /* NULL, or "Name: value" lines sent with each export */
};

struct tracing;

/*
 * Starts the exporter thread when opts->otlp_endpoint is set; with none,
 * *out is a tracer that records nothing (a reload may turn it on). 0,
 * -EINVAL (bad endpoint or headers file; a line on stderr says why),
 * -ENOMEM or -errno.
 */
int tracing_start(const struct tracing_options *opts, struct metrics *metrics,
                  struct tracing **out);

/* New options (SIGHUP): endpoint, service name, ratio, headers. On error the
 * running ones stay. Loop thread. */
int tracing_configure(struct tracing *t, const struct tracing_options *opts);

/* Sends what is buffered (at most TRACING_FLUSH_MS), joins, frees. NULL ok. */
void tracing_stop(struct tracing *t);

/*
 * Begins s now: a child of parent (its trace, its sampled flag), or with
 * parent NULL the root of a new trace, sampled by the ratio. t may be NULL.
 * Never fails: should the system's random source fail, the ids come from
 * the clock and a counter (unique in this process, good enough for logs).
 */
void tracing_span_begin(struct tracing *t, struct tracing_span *s,
                        const struct trace_context *parent, const char *name,
                        enum tracing_kind kind);

/* Attributes; beyond TRACING_ATTRS_MAX they are dropped. */
void tracing_span_attr_str(struct tracing_span *s, const char *key, const char *value);
void tracing_span_attr_int(struct tracing_span *s, const char *key, int64_t value);
void tracing_span_attr_double(struct tracing_span *s, const char *key, double value);
/* Status ERROR with a message (cut to fit). */
void tracing_span_error(struct tracing_span *s, const char *message);

/* Ends s now and, when it is recording, hands a copy to the exporter (or
 * drops and counts it when the buffer is full). Never blocks. t may be NULL. */
void tracing_span_end(struct tracing *t, struct tracing_span *s);

/* ---- additions: checks for --check-config, counts for tests -------------- */

/*
 * Checks an otlp_endpoint: an http:// or https:// URL with a host. 0, or
 * -EINVAL with why set. Pure: any thread.
 */
int tracing_endpoint_check(const char *url, char *why, size_t size);

/*
 * Checks a headers_file as tracing_start() will read it: a regular file of
 * "Name: value" lines (blank lines and lines starting with '#' ignored), at
 * most TRACING_HEADERS_MAX of them, each name an HTTP token and not one of
 * Content-Type, Content-Length, Content-Encoding or Transfer-Encoding, each
 * value non-empty, without control characters (CR, LF, NUL). 0; -ENOENT
 * (or another -errno) when it cannot be read; -EINVAL for its contents. why
 * says where ("PATH:LINE: ..."); it never quotes a value (a token).
 */
int tracing_headers_check(const char *path, char *why, size_t size);

/* Counts since tracing_start(); t may be NULL (all 0). Any thread. */
struct tracing_stats {
    uint64_t exported; /* spans the collector accepted */
    uint64_t dropped;  /* spans lost: buffer full, refused, or still unsent at stop or off */
    uint64_t buffered; /* ended spans waiting in the buffer now */
    uint64_t requests; /* export requests made, retries included */
};
void tracing_stats_get(struct tracing *t, struct tracing_stats *out);

#endif
