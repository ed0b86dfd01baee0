/*
 * committer.c — the group-commit thread (see committer.h).
 *
 * Threads: committer_submit() runs on HTTP threads; everything else in this
 * file runs on the committer thread, which is the only caller of
 * store_enqueue_batch(). The pending list is guarded by one mutex; the
 * committer sleeps on a condition variable while nothing is pending.
 *
 * Why this batches by itself: while one transaction is being fsync'd, new
 * submissions pile up; the next pass takes them all at once. Under light load a
 * batch is one order and latency is one fsync; under heavy load a batch grows
 * to COMMIT_BATCH_MAX and throughput is bounded by fsyncs/s * batch size.
 */
#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>

#include "bounds.h"
#include "committer.h"
#include "log.h"

struct committer {
    struct store *store;
    uint64_t max_depth;
    void (*on_commit)(void *arg);
    void *on_commit_arg;
    pthread_t thread;

    pthread_mutex_t lock;         /* guards everything below */
    pthread_cond_t wake;
    struct committer_item *head, *tail;
    size_t pending;
    bool stopping;
    bool joined;                  /* the thread has been joined (loop thread only) */

    _Atomic uint64_t batches;
    _Atomic uint64_t items;
};

int committer_submit(struct committer *c, struct committer_item *item)
{
    int err = 0;
    item->next = NULL;
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

static void commit_batch(struct committer *c, struct committer_item **batch, size_t n)
{
    struct store_new_order orders[COMMIT_BATCH_MAX];
    for (size_t i = 0; i < n; i++)
        orders[i] = batch[i]->order;
    int err = store_enqueue_batch(c->store, orders, n, c->max_depth);
    if (err != STORE_OK)
        log_warn(NULL, "committer: batch of %zu orders not committed: %s", n,
                 store_strerror(err));
    atomic_fetch_add(&c->batches, 1);
    atomic_fetch_add(&c->items, n);
    size_t written = 0;
    for (size_t i = 0; err == STORE_OK && i < n; i++)
        written += orders[i].result == STORE_OK;
    if (written > 0 && c->on_commit)
        c->on_commit(c->on_commit_arg);
    /* done() may free the item: read nothing from it afterwards. */
    for (size_t i = 0; i < n; i++) {
        batch[i]->order.result = orders[i].result;
        batch[i]->done(batch[i], batch[i]->arg);
    }
}

static void *committer_main(void *arg)
{
    struct committer *c = arg;
    struct committer_item *batch[COMMIT_BATCH_MAX];
    size_t n;
    while ((n = take_batch(c, batch)) > 0)
        commit_batch(c, batch, n);
    return NULL;
}

int committer_start(struct store *store, uint64_t max_depth, void (*on_commit)(void *arg),
                    void *arg, struct committer **out)
{
    struct committer *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return -ENOMEM;
    c->store = store;
    c->max_depth = max_depth;
    c->on_commit = on_commit;
    c->on_commit_arg = arg;
    int rc = pthread_mutex_init(&c->lock, NULL);
    if (rc != 0)
        goto fail_alloc;
    rc = pthread_cond_init(&c->wake, NULL);
    if (rc != 0)
        goto fail_lock;
    rc = pthread_create(&c->thread, NULL, committer_main, c);
    if (rc != 0)
        goto fail_cond;
    *out = c;
    return 0;

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
    (void)rc;
    pthread_mutex_lock(&c->lock);
    assert(c->head == NULL && c->pending == 0);
    c->joined = true;
    pthread_mutex_unlock(&c->lock);
}

void committer_stop(struct committer *c)
{
    if (c == NULL)
        return;
    committer_quiesce(c);
    pthread_cond_destroy(&c->wake);
    pthread_mutex_destroy(&c->lock);
    free(c);
}

void committer_counts(struct committer *c, uint64_t *batches, uint64_t *items)
{
    *batches = atomic_load(&c->batches);
    *items = atomic_load(&c->items);
}
