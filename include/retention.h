/*
 * retention.h — the retention sweeper: one thread that deletes finished
 * orders once they are older than [retention] completed / dead_letters.
 *
 * It deletes in batches of at most RETENTION_BATCH orders, each batch its own
 * short transaction (store_purge_expired), and pauses between batches so
 * that intake commits go first: intake never waits for more than one batch.
 * When a sweep found less than a full batch it sleeps RETENTION_INTERVAL_MS.
 * Deleted orders are counted in orderd_retention_deleted_total{table}.
 *
 * Threads: start/set/stop on the loop thread; the sweep on its own thread.
 */
#ifndef ORDERD_RETENTION_H
#define ORDERD_RETENTION_H

#include <stdint.h>

#include "metrics.h"
#include "store.h"

struct retention_options {
    uint64_t completed_ms;    /* completed orders after this long; 0 = kept forever */
    uint64_t dead_letters_ms; /* dead letters and discarded orders; 0 = kept forever */
    uint64_t pause_ms;        /* between two full batches; 0: RETENTION_PAUSE_MS */
    uint64_t interval_ms;     /* between sweeps that found little; 0: RETENTION_INTERVAL_MS */
};

struct retention;

/* Starts the sweeper thread (also when both durations are 0: a reload may set
 * them). 0, -ENOMEM or -errno. */
int retention_start(struct store *store, struct metrics *metrics,
                    const struct retention_options *opts, struct retention **out);

/* New durations (SIGHUP), applied from the next batch on; wakes the sweeper. */
void retention_set(struct retention *r, const struct retention_options *opts);

/* Ends the batch in progress, joins the thread, frees r. Safe with NULL. */
void retention_stop(struct retention *r);

#endif
