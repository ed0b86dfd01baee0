/*
 * committer.c — the group-commit thread (see committer.h).
 *
 * Threads: committer_submit() runs on HTTP threads; everything else in this
 * file runs on the committer thread, which is the only caller of
 * store_enqueue_batch(). The pending list is guarded by one mutex; the
 * committer sleeps on a condition variable while nothing is pending.
 *
 * Why this batches by itself: while one transaction is being written, new
 * submissions pile up; the next pass takes them all at once. Under light load a
 * batch is one order and latency is one fsync; under heavy load a batch grows
 * to COMMIT_BATCH_MAX.
 *
 * Pipelined sync: when the store defers the fsync (store_defers_sync: sqlite,
 * durability full), a second thread, the syncer, acknowledges. The committer
 * writes batch k+1 (and the workers settle) while the syncer waits for the
 * disk to make batch k durable; one store_sync() covers every batch committed
 * before it began. Items are answered (done) only after that sync, and the
 * workers are woken then too. Otherwise the committer answers each batch
 * itself right after its commit, which was durable on return.
 *
 * A failed sync ends the process inside store_sync(), before anything it
 * covered was answered.
 *
 * Delivery (committer_delivery, when the store can lease on enqueue): before
 * writing a batch the committer reserves places in the workers' hand-over,
 * writes that many of its messages already leased under one fresh receipt,
 * and right after the commit gives the workers a copy of each one written
 * (places of orders not written are given back). on_commit then only wakes
 * the workers for messages written visible.
 *
 * Tracing: committer_submit() begins an item's orderd.enqueue span on the
 * HTTP thread; the thread that answers the item (committer or syncer) ends
 * it right before done(), with the size of the item's batch and the time of
 * the fsync that covered it. Ending copies the span into the tracer's buffer
 * and never blocks.
 */
#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bounds.h"
#include "committer.h"
#include "ids.h"
#include "log.h"
#include "metrics.h"

struct committer {
    struct store *store;
    uint64_t max_depth;
    void (*on_commit)(void *arg);
    void *on_commit_arg;
    struct committer_delivery delivery; /* reserve NULL: none */
    struct metrics *metrics;      /* NULL: nothing counted */
    pthread_t thread;
    bool pipelined;               /* a syncer thread answers (store_defers_sync) */
    pthread_t syncer;

    pthread_mutex_t lock;         /* guards everything below */
    pthread_cond_t wake;
    struct committer_item *head, *tail;
    size_t pending;
    bool stopping;
    bool joined;                  /* the threads have been joined (loop thread only) */
    pthread_cond_t sync_wake;     /* syncer: committed items wait, or writing ended */
    struct committer_item *sync_head, *sync_tail; /* committed, not yet answered */
    bool writing_ended;           /* the committer thread has returned */

    _Atomic uint64_t batches;
    _Atomic uint64_t items;
};

int committer_submit(struct committer *c, struct committer_item *item)
{
    int err = 0;
    item->next = NULL;
    item->batch_size = 0;
    item->fsync_ms = 0;
    item->traced = item->trace_parent != NULL;
    if (item->traced)
        tracing_span_begin(item->tracing, &item->span, item->trace_parent, "orderd.enqueue",
                           TRACING_INTERNAL);
    pthread_mutex_lock(&c->lock);
    if (c->stopping) {
        err = -ESHUTDOWN;
    } else if (c->pending >= COMMIT_BACKLOG_MAX) {
        err = -EAGAIN;
    } else {
        if (c->tail)
            c->tail->next = item;
        else
            c->head = item;
        c->tail = item;
        c->pending++;
        pthread_cond_signal(&c->wake);
    }
    pthread_mutex_unlock(&c->lock);
    return err;
}

/* Takes up to COMMIT_BATCH_MAX items off the list; blocks while it is empty.
 * Returns 0 items only when stopping and nothing is left. */
static size_t take_batch(struct committer *c, struct committer_item **batch)
{
    size_t n = 0;
    pthread_mutex_lock(&c->lock);
    while (c->head == NULL && !c->stopping)
        pthread_cond_wait(&c->wake, &c->lock);
    while (c->head != NULL && n < COMMIT_BATCH_MAX) {
        batch[n++] = c->head;
        c->head = c->head->next;
        c->pending--;
    }
    if (c->head == NULL)
        c->tail = NULL;
    pthread_mutex_unlock(&c->lock);
    return n;
}

/* Ends an item's orderd.enqueue span: it is answered now. */
static void span_end(struct committer_item *item)
{
    struct tracing_span *s = &item->span;
    if (s->recording) {
        tracing_span_attr_int(s, "orderd.batch_size", item->batch_size);
        tracing_span_attr_double(s, "orderd.fsync_ms", item->fsync_ms);
        if (item->order.result != STORE_OK)
            tracing_span_error(s, store_strerror(item->order.result));
    }
    tracing_span_end(item->tracing, s);
}

/* Answers a list of items (linked by next), each after fsync_ms of fsync;
 * done() may free an item, so the link is read first. */
static void answer_items(struct committer_item *item, double fsync_ms)
{
    while (item != NULL) {
        struct committer_item *next = item->next;
        item->fsync_ms = fsync_ms;
        if (item->traced)
            span_end(item);
        item->done(item, item->arg);
        item = next;
    }
}

/* Marks the first places granted by delivery.reserve() leased; returns how many. */
static size_t lease_for_delivery(struct committer *c, struct store_new_order *orders, size_t n)
{
    if (c->delivery.reserve == NULL)
        return 0;
    size_t leased = c->delivery.reserve(c->delivery.arg, n);
    int64_t receipt = 0;
    if (leased > 0 && ids_random_bytes(&receipt, sizeof(receipt)) != 0) {
        c->delivery.unreserve(c->delivery.arg, leased);
        return 0;
    }
    receipt &= INT64_MAX;
    if (receipt == 0)
        receipt = 1; /* 0 means "not leased" */
    int64_t until = ids_now_ms() + c->delivery.visibility_timeout_ms;
    for (size_t i = 0; i < leased; i++) {
        orders[i].lease_receipt = receipt;
        orders[i].lease_until_ms = until;
    }
    return leased;
}

/* A worker's copy of what was just written leased; false when out of memory. */
static bool message_of(const struct store_new_order *o, struct store_message *m)
{
    memset(m, 0, sizeof(*m));
    snprintf(m->order_id, sizeof(m->order_id), "%s", o->order_id);
    snprintf(m->traceparent, sizeof(m->traceparent), "%s", o->traceparent);
    m->customer_id = strdup(o->customer_id);
    m->items_json = strdup(o->items_json);
    m->receipt = o->lease_receipt;
    m->receive_count = 1;
    m->created_at_ms = o->created_at_ms;
    if (m->customer_id != NULL && m->items_json != NULL)
        return true;
    store_message_clear(m);
    return false;
}

/* Delivers what of the first `leased` orders was written; gives back the
 * other places. A message not delivered (no memory) waits for its lease to
 * run out and is claimed from the store then. */
static void deliver_leased(struct committer *c, struct committer_item **batch,
                           const struct store_new_order *orders, size_t leased, bool committed)
{
    struct store_message msgs[COMMIT_BATCH_MAX];
    size_t k = 0;
    for (size_t i = 0; committed && i < leased; i++) {
        if (orders[i].result == STORE_OK && message_of(&orders[i], &msgs[k])) {
            batch[i]->delivered = true;
            k++;
        }
    }
    if (k < leased)
        c->delivery.unreserve(c->delivery.arg, leased - k);
    if (k > 0)
        c->delivery.deliver(c->delivery.arg, msgs, k);
}

/* Writes one batch; returns the items linked in order, results filled in, and
 * in *written how many orders the transaction stored and did not deliver. */
static struct committer_item *commit_batch(struct committer *c, struct committer_item **batch,
                                           size_t n, size_t *written)
{
    struct store_new_order orders[COMMIT_BATCH_MAX];
    for (size_t i = 0; i < n; i++) {
        orders[i] = batch[i]->order;
        batch[i]->delivered = false;
    }
    size_t leased = lease_for_delivery(c, orders, n);
    int err = store_enqueue_batch(c->store, orders, n, c->max_depth);
    if (leased > 0)
        deliver_leased(c, batch, orders, leased, err == STORE_OK);
    if (err != STORE_OK)
        log_warn(NULL, "committer: batch of %zu orders not committed: %s", n,
                 store_strerror(err));
    atomic_fetch_add(&c->batches, 1);
    atomic_fetch_add(&c->items, n);
    *written = 0;
    bool wrote = false;
    for (size_t i = 0; i < n; i++) {
        batch[i]->order.result = orders[i].result;
        batch[i]->batch_size = (uint32_t)n;
        batch[i]->next = i + 1 < n ? batch[i + 1] : NULL;
        *written += err == STORE_OK && orders[i].result == STORE_OK && !batch[i]->delivered;
        wrote |= err == STORE_OK && orders[i].result == STORE_OK;
    }
    if (wrote && c->metrics)
        metrics_counter_add(c->metrics, METRICS_INTAKE_COMMITS, 1);
    return batch[0];
}

/* Hands committed items (linked first .. last) to the syncer. */
static void pass_to_syncer(struct committer *c, struct committer_item *first,
                           struct committer_item *last)
{
    pthread_mutex_lock(&c->lock);
    if (c->sync_tail)
        c->sync_tail->next = first;
    else
        c->sync_head = first;
    c->sync_tail = last;
    pthread_cond_signal(&c->sync_wake);
    pthread_mutex_unlock(&c->lock);
}

static void *committer_main(void *arg)
{
    struct committer *c = arg;
    pthread_setname_np(pthread_self(), "committer"); /* top -H, perf: failure is harmless */
    struct committer_item *batch[COMMIT_BATCH_MAX];
    size_t n;
    while ((n = take_batch(c, batch)) > 0) {
        size_t written = 0;
        struct committer_item *items = commit_batch(c, batch, n, &written);
        if (c->pipelined) {
            pass_to_syncer(c, items, batch[n - 1]);
            continue;
        }
        if (written > 0 && c->on_commit)
            c->on_commit(c->on_commit_arg);
        answer_items(items, 0);
    }
    if (c->pipelined) {
        pthread_mutex_lock(&c->lock);
        c->writing_ended = true;
        pthread_cond_signal(&c->sync_wake);
        pthread_mutex_unlock(&c->lock);
    }
    return NULL;
}

/* Takes every committed item; blocks while there is none. NULL once the
 * committer has ended and nothing is left. */
static struct committer_item *take_committed(struct committer *c)
{
    pthread_mutex_lock(&c->lock);
    while (c->sync_head == NULL && !c->writing_ended)
        pthread_cond_wait(&c->sync_wake, &c->lock);
    struct committer_item *items = c->sync_head;
    c->sync_head = c->sync_tail = NULL;
    pthread_mutex_unlock(&c->lock);
    return items;
}

static void *syncer_main(void *arg)
{
    struct committer *c = arg;
    pthread_setname_np(pthread_self(), "syncer");
    struct committer_item *items;
    while ((items = take_committed(c)) != NULL) {
        bool written = false, undelivered = false;
        double fsync_ms = 0;
        for (struct committer_item *it = items; it != NULL; it = it->next) {
            written |= it->order.result == STORE_OK;
            undelivered |= it->order.result == STORE_OK && !it->delivered;
        }
        if (written) {
            double started = ids_monotonic_seconds();
            int err = store_sync(c->store);
            assert(err == STORE_OK); /* a failed fsync does not return */
            (void)err;
            double took = ids_monotonic_seconds() - started;
            if (c->metrics)
                metrics_sync_observe(c->metrics, took);
            fsync_ms = took * 1e3;
        }
        if (undelivered && c->on_commit)
            c->on_commit(c->on_commit_arg);
        answer_items(items, fsync_ms);
    }
    return NULL;
}

int committer_start(struct store *store, const struct committer_options *opts,
                    struct committer **out)
{
    const struct committer_delivery *delivery = opts->delivery;
    struct committer *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return -ENOMEM;
    c->store = store;
    c->max_depth = opts->max_depth;
    c->on_commit = opts->on_commit;
    c->on_commit_arg = opts->on_commit_arg;
    c->metrics = opts->metrics;
    c->pipelined = store_defers_sync(store);
    if (delivery != NULL && delivery->reserve != NULL && store_enqueue_can_lease(store)) {
        assert(delivery->unreserve != NULL && delivery->deliver != NULL);
        c->delivery = *delivery;
    }
    int rc = pthread_mutex_init(&c->lock, NULL);
    if (rc != 0)
        goto fail_alloc;
    rc = pthread_cond_init(&c->wake, NULL);
    if (rc != 0)
        goto fail_lock;
    rc = pthread_cond_init(&c->sync_wake, NULL);
    if (rc != 0)
        goto fail_cond;
    if (c->pipelined && (rc = pthread_create(&c->syncer, NULL, syncer_main, c)) != 0)
        goto fail_sync_cond;
    rc = pthread_create(&c->thread, NULL, committer_main, c);
    if (rc != 0)
        goto fail_syncer;
    *out = c;
    return 0;

fail_syncer:
    if (c->pipelined) {
        pthread_mutex_lock(&c->lock);
        c->writing_ended = true;
        pthread_cond_signal(&c->sync_wake);
        pthread_mutex_unlock(&c->lock);
        pthread_join(c->syncer, NULL);
    }
fail_sync_cond:
    pthread_cond_destroy(&c->sync_wake);
fail_cond:
    pthread_cond_destroy(&c->wake);
fail_lock:
    pthread_mutex_destroy(&c->lock);
fail_alloc:
    free(c);
    return -rc;
}

void committer_quiesce(struct committer *c)
{
    if (c == NULL)
        return;
    pthread_mutex_lock(&c->lock);
    bool joined = c->joined;
    c->stopping = true;
    pthread_cond_signal(&c->wake);
    pthread_mutex_unlock(&c->lock);
    if (joined)
        return;
    int rc = pthread_join(c->thread, NULL);
    assert(rc == 0);
    if (c->pipelined) {
        rc = pthread_join(c->syncer, NULL); /* it answers what is left, then returns */
        assert(rc == 0);
    }
    (void)rc;
    pthread_mutex_lock(&c->lock);
    assert(c->head == NULL && c->pending == 0 && c->sync_head == NULL);
    c->joined = true;
    pthread_mutex_unlock(&c->lock);
}

void committer_stop(struct committer *c)
{
    if (c == NULL)
        return;
    committer_quiesce(c);
    pthread_cond_destroy(&c->sync_wake);
    pthread_cond_destroy(&c->wake);
    pthread_mutex_destroy(&c->lock);
    free(c);
}

void committer_counts(struct committer *c, uint64_t *batches, uint64_t *items)
{
    *batches = atomic_load(&c->batches);
    *items = atomic_load(&c->items);
}
