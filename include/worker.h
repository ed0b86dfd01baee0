/*
 * worker.h — the worker threads: claim messages with a lease, process each
 * order (validate again, run the fulfilment command if one is set), and
 * settle the batch in one transaction: completed, retried with backoff, or
 * dead-lettered.
 *
 * Workers sleep on a condition variable until workers_wake() (new orders
 * committed) or until the next message becomes visible; they never poll.
 */
#ifndef ORDERD_WORKER_H
#define ORDERD_WORKER_H

#include <stdint.h>

#include "metrics.h"
#include "store.h"

struct worker_options {
    uint32_t count;
    uint64_t visibility_timeout_ms;
    uint32_t max_receives;
    uint64_t backoff_base_ms;
    uint64_t backoff_max_ms;
    const char *fulfilment_command;   /* NULL: persisting is the whole processing */
    uint64_t fulfilment_timeout_ms;
};

struct workers;

/* Starts opts->count threads. 0, -EINVAL (bad command line), -ENOMEM or -errno. */
int workers_start(struct store *store, struct metrics *metrics, const struct worker_options *opts,
                  struct workers **out);

/* New messages may be visible: wake sleeping workers. Any thread; never blocks long. */
void workers_wake(void *workers);

/*
 * Stops claiming, lets each worker finish the message it is processing (a
 * running fulfilment ends by itself or at its timeout), releases the leases
 * of claimed messages not yet processed, joins the threads, frees w.
 */
void workers_stop(struct workers *w);

#endif
