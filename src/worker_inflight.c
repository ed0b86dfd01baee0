/*
 * worker_inflight.c — a worker thread when processing includes a fulfilment
 * (a command or an HTTP service): up to its share of
 * `fulfilment_concurrency` orders in flight at once, in one poll loop.
 *
 * The loop, over and over:
 *   claim    while there is room: claim visible messages (a lease each), make
 *            the WAL durable (the fulfilment acts outside the database), and
 *            start a fulfilment for each — a child process (fulfilment.h) or
 *            a request in this thread's curl multi handle (fulfilment_http.h);
 *   wait     in curl_multi_poll(), on the requests' sockets and the
 *            children's pidfds and pipes, until something happens, the next
 *            deadline, or workers_wake() (curl_multi_wakeup);
 *   finish   draw the verdict of every fulfilment that ended and settle them
 *            together in one transaction;
 *   extend   renew the lease of every message whose fulfilment is still
 *            running once half of its lease has gone (as SQS's
 *            ChangeMessageVisibility), so a fulfilment may take longer than
 *            visibility_timeout while a crashed node's messages still come
 *            back after one visibility_timeout.
 * On stop it claims nothing more and lets what is in flight end (each
 * fulfilment is bounded by fulfilment_timeout).
 *
 * Tracing: a flight holds its delivery's orderd.process span (ended by
 * workers_settle) and the span of its fulfilment under it — CLIENT "POST"
 * for a request, INTERNAL "orderd.fulfilment_command" for a command —
 * whose context is the traceparent the service or the command receives, so
 * that what they record nests under it. That span ends when the fulfilment
 * does.
 *
 * Threads: one worker thread owns everything here; only the multi handle is
 * touched from outside (curl_multi_wakeup, which is thread-safe).
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ids.h"
#include "log.h"
#include "worker_int.h"

/* One message in flight. */
struct flight {
    bool busy;
    struct store_message msg;
    struct tracing_span span;      /* orderd.process (CONSUMER) */
    struct tracing_span call_span; /* the fulfilment: CLIENT or INTERNAL */
    double started;
    int64_t lease_until_ms;
    struct fulfilment_child *child;    /* a command, or */
    struct fulfilment_http_call *call; /* a request */
    size_t fd_first, fd_count;         /* the child's slice of inflight.fds this turn */
};

struct inflight {
    struct workers *w;
    CURLM *multi;
    size_t cap, busy;
    struct flight *flights; /* cap of them */
    struct verdict *done;   /* verdicts waiting to be settled */
    size_t n_done;
    struct pollfd *fds;          /* cap * FULFILMENT_CHILD_FDS */
    struct curl_waitfd *waitfds; /* the same, as curl_multi_poll takes them */
    bool ask_store;
    double last_claim_at; /* monotonic: the last claim */
    double first_done_at; /* monotonic: the oldest verdict waiting */
    uint64_t seen_generation;
    int64_t next_poll_ms;
    int64_t retry_at_ms; /* a claim failed: not before then */
};

#define WAIT_MAX_MS 1000 /* look at the clock and the store at least this often */
/* A free slot or a verdict waits this long for others to share its claim or
 * settle transaction, unless enough are together already (a quarter of the
 * slots) or nothing else is running; short next to any fulfilment. */
#define GATHER_S 0.002

/* ---- metrics ------------------------------------------------------------------- */

static enum metrics_fulfilment_kind kind_of(const struct inflight *in)
{
    return in->w->command.argc > 0 ? METRICS_FULFILMENT_COMMAND : METRICS_FULFILMENT_HTTP;
}

static enum metrics_fulfilment_result metric_result(int result)
{
    switch (result) {
    case FULFILMENT_OK:
        return METRICS_FULFILMENT_OK;
    case FULFILMENT_FAILED:
        return METRICS_FULFILMENT_FAILED;
    case FULFILMENT_TIMEOUT:
        return METRICS_FULFILMENT_TIMEOUT;
    case FULFILMENT_REJECTED:
        return METRICS_FULFILMENT_REJECTED;
    default:
        return METRICS_FULFILMENT_ERROR;
    }
}

/* ---- starting ------------------------------------------------------------------ */

static void env_line(char *out, size_t size, const char *name, const char *value)
{
    snprintf(out, size, "%s=%s", name, value);
}

/* ---- the fulfilment's span ------------------------------------------------------ */

/* Begins the span of f's fulfilment, a child of its delivery's span. */
static void call_span_begin(struct inflight *in, struct flight *f)
{
    struct workers *w = in->w;
    struct tracing_span *s = &f->call_span;
    if (w->command.argc > 0) {
        tracing_span_begin(w->opts.tracing, s, &f->span.ctx, "orderd.fulfilment_command",
                           TRACING_INTERNAL);
        if (s->recording)
            tracing_span_attr_str(s, "process.command", w->command.argv[0]);
        return;
    }
    tracing_span_begin(w->opts.tracing, s, &f->span.ctx, "POST", TRACING_CLIENT);
    if (!s->recording)
        return;
    tracing_span_attr_str(s, "http.request.method", "POST");
    if (w->target.url[0] != '\0') {
        tracing_span_attr_str(s, "url.full", w->target.url);
        tracing_span_attr_str(s, "server.address", w->target.host);
        tracing_span_attr_int(s, "server.port", w->target.port);
    }
}

/* Ends it: error (NULL when it succeeded), exit code (command, -1: none),
 * HTTP status (request, 0: none), error_type (request: what failed). */
static void call_span_end(struct inflight *in, struct flight *f, const char *error, int exit_code,
                          long status, const char *error_type)
{
    struct tracing_span *s = &f->call_span;
    if (s->recording) {
        if (exit_code >= 0)
            tracing_span_attr_int(s, "process.exit.code", exit_code);
        if (status > 0)
            tracing_span_attr_int(s, "http.response.status_code", status);
        if (error != NULL && error_type != NULL)
            tracing_span_attr_str(s, "error.type", error_type);
        if (error != NULL)
            tracing_span_error(s, error);
    }
    tracing_span_end(in->w->opts.tracing, s);
}

/* ---- starting (continued) --------------------------------------------------------- */

static int start_command(struct inflight *in, struct flight *f, const char *body, char *error,
                         size_t size)
{
    char env_id[64], env_tp[96], tp[TRACEPARENT_LEN + 1];
    trace_format(&f->call_span.ctx, tp);
    env_line(env_id, sizeof(env_id), "ORDER_ID", f->msg.order_id);
    env_line(env_tp, sizeof(env_tp), "TRACEPARENT", tp);
    const char *env[] = {env_id, env_tp, NULL};
    return fulfilment_child_start(&in->w->command, body, strlen(body), env,
                                  (int64_t)in->w->opts.fulfilment_timeout_ms, &f->child, error,
                                  size);
}

static int start_request(struct inflight *in, struct flight *f, const char *body, char *error,
                         size_t size)
{
    char tp[TRACEPARENT_LEN + 1];
    trace_format(&f->call_span.ctx, tp);
    pthread_rwlock_rdlock(&in->w->secrets_lock); /* the secrets may be swapped (SIGHUP) */
    int err = fulfilment_http_call_new(&in->w->http, f->msg.order_id, tp, body, strlen(body),
                                       &f->call, error, size);
    pthread_rwlock_unlock(&in->w->secrets_lock);
    if (err != 0)
        return err;
    if (curl_multi_add_handle(in->multi, fulfilment_http_call_handle(f->call)) != CURLM_OK) {
        snprintf(error, size, "cannot start the fulfilment request");
        fulfilment_http_call_abandon(f->call);
        f->call = NULL;
        return -ENOMEM;
    }
    return 0;
}

/* A verdict to fill; at most one per busy flight waits to be settled. */
static struct verdict *next_done(struct inflight *in) { return &in->done[in->n_done++]; }

/* After its verdict is settled: the slot takes the next message. */
static void release_flight(struct inflight *in, struct flight *f)
{
    store_message_clear(&f->msg);
    f->busy = false;
    f->child = NULL;
    f->call = NULL;
    in->busy--;
}

/* Starts the fulfilment of a claimed message, or settles it at once. */
static void start_flight(struct inflight *in, struct flight *f)
{
    struct workers *w = in->w;
    f->started = ids_monotonic_seconds();
    struct verdict *v = next_done(in);
    if (!verdict_begin(w, &f->msg, &f->span, v))
        return; /* dead letter: settled with the others, then the slot is free */
    char *body = worker_message_json(&f->msg, f->span.ctx.trace_id);
    int rc = FULFILMENT_ESPAWN;
    call_span_begin(in, f);
    if (body == NULL)
        snprintf(v->error, sizeof(v->error), "out of memory");
    else if (w->command.argc > 0)
        rc = start_command(in, f, body, v->error, sizeof(v->error));
    else
        rc = start_request(in, f, body, v->error, sizeof(v->error));
    free(body);
    if (rc == 0) {
        in->n_done--; /* the verdict comes when the fulfilment ends */
        metrics_fulfilment_in_flight_add(w->metrics, 1);
        return;
    }
    call_span_end(in, f, v->error, -1, 0, "start");
    metrics_fulfilment_observe(w->metrics, kind_of(in), METRICS_FULFILMENT_ERROR, 0);
    verdict_conclude(w, &f->msg, FULFILMENT_FAILED, -1, NULL, v);
}

static struct flight *free_flight(struct inflight *in)
{
    for (size_t i = 0; i < in->cap; i++)
        if (!in->flights[i].busy)
            return &in->flights[i];
    return NULL;
}

/* Enough room to claim now: a quarter of the slots, or nothing running, or
 * the first free slot has waited GATHER_S. */
static bool claim_gathered(const struct inflight *in, double now)
{
    size_t room = in->cap - in->busy;
    return room * 4 >= in->cap || in->busy == in->n_done || now - in->last_claim_at >= GATHER_S;
}

/* Claims what there is room for and starts each. */
static void claim_and_start(struct inflight *in)
{
    size_t room = in->cap - in->busy;
    double now = ids_monotonic_seconds();
    int64_t now_ms = ids_now_ms();
    if (room == 0 || !(in->ask_store || now_ms >= in->next_poll_ms) || now_ms < in->retry_at_ms ||
        !claim_gathered(in, now))
        return;
    in->last_claim_at = now;
    struct store_message msgs[WORKER_BATCH_MAX];
    size_t want = room < WORKER_BATCH_MAX ? room : WORKER_BATCH_MAX;
    size_t n = workers_claim(in->w, msgs, want, &in->ask_store, &in->retry_at_ms);
    in->next_poll_ms = ids_now_ms() + WORKER_POLL_MS;
    if (n == 0)
        return;
    /* The fulfilment acts outside the database, so the order must be on disk
     * first: a claim can see an enqueue that is committed but not yet synced. */
    (void)store_sync(in->w->store); /* a failed fsync does not return */
    int64_t lease_until = ids_now_ms() + (int64_t)in->w->opts.visibility_timeout_ms;
    for (size_t i = 0; i < n; i++) {
        struct flight *f = free_flight(in);
        f->busy = true;
        f->msg = msgs[i];
        f->lease_until_ms = lease_until;
        in->busy++;
        start_flight(in, f);
    }
}

/* ---- finishing -------------------------------------------------------------------- */

static void finish_flight(struct inflight *in, struct flight *f, int result, int64_t retry_after_ms,
                          char *result_json, const char *error)
{
    struct verdict *v = next_done(in);
    v->span = &f->span;
    struct store_settlement *s = &v->settlement;
    memset(s, 0, sizeof(*s));
    s->order_id = f->msg.order_id; /* the flight stays busy until settled */
    s->receipt = f->msg.receipt;
    s->attempts = f->msg.receive_count;
    v->result_json = NULL;
    snprintf(v->error, sizeof(v->error), "%s", error);
    verdict_conclude(in->w, &f->msg, result, retry_after_ms, result_json, v);
    double took = ids_monotonic_seconds() - f->started;
    metrics_processing_observe(in->w->metrics, took);
    metrics_fulfilment_observe(in->w->metrics, kind_of(in), metric_result(result), took);
    metrics_fulfilment_in_flight_add(in->w->metrics, -1);
}

/* polled: the poll filled in revents (else only the clock counts this turn). */
static void finish_children(struct inflight *in, bool polled)
{
    for (size_t i = 0; i < in->cap; i++) {
        struct flight *f = &in->flights[i];
        if (!f->busy || f->child == NULL ||
            !fulfilment_child_step(f->child, in->fds + f->fd_first, polled ? f->fd_count : 0))
            continue;
        char error[FULFILMENT_ERROR_MAX];
        int code = fulfilment_child_exit_code(f->child);
        int result = fulfilment_child_finish(f->child, error, sizeof(error));
        f->child = NULL;
        call_span_end(in, f, result == FULFILMENT_OK ? NULL : error, code, 0,
                      result == FULFILMENT_TIMEOUT ? "timeout" : "exit");
        finish_flight(in, f, result, -1, NULL, error);
    }
}

static struct flight *flight_of_call(struct inflight *in, struct fulfilment_http_call *c)
{
    for (size_t i = 0; i < in->cap; i++)
        if (in->flights[i].busy && in->flights[i].call == c)
            return &in->flights[i];
    return NULL;
}

static void finish_requests(struct inflight *in)
{
    int running = 0, left = 0;
    curl_multi_perform(in->multi, &running);
    CURLMsg *m;
    while ((m = curl_multi_info_read(in->multi, &left)) != NULL) {
        if (m->msg != CURLMSG_DONE)
            continue;
        struct fulfilment_http_call *c = NULL;
        curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&c);
        CURLcode code = m->data.result;
        curl_multi_remove_handle(in->multi, m->easy_handle);
        struct flight *f = flight_of_call(in, c);
        struct fulfilment_answer a;
        fulfilment_http_call_finish(c, code, &a);
        if (f == NULL) {
            free(a.result_json);
            continue;
        }
        f->call = NULL;
        char status[24];
        snprintf(status, sizeof(status), "%ld", a.status);
        const char *type = a.status > 0                     ? status
                           : a.result == FULFILMENT_TIMEOUT ? "timeout"
                                                            : curl_easy_strerror(code);
        call_span_end(in, f, a.result == FULFILMENT_OK ? NULL : a.error, -1, a.status, type);
        finish_flight(in, f, a.result, a.retry_after_ms, a.result_json, a.error);
    }
}

/*
 * Settles every verdict waiting. The settlements name their orders through
 * the flights' messages, which are released only afterwards.
 */
static void settle_done(struct inflight *in, bool now)
{
    if (in->n_done == 0)
        return;
    bool gathered = in->n_done * 4 >= in->cap || in->n_done == in->busy ||
                    ids_monotonic_seconds() - in->first_done_at >= GATHER_S;
    if (!now && !gathered)
        return;
    workers_settle(in->w, in->done, in->n_done);
    in->n_done = 0;
    for (size_t i = 0; i < in->cap; i++) {
        struct flight *f = &in->flights[i];
        if (f->busy && f->child == NULL && f->call == NULL)
            release_flight(in, f);
    }
}

/* ---- leases --------------------------------------------------------------------- */

static void extend_leases(struct inflight *in)
{
    int64_t visibility_timeout_ms = (int64_t)in->w->opts.visibility_timeout_ms;
    int64_t now = ids_now_ms();
    struct store_lease items[WORKER_BATCH_MAX];
    struct flight *owners[WORKER_BATCH_MAX];
    size_t n = 0;
    for (size_t i = 0; i < in->cap && n < WORKER_BATCH_MAX; i++) {
        struct flight *f = &in->flights[i];
        if (!f->busy || (f->child == NULL && f->call == NULL) ||
            f->lease_until_ms - now > visibility_timeout_ms / 2)
            continue;
        items[n] = (struct store_lease){.order_id = f->msg.order_id, .receipt = f->msg.receipt};
        owners[n++] = f;
    }
    if (n == 0)
        return;
    int err = store_extend_leases(in->w->store, items, n, now, visibility_timeout_ms);
    for (size_t i = 0; i < n; i++) {
        if (err == STORE_OK && items[i].result == STORE_OK) {
            owners[i]->lease_until_ms = now + visibility_timeout_ms;
        } else if (err == STORE_OK) {
            const struct trace_context *tc = &owners[i]->span.ctx;
            struct log_ctx lc = {NULL, tc->trace_id, owners[i]->msg.order_id, tc->span_id};
            log_warn(&lc, "lease lost while the fulfilment runs; a newer delivery owns it");
            owners[i]->lease_until_ms = INT64_MAX; /* stop asking */
        }
    }
    if (err != STORE_OK)
        log_warn(NULL, "worker: cannot extend %zu leases: %s; retrying", n, store_strerror(err));
}

/* ---- waiting -------------------------------------------------------------------- */

/* The children's descriptors to poll, each child's in a slice of its own. */
static size_t gather_fds(struct inflight *in)
{
    size_t n = 0;
    for (size_t i = 0; i < in->cap; i++) {
        struct flight *f = &in->flights[i];
        if (!f->busy || f->child == NULL)
            continue;
        f->fd_first = n;
        f->fd_count = fulfilment_child_pollfds(f->child, in->fds + n);
        n += f->fd_count;
    }
    return n;
}

/* How long the poll may sleep: until a child's deadline, a lease to renew,
 * or, with room for more, the next message becoming visible. */
static int wait_ms(struct inflight *in)
{
    double now = ids_monotonic_seconds();
    int64_t now_ms = ids_now_ms();
    int64_t wait = WAIT_MAX_MS;
    int64_t half = (int64_t)in->w->opts.visibility_timeout_ms / 2;
    for (size_t i = 0; i < in->cap; i++) {
        struct flight *f = &in->flights[i];
        if (!f->busy)
            continue;
        if (f->child != NULL) {
            int64_t d = (int64_t)((fulfilment_child_wake_at(f->child) - now) * 1000) + 1;
            wait = d < wait ? d : wait;
        }
        int64_t renew = f->lease_until_ms - half - now_ms;
        wait = renew < wait ? renew : wait;
    }
    if (in->n_done > 0) {
        int64_t d = (int64_t)((in->first_done_at + GATHER_S - now) * 1000) + 1;
        wait = d < wait ? d : wait;
    }
    if (in->busy < in->cap && now_ms < in->retry_at_ms) {
        /* the last claim failed: nothing to claim before retry_at */
        wait = in->retry_at_ms - now_ms < wait ? in->retry_at_ms - now_ms : wait;
    } else if (in->busy < in->cap) {
        if (in->ask_store) {
            int64_t d = (int64_t)((in->last_claim_at + GATHER_S - now) * 1000) + 1;
            return claim_gathered(in, now) || d < 0 ? 0 : (int)(d < wait ? d : wait);
        }
        int64_t due = 0;
        if (store_next_visible_ms(in->w->store, &due) == STORE_OK)
            wait = due - now_ms < wait ? due - now_ms : wait;
    }
    return wait < 0 ? 0 : (int)wait;
}

static void wait_for_events(struct inflight *in)
{
    size_t nfds = gather_fds(in);
    int timeout = wait_ms(in);
    for (size_t i = 0; i < nfds; i++)
        in->waitfds[i] = (struct curl_waitfd){in->fds[i].fd, in->fds[i].events, 0};
    bool polled =
        curl_multi_poll(in->multi, in->waitfds, (unsigned)nfds, timeout, NULL) == CURLM_OK;
    for (size_t i = 0; polled && i < nfds; i++)
        in->fds[i].revents = in->waitfds[i].revents;
    finish_requests(in);
    finish_children(in, polled);
}

static void notice_wakes(struct inflight *in)
{
    uint64_t g = workers_generation(in->w);
    if (g != in->seen_generation) {
        in->seen_generation = g;
        in->ask_store = true;
    }
}

/* ---- the thread ------------------------------------------------------------------ */

static int inflight_init(struct inflight *in, struct worker_thread *t)
{
    memset(in, 0, sizeof(*in));
    in->w = t->w;
    in->multi = t->multi;
    in->cap = t->cap;
    in->ask_store = true;
    in->flights = calloc(in->cap, sizeof(*in->flights));
    in->done = calloc(in->cap, sizeof(*in->done));
    in->fds = calloc(in->cap * FULFILMENT_CHILD_FDS, sizeof(*in->fds));
    in->waitfds = calloc(in->cap * FULFILMENT_CHILD_FDS, sizeof(*in->waitfds));
    return in->flights && in->done && in->fds && in->waitfds ? 0 : -ENOMEM;
}

static void inflight_free(struct inflight *in)
{
    free(in->flights);
    free(in->done);
    free(in->fds);
    free(in->waitfds);
}

void *worker_inflight_main(void *arg)
{
    struct worker_thread *t = arg;
    pthread_setname_np(pthread_self(), "worker");
    struct inflight in;
    if (inflight_init(&in, t) != 0) {
        log_error(NULL, "worker: out of memory; this worker stops");
        inflight_free(&in);
        return NULL;
    }
    for (;;) {
        bool stop = workers_stopping(in.w);
        if (stop && in.busy == 0)
            break;
        notice_wakes(&in);
        if (!stop)
            claim_and_start(&in);
        settle_done(&in, stop);
        if (in.busy == 0 && stop)
            break;
        wait_for_events(&in);
        settle_done(&in, stop);
        extend_leases(&in);
    }
    inflight_free(&in);
    return NULL;
}
