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
 * Tracing: verdict_begin() begins a delivery's CONSUMER span orderd.process
 * (a child of the message's traceparent); workers_settle() ends it with the
 * outcome, status ERROR and the reason when the order failed, and the time
 * includes the settlement. Without a fulfilment that span is all a delivery
 * costs the tracer.
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
#include "worker_int.h"

bool workers_fulfil(const struct workers *w)
{
    return w->command.argc > 0 || w->http.url != NULL;
}

bool workers_stopping(struct workers *w)
{
    pthread_mutex_lock(&w->lock);
    bool s = w->stopping;
    pthread_mutex_unlock(&w->lock);
    return s;
}

uint64_t workers_generation(struct workers *w)
{
    pthread_mutex_lock(&w->lock);
    uint64_t g = w->generation;
    pthread_mutex_unlock(&w->lock);
    return g;
}

/* Wakes the threads that sleep in their multi handle's poll (with a fulfilment). */
static void wake_pollers(struct workers *w)
{
    for (uint32_t i = 0; i < w->started; i++)
        if (w->threads[i].multi != NULL)
            curl_multi_wakeup(w->threads[i].multi);
}

void workers_wake(void *arg)
{
    struct workers *w = arg;
    pthread_mutex_lock(&w->lock);
    w->generation++;
    pthread_cond_broadcast(&w->wake);
    pthread_mutex_unlock(&w->lock);
    wake_pollers(w);
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
static bool sleep_until_work(struct workers *w, uint64_t seen_generation, int64_t not_before_ms)
{
    int64_t due = 0;
    int err = store_next_visible_ms(w->store, &due);
    bool timed = err == STORE_OK || err == STORE_EUNAVAILABLE;
    if (err == STORE_EUNAVAILABLE)
        due = ids_now_ms() + WORKER_STORE_RETRY_MS;
    if (due < not_before_ms) /* the last claim failed: the store is asked again then */
        due = not_before_ms;
    int64_t wait_ms = due - ids_now_ms();
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

char *worker_message_json(const struct store_message *m, const char *trace_id)
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

struct log_ctx verdict_log_ctx(const struct verdict *v)
{
    return (struct log_ctx){NULL, v->span->ctx.trace_id, v->settlement.order_id,
                            v->span->ctx.span_id};
}

/* Begins the delivery's CONSUMER span: a child of the context the message
 * carries (a message without a valid one starts a trace of its own). */
static void process_span_begin(struct workers *w, const struct store_message *m,
                               struct tracing_span *span)
{
    struct trace_context parent;
    bool given = trace_parse(m->traceparent, &parent) == 0;
    tracing_span_begin(w->opts.tracing, span, given ? &parent : NULL, "orderd.process",
                       TRACING_CONSUMER);
    if (!span->recording)
        return;
    tracing_span_attr_str(span, "messaging.system", "orderd");
    tracing_span_attr_str(span, "messaging.operation", "process");
    tracing_span_attr_str(span, "messaging.message.id", m->order_id);
    tracing_span_attr_int(span, "orderd.attempt", m->receive_count);
}

static const char *outcome_name(enum store_outcome o)
{
    switch (o) {
    case STORE_OUTCOME_COMPLETED:
        return "completed";
    case STORE_OUTCOME_RETRY:
        return "retry";
    case STORE_OUTCOME_DEAD_LETTER:
        return "dead_letter";
    default:
        return "unknown";
    }
}

/* Ends the span of a verdict whose settlement returned err (and, when err is
 * STORE_OK, its own result). */
static void process_span_end(struct workers *w, struct verdict *v, int err)
{
    struct tracing_span *span = v->span;
    const struct store_settlement *s = &v->settlement;
    if (span == NULL)
        return;
    if (span->recording) {
        char why[TRACING_STATUS_MESSAGE_MAX + 1];
        tracing_span_attr_str(span, "orderd.outcome", outcome_name(s->outcome));
        if (err != STORE_OK) {
            snprintf(why, sizeof(why), "not settled (%s): delivered again", store_strerror(err));
            tracing_span_error(span, why);
        } else if (s->result == STORE_ESTALE) {
            tracing_span_error(span, "lease expired before the verdict");
        } else if (s->outcome == STORE_OUTCOME_DEAD_LETTER) {
            snprintf(why, sizeof(why), "dead-lettered after %u attempts: %s", s->attempts,
                     v->error);
            tracing_span_error(span, why);
        } else if (s->outcome == STORE_OUTCOME_RETRY) {
            tracing_span_error(span, v->error);
        }
    }
    tracing_span_end(w->opts.tracing, span);
    v->span = NULL;
}

bool verdict_begin(struct workers *w, const struct store_message *m, struct tracing_span *span,
                   struct verdict *v)
{
    process_span_begin(w, m, span);
    v->span = span;
    struct store_settlement *s = &v->settlement;
    memset(s, 0, sizeof(*s));
    s->order_id = m->order_id;
    s->receipt = m->receipt;
    s->attempts = m->receive_count;
    v->error[0] = '\0';
    v->result_json = NULL;
    if (revalidate(m, v->error, sizeof(v->error))) {
        s->outcome = STORE_OUTCOME_COMPLETED;
        return true;
    }
    s->outcome = STORE_OUTCOME_DEAD_LETTER;
    s->error = v->error;
    struct log_ctx lc = verdict_log_ctx(v);
    log_warn(&lc, "processing attempt %u failed: %s", m->receive_count, v->error);
    return false;
}

/* When a failed delivery is tried again: the queue's backoff, or the time the
 * fulfilment service asked for (Retry-After), at most backoff_max. */
static int64_t retry_at_ms(struct workers *w, const struct store_message *m,
                           int64_t retry_after_ms)
{
    uint64_t delay;
    if (retry_after_ms >= 0) {
        delay = (uint64_t)retry_after_ms < w->opts.backoff_max_ms ? (uint64_t)retry_after_ms
                                                                  : w->opts.backoff_max_ms;
    } else {
        uint64_t r = 0;
        ids_random_bytes(&r, sizeof(r));
        delay = backoff_delay_ms(w->opts.backoff_base_ms, w->opts.backoff_max_ms,
                                 m->receive_count, r);
    }
    return ids_now_ms() + (int64_t)delay;
}

void verdict_conclude(struct workers *w, const struct store_message *m, int result,
                      int64_t retry_after_ms, char *result_json, struct verdict *v)
{
    struct store_settlement *s = &v->settlement;
    if (result == FULFILMENT_OK) {
        s->outcome = STORE_OUTCOME_COMPLETED;
        v->result_json = result_json;
        return;
    }
    free(result_json);
    if (result == FULFILMENT_REJECTED || m->receive_count >= w->opts.max_receives) {
        s->outcome = STORE_OUTCOME_DEAD_LETTER;
    } else {
        s->outcome = STORE_OUTCOME_RETRY;
        s->visible_at_ms = retry_at_ms(w, m, retry_after_ms);
    }
    s->error = v->error;
    struct log_ctx lc = verdict_log_ctx(v);
    log_warn(&lc, "processing attempt %u failed: %s", m->receive_count, v->error);
}

/* Without a fulfilment: validating again and persisting is all of processing. */
static void decide(struct workers *w, const struct store_message *m, struct tracing_span *span,
                   struct verdict *v)
{
    double started = ids_monotonic_seconds();
    verdict_begin(w, m, span, v);
    metrics_processing_observe(w->metrics, ids_monotonic_seconds() - started);
}

static void count_outcomes(struct workers *w, const struct verdict *v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const struct store_settlement *s = &v[i].settlement;
        struct log_ctx lc = verdict_log_ctx(&v[i]);
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

/* Settles n <= WORKER_BATCH_MAX verdicts in one transaction. */
static void settle_chunk(struct workers *w, struct verdict *v, size_t n)
{
    struct store_settlement items[WORKER_BATCH_MAX];
    assert(n <= WORKER_BATCH_MAX);
    for (size_t i = 0; i < n; i++) {
        items[i] = v[i].settlement;
        items[i].result_json = v[i].result_json;
    }
    int err = store_settle(w->store, items, n, ids_now_ms());
    if (err != STORE_OK) {
        log_error(NULL, "worker: cannot settle %zu messages: %s; they will be delivered again",
                  n, store_strerror(err));
    } else {
        for (size_t i = 0; i < n; i++)
            v[i].settlement.result = items[i].result;
        count_outcomes(w, v, n);
    }
    for (size_t i = 0; i < n; i++) {
        process_span_end(w, &v[i], err);
        free(v[i].result_json);
        v[i].result_json = NULL;
    }
}

/* Settles n verdicts, WORKER_BATCH_MAX to a transaction; on failure the leases
 * run out and the messages come again. */
void workers_settle(struct workers *w, struct verdict *v, size_t n)
{
    for (size_t done = 0; done < n; done += WORKER_BATCH_MAX)
        settle_chunk(w, v + done, n - done < WORKER_BATCH_MAX ? n - done : WORKER_BATCH_MAX);
}

static void process_batch(struct workers *w, struct store_message *msgs, size_t n,
                          struct verdict *verdicts, struct tracing_span *spans)
{
    size_t done = 0;
    for (; done < n && !(done > 0 && workers_stopping(w)); done++)
        decide(w, &msgs[done], &spans[done], &verdicts[done]);
    if (done < n && store_release(w->store, msgs + done, n - done, ids_now_ms()) != STORE_OK)
        log_warn(NULL, "worker: could not release %zu leases; they expire by themselves",
                 n - done);
    workers_settle(w, verdicts, done);
}

size_t workers_claim(struct workers *w, struct store_message *msgs, size_t batch, bool *more,
                     int64_t *retry_at_ms)
{
    size_t n = 0, dead = 0;
    int err = store_claim(w->store, ids_now_ms(), (int64_t)w->opts.visibility_timeout_ms,
                          w->opts.max_receives, msgs, batch, &n, &dead);
    if (dead > 0) {
        metrics_counter_add(w->metrics, METRICS_ORDERS_DEAD_LETTERED, dead);
        log_warn(NULL, "worker: %zu messages dead-lettered: their last lease expired", dead);
    }
    *more = err == STORE_OK && (n == batch || dead > 0);
    if (err != STORE_OK)
        *retry_at_ms = ids_now_ms() + WORKER_STORE_RETRY_MS;
    return err == STORE_OK ? n : 0;
}

/* What a worker knows about where its next batch may come from. */
struct intake_state {
    bool ask_store;               /* the store may hold visible messages */
    bool last_from_store;         /* the last batch was claimed, not delivered */
    uint64_t seen_generation;
    int64_t next_poll_ms;         /* ask the store by then, even while deliveries keep coming */
    int64_t retry_at_ms;          /* a claim failed: not before then */
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
    int64_t now = ids_now_ms();
    bool store_due = (st->ask_store || now >= st->next_poll_ms) && now >= st->retry_at_ms;
    size_t n = 0;
    if (!store_due || st->last_from_store)
        n = take_delivered(w, msgs, batch);
    if (n > 0 || !store_due) {
        st->last_from_store = false;
        return n;
    }
    n = workers_claim(w, msgs, batch, &st->ask_store, &st->retry_at_ms);
    st->next_poll_ms = ids_now_ms() + WORKER_POLL_MS;
    st->last_from_store = n > 0;
    return n > 0 ? n : take_delivered(w, msgs, batch);
}

/* The thread body without a fulfilment: batches delivered or claimed, persisted. */
static void *worker_main(void *arg)
{
    struct workers *w = ((struct worker_thread *)arg)->w;
    pthread_setname_np(pthread_self(), "worker"); /* top -H, perf: failure is harmless */
    struct store_message msgs[WORKER_BATCH_MAX];
    struct verdict *verdicts = calloc(WORKER_BATCH_MAX, sizeof(*verdicts));
    struct tracing_span *spans = calloc(WORKER_BATCH_MAX, sizeof(*spans));
    if (verdicts == NULL || spans == NULL) {
        log_error(NULL, "worker: out of memory; this worker stops");
        free(verdicts);
        free(spans);
        return NULL;
    }
    struct intake_state st = {.ask_store = true};
    while (!workers_stopping(w)) {
        uint64_t generation = workers_generation(w);
        if (generation != st.seen_generation) {
            st.seen_generation = generation;
            st.ask_store = true;
        }
        size_t n = next_batch(w, &st, msgs, WORKER_BATCH_MAX);
        if (n == 0) {
            /* nothing to do, or the last claim failed: sleep (never spin on a
             * failing disk), keeping a wake that came meanwhile */
            if (!st.ask_store || ids_now_ms() < st.retry_at_ms)
                st.ask_store = sleep_until_work(w, generation, st.retry_at_ms) || st.ask_store;
            continue;
        }
        process_batch(w, msgs, n, verdicts, spans);
        for (size_t i = 0; i < n; i++)
            store_message_clear(&msgs[i]);
    }
    free(verdicts);
    free(spans);
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

/* The fulfilment of this run: a command, a URL (and its secrets), or neither. */
static int prepare_fulfilment(struct workers *w, const struct worker_options *opts)
{
    w->opts.fulfilment_command = NULL;
    w->opts.fulfilment_url = NULL;
    w->opts.fulfilment_ca_file = NULL;
    w->opts.fulfilment_secret_file = NULL;
    if (opts->fulfilment_command && opts->fulfilment_url)
        return -EINVAL;
    if (opts->fulfilment_command)
        return fulfilment_parse(opts->fulfilment_command, &w->command);
    if (opts->fulfilment_url == NULL)
        return 0;
    if (opts->fulfilment_secret_file != NULL) {
        char why[256];
        if (webhook_secrets_load(opts->fulfilment_secret_file, &w->secrets, why,
                                 sizeof(why)) != 0) {
            log_error(NULL, "worker: %s", why);
            return -EINVAL;
        }
    }
    /* for the CLIENT spans; a URL libcurl cannot parse fails each request, as before */
    (void)fulfilment_http_target_of(opts->fulfilment_url, &w->target);
    w->http = (struct fulfilment_http_options){
        .url = opts->fulfilment_url,
        .ca_file = opts->fulfilment_ca_file,
        .secrets = w->secrets,
        .timeout_ms = (int64_t)opts->fulfilment_timeout_ms,
    };
    return 0;
}

/* libcurl's global state, once per process, before the first multi handle. It
 * is never cleaned up: the process ends with it. */
static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_result = CURLE_FAILED_INIT;

static void curl_init_once(void) { curl_init_result = curl_global_init(CURL_GLOBAL_DEFAULT); }

/* Thread i's share of the fulfilments in flight, and its multi handle. */
static int prepare_thread(struct workers *w, uint32_t i)
{
    struct worker_thread *t = &w->threads[i];
    uint32_t total = w->opts.fulfilment_concurrency ? w->opts.fulfilment_concurrency : 1;
    t->w = w;
    t->cap = total / w->threads_wanted + (i < total % w->threads_wanted ? 1 : 0);
    if (!workers_fulfil(w))
        return 0;
    if (pthread_once(&curl_once, curl_init_once) != 0 || curl_init_result != CURLE_OK)
        return -ENOMEM;
    t->multi = curl_multi_init();
    if (t->multi == NULL)
        return -ENOMEM;
    long per_host = (long)t->cap;
    if (curl_multi_setopt(t->multi, CURLMOPT_MAX_HOST_CONNECTIONS, per_host) != CURLM_OK ||
        curl_multi_setopt(t->multi, CURLMOPT_MAXCONNECTS, per_host) != CURLM_OK)
        return -EINVAL;
    return 0;
}

static void free_threads(struct workers *w)
{
    for (uint32_t i = 0; i < w->threads_wanted; i++) {
        if (w->threads[i].multi != NULL)
            curl_multi_cleanup(w->threads[i].multi);
        w->threads[i].multi = NULL;
    }
}

static void free_workers(struct workers *w)
{
    free_threads(w);
    free(w->handoff);
    fulfilment_command_free(&w->command);
    webhook_secrets_free(w->secrets);
    free(w);
}

static int init_sync(struct workers *w)
{
    pthread_condattr_t ca;
    if (pthread_condattr_init(&ca) != 0)
        return -ENOMEM;
    int rc = pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    if (rc == 0)
        rc = pthread_cond_init(&w->wake, &ca);
    pthread_condattr_destroy(&ca);
    if (rc != 0)
        return -rc;
    rc = pthread_mutex_init(&w->lock, NULL);
    if (rc != 0) {
        pthread_cond_destroy(&w->wake);
        return -rc;
    }
    rc = pthread_rwlock_init(&w->secrets_lock, NULL);
    if (rc != 0) {
        pthread_mutex_destroy(&w->lock);
        pthread_cond_destroy(&w->wake);
        return -rc;
    }
    return 0;
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
    int err = prepare_fulfilment(w, opts);
    /* with a fulfilment, a thread beyond fulfilment_concurrency would have no share */
    w->threads_wanted = opts->count;
    if (workers_fulfil(w) && opts->fulfilment_concurrency < opts->count)
        w->threads_wanted = opts->fulfilment_concurrency ? opts->fulfilment_concurrency : 1;
    for (uint32_t i = 0; err == 0 && i < w->threads_wanted; i++)
        err = prepare_thread(w, i);
    if (err == 0 && !workers_fulfil(w) &&
        (w->handoff = calloc(WORKER_HANDOFF_MAX, sizeof(*w->handoff))) == NULL)
        err = -ENOMEM;
    if (err == 0)
        err = init_sync(w);
    if (err != 0) {
        free_workers(w);
        return err;
    }
    void *(*body)(void *) = workers_fulfil(w) ? worker_inflight_main : worker_main;
    for (; w->started < w->threads_wanted; w->started++) {
        int rc = pthread_create(&w->threads[w->started].thread, NULL, body,
                                &w->threads[w->started]);
        if (rc != 0) {
            workers_stop(w);
            return -rc;
        }
    }
    *out = w;
    return 0;
}

void workers_stop(struct workers *w)
{
    if (w == NULL)
        return;
    pthread_mutex_lock(&w->lock);
    w->stopping = true;
    pthread_cond_broadcast(&w->wake);
    pthread_mutex_unlock(&w->lock);
    wake_pollers(w);
    for (uint32_t i = 0; i < w->started; i++)
        pthread_join(w->threads[i].thread, NULL);
    if (w->handoff != NULL) {
        release_undelivered(w);
        assert(w->handoff_reserved == 0);
    }
    pthread_mutex_destroy(&w->lock);
    pthread_cond_destroy(&w->wake);
    pthread_rwlock_destroy(&w->secrets_lock);
    free_workers(w);
}

int workers_reload_secrets(struct workers *w, const char *path, size_t *count)
{
    if (w->http.url == NULL || w->secrets == NULL)
        return -EINVAL;
    struct webhook_secrets *fresh = NULL;
    char why[256];
    int err = webhook_secrets_load(path, &fresh, why, sizeof(why));
    if (err != 0) {
        log_error(NULL, "reload: %s: %s; keeping the secrets in use", path, why);
        return err;
    }
    pthread_rwlock_wrlock(&w->secrets_lock);
    struct webhook_secrets *old = w->secrets;
    w->secrets = fresh;
    w->http.secrets = fresh;
    pthread_rwlock_unlock(&w->secrets_lock);
    webhook_secrets_free(old);
    *count = webhook_secrets_count(fresh);
    return 0;
}
