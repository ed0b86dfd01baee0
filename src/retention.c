/*
 * retention.c — the retention sweeper (see retention.h).
 *
 * Owns: its thread, the durations in force (behind the mutex, changed by a
 * reload), and the pacing: a full batch is followed by a short pause (the
 * write lock is free then, so the committer's next transaction goes first),
 * anything less by a long sleep. A storage error is logged once per run of
 * errors and retried after the long sleep; the store recovers by itself.
 *
 * What is deleted and how cheaply is the store's business
 * (store_purge_expired in each backend); this file only decides when.
 *
 * Threads: retention_start/set/stop on the loop thread, sweep() on the
 * sweeper's own thread; the mutex guards opts and stopping.
 */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <time.h>

#include "bounds.h"
#include "ids.h"
#include "log.h"
#include "retention.h"

struct retention {
    struct store *store;
    struct metrics *metrics;
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t wake; /* a reload or the stop */
    struct retention_options opts;
    bool stopping;
    bool changed; /* retention_set since the sweep last read opts: no sleep */
    bool failing; /* the last batch failed: log the next failure no more */
};

static const char *const kind_names[STORE_RETENTION_KIND_COUNT] = {
    [STORE_RETENTION_COMPLETED] = "completed",
    [STORE_RETENTION_DEAD_LETTERS] = "dead_letters",
};

static uint64_t duration_of(const struct retention_options *o, enum store_retention_kind kind)
{
    return kind == STORE_RETENTION_COMPLETED ? o->completed_ms : o->dead_letters_ms;
}

/* One batch of one kind; true when it was full (more may have expired). */
static bool purge_batch(struct retention *r, enum store_retention_kind kind, uint64_t keep_ms)
{
    int64_t cutoff = ids_now_ms() - (int64_t)keep_ms;
    uint64_t deleted = 0;
    int err = store_purge_expired(r->store, kind, cutoff, RETENTION_BATCH, &deleted);
    if (err != STORE_OK) {
        if (!r->failing)
            log_warn(NULL, "retention: deleting expired %s orders failed: %s; retrying later",
                     kind_names[kind], store_strerror(err));
        r->failing = true;
        return false;
    }
    if (r->failing)
        log_info(NULL, "retention: deleting expired orders works again");
    r->failing = false;
    metrics_retention_add(r->metrics, (enum metrics_retention)kind, deleted);
    return deleted >= RETENTION_BATCH;
}

/* Sleeps ms, or until a reload or the stop; returns false when stopping. A
 * reload that came while a batch ran (its signal unheard) skips the sleep. */
static bool wait_ms(struct retention *r, uint64_t ms)
{
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += (time_t)(ms / 1000);
    until.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&r->lock);
    if (!r->stopping && !r->changed)
        pthread_cond_timedwait(&r->wake, &r->lock, &until);
    bool go_on = !r->stopping;
    pthread_mutex_unlock(&r->lock);
    return go_on;
}

static struct retention_options current(struct retention *r)
{
    pthread_mutex_lock(&r->lock);
    struct retention_options o = r->opts;
    r->changed = false;
    pthread_mutex_unlock(&r->lock);
    return o;
}

static void *sweep(void *arg)
{
    struct retention *r = arg;
    for (;;) {
        struct retention_options o = current(r);
        bool full = false;
        for (int k = 0; k < STORE_RETENTION_KIND_COUNT; k++) {
            uint64_t keep = duration_of(&o, (enum store_retention_kind)k);
            if (keep > 0)
                full |= purge_batch(r, (enum store_retention_kind)k, keep);
        }
        if (!wait_ms(r, full ? o.pause_ms : o.interval_ms))
            return NULL;
    }
}

static void normalise(struct retention_options *o)
{
    if (o->pause_ms == 0)
        o->pause_ms = RETENTION_PAUSE_MS;
    if (o->interval_ms == 0)
        o->interval_ms = RETENTION_INTERVAL_MS;
}

int retention_start(struct store *store, struct metrics *metrics,
                    const struct retention_options *opts, struct retention **out)
{
    struct retention *r = calloc(1, sizeof(*r));
    if (r == NULL)
        return -ENOMEM;
    r->store = store;
    r->metrics = metrics;
    r->opts = *opts;
    normalise(&r->opts);
    pthread_condattr_t ca;
    int err = pthread_condattr_init(&ca);
    if (err == 0) {
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        err = pthread_cond_init(&r->wake, &ca);
        pthread_condattr_destroy(&ca);
    }
    if (err != 0) {
        free(r);
        return -err;
    }
    pthread_mutex_init(&r->lock, NULL);
    err = pthread_create(&r->thread, NULL, sweep, r);
    if (err != 0) {
        pthread_cond_destroy(&r->wake);
        pthread_mutex_destroy(&r->lock);
        free(r);
        return -err;
    }
    *out = r;
    return 0;
}

void retention_set(struct retention *r, const struct retention_options *opts)
{
    pthread_mutex_lock(&r->lock);
    r->opts = *opts;
    normalise(&r->opts);
    r->changed = true;
    pthread_cond_signal(&r->wake);
    pthread_mutex_unlock(&r->lock);
}

void retention_stop(struct retention *r)
{
    if (r == NULL)
        return;
    pthread_mutex_lock(&r->lock);
    r->stopping = true;
    pthread_cond_signal(&r->wake);
    pthread_mutex_unlock(&r->lock);
    pthread_join(r->thread, NULL);
    pthread_cond_destroy(&r->wake);
    pthread_mutex_destroy(&r->lock);
    free(r);
}
