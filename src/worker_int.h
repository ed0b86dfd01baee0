/*
 * worker_int.h — what worker.c and worker_inflight.c share, and nobody else:
 * the workers' state, the verdict on one delivery and the steps both loops
 * take (claim, decide, settle). Private to the worker module.
 */
#ifndef ORDERD_WORKER_INT_H
#define ORDERD_WORKER_INT_H

#include <curl/curl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "bounds.h"
#include "fulfilment.h"
#include "fulfilment_http.h"
#include "log.h"
#include "metrics.h"
#include "store.h"
#include "trace.h"
#include "tracing.h"
#include "webhook.h"
#include "worker.h"

/* One worker thread. With a fulfilment it keeps up to cap messages in flight,
 * sleeping in its multi handle's poll (workers_wake() wakes it there). */
struct worker_thread {
    struct workers *w;
    pthread_t thread;
    size_t cap;   /* fulfilments in flight at most */
    CURLM *multi; /* NULL without a fulfilment */
};

struct workers {
    struct store *store;
    struct metrics *metrics;
    struct worker_options opts;
    struct fulfilment_command command; /* argc 0: no command */
    /* Requests are signed with secrets (NULL: not signed); http.secrets is the
     * same pointer. Both change only under secrets_lock taken for writing
     * (workers_reload_secrets); a worker signs under it taken for reading. */
    pthread_rwlock_t secrets_lock;
    struct webhook_secrets *secrets;
    struct fulfilment_http_options http; /* url NULL: no HTTP fulfilment */
    struct fulfilment_http_target target; /* what the CLIENT spans say of http.url */
    struct worker_thread threads[WORKER_COUNT_MAX];
    uint32_t threads_wanted; /* count, or fulfilment_concurrency when lower */
    uint32_t started;

    pthread_mutex_t lock; /* guards everything below */
    pthread_cond_t wake;
    uint64_t generation;
    bool stopping;
    struct store_message *handoff; /* ring of WORKER_HANDOFF_MAX; NULL with a fulfilment */
    size_t handoff_first, handoff_count, handoff_reserved;
};

/* Everything a worker decides about one delivery. */
struct verdict {
    struct store_settlement settlement;
    struct tracing_span *span; /* the delivery's orderd.process, owned by the caller;
                                  workers_settle() ends it */
    char error[FULFILMENT_ERROR_MAX];
    char *result_json; /* kept with a completed order; freed after settling */
};

/* True when a fulfilment (command or URL) is part of processing. */
bool workers_fulfil(const struct workers *w);
bool workers_stopping(struct workers *w);
uint64_t workers_generation(struct workers *w);

/* Claims up to batch messages; *more when another claim may find more at once.
 * When the claim fails (storage unavailable), *retry_at_ms is set to when to
 * ask the store again (WORKER_STORE_RETRY_MS from now), so a worker never
 * spins on a failing disk; otherwise it is left alone. */
size_t workers_claim(struct workers *w, struct store_message *msgs, size_t batch, bool *more,
                     int64_t *retry_at_ms);

/* Starts a verdict on m: fills the settlement's identity, begins the
 * delivery's orderd.process span in *span (which must outlive the
 * settlement). False (with the verdict made: dead letter) when the stored
 * order fails validation. */
bool verdict_begin(struct workers *w, const struct store_message *m, struct tracing_span *span,
                   struct verdict *v);
/* Completes the verdict from a fulfilment's result (enum fulfilment_result);
 * retry_after_ms -1 when the service named no time. Takes result_json. */
void verdict_conclude(struct workers *w, const struct store_message *m, int result,
                      int64_t retry_after_ms, char *result_json, struct verdict *v);

/* Settles n verdicts (WORKER_BATCH_MAX to a transaction), counts and logs them,
 * ends their spans, frees their results. */
void workers_settle(struct workers *w, struct verdict *v, size_t n);

/* A log line's context for the delivery of v. */
struct log_ctx verdict_log_ctx(const struct verdict *v);

/* The order as a fulfilment sees it (the JSON of GET /orders/{id}, plus attempt). */
char *worker_message_json(const struct store_message *m, const char *trace_id);

/* The thread body when a fulfilment is set (worker_inflight.c). */
void *worker_inflight_main(void *arg);

#endif
