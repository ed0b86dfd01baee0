/*
 * test_committer.c — group commit: every submitted item gets exactly one
 * done() with its own result, many submitters share transactions, the
 * on_commit hook, backpressure (-EAGAIN, max_depth) and shutdown (-ESHUTDOWN).
 *
 * Determinism: where a test needs items to pile up, a gate holds the committer
 * thread inside on_commit() after its first transaction; everything submitted
 * meanwhile is pending when the gate opens, so batch counts are exact. With
 * durability full the store defers the fsync and on_commit runs on the syncer
 * thread instead: the gate then holds the answers, not the writes.
 *
 * Temp files: one root directory per test case, made and removed in the parent
 * process (unchecked fixture), so a failed or timed-out child leaves nothing.
 */
#include <check.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bounds.h"
#include "committer.h"
#include "ids.h"
#include "metrics.h"
#include "store.h"
#include "tmpdir.h"
#include "timeouts.h"

Suite *suite_committer(void);

#define NO_LIMIT UINT64_MAX
#define WAIT_MS 20000 /* bound on every wait for the committer thread */

/* ---- fixtures ------------------------------------------------------------ */

static char root[512];
static char dir[1024];
static char dbpath[1100];
static struct store *st;
static atomic_int done_total; /* done() calls of the current test */

static void make_root(void)
{
    tmpdir_make(root, sizeof(root), NULL, "orderd-test-committer");
}

static void remove_root(void)
{
    tmpdir_remove(root);
}

static void open_store(enum durability durability)
{
    tmpdir_make(dir, sizeof(dir), root, "t");
    snprintf(dbpath, sizeof(dbpath), "%s/orderd.db", dir);
    struct store_options opts = {.path = dbpath, .durability = durability};
    ck_assert_int_eq(store_open(&opts, &st), STORE_OK);
}

static void setup(void)
{
    atomic_store(&done_total, 0);
    open_store(DURABILITY_NORMAL);
}

/* Intake with fsync: commits take long enough for submitters to pile up. */
static void setup_full(void)
{
    atomic_store(&done_total, 0);
    open_store(DURABILITY_FULL);
}

static void teardown(void)
{
    store_close(st);
    st = NULL;
    tmpdir_remove(dir);
}

/* ---- items ----------------------------------------------------------------- */

struct titem {
    struct committer_item item;
    char id[ID_ULID_LEN + 1];
    char customer[32];
    char items[64];
    char traceparent[TRACEPARENT_LEN + 1];
    char request[64];
    char response[64];
    atomic_int calls;   /* done() calls */
    atomic_int result;  /* order.result seen in done() */
};

static void item_done(struct committer_item *item, void *arg)
{
    struct titem *t = arg;
    /* On the committer thread: no ck_assert here, a wrong item shows as a bad result. */
    atomic_store(&t->result, item == &t->item ? item->order.result : 12345);
    atomic_fetch_add(&t->calls, 1);
    atomic_fetch_add(&done_total, 1);
}

static void titem_init(struct titem *t, unsigned n, const char *key)
{
    memset(t, 0, sizeof(*t));
    ck_assert_int_eq(ids_ulid_new(t->id), 0);
    snprintf(t->customer, sizeof(t->customer), "cust-%u", n % 7);
    snprintf(t->items, sizeof(t->items), "[{\"item\":\"w\",\"quantity\":%u}]", n % 10000 + 1);
    snprintf(t->traceparent, sizeof(t->traceparent), "00-%032x-%016x-01", n + 1, n + 1);
    struct store_new_order *o = &t->item.order;
    o->order_id = t->id;
    o->customer_id = t->customer;
    o->items_json = t->items;
    o->traceparent = t->traceparent;
    o->created_at_ms = ids_now_ms();
    o->result = 1; /* neither OK nor an error: the committer must set it */
    if (key) {
        snprintf(t->request, sizeof(t->request), "{\"n\":%u}", n);
        snprintf(t->response, sizeof(t->response), "{\"order_id\":\"%s\"}", t->id);
        o->idempotency_key = key;
        o->request_json = t->request;
        o->response_json = t->response;
    }
    t->item.done = item_done;
    t->item.arg = t;
    atomic_init(&t->calls, 0);
    atomic_init(&t->result, 1);
}

static struct titem *titems_new(size_t n)
{
    struct titem *t = calloc(n, sizeof(*t));
    ck_assert_ptr_nonnull(t);
    for (size_t i = 0; i < n; i++)
        titem_init(&t[i], (unsigned)i, NULL);
    return t;
}

/* A plain call, so that assertions print "ld(&x) == 2" and not the macro. */
static int ld(atomic_int *v)
{
    return atomic_load(v);
}

static void sleep_ms(long ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Waits (bounded) until *v >= want; false on timeout. */
static bool wait_at_least(atomic_int *v, int want)
{
    for (int waited = 0; waited < WAIT_MS; waited++) {
        if (atomic_load(v) >= want)
            return true;
        sleep_ms(1);
    }
    return atomic_load(v) >= want;
}

static int status_of(const char *id)
{
    struct store_order o;
    memset(&o, 0, sizeof(o));
    int rc = store_get_order(st, id, ids_now_ms(), &o);
    store_order_clear(&o);
    return rc;
}

/* ---- the on_commit hook, with an optional gate ------------------------------- */

struct hook {
    atomic_int calls;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool armed;   /* the first call waits for open */
    bool open;
};

static void hook_init(struct hook *h, bool armed)
{
    atomic_init(&h->calls, 0);
    ck_assert_int_eq(pthread_mutex_init(&h->lock, NULL), 0);
    ck_assert_int_eq(pthread_cond_init(&h->cond, NULL), 0);
    h->armed = armed;
    h->open = !armed;
}

static void hook_destroy(struct hook *h)
{
    pthread_cond_destroy(&h->cond);
    pthread_mutex_destroy(&h->lock);
}

static void on_commit(void *arg)
{
    struct hook *h = arg;
    atomic_fetch_add(&h->calls, 1);
    pthread_mutex_lock(&h->lock);
    while (h->armed && !h->open)
        pthread_cond_wait(&h->cond, &h->lock);
    pthread_mutex_unlock(&h->lock);
}

static void gate_open(struct hook *h)
{
    pthread_mutex_lock(&h->lock);
    h->open = true;
    pthread_cond_broadcast(&h->cond);
    pthread_mutex_unlock(&h->lock);
}

/* Starts a committer whose thread is held in on_commit after committing first. */
static struct committer *start_gated(struct hook *h, uint64_t max_depth, struct titem *first)
{
    struct committer *c = NULL;
    hook_init(h, true);
    ck_assert_int_eq(committer_start(st, &(struct committer_options){max_depth, on_commit, h, NULL, NULL}, &c), 0);
    ck_assert_int_eq(committer_submit(c, &first->item), 0);
    ck_assert(wait_at_least(&h->calls, 1));
    return c;
}

/* ---- tests ------------------------------------------------------------------- */

enum { THREADS = 8, PER_THREAD = 200 };

struct submitter {
    struct committer *c;
    struct titem *items;
    atomic_int *errors;
    pthread_barrier_t *start;
};

static void *submitter_main(void *p)
{
    struct submitter *s = p;
    pthread_barrier_wait(s->start);
    for (int i = 0; i < PER_THREAD; i++)
        if (committer_submit(s->c, &s->items[i].item) != 0)
            atomic_fetch_add(s->errors, 1);
    return NULL;
}

START_TEST(concurrent_submitters_all_committed_once)
{
    enum { N = THREADS * PER_THREAD };
    struct titem *t = titems_new(N);
    struct hook h;
    hook_init(&h, false);
    struct committer *c = NULL;
    ck_assert_int_eq(committer_start(st, &(struct committer_options){NO_LIMIT, on_commit, &h, NULL, NULL}, &c), 0);

    atomic_int errors;
    atomic_init(&errors, 0);
    pthread_barrier_t start;
    ck_assert_int_eq(pthread_barrier_init(&start, NULL, THREADS), 0);
    pthread_t th[THREADS];
    struct submitter sub[THREADS];
    for (int i = 0; i < THREADS; i++) {
        sub[i] = (struct submitter){.c = c, .items = &t[i * PER_THREAD], .errors = &errors,
                                    .start = &start};
        ck_assert_int_eq(pthread_create(&th[i], NULL, submitter_main, &sub[i]), 0);
    }
    for (int i = 0; i < THREADS; i++)
        ck_assert_int_eq(pthread_join(th[i], NULL), 0);
    pthread_barrier_destroy(&start);
    ck_assert_int_eq(ld(&errors), 0);

    /* Everything submitted is committed before stop returns. */
    ck_assert(wait_at_least(&done_total, N));
    uint64_t batches = 0, items = 0;
    committer_counts(c, &batches, &items);
    committer_stop(c);

    ck_assert_int_eq(ld(&done_total), N);
    for (int i = 0; i < N; i++) {
        ck_assert_int_eq(ld(&t[i].calls), 1);
        ck_assert_int_eq(ld(&t[i].result), STORE_OK);
        ck_assert_int_eq(t[i].item.order.result, STORE_OK);
        ck_assert_int_eq(status_of(t[i].id), STORE_OK);
    }
    ck_assert_uint_eq(items, N);
    ck_assert_uint_ge(batches, (N + COMMIT_BATCH_MAX - 1) / COMMIT_BATCH_MAX);
    ck_assert_uint_lt(batches, items); /* many submitters share transactions */
    /* Pipelined (durability full): one call per sync, and a sync may cover
     * several transactions. */
    ck_assert(store_defers_sync(st));
    ck_assert_int_ge(ld(&h.calls), 1);
    ck_assert_int_le(ld(&h.calls), (int)batches);
    struct store_stats s;
    ck_assert_int_eq(store_stats(st, &s), STORE_OK);
    ck_assert_uint_eq(s.queue_depth, N);
    fprintf(stderr, "committer: %d items from %d threads in %llu transactions\n", N, THREADS,
            (unsigned long long)batches);
    hook_destroy(&h);
    free(t);
}
END_TEST

struct pile_case {
    size_t piled;        /* submitted while the committer is held */
    uint64_t batches;    /* expected in all, the held first one included */
};

static const struct pile_case pile_cases[] = {
    {1, 2},
    {200, 2},
    {COMMIT_BATCH_MAX, 2},
    {COMMIT_BATCH_MAX + 1, 3},
    {600, 4}, /* 256 + 256 + 88 */
};

/* What piles up during one commit goes in the next, COMMIT_BATCH_MAX at a time. */
START_TEST(pending_items_share_a_transaction)
{
    const struct pile_case *pc = &pile_cases[_i];
    struct titem *t = titems_new(pc->piled + 1);
    struct hook h;
    struct committer *c = start_gated(&h, NO_LIMIT, &t[0]);
    for (size_t i = 1; i <= pc->piled; i++)
        ck_assert_int_eq(committer_submit(c, &t[i].item), 0);
    gate_open(&h);
    ck_assert(wait_at_least(&done_total, (int)pc->piled + 1));
    uint64_t batches = 0, items = 0;
    committer_counts(c, &batches, &items);
    committer_stop(c);

    ck_assert_uint_eq(items, pc->piled + 1);
    ck_assert_uint_eq(batches, pc->batches);
    ck_assert_int_eq(ld(&h.calls), (int)pc->batches);
    for (size_t i = 0; i <= pc->piled; i++) {
        ck_assert_int_eq(ld(&t[i].calls), 1);
        ck_assert_int_eq(ld(&t[i].result), STORE_OK);
    }
    hook_destroy(&h);
    free(t);
}
END_TEST

/* committer.h: on_commit runs "after every transaction that wrote at least one order". */
START_TEST(on_commit_only_after_a_write)
{
    struct titem *t = titems_new(3);
    struct hook h;
    hook_init(&h, false);
    struct committer *c = NULL;
    ck_assert_int_eq(committer_start(st, &(struct committer_options){1, on_commit, &h, NULL, NULL}, &c), 0);

    ck_assert_int_eq(committer_submit(c, &t[0].item), 0);
    ck_assert(wait_at_least(&t[0].calls, 1));
    ck_assert_int_eq(ld(&t[0].result), STORE_OK);
    ck_assert_int_eq(ld(&h.calls), 1);

    /* The queue holds max_depth = 1: nothing is written, nobody to wake. */
    ck_assert_int_eq(committer_submit(c, &t[1].item), 0);
    ck_assert(wait_at_least(&t[1].calls, 1));
    ck_assert_int_eq(ld(&t[1].result), STORE_EQUEUEFULL);
    committer_stop(c);
    ck_assert_int_eq(ld(&h.calls), 1);
    hook_destroy(&h);
    free(t);
}
END_TEST

/* max_depth 10, one order queued, 14 more piled in one batch: 9 fit. */
START_TEST(max_depth_through_the_committer)
{
    enum { MAX = 10, PILED = 14 };
    struct titem *t = titems_new(PILED + 1);
    struct hook h;
    struct committer *c = start_gated(&h, MAX, &t[0]);
    for (int i = 1; i <= PILED; i++)
        ck_assert_int_eq(committer_submit(c, &t[i].item), 0);
    gate_open(&h);
    committer_stop(c);

    for (int i = 0; i <= PILED; i++) {
        int want = i < MAX ? STORE_OK : STORE_EQUEUEFULL;
        ck_assert_int_eq(ld(&t[i].calls), 1);
        ck_assert_int_eq(ld(&t[i].result), want);
        ck_assert_int_eq(status_of(t[i].id), want == STORE_OK ? STORE_OK : STORE_ENOTFOUND);
    }
    struct store_stats s;
    ck_assert_int_eq(store_stats(st, &s), STORE_OK);
    ck_assert_uint_eq(s.queue_depth, MAX);
    hook_destroy(&h);
    free(t);
}
END_TEST

/* Each item gets its own result: a key taken by an earlier item of the batch. */
START_TEST(results_are_per_item)
{
    struct titem *t = titems_new(4);
    titem_init(&t[1], 1, "key-a");
    titem_init(&t[2], 2, "key-a");
    titem_init(&t[3], 3, "key-b");
    struct hook h;
    struct committer *c = start_gated(&h, NO_LIMIT, &t[0]);
    for (int i = 1; i < 4; i++)
        ck_assert_int_eq(committer_submit(c, &t[i].item), 0);
    gate_open(&h);
    committer_stop(c);
    static const int want[4] = {STORE_OK, STORE_OK, STORE_ECONFLICT, STORE_OK};
    for (int i = 0; i < 4; i++) {
        ck_assert_int_eq(ld(&t[i].calls), 1);
        ck_assert_int_eq(ld(&t[i].result), want[i]);
    }
    ck_assert_int_eq(status_of(t[2].id), STORE_ENOTFOUND);
    hook_destroy(&h);
    free(t);
}
END_TEST

/* done() may free its item: the committer reads nothing from it afterwards (ASan). */
static atomic_int freed_results[300];

static void free_on_done(struct committer_item *item, void *arg)
{
    atomic_store(&freed_results[(intptr_t)arg], item->order.result);
    free(item);
    atomic_fetch_add(&done_total, 1);
}

START_TEST(done_may_free_the_item)
{
    enum { N = 300 };
    struct titem *t = titems_new(N);
    struct hook h;
    /* t[0] is the gate's first item; the rest are heap copies freed by done(). */
    struct committer *c = start_gated(&h, NO_LIMIT, &t[0]);
    for (intptr_t i = 1; i < N; i++) {
        struct committer_item *it = malloc(sizeof(*it));
        ck_assert_ptr_nonnull(it);
        *it = t[i].item;
        it->done = free_on_done;
        it->arg = (void *)i;
        atomic_init(&freed_results[i], 1);
        ck_assert_int_eq(committer_submit(c, it), 0);
    }
    gate_open(&h);
    committer_stop(c);
    ck_assert_int_eq(ld(&done_total), N);
    for (int i = 1; i < N; i++)
        ck_assert_int_eq(ld(&freed_results[i]), STORE_OK);
    hook_destroy(&h);
    free(t);
}
END_TEST

/* COMMIT_BACKLOG_MAX items waiting: one more is refused and never done(). */
START_TEST(backlog_full_is_eagain)
{
    enum { N = COMMIT_BACKLOG_MAX + 2 };
    struct titem *t = titems_new(N);
    struct hook h;
    struct committer *c = start_gated(&h, NO_LIMIT, &t[0]);
    for (int i = 1; i <= COMMIT_BACKLOG_MAX; i++)
        ck_assert_int_eq(committer_submit(c, &t[i].item), 0);
    ck_assert_int_eq(committer_submit(c, &t[N - 1].item), -EAGAIN);
    gate_open(&h);
    committer_stop(c);

    ck_assert_int_eq(ld(&done_total), N - 1);
    for (int i = 0; i < N - 1; i++) {
        ck_assert_int_eq(ld(&t[i].calls), 1);
        ck_assert_int_eq(ld(&t[i].result), STORE_OK);
    }
    ck_assert_int_eq(ld(&t[N - 1].calls), 0);
    ck_assert_int_eq(status_of(t[N - 1].id), STORE_ENOTFOUND);
    hook_destroy(&h);
    free(t);
}
END_TEST

static void *stopper_main(void *p)
{
    committer_stop(p);
    return NULL;
}

/*
 * Held in on_commit, the committer cannot finish; committer_stop() runs on
 * another thread and blocks in its join. Probes submitted before it marked the
 * committer stopping are accepted (and must be committed), the first after it
 * is refused with -ESHUTDOWN and never done(). Deterministic in outcome; only
 * how many probes get in depends on the scheduler.
 */
START_TEST(submit_after_stop_began_is_refused)
{
    enum { PROBES = 4000 };
    struct titem *t = titems_new(PROBES + 1);
    struct hook h;
    struct committer *c = start_gated(&h, NO_LIMIT, &t[0]);
    pthread_t stopper;
    ck_assert_int_eq(pthread_create(&stopper, NULL, stopper_main, c), 0);

    int accepted = 0, rc = 0;
    for (int i = 1; i <= PROBES; i++) {
        rc = committer_submit(c, &t[i].item);
        if (rc != 0)
            break;
        accepted++;
        sleep_ms(1);
    }
    ck_assert_int_eq(rc, -ESHUTDOWN);
    /* Refused again, without waiting this time. */
    ck_assert_int_eq(committer_submit(c, &t[PROBES].item), -ESHUTDOWN);
    gate_open(&h);
    ck_assert_int_eq(pthread_join(stopper, NULL), 0);

    ck_assert_int_eq(ld(&done_total), accepted + 1);
    for (int i = 0; i <= accepted; i++) {
        ck_assert_int_eq(ld(&t[i].calls), 1);
        ck_assert_int_eq(ld(&t[i].result), STORE_OK);
    }
    ck_assert_int_eq(ld(&t[accepted + 1].calls), 0);
    ck_assert_int_eq(status_of(t[accepted + 1].id), STORE_ENOTFOUND);
    fprintf(stderr, "committer: %d probes accepted before stop began\n", accepted);
    hook_destroy(&h);
    free(t);
}
END_TEST

START_TEST(stop_when_idle)
{
    struct committer *c = NULL;
    ck_assert_int_eq(committer_start(st, &(struct committer_options){NO_LIMIT, NULL, NULL, NULL, NULL}, &c), 0);
    uint64_t batches = 9, items = 9;
    committer_counts(c, &batches, &items);
    ck_assert_uint_eq(batches, 0);
    ck_assert_uint_eq(items, 0);
    committer_stop(c);
    committer_stop(NULL);

    /* Without a hook, and stopped right after a submit: still committed. */
    struct titem *t = titems_new(1);
    ck_assert_int_eq(committer_start(st, &(struct committer_options){NO_LIMIT, NULL, NULL, NULL, NULL}, &c), 0);
    ck_assert_int_eq(committer_submit(c, &t[0].item), 0);
    committer_stop(c);
    ck_assert_int_eq(ld(&t[0].calls), 1);
    ck_assert_int_eq(ld(&t[0].result), STORE_OK);
    ck_assert_int_eq(status_of(t[0].id), STORE_OK);
    free(t);
}
END_TEST

/*
 * Pipelined (the store defers the fsync): while the syncer is held in
 * on_commit, the committer goes on writing, but nothing it wrote is answered
 * until a sync covers it; on_commit runs before the answers of its sync.
 */
START_TEST(pipelined_writes_go_on_answers_wait_for_the_sync)
{
    enum { N = 50 };
    ck_assert(store_defers_sync(st));
    struct titem *t = titems_new(N + 1);
    struct hook h;
    struct committer *c = start_gated(&h, NO_LIMIT, &t[0]);
    ck_assert_int_eq(ld(&t[0].calls), 0); /* on_commit first, then done() */
    for (int i = 1; i <= N; i++)
        ck_assert_int_eq(committer_submit(c, &t[i].item), 0);
    for (int i = 1; i <= N; i++) {
        int waited = 0;
        while (status_of(t[i].id) != STORE_OK && waited++ < WAIT_MS)
            sleep_ms(1);
        ck_assert_int_eq(status_of(t[i].id), STORE_OK);
    }
    for (int i = 0; i <= N; i++)
        ck_assert_int_eq(ld(&t[i].calls), 0);
    gate_open(&h);
    ck_assert(wait_at_least(&done_total, N + 1));
    committer_stop(c);
    for (int i = 0; i <= N; i++) {
        ck_assert_int_eq(ld(&t[i].calls), 1);
        ck_assert_int_eq(ld(&t[i].result), STORE_OK);
    }
    ck_assert_int_ge(ld(&h.calls), 2);
    hook_destroy(&h);
    free(t);
}
END_TEST

/*
 * Metrics, pipelined: each transaction that wrote orders counts one intake
 * commit, each sync one observation; orders refused at max_depth count
 * neither. Items are submitted one at a time (each answered before the
 * next), so every one is its own transaction and needs its own sync.
 */
START_TEST(pipelined_commits_and_syncs_are_counted)
{
    enum { N = 5 };
    struct metrics *m = NULL;
    ck_assert_int_eq(metrics_new(&m), 0);
    struct titem *t = titems_new(N + 1);
    struct committer *c = NULL;
    ck_assert_int_eq(committer_start(st, &(struct committer_options){N, NULL, NULL, NULL, m}, &c),
                     0);
    for (int i = 0; i <= N; i++) {
        ck_assert_int_eq(committer_submit(c, &t[i].item), 0);
        ck_assert(wait_at_least(&t[i].calls, 1));
    }
    committer_stop(c);
    for (int i = 0; i < N; i++)
        ck_assert_int_eq(ld(&t[i].result), STORE_OK);
    ck_assert_int_eq(ld(&t[N].result), STORE_EQUEUEFULL);
    ck_assert_uint_eq(metrics_counter_get(m, METRICS_INTAKE_COMMITS), N);
    size_t len = 0;
    char *text = metrics_render(m, &len);
    ck_assert_ptr_nonnull(text);
    ck_assert_ptr_nonnull(strstr(text, "\norderd_storage_sync_duration_seconds_count 5\n"));
    free(text);
    metrics_free(m);
    free(t);
}
END_TEST

/* Stopped while the syncer is held: committer_stop() still answers everything. */
static void *opener_main(void *p)
{
    sleep_ms(50);
    gate_open(p);
    return NULL;
}

START_TEST(pipelined_stop_answers_what_waits_for_a_sync)
{
    enum { N = 20 };
    struct titem *t = titems_new(N + 1);
    struct hook h;
    struct committer *c = start_gated(&h, NO_LIMIT, &t[0]);
    for (int i = 1; i <= N; i++)
        ck_assert_int_eq(committer_submit(c, &t[i].item), 0);
    pthread_t opener;
    ck_assert_int_eq(pthread_create(&opener, NULL, opener_main, &h), 0);
    committer_stop(c);
    ck_assert_int_eq(pthread_join(opener, NULL), 0);
    ck_assert_int_eq(ld(&done_total), N + 1);
    for (int i = 0; i <= N; i++) {
        ck_assert_int_eq(ld(&t[i].calls), 1);
        ck_assert_int_eq(ld(&t[i].result), STORE_OK);
    }
    hook_destroy(&h);
    free(t);
}
END_TEST

/* ---- delivery in memory (committer_delivery) ------------------------------------ */

/* Stands in for the workers' hand-over: grants places from a budget, keeps
 * what is delivered. */
struct fake_workers {
    pthread_mutex_t lock;
    size_t budget;
    size_t reserved, unreserved;
    struct store_message got[64];
    size_t n;
};

static size_t fake_reserve(void *arg, size_t n)
{
    struct fake_workers *f = arg;
    pthread_mutex_lock(&f->lock);
    size_t k = n < f->budget ? n : f->budget;
    f->budget -= k;
    f->reserved += k;
    pthread_mutex_unlock(&f->lock);
    return k;
}

static void fake_unreserve(void *arg, size_t n)
{
    struct fake_workers *f = arg;
    pthread_mutex_lock(&f->lock);
    f->unreserved += n;
    pthread_mutex_unlock(&f->lock);
}

static void fake_deliver(void *arg, struct store_message *msgs, size_t n)
{
    struct fake_workers *f = arg;
    pthread_mutex_lock(&f->lock);
    for (size_t i = 0; i < n; i++) {
        if (f->n < 64)
            f->got[f->n++] = msgs[i];
        else
            store_message_clear(&msgs[i]);
    }
    pthread_mutex_unlock(&f->lock);
}

static struct committer_delivery fake_init(struct fake_workers *f, size_t budget)
{
    memset(f, 0, sizeof(*f));
    ck_assert_int_eq(pthread_mutex_init(&f->lock, NULL), 0);
    f->budget = budget;
    return (struct committer_delivery){fake_reserve, fake_unreserve, fake_deliver, f, 60000};
}

static void fake_set_budget(struct fake_workers *f, size_t budget)
{
    pthread_mutex_lock(&f->lock);
    f->budget = budget;
    pthread_mutex_unlock(&f->lock);
}

static size_t fake_count(struct fake_workers *f)
{
    pthread_mutex_lock(&f->lock);
    size_t n = f->n;
    pthread_mutex_unlock(&f->lock);
    return n;
}

static void fake_destroy(struct fake_workers *f)
{
    for (size_t i = 0; i < f->n; i++)
        store_message_clear(&f->got[i]);
    pthread_mutex_destroy(&f->lock);
}

static size_t visible_now(void)
{
    struct store_message m[WORKER_BATCH_MAX];
    size_t n = 99, dead = 99;
    ck_assert_int_eq(store_claim(st, ids_now_ms(), 1000, 5, m, WORKER_BATCH_MAX, &n, &dead),
                     STORE_OK);
    for (size_t i = 0; i < n; i++)
        store_message_clear(&m[i]);
    return n;
}

static const char *shown_status(const char *id)
{
    struct store_order o;
    memset(&o, 0, sizeof(o));
    ck_assert_int_eq(store_get_order(st, id, ids_now_ms(), &o), STORE_OK);
    const char *status = o.status;
    store_order_clear(&o);
    return status;
}

/* Everything written goes to the workers in memory, leased in the store with
 * the receipt they got; nobody needs waking. */
START_TEST(delivery_hands_over_what_it_wrote_leased)
{
    enum { N = 10 };
    struct titem *t = titems_new(N);
    struct fake_workers f;
    struct committer_delivery d = fake_init(&f, 100);
    struct hook h;
    hook_init(&h, false);
    struct committer *c = NULL;
    ck_assert_int_eq(committer_start(st, &(struct committer_options){NO_LIMIT, on_commit, &h, &d, NULL}, &c), 0);
    for (int i = 0; i < N; i++)
        ck_assert_int_eq(committer_submit(c, &t[i].item), 0);
    ck_assert(wait_at_least(&done_total, N));
    committer_stop(c);

    ck_assert_uint_eq(f.n, N);
    ck_assert_uint_eq(f.reserved, N);
    ck_assert_uint_eq(f.unreserved, 0);
    ck_assert_int_eq(ld(&h.calls), 0);
    struct store_settlement done[N];
    for (size_t i = 0; i < f.n; i++) {
        const struct store_message *m = &f.got[i];
        const struct titem *it = NULL;
        for (int j = 0; j < N && it == NULL; j++)
            it = strcmp(t[j].id, m->order_id) == 0 ? &t[j] : NULL;
        ck_assert_ptr_nonnull(it);
        ck_assert_str_eq(m->customer_id, it->customer);
        ck_assert_str_eq(m->items_json, it->items);
        ck_assert_str_eq(m->traceparent, it->traceparent);
        ck_assert_uint_eq(m->receive_count, 1);
        ck_assert_int_ne(m->receipt, 0);
        ck_assert_str_eq(shown_status(m->order_id), "processing");
        done[i] = (struct store_settlement){.order_id = m->order_id, .receipt = m->receipt,
                                           .outcome = STORE_OUTCOME_COMPLETED, .attempts = 1};
    }
    ck_assert_uint_eq(visible_now(), 0); /* leased: no claim can take them */
    ck_assert_int_eq(store_settle(st, done, N, ids_now_ms()), STORE_OK);
    for (int i = 0; i < N; i++)
        ck_assert_int_eq(done[i].result, STORE_OK); /* the delivered receipt is the store's */
    ck_assert_str_eq(shown_status(t[0].id), "completed");
    fake_destroy(&f);
    hook_destroy(&h);
    free(t);
}
END_TEST

/* Fewer places than orders: the rest is written visible and wakes the workers. */
START_TEST(delivery_only_as_many_as_reserved)
{
    enum { PILED = 10, PLACES = 3 };
    struct titem *t = titems_new(PILED + 1);
    struct fake_workers f;
    struct committer_delivery d = fake_init(&f, 0); /* the first batch: no place */
    struct hook h;
    hook_init(&h, true);
    struct committer *c = NULL;
    ck_assert_int_eq(committer_start(st, &(struct committer_options){NO_LIMIT, on_commit, &h, &d, NULL}, &c), 0);
    ck_assert_int_eq(committer_submit(c, &t[0].item), 0);
    ck_assert(wait_at_least(&h.calls, 1));
    fake_set_budget(&f, PLACES);
    for (int i = 1; i <= PILED; i++)
        ck_assert_int_eq(committer_submit(c, &t[i].item), 0);
    gate_open(&h);
    ck_assert(wait_at_least(&done_total, PILED + 1));
    committer_stop(c);

    ck_assert_uint_eq(f.n, PLACES);
    ck_assert_uint_eq(f.unreserved, 0);
    ck_assert_int_eq(ld(&h.calls), 2);
    ck_assert_uint_eq(visible_now(), PILED + 1 - PLACES);
    fake_destroy(&f);
    hook_destroy(&h);
    free(t);
}
END_TEST

/* Places reserved for orders the store did not take (queue full) are given back. */
START_TEST(delivery_gives_back_places_not_written)
{
    enum { N = 5, MAX = 2 };
    struct titem *t = titems_new(N);
    struct fake_workers f;
    struct committer_delivery d = fake_init(&f, 100);
    struct committer *c = NULL;
    ck_assert_int_eq(committer_start(st, &(struct committer_options){MAX, NULL, NULL, &d, NULL}, &c), 0);
    for (int i = 0; i < N; i++) {
        ck_assert_int_eq(committer_submit(c, &t[i].item), 0);
        ck_assert(wait_at_least(&t[i].calls, 1));
        ck_assert_int_eq(ld(&t[i].result), i < MAX ? STORE_OK : STORE_EQUEUEFULL);
    }
    committer_stop(c);
    ck_assert_uint_eq(f.n, MAX);
    ck_assert_uint_eq(f.reserved, N);
    ck_assert_uint_eq(f.unreserved, N - MAX);
    fake_destroy(&f);
    free(t);
}
END_TEST

/* Pipelined: delivery follows the commit, not the sync (no fulfilment command:
 * a power cut takes back the order and its processing together). */
START_TEST(pipelined_delivery_does_not_wait_for_the_sync)
{
    enum { N = 20 };
    ck_assert(store_defers_sync(st));
    struct titem *t = titems_new(N + 1);
    struct fake_workers f;
    struct committer_delivery d = fake_init(&f, 0);
    struct hook h;
    hook_init(&h, true);
    struct committer *c = NULL;
    ck_assert_int_eq(committer_start(st, &(struct committer_options){NO_LIMIT, on_commit, &h, &d, NULL}, &c), 0);
    ck_assert_int_eq(committer_submit(c, &t[0].item), 0);
    ck_assert(wait_at_least(&h.calls, 1)); /* the syncer is held */
    fake_set_budget(&f, N);
    for (int i = 1; i <= N; i++)
        ck_assert_int_eq(committer_submit(c, &t[i].item), 0);
    for (int waited = 0; fake_count(&f) < N && waited < WAIT_MS; waited++)
        sleep_ms(1);
    ck_assert_uint_eq(fake_count(&f), N);
    for (int i = 0; i <= N; i++)
        ck_assert_int_eq(ld(&t[i].calls), 0);
    gate_open(&h);
    ck_assert(wait_at_least(&done_total, N + 1));
    committer_stop(c);
    fake_destroy(&f);
    hook_destroy(&h);
    free(t);
}
END_TEST

/* ---- the one list -------------------------------------------------------------- */

#define N_OF(a) ((int)(sizeof(a) / sizeof((a)[0])))

Suite *suite_committer(void)
{
    Suite *s = suite_create("committer");

    TCase *tc = tcase_create("concurrent");
    tcase_add_unchecked_fixture(tc, make_root, remove_root);
    tcase_add_checked_fixture(tc, setup_full, teardown);
    tcase_set_timeout(tc, UNIT_TIMEOUT_THREADED);
    tcase_add_test(tc, concurrent_submitters_all_committed_once);
    suite_add_tcase(s, tc);

    tc = tcase_create("pipelined");
    tcase_add_unchecked_fixture(tc, make_root, remove_root);
    tcase_add_checked_fixture(tc, setup_full, teardown);
    tcase_set_timeout(tc, UNIT_TIMEOUT_THREADED);
    tcase_add_test(tc, pipelined_writes_go_on_answers_wait_for_the_sync);
    tcase_add_test(tc, pipelined_stop_answers_what_waits_for_a_sync);
    tcase_add_test(tc, pipelined_delivery_does_not_wait_for_the_sync);
    tcase_add_test(tc, pipelined_commits_and_syncs_are_counted);
    suite_add_tcase(s, tc);

    tc = tcase_create("gated");
    tcase_add_unchecked_fixture(tc, make_root, remove_root);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, UNIT_TIMEOUT_THREADED);
    tcase_add_loop_test(tc, pending_items_share_a_transaction, 0, N_OF(pile_cases));
    tcase_add_test(tc, on_commit_only_after_a_write);
    tcase_add_test(tc, max_depth_through_the_committer);
    tcase_add_test(tc, results_are_per_item);
    tcase_add_test(tc, done_may_free_the_item);
    tcase_add_test(tc, backlog_full_is_eagain);
    tcase_add_test(tc, submit_after_stop_began_is_refused);
    tcase_add_test(tc, stop_when_idle);
    tcase_add_test(tc, delivery_hands_over_what_it_wrote_leased);
    tcase_add_test(tc, delivery_only_as_many_as_reserved);
    tcase_add_test(tc, delivery_gives_back_places_not_written);
    suite_add_tcase(s, tc);

    return s;
}
