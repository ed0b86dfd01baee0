/*
 * tracing_int.h — what tracing.c (the tracer: ids, sampling, the buffer,
 * configuration) and tracing_otlp.c (the exporter thread: OTLP/HTTP JSON)
 * share. Private to those two files and their unit test.
 *
 * The buffer is a ring of TRACING_BUFFER_SPANS slots under `lock`. Threads
 * that end spans only append (count grows); the exporter alone takes from
 * the front (head moves, count shrinks). The exporter encodes the oldest
 * slots outside the lock: they stay counted, so no appender writes them,
 * and they are released (head += n) once encoded. Every change of head,
 * count and a slot happens under the lock, which orders the appender's copy
 * before the exporter's read, and the exporter's release before the slot is
 * written again.
 */
#ifndef ORDERD_TRACING_INT_H
#define ORDERD_TRACING_INT_H

#include <curl/curl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "strbuf.h"
#include "tracing.h"

/* Bytes of an export's answer kept to read partial_success from (OTLP asks
 * clients to bound it; the rest is read and ignored). */
#define TRACING_ANSWER_MAX 65536
/* "orderd" as scope name; the SDK's name for what made the spans. */
#define TRACING_SCOPE_NAME "orderd"

/* What the exporter sends with: swapped whole under cfg_lock on configure. */
struct tracing_target {
    char *endpoint;     /* NULL: off */
    char *service_name; /* never NULL once set */
    char **headers;     /* "Name: value" lines (secrets: wiped when freed) */
    size_t n_headers;
};

struct tracing {
    struct metrics *metrics; /* may be NULL (tests) */

    /* read by every span: no lock */
    _Atomic uint64_t sample_threshold; /* ratio * 2^53: a draw of 53 bits below it samples */
    _Atomic bool on;                   /* spans are kept (an endpoint, the exporter running) */

    /* the buffer; ring is NULL until tracing is first turned on */
    pthread_mutex_t lock;
    struct tracing_span *ring;
    size_t head, count;
    uint64_t full_drops; /* spans dropped because the ring was full */

    /* configuration for the exporter; stop. Taken before lock when both are. */
    pthread_mutex_t cfg_lock;
    struct tracing_target target;
    uint64_t target_gen;      /* bumped by each configure */
    bool stopping;            /* tracing_stop(): flush, then end */
    int64_t stop_deadline_ms; /* monotonic */

    /* the exporter; multi and thread exist once tracing was first turned on */
    CURLM *multi;
    pthread_t thread;
    bool thread_started; /* loop thread only */

    /* what happened (tracing_stats); dropped leaves out full_drops */
    _Atomic uint64_t exported, dropped, requests;

    /* resource attributes fixed for the process's life */
    char instance_id[37]; /* a random UUID (version 4) */
    char host_name[256];
};

/* Monotonic milliseconds. */
int64_t tracing__now_ms(void);
/* A uniformly random 64-bit value from this thread's generator. Never fails. */
uint64_t tracing__random64(void);
/* n spans lost: counted in the stats and in orderd_trace_spans_dropped_total. */
void tracing__count_dropped(struct tracing *t, uint64_t n);
void tracing__count_exported(struct tracing *t, uint64_t n);
/* Frees what a target holds; wipes the headers. */
void tracing__target_free(struct tracing_target *target);

/* The exporter thread (tracing_otlp.c): started once, on the loop thread;
 * joined by tracing_stop after it set stopping. 0 or -errno. */
int tracing__exporter_start(struct tracing *t);
void tracing__exporter_join(struct tracing *t);

/*
 * The JSON body of one ExportTraceServiceRequest with spans[0..n): the
 * resource (service.name = service_name, service.version, instance id, host
 * name), one scope, the spans. Strings are escaped and invalid UTF-8 becomes
 * U+FFFD, so the body is valid JSON whatever the attributes hold. Appends to
 * out (check out->failed).
 */
void tracing__encode(struct strbuf *out, const char *service_name, const char *instance_id,
                     const char *host_name, const struct tracing_span *spans, size_t n);

/*
 * Fault injection for tests: the source of random bytes behind span ids and
 * the sampling generator (NULL: the default, ids_random_bytes). A failing
 * source makes ids fall back to the clock and a counter.
 */
void tracing__set_random_source(int (*fn)(void *buf, size_t n));

#endif
