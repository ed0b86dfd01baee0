/*
 * worker.c — worker threads (see worker.h).
 *
 * A worker's loop: take a batch — delivered in memory by the committer, or
 * claimed from the store (WORKER_BATCH_MAX messages when processing is only
 * persisting; one at a time when a fulfilment command runs, so a lease never
 * waits behind other slow commands) — process each, settle them all in one
 * transaction, repeat. The store is asked when workers_wake() said it has
 * new visible messages, when the last claim came back full, and at least
 * every WORKER_POLL_MS; deliveries are taken in between. With nothing to do
 * a worker sleeps until the next message's visible_at, workers_wake() or a
 * delivery.
 *
 * Outcomes of one delivery:
 *   valid and fulfilled          -> COMPLETED
 *   invalid when validated again -> DEAD_LETTER at once (retrying cannot help)
 *   fulfilment failed/timed out  -> RETRY after backoff, or DEAD_LETTER when
 *                                   this was receive number max_receives
 *
 * Threads: workers_start/stop on the loop thread; workers_wake, _reserve,
 * _unreserve and _deliver from the committer's threads; the rest on worker
 * threads. Shared state: the wake generation, the stopping flag and the
 * hand-over (a ring of delivered messages plus the places reserved), behind
 * lock.
 */
#include <assert.h>
#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backoff.h"
#include "bounds.h"
#include "fulfilment.h"
#include "ids.h"
#include "log.h"
#include "order.h"
#include "trace.h"
#include "worker.h"

struct workers {
    struct store *store;
    struct metrics *metrics;
    struct worker_options opts;
    struct fulfilment_command command;  /* argc 0: no command */
    pthread_t threads[WORKER_COUNT_MAX];
    uint32_t started;

    pthread_mutex_t lock;         /* guards everything below */
    pthread_cond_t wake;
    uint64_t generation;
    bool stopping;
    struct store_message *handoff; /* ring of WORKER_HANDOFF_MAX; NULL with a command */
    size_t handoff_first, handoff_count, handoff_reserved;
};

/* Everything a worker decides about one delivery. */
struct verdict {
    struct store_settlement settlement;
    char trace_id[TRACE_ID_HEX_LEN + 1];
    char error[FULFILMENT_STDERR_MAX + 128];
};

static bool stopping(struct workers *w)
{
    pthread_mutex_lock(&w->lock);
    bool s = w->stopping;
    pthread_mutex_unlock(&w->lock);
    return s;
}

void workers_wake(void *arg)
{
    struct workers *w = arg;
    pthread_mutex_lock(&w->lock);
    w->generation++;
    pthread_cond_broadcast(&w->wake);
    pthread_mutex_unlock(&w->lock);
}

size_t workers_reserve(void *arg, size_t n)
{
    struct workers *w = arg;
    size_t k = 0;
    pthread_mutex_lock(&w->lock);
    if (w->handoff != NULL && !w->stopping) {
        size_t room = WORKER_HANDOFF_MAX - w->handoff_count - w->handoff_reserved;
        k = n < room ? n : room;
        w->handoff_reserved += k;
    }
    pthread_mutex_unlock(&w->lock);
    return k;
}

void workers_unreserve(void *arg, size_t n)
{
    struct workers *w = arg;
    pthread_mutex_lock(&w->lock);
    assert(w->handoff_reserved >= n);
    w->handoff_reserved -= n;
    pthread_mutex_unlock(&w->lock);
}

void workers_deliver(void *arg, struct store_message *msgs, size_t n)
{
    struct workers *w = arg;
    pthread_mutex_lock(&w->lock);
    assert(w->handoff != NULL && w->handoff_reserved >= n);
    w->handoff_reserved -= n;
    for (size_t i = 0; i < n; i++) {
        size_t slot = (w->handoff_first + w->handoff_count) % WORKER_HANDOFF_MAX;
        w->handoff[slot] = msgs[i];
        w->handoff_count++;
    }
    /* one sleeper per batch's worth: the others would find nothing left */
    for (size_t woken = 0; woken < n; woken += WORKER_BATCH_MAX)
        pthread_cond_signal(&w->wake);
    pthread_mutex_unlock(&w->lock);
}

/* Takes up to max delivered messages (the caller owns them); called with lock held. */
static size_t take_delivered_locked(struct workers *w, struct store_message *out, size_t max)
{
    size_t n = 0;
    while (n < max && w->handoff_count > 0) {
        out[n++] = w->handoff[w->handoff_first];
        w->handoff_first = (w->handoff_first + 1) % WORKER_HANDOFF_MAX;
        w->handoff_count--;
    }
    return n;
}

static size_t take_delivered(struct workers *w, struct store_message *out, size_t max)
{
    pthread_mutex_lock(&w->lock);
    size_t n = w->handoff != NULL ? take_delivered_locked(w, out, max) : 0;
    pthread_mutex_unlock(&w->lock);
    return n;
}

/*
 * Sleeps until woken, stopping, a delivery, or the next message is due.
 * True when the store should be asked (woken by workers_wake, or a message
 * came due), false after a delivery or when stopping.
 */
static bool sleep_until_work(struct workers *w, uint64_t seen_generation)
{
    int64_t due = 0;
    int err = store_next_visible_ms(w->store, &due);
    bool timed = err == STORE_OK || err == STORE_EUNAVAILABLE;
    int64_t wait_ms = err == STORE_OK ? due - ids_now_ms() : 1000; /* storage down: retry in 1s */
    if (timed && wait_ms <= 0)
        return true;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    if (timed) {
        ts.tv_sec += wait_ms / 1000;
        ts.tv_nsec += (wait_ms % 1000) * 1000000;
        if (ts.tv_nsec >= 1000000000) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000;
        }
    }
    bool due_now = false;
    pthread_mutex_lock(&w->lock);
    while (!w->stopping && w->generation == seen_generation && w->handoff_count == 0) {
        if (!timed) {
            pthread_cond_wait(&w->wake, &w->lock);
        } else if (pthread_cond_timedwait(&w->wake, &w->lock, &ts) == ETIMEDOUT) {
            due_now = true;
            break;
        }
    }
    bool ask = due_now || w->generation != seen_generation;
    pthread_mutex_unlock(&w->lock);
    return ask;
}

/* The order as the fulfilment command and the re-validation see it. */
static char *message_json(const struct store_message *m, const char *trace_id)
{
    json_t *items = json_loads(m->items_json, 0, NULL);
    char created[32];
    snprintf(created, sizeof(created), "%lld", (long long)m->created_at_ms);
    json_t *o = json_pack("{s:s, s:s, s:o, s:s, s:I}", "order_id", m->order_id, "customer_id",
                          m->customer_id, "items", items ? items : json_null(), "trace_id",
                          trace_id, "attempt", (json_int_t)m->receive_count);
    char *text = o ? json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(o);
    return text;
}

static bool revalidate(const struct store_message *m, char *error, size_t size)
{
    struct order_validation v;
    int rc = order_validate_stored(m->customer_id, m->items_json, &v);
    if (rc == ORDER_OK)
        return true;
    if (rc == ORDER_ENOMEM)
        snprintf(error, size, "out of memory while validating the stored order");
    else
        snprintf(error, size, "order failed validation: %s %s", v.count ? v.errors[0].field : "",
                 v.count ? v.errors[0].message : "");
    return false;
}

static int run_command(struct workers *w, const struct store_message *m,
                       const struct trace_context *span, char *error, size_t size)
{
    /* The command acts outside the database, so the order must be on disk first:
     * a claim can see an enqueue that is committed but not yet synced. */
    int err = store_sync(w->store);
    assert(err == STORE_OK); /* a failed fsync does not return */
    (void)err;
    char env_id[96], env_tp[96];
    char tp[TRACEPARENT_LEN + 1];
    trace_format(span, tp);
    snprintf(env_id, sizeof(env_id), "ORDER_ID=%.26s", m->order_id);
    snprintf(env_tp, sizeof(env_tp), "TRACEPARENT=%.55s", tp);
    const char *env[] = {env_id, env_tp, NULL};
    char *input = message_json(m, span->trace_id);
    if (input == NULL) {
        snprintf(error, size, "out of memory");
        return FULFILMENT_FAILED;
    }
    int rc = fulfilment_run(&w->command, input, strlen(input), env,
                            (int64_t)w->opts.fulfilment_timeout_ms, error, size);
    free(input);
    return rc;
}

static void decide(struct workers *w, const struct store_message *m, struct verdict *v)
{
    struct trace_context parent, span;
    if (trace_parse(m->traceparent, &parent) != 0 || trace_child(&parent, &span) != 0)
        trace_new(&span);
    struct log_ctx lc = {NULL, span.trace_id, m->order_id};
    memcpy(v->trace_id, span.trace_id, sizeof(v->trace_id));
    struct store_settlement *s = &v->settlement;
    memset(s, 0, sizeof(*s));
    s->order_id = m->order_id;
    s->receipt = m->receipt;
    s->attempts = m->receive_count;
    v->error[0] = '\0';

    double started = ids_monotonic_seconds();
    if (!revalidate(m, v->error, sizeof(v->error))) {
        s->outcome = STORE_OUTCOME_DEAD_LETTER;
    } else if (w->command.argc == 0 ||
               run_command(w, m, &span, v->error, sizeof(v->error)) == FULFILMENT_OK) {
        s->outcome = STORE_OUTCOME_COMPLETED;
    } else if (m->receive_count >= w->opts.max_receives) {
        s->outcome = STORE_OUTCOME_DEAD_LETTER;
    } else {
        uint64_t r = 0;
        ids_random_bytes(&r, sizeof(r));
        s->outcome = STORE_OUTCOME_RETRY;
        s->visible_at_ms = ids_now_ms() + (int64_t)backoff_delay_ms(w->opts.backoff_base_ms,
                                                                     w->opts.backoff_max_ms,
                                                                     m->receive_count, r);
    }
    metrics_processing_observe(w->metrics, ids_monotonic_seconds() - started);
    if (s->outcome != STORE_OUTCOME_COMPLETED) {
        s->error = v->error;
        log_warn(&lc, "processing attempt %u failed: %s", m->receive_count, v->error);
    }
}

static void count_outcomes(struct workers *w, const struct verdict *v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const struct store_settlement *s = &v[i].settlement;
        struct log_ctx lc = {NULL, v[i].trace_id, s->order_id};
        if (s->result == STORE_ESTALE) {
            log_warn(&lc, "lease expired before the verdict; a newer delivery owns the message");
            continue;
        }
        if (s->outcome == STORE_OUTCOME_COMPLETED) {
            metrics_counter_add(w->metrics, METRICS_ORDERS_PROCESSED, 1);
            log_debug(&lc, "order completed");
            continue;
        }
        metrics_counter_add(w->metrics, METRICS_ORDERS_FAILED, 1);
        if (s->outcome == STORE_OUTCOME_DEAD_LETTER) {
            metrics_counter_add(w->metrics, METRICS_ORDERS_DEAD_LETTERED, 1);
            log_warn(&lc, "order dead-lettered after %u attempts", s->attempts);
        }
    }
}

/* Settles n verdicts; retries while storage is unavailable (the leases protect us). */
static void settle(struct workers *w, struct verdict *v, size_t n)
{
    struct store_settlement items[WORKER_BATCH_MAX];
    for (size_t i = 0; i < n; i++)
        items[i] = v[i].settlement;
    int err = store_settle(w->store, items, n, ids_now_ms());
    if (err != STORE_OK) {
        log_error(NULL, "worker: cannot settle %zu messages: %s; they will be delivered again",
                  n, store_strerror(err));
        return;
    }
    for (size_t i = 0; i < n; i++)
        v[i].settlement.result = items[i].result;
    count_outcomes(w, v, n);
}

static void process_batch(struct workers *w, struct store_message *msgs, size_t n,
                          struct verdict *verdicts)
{
    size_t done = 0;
    for (; done < n && !(done > 0 && stopping(w)); done++)
        decide(w, &msgs[done], &verdicts[done]);
    if (done < n && store_release(w->store, msgs + done, n - done, ids_now_ms()) != STORE_OK)
        log_warn(NULL, "worker: could not release %zu leases; they expire by themselves",
                 n - done);
    settle(w, verdicts, done);
}

/* Claims from the store; *more when another claim may find more at once. */
static size_t claim_from_store(struct workers *w, struct store_message *msgs, size_t batch,
                               bool *more)
{
    size_t n = 0, dead = 0;
    int err = store_claim(w->store, ids_now_ms(), (int64_t)w->opts.visibility_timeout_ms,
                          w->opts.max_receives, msgs, batch, &n, &dead);
    if (dead > 0) {
        metrics_counter_add(w->metrics, METRICS_ORDERS_DEAD_LETTERED, dead);
        log_warn(NULL, "worker: %zu messages dead-lettered: their last lease expired", dead);
    }
    *more = err == STORE_OK && (n == batch || dead > 0);
    return err == STORE_OK ? n : 0;
}

/* What a worker knows about where its next batch may come from. */
struct intake_state {
    bool ask_store;               /* the store may hold visible messages */
    bool last_from_store;         /* the last batch was claimed, not delivered */
    uint64_t seen_generation;
    int64_t next_poll_ms;         /* ask the store by then, even while deliveries keep coming */
};

/*
 * The next batch: claimed from the store when it may hold visible messages
 * (or a poll is due), else taken from the hand-over; when both have work they
 * take turns, so delivered messages never wait long behind a backlog in the
 * store (their leases are running) and the backlog never waits behind
 * deliveries. 0 when there is nothing to do now.
 */
static size_t next_batch(struct workers *w, struct intake_state *st, struct store_message *msgs,
                         size_t batch)
{
    bool store_due = st->ask_store || ids_now_ms() >= st->next_poll_ms;
    size_t n = 0;
    if (!store_due || st->last_from_store)
        n = take_delivered(w, msgs, batch);
    if (n > 0 || !store_due) {
        st->last_from_store = false;
        return n;
    }
    n = claim_from_store(w, msgs, batch, &st->ask_store);
    st->next_poll_ms = ids_now_ms() + WORKER_POLL_MS;
    st->last_from_store = n > 0;
    return n > 0 ? n : take_delivered(w, msgs, batch);
}

static void *worker_main(void *arg)
{
    struct workers *w = arg;
    pthread_setname_np(pthread_self(), "worker"); /* top -H, perf: failure is harmless */
    struct store_message msgs[WORKER_BATCH_MAX];
    size_t batch = w->command.argc > 0 ? 1 : WORKER_BATCH_MAX;
    struct verdict *verdicts = calloc(WORKER_BATCH_MAX, sizeof(*verdicts));
    if (verdicts == NULL) {
        log_error(NULL, "worker: out of memory; this worker stops");
        return NULL;
    }
    struct intake_state st = {.ask_store = true};
    while (!stopping(w)) {
        pthread_mutex_lock(&w->lock);
        uint64_t generation = w->generation;
        pthread_mutex_unlock(&w->lock);
        if (generation != st.seen_generation) {
            st.seen_generation = generation;
            st.ask_store = true;
        }
        size_t n = next_batch(w, &st, msgs, batch);
        if (n == 0) {
            if (!st.ask_store)
                st.ask_store = sleep_until_work(w, generation);
            continue;
        }
        process_batch(w, msgs, n, verdicts);
        for (size_t i = 0; i < n; i++)
            store_message_clear(&msgs[i]);
    }
    free(verdicts);
    return NULL;
}

/* After the threads are joined: what was delivered and never taken goes back. */
static void release_undelivered(struct workers *w)
{
    struct store_message left[WORKER_BATCH_MAX];
    size_t n;
    pthread_mutex_lock(&w->lock);
    while ((n = take_delivered_locked(w, left, WORKER_BATCH_MAX)) > 0) {
        if (store_release(w->store, left, n, ids_now_ms()) != STORE_OK)
            log_warn(NULL, "worker: could not release %zu leases; they expire by themselves", n);
        for (size_t i = 0; i < n; i++)
            store_message_clear(&left[i]);
    }
    pthread_mutex_unlock(&w->lock);
}

int workers_start(struct store *store, struct metrics *metrics, const struct worker_options *opts,
                  struct workers **out)
{
    if (opts->count == 0 || opts->count > WORKER_COUNT_MAX)
        return -EINVAL;
    struct workers *w = calloc(1, sizeof(*w));
    if (w == NULL)
        return -ENOMEM;
    w->store = store;
    w->metrics = metrics;
    w->opts = *opts;
    w->opts.fulfilment_command = NULL;
    int err = 0;
    if (opts->fulfilment_command && (err = fulfilment_parse(opts->fulfilment_command,
                                                            &w->command)) != 0)
        goto fail_alloc;
    if (w->command.argc == 0 &&
        (w->handoff = calloc(WORKER_HANDOFF_MAX, sizeof(*w->handoff))) == NULL) {
        err = -ENOMEM;
        goto fail_command;
    }
    pthread_condattr_t ca;
    if (pthread_condattr_init(&ca) != 0 || pthread_condattr_setclock(&ca, CLOCK_MONOTONIC) != 0 ||
        pthread_cond_init(&w->wake, &ca) != 0) {
        err = -ENOMEM;
        goto fail_command;
    }
    pthread_condattr_destroy(&ca);
    if (pthread_mutex_init(&w->lock, NULL) != 0) {
        err = -ENOMEM;
        goto fail_cond;
    }
    for (; w->started < opts->count; w->started++) {
        int rc = pthread_create(&w->threads[w->started], NULL, worker_main, w);
        if (rc != 0) {
            workers_stop(w);
            return -rc;
        }
    }
    *out = w;
    return 0;

fail_cond:
    pthread_cond_destroy(&w->wake);
fail_command:
    free(w->handoff);
    fulfilment_command_free(&w->command);
fail_alloc:
    free(w);
    return err;
}

void workers_stop(struct workers *w)
{
    if (w == NULL)
        return;
    pthread_mutex_lock(&w->lock);
    w->stopping = true;
    pthread_cond_broadcast(&w->wake);
    pthread_mutex_unlock(&w->lock);
    for (uint32_t i = 0; i < w->started; i++)
        pthread_join(w->threads[i], NULL);
    if (w->handoff != NULL) {
        release_undelivered(w);
        assert(w->handoff_reserved == 0);
        free(w->handoff);
    }
    pthread_mutex_destroy(&w->lock);
    pthread_cond_destroy(&w->wake);
    fulfilment_command_free(&w->command);
    free(w);
}
