/*
 * worker.h — the worker threads: claim messages with a lease, process each
 * order (validate again, run the fulfilment command if one is set), and
 * settle the batch in one transaction: completed, retried with backoff, or
 * dead-lettered.
 *
 * Workers sleep on a condition variable until workers_wake() (new orders
 * committed), a delivery, or until the next message becomes visible.
 *
 * Delivery in memory: when processing is only persisting (no fulfilment
 * command), the committer writes new messages already leased to the workers
 * (workers_reserve, then store_new_order.lease_receipt) and hands them over
 * with workers_deliver(), so no worker has to claim them from the store. The
 * store stays the truth: the lease expires if the process dies, and workers
 * still claim from the store what was written visible (the hand-over was
 * full, a retry came due, a lease ran out), at least every WORKER_POLL_MS
 * while deliveries keep them busy, so nothing waits behind them.
 *
 * Tracing: each delivery is a CONSUMER span "orderd.process", a child of the
 * traceparent stored with the message, ended once its verdict is settled; a
 * fulfilment is a span under it: CLIENT "POST" for a request (its context is
 * the request's traceparent), INTERNAL "orderd.fulfilment_command" for a
 * command (its context is the command's TRACEPARENT).
 */
#ifndef ORDERD_WORKER_H
#define ORDERD_WORKER_H

#include <stdint.h>

#include "metrics.h"
#include "store.h"
#include "tracing.h"

struct worker_options {
    uint32_t count;
    uint64_t visibility_timeout_ms;
    uint32_t max_receives;
    uint64_t backoff_base_ms;
    uint64_t backoff_max_ms;
    /* At most one of command and URL; neither: persisting is the whole processing. */
    const char *fulfilment_command;
    const char *fulfilment_url;       /* POST each order there (fulfilment_http.h) */
    const char *fulfilment_ca_file;   /* NULL: the system's CAs */
    const char *fulfilment_secret_file; /* NULL: requests are not signed (webhook.h) */
    uint64_t fulfilment_timeout_ms;
    uint32_t fulfilment_concurrency;  /* in flight per node, shared by the threads */
    struct tracing *tracing;          /* the spans go there; NULL: ids only, nothing recorded */
};

struct workers;

/* Starts opts->count threads. 0, -EINVAL (bad command line or secrets file,
 * command and URL both set), -ENOMEM or -errno. */
int workers_start(struct store *store, struct metrics *metrics, const struct worker_options *opts,
                  struct workers **out);

/* New messages may be visible: wake sleeping workers. Any thread; never blocks long. */
void workers_wake(void *workers);

/*
 * Takes up to n places in the hand-over for messages about to be written
 * leased; returns how many (0 when a fulfilment command is set, when
 * stopping, or when the hand-over is full). Each place taken is given back by
 * workers_deliver() or workers_unreserve(). Any thread.
 */
size_t workers_reserve(void *workers, size_t n);
void workers_unreserve(void *workers, size_t n);

/*
 * Hands n messages written leased over to the workers, into places reserved
 * before; the workers own their strings from now on. Any thread.
 */
void workers_deliver(void *workers, struct store_message *msgs, size_t n);

/*
 * Reads the fulfilment secrets file again (SIGHUP: a secret rotation) and
 * signs every request from now on with what it holds; *count is how many.
 * On any error the secrets in use stay, with a log line. -EINVAL when
 * requests are not signed (no fulfilment_url or secret file at start).
 * Loop thread.
 */
int workers_reload_secrets(struct workers *w, const char *path, size_t *count);

/*
 * Stops claiming, lets each worker finish the message it is processing (a
 * running fulfilment ends by itself or at its timeout), releases the leases
 * of claimed or delivered messages not yet processed, joins the threads,
 * frees w. Nothing may reserve or deliver any more (stop the committer first).
 */
void workers_stop(struct workers *w);

#endif
