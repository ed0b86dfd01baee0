/*
 * committer.h — group commit: one thread that writes accepted orders in
 * batches, so that many concurrent requests share one transaction and one
 * fsync instead of paying one each.
 *
 * HTTP threads submit items and suspend their connection; the committer thread
 * takes everything pending (up to COMMIT_BATCH_MAX), writes it with
 * store_enqueue_batch(), and each item's done() is called with its result once
 * the batch is durable: by the committer thread, or — when the store defers
 * the fsync (store_defers_sync) — by a syncer thread after store_sync(), so
 * that the next batch is written while the disk works. done() must not block.
 *
 * Tracing: an item that names a parent context (trace_parent) gets an
 * INTERNAL span "orderd.enqueue", begun by committer_submit() and ended just
 * before its done(), with orderd.batch_size and orderd.fsync_ms (below) and
 * status ERROR when the order was not stored.
 */
#ifndef ORDERD_COMMITTER_H
#define ORDERD_COMMITTER_H

#include <stdbool.h>
#include <stdint.h>

#include "store.h"
#include "tracing.h"

struct committer_item;
typedef void (*committer_done_fn)(struct committer_item *item, void *arg);

/* Owned by the submitter; must stay valid until done() is called. */
struct committer_item {
    struct store_new_order order; /* order.result holds the outcome in done() */
    committer_done_fn done;
    void *arg;
    /* The item's orderd.enqueue span goes to tracing (may be NULL: ids only),
     * a child of trace_parent (read by committer_submit() only; NULL: no span). */
    struct tracing *tracing;
    const struct trace_context *trace_parent;
    /* Set before done(): the orders of the transaction that carried this one,
     * and the fsync that made it durable in ms (0: none was needed — the
     * commit was durable by itself — or nothing was written). */
    uint32_t batch_size;
    double fsync_ms;
    struct committer_item *next;  /* committer's own link */
    bool delivered;               /* committer's own: handed to a worker in memory */
    bool traced;                  /* committer's own: span is begun */
    struct tracing_span span;     /* committer's own: orderd.enqueue */
};

/*
 * Delivery in memory (worker.h: workers_reserve ...): when set and the store
 * can lease on enqueue, the committer writes as many new messages as
 * reserve() grants already leased for visibility_timeout_ms, and right after the commit
 * hands them to deliver() — before the fsync: delivery is used only when
 * processing is persisting alone, which a power cut takes back together
 * with the order. What was not delivered wakes the workers (on_commit).
 */
struct committer_delivery {
    size_t (*reserve)(void *arg, size_t n);
    void (*unreserve)(void *arg, size_t n);
    void (*deliver)(void *arg, struct store_message *msgs, size_t n);
    void *arg;
    int64_t visibility_timeout_ms;
};

struct committer;

struct metrics;

struct committer_options {
    uint64_t max_depth;               /* orders beyond it get STORE_EQUEUEFULL */
    /* Runs on the committer or the syncer thread once a transaction that
     * wrote at least one order not delivered in memory is durable, before
     * its items are answered: the workers' wake-up. May be NULL. */
    void (*on_commit)(void *arg);
    void *on_commit_arg;
    const struct committer_delivery *delivery; /* may be NULL: no delivery */
    /* May be NULL. Counts orderd_intake_commits_total and observes
     * orderd_storage_sync_duration_seconds (each store_sync of the syncer). */
    struct metrics *metrics;
};

/*
 * Starts the committer thread (and the syncer when the store defers the
 * sync). 0, -ENOMEM or -errno from pthread_create.
 */
int committer_start(struct store *store, const struct committer_options *opts,
                    struct committer **out);

/*
 * Queues an item (and begins its span). 0; -EAGAIN when COMMIT_BACKLOG_MAX
 * items already wait (caller answers 503); -ESHUTDOWN once
 * committer_quiesce() began. On error done() is NOT called and no span is
 * recorded.
 */
int committer_submit(struct committer *c, struct committer_item *item);

/*
 * Refuses new items from now on (-ESHUTDOWN), commits everything already
 * submitted (each done() called), and joins the thread; c stays valid, so a
 * late committer_submit() is answered instead of touching freed memory.
 * Idempotent; safe with NULL. Loop thread.
 */
void committer_quiesce(struct committer *c);

/* committer_quiesce() if not done yet, then frees c. Safe with NULL. */
void committer_stop(struct committer *c);

/* Transactions and items committed so far (for tests and the bench). */
void committer_counts(struct committer *c, uint64_t *batches, uint64_t *items);

#endif
